/* kr_json: a small JSON document tree for configuration files and event patterns.
 *
 * Built with yajl's callback parser so that every node remembers the byte offset where it starts;
 * errors can then name FILE:LINE:COL. A text that is one valid object or array goes through the
 * fast path of lex.h instead, which makes yajl's callbacks with yajl's offsets. Number literals keep their exact text (EventBridge compares
 * exact numbers by text) next to their double value. Comments are accepted when asked for.
 * Not for the per-event hot path: events are read by parsers/stream.c into a kr_view instead.
 * A tree is owned by its root and lives in the root's arena; free it with kr_json_free(root)
 * (never a subtree). Trees are read-only once built. */
#ifndef KR_JSON_H
#define KR_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "err.h"

enum kr_json_type {
	KR_JSON_NULL,
	KR_JSON_FALSE,
	KR_JSON_TRUE,
	KR_JSON_NUMBER,
	KR_JSON_STRING,
	KR_JSON_ARRAY,
	KR_JSON_OBJECT
};

struct kr_json {
	enum kr_json_type type;
	size_t offset;          /* byte offset of the value's first character in the source */
	size_t n;               /* arrays and objects: number of items; 0 for scalars */
	union {
		struct {
			char *str;      /* string value (decoded, NUL-terminated) or number text */
			size_t len;     /* length of str */
			double num;     /* numbers: value */
		};
		struct {
			struct kr_json **items; /* arrays and objects: values */
			char **keys;            /* objects: keys (decoded, NUL-terminated) */
			size_t *keylens;        /* objects: key lengths */
			size_t *key_offsets;    /* objects: offset of each key's opening quote */
		};
	};
	struct kr_json_arena *arena; /* the root: where the whole tree lives */
};

struct kr_json_opts {
	bool allow_comments;
	unsigned max_depth; /* 0: 64 */
	bool last_key_wins; /* duplicate object keys: keep the last instead of failing */
	bool keep_duplicate_keys; /* duplicate object keys: keep them all, in order (as event-ruler
				     reads patterns and events: every occurrence counts) */
	/* Streaming one big array: each element of the array that is the value of element_key in
	 * the root object goes to element() as soon as it is complete (index: its position).
	 * When element returns true the element is dropped, as if it had not been in the array,
	 * and its memory is used again for the next one: the tree never holds the whole array. */
	const char *element_key;
	bool (*element)(void *ctx, const struct kr_json *elem, size_t index);
	void *element_ctx;
	bool yajl_only; /* yajl parses the text even where the fast path (lex.h) could: for tests
			   that hold both to the same results */
};

/* Parses exactly one JSON value (surrounding whitespace allowed). On success *out is a new tree;
 * free it with kr_json_free. On failure the error buffer says what and at which byte offset
 * (*err_offset), and duplicate object keys are errors. */
enum kr_err kr_json_parse(const char *text, size_t len, const struct kr_json_opts *opts,
			  struct kr_json **out, size_t *err_offset, char *err);

void kr_json_free(struct kr_json *j);

/* The value at a JSONPath ($, $.a.b, $.a[0]: the last member of a repeated key), or NULL. */
const struct kr_json *kr_json_path(const struct kr_json *root, const char *path);

/* A value found in JSON text by kr_json_text_path, without a tree. */
struct kr_json_span {
	enum kr_json_type type;
	const char *p; /* its text: a string's between its quotes, escapes as written; a number's
			  literal; the whole of an object or array */
	size_t len;
	bool escaped;  /* a string with escapes: kr_json_span_string decodes it */
};

/* The value at a JSONPath ($, $.a.b, $.a[0]) of the JSON text t[0..n), the one kr_json_path
 * finds in the tree kr_json_parse builds with last_key_wins (a repeated key's last member; keys
 * compared decoded), found by scanning the text once: no allocation, no tree. For text that is
 * already known to be JSON (an event the stream parser read); other text is scanned no further
 * than it is safe, never past n, and false (not found) is the answer wherever its structure
 * breaks before the value is known. */
bool kr_json_text_path(const char *t, size_t n, const char *path, struct kr_json_span *out);

/* Whether t[0..n) is one JSON value kr_json_parse takes (without building its tree where the
 * fast path of lex.h can tell). */
bool kr_json_valid(const char *t, size_t n);

/* Calls fn with the text of each item of the array at path in the JSON text t[0..n), in order,
 * without a tree (a service's per-entry results, once kr_json_valid said it is JSON); false when
 * there is no array there, the text breaks, or fn returns false (which stops it). */
typedef bool (*kr_json_item_fn)(void *ctx, size_t i, const char *item, size_t len);
bool kr_json_text_items(const char *t, size_t n, const char *path, kr_json_item_fn fn, void *ctx);

/* The members of a JSON object's text (an event's top level), found by one scan, so that
 * several paths into it (a sink's message attributes and templates) do not each scan it whole:
 * kr_json_members_path finds what kr_json_text_path finds in the text. An object of more than
 * KR_JSON_MEMBERS_MAX members, or text that is not an object or breaks, is not indexed, and
 * kr_json_members_path scans the text as kr_json_text_path does. The text must outlive m. */
#define KR_JSON_MEMBERS_MAX 24
struct kr_json_member {
	const char *key; /* between its quotes, escapes as written */
	size_t key_len;
	const char *val; /* its value's first character */
	bool escaped;    /* the key has escapes */
};
struct kr_json_members {
	const char *text;
	size_t len;
	bool indexed;
	size_t n;
	struct kr_json_member m[KR_JSON_MEMBERS_MAX];
};
void kr_json_members_scan(struct kr_json_members *m, const char *t, size_t n);
bool kr_json_members_path(const struct kr_json_members *m, const char *path,
			  struct kr_json_span *out);

/* Appends a string span's value, decoded as kr_json_parse decodes it; false when out of memory
 * or the span is not a valid string. */
bool kr_json_span_string(struct kr_buf *b, const struct kr_json_span *s);

/* Object member by key, or NULL. */
const struct kr_json *kr_json_get(const struct kr_json *obj, const char *key);

/* 1-based line and column of a byte offset in text. */
void kr_json_linecol(const char *text, size_t len, size_t offset, size_t *line, size_t *col);

const char *kr_json_type_name(enum kr_json_type t);

/* The first line of a failed yajl handle's message, after prefix (a message about invalid
 * UTF-8 says so in words). handle is a yajl_handle. */
void kr_json_yajl_error(void *handle, const char *prefix, char *out, size_t cap);

/* Appends the compact JSON text of j (numbers exactly as they were written). */
bool kr_json_write(struct kr_buf *b, const struct kr_json *j);
/* Appends j pretty-printed: the same text, with 2-space indentation (a member or item per line,
 * ": " after a key, empty objects and arrays as {} and []), no newline at the end. What kmsrouter
 * test compares and shows payloads with. False when out of memory. */
bool kr_json_pretty(struct kr_buf *b, const struct kr_json *j);

#endif
