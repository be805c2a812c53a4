/* file source: archived or growing files, and standard input.
 *
 * Reads each path ("-" for stdin) in every format the parsers read, through kr_reader, one chunk
 * per pull so other sources and deliveries get their turn. Without "follow" the inputs are read
 * one after another and the source is done at the end of the last; a glob is expanded once, and
 * one that matches nothing is an error. With "follow", every input is watched like tail -F: at
 * its end the source waits and polls; when the path is replaced (rotation) or truncated, the old
 * file is finished and the new one read from its start; and every poll_interval_ms the globs are
 * expanded again, so a file that starts to match one is read from its beginning (a glob that
 * matches nothing is warned about once, not an error). Standard input that is a pipe or a socket
 * ends at its end even with "follow", as with tail -f. Reading a pipe, socket or terminal that
 * has nothing yet waits in the event loop (a watch on its descriptor), not in read(), so a quiet
 * writer holds up neither deliveries nor signals (a named FIFO is opened without waiting for a
 * writer, and read from when one writes).
 *
 * With "checkpoint", the number of records done per input is saved (atomically: a temporary file
 * renamed over the old one, soon after each acknowledgement) and skipped on the next start. A
 * record count only means something for the same file read the same way, so each input's entry
 * also names the file (device, inode, size, a hash of its first bytes) and the checkpoint keeps
 * the caller's "window" (replay's --from, --to, --replay-name). When they no longer fit the
 * source refuses to start and says what changed: a file that grew still fits (following it is
 * the point); one that was replaced, truncated or rewritten does not. The one exception is run
 * with "follow": there a file replaced while kmsrouter was down is a rotation like one seen while
 * running, so it is read from its beginning (nothing is skipped) with a warning naming the
 * change.
 *
 * replay passes two keys that are not options (so a config cannot set them): "checkpoint_window",
 * an object of strings to keep with the checkpoint, and "checkpoint_reset", whether to discard an
 * existing checkpoint (--checkpoint-reset) instead of resuming from it. */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "input.h"
#include "json.h"
#include "log.h"
#include "loop.h"
#include "plugin.h"

/* Bytes at the start of a file whose hash tells a rewritten file from the one checkpointed. */
#define HEAD_BYTES 4096

/* What identifies the file an input reads. A followed file grows, so the size only says that a
 * file shorter than before is not the same one; the head hash covers the bytes there were when
 * it was taken (head_len), which a file that grew still starts with. */
struct fid {
	bool known; /* a regular file (not a pipe, not missing) */
	uint64_t dev, ino;
	int64_t size;
	uint32_t head_len;
	uint64_t head_hash; /* FNV-1a 64 of the first head_len bytes */
};

struct finput {
	char *path;
	struct kr_reader *reader;
	struct kr_input *input; /* the engine's, while the file is being read */
	struct kr_stream *stream;
	uint32_t gen;      /* opened how many times: acks of an earlier opening (a rotated file) are
			      not this file's */
	bool finished;     /* read to the end and ended (not follow; with follow, stdin_ends) */
	bool stdin_ends;   /* standard input that is a pipe or a socket: once its writers are gone
			      it has nothing more to give, so with follow too it ends at its end */
	bool watched;      /* waiting for its descriptor to be readable (a quiet pipe) */
	uint64_t done;     /* records acknowledged */
	uint64_t skip;     /* from the checkpoint */
	int64_t size;
	struct fid id;     /* of the file being read; before it is opened, as it was at start */
};

struct file_src {
	struct kr_source_handle *h;
	struct kr_loop *loop;
	char *name;
	struct finput *in;
	size_t n, cur;
	char **globs; /* followed globs, expanded again at every poll */
	size_t nglobs;
	uint64_t next_scan; /* when the globs are expanded again (kr_now_ms) */
	bool follow;
	uint64_t poll_ms;
	char *checkpoint;
	char *window; /* JSON text of "checkpoint_window", or NULL */
	bool dirty;
	uint64_t unsaved; /* records acknowledged since the last save */
	struct kr_timer *save_timer;
	struct kr_timer *poll_timer;
	uint64_t bytes_total;
};

struct file_conf {
	struct kr_strings paths;
	bool follow;
	uint64_t poll_ms;
	const char *checkpoint;
};

