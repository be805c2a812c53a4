/* Path trie and per-event value view (see view.h). */
#include "view.h"

#include <stdlib.h>
#include <string.h>

/* Keys are short and the candidates few: length, first and last bytes spread them well enough,
 * and the full comparison settles the rest. */
static uint32_t seg_hash(const char *s, size_t n)
{
	if (n == 0)
		return 0;
	uint32_t h = (uint32_t)n * 0x9E3779B1u;
	h ^= (unsigned char)s[0] * 0x85EBCA6Bu;
	h ^= (unsigned char)s[n - 1] * 0xC2B2AE35u;
	h ^= (unsigned char)s[n / 2] * 0x27D4EB2Fu;
	return h ^ (h >> 15);
}

static struct kr_path_node *node_new(const char *seg, size_t len)
{
	struct kr_path_node *n = calloc(1, sizeof *n);
	if (!n)
		return NULL;
	n->slot = -1;
	n->seg = malloc(len + 1);
	if (!n->seg) {
		free(n);
		return NULL;
	}
	memcpy(n->seg, seg, len);
	n->seg[len] = 0;
	n->seglen = len;
	return n;
}

static void node_free(struct kr_path_node *n)
{
	if (!n)
		return;
	for (uint32_t i = 0; i < n->capkids; i++)
		node_free(n->kids[i]);
	free(n->kids);
	free(n->seg);
	free(n);
}

const struct kr_path_node *kr_path_lookup(const struct kr_path_node *node, const char *key,
					  size_t len)
{
	if (!node || node->nkids == 0)
		return NULL;
	uint32_t mask = node->capkids - 1;
	for (uint32_t i = seg_hash(key, len) & mask;; i = (i + 1) & mask) {
		const struct kr_path_node *k = node->kids[i];
		if (!k)
			return NULL;
		if (k->seglen == len && memcmp(k->seg, key, len) == 0)
			return k;
	}
}

static int insert_kid(struct kr_path_node *parent, struct kr_path_node *kid)
{
	if ((parent->nkids + 1) * 2 > parent->capkids) {
		uint32_t cap = parent->capkids ? parent->capkids * 2 : 4;
		struct kr_path_node **kids = calloc(cap, sizeof *kids);
		if (!kids)
			return -1;
		for (uint32_t i = 0; i < parent->capkids; i++) {
			struct kr_path_node *k = parent->kids[i];
			if (!k)
				continue;
			uint32_t j = seg_hash(k->seg, k->seglen) & (cap - 1);
			while (kids[j])
				j = (j + 1) & (cap - 1);
			kids[j] = k;
		}
		free(parent->kids);
		parent->kids = kids;
		parent->capkids = cap;
	}
	uint32_t j = seg_hash(kid->seg, kid->seglen) & (parent->capkids - 1);
	while (parent->kids[j])
		j = (j + 1) & (parent->capkids - 1);
	parent->kids[j] = kid;
	parent->nkids++;
	parent->lenmask |= 1ULL << (kid->seglen & 63);
	if (kid->seglen)
		parent->firstmask |= 1ULL << ((unsigned char)kid->seg[0] & 63);
	return 0;
}

struct kr_paths *kr_paths_new(void)
{
	struct kr_paths *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->root = node_new("", 0);
	if (!p->root) {
		free(p);
		return NULL;
	}
	return p;
}

void kr_paths_free(struct kr_paths *p)
{
	if (!p)
		return;
	node_free(p->root);
	for (uint32_t i = 0; i < p->nslots; i++)
		free(p->names[i]);
	free(p->names);
	free(p->hinted);
	free(p);
}

enum kr_err kr_paths_set_hint(struct kr_paths *p, kr_path_hint_fn hint, const void *ctx,
			      const uint8_t *hinted)
{
	uint8_t *h = malloc(p->nslots + 1);
	if (!h)
		return KR_ERR_NOMEM;
	memcpy(h, hinted, p->nslots);
	free(p->hinted);
	p->hinted = h;
	p->hint = hint;
	p->hint_ctx = ctx;
	return KR_OK;
}

enum kr_err kr_paths_add(struct kr_paths *p, const char *const *segs, const size_t *lens, size_t n,
			 uint32_t *slot)
{
	struct kr_path_node *cur = p->root;
	size_t namelen = 0;
	for (size_t i = 0; i < n; i++) {
		struct kr_path_node *k = (struct kr_path_node *)kr_path_child(cur, segs[i], lens[i]);
		if (!k) {
			k = node_new(segs[i], lens[i]);
			if (!k || insert_kid(cur, k) != 0) {
				node_free(k);
				return KR_ERR_NOMEM;
			}
		}
		cur = k;
		namelen += lens[i] + 1;
	}
	if (cur->slot < 0) {
		char **names = realloc(p->names, (p->nslots + 1) * sizeof *names);
		if (!names)
			return KR_ERR_NOMEM;
		p->names = names;
		char *name = malloc(namelen + 1);
		if (!name)
			return KR_ERR_NOMEM;
		size_t o = 0;
		for (size_t i = 0; i < n; i++) {
			if (i)
				name[o++] = '.';
			memcpy(name + o, segs[i], lens[i]);
			o += lens[i];
		}
		name[o] = 0;
		names[p->nslots] = name;
		cur->slot = (int32_t)p->nslots++;
	}
	*slot = (uint32_t)cur->slot;
	return KR_OK;
}

