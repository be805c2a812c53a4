/* kmsrouter match: classify every event in the inputs and print one JSON line per event.
 *
 * The rule names and target lists are JSON-encoded once at start; per event the work is the parse,
 * the index lookups and one buffered write. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "config.h"
#include "input.h"
#include "mem.h"
#include "stream.h"

/* Per rule, what its output needs, in 32 bytes: with 10,000 rules a match reads this one line
 * (not the rule's configuration, a name pool and a target list, each a cache miss). */
#define OUT_INLINE 24

struct out_rule {
	uint32_t targets;  /* ntargets == 1: the sink itself; else the first in m->targets */
	uint16_t ntargets;
	uint8_t name_inline; /* the JSON-encoded name is in name[] (else name_off/name_len) */
	uint8_t name_len;
	union {
		char name[OUT_INLINE];
		struct {
			uint32_t name_off, name_len_long;
		};
	};
};

struct match_ctx {
	const struct kr_config *cfg;
	struct kr_match_state *st;
	const char *input;
	struct kr_buf names;  /* every rule and sink name JSON-encoded, one after another */
	struct out_rule *rules;
	uint32_t *targets;      /* the rules' sink lists, one after another */
	uint32_t *sink_off, *sink_len;
	struct kr_buf line;
	/* see on_event */
	const struct kr_view *pending; /* the parsed event: its view, its line's start in side */
	struct kr_buf side;
	bool matched_waiting;          /* the matched event: its rules; its line's start ends line */
	uint32_t *mids;
	size_t nmids, capmids;
	unsigned long long events, matched, invalid;
	bool write_failed;
};

static inline uint32_t out_target(const struct match_ctx *m, const struct out_rule *r, size_t t)
{
	return r->ntargets == 1 ? r->targets : m->targets[r->targets + t];
}

static inline const char *out_name(const struct match_ctx *m, const struct out_rule *r,
				   size_t *len)
{
	if (r->name_inline) {
		*len = r->name_len;
		return r->name;
	}
	*len = r->name_len_long;
	return m->names.p + r->name_off;
}

/* Writes the lines collected so far: straight to the descriptor, as stdio would copy the 64 KiB
 * into its own buffer first (nothing else goes to standard output meanwhile). */
static bool flush_lines(struct match_ctx *m)
{
	struct kr_buf *b = &m->line;
	for (size_t done = 0; done < b->len && !m->write_failed;) {
		ssize_t w = write(STDOUT_FILENO, b->p + done, b->len - done);
		if (w > 0)
			done += (size_t)w;
		else if (w < 0 && errno != EINTR)
			m->write_failed = true;
	}
	b->len = 0;
	return !m->write_failed;
}

/* Room for n more bytes in b: the usual case, there is, takes no call. */
static inline bool room(struct kr_buf *b, size_t n)
{
	return b->cap - b->len >= n || kr_buf_reserve(b, n);
}

/* Appends n bytes known to fit (room() was called for them). */
static inline char *put(char *o, const void *src, size_t n)
{
	memcpy(o, src, n);
	return o + n;
}

#define PUT(o, lit) put((o), (lit), sizeof(lit) - 1)

/* The line ends at o with its targets' "]": closes it and counts it; the lines go out every
 * 64 KiB. */
static bool line_ended(struct match_ctx *m, char *o, size_t nrules)
{
	struct kr_buf *b = &m->line;
	o = PUT(o, "]}\n");
	b->len = (size_t)(o - b->p);
	m->events++;
	if (nrules)
		m->matched++;
	return b->len < 64 * 1024 || flush_lines(m);
}

/* Ends the line of the matched event (its "{"id":...,"rules":[" ends the buffer): the names of
 * its rules and of their sinks. */
