/* The pipeline engine (see engine.h).
 *
 * A record is one event (or one invalid record) from a source, with the number of deliveries it
 * still waits for. Records wait in their source's ack queue in the order they were read; when a
 * record's last delivery ends, the queue's done prefix is acknowledged to the source. A delivery
 * lives from routing to success or dead letter: it waits for a slot under its sink's concurrency
 * limit, is submitted, and on a retryable failure sleeps on a timer (exponential back-off with
 * full jitter, never before the sink's "not before" time) until its policy runs out.
 *
 * A generation is one configuration's rules and started sinks. Reload makes a new one current;
 * a retired one lives while streams still fill views for its paths or deliveries still run on its
 * sinks, then is freed. */
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "log.h"
#include "metrics.h"
#include "plugin.h"
#include "rules.h"
#include "transform.h"
#include "utf8.h"

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
	uint64_t position;
	uint32_t pending;
	bool done, failed;
	bool is_frame; /* counted in unacked but not in in_flight (its events are) */
	char *event; /* points into bytes[] */
	size_t len;
	uint64_t received_wall, received_mono;
	char bytes[];
};

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
	char err_code[64];
	char err_msg[256];
	struct err_count *counts; /* failures per error code, NULL until the first */
	uint32_t ncounts;
	struct kr_timer *timer;
	struct dlv *next_wait;
	struct dlv *prev_all, *next_all; /* every live delivery, for shutdown */
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
	void **tokens;
	size_t ntokens, captokens;
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
};

static void record_release(struct kr_engine *e, struct record *r);
static void delivery_enqueue(struct dlv *d);
static void sink_pump(struct sink_inst *s);

/* ---- generations ---- */

/* Frees a generation; with keep_cfg its configuration stays the caller's. */
static void gen_free_ex(struct gen *g, bool keep_cfg)
{
	if (!g)
		return;
	for (size_t i = 0; g->sinks && i < g->cfg->nsinks; i++)
		if (g->sinks[i].ctx)
			g->sinks[i].cfg->plugin->destroy(g->sinks[i].ctx);
	free(g->sinks);
	free(g->rule_stats);
	kr_match_state_free(g->st);
	if (!keep_cfg)
		kr_config_free(g->cfg);
	free(g);
}

static void gen_free(struct gen *g)
{
	gen_free_ex(g, false);
}

static enum kr_err gen_new(struct kr_engine *e, struct kr_config *cfg, struct gen **out,
			   char *err)
{
	char unavailable[KR_ERRBUF];
	if (kr_config_unavailable(cfg, unavailable)) {
		/* sources are only a problem where they are used: run checks them itself */
		for (size_t i = 0; i < cfg->nsinks; i++)
			if (!cfg->sinks[i].plugin)
				return kr_errf(err, KR_ERR_UNAVAILABLE,
					       "sink \"%s\": type \"%s\" is not available in this build",
					       cfg->sinks[i].name, cfg->sinks[i].type);
	}
	struct gen *g = calloc(1, sizeof *g);
	if (!g)
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	g->e = e;
	g->cfg = cfg;
	g->sinks = calloc(cfg->nsinks + 1, sizeof *g->sinks);
	g->rule_stats = calloc(cfg->nrules + 1, sizeof *g->rule_stats);
	g->st = kr_match_state_new(cfg->compiled);
	if (!g->sinks || !g->rule_stats || !g->st) {
		gen_free_ex(g, true);
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	}
	for (size_t i = 0; i < cfg->nrules; i++)
		g->rule_stats[i] = kr_metrics_rule(e->metrics, cfg->rules[i].name);
	for (size_t i = 0; i < cfg->nsinks; i++) {
		struct sink_inst *s = &g->sinks[i];
		s->gen = g;
		s->idx = (uint32_t)i;
		s->cfg = &cfg->sinks[i];
		s->stats = kr_metrics_sink(e->metrics, s->cfg->name);
		struct kr_sink_args a = {.name = s->cfg->name, .conf = s->cfg->conf,
					 .timeout_ms = s->cfg->timeout_ms,
					 .concurrency = s->cfg->concurrency, .loop = e->loop};
		char serr[KR_ERRBUF] = "";
		if (s->cfg->plugin->create(&a, &s->ctx, serr) != KR_OK) {
			s->ctx = NULL;
			enum kr_err r = kr_errf(err, KR_ERR_CONFIG, "sink \"%s\": %s", s->cfg->name, serr);
			gen_free_ex(g, true);
			return r;
		}
	}
	*out = g;
	return KR_OK;
}

static void gen_unref(struct kr_engine *e, struct gen *g)
{
	if (--g->refs > 0 || g == e->cur)
		return;
	for (struct gen **p = &e->retired; *p; p = &(*p)->next_retired)
		if (*p == g) {
			*p = g->next_retired;
			break;
		}
	gen_free(g);
}

/* ---- time ---- */

static void rfc3339(uint64_t wall_ms, char *out, size_t cap)
{
	time_t t = (time_t)(wall_ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(wall_ms % 1000));
}

static uint64_t next_random(struct kr_engine *e)
{
	uint64_t x = e->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return e->rng = x;
}

/* ---- deliveries ---- */

static struct dlv *delivery_new(struct kr_engine *e, struct record *rec, struct gen *g,
				uint32_t sink, const char *rule, char *payload, size_t len)
{
	struct dlv *d = calloc(1, sizeof *d);
	if (!d) {
		free(payload);
		return NULL;
	}
	d->e = e;
	d->rec = rec;
	d->gen = g;
	d->sink = &g->sinks[sink];
	d->retry = d->sink->cfg->retry;
	d->dead_letter = d->sink->cfg->dead_letter;
	d->payload = payload;
	d->target_index = -1;
	d->pub.payload = payload ? payload : rec->event;
	d->pub.len = payload ? len : rec->len;
	d->pub.rule = rule;
	d->pub.sink = d->sink->cfg->name;
	d->pub.received_ms = rec->received_wall;
	g->refs++;
	rec->pending++;
	d->next_all = e->all;
	if (e->all)
		e->all->prev_all = d;
	e->all = d;
	return d;
}

