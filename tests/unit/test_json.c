/* Unit tests for parsers/json.h: kr_json_parse (offsets, options, errors), kr_json_linecol and
 * kr_buf_json_string. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "json.h"

/* Parses NUL-terminated text that must be valid; the caller frees the tree. */
static struct kr_json *parse_ok(const char *text, const struct kr_json_opts *opts)
{
	struct kr_json *j = NULL;
	char err[KR_ERRBUF] = "";
	size_t off = 0;
	enum kr_err e = kr_json_parse(text, strlen(text), opts, &j, &off, err);
	if (e != KR_OK)
		fail_msg("unexpected error %d at offset %zu: %s", (int)e, off, err);
	assert_non_null(j);
	return j;
}

/* Parses text that must fail; returns the error and fills *off and err. */
static enum kr_err parse_err(const char *text, const struct kr_json_opts *opts, size_t *off,
			     char *err)
{
	struct kr_json *j = (struct kr_json *)1;
	enum kr_err e = kr_json_parse(text, strlen(text), opts, &j, off, err);
	assert_int_not_equal(e, KR_OK);
	assert_null(j);
	return e;
}

static size_t offset_of(const char *text, const char *needle)
{
	const char *p = strstr(text, needle);
	assert_non_null(p);
	return (size_t)(p - text);
}

/* ---- offsets and structure ---- */

static void test_every_node_records_the_offset_where_it_starts(void **state)
{
	(void)state;
	const char *text = "{\"a\": [1, \"x\\\"y\", true, null, {\"b\": -2.5e3}], \"c\" : false}";
	struct kr_json *j = parse_ok(text, NULL);
	assert_int_equal(j->type, KR_JSON_OBJECT);
	assert_int_equal(j->offset, 0);
	assert_int_equal(j->n, 2);
	assert_string_equal(j->keys[0], "a");
	assert_string_equal(j->keys[1], "c");
	assert_int_equal(j->key_offsets[0], offset_of(text, "\"a\""));
	assert_int_equal(j->key_offsets[1], offset_of(text, "\"c\""));

	const struct kr_json *a = j->items[0];
	assert_int_equal(a->type, KR_JSON_ARRAY);
	assert_int_equal(a->offset, offset_of(text, "["));
	assert_int_equal(a->n, 5);
	assert_int_equal(a->items[0]->offset, offset_of(text, "1"));
	/* a string's offset is its opening quote, even with an escaped quote inside */
	assert_int_equal(a->items[1]->type, KR_JSON_STRING);
	assert_int_equal(a->items[1]->offset, offset_of(text, "\"x"));
	assert_string_equal(a->items[1]->str, "x\"y");
	assert_int_equal(a->items[2]->offset, offset_of(text, "true"));
	assert_int_equal(a->items[3]->offset, offset_of(text, "null"));
	const struct kr_json *o = a->items[4];
	assert_int_equal(o->offset, offset_of(text, "{\"b\""));
	assert_int_equal(o->key_offsets[0], offset_of(text, "\"b\""));
	assert_int_equal(o->items[0]->offset, offset_of(text, "-2.5e3"));
	assert_int_equal(j->items[1]->type, KR_JSON_FALSE);
	assert_int_equal(j->items[1]->offset, offset_of(text, "false"));
	kr_json_free(j);
}

static void test_string_offset_is_found_after_escaped_backslashes(void **state)
{
	(void)state;
	/* "a\\" ends in an escaped backslash: the quote after it closes the string */
	const char *text = "[\"a\\\\\", \"\\\\\\\"\", \"\"]";
	struct kr_json *j = parse_ok(text, NULL);
	assert_int_equal(j->n, 3);
	assert_string_equal(j->items[0]->str, "a\\");
	assert_int_equal(j->items[0]->offset, 1);
	assert_string_equal(j->items[1]->str, "\\\"");
	assert_int_equal(j->items[1]->offset, offset_of(text, ", \"\\\\\\\"") + 2);
	assert_int_equal(j->items[2]->len, 0);
	assert_int_equal(j->items[2]->offset, strlen(text) - 3);
	kr_json_free(j);
}

static void test_top_level_value_offset_skips_leading_whitespace(void **state)
{
	(void)state;
	const char *texts[] = {"  {\"a\":1}", "\n\t[1]", "  \"s\"", "  true", "  123"};
	for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
		struct kr_json *j = parse_ok(texts[i], NULL);
		size_t off = j->offset;
		kr_json_free(j);
		if (off != 2)
			fail_msg("root of '%s' at offset %zu, want 2", texts[i], off);
	}
}

static void test_strings_are_decoded_and_kr_json_get_finds_members(void **state)
{
	(void)state;
	struct kr_json *j = parse_ok("{\"k\\u00e9y\": \"caf\\u00e9 \\ud83d\\ude00 \\n\", \"n\": 1}", NULL);
	const struct kr_json *v = kr_json_get(j, "k\xC3\xA9y");
	assert_non_null(v);
	assert_string_equal(v->str, "caf\xC3\xA9 \xF0\x9F\x98\x80 \n");
	assert_int_equal(v->len, strlen("caf\xC3\xA9 \xF0\x9F\x98\x80 \n"));
	assert_non_null(kr_json_get(j, "n"));
	assert_null(kr_json_get(j, "missing"));
	assert_null(kr_json_get(v, "n")); /* not an object */
	kr_json_free(j);
}

/* ---- line and column ---- */

static void test_linecol_is_one_based_and_counts_newlines(void **state)
{
	(void)state;
	const char *text = "{\n  \"a\": 1,\n    \"bb\": [true]\n}";
	size_t len = strlen(text), line, col;
	kr_json_linecol(text, len, 0, &line, &col);
	assert_int_equal(line, 1);
	assert_int_equal(col, 1);
	kr_json_linecol(text, len, offset_of(text, "\"a\""), &line, &col);
	assert_int_equal(line, 2);
	assert_int_equal(col, 3);
	kr_json_linecol(text, len, offset_of(text, "true"), &line, &col);
	assert_int_equal(line, 3);
	assert_int_equal(col, 12);
	kr_json_linecol(text, len, len - 1, &line, &col); /* the closing brace */
	assert_int_equal(line, 4);
	assert_int_equal(col, 1);
	/* an offset past the end is clamped to the end */
	kr_json_linecol(text, len, len + 100, &line, &col);
	assert_int_equal(line, 4);
	assert_int_equal(col, 2);
}

static void test_linecol_of_parsed_nodes_names_their_position(void **state)
{
	(void)state;
	const char *text = "{\n  \"rules\": [\n    {\"name\": \"x\"}\n  ]\n}\n";
	struct kr_json *j = parse_ok(text, NULL);
	const struct kr_json *name = kr_json_get(kr_json_get(j, "rules")->items[0], "name");
	size_t line, col;
	kr_json_linecol(text, strlen(text), name->offset, &line, &col);
	assert_int_equal(line, 3);
	assert_int_equal(col, 14);
	kr_json_free(j);
}

