/* Stream splitting, envelope unwrapping and event views in one yajl pass (see stream.h).
 *
 * A pstate is one yajl parse with its stack of frames. The outer pstate runs over the stream with
 * yajl_allow_multiple_values, so top-level values follow each other without separators; a record
 * is a top-level object, an element of a top-level array, or an element of a CloudTrail log's
 * "Records" array. The inner pstate parses an SNS notification's Message string.
 *
 * The fast path: a top-level object that lies whole in the input is parsed by kr_lex (lex.h)
 * instead, which makes the same callbacks with the same offsets as yajl in fewer instructions
 * (bench/match.sh: match went from 0.77 to 1.28 times the speed of yajl parsing alone); whatever
 * it declines (any other value, bad input, an object too big or cut off at the
 * end of the input) goes to yajl as before, so yajl alone decides what is an error and says so.
 *
 * After a bad record the outer yajl handle is discarded and a small byte scanner (the skipper)
 * finds where to start again; inside a top-level array or a CloudTrail log, the new handle is first
 * fed a synthetic opening ("[" or {"Records":[) so that the remaining elements parse as before.
 *
 * Nothing here may depend on where the chunks of input begin and end. Two rules see to that:
 * yajl is never fed past the byte at which a value in a record's place (a record, or a scalar
 * where a record belongs) that is still open becomes too big, so the oversized check always
 * happens at that byte; and everything a report needs (a record's first byte, its line, its bytes
 * up to max_record) is kept in the buffer, or copied before it is dropped, until it is reported. */
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "json.h"
#include "lex.h"
#include "utf8.h"

#define WINDOW (1u << 20)

enum container { C_NONE, C_ARRAY, C_CLOUDTRAIL };

enum special {
	SP_NONE,
	SP_ID,
	SP_DETAIL_TYPE,
	SP_DETAIL,
	SP_TIME,
	SP_TYPE,
	SP_MESSAGE,
	SP_RECORDS,
	CT_EVENT_ID,
	CT_EVENT_TIME,
	CT_EVENT_SOURCE,
	CT_EVENT_TYPE,
	CT_REGION,
	CT_RECIPIENT,
	CT_USER_IDENTITY,
	CT_UI_ACCOUNT,
	NSPECIAL
};

/* Where a key the parser reads itself is: a record's own key, a CloudTrail record's own key, or
 * a key of a CloudTrail record's userIdentity. */
enum key_level { KL_RECORD, KL_CLOUDTRAIL, KL_CT_USER_IDENTITY };

/* When it counts: only where envelopes are read (the outer parse, not --raw-events-only), not
 * with no_time, only in a top-level record. */
enum { KW_ENVELOPES = 1, KW_TIME = 2, KW_TOP_RECORD = 4 };

/* Every key the parser reads itself: the event's own fields it reports or checks, the fields of
 * the envelopes (below, envelopes[]) and of the CloudTrail log. A new envelope adds its keys
 * here, with a capture slot each in enum special. */
static const struct special_key {
	const char *key;
	uint8_t len;
	uint8_t level; /* enum key_level */
	uint8_t when;  /* KW_* */
	uint8_t sp;    /* enum special */
} special_keys[] = {
#define K(lit, level, when, sp) {lit, sizeof(lit) - 1, level, when, sp}
	K("id", KL_RECORD, 0, SP_ID),
	K("time", KL_RECORD, KW_TIME, SP_TIME),
	K("detail", KL_RECORD, 0, SP_DETAIL),
	K("detail-type", KL_RECORD, 0, SP_DETAIL_TYPE),
	/* an SNS notification */
	K("Type", KL_RECORD, KW_ENVELOPES, SP_TYPE),
	K("Message", KL_RECORD, KW_ENVELOPES, SP_MESSAGE),
	/* a CloudTrail log, and its records */
	K("Records", KL_RECORD, KW_ENVELOPES | KW_TOP_RECORD, SP_RECORDS),
	K("eventID", KL_CLOUDTRAIL, 0, CT_EVENT_ID),
	K("eventTime", KL_CLOUDTRAIL, 0, CT_EVENT_TIME),
	K("eventType", KL_CLOUDTRAIL, 0, CT_EVENT_TYPE),
	K("awsRegion", KL_CLOUDTRAIL, 0, CT_REGION),
	K("eventSource", KL_CLOUDTRAIL, 0, CT_EVENT_SOURCE),
	K("userIdentity", KL_CLOUDTRAIL, 0, CT_USER_IDENTITY),
	K("recipientAccountId", KL_CLOUDTRAIL, 0, CT_RECIPIENT),
	K("accountId", KL_CT_USER_IDENTITY, 0, CT_UI_ACCOUNT),
#undef K
};

/* A record's own keys come in much the same order from one event to the next: the key seen at
 * position i of the previous record, with what it resolved to, answers the key at position i of
 * this one after one comparison. One cache per record level (what a key means to the parser
 * depends on it): top-level records and SNS Messages, elements of a top-level array, and
 * CloudTrail records, whose level is "detail" in the trie. */
#define KC_KEYS 24
#define KC_KEYMAX 23

struct kc_ent {
	const struct kr_path_node *node;
	int8_t len; /* -1: empty */
	uint8_t special, mspecial;
	char key[KC_KEYMAX];
};

/* One open object or array. The flags let the callbacks' hot paths (an ordinary field inside a
 * record) decide with one or two byte tests; anything else goes to the slow paths, which hold the
 * whole logic. frames[-1] is a sentinel for depth 0 with every slow flag set. */
struct frame {
	const struct kr_path_node *node;  /* container's trie node */
	const struct kr_path_node *vnode; /* node of the next value: the current key's child in an
					     object, node itself in an array */
	uint32_t arr_id, idx;
	uint32_t nkeys;                   /* counted in keys_slow frames only */
	uint8_t is_array;
	uint8_t special;                  /* objects: what the current key is to the parser */
	uint8_t mspecial;                 /* the same, for an object as the key's value: SP_NONE
					     for "detail", whose object is an ordinary field */
	uint8_t slow;                     /* values here are not ordinary fields of a record */
	uint8_t keys_slow;                /* keys here may be special (a record's own keys) */
	uint8_t end_slow;                 /* closing this frame ends a record or a top-level value */
	uint8_t trail_pushed;
	struct kc_ent *kc;                /* a record's own frame: its key cache (see kc_ent) */
};

struct kr_stream;

struct pstate {
	struct kr_stream *s;
	yajl_handle h;
	/* h's callbacks: yajl_string is NULL while the next string can only be one no rule and no
	   envelope reads (see strings_after_key), so yajl neither calls us for it nor decodes it */
	yajl_callbacks cbs;
	bool inner;
	struct frame *frames;
	struct frame *cur; /* frames[depth - 1]: the sentinel frames[-1] at depth 0 */
	unsigned depth;
	enum container container;
	bool in_record;
	unsigned ev_depth;
	uint64_t rec_start;
	uint64_t resync_at;   /* set with cancel_msg: go on at this offset, at the top level */
	const char *rec_bad;
	uint64_t feed_base;
	bool lexing; /* lex, not yajl (h), is making the callbacks (see lex_run, parse_sns) */
	struct kr_lex lex;
	uint32_t next_arr_id;
	uint32_t *trail;
	uint32_t ntrail;
	struct kc_ent kc[3][KC_KEYS]; /* by ev_depth */
	const char *cancel_msg; /* why a callback stopped the parse; NULL: consumer asked to stop */
	bool stop;              /* the consumer asked to stop */
	bool quiet;             /* a synthetic opening is being parsed (restart_outer) */
	bool pause;             /* the consumer asked to pause after the record that just ended */
	uint64_t pause_at;
	char msg[160];
};

enum skip_state { SK_OFF, SK_VALUE, SK_SCALAR, SK_AFTER_ELEM, SK_AFTER_CT_ARRAY, SK_RESYNC };

struct kr_stream {
	const struct kr_paths *paths;
	const struct kr_path_node *root, *detail_node;
	struct kr_stream_callbacks cb;
	void *ctx;
	size_t max_record;
	unsigned max_depth;
	bool raw_only;
	bool no_time;
	bool no_lex;
	/* two views, used in turn from one emitted event to the next: an event's view stays intact
	   while the next event is parsed (see kr_event.view) */
	struct kr_view views[2];
	struct kr_view *view; /* the one being filled */

	struct pstate outer, inner;

	/* input buffer: buf[0] is stream offset abs_base; fed = offset up to which input was handled */
	char *buf;
	size_t len, cap;
	bool external;
	uint64_t abs_base, fed;

	/* lines: counted once per chunk as it arrives (kr_scan_lines), so positions cost nothing
	 * until a bad record asks for its line */
	uint64_t base_line; /* line number at offset abs_base */
	uint64_t nl_total;  /* newlines in the input up to abs_base + len */
	uint64_t hi_end;    /* input before this offset may hold bytes >= 0x80: a record starting
			       before it gets the strict UTF-8 check; all-ASCII input needs none */
	uint64_t last_top_end;
	uint64_t last_elem_end; /* in the array that holds the records (a top-level array or a
				   CloudTrail log's Records): where its last element ended, or just
				   after its '[' */

	/* The gap after the last value where records are (after last_top_end at the top level, after
	 * last_elem_end in the array of records), looked at after each yajl call: whitespace, and in
	 * the array one ','. Its first other byte starts a value that has not ended yet (yajl holds a
	 * scalar that spans calls), or junk: either way where a bad record there starts. The state is
	 * that of the gap from gap_from (at the level gap_elem); another gap_from starts it afresh. */
	uint64_t gap_from, gap_pos; /* [gap_from, gap_pos) was looked at */
	uint64_t gap_nl;            /* newlines in it */
	uint64_t gap_tok;           /* with gap_tok_open: the first byte of the value in the gap */
	bool gap_elem, gap_comma, gap_tok_open;
	/* the line of last_elem_end when it is cut_at, noted when the array of records closes */
	uint64_t cut_at, cut_line;

	/* a byte order mark at bom_at (a file starts there) is skipped when bom_pending */
	bool bom_pending;
	uint64_t bom_at;

	/* a bad record's report waits until the skipper has found where the record ends */
	bool pend;
	bool pend_copied; /* its first max_record bytes are in pend_copy, no longer kept in buf */
	bool pend_cut;    /* when nothing but separators turns out to be bad, report the cut point
			     pend_cut_at (an array or a log broken off after an element) */
	uint64_t pend_start, pend_line, pend_cut_at, pend_cut_line;
	struct kr_buf pend_copy;
	char pend_msg[256];

	bool paused; /* a consumer's pause: input from fed on waits for kr_stream_resume */
	bool ending; /* kr_stream_end was called: a resume goes on with the end */
	enum container resume_in; /* the pause came after an element of this container */

