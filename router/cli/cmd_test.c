/* kmsrouter test: rule tests as data. Each test file names a configuration and lists cases, each
 * an event (inline or @FILE in any form match reads) with what must and must not happen to it:
 * which rules match, which sinks receive a delivery, and the exact payload a rule's target entry
 * delivers after its input_path or input_transformer (kr_transform, as run makes it). Nothing is
 * delivered: sinks are never opened.
 *
 * A file is read and validated whole (every error as FILE:LINE:COL: $.json.path: message, at
 * the key or value that is wrong) and its events are read and matched before any of its cases is
 * reported; then each case prints "ok NAME" or "FAIL NAME (FILE:LINE)" and, indented under a
 * failure, what missed. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "config.h"
#include "fields.h"
#include "grow.h"
#include "input.h"
#include "stream.h"
#include "transform.h"

/* ---- the line diff (pure; commands.h) ---- */

struct lines {
	const char **p;
	size_t *len;
	size_t n;
};

/* Splits at every '\n': n newlines make n + 1 lines. */
static bool split_lines(const char *s, size_t n, struct lines *out)
{
	size_t count = 1;
	for (size_t i = 0; i < n; i++)
		count += s[i] == '\n';
	out->p = malloc(count * sizeof *out->p);
	out->len = malloc(count * sizeof *out->len);
	if (!out->p || !out->len)
		return false;
	out->n = 0;
	size_t start = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || s[i] == '\n') {
			out->p[out->n] = s + start;
			out->len[out->n++] = i - start;
			start = i + 1;
		}
	}
	return true;
}

static bool same_line(const struct lines *a, size_t i, const struct lines *b, size_t j)
{
	return a->len[i] == b->len[j] && memcmp(a->p[i], b->p[j], a->len[i]) == 0;
}

/* Above this many cells the middle of the two texts (what their common first and last lines
 * leave) is shown as removed then added instead of aligned line by line. */
#define DIFF_MAX_CELLS (4u * 1024u * 1024u)

/* The edit script: ' ' (a line of both), '-' (of a only), '+' (of b only). */
static bool edit_script(const struct lines *a, const struct lines *b, char *ops, size_t *nops)
{
	size_t pre = 0, suf = 0, k = 0;
	while (pre < a->n && pre < b->n && same_line(a, pre, b, pre))
		pre++;
	while (suf < a->n - pre && suf < b->n - pre && same_line(a, a->n - 1 - suf, b, b->n - 1 - suf))
		suf++;
	size_t n = a->n - pre - suf, m = b->n - pre - suf;
	for (size_t i = 0; i < pre; i++)
		ops[k++] = ' ';
	if ((n + 1) <= DIFF_MAX_CELLS / (m + 1)) {
		/* lcs[i][j]: the longest common subsequence of the middles from i and j on */
		size_t w = m + 1;
		uint32_t *lcs = calloc((n + 1) * w, sizeof *lcs);
		if (!lcs)
			return false;
		for (size_t i = n; i-- > 0;)
			for (size_t j = m; j-- > 0;)
				lcs[i * w + j] = same_line(a, pre + i, b, pre + j)
							 ? lcs[(i + 1) * w + j + 1] + 1
						 : lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]
							 ? lcs[(i + 1) * w + j]
							 : lcs[i * w + j + 1];
		size_t i = 0, j = 0;
		while (i < n || j < m) {
			if (i < n && j < m && same_line(a, pre + i, b, pre + j)) {
				ops[k++] = ' ';
				i++;
				j++;
			} else if (j == m || (i < n && lcs[(i + 1) * w + j] >= lcs[i * w + j + 1])) {
				ops[k++] = '-';
				i++;
			} else {
				ops[k++] = '+';
				j++;
			}
		}
		free(lcs);
	} else {
		memset(ops + k, '-', n);
		k += n;
		memset(ops + k, '+', m);
		k += m;
	}
	for (size_t i = 0; i < suf; i++)
		ops[k++] = ' ';
	*nops = k;
	return true;
}

static bool diff_line(struct kr_buf *out, const char *indent, char mark, const char *p, size_t n)
{
	char m[2] = {mark, 0};
	return kr_buf_puts(out, indent) && kr_buf_puts(out, m) && kr_buf_append(out, p, n) &&
	       kr_buf_puts(out, "\n");
}

/* One hunk: ops[from, to), which start at line ai of a and bi of b (0-based). Within a run of
 * changes the removed lines come first, then the added ones. */
static bool write_hunk(struct kr_buf *out, const char *indent, const struct lines *a,
		       const struct lines *b, const char *ops, size_t from, size_t to, size_t ai,
		       size_t bi)
{
	size_t na = 0, nb = 0;
	for (size_t k = from; k < to; k++) {
		na += ops[k] != '+';
		nb += ops[k] != '-';
	}
	char head[96];
	snprintf(head, sizeof head, "@@ -%zu,%zu +%zu,%zu @@\n", na ? ai + 1 : ai, na,
		 nb ? bi + 1 : bi, nb);
	if (!kr_buf_puts(out, indent) || !kr_buf_puts(out, head))
		return false;
	for (size_t k = from; k < to;) {
		if (ops[k] == ' ') {
			if (!diff_line(out, indent, ' ', a->p[ai], a->len[ai]))
				return false;
			ai++;
			bi++;
			k++;
			continue;
		}
		size_t end = k;
		while (end < to && ops[end] != ' ')
			end++;
		for (size_t q = k; q < end; q++) {
			if (ops[q] != '-')
				continue;
			if (!diff_line(out, indent, '-', a->p[ai], a->len[ai]))
				return false;
			ai++;
		}
		for (size_t q = k; q < end; q++) {
			if (ops[q] != '+')
				continue;
			if (!diff_line(out, indent, '+', b->p[bi], b->len[bi]))
				return false;
			bi++;
		}
		k = end;
	}
	return true;
}

