/* The logger (see log.h). Lines are built in a local buffer and written with one write(2), so
 * lines from the metrics thread never interleave with the loop's. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

static bool json_format;
static enum kr_log_level min_level = KR_LOG_INFO;

const char *const kr_log_format_names[] = {"logfmt", "json", NULL};
const char *const kr_log_level_names[] = {"debug", "info", "warn", "error", NULL};

void kr_log_configure(int format, enum kr_log_level level)
{
	json_format = format == 1;
	min_level = level;
}

bool kr_log_is_secret_key(const char *key)
{
	static const char *const words[] = {"secret", "password", "token", "authorization",
					    "api_key", "apikey", "credential", "x-api-key"};
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
		if (strcasestr(key, words[i]))
			return true;
	return false;
}

static void logfmt_value(struct kr_buf *b, const char *v)
{
	bool quote = !*v || strpbrk(v, " =\"\t\n\\") != NULL;
	if (!quote) {
		kr_buf_puts(b, v);
		return;
	}
	kr_buf_json_string(b, v, strlen(v));
}

void kr_log(enum kr_log_level level, const char *component, ...)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};
	if (level < min_level)
		return;
	char stamp[40];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
	struct kr_buf b = {0};
	if (json_format) {
		kr_buf_puts(&b, "{\"time\":\"");
		kr_buf_puts(&b, stamp);
		kr_buf_puts(&b, "\",\"level\":\"");
		kr_buf_puts(&b, names[level]);
		kr_buf_puts(&b, "\",\"component\":");
		kr_buf_json_string(&b, component, strlen(component));
	} else {
		kr_buf_puts(&b, "time=");
		kr_buf_puts(&b, stamp);
		kr_buf_puts(&b, " level=");
		kr_buf_puts(&b, names[level]);
		kr_buf_puts(&b, " component=");
		logfmt_value(&b, component);
	}
	va_list ap;
	va_start(ap, component);
	for (;;) {
		const char *k = va_arg(ap, const char *);
		if (!k)
			break;
		const char *v = va_arg(ap, const char *);
		if (!v)
			v = "";
		if (kr_log_is_secret_key(k))
			v = "[redacted]";
		if (json_format) {
			kr_buf_puts(&b, ",");
			kr_buf_json_string(&b, k, strlen(k));
			kr_buf_puts(&b, ":");
			kr_buf_json_string(&b, v, strlen(v));
		} else {
			kr_buf_puts(&b, " ");
			kr_buf_puts(&b, k);
			kr_buf_puts(&b, "=");
			logfmt_value(&b, v);
		}
	}
	va_end(ap);
	kr_buf_puts(&b, json_format ? "}\n" : "\n");
	if (b.p) {
		ssize_t w = write(2, b.p, b.len);
		(void)w;
	}
	kr_buf_free(&b);
}
