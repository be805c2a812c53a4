/* lambda sink: each payload the event of an AWS Lambda function invocation.
 *
 * Invoke, one request per event, up to "concurrency" in flight. invocation_type "Event" (the
 * default) queues the event for the function (Lambda answers 202 and runs it later, with its own
 * retries and on-failure destination); "RequestResponse" waits for the function, and a response
 * with X-Amz-Function-Error (the function threw, timed out, ran out of memory) is a failure:
 * permanent by default, retryable with retry_function_errors, with the error type and message
 * the function returned. A payload over the invocation's limit (256 KiB for Event, 6 MiB for
 * RequestResponse) fails permanently before anything is sent ("PayloadTooLarge"). Lambda's own
 * errors map as for every AWS sink: throttling (429 TooManyRequestsException), 5xx and no
 * response are retried; a function that does not exist, access denied, a bad signature go to
 * the dead letter.
 *
 * function is a name, a full ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]) or
 * a partial one (ACCOUNT:function:NAME); qualifier a version or alias. The region is the
 * option's, else a full ARN's, else the usual chain. IAM: lambda:InvokeFunction on the function
 * (and on the qualified ARN where a qualifier is used). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws.h"
#include "buf.h"
#include "json.h"
#include "plugin.h"

#define ASYNC_LIMIT (256u * 1024u)
#define SYNC_LIMIT (6u * 1024u * 1024u)

enum { INVOKE_EVENT, INVOKE_REQUEST_RESPONSE };
static const char *const invocation_types[] = {"Event", "RequestResponse", NULL};

struct lambda_conf {
	struct kr_aws_conf aws;
	const char *function;
	const char *qualifier;
	int invocation_type;
	bool retry_function_errors;
};

static const struct kr_option lambda_options[] = {
	{.name = "function", .type = KR_OPT_STRING, .offset = offsetof(struct lambda_conf, function),
	 .required = true,
	 .help = "the function: a name, an ARN, or ACCOUNT:function:NAME (a partial ARN)"},
	{.name = "qualifier", .type = KR_OPT_STRING, .offset = offsetof(struct lambda_conf, qualifier),
	 .help = "a version or alias of the function"},
	{.name = "invocation_type", .type = KR_OPT_ENUM,
	 .offset = offsetof(struct lambda_conf, invocation_type), .values = invocation_types,
	 .def = "\"Event\"",
	 .help = "Event: queued, Lambda runs it (payload up to 256 KiB); RequestResponse: wait for "
		 "the function's result (up to 6 MiB)"},
	{.name = "retry_function_errors", .type = KR_OPT_BOOL,
	 .offset = offsetof(struct lambda_conf, retry_function_errors), .def = "false",
	 .help = "RequestResponse: retry an invocation whose function failed (X-Amz-Function-Error) "
		 "instead of dead-lettering it"},
	KR_AWS_OPTIONS(struct lambda_conf, aws),
	{0},
};

/* The region of a full function ARN into out; false for a name or a partial ARN. */
static bool arn_region(const char *fn, char *out, size_t cap)
{
	if (strncmp(fn, "arn:", 4) != 0)
		return false;
	const char *p = strchr(fn + 4, ':'); /* after the partition */
	if (!p || strncmp(p + 1, "lambda:", 7) != 0)
		return false;
	const char *r = p + 8, *e = strchr(r, ':');
	if (!e || e == r || (size_t)(e - r) + 1 > cap)
		return false;
	memcpy(out, r, (size_t)(e - r));
	out[e - r] = 0;
	return true;
}

/* A function name, ARN or partial ARN as Lambda takes them: the name part of 1 to 64 letters,
 * digits, '-' and '_'. */
