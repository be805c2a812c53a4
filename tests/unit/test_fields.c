/* Unit tests for router/pipeline/fields.h: templates (placeholders, text, incomplete fills,
 * refused placeholders) and message attribute values and names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fields.h"

static const char event[] =
	"{\"id\":\"e-1\",\"detail-type\":\"KMS CMK Deletion\",\"account\":\"111122223333\","
	"\"n\":42.50,\"flag\":true,\"none\":null,\"empty\":\"\",\"obj\":{\"a\":1},"
	"\"resources\":[\"arn:1\",\"arn:2\"],\"detail\":{\"key-id\":\"k-9\"}}";

static void fill_is(const char *tmpl, struct kr_event_text *ev, const char *want,
		    bool want_complete)
{
	char err[KR_ERRBUF];
	struct kr_tmpl *t = kr_tmpl_new(tmpl, err);
	assert_non_null(t);
	struct kr_buf b = {0};
	bool complete;
	assert_true(kr_tmpl_fill(t, ev, &b, &complete));
	assert_true(kr_buf_append(&b, "", 1));
	assert_string_equal(b.p, want);
	assert_int_equal(complete, want_complete);
	kr_buf_free(&b);
	kr_tmpl_free(t);
}

static void test_templates(void **state)
{
	(void)state;
	struct kr_event_text e = kr_event_text_of(event, sizeof event - 1), *ev = &e;
	assert_non_null(e.text);
	fill_is("<$.detail.key-id>", ev, "k-9", true);
	fill_is("acct-<$.account>/<$.detail-type>", ev, "acct-111122223333/KMS CMK Deletion", true);
	fill_is("<$.n>:<$.flag>", ev, "42.50:true", true);
	fill_is("<$.resources[1]>", ev, "arn:2", true);
	fill_is("a < b <not a placeholder>", ev, "a < b <not a placeholder>", true);
	fill_is("plain", ev, "plain", true);
	/* absent, null, object, array: nothing, and incomplete */
	fill_is("x<$.missing>y", ev, "xy", false);
	fill_is("<$.none>", ev, "", false);
	fill_is("<$.obj>", ev, "", false);
	fill_is("<$.resources>", ev, "", false);
	fill_is("<$.resources[5]>", ev, "", false);
	/* no event (a dead letter of an invalid record) */
	fill_is("id-<$.id>", NULL, "id-", false);
	struct kr_event_text none = kr_event_text_of(NULL, 0);
	fill_is("id-<$.id>", &none, "id-", false);
	/* escapes decoded, white space and a repeated key as the parser reads them */
	static const char esc[] = " {\"id\" : \"x\",\"id\":\"a\\\"b\\u00e9\\n\", \"detail\" :{ \"key\\u002did\": 7 } } ";
	struct kr_event_text e2 = kr_event_text_of(esc, sizeof esc - 1);
	fill_is("<$.id>|<$.detail.key-id>", &e2, "a\"b\xc3\xa9\n|7", true);

	char err[KR_ERRBUF];
	struct kr_tmpl *t = kr_tmpl_new("const", err);
	assert_true(kr_tmpl_constant(t));
	kr_tmpl_free(t);
	t = kr_tmpl_new("<$.id>", err);
	assert_false(kr_tmpl_constant(t));
	kr_tmpl_free(t);
	assert_null(kr_tmpl_new("<$.detail.key-id", err));
	assert_non_null(strstr(err, "has no '>'"));
	assert_null(kr_tmpl_new("<$>", err));
	assert_non_null(strstr(err, "JSONPath"));
	assert_null(kr_tmpl_new("<$.a..b>", err));
	assert_non_null(strstr(err, "empty name"));
	assert_null(kr_tmpl_new("<$.a[x]>", err));
	assert_non_null(strstr(err, "index"));
}

static void test_attributes(void **state)
{
	(void)state;
	struct kr_event_text e = kr_event_text_of(event, sizeof event - 1), *ev = &e;
	struct kr_buf scratch = {0};
	size_t n;
	bool num;
	const char *v = kr_attr_value(ev, "$.detail.key-id", &scratch, &n, &num);
	assert_non_null(v);
	assert_int_equal(n, 3);
	assert_memory_equal(v, "k-9", 3);
	assert_false(num);
	v = kr_attr_value(ev, "$.n", &scratch, &n, &num);
	assert_memory_equal(v, "42.50", 5);
	assert_true(num);
	assert_memory_equal(kr_attr_value(ev, "$.flag", &scratch, &n, &num), "true", 4);
	assert_false(num);
	assert_null(kr_attr_value(ev, "$.empty", &scratch, &n, &num));
	assert_null(kr_attr_value(ev, "$.none", &scratch, &n, &num));
	assert_null(kr_attr_value(ev, "$.obj", &scratch, &n, &num));
	assert_null(kr_attr_value(ev, "$.missing", &scratch, &n, &num));
	assert_null(kr_attr_value(NULL, "$.id", &scratch, &n, &num));
	/* a string with escapes is decoded into scratch */
	static const char esc[] = "{\"detail\":{\"key-id\":\"k\\u002d9\\t\"}}";
	struct kr_event_text e2 = kr_event_text_of(esc, sizeof esc - 1);
	v = kr_attr_value(&e2, "$.detail.key-id", &scratch, &n, &num);
	assert_int_equal(n, 4);
	assert_memory_equal(v, "k-9\t", 4);
	assert_ptr_equal(v, scratch.p);
	kr_buf_free(&scratch);
	assert_string_equal(kr_attr_name("$.detail.key-id"), "key-id");
	assert_string_equal(kr_attr_name("$.source"), "source");
	assert_null(kr_attr_path_check("$.detail.key-id"));
	assert_non_null(kr_attr_path_check("$.resources[0]"));
	assert_non_null(kr_attr_path_check("detail"));
	assert_non_null(kr_attr_path_check("$."));
	/* not an object: no event */
	assert_null(kr_event_text_of("[1]", 3).text);
	assert_null(kr_event_text_of(" 7", 2).text);
	assert_null(kr_event_text_of(NULL, 0).text);
	assert_non_null(kr_event_text_of(" {}", 3).text);
}

static void test_event_time(void **state)
{
	(void)state;
	static const char t1[] = "{\"time\":\"2016-08-19T03:23:45Z\"}",
			  t2[] = "{\"time\":\"2016-08-19T03:23:45\\u005a\"}", t3[] = "{\"time\":5}",
			  t4[] = "{\"detail\":{\"time\":\"2016-08-19T03:23:45Z\"}}";
	struct kr_event_text e1 = kr_event_text_of(t1, sizeof t1 - 1),
			     e2 = kr_event_text_of(t2, sizeof t2 - 1),
			     e3 = kr_event_text_of(t3, sizeof t3 - 1),
			     e4 = kr_event_text_of(t4, sizeof t4 - 1);
	assert_int_equal(kr_event_time_ms(&e1), 1471577025000LL);
	assert_int_equal(kr_event_time_ms(&e2), 1471577025000LL);
	assert_int_equal(kr_event_time_ms(&e3), -1);
	assert_int_equal(kr_event_time_ms(&e4), -1);
	assert_int_equal(kr_event_time_ms(NULL), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_templates),
		cmocka_unit_test(test_attributes),
		cmocka_unit_test(test_event_time),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