static const struct kr_option file_options[] = {
	{.name = "paths", .type = KR_OPT_PATHS, .offset = offsetof(struct file_conf, paths),
	 .required = true, .help = "files or globs to read, \"-\" for standard input"},
	{.name = "follow", .type = KR_OPT_BOOL, .offset = offsetof(struct file_conf, follow),
	 .def = "false",
	 .help = "keep reading as the files grow, across rotation, and read files that start to "
		 "match the globs (like tail -F)"},
	{.name = "poll_interval_ms", .type = KR_OPT_DURATION,
	 .offset = offsetof(struct file_conf, poll_ms), .def = "250", .min = 1, .max = 3600000,
	 .help = "how often a followed file at its end, and the globs, are looked at again"},
	{.name = "checkpoint", .type = KR_OPT_PATH, .offset = offsetof(struct file_conf, checkpoint),
	 .help = "file that records how far each input was delivered, to resume from; a start "
		 "is refused when an input was replaced since (delete the file to start over; with "
		 "follow, a replaced file is read from its beginning)"},
	{0},
};

static ssize_t pread_full(int fd, unsigned char *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = pread(fd, buf + got, n - got, (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/* The identity of the file at path now ("-": standard input), its head hashed over at most head
 * bytes. False when the path cannot be opened; true with id->known false for what is not a
 * regular file (a pipe has no identity to check). */
static bool identify(const char *path, size_t head, struct fid *id)
{
	memset(id, 0, sizeof *id);
	bool is_stdin = strcmp(path, "-") == 0;
	/* O_NONBLOCK: opening a FIFO for reading must not wait for a writer here */
	int fd = is_stdin ? 0 : open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return false;
	struct stat st;
	bool ok = fstat(fd, &st) == 0;
	if (ok && S_ISREG(st.st_mode)) {
		unsigned char buf[HEAD_BYTES];
		if (head > sizeof buf)
			head = sizeof buf;
		if ((int64_t)head > (int64_t)st.st_size)
			head = (size_t)st.st_size;
		ssize_t n = pread_full(fd, buf, head);
		if (n >= 0) {
			uint64_t hash = 0xcbf29ce484222325ULL;
			for (ssize_t k = 0; k < n; k++)
				hash = (hash ^ buf[k]) * 0x100000001b3ULL;
			*id = (struct fid){.known = true, .dev = (uint64_t)st.st_dev,
					   .ino = (uint64_t)st.st_ino, .size = (int64_t)st.st_size,
					   .head_len = (uint32_t)n, .head_hash = hash};
		}
	}
	if (!is_stdin)
		close(fd);
	return ok;
}

/* Whether b is the file a was, as long or longer. */
static bool same_file(const struct fid *a, const struct fid *b)
{
	return a->dev == b->dev && a->ino == b->ino && b->size >= a->size;
}

/* Adds an input for path unless there is one already (two globs matching the same file, or the
 * file found again by a rescan, must not read it twice). */
static int add_input(struct file_src *f, const char *path)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->in[i].path, path) == 0)
			return 0;
	struct finput *v = realloc(f->in, (f->n + 1) * sizeof *v);
	if (!v)
		return -1;
	f->in = v;
	memset(&f->in[f->n], 0, sizeof *f->in);
	if (!(f->in[f->n].path = strdup(path)))
		return -1;
	struct stat st;
	f->in[f->n].size = stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
	if (f->in[f->n].size > 0)
		f->bytes_total += (uint64_t)f->in[f->n].size;
	f->n++;
	return 0;
}

static bool put_input(struct kr_buf *b, const struct finput *in)
{
	char num[256];
	if (!kr_buf_puts(b, "{\"path\":") || !kr_buf_json_string(b, in->path, strlen(in->path)))
		return false;
	snprintf(num, sizeof num, ",\"records\":%" PRIu64, in->done);
	if (!kr_buf_puts(b, num))
		return false;
	if (in->id.known) {
		/* the size of the file as read now: a followed file has grown since it was opened */
		int64_t size = in->reader ? kr_reader_size(in->reader) : -1;
		if (size < in->id.size)
			size = in->id.size;
		snprintf(num, sizeof num,
			 ",\"dev\":%" PRIu64 ",\"inode\":%" PRIu64 ",\"size\":%" PRId64
			 ",\"head_bytes\":%" PRIu32 ",\"head_fnv1a64\":\"%016" PRIx64 "\"",
			 in->id.dev, in->id.ino, size, in->id.head_len, in->id.head_hash);
		if (!kr_buf_puts(b, num))
			return false;
	}
	return kr_buf_puts(b, "}");
}

/* Writes the checkpoint to a temporary file renamed over the old one, so a kill at any moment
 * leaves either the old checkpoint or the new one. */
