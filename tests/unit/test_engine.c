/* Unit tests for router/engine.h with a fake source and a fake sink (no daemon, no files): the
 * acknowledgement of ordered and unordered inputs, framed records, acks handed over only at the
 * end of a round, closed inputs, retries, dead letters with their attributes, and reload. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "batch.h"
#include "config.h"
#include "engine.h"
#include "loop.h"
#include "metrics.h"
#include "plugin.h"
#include "stream.h"

/* ---- a fake sink: keeps what it is given, completed by the test ---- */

#define MAXD 64
struct fake_sink {
	const char *name;
	struct kr_delivery *d[MAXD];
	char payload[MAXD][2048];
	size_t n; /* submitted, in order */
};

static struct fake_sink sinks[8];
static size_t nsinks;

static enum kr_err fs_create(const struct kr_sink_args *a, void **ctx, char *err)
{
	(void)err;
	assert_true(nsinks < 8);
	struct fake_sink *s = &sinks[nsinks++];
	memset(s, 0, sizeof *s);
	s->name = a->name;
	*ctx = s;
	return KR_OK;
}

static void fs_submit(void *ctx, struct kr_delivery *d)
{
	struct fake_sink *s = ctx;
	assert_true(s->n < MAXD);
	snprintf(s->payload[s->n], sizeof s->payload[0], "%.*s", (int)d->len, d->payload);
	s->d[s->n++] = d;
}

static void fs_destroy(void *ctx)
{
	(void)ctx;
}

static const struct kr_sink_plugin fake_sink = {
	.name = "fake", .create = fs_create, .submit = fs_submit, .destroy = fs_destroy};

/* ---- a fake source: the test opens its inputs and feeds them ---- */

struct ack_log {
	struct kr_ack a[64];
	size_t n;
};

static struct kr_source_handle *handle;
static struct ack_log acks;
static bool in_pull;
static void (*pull_hook)(void);

static enum kr_err src_create(const struct kr_source_args *a, void **ctx, char *err)
{
	(void)err;
	handle = a->handle;
	*ctx = &acks;
	return KR_OK;
}

static enum kr_pull src_pull(void *ctx)
{
	(void)ctx;
	in_pull = true;
	if (pull_hook) {
		void (*h)(void) = pull_hook;
		pull_hook = NULL;
		h();
	}
	in_pull = false;
	return KR_PULL_WAIT;
}

static void src_ack(void *ctx, const struct kr_ack *a)
{
	(void)ctx;
	assert_false(in_pull); /* never from inside the source's own pull */
	assert_true(acks.n < 64);
	acks.a[acks.n++] = *a;
}

static void src_destroy(void *ctx)
{
	(void)ctx;
}

static const struct kr_source_plugin fake_source = {
	.name = "fake", .pull = src_pull, .ack = src_ack, .create = src_create,
	.destroy = src_destroy};

/* ---- the harness ---- */

struct h {
	struct kr_loop *loop;
	struct kr_metrics *metrics;
	struct kr_engine *e;
};

static const char *config_text =
	"{\"sinks\": [{\"name\": \"out\", \"type\": \"log\","
	"              \"retry\": {\"max_attempts\": 3, \"initial_backoff_ms\": 1,"
	"                          \"max_backoff_ms\": 2}},"
	"             {\"name\": \"dlq\", \"type\": \"log\"},"
	"             {\"name\": \"out2\", \"type\": \"log\", \"dead_letter\": \"dlq\","
	"              \"retry\": {\"max_attempts\": 1}}],"
	" \"rules\": [{\"name\": \"all\", \"pattern\": {\"source\": [\"aws.kms\"]},"
	"             \"targets\": [\"out\"]},"
	"            {\"name\": \"deleted\", \"pattern\": {\"detail-type\": [\"KMS CMK Deletion\"]},"
	"             \"targets\": [\"out\", {\"sink\": \"out2\", \"input_path\": \"$.id\"}]}]}";

static struct kr_config *config(const char *text)
{
	struct kr_config *c = NULL;
	char err[KR_ERRBUF];
	if (kr_config_parse("cfg.json", text, strlen(text), &c, err) != KR_OK)
		fail_msg("%s", err);
	for (size_t i = 0; i < c->nsinks; i++)
		c->sinks[i].plugin = &fake_sink;
	return c;
}

