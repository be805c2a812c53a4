/* kafka source: the records of Kafka topics, read as a member of a consumer group (librdkafka's
 * KafkaConsumer), committed only once delivered.
 *
 * Each assigned partition is an ordered input (plugin.h) named "TOPIC/PARTITION"; each message
 * is one framed record at position offset + 1, so the engine's acknowledgement of a partition is
 * the next offset to commit: the offset of a message is committed only when it and every
 * earlier message of its partition are done (delivered, or dead-lettered). librdkafka stores and
 * commits nothing by itself (enable.auto.commit and enable.auto.offset.store are false): the
 * source commits what was acknowledged every commit_interval_ms, when partitions are revoked and
 * when the run stops. A message whose delivery keeps failing holds its partition's commits at
 * its own offset; the ones after it are still read and delivered (at least once: after a
 * restart they come again from there).
 *
 * The group uses the cooperative-sticky assignor. When partitions are revoked (another member
 * joins, or this one leaves), their records in flight may finish for up to revoke_timeout_ms;
 * what was delivered of them is then committed, and only then are they given up, so that their
 * next owner starts where this one stopped. Messages fetched for them and not yet read are left
 * to the next owner (counted and logged). A partition lost (the session timed out) is given up at
 * once, with no commit: another member owns it already.
 *
 * The consumer's queue (messages, rebalances, commit results, errors and librdkafka's logs, with
 * rd_kafka_poll_set_consumer) wakes the router's event loop through a pipe and is served there,
 * on the loop thread; the engine's pull reads a bounded number of messages at a time and stops
 * at its in-flight limit (the rest waits in librdkafka's prefetch queue, whose size its
 * queued.* properties bound).
 *
 * Rules and dead letters see each message's metadata under "kmsrouter":
 *   {"kafka": {"topic", "partition", "offset", "timestamp", "key", "headers": {NAME: VALUE}}}
 * (a key or header value that is not UTF-8 has U+FFFD in place of its bad bytes, and the bytes
 * themselves in "key_base64" / "headers_base64"; a repeated header is an array of its values;
 * a header with no value is null; "timestamp" is absent when the message has none).
 *
 * A message that is not an event (not JSON, no event in it) goes to dead_letter_topic when one is
 * set (its bytes, its key and headers, and the headers kmsrouter.error, kmsrouter.topic,
 * kmsrouter.partition and kmsrouter.offset), produced by an idempotent producer of the source's
 * own; else to the "dead_letter" sink or the configuration's dead letter; else it is counted
 * invalid and logged. Either way its partition goes on. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "log.h"
#include "loop.h"
#include "plugin.h"
#include "rdkafka.h"
#include "stream.h"
#include "utf8.h"

#define K kr_rk
#define PULL_BATCH 512 /* messages read per pull at most */
#define HOLD_MAX_MS 30000 /* the longest periodic commits wait for a rejoin */

enum { START_EARLIEST, START_LATEST };
static const char *const start_names[] = {"earliest", "latest", NULL};

struct ksrc_conf {
	const char *brokers;
	struct kr_strings topics;
	const char *group_id;
	int start;
	uint64_t commit_interval_ms;
	uint64_t revoke_timeout_ms;
	struct kr_strmap properties;
	struct kr_strmap secret_properties;
	const char *dead_letter_topic;
	int32_t dead_letter;
};

static const struct kr_option ksrc_options[] = {
	{.name = "brokers", .type = KR_OPT_STRING, .offset = offsetof(struct ksrc_conf, brokers),
	 .required = true, .help = "bootstrap brokers, HOST:PORT[,HOST:PORT...]"},
	{.name = "topics", .type = KR_OPT_STRINGS, .offset = offsetof(struct ksrc_conf, topics),
	 .required = true,
	 .help = "the topics to read: names, or regular expressions starting with ^"},
	{.name = "group_id", .type = KR_OPT_STRING, .offset = offsetof(struct ksrc_conf, group_id),
	 .required = true,
	 .help = "the consumer group: instances with the same group_id share the partitions"},
	{.name = "start", .type = KR_OPT_ENUM, .offset = offsetof(struct ksrc_conf, start),
	 .def = "\"earliest\"", .values = start_names,
	 .help = "where a partition the group has no committed offset for starts: earliest "
		 "(every message kept) or latest (only new ones)"},
	{.name = "commit_interval_ms", .type = KR_OPT_DURATION,
	 .offset = offsetof(struct ksrc_conf, commit_interval_ms), .def = "1000", .min = 10,
	 .max = 3600000,
	 .help = "how often the offsets of delivered records are committed (also on revoke and "
		 "at stop)"},
	{.name = "revoke_timeout_ms", .type = KR_OPT_DURATION,
	 .offset = offsetof(struct ksrc_conf, revoke_timeout_ms), .def = "10000", .max = 3600000,
	 .help = "how long revoked partitions' records in flight may finish before the "
		 "partitions are given up (what is not delivered by then is read again by their "
		 "next owner)"},
	{.name = "properties", .type = KR_OPT_MAP, .offset = offsetof(struct ksrc_conf, properties),
	 .help = "librdkafka consumer properties (security.protocol, ssl.*, sasl.mechanisms, "
		 "client.id, fetch.*, queued.*, session.timeout.ms, ...; not plugin.library.paths: "
		 "no library a config names is loaded); also used by the dead-letter topic's "
		 "producer"},
	{.name = "secret_properties", .type = KR_OPT_MAP,
	 .offset = offsetof(struct ksrc_conf, secret_properties),
	 .help = "properties whose values are secrets, each the name of an environment variable "
		 "that holds it (\"sasl.password\": \"KAFKA_PASSWORD\"); never logged"},
	{.name = "dead_letter_topic", .type = KR_OPT_STRING,
	 .offset = offsetof(struct ksrc_conf, dead_letter_topic),
	 .help = "a topic for messages that are not events: their bytes, key and headers, with "
		 "the headers kmsrouter.error, kmsrouter.topic, kmsrouter.partition, "
		 "kmsrouter.offset"},
	{.name = "dead_letter", .type = KR_OPT_SINK, .offset = offsetof(struct ksrc_conf, dead_letter),
	 .help = "the sink for this source's messages that are not events (without "
		 "dead_letter_topic) and its deliveries that fail with no dead letter of their own"},
	{0},
};

/* Properties the source sets itself. */
static const char *const reserved[] = {
	"bootstrap.servers", "metadata.broker.list", "group.id", "enable.auto.commit",
	"enable.auto.offset.store", "partition.assignment.strategy", "auto.offset.reset",
	"rebalance_cb", "offset_commit_cb", "error_cb", "log_cb", "dr_cb", "dr_msg_cb", "opaque",
	"log.queue", "enable.partition.eof", NULL};

/* The consumer's configuration (the dead-letter producer's when producer): ours, then the
 * properties, then the secret ones. NULL with the reason in err; *bad names the option. */
