/* kmsrouter run and kmsrouter replay: the engine on the event loop, with signals.
 *
 * SIGTERM / SIGINT: stop reading, let in-flight deliveries finish or dead-letter within the
 * grace period, acknowledge, exit 0. SIGHUP: load the config again and swap it in; if it is
 * invalid, say so, keep the running one, and reopen the sinks' files (logrotate). */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "config.h"
#include "engine.h"
#include "json.h"
#include "kr_config.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "options.h"
#include "plugin.h"


struct runner {
	struct kr_loop *loop;
	struct kr_engine *engine;
	struct kr_metrics *metrics;
	const char *config_path;
	int sigfd;
	bool stopping;
	uint64_t deadline;
	bool progress; /* replay on a terminal */
	bool replay;   /* the config's sources are not used */
	bool serving;  /* metrics.listen: the metrics text is rendered for its endpoint */
	struct kr_opts_mem mem; /* replay's source options */
	uint64_t started;
};

/* Whether two configurations have the same sources (names, types and options), which a
 * reload does not restart. */
static bool same_sources(const struct kr_config *a, const struct kr_config *b)
{
	if (a->nsources != b->nsources)
		return false;
	bool same = true;
	for (size_t i = 0; i < a->nsources && same; i++)
		same = strcmp(a->sources[i].name, b->sources[i].name) == 0 &&
		       kr_json_same_text(a->sources[i].obj, b->sources[i].obj);
	return same;
}

static void on_signal(struct kr_loop *l, int fd, unsigned events, void *arg)
{
	(void)l;
	(void)events;
	struct runner *r = arg;
	struct signalfd_siginfo si;
	while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			if (!r->stopping) {
				kr_log(KR_LOG_INFO, "main", "msg", "stopping: draining in-flight deliveries",
				       NULL);
				r->stopping = true;
				r->deadline = kr_now_ms() + 30000;
				kr_engine_stop_reading(r->engine);
				kr_metrics_set_ready(r->metrics, false);
			}
		} else if (si.ssi_signo == SIGHUP) {
			char err[KR_ERRBUF];
			struct kr_config *cfg;
			if (!r->config_path) {
				kr_engine_reopen(r->engine);
				continue;
			}
			struct kr_global_stats *gs = kr_metrics_global(r->metrics);
			bool loaded = kr_config_load(r->config_path, &cfg, err) == KR_OK;
			bool sources_changed =
				loaded && !r->replay && !same_sources(kr_engine_config(r->engine), cfg);
			if (!loaded || kr_engine_reload(r->engine, cfg, err) != KR_OK) {
				kr_log(KR_LOG_ERROR, "main", "msg",
				       "reload failed; the running configuration stays", "error", err, NULL);
				if (loaded)
					kr_config_free(cfg);
				kr_engine_reopen(r->engine);
				kr_metrics_count(&gs->reload_failures, 1);
				continue;
			}
			kr_metrics_count(&gs->reloads, 1);
			kr_log(KR_LOG_INFO, "main", "msg", "configuration reloaded", "path",
			       r->config_path, NULL);
			if (sources_changed)
				kr_log(KR_LOG_WARN, "main", "msg",
				       "the sources in the configuration changed: sources keep running as "
				       "they were started; restart kmsrouter to apply the change",
				       "path", r->config_path, NULL);
		}
	}
}

static int setup_signals(struct runner *r)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
		return -1;
	signal(SIGPIPE, SIG_IGN);
	r->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (r->sigfd < 0)
		return -1;
	return kr_loop_watch(r->loop, r->sigfd, KR_IO_READ, on_signal, r);
}

