/* Strict UTF-8 validation (see utf8.h). ASCII runs are skipped 64 bytes at a time (SSE2, which
 * every x86-64 has; 32 and 8 at a time otherwise), so the common all-ASCII event costs a few
 * nanoseconds per hundred bytes. */
#include "utf8.h"

#include <stdint.h>
#include <string.h>

#include "buf.h"
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define KR_HAVE_AVX2_PATH 1
#endif

bool kr_utf8_valid(const char *str, size_t n, size_t *bad)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;
	while (i < n) {
#ifdef __SSE2__
		while (i + 64 <= n) {
			__m128i a = _mm_loadu_si128((const __m128i *)(s + i));
			__m128i b = _mm_loadu_si128((const __m128i *)(s + i + 16));
			__m128i c = _mm_loadu_si128((const __m128i *)(s + i + 32));
			__m128i d = _mm_loadu_si128((const __m128i *)(s + i + 48));
			if (_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d))))
				break;
			i += 64;
		}
#endif
		while (i + 32 <= n) {
			uint64_t w[4];
			memcpy(w, s + i, 32);
			if ((w[0] | w[1] | w[2] | w[3]) & 0x8080808080808080ULL)
				break;
			i += 32;
		}
		while (i + 8 <= n) {
			uint64_t w;
			memcpy(&w, s + i, 8);
			if (w & 0x8080808080808080ULL)
				break;
			i += 8;
		}
		if (i >= n)
			break;
		unsigned char c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t len;
		uint32_t cp, min;
		if (c >= 0xC2 && c <= 0xDF) {
			len = 2;
			cp = c & 0x1F;
			min = 0x80;
		} else if (c >= 0xE0 && c <= 0xEF) {
			len = 3;
			cp = c & 0x0F;
			min = 0x800;
		} else if (c >= 0xF0 && c <= 0xF4) {
			len = 4;
			cp = c & 0x07;
			min = 0x10000;
		} else {
			goto invalid;
		}
		if (i + len > n)
			goto invalid;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				goto invalid;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			goto invalid;
		i += len;
	}
	return true;
invalid:
	if (bad)
		*bad = i;
	return false;
}

#ifdef KR_HAVE_AVX2_PATH
/* kr_scan_lines' bulk with AVX2 (chosen at run time): 64 bytes in two loads; per-lane counts
 * summed before a lane can overflow. Returns the bytes it handled. */
__attribute__((target("avx2"))) static size_t scan_lines_avx2(const unsigned char *s, size_t n,
							     size_t *lines, unsigned *hi)
{
	size_t i = 0;
	const __m256i nl = _mm256_set1_epi8('\n'), zero = _mm256_setzero_si256();
	__m256i ors = zero; /* every byte ORed together: its high bits say whether any was >= 0x80 */
	while (i + 64 <= n) {
		__m256i acc = zero;
		for (unsigned k = 0; k < 127 && i + 64 <= n; k++, i += 64) {
			__m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(s + i));
			__m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(s + i + 32));
			ors = _mm256_or_si256(ors, _mm256_or_si256(a, b));
			acc = _mm256_sub_epi8(acc, _mm256_add_epi8(_mm256_cmpeq_epi8(a, nl),
								   _mm256_cmpeq_epi8(b, nl)));
		}
		__m256i sum = _mm256_sad_epu8(acc, zero); /* four 64-bit partial sums */
		*lines += (size_t)_mm256_extract_epi64(sum, 0) + (size_t)_mm256_extract_epi64(sum, 1) +
			  (size_t)_mm256_extract_epi64(sum, 2) + (size_t)_mm256_extract_epi64(sum, 3);
	}
	*hi |= (unsigned)_mm256_movemask_epi8(ors);
	return i;
}
#endif

size_t kr_scan_lines(const char *str, size_t n, bool *high)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, lines = 0;
	unsigned hi = 0;
#ifdef KR_HAVE_AVX2_PATH
	if (__builtin_cpu_supports("avx2"))
		i = scan_lines_avx2(s, n, &lines, &hi);
