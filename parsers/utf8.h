/* Strict UTF-8 validation (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
 * yajl checks only the shape of multi-byte sequences; this closes the rest. Pure function. */
#ifndef KR_UTF8_H
#define KR_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True when the n bytes at s are valid UTF-8; otherwise *bad (may be NULL) is the offset of the
 * first byte of the first invalid sequence. */
bool kr_utf8_valid(const char *s, size_t n, size_t *bad);

#endif
