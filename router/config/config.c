/* Configuration loading and validation (see config.h). */
#include "config.h"
#include "config_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "transform.h"


int cfg_nameset_add(struct kr_names *ns, const char *name)
{
	if (kr_names_find(ns, name) != KR_NAME_ABSENT)
		return 0;
	return kr_names_add(ns, name, 0) ? 1 : -1;
}

/* out = base[idx]suffix, e.g. $.rules[12].pattern. Called once per list entry, so it avoids
 * snprintf, which dominated loading a 10,000-rule file. */
void cfg_jp_index(char *out, size_t cap, const char *base, size_t idx, const char *suffix)
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

enum kr_err cfg_verr(struct vctx *v, const struct kr_json *node, const char *jpath,
			const char *fmt, ...)
{
	char msg[KR_ERRBUF];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return kr_opts_error(&v->src, node, jpath, "%s", msg);
}

static size_t allowed_index(const char *key, const char *const *allowed, size_t nallowed)
{
	size_t j = 0;
	/* the first bytes inline: strcmp is a call, and allowed names mostly start differently */
	while (j < nallowed && (key[0] != allowed[j][0] || strcmp(key, allowed[j]) != 0))
		j++;
	return j;
}

enum kr_err cfg_unknown_key(struct vctx *v, const struct kr_json *obj, size_t i,
			       const char *jpath, const char *const *allowed, size_t nallowed,
			       const char *what)
{
	char hint[128];
	kr_opts_did_you_mean(obj->keys[i], allowed, nallowed, hint, sizeof hint);
	struct kr_json at = {.offset = obj->key_offsets[i]};
	return cfg_verr(v, &at, jpath, "unknown key \"%s\" in %s%s", obj->keys[i], what, hint);
}

enum kr_err cfg_check_keys(struct vctx *v, const struct kr_json *obj, const char *jpath,
			      const char *const *allowed, size_t nallowed, const char *what)
{
	for (size_t i = 0; i < obj->n; i++)
		if (allowed_index(obj->keys[i], allowed, nallowed) == nallowed)
			return cfg_unknown_key(v, obj, i, jpath, allowed, nallowed, what);
	return KR_OK;
}

/* check_keys and kr_json_get of every allowed key in one pass over obj, for objects there are
 * many of (rules): vals[j] is what kr_json_get(obj, allowed[j]) returns. Returns the index of
 * the first key check_keys rejects, or obj->n. */
size_t cfg_get_keys(const struct kr_json *obj, const char *const *allowed, size_t nallowed,
		       const struct kr_json **vals)
{
	for (size_t j = 0; j < nallowed; j++)
		vals[j] = NULL;
	for (size_t i = 0; i < obj->n; i++) {
		size_t j = allowed_index(obj->keys[i], allowed, nallowed);
		if (j == nallowed)
			return i;
		/* kr_json_get wants the whole key: "name\u0000x" passes check_keys as "name" but
		   is not the member "name" */
		if (!vals[j] && strlen(allowed[j]) == obj->keylens[i])
			vals[j] = obj->items[i];
	}
	return obj->n;
}

