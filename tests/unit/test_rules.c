/* Unit tests for rules/rules.h: pattern compilation, errors, and matching against views filled by
 * hand (bound to kr_rules_paths), plus a randomized cross-check against a reference evaluator. */
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
#include "rules.h"
#include "view.h"

/* ---- harness: a rule set, a match state and one event view ---- */

struct rset {
	struct kr_rules *r;
	struct kr_match_state *st;
	struct kr_view v;
	char ids[4096];
};

static struct kr_json *parse_json(const char *text)
{
	struct kr_json *j = NULL;
	char err[KR_ERRBUF];
	if (kr_json_parse(text, strlen(text), NULL, &j, NULL, err) != KR_OK)
		fail_msg("bad JSON in test: %s: %s", text, err);
	return j;
}

static void rs_init(struct rset *rs)
{
	memset(rs, 0, sizeof *rs);
	assert_int_equal(kr_rules_new(&rs->r), KR_OK);
}

/* Adds a pattern that must compile; returns its rule id. */
static uint32_t rs_add(struct rset *rs, const char *pattern)
{
	struct kr_json *j = parse_json(pattern);
	char err[KR_ERRBUF] = "";
	const struct kr_json *bad = NULL;
	enum kr_err e = kr_rules_add(rs->r, j, &bad, err);
	kr_json_free(j);
	if (e != KR_OK)
		fail_msg("pattern %s does not compile: %s", pattern, err);
	return kr_rules_count(rs->r) - 1;
}

static void rs_build(struct rset *rs)
{
	assert_int_equal(kr_rules_build(rs->r), KR_OK);
	rs->st = kr_match_state_new(rs->r);
	assert_non_null(rs->st);
	assert_int_equal(kr_view_init(&rs->v, kr_rules_paths(rs->r)), KR_OK);
}

/* Compiles the patterns (rule ids 0..n-1) and builds. */
static void rs_setup(struct rset *rs, const char *const *patterns, size_t n)
{
	rs_init(rs);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(rs_add(rs, patterns[i]), i);
	rs_build(rs);
}

static void rs_fini(struct rset *rs)
{
	kr_view_fini(&rs->v);
	kr_match_state_free(rs->st);
	kr_rules_free(rs->r);
}

/* Slot of a dotted path, or -1 when no rule looks at it (the parser would not record it). */
static int32_t slot_of(const struct kr_paths *p, const char *dotted)
{
	const struct kr_path_node *node = p->root;
	char buf[256];
	snprintf(buf, sizeof buf, "%s", dotted);
	for (char *seg = strtok(buf, "."); seg && node; seg = strtok(NULL, "."))
		node = kr_path_child(node, seg, strlen(seg));
	return kr_path_slot(node);
}

static void ev_reset(struct rset *rs)
{
	kr_view_reset(&rs->v);
}

static void ev_trail(struct rset *rs, const char *path, enum kr_vtype t, const char *text,
		     const uint32_t *trail, uint32_t ntrail)
{
	int32_t slot = slot_of(kr_rules_paths(rs->r), path);
	if (slot < 0)
		return;
	assert_int_equal(kr_view_add(&rs->v, (uint32_t)slot, t, text, strlen(text), trail, ntrail),
			 KR_OK);
}

static void ev(struct rset *rs, const char *path, enum kr_vtype t, const char *text)
{
	ev_trail(rs, path, t, text, NULL, 0);
}

static void ev_str(struct rset *rs, const char *path, const char *text)
{
	ev(rs, path, KR_V_STRING, text);
}

/* The matching rule ids as "0 2 5" ("" for none), checking they ascend without repeats. */
static const char *matches(struct rset *rs)
{
	const uint32_t *ids = NULL;
	size_t n = kr_rules_match(rs->r, rs->st, &rs->v, &ids);
	size_t o = 0;
	rs->ids[0] = 0;
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && ids[i] <= ids[i - 1])
			fail_msg("rule ids not strictly ascending: %u after %u", ids[i], ids[i - 1]);
		o += (size_t)snprintf(rs->ids + o, sizeof rs->ids - o, "%s%u", i ? " " : "", ids[i]);
	}
	return rs->ids;
}

/* One pattern, one single-valued field: does value (of type t) at path match? */
static bool one(const char *pattern, const char *path, enum kr_vtype t, const char *value)
{
	struct rset rs;
	const char *p[] = {pattern};
	rs_setup(&rs, p, 1);
	ev(&rs, path, t, value);
	bool m = strcmp(matches(&rs), "0") == 0;
	rs_fini(&rs);
	return m;
}

static bool str_matches(const char *pattern, const char *value)
{
	return one(pattern, "f", KR_V_STRING, value);
}

static bool num_matches(const char *pattern, const char *value)
{
	return one(pattern, "f", KR_V_NUMBER, value);
}

/* ---- exact values ---- */

static void test_exact_string_matches_only_the_same_string(void **state)
{
	(void)state;
	const char *p = "{\"f\": [\"aws.kms\"]}";
	assert_true(str_matches(p, "aws.kms"));
	assert_false(str_matches(p, "aws.kms2"));
	assert_false(str_matches(p, "aws.km"));
	assert_false(str_matches(p, "AWS.KMS"));
	assert_false(str_matches(p, ""));
	assert_false(one("{\"f\": [\"5\"]}", "f", KR_V_NUMBER, "5"));
}

static void test_exact_number_matches_every_spelling_of_its_value(void **state)
{
	(void)state;
	const char *p = "{\"f\": [300]}";
	assert_true(num_matches(p, "300"));
	assert_true(num_matches(p, "3.0e2"));
	assert_true(num_matches(p, "300.0"));
	assert_true(num_matches(p, "3E+2"));
	assert_false(num_matches(p, "301"));
	assert_false(str_matches(p, "300"));
	assert_true(num_matches("{\"f\": [-0.5E10]}", "-5000000000E+0"));
	assert_true(num_matches("{\"f\": [-0.0]}", "0"));
	assert_true(num_matches("{\"f\": [0]}", "-0"));
	assert_true(num_matches("{\"f\": [40.96E+2]}", "4096"));
	assert_true(num_matches("{\"f\": [1.7976931348623157e308]}", "17976931348623157e292"));
	/* an inline check of a second condition (rule anchored on the string) compares by value too */
	struct rset rs;
	const char *pats[] = {"{\"s\": [\"a\"], \"f\": [300]}"};
	rs_setup(&rs, pats, 1);
	ev_str(&rs, "s", "a");
	ev(&rs, "f", KR_V_NUMBER, "300.00");
	assert_string_equal(matches(&rs), "0");
	rs_fini(&rs);
}

/* ComparableNumber.generate: a literal whose double is not what it says (its shortest decimal,
 * at least two digits, differs in value) is compared by its text only. */
static void test_exact_number_not_representable_matches_by_text_only(void **state)
{
	(void)state;
	const char *p = "{\"f\": [9007199254740993]}";
	assert_true(num_matches(p, "9007199254740993"));
	assert_false(num_matches(p, "9007199254740992"));
	assert_false(num_matches(p, "9007199254740993.0"));
	assert_true(num_matches("{\"f\": [1e400]}", "1e400"));
	assert_false(num_matches("{\"f\": [1e400]}", "1E400"));
	assert_false(num_matches("{\"f\": [5e-324]}", "4.9e-324"));
	assert_true(num_matches("{\"f\": [4.9e-324]}", "49e-325"));
	assert_true(num_matches("{\"f\": [9007199254740992]}", "9.007199254740992e15"));
}

