/* sqs sink: each payload a message of an Amazon SQS queue.
 *
 * SendMessageBatch (JSON protocol) with up to batch_size entries (10 at most) and max_batch_bytes
 * (256 KiB by default: message bodies and attributes, as SQS counts them) per request; up to
 * "concurrency" requests in flight. Each entry gets its own result: an entry the service took is
 * delivered; a failed one is retryable unless the service says it is the sender's fault (or its
 * code says throttling), so a partial failure retries only the entries that failed. A failed
 * request (throttled, 5xx, no response) retries its entries; access denied, a queue that does
 * not exist or a bad signature fail them permanently (the dead letter gets the AWS code and
 * message).
 *
 * Message attributes come from the event the delivery is for (message_attributes: JSONPaths,
 * each attribute named by the path's last segment, by default detail-type, source, account,
 * region and key-id), so consumers and filters can see them without reading the body; a field
 * the event lacks gives no attribute. A FIFO queue (a queue_url ending in .fifo) gets a message
 * group id (default: the key id, so one key's events stay in order) and a deduplication id
 * (default: the event id) from templates; a message whose group id comes out empty or
 * incomplete (a field it names is missing) fails permanently ("MissingGroupId"), and such a
 * deduplication id is left out (for queues with content-based deduplication); it gets one request
 * in flight at a time, whatever concurrency says, so that batches cannot overtake each other.
 * IAM: sqs:SendMessage on the queue. */
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

#define SQS_MAX_ENTRIES 10
#define SQS_MAX_ATTRIBUTES 10

struct sqs_conf {
	struct kr_aws_conf aws;
	const char *queue_url;
	struct kr_strings attributes;
	const char *group_id, *dedup_id;
	uint64_t batch_size, max_bytes, linger_ms;
};

static const struct kr_option sqs_options[] = {
	{.name = "queue_url", .type = KR_OPT_URL, .offset = offsetof(struct sqs_conf, queue_url),
	 .values = kr_aws_schemes, .required = true,
	 .help = "the queue's URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)"},
	{.name = "message_attributes", .type = KR_OPT_STRINGS,
	 .offset = offsetof(struct sqs_conf, attributes),
	 .def = "[\"$.detail-type\", \"$.source\", \"$.account\", \"$.region\", "
		"\"$.detail.key-id\"]",
	 .help = "event fields sent as message attributes, each named by its path's last segment "
		 "(at most 10; [] for none)"},
	{.name = "message_group_id", .type = KR_OPT_STRING,
	 .offset = offsetof(struct sqs_conf, group_id), .def = "\"<$.detail.key-id>\"",
	 .help = "FIFO queues: the message group id, a template (<$.path> placeholders)"},
	{.name = "deduplication_id", .type = KR_OPT_STRING,
	 .offset = offsetof(struct sqs_conf, dedup_id), .def = "\"<$.id>\"",
	 .help = "FIFO queues: the message deduplication id, a template (\"\": none, for "
		 "content-based deduplication)"},
	{.name = "batch_size", .type = KR_OPT_INT, .offset = offsetof(struct sqs_conf, batch_size),
	 .def = "10", .min = 1, .max = SQS_MAX_ENTRIES, .help = "messages per SendMessageBatch"},
	{.name = "max_batch_bytes", .type = KR_OPT_SIZE,
	 .offset = offsetof(struct sqs_conf, max_bytes), .def = "262144", .min = 1024,
	 .max = 1048576,
	 .help = "bytes per request (bodies and attributes): 256 KiB, or up to 1 MiB where the "
		 "queue allows it"},
	{.name = "linger_ms", .type = KR_OPT_DURATION, .offset = offsetof(struct sqs_conf, linger_ms),
	 .def = "0", .max = 60000,
	 .help = "wait this long for a batch to fill (0: a batch not yet full goes at the end of "
		 "the engine's round, or, while batches are out, when they are all back)"},
	KR_AWS_OPTIONS(struct sqs_conf, aws),
	{0},
};

