/* Unit tests for router/transform.h: InputTransformer as the EventBridge user guide documents it
 * ("Amazon EventBridge input transformation", eb-transform-target-input): one test per example
 * of its table, one per point of its "Common issues" section, and the cases around them (values
 * that need escaping, every JSON type inside and outside quotes, paths that are missing). The
 * output of every JSON template is parsed back with kr_json_parse, which rejects duplicate keys
 * and anything else that is not JSON. */
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
#include "transform.h"

/* The example event of the guide. */
static const char ec2_event[] =
	"{\n"
	"  \"version\": \"0\",\n"
	"  \"id\": \"7bf73129-1428-4cd3-a780-95db273d1602\",\n"
	"  \"detail-type\": \"EC2 Instance State-change Notification\",\n"
	"  \"source\": \"aws.ec2\",\n"
	"  \"account\": \"123456789012\",\n"
	"  \"time\": \"2015-11-11T21:29:54Z\",\n"
	"  \"region\": \"us-east-1\",\n"
	"  \"resources\": [\n"
	"    \"arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111\"\n"
	"  ],\n"
	"  \"detail\": {\n"
	"    \"instance-id\": \"i-0123456789\",\n"
	"    \"state\": \"RUNNING\"\n"
	"  }\n"
	"}\n";

/* The same, minified: what <aws.events.event.json> stands for. */
static const char ec2_event_min[] =
	"{\"version\":\"0\",\"id\":\"7bf73129-1428-4cd3-a780-95db273d1602\","
	"\"detail-type\":\"EC2 Instance State-change Notification\",\"source\":\"aws.ec2\","
	"\"account\":\"123456789012\",\"time\":\"2015-11-11T21:29:54Z\",\"region\":\"us-east-1\","
	"\"resources\":[\"arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111\"],"
	"\"detail\":{\"instance-id\":\"i-0123456789\",\"state\":\"RUNNING\"}}";

/* ... and without "detail": what <aws.events.event> stands for. */
static const char ec2_event_min_without_detail[] =
	"{\"version\":\"0\",\"id\":\"7bf73129-1428-4cd3-a780-95db273d1602\","
	"\"detail-type\":\"EC2 Instance State-change Notification\",\"source\":\"aws.ec2\","
	"\"account\":\"123456789012\",\"time\":\"2015-11-11T21:29:54Z\",\"region\":\"us-east-1\","
	"\"resources\":[\"arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111\"]}";

/* The guide's Input Path, with <detail> and a path that is not in the event added. */
static const char ec2_paths[] = "{\"timestamp\": \"$.time\", \"instance\": \"$.detail.instance-id\","
				" \"state\": \"$.detail.state\", \"resource\": \"$.resources[0]\","
				" \"detail\": \"$.detail\", \"nope\": \"$.detail.absent\"}";

/* 2015-11-11T21:29:54Z */
#define RECEIVED_MS 1447277394000ULL

/* The payload for template over event, or NULL with the error in err (may be NULL). Returns a
 * new string; free with free(). */
static char *try_transform(const char *paths, const char *tmpl, const char *event,
			   const char *rule, char *err)
{
	struct kr_buf spec = {0};
	assert_true(kr_buf_puts(&spec, "{\"input_paths\": "));
	assert_true(kr_buf_puts(&spec, paths));
	assert_true(kr_buf_puts(&spec, ", \"input_template\": "));
	assert_true(kr_buf_json_string(&spec, tmpl, strlen(tmpl)));
	assert_true(kr_buf_puts(&spec, "}"));
	struct kr_json *it = NULL;
	size_t off;
	char jerr[KR_ERRBUF];
	if (kr_json_parse(spec.p, spec.len, NULL, &it, &off, jerr) != KR_OK)
		fail_msg("transformer spec %s: %s", spec.p, jerr);
	kr_buf_free(&spec);
	struct kr_target_cfg tc = {.dead_letter = -1, .input_transformer = it};
	size_t len = 0;
	char terr[KR_ERRBUF] = "";
	char *out = kr_transform(&tc, rule, event, strlen(event), RECEIVED_MS, &len, terr);
	kr_json_free(it);
	if (err)
		snprintf(err, KR_ERRBUF, "%s", terr);
	if (out)
		assert_int_equal(strlen(out), len);
	return out;
}

