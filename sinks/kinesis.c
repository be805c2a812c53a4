/* kinesis sink: each payload a record of an Amazon Kinesis data stream.
 *
 * PutRecords (JSON protocol) with up to batch_size records (500 at most) and max_batch_bytes
 * (5 MiB: data and partition keys, as Kinesis counts them) per request; "concurrency" requests
 * in flight, by default 1, which keeps one partition key's events in order on its shard (but
 * for a record Kinesis refused, which goes again after those that followed it). Each record has its own result: the ones Kinesis took are delivered, the
 * ones it refused (ProvisionedThroughputExceededException, InternalFailure) are retried alone,
 * so a hot shard does not resend the rest. A record over 1 MiB fails permanently before it is
 * sent ("RecordTooLarge"). A failed request (throttled, 5xx, no response) retries its records;
 * access denied, a stream that does not exist, a bad signature fail them permanently.
 *
 * The partition key comes from a template (default: the key id, so one key's events go to one
 * shard and stay in order there); an event that lacks a field it names gets a key hashed from
 * its payload (spread over the shards). stream_name or stream_arn names the stream; with an ARN
 * the region is the ARN's unless the option says otherwise. IAM: kinesis:PutRecords on the
 * stream (and kms:GenerateDataKey on its key where the stream is encrypted with a customer
 * managed key). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws.h"
#include "batch.h"
#include "buf.h"
#include "fields.h"
#include "json.h"
#include "plugin.h"

#define KINESIS_MAX_RECORDS 500
#define KINESIS_MAX_BATCH (5u * 1024u * 1024u)
#define KINESIS_MAX_RECORD (1024u * 1024u)
#define KINESIS_MAX_KEY 256

struct kinesis_conf {
	struct kr_aws_conf aws;
	const char *stream_name, *stream_arn;
	const char *partition_key;
	uint64_t batch_size, max_bytes, linger_ms;
};

static const struct kr_option kinesis_options[] = {
	{.name = "stream_name", .type = KR_OPT_STRING,
	 .offset = offsetof(struct kinesis_conf, stream_name),
	 .help = "the stream's name (or stream_arn)"},
	{.name = "stream_arn", .type = KR_OPT_STRING,
	 .offset = offsetof(struct kinesis_conf, stream_arn),
	 .help = "the stream's ARN (arn:aws:kinesis:REGION:ACCOUNT:stream/NAME), instead of "
		 "stream_name"},
	{.name = "partition_key", .type = KR_OPT_STRING,
	 .offset = offsetof(struct kinesis_conf, partition_key), .def = "\"<$.detail.key-id>\"",
	 .help = "the partition key, a template (<$.path> placeholders); an event without its "
		 "fields gets a key hashed from its payload"},
	{.name = "batch_size", .type = KR_OPT_INT,
	 .offset = offsetof(struct kinesis_conf, batch_size), .def = "500", .min = 1,
	 .max = KINESIS_MAX_RECORDS, .help = "records per PutRecords"},
	{.name = "max_batch_bytes", .type = KR_OPT_SIZE,
	 .offset = offsetof(struct kinesis_conf, max_bytes), .def = "5242880", .min = 1024,
	 .max = KINESIS_MAX_BATCH, .help = "bytes per request (data and partition keys)"},
	{.name = "linger_ms", .type = KR_OPT_DURATION,
	 .offset = offsetof(struct kinesis_conf, linger_ms), .def = "0", .max = 60000,
	 .help = "wait this long for a batch to fill (0: a batch not yet full goes at the end of "
		 "the engine's round, or, while batches are out, when they are all back)"},
	KR_AWS_OPTIONS(struct kinesis_conf, aws),
	{0},
};

/* The region of a stream ARN (arn:PARTITION:kinesis:REGION:ACCOUNT:stream/NAME) into out. */
static bool arn_region(const char *arn, char *out, size_t cap)
{
	if (strncmp(arn, "arn:", 4) != 0)
		return false;
	const char *p = strchr(arn + 4, ':');
	if (!p || strncmp(p + 1, "kinesis:", 8) != 0)
		return false;
	const char *r = p + 9, *e = strchr(r, ':');
	if (!e || e == r || (size_t)(e - r) + 1 > cap || !strstr(e, ":stream/") ||
	    !strstr(e, ":stream/")[8])
		return false;
	memcpy(out, r, (size_t)(e - r));
	out[e - r] = 0;
	return true;
}

