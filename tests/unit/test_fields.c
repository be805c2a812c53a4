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

static void fill_is(const char *tmpl, const struct kr_json *ev, const char *want,
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
	struct kr_json *ev = kr_event_parse(event, sizeof event - 1);
	assert_non_null(ev);
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
	kr_json_free(ev);

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
	struct kr_json *ev = kr_event_parse(event, sizeof event - 1);
	size_t n;
	bool num;
	const char *v = kr_attr_value(ev, "$.detail.key-id", &n, &num);
	assert_non_null(v);
	assert_int_equal(n, 3);
	assert_false(num);
	v = kr_attr_value(ev, "$.n", &n, &num);
	assert_memory_equal(v, "42.50", 5);
	assert_true(num);
	assert_memory_equal(kr_attr_value(ev, "$.flag", &n, &num), "true", 4);
	assert_false(num);
	assert_null(kr_attr_value(ev, "$.empty", &n, &num));
	assert_null(kr_attr_value(ev, "$.none", &n, &num));
	assert_null(kr_attr_value(ev, "$.obj", &n, &num));
	assert_null(kr_attr_value(ev, "$.missing", &n, &num));
	assert_null(kr_attr_value(NULL, "$.id", &n, &num));
	assert_string_equal(kr_attr_name("$.detail.key-id"), "key-id");
	assert_string_equal(kr_attr_name("$.source"), "source");
	assert_null(kr_attr_path_check("$.detail.key-id"));
	assert_non_null(kr_attr_path_check("$.resources[0]"));
	assert_non_null(kr_attr_path_check("detail"));
	assert_non_null(kr_attr_path_check("$."));
	kr_json_free(ev);
	/* not an object, not JSON */
	assert_null(kr_event_parse("[1]", 3));
	assert_null(kr_event_parse("{\"a\":", 5));
	assert_null(kr_event_parse(NULL, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_templates),
		cmocka_unit_test(test_attributes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
