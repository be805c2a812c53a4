/* kafka sink: each payload a message of a Kafka topic, through librdkafka's idempotent producer.
 *
 * The topic and the key are templates (<$.path> placeholders, fields.h): by default the key is
 * the event's key id, so one key's events go to one partition, in order. An event without the
 * fields the key names is sent without a key (librdkafka's partitioner spreads those); one
 * without the fields the topic names fails permanently ("MissingTopic"). librdkafka batches,
 * retries within message.timeout.ms (the sink's timeout_ms unless "properties" says) and keeps
 * the order of a partition's messages across its retries (enable.idempotence). Its delivery
 * report completes the delivery: delivered, or failed with librdkafka's error name, permanently
 * for what sending again cannot fix (a message too large, an unknown topic, authorization),
 * else to be retried by the engine's policy.
 *
 * librdkafka runs its own threads; everything it reports (delivery reports, errors, its logs)
 * goes to its main queue, which wakes the router's event loop through a pipe
 * (rd_kafka_queue_io_event_enable) and is served there, so the callbacks run on the loop
 * thread. "properties" passes any producer property through; "secret_properties" takes a
 * property's value from an environment variable (sasl.password, ssl.key.password): those values
 * never reach logs or errors. librdkafka is loaded when a kafka sink is first made (dynlib.h). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "buf.h"
#include "fields.h"
#include "json.h"
#include "log.h"
#include "loop.h"
#include "plugin.h"
#include "rdkafka.h"

#define K kr_rk

struct kafka_conf {
	const char *brokers;
	const char *topic;
	const char *key;
	struct kr_strmap properties;
	struct kr_strmap secret_properties;
};

static const struct kr_option kafka_options[] = {
	{.name = "brokers", .type = KR_OPT_STRING, .offset = offsetof(struct kafka_conf, brokers),
	 .required = true, .help = "bootstrap brokers, HOST:PORT[,HOST:PORT...]"},
	{.name = "topic", .type = KR_OPT_STRING, .offset = offsetof(struct kafka_conf, topic),
	 .required = true,
	 .help = "the topic, a template (<$.path> placeholders); an event without its fields "
		 "goes to the dead letter"},
	{.name = "key", .type = KR_OPT_STRING, .offset = offsetof(struct kafka_conf, key),
	 .def = "\"<$.detail.key-id>\"",
	 .help = "the message key, a template (\"\": none); an event without its fields is sent "
		 "without a key"},
	{.name = "properties", .type = KR_OPT_MAP, .offset = offsetof(struct kafka_conf, properties),
	 .help = "librdkafka producer properties (security.protocol, ssl.*, sasl.mechanisms, "
		 "client.id, linger.ms, compression.type, ...); not plugin.library.paths (no "
		 "library a config names is loaded)"},
	{.name = "secret_properties", .type = KR_OPT_MAP,
	 .offset = offsetof(struct kafka_conf, secret_properties),
	 .help = "producer properties whose values are secrets, each the name of an environment "
		 "variable that holds it (\"sasl.password\": \"KAFKA_PASSWORD\"); never logged"},
	{0},
};

/* Properties the sink sets itself. */
static const char *const reserved[] = {"bootstrap.servers", "metadata.broker.list",
				       "dr_cb", "dr_msg_cb", "error_cb", "log_cb", "opaque",
				       "log.queue", NULL};

/* The producer's configuration: ours, then the properties, then the secret ones. NULL with the
 * reason in err; *bad names the option at fault. */
static rd_kafka_conf_t *make_conf(const struct kafka_conf *c, uint64_t timeout_ms, bool offline,
				  char *err, size_t cap, const char **bad)
{
	rd_kafka_conf_t *conf = K.conf_new();
	if (!conf) {
		snprintf(err, cap, "out of memory");
		return NULL;
	}
	char t[24];
	snprintf(t, sizeof t, "%llu", (unsigned long long)timeout_ms);
	*bad = "brokers";
	bool ok = kr_rdkafka_set(conf, "producer", "bootstrap.servers", c->brokers, false, err,
				 cap) &&
		  kr_rdkafka_set(conf, "producer", "enable.idempotence", "true", false, err, cap) &&
		  kr_rdkafka_set(conf, "producer", "message.timeout.ms", t, false, err, cap) &&
		  kr_rdkafka_set(conf, "producer", "log.queue", "true", false, err, cap) &&
		  kr_rdkafka_set_user(conf, "producer", "sink", &c->properties, &c->secret_properties,
				      reserved, offline, err, cap, bad);
	if (!ok) {
		K.conf_destroy(conf);
		return NULL;
	}
	return conf;
}

