/* kr_json: document trees with source offsets, built with yajl callbacks (see json.h).
 *
 * yajl updates its consumed-bytes counter before each callback, so inside a callback it is the
 * offset just past the token; from that we derive where each value starts. */
#include "grow.h"
#include "json.h"
#include "lex.h"
#include "mem.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Nodes, strings and arrays live in chunks owned by the root, so building and freeing a large
 * configuration costs a few allocations instead of several per value. */
struct chunk {
	struct chunk *next;
	size_t used, cap;
	max_align_t data[];
};

#define KR_JSON_BIG_CHUNK KR_HUGE_PAGE

struct kr_json_arena {
	struct chunk *head;
	struct chunk *spare; /* given back by arena_rewind, used again before allocating */
	size_t first;        /* the first chunk's size; 0: 16 KiB */
};

/* Where the arena stood: arena_rewind goes back there. */
struct arena_mark {
	struct chunk *head;
	size_t used;
};

static struct arena_mark arena_mark(const struct kr_json_arena *a)
{
	return (struct arena_mark){a->head, a->head ? a->head->used : 0};
}

/* Everything allocated since m is free again (the chunks added since are kept as spares). */
static void arena_rewind(struct kr_json_arena *a, struct arena_mark m)
{
	while (a->head != m.head) {
		struct chunk *c = a->head;
		a->head = c->next;
		c->next = a->spare;
		a->spare = c;
	}
	if (a->head)
		a->head->used = m.used;
}

static void *arena_alloc(struct kr_json_arena *a, size_t n)
{
	n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
	struct chunk *c = a->head;
	if ((!c || c->cap - c->used < n) && a->spare && a->spare->cap >= n) {
		c = a->spare;
		a->spare = c->next;
		c->next = a->head;
		c->used = 0;
		a->head = c;
	}
	if (!c || c->cap - c->used < n) {
		size_t cap = c ? (sizeof *c + c->cap) * 2 - sizeof *c
			       : (a->first ? a->first : 16384) - sizeof *c;
		if (cap >= KR_JSON_BIG_CHUNK - sizeof *c && n <= KR_JSON_BIG_CHUNK - sizeof *c) {
			/* a big tree (a configuration with thousands of rules): 2 MiB chunks in huge
			   pages where the kernel offers them, one page fault each instead of 512 */
			cap = KR_JSON_BIG_CHUNK - sizeof *c;
			c = kr_big_alloc(KR_JSON_BIG_CHUNK, KR_JSON_BIG_CHUNK, KR_JSON_BIG_CHUNK);
		} else {
			if (cap < n)
				cap = n;
			c = malloc(sizeof *c + cap);
		}
		if (!c)
			return NULL;
		c->next = a->head;
		c->used = 0;
		c->cap = cap;
		a->head = c;
	}
	void *p = (char *)c->data + c->used;
	c->used += n;
	return p;
}

static void arena_free(struct kr_json_arena *a)
{
	if (!a)
		return;
	for (int l = 0; l < 2; l++)
		for (struct chunk *c = l ? a->spare : a->head, *next; c; c = next) {
			next = c->next;
			free(c);
		}
	free(a);
}

/* A value waiting for its container to close; containers get exact-size arrays then. */
struct member {
	struct kr_json *val;
	char *key;
	size_t keylen, keyoff;
};

struct builder {
	yajl_handle h;
	struct kr_lex *lex; /* with it, kr_lex makes the callbacks (the text from lex_base on) */
	size_t lex_base;
	const char *text;
	size_t len;
	struct kr_json_arena *arena;
	struct kr_json_arena key_arena; /* the keys in the cache below: never rewound (see
					   hand_over), moved into arena at the end */
	struct kr_json *root;
	size_t root_end; /* where the root value ends (SIZE_MAX: at the end, inside completing) */
	struct kr_json **stack;
	size_t *first;          /* per open container: index of its first member in members */
	struct member *members;
	size_t nmembers, capmembers;
	size_t depth, max_depth;
	bool last_key_wins;
	bool keep_duplicate_keys;
	bool completing; /* inside yajl_complete_parse */
	char *pending_key;
	size_t pending_keylen, pending_keyoff;
	const struct kr_json_opts *opts;
	bool streaming;          /* stack[1] is the array whose elements go to opts->element */
	size_t elem_index;
	struct arena_mark elem_mark; /* where the element being built started */
	enum kr_err err;
	char *errbuf;
	size_t err_offset;
	/* keys repeat (every rule has "name", "pattern", "targets"): one copy each, found through
	   a small direct-mapped cache */
	struct {
		char *s;
		size_t n;
	} keys[256];
};

/* white space as yajl reads it (also \v and \f) */
static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static size_t consumed(struct builder *b)
{
	return b->lex ? b->lex_base + b->lex->off : yajl_get_bytes_consumed(b->h);
}

