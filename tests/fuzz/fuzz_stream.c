/* libFuzzer target for the stream parser (parsers/stream.h).
 *
 * The input is fed, unchanged, through four kr_stream runs:
 *   1. kr_stream_parse_mem over the whole input, then kr_stream_end;
 *   2. a second stream fed with kr_stream_reserve/kr_stream_commit in chunks of 1..64 bytes:
 *      with bit 7 of the first input byte set, all of (first byte & 63) + 1 bytes, else sizes
 *      from a small PRNG seeded with the first byte; then kr_stream_end. With bit 6 of the first
 *      byte set its consumer also pauses after every event (KR_STREAM_PAUSE), and the run goes on
 *      with kr_stream_resume before the next chunk;
 *   3. the stream of run 1 after kr_stream_reset, fed the whole input with one
 *      kr_stream_reserve/kr_stream_commit, then kr_stream_end;
 *   4. like run 1 with the option yajl_only: every value through yajl, where runs 1-3 parse
 *      whole top-level objects with kr_lex (parsers/lex.h).
 * The last input byte picks the options: bit 0 small limits (max_record 4096, max_depth 16)
 * instead of the defaults, bit 1 raw_events_only.
 *
 * The callbacks read every byte of ev->raw, ev->id, ev->time, every view value and every
 * invalid report (so ASan sees any out-of-bounds or stale pointer), and check invariants; a
 * violated invariant calls __builtin_trap():
 *   - ev->raw is non-NULL with raw_len > 0, the view is the one bound to our paths and is
 *     internally consistent (offsets inside its arena and trail buffer);
 *   - every invalid report has a message and lies inside the input; its line is the true line of
 *     its offset; its raw bytes are the input's at its offset, all size of them when size is at
 *     most max_record, else the first min(KR_INVALID_PREFIX, max_record), none when size is 0;
 *   - reports (events and invalid records) come in input order: each one's offset is greater
 *     than the one before, and none starts inside the bytes of the one before (an invalid
 *     record's size bytes, a plain event's raw bytes);
 *   - the four runs report the same thing: the same events (offset, envelope, raw bytes, id,
 *     time, view values) and invalid records (offset, line, size, raw bytes, message), in the same
 *     order, and their counts agree with kr_stream_stats: how the input is chunked (or the
 *     consumer pauses), and which parser reads it, changes nothing;
 *   - no kr_stream_* call fails (the callbacks never ask to stop; out of memory aside). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stream.h"
#include "view.h"

#define CHECK(c)                         \
	do {                             \
		if (!(c))                \
			__builtin_trap(); \
	} while (0)

#define FNV_BASIS 0xcbf29ce484222325ull

static struct kr_paths *g_paths;
static volatile uint64_t g_sink;

struct run {
	const uint8_t *data;
	size_t size;
	const uint32_t *lines; /* lines[i]: the 1-based line of offset i */
	size_t max_record;
	uint64_t events, invalid;
	uint64_t digest;       /* of every report, in order */
	bool any;              /* a report came before: */
	uint64_t prev_offset;  /* its offset */
	uint64_t prev_end;     /* and where its bytes end, as far as known */
	uint64_t sink;         /* keeps the byte reads alive */
	bool pause;            /* pause after every event */
};

/* Reports come in input order and do not overlap. */
static void in_order(struct run *r, uint64_t offset, uint64_t end)
{
	if (r->any)
		CHECK(offset > r->prev_offset && offset >= r->prev_end);
	r->any = true;
	r->prev_offset = offset;
	r->prev_end = end;
}

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

static uint64_t mix_u64(uint64_t h, uint64_t v)
{
	return mix(h, &v, sizeof v);
}

static uint64_t touch(const char *p, size_t n)
{
	uint64_t sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += (unsigned char)p[i];
	return sum;
}

static uint64_t check_view(const struct kr_view *v, uint64_t *digest)
{
	uint64_t sum = 0;
	CHECK(v != NULL);
	CHECK(v->paths == g_paths);
	CHECK(v->nslots == g_paths->nslots);
	CHECK(v->ntouched <= v->nslots);
	CHECK(v->nvals <= v->capvals || v->nvals == 0);
	CHECK(v->arena_len <= v->arena_cap || v->arena_len == 0);
	for (uint32_t i = 0; i < v->ntouched; i++)
		CHECK(v->touched[i] < v->nslots && v->head[v->touched[i]] != 0);
	for (uint32_t slot = 0; slot < v->nslots; slot++) {
		uint32_t count = 0;
		*digest = mix_u64(*digest, 0xabcdef00u + slot);
		for (const struct kr_value *val = kr_view_first(v, slot); val;
		     val = kr_view_next(v, val)) {
			CHECK(++count <= v->nvals);
			CHECK(val->type <= KR_V_NULL);
			CHECK((uint64_t)val->text_off + val->len < (uint64_t)v->arena_len + 1);
			CHECK((uint64_t)val->trail_off + val->trail_len <= v->ntrails);
			CHECK(val->trail_len % 2 == 0);
			const char *t = kr_view_text(v, val);
			sum += touch(t, val->len) + val->type;
			CHECK(t[val->len] == 0);
			for (uint32_t k = 0; k < val->trail_len; k++)
				sum += v->trails[val->trail_off + k];
			*digest = mix_u64(*digest, val->type);
			*digest = mix_u64(*digest, val->len);
			*digest = mix(*digest, t, val->len);
		}
	}
	return sum;
}

