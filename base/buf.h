/* kr_buf: a growable byte buffer, always NUL-terminated after its len bytes, and the text every
 * layer builds in one: JSON string literals (escaped as JSON requires) and base64. Functions
 * return false when out of memory and leave the buffer as it was. Free with kr_buf_free. Pure
 * functions, any thread (one buffer per thread). */
#ifndef KR_BUF_H
#define KR_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kr_buf {
	char *p;
	size_t len, cap;
};

bool kr_buf_reserve(struct kr_buf *b, size_t extra);
bool kr_buf_append(struct kr_buf *b, const void *s, size_t n);
bool kr_buf_puts(struct kr_buf *b, const char *s);
/* Appends the decimal digits of v (what snprintf's "%" PRIu64 writes, without its cost). */
bool kr_buf_uint(struct kr_buf *b, uint64_t v);
void kr_buf_free(struct kr_buf *b);

/* Appends the JSON encoding of the n bytes at s (a JSON string literal, quotes included). */
bool kr_buf_json_string(struct kr_buf *b, const char *s, size_t n);
/* The same into memory with room for 6 * n + 2 bytes; returns the end (not NUL-terminated). */
char *kr_json_string_to(char *o, const char *s, size_t n);

/* Writes at o the escape of c, a byte JSON strings cannot hold as it is (a quote, a backslash or
 * a control character); returns the end. */
static inline char *kr_json_escape(char *o, unsigned char c)
{
	static const char hex[] = "0123456789abcdef";
	*o++ = '\\';
	switch (c) {
	case '"': *o++ = '"'; break;
	case '\\': *o++ = '\\'; break;
	case '\n': *o++ = 'n'; break;
	case '\r': *o++ = 'r'; break;
	case '\t': *o++ = 't'; break;
	case '\b': *o++ = 'b'; break;
	case '\f': *o++ = 'f'; break;
	default:
		o[0] = 'u';
		o[1] = o[2] = '0';
		o[3] = hex[c >> 4];
		o[4] = hex[c & 15];
		o += 5;
	}
	return o;
}

/* Appends the standard base64 of the n bytes at s (RFC 4648 section 4: "+/", '=' padding, no
 * line breaks), NUL-terminated. */
bool kr_buf_base64(struct kr_buf *b, const void *s, size_t n);

/* Appends the n bytes at s percent-encoded as RFC 3986 says (every byte but A-Z a-z 0-9 - _ . ~
 * as %XX), as form fields and AWS query strings take them. */
bool kr_buf_urlencode(struct kr_buf *b, const void *s, size_t n);

#endif