static void delivery_free(struct dlv *d)
{
	struct kr_engine *e = d->e;
	struct gen *g = d->gen;
	if (d->prev_all)
		d->prev_all->next_all = d->next_all;
	else
		e->all = d->next_all;
	if (d->next_all)
		d->next_all->prev_all = d->prev_all;
	kr_timer_free(d->timer);
	free(d->payload);
	free(d->counts);
	free(d);
	if (!e->closing)
		gen_unref(e, g);
}

static void record_delivery_ended(struct kr_engine *e, struct record *r, bool ok)
{
	if (!ok)
		r->failed = true;
	if (--r->pending == 0)
		record_release(e, r);
}

static void dead_letter(struct dlv *d);
static void deliver_outcome(struct dlv *d, enum kr_outcome o, uint64_t not_before_ms,
			    const char *error_code, const char *error_message);

static void delivery_finished(struct dlv *d, bool ok)
{
	struct kr_engine *e = d->e;
	struct record *r = d->rec;
	delivery_free(d);
	record_delivery_ended(e, r, ok);
}

static void tick(struct kr_engine *e)
{
	e->clock_mono = kr_now_ms();
	e->clock_wall = kr_wall_ms();
}

static void retry_fire(struct kr_loop *l, struct kr_timer *t, void *arg)
{
	(void)l;
	(void)t;
	struct dlv *d = arg;
	tick(d->e);
	delivery_enqueue(d);
}

void kr_delivery_done(struct kr_delivery *pub, enum kr_outcome o, uint64_t not_before_ms,
		      const char *error_code, const char *error_message)
{
	struct dlv *d = (struct dlv *)pub;
	struct kr_engine *e = d->e;
	struct sink_inst *s = d->sink;
	struct gen *g = d->gen;
	s->inflight--;
	e->completions++;
	if (e->closing) {
		delivery_free(d);
		return;
	}
	/* the delivery may be the last thing holding its generation: keep it (and s) alive */
	g->refs++;
	if (!e->in_round)
		tick(e); /* from a network or timer callback: the round's clock is stale */
	deliver_outcome(d, o, not_before_ms, error_code, error_message);
	sink_pump(s);
	gen_unref(e, g);
}

/* Counts a failure under its error code; past MAX_ERR_CODES - 1 distinct codes, the rest
 * count together as "other". */
static void count_error(struct dlv *d)
{
	uint32_t distinct = d->ncounts < MAX_ERR_CODES ? d->ncounts : MAX_ERR_CODES - 1;
	for (uint32_t i = 0; i < distinct; i++)
		if (strcmp(d->counts[i].code, d->err_code) == 0) {
			d->counts[i].n++;
			return;
		}
	if (!d->counts && !(d->counts = calloc(MAX_ERR_CODES, sizeof *d->counts)))
		return;
	const char *code = d->ncounts < MAX_ERR_CODES - 1 ? d->err_code : "other";
	uint32_t i = d->ncounts < MAX_ERR_CODES ? d->ncounts++ : MAX_ERR_CODES - 1;
	snprintf(d->counts[i].code, sizeof d->counts[i].code, "%s", code);
	d->counts[i].n++;
}

/* Logs a failed attempt, so that an operator sees a failing target the moment it fails: the
 * first failure of each delivery always, later ones at most once a second per sink (with how
 * many were not logged in between). next says what happens now. */
static void log_failure(struct dlv *d, const char *next)
{
	struct sink_inst *s = d->sink;
	char attempt[16], suppressed[24] = "";
	if (d->attempts > 1) {
		uint64_t now = d->e->clock_mono;
		if (now < s->log_next_ms) {
			s->log_suppressed++;
			return;
		}
		s->log_next_ms = now + 1000;
		if (s->log_suppressed)
			snprintf(suppressed, sizeof suppressed, "%llu",
				 (unsigned long long)s->log_suppressed);
		s->log_suppressed = 0;
	}
	snprintf(attempt, sizeof attempt, "%u", d->attempts);
	kr_log(KR_LOG_WARN, "engine", "msg", "delivery attempt failed", "sink", d->pub.sink,
	       "rule", d->pub.rule, "attempt", attempt, "error_code", d->err_code, "error",
	       d->err_msg, "next", next, suppressed[0] ? "suppressed" : NULL, suppressed, NULL);
}

