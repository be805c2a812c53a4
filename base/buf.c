/* Growable buffers and the text built in them (see buf.h). */
#include "buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

bool kr_buf_reserve(struct kr_buf *b, size_t extra)
{
	if (extra > SIZE_MAX / 4 || b->len > SIZE_MAX / 4)
		return false;
	if (b->len + extra <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 256;
	if (!b->cap && cap < b->len + extra)
		cap = b->len + extra; /* a first reservation as asked: a request body's hint is its
					 size, which doubling would round up by up to half again */
	while (cap < b->len + extra)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p)
		return false;
	b->p = p;
	b->cap = cap;
	return true;
}

bool kr_buf_append(struct kr_buf *b, const void *s, size_t n)
{
	if (n > SIZE_MAX / 4 || !kr_buf_reserve(b, n + 1))
		return false;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
	return true;
}

bool kr_buf_puts(struct kr_buf *b, const char *s)
{
	return kr_buf_append(b, s, strlen(s));
}

bool kr_buf_uint(struct kr_buf *b, uint64_t v)
{
	char d[20], *e = d + sizeof d, *p = e;
	do
		*--p = (char)('0' + v % 10);
	while (v /= 10);
	return kr_buf_append(b, p, (size_t)(e - p));
}

bool kr_buf_json_string(struct kr_buf *b, const char *s, size_t n)
{
	/* worst case every byte becomes \u00XX */
	if (!kr_buf_reserve(b, n * 6 + 3))
		return false;
	char *o = kr_json_string_to(b->p + b->len, s, n);
	*o = 0;
	b->len = (size_t)(o - b->p);
	return true;
}

char *kr_json_string_to(char *o, const char *s, size_t n)
{
	*o++ = '"';
	size_t i = 0;
#ifdef __SSE2__
	/* sixteen bytes at a time, stored before they are checked: up to the first byte to escape
	 * they are the output, and what lies past it is written over. An event's text has a quote
	 * every few bytes, so the loop goes on after each escape rather than leaving for the byte
	 * loop. The stores stay inside 6 * n + 2: with at least 16 bytes left at i, at most
	 * 1 + 6 * i are written before o, and 1 + 6 * i + 16 <= 6 * n + 2. Bytes below 0x20 are
	 * those whose unsigned maximum with 0x1F is 0x1F. */
	const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'),
		      c1f = _mm_set1_epi8(0x1F);
	while (i + 16 <= n) {
		__m128i x = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
		_mm_storeu_si128((__m128i *)(void *)o, x);
		unsigned special = (unsigned)_mm_movemask_epi8(_mm_or_si128(
			_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)),
			_mm_cmpeq_epi8(_mm_max_epu8(x, c1f), c1f)));
		if (!special) {
			o += 16;
			i += 16;
			continue;
		}
		unsigned k = (unsigned)__builtin_ctz(special);
		o = kr_json_escape(o + k, (unsigned char)s[i + k]);
		i += k + 1;
	}
#endif
	/* the rest a byte at a time, runs without escapes copied whole */
	size_t run = i;
	for (; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		memcpy(o, s + run, i - run);
		o += i - run;
		run = i + 1;
		o = kr_json_escape(o, c);
	}
	memcpy(o, s + run, n - run);
	o += n - run;
	*o++ = '"';
	return o;
}

void kr_buf_free(struct kr_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

static const char b64_digits[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* The two digits of every 12 bits, the first in the low byte: an event's text is encoded 6
 * bytes to 8 digits a step, with four lookups and one store. */
static uint16_t b64_pairs[4096];

__attribute__((constructor)) static void b64_pairs_init(void)
{
	for (unsigned x = 0; x < 4096; x++)
		b64_pairs[x] = (uint16_t)((unsigned char)b64_digits[x >> 6] |
					  (unsigned char)b64_digits[x & 63] << 8);
}
#endif

bool kr_buf_base64(struct kr_buf *b, const void *s, size_t n)
{
	const unsigned char *in = s;
	if (n > SIZE_MAX / 8 || !kr_buf_reserve(b, (n + 2) / 3 * 4 + 1))
		return false;
	char *o = b->p + b->len;
	size_t i = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	/* 8 bytes read, 6 of them encoded: bytes i..i+5 are the top 48 bits once swapped */
	for (; i + 8 <= n; i += 6) {
		uint64_t v;
		memcpy(&v, in + i, 8);
		v = __builtin_bswap64(v);
		uint64_t w = (uint64_t)b64_pairs[v >> 52] |
			     (uint64_t)b64_pairs[v >> 40 & 0xfff] << 16 |
			     (uint64_t)b64_pairs[v >> 28 & 0xfff] << 32 |
			     (uint64_t)b64_pairs[v >> 16 & 0xfff] << 48;
		memcpy(o, &w, 8);
		o += 8;
	}
#endif
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		*o++ = b64_digits[v >> 18];
		*o++ = b64_digits[v >> 12 & 63];
		*o++ = b64_digits[v >> 6 & 63];
		*o++ = b64_digits[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
		*o++ = b64_digits[v >> 18];
		*o++ = b64_digits[v >> 12 & 63];
		*o++ = i + 1 < n ? b64_digits[v >> 6 & 63] : '=';
		*o++ = '=';
	}
	*o = 0;
	b->len = (size_t)(o - b->p);
	return true;
}

/* Each byte's form encoding: %XX (upper case), or the byte itself for RFC 3986's unreserved
 * characters; n its length. Four bytes, written whole: the loop has no branch on the byte. */
struct pct {
	char s[3];
	unsigned char n;
};
#define HEXD(v) (char)((v) < 10 ? '0' + (v) : 'A' + (v) - 10)
#define P1(c) [c] = {{'%', HEXD((c) >> 4), HEXD((c) & 15)}, 3}
#define P4(c) P1(c), P1(c + 1), P1(c + 2), P1(c + 3)
#define P16(c) P4(c), P4(c + 4), P4(c + 8), P4(c + 12)
#define P64(c) P16(c), P16(c + 16), P16(c + 32), P16(c + 48)
#define U1(c) [c] = {{c}, 1}
#define U4(c) U1(c), U1(c + 1), U1(c + 2), U1(c + 3)
#define U8(c) U4(c), U4(c + 4)
/* GCC and Clang take a later designator for an index as the one that counts (C11 6.7.9) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverride-init"
static const struct pct pct[256] = {
	P64(0), P64(64), P64(128), P64(192),
	U1('-'), U1('.'), U1('_'), U1('~'), U8('0'), U1('8'), U1('9'),
	U8('A'), U8('I'), U8('Q'), U1('Y'), U1('Z'),
	U8('a'), U8('i'), U8('q'), U1('y'), U1('z'),
};
#pragma GCC diagnostic pop
#undef U8
#undef U4
#undef U1
#undef P64
#undef P16
#undef P4
#undef P1
#undef HEXD

bool kr_buf_urlencode(struct kr_buf *b, const void *s, size_t n)
{
	const unsigned char *in = s;
	/* 3 per byte, and the fourth byte of the last one's entry */
	if (n > SIZE_MAX / 4 || !kr_buf_reserve(b, 3 * n + 2))
		return false;
	char *o = b->p + b->len;
	for (size_t i = 0; i < n; i++) {
		const struct pct *e = &pct[in[i]];
		memcpy(o, e, sizeof *e);
		o += e->n;
	}
	*o = 0;
	b->len = (size_t)(o - b->p);
	return true;
}
