/* Unit tests for router/options.h: declarative option tables fill typed structs, apply their
 * defaults, and report every bad value as "FILE:LINE:COL: $.path: message"; and every option of
 * every plugin in the registry is checked at config load (so `check` rejects what `run` would). */
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
#include "options.h"
#include "plugin.h"

struct sample {
	const char *s;
	bool b;
	uint64_t i, ms, bytes, scaled;
	int e;
	const char *url, *path;
	struct kr_strings list;
	struct kr_strmap map;
	struct {
		uint64_t x, y;
	} nested;
	struct kr_secret secret;
};

static const char *const colours[] = {"red", "green", NULL};
static const char *const schemes[] = {"http", "https", NULL};

static const struct kr_option nested_options[] = {
	{.name = "x", .type = KR_OPT_INT, .offset = 0, .def = "7"},
	{.name = "y", .type = KR_OPT_INT, .offset = sizeof(uint64_t), .def = "8"},
	{0},
};

static const struct kr_option sample_options[] = {
	{.name = "s", .type = KR_OPT_STRING, .offset = offsetof(struct sample, s), .def = "\"dflt\""},
	{.name = "b", .type = KR_OPT_BOOL, .offset = offsetof(struct sample, b), .def = "true"},
	{.name = "i", .type = KR_OPT_INT, .offset = offsetof(struct sample, i), .def = "5", .min = 1,
	 .max = 10},
	{.name = "ms", .type = KR_OPT_DURATION, .offset = offsetof(struct sample, ms), .def = "\"2s\""},
	{.name = "bytes", .type = KR_OPT_SIZE, .offset = offsetof(struct sample, bytes),
	 .def = "\"1KiB\"", .max = 1048576},
	{.name = "scaled", .type = KR_OPT_INT, .offset = offsetof(struct sample, scaled), .def = "3",
	 .scale = 1000},
	{.name = "e", .type = KR_OPT_ENUM, .offset = offsetof(struct sample, e), .values = colours,
	 .def = "\"green\""},
	{.name = "url", .type = KR_OPT_URL, .offset = offsetof(struct sample, url),
	 .values = schemes},
	{.name = "path", .type = KR_OPT_PATH, .offset = offsetof(struct sample, path)},
	{.name = "list", .type = KR_OPT_STRINGS, .offset = offsetof(struct sample, list)},
	{.name = "map", .type = KR_OPT_MAP, .offset = offsetof(struct sample, map)},
	{.name = "nested", .type = KR_OPT_TABLE, .offset = offsetof(struct sample, nested),
	 .table = nested_options},
	{.name = "secret", .type = KR_OPT_SECRET_ENV, .offset = offsetof(struct sample, secret)},
	{0},
};

/* Fills a sample from text; returns the error (err holds the message). */
static enum kr_err fill(const char *text, struct sample *out, struct kr_opts_mem *mem, char *err)
{
	struct kr_json *j = NULL;
	size_t off;
	assert_int_equal(kr_json_parse(text, strlen(text), NULL, &j, &off, err), KR_OK);
	struct kr_opts_src src = {.file = "t.json", .text = text, .len = strlen(text),
				  .base_dir = "/etc/kr", .mem = mem, .err = err};
	memset(out, 0, sizeof *out);
	enum kr_err e = kr_opts_fill(&src, sample_options, j, "$", out);
	/* strings of the struct point into the tree: keep it with the other allocations */
	assert_non_null(kr_opts_keep_json(mem, j));
	return e;
}

static void test_defaults_come_from_the_table(void **state)
{
	(void)state;
	struct sample s;
	struct kr_opts_mem mem = {0};
	char err[KR_ERRBUF];
	assert_int_equal(fill("{}", &s, &mem, err), KR_OK);
	assert_string_equal(s.s, "dflt");
	assert_true(s.b);
	assert_int_equal(s.i, 5);
	assert_int_equal(s.ms, 2000);
	assert_int_equal(s.bytes, 1024);
	assert_int_equal(s.scaled, 3000);
	assert_int_equal(s.e, 1);
	assert_null(s.url);
	assert_null(s.path);
	assert_int_equal(s.list.n, 0);
	assert_int_equal(s.nested.x, 7);
	assert_int_equal(s.nested.y, 8);
	assert_null(s.secret.env);
	kr_opts_mem_free(&mem);
}