static void deliver_outcome(struct dlv *d, enum kr_outcome o, uint64_t not_before_ms,
			    const char *error_code, const char *error_message)
{
	struct kr_engine *e = d->e;
	struct sink_inst *s = d->sink;
	uint64_t now = kr_now_ms();
	kr_metrics_observe_latency(s->stats, now - d->submit_mono);
	if (o == KR_DELIVERED) {
		kr_metrics_count(&s->stats->success, 1);
		if (d->is_invalid) {
			e->totals.invalid_dead_lettered++;
			kr_metrics_count(&s->stats->dead_letters_written, 1);
		} else if (d->is_dead_letter) {
			e->totals.dead_lettered++;
			kr_metrics_count(&s->stats->dead_letters_written, 1);
		} else {
			e->totals.delivered++;
		}
		delivery_finished(d, true);
		return;
	}
	snprintf(d->err_code, sizeof d->err_code, "%s", error_code ? error_code : "error");
	snprintf(d->err_msg, sizeof d->err_msg, "%s", error_message ? error_message : "");
	count_error(d);
	bool retryable = o == KR_RETRYABLE;
	kr_metrics_count(retryable ? &s->stats->retryable : &s->stats->permanent, 1);
	uint64_t age = now - d->rec->received_mono;
	if (retryable && d->attempts < d->retry.max_attempts && age < d->retry.max_age_ms) {
		uint64_t cap = d->retry.initial_backoff_ms;
		for (uint32_t i = 1; i < d->attempts && cap < d->retry.max_backoff_ms; i++)
			cap *= 2;
		if (cap > d->retry.max_backoff_ms)
			cap = d->retry.max_backoff_ms;
		uint64_t delay = next_random(e) % (cap + 1);
		uint64_t wall = kr_wall_ms();
		if (not_before_ms > wall && not_before_ms - wall > delay)
			delay = not_before_ms - wall;
		if (age + delay >= d->retry.max_age_ms)
			delay = d->retry.max_age_ms - age;
		if (!d->timer)
			d->timer = kr_timer_new(e->loop, retry_fire, d);
		if (d->timer) {
			char next[48];
			snprintf(next, sizeof next, "retry in %llu ms", (unsigned long long)delay);
			log_failure(d, next);
			kr_metrics_count(&s->stats->retries, 1);
			kr_timer_start(d->timer, delay);
			return;
		}
	}
	log_failure(d, !retryable ? "permanent failure: no retry"
		       : d->attempts >= d->retry.max_attempts ? "attempts used up"
							       : "event too old to retry");
	dead_letter(d);
}

/* {"CODE":n,...} of a delivery's failures, without the braces. */
static bool put_counts(struct kr_buf *b, const struct dlv *d)
{
	for (uint32_t i = 0; i < d->ncounts; i++) {
		char n[16];
		snprintf(n, sizeof n, ":%u", d->counts[i].n);
		if ((i && !kr_buf_puts(b, ",")) ||
		    !kr_buf_json_string(b, d->counts[i].code, strlen(d->counts[i].code)) ||
		    !kr_buf_puts(b, n))
			return false;
	}
	return true;
}

/* The policy is exhausted or the failure permanent: to the dead-letter sink, or the record
 * stays unacknowledged. */
static void dead_letter(struct dlv *d)
{
	struct kr_engine *e = d->e;
	struct record *r = d->rec;
	char tag[32];
	snprintf(tag, sizeof tag, "%u", d->attempts);
	if (d->is_dead_letter || d->dead_letter < 0) {
		kr_log(KR_LOG_ERROR, "engine", "msg",
		       d->is_dead_letter ? "dead-letter delivery failed; the record is not acknowledged"
					 : "delivery failed and no dead-letter sink is set; the record is not acknowledged",
		       "sink", d->pub.sink, "rule", d->pub.rule, "attempts", tag, "error_code",
		       d->err_code, "error", d->err_msg, NULL);
		delivery_finished(d, false);
		return;
	}
	char first[40], last[40], index[16];
	snprintf(index, sizeof index, "%d", d->target_index);
	rfc3339(d->first_wall, first, sizeof first);
	rfc3339(d->last_wall, last, sizeof last);
	struct kr_buf b = {0};
	bool ok = kr_buf_puts(&b, "{\"event\":") && kr_buf_append(&b, r->event, r->len) &&
		  kr_buf_puts(&b, ",\"rule\":") &&
		  kr_buf_json_string(&b, d->pub.rule, strlen(d->pub.rule)) &&
		  kr_buf_puts(&b, ",\"target\":") &&
		  kr_buf_json_string(&b, d->pub.sink, strlen(d->pub.sink)) &&
		  kr_buf_puts(&b, ",\"target_index\":") && kr_buf_puts(&b, index) &&
		  kr_buf_puts(&b, ",\"error_code\":") &&
		  kr_buf_json_string(&b, d->err_code, strlen(d->err_code)) &&
		  kr_buf_puts(&b, ",\"error_message\":") &&
		  kr_buf_json_string(&b, d->err_msg, strlen(d->err_msg)) &&
		  kr_buf_puts(&b, ",\"error_counts\":{") && put_counts(&b, d) &&
		  kr_buf_puts(&b, "},\"attempts\":") && kr_buf_puts(&b, tag) &&
		  kr_buf_puts(&b, ",\"first_attempt_time\":\"") && kr_buf_puts(&b, first) &&
		  kr_buf_puts(&b, "\",\"last_attempt_time\":\"") && kr_buf_puts(&b, last) &&
		  kr_buf_puts(&b, "\"}");
	kr_log(KR_LOG_WARN, "engine", "msg", "delivery dead-lettered", "sink", d->pub.sink, "rule",
	       d->pub.rule, "dead_letter", d->gen->cfg->sinks[d->dead_letter].name, "attempts", tag,
	       "error_code", d->err_code, "error", d->err_msg, NULL);
	kr_metrics_count(&d->sink->stats->dead_lettered, 1);
	struct dlv *x = ok ? delivery_new(e, r, d->gen, (uint32_t)d->dead_letter, d->pub.rule, b.p,
					  b.len)
			   : NULL;
	if (!ok)
		kr_buf_free(&b);
	if (x) {
		x->is_dead_letter = true;
		delivery_enqueue(x);
	}
	delivery_finished(d, x != NULL);
}

