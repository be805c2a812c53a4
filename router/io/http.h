/* kr_http: asynchronous HTTP requests on the event loop, with libcurl's multi interface.
 *
 * One curl multi handle per loop is shared by every client on that loop, so plugins that talk
 * to one host share its connections (and HTTP/2 streams, where the server offers HTTP/2). A
 * client (kr_http_new) is one plugin's view of it: freeing a client completes that client's
 * requests in flight, not the others'. Requests take any method, request headers, a limit on
 * the response body, and an auth kind: none, Basic, or AWS Signature Version 4 (sigv4.h) with
 * the session token header for temporary credentials. Responses carry
 * their headers. Proxies come from the environment as curl reads it (HTTPS_PROXY, https_proxy,
 * http_proxy, NO_PROXY). TLS peers are verified. Loop thread only. */
#ifndef KR_HTTP_H
#define KR_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "loop.h"

struct kr_http;

struct kr_http_response {
	long status;          /* 0 when no response came (see error) */
	const char *error;    /* transport error text (connection refused, timeout, TLS, a body
				 over the limit), or NULL */
	bool timed_out;
	bool too_large;       /* the body passed the request's max_body: an error, or with
				 body_prefix only its first max_body bytes are here */
	const char *body;     /* response body, NUL-terminated */
	size_t body_len;
	int64_t retry_after_ms; /* from a Retry-After header, -1 when absent */
	/* the final response's header lines ("Name: value\r\n"...), NUL-terminated; read them
	   with kr_http_header */
	const char *headers;
};

/* The value of response header name (case-insensitive) copied into out (cap bytes, blanks
 * around it removed), or NULL when absent. */
const char *kr_http_header(const struct kr_http_response *r, const char *name, char *out,
			   size_t cap);

typedef void (*kr_http_done_fn)(void *arg, const struct kr_http_response *r);

enum kr_http_auth {
	KR_HTTP_AUTH_NONE,
	KR_HTTP_AUTH_BASIC, /* user, password */
	KR_HTTP_AUTH_SIGV4  /* user: access key id, password: secret key, token: session token or
			       NULL; region and service name the signature's scope */
};

struct kr_http_request {
	const char *method;   /* "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", ... */
	const char *url;
	const char *const *headers; /* "Name: value" strings, NULL-terminated; may be NULL */
	const char *body;     /* sent as is (not for GET and HEAD); kept alive by the caller until
				 done */
	size_t body_len;
	uint64_t timeout_ms;  /* the whole request; 0: 30 s */
	uint64_t connect_timeout_ms; /* 0: timeout_ms */
	size_t max_body;      /* the largest response body accepted; 0: 1 MiB */
	bool body_prefix;     /* a larger body is not an error: its first max_body bytes are kept
				 (too_large says so) */
	enum kr_http_auth auth;
	const char *user, *password, *token;
	const char *region, *service;
	const char *ca_file;  /* extra CA bundle, or NULL */
};

/* A new client on loop in *out, sharing the loop's connections; free with kr_http_free (its
 * pending requests complete with an error first). The first call loads libcurl and libcrypto:
 * KR_ERR_UNAVAILABLE when it cannot. */
enum kr_err kr_http_new(struct kr_loop *loop, struct kr_http **out, char *err);
void kr_http_free(struct kr_http *h);

/* Starts a request; done is called once, later, from the loop. Every string of req is copied
 * (curl copies its options) except body, which must live until done. */
enum kr_err kr_http_send(struct kr_http *h, const struct kr_http_request *req,
			 kr_http_done_fn done, void *arg);

/* Runs one request to its end before it returns (blocking the thread, up to its timeout), on a
 * connection of its own, and calls done with the response. For what must be there before a
 * pipeline runs, such as credentials, and for threads of their own (any thread: nothing of it
 * stays behind); loads libcurl and libcrypto as kr_http_new does. */
enum kr_err kr_http_send_sync(const struct kr_http_request *req, kr_http_done_fn done, void *arg,
			      char *err);

/* The requests of this client in flight. */
size_t kr_http_pending(const struct kr_http *h);

#endif
