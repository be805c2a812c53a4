/* Configuration loading and validation (see config.h). */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* A set of names (rules, sinks, sources) so that duplicate checks stay linear. */
struct nameset {
	const char **slots;
	size_t cap, n;
};

static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/* Returns 1 when name was added, 0 when it was already there, -1 when out of memory. */
static int nameset_add(struct nameset *ns, const char *name)
{
	if ((ns->n + 1) * 2 > ns->cap) {
		size_t cap = ns->cap ? ns->cap * 2 : 64;
		const char **slots = calloc(cap, sizeof *slots);
		if (!slots)
			return -1;
		for (size_t i = 0; i < ns->cap; i++) {
			if (!ns->slots[i])
				continue;
			size_t j = name_hash(ns->slots[i]) & (cap - 1);
			while (slots[j])
				j = (j + 1) & (cap - 1);
			slots[j] = ns->slots[i];
		}
		free(ns->slots);
		ns->slots = slots;
		ns->cap = cap;
	}
	size_t j = name_hash(name) & (ns->cap - 1);
	while (ns->slots[j]) {
		if (strcmp(ns->slots[j], name) == 0)
			return 0;
		j = (j + 1) & (ns->cap - 1);
	}
	ns->slots[j] = name;
	ns->n++;
	return 1;
}

struct vctx {
	struct kr_config *c;
	char *err;
	struct nameset names; /* of the list being loaded */
};

/* out = base[idx]suffix, e.g. $.rules[12].pattern. Called once per list entry, so it avoids
 * snprintf, which dominated loading a 10,000-rule file. */
static void jp_index(char *out, size_t cap, const char *base, size_t idx, const char *suffix)
{
	char digits[24];
	size_t nd = 0;
	do {
		digits[nd++] = (char)('0' + idx % 10);
		idx /= 10;
	} while (idx);
	size_t bl = strlen(base), sl = strlen(suffix);
	if (bl + nd + sl + 3 > cap) {
		out[0] = 0;
		return;
	}
	memcpy(out, base, bl);
	size_t o = bl;
	out[o++] = '[';
	while (nd)
		out[o++] = digits[--nd];
	out[o++] = ']';
	memcpy(out + o, suffix, sl + 1);
}

static enum kr_err verr(struct vctx *v, const struct kr_json *node, const char *jpath,
			const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static enum kr_err verr(struct vctx *v, const struct kr_json *node, const char *jpath,
			const char *fmt, ...)
{
	char msg[KR_ERRBUF];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	size_t line = 1, col = 1;
	if (node)
		kr_json_linecol(v->c->text, v->c->len, node->offset, &line, &col);
	return kr_errf(v->err, KR_ERR_CONFIG, "%s:%zu:%zu: %s: %s", v->c->path, line, col, jpath,
		       msg);
}

/* Edit distance counting a swap of two neighbouring letters as one edit ("paht" -> "path"). */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 64 || lb > 64)
		return 99;
	size_t d[65][65];
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			size_t del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
			size_t best = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	}
	return d[la][lb];
}

/* " (did you mean \"x\"?)" for the closest of the names, or "" */
static void did_you_mean(const char *key, const char *const *names, size_t n, char *out,
			 size_t cap)
{
	size_t best = 99;
	const char *bn = NULL;
	for (size_t i = 0; i < n; i++) {
		size_t d = edit_distance(key, names[i]);
		if (d < best) {
			best = d;
			bn = names[i];
		}
	}
	size_t kl = strlen(key);
	if (bn && best <= (kl < 6 ? 1 : kl < 12 ? 2 : 3))
		snprintf(out, cap, " (did you mean \"%s\"?)", bn);
	else
		out[0] = 0;
}

static enum kr_err check_keys(struct vctx *v, const struct kr_json *obj, const char *jpath,
			      const char *const *allowed, size_t nallowed, const char *what)
{
	for (size_t i = 0; i < obj->n; i++) {
		bool ok = false;
		for (size_t j = 0; j < nallowed && !ok; j++)
			ok = strcmp(obj->keys[i], allowed[j]) == 0;
		if (ok)
			continue;
		char hint[128];
		did_you_mean(obj->keys[i], allowed, nallowed, hint, sizeof hint);
		struct kr_json at = {.offset = obj->key_offsets[i]};
		return verr(v, &at, jpath, "unknown key \"%s\" in %s%s", obj->keys[i], what, hint);
	}
	return KR_OK;
}

