/* libFuzzer target for the readers of AWS service answers (router/io/aws.h, parsers/json.h).
 *
 * The input is an HTTP response: the first byte picks the status (bit 7 clear: one of the
 * statuses of the table below; set: the raw value ((byte & 127) << 8) | second byte), the second
 * byte its flags (bit 0: timed_out, bit 1: an error text, bit 2: a Retry-After of byte * 100 ms,
 * bit 3: too_large); then the header lines as http.c keeps them ("Name: value\r\n"..., any bytes)
 * up to the first NUL byte, and the body after it (without a NUL byte, no headers and the rest
 * is the body). The headers and the body are heap copies NUL-terminated as http.h promises.
 *
 * The body goes through:
 *   - kr_aws_error_of: out->status is the status; out->ok says 2xx; out->code and out->message
 *     are NUL-terminated in their arrays; out->outcome is a kr_outcome; not ok, the code and the
 *     message are not empty, the message is one line (no CR or LF), and the outcome is not
 *     KR_DELIVERED: retryable for no response (status 0), 5xx, 429 and a code
 *     kr_aws_retryable_code takes; no Retry-After, not_before_ms is 0;
 *   - kr_aws_xml_next over a copy of the body of its exact size (nothing past its end to read),
 *     for each of a dozen tags, until it returns false: every content range lies inside the
 *     text (or the enclosing element for <member> inside <Successful> and <Failed>, as the SNS
 *     sink reads them), *pos moves forward, and the loop ends within length + 1 calls; and
 *     kr_aws_xml_text into 16- and 256-byte buffers, whose text is NUL-terminated within cap;
 *   - kr_aws_retryable_code on its NUL-terminated prefix;
 *   - kr_json_valid on the exact copy and, for valid text, kr_json_text_items at the paths the
 *     sinks read ($.Records, $.Failed, $.Successful, $.Messages, $.rejectedLogEventsInfo): each
 *     item lies inside the text, after the one before, with indexes 0, 1, 2...; each is itself
 *     valid JSON; kr_json_members_scan + kr_json_members_path for the members the sinks read
 *     give spans inside the item, and kr_json_span_string decodes the string ones.
 * A violated invariant calls __builtin_trap(); ASan/LSan catch reads out of bounds and leaks. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws.h"
#include "buf.h"
#include "http.h"
#include "json.h"

#define CHECK(c)                         \
	do {                             \
		if (!(c))                \
			__builtin_trap(); \
	} while (0)

static const long statuses[] = {200, 400, 403, 404, 413, 429, 500, 503,
				0,   204, 299, 300, 301, 401, 502, 599};
#define NSTATUSES (sizeof statuses / sizeof statuses[0])

static const char *const xml_tags[] = {
	"Error",   "Code",   "Message",    "member", "Id",          "MessageId",
	"SenderFault", "PublishBatchResult", "Failed", "Successful", "Credentials",
	"AccessKeyId"};
#define NXML (sizeof xml_tags / sizeof xml_tags[0])

static const char *const item_paths[] = {"$.Records", "$.Failed", "$.Successful", "$.Messages",
					 "$.rejectedLogEventsInfo"};
static const char *const member_paths[] = {
	"$.ErrorCode", "$.ErrorMessage", "$.Id", "$.Body", "$.ReceiptHandle", "$.SenderFault",
	"$.Code", "$.Message", "$.SequenceNumber", "$.MessageId"};

static volatile size_t g_sink;

static void check_error_of(long status, uint8_t flags, const char *headers, const char *body,
			   size_t body_len)
{
	struct kr_http_response r = {
		.status = status,
		.error = flags & 2 ? "Connection refused" : NULL,
		.timed_out = flags & 1,
		.too_large = flags & 8,
		.body = body,
		.body_len = body_len,
		.retry_after_ms = flags & 4 ? (int64_t)flags * 100 : -1,
		.headers = headers,
	};
	struct kr_aws_result out;
	memset(&out, 0xa5, sizeof out); /* no NUL where it does not write one */
	kr_aws_error_of(&r, &out);
	CHECK(strnlen(out.code, sizeof out.code) < sizeof out.code);
	CHECK(strnlen(out.message, sizeof out.message) < sizeof out.message);
	CHECK(out.outcome == KR_DELIVERED || out.outcome == KR_RETRYABLE ||
	      out.outcome == KR_PERMANENT);
	CHECK(out.status == status);
	CHECK(out.ok == (status >= 200 && status < 300));
	if (r.retry_after_ms < 0)
		CHECK(out.not_before_ms == 0);
	if (out.ok)
		return;
	CHECK(out.code[0] != 0 && out.message[0] != 0);
	CHECK(strpbrk(out.message, "\r\n") == NULL);
	CHECK(out.outcome != KR_DELIVERED);
	if (status == 0 || (status >= 500 && status < 600) || status == 429 ||
	    kr_aws_retryable_code(out.code))
		CHECK(out.outcome == KR_RETRYABLE);
	g_sink += strlen(out.code) + strlen(out.message);
}

