/* kr_lex: yajl's callbacks for whole JSON values, without yajl (see lex.h).
 *
 * What yajl 2.1 does, and so what this file must do alike:
 * - white space is ' ', \t, \n, \r, \v and \f;
 * - a number is -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, handed over as text (yajl_number),
 *   and is over at the first byte that cannot go on it ("01" is two numbers, an error in a
 *   container);
 * - a string has no byte below 0x20 and only the escapes \" \\ \/ \b \f \n \r \t \uXXXX; it is
 *   passed as it stands in the text when it has no backslash, else decoded (\uXXXX to UTF-8);
 *   yajl's decoding of \u escapes of surrogates and of U+0000 has quirks of its own, so such a
 *   string is left to yajl (KR_LEX_SLOW), as is any byte >= 0x80 not in a well-formed UTF-8
 *   sequence (yajl checks only the shape of the sequence; well-formed ones all pass it);
 * - the bytes consumed that a callback sees are those up to the end of its token. */
#include "lex.h"

#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* 1: a byte that may stand in a string as it is and is ASCII (not '"', '\\', below 0x20) */
#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
static const uint8_t plain[256] = {
	R16(0), R16(0),                                 /* 0x00-0x1F: control characters */
	1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20-0x2F: '"' */
	R16(1), R16(1),                                 /* 0x30-0x4F */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* 0x50-0x5F: '\\' */
	R16(1), R16(1),                                 /* 0x60-0x7F; 0x80-0xFF: 0 */
};
#undef R16

#define ONES 0x0101010101010101ull

/* A mask with bit 7 of each of the 8 bytes at p set that is '"', '\\' or below 0x20, or with
 * high = ~0 (not with 0x7F...7F) at or above 0x80; a borrow may set the bit of a later byte, but
 * only after one that counts, so the mask is 0 exactly when no byte counts, and its lowest bit
 * is the first that does. */
static inline uint64_t special8(const unsigned char *p, uint64_t high)
{
	uint64_t x;
	memcpy(&x, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	x = __builtin_bswap64(x); /* byte p[0] in the low bits */
#endif
	uint64_t q = x ^ (ONES * '"'), b = x ^ (ONES * '\\');
	uint64_t hit = ((x - ONES * 0x20) | (q - ONES) | (b - ONES)) & ~x;
	return (hit | (x & high)) & ONES * 0x80;
}

/* The offset of the first byte that counts in a non-zero special8 mask. */
static inline unsigned first8(uint64_t m)
{
	return (unsigned)__builtin_ctzll(m) >> 3;
}

/* 1: white space as yajl reads it: ' ', \t, \n, \v, \f, \r */
static const uint8_t ws[256] = {['\t'] = 1, ['\n'] = 1, ['\v'] = 1, ['\f'] = 1, ['\r'] = 1, [' '] = 1};

static inline int is_ws(unsigned char c)
{
	return ws[c];
}

static inline int is_digit(unsigned char c)
{
	return (unsigned)(c - '0') < 10;
}

static int hex(unsigned char c)
{
	if (is_digit(c))
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* The string whose opening quote is at *pp: on KR_LEX_VALUE, *pp is just after its closing
 * quote and *esc says whether it had a backslash. */
static enum kr_lex_result scan_string(const unsigned char **pp, const unsigned char *e, int *esc)
{
	const unsigned char *p = *pp + 1;
	*esc = 0;
	for (;;) {
#ifdef __SSE2__
		/* 16 bytes at a time while there are 16: a byte counts when it is '"', '\\', or
		   below 0x20 compared as signed (so also at or above 0x80) */
		const __m128i quote = _mm_set1_epi8('"'), bsl = _mm_set1_epi8('\\'),
			      sp = _mm_set1_epi8(0x20);
		for (; p + 16 <= e; p += 16) {
			__m128i v = _mm_loadu_si128((const __m128i *)p);
			unsigned m16 = (unsigned)_mm_movemask_epi8(
				_mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bsl)),
					     _mm_cmplt_epi8(v, sp)));
			if (m16) {
				p += __builtin_ctz(m16);
				goto counts;
			}
		}
#endif
		uint64_t m;
		while (p + 8 <= e && !(m = special8(p, ~(uint64_t)0)))
			p += 8;
		if (p + 8 <= e)
			p += first8(m);
		else
			while (p < e && plain[*p])
				p++;
#ifdef __SSE2__
	counts:
#endif
		if (p >= e)
			return KR_LEX_MORE;
		unsigned char c = *p;
		if (c == '"') {
			*pp = p + 1;
			return KR_LEX_VALUE;
		}
		if (c == '\\') {
			*esc = 1;
			if (p + 1 >= e)
				return KR_LEX_MORE;
			c = p[1];
			if (c == 'u') {
				unsigned cp = 0;
				for (int i = 0; i < 4; i++) {
					if (p + 2 + i >= e)
						return KR_LEX_MORE;
					int h = hex(p[2 + i]);
					if (h < 0)
						return KR_LEX_SLOW;
					cp = cp << 4 | (unsigned)h;
				}
				if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF))
					return KR_LEX_SLOW;
				p += 6;
			} else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' ||
				   c == 'n' || c == 'r' || c == 't') {
				p += 2;
			} else {
				return KR_LEX_SLOW;
			}
			continue;
		}
		if (c < 0x80)
			return KR_LEX_SLOW; /* a control character */
		/* a UTF-8 sequence, well-formed (RFC 3629) */
		unsigned len, lo = 0x80, hi = 0xBF;
		if (c >= 0xC2 && c <= 0xDF)
			len = 2;
		else if (c >= 0xE0 && c <= 0xEF) {
			len = 3;
			if (c == 0xE0)
				lo = 0xA0;
			else if (c == 0xED)
				hi = 0x9F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			len = 4;
			if (c == 0xF0)
				lo = 0x90;
			else if (c == 0xF4)
				hi = 0x8F;
		} else {
			return KR_LEX_SLOW;
		}
		for (unsigned i = 1; i < len; i++) {
			if (p + i >= e)
				return KR_LEX_MORE;
			unsigned char d = p[i];
			if (d < (i == 1 ? lo : 0x80) || d > (i == 1 ? hi : 0xBF))
				return KR_LEX_SLOW;
		}
		p += len;
	}
}