/* Common checks of a source or sink entry: name, type, plugin options. */
static enum kr_err check_plugin_entry(struct vctx *v, const struct kr_json *o, const char *jpath,
				      const char *what, const struct kr_option *opts,
				      bool available, const char **name, const char **type,
				      const char *const *known_types, size_t nknown,
				      const struct kr_option *common)
{
	char p[160];
	if (o->type != KR_JSON_OBJECT)
		return cfg_verr(v, o, jpath, "a %s must be an object", what);
	const struct kr_json *n = kr_json_get(o, "name"), *t = kr_json_get(o, "type");
	if (!n || n->type != KR_JSON_STRING || n->len == 0)
		return cfg_verr(v, n ? n : o, jpath, "a %s needs a \"name\" (a non-empty string)", what);
	if (!t || t->type != KR_JSON_STRING) {
		snprintf(p, sizeof p, "%s.type", jpath);
		return cfg_verr(v, t ? t : o, t ? p : jpath, "a %s needs a \"type\" (a string)", what);
	}
	*name = n->str;
	*type = t->str;
	if (!available && !opts) {
		for (size_t i = 0; i < nknown; i++)
			if (strcmp(known_types[i], t->str) == 0)
				return KR_OK; /* recognised; its options are checked where it is built */
		char hint[128], list[256] = "";
		kr_opts_did_you_mean(t->str, known_types, nknown, hint, sizeof hint);
		for (size_t i = 0; i < nknown; i++) {
			strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
			strncat(list, known_types[i], sizeof list - strlen(list) - 1);
		}
		snprintf(p, sizeof p, "%s.type", jpath);
		return cfg_verr(v, t, p, "unknown %s type \"%s\"%s; known types: %s", what, t->str, hint,
			    list);
	}
	const char *allowed[64];
	size_t na = kr_opts_names(common, allowed, 64);
	na += kr_opts_names(opts, allowed + na, 64 - na);
	char ctxname[96];
	snprintf(ctxname, sizeof ctxname, "%s of type \"%s\"", what, t->str);
	return cfg_check_keys(v, o, jpath, allowed, na, ctxname);
}


int32_t cfg_find_sink(const struct kr_config *c, const char *name)
{
	for (size_t i = 0; i < c->nsinks; i++)
		if (strcmp(c->sinks[i].name, name) == 0)
			return (int32_t)i;
	return -1;
}

/* A sink named by a string node (dead_letter, unmatched, ...): its index, or an error. */
enum kr_err cfg_sink_ref(struct vctx *v, const struct kr_json *j, const char *jpath,
			    int32_t *out)
{
	if (j->type != KR_JSON_STRING)
		return cfg_verr(v, j, jpath, "must be a sink name (a string)");
	*out = cfg_find_sink(v->c, j->str);
	if (*out >= 0)
		return KR_OK;
	const char *names[256];
	size_t nn = 0;
	for (size_t q = 0; q < v->c->nsinks && nn < 256; q++)
		names[nn++] = v->c->sinks[q].name;
	char hint[128];
	kr_opts_did_you_mean(j->str, names, nn, hint, sizeof hint);
	return cfg_verr(v, j, jpath, "no sink is named \"%s\"%s", j->str, hint);
}

/* KR_OPT_SINK for kr_opts_fill: a sink's own dead_letter is only looked up once every sink is
 * loaded (load_engine_settings); until then it is checked to be a string. Sources are loaded
 * after the sinks, so theirs are looked up at once. */
static enum kr_err sink_ref_cb(void *ctx, const struct kr_json *j, const char *jpath,
			       int32_t *out)
{
	struct vctx *v = ctx;
	if (v->sinks_loaded)
		return cfg_sink_ref(v, j, jpath, out);
	*out = -1;
	return j->type == KR_JSON_STRING ? KR_OK : cfg_verr(v, j, jpath, "must be a sink name (a string)");
}

/* EventBridge's RetryPolicy (MaximumRetryAttempts, MaximumEventAgeInSeconds) and the bounds of
 * the exponential back-off with full jitter between attempts. */
const struct kr_option cfg_retry_options[] = {
	{.name = "max_attempts", .type = KR_OPT_INT,
	 .offset = offsetof(struct kr_retry_cfg, max_attempts), .def = "185", .min = 1,
	 .max = 1000000, .help = "attempts in all, the first included (EventBridge's default: 185)"},
	{.name = "max_event_age_seconds", .type = KR_OPT_INT,
	 .offset = offsetof(struct kr_retry_cfg, max_age_ms), .def = "86400", .min = 1,
	 .max = 86400u * 365u, .scale = 1000,
	 .help = "give up once the event is this old (EventBridge's default: 24 hours)"},
	{.name = "initial_backoff_ms", .type = KR_OPT_INT,
	 .offset = offsetof(struct kr_retry_cfg, initial_backoff_ms), .def = "1000", .min = 1,
	 .max = 3600000, .help = "the longest wait before the second attempt"},
	{.name = "max_backoff_ms", .type = KR_OPT_INT,
	 .offset = offsetof(struct kr_retry_cfg, max_backoff_ms), .def = "60000", .min = 1,
	 .max = 86400000, .help = "the longest wait between two attempts (not before Retry-After)"},
	{0},
};

