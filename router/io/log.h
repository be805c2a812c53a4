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

/* The values of the config's "log" settings, NULL-terminated: format 0 is logfmt (the
 * default), 1 JSON; a level's index is its enum kr_log_level. */
extern const char *const kr_log_format_names[];
extern const char *const kr_log_level_names[];
void kr_log_configure(int format, enum kr_log_level level);

void kr_log(enum kr_log_level level, const char *component, ...) __attribute__((sentinel));

/* Whether a key names a secret (for redaction). */
bool kr_log_is_secret_key(const char *key);

#endif