static enum kr_err sqs_validate(const void *conf, const struct kr_opts_check *chk)
{
	const struct sqs_conf *c = conf;
	enum kr_err e = kr_aws_validate(&c->aws, chk);
	if (e)
		return e;
	const char *path = strstr(c->queue_url, "://");
	path = path ? strchr(path + 3, '/') : NULL;
	if (!path || !path[1])
		return kr_opts_reject(chk, "queue_url",
				      "must name the queue: https://sqs.REGION.amazonaws.com/"
				      "ACCOUNT/NAME");
	char msg[512];
	if (kr_attr_list_check(&c->attributes, SQS_MAX_ATTRIBUTES, msg, sizeof msg))
		return kr_opts_reject(chk, "message_attributes", "%s", msg);
	char err[KR_ERRBUF];
	struct kr_tmpl *t;
	if (!(t = kr_tmpl_new(c->group_id, err)))
		return kr_opts_reject(chk, "message_group_id", "%s", err);
	kr_tmpl_free(t);
	if (!(t = kr_tmpl_new(c->dedup_id, err)))
		return kr_opts_reject(chk, "deduplication_id", "%s", err);
	kr_tmpl_free(t);
	return KR_OK;
}

struct sqs_sink {
	struct kr_aws *aws;
	struct kr_batcher *batcher;
	char *queue_url;
	bool fifo;
	char **attrs; /* JSONPaths */
	size_t nattrs;
	struct kr_tmpl *group_id, *dedup_id;
	uint64_t timeout_ms;
	bool closing;
	struct kr_buf scratch;
};

/* What submit prepares for each delivery (its sink_data, a kr_prepared): the entry's JSON
 * members after "Id" and "MessageBody" (the body is encoded from the payload when the request
 * is built), and its size as SQS counts it. */
static const struct kr_aws_service sqs_service = {"sqs", "SQS"};

static void sqs_destroy(void *ctx);


/* Appends ,"Name":{"DataType":...,"StringValue":...} members for the event's attributes;
 * *bytes grows by what SQS counts (name, type and value). */
static bool put_attributes(struct sqs_sink *s, struct kr_event_text *ev, struct kr_buf *b,
			   size_t *bytes)
{
	bool first = true;
	for (size_t i = 0; i < s->nattrs; i++) {
		size_t n;
		bool num;
		const char *v = kr_attr_value(ev, s->attrs[i], &s->scratch, &n, &num);
		if (!v)
			continue;
		const char *name = kr_attr_name(s->attrs[i]);
		const char *type = num ? "Number" : "String";
		if (!kr_buf_puts(b, first ? ",\"MessageAttributes\":{" : ",") ||
		    !kr_buf_json_string(b, name, strlen(name)) ||
		    !kr_buf_puts(b, ":{\"DataType\":\"") || !kr_buf_puts(b, type) ||
		    !kr_buf_puts(b, "\",\"StringValue\":") || !kr_buf_json_string(b, v, n) ||
		    !kr_buf_puts(b, "}"))
			return false;
		first = false;
		*bytes += strlen(name) + strlen(type) + n;
	}
	return first || kr_buf_puts(b, "}");
}

static void sqs_submit(void *ctx, struct kr_delivery *d)
{
	struct sqs_sink *s = ctx;
	struct kr_buf b = {0};
	struct kr_event_text ev = kr_event_text_of(d->event, d->event_len);
	size_t bytes = d->len;
	const char *why = NULL, *code = "ENOMEM";
	/* the body is encoded when the request is built, from the payload, which lives as long as
	   the delivery (kept once, not twice): what is prepared here is what follows it */
	bool ok = kr_prepared_begin(&b, 256) && put_attributes(s, &ev, &b, &bytes);
	if (ok && s->fifo) {
		size_t n;
		const char *g = kr_tmpl_text(s->group_id, &ev, &s->scratch, &n);
		ok = g != NULL;
		if (ok && !n) {
			code = "MissingGroupId";
			why = "message_group_id gives no group id for this event: a field it names "
			      "is missing, or it is empty";
			ok = false;
		}
		ok = ok && kr_buf_puts(&b, ",\"MessageGroupId\":") && kr_buf_json_string(&b, g, n);
		const char *dd = ok ? kr_tmpl_text(s->dedup_id, &ev, &s->scratch, &n) : NULL;
		ok = ok && dd;
		if (ok && n)
			ok = kr_buf_puts(&b, ",\"MessageDeduplicationId\":") &&
			     kr_buf_json_string(&b, dd, n);
	}
	if (!ok) {
		kr_buf_free(&b);
		kr_delivery_done(d, why ? KR_PERMANENT : KR_RETRYABLE, 0, code,
				 why ? why : "out of memory");
		return;
	}
	d->sink_data = kr_prepared_finish(&b, bytes);
	kr_batcher_add(s->batcher, d);
}

/* A string member of an entry's result, decoded into b (NUL-terminated); false when it has
 * none, or out of memory. */
