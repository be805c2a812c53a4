/* EventBridge pattern compiler and indexed matcher (see rules.h).
 *
 * Compile: the pattern tree is expanded into disjunctive normal form ($or alternatives multiply
 * out into sub-rules); each leaf array becomes a condition on one path slot. Build: each sub-rule
 * gets one anchor condition, the most selective one, and the anchor's matchers become keys
 * (slot, kind, text) in one open-addressing table of 128-byte buckets, each holding its key and the
 * entries of the conditions it satisfies (rule id, and the sub-rule's other conditions inline when
 * they are plain exact values); prefix and suffix matchers are looked up by each distinct length
 * the slot uses. Match: for every value the event has, look up its keys; an entry with inline
 * checks decides its rule from the bucket alone, any other makes its sub-rule a candidate, whose
 * other conditions (and array-element consistency) are then checked against the view. With a
 * large index the parser's hint prefetches a value's bucket as soon as the value is parsed. */
#include "rules.h"

#include "icase_table.h"
#include "mem.h"

#include <arpa/inet.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SUBRULES_PER_RULE 1024
#define NO_ANCHOR UINT32_MAX

enum mkind {
	M_EXACT,
	M_PREFIX,
	M_SUFFIX,
	M_ICASE,
	M_IPREFIX,
	M_ISUFFIX,
	M_IP,       /* an exact string that is an IP address: every spelling of the address */
	M_WILDCARD,
	M_NUMERIC,
	M_EXISTS,
	M_ABSENT,
	M_CIDR,
	M_ANYBUT
};

/* index kinds: exact values by type, then the string operators */
enum ikind {
	IX_STR, IX_NUM, IX_TRUE, IX_FALSE, IX_NULL, IX_PREFIX, IX_SUFFIX, IX_ICASE, IX_IPREFIX,
	IX_ISUFFIX, IX_IP
};

/* Kept small (the matcher of a verified condition is read on the hot path): the fields of the
 * rarer operators share a union. */
struct matcher {
	uint8_t kind;
	uint8_t vtype;           /* M_EXACT: enum kr_vtype */
	bool text_owned;         /* text is this matcher's (wildcards), not the rule set's pool */
	bool icomplex;           /* ignore-case kinds: text is an icase_compile sequence, scanned */
	uint32_t len;
	char *text;              /* literal (folded for ignore-case kinds; wildcard: literals joined) */
	union {
		struct { /* M_WILDCARD */
			uint32_t *chunks; /* literal lengths between stars */
			uint32_t nchunks;
			bool lead, trail; /* pattern starts/ends with '*' */
		};
		struct { /* M_NUMERIC */
			double lo, hi;
			uint8_t lo_incl, hi_incl, has_lo, has_hi;
		};
		struct { /* M_CIDR */
			uint8_t addr[16];
			uint8_t family, bits;
		};
		struct { /* M_ANYBUT: what the value must not match */
			struct matcher *subs;
			uint32_t nsubs;
		};
	};
};

/* Interned literals: rules repeat the same detail-types and sources thousands of times; one copy
 * of each stays in cache. */
struct strpool {
	char **slots;
	uint32_t *lens;
	uint32_t cap, n;
	char *chunk;
	size_t chunk_used, chunk_cap;
	char **chunks;
	size_t nchunks;
};

struct cond {
	uint32_t sub, slot;
	uint32_t m_off, m_n; /* range in r->matchers */
	bool absent_ok;      /* also satisfied when the path has no value (exists: false) */
};

struct sub {
	uint32_t rule;
	uint32_t anchor;     /* the indexed condition (index into conds), or NO_ANCHOR */
	uint32_t c_off, c_n; /* range in r->conds */
};

struct ientry {
	uint64_t h;
	uint32_t slot;
	uint8_t kind;
	const char *text; /* the matcher's interned literal: borrowed, not copied */
	uint32_t len;
	uint32_t *conds;
	uint32_t nconds, cap;
	uint32_t last;    /* the last condition added: a condition is listed once */
};

struct scanref {
	uint32_t cond, m;
};

struct slotinfo {
	uint32_t *plen[4]; /* distinct lengths for IX_PREFIX, IX_SUFFIX, IX_IPREFIX, IX_ISUFFIX */
	uint32_t nplen[4];
	bool icase;
	uint16_t kinds;       /* bit (1 << ikind) for every kind of key this slot has */
	struct scanref *scan; /* numeric and unindexable matchers */
	uint32_t nscan;
	bool exact_only;      /* only exact keys: no prefix, suffix, ignore-case or scanned matcher */
};

struct kr_rules {
	struct kr_paths *paths;
	struct strpool strings;
	struct matcher *matchers;
	uint32_t nmatchers, capmatchers;
	struct cond *conds;
	uint32_t nconds, capconds;
	struct sub *subs;
	uint32_t nsubs, capsubs;
	uint32_t nrules;
	uint32_t *always; /* sub-rules with no positive condition: checked for every event */
	uint32_t nalways;
	struct ientry *table;
	uint32_t *tags; /* per table slot: 0 empty, else bits of the hash (build time) */
	uint32_t tcap, tn;
	uint32_t *torder; /* the table slots in the order their keys were added (build time) */
	/* the built index, frozen: 128-byte buckets holding each key with its entries, and a block
	 * of records (frec) for the keys too big for a bucket */
	struct fbucket *buckets;
	uint32_t bcap;
	uint16_t *btags; /* per bucket: 16 bits of its key's hash (0: empty), probed before the bucket */
	char *frozen;
	size_t frozen_len;
	struct fcheck *checks; /* the exact-value checks of the frozen entries, by id */
	uint32_t nchecks, capchecks;
	uint32_t *rule_subs;   /* rule -> its first sub-rule (rule + 1: the end) */
	struct slotinfo *slots;
	uint32_t nslots;
	bool built;
};

struct kr_match_state {
	const struct kr_rules *r;
	uint32_t gen;
	uint32_t *cond_stamp, *sub_stamp, *rule_stamp;
	uint8_t *cond_res;          /* memo of a condition's value for this event (cond_stamp) */
	uint32_t *complete, ncomplete; /* sub-rules whose anchor fired */
	uint32_t *out, nout;
	char *fold;
	size_t foldcap;
	const char *pf_base; /* kr_match_state_prefetch */
	size_t pf_stride;
};

/* ---- helpers ---- */

/* The tail is one load that overlaps the last whole word (the length is in the seed, so two
 * strings still differ), and short strings take two loads: no byte loop and no memcpy call. */
static uint64_t hash_bytes(const char *s, size_t n, uint64_t seed)
{
	uint64_t h = seed ^ (n * 0x9E3779B97F4A7C15ULL), k;
	if (n >= 8) {
		const char *last = s + n - 8;
		for (; s < last; s += 8) {
			memcpy(&k, s, 8);
			h = (h ^ k) * 0xbf58476d1ce4e5b9ULL;
			h ^= h >> 31;
		}
		memcpy(&k, last, 8);
	} else if (n >= 4) {
		uint32_t a, b;
		memcpy(&a, s, 4);
		memcpy(&b, s + n - 4, 4);
		k = (uint64_t)a << 32 | b;
	} else {
		k = n ? (uint64_t)(unsigned char)s[0] << 16 | (uint64_t)(unsigned char)s[n / 2] << 8 |
				(unsigned char)s[n - 1]
		      : 0;
	}
	h = (h ^ k) * 0x94d049bb133111ebULL;
	h ^= h >> 29;
	return h;
}

static inline uint64_t key_hash(uint32_t slot, uint8_t kind, const char *s, size_t n)
{
	return hash_bytes(s, n, ((uint64_t)slot << 8 | kind) * 0xff51afd7ed558ccdULL);
}

/* Case folding that keeps byte lengths: ASCII, and the two-byte UTF-8 upper-case letters of
 * Latin-1, Greek and Cyrillic. */
static void fold(char *dst, const char *src, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)src[i];
		if (c >= 'A' && c <= 'Z') {
			dst[i] = (char)(c + 32);
		} else if (c >= 0xC3 && c <= 0xD0 && i + 1 < n) {
			unsigned cp = ((c & 0x1Fu) << 6) | ((unsigned char)src[i + 1] & 0x3Fu);
			unsigned lo = cp;
			if ((cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) || (cp >= 0x391 && cp <= 0x3A9) ||
			    (cp >= 0x410 && cp <= 0x42F))
				lo = cp + 0x20;
			else if (cp >= 0x400 && cp <= 0x40F)
				lo = cp + 0x50;
			if (lo != cp && (lo >> 6) <= 0x1F) {
				dst[i] = (char)(0xC0 | (lo >> 6));
				dst[i + 1] = (char)(0x80 | (lo & 0x3F));
			} else {
				dst[i] = src[i];
				dst[i + 1] = src[i + 1];
			}
			i++;
		} else {
			dst[i] = (char)c;
		}
	}
}

static void *grow(void *p, uint32_t *cap, uint32_t need, size_t elem)
{
	if (need <= *cap)
		return p;
	uint32_t c = *cap ? *cap : 16;
	while (c < need)
		c *= 2;
	void *np = realloc(p, (size_t)c * elem);
	if (np)
		*cap = c;
	return np;
}

static void matcher_fini(struct matcher *m)
{
	if (m->kind == M_WILDCARD) {
		free(m->chunks);
	} else if (m->kind == M_ANYBUT) {
		for (uint32_t i = 0; i < m->nsubs; i++)
			matcher_fini(&m->subs[i]);
		free(m->subs);
	}
	if (m->text_owned)
		free(m->text);
}

static const char *strpool_intern(struct strpool *p, const char *s, size_t n)
{
	if ((p->n + 1) * 2 > p->cap) {
		uint32_t cap = p->cap ? p->cap * 2 : 64;
		char **slots = calloc(cap, sizeof *slots);
		uint32_t *lens = calloc(cap, sizeof *lens);
		if (!slots || !lens) {
			free(slots);
			free(lens);
			return NULL;
		}
		for (uint32_t i = 0; i < p->cap; i++) {
			if (!p->slots[i])
				continue;
			uint32_t j = (uint32_t)hash_bytes(p->slots[i], p->lens[i], 0) & (cap - 1);
			while (slots[j])
				j = (j + 1) & (cap - 1);
			slots[j] = p->slots[i];
			lens[j] = p->lens[i];
		}
		free(p->slots);
		free(p->lens);
		p->slots = slots;
		p->lens = lens;
		p->cap = cap;
	}
	uint32_t j = (uint32_t)hash_bytes(s, n, 0) & (p->cap - 1);
	for (; p->slots[j]; j = (j + 1) & (p->cap - 1))
		if (p->lens[j] == n && memcmp(p->slots[j], s, n) == 0)
			return p->slots[j];
	if (p->chunk_cap - p->chunk_used < n + 1) {
		size_t cap = n + 1 > 65536 ? n + 1 : 65536;
		char **chunks = realloc(p->chunks, (p->nchunks + 1) * sizeof *chunks);
		if (!chunks)
			return NULL;
		p->chunks = chunks;
		if (!(p->chunk = malloc(cap)))
			return NULL;
		p->chunks[p->nchunks++] = p->chunk;
		p->chunk_used = 0;
		p->chunk_cap = cap;
	}
	char *d = p->chunk + p->chunk_used;
	memcpy(d, s, n);
	d[n] = 0;
	p->chunk_used += n + 1;
	p->slots[j] = d;
	p->lens[j] = (uint32_t)n;
	p->n++;
	return d;
}

static void strpool_free(struct strpool *p)
{
	for (size_t i = 0; i < p->nchunks; i++)
		free(p->chunks[i]);
	free(p->chunks);
	free(p->slots);
	free(p->lens);
}

/* ---- numbers as event-ruler compares them ----
 *
 * event-ruler (ComparableNumber.generate) compares a number by its double value only when the
 * double says exactly what the literal says: the literal, read as a decimal, rounded to the
 * nearest double d, must be finite and equal in value to the decimal Double.toString(d) prints.
 * Other numbers are "not representable": an error in numeric and anything-but patterns, text
 * only in exact matches and in events. Double.toString is taken as JDK 19+ defines it (the
 * shortest decimal that rounds to d, but at least two digits, the one closest to d), not the
 * JDK 17 one, which is sometimes longer (README, compatibility notes). */

#define NUM_DIGITS 17     /* a double's shortest decimal never needs more */
#define NUMKEY_LEN 9

/* A literal's value as 0.DIGITS x 10^exp, no leading or trailing zeros in DIGITS (ndig 0: zero).
 * False when it has more than NUM_DIGITS significant digits. */
struct decnum {
	bool neg;
	int ndig;
	long exp;
	char dig[NUM_DIGITS];
};

static bool dec_parse(const char *s, size_t n, struct decnum *d)
{
	size_t i = 0;
	long intdigits = 0, pos = 0, first = -1, e = 0;
	d->neg = n && s[0] == '-';
	d->ndig = 0;
	d->exp = 0;
	if (d->neg)
		i++;
	bool frac = false;
	for (; i < n; i++) {
		char ch = s[i];
		if (ch == '.') {
			frac = true;
			continue;
		}
		if (ch < '0' || ch > '9')
			break;
		if (!frac)
			intdigits++;
		if (ch != '0' || first >= 0) {
			if (first < 0)
				first = pos;
			long at = pos - first;
			if (ch != '0') {
				if (at >= NUM_DIGITS)
					return false;
				while (d->ndig < at)
					d->dig[d->ndig++] = '0';
				d->dig[d->ndig++] = ch;
			}
		}
		pos++;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		bool eneg = false;
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			eneg = s[i++] == '-';
		for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
			if (e < 100000)
				e = e * 10 + (s[i] - '0');
		if (eneg)
			e = -e;
	}
	if (first >= 0)
		d->exp = intdigits - first + e;
	return true;
}

