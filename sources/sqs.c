/* sqs source: the messages of an Amazon SQS queue, each deleted only once it is delivered.
 *
 * Receives with long polling (ReceiveMessage, JSON protocol), up to "concurrency" requests in
 * flight while the pipeline has room. Each message body goes through the parsers' stream, as a
 * framed record of one unordered input: a raw EventBridge event, an SNS notification (unwrapped),
 * several events or an array of them. A message is deleted (DeleteMessageBatch, 10 per request,
 * entry ids unique within the request) only when every delivery of every event in it succeeded
 * or was dead-lettered; failed entries of a delete are retried, except a receipt handle that is
 * no longer valid (the message became visible again and was received anew: it will be
 * delivered again), which is logged.
 *
 * Visibility: the queue's timeout (GetQueueAttributes, once at start) or visibility_timeout.
 * While a message is held (waiting to be read, in the pipeline, or waiting for its delete) and
 * half of its visibility has passed, it is extended by the timeout again
 * (ChangeMessageVisibilityBatch), until it has been held max_processing_seconds: then it is let
 * go (logged), and the queue delivers it again.
 *
 * A message that cannot be parsed, or whose delivery failed with no dead letter (on_invalid
 * "leave"), is made visible again after invalid_backoff_seconds, never deleted: the queue's
 * redrive policy moves it to its dead-letter queue after maxReceiveCount, and it never comes
 * back in a hot loop. With on_invalid "dead_letter" such messages go to the dead_letter sink
 * (the invalid-record dead letter, or the delivery's dead letter) and are then deleted.
 *
 * FIFO queues (a URL ending in .fifo): the next message of a MessageGroupId is read only when
 * the one before it is done, so a group's messages reach the sinks in order; groups go in
 * parallel. When a group's message is left (on_invalid leave), the group's messages after it
 * are made visible again at once, for the queue to hand out again after it, in order.
 *
 * Rules see each message's metadata under "kmsrouter": {"sqs": {"MessageId",
 * "ApproximateReceiveCount", "SentTimestamp", "ApproximateFirstReceiveTimestamp",
 * "MessageGroupId", "SequenceNumber", "MessageDeduplicationId", the other attribute_names asked
 * for, "MessageAttributes": {name: value}}} (counts and timestamps as numbers); dead letters
 * carry it. The lag metric is the age of the oldest message held (from SentTimestamp).
 *
 * Stopping (SIGTERM): no more receives; messages received but not yet read are made visible
 * again at once, those in the pipeline finish and are deleted, and the run waits for its deletes
 * (busy) within the grace period. A receive still in flight then is abandoned: what it took
 * comes back after its visibility timeout. Several processes on one queue share its messages
 * (competing consumers).
 *
 * IAM: sqs:ReceiveMessage, sqs:DeleteMessage, sqs:ChangeMessageVisibility, and
 * sqs:GetQueueAttributes without visibility_timeout. */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws.h"
#include "buf.h"
#include "grow.h"
#include "json.h"
#include "log.h"
#include "loop.h"
#include "plugin.h"
#include "stream.h"

#define SQS_BATCH 10           /* entries per DeleteMessageBatch / ChangeMessageVisibilityBatch */
#define FEED_CHUNK 65536       /* bytes of a body given to the stream at once */
#define LINGER_MS 20           /* a batch that is not full waits this long for more entries */
#define MAX_BACKOFF_MS 30000
#define GROUP_BUCKETS 1024

enum on_invalid { ON_INVALID_LEAVE, ON_INVALID_DEAD_LETTER };
static const char *const on_invalid_names[] = {"leave", "dead_letter", NULL};

struct sqs_conf {
	struct kr_aws_conf aws;
	const char *queue_url;
	uint64_t wait_s, max_messages, visibility_s, concurrency;
	struct kr_strings attribute_names, message_attribute_names;
	int on_invalid;
	int32_t dead_letter;
	uint64_t backoff_s, max_processing_s;
};

static const struct kr_option sqs_options[] = {
	{.name = "queue_url", .type = KR_OPT_URL, .offset = offsetof(struct sqs_conf, queue_url),
	 .values = kr_aws_schemes, .required = true,
	 .help = "the queue's URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)"},
	{.name = "wait_time_seconds", .type = KR_OPT_INT, .offset = offsetof(struct sqs_conf, wait_s),
	 .def = "20", .max = 20, .help = "long polling: how long a receive waits for messages"},
	{.name = "max_messages", .type = KR_OPT_INT,
	 .offset = offsetof(struct sqs_conf, max_messages), .def = "10", .min = 1, .max = 10,
	 .help = "messages per receive"},
	{.name = "visibility_timeout", .type = KR_OPT_INT,
	 .offset = offsetof(struct sqs_conf, visibility_s), .min = 1, .max = 43200,
	 .help = "seconds a received message stays invisible to other consumers, extended while "
		 "it is in flight (default: the queue's)"},
	{.name = "concurrency", .type = KR_OPT_INT, .offset = offsetof(struct sqs_conf, concurrency),
	 .def = "2", .min = 1, .max = 64, .help = "receive requests in flight"},
	{.name = "attribute_names", .type = KR_OPT_STRINGS,
	 .offset = offsetof(struct sqs_conf, attribute_names),
	 .help = "more message system attributes for rules and dead letters (besides "
		 "ApproximateReceiveCount, SentTimestamp, ApproximateFirstReceiveTimestamp and, "
		 "on FIFO queues, MessageGroupId, SequenceNumber, MessageDeduplicationId)"},
	{.name = "message_attribute_names", .type = KR_OPT_STRINGS,
	 .offset = offsetof(struct sqs_conf, message_attribute_names),
	 .help = "message attributes for rules and dead letters (\"All\" for all)"},
	{.name = "on_invalid", .type = KR_OPT_ENUM, .offset = offsetof(struct sqs_conf, on_invalid),
	 .def = "\"leave\"", .values = on_invalid_names,
	 .help = "a message that cannot be parsed or fails with no dead letter: leave it (visible "
		 "again after invalid_backoff_seconds, for the queue's redrive policy) or send it "
		 "to the dead_letter sink and delete it"},
	{.name = "dead_letter", .type = KR_OPT_SINK, .offset = offsetof(struct sqs_conf, dead_letter),
	 .help = "with on_invalid dead_letter: the sink for messages that cannot be parsed and "
		 "deliveries that fail with no dead letter of their own"},
	{.name = "invalid_backoff_seconds", .type = KR_OPT_INT,
	 .offset = offsetof(struct sqs_conf, backoff_s), .def = "30", .max = 43200,
	 .help = "how long a message left by on_invalid leave stays invisible before the queue "
		 "hands it out again"},
	{.name = "max_processing_seconds", .type = KR_OPT_INT,
	 .offset = offsetof(struct sqs_conf, max_processing_s), .def = "3600", .min = 1,
	 .max = 43200,
	 .help = "how long a message's visibility is extended while it is in flight; then it is "
		 "let go, and delivered again"},
	KR_AWS_OPTIONS(struct sqs_conf, aws),
	{0},
};