	/* skipper */
	enum skip_state sk;
	uint64_t sk_pos;
	uint64_t sk_last; /* just after the last byte of the bad record seen so far (not whitespace,
			     not the separators after an element) */
	uint64_t sk_vend; /* in an array: where the skipped element ended, */
	uint64_t sk_nl;   /* and the newlines between it and sk_pos */
	unsigned sk_depth;
	bool sk_str, sk_esc;
	enum container sk_container;

	/* bit (first byte & 63) of special_mask[length & 15] is set for every key key_special
	   knows: the others skip it */
	uint64_t special_mask[16];

	/* captured fields of the current record */
	struct kr_buf cap_buf[NSPECIAL];
	bool has[NSPECIAL];
	bool plain[NSPECIAL]; /* yajl passed the value straight from buf: it had no escape, and it
				 is left there, at offset cap_at (the record it is in is kept) */
	uint64_t cap_at[NSPECIAL];
	struct kr_buf built; /* SNS message copy / CloudTrail event */

	struct kr_stream_stats stats;
};

static const yajl_callbacks callbacks;

/* Whitespace as yajl's lexer has it (with \v and \f). */
static bool is_ws(char c)
{
	return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f';
}

/* ---- positions ---- */

static const char *at(const struct kr_stream *s, uint64_t abs)
{
	return s->buf + (abs - s->abs_base);
}

static uint64_t count_nl(const char *p, const char *end)
{
	uint64_t n = 0;
	while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		n++;
		p++;
	}
	return n;
}

/* The 1-based line of offset abs (counted from the nearer end of the buffer); an offset whose
 * bytes were dropped gets the line of the oldest byte still held. */
static uint64_t line_of(const struct kr_stream *s, uint64_t abs)
{
	uint64_t end = s->abs_base + s->len;
	if (abs < s->abs_base)
		return s->base_line;
	if (abs > end)
		abs = end;
	if (abs - s->abs_base <= end - abs)
		return s->base_line + count_nl(at(s, s->abs_base), at(s, abs));
	return 1 + s->nl_total - count_nl(at(s, abs), at(s, end));
}

/* New input [abs_base + len, + n) arrived: count its lines, note non-ASCII bytes. */
static void scan_input(struct kr_stream *s, size_t n)
{
	bool high = false;
	s->nl_total += kr_scan_lines(s->buf + s->len, n, &high);
	if (high)
		s->hi_end = s->abs_base + s->len + n;
}

/* ---- reporting ---- */

/* Reports the size bytes at start as a bad record: with its bytes as kr_invalid.raw says (from
 * buf, or from pend_copy when they were dropped since). */
static int report_invalid_at(struct kr_stream *s, uint64_t start, uint64_t line, uint64_t size,
			     const char *msg)
{
	struct kr_invalid inv = {.offset = start, .line = line, .size = size, .message = msg};
	uint64_t want = size;
	if (want > s->max_record)
		want = s->max_record < KR_INVALID_PREFIX ? s->max_record : KR_INVALID_PREFIX;
	if (want && start >= s->abs_base && start + want <= s->abs_base + s->len) {
		inv.raw = at(s, start);
		inv.raw_len = (size_t)want;
	} else if (want && s->pend_copied && start == s->pend_start && want <= s->pend_copy.len) {
		inv.raw = s->pend_copy.p;
		inv.raw_len = (size_t)want;
	}
	s->stats.invalid++;
	int rc = s->cb.invalid ? s->cb.invalid(s->ctx, &inv) : 0;
	return rc == KR_STREAM_PAUSE ? 0 : rc;
}

/* A bad record [start, end) that is in the buffer. */
static int report_invalid(struct kr_stream *s, uint64_t start, uint64_t end, const char *msg)
{
	return report_invalid_at(s, start, line_of(s, start), end - start, msg);
}

/* The skipper found the end of the bad record (parsing goes on at end): report it, up to the last
 * byte that belongs to it (sk_last). */
static int report_pending(struct kr_stream *s, uint64_t end)
{
	if (!s->pend)
		return 0;
	s->pend = false;
	uint64_t start = s->pend_start, line = s->pend_line;
	uint64_t stop = s->sk_last < end ? s->sk_last : end;
	uint64_t size = stop > start ? stop - start : 0;
	if (!size && s->pend_cut) {
		start = s->pend_cut_at;
		line = s->pend_cut_line;
	}
	int rc = report_invalid_at(s, start, line, size, s->pend_msg);
	s->pend_copied = false;
	s->pend_copy.len = 0;
	return rc;
}

/* A bad record at start, to be reported when the skipper has found its end; its bytes are kept
 * until then (see kr_stream_reserve). */
static void pend_begin(struct kr_stream *s, uint64_t start, uint64_t line, const char *msg)
{
	s->pend = true;
	s->pend_start = start;
	s->pend_line = line;
	s->pend_cut = false;
	s->pend_copied = false;
	s->pend_copy.len = 0;
	snprintf(s->pend_msg, sizeof s->pend_msg, "%s", msg);
}

/* ---- the gap between the values where records are ---- */

/* Whether the parse is between the values where records are, and if so where the gap after the
 * last one starts (*base) and whether that is in the array of records (*elem). */
static bool gap_level(const struct kr_stream *s, const struct pstate *p, uint64_t *base,
		      bool *elem)
{
	if (!p->h || p->in_record)
		return false;
	if (p->depth == 0) {
		*base = s->last_top_end;
		*elem = false;
		return true;
	}
	if ((p->container == C_ARRAY && p->depth == 1) ||
	    (p->container == C_CLOUDTRAIL && p->depth == 2 && p->frames[0].special == SP_RECORDS)) {
		*base = s->last_elem_end;
		*elem = true;
		return true;
	}
	return false;
}

static void gap_sync(struct kr_stream *s, uint64_t base, bool elem)
{
	if (s->gap_from == base && s->gap_elem == elem)
		return;
	s->gap_from = s->gap_pos = base;
	s->gap_elem = elem;
	s->gap_nl = 0;
	s->gap_comma = s->gap_tok_open = false;
}

/* A gap in the array of records whose first pos - from bytes were looked at elsewhere (nl
 * newlines among them). comma: a ',' was among them, or none may come (after the '['). */
static void gap_set(struct kr_stream *s, uint64_t from, uint64_t pos, uint64_t nl, bool comma)
{
	s->gap_from = from;
	s->gap_pos = pos;
	s->gap_nl = nl;
	s->gap_elem = true;
	s->gap_comma = comma;
	s->gap_tok_open = false;
}

/* Looks at the gap up to offset upto (bytes the parse has consumed, held in buf). Returns whether
 * a value (or junk) starts in it, at gap_tok. */
static bool gap_scan(struct kr_stream *s, uint64_t upto)
{
	if (s->gap_tok_open)
		return true;
	uint64_t i = s->gap_pos;
	for (; i < upto; i++) {
		char c = *at(s, i);
		if (c == '\n')
			s->gap_nl++;
		else if (is_ws(c))
			continue;
		else if (c == ',' && s->gap_elem && !s->gap_comma)
			s->gap_comma = true;
		else {
			s->gap_tok = i;
			s->gap_tok_open = true;
			break;
		}
	}
	s->gap_pos = i;
	return s->gap_tok_open;
}

/* Where the value that yajl has just found in the gap (it ends at end) starts. */
static uint64_t gap_value_start(struct kr_stream *s, const struct pstate *p, uint64_t end,
				uint64_t fallback)
{
	uint64_t base;
	bool elem;
	if (!gap_level(s, p, &base, &elem))
		return fallback;
	gap_sync(s, base, elem);
	return gap_scan(s, end) ? s->gap_tok : fallback;
}

/* The line of last_elem_end, the cut point of a broken array of records. */
static uint64_t cut_line(const struct kr_stream *s)
{
	uint64_t cut = s->last_elem_end;
	if (cut >= s->abs_base)
		return line_of(s, cut);
	if (s->gap_elem && s->gap_from == cut && s->gap_pos >= s->abs_base)
		return line_of(s, s->gap_pos) - s->gap_nl;
	if (s->cut_at == cut)
		return s->cut_line;
	return s->base_line;
}

/* ---- pstate ---- */

static void kc_clear(struct pstate *p)
{
	for (int c = 0; c < 3; c++)
		for (int i = 0; i < KC_KEYS; i++)
			p->kc[c][i].len = -1;
}

static int pstate_open(struct kr_stream *s, struct pstate *p, bool inner)
{
	p->s = s;
	p->inner = inner;
	if (!p->frames) {
		struct frame *base = calloc(s->max_depth + 3, sizeof *base);
		p->trail = calloc(2 * (s->max_depth + 2), sizeof *p->trail);
		if (!base || !p->trail) {
			free(base);
			return -1;
		}
		base->slow = base->keys_slow = base->end_slow = 1;
		p->frames = base + 1;
	}
	if (p->h)
		yajl_free(p->h);
	p->cbs = callbacks;
	p->h = yajl_alloc(&p->cbs, NULL, p);
	if (!p->h)
		return -1;
	if (!inner)
		yajl_config(p->h, yajl_allow_multiple_values, 1);
	p->depth = 0;
	p->cur = p->frames - 1;
	p->container = C_NONE;
	p->in_record = false;
	p->ntrail = 0;
	kc_clear(p);
	p->cancel_msg = NULL;
	p->resync_at = 0;
	p->stop = false;
	return 0;
}

static void pstate_close(struct pstate *p)
{
	if (p->h)
		yajl_free(p->h);
	p->h = NULL;
	free(p->frames ? p->frames - 1 : NULL);
	free(p->trail);
	kr_lex_free(&p->lex);
	p->frames = NULL;
	p->trail = NULL;
}

static inline uint64_t tok_end(struct pstate *p)
{
	return p->feed_base + (p->lexing ? p->lex.off : yajl_get_bytes_consumed(p->h));
}

static int cancel(struct pstate *p, const char *msg)
{
	p->cancel_msg = msg;
	return 0;
}

static void begin_record(struct pstate *p, uint64_t start, unsigned ev_depth)
{
	struct kr_stream *s = p->s;
	p->in_record = true;
	p->rec_start = start;
	p->ev_depth = ev_depth;
	p->rec_bad = NULL;
	p->next_arr_id = 0;
	p->ntrail = 0;
	kr_view_reset(s->view);
	memset(s->has, 0, sizeof s->has);
}

/* A value that is not in buf (decoded by yajl or straddling two chunks): copied. */
static __attribute__((noinline)) void capture_copy(struct kr_stream *s, enum special sp,
						   const char *v, size_t n)
{
	struct kr_buf *b = &s->cap_buf[sp];
	s->has[sp] = true;
	s->plain[sp] = false;
	if (n < b->cap) { /* the buffer from an earlier record is usually big enough */
		memcpy(b->p, v, n);
		b->p[n] = 0;
		b->len = n;
		return;
	}
	b->len = 0;
	if (!kr_buf_append(b, v, n))
		s->has[sp] = false;
}

