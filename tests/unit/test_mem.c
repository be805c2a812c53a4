/* Unit tests for base/mem.h. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

/* The VmFlags line of the mapping holding addr in /proc/self/smaps ("" when not found). */
static void vm_flags(uintptr_t addr, char *out, size_t cap)
{
	out[0] = 0;
	FILE *f = fopen("/proc/self/smaps", "r");
	if (!f)
		return;
	char line[512];
	bool in = false;
	while (fgets(line, sizeof line, f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
			in = addr >= lo && addr < hi;
		else if (in && strncmp(line, "VmFlags:", 8) == 0) {
			size_t l = strlen(line + 8);
			l = l < cap ? l : cap - 1;
			memcpy(out, line + 8, l);
			out[l] = 0;
			break;
		}
	}
	fclose(f);
}

/* Whether the kernel gives huge pages on madvise (and this is glibc's malloc, not a sanitizer's
 * or valgrind's, whose blocks are not on the heap). */
static bool heap_can_be_advised(void)
{
	char mode[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	if (!f)
		return false;
	bool ok = fgets(mode, sizeof mode, f) && !strstr(mode, "[never]");
	fclose(f);
	void *p = malloc(64);
	bool on_heap = p && (uintptr_t)p < (uintptr_t)sbrk(0);
	free(p);
	return ok && on_heap;
}

static void test_the_heap_and_what_it_grows_by_are_advised_huge(void **state)
{
	(void)state;
	if (!heap_can_be_advised())
		skip();
	kr_mem_init();
	kr_mem_init(); /* twice is once */
	char flags[256];
	/* a block of 4 MiB comes from the heap (glibc would map it apart), inside the part
	   kr_mem_init advised */
	char *p = malloc(4 << 20);
	assert_non_null(p);
	assert_true((uintptr_t)p < (uintptr_t)sbrk(0));
	uintptr_t mid = ((uintptr_t)p + KR_HUGE_PAGE) & ~(uintptr_t)(KR_HUGE_PAGE - 1);
	vm_flags(mid, flags, sizeof flags);
	assert_non_null(strstr(flags, " hg"));
	/* 40 MiB more in blocks of 4 MiB, past what the heap had spare: new mappings past the
	   advised part, advised once kr_mem_heap_grown runs */
	char *blocks[10];
	for (size_t i = 0; i < 10; i++) {
		blocks[i] = malloc(4 << 20);
		assert_non_null(blocks[i]);
		assert_true((uintptr_t)blocks[i] < (uintptr_t)sbrk(0));
	}
	uintptr_t far = ((uintptr_t)blocks[9] + (2 << 20)) & ~(uintptr_t)(KR_HUGE_PAGE - 1);
	vm_flags(far, flags, sizeof flags);
	assert_null(strstr(flags, " hg"));
	kr_mem_heap_grown();
	vm_flags(far, flags, sizeof flags);
	assert_non_null(strstr(flags, " hg"));
	memset(blocks[9], 1, 4 << 20);
	for (size_t i = 0; i < 10; i++)
		free(blocks[i]);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_small_allocations_keep_the_asked_alignment),
		cmocka_unit_test(test_big_allocations_sit_on_whole_huge_pages),
		cmocka_unit_test(test_the_heap_and_what_it_grows_by_are_advised_huge),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
