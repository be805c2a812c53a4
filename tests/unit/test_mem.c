/* Unit tests for parsers/mem.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mem.h"

static void test_small_allocations_keep_the_asked_alignment(void **state)
{
	(void)state;
	size_t sizes[] = {1, 100, 128, 4097, 300000};
	size_t aligns[] = {8, 64, 128, 4096};
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		for (size_t a = 0; a < sizeof aligns / sizeof aligns[0]; a++) {
			char *p = kr_big_alloc(sizes[i], aligns[a], KR_HUGE_PAGE);
			assert_non_null(p);
			assert_int_equal((uintptr_t)p % aligns[a], 0);
			memset(p, 0x5a, sizes[i]); /* all of it is ours (ASan would say otherwise) */
			assert_int_equal(p[sizes[i] - 1], 0x5a);
			free(p);
		}
	}
}

static void test_big_allocations_sit_on_whole_huge_pages(void **state)
{
	(void)state;
	size_t sizes[] = {KR_HUGE_PAGE / 2, KR_HUGE_PAGE, KR_HUGE_PAGE + 1, 3 * KR_HUGE_PAGE - 5};
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		char *p = kr_big_alloc(sizes[i], 64, KR_HUGE_PAGE / 2);
		assert_non_null(p);
		assert_int_equal((uintptr_t)p % KR_HUGE_PAGE, 0);
		memset(p, 0xa5, sizes[i]);
		assert_int_equal(p[0] & 0xff, 0xa5);
		assert_int_equal(p[sizes[i] - 1] & 0xff, 0xa5);
		free(p);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_small_allocations_keep_the_asked_alignment),
		cmocka_unit_test(test_big_allocations_sit_on_whole_huge_pages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
