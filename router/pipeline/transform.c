/* InputPath and InputTransformer (see transform.h).
 *
 * A template is read by one small recursive scanner that both checks it (at config load, every
 * variable standing for null) and fills it (per event). Sharing the scanner is what makes
 * "checked at load" mean "valid at run time": filling cannot take a path that checking did not.
 * The event is parsed into a tree only for targets that transform; the output is one growable
 * buffer, written once, and nothing else is allocated per event. */
#include "transform.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"

/* Deep enough for any payload a target wants; bounds the scanner's recursion. */
#define TMPL_MAX_DEPTH 32
/* EventBridge's limit on a variable name (InputPathsMap key length). */
#define TMPL_MAX_NAME 256

enum var_kind {
	VAR_NONE,
	VAR_PATH,
	VAR_RULE_NAME,
	VAR_RULE_ARN,
	VAR_EVENT,
	VAR_EVENT_JSON,
	VAR_INGESTION
};

static const struct {
	const char *name;
	enum var_kind kind;
} predefined[] = {
	{"aws.events.rule-name", VAR_RULE_NAME},
	{"aws.events.rule-arn", VAR_RULE_ARN},
	{"aws.events.event", VAR_EVENT},
	{"aws.events.event.json", VAR_EVENT_JSON},
	{"aws.events.event.ingestion-time", VAR_INGESTION},
};

/* What a variable stands for in one event. */
struct val {
	enum { V_MISSING, V_JSON, V_TEXT, V_EVENT } kind;
	const struct kr_json *j; /* V_JSON; V_EVENT: the event */
	bool without_detail;     /* V_EVENT */
	const char *a, *b;       /* V_TEXT: the text is a then b */
	size_t an, bn;
};

enum res { R_ERR, R_OK, R_DROPPED };

struct tx {
	const char *start, *p, *end; /* the template and the scanner's place in it */
	const struct kr_json *paths;
	struct kr_buf *out;
	const struct kr_json *doc; /* NULL while checking: every variable is then null */
	const char *rule;
	uint64_t received_wall_ms;
	char stamp[32]; /* the ingestion time, formatted when first used */
	bool nomem;
	const char *bad; /* where the first problem is, and what (in msg) */
	char msg[KR_ERRBUF];
};

static const struct kr_json null_value = {.type = KR_JSON_NULL};

static bool fail(struct tx *x, const char *at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static bool fail(struct tx *x, const char *at, const char *fmt, ...)
{
	if (!x->bad && !x->nomem) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(x->msg, sizeof x->msg, fmt, ap);
		va_end(ap);
		x->bad = at;
	}
	return false;
}

static bool ok_mem(struct tx *x, bool ok)
{
	if (!ok)
		x->nomem = true;
	return ok;
}

static bool put(struct tx *x, const char *s, size_t n)
{
	return ok_mem(x, kr_buf_append(x->out, s, n));
}

/* Appends the characters of s as they go between the quotes of a JSON string. */
static bool put_escaped(struct tx *x, const char *s, size_t n)
{
	struct kr_buf *b = x->out;
	if (!ok_mem(x, n < SIZE_MAX / 8 && kr_buf_reserve(b, n * 6 + 3)))
		return false;
	char *at = b->p + b->len;
	if (b->len == 0) {
		char *o = kr_json_string_to(at, s, n);
		b->len = (size_t)(o - at) - 2;
		memmove(at, at + 1, b->len);
		return true;
	}
	/* kr_json_string_to writes the quotes too: started one byte early, its opening quote lands
	   on the last byte written, which is put back, so its fast path serves without a copy */
	char last = at[-1];
	char *o = kr_json_string_to(at - 1, s, n);
	at[-1] = last;
	b->len = (size_t)(o - 1 - b->p);
	return true;
}

/* An object or array inside a string, as EventBridge puts it there: its JSON with the quotes of
 * its strings taken out ("Detail is {state:RUNNING}"), so that the string around stays one. */
static bool put_quoteless(struct tx *x, const struct kr_json *j, bool without_detail)
{
	switch (j->type) {
	case KR_JSON_STRING: return put_escaped(x, j->str, j->len);
	case KR_JSON_ARRAY:
	case KR_JSON_OBJECT: {
		bool obj = j->type == KR_JSON_OBJECT, first = true;
		if (!put(x, obj ? "{" : "[", 1))
			return false;
		for (size_t i = 0; i < j->n; i++) {
			if (without_detail && j->keylens[i] == 6 && memcmp(j->keys[i], "detail", 6) == 0)
				continue;
			if (!first && !put(x, ",", 1))
				return false;
			first = false;
			if (obj && !(put_escaped(x, j->keys[i], j->keylens[i]) && put(x, ":", 1)))
				return false;
			if (!put_quoteless(x, j->items[i], false))
				return false;
		}
		return put(x, obj ? "}" : "]", 1);
	}
	default: return ok_mem(x, kr_json_write(x->out, j)); /* a number, true, false or null */
	}
}