enum kr_err kr_view_init(struct kr_view *v, const struct kr_paths *paths)
{
	memset(v, 0, sizeof *v);
	return kr_view_bind(v, paths);
}

enum kr_err kr_view_bind(struct kr_view *v, const struct kr_paths *paths)
{
	uint32_t n = paths ? paths->nslots : 0;
	uint32_t *head = calloc(n + 1, sizeof *head);
	uint32_t *tail = calloc(n + 1, sizeof *tail);
	uint32_t *touched = calloc(n + 1, sizeof *touched);
	if (!head || !tail || !touched) {
		free(head);
		free(tail);
		free(touched);
		return KR_ERR_NOMEM;
	}
	free(v->head);
	free(v->tail);
	free(v->touched);
	v->head = head;
	v->tail = tail;
	v->touched = touched;
	v->paths = paths;
	v->nslots = n;
	v->ntouched = 0;
	kr_view_reset(v);
	return KR_OK;
}

void kr_view_fini(struct kr_view *v)
{
	free(v->head);
	free(v->tail);
	free(v->touched);
	free(v->vals);
	free(v->arena);
	free(v->trails);
	memset(v, 0, sizeof *v);
}

void kr_view_reset(struct kr_view *v)
{
	for (uint32_t i = 0; i < v->ntouched; i++) {
		v->head[v->touched[i]] = 0;
		v->tail[v->touched[i]] = 0;
	}
	v->ntouched = 0;
	v->nvals = 0;
	v->arena_len = 0;
	v->ntrails = 0;
	v->has_trails = false;
}

static int grow(void **p, uint32_t *cap, uint32_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	uint64_t c = *cap ? *cap : 64;
	while (c < need)
		c *= 2;
	if (c > UINT32_MAX)
		return -1;
	void *np = realloc(*p, (size_t)c * elem);
	if (!np)
		return -1;
	*p = np;
	*cap = (uint32_t)c;
	return 0;
}

/* Makes room for one more value of len bytes of text and trail_len trail words. */
static enum kr_err view_room(struct kr_view *v, size_t len, uint32_t trail_len)
{
	if (len > UINT32_MAX / 2)
		return KR_ERR_LIMIT;
	if (grow((void **)&v->vals, &v->capvals, v->nvals + 1, sizeof *v->vals) ||
	    grow((void **)&v->arena, &v->arena_cap, v->arena_len + (uint32_t)len + 1, 1) ||
	    grow((void **)&v->trails, &v->captrails, v->ntrails + trail_len, sizeof *v->trails))
		return KR_ERR_NOMEM;
	return KR_OK;
}

enum kr_err kr_view_add(struct kr_view *v, uint32_t slot, enum kr_vtype type, const char *text,
			size_t len, const uint32_t *trail, uint32_t trail_len)
{
	if (slot >= v->nslots)
		return KR_ERR_LIMIT;
	/* one test for the usual case: all three buffers have room already */
	if (__builtin_expect(v->nvals >= v->capvals || len >= v->arena_cap - v->arena_len ||
				     trail_len > v->captrails - v->ntrails,
			     0)) {
		enum kr_err e = view_room(v, len, trail_len);
		if (e)
			return e;
	}
	struct kr_value *val = &v->vals[v->nvals];
	val->type = (uint8_t)type;
	val->text_off = v->arena_len;
	val->len = (uint32_t)len;
	char *t = v->arena + v->arena_len;
	if (len)
		memcpy(t, text, len);
	t[len] = 0;
	v->arena_len += (uint32_t)len + 1;
	val->trail_off = v->ntrails;
	val->trail_len = trail_len;
	if (trail_len) {
		memcpy(v->trails + v->ntrails, trail, trail_len * sizeof *trail);
		v->ntrails += trail_len;
		v->has_trails = true;
	}
	val->next = 0;
	uint32_t idx = ++v->nvals;
	if (v->tail[slot])
		v->vals[v->tail[slot] - 1].next = idx;
	else {
		v->head[slot] = idx;
		v->touched[v->ntouched++] = slot;
	}
	v->tail[slot] = idx;
	const struct kr_paths *p = v->paths;
	val->hinted = type == KR_V_STRING && p->hint && p->hinted[slot];
	if (val->hinted)
		val->hint = p->hint(p->hint_ctx, slot, text, len);
	return KR_OK;
}

bool kr_view_consistent(const struct kr_view *v, const struct kr_value *a,
			const struct kr_value *b)
{
	const uint32_t *ta = v->trails + a->trail_off, *tb = v->trails + b->trail_off;
	uint32_t n = a->trail_len < b->trail_len ? a->trail_len : b->trail_len;
	for (uint32_t i = 0; i + 1 < n; i += 2) {
		if (ta[i] != tb[i])
			return true; /* different arrays from here down */
		if (ta[i + 1] != tb[i + 1])
			return false; /* same array, different elements */
	}
	return true;
}