bool kr_line_diff(struct kr_buf *out, const char *indent, const char *a, size_t alen,
		  const char *b, size_t blen, unsigned context)
{
	struct lines la = {0}, lb = {0};
	char *ops = NULL;
	bool ok = split_lines(a, alen, &la) && split_lines(b, blen, &lb) &&
		  (ops = malloc(la.n + lb.n)) != NULL;
	size_t nops = 0;
	ok = ok && edit_script(&la, &lb, ops, &nops);
	/* hunks: the changes with context lines around them; two changes at most 2 * context
	   lines apart share one */
	size_t k = 0, ai = 0, bi = 0;
	while (ok && k < nops) {
		size_t first = k;
		while (first < nops && ops[first] == ' ')
			first++;
		if (first == nops)
			break;
		size_t from = first > k + context ? first - context : k;
		for (size_t q = k; q < from; q++) {
			ai++;
			bi++;
		}
		size_t last = first; /* one past the last change of the hunk */
		for (size_t q = first; q < nops;) {
			if (ops[q] != ' ') {
				last = ++q;
				continue;
			}
			size_t run = q;
			while (run < nops && ops[run] == ' ')
				run++;
			if (run == nops || run - q > 2 * (size_t)context)
				break;
			q = run;
		}
		size_t to = last + context < nops ? last + context : nops;
		ok = write_hunk(out, indent, &la, &lb, ops, from, to, ai, bi);
		for (size_t q = from; q < to; q++) {
			ai += ops[q] != '+';
			bi += ops[q] != '-';
		}
		k = to;
	}
	free(ops);
	free(la.p);
	free(la.len);
	free(lb.p);
	free(lb.len);
	return ok;
}

/* ---- test files ---- */

struct want_delivery {
	uint32_t rule, sink;
	const struct kr_json *payload;
};

struct idlist {
	uint32_t *v;
	size_t n;
	const struct kr_json *node; /* the list as written (NULL: absent) */
};

struct event {
	char *raw;
	size_t raw_len;
	char *id; /* JSON-encoded, or NULL when the event has none */
	uint32_t *rules;
	size_t nrules;
};

struct tcase {
	const char *name;
	size_t line;
	struct idlist rules, not_rules, targets, not_targets;
	bool exact;
	struct want_delivery *deliveries;
	size_t ndeliveries;
	struct event *events;
	size_t nevents, capevents;
};

struct tfile {
	const char *path;
	char *dir;
	char *text;
	size_t len;
	struct kr_json *doc;
	struct kr_opts_src src;
	char err[KR_ERRBUF];
	const struct kr_config *cfg;
	struct kr_config *own_cfg;
	struct tcase *cases;
	size_t ncases;
};

static const char *const file_keys[] = {"config", "tests"};
static const char *const case_keys[] = {"name",	       "event",   "rules",	"not_rules",
					"exact_rules", "targets", "not_targets", "deliveries"};
static const char *const delivery_keys[] = {"rule", "sink", "payload"};
#define NKEYS(a) (sizeof(a) / sizeof(a)[0])

/* The error is in f->err (kr_opts_error's "FILE:LINE:COL: $.path: message"). */
#define FERR(f, node, jp, ...) kr_opts_error(&(f)->src, (node), (jp), __VA_ARGS__)

static enum kr_err nomem(struct tfile *f)
{
	return kr_errf(f->err, KR_ERR_NOMEM, "%s: out of memory", f->path);
}

static enum kr_err check_keys(struct tfile *f, const struct kr_json *obj, const char *jp,
			      const char *const *allowed, size_t n, const char *what)
{
	for (size_t i = 0; i < obj->n; i++) {
		size_t j = 0;
		while (j < n && strcmp(obj->keys[i], allowed[j]) != 0)
			j++;
		if (j < n && strlen(allowed[j]) == obj->keylens[i])
			continue;
		char hint[128];
		kr_opts_did_you_mean(obj->keys[i], allowed, n, hint, sizeof hint);
		struct kr_json at = {.offset = obj->key_offsets[i]};
		return FERR(f, &at, jp, "unknown key \"%s\" in %s%s", obj->keys[i], what, hint);
	}
	return KR_OK;
}