/* The event without its "detail" member, minified. */
static bool put_event_without_detail(struct tx *x, const struct kr_json *ev)
{
	if (ev->type != KR_JSON_OBJECT)
		return ok_mem(x, kr_json_write(x->out, ev));
	bool first = true;
	if (!put(x, "{", 1))
		return false;
	for (size_t i = 0; i < ev->n; i++) {
		if (ev->keylens[i] == 6 && memcmp(ev->keys[i], "detail", 6) == 0)
			continue;
		if (!first && !put(x, ",", 1))
			return false;
		first = false;
		if (!ok_mem(x, kr_buf_json_string(x->out, ev->keys[i], ev->keylens[i]) &&
				       kr_buf_puts(x->out, ":") && kr_json_write(x->out, ev->items[i])))
			return false;
	}
	return put(x, "}", 1);
}

/* A variable outside quotes: JSON, strings quoted. */
static bool put_value(struct tx *x, const struct val *v)
{
	switch (v->kind) {
	case V_JSON: return ok_mem(x, kr_json_write(x->out, v->j));
	case V_TEXT:
		return put(x, "\"", 1) && put_escaped(x, v->a, v->an) && put_escaped(x, v->b, v->bn) &&
		       put(x, "\"", 1);
	case V_EVENT:
		return v->without_detail ? put_event_without_detail(x, v->j)
					 : ok_mem(x, kr_json_write(x->out, v->j));
	case V_MISSING: break;
	}
	return true;
}

/* A variable inside a string: its text, escaped. */
static bool put_in_string(struct tx *x, const struct val *v)
{
	switch (v->kind) {
	case V_JSON: return put_quoteless(x, v->j, false);
	case V_TEXT: return put_escaped(x, v->a, v->an) && put_escaped(x, v->b, v->bn);
	case V_EVENT: return put_quoteless(x, v->j, v->without_detail);
	case V_MISSING: break;
	}
	return true;
}

/* The length of the placeholder <name> at p, or 0 when the '<' at p starts none: it is then
 * ordinary text. A name has the characters of EventBridge's variable names and the dots of the
 * predefined ones. */
static size_t placeholder_len(const char *p, const char *end)
{
	const char *q = p + 1;
	while (q < end && q - (p + 1) < TMPL_MAX_NAME &&
	       ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
		*q == '_' || *q == '-' || *q == '.'))
		q++;
	return q < end && *q == '>' && q > p + 1 ? (size_t)(q + 1 - p) : 0;
}

/* The variable named by the placeholder at ph (n bytes, brackets included); fails when there is
 * none. A predefined name wins: EventBridge says they "can't be overwritten". */
static enum var_kind lookup(struct tx *x, const char *ph, size_t n, const struct kr_json **path)
{
	const char *name = ph + 1;
	size_t nl = n - 2;
	for (size_t i = 0; i < sizeof predefined / sizeof predefined[0]; i++)
		if (strlen(predefined[i].name) == nl && memcmp(predefined[i].name, name, nl) == 0)
			return predefined[i].kind;
	if (x->paths && x->paths->type == KR_JSON_OBJECT)
		for (size_t i = 0; i < x->paths->n; i++)
			if (x->paths->keylens[i] == nl && memcmp(x->paths->keys[i], name, nl) == 0 &&
			    x->paths->items[i]->type == KR_JSON_STRING) {
				*path = x->paths->items[i];
				return VAR_PATH;
			}
	fail(x, ph,
	     "<%.*s> is not a variable: it is not in \"input_paths\" nor one of the predefined "
	     "aws.events.rule-name, aws.events.rule-arn, aws.events.event, aws.events.event.json, "
	     "aws.events.event.ingestion-time",
	     (int)(nl > 64 ? 64 : nl), name);
	return VAR_NONE;
}

