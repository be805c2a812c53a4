/* Every option kmsrouter accepts is documented: `kmsrouter help config`, and kmsrouter.conf(5)
 * generated from it (scripts/gen-man.py), print each option's name, type, default and help from
 * the option tables, so an option without help text or without a usable type would be a hole in
 * the manual. Walks every table: the top level, rules, targets, every source and every sink,
 * each source and sink type of the registry (router/config/registry.c), and the tables nested in
 * them, and checks each option: a name, a help line, a type the reference can describe (with the
 * values, schemes or nested table that type needs), names unique within their table. Every plugin
 * and every section of the reference also has its reference text (doc: how it behaves), which
 * help config and the manual print after the options: paragraphs of plain text, and for a
 * plugin that calls AWS its IAM permissions. The checkers themselves are shown to fail on a
 * table and on texts with such holes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "aws.h"
#include "config.h"
#include "options.h"
#include "plugin.h"

/* Whether s has a character other than a blank. */
static bool has_text(const char *s)
{
	for (; s && *s; s++)
		if (*s != ' ' && *s != '\t' && *s != '\n')
			return true;
	return false;
}

/* Checks table (whose options are written where.NAME in messages); prints each problem and
 * returns how many there are. */
static int check_table(const char *where, const struct kr_option *table, int depth)
{
	int bad = 0;
	if (!table) {
		printf("%s: no option table\n", where);
		return 1;
	}
	for (const struct kr_option *o = table; o->name; o++) {
		char path[256];
		snprintf(path, sizeof path, "%s.%s", where, o->name);
		if (!has_text(o->name)) {
			printf("%s: an option with an empty name\n", where);
			bad++;
		}
		if (!has_text(o->help)) {
			printf("%s: no help text\n", path);
			bad++;
		} else if (strchr(o->help, '\n')) {
			printf("%s: the help text is not one line\n", path);
			bad++;
		}
		for (const struct kr_option *p = table; p < o; p++)
			if (strcmp(p->name, o->name) == 0) {
				printf("%s: listed twice\n", path);
				bad++;
			}
		switch (o->type) {
		case KR_OPT_STRING:
		case KR_OPT_BOOL:
		case KR_OPT_INT:
		case KR_OPT_DURATION:
		case KR_OPT_SIZE:
		case KR_OPT_PATH:
		case KR_OPT_STRINGS:
		case KR_OPT_PATHS:
		case KR_OPT_MAP:
		case KR_OPT_SECRET_ENV:
		case KR_OPT_SINK:
			break;
		case KR_OPT_ENUM:
		case KR_OPT_URL:
			if (!o->values || !o->values[0]) {
				printf("%s: %s without the values it allows\n", path,
				       o->type == KR_OPT_ENUM ? "an enum" : "a URL");
				bad++;
			}
			break;
		case KR_OPT_DOC:
			if (!o->values || !has_text(o->values[0])) {
				printf("%s: a documented value without its description\n", path);
				bad++;
			}
			break;
		case KR_OPT_TABLE:
			if (!o->table || !o->table->name) {
				printf("%s: an object without its options\n", path);
				bad++;
			} else if (depth > 8) {
				printf("%s: nested more than 8 deep\n", path);
				bad++;
			} else {
				bad += check_table(path, o->table, depth + 1);
			}
			break;
		default:
			printf("%s: no valid type (%d)\n", path, (int)o->type);
			bad++;
			continue; /* nothing more to ask of it */
		}
		/* the reference describes every option; a type it cannot describe shows here */
		char what[400] = "";
		kr_opts_describe(o, what, sizeof what);
		if (!has_text(what)) {
			printf("%s: the reference has no description of its type\n", path);
			bad++;
		}
	}
	return bad;
}

/* Checks a reference text (where names it in messages): paragraphs of plain text separated by
 * one blank line, nothing before the first or after the last; returns how many problems. */
static int check_doc(const char *where, const char *doc)
{
	if (!has_text(doc)) {
		printf("%s: no reference text (doc)\n", where);
		return 1;
	}
	int bad = 0;
	size_t n = strlen(doc);
	if (doc[0] == ' ' || doc[0] == '\n' || doc[n - 1] == ' ' || doc[n - 1] == '\n') {
		printf("%s: the reference text starts or ends with white space\n", where);
		bad++;
	}
	if (strchr(doc, '\t')) {
		printf("%s: a tab in the reference text\n", where);
		bad++;
	}
	for (const char *p = strchr(doc, '\n'); p; p = strchr(p + 2, '\n'))
		if (p[1] != '\n' || p[2] == '\n' || p[2] == ' ') {
			printf("%s: paragraphs must be separated by exactly one blank line "
			       "(\"\\n\\n\"), with no line breaks inside\n", where);
			bad++;
			break;
		}
	return bad;
}

/* A plugin's reference text, with its IAM permissions when it calls AWS. */
static int check_plugin_doc(const char *where, const char *doc, const struct kr_option *options)
{
	int bad = check_doc(where, doc);
	if (has_text(doc) && kr_aws_options_in(options) && !strstr(doc, "IAM")) {
		printf("%s: calls AWS, and its reference text does not give its IAM permissions\n",
		       where);
		bad++;
	}
	return bad;
}

