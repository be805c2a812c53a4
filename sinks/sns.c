/* sns sink: each payload a message published to an Amazon SNS topic.
 *
 * PublishBatch (the query protocol: a form-encoded request, an XML response) with up to
 * batch_size entries (10 at most) and max_batch_bytes (256 KiB: messages and attributes) per
 * request; up to "concurrency" requests in flight. Each entry has its own result: an entry SNS
 * took is delivered; a failed one is retryable unless SNS says it is the sender's fault (and its
 * code is not throttling), so a partial failure retries only what failed. A failed request
 * (throttled, 5xx, no response) retries its entries; access denied, a topic that does not
 * exist, a bad signature fail them permanently, with the AWS code and message.
 *
 * Message attributes come from the event (message_attributes, as for the sqs sink: by default
 * detail-type, source, account, region and key-id), so subscription filter policies can select
 * on them. subject is an optional template (control characters become spaces; at most 99
 * characters; left out when a field it names is missing). A FIFO topic (an ARN ending in .fifo)
 * gets a message group id (default: the key id) and a deduplication id (default: the event id)
 * from templates and one request in flight at a time, as the sqs sink does. The region is the option's, else the topic ARN's.
 * IAM: sns:Publish on the topic (and kms:GenerateDataKey + kms:Decrypt on its key where the
 * topic is encrypted with a customer managed key). */
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

#define SNS_MAX_ENTRIES 10
#define SNS_MAX_ATTRIBUTES 10
#define SNS_MAX_SUBJECT 99
/* where a member's prefix goes in a prepared entry: "&PublishBatchRequestEntries.member.N." */
#define MARK '\001'

struct sns_conf {
	struct kr_aws_conf aws;
	const char *topic_arn;
	struct kr_strings attributes;
	const char *subject;
	const char *group_id, *dedup_id;
	uint64_t batch_size, max_bytes, linger_ms;
};

static const struct kr_option sns_options[] = {
	{.name = "topic_arn", .type = KR_OPT_STRING, .offset = offsetof(struct sns_conf, topic_arn),
	 .required = true, .help = "the topic (arn:aws:sns:REGION:ACCOUNT:NAME)"},
	{.name = "message_attributes", .type = KR_OPT_STRINGS,
	 .offset = offsetof(struct sns_conf, attributes),
	 .def = "[\"$.detail-type\", \"$.source\", \"$.account\", \"$.region\", "
		"\"$.detail.key-id\"]",
	 .help = "event fields sent as message attributes, each named by its path's last segment "
		 "(at most 10; [] for none)"},
	{.name = "subject", .type = KR_OPT_STRING, .offset = offsetof(struct sns_conf, subject),
	 .help = "the subject (e-mail subscriptions), a template (<$.path> placeholders)"},
	{.name = "message_group_id", .type = KR_OPT_STRING,
	 .offset = offsetof(struct sns_conf, group_id), .def = "\"<$.detail.key-id>\"",
	 .help = "FIFO topics: the message group id, a template"},
	{.name = "deduplication_id", .type = KR_OPT_STRING,
	 .offset = offsetof(struct sns_conf, dedup_id), .def = "\"<$.id>\"",
	 .help = "FIFO topics: the message deduplication id, a template (\"\": none, for "
		 "content-based deduplication)"},
	{.name = "batch_size", .type = KR_OPT_INT, .offset = offsetof(struct sns_conf, batch_size),
	 .def = "10", .min = 1, .max = SNS_MAX_ENTRIES, .help = "messages per PublishBatch"},
	{.name = "max_batch_bytes", .type = KR_OPT_SIZE,
	 .offset = offsetof(struct sns_conf, max_bytes), .def = "262144", .min = 1024,
	 .max = 262144, .help = "bytes per request (messages and attributes)"},
	{.name = "linger_ms", .type = KR_OPT_DURATION, .offset = offsetof(struct sns_conf, linger_ms),
	 .def = "0", .max = 60000,
	 .help = "wait this long for a batch to fill (0: a batch not yet full goes at the end of "
		 "the engine's round, or, while batches are out, when they are all back)"},
	KR_AWS_OPTIONS(struct sns_conf, aws),
	{0},
};

