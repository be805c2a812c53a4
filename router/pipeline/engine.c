/* The pipeline engine (see engine.h): generations of the configuration, routing an event to its
 * deliveries, sources, and the engine's rounds. Deliveries and dead letters are in
 * deliveries.c, records and acknowledgements in acks.c, replay's filters in replay.c, the retry
 * policy in retry.c; engine_int.h holds what they share.
 *
 * A generation is one configuration's rules and started sinks. Reload makes a new one current;
 * a retired one lives while streams still fill views for its paths or deliveries still run on its
 * sinks, then is freed. */
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "rules.h"
#include "transform.h"
#include "utf8.h"

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

void eng_gen_unref(struct kr_engine *e, struct gen *g)
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

void eng_route(struct kr_engine *e, struct gen *g, struct record *r, const uint32_t *ids,
		  size_t n)
{
	if (n == 0) {
		e->totals.unmatched++;
		kr_metrics_count(&kr_metrics_global(e->metrics)->unmatched, 1);
		if (g->cfg->unmatched >= 0) {
			struct dlv *d = eng_delivery_new(e, r, g, (uint32_t)g->cfg->unmatched,
						     "(unmatched)", NULL, 0);
			if (d) {
				eng_delivery_enqueue(d);
				return;
			}
		}
		eng_record_done_now(e, r);
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
			struct dlv *d = eng_delivery_new(e, r, g, tc->sink, rc->name, p, plen);
			if (!d) {
				r->failed = true;
				continue;
			}
			d->retry = tc->retry;
			d->dead_letter = tc->dead_letter >= 0 ? tc->dead_letter
							      : eng_input_dead_letter(r->in, g);
			d->target_index = (int32_t)t;
			eng_delivery_enqueue(d);
		}
	}
	eng_record_delivery_ended(e, r, true);
}


/* The values of j (a framed record's metadata, below the path node) for the rules that read
 * them. */
static void meta_values(struct kr_view *v, const struct kr_path_node *node,
			const struct kr_json *j)
{
	switch (j->type) {
	case KR_JSON_OBJECT:
		for (size_t i = 0; i < j->n; i++) {
			const struct kr_path_node *c = kr_path_child(node, j->keys[i], j->keylens[i]);
			if (c)
				meta_values(v, c, j->items[i]);
		}
		return;
	case KR_JSON_ARRAY:
		for (size_t i = 0; i < j->n; i++)
			meta_values(v, node, j->items[i]);
		return;
	default:
		break;
	}
	int32_t slot = kr_path_slot(node);
	if (slot < 0)
		return;
	static const enum kr_vtype types[] = {
		[KR_JSON_NULL] = KR_V_NULL, [KR_JSON_FALSE] = KR_V_FALSE, [KR_JSON_TRUE] = KR_V_TRUE,
		[KR_JSON_NUMBER] = KR_V_NUMBER, [KR_JSON_STRING] = KR_V_STRING};
	/* null, true and false carry no text, as the parser adds them (stream.c) */
	const char *text = j->type >= KR_JSON_NUMBER ? j->str : "";
	size_t len = j->type >= KR_JSON_NUMBER ? j->len : 0;
	kr_view_add(v, (uint32_t)slot, types[j->type], text, len, NULL, 0);
}

/* A framed record's metadata, under "kmsrouter", in an event's view (when a rule reads it). */
static void add_meta(struct gen *g, const struct record *frame, struct kr_view *v)
{
	const struct kr_path_node *node =
		kr_path_child(kr_rules_paths(g->cfg->compiled)->root, "kmsrouter", 9);
	struct kr_json *j = NULL;
	if (!node || kr_json_parse(frame->meta, frame->meta_len, NULL, &j, NULL, NULL) != KR_OK)
		return;
	meta_values(v, node, j);
	kr_json_free(j);
}

/* A record done in an earlier run (checkpoint): acknowledged in order, not delivered again. */
static int skip_record(struct inp *in)
{
	struct kr_engine *e = in->h->e;
	struct record *r = eng_record_new(in, "", 0);
	if (!r)
		return 1;
	e->totals.records--;
	e->totals.skipped++;
	eng_record_done_now(e, r);
	return 0;
}

int eng_on_event(void *ctx, const struct kr_event *ev)
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
		int64_t t = eng_parse_time_ms(ev->time, ev->time_len);
		if (t < 0 || (e->opts.from_ms && (uint64_t)t < e->opts.from_ms) ||
		    (e->opts.to_ms && (uint64_t)t >= e->opts.to_ms)) {
			e->totals.filtered++;
			struct record *r = eng_record_new(in, "", 0);
			if (r)
				eng_record_done_now(e, r);
			return 0;
		}
	}
	const char *raw = ev->raw;
	size_t len = ev->raw_len;
	char *named = NULL;
	if (e->opts.replay_name) {
		named = eng_with_replay_name(raw, len, e->opts.replay_name, &len);
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
	if (in->frame && in->frame->meta)
		add_meta(g, in->frame, ev->view);
	const uint32_t *ids;
	size_t n = kr_rules_match(g->cfg->compiled, g->st, ev->view, &ids);
	/* a record that nothing will deliver keeps no copy of its bytes, only its place */
	bool keep = n > 0 || g->cfg->unmatched >= 0;
	struct record *r = eng_record_new(in, keep ? raw : "", keep ? len : 0);
	free(named);
	if (!r) {
		kr_log(KR_LOG_ERROR, "engine", "msg", "out of memory; stopping the source", "source",
		       h->name, NULL);
		return 1;
	}
	if (!e->opts.rate) {
		eng_route(e, g, r, ids, n);
		/* at the in-flight limit the source stops reading right after this record */
		return kr_engine_wants(e) ? 0 : KR_STREAM_PAUSE;
	}
	/* replay --rate: the matched record waits for a token */
	if (!eng_ready_push(e, g, r, ids, n))
		return 1;
	return kr_engine_wants(e) ? 0 : KR_STREAM_PAUSE;
}

