/* Unit tests for sinks/http.c with a fake HTTP client (this file defines the kr_http_* functions
 * of router/io/http.h, so the real client is not linked) inside the real engine: what each
 * request carries, and what each answer does to the delivery (delivered, retried not before
 * Retry-After, dead-lettered with the reason). No server, no daemon. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "engine.h"
#include "http.h"
#include "loop.h"
#include "metrics.h"
#include "plugin.h"
#include "stream.h"

/* ---- the fake client ---- */

struct fake_req {
	char method[16], url[256], body[1024];
	char headers[1024]; /* "Name: value\n"... */
	enum kr_http_auth auth;
	char user[64], password[64];
	kr_http_done_fn done;
	void *arg;
	bool answered;
};

static struct fake_req reqs[32];
static size_t nreqs;
struct kr_http {
	int unused;
};
static struct kr_http the_client;

enum kr_err kr_http_new(struct kr_loop *loop, struct kr_http **out, char *err)
{
	(void)loop;
	(void)err;
	*out = &the_client;
	return KR_OK;
}

void kr_http_free(struct kr_http *h)
{
	(void)h;
}

size_t kr_http_pending(const struct kr_http *h)
{
	(void)h;
	return 0;
}

const char *kr_http_header(const struct kr_http_response *r, const char *name, char *out,
			   size_t cap)
{
	(void)r;
	(void)name;
	(void)out;
	(void)cap;
	return NULL;
}

/* the AWS sinks' credential fetches (not used by the http sink) */
enum kr_err kr_http_send_sync(const struct kr_http_request *req, kr_http_done_fn done, void *arg,
			      char *err)
{
	(void)req;
	(void)done;
	(void)arg;
	return kr_errf(err, KR_ERR_UNAVAILABLE, "no network in this test");
}

enum kr_err kr_http_send(struct kr_http *h, const struct kr_http_request *req,
			 kr_http_done_fn done, void *arg)
{
	(void)h;
	assert_true(nreqs < 32);
	struct fake_req *r = &reqs[nreqs++];
	memset(r, 0, sizeof *r);
	snprintf(r->method, sizeof r->method, "%s", req->method);
	snprintf(r->url, sizeof r->url, "%s", req->url);
	snprintf(r->body, sizeof r->body, "%.*s", (int)req->body_len, req->body);
	for (const char *const *hd = req->headers; hd && *hd; hd++) {
		size_t l = strlen(r->headers);
		snprintf(r->headers + l, sizeof r->headers - l, "%s\n", *hd);
	}
	r->auth = req->auth;
	snprintf(r->user, sizeof r->user, "%s", req->user ? req->user : "");
	snprintf(r->password, sizeof r->password, "%s", req->password ? req->password : "");
	r->done = done;
	r->arg = arg;
	return KR_OK;
}

static void answer(size_t i, long status, const char *body, int64_t retry_after_ms,
		   const char *error)
{
	struct kr_http_response resp = {.status = status, .body = body ? body : "",
					.body_len = body ? strlen(body) : 0,
					.retry_after_ms = retry_after_ms, .error = error,
					.headers = ""};
	assert_false(reqs[i].answered);
	reqs[i].answered = true;
	reqs[i].done(reqs[i].arg, &resp);
}

/* ---- a source the test feeds ---- */

static struct kr_source_handle *handle;

static enum kr_err src_create(const struct kr_source_args *a, void **ctx, char *err)
{
	(void)err;
	handle = a->handle;
	*ctx = NULL;
	return KR_OK;
}

static enum kr_pull src_pull(void *ctx)
{
	(void)ctx;
	return KR_PULL_WAIT;
}

static void src_ack(void *ctx, const struct kr_ack *a)
{
	(void)ctx;
	(void)a;
}

static void src_destroy(void *ctx)
{
	(void)ctx;
}

static const struct kr_source_plugin fake_source = {
	.name = "fake", .pull = src_pull, .ack = src_ack, .create = src_create,
	.destroy = src_destroy};

/* ---- harness ---- */

struct h {
	struct kr_loop *loop;
	struct kr_metrics *metrics;
	struct kr_engine *e;
	struct kr_input *in;
	char dlq[4096];
};

static void start(struct h *t, const char *sink_json)
{
	nreqs = 0;
	char text[8192];
	snprintf(text, sizeof text,
		 "{\"sinks\": [%s, {\"name\": \"dlq\", \"type\": \"log\", \"path\": \"%s\"}],"
		 " \"rules\": [{\"name\": \"all\", \"pattern\": {\"source\": [\"aws.kms\"]},"
		 "             \"targets\": [\"web\"]}]}",
		 sink_json, t->dlq);
	struct kr_config *c = NULL;
	char err[KR_ERRBUF];
	if (kr_config_parse("cfg.json", text, strlen(text), &c, err) != KR_OK)
		fail_msg("%s", err);
	t->loop = kr_loop_new();
	t->metrics = kr_metrics_new();
	assert_int_equal(kr_engine_new(t->loop, c, NULL, t->metrics, &t->e, err), KR_OK);
	assert_int_equal(kr_engine_add_source(t->e, "fake", &fake_source, NULL, NULL, err), KR_OK);
	struct kr_input_opts o = {.name = "f", .id = 1};
	t->in = kr_input_open(handle, &o);
}

static void feed(struct h *t, const char *id)
{
	char ev[256];
	int n = snprintf(ev, sizeof ev, "{\"id\":\"%s\",\"source\":\"aws.kms\"}\n", id);
	struct kr_stream *s = kr_input_stream(t->in);
	memcpy(kr_stream_reserve(s, (size_t)n), ev, (size_t)n);
	assert_int_equal(kr_stream_commit(s, (size_t)n), KR_OK);
	kr_engine_step(t->e);
}