static enum kr_err kafka_validate(const void *conf, const struct kr_opts_check *chk)
{
	const struct kafka_conf *c = conf;
	char msg[KR_ERRBUF];
	struct kr_tmpl *t = kr_tmpl_new(c->topic, msg);
	if (!t)
		return kr_opts_reject(chk, "topic", "%s", msg);
	kr_tmpl_free(t);
	if (!(t = kr_tmpl_new(c->key, msg)))
		return kr_opts_reject(chk, "key", "%s", msg);
	kr_tmpl_free(t);
	if (!*c->brokers)
		return kr_opts_reject(chk, "brokers", "no broker given");
	/* librdkafka itself checks every property's name and value; an offline load (match)
	   leaves it alone */
	if (kr_opts_offline(chk) || kr_rdkafka_load(msg) != KR_OK)
		return KR_OK;
	const char *bad = NULL;
	rd_kafka_conf_t *rc = make_conf(c, 10000, false, msg, sizeof msg, &bad);
	if (!rc)
		return kr_opts_reject(chk, bad, "%s", msg);
	K.conf_destroy(rc);
	return KR_OK;
}

struct kafka_sink {
	char *name;
	struct kr_loop *loop;
	rd_kafka_t *rk;
	rd_kafka_queue_t *mainq;
	struct kr_rdkafka_wake wake;
	struct kr_timer *poller;
	struct kr_tmpl *topic, *key;
	size_t outstanding; /* deliveries produced and not yet reported */
	bool closing;
	struct kr_buf tscratch, kscratch;
};

/* What sending again cannot fix. */
static bool permanent(rd_kafka_resp_err_t e)
{
	switch (e) {
	case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
	case RD_KAFKA_RESP_ERR_INVALID_MSG:
	case RD_KAFKA_RESP_ERR_INVALID_RECORD:
	case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
	case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
	case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
	case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
	case RD_KAFKA_RESP_ERR__INVALID_ARG:
		return true;
	default:
		return false;
	}
}

static void complete(struct kafka_sink *s, struct kr_delivery *d, rd_kafka_resp_err_t e)
{
	if (!e) {
		kr_delivery_done(d, KR_DELIVERED, 0, NULL, NULL);
		return;
	}
	char fatal[256] = "";
	if (e == RD_KAFKA_RESP_ERR__FATAL && s->rk)
		e = K.fatal_error(s->rk, fatal, sizeof fatal);
	kr_delivery_done(d, permanent(e) ? KR_PERMANENT : KR_RETRYABLE, 0, K.err2name(e),
			 *fatal ? fatal : K.err2str(e));
}

/* librdkafka's delivery report, served on the loop thread (kafka_serve). */
static void on_report(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)opaque;
	struct kafka_sink *s = K.opaque(rk);
	struct kr_delivery *d = m->_private;
	if (!d)
		return;
	s->outstanding--;
	complete(s, d, m->err);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	(void)opaque;
	struct kafka_sink *s = K.opaque(rk);
	bool fatal = err == RD_KAFKA_RESP_ERR__FATAL;
	/* all brokers down, a broker gone: librdkafka keeps trying, the deliveries wait */
	kr_log(fatal ? KR_LOG_ERROR : KR_LOG_WARN, "sink", "name", s->name, "msg",
	       fatal ? "the Kafka producer failed for good; restart kmsrouter"
		     : "Kafka client error",
	       "error_code", K.err2name((rd_kafka_resp_err_t)err), "error", reason, NULL);
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	struct kafka_sink *s = K.opaque(rk);
	kr_rdkafka_log("sink", s->name, level, fac, buf);
}

/* Serves librdkafka's main queue: delivery reports, errors, logs. */
static void kafka_serve(struct kafka_sink *s)
{
	K.poll(s->rk, 0);
	if (s->outstanding && !s->closing)
		kr_timer_start(s->poller, 100);
}

static void on_wake(void *arg)
{
	kafka_serve(arg);
}

/* In case a wake-up is missed: the queue is served every 100 ms while messages are out. */
static void on_poll_timer(struct kr_loop *l, struct kr_timer *t, void *arg)
{
	(void)l;
	(void)t;
	kafka_serve(arg);
}

static void kafka_destroy(void *ctx);

static enum kr_err kafka_create(const struct kr_sink_args *a, void **ctx, char *err)
{
	const struct kafka_conf *c = a->conf;
	enum kr_err e = kr_rdkafka_load(err);
	if (e)
		return e;
	struct kafka_sink *s = calloc(1, sizeof *s);
	if (!s)
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	s->wake.pipe[0] = s->wake.pipe[1] = -1;
	s->loop = a->loop;
	if (!(s->name = strdup(a->name)) || !(s->poller = kr_timer_new(a->loop, on_poll_timer, s))) {
		kafka_destroy(s);
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	}
	if (!(s->topic = kr_tmpl_new(c->topic, err)) || !(s->key = kr_tmpl_new(c->key, err))) {
		kafka_destroy(s);
		return KR_ERR_CONFIG;
	}
	char why[KR_ERRBUF];
	const char *bad;
	rd_kafka_conf_t *conf = make_conf(c, a->timeout_ms, false, why, sizeof why, &bad);
	if (!conf) {
		kafka_destroy(s);
		return kr_errf(err, KR_ERR_CONFIG, "%s: %s", bad, why);
	}
	K.conf_set_dr_msg_cb(conf, on_report);
	K.conf_set_error_cb(conf, on_error);
	K.conf_set_log_cb(conf, on_log);
	K.conf_set_opaque(conf, s);
	if (!(s->rk = K.new(RD_KAFKA_PRODUCER, conf, why, sizeof why))) {
		K.conf_destroy(conf);
		kafka_destroy(s);
		return kr_errf(err, KR_ERR_CONFIG, "the Kafka producer cannot start: %s", why);
	}
	s->mainq = K.queue_get_main(s->rk);
	if (!s->mainq || K.set_log_queue(s->rk, NULL) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    !kr_rdkafka_watch(&s->wake, a->loop, s->mainq, on_wake, s)) {
		kafka_destroy(s);
		return kr_errf(err, KR_ERR_IO, "the Kafka producer's queue cannot be watched");
	}
	kr_log(KR_LOG_INFO, "sink", "name", s->name, "msg", "Kafka producer started", "brokers",
	       c->brokers, "librdkafka", K.version_str(), NULL);
	*ctx = s;
	return KR_OK;
}