static bool opt_type_ok(enum kr_opt_type t, const struct kr_json *j)
{
	switch (t) {
	case KR_OPT_STRING: return j->type == KR_JSON_STRING;
	case KR_OPT_BOOL: return j->type == KR_JSON_TRUE || j->type == KR_JSON_FALSE;
	case KR_OPT_INT:
		return j->type == KR_JSON_NUMBER && j->num >= 0 && j->num == (double)(long long)j->num;
	case KR_OPT_STRINGS:
		if (j->type == KR_JSON_STRING)
			return true;
		if (j->type != KR_JSON_ARRAY)
			return false;
		for (size_t i = 0; i < j->n; i++)
			if (j->items[i]->type != KR_JSON_STRING)
				return false;
		return true;
	case KR_OPT_OBJECT:
		if (j->type != KR_JSON_OBJECT)
			return false;
		for (size_t i = 0; i < j->n; i++)
			if (j->items[i]->type != KR_JSON_STRING)
				return false;
		return true;
	}
	return false;
}

static const char *opt_type_name(enum kr_opt_type t)
{
	switch (t) {
	case KR_OPT_STRING: return "a string";
	case KR_OPT_BOOL: return "true or false";
	case KR_OPT_INT: return "a non-negative integer";
	case KR_OPT_STRINGS: return "a string or an array of strings";
	case KR_OPT_OBJECT: return "an object of strings";
	}
	return "?";
}

/* Common checks of a source or sink entry: name, type, plugin options. */
static enum kr_err check_plugin_entry(struct vctx *v, const struct kr_json *o, const char *jpath,
				      const char *what, const struct kr_option *opts,
				      bool available, const char **name, const char **type,
				      const char *const *known_types, size_t nknown)
{
	char p[160];
	if (o->type != KR_JSON_OBJECT)
		return verr(v, o, jpath, "a %s must be an object", what);
	const struct kr_json *n = kr_json_get(o, "name"), *t = kr_json_get(o, "type");
	if (!n || n->type != KR_JSON_STRING || n->len == 0)
		return verr(v, n ? n : o, jpath, "a %s needs a \"name\" (a non-empty string)", what);
	if (!t || t->type != KR_JSON_STRING) {
		snprintf(p, sizeof p, "%s.type", jpath);
		return verr(v, t ? t : o, t ? p : jpath, "a %s needs a \"type\" (a string)", what);
	}
	*name = n->str;
	*type = t->str;
	if (!available && !opts) {
		for (size_t i = 0; i < nknown; i++)
			if (strcmp(known_types[i], t->str) == 0)
				return KR_OK; /* recognised; its options are checked where it is built */
		char hint[128], list[256] = "";
		did_you_mean(t->str, known_types, nknown, hint, sizeof hint);
		for (size_t i = 0; i < nknown; i++) {
			strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
			strncat(list, known_types[i], sizeof list - strlen(list) - 1);
		}
		snprintf(p, sizeof p, "%s.type", jpath);
		return verr(v, t, p, "unknown %s type \"%s\"%s; known types: %s", what, t->str, hint,
			    list);
	}
	const char *allowed[64];
	size_t na = 0;
	allowed[na++] = "name";
	allowed[na++] = "type";
	for (const struct kr_option *op = opts; op && op->name && na < 64; op++)
		allowed[na++] = op->name;
	char ctxname[96];
	snprintf(ctxname, sizeof ctxname, "%s of type \"%s\"", what, t->str);
	enum kr_err e = check_keys(v, o, jpath, allowed, na, ctxname);
	if (e)
		return e;
	for (const struct kr_option *op = opts; op && op->name; op++) {
		const struct kr_json *val = kr_json_get(o, op->name);
		snprintf(p, sizeof p, "%s.%s", jpath, op->name);
		if (!val) {
			if (op->required)
				return verr(v, o, jpath, "%s \"%s\" needs \"%s\"", what, n->str,
					    op->name);
			continue;
		}
		if (!opt_type_ok(op->type, val))
			return verr(v, val, p, "\"%s\" must be %s", op->name,
				    opt_type_name(op->type));
	}
	return KR_OK;
}