/* ---- options ---- */

static void test_comments_are_rejected_by_default(void **state)
{
	(void)state;
	size_t off;
	char err[KR_ERRBUF];
	assert_int_equal(parse_err("{/* c */ \"a\": 1}", NULL, &off, err), KR_ERR_JSON);
	assert_non_null(strstr(err, "comment"));
	struct kr_json_opts o = {.allow_comments = false};
	assert_int_equal(parse_err("{\"a\": 1 // c\n}", &o, &off, err), KR_ERR_JSON);
}

static void test_comments_are_accepted_with_allow_comments(void **state)
{
	(void)state;
	struct kr_json_opts o = {.allow_comments = true};
	const char *text = "// header\n{/* block */ \"a\": 1, // tail\n \"b\": /* x */ [2]}\n";
	struct kr_json *j = parse_ok(text, &o);
	assert_int_equal(j->n, 2);
	assert_string_equal(kr_json_get(j, "a")->str, "1");
	assert_int_equal(j->offset, offset_of(text, "{"));
	assert_int_equal(kr_json_get(j, "b")->offset, offset_of(text, "[2]"));
	kr_json_free(j);
}

static void test_duplicate_keys_are_rejected_by_default(void **state)
{
	(void)state;
	const char *text = "{\"a\": 1, \"b\": {\"x\": 1}, \"a\": 2}";
	size_t off;
	char err[KR_ERRBUF];
	assert_int_equal(parse_err(text, NULL, &off, err), KR_ERR_JSON);
	assert_non_null(strstr(err, "duplicate key \"a\""));
	assert_int_equal(off, strlen(text) - strlen("\"a\": 2}")); /* the second "a" */
}

static void test_duplicate_keys_are_rejected_in_nested_objects_and_with_object_values(void **state)
{
	(void)state;
	const char *text = "{\"o\": {\"k\": 1, \"k\": {\"deep\": [1]}}}";
	size_t off;
	char err[KR_ERRBUF];
	assert_int_equal(parse_err(text, NULL, &off, err), KR_ERR_JSON);
	assert_non_null(strstr(err, "duplicate key \"k\""));
	assert_int_equal(off, offset_of(text, "\"k\": {"));
}

static void test_duplicate_keys_keep_the_last_value_with_last_key_wins(void **state)
{
	(void)state;
	struct kr_json_opts o = {.last_key_wins = true};
	struct kr_json *j = parse_ok("{\"a\": {\"x\": [1]}, \"b\": 0, \"a\": \"last\", \"b\": [9]}", &o);
	assert_int_equal(j->n, 2);
	assert_string_equal(j->keys[0], "a");
	assert_string_equal(j->keys[1], "b");
	assert_int_equal(j->items[0]->type, KR_JSON_STRING);
	assert_string_equal(j->items[0]->str, "last");
	assert_int_equal(j->items[1]->type, KR_JSON_ARRAY);
	assert_string_equal(j->items[1]->items[0]->str, "9");
	kr_json_free(j);
}

static void test_duplicate_keys_are_all_kept_in_order_with_keep_duplicate_keys(void **state)
{
	(void)state;
	struct kr_json_opts o = {.keep_duplicate_keys = true};
	struct kr_json *j = parse_ok("{\"a\": 1, \"b\": 0, \"a\": \"last\"}", &o);
	assert_int_equal(j->n, 3);
	assert_string_equal(j->keys[0], "a");
	assert_string_equal(j->keys[2], "a");
	assert_string_equal(j->items[0]->str, "1");
	assert_string_equal(j->items[2]->str, "last");
	kr_json_free(j);
}

static void test_keys_sharing_a_prefix_are_not_duplicates(void **state)
{
	(void)state;
	struct kr_json *j = parse_ok("{\"ab\": 1, \"a\": 2, \"abc\": 3, \"b\": 4, \"\": 5}", NULL);
	assert_int_equal(j->n, 5);
	/* members keep document order */
	assert_string_equal(j->keys[0], "ab");
	assert_string_equal(j->keys[1], "a");
	assert_string_equal(j->keys[4], "");
	assert_string_equal(kr_json_get(j, "abc")->str, "3");
	kr_json_free(j);
}

static void test_duplicate_key_is_found_among_many_keys(void **state)
{
	(void)state;
	struct kr_buf b = {0};
	char key[32];
	assert_true(kr_buf_puts(&b, "{"));
	for (int i = 0; i < 2000; i++) {
		snprintf(key, sizeof key, "%s\"k%d\": %d", i ? ", " : "", (i * 7919) % 2000, i);
		assert_true(kr_buf_puts(&b, key));
	}
	size_t dup_at = b.len + 2;
	assert_true(kr_buf_puts(&b, ", \"k1234\": 0}"));
	size_t off;
	char err[KR_ERRBUF];
	assert_int_equal(parse_err(b.p, NULL, &off, err), KR_ERR_JSON);
	assert_non_null(strstr(err, "duplicate key \"k1234\""));
	assert_int_equal(off, dup_at);
	/* without the duplicate all 2000 keys load */
	b.p[b.len - strlen(", \"k1234\": 0}")] = '}';
	b.p[b.len - strlen(", \"k1234\": 0}") + 1] = 0;
	struct kr_json *j = parse_ok(b.p, NULL);
	assert_int_equal(j->n, 2000);
	kr_json_free(j);
	kr_buf_free(&b);
}

static void test_last_key_wins_keeps_the_last_of_several_duplicates(void **state)
{
	(void)state;
	struct kr_json_opts o = {.last_key_wins = true};
	struct kr_json *j = parse_ok("{\"o\": {\"k\": 1, \"k\": 2, \"x\": 0, \"k\": 3}}", &o);
	const struct kr_json *in = kr_json_get(j, "o");
	assert_int_equal(in->n, 2);
	assert_string_equal(kr_json_get(in, "k")->str, "3");
	assert_string_equal(kr_json_get(in, "x")->str, "0");
	kr_json_free(j);
}

static void test_number_text_is_kept_exactly_next_to_its_value(void **state)
{
	(void)state;
	struct kr_json *j = parse_ok("[3.0e2, -0, 10.50, 1E+2, 12345678901234567890, 0.1]", NULL);
	static const char *const texts[] = {"3.0e2", "-0", "10.50", "1E+2", "12345678901234567890",
					    "0.1"};
	static const double values[] = {300.0, 0.0, 10.5, 100.0, 12345678901234567890.0, 0.1};
	assert_int_equal(j->n, 6);
	for (size_t i = 0; i < 6; i++) {
		assert_int_equal(j->items[i]->type, KR_JSON_NUMBER);
		assert_string_equal(j->items[i]->str, texts[i]);
		assert_int_equal(j->items[i]->len, strlen(texts[i]));
		assert_true(j->items[i]->num == values[i]);
	}
	kr_json_free(j);
}