static void start_with(struct h *t, const char *text)
{
	nsinks = 0;
	acks.n = 0;
	t->loop = kr_loop_new();
	t->metrics = kr_metrics_new();
	char err[KR_ERRBUF];
	assert_int_equal(kr_engine_new(t->loop, config(text), NULL, t->metrics, &t->e, err),
			 KR_OK);
	assert_int_equal(kr_engine_add_source(t->e, "fake", &fake_source, NULL, NULL, err), KR_OK);
}

static void start(struct h *t)
{
	start_with(t, config_text);
}

static void stop(struct h *t)
{
	kr_engine_free(t->e);
	kr_metrics_free(t->metrics);
	kr_loop_free(t->loop);
}

static void feed(struct kr_input *in, const char *text)
{
	struct kr_stream *s = kr_input_stream(in);
	size_t n = strlen(text);
	char *p = kr_stream_reserve(s, n);
	assert_non_null(p);
	memcpy(p, text, n);
	assert_int_equal(kr_stream_commit(s, n), KR_OK);
}

static char *ev(const char *id, const char *type)
{
	static char b[4][256];
	static int k;
	k = (k + 1) % 4;
	snprintf(b[k], sizeof b[k],
		 "{\"id\":\"%s\",\"source\":\"aws.kms\",\"detail-type\":\"%s\",\"detail\":{}}\n", id,
		 type);
	return b[k];
}

static void round_(struct h *t)
{
	kr_engine_step(t->e);
}

static void done(struct kr_delivery *d, enum kr_outcome o, const char *code)
{
	kr_delivery_done(d, o, 0, code, code ? "it failed" : NULL);
}

/* ---- tests ---- */

static void test_ordered_inputs_are_acknowledged_by_done_prefix_at_round_end(void **state)
{
	(void)state;
	struct h t;
	start(&t);
	struct kr_input_opts o = {.name = "f", .id = 7};
	struct kr_input *in = kr_input_open(handle, &o);
	feed(in, ev("a", "KMS CMK Rotation"));
	feed(in, ev("b", "KMS CMK Rotation"));
	feed(in, ev("c", "KMS CMK Rotation"));
	struct fake_sink *out = &sinks[0];
	assert_int_equal(out->n, 3);
	done(out->d[1], KR_DELIVERED, NULL);
	done(out->d[2], KR_DELIVERED, NULL);
	round_(&t);
	assert_int_equal(acks.n, 0); /* "a" is in flight: nothing after it is acknowledged */
	done(out->d[0], KR_DELIVERED, NULL);
	assert_int_equal(acks.n, 0); /* not before the end of the round */
	round_(&t);
	assert_int_equal(acks.n, 1);
	assert_int_equal(acks.a[0].id, 7);
	assert_int_equal(acks.a[0].position, 3);
	assert_false(acks.a[0].final);
	/* closed: a last ack says so, and the input is freed (ASan checks) */
	kr_stream_end(kr_input_stream(in));
	kr_input_close(in);
	round_(&t);
	assert_int_equal(acks.n, 2);
	assert_true(acks.a[1].final);
	assert_int_equal(acks.a[1].position, 3);
	stop(&t);
}

static void unmatched_in_pull(void)
{
	struct kr_input_opts o = {.name = "p", .id = 1};
	struct kr_input *in = kr_input_open(handle, &o);
	feed(in, "{\"id\":\"x\",\"source\":\"elsewhere\"}\n"); /* done at once: matched nothing */
	kr_stream_end(kr_input_stream(in));
	kr_input_close(in);
}

static void test_acks_never_come_from_inside_the_pull(void **state)
{
	(void)state;
	struct h t;
	start(&t);
	pull_hook = unmatched_in_pull;
	round_(&t); /* src_ack asserts it is not called from inside src_pull */
	assert_int_equal(acks.n, 1);
	assert_true(acks.a[0].final);
	assert_int_equal(acks.a[0].position, 1);
	stop(&t);
}