/* Start of the string token that ends just before offset end (end points past the closing quote). */
static size_t string_start(const char *text, size_t end)
{
	if (end < 2)
		return 0;
	size_t i = end - 2;
	for (;;) {
		if (text[i] == '"') {
			size_t bs = 0;
			while (i > bs && text[i - 1 - bs] == '\\')
				bs++;
			if (bs % 2 == 0)
				return i;
		}
		if (i == 0)
			return 0;
		i--;
	}
}

/* Where a string token starts, given the pointer s that yajl handed to the callback. yajl passes
 * a string without escapes as a pointer into the text (it always has the whole text: one
 * yajl_parse call), just after the opening quote, which spares scanning back over the string. A
 * string with escapes is decoded into a buffer: kr_lex says where it started; after yajl, scan back
 * from the token's end. */
static size_t string_offset(struct builder *b, const char *s)
{
	uintptr_t p = (uintptr_t)s, t = (uintptr_t)b->text;
	if (p > t && p - t < b->len)
		return (size_t)(p - t) - 1;
	if (b->lex) /* the fast path knows where it started */
		return b->lex_base + b->lex->quote;
	return string_start(b->text, consumed(b));
}

void kr_json_free(struct kr_json *j)
{
	if (j)
		arena_free(j->arena);
}

static int fail(struct builder *b, enum kr_err e, size_t off, const char *msg)
{
	b->err = e;
	b->err_offset = off;
	kr_errf(b->errbuf, e, "%s", msg);
	return 0;
}

static char *arena_strdup(struct kr_json_arena *a, const char *s, size_t n)
{
	char *d = arena_alloc(a, n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = 0;
	}
	return d;
}

static int add(struct builder *b, struct kr_json *j)
{
	if (b->depth == 0) {
		b->root = j;
		if (j->type < KR_JSON_ARRAY) /* a scalar: the whole value */
			b->root_end = b->completing ? SIZE_MAX : consumed(b);
		return 1;
	}
	if (!kr_grow(&b->members, &b->capmembers, b->nmembers + 1, sizeof *b->members, 64))
		return fail(b, KR_ERR_NOMEM, 0, "out of memory");
	struct member *m = &b->members[b->nmembers++];
	m->val = j;
	m->key = b->pending_key;
	m->keylen = b->pending_keylen;
	m->keyoff = b->pending_keyoff;
	return 1;
}

static int cmp_member_key(const void *pa, const void *pb)
{
	const struct member *x = *(const struct member *const *)pa;
	const struct member *y = *(const struct member *const *)pb;
	size_t n = x->keylen < y->keylen ? x->keylen : y->keylen;
	int c = memcmp(x->key, y->key, n);
	if (c)
		return c;
	if (x->keylen != y->keylen)
		return x->keylen < y->keylen ? -1 : 1;
	return x < y ? -1 : x > y; /* equal keys: in document order */
}

static bool same_key(const struct member *x, const struct member *y)
{
	/* keys found in the key cache share their copy; checking the first byte inline spares most
	   memcmp calls ("pattern" and "targets" have the same length) */
	return x->keylen == y->keylen &&
	       (x->key == y->key ||
		(x->key[0] == y->key[0] && memcmp(x->key, y->key, x->keylen) == 0));
}

/* Duplicate keys among the n members: an error, or with last_key_wins the earlier ones are
 * dropped (m[i].val set to NULL). Sets *dropped to whether any was. Sorting keeps huge objects
 * from going quadratic; small ones (nearly all: a rule has three keys) are compared pairwise first
 * and only go through the sort when they do repeat a key, so which duplicate is reported stays
 * the same. */
static int check_duplicates(struct builder *b, struct member *m, size_t n, bool *dropped)
{
	*dropped = false;
	if (n < 2 || b->keep_duplicate_keys)
		return 1;
	if (n <= 8) {
		bool dup = false;
		for (size_t j = 1; j < n && !dup; j++)
			for (size_t i = 0; i < j && !dup; i++)
				dup = same_key(&m[i], &m[j]);
		if (!dup)
			return 1;
	}
	struct member *local[64];
	struct member **order = n <= 64 ? local : malloc(n * sizeof *order);
	if (!order)
		return fail(b, KR_ERR_NOMEM, 0, "out of memory");
	for (size_t i = 0; i < n; i++)
		order[i] = &m[i];
	qsort(order, n, sizeof *order, cmp_member_key);
	int ok = 1;
	for (size_t i = 1; i < n && ok; i++) {
		struct member *x = order[i - 1], *y = order[i];
		if (x->keylen != y->keylen || memcmp(x->key, y->key, x->keylen) != 0)
			continue;
		if (b->last_key_wins) {
			x->val = NULL;
			*dropped = true;
		} else {
			char msg[200];
			snprintf(msg, sizeof msg, "duplicate key \"%.100s\"", y->key);
			ok = fail(b, KR_ERR_JSON, y->keyoff, msg);
		}
	}
	if (order != local)
		free(order);
	return ok;
}