/* The key an exact number is indexed and compared by: for a representable number, a tag byte and
 * its double's bits (-0 made 0), in out; returns NUMKEY_LEN, and its value in *val. 0 when the
 * number is not representable: it is then compared by its text. */
static size_t num_key(const char *s, size_t n, char *out, double *val)
{
	struct decnum lit, shortest;
	char buf[NUM_DIGITS + 32];
	if (!dec_parse(s, n, &lit))
		return 0;
	double d = 0;
	if (lit.ndig) {
		snprintf(buf, sizeof buf, "%s0.%.*se%ld", lit.neg ? "-" : "", lit.ndig, lit.dig,
			 lit.exp);
		d = strtod(buf, NULL);
		if (!isfinite(d) || d == 0)
			return 0;
		/* up to 15 digits in the normal range, the literal is the shortest decimal of its
		 * double (DBL_DIG): no need to look for it */
		if (lit.ndig > 15 || lit.exp < -306 || lit.exp > 308) {
			double a = fabs(d);
			for (int p = 2; p <= NUM_DIGITS; p++) {
				snprintf(buf, sizeof buf, "%.*e", p - 1, a);
				if (strtod(buf, NULL) == a)
					break;
			}
			if (!dec_parse(buf, strlen(buf), &shortest) || shortest.ndig != lit.ndig ||
			    shortest.exp != lit.exp || memcmp(shortest.dig, lit.dig, (size_t)lit.ndig))
				return 0;
		}
	}
	d += 0.0; /* -0 is 0 */
	out[0] = 1; /* no JSON number text starts so: a key never equals a text */
	memcpy(out + 1, &d, sizeof d);
	*val = d;
	return NUMKEY_LEN;
}

/* What an event number is compared to exact number matchers by: its key, or its own text. */
static inline const char *num_cmp_text(const char *s, size_t *n, char *key)
{
	double d;
	size_t k = num_key(s, *n, key, &d);
	if (!k)
		return s;
	*n = k;
	return key;
}

/* ---- evaluation of one matcher against one value (also the reference for the indexes) ---- */

static bool wildcard_match(const struct matcher *m, const char *s, size_t n)
{
	const char *lit = m->text;
	size_t pos = 0;
	uint32_t first = 0, last = m->nchunks;
	if (m->nchunks == 0)
		return m->lead || n == 0;
	if (!m->lead) {
		uint32_t l = m->chunks[0];
		if (l > n || memcmp(s, lit, l) != 0)
			return false;
		if (m->nchunks == 1 && !m->trail)
			return l == n;
		pos = l;
		lit += l;
		first = 1;
	}
	const char *lastlit = m->text + m->len;
	if (!m->trail) {
		uint32_t l = m->chunks[m->nchunks - 1];
		lastlit -= l;
		if (l > n - pos || memcmp(s + n - l, lastlit, l) != 0)
			return false;
		n -= l;
		last = m->nchunks - 1;
	}
	for (uint32_t i = first; i < last; i++) {
		uint32_t l = m->chunks[i];
		const char *f = l ? memmem(s + pos, n - pos, lit, l) : s + pos;
		if (!f)
			return false;
		pos = (size_t)(f - s) + l;
		lit += l;
	}
	return pos <= n;
}

/* An IP address as event-ruler reads one (CIDR.ipToBytes): text that matches
 * [0-9]+\.[0-9]+\.[0-9]+\.[0-9]+ or [0-9a-fA-F:]*:[0-9a-fA-F:]* and that Java's
 * InetAddress.getByName takes. So an IPv4 part may have leading zeros (decimal all the same) but
 * the whole is at most 15 characters, an IPv6 group may have more than four digits if its value
 * fits, an IPv6 address with a dotted quad is never an address, and an IPv4-mapped address
 * (::ffff:a:b) is the IPv4 address. Returns the address length (4 or 16), 0 when not one. */
static unsigned ip_parse(const char *s, size_t n, uint8_t *a)
{
	size_t dots = 0, colons = 0;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (ch == '.')
			dots++;
		else if (ch == ':')
			colons++;
		else if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
			   (ch >= 'A' && ch <= 'F')))
			return 0;
	}
	if (dots) {
		if (dots != 3 || colons || n > 15)
			return 0;
		unsigned part = 0, val = 0, digits = 0;
		for (size_t i = 0; i <= n; i++) {
			if (i == n || s[i] == '.') {
				if (!digits || val > 255)
					return 0;
				a[part++] = (uint8_t)val;
				val = digits = 0;
			} else if (s[i] >= '0' && s[i] <= '9') {
				val = val * 10 + (unsigned)(s[i] - '0');
				digits++;
			} else {
				return 0;
			}
		}
		return 4;
	}
	if (!colons || n < 2)
		return 0;
	/* IPAddressUtil.textToNumericFormatV6, without the dotted tail */
	size_t i = 0, j = 0;
	long colonp = -1;
	unsigned val = 0;
	bool saw = false;
	if (s[0] == ':' && s[++i] != ':')
		return 0;
	while (i < n) {
		char ch = s[i++];
		if (ch != ':') {
			unsigned d = ch <= '9' ? (unsigned)(ch - '0') : (unsigned)((ch | 0x20) - 'a' + 10);
			val = val << 4 | d;
			if (val > 0xFFFF)
				return 0;
			saw = true;
			continue;
		}
		if (!saw) {
			if (colonp != -1)
				return 0;
			colonp = (long)j;
			continue;
		}
		if (i == n || j + 2 > 16)
			return 0;
		a[j++] = (uint8_t)(val >> 8);
		a[j++] = (uint8_t)val;
		saw = false;
		val = 0;
	}
	if (saw) {
		if (j + 2 > 16)
			return 0;
		a[j++] = (uint8_t)(val >> 8);
		a[j++] = (uint8_t)val;
	}
	if (colonp != -1) {
		if (j == 16)
			return 0;
		size_t tail = j - (size_t)colonp;
		memmove(a + 16 - tail, a + colonp, tail);
		memset(a + colonp, 0, 16 - tail - (size_t)colonp);
		j = 16;
	}
	if (j != 16)
		return 0;
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
	if (memcmp(a, mapped, 12) == 0) {
		memmove(a, a + 12, 4);
		return 4;
	}
	return 16;
}

static void to_hex(const uint8_t *a, unsigned n, char *out)
{
	static const char digits[] = "0123456789ABCDEF";
	for (unsigned i = 0; i < n; i++) {
		out[2 * i] = digits[a[i] >> 4];
		out[2 * i + 1] = digits[a[i] & 15];
	}
}

/* event-ruler compiles a CIDR into a range of upper-case hex digit strings (CIDR.cidr) that its
 * byte machine walks digit by digit, deciding as soon as the value is strictly inside: so the
 * value is the address's hex digits (a number: its text), only its first digits count, an IPv6
 * address can fall in an IPv4 range by its first eight digits and a short number in a wide
 * range. */
static bool cidr_match(const struct matcher *m, const char *s, size_t n, bool str)
{
	char hex[32], lo[32], hi[32];
	uint8_t a[16], b[16], t[16];
	const char *e = s;
	size_t en = n;
	if (str) {
		unsigned al = ip_parse(s, n, a);
		if (!al)
			return false;
		to_hex(a, al, hex);
		e = hex;
		en = 2u * al;
	}
	unsigned fam = m->family == 4 ? 4 : 16;
	for (unsigned i = 0; i < fam; i++) {
		unsigned keep = m->bits > 8 * i ? m->bits - 8 * i : 0;
		uint8_t mask = keep >= 8 ? 0xFF : (uint8_t)(0xFF << (8 - keep));
		b[i] = m->addr[i] & mask;
		t[i] = (uint8_t)(m->addr[i] | (uint8_t)~mask);
	}
	to_hex(b, fam, lo);
	to_hex(t, fam, hi);
	int phase = 0; /* 0: on both bounds, 1: on the lower one, 2: on the upper one */
	for (size_t i = 0; i < 2u * fam; i++) {
		if (i >= en)
			return false;
		char c = e[i];
		if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')))
			return false;
		if (phase == 0 && lo[i] == hi[i]) {
			if (c != lo[i])
				return false;
		} else if (phase == 0) {
			if (c > lo[i] && c < hi[i])
				return true;
			if (c != lo[i] && c != hi[i])
				return false;
			phase = c == lo[i] ? 1 : 2;
		} else if (phase == 1 ? c != lo[i] : c != hi[i]) {
			return phase == 1 ? c > lo[i] : c < hi[i];
		}
	}
	return true;
}

/* ---- equals-ignore-case as event-ruler has it ----
 *
 * EqualsIgnoreCaseParser: for each UTF-16 unit c of the pattern, the value must have, at that
 * point, the UTF-8 of String.valueOf(c).toLowerCase(Locale.ROOT) or of .toUpperCase(Locale.ROOT)
 * (icase_table.h); the value itself is never folded, so folding is one-way (ß matches "SS", "SS"
 * does not match ß) and a unit of a surrogate pair, alone, is "?". A pattern whose every character
 * has exactly the cases fold() merges is indexed by its folded text as before; any other is
 * compiled into a sequence of alternatives, [len][bytes][len][bytes] per unit (second len 0: one
 * alternative), and checked per value: only the slots with such patterns pay for it. */

static const struct icase_map *icase_lookup(uint32_t unit)
{
	size_t lo = 0, hi = sizeof icase_maps / sizeof *icase_maps;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (icase_maps[mid].unit == unit)
			return &icase_maps[mid];
		if (icase_maps[mid].unit < unit)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The code point at s (n bytes left) and its length; a byte that starts no valid sequence is
 * itself (length 1, code point UINT32_MAX). */
static uint32_t utf8_next(const unsigned char *s, size_t n, size_t *len)
{
	unsigned c = s[0], need = c < 0x80 ? 0 : c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 9;
	*len = 1;
	if (need == 0)
		return c;
	if (need == 9 || need >= n)
		return UINT32_MAX;
	uint32_t cp = c & (0x3Fu >> need);
	for (unsigned i = 1; i <= need; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return UINT32_MAX;
		cp = cp << 6 | (s[i] & 0x3Fu);
	}
	*len = need + 1;
	return cp;
}

static size_t utf8_put(uint32_t cp, char *o)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	o[0] = (char)(0xE0 | cp >> 12);
	o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
	o[2] = (char)(0x80 | (cp & 0x3F));
	return 3;
}

/* fold() on one code point */
static uint32_t fold_cp(uint32_t cp)
{
	if (cp >= 'A' && cp <= 'Z')
		return cp + 32;
	if ((cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) || (cp >= 0x391 && cp <= 0x3A9) ||
	    (cp >= 0x410 && cp <= 0x42F))
		return cp + 0x20;
	if (cp >= 0x400 && cp <= 0x40F)
		return cp + 0x50;
	return cp;
}

/* The one code point s (NUL-terminated) holds, or UINT32_MAX. */
static uint32_t single_cp(const char *s)
{
	size_t n = strlen(s), len;
	uint32_t cp = utf8_next((const unsigned char *)s, n, &len);
	return len == n ? cp : UINT32_MAX;
}

/* True when fold() matches exactly the event characters event-ruler accepts for cp: the values
 * with fold(x) == fold(cp) are the lower and upper case of cp and nothing else. */
static bool fold_is_exact(uint32_t cp)
{
	const struct icase_map *e = icase_lookup(cp);
	uint32_t lo = e ? single_cp(e->lower) : cp, up = e ? single_cp(e->upper) : cp;
	if (lo == UINT32_MAX || up == UINT32_MAX)
		return false;
	const int64_t deltas[] = {0, 0x20, -0x20, 0x50, -0x50};
	uint32_t f = fold_cp(cp);
	bool seen_lo = false, seen_up = false;
	for (size_t i = 0; i < sizeof deltas / sizeof *deltas; i++) {
		int64_t x = (int64_t)cp + deltas[i];
		if (x < 0 || (x >= 0xD800 && x <= 0xDFFF) || fold_cp((uint32_t)x) != f)
			continue;
		if ((uint32_t)x == lo)
			seen_lo = true;
		else if ((uint32_t)x == up)
			seen_up = true;
		else
			return false;
	}
	return seen_lo && seen_up;
}

/* Does the sequence of m match s (equals), a prefix of s, or a suffix of s (by kind)? The
 * positions of s each unit can end at, unit by unit. */
static bool icase_seq_match(const struct matcher *m, const char *s, size_t n)
{
	bool stackreach[2][257], *reach[2];
	bool *heap = NULL;
	if (n + 1 <= 257) {
		reach[0] = stackreach[0];
		reach[1] = stackreach[1];
	} else {
		if (!(heap = malloc(2 * (n + 1))))
			return false;
		reach[0] = heap;
		reach[1] = heap + n + 1;
	}
	bool *cur = reach[0], *next = reach[1], any = true;
	for (size_t p = 0; p <= n; p++)
		cur[p] = m->kind == M_ISUFFIX || p == 0;
	const unsigned char *q = (const unsigned char *)m->text, *end = q + m->len;
	while (q < end && any) {
		size_t al = q[0], bl = q[1 + al];
		const char *a = (const char *)q + 1, *b = (const char *)q + 2 + al;
		memset(next, 0, n + 1);
		any = false;
		for (size_t p = 0; p <= n; p++) {
			if (!cur[p])
				continue;
			if (al <= n - p && memcmp(s + p, a, al) == 0)
				any = next[p + al] = true;
			if (bl && bl <= n - p && memcmp(s + p, b, bl) == 0)
				any = next[p + bl] = true;
		}
		q += 2 + al + bl;
		bool *t = cur;
		cur = next;
		next = t;
	}
	bool ok = false;
	if (any) {
		if (m->kind == M_IPREFIX)
			for (size_t p = 0; p <= n && !ok; p++)
				ok = cur[p];
		else
			ok = cur[n];
	}
	free(heap);
	return ok;
}

