/* Event fields for sinks (see fields.h). */
#include "fields.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

struct part {
	char *text; /* literal text, or the placeholder's JSONPath */
	size_t len;
	bool path;
};

struct kr_tmpl {
	struct part *parts;
	size_t n;
};

void kr_tmpl_free(struct kr_tmpl *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++)
		free(t->parts[i].text);
	free(t->parts);
	free(t);
}

/* A JSONPath of the kinds kr_json_path reads: "$" then ".name" or "[digits]" segments, names
 * without '.', '[', '<' or '>'. */
static const char *path_check(const char *p, size_t n, bool names_only)
{
	if (n < 2 || p[0] != '$')
		return "a JSONPath starts with \"$.\"";
	size_t i = 1;
	while (i < n) {
		if (p[i] == '.') {
			size_t s = ++i;
			while (i < n && !strchr(".[]<>", p[i]))
				i++;
			if (i == s)
				return "a JSONPath has an empty name";
		} else if (p[i] == '[' && !names_only) {
			size_t s = ++i;
			while (i < n && p[i] >= '0' && p[i] <= '9')
				i++;
			if (i == s || i >= n || p[i] != ']')
				return "a JSONPath index is [digits]";
			i++;
		} else {
			return names_only ? "a JSONPath of names only ($.a.b)"
					  : "a JSONPath of names and indexes ($.a.b, $.a[0])";
		}
	}
	return NULL;
}

static bool add_part(struct kr_tmpl *t, const char *s, size_t n, bool path)
{
	struct part *p = realloc(t->parts, (t->n + 1) * sizeof *p);
	if (!p)
		return false;
	t->parts = p;
	char *c = malloc(n + 1);
	if (!c)
		return false;
	memcpy(c, s, n);
	c[n] = 0;
	t->parts[t->n++] = (struct part){c, n, path};
	return true;
}

struct kr_tmpl *kr_tmpl_new(const char *text, char *err)
{
	struct kr_tmpl *t = calloc(1, sizeof *t);
	if (!t) {
		kr_errf(err, KR_ERR_NOMEM, "out of memory");
		return NULL;
	}
	const char *p = text, *lit = text;
	bool ok = true;
	while (ok && *p) {
		if (p[0] != '<' || p[1] != '$') {
			p++;
			continue;
		}
		const char *close = strchr(p, '>');
		if (!close) {
			kr_errf(err, KR_ERR_CONFIG, "the placeholder at character %zu has no '>'",
				(size_t)(p - text) + 1);
			kr_tmpl_free(t);
			return NULL;
		}
		const char *why = path_check(p + 1, (size_t)(close - p - 1), false);
		if (why) {
			kr_errf(err, KR_ERR_CONFIG, "placeholder %.*s: %s", (int)(close - p + 1), p,
				why);
			kr_tmpl_free(t);
			return NULL;
		}
		if (p > lit)
			ok = add_part(t, lit, (size_t)(p - lit), false);
		ok = ok && add_part(t, p + 1, (size_t)(close - p - 1), true);
		p = lit = close + 1;
	}
	if (ok && p > lit)
		ok = add_part(t, lit, (size_t)(p - lit), false);
	if (!ok) {
		kr_errf(err, KR_ERR_NOMEM, "out of memory");
		kr_tmpl_free(t);
		return NULL;
	}
	return t;
}

const char *kr_tmpl_text(const struct kr_tmpl *t, struct kr_event_text *ev,
			 struct kr_buf *scratch, size_t *n)
{
	bool complete;
	scratch->len = 0;
	if (!kr_tmpl_fill(t, ev, scratch, &complete) || !kr_buf_append(scratch, "", 1))
		return NULL;
	*n = complete ? scratch->len - 1 : 0;
	return scratch->p;
}

bool kr_tmpl_constant(const struct kr_tmpl *t)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->parts[i].path)
			return false;
	return true;
}

struct kr_event_text kr_event_text_of(const char *text, size_t len)
{
	size_t i = 0;
	while (text && i < len && text[i] && strchr(" \t\r\n\v\f", text[i]))
		i++;
	struct kr_event_text ev = {NULL, 0, {0}};
	if (text && i < len && text[i] == '{') {
		ev.text = text;
		ev.len = len;
	}
	return ev;
}