static enum kr_err kinesis_validate(const void *conf, const struct kr_opts_check *chk)
{
	const struct kinesis_conf *c = conf;
	enum kr_err e = kr_aws_validate(&c->aws, chk);
	if (e)
		return e;
	if (!c->stream_name && !c->stream_arn)
		return kr_opts_reject(chk, "stream_name", "give stream_name or stream_arn");
	if (c->stream_name && c->stream_arn)
		return kr_opts_reject(chk, "stream_arn", "give stream_name or stream_arn, not both");
	char region[64], msg[KR_ERRBUF];
	if (c->stream_arn && !arn_region(c->stream_arn, region, sizeof region))
		return kr_opts_reject(chk, "stream_arn",
				      "not a stream ARN (arn:aws:kinesis:REGION:ACCOUNT:stream/NAME)");
	if (c->stream_name &&
	    (!*c->stream_name || strlen(c->stream_name) > 128 ||
	     strspn(c->stream_name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
		     strlen(c->stream_name)))
		return kr_opts_reject(chk, "stream_name",
				      "a stream name has 1 to 128 letters, digits, '_', '.' and '-'");
	struct kr_tmpl *t = kr_tmpl_new(c->partition_key, msg);
	if (!t)
		return kr_opts_reject(chk, "partition_key", "%s", msg);
	kr_tmpl_free(t);
	return KR_OK;
}

struct kinesis_sink {
	struct kr_aws *aws;
	struct kr_batcher *batcher;
	char *stream_member; /* "\"StreamName\":\"...\"" or the ARN's */
	struct kr_tmpl *key;
	uint64_t timeout_ms;
	bool closing;
	struct kr_buf scratch;
};

static const struct kr_aws_service kinesis_service = {"kinesis", "KINESIS"};

static void kinesis_destroy(void *ctx);

/* A partition key from the payload when the template gives none: FNV-1a, in hex. */
static void hashed_key(const char *p, size_t n, char out[17])
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
	snprintf(out, 17, "%016llx", (unsigned long long)h);
}

static void kinesis_submit(void *ctx, struct kr_delivery *d)
{
	struct kinesis_sink *s = ctx;
	struct kr_event_text ev = kr_event_text_of(d->event, d->event_len);
	size_t n = 0;
	const char *key = kr_tmpl_text(s->key, &ev, &s->scratch, &n);
	char hashed[17];
	if (key && (!n || n > KINESIS_MAX_KEY)) {
		/* no key for this event (or one Kinesis refuses): spread by the payload */
		hashed_key(d->payload, d->len, hashed);
		key = hashed;
		n = 16;
	}
	if (!key) {
		kr_delivery_done(d, KR_RETRYABLE, 0, "ENOMEM", "out of memory");
		return;
	}
	if (d->len + n > KINESIS_MAX_RECORD) {
		char msg[128];
		snprintf(msg, sizeof msg, "the record is %zu bytes with its key; Kinesis takes 1 MiB",
			 d->len + n);
		kr_delivery_done(d, KR_PERMANENT, 0, "RecordTooLarge", msg);
		return;
	}
	struct kr_buf b = {0};
	/* the record's text after its Data: the payload is encoded when the request is built,
	   from the payload itself, which lives as long as the delivery (kept once, not twice) */
	bool ok = kr_prepared_begin(&b, n * 6 + 32) && kr_buf_puts(&b, "\",\"PartitionKey\":") &&
		  kr_buf_json_string(&b, key, n) && kr_buf_puts(&b, "}");
	if (!ok) {
		kr_buf_free(&b);
		kr_delivery_done(d, KR_RETRYABLE, 0, "ENOMEM", "out of memory");
		return;
	}
	d->sink_data = kr_prepared_finish(&b, d->len + n);
	kr_batcher_add(s->batcher, d);
}

