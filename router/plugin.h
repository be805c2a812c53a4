/* Plugin seams: sources and sinks are one file each, ending in one const struct with designated
 * initializers. The option table is declarative; config validation, defaults and --help come from
 * it. router/registry.c is the only place that names concrete plugins.
 *
 * The runtime callbacks (start, submit, pull, ack, drain, destroy) arrive with the pipeline; in this
 * build a plugin declares its name, description and options, which is what config validation and
 * the offline commands need. */
#ifndef KR_PLUGIN_H
#define KR_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>

enum kr_opt_type {
	KR_OPT_STRING,
	KR_OPT_BOOL,
	KR_OPT_INT,      /* a non-negative integer */
	KR_OPT_STRINGS,  /* an array of strings, or one string */
	KR_OPT_OBJECT    /* a JSON object of string values (e.g. headers) */
};

struct kr_option {
	const char *name;
	enum kr_opt_type type;
	const char *def;   /* default as JSON text, NULL: none */
	bool required;
	const char *help;
};

struct kr_sink_plugin {
	const char *name;
	const char *description;
	const struct kr_option *options; /* terminated by an entry with name NULL */
};

struct kr_source_plugin {
	const char *name;
	const char *description;
	const struct kr_option *options;
};

/* A registry entry: a type name users may write, and its plugin when this build has it. */
struct kr_sink_entry {
	const char *type;
	const struct kr_sink_plugin *plugin; /* NULL: recognised, not available in this build */
};

struct kr_source_entry {
	const char *type;
	const struct kr_source_plugin *plugin;
};

extern const struct kr_sink_entry kr_sink_registry[];
extern const struct kr_source_entry kr_source_registry[];

const struct kr_sink_entry *kr_sink_lookup(const char *type);
const struct kr_source_entry *kr_source_lookup(const char *type);

#endif
