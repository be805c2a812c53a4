/* Error classes and the formatted error buffer helper (see err.h). */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>

const char *kr_strerror(enum kr_err e)
{
	switch (e) {
	case KR_OK: return "ok";
	case KR_ERR_NOMEM: return "out of memory";
	case KR_ERR_IO: return "i/o error";
	case KR_ERR_JSON: return "malformed JSON";
	case KR_ERR_PATTERN: return "invalid event pattern";
	case KR_ERR_CONFIG: return "invalid configuration";
	case KR_ERR_EVENT: return "invalid event";
	case KR_ERR_LIMIT: return "limit exceeded";
	case KR_ERR_USAGE: return "usage error";
	case KR_ERR_UNAVAILABLE: return "not available in this build";
	}
	return "unknown error";
}

enum kr_err kr_errf(char *buf, enum kr_err e, const char *fmt, ...)
{
	if (buf) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(buf, KR_ERRBUF, fmt, ap);
		va_end(ap);
	}
	return e;
}
