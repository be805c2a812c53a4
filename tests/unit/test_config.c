/* Unit tests for router/config.h: kr_config_parse loads valid configurations and reports every
 * error as "NAME:LINE:COL: $.path: message". */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "json.h"
#include "plugin.h"
#include "rules.h"
#include "view.h"

/* Offset of the nth (0-based) occurrence of needle in text. */
static size_t nth_offset(const char *text, const char *needle, int nth)
{
	const char *p = text;
	for (int i = 0;; i++) {
		p = strstr(p, needle);
		assert_non_null(p);
		if (i == nth)
			return (size_t)(p - text);
		p++;
	}
}

static void line_col(const char *text, size_t off, size_t *line, size_t *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off; i++) {
		if (text[i] == '\n') {
			(*line)++;
			*col = 1;
		} else {
			(*col)++;
		}
	}
}

static struct kr_config *load_ok(const char *text)
{
	struct kr_config *c = NULL;
	char err[KR_ERRBUF] = "";
	enum kr_err e = kr_config_parse("cfg.json", text, strlen(text), &c, err);
	if (e != KR_OK)
		fail_msg("config rejected (%d): %s", (int)e, err);
	assert_non_null(c);
	return c;
}

/* The config must fail with "cfg.json:LINE:COL: JPATH: ..." where LINE:COL is the position of the
 * nth occurrence of at_needle, and the message must contain msg. */
static void assert_config_error(const char *text, const char *at_needle, int nth,
				const char *jpath, const char *msg)
{
	struct kr_config *c = (struct kr_config *)1;
	char err[KR_ERRBUF] = "";
	enum kr_err e = kr_config_parse("cfg.json", text, strlen(text), &c, err);
	if (e != KR_ERR_CONFIG)
		fail_msg("error %d, want KR_ERR_CONFIG (%s)", (int)e, err);
	assert_null(c);
	size_t line, col;
	line_col(text, nth_offset(text, at_needle, nth), &line, &col);
	char prefix[300];
	snprintf(prefix, sizeof prefix, "cfg.json:%zu:%zu: %s: ", line, col, jpath);
	if (strncmp(err, prefix, strlen(prefix)) != 0)
		fail_msg("message '%s' does not start with '%s'", err, prefix);
	if (!strstr(err + strlen(prefix), msg))
		fail_msg("message '%s' lacks '%s'", err, msg);
}

/* ---- valid configurations ---- */

static const char valid_config[] =
	"// kmsrouter configuration\n"
	"{\n"
	"  /* where events go */\n"
	"  \"sinks\": [\n"
	"    {\"name\": \"page\", \"type\": \"log\", \"path\": \"-\"},\n"
	"    {\"name\": \"audit\", \"type\": \"log\"} // path defaults to stdout\n"
	"  ],\n"
	"  \"rules\": [\n"
	"    {\n"
	"      \"name\": \"key-deleted\",\n"
	"      \"description\": \"page someone when a KMS key is deleted\",\n"
	"      \"pattern\": {\"source\": [\"aws.kms\"], \"detail-type\": [\"KMS CMK Deletion\"]},\n"
	"      \"targets\": [\"audit\", \"page\", \"audit\"]\n"
	"    },\n"
	"    {\n"
	"      \"name\": \"either\",\n"
	"      \"pattern\": {\"$or\": [{\"detail\": {\"key-id\": [\"k1\"]}}, {\"source\": [\"aws.ec2\"]}]},\n"
	"      \"targets\": [\"page\"]\n"
	"    }\n"
	"  ]\n"
	"}\n";

static void test_valid_config_loads_rules_and_sinks(void **state)
{
	(void)state;
	struct kr_config *c = load_ok(valid_config);
	assert_string_equal(c->path, "cfg.json");
	assert_int_equal(c->nsinks, 2);
	assert_string_equal(c->sinks[0].name, "page");
	assert_string_equal(c->sinks[0].type, "log");
	assert_non_null(c->sinks[0].plugin);
	assert_string_equal(c->sinks[1].name, "audit");
	assert_int_equal(c->nsources, 0);
	assert_int_equal(c->nrules, 2);
	assert_string_equal(c->rules[0].name, "key-deleted");
	assert_string_equal(c->rules[1].name, "either");
	assert_int_equal(kr_rules_count(c->compiled), 2);
	char err[KR_ERRBUF];
	assert_int_equal(kr_config_unavailable(c, err), 0);
	assert_string_equal(err, "");
	kr_config_free(c);
}