static struct val value_of(struct tx *x, enum var_kind k, const struct kr_json *path)
{
	struct val v = {.kind = V_JSON, .j = &null_value, .a = "", .b = ""};
	if (!x->doc)
		return v;
	switch (k) {
	case VAR_PATH:
		v.j = kr_json_path(x->doc, path->str);
		if (!v.j)
			v.kind = V_MISSING;
		break;
	case VAR_RULE_NAME:
		v.kind = V_TEXT;
		v.a = x->rule;
		v.an = strlen(x->rule);
		break;
	case VAR_RULE_ARN:
		v.kind = V_TEXT;
		v.a = "arn:kmsrouter:events:::rule/";
		v.an = strlen(v.a);
		v.b = x->rule;
		v.bn = strlen(x->rule);
		break;
	case VAR_EVENT:
	case VAR_EVENT_JSON:
		v.kind = V_EVENT;
		v.j = x->doc;
		v.without_detail = k == VAR_EVENT;
		break;
	case VAR_INGESTION:
		if (!x->stamp[0]) {
			time_t secs = (time_t)(x->received_wall_ms / 1000);
			struct tm tm;
			if (!gmtime_r(&secs, &tm) ||
			    !strftime(x->stamp, sizeof x->stamp, "%Y-%m-%dT%H:%M:%SZ", &tm))
				snprintf(x->stamp, sizeof x->stamp, "1970-01-01T00:00:00Z");
		}
		v.kind = V_TEXT;
		v.a = x->stamp;
		v.an = strlen(x->stamp);
		break;
	case VAR_NONE: break;
	}
	return v;
}

static void skip_blanks(struct tx *x)
{
	while (x->p < x->end && (*x->p == ' ' || *x->p == '\t' || *x->p == '\n' || *x->p == '\r'))
		x->p++;
}

static bool is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The string literal at x->p, copied with its variables filled in. A key may hold none:
 * EventBridge says "the placeholder can't be used as an object key". */
static bool tmpl_string(struct tx *x, bool key)
{
	const char *open = x->p, *run = x->p;
	x->p++;
	while (x->p < x->end) {
		unsigned char c = (unsigned char)*x->p;
		if (c == '"') {
			x->p++;
			return put(x, run, (size_t)(x->p - run));
		}
		if (c < 0x20)
			return fail(x, x->p, "a control character in a string must be written as an "
					     "escape such as \\n or \\u0001");
		if (c == '\\') {
			const char *e = x->p + 1;
			if (e < x->end && *e && strchr("\"\\/bfnrt", *e))
				x->p += 2;
			else if (e < x->end && *e == 'u' && x->end - e > 4 && is_hex(e[1]) &&
				 is_hex(e[2]) && is_hex(e[3]) && is_hex(e[4]))
				x->p += 6;
			else
				return fail(x, x->p, "a backslash in a string must start a JSON escape "
						     "(\\\", \\\\, \\/, \\b, \\f, \\n, \\r, \\t, \\uXXXX)");
			continue;
		}
		size_t n = c == '<' ? placeholder_len(x->p, x->end) : 0;
		if (!n) {
			x->p++;
			continue;
		}
		if (key)
			return fail(x, x->p, "a variable cannot be used in an object key");
		const struct kr_json *path = NULL;
		enum var_kind k = lookup(x, x->p, n, &path);
		if (k == VAR_NONE)
			return false;
		if (k == VAR_EVENT || k == VAR_EVENT_JSON)
			return fail(x, x->p,
				    "<%s> can only be the value of a JSON field, not part of a string: "
				    "its contents are not escaped",
				    k == VAR_EVENT ? "aws.events.event" : "aws.events.event.json");
		struct val v = value_of(x, k, path);
		if (!put(x, run, (size_t)(x->p - run)) || !put_in_string(x, &v))
			return false;
		x->p += n;
		run = x->p;
	}
	return fail(x, open, "a string is not closed (a '\"' is missing)");
}

static bool is_digit(const char *p, const char *end)
{
	return p < end && *p >= '0' && *p <= '9';
}

/* A JSON number, checked as RFC 8259 writes it. */
static bool tmpl_number(struct tx *x)
{
	const char *s = x->p, *q = s, *e = x->end;
	if (q < e && *q == '-')
		q++;
	if (q < e && *q == '0') {
		if (is_digit(++q, e))
			return fail(x, s, "a JSON number has no leading zeros");
	} else if (is_digit(q, e)) {
		while (is_digit(q, e))
			q++;
	} else {
		return fail(x, s, "not a JSON number");
	}
	if (q < e && *q == '.') {
		if (!is_digit(++q, e))
			return fail(x, s, "not a JSON number");
		while (is_digit(q, e))
			q++;
	}
	if (q < e && (*q == 'e' || *q == 'E')) {
		q++;
		if (q < e && (*q == '+' || *q == '-'))
			q++;
		if (!is_digit(q, e))
			return fail(x, s, "not a JSON number");
		while (is_digit(q, e))
			q++;
	}
	x->p = q;
	return put(x, s, (size_t)(q - s));
}