static void sink_pump(struct sink_inst *s)
{
	if (s->pumping)
		return;
	s->pumping = true;
	/* a sink that batches limits its batches itself; it gets every delivery */
	uint64_t limit = s->cfg->plugin->batches ? UINT64_MAX : s->cfg->concurrency;
	while (s->wait_head && s->inflight < limit) {
		struct dlv *d = s->wait_head;
		s->wait_head = d->next_wait;
		if (!s->wait_head)
			s->wait_tail = NULL;
		d->next_wait = NULL;
		d->attempts++;
		d->pub.attempt = d->attempts;
		d->last_wall = s->gen->e->clock_wall;
		if (d->attempts == 1)
			d->first_wall = d->last_wall;
		d->submit_mono = s->gen->e->clock_mono;
		s->inflight++;
		s->cfg->plugin->submit(s->ctx, &d->pub);
	}
	s->pumping = false;
}

static void delivery_enqueue(struct dlv *d)
{
	struct sink_inst *s = d->sink;
	if (s->wait_tail)
		s->wait_tail->next_wait = d;
	else
		s->wait_head = d;
	s->wait_tail = d;
	sink_pump(s);
}

/* ---- records and acks ---- */

static void unlink_record(struct inp *in, struct record *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		in->ack_head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		in->ack_tail = r->prev;
}

/* Collects what became acknowledgeable in input in: the done prefix of an ordered input's queue;
 * unordered inputs collect each done frame's token in record_release. */
static void ack_advance(struct inp *in)
{
	struct kr_engine *e = in->h->e;
	while (in->ack_head && in->ack_head->done && !in->ack_head->failed) {
		struct record *r = in->ack_head;
		unlink_record(in, r);
		in->ack_pos = r->position;
		in->ack_dirty = true;
		e->unacked--;
		free(r);
	}
}

/* Keeps a done frame's token for its acknowledgement (unordered inputs). */
static bool keep_token(struct inp *in, void *token)
{
	if (in->ntokens == in->captokens) {
		size_t cap = in->captokens ? in->captokens * 2 : 64;
		void **t = realloc(in->tokens, cap * sizeof *t);
		if (!t)
			return false;
		in->tokens = t;
		in->captokens = cap;
	}
	in->tokens[in->ntokens++] = token;
	return true;
}

static void record_release(struct kr_engine *e, struct record *r)
{
	r->done = true;
	if (!r->is_frame)
		e->in_flight--;
	struct record *frame = r->frame;
	if (frame) {
		/* an event of a frame: the frame's place in the queue holds the acknowledgement */
		if (r->failed)
			frame->failed = true;
		free(r);
		if (--frame->pending == 0)
			record_release(e, frame);
		return;
	}
	if (r->failed)
		e->totals.failed_records++; /* it stays at its place and blocks the acknowledged prefix */
	struct inp *in = r->in;
	if (!in->unordered) {
		ack_advance(in);
		return;
	}
	/* each record on its own: a failed one is never acknowledged (the source delivers it
	   again); a done one is handed back by its token */
	if (!r->failed && keep_token(in, r->token))
		e->unacked--;
	unlink_record(in, r);
	free(r);
}

static void enqueue_record(struct inp *in, struct record *r)
{
	r->prev = in->ack_tail;
	if (in->ack_tail)
		in->ack_tail->next = r;
	else
		in->ack_head = r;
	in->ack_tail = r;
	in->h->e->unacked++;
}

/* An event (or invalid) record of input in, keeping a copy of its event (one allocation): in
 * the ack queue, or in the framed record being read. */
static struct record *record_new(struct inp *in, const char *raw, size_t len)
{
	struct kr_source_handle *h = in->h;
	struct record *r = malloc(sizeof *r + len + 1);
	if (!r)
		return NULL;
	memset(r, 0, sizeof *r);
	r->event = r->bytes;
	memcpy(r->event, raw, len);
	r->event[len] = 0;
	r->len = len;
	r->in = in;
	r->position = in->next_pos;
	r->received_wall = h->e->clock_wall;
	r->received_mono = h->e->clock_mono;
	if (in->frame) {
		r->frame = in->frame;
		in->frame->pending++;
	} else {
		enqueue_record(in, r);
	}
	h->e->in_flight++;
	h->e->totals.records++;
	return r;
}

/* Records with no delivery are done at once (still in order in the ack queue). */
static void record_done_now(struct kr_engine *e, struct record *r)
{
	r->pending = 0;
	record_release(e, r);
}

/* ---- routing ---- */

static int64_t parse_time_ms(const char *s, size_t n)
{
	char buf[64];
	if (!s || n >= sizeof buf || n < 20)
		return -1;
	memcpy(buf, s, n);
	buf[n] = 0;
	struct tm tm = {0};
	char *rest = strptime(buf, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!rest)
		return -1;
	int64_t ms = 0;
	if (*rest == '.') {
		rest++;
		int64_t scale = 100;
		while (*rest >= '0' && *rest <= '9') {
			ms += (*rest - '0') * scale;
			scale /= 10;
			rest++;
		}
	}
	int64_t off = 0;
	if (*rest == '+' || *rest == '-') {
		int hh, mm;
		if (sscanf(rest + 1, "%2d:%2d", &hh, &mm) != 2)
			return -1;
		off = (hh * 3600 + mm * 60) * (*rest == '-' ? -1 : 1);
	} else if (*rest != 'Z' && *rest != 'z') {
		return -1;
	}
	return ((int64_t)timegm(&tm) - off) * 1000 + ms;
}

int64_t kr_parse_rfc3339_ms(const char *s)
{
	return parse_time_ms(s, strlen(s));
}

static char *with_replay_name(const char *raw, size_t len, const char *name, size_t *outlen)
{
	const char *open = memchr(raw, '{', len);
	if (!open)
		return NULL;
	size_t head = (size_t)(open - raw) + 1;
	if (head > len)
		return NULL;
	size_t tail = len - head;
	const char *rest = open + 1;
	size_t j = 0;
	while (j < tail && (rest[j] == ' ' || rest[j] == '\n' || rest[j] == '\r' || rest[j] == '\t'))
		j++;
	bool empty = j < tail && rest[j] == '}';
	struct kr_buf b = {0};
	if (!kr_buf_append(&b, raw, head) || !kr_buf_puts(&b, "\"replay-name\":") ||
	    !kr_buf_json_string(&b, name, strlen(name)) || (!empty && !kr_buf_puts(&b, ",")) ||
	    !kr_buf_append(&b, rest, tail)) {
		kr_buf_free(&b);
		return NULL;
	}
	*outlen = b.len;
	return b.p;
}

