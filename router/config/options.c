/* Declarative options (see options.h). One function per type reads a JSON value into the
 * struct; defaults are the same JSON text read the same way, so a default is written once, in
 * the table, and cannot disagree with what a user could write. */
#include "options.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"

static void *keep(struct kr_opts_mem *m, void *p, void (*release)(void *))
{
	if (!p)
		return NULL;
	if (!kr_grow(&m->v, &m->cap, m->n + 1, sizeof *m->v, 16)) {
		release(p);
		return NULL;
	}
	m->v[m->n].p = p;
	m->v[m->n++].release = release;
	return p;
}

void *kr_opts_keep(struct kr_opts_mem *m, void *p)
{
	return keep(m, p, free);
}

static void json_release(void *j)
{
	kr_json_free(j);
}

struct kr_json *kr_opts_keep_json(struct kr_opts_mem *m, struct kr_json *j)
{
	return keep(m, j, json_release);
}

void kr_opts_mem_free(struct kr_opts_mem *m)
{
	for (size_t i = m->n; i-- > 0;)
		m->v[i].release(m->v[i].p);
	free(m->v);
	*m = (struct kr_opts_mem){0};
}

static enum kr_err verror(const struct kr_opts_src *s, const struct kr_json *node,
			  const char *jpath, const char *fmt, va_list ap)
{
	char msg[KR_ERRBUF];
	vsnprintf(msg, sizeof msg, fmt, ap);
	size_t line = 1, col = 1;
	if (node && s->text)
		kr_json_linecol(s->text, s->len, node->offset, &line, &col);
	return kr_opts_error_at(s->err, s->file, s->text ? line : 0, col, jpath, msg);
}

enum kr_err kr_opts_error_at(char *err, const char *file, size_t line, size_t col,
			     const char *jpath, const char *msg)
{
	char place[64] = "";
	if (line)
		snprintf(place, sizeof place, ":%zu:%zu", line, col);
	/* what the path may take: the buffer less the rest (the message up to half of it) */
	size_t msg_len = strnlen(msg, KR_ERRBUF / 2), fixed = strlen(file) + strlen(place) + 4;
	size_t room = KR_ERRBUF - 1 > fixed + msg_len ? KR_ERRBUF - 1 - fixed - msg_len : 0;
	size_t n = strlen(jpath);
	if (n <= room || room < 16)
		return kr_errf(err, KR_ERR_CONFIG, "%s%s: %s: %s", file, place, jpath, msg);
	size_t head = (room - 3) / 2, tail = room - 3 - head;
	return kr_errf(err, KR_ERR_CONFIG, "%s%s: %.*s...%s: %.*s", file, place, (int)head, jpath,
		       jpath + n - tail, (int)msg_len, msg);
}

enum kr_err kr_opts_error(const struct kr_opts_src *s, const struct kr_json *node,
			  const char *jpath, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	enum kr_err e = verror(s, node, jpath, fmt, ap);
	va_end(ap);
	return e;
}

bool kr_opts_offline(const struct kr_opts_check *c)
{
	return c->src->offline;
}

