/* Metrics registry, Prometheus rendering and the HTTP endpoints (see metrics.h). */
#include "metrics.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dynlib.h"
#include "grow.h"
#include "json.h"
#include "names.h"

/* libmicrohttpd, loaded by the first kr_metrics_listen (see dynlib.h) */
static struct mhd_api {
	struct MHD_Daemon *(*start_daemon)(unsigned int, uint16_t, MHD_AcceptPolicyCallback, void *,
					   MHD_AccessHandlerCallback, void *, ...);
	void (*stop_daemon)(struct MHD_Daemon *);
	struct MHD_Response *(*create_response_from_buffer)(size_t, void *, enum MHD_ResponseMemoryMode);
	enum MHD_Result (*add_response_header)(struct MHD_Response *, const char *, const char *);
	enum MHD_Result (*queue_response)(struct MHD_Connection *, unsigned int, struct MHD_Response *);
	void (*destroy_response)(struct MHD_Response *);
} M;

#define SYM(f) {"MHD_" #f, offsetof(struct mhd_api, f)}
static const struct kr_dynsym mhd_syms[] = {
	SYM(start_daemon),	       SYM(stop_daemon),    SYM(create_response_from_buffer),
	SYM(add_response_header), SYM(queue_response), SYM(destroy_response),
};
#undef SYM

static struct kr_dynlib mhd = {.soname = "libmicrohttpd.so.12",
			       .syms = mhd_syms,
			       .nsyms = sizeof mhd_syms / sizeof mhd_syms[0],
			       .table = &M};

static const uint64_t bucket_ms[KR_LATENCY_BUCKETS] = {1,   5,    10,   25,   50,    100,
						       250, 500, 1000, 2500, 5000, 10000};

struct named {
	char *name;
	void *cell;
};

/* Series by name, in the order they were made (the order they are rendered in), with an index
 * of their names, so that making 10,000 rules' series is not 50 million name comparisons. */
struct list {
	struct named *v;
	size_t n, cap;
	struct kr_names idx; /* name -> its place in v */
};

struct kr_metrics {
	struct list sinks, rules, sources;
	struct list inputs; /* "SOURCE\x1fINPUT": int64_t, records behind */
	struct kr_global_stats global;
	struct kr_sink_stats scratch_sink;
	struct kr_rule_stats scratch_rule;
	struct kr_source_stats scratch_source;
	int64_t scratch_input;
	struct MHD_Daemon *daemon;
	pthread_mutex_t lock; /* guards text and ready, shared with the server thread */
	char *text;
	size_t text_len;
	bool ready;
	struct kr_buf render;
};

struct kr_metrics *kr_metrics_new(void)
{
	struct kr_metrics *m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	pthread_mutex_init(&m->lock, NULL);
	m->global.in_flight = 0;
	return m;
}

static void list_free(struct list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].name);
		free(l->v[i].cell);
	}
	free(l->v);
	kr_names_free(&l->idx);
}