const struct kr_option kr_sink_common_options[] = {
	{.name = "name", .type = KR_OPT_STRING, .offset = offsetof(struct kr_sink_cfg, name),
	 .required = true, .help = "the sink's name, which rules' targets use"},
	{.name = "type", .type = KR_OPT_STRING, .offset = offsetof(struct kr_sink_cfg, type),
	 .required = true, .help = "the plugin (see below)"},
	{.name = "retry", .type = KR_OPT_TABLE, .offset = offsetof(struct kr_sink_cfg, retry),
	 .table = cfg_retry_options, .help = "the retry policy of the sink's deliveries"},
	{.name = "dead_letter", .type = KR_OPT_SINK,
	 .offset = offsetof(struct kr_sink_cfg, dead_letter),
	 .help = "where deliveries go when the policy is used up or the failure is permanent; "
		 "without one such a record is not acknowledged"},
	{.name = "concurrency", .type = KR_OPT_INT,
	 .offset = offsetof(struct kr_sink_cfg, concurrency), .def = "16", .min = 1,
	 .max = 100000,
	 .help = "deliveries in flight at once (a sink that writes batches may default higher)"},
	{.name = "timeout_ms", .type = KR_OPT_INT, .offset = offsetof(struct kr_sink_cfg, timeout_ms),
	 .def = "10000", .min = 1, .max = 3600000, .help = "per request, for sinks that make requests"},
	{0},
};

/* The reference text of the section (config.h). */
const char kr_sink_common_doc[] =
	"Each delivery (an event for one target entry of a rule) follows the retry policy, the "
	"target entry's where it overrides the sink's: at most max_attempts attempts, none once "
	"the record is max_event_age_seconds old (counted from when kmsrouter received it), and "
	"between attempts a random wait up to a cap that starts at initial_backoff_ms and doubles "
	"with each attempt up to max_backoff_ms (exponential back-off with full jitter), never "
	"before the service's Retry-After. A failure the sink calls permanent (described with "
	"each sink) is not retried. Every failed attempt is logged with its reason: the first of "
	"each delivery at warn, later ones at most once a second per sink (with how many were not "
	"logged).\n\n"
	"When the policy is used up or the failure is permanent, the delivery goes to the dead "
	"letter (the target entry's dead_letter, else the sink's, else the dead_letter of the "
	"event's source) as {\"event\", \"rule\", \"target\", \"target_index\", \"error_code\", "
	"\"error_message\", \"error_counts\", \"attempts\", \"first_attempt_time\", "
	"\"last_attempt_time\"}, plus \"kmsrouter\" (the message's metadata) from the sqs and "
	"kafka sources: target_index is the entry's place in the rule's targets (from 0), "
	"error_code and error_message the last failure, and error_counts the number of failed "
	"attempts per error code (up to 7 codes, the rest as \"other\"). Without a dead letter, "
	"or when the dead letter cannot be written either, the record is not acknowledged: the "
	"source delivers it again, and run exits 1.\n\n"
	"concurrency bounds a sink's deliveries in flight; for a sink that writes batches (sqs, "
	"sns, kinesis, cloudwatch-logs) it is the number of requests in flight instead. Each "
	"sink's default is given with it. timeout_ms bounds each request of a sink that makes "
	"requests.";

const struct kr_option kr_source_common_options[] = {
	{.name = "name", .type = KR_OPT_STRING, .offset = offsetof(struct kr_source_cfg, name),
	 .required = true, .help = "the source's name"},
	{.name = "type", .type = KR_OPT_STRING, .offset = offsetof(struct kr_source_cfg, type),
	 .required = true, .help = "the plugin (see below)"},
	{0},
};

/* The reference text of the section (config.h). */
const char kr_source_common_doc[] =
	"A source hands records to the engine (an event each, or several for an SQS or Kafka "
	"message that holds several), and a record is acknowledged to its source (a file's "
	"checkpoint, an SQS delete, a Kafka offset commit) only once every delivery of every "
	"event in it succeeded or was dead-lettered. Delivery is at least once: a record not "
	"acknowledged is read again after a restart, or handed out again by its queue.";