static bool entry_string(const struct kr_json_members *m, const char *path, struct kr_buf *b)
{
	struct kr_json_span sp;
	b->len = 0;
	return kr_json_members_path(m, path, &sp) && sp.type == KR_JSON_STRING &&
	       kr_json_span_string(b, &sp) && kr_buf_append(b, "", 1);
}

struct results {
	struct kr_batch *bt;
	bool failed; /* the Failed list: else Successful */
};

/* One entry of the Successful or Failed list: its Id is the entry's index in the batch. */
static bool entry_result(void *ctx, size_t i, const char *item, size_t len)
{
	(void)i;
	struct results *r = ctx;
	struct kr_json_members m;
	kr_json_members_scan(&m, item, len);
	struct kr_buf id = {0}, code = {0}, msg = {0};
	if (entry_string(&m, "$.Id", &id)) {
		size_t at = strtoul(id.p, NULL, 10);
		if (!r->failed) {
			kr_batch_entry(r->bt, at, KR_DELIVERED, 0, NULL, NULL);
		} else {
			struct kr_json_span sender;
			const char *c = entry_string(&m, "$.Code", &code) ? code.p : "EntryFailed";
			bool retry = !(kr_json_members_path(&m, "$.SenderFault", &sender) &&
				       sender.type == KR_JSON_TRUE) ||
				     kr_aws_retryable_code(c);
			kr_batch_entry(r->bt, at, retry ? KR_RETRYABLE : KR_PERMANENT, 0, c,
				       entry_string(&m, "$.Message", &msg) ? msg.p : "");
		}
	}
	kr_buf_free(&id);
	kr_buf_free(&code);
	kr_buf_free(&msg);
	return true;
}

/* The per-entry results of a 200 response. */
static void entry_results(struct kr_batch *bt, const struct kr_http_response *h)
{
	if (!kr_json_valid(h->body, h->body_len))
		return;
	struct results ok = {bt, false}, bad = {bt, true};
	(void)kr_json_text_items(h->body, h->body_len, "$.Successful", entry_result, &ok);
	(void)kr_json_text_items(h->body, h->body_len, "$.Failed", entry_result, &bad);
}

static void send_batch(void *ctx, struct kr_batch *bt)
{
	struct sqs_sink *s = ctx;
	if (s->closing) {
		kr_batch_end(bt, KR_RETRYABLE, 0, "Closed", "the sink was closed");
		return;
	}
	struct kr_buf b = {0};
	bool ok = kr_buf_reserve(&b, bt->bytes + bt->bytes / 8 + 512) &&
		  kr_buf_puts(&b, "{\"QueueUrl\":") &&
		  kr_buf_json_string(&b, s->queue_url, strlen(s->queue_url)) &&
		  kr_buf_puts(&b, ",\"Entries\":[");
	for (size_t i = 0; ok && i < bt->n; i++) {
		const struct kr_prepared *en = bt->entries[i]->sink_data;
		const struct kr_delivery *d = bt->entries[i];
		ok = kr_buf_puts(&b, i ? ",{\"Id\":\"" : "{\"Id\":\"") && kr_buf_uint(&b, i) &&
		     kr_buf_puts(&b, "\",\"MessageBody\":") &&
		     kr_buf_json_string(&b, d->payload, d->len) &&
		     kr_buf_append(&b, en->text, en->len) && kr_buf_puts(&b, "}");
	}
	ok = ok && kr_buf_puts(&b, "]}");
	if (!ok) {
		kr_buf_free(&b);
		kr_batch_end(bt, KR_RETRYABLE, 0, "ENOMEM", "out of memory");
		return;
	}
	struct kr_aws_call call = {.target = "AmazonSQS.SendMessageBatch",
				   .timeout_ms = s->timeout_ms,
				   .max_body = 1 << 20};
	kr_aws_send_batch(s->aws, bt, &call, &b, entry_results, "SendMessageBatch");
}