static void test_nesting_beyond_max_depth_is_a_limit_error_at_the_opening_bracket(void **state)
{
	(void)state;
	struct kr_json_opts o = {.max_depth = 3};
	struct kr_json *j = parse_ok("[[[1]]]", &o);
	kr_json_free(j);
	const char *text = "{\"a\": {\"b\": [{\"c\": 1}]}}";
	size_t off;
	char err[KR_ERRBUF];
	assert_int_equal(parse_err(text, &o, &off, err), KR_ERR_LIMIT);
	assert_non_null(strstr(err, "depth"));
	assert_int_equal(off, offset_of(text, "{\"c\""));
}

static void test_default_max_depth_is_64(void **state)
{
	(void)state;
	char text[200];
	memset(text, '[', 64);
	memset(text + 64, ']', 64);
	text[128] = 0;
	struct kr_json *j = parse_ok(text, NULL);
	kr_json_free(j);
	memset(text, '[', 65);
	memset(text + 65, ']', 65);
	text[130] = 0;
	size_t off;
	char err[KR_ERRBUF];
	assert_int_equal(parse_err(text, NULL, &off, err), KR_ERR_LIMIT);
	assert_int_equal(off, 64);
}

/* ---- malformed input ---- */

static void test_malformed_json_reports_the_offending_token(void **state)
{
	(void)state;
	/* yajl's position is just past the token it rejected: accept any offset from the token's
	 * first byte to just past it, and nothing earlier or later */
	static const struct {
		const char *text, *bad;
		size_t toklen;
	} cases[] = {
		{"{\"a\": 1,, \"b\": 2}", ", \"b\"", 1},
		{"{\"a\" 1}", "1}", 1},
		{"[12 34]", "34", 2},
		{"[1,]", "]", 1},
		{"{\"a\":1}\n x", "x", 1},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t off = 0;
		char err[KR_ERRBUF] = "";
		assert_int_equal(parse_err(cases[i].text, NULL, &off, err), KR_ERR_JSON);
		size_t want = offset_of(cases[i].text, cases[i].bad);
		if (off < want || off > want + cases[i].toklen)
			fail_msg("'%s': error offset %zu, want %zu..%zu (%s)", cases[i].text, off,
				 want, want + cases[i].toklen, err);
		assert_non_null(strstr(err, "error"));
		assert_null(strchr(err, '\n')); /* one line, no yajl context excerpt */
	}
}

static void test_truncated_json_reports_the_end_of_the_input(void **state)
{
	(void)state;
	const char *text = "{\n  \"a\": [1,\n  2";
	size_t off = 0;
	char err[KR_ERRBUF];
	assert_int_equal(parse_err(text, NULL, &off, err), KR_ERR_JSON);
	assert_non_null(strstr(err, "premature EOF"));
	size_t line, col;
	kr_json_linecol(text, strlen(text), off, &line, &col);
	if (off != strlen(text))
		fail_msg("truncated input: error offset %zu (line %zu col %zu), want the end %zu",
			 off, line, col, strlen(text));
}

static void test_empty_and_blank_documents_are_errors(void **state)
{
	(void)state;
	size_t off;
	char err[KR_ERRBUF];
	assert_int_equal(parse_err("", NULL, &off, err), KR_ERR_JSON);
	assert_int_equal(parse_err(" \n\t ", NULL, &off, err), KR_ERR_JSON);
}

static void test_error_offset_and_buffer_may_be_null(void **state)
{
	(void)state;
	struct kr_json *j = (struct kr_json *)1;
	assert_int_equal(kr_json_parse("[1,", 3, NULL, &j, NULL, NULL), KR_ERR_JSON);
	assert_null(j);
}

/* ---- kr_buf_json_string ---- */

static void test_json_string_escapes_quotes_and_backslashes(void **state)
{
	(void)state;
	struct kr_buf b = {0};
	assert_true(kr_buf_json_string(&b, "say \"hi\" \\o/", 12));
	assert_string_equal(b.p, "\"say \\\"hi\\\" \\\\o/\"");
	assert_int_equal(b.len, strlen(b.p));
	kr_buf_free(&b);
	assert_null(b.p);
}

static void test_json_string_escapes_every_control_character(void **state)
{
	(void)state;
	struct kr_buf b = {0};
	const char in[] = "\n\r\t\b\f\x01\x1f\x7f";
	assert_true(kr_buf_json_string(&b, in, sizeof in - 1));
	assert_string_equal(b.p, "\"\\n\\r\\t\\b\\f\\u0001\\u001f\x7f\"");
	kr_buf_free(&b);
	/* NUL is data, not the end */
	assert_true(kr_buf_json_string(&b, "a\0b", 3));
	assert_string_equal(b.p, "\"a\\u0000b\"");
	kr_buf_free(&b);
	/* all 32 control characters, each escaped, none passed through raw */
	char ctl[32];
	for (int i = 0; i < 32; i++)
		ctl[i] = (char)i;
	assert_true(kr_buf_json_string(&b, ctl, 32));
	for (size_t i = 0; i < b.len; i++)
		assert_true((unsigned char)b.p[i] >= 0x20);
	kr_buf_free(&b);
}

static void test_json_string_passes_utf8_through_unchanged(void **state)
{
	(void)state;
	struct kr_buf b = {0};
	const char *in = "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80";
	assert_true(kr_buf_json_string(&b, in, strlen(in)));
	assert_int_equal(b.len, strlen(in) + 2);
	assert_int_equal(b.p[0], '"');
	assert_memory_equal(b.p + 1, in, strlen(in));
	assert_int_equal(b.p[b.len - 1], '"');
	kr_buf_free(&b);
}

/* Every length up to 70 with one character that needs escaping at every position (and none):
 * the block-wise scan must neither miss one nor copy bytes twice, whichever block it falls in. */
static void test_json_string_finds_escapes_at_every_position(void **state)
{
	(void)state;
	static const char specials[] = {'"', '\\', '\n', 0x01, 0x1f};
	char in[72], want[96];
	for (size_t n = 0; n <= 70; n++) {
		for (size_t pos = 0; pos <= n; pos++) { /* pos == n: nothing to escape */
			for (size_t k = 0; k < sizeof specials; k++) {
				for (size_t i = 0; i < n; i++)
					in[i] = (char)('a' + (i * 7 + n) % 26 + (i % 5 == 4 ? 0x60 : 0));
				size_t w = 0;
				want[w++] = '"';
				for (size_t i = 0; i < n; i++) {
					if (i == pos) {
						in[i] = specials[k];
						const char *e = specials[k] == '"'    ? "\\\""
								: specials[k] == '\\' ? "\\\\"
								: specials[k] == '\n' ? "\\n"
								: specials[k] == 0x01 ? "\\u0001"
										      : "\\u001f";
						memcpy(want + w, e, strlen(e));
						w += strlen(e);
					} else {
						want[w++] = in[i];
					}
				}
				want[w++] = '"';
				struct kr_buf b = {0};
				assert_true(kr_buf_json_string(&b, in, n));
				assert_int_equal(b.len, w);
				assert_memory_equal(b.p, want, w);
				kr_buf_free(&b);
				if (pos == n)
					break;
			}
		}
	}
}

