/* librdkafka for the Kafka plugins (see rdkafka.h). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dynlib.h"
#include "log.h"
#include "loop.h"
#include "rdkafka.h"

struct kr_rdkafka_api kr_rk;

#define SYM(f) {"rd_kafka_" #f, offsetof(struct kr_rdkafka_api, f)}
static const struct kr_dynsym syms[] = {
	SYM(version_str), SYM(conf_new), SYM(conf_set), SYM(conf_destroy),
	SYM(conf_set_dr_msg_cb), SYM(conf_set_error_cb), SYM(conf_set_log_cb),
	SYM(conf_set_rebalance_cb), SYM(conf_set_offset_commit_cb), SYM(conf_set_opaque),
	SYM(new), SYM(destroy), SYM(opaque), SYM(producev), SYM(poll), SYM(purge),
	SYM(queue_get_main), SYM(queue_get_consumer), SYM(queue_destroy), SYM(queue_new),
	SYM(queue_poll_callback),
	SYM(queue_io_event_enable), SYM(set_log_queue), SYM(err2name), SYM(err2str),
	SYM(fatal_error), SYM(outq_len), SYM(subscribe), SYM(poll_set_consumer),
	SYM(consumer_poll), SYM(consumer_close), SYM(incremental_assign),
	SYM(incremental_unassign), SYM(assign), SYM(rebalance_protocol), SYM(assignment_lost),
	SYM(offsets_store), SYM(commit), SYM(get_watermark_offsets), SYM(message_destroy),
	SYM(message_timestamp), SYM(message_headers), SYM(header_get_all), SYM(headers_new),
	SYM(headers_copy), SYM(headers_destroy), SYM(header_add), SYM(topic_name),
	SYM(topic_partition_list_new), SYM(topic_partition_list_add),
	SYM(topic_partition_list_destroy), SYM(error_string), SYM(error_destroy),
};
#undef SYM

static struct kr_dynlib lib = {.soname = "librdkafka.so.1",
			       .syms = syms,
			       .nsyms = sizeof syms / sizeof syms[0],
			       .table = &kr_rk};

enum kr_err kr_rdkafka_load(char *err)
{
	return kr_dynlib_load(&lib, err);
}

bool kr_rdkafka_set(rd_kafka_conf_t *conf, const char *kind, const char *name,
		    const char *value, bool secret, char *err, size_t cap)
{
	char why[512];
	rd_kafka_conf_res_t r = kr_rk.conf_set(conf, name, value, why, sizeof why);
	if (r == RD_KAFKA_CONF_OK)
		return true;
	if (r == RD_KAFKA_CONF_UNKNOWN)
		snprintf(err, cap, "librdkafka has no %s property \"%s\"", kind, name);
	else if (secret || kr_log_is_secret_key(name))
		snprintf(err, cap, "librdkafka does not take that value for \"%s\"", name);
	else
		snprintf(err, cap, "\"%.100s\": %.300s", name, why);
	return false;
}

static bool is_reserved(const char *const *reserved, const char *name)
{
	for (const char *const *r = reserved; r && *r; r++)
		if (strcmp(*r, name) == 0)
			return true;
	return false;
}

/* Properties that would make librdkafka load code while the config is only being read. */
static const char *const refused[] = {"plugin.library.paths", NULL};

/* Whether name may be set by the user; if not, err says why. */
static bool user_may_set(const char *const *reserved, const char *owner, const char *name,
			 char *err, size_t cap)
{
	if (is_reserved(reserved, name)) {
		snprintf(err, cap, "\"%s\" is set by the %s itself", name, owner);
		return false;
	}
	if (is_reserved(refused, name)) {
		snprintf(err, cap,
			 "\"%s\" is refused: librdkafka would load the libraries it names while the "
			 "config is read (by check too), and kmsrouter runs no code a config names",
			 name);
		return false;
	}
	return true;
}

bool kr_rdkafka_set_user(rd_kafka_conf_t *conf, const char *kind, const char *owner,
			 const struct kr_strmap *props,
			 const struct kr_strmap *secrets, const char *const *reserved, bool offline,
			 char *err, size_t cap, const char **bad)
{
	*bad = "properties";
	for (size_t i = 0; i < props->n; i++) {
		if (!user_may_set(reserved, owner, props->keys[i], err, cap) ||
		    !kr_rdkafka_set(conf, kind, props->keys[i], props->values[i], false, err, cap))
			return false;
	}
	*bad = "secret_properties";
	for (size_t i = 0; i < secrets->n; i++) {
		const char *name = secrets->keys[i];
		const char *env = secrets->values[i];
		const char *v = getenv(env);
		if (!user_may_set(reserved, owner, name, err, cap))
			return false;
		if (!v && !offline) {
			snprintf(err, cap, "the environment variable %s (for \"%s\") is not set", env,
				 name);
			return false;
		}
		if (!kr_rdkafka_set(conf, kind, name, v ? v : "", true, err, cap))
			return false;
	}
	return true;
}

void kr_rdkafka_log(const char *what, const char *name, int level, const char *fac,
		    const char *buf)
{
	enum kr_log_level l = level <= 3 ? KR_LOG_ERROR : level == 4 ? KR_LOG_WARN
				 : level <= 6 ? KR_LOG_INFO : KR_LOG_DEBUG;
	kr_log(l, what, "name", name, "msg", "librdkafka", "facility", fac, "detail", buf, NULL);
}

static void on_wake(struct kr_loop *l, int fd, unsigned events, void *arg)
{
	(void)l;
	(void)events;
	struct kr_rdkafka_wake *w = arg;
	char buf[64];
	while (read(fd, buf, sizeof buf) > 0)
		;
	w->wake(w->arg);
}

bool kr_rdkafka_watch(struct kr_rdkafka_wake *w, struct kr_loop *loop, rd_kafka_queue_t *q,
		      void (*wake)(void *), void *arg)
{
	w->loop = loop;
	w->wake = wake;
	w->arg = arg;
	if (pipe2(w->pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
		w->pipe[0] = w->pipe[1] = -1;
		return false;
	}
	if (kr_loop_watch(loop, w->pipe[0], KR_IO_READ, on_wake, w) != 0) {
		close(w->pipe[0]);
		close(w->pipe[1]);
		w->pipe[0] = w->pipe[1] = -1;
		return false;
	}
	kr_rk.queue_io_event_enable(q, w->pipe[1], "1", 1);
	/* librdkafka writes when the queue becomes non-empty: what it holds already (its logs
	   of the client's start) is served at the loop's first turn */
	if (write(w->pipe[1], "1", 1) != 1)
		return false;
	return true;
}

void kr_rdkafka_unwatch(struct kr_rdkafka_wake *w)
{
	if (w->pipe[0] < 0)
		return;
	kr_loop_unwatch(w->loop, w->pipe[0]);
	close(w->pipe[0]);
	close(w->pipe[1]);
	w->pipe[0] = w->pipe[1] = -1;
}
