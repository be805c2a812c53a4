/* Plugin seams: sources and sinks are one file each, ending in one const struct with designated
 * initializers. The option table is declarative: config validation, defaults and --help come from
 * it. router/registry.c is the only place that names concrete plugins.
 *
 * Threading: every callback runs on the loop thread and must not block (a local file write is
 * fine; network I/O goes through curl multi or the loop's fd watches).
 *
 * Ownership: the engine owns deliveries and their payloads; a sink borrows a delivery from submit
 * until it calls kr_delivery_done (once, possibly from inside submit). A source hands events to
 * the engine with kr_engine_event / kr_engine_invalid, which copy what they keep. */
#ifndef KR_PLUGIN_H
#define KR_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct kr_json;
struct kr_loop;
struct kr_engine;
struct kr_source_handle;

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
	const char *def;   /* default as text shown by --help, NULL: none */
	bool required;
	const char *help;
};

/* ---- sinks ---- */

struct kr_delivery {
	const char *payload;  /* the bytes to deliver (JSON), owned by the engine */
	size_t len;
	const char *rule;     /* rule name, or a marker for dead letters / unmatched / invalid */
	const char *sink;     /* the sink instance's name */
	uint64_t received_ms; /* wall clock, when the record entered */
	uint32_t attempt;     /* 1 for the first */
};

enum kr_outcome {
	KR_DELIVERED,
	KR_RETRYABLE, /* try again later, not before not_before_ms (0: policy decides) */
	KR_PERMANENT  /* do not retry: dead-letter now */
};

/* Completes a delivery. error_code and error_message (copied) describe a failure. */
void kr_delivery_done(struct kr_delivery *d, enum kr_outcome o, uint64_t not_before_ms,
		      const char *error_code, const char *error_message);

struct kr_sink_args {
	const char *name;
	const char *base_dir; /* relative paths in options are relative to the config's folder */
	const struct kr_json *obj; /* the sink's config object, validated against the options */
	struct kr_loop *loop;
};

struct kr_sink_plugin {
	const char *name;
	const char *description;
	const struct kr_option *options; /* terminated by an entry with name NULL */
	/* deliveries in flight at once unless the config says ("concurrency"); 0: 16. A sink that
	   batches (writes on flush) takes as many as the engine gives. */
	uint32_t default_concurrency;
	/* mandatory: builds the instance from validated options; err says why not */
	enum kr_err (*create)(const struct kr_sink_args *a, void **ctx, char *err);
	/* mandatory: takes a delivery; completes it now or later with kr_delivery_done */
	void (*submit)(void *ctx, struct kr_delivery *d);
	/* optional: the engine finished a batch; write out what was buffered */
	void (*flush)(void *ctx);
	/* optional: reopen files (SIGHUP, logrotate) */
	void (*reopen)(void *ctx);
	/* mandatory: frees the instance; every delivery has been completed before */
	void (*destroy)(void *ctx);
};

/* ---- sources ---- */

struct kr_source_args {
	const char *name;
	const char *base_dir;
	const struct kr_json *obj;
	struct kr_loop *loop;
	struct kr_engine *engine;
	struct kr_source_handle *handle; /* pass to kr_engine_event / kr_engine_invalid */
};

enum kr_pull { KR_PULL_MORE, KR_PULL_WAIT, KR_PULL_DONE };

struct kr_source_plugin {
	const char *name;
	const char *description;
	const struct kr_option *options;
	/* mandatory */
	enum kr_err (*create)(const struct kr_source_args *a, void **ctx, char *err);
	/* mandatory: reads a bounded amount and hands events to the engine. MORE: call again soon;
	   WAIT: nothing to read now; the source's own fd watch or timer wakes the loop, and the
	   engine pulls again on its next round; DONE: input exhausted */
	enum kr_pull (*pull)(void *ctx);
	/* mandatory: records up to and including position (the source's own numbering) are done */
	void (*ack)(void *ctx, uint32_t input, uint64_t position);
	/* optional: how far behind the source is, in bytes (metrics), or -1 */
	int64_t (*lag)(void *ctx);
	/* optional: bytes read so far and bytes in all (replay's progress and ETA) */
	void (*progress)(void *ctx, uint64_t *done, uint64_t *total);
	/* mandatory */
	void (*destroy)(void *ctx);
};

/* ---- registry ---- */

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

/* Option helpers for plugins: the value in the config object, or the default. */
const char *kr_opt_string(const struct kr_json *obj, const char *name, const char *def);
bool kr_opt_bool(const struct kr_json *obj, const char *name, bool def);
uint64_t kr_opt_int(const struct kr_json *obj, const char *name, uint64_t def);
/* A new string: p if absolute (or "-"), else base_dir/p. Free with free(). */
char *kr_resolve_path(const char *base_dir, const char *p);

#endif