static void test_anything_but_number_excludes_every_spelling_of_its_value(void **state)
{
	(void)state;
	assert_false(num_matches("{\"f\": [{\"anything-but\": 0.1}]}", "0.10"));
	assert_false(num_matches("{\"f\": [{\"anything-but\": [3.018e2]}]}", "301.8"));
	assert_true(num_matches("{\"f\": [{\"anything-but\": [3.018e2]}]}", "301.9"));
	/* an event number that is not representable is text: a number list never excludes it */
	assert_true(num_matches("{\"f\": [{\"anything-but\": [1]}]}", "1.00000000000000000001"));
}

static void test_exact_true_false_and_null_match_only_their_type(void **state)
{
	(void)state;
	assert_true(one("{\"f\": [true]}", "f", KR_V_TRUE, ""));
	assert_false(one("{\"f\": [true]}", "f", KR_V_FALSE, ""));
	assert_false(one("{\"f\": [true]}", "f", KR_V_STRING, "true"));
	assert_true(one("{\"f\": [false]}", "f", KR_V_FALSE, ""));
	assert_true(one("{\"f\": [null]}", "f", KR_V_NULL, ""));
	assert_false(one("{\"f\": [null]}", "f", KR_V_STRING, "null"));
	assert_false(one("{\"f\": [null]}", "f", KR_V_STRING, ""));
}

static void test_pattern_array_is_an_or_and_event_array_matches_on_any_element(void **state)
{
	(void)state;
	struct rset rs;
	const char *p[] = {"{\"f\": [\"a\", \"b\", 7]}"};
	rs_setup(&rs, p, 1);
	ev(&rs, "f", KR_V_NUMBER, "7");
	assert_string_equal(matches(&rs), "0");
	ev_reset(&rs);
	/* an event array: f = ["x", "b", "y"] */
	ev_str(&rs, "f", "x");
	ev_str(&rs, "f", "b");
	ev_str(&rs, "f", "y");
	assert_string_equal(matches(&rs), "0");
	ev_reset(&rs);
	ev_str(&rs, "f", "x");
	ev_str(&rs, "f", "y");
	assert_string_equal(matches(&rs), "");
	rs_fini(&rs);
}

static void test_nested_fields_are_matched_by_their_full_path(void **state)
{
	(void)state;
	struct rset rs;
	const char *p[] = {"{\"detail\": {\"key\": {\"id\": [\"k1\"]}}}"};
	rs_setup(&rs, p, 1);
	ev_str(&rs, "detail.key.id", "k1");
	assert_string_equal(matches(&rs), "0");
	ev_reset(&rs);
	ev_str(&rs, "detail.id", "k1"); /* not a path the rule looks at */
	assert_string_equal(matches(&rs), "");
	rs_fini(&rs);
}

/* ---- string operators ---- */

static void test_prefix_and_suffix_match_strings_only(void **state)
{
	(void)state;
	const char *pre = "{\"f\": [{\"prefix\": \"arn:aws:kms:\"}]}";
	assert_true(str_matches(pre, "arn:aws:kms:us-east-1:1:key/x"));
	assert_true(str_matches(pre, "arn:aws:kms:"));
	assert_false(str_matches(pre, "arn:aws:km"));
	assert_false(str_matches(pre, "xarn:aws:kms:"));
	assert_false(str_matches(pre, "ARN:aws:kms:x"));
	const char *suf = "{\"f\": [{\"suffix\": \".json\"}]}";
	assert_true(str_matches(suf, "a.json"));
	assert_true(str_matches(suf, ".json"));
	assert_false(str_matches(suf, "json"));
	assert_false(str_matches(suf, "a.json.gz"));
	assert_false(num_matches("{\"f\": [{\"prefix\": \"1\"}]}", "12"));
	assert_false(num_matches("{\"f\": [{\"suffix\": \"2\"}]}", "12"));
}

static void test_equals_ignore_case_folds_ascii_and_latin1(void **state)
{
	(void)state;
	const char *p = "{\"f\": [{\"equals-ignore-case\": \"AWS.Kms\"}]}";
	assert_true(str_matches(p, "aws.kms"));
	assert_true(str_matches(p, "AWS.KMS"));
	assert_false(str_matches(p, "aws.kms "));
	assert_false(str_matches(p, "aws-kms"));
	assert_true(str_matches("{\"f\": [{\"equals-ignore-case\": \"CAF\xC3\x89\"}]}",
				"caf\xC3\xA9"));
	assert_false(num_matches("{\"f\": [{\"equals-ignore-case\": \"1\"}]}", "1"));
}

static bool icase(const char *op, const char *pat, const char *value)
{
	char p[256];
	if (strcmp(op, "equals-ignore-case") == 0)
		snprintf(p, sizeof p, "{\"f\": [{\"equals-ignore-case\": \"%s\"}]}", pat);
	else
		snprintf(p, sizeof p, "{\"f\": [{\"%s\": {\"equals-ignore-case\": \"%s\"}}]}", op,
			 pat);
	return str_matches(p, value);
}

/* EqualsIgnoreCaseParser: per UTF-16 unit of the pattern, its Locale.ROOT lower or upper case
 * (full mappings); the value is never folded. */
static void test_equals_ignore_case_folds_one_way_as_event_ruler(void **state)
{
	(void)state;
	assert_true(icase("equals-ignore-case", "stra\u00dfe", "STRASSE"));
	assert_false(icase("equals-ignore-case", "STRASSE", "stra\u00dfe"));
	assert_true(icase("equals-ignore-case", "\u017f", "S"));  /* long s */
	assert_false(icase("equals-ignore-case", "\u017f", "s"));
	assert_true(icase("equals-ignore-case", "\u212a", "k"));  /* Kelvin sign */
	assert_false(icase("equals-ignore-case", "\u212a", "K"));
	assert_false(icase("equals-ignore-case", "k", "\u212a"));
	assert_true(icase("equals-ignore-case", "\u0131", "I"));  /* dotless i */
	assert_false(icase("equals-ignore-case", "\u01c5", "\u01c5")); /* titlecase Dz */
	assert_true(icase("equals-ignore-case", "\u023a", "\u2c65"));
	assert_true(icase("equals-ignore-case", "\u00ff", "\u0178"));
	assert_true(icase("equals-ignore-case", "\u0130", "i\u0307"));
	assert_true(icase("equals-ignore-case", "\U0001F600", "??")); /* a non-BMP character */
	assert_false(icase("equals-ignore-case", "\U0001F600", "\U0001F600"));
	assert_true(icase("equals-ignore-case", "\u0386", "\u03ac")); /* Greek accented capital */
	assert_true(icase("prefix", "\u00df", "SSx"));
	assert_true(icase("suffix", "\u00df", "xSS"));
	assert_false(icase("suffix", "SS", "x\u00df"));
	assert_false(str_matches("{\"f\": [{\"anything-but\": {\"equals-ignore-case\": \"\u00df\"}}]}",
				 "SS"));
	assert_true(str_matches("{\"f\": [{\"anything-but\": {\"equals-ignore-case\": \"\u00df\"}}]}",
				"ss"));
	assert_true(str_matches("{\"f\": [{\"anything-but\": {\"equals-ignore-case\": \"SS\"}}]}",
				"\u00df"));
}

static void test_exact_and_ignore_case_rules_on_one_literal_stay_independent(void **state)
{
	(void)state;
	struct rset rs;
	const char *p[] = {
		"{\"f\": [\"AWS.KMS\"]}",
		"{\"f\": [{\"equals-ignore-case\": \"AWS.KMS\"}]}",
		"{\"f\": [{\"prefix\": \"AWS\"}]}",
		"{\"f\": [{\"prefix\": {\"equals-ignore-case\": \"AWS\"}}]}",
	};
	rs_setup(&rs, p, 4);
	ev_str(&rs, "f", "AWS.KMS");
	assert_string_equal(matches(&rs), "0 1 2 3");
	ev_reset(&rs);
	ev_str(&rs, "f", "aws.kms");
	assert_string_equal(matches(&rs), "1 3");
	ev_reset(&rs);
	ev_str(&rs, "f", "Aws.Other");
	assert_string_equal(matches(&rs), "3");
	rs_fini(&rs);
}