/* The index of the rule (sinks false) or sink named by j, or an error with a did-you-mean. */
static enum kr_err lookup(struct tfile *f, const struct kr_json *j, const char *jp, bool sinks,
			  uint32_t *out)
{
	const char *what = sinks ? "sink" : "rule";
	if (j->type != KR_JSON_STRING)
		return FERR(f, j, jp, "must be a %s name (a string)", what);
	size_t n = sinks ? f->cfg->nsinks : f->cfg->nrules;
	for (size_t i = 0; i < n; i++) {
		const char *name = sinks ? f->cfg->sinks[i].name : f->cfg->rules[i].name;
		if (strlen(name) == j->len && memcmp(name, j->str, j->len) == 0) {
			*out = (uint32_t)i;
			return KR_OK;
		}
	}
	const char **names = malloc((n + 1) * sizeof *names);
	if (!names)
		return nomem(f);
	for (size_t i = 0; i < n; i++)
		names[i] = sinks ? f->cfg->sinks[i].name : f->cfg->rules[i].name;
	char hint[128];
	kr_opts_did_you_mean(j->str, names, n, hint, sizeof hint);
	free(names);
	return FERR(f, j, jp, "the configuration %s has no %s named \"%s\"%s", f->cfg->path, what,
		    j->str, hint);
}

static bool has_id(const struct idlist *l, uint32_t id)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i] == id)
			return true;
	return false;
}

/* A list of rule or sink names; a name written twice is an error, as is one that other (the
 * opposite list, already read) holds. */
static enum kr_err read_names(struct tfile *f, const struct kr_json *c, const char *key,
			      const char *cjp, bool sinks, struct idlist *out,
			      const struct idlist *other, const char *other_key)
{
	const struct kr_json *j = kr_json_get(c, key);
	char jp[256];
	snprintf(jp, sizeof jp, "%s.%s", cjp, key);
	out->node = j;
	if (!j)
		return KR_OK;
	if (j->type != KR_JSON_ARRAY)
		return FERR(f, j, jp, "must be an array of %s names", sinks ? "sink" : "rule");
	out->v = calloc(j->n + 1, sizeof *out->v);
	if (!out->v)
		return nomem(f);
	for (size_t i = 0; i < j->n; i++) {
		char ijp[280];
		snprintf(ijp, sizeof ijp, "%s[%zu]", jp, i);
		uint32_t id;
		enum kr_err e = lookup(f, j->items[i], ijp, sinks, &id);
		if (e)
			return e;
		if (has_id(out, id))
			return FERR(f, j->items[i], ijp, "\"%s\" is written twice", j->items[i]->str);
		if (other && has_id(other, id))
			return FERR(f, j->items[i], ijp, "\"%s\" is also in \"%s\"", j->items[i]->str,
				    other_key);
		out->v[out->n++] = id;
	}
	return KR_OK;
}

static enum kr_err read_deliveries(struct tfile *f, const struct kr_json *c, const char *cjp,
				   struct tcase *tc)
{
	const struct kr_json *j = kr_json_get(c, "deliveries");
	if (!j)
		return KR_OK;
	char jp[256];
	snprintf(jp, sizeof jp, "%s.deliveries", cjp);
	if (j->type != KR_JSON_ARRAY)
		return FERR(f, j, jp, "must be an array of {\"rule\", \"sink\", \"payload\"}");
	tc->deliveries = calloc(j->n + 1, sizeof *tc->deliveries);
	if (!tc->deliveries)
		return nomem(f);
	for (size_t i = 0; i < j->n; i++) {
		const struct kr_json *d = j->items[i];
		char djp[280], kjp[300];
		snprintf(djp, sizeof djp, "%s[%zu]", jp, i);
		if (d->type != KR_JSON_OBJECT)
			return FERR(f, d, djp, "must be an object {\"rule\", \"sink\", \"payload\"}");
		enum kr_err e = check_keys(f, d, djp, delivery_keys, NKEYS(delivery_keys),
					   "a delivery");
		if (e)
			return e;
		for (size_t k = 0; k < NKEYS(delivery_keys); k++)
			if (!kr_json_get(d, delivery_keys[k]))
				return FERR(f, d, djp, "a delivery needs \"%s\"", delivery_keys[k]);
		struct want_delivery *w = &tc->deliveries[tc->ndeliveries];
		const struct kr_json *rn = kr_json_get(d, "rule"), *sn = kr_json_get(d, "sink");
		snprintf(kjp, sizeof kjp, "%s.rule", djp);
		if ((e = lookup(f, rn, kjp, false, &w->rule)))
			return e;
		snprintf(kjp, sizeof kjp, "%s.sink", djp);
		if ((e = lookup(f, sn, kjp, true, &w->sink)))
			return e;
		const struct kr_rule_cfg *r = &f->cfg->rules[w->rule];
		size_t t = 0;
		while (t < r->ntargets && r->targets[t] != w->sink)
			t++;
		if (t == r->ntargets)
			return FERR(f, sn, kjp, "rule \"%s\" has no target entry for sink \"%s\"",
				    r->name, sn->str);
		for (size_t q = 0; q < tc->ndeliveries; q++)
			if (tc->deliveries[q].rule == w->rule && tc->deliveries[q].sink == w->sink)
				return FERR(f, d, djp,
					    "the delivery of rule \"%s\" to sink \"%s\" is written "
					    "twice",
					    r->name, sn->str);
		w->payload = kr_json_get(d, "payload");
		tc->ndeliveries++;
	}
	return KR_OK;
}

/* ---- reading a case's events ---- */

struct collect {
	struct tcase *tc;
	const struct kr_config *cfg;
	struct kr_match_state *st;
	bool nomem;
	bool invalid;
	char why[KR_ERRBUF];
	const char *input; /* name in messages; NULL: the inline event */
};

