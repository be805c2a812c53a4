/* librdkafka for the kafka sink and source: the library, loaded when a Kafka plugin is first made
 * (dynlib.h), and what both do the same way: the client's configuration from their options
 * ("properties", "secret_properties", whose values never reach logs or errors), its logs and
 * errors on the router's log, and a queue of the client served on the router's event loop
 * (rd_kafka_queue_io_event_enable writes to a pipe the loop watches). */
#ifndef KR_RDKAFKA_H
#define KR_RDKAFKA_H

#include <stdbool.h>
#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "err.h"
#include "plugin.h"

struct kr_loop;

struct kr_rdkafka_api {
	const char *(*version_str)(void);
	rd_kafka_conf_t *(*conf_new)(void);
	rd_kafka_conf_res_t (*conf_set)(rd_kafka_conf_t *, const char *, const char *, char *,
					size_t);
	void (*conf_destroy)(rd_kafka_conf_t *);
	void (*conf_set_dr_msg_cb)(rd_kafka_conf_t *,
				   void (*)(rd_kafka_t *, const rd_kafka_message_t *, void *));
	void (*conf_set_error_cb)(rd_kafka_conf_t *, void (*)(rd_kafka_t *, int, const char *,
							       void *));
	void (*conf_set_log_cb)(rd_kafka_conf_t *,
				void (*)(const rd_kafka_t *, int, const char *, const char *));
	void (*conf_set_rebalance_cb)(rd_kafka_conf_t *,
				      void (*)(rd_kafka_t *, rd_kafka_resp_err_t,
					       rd_kafka_topic_partition_list_t *, void *));
	void (*conf_set_offset_commit_cb)(rd_kafka_conf_t *,
					  void (*)(rd_kafka_t *, rd_kafka_resp_err_t,
						   rd_kafka_topic_partition_list_t *, void *));
	void (*conf_set_opaque)(rd_kafka_conf_t *, void *);
	rd_kafka_t *(*new)(rd_kafka_type_t, rd_kafka_conf_t *, char *, size_t);
	void (*destroy)(rd_kafka_t *);
	void *(*opaque)(const rd_kafka_t *);
	rd_kafka_resp_err_t (*producev)(rd_kafka_t *, ...);
	int (*poll)(rd_kafka_t *, int);
	rd_kafka_resp_err_t (*purge)(rd_kafka_t *, int);
	rd_kafka_queue_t *(*queue_get_main)(rd_kafka_t *);
	rd_kafka_queue_t *(*queue_get_consumer)(rd_kafka_t *);
	void (*queue_destroy)(rd_kafka_queue_t *);
	rd_kafka_queue_t *(*queue_new)(rd_kafka_t *);
	int (*queue_poll_callback)(rd_kafka_queue_t *, int);
	void (*queue_io_event_enable)(rd_kafka_queue_t *, int, const void *, size_t);
	rd_kafka_resp_err_t (*set_log_queue)(rd_kafka_t *, rd_kafka_queue_t *);
	const char *(*err2name)(rd_kafka_resp_err_t);
	const char *(*err2str)(rd_kafka_resp_err_t);
	rd_kafka_resp_err_t (*fatal_error)(rd_kafka_t *, char *, size_t);
	int (*outq_len)(rd_kafka_t *);
	/* the consumer */
	rd_kafka_resp_err_t (*subscribe)(rd_kafka_t *, const rd_kafka_topic_partition_list_t *);
	rd_kafka_resp_err_t (*poll_set_consumer)(rd_kafka_t *);
	rd_kafka_message_t *(*consumer_poll)(rd_kafka_t *, int);
	rd_kafka_resp_err_t (*consumer_close)(rd_kafka_t *);
	rd_kafka_error_t *(*incremental_assign)(rd_kafka_t *,
						const rd_kafka_topic_partition_list_t *);
	rd_kafka_error_t *(*incremental_unassign)(rd_kafka_t *,
						  const rd_kafka_topic_partition_list_t *);
	rd_kafka_resp_err_t (*assign)(rd_kafka_t *, const rd_kafka_topic_partition_list_t *);
	const char *(*rebalance_protocol)(rd_kafka_t *);
	int (*assignment_lost)(rd_kafka_t *);
	rd_kafka_resp_err_t (*offsets_store)(rd_kafka_t *, rd_kafka_topic_partition_list_t *);
	rd_kafka_resp_err_t (*commit)(rd_kafka_t *, const rd_kafka_topic_partition_list_t *, int);
	rd_kafka_resp_err_t (*get_watermark_offsets)(rd_kafka_t *, const char *, int32_t,
						     int64_t *, int64_t *);
	void (*message_destroy)(rd_kafka_message_t *);
	int64_t (*message_timestamp)(const rd_kafka_message_t *, rd_kafka_timestamp_type_t *);
	rd_kafka_resp_err_t (*message_headers)(const rd_kafka_message_t *, rd_kafka_headers_t **);
	rd_kafka_resp_err_t (*header_get_all)(const rd_kafka_headers_t *, size_t, const char **,
					      const void **, size_t *);
	rd_kafka_headers_t *(*headers_new)(size_t);
	rd_kafka_headers_t *(*headers_copy)(const rd_kafka_headers_t *);
	void (*headers_destroy)(rd_kafka_headers_t *);
	rd_kafka_resp_err_t (*header_add)(rd_kafka_headers_t *, const char *, ssize_t,
					  const void *, ssize_t);
	const char *(*topic_name)(const rd_kafka_topic_t *);
	rd_kafka_topic_partition_list_t *(*topic_partition_list_new)(int);
	rd_kafka_topic_partition_t *(*topic_partition_list_add)(rd_kafka_topic_partition_list_t *,
								const char *, int32_t);
	void (*topic_partition_list_destroy)(rd_kafka_topic_partition_list_t *);
	const char *(*error_string)(const rd_kafka_error_t *);
	void (*error_destroy)(rd_kafka_error_t *);
};

