/* kr_rules: EventBridge event patterns, compiled into indexes, and the matcher.
 *
 * A pattern is compiled into sub-rules (one per $or alternative combination), each a conjunction of
 * conditions; a condition is "some value at this path satisfies one of these matchers". Each
 * sub-rule is indexed by its most selective condition: equality, prefix, suffix and
 * equals-ignore-case matchers go into one hash table keyed by (path, kind, text), so matching an
 * event costs lookups per value the event has plus a check of the sub-rules those lookups wake,
 * not a pass over the rules; operators that cannot be indexed (numeric, wildcard, anything-but,
 * cidr, exists) are checked per value only when a sub-rule has nothing better to be indexed by.
 * The compiled set is immutable: several kr_match_state may use it.
 *
 * Semantics follow EventBridge: arrays in the pattern are OR, fields are AND, an array in the event
 * matches when any element does, fields matched together inside arrays of objects must come from
 * the same element, numbers compare by value as event-ruler does (by text when a double cannot say
 * them exactly), and string operators never match non-strings. */
#ifndef KR_RULES_H
#define KR_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "json.h"
#include "view.h"

struct kr_rules;
struct kr_match_state;

/* Returns a new empty rule set in *out; free with kr_rules_free. */
enum kr_err kr_rules_new(struct kr_rules **out);
void kr_rules_free(struct kr_rules *r);

/* Compiles one pattern as the next rule (ids count from 0 in the order added). On an invalid
 * pattern returns KR_ERR_PATTERN, an EventBridge-like message naming the field in err, and the
 * offending node in *bad (may be NULL) for the caller's line:column. The rule set is unchanged. */
enum kr_err kr_rules_add(struct kr_rules *r, const struct kr_json *pattern,
			 const struct kr_json **bad, char *err);

/* Builds the indexes; call once after the last kr_rules_add and before matching. */
enum kr_err kr_rules_build(struct kr_rules *r);

uint32_t kr_rules_count(const struct kr_rules *r);

/* The paths the rules look at: bind event views and parsers to it. Owned by the rule set. */
const struct kr_paths *kr_rules_paths(const struct kr_rules *r);

/* Scratch space for matching with r; free with kr_match_state_free. */
struct kr_match_state *kr_match_state_new(const struct kr_rules *r);
void kr_match_state_free(struct kr_match_state *st);

/* Asks kr_rules_match to prefetch base + id * stride for each rule as soon as it matches: the
 * caller's own per-rule data (names, targets) is then in the cache when it reads it for the
 * result, instead of one memory wait per matching rule after the match. */
void kr_match_state_prefetch(struct kr_match_state *st, const void *base, size_t stride);

/* Matches one event view (bound to kr_rules_paths(r)). Returns the number of matching rules and
 * points *ids at their ids in ascending order, valid until the next call with st. */
size_t kr_rules_match(const struct kr_rules *r, struct kr_match_state *st,
		      const struct kr_view *v, const uint32_t **ids);

#endif