/* The container on top of the stack closes: its members move into exact-size arena arrays. */
static int close_container(struct builder *b)
{
	struct kr_json *c = b->stack[--b->depth];
	if (b->depth == 0)
		b->root_end = b->completing ? SIZE_MAX : consumed(b);
	size_t first = b->first[b->depth], n = b->nmembers - first;
	struct member *m = n ? b->members + first : NULL;
	b->nmembers = first;
	bool obj = c->type == KR_JSON_OBJECT, dropped = false;
	if (obj && !check_duplicates(b, m, n, &dropped))
		return 0;
	size_t kept = n;
	if (dropped)
		for (size_t i = 0; i < n; i++)
			kept -= m[i].val == NULL;
	if (kept == 0)
		return 1;
	/* an object's four arrays in one allocation, one after the other: all are word-sized, so
	   each starts aligned */
	_Static_assert(sizeof(size_t) == sizeof(char *) && sizeof(char *) == sizeof(struct kr_json *),
		       "object arrays share one allocation");
	void *p = arena_alloc(b->arena, kept * (obj ? 4 : 1) * sizeof(char *));
	if (!p)
		return fail(b, KR_ERR_NOMEM, 0, "out of memory");
	c->items = p;
	if (obj) {
		c->keys = (char **)(c->items + kept);
		c->keylens = (size_t *)(c->keys + kept);
		c->key_offsets = c->keylens + kept;
	}
	for (size_t i = 0; i < n; i++) {
		if (!m[i].val)
			continue;
		c->items[c->n] = m[i].val;
		if (obj) {
			c->keys[c->n] = m[i].key;
			c->keylens[c->n] = m[i].keylen;
			c->key_offsets[c->n] = m[i].keyoff;
		}
		c->n++;
	}
	return 1;
}

/* The element just completed (the last member) goes to opts->element; a dropped one gives its
 * memory back (the keys it shares with the next ones are in key_arena, and stay). */
static void hand_over(struct builder *b)
{
	const struct kr_json *elem = b->members[b->nmembers - 1].val;
	if (!b->opts->element(b->opts->element_ctx, elem, b->elem_index++))
		return;
	b->nmembers--;
	arena_rewind(b->arena, b->elem_mark);
}

/* A new node with room for extra bytes after it (a scalar's text). */
static struct kr_json *node(struct builder *b, enum kr_json_type t, size_t off, size_t extra)
{
	struct kr_json *j = arena_alloc(b->arena, sizeof *j + extra);
	if (!j) {
		fail(b, KR_ERR_NOMEM, 0, "out of memory");
		return NULL;
	}
	memset(j, 0, sizeof *j);
	j->type = t;
	j->offset = off;
	return j;
}

static int scalar(struct builder *b, enum kr_json_type t, size_t toklen, const char *s, size_t len)
{
	size_t off;
	if (b->completing) {
		/* only a top-level number is still pending then: it starts after the whitespace */
		off = strspn(b->text, " \t\r\n");
	} else if (t == KR_JSON_STRING) {
		off = string_offset(b, s);
	} else {
		size_t end = consumed(b);
		off = end >= toklen ? end - toklen : 0;
	}
	if (b->streaming && b->depth == 2)
		b->elem_mark = arena_mark(b->arena);
	/* the node and its text in one allocation */
	struct kr_json *j = node(b, t, off, s ? len + 1 : 0);
	if (!j)
		return 0;
	if (s) {
		j->str = (char *)(j + 1);
		memcpy(j->str, s, len);
		j->str[len] = 0;
		j->len = len;
		if (t == KR_JSON_NUMBER)
			j->num = strtod(j->str, NULL);
	}
	if (!add(b, j))
		return 0;
	if (b->streaming && b->depth == 2)
		hand_over(b);
	return 1;
}

static int cb_null(void *ctx)
{
	return scalar(ctx, KR_JSON_NULL, 4, NULL, 0);
}

static int cb_bool(void *ctx, int v)
{
	return scalar(ctx, v ? KR_JSON_TRUE : KR_JSON_FALSE, v ? 4 : 5, NULL, 0);
}

static int cb_number(void *ctx, const char *s, size_t len)
{
	return scalar(ctx, KR_JSON_NUMBER, len, s, len);
}

static int cb_string(void *ctx, const unsigned char *s, size_t len)
{
	return scalar(ctx, KR_JSON_STRING, 0, (const char *)s, len);
}

