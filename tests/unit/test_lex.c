/* Unit tests for parsers/lex.h: kr_lex_scan's verdicts (a whole value and where it ends, more
 * input needed, or left to yajl) and kr_lex_emit's callbacks, which must be yajl's own: the same
 * calls with the same arguments and the same bytes consumed at each, compared here as a trace of
 * both parsers over the same text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <yajl/yajl_parse.h>

#include "lex.h"

#define S(lit) (lit), (sizeof(lit) - 1)
/* a text that is one value and nothing else */
#define WHOLE(lit) (lit), (sizeof(lit) - 1), (sizeof(lit) - 1)

/* ---- traces: "KIND[text]@consumed " per callback ---- */

struct trace {
	yajl_handle h;     /* the yajl run, or NULL: */
	struct kr_lex *lx; /* the kr_lex run */
	yajl_callbacks cbs;
	bool toggle;        /* each map key switches yajl_string off or on */
	unsigned cancel_at; /* this callback (1-based) returns 0 */
	unsigned calls;
	char out[8192];
	size_t len;
};

static int note(void *ctx, const char *kind, const void *v, size_t n)
{
	struct trace *t = ctx;
	size_t off = t->h ? yajl_get_bytes_consumed(t->h) : t->lx->off;
	int k = snprintf(t->out + t->len, sizeof t->out - t->len, "%s[%.*s]@%zu ", kind, (int)n,
			 v ? (const char *)v : "", off);
	assert_true(k > 0 && (size_t)k < sizeof t->out - t->len);
	t->len += (size_t)k;
	return ++t->calls != t->cancel_at;
}

static int c_str(void *ctx, const unsigned char *v, size_t n) { return note(ctx, "S", v, n); }
static int c_null(void *ctx) { return note(ctx, "null", NULL, 0); }
static int c_bool(void *ctx, int b) { return note(ctx, b ? "true" : "false", NULL, 0); }
static int c_num(void *ctx, const char *v, size_t n) { return note(ctx, "N", v, n); }
static int c_start_map(void *ctx) { return note(ctx, "{", NULL, 0); }
static int c_end_map(void *ctx) { return note(ctx, "}", NULL, 0); }
static int c_start_array(void *ctx) { return note(ctx, "[", NULL, 0); }
static int c_end_array(void *ctx) { return note(ctx, "]", NULL, 0); }

