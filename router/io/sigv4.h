/* kr_sigv4: AWS Signature Version 4 for the requests of kr_http (KR_HTTP_AUTH_SIGV4).
 *
 * Why not curl's CURLOPT_AWS_SIGV4: the libcurl of Debian 12 (7.88) signs an emptied header it
 * then leaves out (so an "Expect:" line breaks the signature), and signs the path as it is,
 * where AWS canonicalizes a URI-encoded path (so a Lambda function ARN in the path, whose ':'
 * AWS encodes, never verifies). Both were measured against botocore's signer (the one AWS's
 * SDKs share), which the tests use to verify this one.
 *
 * Canonical request as AWS's SigV4 documentation gives it for services other than S3: the path
 * URI-encoded once more (a '%' becomes %25), the query's names and values decoded then
 * encoded (RFC 3986) and sorted, the signed headers (host, x-amz-date, content-type, every
 * x-amz-* header, x-amz-security-token for temporary credentials) lowercased, trimmed and
 * sorted, and the SHA-256 of the body. Pure functions, any thread. */
#ifndef KR_SIGV4_H
#define KR_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "err.h"

struct kr_sigv4_request {
	const char *method;
	const char *url;            /* scheme://host[:port]/path?query */
	const char *const *headers; /* "Name: value", NULL-terminated, or NULL */
	const char *body;
	size_t body_len;
	const char *access_key_id, *secret_key, *session_token; /* token: NULL or "" for none */
	const char *region, *service;
	time_t now;
};

/* Loads libcrypto (OpenSSL 3) for the signatures, once; KR_ERR_UNAVAILABLE with err saying why
 * not. kr_sigv4_sign loads it too, and fails without it. */
enum kr_err kr_sigv4_load(char *err);

/* The header lines to add to the request: "X-Amz-Date: ...", then "X-Amz-Security-Token: ..."
 * when there is a token, then "Authorization: ...". Each is a new string in lines[0..2] (NULL
 * where there is none); free them with kr_sigv4_free. False when the URL cannot be read or out
 * of memory. */
bool kr_sigv4_sign(const struct kr_sigv4_request *r, char *lines[3]);
void kr_sigv4_free(char *lines[3]);
/* Frees what signing keeps per thread (a digest context, the last signing key, wiped): for a
 * thread that signed and ends. */
void kr_sigv4_thread_end(void);

#endif
