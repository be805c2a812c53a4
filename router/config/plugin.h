/* Plugin seams: sources and sinks are one file each, ending in one const struct with designated
 * initializers. The option table is declarative: config validation, defaults and --help come from
 * it. router/registry.c is the only place that names concrete plugins.
 *
 * Threading: every callback runs on the loop thread and must not block (a local file write is
 * fine; network I/O goes through curl multi or the loop's fd watches).
 *
 * Ownership: the engine owns deliveries and their payloads; a sink borrows a delivery from submit
 * until it calls kr_delivery_done (once, possibly from inside submit). A source hands events to
 * the engine through inputs (kr_input_open, below), which copy what they keep. */
#ifndef KR_PLUGIN_H
#define KR_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct kr_json;
struct kr_loop;
struct kr_ack;
struct kr_source_handle;
struct kr_reject;

/* Option types, and the C type each fills at its offset. */
enum kr_opt_type {
	KR_OPT_STRING,     /* const char *: a string */
	KR_OPT_BOOL,       /* bool: true or false */
	KR_OPT_INT,        /* uint64_t: an integer in [min, max], times scale when scale > 1 */
	KR_OPT_DURATION,   /* uint64_t ms: an integer of milliseconds, or "250ms", "10s", "5m",
			      "2h", in [min, max] ms */
	KR_OPT_SIZE,       /* uint64_t bytes: an integer, or "64KiB", "1MiB", "1GiB", "10kB" (SI),
			      in [min, max] */
	KR_OPT_ENUM,       /* int: the index in values of the string given */
	KR_OPT_URL,        /* const char *: a URL whose scheme is one of values */
	KR_OPT_PATH,       /* const char *: a file path, resolved against the config's folder
			      ("-" stays "-") */
	KR_OPT_STRINGS,    /* struct kr_strings: an array of strings, or one string */
	KR_OPT_PATHS,      /* struct kr_strings: the same, each a path resolved as KR_OPT_PATH */
	KR_OPT_MAP,        /* struct kr_strmap: an object of string values */
	KR_OPT_TABLE,      /* a nested object, filled by table at offset */
	KR_OPT_SECRET_ENV, /* struct kr_secret: the name of an environment variable that must be
			      set; its value is a secret, never logged */
	KR_OPT_SINK,       /* int32_t: a sink of the configuration, by name (-1: none) */
	KR_OPT_DOC         /* not filled: an entry of the reference for a value that has its own
			      loader (a rule's pattern, its targets); values says what it is */
};

struct kr_strings {
	const char *const *v;
	size_t n;
};

struct kr_strmap {
	const char *const *keys;
	const char *const *values;
	size_t n;
};

struct kr_secret {
	const char *env;   /* the variable's name, NULL when the option is not set */
	const char *value; /* its value (getenv): never log it; NULL in an offline load */
};

struct kr_option {
	const char *name;
	enum kr_opt_type type;
	size_t offset;     /* where the value goes in the struct being filled */
	const char *def;   /* the default as JSON text ("\"POST\"", "250", "false"); NULL: none */
	bool required;
	const char *help;  /* one line */
	uint64_t min, max; /* INT, DURATION, SIZE bounds (max 0: none) */
	uint64_t scale;    /* INT: stored as value * scale (seconds given, ms kept) */
	const char *const *values;     /* ENUM: the values; URL: the schemes; NULL-terminated */
	const struct kr_option *table; /* TABLE: its options */
};

/* A plugin's check of what its table cannot say (options that go together, a value that
 * depends on another): report with kr_opts_reject, which places the error at the named option
 * (or at the plugin's object when that option is not set) as FILE:LINE:COL: $.path: message. */
struct kr_opts_check;
/* Whether the config is loaded for another machine (match): leave out checks of this one (files,
 * folders); secrets then have no value. */
bool kr_opts_offline(const struct kr_opts_check *c);
enum kr_err kr_opts_reject(const struct kr_opts_check *c, const char *option, const char *fmt,
			   ...) __attribute__((format(printf, 3, 4)));

/* ---- sinks ---- */

struct kr_delivery {
	const char *payload;  /* the bytes to deliver (JSON), owned by the engine */
	size_t len;
	const char *event;    /* the event the delivery is for, as received, before any
				 transformer (for sinks that add metadata from it: kr_event_text_of);
				 NULL for the dead letter of an invalid record */
	size_t event_len;
	const char *rule;     /* rule name, or a marker for dead letters / unmatched / invalid */
	const char *sink;     /* the sink instance's name */
	uint64_t received_ms; /* wall clock, when the record entered */
	uint32_t attempt;     /* 1 for the first */
	void *sink_data;      /* the sink's own while the delivery is with it (NULL at submit) */
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
	const void *conf;     /* the plugin's options struct, filled and validated (conf_size) */
	uint64_t timeout_ms;  /* the sink's timeout_ms (an option every sink has) */
	uint64_t concurrency; /* the sink's concurrency: for a sink that batches, batches in flight */
	struct kr_loop *loop;
};

