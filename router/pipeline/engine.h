/* kr_engine: the pipeline. Records come from sources, are matched against the rules, and become
 * deliveries to sinks; the engine tracks every delivery (retries with back-off, dead letters) and
 * acknowledges a record to its source only when all its deliveries succeeded or were
 * dead-lettered. Ordered sources are told the contiguous done prefix of their records.
 *
 * The engine owns the sources, the current configuration generation (rules + sinks) and the
 * generations being retired after a reload (their in-flight deliveries finish on their own
 * sinks). It runs on one kr_loop; nothing here is thread-safe except the metrics, which another
 * thread may read. */
#ifndef KR_ENGINE_H
#define KR_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "err.h"
#include "loop.h"
#include "stream.h"

struct kr_engine;
struct kr_source_handle;
struct kr_metrics;

struct kr_engine_opts {
	/* replay: only events with from_ms <= time < to_ms (0: unbounded); others are done at
	   once. replay_name is added to every event. rate: events per second (0: unlimited). */
	uint64_t from_ms, to_ms;
	const char *replay_name;
	uint64_t rate;
};

/* Builds an engine for cfg on loop and starts the config's sinks; sources come next, with
 * kr_engine_start_sources (run) or kr_engine_add_source (replay). On success the engine owns
 * cfg; on failure the caller still does. metrics must outlive the engine. */
enum kr_err kr_engine_new(struct kr_loop *loop, struct kr_config *cfg,
			  const struct kr_engine_opts *opts, struct kr_metrics *metrics,
			  struct kr_engine **out, char *err);
void kr_engine_free(struct kr_engine *e);

/* Starts the configuration's own sources (run). */
enum kr_err kr_engine_start_sources(struct kr_engine *e, char *err);

/* Adds a source of a given plugin with its config object and its filled options struct, which
 * must outlive the engine (replay adds a file source). */
enum kr_err kr_engine_add_source(struct kr_engine *e, const char *name,
				 const struct kr_source_plugin *plugin, const struct kr_json *obj,
				 const void *conf, char *err);

/* Swaps in a new configuration (rules and sinks; the sources stay). On failure nothing changes
 * and err says why. Takes ownership of cfg on success only. */
enum kr_err kr_engine_reload(struct kr_engine *e, struct kr_config *cfg, char *err);

/* The configuration in use (the last one reloaded). */
const struct kr_config *kr_engine_config(const struct kr_engine *e);

/* Reopens files of the current sinks (SIGHUP when the reload failed). */
void kr_engine_reopen(struct kr_engine *e);

/* One round of work: pulls sources while below the in-flight limit, flushes sinks, acks.
 * Returns the milliseconds the loop may sleep (0: more work is ready now). */
int kr_engine_step(struct kr_engine *e);

/* Stops reading sources (SIGTERM); in-flight deliveries go on. */
void kr_engine_stop_reading(struct kr_engine *e);

/* True when every source is done (or stopped) and nothing is in flight. */
bool kr_engine_idle(const struct kr_engine *e);

/* Totals for the exit status and summaries. Each word counts one thing:
 *   records       records read and handled in this run: events + invalid (not skipped)
 *   events        events found (matched + unmatched + filtered)
 *   invalid       records that could not be parsed
 *   skipped       records done in an earlier run (checkpoint), not handled again
 *   filtered      events outside replay's time range
 *   matched       events some rule matched; unmatched: events no rule matched
 *   delivered     deliveries that succeeded (to rule targets and the unmatched sink)
 *   dead_lettered deliveries that failed and were written to their dead-letter sink
 *   invalid_dead_lettered  invalid records written to the invalid dead letter
 *   failed_records records with a delivery that neither succeeded nor was dead-lettered
 *   in_flight     records still being delivered
 *   unacked       records not acknowledged to their source (failed, in flight, or behind
 *                 one of those in an ordered input)
 *   source_errors inputs a source could not read */
struct kr_engine_totals {
	uint64_t records, events, invalid, skipped, filtered, matched, unmatched, delivered,
		dead_lettered, invalid_dead_lettered, failed_records, in_flight, unacked,
		source_errors;
	uint64_t sources_busy; /* sources with acknowledgement work (deletes, commits) not done */
};
void kr_engine_totals(const struct kr_engine *e, struct kr_engine_totals *t);

/* An RFC 3339 time (2024-03-01T12:00:00Z, fractions and offsets allowed) in milliseconds since
 * the epoch, or -1. The engine filters replays with it; replay parses --from/--to with it. */
int64_t kr_parse_rfc3339_ms(const char *s);

/* Bytes read and bytes in all, over the sources that know (0, 0 when none does). */
void kr_engine_progress(const struct kr_engine *e, uint64_t *done, uint64_t *total);

/* Whether the engine wants more records now (below the in-flight limit, not stopping). */
bool kr_engine_wants(const struct kr_engine *e);

#endif