static rd_kafka_conf_t *make_conf(const struct ksrc_conf *c, bool producer, bool offline,
				  char *err, size_t cap, const char **bad)
{
	rd_kafka_conf_t *conf = K.conf_new();
	if (!conf) {
		snprintf(err, cap, "out of memory");
		return NULL;
	}
	const char *kind = producer ? "producer" : "consumer";
	*bad = "brokers";
	bool ok = kr_rdkafka_set(conf, kind, "bootstrap.servers", c->brokers, false, err, cap) &&
		  kr_rdkafka_set(conf, kind, "log.queue", "true", false, err, cap);
	if (ok && producer) {
		*bad = "dead_letter_topic";
		ok = kr_rdkafka_set(conf, kind, "enable.idempotence", "true", false, err, cap);
	} else if (ok) {
		*bad = "group_id";
		ok = kr_rdkafka_set(conf, kind, "group.id", c->group_id, false, err, cap);
		if (ok)
			*bad = "start";
		ok = ok &&
		     kr_rdkafka_set(conf, kind, "enable.auto.commit", "false", false, err, cap) &&
		     kr_rdkafka_set(conf, kind, "enable.auto.offset.store", "false", false, err,
				    cap) &&
		     kr_rdkafka_set(conf, kind, "partition.assignment.strategy",
				    "cooperative-sticky", false, err, cap) &&
		     kr_rdkafka_set(conf, kind, "auto.offset.reset", start_names[c->start], false,
				    err, cap);
	}
	ok = ok && kr_rdkafka_set_user(conf, kind, "source", &c->properties,
				       &c->secret_properties, reserved, offline, err, cap, bad);
	if (ok && !producer) {
		/* the consumer group's debug log tells the join state (see join_state) */
		const char *user = NULL;
		for (size_t i = 0; i < c->properties.n; i++)
			if (strcmp(c->properties.keys[i], "debug") == 0)
				user = c->properties.values[i];
		char v[512];
		snprintf(v, sizeof v, "%s%scgrp", user ? user : "", user && *user ? "," : "");
		*bad = "properties";
		ok = kr_rdkafka_set(conf, kind, "debug", v, false, err, cap);
	}
	if (!ok) {
		K.conf_destroy(conf);
		return NULL;
	}
	return conf;
}

static enum kr_err ksrc_validate(const void *conf, const struct kr_opts_check *chk)
{
	const struct ksrc_conf *c = conf;
	if (!*c->brokers)
		return kr_opts_reject(chk, "brokers", "no broker given");
	if (!*c->group_id)
		return kr_opts_reject(chk, "group_id", "an empty group id");
	if (!c->topics.n)
		return kr_opts_reject(chk, "topics", "no topic given");
	for (size_t i = 0; i < c->topics.n; i++)
		if (!*c->topics.v[i])
			return kr_opts_reject(chk, "topics", "an empty topic name");
	if (c->dead_letter_topic && !*c->dead_letter_topic)
		return kr_opts_reject(chk, "dead_letter_topic", "an empty topic name");
	/* librdkafka itself checks every property's name and value; an offline load (match)
	   leaves it alone */
	char msg[KR_ERRBUF];
	if (kr_opts_offline(chk) || kr_rdkafka_load(msg) != KR_OK)
		return KR_OK;
	const char *bad = NULL;
	for (int producer = 0; producer < (c->dead_letter_topic ? 2 : 1); producer++) {
		rd_kafka_conf_t *rc = make_conf(c, producer, false, msg, sizeof msg, &bad);
		if (!rc)
			return kr_opts_reject(chk, bad, "%s", msg);
		K.conf_destroy(rc);
	}
	return KR_OK;
}

/* An assigned partition: an input of the engine. */
struct part {
	char *topic;
	int32_t partition;
	uint64_t id;          /* the input's id */
	struct kr_input *in;  /* NULL once closed */
	struct kr_stream *stream;
	int64_t next;         /* the offset after the last message read (-1: none read) */
	int64_t acked;        /* the next offset to commit: all before it are done (-1: none) */
	int64_t commit_sent;  /* the offset of the last commit asked for (-1: none) */
	bool revoking;        /* revoked: read nothing more of it; commit once its records end */
	bool gone;            /* given up: no commits any more; freed at its final ack */
	bool final;           /* the engine's last ack came: nothing of it is in flight */
	/* lost (librdkafka gave it up without a revoke: a session timeout, or a commit answered
	   "illegal generation" during a rejoin): kept, with where it got to, for the next
	   lost_assigns assignments; when one gives the partition back, it resumes there */
	bool lost;
	int lost_assigns;
	/* the lost part this one resumes, while its records are in flight: until they end,
	   commits stop where that one's acknowledgements got */
	struct part *pred;
};

struct ksrc {
	char *name;
	struct kr_source_handle *h;
	struct kr_loop *loop;
	rd_kafka_t *rk;
	rd_kafka_queue_t *q;
	struct kr_rdkafka_wake wake;
	struct kr_timer *tick;
	uint64_t commit_interval_ms, revoke_timeout_ms;
	char *dead_letter; /* a sink's name, or NULL */
	struct part **parts;
	size_t nparts;
	uint64_t next_id;
	/* the message being read (paused by the pipeline in the middle), and its partition */
	rd_kafka_message_t *reading;
	struct part *reading_part;
	bool ending;
	/* partitions revoked and not yet given up (their records finishing) */
	rd_kafka_topic_partition_list_t *revoked;
	uint64_t revoke_deadline;
	uint64_t left_to_next_owner; /* messages fetched for revoked partitions, not read */
	uint64_t repeated;           /* messages at an offset already read, not read again */
	bool stopping, closing;
	/* periodic commits wait while the group rejoins, until its rebalance callback (at most
	   HOLD_MAX_MS): librdkafka 2.0 takes a commit answered "illegal generation" during a
	   rejoin for a lost assignment, and the uncommitted records of every partition would be
	   read again. A rejoin is under way after a commit failed for a rebalance in progress,
	   and after the assignment that follows a revoke (the cooperative protocol's second
	   round, which hands the revoked partitions to their new owners). */
	bool hold_commits, rejoin_after_assign;
	uint64_t hold_until;
	/* the group's join state as librdkafka's cgrp debug log says it ("steady" between
	   rebalances): periodic commits go only in the steady state; NULL until one is seen */
	char join_state[32];
	bool user_debug; /* the properties ask for librdkafka's debug logs: they are logged */
	rd_kafka_queue_t *logq; /* librdkafka's logs, served apart from the messages */
	struct kr_rdkafka_wake log_wake;
	/* the dead-letter topic's producer */
	char *dlq_topic;
	rd_kafka_t *dlq;
	rd_kafka_queue_t *dlq_q;
	struct kr_rdkafka_wake dlq_wake;
	uint64_t dlq_outstanding;
	struct kr_buf meta, scratch;
};