static void test_unordered_framed_records_are_acknowledged_each_by_its_token(void **state)
{
	(void)state;
	struct h t;
	start(&t);
	struct kr_input_opts o = {.name = "q", .id = 3, .unordered = true};
	struct kr_input *in = kr_input_open(handle, &o);
	static int tok1, tok2;
	/* message 1 holds two events (an array), message 2 one */
	assert_int_equal(kr_input_record_begin(in, 0, &tok1), KR_OK);
	feed(in, "[{\"id\":\"m1a\",\"source\":\"aws.kms\"},{\"id\":\"m1b\",\"source\":\"aws.kms\"}]\n");
	kr_input_record_end(in);
	assert_int_equal(kr_input_record_begin(in, 0, &tok2), KR_OK);
	feed(in, ev("m2", "KMS CMK Rotation"));
	kr_input_record_end(in);
	struct fake_sink *out = &sinks[0];
	assert_int_equal(out->n, 3);
	done(out->d[2], KR_DELIVERED, NULL); /* message 2 first: no order between messages */
	done(out->d[0], KR_DELIVERED, NULL);
	round_(&t);
	assert_int_equal(acks.n, 1);
	assert_ptr_equal(acks.a[0].token, &tok2);
	done(out->d[1], KR_DELIVERED, NULL); /* message 1's second event: now it is done */
	round_(&t);
	assert_int_equal(acks.n, 2);
	assert_ptr_equal(acks.a[1].token, &tok1);
	kr_stream_end(kr_input_stream(in));
	kr_input_close(in);
	round_(&t);
	assert_int_equal(acks.n, 3);
	assert_true(acks.a[2].final);
	assert_null(acks.a[2].token);
	stop(&t);
}

static void test_a_failed_record_holds_back_its_file_and_goes_back_to_its_queue(void **state)
{
	(void)state;
	struct h t;
	start(&t);
	struct kr_input_opts oq = {.name = "q", .id = 1, .unordered = true};
	struct kr_input *q = kr_input_open(handle, &oq);
	static int tok;
	kr_input_record_begin(q, 0, &tok);
	feed(q, ev("u", "KMS CMK Rotation"));
	kr_input_record_end(q);
	struct kr_input_opts of = {.name = "f", .id = 2};
	struct kr_input *f = kr_input_open(handle, &of);
	feed(f, ev("o1", "KMS CMK Rotation"));
	feed(f, ev("o2", "KMS CMK Rotation"));
	struct fake_sink *out = &sinks[0];
	assert_int_equal(out->n, 3);
	/* "out" has no dead letter: a permanent failure leaves the file's record unacknowledged,
	   and hands the queue's message back to its source as failed */
	done(out->d[0], KR_PERMANENT, "Bad");
	done(out->d[1], KR_PERMANENT, "Bad");
	done(out->d[2], KR_DELIVERED, NULL);
	round_(&t);
	assert_int_equal(acks.n, 1); /* o1 failed and holds back o2 */
	assert_ptr_equal(acks.a[0].token, &tok);
	assert_true(acks.a[0].failed);
	struct kr_engine_totals tot;
	kr_engine_totals(t.e, &tot);
	assert_int_equal(tot.failed_records, 2);
	assert_int_equal(tot.unacked, 2);
	assert_int_equal(tot.in_flight, 0);
	stop(&t);
}

/* A queue's input: its messages carry metadata rules can match ("kmsrouter"), its own dead
 * letter takes what fails with none of its own and what cannot be parsed, and a message that
 * cannot be parsed with no dead letter at all goes back to the source as failed. */
static const char *queue_config =
	"{\"sinks\": [{\"name\": \"out\", \"type\": \"log\", \"retry\": {\"max_attempts\": 1}},"
	"             {\"name\": \"qdlq\", \"type\": \"log\"}],"
	" \"rules\": [{\"name\": \"again\", \"pattern\": {\"kmsrouter\": {\"sqs\": "
	"              {\"ApproximateReceiveCount\": [{\"numeric\": [\">\", 1]}]}}},"
	"             \"targets\": [\"out\"]}]}";

