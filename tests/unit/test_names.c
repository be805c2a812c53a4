/* Unit tests for base/names.h: names found with the value they were added with among
 * thousands, absent ones not found, reserve and clear keeping the room. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "names.h"

#define N 10000

static char names[N][16];

static void test_names_are_found_with_their_values_and_others_are_not(void **state)
{
	(void)state;
	struct kr_names x = {0};
	assert_int_equal(kr_names_find(&x, "a"), KR_NAME_ABSENT);
	for (size_t i = 0; i < N; i++) {
		snprintf(names[i], sizeof names[i], "rule-%zu", i);
		assert_true(kr_names_add(&x, names[i], i * 3));
	}
	assert_int_equal(x.n, N);
	assert_true(x.cap >= 2 * N);
	for (size_t i = 0; i < N; i++)
		assert_int_equal(kr_names_find(&x, names[i]), i * 3);
	assert_int_equal(kr_names_find(&x, "rule-10000"), KR_NAME_ABSENT);
	assert_int_equal(kr_names_find(&x, "rule-"), KR_NAME_ABSENT);
	assert_int_equal(kr_names_find(&x, ""), KR_NAME_ABSENT);
	/* cleared: nothing is found, the room stays, and names go in again without growing */
	size_t cap = x.cap;
	kr_names_clear(&x);
	assert_int_equal(x.n, 0);
	assert_int_equal(kr_names_find(&x, names[7]), KR_NAME_ABSENT);
	for (size_t i = 0; i < N / 2; i++)
		assert_true(kr_names_add(&x, names[i], i));
	assert_int_equal(x.cap, cap);
	assert_int_equal(kr_names_find(&x, names[N / 2 - 1]), N / 2 - 1);
	assert_int_equal(kr_names_find(&x, names[N / 2]), KR_NAME_ABSENT);
	kr_names_free(&x);
	assert_null(x.slots);
}

static void test_reserve_makes_room_once(void **state)
{
	(void)state;
	struct kr_names x = {0};
	assert_true(kr_names_reserve(&x, 1000));
	size_t cap = x.cap;
	assert_true(cap >= 2000);
	for (size_t i = 0; i < 1000; i++) {
		snprintf(names[i], sizeof names[i], "s%zu", i);
		assert_true(kr_names_add(&x, names[i], i));
	}
	assert_int_equal(x.cap, cap);
	assert_int_equal(kr_name_hash("a"), kr_name_hash("a"));
	assert_true(kr_name_hash("a") != kr_name_hash("b"));
	kr_names_free(&x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_are_found_with_their_values_and_others_are_not),
		cmocka_unit_test(test_reserve_makes_room_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