static void print_progress(struct runner *r, bool final)
{
	struct kr_engine_totals t;
	kr_engine_totals(r->engine, &t);
	double secs = (double)(kr_now_ms() - r->started) / 1000.0;
	if (r->progress && !final) {
		/* [#####.....] 45%  read N  delivered N  failed N  N/s  ETA Ns */
		uint64_t done, total;
		kr_engine_progress(r->engine, &done, &total);
		/* the share of the input read, times the share of what was read that is done */
		uint64_t read = t.events + t.invalid + t.filtered + t.skipped;
		uint64_t finished = read > t.in_flight ? read - t.in_flight : 0;
		double share = total ? (double)done / (double)total : 0;
		if (read)
			share *= (double)finished / (double)read;
		char bar[23] = "[....................]";
		for (int i = 0; i < 20 && i < (int)(share * 20 + 0.5); i++)
			bar[1 + i] = '#';
		char eta[32] = "";
		if (share > 0.001 && share < 1 && secs > 0.5)
			snprintf(eta, sizeof eta, "  ETA %.0fs", secs / share - secs);
		fprintf(stderr,
			"\r\033[K%s %3.0f%%  read %llu  delivered %llu  dead-lettered %llu  failed %llu  "
			"%.0f/s%s",
			bar, share * 100, (unsigned long long)t.records,
			(unsigned long long)t.delivered, (unsigned long long)t.dead_lettered,
			(unsigned long long)t.failed_records, (double)t.records / (secs > 0 ? secs : 1),
			eta);
		fflush(stderr);
		return;
	}
	if (r->progress)
		fputs("\r\033[K", stderr);
	fprintf(stderr,
		"kmsrouter: %llu records read (%llu events, %llu invalid), %llu already done, "
		"%llu outside the time range, %llu matched, %llu unmatched, %llu deliveries "
		"succeeded, %llu deliveries dead-lettered, %llu invalid records dead-lettered, "
		"%llu records left unacknowledged, %.1f s\n",
		(unsigned long long)t.records, (unsigned long long)t.events,
		(unsigned long long)t.invalid, (unsigned long long)t.skipped,
		(unsigned long long)t.filtered, (unsigned long long)t.matched,
		(unsigned long long)t.unmatched, (unsigned long long)t.delivered,
		(unsigned long long)t.dead_lettered, (unsigned long long)t.invalid_dead_lettered,
		(unsigned long long)t.unacked, secs);
}

/* Runs until the sources are done and everything delivered (or until a signal drains it). */
static int drive(struct runner *r, uint64_t grace_ms)
{
	uint64_t next_publish = 0, next_progress = 0;
	kr_metrics_set_ready(r->metrics, true);
	for (;;) {
		int sleep = kr_engine_step(r->engine);
		uint64_t now = kr_now_ms();
		/* rendered for the endpoint, when there is one (with 10,000 rules a rendering is a
		   few milliseconds) */
		if (r->serving && now >= next_publish) {
			kr_metrics_publish(r->metrics);
			next_publish = now + 200;
		}
		if (r->progress && now >= next_progress) {
			print_progress(r, false);
			next_progress = now + 250;
		}
		if (r->stopping && r->deadline > now + grace_ms)
			r->deadline = now + grace_ms;
		if (kr_engine_idle(r->engine))
			break;
		if (r->stopping && now >= r->deadline) {
			kr_log(KR_LOG_WARN, "main", "msg",
			       "grace period over; undelivered records stay unacknowledged", NULL);
			break;
		}
		if (sleep > 200)
			sleep = 200;
		if (kr_loop_run_once(r->loop, sleep) < 0)
			return -1;
	}
	kr_engine_step(r->engine);
	if (r->serving)
		kr_metrics_publish(r->metrics);
	return 0;
}

/* The summary line and the exit status: 1 when any record is left unacknowledged (a delivery
 * failed with no dead letter, or the grace period ended with deliveries in flight or with a
 * source's own acknowledgements, such as SQS deletes, not done) or an input could not be read,
 * whether the run ended by itself or on a signal. */
static int finish(struct runner *r)
{
	struct kr_engine_totals t;
	kr_engine_totals(r->engine, &t);
	print_progress(r, true);
	if (t.sources_busy)
		kr_log(KR_LOG_WARN, "main", "msg",
		       "a source's acknowledgements (deletes, commits) were not all done: their records "
		       "will be delivered again",
		       NULL);
	int status = t.unacked || t.failed_records || t.in_flight || t.source_errors || t.sources_busy
			     ? KR_EXIT_NOMATCH
			     : KR_EXIT_OK;
	char unacked[24], code[8];
	snprintf(unacked, sizeof unacked, "%llu", (unsigned long long)t.unacked);
	snprintf(code, sizeof code, "%d", status);
	kr_log(status ? KR_LOG_WARN : KR_LOG_INFO, "main", "msg",
	       r->replay ? "replay stopped" : "stopped", "unacknowledged", unacked, "exit_status", code,
	       NULL);
	return status;
}

/* replay's file source, from the object built of the command line. */
static enum kr_err add_replay_source(struct runner *r, const struct kr_json *obj, char *err)
{
	const struct kr_source_plugin *p = kr_replay_source();
	struct kr_opts_src src = {.file = "replay", .mem = &r->mem, .err = err};
	void *conf = kr_opts_keep(&r->mem, calloc(1, p->conf_size));
	if (!conf)
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	enum kr_err e = kr_opts_fill(&src, p->options, obj, "replay", conf);
	return e ? e : kr_engine_add_source(r->engine, "replay", p, obj, conf, err);
}