void kr_metrics_free(struct kr_metrics *m)
{
	if (!m)
		return;
	if (m->daemon)
		M.stop_daemon(m->daemon);
	list_free(&m->sinks);
	list_free(&m->rules);
	list_free(&m->sources);
	list_free(&m->inputs);
	free(m->text);
	kr_buf_free(&m->render);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static void *lookup(struct list *l, const char *name, size_t size)
{
	size_t i = kr_names_find(&l->idx, name);
	if (i != KR_NAME_ABSENT)
		return l->v[i].cell;
	if (!kr_grow(&l->v, &l->cap, l->n + 1, sizeof *l->v, 16))
		return NULL;
	void *cell = calloc(1, size);
	char *n = strdup(name);
	if (!cell || !n || !kr_names_add(&l->idx, n, l->n)) {
		free(cell);
		free(n);
		return NULL;
	}
	l->v[l->n].name = n;
	l->v[l->n].cell = cell;
	l->n++;
	return cell;
}

struct kr_sink_stats *kr_metrics_sink(struct kr_metrics *m, const char *name)
{
	struct kr_sink_stats *s = lookup(&m->sinks, name, sizeof *s);
	return s ? s : &m->scratch_sink;
}

struct kr_rule_stats *kr_metrics_rule(struct kr_metrics *m, const char *name)
{
	struct kr_rule_stats *s = lookup(&m->rules, name, sizeof *s);
	return s ? s : &m->scratch_rule;
}

struct kr_source_stats *kr_metrics_source(struct kr_metrics *m, const char *name)
{
	struct kr_source_stats *s = lookup(&m->sources, name, sizeof *s);
	if (s && s->lag == 0 && s->records == 0)
		s->lag = s->lag_ms = -1;
	return s ? s : &m->scratch_source;
}

static char *input_key(const char *source, const char *input)
{
	size_t a = strlen(source), b = strlen(input);
	char *k = malloc(a + b + 2);
	if (k) {
		memcpy(k, source, a);
		k[a] = '\x1f';
		memcpy(k + a + 1, input, b + 1);
	}
	return k;
}

int64_t *kr_metrics_input_lag(struct kr_metrics *m, const char *source, const char *input)
{
	char *k = input_key(source, input);
	int64_t *c = k ? lookup(&m->inputs, k, sizeof *c) : NULL;
	free(k);
	if (!c)
		return &m->scratch_input;
	return c;
}

void kr_metrics_input_forget(struct kr_metrics *m, const char *source, const char *input)
{
	char *key = input_key(source, input);
	struct list *l = &m->inputs;
	size_t i = key ? kr_names_find(&l->idx, key) : KR_NAME_ABSENT;
	free(key);
	if (i == KR_NAME_ABSENT)
		return;
	free(l->v[i].name);
	free(l->v[i].cell);
	l->v[i] = l->v[--l->n];
	/* the index again, in the room it has (no name more than before: nothing to fail) */
	kr_names_clear(&l->idx);
	for (size_t k = 0; k < l->n; k++)
		(void)kr_names_add(&l->idx, l->v[k].name, k);
}

struct kr_global_stats *kr_metrics_global(struct kr_metrics *m)
{
	return &m->global;
}

void kr_metrics_observe_latency(struct kr_sink_stats *s, uint64_t ms)
{
	s->latency_count++;
	s->latency_sum_ms += ms;
	for (int i = 0; i < KR_LATENCY_BUCKETS; i++)
		if (ms <= bucket_ms[i])
			s->latency_buckets[i]++;
}

static void line(struct kr_buf *b, const char *metric, const char *label, const char *value,
		 const char *extra, unsigned long long n)
{
	char num[32];
	kr_buf_puts(b, metric);
	if (label) {
		kr_buf_puts(b, "{");
		kr_buf_puts(b, label);
		kr_buf_puts(b, "=");
		kr_buf_json_string(b, value, strlen(value));
		if (extra) {
			kr_buf_puts(b, ",");
			kr_buf_puts(b, extra);
		}
		kr_buf_puts(b, "}");
	}
	snprintf(num, sizeof num, " %llu\n", n);
	kr_buf_puts(b, num);
}

static void help(struct kr_buf *b, const char *metric, const char *type, const char *text)
{
	kr_buf_puts(b, "# HELP ");
	kr_buf_puts(b, metric);
	kr_buf_puts(b, " ");
	kr_buf_puts(b, text);
	kr_buf_puts(b, "\n# TYPE ");
	kr_buf_puts(b, metric);
	kr_buf_puts(b, " ");
	kr_buf_puts(b, type);
	kr_buf_puts(b, "\n");
}

void kr_metrics_publish(struct kr_metrics *m)
{
	struct kr_buf *b = &m->render;
	b->len = 0;
	help(b, "kmsrouter_records_total", "counter", "Records read from sources.");
	for (size_t i = 0; i < m->sources.n; i++)
		line(b, "kmsrouter_records_total", "source", m->sources.v[i].name, NULL,
		     ((struct kr_source_stats *)m->sources.v[i].cell)->records);
	help(b, "kmsrouter_records_invalid_total", "counter", "Records that could not be parsed.");
	for (size_t i = 0; i < m->sources.n; i++)
		line(b, "kmsrouter_records_invalid_total", "source", m->sources.v[i].name, NULL,
		     ((struct kr_source_stats *)m->sources.v[i].cell)->invalid);
	help(b, "kmsrouter_source_lag", "gauge", "How far behind a source is (bytes), where known.");
	for (size_t i = 0; i < m->sources.n; i++) {
		const struct kr_source_stats *s = m->sources.v[i].cell;
		if (s->lag >= 0)
			line(b, "kmsrouter_source_lag", "source", m->sources.v[i].name, NULL,
			     (unsigned long long)s->lag);
	}
	help(b, "kmsrouter_source_lag_seconds", "gauge",
	     "Age of the oldest record a queue source holds (sent to it, not yet acknowledged).");
	for (size_t i = 0; i < m->sources.n; i++) {
		const struct kr_source_stats *s = m->sources.v[i].cell;
		if (s->lag_ms < 0)
			continue;
		char v[48];
		snprintf(v, sizeof v, " %lld.%03lld\n", (long long)(s->lag_ms / 1000),
			 (long long)(s->lag_ms % 1000));
		kr_buf_puts(b, "kmsrouter_source_lag_seconds{source=");
		kr_buf_json_string(b, m->sources.v[i].name, strlen(m->sources.v[i].name));
		kr_buf_puts(b, "}");
		kr_buf_puts(b, v);
	}
	help(b, "kmsrouter_source_input_lag", "gauge",
	     "Records an input of a source is behind its end (a Kafka partition: its high "
	     "watermark minus its next offset to commit), where known.");
	for (size_t i = 0; i < m->inputs.n; i++) {
		int64_t lag = *(const int64_t *)m->inputs.v[i].cell;
		const char *k = m->inputs.v[i].name, *sep = strchr(k, '\x1f');
		if (lag < 0 || !sep)
			continue;
		char v[32];
		snprintf(v, sizeof v, "} %lld\n", (long long)lag);
		kr_buf_puts(b, "kmsrouter_source_input_lag{source=");
		kr_buf_json_string(b, k, (size_t)(sep - k));
		kr_buf_puts(b, ",input=");
		kr_buf_json_string(b, sep + 1, strlen(sep + 1));
		kr_buf_puts(b, v);
	}
	help(b, "kmsrouter_rule_matches_total", "counter", "Events matched, per rule.");
	for (size_t i = 0; i < m->rules.n; i++)
		line(b, "kmsrouter_rule_matches_total", "rule", m->rules.v[i].name, NULL,
		     ((struct kr_rule_stats *)m->rules.v[i].cell)->matched);
	help(b, "kmsrouter_events_unmatched_total", "counter", "Events no rule matched.");
	line(b, "kmsrouter_events_unmatched_total", NULL, NULL, NULL, m->global.unmatched);
	help(b, "kmsrouter_reloads_total", "counter",
	     "Configuration reloads (SIGHUP) by result (success, failure).");
	line(b, "kmsrouter_reloads_total", "result", "success", NULL, m->global.reloads);
	line(b, "kmsrouter_reloads_total", "result", "failure", NULL, m->global.reload_failures);
	help(b, "kmsrouter_in_flight_records", "gauge", "Records being delivered.");
	line(b, "kmsrouter_in_flight_records", NULL, NULL, NULL,
	     (unsigned long long)(m->global.in_flight > 0 ? m->global.in_flight : 0));
	help(b, "kmsrouter_deliveries_total", "counter",
	     "Delivery attempts per sink by outcome (success, retryable, permanent).");
	for (size_t i = 0; i < m->sinks.n; i++) {
		const struct kr_sink_stats *s = m->sinks.v[i].cell;
		line(b, "kmsrouter_deliveries_total", "sink", m->sinks.v[i].name, "outcome=\"success\"",
		     s->success);
		line(b, "kmsrouter_deliveries_total", "sink", m->sinks.v[i].name,
		     "outcome=\"retryable\"", s->retryable);
		line(b, "kmsrouter_deliveries_total", "sink", m->sinks.v[i].name,
		     "outcome=\"permanent\"", s->permanent);
	}
	help(b, "kmsrouter_retries_total", "counter", "Deliveries scheduled for another attempt.");
	for (size_t i = 0; i < m->sinks.n; i++)
		line(b, "kmsrouter_retries_total", "sink", m->sinks.v[i].name, NULL,
		     ((struct kr_sink_stats *)m->sinks.v[i].cell)->retries);
	help(b, "kmsrouter_dead_lettered_total", "counter",
	     "Deliveries to this sink given up and sent to its dead-letter sink.");
	for (size_t i = 0; i < m->sinks.n; i++)
		line(b, "kmsrouter_dead_lettered_total", "sink", m->sinks.v[i].name, NULL,
		     ((struct kr_sink_stats *)m->sinks.v[i].cell)->dead_lettered);
	help(b, "kmsrouter_delivery_latency_seconds", "histogram",
	     "Time from submitting a delivery to its outcome.");
	for (size_t i = 0; i < m->sinks.n; i++) {
		const struct kr_sink_stats *s = m->sinks.v[i].cell;
		for (int k = 0; k < KR_LATENCY_BUCKETS; k++) {
			char le[32];
			snprintf(le, sizeof le, "le=\"%g\"", (double)bucket_ms[k] / 1000.0);
			line(b, "kmsrouter_delivery_latency_seconds_bucket", "sink", m->sinks.v[i].name,
			     le, s->latency_buckets[k]);
		}
		line(b, "kmsrouter_delivery_latency_seconds_bucket", "sink", m->sinks.v[i].name,
		     "le=\"+Inf\"", s->latency_count);
		char sum[64];
		snprintf(sum, sizeof sum, "kmsrouter_delivery_latency_seconds_sum{sink=");
		kr_buf_puts(b, sum);
		kr_buf_json_string(b, m->sinks.v[i].name, strlen(m->sinks.v[i].name));
		snprintf(sum, sizeof sum, "} %.3f\n", (double)s->latency_sum_ms / 1000.0);
		kr_buf_puts(b, sum);
		line(b, "kmsrouter_delivery_latency_seconds_count", "sink", m->sinks.v[i].name, NULL,
		     s->latency_count);
	}
	pthread_mutex_lock(&m->lock);
	char *t = malloc(b->len + 1);
	if (t) {
		memcpy(t, b->p ? b->p : "", b->len);
		t[b->len] = 0;
		free(m->text);
		m->text = t;
		m->text_len = b->len;
	}
	pthread_mutex_unlock(&m->lock);
}

void kr_metrics_set_ready(struct kr_metrics *m, bool ready)
{
	pthread_mutex_lock(&m->lock);
	m->ready = ready;
	pthread_mutex_unlock(&m->lock);
}

const char *kr_metrics_text(struct kr_metrics *m)
{
	return m->text ? m->text : "";
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *upload,
			      size_t *upload_size, void **con_cls)
{
	(void)version;
	(void)upload;
	(void)upload_size;
	(void)con_cls;
	struct kr_metrics *m = cls;
	unsigned status = MHD_HTTP_OK;
	char *body;
	const char *type = "text/plain; charset=utf-8";
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		status = MHD_HTTP_METHOD_NOT_ALLOWED;
		body = strdup("method not allowed\n");
	} else if (strcmp(url, "/metrics") == 0) {
		type = "text/plain; version=0.0.4; charset=utf-8";
		pthread_mutex_lock(&m->lock);
		body = strdup(m->text ? m->text : "");
		pthread_mutex_unlock(&m->lock);
	} else if (strcmp(url, "/healthz") == 0) {
		body = strdup("ok\n");
	} else if (strcmp(url, "/readyz") == 0) {
		pthread_mutex_lock(&m->lock);
		bool ready = m->ready;
		pthread_mutex_unlock(&m->lock);
		status = ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
		body = strdup(ready ? "ready\n" : "starting\n");
	} else {
		status = MHD_HTTP_NOT_FOUND;
		body = strdup("not found\n");
	}
	if (!body)
		return MHD_NO;
	struct MHD_Response *r =
		M.create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	M.add_response_header(r, "Content-Type", type);
	enum MHD_Result ret = M.queue_response(c, status, r);
	M.destroy_response(r);
	return ret;
}