static int open_container(struct builder *b, enum kr_json_type t)
{
	size_t off = consumed(b) - 1;
	if (b->depth >= b->max_depth)
		return fail(b, KR_ERR_LIMIT, off, "nesting deeper than the maximum depth");
	if (b->streaming && b->depth == 2)
		b->elem_mark = arena_mark(b->arena);
	/* the array under the root object's element_key: its elements are streamed */
	if (b->depth == 1 && t == KR_JSON_ARRAY && b->opts && b->opts->element &&
	    b->stack[0]->type == KR_JSON_OBJECT &&
	    b->pending_keylen == strlen(b->opts->element_key) &&
	    memcmp(b->pending_key, b->opts->element_key, b->pending_keylen) == 0) {
		b->streaming = true;
		b->elem_index = 0;
	}
	struct kr_json *j = node(b, t, off, 0);
	if (!j || !add(b, j))
		return 0;
	b->first[b->depth] = b->nmembers;
	b->stack[b->depth++] = j;
	return 1;
}

static int cb_start_map(void *ctx)
{
	return open_container(ctx, KR_JSON_OBJECT);
}

static int cb_start_array(void *ctx)
{
	return open_container(ctx, KR_JSON_ARRAY);
}

static int cb_end(void *ctx)
{
	struct builder *b = ctx;
	if (!close_container(b))
		return 0;
	if (b->streaming && b->depth == 2)
		hand_over(b); /* an element of the streamed array is complete */
	else if (b->streaming && b->depth == 1)
		b->streaming = false; /* the streamed array itself */
	return 1;
}

static int cb_map_key(void *ctx, const unsigned char *s, size_t len)
{
	struct builder *b = ctx;
	unsigned h = len ? ((unsigned)len * 31u + s[0] * 7u + s[len - 1]) & 255u : 0;
	if (b->keys[h].s && b->keys[h].n == len && memcmp(b->keys[h].s, s, len) == 0) {
		b->pending_key = b->keys[h].s;
	} else if (len <= 64) {
		b->pending_key = arena_strdup(&b->key_arena, (const char *)s, len);
		if (b->pending_key) {
			b->keys[h].s = b->pending_key;
			b->keys[h].n = len;
		}
	} else {
		b->pending_key = arena_strdup(b->arena, (const char *)s, len);
	}
	if (!b->pending_key)
		return fail(b, KR_ERR_NOMEM, 0, "out of memory");
	b->pending_keylen = len;
	b->pending_keyoff = string_offset(b, (const char *)s);
	return 1;
}

static const yajl_callbacks callbacks = {
	.yajl_null = cb_null,
	.yajl_boolean = cb_bool,
	.yajl_number = cb_number,
	.yajl_string = cb_string,
	.yajl_start_map = cb_start_map,
	.yajl_map_key = cb_map_key,
	.yajl_end_map = cb_end,
	.yajl_start_array = cb_start_array,
	.yajl_end_array = cb_end,
};

/* yajl's messages are multi-line with a context excerpt; keep the first line only. */
void kr_json_yajl_error(void *handle, const char *prefix, char *out, size_t cap)
{
	/* yajl's messages are multi-line with a context excerpt; keep the first line only */
	yajl_handle h = handle;
	unsigned char *m = yajl_get_error(h, 0, NULL, 0);
	const char *msg = m ? (const char *)m : "parse error";
	size_t n = strcspn(msg, "\n");
	while (n && msg[n - 1] == ' ')
		n--;
	if (strstr(msg, "UTF8"))
		snprintf(out, cap, "invalid UTF-8 in a string (%.*s)", (int)n, msg);
	else
		snprintf(out, cap, "%s%.*s", prefix, (int)n, msg);
	if (m)
		yajl_free_error(h, m);
}

/* The offset of the first byte of text[i..n) that is neither white space nor (with comments) a
 * comment, or n. */
static size_t trailing(const char *text, size_t i, size_t n, bool comments)
{
	while (i < n) {
		if (is_ws(text[i])) {
			i++;
		} else if (comments && text[i] == '/' && i + 1 < n && text[i + 1] == '/') {
			const char *nl = memchr(text + i, '\n', n - i);
			i = nl ? (size_t)(nl - text) + 1 : n;
		} else if (comments && text[i] == '/' && i + 1 < n && text[i + 1] == '*') {
			const char *e = i + 2 < n ? memmem(text + i + 2, n - i - 2, "*/", 2) : NULL;
			if (!e)
				return i;
			i = (size_t)(e - text) + 2;
		} else {
			return i;
		}
	}
	return n;
}

