/* Unit tests for base/grow.h: an array doubles from its first capacity until what it needs fits,
 * keeps its elements when it moves, stays where it is while it has room, and is left as it was
 * when the size would overflow. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "grow.h"

struct item {
	uint64_t a, b;
};

static void test_doubles_from_first_and_keeps_the_elements(void **state)
{
	(void)state;
	struct item *v = NULL;
	size_t n = 0, cap = 0;
	assert_true(kr_grow(&v, &cap, 0, sizeof *v, 4)); /* nothing needed: nothing done */
	assert_null(v);
	assert_int_equal(cap, 0);
	size_t caps[8], ncaps = 0;
	for (uint64_t i = 0; i < 100; i++) {
		size_t before = cap;
		assert_true(kr_grow(&v, &cap, n + 1, sizeof *v, 4));
		if (cap != before)
			caps[ncaps++] = cap;
		v[n++] = (struct item){i, ~i};
	}
	size_t want[] = {4, 8, 16, 32, 64, 128};
	assert_int_equal(ncaps, 6);
	for (size_t i = 0; i < ncaps; i++)
		assert_int_equal(caps[i], want[i]);
	for (uint64_t i = 0; i < 100; i++) {
		assert_int_equal(v[i].a, i);
		assert_int_equal(v[i].b, ~i);
	}
	/* room enough: the same array */
	struct item *same = v;
	assert_true(kr_grow(&v, &cap, 128, sizeof *v, 4));
	assert_ptr_equal(v, same);
	assert_int_equal(cap, 128);
	/* more than twice at once: doubled until it fits */
	assert_true(kr_grow(&v, &cap, 1000, sizeof *v, 4));
	assert_int_equal(cap, 1024);
	assert_int_equal(v[99].a, 99);
	free(v);
}

static void test_first_zero_starts_at_one(void **state)
{
	(void)state;
	char *p = NULL;
	size_t cap = 0;
	assert_true(kr_grow(&p, &cap, 1, 1, 0));
	assert_int_equal(cap, 1);
	assert_true(kr_grow(&p, &cap, 3, 1, 0));
	assert_int_equal(cap, 4);
	free(p);
}

static void test_overflow_leaves_the_array_as_it_was(void **state)
{
	(void)state;
	uint64_t *v = NULL;
	size_t cap = 0;
	assert_true(kr_grow(&v, &cap, 3, sizeof *v, 2));
	assert_int_equal(cap, 4);
	v[3] = 42;
	uint64_t *before = v;
	/* the element count fits a size_t, the bytes do not */
	assert_false(kr_grow(&v, &cap, SIZE_MAX / 4, sizeof *v, 2));
	assert_ptr_equal(v, before);
	assert_int_equal(cap, 4);
	/* the doubling itself would overflow */
	assert_false(kr_grow(&v, &cap, SIZE_MAX, 1, 2));
	assert_ptr_equal(v, before);
	assert_int_equal(cap, 4);
	assert_int_equal(v[3], 42);
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_doubles_from_first_and_keeps_the_elements),
		cmocka_unit_test(test_first_zero_starts_at_one),
		cmocka_unit_test(test_overflow_leaves_the_array_as_it_was),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