static struct part *find_part(struct ksrc *s, const char *topic, int32_t partition)
{
	for (size_t i = 0; i < s->nparts; i++) {
		struct part *p = s->parts[i];
		if (!p->gone && p->partition == partition && strcmp(p->topic, topic) == 0)
			return p;
	}
	return NULL;
}

static struct part *part_by_id(struct ksrc *s, uint64_t id)
{
	for (size_t i = 0; i < s->nparts; i++)
		if (s->parts[i]->id == id)
			return s->parts[i];
	return NULL;
}

static void part_free(struct ksrc *s, struct part *p)
{
	for (size_t i = 0; i < s->nparts; i++)
		if (s->parts[i] == p) {
			s->parts[i] = s->parts[--s->nparts];
			break;
		}
	for (size_t i = 0; i < s->nparts; i++)
		if (s->parts[i]->pred == p)
			s->parts[i]->pred = NULL;
	free(p->topic);
	free(p);
}

/* Ends the engine's input of a partition (between messages). */
static void part_close_input(struct ksrc *s, struct part *p)
{
	if (!p->in || s->reading_part == p)
		return;
	kr_input_close(p->in);
	p->in = NULL;
	p->stream = NULL;
}

static void log_error(struct ksrc *s, const char *msg, rd_kafka_resp_err_t e)
{
	kr_log(KR_LOG_WARN, "source", "name", s->name, "msg", msg, "error_code", K.err2name(e),
	       "error", K.err2str(e), NULL);
}

/* ---- commits ---- */

/* The offset to commit of a partition: every record before it is done (-1: none). */
static int64_t commit_pos(const struct part *p)
{
	return p->pred ? p->pred->acked : p->acked;
}

/* Commits (asynchronously) what was acknowledged and not committed yet, of the partitions in
 * only (NULL: every partition still ours). */
static void commit_acked(struct ksrc *s, const rd_kafka_topic_partition_list_t *only)
{
	if (!only && !s->stopping && !s->closing && *s->join_state &&
	    strcmp(s->join_state, "steady") != 0)
		return; /* a rebalance is under way: the callback commits what it revokes */
	if (!only && s->hold_commits && !s->stopping && !s->closing) {
		if (kr_now_ms() < s->hold_until)
			return;
		s->hold_commits = false;
		kr_log(KR_LOG_WARN, "source", "name", s->name, "msg",
		       "the group's rejoin took longer than expected: committing again", NULL);
	}
	rd_kafka_topic_partition_list_t *l = NULL;
	for (size_t i = 0; i < s->nparts; i++) {
		struct part *p = s->parts[i];
		int64_t pos = commit_pos(p);
		/* partitions given up, and all at the close, are committed even when a commit of
		   the same offset is on its way: its answer may be a failure that comes too late */
		bool force = only || s->closing;
		if (p->gone || pos < 0 || (pos <= p->commit_sent && !force))
			continue;
		if (only) {
			bool in = false;
			for (int k = 0; k < only->cnt && !in; k++)
				in = only->elems[k].partition == p->partition &&
				     strcmp(only->elems[k].topic, p->topic) == 0;
			if (!in)
				continue;
		}
		if (!l && !(l = K.topic_partition_list_new(8)))
			return;
		K.topic_partition_list_add(l, p->topic, p->partition)->offset = pos;
		p->commit_sent = pos;
	}
	if (!l)
		return;
	rd_kafka_resp_err_t e = K.commit(s->rk, l, 1);
	if (e) {
		/* sent again at the next tick */
		log_error(s, "the offsets could not be committed", e);
		for (int k = 0; k < l->cnt; k++) {
			struct part *p = find_part(s, l->elems[k].topic, l->elems[k].partition);
			if (p)
				p->commit_sent = -1;
		}
	}
	K.topic_partition_list_destroy(l);
}

static void hold_commits(struct ksrc *s)
{
	s->hold_commits = true;
	s->hold_until = kr_now_ms() + HOLD_MAX_MS;
}

static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
		      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
	(void)opaque;
	struct ksrc *s = K.opaque(rk);
	if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
		return;
	for (int k = 0; offsets && k < offsets->cnt; k++) {
		rd_kafka_resp_err_t e = offsets->elems[k].err ? offsets->elems[k].err : err;
		if (!e)
			continue;
		if (e == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS ||
		    e == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION)
			hold_commits(s);
		log_error(s, "an offset commit failed; it is sent again", e);
		struct part *p = find_part(s, offsets->elems[k].topic, offsets->elems[k].partition);
		if (p && p->commit_sent == offsets->elems[k].offset)
			p->commit_sent = -1;
	}
	if (!offsets && err) {
		if (err == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS ||
		    err == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION)
			hold_commits(s);
		log_error(s, "an offset commit failed", err);
	}
}

/* ---- rebalances ---- */

static void give_up_revoked(struct ksrc *s)
{
	rd_kafka_topic_partition_list_t *l = s->revoked;
	s->revoked = NULL;
	uint64_t unfinished = 0;
	for (int k = 0; k < l->cnt; k++) {
		struct part *p = find_part(s, l->elems[k].topic, l->elems[k].partition);
		if (!p)
			continue;
		if (!p->final && !p->lost)
			unfinished++;
		p->gone = true;
		if (p->final && !p->lost)
			part_free(s, p);
	}
	if (unfinished && !s->closing)
		kr_log(KR_LOG_WARN, "source", "name", s->name, "msg",
		       "revoked partitions still had records in flight after revoke_timeout_ms: "
		       "their next owner reads them again",
		       NULL);
	rd_kafka_error_t *err = K.incremental_unassign(s->rk, l);
	if (err) {
		kr_log(KR_LOG_ERROR, "source", "name", s->name, "msg",
		       "the revoked partitions could not be given up", "error",
		       K.error_string(err), NULL);
		K.error_destroy(err);
	}
	K.topic_partition_list_destroy(l);
	if (s->left_to_next_owner) {
		char n[24];
		snprintf(n, sizeof n, "%llu", (unsigned long long)s->left_to_next_owner);
		kr_log(KR_LOG_INFO, "source", "name", s->name, "msg",
		       "messages fetched for revoked partitions were left unread to their next owner",
		       "messages", n, NULL);
		s->left_to_next_owner = 0;
	}
}

/* Gives up the revoked partitions once their records are done (or the time is up), after
 * committing what was delivered of them. */
static void check_revoked(struct ksrc *s)
{
	if (!s->revoked)
		return;
	bool done = true;
	for (int k = 0; k < s->revoked->cnt && done; k++) {
		struct part *p = find_part(s, s->revoked->elems[k].topic,
					   s->revoked->elems[k].partition);
		if (p) {
			part_close_input(s, p);
			done = p->final && !p->in;
		}
	}
	if (!done && kr_now_ms() < s->revoke_deadline)
		return;
	commit_acked(s, s->revoked);
	give_up_revoked(s);
}