/* The escape of one byte as kr_json_string_to must write it. */
static size_t ref_escape(char *o, unsigned char c)
{
	static const char hex[] = "0123456789abcdef";
	const char *e = c == '"'    ? "\\\""
			: c == '\\' ? "\\\\"
			: c == '\n'  ? "\\n"
			: c == '\r'  ? "\\r"
			: c == '\t'  ? "\\t"
			: c == '\b'  ? "\\b"
			: c == '\f'  ? "\\f"
				     : NULL;
	if (e) {
		memcpy(o, e, 2);
		return 2;
	}
	if (c < 0x20) {
		memcpy(o, "\\u00", 4);
		o[4] = hex[c >> 4];
		o[5] = hex[c & 15];
		return 6;
	}
	*o = (char)c;
	return 1;
}

/* Texts dense with bytes to escape (an event's text has a quote every few bytes), into memory
 * of exactly the 6 * n + 2 bytes kr_json_string_to may use (a sanitizer build sees any byte
 * written past it): each run of escapes and plain bytes, at every length and offset. */
static void test_json_string_to_dense_escapes_stay_in_bounds(void **state)
{
	(void)state;
	unsigned seed = 99;
	for (int iter = 0; iter < 4000; iter++) {
		size_t n = (size_t)(iter % 97);
		char in[97], want[6 * 97 + 2];
		unsigned every = 1 + (unsigned)(iter / 97) % 9; /* a special every few bytes */
		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			unsigned r = (seed >> 16) & 0x7fff;
			in[i] = r % every == 0 ? "\"\\\n\x01\x1f\t"[r / every % 6]
					       : (char)(0x20 + r / every % 0x60);
		}
		size_t w = 0;
		want[w++] = '"';
		for (size_t i = 0; i < n; i++)
			w += ref_escape(want + w, (unsigned char)in[i]);
		want[w++] = '"';
		char *out = malloc(6 * n + 2);
		assert_non_null(out);
		char *end = kr_json_string_to(out, in, n);
		assert_int_equal((size_t)(end - out), w);
		assert_memory_equal(out, want, w);
		free(out);
	}
}

/* ---- kr_buf_uint ---- */

static void test_buf_uint_writes_what_printf_writes(void **state)
{
	(void)state;
	static const uint64_t vals[] = {0, 1, 9, 10, 99, 100, 12345, 4294967295u, 4294967296u,
					UINT64_MAX / 10, UINT64_MAX - 1, UINT64_MAX};
	for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
		struct kr_buf b = {0};
		assert_true(kr_buf_puts(&b, "n="));
		assert_true(kr_buf_uint(&b, vals[i]));
		char want[32];
		snprintf(want, sizeof want, "n=%llu", (unsigned long long)vals[i]);
		assert_string_equal(b.p, want);
		assert_int_equal(b.len, strlen(want));
		kr_buf_free(&b);
	}
}

/* ---- kr_buf_urlencode ---- */

/* Every byte: RFC 3986's unreserved characters as they are, every other one %XX (upper case). */
static void test_urlencode_every_byte(void **state)
{
	(void)state;
	for (unsigned c = 0; c < 256; c++) {
		struct kr_buf b = {0};
		assert_true(kr_buf_puts(&b, "k="));
		unsigned char in[3] = {'a', (unsigned char)c, 'z'};
		assert_true(kr_buf_urlencode(&b, in, 3));
		char want[16];
		bool keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
		if (keep)
			snprintf(want, sizeof want, "k=a%cz", (char)c);
		else
			snprintf(want, sizeof want, "k=a%%%02Xz", c);
		assert_string_equal(b.p, want);
		assert_int_equal(b.len, strlen(want));
		kr_buf_free(&b);
	}
}

static void test_json_string_appends_after_existing_content(void **state)
{
	(void)state;
	struct kr_buf b = {0};
	assert_true(kr_buf_puts(&b, "{\"k\":"));
	assert_true(kr_buf_json_string(&b, "", 0));
	assert_true(kr_buf_puts(&b, "}"));
	assert_string_equal(b.p, "{\"k\":\"\"}");
	kr_buf_free(&b);
}

static void test_json_string_round_trips_through_the_parser(void **state)
{
	(void)state;
	unsigned seed = 12345;
	for (int iter = 0; iter < 200; iter++) {
		char in[64];
		size_t n = (size_t)(iter % 64);
		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			/* ASCII including controls, quotes and backslashes; bytes >= 0x80 would
			 * need to be valid UTF-8 for the parser, so keep below */
			in[i] = (char)((seed >> 16) % 128);
		}
		struct kr_buf b = {0};
		assert_true(kr_buf_json_string(&b, in, n));
		struct kr_json *j = NULL;
		char err[KR_ERRBUF];
		if (kr_json_parse(b.p, b.len, NULL, &j, NULL, err) != KR_OK)
			fail_msg("encoded string does not parse: %s: %s", b.p, err);
		assert_int_equal(j->type, KR_JSON_STRING);
		assert_int_equal(j->len, n);
		assert_memory_equal(j->str, in, n);
		kr_json_free(j);
		kr_buf_free(&b);
	}
}