static void test_queue_metadata_and_its_own_dead_letter(void **state)
{
	(void)state;
	struct h t;
	start_with(&t, queue_config);
	struct kr_input_opts oq = {.name = "q", .id = 1, .unordered = true, .dead_letter = "qdlq"};
	struct kr_input *q = kr_input_open(handle, &oq);
	static int tok1, tok2, tok3;
	const char *m1 = "{\"sqs\":{\"MessageId\":\"m-1\",\"ApproximateReceiveCount\":1}}";
	const char *m2 = "{\"sqs\":{\"MessageId\":\"m-2\",\"ApproximateReceiveCount\":3}}";
	kr_input_record_begin(q, 0, &tok1);
	assert_int_equal(kr_input_record_meta(q, m1, strlen(m1)), KR_OK);
	feed(q, ev("first", "KMS CMK Rotation"));
	kr_input_record_end(q);
	kr_input_record_begin(q, 0, &tok2);
	assert_int_equal(kr_input_record_meta(q, m2, strlen(m2)), KR_OK);
	feed(q, ev("again", "KMS CMK Rotation"));
	kr_input_record_end(q);
	struct fake_sink *out = &sinks[0], *dlq = &sinks[1];
	assert_int_equal(out->n, 1); /* only the message received more than once matches */
	assert_non_null(strstr(out->payload[0], "\"again\""));
	/* "out" has no dead letter of its own: the input's takes the failure, with the metadata */
	done(out->d[0], KR_PERMANENT, "Bad");
	assert_int_equal(dlq->n, 1);
	assert_non_null(strstr(dlq->payload[0], "\"kmsrouter\":{\"sqs\":{\"MessageId\":\"m-2\""));
	/* a body that cannot be parsed: to the input's dead letter too, with its metadata */
	kr_input_record_begin(q, 0, &tok3);
	kr_input_record_meta(q, m1, strlen(m1));
	feed(q, "{\"broken\n");
	kr_stream_end(kr_input_stream(q));
	kr_stream_reset(kr_input_stream(q));
	kr_input_record_end(q);
	assert_int_equal(dlq->n, 2);
	assert_non_null(strstr(dlq->payload[1], "\"record\":\"{\\\"broken\""));
	assert_non_null(strstr(dlq->payload[1], "\"kmsrouter\":{\"sqs\":{\"MessageId\":\"m-1\""));
	done(dlq->d[0], KR_DELIVERED, NULL);
	done(dlq->d[1], KR_DELIVERED, NULL);
	round_(&t);
	assert_int_equal(acks.n, 3);
	for (size_t i = 0; i < 3; i++)
		assert_false(acks.a[i].failed);
	stop(&t);

	/* no dead letter anywhere: the message that cannot be parsed goes back as failed */
	start_with(&t, queue_config);
	struct kr_input_opts o2 = {.name = "q", .id = 1, .unordered = true};
	q = kr_input_open(handle, &o2);
	kr_input_record_begin(q, 0, &tok1);
	feed(q, "not json\n");
	kr_stream_end(kr_input_stream(q));
	kr_stream_reset(kr_input_stream(q));
	kr_input_record_end(q);
	round_(&t);
	assert_int_equal(acks.n, 1);
	assert_ptr_equal(acks.a[0].token, &tok1);
	assert_true(acks.a[0].failed);
	stop(&t);
}

