/* kr_json: document trees with source offsets, built with yajl callbacks (see json.h).
 *
 * yajl updates its consumed-bytes counter before each callback, so inside a callback it is the
 * offset just past the token; from that we derive where each value starts. */
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

struct builder {
	yajl_handle h;
	const char *text;
	struct kr_json *root;
	struct kr_json **stack;
	size_t depth, max_depth;
	bool last_key_wins;
	char *pending_key;
	size_t pending_keylen, pending_keyoff;
	enum kr_err err;
	char *errbuf;
	size_t err_offset;
};

static size_t consumed(struct builder *b)
{
	return yajl_get_bytes_consumed(b->h);
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

static void node_free(struct kr_json *j)
{
	if (!j)
		return;
	for (size_t i = 0; i < j->n; i++) {
		node_free(j->items[i]);
		if (j->keys)
			free(j->keys[i]);
	}
	free(j->items);
	free(j->keys);
	free(j->keylens);
	free(j->key_offsets);
	free(j->str);
	free(j);
}

void kr_json_free(struct kr_json *j)
{
	node_free(j);
}

static int fail(struct builder *b, enum kr_err e, size_t off, const char *msg)
{
	b->err = e;
	b->err_offset = off;
	kr_errf(b->errbuf, e, "%s", msg);
	return 0;
}

static int add(struct builder *b, struct kr_json *j)
{
	if (b->depth == 0) {
		b->root = j;
		return 1;
	}
	struct kr_json *parent = b->stack[b->depth - 1];
	if (parent->type == KR_JSON_OBJECT) {
		for (size_t i = 0; i < parent->n; i++) {
			if (parent->keylens[i] == b->pending_keylen &&
			    memcmp(parent->keys[i], b->pending_key, b->pending_keylen) == 0) {
				if (b->last_key_wins) {
					node_free(parent->items[i]);
					parent->items[i] = j;
					free(b->pending_key);
					b->pending_key = NULL;
					return 1;
				}
				size_t off = b->pending_keyoff;
				node_free(j);
				char msg[200];
				snprintf(msg, sizeof msg, "duplicate key \"%.100s\"", b->pending_key);
				free(b->pending_key);
				b->pending_key = NULL;
				return fail(b, KR_ERR_JSON, off, msg);
			}
		}
	}
	size_t n = parent->n + 1;
	/* capacity doubles whenever the count reaches a power of two: amortised O(1) appends */
	bool grow = (parent->n & (parent->n - 1)) == 0;
	size_t cap = parent->n ? parent->n * 2 : 1;
	struct kr_json **items = grow ? realloc(parent->items, cap * sizeof *items) : parent->items;
	if (!items) {
		node_free(j);
		return fail(b, KR_ERR_NOMEM, 0, "out of memory");
	}
	parent->items = items;
	if (parent->type == KR_JSON_OBJECT && grow) {
		char **keys = realloc(parent->keys, cap * sizeof *keys);
		if (keys)
			parent->keys = keys;
		size_t *kl = realloc(parent->keylens, cap * sizeof *kl);
		if (kl)
			parent->keylens = kl;
		size_t *ko = realloc(parent->key_offsets, cap * sizeof *ko);
		if (ko)
			parent->key_offsets = ko;
		if (!keys || !kl || !ko) {
			node_free(j);
			return fail(b, KR_ERR_NOMEM, 0, "out of memory");
		}
	}
	if (parent->type == KR_JSON_OBJECT) {
		parent->keys[parent->n] = b->pending_key;
		parent->keylens[parent->n] = b->pending_keylen;
		parent->key_offsets[parent->n] = b->pending_keyoff;
		b->pending_key = NULL;
	}
	parent->items[parent->n] = j;
	parent->n = n;
	return 1;
}

static struct kr_json *node(struct builder *b, enum kr_json_type t, size_t off)
{
	struct kr_json *j = calloc(1, sizeof *j);
	if (!j) {
		fail(b, KR_ERR_NOMEM, 0, "out of memory");
		return NULL;
	}
	j->type = t;
	j->offset = off;
	return j;
}

static int scalar(struct builder *b, enum kr_json_type t, size_t toklen, const char *s, size_t len)
{
	size_t end = consumed(b);
	size_t off = t == KR_JSON_STRING ? string_start(b->text, end) : (end >= toklen ? end - toklen : 0);
	struct kr_json *j = node(b, t, off);
	if (!j)
		return 0;
	if (s) {
		j->str = malloc(len + 1);
		if (!j->str) {
			node_free(j);
			return fail(b, KR_ERR_NOMEM, 0, "out of memory");
		}
		memcpy(j->str, s, len);
		j->str[len] = 0;
		j->len = len;
		if (t == KR_JSON_NUMBER)
			j->num = strtod(j->str, NULL);
	}
	return add(b, j);
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
	struct kr_json *j = node(b, t, off);
	if (!j || !add(b, j))
		return 0;
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
	b->depth--;
	return 1;
}

static int cb_map_key(void *ctx, const unsigned char *s, size_t len)
{
	struct builder *b = ctx;
	free(b->pending_key);
	b->pending_key = malloc(len + 1);
	if (!b->pending_key)
		return fail(b, KR_ERR_NOMEM, 0, "out of memory");
	memcpy(b->pending_key, s, len);
	b->pending_key[len] = 0;
	b->pending_keylen = len;
	b->pending_keyoff = string_start(b->text, consumed(b));
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
static void copy_yajl_error(yajl_handle h, const char *text, size_t len, char *errbuf)
{
	unsigned char *msg = yajl_get_error(h, 0, (const unsigned char *)text, len);
	const char *m = msg ? (const char *)msg : "parse error";
	size_t n = strcspn(m, "\n");
	while (n > 0 && m[n - 1] == ' ')
		n--;
	kr_errf(errbuf, KR_ERR_JSON, "%.*s", (int)n, m);
	if (msg)
		yajl_free_error(h, msg);
}

enum kr_err kr_json_parse(const char *text, size_t len, const struct kr_json_opts *opts,
			  struct kr_json **out, size_t *err_offset, char *err)
{
	struct builder b = {.text = text, .errbuf = err, .err = KR_OK};
	b.max_depth = opts && opts->max_depth ? opts->max_depth : 64;
	b.last_key_wins = opts && opts->last_key_wins;
	*out = NULL;
	if (err_offset)
		*err_offset = 0;
	b.stack = calloc(b.max_depth + 1, sizeof *b.stack);
	b.h = yajl_alloc(&callbacks, NULL, &b);
	if (!b.stack || !b.h) {
		free(b.stack);
		if (b.h)
			yajl_free(b.h);
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	}
	if (opts && opts->allow_comments)
		yajl_config(b.h, yajl_allow_comments, 1);
	yajl_status st = yajl_parse(b.h, (const unsigned char *)text, len);
	if (st == yajl_status_ok)
		st = yajl_complete_parse(b.h);
	enum kr_err e = KR_OK;
	if (st != yajl_status_ok) {
		if (b.err != KR_OK) {
			e = b.err;
		} else {
			e = KR_ERR_JSON;
			b.err_offset = yajl_get_bytes_consumed(b.h);
			copy_yajl_error(b.h, text, len, err);
		}
	} else if (!b.root) {
		e = kr_errf(err, KR_ERR_JSON, "empty document");
	}
	if (err_offset)
		*err_offset = b.err_offset;
	yajl_free(b.h);
	free(b.stack);
	free(b.pending_key);
	if (e != KR_OK) {
		node_free(b.root);
		return e;
	}
	*out = b.root;
	return KR_OK;
}

const struct kr_json *kr_json_get(const struct kr_json *obj, const char *key)
{
	if (!obj || obj->type != KR_JSON_OBJECT)
		return NULL;
	size_t kl = strlen(key);
	for (size_t i = 0; i < obj->n; i++)
		if (obj->keylens[i] == kl && memcmp(obj->keys[i], key, kl) == 0)
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

bool kr_buf_reserve(struct kr_buf *b, size_t extra)
{
	if (b->len + extra <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p)
		return false;
	b->p = p;
	b->cap = cap;
	return true;
}

bool kr_buf_append(struct kr_buf *b, const void *s, size_t n)
{
	if (!kr_buf_reserve(b, n + 1))
		return false;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
	return true;
}

bool kr_buf_puts(struct kr_buf *b, const char *s)
{
	return kr_buf_append(b, s, strlen(s));
}

bool kr_buf_json_string(struct kr_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	/* worst case every byte becomes \u00XX */
	if (!kr_buf_reserve(b, n * 6 + 3))
		return false;
	char *o = b->p + b->len;
	*o++ = '"';
	size_t run = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		memcpy(o, s + run, i - run);
		o += i - run;
		run = i + 1;
		*o++ = '\\';
		switch (c) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '\n': *o++ = 'n'; break;
		case '\r': *o++ = 'r'; break;
		case '\t': *o++ = 't'; break;
		case '\b': *o++ = 'b'; break;
		case '\f': *o++ = 'f'; break;
		default:
			memcpy(o, "u00", 3);
			o[3] = hex[c >> 4];
			o[4] = hex[c & 15];
			o += 5;
		}
	}
	memcpy(o, s + run, n - run);
	o += n - run;
	*o++ = '"';
	*o = 0;
	b->len = (size_t)(o - b->p);
	return true;
}

void kr_buf_free(struct kr_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}
