/* Deliveries (see engine_int.h): each lives from routing to success or dead letter. It waits for
 * a slot under its sink's concurrency limit, is submitted, and on a retryable failure sleeps on a
 * timer (retry.c) until its policy runs out; then it goes to its dead letter, or its record is
 * left unacknowledged. Every failed attempt is logged and counted by error code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_int.h"
#include "log.h"
#include "metrics.h"
#include "retry.h"

static void sink_pump(struct sink_inst *s);

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

struct dlv *eng_delivery_new(struct kr_engine *e, struct record *rec, struct gen *g,
				uint32_t sink, const char *rule, char *payload, size_t len)
{
	struct dlv *d = e->dlv_cache;
	if (d) {
		e->dlv_cache = d->next_all;
		e->dlv_cached--;
		memset(d, 0, sizeof *d);
	} else if (!(d = calloc(1, sizeof *d))) {
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
	d->pub.event = rec->event;
	d->pub.event_len = rec->len;
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

void eng_delivery_free(struct dlv *d)
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
	free(d->err);
	if (e->dlv_cached < DLV_CACHE_KEEP && !e->closing) {
		d->next_all = e->dlv_cache;
		e->dlv_cache = d;
		e->dlv_cached++;
	} else {
		free(d);
	}
	if (!e->closing)
		eng_gen_unref(e, g);
}

void eng_delivery_drop(struct dlv *d)
{
	struct record *r = d->rec;
	struct kr_engine *e = d->e;
	eng_delivery_free(d);
	/* an event of a framed record (a message) is in no acknowledgement queue, so the input
	   does not free it: its last delivery does (the frame goes with its input) */
	if (r && r->frame && --r->pending == 0)
		eng_record_free(e, r);
}

void eng_record_delivery_ended(struct kr_engine *e, struct record *r, bool ok)
{
	if (!ok)
		r->failed = true;
	if (--r->pending == 0)
		eng_record_release(e, r);
}

static void dead_letter(struct dlv *d);
static void deliver_outcome(struct dlv *d, enum kr_outcome o, uint64_t not_before_ms,
			    const char *error_code, const char *error_message);

static void delivery_finished(struct dlv *d, bool ok)
{
	struct kr_engine *e = d->e;
	struct record *r = d->rec;
	eng_delivery_free(d);
	eng_record_delivery_ended(e, r, ok);
}

void eng_tick(struct kr_engine *e)
{
	e->clock_mono = kr_now_ms();
	e->clock_wall = kr_wall_ms();
}

static void retry_fire(struct kr_loop *l, struct kr_timer *t, void *arg)
{
	(void)l;
	(void)t;
	struct dlv *d = arg;
	eng_tick(d->e);
	eng_delivery_enqueue(d);
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
		eng_delivery_drop(d);
		return;
	}
	/* the delivery may be the last thing holding its generation: keep it (and s) alive */
	g->refs++;
	if (!e->in_round)
		eng_tick(e); /* from a network or timer callback: the round's clock is stale */
	deliver_outcome(d, o, not_before_ms, error_code, error_message);
	sink_pump(s);
	eng_gen_unref(e, g);
}

/* The last failure's code and message (out of memory when there was no room to keep them). */
static const char *err_code(const struct dlv *d)
{
	return d->err ? d->err->code : "ENOMEM";
}

static const char *err_msg(const struct dlv *d)
{
	return d->err ? d->err->msg : "out of memory: the failure's own reason could not be kept";
}

/* Counts a failure under its error code; past MAX_ERR_CODES - 1 distinct codes, the rest
 * count together as "other". */
static void count_error(struct dlv *d)
{
	uint32_t distinct = d->ncounts < MAX_ERR_CODES ? d->ncounts : MAX_ERR_CODES - 1;
	for (uint32_t i = 0; i < distinct; i++)
		if (strcmp(d->counts[i].code, err_code(d)) == 0) {
			d->counts[i].n++;
			return;
		}
	if (!d->counts && !(d->counts = calloc(MAX_ERR_CODES, sizeof *d->counts)))
		return;
	const char *code = d->ncounts < MAX_ERR_CODES - 1 ? err_code(d) : "other";
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
	       "rule", d->pub.rule, "attempt", attempt, "error_code", err_code(d), "error",
	       err_msg(d), "next", next, suppressed[0] ? "suppressed" : NULL, suppressed, NULL);
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
	if (d->err || (d->err = malloc(sizeof *d->err))) {
		snprintf(d->err->code, sizeof d->err->code, "%s", error_code ? error_code : "error");
		snprintf(d->err->msg, sizeof d->err->msg, "%s", error_message ? error_message : "");
	}
	count_error(d);
	bool retryable = o == KR_RETRYABLE;
	kr_metrics_count(retryable ? &s->stats->retryable : &s->stats->permanent, 1);
	uint64_t age = now - d->rec->received_mono;
	uint64_t wall = kr_wall_ms(), delay;
	if (retryable && kr_retry_delay(&d->retry, d->attempts, age,
					not_before_ms > wall ? not_before_ms - wall : 0,
					next_random(e), &delay)) {
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

/* ,"kmsrouter":{...}: the source's metadata of the record, when it has some. */
static bool put_meta(struct kr_buf *b, const struct record *r)
{
	const struct record *m = eng_meta_of(r);
	return !m || (kr_buf_puts(b, ",\"kmsrouter\":") && kr_buf_append(b, m->meta, m->meta_len));
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
		       err_code(d), "error", err_msg(d), NULL);
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
		  kr_buf_json_string(&b, err_code(d), strlen(err_code(d))) &&
		  kr_buf_puts(&b, ",\"error_message\":") &&
		  kr_buf_json_string(&b, err_msg(d), strlen(err_msg(d))) &&
		  kr_buf_puts(&b, ",\"error_counts\":{") && put_counts(&b, d) &&
		  kr_buf_puts(&b, "},\"attempts\":") && kr_buf_puts(&b, tag) &&
		  kr_buf_puts(&b, ",\"first_attempt_time\":\"") && kr_buf_puts(&b, first) &&
		  kr_buf_puts(&b, "\",\"last_attempt_time\":\"") && kr_buf_puts(&b, last) &&
		  kr_buf_puts(&b, "\"") && put_meta(&b, r) && kr_buf_puts(&b, "}");
	kr_log(KR_LOG_WARN, "engine", "msg", "delivery dead-lettered", "sink", d->pub.sink, "rule",
	       d->pub.rule, "dead_letter", d->gen->cfg->sinks[d->dead_letter].name, "attempts", tag,
	       "error_code", err_code(d), "error", err_msg(d), NULL);
	kr_metrics_count(&d->sink->stats->dead_lettered, 1);
	struct dlv *x = ok ? eng_delivery_new(e, r, d->gen, (uint32_t)d->dead_letter, d->pub.rule, b.p,
					  b.len)
			   : NULL;
	if (!ok)
		kr_buf_free(&b);
	if (x) {
		x->is_dead_letter = true;
		eng_delivery_enqueue(x);
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
		d->pub.sink_data = NULL;
		d->last_wall = s->gen->e->clock_wall;
		if (d->attempts == 1)
			d->first_wall = d->last_wall;
		d->submit_mono = s->gen->e->clock_mono;
		s->inflight++;
		s->cfg->plugin->submit(s->ctx, &d->pub);
	}
	s->pumping = false;
}

void eng_delivery_enqueue(struct dlv *d)
{
	struct sink_inst *s = d->sink;
	if (s->wait_tail)
		s->wait_tail->next_wait = d;
	else
		s->wait_head = d;
	s->wait_tail = d;
	sink_pump(s);
}