static void test_ignore_case_prefix_and_suffix(void **state)
{
	(void)state;
	const char *pre = "{\"f\": [{\"prefix\": {\"equals-ignore-case\": \"ARN:AWS\"}}]}";
	assert_true(str_matches(pre, "arn:aws:kms"));
	assert_true(str_matches(pre, "Arn:Aws"));
	assert_false(str_matches(pre, "arn:aw"));
	assert_false(str_matches(pre, "x-arn:aws"));
	const char *suf = "{\"f\": [{\"suffix\": {\"equals-ignore-case\": \".JSON\"}}]}";
	assert_true(str_matches(suf, "events.json"));
	assert_true(str_matches(suf, "EVENTS.Json"));
	assert_false(str_matches(suf, "events.jso"));
}

static void test_wildcard_matches_stars_anywhere(void **state)
{
	(void)state;
	const char *p = "{\"f\": [{\"wildcard\": \"*is pending deletion*\"}]}";
	assert_true(str_matches(p, "arn:... is pending deletion."));
	assert_true(str_matches(p, "is pending deletion"));
	assert_false(str_matches(p, "is pending deletio"));
	const char *arn = "{\"f\": [{\"wildcard\": \"arn:*:key/*\"}]}";
	assert_true(str_matches(arn, "arn:aws:kms:us-east-1:111:key/abc"));
	assert_true(str_matches(arn, "arn::key/"));
	assert_false(str_matches(arn, "arn:aws:kms:alias/abc"));
	assert_false(str_matches(arn, "xarn:aws:key/abc"));
	const char *mid = "{\"f\": [{\"wildcard\": \"a*b*c\"}]}";
	assert_true(str_matches(mid, "abc"));
	assert_true(str_matches(mid, "a-b-b-c"));
	assert_false(str_matches(mid, "a-c-b"));
	assert_false(str_matches(mid, "ab"));
	/* the same literal as prefix and suffix must not overlap */
	assert_false(str_matches("{\"f\": [{\"wildcard\": \"ab*ab\"}]}", "aba"));
	assert_true(str_matches("{\"f\": [{\"wildcard\": \"ab*ab\"}]}", "abab"));
	assert_true(str_matches("{\"f\": [{\"wildcard\": \"*\"}]}", ""));
	assert_true(str_matches("{\"f\": [{\"wildcard\": \"plain\"}]}", "plain"));
	assert_false(str_matches("{\"f\": [{\"wildcard\": \"plain\"}]}", "plainer"));
	assert_false(num_matches("{\"f\": [{\"wildcard\": \"*\"}]}", "1"));
}

static void test_wildcard_escapes_make_star_and_backslash_literal(void **state)
{
	(void)state;
	/* JSON "a\\*b" is the pattern a\*b: a literal star */
	const char *star = "{\"f\": [{\"wildcard\": \"a\\\\*b\"}]}";
	assert_true(str_matches(star, "a*b"));
	assert_false(str_matches(star, "axb"));
	assert_false(str_matches(star, "ab"));
	/* JSON "a\\\\*" is a\\*: a literal backslash, then a real star */
	const char *bs = "{\"f\": [{\"wildcard\": \"a\\\\\\\\*\"}]}";
	assert_true(str_matches(bs, "a\\"));
	assert_true(str_matches(bs, "a\\xyz"));
	assert_false(str_matches(bs, "axyz"));
}

/* ---- anything-but ---- */

static void test_anything_but_single_value_and_list(void **state)
{
	(void)state;
	const char *one_s = "{\"f\": [{\"anything-but\": \"Disabled\"}]}";
	assert_true(str_matches(one_s, "Enabled"));
	assert_false(str_matches(one_s, "Disabled"));
	const char *list = "{\"f\": [{\"anything-but\": [\"a\", \"b\"]}]}";
	assert_true(str_matches(list, "c"));
	assert_false(str_matches(list, "a"));
	assert_false(str_matches(list, "b"));
	const char *nums = "{\"f\": [{\"anything-but\": [1, 2]}]}";
	assert_true(num_matches(nums, "3"));
	assert_false(num_matches(nums, "2"));
	assert_false(num_matches("{\"f\": [{\"anything-but\": 5}]}", "5"));
	assert_true(num_matches("{\"f\": [{\"anything-but\": 5}]}", "6"));
}

static void test_anything_but_with_string_operators(void **state)
{
	(void)state;
	const char *pre = "{\"f\": [{\"anything-but\": {\"prefix\": \"test-\"}}]}";
	assert_true(str_matches(pre, "prod-key"));
	assert_false(str_matches(pre, "test-key"));
	const char *suf = "{\"f\": [{\"anything-but\": {\"suffix\": [\".tmp\", \".bak\"]}}]}";
	assert_true(str_matches(suf, "a.json"));
	assert_false(str_matches(suf, "a.tmp"));
	assert_false(str_matches(suf, "a.bak"));
	const char *wc = "{\"f\": [{\"anything-but\": {\"wildcard\": \"*/tmp/*\"}}]}";
	assert_true(str_matches(wc, "/var/log/x"));
	assert_false(str_matches(wc, "/var/tmp/x"));
	const char *ic = "{\"f\": [{\"anything-but\": {\"equals-ignore-case\": [\"ALPHA\", \"beta\"]}}]}";
	assert_true(str_matches(ic, "gamma"));
	assert_false(str_matches(ic, "alpha"));
	assert_false(str_matches(ic, "BETA"));
}

static void test_anything_but_needs_a_value(void **state)
{
	(void)state;
	struct rset rs;
	const char *p[] = {"{\"f\": [{\"anything-but\": \"x\"}], \"g\": [\"y\"]}"};
	rs_setup(&rs, p, 1);
	ev_str(&rs, "g", "y");
	assert_string_equal(matches(&rs), "");
	ev_str(&rs, "f", "z");
	assert_string_equal(matches(&rs), "0");
	rs_fini(&rs);
}

/* ---- numeric ---- */

static void test_numeric_ranges_compare_by_value(void **state)
{
	(void)state;
	const char *range = "{\"f\": [{\"numeric\": [\">\", 0, \"<=\", 5]}]}";
	assert_false(num_matches(range, "0"));
	assert_true(num_matches(range, "0.001"));
	assert_true(num_matches(range, "5"));
	assert_true(num_matches(range, "5.0"));
	assert_false(num_matches(range, "5.0001"));
	assert_false(num_matches(range, "-1"));
	assert_false(str_matches(range, "3"));
	const char *eq = "{\"f\": [{\"numeric\": [\"=\", 300]}]}";
	assert_true(num_matches(eq, "3.0e2"));
	assert_true(num_matches(eq, "300"));
	assert_false(num_matches(eq, "301"));
	assert_true(num_matches("{\"f\": [{\"numeric\": [\">=\", 10]}]}", "10"));
	assert_false(num_matches("{\"f\": [{\"numeric\": [\">\", 10]}]}", "10"));
	assert_true(num_matches("{\"f\": [{\"numeric\": [\"<\", -1.5]}]}", "-2"));
	assert_false(num_matches("{\"f\": [{\"numeric\": [\"<\", -1.5]}]}", "-1.5"));
	assert_true(num_matches("{\"f\": [{\"numeric\": [\">=\", 1, \"<\", 2]}]}", "1"));
	assert_false(num_matches("{\"f\": [{\"numeric\": [\">=\", 1, \"<\", 2]}]}", "2"));
}