static bool write_tail(struct match_ctx *m)
{
	const uint32_t *ids = m->mids;
	size_t n = m->nmids;
	m->matched_waiting = false;
	struct kr_buf *b = &m->line;
	if (n == 0 || (n == 1 && m->rules[ids[0]].ntargets == 1)) {
		/* nearly every line: no rule, or one rule with one sink */
		const struct out_rule *r = n ? &m->rules[ids[0]] : NULL;
		size_t len = 0, slen = r ? m->sink_len[r->targets] : 0;
		const char *name = r ? out_name(m, r, &len) : NULL;
		if (!room(b, sizeof "],\"targets\":[]}\n" + len + slen)) {
			fprintf(stderr, "kmsrouter: out of memory\n");
			return false;
		}
		char *o = b->p + b->len;
		if (r)
			o = put(o, name, len);
		o = PUT(o, "],\"targets\":[");
		if (r)
			o = put(o, m->names.p + m->sink_off[r->targets], slen);
		return line_ended(m, o, n);
	}
	size_t need = sizeof "],\"targets\":[]}\n";
	for (size_t i = 0; i < n; i++) {
		const struct out_rule *r = &m->rules[ids[i]];
		size_t len;
		out_name(m, r, &len);
		need += len + 1;
		for (size_t t = 0; t < r->ntargets; t++)
			need += m->sink_len[out_target(m, r, t)] + 1;
	}
	if (!room(b, need)) {
		fprintf(stderr, "kmsrouter: out of memory\n");
		return false;
	}
	char *o = b->p + b->len;
	for (size_t i = 0; i < n; i++) {
		if (i)
			*o++ = ',';
		size_t len;
		const char *name = out_name(m, &m->rules[ids[i]], &len);
		o = put(o, name, len);
	}
	o = PUT(o, "],\"targets\":[");
	/* one entry per delivery: a sink that several rules (or several target entries of one
	   rule) deliver to appears once for each, as run delivers to it once for each */
	bool first = true;
	for (size_t i = 0; i < n; i++) {
		const struct out_rule *r = &m->rules[ids[i]];
		for (size_t t = 0; t < r->ntargets; t++) {
			uint32_t si = out_target(m, r, t);
			if (!first)
				*o++ = ',';
			o = put(o, m->names.p + m->sink_off[si], m->sink_len[si]);
			first = false;
		}
	}
	return line_ended(m, o, n);
}

/* Matches the parsed event: its rules' output entries start loading (kr_match_state_prefetch)
 * and its line's beginning moves from the side buffer to the end of the lines. */
static bool match_pending(struct match_ctx *m)
{
	const uint32_t *ids;
	size_t n = kr_rules_match(m->cfg->compiled, m->st, m->pending, &ids);
	m->pending = NULL;
	if (n > m->capmids) {
		uint32_t *a = realloc(m->mids, n * sizeof *a);
		if (!a) {
			fprintf(stderr, "kmsrouter: out of memory\n");
			return false;
		}
		m->mids = a;
		m->capmids = n;
	}
	if (n)
		memcpy(m->mids, ids, n * sizeof *ids);
	m->nmids = n;
	m->matched_waiting = true;
	struct kr_buf *l = &m->line;
	if (!room(l, m->side.len)) {
		fprintf(stderr, "kmsrouter: out of memory\n");
		return false;
	}
	l->len = (size_t)(put(l->p + l->len, m->side.p, m->side.len) - l->p);
	m->side.len = 0;
	return true;
}

/* Each event in the stages moves on by one: the matched one's line is ended, the parsed one is
 * matched. */
static bool advance(struct match_ctx *m)
{
	return (!m->matched_waiting || write_tail(m)) && (!m->pending || match_pending(m));
}

/* Every line written so far, in order. */
static bool drain(struct match_ctx *m)
{
	return advance(m) && (!m->matched_waiting || write_tail(m));
}

/* Events go through two stages one event apart, each waiting for memory the previous one asked
 * for early: an event is matched when the next one arrives (the index entries of its values,
 * prefetched while it was parsed, have come from memory; its view is intact, see
 * kr_event.view), and its line is ended when the one after arrives (the output entries of its
 * rules, prefetched when they matched, have come too). Its id is encoded at once, into a side
 * buffer that joins the lines when the event is matched. */
