/* HTTP on curl multi, driven by kr_loop (see http.h). */
#include "http.h"

#include <curl/curl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "dynlib.h"

#define BODY_KEEP (64u * 1024u)

/* libcurl, loaded by the first kr_http_new (see dynlib.h) */
static struct curl_api {
	CURLcode (*global_init)(long);
	CURLM *(*multi_init)(void);
	CURLMcode (*multi_setopt)(CURLM *, CURLMoption, ...);
	CURLMcode (*multi_add_handle)(CURLM *, CURL *);
	CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
	CURLMcode (*multi_socket_action)(CURLM *, curl_socket_t, int, int *);
	CURLMsg *(*multi_info_read)(CURLM *, int *);
	CURLMcode (*multi_cleanup)(CURLM *);
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
	const char *(*easy_strerror)(CURLcode);
	void (*easy_cleanup)(CURL *);
	struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
	void (*slist_free_all)(struct curl_slist *);
} C;

#define SYM(f) {"curl_" #f, offsetof(struct curl_api, f)}
static const struct kr_dynsym curl_syms[] = {
	SYM(global_init), SYM(multi_init), SYM(multi_setopt), SYM(multi_add_handle),
	SYM(multi_remove_handle), SYM(multi_socket_action), SYM(multi_info_read),
	SYM(multi_cleanup), SYM(easy_init), SYM(easy_setopt), SYM(easy_getinfo),
	SYM(easy_strerror), SYM(easy_cleanup), SYM(slist_append), SYM(slist_free_all),
};
#undef SYM

static enum kr_err init_curl(char *err)
{
	return C.global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK
		       ? KR_OK
		       : kr_errf(err, KR_ERR_IO, "libcurl could not be initialised");
}

static struct kr_dynlib curl = {.soname = "libcurl.so.4",
				.syms = curl_syms,
				.nsyms = sizeof curl_syms / sizeof curl_syms[0],
				.table = &C,
				.init = init_curl};

struct transfer {
	struct kr_http *h;
	CURL *easy;
	struct curl_slist *headers;
	kr_http_done_fn done;
	void *arg;
	char *body;
	size_t body_len;
	int64_t retry_after_ms;
	char errbuf[CURL_ERROR_SIZE];
	struct transfer *next, *prev;
};

struct kr_http {
	struct kr_loop *loop;
	CURLM *multi;
	struct kr_timer *timer;
	struct transfer *active;
};

