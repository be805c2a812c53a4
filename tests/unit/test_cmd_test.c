/* Unit tests for what `kmsrouter test` compares and shows payloads with (parsers/json.c
 * kr_json_pretty; router/cli/cmd_test.c kr_line_diff). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "commands.h"
#include "json.h"

static char *pretty(const char *text)
{
	struct kr_json *j = NULL;
	size_t off = 0;
	char err[KR_ERRBUF] = "";
	if (kr_json_parse(text, strlen(text), NULL, &j, &off, err) != KR_OK)
		fail_msg("%s: %s", text, err);
	struct kr_buf b = {0};
	assert_true(kr_json_pretty(&b, j));
	assert_true(kr_buf_reserve(&b, 1));
	b.p[b.len] = 0;
	kr_json_free(j);
	return b.p;
}

static void test_pretty_indents_by_two_and_keeps_member_order(void **state)
{
	(void)state;
	char *p = pretty("{\"b\":1,\"a\":[true,null,{\"x\":\"y\"}],\"c\":{}}");
	assert_string_equal(p, "{\n"
			       "  \"b\": 1,\n"
			       "  \"a\": [\n"
			       "    true,\n"
			       "    null,\n"
			       "    {\n"
			       "      \"x\": \"y\"\n"
			       "    }\n"
			       "  ],\n"
			       "  \"c\": {}\n"
			       "}");
	free(p);
}

static void test_pretty_keeps_numbers_as_written_and_escapes_strings(void **state)
{
	(void)state;
	char *p = pretty("[1.0, 3e2, -0, \"a\\\"b\\n\\u0001\", \"\\u00e9\"]");
	assert_string_equal(p, "[\n  1.0,\n  3e2,\n  -0,\n  \"a\\\"b\\n\\u0001\",\n  \"\xc3\xa9\"\n]");
	free(p);
	p = pretty("\"x\"");
	assert_string_equal(p, "\"x\"");
	free(p);
	p = pretty("[]");
	assert_string_equal(p, "[]");
	free(p);
	/* a deep document: each level is indented two spaces further */
	char deep[2 * 50 + 1], want[2 * 49 + 4];
	for (int i = 0; i < 50; i++) {
		deep[i] = '[';
		deep[2 * 50 - 1 - i] = ']';
	}
	deep[2 * 50] = 0;
	want[0] = '\n';
	memset(want + 1, ' ', 2 * 49);
	memcpy(want + 1 + 2 * 49, "[]", 3);
	p = pretty(deep);
	assert_non_null(strstr(p, want));
	assert_null(strstr(p, "\n [")); /* never an odd indentation */
	assert_string_equal(strrchr(p, '\n'), "\n]");
	free(p);
}

static char *diff(const char *a, const char *b, unsigned context)
{
	struct kr_buf out = {0};
	assert_true(kr_buf_puts(&out, ""));
	assert_true(kr_line_diff(&out, "> ", a, strlen(a), b, strlen(b), context));
	return out.p;
}

static void test_equal_texts_give_no_diff(void **state)
{
	(void)state;
	char *d = diff("a\nb\nc", "a\nb\nc", 3);
	assert_string_equal(d, "");
	free(d);
	d = diff("", "", 3);
	assert_string_equal(d, "");
	free(d);
}

static void test_a_changed_line_with_context(void **state)
{
	(void)state;
	char *d = diff("1\n2\n3\n4\n5\n6\n7\n8\n9", "1\n2\n3\n4\nfive\n6\n7\n8\n9", 2);
	assert_string_equal(d, "> @@ -3,5 +3,5 @@\n"
			       ">  3\n"
			       ">  4\n"
			       "> -5\n"
			       "> +five\n"
			       ">  6\n"
			       ">  7\n");
	free(d);
}