static bool icase_eq(const char *a, const char *folded, size_t n, char *scratch)
{
	fold(scratch, a, n);
	return memcmp(scratch, folded, n) == 0;
}

static bool matcher_eval(const struct matcher *m, const struct kr_view *v,
			 const struct kr_value *val)
{
	const char *s = kr_view_text(v, val);
	size_t n = val->len;
	bool str = val->type == KR_V_STRING;
	char stackbuf[256];
	char *scratch = stackbuf;
	bool ok = false;
	if ((m->kind == M_ICASE || m->kind == M_IPREFIX || m->kind == M_ISUFFIX) && str &&
	    !m->icomplex && m->len > sizeof stackbuf) {
		scratch = malloc(m->len);
		if (!scratch)
			return false;
	}
	if (m->icomplex) {
		ok = str && icase_seq_match(m, s, n);
		if (scratch != stackbuf)
			free(scratch);
		return ok;
	}
	switch (m->kind) {
	case M_EXACT:
		if (val->type == KR_V_NUMBER && m->vtype == KR_V_NUMBER) {
			char key[NUMKEY_LEN];
			s = num_cmp_text(s, &n, key);
			ok = n == m->len && memcmp(s, m->text, n) == 0;
		} else {
			ok = val->type == m->vtype && n == m->len && memcmp(s, m->text, n) == 0;
		}
		break;
	case M_PREFIX:
		ok = str && n >= m->len && memcmp(s, m->text, m->len) == 0;
		break;
	case M_SUFFIX:
		ok = str && n >= m->len && memcmp(s + n - m->len, m->text, m->len) == 0;
		break;
	case M_ICASE:
		ok = str && n == m->len && icase_eq(s, m->text, n, scratch);
		break;
	case M_IPREFIX:
		ok = str && n >= m->len && icase_eq(s, m->text, m->len, scratch);
		break;
	case M_ISUFFIX:
		ok = str && n >= m->len && icase_eq(s + n - m->len, m->text, m->len, scratch);
		break;
	case M_IP: {
		uint8_t a[16];
		/* a one-address range (CIDR.ipToRangeIfPossible): the first digits count, as above */
		ok = str && ip_parse(s, n, a) >= m->len && memcmp(a, m->text, m->len) == 0;
		break;
	}
	case M_WILDCARD:
		ok = str && wildcard_match(m, s, n);
		break;
	case M_NUMERIC:
		if (val->type == KR_V_NUMBER) {
			char key[NUMKEY_LEN];
			double d;
			/* a number event-ruler cannot represent is text to it: never in a range */
			ok = num_key(s, n, key, &d) &&
			     (!m->has_lo || (m->lo_incl ? d >= m->lo : d > m->lo)) &&
			     (!m->has_hi || (m->hi_incl ? d <= m->hi : d < m->hi));
		}
		break;
	case M_EXISTS:
		ok = true;
		break;
	case M_ABSENT:
		ok = false;
		break;
	case M_CIDR:
		ok = (str || val->type == KR_V_NUMBER) && cidr_match(m, s, n, str);
		break;
	case M_ANYBUT:
		ok = true;
		for (uint32_t i = 0; i < m->nsubs && ok; i++)
			ok = !matcher_eval(&m->subs[i], v, val);
		break;
	}
	if (scratch != stackbuf)
		free(scratch);
	return ok;
}

/* ---- compiling one pattern ---- */

struct pathstack {
	const char *segs[64];
	size_t lens[64];
	size_t n;
};

struct fspec {
	uint32_t slot;
	uint32_t m_off, m_n;
	bool absent_ok;
};

struct conj {
	struct fspec *f;
	size_t n;
};

struct conjlist {
	struct conj *c;
	size_t n;
};

struct compiler {
	struct kr_rules *r;
	const struct kr_json **bad;
	char *err;
	struct pathstack path;
	uint32_t m_start; /* matchers added by this rule start here */
	bool or_plain;    /* "$or" is an ordinary field name (the second reading, kr_rules_add) */
	bool saw_or;      /* the pattern has a "$or" key */
	/* numeric ranges open beyond ±DBL_MAX (check_extreme): their matchers and nodes */
	struct { uint32_t m; const struct kr_json *at; } extreme[8];
	uint32_t nextreme;
};

/* Names event-ruler (Constants.RESERVED_FIELD_NAMES_IN_OR_RELATIONSHIP) refuses as fields inside
 * a $or branch. */
static const char *const or_reserved[] = {
	"exactly", "equals-ignore-case", "prefix", "suffix", "anything-but", "exists", "wildcard",
	"numeric", "cidr", "=", "<", "<=", ">", ">=", "regex", "not-wildcard",
	"not-equals-ignore-case", "date-after", "date-on-or-after", "date-before",
	"date-on-or-before", "in-date-range", "ip-address-in-range", "ip-address-not-in-range"};

static bool or_reserved_name(const char *k)
{
	for (size_t i = 0; i < sizeof or_reserved / sizeof *or_reserved; i++)
		if (strcmp(k, or_reserved[i]) == 0)
			return true;
	return false;
}

static void path_name(const struct pathstack *p, char *buf, size_t cap)
{
	size_t o = 0;
	buf[0] = 0;
	for (size_t i = 0; i < p->n && o + 1 < cap; i++) {
		int w = snprintf(buf + o, cap - o, "%s%.*s", i ? "." : "", (int)p->lens[i], p->segs[i]);
		if (w < 0)
			break;
		o += (size_t)w;
	}
}

static enum kr_err perr(struct compiler *c, const struct kr_json *node, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static enum kr_err perr(struct compiler *c, const struct kr_json *node, const char *fmt, ...)
{
	char reason[256], path[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof reason, fmt, ap);
	va_end(ap);
	path_name(&c->path, path, sizeof path);
	if (c->bad)
		*c->bad = node;
	if (path[0])
		return kr_errf(c->err, KR_ERR_PATTERN,
			       "Event pattern is not valid. Reason: %s (at field \"%s\")", reason, path);
	return kr_errf(c->err, KR_ERR_PATTERN, "Event pattern is not valid. Reason: %s", reason);
}

static void conjlist_free(struct conjlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->c[i].f);
	free(l->c);
	l->c = NULL;
	l->n = 0;
}

static struct matcher *new_matcher(struct compiler *c)
{
	struct kr_rules *r = c->r;
	struct matcher *m = grow(r->matchers, &r->capmatchers, r->nmatchers + 1, sizeof *m);
	if (!m)
		return NULL;
	r->matchers = m;
	m = &r->matchers[r->nmatchers++];
	memset(m, 0, sizeof *m);
	return m;
}

static enum kr_err set_text(struct compiler *c, struct matcher *m, const char *s, size_t n,
			    bool folded)
{
	char *tmp = NULL;
	if (folded) {
		if (!(tmp = malloc(n + 1)))
			return kr_errf(c->err, KR_ERR_NOMEM, "out of memory");
		fold(tmp, s, n);
		s = tmp;
	}
	m->text = (char *)strpool_intern(&c->r->strings, s, n);
	free(tmp);
	if (!m->text)
		return kr_errf(c->err, KR_ERR_NOMEM, "out of memory");
	m->len = (uint32_t)n;
	return KR_OK;
}

/* Compiles the ignore-case text s into m (kind set by the caller). */
static enum kr_err icase_compile(struct compiler *c, struct matcher *m, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	bool exact = true;
	for (size_t i = 0, len; i < n && exact; i += len) {
		uint32_t cp = utf8_next(u + i, n - i, &len);
		exact = cp != UINT32_MAX && cp <= 0xFFFF && fold_is_exact(cp);
	}
	if (exact)
		return set_text(c, m, s, n, true);
	/* per unit at most 2 + 2 * 9 bytes (a unit's full mapping is at most three characters) */
	char *seq = malloc(n * 20 + 1);
	if (!seq)
		return kr_errf(c->err, KR_ERR_NOMEM, "out of memory");
	size_t o = 0;
	for (size_t i = 0, len; i < n; i += len) {
		uint32_t cp = utf8_next(u + i, n - i, &len);
		if (cp == UINT32_MAX || cp > 0xFFFF) {
			/* a byte that is no character stands for itself; a character outside the BMP is
			 * two surrogates, each written "?" */
			for (unsigned k = 0; k < (cp == UINT32_MAX ? 1u : 2u); k++) {
				seq[o++] = 1;
				seq[o++] = cp == UINT32_MAX ? (char)u[i] : '?';
				seq[o++] = 0;
			}
			continue;
		}
		const struct icase_map *e = icase_lookup(cp);
		char self[3];
		size_t sl = utf8_put(cp, self);
		const char *a = e ? e->lower : self, *b = e ? e->upper : NULL;
		size_t al = e ? strlen(a) : sl, bl = b ? strlen(b) : 0;
		if (b && bl == al && memcmp(a, b, al) == 0)
			bl = 0;
		seq[o++] = (char)al;
		memcpy(seq + o, a, al);
		o += al;
		seq[o++] = (char)bl;
		if (bl)
			memcpy(seq + o, b, bl);
		o += bl;
	}
	m->icomplex = true;
	m->text_owned = true;
	m->text = seq;
	m->len = (uint32_t)o;
	return KR_OK;
}

static enum kr_err compile_wildcard(struct compiler *c, const struct kr_json *node,
				    struct matcher *m)
{
	const char *s = node->str;
	size_t n = node->len;
	m->kind = M_WILDCARD;
	m->text_owned = true;
	m->text = malloc(n + 1);
	m->chunks = malloc((n + 2) * sizeof *m->chunks);
	if (!m->text || !m->chunks)
		return kr_errf(c->err, KR_ERR_NOMEM, "out of memory");
	size_t o = 0, chunk = 0;
	bool any_lit = false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '*') {
			if (i + 1 < n && s[i + 1] == '*')
				return perr(c, node,
					    "Consecutive wildcard characters at pos %zu", i + 1);
			if (i == 0)
				m->lead = true;
			else
				m->chunks[m->nchunks++] = (uint32_t)chunk;
			chunk = 0;
			if (i == n - 1)
				m->trail = true;
			continue;
		}
		if (s[i] == '\\') {
			if (i + 1 >= n || (s[i + 1] != '*' && s[i + 1] != '\\'))
				return perr(c, node, "Invalid escape character at pos %zu", i + 1);
			i++;
		}
		m->text[o++] = s[i];
		chunk++;
		any_lit = true;
	}
	if (!m->trail && (any_lit || n == 0))
		m->chunks[m->nchunks++] = (uint32_t)chunk;
	m->text[o] = 0;
	m->len = (uint32_t)o;
	return KR_OK;
}

/* CIDR.cidr: String.split("/") (trailing empty parts dropped, so "10.0.0.0/8/" is valid), the
 * mask by Integer.parseInt ("+8", "08" and "-0" are valid), at most 31 bits for IPv4 and 127 for
 * IPv6 (event-ruler's limits: a /32 or /128 is an error there too). */
static enum kr_err compile_cidr(struct compiler *c, const struct kr_json *node, struct matcher *m)
{
	if (node->type != KR_JSON_STRING)
		return perr(c, node, "cidr must be a string in CIDR notation");
	const char *s = node->str;
	size_t n = node->len;
	while (n && s[n - 1] == '/')
		n--;
	const char *slash = memchr(s, '/', n);
	if (!slash || memchr(slash + 1, '/', n - (size_t)(slash + 1 - s)))
		return perr(c, node, "Malformed CIDR, one '/' required");
	const char *b = slash + 1, *end = s + n;
	bool neg = false;
	if (b < end && (*b == '+' || *b == '-'))
		neg = *b++ == '-';
	long bits = 0;
	if (b == end)
		return perr(c, node, "Malformed CIDR, mask bits must be an integer");
	for (; b < end; b++) {
		if (*b < '0' || *b > '9')
			return perr(c, node, "Malformed CIDR, mask bits must be an integer");
		bits = bits * 10 + (*b - '0');
		if (bits > 2147483648L)
			return perr(c, node, "Malformed CIDR, mask bits must be an integer");
	}
	if (!neg && bits > 2147483647L)
		return perr(c, node, "Malformed CIDR, mask bits must be an integer");
	if (neg && bits)
		return perr(c, node, "Malformed CIDR, mask bits must not be negative");
	m->kind = M_CIDR;
	m->family = (uint8_t)ip_parse(s, (size_t)(slash - s), m->addr);
	if (!m->family)
		return perr(c, node, "Invalid IP address: %.*s", (int)(slash - s), s);
	if (m->family == 4 && bits > 31)
		return perr(c, node, "IPv4 mask bits must be < 32 (prefix length 0-31)");
	if (m->family == 16 && bits > 127)
		return perr(c, node, "IPv6 mask bits must be < 128 (prefix length 0-127)");
	m->bits = (uint8_t)bits;
	return KR_OK;
}