static void log_parts(struct ksrc *s, const char *msg, const rd_kafka_topic_partition_list_t *l)
{
	struct kr_buf b = {0};
	for (int k = 0; k < l->cnt; k++) {
		char n[24];
		snprintf(n, sizeof n, "%s%d", k ? "," : "", (int)l->elems[k].partition);
		if (k && strcmp(l->elems[k].topic, l->elems[k - 1].topic) == 0) {
			kr_buf_puts(&b, n);
			continue;
		}
		kr_buf_puts(&b, k ? " " : "");
		kr_buf_puts(&b, l->elems[k].topic);
		kr_buf_puts(&b, "/");
		kr_buf_puts(&b, n + (k ? 1 : 0));
	}
	kr_log(KR_LOG_INFO, "source", "name", s->name, "msg", msg, "partitions",
	       b.p ? b.p : "", NULL);
	kr_buf_free(&b);
}

/* A lost part of the partition, kept to resume where it got. */
static struct part *find_lost(struct ksrc *s, const char *topic, int32_t partition)
{
	for (size_t i = 0; i < s->nparts; i++) {
		struct part *p = s->parts[i];
		if (p->lost && p->partition == partition && strcmp(p->topic, topic) == 0)
			return p;
	}
	return NULL;
}

/* Ends keeping a lost part (resumed, or kept long enough): freed now, or at its final ack. */
static void unkeep_lost(struct ksrc *s, struct part *q)
{
	q->lost = false;
	if (q->final)
		part_free(s, q);
}

/* A partition given back after it was lost: reading resumes after the last message this member
 * read of it (every record before it was delivered, or is in flight and commits wait for it),
 * not at the group's committed offset, which lags behind by up to a commit interval. Whatever
 * another member did with the partition in between, nothing is skipped that was not read
 * here. */
static void resume_lost(struct ksrc *s, struct part *p, rd_kafka_topic_partition_t *e)
{
	struct part *q = find_lost(s, e->topic, e->partition);
	if (!q)
		return;
	int64_t at = q->next >= 0 ? q->next : q->acked;
	if (at >= 0) {
		e->offset = at;
		p->next = p->acked = at;
		if (!q->final) {
			p->pred = q;
			q->lost = false; /* freed at its final ack */
		}
		char part[400], o[24];
		snprintf(part, sizeof part, "%s/%d", e->topic, (int)e->partition);
		snprintf(o, sizeof o, "%lld", (long long)at);
		kr_log(KR_LOG_INFO, "source", "name", s->name, "msg",
		       "a partition lost and given back resumes where this member got to",
		       "partition", part, "offset", o, NULL);
	}
	if (q->lost)
		unkeep_lost(s, q);
}

static void assign(struct ksrc *s, rd_kafka_topic_partition_list_t *l)
{
	for (int k = 0; k < l->cnt && !s->closing; k++) {
		struct part *p = calloc(1, sizeof *p);
		struct part **v = realloc(s->parts, (s->nparts + 1) * sizeof *v);
		if (v)
			s->parts = v;
		char name[400];
		snprintf(name, sizeof name, "%s/%d", l->elems[k].topic, (int)l->elems[k].partition);
		if (!p || !v || !(p->topic = strdup(l->elems[k].topic))) {
			free(p);
			kr_log(KR_LOG_ERROR, "source", "name", s->name, "msg", "out of memory", NULL);
			kr_source_error(s->h);
			continue;
		}
		p->partition = l->elems[k].partition;
		p->id = ++s->next_id;
		p->next = p->acked = p->commit_sent = -1;
		struct kr_input_opts o = {.name = name, .id = p->id, .dead_letter = s->dead_letter};
		if (!(p->in = kr_input_open(s->h, &o))) {
			free(p->topic);
			free(p);
			kr_log(KR_LOG_ERROR, "source", "name", s->name, "msg", "out of memory", NULL);
			kr_source_error(s->h);
			continue;
		}
		p->stream = kr_input_stream(p->in);
		s->parts[s->nparts++] = p;
		resume_lost(s, p, &l->elems[k]);
	}
	/* lost parts not given back within lost_assigns assignments are not kept any more */
	for (size_t i = s->nparts; i-- > 0;) {
		struct part *q = s->parts[i];
		if (q->lost && --q->lost_assigns <= 0)
			unkeep_lost(s, q);
	}
	rd_kafka_error_t *err = K.incremental_assign(s->rk, l);
	if (err) {
		kr_log(KR_LOG_ERROR, "source", "name", s->name, "msg",
		       "the assigned partitions could not be taken", "error", K.error_string(err),
		       NULL);
		K.error_destroy(err);
		kr_source_error(s->h);
	}
	log_parts(s, "partitions assigned", l);
}

static void revoke(struct ksrc *s, rd_kafka_topic_partition_list_t *l)
{
	bool lost = K.assignment_lost(s->rk);
	log_parts(s, lost ? "partitions lost (another member owns them now)"
			  : "partitions revoked", l);
	for (int k = 0; k < l->cnt; k++) {
		struct part *p = find_part(s, l->elems[k].topic, l->elems[k].partition);
		if (!p)
			continue;
		p->revoking = true;
		part_close_input(s, p);
	}
	if (s->revoked) {
		/* a second revoke before the first was given up: both go now */
		commit_acked(s, s->revoked);
		give_up_revoked(s);
	}
	if (!(s->revoked = K.topic_partition_list_new(l->cnt))) {
		kr_log(KR_LOG_ERROR, "source", "name", s->name, "msg", "out of memory", NULL);
		return;
	}
	for (int k = 0; k < l->cnt; k++)
		K.topic_partition_list_add(s->revoked, l->elems[k].topic, l->elems[k].partition);
	if (lost || s->closing) {
		/* lost: others own them already, a commit would overwrite theirs; closing: every
		   record is done and committed */
		if (lost)
			for (int k = 0; k < l->cnt; k++) {
				struct part *p = find_part(s, l->elems[k].topic,
							   l->elems[k].partition);
				if (!p)
					continue;
				p->commit_sent = p->acked;
				struct part *old = find_lost(s, p->topic, p->partition);
				if (old) /* lost twice before it came back: the newer one counts */
					unkeep_lost(s, old);
				p->lost = true;
				p->lost_assigns = 2;
			}
		give_up_revoked(s);
		return;
	}
	s->revoke_deadline = kr_now_ms() + s->revoke_timeout_ms;
	check_revoked(s);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			 rd_kafka_topic_partition_list_t *l, void *opaque)
{
	(void)opaque;
	struct ksrc *s = K.opaque(rk);
	s->hold_commits = false;
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		assign(s, l);
		if (s->rejoin_after_assign) {
			s->rejoin_after_assign = false;
			hold_commits(s);
		}
	} else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
		/* read before revoke(): giving the partitions up clears it */
		s->rejoin_after_assign = !K.assignment_lost(rk) && !s->closing;
		revoke(s, l);
	} else {
		log_error(s, "rebalance failed", err);
		rd_kafka_error_t *e = K.incremental_unassign(rk, l);
		if (e)
			K.error_destroy(e);
	}
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	(void)opaque;
	struct ksrc *s = K.opaque(rk);
	bool fatal = err == RD_KAFKA_RESP_ERR__FATAL;
	kr_log(fatal ? KR_LOG_ERROR : KR_LOG_WARN, "source", "name", s->name, "msg",
	       fatal ? "the Kafka consumer failed for good; restart kmsrouter" : "Kafka client error",
	       "error_code", K.err2name((rd_kafka_resp_err_t)err), "error", reason, NULL);
	if (fatal)
		kr_source_error(s->h);
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	struct ksrc *s = K.opaque(rk);
	static const char changed[] = "changed join state ";
	const char *at;
	if (strcmp(fac, "CGRPJOINSTATE") == 0 && (at = strstr(buf, changed)) &&
	    (at = strstr(at + sizeof changed - 1, " -> "))) {
		at += 4;
		size_t n = strcspn(at, " ");
		if (n < sizeof s->join_state) {
			memcpy(s->join_state, at, n);
			s->join_state[n] = 0;
		}
	}
	if (level < 7 || s->user_debug)
		kr_rdkafka_log("source", s->name, level, fac, buf);
}

