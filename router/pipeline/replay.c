/* What replay adds to the engine (see engine_int.h): the time window of --from/--to, the
 * "replay-name" of --replay-name, and the token bucket of --rate that holds matched records
 * back until they may be routed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_int.h"

/* The digits of s[0..n) as a number, or -1 when one is not a digit. */
static int digits(const char *s, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar (H. Hinnant's
 * days_from_civil); a day past the month's end runs on into the next, as timegm takes it. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* YYYY-MM-DDTHH:MM:SS at s, each field its exact number of digits and in the range strptime's
 * "%Y-%m-%dT%H:%M:%S" takes (an event's time has this shape): its tm fields in seconds since
 * the epoch (UTC, as timegm), or -1 to leave the text to strptime. */
static int64_t plain_seconds(const char *s)
{
	if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
		return -1;
	int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2), h = digits(s + 11, 2),
	    mi = digits(s + 14, 2), sec = digits(s + 17, 2);
	if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 ||
	    mi > 59 || sec < 0 || sec > 61)
		return -1;
	return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
}

/* An RFC 3339 time of n bytes in ms since the epoch, or -1 (see kr_parse_rfc3339_ms). */
int64_t eng_parse_time_ms(const char *s, size_t n)
{
	char buf[64];
	if (!s || n >= sizeof buf || n < 20)
		return -1;
	memcpy(buf, s, n);
	buf[n] = 0;
	struct tm tm = {0};
	int64_t plain = plain_seconds(buf);
	char *rest = plain >= 0 ? buf + 19 : strptime(buf, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!rest)
		return -1;
	int64_t ms = 0;
	if (*rest == '.') {
		rest++;
		int64_t scale = 100;
		while (*rest >= '0' && *rest <= '9') {
			ms += (*rest - '0') * scale;
			scale /= 10;
			rest++;
		}
	}
	int64_t off = 0;
	if (*rest == '+' || *rest == '-') {
		int hh, mm;
		if (sscanf(rest + 1, "%2d:%2d", &hh, &mm) != 2)
			return -1;
		off = (hh * 3600 + mm * 60) * (*rest == '-' ? -1 : 1);
	} else if (*rest != 'Z' && *rest != 'z') {
		return -1;
	}
	return ((plain >= 0 ? plain : (int64_t)timegm(&tm)) - off) * 1000 + ms;
}

int64_t kr_parse_rfc3339_ms(const char *s)
{
	return eng_parse_time_ms(s, strlen(s));
}

/* raw with "replay-name": name as its first member (a new string, length in *outlen), or NULL. */
char *eng_with_replay_name(const char *raw, size_t len, const char *name, size_t *outlen)
{
	const char *open = memchr(raw, '{', len);
	if (!open)
		return NULL;
	size_t head = (size_t)(open - raw) + 1;
	if (head > len)
		return NULL;
	size_t tail = len - head;
	const char *rest = open + 1;
	size_t j = 0;
	while (j < tail && (rest[j] == ' ' || rest[j] == '\n' || rest[j] == '\r' || rest[j] == '\t'))
		j++;
	bool empty = j < tail && rest[j] == '}';
	struct kr_buf b = {0};
	if (!kr_buf_append(&b, raw, head) || !kr_buf_puts(&b, "\"replay-name\":") ||
	    !kr_buf_json_string(&b, name, strlen(name)) || (!empty && !kr_buf_puts(&b, ",")) ||
	    !kr_buf_append(&b, rest, tail)) {
		kr_buf_free(&b);
		return NULL;
	}
	*outlen = b.len;
	return b.p;
}

/* Queues a matched record for replay --rate: routed when a token is free (eng_release_ready).
 * False when out of memory. */
bool eng_ready_push(struct kr_engine *e, struct gen *g, struct record *r, const uint32_t *ids,
		    size_t n)
{
	if (e->nready == e->capready) {
		size_t cap = e->capready ? e->capready * 2 : 1024;
		struct ready *q = malloc(cap * sizeof *q);
		if (!q)
			return false;
		for (size_t i = 0; i < e->nready; i++)
			q[i] = e->ready[(e->ready_head + i) % e->capready];
		free(e->ready);
		e->ready = q;
		e->capready = cap;
		e->ready_head = 0;
	}
	struct ready *q = &e->ready[(e->ready_head + e->nready) % e->capready];
	q->r = r;
	q->gen = g;
	q->n = n;
	q->ids = n ? malloc(n * sizeof *ids) : NULL;
	if (n && !q->ids)
		return false;
	if (n)
		memcpy(q->ids, ids, n * sizeof *ids);
	g->refs++;
	e->nready++;
	return true;
}

void eng_release_ready(struct kr_engine *e)
{
	if (!e->opts.rate || !e->nready)
		return;
	uint64_t now = kr_now_ms();
	e->tokens += (double)(now - e->tokens_at) * (double)e->opts.rate / 1000.0;
	e->tokens_at = now;
	if (e->tokens > (double)e->opts.rate)
		e->tokens = (double)e->opts.rate;
	while (e->nready && e->tokens >= 1.0) {
		struct ready q = e->ready[e->ready_head];
		e->ready_head = (e->ready_head + 1) % e->capready;
		e->nready--;
		e->tokens -= 1.0;
		eng_route(e, q.gen, q.r, q.ids, q.n);
		free(q.ids);
		eng_gen_unref(e, q.gen);
	}
}