static int on_event(void *vctx, const struct kr_event *ev)
{
	struct collect *c = vctx;
	struct tcase *tc = c->tc;
	if (!kr_grow(&tc->events, &tc->capevents, tc->nevents + 1, sizeof *tc->events, 4)) {
		c->nomem = true;
		return 1;
	}
	struct event *e = &tc->events[tc->nevents];
	*e = (struct event){0};
	const uint32_t *ids;
	size_t n = kr_rules_match(c->cfg->compiled, c->st, ev->view, &ids);
	e->raw = malloc(ev->raw_len + 1);
	e->rules = malloc((n + 1) * sizeof *e->rules);
	struct kr_buf id = {0};
	if (!e->raw || !e->rules || (ev->id && !kr_buf_json_string(&id, ev->id, ev->id_len))) {
		free(e->raw);
		free(e->rules);
		kr_buf_free(&id);
		c->nomem = true;
		return 1;
	}
	memcpy(e->raw, ev->raw, ev->raw_len);
	e->raw[ev->raw_len] = 0;
	e->raw_len = ev->raw_len;
	e->id = id.p;
	if (n)
		memcpy(e->rules, ids, n * sizeof *ids);
	e->nrules = n;
	tc->nevents++;
	return 0;
}

static int on_invalid(void *vctx, const struct kr_invalid *inv)
{
	struct collect *c = vctx;
	c->invalid = true;
	if (c->input)
		snprintf(c->why, sizeof c->why, "%s:%llu: %s", c->input,
			 (unsigned long long)inv->line, inv->message);
	else
		snprintf(c->why, sizeof c->why, "%s", inv->message);
	return 1;
}

static enum kr_err read_events(struct tfile *f, struct kr_stream *s, struct collect *col,
			       const struct kr_json *ev, const char *jp)
{
	enum kr_err e;
	char rerr[KR_ERRBUF] = "";
	char *path = NULL;
	if (ev->type == KR_JSON_STRING) {
		if (ev->len < 2 || ev->str[0] != '@' || strlen(ev->str) != ev->len)
			return FERR(f, ev, jp,
				    "must be an event (an object), an array of events, or \"@FILE\"");
		path = kr_resolve_path(f->dir, ev->str + 1);
		if (!path)
			return nomem(f);
		col->input = path;
		e = kr_input_read(s, path, rerr);
	} else if (ev->type == KR_JSON_OBJECT || ev->type == KR_JSON_ARRAY) {
		struct kr_buf b = {0};
		if (!kr_json_write(&b, ev)) {
			kr_buf_free(&b);
			return nomem(f);
		}
		col->input = NULL;
		kr_stream_reset(s);
		e = kr_stream_parse_mem(s, b.p, b.len);
		if (!e)
			e = kr_stream_end(s);
		kr_buf_free(&b);
	} else {
		return FERR(f, ev, jp, "must be an event (an object), an array of events, or \"@FILE\"");
	}
	if (col->nomem) {
		free(path);
		return nomem(f);
	}
	if (col->invalid)
		e = FERR(f, ev, jp, "%s%s", col->input ? "" : "not a valid event: ", col->why);
	else if (e)
		e = FERR(f, ev, jp, "%s", rerr[0] ? rerr : kr_strerror(e));
	else if (!col->tc->nevents)
		e = FERR(f, ev, jp, "%s holds no event", path ? path : "the value");
	free(path);
	return e;
}

/* ---- validation of a whole file ---- */

static enum kr_err read_case(struct tfile *f, const struct kr_json *c, size_t idx,
			     struct tcase *tc, struct kr_stream *s, struct collect *col)
{
	char jp[128], kjp[160];
	snprintf(jp, sizeof jp, "$.tests[%zu]", idx);
	if (c->type != KR_JSON_OBJECT)
		return FERR(f, c, jp, "a test must be an object");
	size_t col_unused;
	kr_json_linecol(f->text, f->len, c->offset, &tc->line, &col_unused);
	enum kr_err e = check_keys(f, c, jp, case_keys, NKEYS(case_keys), "a test");
	if (e)
		return e;
	const struct kr_json *name = kr_json_get(c, "name");
	snprintf(kjp, sizeof kjp, "%s.name", jp);
	if (!name)
		return FERR(f, c, jp, "a test needs a \"name\"");
	if (name->type != KR_JSON_STRING || name->len == 0 || strlen(name->str) != name->len)
		return FERR(f, name, kjp, "must be a non-empty string");
	for (size_t i = 0; i < name->len; i++)
		if ((unsigned char)name->str[i] < 0x20)
			return FERR(f, name, kjp, "must be one line of text (no control characters)");
	for (size_t i = 0; i < idx; i++)
		if (strcmp(f->cases[i].name, name->str) == 0)
			return FERR(f, name, kjp, "the name \"%s\" is already the name of the test at "
						  "line %zu", name->str, f->cases[i].line);
	tc->name = name->str;
	if ((e = read_names(f, c, "rules", jp, false, &tc->rules, NULL, NULL)) ||
	    (e = read_names(f, c, "not_rules", jp, false, &tc->not_rules, &tc->rules, "rules")) ||
	    (e = read_names(f, c, "targets", jp, true, &tc->targets, NULL, NULL)) ||
	    (e = read_names(f, c, "not_targets", jp, true, &tc->not_targets, &tc->targets,
			    "targets")) ||
	    (e = read_deliveries(f, c, jp, tc)))
		return e;
	const struct kr_json *x = kr_json_get(c, "exact_rules");
	if (x) {
		snprintf(kjp, sizeof kjp, "%s.exact_rules", jp);
		if (x->type != KR_JSON_TRUE && x->type != KR_JSON_FALSE)
			return FERR(f, x, kjp, "must be true or false");
		tc->exact = x->type == KR_JSON_TRUE;
	}
	snprintf(kjp, sizeof kjp, "%s.deliveries", jp);
	for (size_t q = 0; q < tc->ndeliveries; q++)
		if (has_id(&tc->not_rules, tc->deliveries[q].rule) ||
		    has_id(&tc->not_targets, tc->deliveries[q].sink))
			return FERR(f, kr_json_get(c, "deliveries"), kjp,
				    "a delivery of rule \"%s\" to sink \"%s\" is expected, but "
				    "\"not_rules\" or \"not_targets\" forbids it",
				    f->cfg->rules[tc->deliveries[q].rule].name,
				    f->cfg->sinks[tc->deliveries[q].sink].name);
	if (!tc->rules.n && !tc->not_rules.n && !tc->targets.n && !tc->not_targets.n &&
	    !tc->ndeliveries && !tc->exact)
		return FERR(f, c, jp,
			    "the test \"%s\" expects nothing, so it cannot fail: give \"rules\", "
			    "\"not_rules\", \"exact_rules\": true, \"targets\", \"not_targets\" or "
			    "\"deliveries\"",
			    tc->name);
	const struct kr_json *ev = kr_json_get(c, "event");
	if (!ev)
		return FERR(f, c, jp, "a test needs an \"event\" (an event, or \"@FILE\")");
	snprintf(kjp, sizeof kjp, "%s.event", jp);
	col->tc = tc;
	return read_events(f, s, col, ev, kjp);
}