int eng_on_invalid(void *ctx, const struct kr_invalid *inv)
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
	struct record *r = eng_record_new(in, "", 0);
	if (!r)
		return 1;
	if (h->plugin->reject && h->ctx) {
		/* the source's own dead-letter place (a Kafka topic): in flight until it says */
		struct kr_reject rj = {.input = in->id, .raw = inv->raw ? inv->raw : "",
				       .raw_len = inv->raw ? inv->raw_len : 0, .size = inv->size,
				       .offset = inv->offset, .error = inv->message,
				       .done = (struct kr_rejected *)r};
		r->pending = 1;
		if (h->plugin->reject(h->ctx, &rj))
			return 0;
		r->pending = 0;
	}
	struct gen *g = in->gen;
	int32_t dl = eng_input_dead_letter(in, g);
	if (dl < 0)
		dl = g->cfg->invalid_dead_letter;
	if (dl >= 0) {
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
			  (!in->frame || !in->frame->meta ||
			   (kr_buf_puts(&b, ",\"kmsrouter\":") &&
			    kr_buf_append(&b, in->frame->meta, in->frame->meta_len))) &&
			  kr_buf_puts(&b, "}");
		struct dlv *d = ok ? eng_delivery_new(e, r, g, (uint32_t)dl,
						  "(invalid)", b.p, b.len)
				   : (kr_buf_free(&b), NULL);
		if (d) {
			d->is_dead_letter = d->is_invalid = true;
			d->pub.event = NULL; /* no event: a sink's templates find no field */
			d->pub.event_len = 0;
			eng_delivery_enqueue(d);
			return 0;
		}
	}
	/* a queue's message that could not be parsed goes back to its source undelivered (it
	   decides: an SQS message is made visible again, for the queue's redrive policy); a file's
	   record is done, counted as invalid */
	if (in->unordered)
		r->failed = true;
	eng_record_done_now(e, r);
	return 0;
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
void eng_input_rebind(struct kr_engine *e, struct inp *in)
{
	if (in->gen == e->cur ||
	    kr_stream_rebind(in->stream, kr_rules_paths(e->cur->cfg->compiled)) != KR_OK)
		return;
	struct gen *old = in->gen;
	in->gen = e->cur;
	e->cur->refs++;
	eng_gen_unref(e, old);
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

bool kr_source_stopping(const struct kr_source_handle *h)
{
	return h->e->stopping;
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
	eng_tick(e);
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
			eng_input_rebind(e, e->sources[i]->inputs[k]);
	eng_gen_unref(e, old);
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
	eng_tick(e);
	e->in_round = true;
	eng_release_ready(e);
	for (size_t i = 0; i < e->nsources; i++) {
		struct kr_source_handle *h = e->sources[i];
		if (h->done || !h->ctx)
			continue;
		/* a stream left on a retired generation moves as soon as it is between records */
		for (size_t k = 0; k < h->ninputs; k++)
			eng_input_rebind(e, h->inputs[k]);
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
	for (size_t i = 0; i < e->nsources; i++)
		if (e->sources[i]->ctx && e->sources[i]->plugin->lag_ms)
			kr_metrics_set(&e->sources[i]->stats->lag_ms,
				       e->sources[i]->plugin->lag_ms(e->sources[i]->ctx));
	kr_metrics_set(&kr_metrics_global(e->metrics)->in_flight, (int64_t)e->in_flight);
	e->in_round = false;
	eng_flush_acks(e);
	return sleep;
}

void kr_engine_stop_reading(struct kr_engine *e)
{
	if (e->stopping)
		return;
	e->stopping = true;
	for (size_t i = 0; i < e->nsources; i++) {
		struct kr_source_handle *h = e->sources[i];
		if (h->ctx && !h->done && h->plugin->stop)
			h->plugin->stop(h->ctx);
	}
}

bool kr_engine_idle(const struct kr_engine *e)
{
	if (e->in_flight > 0 || e->nready)
		return false;
	for (size_t i = 0; i < e->nsources; i++) {
		const struct kr_source_handle *h = e->sources[i];
		if (h->ctx && h->plugin->busy && h->plugin->busy(h->ctx))
			return false;
	}
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
	for (size_t i = 0; i < e->nsources; i++) {
		const struct kr_source_handle *h = e->sources[i];
		if (h->ctx && h->plugin->busy && h->plugin->busy(h->ctx))
			t->sources_busy++;
	}
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
		eng_delivery_drop(e->all);
	for (size_t i = 0; i < e->nsources; i++) {
		struct kr_source_handle *h = e->sources[i];
		if (h->ctx)
			h->plugin->destroy(h->ctx);
		for (size_t k = 0; k < h->ninputs; k++)
			eng_input_free(e, h->inputs[k], true);
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
	eng_caches_free(e);
	free(e);
}