enum kr_err kr_json_parse(const char *text, size_t len, const struct kr_json_opts *opts,
			  struct kr_json **out, size_t *err_offset, char *err)
{
	struct builder b = {.text = text, .len = len, .errbuf = err, .err = KR_OK, .opts = opts};
	b.max_depth = opts && opts->max_depth ? opts->max_depth : 64;
	b.last_key_wins = opts && opts->last_key_wins;
	b.keep_duplicate_keys = opts && opts->keep_duplicate_keys;
	*out = NULL;
	if (err_offset)
		*err_offset = 0;
	b.arena = calloc(1, sizeof *b.arena);
	/* a small document (an event a sink reads fields of) takes a small first chunk: 16 KiB per
	   parse, freed while what was allocated after it lives on, made every parse touch fresh
	   memory */
	size_t first = len < 256 ? 1024 : len < 4096 ? len * 4 : 16384;
	if (b.arena)
		b.arena->first = first;
	b.key_arena.first = first / 2;
	b.stack = calloc(b.max_depth + 1, sizeof *b.stack);
	b.first = calloc(b.max_depth + 1, sizeof *b.first);
	/* The fast path (lex.h) takes a text that is one object or array yajl would take as it
	 * stands, with nothing but white space around it; yajl takes any other, and gives every
	 * error. */
	struct kr_lex lx = {0};
	size_t ws = 0, vlen = 0;
	bool lexing = !(opts && (opts->allow_comments || opts->yajl_only)) &&
		      kr_lex_whole(text, len, &ws, &vlen);
	if (!lexing)
		b.h = yajl_alloc(&callbacks, NULL, &b);
	if (!b.arena || !b.stack || !b.first || (!lexing && !b.h)) {
		free(b.stack);
		free(b.first);
		free(b.arena);
		if (b.h)
			yajl_free(b.h);
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	}
	yajl_status st;
	int lex_rc = 0;
	if (lexing) {
		b.lex = &lx;
		b.lex_base = ws;
		lex_rc = kr_lex_emit(&lx, text + ws, vlen, &callbacks, &b);
		st = lex_rc ? yajl_status_client_canceled : yajl_status_ok;
	} else {
		if (opts && opts->allow_comments)
			yajl_config(b.h, yajl_allow_comments, 1);
		st = yajl_parse(b.h, (const unsigned char *)text, len);
	}
	bool completing = false;
	if (st == yajl_status_ok && !lexing) {
		/* yajl counts bytes afresh inside yajl_complete_parse: offsets from there are the end */
		completing = true;
		b.completing = true;
		st = yajl_complete_parse(b.h);
	}
	enum kr_err e = KR_OK;
	if (st != yajl_status_ok) {
		if (b.err != KR_OK) {
			e = b.err;
		} else if (lex_rc == -2) {
			e = kr_errf(err, KR_ERR_NOMEM, "out of memory");
		} else if (lexing) {
			/* a callback stopped the parse without saying why (yajl's words for it) */
			e = kr_errf(err, KR_ERR_JSON, "%s", KR_LEX_CANCELLED);
			b.err_offset = consumed(&b);
		} else {
			e = KR_ERR_JSON;
			b.err_offset = completing ? len : yajl_get_bytes_consumed(b.h);
			if (err)
				kr_json_yajl_error(b.h, "", err, KR_ERRBUF);
		}
	} else if (!b.root) {
		e = kr_errf(err, KR_ERR_JSON, "empty document");
	} else if (b.root_end != SIZE_MAX &&
		   (b.err_offset = trailing(text, b.root_end, len, opts && opts->allow_comments)) <
			   len) {
		/* what yajl lets pass after the value: the start of a string it waits to end */
		e = kr_errf(err, KR_ERR_JSON, "parse error: trailing garbage");
	}
	if (err_offset)
		*err_offset = b.err_offset;
	/* the cached keys' chunks join the tree's (freed with it) */
	while (b.key_arena.head) {
		struct chunk *c = b.key_arena.head, *h = b.arena->head;
		b.key_arena.head = c->next;
		/* behind the current chunk: allocations go on in that one */
		if (h) {
			c->next = h->next;
			h->next = c;
		} else {
			c->next = NULL;
			b.arena->head = c;
		}
	}
	if (b.h)
		yajl_free(b.h);
	kr_lex_free(&lx);
	free(b.stack);
	free(b.first);
	free(b.members);
	if (e != KR_OK) {
		arena_free(b.arena);
		return e;
	}
	b.root->arena = b.arena;
	*out = b.root;
	return KR_OK;
}

const struct kr_json *kr_json_get(const struct kr_json *obj, const char *key)
{
	if (!obj || obj->type != KR_JSON_OBJECT)
		return NULL;
	size_t kl = strlen(key);
	/* the first bytes are compared inline (keys are NUL-terminated, so key[0] is readable even
	   for ""): most keys of the same length differ there, and memcmp is a call */
	for (size_t i = 0; i < obj->n; i++)
		if (obj->keylens[i] == kl && obj->keys[i][0] == key[0] &&
		    memcmp(obj->keys[i], key, kl) == 0)
			return obj->items[i];
	return NULL;
}

