/* cloudwatch-logs sink: each payload a log event of an Amazon CloudWatch Logs stream.
 *
 * PutLogEvents (JSON protocol) per log stream, with up to batch_size events (10,000 at most) and
 * max_batch_bytes (1 MiB: each message and 26 bytes, as CloudWatch Logs counts them) per request,
 * events in a request spanning at most 24 hours and sorted by time, as the service requires;
 * "concurrency" requests in flight per stream. log_stream is a template, so events can be spread
 * over streams (by account, by region, ...): each stream has its own batches. An event's
 * timestamp is its "time" (timestamp "event", the default; the time it was received when it has
 * none) or the time kmsrouter received it ("received", for replays of events older than the log
 * group keeps). Events the service rejects as too old, too new or past the group's retention
 * fail permanently, the others of the request are delivered.
 *
 * With create, the log group and a stream are created when first written to (their existing
 * already is fine), and again when the service says one is gone; without it, a missing group or
 * stream sends the events to the dead letter. IAM: logs:PutLogEvents on the group's streams
 * (arn:aws:logs:REGION:ACCOUNT:log-group:GROUP:log-stream:*), and logs:CreateLogGroup and
 * logs:CreateLogStream with create. */
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

#define CWL_MAX_EVENTS 10000
#define CWL_MAX_BATCH 1048576
#define CWL_EVENT_OVERHEAD 26
#define CWL_MAX_SPAN_MS (24ull * 3600 * 1000 - 60000) /* a minute of margin */
#define MAX_IDLE_STREAMS 256

enum { TS_EVENT, TS_RECEIVED };
static const char *const timestamp_kinds[] = {"event", "received", NULL};

struct cwl_conf {
	struct kr_aws_conf aws;
	const char *group, *stream;
	bool create;
	int timestamp;
	uint64_t batch_size, max_bytes, linger_ms;
};

static const struct kr_option cwl_options[] = {
	{.name = "log_group", .type = KR_OPT_STRING, .offset = offsetof(struct cwl_conf, group),
	 .required = true, .help = "the log group"},
	{.name = "log_stream", .type = KR_OPT_STRING, .offset = offsetof(struct cwl_conf, stream),
	 .def = "\"kmsrouter\"",
	 .help = "the log stream, a template (<$.path> placeholders; an event without its fields "
		 "goes to the dead letter)"},
	{.name = "create", .type = KR_OPT_BOOL, .offset = offsetof(struct cwl_conf, create),
	 .def = "false", .help = "create the log group and streams when they are missing"},
	{.name = "timestamp", .type = KR_OPT_ENUM, .offset = offsetof(struct cwl_conf, timestamp),
	 .values = timestamp_kinds, .def = "\"event\"",
	 .help = "each log event's time: the event's \"time\", or when kmsrouter received it"},
	{.name = "batch_size", .type = KR_OPT_INT, .offset = offsetof(struct cwl_conf, batch_size),
	 .def = "10000", .min = 1, .max = CWL_MAX_EVENTS, .help = "events per PutLogEvents"},
	{.name = "max_batch_bytes", .type = KR_OPT_SIZE,
	 .offset = offsetof(struct cwl_conf, max_bytes), .def = "1048576", .min = 1024,
	 .max = CWL_MAX_BATCH, .help = "bytes per request (each message and 26 bytes)"},
	{.name = "linger_ms", .type = KR_OPT_DURATION, .offset = offsetof(struct cwl_conf, linger_ms),
	 .def = "0", .max = 60000,
	 .help = "wait this long for a batch to fill (0: a batch not yet full goes at the end of "
		 "the engine's round, or, while batches are out, when they are all back)"},
	KR_AWS_OPTIONS(struct cwl_conf, aws),
	{0},
};