static void route(struct kr_engine *e, struct gen *g, struct record *r, const uint32_t *ids,
		  size_t n)
{
	if (n == 0) {
		e->totals.unmatched++;
		kr_metrics_count(&kr_metrics_global(e->metrics)->unmatched, 1);
		if (g->cfg->unmatched >= 0) {
			struct dlv *d = delivery_new(e, r, g, (uint32_t)g->cfg->unmatched,
						     "(unmatched)", NULL, 0);
			if (d) {
				delivery_enqueue(d);
				return;
			}
		}
		record_done_now(e, r);
		return;
	}
	e->totals.matched++;
	/* deliveries are created first and enqueued after, so the record cannot finish while its
	   later targets are still being added */
	r->pending++;
	for (size_t i = 0; i < n; i++) {
		const struct kr_rule_cfg *rc = &g->cfg->rules[ids[i]];
		kr_metrics_count(&g->rule_stats[ids[i]]->matched, 1);
		for (size_t t = 0; t < rc->ntargets; t++) {
			const struct kr_target_cfg *tc = &rc->tcfg[t];
			size_t plen = 0;
			char terr[KR_ERRBUF];
			char *p = NULL;
			/* untransformed targets send the record's own bytes, not a copy */
			if ((tc->input_path || tc->input_transformer) &&
			    !(p = kr_transform(tc, rc->name, r->event, r->len, r->received_wall, &plen,
					       terr))) {
				kr_log(KR_LOG_ERROR, "engine", "msg", "input transformation failed",
				       "rule", rc->name, "sink", g->cfg->sinks[tc->sink].name, "error",
				       terr, NULL);
				r->failed = true;
				continue;
			}
			struct dlv *d = delivery_new(e, r, g, tc->sink, rc->name, p, plen);
			if (!d) {
				r->failed = true;
				continue;
			}
			d->retry = tc->retry;
			d->dead_letter = tc->dead_letter;
			d->target_index = (int32_t)t;
			delivery_enqueue(d);
		}
	}
	record_delivery_ended(e, r, true);
}

static void release_ready(struct kr_engine *e);

/* A record done in an earlier run (checkpoint): acknowledged in order, not delivered again. */
static int skip_record(struct inp *in)
{
	struct kr_engine *e = in->h->e;
	struct record *r = record_new(in, "", 0);
	if (!r)
		return 1;
	e->totals.records--;
	e->totals.skipped++;
	record_done_now(e, r);
	return 0;
}

static int on_event(void *ctx, const struct kr_event *ev)
{
	struct inp *in = ctx;
	struct kr_source_handle *h = in->h;
	struct kr_engine *e = h->e;
	uint64_t pos = ++in->next_pos;
	if (pos <= in->skip)
		return skip_record(in);
	e->totals.events++;
	kr_metrics_count(&h->stats->records, 1);
	if (e->opts.from_ms || e->opts.to_ms) {
		int64_t t = parse_time_ms(ev->time, ev->time_len);
		if (t < 0 || (e->opts.from_ms && (uint64_t)t < e->opts.from_ms) ||
		    (e->opts.to_ms && (uint64_t)t >= e->opts.to_ms)) {
			e->totals.filtered++;
			struct record *r = record_new(in, "", 0);
			if (r)
				record_done_now(e, r);
			return 0;
		}
	}
	const char *raw = ev->raw;
	size_t len = ev->raw_len;
	char *named = NULL;
	if (e->opts.replay_name) {
		named = with_replay_name(raw, len, e->opts.replay_name, &len);
		if (named) {
			raw = named;
			const struct kr_path_node *node =
				kr_path_child(kr_rules_paths(in->gen->cfg->compiled)->root, "replay-name", 11);
			int32_t slot = kr_path_slot(node);
			if (slot >= 0)
				kr_view_add(ev->view, (uint32_t)slot, KR_V_STRING,
					    e->opts.replay_name, strlen(e->opts.replay_name), NULL, 0);
		}
	}
	struct gen *g = in->gen;
	const uint32_t *ids;
	size_t n = kr_rules_match(g->cfg->compiled, g->st, ev->view, &ids);
	/* a record that nothing will deliver keeps no copy of its bytes, only its place */
	bool keep = n > 0 || g->cfg->unmatched >= 0;
	struct record *r = record_new(in, keep ? raw : "", keep ? len : 0);
	free(named);
	if (!r) {
		kr_log(KR_LOG_ERROR, "engine", "msg", "out of memory; stopping the source", "source",
		       h->name, NULL);
		return 1;
	}
	if (!e->opts.rate) {
		route(e, g, r, ids, n);
		/* at the in-flight limit the source stops reading right after this record */
		return kr_engine_wants(e) ? 0 : KR_STREAM_PAUSE;
	}
	/* replay --rate: the matched record waits for a token */
	if (e->nready == e->capready) {
		size_t cap = e->capready ? e->capready * 2 : 1024;
		struct ready *q = malloc(cap * sizeof *q);
		if (!q)
			return 1;
		for (size_t i = 0; i < e->nready; i++)
			q[i] = e->ready[(e->ready_head + i) % e->capready];
		free(e->ready);
		e->ready = q;
		e->capready = cap;
		e->ready_head = 0;
	}
	struct ready *q = &e->ready[(e->ready_head + e->nready) % e->capready];
	q->r = r;
	q->gen = g;
	q->n = n;
	q->ids = n ? malloc(n * sizeof *ids) : NULL;
	if (n && !q->ids)
		return 1;
	if (n)
		memcpy(q->ids, ids, n * sizeof *ids);
	g->refs++;
	e->nready++;
	return kr_engine_wants(e) ? 0 : KR_STREAM_PAUSE;
}

