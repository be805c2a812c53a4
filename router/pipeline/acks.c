/* Records, inputs and acknowledgements (see engine_int.h and plugin.h). A record is one event
 * (or invalid record), or a framed record of the source's holding several; records wait in
 * their input's queue in the order they were read. When a record is done, an ordered input's
 * done prefix, or an unordered input's record by its token, becomes an acknowledgement, handed
 * to the source at the end of the round (eng_flush_acks). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "grow.h"
#include "metrics.h"
#include "rules.h"

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
		eng_record_free(e, r);
	}
}

/* Keeps a done frame's token for its acknowledgement (unordered inputs). */
static bool keep_token(struct inp *in, void *token, bool failed)
{
	if (!kr_grow(&in->tokens, &in->captokens, in->ntokens + 1, sizeof *in->tokens, 64))
		return false;
	in->tokens[in->ntokens++] = (struct done_token){token, failed};
	return true;
}

void eng_record_release(struct kr_engine *e, struct record *r)
{
	r->done = true;
	if (!r->is_frame)
		e->in_flight--;
	struct record *frame = r->frame;
	if (frame) {
		/* an event of a frame: the frame's place in the queue holds the acknowledgement */
		if (r->failed)
			frame->failed = true;
		eng_record_free(e, r);
		if (--frame->pending == 0)
			eng_record_release(e, frame);
		return;
	}
	if (r->failed)
		e->totals.failed_records++; /* it stays at its place and blocks the acknowledged prefix */
	struct inp *in = r->in;
	if (!in->unordered) {
		ack_advance(in);
		return;
	}
	/* each record on its own, handed back by its token: a failed one says so, and the source
	   decides what becomes of it (an SQS message is made visible again later) */
	if (keep_token(in, r->token, r->failed))
		e->unacked--;
	unlink_record(in, r);
	eng_record_free(e, r);
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

void eng_record_free(struct kr_engine *e, struct record *r)
{
	free(r->meta);
	size_t c = r->size_class;
	if (c && e->rec_cached_bytes + c * REC_CLASS_BYTES <= REC_CACHE_BYTES && !e->closing) {
		r->next = e->rec_cache[c];
		e->rec_cache[c] = r;
		e->rec_cached_bytes += c * REC_CLASS_BYTES;
		return;
	}
	free(r);
}

void eng_caches_free(struct kr_engine *e)
{
	for (size_t c = 0; c <= REC_CLASSES; c++)
		for (struct record *r = e->rec_cache[c], *n; r; r = n) {
			n = r->next;
			free(r);
		}
	for (struct dlv *d = e->dlv_cache, *n; d; d = n) {
		n = d->next_all;
		free(d);
	}
}

/* An event (or invalid) record of input in, keeping a copy of its event in its room (one
 * allocation, or a freed record's room of its size): in the ack queue, or in the framed record
 * being read. */
struct record *eng_record_new(struct inp *in, const char *raw, size_t len)
{
	struct kr_source_handle *h = in->h;
	struct kr_engine *e = h->e;
	size_t need = sizeof(struct record) + len + 1;
	size_t c = (need + REC_CLASS_BYTES - 1) / REC_CLASS_BYTES;
	struct record *r;
	if (c > REC_CLASSES) {
		c = 0;
		r = malloc(need);
	} else if ((r = e->rec_cache[c])) {
		e->rec_cache[c] = r->next;
		e->rec_cached_bytes -= c * REC_CLASS_BYTES;
	} else {
		r = malloc(c * REC_CLASS_BYTES);
	}
	if (!r)
		return NULL;
	memset(r, 0, sizeof *r);
	r->size_class = (uint8_t)c;
	r->event = r->bytes;
	memcpy(r->event, raw, len);
	r->event[len] = 0;
	r->len = len;
	r->in = in;
	r->position = in->next_pos;
	r->received_wall = h->e->clock_wall;
	r->received_mono = h->e->clock_mono;
	if (in->frame) {
		/* the frame (never an event of it) carries the record's metadata */
		r->frame = in->frame;
		in->frame->pending++;
		in->frame->has_records = true;
	} else {
		enqueue_record(in, r);
	}
	h->e->in_flight++;
	h->e->totals.records++;
	return r;
}

/* Records with no delivery are done at once (still in order in the ack queue). */
void eng_record_done_now(struct kr_engine *e, struct record *r)
{
	r->pending = 0;
	eng_record_release(e, r);
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
	if (o->dead_letter && !(in->dead_letter = strdup(o->dead_letter))) {
		free(in->name);
		free(in);
		return NULL;
	}
	in->dl_index = -1;
	in->h = h;
	in->id = o->id;
	in->unordered = o->unordered;
	in->skip = o->skip;
	in->gen = e->cur;
	struct kr_stream_callbacks cb = {.event = eng_on_event, .invalid = eng_on_invalid};
	if (kr_stream_new(kr_rules_paths(e->cur->cfg->compiled), NULL, &cb, in, &in->stream) !=
	    KR_OK) {
		free(in->dead_letter);
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

enum kr_err kr_input_record_meta(struct kr_input *input, const char *json, size_t len)
{
	struct inp *in = (struct inp *)input;
	struct record *f = in->frame;
	if (!f)
		return KR_ERR_USAGE;
	char *m = malloc(len + 1);
	if (!m)
		return KR_ERR_NOMEM;
	memcpy(m, json, len);
	m[len] = 0;
	free(f->meta);
	f->meta = m;
	f->meta_len = len;
	return KR_OK;
}

/* The sink index of the input's own dead letter in generation g, or -1. */
int32_t eng_input_dead_letter(struct inp *in, struct gen *g)
{
	if (!in->dead_letter)
		return -1;
	if (in->dl_gen != g) {
		in->dl_gen = g;
		in->dl_index = -1;
		for (size_t i = 0; i < g->cfg->nsinks; i++)
			if (strcmp(g->cfg->sinks[i].name, in->dead_letter) == 0)
				in->dl_index = (int32_t)i;
	}
	return in->dl_index;
}

void kr_input_record_end(struct kr_input *input)
{
	struct inp *in = (struct inp *)input;
	struct record *f = in->frame;
	if (!f)
		return;
	if (!f->has_records) {
		/* an empty message (or only blanks) is not an event: it is counted and reported as an
		   invalid record, never dropped without a word */
		struct kr_invalid inv = {.line = 1, .raw = "", .message = "the record holds no event"};
		eng_on_invalid(in, &inv);
	}
	in->frame = NULL;
	if (--f->pending == 0)
		eng_record_release(in->h->e, f);
}

void kr_input_set_lag(struct kr_input *input, int64_t records)
{
	struct inp *in = (struct inp *)input;
	if (!in->lag)
		in->lag = kr_metrics_input_lag(in->h->e->metrics, in->h->name, in->name);
	*in->lag = records;
}

void kr_reject_done(struct kr_rejected *rj, bool ok)
{
	struct record *r = (struct record *)rj;
	struct kr_engine *e = r->in->h->e;
	if (ok)
		e->totals.invalid_dead_lettered++;
	eng_record_delivery_ended(e, r, ok);
}

void kr_input_close(struct kr_input *input)
{
	struct inp *in = (struct inp *)input;
	kr_input_record_end(input);
	in->closed = true;
}

/* Frees an input (its queue holds only records the engine is closing with). */
void eng_input_free(struct kr_engine *e, struct inp *in, bool closing)
{
	kr_stream_free(in->stream);
	if (in->lag && !closing)
		kr_metrics_input_forget(e->metrics, in->h->name, in->name);
	for (struct record *r = in->ack_head, *n; r; r = n) {
		n = r->next;
		eng_record_free(e, r);
	}
	if (!closing)
		eng_gen_unref(e, in->gen);
	free(in->dead_letter);
	free(in->tokens);
	free(in->name);
	free(in);
}

/* Hands the collected acknowledgements to the sources (the end of a round, outside any pull),
 * and frees the closed inputs that have nothing left in flight after a last one. */
void eng_flush_acks(struct kr_engine *e)
{
	for (size_t i = 0; i < e->nsources; i++) {
		struct kr_source_handle *h = e->sources[i];
		for (size_t k = 0; k < h->ninputs; k++) {
			struct inp *in = h->inputs[k];
			bool finished = in->closed && !in->ack_head && !in->frame;
			struct kr_ack a = {.id = in->id};
			for (size_t t = 0; t < in->ntokens && h->ctx; t++) {
				a.token = in->tokens[t].token;
				a.failed = in->tokens[t].failed;
				h->plugin->ack(h->ctx, &a);
			}
			in->ntokens = 0;
			a.token = NULL;
			a.failed = false;
			a.position = in->ack_pos;
			a.final = finished;
			if ((in->ack_dirty || finished) && h->ctx)
				h->plugin->ack(h->ctx, &a);
			in->ack_dirty = false;
			if (finished) {
				h->inputs[k--] = h->inputs[--h->ninputs];
				eng_input_free(e, in, false);
			}
		}
	}
}

