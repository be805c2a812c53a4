/* What replay adds to the engine (see engine_int.h): the time window of --from/--to, the
 * "replay-name" of --replay-name, and the token bucket of --rate that holds matched records
 * back until they may be routed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_int.h"

/* An RFC 3339 time of n bytes in ms since the epoch, or -1 (see kr_parse_rfc3339_ms). */
int64_t eng_parse_time_ms(const char *s, size_t n)
{
	char buf[64];
	if (!s || n >= sizeof buf || n < 20)
		return -1;
	memcpy(buf, s, n);
	buf[n] = 0;
	struct tm tm = {0};
	char *rest = strptime(buf, "%Y-%m-%dT%H:%M:%S", &tm);
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
	return ((int64_t)timegm(&tm) - off) * 1000 + ms;
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