enum kr_err cfg_check_retry(struct vctx *v, const struct kr_json *o, const char *jp,
			       const struct kr_retry_cfg *r)
{
	if (r->max_backoff_ms < r->initial_backoff_ms)
		return cfg_verr(v, o, jp, "max_backoff_ms is smaller than initial_backoff_ms");
	return KR_OK;
}

/* The options every sink has (dead_letter is resolved once all sinks are known). */
static enum kr_err load_sink_common(struct vctx *v, struct kr_sink_cfg *s, const struct kr_json *o,
				    const char *jp)
{
	enum kr_err e = kr_opts_fill(&v->src, kr_sink_common_options, o, jp, s);
	if (e)
		return e;
	if (!kr_json_get(o, "concurrency") && s->plugin && s->plugin->default_concurrency)
		s->concurrency = s->plugin->default_concurrency;
	const struct kr_json *r = kr_json_get(o, "retry");
	char p[160];
	snprintf(p, sizeof p, "%s.retry", jp);
	return r ? cfg_check_retry(v, r, p, &s->retry) : KR_OK;
}

/* The plugin's own options into a new struct (owned by the config), then its validate hook. */
static enum kr_err load_plugin_conf(struct vctx *v, const struct kr_option *options,
				    size_t conf_size,
				    enum kr_err (*validate)(const void *, const struct kr_opts_check *),
				    const struct kr_json *o, const char *jp, void **conf)
{
	void *c = calloc(1, conf_size ? conf_size : 1);
	if (!c || !kr_opts_keep(&v->c->mem, c))
		return kr_errf(v->err, KR_ERR_NOMEM, "out of memory");
	enum kr_err e = kr_opts_fill(&v->src, options, o, jp, c);
	struct kr_opts_check chk = {.src = &v->src, .obj = o, .jpath = jp};
	if (!e && validate)
		e = validate(c, &chk);
	*conf = c;
	return e;
}

/* What differs between the "sources" and "sinks" lists. */
struct plugin_list {
	const char *list; /* "$.sinks" */
	const char *what; /* "sink" */
	const char *known[32];
	size_t nknown;
	const struct kr_option *common; /* the options every entry has */
	/* the options of a type (NULL when the type is not available) */
	const struct kr_option *(*options)(const char *type);
	/* stores entry i, already checked */
	enum kr_err (*store)(struct vctx *v, size_t i, const struct kr_json *o, const char *jp,
			     const char *name, const char *type);
};

static enum kr_err load_plugin_list(struct vctx *v, const struct kr_json *arr,
				    const struct plugin_list *pl)
{
	kr_names_free(&v->names);
	if (arr->type != KR_JSON_ARRAY)
		return cfg_verr(v, arr, pl->list, "must be an array");
	for (size_t i = 0; i < arr->n; i++) {
		const struct kr_json *o = arr->items[i];
		char jp[64];
		cfg_jp_index(jp, sizeof jp, pl->list, i, "");
		const struct kr_json *t = kr_json_get(o, "type");
		const struct kr_option *opts =
			t && t->type == KR_JSON_STRING ? pl->options(t->str) : NULL;
		const char *name, *type;
		enum kr_err e = check_plugin_entry(v, o, jp, pl->what, opts, opts != NULL, &name,
						   &type, pl->known, pl->nknown, pl->common);
		if (e)
			return e;
		int added = cfg_nameset_add(&v->names, name);
		if (added < 0)
			return kr_errf(v->err, KR_ERR_NOMEM, "out of memory");
		if (added == 0)
			return cfg_verr(v, kr_json_get(o, "name"), jp, "duplicate %s name \"%s\"", pl->what,
				    name);
		if ((e = pl->store(v, i, o, jp, name, type)))
			return e;
	}
	return KR_OK;
}

static const struct kr_option *sink_options(const char *type)
{
	const struct kr_sink_entry *ent = kr_sink_lookup(type);
	return ent && ent->plugin ? ent->plugin->options : NULL;
}

