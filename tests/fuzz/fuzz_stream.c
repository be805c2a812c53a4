/* libFuzzer target for the stream parser (parsers/stream.h).
 *
 * The input is fed, unchanged, through three kr_stream runs:
 *   1. kr_stream_parse_mem over the whole input, then kr_stream_end;
 *   2. a second stream fed with kr_stream_reserve/kr_stream_commit in chunks of 1..64 bytes:
 *      with bit 7 of the first input byte set, all of (first byte & 63) + 1 bytes, else sizes
 *      from a small PRNG seeded with the first byte; then kr_stream_end;
 *   3. the stream of run 1 after kr_stream_reset, fed the whole input with one
 *      kr_stream_reserve/kr_stream_commit, then kr_stream_end.
 * The last input byte picks the options: bit 0 small limits (max_record 4096, max_depth 16)
 * instead of the defaults, bit 1 raw_events_only.
 *
 * The callbacks read every byte of ev->raw, ev->id, ev->time, every view value and every
 * invalid report (so ASan sees any out-of-bounds or stale pointer), and check invariants; a
 * violated invariant calls __builtin_trap():
 *   - ev->raw is non-NULL with raw_len > 0, the view is the one bound to our paths and is
 *     internally consistent (offsets inside its arena and trail buffer);
 *   - every invalid report has line >= 1 and a message; its offset lies inside the input;
 *   - the three runs give the same number of events and invalid reports, and these agree with
 *     kr_stream_stats;
 *   - no kr_stream_* call fails (the callbacks never ask to stop; out of memory aside).
 * With KR_FUZZ_STRICT=1 in the environment it also requires that the three runs report the same
 * events (offset, envelope, raw bytes, id, time, view values) and the same invalid offsets and
 * lines, and that each invalid report's line is the true line of its offset. */
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
static bool g_strict;
static volatile uint64_t g_sink;

struct run {
	const uint8_t *data;
	size_t size;
	uint64_t events, invalid;
	uint64_t ev_digest, inv_digest;
	uint64_t sink; /* keeps the byte reads alive */
	bool strict;
};

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
	CHECK(ev->id != NULL || ev->id_len == 0);
	CHECK(ev->time != NULL || ev->time_len == 0);
	if (ev->id)
		r->sink += touch(ev->id, ev->id_len);
	if (ev->time)
		r->sink += touch(ev->time, ev->time_len);
	uint64_t d = r->ev_digest;
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
	r->ev_digest = d;
	return 0;
}

static int on_invalid(void *ctx, const struct kr_invalid *inv)
{
	struct run *r = ctx;
	r->invalid++;
	CHECK(inv->line >= 1);
	CHECK(inv->message != NULL);
	r->sink += touch(inv->message, strlen(inv->message));
	CHECK(inv->offset <= r->size);
	if (inv->raw) {
		CHECK(inv->offset + inv->raw_len <= r->size);
		r->sink += touch(inv->raw, inv->raw_len);
		/* raw is the input's own bytes at offset */
		CHECK(memcmp(inv->raw, r->data + inv->offset, inv->raw_len) == 0);
	}
	if (r->strict) {
		uint64_t line = 1;
		for (uint64_t i = 0; i < inv->offset && i < r->size; i++)
			line += r->data[i] == '\n';
		CHECK(inv->line == line);
	}
	r->inv_digest = mix_u64(mix_u64(r->inv_digest, inv->offset), inv->line);
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
	const char *strict = getenv("KR_FUZZ_STRICT");
	g_strict = strict && strict[0] == '1';
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
	if (g_strict) {
		CHECK(a->ev_digest == b->ev_digest);
		CHECK(a->inv_digest == b->inv_digest);
	}
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

	/* 1: zero-copy; the buffer is a heap copy so that ASan sees reads past its end */
	struct run r1 = {.data = data, .size = size, .strict = g_strict,
			 .ev_digest = FNV_BASIS, .inv_digest = FNV_BASIS};
	struct kr_stream *s1 = NULL, *s2 = NULL;
	char *copy = malloc(size);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	if (kr_stream_new(g_paths, &opts, &callbacks, &r1, &s1) != KR_OK)
		abort();
	CHECK(kr_stream_parse_mem(s1, copy, size) == KR_OK);
	CHECK(kr_stream_end(s1) == KR_OK);
	check_stats(s1, &r1, size);

	/* 2: a second stream, reserve/commit in small chunks */
	struct run r2 = {.data = data, .size = size, .strict = g_strict,
			 .ev_digest = FNV_BASIS, .inv_digest = FNV_BASIS};
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
		char *dst = kr_stream_reserve(s2, n);
		CHECK(dst != NULL);
		memcpy(dst, data + off, n);
		CHECK(kr_stream_commit(s2, n) == KR_OK);
		off += n;
	}
	CHECK(kr_stream_end(s2) == KR_OK);
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
	r1 = (struct run){.data = data, .size = size, .strict = g_strict,
			  .ev_digest = FNV_BASIS, .inv_digest = FNV_BASIS};
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
	return 0;
}