static int on_event(void *ctx, const struct kr_event *ev)
{
	struct run *r = ctx;
	r->events++;
	CHECK(ev->raw != NULL && ev->raw_len > 0);
	CHECK(ev->offset < r->size);
	CHECK(ev->envelope == KR_ENV_EVENT || ev->envelope == KR_ENV_SNS ||
	      ev->envelope == KR_ENV_CLOUDTRAIL);
	r->sink += touch(ev->raw, ev->raw_len);
	if (ev->envelope == KR_ENV_EVENT) /* the input's own bytes */
		CHECK(ev->offset + ev->raw_len <= r->size &&
		      memcmp(ev->raw, r->data + ev->offset, ev->raw_len) == 0);
	in_order(r, ev->offset, ev->envelope == KR_ENV_EVENT ? ev->offset + ev->raw_len : ev->offset);
	CHECK(ev->id != NULL || ev->id_len == 0);
	CHECK(ev->time != NULL || ev->time_len == 0);
	if (ev->id)
		r->sink += touch(ev->id, ev->id_len);
	if (ev->time)
		r->sink += touch(ev->time, ev->time_len);
	uint64_t d = mix_u64(r->digest, 1);
	d = mix_u64(d, ev->offset);
	d = mix_u64(d, ev->envelope);
	d = mix_u64(d, ev->raw_len);
	d = mix(d, ev->raw, ev->raw_len);
	d = mix_u64(d, ev->id ? ev->id_len : UINT64_MAX);
	if (ev->id)
		d = mix(d, ev->id, ev->id_len);
	d = mix_u64(d, ev->time ? ev->time_len : UINT64_MAX);
	if (ev->time)
		d = mix(d, ev->time, ev->time_len);
	r->sink += check_view(ev->view, &d);
	r->digest = d;
	return r->pause ? KR_STREAM_PAUSE : 0;
}

static int on_invalid(void *ctx, const struct kr_invalid *inv)
{
	struct run *r = ctx;
	r->invalid++;
	CHECK(inv->message != NULL);
	size_t mlen = strlen(inv->message);
	r->sink += touch(inv->message, mlen);
	CHECK(inv->offset <= r->size && inv->size <= r->size - inv->offset);
	CHECK(inv->line == r->lines[inv->offset]);
	in_order(r, inv->offset, inv->offset + inv->size);
	uint64_t want = inv->size;
	if (want > r->max_record)
		want = r->max_record < KR_INVALID_PREFIX ? r->max_record : KR_INVALID_PREFIX;
	CHECK(inv->raw_len == want && (inv->raw != NULL) == (want > 0));
	if (inv->raw) {
		r->sink += touch(inv->raw, inv->raw_len);
		/* raw is the input's own bytes at offset */
		CHECK(memcmp(inv->raw, r->data + inv->offset, inv->raw_len) == 0);
	}
	uint64_t d = mix_u64(r->digest, 2);
	d = mix_u64(d, inv->offset);
	d = mix_u64(d, inv->line);
	d = mix_u64(d, inv->size);
	d = mix(d, inv->raw ? inv->raw : "", inv->raw_len);
	r->digest = mix(d, inv->message, mlen);
	return 0;
}

static const struct kr_stream_callbacks callbacks = {.event = on_event, .invalid = on_invalid};

static void add_path(const char *dotted)
{
	const char *segs[8];
	size_t lens[8], n = 0;
	const char *p = dotted;
	while (n < 8) {
		const char *dot = strchr(p, '.');
		segs[n] = p;
		lens[n] = dot ? (size_t)(dot - p) : strlen(p);
		n++;
		if (!dot)
			break;
		p = dot + 1;
	}
	uint32_t slot;
	if (kr_paths_add(g_paths, segs, lens, n, &slot) != KR_OK)
		abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	g_paths = kr_paths_new();
	if (!g_paths)
		abort();
	static const char *const paths[] = {
		"detail-type", "detail.key-id", "source", "resources",
		"detail.requestParameters.keyId", "id", "detail.resources.ARN", "detail",
	};
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
		add_path(paths[i]);
	return 0;
}

static void check_stats(const struct kr_stream *s, const struct run *r, size_t bytes)
{
	struct kr_stream_stats st;
	kr_stream_stats(s, &st);
	CHECK(st.events == r->events && st.invalid == r->invalid && st.bytes == bytes);
}

static void same(const struct run *a, const struct run *b)
{
	CHECK(a->events == b->events);
	CHECK(a->invalid == b->invalid);
	CHECK(a->digest == b->digest);
}