static void test_base64_matches_the_rfc_4648_vectors(void **state)
{
	(void)state;
	static const char *const vec[][2] = {
		{"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"},
		{"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
	};
	for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) {
		struct kr_buf b = {0};
		assert_true(kr_buf_base64(&b, vec[i][0], strlen(vec[i][0])));
		assert_non_null(b.p);
		assert_string_equal(b.p, vec[i][1]);
		kr_buf_free(&b);
	}
	/* any bytes, the whole alphabet, appended after what is there */
	unsigned char all[256];
	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	struct kr_buf b = {0};
	assert_true(kr_buf_puts(&b, "x="));
	assert_true(kr_buf_base64(&b, "\x00\xFF\xFE\xFB\xEF", 5));
	assert_string_equal(b.p, "x=AP/+++8=");
	b.len = 0;
	assert_true(kr_buf_base64(&b, all, sizeof all));
	assert_int_equal(b.len, 344);
	assert_memory_equal(b.p, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v", 64);
	assert_string_equal(b.p + 320, "8PHy8/T19vf4+fr7/P3+/w==");
	kr_buf_free(&b);
}

/* Every length up to 100 and every offset in memory of exactly that length (a sanitizer build
 * sees a read past it): what a digit at a time of RFC 4648 gives. */
static void test_base64_of_every_length_matches_a_digit_at_a_time(void **state)
{
	(void)state;
	static const char digits[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	unsigned seed = 7;
	for (size_t n = 0; n <= 100; n++) {
		unsigned char *in = malloc(n ? n : 1);
		assert_non_null(in);
		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			in[i] = (unsigned char)(seed >> 16);
		}
		char want[140];
		size_t w = 0;
		for (size_t i = 0; i < n; i += 3) {
			uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
				     (i + 2 < n ? in[i + 2] : 0);
			want[w++] = digits[v >> 18];
			want[w++] = digits[v >> 12 & 63];
			want[w++] = i + 1 < n ? digits[v >> 6 & 63] : '=';
			want[w++] = i + 2 < n ? digits[v & 63] : '=';
		}
		want[w] = 0;
		struct kr_buf b = {0};
		assert_true(kr_buf_base64(&b, in, n));
		assert_int_equal(b.len, w);
		assert_string_equal(b.p ? b.p : "", want);
		kr_buf_free(&b);
		free(in);
	}
}

/* ---- streaming the elements of one array ---- */

struct seen {
	char log[512];
	size_t calls;
};

/* Drops the objects (after noting their index and "name"), keeps everything else. */
static bool drop_objects(void *ctx, const struct kr_json *elem, size_t index)
{
	struct seen *s = ctx;
	const struct kr_json *n = kr_json_get(elem, "name");
	size_t o = strlen(s->log);
	snprintf(s->log + o, sizeof s->log - o, "%zu:%s:%s ", index, kr_json_type_name(elem->type),
		 n ? n->str : "-");
	s->calls++;
	return elem->type == KR_JSON_OBJECT;
}

static void test_elements_of_the_streamed_array_go_to_the_callback_and_may_be_dropped(void **state)
{
	(void)state;
	static const char text[] =
		"{\"a\": 1, \"x\": {\"rules\": [7]},\n"
		" \"rules\": [{\"name\": \"r0\", \"k\": [1, 2]}, \"s1\", {\"name\": \"r2\"}, [3],\n"
		"            {\"deep\": {\"name\": \"in\"}, \"name\": \"r4\"}, 5],\n"
		" \"z\": {\"name\": \"after\", \"k\": true}}";
	struct seen seen = {.log = ""};
	struct kr_json_opts o = {.element_key = "rules", .element = drop_objects,
				 .element_ctx = &seen};
	struct kr_json *j = parse_ok(text, &o);
	/* only the root object's "rules", each element once, in order */
	assert_string_equal(seen.log, "0:object:r0 1:string:- 2:object:r2 3:array:- 4:object:r4 "
				      "5:number:- ");
	const struct kr_json *rules = kr_json_get(j, "rules");
	assert_int_equal(rules->n, 3);
	assert_string_equal(rules->items[0]->str, "s1");
	assert_int_equal(rules->items[0]->offset, (size_t)(strstr(text, "\"s1\"") - text));
	assert_int_equal(rules->items[1]->type, KR_JSON_ARRAY);
	assert_int_equal(rules->items[1]->items[0]->num, 3);
	assert_int_equal(rules->items[2]->num, 5);
	/* what follows the dropped elements is whole: keys met inside them are not reused */
	const struct kr_json *z = kr_json_get(j, "z");
	assert_string_equal(kr_json_get(z, "name")->str, "after");
	assert_int_equal(kr_json_get(z, "k")->type, KR_JSON_TRUE);
	assert_int_equal(kr_json_get(kr_json_get(j, "x"), "rules")->n, 1);
	assert_int_equal(kr_json_get(j, "a")->num, 1);
	kr_json_free(j);
}

/* Many dropped elements reuse the same memory; an element bigger than a chunk still works, and
 * an error inside the array is reported as without streaming. */
static void test_streamed_array_of_many_and_big_elements(void **state)
{
	(void)state;
	size_t n = 20000, cap = n * 64 + 200000;
	char *text = malloc(cap);
	assert_non_null(text);
	size_t o = (size_t)sprintf(text, "{\"rules\": [");
	for (size_t i = 0; i < n; i++)
		o += (size_t)sprintf(text + o, "%s{\"name\": \"r%zu\", \"v\": [%zu]}", i ? "," : "", i, i);
	o += (size_t)sprintf(text + o, ",{\"name\": \"big\", \"v\": [");
	for (size_t i = 0; i < 30000; i++)
		o += (size_t)sprintf(text + o, "%s%zu", i ? "," : "", i % 10);
	o += (size_t)sprintf(text + o, "]}], \"end\": \"ok\"}");
	struct seen seen = {.log = ""};
	struct kr_json_opts opts = {.element_key = "rules", .element = drop_objects,
				    .element_ctx = &seen};
	struct kr_json *j = parse_ok(text, &opts);
	assert_int_equal(seen.calls, n + 1);
	assert_int_equal(kr_json_get(j, "rules")->n, 0);
	assert_string_equal(kr_json_get(j, "end")->str, "ok");
	kr_json_free(j);
	/* an error in element 3 */
	static const char bad[] = "{\"rules\": [{\"name\": \"a\"}, {}, {\"b\": 1}, {\"c\": ]}]}";
	char err[KR_ERRBUF];
	size_t off, off2;
	char err2[KR_ERRBUF];
	assert_int_equal(parse_err(bad, &opts, &off, err), KR_ERR_JSON);
	assert_int_equal(parse_err(bad, NULL, &off2, err2), KR_ERR_JSON);
	assert_int_equal(off, off2);
	assert_string_equal(err, err2);
	free(text);
}


/* ---- kr_json_text_path against kr_json_path on the tree ---- */

/* The span's value and the tree node agree: type, a string's decoded text, a number's literal,
 * an object's or array's text parsed again into as many members. */
static void assert_span_is(const struct kr_json_span *sp, const struct kr_json *j)
{
	assert_int_equal(sp->type, j->type);
	struct kr_buf b = {0};
	if (j->type == KR_JSON_STRING) {
		assert_true(kr_json_span_string(&b, sp));
		assert_int_equal(b.len, j->len);
		assert_memory_equal(b.p, j->str, j->len);
	} else if (j->type == KR_JSON_NUMBER) {
		assert_int_equal(sp->len, j->len);
		assert_memory_equal(sp->p, j->str, j->len);
	} else if (j->type == KR_JSON_OBJECT || j->type == KR_JSON_ARRAY) {
		struct kr_json *again = NULL;
		assert_int_equal(kr_json_parse(sp->p, sp->len, &(struct kr_json_opts){.last_key_wins = true},
					       &again, NULL, NULL), KR_OK);
		assert_int_equal(again->n, j->n);
		kr_json_free(again);
	}
	kr_buf_free(&b);
}

/* kr_json_members_path answers for path exactly as kr_json_text_path does: found or not, and
 * the same span. */
static void assert_members_agree(const char *text, size_t n, const char *path)
{
	struct kr_json_members m;
	kr_json_members_scan(&m, text, n);
	struct kr_json_span a, b;
	bool fa = kr_json_text_path(text, n, path, &a);
	bool fb = kr_json_members_path(&m, path, &b);
	if (fa != fb)
		fail_msg("%s in %.*s: the text scan says %d, the members %d", path, (int)n, text,
			 fa, fb);
	if (fa) {
		assert_int_equal(a.type, b.type);
		assert_ptr_equal(a.p, b.p);
		assert_int_equal(a.len, b.len);
		assert_int_equal(a.escaped, b.escaped);
	}
}

/* Every path into the tree node j (names as $.a.b, items as [i]) and a few that are not there:
 * the scan of text finds what kr_json_path finds, and so do the members of its top level. */
static void check_paths(const char *text, const struct kr_json *root, const struct kr_json *j,
			char *path, size_t plen, int *checked)
{
	struct kr_json_span sp;
	const struct kr_json *want = kr_json_path(root, path);
	bool got = kr_json_text_path(text, strlen(text), path, &sp);
	assert_int_equal(got, want != NULL);
	if (want)
		assert_span_is(&sp, want);
	assert_members_agree(text, strlen(text), path);
	(*checked)++;
	if (plen > 200)
		return;
	static const char *absent[] = {".nope", "[7]", ".a"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(path + plen, 256 - plen, "%s", absent[i]);
		want = kr_json_path(root, path);
		assert_int_equal(kr_json_text_path(text, strlen(text), path, &sp), want != NULL);
		if (want)
			assert_span_is(&sp, want);
		assert_members_agree(text, strlen(text), path);
	}
	path[plen] = 0;
	for (size_t i = 0; j->type >= KR_JSON_ARRAY && i < j->n; i++) {
		size_t l;
		if (j->type == KR_JSON_OBJECT) {
			if (strpbrk(j->keys[i], ".[]") || memchr(j->keys[i], 0, j->keylens[i]) ||
			    plen + 1 + j->keylens[i] > 250)
				continue; /* a name a JSONPath cannot say */
			l = (size_t)snprintf(path + plen, 256 - plen, ".%s", j->keys[i]);
		} else {
			l = (size_t)snprintf(path + plen, 256 - plen, "[%zu]", i);
		}
		check_paths(text, root, j->items[i], path, plen + l, checked);
		path[plen] = 0;
	}
}

static void check_text(const char *text)
{
	struct kr_json *root = NULL;
	assert_int_equal(kr_json_parse(text, strlen(text), &(struct kr_json_opts){.last_key_wins = true},
				       &root, NULL, NULL), KR_OK);
	char path[256] = "$";
	int checked = 0;
	check_paths(text, root, root, path, 1, &checked);
	assert_true(checked > 0);
	kr_json_free(root);
}

static void test_text_path_finds_what_the_tree_finds(void **state)
{
	(void)state;
	check_text("{\"version\":\"0\",\"id\":\"e9ce3425\",\"detail-type\":\"KMS CMK Deletion\","
		   "\"source\":\"aws.kms\",\"time\":\"2016-08-19T03:23:45Z\",\"resources\":"
		   "[\"arn:aws:kms:us-west-2:111122223333:key/1234abcd\"],\"detail\":{\"key-id\":"
		   "\"1234abcd\",\"n\":-1.50e+3,\"t\":true,\"f\":false,\"z\":null,\"e\":{},\"a\":[]}}");
	/* white space everywhere, nesting, arrays of objects and of arrays */
	check_text(" \n{ \"a\" : [ 1 , { \"b\" : [ [ 2 , 3 ] , \"x\" ] } , [ ] ] ,\t\"c\" : { \"d\" :"
		   " { \"e\" : \"deep\" } } }\r\n");
	/* a repeated key: the last one, also when the first is an object to descend into */
	check_text("{\"k\":{\"x\":1},\"k\":{\"y\":2},\"d\":1,\"d\":\"two\",\"d\":[3]}");
	/* escapes: in keys (compared decoded), in values, backslashes before quotes */
	check_text("{\"key\\u002did\":\"v\\\"1\\\\\",\"q\\\\\":\"\\\\\",\"u\":\"caf\\u00e9 \\ud83d\\ude00\","
		   "\"s\":\"a]b}c{d[e,f:g\",\"detail\":{\"key-id\":\"\\n\\t\"}}");
	/* non-ASCII, and strings that look like structure */
	check_text("{\"名\":\"値\",\"x\":\"}\",\"y\":\"]\",\"z\":[\"{\",\"[\",\"\\\"\"]}");
	/* not an object at the top */
	check_text("[{\"a\":1},{\"a\":2}]");
	check_text("\"just a string\"");
	check_text("42");
	/* more members than kr_json_members keeps: the text is scanned instead, with the same
	   answers, a repeated key's last member among them */
	char big[1024];
	size_t bl = 0;
	big[bl++] = '{';
	for (int i = 0; i < KR_JSON_MEMBERS_MAX + 3; i++)
		bl += (size_t)snprintf(big + bl, sizeof big - bl, "%s\"k%d\":{\"v\":%d}",
				       i ? "," : "", i % (KR_JSON_MEMBERS_MAX + 1), i);
	big[bl++] = '}';
	big[bl] = 0;
	struct kr_json_members m;
	kr_json_members_scan(&m, big, bl);
	assert_false(m.indexed);
	check_text(big);
	/* exactly as many as it keeps: indexed */
	bl = 0;
	big[bl++] = '{';
	for (int i = 0; i < KR_JSON_MEMBERS_MAX; i++)
		bl += (size_t)snprintf(big + bl, sizeof big - bl, "%s\"k%d\":[%d]", i ? "," : "",
				       i % 7, i);
	big[bl++] = '}';
	big[bl] = 0;
	kr_json_members_scan(&m, big, bl);
	assert_true(m.indexed);
	assert_int_equal(m.n, KR_JSON_MEMBERS_MAX);
	check_text(big);
}

static void test_text_path_of_broken_text_is_not_found_and_never_reads_past_the_end(void **state)
{
	(void)state;
	static const char *broken[] = {
		"", "{", "{\"a\"", "{\"a\":", "{\"a\":1", "{\"a\":1,", "{\"a\":\"x", "{\"a\":{\"b\":1}",
		"{\"a\" 1}", "{a:1}", "[1,2", "{\"a\":1}}", "{\"a\":[1,{]}", "{\"a\":\"\\\"}",
	};
	for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
		/* a copy of exactly its length, so that ASan sees a read past the end */
		size_t n = strlen(broken[i]);
		char *t = malloc(n ? n : 1);
		assert_non_null(t);
		memcpy(t, broken[i], n);
		struct kr_json_span sp;
		assert_false(kr_json_text_path(t, n, "$.a.b", &sp));
		assert_false(kr_json_text_path(t, n, "$.a[1]", &sp));
		(void)kr_json_text_path(t, n, "$.a", &sp); /* found or not: never past n */
		(void)kr_json_text_path(t, n, "$", &sp);
		static const char *paths[] = {"$.a.b", "$.a[1]", "$.a", "$", "$.b"};
		for (size_t k = 0; k < 5; k++)
			assert_members_agree(t, n, paths[k]);
		free(t);
	}
	struct kr_json_span sp;
	assert_false(kr_json_text_path("{\"a\":1}", 7, "a", &sp)); /* not a JSONPath */
	assert_true(kr_json_text_path("{\"a\":1}", 7, "$.a", &sp));
	assert_int_equal(sp.type, KR_JSON_NUMBER);
	assert_int_equal(sp.len, 1);
}