static const char *function_check(const char *fn)
{
	const char *name = fn;
	if (strncmp(fn, "arn:", 4) == 0) {
		char region[64];
		const char *f = strstr(fn, ":function:");
		if (!arn_region(fn, region, sizeof region) || !f)
			return "not a function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME)";
		name = f + 10;
	} else if (strstr(fn, ":function:")) {
		name = strstr(fn, ":function:") + 10;
	}
	size_t n = strcspn(name, ":");
	if (n < 1 || n > 64 ||
	    strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != n)
		return "the function name has 1 to 64 letters, digits, '-' and '_'";
	if (name[n] && (strchr(name + n + 1, ':') || !name[n + 1]))
		return "only a version or alias may follow the function name";
	return NULL;
}

static enum kr_err lambda_validate(const void *conf, const struct kr_opts_check *chk)
{
	const struct lambda_conf *c = conf;
	enum kr_err e = kr_aws_validate(&c->aws, chk);
	if (e)
		return e;
	const char *why = function_check(c->function);
	if (why)
		return kr_opts_reject(chk, "function", "%s", why);
	if (c->qualifier &&
	    (!*c->qualifier || strlen(c->qualifier) > 128 ||
	     strspn(c->qualifier, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_$") !=
		     strlen(c->qualifier)))
		return kr_opts_reject(chk, "qualifier",
				      "a version ($LATEST, 3) or an alias (letters, digits, '-', '_')");
	if (c->retry_function_errors && c->invocation_type == INVOKE_EVENT)
		return kr_opts_reject(chk, "retry_function_errors",
				      "only RequestResponse invocations see function errors");
	return KR_OK;
}

struct lambda_sink {
	struct kr_aws *aws;
	char *path;
	const char *headers[2];
	char *type_header;
	bool sync, retry_function_errors;
	size_t limit;
	uint64_t timeout_ms;
};

static const struct kr_aws_service lambda_service = {"lambda", "LAMBDA"};

static void lambda_destroy(void *ctx);

static enum kr_err lambda_create(const struct kr_sink_args *a, void **ctx, char *err)
{
	const struct lambda_conf *c = a->conf;
	struct lambda_sink *s = calloc(1, sizeof *s);
	if (!s)
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	s->sync = c->invocation_type == INVOKE_REQUEST_RESPONSE;
	s->limit = s->sync ? SYNC_LIMIT : ASYNC_LIMIT;
	s->retry_function_errors = c->retry_function_errors;
	s->timeout_ms = a->timeout_ms;
	struct kr_buf p = {0};
	bool ok = kr_buf_puts(&p, "/2015-03-31/functions/") &&
		  kr_buf_urlencode(&p, c->function, strlen(c->function)) &&
		  kr_buf_puts(&p, "/invocations");
	if (ok && c->qualifier)
		ok = kr_buf_puts(&p, "?Qualifier=") &&
		     kr_buf_urlencode(&p, c->qualifier, strlen(c->qualifier));
	s->path = p.p;
	enum kr_err e = KR_OK;
	if (!ok || asprintf(&s->type_header, "X-Amz-Invocation-Type: %s",
			    invocation_types[c->invocation_type]) < 0) {
		s->type_header = NULL;
		e = kr_errf(err, KR_ERR_NOMEM, "out of memory");
	}
	s->headers[0] = s->type_header;
	struct kr_aws_conf aws = c->aws;
	char region[64];
	if (!aws.region && arn_region(c->function, region, sizeof region))
		aws.region = region;
	if (!e)
		e = kr_aws_new(a->loop, &aws, &lambda_service, &s->aws, err);
	if (e) {
		lambda_destroy(s);
		return e;
	}
	*ctx = s;
	return KR_OK;
}

/* The function's error: "errorType: errorMessage" of its JSON result, or the result's start. */
static void function_error(const struct kr_http_response *h, const char *kind, char *msg,
			   size_t cap)
{
	struct kr_json *j = NULL;
	const struct kr_json *t = NULL, *m = NULL;
	if (kr_json_parse(h->body, h->body_len, &(struct kr_json_opts){.last_key_wins = true}, &j,
			  NULL, NULL) == KR_OK &&
	    j->type == KR_JSON_OBJECT) {
		t = kr_json_get(j, "errorType");
		m = kr_json_get(j, "errorMessage");
	}
	int n; /* a message cut at cap is fine */
	if (t && t->type == KR_JSON_STRING && m && m->type == KR_JSON_STRING)
		n = snprintf(msg, cap, "%s function error: %s: %s", kind, t->str, m->str);
	else
		n = snprintf(msg, cap, "%s function error: %s", kind, h->body);
	(void)n;
	kr_json_free(j);
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

static void on_done(void *arg, const struct kr_aws_result *r)
{
	struct kr_delivery *d = arg;
	struct lambda_sink *s = d->sink_data;
	d->sink_data = NULL;
	if (!r->ok) {
		kr_delivery_done(d, r->outcome, r->not_before_ms, r->code, r->message);
		return;
	}
	char kind[64];
	if (r->http && kr_http_header(r->http, "X-Amz-Function-Error", kind, sizeof kind)) {
		char msg[320];
		function_error(r->http, kind, msg, sizeof msg);
		kr_delivery_done(d, s->retry_function_errors ? KR_RETRYABLE : KR_PERMANENT, 0,
				 "FunctionError", msg);
		return;
	}
	kr_delivery_done(d, KR_DELIVERED, 0, NULL, NULL);
}

static void lambda_submit(void *ctx, struct kr_delivery *d)
{
	struct lambda_sink *s = ctx;
	if (d->len > s->limit) {
		char msg[160];
		snprintf(msg, sizeof msg, "the payload is %zu bytes; a%s invocation takes at most %zu",
			 d->len, s->sync ? " RequestResponse" : "n Event", s->limit);
		kr_delivery_done(d, KR_PERMANENT, 0, "PayloadTooLarge", msg);
		return;
	}
	d->sink_data = s;
	struct kr_aws_call call = {.path = s->path,
				   .content_type = "application/json",
				   .headers = s->headers,
				   .body = d->payload,
				   .body_len = d->len,
				   .timeout_ms = s->timeout_ms,
				   /* only the start of a result says why the function failed */
				   .max_body = 4096,
				   .body_prefix = true};
	if (kr_aws_send(s->aws, &call, on_done, d) != KR_OK) {
		d->sink_data = NULL;
		kr_delivery_done(d, KR_RETRYABLE, 0, "ENOMEM", "cannot start the request");
	}
}

static void lambda_destroy(void *ctx)
{
	struct lambda_sink *s = ctx;
	kr_aws_free(s->aws);
	free(s->path);
	free(s->type_header);
	free(s);
}

/* How the plugin behaves: `kmsrouter help config TYPE` and kmsrouter.conf(5). */
static const char lambda_doc[] =
	"One Invoke request per event, up to concurrency in flight (default 16). invocation_type "
	"Event (the default) queues the event for the function: Lambda answers at once, runs it "
	"later, and retries it itself. RequestResponse waits for the function: a response with "
	"X-Amz-Function-Error (the function threw, timed out, ran out of memory) is a failure, "
	"sent to the dead letter with the function's error type and message, or retried with "
	"retry_function_errors. A payload over the invocation's limit (256 KiB for Event, 6 MiB "
	"for RequestResponse) goes to the dead letter unsent (PayloadTooLarge). Throttling "
	"(TooManyRequestsException), 5xx and no answer are retried; a function that does not "
	"exist, access denied or a bad signature go to the dead letter.\n\n"
	"function is a name, a full ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]) "
	"or a partial one (ACCOUNT:function:NAME); qualifier a version or alias. The region is a "
	"full ARN's unless region says otherwise.\n\n"
	"IAM (least privilege): lambda:InvokeFunction on the function (on its qualified ARN where "
	"qualifier is set).";

const struct kr_sink_plugin kr_sink_lambda = {
	.name = "lambda",
	.description = "invokes an AWS Lambda function with each event (Event or RequestResponse)",
	.doc = lambda_doc,
	.options = lambda_options,
	.conf_size = sizeof(struct lambda_conf),
	.validate = lambda_validate,
	.create = lambda_create,
	.submit = lambda_submit,
	.destroy = lambda_destroy,
};