/* "Cannot compare number" unless num_key can represent the number literal e. */
static enum kr_err check_comparable(struct compiler *c, const struct kr_json *e)
{
	char key[NUMKEY_LEN];
	double d;
	if (num_key(e->str, e->len, key, &d))
		return KR_OK;
	return perr(c, e,
		    "Cannot compare number %s: it is not exactly representable as a double (IEEE 754 "
		    "binary64) and can only be matched exactly",
		    e->str);
}

static enum kr_err compile_numeric(struct compiler *c, const struct kr_json *node,
				   struct matcher *m)
{
	m->kind = M_NUMERIC;
	if (node->type != KR_JSON_ARRAY || node->n == 0 || node->n % 2 || node->n > 4)
		return perr(c, node,
			    "Value of numeric must be an array of one or two operator/number pairs");
	for (size_t i = 0; i < node->n; i += 2) {
		const struct kr_json *op = node->items[i], *val = node->items[i + 1];
		if (op->type != KR_JSON_STRING)
			return perr(c, op, "Invalid member in numeric match: must be an operator string");
		if (val->type != KR_JSON_NUMBER)
			return perr(c, val, "Value of %s must be numeric", op->str);
		if (check_comparable(c, val))
			return KR_ERR_PATTERN;
		const char *o = op->str;
		if (i == 2 && !(m->has_lo && (strcmp(o, "<") == 0 || strcmp(o, "<=") == 0)))
			return perr(c, op, "Too many elements in numeric expression");
		if (strcmp(o, "=") == 0) {
			if (node->n != 2)
				return perr(c, op, "Invalid member in numeric match: \"=\" stands alone");
			m->has_lo = m->has_hi = 1;
			m->lo_incl = m->hi_incl = 1;
			m->lo = m->hi = val->num;
		} else if (strcmp(o, ">") == 0 || strcmp(o, ">=") == 0) {
			if (m->has_lo)
				return perr(c, op, "Invalid member in numeric match: two lower bounds");
			m->has_lo = 1;
			m->lo_incl = o[1] == '=';
			m->lo = val->num;
		} else if (strcmp(o, "<") == 0 || strcmp(o, "<=") == 0) {
			if (m->has_hi)
				return perr(c, op, "Invalid member in numeric match: two upper bounds");
			m->has_hi = 1;
			m->hi_incl = o[1] == '=';
			m->hi = val->num;
		} else {
			return perr(c, op, "Unrecognized numeric range operator: %s", o);
		}
	}
	if (node->n == 4 && !(m->has_lo && m->has_hi))
		return perr(c, node, "Invalid member in numeric match: a range needs a lower and an upper bound");
	if (m->has_lo && m->has_hi && node->n == 4 && !(m->lo < m->hi))
		return perr(c, node, "Bottom must be less than top");
	/* event-ruler fails on an open range that begins at the largest double or ends at the
	 * lowest when it adds the rule to its machine, so only where the field survives the $or
	 * expansion: kr_rules_add checks these then. */
	if (node->n == 2 && m->has_lo != m->has_hi && (m->has_lo ? m->lo >= DBL_MAX : m->hi <= -DBL_MAX)) {
		if (c->nextreme < sizeof c->extreme / sizeof *c->extreme) {
			c->extreme[c->nextreme].m = (uint32_t)(m - c->r->matchers);
			c->extreme[c->nextreme].at = node->items[1];
		}
		c->nextreme++;
	}
	return KR_OK;
}

/* An exact value; numbers by value where num_key represents them, else by text; an IP address
 * as an address. anything_but: a number must be representable, and an address is only text. */
static enum kr_err compile_exact(struct compiler *c, const struct kr_json *e, struct matcher *m,
				 bool anything_but)
{
	m->kind = M_EXACT;
	if (e->type == KR_JSON_NUMBER) {
		char key[NUMKEY_LEN];
		double d;
		size_t k = num_key(e->str, e->len, key, &d);
		if (!k && anything_but)
			return check_comparable(c, e);
		m->vtype = KR_V_NUMBER;
		return k ? set_text(c, m, key, k, false) : set_text(c, m, e->str, e->len, false);
	}
	uint8_t a[16];
	unsigned alen;
	if (e->type == KR_JSON_STRING && !anything_but && (alen = ip_parse(e->str, e->len, a))) {
		/* CIDR.ipToRangeIfPossible: an address matches every spelling of itself */
		m->kind = M_IP;
		m->vtype = KR_V_STRING;
		return set_text(c, m, (const char *)a, alen, false);
	}
	switch (e->type) {
	case KR_JSON_STRING: m->vtype = KR_V_STRING; break;
	case KR_JSON_NUMBER: m->vtype = KR_V_NUMBER; break;
	case KR_JSON_TRUE: m->vtype = KR_V_TRUE; break;
	case KR_JSON_FALSE: m->vtype = KR_V_FALSE; break;
	case KR_JSON_NULL: m->vtype = KR_V_NULL; break;
	default:
		return perr(c, e, "Match value must be String, number, true, false, or null");
	}
	return set_text(c, m, e->str ? e->str : "", e->str ? e->len : 0, false);
}

/* prefix / suffix: a string, or {"equals-ignore-case": string} */
static enum kr_err compile_affix(struct compiler *c, const struct kr_json *v, struct matcher *m,
				 bool prefix, const char *name)
{
	if (v->type == KR_JSON_STRING) {
		m->kind = prefix ? M_PREFIX : M_SUFFIX;
		return set_text(c, m, v->str, v->len, false);
	}
	if (v->type == KR_JSON_OBJECT && v->n == 1 && strcmp(v->keys[0], "equals-ignore-case") == 0) {
		const struct kr_json *s = v->items[0];
		if (s->type != KR_JSON_STRING)
			return perr(c, s, "equals-ignore-case match pattern must be a string");
		m->kind = prefix ? M_IPREFIX : M_ISUFFIX;
		return icase_compile(c, m, s->str, s->len);
	}
	return perr(c, v, "%s match pattern must be a string", name);
}

static enum kr_err compile_anything_but(struct compiler *c, const struct kr_json *v,
					struct matcher *m)
{
	m->kind = M_ANYBUT;
	const struct kr_json *list = v;
	const char *op = NULL;
	if (v->type == KR_JSON_OBJECT) {
		if (v->n != 1)
			return perr(c, v, "Only one key allowed in anything-but match expression");
		op = v->keys[0];
		list = v->items[0];
		if (strcmp(op, "prefix") && strcmp(op, "suffix") && strcmp(op, "wildcard") &&
		    strcmp(op, "equals-ignore-case"))
			return perr(c, v, "Unsupported anything-but pattern: %s", op);
		/* the second reading (kr_rules_add) is event-ruler's older compiler, which knows
		 * neither anything-but wildcard nor lists of prefixes or suffixes */
		if (c->or_plain && (strcmp(op, "wildcard") == 0 ||
				    (op[0] != 'e' && list->type == KR_JSON_ARRAY)))
			return perr(c, v, "Unsupported anything-but pattern: %s", op);
	}
	size_t n = list->type == KR_JSON_ARRAY ? list->n : 1;
	if (list->type == KR_JSON_ARRAY && n == 0)
		return perr(c, list, "Empty arrays are not allowed");
	m->subs = calloc(n, sizeof *m->subs);
	if (!m->subs)
		return kr_errf(c->err, KR_ERR_NOMEM, "out of memory");
	int seen_type = -1;
	for (size_t i = 0; i < n; i++) {
		const struct kr_json *e = list->type == KR_JSON_ARRAY ? list->items[i] : list;
		struct matcher *s = &m->subs[i];
		m->nsubs++;
		enum kr_err err;
		if (!op) {
			if (e->type != KR_JSON_STRING && e->type != KR_JSON_NUMBER)
				return perr(c, e, "Inside anything-but list, only strings and numbers are allowed");
			if (seen_type >= 0 && (int)e->type != seen_type)
				return perr(c, e, "Inside anything-but list, mixed types are not supported");
			seen_type = (int)e->type;
			err = compile_exact(c, e, s, true);
		} else if (e->type != KR_JSON_STRING) {
			return perr(c, e, "Inside anything-but/%s, only strings are allowed", op);
		} else if (strcmp(op, "prefix") == 0 || strcmp(op, "suffix") == 0) {
			if (e->len == 0)
				return perr(c, e, "Null prefix/suffix not allowed");
			s->kind = op[0] == 'p' ? M_PREFIX : M_SUFFIX;
			err = set_text(c, s, e->str, e->len, false);
		} else if (strcmp(op, "wildcard") == 0) {
			err = compile_wildcard(c, e, s);
		} else {
			s->kind = M_ICASE;
			err = icase_compile(c, s, e->str, e->len);
		}
		if (err)
			return err;
	}
	return KR_OK;
}

static enum kr_err compile_operator(struct compiler *c, const struct kr_json *e, struct matcher *m,
				    bool *absent)
{
	if (e->n != 1)
		return perr(c, e, "Only one key allowed in match expression");
	const char *k = e->keys[0];
	const struct kr_json *v = e->items[0];
	if (strcmp(k, "prefix") == 0)
		return compile_affix(c, v, m, true, "prefix");
	if (strcmp(k, "suffix") == 0)
		return compile_affix(c, v, m, false, "suffix");
	if (strcmp(k, "equals-ignore-case") == 0) {
		if (v->type != KR_JSON_STRING)
			return perr(c, v, "equals-ignore-case match pattern must be a string");
		m->kind = M_ICASE;
		return icase_compile(c, m, v->str, v->len);
	}
	if (strcmp(k, "wildcard") == 0) {
		if (v->type != KR_JSON_STRING)
			return perr(c, v, "wildcard match pattern must be a string");
		return compile_wildcard(c, v, m);
	}
	if (strcmp(k, "anything-but") == 0) {
		if (v->type != KR_JSON_STRING && v->type != KR_JSON_NUMBER &&
		    v->type != KR_JSON_ARRAY && v->type != KR_JSON_OBJECT)
			return perr(c, v, "Value of anything-but must be an array or single string/number value");
		return compile_anything_but(c, v, m);
	}
	if (strcmp(k, "numeric") == 0)
		return compile_numeric(c, v, m);
	if (strcmp(k, "exists") == 0) {
		if (v->type != KR_JSON_TRUE && v->type != KR_JSON_FALSE)
			return perr(c, v, "exists match pattern must be either true or false");
		m->kind = v->type == KR_JSON_TRUE ? M_EXISTS : M_ABSENT;
		if (m->kind == M_ABSENT)
			*absent = true;
		return KR_OK;
	}
	if (strcmp(k, "cidr") == 0)
		return compile_cidr(c, v, m);
	return perr(c, e, "Unrecognized match type %s", k);
}

/* A leaf: an array of values and operators on the current path. */
static enum kr_err compile_leaf(struct compiler *c, const struct kr_json *arr, struct fspec *out)
{
	if (arr->n == 0)
		return perr(c, arr, "Empty arrays are not allowed");
	uint32_t slot;
	if (kr_paths_add(c->r->paths, c->path.segs, c->path.lens, c->path.n, &slot) != KR_OK)
		return kr_errf(c->err, KR_ERR_NOMEM, "out of memory");
	out->slot = slot;
	out->m_off = c->r->nmatchers;
	out->m_n = 0;
	out->absent_ok = false;
	for (size_t i = 0; i < arr->n; i++) {
		const struct kr_json *e = arr->items[i];
		struct matcher *m = new_matcher(c);
		if (!m)
			return kr_errf(c->err, KR_ERR_NOMEM, "out of memory");
		out->m_n++;
		enum kr_err err;
		if (e->type == KR_JSON_OBJECT)
			err = compile_operator(c, e, m, &out->absent_ok);
		else
			err = compile_exact(c, e, m, false);
		if (err)
			return err;
	}
	return KR_OK;
}

/* Adds f to cj. A sub-rule is a map from path to condition, as event-ruler's (JsonRuleCompiler
 * writes each field with rule.put): a field already there is replaced, so a $or branch's field
 * replaces the outer one and a field written after the $or the branches' own. */
static enum kr_err conj_push(struct conj *cj, const struct fspec *f)
{
	for (size_t i = 0; i < cj->n; i++)
		if (cj->f[i].slot == f->slot) {
			cj->f[i] = *f;
			return KR_OK;
		}
	struct fspec *nf = realloc(cj->f, (cj->n + 1) * sizeof *nf);
	if (!nf)
		return KR_ERR_NOMEM;
	cj->f = nf;
	cj->f[cj->n++] = *f;
	return KR_OK;
}

