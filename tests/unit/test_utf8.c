/* Unit tests for parsers/utf8.h: strict UTF-8 validation (RFC 3629) and the reported bad offset;
 * the lossy JSON string writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "json.h"
#include "utf8.h"

#define S(lit) (lit), (sizeof(lit) - 1)

static void assert_valid(const char *s, size_t n)
{
	size_t bad = 12345;
	assert_true(kr_utf8_valid(s, n, &bad));
}

static void assert_invalid_at(const char *s, size_t n, size_t want)
{
	size_t bad = 12345;
	assert_false(kr_utf8_valid(s, n, &bad));
	assert_int_equal(bad, want);
}

static void test_empty_input_is_valid(void **state)
{
	(void)state;
	assert_valid("", 0);
	assert_true(kr_utf8_valid(NULL, 0, NULL));
}

static void test_ascii_is_valid_in_short_and_long_runs(void **state)
{
	(void)state;
	assert_valid(S("a"));
	assert_valid(S("{\"id\":\"1\"}"));
	/* longer than one 8-byte word, with a tail that is not a multiple of 8 */
	assert_valid(S("The quick brown fox jumps over the lazy dog 0123456789 ~!@#$%^&*()"));
	/* every ASCII byte including control characters and DEL */
	char all[128];
	for (int i = 0; i < 128; i++)
		all[i] = (char)i;
	assert_valid(all, sizeof all);
}

static void test_two_byte_sequences_are_valid(void **state)
{
	(void)state;
	assert_valid(S("\xC2\x80"));     /* U+0080, the smallest 2-byte */
	assert_valid(S("caf\xC3\xA9"));  /* é */
	assert_valid(S("\xDF\xBF"));     /* U+07FF, the largest 2-byte */
}

static void test_three_byte_sequences_are_valid(void **state)
{
	(void)state;
	assert_valid(S("\xE0\xA0\x80"));       /* U+0800, the smallest 3-byte */
	assert_valid(S("price: 5\xE2\x82\xAC")); /* € */
	assert_valid(S("\xED\x9F\xBF"));       /* U+D7FF, just below the surrogates */
	assert_valid(S("\xEE\x80\x80"));       /* U+E000, just above the surrogates */
	assert_valid(S("\xEF\xBF\xBF"));       /* U+FFFF */
}

static void test_four_byte_sequences_are_valid(void **state)
{
	(void)state;
	assert_valid(S("\xF0\x90\x80\x80"));      /* U+10000, the smallest 4-byte */
	assert_valid(S("smile \xF0\x9F\x98\x80")); /* U+1F600 */
	assert_valid(S("\xF4\x8F\xBF\xBF"));      /* U+10FFFF, the largest code point */
}

static void test_mixed_text_after_a_long_ascii_run_is_valid(void **state)
{
	(void)state;
	assert_valid(S("abcdefghijklmnop\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80qrstuvwxyz012345"));
}

static void test_overlong_two_byte_form_is_rejected(void **state)
{
	(void)state;
	assert_invalid_at(S("\xC0\xAF"), 0); /* '/' encoded in two bytes */
	assert_invalid_at(S("\xC1\xBF"), 0);
	assert_invalid_at(S("\xC0\x80"), 0); /* "modified UTF-8" NUL */
}

static void test_overlong_three_and_four_byte_forms_are_rejected(void **state)
{
	(void)state;
	assert_invalid_at(S("\xE0\x80\xAF"), 0);     /* '/' in three bytes */
	assert_invalid_at(S("\xE0\x9F\xBF"), 0);     /* U+07FF in three bytes */
	assert_invalid_at(S("\xF0\x80\x80\xAF"), 0); /* '/' in four bytes */
	assert_invalid_at(S("\xF0\x8F\xBF\xBF"), 0); /* U+FFFF in four bytes */
}