static void save_checkpoint(struct file_src *f)
{
	if (!f->checkpoint || !f->dirty)
		return;
	struct kr_buf b = {0};
	bool ok = kr_buf_puts(&b, "{\"version\":2,");
	if (ok && f->window)
		ok = kr_buf_puts(&b, "\"window\":") && kr_buf_puts(&b, f->window) &&
		     kr_buf_puts(&b, ",");
	ok = ok && kr_buf_puts(&b, "\"inputs\":[");
	for (size_t i = 0; i < f->n && ok; i++)
		ok = (i == 0 || kr_buf_puts(&b, ",")) && put_input(&b, &f->in[i]);
	ok = ok && kr_buf_puts(&b, "]}\n");
	size_t tl = strlen(f->checkpoint) + 8;
	char *tmp = malloc(tl);
	if (ok && tmp) {
		snprintf(tmp, tl, "%s.tmp", f->checkpoint);
		FILE *out = fopen(tmp, "w");
		bool written = out && fwrite(b.p, 1, b.len, out) == b.len;
		if (out && fclose(out) != 0)
			written = false;
		if (written && rename(tmp, f->checkpoint) == 0) {
			f->dirty = false;
		} else {
			kr_log(KR_LOG_ERROR, "source", "name", f->name, "msg",
			       "cannot write the checkpoint", "path", f->checkpoint, "error",
			       strerror(errno), NULL);
			unlink(tmp);
		}
	}
	free(tmp);
	kr_buf_free(&b);
}

static void save_fire(struct kr_loop *l, struct kr_timer *t, void *arg)
{
	(void)l;
	(void)t;
	save_checkpoint(arg);
}

/* The differences found between a checkpoint and what is read now, for one error message. */
struct misfit {
	char text[KR_ERRBUF];
	size_t len;
	unsigned n, left_out;
};

static void __attribute__((format(printf, 2, 3))) add_misfit(struct misfit *m, const char *fmt, ...)
{
	char one[KR_ERRBUF];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(one, sizeof one, fmt, ap);
	va_end(ap);
	/* whole reasons only, with room left for the rest of the message */
	size_t need = strlen(one) + (m->n ? 2 : 0);
	if (m->len + need > sizeof m->text / 2) {
		m->left_out++;
		return;
	}
	m->len += (size_t)snprintf(m->text + m->len, sizeof m->text - m->len, "%s%s",
				   m->n ? "; " : "", one);
	m->n++;
}

static uint64_t json_u64(const struct kr_json *j)
{
	return j && j->type == KR_JSON_NUMBER ? strtoull(j->str, NULL, 10) : 0;
}

/* Compares an entry of the checkpoint with the file at the input's path now. */
static void check_input(struct finput *in, const struct kr_json *e, struct misfit *m)
{
	const struct kr_json *ino = kr_json_get(e, "inode"), *dev = kr_json_get(e, "dev"),
			     *hash = kr_json_get(e, "head_fnv1a64");
	struct fid was = {.dev = json_u64(dev), .ino = json_u64(ino),
			  .size = (int64_t)json_u64(kr_json_get(e, "size")),
			  .head_len = (uint32_t)json_u64(kr_json_get(e, "head_bytes"))};
	if (!ino || !dev || !hash || hash->type != KR_JSON_STRING) {
		add_misfit(m,
			   "%s: the checkpoint has no identity record for it (it was written by an "
			   "older kmsrouter), so it cannot tell whether this is the same file",
			   in->path);
		return;
	}
	was.head_hash = strtoull(hash->str, NULL, 16);
	if (!identify(in->path, was.head_len, &in->id)) {
		add_misfit(m, "%s: cannot be read any more (%s)", in->path, strerror(errno));
	} else if (!in->id.known) {
		add_misfit(m, "%s: not a regular file any more", in->path);
	} else if (was.dev != in->id.dev || was.ino != in->id.ino) {
		if (was.dev != in->id.dev)
			add_misfit(m, "%s: the file was replaced (device %" PRIu64 " inode %" PRIu64
				  " -> device %" PRIu64 " inode %" PRIu64 ")",
			       in->path, was.dev, was.ino, in->id.dev, in->id.ino);
		else
			add_misfit(m, "%s: the file was replaced (inode %" PRIu64 " -> %" PRIu64 ")",
			       in->path, was.ino, in->id.ino);
	} else if (in->id.size < was.size) {
		add_misfit(m, "%s: the file was truncated (%" PRId64 " -> %" PRId64 " bytes)", in->path,
		       was.size, in->id.size);
	} else if (in->id.head_len != was.head_len || in->id.head_hash != was.head_hash) {
		add_misfit(m, "%s: the file was rewritten (its first %" PRIu32 " bytes differ)", in->path,
		       was.head_len);
	}
}

static const char *window_value(const struct kr_json *w, const char *key)
{
	const struct kr_json *v = w ? kr_json_get(w, key) : NULL;
	return v && v->type == KR_JSON_STRING ? v->str : "(not set)";
}