static void test_targets_are_sink_indexes_in_order_without_repeats(void **state)
{
	(void)state;
	struct kr_config *c = load_ok(valid_config);
	assert_int_equal(c->rules[0].ntargets, 2);
	assert_int_equal(c->rules[0].targets[0], 1); /* audit */
	assert_int_equal(c->rules[0].targets[1], 0); /* page */
	assert_int_equal(c->rules[1].ntargets, 1);
	assert_int_equal(c->rules[1].targets[0], 0);
	kr_config_free(c);
}

static int32_t slot(const struct kr_paths *p, const char *a, const char *b)
{
	const struct kr_path_node *n = kr_path_child(p->root, a, strlen(a));
	if (b)
		n = kr_path_child(n, b, strlen(b));
	return kr_path_slot(n);
}

static void test_compiled_rule_ids_follow_the_config_order(void **state)
{
	(void)state;
	struct kr_config *c = load_ok(valid_config);
	const struct kr_paths *p = kr_rules_paths(c->compiled);
	struct kr_view v;
	assert_int_equal(kr_view_init(&v, p), KR_OK);
	struct kr_match_state *st = kr_match_state_new(c->compiled);
	assert_non_null(st);
	const uint32_t *ids;
	assert_int_equal(kr_view_add(&v, (uint32_t)slot(p, "source", NULL), KR_V_STRING, "aws.kms", 7,
				     NULL, 0),
			 KR_OK);
	assert_int_equal(kr_view_add(&v, (uint32_t)slot(p, "detail-type", NULL), KR_V_STRING,
				     "KMS CMK Deletion", 16, NULL, 0),
			 KR_OK);
	assert_int_equal(kr_rules_match(c->compiled, st, &v, &ids), 1);
	assert_int_equal(ids[0], 0);
	kr_view_reset(&v);
	assert_int_equal(kr_view_add(&v, (uint32_t)slot(p, "detail", "key-id"), KR_V_STRING, "k1", 2,
				     NULL, 0),
			 KR_OK);
	assert_int_equal(kr_rules_match(c->compiled, st, &v, &ids), 1);
	assert_int_equal(ids[0], 1);
	kr_match_state_free(st);
	kr_view_fini(&v);
	kr_config_free(c);
}

/* Rules are compiled while the file is parsed; what needs the whole document (rules before
 * sinks, a target object, an error anywhere) loads as before. */
static void test_rules_load_the_same_before_sinks_and_with_target_objects(void **state)
{
	(void)state;
	static const char *const texts[] = {
		"{\"rules\": [{\"name\": \"r0\", \"pattern\": {\"a\": [1]}, \"targets\": [\"b\", \"a\"]},\n"
		"            {\"name\": \"r1\", \"pattern\": {\"b\": [2]}, \"targets\": [\"a\"]}],\n"
		" \"sinks\": [{\"name\": \"a\", \"type\": \"log\"}, {\"name\": \"b\", \"type\": \"log\"}]}",
		"{\"sinks\": [{\"name\": \"a\", \"type\": \"log\"}, {\"name\": \"b\", \"type\": \"log\"}],\n"
		" \"rules\": [{\"name\": \"r0\", \"pattern\": {\"a\": [1]}, \"targets\": [\"b\", \"a\"]},\n"
		"            {\"name\": \"r1\", \"pattern\": {\"b\": [2]},\n"
		"             \"targets\": [{\"sink\": \"a\", \"retry\": {\"max_attempts\": 2}}]}]}",
	};
	for (size_t t = 0; t < 2; t++) {
		struct kr_config *c = load_ok(texts[t]);
		assert_int_equal(c->nrules, 2);
		assert_string_equal(c->rules[0].name, "r0");
		assert_string_equal(c->rules[1].name, "r1");
		assert_int_equal(c->rules[0].ntargets, 2);
		assert_int_equal(c->rules[0].targets[0], 1);
		assert_int_equal(c->rules[0].targets[1], 0);
		assert_int_equal(c->rules[1].ntargets, 1);
		assert_int_equal(c->rules[1].targets[0], 0);
		assert_int_equal(kr_rules_count(c->compiled), 2);
		if (t == 1)
			assert_int_equal(c->rules[1].tcfg[0].retry.max_attempts, 2);
		kr_config_free(c);
	}
}