/* The region of a topic ARN (arn:PARTITION:sns:REGION:ACCOUNT:NAME) into out; false when the
 * ARN does not have that shape. */
static bool arn_region(const char *arn, char *out, size_t cap)
{
	const char *f[6];
	size_t n = 0;
	for (const char *p = arn; n < 6; n++) {
		f[n] = p;
		const char *c = strchr(p, ':');
		if (!c) {
			n++;
			break;
		}
		p = c + 1;
	}
	if (n != 6 || strncmp(arn, "arn:", 4) != 0 || strncmp(f[2], "sns:", 4) != 0 ||
	    !*f[5] || strchr(f[5], ':') || f[4] - f[3] < 2)
		return false;
	size_t rl = (size_t)(f[4] - f[3] - 1);
	if (rl + 1 > cap)
		return false;
	memcpy(out, f[3], rl);
	out[rl] = 0;
	return true;
}

static enum kr_err sns_validate(const void *conf, const struct kr_opts_check *chk)
{
	const struct sns_conf *c = conf;
	enum kr_err e = kr_aws_validate(&c->aws, chk);
	if (e)
		return e;
	char region[64], msg[512];
	if (!arn_region(c->topic_arn, region, sizeof region))
		return kr_opts_reject(chk, "topic_arn",
				      "not a topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)");
	if (kr_attr_list_check(&c->attributes, SNS_MAX_ATTRIBUTES, msg, sizeof msg))
		return kr_opts_reject(chk, "message_attributes", "%s", msg);
	static const char *const names[] = {"subject", "message_group_id", "deduplication_id"};
	const char *const texts[] = {c->subject, c->group_id, c->dedup_id};
	for (size_t i = 0; i < 3; i++) {
		struct kr_tmpl *t = texts[i] ? kr_tmpl_new(texts[i], msg) : NULL;
		if (texts[i] && !t)
			return kr_opts_reject(chk, names[i], "%s", msg);
		kr_tmpl_free(t);
	}
	return KR_OK;
}

struct sns_sink {
	struct kr_aws *aws;
	struct kr_batcher *batcher;
	char *topic_arn;
	bool fifo;
	char **attrs;
	size_t nattrs;
	struct kr_tmpl *subject, *group_id, *dedup_id;
	uint64_t timeout_ms;
	bool closing;
	struct kr_buf scratch;
};

/* A delivery's prepared fields (its sink_data, a kr_prepared): "MARKName=value" runs, the
 * member prefix to be put at each MARK, and its size as SNS counts it; its Message is encoded
 * from the payload when the request is built. */
static const struct kr_aws_service sns_service = {"sns", "SNS"};

static void sns_destroy(void *ctx);


/* Appends MARK name=value (value url-encoded); the name is nl bytes. */
static bool field_n(struct kr_buf *b, const char *name, size_t nl, const char *v, size_t n)
{
	if (!kr_buf_reserve(b, nl + 2))
		return false;
	b->p[b->len++] = MARK;
	memcpy(b->p + b->len, name, nl);
	b->len += nl;
	b->p[b->len++] = '=';
	return kr_buf_urlencode(b, v, n);
}

static bool field(struct kr_buf *b, const char *name, const char *v, size_t n)
{
	return field_n(b, name, strlen(name), v, n);
}

/* Appends attribute k's three fields: MessageAttributes.entry.K.Name, .Value.DataType and
 * .Value.StringValue. */
