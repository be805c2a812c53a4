/* kr_aws: calls to AWS services on the shared HTTP client (http.h), for every AWS sink and
 * source.
 *
 * One client per plugin instance: a service, a region, an endpoint and credentials. Requests are
 * signed with AWS Signature Version 4 (sigv4.h), with X-Amz-Security-Token for temporary
 * credentials; TLS peers are verified (ca_file adds a CA bundle).
 *
 * Region: the option, else AWS_REGION, AWS_DEFAULT_REGION, the profile's region in the shared
 * config file. Endpoint: the option, else AWS_ENDPOINT_URL_<SERVICE> (SQS, SNS, LAMBDA,
 * KINESIS, CLOUDWATCH_LOGS), AWS_ENDPOINT_URL, else the region's standard URL
 * (https://sqs.us-east-1.amazonaws.com, .amazonaws.com.cn in China).
 *
 * Credentials, in the SDKs' default order: the options naming environment variables
 * (access_key_id_env, secret_access_key_env, session_token_env); AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN; the profile (the option, AWS_PROFILE, "default") in
 * the shared credentials file (AWS_SHARED_CREDENTIALS_FILE, ~/.aws/credentials) and config file
 * (AWS_CONFIG_FILE, ~/.aws/config), with its credential_process. Before the profile, web
 * identity: AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (AWS_ROLE_SESSION_NAME), STS
 * AssumeRoleWithWebIdentity, as on EKS; after it the container endpoint
 * (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI, with AWS_CONTAINER_AUTHORIZATION_TOKEN
 * or _TOKEN_FILE), then the instance metadata service, IMDSv2 (AWS_EC2_METADATA_SERVICE_ENDPOINT;
 * AWS_EC2_METADATA_DISABLED=true skips it). With role_arn (and external_id) the role is assumed
 * through STS AssumeRole with the credentials found; STS is AWS_ENDPOINT_URL_STS,
 * AWS_ENDPOINT_URL or the region's. Credentials that expire are fetched again five minutes
 * before they do (the process waits for the fetch, as for the first); requests in flight keep
 * the ones they were signed with. Secrets are never logged, and are
 * blotted out of the error messages a service sends back.
 *
 * Errors: a response that is not 2xx becomes an AWS error code and message, from the JSON body
 * (__type, code, message), the x-amzn-ErrorType or x-amzn-query-error header, or the XML body
 * (<Code>, <Message>); throttling, 5xx, timeouts and connection errors are retryable, the rest
 * (validation, access denied, not found, too large) permanent. Loop thread only. */
#ifndef KR_AWS_H
#define KR_AWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "http.h"
#include "loop.h"
#include "plugin.h"

/* The options every AWS plugin has; put KR_AWS_OPTIONS(struct my_conf, aws) in its option
 * table, with a struct kr_aws_conf aws member in its config struct. */
struct kr_aws_conf {
	const char *region;
	const char *endpoint;
	const char *profile;
	struct kr_secret access_key_id, secret_access_key, session_token;
	const char *ca_file;
	uint64_t connect_timeout_ms;
	const char *role_arn, *external_id, *role_session_name;
};

extern const char *const kr_aws_schemes[];

#define KR_AWS_OPTIONS(T, m)                                                                     \
	{.name = "region", .type = KR_OPT_STRING, .offset = offsetof(T, m.region),               \
	 .help = "AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's region)"},   \
	{.name = "endpoint", .type = KR_OPT_URL, .offset = offsetof(T, m.endpoint),              \
	 .values = kr_aws_schemes,                                                               \
	 .help = "service URL (default: AWS_ENDPOINT_URL_<SERVICE>, AWS_ENDPOINT_URL, the "        \
		 "region's)"},                                                                   \
	{.name = "profile", .type = KR_OPT_STRING, .offset = offsetof(T, m.profile),             \
	 .help = "profile of the shared credentials and config files (default: AWS_PROFILE, "      \
		 "default)"},                                                                    \
	{.name = "access_key_id_env", .type = KR_OPT_SECRET_ENV,                                 \
	 .offset = offsetof(T, m.access_key_id),                                                 \
	 .help = "environment variable holding the access key id, with secret_access_key_env"},   \
	{.name = "secret_access_key_env", .type = KR_OPT_SECRET_ENV,                             \
	 .offset = offsetof(T, m.secret_access_key),                                             \
	 .help = "environment variable holding the secret access key"},                           \
	{.name = "session_token_env", .type = KR_OPT_SECRET_ENV,                                 \
	 .offset = offsetof(T, m.session_token),                                                 \
	 .help = "environment variable holding the session token of temporary credentials"},      \
	{.name = "ca_file", .type = KR_OPT_PATH, .offset = offsetof(T, m.ca_file),               \
	 .help = "CA bundle to verify the service with, besides the system's"},                    \
	{.name = "connect_timeout_ms", .type = KR_OPT_DURATION,                                  \
	 .offset = offsetof(T, m.connect_timeout_ms), .def = "5000", .min = 1, .max = 600000,     \
	 .help = "time to connect to the service"},                                              \
	{.name = "role_arn", .type = KR_OPT_STRING, .offset = offsetof(T, m.role_arn),           \
	 .help = "an IAM role to assume (STS AssumeRole) with the credentials found"},             \
	{.name = "external_id", .type = KR_OPT_STRING, .offset = offsetof(T, m.external_id),     \
	 .help = "the external id the role's trust policy asks for, with role_arn"},              \
	{.name = "role_session_name", .type = KR_OPT_STRING,                                     \
	 .offset = offsetof(T, m.role_session_name),                                             \
	 .help = "the session name of the assumed role (default: kmsrouter-PID)"}