static char *transform(const char *paths, const char *tmpl, const char *event)
{
	char err[KR_ERRBUF];
	char *out = try_transform(paths, tmpl, event, "example", err);
	if (!out)
		fail_msg("template %s: %s", tmpl, err);
	return out;
}

/* Fails unless text is one JSON value by the project's parser (duplicate keys are errors). */
static void assert_valid_json(const char *text)
{
	struct kr_json *j = NULL;
	size_t off;
	char err[KR_ERRBUF];
	if (kr_json_parse(text, strlen(text), NULL, &j, &off, err) != KR_OK)
		fail_msg("not JSON at byte %zu: %s\n%s", off, err, text);
	kr_json_free(j);
}

/* A JSON template's output: valid JSON, and exactly want. */
static void expect_json(const char *paths, const char *tmpl, const char *event, const char *want)
{
	char *out = transform(paths, tmpl, event);
	assert_valid_json(out);
	assert_string_equal(out, want);
	free(out);
}

/* A text template's output, exactly. */
static void expect_text(const char *paths, const char *tmpl, const char *event, const char *want)
{
	char *out = transform(paths, tmpl, event);
	assert_string_equal(out, want);
	free(out);
}

/* ---- the examples of the guide's table, with its event and Input Path ---- */

static void test_doc_simple_string(void **state)
{
	(void)state;
	expect_text(ec2_paths, "\"instance <instance> is in <state>\"", ec2_event,
		    "\"instance i-0123456789 is in RUNNING\"");
}

static void test_doc_string_with_escaped_quotes(void **state)
{
	(void)state;
	expect_text(ec2_paths, "\"instance \\\"<instance>\\\" is in <state>\"", ec2_event,
		    "\"instance \\\"i-0123456789\\\" is in RUNNING\"");
}

static void test_doc_simple_json_quotes_string_variables(void **state)
{
	(void)state;
	expect_json(ec2_paths, "{\n  \"instance\" : <instance>,\n  \"state\": <state>\n}", ec2_event,
		    "{\"instance\":\"i-0123456789\",\"state\":\"RUNNING\"}");
}

static void test_doc_json_with_strings_and_variables(void **state)
{
	(void)state;
	expect_json(ec2_paths,
		    "{\n \"instance\" : <instance>,\n \"state\": \"<state>\",\n"
		    " \"instanceStatus\": \"instance \\\"<instance>\\\" is in <state>\"\n}",
		    ec2_event,
		    "{\"instance\":\"i-0123456789\",\"state\":\"RUNNING\","
		    "\"instanceStatus\":\"instance \\\"i-0123456789\\\" is in RUNNING\"}");
}

static void test_doc_json_with_a_mix_of_variables_and_static_information(void **state)
{
	(void)state;
	expect_json(ec2_paths,
		    "{\n  \"instance\" : <instance>,\n  \"state\": [ 9, <state>, true ],\n"
		    "  \"Transformed\" : \"Yes\"\n}\n",
		    ec2_event,
		    "{\"instance\":\"i-0123456789\",\"state\":[9,\"RUNNING\",true],"
		    "\"Transformed\":\"Yes\"}");
}

static void test_doc_reserved_variables_in_json(void **state)
{
	(void)state;
	char want[2048];
	snprintf(want, sizeof want,
		 "{\"instance\":\"i-0123456789\",\"state\":\"RUNNING\","
		 "\"ruleArn\":\"arn:kmsrouter:events:::rule/example\",\"ruleName\":\"example\","
		 "\"originalEvent\":%s}",
		 ec2_event_min);
	expect_json(ec2_paths,
		    "{\n  \"instance\" : <instance>,\n  \"state\": <state>,\n"
		    "  \"ruleArn\" : <aws.events.rule-arn>,\n  \"ruleName\" : <aws.events.rule-name>,\n"
		    "  \"originalEvent\" : <aws.events.event.json>\n}",
		    ec2_event, want);
}

static void test_doc_reserved_variables_in_a_string(void **state)
{
	(void)state;
	expect_text(ec2_paths, "\"<aws.events.rule-name> triggered\"", ec2_event,
		    "\"example triggered\"");
}

/* The guide prints this example's output unquoted (`"timestamp" : 2015-11-11T21:29:54Z`),
 * which is not JSON; by its own rule a string variable outside quotes is quoted. */
