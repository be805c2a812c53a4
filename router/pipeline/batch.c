/* Batching for sinks (see batch.h). One batch is open and filling; full ones wait in order for
 * a slot among max_in_flight; the linger timer closes the open batch. */
#include "batch.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct batch {
	struct kr_batch pub; /* first: the sink sees this part */
	struct kr_batcher *b;
	bool *answered;
	struct batch *next;
};

struct kr_batcher {
	struct kr_batch_opts o;
	struct kr_timer *linger;
	struct batch *open;
	struct batch *ready_head, *ready_tail; /* closed, waiting for a slot */
	size_t in_flight, waiting;
};

static void pump(struct kr_batcher *b);

static void close_open(struct kr_batcher *b)
{
	struct batch *x = b->open;
	if (!x)
		return;
	b->open = NULL;
	kr_timer_stop(b->linger);
	if (b->ready_tail)
		b->ready_tail->next = x;
	else
		b->ready_head = x;
	b->ready_tail = x;
}

static void linger_fire(struct kr_loop *l, struct kr_timer *t, void *arg)
{
	(void)l;
	(void)t;
	struct kr_batcher *b = arg;
	close_open(b);
	pump(b);
}

static void pump(struct kr_batcher *b)
{
	while (b->ready_head && b->in_flight < b->o.max_in_flight) {
		struct batch *x = b->ready_head;
		b->ready_head = x->next;
		if (!b->ready_head)
			b->ready_tail = NULL;
		x->next = NULL;
		b->in_flight++;
		b->waiting -= x->pub.n;
		b->o.send(b->o.ctx, &x->pub);
	}
}

enum kr_err kr_batcher_new(struct kr_loop *loop, const struct kr_batch_opts *o,
			   struct kr_batcher **out)
{
	struct kr_batcher *b = calloc(1, sizeof *b);
	if (!b)
		return KR_ERR_NOMEM;
	b->o = *o;
	if (!b->o.max_entries)
		b->o.max_entries = 1;
	if (!b->o.max_in_flight)
		b->o.max_in_flight = 1;
	if (!(b->linger = kr_timer_new(loop, linger_fire, b))) {
		free(b);
		return KR_ERR_NOMEM;
	}
	*out = b;
	return KR_OK;
}

static void batch_free(struct batch *x)
{
	free(x->pub.entries);
	free(x->answered);
	free(x);
}

/* Completes a delivery of the batcher, after the sink's release. */
static void complete(const struct kr_batcher *b, struct kr_delivery *d, enum kr_outcome o,
		     uint64_t not_before_ms, const char *code, const char *msg)
{
	if (b->o.release)
		b->o.release(b->o.ctx, d);
	kr_delivery_done(d, o, not_before_ms, code, msg);
}

static void fail_all(struct batch *x, const char *code, const char *msg)
{
	for (size_t i = 0; i < x->pub.n; i++)
		complete(x->b, x->pub.entries[i], KR_RETRYABLE, 0, code, msg);
	batch_free(x);
}

void kr_batcher_free(struct kr_batcher *b)
{
	if (!b)
		return;
	kr_timer_free(b->linger);
	b->linger = NULL;
	struct batch *open = b->open;
	b->open = NULL;
	if (open)
		fail_all(open, "Closed", "the sink was closed");
	while (b->ready_head) {
		struct batch *x = b->ready_head;
		b->ready_head = x->next;
		fail_all(x, "Closed", "the sink was closed");
	}
	free(b);
}

static size_t entry_size(const struct kr_batcher *b, const struct kr_delivery *d)
{
	return b->o.entry_size ? b->o.entry_size(b->o.ctx, d) : d->len;
}

void kr_batcher_add(struct kr_batcher *b, struct kr_delivery *d)
{
	size_t size = entry_size(b, d);
	if (b->o.max_bytes && size > b->o.max_bytes) {
		char msg[128];
		snprintf(msg, sizeof msg, "the entry is %zu bytes; a batch takes at most %zu", size,
			 b->o.max_bytes);
		complete(b, d, KR_PERMANENT, 0, "EntryTooLarge", msg);
		return;
	}
	struct batch *x = b->open;
	if (x && ((b->o.max_bytes && x->pub.bytes + size > b->o.max_bytes) ||
		  (b->o.fits && !b->o.fits(b->o.ctx, &x->pub, d)))) {
		close_open(b);
		x = NULL;
	}
	if (!x) {
		x = calloc(1, sizeof *x);
		if (x) {
			x->pub.entries = calloc(b->o.max_entries, sizeof *x->pub.entries);
			x->answered = calloc(b->o.max_entries, sizeof *x->answered);
		}
		if (!x || !x->pub.entries || !x->answered) {
			if (x)
				batch_free(x);
			complete(b, d, KR_RETRYABLE, 0, "ENOMEM", "out of memory");
			return;
		}
		x->b = b;
		b->open = x;
		if (b->o.linger_ms)
			kr_timer_start(b->linger, b->o.linger_ms);
	}
	x->pub.entries[x->pub.n++] = d;
	x->pub.bytes += size;
	b->waiting++;
	if (x->pub.n == b->o.max_entries || (b->o.max_bytes && x->pub.bytes == b->o.max_bytes))
		close_open(b);
	pump(b);
}

