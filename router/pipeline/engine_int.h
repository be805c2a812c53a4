/* What the engine's files share (engine.c, deliveries.c, acks.c, replay.c): its structures and
 * the functions one file calls in another (eng_ prefix). Not for anything outside the engine. */
#ifndef KR_ENGINE_INT_H
#define KR_ENGINE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "engine.h"
#include "loop.h"
#include "plugin.h"
#include "stream.h"

struct gen;
struct dlv;

struct sink_inst {
	struct gen *gen;
	uint32_t idx;
	const struct kr_sink_cfg *cfg;
	void *ctx;
	uint32_t inflight;
	struct dlv *wait_head, *wait_tail;
	bool pumping;
	struct kr_sink_stats *stats;
	/* failed attempts after a delivery's first are logged at most once a second per sink */
	uint64_t log_next_ms, log_suppressed;
};

struct gen {
	struct kr_engine *e;
	struct kr_config *cfg;
	struct sink_inst *sinks;
	struct kr_match_state *st;
	struct kr_rule_stats **rule_stats;
	uint64_t refs;
	struct gen *next_retired;
};

struct inp;

struct record {
	struct inp *in;
	struct record *next, *prev; /* in the input's ack queue */
	/* an event of a framed record (kr_input_record_begin): it is not in the ack queue; its
	   frame is, and is done when all its events are */
	struct record *frame;
	void *token; /* a frame's token (unordered inputs: handed back in its ack) */
	char *meta;  /* a frame's kr_input_record_meta (JSON object text), or NULL */
	size_t meta_len;
	uint64_t position;
	uint32_t pending;
	bool done, failed;
	bool is_frame; /* counted in unacked but not in in_flight (its events are) */
	bool has_records; /* a frame: the stream found an event or invalid record in it */
	uint8_t size_class; /* its room in REC_CLASS_BYTES steps, kept for the next record by
			       eng_record_free; 0: a room of its own (freed) */
	char *event; /* points into bytes[] */
	size_t len;
	uint64_t received_wall, received_mono;
	char bytes[];
};

/* Freed records and deliveries are kept for the next ones (most are alike, and malloc's bins
 * cost more than a list): records by the size of their room, up to REC_CLASSES steps of
 * REC_CLASS_BYTES, REC_CACHE_BYTES of rooms in all; DLV_CACHE_KEEP deliveries. */
#define REC_CLASS_BYTES 128
#define REC_CLASSES 32
#define REC_CACHE_BYTES (1u << 20)
#define DLV_CACHE_KEEP 1024

struct dlv {
	struct kr_delivery pub; /* first: sinks see this part */
	struct kr_engine *e;
	struct record *rec;
	struct gen *gen;
	struct sink_inst *sink;
	struct kr_retry_cfg retry;
	int32_t dead_letter;
	bool is_dead_letter;
	bool is_invalid; /* an invalid record to the invalid dead letter */
	char *payload; /* owned; NULL when the payload is the record's own bytes */
	uint32_t attempts;
	uint64_t first_wall, last_wall, submit_mono;
	int32_t target_index; /* the entry in its rule's targets, or -1 (unmatched, invalid) */
	struct dlv_err *err;       /* the last failure, NULL until the first: a delivery that
				      succeeds (most) carries no room for one */
	struct err_count *counts; /* failures per error code, NULL until the first */
	uint32_t ncounts;
	struct kr_timer *timer;
	struct dlv *next_wait;
	struct dlv *prev_all, *next_all; /* every live delivery, for shutdown */
};

/* A delivery's last failure. */
struct dlv_err {
	char code[64];
	char msg[256];
};

/* How often a delivery failed with one error code (the dead letter carries them all). */
struct err_count {
	char code[64];
	uint32_t n;
};
#define MAX_ERR_CODES 8 /* distinct codes kept per delivery; more count as "other" */

/* A record matched while --rate holds it back: dispatched when a token is free. */
struct ready {
	struct record *r;
	struct gen *gen;
	uint32_t *ids;
	size_t n;
};

/* One input of a source (a file, a partition, a queue): its parser and its records in read
 * order. Acknowledgements are collected here and handed to the source at the end of the
 * engine's round (flush_acks), never from inside its pull. */