/* Keeps a value the parser looks at where it is, when it is in buf (see plain): false when it
 * is not. A string with an escape in it comes from yajl's own buffer (decoded), as does one that
 * straddles two of our chunks. */
static inline bool capture_in_buf(struct kr_stream *s, enum special sp, const char *v, size_t n)
{
	uintptr_t d = (uintptr_t)v - (uintptr_t)s->buf;
	if (__builtin_expect(d >= s->len, 0))
		return false;
	s->has[sp] = true;
	s->plain[sp] = true;
	s->cap_at[sp] = s->abs_base + d;
	s->cap_buf[sp].len = n;
	return true;
}

static inline void capture(struct kr_stream *s, enum special sp, const char *v, size_t n)
{
	if (!capture_in_buf(s, sp, v, n))
		capture_copy(s, sp, v, n);
}

/* A captured value (cap_buf[sp].len bytes, not NUL-terminated), or NULL when the record has
 * none (plain and cap_at are then left from an earlier record). */
static inline const char *cap_text(const struct kr_stream *s, enum special sp)
{
	if (!s->has[sp])
		return NULL;
	return s->plain[sp] ? at(s, s->cap_at[sp]) : s->cap_buf[sp].p;
}

static bool cap_is(const struct kr_stream *s, enum special sp, const char *lit)
{
	size_t n = strlen(lit);
	return s->has[sp] && s->cap_buf[sp].len == n && memcmp(cap_text(s, sp), lit, n) == 0;
}

/* ---- envelopes ----
 * What a record holds, and what the parser makes of it when the record ends: the first entry
 * whose test holds unwraps it, and a record no test claims is an EventBridge event as it is.
 * Each entry names the captured fields that are its event's id and time. A new envelope is one
 * entry here, and its keys in special_keys. */
typedef int unwrap_fn(struct kr_stream *s, struct pstate *p, uint64_t start, uint64_t end);
static unwrap_fn emit_event, emit_cloudtrail, parse_sns;
static bool is_cloudtrail_record(const struct kr_stream *s, const struct pstate *p);
static bool is_sns_notification(const struct kr_stream *s, const struct pstate *p);

static const struct envelope {
	uint8_t id, time; /* enum special */
	bool (*holds)(const struct kr_stream *s, const struct pstate *p);
	unwrap_fn *unwrap;
} envelopes[] = {
	/* by enum kr_envelope */
	[KR_ENV_CLOUDTRAIL] = {CT_EVENT_ID, CT_EVENT_TIME, is_cloudtrail_record, emit_cloudtrail},
	[KR_ENV_SNS] = {SP_ID, SP_TIME, is_sns_notification, parse_sns},
	[KR_ENV_EVENT] = {SP_ID, SP_TIME, NULL, emit_event},
};

static int emit(struct kr_stream *s, struct pstate *p, const char *raw, size_t raw_len,
		enum kr_envelope env, uint64_t offset)
{
	struct kr_event ev = {.raw = raw, .raw_len = raw_len, .offset = offset, .envelope = env,
			      .view = s->view};
	enum special idsp = envelopes[env].id, timesp = envelopes[env].time;
	if (s->has[idsp]) {
		ev.id = cap_text(s, idsp);
		ev.id_len = s->cap_buf[idsp].len;
		ev.id_plain = s->plain[idsp];
	}
	if (s->has[timesp]) {
		ev.time = cap_text(s, timesp);
		ev.time_len = s->cap_buf[timesp].len;
	}
	s->stats.events++;
	int rc = s->cb.event ? s->cb.event(s->ctx, &ev) : 0;
	/* the consumer may still read this event's view during the next event */
	s->view = s->view == &s->views[0] ? &s->views[1] : &s->views[0];
	if (rc == KR_STREAM_PAUSE) {
		p->pause = true;
	} else if (rc != 0) {
		p->stop = true;
		return -1;
	}
	return 0;
}

static int emit_event(struct kr_stream *s, struct pstate *p, uint64_t start, uint64_t end)
{
	return emit(s, p, at(s, start), (size_t)(end - start), KR_ENV_EVENT, start);
}

/* A record of a CloudTrail log's Records array. */
static bool is_cloudtrail_record(const struct kr_stream *s, const struct pstate *p)
{
	(void)s;
	return p->ev_depth == 2;
}

/* The EventBridge event EventBridge delivers for a CloudTrail record. */
static int emit_cloudtrail(struct kr_stream *s, struct pstate *p, uint64_t start, uint64_t end)
{
	static const char *const dtypes[][2] = {
		{"AwsApiCall", "AWS API Call via CloudTrail"},
		{"AwsServiceEvent", "AWS Service Event via CloudTrail"},
		{"AwsConsoleAction", "AWS Console Action via CloudTrail"},
		{"AwsConsoleSignIn", "AWS Console Sign In via CloudTrail"},
	};
	const char *dtype = dtypes[0][1];
	for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
		if (cap_is(s, CT_EVENT_TYPE, dtypes[i][0]))
			dtype = dtypes[i][1];
	char source[128] = "aws.";
	if (s->has[CT_EVENT_SOURCE]) {
		const char *es = cap_text(s, CT_EVENT_SOURCE);
		const char *dot = memchr(es, '.', s->cap_buf[CT_EVENT_SOURCE].len);
		size_t n = dot ? (size_t)(dot - es) : s->cap_buf[CT_EVENT_SOURCE].len;
		if (n > sizeof source - 5)
			n = sizeof source - 5;
		memcpy(source + 4, es, n);
		source[4 + n] = 0;
	} else {
		source[0] = 0;
	}
	enum special account = s->has[CT_RECIPIENT] ? CT_RECIPIENT : CT_UI_ACCOUNT;
	struct {
		const char *key;
		const char *val;
		size_t len;
		bool present;
	} f[] = {
		{"version", "0", 1, true},
		{"id", cap_text(s, CT_EVENT_ID), s->cap_buf[CT_EVENT_ID].len, s->has[CT_EVENT_ID]},
		{"detail-type", dtype, strlen(dtype), true},
		{"source", source, strlen(source), source[0] != 0},
		{"account", cap_text(s, account), s->cap_buf[account].len, s->has[account]},
		{"time", cap_text(s, CT_EVENT_TIME), s->cap_buf[CT_EVENT_TIME].len,
		 s->has[CT_EVENT_TIME]},
		{"region", cap_text(s, CT_REGION), s->cap_buf[CT_REGION].len, s->has[CT_REGION]},
	};
	struct kr_buf *b = &s->built;
	b->len = 0;
	bool ok = kr_buf_puts(b, "{");
	for (size_t i = 0; i < sizeof f / sizeof f[0] && ok; i++) {
		if (!f[i].present)
			continue;
		ok = kr_buf_puts(b, "\"") && kr_buf_puts(b, f[i].key) && kr_buf_puts(b, "\":") &&
		     kr_buf_json_string(b, f[i].val, f[i].len) && kr_buf_puts(b, ",");
		int32_t slot = kr_path_slot(kr_path_child(s->root, f[i].key, strlen(f[i].key)));
		if (slot >= 0)
			kr_view_add(s->view, (uint32_t)slot, KR_V_STRING, f[i].val, f[i].len, NULL, 0);
	}
	ok = ok && kr_buf_puts(b, "\"resources\":[],\"detail\":") &&
	     kr_buf_append(b, at(s, start), (size_t)(end - start)) && kr_buf_puts(b, "}");
	if (!ok)
		return report_invalid(s, start, end, "out of memory building the CloudTrail event");
	return emit(s, p, b->p, b->len, KR_ENV_CLOUDTRAIL, start);
}

static int end_record(struct pstate *p, uint64_t end)
{
	struct kr_stream *s = p->s;
	p->in_record = false;
	if (p->inner)
		return 1; /* parse_sns looks at the result */
	s->last_elem_end = end;
	uint64_t start = p->rec_start;
	size_t bad;
	int rc;
	/* no record gets here bigger than max_record: process() stops feeding at the byte where an
	   open one becomes too big (cut_oversized) */
	if (p->rec_bad)
		rc = report_invalid(s, start, end, p->rec_bad);
	else if (start < s->hi_end && !kr_utf8_valid(at(s, start), (size_t)(end - start), &bad)) {
		snprintf(p->msg, sizeof p->msg,
			 "invalid UTF-8 (overlong form, surrogate or beyond U+10FFFF) at byte %zu of the record",
			 bad);
		rc = report_invalid(s, start, end, p->msg);
	} else {
		const struct envelope *env = &envelopes[KR_ENV_EVENT];
		for (size_t i = 0; i < sizeof envelopes / sizeof *envelopes; i++)
			if (envelopes[i].holds && envelopes[i].holds(s, p)) {
				env = &envelopes[i];
				break;
			}
		rc = env->unwrap(s, p, start, end);
	}
	if (rc == KR_STREAM_PAUSE) {
		p->pause = true;
		rc = 0;
	}
	if (rc) {
		p->stop = true;
		return 0;
	}
	if (p->pause) {
		p->pause_at = end;
		return 0; /* yajl stops here; process() goes on from pause_at when resumed */
	}
	return 1;
}

/* ---- callbacks ---- */

static inline struct frame *top(struct pstate *p)
{
	return p->depth ? &p->frames[p->depth - 1] : NULL;
}

static inline const struct kr_path_node *value_node(struct pstate *p)
{
	struct frame *f = top(p);
	if (!f)
		return NULL;
	return f->vnode;
}

/* A scalar, a map or an array is starting at depth p->depth. Returns what it is. */
enum vrole { VR_FIELD, VR_RECORD, VR_BAD_RECORD, VR_CONTAINER_JUNK };

static enum vrole role(struct pstate *p, bool is_map)
{
	if (p->inner)
		return p->depth == 0 ? (is_map ? VR_RECORD : VR_BAD_RECORD) : VR_FIELD;
	if (p->depth == 0)
		return is_map ? VR_RECORD : VR_BAD_RECORD;
	if (p->container == C_ARRAY && p->depth == 1)
		return is_map ? VR_RECORD : VR_BAD_RECORD;
	if (p->container == C_CLOUDTRAIL) {
		/* in the Records array; other members of the log are no records */
		if (p->depth == 2 && p->frames[0].special == SP_RECORDS)
			return is_map ? VR_RECORD : VR_BAD_RECORD;
		if (p->depth == 1)
			return VR_CONTAINER_JUNK;
	}
	return VR_FIELD;
}