/* Compares the window kept in the checkpoint (was) with the one given now. */
static void check_window(const struct kr_json *was, const struct kr_json *now, struct misfit *m)
{
	for (int pass = 0; pass < 2; pass++) {
		const struct kr_json *w = pass ? was : now;
		for (size_t i = 0; w && w->type == KR_JSON_OBJECT && i < w->n; i++) {
			const char *k = w->keys[i];
			if (pass && now && kr_json_get(now, k))
				continue; /* compared in the first pass */
			const char *a = window_value(was, k), *b = window_value(now, k);
			if (strcmp(a, b) != 0)
				add_misfit(m, "%s changed from %s to %s", k, a, b);
		}
	}
}

/* Loads the checkpoint, if there is one, and sets each input's records to skip. When it no
 * longer fits what is read now, nothing is skipped: err says what changed. */
static enum kr_err load_checkpoint(struct file_src *f, const struct kr_json *window,
				   bool offers_reset, char *err)
{
	char *text;
	size_t len;
	char rerr[KR_ERRBUF];
	if (access(f->checkpoint, F_OK) != 0)
		return KR_OK;
	if (kr_read_file(f->checkpoint, &text, &len, rerr) != KR_OK)
		return kr_errf(err, KR_ERR_IO, "%s", rerr);
	struct kr_json *doc = NULL;
	size_t off;
	if (kr_json_parse(text, len, NULL, &doc, &off, rerr) != KR_OK) {
		/* nothing is skipped: every record is delivered again, which is safe */
		kr_log(KR_LOG_WARN, "source", "name", f->name, "msg",
		       "ignoring an unreadable checkpoint; reading every input from its beginning",
		       "path", f->checkpoint, "error", rerr, NULL);
		free(text);
		return KR_OK;
	}
	struct misfit m = {0};
	const struct kr_json *version = kr_json_get(doc, "version");
	uint64_t v = json_u64(version);
	if (v > 2) {
		add_misfit(&m, "it has version %" PRIu64 "; this kmsrouter reads versions 1 and 2", v);
	} else if (v == 2) {
		check_window(kr_json_get(doc, "window"), window, &m);
	}
	const struct kr_json *ins = kr_json_get(doc, "inputs");
	for (size_t i = 0; v <= 2 && ins && ins->type == KR_JSON_ARRAY && i < ins->n; i++) {
		const struct kr_json *p = kr_json_get(ins->items[i], "path"),
				     *r = kr_json_get(ins->items[i], "records");
		if (!p || p->type != KR_JSON_STRING || !r || r->type != KR_JSON_NUMBER)
			continue;
		for (size_t k = 0; k < f->n; k++) {
			struct finput *in = &f->in[k];
			if (strcmp(in->path, p->str) != 0 || json_u64(r) == 0)
				continue;
			if (strcmp(in->path, "-") == 0 && v == 2 && !kr_json_get(ins->items[i], "inode")) {
				kr_log(KR_LOG_WARN, "source", "name", f->name, "msg",
				       "standard input is not a file that can be identified; skipping the "
				       "records the checkpoint counts as done",
				       "path", f->checkpoint, "records", r->str, NULL);
			} else if (f->follow && !offers_reset) {
				/* run following files: a file replaced while kmsrouter was down is what
				   logrotate does, and is handled as a rotation while running is: the new
				   file is read from its beginning, nothing skipped, and the log says why */
				struct misfit one = {0};
				check_input(in, ins->items[i], &one);
				if (one.n) {
					kr_log(KR_LOG_WARN, "source", "name", f->name, "msg",
					       "the file changed since the checkpoint; reading it from its "
					       "beginning",
					       "path", in->path, "change", one.text, NULL);
					continue;
				}
			} else {
				unsigned before = m.n + m.left_out;
				check_input(in, ins->items[i], &m);
				if (m.n + m.left_out != before)
					continue;
			}
			in->skip = in->done = json_u64(r);
		}
	}
	kr_json_free(doc);
	free(text);
	if (!m.n && !m.left_out)
		return KR_OK;
	char more[64] = "";
	if (m.left_out)
		snprintf(more, sizeof more, "; and %u more", m.left_out);
	return kr_errf(err, KR_ERR_CONFIG, "checkpoint %s no longer fits the input: %s%s; %s",
		       f->checkpoint, m.text, more,
		       offers_reset ? "pass --checkpoint-reset to start over"
				    : "delete the checkpoint file to start over");
}

static bool is_glob(const char *p)
{
	return strpbrk(p, "*?[") != NULL;
}

