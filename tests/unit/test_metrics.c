/* Unit tests for router/io/metrics.h: one series per name (found again by its name among
 * thousands), rendered in the order they were made; an input's lag forgotten and made again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

#define RULES 5000

static void test_each_name_has_one_series_found_again_among_thousands(void **state)
{
	(void)state;
	struct kr_metrics *m = kr_metrics_new();
	static struct kr_rule_stats *cell[RULES];
	char name[32];
	for (int i = 0; i < RULES; i++) {
		snprintf(name, sizeof name, "rule-%d", i);
		cell[i] = kr_metrics_rule(m, name);
		assert_non_null(cell[i]);
		kr_metrics_count(&cell[i]->matched, (uint64_t)i);
	}
	for (int i = 0; i < RULES; i++) {
		snprintf(name, sizeof name, "rule-%d", i);
		assert_ptr_equal(kr_metrics_rule(m, name), cell[i]);
		for (int j = i + 1; j < i + 3 && j < RULES; j++)
			assert_ptr_not_equal(cell[i], cell[j]);
	}
	/* a sink of a rule's name is a series of its own */
	struct kr_sink_stats *s = kr_metrics_sink(m, "rule-7");
	assert_non_null(s);
	assert_ptr_equal(kr_metrics_sink(m, "rule-7"), s);
	/* rendered in the order they were made, each with its count */
	kr_metrics_publish(m);
	const char *text = kr_metrics_text(m);
	assert_non_null(text);
	const char *at = text;
	for (int i = 0; i < RULES; i += 499) {
		char want[80];
		snprintf(want, sizeof want, "{rule=\"rule-%d\"} %d\n", i, i);
		const char *f = strstr(at, want);
		if (!f)
			fail_msg("'%s' not rendered after the rules before it", want);
		at = f;
	}
	kr_metrics_free(m);
}

static void test_an_input_forgotten_is_made_again_and_the_others_stay(void **state)
{
	(void)state;
	struct kr_metrics *m = kr_metrics_new();
	int64_t *lag[100];
	char input[32];
	for (int i = 0; i < 100; i++) {
		snprintf(input, sizeof input, "p%d", i);
		lag[i] = kr_metrics_input_lag(m, "kafka", input);
		kr_metrics_set(lag[i], i);
	}
	for (int i = 0; i < 100; i += 3) {
		snprintf(input, sizeof input, "p%d", i);
		kr_metrics_input_forget(m, "kafka", input);
	}
	for (int i = 0; i < 100; i++) {
		snprintf(input, sizeof input, "p%d", i);
		int64_t *c = kr_metrics_input_lag(m, "kafka", input);
		if (i % 3)
			assert_ptr_equal(c, lag[i]); /* kept, with its value */
		else
			assert_int_equal(*c, 0); /* made again, from nothing */
		if (i % 3)
			assert_int_equal(*c, i);
	}
	kr_metrics_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_each_name_has_one_series_found_again_among_thousands),
		cmocka_unit_test(test_an_input_forgotten_is_made_again_and_the_others_stay),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