/* The value of a key the parser itself looks at (f->special) inside a record: checked, or kept. */
static inline void special_value(struct pstate *p, const struct frame *f, enum kr_vtype t,
				 const char *v, size_t n)
{
	struct kr_stream *s = p->s;
	switch (f->special) {
	case SP_NONE:
		break;
	case SP_DETAIL_TYPE:
		if (t != KR_V_STRING && !s->raw_only)
			p->rec_bad = "detail-type must be a string";
		break;
	case SP_DETAIL:
		if (!s->raw_only)
			p->rec_bad = "detail must be a JSON object";
		break;
	case SP_MESSAGE:
		if (t == KR_V_STRING)
			capture(s, SP_MESSAGE, v, n);
		break;
	case CT_USER_IDENTITY:
		break;
	default:
		if (t == KR_V_STRING)
			capture(s, (enum special)f->special, v, n);
	}
}

/* Kept out of line so that the callbacks' common case, a value no rule reads, saves no
 * registers. */
static __attribute__((noinline)) int add_field(struct pstate *p, int32_t slot, enum kr_vtype t,
					       const char *v, size_t n)
{
	kr_view_add(p->s->view, (uint32_t)slot, t, v, n, p->trail, p->ntrail);
	return 1;
}

/* special_value and the field's recording: the general case of scalar_special. */
static __attribute__((noinline)) int special_slow(struct pstate *p, enum kr_vtype t, const char *v,
						  size_t n)
{
	const struct frame *f = p->cur;
	special_value(p, f, t, v, n);
	const struct kr_path_node *node = f->vnode;
	if (node && node->slot >= 0)
		kr_view_add(p->s->view, (uint32_t)node->slot, t, v, n, p->trail, p->ntrail);
	return 1;
}

/* A special key's value in a record's own object (id, time, detail-type, ...): what scalar_slow
 * does for it, without working out where it is. The usual cases (a string to keep, found in buf;
 * a string detail-type) take no call but the tail call that records a field. */
static __attribute__((noinline)) int scalar_special(struct pstate *p, enum kr_vtype t,
						    const char *v, size_t n)
{
	const struct frame *f = p->cur;
	struct kr_stream *s = p->s;
	unsigned sp = f->special;
	if (t != KR_V_STRING || sp == SP_DETAIL || sp == CT_USER_IDENTITY)
		return special_slow(p, t, v, n);
	if (sp != SP_DETAIL_TYPE && !capture_in_buf(s, (enum special)sp, v, n))
		return special_slow(p, t, v, n);
	const struct kr_path_node *node = f->vnode;
	if (node && node->slot >= 0)
		return add_field(p, node->slot, t, v, n);
	return 1;
}

/* A value outside the hot path: at or above a record's level, or the value of a key that the
 * parser itself looks at. */
static __attribute__((noinline)) int scalar_slow(struct pstate *p, enum kr_vtype t, const char *v,
						 size_t n, size_t toklen)
{
	struct kr_stream *s = p->s;
	struct frame *f = top(p);
	/* a frame that is not slow is inside a record: its values are fields */
	enum vrole r = f && !f->slow ? VR_FIELD : role(p, false);
	if (r == VR_CONTAINER_JUNK)
		return 1;
	if (r == VR_BAD_RECORD) {
		if (p->inner) {
			p->rec_bad = "the SNS Message is not a JSON object";
			return 1;
		}
		if (p->quiet)
			return 1;
		uint64_t end = tok_end(p);
		uint64_t start = gap_value_start(s, p, end, end >= toklen ? end - toklen : end);
		if (report_invalid(s, start, end, "record is not a JSON object"))
			p->stop = true;
		if (p->depth == 0)
			s->last_top_end = end;
		else
			s->last_elem_end = end;
		return !p->stop;
	}
	if (!p->in_record)
		return 1;
	if (f && !f->is_array)
		special_value(p, f, t, v, n);
	const struct kr_path_node *node = value_node(p);
	int32_t slot = kr_path_slot(node);
	if (slot >= 0)
		kr_view_add(s->view, (uint32_t)slot, t, v, n, p->trail, p->ntrail);
	if (f && f->is_array)
		f->idx++;
	return 1;
}


/* The hot path: an ordinary field inside a record. */
static inline int scalar(struct pstate *p, enum kr_vtype t, const char *v, size_t n, size_t toklen)
{
	struct frame *f = p->cur;
	if (__builtin_expect(f->slow | f->special, 0))
		return f->slow ? scalar_slow(p, t, v, n, toklen) : scalar_special(p, t, v, n);
	const struct kr_path_node *node = f->vnode;
	f->idx++;
	if (node && node->slot >= 0)
		return add_field(p, node->slot, t, v, n);
	return 1;
}

static int cb_null(void *ctx)
{
	return scalar(ctx, KR_V_NULL, "", 0, 4);
}

static int cb_bool(void *ctx, int b)
{
	return scalar(ctx, b ? KR_V_TRUE : KR_V_FALSE, "", 0, b ? 4 : 5);
}

static int cb_number(void *ctx, const char *v, size_t n)
{
	return scalar(ctx, KR_V_NUMBER, v, n, n);
}

static int cb_string(void *ctx, const unsigned char *v, size_t n)
{
	return scalar(ctx, KR_V_STRING, (const char *)v, n, n + 2);
}

/* Whether yajl passes on the strings that come next (see pstate.cbs). In an array: when a rule
 * reads something in it, or outside a record. After a key: when the parser looks at its value,
 * a rule reads it, or outside a record. A value that is an object or array sets its own, and
 * closing it sets the array around it back. */
static inline void strings_in_array(struct pstate *p, const struct frame *f)
{
	p->cbs.yajl_string = f->slow || f->node ? cb_string : NULL;
}

static inline void strings_after_key(struct pstate *p, const struct frame *f)
{
	const struct kr_path_node *vn = f->vnode;
	p->cbs.yajl_string = f->slow || f->special || (vn && vn->slot >= 0) ? cb_string : NULL;
}

/* f, an object or array, is an element of the array parent: what lies below it belongs to one
 * element (its trail). */
static inline void push_element(struct pstate *p, const struct frame *parent, struct frame *f)
{
	p->trail[p->ntrail++] = parent->arr_id;
	p->trail[p->ntrail++] = parent->idx;
	f->trail_pushed = 1;
}

/* Pushes a frame from the slow path, working out its flags from the parse state. */
static void push_frame(struct pstate *p, struct frame *parent, const struct kr_path_node *node,
		       bool is_map, bool push_trail)
{
	struct frame *f = &p->frames[p->depth++];
	p->cur = f;
	f->node = node;
	f->vnode = is_map ? NULL : node;
	f->is_array = !is_map;
	f->special = f->mspecial = SP_NONE;
	f->nkeys = 0;
	f->idx = 0;
	f->trail_pushed = 0;
	if (!is_map)
		f->arr_id = p->next_arr_id++;
	unsigned rel = p->depth - p->ev_depth; /* the keys' rel in key_special */
	bool field = p->in_record && p->depth > p->ev_depth;
	f->slow = !field;
	bool own_keys = is_map && p->in_record &&
			(rel == 1 || (rel == 2 && p->ev_depth == 2 && !p->inner));
	/* an object outside a record too: cb_map_key's common path takes its frame for a field's */
	f->keys_slow = own_keys || (is_map && f->slow);
	f->end_slow = !field || rel == 1;
	/* a record's own frame; the key cache holds for the trie node it was filled from */
	f->kc = own_keys && rel == 1 && (node == p->s->root || node == p->s->detail_node)
			? p->kc[p->ev_depth < 2 ? p->ev_depth : 2]
			: NULL;
	if (push_trail && node)
		push_element(p, parent, f);
}

/* An object at the top level: a record, the usual case of open_container_slow, with what
 * push_frame works out for it written down. */
static __attribute__((noinline)) int record_at_top(struct pstate *p)
{
	struct kr_stream *s = p->s;
	begin_record(p, tok_end(p) - 1, 0);
	struct frame *f = &p->frames[0];
	p->depth = 1;
	p->cur = f;
	f->node = s->root;
	f->vnode = NULL;
	f->is_array = 0;
	f->special = f->mspecial = SP_NONE;
	f->nkeys = 0;
	f->idx = 0;
	f->trail_pushed = 0;
	f->slow = 0;
	f->keys_slow = f->end_slow = 1;
	f->kc = p->kc[0];
	return 1;
}

static __attribute__((noinline)) int open_container_slow(struct pstate *p, bool is_map)
{
	struct kr_stream *s = p->s;
	if (p->depth == 0 && is_map && !p->inner)
		return record_at_top(p);
	if (p->depth >= s->max_depth) {
		snprintf(p->msg, sizeof p->msg, "nesting deeper than the maximum depth of %u",
			 s->max_depth);
		return cancel(p, p->msg);
	}
	struct frame *parent = top(p);
	enum vrole r = parent && !parent->slow ? VR_FIELD : role(p, is_map);
	uint64_t start = r == VR_FIELD ? 0 : tok_end(p) - 1;
	const struct kr_path_node *node = NULL;
	bool push_trail = false;
	if (r == VR_RECORD && p->container == C_CLOUDTRAIL && start > s->abs_base &&
	    *at(s, start - 1) == '\n') {
		/* CloudTrail writes its logs on one line (or indented): an object at the start of a
		 * line is the next record of the stream, and the log before it was cut short */
		p->resync_at = start;
		return cancel(p, "truncated CloudTrail log (a line starting with '{' begins inside it)");
	}
	if (r == VR_RECORD) {
		begin_record(p, start, p->depth);
		node = p->container == C_CLOUDTRAIL ? s->detail_node : s->root;
	} else if (r == VR_BAD_RECORD) {
		if (!is_map && p->depth == 0 && !p->inner && !s->raw_only) {
			p->container = C_ARRAY; /* a top-level array holds the records */
			s->last_elem_end = start + 1;
			gap_set(s, start + 1, start + 1, 0, true);
		} else {
			begin_record(p, start, p->depth);
			p->rec_bad = p->inner ? "the SNS Message is not a JSON object"
					      : "record is not a JSON object";
		}
	} else if (r == VR_FIELD && p->in_record) {
		node = value_node(p);
		if (parent && !parent->is_array) {
			switch (parent->special) {
			case SP_DETAIL_TYPE:
				if (!s->raw_only)
					p->rec_bad = "detail-type must be a string";
				break;
			case SP_DETAIL:
				if (!is_map && !s->raw_only)
					p->rec_bad = "detail must be a JSON object";
				break;
			case SP_RECORDS:
				if (!is_map && parent->nkeys == 1 && p->depth == 1 && !p->inner &&
				    !s->raw_only) {
					/* {"Records": [ ... ]}: a CloudTrail log, its elements are records */
					p->in_record = false;
					p->container = C_CLOUDTRAIL;
					s->last_elem_end = tok_end(p);
					gap_set(s, s->last_elem_end, s->last_elem_end, 0, true);
					node = NULL;
					parent->node = NULL;
					parent->vnode = NULL;
					parent->slow = 1;
				}
				break;
			default:
				break;
			}
		}
		push_trail = parent && parent->is_array;
	}
	push_frame(p, parent, node, is_map, push_trail);
	if (!is_map)
		strings_in_array(p, p->cur);
	return 1;
}