static enum kr_err sqs_validate(const void *conf, const struct kr_opts_check *chk)
{
	const struct sqs_conf *c = conf;
	enum kr_err e = kr_aws_validate(&c->aws, chk);
	if (e)
		return e;
	if (c->on_invalid == ON_INVALID_DEAD_LETTER && c->dead_letter < 0)
		return kr_opts_reject(chk, "dead_letter",
				      "on_invalid \"dead_letter\" needs a dead_letter sink");
	if (c->on_invalid == ON_INVALID_LEAVE && c->dead_letter >= 0)
		return kr_opts_reject(chk, "dead_letter",
				      "a dead_letter sink is for on_invalid \"dead_letter\"");
	return KR_OK;
}

enum mstate {
	M_WAITING,  /* received, waiting to be read (FIFO: maybe behind its group's current one) */
	M_READING,  /* in the pipeline */
	M_DELETING, /* done: its delete is queued or in flight */
	M_RELEASING /* going back to the queue: its visibility change is queued or in flight */
};

struct group;

struct msg {
	struct msg *prev, *next; /* held: every message not yet deleted or released */
	struct msg *rnext;       /* in the ready queue, or its group's queue */
	struct group *group;     /* FIFO */
	enum mstate state;
	char *receipt, *id;
	char *body;
	size_t body_len, fed;
	char *meta;
	size_t meta_len;
	uint64_t sent_ms;      /* SentTimestamp, wall clock (0: unknown) */
	uint64_t held_since;   /* kr_now_ms of the receive */
	uint64_t visible_at;   /* kr_now_ms when its invisibility ends, as far as we know */
	uint32_t release_s;    /* M_RELEASING: the visibility it goes back with */
	bool extending;        /* a heartbeat for it is queued or in flight */
	bool let_go;           /* held past max_processing_seconds: no more heartbeats */
	bool failed;           /* on its way back because it was not delivered */
	bool finished;         /* its delete or release is over: freed once refs is 0 */
	unsigned refs;         /* request entries (queued or in flight) that name it */
};

struct group {
	struct group *next; /* in its bucket */
	char *name;
	struct msg *head, *tail; /* waiting behind the one in the pipeline */
	bool busy;               /* one of its messages is in the pipeline */
};

/* One message's entry of a batch request. A message can be named by two at once (a heartbeat
 * in flight when its delete or release is queued): it is freed when the last one is over. */
enum entry_kind { E_DELETE, E_RELEASE, E_HEARTBEAT };
struct entry {
	struct msg *m;
	uint32_t vis; /* a visibility change's timeout */
	uint8_t kind; /* enum entry_kind */
};

/* A batch request: deletes or visibility changes of up to 10 messages. */
enum breq_kind { B_DELETE, B_VISIBILITY };
struct breq {
	struct sqs_src *s;
	enum breq_kind kind;
	struct entry e[SQS_BATCH];
	size_t n;
	struct kr_buf body;
};

/* Entries waiting for a batch request: deletes, or visibility changes. */
struct pending {
	struct sqs_src *s;
	struct entry *v;
	size_t n, cap;
	struct kr_timer *linger;
	struct kr_timer *backoff; /* after a failed request */
	uint64_t backoff_ms;      /* the next failure's wait */
	bool backing_off;
	size_t in_flight;
};

struct sqs_src {
	struct kr_source_handle *h;
	struct kr_loop *loop;
	char *name, *queue_url, *dead_letter;
	struct kr_aws *aws;
	bool fifo, closing;
	uint64_t wait_s, max_messages, concurrency, max_processing_ms, backoff_s;
	int on_invalid;
	uint64_t vis_s;       /* the visibility timeout in use; 0 until known */
	bool vis_asked;       /* visibility_timeout was set: receives ask for it */
	bool vis_fetching;
	char *recv_body;      /* the ReceiveMessage request, the same for every receive */
	char *attr_body;      /* the GetQueueAttributes request */
	size_t recv_len;
	size_t receiving;     /* receives in flight */
	uint64_t recv_backoff_ms;
	bool recv_backing_off;
	struct kr_timer *recv_timer;
	struct kr_timer *heartbeat;
	struct kr_input *in;
	struct kr_stream *stream;
	struct msg *held_head, *held_tail;
	size_t nheld;
	struct msg *ready_head, *ready_tail;
	size_t nready;
	struct msg *reading; /* the message being given to the stream (paused in the middle) */
	bool ending;         /* ... and its end is being given */
	struct group *groups[GROUP_BUCKETS];
	struct pending del, vis;
	char last_error[96]; /* the receive error last logged, so a streak is logged once */
	uint64_t lag_at;    /* kr_now_ms when lag_cached was worked out */
	int64_t lag_cached;
};

static const struct kr_aws_service sqs_service = {"sqs", "SQS"};

static void pump_requests(struct sqs_src *s, struct pending *p);

/* ---- messages ---- */

static void held_unlink(struct sqs_src *s, struct msg *m)
{
	if (m->prev)
		m->prev->next = m->next;
	else
		s->held_head = m->next;
	if (m->next)
		m->next->prev = m->prev;
	else
		s->held_tail = m->prev;
	s->nheld--;
}

static void msg_free(struct msg *m)
{
	if (!m)
		return;
	free(m->receipt);
	free(m->id);
	free(m->body);
	free(m->meta);
	free(m);
}

static uint32_t group_hash(const char *name)
{
	uint32_t h = 2166136261u;
	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 16777619u;
	return h % GROUP_BUCKETS;
}

static struct group *group_get(struct sqs_src *s, const char *name, bool create)
{
	uint32_t b = group_hash(name);
	for (struct group *g = s->groups[b]; g; g = g->next)
		if (strcmp(g->name, name) == 0)
			return g;
	if (!create)
		return NULL;
	struct group *g = calloc(1, sizeof *g);
	if (!g || !(g->name = strdup(name))) {
		free(g);
		return NULL;
	}
	g->next = s->groups[b];
	s->groups[b] = g;
	return g;
}

static void group_drop_if_idle(struct sqs_src *s, struct group *g)
{
	if (g->busy || g->head)
		return;
	struct group **pp = &s->groups[group_hash(g->name)];
	while (*pp != g)
		pp = &(*pp)->next;
	*pp = g->next;
	free(g->name);
	free(g);
}

static void ready_push(struct sqs_src *s, struct msg *m)
{
	m->rnext = NULL;
	if (s->ready_tail)
		s->ready_tail->rnext = m;
	else
		s->ready_head = m;
	s->ready_tail = m;
	s->nready++;
}

static struct msg *ready_pop(struct sqs_src *s)
{
	struct msg *m = s->ready_head;
	if (m) {
		s->ready_head = m->rnext;
		if (!s->ready_head)
			s->ready_tail = NULL;
		s->nready--;
		m->rnext = NULL;
	}
	return m;
}

/* A received message joins the ready queue, or (FIFO) its group's queue behind the one in
 * the pipeline or already ready. */
