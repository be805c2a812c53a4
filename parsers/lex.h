/* kr_lex: a fast path for JSON values that lie whole in memory, calling yajl's callbacks exactly
 * as yajl 2 would (the same calls with the same arguments, in the same order), without yajl.
 *
 * Two passes over a value: kr_lex_scan checks it and finds its end; kr_lex_emit then makes the
 * callbacks. kr_lex_scan accepts only what yajl (validating strings, no comments) accepts and
 * decodes alike; anything else, including what yajl accepts but rarely sees (escapes of surrogates
 * and of U+0000, nesting deeper than KR_LEX_DEPTH), is KR_LEX_SLOW: the caller hands that value
 * to yajl, which gives its own answer and error. So the fast path never reports an error itself.
 * tests/fuzz/fuzz_lex.c holds both to the same callbacks on any input. */
#ifndef KR_LEX_H
#define KR_LEX_H

#include <stdbool.h>
#include <stddef.h>
#include <yajl/yajl_parse.h>

#include "buf.h"

#define KR_LEX_DEPTH 64

enum kr_lex_result {
	KR_LEX_VALUE, /* a whole value: *end is just after it */
	KR_LEX_MORE,  /* valid so far, but the text ends inside the value (a number at the end
			 included: it may go on) */
	KR_LEX_SLOW,  /* for yajl: invalid, or valid in a way this path leaves to yajl */
};

/* Checks the JSON value that starts at text[0] (not white space). */
enum kr_lex_result kr_lex_scan(const char *text, size_t n, size_t *end);

struct kr_lex {
	struct kr_buf dec; /* decoded strings that had escapes */
	size_t off;        /* inside a callback: the offset just after its token (yajl's bytes
			      consumed) */
	size_t quote;      /* inside the callback of a string that had escapes (decoded into
			      dec): the offset of its opening quote */
};

/* Makes cbs' callbacks for the value text[0..n) that kr_lex_scan found whole (n = its *end).
 * cbs is read before each call (a callback may change it, as with yajl); a NULL callback is
 * skipped, and with yajl_string NULL a string is not decoded. Numbers go to yajl_number only
 * (never to yajl_integer or yajl_double, which yajl calls when yajl_number is NULL). Returns 0, or -1 when a callback
 * returned 0 (lx->off is then the end of its token), or -2 when out of memory. */
int kr_lex_emit(struct kr_lex *lx, const char *text, size_t n, const yajl_callbacks *cbs,
		void *ctx);

/* Whether text[0..n) is one object or array that kr_lex_scan takes whole, with nothing but
 * white space around it; if so, it starts at *start and is *len bytes long. */
bool kr_lex_whole(const char *text, size_t n, size_t *start, size_t *len);

/* Appends the value of the JSON string text[0..n) (its quotes included, nothing around them),
 * decoded as yajl decodes it; false, appending nothing, when it is not a string kr_lex_scan takes
 * whole (for yajl to decide) or out of memory. */
bool kr_lex_string(const char *text, size_t n, struct kr_buf *b);

/* yajl's words when a callback stops the parse, for a caller to say the same when kr_lex_emit
 * returns -1 with no reason of its own */
#define KR_LEX_CANCELLED "client cancelled parse via callback return value"

void kr_lex_free(struct kr_lex *lx);

#endif
