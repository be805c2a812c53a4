/*
 * yajl_parse: the parse-only ceiling for a yajl-based router.
 *
 *   yajl_parse [FILE]        (standard input without FILE)
 *
 * Runs yajl 2's callback parser (yajl_allow_multiple_values) over a stream of
 * JSON values read with read() in 1 MiB chunks.  The callbacks do nothing but
 * count the top-level maps; the count is printed so that the work cannot be
 * optimised away.  Used by bench/match.sh as the reference that
 * `kmsrouter match` is compared with.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yajl/yajl_parse.h>

#define CHUNK (1024 * 1024)

struct counter {
	unsigned long depth;
	unsigned long maps;
};

static int on_null(void *ctx) { (void)ctx; return 1; }
static int on_boolean(void *ctx, int v) { (void)ctx; (void)v; return 1; }
static int on_number(void *ctx, const char *s, size_t n)
{
	(void)ctx; (void)s; (void)n;
	return 1;
}
static int on_string(void *ctx, const unsigned char *s, size_t n)
{
	(void)ctx; (void)s; (void)n;
	return 1;
}
static int on_map_key(void *ctx, const unsigned char *s, size_t n)
{
	(void)ctx; (void)s; (void)n;
	return 1;
}
static int on_start_map(void *ctx)
{
	struct counter *c = ctx;
	if (c->depth++ == 0)
		c->maps++;
	return 1;
}
static int on_end_map(void *ctx)
{
	struct counter *c = ctx;
	c->depth--;
	return 1;
}
static int on_start_array(void *ctx)
{
	struct counter *c = ctx;
	c->depth++;
	return 1;
}
static int on_end_array(void *ctx)
{
	struct counter *c = ctx;
	c->depth--;
	return 1;
}

static const yajl_callbacks callbacks = {
	on_null,
	on_boolean,
	NULL,		/* yajl_integer: yajl_number gets all numbers, unconverted */
	NULL,		/* yajl_double */
	on_number,
	on_string,
	on_start_map,
	on_map_key,
	on_end_map,
	on_start_array,
	on_end_array,
};

static int report(yajl_handle h, const unsigned char *buf, size_t len)
{
	unsigned char *msg = yajl_get_error(h, 1, buf, len);
	fprintf(stderr, "yajl_parse: %s", (const char *)msg);
	yajl_free_error(h, msg);
	return 1;
}

int main(int argc, char **argv)
{
	struct counter c = { 0, 0 };
	unsigned char *buf;
	yajl_handle h;
	ssize_t n;
	int fd = 0;

	if (argc > 2) {
		fprintf(stderr, "usage: yajl_parse [FILE]\n");
		return 2;
	}
	if (argc == 2 && strcmp(argv[1], "-") != 0) {
		fd = open(argv[1], O_RDONLY);
		if (fd < 0) {
			fprintf(stderr, "yajl_parse: %s: %s\n", argv[1], strerror(errno));
			return 1;
		}
	}
	buf = malloc(CHUNK);
	h = yajl_alloc(&callbacks, NULL, &c);
	if (buf == NULL || h == NULL) {
		fprintf(stderr, "yajl_parse: out of memory\n");
		return 1;
	}
	yajl_config(h, yajl_allow_multiple_values, 1);

	for (;;) {
		n = read(fd, buf, CHUNK);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "yajl_parse: read: %s\n", strerror(errno));
			return 1;
		}
		if (n == 0)
			break;
		if (yajl_parse(h, buf, (size_t)n) != yajl_status_ok)
			return report(h, buf, (size_t)n);
	}
	if (yajl_complete_parse(h) != yajl_status_ok)
		return report(h, NULL, 0);

	printf("%lu\n", c.maps);
	yajl_free(h);
	free(buf);
	if (fd != 0)
		close(fd);
	return 0;
}