static bool tmpl_container(struct tx *x, unsigned depth);

/* A JSON value at x->p. R_DROPPED: a variable whose path is not in the event, which "won't
 * appear in the output"; the caller leaves out the field or item it was the value of. */
static enum res tmpl_value(struct tx *x, unsigned depth)
{
	skip_blanks(x);
	if (x->p >= x->end) {
		fail(x, x->p, "a value is missing at the end of the template");
		return R_ERR;
	}
	char c = *x->p;
	if (c == '{' || c == '[')
		return tmpl_container(x, depth) ? R_OK : R_ERR;
	if (c == '"')
		return tmpl_string(x, false) ? R_OK : R_ERR;
	if (c == '-' || (c >= '0' && c <= '9'))
		return tmpl_number(x) ? R_OK : R_ERR;
	if (c == '<') {
		size_t n = placeholder_len(x->p, x->end);
		if (!n) {
			fail(x, x->p, "'<' does not start a variable: a variable is <name>, the name "
				      "made of letters, digits, '_', '-' and '.'");
			return R_ERR;
		}
		const struct kr_json *path = NULL;
		enum var_kind k = lookup(x, x->p, n, &path);
		if (k == VAR_NONE)
			return R_ERR;
		struct val v = value_of(x, k, path);
		x->p += n;
		if (v.kind == V_MISSING)
			return R_DROPPED;
		return put_value(x, &v) ? R_OK : R_ERR;
	}
	static const char *const words[] = {"true", "false", "null"};
	for (size_t i = 0; i < 3; i++) {
		size_t n = strlen(words[i]);
		if ((size_t)(x->end - x->p) >= n && memcmp(x->p, words[i], n) == 0) {
			x->p += n;
			return put(x, words[i], n) ? R_OK : R_ERR;
		}
	}
	fail(x, x->p, "expected a JSON value (an object, array, string, number, true, false, null "
		      "or a <variable>)");
	return R_ERR;
}

/* An object or an array. Commas are written, not copied, so that a member left out leaves none
 * behind. */
static bool tmpl_container(struct tx *x, unsigned depth)
{
	bool obj = *x->p == '{';
	const char *close = obj ? "}" : "]";
	if (depth >= TMPL_MAX_DEPTH)
		return fail(x, x->p, "nested deeper than %d", TMPL_MAX_DEPTH);
	if (!put(x, x->p++, 1))
		return false;
	skip_blanks(x);
	if (x->p < x->end && *x->p == *close) {
		x->p++;
		return put(x, close, 1);
	}
	size_t items = 0;
	for (;;) {
		size_t mark = x->out->len;
		if (items && !put(x, ",", 1))
			return false;
		if (obj) {
			skip_blanks(x);
			if (x->p < x->end && *x->p == '<' && placeholder_len(x->p, x->end))
				return fail(x, x->p, "a variable cannot be used as an object key");
			if (x->p >= x->end || *x->p != '"')
				return fail(x, x->p, "expected a key in double quotes");
			if (!tmpl_string(x, true))
				return false;
			skip_blanks(x);
			if (x->p >= x->end || *x->p != ':')
				return fail(x, x->p, "expected ':' after the key");
			x->p++;
			if (!put(x, ":", 1))
				return false;
		}
		enum res r = tmpl_value(x, depth + 1);
		if (r == R_ERR)
			return false;
		if (r == R_DROPPED)
			x->out->len = mark;
		else
			items++;
		skip_blanks(x);
		if (x->p < x->end && *x->p == ',') {
			x->p++;
			continue;
		}
		if (x->p < x->end && *x->p == *close) {
			x->p++;
			return put(x, close, 1);
		}
		return fail(x, x->p, "expected ',' or '%s'", close);
	}
}

/* The whole template: JSON when it starts with '{' or '[' (blanks aside), which is how the
 * EventBridge API tells them ("If InputTemplate is a JSON object (surrounded by curly
 * braces)..."); text when it starts with '"' ("For Strings, quotes are required"). */