static void test_surrogates_are_rejected(void **state)
{
	(void)state;
	assert_invalid_at(S("\xED\xA0\x80"), 0); /* U+D800 */
	assert_invalid_at(S("\xED\xBF\xBF"), 0); /* U+DFFF */
	/* a CESU-8 style surrogate pair */
	assert_invalid_at(S("\xED\xA0\xBD\xED\xB8\x80"), 0);
}

static void test_code_points_above_10ffff_are_rejected(void **state)
{
	(void)state;
	assert_invalid_at(S("\xF4\x90\x80\x80"), 0); /* U+110000 */
	assert_invalid_at(S("\xF5\x80\x80\x80"), 0);
	assert_invalid_at(S("\xF7\xBF\xBF\xBF"), 0);
	assert_invalid_at(S("\xF8\x88\x80\x80\x80"), 0); /* old 5-byte form */
	assert_invalid_at(S("\xFE"), 0);
	assert_invalid_at(S("\xFF"), 0);
}

static void test_truncated_sequences_are_rejected(void **state)
{
	(void)state;
	/* cut by the end of the input */
	assert_invalid_at(S("\xC3"), 0);
	assert_invalid_at(S("ab\xE2\x82"), 2);
	assert_invalid_at(S("abc\xF0\x9F\x98"), 3);
	/* cut by a byte that is not a continuation */
	assert_invalid_at(S("\xC3" "A"), 0);
	assert_invalid_at(S("x\xE2\x82" "A"), 1);
	assert_invalid_at(S("\xF0\x9F\x98" "\xC3\xA9"), 0);
}

static void test_lone_continuation_bytes_are_rejected(void **state)
{
	(void)state;
	assert_invalid_at(S("\x80"), 0);
	assert_invalid_at(S("ok\xBF"), 2);
	/* one continuation too many after a complete sequence */
	assert_invalid_at(S("\xC3\xA9\xA9"), 2);
}

static void test_bad_offset_is_the_first_byte_of_the_first_bad_sequence(void **state)
{
	(void)state;
	/* the bad sequence sits after an ASCII run longer than one word and after valid
	 * multi-byte characters; a later bad byte must not be the one reported */
	assert_invalid_at(S("0123456789abcdef\xC3\xA9\xE2\x82\xAC" "\xED\xA0\x80" "tail\xFF"), 21);
	assert_invalid_at(S("0123456789" "\xC0\xAF"), 10);
	assert_invalid_at(S("01234567" "\xF4\x90\x80\x80"), 8);
}

static void test_bad_byte_is_found_at_every_position_of_a_long_ascii_run(void **state)
{
	(void)state;
	/* the scan skips ASCII in words of 8 and 32 bytes: put the bad byte at every position
	 * around those boundaries, with valid text after it */
	char buf[100];
	for (size_t pos = 0; pos < 90; pos++) {
		memset(buf, 'a', sizeof buf);
		buf[pos] = (char)0xFF;
		size_t bad = 12345;
		assert_false(kr_utf8_valid(buf, sizeof buf, &bad));
		assert_int_equal(bad, pos);
		/* and a valid 2-byte character there is accepted */
		buf[pos] = (char)0xC3;
		buf[pos + 1] = (char)0xA9;
		assert_true(kr_utf8_valid(buf, sizeof buf, NULL));
	}
}

static void test_bad_offset_pointer_may_be_null(void **state)
{
	(void)state;
	assert_false(kr_utf8_valid(S("\xC0\xAF"), NULL));
	assert_true(kr_utf8_valid(S("\xC3\xA9"), NULL));
}

static void test_length_bounds_what_is_read(void **state)
{
	(void)state;
	/* the bytes after n are not looked at: a valid prefix of a longer, invalid buffer */
	const char buf[] = "abc\xC3\xA9\xFF";
	assert_true(kr_utf8_valid(buf, 5, NULL));
	/* and a sequence cut by n is truncated even if the buffer continues it */
	assert_invalid_at(buf, 4, 3);
}

