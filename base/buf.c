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
	size_t run = 0, i = 0;
#ifdef __SSE2__
	/* sixteen bytes at a time, copied as they are checked; bytes below 0x20 are those whose
	 * unsigned maximum with 0x1F is 0x1F */
	const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'),
		      c1f = _mm_set1_epi8(0x1F);
#define KR_JSON_SPECIAL(x)                                                                       \
	_mm_movemask_epi8(_mm_or_si128(                                                          \
		_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)),               \
		_mm_cmpeq_epi8(_mm_max_epu8(x, c1f), c1f)))
	while (i + 16 <= n) {
		__m128i x = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
		if (KR_JSON_SPECIAL(x))
			break;
		_mm_storeu_si128((__m128i *)(void *)(o + i), x);
		i += 16;
	}
	if (n >= 16 && i < n && i >= n - 16) {
		/* the rest: the last sixteen bytes, of which the first were checked already */
		__m128i x = _mm_loadu_si128((const __m128i *)(const void *)(s + n - 16));
		if (!((unsigned)KR_JSON_SPECIAL(x) >> (i - (n - 16)))) {
			_mm_storeu_si128((__m128i *)(void *)(o + n - 16), x);
			o += n;
			*o++ = '"';
			return o;
		}
	}
#undef KR_JSON_SPECIAL
	o += i;
	run = i;
#endif
	/* eight bytes at a time while none is a quote, a backslash or a control character */
	const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
	while (i + 8 <= n) {
		uint64_t w;
		memcpy(&w, s + i, 8);
		uint64_t q = w ^ (ones * '"'), bs = w ^ (ones * '\\');
		uint64_t special = ((w - ones * 0x20) & ~w) | ((q - ones) & ~q) | ((bs - ones) & ~bs);
		if (special & highs)
			break;
		i += 8;
	}
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

bool kr_buf_base64(struct kr_buf *b, const void *s, size_t n)
{
	static const char digits[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *in = s;
	if (n > SIZE_MAX / 8 || !kr_buf_reserve(b, (n + 2) / 3 * 4 + 1))
		return false;
	char *o = b->p + b->len;
	size_t i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		*o++ = digits[v >> 18];
		*o++ = digits[v >> 12 & 63];
		*o++ = digits[v >> 6 & 63];
		*o++ = digits[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
		*o++ = digits[v >> 18];
		*o++ = digits[v >> 12 & 63];
		*o++ = i + 1 < n ? digits[v >> 6 & 63] : '=';
		*o++ = '=';
	}
	*o = 0;
	b->len = (size_t)(o - b->p);
	return true;
}

bool kr_buf_urlencode(struct kr_buf *b, const void *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *in = s;
	if (n > SIZE_MAX / 4 || !kr_buf_reserve(b, 3 * n + 1))
		return false;
	char *o = b->p + b->len;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = in[i];
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == '~') {
			*o++ = (char)c;
		} else {
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = 0;
	b->len = (size_t)(o - b->p);
	return true;
}