/* The number at *pp: on KR_LEX_VALUE, *pp is just after it (a byte that cannot go on it
 * follows). */
static enum kr_lex_result scan_number(const unsigned char **pp, const unsigned char *e)
{
	const unsigned char *p = *pp;
	if (*p == '-')
		p++;
	if (p >= e)
		return KR_LEX_MORE;
	if (*p == '0') {
		p++;
	} else if (is_digit(*p)) {
		while (p < e && is_digit(*p))
			p++;
	} else {
		return KR_LEX_SLOW;
	}
	if (p < e && *p == '.') {
		p++;
		if (p >= e)
			return KR_LEX_MORE;
		if (!is_digit(*p))
			return KR_LEX_SLOW;
		while (p < e && is_digit(*p))
			p++;
	}
	if (p < e && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < e && (*p == '+' || *p == '-'))
			p++;
		if (p >= e)
			return KR_LEX_MORE;
		if (!is_digit(*p))
			return KR_LEX_SLOW;
		while (p < e && is_digit(*p))
			p++;
	}
	if (p >= e)
		return KR_LEX_MORE;
	*pp = p;
	return KR_LEX_VALUE;
}

static enum kr_lex_result scan_literal(const unsigned char **pp, const unsigned char *e,
				       const char *lit, size_t n)
{
	const unsigned char *p = *pp;
	size_t have = (size_t)(e - p) < n ? (size_t)(e - p) : n;
	if (memcmp(p, lit, have) != 0)
		return KR_LEX_SLOW;
	if (have < n)
		return KR_LEX_MORE;
	*pp = p + n;
	return KR_LEX_VALUE;
}