static enum kr_err load_sinks(struct vctx *v, const struct kr_json *arr)
{
	free(v->names.slots);
	v->names = (struct nameset){0};
	struct kr_config *c = v->c;
	if (arr->type != KR_JSON_ARRAY)
		return verr(v, arr, "$.sinks", "\"sinks\" must be an array");
	const char *known[32];
	size_t nk = 0;
	for (const struct kr_sink_entry *e = kr_sink_registry; e->type && nk < 32; e++)
		known[nk++] = e->type;
	c->sinks = calloc(arr->n + 1, sizeof *c->sinks);
	if (!c->sinks)
		return kr_errf(v->err, KR_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < arr->n; i++) {
		const struct kr_json *o = arr->items[i];
		char jp[64];
		jp_index(jp, sizeof jp, "$.sinks", i, "");
		const struct kr_json *t = kr_json_get(o, "type");
		const struct kr_sink_entry *ent =
			t && t->type == KR_JSON_STRING ? kr_sink_lookup(t->str) : NULL;
		struct kr_sink_cfg *s = &c->sinks[i];
		enum kr_err e = check_plugin_entry(v, o, jp, "sink",
						   ent && ent->plugin ? ent->plugin->options : NULL,
						   ent && ent->plugin, &s->name, &s->type, known, nk);
		if (e)
			return e;
		int added = nameset_add(&v->names, s->name);
		if (added < 0)
			e = kr_errf(v->err, KR_ERR_NOMEM, "out of memory");
		else if (added == 0)
			e = verr(v, kr_json_get(o, "name"), jp, "duplicate sink name \"%s\"", s->name);
		if (e)
			return e;
		s->plugin = ent ? ent->plugin : NULL;
		s->obj = o;
		c->nsinks++;
	}
	return KR_OK;
}

static enum kr_err load_sources(struct vctx *v, const struct kr_json *arr)
{
	free(v->names.slots);
	v->names = (struct nameset){0};
	struct kr_config *c = v->c;
	if (arr->type != KR_JSON_ARRAY)
		return verr(v, arr, "$.sources", "\"sources\" must be an array");
	const char *known[32];
	size_t nk = 0;
	for (const struct kr_source_entry *e = kr_source_registry; e->type && nk < 32; e++)
		known[nk++] = e->type;
	c->sources = calloc(arr->n + 1, sizeof *c->sources);
	if (!c->sources)
		return kr_errf(v->err, KR_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < arr->n; i++) {
		const struct kr_json *o = arr->items[i];
		char jp[64];
		jp_index(jp, sizeof jp, "$.sources", i, "");
		const struct kr_json *t = kr_json_get(o, "type");
		const struct kr_source_entry *ent =
			t && t->type == KR_JSON_STRING ? kr_source_lookup(t->str) : NULL;
		struct kr_source_cfg *s = &c->sources[i];
		enum kr_err e = check_plugin_entry(v, o, jp, "source",
						   ent && ent->plugin ? ent->plugin->options : NULL,
						   ent && ent->plugin, &s->name, &s->type, known, nk);
		if (e)
			return e;
		int added = nameset_add(&v->names, s->name);
		if (added < 0)
			e = kr_errf(v->err, KR_ERR_NOMEM, "out of memory");
		else if (added == 0)
			e = verr(v, kr_json_get(o, "name"), jp, "duplicate source name \"%s\"", s->name);
		if (e)
			return e;
		s->plugin = ent ? ent->plugin : NULL;
		s->obj = o;
		c->nsources++;
	}
	return KR_OK;
}

