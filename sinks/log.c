/* log sink: JSON Lines to a file or standard output.
 *
 * submit appends the line to a buffer; flush (once per engine round) writes the buffer with as
 * few write(2) calls as it takes and only then completes the deliveries, so an acknowledged event
 * is always in the file (in the page cache; fsync follows on fsync_interval_ms). A payload that
 * spans lines is minified to one. A file that cannot be opened or written fails the deliveries
 * as retryable, so the engine's retry policy and dead letters apply. reopen (SIGHUP) closes the
 * file; the next flush opens the path again, as logrotate expects.
 *
 * Standard output that is a pipe, a terminal or a socket is written without blocking (a pipe
 * or terminal through a description of its own opened non-blocking, so that the flags of the
 * one kmsrouter shares with other processes stay as they are; a socket with MSG_DONTWAIT): when
 * its reader does not keep up, the rest of the buffer waits for the descriptor in the event
 * loop, and the other sinks, the sources and signals go on meanwhile. The sinks on stdout take
 * turns: one that stopped in the middle of its buffer holds stdout until the buffer is out, so
 * that no other sink's line lands inside one of its lines. A path that is a named FIFO is
 * opened without waiting for a reader (with none, the deliveries fail as retryable,
 * OpenFailed) and written like stdout's pipe. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "grow.h"
#include "loop.h"
#include "plugin.h"

struct log_sink {
	char *name;
	char *path; /* NULL: stdout */
	struct kr_loop *loop;
	int fd;
	int nbfd;     /* stdout on a pipe or terminal: a non-blocking description of it, or -1 */
	bool sock;    /* stdout is a socket: written with MSG_DONTWAIT */
	bool fifo;    /* path is a named FIFO, opened O_NONBLOCK */
	bool waiting; /* the descriptor was full, or another sink holds stdout: buf goes later */
	size_t written; /* of buf, while waiting */
	struct log_sink *next_queued; /* in stdout_queue */
	bool metadata;
	uint64_t fsync_ms, last_fsync;
	bool unsynced;
	struct kr_buf buf;
	struct kr_delivery **pending;
	size_t npending, cap;
};

struct log_conf {
	const char *path;
	bool metadata;
	uint64_t fsync_ms;
};

static const struct kr_option log_options[] = {
	{.name = "path", .type = KR_OPT_PATH, .offset = offsetof(struct log_conf, path),
	 .def = "\"-\"", .help = "file to append JSON Lines to, or \"-\" for standard output"},
	{.name = "metadata", .type = KR_OPT_BOOL, .offset = offsetof(struct log_conf, metadata),
	 .def = "false",
	 .help = "write {\"rule\", \"sink\", \"received_time\", \"payload\"} instead of the payload"},
	{.name = "fsync_interval_ms", .type = KR_OPT_DURATION,
	 .offset = offsetof(struct log_conf, fsync_ms), .def = "1000",
	 .help = "fsync the file at most this often after writes (0: never)"},
	{0},
};

/* Appends JSON text without the whitespace between tokens (strings kept as they are). */
static bool append_minified(struct kr_buf *b, const char *p, size_t n)
{
	if (!memchr(p, '\n', n) && !memchr(p, '\r', n))
		return kr_buf_append(b, p, n);
	if (!kr_buf_reserve(b, n + 1))
		return false;
	char *o = b->p + b->len;
	bool str = false, esc = false;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		if (str) {
			if (esc)
				esc = false;
			else if (c == '\\')
				esc = true;
			else if (c == '"')
				str = false;
		} else if (c == '"') {
			str = true;
		} else if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
			continue;
		}
		*o++ = c;
	}
	b->len = (size_t)(o - b->p);
	b->p[b->len] = 0;
	return true;
}

/* What can be known before the first write: the file's folder exists and can be written to,
 * and the file, if it exists, is one we can append to. A sink that can never work fails the
 * start (exit 2, and check) instead of looking like a hang while every delivery's retries run
 * out. */
