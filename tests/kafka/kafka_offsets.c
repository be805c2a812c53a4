/* kafka-offsets: a consumer group's committed offsets and a topic's watermarks, for tests.
 *
 *   kafka-offsets BOOTSTRAP GROUP TOPIC [TIMEOUT_MS]
 *
 * Prints one JSON line per partition of TOPIC, in partition order:
 *
 *   {"partition":P,"committed":C,"low":L,"high":H}
 *
 * committed is the offset GROUP committed for the partition (the next offset to read, as Kafka
 * counts), or null when the group committed none (librdkafka's RD_KAFKA_OFFSET_INVALID, -1001);
 * low and high are the partition's watermarks (high: the offset the next message will get).
 * The committed offsets are read with rd_kafka_committed() by a consumer whose group.id is
 * GROUP and which never subscribes nor commits, so it never joins the group nor disturbs its
 * members; the watermarks with rd_kafka_query_watermark_offsets().
 *
 * Exits 0; 1 with a message on stderr when the topic is unknown or a request fails or takes
 * longer than TIMEOUT_MS (default 10000) each; 2 on bad arguments. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

static int set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char errstr[512];

	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
		fprintf(stderr, "kafka-offsets: %s: %s\n", name, errstr);
		return -1;
	}
	return 0;
}

/* The number of partitions of topic (> 0), or -1 after a message. */
static int partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	const struct rd_kafka_metadata *md = NULL;
	int n = -1;

	if (!rkt) {
		fprintf(stderr, "kafka-offsets: topic %s: %s\n", topic,
			rd_kafka_err2str(rd_kafka_last_error()));
		return -1;
	}
	rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
	if (err) {
		fprintf(stderr, "kafka-offsets: metadata of %s: %s\n", topic, rd_kafka_err2str(err));
	} else if (md->topic_cnt != 1 || md->topics[0].err) {
		fprintf(stderr, "kafka-offsets: topic %s: %s\n", topic,
			md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err) : "not in the metadata");
	} else if (md->topics[0].partition_cnt < 1) {
		fprintf(stderr, "kafka-offsets: topic %s has no partitions\n", topic);
	} else {
		n = md->topics[0].partition_cnt;
	}
	if (md)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	return n;
}

int main(int argc, char **argv)
{
	char errstr[512];
	long timeout_ms = 10000;

	if (argc < 4 || argc > 5 || !*argv[1] || !*argv[2] || !*argv[3]) {
		fputs("usage: kafka-offsets BOOTSTRAP GROUP TOPIC [TIMEOUT_MS]\n"
		      "  prints {\"partition\",\"committed\",\"low\",\"high\"} per partition of TOPIC, one\n"
		      "  JSON line each; committed is null when GROUP committed nothing there\n",
		      stderr);
		return 2;
	}
	if (argc == 5) {
		char *end;
		errno = 0;
		timeout_ms = strtol(argv[4], &end, 10);
		if (errno || *end || timeout_ms < 1 || timeout_ms > 600000) {
			fprintf(stderr, "kafka-offsets: bad TIMEOUT_MS %s\n", argv[4]);
			return 2;
		}
	}

	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (set(conf, "bootstrap.servers", argv[1]) || set(conf, "group.id", argv[2]) ||
	    /* never commits, not even on close: it only reads what the group committed */
	    set(conf, "enable.auto.commit", "false") ||
	    set(conf, "enable.auto.offset.store", "false") ||
	    /* an unknown topic is an error, not a topic to create (librdkafka's mock cluster
	     * creates it all the same, with 4 partitions) */
	    set(conf, "allow.auto.create.topics", "false") ||
	    /* errors only: a broker connection the mock closes is not the test's business */
	    set(conf, "log_level", "3")) {
		rd_kafka_conf_destroy(conf);
		return 1;
	}
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (!rk) {
		fprintf(stderr, "kafka-offsets: rd_kafka_new: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return 1;
	}

	int status = 1;
	rd_kafka_topic_partition_list_t *parts = NULL;
	int n = partition_count(rk, argv[3], (int)timeout_ms);
	if (n < 0)
		goto out;

	parts = rd_kafka_topic_partition_list_new(n);
	for (int p = 0; p < n; p++)
		rd_kafka_topic_partition_list_add(parts, argv[3], p);
	rd_kafka_resp_err_t err = rd_kafka_committed(rk, parts, (int)timeout_ms);
	if (err) {
		fprintf(stderr, "kafka-offsets: committed offsets of group %s: %s\n", argv[2],
			rd_kafka_err2str(err));
		goto out;
	}

	/* everything is asked before anything is printed: a failure prints no partial answer */
	int64_t *low = calloc((size_t)n, sizeof(*low)), *high = calloc((size_t)n, sizeof(*high));
	if (!low || !high) {
		fputs("kafka-offsets: out of memory\n", stderr);
		free(low);
		free(high);
		goto out;
	}
	status = 0;
	for (int i = 0; i < parts->cnt && !status; i++) {
		rd_kafka_topic_partition_t *tp = &parts->elems[i];
		if (tp->err) {
			fprintf(stderr, "kafka-offsets: committed offset of %s/%" PRId32 ": %s\n",
				argv[3], tp->partition, rd_kafka_err2str(tp->err));
			status = 1;
			break;
		}
		err = rd_kafka_query_watermark_offsets(rk, argv[3], tp->partition, &low[i], &high[i],
						       (int)timeout_ms);
		if (err) {
			fprintf(stderr, "kafka-offsets: watermarks of %s/%" PRId32 ": %s\n", argv[3],
				tp->partition, rd_kafka_err2str(err));
			status = 1;
		}
	}
	for (int i = 0; i < parts->cnt && !status; i++) {
		rd_kafka_topic_partition_t *tp = &parts->elems[i];
		if (tp->offset < 0) /* RD_KAFKA_OFFSET_INVALID: nothing committed */
			printf("{\"partition\":%" PRId32 ",\"committed\":null,\"low\":%" PRId64
			       ",\"high\":%" PRId64 "}\n",
			       tp->partition, low[i], high[i]);
		else
			printf("{\"partition\":%" PRId32 ",\"committed\":%" PRId64 ",\"low\":%" PRId64
			       ",\"high\":%" PRId64 "}\n",
			       tp->partition, tp->offset, low[i], high[i]);
	}
	free(low);
	free(high);
	if (!status && fflush(stdout)) {
		perror("kafka-offsets: stdout");
		status = 1;
	}

out:
	if (parts)
		rd_kafka_topic_partition_list_destroy(parts);
	/* it never subscribed: closing leaves no group and commits nothing */
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return status;
}