/* The scalar at path in ev (a string, a number, true or false), or false. */
static bool scalar_at(struct kr_event_text *ev, const char *path, struct kr_json_span *sp)
{
	if (!ev || !ev->text)
		return false;
	if (!ev->top.text)
		kr_json_members_scan(&ev->top, ev->text, ev->len);
	return kr_json_members_path(&ev->top, path, sp) &&
	       (sp->type == KR_JSON_STRING || sp->type == KR_JSON_NUMBER ||
		sp->type == KR_JSON_TRUE || sp->type == KR_JSON_FALSE);
}

bool kr_tmpl_fill(const struct kr_tmpl *t, struct kr_event_text *ev, struct kr_buf *out,
		  bool *complete)
{
	*complete = true;
	for (size_t i = 0; i < t->n; i++) {
		const struct part *p = &t->parts[i];
		struct kr_json_span sp;
		if (!p->path) {
			if (!kr_buf_append(out, p->text, p->len))
				return false;
		} else if (!scalar_at(ev, p->text, &sp)) {
			*complete = false;
		} else if (sp.type == KR_JSON_STRING) {
			if (!kr_json_span_string(out, &sp)) {
				if (!sp.escaped)
					return false; /* out of memory */
				*complete = false; /* not a string yajl decodes (not from the parser) */
			}
		} else if (!kr_buf_append(out, sp.p, sp.len)) {
			return false;
		}
	}
	return true;
}

const char *kr_attr_path_check(const char *path)
{
	return path_check(path, strlen(path), true);
}

static const char *attr_name_check(const char *n)
{
	size_t len = strlen(n);
	if (!len || len > 256)
		return "has 1 to 256 characters";
	if (strspn(n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != len)
		return "has only letters, digits, '_' and '-'";
	return NULL;
}

const char *kr_attr_list_check(const struct kr_strings *paths, size_t max, char *msg, size_t cap)
{
	if (paths->n > max) {
		snprintf(msg, cap, "at most %zu message attributes", max);
		return msg;
	}
	for (size_t i = 0; i < paths->n; i++) {
		const char *p = paths->v[i];
		const char *why = kr_attr_path_check(p);
		if (why) {
			snprintf(msg, cap, "\"%s\": %s", p, why);
			return msg;
		}
		if ((why = attr_name_check(kr_attr_name(p)))) {
			snprintf(msg, cap, "\"%s\": the attribute name \"%s\" %s", p, kr_attr_name(p),
				 why);
			return msg;
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(kr_attr_name(paths->v[j]), kr_attr_name(p)) == 0) {
				snprintf(msg, cap, "\"%s\" and \"%s\" both name attribute \"%s\"",
					 paths->v[j], p, kr_attr_name(p));
				return msg;
			}
	}
	return NULL;
}

const char *kr_attr_name(const char *path)
{
	const char *dot = strrchr(path, '.');
	return dot ? dot + 1 : path;
}

const char *kr_attr_value(struct kr_event_text *ev, const char *path, struct kr_buf *scratch,
			  size_t *len, bool *is_number)
{
	struct kr_json_span sp;
	*is_number = false;
	if (!scalar_at(ev, path, &sp))
		return NULL;
	*is_number = sp.type == KR_JSON_NUMBER;
	if (sp.type == KR_JSON_STRING && sp.escaped) {
		scratch->len = 0;
		if (!kr_json_span_string(scratch, &sp) || !kr_buf_append(scratch, "", 1))
			return NULL;
		*len = scratch->len - 1;
		return *len ? scratch->p : NULL;
	}
	*len = sp.len;
	return sp.len ? sp.p : NULL;
}

int64_t kr_event_time_ms(struct kr_event_text *ev)
{
	struct kr_json_span sp;
	if (!scalar_at(ev, "$.time", &sp) || sp.type != KR_JSON_STRING)
		return -1;
	if (!sp.escaped && sp.len < 64) {
		char t[64];
		memcpy(t, sp.p, sp.len);
		t[sp.len] = 0;
		return kr_parse_rfc3339_ms(t);
	}
	struct kr_buf t = {0};
	int64_t ms = kr_json_span_string(&t, &sp) && kr_buf_append(&t, "", 1)
			     ? kr_parse_rfc3339_ms(t.p)
			     : -1;
	kr_buf_free(&t);
	return ms;
}
