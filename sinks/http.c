/* http sink: webhooks and on-prem services, like EventBridge API destinations.
 *
 * POST (or PUT) each payload to url through kr_http (curl multi on the loop; connections are
 * kept). Headers come from the config; secrets come from environment variables, never from the
 * config file: an API key header (api_key_header + api_key_env) or Basic auth
 * (basic_username_env + basic_password_env), as EventBridge connections do. Outcomes: 2xx
 * delivered; 429 and 5xx retryable, not before Retry-After; other 4xx permanent; no response
 * (refused, timeout, TLS) retryable. rate_limit caps requests per second; the engine's
 * concurrency limit caps requests in flight. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "buf.h"
#include "loop.h"
#include "plugin.h"

struct pending {
	struct kr_delivery *d;
	struct pending *next;
};

struct http_sink {
	char *name;
	char *url;
	char *method;
	char **headers; /* "Name: value", NULL-terminated */
	size_t nheaders;
	const char *user, *password; /* Basic auth, from the environment (not copied) */
	char *ca_file;
	uint64_t timeout_ms;
	uint64_t rate; /* requests per second, 0: no limit */
	double tokens;
	uint64_t tokens_at;
	struct pending *head, *tail; /* waiting for a rate token */
	struct kr_timer *rate_timer;
	struct kr_loop *loop;
	struct kr_http *http;
};

struct http_conf {
	const char *url;
	int method; /* in methods */
	struct kr_strmap headers;
	const char *api_key_header;
	struct kr_secret api_key, basic_user, basic_password;
	uint64_t rate_limit;
	const char *ca_file;
};

static const char *const methods[] = {"POST", "PUT", NULL};
static const char *const schemes[] = {"http", "https", NULL};

static const struct kr_option http_options[] = {
	{.name = "url", .type = KR_OPT_URL, .offset = offsetof(struct http_conf, url),
	 .values = schemes, .required = true, .help = "where each event is sent"},
	{.name = "method", .type = KR_OPT_ENUM, .offset = offsetof(struct http_conf, method),
	 .values = methods, .def = "\"POST\"", .help = "the request method"},
	{.name = "headers", .type = KR_OPT_MAP, .offset = offsetof(struct http_conf, headers),
	 .help = "extra request headers (not secrets)"},
	{.name = "api_key_header", .type = KR_OPT_STRING,
	 .offset = offsetof(struct http_conf, api_key_header),
	 .help = "header that carries the API key (e.g. x-api-key), with api_key_env"},
	{.name = "api_key_env", .type = KR_OPT_SECRET_ENV,
	 .offset = offsetof(struct http_conf, api_key),
	 .help = "environment variable holding the API key, with api_key_header"},
	{.name = "basic_username_env", .type = KR_OPT_SECRET_ENV,
	 .offset = offsetof(struct http_conf, basic_user),
	 .help = "environment variable holding the Basic auth user name"},
	{.name = "basic_password_env", .type = KR_OPT_SECRET_ENV,
	 .offset = offsetof(struct http_conf, basic_password),
	 .help = "environment variable holding the Basic auth password"},
	{.name = "rate_limit", .type = KR_OPT_INT, .offset = offsetof(struct http_conf, rate_limit),
	 .def = "0", .max = 1000000, .help = "requests per second at most (0: no limit)"},
	{.name = "ca_file", .type = KR_OPT_PATH, .offset = offsetof(struct http_conf, ca_file),
	 .help = "CA bundle to verify the server with, besides the system's"},
	{0},
};

/* What the table cannot say: options that go together, and header text that would break the
 * request. */
static enum kr_err http_validate(const void *conf, const struct kr_opts_check *c)
{
	const struct http_conf *h = conf;
	if (!h->api_key_header != !h->api_key.env)
		return kr_opts_reject(c, h->api_key_header ? "api_key_header" : "api_key_env",
				      "api_key_header and api_key_env go together");
	if (!h->basic_user.env != !h->basic_password.env)
		return kr_opts_reject(c, h->basic_user.env ? "basic_username_env"
							   : "basic_password_env",
				      "basic_username_env and basic_password_env go together");
	if (h->api_key_header && (!*h->api_key_header || strpbrk(h->api_key_header, ": \r\n")))
		return kr_opts_reject(c, "api_key_header", "must be a header name");
	for (size_t i = 0; i < h->headers.n; i++)
		if (!*h->headers.keys[i] || strpbrk(h->headers.keys[i], ": \r\n") ||
		    strpbrk(h->headers.values[i], "\r\n"))
			return kr_opts_reject(c, "headers",
					      "header \"%s\" has a forbidden character",
					      h->headers.keys[i]);
	return KR_OK;
}

