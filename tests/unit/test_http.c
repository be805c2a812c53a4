/* Unit tests for router/http.h against a small HTTP/1.1 server on loopback (a thread of this
 * test): methods and bodies, request and response headers, the response size limit, one
 * connection shared by two clients of one loop, Basic and SigV4 auth, and proxies from the
 * environment. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "http.h"
#include "loop.h"

/* ---- the server: keep-alive connections, one request at a time each ---- */

static int listen_fd;
static int port;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int connections;       /* accepted */
static char last_request[16384]; /* request line, headers and body of the last request */

static void *serve_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[65536];
	size_t have = 0;
	for (;;) {
		char *end;
		while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
			ssize_t r = read(fd, buf + have, sizeof buf - have - 1);
			if (r <= 0)
				goto out;
			have += (size_t)r;
		}
		size_t head = (size_t)(end - buf) + 4;
		buf[have] = 0;
		size_t clen = 0;
		char *cl = strcasestr(buf, "\r\ncontent-length:");
		if (cl && cl < end)
			clen = strtoul(cl + 17, NULL, 10);
		while (have < head + clen) {
			ssize_t r = read(fd, buf + have, sizeof buf - have - 1);
			if (r <= 0)
				goto out;
			have += (size_t)r;
		}
		pthread_mutex_lock(&mu);
		size_t n = head + clen < sizeof last_request - 1 ? head + clen : sizeof last_request - 1;
		memcpy(last_request, buf, n);
		last_request[n] = 0;
		pthread_mutex_unlock(&mu);
		char path[256] = "";
		sscanf(buf, "%*s %255s", path);
		char resp[512];
		if (strstr(path, "/big")) {
			size_t big = 2 * 1024 * 1024;
			int h = snprintf(resp, sizeof resp,
					 "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", big);
			if (write(fd, resp, (size_t)h) != h)
				goto out;
			char *body = malloc(big);
			memset(body, 'x', big);
			size_t off = 0;
			while (off < big) {
				ssize_t w = write(fd, body + off, big - off);
				if (w <= 0)
					break;
				off += (size_t)w;
			}
			free(body);
		} else {
			static const char ok[] = "HTTP/1.1 200 OK\r\nX-Test:  yes please \r\n"
						 "Retry-After: 3\r\nContent-Length: 2\r\n\r\nok";
			if (write(fd, ok, sizeof ok - 1) != (ssize_t)(sizeof ok - 1))
				goto out;
		}
		memmove(buf, buf + head + clen, have - head - clen);
		have -= head + clen;
	}
out:
	close(fd);
	return NULL;
}

static void *serve(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept(listen_fd, NULL, NULL);
		if (fd < 0)
			return NULL;
		pthread_mutex_lock(&mu);
		connections++;
		pthread_mutex_unlock(&mu);
		pthread_t t;
		pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)fd);
		pthread_detach(t);
	}
}