/* text of tag into 16 and 256 bytes, NUL-terminated within cap */
static void check_xml_text(const char *s, const char *e, const char *tag)
{
	char small[16], big[256];
	memset(small, 0xa5, sizeof small);
	memset(big, 0xa5, sizeof big);
	if (kr_aws_xml_text(s, e, tag, small, sizeof small))
		CHECK(strnlen(small, sizeof small) < sizeof small);
	if (kr_aws_xml_text(s, e, tag, big, sizeof big))
		CHECK(strnlen(big, sizeof big) < sizeof big);
	g_sink += (size_t)small[0] + (size_t)big[0];
}

/* every <tag> in [s, e): content inside, progress, bounded calls; <member> inside the
 * SNS lists as entry_results (sinks/sns.c) reads them */
static void check_xml_loop(const char *s, const char *e, const char *tag, int depth)
{
	const char *pos = s, *a, *z;
	size_t calls = 0, limit = (size_t)(e - s) + 1;
	while (kr_aws_xml_next(&pos, e, tag, &a, &z)) {
		if (++calls > limit)
			abort();
		CHECK(a >= s && a <= z && z <= e);
		CHECK(pos > z && pos <= e);
		if (depth == 0 && (strcmp(tag, "Successful") == 0 || strcmp(tag, "Failed") == 0 ||
				   strcmp(tag, "Error") == 0 || strcmp(tag, "Credentials") == 0)) {
			check_xml_loop(a, z, "member", 1);
			check_xml_text(a, z, "Id");
			check_xml_text(a, z, "Code");
			check_xml_text(a, z, "Message");
			check_xml_text(a, z, "AccessKeyId");
		} else if (depth == 1) {
			check_xml_text(a, z, "Id");
			check_xml_text(a, z, "Code");
			check_xml_text(a, z, "SenderFault");
		}
	}
	CHECK(pos >= s && pos <= e);
}

struct items {
	const char *t;
	size_t n;
	size_t next;      /* the index expected */
	const char *last; /* the end of the item before */
};

static bool on_item(void *ctx, size_t i, const char *item, size_t len)
{
	struct items *it = ctx;
	CHECK(i == it->next);
	it->next++;
	CHECK(item >= it->t && len <= it->n && (size_t)(item - it->t) <= it->n - len);
	CHECK(item >= it->last);
	it->last = item + len;
	CHECK(kr_json_valid(item, len));
	struct kr_json_members m;
	kr_json_members_scan(&m, item, len);
	for (size_t k = 0; k < sizeof member_paths / sizeof *member_paths; k++) {
		struct kr_json_span sp;
		if (!kr_json_members_path(&m, member_paths[k], &sp))
			continue;
		CHECK(sp.p >= item && sp.len <= len && (size_t)(sp.p - item) <= len - sp.len);
		if (sp.type == KR_JSON_STRING) {
			struct kr_buf b = {0};
			if (kr_json_span_string(&b, &sp))
				g_sink += b.len;
			kr_buf_free(&b);
		}
	}
	return true;
}

static void check_json(const char *t, size_t n)
{
	if (!kr_json_valid(t, n))
		return;
	for (size_t k = 0; k < sizeof item_paths / sizeof *item_paths; k++) {
		struct items it = {.t = t, .n = n, .last = t};
		(void)kr_json_text_items(t, n, item_paths[k], on_item, &it);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	long status = data[0] & 0x80 ? (long)((data[0] & 0x7f) << 8 | data[1])
				     : statuses[data[0] % NSTATUSES];
	uint8_t flags = data[1];
	const uint8_t *rest = data + 2;
	size_t rlen = size - 2;
	const uint8_t *nul = memchr(rest, 0, rlen);
	size_t hlen = nul ? (size_t)(nul - rest) : 0;
	const uint8_t *bp = nul ? nul + 1 : rest;
	size_t blen = rlen - (size_t)(bp - rest);

	char *headers = malloc(hlen + 1);
	char *body = malloc(blen + 1);   /* as http.c keeps it: NUL-terminated */
	char *exact = malloc(blen ? blen : 1); /* nothing past its end */
	if (!headers || !body || !exact)
		abort();
	memcpy(headers, rest, hlen);
	headers[hlen] = 0;
	if (blen) {
		memcpy(body, bp, blen);
		memcpy(exact, bp, blen);
	}
	body[blen] = 0;

	check_error_of(status, flags, headers, body, blen);

	for (size_t k = 0; k < NXML; k++) {
		check_xml_loop(exact, exact + blen, xml_tags[k], 0);
		check_xml_text(exact, exact + blen, xml_tags[k]);
	}

	g_sink += kr_aws_retryable_code(body); /* the body up to its first NUL */

	check_json(exact, blen);

	free(exact);
	free(body);
	free(headers);
	return 0;
}