static void test_doc_cloudwatch_log_group_example_is_valid_json(void **state)
{
	(void)state;
	expect_json(ec2_paths,
		    "{\n  \"timestamp\" : <timestamp>,\n"
		    "  \"message\": \"instance \\\"<instance>\\\" is in <state>\"\n}",
		    ec2_event,
		    "{\"timestamp\":\"2015-11-11T21:29:54Z\","
		    "\"message\":\"instance \\\"i-0123456789\\\" is in RUNNING\"}");
}

static void test_doc_array_index_path_reads_an_array_item(void **state)
{
	(void)state;
	expect_json(ec2_paths, "{\"resource\": <resource>}", ec2_event,
		    "{\"resource\":\"arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111\"}");
}

/* ---- the guide's predefined variables ---- */

static void test_event_variable_is_the_event_without_detail(void **state)
{
	(void)state;
	char want[2048];
	snprintf(want, sizeof want, "{\"e\":%s}", ec2_event_min_without_detail);
	expect_json(ec2_paths, "{\"e\": <aws.events.event>}", ec2_event, want);
}

static void test_event_json_variable_is_the_whole_event(void **state)
{
	(void)state;
	char want[2048];
	snprintf(want, sizeof want, "[%s]", ec2_event_min);
	expect_json(ec2_paths, "[<aws.events.event.json>]", ec2_event, want);
}

static void test_ingestion_time_is_an_iso8601_string(void **state)
{
	(void)state;
	expect_json("{}", "{\"at\": <aws.events.event.ingestion-time>}", ec2_event,
		    "{\"at\":\"2015-11-11T21:29:54Z\"}");
	expect_text("{}", "\"at <aws.events.event.ingestion-time>\"", ec2_event,
		    "\"at 2015-11-11T21:29:54Z\"");
}

static void test_rule_name_and_arn_are_escaped(void **state)
{
	(void)state;
	char err[KR_ERRBUF];
	char *out = try_transform("{}",
				  "{\"n\": <aws.events.rule-name>, \"a\": <aws.events.rule-arn>,"
				  " \"s\": \"<aws.events.rule-name>!\"}",
				  ec2_event, "r\"u\\le", err);
	assert_non_null(out);
	assert_valid_json(out);
	assert_string_equal(out, "{\"n\":\"r\\\"u\\\\le\",\"a\":\"arn:kmsrouter:events:::rule/"
				 "r\\\"u\\\\le\",\"s\":\"r\\\"u\\\\le!\"}");
	free(out);
}

/* ---- the guide's "Common issues with transforming input" ---- */

/* "Quotes are not required for variables that represent strings. They are permitted, but
 * EventBridge automatically adds quotes to string variable values." */
static void test_string_variable_outside_quotes_is_written_as_a_json_string(void **state)
{
	(void)state;
	expect_json(ec2_paths, "{\"instance\": <instance>}", ec2_event,
		    "{\"instance\":\"i-0123456789\"}");
	expect_json(ec2_paths, "{\"instance\": \"<instance>\"}", ec2_event,
		    "{\"instance\":\"i-0123456789\"}");
}

/* "If you specify a variable to match a JSON path that doesn't exist in the event, that variable
 * isn't created and won't appear in the output": no text inside a string; as a field's value,
 * the field is left out; as an array item, the item is. */
static void test_missing_path_variable_does_not_appear_in_the_output(void **state)
{
	(void)state;
	expect_json(ec2_paths, "{\"a\": 1, \"missing\": <nope>, \"b\": [<nope>, 2, <nope>],"
			       " \"s\": \"x<nope>y\", \"q\": \"<nope>\"}",
		    ec2_event, "{\"a\":1,\"b\":[2],\"s\":\"xy\",\"q\":\"\"}");
	expect_json(ec2_paths, "{\"missing\": <nope>, \"a\": 1}", ec2_event, "{\"a\":1}");
	expect_json(ec2_paths, "{\"missing\": <nope>}", ec2_event, "{}");
	expect_json(ec2_paths, "[<nope>, <nope>]", ec2_event, "[]");
	expect_json(ec2_paths, "{\"o\": {\"m\": <nope>}, \"z\": <nope>}", ec2_event, "{\"o\":{}}");
	expect_text(ec2_paths, "\"state <nope>: <state>\"", ec2_event, "\"state : RUNNING\"");
}

/* "If a JSON path references a JSON object or array, but the variable is referenced in a
 * string, EventBridge removes any internal quotes to ensure a valid string." */
