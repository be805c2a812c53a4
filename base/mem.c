/* See mem.h. */
#include "mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

void *kr_big_alloc(size_t bytes, size_t align, size_t big_from)
{
	if (bytes < big_from || bytes > SIZE_MAX - KR_HUGE_PAGE) {
		size_t rounded = (bytes + align - 1) & ~(align - 1); /* C11: a multiple of align */
		return aligned_alloc(align, rounded ? rounded : align);
	}
	size_t rounded = (bytes + KR_HUGE_PAGE - 1) & ~(KR_HUGE_PAGE - 1);
	void *p = aligned_alloc(KR_HUGE_PAGE, rounded);
#ifdef MADV_HUGEPAGE
	if (p)
		(void)madvise(p, rounded, MADV_HUGEPAGE); /* a hint: 4 KiB pages work as well */
#endif
	return p;
}

#if defined(__GLIBC__) && defined(MADV_HUGEPAGE)
#define HEAP_PAD ((size_t)16 << 20)

static uintptr_t heap_base;    /* the heap's first huge page (0: kr_mem_init did not find it) */
static uintptr_t heap_advised; /* advised from heap_base up to here */

static uintptr_t page_down(uintptr_t a)
{
	return a & ~(uintptr_t)(KR_HUGE_PAGE - 1);
}

void kr_mem_heap_grown(void)
{
	if (!heap_base)
		return;
	uintptr_t end = page_down((uintptr_t)sbrk(0)); /* no system call: glibc keeps the break */
	if (end > heap_advised)
		(void)madvise((void *)heap_advised, end - heap_advised, MADV_HUGEPAGE); /* a hint */
	/* when the heap shrank, what grows back is a new mapping, to be advised again */
	heap_advised = end > heap_base ? end : heap_base;
}

void kr_mem_init(void)
{
	if (heap_base)
		return;
	(void)mallopt(M_MMAP_THRESHOLD, 8 << 20);
	(void)mallopt(M_TOP_PAD, (int)HEAP_PAD);
	(void)mallopt(M_TRIM_THRESHOLD, (int)(2 * HEAP_PAD));
	/* grows the heap by the block and HEAP_PAD (given back, down to HEAP_PAD spare, only past
	   2 * HEAP_PAD) */
	void *p = malloc(KR_HUGE_PAGE);
	uintptr_t at = (uintptr_t)p, brk = (uintptr_t)sbrk(0);
	free(p);
	if (!at || at > brk) /* not from the heap: glibc could not move the break */
		return;
	heap_base = page_down(at + KR_HUGE_PAGE - 1);
	heap_advised = heap_base;
	kr_mem_heap_grown();
}
#else
void kr_mem_init(void)
{
}

void kr_mem_heap_grown(void)
{
}
#endif