static bool tmpl_fill(struct tx *x)
{
	skip_blanks(x);
	if (x->p < x->end && (*x->p == '{' || *x->p == '[')) {
		if (!tmpl_container(x, 0))
			return false;
		skip_blanks(x);
		if (x->p < x->end)
			return fail(x, x->p, "text after the end of the JSON template");
		return true;
	}
	if (x->p < x->end && *x->p == '"') {
		/* one string per line, each filled; what is between them stays as written */
		x->p = x->start;
		while (x->p < x->end) {
			const char *b = x->p;
			skip_blanks(x);
			if (!put(x, b, (size_t)(x->p - b)))
				return false;
			if (x->p >= x->end)
				break;
			if (*x->p != '"')
				return fail(x, x->p, "a text template is strings in double quotes, one "
						     "per line; this is outside them");
			if (!tmpl_string(x, false))
				return false;
		}
		return true;
	}
	return fail(x, x->p,
		    "a template is JSON (an object or an array) or text in double quotes, such as "
		    "\"instance <instance> is in <state>\"");
}

enum kr_err kr_template_check(const char *tmpl, size_t len, const struct kr_json *paths,
			      size_t *at, char *err)
{
	struct kr_buf b = {0};
	struct tx x = {.start = tmpl, .p = tmpl, .end = tmpl + len, .paths = paths, .out = &b};
	*at = 0;
	bool ok = tmpl_fill(&x);
	enum kr_err e = KR_OK;
	if (x.nomem) {
		e = kr_errf(err, KR_ERR_NOMEM, "out of memory");
	} else if (!ok) {
		*at = (size_t)(x.bad - tmpl);
		e = kr_errf(err, KR_ERR_CONFIG, "%s", x.msg);
	} else {
		/* the scanner follows JSON's grammar; the parser also refuses what the grammar
		   allows and JSON readers do not agree on, such as a key written twice */
		const char *t = tmpl;
		while (t < tmpl + len && (*t == ' ' || *t == '\t' || *t == '\n' || *t == '\r'))
			t++;
		struct kr_json *j = NULL;
		size_t off;
		char jerr[KR_ERRBUF];
		if (t < tmpl + len && *t != '"' &&
		    (e = kr_json_parse(b.p, b.len, NULL, &j, &off, jerr)) != KR_OK) {
			*at = (size_t)(t - tmpl);
			e = e == KR_ERR_NOMEM ? kr_errf(err, e, "out of memory")
					      : kr_errf(err, KR_ERR_CONFIG,
							"the template is not JSON once its variables "
							"are filled: %s",
							jerr);
		}
		kr_json_free(j);
	}
	kr_buf_free(&b);
	return e;
}

char *kr_transform(const struct kr_target_cfg *tc, const char *rule, const char *event,
		   size_t len, uint64_t received_wall_ms, size_t *outlen, char *err)
{
	if (!tc || (!tc->input_path && !tc->input_transformer)) {
		char *p = malloc(len + 1);
		if (!p) {
			kr_errf(err, KR_ERR_NOMEM, "out of memory");
			return NULL;
		}
		memcpy(p, event, len);
		p[len] = 0;
		*outlen = len;
		return p;
	}
	struct kr_json *doc = NULL;
	size_t off;
	struct kr_json_opts o = {.last_key_wins = true, .max_depth = 128};
	char jerr[KR_ERRBUF];
	if (kr_json_parse(event, len, &o, &doc, &off, jerr) != KR_OK) {
		kr_errf(err, KR_ERR_EVENT, "the event is not JSON: %s", jerr);
		return NULL;
	}
	struct kr_buf b = {0};
	bool ok;
	struct tx x = {.out = &b, .doc = doc, .rule = rule ? rule : "",
		       .received_wall_ms = received_wall_ms};
	if (tc->input_path) {
		const struct kr_json *v = kr_json_path(doc, tc->input_path->str);
		ok = ok_mem(&x, v ? kr_json_write(&b, v) : kr_buf_puts(&b, "null"));
	} else {
		const struct kr_json *t = kr_json_get(tc->input_transformer, "input_template");
		if (t && t->type == KR_JSON_STRING) {
			x.start = x.p = t->str;
			x.end = t->str + t->len;
			x.paths = kr_json_get(tc->input_transformer, "input_paths");
			ok = ok_mem(&x, kr_buf_reserve(&b, t->len + 64)) && tmpl_fill(&x);
		} else {
			ok = fail(&x, NULL, "needs \"input_template\" (a string)");
		}
	}
	kr_json_free(doc);
	/* the payload is NUL-terminated, as the untransformed copy is */
	if (ok && !ok_mem(&x, kr_buf_reserve(&b, 1)))
		ok = false;
	if (!ok) {
		kr_buf_free(&b);
		if (x.nomem)
			kr_errf(err, KR_ERR_NOMEM, "out of memory");
		else
			kr_errf(err, KR_ERR_CONFIG, "input_template: %s", x.msg);
		return NULL;
	}
	b.p[b.len] = 0;
	*outlen = b.len;
	return b.p;
}