static int on_invalid(void *ctx, const struct kr_invalid *inv)
{
	struct inp *in = ctx;
	struct kr_source_handle *h = in->h;
	struct kr_engine *e = h->e;
	uint64_t pos = ++in->next_pos;
	char where[512];
	snprintf(where, sizeof where, "%s:%llu", in->name ? in->name : "-",
		 (unsigned long long)inv->line);
	if (pos <= in->skip)
		return skip_record(in);
	e->totals.invalid++;
	kr_metrics_count(&h->stats->records, 1);
	kr_metrics_count(&h->stats->invalid, 1);
	kr_log(KR_LOG_WARN, "source", "name", h->name, "position", where, "msg", "invalid record",
	       "error", inv->message, NULL);
	struct record *r = record_new(in, "", 0);
	if (!r)
		return 1;
	struct gen *g = in->gen;
	if (g->cfg->invalid_dead_letter >= 0) {
		/* always valid JSON: bytes that are not UTF-8 are replaced in "record" and kept
		   exactly in "record_base64"; an oversized record keeps a bounded prefix */
		struct kr_buf b = {0};
		const char *raw = inv->raw ? inv->raw : "";
		size_t raw_len = inv->raw ? inv->raw_len : 0, replaced = 0;
		char nums[96];
		snprintf(nums, sizeof nums, ",\"record_size\":%llu,\"record_truncated\":%s,\"offset\":%llu",
			 (unsigned long long)inv->size, raw_len < inv->size ? "true" : "false",
			 (unsigned long long)inv->offset);
		bool ok = kr_buf_puts(&b, "{\"record\":") &&
			  kr_utf8_json_string(&b, raw, raw_len, &replaced) &&
			  (!replaced || (kr_buf_puts(&b, ",\"record_base64\":\"") &&
					 kr_buf_base64(&b, raw, raw_len) && kr_buf_puts(&b, "\""))) &&
			  kr_buf_puts(&b, nums) && kr_buf_puts(&b, ",\"source\":") &&
			  kr_buf_json_string(&b, h->name, strlen(h->name)) &&
			  kr_buf_puts(&b, ",\"position\":") &&
			  kr_buf_json_string(&b, where, strlen(where)) &&
			  kr_buf_puts(&b, ",\"error_message\":") &&
			  kr_buf_json_string(&b, inv->message, strlen(inv->message)) &&
			  kr_buf_puts(&b, "}");
		struct dlv *d = ok ? delivery_new(e, r, g, (uint32_t)g->cfg->invalid_dead_letter,
						  "(invalid)", b.p, b.len)
				   : (kr_buf_free(&b), NULL);
		if (d) {
			d->is_dead_letter = d->is_invalid = true;
			delivery_enqueue(d);
			return 0;
		}
	}
	record_done_now(e, r);
	return 0;
}

static void release_ready(struct kr_engine *e)
{
	if (!e->opts.rate || !e->nready)
		return;
	uint64_t now = kr_now_ms();
	e->tokens += (double)(now - e->tokens_at) * (double)e->opts.rate / 1000.0;
	e->tokens_at = now;
	if (e->tokens > (double)e->opts.rate)
		e->tokens = (double)e->opts.rate;
	while (e->nready && e->tokens >= 1.0) {
		struct ready q = e->ready[e->ready_head];
		e->ready_head = (e->ready_head + 1) % e->capready;
		e->nready--;
		e->tokens -= 1.0;
		route(e, q.gen, q.r, q.ids, q.n);
		free(q.ids);
		gen_unref(e, q.gen);
	}
}

/* ---- sources ---- */

static struct kr_source_handle *handle_new(struct kr_engine *e, const char *name)
{
	struct kr_source_handle *h = calloc(1, sizeof *h);
	if (!h || !(h->name = strdup(name))) {
		free(h);
		return NULL;
	}
	h->e = e;
	h->stats = kr_metrics_source(e->metrics, name);
	struct kr_source_handle **v = realloc(e->sources, (e->nsources + 1) * sizeof *v);
	if (!v) {
		free(h->name);
		free(h);
		return NULL;
	}
	e->sources = v;
	e->sources[e->nsources++] = h;
	return h;
}

/* Moves an input's stream to the current generation when it is between records. */
static void input_rebind(struct kr_engine *e, struct inp *in)
{
	if (in->gen == e->cur ||
	    kr_stream_rebind(in->stream, kr_rules_paths(e->cur->cfg->compiled)) != KR_OK)
		return;
	struct gen *old = in->gen;
	in->gen = e->cur;
	e->cur->refs++;
	gen_unref(e, old);
}

enum kr_err kr_engine_add_source(struct kr_engine *e, const char *name,
				 const struct kr_source_plugin *plugin, const struct kr_json *obj,
				 const void *conf, char *err)
{
	struct kr_source_handle *h = handle_new(e, name);
	if (!h)
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	h->plugin = plugin;
	struct kr_source_args a = {.name = h->name, .conf = conf, .obj = obj,
				   .loop = e->loop, .handle = h};
	char serr[KR_ERRBUF] = "";
	if (plugin->create(&a, &h->ctx, serr) != KR_OK) {
		h->ctx = NULL;
		h->done = true;
		return kr_errf(err, KR_ERR_CONFIG, "source \"%s\": %s", name, serr);
	}
	return KR_OK;
}