static char *dir_of(const char *path)
{
	char *d = strdup(path);
	if (!d)
		return NULL;
	char *slash = strrchr(d, '/');
	if (slash)
		slash[slash == d ? 1 : 0] = 0;
	else
		strcpy(d, ".");
	return d;
}

/* Reads, validates and loads path: its configuration (unless cfg is given), its cases and their
 * events, matched. KR_OK, or an error with the message in f->err. */
static enum kr_err load_file(struct tfile *f, const char *path, const struct kr_config *cfg)
{
	f->path = path;
	f->src = (struct kr_opts_src){.file = path, .err = f->err};
	enum kr_err e = kr_read_file(path, &f->text, &f->len, f->err);
	if (e)
		return e;
	f->src.text = f->text;
	f->src.len = f->len;
	if (!(f->dir = dir_of(path)))
		return nomem(f);
	struct kr_json_opts jo = {.allow_comments = true, .max_depth = 128};
	size_t off = 0;
	char jerr[KR_ERRBUF];
	if ((e = kr_json_parse(f->text, f->len, &jo, &f->doc, &off, jerr))) {
		if (e == KR_ERR_NOMEM)
			return nomem(f);
		struct kr_json at = {.offset = off};
		return FERR(f, &at, "$", "%s", jerr);
	}
	const struct kr_json *d = f->doc;
	if (d->type != KR_JSON_OBJECT)
		return FERR(f, d, "$", "a test file must be a JSON object {\"config\", \"tests\"}");
	if ((e = check_keys(f, d, "$", file_keys, NKEYS(file_keys), "a test file")))
		return e;
	const struct kr_json *cj = kr_json_get(d, "config"), *tj = kr_json_get(d, "tests");
	if (cj && (cj->type != KR_JSON_STRING || cj->len == 0 || strlen(cj->str) != cj->len))
		return FERR(f, cj, "$.config", "must be the path of a configuration file (a string)");
	if (!tj)
		return FERR(f, d, "$", "a test file needs \"tests\" (an array of tests)");
	if (tj->type != KR_JSON_ARRAY || tj->n == 0)
		return FERR(f, tj, "$.tests", "must be a non-empty array of tests");
	if (!cfg) {
		if (!cj)
			return FERR(f, d, "$",
				    "no configuration to test: give \"config\" here or -c CONFIG");
		char *cpath = kr_resolve_path(f->dir, cj->str);
		if (!cpath)
			return nomem(f);
		char cerr[KR_ERRBUF];
		e = kr_config_load_offline(cpath, &f->own_cfg, cerr);
		free(cpath);
		if (e) {
			f->own_cfg = NULL;
			return FERR(f, cj, "$.config", "%s", cerr);
		}
		cfg = f->own_cfg;
	}
	f->cfg = cfg;
	f->cases = calloc(tj->n, sizeof *f->cases);
	struct collect col = {.cfg = cfg, .st = kr_match_state_new(cfg->compiled)};
	struct kr_stream *s = NULL;
	struct kr_stream_callbacks cb = {.event = on_event, .invalid = on_invalid};
	if (!f->cases || !col.st ||
	    kr_stream_new(kr_rules_paths(cfg->compiled), &(struct kr_stream_opts){0}, &cb, &col,
			  &s) != KR_OK) {
		kr_match_state_free(col.st);
		return nomem(f);
	}
	for (size_t i = 0; i < tj->n && !e; i++) {
		e = read_case(f, tj->items[i], i, &f->cases[i], s, &col);
		f->ncases = i + 1;
	}
	kr_stream_free(s);
	kr_match_state_free(col.st);
	return e;
}