static void msg_arrived(struct sqs_src *s, struct msg *m)
{
	struct group *g = m->group;
	if (g && g->busy) {
		m->rnext = NULL;
		if (g->tail)
			g->tail->rnext = m;
		else
			g->head = m;
		g->tail = m;
		return;
	}
	if (g)
		g->busy = true;
	ready_push(s, m);
}

/* The message's delete or release is over (or will not happen): it goes once no request
 * names it. */
static void msg_finish(struct sqs_src *s, struct msg *m)
{
	m->finished = true;
	if (!m->refs) {
		held_unlink(s, m);
		msg_free(m);
	}
}

/* A request entry that named the message is gone. */
static void msg_unref(struct sqs_src *s, struct msg *m)
{
	if (--m->refs == 0 && m->finished) {
		held_unlink(s, m);
		msg_free(m);
	}
}

/* Queues a message's entry for a batch request (p: deletes or visibility changes). */
static bool pending_add(struct pending *p, struct msg *m, uint32_t vis, enum entry_kind kind)
{
	if (!kr_grow(&p->v, &p->cap, p->n + 1, sizeof *p->v, 64))
		return false;
	p->v[p->n++] = (struct entry){.m = m, .vis = vis, .kind = (uint8_t)kind};
	m->refs++;
	return true;
}

/* A heartbeat queued for a message that is now being deleted or released is not sent: in the
 * same batch as a release it could be applied after it. (One already in flight may still land
 * after a release: the message then comes back a visibility timeout later, not lost.) */
static void drop_queued_heartbeat(struct sqs_src *s, struct msg *m)
{
	if (!m->extending)
		return;
	struct pending *p = &s->vis;
	for (size_t i = 0; i < p->n; i++)
		if (p->v[i].m == m && p->v[i].kind == E_HEARTBEAT) {
			memmove(p->v + i, p->v + i + 1, (p->n - i - 1) * sizeof *p->v);
			p->n--;
			m->extending = false;
			m->refs--; /* not finished: nothing to free at 0 */
			return;
		}
}

/* The message goes back to the queue, visible again after vis_s seconds (0: at once). */
static void msg_release(struct sqs_src *s, struct msg *m, uint32_t vis_s)
{
	drop_queued_heartbeat(s, m);
	m->state = M_RELEASING;
	m->release_s = vis_s;
	free(m->body);
	m->body = NULL;
	if (!pending_add(&s->vis, m, vis_s, E_RELEASE)) {
		/* out of memory: it comes back when its visibility ends */
		msg_finish(s, m);
		return;
	}
	pump_requests(s, &s->vis);
}

/* A group's message is done: the next one of the group may be read. When it was left (not
 * delivered), the rest of the group goes back too, so the queue hands them out after it. */
static void group_next(struct sqs_src *s, struct group *g, bool failed)
{
	if (!g)
		return;
	g->busy = false;
	if (failed)
		while (g->head) {
			struct msg *m = g->head;
			g->head = m->rnext;
			msg_release(s, m, 0);
		}
	if (g->head) {
		struct msg *m = g->head;
		g->head = m->rnext;
		if (!g->head)
			g->tail = NULL;
		g->busy = true;
		ready_push(s, m);
	} else {
		g->tail = NULL;
	}
	group_drop_if_idle(s, g);
}

/* ---- batch requests: DeleteMessageBatch and ChangeMessageVisibilityBatch ---- */

static void request_done(void *arg, const struct kr_aws_result *r);

static bool put_entry(struct kr_buf *b, size_t i, const struct entry *e)
{
	char id[64];
	snprintf(id, sizeof id, "%s{\"Id\":\"%zu\",\"ReceiptHandle\":", i ? "," : "", i);
	if (!kr_buf_puts(b, id) || !kr_buf_json_string(b, e->m->receipt, strlen(e->m->receipt)))
		return false;
	if (e->kind != E_DELETE) {
		snprintf(id, sizeof id, ",\"VisibilityTimeout\":%" PRIu32, e->vis);
		if (!kr_buf_puts(b, id))
			return false;
	}
	return kr_buf_puts(b, "}");
}

static void send_request(struct sqs_src *s, struct pending *p)
{
	struct breq *q = calloc(1, sizeof *q);
	if (!q)
		return;
	q->s = s;
	q->kind = p == &s->del ? B_DELETE : B_VISIBILITY;
	q->n = p->n < SQS_BATCH ? p->n : SQS_BATCH;
	bool ok = kr_buf_puts(&q->body, "{\"QueueUrl\":") &&
		  kr_buf_json_string(&q->body, s->queue_url, strlen(s->queue_url)) &&
		  kr_buf_puts(&q->body, ",\"Entries\":[");
	for (size_t i = 0; i < q->n; i++) {
		q->e[i] = p->v[i];
		ok = ok && put_entry(&q->body, i, &q->e[i]);
	}
	ok = ok && kr_buf_puts(&q->body, "]}");
	if (!ok) {
		kr_buf_free(&q->body);
		free(q);
		return;
	}
	memmove(p->v, p->v + q->n, (p->n - q->n) * sizeof *p->v);
	p->n -= q->n;
	struct kr_aws_call call = {
		.target = q->kind == B_DELETE ? "AmazonSQS.DeleteMessageBatch"
					      : "AmazonSQS.ChangeMessageVisibilityBatch",
		.body = q->body.p, .body_len = q->body.len, .timeout_ms = 30000};
	p->in_flight++;
	if (kr_aws_send(s->aws, &call, request_done, q) != KR_OK) {
		struct kr_aws_result r = {.outcome = KR_RETRYABLE};
		snprintf(r.code, sizeof r.code, "ENOMEM");
		snprintf(r.message, sizeof r.message, "the request could not be started");
		request_done(q, &r);
	}
}

/* Sends what is queued: full batches now; a partial one after LINGER_MS, or now when the
 * source is stopping. */
static void pump_requests(struct sqs_src *s, struct pending *p)
{
	if (s->closing || p->backing_off)
		return;
	while (p->n >= SQS_BATCH)
		send_request(s, p);
	if (!p->n)
		return;
	if (kr_source_stopping(s->h))
		send_request(s, p);
	else if (!kr_timer_active(p->linger))
		kr_timer_start(p->linger, LINGER_MS);
}

static void linger_fire(struct kr_loop *l, struct kr_timer *t, void *arg)
{
	(void)l;
	(void)t;
	struct pending *p = arg;
	if (!p->backing_off && p->n)
		send_request(p->s, p);
}

static void backoff_fire(struct kr_loop *l, struct kr_timer *t, void *arg)
{
	(void)l;
	(void)t;
	struct pending *p = arg;
	p->backing_off = false;
	pump_requests(p->s, p);
}

/* A request failed as a whole: its entries wait, then go again (a delete must not be lost:
 * the message would be delivered again). */