/* The first error in the file's order is the one reported, whichever rule the parse met first. */
static void test_errors_keep_their_order_when_rules_are_compiled_during_the_parse(void **state)
{
	(void)state;
	/* a target naming no sink in rule 0 comes before rule 1's bad pattern */
	assert_config_error("{\"sinks\": [{\"name\": \"s\", \"type\": \"log\"}],\n"
			    " \"rules\": [{\"name\": \"r0\", \"pattern\": {\"a\": [1]}, \"targets\": [\"t\"]},\n"
			    "            {\"name\": \"r1\", \"pattern\": {\"a\": [{\"prefix\": 1}]},\n"
			    "             \"targets\": [\"s\"]}]}",
			    "\"t\"", 0, "$.rules[0].targets[0]", "no sink is named \"t\"");
	/* a bad pattern, then malformed JSON further on: the JSON error */
	assert_config_error("{\"sinks\": [{\"name\": \"s\", \"type\": \"log\"}],\n"
			    " \"rules\": [{\"name\": \"r0\", \"pattern\": {\"a\": 1}, \"targets\": [\"s\"]}],\n"
			    " \"log\": {\"level\": \"info\",}}",
			    "}", 4, "$", "parse error");
	/* good rules (compiled already), then malformed JSON: the JSON error, and nothing kept */
	assert_config_error("{\"sinks\": [{\"name\": \"s\", \"type\": \"log\"}],\n"
			    " \"rules\": [{\"name\": \"r0\", \"pattern\": {\"a\": [1]}, \"targets\": [\"s\"]}],\n"
			    " \"log\": {,}}",
			    "}}", 0, "$", "parse error");
	/* good rules, then an unknown top-level key: the key */
	assert_config_error("{\"rules\": [{\"name\": \"r0\", \"pattern\": {\"a\": [1]}, \"targets\": [\"s\"]}],\n"
			    " \"sinks\": [{\"name\": \"s\", \"type\": \"log\"}],\n"
			    " \"sink\": []}",
			    "\"sink\"", 0, "$", "unknown key \"sink\"");
}

static void test_empty_object_is_a_valid_config(void **state)
{
	(void)state;
	struct kr_config *c = load_ok("{}");
	assert_int_equal(c->nrules, 0);
	assert_int_equal(c->nsinks, 0);
	assert_int_equal(kr_rules_count(c->compiled), 0);
	kr_config_free(c);
}

static void test_every_registered_type_is_available(void **state)
{
	(void)state;
	static const char text[] =
		"{\"sources\": [{\"name\": \"in\", \"type\": \"kafka\", \"brokers\": \"k:9092\",\n"
		"  \"topics\": [\"kms-events\"], \"group_id\": \"g\"}],\n"
		" \"sinks\": [{\"name\": \"out\", \"type\": \"log\"}],\n"
		" \"rules\": [{\"name\": \"r\", \"pattern\": {\"source\": [\"aws.kms\"]}, \"targets\": [\"out\"]}]}";
	struct kr_config *c = load_ok(text);
	assert_int_equal(c->nsources, 1);
	assert_non_null(c->sources[0].plugin);
	assert_string_equal(c->sources[0].type, "kafka");
	char err[KR_ERRBUF] = "";
	assert_int_equal(kr_config_unavailable(c, err), 0);
	kr_config_free(c);
	for (const struct kr_source_entry *e = kr_source_registry; e->type; e++)
		assert_non_null(e->plugin);
	for (const struct kr_sink_entry *e = kr_sink_registry; e->type; e++)
		assert_non_null(e->plugin);
}

/* ---- errors ---- */

static void test_unknown_top_level_key_is_an_error_with_did_you_mean(void **state)
{
	(void)state;
	assert_config_error("{\n  \"sinks\": [],\n  \"rulez\": []\n}", "\"rulez\"", 0, "$",
			    "unknown key \"rulez\" in the configuration (did you mean \"rules\"?)");
	/* nothing close: no suggestion */
	struct kr_config *c;
	char err[KR_ERRBUF];
	const char *text = "{\"zzzzzzzz\": 1}";
	assert_int_equal(kr_config_parse("cfg.json", text, strlen(text), &c, err), KR_ERR_CONFIG);
	assert_non_null(strstr(err, "unknown key \"zzzzzzzz\""));
	assert_null(strstr(err, "did you mean"));
}