/* The hot path: an ordinary object or array inside a record. */
static inline int open_container(struct pstate *p, bool is_map)
{
	struct frame *parent = p->cur;
	if (__builtin_expect((parent->slow | (is_map ? parent->mspecial : parent->special)) != 0 ||
				     p->depth >= p->s->max_depth,
			     0))
		return open_container_slow(p, is_map);
	const struct kr_path_node *node = parent->vnode;
	struct frame *f = parent + 1;
	p->depth++;
	p->cur = f;
	f->node = node;
	f->vnode = is_map ? NULL : node;
	f->idx = 0;
	f->is_array = !is_map;
	f->special = f->mspecial = SP_NONE;
	f->slow = f->keys_slow = f->end_slow = 0;
	f->trail_pushed = 0;
	f->kc = NULL;
	if (!is_map) {
		f->arr_id = p->next_arr_id++;
		p->cbs.yajl_string = node ? cb_string : NULL;
	}
	if (parent->is_array && node)
		push_element(p, parent, f);
	return 1;
}

static int cb_start_map(void *ctx)
{
	return open_container(ctx, true);
}

static int cb_start_array(void *ctx)
{
	return open_container(ctx, false);
}

static __attribute__((noinline)) int close_container_slow(struct pstate *p)
{
	struct kr_stream *s = p->s;
	struct frame *f = &p->frames[--p->depth];
	p->cur = f - 1;
	if (f->trail_pushed)
		p->ntrail -= 2;
	struct frame *parent = top(p);
	if (parent && parent->is_array) {
		parent->idx++;
		strings_in_array(p, parent);
	} else {
		p->cbs.yajl_string = cb_string; /* in an object a key comes next, which sets it */
	}
	uint64_t end = tok_end(p);
	if (p->in_record && p->depth == p->ev_depth && !end_record(p, end))
		return 0;
	if (p->depth == 0 && !p->inner) {
		p->container = C_NONE;
		s->last_top_end = end;
	}
	return !p->stop;
}

static inline int close_container(struct pstate *p)
{
	struct frame *f = p->cur;
	if (__builtin_expect(f->end_slow, 0))
		return close_container_slow(p);
	p->depth--;
	p->cur = f - 1;
	if (f->trail_pushed)
		p->ntrail -= 2;
	f[-1].idx++; /* counts elements in an array; unused in an object */
	if (f[-1].is_array)
		strings_in_array(p, f - 1);
	return 1;
}

static int cb_end(void *ctx)
{
	return close_container(ctx);
}

/* k and ek, both n bytes long, are equal. Keys are short: up to 24 bytes this is overlapping
 * loads and compares (with n a constant, two of them), not a call to memcmp. */
static inline bool short_key_eq(const char *k, const char *ek, size_t n) /* n <= 24 */
{
	uint64_t a, b, c, d;
	if (n >= 8) {
		memcpy(&a, k, 8);
		memcpy(&b, ek, 8);
		memcpy(&c, k + n - 8, 8);
		memcpy(&d, ek + n - 8, 8);
		if (n > 16) {
			uint64_t e, f;
			memcpy(&e, k + 8, 8);
			memcpy(&f, ek + 8, 8);
			return a == b && e == f && c == d;
		}
		return a == b && c == d;
	}
	if (n >= 4) {
		uint32_t x, y, z, w;
		memcpy(&x, k, 4);
		memcpy(&y, ek, 4);
		memcpy(&z, k + n - 4, 4);
		memcpy(&w, ek + n - 4, 4);
		return x == y && z == w;
	}
	if (n >= 2) {
		uint16_t x, y, z, w;
		memcpy(&x, k, 2);
		memcpy(&y, ek, 2);
		memcpy(&z, k + n - 2, 2);
		memcpy(&w, ek + n - 2, 2);
		return x == y && z == w;
	}
	return n == 0 || k[0] == ek[0];
}

static inline bool key_eq(const char *k, const char *ek, size_t n)
{
	return n > 24 ? memcmp(k, ek, n) == 0 : short_key_eq(k, ek, n);
}

/* Which of the fields the parser itself needs (envelopes, CloudTrail conversion, checks) a key
 * names: the first entry of special_keys for its level whose conditions hold. Only keys that
 * pass special_mask (built from the same table) and miss the key cache get here. */
static enum special key_special(const struct pstate *p, const char *k, size_t n)
{
	unsigned rel = p->depth - p->ev_depth; /* 1: the record's own keys */
	enum key_level level;
	if (p->ev_depth == 2 && !p->inner) {
		if (rel == 1)
			level = KL_CLOUDTRAIL;
		else if (rel == 2 && p->frames[p->depth - 2].special == CT_USER_IDENTITY)
			level = KL_CT_USER_IDENTITY;
		else
			return SP_NONE;
	} else if (rel == 1) {
		level = KL_RECORD;
	} else {
		return SP_NONE;
	}
	bool read_envelopes = !p->inner && !p->s->raw_only;
	for (size_t i = 0; i < sizeof special_keys / sizeof *special_keys; i++) {
		const struct special_key *e = &special_keys[i];
		if (e->len != n || e->level != level || !key_eq(k, e->key, n))
			continue;
		if ((e->when & KW_ENVELOPES && !read_envelopes) || (e->when & KW_TIME && p->s->no_time) ||
		    (e->when & KW_TOP_RECORD && p->ev_depth != 0))
			continue;
		return e->sp;
	}
	return SP_NONE;
}

static __attribute__((noinline)) int map_key_slow(struct pstate *p, const char *k, size_t n)
{
	struct frame *f = top(p);
	uint32_t i = f->nkeys++;
	f->vnode = kr_path_child(f->node, k, n);
	/* only a record's own keys (and userIdentity's in a CloudTrail record) can be special */
	unsigned rel = p->depth - p->ev_depth;
	f->special = p->in_record && (rel == 1 || (rel == 2 && p->ev_depth == 2 && !p->inner))
			     ? (uint8_t)key_special(p, k, n)
			     : SP_NONE;
	f->mspecial = f->special == SP_DETAIL ? SP_NONE : f->special;
	if (f->kc && i < KC_KEYS && n <= KC_KEYMAX) {
		struct kc_ent *e = &f->kc[i];
		e->node = f->vnode;
		e->special = f->special;
		e->mspecial = f->mspecial;
		e->len = (int8_t)n;
		memcpy(e->key, k, n);
	}
	strings_after_key(p, f);
	return 1;
}

/* A key of a record's own object (or of userIdentity in a CloudTrail record). */
static __attribute__((noinline)) int map_key_record(struct pstate *p, struct frame *f,
						    const char *k, size_t n)
{
	if (f->kc && f->nkeys < KC_KEYS) {
		struct kc_ent *e = &f->kc[f->nkeys];
		if (n <= KC_KEYMAX && e->len == (int8_t)n && short_key_eq(k, e->key, n)) {
			f->nkeys++;
			f->vnode = e->node;
			f->special = e->special;
			f->mspecial = e->mspecial;
			strings_after_key(p, f);
			return 1;
		}
	}
	return map_key_slow(p, k, n);
}

/* A key that a rule may name (f's special is set already). Out of line: the common case, a key
 * no rule names, then saves no registers. */
static __attribute__((noinline)) int field_key(struct pstate *p, struct frame *f, const char *k,
					       size_t n)
{
	f->vnode = kr_path_lookup(f->node, k, n);
	strings_after_key(p, f);
	return 1;
}

/* A key of a record's own object, or of an object outside a record. Every call in it is the
 * last thing it does: no registers to save. */
static inline int own_key(struct pstate *p, struct frame *f, const char *k, size_t n)
{
	/* most are told apart from the ones key_special knows by their length and first byte
	 * alone */
	if (n && (p->s->special_mask[n & 15] >> ((unsigned char)k[0] & 63) & 1))
		return map_key_record(p, f, k, n);
	f->nkeys++;
	f->special = f->mspecial = SP_NONE;
	if (kr_path_may_have(f->node, k, n))
		return field_key(p, f, k, n);
	f->vnode = NULL;
	p->cbs.yajl_string = f->slow ? cb_string : NULL;
	return 1;
}

static int cb_map_key(void *ctx, const unsigned char *key, size_t n)
{
	struct pstate *p = ctx;
	struct frame *f = p->cur;
	const char *k = (const char *)key;
	if (__builtin_expect(f->keys_slow, 0))
		return own_key(p, f, k, n);
	/* a field of a record (f is not slow): most keys are none a rule names */
	if (kr_path_may_have(f->node, k, n))
		return field_key(p, f, k, n);
	f->vnode = NULL;
	p->cbs.yajl_string = NULL;
	return 1;
}

static const yajl_callbacks callbacks = {
	.yajl_null = cb_null,
	.yajl_boolean = cb_bool,
	.yajl_number = cb_number,
	.yajl_string = cb_string,
	.yajl_start_map = cb_start_map,
	.yajl_map_key = cb_map_key,
	.yajl_end_map = cb_end,
	.yajl_start_array = cb_start_array,
	.yajl_end_array = cb_end,
};

/* An SNS notification (a record, not in a CloudTrail log, whose Type is "Notification"): the
 * event is the JSON text in Message. */
static bool is_sns_notification(const struct kr_stream *s, const struct pstate *p)
{
	return p->ev_depth < 2 && !s->raw_only && cap_is(s, SP_TYPE, "Notification") &&
	       s->has[SP_MESSAGE];
}