struct items_seen {
	char log[256];
	size_t stop_at;
};

static bool note_item(void *ctx, size_t i, const char *item, size_t len)
{
	struct items_seen *s = ctx;
	size_t o = strlen(s->log);
	snprintf(s->log + o, sizeof s->log - o, "%zu=%.*s;", i, (int)len, item);
	return i + 1 != s->stop_at;
}

/* Each item's text in order, without a tree; nothing for what is not an array; a callback that
 * returns false stops it. */
static void test_text_items_gives_each_item_of_the_array(void **state)
{
	(void)state;
	const char *t = "{\"Records\": [ {\"SequenceNumber\":\"1\"} ,{\"ErrorCode\":\"X\","
			"\"ErrorMessage\":\"a]b\"}, 7,\"s\" ,[1,[2]],null ], \"Records2\": 1}";
	struct items_seen s = {"", 0};
	assert_true(kr_json_text_items(t, strlen(t), "$.Records", note_item, &s));
	assert_string_equal(s.log, "0={\"SequenceNumber\":\"1\"};1={\"ErrorCode\":\"X\","
				   "\"ErrorMessage\":\"a]b\"};2=7;3=\"s\";4=[1,[2]];5=null;");
	struct items_seen stop = {"", 2};
	assert_false(kr_json_text_items(t, strlen(t), "$.Records", note_item, &stop));
	assert_string_equal(stop.log, "0={\"SequenceNumber\":\"1\"};1={\"ErrorCode\":\"X\","
				      "\"ErrorMessage\":\"a]b\"};");
	struct items_seen none = {"", 0};
	assert_true(kr_json_text_items("{\"Records\":[ ]}", 15, "$.Records", note_item, &none));
	assert_string_equal(none.log, "");
	assert_false(kr_json_text_items(t, strlen(t), "$.Records2", note_item, &none));
	assert_false(kr_json_text_items(t, strlen(t), "$.nope", note_item, &none));
	/* cut off: the array is not found whole, and no item is given */
	struct items_seen cut = {"", 0};
	assert_false(kr_json_text_items("{\"Records\":[1,2,", 16, "$.Records", note_item, &cut));
	assert_string_equal(cut.log, "");
}