static void test_object_inside_a_string_loses_its_quotes(void **state)
{
	(void)state;
	expect_text(ec2_paths, "\"Detail is <detail>\"", ec2_event,
		    "\"Detail is {instance-id:i-0123456789,state:RUNNING}\"");
	expect_json(ec2_paths, "{\"d\": \"is <detail>\"}", ec2_event,
		    "{\"d\":\"is {instance-id:i-0123456789,state:RUNNING}\"}");
}

/* "...if you want to output a JSON object based on a single JSON path variable, you must place
 * it as a key [a field's value]: {"detail": <detail>}". */
static void test_object_as_a_field_value_is_json(void **state)
{
	(void)state;
	expect_json(ec2_paths, "{\"detail\": <detail>}", ec2_event,
		    "{\"detail\":{\"instance-id\":\"i-0123456789\",\"state\":\"RUNNING\"}}");
}

/* "For (non-JSON) text output as multi-line strings, wrap each separate line in your input
 * template in double quotes." */
static void test_multi_line_text_is_one_quoted_string_per_line(void **state)
{
	(void)state;
	expect_text(ec2_paths, "\"Instance <instance>\"\n\"is in <state>\"\n", ec2_event,
		    "\"Instance i-0123456789\"\n\"is in RUNNING\"\n");
}

/* "The JSON that is passed to the target is minified". */
static void test_json_output_is_minified(void **state)
{
	(void)state;
	expect_json(ec2_paths, "  {\n\t\"a\" :\r\n [ 1 , { } , [ ] ,\"x y\" ] ,\n \"b\" : null }\n",
		    ec2_event, "{\"a\":[1,{},[],\"x y\"],\"b\":null}");
}

/* ---- values of every kind, inside and outside quotes ---- */

static const char odd_event[] =
	"{\"detail\": {"
	"\"quote\": \"say \\\"hi\\\"\", \"bslash\": \"C:\\\\dir\\\\\", "
	"\"ctl\": \"a\\nb\\tc\\u0001d\\u001f\", \"utf8\": \"k\\u00e9y-\\u00fc \\u2028 \\ud83d\\ude00 \xe6\x97\xa5\", "
	"\"lt\": \"<state> & </b>\", "
	"\"int\": 7, \"neg\": -0, \"dec\": 1.50, \"exp\": 1E+3, "
	"\"t\": true, \"f\": false, \"z\": null, "
	"\"arr\": [\"a\\\"b\", 1, {\"k\": \"v\"}, [], null], "
	"\"obj\": {\"q\\\"k\": \"x\\\\y\", \"n\": [1, 2]}, \"empty\": {}}}";

static const char odd_paths[] =
	"{\"quote\": \"$.detail.quote\", \"bslash\": \"$.detail.bslash\", \"ctl\": \"$.detail.ctl\","
	" \"utf8\": \"$.detail.utf8\", \"lt\": \"$.detail.lt\", \"int\": \"$.detail.int\","
	" \"neg\": \"$.detail.neg\", \"dec\": \"$.detail.dec\", \"exp\": \"$.detail.exp\","
	" \"t\": \"$.detail.t\", \"f\": \"$.detail.f\", \"z\": \"$.detail.z\","
	" \"arr\": \"$.detail.arr\", \"obj\": \"$.detail.obj\", \"empty\": \"$.detail.empty\"}";

/* The string at key in the object text, decoded. */
static void assert_member_string(const char *text, const char *key, const char *want)
{
	struct kr_json *j = NULL;
	size_t off;
	char err[KR_ERRBUF];
	if (kr_json_parse(text, strlen(text), NULL, &j, &off, err) != KR_OK)
		fail_msg("not JSON: %s\n%s", err, text);
	const struct kr_json *m = kr_json_get(j, key);
	if (!m || m->type != KR_JSON_STRING)
		fail_msg("\"%s\" is not a string in %s", key, text);
	assert_int_equal(m->len, strlen(want));
	assert_memory_equal(m->str, want, m->len);
	kr_json_free(j);
}

