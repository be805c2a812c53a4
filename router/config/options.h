/* kr_opts: declarative option tables (struct kr_option, see plugin.h) turned into filled,
 * checked C structs, and into the reference `kmsrouter help config` prints.
 *
 * A table lists each option with its type, bounds or allowed values, default, help text and
 * offset in the struct it fills. kr_opts_fill checks a JSON object against the table and fills
 * the struct: every violation is reported as FILE:LINE:COL: $.json.path: message, defaults come
 * from the table (parsed from their JSON text), and what must be allocated (resolved paths,
 * string lists) is owned by a kr_opts_mem that the configuration frees. A plugin's validate hook
 * then checks what a table cannot say, and reports it with kr_opts_reject, which places the error
 * at the option it names. Used while loading a configuration, from the loop thread. */
#ifndef KR_OPTIONS_H
#define KR_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "json.h"
#include "plugin.h"

/* Allocations made while filling option structs; freed together with kr_opts_mem_free. */
struct kr_opts_kept {
	void *p;
	void (*release)(void *);
};
struct kr_opts_mem {
	struct kr_opts_kept *v;
	size_t n, cap;
};
void kr_opts_mem_free(struct kr_opts_mem *m);
/* Keeps p (allocated with malloc) in m; returns p, or NULL (p freed) when out of memory. */
void *kr_opts_keep(struct kr_opts_mem *m, void *p);
/* The same for a JSON tree (freed with kr_json_free). */
struct kr_json *kr_opts_keep_json(struct kr_opts_mem *m, struct kr_json *j);

/* Where a filled object comes from, for error messages and relative paths. */
struct kr_opts_src {
	const char *file;     /* name in messages */
	const char *text;     /* the config's text (NULL: no line and column) */
	size_t len;
	const char *base_dir; /* relative paths resolve against it */
	struct kr_opts_mem *mem;
	/* KR_OPT_SINK: resolves a sink name (j, a string) into *out, or reports why not; NULL
	   where no sink can be named */
	enum kr_err (*sink_ref)(void *ctx, const struct kr_json *j, const char *jpath,
				int32_t *out);
	void *sink_ctx;
	char *err; /* KR_ERRBUF bytes */
	/* the config is not for this machine (match): secrets are not read from the environment
	   and validate hooks leave out what depends on the machine (kr_opts_offline) */
	bool offline;
};

/* Formats an error at node (NULL: no position) as "FILE:LINE:COL: JPATH: message". */
enum kr_err kr_opts_error(const struct kr_opts_src *s, const struct kr_json *node,
			  const char *jpath, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Writes "FILE:LINE:COL: JPATH: MSG" into err (KR_ERRBUF bytes; "FILE: JPATH: MSG" when line is
 * 0) and returns KR_ERR_CONFIG. A path that would leave no room for the message (a key
 * thousands of bytes long) is cut in its middle ("..."), so that the message is always there. */
enum kr_err kr_opts_error_at(char *err, const char *file, size_t line, size_t col,
			     const char *jpath, const char *msg);

/* Fills out from obj (an object whose path is jpath) by table: defaults first, then the values
 * given, each checked. Keys that are not in the table are not looked at (the caller checks the
 * keys it allows). */
enum kr_err kr_opts_fill(const struct kr_opts_src *s, const struct kr_option *table,
			 const struct kr_json *obj, const char *jpath, void *out);

/* The same without defaults: only the keys obj has change out, and keys the table does not
 * have are errors (a rule's target overriding its sink's retry policy). */
enum kr_err kr_opts_update(const struct kr_opts_src *s, const struct kr_option *table,
			   const struct kr_json *obj, const char *jpath, void *out);

/* Fills out with the table's defaults alone. */
enum kr_err kr_opts_defaults(const struct kr_opts_src *s, const struct kr_option *table,
			     void *out);

/* The names of a table's options, for key checks; at most cap, returns how many. */
size_t kr_opts_names(const struct kr_option *table, const char **names, size_t cap);

/* What a validate hook needs to place its errors. */
struct kr_opts_check {
	const struct kr_opts_src *src;
	const struct kr_json *obj;
	const char *jpath;
};

/* Prints the reference of a table: one entry per option with its type, default and help,
 * nested tables indented. */
void kr_opts_print(FILE *f, const struct kr_option *table, int indent);

/* Prints reference text (a plugin's doc: paragraphs separated by "\n\n"), each paragraph after
 * a blank line, filled to width columns at indent. */
void kr_opts_print_doc(FILE *f, const char *doc, int indent, int width);

/* " (did you mean \"x\"?)" for the closest of names, or "". */
void kr_opts_did_you_mean(const char *key, const char *const *names, size_t n, char *out,
			  size_t cap);

/* "a string", "an integer from 1 to 100", ... */
void kr_opts_describe(const struct kr_option *o, char *out, size_t cap);

#endif