static void test_unknown_rule_key_is_an_error_with_did_you_mean(void **state)
{
	(void)state;
	assert_config_error("{\"rules\": [\n  {\"name\": \"r\",\n   \"patern\": {\"a\": [1]}}]}",
			    "\"patern\"", 0, "$.rules[0]", "(did you mean \"pattern\"?)");
}

static void test_unknown_sink_option_is_an_error(void **state)
{
	(void)state;
	assert_config_error("{\"sinks\": [\n"
			    "  {\"name\": \"a\", \"type\": \"log\"},\n"
			    "  {\"name\": \"b\", \"type\": \"log\", \"pathh\": \"-\"}\n"
			    "]}",
			    "\"pathh\"", 0, "$.sinks[1]",
			    "unknown key \"pathh\" in sink of type \"log\" (did you mean \"path\"?)");
}

static void test_option_of_the_wrong_type_is_an_error(void **state)
{
	(void)state;
	assert_config_error("{\"sinks\": [\n  {\"name\": \"a\", \"type\": \"log\",\n   \"path\": 5}]}",
			    "5}", 0, "$.sinks[0].path", "\"path\" must be a string");
	assert_config_error("{\"sinks\": [{\"name\": \"a\", \"type\": \"log\", \"path\": [\"x\"]}]}",
			    "[\"x\"]", 0, "$.sinks[0].path", "\"path\" must be a string");
}

static void test_sink_needs_a_name_and_a_type(void **state)
{
	(void)state;
	assert_config_error("{\"sinks\": [{\"type\": \"log\"}]}", "{\"type\"", 0, "$.sinks[0]",
			    "needs a \"name\"");
	assert_config_error("{\"sinks\": [{\"name\": \"a\", \"type\": 1}]}", "1}", 0,
			    "$.sinks[0].type", "needs a \"type\"");
}

static void test_duplicate_sink_names_are_an_error(void **state)
{
	(void)state;
	assert_config_error("{\"sinks\": [\n"
			    "  {\"name\": \"a\", \"type\": \"log\"},\n"
			    "  {\"type\": \"log\", \"name\": \"a\"}\n"
			    "]}",
			    "\"a\"", 1, "$.sinks[1]", "duplicate sink name \"a\"");
}

static void test_duplicate_rule_names_are_an_error(void **state)
{
	(void)state;
	assert_config_error("{\"sinks\": [{\"name\": \"s\", \"type\": \"log\"}],\n"
			    " \"rules\": [\n"
			    "  {\"name\": \"r\", \"pattern\": {\"a\": [1]}, \"targets\": [\"s\"]},\n"
			    "  {\"name\": \"other\", \"pattern\": {\"a\": [2]}, \"targets\": [\"s\"]},\n"
			    "  {\"name\": \"r\", \"pattern\": {\"a\": [3]}, \"targets\": [\"s\"]}\n"
			    "]}",
			    "\"r\"", 1, "$.rules[2]", "duplicate rule name \"r\"");
}

static void test_target_naming_a_missing_sink_is_an_error(void **state)
{
	(void)state;
	assert_config_error("{\"sinks\": [{\"name\": \"page\", \"type\": \"log\"}],\n"
			    " \"rules\": [{\"name\": \"r\", \"pattern\": {\"a\": [1]},\n"
			    "            \"targets\": [\"page\", \"pages\"]}]}",
			    "\"pages\"", 0, "$.rules[0].targets[1]",
			    "no sink is named \"pages\" (did you mean \"page\"?)");
}

static void test_invalid_pattern_names_the_rule_and_the_offending_node(void **state)
{
	(void)state;
	assert_config_error("{\"sinks\": [{\"name\": \"s\", \"type\": \"log\"}],\n"
			    " \"rules\": [\n"
			    "  {\"name\": \"ok\", \"pattern\": {\"a\": [1]}, \"targets\": [\"s\"]},\n"
			    "  {\"name\": \"bad\", \"targets\": [\"s\"],\n"
			    "   \"pattern\": {\"detail\": {\"key-id\": [{\"prefix\": 42}]}}}\n"
			    "]}",
			    "42", 0, "$.rules[1].pattern",
			    "prefix match pattern must be a string (at field \"detail.key-id\")");
}