static void check_done(struct kr_http *h)
{
	CURLMsg *msg;
	int left;
	while ((msg = C.multi_info_read(h->multi, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		CURL *easy = msg->easy_handle;
		CURLcode code = msg->data.result;
		struct transfer *t = NULL;
		C.easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
		struct kr_http_response r = {.retry_after_ms = t->retry_after_ms};
		C.easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r.status);
		if (code != CURLE_OK) {
			r.error = t->errbuf[0] ? t->errbuf : C.easy_strerror(code);
			r.timed_out = code == CURLE_OPERATION_TIMEDOUT;
			r.status = 0;
		}
		r.body = t->body ? t->body : "";
		r.body_len = t->body_len;
		C.multi_remove_handle(h->multi, easy);
		if (t->prev)
			t->prev->next = t->next;
		else
			h->active = t->next;
		if (t->next)
			t->next->prev = t->prev;
		t->done(t->arg, &r);
		C.easy_cleanup(easy);
		C.slist_free_all(t->headers);
		free(t->body);
		free(t);
	}
}

static void on_io(struct kr_loop *l, int fd, unsigned events, void *arg)
{
	(void)l;
	struct kr_http *h = arg;
	int flags = (events & KR_IO_READ ? CURL_CSELECT_IN : 0) |
		    (events & KR_IO_WRITE ? CURL_CSELECT_OUT : 0);
	int running;
	C.multi_socket_action(h->multi, fd, flags, &running);
	check_done(h);
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	(void)easy;
	(void)socketp;
	struct kr_http *h = userp;
	if (what == CURL_POLL_REMOVE) {
		kr_loop_unwatch(h->loop, s);
		return 0;
	}
	unsigned ev = (what == CURL_POLL_IN || what == CURL_POLL_INOUT ? KR_IO_READ : 0) |
		      (what == CURL_POLL_OUT || what == CURL_POLL_INOUT ? KR_IO_WRITE : 0);
	return kr_loop_watch(h->loop, s, ev, on_io, h) == 0 ? 0 : -1;
}

static void on_timer(struct kr_loop *l, struct kr_timer *t, void *arg)
{
	(void)l;
	(void)t;
	struct kr_http *h = arg;
	int running;
	C.multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(h);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	(void)multi;
	struct kr_http *h = userp;
	if (timeout_ms < 0)
		kr_timer_stop(h->timer);
	else
		kr_timer_start(h->timer, (uint64_t)timeout_ms);
	return 0;
}

static size_t write_cb(char *data, size_t size, size_t n, void *userp)
{
	struct transfer *t = userp;
	size_t len = size * n;
	size_t keep = t->body_len < BODY_KEEP ? BODY_KEEP - t->body_len : 0;
	if (keep > len)
		keep = len;
	if (keep) {
		char *b = realloc(t->body, t->body_len + keep + 1);
		if (!b)
			return 0;
		memcpy(b + t->body_len, data, keep);
		t->body = b;
		t->body_len += keep;
		b[t->body_len] = 0;
	}
	return len;
}

/* Retry-After: delay-seconds or an HTTP-date */
static size_t header_cb(char *data, size_t size, size_t n, void *userp)
{
	struct transfer *t = userp;
	size_t len = size * n;
	static const char name[] = "retry-after:";
	if (len > sizeof name - 1 && strncasecmp(data, name, sizeof name - 1) == 0) {
		char v[128];
		size_t vl = len - (sizeof name - 1);
		if (vl >= sizeof v)
			vl = sizeof v - 1;
		memcpy(v, data + sizeof name - 1, vl);
		v[vl] = 0;
		char *p = v;
		while (*p == ' ' || *p == '\t')
			p++;
		p[strcspn(p, "\r\n")] = 0;
		char *end;
		long secs = strtol(p, &end, 10);
		if (end != p && *end == 0 && secs >= 0) {
			t->retry_after_ms = (int64_t)secs * 1000;
		} else {
			struct tm tm = {0};
			if (strptime(p, "%a, %d %b %Y %H:%M:%S GMT", &tm)) {
				int64_t at = (int64_t)timegm(&tm) * 1000;
				struct timespec ts;
				clock_gettime(CLOCK_REALTIME, &ts);
				int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
				t->retry_after_ms = at > now ? at - now : 0;
			}
		}
	}
	return len;
}

enum kr_err kr_http_new(struct kr_loop *loop, struct kr_http **out, char *err)
{
	enum kr_err e = kr_dynlib_load(&curl, err);
	if (e)
		return e;
	struct kr_http *h = calloc(1, sizeof *h);
	if (!h)
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	h->loop = loop;
	h->multi = C.multi_init();
	h->timer = kr_timer_new(loop, on_timer, h);
	if (!h->multi || !h->timer) {
		kr_http_free(h);
		return kr_errf(err, KR_ERR_NOMEM, "cannot start the HTTP client");
	}
	C.multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	C.multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	C.multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	C.multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	*out = h;
	return KR_OK;
}

void kr_http_free(struct kr_http *h)
{
	if (!h)
		return;
	while (h->active) {
		struct transfer *t = h->active;
		h->active = t->next;
		C.multi_remove_handle(h->multi, t->easy);
		struct kr_http_response r = {.error = "the client was closed", .retry_after_ms = -1,
					     .body = ""};
		t->done(t->arg, &r);
		C.easy_cleanup(t->easy);
		C.slist_free_all(t->headers);
		free(t->body);
		free(t);
	}
	if (h->multi)
		C.multi_cleanup(h->multi);
	kr_timer_free(h->timer);
	free(h);
}

enum kr_err kr_http_send(struct kr_http *h, const struct kr_http_request *req,
			 kr_http_done_fn done, void *arg)
{
	struct transfer *t = calloc(1, sizeof *t);
	if (!t)
		return KR_ERR_NOMEM;
	t->h = h;
	t->done = done;
	t->arg = arg;
	t->retry_after_ms = -1;
	t->easy = C.easy_init();
	if (!t->easy) {
		free(t);
		return KR_ERR_NOMEM;
	}
	CURL *e = t->easy;
	for (const char *const *hd = req->headers; hd && *hd; hd++) {
		struct curl_slist *l = C.slist_append(t->headers, *hd);
		if (!l) {
			C.slist_free_all(t->headers);
			C.easy_cleanup(e);
			free(t);
			return KR_ERR_NOMEM;
		}
		t->headers = l;
	}
	/* no "Expect: 100-continue" round trip before a body */
	struct curl_slist *l = C.slist_append(t->headers, "Expect:");
	if (l)
		t->headers = l;
	C.easy_setopt(e, CURLOPT_URL, req->url);
	C.easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
	C.easy_setopt(e, CURLOPT_POST, 1L);
	C.easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
	C.easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
	C.easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
	C.easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)req->timeout_ms);
	C.easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)req->timeout_ms);
	C.easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	C.easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	C.easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	C.easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	C.easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	C.easy_setopt(e, CURLOPT_WRITEDATA, t);
	C.easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
	C.easy_setopt(e, CURLOPT_HEADERDATA, t);
	C.easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
	C.easy_setopt(e, CURLOPT_PRIVATE, t);
	if (req->userpwd) {
		C.easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		C.easy_setopt(e, CURLOPT_USERPWD, req->userpwd);
	}
	if (req->ca_file)
		C.easy_setopt(e, CURLOPT_CAINFO, req->ca_file);
	if (C.multi_add_handle(h->multi, e) != CURLM_OK) {
		C.slist_free_all(t->headers);
		C.easy_cleanup(e);
		free(t);
		return KR_ERR_NOMEM;
	}
	t->next = h->active;
	if (h->active)
		h->active->prev = t;
	h->active = t;
	return KR_OK;
}