/* out = a × b (every conjunction of a joined with every one of b). Frees a; b untouched. */
static enum kr_err product(struct compiler *c, struct conjlist *a, const struct conjlist *b,
			   const struct kr_json *at)
{
	if (a->n * b->n > MAX_SUBRULES_PER_RULE) {
		conjlist_free(a);
		return perr(c, at, "The pattern has more than %d $or combinations",
			    MAX_SUBRULES_PER_RULE);
	}
	if (b->n == 1) {
		/* a nested object without $or, the common case: extend a's conjunctions in place */
		const struct conj *bc = &b->c[0];
		for (size_t i = 0; i < a->n; i++)
			for (size_t j = 0; j < bc->n; j++)
				if (conj_push(&a->c[i], &bc->f[j])) {
					conjlist_free(a);
					return kr_errf(c->err, KR_ERR_NOMEM, "out of memory");
				}
		return KR_OK;
	}
	size_t total = a->n * b->n;
	struct conjlist out = {calloc(total ? total : 1, sizeof(struct conj)), 0};
	if (!out.c) {
		conjlist_free(a);
		return kr_errf(c->err, KR_ERR_NOMEM, "out of memory");
	}
	for (size_t i = 0; i < a->n; i++)
		for (size_t j = 0; j < b->n; j++) {
			struct conj *cj = &out.c[out.n++];
			cj->n = a->c[i].n;
			cj->f = malloc((a->c[i].n ? a->c[i].n : 1) * sizeof *cj->f);
			if (!cj->f) {
				conjlist_free(&out);
				conjlist_free(a);
				return kr_errf(c->err, KR_ERR_NOMEM, "out of memory");
			}
			if (a->c[i].n)
				memcpy(cj->f, a->c[i].f, a->c[i].n * sizeof *cj->f);
			for (size_t k = 0; k < b->c[j].n; k++)
				if (conj_push(cj, &b->c[j].f[k])) {
					conjlist_free(&out);
					conjlist_free(a);
					return kr_errf(c->err, KR_ERR_NOMEM, "out of memory");
				}
		}
	conjlist_free(a);
	*a = out;
	return KR_OK;
}

/* obj into out, in disjunctive normal form. in_or: obj is (inside) a $or branch. */
static enum kr_err expand(struct compiler *c, const struct kr_json *obj, struct conjlist *out,
			  unsigned depth, bool in_or)
{
	out->c = calloc(1, sizeof *out->c);
	out->n = 1;
	if (!out->c)
		return kr_errf(c->err, KR_ERR_NOMEM, "out of memory");
	if (obj->n == 0) {
		conjlist_free(out);
		return perr(c, obj, "Empty objects are not allowed");
	}
	if (depth > 32) {
		conjlist_free(out);
		return perr(c, obj, "Pattern nesting is too deep");
	}
	for (size_t i = 0; i < obj->n; i++) {
		const char *k = obj->keys[i];
		const struct kr_json *v = obj->items[i];
		enum kr_err e = KR_OK;
		if (strcmp(k, "$or") == 0)
			c->saw_or = true;
		if (!c->or_plain && strcmp(k, "$or") == 0) {
			if (v->type != KR_JSON_ARRAY || v->n < 2) {
				e = perr(c, v, "$or must be an array of at least two objects");
			} else {
				struct conjlist alts = {0};
				for (size_t j = 0; j < v->n && !e; j++) {
					const struct kr_json *alt = v->items[j];
					struct conjlist one;
					if (alt->type != KR_JSON_OBJECT) {
						e = perr(c, alt, "$or alternatives must be objects");
						break;
					}
					e = expand(c, alt, &one, depth + 1, true);
					if (e)
						break;
					if (alts.n + one.n > MAX_SUBRULES_PER_RULE) {
						conjlist_free(&one);
						e = perr(c, v, "The pattern has more than %d $or combinations",
							 MAX_SUBRULES_PER_RULE);
						break;
					}
					struct conj *nc = realloc(alts.c, (alts.n + one.n) * sizeof *nc);
					if (!nc) {
						conjlist_free(&one);
						e = kr_errf(c->err, KR_ERR_NOMEM, "out of memory");
						break;
					}
					alts.c = nc;
					memcpy(alts.c + alts.n, one.c, one.n * sizeof *nc);
					alts.n += one.n;
					free(one.c);
				}
				if (!e)
					e = product(c, out, &alts, v);
				conjlist_free(&alts);
			}
		} else {
			if (in_or && !c->or_plain && or_reserved_name(k)) {
				e = perr(c, v, "%s is a reserved name that cannot be a field inside $or", k);
			} else if (c->path.n >= 64) {
				e = perr(c, v, "Pattern nesting is too deep");
			} else {
				c->path.segs[c->path.n] = k;
				c->path.lens[c->path.n] = obj->keylens[i];
				c->path.n++;
				if (v->type == KR_JSON_ARRAY) {
					struct fspec f;
					e = compile_leaf(c, v, &f);
					for (size_t j = 0; j < out->n && !e; j++)
						if (conj_push(&out->c[j], &f))
							e = kr_errf(c->err, KR_ERR_NOMEM, "out of memory");
				} else if (v->type == KR_JSON_OBJECT) {
					struct conjlist sub;
					e = expand(c, v, &sub, depth + 1, in_or);
					if (!e) {
						e = product(c, out, &sub, v);
						conjlist_free(&sub);
					}
				} else {
					e = perr(c, v, "\"%s\" must be an object or an array", k);
				}
				if (!e)
					c->path.n--;
			}
		}
		if (e) {
			conjlist_free(out);
			return e;
		}
	}
	return KR_OK;
}

enum kr_err kr_rules_new(struct kr_rules **out)
{
	struct kr_rules *r = calloc(1, sizeof *r);
	if (!r)
		return KR_ERR_NOMEM;
	r->paths = kr_paths_new();
	if (!r->paths) {
		free(r);
		return KR_ERR_NOMEM;
	}
	*out = r;
	return KR_OK;
}

/* A numeric range with one bound at the largest double (or a "<" one at the lowest) has nothing
 * beyond it to compare: event-ruler fails with an internal error when such a field reaches its
 * machine. Give EventBridge's answer, an invalid pattern, with a clear reason, for the first one
 * a sub-rule keeps (a field a $or branch replaces never reaches the machine). */
static enum kr_err check_extreme(struct compiler *c, struct conjlist *dnf)
{
	for (size_t i = 0; i < dnf->n; i++)
		for (size_t j = 0; j < dnf->c[i].n; j++) {
			const struct fspec *f = &dnf->c[i].f[j];
			for (uint32_t k = f->m_off; k < f->m_off + f->m_n; k++) {
				const struct matcher *m = &c->r->matchers[k];
				if (m->kind != M_NUMERIC || m->has_lo == m->has_hi ||
				    !(m->has_lo ? m->lo >= DBL_MAX : m->hi <= -DBL_MAX))
					continue;
				if (c->bad) {
					*c->bad = NULL; /* where it is, when among the first eight */
					for (uint32_t x = 0; x < c->nextreme && x < 8; x++)
						if (c->extreme[x].m == k)
							*c->bad = c->extreme[x].at;
				}
				enum kr_err e = kr_errf(
					c->err, KR_ERR_PATTERN,
					"Event pattern is not valid. Reason: Cannot compare number %s: a "
					"range with one bound must %s (at field \"%s\")",
					m->has_lo ? "1.7976931348623157e308" : "-1.7976931348623157e308",
					m->has_lo ? "start below the largest number" : "end above the lowest number",
					c->r->paths->names[f->slot]);
				conjlist_free(dnf);
				return e;
			}
		}
	return KR_OK;
}

enum kr_err kr_rules_add(struct kr_rules *r, const struct kr_json *pattern,
			 const struct kr_json **bad, char *err)
{
	struct compiler c = {.r = r, .bad = bad, .err = err, .m_start = r->nmatchers};
	if (bad)
		*bad = NULL;
	if (r->built)
		return kr_errf(err, KR_ERR_PATTERN, "rule set already built");
	if (pattern->type != KR_JSON_OBJECT)
		return perr(&c, pattern, "Event pattern must be a JSON object");
	struct conjlist dnf;
	enum kr_err e = expand(&c, pattern, &dnf, 0, false);
	if (e == KR_ERR_PATTERN && c.saw_or) {
		/* event-ruler (GenericMachine.addRule) reads a pattern its JSON compiler refuses again
		 * with its older compiler, which has no $or: "$or" that is not an array of two objects
		 * or more, or whose branches name an operator, is then a field. When that fails too, the
		 * first reading's error says more. */
		char first[KR_ERRBUF];
		const struct kr_json *first_bad = bad ? *bad : NULL;
		snprintf(first, sizeof first, "%s", err ? err : "");
		for (uint32_t i = c.m_start; i < r->nmatchers; i++)
			matcher_fini(&r->matchers[i]);
		r->nmatchers = c.m_start;
		c.path.n = 0;
		c.nextreme = 0;
		c.or_plain = true;
		e = expand(&c, pattern, &dnf, 0, false);
		if (e == KR_ERR_PATTERN) {
			if (err)
				snprintf(err, KR_ERRBUF, "%s", first);
			if (bad)
				*bad = first_bad;
		}
	}
	if (!e && c.nextreme)
		e = check_extreme(&c, &dnf);
	if (!e) {
		uint32_t nc = 0;
		for (size_t i = 0; i < dnf.n; i++)
			nc += (uint32_t)dnf.c[i].n;
		struct sub *subs = grow(r->subs, &r->capsubs, r->nsubs + (uint32_t)dnf.n, sizeof *subs);
		if (subs)
			r->subs = subs;
		struct cond *conds = grow(r->conds, &r->capconds, r->nconds + nc, sizeof *conds);
		if (conds)
			r->conds = conds;
		if (!subs || !conds)
			e = kr_errf(err, KR_ERR_NOMEM, "out of memory");
	}
	if (e) {
		/* leave the rule set as it was; paths added stay harmlessly unused */
		for (uint32_t i = c.m_start; i < r->nmatchers; i++)
			matcher_fini(&r->matchers[i]);
		r->nmatchers = c.m_start;
		return e;
	}
	for (size_t i = 0; i < dnf.n; i++) {
		struct sub *s = &r->subs[r->nsubs];
		s->rule = r->nrules;
		s->c_off = r->nconds;
		s->c_n = (uint32_t)dnf.c[i].n;
		for (size_t j = 0; j < dnf.c[i].n; j++) {
			const struct fspec *f = &dnf.c[i].f[j];
			struct cond *cd = &r->conds[r->nconds++];
			cd->sub = r->nsubs;
			cd->slot = f->slot;
			cd->m_off = f->m_off;
			cd->m_n = f->m_n;
			cd->absent_ok = f->absent_ok;
		}
		r->nsubs++;
	}
	conjlist_free(&dnf);
	r->nrules++;
	return KR_OK;
}

/* ---- index ---- */

static inline uint32_t tag_of(uint64_t h)
{
	return (uint32_t)(h >> 32) | 1u;
}

static inline uint16_t tag16_of(uint64_t h)
{
	return (uint16_t)(h >> 48) | 1u;
}

static struct ientry *table_find(const struct kr_rules *r, uint64_t h, uint32_t slot,
				 uint8_t kind, const char *s, size_t n)
{
	if (!r->tcap)
		return NULL;
	uint32_t mask = r->tcap - 1, tag = tag_of(h);
	for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
		uint32_t t = r->tags[i];
		if (!t)
			return NULL;
		if (t != tag)
			continue;
		struct ientry *e = &r->table[i];
		if (e->h == h && e->slot == slot && e->kind == kind && e->len == n &&
		    memcmp(e->text, s, n) == 0)
			return e;
	}
}

/* An empty table of at least twice as many slots as keys (load factor <= 1/2). */
static enum kr_err table_alloc(struct kr_rules *r, uint32_t keys)
{
	uint32_t cap = 16;
	while (cap < keys * 2 + 2)
		cap *= 2;
	r->table = calloc(cap, sizeof *r->table);
	r->tags = calloc(cap, sizeof *r->tags);
	r->torder = malloc(((size_t)keys + 1) * sizeof *r->torder);
	r->tcap = cap;
	r->tn = 0;
	return r->table && r->tags && r->torder ? KR_OK : KR_ERR_NOMEM;
}

/* Adds cond under key (slot, kind, s). */
static enum kr_err table_add(struct kr_rules *r, uint32_t slot, uint8_t kind, const char *s,
			     size_t n, uint32_t cond)
{
	uint64_t h = key_hash(slot, kind, s, n);
	struct ientry *e = table_find(r, h, slot, kind, s, n);
	if (!e) {
		uint32_t mask = r->tcap - 1;
		uint32_t i = (uint32_t)h & mask;
		while (r->tags[i])
			i = (i + 1) & mask;
		r->tags[i] = tag_of(h);
		e = &r->table[i];
		e->h = h;
		e->slot = slot;
		e->kind = kind;
		e->text = s;
		e->len = (uint32_t)n;
		r->torder[r->tn++] = i;
	} else if (e->last == cond) {
		return KR_OK;
	}
	e->last = cond;
	uint32_t *nc = grow(e->conds, &e->cap, e->nconds + 1, sizeof *nc);
	if (!nc)
		return KR_ERR_NOMEM;
	e->conds = nc;
	e->conds[e->nconds++] = cond;
	return KR_OK;
}

static enum kr_err add_len(struct slotinfo *si, int which, uint32_t len)
{
	for (uint32_t i = 0; i < si->nplen[which]; i++)
		if (si->plen[which][i] == len)
			return KR_OK;
	uint32_t *p = realloc(si->plen[which], (si->nplen[which] + 1) * sizeof *p);
	if (!p)
		return KR_ERR_NOMEM;
	/* keep sorted so lookups can stop at the value's length */
	uint32_t i = si->nplen[which];
	while (i > 0 && p[i - 1] > len) {
		p[i] = p[i - 1];
		i--;
	}
	p[i] = len;
	si->plen[which] = p;
	si->nplen[which]++;
	return KR_OK;
}

static const uint8_t exact_kind[] = {
	[KR_V_STRING] = IX_STR, [KR_V_NUMBER] = IX_NUM, [KR_V_TRUE] = IX_TRUE,
	[KR_V_FALSE] = IX_FALSE, [KR_V_NULL] = IX_NULL};