void kr_json_linecol(const char *text, size_t len, size_t offset, size_t *line, size_t *col)
{
	size_t l = 1, c = 1;
	if (offset > len)
		offset = len;
	for (size_t i = 0; i < offset; i++) {
		if (text[i] == '\n') {
			l++;
			c = 1;
		} else {
			c++;
		}
	}
	*line = l;
	*col = c;
}

const char *kr_json_type_name(enum kr_json_type t)
{
	switch (t) {
	case KR_JSON_NULL: return "null";
	case KR_JSON_FALSE:
	case KR_JSON_TRUE: return "boolean";
	case KR_JSON_NUMBER: return "number";
	case KR_JSON_STRING: return "string";
	case KR_JSON_ARRAY: return "array";
	case KR_JSON_OBJECT: return "object";
	}
	return "?";
}

/* Appends the JSON text of j (numbers exactly as they were written). */
/* A newline and 2 * depth spaces. */
static bool indent_to(struct kr_buf *b, unsigned depth)
{
	if (!kr_buf_reserve(b, 2 * (size_t)depth + 2)) /* the newline, the spaces, the NUL */
		return false;
	b->p[b->len++] = '\n';
	for (unsigned i = 0; i < 2 * depth; i++)
		b->p[b->len++] = ' ';
	b->p[b->len] = 0;
	return true;
}

/* j as JSON text: compact, or pretty at depth (pretty) */
static bool write_at(struct kr_buf *b, const struct kr_json *j, bool pretty, unsigned depth)
{
	switch (j->type) {
	case KR_JSON_NULL: return kr_buf_puts(b, "null");
	case KR_JSON_TRUE: return kr_buf_puts(b, "true");
	case KR_JSON_FALSE: return kr_buf_puts(b, "false");
	case KR_JSON_NUMBER: return kr_buf_append(b, j->str, j->len);
	case KR_JSON_STRING: return kr_buf_json_string(b, j->str, j->len);
	case KR_JSON_ARRAY:
	case KR_JSON_OBJECT: {
		bool obj = j->type == KR_JSON_OBJECT;
		if (!kr_buf_puts(b, obj ? "{" : "["))
			return false;
		for (size_t i = 0; i < j->n; i++) {
			if ((i && !kr_buf_puts(b, ",")) || (pretty && !indent_to(b, depth + 1)))
				return false;
			if (obj && !(kr_buf_json_string(b, j->keys[i], j->keylens[i]) &&
				     kr_buf_puts(b, pretty ? ": " : ":")))
				return false;
			if (!write_at(b, j->items[i], pretty, depth + 1))
				return false;
		}
		return (!pretty || !j->n || indent_to(b, depth)) && kr_buf_puts(b, obj ? "}" : "]");
	}
	}
	return false;
}

bool kr_json_write(struct kr_buf *b, const struct kr_json *j)
{
	return write_at(b, j, false, 0);
}

bool kr_json_pretty(struct kr_buf *b, const struct kr_json *j)
{
	return write_at(b, j, true, 0);
}

const struct kr_json *kr_json_path(const struct kr_json *root, const char *p)
{
	if (p[0] != '$')
		return NULL;
	const struct kr_json *cur = root;
	const char *c = p + 1;
	while (cur && *c) {
		if (*c == '.') {
			c++;
			size_t n = strcspn(c, ".[");
			const struct kr_json *next = NULL;
			if (cur->type == KR_JSON_OBJECT)
				for (size_t i = 0; i < cur->n; i++)
					if (cur->keylens[i] == n && memcmp(cur->keys[i], c, n) == 0)
						next = cur->items[i];
			cur = next;
			c += n;
		} else if (*c == '[') {
			char *end;
			unsigned long idx = strtoul(c + 1, &end, 10);
			cur = cur->type == KR_JSON_ARRAY && idx < cur->n ? cur->items[idx] : NULL;
			c = *end == ']' ? end + 1 : end;
		} else {
			return NULL;
		}
	}
	return cur;
}

/* ---- values in JSON text, by scanning (kr_json_text_path) ---- */

static const char *ws(const char *p, const char *end)
{
	while (p < end && is_ws(*p))
		p++;
	return p;
}

/* p at a string's opening quote: past its closing one, or NULL; *escaped whether it has a
 * backslash */