enum kr_err kr_metrics_listen(struct kr_metrics *m, const char *where, char *err)
{
	char host[256];
	const char *colon = strrchr(where, ':');
	if (!colon || (size_t)(colon - where) >= sizeof host)
		return kr_errf(err, KR_ERR_CONFIG, "metrics listen \"%s\": expected HOST:PORT", where);
	memcpy(host, where, (size_t)(colon - where));
	host[colon - where] = 0;
	char *h = host;
	if (h[0] == '[') { /* [::1]:9464 */
		h++;
		h[strcspn(h, "]")] = 0;
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	int gai = getaddrinfo(h[0] ? h : NULL, colon + 1, &hints, &res);
	if (gai != 0)
		return kr_errf(err, KR_ERR_CONFIG, "metrics listen \"%s\": %s", where,
			       gai_strerror(gai));
	char why[KR_ERRBUF];
	enum kr_err e = kr_dynlib_load(&mhd, why);
	if (e) {
		freeaddrinfo(res);
		return kr_errf(err, e, "metrics listen \"%s\": %s", where, why);
	}
	/* the socket is bound here, not by libmicrohttpd, so that a failure says why and names
	   the port that was asked for */
	int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 64) != 0) {
		int en = errno;
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return kr_errf(err, KR_ERR_IO, "metrics listen \"%s\": cannot listen on port %s: %s",
			       where, colon + 1, strerror(en));
	}
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	if (res->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	freeaddrinfo(res);
	m->daemon = M.start_daemon(flags, 0, NULL, NULL, answer, m, MHD_OPTION_LISTEN_SOCKET, fd,
				     MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
	if (!m->daemon) {
		close(fd);
		return kr_errf(err, KR_ERR_IO, "metrics listen \"%s\": cannot serve on port %s",
			       where, colon + 1);
	}
	return KR_OK;
}