static bool indexable(const struct matcher *m)
{
	return m->kind <= M_IP && !m->icomplex;
}

static uint8_t index_kind(const struct matcher *m)
{
	static const uint8_t ix[] = {[M_PREFIX] = IX_PREFIX, [M_SUFFIX] = IX_SUFFIX,
				     [M_ICASE] = IX_ICASE, [M_IPREFIX] = IX_IPREFIX,
				     [M_ISUFFIX] = IX_ISUFFIX, [M_IP] = IX_IP};
	return m->kind == M_EXACT ? exact_kind[m->vtype] : ix[m->kind];
}

/* Puts condition ci's matchers in the index: keys in the table, or the slot's scan list. */
static enum kr_err index_cond(struct kr_rules *r, uint32_t ci)
{
	const struct cond *cd = &r->conds[ci];
	struct slotinfo *si = &r->slots[cd->slot];
	for (uint32_t k = 0; k < cd->m_n; k++) {
		uint32_t mi = cd->m_off + k;
		const struct matcher *m = &r->matchers[mi];
		enum kr_err e = KR_OK;
		if (indexable(m)) {
			e = table_add(r, cd->slot, index_kind(m), m->text, m->len, ci);
			if (e)
				continue;
			si->kinds |= (uint16_t)(1u << index_kind(m));
			static const int which[] = {[M_PREFIX] = 0, [M_SUFFIX] = 1, [M_IPREFIX] = 2,
						    [M_ISUFFIX] = 3};
			if (m->kind != M_EXACT && m->kind != M_ICASE && m->kind != M_IP)
				e = add_len(si, which[m->kind], m->len);
			if (m->kind == M_ICASE || m->kind == M_IPREFIX || m->kind == M_ISUFFIX)
				si->icase = true;
		} else if (m->kind != M_ABSENT) {
			struct scanref *sc = realloc(si->scan, (si->nscan + 1) * sizeof *sc);
			if (!sc)
				return KR_ERR_NOMEM;
			si->scan = sc;
			sc[si->nscan].cond = ci;
			sc[si->nscan].m = mi;
			si->nscan++;
		}
		if (e)
			return e;
	}
	return KR_OK;
}

/* Frees the build-time table and its tags (not the frozen index). */
static void table_entries_free(struct kr_rules *r)
{
	for (uint32_t t = 0; r->table && t < r->tn; t++)
		free(r->table[r->torder[t]].conds);
	free(r->table);
	free(r->tags);
	free(r->torder);
	r->table = NULL;
	r->tags = NULL;
	r->torder = NULL;
}

static void table_free(struct kr_rules *r)
{
	table_entries_free(r);
	r->tcap = r->tn = 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Sorts n hashes: a radix sort, a byte per pass (8 passes, so the result ends where it began),
 * for large n; qsort's callback per comparison made it 9M instructions at 10,000 rules. */
static enum kr_err sort_u64(uint64_t *a, size_t n)
{
	if (n < 256) {
		qsort(a, n, sizeof *a, cmp_u64);
		return KR_OK;
	}
	uint64_t *tmp = malloc(n * sizeof *tmp), *from = a, *to = tmp;
	if (!tmp)
		return KR_ERR_NOMEM;
	for (unsigned shift = 0; shift < 64; shift += 8) {
		size_t count[257] = {0};
		for (size_t i = 0; i < n; i++)
			count[((from[i] >> shift) & 255) + 1]++;
		for (unsigned b = 0; b < 256; b++)
			count[b + 1] += count[b];
		for (size_t i = 0; i < n; i++)
			to[count[(from[i] >> shift) & 255]++] = from[i];
		uint64_t *t = from;
		from = to;
		to = t;
	}
	free(tmp);
	return KR_OK;
}

/* How many conditions an event value can wake up through this condition's keys (shares[] holds,
 * for each of its indexable matchers in turn, how many positive conditions have that key); a
 * matcher that cannot be indexed costs as much as a scan. */
static uint64_t anchor_cost(const struct kr_rules *r, const struct cond *cd, const uint32_t *shares)
{
	uint64_t cost = 0;
	for (uint32_t k = 0; k < cd->m_n; k++) {
		const struct matcher *m = &r->matchers[cd->m_off + k];
		cost += indexable(m) ? *shares++ : 1u << 24;
	}
	return cost;
}

/* A key too big for its bucket (fbucket below), in the overflow block: its text right behind a
 * 12-byte header, then its entries as 32-bit words, one entry per condition the key satisfies. */
struct frec {
	uint32_t slot_kind; /* slot << 4 | kind */
	uint32_t len;
	uint32_t nents;
	char text[];
};

/* An entry: word 0 the rule; word 1 the number of checks in its low byte (FENT_GENERAL: the
 * sub-rule goes through satisfy() and finalize(), and word 2 is the condition) and the first
 * check's id in its high half; further check ids follow as 16-bit halves. Checks are the
 * sub-rule's other conditions when they are all plain lists of exact values (the "detail-type +
 * key id" shape): a hit then verifies the rule without reading the conditions, sub-rules, matchers
 * or stamps of 10,000 rules, each a cache miss. Check ids index r->checks, where the few distinct
 * ones (the detail-types) stay in the cache. */
#define FENT_GENERAL 0xFFu
#define FENT_MAX_CHECKS 16u
#define MAX_CHECK_IDS 0xFFFFu

struct fcheck {
	const char *text;  /* interned */
	uint32_t slot, len;
	uint8_t vtype;
	uint8_t alt_more;  /* the next check is another value of the same condition (OR) */
};

/* The index proper: open addressing over 128-byte buckets, two cache lines that the parser's
 * hint prefetches together (a key id and up to ten rules fit in one), with a parallel array of
 * 16-bit tags that the probe reads first (tag 0: an empty bucket). A key that does not fit (long
 * text, many entries) has len FB_LONG, nents FB_EXT and in data the offset of its frec in
 * r->frozen. */
#define FB_LONG 0xFFFFu
#define FB_EXT 0xFFFFu

struct fbucket {
	uint32_t slot_kind;
	uint16_t len;
	uint16_t nents;
	char data[120]; /* the key text, 4-aligned, then its entries */
};

_Static_assert(sizeof(struct fbucket) == 128, "one bucket, two cache lines");

static inline uint32_t frec_kind_key(uint32_t slot, uint8_t kind)
{
	return slot << 4 | kind;
}

static inline const uint32_t *frec_entries(const struct frec *f)
{
	return (const uint32_t *)(const void *)(f->text + ((f->len + 3) & ~3u));
}

/* Words of an entry with nchecks checks. */
static inline uint32_t fent_words(uint32_t nchecks)
{
	if (nchecks == FENT_GENERAL)
		return 3;
	return 2 + (nchecks > 1 ? nchecks / 2 : 0);
}

/* How many checks condition ci's sub-rule needs besides its anchor ci, or FENT_GENERAL when a
 * condition is not a plain list of exact values. */
static uint32_t fent_checks(const struct kr_rules *r, uint32_t ci)
{
	const struct sub *s = &r->subs[r->conds[ci].sub];
	uint32_t n = 0;
	for (uint32_t k = 0; k < s->c_n; k++) {
		const struct cond *cd = &r->conds[s->c_off + k];
		if (s->c_off + k == ci)
			continue;
		if (cd->absent_ok || cd->m_n == 0)
			return FENT_GENERAL;
		for (uint32_t j = 0; j < cd->m_n; j++)
			if (r->matchers[cd->m_off + j].kind != M_EXACT ||
			    r->matchers[cd->m_off + j].vtype == KR_V_NUMBER) /* compared by num_key */
				return FENT_GENERAL;
		n += cd->m_n;
	}
	return n <= FENT_MAX_CHECKS ? n : FENT_GENERAL;
}

/* Build-time map from a check's fields to its id in r->checks. */
struct checkmap {
	uint32_t *ids; /* id + 1; 0 empty */
	uint32_t cap;
};

static uint64_t check_hash(const struct fcheck *c)
{
	uint64_t h = (uint64_t)(uintptr_t)c->text * 0x9E3779B97F4A7C15ULL;
	h ^= ((uint64_t)c->slot << 32 | (uint64_t)c->len << 8 | (uint64_t)c->vtype << 1 | c->alt_more) *
	     0xbf58476d1ce4e5b9ULL;
	return h ^ (h >> 29);
}

/* The id of check c, added if new; UINT32_MAX when out of memory or out of ids. */
static uint32_t check_id(struct kr_rules *r, struct checkmap *cm, const struct fcheck *c)
{
	if ((r->nchecks + 1) * 2 > cm->cap) {
		uint32_t cap = cm->cap ? cm->cap * 2 : 64;
		uint32_t *ids = calloc(cap, sizeof *ids);
		if (!ids)
			return UINT32_MAX;
		for (uint32_t i = 0; i < cm->cap; i++) {
			if (!cm->ids[i])
				continue;
			uint32_t j = (uint32_t)check_hash(&r->checks[cm->ids[i] - 1]) & (cap - 1);
			while (ids[j])
				j = (j + 1) & (cap - 1);
			ids[j] = cm->ids[i];
		}
		free(cm->ids);
		cm->ids = ids;
		cm->cap = cap;
	}
	uint32_t j = (uint32_t)check_hash(c) & (cm->cap - 1);
	for (; cm->ids[j]; j = (j + 1) & (cm->cap - 1)) {
		const struct fcheck *o = &r->checks[cm->ids[j] - 1];
		if (o->text == c->text && o->slot == c->slot && o->len == c->len &&
		    o->vtype == c->vtype && o->alt_more == c->alt_more)
			return cm->ids[j] - 1;
	}
	if (r->nchecks >= MAX_CHECK_IDS)
		return UINT32_MAX;
	struct fcheck *nc = grow(r->checks, &r->capchecks, r->nchecks + 1, sizeof *nc);
	if (!nc)
		return UINT32_MAX;
	r->checks = nc;
	r->checks[r->nchecks] = *c;
	cm->ids[j] = ++r->nchecks;
	return r->nchecks - 1;
}

/* Appends the entry for condition ci to words (room for fent_words(FENT_MAX_CHECKS) + 1 words);
 * returns the number of words written. */
static uint32_t fent_encode(struct kr_rules *r, struct checkmap *cm, uint32_t ci, uint32_t *w)
{
	const struct sub *s = &r->subs[r->conds[ci].sub];
	uint32_t nchecks = fent_checks(r, ci);
	uint32_t ids[FENT_MAX_CHECKS];
	uint32_t n = 0;
	for (uint32_t k = 0; nchecks != FENT_GENERAL && k < s->c_n; k++) {
		const struct cond *cd = &r->conds[s->c_off + k];
		if (s->c_off + k == ci)
			continue;
		for (uint32_t j = 0; j < cd->m_n && nchecks != FENT_GENERAL; j++) {
			const struct matcher *m = &r->matchers[cd->m_off + j];
			struct fcheck c = {.text = m->text, .slot = cd->slot, .len = m->len,
					   .vtype = m->vtype, .alt_more = j + 1 < cd->m_n};
			uint32_t id = check_id(r, cm, &c);
			if (id == UINT32_MAX)
				nchecks = FENT_GENERAL; /* verified the general way instead */
			else
				ids[n++] = id;
		}
	}
	w[0] = s->rule;
	if (nchecks == FENT_GENERAL) {
		w[1] = FENT_GENERAL;
		w[2] = ci;
		return 3;
	}
	w[1] = nchecks | (n ? ids[0] << 16 : 0);
	uint16_t *rest = (uint16_t *)(void *)(w + 2);
	for (uint32_t k = 1; k < n; k++)
		rest[k - 1] = (uint16_t)ids[k];
	if (n > 1 && (n - 1) % 2)
		rest[n - 1] = 0;
	return fent_words(nchecks);
}

/* Moves the build-time table (and its tags) into the buckets and the overflow block, and frees
 * it. */
static enum kr_err freeze(struct kr_rules *r)
{
	/* encode every key's entries first (their sizes depend on the check ids they get), keys in
	   the order they were added: the conditions, sub-rules and matchers an entry reads are then
	   read in the order they lie in memory, not at random */
	uint32_t *words = NULL, nwords = 0, capwords = 0;
	uint32_t *first = malloc(((size_t)r->tcap + 1) * sizeof *first); /* by table slot */
	struct checkmap cm = {0};
	enum kr_err err = first ? KR_OK : KR_ERR_NOMEM;
	for (uint32_t t = 0; t < r->tn && !err; t++) {
		const struct ientry *e = &r->table[r->torder[t]];
		first[r->torder[t]] = nwords;
		for (uint32_t k = 0; k < e->nconds && !err; k++) {
			uint32_t *nw = grow(words, &capwords, nwords + fent_words(FENT_MAX_CHECKS) + 1,
					    sizeof *nw);
			if (!nw) {
				err = KR_ERR_NOMEM;
				break;
			}
			words = nw;
			nwords += fent_encode(r, &cm, e->conds[k], words + nwords);
		}
	}
	free(cm.ids);
	/* an entry's words end where the next added key's begin */
#define WORDS_END(t) ((t) + 1 < r->tn ? first[r->torder[(t) + 1]] : nwords)
	/* then the buckets: a key whose text and entries fit goes whole into its bucket,
	   others into the overflow block (a frec), pointed to from the bucket */
	uint32_t bcap = 16;
	while (bcap < r->tn + r->tn / 2 + 1)
		bcap *= 2;
	size_t total = 8;
	for (uint32_t t = 0; t < r->tn && !err; t++) {
		const struct ientry *e = &r->table[r->torder[t]];
		size_t tl = (e->len + 3) & ~(size_t)3, nw = WORDS_END(t) - first[r->torder[t]];
		if (e->len >= FB_LONG || tl + nw * 4 > sizeof(((struct fbucket *)0)->data))
			total += sizeof(struct frec) + tl + nw * 4;
	}
	if (!err && total > UINT32_MAX)
		err = KR_ERR_LIMIT;
	if (!err) {
		r->frozen_len = total;
		r->frozen = malloc(total);
		/* read at random, for every event: in huge pages from 1 MiB on (see mem.h) */
		r->buckets = kr_big_alloc((size_t)bcap * sizeof *r->buckets, 128, KR_HUGE_PAGE / 2);
		r->btags = calloc(bcap, sizeof *r->btags);
		r->bcap = bcap;
		if (!r->frozen || !r->buckets || !r->btags)
			err = KR_ERR_NOMEM;
	}
	if (err) {
		free(words);
		free(first);
		return err;
	}
	memset(r->buckets, 0, (size_t)bcap * sizeof *r->buckets);
	size_t o = 8; /* offset 0 is never a record */
	for (uint32_t t = 0; t < r->tn; t++) {
		uint32_t i = r->torder[t];
		const struct ientry *e = &r->table[i];
		uint32_t bi = (uint32_t)e->h & (bcap - 1);
		while (r->btags[bi])
			bi = (bi + 1) & (bcap - 1);
		struct fbucket *b = &r->buckets[bi];
		size_t tl = (e->len + 3) & ~(size_t)3, nw = WORDS_END(t) - first[i];
		r->btags[bi] = tag16_of(e->h);
		b->slot_kind = frec_kind_key(e->slot, e->kind);
		if (e->len < FB_LONG && e->nconds < FB_EXT && tl + nw * 4 <= sizeof b->data) {
			b->len = (uint16_t)e->len;
			b->nents = (uint16_t)e->nconds;
			memcpy(b->data, e->text, e->len);
			memcpy(b->data + tl, words + first[i], nw * 4);
			continue;
		}
		/* too big for the bucket */
		struct frec *f = (struct frec *)(void *)(r->frozen + o);
		f->slot_kind = b->slot_kind;
		f->len = e->len;
		f->nents = e->nconds;
		memcpy(f->text, e->text, e->len);
		memcpy(f->text + tl, words + first[i], nw * 4);
		b->len = FB_LONG;
		b->nents = FB_EXT;
		uint32_t off = (uint32_t)o;
		memcpy(b->data, &off, sizeof off);
		o += sizeof(struct frec) + tl + nw * 4;
	}
#undef WORDS_END
	free(words);
	free(first);
	table_entries_free(r);
	return KR_OK;
}

/* The entries of key (slot, kind, s, n) and their number, or NULL. The probe runs over the
 * 16-bit tags (32 per cache line): a key that is not there costs no bucket read, and only a tag
 * hit reads a bucket. */
static const uint32_t *frozen_find(const struct kr_rules *r, uint64_t h, uint32_t slot,
				   uint8_t kind, const char *s, size_t n, uint32_t *nents)
{
	uint32_t mask = r->bcap - 1, sk = frec_kind_key(slot, kind);
	uint16_t tag = tag16_of(h);
	for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
		uint16_t t = r->btags[i];
		if (!t)
			return NULL;
		if (t != tag)
			continue;
		const struct fbucket *b = &r->buckets[i];
		if (b->slot_kind != sk)
			continue;
		if (b->nents != FB_EXT) {
			if (b->len == n && memcmp(b->data, s, n) == 0) {
				*nents = b->nents;
				return (const uint32_t *)(const void *)(b->data + ((n + 3) & ~(size_t)3));
			}
			continue;
		}
		uint32_t off;
		memcpy(&off, b->data, sizeof off);
		const struct frec *f = (const struct frec *)(const void *)(r->frozen + off);
		if (f->len == n && memcmp(f->text, s, n) == 0) {
			*nents = f->nents;
			return frec_entries(f);
		}
	}
}

