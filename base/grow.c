/* See grow.h. */
#include "grow.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

bool kr_grow_slow(void *array, size_t *cap, size_t need, size_t elem, size_t first)
{
	size_t c = *cap ? *cap : (first ? first : 1);
	while (c < need) {
		if (c > SIZE_MAX / 2)
			return false;
		c *= 2;
	}
	if (elem && c > SIZE_MAX / elem)
		return false;
	void *p;
	memcpy(&p, array, sizeof p); /* the caller's T *, whatever T is */
	void *np = realloc(p, c * elem);
	if (!np)
		return false;
	memcpy(array, &np, sizeof np);
	*cap = c;
	return true;
}