static void test_valid_says_what_the_parser_says(void **state)
{
	(void)state;
	static const char *const good[] = {"{\"a\":[1,2]}", " [] ", "\"s\"", "12", "{\"a\":\"\\u0000\"}",
					   "true"};
	static const char *const bad[] = {"", "{", "{\"a\":1,}", "[1 2]", "{\"a\":1}x", "\"\x01\"",
					  "{\"a\":\"\xff\"}"};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		assert_true(kr_json_valid(good[i], strlen(good[i])));
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_false(kr_json_valid(bad[i], strlen(bad[i])));
}

static void test_trailing_text_after_the_value_is_an_error_unless_blank_or_comments(void **state)
{
	(void)state;
	/* yajl lets the start of a string pass after the value, waiting for its end */
	static const char *bad[] = {"0\"", "{\"a\":1}\"oops", "[1] \"x", "\"s\" \"", "true\"",
				    "{\"a\":1} x", "{\"a\":1} // no comments here"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct kr_json *j = NULL;
		size_t off = 0;
		char err[KR_ERRBUF];
		assert_int_equal(kr_json_parse(bad[i], strlen(bad[i]), NULL, &j, &off, err),
				 KR_ERR_JSON);
		assert_null(j);
		assert_non_null(strstr(err, "trailing garbage"));
		assert_true(off <= strlen(bad[i]));
	}
	/* the offset of what yajl let pass is where it starts */
	size_t off = 0;
	struct kr_json *k = NULL;
	assert_int_equal(kr_json_parse("{\"a\":1} \"oops", 13, NULL, &k, &off, NULL), KR_ERR_JSON);
	assert_int_equal(off, 8);
	static const char *good[] = {"0", "0 \n\t\r\v\f", "{\"a\":1}  ", "[1,2]\n", "\"s\"",
				     "{\"a\":1} // a comment\n/* and\n another */ "};
	struct kr_json_opts comments = {.allow_comments = true};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		struct kr_json *j = NULL;
		assert_int_equal(kr_json_parse(good[i], strlen(good[i]), &comments, &j, NULL, NULL),
				 KR_OK);
		kr_json_free(j);
	}
	/* an unterminated comment at the end is not a comment */
	struct kr_json *j = NULL;
	assert_int_not_equal(kr_json_parse("{} /* x", 7, &comments, &j, NULL, NULL), KR_OK);
	assert_null(j);
}

/* ---- the fast path (lex.h) and yajl give the same trees and errors ---- */

static void assert_same_tree(const struct kr_json *a, const struct kr_json *b)
{
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->offset, b->offset);
	assert_int_equal(a->n, b->n);
	if (a->type == KR_JSON_STRING || a->type == KR_JSON_NUMBER) {
		assert_int_equal(a->len, b->len);
		assert_memory_equal(a->str, b->str, a->len);
	}
	if (a->type == KR_JSON_NUMBER)
		assert_true(a->num == b->num);
	for (size_t i = 0; (a->type == KR_JSON_ARRAY || a->type == KR_JSON_OBJECT) && i < a->n; i++) {
		if (a->type == KR_JSON_OBJECT) {
			assert_int_equal(a->keylens[i], b->keylens[i]);
			assert_int_equal(a->key_offsets[i], b->key_offsets[i]);
			assert_memory_equal(a->keys[i], b->keys[i], a->keylens[i]);
		}
		assert_same_tree(a->items[i], b->items[i]);
	}
}

/* Parses text with the given options and again with yajl_only; both must agree. Returns the
 * first's result. */
static enum kr_err parse_both_ways(const char *text, struct kr_json_opts o)
{
	struct kr_json *a = NULL, *b = NULL;
	size_t aoff = 99, boff = 99;
	char aerr[KR_ERRBUF] = "", berr[KR_ERRBUF] = "";
	enum kr_err ea = kr_json_parse(text, strlen(text), &o, &a, &aoff, aerr);
	o.yajl_only = true;
	enum kr_err eb = kr_json_parse(text, strlen(text), &o, &b, &boff, berr);
	if (ea != eb)
		fail_msg("%s: %d (%s) with the fast path, %d (%s) with yajl", text, ea, aerr, eb,
			 berr);
	if (ea == KR_OK) {
		assert_same_tree(a, b);
	} else {
		assert_int_equal(aoff, boff);
		assert_string_equal(aerr, berr);
	}
	kr_json_free(a);
	kr_json_free(b);
	return ea;
}