static void test_values_of_every_type_are_read(void **state)
{
	(void)state;
	setenv("KR_TEST_OPTIONS_SECRET", "s3cret", 1);
	struct sample s;
	struct kr_opts_mem mem = {0};
	char err[KR_ERRBUF];
	const char *text =
		"{\"s\": \"x\", \"b\": false, \"i\": 10, \"ms\": \"1.5s\", \"bytes\": \"64 KiB\","
		" \"scaled\": 2, \"e\": \"red\", \"url\": \"https://h/p\", \"path\": \"rel/f\","
		" \"list\": [\"a\", \"b\"], \"map\": {\"k\": \"v\"}, \"nested\": {\"y\": 1},"
		" \"secret\": \"KR_TEST_OPTIONS_SECRET\"}";
	if (fill(text, &s, &mem, err) != KR_OK)
		fail_msg("%s", err);
	assert_string_equal(s.s, "x");
	assert_false(s.b);
	assert_int_equal(s.i, 10);
	assert_int_equal(s.ms, 1500);
	assert_int_equal(s.bytes, 65536);
	assert_int_equal(s.scaled, 2000);
	assert_int_equal(s.e, 0);
	assert_string_equal(s.url, "https://h/p");
	assert_string_equal(s.path, "/etc/kr/rel/f");
	assert_int_equal(s.list.n, 2);
	assert_string_equal(s.list.v[1], "b");
	assert_int_equal(s.map.n, 1);
	assert_string_equal(s.map.keys[0], "k");
	assert_string_equal(s.map.values[0], "v");
	assert_int_equal(s.nested.x, 7); /* the nested table's default */
	assert_int_equal(s.nested.y, 1);
	assert_string_equal(s.secret.env, "KR_TEST_OPTIONS_SECRET");
	assert_string_equal(s.secret.value, "s3cret");
	kr_opts_mem_free(&mem);
	/* units of durations and sizes */
	static const struct {
		const char *text;
		uint64_t ms, bytes;
	} units[] = {
		{"{\"ms\": 250, \"bytes\": 10}", 250, 10},
		{"{\"ms\": \"250ms\", \"bytes\": \"10kB\"}", 250, 10000},
		{"{\"ms\": \"5m\", \"bytes\": \"1MiB\"}", 300000, 1048576},
		{"{\"ms\": \"1h\", \"bytes\": \"2K\"}", 3600000, 2048},
	};
	for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
		if (fill(units[i].text, &s, &mem, err) != KR_OK)
			fail_msg("%s: %s", units[i].text, err);
		assert_int_equal(s.ms, units[i].ms);
		assert_int_equal(s.bytes, units[i].bytes);
		kr_opts_mem_free(&mem);
	}
}

/* text must fail at the first occurrence of at, with jpath and msg in the message. */
static void assert_bad(const char *text, const char *at, const char *jpath, const char *msg)
{
	struct sample s;
	struct kr_opts_mem mem = {0};
	char err[KR_ERRBUF] = "";
	if (fill(text, &s, &mem, err) != KR_ERR_CONFIG)
		fail_msg("%s: accepted", text);
	kr_opts_mem_free(&mem);
	const char *p = strstr(text, at);
	assert_non_null(p);
	char prefix[200];
	snprintf(prefix, sizeof prefix, "t.json:1:%zu: %s: ", (size_t)(p - text) + 1, jpath);
	if (strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, msg))
		fail_msg("%s: message '%s', want '%s...%s'", text, err, prefix, msg);
}

static void test_bad_values_name_their_place_and_the_rule(void **state)
{
	(void)state;
	unsetenv("KR_TEST_OPTIONS_UNSET");
	assert_bad("{\"s\": 1}", "1", "$.s", "\"s\" must be a string");
	assert_bad("{\"b\": \"yes\"}", "\"yes\"", "$.b", "true or false");
	assert_bad("{\"i\": 11}", "11", "$.i", "an integer from 1 to 10");
	assert_bad("{\"i\": 0}", "0", "$.i", "an integer from 1 to 10");
	assert_bad("{\"i\": 2.5}", "2.5", "$.i", "an integer");
	assert_bad("{\"ms\": \"soon\"}", "\"soon\"", "$.ms", "a duration");
	assert_bad("{\"ms\": -1}", "-1", "$.ms", "a duration");
	assert_bad("{\"bytes\": \"2MiB\"}", "\"2MiB\"", "$.bytes", "from 0 to 1048576");
	assert_bad("{\"e\": \"blue\"}", "\"blue\"", "$.e", "one of \"red\", \"green\"");
	assert_bad("{\"url\": \"ftp://h\"}", "\"ftp", "$.url", "scheme \"http\", \"https\"");
	assert_bad("{\"url\": \"http://\"}", "\"http", "$.url", "a URL");
	assert_bad("{\"url\": \"h ttp://x\"}", "\"h", "$.url", "a URL");
	assert_bad("{\"path\": \"\"}", "\"\"", "$.path", "a path");
	assert_bad("{\"list\": [\"a\", 2]}", "2", "$.list", "an array of strings");
	assert_bad("{\"list\": []}", "[", "$.list", "must not be empty");
	assert_bad("{\"map\": {\"k\": 1}}", "1", "$.map.k", "must be a string");
	assert_bad("{\"nested\": 5}", "5", "$.nested", "an object");
	assert_bad("{\"nested\": {\"z\": 1}}", "\"z\"", "$.nested", "unknown key \"z\"");
	assert_bad("{\"nested\": {\"xx\": 1}}", "\"xx\"", "$.nested", "did you mean \"x\"?");
	assert_bad("{\"secret\": \"KR_TEST_OPTIONS_UNSET\"}", "\"KR_", "$.secret",
		   "environment variable KR_TEST_OPTIONS_UNSET is not set");
}

