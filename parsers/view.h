/* kr_paths and kr_view: the fields of an event that the loaded rules look at.
 *
 * kr_paths is a trie of field paths (one segment per object key) built once per configuration by
 * the rule compiler; each path that a rule tests has a slot number. The stream parser walks the trie
 * while yajl reports keys, so fields no rule looks at cost nothing but the parse itself.
 *
 * kr_view holds one event's values, slot by slot (an array in the event gives several values for one
 * slot), in buffers reused from event to event: no allocation per event once warmed up. A value
 * found inside an element of an array of objects carries its "trail" (which array, which element) so
 * the matcher can insist, as EventBridge does, that fields matched together come from one element.
 * Used from one thread only. */
#ifndef KR_VIEW_H
#define KR_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* A trie node. Read-only once the rules are built; fields are public for the parser's hot path. */
struct kr_path_node {
	char *seg;
	size_t seglen;
	int32_t slot;
	/* children: open addressing on the segment hash; cap is a power of two or 0 */
	struct kr_path_node **kids;
	uint32_t nkids, capkids;
	/* cheap rejection of the many keys no rule names: bit (len & 63) and bit (first byte & 63)
	 * are set for every child */
	uint64_t lenmask, firstmask;
};

/* Told of a string value of a hinted slot as soon as the parser records it, before the event
 * ends: the rule set uses it to bring the index entry for that value into the cache while the
 * parse goes on, so the match that follows does not wait for memory. What it returns is kept
 * with the value (kr_value.hint, the index key's hash) for the rule set's own use. */
typedef uint64_t (*kr_path_hint_fn)(const void *ctx, uint32_t slot, const char *s, size_t n);

struct kr_paths {
	struct kr_path_node *root;
	uint32_t nslots;
	char **names; /* slot -> dotted name, for messages */
	kr_path_hint_fn hint;
	const void *hint_ctx;
	uint8_t *hinted; /* per slot: 1 when hint wants its string values */
};

/* Returns a new empty path set; free with kr_paths_free. */
struct kr_paths *kr_paths_new(void);
void kr_paths_free(struct kr_paths *p);

/* Adds the path made of n segments (not NUL-terminated, with lengths) and returns its slot in
 * *slot; an existing path returns its existing slot. */
enum kr_err kr_paths_add(struct kr_paths *p, const char *const *segs, const size_t *lens, size_t n,
			 uint32_t *slot);

/* Asks for hint(ctx, slot, value) on each string value of the slots whose flag is set in
 * hinted (nslots entries, copied). */
enum kr_err kr_paths_set_hint(struct kr_paths *p, kr_path_hint_fn hint, const void *ctx,
			      const uint8_t *hinted);

/* Walking the trie (for the parser). kr_path_child returns NULL when no rule looks below; most
 * keys are turned away by the two masks without hashing. */
const struct kr_path_node *kr_path_lookup(const struct kr_path_node *node, const char *key,
					  size_t len);

/* false: node has no child key (node NULL, or the masks turn the key away); true: it may. */
static inline bool kr_path_may_have(const struct kr_path_node *node, const char *key, size_t len)
{
	return node && (node->lenmask >> (len & 63) & 1) &&
	       (!len || (node->firstmask >> ((unsigned char)key[0] & 63) & 1));
}

static inline const struct kr_path_node *kr_path_child(const struct kr_path_node *node,
						       const char *key, size_t len)
{
	return kr_path_may_have(node, key, len) ? kr_path_lookup(node, key, len) : NULL;
}

/* Slot of a node, or -1 when no rule tests this exact path. */
static inline int32_t kr_path_slot(const struct kr_path_node *node)
{
	return node ? node->slot : -1;
}

enum kr_vtype { KR_V_STRING, KR_V_NUMBER, KR_V_TRUE, KR_V_FALSE, KR_V_NULL };

struct kr_value {
	uint32_t text_off, len; /* into the view's arena (strings decoded, numbers as written) */
	uint32_t trail_off, trail_len; /* into the view's trail buffer: (array id, index) pairs */
	uint32_t next;          /* next value of the same slot, 1-based; 0 ends */
	uint8_t type;
	uint8_t hinted;         /* hint holds what the slot's hint function returned */
	uint64_t hint;
};

struct kr_view {
	const struct kr_paths *paths;
	uint32_t nslots;
	uint32_t *head, *tail;  /* per slot: first/last value, 1-based; 0 = no value */
	uint32_t *touched;      /* slots with at least one value, in first-seen order */
	uint32_t ntouched;
	struct kr_value *vals;
	uint32_t nvals, capvals;
	char *arena;
	uint32_t arena_len, arena_cap;
	uint32_t *trails;
	uint32_t ntrails, captrails;
	bool has_trails;        /* some value came from inside an array of objects */
};

/* Initialises a view for a path set (which must outlive the view, or be re-bound with
 * kr_view_bind). Free the view's buffers with kr_view_fini. */
enum kr_err kr_view_init(struct kr_view *v, const struct kr_paths *paths);
enum kr_err kr_view_bind(struct kr_view *v, const struct kr_paths *paths);
void kr_view_fini(struct kr_view *v);
void kr_view_reset(struct kr_view *v);

/* Records a value for slot; trail is an array of trail_len uint32 (id, index pairs flattened).
 * Copies text. */
enum kr_err kr_view_add(struct kr_view *v, uint32_t slot, enum kr_vtype type, const char *text,
			size_t len, const uint32_t *trail, uint32_t trail_len);

static inline const char *kr_view_text(const struct kr_view *v, const struct kr_value *val)
{
	return v->arena + val->text_off;
}

static inline const struct kr_value *kr_view_first(const struct kr_view *v, uint32_t slot)
{
	return v->head[slot] ? &v->vals[v->head[slot] - 1] : NULL;
}

static inline const struct kr_value *kr_view_next(const struct kr_view *v,
						  const struct kr_value *val)
{
	return val->next ? &v->vals[val->next - 1] : NULL;
}

/* True when two values can come from one event element: wherever their trails pass through the
 * same array, they pass through the same element of it. */
bool kr_view_consistent(const struct kr_view *v, const struct kr_value *a,
			const struct kr_value *b);

#endif