static bool put_attribute(struct kr_buf *b, size_t k, const char *name, const char *type,
			  const char *v, size_t n)
{
	static const char head[] = "MessageAttributes.entry.";
	char key[sizeof head + 48];
	size_t kl = sizeof head - 1;
	memcpy(key, head, kl);
	if (k >= 10) /* at most SNS_MAX_ATTRIBUTES */
		key[kl++] = (char)('0' + k / 10);
	key[kl++] = (char)('0' + k % 10);
	static const char *const tails[] = {".Name", ".Value.DataType", ".Value.StringValue"};
	const char *const vals[] = {name, type, v};
	const size_t lens[] = {strlen(name), strlen(type), n};
	for (size_t i = 0; i < 3; i++) {
		size_t tl = strlen(tails[i]);
		memcpy(key + kl, tails[i], tl);
		if (!field_n(b, key, kl + tl, vals[i], lens[i]))
			return false;
	}
	return true;
}

static bool put_attributes(struct sns_sink *s, struct kr_event_text *ev, struct kr_buf *b,
			   size_t *bytes)
{
	size_t k = 0;
	for (size_t i = 0; i < s->nattrs; i++) {
		size_t n;
		bool num;
		const char *v = kr_attr_value(ev, s->attrs[i], &s->scratch, &n, &num);
		if (!v)
			continue;
		const char *name = kr_attr_name(s->attrs[i]);
		const char *type = num ? "Number" : "String";
		if (!put_attribute(b, ++k, name, type, v, n))
			return false;
		*bytes += strlen(name) + strlen(type) + n;
	}
	return true;
}

/* The subject as SNS takes it: no control characters, at most SNS_MAX_SUBJECT bytes. */
static bool put_subject(struct sns_sink *s, struct kr_event_text *ev, struct kr_buf *b)
{
	size_t n;
	const char *t = kr_tmpl_text(s->subject, ev, &s->scratch, &n);
	if (!t)
		return false;
	if (!n)
		return true;
	char *w = s->scratch.p;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)w[i] < 0x20 || w[i] == 0x7f)
			w[i] = ' ';
	return field(b, "Subject", w, n < SNS_MAX_SUBJECT ? n : SNS_MAX_SUBJECT);
}