static void test_numeric_never_matches_a_number_it_cannot_represent(void **state)
{
	(void)state;
	const char *gt = "{\"f\": [{\"numeric\": [\">\", 0]}]}";
	assert_false(num_matches(gt, "1e400"));
	assert_false(num_matches(gt, "5e-324"));
	assert_false(num_matches(gt, "12345678901234567890"));
	assert_true(num_matches(gt, "12345678901234567000"));
	assert_true(num_matches(gt, "4.9e-324"));
	/* the largest double is a bound like any other (event-ruler throws there: not copied) */
	assert_true(num_matches("{\"f\": [{\"numeric\": [\"<\", 1.7976931348623157e308]}]}", "1"));
	assert_true(num_matches("{\"f\": [{\"numeric\": [\">\", -1.7976931348623157e308]}]}", "1"));
	/* a field a $or branch replaces never reaches the matcher, so its one-bound range at the
	 * largest double is no error (as in event-ruler) */
	assert_true(num_matches("{\"$or\": [{\"$or\": [{\"b\": [0]}, {\"f\": [{\"numeric\": [\">\", "
				"1.7976931348623157e308]}]}], \"f\": [{\"numeric\": [\">\", 0, \"<\", 2]}]}, "
				"{\"b\": [0]}]}", "1"));
	assert_true(num_matches("{\"f\": [{\"numeric\": [\">\", 0, \"<=\", 1.7976931348623157e308]}]}",
				"1.7976931348623157e308"));
}

/* ---- exists ---- */

static void test_exists_true_needs_a_value_and_false_its_absence(void **state)
{
	(void)state;
	struct rset rs;
	const char *p[] = {
		"{\"f\": [{\"exists\": true}]}",
		"{\"f\": [{\"exists\": false}]}",
		"{\"f\": [{\"exists\": false}], \"g\": [\"y\"]}",
	};
	rs_setup(&rs, p, 3);
	assert_string_equal(matches(&rs), "1"); /* empty event: f is absent */
	ev_str(&rs, "f", "anything");
	assert_string_equal(matches(&rs), "0");
	ev_reset(&rs);
	ev(&rs, "f", KR_V_NUMBER, "0");
	assert_string_equal(matches(&rs), "0");
	ev_reset(&rs);
	ev_str(&rs, "g", "y");
	assert_string_equal(matches(&rs), "1 2");
	ev_str(&rs, "f", "now present");
	assert_string_equal(matches(&rs), "0");
	rs_fini(&rs);
}

/* ---- cidr ---- */

static void test_cidr_v4_matches_addresses_in_the_network(void **state)
{
	(void)state;
	const char *p = "{\"f\": [{\"cidr\": \"10.0.0.0/24\"}]}";
	assert_true(str_matches(p, "10.0.0.0"));
	assert_true(str_matches(p, "10.0.0.255"));
	assert_false(str_matches(p, "10.0.1.5"));
	assert_false(str_matches(p, "11.0.0.5"));
	assert_false(str_matches(p, "not an ip"));
	assert_false(str_matches(p, "::ffff:10.0.0.5"));
	const char *odd = "{\"f\": [{\"cidr\": \"192.168.64.0/18\"}]}";
	assert_true(str_matches(odd, "192.168.127.1"));
	assert_false(str_matches(odd, "192.168.128.1"));
	assert_false(str_matches(odd, "192.168.63.255"));
	assert_true(str_matches("{\"f\": [{\"cidr\": \"0.0.0.0/0\"}]}", "203.0.113.9"));
	assert_true(str_matches("{\"f\": [{\"cidr\": \"203.0.113.9/31\"}]}", "203.0.113.8"));
	assert_false(str_matches("{\"f\": [{\"cidr\": \"203.0.113.9/31\"}]}", "203.0.113.10"));
}

/* CIDR.java as event-ruler reads addresses and masks, and its byte machine's ranges */
static void test_cidr_and_ip_edge_cases_follow_event_ruler(void **state)
{
	(void)state;
	/* an IPv4-mapped address written in hex is the IPv4 address; with a dotted quad, none */
	const char *net = "{\"f\": [{\"cidr\": \"192.0.2.0/24\"}]}";
	assert_true(str_matches(net, "::ffff:c000:280"));
	assert_false(str_matches(net, "::ffff:192.0.2.128"));
	/* leading zeros are decimal; at most 15 characters */
	assert_true(str_matches("{\"f\": [{\"cidr\": \"0.0.0.0/4\"}]}", "00.0.0.1"));
	assert_true(str_matches("{\"f\": [{\"cidr\": \"10.0.0.0/8\"}]}", "010.0.0.1"));
	/* masks as Integer.parseInt reads them; trailing slashes dropped by String.split */
	assert_true(str_matches("{\"f\": [{\"cidr\": \"10.0.0.0/+8\"}]}", "10.1.2.3"));
	assert_true(str_matches("{\"f\": [{\"cidr\": \"10.0.0.0/08\"}]}", "10.1.2.3"));
	assert_true(str_matches("{\"f\": [{\"cidr\": \"10.0.0.0/8/\"}]}", "10.1.2.3"));
	assert_true(str_matches("{\"f\": [{\"cidr\": \"10.0.0.0/-0\"}]}", "1.2.3.4"));
	/* ranges decide on the first digits: an IPv6 address in an IPv4 range, ::/0 takes all */
	assert_true(str_matches("{\"f\": [{\"cidr\": \"0.0.0.0/4\"}]}", "::"));
	assert_true(str_matches("{\"f\": [{\"cidr\": \"::/0\"}]}", "10.0.0.1"));
	assert_false(str_matches("{\"f\": [{\"cidr\": \"::/0\"}]}", "::2.0.2.8"));
	/* an exact string that is an address matches every spelling of it */
	assert_true(str_matches("{\"f\": [\"2001:db8::1\"]}", "2001:DB8:0:0:0:0:0:1"));
	assert_true(str_matches("{\"f\": [\"10.0.0.1\"]}", "010.000.0.01"));
	assert_false(str_matches("{\"f\": [\"10.0.0.1\"]}", "10.0.0.2"));
	assert_false(str_matches("{\"f\": [{\"anything-but\": \"10.0.0.1\"}]}", "10.0.0.1"));
	assert_true(str_matches("{\"f\": [{\"anything-but\": \"10.0.0.1\"}]}", "010.0.0.1"));
}

static void test_cidr_v6_matches_addresses_in_the_network(void **state)
{
	(void)state;
	const char *p = "{\"f\": [{\"cidr\": \"2001:db8::/32\"}]}";
	assert_true(str_matches(p, "2001:db8::1"));
	assert_true(str_matches(p, "2001:0db8:ffff:0:0:0:0:1"));
	assert_false(str_matches(p, "2001:db9::1"));
	assert_false(str_matches(p, "10.0.0.1"));
	const char *p60 = "{\"f\": [{\"cidr\": \"2001:db8:0:10::/60\"}]}";
	assert_true(str_matches(p60, "2001:db8:0:1f::1"));
	assert_false(str_matches(p60, "2001:db8:0:20::1"));
}

/* ---- $or and AND ---- */

static void test_fields_are_anded(void **state)
{
	(void)state;
	struct rset rs;
	const char *p[] = {"{\"source\": [\"aws.kms\"], \"detail\": {\"state\": [\"Disabled\"]}}"};
	rs_setup(&rs, p, 1);
	ev_str(&rs, "source", "aws.kms");
	assert_string_equal(matches(&rs), "");
	ev_str(&rs, "detail.state", "Enabled");
	assert_string_equal(matches(&rs), "");
	ev_str(&rs, "detail.state", "Disabled"); /* now an array with a matching element */
	assert_string_equal(matches(&rs), "0");
	ev_reset(&rs);
	ev_str(&rs, "detail.state", "Disabled");
	assert_string_equal(matches(&rs), "");
	rs_fini(&rs);
}

