/* HTTP on curl multi, driven by kr_loop (see http.h).
 *
 * The loop's multi handle (struct shared) lives while a client of that loop does; curl keeps
 * its connection cache there, which is what lets two plugins reuse one connection. */
#include "http.h"
#include "sigv4.h"

#include <curl/curl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "dynlib.h"

#define DEFAULT_MAX_BODY (1024u * 1024u)
#define MAX_HEADERS (64u * 1024u) /* response header bytes kept */

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
	CURLcode (*easy_perform)(CURL *);
	CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
	const char *(*easy_strerror)(CURLcode);
	void (*easy_cleanup)(CURL *);
	void (*easy_reset)(CURL *);
	struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
	void (*slist_free_all)(struct curl_slist *);
} C;

#define SYM(f) {"curl_" #f, offsetof(struct curl_api, f)}
static const struct kr_dynsym curl_syms[] = {
	SYM(global_init), SYM(multi_init), SYM(multi_setopt), SYM(multi_add_handle),
	SYM(multi_remove_handle), SYM(multi_socket_action), SYM(multi_info_read),
	SYM(multi_cleanup), SYM(easy_init), SYM(easy_setopt), SYM(easy_perform), SYM(easy_getinfo),
	SYM(easy_strerror), SYM(easy_cleanup), SYM(easy_reset), SYM(slist_append),
	SYM(slist_free_all),
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
	size_t body_len, body_cap, max_body;
	bool too_large, body_prefix;
	bool unpooled; /* kr_http_send_sync: the handle is cleaned up, not kept in this thread's pool
			  (a thread of its own would leave it there when it ends) */
	char *resp_headers;
	size_t resp_headers_len, resp_headers_cap;
	int64_t retry_after_ms;
	char errbuf[CURL_ERROR_SIZE];
	struct transfer *next, *prev;
};

/* The curl multi handle of one loop, shared by its clients. */
struct shared {
	struct kr_loop *loop;
	CURLM *multi;
	struct kr_timer *timer;
	unsigned refs;
	size_t running, most; /* transfers on the multi now, and the most there were at once */
	long maxconnects;     /* the connection cache's size as set */
	struct shared *next;
};

/* Connections kept open for the next requests: at least this many, and twice the most
 * transfers there were at once. curl's default is four times the transfers running at the
 * moment one ends, so as a burst of requests drains, the last ones to end find a cache of 4 or 8
 * and close the connections the next burst opens again (an http sink with concurrency 8 made a
 * connection per 50 requests, a TLS handshake each on https). */
#define KEEP_CONNECTIONS 16

static struct shared *all_shared; /* loop thread only: one per loop that has a client */

struct kr_http {
	struct shared *sh;
	struct transfer *active;
	size_t npending;
};

/* Easy handles of finished transfers, reset, for the next ones: a new handle costs libcurl
 * a dozen allocations, its buffers among them, for every request. */
#define EASY_POOL 32
static _Thread_local CURL *easy_pool[EASY_POOL];
static _Thread_local size_t easy_pooled;

static CURL *easy_get(void)
{
	return easy_pooled ? easy_pool[--easy_pooled] : C.easy_init();
}

static void easy_put(CURL *e)
{
	if (!e)
		return;
	if (easy_pooled == EASY_POOL) {
		C.easy_cleanup(e);
		return;
	}
	C.easy_reset(e); /* every option back to its default: nothing of this request stays */
	easy_pool[easy_pooled++] = e;
}

static void transfer_free(struct transfer *t)
{
	if (t->unpooled)
		C.easy_cleanup(t->easy);
	else
		easy_put(t->easy);
	C.slist_free_all(t->headers);
	free(t->body);
	free(t->resp_headers);
	free(t);
}

static void unlink_transfer(struct transfer *t)
{
	struct kr_http *h = t->h;
	if (t->prev)
		t->prev->next = t->next;
	else
		h->active = t->next;
	if (t->next)
		t->next->prev = t->prev;
	h->npending--;
	h->sh->running--;
}

/* Hands the finished transfer's response to its callback, and frees it. */
static void complete(struct transfer *t, CURLcode code)
{
	CURL *easy = t->easy;
	struct kr_http_response r = {.retry_after_ms = t->retry_after_ms,
				     .too_large = t->too_large};
	C.easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r.status);
	char why[160];
	if (t->too_large && !t->body_prefix) {
		snprintf(why, sizeof why, "the response body is larger than %zu bytes",
			 t->max_body);
		r.error = why;
		r.status = 0;
	} else if (code != CURLE_OK) {
		r.error = t->errbuf[0] ? t->errbuf : C.easy_strerror(code);
		r.timed_out = code == CURLE_OPERATION_TIMEDOUT;
		r.status = 0;
	}
	r.body = t->body ? t->body : "";
	r.body_len = t->body_len;
	r.headers = t->resp_headers ? t->resp_headers : "";
	t->done(t->arg, &r);
	transfer_free(t);
}