void kr_batcher_flush(struct kr_batcher *b)
{
	/* a batch that is not full goes now only when no other is out; otherwise it fills on
	   until one comes back (kr_batch_end): under load batches go full, and alone an entry
	   waits no longer than the round */
	if (!b->o.linger_ms && !b->in_flight)
		close_open(b);
	pump(b);
}

void kr_batch_entry(struct kr_batch *bt, size_t i, enum kr_outcome o, uint64_t not_before_ms,
		    const char *error_code, const char *error_message)
{
	struct batch *x = (struct batch *)bt;
	if (i >= bt->n || x->answered[i])
		return;
	x->answered[i] = true;
	complete(x->b, bt->entries[i], o, not_before_ms, error_code, error_message);
}

void kr_batch_end(struct kr_batch *bt, enum kr_outcome o, uint64_t not_before_ms,
		  const char *error_code, const char *error_message)
{
	struct batch *x = (struct batch *)bt;
	struct kr_batcher *b = x->b;
	for (size_t i = 0; i < bt->n; i++)
		kr_batch_entry(bt, i, o, not_before_ms, error_code, error_message);
	batch_free(x);
	b->in_flight--;
	if (!b->o.linger_ms && !b->in_flight && !b->ready_head)
		close_open(b); /* what filled while batches were out */
	pump(b);
}

size_t kr_batcher_in_flight(const struct kr_batcher *b)
{
	return b->in_flight;
}

size_t kr_batcher_waiting(const struct kr_batcher *b)
{
	return b->waiting;
}

#define SLAB_SIZE ((size_t)1 << 20)

/* The buffer the last entry was built in, once it is copied into a slab: the next entry is
 * built in it, with no allocation (loop thread only, as the slabs). */
static _Thread_local struct kr_buf spare;

bool kr_prepared_begin(struct kr_buf *b, size_t hint)
{
	if (!b->p && spare.p) {
		*b = spare;
		spare = (struct kr_buf){0};
	}
	if (!kr_buf_reserve(b, sizeof(struct kr_prepared) + hint))
		return false;
	b->len = sizeof(struct kr_prepared);
	return true;
}

struct slab {
	size_t refs, used;
	max_align_t data[];
};

static _Thread_local struct slab *cur_slab; /* where the next entries go */

static void slab_put(struct slab *sl)
{
	if (!--sl->refs && sl != cur_slab)
		free(sl);
}

struct kr_prepared *kr_prepared_finish(struct kr_buf *b, size_t bytes)
{
	struct kr_prepared *p = (struct kr_prepared *)(void *)b->p;
	p->len = b->len - sizeof(struct kr_prepared);
	p->bytes = bytes;
	p->slab = NULL;
	size_t n = (b->len + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
	if (n <= SLAB_SIZE / 8) {
		if (!cur_slab || cur_slab->used + n > SLAB_SIZE) {
			struct slab *sl = malloc(sizeof *sl + SLAB_SIZE);
			if (sl) {
				sl->refs = 1; /* the current slab's own */
				sl->used = 0;
				if (cur_slab && !--cur_slab->refs)
					free(cur_slab);
				cur_slab = sl;
			}
		}
		if (cur_slab && cur_slab->used + n <= SLAB_SIZE) {
			struct kr_prepared *q =
				(struct kr_prepared *)(void *)((char *)cur_slab->data + cur_slab->used);
			memcpy(q, p, b->len);
			q->slab = cur_slab;
			cur_slab->used += n;
			cur_slab->refs++;
			if (!spare.p && b->cap <= SLAB_SIZE / 8 * 4) { /* kept: not a rare big one */
				spare = *b;
				spare.len = 0;
				*b = (struct kr_buf){0};
			} else {
				kr_buf_free(b);
			}
			return q;
		}
	}
	b->p = NULL;
	b->len = b->cap = 0;
	return p;
}

size_t kr_prepared_size(void *ctx, const struct kr_delivery *d)
{
	(void)ctx;
	const struct kr_prepared *p = d->sink_data;
	return p ? p->bytes : d->len;
}

void kr_prepared_release(void *ctx, struct kr_delivery *d)
{
	(void)ctx;
	struct kr_prepared *p = d->sink_data;
	d->sink_data = NULL;
	if (p && p->slab)
		slab_put(p->slab);
	else
		free(p);
}