static int c_key(void *ctx, const unsigned char *v, size_t n)
{
	struct trace *t = ctx;
	if (t->toggle)
		t->cbs.yajl_string = t->cbs.yajl_string ? NULL : c_str;
	return note(ctx, "K", v, n);
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

/* yajl's trace over text (it stops after the value), into *t; returns its status. */
static yajl_status yajl_trace(struct trace *t, const char *text, size_t n)
{
	t->h = yajl_alloc(&t->cbs, NULL, t);
	assert_non_null(t->h);
	yajl_config(t->h, yajl_allow_trailing_garbage, 1);
	yajl_status st = yajl_parse(t->h, (const unsigned char *)text, n);
	if (st == yajl_status_ok)
		st = yajl_complete_parse(t->h);
	return st;
}

/* Scans text (a whole value ending at want_end, followed by what follows it), then holds
 * kr_lex_emit's trace to yajl's, plain, with strings switched off and on, and cancelled at
 * each callback in turn. */
static void assert_as_yajl(const char *text, size_t n, size_t want_end)
{
	size_t end = 0;
	assert_int_equal(kr_lex_scan(text, n, &end), KR_LEX_VALUE);
	assert_int_equal(end, want_end);
	for (int toggle = 0; toggle < 2; toggle++) {
		for (unsigned cancel = 0;; cancel++) {
			struct trace *y = calloc(1, sizeof *y), *l = calloc(1, sizeof *l);
			assert_non_null(y);
			assert_non_null(l);
			y->cbs = l->cbs = callbacks;
			y->toggle = l->toggle = toggle;
			y->cancel_at = l->cancel_at = cancel;
			yajl_status st = yajl_trace(y, text, n);
			struct kr_lex lx = {0};
			l->lx = &lx;
			int rc = kr_lex_emit(&lx, text, end, &l->cbs, l);
			if (strcmp(y->out, l->out) != 0)
				fail_msg("%.*s (toggle %d, cancel at %u):\n  yajl:   %s\n  kr_lex: %s",
					 (int)n, text, toggle, cancel, y->out, l->out);
			bool cancelled = cancel && cancel <= y->calls;
			assert_int_equal(st, cancelled ? yajl_status_client_canceled : yajl_status_ok);
			assert_int_equal(rc, cancelled ? -1 : 0);
			if (cancelled)
				assert_int_equal(lx.off, yajl_get_bytes_consumed(y->h));
			unsigned calls = y->calls;
			yajl_free(y->h);
			kr_lex_free(&lx);
			free(y);
			free(l);
			if (cancel > calls)
				break;
		}
	}
}

static void assert_scan(const char *text, size_t n, enum kr_lex_result want)
{
	size_t end = 12345;
	enum kr_lex_result r = kr_lex_scan(text, n, &end);
	if (r != want)
		fail_msg("%.*s: kr_lex_scan gave %d, want %d", (int)n, text, r, want);
	if (r != KR_LEX_VALUE)
		assert_int_equal(end, 12345); /* untouched */
}

/* ---- tests ---- */

static void test_an_event_is_parsed_as_yajl_parses_it(void **state)
{
	(void)state;
	static const char ev[] =
		"{\"version\":\"0\",\"id\":\"6a7e8feb-b491-4cf7-a9f1-bf3703467718\","
		"\"detail-type\":\"KMS CMK Rotation\",\"source\":\"aws.kms\",\"account\":\"111122223333\","
		"\"time\":\"2022-08-10T16:37:50Z\",\"region\":\"us-east-1\",\"resources\":"
		"[\"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab\"],"
		"\"detail\":{\"key-id\":\"1234abcd-12ab-34cd-56ef-1234567890ab\"}}";
	assert_as_yajl(S(ev), sizeof ev - 1);
	/* what follows the value is not looked at */
	assert_as_yajl(S("{\"a\":1}{\"b\":2}"), 7);
	assert_as_yajl(S("{\"a\":1}\n"), 7);
	assert_as_yajl(S("{\"a\":1} garbage"), 7);
}

static void test_escapes_are_decoded_as_yajl_decodes_them(void **state)
{
	(void)state;
	assert_as_yajl(WHOLE("{\"a\":\"x\\\"y\\\\z\\/\\b\\f\\n\\r\\t\"}"));
	/* \u escapes to one, two and three UTF-8 bytes, upper and lower case hex */
	assert_as_yajl(WHOLE("[\"\\u0041\\u007f\\u0080\\u00e9\\u07FF\\u0800\\u4E2d\\uFFFF\\uD7FF\\uE000\"]"));
	/* in keys too; a key or string of escapes alone */
	assert_as_yajl(WHOLE("{\"k\\u00e9y\":\"\\n\",\"\\t\":\"\"}"));
}

static void test_numbers_pass_as_their_text(void **state)
{
	(void)state;
	assert_as_yajl(WHOLE("[0,-0,1.5,-2e10,3E+2,4e-1,123456789012345678901234567890,-0.0e0]"));
	assert_as_yajl(WHOLE("{\"n\":1}"));
	assert_as_yajl(WHOLE("{\"n\":-12.5e+3 }"));
	/* at the top level a number ends at the byte after it */
	assert_as_yajl(S("42 "), 2);
	assert_as_yajl(S("-1.5e3,"), 6);
	assert_as_yajl(S("0 1"), 1);
}

static void test_literals_containers_and_white_space(void **state)
{
	(void)state;
	assert_as_yajl(WHOLE("{\"t\":true,\"f\":false,\"n\":null,\"e\":{},\"a\":[],\"aa\":[[],[{}]]}"));
	/* white space as yajl reads it, \v and \f included, everywhere it may stand */
	assert_as_yajl(WHOLE("{ \"a\" :\v[\f1 ,\t2\r\n] ,\n\"b\"\t:\"c\" }"));
	assert_as_yajl(WHOLE("[ ]"));
	assert_as_yajl(S("true "), 4);
	assert_as_yajl(WHOLE("null"));
	assert_as_yajl(WHOLE("\"s\""));
}

static void test_utf8_is_passed_as_it_stands(void **state)
{
	(void)state;
	/* two, three and four byte sequences, the edges of each range */
	assert_as_yajl(WHOLE("{\"s\":\"\xC2\x80 \xDF\xBF \xE0\xA0\x80 \xED\x9F\xBF \xEE\x80\x80 "
			 "\xEF\xBF\xBF \xF0\x90\x80\x80 \xF4\x8F\xBF\xBF caf\xC3\xA9\"}"));
}

static void test_deep_nesting_up_to_the_limit(void **state)
{
	(void)state;
	char deep[2 * KR_LEX_DEPTH + 2];
	memset(deep, '[', KR_LEX_DEPTH);
	memset(deep + KR_LEX_DEPTH, ']', KR_LEX_DEPTH);
	assert_as_yajl(deep, 2 * KR_LEX_DEPTH, 2 * KR_LEX_DEPTH);
	/* one more level is left to yajl */
	memset(deep, '[', KR_LEX_DEPTH + 1);
	memset(deep + KR_LEX_DEPTH + 1, ']', KR_LEX_DEPTH + 1);
	assert_scan(deep, 2 * KR_LEX_DEPTH + 2, KR_LEX_SLOW);
}

static void test_text_that_ends_inside_a_value_needs_more(void **state)
{
	(void)state;
	static const char ev[] = "{\"a\":[1,2.5e3,true,null,{\"b\":\"c\\u00e9\\n\xC3\xA9\"}],\"d\":false}";
	/* every proper prefix of a valid value */
	for (size_t i = 1; i < sizeof ev - 1; i++)
		assert_scan(ev, i, KR_LEX_MORE);
	assert_scan(S(ev), KR_LEX_VALUE);
	/* a number at the end may go on */
	assert_scan(S("12"), KR_LEX_MORE);
	assert_scan(S("-"), KR_LEX_MORE);
	assert_scan(S("1."), KR_LEX_MORE);
	assert_scan(S("1e+"), KR_LEX_MORE);
	assert_scan(S("tru"), KR_LEX_MORE);
}

static void test_what_yajl_rejects_or_decodes_its_own_way_is_left_to_it(void **state)
{
	(void)state;
	/* errors: yajl gives the message */
	assert_scan(S("{\"a\":\"\x01\"}"), KR_LEX_SLOW);  /* a control character */
	assert_scan(S("{\"a\":\"\t\"}"), KR_LEX_SLOW);
	assert_scan(S("{\"a\":\"\\x\"}"), KR_LEX_SLOW);   /* an unknown escape */
	assert_scan(S("{\"a\":\"\\u12g4\"}"), KR_LEX_SLOW);
	assert_scan(S("[01]"), KR_LEX_SLOW);              /* a leading zero */
	assert_scan(S("[1.]"), KR_LEX_SLOW);
	assert_scan(S("[1e]"), KR_LEX_SLOW);
	assert_scan(S("[-a]"), KR_LEX_SLOW);
	assert_scan(S("[.5]"), KR_LEX_SLOW);
	assert_scan(S("[+1]"), KR_LEX_SLOW);
	assert_scan(S("[trUe]"), KR_LEX_SLOW);
	assert_scan(S("{\"a\" 1}"), KR_LEX_SLOW);         /* no colon */
	assert_scan(S("{\"a\":1,}"), KR_LEX_SLOW);        /* a trailing comma */
	assert_scan(S("[1,]"), KR_LEX_SLOW);
	assert_scan(S("[1 2]"), KR_LEX_SLOW);
	assert_scan(S("{1:2}"), KR_LEX_SLOW);             /* a key that is not a string */
	assert_scan(S("[1}"), KR_LEX_SLOW);               /* mismatched brackets */
	assert_scan(S("{\"a\":1]"), KR_LEX_SLOW);
	assert_scan(S("/* c */{}"), KR_LEX_SLOW);         /* comments are not allowed */
	/* what yajl takes but decodes or checks its own way */
	assert_scan(S("{\"a\":\"\\u0000\"}"), KR_LEX_SLOW);       /* U+0000 */
	assert_scan(S("{\"a\":\"\\ud83d\\ude00\"}"), KR_LEX_SLOW); /* a surrogate pair */
	assert_scan(S("{\"a\":\"\\uDC00\"}"), KR_LEX_SLOW);        /* a lone surrogate */
	assert_scan(S("{\"a\":\"\xC0\xAF\"}"), KR_LEX_SLOW);       /* overlong */
	assert_scan(S("{\"a\":\"\xE0\x80\x80\"}"), KR_LEX_SLOW);   /* overlong */
	assert_scan(S("{\"a\":\"\xED\xA0\x80\"}"), KR_LEX_SLOW);   /* a surrogate in UTF-8 */
	assert_scan(S("{\"a\":\"\xF4\x90\x80\x80\"}"), KR_LEX_SLOW); /* beyond U+10FFFF */
	assert_scan(S("{\"a\":\"\xF5\x80\x80\x80\"}"), KR_LEX_SLOW);
	assert_scan(S("{\"a\":\"\x80\"}"), KR_LEX_SLOW);           /* a lone continuation byte */
	assert_scan(S("{\"a\":\"\xC3(\"}"), KR_LEX_SLOW);          /* a sequence cut short */
}

/* ---- kr_lex_string: one string's value, as yajl decodes it ---- */

struct one_string {
	char *s;
	size_t n;
	int calls;
};

static int keep_string(void *ctx, const unsigned char *s, size_t n)
{
	struct one_string *o = ctx;
	free(o->s);
	o->s = malloc(n + 1);
	memcpy(o->s, s, n);
	o->n = n;
	o->calls++;
	return 1;
}

/* yajl's value of the text t[0..n), when it is one string and nothing else */
static bool yajl_string_of(const char *t, size_t n, struct one_string *o)
{
	yajl_callbacks cbs = {0};
	cbs.yajl_string = keep_string;
	yajl_handle h = yajl_alloc(&cbs, NULL, o);
	bool ok = yajl_parse(h, (const unsigned char *)t, n) == yajl_status_ok &&
		  yajl_complete_parse(h) == yajl_status_ok && o->calls == 1;
	yajl_free(h);
	return ok;
}

static void test_a_string_alone_is_decoded_as_yajl_decodes_it(void **state)
{
	(void)state;
	static const char *const pieces[] = {
		"a", "plain text ", "\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t",
		"\\u00e9", "\\u2713", "\\u0041", "\\uFFFF", "\\u0000", "\\ud83d\\udd11", "\\ud83d",
		"\xc3\xa9", "\xe2\x9c\x93", "\xf0\x9f\x94\x91", "\xff", "\x01", "\\x", "\\u12",
		"\"", "\xc3", "{\"k\":1}"};
	const size_t npieces = sizeof pieces / sizeof *pieces;
	uint64_t rnd = 42;
	size_t fast = 0, declined = 0;
	for (int round = 0; round < 20000; round++) {
		char t[512];
		size_t n = 0;
		rnd = rnd * 6364136223846793005u + 1442695040888963407u;
		bool quoted = (rnd >> 60) != 0; /* one in 16 without its opening quote */
		if (quoted)
			t[n++] = '"';
		int k = (int)(rnd >> 33 & 7);
		for (int i = 0; i < k; i++) {
			rnd = rnd * 6364136223846793005u + 1442695040888963407u;
			/* mostly the valid pieces, now and then one of the rest */
			size_t pick = (size_t)(rnd >> 33) % ((rnd >> 62) ? 17 : npieces);
			size_t len = strlen(pieces[pick]);
			memcpy(t + n, pieces[pick], len);
			n += len;
		}
		if ((rnd >> 40 & 31) != 0) /* one in 32 without its closing quote */
			t[n++] = '"';
		if ((rnd >> 45 & 31) == 0) /* one in 32 with something after it */
			t[n++] = 'x';
		struct one_string y = {0};
		bool yes = yajl_string_of(t, n, &y);
		struct kr_buf b = {0};
		kr_buf_append(&b, "before", 6);
		if (kr_lex_string(t, n, &b)) {
			fast++;
			/* what it takes, yajl takes, with the same value, appended */
			assert_true(yes);
			assert_int_equal(b.len, 6 + y.n);
			assert_memory_equal(b.p, "before", 6);
			assert_memory_equal(b.p + 6, y.s, y.n);
			assert_int_equal(b.p[b.len], '\0');
		} else {
			declined++;
			/* declined: nothing appended (yajl decides) */
			assert_int_equal(b.len, 6);
		}
		kr_buf_free(&b);
		free(y.s);
	}
	/* both ways taken often */
	assert_true(fast > 5000);
	assert_true(declined > 2000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_an_event_is_parsed_as_yajl_parses_it),
		cmocka_unit_test(test_escapes_are_decoded_as_yajl_decodes_them),
		cmocka_unit_test(test_numbers_pass_as_their_text),
		cmocka_unit_test(test_literals_containers_and_white_space),
		cmocka_unit_test(test_utf8_is_passed_as_it_stands),
		cmocka_unit_test(test_deep_nesting_up_to_the_limit),
		cmocka_unit_test(test_text_that_ends_inside_a_value_needs_more),
		cmocka_unit_test(test_what_yajl_rejects_or_decodes_its_own_way_is_left_to_it),
		cmocka_unit_test(test_a_string_alone_is_decoded_as_yajl_decodes_it),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
