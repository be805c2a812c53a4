/* Unit tests for router/pipeline/retry.h: the retry policy's attempts, maximum age, exponential
 * back-off with full jitter, and the service's "not before". */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "retry.h"

static const struct kr_retry_cfg policy = {.max_attempts = 5, .max_age_ms = 60000,
					   .initial_backoff_ms = 100, .max_backoff_ms = 1000};

static void test_attempts_and_age_end_the_retries(void **state)
{
	(void)state;
	uint64_t d;
	assert_true(kr_retry_delay(&policy, 4, 0, 0, 7, &d));
	assert_false(kr_retry_delay(&policy, 5, 0, 0, 7, &d));
	assert_false(kr_retry_delay(&policy, 1, 60000, 0, 7, &d));
	/* never past the event's maximum age */
	assert_true(kr_retry_delay(&policy, 4, 59990, 0, 999, &d));
	assert_int_equal(d, 10);
}

static void test_the_backoff_doubles_up_to_its_bound_with_full_jitter(void **state)
{
	(void)state;
	uint64_t d, caps[] = {100, 200, 400, 800, 1000};
	for (uint64_t attempt = 1; attempt <= 4; attempt++) {
		uint64_t cap = caps[attempt - 1];
		/* random % (cap + 1): every value from 0 to cap can come */
		assert_true(kr_retry_delay(&policy, attempt, 0, 0, cap, &d));
		assert_int_equal(d, cap);
		assert_true(kr_retry_delay(&policy, attempt, 0, 0, cap + 1, &d));
		assert_int_equal(d, 0);
	}
	struct kr_retry_cfg many = policy;
	many.max_attempts = 100;
	assert_true(kr_retry_delay(&many, 60, 0, 0, UINT64_MAX, &d));
	assert_true(d <= 1000);
}

static void test_never_before_the_service_says(void **state)
{
	(void)state;
	uint64_t d;
	assert_true(kr_retry_delay(&policy, 1, 0, 5000, 3, &d));
	assert_int_equal(d, 5000); /* Retry-After beyond the back-off */
	assert_true(kr_retry_delay(&policy, 1, 58000, 5000, 3, &d));
	assert_int_equal(d, 2000); /* but not past the maximum age */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_attempts_and_age_end_the_retries),
		cmocka_unit_test(test_the_backoff_doubles_up_to_its_bound_with_full_jitter),
		cmocka_unit_test(test_never_before_the_service_says),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
