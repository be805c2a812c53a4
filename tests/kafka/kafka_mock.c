/* kafka-mock: librdkafka's mock Kafka cluster as a process of its own, for integration tests.
 *
 *   kafka-mock [--brokers N] [--topic NAME:PARTITIONS]...
 *
 * The mock brokers listen on loopback and speak enough of the Kafka protocol for producers,
 * low-level and group consumers (kcat, kmsrouter's Kafka sink). Once the cluster and the topics
 * exist, one line `bootstrap=HOST:PORT,...` goes to stdout. Then stdin carries commands, one per
 * line, each answered with one line, `ok` or `error: ...`:
 *
 *   topic NAME PARTITIONS        create a topic (replication factor 1)
 *   errors APIKEY COUNT ERRCODE  the next COUNT requests of APIKEY (0 Produce, 1 Fetch,
 *                                8 OffsetCommit, ...) fail with ERRCODE (rd_kafka_resp_err_t,
 *                                e.g. 6 NOT_LEADER_OR_FOLLOWER, 7 REQUEST_TIMED_OUT)
 *   broker-down ID / broker-up ID
 *   rtt ID MS                    delay each response of broker ID by MS milliseconds
 *   quit
 *
 * The process exits 0 on `quit`, at the end of stdin (the test that started it is gone) and on
 * SIGTERM or SIGINT, after destroying the cluster; 2 on bad arguments; 1 when librdkafka fails.
 *
 * The brokers run in librdkafka's own threads. The main thread only waits for stdin or a signal:
 * SIGTERM and SIGINT are blocked everywhere (librdkafka's threads inherit the mask) and unblocked
 * only inside pselect(), so a signal can neither be lost between the flag check and the wait nor
 * land in a librdkafka thread. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_LINE 1024
#define MAX_ERRORS 100000 /* pushed errors per command; a bound against typos */

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static void usage(void)
{
	fputs("usage: kafka-mock [--brokers N] [--topic NAME:PARTITIONS]...\n"
	      "  starts a librdkafka mock cluster on loopback, prints bootstrap=HOST:PORT,... and\n"
	      "  reads commands from stdin: topic NAME PARTITIONS | errors APIKEY COUNT ERRCODE |\n"
	      "  broker-down ID | broker-up ID | rtt ID MS | quit\n",
	      stderr);
}