/* The library's functions, once kr_rdkafka_load succeeded. */
extern struct kr_rdkafka_api kr_rk;

/* Loads librdkafka (the first call; later ones give the same outcome). */
enum kr_err kr_rdkafka_load(char *err);

/* Sets one property of a client; false with err saying why, with the value only when it is
 * not a secret. kind names the client for the message ("producer", "consumer"). */
bool kr_rdkafka_set(rd_kafka_conf_t *conf, const char *kind, const char *name,
		    const char *value, bool secret, char *err, size_t cap);

/* Sets a plugin's "properties" and then its "secret_properties" (property -> the environment
 * variable holding its value; in an offline load an unset variable is no error). A property in
 * reserved (NULL-terminated) is refused: the plugin (owner: "sink", "source") sets it. So is
 * "plugin.library.paths": librdkafka loads the libraries it names as soon as it is set, which
 * is while a config is read (by check, and by a reload), and kmsrouter runs no code a config
 * names. False with err; *bad names the option at fault. */
bool kr_rdkafka_set_user(rd_kafka_conf_t *conf, const char *kind, const char *owner,
			 const struct kr_strmap *props,
			 const struct kr_strmap *secrets, const char *const *reserved, bool offline,
			 char *err, size_t cap, const char **bad);

/* librdkafka's log line on the router's log, as what ("sink", "source") name. */
void kr_rdkafka_log(const char *what, const char *name, int level, const char *fac,
		    const char *buf);

/* A client queue served on the loop: when the queue gets something, wake(arg) runs on the loop
 * thread. */
struct kr_rdkafka_wake {
	struct kr_loop *loop;
	int pipe[2];
	void (*wake)(void *arg);
	void *arg;
};

/* Starts watching q (pipe[] -1 before: kr_rdkafka_unwatch is then safe); false on failure. */
bool kr_rdkafka_watch(struct kr_rdkafka_wake *w, struct kr_loop *loop, rd_kafka_queue_t *q,
		      void (*wake)(void *), void *arg);
void kr_rdkafka_unwatch(struct kr_rdkafka_wake *w);

#endif