static void test_a_secret_value_never_reaches_an_error(void **state)
{
	(void)state;
	setenv("KR_TEST_OPTIONS_BROKEN", "top\nsecret", 1);
	struct sample s;
	struct kr_opts_mem mem = {0};
	char err[KR_ERRBUF] = "";
	assert_int_equal(fill("{\"secret\": \"KR_TEST_OPTIONS_BROKEN\"}", &s, &mem, err),
			 KR_ERR_CONFIG);
	assert_non_null(strstr(err, "KR_TEST_OPTIONS_BROKEN has a line break"));
	assert_null(strstr(err, "secret\n"));
	assert_null(strstr(err, "top"));
	kr_opts_mem_free(&mem);
}

static void test_a_long_path_is_cut_so_that_the_message_stays(void **state)
{
	(void)state;
	char err[KR_ERRBUF], path[2000];
	strcpy(path, "$.rules[0].targets[0].input_transformer.input_paths.");
	size_t n = strlen(path);
	for (; n < sizeof path - 2; n++)
		path[n] = n % 2 ? 'k' : '(';
	path[n - 1] = 'z';
	path[n] = 0;
	assert_int_equal(kr_opts_error_at(err, "conf.json", 5, 26, path, "a variable name is 1 to 256 "
					  "letters, digits, '_' and '-'"),
			 KR_ERR_CONFIG);
	const char *start = "conf.json:5:26: $.rules[0].targets[0].input_transformer";
	assert_memory_equal(err, start, strlen(start));
	assert_non_null(strstr(err, "..."));
	const char *end = "(z: a variable name is 1 to 256 letters, digits, '_' and '-'";
	assert_string_equal(err + strlen(err) - strlen(end), end);
	/* a path that fits is left whole, and without a line the place is the file alone */
	kr_opts_error_at(err, "conf.json", 0, 0, "$.sinks[1].url", "not a URL");
	assert_string_equal(err, "conf.json: $.sinks[1].url: not a URL");
	kr_opts_error_at(err, "conf.json", 3, 9, "$.sinks[1].url", "not a URL");
	assert_string_equal(err, "conf.json:3:9: $.sinks[1].url: not a URL");
}

static void test_update_changes_only_what_is_given(void **state)
{
	(void)state;
	struct {
		uint64_t x, y;
	} n = {100, 200};
	const char *text = "{\"y\": 3}";
	struct kr_json *j = NULL;
	size_t off;
	char err[KR_ERRBUF];
	assert_int_equal(kr_json_parse(text, strlen(text), NULL, &j, &off, err), KR_OK);
	struct kr_opts_mem mem = {0};
	struct kr_opts_src src = {.file = "t.json", .text = text, .len = strlen(text), .mem = &mem,
				  .err = err};
	assert_int_equal(kr_opts_update(&src, nested_options, j, "$", &n), KR_OK);
	assert_int_equal(n.x, 100);
	assert_int_equal(n.y, 3);
	kr_json_free(j);
	kr_opts_mem_free(&mem);
}

/* ---- every option of every plugin, through the config loader ---- */

