/* Rules of the configuration (see config.h): their patterns, compiled while the file is parsed
 * when they are plain (cfg_stream_rule) and the usual way otherwise, and their targets with
 * EventBridge's InputPath and InputTransformer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"
#include "grow.h"
#include "options.h"
#include "transform.h"

/* A JSONPath as EventBridge's InputPath and InputPathsMap take it: $ or $.a.b[0]... */
static bool jsonpath_ok(const char *p)
{
	if (p[0] != '$')
		return false;
	for (const char *c = p + 1; *c;) {
		if (*c == '.') {
			c++;
			size_t n = strcspn(c, ".[");
			if (n == 0)
				return false;
			c += n;
		} else if (*c == '[') {
			c++;
			if (*c < '0' || *c > '9')
				return false;
			while (*c >= '0' && *c <= '9')
				c++;
			if (*c++ != ']')
				return false;
		} else {
			return false;
		}
	}
	return true;
}

/* The offset in the config text of byte i of the decoded string whose literal (its opening
 * quote) is at off, so that an error inside an input template names its own line and column. */
static size_t string_byte_offset(const char *text, size_t len, size_t off, size_t i)
{
	size_t r = off + 1, d = 0;
	while (d < i && r < len && text[r] != '"') {
		if (text[r] != '\\') {
			r++;
			d++;
		} else if (r + 5 < len && text[r + 1] == 'u') {
			unsigned cp = 0; /* the parser has checked the four hex digits */
			for (size_t k = r + 2; k < r + 6; k++)
				cp = cp * 16 + (unsigned)(text[k] <= '9' ? text[k] - '0'
									 : (text[k] | 0x20) - 'a' + 10);
			bool pair = cp >= 0xD800 && cp < 0xDC00 && r + 11 < len &&
				    text[r + 6] == '\\' && text[r + 7] == 'u';
			r += pair ? 12 : 6;
			d += pair ? 4 : cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;
		} else {
			r += 2;
			d++;
		}
	}
	return r;
}

/* An error at byte offset off of the config text (verr takes the offset from a node). */
static enum kr_err verr_at(struct vctx *v, size_t off, const char *jpath, const char *msg)
{
	size_t line = 1, col = 1;
	kr_json_linecol(v->c->text, v->c->len, off, &line, &col);
	return kr_opts_error_at(v->err, v->c->path, line, col, jpath, msg);
}