static int on_event(void *vctx, const struct kr_event *ev)
{
	struct match_ctx *m = vctx;
	if (!advance(m))
		return 1;
	/* the id is escaped at worst as \u00XX per byte */
	struct kr_buf *b = &m->side;
	if (!room(b, sizeof "{\"id\":null,\"rules\":[" + 6 * ev->id_len)) {
		fprintf(stderr, "kmsrouter: out of memory\n");
		return 1;
	}
	char *o = b->p;
	o = PUT(o, "{\"id\":");
	if (!ev->id) {
		o = PUT(o, "null");
	} else if (ev->id_plain) { /* the usual case: as it was in the input */
		*o++ = '"';
		o = put(o, ev->id, ev->id_len);
		*o++ = '"';
	} else {
		o = kr_json_string_to(o, ev->id, ev->id_len);
	}
	o = PUT(o, ",\"rules\":[");
	b->len = (size_t)(o - b->p);
	m->pending = ev->view;
	return 0;
}

static int on_invalid(void *vctx, const struct kr_invalid *inv)
{
	struct match_ctx *m = vctx;
	if (!drain(m))
		return 1;
	m->invalid++;
	fprintf(stderr, "%s:%llu: %s\n", m->input, (unsigned long long)inv->line, inv->message);
	return 0;
}

static const char help[] =
	"usage: kmsrouter match -c CONFIG [FILE...]\n\n"
	"Reads events from each FILE (standard input when none, or for \"-\"), in any of the forms\n"
	"AWS delivers or archives them: JSON Lines, concatenated or pretty-printed JSON objects, a\n"
	"JSON array, a CloudTrail log file ({\"Records\": [...]}), SNS notifications, any of them\n"
	"gzip-compressed. For every event prints one line:\n"
	"  {\"id\":...,\"rules\":[matching rule names],\"targets\":[the sink of each delivery]}\n"
	"where targets has one entry per target entry of each matching rule, in order, so a sink\n"
	"appears as often as run would deliver the event to it.\n"
	"Invalid records are reported on stderr as FILE:LINE: message and skipped.\n\n"
	"  -c, --config FILE   the configuration (its rules and sinks are used)\n"
	"  --max-record BYTES  largest record accepted (default 262144)\n\n"
	"Exit status: 0 some event matched and every record was valid; 1 no event matched or some\n"
	"record was invalid; 2 usage or configuration error, or an input could not be read.\n";

/* Appends name JSON-encoded to the pool, recording where it lies. */
static bool encode(struct kr_buf *pool, const char *name, uint32_t *off, uint32_t *len)
{
	size_t before = pool->len;
	if (!kr_buf_json_string(pool, name, strlen(name)))
		return false;
	*off = (uint32_t)before;
	*len = (uint32_t)(pool->len - before);
	return true;
}