static void log_serve(void *arg)
{
	struct ksrc *s = arg;
	K.queue_poll_callback(s->logq, 0);
}

/* ---- messages ---- */

/* Appends "name":VALUE, VALUE a JSON string of bytes that may not be UTF-8 (NULL: null); bad
 * bytes are kept in b64 as "name": base64 when b64 is given. */
static bool put_bytes(struct kr_buf *b, const void *v, size_t n, struct kr_buf *b64,
		      const char *name)
{
	if (!v)
		return kr_buf_puts(b, "null");
	size_t replaced = 0;
	if (!kr_utf8_json_string(b, v, n, &replaced))
		return false;
	if (replaced && b64) {
		if (b64->len)
			kr_buf_puts(b64, ",");
		return kr_buf_json_string(b64, name, strlen(name)) && kr_buf_puts(b64, ":\"") &&
		       kr_buf_base64(b64, v, n) && kr_buf_puts(b64, "\"");
	}
	return true;
}

/* The message's metadata (see the top of this file) into s->meta. */
static bool make_meta(struct ksrc *s, const rd_kafka_message_t *m, const char *topic)
{
	struct kr_buf *b = &s->meta;
	b->len = 0;
	char num[96];
	rd_kafka_timestamp_type_t tt;
	int64_t ts = K.message_timestamp(m, &tt);
	bool ok = kr_buf_puts(b, "{\"kafka\":{\"topic\":") &&
		  kr_buf_json_string(b, topic, strlen(topic));
	snprintf(num, sizeof num, ",\"partition\":%d,\"offset\":%lld", (int)m->partition,
		 (long long)m->offset);
	ok = ok && kr_buf_puts(b, num);
	if (ts >= 0 && tt != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE) {
		snprintf(num, sizeof num, ",\"timestamp\":%lld", (long long)ts);
		ok = ok && kr_buf_puts(b, num);
	}
	size_t replaced = 0;
	ok = ok && kr_buf_puts(b, ",\"key\":") &&
	     (m->key ? kr_utf8_json_string(b, m->key, m->key_len, &replaced)
		     : kr_buf_puts(b, "null"));
	if (ok && replaced)
		ok = kr_buf_puts(b, ",\"key_base64\":\"") && kr_buf_base64(b, m->key, m->key_len) &&
		     kr_buf_puts(b, "\"");
	rd_kafka_headers_t *hs = NULL;
	if (ok && K.message_headers(m, &hs) == RD_KAFKA_RESP_ERR_NO_ERROR && hs) {
		struct kr_buf *b64 = &s->scratch;
		b64->len = 0;
		ok = kr_buf_puts(b, ",\"headers\":{");
		const char *name;
		const void *val;
		size_t len;
		bool first = true;
		for (size_t i = 0; ok && !K.header_get_all(hs, i, &name, &val, &len); i++) {
			/* a name seen before was written with all its values */
			bool seen = false;
			const char *n2;
			const void *v2;
			size_t l2;
			for (size_t j = 0; j < i && !seen; j++)
				seen = !K.header_get_all(hs, j, &n2, &v2, &l2) && strcmp(n2, name) == 0;
			if (seen)
				continue;
			size_t count = 0;
			for (size_t j = i; !K.header_get_all(hs, j, &n2, &v2, &l2); j++)
				count += strcmp(n2, name) == 0;
			ok = kr_buf_puts(b, first ? "" : ",") &&
			     kr_buf_json_string(b, name, strlen(name)) && kr_buf_puts(b, ":") &&
			     kr_buf_puts(b, count > 1 ? "[" : "");
			first = false;
			size_t w = 0;
			for (size_t j = i; ok && !K.header_get_all(hs, j, &n2, &v2, &l2); j++) {
				if (strcmp(n2, name) != 0)
					continue;
				ok = kr_buf_puts(b, w++ ? "," : "") &&
				     put_bytes(b, v2, l2, count > 1 ? NULL : b64, name);
			}
			ok = ok && kr_buf_puts(b, count > 1 ? "]" : "");
		}
		ok = ok && kr_buf_puts(b, "}");
		if (ok && b64->len)
			ok = kr_buf_puts(b, ",\"headers_base64\":{") && kr_buf_append(b, b64->p, b64->len) &&
			     kr_buf_puts(b, "}");
	}
	return ok && kr_buf_puts(b, "}}");
}

/* Goes on reading the message being read; false while the pipeline keeps it paused. */
static bool read_on(struct ksrc *s)
{
	struct part *p = s->reading_part;
	if (kr_stream_paused(p->stream) &&
	    (kr_stream_resume(p->stream), kr_stream_paused(p->stream)))
		return false;
	if (!s->ending) {
		s->ending = true;
		kr_stream_end(p->stream);
		if (kr_stream_paused(p->stream))
			return false;
	}
	kr_stream_reset(p->stream);
	kr_input_record_end(p->in);
	K.message_destroy(s->reading);
	s->reading = NULL;
	s->reading_part = NULL;
	s->ending = false;
	if (p->revoking)
		part_close_input(s, p);
	return true;
}