/* Record i's result: delivered (a SequenceNumber and no ErrorCode), or failed with its code. */
static bool record_result(void *ctx, size_t i, const char *item, size_t len)
{
	struct kr_batch *bt = ctx;
	if (i >= bt->n)
		return false;
	struct kr_json_members m;
	kr_json_members_scan(&m, item, len);
	struct kr_json_span code, msg, seq;
	bool has_code = kr_json_members_path(&m, "$.ErrorCode", &code);
	if (!has_code && kr_json_members_path(&m, "$.SequenceNumber", &seq)) {
		kr_batch_entry(bt, i, KR_DELIVERED, 0, NULL, NULL);
	} else if (has_code && code.type == KR_JSON_STRING) {
		struct kr_buf c = {0}, t = {0};
		if (!kr_json_span_string(&c, &code) || !kr_buf_append(&c, "", 1) ||
		    !kr_buf_append(&t, "", 1)) {
			kr_buf_free(&c);
			kr_buf_free(&t);
			return true; /* out of memory: the record gets the request's result */
		}
		if (kr_json_members_path(&m, "$.ErrorMessage", &msg) && msg.type == KR_JSON_STRING) {
			t.len = 0;
			if (!kr_json_span_string(&t, &msg) || !kr_buf_append(&t, "", 1)) {
				t.len = 0;
				(void)kr_buf_append(&t, "", 1);
			}
		}
		/* Kinesis names two: ProvisionedThroughputExceededException and InternalFailure,
		   both worth another try; anything else is not */
		kr_batch_entry(bt, i, kr_aws_retryable_code(c.p) ? KR_RETRYABLE : KR_PERMANENT, 0,
			       c.p, t.p);
		kr_buf_free(&c);
		kr_buf_free(&t);
	}
	return true;
}

/* The per-record results of a 200 response: Records[i] is record i's. */
static void record_results(struct kr_batch *bt, const struct kr_http_response *h)
{
	if (kr_json_valid(h->body, h->body_len))
		(void)kr_json_text_items(h->body, h->body_len, "$.Records", record_result, bt);
}

static void send_batch(void *ctx, struct kr_batch *bt)
{
	struct kinesis_sink *s = ctx;
	if (s->closing) {
		kr_batch_end(bt, KR_RETRYABLE, 0, "Closed", "the sink was closed");
		return;
	}
	struct kr_buf b = {0};
	bool ok = kr_buf_reserve(&b, bt->bytes * 4 / 3 + 64 * bt->n + 256) &&
		  kr_buf_puts(&b, "{") && kr_buf_puts(&b, s->stream_member) &&
		  kr_buf_puts(&b, ",\"Records\":[");
	for (size_t i = 0; ok && i < bt->n; i++) {
		const struct kr_delivery *d = bt->entries[i];
		const struct kr_prepared *en = d->sink_data;
		ok = kr_buf_puts(&b, i ? ",{\"Data\":\"" : "{\"Data\":\"") &&
		     kr_buf_base64(&b, d->payload, d->len) && kr_buf_append(&b, en->text, en->len);
	}
	ok = ok && kr_buf_puts(&b, "]}");
	if (!ok) {
		kr_buf_free(&b);
		kr_batch_end(bt, KR_RETRYABLE, 0, "ENOMEM", "out of memory");
		return;
	}
	struct kr_aws_call call = {.target = "Kinesis_20131202.PutRecords",
				   .content_type = "application/x-amz-json-1.1",
				   .timeout_ms = s->timeout_ms,
				   .max_body = 4 << 20};
	kr_aws_send_batch(s->aws, bt, &call, &b, record_results, "PutRecords");
}

