/* file source: archived or growing files, and standard input.
 *
 * Reads each path ("-" for stdin) in every format the parsers read, through kr_reader, one chunk
 * per pull so other sources and deliveries get their turn. Without "follow" the inputs are read
 * one after another and the source is done at the end of the last; a glob is expanded once, and
 * one that matches nothing is an error. With "follow", every input is watched like tail -F: at
 * its end the source waits and polls; when the path is replaced (rotation) or truncated, the old
 * file is finished and the new one read from its start; and every poll_interval_ms the globs are
 * expanded again, so a file that starts to match one is read from its beginning (a glob that
 * matches nothing is warned about once, not an error). With "checkpoint", the number of records
 * done per input is saved (atomically, soon after each acknowledgement) and skipped on the next
 * start. */
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "input.h"
#include "json.h"
#include "log.h"
#include "loop.h"
#include "plugin.h"

struct finput {
	char *path;
	struct kr_reader *reader;
	struct kr_stream *stream;
	bool finished;     /* read to the end and ended (not follow) */
	uint64_t done;     /* records acknowledged */
	uint64_t skip;     /* from the checkpoint */
	int64_t size;
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
	bool dirty;
	uint64_t unsaved; /* acknowledgements since the last save */
	struct kr_timer *save_timer;
	struct kr_timer *poll_timer;
	uint64_t bytes_total;
};

static const struct kr_option file_options[] = {
	{.name = "paths", .type = KR_OPT_STRINGS, .required = true,
	 .help = "files or globs to read, \"-\" for standard input"},
	{.name = "follow", .type = KR_OPT_BOOL, .def = "false",
	 .help = "keep reading as the files grow, across rotation, and read files that start to "
		 "match the globs (like tail -F)"},
	{.name = "poll_interval_ms", .type = KR_OPT_INT, .def = "250",
	 .help = "how often a followed file at its end, and the globs, are looked at again"},
	{.name = "checkpoint", .type = KR_OPT_STRING,
	 .help = "file that records how far each input was delivered, to resume from"},
	{0},
};

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