static void test_the_fast_path_and_yajl_build_the_same_trees_and_errors(void **state)
{
	(void)state;
	struct kr_json_opts none = {0}, last = {.last_key_wins = true},
			    all = {.keep_duplicate_keys = true}, shallow = {.max_depth = 3};
	/* trees: escapes, numbers, nesting, white space around */
	assert_int_equal(parse_both_ways(" {\"a\":\"x\\n\\u00e9\\\"\",\"b\":[1,-2.5e3,true,false,null,{}],"
					 "\"c\\/\":{\"d\":[[],[\"\"]]}}\n\t",
					 none),
			 KR_OK);
	assert_int_equal(parse_both_ways("[\"caf\xC3\xA9\",0,{\"k\":1E+2}]", none), KR_OK);
	/* strings and keys dense with escapes and longer than 16 bytes (an SQS answer's body):
	   their values and offsets */
	assert_int_equal(parse_both_ways("{\"Messages\": [{\"MessageId\": \"m-1\", \"Body\": \"{\\\"version\\\": \\\"0\\\", \\\"id\\\": \\\"6a7e8feb-b491-4cf7-a9f1-bf3703467718\\\", \\\"detail-type\\\": \\\"KMS CMK Deletion\\\", \\\"detail\\\": {\\\"key-id\\\": \\\"1234abcd-12ab-34cd-56ef-1234567890ab\\\", \\\"note\\\": \\\"a\\\\\\\\b \\\\\\\"q\\\\\\\" caf\\\\u00e9 \\/x\\\\ty\\\"}}\", \"k\\\"e\\\\y, a key longer than sixteen bytes\": \"v\\n\"}]}", none), KR_OK);
	/* errors the callbacks give: duplicate keys, depth, with their offsets */
	assert_int_equal(parse_both_ways("{\"a\":1,\"b\":{\"c\":2,\"c\":3}}", none), KR_ERR_JSON);
	assert_int_equal(parse_both_ways("{\"a\":1,\"a\":2}", last), KR_OK);
	assert_int_equal(parse_both_ways("{\"a\":1,\"a\":[2]}", all), KR_OK);
	assert_int_equal(parse_both_ways("[[[[1]]]]", shallow), KR_ERR_LIMIT);
	/* what the fast path leaves to yajl: trailing text, comments, scalars, bad input */
	assert_int_equal(parse_both_ways("{\"a\":1} x", none), KR_ERR_JSON);
	assert_int_equal(parse_both_ways("{\"a\":1}\"oops", none), KR_ERR_JSON);
	assert_int_equal(parse_both_ways("{\"a\":1,}", none), KR_ERR_JSON);
	assert_int_equal(parse_both_ways("{\"a\":\"\\u0000\"}", none), KR_OK);
	assert_int_equal(parse_both_ways("{\"a\":\"\xC0\xAF\"}", none), KR_OK);
	assert_int_equal(parse_both_ways("42", none), KR_OK);
	assert_int_equal(parse_both_ways("{\"a\":[1,2", none), KR_ERR_JSON);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_elements_of_the_streamed_array_go_to_the_callback_and_may_be_dropped),
		cmocka_unit_test(test_streamed_array_of_many_and_big_elements),
		cmocka_unit_test(test_every_node_records_the_offset_where_it_starts),
		cmocka_unit_test(test_string_offset_is_found_after_escaped_backslashes),
		cmocka_unit_test(test_top_level_value_offset_skips_leading_whitespace),
		cmocka_unit_test(test_strings_are_decoded_and_kr_json_get_finds_members),
		cmocka_unit_test(test_linecol_is_one_based_and_counts_newlines),
		cmocka_unit_test(test_linecol_of_parsed_nodes_names_their_position),
		cmocka_unit_test(test_comments_are_rejected_by_default),
		cmocka_unit_test(test_comments_are_accepted_with_allow_comments),
		cmocka_unit_test(test_duplicate_keys_are_rejected_by_default),
		cmocka_unit_test(test_duplicate_keys_are_rejected_in_nested_objects_and_with_object_values),
		cmocka_unit_test(test_duplicate_keys_keep_the_last_value_with_last_key_wins),
		cmocka_unit_test(test_duplicate_keys_are_all_kept_in_order_with_keep_duplicate_keys),
		cmocka_unit_test(test_keys_sharing_a_prefix_are_not_duplicates),
		cmocka_unit_test(test_duplicate_key_is_found_among_many_keys),
		cmocka_unit_test(test_last_key_wins_keeps_the_last_of_several_duplicates),
		cmocka_unit_test(test_number_text_is_kept_exactly_next_to_its_value),
		cmocka_unit_test(test_nesting_beyond_max_depth_is_a_limit_error_at_the_opening_bracket),
		cmocka_unit_test(test_default_max_depth_is_64),
		cmocka_unit_test(test_the_fast_path_and_yajl_build_the_same_trees_and_errors),
		cmocka_unit_test(test_malformed_json_reports_the_offending_token),
		cmocka_unit_test(test_truncated_json_reports_the_end_of_the_input),
		cmocka_unit_test(test_empty_and_blank_documents_are_errors),
		cmocka_unit_test(test_error_offset_and_buffer_may_be_null),
		cmocka_unit_test(test_json_string_escapes_quotes_and_backslashes),
		cmocka_unit_test(test_json_string_escapes_every_control_character),
		cmocka_unit_test(test_json_string_passes_utf8_through_unchanged),
		cmocka_unit_test(test_json_string_finds_escapes_at_every_position),
		cmocka_unit_test(test_json_string_to_dense_escapes_stay_in_bounds),
		cmocka_unit_test(test_urlencode_every_byte),
		cmocka_unit_test(test_buf_uint_writes_what_printf_writes),
		cmocka_unit_test(test_json_string_appends_after_existing_content),
		cmocka_unit_test(test_json_string_round_trips_through_the_parser),
		cmocka_unit_test(test_base64_matches_the_rfc_4648_vectors),
		cmocka_unit_test(test_base64_of_every_length_matches_a_digit_at_a_time),
		cmocka_unit_test(test_text_path_finds_what_the_tree_finds),
		cmocka_unit_test(test_text_items_gives_each_item_of_the_array),
		cmocka_unit_test(test_valid_says_what_the_parser_says),
		cmocka_unit_test(test_trailing_text_after_the_value_is_an_error_unless_blank_or_comments),
		cmocka_unit_test(test_text_path_of_broken_text_is_not_found_and_never_reads_past_the_end),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