int kr_cmd_match(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"max-record", required_argument, NULL, 'm'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *config = NULL;
	struct kr_stream_opts so = {.no_time = true}; /* the lines have no time */
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config = optarg;
			break;
		case 'm': {
			uint64_t v;
			if (!kr_cli_positive(optarg, &v)) {
				fprintf(stderr, "kmsrouter match: --max-record needs a positive number of bytes\n");
				return KR_EXIT_USAGE;
			}
			so.max_record = (size_t)v;
			break;
		}
		case 'h':
			fputs(help, stdout);
			return KR_EXIT_OK;
		default:
			fputs(help, stderr);
			return KR_EXIT_USAGE;
		}
	}
	if (!config) {
		fprintf(stderr, "kmsrouter match: -c CONFIG is required\n\n%s", help);
		return KR_EXIT_USAGE;
	}
	char err[KR_ERRBUF] = "";
	struct kr_config *cfg;
	if (kr_config_load_offline(config, &cfg, err) != KR_OK) {
		fprintf(stderr, "kmsrouter: %s\n", err);
		return KR_EXIT_USAGE;
	}
	int status = KR_EXIT_USAGE;
	struct match_ctx m = {.cfg = cfg};
	struct kr_stream *s = NULL;
	m.st = kr_match_state_new(cfg->compiled);
	size_t ntargets = 0;
	for (size_t i = 0; i < cfg->nrules; i++)
		ntargets += cfg->rules[i].ntargets;
	/* read at random, one entry per matching rule: in huge pages from 256 KiB (8,000 rules) on */
	size_t rules_bytes = (cfg->nrules + 1) * sizeof *m.rules;
	m.rules = kr_big_alloc(rules_bytes, 64, KR_HUGE_PAGE / 8);
	if (m.rules)
		memset(m.rules, 0, rules_bytes);
	m.targets = calloc(ntargets + 1, sizeof *m.targets);
	m.sink_off = calloc(cfg->nsinks + 1, sizeof *m.sink_off);
	m.sink_len = calloc(cfg->nsinks + 1, sizeof *m.sink_len);
	bool ok = m.st && m.rules && m.targets && m.sink_off && m.sink_len;
	/* with thousands of rules their entries are not in the cache: the matcher starts loading
	   each as soon as its rule matches, while it goes on with the event */
	if (ok)
		kr_match_state_prefetch(m.st, m.rules, sizeof *m.rules);
	ntargets = 0;
	for (size_t i = 0; ok && i < cfg->nrules; i++) {
		const struct kr_rule_cfg *r = &cfg->rules[i];
		struct out_rule *o = &m.rules[i];
		uint32_t off, len;
		ok = encode(&m.names, r->name, &off, &len) && r->ntargets <= UINT16_MAX;
		if (len <= OUT_INLINE) {
			o->name_inline = 1;
			o->name_len = (uint8_t)len;
			memcpy(o->name, m.names.p + off, len);
		} else {
			o->name_off = off;
			o->name_len_long = len;
		}
		o->ntargets = (uint16_t)r->ntargets;
		o->targets = r->ntargets == 1 ? r->targets[0] : (uint32_t)ntargets;
		for (size_t t = 0; ok && r->ntargets != 1 && t < r->ntargets; t++)
			m.targets[ntargets++] = r->targets[t];
	}
	for (size_t i = 0; ok && i < cfg->nsinks; i++)
		ok = encode(&m.names, cfg->sinks[i].name, &m.sink_off[i], &m.sink_len[i]);
	struct kr_stream_callbacks cb = {.event = on_event, .invalid = on_invalid};
	if (!ok || kr_stream_new(kr_rules_paths(cfg->compiled), &so, &cb, &m, &s) != KR_OK) {
		fprintf(stderr, "kmsrouter: out of memory\n");
		goto out;
	}
	bool read_error = false;
	char *stdin_only[] = {"-"};
	char **files = optind < argc ? argv + optind : stdin_only;
	int nfiles = optind < argc ? argc - optind : 1;
	for (int i = 0; i < nfiles && !m.write_failed; i++) {
		m.input = files[i];
		enum kr_err e = kr_input_read(s, files[i], err);
		if (!drain(&m))
			e = e ? e : KR_ERR_NOMEM;
		if (e != KR_OK && !m.write_failed) {
			flush_lines(&m);
			fflush(stdout);
			fprintf(stderr, "kmsrouter: %s\n", err[0] ? err : kr_strerror(e));
			read_error = true;
		}
	}
	if (!flush_lines(&m) || fflush(stdout) != 0 || m.write_failed) {
		fprintf(stderr, "kmsrouter: error writing the output\n");
		read_error = true;
	}
	if (read_error)
		status = KR_EXIT_USAGE;
	else if (m.invalid || !m.matched)
		status = KR_EXIT_NOMATCH;
	else
		status = KR_EXIT_OK;
out:
	kr_stream_free(s);
	kr_buf_free(&m.names);
	free(m.rules);
	free(m.targets);
	free(m.sink_off);
	free(m.sink_len);
	kr_buf_free(&m.line);
	kr_buf_free(&m.side);
	free(m.mids);
	kr_match_state_free(m.st);
	kr_config_free(cfg);
	return status;
}