static void test_far_apart_changes_make_two_hunks_and_near_ones_one(void **state)
{
	(void)state;
	const char *a = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj";
	char *d = diff(a, "A\nb\nc\nd\ne\nf\ng\nh\ni\nJ", 1);
	assert_string_equal(d, "> @@ -1,2 +1,2 @@\n"
			       "> -a\n"
			       "> +A\n"
			       ">  b\n"
			       "> @@ -9,2 +9,2 @@\n"
			       ">  i\n"
			       "> -j\n"
			       "> +J\n");
	free(d);
	/* two unchanged lines between changes, context 1: the hunks would touch, so they join */
	d = diff(a, "a\nB\nc\nd\nE\nf\ng\nh\ni\nj", 1);
	assert_string_equal(d, "> @@ -1,6 +1,6 @@\n"
			       ">  a\n"
			       "> -b\n"
			       "> +B\n"
			       ">  c\n"
			       ">  d\n"
			       "> -e\n"
			       "> +E\n"
			       ">  f\n");
	free(d);
}

static void test_insertions_and_deletions_count_lines_as_unified_diffs_do(void **state)
{
	(void)state;
	char *d = diff("a\nb\nc", "a\nx\ny\nb\nc", 0);
	assert_string_equal(d, "> @@ -1,0 +2,2 @@\n"
			       "> +x\n"
			       "> +y\n");
	free(d);
	d = diff("a\nb\nc", "a\nc", 0);
	assert_string_equal(d, "> @@ -2,1 +1,0 @@\n"
			       "> -b\n");
	free(d);
	/* a trailing newline is a line of its own, so it shows */
	d = diff("a", "a\n", 1);
	assert_string_equal(d, "> @@ -1,1 +1,2 @@\n"
			       ">  a\n"
			       "> +\n");
	free(d);
}

static void test_removed_lines_come_before_added_ones(void **state)
{
	(void)state;
	char *d = diff("k\n1\n2\n3\nz", "k\nA\nB\nz", 1);
	assert_string_equal(d, "> @@ -1,5 +1,4 @@\n"
			       ">  k\n"
			       "> -1\n"
			       "> -2\n"
			       "> -3\n"
			       "> +A\n"
			       "> +B\n"
			       ">  z\n");
	free(d);
}

static void test_a_large_diff_is_still_complete(void **state)
{
	(void)state;
	/* 3,000 lines each, nothing in common but the first and last: past the aligned size, the
	   middle is shown removed, then added */
	struct kr_buf a = {0}, b = {0};
	assert_true(kr_buf_puts(&a, "first\n") && kr_buf_puts(&b, "first\n"));
	for (int i = 0; i < 3000; i++) {
		char line[32];
		snprintf(line, sizeof line, "a%d\n", i);
		assert_true(kr_buf_puts(&a, line));
		snprintf(line, sizeof line, "b%d\n", i);
		assert_true(kr_buf_puts(&b, line));
	}
	assert_true(kr_buf_puts(&a, "last") && kr_buf_puts(&b, "last"));
	struct kr_buf out = {0};
	assert_true(kr_line_diff(&out, "", a.p, a.len, b.p, b.len, 1));
	size_t minus = 0, plus = 0;
	for (const char *p = out.p; p && *p; p = strchr(p, '\n') + 1) {
		minus += *p == '-';
		plus += *p == '+';
	}
	assert_int_equal(minus, 3000);
	assert_int_equal(plus, 3000);
	const char *head = "@@ -1,3002 +1,3002 @@\n first\n-a0\n";
	assert_int_equal(strncmp(out.p, head, strlen(head)), 0);
	kr_buf_free(&a);
	kr_buf_free(&b);
	kr_buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pretty_indents_by_two_and_keeps_member_order),
		cmocka_unit_test(test_pretty_keeps_numbers_as_written_and_escapes_strings),
		cmocka_unit_test(test_equal_texts_give_no_diff),
		cmocka_unit_test(test_a_changed_line_with_context),
		cmocka_unit_test(test_far_apart_changes_make_two_hunks_and_near_ones_one),
		cmocka_unit_test(test_insertions_and_deletions_count_lines_as_unified_diffs_do),
		cmocka_unit_test(test_removed_lines_come_before_added_ones),
		cmocka_unit_test(test_a_large_diff_is_still_complete),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