static enum kr_err load_rules(struct vctx *v, const struct kr_json *arr)
{
	free(v->names.slots);
	v->names = (struct nameset){0};
	struct kr_config *c = v->c;
	if (arr->type != KR_JSON_ARRAY)
		return verr(v, arr, "$.rules", "\"rules\" must be an array");
	c->rules = calloc(arr->n + 1, sizeof *c->rules);
	if (!c->rules)
		return kr_errf(v->err, KR_ERR_NOMEM, "out of memory");
	c->rules_cap = arr->n;
	static const char *const rule_keys[] = {"name", "pattern", "targets", "description"};
	for (size_t i = 0; i < arr->n; i++) {
		const struct kr_json *o = arr->items[i];
		char jp[64], jp2[96];
		jp_index(jp, sizeof jp, "$.rules", i, "");
		if (o->type != KR_JSON_OBJECT)
			return verr(v, o, jp, "a rule must be an object");
		enum kr_err e = check_keys(v, o, jp, rule_keys, 4, "a rule");
		if (e)
			return e;
		struct kr_rule_cfg *r = &c->rules[i];
		const struct kr_json *n = kr_json_get(o, "name"), *pat = kr_json_get(o, "pattern"),
				     *tg = kr_json_get(o, "targets"),
				     *d = kr_json_get(o, "description");
		if (!n || n->type != KR_JSON_STRING || n->len == 0)
			return verr(v, n ? n : o, jp, "a rule needs a \"name\" (a non-empty string)");
		if (d && d->type != KR_JSON_STRING) {
			snprintf(jp2, sizeof jp2, "%s.description", jp);
			return verr(v, d, jp2, "\"description\" must be a string");
		}
		r->name = n->str;
		int added = nameset_add(&v->names, r->name);
		if (added <= 0) {
			return added < 0 ? kr_errf(v->err, KR_ERR_NOMEM, "out of memory")
					 : verr(v, n, jp, "duplicate rule name \"%s\"", r->name);
		}
		if (!pat)
			return verr(v, o, jp, "rule \"%s\" needs a \"pattern\"", r->name);
		jp_index(jp2, sizeof jp2, "$.rules", i, ".pattern");
		const struct kr_json *bad = NULL;
		char perr[KR_ERRBUF];
		e = kr_rules_add(c->compiled, pat, &bad, perr);
		if (e)
			return verr(v, bad ? bad : pat, jp2, "%s", perr);
		r->pattern = pat;
		if (!tg)
			return verr(v, o, jp, "rule \"%s\" needs \"targets\" (an array of sink names)",
				    r->name);
		jp_index(jp2, sizeof jp2, "$.rules", i, ".targets");
		if (tg->type != KR_JSON_ARRAY)
			return verr(v, tg, jp2, "\"targets\" must be an array of sink names");
		r->targets = calloc(tg->n + 1, sizeof *r->targets);
		if (!r->targets)
			return kr_errf(v->err, KR_ERR_NOMEM, "out of memory");
		for (size_t k = 0; k < tg->n; k++) {
			const struct kr_json *t = tg->items[k];
			char jp3[128];
			jp_index(jp3, sizeof jp3, jp2, k, "");
			if (t->type != KR_JSON_STRING)
				return verr(v, t, jp3, "a target must be a sink name (a string)");
			size_t si = 0;
			while (si < c->nsinks && strcmp(c->sinks[si].name, t->str) != 0)
				si++;
			if (si == c->nsinks) {
				const char *names[256];
				size_t nn = 0;
				for (size_t q = 0; q < c->nsinks && nn < 256; q++)
					names[nn++] = c->sinks[q].name;
				char hint[128];
				did_you_mean(t->str, names, nn, hint, sizeof hint);
				return verr(v, t, jp3, "no sink is named \"%s\"%s", t->str, hint);
			}
			bool dup = false;
			for (size_t q = 0; q < r->ntargets; q++)
				dup |= r->targets[q] == si;
			if (!dup)
				r->targets[r->ntargets++] = (uint32_t)si;
		}
		c->nrules++;
	}
	return KR_OK;
}

