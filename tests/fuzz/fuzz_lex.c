/* libFuzzer target for kr_lex (parsers/lex.h), the fast path of the stream parser, against yajl.
 *
 * The first input byte picks a mode, the rest is the text:
 *   bit 0: the callbacks switch yajl_string off and on at each map key (as the stream parser
 *          does, so that strings no rule reads are not decoded);
 *   bits 1-7: the callback with that number (1..127) returns 0, cancelling the parse (0: none).
 * Checks, with a violated one calling __builtin_trap():
 *   - kr_lex_scan says KR_LEX_VALUE (with end <= size): yajl, fed the whole text in one call
 *     (yajl_allow_trailing_garbage, so it stops after the value), makes exactly the callbacks
 *     kr_lex_emit makes over text[0..end), with the same arguments and the same bytes consumed
 *     at each, and stops at the same one when a callback cancels; without a cancel it accepts
 *     the value;
 *   - kr_lex_scan says KR_LEX_MORE: yajl finds no error in the text (it is the start of a
 *     value);
 *   - kr_lex_scan never reads past the text (ASan: the text is a heap copy of its own size). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "lex.h"

#define CHECK(c)                         \
	do {                             \
		if (!(c))                \
			__builtin_trap(); \
	} while (0)

#define FNV_BASIS 0xcbf29ce484222325ull

struct trace {
	yajl_handle h;     /* the yajl run, or NULL: */
	struct kr_lex *lx; /* the kr_lex run */
	yajl_callbacks cbs;
	bool toggle;
	unsigned cancel_at, calls;
	uint64_t digest;
};

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

static int note(void *ctx, int kind, const void *v, size_t n)
{
	struct trace *t = ctx;
	uint64_t off = t->h ? yajl_get_bytes_consumed(t->h) : t->lx->off;
	t->digest = mix(t->digest, &kind, sizeof kind);
	t->digest = mix(t->digest, &off, sizeof off);
	t->digest = mix(t->digest, &n, sizeof n);
	if (n)
		t->digest = mix(t->digest, v, n);
	return ++t->calls != t->cancel_at;
}

static int c_str(void *ctx, const unsigned char *v, size_t n);

static int c_null(void *ctx) { return note(ctx, 1, NULL, 0); }
static int c_bool(void *ctx, int b) { return note(ctx, 2, &b, sizeof b); }
static int c_num(void *ctx, const char *v, size_t n) { return note(ctx, 3, v, n); }
static int c_str(void *ctx, const unsigned char *v, size_t n) { return note(ctx, 4, v, n); }
static int c_start_map(void *ctx) { return note(ctx, 6, NULL, 0); }
static int c_end_map(void *ctx) { return note(ctx, 7, NULL, 0); }
static int c_start_array(void *ctx) { return note(ctx, 8, NULL, 0); }
static int c_end_array(void *ctx) { return note(ctx, 9, NULL, 0); }

static int c_key(void *ctx, const unsigned char *v, size_t n)
{
	struct trace *t = ctx;
	if (t->toggle)
		t->cbs.yajl_string = t->cbs.yajl_string ? NULL : c_str;
	return note(ctx, 5, v, n);
}

static const yajl_callbacks callbacks = {
	.yajl_null = c_null,
	.yajl_boolean = c_bool,
	.yajl_number = c_num,
	.yajl_string = c_str,
	.yajl_start_map = c_start_map,
	.yajl_map_key = c_key,
	.yajl_end_map = c_end_map,
	.yajl_start_array = c_start_array,
	.yajl_end_array = c_end_array,
};

static struct trace new_trace(uint8_t mode)
{
	return (struct trace){.cbs = callbacks, .toggle = mode & 1, .cancel_at = mode >> 1,
			      .digest = FNV_BASIS};
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint8_t mode = data[0];
	size_t n = size - 1;
	char *text = malloc(n);
	if (!text)
		return 0;
	memcpy(text, data + 1, n);
	/* the value starts at the first byte (the stream parser skips white space before) */
	if (text[0] == ' ' || text[0] == '\t' || text[0] == '\n' || text[0] == '\r' ||
	    text[0] == '\v' || text[0] == '\f') {
		free(text);
		return 0;
	}

	size_t end = SIZE_MAX;
	enum kr_lex_result r = kr_lex_scan(text, n, &end);

	struct trace y = new_trace(mode);
	y.h = yajl_alloc(&y.cbs, NULL, &y);
	CHECK(y.h != NULL);
	yajl_config(y.h, yajl_allow_trailing_garbage, 1);
	yajl_status ys = yajl_parse(y.h, (const unsigned char *)text, n);

	if (r == KR_LEX_VALUE) {
		CHECK(end > 0 && end <= n);
		struct kr_lex lx = {0};
		struct trace l = new_trace(mode);
		l.lx = &lx;
		int rc = kr_lex_emit(&lx, text, end, &l.cbs, &l);
		CHECK(rc != -2);
		CHECK(l.calls == y.calls && l.digest == y.digest);
		if (rc == -1) {
			CHECK(ys == yajl_status_client_canceled);
			CHECK(lx.off == yajl_get_bytes_consumed(y.h));
		} else {
			CHECK(ys == yajl_status_ok);
			CHECK(yajl_complete_parse(y.h) == yajl_status_ok);
			CHECK(l.calls == y.calls && l.digest == y.digest);
		}
		kr_lex_free(&lx);
	} else if (r == KR_LEX_MORE) {
		CHECK(ys == yajl_status_ok || ys == yajl_status_client_canceled);
	}
	yajl_free(y.h);
	free(text);
	return 0;
}