/* A value option o accepts, as JSON text. */
static void good_value(const struct kr_option *o, char *out, size_t cap)
{
	switch (o->type) {
	case KR_OPT_STRING: snprintf(out, cap, "\"x\""); break;
	case KR_OPT_BOOL: snprintf(out, cap, "true"); break;
	case KR_OPT_INT:
	case KR_OPT_DURATION:
	case KR_OPT_SIZE: snprintf(out, cap, "%llu", (unsigned long long)(o->min ? o->min : 1)); break;
	case KR_OPT_ENUM: snprintf(out, cap, "\"%s\"", o->values[0]); break;
	case KR_OPT_URL: snprintf(out, cap, "\"%s://example.com/x\"", o->values[0]); break;
	case KR_OPT_PATH: snprintf(out, cap, "\"out.jsonl\""); break;
	case KR_OPT_STRINGS:
	case KR_OPT_PATHS: snprintf(out, cap, "[\"in.jsonl\"]"); break;
	case KR_OPT_MAP: snprintf(out, cap, "{\"k\": \"v\"}"); break;
	case KR_OPT_TABLE: snprintf(out, cap, "{}"); break;
	case KR_OPT_SECRET_ENV: snprintf(out, cap, "\"KR_TEST_OPTIONS_SET\""); break;
	case KR_OPT_SINK: snprintf(out, cap, "\"s\""); break;
	case KR_OPT_DOC: snprintf(out, cap, "null"); break;
	}
}

/* A value option o rejects, as JSON text, with the text the error is placed at. */
static const char *bad_value(const struct kr_option *o, const char **at)
{
	switch (o->type) {
	case KR_OPT_STRING: return *at = "4242", "4242";
	case KR_OPT_BOOL: return *at = "\"yes\"", "\"yes\"";
	case KR_OPT_INT: return *at = "-4242", "-4242";
	case KR_OPT_DURATION: return *at = "\"soon\"", "\"soon\"";
	case KR_OPT_SIZE: return *at = "\"huge\"", "\"huge\"";
	case KR_OPT_ENUM: return *at = "\"no-such-value\"", "\"no-such-value\"";
	case KR_OPT_URL: return *at = "\"gopher://x\"", "\"gopher://x\"";
	case KR_OPT_PATH: return *at = "4242", "4242";
	case KR_OPT_STRINGS:
	case KR_OPT_PATHS: return *at = "4242", "[4242]";
	case KR_OPT_MAP: return *at = "4242", "{\"k\": 4242}";
	case KR_OPT_TABLE: return *at = "4242", "4242";
	case KR_OPT_SECRET_ENV: return *at = "\"KR_TEST_OPTIONS_UNSET\"", "\"KR_TEST_OPTIONS_UNSET\"";
	case KR_OPT_SINK: return *at = "\"no-such-sink\"", "\"no-such-sink\"";
	case KR_OPT_DOC: return *at = NULL, NULL;
	}
	return NULL;
}

/* Options a plugin needs set, or set to a value of a certain shape, beyond its required ones
 * (what its validate checks). */
static const struct {
	const char *type, *name, *value;
} needs[] = {
	{"sns", "topic_arn", "\"arn:aws:sns:us-east-1:123456789012:kms\""},
	{"kinesis", "stream_name", "\"kms\""},
};

static const char *needed(const char *type, const char *name)
{
	for (size_t i = 0; i < sizeof needs / sizeof needs[0]; i++)
		if (!strcmp(needs[i].type, type) && !strcmp(needs[i].name, name))
			return needs[i].value;
	return NULL;
}

/* A config with one plugin entry (list "sinks" or "sources") of type, every required option
 * set (and those of needs), and option bad (NULL: none) given a bad value; checks the loader accepts it without and
 * rejects it with an error at the bad value. */
static void one_plugin(const char *list, const char *type, const struct kr_option *common,
		       const struct kr_option *opts, const struct kr_option *bad, int *checked)
{
	char text[4096];
	size_t n = (size_t)snprintf(text, sizeof text, "{\"%s\": [{\"name\": \"s\", \"type\": \"%s\"",
				    list, type);
	const struct kr_option *tables[2] = {common, opts};
	const char *at = NULL;
	for (int t = 0; t < 2; t++)
		for (const struct kr_option *o = tables[t]; o && o->name; o++) {
			if (!strcmp(o->name, "name") || !strcmp(o->name, "type"))
				continue;
			char v[128];
			if (o == bad) {
				const char *b = bad_value(o, &at);
				snprintf(v, sizeof v, "%s", b);
			} else if (needed(type, o->name)) {
				snprintf(v, sizeof v, "%s", needed(type, o->name));
			} else if (o->required) {
				good_value(o, v, sizeof v);
			} else {
				continue;
			}
			n += (size_t)snprintf(text + n, sizeof text - n, ", \"%s\": %s", o->name, v);
		}
	snprintf(text + n, sizeof text - n, "}]%s, \"rules\": []}",
		 strcmp(list, "sinks") ? ", \"sinks\": [{\"name\": \"s\", \"type\": \"log\"}]" : "");
	struct kr_config *c = NULL;
	char err[KR_ERRBUF] = "";
	enum kr_err e = kr_config_parse("cfg.json", text, strlen(text), &c, err);
	if (!bad) {
		if (e != KR_OK)
			fail_msg("%s: rejected: %s", text, err);
		kr_config_free(c);
		return;
	}
	if (e != KR_ERR_CONFIG)
		fail_msg("%s: not rejected (%d)", text, (int)e);
	/* the error is placed at the bad value, with the option's JSON path */
	char key[160];
	snprintf(key, sizeof key, "\"%s\": ", bad->name);
	const char *k = strstr(text, key);
	assert_non_null(k);
	const char *p = strstr(k, at);
	char prefix[256];
	snprintf(prefix, sizeof prefix, "cfg.json:1:%zu: $.%s[0].%s", (size_t)(p - text) + 1, list,
		 bad->name);
	if (strncmp(err, prefix, strlen(prefix)) != 0)
		fail_msg("%s\nmessage '%s' does not start with '%s'", text, err, prefix);
	(*checked)++;
}