static void request_failed(struct sqs_src *s, struct pending *p, const struct kr_aws_result *r)
{
	if (!p->backoff_ms)
		p->backoff_ms = 200;
	char wait[32];
	snprintf(wait, sizeof wait, "%" PRIu64 " ms", p->backoff_ms);
	kr_log(KR_LOG_WARN, "source", "name", s->name, "msg",
	       p == &s->del ? "DeleteMessageBatch failed; retrying"
			    : "ChangeMessageVisibilityBatch failed; retrying",
	       "error_code", r->code, "error", r->message, "retry_in", wait, NULL);
	p->backing_off = true;
	kr_timer_stop(p->linger);
	kr_timer_start(p->backoff, p->backoff_ms);
	p->backoff_ms = p->backoff_ms * 2 > MAX_BACKOFF_MS ? MAX_BACKOFF_MS : p->backoff_ms * 2;
}

/* A message's delete or visibility change is over (done: it happened). */
static void entry_over(struct sqs_src *s, struct breq *q, size_t i, bool done)
{
	const struct entry *e = &q->e[i];
	struct msg *m = e->m;
	if (e->kind == E_HEARTBEAT) {
		m->extending = false;
		if (done)
			m->visible_at = kr_now_ms() + e->vis * 1000ull;
	} else {
		m->finished = true;
	}
	msg_unref(s, m);
}

static void entry_failed(struct sqs_src *s, struct breq *q, size_t i, const char *code,
			 const char *message, bool sender_fault)
{
	struct msg *m = q->e[i].m;
	enum entry_kind kind = q->e[i].kind;
	bool gone = strcmp(code, "ReceiptHandleIsInvalid") == 0 ||
		    strcmp(code, "AWS.SimpleQueueService.MessageNotInflight") == 0 ||
		    strcmp(code, "MessageNotInflight") == 0;
	bool retry = !gone && (!sender_fault || kr_aws_retryable_code(code));
	const char *what = kind == E_DELETE	 ? "delete"
			   : kind == E_RELEASE ? "visibility change"
					       : "heartbeat";
	if (retry && kind == E_DELETE && pending_add(&s->del, m, 0, E_DELETE)) {
		kr_log(KR_LOG_WARN, "source", "name", s->name, "message_id", m->id, "msg",
		       "delete failed; retrying", "error_code", code, "error", message, NULL);
		msg_unref(s, m); /* this entry; the new one holds it */
		return;
	}
	if (kind == E_HEARTBEAT && (m->state == M_DELETING || m->state == M_RELEASING)) {
		entry_over(s, q, i, false); /* it is on its way out anyway */
		return;
	}
	kr_log(KR_LOG_WARN, "source", "name", s->name, "message_id", m->id, "msg",
	       kind == E_DELETE ? "delete failed: the queue will deliver the message again"
	       : kind == E_RELEASE
		       ? "visibility change failed: the message comes back when its visibility ends"
		       : "heartbeat failed: the message may be delivered again",
	       "action", what, "error_code", code, "error", message, NULL);
	entry_over(s, q, i, false);
}

static void request_done(void *arg, const struct kr_aws_result *r)
{
	struct breq *q = arg;
	struct sqs_src *s = q->s;
	struct pending *p = q->kind == B_DELETE ? &s->del : &s->vis;
	p->in_flight--;
	if (s->closing) {
		kr_buf_free(&q->body);
		free(q);
		return;
	}
	if (!r->ok) {
		/* the whole request: its entries go back to the front of the queue */
		for (size_t i = q->n; i-- > 0;) {
			if (!pending_add(p, q->e[i].m, q->e[i].vis, (enum entry_kind)q->e[i].kind)) {
				entry_failed(s, q, i, "ENOMEM", "out of memory", true);
				continue;
			}
			msg_unref(s, q->e[i].m); /* this entry; the queued one holds it */
			/* rotate it to the front: order does not matter much, but it went first */
			struct entry e = p->v[p->n - 1];
			memmove(p->v + 1, p->v, (p->n - 1) * sizeof *p->v);
			p->v[0] = e;
		}
		request_failed(s, p, r);
		kr_buf_free(&q->body);
		free(q);
		return;
	}
	p->backoff_ms = 0;
	bool seen[SQS_BATCH] = {0};
	struct kr_json *j = NULL;
	if (kr_json_parse(r->http->body, r->http->body_len,
			  &(struct kr_json_opts){.last_key_wins = true}, &j, NULL, NULL) == KR_OK &&
	    j->type == KR_JSON_OBJECT) {
		const struct kr_json *okl = kr_json_get(j, "Successful");
		for (size_t k = 0; okl && okl->type == KR_JSON_ARRAY && k < okl->n; k++) {
			const struct kr_json *id = kr_json_get(okl->items[k], "Id");
			size_t i = id && id->type == KR_JSON_STRING ? strtoul(id->str, NULL, 10) : SIZE_MAX;
			if (i < q->n && !seen[i]) {
				seen[i] = true;
				entry_over(s, q, i, true);
			}
		}
		const struct kr_json *bad = kr_json_get(j, "Failed");
		for (size_t k = 0; bad && bad->type == KR_JSON_ARRAY && k < bad->n; k++) {
			const struct kr_json *f = bad->items[k];
			const struct kr_json *id = kr_json_get(f, "Id");
			const struct kr_json *code = kr_json_get(f, "Code");
			const struct kr_json *msg = kr_json_get(f, "Message");
			const struct kr_json *sender = kr_json_get(f, "SenderFault");
			size_t i = id && id->type == KR_JSON_STRING ? strtoul(id->str, NULL, 10) : SIZE_MAX;
			if (i >= q->n || seen[i])
				continue;
			seen[i] = true;
			entry_failed(s, q, i, code && code->type == KR_JSON_STRING ? code->str : "EntryFailed",
				     msg && msg->type == KR_JSON_STRING ? msg->str : "",
				     sender && sender->type == KR_JSON_TRUE);
		}
	}
	kr_json_free(j);
	/* an entry the answer says nothing of: tried again (a delete) */
	for (size_t i = 0; i < q->n; i++)
		if (!seen[i])
			entry_failed(s, q, i, "NoResult", "the answer did not say what became of it",
				     false);
	kr_buf_free(&q->body);
	free(q);
	pump_requests(s, &s->del);
	pump_requests(s, &s->vis);
}

/* ---- heartbeats ---- */

static void heartbeat_fire(struct kr_loop *l, struct kr_timer *t, void *arg)
{
	(void)l;
	struct sqs_src *s = arg;
	uint64_t now = kr_now_ms(), vis_ms = s->vis_s * 1000;
	for (struct msg *m = s->held_head; m; m = m->next) {
		if (m->state == M_RELEASING || m->finished || m->extending || m->let_go)
			continue;
		if (now + vis_ms / 2 < m->visible_at)
			continue;
		if (now - m->held_since >= s->max_processing_ms) {
			m->let_go = true;
			kr_log(KR_LOG_WARN, "source", "name", s->name, "message_id", m->id, "msg",
			       "message held past max_processing_seconds: no longer extended, the "
			       "queue will deliver it again",
			       NULL);
			continue;
		}
		if (pending_add(&s->vis, m, (uint32_t)s->vis_s, E_HEARTBEAT))
			m->extending = true;
	}
	pump_requests(s, &s->vis);
	uint64_t period = vis_ms / 4;
	kr_timer_start(t, period < 250 ? 250 : period > 1000 ? 1000 : period);
}