/* Newlines counted at every position around the 64-byte blocks, and the high-byte flag set only
 * by a byte >= 0x80 (and never cleared). */
static void test_scan_lines_counts_newlines_and_notes_high_bytes(void **state)
{
	(void)state;
	char buf[200];
	for (size_t n = 0; n <= sizeof buf; n += 13) {
		for (size_t pos = 0; pos < n; pos += 7) {
			memset(buf, 'a', n);
			size_t want = 0;
			for (size_t i = pos % 5; i < n; i += 5) {
				buf[i] = '\n';
				want++;
			}
			bool high = false;
			assert_int_equal(kr_scan_lines(buf, n, &high), want);
			assert_false(high);
			char was = buf[pos];
			buf[pos] = (char)0xC3;
			assert_int_equal(kr_scan_lines(buf, n, &high), want - (was == '\n'));
			assert_true(high);
			buf[pos] = 'b';
			assert_int_equal(kr_scan_lines(buf, n, &high), want - (was == '\n'));
			assert_true(high); /* left as it was */
		}
	}
	bool high = false;
	assert_int_equal(kr_scan_lines(NULL, 0, &high), 0);
	assert_false(high);
	/* long inputs: every byte a newline (the most a per-lane counter gets), and mixed text,
	 * against a plain count */
	static char big[20011];
	memset(big, '\n', sizeof big);
	assert_int_equal(kr_scan_lines(big, sizeof big, &high), sizeof big);
	assert_false(high);
	uint32_t x = 12345;
	size_t want = 0;
	for (size_t i = 0; i < sizeof big; i++) {
		x = x * 1103515245u + 12345u;
		big[i] = (x >> 16) % 3 == 0 ? '\n' : 'q';
		want += big[i] == '\n';
	}
	for (size_t n = sizeof big - 64 * 70; n <= sizeof big; n += 997) {
		size_t w = want;
		for (size_t i = n; i < sizeof big; i++)
			w -= big[i] == '\n';
		assert_int_equal(kr_scan_lines(big, n, &high), w);
	}
	assert_false(high);
}

/* ---- lossy JSON strings ---- */

static void assert_lossy(const char *in, size_t n, const char *want, size_t want_replaced)
{
	struct kr_buf b = {0};
	size_t replaced = 999;
	assert_true(kr_utf8_json_string(&b, in, n, &replaced));
	assert_string_equal(b.p, want);
	assert_int_equal(b.len, strlen(want));
	assert_int_equal(replaced, want_replaced);
	kr_buf_free(&b);
}

static void test_lossy_json_string_of_valid_utf8_is_kr_buf_json_string(void **state)
{
	(void)state;
	static const char in[] = "caf\xC3\xA9 \"q\" \\ \n\t\x01 \xF0\x9F\x98\x80 \xE2\x82\xAC";
	struct kr_buf want = {0};
	assert_true(kr_buf_json_string(&want, S(in)));
	assert_lossy(S(in), want.p, 0);
	kr_buf_free(&want);
	assert_lossy("", 0, "\"\"", 0);
}

/* One U+FFFD per maximal subpart: a bad lead byte alone, or the bytes that began a sequence
 * correctly up to the one that does not fit (which is looked at again). */