/* event-ruler reads a pattern its $or-aware compiler refuses again without $or: "$or" is then an
 * ordinary field (not an array of two objects or more, or a branch naming an operator). */
static void test_or_that_event_ruler_cannot_read_as_or_is_a_field(void **state)
{
	(void)state;
	assert_true(one("{\"$or\": [{\"exists\": false}]}", "x", KR_V_STRING, "a"));
	assert_false(one("{\"$or\": [{\"exists\": true}]}", "x", KR_V_STRING, "a"));
	assert_true(one("{\"$or\": [{\"prefix\": \"a\"}]}", "$or", KR_V_STRING, "abc"));
	assert_true(one("{\"$or\": {\"a\": [\"x\"]}}", "$or.a", KR_V_STRING, "x"));
	assert_true(one("{\"$or\": [5]}", "$or", KR_V_NUMBER, "5"));
	const char *reserved = "{\"d\": {\"$or\": [{\"numeric\": [\">\", 0]}, {\"suffix\": \"z\"}]}}";
	assert_true(one(reserved, "d.$or", KR_V_NUMBER, "1"));
	assert_true(one(reserved, "d.$or", KR_V_STRING, "xyz"));
	assert_false(one(reserved, "d.numeric", KR_V_NUMBER, "1"));
	/* the second reading has what event-ruler's older compiler has: no anything-but wildcard,
	 * no anything-but list of prefixes */
	struct kr_rules *r;
	assert_int_equal(kr_rules_new(&r), KR_OK);
	struct kr_json *j = parse_json("{\"$or\": [{\"anything-but\": {\"prefix\": [\"a\"]}}]}");
	char err[KR_ERRBUF] = "";
	assert_int_equal(kr_rules_add(r, j, NULL, err), KR_ERR_PATTERN);
	assert_non_null(strstr(err, "$or must be an array of at least two objects"));
	kr_json_free(j);
	kr_rules_free(r);
	/* a real $or still is one */
	assert_true(one("{\"$or\": [{\"a\": [\"x\"]}, {\"b\": [\"y\"]}]}", "b", KR_V_STRING, "y"));
}

/* JsonRuleCompiler writes each field with rule.put: a $or branch's field replaces the outer one,
 * and a field after the $or replaces the branches' own. */
static void test_or_branch_field_replaces_the_outer_one(void **state)
{
	(void)state;
	const char *before = "{\"a\": [\"x\"], \"$or\": [{\"a\": [\"y\"]}, {\"b\": [\"z\"]}]}";
	assert_true(one(before, "a", KR_V_STRING, "y"));
	assert_false(one(before, "a", KR_V_STRING, "x"));
	struct rset rs;
	const char *after[] = {
		"{\"$or\": [{\"a\": [\"n\"]}, {\"a\": [false]}], \"a\": [{\"exists\": false}]}"};
	rs_setup(&rs, after, 1);
	assert_string_equal(matches(&rs), "0");
	ev_str(&rs, "a", "n");
	assert_string_equal(matches(&rs), "");
	rs_fini(&rs);
}

static void test_or_alternatives_match_each_and_report_the_rule_once(void **state)
{
	(void)state;
	struct rset rs;
	const char *p[] = {
		"{\"source\": [\"aws.kms\"], \"$or\": [{\"a\": [\"1\"]}, {\"b\": [\"2\"]}, "
		"{\"c\": {\"d\": [{\"prefix\": \"x\"}]}}]}",
		"{\"$or\": [{\"a\": [\"1\"]}, {\"b\": [\"3\"]}]}",
	};
	rs_setup(&rs, p, 2);
	ev_str(&rs, "source", "aws.kms");
	assert_string_equal(matches(&rs), "");
	ev_str(&rs, "b", "2");
	assert_string_equal(matches(&rs), "0");
	ev_str(&rs, "a", "1");
	ev_str(&rs, "c.d", "xyz");
	assert_string_equal(matches(&rs), "0 1"); /* rule 0 three ways, still once */
	ev_reset(&rs);
	ev_str(&rs, "c.d", "xy");
	assert_string_equal(matches(&rs), ""); /* source is missing */
	ev_str(&rs, "b", "3");
	assert_string_equal(matches(&rs), "1");
	rs_fini(&rs);
}

static void test_nested_or_multiplies_out(void **state)
{
	(void)state;
	struct rset rs;
	const char *p[] = {"{\"$or\": [{\"a\": [\"1\"]}, {\"a\": [\"2\"]}], "
			   "\"detail\": {\"$or\": [{\"x\": [\"y\"]}, {\"z\": [true]}]}}"};
	rs_setup(&rs, p, 1);
	ev_str(&rs, "a", "2");
	assert_string_equal(matches(&rs), "");
	ev(&rs, "detail.z", KR_V_TRUE, "");
	assert_string_equal(matches(&rs), "0");
	ev_reset(&rs);
	ev_str(&rs, "a", "1");
	ev_str(&rs, "detail.x", "y");
	assert_string_equal(matches(&rs), "0");
	ev_reset(&rs);
	ev_str(&rs, "a", "3");
	ev_str(&rs, "detail.x", "y");
	assert_string_equal(matches(&rs), "");
	rs_fini(&rs);
}

static void test_several_rules_report_ids_in_config_order(void **state)
{
	(void)state;
	struct rset rs;
	const char *p[] = {
		"{\"detail-type\": [\"KMS CMK Deletion\"]}",
		"{\"source\": [\"aws.ec2\"]}",
		"{\"source\": [\"aws.kms\"]}",
		"{\"source\": [{\"prefix\": \"aws.\"}], \"detail-type\": [{\"suffix\": \"Deletion\"}]}",
		"{\"detail-type\": [\"KMS CMK Rotation\"]}",
		"{\"account\": [{\"exists\": false}]}",
	};
	rs_setup(&rs, p, 6);
	ev_str(&rs, "source", "aws.kms");
	ev_str(&rs, "detail-type", "KMS CMK Deletion");
	ev_str(&rs, "account", "111122223333");
	assert_string_equal(matches(&rs), "0 2 3");
	ev_reset(&rs);
	ev_str(&rs, "source", "aws.ec2");
	assert_string_equal(matches(&rs), "1 5");
	rs_fini(&rs);
}

static void test_fields_inside_one_array_of_objects_must_match_one_element(void **state)
{
	(void)state;
	struct rset rs;
	const char *p[] = {"{\"r\": {\"a\": [\"1\"], \"b\": [\"2\"]}}"};
	rs_setup(&rs, p, 1);
	/* r = [{"a": "1", "b": "3"}, {"a": "4", "b": "2"}]: array 0, elements 0 and 1 */
	const uint32_t e0[] = {0, 0}, e1[] = {0, 1}, e2[] = {0, 2};
	ev_trail(&rs, "r.a", KR_V_STRING, "1", e0, 2);
	ev_trail(&rs, "r.b", KR_V_STRING, "3", e0, 2);
	ev_trail(&rs, "r.a", KR_V_STRING, "4", e1, 2);
	ev_trail(&rs, "r.b", KR_V_STRING, "2", e1, 2);
	assert_string_equal(matches(&rs), "");
	/* a third element {"a": "1", "b": "2"} */
	ev_trail(&rs, "r.a", KR_V_STRING, "1", e2, 2);
	ev_trail(&rs, "r.b", KR_V_STRING, "2", e2, 2);
	assert_string_equal(matches(&rs), "0");
	rs_fini(&rs);
}

/* Several rules and $or alternatives anchored on one value, in an event with arrays of objects:
 * each sub-rule is checked for one element on its own. */
