/* kr_http: asynchronous HTTP requests on the event loop, with libcurl's multi interface.
 *
 * curl tells us which sockets to watch and when to time out (socket and timer callbacks); the
 * loop wakes curl on those, and finished transfers call back. Connections are kept and reused
 * between requests to one host. TLS peers are verified. The http sink uses this, and so will the
 * AWS sinks (with curl's built-in SigV4 signing) and the SQS source. Loop thread only. */
#ifndef KR_HTTP_H
#define KR_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "loop.h"

struct kr_http;

struct kr_http_response {
	long status;          /* 0 when no response came (see error) */
	const char *error;    /* transport error text (connection refused, timeout, TLS), or NULL */
	bool timed_out;
	const char *body;     /* response body (NUL-terminated, at most 64 KiB kept) */
	size_t body_len;
	int64_t retry_after_ms; /* from a Retry-After header, -1 when absent */
};

typedef void (*kr_http_done_fn)(void *arg, const struct kr_http_response *r);

struct kr_http_request {
	const char *method;   /* "POST", "PUT", ... */
	const char *url;
	const char *const *headers; /* "Name: value" strings, NULL-terminated; may be NULL */
	const char *body;     /* sent as is; the caller keeps it alive until done */
	size_t body_len;
	uint64_t timeout_ms;
	const char *userpwd;  /* "user:password" for Basic auth, or NULL */
	const char *ca_file;  /* extra CA bundle, or NULL */
};

/* A new client on loop in *out; free with kr_http_free (pending requests complete with an
 * error first). The first call loads libcurl: KR_ERR_UNAVAILABLE when it cannot. */
enum kr_err kr_http_new(struct kr_loop *loop, struct kr_http **out, char *err);
void kr_http_free(struct kr_http *h);

/* Starts a request; done is called once, later, from the loop. */
enum kr_err kr_http_send(struct kr_http *h, const struct kr_http_request *req,
			 kr_http_done_fn done, void *arg);

#endif