static void test_the_top_level_rules_and_targets_are_documented(void **state)
{
	(void)state;
	assert_int_equal(check_table("$", kr_config_options, 0), 0);
	assert_int_equal(check_table("$.rules[]", kr_rule_options, 0), 0);
	assert_int_equal(check_table("$.rules[].targets[]", kr_target_options, 0), 0);
	assert_int_equal(check_table("$.sources[]", kr_source_common_options, 0), 0);
	assert_int_equal(check_table("$.sinks[]", kr_sink_common_options, 0), 0);
	assert_int_equal(check_table("the AWS options", kr_aws_options, 0), 0);
	assert_int_equal(check_doc("top level", kr_config_doc), 0);
	assert_int_equal(check_doc("rules", kr_rule_doc), 0);
	assert_int_equal(check_doc("targets", kr_target_doc), 0);
	assert_int_equal(check_doc("every source", kr_source_common_doc), 0);
	assert_int_equal(check_doc("every sink", kr_sink_common_doc), 0);
	assert_int_equal(check_doc("the AWS options", kr_aws_doc), 0);
}

static void test_every_source_type_is_documented(void **state)
{
	(void)state;
	int n = 0;
	for (const struct kr_source_entry *e = kr_source_registry; e->type; e++) {
		if (!e->plugin)
			continue; /* recognised, not in this build: it has no options to document */
		char where[128];
		snprintf(where, sizeof where, "source type %s", e->type);
		if (!has_text(e->plugin->description))
			printf("%s: no description\n", where);
		assert_true(has_text(e->plugin->description));
		/* a plugin may have no options of its own (help config says so) */
		if (e->plugin->options)
			assert_int_equal(check_table(where, e->plugin->options, 0), 0);
		assert_int_equal(check_plugin_doc(where, e->plugin->doc, e->plugin->options), 0);
		n++;
	}
	assert_true(n >= 1); /* the file source at least */
}

static void test_every_sink_type_is_documented(void **state)
{
	(void)state;
	int n = 0;
	for (const struct kr_sink_entry *e = kr_sink_registry; e->type; e++) {
		if (!e->plugin)
			continue;
		char where[128];
		snprintf(where, sizeof where, "sink type %s", e->type);
		if (!has_text(e->plugin->description))
			printf("%s: no description\n", where);
		assert_true(has_text(e->plugin->description));
		if (e->plugin->options)
			assert_int_equal(check_table(where, e->plugin->options, 0), 0);
		assert_int_equal(check_plugin_doc(where, e->plugin->doc, e->plugin->options), 0);
		n++;
	}
	assert_true(n >= 1); /* the log sink at least */
}

/* The checker finds each kind of hole, so the tests above can fail. */
static const char *const no_values[] = {NULL};
static const struct kr_option bad_nested[] = {
	{.name = "inner", .type = KR_OPT_INT},
	{0},
};
static const struct kr_option bad_options[] = {
	{.name = "no_help", .type = KR_OPT_STRING},
	{.name = "blank_help", .type = KR_OPT_BOOL, .help = "  "},
	{.name = "two_lines", .type = KR_OPT_BOOL, .help = "one\ntwo"},
	/* one past the last type: a value the enum's range holds, so sanitizers accept it */
	{.name = "no_type", .type = (enum kr_opt_type)(KR_OPT_DOC + 1), .help = "h"},
	{.name = "enum", .type = KR_OPT_ENUM, .values = no_values, .help = "h"},
	{.name = "object", .type = KR_OPT_TABLE, .help = "h"},
	{.name = "nested", .type = KR_OPT_TABLE, .table = bad_nested, .help = "h"},
	{.name = "enum", .type = KR_OPT_STRING, .help = "twice"},
	{.name = "fine", .type = KR_OPT_STRING, .help = "documented"},
	{0},
};

static void test_the_checker_finds_each_hole(void **state)
{
	(void)state;
	/* no_help, blank_help, two_lines, no_type, enum (no values), object (no table),
	   nested.inner (no help), enum listed twice */
	assert_int_equal(check_table("test", bad_options, 0), 8);
	assert_int_equal(check_table("test", &bad_options[8], 0), 0);
}

/* The reference texts' checker finds each kind of hole. */
struct aws_test_conf {
	struct kr_aws_conf aws;
};
static const struct kr_option aws_table[] = {
	KR_AWS_OPTIONS(struct aws_test_conf, aws),
	{0},
};

static void test_the_doc_checker_finds_each_hole(void **state)
{
	(void)state;
	assert_int_equal(check_doc("none", NULL), 1);
	assert_int_equal(check_doc("blank", " \n "), 1);
	assert_int_equal(check_doc("leading blank", " Text."), 1);
	assert_int_equal(check_doc("trailing blank", "Text.\n\n"), 1);
	assert_int_equal(check_doc("a line break", "One line\nthen another."), 1);
	assert_int_equal(check_doc("two blank lines", "One.\n\n\nTwo."), 1);
	assert_int_equal(check_doc("a tab", "One\ttwo."), 1);
	assert_int_equal(check_doc("fine", "One paragraph.\n\nAnother one."), 0);
	/* a plugin with the AWS options must give its IAM permissions */
	assert_int_equal(check_plugin_doc("aws", "Sends events.", aws_table), 1);
	assert_int_equal(check_plugin_doc("aws", "Sends events.\n\nIAM: x:Y.", aws_table), 0);
	assert_int_equal(check_plugin_doc("plain", "Sends events.", bad_options), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_the_top_level_rules_and_targets_are_documented),
		cmocka_unit_test(test_every_source_type_is_documented),
		cmocka_unit_test(test_every_sink_type_is_documented),
		cmocka_unit_test(test_the_checker_finds_each_hole),
		cmocka_unit_test(test_the_doc_checker_finds_each_hole),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