static const char *skip_string(const char *p, const char *end, bool *escaped)
{
	p++;
	*escaped = false;
	for (;;) {
		/* the next quote or backslash: a backslash escapes the byte after it */
#ifdef __SSE2__
		const __m128i quote = _mm_set1_epi8('"'), bsl = _mm_set1_epi8('\\');
		while (end - p >= 16) {
			__m128i v = _mm_loadu_si128((const __m128i *)p);
			unsigned m = (unsigned)_mm_movemask_epi8(
				_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bsl)));
			if (m) {
				p += __builtin_ctz(m);
				goto special;
			}
			p += 16;
		}
#endif
		while (p < end && *p != '"' && *p != '\\')
			p++;
		if (p >= end)
			return NULL;
#ifdef __SSE2__
	special:
#endif
		if (*p == '"')
			return p + 1;
		*escaped = true;
		if (end - p < 2)
			return NULL;
		p += 2;
	}
}

/* p at a value: past it, or NULL where the structure breaks */
static const char *skip_value(const char *p, const char *end)
{
	bool esc;
	if (p >= end)
		return NULL;
	if (*p == '"')
		return skip_string(p, end, &esc);
	if (*p != '{' && *p != '[') {
		const char *s = p;
		while (p < end && *p != ',' && *p != '}' && *p != ']' && !is_ws(*p))
			p++;
		return p > s ? p : NULL;
	}
	size_t depth = 0;
	while (p < end) {
		char c = *p;
		if (c == '"') {
			if (!(p = skip_string(p, end, &esc)))
				return NULL;
			continue;
		}
		if (c == '{' || c == '[')
			depth++;
		else if ((c == '}' || c == ']') && --depth == 0)
			return p + 1;
		p++;
	}
	return NULL;
}

/* Whether the key whose text (between its quotes) is k[0..kn) is name[0..nn), decoded. */
static bool key_is(const char *k, size_t kn, bool escaped, const char *name, size_t nn)
{
	if (!escaped)
		return kn == nn && memcmp(k, name, nn) == 0;
	struct kr_buf b = {0};
	struct kr_json_span sp = {KR_JSON_STRING, k, kn, true};
	bool eq = kr_json_span_string(&b, &sp) && b.len == nn && memcmp(b.p, name, nn) == 0;
	kr_buf_free(&b);
	return eq;
}

/* p just past an array's item: at the next item, or at the ']' that ends the array; NULL where
 * neither follows. */
static const char *after_item(const char *p, const char *end)
{
	p = ws(p, end);
	if (p < end && *p == ',')
		return ws(p + 1, end);
	return p < end && *p == ']' ? p : NULL;
}

/* The members of an object's text, one at a time (members_begin, then members_next). */
struct member_it {
	const char *p, *end;
	bool done;
};

/* Starts at the object at v (after white space); false when v is not an object. */
static bool members_begin(struct member_it *it, const char *v, const char *end)
{
	if (v >= end || *v != '{')
		return false;
	it->end = end;
	it->p = ws(v + 1, end);
	it->done = it->p < end && *it->p == '}';
	return true;
}

/* The next member into *mb: 1; 0 past the last; -1 where the text breaks. Inlined into each
 * loop, where the iterator stays in registers: called, it cost the members scan 9% more
 * instructions (callgrind, the kinesis sink). */
static inline __attribute__((always_inline)) int members_next(struct member_it *it,
							      struct kr_json_member *mb)
{
	if (it->done)
		return 0;
	const char *p = it->p, *end = it->end;
	bool esc;
	if (p >= end || *p != '"')
		return -1;
	const char *k = p + 1, *ke = skip_string(p, end, &esc);
	if (!ke)
		return -1;
	p = ws(ke, end);
	if (p >= end || *p != ':')
		return -1;
	const char *val = ws(p + 1, end);
	if (!(p = skip_value(val, end)))
		return -1;
	*mb = (struct kr_json_member){k, (size_t)(ke - 1 - k), val, esc};
	p = ws(p, end);
	if (p >= end)
		return -1;
	if (*p == '}')
		it->done = true;
	else if (*p == ',')
		p = ws(p + 1, end);
	else
		return -1;
	it->p = p;
	return 1;
}

/* The members of the object at v (after white space), in order, into m; false when v is not an
 * object, has more than KR_JSON_MEMBERS_MAX members or breaks. */
static bool scan_members(const char *v, const char *end, struct kr_json_members *m)
{
	m->n = 0;
	struct member_it it;
	struct kr_json_member mb;
	int r;
	if (!members_begin(&it, v, end))
		return false;
	while ((r = members_next(&it, &mb)) > 0) {
		if (m->n == KR_JSON_MEMBERS_MAX)
			return false;
		m->m[m->n++] = mb;
	}
	return r == 0;
}