static void kafka_submit(void *ctx, struct kr_delivery *d)
{
	struct kafka_sink *s = ctx;
	struct kr_event_text ev = kr_event_text_of(d->event, d->event_len);
	size_t tn = 0, kn = 0;
	const char *topic = kr_tmpl_text(s->topic, &ev, &s->tscratch, &tn);
	const char *key = kr_tmpl_text(s->key, &ev, &s->kscratch, &kn);
	if (!topic || !key) {
		kr_delivery_done(d, KR_RETRYABLE, 0, "ENOMEM", "out of memory");
		return;
	}
	if (!tn) {
		kr_delivery_done(d, KR_PERMANENT, 0, "MissingTopic",
				 "the event lacks a field the topic template names");
		return;
	}
	rd_kafka_resp_err_t e = K.producev(
		s->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		RD_KAFKA_V_VALUE((void *)d->payload, d->len),
		RD_KAFKA_V_KEY(kn ? key : NULL, kn), RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
	if (e) {
		/* a full local queue (queue.buffering.max.*) or a fatal producer: the engine's retry
		   policy tries again */
		complete(s, d, e);
		return;
	}
	s->outstanding++;
	if (!kr_timer_active(s->poller))
		kr_timer_start(s->poller, 100);
}

static void kafka_destroy(void *ctx)
{
	struct kafka_sink *s = ctx;
	s->closing = true;
	if (s->rk) {
		/* what is still queued or in flight fails now (its record stays unacknowledged: the
		   source delivers it again); its reports come back through the queue */
		K.purge(s->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		for (int i = 0; i < 50 && s->outstanding; i++)
			K.poll(s->rk, 100);
		if (s->outstanding)
			kr_log(KR_LOG_WARN, "sink", "name", s->name, "msg",
			       "Kafka deliveries still unreported at shutdown", NULL);
		if (s->mainq)
			K.queue_destroy(s->mainq);
		K.destroy(s->rk);
	}
	kr_rdkafka_unwatch(&s->wake);
	kr_timer_free(s->poller);
	kr_tmpl_free(s->topic);
	kr_tmpl_free(s->key);
	kr_buf_free(&s->tscratch);
	kr_buf_free(&s->kscratch);
	free(s->name);
	free(s);
}

/* How the plugin behaves: `kmsrouter help config TYPE` and kmsrouter.conf(5). */
static const char kafka_doc[] =
	"Produces each payload as a message of topic (a template, such as kms-<$.detail.key-id>; "
	"an event without the fields it names goes to the dead letter, MissingTopic) with key (a "
	"template, default <$.detail.key-id>, so one key's events go to one partition, in order; "
	"\"\" for none; an event without the fields it names is sent without a key, and "
	"librdkafka's partitioner spreads those).\n\n"
	"The producer is idempotent (kmsrouter sets enable.idempotence, unless properties sets it "
	"to false: its own retries neither duplicate nor reorder a partition's messages). "
	"librdkafka batches and retries within message.timeout.ms, which is the sink's timeout_ms "
	"unless properties sets it. Its "
	"delivery report completes each delivery; a failure goes to the sink's retry policy, or "
	"at once to the dead letter when sending again cannot help (a message over "
	"message.max.bytes, an unknown or invalid topic, authorization), with librdkafka's error "
	"name as error_code. concurrency (default 1000) bounds the messages produced and not yet "
	"acknowledged by the brokers.\n\n"
	"properties passes librdkafka producer properties through, and secret_properties takes a "
	"property's value from an environment variable ({\"sasl.password\": \"KAFKA_PASSWORD\"}): "
	"never logged, never in an error. kmsrouter check has librdkafka check every property's "
	"name and value; the properties the sink sets itself (bootstrap.servers, "
	"metadata.broker.list, log.queue and the callbacks) are refused. librdkafka's own log "
	"lines are logged as the sink's.";

const struct kr_sink_plugin kr_sink_kafka = {
	.name = "kafka",
	.description = "produces each event as a message of a Kafka topic (librdkafka, idempotent)",
	.doc = kafka_doc,
	.options = kafka_options,
	.conf_size = sizeof(struct kafka_conf),
	.validate = kafka_validate,
	.default_concurrency = 1000,
	.create = kafka_create,
	.submit = kafka_submit,
	.destroy = kafka_destroy,
};