static void test_unknown_type_is_an_error_listing_known_types(void **state)
{
	(void)state;
	static const char text[] = "{\"sinks\": [\n  {\"name\": \"a\", \"type\": \"sqz\"}]}";
	assert_config_error(text, "\"sqz\"", 0, "$.sinks[0].type",
			    "unknown sink type \"sqz\" (did you mean \"sqs\"?); known types: ");
	struct kr_config *c;
	char err[KR_ERRBUF];
	assert_int_equal(kr_config_parse("cfg.json", text, strlen(text), &c, err), KR_ERR_CONFIG);
	const char *list = strstr(err, "known types: ");
	assert_non_null(list);
	size_t n = 0;
	for (const struct kr_sink_entry *e = kr_sink_registry; e->type; e++, n++) {
		char quoted[64];
		snprintf(quoted, sizeof quoted, "%s%s", n ? ", " : "known types: ", e->type);
		if (!strstr(err, quoted))
			fail_msg("'%s' does not list sink type %s", err, e->type);
	}
	assert_true(n >= 2);
	assert_config_error("{\"sources\": [{\"name\": \"in\", \"type\": \"kafkaa\"}]}", "\"kafkaa\"", 0,
			    "$.sources[0].type", "unknown source type \"kafkaa\" (did you mean \"kafka\"?)");
}

static void test_malformed_json_is_an_error_at_the_offending_token(void **state)
{
	(void)state;
	static const char text[] = "{\"sinks\": [\n  {\"name\": \"a\",, \"type\": \"log\"}\n]}";
	struct kr_config *c = (struct kr_config *)1;
	char err[KR_ERRBUF];
	assert_int_equal(kr_config_parse("cfg.json", text, strlen(text), &c, err), KR_ERR_CONFIG);
	assert_null(c);
	size_t line, col, got_line, got_col;
	line_col(text, nth_offset(text, ",,", 0) + 1, &line, &col);
	if (sscanf(err, "cfg.json:%zu:%zu: $: ", &got_line, &got_col) != 2)
		fail_msg("unexpected message '%s'", err);
	/* the second comma, or just past it (yajl's position) */
	if (got_line != line || got_col < col || got_col > col + 1)
		fail_msg("'%s': want line %zu col %zu..%zu", err, line, col, col + 1);
	assert_non_null(strstr(err, "$: "));
}

static void test_duplicate_keys_are_an_error_at_the_second_key(void **state)
{
	(void)state;
	assert_config_error("{\"sinks\": [],\n \"rules\": [],\n \"sinks\": []}", "\"sinks\"", 1, "$",
			    "duplicate key \"sinks\"");
	assert_config_error("{\"sinks\": [{\"name\": \"a\", \"type\": \"log\",\n   \"name\": \"b\"}]}",
			    "\"name\"", 1, "$", "duplicate key \"name\"");
}

static void test_truncated_json_is_an_error_at_the_end(void **state)
{
	(void)state;
	static const char text[] = "{\n  \"sinks\": [\n    {\"name\": \"a\", \"type\": \"log\"}\n";
	size_t line, col;
	line_col(text, strlen(text), &line, &col);
	char prefix[64];
	snprintf(prefix, sizeof prefix, "cfg.json:%zu:%zu: $: ", line, col);
	struct kr_config *c;
	char err[KR_ERRBUF];
	assert_int_equal(kr_config_parse("cfg.json", text, strlen(text), &c, err), KR_ERR_CONFIG);
	if (strncmp(err, prefix, strlen(prefix)) != 0)
		fail_msg("message '%s' does not start with '%s'", err, prefix);
}

static void test_comments_are_accepted_anywhere_whitespace_is(void **state)
{
	(void)state;
	struct kr_config *c = load_ok("/* a */ { // b\n \"sinks\" /* c */ : [ // d\n ] /* e */ }\n// f\n");
	assert_int_equal(c->nsinks, 0);
	kr_config_free(c);
}

static void test_config_must_be_an_object_and_lists_must_be_arrays(void **state)
{
	(void)state;
	assert_config_error("\n [1]", "[1]", 0, "$", "must be a JSON object");
	assert_config_error("{\"rules\": {}}", "{}", 0, "$.rules", "\"rules\" must be an array");
	assert_config_error("{\"sinks\": \"log\"}", "\"log\"", 0, "$.sinks", "must be an array");
	assert_config_error("{\"rules\": [{\"name\": \"r\", \"pattern\": {\"a\": [1]}, \"targets\": \"s\"}]}",
			    "\"s\"", 0, "$.rules[0].targets", "must be an array of sink names");
}