static int parse_sns(struct kr_stream *s, struct pstate *outer, uint64_t start, uint64_t end)
{
	struct pstate *p = &s->inner;
	struct kr_buf *msg = &s->built;
	msg->len = 0;
	if (!kr_buf_append(msg, cap_text(s, SP_MESSAGE), s->cap_buf[SP_MESSAGE].len) ||
	    pstate_open(s, p, true) != 0)
		return report_invalid(s, start, end, "out of memory unwrapping the SNS message");
	kr_view_reset(s->view);
	memset(s->has, 0, sizeof s->has);
	p->feed_base = 0;
	p->rec_bad = NULL;
	p->in_record = false;
	/* the fast path (lex.h) for a Message that is one valid object or array with nothing but
	   white space around it; yajl for any other, and for every error */
	size_t ws = 0, vlen = 0;
	bool lexing = !s->no_lex && kr_lex_whole(msg->p, msg->len, &ws, &vlen);
	yajl_status st;
	if (lexing) {
		p->feed_base = ws;
		p->lexing = true;
		int rc = kr_lex_emit(&p->lex, msg->p + ws, vlen, &p->cbs, p);
		p->lexing = false;
		if (rc == -2)
			return report_invalid(s, start, end, "out of memory unwrapping the SNS message");
		st = rc ? yajl_status_client_canceled : yajl_status_ok;
	} else {
		st = yajl_parse(p->h, (const unsigned char *)msg->p, msg->len);
		if (st == yajl_status_ok)
			st = yajl_complete_parse(p->h);
	}
	char why[256];
	if (st != yajl_status_ok) {
		if (p->cancel_msg)
			snprintf(why, sizeof why, "SNS Message: %s", p->cancel_msg);
		else if (lexing)
			snprintf(why, sizeof why, "SNS Message: malformed JSON: " KR_LEX_CANCELLED);
		else {
			char m[200];
			kr_json_yajl_error(p->h, "malformed JSON: ", m, sizeof m);
			snprintf(why, sizeof why, "SNS Message: %s", m);
		}
		return report_invalid(s, start, end, why);
	}
	if (p->rec_bad) {
		snprintf(why, sizeof why, "SNS Message: %s", p->rec_bad);
		return report_invalid(s, start, end, why);
	}
	if (msg->len > s->max_record) {
		snprintf(why, sizeof why, "SNS Message exceeds the maximum size of %zu bytes",
			 s->max_record);
		return report_invalid(s, start, end, why);
	}
	return emit(s, outer, msg->p, msg->len, KR_ENV_SNS, start);
}

/* ---- skipping bad input ---- */

static void skip_begin(struct kr_stream *s, enum skip_state st, uint64_t from,
		       enum container c)
{
	s->sk = st;
	s->sk_pos = from;
	s->sk_vend = from;
	s->sk_nl = 0;
	s->sk_depth = 0;
	s->sk_str = s->sk_esc = false;
	s->sk_container = c;
}

/* The value being skipped ended at sk_pos: go on after it in its array, or at the top level. */
static bool skip_value_done(struct kr_stream *s)
{
	if (s->sk_container == C_NONE) {
		s->sk = SK_OFF;
		return true;
	}
	s->sk_vend = s->sk_pos;
	s->sk_nl = 0;
	s->sk = SK_AFTER_ELEM;
	return false;
}

/* Bad bytes in [from, to): the last one that is not whitespace ends the bad record so far. */
static void skip_note(struct kr_stream *s, uint64_t from, uint64_t to)
{
	for (uint64_t i = to; i > from && i > s->sk_last; i--)
		if (!is_ws(*at(s, i - 1))) {
			s->sk_last = i;
			return;
		}
}

/* Runs the skipper over input up to upto. Returns true when it is done (s->sk_pos is where to go
 * on, s->sk_container what to resume inside), false when it needs more input. At eof it is done. */
static bool skip_run(struct kr_stream *s, uint64_t upto, bool eof)
{
	while (s->sk_pos < upto) {
		char c = *at(s, s->sk_pos);
		bool has_next = s->sk_pos + 1 < upto;
		char next = has_next ? *at(s, s->sk_pos + 1) : 0;
		switch (s->sk) {
		case SK_VALUE:
			if (!is_ws(c))
				s->sk_last = s->sk_pos + 1;
			if (c == '\n') {
				if (!has_next && !eof)
					return false;
				if (next == '{') {
					/* a line starting with '{': the bad record was truncated */
					s->sk_pos++;
					s->sk_container = C_NONE;
					s->sk = SK_OFF;
					return true;
				}
				s->sk_str = false;
			} else if (s->sk_str) {
				if (s->sk_esc)
					s->sk_esc = false;
				else if (c == '\\')
					s->sk_esc = true;
				else if (c == '"')
					s->sk_str = false;
			} else if (c == '"') {
				s->sk_str = true;
			} else if (c == '{' || c == '[') {
				s->sk_depth++;
			} else if (c == '}' || c == ']') {
				if (s->sk_depth <= 1) {
					s->sk_pos++;
					if (skip_value_done(s))
						return true;
					continue;
				}
				s->sk_depth--;
			}
			s->sk_pos++;
			break;
		case SK_SCALAR:
			/* a string or a bare token (number, literal) where a record belongs */
			if (c == '\n') {
				/* no string holds a raw newline: past the value, or it was cut short */
				if (!s->sk_str && skip_value_done(s))
					return true;
				if (s->sk_str)
					s->sk = SK_RESYNC;
				break;
			}
			if (s->sk_str) {
				s->sk_last = s->sk_pos + 1;
				s->sk_pos++;
				if (s->sk_esc)
					s->sk_esc = false;
				else if (c == '\\')
					s->sk_esc = true;
				else if (c == '"' && skip_value_done(s))
					return true;
			} else if (is_ws(c) || strchr(",:[]{}\"", c)) {
				if (skip_value_done(s))
					return true;
			} else {
				s->sk_last = s->sk_pos + 1;
				s->sk_pos++;
			}
			break;
		case SK_AFTER_ELEM:
			if (is_ws(c)) {
				s->sk_nl += c == '\n';
				s->sk_pos++;
			} else if (c == ',') {
				s->sk_pos++;
				s->sk = SK_OFF;
				return true; /* resume inside the container */
			} else if (c == ']') {
				s->sk_pos++;
				if (s->sk_container == C_CLOUDTRAIL) {
					s->sk = SK_AFTER_CT_ARRAY;
				} else {
					s->sk_container = C_NONE;
					s->sk = SK_OFF;
					return true;
				}
			} else {
				s->sk = SK_RESYNC;
			}
			break;
		case SK_AFTER_CT_ARRAY:
			if (c == '}') {
				s->sk_pos++;
				s->sk_container = C_NONE;
				s->sk = SK_OFF;
				return true;
			}
			if (is_ws(c))
				s->sk_pos++;
			else
				s->sk = SK_RESYNC;
			break;
		case SK_RESYNC: {
			uint64_t from = s->sk_pos;
			const char *p = at(s, s->sk_pos), *end = at(s, upto);
			for (;;) {
				const char *nl = memchr(p, '\n', (size_t)(end - p));
				if (!nl) {
					skip_note(s, from, upto);
					s->sk_pos = upto;
					break;
				}
				if (nl + 1 == end) {
					skip_note(s, from, upto);
					s->sk_pos = upto - 1;
					if (!eof)
						return false;
					s->sk_pos = upto;
					break;
				}
				if (nl[1] == '{') {
					s->sk_pos = (uint64_t)(nl + 1 - s->buf) + s->abs_base;
					skip_note(s, from, s->sk_pos);
					s->sk_container = C_NONE;
					s->sk = SK_OFF;
					return true;
				}
				p = nl + 1;
			}
			break;
		}
		case SK_OFF:
			return true;
		}
	}
	if (eof) {
		s->sk = SK_OFF;
		s->sk_container = C_NONE;
		return true;
	}
	return false;
}

/* Starts a fresh outer parse inside container c, where an element has just ended (after_elem: a
 * record the consumer paused after) or where the skipper took the ',' after a bad one. A
 * synthetic opening puts yajl in the state it would be in there ("[null" or "[null,", with
 * {"Records": for a CloudTrail log; the null is no record), so that what follows parses as it
 * would have without the break. */
static int restart_outer(struct kr_stream *s, enum container c, bool after_elem)
{
	struct pstate *p = &s->outer;
	if (pstate_open(s, p, false) != 0)
		return -1;
	if (c == C_NONE) {
		s->last_top_end = s->fed;
		return 0;
	}
	char syn[32];
	snprintf(syn, sizeof syn, "%s%s", c == C_ARRAY ? "[" : "{\"Records\":[",
		 after_elem ? "null" : "null,");
	p->feed_base = s->fed; /* offsets of synthetic bytes are never used */
	p->quiet = true;
	yajl_status st = yajl_parse(p->h, (const unsigned char *)syn, strlen(syn));
	p->quiet = false;
	if (st != yajl_status_ok)
		return -1;
	if (after_elem) {
		s->last_elem_end = s->fed;
		gap_set(s, s->fed, s->fed, 0, false);
	} else {
		s->last_elem_end = s->sk_vend;
		gap_set(s, s->sk_vend, s->fed, s->sk_nl, true);
	}
	return 0;
}

/* A fresh outer parse at fed: at the top level, or after the element the consumer paused after. */
static int resume_outer(struct kr_stream *s)
{
	enum container c = s->resume_in;
	s->resume_in = C_NONE;
	return restart_outer(s, c, true);
}

/* The outer yajl handle is dead after an error: the skipper takes over, then a new one. */
static void drop_outer(struct pstate *p)
{
	if (p->h)
		yajl_free(p->h);
	p->h = NULL;
	p->in_record = false;
	p->depth = 0;
	p->cur = p->frames - 1;
}

/* The outer parse failed at stream offset err_at (yajl's bytes consumed; with nul, a NUL byte
 * was what it could not take): report and start skipping. */
static int outer_failed(struct kr_stream *s, uint64_t err_at, const char *why, bool nul)
{
	struct pstate *p = &s->outer;
	if (nul)
		why = "NUL byte in the record";
	if (p->resync_at) {
		/* a record of the stream begins inside a CloudTrail log, which was cut short after
		 * its last element */
		int rc = report_invalid_at(s, s->last_elem_end, cut_line(s), 0, why);
		skip_begin(s, SK_RESYNC, p->resync_at - 1, C_NONE);
		p->resync_at = 0;
		drop_outer(p);
		return rc;
	}
	if (p->in_record) {
		uint64_t start = p->rec_start;
		if (!nul && err_at > start + 1 &&
		    memmem(at(s, start + 1), (size_t)(err_at - start - 1), "\n{", 2))
			why = "truncated record (a line starting with '{' begins before it ends)";
		pend_begin(s, start, line_of(s, start), why);
		s->sk_last = start;
		skip_begin(s, SK_VALUE, start, p->container);
		drop_outer(p);
		return 0; /* reported when the skipper has found the record's end */
	}
	/* Between records: the bad bytes start at the first byte in the gap that is neither
	 * whitespace nor a separator. yajl has read the byte at err_at only when it stopped there
	 * (then it is the bad one); otherwise the bad byte comes before. */
	uint64_t base, start = err_at;
	bool elem, found = false;
	if (gap_level(s, p, &base, &elem)) {
		gap_sync(s, base, elem);
		uint64_t upto = err_at < s->abs_base + s->len ? err_at + 1 : err_at;
		found = gap_scan(s, upto);
		if (found)
			start = s->gap_tok;
	} else {
		elem = true; /* in a CloudTrail log, after its records */
	}
	uint64_t from = err_at >= s->abs_base + 2 ? err_at - 2 : s->abs_base;
	if (elem && !found) {
		/* nothing but separators before the error: the array broke off after its last
		 * element */
		int rc = report_invalid_at(s, s->last_elem_end, cut_line(s), 0, why);
		skip_begin(s, SK_RESYNC, from, C_NONE);
		drop_outer(p);
		return rc;
	}
	pend_begin(s, start, line_of(s, start), why);
	if (elem) {
		s->pend_cut = true;
		s->pend_cut_at = s->last_elem_end;
		s->pend_cut_line = cut_line(s);
	}
	s->sk_last = start;
	skip_note(s, start, err_at);
	/* yajl has just read the offending token: a '{' starting a line may be the next record */
	skip_begin(s, SK_RESYNC, from, C_NONE);
	drop_outer(p);
	return 0;
}