static const struct kr_option *source_options(const char *type)
{
	const struct kr_source_entry *ent = kr_source_lookup(type);
	return ent && ent->plugin ? ent->plugin->options : NULL;
}

static enum kr_err store_sink(struct vctx *v, size_t i, const struct kr_json *o, const char *jp,
			      const char *name, const char *type)
{
	struct kr_sink_cfg *s = &v->c->sinks[i];
	const struct kr_sink_entry *ent = kr_sink_lookup(type);
	s->name = name;
	s->type = type;
	s->plugin = ent ? ent->plugin : NULL;
	s->obj = o;
	enum kr_err e = load_sink_common(v, s, o, jp);
	if (!e && s->plugin)
		e = load_plugin_conf(v, s->plugin->options, s->plugin->conf_size, s->plugin->validate,
				     o, jp, &s->conf);
	if (!e)
		v->c->nsinks++;
	return e;
}

static enum kr_err store_source(struct vctx *v, size_t i, const struct kr_json *o, const char *jp,
				const char *name, const char *type)
{
	struct kr_source_cfg *s = &v->c->sources[i];
	const struct kr_source_entry *ent = kr_source_lookup(type);
	s->name = name;
	s->type = type;
	s->plugin = ent ? ent->plugin : NULL;
	s->obj = o;
	enum kr_err e = s->plugin ? load_plugin_conf(v, s->plugin->options, s->plugin->conf_size,
						     s->plugin->validate, o, jp, &s->conf)
				  : KR_OK;
	if (!e)
		v->c->nsources++;
	return e;
}

static enum kr_err load_sinks(struct vctx *v, const struct kr_json *arr)
{
	struct plugin_list pl = {.list = "$.sinks", .what = "sink", .common = kr_sink_common_options,
				 .options = sink_options, .store = store_sink};
	for (const struct kr_sink_entry *e = kr_sink_registry; e->type && pl.nknown < 32; e++)
		pl.known[pl.nknown++] = e->type;
	v->c->sinks = calloc((arr->type == KR_JSON_ARRAY ? arr->n : 0) + 1, sizeof *v->c->sinks);
	if (!v->c->sinks)
		return kr_errf(v->err, KR_ERR_NOMEM, "out of memory");
	return load_plugin_list(v, arr, &pl);
}

static enum kr_err load_sources(struct vctx *v, const struct kr_json *arr)
{
	struct plugin_list pl = {.list = "$.sources", .what = "source",
				 .common = kr_source_common_options, .options = source_options,
				 .store = store_source};
	for (const struct kr_source_entry *e = kr_source_registry; e->type && pl.nknown < 32; e++)
		pl.known[pl.nknown++] = e->type;
	v->c->sources = calloc((arr->type == KR_JSON_ARRAY ? arr->n : 0) + 1,
			       sizeof *v->c->sources);
	if (!v->c->sources)
		return kr_errf(v->err, KR_ERR_NOMEM, "out of memory");
	return load_plugin_list(v, arr, &pl);
}

static const char *const doc_sources[] = {"an array of sources, whose types are below", NULL};
static const char *const doc_sinks[] = {"an array of sinks, whose types are below", NULL};
static const char *const doc_rules[] = {"an array of rules, below", NULL};

static const struct kr_option metrics_options[] = {
	{.name = "listen", .type = KR_OPT_STRING, .offset = offsetof(struct kr_metrics_cfg, listen),
	 .required = true,
	 .help = "HOST:PORT to serve Prometheus /metrics, /healthz and /readyz on"},
	{0},
};

static const struct kr_option log_options[] = {
	{.name = "format", .type = KR_OPT_ENUM, .offset = offsetof(struct kr_log_cfg, format),
	 .def = "\"logfmt\"", .values = kr_log_format_names,
	 .help = "one line per event of note on stderr, as logfmt or JSON"},
	{.name = "level", .type = KR_OPT_ENUM, .offset = offsetof(struct kr_log_cfg, level),
	 .def = "\"info\"", .values = kr_log_level_names, .help = "the least level logged"},
	{0},
};