static enum kr_err check_path(const char *path, char *err)
{
	struct stat st;
	if (stat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return kr_errf(err, KR_ERR_CONFIG, "%s is a directory, not a file", path);
		if (access(path, W_OK) != 0)
			return kr_errf(err, KR_ERR_CONFIG, "cannot write %s: %s", path,
				       strerror(errno));
		return KR_OK;
	}
	if (errno != ENOENT && errno != ENOTDIR)
		return kr_errf(err, KR_ERR_CONFIG, "cannot use %s: %s", path, strerror(errno));
	const char *slash = strrchr(path, '/');
	char dir[4096];
	size_t n = slash ? (size_t)(slash - path) : 0;
	if (n >= sizeof dir)
		return kr_errf(err, KR_ERR_CONFIG, "%s: the path is too long", path);
	memcpy(dir, path, n);
	dir[n] = 0;
	if (!slash)
		strcpy(dir, ".");
	else if (n == 0)
		strcpy(dir, "/");
	if (stat(dir, &st) != 0)
		return kr_errf(err, KR_ERR_CONFIG, "cannot create %s: its folder %s: %s", path, dir,
			       strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return kr_errf(err, KR_ERR_CONFIG, "cannot create %s: %s is not a folder", path, dir);
	if (access(dir, W_OK | X_OK) != 0)
		return kr_errf(err, KR_ERR_CONFIG, "cannot create %s in %s: %s", path, dir,
			       strerror(errno));
	return KR_OK;
}

/* The folder check at config load, so that check rejects what run would; not for a config
 * loaded for another machine (match). */
static enum kr_err log_validate(const void *conf, const struct kr_opts_check *c)
{
	const struct log_conf *l = conf;
	char why[KR_ERRBUF];
	if (kr_opts_offline(c) || strcmp(l->path, "-") == 0 || check_path(l->path, why) == KR_OK)
		return KR_OK;
	return kr_opts_reject(c, "path", "%s", why);
}

static enum kr_err log_create(const struct kr_sink_args *a, void **ctx, char *err)
{
	struct log_sink *s = calloc(1, sizeof *s);
	if (!s || !(s->name = strdup(a->name)))
		goto nomem;
	const struct log_conf *c = a->conf;
	if (strcmp(c->path, "-") != 0 && !(s->path = strdup(c->path)))
		goto nomem;
	s->fd = s->path ? -1 : 1;
	s->nbfd = -1;
	s->loop = a->loop;
	struct stat st;
	if (!s->path && fstat(1, &st) == 0) {
		if (S_ISSOCK(st.st_mode))
			s->sock = true;
		else if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode))
			s->nbfd = open("/proc/self/fd/1", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
		/* where /proc is not there, stdout is written as it is (blocking) */
	}
	s->metadata = c->metadata;
	s->fsync_ms = c->fsync_ms;
	s->last_fsync = kr_now_ms();
	*ctx = s;
	return KR_OK;
nomem:
	if (s)
		free(s->name);
	free(s);
	return kr_errf(err, KR_ERR_NOMEM, "out of memory");
}

static void log_submit(void *ctx, struct kr_delivery *d)
{
	struct log_sink *s = ctx;
	if (!kr_grow(&s->pending, &s->cap, s->npending + 1, sizeof *s->pending, 256)) {
		kr_delivery_done(d, KR_RETRYABLE, 0, "ENOMEM", "out of memory");
		return;
	}
	size_t before = s->buf.len;
	bool ok;
	if (s->metadata) {
		char stamp[40];
		time_t t = (time_t)(d->received_ms / 1000);
		struct tm tm;
		gmtime_r(&t, &tm);
		snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			 (unsigned)(d->received_ms % 1000));
		size_t i = 0;
		while (i < d->len && (d->payload[i] == ' ' || d->payload[i] == '\n' ||
				      d->payload[i] == '\t' || d->payload[i] == '\r'))
			i++;
		bool json = i < d->len && (d->payload[i] == '{' || d->payload[i] == '[');
		ok = kr_buf_puts(&s->buf, "{\"rule\":") &&
		     kr_buf_json_string(&s->buf, d->rule, strlen(d->rule)) &&
		     kr_buf_puts(&s->buf, ",\"sink\":") &&
		     kr_buf_json_string(&s->buf, s->name, strlen(s->name)) &&
		     kr_buf_puts(&s->buf, ",\"received_time\":\"") && kr_buf_puts(&s->buf, stamp) &&
		     kr_buf_puts(&s->buf, "\",\"payload\":") &&
		     (json ? append_minified(&s->buf, d->payload, d->len)
			   : kr_buf_json_string(&s->buf, d->payload, d->len)) &&
		     kr_buf_puts(&s->buf, "}\n");
	} else {
		ok = append_minified(&s->buf, d->payload, d->len) && kr_buf_puts(&s->buf, "\n");
	}
	if (!ok) {
		s->buf.len = before;
		kr_delivery_done(d, KR_RETRYABLE, 0, "ENOMEM", "out of memory");
		return;
	}
	s->pending[s->npending++] = d;
}

static void complete_all(struct log_sink *s, enum kr_outcome o, const char *code, const char *msg)
{
	/* completing may submit more (retries are timers, so not now; dead letters to other sinks
	   may): take the list first */
	size_t n = s->npending;
	struct kr_delivery **list = s->pending;
	s->pending = NULL;
	s->npending = s->cap = 0;
	s->buf.len = 0;
	for (size_t i = 0; i < n; i++)
		kr_delivery_done(list[i], o, 0, code, msg);
	free(list);
}