static void free_file(struct tfile *f)
{
	for (size_t i = 0; i < f->ncases; i++) {
		struct tcase *tc = &f->cases[i];
		free(tc->rules.v);
		free(tc->not_rules.v);
		free(tc->targets.v);
		free(tc->not_targets.v);
		free(tc->deliveries);
		for (size_t k = 0; k < tc->nevents; k++) {
			free(tc->events[k].raw);
			free(tc->events[k].id);
			free(tc->events[k].rules);
		}
		free(tc->events);
	}
	free(f->cases);
	kr_config_free(f->own_cfg);
	kr_json_free(f->doc);
	free(f->text);
	free(f->dir);
}

/* ---- running a case ---- */

static bool matched(const struct event *e, uint32_t rule)
{
	for (size_t i = 0; i < e->nrules; i++)
		if (e->rules[i] == rule)
			return true;
	return false;
}

static bool put_name(struct kr_buf *b, const char *name)
{
	return kr_buf_json_string(b, name, strlen(name));
}

/* Whether a target entry's payload is text: an input_transformer's text template (its first
 * character, blanks aside, a '"'). Every other payload is JSON. */
static bool text_payload(const struct kr_target_cfg *t)
{
	if (!t->input_transformer)
		return false;
	const struct kr_json *tm = kr_json_get(t->input_transformer, "input_template");
	if (!tm || tm->type != KR_JSON_STRING)
		return false;
	const char *p = tm->str;
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return *p == '"';
}

/* The payload as the lines it is compared by: a text payload's own text; JSON pretty-printed
 * (a payload that is not JSON, its text). */
static bool payload_text(struct kr_buf *b, const char *p, size_t n, bool text)
{
	if (!text) {
		struct kr_json *j = NULL;
		size_t off;
		char jerr[KR_ERRBUF];
		struct kr_json_opts o = {.keep_duplicate_keys = true, .max_depth = 128};
		if (kr_json_parse(p, n, &o, &j, &off, jerr) == KR_OK) {
			bool ok = kr_json_pretty(b, j);
			kr_json_free(j);
			return ok;
		}
	}
	return kr_buf_append(b, p, n);
}

/* The expected payload as lines: a string when the payload is text, its text; else the value
 * pretty-printed. */
static bool expected_text(struct kr_buf *b, const struct kr_json *j, bool text)
{
	if (text && j->type == KR_JSON_STRING)
		return kr_buf_append(b, j->str, j->len);
	return kr_json_pretty(b, j);
}

/* Appends what the expected delivery w misses for event e (nothing when it is right). */
static bool check_delivery(struct kr_buf *out, const char *ind, const struct kr_config *cfg,
			   const struct want_delivery *w, const struct event *e)
{
	const struct kr_rule_cfg *r = &cfg->rules[w->rule];
	const char *sink = cfg->sinks[w->sink].name;
	struct kr_buf head = {0};
	bool ok = kr_buf_puts(&head, ind) && kr_buf_puts(&head, "delivery of rule ") &&
		  put_name(&head, r->name) && kr_buf_puts(&head, " to sink ") &&
		  put_name(&head, sink);
	if (!ok) {
		kr_buf_free(&head);
		return false;
	}
	if (!matched(e, w->rule)) {
		ok = kr_buf_append(out, head.p, head.len) &&
		     kr_buf_puts(out, ": the rule did not match, so nothing was delivered\n");
		kr_buf_free(&head);
		return ok;
	}
	size_t entries = 0;
	for (size_t t = 0; t < r->ntargets; t++)
		entries += r->targets[t] == w->sink;
	/* the ingestion time (<aws.events.event.ingestion-time>): the event's time, so that a
	   test gives the same payload whenever it runs */
	uint64_t when = 0;
	struct kr_event_text ev = kr_event_text_of(e->raw, e->raw_len);
	int64_t ms = kr_event_time_ms(&ev);
	if (ms > 0)
		when = (uint64_t)ms;
	struct kr_buf diffs = {0}, want = {0}, got = {0};
	bool same = false;
	for (size_t t = 0; ok && !same && t < r->ntargets; t++) {
		if (r->targets[t] != w->sink)
			continue;
		const struct kr_target_cfg *tc = &r->tcfg[t];
		bool text = text_payload(tc);
		char err[KR_ERRBUF] = "";
		size_t plen = 0;
		char *p = kr_transform(tc, r->name, e->raw, e->raw_len, when, &plen, err);
		want.len = got.len = 0;
		char label[64] = "";
		if (entries > 1)
			snprintf(label, sizeof label, " (target entry %zu)", t);
		if (!p) {
			ok = kr_buf_append(&diffs, head.p, head.len) && kr_buf_puts(&diffs, label) &&
			     kr_buf_puts(&diffs, ": no payload: ") && kr_buf_puts(&diffs, err) &&
			     kr_buf_puts(&diffs, "\n");
			continue;
		}
		ok = payload_text(&got, p, plen, text) && expected_text(&want, w->payload, text) &&
		     kr_buf_reserve(&want, 1) && kr_buf_reserve(&got, 1);
		free(p);
		if (!ok)
			break;
		if (want.len == got.len && memcmp(want.p, got.p, want.len) == 0) {
			same = true;
			break;
		}
		char sub[64];
		snprintf(sub, sizeof sub, "%s  ", ind);
		ok = kr_buf_append(&diffs, head.p, head.len) && kr_buf_puts(&diffs, label) &&
		     kr_buf_puts(&diffs, text ? ": the payload (text) differs" : ": the payload differs") &&
		     kr_buf_puts(&diffs, " (- expected, + actual):\n") &&
		     kr_line_diff(&diffs, sub, want.p, want.len, got.p, got.len, 3);
	}
	if (ok && !same)
		ok = kr_buf_append(out, diffs.p, diffs.len);
	kr_buf_free(&head);
	kr_buf_free(&diffs);
	kr_buf_free(&want);
	kr_buf_free(&got);
	return ok;
}