/* Gives one message to its partition's input. */
static void read_message(struct ksrc *s, rd_kafka_message_t *m)
{
	const char *topic = K.topic_name(m->rkt);
	struct part *p = find_part(s, topic, m->partition);
	if (!p || !p->in || p->revoking) {
		s->left_to_next_owner++;
		K.message_destroy(m);
		return;
	}
	if (p->next >= 0 && m->offset < p->next) {
		/* a fetch that went back (a broker's leader change): the ones from there on were
		   read already */
		if (!s->repeated++)
			kr_log(KR_LOG_WARN, "source", "name", s->name, "msg",
			       "messages at offsets already read were not read again", "partition",
			       topic, NULL);
		K.message_destroy(m);
		return;
	}
	p->next = m->offset + 1;
	if (kr_input_record_begin(p->in, (uint64_t)m->offset + 1, NULL) != KR_OK ||
	    !make_meta(s, m, topic) ||
	    kr_input_record_meta(p->in, s->meta.p, s->meta.len) != KR_OK) {
		/* the record stays unacknowledged: its partition's commits stop before it */
		kr_log(KR_LOG_ERROR, "source", "name", s->name, "msg",
		       "out of memory; the partition's commits stop at this message", NULL);
		kr_input_record_end(p->in);
		K.message_destroy(m);
		return;
	}
	s->reading = m;
	s->reading_part = p;
	s->ending = false;
	kr_stream_parse_mem(p->stream, m->payload ? m->payload : "", m->payload ? m->len : 0);
	read_on(s);
}

static void consumer_message_error(struct ksrc *s, rd_kafka_message_t *m)
{
	if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
		return;
	char detail[512] = "";
	if (m->payload && m->len)
		snprintf(detail, sizeof detail, "%.*s", (int)(m->len < 500 ? m->len : 500),
			 (const char *)m->payload);
	kr_log(m->err == RD_KAFKA_RESP_ERR__FATAL ? KR_LOG_ERROR : KR_LOG_WARN, "source", "name",
	       s->name, "msg", "Kafka consumer error", "error_code", K.err2name(m->err), "error",
	       *detail ? detail : K.err2str(m->err), NULL);
	if (m->err == RD_KAFKA_RESP_ERR__FATAL)
		kr_source_error(s->h);
}

static enum kr_pull ksrc_pull(void *ctx)
{
	struct ksrc *s = ctx;
	if (s->stopping)
		return KR_PULL_WAIT;
	if (s->reading && !read_on(s))
		return KR_PULL_WAIT;
	int n = 0;
	for (; n < PULL_BATCH && !s->reading; n++) {
		rd_kafka_message_t *m = K.consumer_poll(s->rk, 0);
		if (!m)
			break;
		if (m->err) {
			consumer_message_error(s, m);
			K.message_destroy(m);
			continue;
		}
		read_message(s, m);
	}
	check_revoked(s);
	return n == PULL_BATCH && !s->reading ? KR_PULL_MORE : KR_PULL_WAIT;
}

/* After stop: the queue is served for commits, rebalances and logs; messages go back. */
static void serve_stopped(struct ksrc *s)
{
	rd_kafka_message_t *m;
	while ((m = K.consumer_poll(s->rk, 0))) {
		if (!m->err)
			s->left_to_next_owner++;
		K.message_destroy(m);
	}
}

static void on_wake(void *arg)
{
	struct ksrc *s = arg;
	/* while running, the engine's next round pulls */
	if (s->stopping)
		serve_stopped(s);
}

static void update_lag(struct ksrc *s)
{
	for (size_t i = 0; i < s->nparts; i++) {
		struct part *p = s->parts[i];
		int64_t lo = -1, hi = -1;
		if (!p->in || p->acked < 0 ||
		    K.get_watermark_offsets(s->rk, p->topic, p->partition, &lo, &hi) ||
		    hi < 0)
			continue;
		kr_input_set_lag(p->in, hi > p->acked ? hi - p->acked : 0);
	}
}

static void on_tick(struct kr_loop *l, struct kr_timer *t, void *arg)
{
	(void)l;
	struct ksrc *s = arg;
	commit_acked(s, NULL);
	check_revoked(s);
	update_lag(s);
	if (s->stopping)
		serve_stopped(s);
	kr_timer_start(t, s->stopping ? 100 : s->commit_interval_ms);
}

static void ksrc_ack(void *ctx, const struct kr_ack *a)
{
	struct ksrc *s = ctx;
	struct part *p = part_by_id(s, a->id);
	if (!p)
		return;
	if (a->position && (int64_t)a->position > p->acked)
		p->acked = (int64_t)a->position;
	if (a->final) {
		p->final = true;
		p->in = NULL;
		if (p->gone && !p->lost)
			part_free(s, p);
		else
			check_revoked(s);
	}
	if (s->stopping && !kr_timer_active(s->tick))
		kr_timer_start(s->tick, 0);
}

static void ksrc_stop(void *ctx)
{
	struct ksrc *s = ctx;
	s->stopping = true;
	/* the message in the middle of being read is read to its end (a record at a time, past
	   the in-flight limit): its partition's acknowledgement covers all of it or none */
	while (s->reading && !read_on(s))
		;
	serve_stopped(s);
	kr_timer_start(s->tick, 0);
}

static bool ksrc_busy(void *ctx)
{
	struct ksrc *s = ctx;
	for (size_t i = 0; i < s->nparts; i++) {
		const struct part *p = s->parts[i];
		if (!p->gone && commit_pos(p) > p->commit_sent)
			return true;
	}
	return false;
}

/* ---- the dead-letter topic ---- */

static void on_dlq_report(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)opaque;
	struct ksrc *s = K.opaque(rk);
	struct kr_rejected *r = m->_private;
	if (!r)
		return;
	s->dlq_outstanding--;
	if (m->err)
		kr_log(KR_LOG_ERROR, "source", "name", s->name, "msg",
		       "a message could not be written to the dead-letter topic; its partition's "
		       "commits stop before it",
		       "topic", s->dlq_topic, "error_code", K.err2name(m->err), "error",
		       K.err2str(m->err), NULL);
	kr_reject_done(r, !m->err);
}

static void on_dlq_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	struct ksrc *s = K.opaque(rk);
	kr_rdkafka_log("source", s->name, level, fac, buf);
}

static void dlq_serve(void *arg)
{
	struct ksrc *s = arg;
	K.poll(s->dlq, 0);
}