/* A variable name as EventBridge's InputPathsMap takes it: 1 to 256 of [A-Za-z0-9_-]. */
static bool variable_name_ok(const char *s, size_t n)
{
	if (n == 0 || n > 256)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

static const struct kr_option transformer_options[] = {
	{.name = "input_paths", .type = KR_OPT_MAP,
	 .help = "variables: up to 100 names, each with a JSONPath into the event ($.detail.key-id)"},
	{.name = "input_template", .type = KR_OPT_STRING, .required = true,
	 .help = "the payload, with <variable> placeholders: a JSON template ({...} or [...]) or "
		 "quoted text lines, as EventBridge's InputTemplate"},
	{0},
};

static const char *const doc_pattern[] = {
	"an EventBridge event pattern: an object, or a JSON string holding one", NULL};
static const char *const doc_targets[] = {
	"an array of targets: sink names, or objects as below", NULL};

/* In the order stream_rule and load_rules read them from get_keys: name, pattern, targets,
 * description. */
const struct kr_option kr_rule_options[] = {
	{.name = "name", .type = KR_OPT_STRING, .required = true,
	 .help = "unique; it names the rule in outputs, dead letters and metrics"},
	{.name = "pattern", .type = KR_OPT_DOC, .values = doc_pattern, .required = true,
	 .help = "which events the rule matches"},
	{.name = "targets", .type = KR_OPT_DOC, .values = doc_targets, .required = true,
	 .help = "each entry is its own delivery of a matched event"},
	{.name = "description", .type = KR_OPT_STRING, .help = "free text"},
	{0},
};

/* The reference text of the section (config.h). */
const char kr_rule_doc[] =
	"A pattern is an EventBridge event pattern, with every operator EventBridge documents: "
	"exact strings, numbers (compared by value), booleans and null; arrays as OR; nested "
	"objects; prefix, suffix, equals-ignore-case (and the ignore-case forms of prefix and "
	"suffix); anything-but (a value, a list, prefix, suffix, wildcard, equals-ignore-case); "
	"numeric (=, <, <=, >, >=, ranges); exists; cidr; wildcard; and $or. kmsrouter answers as "
	"aws/event-ruler, the engine EventBridge runs, does. A pattern may also be given as a "
	"JSON string holding the pattern, as aws events describe-rule prints EventPattern. A "
	"CloudTrail record in a log file is matched as the \"AWS API Call via CloudTrail\" event "
	"EventBridge would deliver for it, so one rule covers live events and archives. Events "
	"from the sqs and kafka sources also carry the source's metadata under the top-level key "
	"\"kmsrouter\", which patterns can match (see those sources).";

const struct kr_option kr_target_options[] = {
	{.name = "sink", .type = KR_OPT_SINK, .required = true, .help = "where the delivery goes"},
	{.name = "retry", .type = KR_OPT_TABLE, .table = cfg_retry_options,
	 .help = "overrides the sink's retry policy, key by key"},
	{.name = "dead_letter", .type = KR_OPT_SINK, .help = "overrides the sink's dead letter"},
	{.name = "input_path", .type = KR_OPT_STRING,
	 .help = "deliver only this part of the event: a JSONPath such as \"$.detail\""},
	{.name = "input_transformer", .type = KR_OPT_TABLE, .table = transformer_options,
	 .help = "deliver a payload built from the event (not with input_path)"},
	{0},
};

/* The reference text of the section (config.h). */
const char kr_target_doc[] =
	"A target entry is a sink name, or {\"sink\", \"retry\", \"dead_letter\", \"input_path\", "
	"\"input_transformer\": {\"input_paths\": {...}, \"input_template\": \"...\"}} "
	"(EventBridge's InputPath and InputTransformer). As in EventBridge, each target entry is "
	"its own delivery with its own retries and dead letter, also when several entries name "
	"one sink (say one with input_path and one without). The one exception: an entry "
	"identical to an earlier one of the same rule (same sink, transformation, retry and dead "
	"letter) would deliver the same bytes twice, so it is merged into it; kmsrouter check "
	"says so.\n\n"
	"Input transformers follow the EventBridge user guide's \"input transformation\" page: "
	"input_paths names up to 100 variables (letters, digits, _, -), each a JSONPath into the "
	"event, and <aws.events.rule-name>, <aws.events.rule-arn>, "
	"<aws.events.event.ingestion-time>, <aws.events.event> (the event without detail) and "
	"<aws.events.event.json> (the whole event) are predefined. A template whose first "
	"character (blanks aside) is { or [ is a JSON template: a variable outside quotes is "
	"written as JSON (a string quoted and escaped, so {\"instance\": <instance>} gives "
	"{\"instance\": \"i-0123456789\"}), inside a string as its text, escaped (an object or "
	"array loses its quotes, as EventBridge does), and the output is minified JSON. One that "
	"starts with \" is a text template: one or more strings in double quotes, one per line "
	"(\"instance <instance> is in <state>\"), filled the same way and kept as written, quotes "
	"included. A variable whose path is not in the event does not appear: no text inside a "
	"string, and the field or array item it is the value of is left out. Where EventBridge "
	"does not escape values, kmsrouter does, so the output is always valid.\n\n"
	"A template that could give anything else is a configuration error at load: one that is "
	"not JSON once its variables are filled (unbalanced, a key written twice, a trailing "
	"comma), a <name> that is neither in input_paths nor predefined, a variable as or in an "
	"object key, <aws.events.event> or <aws.events.event.json> inside a string, text without "
	"quotes.";

/* The transformer's template is checked here, once, by the scanner that fills it for each
 * event (kr_template_check): a template accepted here gives valid output for every event. */
static enum kr_err load_transformer(struct vctx *v, const struct kr_json *o, const char *jpath)
{
	const char *keys[4];
	size_t nkeys = kr_opts_names(transformer_options, keys, 4);
	char p[512];
	if (o->type != KR_JSON_OBJECT)
		return cfg_verr(v, o, jpath, "\"input_transformer\" must be an object");
	enum kr_err e = cfg_check_keys(v, o, jpath, keys, nkeys, "an input transformer");
	if (e)
		return e;
	const struct kr_json *paths = kr_json_get(o, "input_paths"),
			     *tmpl = kr_json_get(o, "input_template");
	if (!tmpl || tmpl->type != KR_JSON_STRING)
		return cfg_verr(v, tmpl ? tmpl : o, jpath, "needs \"input_template\" (a string)");
	if (paths) {
		if (snprintf(p, sizeof p, "%s.input_paths", jpath) >= (int)sizeof p)
			p[sizeof p - 1] = 0; /* a long path is cut, not wrong */
		if (paths->type != KR_JSON_OBJECT)
			return cfg_verr(v, paths, p, "must be an object of variable names to JSONPaths");
		if (paths->n > 100)
			return cfg_verr(v, paths, p, "at most 100 variables");
		for (size_t i = 0; i < paths->n; i++) {
			const struct kr_json *x = paths->items[i];
			if (snprintf(p, sizeof p, "%s.input_paths.%s", jpath, paths->keys[i]) >=
			    (int)sizeof p)
				p[sizeof p - 1] = 0;
			if (strncmp(paths->keys[i], "aws.events.", 11) == 0)
				return cfg_verr(v, x, p, "the aws.events. prefix is reserved");
			if (!variable_name_ok(paths->keys[i], paths->keylens[i]))
				return verr_at(v, paths->key_offsets[i], p,
					       "a variable name is 1 to 256 letters, digits, '_' and "
					       "'-'");
			if (x->type != KR_JSON_STRING || !jsonpath_ok(x->str))
				return cfg_verr(v, x, p, "must be a JSONPath such as \"$.detail.key-id\"");
		}
	}
	size_t at;
	char msg[KR_ERRBUF];
	e = kr_template_check(tmpl->str, tmpl->len, paths, &at, msg);
	if (e == KR_ERR_NOMEM)
		return kr_errf(v->err, e, "out of memory");
	if (e) {
		if (snprintf(p, sizeof p, "%s.input_template", jpath) >= (int)sizeof p)
			p[sizeof p - 1] = 0;
		return verr_at(v, string_byte_offset(v->c->text, v->c->len, tmpl->offset, at), p,
			       msg);
	}
	return KR_OK;
}

/* A target's settings when it names sink si as it is. */
static void target_of_sink(const struct vctx *v, int32_t si, struct kr_target_cfg *out)
{
	const struct kr_sink_cfg *s = &v->c->sinks[si];
	out->sink = (uint32_t)si;
	out->retry = s->retry;
	out->dead_letter = s->dead_letter;
}

/* One entry of a rule's targets: a sink name, or an object overriding the sink's settings. */
static enum kr_err load_target(struct vctx *v, const struct kr_json *t, const char *jp,
			       struct kr_target_cfg *out)
{
	const char *keys[8];
	size_t nkeys = kr_opts_names(kr_target_options, keys, 8);
	char p[512];
	const struct kr_json *sink = t;
	if (t->type == KR_JSON_OBJECT) {
		enum kr_err e = cfg_check_keys(v, t, jp, keys, nkeys, "a target");
		if (e)
			return e;
		sink = kr_json_get(t, "sink");
		if (!sink)
			return cfg_verr(v, t, jp, "a target object needs \"sink\"");
	} else if (t->type != KR_JSON_STRING) {
		return cfg_verr(v, t, jp, "a target must be a sink name or an object with \"sink\"");
	}
	int32_t si;
	if (t != sink)
		snprintf(p, sizeof p, "%s.sink", jp);
	enum kr_err e = cfg_sink_ref(v, sink, t == sink ? jp : p, &si);
	if (e)
		return e;
	target_of_sink(v, si, out);
	if (t->type != KR_JSON_OBJECT)
		return KR_OK;
	const struct kr_json *j;
	if ((j = kr_json_get(t, "retry"))) {
		snprintf(p, sizeof p, "%s.retry", jp);
		if ((e = kr_opts_update(&v->src, cfg_retry_options, j, p, &out->retry)) ||
		    (e = cfg_check_retry(v, j, p, &out->retry)))
			return e;
	}
	if ((j = kr_json_get(t, "dead_letter"))) {
		snprintf(p, sizeof p, "%s.dead_letter", jp);
		if ((e = cfg_sink_ref(v, j, p, &out->dead_letter)))
			return e;
	}
	const struct kr_json *ip = kr_json_get(t, "input_path"),
			     *it = kr_json_get(t, "input_transformer");
	if (ip && it)
		return cfg_verr(v, it, jp, "use either \"input_path\" or \"input_transformer\", not both");
	if (ip) {
		snprintf(p, sizeof p, "%s.input_path", jp);
		if (ip->type != KR_JSON_STRING || !jsonpath_ok(ip->str))
			return cfg_verr(v, ip, p, "must be a JSONPath such as \"$.detail\"");
		out->input_path = ip;
	}
	if (it) {
		snprintf(p, sizeof p, "%s.input_transformer", jp);
		if ((e = load_transformer(v, it, p)))
			return e;
		out->input_transformer = it;
	}
	return KR_OK;
}

/* $.rules[i] followed by suffix. The paths of a rule are only built when a message needs them:
 * building them for each of 10,000 rules was a good part of loading. */
static const char *rule_path(char *out, size_t cap, size_t i, const char *suffix)
{
	cfg_jp_index(out, cap, "$.rules", i, suffix);
	return out;
}


/* Whether two target entries would make the same delivery: same sink, same transformation,
 * same retry policy and dead letter. */
static bool same_target(const struct kr_target_cfg *a, const struct kr_target_cfg *b)
{
	return a->sink == b->sink && a->dead_letter == b->dead_letter &&
	       a->retry.max_attempts == b->retry.max_attempts &&
	       a->retry.max_age_ms == b->retry.max_age_ms &&
	       a->retry.initial_backoff_ms == b->retry.initial_backoff_ms &&
	       a->retry.max_backoff_ms == b->retry.max_backoff_ms &&
	       kr_json_same_text(a->input_path, b->input_path) &&
	       kr_json_same_text(a->input_transformer, b->input_transformer);
}

/* Appends target entry k of r. Each entry is its own delivery, as in EventBridge, even when
 * several name one sink; only an entry identical to an earlier one (same_target) is merged
 * into it, and counted in r->nmerged so that check and run can say so. */
static void add_target(struct kr_rule_cfg *r, const struct kr_target_cfg *tc)
{
	for (size_t q = 0; q < r->ntargets; q++)
		if (same_target(&r->tcfg[q], tc)) {
			r->nmerged++;
			return;
		}
	r->tcfg[r->ntargets] = *tc;
	r->targets[r->ntargets++] = tc->sink;
}

/* c->rules for nrules rules and ntargets targets in all: the rules, then every rule's target
 * settings and sink indexes, in one block (freed as c->rules). */
static enum kr_err rules_block(struct vctx *v, size_t nrules, size_t ntargets,
			       struct kr_target_cfg **tcfg_pool, uint32_t **targets_pool)
{
	struct kr_config *c = v->c;
	size_t rules_size = (nrules + 1) * sizeof *c->rules,
	       tcfg_size = (ntargets + 1) * sizeof *c->rules->tcfg;
	_Static_assert(sizeof(struct kr_rule_cfg) % _Alignof(struct kr_target_cfg) == 0 &&
			       sizeof(struct kr_target_cfg) % _Alignof(uint32_t) == 0,
		       "the arrays that follow the rules in their block stay aligned");
	char *block = calloc(1, rules_size + tcfg_size + (ntargets + 1) * sizeof *c->rules->targets);
	if (!block)
		return kr_errf(v->err, KR_ERR_NOMEM, "out of memory");
	c->rules = (struct kr_rule_cfg *)block;
	c->rules_cap = nrules;
	*tcfg_pool = (struct kr_target_cfg *)(block + rules_size);
	*targets_pool = (uint32_t *)(block + rules_size + tcfg_size);
	return KR_OK;
}

/* A copy of n bytes in the config's pool of names (sized for the whole text: never moved). */
static const char *pool_put(struct kr_config *c, const char *s, size_t n)
{
	if (!c->pool && !(c->pool = malloc(c->len + 1)))
		return NULL;
	if (c->pool_len + n + 1 > c->len + 1)
		return NULL;
	char *d = c->pool + c->pool_len;
	memcpy(d, s, n);
	d[n] = 0;
	c->pool_len += n + 1;
	return d;
}

/* Called by the parser for each element of "rules" as soon as it is complete: a rule that
 * passes every check of load_rules but the lookup of its sinks (not loaded yet) is compiled at
 * once, while its nodes are in the cache, and dropped from the tree. The first that does not
 * (an error, a target object) turns streaming off: the file is then loaded again the usual way,
 * so that errors are found and reported exactly as load_rules does. */
bool cfg_stream_rule(void *ctx, const struct kr_json *o, size_t index)
{
	struct vctx *v = ctx;
	struct kr_config *c = v->c;
	(void)index;
	if (v->stream_off)
		return false;
	const struct kr_json *f[4];
	if (o->type != KR_JSON_OBJECT || cfg_get_keys(o, v->rule_keys, 4, f) < o->n)
		goto off;
	const struct kr_json *n = f[0], *pat = f[1], *tg = f[2], *d = f[3];
	if (!n || n->type != KR_JSON_STRING || n->len == 0 || (d && d->type != KR_JSON_STRING) ||
	    !pat || pat->type == KR_JSON_STRING || !tg || tg->type != KR_JSON_ARRAY)
		goto off;
	for (size_t k = 0; k < tg->n; k++)
		if (tg->items[k]->type != KR_JSON_STRING)
			goto off;
	if (!kr_grow(&v->sr, &v->capsr, v->nsr + 1, sizeof *v->sr, 256))
		goto off;
	if (!kr_grow(&v->tnames, &v->captn, v->ntn + tg->n, sizeof *v->tnames, 256))
		goto off;
	const char *name = pool_put(c, n->str, n->len);
	if (!name || cfg_nameset_add(&v->rnames, name) <= 0)
		goto off;
	const struct kr_json *bad = NULL;
	char perr[KR_ERRBUF];
	if (kr_rules_add(c->compiled, pat, &bad, perr) != KR_OK)
		goto off;
	struct srule *r = &v->sr[v->nsr++];
	r->name = name;
	r->tfirst = (uint32_t)v->ntn;
	r->nt = (uint32_t)tg->n;
	for (size_t k = 0; k < tg->n; k++)
		if (!(v->tnames[v->ntn++] = pool_put(c, tg->items[k]->str, tg->items[k]->len)))
			goto off;
	return true;
off:
	v->stream_off = true;
	return false;
}

/* The rules stream_rule took, their targets looked up now that the sinks are loaded. Returns
 * KR_ERR_CONFIG with stream_off set when a target names no sink (load_rules reports that). */
enum kr_err cfg_load_streamed_rules(struct vctx *v)
{
	struct kr_config *c = v->c;
	struct kr_target_cfg *tcfg_pool;
	uint32_t *targets_pool;
	enum kr_err e = rules_block(v, v->nsr, v->ntn, &tcfg_pool, &targets_pool);
	if (e)
		return e;
	for (size_t i = 0; i < v->nsr; i++) {
		const struct srule *s = &v->sr[i];
		struct kr_rule_cfg *r = &c->rules[i];
		r->name = s->name;
		r->targets = targets_pool;
		r->tcfg = tcfg_pool;
		targets_pool += s->nt;
		tcfg_pool += s->nt;
		for (uint32_t k = 0; k < s->nt; k++) {
			int32_t si = cfg_find_sink(c, v->tnames[s->tfirst + k]);
			if (si < 0) {
				v->stream_off = true;
				return KR_ERR_CONFIG;
			}
			struct kr_target_cfg tc = {0};
			target_of_sink(v, si, &tc);
			add_target(r, &tc);
		}
		c->nrules++;
	}
	return KR_OK;
}

/* Compiles a rule's pattern: an object, or the same as a JSON string, the shape in which
 * `aws events describe-rule` prints EventPattern. An error inside such a string is placed at
 * the string, with the offset inside it. */
static enum kr_err add_pattern(struct vctx *v, const struct kr_json *pat, const char *jp)
{
	const struct kr_json *bad = NULL;
	char perr[KR_ERRBUF];
	if (pat->type != KR_JSON_STRING) {
		if (kr_rules_add(v->c->compiled, pat, &bad, perr) != KR_OK)
			return cfg_verr(v, bad ? bad : pat, jp, "%s", perr);
		return KR_OK;
	}
	struct kr_json *tree = NULL;
	size_t off = 0;
	if (kr_json_parse(pat->str, pat->len, NULL, &tree, &off, perr) != KR_OK)
		return cfg_verr(v, pat, jp, "the pattern string is not valid JSON (at character %zu of "
				       "the string): %s", off + 1, perr);
	enum kr_err e = KR_OK;
	if (kr_rules_add(v->c->compiled, tree, &bad, perr) != KR_OK)
		e = cfg_verr(v, pat, jp, "in the pattern string (at character %zu of it): %s",
			 (bad ? bad->offset : 0) + 1, perr);
	kr_json_free(tree);
	return e;
}

enum kr_err cfg_load_rules(struct vctx *v, const struct kr_json *arr)
{
	kr_names_free(&v->names);
	struct kr_config *c = v->c;
	if (arr->type != KR_JSON_ARRAY)
		return cfg_verr(v, arr, "$.rules", "\"rules\" must be an array");
	/* The rules and the target arrays of all of them in one block (freed as c->rules), instead
	   of two callocs per rule; so first count the targets. Each target is a node of the
	   document, so the counts cannot overflow. */
	size_t ntargets = 0;
	for (size_t i = 0; i < arr->n; i++) {
		const struct kr_json *tg = kr_json_get(arr->items[i], "targets");
		if (tg && tg->type == KR_JSON_ARRAY)
			ntargets += tg->n;
	}
	struct kr_target_cfg *tcfg_pool;
	uint32_t *targets_pool;
	enum kr_err e = rules_block(v, arr->n, ntargets, &tcfg_pool, &targets_pool);
	if (e)
		return e;
	/* every rule adds a name: size the set once rather than rehashing it as it fills */
	if (!kr_names_reserve(&v->names, arr->n + 1))
		return kr_errf(v->err, KR_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < arr->n; i++) {
		const struct kr_json *o = arr->items[i];
		char jp[64], jp2[96];
		if (o->type != KR_JSON_OBJECT)
			return cfg_verr(v, o, rule_path(jp, sizeof jp, i, ""), "a rule must be an object");
		const struct kr_json *f[4];
		size_t bad_key = cfg_get_keys(o, v->rule_keys, 4, f);
		if (bad_key < o->n)
			return cfg_unknown_key(v, o, bad_key, rule_path(jp, sizeof jp, i, ""), v->rule_keys, 4,
					   "a rule");
		struct kr_rule_cfg *r = &c->rules[i];
		const struct kr_json *n = f[0], *pat = f[1], *tg = f[2], *d = f[3];
		if (!n || n->type != KR_JSON_STRING || n->len == 0)
			return cfg_verr(v, n ? n : o, rule_path(jp, sizeof jp, i, ""),
				    "a rule needs a \"name\" (a non-empty string)");
		if (d && d->type != KR_JSON_STRING)
			return cfg_verr(v, d, rule_path(jp2, sizeof jp2, i, ".description"),
				    "\"description\" must be a string");
		r->name = n->str;
		int added = cfg_nameset_add(&v->names, r->name);
		if (added <= 0) {
			return added < 0 ? kr_errf(v->err, KR_ERR_NOMEM, "out of memory")
					 : cfg_verr(v, n, rule_path(jp, sizeof jp, i, ""),
						"duplicate rule name \"%s\"", r->name);
		}
		if (!pat)
			return cfg_verr(v, o, rule_path(jp, sizeof jp, i, ""),
				    "rule \"%s\" needs a \"pattern\"", r->name);
		if ((e = add_pattern(v, pat, rule_path(jp2, sizeof jp2, i, ".pattern"))))
			return e;
		if (!tg)
			return cfg_verr(v, o, rule_path(jp, sizeof jp, i, ""),
				    "rule \"%s\" needs \"targets\" (an array of sink names)", r->name);
		if (tg->type != KR_JSON_ARRAY)
			return cfg_verr(v, tg, rule_path(jp2, sizeof jp2, i, ".targets"),
				    "\"targets\" must be an array of sink names");
		r->targets = targets_pool;
		r->tcfg = tcfg_pool;
		targets_pool += tg->n;
		tcfg_pool += tg->n;
		for (size_t k = 0; k < tg->n; k++) {
			const struct kr_json *t = tg->items[k];
			struct kr_target_cfg tc = {0};
			int32_t si;
			/* nearly every target is the name of a sink: that needs no path */
			if (t->type == KR_JSON_STRING && (si = cfg_find_sink(c, t->str)) >= 0) {
				target_of_sink(v, si, &tc);
			} else {
				char jp3[128];
				cfg_jp_index(jp3, sizeof jp3, rule_path(jp2, sizeof jp2, i, ".targets"), k,
					 "");
				if ((e = load_target(v, t, jp3, &tc)))
					return e;
			}
			add_target(r, &tc);
		}
		c->nrules++;
	}
	return KR_OK;
}

