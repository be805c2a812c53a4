/* kr_log: one line per event of note on stderr, in logfmt (default) or JSON, with a level.
 *
 * kr_log(KR_LOG_WARN, "sink", "name", "page", "msg", "delivery failed", NULL) takes key/value
 * string pairs ending with NULL. Values of keys that name secrets (containing "secret",
 * "password", "token", "authorization", "api_key", "credential") are replaced by "[redacted]"
 * here, in one place, so no call site can leak one. Used from the loop thread (and from the
 * metrics thread only through kr_log, which writes each line with one write call). */
#ifndef KR_LOG_H
#define KR_LOG_H

#include <stdbool.h>

enum kr_log_level { KR_LOG_DEBUG, KR_LOG_INFO, KR_LOG_WARN, KR_LOG_ERROR };

/* format: "logfmt" or "json"; level: "debug", "info", "warn", "error". Returns false when a
 * name is not known. */
bool kr_log_configure(const char *format, const char *level);

void kr_log(enum kr_log_level level, const char *component, ...) __attribute__((sentinel));

/* Whether a key names a secret (for redaction). */
bool kr_log_is_secret_key(const char *key);

#endif
