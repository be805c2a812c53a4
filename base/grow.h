/* kr_grow: room for more elements in an array that doubles as it fills, the pattern of every
 * growing list in kmsrouter, in one place with its overflow checks. Pure functions, any
 * thread. */
#ifndef KR_GROW_H
#define KR_GROW_H

#include <stdbool.h>
#include <stddef.h>

bool kr_grow_slow(void *array, size_t *cap, size_t need, size_t elem, size_t first);

/* Makes the array whose pointer is at array (the address of a T * holding *cap elements of
 * elem bytes) hold at least need elements: when it does not, realloc moves it to twice its
 * capacity, or more until need fits (first elements when it has none), and *cap is the new
 * capacity. False when out of memory or when the size would overflow, and then the array and
 * *cap are as they were. */
static inline bool kr_grow(void *array, size_t *cap, size_t need, size_t elem, size_t first)
{
	return need <= *cap || kr_grow_slow(array, cap, need, elem, first);
}

#endif