/* Parses all of s as a decimal integer in [min, max]. */
static int parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if (!s || !*s)
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* Writes one reply line and flushes: the test reads replies line by line. */
__attribute__((format(printf, 1, 2))) static void reply(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void reply_err(rd_kafka_resp_err_t err)
{
	if (err)
		reply("error: %s", rd_kafka_err2str(err));
	else
		reply("ok");
}

static void cmd_errors(rd_kafka_mock_cluster_t *mc, char *const *argv, int argc)
{
	long apikey, count, code;
	rd_kafka_resp_err_t *errs;

	if (argc != 4 || parse_long(argv[1], 0, INT16_MAX, &apikey) ||
	    parse_long(argv[2], 1, MAX_ERRORS, &count) ||
	    parse_long(argv[3], INT_MIN, INT_MAX, &code)) {
		reply("error: usage: errors APIKEY COUNT ERRCODE");
		return;
	}
	errs = malloc((size_t)count * sizeof(*errs));
	if (!errs) {
		reply("error: out of memory");
		return;
	}
	for (long i = 0; i < count; i++)
		errs[i] = (rd_kafka_resp_err_t)code;
	rd_kafka_mock_push_request_errors_array(mc, (int16_t)apikey, (size_t)count, errs);
	free(errs);
	reply("ok");
}

/* Runs one command line; returns 1 on quit. */
static int run_command(rd_kafka_mock_cluster_t *mc, char *line)
{
	char *argv[5];
	int argc = 0;
	long a, b;

	for (char *tok = strtok(line, " \t\r"); tok; tok = strtok(NULL, " \t\r")) {
		if (argc == 5) {
			reply("error: too many arguments");
			return 0;
		}
		argv[argc++] = tok;
	}
	if (argc == 0) {
		reply("error: empty command");
		return 0;
	}

	if (!strcmp(argv[0], "quit")) {
		reply("ok");
		return 1;
	} else if (!strcmp(argv[0], "topic")) {
		if (argc != 3 || parse_long(argv[2], 1, 100000, &a))
			reply("error: usage: topic NAME PARTITIONS");
		else
			reply_err(rd_kafka_mock_topic_create(mc, argv[1], (int)a, 1));
	} else if (!strcmp(argv[0], "errors")) {
		cmd_errors(mc, argv, argc);
	} else if (!strcmp(argv[0], "broker-down") || !strcmp(argv[0], "broker-up")) {
		if (argc != 2 || parse_long(argv[1], 0, INT32_MAX, &a))
			reply("error: usage: %s ID", argv[0]);
		else if (argv[0][7] == 'd')
			reply_err(rd_kafka_mock_broker_set_down(mc, (int32_t)a));
		else
			reply_err(rd_kafka_mock_broker_set_up(mc, (int32_t)a));
	} else if (!strcmp(argv[0], "rtt")) {
		if (argc != 3 || parse_long(argv[1], 0, INT32_MAX, &a) ||
		    parse_long(argv[2], 0, INT_MAX, &b))
			reply("error: usage: rtt ID MS");
		else
			reply_err(rd_kafka_mock_broker_set_rtt(mc, (int32_t)a, (int)b));
	} else {
		reply("error: unknown command %s", argv[0]);
	}
	return 0;
}

/* Reads stdin with read(2), not stdio: a stdio buffer could hold a whole line that select()
 * cannot see. Returns when quit is read, stdin ends, or a stop signal arrives. */
static void serve(rd_kafka_mock_cluster_t *mc, const sigset_t *waitmask)
{
	char buf[MAX_LINE];
	size_t len = 0;
	int discarding = 0; /* inside a line longer than buf: dropped, answered once */

	while (!stop_signal) {
		fd_set rfds;
		ssize_t n;

		FD_ZERO(&rfds);
		FD_SET(STDIN_FILENO, &rfds);
		if (pselect(STDIN_FILENO + 1, &rfds, NULL, NULL, NULL, waitmask) < 0) {
			if (errno == EINTR)
				continue;
			perror("kafka-mock: select");
			return;
		}
		n = read(STDIN_FILENO, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		len += (size_t)n;

		char *start = buf, *nl;
		while ((nl = memchr(start, '\n', len - (size_t)(start - buf)))) {
			*nl = '\0';
			if (discarding)
				discarding = 0;
			else if (run_command(mc, start))
				return;
			start = nl + 1;
		}
		len -= (size_t)(start - buf);
		memmove(buf, start, len);
		if (len == sizeof(buf)) {
			if (!discarding)
				reply("error: line too long");
			discarding = 1;
			len = 0;
		}
	}
}

/* Checks the arguments before anything starts, so that bad ones exit 2 at once. */
static int check_args(int argc, char **argv, int *brokers)
{
	long v;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--brokers") && i + 1 < argc) {
			if (parse_long(argv[++i], 1, 64, &v))
				return -1;
			*brokers = (int)v;
		} else if (!strcmp(argv[i], "--topic") && i + 1 < argc) {
			const char *colon = strrchr(argv[++i], ':');
			if (!colon || colon == argv[i] || parse_long(colon + 1, 1, 100000, &v))
				return -1;
		} else {
			return -1;
		}
	}
	return 0;
}

/* Creates the --topic NAME:PARTITIONS topics (already checked). */
static int create_topics(rd_kafka_mock_cluster_t *mc, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--topic"))
			continue;
		char *name = argv[++i], *colon = strrchr(name, ':');
		*colon = '\0';
		rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc, name, atoi(colon + 1), 1);
		if (err) {
			fprintf(stderr, "kafka-mock: topic %s: %s\n", name, rd_kafka_err2str(err));
			return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	int brokers = 1;
	char errstr[512];
	sigset_t block, waitmask;
	struct sigaction sa;

	if (check_args(argc, argv, &brokers)) {
		usage();
		return 2;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	pthread_sigmask(SIG_BLOCK, &block, &waitmask);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);
	signal(SIGPIPE, SIG_IGN); /* a vanished reader must not kill us before the cleanup */

	/* The mock cluster needs an rd_kafka_t for its bookkeeping. This producer has no
	 * bootstrap.servers and never connects anywhere, so it sends the mock no requests of its
	 * own that could consume pushed errors. */
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	/* Hides the notice that this producer has no bootstrap.servers; warnings still show. */
	rd_kafka_conf_set(conf, "log_level", "4", NULL, 0);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!rk) {
		fprintf(stderr, "kafka-mock: rd_kafka_new: %s\n", errstr);
		return 1;
	}
	rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
	if (!mc) {
		fprintf(stderr, "kafka-mock: cannot create the mock cluster\n");
		rd_kafka_destroy(rk);
		return 1;
	}

	int status = 0;
	if (create_topics(mc, argc, argv) == 0) {
		printf("bootstrap=%s\n", rd_kafka_mock_cluster_bootstraps(mc));
		fflush(stdout);
		serve(mc, &waitmask);
	} else {
		status = 1;
	}

	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	return status;
}
