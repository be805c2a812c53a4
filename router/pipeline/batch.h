/* kr_batcher: batching for sinks whose service takes several entries per request (SNS
 * PublishBatch, SQS SendMessageBatch, Kinesis PutRecords, CloudWatch Logs PutLogEvents).
 *
 * The sink's submit hands each delivery to kr_batcher_add. A batch is sent (the sink's send
 * callback) when it holds max_entries entries or max_bytes bytes, or linger_ms after its first
 * entry, whichever comes first; at most max_in_flight batches are out at once (the sink's
 * "concurrency": batches, not deliveries), the rest wait in order. The sink reports each
 * entry's result (kr_batch_entry) as the service gives it, then ends the batch (kr_batch_end),
 * which completes the entries it did not report with the batch's own outcome. Each entry's result
 * goes to its own delivery, so a partial failure retries only the entries that failed. The
 * batcher borrows the deliveries; nothing is copied. Loop thread only. */
#ifndef KR_BATCH_H
#define KR_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "loop.h"
#include "plugin.h"

struct kr_batcher;

struct kr_batch {
	struct kr_delivery **entries; /* in the order they were added */
	size_t n;
	size_t bytes; /* sum of the entries' sizes */
	void *sink_data; /* the sink's, for the request it makes */
};

struct kr_batch_opts {
	size_t max_entries;     /* >= 1 */
	size_t max_bytes;       /* 0: no limit */
	uint64_t linger_ms;     /* 0: a batch that is not full goes out at the end of the engine's
				   round (flush) when no batch is out, else when the last one out
				   comes back */
	uint64_t max_in_flight; /* batches out at once, >= 1 */
	/* the bytes an entry adds to a batch (NULL: its payload's length); an entry larger than
	   max_bytes on its own fails permanently with "EntryTooLarge" */
	size_t (*entry_size)(void *ctx, const struct kr_delivery *d);
	/* optional: whether d may join the open batch b; false sends b and starts the next batch
	   with d (limits the table cannot count, such as the time a batch may span) */
	bool (*fits)(void *ctx, const struct kr_batch *b, const struct kr_delivery *d);
	/* optional: called with each entry just before its delivery completes, however it does
	   (a result, a too large entry, the batcher freed), to free what the sink keeps for it */
	void (*release)(void *ctx, struct kr_delivery *d);
	/* sends the batch; its results come later with kr_batch_entry and kr_batch_end */
	void (*send)(void *ctx, struct kr_batch *b);
	void *ctx;
};

/* A new batcher in *out; free with kr_batcher_free. */
enum kr_err kr_batcher_new(struct kr_loop *loop, const struct kr_batch_opts *o,
			   struct kr_batcher **out);
/* Completes every delivery still waiting (retryable, "Closed"); batches that were sent must
 * have ended first. */
void kr_batcher_free(struct kr_batcher *b);

void kr_batcher_add(struct kr_batcher *b, struct kr_delivery *d);
/* The engine's round ends (the sink's flush): with linger_ms 0, the open batch goes now. */
void kr_batcher_flush(struct kr_batcher *b);

/* The result of entry i of a sent batch. */
void kr_batch_entry(struct kr_batch *bt, size_t i, enum kr_outcome o, uint64_t not_before_ms,
		    const char *error_code, const char *error_message);
/* Ends a sent batch: entries without a result get this one (the whole request's: a transport
 * error, a throttled call). Frees bt and sends what waits. */
void kr_batch_end(struct kr_batch *bt, enum kr_outcome o, uint64_t not_before_ms,
		  const char *error_code, const char *error_message);

/* What a sink prepares for a delivery before it adds it (its sink_data): the bytes the service
 * counts against its limits, and the entry's text for the request. Begin on an empty kr_buf,
 * append the text, finish; kr_prepared_size and kr_prepared_release are the entry_size and
 * release callbacks of such a sink. Prepared entries live in slabs of their own (1 MiB, freed
 * when their last entry is), apart from the short-lived allocations of the next event's parse,
 * which then reuse the same memory instead of fresh pages each time; the buffer an entry was
 * built in is kept for the next one. Loop thread only. */
struct kr_prepared {
	void *slab;   /* NULL: allocated alone */
	size_t bytes; /* as the service counts them */
	size_t len;   /* of text */
	char text[];
};
bool kr_prepared_begin(struct kr_buf *b, size_t hint);
/* The prepared entry (b is emptied), or NULL when out of memory (b is freed). */
struct kr_prepared *kr_prepared_finish(struct kr_buf *b, size_t bytes);
size_t kr_prepared_size(void *ctx, const struct kr_delivery *d);
void kr_prepared_release(void *ctx, struct kr_delivery *d);

/* Batches sent and not yet ended, and deliveries waiting. */
size_t kr_batcher_in_flight(const struct kr_batcher *b);
size_t kr_batcher_waiting(const struct kr_batcher *b);

#endif