static void test_strings_needing_escapes_stay_valid_inside_and_outside_quotes(void **state)
{
	(void)state;
	static const struct {
		const char *var, *decoded;
	} cases[] = {
		{"quote", "say \"hi\""},
		{"bslash", "C:\\dir\\"},
		{"ctl", "a\nb\tc\x01" "d\x1f"},
		{"utf8", "k\xc3\xa9y-\xc3\xbc \xe2\x80\xa8 \xf0\x9f\x98\x80 \xe6\x97\xa5"},
		{"lt", "<state> & </b>"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char tmpl[256], want[256];
		snprintf(tmpl, sizeof tmpl, "{\"v\": <%s>, \"s\": \"<%s>\", \"t\": \"[<%s>]\"}",
			 cases[i].var, cases[i].var, cases[i].var);
		char *out = transform(odd_paths, tmpl, odd_event);
		assert_valid_json(out);
		assert_member_string(out, "v", cases[i].decoded);
		assert_member_string(out, "s", cases[i].decoded);
		snprintf(want, sizeof want, "[%s]", cases[i].decoded);
		assert_member_string(out, "t", want);
		free(out);
		/* and in a text template, which is a JSON string too */
		snprintf(tmpl, sizeof tmpl, "\"<%s>\"", cases[i].var);
		out = transform(odd_paths, tmpl, odd_event);
		char *wrapped = malloc(strlen(out) + 8);
		assert_non_null(wrapped);
		sprintf(wrapped, "{\"x\":%s}", out);
		assert_member_string(wrapped, "x", cases[i].decoded);
		free(wrapped);
		free(out);
	}
}

static void test_numbers_booleans_and_null_inside_and_outside_quotes(void **state)
{
	(void)state;
	expect_json(odd_paths,
		    "{\"int\": <int>, \"neg\": <neg>, \"dec\": <dec>, \"exp\": <exp>, \"t\": <t>,"
		    " \"f\": <f>, \"z\": <z>, \"s\": \"<int> <neg> <dec> <exp> <t> <f> <z>\"}",
		    odd_event,
		    "{\"int\":7,\"neg\":-0,\"dec\":1.50,\"exp\":1E+3,\"t\":true,\"f\":false,"
		    "\"z\":null,\"s\":\"7 -0 1.50 1E+3 true false null\"}");
}

static void test_objects_and_arrays_inside_and_outside_quotes(void **state)
{
	(void)state;
	expect_json(odd_paths, "{\"a\": <arr>, \"o\": <obj>, \"e\": <empty>}", odd_event,
		    "{\"a\":[\"a\\\"b\",1,{\"k\":\"v\"},[],null],"
		    "\"o\":{\"q\\\"k\":\"x\\\\y\",\"n\":[1,2]},\"e\":{}}");
	/* inside a string the quotes of their strings are taken out, other characters escaped */
	expect_json(odd_paths, "{\"a\": \"<arr>\", \"o\": \"o=<obj>\", \"e\": \"<empty>\"}",
		    odd_event,
		    "{\"a\":\"[a\\\"b,1,{k:v},[],null]\",\"o\":\"o={q\\\"k:x\\\\y,n:[1,2]}\","
		    "\"e\":\"{}\"}");
}

/* Every JSON template over every value gives output that parses. */
static void test_every_json_template_output_parses(void **state)
{
	(void)state;
	static const char *const vars[] = {"quote", "bslash", "ctl", "utf8", "lt", "int", "neg",
					   "dec", "exp", "t", "f", "z", "arr", "obj", "empty",
					   "aws.events.rule-name", "aws.events.rule-arn",
					   "aws.events.event.ingestion-time"};
	static const char *const shapes[] = {
		"{\"k\": <%s>}", "{\"k\": \"<%s>\"}", "[<%s>, \"<%s><%s>\", <%s>]",
		"{\"a\": [{\"b\": <%s>}], \"c\": \"\\\"<%s>\\\"\"}", "[\"\\u00e9<%s>\\n\"]",
	};
	for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
		for (size_t v = 0; v < sizeof vars / sizeof vars[0]; v++) {
			char tmpl[512];
			const char *n = vars[v];
			snprintf(tmpl, sizeof tmpl, shapes[s], n, n, n, n);
			char err[KR_ERRBUF];
			char *out = try_transform(odd_paths, tmpl, odd_event, "r\"\\\x01", err);
			if (!out)
				fail_msg("template %s: %s", tmpl, err);
			assert_valid_json(out);
			free(out);
		}
	}
}

/* ---- what is not a transformation ---- */

static void test_input_path_selects_part_of_the_event(void **state)
{
	(void)state;
	struct kr_json *ip = NULL;
	size_t off, len = 0;
	char err[KR_ERRBUF];
	assert_int_equal(kr_json_parse("\"$.detail\"", 10, NULL, &ip, &off, err), KR_OK);
	struct kr_target_cfg tc = {.dead_letter = -1, .input_path = ip};
	char *out = kr_transform(&tc, "r", ec2_event, strlen(ec2_event), RECEIVED_MS, &len, err);
	assert_non_null(out);
	assert_string_equal(out, "{\"instance-id\":\"i-0123456789\",\"state\":\"RUNNING\"}");
	free(out);
	kr_json_free(ip);
}