struct inp {
	struct kr_source_handle *h;
	uint64_t id; /* the source's own */
	bool unordered, closed;
	struct kr_stream *stream;
	struct gen *gen; /* the generation whose paths the stream fills */
	uint64_t next_pos, skip;
	char *name;
	struct record *ack_head, *ack_tail;
	struct record *frame; /* the framed record being read, or NULL (each event a record) */
	/* acknowledgements not yet handed over: the done prefix (ordered), the done frames'
	   tokens (unordered) */
	bool ack_dirty;
	uint64_t ack_pos;
	struct done_token *tokens;
	size_t ntokens, captokens;
	char *dead_letter;   /* kr_input_opts.dead_letter, or NULL */
	struct gen *dl_gen;  /* the generation dl_index was looked up in */
	int32_t dl_index;
	int64_t *lag; /* kr_input_set_lag's gauge, NULL until the first */
};

struct done_token {
	void *token;
	bool failed;
};

struct kr_source_handle {
	struct kr_engine *e;
	char *name;
	const struct kr_source_plugin *plugin;
	void *ctx;
	struct inp **inputs; /* open, or closed with records in flight */
	size_t ninputs;
	bool done;
	struct kr_source_stats *stats;
};

struct kr_engine {
	struct kr_loop *loop;
	struct gen *cur;
	struct gen *retired;
	struct kr_source_handle **sources;
	size_t nsources;
	struct kr_engine_opts opts;
	struct kr_metrics *metrics;
	uint64_t in_flight; /* records created and not yet done */
	uint64_t unacked;   /* records not yet acknowledged to their source (done or not) */
	uint32_t max_in_flight;
	bool stopping;
	struct kr_engine_totals totals;
	/* rate limit (replay --rate) */
	double tokens;
	uint64_t tokens_at;
	struct ready *ready; /* matched records waiting for a token, FIFO */
	size_t nready, capready, ready_head;
	uint64_t rng;
	struct dlv *all;
	uint64_t completions;
	/* the clock read once per round: records and submissions of a round share it */
	uint64_t clock_mono, clock_wall;
	bool in_round; /* kr_engine_step is running: completions share the round's clock */
	bool closing; /* kr_engine_free: completions only free */
	struct record *rec_cache[REC_CLASSES + 1]; /* by size_class, linked by next */
	size_t rec_cached_bytes;
	struct dlv *dlv_cache; /* linked by next_all */
	size_t dlv_cached;
};


/* ---- shared between the engine's files ---- */

/* engine.c */
void eng_gen_unref(struct kr_engine *e, struct gen *g);
void eng_route(struct kr_engine *e, struct gen *g, struct record *r, const uint32_t *ids,
	       size_t n);
int eng_on_event(void *ctx, const struct kr_event *ev);
int eng_on_invalid(void *ctx, const struct kr_invalid *inv);
void eng_input_rebind(struct kr_engine *e, struct inp *in);

/* deliveries.c */
void eng_tick(struct kr_engine *e);
struct dlv *eng_delivery_new(struct kr_engine *e, struct record *rec, struct gen *g,
			     uint32_t sink, const char *rule, char *payload, size_t len);
void eng_delivery_enqueue(struct dlv *d);
void eng_delivery_free(struct dlv *d);
/* At the close: frees a delivery that is dropped (its record stays unacknowledged). */
void eng_delivery_drop(struct dlv *d);
void eng_record_delivery_ended(struct kr_engine *e, struct record *r, bool ok);

/* acks.c */
struct record *eng_record_new(struct inp *in, const char *raw, size_t len);
void eng_record_release(struct kr_engine *e, struct record *r);
/* Frees a record (its meta too), or keeps it for the next of its size. */
void eng_record_free(struct kr_engine *e, struct record *r);
/* Frees the records and deliveries kept for reuse (kr_engine_free). */
void eng_caches_free(struct kr_engine *e);
void eng_record_done_now(struct kr_engine *e, struct record *r);
void eng_input_free(struct kr_engine *e, struct inp *in, bool closing);
int32_t eng_input_dead_letter(struct inp *in, struct gen *g);
/* The metadata of the frame record r belongs to (kr_input_record_meta), or NULL. */
static inline const struct record *eng_meta_of(const struct record *r)
{
	const struct record *f = r->frame ? r->frame : r;
	return f->meta ? f : NULL;
}
void eng_flush_acks(struct kr_engine *e);

/* replay.c */
int64_t eng_parse_time_ms(const char *s, size_t n);
char *eng_with_replay_name(const char *raw, size_t len, const char *name, size_t *outlen);
bool eng_ready_push(struct kr_engine *e, struct gen *g, struct record *r, const uint32_t *ids,
		    size_t n);
void eng_release_ready(struct kr_engine *e);

#endif
