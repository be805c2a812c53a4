/* Name indexes (see names.h). */
#include "names.h"

#include <stdlib.h>
#include <string.h>

uint64_t kr_name_hash(const char *s)
{
	uint64_t h = 14695981039346656037ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

size_t kr_names_find(const struct kr_names *x, const char *name)
{
	if (!x->cap)
		return KR_NAME_ABSENT;
	uint64_t h = kr_name_hash(name);
	for (size_t j = h & (x->cap - 1); x->slots[j].name; j = (j + 1) & (x->cap - 1))
		if (x->slots[j].hash == h && strcmp(x->slots[j].name, name) == 0)
			return x->slots[j].value;
	return KR_NAME_ABSENT;
}

static void place(struct kr_name_slot *slots, size_t cap, const struct kr_name_slot *s)
{
	size_t j = s->hash & (cap - 1);
	while (slots[j].name)
		j = (j + 1) & (cap - 1);
	slots[j] = *s;
}

bool kr_names_reserve(struct kr_names *x, size_t n)
{
	if (n * 2 <= x->cap)
		return true;
	if (n > SIZE_MAX / 4)
		return false;
	size_t cap = x->cap ? x->cap : 64;
	while (cap < n * 2)
		cap *= 2;
	struct kr_name_slot *slots = calloc(cap, sizeof *slots);
	if (!slots)
		return false;
	for (size_t i = 0; i < x->cap; i++)
		if (x->slots[i].name)
			place(slots, cap, &x->slots[i]);
	free(x->slots);
	x->slots = slots;
	x->cap = cap;
	return true;
}

bool kr_names_add(struct kr_names *x, const char *name, size_t value)
{
	if (!kr_names_reserve(x, x->n + 1))
		return false;
	struct kr_name_slot s = {name, kr_name_hash(name), value};
	place(x->slots, x->cap, &s);
	x->n++;
	return true;
}

void kr_names_clear(struct kr_names *x)
{
	if (x->slots)
		memset(x->slots, 0, x->cap * sizeof *x->slots);
	x->n = 0;
}

void kr_names_free(struct kr_names *x)
{
	free(x->slots);
	*x = (struct kr_names){0};
}