static int run_common(struct runner *r, struct kr_config *cfg, const struct kr_engine_opts *eo,
		      const struct kr_json *replay_source)
{
	char err[KR_ERRBUF] = "";
	int status = KR_EXIT_USAGE;
	r->sigfd = -1;
	r->started = kr_now_ms();
	/* Records and deliveries are allocated and freed a round at a time, up to max_in_flight of
	   them: keep the freed heap for the next round instead of giving it back to the kernel and
	   faulting it in again (glibc trims the heap's top past 128 KiB by default, which cost
	   replay 7,000 page faults per million events). What is kept stays bounded by the largest
	   round. */
	mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
	kr_log_configure(cfg->log.format, (enum kr_log_level)cfg->log.level);
	uint64_t grace = cfg->shutdown_grace_ms;
	const char *listen = cfg->metrics.listen;
	r->loop = kr_loop_new();
	r->metrics = kr_metrics_new();
	if (!r->loop || !r->metrics || setup_signals(r) != 0) {
		fprintf(stderr, "kmsrouter: cannot set up the event loop: %s\n", strerror(errno));
		kr_config_free(cfg);
		goto out;
	}
	if (listen && kr_metrics_listen(r->metrics, listen, err) != KR_OK) {
		fprintf(stderr, "kmsrouter: %s\n", err);
		kr_config_free(cfg);
		goto out;
	}
	r->serving = listen != NULL;
	if (kr_engine_new(r->loop, cfg, eo, r->metrics, &r->engine, err) != KR_OK) {
		fprintf(stderr, "kmsrouter: %s\n", err);
		kr_config_free(cfg);
		goto out;
	}
	enum kr_err e = r->replay ? add_replay_source(r, replay_source, err)
				  : kr_engine_start_sources(r->engine, err);
	if (e != KR_OK) {
		fprintf(stderr, "kmsrouter: %s\n", err);
		goto out;
	}
	char counts[3][24];
	snprintf(counts[0], sizeof counts[0], "%zu", cfg->nrules);
	snprintf(counts[1], sizeof counts[1], "%zu", cfg->nsinks);
	snprintf(counts[2], sizeof counts[2], "%zu", r->replay ? (size_t)1 : cfg->nsources);
	kr_log(KR_LOG_INFO, "main", "msg", r->replay ? "replay started" : "started", "version",
	       KR_VERSION, "config", r->config_path, "rules", counts[0], "sinks", counts[1],
	       "sources", counts[2], NULL);
	if (drive(r, grace) != 0) {
		fprintf(stderr, "kmsrouter: event loop failed: %s\n", strerror(errno));
		goto out;
	}
	status = finish(r);
out:
	kr_engine_free(r->engine);
	kr_opts_mem_free(&r->mem);
	kr_metrics_free(r->metrics);
	if (r->sigfd >= 0) {
		kr_loop_unwatch(r->loop, r->sigfd);
		close(r->sigfd);
	}
	kr_loop_free(r->loop);
	return status;
}

static const char run_help[] =
	"usage: kmsrouter run [-c CONFIG]\n\n"
	"Runs the router: reads the configuration's sources, matches every event against its rules\n"
	"and delivers it to the rules' targets, acknowledging a record only once all its deliveries\n"
	"succeeded or were dead-lettered. Without -c it runs the built-in default: the example rules\n"
	"over the bundled example events into the log sink on standard output, each line saying\n"
	"which rule sent which event to which sink. A configuration without sources is refused.\n"
	"Logs a line when it starts and when it stops.\n\n"
	"  SIGTERM, SIGINT  stop reading, finish in-flight deliveries within shutdown_grace_seconds\n"
	"  SIGHUP           reload the configuration: rules and sinks are replaced, sources keep\n"
	"                   running as started (a change of sources needs a restart, which the\n"
	"                   reload says); an invalid one is reported, counted in\n"
	"                   kmsrouter_reloads_total{result=\"failure\"}, and the running one\n"
	"                   stays; log files are reopened\n\n"
	"Ends with one summary line on stderr, whose counts each mean one thing: records read\n"
	"(what the sources handed in: events, invalid), already done (records a checkpoint\n"
	"skipped), outside the time range (of replay), matched, unmatched,\n"
	"deliveries (rule and target entry pairs) succeeded and dead-lettered, invalid records\n"
	"dead-lettered, records left unacknowledged (the source will deliver them again).\n\n"
	"Exit status: 0 every record read was delivered or dead-lettered (and acknowledged);\n"
	"1 some record was left unacknowledged (a delivery failed with no dead letter, or the\n"
	"grace period ended first) or an input could not be read; 2 usage or configuration\n"
	"error, a sink that cannot work (such as a log file in a missing folder), or no sources.\n";