/* The value at the path c (what follows its '$') from the value at v, as kr_json_text_path. */
static bool text_path_from(const char *v, const char *end, const char *c,
			   struct kr_json_span *out)
{
	while (*c) {
		const char *found = NULL;
		if (*c == '.') {
			c++;
			size_t nn = strcspn(c, ".[");
			struct member_it it;
			struct kr_json_member mb;
			int r;
			if (!members_begin(&it, v, end))
				return false;
			while ((r = members_next(&it, &mb)) > 0)
				if (key_is(mb.key, mb.key_len, mb.escaped, c, nn))
					found = mb.val; /* a later one replaces it */
			if (r < 0)
				return false;
			c += nn;
		} else if (*c == '[') {
			char *ie;
			unsigned long idx = strtoul(c + 1, &ie, 10);
			c = *ie == ']' ? ie + 1 : ie;
			if (v >= end || *v != '[')
				return false;
			const char *p = ws(v + 1, end);
			for (unsigned long i = 0; p < end && *p != ']'; i++) {
				if (i == idx) {
					found = p;
					break;
				}
				if (!(p = skip_value(p, end)) || !(p = after_item(p, end)))
					return false;
			}
		} else {
			return false;
		}
		if (!found)
			return false;
		v = found;
	}
	const char *ve = skip_value(v, end);
	if (!ve)
		return false;
	/* the type by the first character: a number is the rest */
	static const char firsts[] = "\"{[tfn";
	static const enum kr_json_type types[] = {KR_JSON_STRING, KR_JSON_OBJECT, KR_JSON_ARRAY,
						  KR_JSON_TRUE,   KR_JSON_FALSE,  KR_JSON_NULL};
	const char *k = strchr(firsts, *v);
	*out = (struct kr_json_span){.type = k && *v ? types[k - firsts] : KR_JSON_NUMBER,
				     .p = v, .len = (size_t)(ve - v)};
	if (out->type == KR_JSON_STRING) {
		out->p = v + 1;
		out->len -= 2;
		(void)skip_string(v, end, &out->escaped);
	}
	return true;
}

bool kr_json_text_path(const char *t, size_t n, const char *path, struct kr_json_span *out)
{
	const char *end = t + n;
	return *path == '$' && text_path_from(ws(t, end), end, path + 1, out);
}

bool kr_json_valid(const char *t, size_t n)
{
	size_t start, len;
	if (kr_lex_whole(t, n, &start, &len))
		return true;
	/* what the fast check declines (any other value, what yajl decodes its own way, errors):
	   yajl decides */
	struct kr_json *j = NULL;
	bool ok = kr_json_parse(t, n, NULL, &j, NULL, NULL) == KR_OK;
	kr_json_free(j);
	return ok;
}

bool kr_json_text_items(const char *t, size_t n, const char *path, kr_json_item_fn fn, void *ctx)
{
	struct kr_json_span a;
	if (!kr_json_text_path(t, n, path, &a) || a.type != KR_JSON_ARRAY)
		return false;
	const char *end = a.p + a.len, *p = ws(a.p + 1, end);
	for (size_t i = 0; p < end && *p != ']'; i++) {
		const char *e = skip_value(p, end);
		if (!e || !fn(ctx, i, p, (size_t)(e - p)) || !(p = after_item(e, end)))
			return false;
	}
	return true;
}

void kr_json_members_scan(struct kr_json_members *m, const char *t, size_t n)
{
	m->text = t;
	m->len = n;
	m->indexed = scan_members(ws(t, t + n), t + n, m);
	if (!m->indexed)
		m->n = 0;
}

bool kr_json_members_path(const struct kr_json_members *m, const char *path,
			  struct kr_json_span *out)
{
	if (!m->indexed || path[0] != '$' || path[1] != '.')
		return kr_json_text_path(m->text, m->len, path, out);
	const char *c = path + 2, *end = m->text + m->len;
	size_t nn = strcspn(c, ".[");
	for (size_t i = m->n; i-- > 0;) { /* the last member of a repeated key */
		const struct kr_json_member *e = &m->m[i];
		if (key_is(e->key, e->key_len, e->escaped, c, nn))
			return text_path_from(e->val, end, c + nn, out);
	}
	return false;
}

bool kr_json_span_string(struct kr_buf *b, const struct kr_json_span *s)
{
	if (s->type != KR_JSON_STRING)
		return false;
	if (!s->escaped)
		return kr_buf_append(b, s->p, s->len);
	if (kr_lex_string(s->p - 1, s->len + 2, b))
		return true;
	/* what the fast path leaves to yajl (escapes of surrogates and of U+0000, errors), or out
	   of memory: yajl decodes it, as it decodes the strings kr_json_parse keeps */
	struct kr_json *j = NULL;
	if (kr_json_parse(s->p - 1, s->len + 2, NULL, &j, NULL, NULL) != KR_OK)
		return false;
	bool ok = j->type == KR_JSON_STRING && kr_buf_append(b, j->str, j->len);
	kr_json_free(j);
	return ok;
}
