/* kr_config: the configuration file, validated and with its rules compiled.
 *
 * The file is JSON with comments allowed. Every error names FILE:LINE:COL and the JSON path of the
 * offending value ($.rules[2].pattern.detail), and unknown keys are errors with a did-you-mean.
 * Source and sink options are checked against their plugin's option table. Types that this build
 * recognises but does not have are kept (kr_config_unavailable lists them) so that offline commands
 * work on a production config while `check` reports them. A kr_config owns everything it points
 * to; free it with kr_config_free. */
#ifndef KR_CONFIG_H
#define KR_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "json.h"
#include "options.h"
#include "plugin.h"
#include "rules.h"

/* Retry policy, as EventBridge's RetryPolicy plus the back-off bounds. */
struct kr_retry_cfg {
	uint64_t max_attempts;      /* attempts in all, >= 1 */
	uint64_t max_age_ms;        /* give up once the event is this old */
	uint64_t initial_backoff_ms;
	uint64_t max_backoff_ms;
};

struct kr_sink_cfg {
	const char *name;
	const char *type;
	const struct kr_sink_plugin *plugin; /* NULL: not available in this build */
	const struct kr_json *obj;
	void *conf;            /* the plugin's options struct (NULL: type not available) */
	struct kr_retry_cfg retry;
	int32_t dead_letter;   /* sink index, or -1 */
	uint64_t concurrency;  /* deliveries in flight at once */
	uint64_t timeout_ms;   /* per request, for sinks that make requests */
};

/* One target of a rule, with the sink's settings resolved under the rule's overrides. */
struct kr_target_cfg {
	uint32_t sink;
	struct kr_retry_cfg retry;
	int32_t dead_letter;
	const struct kr_json *input_path;        /* string, or NULL */
	const struct kr_json *input_transformer; /* {"input_paths": {...}, "input_template": "..."} */
};

struct kr_source_cfg {
	const char *name;
	const char *type;
	const struct kr_source_plugin *plugin;
	const struct kr_json *obj;
	void *conf; /* the plugin's options struct (NULL: type not available) */
};

struct kr_rule_cfg {
	const char *name;
	uint32_t *targets; /* sink of each target entry, in the order written */
	struct kr_target_cfg *tcfg; /* the same entries with their settings */
	size_t ntargets;
	/* entries identical to an earlier one of the rule (same sink, transformation, retry and
	   dead letter): merged into it, since they would deliver the same thing twice */
	size_t nmerged;
};

struct kr_config {
	char *path;
	char *dir; /* the folder of path: relative paths inside resolve against it */
	char *text;
	size_t len;
	char *pool; /* rule and target names taken while the text was parsed (no tree kept) */
	size_t pool_len;
	struct kr_json *doc;
	struct kr_sink_cfg *sinks;
	size_t nsinks;
	struct kr_source_cfg *sources;
	size_t nsources;
	struct kr_rule_cfg *rules;
	size_t nrules;
	size_t rules_cap; /* entries allocated (a failed load may have filled more than nrules) */
	struct kr_rules *compiled; /* rule i of the config is rule id i */
	int32_t invalid_dead_letter;  /* sink index for records that cannot be parsed, or -1 */
	int32_t unmatched;            /* sink index for events no rule matches, or -1 */
	struct kr_metrics_cfg {
		const char *listen;   /* "host:port", or NULL */
	} metrics;
	struct kr_log_cfg {
		int format, level;    /* indexes in kr_log_format_names, kr_log_level_names */
	} log;
	uint64_t max_in_flight;       /* records being delivered at once */
	uint64_t shutdown_grace_ms;
	struct kr_opts_mem mem;       /* what filling the option structs allocated */
};

/* The option tables of the configuration's own keys (the plugins have theirs), from which
 * loading, defaults and `kmsrouter help config` come. */
extern const struct kr_option kr_config_options[];      /* the top level */
extern const struct kr_option kr_rule_options[];        /* an entry of "rules" */
extern const struct kr_option kr_target_options[];      /* a target given as an object */
extern const struct kr_option kr_sink_common_options[]; /* every sink, besides its own */
extern const struct kr_option kr_source_common_options[]; /* every source */
/* The reference text of the same sections, printed after their options: paragraphs of plain
 * text separated by "\n\n", as a plugin's doc (plugin.h). */
extern const char kr_config_doc[];
extern const char kr_rule_doc[];
extern const char kr_target_doc[];
extern const char kr_sink_common_doc[];
extern const char kr_source_common_doc[];

/* Loads and validates a config file. On error returns non-KR_OK with "FILE:LINE:COL: $.path:
 * message" in err. On success *out is new; free with kr_config_free. Checks what this machine
 * must provide for it too (the environment variables of secrets, the folders of log files):
 * what run and check load. */
enum kr_err kr_config_load(const char *path, struct kr_config **out, char *err);
/* The same without looking at this machine (match: a production config on a laptop). */
enum kr_err kr_config_load_offline(const char *path, struct kr_config **out, char *err);

/* The same from text in memory; name is used in messages. Copies text. */
enum kr_err kr_config_parse(const char *name, const char *text, size_t len,
			    struct kr_config **out, char *err);

void kr_config_free(struct kr_config *c);

/* Whether two JSON values (NULL: absent) have the same compact text: what makes two target
 * entries identical, or a reload's sources the same. */
bool kr_json_same_text(const struct kr_json *a, const struct kr_json *b);

/* Fills err with a message listing the sources and sinks whose type is not available in this
 * build; returns their number. */
size_t kr_config_unavailable(const struct kr_config *c, char *err);


#endif