/* ---- input transformers (router/transform.h): refused at load unless every event gives valid
 * output ---- */

/* A config whose one target transforms with input_paths paths and input_template tmpl, written
 * as in the file (a JSON string literal). Returns a static buffer. */
static const char *transformer_config(const char *paths, const char *tmpl)
{
	static char buf[16384];
	int n = snprintf(buf, sizeof buf,
			 "{\"sinks\": [{\"name\": \"s\", \"type\": \"log\"}],\n"
			 " \"rules\": [{\"name\": \"r\", \"pattern\": {\"a\": [1]}, \"targets\": [\n"
			 "  {\"sink\": \"s\", \"input_transformer\": {\"input_paths\": %s,\n"
			 "   \"input_template\": %s}}]}]}",
			 paths, tmpl);
	assert_true(n > 0 && (size_t)n < sizeof buf);
	return buf;
}

static const char tmpl_path[] = "$.rules[0].targets[0].input_transformer.input_template";
static const char guide_paths[] = "{\"timestamp\": \"$.time\", \"instance\": \"$.detail.instance-id\","
				  " \"state\": \"$.detail.state\", \"resource\": \"$.resources[0]\"}";

static void test_transformer_templates_of_the_eventbridge_guide_load(void **state)
{
	(void)state;
	static const char *const ok[] = {
		"\"\\\"instance <instance> is in <state>\\\"\"",
		"\"\\\"instance \\\\\\\"<instance>\\\\\\\" is in <state>\\\"\"",
		"\"{\\n  \\\"instance\\\" : <instance>,\\n  \\\"state\\\": <state>\\n}\"",
		"\"{\\\"instance\\\" : <instance>, \\\"state\\\": \\\"<state>\\\", \\\"instanceStatus\\\":"
		" \\\"instance \\\\\\\"<instance>\\\\\\\" is in <state>\\\"}\"",
		"\"{\\\"instance\\\" : <instance>, \\\"state\\\": [ 9, <state>, true ],"
		" \\\"Transformed\\\" : \\\"Yes\\\"}\"",
		"\"{\\\"ruleArn\\\" : <aws.events.rule-arn>, \\\"ruleName\\\" : <aws.events.rule-name>,"
		" \\\"originalEvent\\\" : <aws.events.event>, \\\"all\\\": <aws.events.event.json>,"
		" \\\"at\\\": <aws.events.event.ingestion-time>}\"",
		"\"\\\"<aws.events.rule-name> triggered\\\"\"",
		"\"{\\\"timestamp\\\" : <timestamp>, \\\"message\\\": \\\"instance \\\\\\\"<instance>\\\\\\\""
		" is in <state>\\\"}\"",
		"\"\\\"line <instance>\\\"\\n\\\"line <state>\\\"\\n\"",
		"\"[<resource>, \\\"a < b, </b> and <b c> are text\\\", {}]\"",
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		struct kr_config *c = load_ok(transformer_config(guide_paths, ok[i]));
		kr_config_free(c);
	}
}

static void test_transformer_variable_that_is_not_defined_is_an_error(void **state)
{
	(void)state;
	assert_config_error(transformer_config(guide_paths, "\"{\\\"a\\\": <nope>}\""), "<nope>", 0,
			    tmpl_path, "<nope> is not a variable");
	assert_config_error(transformer_config("{}", "\"\\\"at <aws.events.time>\\\"\""),
			    "<aws.events.time>", 0, tmpl_path, "is not a variable");
}

/* The column counts the file's characters, escapes included. */
static void test_transformer_error_points_at_the_character_in_the_file(void **state)
{
	(void)state;
	assert_config_error(transformer_config(guide_paths, "\"{\\\"\\u00e9\\ud83d\\ude00\\\\n\\\":"
							    " \\\"\\\\\\\"<state>\\\", \\\"b\\\": <x>}\""),
			    "<x>", 0, tmpl_path, "<x> is not a variable");
}