/* A log group or stream name as CloudWatch Logs takes them. */
static const char *name_check(const char *n, bool group)
{
	size_t len = strlen(n);
	if (!len || len > 512)
		return "has 1 to 512 characters";
	if (group && strspn(n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-/.#") !=
			     len)
		return "has only letters, digits, '_', '-', '/', '.' and '#'";
	if (!group && strpbrk(n, ":*"))
		return "has neither ':' nor '*'";
	return NULL;
}

static enum kr_err cwl_validate(const void *conf, const struct kr_opts_check *chk)
{
	const struct cwl_conf *c = conf;
	enum kr_err e = kr_aws_validate(&c->aws, chk);
	if (e)
		return e;
	const char *why = name_check(c->group, true);
	if (why)
		return kr_opts_reject(chk, "log_group", "a log group name %s", why);
	char msg[KR_ERRBUF];
	struct kr_tmpl *t = kr_tmpl_new(c->stream, msg);
	if (!t)
		return kr_opts_reject(chk, "log_stream", "%s", msg);
	bool constant = kr_tmpl_constant(t);
	kr_tmpl_free(t);
	if (constant && (why = name_check(c->stream, false)))
		return kr_opts_reject(chk, "log_stream", "a log stream name %s", why);
	return KR_OK;
}

struct cwl_sink;

/* One log stream: its batches and whether it is known to exist. */
struct stream {
	struct cwl_sink *s;
	char *name;
	struct kr_batcher *batcher;
	bool ready;
	/* the span of the open batch (fits), recomputed when the batch is not the one seen */
	const struct kr_batch *seen;
	size_t seen_n;
	int64_t min_ms, max_ms;
};

struct cwl_sink {
	struct kr_aws *aws;
	struct kr_loop *loop;
	char *group;
	struct kr_tmpl *stream_tmpl;
	bool create, received_time, group_ready;
	uint64_t batch_size, max_bytes, linger_ms, concurrency, timeout_ms;
	struct stream **streams;
	size_t nstreams;
	bool closing;
	struct kr_buf scratch;
};

/* What submit prepares (a kr_prepared): the event's timestamp, then its log event's JSON up to
 * the message (which the request gets from the payload, and then "}"). */
struct prefix {
	int64_t ts;
};

enum phase { CREATE_GROUP, CREATE_STREAM, PUT };

struct request {
	struct stream *st;
	struct kr_batch *bt;
	enum phase phase;
	size_t *order; /* sorted position -> entry index */
	struct kr_buf body;
};

static const struct kr_aws_service logs_service = {"logs", "CLOUDWATCH_LOGS"};

static void cwl_destroy(void *ctx);
static void send_batch(void *ctx, struct kr_batch *bt);

static int64_t ts_of(const struct kr_delivery *d)
{
	const struct kr_prepared *p = d->sink_data;
	return ((const struct prefix *)(const void *)p->text)->ts;
}

/* The open batch may span at most a day (CWL_MAX_SPAN_MS). */
static bool fits(void *ctx, const struct kr_batch *b, const struct kr_delivery *d)
{
	struct stream *st = ctx;
	if (st->seen != b || st->seen_n != b->n) {
		st->min_ms = INT64_MAX;
		st->max_ms = INT64_MIN;
		for (size_t i = 0; i < b->n; i++) {
			int64_t t = ts_of(b->entries[i]);
			st->min_ms = t < st->min_ms ? t : st->min_ms;
			st->max_ms = t > st->max_ms ? t : st->max_ms;
		}
	}
	int64_t t = ts_of(d);
	int64_t lo = t < st->min_ms ? t : st->min_ms, hi = t > st->max_ms ? t : st->max_ms;
	if ((uint64_t)(hi - lo) > CWL_MAX_SPAN_MS) {
		st->seen = NULL;
		return false;
	}
	st->min_ms = lo;
	st->max_ms = hi;
	st->seen = b;
	st->seen_n = b->n + 1;
	return true;
}

static void stream_free(struct stream *st)
{
	kr_batcher_free(st->batcher);
	free(st->name);
	free(st);
}

/* The stream named name, made when first needed; idle streams are let go beyond
 * MAX_IDLE_STREAMS. */
static struct stream *stream_get(struct cwl_sink *s, const char *name)
{
	for (size_t i = 0; i < s->nstreams; i++)
		if (strcmp(s->streams[i]->name, name) == 0)
			return s->streams[i];
	if (s->nstreams >= MAX_IDLE_STREAMS) {
		size_t k = 0;
		for (size_t i = 0; i < s->nstreams; i++) {
			struct stream *st = s->streams[i];
			if (!kr_batcher_in_flight(st->batcher) && !kr_batcher_waiting(st->batcher))
				stream_free(st);
			else
				s->streams[k++] = st;
		}
		s->nstreams = k;
	}
	struct stream **v = realloc(s->streams, (s->nstreams + 1) * sizeof *v);
	if (!v)
		return NULL;
	s->streams = v;
	struct stream *st = calloc(1, sizeof *st);
	if (!st || !(st->name = strdup(name))) {
		free(st);
		return NULL;
	}
	st->s = s;
	struct kr_batch_opts bo = {.max_entries = s->batch_size,
				   .max_bytes = s->max_bytes,
				   .linger_ms = s->linger_ms,
				   .max_in_flight = s->concurrency,
				   .entry_size = kr_prepared_size,
				   .release = kr_prepared_release,
				   .fits = fits,
				   .send = send_batch,
				   .ctx = st};
	if (kr_batcher_new(s->loop, &bo, &st->batcher) != KR_OK) {
		free(st->name);
		free(st);
		return NULL;
	}
	s->streams[s->nstreams++] = st;
	return st;
}

static void cwl_submit(void *ctx, struct kr_delivery *d)
{
	struct cwl_sink *s = ctx;
	struct kr_event_text ev = kr_event_text_of(d->event, d->event_len);
	int64_t ts = s->received_time ? -1 : kr_event_time_ms(&ev);
	if (ts < 0)
		ts = (int64_t)d->received_ms;
	size_t n = 0;
	const char *name = kr_tmpl_text(s->stream_tmpl, &ev, &s->scratch, &n);
	if (!name) {
		kr_delivery_done(d, KR_RETRYABLE, 0, "ENOMEM", "out of memory");
		return;
	}
	if (!n || name_check(name, false)) {
		kr_delivery_done(d, KR_PERMANENT, 0, "BadLogStream",
				 n ? "log_stream gives a name with ':' or '*' or over 512 "
				     "characters for this event"
				   : "log_stream gives no name for this event: a field it names is "
				     "missing, or it is empty");
		return;
	}
	struct stream *st = stream_get(s, name);
	struct kr_buf b = {0};
	struct prefix pf = {ts};
	/* the message itself is encoded when the request is built, from the payload, which lives
	   as long as the delivery: kept once, not twice */
	bool ok = st && kr_prepared_begin(&b, sizeof pf + 64) &&
		  kr_buf_append(&b, &pf, sizeof pf) && kr_buf_puts(&b, "{\"timestamp\":") &&
		  kr_buf_uint(&b, (uint64_t)ts) && kr_buf_puts(&b, ",\"message\":");
	if (!ok) {
		kr_buf_free(&b);
		kr_delivery_done(d, KR_RETRYABLE, 0, "ENOMEM", "out of memory");
		return;
	}
	d->sink_data = kr_prepared_finish(&b, d->len + CWL_EVENT_OVERHEAD);
	kr_batcher_add(st->batcher, d);
}

static void request_free(struct request *q)
{
	kr_buf_free(&q->body);
	free(q->order);
	free(q);
}

/* Entry indexes by time (qsort_r, the batch as context). */
static int order_cmp(const void *a, const void *b, void *ctx)
{
	const struct kr_batch *bt = ctx;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	int64_t x = ts_of(bt->entries[i]), y = ts_of(bt->entries[j]);
	return x < y ? -1 : x > y ? 1 : (i > j) - (i < j); /* stable: arrival order on ties */
}

static void send_step(struct request *q);

/* Rejected ranges of a 200 response ("rejectedLogEventsInfo"), in sorted positions. */
static void put_results(struct request *q, const struct kr_http_response *h)
{
	struct kr_batch *bt = q->bt;
	struct kr_json *j = NULL;
	if (kr_json_parse(h->body, h->body_len, &(struct kr_json_opts){.last_key_wins = true}, &j,
			  NULL, NULL) != KR_OK || j->type != KR_JSON_OBJECT) {
		kr_json_free(j);
		return;
	}
	const struct kr_json *info = kr_json_get(j, "rejectedLogEventsInfo");
	int64_t too_new = INT64_MAX, too_old = -1, expired = -1;
	const struct kr_json *v;
	if (info && (v = kr_json_get(info, "tooNewLogEventStartIndex")) && v->type == KR_JSON_NUMBER)
		too_new = (int64_t)v->num;
	if (info && (v = kr_json_get(info, "tooOldLogEventEndIndex")) && v->type == KR_JSON_NUMBER)
		too_old = (int64_t)v->num;
	if (info && (v = kr_json_get(info, "expiredLogEventEndIndex")) && v->type == KR_JSON_NUMBER)
		expired = (int64_t)v->num;
	kr_json_free(j);
	for (size_t k = 0; k < bt->n; k++) {
		size_t i = q->order[k];
		int64_t pos = (int64_t)k;
		if (pos <= expired)
			kr_batch_entry(bt, i, KR_PERMANENT, 0, "LogEventExpired",
				       "the event is older than the log group's retention");
		else if (pos <= too_old)
			kr_batch_entry(bt, i, KR_PERMANENT, 0, "LogEventTooOld",
				       "the event is more than 14 days old (see timestamp)");
		else if (pos >= too_new)
			kr_batch_entry(bt, i, KR_PERMANENT, 0, "LogEventTooNew",
				       "the event is more than 2 hours in the future");
		else
			kr_batch_entry(bt, i, KR_DELIVERED, 0, NULL, NULL);
	}
}

static void on_done(void *arg, const struct kr_aws_result *r)
{
	struct request *q = arg;
	struct stream *st = q->st;
	struct cwl_sink *s = st->s;
	bool exists = !r->ok && strcmp(r->code, "ResourceAlreadyExistsException") == 0;
	if (q->phase != PUT && (r->ok || exists)) {
		if (q->phase == CREATE_GROUP)
			s->group_ready = true;
		q->phase = q->phase == CREATE_GROUP ? CREATE_STREAM : PUT;
		send_step(q);
		return;
	}
	struct kr_batch *bt = q->bt;
	if (!r->ok) {
		bool gone = strcmp(r->code, "ResourceNotFoundException") == 0;
		if (gone && s->create) {
			/* the group or stream went away: make them again on the next attempt */
			s->group_ready = false;
			st->ready = false;
			request_free(q);
			kr_batch_end(bt, KR_RETRYABLE, 0, r->code, r->message);
			return;
		}
		request_free(q);
		kr_batch_end(bt, r->outcome, r->not_before_ms, r->code, r->message);
		return;
	}
	st->ready = true;
	put_results(q, r->http);
	request_free(q);
	kr_batch_end(bt, KR_RETRYABLE, 0, "NoResult",
		     "PutLogEvents' response could not be read");
}

/* Sends the request's next call: CreateLogGroup, CreateLogStream or PutLogEvents. */
static void send_step(struct request *q)
{
	struct stream *st = q->st;
	struct cwl_sink *s = st->s;
	if (q->phase == CREATE_GROUP && s->group_ready)
		q->phase = CREATE_STREAM;
	q->body.len = 0;
	const char *target;
	bool ok = kr_buf_puts(&q->body, "{\"logGroupName\":") &&
		  kr_buf_json_string(&q->body, s->group, strlen(s->group));
	if (q->phase == CREATE_GROUP) {
		target = "Logs_20140328.CreateLogGroup";
	} else {
		target = q->phase == PUT ? "Logs_20140328.PutLogEvents"
					 : "Logs_20140328.CreateLogStream";
		ok = ok && kr_buf_puts(&q->body, ",\"logStreamName\":") &&
		     kr_buf_json_string(&q->body, st->name, strlen(st->name));
	}
	if (ok && q->phase == PUT) {
		ok = kr_buf_puts(&q->body, ",\"logEvents\":[");
		for (size_t k = 0; ok && k < q->bt->n; k++) {
			const struct kr_delivery *d = q->bt->entries[q->order[k]];
			const struct kr_prepared *p = d->sink_data;
			ok = (!k || kr_buf_puts(&q->body, ",")) &&
			     kr_buf_append(&q->body, p->text + sizeof(struct prefix),
					   p->len - sizeof(struct prefix)) &&
			     kr_buf_json_string(&q->body, d->payload, d->len) &&
			     kr_buf_puts(&q->body, "}");
		}
		ok = ok && kr_buf_puts(&q->body, "]");
	}
	ok = ok && kr_buf_puts(&q->body, "}");
	struct kr_aws_call call = {.target = target,
				   .content_type = "application/x-amz-json-1.1",
				   .body = q->body.p,
				   .body_len = q->body.len,
				   .timeout_ms = s->timeout_ms,
				   .max_body = 1 << 20};
	if (ok && kr_aws_send(s->aws, &call, on_done, q) == KR_OK)
		return;
	struct kr_batch *bt = q->bt;
	request_free(q);
	kr_batch_end(bt, KR_RETRYABLE, 0, "ENOMEM", "cannot start the request");
}

static void send_batch(void *ctx, struct kr_batch *bt)
{
	struct stream *st = ctx;
	struct cwl_sink *s = st->s;
	if (s->closing) {
		kr_batch_end(bt, KR_RETRYABLE, 0, "Closed", "the sink was closed");
		return;
	}
	struct request *q = calloc(1, sizeof *q);
	if (!q || !(q->order = malloc(bt->n * sizeof *q->order)) ||
	    !kr_buf_reserve(&q->body, bt->bytes + bt->bytes / 8 + 64 * bt->n + 256)) {
		if (q)
			request_free(q);
		kr_batch_end(bt, KR_RETRYABLE, 0, "ENOMEM", "out of memory");
		return;
	}
	q->st = st;
	q->bt = bt;
	for (size_t i = 0; i < bt->n; i++)
		q->order[i] = i;
	qsort_r(q->order, bt->n, sizeof *q->order, order_cmp, bt);
	q->phase = s->create && !st->ready ? CREATE_GROUP : PUT;
	send_step(q);
}

static enum kr_err cwl_create(const struct kr_sink_args *a, void **ctx, char *err)
{
	const struct cwl_conf *c = a->conf;
	struct cwl_sink *s = calloc(1, sizeof *s);
	if (!s)
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	s->loop = a->loop;
	s->create = c->create;
	s->received_time = c->timestamp == TS_RECEIVED;
	s->batch_size = c->batch_size;
	s->max_bytes = c->max_bytes;
	s->linger_ms = c->linger_ms;
	s->concurrency = a->concurrency;
	s->timeout_ms = a->timeout_ms;
	enum kr_err e = KR_OK;
	if (!(s->group = strdup(c->group)))
		e = kr_errf(err, KR_ERR_NOMEM, "out of memory");
	if (!e && !(s->stream_tmpl = kr_tmpl_new(c->stream, err)))
		e = KR_ERR_CONFIG;
	if (!e)
		e = kr_aws_new(a->loop, &c->aws, &logs_service, &s->aws, err);
	if (e) {
		cwl_destroy(s);
		return e;
	}
	*ctx = s;
	return KR_OK;
}

static void cwl_flush(void *ctx)
{
	struct cwl_sink *s = ctx;
	for (size_t i = 0; i < s->nstreams; i++)
		kr_batcher_flush(s->streams[i]->batcher);
}

static void cwl_destroy(void *ctx)
{
	struct cwl_sink *s = ctx;
	s->closing = true;
	kr_aws_free(s->aws); /* ends the batches in flight (as failures) */
	for (size_t i = 0; i < s->nstreams; i++)
		stream_free(s->streams[i]);
	free(s->streams);
	kr_tmpl_free(s->stream_tmpl);
	kr_buf_free(&s->scratch);
	free(s->group);
	free(s);
}

/* How the plugin behaves: `kmsrouter help config TYPE` and kmsrouter.conf(5). */
static const char cwl_doc[] =
	"PutLogEvents per log stream, with up to batch_size events and max_batch_bytes (each "
	"message plus 26 bytes) per request, sorted by time and spanning at most 24 hours, as the "
	"service requires; concurrency requests in flight per stream (default 4). log_stream is a "
	"template, so events can be spread over streams (by account, by region...), each with its "
	"own batches; an event that lacks a field it names goes to the dead letter. Each log "
	"event's timestamp is the event's time (timestamp event, the default; when kmsrouter "
	"received it where the event has none) or when kmsrouter received it (received, for "
	"replays of events older than the group keeps).\n\n"
	"Events the service rejects (older than 14 days or the group's retention, more than 2 "
	"hours ahead) go to the dead letter; the rest of the request is delivered. With create "
	"the log group and a stream are created when first written to (that they exist already is "
	"fine), and again when the service says one is gone; without it a missing group or stream "
	"sends the events to the dead letter.\n\n"
	"IAM (least privilege): logs:PutLogEvents on the group's streams "
	"(arn:aws:logs:REGION:ACCOUNT:log-group:GROUP:log-stream:*), and logs:CreateLogGroup + "
	"logs:CreateLogStream with create.";

const struct kr_sink_plugin kr_sink_cloudwatch_logs = {
	.name = "cloudwatch-logs",
	.description = "writes each event to an Amazon CloudWatch Logs stream (PutLogEvents)",
	.doc = cwl_doc,
	.options = cwl_options,
	.conf_size = sizeof(struct cwl_conf),
	.validate = cwl_validate,
	.default_concurrency = 4,
	.batches = true,
	.create = cwl_create,
	.submit = cwl_submit,
	.flush = cwl_flush,
	.destroy = cwl_destroy,
};