/* ---- receiving ---- */

/* The value of an attribute that SQS gives as a string: a number when it is all digits. */
static bool put_attr(struct kr_buf *b, bool *first, const char *name, const struct kr_json *v)
{
	if (!v || v->type != KR_JSON_STRING)
		return true;
	bool digits = v->len > 0 && v->len < 20;
	for (size_t i = 0; digits && i < v->len; i++)
		digits = v->str[i] >= '0' && v->str[i] <= '9';
	bool numeric = digits && (strcmp(name, "ApproximateReceiveCount") == 0 ||
				  strcmp(name, "SentTimestamp") == 0 ||
				  strcmp(name, "ApproximateFirstReceiveTimestamp") == 0);
	bool ok = kr_buf_puts(b, *first ? "" : ",") && kr_buf_json_string(b, name, strlen(name)) &&
		  kr_buf_puts(b, ":") &&
		  (numeric ? kr_buf_append(b, v->str, v->len) : kr_buf_json_string(b, v->str, v->len));
	*first = false;
	return ok;
}

/* The metadata object of a received message. */
static bool build_meta(struct kr_buf *b, const struct kr_json *m)
{
	bool first = true;
	if (!kr_buf_puts(b, "{\"sqs\":{") ||
	    !put_attr(b, &first, "MessageId", kr_json_get(m, "MessageId")))
		return false;
	const struct kr_json *a = kr_json_get(m, "Attributes");
	for (size_t i = 0; a && a->type == KR_JSON_OBJECT && i < a->n; i++)
		if (!put_attr(b, &first, a->keys[i], a->items[i]))
			return false;
	const struct kr_json *ma = kr_json_get(m, "MessageAttributes");
	if (ma && ma->type == KR_JSON_OBJECT && ma->n) {
		if (!kr_buf_puts(b, ",\"MessageAttributes\":{"))
			return false;
		for (size_t i = 0; i < ma->n; i++) {
			const struct kr_json *v = kr_json_get(ma->items[i], "StringValue");
			if (!v || v->type != KR_JSON_STRING)
				v = kr_json_get(ma->items[i], "BinaryValue");
			if (!kr_buf_puts(b, i ? "," : "") ||
			    !kr_buf_json_string(b, ma->keys[i], ma->keylens[i]) || !kr_buf_puts(b, ":") ||
			    !(v && v->type == KR_JSON_STRING ? kr_buf_json_string(b, v->str, v->len)
							     : kr_buf_puts(b, "null")))
				return false;
		}
		if (!kr_buf_puts(b, "}"))
			return false;
	}
	return kr_buf_puts(b, "}}");
}

static void receive_more(struct sqs_src *s);

static void recv_timer_fire(struct kr_loop *l, struct kr_timer *t, void *arg)
{
	(void)l;
	(void)t;
	struct sqs_src *s = arg;
	s->recv_backing_off = false;
	receive_more(s);
}

/* A receive (or GetQueueAttributes) failed: logged once per streak of the same error, then
 * the next waits, longer each time. An error that will not pass by itself (access denied, no
 * such queue) makes the run end badly. */
static void receive_failed(struct sqs_src *s, const char *action, const struct kr_aws_result *r)
{
	if (strcmp(s->last_error, r->code) != 0) {
		snprintf(s->last_error, sizeof s->last_error, "%s", r->code);
		kr_log(r->outcome == KR_PERMANENT ? KR_LOG_ERROR : KR_LOG_WARN, "source", "name",
		       s->name, "msg", "receiving from the queue failed; retrying", "action", action,
		       "error_code", r->code, "error", r->message, NULL);
		if (r->outcome == KR_PERMANENT)
			kr_source_error(s->h);
	}
	if (!s->recv_backoff_ms)
		s->recv_backoff_ms = 200;
	s->recv_backing_off = true;
	kr_timer_start(s->recv_timer, s->recv_backoff_ms);
	s->recv_backoff_ms =
		s->recv_backoff_ms * 2 > MAX_BACKOFF_MS ? MAX_BACKOFF_MS : s->recv_backoff_ms * 2;
}

struct recv_call {
	struct sqs_src *s;
	uint64_t sent_at;
};

static void received(void *arg, const struct kr_aws_result *r)
{
	struct recv_call *c = arg;
	struct sqs_src *s = c->s;
	uint64_t sent_at = c->sent_at;
	free(c);
	s->receiving--;
	if (s->closing)
		return;
	if (!r->ok) {
		receive_failed(s, "ReceiveMessage", r);
		return;
	}
	s->last_error[0] = 0;
	s->recv_backoff_ms = 0;
	struct kr_json *j = NULL;
	char err[KR_ERRBUF];
	if (kr_json_parse(r->http->body, r->http->body_len,
			  &(struct kr_json_opts){.last_key_wins = true}, &j, NULL, err) != KR_OK ||
	    j->type != KR_JSON_OBJECT) {
		/* the messages it held come back when their visibility ends */
		kr_log(KR_LOG_ERROR, "source", "name", s->name, "msg",
		       "a ReceiveMessage answer could not be read; its messages come back after the "
		       "visibility timeout",
		       "error", j ? "not an object" : err, NULL);
		kr_json_free(j);
		receive_more(s);
		return;
	}
	const struct kr_json *list = kr_json_get(j, "Messages");
	bool stopping = kr_source_stopping(s->h);
	for (size_t i = 0; list && list->type == KR_JSON_ARRAY && i < list->n; i++) {
		const struct kr_json *jm = list->items[i];
		const struct kr_json *rh = kr_json_get(jm, "ReceiptHandle");
		const struct kr_json *id = kr_json_get(jm, "MessageId");
		const struct kr_json *body = kr_json_get(jm, "Body");
		const struct kr_json *attrs = kr_json_get(jm, "Attributes");
		if (!rh || rh->type != KR_JSON_STRING || !id || id->type != KR_JSON_STRING ||
		    !body || body->type != KR_JSON_STRING) {
			kr_log(KR_LOG_ERROR, "source", "name", s->name, "msg",
			       "a received message has no receipt handle, id or body; it comes back "
			       "after the visibility timeout",
			       NULL);
			continue;
		}
		struct msg *m = calloc(1, sizeof *m);
		struct kr_buf meta = {0};
		if (!m || !(m->receipt = strdup(rh->str)) || !(m->id = strdup(id->str)) ||
		    !(m->body = malloc(body->len + 1)) || !build_meta(&meta, jm)) {
			kr_log(KR_LOG_ERROR, "source", "name", s->name, "message_id", id->str, "msg",
			       "out of memory; the message comes back after the visibility timeout",
			       NULL);
			msg_free(m);
			kr_buf_free(&meta);
			continue;
		}
		memcpy(m->body, body->str, body->len);
		m->body_len = body->len;
		m->meta = meta.p;
		m->meta_len = meta.len;
		m->held_since = kr_now_ms();
		m->visible_at = sent_at + s->vis_s * 1000;
		const struct kr_json *sent = attrs ? kr_json_get(attrs, "SentTimestamp") : NULL;
		m->sent_ms = sent && sent->type == KR_JSON_STRING ? strtoull(sent->str, NULL, 10) : 0;
		m->prev = s->held_tail;
		if (s->held_tail)
			s->held_tail->next = m;
		else
			s->held_head = m;
		s->held_tail = m;
		s->nheld++;
		const struct kr_json *gid = attrs ? kr_json_get(attrs, "MessageGroupId") : NULL;
		if (s->fifo && gid && gid->type == KR_JSON_STRING &&
		    !(m->group = group_get(s, gid->str, true))) {
			msg_release(s, m, 0);
			continue;
		}
		if (stopping)
			msg_release(s, m, 0);
		else
			msg_arrived(s, m);
	}
	kr_json_free(j);
	receive_more(s);
}