static void test_lossy_json_string_replaces_each_maximal_subpart_with_u_fffd(void **state)
{
	(void)state;
#define FFFD "\xEF\xBF\xBD"
	assert_lossy(S("a\xFF" "b"), "\"a" FFFD "b\"", 1);
	assert_lossy(S("\xC3("), "\"" FFFD "(\"", 1);
	assert_lossy(S("ab\xE2\x82"), "\"ab" FFFD "\"", 1);            /* cut by the end */
	assert_lossy(S("\xE2\x82(cd"), "\"" FFFD "(cd\"", 1);
	assert_lossy(S("\xF0\x9F\x98x"), "\"" FFFD "x\"", 1);
	assert_lossy(S("\xED\xA0\x80"), "\"" FFFD FFFD FFFD "\"", 3);    /* surrogate */
	assert_lossy(S("\xC0\xAF"), "\"" FFFD FFFD "\"", 2);              /* overlong */
	assert_lossy(S("\xE0\x80\xAF"), "\"" FFFD FFFD FFFD "\"", 3);
	assert_lossy(S("\xF4\x90\x80\x80"), "\"" FFFD FFFD FFFD FFFD "\"", 4); /* > U+10FFFF */
	assert_lossy(S("\x80\xBF"), "\"" FFFD FFFD "\"", 2);              /* lone continuations */
	assert_lossy(S("\xC3\xA9\xC3"), "\"\xC3\xA9" FFFD "\"", 1);
	/* escapes as usual around them, NUL included */
	assert_lossy(S("\x00\"\\\xFF\n"), "\"\\u0000\\\"\\\\" FFFD "\\n\"", 1);
#undef FFFD
}

/* Whatever the bytes: valid UTF-8 out, a JSON string that parses, and the input itself when it
 * was valid. */
static void test_lossy_json_string_is_valid_utf8_and_json_whatever_the_input(void **state)
{
	(void)state;
	uint32_t x = 777;
	for (int iter = 0; iter < 500; iter++) {
		char in[96];
		size_t n = (size_t)(iter % 96);
		for (size_t i = 0; i < n; i++) {
			x = x * 1103515245u + 12345u;
			unsigned r = x >> 16;
			/* mostly text, some high bytes and controls */
			in[i] = (char)(r % 4 ? 0x20 + r % 95 : (iter % 3 ? 0x80 + r % 128 : r % 32));
		}
		struct kr_buf b = {0};
		assert_true(kr_utf8_json_string(&b, in, n, NULL));
		assert_true(kr_utf8_valid(b.p, b.len, NULL));
		struct kr_json *j = NULL;
		char err[KR_ERRBUF];
		if (kr_json_parse(b.p, b.len, NULL, &j, NULL, err) != KR_OK)
			fail_msg("lossy string does not parse: %s", err);
		assert_int_equal(j->type, KR_JSON_STRING);
		if (kr_utf8_valid(in, n, NULL)) {
			assert_int_equal(j->len, n);
			assert_memory_equal(j->str, in, n);
		}
		kr_json_free(j);
		kr_buf_free(&b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scan_lines_counts_newlines_and_notes_high_bytes),
		cmocka_unit_test(test_empty_input_is_valid),
		cmocka_unit_test(test_ascii_is_valid_in_short_and_long_runs),
		cmocka_unit_test(test_two_byte_sequences_are_valid),
		cmocka_unit_test(test_three_byte_sequences_are_valid),
		cmocka_unit_test(test_four_byte_sequences_are_valid),
		cmocka_unit_test(test_mixed_text_after_a_long_ascii_run_is_valid),
		cmocka_unit_test(test_overlong_two_byte_form_is_rejected),
		cmocka_unit_test(test_overlong_three_and_four_byte_forms_are_rejected),
		cmocka_unit_test(test_surrogates_are_rejected),
		cmocka_unit_test(test_code_points_above_10ffff_are_rejected),
		cmocka_unit_test(test_truncated_sequences_are_rejected),
		cmocka_unit_test(test_lone_continuation_bytes_are_rejected),
		cmocka_unit_test(test_bad_offset_is_the_first_byte_of_the_first_bad_sequence),
		cmocka_unit_test(test_bad_byte_is_found_at_every_position_of_a_long_ascii_run),
		cmocka_unit_test(test_bad_offset_pointer_may_be_null),
		cmocka_unit_test(test_length_bounds_what_is_read),
		cmocka_unit_test(test_lossy_json_string_of_valid_utf8_is_kr_buf_json_string),
		cmocka_unit_test(test_lossy_json_string_replaces_each_maximal_subpart_with_u_fffd),
		cmocka_unit_test(test_lossy_json_string_is_valid_utf8_and_json_whatever_the_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
