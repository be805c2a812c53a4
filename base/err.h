/* kr_err: the one error enum of kmsrouter.
 *
 * Every function that can fail returns an enum kr_err and, where the caller needs context (file,
 * line, JSON path), fills a caller-owned char buffer of KR_ERRBUF bytes. kr_strerror() names the
 * class; the buffer says where and why. Safe from any thread. */
#ifndef KR_ERR_H
#define KR_ERR_H

#include <stddef.h>

#define KR_ERRBUF 512

enum kr_err {
	KR_OK = 0,
	KR_ERR_NOMEM,     /* allocation failed */
	KR_ERR_IO,        /* read/write/open failed; errno-derived text in the buffer */
	KR_ERR_JSON,      /* malformed JSON */
	KR_ERR_PATTERN,   /* an event pattern EventBridge would reject */
	KR_ERR_CONFIG,    /* a configuration EventBridge-like validation rejects */
	KR_ERR_EVENT,     /* a record that is not a valid event */
	KR_ERR_LIMIT,     /* a size or depth limit was exceeded */
	KR_ERR_USAGE,     /* bad command line */
	KR_ERR_UNAVAILABLE /* recognised but not built into this binary */
};

/* Returns a static string naming the error class. */
const char *kr_strerror(enum kr_err e);

/* snprintf into an error buffer (may be NULL), always NUL-terminated; returns e for tail calls. */
enum kr_err kr_errf(char *buf, enum kr_err e, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