static void got_attributes(void *arg, const struct kr_aws_result *r)
{
	struct sqs_src *s = arg;
	s->vis_fetching = false;
	if (s->closing)
		return;
	if (!r->ok) {
		receive_failed(s, "GetQueueAttributes", r);
		return;
	}
	struct kr_json *j = NULL;
	const struct kr_json *v = NULL;
	if (kr_json_parse(r->http->body, r->http->body_len,
			  &(struct kr_json_opts){.last_key_wins = true}, &j, NULL, NULL) == KR_OK)
		v = kr_json_path(j, "$.Attributes.VisibilityTimeout");
	uint64_t vis = v && v->type == KR_JSON_STRING ? strtoull(v->str, NULL, 10) : 0;
	kr_json_free(j);
	if (!vis) {
		struct kr_aws_result bad = {.outcome = KR_RETRYABLE};
		snprintf(bad.code, sizeof bad.code, "BadAnswer");
		snprintf(bad.message, sizeof bad.message,
			 "the answer has no VisibilityTimeout of at least 1 second (set "
			 "visibility_timeout)");
		receive_failed(s, "GetQueueAttributes", &bad);
		return;
	}
	s->vis_s = vis;
	s->last_error[0] = 0;
	s->recv_backoff_ms = 0;
	char secs[24];
	snprintf(secs, sizeof secs, "%" PRIu64, vis);
	kr_log(KR_LOG_INFO, "source", "name", s->name, "msg", "receiving", "queue", s->queue_url,
	       "visibility_timeout", secs, NULL);
	kr_timer_start(s->heartbeat, 250);
	receive_more(s);
}

/* Starts receives while there is room: in the pipeline (max_in_flight), and in the ready
 * queue (so that received messages do not wait long for their turn). */
static void receive_more(struct sqs_src *s)
{
	if (s->closing || s->recv_backing_off || kr_source_stopping(s->h))
		return;
	if (!s->vis_s) {
		if (s->vis_fetching)
			return;
		struct kr_buf b = {0};
		if (!kr_buf_puts(&b, "{\"QueueUrl\":") ||
		    !kr_buf_json_string(&b, s->queue_url, strlen(s->queue_url)) ||
		    !kr_buf_puts(&b, ",\"AttributeNames\":[\"VisibilityTimeout\"]}")) {
			kr_buf_free(&b);
			return;
		}
		/* the body lives until the answer */
		free(s->attr_body);
		s->attr_body = b.p;
		struct kr_aws_call call = {.target = "AmazonSQS.GetQueueAttributes", .body = b.p,
					   .body_len = b.len, .timeout_ms = 30000};
		s->vis_fetching = true;
		if (kr_aws_send(s->aws, &call, got_attributes, s) != KR_OK)
			s->vis_fetching = false;
		return;
	}
	uint64_t limit = kr_source_in_flight_limit(s->h);
	while (s->receiving < s->concurrency &&
	       s->nready + s->receiving * s->max_messages < s->concurrency * s->max_messages &&
	       s->nheld + (s->receiving + 1) * s->max_messages <= limit) {
		struct recv_call *c = malloc(sizeof *c);
		if (!c)
			return;
		c->s = s;
		c->sent_at = kr_now_ms();
		struct kr_aws_call call = {.target = "AmazonSQS.ReceiveMessage", .body = s->recv_body,
					   .body_len = s->recv_len,
					   .timeout_ms = (s->wait_s + 15) * 1000,
					   .max_body = 64u << 20};
		if (kr_aws_send(s->aws, &call, received, c) != KR_OK) {
			free(c);
			return;
		}
		s->receiving++;
	}
}

static bool build_receive(struct sqs_src *s, const struct sqs_conf *c)
{
	struct kr_buf b = {0};
	char num[160];
	snprintf(num, sizeof num, ",\"MaxNumberOfMessages\":%" PRIu64 ",\"WaitTimeSeconds\":%" PRIu64,
		 c->max_messages, c->wait_s);
	bool ok = kr_buf_puts(&b, "{\"QueueUrl\":") &&
		  kr_buf_json_string(&b, s->queue_url, strlen(s->queue_url)) && kr_buf_puts(&b, num);
	if (ok && c->visibility_s) {
		snprintf(num, sizeof num, ",\"VisibilityTimeout\":%" PRIu64, c->visibility_s);
		ok = kr_buf_puts(&b, num);
	}
	static const char *const always[] = {"ApproximateReceiveCount", "SentTimestamp",
					     "ApproximateFirstReceiveTimestamp", "MessageGroupId",
					     "SequenceNumber", "MessageDeduplicationId"};
	/* AttributeNames for services that predate MessageSystemAttributeNames */
	for (int pass = 0; ok && pass < 2; pass++) {
		ok = kr_buf_puts(&b, pass ? "],\"MessageSystemAttributeNames\":["
					  : ",\"AttributeNames\":[");
		size_t n = 0;
		for (size_t i = 0; ok && i < sizeof always / sizeof *always; i++, n++)
			ok = kr_buf_puts(&b, n ? "," : "") &&
			     kr_buf_json_string(&b, always[i], strlen(always[i]));
		for (size_t i = 0; ok && i < c->attribute_names.n; i++, n++)
			ok = kr_buf_puts(&b, ",") &&
			     kr_buf_json_string(&b, c->attribute_names.v[i],
						strlen(c->attribute_names.v[i]));
	}
	ok = ok && kr_buf_puts(&b, "]");
	if (ok && c->message_attribute_names.n) {
		ok = kr_buf_puts(&b, ",\"MessageAttributeNames\":[");
		for (size_t i = 0; ok && i < c->message_attribute_names.n; i++)
			ok = kr_buf_puts(&b, i ? "," : "") &&
			     kr_buf_json_string(&b, c->message_attribute_names.v[i],
						strlen(c->message_attribute_names.v[i]));
		ok = ok && kr_buf_puts(&b, "]");
	}
	ok = ok && kr_buf_puts(&b, "}");
	if (!ok) {
		kr_buf_free(&b);
		return false;
	}
	s->recv_body = b.p;
	s->recv_len = b.len;
	return true;
}

/* ---- reading messages into the pipeline ---- */

