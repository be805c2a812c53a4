/* Input files and stdin, plain or gzip, into a kr_stream a chunk at a time (see input.h). */
#include "input.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define CHUNK (256u * 1024u)

struct kr_reader {
	struct kr_stream *s;
	char *path;
	int fd;
	bool is_stdin;
	bool may_block;   /* not a regular file: a read can wait for a writer */
	bool nonblocking; /* opened so: poll before such a read */
	bool started;     /* the first bytes were looked at (gzip or not) */
	bool gzip;
	bool member_done; /* gzip: a member ended; another may follow */
	z_stream z;
	unsigned char *in;
	uint64_t offset;
	dev_t dev;
	ino_t ino;
};

#define READ_WOULD_WAIT (-2)

/* read(2) of up to n bytes: -1 on an error (errno), READ_WOULD_WAIT when a descriptor that
 * someone made non-blocking has nothing yet and the reader was opened nonblocking (otherwise
 * that waits here, as a blocking descriptor would). */
static ssize_t read_some(const struct kr_reader *r, void *buf, size_t n)
{
	for (;;) {
		ssize_t k = read(r->fd, buf, n);
		if (k >= 0)
			return k;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			if (r->nonblocking)
				return READ_WOULD_WAIT;
			struct pollfd p = {.fd = r->fd, .events = POLLIN};
			(void)poll(&p, 1, -1);
		} else if (errno != EINTR) {
			return -1;
		}
	}
}

enum kr_err kr_reader_open(const char *path, struct kr_stream *s, bool nonblocking,
			   struct kr_reader **out, char *err)
{
	struct kr_reader *r = calloc(1, sizeof *r);
	if (!r || !(r->path = strdup(path))) {
		free(r);
		return kr_errf(err, KR_ERR_NOMEM, "%s: out of memory", path);
	}
	r->s = s;
	r->is_stdin = strcmp(path, "-") == 0;
	r->nonblocking = nonblocking;
	/* O_NONBLOCK on a description of our own: a FIFO opens at once, writer or not */
	r->fd = r->is_stdin ? 0 : open(path, O_RDONLY | O_CLOEXEC | (nonblocking ? O_NONBLOCK : 0));
	if (r->fd < 0) {
		enum kr_err e = kr_errf(err, KR_ERR_IO, "%s: %s", path, strerror(errno));
		free(r->path);
		free(r);
		return e;
	}
	struct stat st;
	if (fstat(r->fd, &st) == 0) {
		if (S_ISDIR(st.st_mode)) {
			enum kr_err e = kr_errf(err, KR_ERR_IO, "%s: is a directory", path);
			kr_reader_close(r);
			return e;
		}
		r->dev = st.st_dev;
		r->ino = st.st_ino;
		r->may_block = !S_ISREG(st.st_mode);
	}
	kr_stream_reset(s);
	*out = r;
	return KR_OK;
}

int kr_reader_fd(const struct kr_reader *r)
{
	return r->fd;
}

/* Whether a read now would wait (opened nonblocking, not a regular file): nothing
 * to read, and neither an end nor an error to report. */
static bool would_wait(const struct kr_reader *r)
{
	if (!r->nonblocking || !r->may_block)
		return false;
	struct pollfd p = {.fd = r->fd, .events = POLLIN};
	int k = poll(&p, 1, 0);
	return k == 0 || (k < 0 && errno == EINTR);
}

static enum kr_read step_gzip(struct kr_reader *r, char *err)
{
	z_stream *z = &r->z;
	if (z->avail_in == 0) {
		if (would_wait(r))
			return KR_READ_WAIT;
		ssize_t n = read_some(r, r->in, CHUNK);
		if (n == READ_WOULD_WAIT)
			return KR_READ_WAIT;
		if (n < 0) {
			kr_errf(err, KR_ERR_IO, "%s: %s", r->path, strerror(errno));
			return KR_READ_ERROR;
		}
		if (n == 0) {
			if (!r->member_done) {
				kr_errf(err, KR_ERR_IO, "%s: truncated gzip data", r->path);
				return KR_READ_ERROR;
			}
			return KR_READ_EOF;
		}
		r->offset += (uint64_t)n;
		z->next_in = r->in;
		z->avail_in = (uInt)n;
	}
	if (r->member_done) {
		/* another gzip member follows (concatenated .gz files): a file of its own, which may
		   start with a byte order mark */
		inflateReset(z);
		r->member_done = false;
		kr_stream_file_start(r->s);
	}
	char *out = kr_stream_reserve(r->s, CHUNK);
	if (!out) {
		kr_errf(err, KR_ERR_NOMEM, "%s: out of memory", r->path);
		return KR_READ_ERROR;
	}
	z->next_out = (unsigned char *)out;
	z->avail_out = CHUNK;
	int zr = inflate(z, Z_NO_FLUSH);
	if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) {
		kr_errf(err, KR_ERR_IO, "%s: corrupt gzip data: %s", r->path,
			z->msg ? z->msg : "inflate failed");
		return KR_READ_ERROR;
	}
	if (zr == Z_STREAM_END)
		r->member_done = true;
	size_t produced = CHUNK - z->avail_out;
	if (produced && kr_stream_commit(r->s, produced) != KR_OK) {
		kr_errf(err, KR_ERR_IO, "%s: stopped", r->path);
		return KR_READ_ERROR;
	}
	return KR_READ_MORE;
}