enum kr_err kr_engine_start_sources(struct kr_engine *e, char *err)
{
	const struct kr_config *c = e->cur->cfg;
	for (size_t i = 0; i < c->nsources; i++) {
		if (!c->sources[i].plugin)
			return kr_errf(err, KR_ERR_UNAVAILABLE,
				       "source \"%s\": type \"%s\" is not available in this build",
				       c->sources[i].name, c->sources[i].type);
		enum kr_err r = kr_engine_add_source(e, c->sources[i].name, c->sources[i].plugin,
						     c->sources[i].obj, c->sources[i].conf, err);
		if (r)
			return r;
	}
	return KR_OK;
}

struct kr_input *kr_input_open(struct kr_source_handle *h, const struct kr_input_opts *o)
{
	struct kr_engine *e = h->e;
	struct inp **v = realloc(h->inputs, (h->ninputs + 1) * sizeof *v);
	if (!v)
		return NULL;
	h->inputs = v;
	struct inp *in = calloc(1, sizeof *in);
	if (!in || !(in->name = strdup(o->name ? o->name : h->name))) {
		free(in);
		return NULL;
	}
	in->h = h;
	in->id = o->id;
	in->unordered = o->unordered;
	in->skip = o->skip;
	in->gen = e->cur;
	struct kr_stream_callbacks cb = {.event = on_event, .invalid = on_invalid};
	if (kr_stream_new(kr_rules_paths(e->cur->cfg->compiled), NULL, &cb, in, &in->stream) !=
	    KR_OK) {
		free(in->name);
		free(in);
		return NULL;
	}
	e->cur->refs++;
	h->inputs[h->ninputs++] = in;
	return (struct kr_input *)in;
}

struct kr_stream *kr_input_stream(struct kr_input *input)
{
	return ((struct inp *)input)->stream;
}

enum kr_err kr_input_record_begin(struct kr_input *input, uint64_t position, void *token)
{
	struct inp *in = (struct inp *)input;
	struct record *f = calloc(1, sizeof *f);
	if (!f)
		return KR_ERR_NOMEM;
	f->in = in;
	f->is_frame = true;
	f->position = position;
	f->token = token;
	f->pending = 1; /* until kr_input_record_end */
	f->event = f->bytes;
	enqueue_record(in, f);
	in->frame = f;
	return KR_OK;
}

void kr_input_record_end(struct kr_input *input)
{
	struct inp *in = (struct inp *)input;
	struct record *f = in->frame;
	if (!f)
		return;
	in->frame = NULL;
	if (--f->pending == 0)
		record_release(in->h->e, f);
}

void kr_input_close(struct kr_input *input)
{
	struct inp *in = (struct inp *)input;
	kr_input_record_end(input);
	in->closed = true;
}

/* Frees an input (its queue holds only records the engine is closing with). */
static void input_free(struct kr_engine *e, struct inp *in, bool closing)
{
	kr_stream_free(in->stream);
	for (struct record *r = in->ack_head, *n; r; r = n) {
		n = r->next;
		free(r);
	}
	if (!closing)
		gen_unref(e, in->gen);
	free(in->tokens);
	free(in->name);
	free(in);
}

/* Hands the collected acknowledgements to the sources (the end of a round, outside any pull),
 * and frees the closed inputs that have nothing left in flight after a last one. */
static void flush_acks(struct kr_engine *e)
{
	for (size_t i = 0; i < e->nsources; i++) {
		struct kr_source_handle *h = e->sources[i];
		for (size_t k = 0; k < h->ninputs; k++) {
			struct inp *in = h->inputs[k];
			bool finished = in->closed && !in->ack_head && !in->frame;
			struct kr_ack a = {.id = in->id};
			for (size_t t = 0; t < in->ntokens && h->ctx; t++) {
				a.token = in->tokens[t];
				h->plugin->ack(h->ctx, &a);
			}
			in->ntokens = 0;
			a.token = NULL;
			a.position = in->ack_pos;
			a.final = finished;
			if ((in->ack_dirty || finished) && h->ctx)
				h->plugin->ack(h->ctx, &a);
			in->ack_dirty = false;
			if (finished) {
				h->inputs[k--] = h->inputs[--h->ninputs];
				input_free(e, in, false);
			}
		}
	}
}

uint64_t kr_source_in_flight_limit(const struct kr_source_handle *h)
{
	return h->e->max_in_flight;
}

void kr_source_error(struct kr_source_handle *h)
{
	h->e->totals.source_errors++;
}

bool kr_engine_wants(const struct kr_engine *e)
{
	return !e->stopping && e->in_flight < e->max_in_flight;
}

/* ---- engine ---- */

enum kr_err kr_engine_new(struct kr_loop *loop, struct kr_config *cfg,
			  const struct kr_engine_opts *opts, struct kr_metrics *metrics,
			  struct kr_engine **out, char *err)
{
	struct kr_engine *e = calloc(1, sizeof *e);
	if (!e)
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	e->loop = loop;
	e->metrics = metrics;
	if (opts)
		e->opts = *opts;
	tick(e);
	e->rng = e->clock_wall * 0x9E3779B97F4A7C15ULL | 1;
	e->tokens_at = kr_now_ms();
	enum kr_err r = gen_new(e, cfg, &e->cur, err);
	if (r) {
		free(e);
		return r;
	}
	e->cur->refs = 1;
	e->max_in_flight = cfg->max_in_flight;
	*out = e;
	return KR_OK;
}

