/* See mem.h. */
#include "mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

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