static enum kr_err sqs_create(const struct kr_sink_args *a, void **ctx, char *err)
{
	const struct sqs_conf *c = a->conf;
	struct sqs_sink *s = calloc(1, sizeof *s);
	if (!s)
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	s->timeout_ms = a->timeout_ms;
	size_t ul = strlen(c->queue_url);
	s->fifo = ul > 5 && strcmp(c->queue_url + ul - 5, ".fifo") == 0;
	enum kr_err e = KR_OK;
	if (!(s->queue_url = strdup(c->queue_url)) ||
	    !(s->attrs = calloc(c->attributes.n + 1, sizeof *s->attrs)))
		e = kr_errf(err, KR_ERR_NOMEM, "out of memory");
	for (size_t i = 0; !e && i < c->attributes.n; i++, s->nattrs++)
		if (!(s->attrs[i] = strdup(c->attributes.v[i])))
			e = kr_errf(err, KR_ERR_NOMEM, "out of memory");
	if (!e && !(s->group_id = kr_tmpl_new(c->group_id, err)))
		e = KR_ERR_CONFIG;
	if (!e && !(s->dedup_id = kr_tmpl_new(c->dedup_id, err)))
		e = KR_ERR_CONFIG;
	if (!e)
		e = kr_aws_new(a->loop, &c->aws, &sqs_service, &s->aws, err);
	if (!e) {
		struct kr_batch_opts bo = {.max_entries = c->batch_size,
					   .max_bytes = c->max_bytes,
					   .linger_ms = c->linger_ms,
					   /* FIFO: one request at a time, or two batches
					      could overtake each other and a group's order */
					   .max_in_flight = s->fifo ? 1 : a->concurrency,
					   .entry_size = kr_prepared_size,
					   .release = kr_prepared_release,
					   .send = send_batch,
					   .ctx = s};
		if (kr_batcher_new(a->loop, &bo, &s->batcher) != KR_OK)
			e = kr_errf(err, KR_ERR_NOMEM, "out of memory");
	}
	if (e) {
		sqs_destroy(s);
		return e;
	}
	*ctx = s;
	return KR_OK;
}

static void sqs_flush(void *ctx)
{
	struct sqs_sink *s = ctx;
	kr_batcher_flush(s->batcher);
}

static void sqs_destroy(void *ctx)
{
	struct sqs_sink *s = ctx;
	s->closing = true;
	kr_aws_free(s->aws); /* ends the batches in flight (as failures) */
	kr_batcher_free(s->batcher);
	for (size_t i = 0; i < s->nattrs; i++)
		free(s->attrs[i]);
	free(s->attrs);
	kr_tmpl_free(s->group_id);
	kr_tmpl_free(s->dedup_id);
	kr_buf_free(&s->scratch);
	free(s->queue_url);
	free(s);
}

/* How the plugin behaves: `kmsrouter help config TYPE` and kmsrouter.conf(5). */
static const char sqs_doc[] =
	"SendMessageBatch of up to batch_size messages and max_batch_bytes (bodies and "
	"attributes, as SQS counts them) per request; a batch not yet full goes at the end of the "
	"engine's round (or, while batches are out, when they are all back), or after linger_ms. "
	"concurrency is the number of requests in flight (default 8). Each message has its own "
	"result: a partial failure retries only the messages that failed, and a failure the "
	"service calls the sender's fault (not throttling) goes to the dead letter. A failed "
	"request (throttled, 5xx, no answer) retries its messages; access denied, a queue that "
	"does not exist or a bad signature send them to the dead letter with the AWS error code "
	"and message.\n\n"
	"message_attributes: event fields sent as String (or Number) message attributes, each "
	"named by its path's last segment (a field the event lacks gives none); by default "
	"$.detail-type, $.source, $.account, $.region and $.detail.key-id, so consumers and "
	"SNS-style filters see them without reading the body.\n\n"
	"FIFO queues (a queue_url ending in .fifo): message_group_id (default <$.detail.key-id>: "
	"one key's events stay in order) and deduplication_id (default <$.id>; \"\" for "
	"content-based deduplication) are templates, text with <$.path> placeholders. An event "
	"for which the group id comes out empty or incomplete (a field it names is missing) goes "
	"to the dead letter (MissingGroupId); such a deduplication id is left out. A FIFO queue "
	"gets one request in flight at a time, whatever concurrency says, so batches cannot "
	"overtake each other (a message the service refuses is sent again after those that "
	"followed it).\n\n"
	"IAM (least privilege): sqs:SendMessage on the queue, and kms:GenerateDataKey + "
	"kms:Decrypt on its key where the queue is encrypted with a customer managed key.";

const struct kr_sink_plugin kr_sink_sqs = {
	.name = "sqs",
	.description = "sends each event as a message of an Amazon SQS queue (SendMessageBatch)",
	.doc = sqs_doc,
	.options = sqs_options,
	.conf_size = sizeof(struct sqs_conf),
	.validate = sqs_validate,
	.default_concurrency = 8,
	.batches = true,
	.create = sqs_create,
	.submit = sqs_submit,
	.flush = sqs_flush,
	.destroy = sqs_destroy,
};