const struct kr_option kr_config_options[] = {
	{.name = "sources", .type = KR_OPT_DOC, .values = doc_sources,
	 .help = "where records come from (run; replay reads the files it is given instead)"},
	{.name = "sinks", .type = KR_OPT_DOC, .values = doc_sinks,
	 .help = "where deliveries go"},
	{.name = "rules", .type = KR_OPT_DOC, .values = doc_rules,
	 .help = "EventBridge event patterns and the targets of the events they match"},
	{.name = "invalid_dead_letter", .type = KR_OPT_SINK,
	 .offset = offsetof(struct kr_config, invalid_dead_letter),
	 .help = "the sink records that cannot be parsed go to, as {\"record\", \"source\", "
		 "\"position\", \"error_message\", ...} (below)"},
	{.name = "unmatched", .type = KR_OPT_SINK, .offset = offsetof(struct kr_config, unmatched),
	 .help = "the sink events no rule matches go to"},
	{.name = "max_in_flight", .type = KR_OPT_INT,
	 .offset = offsetof(struct kr_config, max_in_flight), .def = "10000", .min = 1,
	 .max = 10000000, .help = "records being delivered at once; sources wait beyond it"},
	{.name = "shutdown_grace_seconds", .type = KR_OPT_INT,
	 .offset = offsetof(struct kr_config, shutdown_grace_ms), .def = "30", .max = 3600,
	 .scale = 1000, .help = "how long SIGTERM waits for deliveries in flight"},
	{.name = "metrics", .type = KR_OPT_TABLE, .offset = offsetof(struct kr_config, metrics),
	 .table = metrics_options, .help = "the metrics and health endpoints (none by default)"},
	{.name = "log", .type = KR_OPT_TABLE, .offset = offsetof(struct kr_config, log),
	 .table = log_options, .help = "logging"},
	{0},
};

/* The reference text of the section (config.h). */
const char kr_config_doc[] =
	"Every option of every plugin is checked when the file is loaded, so kmsrouter check "
	"rejects whatever run would (a URL of another scheme, an environment variable that is not "
	"set, a log file in a folder that does not exist); an unknown key is an error with a "
	"did-you-mean. run refuses a configuration without sources; replay reads the files it is "
	"given instead of them. SIGHUP loads the file again: rules and sinks are replaced, "
	"sources keep running as they were started (a change of sources needs a restart, which "
	"the reload says), and an invalid file is reported, counted in "
	"kmsrouter_reloads_total{result=\"failure\"}, and the running configuration stays.\n\n"
	"invalid_dead_letter receives each record that cannot be parsed (unless its source has a "
	"dead letter of its own: the sqs source's dead_letter with on_invalid dead_letter, the "
	"kafka source's dead_letter_topic or dead_letter) as {\"record\", \"record_base64\", "
	"\"record_size\", \"record_truncated\", \"offset\", \"source\", \"position\", "
	"\"error_message\"}, plus \"kmsrouter\" (the message's metadata) from the sqs and kafka "
	"sources. It is always valid JSON: record is the record's text with bytes that are not "
	"UTF-8 replaced by U+FFFD, and then record_base64 holds its exact bytes; a record over "
	"the size limit (256 KiB) keeps its first KiB, record_size is its whole size and "
	"record_truncated true; offset is its first byte in the input (or in the message) and "
	"position INPUT:LINE (a file's path, a queue's URL, a Kafka TOPIC/PARTITION). Without "
	"such a sink the record is counted and logged: a file's or a partition's record is done, "
	"an SQS message goes back to its source (see on_invalid).\n\n"
	"unmatched receives, as a delivery of its own, each event no rule matches. max_in_flight "
	"bounds the records being delivered at once: the sources wait while it is reached. On "
	"SIGTERM or SIGINT the sources stop reading and the deliveries in flight have "
	"shutdown_grace_seconds to finish; what is not done then stays unacknowledged, for the "
	"source to deliver again. metrics.listen serves Prometheus /metrics, /healthz and /readyz "
	"(which answers 503 while the router starts or drains).";