enum kr_lex_result kr_lex_scan(const char *text, size_t n, size_t *end)
{
	const unsigned char *p = (const unsigned char *)text, *e = p + n;
	uint64_t objects = 0; /* bit d: the container at depth d + 1 is an object */
	unsigned depth = 0;
	enum kr_lex_result r;
	int esc;

value:
	while (p < e && is_ws(*p))
		p++;
	if (p >= e)
		return KR_LEX_MORE;
	switch (*p) {
	case '{':
		if (depth == KR_LEX_DEPTH)
			return KR_LEX_SLOW;
		objects |= (uint64_t)1 << depth++;
		p++;
		while (p < e && is_ws(*p))
			p++;
		if (p >= e)
			return KR_LEX_MORE;
		if (*p == '}') {
			p++;
			depth--;
			goto after;
		}
		goto key;
	case '[':
		if (depth == KR_LEX_DEPTH)
			return KR_LEX_SLOW;
		objects &= ~((uint64_t)1 << depth++);
		p++;
		while (p < e && is_ws(*p))
			p++;
		if (p >= e)
			return KR_LEX_MORE;
		if (*p == ']') {
			p++;
			depth--;
			goto after;
		}
		goto value;
	case '"':
		r = scan_string(&p, e, &esc);
		break;
	case 't':
		r = scan_literal(&p, e, "true", 4);
		break;
	case 'f':
		r = scan_literal(&p, e, "false", 5);
		break;
	case 'n':
		r = scan_literal(&p, e, "null", 4);
		break;
	default:
		r = scan_number(&p, e);
		break;
	}
	if (r != KR_LEX_VALUE)
		return r;
after:
	if (depth == 0) {
		*end = (size_t)(p - (const unsigned char *)text);
		return KR_LEX_VALUE;
	}
	while (p < e && is_ws(*p))
		p++;
	if (p >= e)
		return KR_LEX_MORE;
	if (*p == ',') {
		p++;
		if (!(objects >> (depth - 1) & 1))
			goto value;
		while (p < e && is_ws(*p))
			p++;
		if (p >= e)
			return KR_LEX_MORE;
		goto key;
	}
	if (*p != ((objects >> (depth - 1) & 1) ? '}' : ']'))
		return KR_LEX_SLOW;
	p++;
	depth--;
	goto after;
key:
	if (*p != '"')
		return KR_LEX_SLOW;
	r = scan_string(&p, e, &esc);
	if (r != KR_LEX_VALUE)
		return r;
	while (p < e && is_ws(*p))
		p++;
	if (p >= e)
		return KR_LEX_MORE;
	if (*p != ':')
		return KR_LEX_SLOW;
	p++;
	goto value;
}

bool kr_lex_whole(const char *text, size_t n, size_t *start, size_t *len)
{
	size_t i = 0, vlen;
	while (i < n && is_ws((unsigned char)text[i]))
		i++;
	if (i == n || (text[i] != '{' && text[i] != '[') ||
	    kr_lex_scan(text + i, n - i, &vlen) != KR_LEX_VALUE)
		return false;
	for (size_t j = i + vlen; j < n; j++)
		if (!is_ws((unsigned char)text[j]))
			return false;
	*start = i;
	*len = vlen;
	return true;
}

/* Decodes the string body s[0..n) (checked by scan_string: valid escapes, no surrogate or
 * U+0000 escape), appending it to b, as yajl_string_decode does. */
static inline int decode_to(struct kr_buf *b, const unsigned char *s, size_t n)
{
	if (!kr_buf_reserve(b, n + 1))
		return -1;
	char *o = b->p + b->len;
	size_t i = 0;
	for (;;) {
#ifdef __SSE2__
		/* the bytes up to the next backslash, 16 at a time. Each store may write past what
		   is kept, never past the reservation: an escape is never shorter decoded, so o is
		   at most i bytes in, and i + 16 <= n */
		const __m128i bs = _mm_set1_epi8('\\');
		while (i + 16 <= n) {
			__m128i v = _mm_loadu_si128((const __m128i *)(s + i));
			_mm_storeu_si128((__m128i *)o, v);
			unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, bs));
			if (m) {
				unsigned k = (unsigned)__builtin_ctz(m);
				i += k;
				o += k;
				goto escape;
			}
			i += 16;
			o += 16;
		}
#endif
		while (i < n && s[i] != '\\')
			*o++ = (char)s[i++];
		if (i >= n)
			break;
#ifdef __SSE2__
	escape:
#endif
		/* s[i] is a backslash */
		switch (s[++i]) {
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 't': *o++ = '\t'; break;
		case 'u': {
			unsigned cp = 0;
			for (int k = 1; k <= 4; k++)
				cp = cp << 4 | (unsigned)hex(s[i + k]);
			i += 4;
			if (cp < 0x80) {
				*o++ = (char)cp;
			} else if (cp < 0x800) {
				*o++ = (char)(0xC0 | cp >> 6);
				*o++ = (char)(0x80 | (cp & 0x3F));
			} else {
				*o++ = (char)(0xE0 | cp >> 12);
				*o++ = (char)(0x80 | (cp >> 6 & 0x3F));
				*o++ = (char)(0x80 | (cp & 0x3F));
			}
			break;
		}
		default: *o++ = (char)s[i]; break; /* " \ / */
		}
		i++;
	}
	b->len = (size_t)(o - b->p);
	b->p[b->len] = '\0';
	return 0;
}

static int decode(struct kr_lex *lx, const unsigned char *s, size_t n)
{
	lx->dec.len = 0;
	return decode_to(&lx->dec, s, n);
}