/* Adds the files that match a glob now (announce: say so for each new one); *matched is the
 * number of files that match, new or not. -1 when out of memory. */
static int expand(struct file_src *f, const char *pattern, bool announce, size_t *matched)
{
	glob_t g;
	*matched = 0;
	if (glob(pattern, 0, NULL, &g) != 0)
		return 0;
	int r = 0;
	for (size_t k = 0; k < g.gl_pathc && r == 0; k++) {
		size_t before = f->n;
		r = add_input(f, g.gl_pathv[k]);
		if (r == 0 && announce && f->n != before)
			kr_log(KR_LOG_INFO, "source", "name", f->name, "msg",
			       "a new file matches a followed glob; reading it from its beginning",
			       "glob", pattern, "path", g.gl_pathv[k], NULL);
	}
	*matched = g.gl_pathc;
	globfree(&g);
	return r;
}

/* Expands the followed globs again (follow, every poll_interval_ms). */
static void rescan(struct file_src *f)
{
	for (size_t i = 0; i < f->nglobs; i++) {
		size_t matched;
		if (expand(f, f->globs[i], true, &matched) != 0)
			kr_log(KR_LOG_ERROR, "source", "name", f->name, "msg",
			       "out of memory; a new file is not read", "glob", f->globs[i], NULL);
	}
}

/* One entry of "paths", resolved: inputs for what it names now; a followed glob is kept to be
 * expanded again. -1 when out of memory. */
static int add_path(struct file_src *f, const char *p)
{
	if (strcmp(p, "-") == 0 || !is_glob(p)) {
		if (f->follow && strcmp(p, "-") != 0 && access(p, F_OK) != 0)
			kr_log(KR_LOG_WARN, "source", "name", f->name, "msg",
			       "a followed file does not exist yet; waiting for it", "path", p, NULL);
		size_t before = f->n;
		int r = add_input(f, p);
		if (r == 0 && f->n == before)
			/* its checkpoint entry and its records are the path's: it is read once */
			kr_log(KR_LOG_WARN, "source", "name", f->name, "msg",
			       "a path is given more than once; it is read once", "path", p, NULL);
		return r;
	}
	size_t matched;
	if (expand(f, p, false, &matched) != 0)
		return -1;
	if (f->follow) {
		char **v = realloc(f->globs, (f->nglobs + 1) * sizeof *v);
		if (!v)
			return -1;
		f->globs = v;
		if (!(v[f->nglobs] = strdup(p)))
			return -1;
		f->nglobs++;
	}
	if (matched)
		return 0;
	if (f->follow) {
		kr_log(KR_LOG_WARN, "source", "name", f->name, "msg",
		       "no file matches a followed glob; waiting for one", "glob", p, NULL);
	} else {
		kr_log(KR_LOG_ERROR, "source", "name", f->name, "msg", "no file matches a glob",
		       "glob", p, NULL);
		kr_source_error(f->h);
	}
	return 0;
}

static void file_destroy(void *ctx);

static enum kr_err file_create(const struct kr_source_args *a, void **ctx, char *err)
{
	struct file_src *f = calloc(1, sizeof *f);
	if (!f || !(f->name = strdup(a->name))) {
		free(f);
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	}
	f->h = a->handle;
	f->loop = a->loop;
	const struct file_conf *c = a->conf;
	f->follow = c->follow;
	f->poll_ms = c->poll_ms;
	const char *cp = c->checkpoint;
	const struct kr_json *window = kr_json_get(a->obj, "checkpoint_window");
	const struct kr_json *reset = kr_json_get(a->obj, "checkpoint_reset");
	if (window && window->type != KR_JSON_OBJECT)
		window = NULL;
	if (cp && !(f->checkpoint = strdup(cp)))
		goto fail;
	if (window) {
		struct kr_buf b = {0};
		if (!kr_json_write(&b, window) || !kr_buf_append(&b, "", 1)) {
			kr_buf_free(&b);
			goto fail;
		}
		f->window = b.p;
	}
	for (size_t i = 0; i < c->paths.n; i++) {
		int added = add_path(f, c->paths.v[i]);
		if (added != 0)
			goto fail;
	}
	f->save_timer = kr_timer_new(a->loop, save_fire, f);
	if (!f->save_timer)
		goto fail;
	if (f->checkpoint) {
		for (size_t i = 0; i < f->n; i++)
			identify(f->in[i].path, HEAD_BYTES, &f->in[i].id);
		if (reset && reset->type == KR_JSON_TRUE) {
			/* written again at once, so a kill before the first acknowledgement does not
			   leave the old one behind */
			if (access(f->checkpoint, F_OK) == 0)
				kr_log(KR_LOG_INFO, "source", "name", f->name, "msg",
				       "checkpoint reset: every input is read from its beginning",
				       "path", f->checkpoint, NULL);
			f->dirty = true;
			save_checkpoint(f);
		} else {
			enum kr_err r = load_checkpoint(f, window, reset != NULL, err);
			if (r != KR_OK) {
				file_destroy(f);
				return r;
			}
		}
	}
	f->next_scan = kr_now_ms() + f->poll_ms;
	*ctx = f;
	return KR_OK;
fail:
	file_destroy(f);
	return kr_errf(err, KR_ERR_NOMEM, "out of memory");
}