struct kr_sink_plugin {
	const char *name;
	const char *description; /* one line, after the type in `kmsrouter help config` */
	/* how the plugin behaves (delivery, batching, ordering, failures, IAM permissions...):
	   paragraphs of plain text separated by "\n\n", no markup, printed after the options by
	   `kmsrouter help config` and in kmsrouter.conf(5) */
	const char *doc;
	const struct kr_option *options; /* terminated by an entry with name NULL */
	size_t conf_size; /* the struct the options fill (offsets in options) */
	/* optional: checks what the table cannot say, with kr_opts_reject; run by config loading,
	   so that `check` rejects what `run` would */
	enum kr_err (*validate)(const void *conf, const struct kr_opts_check *c);
	/* deliveries in flight at once unless the config says ("concurrency"); 0: 16 */
	uint32_t default_concurrency;
	/* the sink batches (kr_batcher, batch.h): the engine gives it every delivery at once, and
	   "concurrency" is the number of its batches in flight */
	bool batches;
	/* mandatory: builds the instance from the filled, validated options; err says why not (only
	   what cannot be known from the config: a folder that does not exist, no memory) */
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
	const void *conf;          /* the plugin's options struct, filled and validated */
	const struct kr_json *obj; /* the source's config object (for keys that are not options) */
	struct kr_loop *loop;
	struct kr_source_handle *handle; /* pass to kr_input_open and the other kr_source_ calls */
};

enum kr_pull { KR_PULL_MORE, KR_PULL_WAIT, KR_PULL_DONE };

struct kr_source_plugin {
	const char *name;
	const char *description; /* one line, as a sink's */
	const char *doc;         /* paragraphs, as a sink's */
	const struct kr_option *options;
	size_t conf_size;
	enum kr_err (*validate)(const void *conf, const struct kr_opts_check *c);
	/* mandatory */
	enum kr_err (*create)(const struct kr_source_args *a, void **ctx, char *err);
	/* mandatory: reads a bounded amount and hands events to the engine. MORE: call again soon;
	   WAIT: nothing to read now; the source's own fd watch or timer wakes the loop, and the
	   engine pulls again on its next round; DONE: input exhausted */
	enum kr_pull (*pull)(void *ctx);
	/* mandatory: records are done (delivered everywhere or dead-lettered); see struct kr_ack.
	   Called at the end of an engine round, never from inside this source's pull. */
	void (*ack)(void *ctx, const struct kr_ack *a);
	/* optional: how far behind the source is, in bytes (metrics), or -1 */
	int64_t (*lag)(void *ctx);
	/* optional: the age in ms of the oldest record the source holds (a queue's lag: metrics),
	   or -1 */
	int64_t (*lag_ms)(void *ctx);
	/* optional: bytes read so far and bytes in all (replay's progress and ETA) */
	void (*progress)(void *ctx, uint64_t *done, uint64_t *total);
	/* optional: the run stops (a signal). Called once; pull is not called after it, acks
	   still are. Hand back at once what was read and not given to the engine (an SQS
	   message's visibility, a Kafka partition's assignment). */
	void (*stop)(void *ctx);
	/* optional: whether the source still has work of its own on acknowledgements (deletes,
	   commits) in flight; a stopping run waits for it, within its grace period */
	bool (*busy)(void *ctx);
	/* optional: takes a record of one of its inputs that cannot be parsed, in place of the
	   engine's dead letter (a Kafka source's dead-letter topic); false leaves it to the
	   engine. Called from inside the source's pull (while its stream parses); the record
	   stays in flight until the source calls kr_reject_done with r->done. */
	bool (*reject)(void *ctx, const struct kr_reject *r);
	/* mandatory */
	void (*destroy)(void *ctx);
};

/* A record that cannot be parsed, offered to its source (kr_source_plugin.reject). */
struct kr_rejected;
struct kr_reject {
	uint64_t input;      /* the input's id (kr_input_opts.id) */
	const char *raw;     /* its bytes (maybe not UTF-8); valid during the call */
	size_t raw_len;
	uint64_t size;       /* its size in the input; more than raw_len when only a prefix of
				an oversized record was kept */
	uint64_t offset;     /* its offset in the framed record (or the input) */
	const char *error;   /* what is wrong */
	struct kr_rejected *done; /* for kr_reject_done */
};

