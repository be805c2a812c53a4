/* kr_metrics: counters for Prometheus, and the /metrics, /healthz and /readyz endpoints.
 *
 * The loop thread owns the counters (plain integers, updated without locks) and renders them
 * into Prometheus text with kr_metrics_publish; the HTTP server (libmicrohttpd, on its own
 * thread) only serves the last published text and the ready flag, under a mutex. So the server
 * reads a snapshot and never touches the engine. Counters are registered by name and keep their
 * values across reloads. */
#ifndef KR_METRICS_H
#define KR_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

#define KR_LATENCY_BUCKETS 12

struct kr_sink_stats {
	uint64_t success, retryable, permanent, retries, dead_lettered, dead_letters_written;
	uint64_t latency_count, latency_sum_ms;
	uint64_t latency_buckets[KR_LATENCY_BUCKETS]; /* cumulative by bucket bound */
};

struct kr_rule_stats {
	uint64_t matched;
};

struct kr_source_stats {
	uint64_t records, invalid;
	int64_t lag; /* bytes (or records) behind, -1 unknown */
	int64_t lag_ms; /* age of the oldest record held (a queue), -1 unknown */
};

struct kr_global_stats {
	uint64_t unmatched;
	uint64_t reloads, reload_failures; /* SIGHUP reloads that took effect, and that did not */
	int64_t in_flight;
};

struct kr_metrics;

/* Returns a new registry (no server yet); free with kr_metrics_free. */
struct kr_metrics *kr_metrics_new(void);
void kr_metrics_free(struct kr_metrics *m);

/* Starts serving on "host:port". */
enum kr_err kr_metrics_listen(struct kr_metrics *m, const char *listen, char *err);

/* Stable pointers to the counters of a name (created on first use; NULL only out of memory,
 * in which case a shared scratch cell is returned so callers need no checks). */
struct kr_sink_stats *kr_metrics_sink(struct kr_metrics *m, const char *name);
struct kr_rule_stats *kr_metrics_rule(struct kr_metrics *m, const char *name);
struct kr_source_stats *kr_metrics_source(struct kr_metrics *m, const char *name);
struct kr_global_stats *kr_metrics_global(struct kr_metrics *m);
/* The lag gauge of one input of a source (records behind; -1: not shown), until forgotten (the
 * input is gone: a Kafka partition revoked). */
int64_t *kr_metrics_input_lag(struct kr_metrics *m, const char *source, const char *input);
void kr_metrics_input_forget(struct kr_metrics *m, const char *source, const char *input);

static inline void kr_metrics_count(uint64_t *cell, uint64_t n)
{
	*cell += n;
}

static inline void kr_metrics_set(int64_t *cell, int64_t v)
{
	*cell = v;
}

void kr_metrics_observe_latency(struct kr_sink_stats *s, uint64_t ms);

/* Renders the counters and makes them what /metrics serves. */
void kr_metrics_publish(struct kr_metrics *m);
void kr_metrics_set_ready(struct kr_metrics *m, bool ready);

/* The rendered text (for tests and the final summary); valid until the next publish. */
const char *kr_metrics_text(struct kr_metrics *m);

#endif