/* Gives the message being read to the stream, from where it stopped; false when the pipeline
 * paused it (call again after kr_stream_resume). */
static bool read_on(struct sqs_src *s)
{
	struct msg *m = s->reading;
	while (!s->ending && m->fed < m->body_len) {
		size_t n = m->body_len - m->fed;
		if (n > FEED_CHUNK)
			n = FEED_CHUNK;
		char *p = kr_stream_reserve(s->stream, n);
		if (!p)
			return false;
		memcpy(p, m->body + m->fed, n);
		m->fed += n;
		kr_stream_commit(s->stream, n);
		if (kr_stream_paused(s->stream))
			return false;
	}
	if (!s->ending) {
		s->ending = true;
		kr_stream_end(s->stream);
		if (kr_stream_paused(s->stream))
			return false;
	}
	kr_stream_reset(s->stream);
	kr_input_record_end(s->in);
	s->reading = NULL;
	s->ending = false;
	free(m->body);
	m->body = NULL;
	return true;
}

static enum kr_pull sqs_pull(void *ctx)
{
	struct sqs_src *s = ctx;
	if (!s->in) {
		struct kr_input_opts o = {.name = s->queue_url, .unordered = true,
					  .dead_letter = s->dead_letter};
		if (!(s->in = kr_input_open(s->h, &o))) {
			kr_log(KR_LOG_ERROR, "source", "name", s->name, "msg", "out of memory", NULL);
			kr_source_error(s->h);
			return KR_PULL_DONE;
		}
		s->stream = kr_input_stream(s->in);
	}
	if (s->reading) {
		if (kr_stream_paused(s->stream) && (kr_stream_resume(s->stream), kr_stream_paused(s->stream)))
			return KR_PULL_WAIT;
		if (!read_on(s))
			return KR_PULL_WAIT;
	}
	struct msg *m;
	while (!s->reading && (m = ready_pop(s))) {
		m->state = M_READING;
		if (kr_input_record_begin(s->in, 0, m) != KR_OK ||
		    kr_input_record_meta(s->in, m->meta, m->meta_len) != KR_OK) {
			kr_log(KR_LOG_ERROR, "source", "name", s->name, "message_id", m->id, "msg",
			       "out of memory; the message comes back after the visibility timeout",
			       NULL);
			kr_input_record_end(s->in);
			continue;
		}
		s->reading = m;
		m->fed = 0;
		read_on(s);
	}
	receive_more(s);
	return KR_PULL_WAIT;
}

/* The run stops: what was received and not read goes back at once, for other consumers; what
 * is queued for a batch request goes now. A message in the middle of being read comes back
 * when its visibility ends. */
static void sqs_stop(void *ctx)
{
	struct sqs_src *s = ctx;
	kr_timer_stop(s->recv_timer);
	struct msg *m;
	while ((m = ready_pop(s))) {
		if (m->group)
			m->group->busy = false; /* its message was not read */
		msg_release(s, m, 0);
	}
	/* FIFO: the messages waiting behind each group's current one */
	for (size_t b = 0; b < GROUP_BUCKETS; b++)
		for (struct group *g = s->groups[b], *next; g; g = next) {
			next = g->next;
			while ((m = g->head)) {
				g->head = m->rnext;
				msg_release(s, m, 0);
			}
			g->tail = NULL;
			group_drop_if_idle(s, g);
		}
	pump_requests(s, &s->vis);
	pump_requests(s, &s->del);
}

static void sqs_ack(void *ctx, const struct kr_ack *a)
{
	struct sqs_src *s = ctx;
	struct msg *m = a->token;
	if (!m)
		return;
	struct group *g = m->group;
	m->group = NULL;
	if (a->failed) {
		kr_log(KR_LOG_WARN, "source", "name", s->name, "message_id", m->id, "msg",
		       "message not delivered: it goes back to the queue after invalid_backoff_seconds "
		       "(the queue's redrive policy moves it to its dead-letter queue)",
		       NULL);
		m->failed = true;
		msg_release(s, m, (uint32_t)s->backoff_s);
	} else {
		drop_queued_heartbeat(s, m);
		m->state = M_DELETING;
		if (!pending_add(&s->del, m, 0, E_DELETE)) {
			kr_log(KR_LOG_ERROR, "source", "name", s->name, "message_id", m->id, "msg",
			       "out of memory: the message is not deleted and will be delivered again",
			       NULL);
			msg_finish(s, m);
		}
		pump_requests(s, &s->del);
	}
	group_next(s, g, a->failed);
}

static int64_t lag_now(struct sqs_src *s)
{
	uint64_t oldest = 0;
	for (struct msg *m = s->held_head; m; m = m->next)
		if ((m->state == M_WAITING || m->state == M_READING) && m->sent_ms &&
		    (!oldest || m->sent_ms < oldest))
			oldest = m->sent_ms;
	uint64_t now = kr_wall_ms();
	return oldest && oldest < now ? (int64_t)(now - oldest) : 0;
}

/* The age of the oldest message received and not done. It walks every held message, so it is
 * worked out at most every 200 ms (the metrics are published as often). */
static int64_t sqs_lag_ms(void *ctx)
{
	struct sqs_src *s = ctx;
	uint64_t now = kr_now_ms();
	if (s->lag_at && now - s->lag_at < 200)
		return s->lag_cached;
	s->lag_at = now;
	s->lag_cached = lag_now(s);
	return s->lag_cached;
}

static bool sqs_busy(void *ctx)
{
	struct sqs_src *s = ctx;
	return s->del.n || s->del.in_flight || s->vis.n || s->vis.in_flight;
}

static void sqs_destroy(void *ctx);

static enum kr_err sqs_create(const struct kr_source_args *a, void **ctx, char *err)
{
	const struct sqs_conf *c = a->conf;
	struct sqs_src *s = calloc(1, sizeof *s);
	if (!s)
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	s->h = a->handle;
	s->loop = a->loop;
	s->wait_s = c->wait_s;
	s->max_messages = c->max_messages;
	s->concurrency = c->concurrency;
	s->max_processing_ms = c->max_processing_s * 1000;
	s->backoff_s = c->backoff_s;
	s->on_invalid = c->on_invalid;
	s->vis_s = c->visibility_s;
	s->vis_asked = c->visibility_s > 0;
	s->del.s = s->vis.s = s;
	size_t ul = strlen(c->queue_url);
	s->fifo = ul > 5 && strcmp(c->queue_url + ul - 5, ".fifo") == 0;
	const struct kr_json *dl = a->obj ? kr_json_get(a->obj, "dead_letter") : NULL;
	enum kr_err e = KR_OK;
	if (!(s->name = strdup(a->name)) || !(s->queue_url = strdup(c->queue_url)) ||
	    (dl && dl->type == KR_JSON_STRING && !(s->dead_letter = strdup(dl->str))) ||
	    !build_receive(s, c) || !(s->recv_timer = kr_timer_new(a->loop, recv_timer_fire, s)) ||
	    !(s->heartbeat = kr_timer_new(a->loop, heartbeat_fire, s)) ||
	    !(s->del.linger = kr_timer_new(a->loop, linger_fire, &s->del)) ||
	    !(s->vis.linger = kr_timer_new(a->loop, linger_fire, &s->vis)) ||
	    !(s->del.backoff = kr_timer_new(a->loop, backoff_fire, &s->del)) ||
	    !(s->vis.backoff = kr_timer_new(a->loop, backoff_fire, &s->vis)))
		e = kr_errf(err, KR_ERR_NOMEM, "out of memory");
	if (!e)
		e = kr_aws_new(a->loop, &c->aws, &sqs_service, &s->aws, err);
	if (e) {
		sqs_destroy(s);
		return e;
	}
	if (s->vis_s) {
		kr_timer_start(s->heartbeat, 250);
		char secs[24];
		snprintf(secs, sizeof secs, "%" PRIu64, s->vis_s);
		kr_log(KR_LOG_INFO, "source", "name", s->name, "msg", "receiving", "queue",
		       s->queue_url, "visibility_timeout", secs, NULL);
	}
	*ctx = s;
	return KR_OK;
}

