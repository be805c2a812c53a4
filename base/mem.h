/* Big, long-lived tables (a rule index, a parsed configuration) in 2 MiB pages.
 *
 * Where the kernel offers transparent huge pages on request (madvise), a table that is read at
 * random, like an index with thousands of keys, costs one TLB entry instead of hundreds, and its
 * first touch one page fault per 2 MiB instead of one per 4 KiB: both dear in a virtual machine,
 * where a TLB miss walks two page tables. Elsewhere this is an ordinary allocation. */
#ifndef KR_MEM_H
#define KR_MEM_H

#include <stddef.h>

#define KR_HUGE_PAGE ((size_t)2 << 20)

/* bytes of memory aligned to align (a power of two, at most KR_HUGE_PAGE); from big_from bytes
 * on, rounded up to whole 2 MiB pages and asked to be backed by huge pages. Not zeroed; free it
 * with free(). */
void *kr_big_alloc(size_t bytes, size_t align, size_t big_from);

#endif