/* A record, or a scalar where a record belongs, still open max_record bytes after its first byte
 * (start): too big, whatever follows. process() feeds yajl no further than that byte, so this is
 * decided there however the input was chunked. The value is skipped from its first byte. */
static void cut_oversized(struct kr_stream *s, uint64_t start, bool scalar, enum container c)
{
	char why[96];
	snprintf(why, sizeof why, "record exceeds the maximum size of %zu bytes", s->max_record);
	pend_begin(s, start, line_of(s, start), why);
	s->sk_last = start;
	skip_begin(s, scalar ? SK_SCALAR : SK_VALUE, start, c);
	if (scalar) {
		s->sk_str = *at(s, start) == '"';
		s->sk_pos = s->sk_last = start + 1;
	}
	drop_outer(&s->outer);
}

/* The offset yajl may not be fed past: where the value open in a record's place becomes too big
 * (see cut_oversized), or a file start not reached yet (a byte order mark may follow). */
static uint64_t feed_limit(const struct kr_stream *s, const struct pstate *p)
{
	uint64_t lim = UINT64_MAX, base;
	bool elem;
	if (p->in_record)
		lim = p->rec_start + s->max_record;
	else if (gap_level(s, p, &base, &elem) && s->gap_from == base && s->gap_elem == elem &&
		 s->gap_tok_open)
		lim = s->gap_tok + s->max_record;
	if (s->bom_pending && s->bom_at > s->fed && s->bom_at < lim)
		lim = s->bom_at;
	return lim;
}

/* At a file start (bom_at): a UTF-8 byte order mark is skipped, when the parse is between
 * records there. Returns false when more input is needed to tell. */
static bool skip_bom(struct kr_stream *s, uint64_t upto, bool eof)
{
	static const char bom[] = "\xEF\xBB\xBF";
	size_t have = upto - s->fed < 3 ? (size_t)(upto - s->fed) : 3;
	if (have < 3 && !eof && memcmp(at(s, s->fed), bom, have) == 0)
		return false;
	s->bom_pending = false;
	if (have < 3 || memcmp(at(s, s->fed), bom, 3) != 0)
		return true;
	struct pstate *p = &s->outer;
	uint64_t base;
	bool elem;
	if (!p->h && s->resume_in != C_NONE)
		return true; /* paused after an element: in an array, as below */
	if (p->h) {
		if (!gap_level(s, p, &base, &elem) || elem)
			return true;
		gap_sync(s, base, elem);
		if (gap_scan(s, s->fed))
			return true; /* a scalar is open: the mark is part of it */
		drop_outer(p);   /* the top level starts again after the mark */
	}
	s->fed += 3;
	return true;
}

/* The consumer asked to pause after the record that just ended: go on after it later, with a
 * fresh parse in the state after it (see restart_outer). */
static void pause_outer(struct kr_stream *s, struct pstate *p)
{
	s->resume_in = p->container;
	p->pause = false;
	s->fed = p->pause_at;
	drop_outer(p);
	s->paused = true;
}

/* ---- the fast path: whole top-level objects without yajl ---- */

/* A value still open at the end of the input so far is waited for (parsed whole when more
 * comes) while it is shorter than this; a longer one goes to yajl, so that no value is scanned
 * over and over as it arrives in small reads. */
#define LEX_WAIT_MAX (256u * 1024)

enum lex_step { LS_YAJL, LS_WAIT, LS_PAUSED, LS_ERR_IO, LS_NOMEM };

/* Whether the outer parse is at the top level between values, where kr_lex may take over. */
static bool lex_ready(struct kr_stream *s, struct pstate *p)
{
	uint64_t base;
	bool elem;
	if (s->no_lex || !p->h || p->depth || p->in_record || p->quiet || s->sk != SK_OFF ||
	    !gap_level(s, p, &base, &elem) || elem)
		return false;
	gap_sync(s, base, elem);
	return !gap_scan(s, s->fed);
}

/* Parses the top-level objects that lie whole in the input from fed up to upto with kr_lex,
 * which makes the same callbacks, with the same offsets, as yajl would (see lex.h). Stops at
 * anything else (another value, bad or too big input: the same calls to yajl then give the
 * same result as always), or at an object the input ends inside (LS_WAIT: parsed whole when
 * more input comes; at the end of the input yajl reports it). */
static enum lex_step lex_run(struct kr_stream *s, struct pstate *p, uint64_t upto, bool eof)
{
	uint64_t end = upto;
	if (s->bom_pending && s->bom_at < end)
		end = s->bom_at; /* another file starts there (process() has it skip_bom) */
	enum lex_step step = LS_YAJL;
	for (;;) {
		uint64_t q = s->fed;
		while (q < end && is_ws(*at(s, q)))
			q++;
		if (q == end) {
			s->fed = q;
			step = end == upto ? LS_WAIT : LS_YAJL;
			break;
		}
		if (*at(s, q) != '{') {
			s->fed = q;
			break;
		}
		size_t avail = (size_t)(end - q), lim = avail < s->max_record ? avail : s->max_record;
		size_t len;
		enum kr_lex_result r = kr_lex_scan(at(s, q), lim, &len);
		if (r != KR_LEX_VALUE) {
			s->fed = q;
			if (r == KR_LEX_MORE && lim == avail && end == upto && !eof && avail < LEX_WAIT_MAX)
				step = LS_WAIT;
			break;
		}
		p->feed_base = q;
		p->lexing = true;
		int rc = kr_lex_emit(&p->lex, at(s, q), len, &p->cbs, p);
		p->lexing = false;
		/* as after a yajl call (see process()) */
		if (rc == -2)
			return LS_NOMEM;
		if (p->stop)
			return LS_ERR_IO;
		if (p->pause) {
			pause_outer(s, p);
			return LS_PAUSED;
		}
		if (rc == -1) {
			/* a callback stopped the parse */
			s->fed = q;
			const char *why = p->cancel_msg ? p->cancel_msg
							: "malformed JSON: " KR_LEX_CANCELLED;
			return outer_failed(s, q + p->lex.off, why, false) ? LS_ERR_IO : LS_YAJL;
		}
		s->fed = q + len;
	}
	/* the white space after the last value, as after a yajl call */
	uint64_t base;
	bool elem;
	if (gap_level(s, p, &base, &elem)) {
		gap_sync(s, base, elem);
		gap_scan(s, s->fed);
	}
	return step;
}

/* Handles the stream up to offset upto. */
static enum kr_err process(struct kr_stream *s, uint64_t upto, bool eof)
{
	struct pstate *p = &s->outer;
	if (s->paused)
		return KR_OK;
	while (s->fed < upto || (s->sk != SK_OFF && eof)) {
		if (s->sk != SK_OFF) {
			if (!skip_run(s, upto, eof)) {
				s->fed = upto;
				break;
			}
			s->fed = s->sk_pos;
			if (report_pending(s, s->sk_pos))
				return KR_ERR_IO;
			if (restart_outer(s, s->sk_container, false) != 0)
				return KR_ERR_NOMEM;
			continue;
		}
		if (s->bom_pending && s->fed >= s->bom_at) {
			if (s->fed > s->bom_at)
				s->bom_pending = false; /* the mark fell inside skipped bytes */
			else if (!skip_bom(s, upto, eof))
				break;
			continue;
		}
		if (!p->h && resume_outer(s) != 0)
			return KR_ERR_NOMEM;
		if (lex_ready(s, p)) {
			enum lex_step ls = lex_run(s, p, upto, eof);
			if (ls == LS_ERR_IO)
				return KR_ERR_IO;
			if (ls == LS_NOMEM)
				return KR_ERR_NOMEM;
			if (ls == LS_PAUSED)
				return KR_OK;
			if (ls == LS_WAIT)
				break;
			if (!p->h || s->fed >= upto || (s->bom_pending && s->fed >= s->bom_at))
				continue; /* failed (the skipper goes on), or at a file start */
		}
		size_t n = (size_t)(upto - s->fed < WINDOW ? upto - s->fed : WINDOW);
		/* a record that starts in this window cannot become too big in it */
		if (n > s->max_record)
			n = s->max_record;
		uint64_t lim = feed_limit(s, p);
		if (lim > s->fed && lim - s->fed < n)
			n = (size_t)(lim - s->fed);
		p->feed_base = s->fed;
		yajl_status st = yajl_parse(p->h, (const unsigned char *)at(s, s->fed), n);
		if (p->stop)
			return KR_ERR_IO;
		if (p->pause) {
			pause_outer(s, p);
			return KR_OK;
		}
		if (st != yajl_status_ok) {
			uint64_t err_at = s->fed + yajl_get_bytes_consumed(p->h);
			char why[200];
			bool nul = false;
			if (p->cancel_msg) {
				snprintf(why, sizeof why, "%s", p->cancel_msg);
			} else {
				kr_json_yajl_error(p->h, "malformed JSON: ", why, sizeof why);
				/* yajl stops after a byte that cannot start a token or go on a UTF-8
				   sequence, at one inside a string, literal or number */
				bool after = !strstr(why, "lexical error") ||
					     strstr(why, "invalid char in json text") || strstr(why, "UTF8");
				if (after)
					nul = err_at > s->abs_base && *at(s, err_at - 1) == 0;
				else
					nul = err_at < s->abs_base + s->len && *at(s, err_at) == 0;
			}
			if (outer_failed(s, err_at, why, nul))
				return KR_ERR_IO;
			continue;
		}
		s->fed += n;
		uint64_t base;
		bool elem;
		if (p->in_record) {
			if (s->fed - p->rec_start >= s->max_record)
				cut_oversized(s, p->rec_start, false, p->container);
		} else if (gap_level(s, p, &base, &elem)) {
			gap_sync(s, base, elem);
			if (gap_scan(s, s->fed) && s->fed - s->gap_tok >= s->max_record)
				cut_oversized(s, s->gap_tok, true, elem ? p->container : C_NONE);
		}
	}
	return KR_OK;
}