static void stop(struct h *t)
{
	kr_engine_free(t->e);
	kr_metrics_free(t->metrics);
	kr_loop_free(t->loop);
	remove(t->dlq);
}

static char *read_dlq(struct h *t)
{
	static char buf[8192];
	FILE *f = fopen(t->dlq, "r");
	size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
	if (f)
		fclose(f);
	buf[n] = 0;
	return buf;
}

static void set_dlq(struct h *t, const char *name)
{
	snprintf(t->dlq, sizeof t->dlq, "/tmp/kr-test-http-sink-%d-%s.jsonl", (int)getpid(), name);
	remove(t->dlq);
}

/* ---- tests ---- */

static void test_a_request_carries_the_event_the_headers_and_the_api_key(void **state)
{
	(void)state;
	setenv("KR_TEST_API_KEY", "k3y", 1);
	struct h t;
	set_dlq(&t, "a");
	start(&t, "{\"name\": \"web\", \"type\": \"http\", \"url\": \"https://h.example/in\","
		  " \"method\": \"PUT\", \"headers\": {\"X-Team\": \"sec\"},"
		  " \"api_key_header\": \"x-api-key\", \"api_key_env\": \"KR_TEST_API_KEY\"}");
	feed(&t, "e1");
	assert_int_equal(nreqs, 1);
	assert_string_equal(reqs[0].method, "PUT");
	assert_string_equal(reqs[0].url, "https://h.example/in");
	assert_non_null(strstr(reqs[0].body, "\"id\":\"e1\""));
	assert_non_null(strstr(reqs[0].headers, "Content-Type: application/json\n"));
	assert_non_null(strstr(reqs[0].headers, "X-Team: sec\n"));
	assert_non_null(strstr(reqs[0].headers, "x-api-key: k3y\n"));
	assert_int_equal(reqs[0].auth, KR_HTTP_AUTH_NONE);
	answer(0, 204, NULL, -1, NULL);
	kr_engine_step(t.e);
	struct kr_engine_totals tot;
	kr_engine_totals(t.e, &tot);
	assert_int_equal(tot.delivered, 1);
	assert_int_equal(tot.unacked, 0);
	stop(&t);
}

static void test_basic_auth_comes_from_the_environment(void **state)
{
	(void)state;
	setenv("KR_TEST_USER", "alice", 1);
	setenv("KR_TEST_PASS", "pw", 1);
	struct h t;
	set_dlq(&t, "b");
	start(&t, "{\"name\": \"web\", \"type\": \"http\", \"url\": \"http://h/\","
		  " \"basic_username_env\": \"KR_TEST_USER\","
		  " \"basic_password_env\": \"KR_TEST_PASS\"}");
	feed(&t, "e1");
	assert_int_equal(reqs[0].auth, KR_HTTP_AUTH_BASIC);
	assert_string_equal(reqs[0].user, "alice");
	assert_string_equal(reqs[0].password, "pw");
	answer(0, 200, NULL, -1, NULL);
	stop(&t);
}

static void test_a_client_error_goes_to_the_dead_letter_with_the_reason(void **state)
{
	(void)state;
	struct h t;
	set_dlq(&t, "c");
	start(&t, "{\"name\": \"web\", \"type\": \"http\", \"url\": \"http://h/\","
		  " \"dead_letter\": \"dlq\"}");
	feed(&t, "e1");
	answer(0, 400, "{\"message\":\"bad\nthing\"}", -1, NULL);
	kr_engine_step(t.e);
	kr_engine_step(t.e);
	char *dl = read_dlq(&t);
	assert_non_null(strstr(dl, "\"error_code\":\"HTTP400\""));
	assert_non_null(strstr(dl, "HTTP 400: {\\\"message\\\":\\\"bad thing\\\"}"));
	assert_non_null(strstr(dl, "\"attempts\":1"));
	assert_int_equal(nreqs, 1); /* permanent: not retried */
	stop(&t);
}

static void test_throttling_is_retried_not_before_retry_after(void **state)
{
	(void)state;
	struct h t;
	set_dlq(&t, "d");
	start(&t, "{\"name\": \"web\", \"type\": \"http\", \"url\": \"http://h/\","
		  " \"retry\": {\"max_attempts\": 3, \"initial_backoff_ms\": 1,"
		  "           \"max_backoff_ms\": 2}}");
	feed(&t, "e1");
	uint64_t t0 = kr_now_ms();
	answer(0, 429, "slow down", 150, NULL);
	while (nreqs < 2 && kr_now_ms() - t0 < 3000) {
		kr_loop_run_once(t.loop, 10);
		kr_engine_step(t.e);
	}
	assert_int_equal(nreqs, 2);
	assert_true(kr_now_ms() - t0 >= 140);
	/* a server error and a transport error are retried too */
	answer(1, 503, "busy", -1, NULL);
	while (nreqs < 3 && kr_now_ms() - t0 < 3000) {
		kr_loop_run_once(t.loop, 5);
		kr_engine_step(t.e);
	}
	assert_int_equal(nreqs, 3);
	answer(2, 0, NULL, -1, "Connection refused");
	kr_engine_step(t.e);
	struct kr_engine_totals tot;
	kr_engine_totals(t.e, &tot);
	assert_int_equal(tot.failed_records, 1); /* 3 attempts, no dead letter */
	stop(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_request_carries_the_event_the_headers_and_the_api_key),
		cmocka_unit_test(test_basic_auth_comes_from_the_environment),
		cmocka_unit_test(test_a_client_error_goes_to_the_dead_letter_with_the_reason),
		cmocka_unit_test(test_throttling_is_retried_not_before_retry_after),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