static void test_retries_then_dead_letter_with_its_attributes(void **state)
{
	(void)state;
	struct h t;
	start(&t);
	struct kr_input_opts o = {.name = "f", .id = 1};
	struct kr_input *in = kr_input_open(handle, &o);
	feed(in, ev("del-1", "KMS CMK Deletion"));
	struct fake_sink *out = &sinks[0], *dlq = &sinks[1], *out2 = &sinks[2];
	/* rules all and deleted: out twice (one per rule), out2 once with input_path $.id */
	assert_int_equal(out->n, 2);
	assert_int_equal(out2->n, 1);
	assert_string_equal(out2->payload[0], "\"del-1\"");
	/* out2: one attempt, then its dead letter */
	done(out2->d[0], KR_RETRYABLE, "Throttled");
	assert_int_equal(dlq->n, 1);
	const char *dl = dlq->payload[0];
	assert_non_null(strstr(dl, "\"rule\":\"deleted\""));
	assert_non_null(strstr(dl, "\"target\":\"out2\""));
	assert_non_null(strstr(dl, "\"target_index\":1"));
	assert_non_null(strstr(dl, "\"error_code\":\"Throttled\""));
	assert_non_null(strstr(dl, "\"error_counts\":{\"Throttled\":1}"));
	assert_non_null(strstr(dl, "\"attempts\":1"));
	done(dlq->d[0], KR_DELIVERED, NULL);
	/* out: retried after a back-off of at most 2 ms, up to 3 attempts */
	done(out->d[0], KR_RETRYABLE, "Busy");
	done(out->d[1], KR_DELIVERED, NULL);
	uint64_t until = kr_now_ms() + 2000;
	while (out->n < 3 && kr_now_ms() < until)
		kr_loop_run_once(t.loop, 5);
	assert_int_equal(out->n, 3);
	assert_int_equal(out->d[2]->attempt, 2);
	done(out->d[2], KR_RETRYABLE, "Busy");
	while (out->n < 4 && kr_now_ms() < until)
		kr_loop_run_once(t.loop, 5);
	assert_int_equal(out->n, 4);
	done(out->d[3], KR_DELIVERED, NULL);
	round_(&t);
	assert_int_equal(acks.n, 1);
	assert_int_equal(acks.a[0].position, 1);
	struct kr_engine_totals tot;
	kr_engine_totals(t.e, &tot);
	assert_int_equal(tot.delivered, 2);
	assert_int_equal(tot.dead_lettered, 1);
	assert_int_equal(tot.unacked, 0);
	stop(&t);
}

static void test_reload_sends_new_records_to_the_new_sinks(void **state)
{
	(void)state;
	struct h t;
	start(&t);
	struct kr_input_opts o = {.name = "f", .id = 1};
	struct kr_input *in = kr_input_open(handle, &o);
	feed(in, ev("before", "KMS CMK Rotation"));
	struct fake_sink *old_out = &sinks[0];
	assert_int_equal(old_out->n, 1);
	char err[KR_ERRBUF];
	assert_int_equal(kr_engine_reload(t.e, config(config_text), err), KR_OK);
	struct fake_sink *new_out = &sinks[3];
	feed(in, ev("after", "KMS CMK Rotation"));
	round_(&t);
	assert_int_equal(new_out->n, 1);
	assert_non_null(strstr(new_out->payload[0], "\"after\""));
	assert_int_equal(old_out->n, 1);
	/* the old sink's delivery finishes on the old sink */
	done(old_out->d[0], KR_DELIVERED, NULL);
	done(new_out->d[0], KR_DELIVERED, NULL);
	round_(&t);
	assert_int_equal(acks.n, 1);
	assert_int_equal(acks.a[0].position, 2);
	stop(&t);
}

/* ---- a fake sink that batches with kr_batcher ---- */

static struct kr_batcher *batcher;
static struct kr_batch *sent[16];
static size_t nsent;

static void bs_send(void *ctx, struct kr_batch *b)
{
	(void)ctx;
	assert_true(nsent < 16);
	sent[nsent++] = b;
}

static enum kr_err bs_create(const struct kr_sink_args *a, void **ctx, char *err)
{
	(void)err;
	struct kr_batch_opts o = {.max_entries = 2, .linger_ms = 20,
				  .max_in_flight = a->concurrency, .send = bs_send};
	*ctx = NULL;
	return kr_batcher_new(a->loop, &o, &batcher);
}

static void bs_submit(void *ctx, struct kr_delivery *d)
{
	(void)ctx;
	kr_batcher_add(batcher, d);
}

static void bs_flush(void *ctx)
{
	(void)ctx;
	kr_batcher_flush(batcher);
}

static void bs_destroy(void *ctx)
{
	(void)ctx;
	kr_batcher_free(batcher);
}

static const struct kr_sink_plugin batch_sink = {
	.name = "batch", .batches = true, .create = bs_create, .submit = bs_submit,
	.flush = bs_flush, .destroy = bs_destroy};