static void save_checkpoint(struct file_src *f)
{
	if (!f->checkpoint || !f->dirty)
		return;
	struct kr_buf b = {0};
	bool ok = kr_buf_puts(&b, "{\"version\":1,\"inputs\":[");
	for (size_t i = 0; i < f->n && ok; i++) {
		char num[64];
		snprintf(num, sizeof num, ",\"records\":%llu}", (unsigned long long)f->in[i].done);
		ok = (i == 0 || kr_buf_puts(&b, ",")) && kr_buf_puts(&b, "{\"path\":") &&
		     kr_buf_json_string(&b, f->in[i].path, strlen(f->in[i].path)) &&
		     kr_buf_puts(&b, num);
	}
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
			kr_log(KR_LOG_ERROR, "source", "msg", "cannot write the checkpoint", "path",
			       f->checkpoint, "error", strerror(errno), NULL);
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

static void load_checkpoint(struct file_src *f)
{
	char *text;
	size_t len;
	char err[KR_ERRBUF];
	if (access(f->checkpoint, F_OK) != 0 || kr_read_file(f->checkpoint, &text, &len, err))
		return;
	struct kr_json *doc = NULL;
	size_t off;
	if (kr_json_parse(text, len, NULL, &doc, &off, err) == KR_OK) {
		const struct kr_json *ins = kr_json_get(doc, "inputs");
		for (size_t i = 0; ins && ins->type == KR_JSON_ARRAY && i < ins->n; i++) {
			const struct kr_json *p = kr_json_get(ins->items[i], "path"),
					     *r = kr_json_get(ins->items[i], "records");
			if (!p || p->type != KR_JSON_STRING || !r || r->type != KR_JSON_NUMBER)
				continue;
			for (size_t k = 0; k < f->n; k++)
				if (strcmp(f->in[k].path, p->str) == 0)
					f->in[k].skip = f->in[k].done = (uint64_t)r->num;
		}
	} else {
		kr_log(KR_LOG_WARN, "source", "msg", "ignoring an unreadable checkpoint", "path",
		       f->checkpoint, "error", err, NULL);
	}
	kr_json_free(doc);
	free(text);
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
		return add_input(f, p);
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
		kr_engine_source_error(f->h);
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
	f->follow = kr_opt_bool(a->obj, "follow", false);
	f->poll_ms = kr_opt_int(a->obj, "poll_interval_ms", 250);
	const char *cp = kr_opt_string(a->obj, "checkpoint", NULL);
	if (cp && !(f->checkpoint = kr_resolve_path(a->base_dir, cp))) {
		file_destroy(f);
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	}
	const struct kr_json *paths = kr_json_get(a->obj, "paths");
	size_t np = paths->type == KR_JSON_ARRAY ? paths->n : 1;
	for (size_t i = 0; i < np; i++) {
		const char *given = paths->type == KR_JSON_ARRAY ? paths->items[i]->str : paths->str;
		char *p = kr_resolve_path(a->base_dir, given);
		int added = p ? add_path(f, p) : -1;
		free(p);
		if (added != 0) {
			file_destroy(f);
			return kr_errf(err, KR_ERR_NOMEM, "out of memory");
		}
	}
	f->save_timer = kr_timer_new(a->loop, save_fire, f);
	if (!f->save_timer) {
		file_destroy(f);
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	}
	if (f->checkpoint)
		load_checkpoint(f);
	f->next_scan = kr_now_ms() + f->poll_ms;
	*ctx = f;
	return KR_OK;
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

/* Opens input i (again); false when it cannot be opened now. */
static bool open_input(struct file_src *f, size_t i)
{
	struct finput *in = &f->in[i];
	char err[KR_ERRBUF];
	in->stream = kr_engine_input_begin(f->h, (uint32_t)i, in->path, in->skip);
	if (!in->stream)
		return false;
	if (kr_reader_open(in->path, in->stream, &in->reader, err) != KR_OK) {
		in->reader = NULL;
		if (!f->follow) {
			kr_log(KR_LOG_ERROR, "source", "msg", "cannot read input", "error", err, NULL);
			kr_engine_source_error(f->h);
		}
		return false;
	}
	return true;
}

static void finish_input(struct file_src *f, size_t i)
{
	struct finput *in = &f->in[i];
	if (in->reader) {
		kr_reader_finish(in->reader);
		kr_reader_close(in->reader);
		in->reader = NULL;
		kr_engine_input_end(f->h, (uint32_t)i);
	}
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
			if (r == KR_READ_ERROR) {
				kr_log(KR_LOG_ERROR, "source", "msg", "read error", "error", err, NULL);
				kr_engine_source_error(f->h);
			}
			finish_input(f, f->cur);
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
	bool more = false;
	for (size_t i = 0; i < f->n; i++) {
		struct finput *in = &f->in[i];
		if (!in->reader && !open_input(f, i))
			continue;
		enum kr_read r = step_input(in, err);
		if (r == KR_READ_MORE) {
			more = true;
		} else if (r == KR_READ_ERROR) {
			kr_log(KR_LOG_ERROR, "source", "msg", "read error", "error", err, NULL);
			finish_input(f, i);
		} else if (kr_reader_replaced(in->reader)) {
			/* rotated or truncated: what was read is complete, the new file starts over */
			finish_input(f, i);
			in->skip = in->done = 0;
			more = true;
		}
	}
	if (more)
		return KR_PULL_MORE;
	if (!kr_timer_active(f->poll_timer)) {
		if (!f->poll_timer)
			f->poll_timer = kr_timer_new(f->loop, poll_fire, f);
		if (f->poll_timer)
			kr_timer_start(f->poll_timer, f->poll_ms);
	}
	return KR_PULL_WAIT;
}

static void file_ack(void *ctx, uint32_t input, uint64_t position)
{
	struct file_src *f = ctx;
	if (input >= f->n)
		return;
	f->in[input].done = position;
	if (f->checkpoint) {
		f->dirty = true;
		/* a kill -9 repeats what was acknowledged but not saved: keep that under a quarter
		   of the in-flight limit, and save what trickles in soon anyway */
		uint64_t every = kr_engine_in_flight_limit(f->h) / 4 + 1;
		if (++f->unsaved >= every) {
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
	free(f->name);
	free(f);
}

const struct kr_source_plugin kr_source_file = {
	.name = "file",
	.description = "reads archived or growing files (any format and envelope), or stdin",
	.options = file_options,
	.create = file_create,
	.pull = file_pull,
	.ack = file_ack,
	.lag = file_lag,
	.progress = file_progress,
	.destroy = file_destroy,
};