static void check_done(struct shared *sh)
{
	CURLMsg *msg;
	int left;
	while ((msg = C.multi_info_read(sh->multi, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		CURL *easy = msg->easy_handle;
		CURLcode code = msg->data.result;
		struct transfer *t = NULL;
		C.easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
		C.multi_remove_handle(sh->multi, easy);
		unlink_transfer(t);
		complete(t, code);
	}
}

static void on_io(struct kr_loop *l, int fd, unsigned events, void *arg)
{
	(void)l;
	struct shared *sh = arg;
	int flags = (events & KR_IO_READ ? CURL_CSELECT_IN : 0) |
		    (events & KR_IO_WRITE ? CURL_CSELECT_OUT : 0);
	int running;
	C.multi_socket_action(sh->multi, fd, flags, &running);
	check_done(sh);
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	(void)easy;
	(void)socketp;
	struct shared *sh = userp;
	if (what == CURL_POLL_REMOVE) {
		/* parked, not unwatched: curl removes a kept-alive connection's socket after each
		 * answer and adds it again for the next request; parked, that costs no system call */
		kr_loop_park(sh->loop, s);
		return 0;
	}
	unsigned ev = (what == CURL_POLL_IN || what == CURL_POLL_INOUT ? KR_IO_READ : 0) |
		      (what == CURL_POLL_OUT || what == CURL_POLL_INOUT ? KR_IO_WRITE : 0);
	return kr_loop_watch(sh->loop, s, ev, on_io, sh) == 0 ? 0 : -1;
}

static void on_timer(struct kr_loop *l, struct kr_timer *t, void *arg)
{
	(void)l;
	(void)t;
	struct shared *sh = arg;
	int running;
	C.multi_socket_action(sh->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(sh);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	(void)multi;
	struct shared *sh = userp;
	if (timeout_ms < 0)
		kr_timer_stop(sh->timer);
	else
		kr_timer_start(sh->timer, (uint64_t)timeout_ms);
	return 0;
}

/* Room for need bytes at *p (capacity *cap), grown by doubling, to at most limit (need is at
 * most limit): a response comes in several pieces, and a realloc for each would copy it again
 * each time. */
static bool grow(char **p, size_t *cap, size_t need, size_t limit)
{
	if (need <= *cap)
		return true;
	size_t c = *cap ? *cap : 1024;
	while (c < need)
		c *= 2;
	if (c > limit)
		c = limit;
	char *q = realloc(*p, c);
	if (!q)
		return false;
	*p = q;
	*cap = c;
	return true;
}

static size_t write_cb(char *data, size_t size, size_t n, void *userp)
{
	struct transfer *t = userp;
	size_t len = size * n;
	size_t keep = len;
	if (len > t->max_body - t->body_len) {
		t->too_large = true;
		if (!t->body_prefix)
			return 0; /* stops the transfer */
		keep = t->max_body - t->body_len;
		if (!keep)
			return len;
	}
	if (!grow(&t->body, &t->body_cap, t->body_len + keep + 1, t->max_body + 1))
		return 0;
	memcpy(t->body + t->body_len, data, keep);
	t->body_len += keep;
	t->body[t->body_len] = 0;
	return len;
}

/* Retry-After: delay-seconds or an HTTP-date */
static int64_t retry_after(const char *p)
{
	char *end;
	long secs = strtol(p, &end, 10);
	if (end != p && *end == 0 && secs >= 0)
		return (int64_t)secs * 1000;
	struct tm tm = {0};
	if (!strptime(p, "%a, %d %b %Y %H:%M:%S GMT", &tm))
		return -1;
	int64_t at = (int64_t)timegm(&tm) * 1000;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	return at > now ? at - now : 0;
}

/* Keeps the header lines of the last response (a redirect or a 100 Continue starts over). */
static size_t header_cb(char *data, size_t size, size_t n, void *userp)
{
	struct transfer *t = userp;
	size_t len = size * n;
	if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
		t->resp_headers_len = 0;
		t->retry_after_ms = -1;
		if (t->resp_headers)
			t->resp_headers[0] = 0;
		return len;
	}
	if (t->resp_headers_len + len + 1 > MAX_HEADERS)
		return len; /* past the limit: the rest is not kept */
	if (!grow(&t->resp_headers, &t->resp_headers_cap, t->resp_headers_len + len + 1,
		  MAX_HEADERS))
		return 0;
	memcpy(t->resp_headers + t->resp_headers_len, data, len);
	t->resp_headers_len += len;
	t->resp_headers[t->resp_headers_len] = 0;
	struct kr_http_response r = {.headers = t->resp_headers};
	char v[128];
	if (strncasecmp(data, "retry-after:", 12) == 0 &&
	    kr_http_header(&r, "retry-after", v, sizeof v))
		t->retry_after_ms = retry_after(v);
	return len;
}

const char *kr_http_header(const struct kr_http_response *r, const char *name, char *out,
			   size_t cap)
{
	size_t nl = strlen(name);
	for (const char *p = r->headers; p && *p;) {
		const char *eol = strchr(p, '\n');
		const char *end = eol ? eol : p + strlen(p);
		if ((size_t)(end - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
			const char *v = p + nl + 1;
			while (v < end && (*v == ' ' || *v == '\t'))
				v++;
			const char *ve = end;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			size_t vl = (size_t)(ve - v) < cap - 1 ? (size_t)(ve - v) : cap - 1;
			memcpy(out, v, vl);
			out[vl] = 0;
			return out;
		}
		p = eol ? eol + 1 : end;
	}
	return NULL;
}

static struct shared *shared_get(struct kr_loop *loop)
{
	for (struct shared *sh = all_shared; sh; sh = sh->next)
		if (sh->loop == loop) {
			sh->refs++;
			return sh;
		}
	struct shared *sh = calloc(1, sizeof *sh);
	if (!sh)
		return NULL;
	sh->loop = loop;
	sh->refs = 1;
	sh->multi = C.multi_init();
	sh->timer = kr_timer_new(loop, on_timer, sh);
	if (!sh->multi || !sh->timer) {
		if (sh->multi)
			C.multi_cleanup(sh->multi);
		kr_timer_free(sh->timer);
		free(sh);
		return NULL;
	}
	C.multi_setopt(sh->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	C.multi_setopt(sh->multi, CURLMOPT_SOCKETDATA, sh);
	C.multi_setopt(sh->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	C.multi_setopt(sh->multi, CURLMOPT_TIMERDATA, sh);
	/* HTTP/2 streams of one connection are shared by the requests to its host */
	C.multi_setopt(sh->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	sh->maxconnects = KEEP_CONNECTIONS;
	C.multi_setopt(sh->multi, CURLMOPT_MAXCONNECTS, sh->maxconnects);
	sh->next = all_shared;
	all_shared = sh;
	return sh;
}

static void shared_put(struct shared *sh)
{
	if (--sh->refs)
		return;
	for (struct shared **p = &all_shared; *p; p = &(*p)->next)
		if (*p == sh) {
			*p = sh->next;
			break;
		}
	C.multi_cleanup(sh->multi);
	kr_timer_free(sh->timer);
	free(sh);
}

enum kr_err kr_http_new(struct kr_loop *loop, struct kr_http **out, char *err)
{
	enum kr_err e = kr_dynlib_load(&curl, err);
	if (!e)
		e = kr_sigv4_load(err);
	if (e)
		return e;
	struct kr_http *h = calloc(1, sizeof *h);
	if (!h || !(h->sh = shared_get(loop))) {
		free(h);
		return kr_errf(err, KR_ERR_NOMEM, "cannot start the HTTP client");
	}
	*out = h;
	return KR_OK;
}

void kr_http_free(struct kr_http *h)
{
	if (!h)
		return;
	while (h->active) {
		struct transfer *t = h->active;
		C.multi_remove_handle(h->sh->multi, t->easy);
		unlink_transfer(t);
		struct kr_http_response r = {.error = "the client was closed", .retry_after_ms = -1,
					     .body = "", .headers = ""};
		t->done(t->arg, &r);
		transfer_free(t);
	}
	shared_put(h->sh);
	free(h);
}

size_t kr_http_pending(const struct kr_http *h)
{
	return h->npending;
}

/* The method and body options of a request. */
static void set_method(CURL *e, const struct kr_http_request *req)
{
	const char *m = req->method ? req->method : "GET";
	if (strcmp(m, "GET") == 0 && !req->body_len) {
		C.easy_setopt(e, CURLOPT_HTTPGET, 1L);
		return;
	}
	if (strcmp(m, "HEAD") == 0) {
		C.easy_setopt(e, CURLOPT_NOBODY, 1L);
		return;
	}
	/* a body (possibly empty) is sent the way POST sends it, under the method asked for */
	C.easy_setopt(e, CURLOPT_POST, 1L);
	C.easy_setopt(e, CURLOPT_POSTFIELDS, req->body ? req->body : "");
	C.easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
	if (strcmp(m, "POST") != 0)
		C.easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
}

static bool add_header(struct transfer *t, const char *line)
{
	struct curl_slist *l = C.slist_append(t->headers, line);
	if (!l)
		return false;
	t->headers = l;
	return true;
}

/* The auth options of a request (false: out of memory, or a URL that cannot be signed). */
static bool set_auth(CURL *e, struct transfer *t, const struct kr_http_request *req)
{
	if (req->auth == KR_HTTP_AUTH_NONE)
		return true;
	if (req->auth == KR_HTTP_AUTH_BASIC) {
		C.easy_setopt(e, CURLOPT_USERNAME, req->user ? req->user : "");
		C.easy_setopt(e, CURLOPT_PASSWORD, req->password ? req->password : "");
		C.easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		return true;
	}
	/* signed here, not by curl's CURLOPT_AWS_SIGV4 (sigv4.h says why) */
	struct kr_sigv4_request sr = {.method = req->method ? req->method : "POST",
				      .url = req->url,
				      .headers = req->headers,
				      .body = req->body,
				      .body_len = req->body_len,
				      .access_key_id = req->user ? req->user : "",
				      .secret_key = req->password ? req->password : "",
				      .session_token = req->token,
				      .region = req->region ? req->region : "",
				      .service = req->service ? req->service : "",
				      .now = time(NULL)};
	char *lines[3];
	if (!kr_sigv4_sign(&sr, lines))
		return false;
	bool ok = true;
	for (int i = 0; ok && i < 3; i++)
		ok = !lines[i] || add_header(t, lines[i]);
	kr_sigv4_free(lines);
	return ok;
}

/* A transfer for req, ready to run; NULL when out of memory (or a URL that cannot be signed). */
static struct transfer *prepare(const struct kr_http_request *req, kr_http_done_fn done,
				void *arg)
{
	struct transfer *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->done = done;
	t->arg = arg;
	t->retry_after_ms = -1;
	t->max_body = req->max_body ? req->max_body : DEFAULT_MAX_BODY;
	t->body_prefix = req->body_prefix;
	t->easy = easy_get();
	if (!t->easy) {
		free(t);
		return NULL;
	}
	CURL *e = t->easy;
	bool ok = true;
	for (const char *const *hd = req->headers; ok && hd && *hd; hd++)
		ok = add_header(t, *hd);
	/* no "Expect: 100-continue" round trip before a body */
	ok = ok && add_header(t, "Expect:") && set_auth(e, t, req);
	if (!ok) {
		transfer_free(t);
		return NULL;
	}
	uint64_t timeout = req->timeout_ms ? req->timeout_ms : 30000;
	C.easy_setopt(e, CURLOPT_URL, req->url);
	set_method(e, req);
	C.easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
	C.easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout);
	C.easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
		      (long)(req->connect_timeout_ms ? req->connect_timeout_ms : timeout));
	C.easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	C.easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	C.easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	C.easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	C.easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	/* waiting for a connection that may multiplex only pays where HTTP/2 can be negotiated
	   (TLS): on plain HTTP/1.1 it would queue a request behind a long poll */
	C.easy_setopt(e, CURLOPT_PIPEWAIT, strncasecmp(req->url, "https:", 6) == 0 ? 1L : 0L);
	C.easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	C.easy_setopt(e, CURLOPT_WRITEDATA, t);
	C.easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
	C.easy_setopt(e, CURLOPT_HEADERDATA, t);
	C.easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
	C.easy_setopt(e, CURLOPT_PRIVATE, t);
	if (req->ca_file)
		C.easy_setopt(e, CURLOPT_CAINFO, req->ca_file);
	return t;
}

enum kr_err kr_http_send(struct kr_http *h, const struct kr_http_request *req,
			 kr_http_done_fn done, void *arg)
{
	struct transfer *t = prepare(req, done, arg);
	if (!t)
		return KR_ERR_NOMEM;
	t->h = h;
	CURL *e = t->easy;
	if (C.multi_add_handle(h->sh->multi, e) != CURLM_OK) {
		transfer_free(t);
		return KR_ERR_NOMEM;
	}
	t->next = h->active;
	if (h->active)
		h->active->prev = t;
	h->active = t;
	h->npending++;
	struct shared *sh = h->sh;
	if (++sh->running > sh->most) {
		sh->most = sh->running;
		if ((long)sh->most * 2 > sh->maxconnects) {
			sh->maxconnects = (long)sh->most * 2;
			C.multi_setopt(sh->multi, CURLMOPT_MAXCONNECTS, sh->maxconnects);
		}
	}
	return KR_OK;
}

enum kr_err kr_http_send_sync(const struct kr_http_request *req, kr_http_done_fn done, void *arg,
			      char *err)
{
	enum kr_err e = kr_dynlib_load(&curl, err);
	if (!e)
		e = kr_sigv4_load(err);
	if (e)
		return e;
	struct transfer *t = prepare(req, done, arg);
	if (!t)
		return kr_errf(err, KR_ERR_NOMEM, "cannot start the request");
	t->unpooled = true;
	complete(t, C.easy_perform(t->easy));
	return KR_OK;
}