static void write_out(struct log_sink *s);

/* The stdout sink that stopped in the middle of its buffer, and the ones waiting for their
 * turn after it (loop thread only). */
static struct log_sink *stdout_holder, *stdout_queue;

static void queue_remove(struct log_sink *s)
{
	for (struct log_sink **p = &stdout_queue; *p; p = &(*p)->next_queued)
		if (*p == s) {
			*p = s->next_queued;
			s->next_queued = NULL;
			return;
		}
}

/* s is done with stdout: the ones waiting write, in turn, until one has to stop. */
static void stdout_release(struct log_sink *s)
{
	if (stdout_holder != s)
		return;
	stdout_holder = NULL;
	while (!stdout_holder && stdout_queue) {
		struct log_sink *q = stdout_queue;
		stdout_queue = q->next_queued;
		q->next_queued = NULL;
		q->waiting = false;
		write_out(q);
	}
}

static void on_writable(struct kr_loop *l, int fd, unsigned events, void *arg)
{
	(void)events;
	struct log_sink *s = arg;
	kr_loop_unwatch(l, fd);
	s->waiting = false;
	write_out(s);
}

/* The descriptor a write that found it full waits on, or -1 where writes block (a file). */
static int wait_fd(const struct log_sink *s)
{
	if (s->sock)
		return s->fd;
	if (s->nbfd >= 0)
		return s->nbfd;
	return s->fifo ? s->fd : -1;
}