static void sqs_destroy(void *ctx)
{
	struct sqs_src *s = ctx;
	s->closing = true;
	kr_aws_free(s->aws); /* calls in flight end now, as failures: closing, they only free */
	kr_timer_free(s->recv_timer);
	kr_timer_free(s->heartbeat);
	kr_timer_free(s->del.linger);
	kr_timer_free(s->vis.linger);
	kr_timer_free(s->del.backoff);
	kr_timer_free(s->vis.backoff);
	for (struct msg *m = s->held_head, *n; m; m = n) {
		n = m->next;
		msg_free(m);
	}
	for (size_t b = 0; b < GROUP_BUCKETS; b++)
		for (struct group *g = s->groups[b], *n; g; g = n) {
			n = g->next;
			free(g->name);
			free(g);
		}
	free(s->del.v);
	free(s->vis.v);
	free(s->recv_body);
	free(s->attr_body);
	free(s->dead_letter);
	free(s->queue_url);
	free(s->name);
	free(s);
}

/* How the plugin behaves: `kmsrouter help config TYPE` and kmsrouter.conf(5). */
static const char sqs_doc[] =
	"Receives with long polling (ReceiveMessage: up to max_messages messages, waiting up to "
	"wait_time_seconds), with up to concurrency receives in flight while the pipeline has "
	"room (max_in_flight). Each message body goes through the envelope detection (a raw "
	"EventBridge event, an SNS notification, with raw message delivery or not, an array or "
	"concatenation of events) and is one record. It is deleted (DeleteMessageBatch, up to 10 "
	"per request, every entry's result checked and failed entries sent again) only once every "
	"delivery it caused succeeded or was dead-lettered. A receive that fails is tried again, "
	"waiting longer each time; one that cannot pass by itself (access denied, no such queue) "
	"also makes the run's exit status 1.\n\n"
	"Visibility: receives ask for visibility_timeout when it is set; else the queue's own "
	"timeout is read once at start (GetQueueAttributes). While a message is held (waiting to "
	"be read, in the pipeline, or waiting for its delete) its visibility is extended "
	"(ChangeMessageVisibilityBatch) each time half of it has passed, until it has been held "
	"max_processing_seconds: then it is let go, with a warning, and the queue hands it out "
	"again. So the visibility timeout only needs to cover a delivery's usual time.\n\n"
	"A message that cannot be parsed goes to the dead_letter sink with on_invalid "
	"dead_letter, else to the top-level invalid_dead_letter when that is set, and is then "
	"deleted. Without either, and for a message whose delivery failed with no dead letter of "
	"its own, on_invalid decides: leave (the default) makes it visible again after "
	"invalid_backoff_seconds, never at once, and never deletes it, so the queue's redrive "
	"policy moves it to the queue's dead-letter queue after maxReceiveCount receives; "
	"dead_letter writes it to the dead_letter sink (as the invalid-record dead letter, or as "
	"the delivery's dead letter) and then deletes it.\n\n"
	"FIFO queues (a queue_url ending in .fifo): the next message of a MessageGroupId is read "
	"only when the one before it is done, so a group's messages go through the pipeline one "
	"at a time, in order; groups go in parallel. When a group's message is left (on_invalid "
	"leave), the group's messages after it are made visible again at once, for the queue to "
	"hand out again after it, in order.\n\n"
	"Each record carries the message's attributes, which rules match and dead letters carry "
	"under the top-level key \"kmsrouter\" (it is not added to delivered events): "
	"{\"kmsrouter\": {\"sqs\": {\"MessageId\", \"ApproximateReceiveCount\", "
	"\"SentTimestamp\", \"ApproximateFirstReceiveTimestamp\", and on FIFO queues "
	"\"MessageGroupId\", \"SequenceNumber\", \"MessageDeduplicationId\"; those named by "
	"attribute_names; \"MessageAttributes\": {NAME: value} for message_attribute_names}}}, "
	"the counts and timestamps as numbers. So the pattern {\"kmsrouter\": {\"sqs\": "
	"{\"ApproximateReceiveCount\": [{\"numeric\": [\">\", 3]}]}}} selects events delivered "
	"more than three times. The metric kmsrouter_source_lag_seconds is the age (from "
	"SentTimestamp) of the oldest message received and not yet done.\n\n"
	"Each message is delivered at least once: a process killed between a delivery and its "
	"delete, or a message held past max_processing_seconds, is delivered again. Several "
	"processes on one queue share its messages as SQS competing consumers, with no "
	"coordination of their own: a message one of them holds is invisible to the others, and "
	"comes back to any of them if that process dies. A delete or visibility request that "
	"fails as a whole (throttling, 5xx, a connection error, and also AccessDenied: granting "
	"the permission lets them through) is sent again with back-off for as long as the router "
	"runs; an entry the answer refuses as the sender's fault is logged with its code, and the "
	"queue delivers that message again.\n\n"
	"On SIGTERM the source stops receiving, makes the messages it received and has not begun "
	"visible again at once (for the other consumers), finishes its deletes within "
	"shutdown_grace_seconds, and the run exits 1 if any were left undone.\n\n"
	"IAM (least privilege): sqs:ReceiveMessage, sqs:DeleteMessage, "
	"sqs:ChangeMessageVisibility and sqs:GetQueueAttributes on the queue (GetQueueAttributes "
	"only without visibility_timeout), and kms:Decrypt on the queue's key where the queue is "
	"encrypted with a customer managed key.";

const struct kr_source_plugin kr_source_sqs = {
	.name = "sqs",
	.description = "messages of an Amazon SQS queue (long polling), each deleted once "
		       "delivered",
	.doc = sqs_doc,
	.options = sqs_options,
	.conf_size = sizeof(struct sqs_conf),
	.validate = sqs_validate,
	.create = sqs_create,
	.pull = sqs_pull,
	.ack = sqs_ack,
	.lag_ms = sqs_lag_ms,
	.stop = sqs_stop,
	.busy = sqs_busy,
	.destroy = sqs_destroy,
};