/* Sinks' dead letters and the top-level settings of the engine. */
static enum kr_err load_engine_settings(struct vctx *v, const struct kr_json *d)
{
	struct kr_config *c = v->c;
	enum kr_err e = KR_OK;
	char p[160];
	const struct kr_json *j;
	v->sinks_loaded = true;
	for (size_t i = 0; i < c->nsinks && !e; i++)
		if ((j = kr_json_get(c->sinks[i].obj, "dead_letter"))) {
			cfg_jp_index(p, sizeof p, "$.sinks", i, ".dead_letter");
			e = cfg_sink_ref(v, j, p, &c->sinks[i].dead_letter);
		}
	if (!e)
		e = kr_opts_fill(&v->src, kr_config_options, d, "$", c);
	if (!e && c->metrics.listen && !strchr(c->metrics.listen, ':'))
		e = cfg_verr(v, kr_json_get(kr_json_get(d, "metrics"), "listen"), "$.metrics.listen",
			 "must be \"HOST:PORT\" such as \"127.0.0.1:9464\"");
	return e;
}

/* Parses text (NUL-terminated at len), taking ownership of it: it stays as the config's text. */
static void vctx_fini(struct vctx *v)
{
	kr_names_free(&v->names);
	kr_names_free(&v->rnames);
	free(v->sr);
	free(v->tnames);
}

/* Loads the configuration in text (taken over). With stream, rules are compiled while the text is
 * parsed (cfg_stream_rule); when one of them needs the usual way, *again is set and nothing is
 * loaded: the caller loads again without stream (text is then still the caller's). */
static enum kr_err parse_owned_as(const char *name, char *text, size_t len,
				  struct kr_config **out, char *err, bool stream, bool offline,
				  bool *again)
{
	*out = NULL;
	struct kr_config *c = calloc(1, sizeof *c);
	if (!c) {
		free(text);
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	}
	c->text = text;
	c->path = strdup(name);
	c->dir = strdup(name);
	if (!c->path || !c->dir) {
		kr_config_free(c);
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	}
	char *slash = strrchr(c->dir, '/');
	if (slash)
		slash[slash == c->dir ? 1 : 0] = 0;
	else
		strcpy(c->dir, ".");
	c->len = len;
	struct vctx v = {.c = c, .err = err};
	v.src = (struct kr_opts_src){.file = c->path, .text = c->text, .len = len,
				     .base_dir = c->dir, .mem = &c->mem, .sink_ref = sink_ref_cb,
				     .sink_ctx = &v, .err = err, .offline = offline};
	kr_opts_names(kr_rule_options, v.rule_keys, 4);
	struct kr_json_opts jo = {.allow_comments = true, .max_depth = 128};
	if (stream) {
		if (kr_rules_new(&c->compiled) != KR_OK) {
			c->text = NULL;
			kr_config_free(c);
			*again = true;
			return KR_OK;
		}
		jo.element_key = "rules";
		jo.element = cfg_stream_rule;
		jo.element_ctx = &v;
	}
	size_t off = 0;
	char jerr[KR_ERRBUF];
	enum kr_err e = kr_json_parse(c->text, len, &jo, &c->doc, &off, jerr);
	if (v.stream_off)
		goto load_again;
	if (e) {
		struct kr_json at = {.offset = off};
		cfg_verr(&v, &at, "$", "%s", jerr);
		vctx_fini(&v);
		kr_config_free(c);
		return e == KR_ERR_NOMEM ? e : KR_ERR_CONFIG;
	}
	const struct kr_json *d = c->doc;
	if (d->type != KR_JSON_OBJECT)
		e = cfg_verr(&v, d, "$", "the configuration must be a JSON object");
	const char *top_keys[32];
	size_t ntop = kr_opts_names(kr_config_options, top_keys, 32);
	if (!e)
		e = cfg_check_keys(&v, d, "$", top_keys, ntop, "the configuration");
	if (!e && !c->compiled && kr_rules_new(&c->compiled) != KR_OK)
		e = kr_errf(err, KR_ERR_NOMEM, "out of memory");
	const struct kr_json *j;
	/* sinks first: a source's options may name one (its dead_letter) */
	if (!e && (j = kr_json_get(d, "sinks")))
		e = load_sinks(&v, j);
	v.sinks_loaded = true;
	if (!e && (j = kr_json_get(d, "sources")))
		e = load_sources(&v, j);
	if (!e)
		e = load_engine_settings(&v, d);
	if (!e && v.nsr) {
		e = cfg_load_streamed_rules(&v);
		if (v.stream_off)
			goto load_again;
	} else if (!e && (j = kr_json_get(d, "rules"))) {
		e = cfg_load_rules(&v, j);
	}
	if (!e && kr_rules_build(c->compiled) != KR_OK)
		e = kr_errf(err, KR_ERR_NOMEM, "out of memory");
	vctx_fini(&v);
	if (e) {
		kr_config_free(c);
		return e;
	}
	*out = c;
	return KR_OK;
load_again:
	vctx_fini(&v);
	c->text = NULL; /* the caller's again */
	kr_config_free(c);
	*again = true;
	return KR_OK;
}