enum kr_err kr_engine_reload(struct kr_engine *e, struct kr_config *cfg, char *err)
{
	struct gen *g;
	enum kr_err r = gen_new(e, cfg, &g, err);
	if (r)
		return r;
	g->refs = 1;
	struct gen *old = e->cur;
	old->next_retired = e->retired;
	e->retired = old;
	e->cur = g;
	e->max_in_flight = cfg->max_in_flight;
	/* streams between records move now; the others at their next step between records */
	for (size_t i = 0; i < e->nsources; i++)
		for (size_t k = 0; k < e->sources[i]->ninputs; k++)
			input_rebind(e, e->sources[i]->inputs[k]);
	gen_unref(e, old);
	return KR_OK;
}

const struct kr_config *kr_engine_config(const struct kr_engine *e)
{
	return e->cur->cfg;
}

void kr_engine_reopen(struct kr_engine *e)
{
	for (size_t i = 0; i < e->cur->cfg->nsinks; i++)
		if (e->cur->sinks[i].cfg->plugin->reopen)
			e->cur->sinks[i].cfg->plugin->reopen(e->cur->sinks[i].ctx);
}

static void flush_sinks(struct gen *g)
{
	for (size_t i = 0; i < g->cfg->nsinks; i++)
		if (g->sinks[i].cfg->plugin->flush)
			g->sinks[i].cfg->plugin->flush(g->sinks[i].ctx);
}

/* Deliveries that a completion let through (concurrency slots, dead letters) were submitted
 * after the flush: flush again until a round completes nothing more. */
static void flush_all(struct kr_engine *e)
{
	for (int round = 0; round < 64; round++) {
		uint64_t before = e->completions;
		flush_sinks(e->cur);
		for (struct gen *g = e->retired; g; g = g->next_retired)
			flush_sinks(g);
		if (e->completions == before)
			break;
	}
}

int kr_engine_step(struct kr_engine *e)
{
	int sleep = 1000;
	bool held = false;
	tick(e);
	e->in_round = true;
	release_ready(e);
	for (size_t i = 0; i < e->nsources; i++) {
		struct kr_source_handle *h = e->sources[i];
		if (h->done || !h->ctx)
			continue;
		/* a stream left on a retired generation moves as soon as it is between records */
		for (size_t k = 0; k < h->ninputs; k++)
			input_rebind(e, h->inputs[k]);
		if (!kr_engine_wants(e) || (e->opts.rate && e->nready > e->opts.rate)) {
			held = true;
			continue;
		}
		enum kr_pull p = h->plugin->pull(h->ctx);
		if (p == KR_PULL_DONE)
			h->done = true;
		else if (p == KR_PULL_MORE)
			sleep = 0;
	}
	flush_all(e);
	/* a source held back by the in-flight limit can go on if the flush made room */
	if (held && kr_engine_wants(e) && !(e->opts.rate && e->nready > e->opts.rate))
		sleep = 0;
	if (e->opts.rate && e->nready) {
		int wait = (int)(1000 / e->opts.rate) + 1;
		if (wait < sleep)
			sleep = wait;
	}
	for (size_t i = 0; i < e->nsources; i++)
		if (e->sources[i]->ctx && e->sources[i]->plugin->lag)
			kr_metrics_set(&e->sources[i]->stats->lag,
				       e->sources[i]->plugin->lag(e->sources[i]->ctx));
	kr_metrics_set(&kr_metrics_global(e->metrics)->in_flight, (int64_t)e->in_flight);
	e->in_round = false;
	flush_acks(e);
	return sleep;
}

void kr_engine_stop_reading(struct kr_engine *e)
{
	e->stopping = true;
}

bool kr_engine_idle(const struct kr_engine *e)
{
	if (e->in_flight > 0 || e->nready)
		return false;
	if (e->stopping)
		return true;
	for (size_t i = 0; i < e->nsources; i++)
		if (!e->sources[i]->done && e->sources[i]->ctx)
			return false;
	return true;
}

void kr_engine_progress(const struct kr_engine *e, uint64_t *done, uint64_t *total)
{
	*done = *total = 0;
	for (size_t i = 0; i < e->nsources; i++) {
		const struct kr_source_handle *h = e->sources[i];
		uint64_t d = 0, t = 0;
		if (h->ctx && h->plugin->progress)
			h->plugin->progress(h->ctx, &d, &t);
		*done += d;
		*total += t;
	}
}

void kr_engine_totals(const struct kr_engine *e, struct kr_engine_totals *t)
{
	*t = e->totals;
	t->in_flight = e->in_flight;
	t->unacked = e->unacked;
}

void kr_engine_free(struct kr_engine *e)
{
	if (!e)
		return;
	/* deliveries still in flight (grace period over) are dropped: their records stay
	   unacknowledged, so the source delivers them again */
	e->closing = true;
	for (size_t i = 0; i < e->nready; i++)
		free(e->ready[(e->ready_head + i) % e->capready].ids);
	/* sinks complete what they hold (freed, as closing), then the rest is dropped */
	for (struct gen *g = e->cur; g; g = g == e->cur ? e->retired : g->next_retired)
		for (size_t i = 0; i < g->cfg->nsinks; i++)
			if (g->sinks[i].ctx) {
				g->sinks[i].cfg->plugin->destroy(g->sinks[i].ctx);
				g->sinks[i].ctx = NULL;
			}
	while (e->all)
		delivery_free(e->all);
	for (size_t i = 0; i < e->nsources; i++) {
		struct kr_source_handle *h = e->sources[i];
		if (h->ctx)
			h->plugin->destroy(h->ctx);
		for (size_t k = 0; k < h->ninputs; k++)
			input_free(e, h->inputs[k], true);
		free(h->inputs);
		free(h->name);
		free(h);
	}
	free(e->sources);
	free(e->ready);
	struct gen *g = e->retired;
	while (g) {
		struct gen *n = g->next_retired;
		gen_free(g);
		g = n;
	}
	gen_free(e->cur);
	free(e);
}
