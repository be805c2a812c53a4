/* Input files and stdin, plain or gzip, into a kr_stream (see input.h). */
#include "input.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define CHUNK (256u * 1024u)

static ssize_t read_full(int fd, unsigned char *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

static enum kr_err read_gzip(struct kr_stream *s, int fd, const unsigned char *head, size_t nhead,
			     const char *path, char *err)
{
	z_stream z;
	memset(&z, 0, sizeof z);
	if (inflateInit2(&z, 15 + 16) != Z_OK)
		return kr_errf(err, KR_ERR_NOMEM, "%s: cannot start gzip decoder", path);
	unsigned char *in = malloc(CHUNK);
	enum kr_err e = KR_OK;
	if (!in) {
		inflateEnd(&z);
		return kr_errf(err, KR_ERR_NOMEM, "%s: out of memory", path);
	}
	memcpy(in, head, nhead);
	z.next_in = in;
	z.avail_in = (uInt)nhead;
	bool eof = false, member_done = false;
	while (!e) {
		if (z.avail_in == 0 && !eof) {
			ssize_t r = read_full(fd, in, CHUNK);
			if (r < 0) {
				e = kr_errf(err, KR_ERR_IO, "%s: %s", path, strerror(errno));
				break;
			}
			eof = r == 0;
			z.next_in = in;
			z.avail_in = (uInt)r;
		}
		if (z.avail_in == 0 && eof) {
			if (!member_done)
				e = kr_errf(err, KR_ERR_IO, "%s: truncated gzip data", path);
			break;
		}
		if (member_done) {
			/* another gzip member follows (concatenated .gz files) */
			inflateReset(&z);
			member_done = false;
		}
		char *out = kr_stream_reserve(s, CHUNK);
		if (!out) {
			e = kr_errf(err, KR_ERR_NOMEM, "%s: out of memory", path);
			break;
		}
		z.next_out = (unsigned char *)out;
		z.avail_out = CHUNK;
		int zr = inflate(&z, Z_NO_FLUSH);
		if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) {
			e = kr_errf(err, KR_ERR_IO, "%s: corrupt gzip data: %s", path,
				    z.msg ? z.msg : "inflate failed");
			break;
		}
		size_t produced = CHUNK - z.avail_out;
		if (zr == Z_STREAM_END)
			member_done = true;
		if (produced) {
			enum kr_err ce = kr_stream_commit(s, produced);
			if (ce)
				e = ce;
		}
	}
	inflateEnd(&z);
	free(in);
	return e;
}

enum kr_err kr_input_read(struct kr_stream *s, const char *path, char *err)
{
	if (err)
		err[0] = 0;
	bool is_stdin = strcmp(path, "-") == 0;
	int fd = is_stdin ? 0 : open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kr_errf(err, KR_ERR_IO, "%s: %s", path, strerror(errno));
	kr_stream_reset(s);
	enum kr_err e = KR_OK;
	struct stat st;
	bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
	if (regular && st.st_size == 0) {
		e = kr_stream_end(s);
		goto out;
	}
	unsigned char head[2];
	ssize_t nh = read_full(fd, head, 2);
	if (nh < 0) {
		e = kr_errf(err, KR_ERR_IO, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (nh == 2 && head[0] == 0x1f && head[1] == 0x8b) {
		e = read_gzip(s, fd, head, 2, path, err);
		if (!e)
			e = kr_stream_end(s);
	} else {
		/* read() into the stream's buffer beats mapping the file: no page faults, and the
		 * buffer is reused, so resident memory stays at one window whatever the input size */
		char *b = kr_stream_reserve(s, CHUNK);
		if (!b) {
			e = kr_errf(err, KR_ERR_NOMEM, "%s: out of memory", path);
			goto out;
		}
		memcpy(b, head, (size_t)nh);
		e = kr_stream_commit(s, (size_t)nh);
		while (!e) {
			b = kr_stream_reserve(s, CHUNK);
			if (!b) {
				e = kr_errf(err, KR_ERR_NOMEM, "%s: out of memory", path);
				break;
			}
			ssize_t r = read(fd, b, CHUNK);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				e = kr_errf(err, KR_ERR_IO, "%s: %s", path, strerror(errno));
				break;
			}
			if (r == 0)
				break;
			e = kr_stream_commit(s, (size_t)r);
		}
		if (!e)
			e = kr_stream_end(s);
	}
	if (e == KR_ERR_IO && err && !err[0])
		kr_errf(err, KR_ERR_IO, "%s: stopped", path);
out:
	if (!is_stdin)
		close(fd);
	return e;
}