static void test_every_option_of_every_plugin_rejects_a_bad_value(void **state)
{
	(void)state;
	setenv("KR_TEST_OPTIONS_SET", "value", 1);
	unsetenv("KR_TEST_OPTIONS_UNSET");
	int checked = 0, plugins = 0;
	for (const struct kr_sink_entry *e = kr_sink_registry; e->type; e++) {
		if (!e->plugin)
			continue;
		plugins++;
		one_plugin("sinks", e->type, kr_sink_common_options, e->plugin->options, NULL,
			   &checked);
		const struct kr_option *tables[2] = {kr_sink_common_options, e->plugin->options};
		for (int t = 0; t < 2; t++)
			for (const struct kr_option *o = tables[t]; o->name; o++)
				if (strcmp(o->name, "name") && strcmp(o->name, "type"))
					one_plugin("sinks", e->type, kr_sink_common_options,
						   e->plugin->options, o, &checked);
	}
	for (const struct kr_source_entry *e = kr_source_registry; e->type; e++) {
		if (!e->plugin)
			continue;
		plugins++;
		one_plugin("sources", e->type, kr_source_common_options, e->plugin->options, NULL,
			   &checked);
		for (const struct kr_option *o = e->plugin->options; o->name; o++)
			one_plugin("sources", e->type, kr_source_common_options, e->plugin->options, o,
				   &checked);
	}
	assert_true(plugins >= 3); /* log, http, file */
	assert_true(checked >= 20);
}

/* Every default in every table is a value its own option accepts. */
static void test_every_default_is_valid(void **state)
{
	(void)state;
	const struct kr_option *tables[16];
	size_t nt = 0;
	tables[nt++] = kr_config_options;
	tables[nt++] = kr_sink_common_options;
	tables[nt++] = kr_source_common_options;
	tables[nt++] = kr_target_options;
	for (const struct kr_sink_entry *e = kr_sink_registry; e->type && nt < 16; e++)
		if (e->plugin)
			tables[nt++] = e->plugin->options;
	for (const struct kr_source_entry *e = kr_source_registry; e->type && nt < 16; e++)
		if (e->plugin)
			tables[nt++] = e->plugin->options;
	static char scratch[4096];
	for (size_t t = 0; t < nt; t++) {
		struct kr_opts_mem mem = {0};
		char err[KR_ERRBUF] = "";
		struct kr_opts_src src = {.file = "defaults", .mem = &mem, .err = err};
		memset(scratch, 0, sizeof scratch);
		/* a table's struct is at most a few hundred bytes: scratch holds any of them */
		for (const struct kr_option *o = tables[t]; o->name; o++)
			assert_true(o->offset < sizeof scratch - 64);
		if (kr_opts_defaults(&src, tables[t], scratch) != KR_OK)
			fail_msg("table %zu: %s", t, err);
		kr_opts_mem_free(&mem);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_come_from_the_table),
		cmocka_unit_test(test_values_of_every_type_are_read),
		cmocka_unit_test(test_bad_values_name_their_place_and_the_rule),
		cmocka_unit_test(test_a_secret_value_never_reaches_an_error),
		cmocka_unit_test(test_a_long_path_is_cut_so_that_the_message_stays),
		cmocka_unit_test(test_update_changes_only_what_is_given),
		cmocka_unit_test(test_every_option_of_every_plugin_rejects_a_bad_value),
		cmocka_unit_test(test_every_default_is_valid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