static void test_transformer_unbalanced_template_is_an_error(void **state)
{
	(void)state;
	assert_config_error(transformer_config(guide_paths, "\"{\\\"a\\\": <state>\""), "\"}}]}]}",
			    0, tmpl_path, "expected ',' or '}'");
	assert_config_error(transformer_config(guide_paths, "\"{\\\"a\\\": [1, <state>}\""),
			    "}\"}}]}]}", 0, tmpl_path, "expected ',' or ']'");
	assert_config_error(transformer_config(guide_paths, "\"{\\\"a\\\": 1}}\""), "}\"}}]}]}", 0,
			    tmpl_path, "text after the end of the JSON template");
	assert_config_error(transformer_config(guide_paths, "\"{\\\"a\\\": \\\"<state>}\""),
			    "\\\"<state>", 0, tmpl_path, "a string is not closed");
}

static void test_transformer_template_invalid_once_filled_is_an_error(void **state)
{
	(void)state;
	assert_config_error(transformer_config(guide_paths, "\"{\\\"a\\\": <state> <state>}\""),
			    "<state>}", 0, tmpl_path, "expected ',' or '}'");
	assert_config_error(transformer_config(guide_paths, "\"{\\\"a\\\": <state>,}\""), "}\"}}",
			    0, tmpl_path, "expected a key in double quotes");
	assert_config_error(transformer_config(guide_paths, "\"[<state>, ]\""), "]\"}}", 0,
			    tmpl_path, "expected a JSON value");
	assert_config_error(transformer_config(guide_paths, "\"{\\\"a\\\": <>}\""), "<>}", 0,
			    tmpl_path, "'<' does not start a variable");
	assert_config_error(transformer_config(guide_paths, "\"{\\\"a\\\": 007}\""), "007", 0,
			    tmpl_path, "leading zeros");
	assert_config_error(transformer_config(guide_paths, "\"{\\\"a\\\": \\\"\\\\x\\\"}\""),
			    "\\\\x", 0, tmpl_path, "a backslash in a string must start a JSON escape");
	assert_config_error(transformer_config(guide_paths, "\"{\\\"a\\\": \\\"\\n\\\"}\""), "\\n\\\"}",
			    0, tmpl_path, "a control character in a string");
	assert_config_error(transformer_config(guide_paths, "\"{\\\"a\\\": 1, \\\"a\\\": <state>}\""),
			    "{\\\"a", 0, tmpl_path, "the template is not JSON once its variables are filled");
}

/* EventBridge: "The placeholder can't be used as an object key". */
static void test_transformer_variable_as_an_object_key_is_an_error(void **state)
{
	(void)state;
	assert_config_error(transformer_config(guide_paths, "\"{<state>: 1}\""), "<state>", 0,
			    tmpl_path, "a variable cannot be used as an object key");
	assert_config_error(transformer_config(guide_paths, "\"{\\\"k-<state>\\\": 1}\""), "<state>",
			    0, tmpl_path, "a variable cannot be used in an object key");
}

/* EventBridge: the event variables "can only be used as a value for a JSON field, as [their]
 * contents are not escaped". */
static void test_transformer_event_variable_inside_a_string_is_an_error(void **state)
{
	(void)state;
	assert_config_error(transformer_config("{}", "\"{\\\"e\\\": \\\"<aws.events.event>\\\"}\""),
			    "<aws.events.event>", 0, tmpl_path,
			    "<aws.events.event> can only be the value of a JSON field");
	assert_config_error(transformer_config("{}", "\"\\\"was <aws.events.event.json>\\\"\""),
			    "<aws.events.event.json>", 0, tmpl_path,
			    "<aws.events.event.json> can only be the value of a JSON field");
}

/* EventBridge: "For Strings, quotes are required". */
static void test_transformer_text_template_needs_quotes(void **state)
{
	(void)state;
	assert_config_error(transformer_config(guide_paths, "\"<instance> is in state <state>\""),
			    "<instance> is", 0, tmpl_path,
			    "a template is JSON (an object or an array) or text in double quotes");
	assert_config_error(transformer_config(guide_paths, "\"  \""), "\"}}]}]}", 0, tmpl_path,
			    "a template is JSON");
	assert_config_error(transformer_config(guide_paths, "\"\\\"<instance>\\\" is <state>\""),
			    "is <state>", 0, tmpl_path, "a text template is strings in double quotes");
}