static bool batch_has(const struct kr_batch *b, const char *id)
{
	char needle[64];
	snprintf(needle, sizeof needle, "\"id\":\"%s\"", id);
	for (size_t i = 0; i < b->n; i++)
		if (strstr(b->entries[i]->payload, needle))
			return true;
	return false;
}

static void test_a_batching_sink_retries_only_the_entries_that_failed(void **state)
{
	(void)state;
	nsent = 0;
	acks.n = 0;
	struct h t = {.loop = kr_loop_new(), .metrics = kr_metrics_new()};
	struct kr_config *c = config(
		"{\"sinks\": [{\"name\": \"b\", \"type\": \"log\", \"concurrency\": 1,"
		"  \"retry\": {\"max_attempts\": 3, \"initial_backoff_ms\": 1, \"max_backoff_ms\": 2}}],"
		" \"rules\": [{\"name\": \"all\", \"pattern\": {\"source\": [\"aws.kms\"]},"
		"             \"targets\": [\"b\"]}]}");
	c->sinks[0].plugin = &batch_sink;
	char err[KR_ERRBUF];
	assert_int_equal(kr_engine_new(t.loop, c, NULL, t.metrics, &t.e, err), KR_OK);
	assert_int_equal(kr_engine_add_source(t.e, "fake", &fake_source, NULL, NULL, err), KR_OK);
	struct kr_input_opts o = {.name = "f", .id = 1};
	struct kr_input *in = kr_input_open(handle, &o);
	const char *ids[] = {"e0", "e1", "e2", "e3", "e4"};
	for (int i = 0; i < 5; i++)
		feed(in, ev(ids[i], "KMS CMK Rotation"));
	/* [e0 e1] is full and goes; [e2 e3] is full and waits: concurrency 1 is one batch out */
	assert_int_equal(nsent, 1);
	assert_int_equal(sent[0]->n, 2);
	assert_int_equal(kr_batcher_waiting(batcher), 3);
	/* e1 throttled, e0 delivered: only e1 is tried again */
	kr_batch_entry(sent[0], 1, KR_RETRYABLE, 0, "Throttled", "slow down");
	kr_batch_end(sent[0], KR_DELIVERED, 0, NULL, NULL);
	assert_int_equal(nsent, 2);
	assert_true(batch_has(sent[1], "e2") && batch_has(sent[1], "e3"));
	kr_batch_end(sent[1], KR_DELIVERED, 0, NULL, NULL);
	/* e4 goes after its linger; e1's retry with it or after it */
	uint64_t until = kr_now_ms() + 3000;
	bool seen_e1 = false, seen_e4 = false;
	for (size_t k = 2; !(seen_e1 && seen_e4);) {
		while (nsent <= k && kr_now_ms() < until)
			kr_loop_run_once(t.loop, 5);
		assert_true(nsent > k);
		for (size_t i = 0; i < sent[k]->n; i++)
			if (strstr(sent[k]->entries[i]->payload, "\"e1\"")) {
				seen_e1 = true;
				assert_int_equal(sent[k]->entries[i]->attempt, 2);
			}
		seen_e4 = seen_e4 || batch_has(sent[k], "e4");
		kr_batch_end(sent[k++], KR_DELIVERED, 0, NULL, NULL);
	}
	assert_true(nsent <= 4);
	round_(&t);
	assert_int_equal(acks.n, 1);
	assert_int_equal(acks.a[0].position, 5);
	struct kr_engine_totals tot;
	kr_engine_totals(t.e, &tot);
	assert_int_equal(tot.delivered, 5);
	stop(&t);
}