static void test_element_consistency_holds_for_each_rule_and_or_alternative(void **state)
{
	(void)state;
	struct rset rs;
	const char *p[] = {
		"{\"r\": {\"a\": [\"1\"], \"b\": [\"9\"]}}",
		("{\"$or\": [{\"r\": {\"a\": [\"1\"], \"b\": [\"2\"]}},"
		 "            {\"r\": {\"a\": [\"1\"], \"b\": [\"3\"]}}]}"),
		"{\"r\": {\"a\": [\"1\"], \"b\": [\"4\"]}}",
	};
	rs_setup(&rs, p, 3);
	/* r = [{"a": "1", "b": "3"}, {"a": "5", "b": "4"}, {"a": "5", "b": "9"}] */
	const uint32_t e0[] = {0, 0}, e1[] = {0, 1}, e2[] = {0, 2};
	ev_trail(&rs, "r.a", KR_V_STRING, "1", e0, 2);
	ev_trail(&rs, "r.b", KR_V_STRING, "3", e0, 2);
	ev_trail(&rs, "r.a", KR_V_STRING, "5", e1, 2);
	ev_trail(&rs, "r.b", KR_V_STRING, "4", e1, 2);
	ev_trail(&rs, "r.a", KR_V_STRING, "5", e2, 2);
	ev_trail(&rs, "r.b", KR_V_STRING, "9", e2, 2);
	assert_string_equal(matches(&rs), "1");
	/* the same values without arrays of objects: every field stands on its own */
	ev_reset(&rs);
	ev_str(&rs, "r.a", "1");
	ev_str(&rs, "r.a", "5");
	ev_str(&rs, "r.b", "3");
	ev_str(&rs, "r.b", "4");
	ev_str(&rs, "r.b", "9");
	assert_string_equal(matches(&rs), "0 1 2");
	rs_fini(&rs);
}

static void test_match_state_is_reusable_and_shareable(void **state)
{
	(void)state;
	struct rset rs;
	const char *p[] = {"{\"f\": [\"a\"]}", "{\"f\": [\"b\"]}"};
	rs_setup(&rs, p, 2);
	struct kr_match_state *st2 = kr_match_state_new(rs.r);
	assert_non_null(st2);
	for (int i = 0; i < 3; i++) {
		ev_reset(&rs);
		ev_str(&rs, "f", "a");
		assert_string_equal(matches(&rs), "0");
		ev_reset(&rs);
		ev_str(&rs, "f", "b");
		assert_string_equal(matches(&rs), "1");
		const uint32_t *ids;
		assert_int_equal(kr_rules_match(rs.r, st2, &rs.v, &ids), 1);
		assert_int_equal(ids[0], 1);
	}
	kr_match_state_free(st2);
	rs_fini(&rs);
}

/* ---- errors ---- */

/* The pattern must fail with a message naming field (NULL: no field) and containing reason, and
 * *bad must be the node that starts at the first occurrence of bad_at in the pattern text. */
static void assert_pattern_error(const char *pattern, const char *field, const char *reason,
				 const char *bad_at)
{
	struct kr_rules *r;
	assert_int_equal(kr_rules_new(&r), KR_OK);
	struct kr_json *okj = parse_json("{\"ok\": [1]}");
	assert_int_equal(kr_rules_add(r, okj, NULL, NULL), KR_OK);
	struct kr_json *j = parse_json(pattern);
	const struct kr_json *bad = NULL;
	char err[KR_ERRBUF] = "";
	enum kr_err e = kr_rules_add(r, j, &bad, err);
	if (e != KR_ERR_PATTERN)
		fail_msg("%s: error %d, want KR_ERR_PATTERN (%s)", pattern, (int)e, err);
	if (!strstr(err, reason))
		fail_msg("%s: message '%s' lacks '%s'", pattern, err, reason);
	char at[300];
	if (field) {
		snprintf(at, sizeof at, "(at field \"%s\")", field);
		if (!strstr(err, at))
			fail_msg("%s: message '%s' lacks '%s'", pattern, err, at);
	}
	assert_non_null(bad);
	const char *want = strstr(pattern, bad_at);
	assert_non_null(want);
	if (bad->offset != (size_t)(want - pattern))
		fail_msg("%s: bad node at offset %zu, want %zu ('%s')", pattern, bad->offset,
			 (size_t)(want - pattern), bad_at);
	/* the rule set is unchanged: the next rule still gets id 1 */
	assert_int_equal(kr_rules_count(r), 1);
	kr_json_free(j);
	assert_int_equal(kr_rules_add(r, okj, NULL, NULL), KR_OK);
	assert_int_equal(kr_rules_count(r), 2);
	kr_json_free(okj);
	kr_rules_free(r);
}

static void test_invalid_patterns_name_the_field_and_the_offending_node(void **state)
{
	(void)state;
	assert_pattern_error("{\"detail\": {\"key-id\": [{\"prefix\": 5}]}}", "detail.key-id",
			     "prefix match pattern must be a string", "5}");
	assert_pattern_error("{\"detail\": {\"n\": [{\"numeric\": [\">\", \"x\"]}]}}", "detail.n",
			     "must be numeric", "\"x\"");
	assert_pattern_error("{\"detail\": {\"n\": [{\"numeric\": [\">\", 5, \"<\", 1]}]}}",
			     "detail.n", "Bottom must be less than top", "[\">\"");
	assert_pattern_error("{\"source\": \"aws.kms\"}", "source", "must be an object or an array",
			     "\"aws.kms\"");
	assert_pattern_error("{\"a\": {\"b\": []}}", "a.b", "Empty arrays are not allowed", "[]");
	assert_pattern_error("{\"a\": [{\"foo\": 1}]}", "a", "Unrecognized match type foo",
			     "{\"foo\"");
	assert_pattern_error("{\"a\": [{\"cidr\": \"10.0.0.0/33\"}]}", "a", "prefix length",
			     "\"10.0.0.0/33\"");
	assert_pattern_error("{\"a\": [{\"cidr\": \"10.0.0.0/32\"}]}", "a", "prefix length 0-31",
			     "\"10.0.0.0/32\"");
	assert_pattern_error("{\"a\": [{\"cidr\": \"::/128\"}]}", "a", "prefix length 0-127",
			     "\"::/128\"");
	assert_pattern_error("{\"a\": [{\"cidr\": \"::ffff:0:0/38\"}]}", "a", "IPv4 mask",
			     "\"::ffff:0:0/38\"");
	assert_pattern_error("{\"a\": [{\"cidr\": \"10.0.0.0//8\"}]}", "a", "one '/'",
			     "\"10.0.0.0//8\"");
	assert_pattern_error("{\"a\": [{\"cidr\": \"10.0.0.300/8\"}]}", "a", "IP address",
			     "\"10.0.0.300/8\"");
	assert_pattern_error("{\"a\": [{\"wildcard\": \"a**b\"}]}", "a", "Consecutive wildcard",
			     "\"a**b\"");
	assert_pattern_error("{\"a\": [{\"wildcard\": \"a\\\\xb\"}]}", "a", "Invalid escape",
			     "\"a\\\\xb\"");
	assert_pattern_error("{\"a\": [{\"exists\": \"yes\"}]}", "a", "exists", "\"yes\"");
	assert_pattern_error("{\"a\": [{\"anything-but\": [\"x\", 1]}]}", "a", "mixed types",
			     "1]");
	assert_pattern_error("{\"a\": [{\"numeric\": [\">\", 9007199254740993]}]}", "a",
			     "Cannot compare number 9007199254740993", "9007199254740993");
	assert_pattern_error("{\"a\": [{\"numeric\": [\"<\", 1.8e308]}]}", "a",
			     "Cannot compare number", "1.8e308");
	assert_pattern_error("{\"a\": [{\"anything-but\": [0.10000000000000001]}]}", "a",
			     "Cannot compare number", "0.10000000000000001");
	assert_pattern_error("{\"a\": [{\"anything-but\": 5e-324}]}", "a", "Cannot compare number",
			     "5e-324");
	assert_pattern_error("{\"a\": [{\"prefix\": \"x\", \"suffix\": \"y\"}]}", "a",
			     "Only one key", "{\"prefix\"");
	assert_pattern_error("{\"a\": [[\"x\"]]}", "a", "Match value must be", "[\"x\"]]");
	assert_pattern_error("{\"x\": {}}", "x", "Empty objects", "{}");
	assert_pattern_error("{\"b\": [1], \"$or\": [{\"a\": [1]}]}", NULL, "$or must be", "[{");
	assert_pattern_error("{\"$or\": [{\"a\": [1]}, {\"c\": {\"d\": [{\"suffix\": []}]}}]}",
			     "c.d", "suffix match pattern must be a string", "[]");
	assert_pattern_error("[1]", NULL, "must be a JSON object", "[1]");
	/* a one-bound range at the end of the doubles, where the field survives the $or expansion */
	assert_pattern_error("{\"a\": [{\"numeric\": [\">\", 1.7976931348623157e308]}]}", "a",
			     "must start below the largest number", "1.7976931348623157e308");
	assert_pattern_error("{\"x\": [1], \"b\": {\"c\": [{\"numeric\": [\"<=\", -1.7976931348623157e308]}]}}",
			     "b.c", "must end above the lowest number", "-1.7976931348623157e308");
	assert_pattern_error("{\"$or\": [{\"a\": [{\"numeric\": [\">=\", 5]}]}, "
			     "{\"b\": [{\"numeric\": [\">=\", 1.7976931348623157e308]}]}]}",
			     "b", "Cannot compare number 1.7976931348623157e308", "1.7976931348623157e308");
}