int kr_cmd_run(int argc, char **argv)
{
	const char *config = NULL;
	int status = kr_cli_config_option(argc, argv, run_help, &config);
	if (status >= 0)
		return status;
	if (optind != argc) {
		fputs(run_help, stderr);
		return KR_EXIT_USAGE;
	}
	if (!config)
		config = KR_EXAMPLES_DIR "/kmsrouter.json";
	char err[KR_ERRBUF];
	struct kr_config *cfg;
	if (kr_config_load(config, &cfg, err) != KR_OK) {
		fprintf(stderr, "kmsrouter: %s\n", err);
		return KR_EXIT_USAGE;
	}
	if (cfg->nsources == 0) {
		fprintf(stderr, "kmsrouter: %s: the configuration has no \"sources\": run would have "
				"nothing to read (add a source, or use `kmsrouter replay` for files)\n",
			config);
		kr_config_free(cfg);
		return KR_EXIT_USAGE;
	}
	struct runner r = {.config_path = config};
	return run_common(&r, cfg, NULL, NULL);
}

static const char replay_help[] =
	"usage: kmsrouter replay -c CONFIG [--from TIME] [--to TIME] [--rate N]\n"
	"                        [--replay-name NAME] [--checkpoint FILE [--checkpoint-reset]]\n"
	"                        FILE...\n\n"
	"Replays archived events (any format the router reads) through the configuration's rules\n"
	"and sinks; its sources are not used.\n\n"
	"  --from TIME, --to TIME   only events whose \"time\" is in [from, to) (RFC 3339)\n"
	"  --rate N                 at most N events per second\n"
	"  --replay-name NAME       add \"replay-name\": NAME to every event, as EventBridge does\n"
	"  --checkpoint FILE        record progress in FILE and resume from it: a killed replay\n"
	"                           started again goes on where it stopped, without loss. The\n"
	"                           checkpoint also records each file's identity and the\n"
	"                           --from, --to and --replay-name it was made with: when they\n"
	"                           changed, the replay refuses to resume (exit status 2,\n"
	"                           saying what changed)\n"
	"  --checkpoint-reset       discard the checkpoint and start from the beginning\n\n"
	"Shows progress on a terminal, and ends with the same summary line as run. Exit status:\n"
	"0 every record read was delivered or dead-lettered; 1 some record was left\n"
	"unacknowledged (as run); 2 usage or configuration error, or a checkpoint made for\n"
	"other files or options.\n";

static char *absolute(const char *p)
{
	if (p[0] == '/' || strcmp(p, "-") == 0)
		return strdup(p);
	char cwd[4096];
	if (!getcwd(cwd, sizeof cwd))
		return NULL;
	return kr_resolve_path(cwd, p);
}

/* Appends ,"key":"value" (or without the comma for the first). */
static bool put_key(struct kr_buf *b, bool *first, const char *key, const char *value)
{
	bool ok = kr_buf_puts(b, *first ? "" : ",") && kr_buf_json_string(b, key, strlen(key)) &&
		  kr_buf_puts(b, ":") && kr_buf_json_string(b, value, strlen(value));
	*first = false;
	return ok;
}

/* A time in UTC to the millisecond, so one instant written two ways is the same window. */
static bool put_time(struct kr_buf *b, bool *first, const char *key, uint64_t ms)
{
	if (!ms)
		return true;
	char when[64];
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
	if (ms % 1000)
		snprintf(when + n, sizeof when - n, ".%03uZ", (unsigned)(ms % 1000));
	else
		snprintf(when + n, sizeof when - n, "Z");
	return put_key(b, first, key, when);
}

/* What a checkpoint of this replay is only valid for: the options that change which events are
 * delivered and how (the file source refuses to resume with other ones). */
static bool put_window(struct kr_buf *b, const struct kr_engine_opts *eo)
{
	bool first = true;
	return kr_buf_puts(b, ",\"checkpoint_window\":{") &&
	       put_time(b, &first, "--from", eo->from_ms) && put_time(b, &first, "--to", eo->to_ms) &&
	       (!eo->replay_name || put_key(b, &first, "--replay-name", eo->replay_name)) &&
	       kr_buf_puts(b, "}");
}