enum kr_err kr_config_parse(const char *name, const char *text, size_t len,
			    struct kr_config **out, char *err)
{
	*out = NULL;
	struct kr_config *c = calloc(1, sizeof *c);
	if (!c)
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	c->path = strdup(name);
	c->text = malloc(len + 1);
	if (!c->path || !c->text) {
		kr_config_free(c);
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	}
	memcpy(c->text, text, len);
	c->text[len] = 0;
	c->len = len;
	struct vctx v = {.c = c, .err = err};
	struct kr_json_opts jo = {.allow_comments = true, .max_depth = 128};
	size_t off = 0;
	char jerr[KR_ERRBUF];
	enum kr_err e = kr_json_parse(c->text, len, &jo, &c->doc, &off, jerr);
	if (e) {
		struct kr_json at = {.offset = off};
		verr(&v, &at, "$", "%s", jerr);
		kr_config_free(c);
		return e == KR_ERR_NOMEM ? e : KR_ERR_CONFIG;
	}
	const struct kr_json *d = c->doc;
	if (d->type != KR_JSON_OBJECT)
		e = verr(&v, d, "$", "the configuration must be a JSON object");
	static const char *const top_keys[] = {"sources", "sinks", "rules"};
	if (!e)
		e = check_keys(&v, d, "$", top_keys, 3, "the configuration");
	if (!e && kr_rules_new(&c->compiled) != KR_OK)
		e = kr_errf(err, KR_ERR_NOMEM, "out of memory");
	const struct kr_json *j;
	if (!e && (j = kr_json_get(d, "sources")))
		e = load_sources(&v, j);
	if (!e && (j = kr_json_get(d, "sinks")))
		e = load_sinks(&v, j);
	if (!e && (j = kr_json_get(d, "rules")))
		e = load_rules(&v, j);
	if (!e && kr_rules_build(c->compiled) != KR_OK)
		e = kr_errf(err, KR_ERR_NOMEM, "out of memory");
	free(v.names.slots);
	if (e) {
		kr_config_free(c);
		return e;
	}
	*out = c;
	return KR_OK;
}

enum kr_err kr_read_file(const char *path, char **out, size_t *len, char *err)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	if (!f)
		return kr_errf(err, KR_ERR_IO, "%s: %s", path, strerror(errno));
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (n + 1 >= cap) {
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		size_t r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0)
			break;
	}
	int rerr = ferror(f);
	if (f != stdin)
		fclose(f);
	if (!buf)
		return kr_errf(err, KR_ERR_NOMEM, "%s: out of memory", path);
	if (rerr) {
		free(buf);
		return kr_errf(err, KR_ERR_IO, "%s: read error", path);
	}
	buf[n] = 0;
	*out = buf;
	*len = n;
	return KR_OK;
}

enum kr_err kr_config_load(const char *path, struct kr_config **out, char *err)
{
	char *text;
	size_t len;
	enum kr_err e = kr_read_file(path, &text, &len, err);
	if (e)
		return e;
	e = kr_config_parse(path, text, len, out, err);
	free(text);
	return e;
}

void kr_config_free(struct kr_config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->rules_cap; i++)
		free(c->rules[i].targets);
	free(c->rules);
	free(c->sinks);
	free(c->sources);
	kr_rules_free(c->compiled);
	kr_json_free(c->doc);
	free(c->text);
	free(c->path);
	free(c);
}

size_t kr_config_unavailable(const struct kr_config *c, char *err)
{
	size_t n = 0, o = 0;
	err[0] = 0;
	for (size_t i = 0; i < c->nsources + c->nsinks; i++) {
		bool src = i < c->nsources;
		const char *name = src ? c->sources[i].name : c->sinks[i - c->nsources].name;
		const char *type = src ? c->sources[i].type : c->sinks[i - c->nsources].type;
		bool have = src ? c->sources[i].plugin != NULL
				: c->sinks[i - c->nsources].plugin != NULL;
		if (have)
			continue;
		n++;
		if (o < KR_ERRBUF - 1) {
			int w = snprintf(err + o, KR_ERRBUF - o, "%s%s \"%s\": type \"%s\" is not available in this build",
					 o ? "; " : "", src ? "source" : "sink", name, type);
			if (w > 0)
				o += (size_t)w;
		}
	}
	return n;
}