static void test_add_after_build_is_refused(void **state)
{
	(void)state;
	struct rset rs;
	const char *p[] = {"{\"f\": [\"a\"]}"};
	rs_setup(&rs, p, 1);
	struct kr_json *j = parse_json("{\"g\": [\"b\"]}");
	char err[KR_ERRBUF];
	assert_int_not_equal(kr_rules_add(rs.r, j, NULL, err), KR_OK);
	assert_int_equal(kr_rules_count(rs.r), 1);
	kr_json_free(j);
	rs_fini(&rs);
}

/* ---- scale ---- */

static void test_ten_thousand_rules_wake_only_the_one_for_the_key(void **state)
{
	(void)state;
	struct rset rs;
	rs_init(&rs);
	char pat[200];
	for (int i = 0; i < 10000; i++) {
		snprintf(pat, sizeof pat,
			 "{\"detail-type\": [\"KMS Key X\"], \"detail\": {\"key-id\": [\"K_%d\"]}}", i);
		assert_int_equal(rs_add(&rs, pat), (uint32_t)i);
	}
	rs_build(&rs);
	assert_int_equal(kr_rules_count(rs.r), 10000);
	ev_str(&rs, "detail-type", "KMS Key X");
	ev_str(&rs, "detail.key-id", "K_5");
	assert_string_equal(matches(&rs), "5");
	ev_reset(&rs);
	ev_str(&rs, "detail-type", "KMS Key X");
	ev_str(&rs, "detail.key-id", "K_9999");
	ev_str(&rs, "detail.key-id", "K_0");
	assert_string_equal(matches(&rs), "0 9999");
	ev_reset(&rs);
	ev_str(&rs, "detail-type", "KMS Key Y");
	ev_str(&rs, "detail.key-id", "K_5");
	assert_string_equal(matches(&rs), "");
	rs_fini(&rs);
}

/* Sub-rules whose other conditions are exact values are verified from the index record itself:
 * alternatives (OR), several conditions (AND), array values, strict types, a missing field, and a
 * rule whose condition two values satisfy reported once. */
static void test_exact_value_checks_in_the_index_keep_the_semantics(void **state)
{
	(void)state;
	struct rset rs;
	const char *p[] = {
		"{\"k\": [\"K1\", \"K2\"], \"t\": [\"A\", \"B\"], \"n\": [5]}",
		"{\"k\": [\"K1\"], \"t\": [\"C\"]}",
		"{\"k\": [\"K1\"], \"n\": [\"5\"]}",
		"{\"k\": [\"K1\"], \"b\": [true], \"z\": [null]}",
	};
	rs_setup(&rs, p, 4);
	ev_str(&rs, "k", "K1");
	ev_str(&rs, "t", "B");
	ev(&rs, "n", KR_V_NUMBER, "5");
	assert_string_equal(matches(&rs), "0");
	/* K1 and K2 both satisfy rule 0's first condition: reported once */
	ev_str(&rs, "k", "K2");
	assert_string_equal(matches(&rs), "0");
	ev_reset(&rs);
	ev_str(&rs, "k", "K1");
	ev_str(&rs, "t", "X");
	ev_str(&rs, "t", "C"); /* an array: any element */
	ev(&rs, "n", KR_V_STRING, "5");
	assert_string_equal(matches(&rs), "1 2");
	ev_reset(&rs);
	ev_str(&rs, "k", "K1");
	ev_str(&rs, "t", "A"); /* n missing: rule 0 needs it */
	ev(&rs, "b", KR_V_TRUE, "");
	ev(&rs, "z", KR_V_NULL, "");
	assert_string_equal(matches(&rs), "3");
	ev_reset(&rs);
	ev_str(&rs, "k", "K1");
	ev(&rs, "b", KR_V_STRING, "true");
	ev(&rs, "z", KR_V_NULL, "");
	assert_string_equal(matches(&rs), "");
	rs_fini(&rs);
}

/* Keys too big for an index bucket (a long value; one value that many rules name) match as the
 * small ones do. */
static void test_long_keys_and_keys_of_many_rules_match(void **state)
{
	(void)state;
	struct rset rs;
	rs_init(&rs);
	char longv[200], pat[400];
	memset(longv, 'k', sizeof longv - 1);
	longv[sizeof longv - 1] = 0;
	snprintf(pat, sizeof pat, "{\"a\": [\"%s\"], \"t\": [\"T\"]}", longv);
	assert_int_equal(rs_add(&rs, pat), 0);
	for (int i = 1; i <= 30; i++) {
		/* b costs 30 as an anchor, c 31 ("C" in every rule): all are anchored on "shared" */
		snprintf(pat, sizeof pat, "{\"b\": [\"shared\"], \"c\": [\"C\", \"v%d\"]}", i);
		assert_int_equal(rs_add(&rs, pat), (uint32_t)i);
	}
	rs_build(&rs);
	ev_str(&rs, "a", longv);
	ev_str(&rs, "t", "T");
	assert_string_equal(matches(&rs), "0");
	ev_reset(&rs);
	ev_str(&rs, "b", "shared");
	ev_str(&rs, "c", "v7");
	ev_str(&rs, "c", "v30");
	assert_string_equal(matches(&rs), "7 30");
	ev_reset(&rs);
	ev_str(&rs, "b", "shared");
	ev_str(&rs, "c", "C");
	assert_string_equal(matches(&rs), "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 "
					  "24 25 26 27 28 29 30");
	ev_reset(&rs);
	ev_str(&rs, "b", "shared");
	ev_str(&rs, "c", "x");
	assert_string_equal(matches(&rs), "");
	rs_fini(&rs);
}

/* ---- randomized cross-check against a reference evaluator ---- */

enum { RPATHS = 3, MAXM = 3, NRULES = 150, NEVENTS = 3000 };
static const char *const rpaths[RPATHS] = {"a", "b", "c.d"};

struct rmatcher {
	int kind; /* 0 exact, 1 prefix, 2 suffix */
	char text[8];
};

struct rrule {
	bool has[RPATHS];
	struct rmatcher m[RPATHS][MAXM];
	int nm[RPATHS];
};

static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state % n);
}