/* The source is done with a rejected record: ok when it is taken care of (written to the
 * source's dead-letter place): the record is then acknowledged like a delivered one; else it is
 * failed (an ordered input's acknowledgements stop before it; an unordered one's source gets it
 * back as failed). Also during the engine's shutdown (the source's destroy). */
void kr_reject_done(struct kr_rejected *r, bool ok);

/* Inputs: a source reads records through inputs (a file, a Kafka partition, an SQS queue), each
 * with its own parser stream and acknowledgements. An ordered input (a file, a partition) is
 * acknowledged by its contiguous done prefix: a failed record holds back the ones after it. An
 * unordered one (a queue) record by record, by the token the source gave the record. */
struct kr_stream;
struct kr_input;

struct kr_input_opts {
	const char *name; /* for messages and dead letters: a path, "topic/3", a queue's URL */
	uint64_t id;      /* the source's own id of the input, handed back in its acks */
	bool unordered;
	uint64_t skip;    /* records numbered by the engine: those up to skip are done already (a
			     checkpoint); they are counted and acknowledged, not delivered */
	const char *dead_letter; /* a sink of the configuration, by name, for this input's records
				    that cannot be parsed and its deliveries that fail with no
				    dead letter of their own; NULL: the configuration's */
};

/* Opens an input; NULL when out of memory. Its bytes go to the parser stream of
 * kr_input_stream (through kr_stream_feed or a kr_reader). */
struct kr_input *kr_input_open(struct kr_source_handle *h, const struct kr_input_opts *o);
struct kr_stream *kr_input_stream(struct kr_input *in);

/* Framed records (a Kafka message, an SQS message): the bytes fed between begin and end are one
 * record, done when every event in it is. position (ordered inputs: increasing) and token
 * (unordered: the source's, e.g. a receipt handle it owns) are handed back in its ack. Without
 * framing, each event or invalid record the stream finds is a record, numbered from 1. */
enum kr_err kr_input_record_begin(struct kr_input *in, uint64_t position, void *token);
void kr_input_record_end(struct kr_input *in);

/* What the source knows about the framed record being read (after kr_input_record_begin), as
 * a JSON object (copied), e.g. {"sqs": {"MessageId": "...", "ApproximateReceiveCount": 2}}.
 * Rules see it under the top-level key "kmsrouter" of each event of the record (which an
 * EventBridge event never has), and its dead letters carry it as "kmsrouter". */
enum kr_err kr_input_record_meta(struct kr_input *in, const char *json, size_t len);

/* How many records the input is behind its end (a Kafka partition's high watermark minus its
 * next offset to commit), for the metrics (kmsrouter_source_input_lag); -1: unknown. */
void kr_input_set_lag(struct kr_input *in, int64_t records);

/* The source is done with the input: at the end of a file, or when a Kafka partition is
 * revoked. End its stream first (kr_reader_finish or kr_stream_finish). Its records in flight
 * finish; the source then gets a last ack with final set, saying what it may still commit, and
 * the engine frees the input. The source must not use in after this call. */
void kr_input_close(struct kr_input *in);

struct kr_ack {
	uint64_t id;       /* the input's (kr_input_opts.id) */
	uint64_t position; /* ordered: every record up to and including this one is done */
	void *token;       /* unordered: this record is done (position is 0); NULL otherwise */
	bool final;        /* the input was closed and nothing of it is in flight any more */
	bool failed;       /* unordered: the record is done but was not delivered (a delivery
			      failed with no dead letter, or it could not be parsed and had
			      none); the source decides what becomes of it (an SQS message is
			      made visible again later) */
};

/* The configured limit of records in flight (a source may size its checkpoints by it). */
uint64_t kr_source_in_flight_limit(const struct kr_source_handle *h);
/* The run is stopping (a signal; the plugin's stop was called): read nothing more, and finish
 * the work on acknowledgements (busy). */
bool kr_source_stopping(const struct kr_source_handle *h);
/* A source could not read an input (logged by the source): the run does not end well. */
void kr_source_error(struct kr_source_handle *h);

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
/* The source `kmsrouter replay` reads its files with (options "paths", "checkpoint"). */
const struct kr_source_plugin *kr_replay_source(void);

/* Reads a whole file ("-": stdin) into a new NUL-terminated buffer; free with free(). */
enum kr_err kr_read_file(const char *path, char **out, size_t *len, char *err);

/* A new string: p if absolute (or "-"), else base_dir/p. Free with free(). */
char *kr_resolve_path(const char *base_dir, const char *p);

#endif