/* Appends what case tc misses for event e, each line indented by ind. */
static bool check_event(struct kr_buf *out, const char *ind, const struct kr_config *cfg,
			const struct tcase *tc, const struct event *e)
{
	bool ok = true;
	for (size_t i = 0; ok && i < tc->rules.n; i++)
		if (!matched(e, tc->rules.v[i]))
			ok = kr_buf_puts(out, ind) && kr_buf_puts(out, "rule ") &&
			     put_name(out, cfg->rules[tc->rules.v[i]].name) &&
			     kr_buf_puts(out, " did not match\n");
	for (size_t i = 0; ok && i < tc->not_rules.n; i++)
		if (matched(e, tc->not_rules.v[i]))
			ok = kr_buf_puts(out, ind) && kr_buf_puts(out, "rule ") &&
			     put_name(out, cfg->rules[tc->not_rules.v[i]].name) &&
			     kr_buf_puts(out, " matched but must not\n");
	if (ok && tc->exact) {
		bool same = e->nrules == tc->rules.n;
		for (size_t i = 0; same && i < e->nrules; i++)
			same = has_id(&tc->rules, e->rules[i]);
		if (!same) {
			ok = kr_buf_puts(out, ind) && kr_buf_puts(out, "exact_rules: matched [");
			for (size_t i = 0; ok && i < e->nrules; i++)
				ok = (!i || kr_buf_puts(out, ", ")) &&
				     put_name(out, cfg->rules[e->rules[i]].name);
			ok = ok && kr_buf_puts(out, "], expected [");
			for (size_t i = 0; ok && i < tc->rules.n; i++)
				ok = (!i || kr_buf_puts(out, ", ")) &&
				     put_name(out, cfg->rules[tc->rules.v[i]].name);
			ok = ok && kr_buf_puts(out, "]\n");
		}
	}
	for (size_t i = 0; ok && i < tc->targets.n; i++) {
		bool got = false;
		for (size_t k = 0; !got && k < e->nrules; k++) {
			const struct kr_rule_cfg *r = &cfg->rules[e->rules[k]];
			for (size_t t = 0; !got && t < r->ntargets; t++)
				got = r->targets[t] == tc->targets.v[i];
		}
		if (!got)
			ok = kr_buf_puts(out, ind) && kr_buf_puts(out, "sink ") &&
			     put_name(out, cfg->sinks[tc->targets.v[i]].name) &&
			     kr_buf_puts(out, " received nothing\n");
	}
	for (size_t i = 0; ok && i < tc->not_targets.n; i++) {
		for (size_t k = 0; ok && k < e->nrules; k++) {
			const struct kr_rule_cfg *r = &cfg->rules[e->rules[k]];
			bool got = false;
			for (size_t t = 0; !got && t < r->ntargets; t++)
				got = r->targets[t] == tc->not_targets.v[i];
			if (got)
				ok = kr_buf_puts(out, ind) && kr_buf_puts(out, "sink ") &&
				     put_name(out, cfg->sinks[tc->not_targets.v[i]].name) &&
				     kr_buf_puts(out, " received a delivery from rule ") &&
				     put_name(out, r->name) && kr_buf_puts(out, " but must not\n");
		}
	}
	for (size_t i = 0; ok && i < tc->ndeliveries; i++)
		ok = check_delivery(out, ind, cfg, &tc->deliveries[i], e);
	return ok;
}

/* Runs a case: prints its line and what it misses. Returns 1 passed, 0 failed, -1 out of
 * memory. */
static int run_case(const struct tfile *f, const struct tcase *tc)
{
	struct kr_buf out = {0}, one = {0};
	bool ok = true;
	for (size_t k = 0; ok && k < tc->nevents; k++) {
		const struct event *e = &tc->events[k];
		one.len = 0;
		ok = kr_buf_reserve(&one, 1) &&
		     check_event(&one, tc->nevents > 1 ? "      " : "    ", f->cfg, tc, e);
		if (!ok || !one.len)
			continue;
		if (tc->nevents > 1) {
			char head[96];
			snprintf(head, sizeof head, "    event %zu of %zu (id ", k + 1, tc->nevents);
			ok = kr_buf_puts(&out, head) &&
			     kr_buf_puts(&out, e->id ? e->id : "none") && kr_buf_puts(&out, "):\n");
		}
		ok = ok && kr_buf_append(&out, one.p, one.len);
	}
	int passed = out.len == 0;
	if (!ok) {
		passed = -1;
	} else if (passed) {
		printf("ok %s\n", tc->name);
	} else {
		printf("FAIL %s (%s:%zu)\n", tc->name, f->path, tc->line);
		fwrite(out.p, 1, out.len, stdout);
	}
	kr_buf_free(&out);
	kr_buf_free(&one);
	return passed;
}

