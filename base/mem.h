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

/* The same for the whole malloc heap, called first thing in main: blocks up to 8 MiB come from
 * the heap (glibc maps each block from 128 KiB on afresh, so a request buffer or a 1 MiB slab of
 * a batching sink is faulted in page by page every time; bigger ones are still mapped apart and
 * given back when freed), the heap grows 16 MiB at a time and keeps up to 32 MiB free, and the
 * heap as it is then is asked to be backed by huge pages. kr_mem_heap_grown() asks the same for
 * what the heap grew by since: the event loop calls it once a round (it makes no system call
 * when the heap did not grow). Loading 10,000 rules takes 500 to 700 page faults instead of
 * 2,500. Does nothing where the C library is not glibc or the kernel has no
 * madvise(MADV_HUGEPAGE). */
void kr_mem_init(void);
void kr_mem_heap_grown(void);

#endif