static int setup(void **state)
{
	(void)state;
	listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof a;
	if (bind(listen_fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(listen_fd, 16) != 0 ||
	    getsockname(listen_fd, (struct sockaddr *)&a, &l) != 0)
		return -1;
	port = ntohs(a.sin_port);
	pthread_t t;
	pthread_create(&t, NULL, serve, NULL);
	pthread_detach(t);
	/* no proxy from the test's own environment */
	unsetenv("http_proxy");
	unsetenv("HTTPS_PROXY");
	unsetenv("https_proxy");
	unsetenv("no_proxy");
	unsetenv("NO_PROXY");
	return 0;
}

/* ---- the client side ---- */

struct result {
	bool done;
	long status;
	char error[256];
	bool too_large;
	size_t body_len;
	char body[64];
	char x_test[64];
	int64_t retry_after_ms;
};

static void on_done(void *arg, const struct kr_http_response *r)
{
	struct result *res = arg;
	res->done = true;
	res->status = r->status;
	snprintf(res->error, sizeof res->error, "%s", r->error ? r->error : "");
	res->too_large = r->too_large;
	res->body_len = r->body_len;
	snprintf(res->body, sizeof res->body, "%s", r->body);
	char v[64];
	snprintf(res->x_test, sizeof res->x_test, "%s",
		 kr_http_header(r, "x-test", v, sizeof v) ? v : "(none)");
	res->retry_after_ms = r->retry_after_ms;
}

static void run_until(struct kr_loop *l, struct result *const *rs, size_t n)
{
	uint64_t deadline = kr_now_ms() + 10000;
	for (;;) {
		bool all = true;
		for (size_t i = 0; i < n; i++)
			all = all && rs[i]->done;
		if (all)
			return;
		assert_true(kr_now_ms() < deadline);
		kr_loop_run_once(l, 50);
	}
}

static void request(struct kr_http *h, struct kr_loop *l, struct kr_http_request *req,
		    struct result *res)
{
	memset(res, 0, sizeof *res);
	assert_int_equal(kr_http_send(h, req, on_done, res), KR_OK);
	struct result *rs[] = {res};
	run_until(l, rs, 1);
}

static char *url(const char *path)
{
	static char u[128];
	snprintf(u, sizeof u, "http://127.0.0.1:%d%s", port, path);
	return u;
}

static void test_methods_bodies_and_headers(void **state)
{
	(void)state;
	struct kr_loop *l = kr_loop_new();
	struct kr_http *h;
	char err[512];
	assert_int_equal(kr_http_new(l, &h, err), KR_OK);
	struct result r;
	const char *hd[] = {"X-Mine: 1", NULL};
	struct kr_http_request get = {.method = "GET", .url = url("/g"), .headers = hd};
	request(h, l, &get, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "ok");
	assert_string_equal(r.x_test, "yes please");
	assert_int_equal(r.retry_after_ms, 3000);
	assert_non_null(strstr(last_request, "GET /g HTTP/1.1\r\n"));
	assert_non_null(strstr(last_request, "X-Mine: 1\r\n"));
	assert_null(strcasestr(last_request, "content-length"));
	struct kr_http_request put = {.method = "PUT", .url = url("/p"), .body = "{\"a\":1}",
				      .body_len = 7};
	request(h, l, &put, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(last_request, "PUT /p HTTP/1.1\r\n"));
	assert_non_null(strstr(last_request, "\r\n\r\n{\"a\":1}"));
	struct kr_http_request del = {.method = "DELETE", .url = url("/d")};
	request(h, l, &del, &r);
	assert_non_null(strstr(last_request, "DELETE /d HTTP/1.1\r\n"));
	assert_int_equal(kr_http_pending(h), 0);
	kr_http_free(h);
	kr_loop_free(l);
}

static void test_the_response_size_limit(void **state)
{
	(void)state;
	struct kr_loop *l = kr_loop_new();
	struct kr_http *h;
	char err[512];
	assert_int_equal(kr_http_new(l, &h, err), KR_OK);
	struct result r;
	struct kr_http_request req = {.method = "GET", .url = url("/big"), .max_body = 1000};
	request(h, l, &req, &r);
	assert_int_equal(r.status, 0);
	assert_true(r.too_large);
	assert_non_null(strstr(r.error, "larger than 1000 bytes"));
	req.body_prefix = true;
	request(h, l, &req, &r);
	assert_int_equal(r.status, 200);
	assert_true(r.too_large);
	assert_int_equal(r.body_len, 1000);
	req.max_body = 0; /* 1 MiB by default: 2 MiB is too large */
	req.body_prefix = false;
	request(h, l, &req, &r);
	assert_true(r.too_large);
	req.max_body = 3 * 1024 * 1024;
	request(h, l, &req, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 2 * 1024 * 1024);
	kr_http_free(h);
	kr_loop_free(l);
}

static void test_two_clients_of_a_loop_share_a_connection(void **state)
{
	(void)state;
	struct kr_loop *l = kr_loop_new();
	struct kr_http *a, *b;
	char err[512];
	assert_int_equal(kr_http_new(l, &a, err), KR_OK);
	assert_int_equal(kr_http_new(l, &b, err), KR_OK);
	struct result r;
	struct kr_http_request req = {.method = "GET", .url = url("/shared")};
	pthread_mutex_lock(&mu);
	int before = connections;
	pthread_mutex_unlock(&mu);
	request(a, l, &req, &r);
	request(b, l, &req, &r);
	request(a, l, &req, &r);
	pthread_mutex_lock(&mu);
	int opened = connections - before;
	pthread_mutex_unlock(&mu);
	assert_int_equal(opened, 1);
	/* freeing one client leaves the other working */
	kr_http_free(a);
	request(b, l, &req, &r);
	assert_int_equal(r.status, 200);
	kr_http_free(b);
	kr_loop_free(l);
}

static void test_basic_and_sigv4_auth(void **state)
{
	(void)state;
	struct kr_loop *l = kr_loop_new();
	struct kr_http *h;
	char err[512];
	assert_int_equal(kr_http_new(l, &h, err), KR_OK);
	struct result r;
	struct kr_http_request basic = {.method = "POST", .url = url("/b"), .body = "x",
					.body_len = 1, .auth = KR_HTTP_AUTH_BASIC, .user = "u",
					.password = "p"};
	request(h, l, &basic, &r);
	assert_non_null(strstr(last_request, "Authorization: Basic dTpw\r\n")); /* u:p */
	const char *hd[] = {"Content-Type: application/x-amz-json-1.0", NULL};
	struct kr_http_request sig = {.method = "POST", .url = url("/"), .headers = hd,
				      .body = "{}", .body_len = 2, .auth = KR_HTTP_AUTH_SIGV4,
				      .user = "AKIDEXAMPLE", .password = "wJalrXUtnFEMI/K7MDENG",
				      .token = "SESSIONTOKEN", .region = "eu-west-1",
				      .service = "sqs"};
	request(h, l, &sig, &r);
	assert_non_null(strstr(last_request, "Authorization: AWS4-HMAC-SHA256 "
					     "Credential=AKIDEXAMPLE/"));
	assert_non_null(strstr(last_request, "/eu-west-1/sqs/aws4_request"));
	assert_non_null(strstr(last_request, "X-Amz-Security-Token: SESSIONTOKEN\r\n"));
	assert_non_null(strcasestr(last_request, "x-amz-date: "));
	/* the user name is not sent as Basic auth, and the secret key never travels */
	assert_null(strstr(last_request, "Basic "));
	assert_null(strstr(last_request, "wJalrXUtnFEMI"));
	kr_http_free(h);
	kr_loop_free(l);
}

static void test_proxies_come_from_the_environment(void **state)
{
	(void)state;
	char proxy[64];
	snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", port);
	setenv("http_proxy", proxy, 1);
	struct kr_loop *l = kr_loop_new();
	struct kr_http *h;
	char err[512];
	assert_int_equal(kr_http_new(l, &h, err), KR_OK);
	struct result r;
	struct kr_http_request req = {.method = "GET", .url = "http://kmsrouter.invalid/via",
				      .timeout_ms = 3000};
	request(h, l, &req, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(last_request, "GET http://kmsrouter.invalid/via HTTP/1.1\r\n"));
	/* NO_PROXY: straight to the host (which does not resolve) */
	setenv("NO_PROXY", "kmsrouter.invalid", 1);
	request(h, l, &req, &r);
	assert_int_equal(r.status, 0);
	assert_true(r.error[0] != 0);
	unsetenv("NO_PROXY");
	unsetenv("http_proxy");
	kr_http_free(h);
	kr_loop_free(l);
}

static void test_freeing_a_client_completes_its_requests(void **state)
{
	(void)state;
	struct kr_loop *l = kr_loop_new();
	struct kr_http *h;
	char err[512];
	assert_int_equal(kr_http_new(l, &h, err), KR_OK);
	struct result r = {0};
	struct kr_http_request req = {.method = "GET", .url = url("/g")};
	assert_int_equal(kr_http_send(h, &req, on_done, &r), KR_OK);
	assert_int_equal(kr_http_pending(h), 1);
	kr_http_free(h);
	assert_true(r.done);
	assert_string_equal(r.error, "the client was closed");
	kr_loop_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_methods_bodies_and_headers),
		cmocka_unit_test(test_the_response_size_limit),
		cmocka_unit_test(test_two_clients_of_a_loop_share_a_connection),
		cmocka_unit_test(test_basic_and_sigv4_auth),
		cmocka_unit_test(test_proxies_come_from_the_environment),
		cmocka_unit_test(test_freeing_a_client_completes_its_requests),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