/* ---- public ---- */

enum kr_err kr_stream_new(const struct kr_paths *paths, const struct kr_stream_opts *opts,
			  const struct kr_stream_callbacks *cb, void *ctx, struct kr_stream **out)
{
	struct kr_stream *s = calloc(1, sizeof *s);
	if (!s)
		return KR_ERR_NOMEM;
	s->paths = paths;
	s->root = paths ? paths->root : NULL;
	s->detail_node = kr_path_child(s->root, "detail", 6);
	s->cb = *cb;
	s->ctx = ctx;
	s->max_record = opts && opts->max_record ? opts->max_record : KR_DEFAULT_MAX_RECORD;
	s->max_depth = opts && opts->max_depth ? opts->max_depth : KR_DEFAULT_MAX_DEPTH;
	s->raw_only = opts && opts->raw_events_only;
	s->no_time = opts && opts->no_time;
	s->no_lex = opts && opts->yajl_only;
	for (size_t i = 0; i < sizeof special_keys / sizeof *special_keys; i++) {
		const struct special_key *e = &special_keys[i];
		if (!(s->no_time && e->when & KW_TIME))
			s->special_mask[e->len & 15] |= 1ULL << ((unsigned char)e->key[0] & 63);
	}
	s->view = &s->views[0];
	if (kr_view_init(&s->views[0], paths) != KR_OK || kr_view_init(&s->views[1], paths) != KR_OK ||
	    pstate_open(s, &s->outer, false) != 0 ||
	    pstate_open(s, &s->inner, true) != 0) {
		kr_stream_free(s);
		return KR_ERR_NOMEM;
	}
	kr_stream_reset(s);
	*out = s;
	return KR_OK;
}

void kr_stream_free(struct kr_stream *s)
{
	if (!s)
		return;
	pstate_close(&s->outer);
	pstate_close(&s->inner);
	kr_view_fini(&s->views[0]);
	kr_view_fini(&s->views[1]);
	for (int i = 0; i < NSPECIAL; i++)
		kr_buf_free(&s->cap_buf[i]);
	kr_buf_free(&s->built);
	kr_buf_free(&s->pend_copy);
	if (!s->external)
		free(s->buf);
	free(s);
}

void kr_stream_reset(struct kr_stream *s)
{
	if (s->external) {
		/* the caller's memory is not ours to keep: the next buffered input starts afresh */
		s->buf = NULL;
		s->cap = 0;
		s->external = false;
	}
	s->len = 0;
	s->abs_base = s->fed = 0;
	s->base_line = 1;
	s->nl_total = 0;
	s->hi_end = 0;
	s->last_top_end = 0;
	s->last_elem_end = 0;
	s->gap_from = s->gap_pos = s->gap_nl = 0;
	s->gap_elem = s->gap_comma = s->gap_tok_open = false;
	s->cut_at = UINT64_MAX;
	s->bom_pending = true; /* the stream starts a file */
	s->bom_at = 0;
	s->sk = SK_OFF;
	s->pend = s->pend_copied = false;
	s->paused = false;
	s->ending = false;
	s->resume_in = C_NONE;
	if (s->outer.h)
		yajl_free(s->outer.h);
	s->outer.h = NULL;
	s->outer.depth = 0;
	if (s->outer.frames)
		s->outer.cur = s->outer.frames - 1;
	s->outer.in_record = false;
	s->outer.container = C_NONE;
}

char *kr_stream_reserve(struct kr_stream *s, size_t want)
{
	/* two bytes before the parse position stay: after an error the skipper looks for a line
	   that starts with '{' from just before the offending token */
	uint64_t keep = s->fed >= s->abs_base + 2 ? s->fed - 2 : s->abs_base;
	if (s->outer.in_record && s->outer.rec_start < keep)
		keep = s->outer.rec_start;
	if (s->sk != SK_OFF && s->sk_pos < keep)
		keep = s->sk_pos;
	/* a scalar (or junk) open where a record belongs is reported from its first byte */
	uint64_t base;
	bool elem;
	bool gap = gap_level(s, &s->outer, &base, &elem);
	if (gap && s->gap_from == base && s->gap_elem == elem && s->gap_tok_open && s->gap_tok < keep)
		keep = s->gap_tok;
	/* in a CloudTrail log after its records, an error is reported where they ended: note that
	 * line while it can be counted */
	if (!gap && s->outer.h && !s->outer.in_record && s->outer.container != C_NONE &&
	    s->cut_at != s->last_elem_end) {
		s->cut_line = cut_line(s);
		s->cut_at = s->last_elem_end;
	}
	/* the bad record being skipped is reported with its bytes: they stay here up to
	 * max_record of them, then that many are copied (a report gives no more) */
	if (s->pend && !s->pend_copied && s->pend_start >= s->abs_base && s->pend_start < keep) {
		if (s->fed - s->pend_start <= s->max_record) {
			keep = s->pend_start;
		} else {
			s->pend_copied = true;
			s->pend_copy.len = 0;
			if (!kr_buf_append(&s->pend_copy, at(s, s->pend_start), s->max_record))
				s->pend_copy.len = 0; /* reported without its bytes */
		}
	}
	if (keep > s->abs_base) {
		s->base_line = line_of(s, keep);
		size_t drop = (size_t)(keep - s->abs_base);
		memmove(s->buf, s->buf + drop, s->len - drop);
		s->len -= drop;
		s->abs_base = keep;
	}
	if (s->len + want > s->cap) {
		size_t cap = s->cap ? s->cap : 64 * 1024;
		while (cap < s->len + want)
			cap *= 2;
		char *b = realloc(s->buf, cap);
		if (!b)
			return NULL;
		s->buf = b;
		s->cap = cap;
	}
	return s->buf + s->len;
}

enum kr_err kr_stream_commit(struct kr_stream *s, size_t n)
{
	scan_input(s, n);
	s->len += n;
	s->stats.bytes += n;
	return process(s, s->abs_base + s->len, false);
}

enum kr_err kr_stream_parse_mem(struct kr_stream *s, const char *data, size_t len)
{
	if (s->buf && !s->external)
		free(s->buf);
	s->buf = (char *)data;
	s->external = true;
	s->len = 0;
	s->cap = len;
	s->abs_base = 0;
	s->base_line = 1;
	s->nl_total = 0;
	s->hi_end = 0;
	scan_input(s, len);
	s->len = len;
	s->stats.bytes += len;
	return process(s, len, false);
}

void kr_stream_file_start(struct kr_stream *s)
{
	s->bom_pending = true;
	s->bom_at = s->abs_base + s->len;
}

/* Whether something other than whitespace follows the last top-level value. */
static bool top_open(struct kr_stream *s)
{
	uint64_t base;
	bool elem;
	if (!gap_level(s, &s->outer, &base, &elem) || elem)
		return false;
	gap_sync(s, base, elem);
	return gap_scan(s, s->fed);
}

enum kr_err kr_stream_end(struct kr_stream *s)
{
	struct pstate *p = &s->outer;
	yajl_status st;
	s->ending = true;
	for (;;) {
		enum kr_err e = process(s, s->abs_base + s->len, true);
		if (e)
			return e;
		/* the consumer paused on a record found at the end (records a truncated one hid):
		   kr_stream_resume goes on from here */
		if (s->paused)
			return KR_OK;
		/* a pause in an array of records with nothing after it: the array is still open */
		if (!p->h && !s->paused && s->resume_in != C_NONE && resume_outer(s) != 0)
			return KR_ERR_NOMEM;
		if (!p->h)
			return KR_OK;
		if (p->depth == 0 && !p->in_record && !top_open(s))
			return KR_OK;
		p->feed_base = s->fed;
		st = yajl_complete_parse(p->h);
		if (p->stop)
			return KR_ERR_IO;
		/* after a complete top-level value yajl takes the end of the input for the end of the
		   next one, however it was cut short */
		if (st == yajl_status_ok && p->depth == 0 && !p->in_record && top_open(s))
			st = yajl_status_error;
		if (st == yajl_status_ok || !p->in_record)
			break;
		/* A record open at the end: it was cut short. Skip it as after any bad record, so that
		 * records that yajl took for its fields (a line starting with '{') are read again. */
		if (outer_failed(s, s->fed, "truncated record (the input ends inside it)", false))
			return KR_ERR_IO;
	}
	if (st != yajl_status_ok) {
		/* the input ends inside a value where a record belongs (reported from its first
		 * byte), or inside the array of records after an element (reported where that ended) */
		const char *msg = p->depth ? "truncated JSON (the input ends inside an array or a CloudTrail log)"
					   : "malformed JSON at the end of the input";
		uint64_t base;
		bool elem, found = false;
		if (gap_level(s, p, &base, &elem)) {
			gap_sync(s, base, elem);
			found = gap_scan(s, s->fed);
		}
		int rc;
		if (found)
			rc = report_invalid(s, s->gap_tok, s->fed, msg);
		else if (p->depth)
			rc = report_invalid_at(s, s->last_elem_end, cut_line(s), 0, msg);
		else
			rc = report_invalid(s, s->fed, s->fed, msg);
		if (rc)
			return KR_ERR_IO;
	}
	yajl_free(p->h);
	p->h = NULL;
	p->depth = 0;
	p->cur = p->frames - 1;
	p->in_record = false;
	return KR_OK;
}

bool kr_stream_paused(const struct kr_stream *s)
{
	return s->paused;
}

enum kr_err kr_stream_resume(struct kr_stream *s)
{
	s->paused = false;
	if (s->ending)
		return kr_stream_end(s);
	return process(s, s->abs_base + s->len, false);
}

enum kr_err kr_stream_rebind(struct kr_stream *s, const struct kr_paths *paths)
{
	/* the trie is read at a record's start and below: safe only between records */
	if (s->outer.in_record || s->inner.in_record)
		return KR_ERR_LIMIT;
	for (unsigned i = 0; i < s->outer.depth; i++)
		if (s->outer.frames[i].node || s->outer.frames[i].vnode)
			return KR_ERR_LIMIT;
	enum kr_err e = kr_view_bind(&s->views[0], paths);
	if (e == KR_OK)
		e = kr_view_bind(&s->views[1], paths);
	if (e)
		return e;
	kc_clear(&s->outer);
	kc_clear(&s->inner);
	s->paths = paths;
	s->root = paths ? paths->root : NULL;
	s->detail_node = kr_path_child(s->root, "detail", 6);
	return KR_OK;
}

void kr_stream_stats(const struct kr_stream *s, struct kr_stream_stats *st)
{
	*st = s->stats;
}
