/* Strict UTF-8 validation (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
 * yajl checks only the shape of multi-byte sequences; this closes the rest. Pure function. */
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

#endif