static void http_destroy(void *ctx);

static enum kr_err add_header(struct http_sink *s, const char *name, const char *value)
{
	char **h = realloc(s->headers, (s->nheaders + 2) * sizeof *h);
	if (!h)
		return KR_ERR_NOMEM;
	s->headers = h;
	size_t n = strlen(name) + strlen(value) + 3;
	if (!(h[s->nheaders] = malloc(n)))
		return KR_ERR_NOMEM;
	snprintf(h[s->nheaders], n, "%s: %s", name, value);
	h[++s->nheaders] = NULL;
	return KR_OK;
}

static enum kr_err http_create(const struct kr_sink_args *a, void **ctx, char *err)
{
	const struct http_conf *c = a->conf;
	struct http_sink *s = calloc(1, sizeof *s);
	if (!s)
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	s->loop = a->loop;
	s->name = strdup(a->name);
	s->url = strdup(c->url);
	s->method = strdup(methods[c->method]);
	s->timeout_ms = a->timeout_ms;
	s->rate = c->rate_limit;
	s->tokens = (double)s->rate;
	s->tokens_at = kr_now_ms();
	if (c->ca_file)
		s->ca_file = strdup(c->ca_file);
	enum kr_err e = KR_OK;
	if (!s->name || !s->url || !s->method || (c->ca_file && !s->ca_file))
		e = kr_errf(err, KR_ERR_NOMEM, "out of memory");
	e = e ? e : add_header(s, "Content-Type", "application/json");
	for (size_t i = 0; !e && i < c->headers.n; i++)
		e = add_header(s, c->headers.keys[i], c->headers.values[i]);
	if (!e && c->api_key_header)
		e = add_header(s, c->api_key_header, c->api_key.value);
	if (c->basic_user.env) {
		s->user = c->basic_user.value;
		s->password = c->basic_password.value;
	}
	if (!e)
		e = kr_http_new(a->loop, &s->http, err);
	if (e) {
		http_destroy(s);
		return e == KR_ERR_NOMEM ? kr_errf(err, e, "out of memory") : e;
	}
	*ctx = s;
	return KR_OK;
}

static void on_response(void *arg, const struct kr_http_response *r)
{
	struct kr_delivery *d = arg;
	char code[32], msg[256];
	if (r->status >= 200 && r->status < 300) {
		kr_delivery_done(d, KR_DELIVERED, 0, NULL, NULL);
		return;
	}
	uint64_t not_before = 0;
	if (r->retry_after_ms >= 0)
		not_before = kr_wall_ms() + (uint64_t)r->retry_after_ms;
	if (r->status == 0) {
		snprintf(code, sizeof code, "%s", r->timed_out ? "Timeout" : "ConnectionError");
		snprintf(msg, sizeof msg, "%s", r->error ? r->error : "no response");
		kr_delivery_done(d, KR_RETRYABLE, 0, code, msg);
		return;
	}
	snprintf(code, sizeof code, "HTTP%ld", r->status);
	/* the start of the body says why; keep it to one line */
	snprintf(msg, sizeof msg, "HTTP %ld: %.200s", r->status, r->body);
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	bool retryable = r->status == 429 || r->status >= 500;
	kr_delivery_done(d, retryable ? KR_RETRYABLE : KR_PERMANENT, not_before, code, msg);
}