int kr_cmd_replay(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"from", required_argument, NULL, 'f'},
		{"to", required_argument, NULL, 't'},
		{"rate", required_argument, NULL, 'r'},
		{"replay-name", required_argument, NULL, 'n'},
		{"checkpoint", required_argument, NULL, 'k'},
		{"checkpoint-reset", no_argument, NULL, 'R'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *config = NULL, *checkpoint = NULL;
	bool checkpoint_reset = false;
	struct kr_engine_opts eo = {0};
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config = optarg;
			break;
		case 'f':
		case 't': {
			int64_t ms = kr_parse_rfc3339_ms(optarg);
			if (ms < 0) {
				fprintf(stderr, "kmsrouter replay: --%s needs an RFC 3339 time such as "
						"2024-03-01T12:00:00Z, not \"%s\"\n",
					opt == 'f' ? "from" : "to", optarg);
				return KR_EXIT_USAGE;
			}
			if (opt == 'f')
				eo.from_ms = (uint64_t)ms;
			else
				eo.to_ms = (uint64_t)ms;
			break;
		}
		case 'r':
			if (!kr_cli_positive(optarg, &eo.rate)) {
				fprintf(stderr, "kmsrouter replay: --rate needs a positive number of events per second\n");
				return KR_EXIT_USAGE;
			}
			break;
		case 'n':
			eo.replay_name = optarg;
			break;
		case 'k':
			checkpoint = optarg;
			break;
		case 'R':
			checkpoint_reset = true;
			break;
		case 'h':
			fputs(replay_help, stdout);
			return KR_EXIT_OK;
		default:
			fputs(replay_help, stderr);
			return KR_EXIT_USAGE;
		}
	}
	if (!config || optind >= argc) {
		fputs(replay_help, stderr);
		return KR_EXIT_USAGE;
	}
	if (checkpoint_reset && !checkpoint) {
		fprintf(stderr, "kmsrouter replay: --checkpoint-reset needs --checkpoint\n");
		return KR_EXIT_USAGE;
	}
	if (eo.from_ms && eo.to_ms && eo.to_ms <= eo.from_ms) {
		fprintf(stderr, "kmsrouter replay: --to must be after --from\n");
		return KR_EXIT_USAGE;
	}
	for (int i = optind; i < argc; i++)
		if (strcmp(argv[i], "-") != 0 && access(argv[i], R_OK) != 0) {
			fprintf(stderr, "kmsrouter replay: %s: %s\n", argv[i], strerror(errno));
			return KR_EXIT_USAGE;
		}
	/* the replay's file source, as a config object (paths made absolute: they are the
	   command line's, not the config file's) */
	struct kr_buf b = {0};
	bool ok = kr_buf_puts(&b, "{\"paths\":[");
	for (int i = optind; i < argc && ok; i++) {
		char *p = absolute(argv[i]);
		ok = p && (i == optind || kr_buf_puts(&b, ",")) && kr_buf_json_string(&b, p, strlen(p));
		free(p);
	}
	ok = ok && kr_buf_puts(&b, "]");
	if (ok && checkpoint) {
		char *p = absolute(checkpoint);
		ok = p && kr_buf_puts(&b, ",\"checkpoint\":") && kr_buf_json_string(&b, p, strlen(p)) &&
		     kr_buf_puts(&b, checkpoint_reset ? ",\"checkpoint_reset\":true"
						      : ",\"checkpoint_reset\":false") &&
		     put_window(&b, &eo);
		free(p);
	}
	ok = ok && kr_buf_puts(&b, "}");
	struct kr_json *src = NULL;
	char err[KR_ERRBUF];
	size_t off;
	if (!ok || kr_json_parse(b.p, b.len, NULL, &src, &off, err) != KR_OK) {
		kr_buf_free(&b);
		fprintf(stderr, "kmsrouter: out of memory\n");
		return KR_EXIT_USAGE;
	}
	kr_buf_free(&b);
	struct kr_config *cfg;
	if (kr_config_load(config, &cfg, err) != KR_OK) {
		fprintf(stderr, "kmsrouter: %s\n", err);
		kr_json_free(src);
		return KR_EXIT_USAGE;
	}
	struct runner r = {.config_path = config, .progress = isatty(2) == 1, .replay = true};
	int status = run_common(&r, cfg, &eo, src);
	kr_json_free(src);
	return status;
}