/* The same options as a table of their own, and the reference text about them (region,
 * endpoint, the credential chain, signing, errors): paragraphs separated by "\n\n", printed
 * once by `kmsrouter help config` and with each AWS plugin by `kmsrouter help config TYPE`. */
extern const struct kr_option kr_aws_options[];
extern const char kr_aws_doc[];
/* Whether a plugin's option table has every option of kr_aws_options: it calls AWS. */
bool kr_aws_options_in(const struct kr_option *table);

/* What the option table cannot say about kr_aws_conf (the key id and secret go together). */
enum kr_err kr_aws_validate(const struct kr_aws_conf *c, const struct kr_opts_check *chk);

/* A service: its name in SigV4 scopes and endpoint host names, and in AWS_ENDPOINT_URL_<id>. */
struct kr_aws_service {
	const char *signing_name; /* "sqs", "sns", "lambda", "kinesis", "logs" */
	const char *env_id;       /* "SQS", "SNS", "LAMBDA", "KINESIS", "CLOUDWATCH_LOGS" */
};

struct kr_aws;

/* A new client in *out; err says why not (no region, no credentials, a profile that cannot be
 * read), without any secret. */
enum kr_err kr_aws_new(struct kr_loop *loop, const struct kr_aws_conf *c,
		       const struct kr_aws_service *svc, struct kr_aws **out, char *err);
/* Frees the client; its calls in flight complete first (as failures). */
void kr_aws_free(struct kr_aws *a);

const char *kr_aws_region(const struct kr_aws *a);
const char *kr_aws_endpoint(const struct kr_aws *a);

struct kr_aws_call {
	const char *method;       /* NULL: POST */
	const char *path;         /* appended to the endpoint; NULL: "/" */
	const char *target;       /* X-Amz-Target (JSON protocols), or NULL */
	const char *content_type; /* NULL: application/x-amz-json-1.0 */
	const char *const *headers; /* more "Name: value" lines, NULL-terminated, or NULL */
	const char *body;         /* kept alive by the caller until done */
	size_t body_len;
	uint64_t timeout_ms;      /* 0: 30 s */
	size_t max_body;          /* 0: 1 MiB */
	bool body_prefix;         /* a larger response body is cut to max_body, not an error */
};

struct kr_aws_result {
	bool ok;                 /* a 2xx response */
	enum kr_outcome outcome; /* when not ok */
	long status;             /* 0: no response */
	char code[96];           /* AWS error code, or Timeout / ConnectionError */
	char message[320];       /* one line, secrets blotted out */
	uint64_t not_before_ms;  /* wall clock, from Retry-After; 0: none */
	const struct kr_http_response *http; /* the response (body, headers) */
};

typedef void (*kr_aws_done_fn)(void *arg, const struct kr_aws_result *r);

/* Sends a signed request; done is called once, later, from the loop. */
enum kr_err kr_aws_send(struct kr_aws *a, const struct kr_aws_call *c, kr_aws_done_fn done,
			void *arg);

/* The error code and message of a failed response (what kr_aws_send's result carries); for
 * tests and for sources that read responses themselves. */
void kr_aws_error_of(const struct kr_http_response *r, struct kr_aws_result *out);

/* A batch's request (batch.h): sends call with body (taken: freed when the call ends) and ends
 * the batch with what comes back. A call that fails ends every entry with its outcome, AWS code
 * and message; a 2xx answer goes to results, which reports entries with kr_batch_entry, and the
 * entries it did not report end retryable ("NoResult": what's answer did not say what became of
 * them). Anything that keeps the request from starting ends the batch retryable. */
struct kr_batch;
struct kr_buf;
typedef void (*kr_aws_results_fn)(struct kr_batch *bt, const struct kr_http_response *r);
void kr_aws_send_batch(struct kr_aws *a, struct kr_batch *bt, const struct kr_aws_call *call,
		       struct kr_buf *body, kr_aws_results_fn results, const char *what);

/* XML responses of the query protocol (SNS, STS) have a fixed shape; these read it. The next
 * <tag>...</tag> at or after *pos, before end: its content in [*content, *content_end), and
 * *pos moves past it. */
bool kr_aws_xml_next(const char **pos, const char *end, const char *tag, const char **content,
		     const char **content_end);
/* The text of the first <tag> element in [s, e), its entities decoded, into out (cap bytes). */
bool kr_aws_xml_text(const char *s, const char *e, const char *tag, char *out, size_t cap);

/* Whether an AWS error code says to try again (throttling, a fault on the service's side, an
 * expired token); per-entry results of batch calls use it too. */
bool kr_aws_retryable_code(const char *code);

#endif