/* short strings over a small alphabet, so that values and matchers collide often */
static void rnd_str(char *out, size_t minlen)
{
	size_t n = minlen + rnd(4 - (uint32_t)minlen);
	for (size_t i = 0; i < n; i++)
		out[i] = "xyz"[rnd(3)];
	out[n] = 0;
}

static bool ref_matcher(const struct rmatcher *m, const char *v)
{
	size_t n = strlen(v), l = strlen(m->text);
	switch (m->kind) {
	case 0: return strcmp(v, m->text) == 0;
	case 1: return n >= l && memcmp(v, m->text, l) == 0;
	default: return n >= l && memcmp(v + n - l, m->text, l) == 0;
	}
}

static bool ref_rule(const struct rrule *r, const char *const *vals)
{
	for (int p = 0; p < RPATHS; p++) {
		if (!r->has[p])
			continue;
		if (!vals[p])
			return false;
		bool any = false;
		for (int k = 0; k < r->nm[p] && !any; k++)
			any = ref_matcher(&r->m[p][k], vals[p]);
		if (!any)
			return false;
	}
	return true;
}

static void rule_json(const struct rrule *r, char *out, size_t cap)
{
	size_t o = 0;
	bool first = true;
	o += (size_t)snprintf(out + o, cap - o, "{");
	for (int p = 0; p < RPATHS; p++) {
		if (!r->has[p])
			continue;
		bool nested = strchr(rpaths[p], '.') != NULL;
		o += (size_t)snprintf(out + o, cap - o, "%s%s[", first ? "" : ", ",
				      nested ? "\"c\": {\"d\": " : (p == 0 ? "\"a\": " : "\"b\": "));
		first = false;
		for (int k = 0; k < r->nm[p]; k++) {
			const struct rmatcher *m = &r->m[p][k];
			const char *sep = k ? ", " : "";
			if (m->kind == 0)
				o += (size_t)snprintf(out + o, cap - o, "%s\"%s\"", sep, m->text);
			else
				o += (size_t)snprintf(out + o, cap - o, "%s{\"%s\": \"%s\"}", sep,
						      m->kind == 1 ? "prefix" : "suffix", m->text);
		}
		o += (size_t)snprintf(out + o, cap - o, "]%s", nested ? "}" : "");
	}
	snprintf(out + o, cap - o, "}");
}

static void test_random_patterns_agree_with_a_reference_evaluator(void **state)
{
	(void)state;
	static struct rrule rules[NRULES];
	rng_state = 0x9E3779B97F4A7C15ULL;
	struct rset rs;
	rs_init(&rs);
	char pat[512];
	for (int i = 0; i < NRULES; i++) {
		struct rrule *r = &rules[i];
		memset(r, 0, sizeof *r);
		int nfields = 0;
		while (nfields == 0)
			for (int p = 0; p < RPATHS; p++)
				if ((r->has[p] = rnd(2) == 0))
					nfields++;
		for (int p = 0; p < RPATHS; p++) {
			if (!r->has[p])
				continue;
			r->nm[p] = 1 + (int)rnd(MAXM);
			for (int k = 0; k < r->nm[p]; k++) {
				r->m[p][k].kind = (int)rnd(3);
				/* exact may be empty; prefix/suffix at least one character */
				rnd_str(r->m[p][k].text, r->m[p][k].kind ? 1 : 0);
			}
		}
		rule_json(r, pat, sizeof pat);
		assert_int_equal(rs_add(&rs, pat), (uint32_t)i);
	}
	rs_build(&rs);
	size_t total_hits = 0;
	for (int e = 0; e < NEVENTS; e++) {
		char vbuf[RPATHS][8];
		const char *vals[RPATHS];
		ev_reset(&rs);
		for (int p = 0; p < RPATHS; p++) {
			vals[p] = NULL;
			if (rnd(10) < 7) {
				rnd_str(vbuf[p], 0);
				vals[p] = vbuf[p];
				ev_str(&rs, rpaths[p], vals[p]);
			}
		}
		char want[4096];
		size_t o = 0;
		want[0] = 0;
		for (int i = 0; i < NRULES; i++)
			if (ref_rule(&rules[i], vals)) {
				o += (size_t)snprintf(want + o, sizeof want - o, "%s%d", o ? " " : "", i);
				total_hits++;
			}
		const char *got = matches(&rs);
		if (strcmp(got, want) != 0)
			fail_msg("event %d {a:%s, b:%s, c.d:%s}: got [%s], reference [%s]", e,
				 vals[0] ? vals[0] : "-", vals[1] ? vals[1] : "-",
				 vals[2] ? vals[2] : "-", got, want);
	}
	/* the generator must produce matches, or the comparison proves little */
	assert_true(total_hits > NEVENTS);
	rs_fini(&rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_string_matches_only_the_same_string),
		cmocka_unit_test(test_exact_number_matches_every_spelling_of_its_value),
		cmocka_unit_test(test_exact_number_not_representable_matches_by_text_only),
		cmocka_unit_test(test_exact_true_false_and_null_match_only_their_type),
		cmocka_unit_test(test_pattern_array_is_an_or_and_event_array_matches_on_any_element),
		cmocka_unit_test(test_nested_fields_are_matched_by_their_full_path),
		cmocka_unit_test(test_prefix_and_suffix_match_strings_only),
		cmocka_unit_test(test_equals_ignore_case_folds_ascii_and_latin1),
		cmocka_unit_test(test_equals_ignore_case_folds_one_way_as_event_ruler),
		cmocka_unit_test(test_ignore_case_prefix_and_suffix),
		cmocka_unit_test(test_exact_and_ignore_case_rules_on_one_literal_stay_independent),
		cmocka_unit_test(test_wildcard_matches_stars_anywhere),
		cmocka_unit_test(test_wildcard_escapes_make_star_and_backslash_literal),
		cmocka_unit_test(test_anything_but_single_value_and_list),
		cmocka_unit_test(test_anything_but_number_excludes_every_spelling_of_its_value),
		cmocka_unit_test(test_anything_but_with_string_operators),
		cmocka_unit_test(test_anything_but_needs_a_value),
		cmocka_unit_test(test_numeric_ranges_compare_by_value),
		cmocka_unit_test(test_numeric_never_matches_a_number_it_cannot_represent),
		cmocka_unit_test(test_exists_true_needs_a_value_and_false_its_absence),
		cmocka_unit_test(test_cidr_v4_matches_addresses_in_the_network),
		cmocka_unit_test(test_cidr_and_ip_edge_cases_follow_event_ruler),
		cmocka_unit_test(test_cidr_v6_matches_addresses_in_the_network),
		cmocka_unit_test(test_fields_are_anded),
		cmocka_unit_test(test_or_alternatives_match_each_and_report_the_rule_once),
		cmocka_unit_test(test_or_branch_field_replaces_the_outer_one),
		cmocka_unit_test(test_or_that_event_ruler_cannot_read_as_or_is_a_field),
		cmocka_unit_test(test_nested_or_multiplies_out),
		cmocka_unit_test(test_several_rules_report_ids_in_config_order),
		cmocka_unit_test(test_fields_inside_one_array_of_objects_must_match_one_element),
		cmocka_unit_test(test_element_consistency_holds_for_each_rule_and_or_alternative),
		cmocka_unit_test(test_match_state_is_reusable_and_shareable),
		cmocka_unit_test(test_invalid_patterns_name_the_field_and_the_offending_node),
		cmocka_unit_test(test_add_after_build_is_refused),
		cmocka_unit_test(test_ten_thousand_rules_wake_only_the_one_for_the_key),
		cmocka_unit_test(test_exact_value_checks_in_the_index_keep_the_semantics),
		cmocka_unit_test(test_long_keys_and_keys_of_many_rules_match),
		cmocka_unit_test(test_random_patterns_agree_with_a_reference_evaluator),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