static void send_now(struct http_sink *s, struct kr_delivery *d)
{
	struct kr_http_request req = {
		.method = s->method,
		.url = s->url,
		.headers = (const char *const *)s->headers,
		.body = d->payload,
		.body_len = d->len,
		.timeout_ms = s->timeout_ms,
		.auth = s->user ? KR_HTTP_AUTH_BASIC : KR_HTTP_AUTH_NONE,
		.user = s->user,
		.password = s->password,
		.ca_file = s->ca_file,
		/* only the start of a response says why it failed (error_message) */
		.max_body = 4096,
		.body_prefix = true,
	};
	if (kr_http_send(s->http, &req, on_response, d) != KR_OK)
		kr_delivery_done(d, KR_RETRYABLE, 0, "ENOMEM", "cannot start the request");
}

static bool take_token(struct http_sink *s)
{
	if (!s->rate)
		return true;
	uint64_t now = kr_now_ms();
	s->tokens += (double)(now - s->tokens_at) * (double)s->rate / 1000.0;
	s->tokens_at = now;
	if (s->tokens > (double)s->rate)
		s->tokens = (double)s->rate;
	if (s->tokens < 1.0)
		return false;
	s->tokens -= 1.0;
	return true;
}

static void drain_waiting(struct http_sink *s)
{
	while (s->head && take_token(s)) {
		struct pending *p = s->head;
		s->head = p->next;
		if (!s->head)
			s->tail = NULL;
		struct kr_delivery *d = p->d;
		free(p);
		send_now(s, d);
	}
	if (s->head && !kr_timer_active(s->rate_timer))
		kr_timer_start(s->rate_timer, 1000 / s->rate + 1);
}

static void rate_fire(struct kr_loop *l, struct kr_timer *t, void *arg)
{
	(void)l;
	(void)t;
	drain_waiting(arg);
}

static void http_submit(void *ctx, struct kr_delivery *d)
{
	struct http_sink *s = ctx;
	if (!s->head && take_token(s)) {
		send_now(s, d);
		return;
	}
	struct pending *p = malloc(sizeof *p);
	if (!p || (!s->rate_timer && !(s->rate_timer = kr_timer_new(s->loop, rate_fire, s)))) {
		free(p);
		kr_delivery_done(d, KR_RETRYABLE, 0, "ENOMEM", "out of memory");
		return;
	}
	p->d = d;
	p->next = NULL;
	if (s->tail)
		s->tail->next = p;
	else
		s->head = p;
	s->tail = p;
	drain_waiting(s);
}

static void http_destroy(void *ctx)
{
	struct http_sink *s = ctx;
	kr_http_free(s->http); /* completes requests in flight */
	while (s->head) {
		struct pending *p = s->head;
		s->head = p->next;
		kr_delivery_done(p->d, KR_RETRYABLE, 0, "Closed", "the sink was closed");
		free(p);
	}
	kr_timer_free(s->rate_timer);
	for (size_t i = 0; i < s->nheaders; i++)
		free(s->headers[i]);
	free(s->headers);
	free(s->ca_file);
	free(s->name);
	free(s->url);
	free(s->method);
	free(s);
}

/* How the plugin behaves: `kmsrouter help config TYPE` and kmsrouter.conf(5). */
static const char http_doc[] =
	"Sends each payload as the body of one request (method) to url, like EventBridge API "
	"destinations, with up to concurrency requests in flight (default 16); connections are "
	"kept. headers adds request headers written in the file. Secrets come from environment "
	"variables, never from the file, and never reach logs: an API key header (api_key_header "
	"+ api_key_env) or Basic auth (basic_username_env + basic_password_env), as EventBridge "
	"connections do. rate_limit caps requests per second: deliveries wait for their turn. The "
	"server is verified against the system's CA bundle and ca_file.\n\n"
	"A 2xx answer is delivered. 429 and 5xx are retried, not before Retry-After; no answer "
	"(refused, timeout, TLS) is retried; any other status goes straight to the dead letter. "
	"The error code is HTTPnnn (the status), Timeout or ConnectionError, and the message "
	"holds the start of the response's body.";

const struct kr_sink_plugin kr_sink_http = {
	.name = "http",
	.description = "POSTs (or PUTs) each event to an HTTP endpoint, like EventBridge API destinations",
	.doc = http_doc,
	.options = http_options,
	.conf_size = sizeof(struct http_conf),
	.validate = http_validate,
	.create = http_create,
	.submit = http_submit,
	.destroy = http_destroy,
};