/* One step of input i: the rest of a paused chunk first, else a new chunk. */
static enum kr_read step_input(struct finput *in, char *err)
{
	if (kr_stream_paused(in->stream)) {
		if (kr_stream_resume(in->stream) != KR_OK) {
			kr_errf(err, KR_ERR_IO, "%s: stopped", in->path);
			return KR_READ_ERROR;
		}
		return KR_READ_MORE;
	}
	return kr_reader_step(in->reader, err);
}

static void close_input(struct finput *in)
{
	kr_input_close(in->input);
	in->input = NULL;
	in->stream = NULL;
}

/* Opens input i (again); false when it cannot be opened now. The identity kept for the
 * checkpoint is that of the file the reader opened: when the path is replaced between the two
 * looks, both are taken again. */
static bool open_input(struct file_src *f, size_t i)
{
	struct finput *in = &f->in[i];
	char err[KR_ERRBUF];
	struct fid now;
	for (int attempt = 0;; attempt++) {
		if (!identify(in->path, HEAD_BYTES, &now) && f->follow)
			return false; /* not there (yet): looked at again at the next poll */
		if (in->skip && in->id.known && now.known && !same_file(&in->id, &now)) {
			kr_log(KR_LOG_WARN, "source", "name", f->name, "msg",
			       "the file was replaced since the checkpoint was checked; reading it "
			       "from its beginning",
			       "path", in->path, NULL);
			in->skip = in->done = 0;
		}
		in->gen++;
		struct kr_input_opts o = {.name = in->path, .id = (uint64_t)i << 32 | in->gen,
					  .skip = in->skip};
		if (!(in->input = kr_input_open(f->h, &o)))
			return false;
		in->stream = kr_input_stream(in->input);
		/* nonblocking: a quiet pipe or FIFO must not stop the loop */
		if (kr_reader_open(in->path, in->stream, true, &in->reader, err) != KR_OK) {
			in->reader = NULL;
			close_input(in);
			if (!f->follow) {
				kr_log(KR_LOG_ERROR, "source", "msg", "cannot read input", "error", err,
				       NULL);
				kr_source_error(f->h);
			}
			return false;
		}
		struct stat st;
		if (!now.known || attempt == 2 ||
		    (stat(in->path, &st) == 0 && (uint64_t)st.st_dev == now.dev &&
		     (uint64_t)st.st_ino == now.ino))
			break;
		kr_reader_close(in->reader);
		in->reader = NULL;
		close_input(in);
	}
	in->id = now;
	struct stat st;
	in->stdin_ends = strcmp(in->path, "-") == 0 && fstat(0, &st) == 0 &&
			 (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
	return true;
}

static void poll_fire(struct kr_loop *l, struct kr_timer *t, void *arg);

/* The descriptor of an input that had nothing to read became readable (or ended): the wake-up
 * is all it takes, the engine pulls again on its next round. */
static void on_readable(struct kr_loop *l, int fd, unsigned events, void *arg)
{
	(void)events;
	struct file_src *f = arg;
	kr_loop_unwatch(l, fd);
	for (size_t i = 0; i < f->n; i++)
		if (f->in[i].watched && kr_reader_fd(f->in[i].reader) == fd)
			f->in[i].watched = false;
}

/* Input i has nothing to read yet (KR_READ_WAIT): wake up when it has. Where its descriptor
 * cannot be watched, the poll timer looks again. */
static void watch_input(struct file_src *f, struct finput *in)
{
	if (in->watched)
		return;
	if (kr_loop_watch(f->loop, kr_reader_fd(in->reader), KR_IO_READ, on_readable, f) == 0) {
		in->watched = true;
		return;
	}
	if (!f->poll_timer)
		f->poll_timer = kr_timer_new(f->loop, poll_fire, f);
	if (f->poll_timer && !kr_timer_active(f->poll_timer))
		kr_timer_start(f->poll_timer, f->poll_ms);
}

static void unwatch_input(struct file_src *f, struct finput *in)
{
	if (in->watched)
		kr_loop_unwatch(f->loop, kr_reader_fd(in->reader));
	in->watched = false;
}

/* The input's end; false while the engine has paused on a record found there (the next pull
 * resumes it, in step_input, and then finishes again). */
static bool finish_input(struct file_src *f, size_t i)
{
	struct finput *in = &f->in[i];
	unwatch_input(f, in);
	if (in->reader) {
		kr_reader_finish(in->reader);
		if (kr_stream_paused(in->stream))
			return false;
		kr_reader_close(in->reader);
		in->reader = NULL;
		close_input(in);
	}
	return true;
}

static void poll_fire(struct kr_loop *l, struct kr_timer *t, void *arg)
{
	(void)l;
	(void)t;
	(void)arg; /* waking the loop is enough: the engine pulls again */
}

static enum kr_pull file_pull(void *ctx)
{
	struct file_src *f = ctx;
	char err[KR_ERRBUF];
	if (!f->follow) {
		while (f->cur < f->n) {
			struct finput *in = &f->in[f->cur];
			if (!in->reader && !in->finished && !open_input(f, f->cur)) {
				in->finished = true;
				f->cur++;
				continue;
			}
			enum kr_read r = step_input(in, err);
			if (r == KR_READ_MORE)
				return KR_PULL_MORE;
			if (r == KR_READ_WAIT) {
				watch_input(f, in);
				return KR_PULL_WAIT;
			}
			if (r == KR_READ_ERROR) {
				kr_log(KR_LOG_ERROR, "source", "msg", "read error", "error", err, NULL);
				kr_source_error(f->h);
			}
			if (!finish_input(f, f->cur))
				return KR_PULL_MORE;
			in->finished = true;
			f->cur++;
			return KR_PULL_MORE;
		}
		return KR_PULL_DONE;
	}
	uint64_t now = kr_now_ms();
	if (f->nglobs && now >= f->next_scan) {
		rescan(f);
		f->next_scan = now + f->poll_ms;
	}
	bool more = false, open = false;
	for (size_t i = 0; i < f->n; i++) {
		struct finput *in = &f->in[i];
		if (in->finished)
			continue;
		open = true;
		if (!in->reader && !open_input(f, i))
			continue;
		enum kr_read r = step_input(in, err);
		if (r == KR_READ_MORE) {
			more = true;
		} else if (r == KR_READ_WAIT) {
			watch_input(f, in);
		} else if (r == KR_READ_ERROR) {
			kr_log(KR_LOG_ERROR, "source", "msg", "read error", "error", err, NULL);
			more |= !finish_input(f, i);
		} else if (in->stdin_ends) {
			/* like tail -f, which does not follow a pipe: its end is final */
			if (!finish_input(f, i)) {
				more = true;
				continue;
			}
			in->finished = true;
			kr_log(KR_LOG_INFO, "source", "name", f->name, "msg",
			       "standard input (a pipe or socket) ended; it is not followed further",
			       NULL);
			more = true; /* the next pull says whether the source is done */
		} else if (kr_reader_replaced(in->reader)) {
			/* rotated or truncated: what was read is complete, the new file starts over */
			if (finish_input(f, i))
				in->skip = in->done = 0;
			more = true;
		}
	}
	if (more)
		return KR_PULL_MORE;
	if (!open && !f->nglobs)
		return KR_PULL_DONE; /* only a standard input that ended was followed */
	if (!kr_timer_active(f->poll_timer)) {
		if (!f->poll_timer)
			f->poll_timer = kr_timer_new(f->loop, poll_fire, f);
		if (f->poll_timer)
			kr_timer_start(f->poll_timer, f->poll_ms);
	}
	return KR_PULL_WAIT;
}

static void file_ack(void *ctx, const struct kr_ack *a)
{
	struct file_src *f = ctx;
	size_t i = (size_t)(a->id >> 32);
	if (i >= f->n || (uint32_t)a->id != f->in[i].gen)
		return; /* a file read before a rotation: the checkpoint is about the new one */
	uint64_t moved = a->position > f->in[i].done ? a->position - f->in[i].done : 0;
	f->in[i].done = a->position;
	if (f->checkpoint && moved) {
		f->dirty = true;
		/* a kill -9 repeats what was acknowledged but not saved: keep that under a quarter
		   of the in-flight limit, and save what trickles in soon anyway */
		uint64_t every = kr_source_in_flight_limit(f->h) / 4 + 1;
		if ((f->unsaved += moved) >= every) {
			save_checkpoint(f);
			f->unsaved = 0;
		} else if (!kr_timer_active(f->save_timer)) {
			kr_timer_start(f->save_timer, 20);
		}
	}
}

static void file_progress(void *ctx, uint64_t *done, uint64_t *total)
{
	struct file_src *f = ctx;
	uint64_t read = 0;
	for (size_t i = 0; i < f->n; i++) {
		if (f->in[i].finished && f->in[i].size > 0)
			read += (uint64_t)f->in[i].size;
		else if (f->in[i].reader)
			read += kr_reader_offset(f->in[i].reader);
	}
	*done = read < f->bytes_total ? read : f->bytes_total;
	*total = f->bytes_total;
}

static int64_t file_lag(void *ctx)
{
	uint64_t done, total;
	file_progress(ctx, &done, &total);
	return (int64_t)(total - done);
}

static void file_destroy(void *ctx)
{
	struct file_src *f = ctx;
	if (!f)
		return;
	save_checkpoint(f);
	for (size_t i = 0; i < f->n; i++) {
		unwatch_input(f, &f->in[i]);
		kr_reader_close(f->in[i].reader);
		free(f->in[i].path);
	}
	free(f->in);
	for (size_t i = 0; i < f->nglobs; i++)
		free(f->globs[i]);
	free(f->globs);
	kr_timer_free(f->save_timer);
	kr_timer_free(f->poll_timer);
	free(f->checkpoint);
	free(f->window);
	free(f->name);
	free(f);
}

/* How the plugin behaves: `kmsrouter help config TYPE` and kmsrouter.conf(5). */
static const char file_doc[] =
	"Reads each path in turn (\"-\": standard input), in every form AWS delivers or archives "
	"events: JSON Lines, concatenated or pretty-printed JSON objects (as Firehose writes "
	"them, with or without separators), a JSON array of events, SNS notifications (the event "
	"is the notification's Message), EventBridge archives and replays, CloudTrail log files "
	"({\"Records\": [...]}), and gzip of any of these, recognised by its magic bytes whatever "
	"the file's name (several gzip members one after another are read as one stream). A "
	"CloudTrail record is matched as the \"AWS API Call via CloudTrail\" event EventBridge "
	"would deliver for it. A UTF-8 byte order mark where a file starts (also where each "
	"member of a multi-member gzip file starts) is skipped.\n\n"
	"A record that cannot be parsed (such as malformed or truncated JSON, a record over 256 "
	"KiB, invalid UTF-8, not an object, a detail-type or detail of the wrong type) is logged "
	"with its FILE:LINE and goes to invalid_dead_letter (see the top level) when it is set; "
	"the records around it are still read. What a record becomes never depends on how its "
	"bytes arrive (file, pipe, socket).\n\n"
	"Without follow the inputs are read one after another and the source is done at the end "
	"of the last; each glob is expanded once, and one that matches nothing is an error. With "
	"follow, every input is watched like tail -F: at its end the source waits and looks again "
	"every poll_interval_ms; a file that is replaced (rotation) or truncated is finished and "
	"the new one read from its start; and the globs are expanded again every "
	"poll_interval_ms, so a file that starts to match one is read from its beginning (a glob "
	"that matches nothing is then a warning, logged once). Standard input that is a pipe or "
	"a socket is not followed past its end, as tail -f does not (its writers are gone, "
	"nothing more can come): it is finished there, and a source whose paths are only \"-\" "
	"is then done. A pipe, a named FIFO or a terminal with nothing to read holds up nothing "
	"else: the router waits for it beside its other work (a FIFO's input ends, without "
	"follow, when its writer closes it).\n\n"
	"With checkpoint, the number of records done of each input is written to that file (to a "
	"temporary file renamed over it, soon after each acknowledgement) and skipped at the next "
	"start. The checkpoint also identifies each file (device, inode, size, a hash of its "
	"first 4 KiB): a file that grew resumes; one that was replaced, truncated or rewritten "
	"since makes run refuse to start (exit status 2, saying what changed; delete the "
	"checkpoint file to start over), except with follow, where it is taken as a rotation "
	"while kmsrouter was down: that file is read from its beginning, with a warning naming "
	"the change. kmsrouter replay --checkpoint writes the same kind of file, which also "
	"records the --from, --to and --replay-name it was made with.";

const struct kr_source_plugin kr_source_file = {
	.name = "file",
	.description = "reads archived or growing files (any format and envelope), or stdin",
	.doc = file_doc,
	.options = file_options,
	.conf_size = sizeof(struct file_conf),
	.create = file_create,
	.pull = file_pull,
	.ack = file_ack,
	.lag = file_lag,
	.progress = file_progress,
	.destroy = file_destroy,
};