bool kr_lex_string(const char *text, size_t n, struct kr_buf *b)
{
	const unsigned char *p = (const unsigned char *)text, *e = p + n;
	int esc;
	if (n < 2 || *p != '"' || scan_string(&p, e, &esc) != KR_LEX_VALUE || p != e)
		return false;
	if (!esc)
		return kr_buf_append(b, text + 1, n - 2);
	return decode_to(b, (const unsigned char *)text + 1, n - 2) == 0;
}

int kr_lex_emit(struct kr_lex *lx, const char *text, size_t n, const yajl_callbacks *cbs,
		void *ctx)
{
	const unsigned char *t = (const unsigned char *)text, *p = t, *e = t + n;
	uint64_t objects = 0;
	unsigned depth = 0;
	int want_key = 0;
	while (p < e) {
		unsigned char c = *p;
		switch (c) {
		case '{':
		case '[': {
			int map = c == '{';
			if (map)
				objects |= (uint64_t)1 << depth;
			else
				objects &= ~((uint64_t)1 << depth);
			depth++;
			want_key = map;
			lx->off = (size_t)(++p - t);
			int (*cb)(void *) = map ? cbs->yajl_start_map : cbs->yajl_start_array;
			if (cb && !cb(ctx))
				return -1;
			continue;
		}
		case '}':
		case ']': {
			depth--;
			want_key = 0;
			lx->off = (size_t)(++p - t);
			int (*cb)(void *) = c == '}' ? cbs->yajl_end_map : cbs->yajl_end_array;
			if (cb && !cb(ctx))
				return -1;
			continue;
		}
		case ',':
			want_key = (int)(objects >> (depth - 1) & 1);
			p++;
			continue;
		case ':':
		case ' ':
		case '\n':
		case '\r':
		case '\t':
		case '\v':
		case '\f':
			p++;
			continue;
		case '"': {
			const unsigned char *s = ++p;
			int esc = 0;
			for (;;) {
#ifdef __SSE2__
				/* checked by scan_string: only '"' and '\\' count here */
				const __m128i quote = _mm_set1_epi8('"'), bsl = _mm_set1_epi8('\\');
				for (; p + 16 <= e; p += 16) {
					__m128i v = _mm_loadu_si128((const __m128i *)p);
					unsigned m16 = (unsigned)_mm_movemask_epi8(_mm_or_si128(
						_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bsl)));
					if (m16) {
						p += __builtin_ctz(m16);
						goto special;
					}
				}
#endif
				uint64_t m;
				while (p + 8 <= e && !(m = special8(p, ONES * 0x7F)))
					p += 8;
				if (p + 8 <= e)
					p += first8(m);
				else
					while (plain[*p] || *p >= 0x80)
						p++;
#ifdef __SSE2__
			special:
#endif
				if (*p == '"')
					break;
				esc = 1; /* a backslash: step over what it escapes */
				p += 2;
			}
			size_t len = (size_t)(p - s);
			lx->off = (size_t)(++p - t);
			int (*cb)(void *, const unsigned char *, size_t) =
				want_key ? cbs->yajl_map_key : cbs->yajl_string;
			want_key = 0;
			if (!cb)
				continue;
			if (esc) {
				lx->quote = (size_t)(s - 1 - t);
				if (decode(lx, s, len))
					return -2;
				s = (const unsigned char *)lx->dec.p;
				len = lx->dec.len;
			}
			if (!cb(ctx, s, len))
				return -1;
			continue;
		}
		case 't':
		case 'f':
			p += c == 't' ? 4 : 5;
			lx->off = (size_t)(p - t);
			if (cbs->yajl_boolean && !cbs->yajl_boolean(ctx, c == 't'))
				return -1;
			continue;
		case 'n':
			p += 4;
			lx->off = (size_t)(p - t);
			if (cbs->yajl_null && !cbs->yajl_null(ctx))
				return -1;
			continue;
		default: {
			/* a number: scan_number checked its form */
			const unsigned char *s = p;
			while (p < e && (is_digit(*p) || *p == '-' || *p == '+' || *p == '.' ||
					 *p == 'e' || *p == 'E'))
				p++;
			lx->off = (size_t)(p - t);
			if (cbs->yajl_number && !cbs->yajl_number(ctx, (const char *)s,
								   (size_t)(p - s)))
				return -1;
			continue;
		}
		}
	}
	return 0;
}

void kr_lex_free(struct kr_lex *lx)
{
	kr_buf_free(&lx->dec);
	lx->dec.len = 0;
}
