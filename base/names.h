/* kr_names: an index of names (NUL-terminated strings the caller keeps alive and unchanged) to
 * numbers, so that one is found among thousands without comparing it with each: open
 * addressing, at most half full, each slot keeping its name's hash (a probe compares names only
 * when the hashes are equal, and growing does not read the names again). Zero-initialised is
 * empty. Pure functions, any thread (one index per thread). */
#ifndef KR_NAMES_H
#define KR_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kr_name_slot {
	const char *name; /* NULL: free */
	uint64_t hash;
	size_t value;
};

struct kr_names {
	struct kr_name_slot *slots;
	size_t n, cap;
};

#define KR_NAME_ABSENT SIZE_MAX

/* FNV-1a of a name. */
uint64_t kr_name_hash(const char *s);
/* The value name was added with, or KR_NAME_ABSENT. */
size_t kr_names_find(const struct kr_names *x, const char *name);
/* Adds name, which is not there yet, with value; false when out of memory (x as it was). */
bool kr_names_add(struct kr_names *x, const char *name, size_t value);
/* Room for n names in all without growing; false when out of memory. */
bool kr_names_reserve(struct kr_names *x, size_t n);
/* Forgets every name, keeping the room. */
void kr_names_clear(struct kr_names *x);
void kr_names_free(struct kr_names *x);

#endif