static const char help[] =
	"usage: kmsrouter test [-c CONFIG] FILE...\n\n"
	"Runs the rule tests of each FILE against a configuration's rules and target entries,\n"
	"offline: nothing is delivered, and the configuration is loaded as match loads it. Each\n"
	"test gives an event and says which rules must (and must not) match it, which sinks must\n"
	"(and must not) receive it, and what a sink receives. A FILE is JSON, with comments\n"
	"allowed:\n"
	"  {\"config\": \"kmsrouter.json\",\n"
	"   \"tests\": [{\"name\": \"a key deletion pages on-call\", \"event\": \"@events/deletion.json\",\n"
	"              \"rules\": [\"key-deleted\"], \"not_rules\": [], \"exact_rules\": false,\n"
	"              \"targets\": [\"page\"], \"not_targets\": [\"archive\"],\n"
	"              \"deliveries\": [{\"rule\": \"key-deleted\", \"sink\": \"page\", \"payload\": {}}]}]}\n\n"
	"  config       the configuration, relative to FILE's folder; -c CONFIG replaces it (one\n"
	"               of them is required)\n"
	"  name         required, unique in the file\n"
	"  event        required: an event (an object; also an array of events, an SNS\n"
	"               notification, ...), or \"@PATH\": a file, relative to FILE's folder, in any\n"
	"               form match reads. The test applies to each event it holds (at least one)\n"
	"  rules        rules that must all match\n"
	"  not_rules    rules that must not match\n"
	"  exact_rules  true: \"rules\" is exactly the set that matches (without \"rules\": no\n"
	"               rule may match); default false\n"
	"  targets      sinks that must receive a delivery (from any rule)\n"
	"  not_targets  sinks that must receive nothing\n"
	"  deliveries   payloads: what rule \"rule\"'s target entry for sink \"sink\" delivers,\n"
	"               after its input_path or input_transformer, must be \"payload\" (when\n"
	"               the rule has several entries for the sink, one of them)\n\n"
	"Every rule and sink named must be in the configuration, and each test must expect\n"
	"something. Payloads are compared as pretty-printed JSON (2-space indentation, members in\n"
	"the order written, numbers as written), so white space does not count and member order\n"
	"does; a text template's payload is a string holding its text exactly, its quotes\n"
	"included. <aws.events.event.ingestion-time> is the event's time (1970-01-01T00:00:00Z\n"
	"when it has none).\n\n"
	"Output: one line per test, \"ok NAME\" or \"FAIL NAME (FILE:LINE)\" followed by what\n"
	"missed, indented (when the event input holds several events, under the event's number\n"
	"and id): rule \"x\" did not match; rule \"y\" matched but must not; exact_rules: matched\n"
	"[...], expected [...]; sink \"s\" received nothing; sink \"s\" received a delivery from\n"
	"rule \"r\" but must not; and for a payload a line diff (lines starting with - expected,\n"
	"+ actual, with 3 lines of context). Then \"N passed, M failed\". An invalid test file is\n"
	"reported as FILE:LINE:COL: $.json.path: message and its tests are not run.\n\n"
	"  -c, --config CONFIG  the configuration to test, for every FILE\n\n"
	"Exit status: 0 every test passed; 1 some test failed; 2 usage error, a file that cannot\n"
	"be read, an invalid test file or an invalid configuration.\n";

int kr_cmd_test(int argc, char **argv)
{
	const char *config = NULL;
	int status = kr_cli_config_option(argc, argv, help, &config);
	if (status >= 0)
		return status;
	if (optind >= argc) {
		fprintf(stderr, "kmsrouter test: no test FILE given\n\n%s", help);
		return KR_EXIT_USAGE;
	}
	struct kr_config *cfg = NULL;
	char err[KR_ERRBUF];
	if (config && kr_config_load_offline(config, &cfg, err) != KR_OK) {
		fprintf(stderr, "kmsrouter test: %s\n", err);
		return KR_EXIT_USAGE;
	}
	size_t passed = 0, failed = 0;
	bool invalid = false, oom = false;
	for (int i = optind; i < argc && !oom; i++) {
		struct tfile f = {0};
		enum kr_err e = load_file(&f, argv[i], cfg);
		if (e) {
			fflush(stdout);
			fprintf(stderr, "kmsrouter test: %s\n", f.err[0] ? f.err : kr_strerror(e));
			invalid = true;
			oom = e == KR_ERR_NOMEM;
		}
		for (size_t k = 0; !e && k < f.ncases; k++) {
			int r = run_case(&f, &f.cases[k]);
			if (r < 0) {
				fflush(stdout);
				fprintf(stderr, "kmsrouter test: out of memory\n");
				invalid = oom = true;
				break;
			}
			if (r)
				passed++;
			else
				failed++;
		}
		free_file(&f);
	}
	printf("%zu passed, %zu failed\n", passed, failed);
	kr_config_free(cfg);
	if (fflush(stdout) != 0) {
		fprintf(stderr, "kmsrouter test: error writing the output\n");
		return KR_EXIT_USAGE;
	}
	return invalid ? KR_EXIT_USAGE : failed ? KR_EXIT_NOMATCH : KR_EXIT_OK;
}