static bool ksrc_reject(void *ctx, const struct kr_reject *r)
{
	struct ksrc *s = ctx;
	if (!s->dlq || !s->reading)
		return false;
	const rd_kafka_message_t *m = s->reading;
	const char *topic = K.topic_name(m->rkt);
	/* the record's bytes, from the message itself (the stream keeps only a prefix of a big
	   one) */
	const char *v = r->raw;
	size_t n = r->raw_len;
	if (m->payload && r->offset + r->size <= m->len) {
		v = (const char *)m->payload + r->offset;
		n = (size_t)r->size;
	}
	rd_kafka_headers_t *orig = NULL, *hs;
	if (K.message_headers(m, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR && orig)
		hs = K.headers_copy(orig);
	else
		hs = K.headers_new(4);
	char part[16], off[24];
	snprintf(part, sizeof part, "%d", (int)m->partition);
	snprintf(off, sizeof off, "%lld", (long long)m->offset);
	if (!hs || K.header_add(hs, "kmsrouter.error", -1, r->error, -1) ||
	    K.header_add(hs, "kmsrouter.topic", -1, topic, -1) ||
	    K.header_add(hs, "kmsrouter.partition", -1, part, -1) ||
	    K.header_add(hs, "kmsrouter.offset", -1, off, -1)) {
		if (hs)
			K.headers_destroy(hs);
		return false;
	}
	rd_kafka_resp_err_t e = K.producev(
		s->dlq, RD_KAFKA_V_TOPIC(s->dlq_topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		RD_KAFKA_V_VALUE((void *)v, n), RD_KAFKA_V_KEY(m->key, m->key_len),
		RD_KAFKA_V_HEADERS(hs), RD_KAFKA_V_OPAQUE(r->done), RD_KAFKA_V_END);
	if (e) {
		K.headers_destroy(hs);
		kr_log(KR_LOG_ERROR, "source", "name", s->name, "msg",
		       "a message could not be given to the dead-letter topic's producer; its "
		       "partition's commits stop before it",
		       "topic", s->dlq_topic, "error_code", K.err2name(e), "error", K.err2str(e),
		       NULL);
		kr_reject_done(r->done, false);
		return true;
	}
	char where[400];
	snprintf(where, sizeof where, "%s/%s", topic, part);
	kr_log(KR_LOG_INFO, "source", "name", s->name, "msg",
	       "message that is not an event sent to the dead-letter topic", "partition", where,
	       "offset", off, "topic", s->dlq_topic, NULL);
	s->dlq_outstanding++;
	return true;
}

static enum kr_err start_dlq(struct ksrc *s, const struct ksrc_conf *c, char *err)
{
	char why[KR_ERRBUF];
	const char *bad;
	rd_kafka_conf_t *conf = make_conf(c, true, false, why, sizeof why, &bad);
	if (!conf)
		return kr_errf(err, KR_ERR_CONFIG, "%s: %s", bad, why);
	K.conf_set_dr_msg_cb(conf, on_dlq_report);
	K.conf_set_log_cb(conf, on_dlq_log);
	K.conf_set_opaque(conf, s);
	if (!(s->dlq = K.new(RD_KAFKA_PRODUCER, conf, why, sizeof why))) {
		K.conf_destroy(conf);
		return kr_errf(err, KR_ERR_CONFIG, "the dead-letter topic's producer cannot start: %s",
			       why);
	}
	if (!(s->dlq_q = K.queue_get_main(s->dlq)) ||
	    K.set_log_queue(s->dlq, NULL) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    !kr_rdkafka_watch(&s->dlq_wake, s->loop, s->dlq_q, dlq_serve, s))
		return kr_errf(err, KR_ERR_IO, "the dead-letter producer's queue cannot be watched");
	return KR_OK;
}

/* ---- the instance ---- */

static void ksrc_destroy(void *ctx);

static enum kr_err ksrc_create(const struct kr_source_args *a, void **ctx, char *err)
{
	const struct ksrc_conf *c = a->conf;
	enum kr_err e = kr_rdkafka_load(err);
	if (e)
		return e;
	struct ksrc *s = calloc(1, sizeof *s);
	if (!s)
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	s->wake.pipe[0] = s->wake.pipe[1] = s->dlq_wake.pipe[0] = s->dlq_wake.pipe[1] = -1;
	s->log_wake.pipe[0] = s->log_wake.pipe[1] = -1;
	for (size_t i = 0; i < c->properties.n; i++)
		s->user_debug |= strcmp(c->properties.keys[i], "debug") == 0;
	s->loop = a->loop;
	s->h = a->handle;
	s->commit_interval_ms = c->commit_interval_ms;
	s->revoke_timeout_ms = c->revoke_timeout_ms;
	const struct kr_json *dl = a->obj ? kr_json_get(a->obj, "dead_letter") : NULL;
	if (!(s->name = strdup(a->name)) || !(s->tick = kr_timer_new(a->loop, on_tick, s)) ||
	    (dl && dl->type == KR_JSON_STRING && !(s->dead_letter = strdup(dl->str))) ||
	    (c->dead_letter_topic && !(s->dlq_topic = strdup(c->dead_letter_topic)))) {
		ksrc_destroy(s);
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	}
	if (s->dlq_topic && (e = start_dlq(s, c, err)) != KR_OK) {
		ksrc_destroy(s);
		return e;
	}
	char why[KR_ERRBUF];
	const char *bad;
	rd_kafka_conf_t *conf = make_conf(c, false, false, why, sizeof why, &bad);
	if (!conf) {
		ksrc_destroy(s);
		return kr_errf(err, KR_ERR_CONFIG, "%s: %s", bad, why);
	}
	K.conf_set_rebalance_cb(conf, on_rebalance);
	K.conf_set_offset_commit_cb(conf, on_commit);
	K.conf_set_error_cb(conf, on_error);
	K.conf_set_log_cb(conf, on_log);
	K.conf_set_opaque(conf, s);
	if (!(s->rk = K.new(RD_KAFKA_CONSUMER, conf, why, sizeof why))) {
		K.conf_destroy(conf);
		ksrc_destroy(s);
		return kr_errf(err, KR_ERR_CONFIG, "the Kafka consumer cannot start: %s", why);
	}
	rd_kafka_topic_partition_list_t *topics = K.topic_partition_list_new((int)c->topics.n);
	for (size_t i = 0; topics && i < c->topics.n; i++)
		K.topic_partition_list_add(topics, c->topics.v[i], RD_KAFKA_PARTITION_UA);
	rd_kafka_resp_err_t ke = RD_KAFKA_RESP_ERR__FAIL;
	if (!topics || !(s->logq = K.queue_new(s->rk)) || K.set_log_queue(s->rk, s->logq) ||
	    !kr_rdkafka_watch(&s->log_wake, a->loop, s->logq, log_serve, s) ||
	    K.poll_set_consumer(s->rk) ||
	    !(s->q = K.queue_get_consumer(s->rk)) ||
	    !kr_rdkafka_watch(&s->wake, a->loop, s->q, on_wake, s) ||
	    (ke = K.subscribe(s->rk, topics)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		if (topics)
			K.topic_partition_list_destroy(topics);
		ksrc_destroy(s);
		return kr_errf(err, KR_ERR_CONFIG, "the Kafka consumer cannot subscribe: %s",
			       K.err2str(ke));
	}
	K.topic_partition_list_destroy(topics);
	kr_timer_start(s->tick, s->commit_interval_ms);
	kr_log(KR_LOG_INFO, "source", "name", s->name, "msg", "Kafka consumer started", "brokers",
	       c->brokers, "group_id", c->group_id, "librdkafka", K.version_str(), NULL);
	*ctx = s;
	return KR_OK;
}

static void ksrc_destroy(void *ctx)
{
	struct ksrc *s = ctx;
	s->closing = true;
	if (s->reading) {
		K.message_destroy(s->reading);
		s->reading = NULL;
		s->reading_part = NULL;
	}
	if (s->rk) {
		/* what was delivered is committed; leaving the group revokes the rest (the
		   rebalance callback gives it up at once, as closing), and waits for the commits */
		commit_acked(s, NULL);
		rd_kafka_resp_err_t e = K.consumer_close(s->rk);
		if (e)
			log_error(s, "the Kafka consumer did not leave its group cleanly", e);
		if (s->revoked)
			give_up_revoked(s);
		if (s->left_to_next_owner) {
			char n[24];
			snprintf(n, sizeof n, "%llu", (unsigned long long)s->left_to_next_owner);
			kr_log(KR_LOG_INFO, "source", "name", s->name, "msg",
			       "messages fetched and not read were left to the group", "messages", n,
			       NULL);
		}
		if (s->q)
			K.queue_destroy(s->q);
		if (s->logq) {
			K.queue_poll_callback(s->logq, 0);
			K.set_log_queue(s->rk, NULL);
			K.queue_destroy(s->logq);
		}
		K.destroy(s->rk);
	}
	kr_rdkafka_unwatch(&s->wake);
	kr_rdkafka_unwatch(&s->log_wake);
	if (s->dlq) {
		/* a dead letter not written by now fails: its record stays uncommitted */
		K.purge(s->dlq, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		for (int i = 0; i < 50 && s->dlq_outstanding; i++)
			K.poll(s->dlq, 100);
		if (s->dlq_q)
			K.queue_destroy(s->dlq_q);
		K.destroy(s->dlq);
	}
	kr_rdkafka_unwatch(&s->dlq_wake);
	while (s->nparts)
		part_free(s, s->parts[0]);
	free(s->parts);
	kr_timer_free(s->tick);
	kr_buf_free(&s->meta);
	kr_buf_free(&s->scratch);
	free(s->dlq_topic);
	free(s->dead_letter);
	free(s->name);
	free(s);
}

/* How the plugin behaves: `kmsrouter help config TYPE` and kmsrouter.conf(5). */
static const char ksrc_doc[] =
	"A member of the consumer group group_id (cooperative-sticky assignor): instances with "
	"the same group_id share the partitions of the topics. Each assigned partition is an "
	"ordered input named TOPIC/PARTITION and each message one record. librdkafka stores and "
	"commits nothing itself (enable.auto.commit and enable.auto.offset.store are false): an "
	"offset is committed only when its message and every earlier one of the partition are "
	"delivered or dead-lettered, every commit_interval_ms, on revoke and at stop. A message "
	"whose delivery keeps failing holds its partition's commits at its offset (later ones are "
	"still delivered, and come again after a restart). Delivery is at least once.\n\n"
	"On a rebalance a member finishes the revoked partitions' records in flight (up to "
	"revoke_timeout_ms), commits them, then gives the partitions up, so their next owner "
	"starts where it stopped; messages fetched for them and not yet read are left to the next "
	"owner. A member killed or cut off loses its partitions after session.timeout.ms, and "
	"their next owner reads again what it had not committed: at most the records of "
	"commit_interval_ms plus those in flight. A member whose sinks keep it at max_in_flight "
	"for longer than max.poll.interval.ms (300 s by default) is dropped by the group and "
	"rejoins when they recover.\n\n"
	"Debian 12's librdkafka (2.0.2) takes an offset commit answered ILLEGAL_GENERATION, which "
	"a commit sent while the group rejoins can get, for a lost assignment (librdkafka issue "
	"#4059). kmsrouter holds its periodic commits while a rejoin is under way (after a commit "
	"answered REBALANCE_IN_PROGRESS, and in the cooperative protocol's second round after a "
	"revoke) until the rebalance callback, and a member that lost partitions and is given "
	"them back resumes after the last message it read of each rather than at the older "
	"committed offset. A revoke's commit can still be refused while rebalances overlap "
	"(REBALANCE_IN_PROGRESS); the next owner then reads those partitions from the older "
	"committed offset (duplicates, never a loss).\n\n"
	"Rules see each message's metadata, and dead letters carry it, under the top-level key "
	"\"kmsrouter\": {\"kafka\": {\"topic\", \"partition\", \"offset\", \"timestamp\", "
	"\"key\", \"headers\": {NAME: VALUE}}}, as in the pattern {\"kmsrouter\": {\"kafka\": "
	"{\"headers\": {\"tenant\": [\"a\"]}}}}. A repeated header is an array of its values, a "
	"header without value null; \"timestamp\" is absent when the message has none; a key or "
	"header value that is not UTF-8 has U+FFFD in place of its bad bytes, and the bytes "
	"themselves are in \"key_base64\" / \"headers_base64\".\n\n"
	"A message that is not an event goes to dead_letter_topic when it is set (its bytes, key "
	"and headers plus the headers kmsrouter.error, kmsrouter.topic, kmsrouter.partition and "
	"kmsrouter.offset, written by an idempotent producer of the source's own, with the same "
	"properties), else to the dead_letter sink or the top-level invalid_dead_letter, else it "
	"is counted and logged; the partition goes on either way.\n\n"
	"properties passes librdkafka consumer properties through, and secret_properties takes a "
	"property's value from an environment variable (never logged); kmsrouter check has "
	"librdkafka check every property's name and value. The properties the source sets itself "
	"(bootstrap.servers, metadata.broker.list, group.id, enable.auto.commit, "
	"enable.auto.offset.store, partition.assignment.strategy, auto.offset.reset, "
	"enable.partition.eof, log.queue and the callbacks) are refused. The consumer reads ahead "
	"into librdkafka's prefetch queue, which its queued.* properties bound; the pipeline "
	"takes messages from it up to max_in_flight.\n\n"
	"The metric kmsrouter_source_input_lag{source,input} is each partition's high watermark "
	"minus its next offset to commit (shown once a message of it was done). On SIGTERM the "
	"source stops reading, finishes what is in flight, commits and leaves the group. Kafka "
	"ACLs: Read on the topics and on the group, and Write on dead_letter_topic.";

const struct kr_source_plugin kr_source_kafka = {
	.name = "kafka",
	.description = "reads Kafka topics as a member of a consumer group; commits offsets once "
		       "their records are delivered (librdkafka)",
	.doc = ksrc_doc,
	.options = ksrc_options,
	.conf_size = sizeof(struct ksrc_conf),
	.validate = ksrc_validate,
	.create = ksrc_create,
	.pull = ksrc_pull,
	.ack = ksrc_ack,
	.stop = ksrc_stop,
	.busy = ksrc_busy,
	.reject = ksrc_reject,
	.destroy = ksrc_destroy,
};