static struct run new_run(const uint8_t *data, size_t size, const uint32_t *lines,
			  const struct kr_stream_opts *opts)
{
	return (struct run){.data = data, .size = size, .lines = lines,
			    .max_record = opts->max_record ? opts->max_record : KR_DEFAULT_MAX_RECORD,
			    .digest = FNV_BASIS};
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	uint8_t optbyte = data[size - 1];
	struct kr_stream_opts opts = {0};
	if (optbyte & 1) {
		opts.max_record = 4096;
		opts.max_depth = 16;
	}
	opts.raw_events_only = (optbyte & 2) != 0;

	uint32_t *lines = malloc((size + 1) * sizeof *lines);
	if (!lines)
		return 0;
	lines[0] = 1;
	for (size_t i = 0; i < size; i++)
		lines[i + 1] = lines[i] + (data[i] == '\n');

	/* 1: zero-copy; the buffer is a heap copy so that ASan sees reads past its end */
	struct run r1 = new_run(data, size, lines, &opts);
	struct kr_stream *s1 = NULL, *s2 = NULL;
	char *copy = malloc(size);
	if (!copy) {
		free(lines);
		return 0;
	}
	memcpy(copy, data, size);
	if (kr_stream_new(g_paths, &opts, &callbacks, &r1, &s1) != KR_OK)
		abort();
	CHECK(kr_stream_parse_mem(s1, copy, size) == KR_OK);
	CHECK(kr_stream_end(s1) == KR_OK);
	check_stats(s1, &r1, size);

	/* 2: a second stream, reserve/commit in small chunks */
	struct run r2 = new_run(data, size, lines, &opts);
	r2.pause = (data[0] & 0x40) != 0;
	if (kr_stream_new(g_paths, &opts, &callbacks, &r2, &s2) != KR_OK)
		abort();
	uint32_t rng = 0x9e3779b9u ^ ((uint32_t)data[0] * 0x01000193u);
	bool fixed = (data[0] & 0x80) != 0; /* one fixed chunk size instead of varying ones */
	size_t fixed_size = (size_t)(data[0] & 63) + 1;
	for (size_t off = 0; off < size;) {
		size_t n = fixed_size;
		if (!fixed) {
			rng ^= rng << 13;
			rng ^= rng >> 17;
			rng ^= rng << 5;
			n = rng % 64 + 1;
		}
		if (n > size - off)
			n = size - off;
		while (kr_stream_paused(s2))
			CHECK(kr_stream_resume(s2) == KR_OK);
		char *dst = kr_stream_reserve(s2, n);
		CHECK(dst != NULL);
		memcpy(dst, data + off, n);
		CHECK(kr_stream_commit(s2, n) == KR_OK);
		off += n;
	}
	while (kr_stream_paused(s2))
		CHECK(kr_stream_resume(s2) == KR_OK);
	CHECK(kr_stream_end(s2) == KR_OK);
	while (kr_stream_paused(s2)) /* a pause on a record found at the end */
		CHECK(kr_stream_resume(s2) == KR_OK);
	check_stats(s2, &r2, size);
	kr_stream_free(s2);
	same(&r1, &r2);
	g_sink += r2.sink;

	/* 3: the zero-copy stream after kr_stream_reset (which allows switching to reserve/commit),
	 * the whole input in one commit. Its callback context is fixed at creation (&r1): keep the
	 * first run's totals and start r1 afresh. */
	kr_stream_reset(s1);
	free(copy);
	struct run first = r1;
	struct kr_stream_stats before, after;
	kr_stream_stats(s1, &before);
	r1 = new_run(data, size, lines, &opts);
	char *dst = kr_stream_reserve(s1, size);
	CHECK(dst != NULL);
	memcpy(dst, data, size);
	CHECK(kr_stream_commit(s1, size) == KR_OK);
	CHECK(kr_stream_end(s1) == KR_OK);
	kr_stream_stats(s1, &after);
	CHECK(after.events - before.events == r1.events);
	CHECK(after.invalid - before.invalid == r1.invalid);
	kr_stream_free(s1);
	same(&first, &r1);
	g_sink += first.sink + r1.sink;

	/* 4: zero-copy again, every value through yajl (runs 1-3 parse whole top-level objects
	 * with kr_lex): the fast path changes nothing either */
	struct kr_stream_opts yopts = opts;
	yopts.yajl_only = true;
	struct run r4 = new_run(data, size, lines, &yopts);
	struct kr_stream *s4 = NULL;
	if (kr_stream_new(g_paths, &yopts, &callbacks, &r4, &s4) != KR_OK)
		abort();
	CHECK(kr_stream_parse_mem(s4, (const char *)data, size) == KR_OK);
	CHECK(kr_stream_end(s4) == KR_OK);
	check_stats(s4, &r4, size);
	kr_stream_free(s4);
	same(&first, &r4);
	g_sink += r4.sink;
	free(lines);
	return 0;
}