enum kr_err kr_opts_reject(const struct kr_opts_check *c, const char *option, const char *fmt,
			   ...)
{
	const struct kr_json *node = option ? kr_json_get(c->obj, option) : NULL;
	char jp[256];
	if (node)
		snprintf(jp, sizeof jp, "%s.%s", c->jpath, option);
	else
		snprintf(jp, sizeof jp, "%s", c->jpath);
	va_list ap;
	va_start(ap, fmt);
	enum kr_err e = verror(c->src, node ? node : c->obj, jp, fmt, ap);
	va_end(ap);
	return e;
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
void kr_opts_did_you_mean(const char *key, const char *const *names, size_t n, char *out,
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

static const char *const units_duration[] = {"ms", "s", "m", "h", NULL};
static const uint64_t scale_duration[] = {1, 1000, 60000, 3600000};
static const char *const units_size[] = {"B",  "KiB", "MiB", "GiB", "kB", "KB",
					 "MB", "GB",  "K",   "M",   "G",  NULL};
static const uint64_t scale_size[] = {1,       1024,    1048576, 1073741824, 1000, 1000,
				      1000000, 1000000000, 1024, 1048576, 1073741824};

/* "10s", "1.5 MiB": a number and a unit among units, into *out (rounded down). */
static bool with_unit(const char *s, const char *const *units, const uint64_t *scale,
		      uint64_t *out)
{
	char *end;
	errno = 0;
	double x = strtod(s, &end);
	if (end == s || errno || x < 0 || x != x)
		return false;
	while (*end == ' ')
		end++;
	for (size_t i = 0; units[i]; i++)
		if (strcmp(end, units[i]) == 0) {
			double v = x * (double)scale[i];
			if (v >= 18446744073709551615.0)
				return false;
			*out = (uint64_t)v;
			return true;
		}
	return false;
}

void kr_opts_describe(const struct kr_option *o, char *out, size_t cap)
{
	char range[96] = "";
	if (o->type == KR_OPT_INT || o->type == KR_OPT_DURATION || o->type == KR_OPT_SIZE) {
		if (o->max)
			snprintf(range, sizeof range, " from %" PRIu64 " to %" PRIu64, o->min, o->max);
		else if (o->min)
			snprintf(range, sizeof range, " of at least %" PRIu64, o->min);
	}
	char list[256] = "";
	for (size_t i = 0; o->values && o->values[i]; i++) {
		size_t l = strlen(list);
		snprintf(list + l, sizeof list - l, "%s\"%s\"", i ? ", " : "", o->values[i]);
	}
	switch (o->type) {
	case KR_OPT_STRING: snprintf(out, cap, "a string"); break;
	case KR_OPT_BOOL: snprintf(out, cap, "true or false"); break;
	case KR_OPT_INT: snprintf(out, cap, "an integer%s", range); break;
	case KR_OPT_DURATION:
		snprintf(out, cap, "a duration%s ms: milliseconds, or a string such as \"500ms\", "
				   "\"10s\", \"5m\", \"1h\"",
			 range);
		break;
	case KR_OPT_SIZE:
		snprintf(out, cap, "a size in bytes%s: an integer, or a string such as \"64KiB\", "
				   "\"1MiB\"",
			 range);
		break;
	case KR_OPT_ENUM: snprintf(out, cap, "one of %s", list); break;
	case KR_OPT_URL: snprintf(out, cap, "a string: a URL with the scheme %s", list); break;
	case KR_OPT_PATH:
		snprintf(out, cap, "a string: a path, relative to the config's folder");
		break;
	case KR_OPT_STRINGS: snprintf(out, cap, "a string or an array of strings"); break;
	case KR_OPT_PATHS:
		snprintf(out, cap, "a string or an array of strings: paths or globs, relative to the "
				   "config's folder");
		break;
	case KR_OPT_MAP: snprintf(out, cap, "an object of strings"); break;
	case KR_OPT_TABLE: snprintf(out, cap, "an object"); break;
	case KR_OPT_SECRET_ENV:
		snprintf(out, cap, "a string: the name of an environment variable that holds a secret "
				   "(it must be set; its value is never logged)");
		break;
	case KR_OPT_SINK: snprintf(out, cap, "a string: the name of a sink"); break;
	case KR_OPT_DOC: snprintf(out, cap, "%s", o->values ? o->values[0] : "see help"); break;
	}
}

static enum kr_err bad(const struct kr_opts_src *s, const struct kr_option *o,
		       const struct kr_json *j, const char *jp)
{
	char what[400];
	kr_opts_describe(o, what, sizeof what);
	return kr_opts_error(s, j, jp, "\"%s\" must be %s", o->name, what);
}

static bool in_range(const struct kr_option *o, uint64_t x)
{
	return x >= o->min && (!o->max || x <= o->max);
}

static char *resolve(const struct kr_opts_src *s, const char *p)
{
	return kr_opts_keep(s->mem, kr_resolve_path(s->base_dir, p));
}

static enum kr_err list_of_strings(const struct kr_opts_src *s, const struct kr_option *o,
				   const struct kr_json *j, const char *jp, void *at)
{
	size_t n = j->type == KR_JSON_ARRAY ? j->n : 1;
	if (j->type != KR_JSON_ARRAY && j->type != KR_JSON_STRING)
		return bad(s, o, j, jp);
	if (n == 0)
		return kr_opts_error(s, j, jp, "\"%s\" must not be empty", o->name);
	const char **v = kr_opts_keep(s->mem, calloc(n, sizeof *v));
	if (!v)
		return kr_errf(s->err, KR_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const struct kr_json *x = j->type == KR_JSON_ARRAY ? j->items[i] : j;
		if (x->type != KR_JSON_STRING || x->len == 0)
			return bad(s, o, x, jp);
		v[i] = o->type == KR_OPT_PATHS ? resolve(s, x->str) : x->str;
		if (!v[i])
			return kr_errf(s->err, KR_ERR_NOMEM, "out of memory");
	}
	*(struct kr_strings *)at = (struct kr_strings){.v = v, .n = n};
	return KR_OK;
}

static enum kr_err unknown_keys(const struct kr_opts_src *s, const struct kr_option *table,
				const struct kr_json *obj, const char *jpath);

/* Reads one value j of option o (path jp) into at. */
static enum kr_err fill_one(const struct kr_opts_src *s, const struct kr_option *o,
			    const struct kr_json *j, const char *jp, void *at)
{
	uint64_t x;
	switch (o->type) {
	case KR_OPT_STRING:
		if (j->type != KR_JSON_STRING)
			return bad(s, o, j, jp);
		*(const char **)at = j->str;
		return KR_OK;
	case KR_OPT_BOOL:
		if (j->type != KR_JSON_TRUE && j->type != KR_JSON_FALSE)
			return bad(s, o, j, jp);
		*(bool *)at = j->type == KR_JSON_TRUE;
		return KR_OK;
	case KR_OPT_INT:
		if (j->type != KR_JSON_NUMBER || j->num < 0 || j->num >= 18446744073709551615.0 ||
		    j->num != (double)(uint64_t)j->num || !in_range(o, (uint64_t)j->num))
			return bad(s, o, j, jp);
		*(uint64_t *)at = (uint64_t)j->num * (o->scale > 1 ? o->scale : 1);
		return KR_OK;
	case KR_OPT_DURATION:
	case KR_OPT_SIZE:
		if (j->type == KR_JSON_NUMBER && j->num >= 0 && j->num < 18446744073709551615.0 &&
		    j->num == (double)(uint64_t)j->num)
			x = (uint64_t)j->num;
		else if (j->type != KR_JSON_STRING ||
			 !with_unit(j->str, o->type == KR_OPT_SIZE ? units_size : units_duration,
				    o->type == KR_OPT_SIZE ? scale_size : scale_duration, &x))
			return bad(s, o, j, jp);
		if (!in_range(o, x))
			return bad(s, o, j, jp);
		*(uint64_t *)at = x;
		return KR_OK;
	case KR_OPT_ENUM:
		if (j->type == KR_JSON_STRING)
			for (int i = 0; o->values[i]; i++)
				if (strcmp(o->values[i], j->str) == 0) {
					*(int *)at = i;
					return KR_OK;
				}
		return bad(s, o, j, jp);
	case KR_OPT_URL: {
		if (j->type != KR_JSON_STRING)
			return bad(s, o, j, jp);
		const char *sep = strstr(j->str, "://");
		bool ok = false;
		for (size_t i = 0; sep && sep[3] && o->values[i]; i++)
			ok = ok || (strlen(o->values[i]) == (size_t)(sep - j->str) &&
				    strncmp(o->values[i], j->str, (size_t)(sep - j->str)) == 0);
		if (!ok || strpbrk(j->str, " \r\n\t"))
			return bad(s, o, j, jp);
		*(const char **)at = j->str;
		return KR_OK;
	}
	case KR_OPT_PATH:
		if (j->type != KR_JSON_STRING || j->len == 0)
			return bad(s, o, j, jp);
		if (!(*(const char **)at = resolve(s, j->str)))
			return kr_errf(s->err, KR_ERR_NOMEM, "out of memory");
		return KR_OK;
	case KR_OPT_STRINGS:
	case KR_OPT_PATHS:
		return list_of_strings(s, o, j, jp, at);
	case KR_OPT_MAP: {
		if (j->type != KR_JSON_OBJECT)
			return bad(s, o, j, jp);
		const char **k = kr_opts_keep(s->mem, calloc(j->n + 1, sizeof *k)),
			   **v = kr_opts_keep(s->mem, calloc(j->n + 1, sizeof *v));
		if (!k || !v)
			return kr_errf(s->err, KR_ERR_NOMEM, "out of memory");
		for (size_t i = 0; i < j->n; i++) {
			if (j->items[i]->type != KR_JSON_STRING) {
				char p[512];
				snprintf(p, sizeof p, "%s.%s", jp, j->keys[i]);
				return kr_opts_error(s, j->items[i], p, "must be a string");
			}
			k[i] = j->keys[i];
			v[i] = j->items[i]->str;
		}
		*(struct kr_strmap *)at = (struct kr_strmap){.keys = k, .values = v, .n = j->n};
		return KR_OK;
	}
	case KR_OPT_TABLE: {
		if (j->type != KR_JSON_OBJECT)
			return bad(s, o, j, jp);
		enum kr_err e = unknown_keys(s, o->table, j, jp);
		return e ? e : kr_opts_fill(s, o->table, j, jp, at);
	}
	case KR_OPT_SECRET_ENV: {
		if (j->type != KR_JSON_STRING || j->len == 0)
			return bad(s, o, j, jp);
		if (s->offline) {
			*(struct kr_secret *)at = (struct kr_secret){.env = j->str, .value = NULL};
			return KR_OK;
		}
		const char *v = getenv(j->str);
		if (!v || !*v)
			return kr_opts_error(s, j, jp, "environment variable %s is not set", j->str);
		if (strpbrk(v, "\r\n"))
			return kr_opts_error(s, j, jp, "environment variable %s has a line break",
					     j->str);
		*(struct kr_secret *)at = (struct kr_secret){.env = j->str, .value = v};
		return KR_OK;
	}
	case KR_OPT_SINK:
		if (!s->sink_ref)
			return kr_opts_error(s, j, jp, "no sink can be named here");
		return s->sink_ref(s->sink_ctx, j, jp, (int32_t *)at);
	case KR_OPT_DOC:
		return KR_OK;
	}
	return bad(s, o, j, jp);
}

/* The default of o into at; a default that does not parse or fit is a bug of the table. */
static enum kr_err fill_default(const struct kr_opts_src *s, const struct kr_option *o, void *at)
{
	if (o->type == KR_OPT_SINK) {
		*(int32_t *)at = -1;
		return KR_OK;
	}
	if (o->type == KR_OPT_TABLE)
		return kr_opts_defaults(s, o->table, at);
	if (!o->def || o->type == KR_OPT_DOC)
		return KR_OK;
	struct kr_json *j = NULL;
	size_t off;
	char perr[KR_ERRBUF];
	if (kr_json_parse(o->def, strlen(o->def), NULL, &j, &off, perr) != KR_OK)
		return kr_errf(s->err, KR_ERR_CONFIG, "option \"%s\": default %s is not JSON",
			       o->name, o->def);
	struct kr_opts_src quiet = *s;
	quiet.text = NULL;
	quiet.file = "default";
	enum kr_err e = fill_one(&quiet, o, j, o->name, at);
	if (e == KR_OK && (o->type == KR_OPT_STRING || o->type == KR_OPT_URL ||
			   o->type == KR_OPT_STRINGS || o->type == KR_OPT_MAP)) {
		/* the value points into the tree: the tree lives as long as the config */
		if (!kr_opts_keep_json(s->mem, j))
			return kr_errf(s->err, KR_ERR_NOMEM, "out of memory");
		return KR_OK;
	}
	kr_json_free(j);
	return e;
}

enum kr_err kr_opts_defaults(const struct kr_opts_src *s, const struct kr_option *table,
			     void *out)
{
	for (const struct kr_option *o = table; o && o->name; o++) {
		enum kr_err e = fill_default(s, o, (char *)out + o->offset);
		if (e)
			return e;
	}
	return KR_OK;
}

/* A key of obj that table does not have, as an error with a did-you-mean. */
static enum kr_err unknown_keys(const struct kr_opts_src *s, const struct kr_option *table,
				const struct kr_json *obj, const char *jpath)
{
	const char *names[64];
	size_t n = kr_opts_names(table, names, 64);
	for (size_t i = 0; i < obj->n; i++) {
		size_t k = 0;
		while (k < n && strcmp(names[k], obj->keys[i]) != 0)
			k++;
		if (k < n)
			continue;
		char hint[128];
		kr_opts_did_you_mean(obj->keys[i], names, n, hint, sizeof hint);
		struct kr_json at = {.offset = obj->key_offsets[i]};
		return kr_opts_error(s, &at, jpath, "unknown key \"%s\"%s", obj->keys[i], hint);
	}
	return KR_OK;
}

static enum kr_err fill_table(const struct kr_opts_src *s, const struct kr_option *table,
			      const struct kr_json *obj, const char *jpath, void *out,
			      bool defaults)
{
	for (const struct kr_option *o = table; o && o->name; o++) {
		void *at = (char *)out + o->offset;
		const struct kr_json *j = kr_json_get(obj, o->name);
		enum kr_err e;
		if (!j) {
			if (!defaults)
				continue;
			if (o->required)
				return kr_opts_error(s, obj, jpath, "needs \"%s\"", o->name);
			e = fill_default(s, o, at);
		} else {
			char jp[512];
			snprintf(jp, sizeof jp, "%s.%s", jpath, o->name);
			e = o->type == KR_OPT_TABLE && defaults ? kr_opts_defaults(s, o->table, at)
								 : KR_OK;
			if (!e)
				e = fill_one(s, o, j, jp, at);
		}
		if (e)
			return e;
	}
	return KR_OK;
}

enum kr_err kr_opts_fill(const struct kr_opts_src *s, const struct kr_option *table,
			 const struct kr_json *obj, const char *jpath, void *out)
{
	return fill_table(s, table, obj, jpath, out, true);
}

enum kr_err kr_opts_update(const struct kr_opts_src *s, const struct kr_option *table,
			   const struct kr_json *obj, const char *jpath, void *out)
{
	if (obj->type != KR_JSON_OBJECT)
		return kr_opts_error(s, obj, jpath, "must be an object");
	enum kr_err e = unknown_keys(s, table, obj, jpath);
	return e ? e : fill_table(s, table, obj, jpath, out, false);
}

size_t kr_opts_names(const struct kr_option *table, const char **names, size_t cap)
{
	size_t n = 0;
	for (const struct kr_option *o = table; o && o->name && n < cap; o++)
		names[n++] = o->name;
	return n;
}

void kr_opts_print(FILE *f, const struct kr_option *table, int indent)
{
	for (const struct kr_option *o = table; o && o->name; o++) {
		char what[400];
		kr_opts_describe(o, what, sizeof what);
		fprintf(f, "%*s%s  (%s%s", indent, "", o->name, what, o->required ? "; required" : "");
		if (o->def)
			fprintf(f, "; default %s", o->def);
		fprintf(f, ")\n%*s    %s\n", indent, "", o->help ? o->help : "");
		if (o->type == KR_OPT_TABLE)
			kr_opts_print(f, o->table, indent + 4);
	}
}

void kr_opts_print_doc(FILE *f, const char *doc, int indent, int width)
{
	const char *p = doc;
	while (p && *p) {
		/* a paragraph: up to a blank line; single newlines and runs of blanks are spaces */
		const char *end = strstr(p, "\n\n");
		if (!end)
			end = p + strlen(p);
		fputc('\n', f);
		int col = 0;
		const char *w = p;
		while (w < end) {
			while (w < end && (*w == ' ' || *w == '\n'))
				w++;
			const char *we = w;
			while (we < end && *we != ' ' && *we != '\n')
				we++;
			if (we == w)
				break;
			int n = (int)(we - w);
			if (col && col + 1 + n > width) {
				fputc('\n', f);
				col = 0;
			}
			if (!col)
				col = fprintf(f, "%*s%.*s", indent, "", n, w);
			else
				col += fprintf(f, " %.*s", n, w);
			w = we;
		}
		if (col)
			fputc('\n', f);
		p = end;
		while (*p == '\n')
			p++;
	}
}