static void test_target_without_transformation_gets_the_event_bytes(void **state)
{
	(void)state;
	struct kr_target_cfg tc = {.dead_letter = -1};
	size_t len = 0;
	char err[KR_ERRBUF];
	char *out = kr_transform(&tc, "r", ec2_event, strlen(ec2_event), RECEIVED_MS, &len, err);
	assert_non_null(out);
	assert_int_equal(len, strlen(ec2_event));
	assert_string_equal(out, ec2_event);
	free(out);
}

/* ---- bad input: an error, never bad output or a crash ---- */

static void test_event_that_is_not_json_is_an_error(void **state)
{
	(void)state;
	char err[KR_ERRBUF];
	assert_null(try_transform(ec2_paths, "{\"a\": <state>}", "{\"detail\": ", "r", err));
	assert_non_null(strstr(err, "not JSON"));
}

/* The config refuses these templates at load (test_config.c); a caller that did not check one
 * gets an error, not a payload that is not JSON. */
static void test_unchecked_bad_template_is_an_error_not_bad_output(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"{\"a\": <state>",		  /* not closed */
		"{\"a\": <state> <state>}",	  /* two values */
		"{\"a\": <undefined>}",		  /* not a variable */
		"{<state>: 1}",			  /* variable as a key */
		"{\"<state>\": 1}",		  /* ... or in one */
		"{\"a\": \"<aws.events.event>\"}", /* not escaped: only a field's value */
		"instance <instance> is in <state>", /* text needs quotes */
		"\"instance <instance>\" trailing",
		"{\"a\": 01}",
		"{\"a\": tru}",
		"{\"a\": \"\\q\"}",
		"{\"a\": \"\x01\"}",
		"{\"a\": 1,}",
		"[1,]",
		"",
		"   ",
		"{\"a\": <>}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char err[KR_ERRBUF] = "";
		char *out = try_transform(ec2_paths, bad[i], ec2_event, "r", err);
		if (out)
			fail_msg("template %s gave %s", bad[i], out);
		assert_true(err[0] != 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_doc_simple_string),
		cmocka_unit_test(test_doc_string_with_escaped_quotes),
		cmocka_unit_test(test_doc_simple_json_quotes_string_variables),
		cmocka_unit_test(test_doc_json_with_strings_and_variables),
		cmocka_unit_test(test_doc_json_with_a_mix_of_variables_and_static_information),
		cmocka_unit_test(test_doc_reserved_variables_in_json),
		cmocka_unit_test(test_doc_reserved_variables_in_a_string),
		cmocka_unit_test(test_doc_cloudwatch_log_group_example_is_valid_json),
		cmocka_unit_test(test_doc_array_index_path_reads_an_array_item),
		cmocka_unit_test(test_event_variable_is_the_event_without_detail),
		cmocka_unit_test(test_event_json_variable_is_the_whole_event),
		cmocka_unit_test(test_ingestion_time_is_an_iso8601_string),
		cmocka_unit_test(test_rule_name_and_arn_are_escaped),
		cmocka_unit_test(test_string_variable_outside_quotes_is_written_as_a_json_string),
		cmocka_unit_test(test_missing_path_variable_does_not_appear_in_the_output),
		cmocka_unit_test(test_object_inside_a_string_loses_its_quotes),
		cmocka_unit_test(test_object_as_a_field_value_is_json),
		cmocka_unit_test(test_multi_line_text_is_one_quoted_string_per_line),
		cmocka_unit_test(test_json_output_is_minified),
		cmocka_unit_test(test_strings_needing_escapes_stay_valid_inside_and_outside_quotes),
		cmocka_unit_test(test_numbers_booleans_and_null_inside_and_outside_quotes),
		cmocka_unit_test(test_objects_and_arrays_inside_and_outside_quotes),
		cmocka_unit_test(test_every_json_template_output_parses),
		cmocka_unit_test(test_input_path_selects_part_of_the_event),
		cmocka_unit_test(test_target_without_transformation_gets_the_event_bytes),
		cmocka_unit_test(test_event_that_is_not_json_is_an_error),
		cmocka_unit_test(test_unchecked_bad_template_is_an_error_not_bad_output),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