static void sns_submit(void *ctx, struct kr_delivery *d)
{
	struct sns_sink *s = ctx;
	struct kr_buf b = {0};
	struct kr_event_text ev = kr_event_text_of(d->event, d->event_len);
	size_t bytes = d->len;
	const char *why = NULL, *code = "ENOMEM";
	/* the Message is encoded when the request is built, from the payload, which lives as long
	   as the delivery (kept once, not twice): what is prepared here are the other fields */
	bool ok = kr_prepared_begin(&b, 512) && put_attributes(s, &ev, &b, &bytes) &&
		  (!s->subject || put_subject(s, &ev, &b));
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
		ok = ok && field(&b, "MessageGroupId", g, n);
		const char *dd = ok ? kr_tmpl_text(s->dedup_id, &ev, &s->scratch, &n) : NULL;
		ok = ok && dd && (!n || field(&b, "MessageDeduplicationId", dd, n));
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

/* The per-entry results of a 200 response: <Successful> and <Failed> lists of <member>. */
static void entry_results(struct kr_batch *bt, const struct kr_http_response *h)
{
	const char *end = h->body + h->body_len, *pos = h->body, *a, *z;
	if (kr_aws_xml_next(&pos, end, "Successful", &a, &z)) {
		const char *m = a, *ma, *mz;
		while (kr_aws_xml_next(&m, z, "member", &ma, &mz)) {
			char id[16];
			if (kr_aws_xml_text(ma, mz, "Id", id, sizeof id))
				kr_batch_entry(bt, strtoul(id, NULL, 10), KR_DELIVERED, 0, NULL, NULL);
		}
	}
	pos = h->body;
	if (kr_aws_xml_next(&pos, end, "Failed", &a, &z)) {
		const char *m = a, *ma, *mz;
		while (kr_aws_xml_next(&m, z, "member", &ma, &mz)) {
			char id[16], code[96] = "EntryFailed", msg[320] = "", sender[8] = "";
			if (!kr_aws_xml_text(ma, mz, "Id", id, sizeof id))
				continue;
			kr_aws_xml_text(ma, mz, "Code", code, sizeof code);
			kr_aws_xml_text(ma, mz, "Message", msg, sizeof msg);
			kr_aws_xml_text(ma, mz, "SenderFault", sender, sizeof sender);
			bool retry = strcmp(sender, "true") != 0 || kr_aws_retryable_code(code);
			kr_batch_entry(bt, strtoul(id, NULL, 10), retry ? KR_RETRYABLE : KR_PERMANENT,
				       0, code, msg);
		}
	}
}

static void send_batch(void *ctx, struct kr_batch *bt)
{
	struct sns_sink *s = ctx;
	if (s->closing) {
		kr_batch_end(bt, KR_RETRYABLE, 0, "Closed", "the sink was closed");
		return;
	}
	struct kr_buf b = {0}, *qb = &b;
	bool ok = kr_buf_reserve(qb, bt->bytes * 3 + 1024) &&
		  kr_buf_puts(qb, "Action=PublishBatch&Version=2010-03-31&TopicArn=") &&
		  kr_buf_urlencode(qb, s->topic_arn, strlen(s->topic_arn));
	for (size_t i = 0; ok && i < bt->n; i++) {
		const struct kr_prepared *en = bt->entries[i]->sink_data;
		static const char head[] = "&PublishBatchRequestEntries.member.";
		char prefix[sizeof head + 24];
		size_t pl = sizeof head - 1;
		memcpy(prefix, head, pl);
		if (i + 1 >= 10) /* at most SNS_MAX_ENTRIES */
			prefix[pl++] = (char)('0' + (i + 1) / 10);
		prefix[pl++] = (char)('0' + (i + 1) % 10);
		prefix[pl++] = '.';
		const struct kr_delivery *d = bt->entries[i];
		ok = kr_buf_append(qb, prefix, pl) && kr_buf_puts(qb, "Id=") && kr_buf_uint(qb, i) &&
		     kr_buf_append(qb, prefix, pl) && kr_buf_puts(qb, "Message=") &&
		     kr_buf_urlencode(qb, d->payload, d->len);
		const char *p = en->text, *e = en->text + en->len;
		while (ok && p < e) {
			/* p is at a MARK */
			const char *next = memchr(p + 1, MARK, (size_t)(e - p - 1));
			if (!next)
				next = e;
			ok = kr_buf_reserve(qb, pl + (size_t)(next - p));
			if (ok) {
				memcpy(qb->p + qb->len, prefix, pl);
				memcpy(qb->p + qb->len + pl, p + 1, (size_t)(next - p - 1));
				qb->len += pl + (size_t)(next - p - 1);
				qb->p[qb->len] = 0;
			}
			p = next;
		}
	}
	if (!ok) {
		kr_buf_free(qb);
		kr_batch_end(bt, KR_RETRYABLE, 0, "ENOMEM", "out of memory");
		return;
	}
	struct kr_aws_call call = {.content_type = "application/x-www-form-urlencoded",
				   .timeout_ms = s->timeout_ms,
				   .max_body = 1 << 20};
	kr_aws_send_batch(s->aws, bt, &call, qb, entry_results, "PublishBatch");
}

static enum kr_err sns_create(const struct kr_sink_args *a, void **ctx, char *err)
{
	const struct sns_conf *c = a->conf;
	struct sns_sink *s = calloc(1, sizeof *s);
	if (!s)
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	s->timeout_ms = a->timeout_ms;
	size_t tl = strlen(c->topic_arn);
	s->fifo = tl > 5 && strcmp(c->topic_arn + tl - 5, ".fifo") == 0;
	enum kr_err e = KR_OK;
	if (!(s->topic_arn = strdup(c->topic_arn)) ||
	    !(s->attrs = calloc(c->attributes.n + 1, sizeof *s->attrs)))
		e = kr_errf(err, KR_ERR_NOMEM, "out of memory");
	for (size_t i = 0; !e && i < c->attributes.n; i++, s->nattrs++)
		if (!(s->attrs[i] = strdup(c->attributes.v[i])))
			e = kr_errf(err, KR_ERR_NOMEM, "out of memory");
	if (!e && c->subject && !(s->subject = kr_tmpl_new(c->subject, err)))
		e = KR_ERR_CONFIG;
	if (!e && !(s->group_id = kr_tmpl_new(c->group_id, err)))
		e = KR_ERR_CONFIG;
	if (!e && !(s->dedup_id = kr_tmpl_new(c->dedup_id, err)))
		e = KR_ERR_CONFIG;
	/* the topic's own region unless the option says otherwise */
	struct kr_aws_conf aws = c->aws;
	char region[64];
	if (!aws.region && arn_region(c->topic_arn, region, sizeof region))
		aws.region = region;
	if (!e)
		e = kr_aws_new(a->loop, &aws, &sns_service, &s->aws, err);
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
		sns_destroy(s);
		return e;
	}
	*ctx = s;
	return KR_OK;
}