static ssize_t out_write(struct log_sink *s, size_t off)
{
	const char *p = s->buf.p + off;
	size_t n = s->buf.len - off;
	if (s->sock)
		return send(s->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
	return write(s->nbfd >= 0 ? s->nbfd : s->fd, p, n);
}

/* Writes buf from s->written on; completes the deliveries once all of it is out, or fails them
 * (retryable) when it cannot be written. A full pipe, terminal or socket: waits for it in the
 * loop (on_writable goes on). */
static void write_out(struct log_sink *s)
{
	if (!s->path && stdout_holder && stdout_holder != s) {
		/* after the sink that holds stdout (at the end of the queue, once) */
		struct log_sink **p = &stdout_queue;
		while (*p && *p != s)
			p = &(*p)->next_queued;
		if (!*p)
			*p = s;
		s->waiting = true;
		return;
	}
	/* where this batch starts, to take a partial write back out of the file */
	off_t start = s->fd > 2 ? lseek(s->fd, 0, SEEK_END) : -1;
	size_t off = s->written;
	while (off < s->buf.len) {
		ssize_t w = out_write(s, off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && wait_fd(s) >= 0 &&
		    kr_loop_watch(s->loop, wait_fd(s), KR_IO_WRITE, on_writable, s) == 0) {
			s->written = off;
			s->waiting = true;
			if (!s->path)
				stdout_holder = s;
			return;
		}
		if (w <= 0) {
			int e = w < 0 ? errno : EIO;
			/* standard output whose reader is gone (a pipe or socket closed at the other
			   end) cannot come back: the process keeps the one it was started with */
			bool gone = !s->path && (e == EPIPE || e == ECONNRESET);
			char msg[512];
			snprintf(msg, sizeof msg, "cannot write %s: %s%s", s->path ? s->path : "stdout",
				 strerror(e), gone ? " (its reader is gone)" : "");
			/* the retry writes the whole batch again: remove what got out of it */
			if (off && start >= 0 && ftruncate(s->fd, start) != 0)
				off = 0;
			if (s->fd > 2)
				close(s->fd);
			s->fd = s->path ? -1 : 1;
			s->fifo = false;
			s->written = 0;
			complete_all(s, gone ? KR_PERMANENT : KR_RETRYABLE,
				     gone ? "StdoutClosed" : "WriteFailed", msg);
			stdout_release(s);
			return;
		}
		off += (size_t)w;
	}
	s->written = 0;
	s->unsynced = !s->fifo; /* a FIFO has nothing to sync */
	if (s->unsynced && s->fd > 2 && s->fsync_ms &&
	    kr_now_ms() - s->last_fsync >= s->fsync_ms) {
		fsync(s->fd);
		s->unsynced = false;
		s->last_fsync = kr_now_ms();
	}
	complete_all(s, KR_DELIVERED, NULL, NULL);
	stdout_release(s);
}

static void log_flush(void *ctx)
{
	struct log_sink *s = ctx;
	if (s->waiting)
		return; /* on_writable writes what is there when the reader has taken some */
	if (!s->npending) {
		if (s->unsynced && s->fd > 2 && s->fsync_ms &&
		    kr_now_ms() - s->last_fsync >= s->fsync_ms) {
			fsync(s->fd);
			s->unsynced = false;
			s->last_fsync = kr_now_ms();
		}
		return;
	}
	if (s->fd < 0) {
		/* O_NONBLOCK: a FIFO opens at once or says it has no reader (a file is not changed
		   by it) */
		s->fd = open(s->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0644);
		if (s->fd < 0) {
			char msg[512];
			snprintf(msg, sizeof msg, "cannot open %s: %s", s->path,
				 errno == ENXIO ? "a FIFO that no process reads" : strerror(errno));
			complete_all(s, KR_RETRYABLE, "OpenFailed", msg);
			return;
		}
		struct stat st;
		s->fifo = fstat(s->fd, &st) == 0 && S_ISFIFO(st.st_mode);
		if (!s->fifo) /* a file: writes that block, as files do */
			(void)fcntl(s->fd, F_SETFL, O_WRONLY | O_APPEND);
	}
	write_out(s);
}

static void log_reopen(void *ctx)
{
	struct log_sink *s = ctx;
	if (s->path && s->fd >= 0 && !s->waiting) { /* (a FIFO waiting for its reader stays) */
		close(s->fd);
		s->fd = -1;
		s->fifo = false;
	}
}

/* Stops waiting: out of the stdout queue, or no longer watching its full descriptor. */
static void stop_waiting(struct log_sink *s)
{
	if (!s->waiting)
		return;
	if (!s->path && stdout_holder != s)
		queue_remove(s);
	else
		kr_loop_unwatch(s->loop, wait_fd(s));
	s->waiting = false;
}

static void log_destroy(void *ctx)
{
	struct log_sink *s = ctx;
	/* queued behind another sink that holds stdout: its lines cannot go out first; stopped on
	   its own full descriptor: up to a second more, then what is left fails (the line it
	   stopped in may stay cut short) */
	bool was_waiting = s->waiting, stopped = was_waiting && (s->path || stdout_holder == s);
	stop_waiting(s);
	if (stopped) {
		uint64_t until = kr_now_ms() + 1000;
		while (s->npending && kr_now_ms() < until) {
			struct pollfd p = {.fd = wait_fd(s), .events = POLLOUT};
			if (poll(&p, 1, (int)(until - kr_now_ms())) > 0)
				write_out(s);
			stop_waiting(s);
		}
	} else if (!was_waiting && s->npending) {
		log_flush(s);
		stop_waiting(s);
	}
	if (s->npending)
		complete_all(s, KR_RETRYABLE, "Closed", "the sink was closed");
	stdout_release(s);
	if (s->nbfd >= 0)
		close(s->nbfd);
	if (s->fd > 2) {
		if (s->unsynced)
			fsync(s->fd);
		close(s->fd);
	}
	free(s->pending);
	kr_buf_free(&s->buf);
	free(s->path);
	free(s->name);
	free(s);
}

/* How the plugin behaves: `kmsrouter help config TYPE` and kmsrouter.conf(5). */
static const char log_doc[] =
	"Appends each payload as one line (a payload that spans lines is minified to one) to the "
	"file path, or to standard output. The lines of an engine round are written together, and "
	"their deliveries count as done only once written, so an acknowledged event is in the "
	"file; fsync follows at most every fsync_interval_ms. With metadata each line is "
	"{\"rule\", \"sink\", \"received_time\", \"payload\"} (received_time: when kmsrouter "
	"received the record, in UTC to the millisecond). Its concurrency defaults to "
	"1048576.\n\n"
	"At start the file's folder must exist and be writable, else check and run exit 2. A file "
	"that cannot be opened or written fails the round's deliveries as retryable (error codes "
	"OpenFailed, WriteFailed), so the retry policy and dead letters apply; standard output "
	"whose reader is gone (a closed pipe or socket: it cannot come back) fails them "
	"permanently (StdoutClosed), into the dead letter. SIGHUP closes the "
	"file and the next write opens the path again, as logrotate expects.\n\n"
	"Standard output that is a pipe, a terminal or a socket is written without blocking: when "
	"its reader does not keep up, this sink's lines wait for it while the other sinks and the "
	"sources go on. Sinks on standard output take turns, so their lines never mix. A path that "
	"is a named FIFO is written the same way; while no process reads it, the deliveries fail "
	"as retryable (OpenFailed).";

const struct kr_sink_plugin kr_sink_log = {
	.name = "log",
	.description = "writes each delivered event as one JSON line to a file or stdout",
	.doc = log_doc,
	.options = log_options,
	.conf_size = sizeof(struct log_conf),
	.validate = log_validate,
	.default_concurrency = 1u << 20,
	.create = log_create,
	.submit = log_submit,
	.flush = log_flush,
	.reopen = log_reopen,
	.destroy = log_destroy,
};