#endif
#ifdef __SSE2__
	/* per byte lane, a count of newlines (cmpeq gives -1, subtracted), summed into lines by
	 * _mm_sad_epu8 before a lane can overflow: no popcount instruction needed */
	const __m128i nl = _mm_set1_epi8('\n'), zero = _mm_setzero_si128();
	while (i + 64 <= n) {
		__m128i acc = zero;
		for (unsigned k = 0; k < 63 && i + 64 <= n; k++, i += 64) {
			__m128i a = _mm_loadu_si128((const __m128i *)(s + i));
			__m128i b = _mm_loadu_si128((const __m128i *)(s + i + 16));
			__m128i c = _mm_loadu_si128((const __m128i *)(s + i + 32));
			__m128i d = _mm_loadu_si128((const __m128i *)(s + i + 48));
			hi |= (unsigned)_mm_movemask_epi8(
				_mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d)));
			__m128i e = _mm_add_epi8(_mm_add_epi8(_mm_cmpeq_epi8(a, nl), _mm_cmpeq_epi8(b, nl)),
						 _mm_add_epi8(_mm_cmpeq_epi8(c, nl), _mm_cmpeq_epi8(d, nl)));
			acc = _mm_sub_epi8(acc, e); /* at most 4 per lane per block, 63 blocks: < 256 */
		}
		__m128i sum = _mm_sad_epu8(acc, zero);
		lines += (size_t)_mm_cvtsi128_si32(sum) + (size_t)_mm_extract_epi16(sum, 4);
	}
#endif
	for (; i < n; i++) {
		hi |= s[i] & 0x80u;
		lines += s[i] == '\n';
	}
	if (hi)
		*high = true;
	return lines;
}

/* The length of the well-formed UTF-8 sequence at s (n > 0 bytes, s[0] >= 0x80), or 0 with *sub
 * the length of the maximal subpart of an ill-formed one there (at least 1): the bytes that
 * start a sequence correctly before the one that does not fit (RFC 3629's table 3-7). */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *sub)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xBF;
	size_t len;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2;
	else if (c >= 0xE0 && c <= 0xEF)
		len = 3;
	else if (c >= 0xF0 && c <= 0xF4)
		len = 4;
	else {
		*sub = 1;
		return 0;
	}
	if (c == 0xE0)
		lo = 0xA0;
	else if (c == 0xED)
		hi = 0x9F;
	else if (c == 0xF0)
		lo = 0x90;
	else if (c == 0xF4)
		hi = 0x8F;
	for (size_t k = 1; k < len; k++) {
		if (k >= n || s[k] < lo || s[k] > hi) {
			*sub = k;
			return 0;
		}
		lo = 0x80;
		hi = 0xBF;
	}
	return len;
}

bool kr_utf8_json_string(struct kr_buf *b, const char *str, size_t n, size_t *replaced)
{
	if (replaced)
		*replaced = 0;
	if (kr_utf8_valid(str, n, NULL))
		return kr_buf_json_string(b, str, n);
	/* at most 6 bytes out per byte in (\u00XX; U+FFFD is 3 for at least 1) */
	if (n > SIZE_MAX / 8 || !kr_buf_reserve(b, n * 6 + 3))
		return false;
	const unsigned char *s = (const unsigned char *)str;
	char *o = b->p + b->len;
	*o++ = '"';
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		if (c >= 0x80) {
			size_t sub, len = utf8_seq(s + i, n - i, &sub);
			if (len) {
				memcpy(o, s + i, len);
				o += len;
				i += len;
			} else {
				memcpy(o, "\xEF\xBF\xBD", 3);
				o += 3;
				i += sub;
				if (replaced)
					++*replaced;
			}
			continue;
		}
		i++;
		if (c >= 0x20 && c != '"' && c != '\\') {
			*o++ = (char)c;
			continue;
		}
		o = kr_json_escape(o, c);
	}
	*o++ = '"';
	*o = 0;
	b->len = (size_t)(o - b->p);
	return true;
}
