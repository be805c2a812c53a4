/* kr_stream: turns a byte stream into events and invalid-record reports.
 *
 * One yajl callback parser runs over the whole stream (JSON Lines, concatenated objects with or
 * without separators, pretty-printed objects, a JSON array of events, a CloudTrail log
 * {"Records": [...]}); the record boundaries fall out of the parse itself, so a well-formed stream
 * is read in exactly one pass. Per record it unwraps envelopes (an SNS notification's Message; a
 * CloudTrail record becomes the EventBridge event EventBridge would deliver for it), fills the
 * kr_view with the values of the paths the rules want, and hands the event to the caller.
 *
 * A bad record (malformed or truncated JSON, too big, too deep, invalid UTF-8, a NUL byte, not an
 * object, detail-type or detail of the wrong type) is reported with its offset, line, size and
 * bytes, then the parser resynchronises: at the end of the bad value when its brackets balance,
 * else at the next line that starts with '{'. The records around it are still read. What a record
 * becomes never depends on how the input was cut into chunks: a record is too big when it is
 * still open max_record bytes after its first byte, and the parser decides that at exactly that
 * byte, however the input arrives.
 *
 * A UTF-8 byte order mark at the start of the stream (or of a file within it, see
 * kr_stream_file_start) is skipped.
 *
 * Memory: the stream keeps only the bytes of the record being parsed (plus one read window), and
 * reuses its buffers; nothing grows with the input. Used from one thread. */
#ifndef KR_STREAM_H
#define KR_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "view.h"

#define KR_DEFAULT_MAX_RECORD (256u * 1024u)
#define KR_DEFAULT_MAX_DEPTH 64u

enum kr_envelope { KR_ENV_EVENT, KR_ENV_SNS, KR_ENV_CLOUDTRAIL };

struct kr_event {
	const char *raw;        /* the event's JSON bytes, unchanged (inner event for SNS, built
				   event for a CloudTrail record); valid during the callback */
	size_t raw_len;
	const char *id;         /* the event's "id" string (id_len bytes, not NUL-terminated),
				   or NULL */
	size_t id_len;
	bool id_plain;          /* id needs no escaping in JSON: its text in the input had no
				   escape, so it holds no quote, backslash or control character */
	const char *time;       /* the event's "time" string (time_len bytes, not
				   NUL-terminated), or NULL */
	size_t time_len;
	uint64_t offset;        /* byte offset of the record in the stream */
	enum kr_envelope envelope;
	struct kr_view *view; /* valid until the callback of the next event returns: the stream
				 fills two views in turn, so a consumer may match an event while the
				 next one is parsed (kr_stream_rebind and kr_stream_free end that).
				 The consumer may add values to it (replay's "replay-name"): the
				 stream clears a view before it fills it again */
};

/* Of an oversized invalid record, kr_invalid.raw holds this many first bytes (or max_record when
 * that is smaller): enough to tell what the record was, bounded whatever its size. */
#define KR_INVALID_PREFIX 1024u

/* A bad record: the bytes from offset to offset + size did not make an event. Consecutive reports
 * have increasing offsets and do not overlap (nor the events around them). */
struct kr_invalid {
	uint64_t offset;        /* byte offset of its first byte in the stream */
	uint64_t line;          /* 1-based line of offset */
	uint64_t size;          /* its length in bytes, whitespace after it left out; 0 when the
				   input breaks off between records (an array or a CloudTrail log
				   cut short after its last element: offset is where) */
	const char *raw;        /* its bytes as they were (not NUL-terminated, maybe not UTF-8):
				   all size of them when size <= max_record, else the first
				   min(KR_INVALID_PREFIX, max_record); NULL when size is 0 (or,
				   out of memory, when they could not be kept). Valid during the
				   callback */
	size_t raw_len;
	const char *message;    /* what is wrong, for humans */
};

/* What the event callback may return besides 0 (go on) and 1 (stop). */
#define KR_STREAM_PAUSE 2

struct kr_stream_callbacks {
	/* Both return 0 to go on, non-zero to stop the stream (kr_stream_* then return KR_ERR_IO).
	 * event may return KR_STREAM_PAUSE: parsing stops after this record, the rest of the input
	 * already given stays in the stream until kr_stream_resume (backpressure: a source must not
	 * give more input while kr_stream_paused). invalid's KR_STREAM_PAUSE counts as 0. */
	int (*event)(void *ctx, const struct kr_event *ev);
	int (*invalid)(void *ctx, const struct kr_invalid *inv);
};

struct kr_stream_opts {
	size_t max_record;      /* 0: KR_DEFAULT_MAX_RECORD */
	unsigned max_depth;     /* 0: KR_DEFAULT_MAX_DEPTH */
	bool raw_events_only;   /* no envelope or container detection: every top-level object is
				   an event as it stands (test-pattern) */
	bool no_time;           /* the consumer does not read kr_event.time: an event's "time" is
				   then not kept (NULL; an event built from a CloudTrail record
				   still has its eventTime) and costs nothing when no rule reads it */
	bool yajl_only;         /* every value through yajl, none through the fast path (kr_lex):
				   for tests that hold both to the same results */
};

struct kr_stream;

/* Returns a new stream in *out that fills views for paths (may be NULL: no fields wanted);
 * free with kr_stream_free. */
enum kr_err kr_stream_new(const struct kr_paths *paths, const struct kr_stream_opts *opts,
			  const struct kr_stream_callbacks *cb, void *ctx, struct kr_stream **out);
void kr_stream_free(struct kr_stream *s);

/* Buffered input: kr_stream_reserve returns room for at least want bytes at the end of the
 * stream's buffer (moving the unparsed tail to the front first); write there, then
 * kr_stream_commit the number of bytes written, which parses them. */
char *kr_stream_reserve(struct kr_stream *s, size_t want);
enum kr_err kr_stream_commit(struct kr_stream *s, size_t n);

/* Zero-copy input: parses len bytes held in memory, which must stay valid and unchanged until
 * kr_stream_end returns. Cannot be mixed with reserve/commit before kr_stream_reset. */
enum kr_err kr_stream_parse_mem(struct kr_stream *s, const char *data, size_t len);

/* The next bytes given (kr_stream_reserve/commit) start another file, e.g. the next member of a
 * multi-member gzip file: a UTF-8 byte order mark there is skipped, as at the start of the stream,
 * when it falls between top-level values (inside a record, an array of records or a bad record's
 * bytes it stays part of them). */
void kr_stream_file_start(struct kr_stream *s);

/* End of input: reports a truncated last record. The consumer may pause here too, on a record
 * found at the end (records that a truncated one had hidden): then kr_stream_paused is true and
 * each kr_stream_resume goes on with the end, until the stream is no longer paused. The stream
 * can then be reset for the next input with kr_stream_reset (offsets and lines start again at 0
 * and 1). */
enum kr_err kr_stream_end(struct kr_stream *s);
void kr_stream_reset(struct kr_stream *s);

/* Whether the consumer paused the stream, and going on from there. */
bool kr_stream_paused(const struct kr_stream *s);
enum kr_err kr_stream_resume(struct kr_stream *s);

/* Binds the stream to another path set (a reloaded configuration). Only possible between
 * records (KR_ERR_LIMIT otherwise: try again later, e.g. from the event callback or when the
 * input ends); the caller keeps the old paths alive until it succeeds. */
enum kr_err kr_stream_rebind(struct kr_stream *s, const struct kr_paths *paths);

/* Totals since creation. */
struct kr_stream_stats {
	uint64_t events, invalid, bytes;
};
void kr_stream_stats(const struct kr_stream *s, struct kr_stream_stats *st);

#endif