static enum kr_err parse_owned(const char *name, char *text, size_t len, struct kr_config **out,
			       char *err, bool offline)
{
	bool again = false;
	enum kr_err e = parse_owned_as(name, text, len, out, err, true, offline, &again);
	if (!again)
		return e;
	return parse_owned_as(name, text, len, out, err, false, offline, &again);
}

enum kr_err kr_read_file(const char *path, char **out, size_t *len, char *err)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	if (!f)
		return kr_errf(err, KR_ERR_IO, "%s: %s", path, strerror(errno));
	/* a regular file is read into a buffer of its size at once (a 10,000-rule file is 1.6 MB:
	   no doubling and copying on the way) */
	size_t cap = 4096, n = 0;
	struct stat st;
	if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
	    (uint64_t)st.st_size < SIZE_MAX / 2)
		cap = (size_t)st.st_size + 2;
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

static enum kr_err load(const char *path, bool offline, struct kr_config **out, char *err)
{
	char *text;
	size_t len;
	enum kr_err e = kr_read_file(path, &text, &len, err);
	if (e)
		return e;
	return parse_owned(path, text, len, out, err, offline);
}

enum kr_err kr_config_load(const char *path, struct kr_config **out, char *err)
{
	return load(path, false, out, err);
}

enum kr_err kr_config_load_offline(const char *path, struct kr_config **out, char *err)
{
	return load(path, true, out, err);
}

enum kr_err kr_config_parse(const char *name, const char *text, size_t len,
			    struct kr_config **out, char *err)
{
	char *copy = malloc(len + 1);
	if (!copy) {
		*out = NULL;
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	}
	memcpy(copy, text, len);
	copy[len] = 0;
	return parse_owned(name, copy, len, out, err, false);
}

void kr_config_free(struct kr_config *c)
{
	if (!c)
		return;
	free(c->rules); /* with the targets of all rules (cfg_load_rules) */
	free(c->sinks);
	free(c->sources);
	kr_rules_free(c->compiled);
	kr_json_free(c->doc);
	free(c->text);
	free(c->pool);
	free(c->path);
	free(c->dir);
	kr_opts_mem_free(&c->mem);
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

bool kr_json_same_text(const struct kr_json *a, const struct kr_json *b)
{
	if (!a || !b)
		return a == b;
	struct kr_buf x = {0}, y = {0};
	bool same = kr_json_write(&x, a) && kr_json_write(&y, b) && x.len == y.len &&
		    memcmp(x.p, y.p, x.len) == 0;
	kr_buf_free(&x);
	kr_buf_free(&y);
	return same;
}

char *kr_resolve_path(const char *base_dir, const char *p)
{
	if (p[0] == '/' || strcmp(p, "-") == 0 || !base_dir || strcmp(base_dir, ".") == 0)
		return strdup(p);
	size_t n = strlen(base_dir) + strlen(p) + 2;
	char *r = malloc(n);
	if (r)
		snprintf(r, n, "%s/%s", base_dir, p);
	return r;
}