/* What kr_parse_rfc3339_ms gave before its fast path: strptime, fraction, offset, timegm. */
static int64_t rfc3339_by_strptime(const char *s)
{
	char buf[64];
	size_t n = strlen(s);
	if (n >= sizeof buf || n < 20)
		return -1;
	memcpy(buf, s, n + 1);
	struct tm tm = {0};
	char *rest = strptime(buf, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!rest)
		return -1;
	int64_t ms = 0;
	if (*rest == '.') {
		rest++;
		int64_t scale = 100;
		while (*rest >= '0' && *rest <= '9') {
			ms += (*rest - '0') * scale;
			scale /= 10;
			rest++;
		}
	}
	int64_t off = 0;
	if (*rest == '+' || *rest == '-') {
		int hh, mm;
		if (sscanf(rest + 1, "%2d:%2d", &hh, &mm) != 2)
			return -1;
		off = (hh * 3600 + mm * 60) * (*rest == '-' ? -1 : 1);
	} else if (*rest != 'Z' && *rest != 'z') {
		return -1;
	}
	return ((int64_t)timegm(&tm) - off) * 1000 + ms;
}

/* The fast path for YYYY-MM-DDTHH:MM:SS gives what strptime and timegm give: every year from
 * 1 to 9999 at some dates, the ends of months (day 31 of a short month runs into the next, as
 * timegm has it), leap seconds, fractions, offsets, and text out of range or of other shapes. */
static void test_rfc3339_times_as_strptime_reads_them(void **state)
{
	(void)state;
	static const char *const fixed[] = {
		"2016-08-19T03:23:45Z", "2016-08-19T03:23:45.123Z", "2016-08-19T03:23:45.5+02:30",
		"2016-08-19T03:23:45-07:00", "2016-08-19T03:23:45z", "2000-02-29T00:00:00Z",
		"1900-02-29T00:00:00Z", "2023-02-31T23:59:60Z", "2023-04-31T23:59:61Z",
		"1970-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "0001-01-01T00:00:00Z",
		"9999-12-31T23:59:59.999Z", "2016-13-19T03:23:45Z", "2016-00-19T03:23:45Z",
		"2016-08-00T03:23:45Z", "2016-08-32T03:23:45Z", "2016-08-19T24:00:00Z",
		"2016-08-19T23:60:00Z", "2016-08-19T23:59:62Z", "2016-08-19 03:23:45Z",
		"2016-8-19T03:23:45Z  ", " 2016-08-19T03:23:45Z", "2016-08-19T03:23:45",
		"2016-08-19T03:23:45Q", "20a6-08-19T03:23:45Z", "2016-08-19T03:23:4x5Z",
		"+2016-08-19T03:23:45Z", "2016-08-19T03:23:45+2:00",
	};
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		if (kr_parse_rfc3339_ms(fixed[i]) != rfc3339_by_strptime(fixed[i]))
			fail_msg("%s: %lld, strptime %lld", fixed[i],
				 (long long)kr_parse_rfc3339_ms(fixed[i]),
				 (long long)rfc3339_by_strptime(fixed[i]));
	unsigned seed = 2026;
	for (int i = 0; i < 20000; i++) {
		seed = seed * 1103515245u + 12345u;
		unsigned r = seed >> 8;
		char t[40];
		snprintf(t, sizeof t, "%04u-%02u-%02uT%02u:%02u:%02uZ", 1 + r % 9999,
			 (r >> 3) % 13, 1 + (r >> 7) % 31,
			 (r >> 11) % 24, (r >> 5) % 60, (r >> 13) % 62);
		if (kr_parse_rfc3339_ms(t) != rfc3339_by_strptime(t))
			fail_msg("%s: %lld, strptime %lld", t, (long long)kr_parse_rfc3339_ms(t),
				 (long long)rfc3339_by_strptime(t));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ordered_inputs_are_acknowledged_by_done_prefix_at_round_end),
		cmocka_unit_test(test_acks_never_come_from_inside_the_pull),
		cmocka_unit_test(test_unordered_framed_records_are_acknowledged_each_by_its_token),
		cmocka_unit_test(test_a_failed_record_holds_back_its_file_and_goes_back_to_its_queue),
		cmocka_unit_test(test_queue_metadata_and_its_own_dead_letter),
		cmocka_unit_test(test_retries_then_dead_letter_with_its_attributes),
		cmocka_unit_test(test_reload_sends_new_records_to_the_new_sinks),
		cmocka_unit_test(test_a_batching_sink_retries_only_the_entries_that_failed),
		cmocka_unit_test(test_rfc3339_times_as_strptime_reads_them),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