enum kr_read kr_reader_step(struct kr_reader *r, char *err)
{
	if (r->gzip)
		return step_gzip(r, err);
	if (would_wait(r))
		return KR_READ_WAIT;
	char *b = kr_stream_reserve(r->s, CHUNK);
	if (!b) {
		kr_errf(err, KR_ERR_NOMEM, "%s: out of memory", r->path);
		return KR_READ_ERROR;
	}
	ssize_t n = read_some(r, b, CHUNK);
	if (n == READ_WOULD_WAIT)
		return KR_READ_WAIT;
	if (n < 0) {
		kr_errf(err, KR_ERR_IO, "%s: %s", r->path, strerror(errno));
		return KR_READ_ERROR;
	}
	if (n == 0)
		return KR_READ_EOF;
	if (!r->started) {
		r->started = true;
		/* gzip magic: switch to inflating, the bytes read so far are its first input */
		if (n >= 2 && (unsigned char)b[0] == 0x1f && (unsigned char)b[1] == 0x8b) {
			r->in = malloc(CHUNK);
			if (!r->in || inflateInit2(&r->z, 15 + 16) != Z_OK) {
				kr_errf(err, KR_ERR_NOMEM, "%s: cannot start the gzip decoder", r->path);
				return KR_READ_ERROR;
			}
			r->gzip = true;
			memcpy(r->in, b, (size_t)n);
			r->z.next_in = r->in;
			r->z.avail_in = (uInt)n;
			r->offset += (uint64_t)n;
			return step_gzip(r, err);
		}
	}
	r->offset += (uint64_t)n;
	if (kr_stream_commit(r->s, (size_t)n) != KR_OK) {
		kr_errf(err, KR_ERR_IO, "%s: stopped", r->path);
		return KR_READ_ERROR;
	}
	return KR_READ_MORE;
}

uint64_t kr_reader_offset(const struct kr_reader *r)
{
	return r->offset;
}

int64_t kr_reader_size(const struct kr_reader *r)
{
	struct stat st;
	if (r->is_stdin || fstat(r->fd, &st) != 0 || !S_ISREG(st.st_mode))
		return -1;
	return (int64_t)st.st_size;
}

bool kr_reader_replaced(const struct kr_reader *r)
{
	if (r->is_stdin)
		return false;
	struct stat st, cur;
	if (stat(r->path, &st) != 0)
		return false; /* gone for now: keep reading what we have until it reappears */
	if (st.st_dev != r->dev || st.st_ino != r->ino)
		return true;
	return fstat(r->fd, &cur) == 0 && (uint64_t)cur.st_size < r->offset && !r->gzip;
}

enum kr_err kr_reader_finish(struct kr_reader *r)
{
	return kr_stream_end(r->s);
}

void kr_reader_close(struct kr_reader *r)
{
	if (!r)
		return;
	if (r->gzip)
		inflateEnd(&r->z);
	free(r->in);
	if (!r->is_stdin && r->fd >= 0)
		close(r->fd);
	free(r->path);
	free(r);
}

enum kr_err kr_input_read(struct kr_stream *s, const char *path, char *err)
{
	if (err)
		err[0] = 0;
	struct kr_reader *r;
	enum kr_err e = kr_reader_open(path, s, false, &r, err);
	if (e)
		return e;
	enum kr_read st;
	while ((st = kr_reader_step(r, err)) == KR_READ_MORE)
		;
	if (st == KR_READ_ERROR)
		e = KR_ERR_IO;
	else
		e = kr_reader_finish(r);
	if (e == KR_ERR_IO && err && !err[0])
		kr_errf(err, KR_ERR_IO, "%s: stopped", path);
	kr_reader_close(r);
	return e;
}