#define PREFETCH_MIN_BYTES (256u * 1024u)

/* A value of an indexed slot was just parsed: start loading what its lookup will read when the
 * event is matched, so that it finds it in the cache: the line of tags, the key's home bucket
 * and the next one. Nothing here waits for memory. */
static uint64_t prefetch_key(const void *ctx, uint32_t slot, const char *s, size_t n)
{
	const struct kr_rules *r = ctx;
	uint64_t h = key_hash(slot, IX_STR, s, n);
	uint32_t i = (uint32_t)h & (r->bcap - 1);
	const char *b = (const char *)&r->buckets[i];
	__builtin_prefetch(&r->btags[i]);
	__builtin_prefetch(b);
	__builtin_prefetch(b + 64);
	/* linear probing leaves a key one bucket further about as often as not: its first line
	   holds the key and its first entries */
	__builtin_prefetch(&r->buckets[(i + 1) & (r->bcap - 1)]);
	return h; /* kept with the value: the lookup need not hash it again */
}

/* Each sub-rule is reached through one anchor condition, the one whose values the fewest other
 * conditions share (a key id rather than a detail-type that thousands of rules name); its other
 * conditions are checked only when the anchor fires. So an event wakes up the rules that can
 * match it, not every rule that shares its most common field. */
enum kr_err kr_rules_build(struct kr_rules *r)
{
	if (r->built)
		return KR_OK;
	r->nslots = r->paths->nslots;
	/* sub-rules are stored rule by rule: count them, then each rule's first */
	free(r->rule_subs);
	r->rule_subs = calloc(r->nrules + 2, sizeof *r->rule_subs);
	if (!r->rule_subs)
		return KR_ERR_NOMEM;
	for (uint32_t si = 0; si < r->nsubs; si++)
		r->rule_subs[r->subs[si].rule + 1]++;
	for (uint32_t i = 0; i < r->nrules; i++)
		r->rule_subs[i + 1] += r->rule_subs[i];
	r->slots = calloc(r->nslots + 1, sizeof *r->slots);
	r->always = malloc((r->nsubs + 1) * sizeof *r->always);
	/* how many positive conditions share each key: the keys' hashes, each with its position in
	   the list below its low bits, sorted; a run of one hash is the conditions that share it
	   (a collision of the bits kept only skews the estimate, never a match) */
	size_t nkeys = 0; /* conditions share matchers ($or alternatives): count per condition */
	for (uint32_t ci = 0; ci < r->nconds; ci++)
		nkeys += r->conds[ci].m_n;
	uint64_t *hs = malloc((nkeys + 1) * sizeof *hs);
	uint32_t *shares = malloc((nkeys + 1) * sizeof *shares);
	uint32_t *cpos = malloc(((size_t)r->nconds + 1) * sizeof *cpos); /* cond's first in shares */
	if (!r->slots || !r->always || !hs || !shares || !cpos) {
		free(hs);
		free(shares);
		free(cpos);
		return KR_ERR_NOMEM;
	}
	unsigned bits = 1;
	while (bits < 63 && ((uint64_t)1 << bits) <= nkeys)
		bits++;
	const uint64_t low = ((uint64_t)1 << bits) - 1;
	size_t nh = 0;
	for (uint32_t ci = 0; ci < r->nconds; ci++) {
		const struct cond *cd = &r->conds[ci];
		cpos[ci] = (uint32_t)nh;
		for (uint32_t k = 0; !cd->absent_ok && k < cd->m_n; k++) {
			const struct matcher *m = &r->matchers[cd->m_off + k];
			if (indexable(m)) {
				hs[nh] = (key_hash(cd->slot, index_kind(m), m->text, m->len) & ~low) | nh;
				nh++;
			}
		}
	}
	if (sort_u64(hs, nh) != KR_OK) {
		free(hs);
		free(shares);
		free(cpos);
		return KR_ERR_NOMEM;
	}
	for (size_t i = 0, j; i < nh; i = j) {
		for (j = i + 1; j < nh && (hs[j] & ~low) == (hs[i] & ~low); j++)
			;
		uint32_t run = j - i > UINT32_MAX ? UINT32_MAX : (uint32_t)(j - i);
		for (size_t k = i; k < j; k++)
			shares[hs[k] & low] = run;
	}
	for (uint32_t si = 0; si < r->nsubs; si++) {
		struct sub *s = &r->subs[si];
		uint64_t best = UINT64_MAX;
		s->anchor = NO_ANCHOR;
		for (uint32_t k = 0; k < s->c_n; k++) {
			const struct cond *cd = &r->conds[s->c_off + k];
			if (cd->absent_ok)
				continue;
			uint64_t c = anchor_cost(r, cd, shares + cpos[s->c_off + k]);
			if (c < best) {
				best = c;
				s->anchor = s->c_off + k;
			}
		}
		if (s->anchor == NO_ANCHOR)
			r->always[r->nalways++] = si;
	}
	free(shares);
	free(cpos);
	free(hs);
	uint32_t anchor_keys = 0;
	for (uint32_t si = 0; si < r->nsubs; si++)
		if (r->subs[si].anchor != NO_ANCHOR)
			anchor_keys += r->conds[r->subs[si].anchor].m_n;
	if (table_alloc(r, anchor_keys) != KR_OK)
		return KR_ERR_NOMEM;
	for (uint32_t si = 0; si < r->nsubs; si++)
		if (r->subs[si].anchor != NO_ANCHOR && index_cond(r, r->subs[si].anchor) != KR_OK)
			return KR_ERR_NOMEM;
	if (freeze(r) != KR_OK)
		return KR_ERR_NOMEM;
	for (uint32_t i = 0; i < r->nslots; i++) {
		struct slotinfo *si = &r->slots[i];
		si->exact_only = !si->icase && !si->nscan && !si->nplen[0] && !si->nplen[1] &&
				 !si->nplen[2] && !si->nplen[3] && !(si->kinds >> IX_IP & 1);
	}
	/* the slots with exact-string keys: the parser announces their values (prefetch_key); not
	 * worth its cost while the index is small enough to stay in the cache anyway */
	if ((size_t)r->bcap * sizeof *r->buckets + r->frozen_len < PREFETCH_MIN_BYTES) {
		r->built = true;
		return KR_OK;
	}
	uint8_t *hinted = calloc(r->nslots + 1, 1);
	if (!hinted)
		return KR_ERR_NOMEM;
	bool any = false;
	for (uint32_t i = 0; i < r->nslots; i++)
		any |= hinted[i] = (r->slots[i].kinds >> IX_STR & 1) != 0;
	enum kr_err e = any ? kr_paths_set_hint(r->paths, prefetch_key, r, hinted) : KR_OK;
	free(hinted);
	if (e)
		return e;
	r->built = true;
	return KR_OK;
}

uint32_t kr_rules_count(const struct kr_rules *r)
{
	return r->nrules;
}

const struct kr_paths *kr_rules_paths(const struct kr_rules *r)
{
	return r->paths;
}

void kr_rules_free(struct kr_rules *r)
{
	if (!r)
		return;
	for (uint32_t i = 0; i < r->nmatchers; i++)
		matcher_fini(&r->matchers[i]);
	free(r->matchers);
	free(r->conds);
	free(r->subs);
	free(r->always);
	table_free(r);
	free(r->frozen);
	free(r->buckets);
	free(r->btags);
	free(r->checks);
	free(r->rule_subs);
	strpool_free(&r->strings);
	for (uint32_t i = 0; i < r->nslots; i++) {
		for (int w = 0; w < 4; w++)
			free(r->slots[i].plen[w]);
		free(r->slots[i].scan);
	}
	free(r->slots);
	kr_paths_free(r->paths);
	free(r);
}

/* ---- matching ---- */

void kr_match_state_prefetch(struct kr_match_state *st, const void *base, size_t stride)
{
	st->pf_base = base;
	st->pf_stride = stride;
}

struct kr_match_state *kr_match_state_new(const struct kr_rules *r)
{
	struct kr_match_state *st = calloc(1, sizeof *st);
	if (!st)
		return NULL;
	st->r = r;
	st->cond_stamp = calloc(r->nconds + 1, sizeof *st->cond_stamp);
	st->sub_stamp = calloc(r->nsubs + 1, sizeof *st->sub_stamp);
	st->cond_res = calloc(r->nconds + 1, sizeof *st->cond_res);
	st->rule_stamp = calloc(r->nrules + 1, sizeof *st->rule_stamp);
	st->complete = calloc(r->nsubs + 1, sizeof *st->complete);
	st->out = calloc(r->nrules + 1, sizeof *st->out);
	if (!st->cond_stamp || !st->sub_stamp || !st->cond_res || !st->rule_stamp || !st->complete ||
	    !st->out) {
		kr_match_state_free(st);
		return NULL;
	}
	return st;
}

void kr_match_state_free(struct kr_match_state *st)
{
	if (!st)
		return;
	free(st->cond_stamp);
	free(st->sub_stamp);
	free(st->cond_res);
	free(st->rule_stamp);
	free(st->complete);
	free(st->out);
	free(st->fold);
	free(st);
}

/* An anchor condition fired: its sub-rule becomes a candidate. */
static inline void satisfy(const struct kr_rules *r, struct kr_match_state *st, uint32_t ci)
{
	uint32_t s = r->conds[ci].sub;
	if (st->sub_stamp[s] != st->gen) {
		st->sub_stamp[s] = st->gen;
		st->complete[st->ncomplete++] = s;
	}
}

/* The matched rules so far: a short list is searched, a long one uses the stamps (every rule in
 * it is stamped from the moment it grows past OUT_SCAN). */