/* EventBridge: "You can define up to 100 variables". */
static void test_transformer_takes_at_most_100_variables(void **state)
{
	(void)state;
	char paths[8192];
	size_t o = 0;
	paths[o++] = '{';
	for (int i = 0; i < 101; i++)
		o += (size_t)snprintf(paths + o, sizeof paths - o, "%s\"v%d\": \"$.detail.a%d\"",
				      i ? ", " : "", i, i);
	snprintf(paths + o, sizeof paths - o, "}");
	assert_config_error(transformer_config(paths, "\"[<v0>, <v100>]\""), "{\"v0\"", 0,
			    "$.rules[0].targets[0].input_transformer.input_paths",
			    "at most 100 variables");
	char *cut = strstr(paths, ", \"v100\"");
	assert_non_null(cut);
	strcpy(cut, "}");
	struct kr_config *c = load_ok(transformer_config(paths, "\"[<v0>, <v99>]\""));
	kr_config_free(c);
}

static void test_transformer_variable_name_is_letters_digits_dash_underscore(void **state)
{
	(void)state;
	assert_config_error(transformer_config("{\"a b\": \"$.detail\"}", "\"[1]\""), "\"a b\"", 0,
			    "$.rules[0].targets[0].input_transformer.input_paths.a b",
			    "a variable name is 1 to 256 letters, digits, '_' and '-'");
	assert_config_error(transformer_config("{\"aws.events.x\": \"$.detail\"}", "\"[1]\""),
			    "\"$.detail\"", 0,
			    "$.rules[0].targets[0].input_transformer.input_paths.aws.events.x",
			    "the aws.events. prefix is reserved");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_config_loads_rules_and_sinks),
		cmocka_unit_test(test_targets_are_sink_indexes_in_order_without_repeats),
		cmocka_unit_test(test_compiled_rule_ids_follow_the_config_order),
		cmocka_unit_test(test_rules_load_the_same_before_sinks_and_with_target_objects),
		cmocka_unit_test(test_errors_keep_their_order_when_rules_are_compiled_during_the_parse),
		cmocka_unit_test(test_empty_object_is_a_valid_config),
		cmocka_unit_test(test_every_registered_type_is_available),
		cmocka_unit_test(test_unknown_top_level_key_is_an_error_with_did_you_mean),
		cmocka_unit_test(test_unknown_rule_key_is_an_error_with_did_you_mean),
		cmocka_unit_test(test_unknown_sink_option_is_an_error),
		cmocka_unit_test(test_option_of_the_wrong_type_is_an_error),
		cmocka_unit_test(test_sink_needs_a_name_and_a_type),
		cmocka_unit_test(test_duplicate_sink_names_are_an_error),
		cmocka_unit_test(test_duplicate_rule_names_are_an_error),
		cmocka_unit_test(test_target_naming_a_missing_sink_is_an_error),
		cmocka_unit_test(test_invalid_pattern_names_the_rule_and_the_offending_node),
		cmocka_unit_test(test_unknown_type_is_an_error_listing_known_types),
		cmocka_unit_test(test_malformed_json_is_an_error_at_the_offending_token),
		cmocka_unit_test(test_duplicate_keys_are_an_error_at_the_second_key),
		cmocka_unit_test(test_truncated_json_is_an_error_at_the_end),
		cmocka_unit_test(test_comments_are_accepted_anywhere_whitespace_is),
		cmocka_unit_test(test_config_must_be_an_object_and_lists_must_be_arrays),
		cmocka_unit_test(test_transformer_templates_of_the_eventbridge_guide_load),
		cmocka_unit_test(test_transformer_variable_that_is_not_defined_is_an_error),
		cmocka_unit_test(test_transformer_error_points_at_the_character_in_the_file),
		cmocka_unit_test(test_transformer_unbalanced_template_is_an_error),
		cmocka_unit_test(test_transformer_template_invalid_once_filled_is_an_error),
		cmocka_unit_test(test_transformer_variable_as_an_object_key_is_an_error),
		cmocka_unit_test(test_transformer_event_variable_inside_a_string_is_an_error),
		cmocka_unit_test(test_transformer_text_template_needs_quotes),
		cmocka_unit_test(test_transformer_takes_at_most_100_variables),
		cmocka_unit_test(test_transformer_variable_name_is_letters_digits_dash_underscore),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
