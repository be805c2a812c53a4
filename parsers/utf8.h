/* Strict UTF-8 validation (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
 * yajl checks only the shape of multi-byte sequences; this closes the rest. Also: bytes that may
 * not be UTF-8 (an invalid record's) written as a JSON string that always is. Pure functions. */
#ifndef KR_UTF8_H
#define KR_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True when the n bytes at s are valid UTF-8; otherwise *bad (may be NULL) is the offset of the
 * first byte of the first invalid sequence. */
bool kr_utf8_valid(const char *s, size_t n, size_t *bad);

/* The number of '\n' bytes among the n at s; *high is set when any byte is >= 0x80 (left alone
 * otherwise). One pass over a chunk just read, while it is in the cache: the stream knows line
 * numbers without reading its input again, and skips validating records in all-ASCII input. */
size_t kr_scan_lines(const char *s, size_t n, bool *high);

struct kr_buf;

/* Appends the n bytes at s to b as a JSON string literal (quotes included), escaped as
 * kr_buf_json_string does, except that each ill-formed UTF-8 sequence (each maximal subpart of
 * one, as Unicode and the WHATWG decoder count them) becomes U+FFFD: the result is valid JSON in
 * valid UTF-8 whatever s holds. Lossy: keep the bytes themselves with kr_buf_base64. *replaced
 * (may be NULL) is set to the number of replacements. Returns false when out of memory. */
bool kr_utf8_json_string(struct kr_buf *b, const char *s, size_t n, size_t *replaced);

#endif