#define OUT_SCAN 16u

static inline bool out_has(const struct kr_match_state *st, uint32_t rule)
{
	if (st->nout <= OUT_SCAN) {
		for (uint32_t i = 0; i < st->nout; i++)
			if (st->out[i] == rule)
				return true;
		return false;
	}
	return st->rule_stamp[rule] == st->gen;
}

static inline void out_add(struct kr_match_state *st, uint32_t rule)
{
	if (st->pf_base)
		__builtin_prefetch(st->pf_base + (size_t)rule * st->pf_stride);
	st->out[st->nout++] = rule;
	if (st->nout == OUT_SCAN + 1) {
		for (uint32_t i = 0; i < st->nout; i++)
			st->rule_stamp[st->out[i]] = st->gen;
	} else if (st->nout > OUT_SCAN + 1) {
		st->rule_stamp[rule] = st->gen;
	}
}

/* a and b, both n bytes long, are equal: up to 32 bytes (a detail-type) in overlapping 8-byte
 * loads, no call. */
static inline bool text_eq(const char *a, const char *b, size_t n)
{
	if (n < 8 || n > 32)
		return n == 0 || memcmp(a, b, n) == 0;
	uint64_t x, y, ok = 0;
	for (size_t i = 0; i + 8 < n; i += 8) {
		memcpy(&x, a + i, 8);
		memcpy(&y, b + i, 8);
		ok |= x ^ y;
	}
	memcpy(&x, a + n - 8, 8);
	memcpy(&y, b + n - 8, 8);
	return (ok | (x ^ y)) == 0;
}

static inline uint32_t check_at(uint32_t first, const uint16_t *rest, uint32_t k)
{
	return k ? rest[k - 1] : first;
}

/* An entry's n checks (ids first, rest[...]): every condition (a run of alternatives) has a value
 * equal to one of its alternatives. */
static bool fent_holds(const struct kr_rules *r, uint32_t first, const uint16_t *rest, uint32_t n,
		       const struct kr_view *v)
{
	uint32_t k = 0;
	while (k < n) {
		bool ok = false;
		const struct fcheck *c;
		for (;;) {
			c = &r->checks[check_at(first, rest, k++)];
			for (const struct kr_value *val = kr_view_first(v, c->slot); val && !ok;
			     val = kr_view_next(v, val))
				ok = val->type == c->vtype && val->len == c->len &&
				     text_eq(kr_view_text(v, val), c->text, c->len);
			if (ok || !c->alt_more || k >= n)
				break;
		}
		if (!ok)
			return false;
		while (c->alt_more && k < n) /* the rest of this condition's alternatives */
			c = &r->checks[check_at(first, rest, k++)];
	}
	return true;
}

/* The event has arrays of objects, where fields matched together must come from one element:
 * the sub-rules of rule anchored on this key go through the general path instead. */
static void satisfy_rule_key(const struct kr_rules *r, struct kr_match_state *st, uint32_t rule,
			     uint32_t slot, uint8_t kind, const char *s, size_t n)
{
	for (uint32_t si = r->rule_subs[rule]; si < r->rule_subs[rule + 1]; si++) {
		const struct sub *sb = &r->subs[si];
		if (sb->anchor == NO_ANCHOR || r->conds[sb->anchor].slot != slot)
			continue;
		const struct cond *cd = &r->conds[sb->anchor];
		for (uint32_t k = 0; k < cd->m_n; k++) {
			const struct matcher *m = &r->matchers[cd->m_off + k];
			if (indexable(m) && index_kind(m) == kind && m->len == n &&
			    (n == 0 || memcmp(m->text, s, n) == 0)) {
				satisfy(r, st, sb->anchor);
				break;
			}
		}
	}
}

static inline void lookup_hashed(const struct kr_rules *r, struct kr_match_state *st,
				 const struct kr_view *v, uint32_t slot, uint8_t kind, const char *s,
				 size_t n, uint64_t h)
{
	uint32_t nents;
	const uint32_t *w = frozen_find(r, h, slot, kind, s, n, &nents);
	if (!w)
		return;
	for (uint32_t i = 0; i < nents; i++) {
		uint32_t rule = w[0], nchecks = w[1] & 0xFF;
		if (nchecks == FENT_GENERAL)
			satisfy(r, st, w[2]);
		else if (nchecks && v->has_trails)
			satisfy_rule_key(r, st, rule, slot, kind, s, n);
		else if (!out_has(st, rule) &&
			 fent_holds(r, w[1] >> 16, (const uint16_t *)(const void *)(w + 2), nchecks, v))
			out_add(st, rule);
		w += fent_words(nchecks);
	}
}

static inline void lookup(const struct kr_rules *r, struct kr_match_state *st,
			  const struct kr_view *v, uint32_t slot, uint8_t kind, const char *s,
			  size_t n)
{
	lookup_hashed(r, st, v, slot, kind, s, n, key_hash(slot, kind, s, n));
}

static void match_value(const struct kr_rules *r, struct kr_match_state *st, uint32_t slot,
			const struct kr_view *v, const struct kr_value *val)
{
	const struct slotinfo *si = &r->slots[slot];
	const char *s = kr_view_text(v, val);
	size_t n = val->len;
	if (si->kinds >> exact_kind[val->type] & 1) {
		/* a hinted string's hash came with it (prefetch_key hashed it as IX_STR) */
		uint8_t kind = exact_kind[val->type];
		char key[NUMKEY_LEN];
		if (val->type == KR_V_NUMBER) {
			size_t kn = n;
			const char *k = num_cmp_text(s, &kn, key);
			lookup(r, st, v, slot, kind, k, kn);
		} else {
			lookup_hashed(r, st, v, slot, kind, s, n,
				      val->hinted ? val->hint : key_hash(slot, kind, s, n));
		}
	}
	if (si->exact_only)
		return;
	if (val->type == KR_V_STRING) {
		if (si->kinds >> IX_IP & 1) {
			uint8_t a[16];
			unsigned alen = ip_parse(s, n, a);
			if (alen)
				lookup(r, st, v, slot, IX_IP, (const char *)a, alen);
			if (alen == 16) /* an IPv4 address as the first digits of an IPv6 one */
				lookup(r, st, v, slot, IX_IP, (const char *)a, 4);
		}
		for (uint32_t i = 0; i < si->nplen[0] && si->plen[0][i] <= n; i++)
			lookup(r, st, v, slot, IX_PREFIX, s, si->plen[0][i]);
		for (uint32_t i = 0; i < si->nplen[1] && si->plen[1][i] <= n; i++)
			lookup(r, st, v, slot, IX_SUFFIX, s + n - si->plen[1][i], si->plen[1][i]);
		if (si->icase) {
			if (n + 1 > st->foldcap) {
				char *f = realloc(st->fold, n + 1);
				if (!f)
					return;
				st->fold = f;
				st->foldcap = n + 1;
			}
			fold(st->fold, s, n);
			const char *f = st->fold;
			if (si->kinds >> IX_ICASE & 1)
				lookup(r, st, v, slot, IX_ICASE, f, n);
			for (uint32_t i = 0; i < si->nplen[2] && si->plen[2][i] <= n; i++)
				lookup(r, st, v, slot, IX_IPREFIX, f, si->plen[2][i]);
			for (uint32_t i = 0; i < si->nplen[3] && si->plen[3][i] <= n; i++)
				lookup(r, st, v, slot, IX_ISUFFIX, f + n - si->plen[3][i], si->plen[3][i]);
		}
	}
	for (uint32_t i = 0; i < si->nscan; i++) {
		const struct scanref *sc = &si->scan[i];
		if (st->sub_stamp[r->conds[sc->cond].sub] != st->gen &&
		    matcher_eval(&r->matchers[sc->m], v, val))
			satisfy(r, st, sc->cond);
	}
}

static bool cond_eval(const struct kr_rules *r, const struct cond *cd, const struct kr_view *v,
		      const struct kr_value *val)
{
	for (uint32_t k = 0; k < cd->m_n; k++)
		if (matcher_eval(&r->matchers[cd->m_off + k], v, val))
			return true;
	return false;
}

static bool consistent_with(const struct kr_view *v, const struct kr_value *const *picked,
			    uint32_t n, const struct kr_value *val)
{
	for (uint32_t j = 0; j < n; j++)
		if (picked[j] && !kr_view_consistent(v, picked[j], val))
			return false;
	return true;
}

/* An absence condition ({"exists": false}, maybe with other matchers) relative to the values
 * picked for the positive conditions: satisfied by a matching value from the same element, or
 * when no value of its path sits in the same element. */
static bool absence_holds(const struct kr_rules *r, const struct cond *cd, const struct kr_view *v,
			  const struct kr_value *const *picked, uint32_t n)
{
	bool present = false;
	for (const struct kr_value *val = kr_view_first(v, cd->slot); val;
	     val = kr_view_next(v, val)) {
		if (!consistent_with(v, picked, n, val))
			continue;
		if (cond_eval(r, cd, v, val))
			return true;
		present = true;
	}
	return !present;
}

/* Backtracking: pick, for each positive condition from k on, a value that satisfies it and sits in
 * the same array elements as the values already picked; then check the absence conditions. */
static bool consistent_pick(const struct kr_rules *r, const struct sub *s, const struct kr_view *v,
			    uint32_t k, const struct kr_value **picked, unsigned *budget)
{
	while (k < s->c_n && r->conds[s->c_off + k].absent_ok)
		k++;
	if (k == s->c_n) {
		for (uint32_t j = 0; j < s->c_n; j++) {
			const struct cond *cd = &r->conds[s->c_off + j];
			if (cd->absent_ok && !absence_holds(r, cd, v, picked, s->c_n))
				return false;
		}
		return true;
	}
	const struct cond *cd = &r->conds[s->c_off + k];
	for (const struct kr_value *val = kr_view_first(v, cd->slot); val;
	     val = kr_view_next(v, val)) {
		if (--*budget == 0)
			return true; /* pathological: fall back to per-field semantics */
		if (!cond_eval(r, cd, v, val) || !consistent_with(v, picked, k, val))
			continue;
		picked[k] = val;
		if (consistent_pick(r, s, v, k + 1, picked, budget))
			return true;
		picked[k] = NULL;
	}
	return false;
}

static bool finalize(const struct kr_rules *r, struct kr_match_state *st, const struct kr_view *v,
		     uint32_t si)
{
	const struct sub *s = &r->subs[si];
	if (!v->has_trails || s->c_n < 2) {
		/* no arrays of objects involved: every field stands on its own */
		for (uint32_t k = 0; k < s->c_n; k++) {
			uint32_t ci = s->c_off + k;
			const struct cond *cd = &r->conds[ci];
			if (ci == s->anchor)
				continue;
			if (cd->absent_ok && !v->head[cd->slot])
				continue;
			if (st->cond_stamp[ci] != st->gen) {
				st->cond_stamp[ci] = st->gen;
				st->cond_res[ci] = 0;
				for (const struct kr_value *val = kr_view_first(v, cd->slot);
				     val && !st->cond_res[ci]; val = kr_view_next(v, val))
					st->cond_res[ci] = cond_eval(r, cd, v, val);
			}
			if (!st->cond_res[ci])
				return false;
		}
		return true;
	}
	const struct kr_value *stackpick[16];
	const struct kr_value **picked = stackpick;
	if (s->c_n > 16 && !(picked = calloc(s->c_n, sizeof *picked)))
		return false;
	memset(picked, 0, s->c_n * sizeof *picked);
	unsigned budget = 100000;
	bool ok = consistent_pick(r, s, v, 0, picked, &budget);
	if (picked != stackpick)
		free(picked);
	return ok;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

size_t kr_rules_match(const struct kr_rules *r, struct kr_match_state *st,
		      const struct kr_view *v, const uint32_t **ids)
{
	if (++st->gen == 0) {
		memset(st->cond_stamp, 0, r->nconds * sizeof *st->cond_stamp);
		memset(st->sub_stamp, 0, r->nsubs * sizeof *st->sub_stamp);
		memset(st->rule_stamp, 0, r->nrules * sizeof *st->rule_stamp);
		st->gen = 1;
	}
	st->ncomplete = 0;
	st->nout = 0;
	for (uint32_t t = 0; t < v->ntouched; t++) {
		uint32_t slot = v->touched[t];
		/* a slot only other conditions read (a detail-type checked from the key id's entry) */
		if (slot >= r->nslots || (r->slots[slot].exact_only && !r->slots[slot].kinds))
			continue;
		for (const struct kr_value *val = kr_view_first(v, slot); val;
		     val = kr_view_next(v, val))
			match_value(r, st, slot, v, val);
	}
	for (uint32_t i = 0; i < st->ncomplete + r->nalways; i++) {
		uint32_t si = i < st->ncomplete ? st->complete[i] : r->always[i - st->ncomplete];
		uint32_t rule = r->subs[si].rule;
		if (out_has(st, rule))
			continue;
		if (finalize(r, st, v, si))
			out_add(st, rule);
	}
	if (st->nout > 16) {
		qsort(st->out, st->nout, sizeof *st->out, cmp_u32);
	} else {
		/* a few ids, nearly always: insertion sort, no call */
		for (uint32_t i = 1; i < st->nout; i++) {
			uint32_t x = st->out[i], j = i;
			for (; j > 0 && st->out[j - 1] > x; j--)
				st->out[j] = st->out[j - 1];
			st->out[j] = x;
		}
	}
	*ids = st->out;
	return st->nout;
}