static enum kr_err kinesis_create(const struct kr_sink_args *a, void **ctx, char *err)
{
	const struct kinesis_conf *c = a->conf;
	struct kinesis_sink *s = calloc(1, sizeof *s);
	if (!s)
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	s->timeout_ms = a->timeout_ms;
	struct kr_buf m = {0};
	bool ok = c->stream_arn ? kr_buf_puts(&m, "\"StreamARN\":") &&
					  kr_buf_json_string(&m, c->stream_arn, strlen(c->stream_arn))
				: kr_buf_puts(&m, "\"StreamName\":") &&
					  kr_buf_json_string(&m, c->stream_name, strlen(c->stream_name));
	s->stream_member = m.p;
	enum kr_err e = ok ? KR_OK : kr_errf(err, KR_ERR_NOMEM, "out of memory");
	if (!e && !(s->key = kr_tmpl_new(c->partition_key, err)))
		e = KR_ERR_CONFIG;
	struct kr_aws_conf aws = c->aws;
	char region[64];
	if (!aws.region && c->stream_arn && arn_region(c->stream_arn, region, sizeof region))
		aws.region = region;
	if (!e)
		e = kr_aws_new(a->loop, &aws, &kinesis_service, &s->aws, err);
	if (!e) {
		struct kr_batch_opts bo = {.max_entries = c->batch_size,
					   .max_bytes = c->max_bytes,
					   .linger_ms = c->linger_ms,
					   .max_in_flight = a->concurrency,
					   .entry_size = kr_prepared_size,
					   .release = kr_prepared_release,
					   .send = send_batch,
					   .ctx = s};
		if (kr_batcher_new(a->loop, &bo, &s->batcher) != KR_OK)
			e = kr_errf(err, KR_ERR_NOMEM, "out of memory");
	}
	if (e) {
		kinesis_destroy(s);
		return e;
	}
	*ctx = s;
	return KR_OK;
}

static void kinesis_flush(void *ctx)
{
	struct kinesis_sink *s = ctx;
	kr_batcher_flush(s->batcher);
}

static void kinesis_destroy(void *ctx)
{
	struct kinesis_sink *s = ctx;
	s->closing = true;
	kr_aws_free(s->aws); /* ends the batches in flight (as failures) */
	kr_batcher_free(s->batcher);
	kr_tmpl_free(s->key);
	kr_buf_free(&s->scratch);
	free(s->stream_member);
	free(s);
}

/* How the plugin behaves: `kmsrouter help config TYPE` and kmsrouter.conf(5). */
static const char kinesis_doc[] =
	"PutRecords of up to batch_size records and max_batch_bytes (data and partition keys, as "
	"Kinesis counts them) per request, batched as the sqs sink does (linger_ms). "
	"partition_key is a template (default <$.detail.key-id>, so one key's events go to one "
	"shard); an event without the fields it names gets a key hashed from its payload. "
	"concurrency (requests in flight) defaults to 1, which keeps each key's events in order "
	"on its shard (but for a record Kinesis refused, which is sent again after those that "
	"followed it).\n\n"
	"Each record has its own result: only the records Kinesis refused "
	"(ProvisionedThroughputExceededException, InternalFailure) are sent again, so a hot shard "
	"does not resend the rest. A record over 1 MiB goes to the dead letter unsent "
	"(RecordTooLarge). A failed request (throttled, 5xx, no answer) retries its records; "
	"access denied, a stream that does not exist or a bad signature send them to the dead "
	"letter. With stream_arn the region is the ARN's unless region says otherwise.\n\n"
	"IAM (least privilege): kinesis:PutRecords on the stream, and kms:GenerateDataKey on its "
	"key where the stream is encrypted with a customer managed key.";

const struct kr_sink_plugin kr_sink_kinesis = {
	.name = "kinesis",
	.description = "puts each event as a record of an Amazon Kinesis data stream (PutRecords), "
		       "partitioned by key id",
	.doc = kinesis_doc,
	.options = kinesis_options,
	.conf_size = sizeof(struct kinesis_conf),
	.validate = kinesis_validate,
	.default_concurrency = 1,
	.batches = true,
	.create = kinesis_create,
	.submit = kinesis_submit,
	.flush = kinesis_flush,
	.destroy = kinesis_destroy,
};