static void sns_flush(void *ctx)
{
	struct sns_sink *s = ctx;
	kr_batcher_flush(s->batcher);
}

static void sns_destroy(void *ctx)
{
	struct sns_sink *s = ctx;
	s->closing = true;
	kr_aws_free(s->aws); /* ends the batches in flight (as failures) */
	kr_batcher_free(s->batcher);
	for (size_t i = 0; i < s->nattrs; i++)
		free(s->attrs[i]);
	free(s->attrs);
	kr_tmpl_free(s->subject);
	kr_tmpl_free(s->group_id);
	kr_tmpl_free(s->dedup_id);
	kr_buf_free(&s->scratch);
	free(s->topic_arn);
	free(s);
}

/* How the plugin behaves: `kmsrouter help config TYPE` and kmsrouter.conf(5). */
static const char sns_doc[] =
	"PublishBatch of up to batch_size messages and max_batch_bytes (messages and attributes) "
	"per request, batched as the sqs sink does (linger_ms), with up to concurrency requests "
	"in flight (default 8). Each message has its own result: a partial failure retries only "
	"what failed, and a failure SNS calls the sender's fault (not throttling) goes to the "
	"dead letter. A failed request (throttled, 5xx, no answer) retries its messages; access "
	"denied, a topic that does not exist or a bad signature send them to the dead letter with "
	"the AWS error code and message. The region is the topic ARN's unless region says "
	"otherwise.\n\n"
	"message_attributes as for the sqs sink (by default detail-type, source, account, region "
	"and key-id), so subscription filter policies can select on them. subject is a template "
	"(for e-mail subscriptions): control characters become spaces, it is cut at 99 bytes, and "
	"it is left out for an event that lacks a field it names. FIFO topics (a topic_arn ending "
	"in .fifo): message_group_id and deduplication_id as for the sqs sink, and one request in "
	"flight at a time.\n\n"
	"IAM (least privilege): sns:Publish on the topic, and kms:GenerateDataKey + kms:Decrypt "
	"on its key where the topic is encrypted with a customer managed key.";

const struct kr_sink_plugin kr_sink_sns = {
	.name = "sns",
	.description = "publishes each event to an Amazon SNS topic (PublishBatch), with message "
		       "attributes for subscription filter policies",
	.doc = sns_doc,
	.options = sns_options,
	.conf_size = sizeof(struct sns_conf),
	.validate = sns_validate,
	.default_concurrency = 8,
	.batches = true,
	.create = sns_create,
	.submit = sns_submit,
	.flush = sns_flush,
	.destroy = sns_destroy,
};
