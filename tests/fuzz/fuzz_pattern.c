/* libFuzzer target for the pattern compiler and matcher (parsers/json.h, rules/rules.h).
 *
 * The input is parsed with kr_json_parse (last_key_wins, as the router reads patterns). An object
 * is compiled as one rule; an array compiles each of its first 8 elements as the next rule (so
 * that several rules share the indexes; elements that are rejected leave the set unchanged).
 * When at least one rule compiled, the set is built and the six sample KMS events (minified
 * copies of the files in tests/data/events, one of them an SNS envelope) are streamed through a
 * kr_stream bound to kr_rules_paths and matched.
 *
 * Invariants (a violation calls __builtin_trap()):
 *   - kr_json_parse with yajl_only (no fast path, parsers/lex.h) gives the same tree (types,
 *     offsets, texts, number values, keys and their offsets) or the same error, offset and
 *     message;
 *   - input that is not JSON gets an error message and an error offset inside the input;
 *   - a rejected pattern has an error message, and *bad, when set, is a node of the input tree;
 *   - the six events are read as six events and no invalid report, whatever the rules;
 *   - kr_rules_match returns at most kr_rules_count ids, strictly ascending, each below the count;
 *     matching the same view again gives the same ids;
 *   - two catch-all rules added after the input's rules, {"version":["0"]} (indexed) and
 *     {"id":[{"exists":true}]} (scanned), match each of the six events;
 *   - kr_json_text_path finds in the input's text what kr_json_path finds in its tree, for every
 *     path into it (up to 256), with the same type, number text and decoded string; on input
 *     that is not JSON it reads nothing past the input's end;
 *   - kr_json_members_path, from the members of the input's top level, gives kr_json_text_path's
 *     answer and span for each of those paths.
 * ASan/LSan catch crashes and leaks. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "rules.h"
#include "stream.h"

#define CHECK(c)                         \
	do {                             \
		if (!(c))                \
			__builtin_trap(); \
	} while (0)

#define MAX_RULES 8

/* the files in tests/data/events, minified (json.dumps(separators=(',', ':'))) */
static const char *const sample_events[] = {
	/* cloudtrail-decrypt-pending-deletion.json */
	"{\"version\":\"0\",\"id\":\"3c5ab6d1-0b0e-4f55-9a8e-8c3f2a7e9b11\",\"detail-type\":\"AWS API Call via CloudTrail\",\"source\":\"aws.kms\",\"account\":\"111122223333\",\"time\":\"2024-03-01T12:00:00Z\",\"region\":\"us-west-2\",\"resources\":[],\"detail\":{\"eventVersion\":\"1.08\",\"userIdentity\":{\"type\":\"AssumedRole\",\"principalId\":\"AROAEXAMPLE:app\",\"arn\":\"arn:aws:sts::111122223333:assumed-role/app/app\",\"accountId\":\"111122223333\"},\"eventTime\":\"2024-03-01T12:00:00Z\",\"eventSource\":\"kms.amazonaws.com\",\"eventName\":\"Decrypt\",\"awsRegion\":\"us-west-2\",\"sourceIPAddress\":\"192.0.2.0\",\"userAgent\":\"aws-sdk-java/1.12.0\",\"errorCode\":\"KMSInvalidStateException\",\"errorMessage\":\"arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab is pending deletion.\",\"requestParameters\":{\"encryptionAlgorithm\":\"SYMMETRIC_DEFAULT\"},\"responseElements\":null,\"requestID\":\"2b1b5c0e-0a3c-4f1e-9b57-8f0c0e6d5a10\",\"eventID\":\"7f9b2c4e-6d1a-4e8b-a3c5-1d2e3f4a5b6c\",\"readOnly\":true,\"resources\":[{\"accountId\":\"111122223333\",\"type\":\"AWS::KMS::Key\",\"ARN\":\"arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab\"}],\"eventType\":\"AwsApiCall\",\"managementEvent\":true,\"recipientAccountId\":\"111122223333\",\"eventCategory\":\"Management\"}}",
	/* kms-cmk-deletion.json */
	"{\"version\":\"0\",\"id\":\"e9ce3425-7d22-412a-a699-e7a5fc3fbc9a\",\"detail-type\":\"KMS CMK Deletion\",\"source\":\"aws.kms\",\"account\":\"111122223333\",\"time\":\"2016-08-19T03:23:45Z\",\"region\":\"us-west-2\",\"resources\":[\"arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab\"],\"detail\":{\"key-id\":\"1234abcd-12ab-34cd-56ef-1234567890ab\"}}",
	/* kms-cmk-rotation-on-demand.json */
	"{\"version\":\"0\",\"id\":\"6a7e8feb-b491-4cf7-a9f1-bf3703467718\",\"detail-type\":\"KMS CMK Rotation\",\"source\":\"aws.kms\",\"account\":\"111122223333\",\"time\":\"2025-05-23T03:11:54Z\",\"region\":\"us-west-2\",\"resources\":[\"arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab\"],\"detail\":{\"key-id\":\"1234abcd-12ab-34cd-56ef-1234567890ab\",\"key-origin\":\"AWS_KMS\",\"rotation-type\":\"ON_DEMAND\",\"previous-key-material-id\":\"123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0\",\"current-key-material-id\":\"96083e4fb6dbc41d77578a213a6b6669c044dd4c143e96755396d2bf11fd6068\"}}",
	/* kms-cmk-rotation.json */
	"{\"version\":\"0\",\"id\":\"6a7e8feb-b491-4cf7-a9f1-bf3703467718\",\"detail-type\":\"KMS CMK Rotation\",\"source\":\"aws.kms\",\"account\":\"111122223333\",\"time\":\"2016-08-25T21:05:33Z\",\"region\":\"us-west-2\",\"resources\":[\"arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab\"],\"detail\":{\"key-id\":\"1234abcd-12ab-34cd-56ef-1234567890ab\"}}",
	/* kms-imported-key-material-expiration.json */
	"{\"version\":\"0\",\"id\":\"9da9af57-9253-4406-87cb-7cc400e43465\",\"detail-type\":\"KMS Imported Key Material Expiration\",\"source\":\"aws.kms\",\"account\":\"111122223333\",\"time\":\"2016-08-22T20:12:19Z\",\"region\":\"us-west-2\",\"resources\":[\"arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab\"],\"detail\":{\"key-id\":\"1234abcd-12ab-34cd-56ef-1234567890ab\"}}",
	/* sns-envelope-kms-cmk-deletion.json */
	"{\"Type\":\"Notification\",\"MessageId\":\"22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\",\"TopicArn\":\"arn:aws:sns:us-west-2:111122223333:kms-events\",\"Subject\":null,\"Message\":\"{\\\"version\\\":\\\"0\\\",\\\"id\\\":\\\"e9ce3425-7d22-412a-a699-e7a5fc3fbc9a\\\",\\\"detail-type\\\":\\\"KMS CMK Deletion\\\",\\\"source\\\":\\\"aws.kms\\\",\\\"account\\\":\\\"111122223333\\\",\\\"time\\\":\\\"2016-08-19T03:23:45Z\\\",\\\"region\\\":\\\"us-west-2\\\",\\\"resources\\\":[\\\"arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab\\\"],\\\"detail\\\":{\\\"key-id\\\":\\\"1234abcd-12ab-34cd-56ef-1234567890ab\\\"}}\",\"Timestamp\":\"2016-08-19T03:23:46.123Z\",\"SignatureVersion\":\"1\",\"Signature\":\"EXAMPLE\",\"SigningCertURL\":\"https://sns.us-west-2.amazonaws.com/SimpleNotificationService-EXAMPLE.pem\",\"UnsubscribeURL\":\"https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=EXAMPLE\"}",
};
#define NEVENTS (sizeof sample_events / sizeof sample_events[0])

static char *g_events;      /* the six events as JSON Lines */
static size_t g_events_len;
static struct kr_json *g_catch[2]; /* the catch-all patterns */
static volatile uint64_t g_sink;

struct matchctx {
	const struct kr_rules *rules;
	struct kr_match_state *st;
	uint32_t count;
	uint32_t catch_all; /* id of the first catch-all rule */
	unsigned events, invalid;
	uint64_t sink;
};

static int on_event(void *ctx, const struct kr_event *ev)
{
	struct matchctx *m = ctx;
	m->events++;
	const uint32_t *ids;
	size_t n = kr_rules_match(m->rules, m->st, ev->view, &ids);
	CHECK(n <= m->count);
	CHECK(n >= 2); /* the catch-all rules */
	uint32_t saved[MAX_RULES + 2];
	for (size_t i = 0; i < n; i++) {
		CHECK(ids[i] < m->count);
		CHECK(i == 0 || ids[i - 1] < ids[i]);
		saved[i] = ids[i];
		m->sink += ids[i];
	}
	CHECK(ids[n - 2] == m->catch_all && ids[n - 1] == m->catch_all + 1);
	size_t n2 = kr_rules_match(m->rules, m->st, ev->view, &ids);
	CHECK(n2 == n);
	for (size_t i = 0; i < n; i++)
		CHECK(ids[i] == saved[i]);
	return 0;
}

static int on_invalid(void *ctx, const struct kr_invalid *inv)
{
	struct matchctx *m = ctx;
	m->invalid++;
	return 0;
}

static bool in_tree(const struct kr_json *root, const struct kr_json *node)
{
	if (root == node)
		return true;
	if (root->type == KR_JSON_ARRAY || root->type == KR_JSON_OBJECT)
		for (size_t i = 0; i < root->n; i++)
			if (in_tree(root->items[i], node))
				return true;
	return false;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	size_t total = 0;
	for (size_t i = 0; i < NEVENTS; i++)
		total += strlen(sample_events[i]) + 1;
	g_events = malloc(total);
	if (!g_events)
		abort();
	for (size_t i = 0; i < NEVENTS; i++) {
		size_t n = strlen(sample_events[i]);
		memcpy(g_events + g_events_len, sample_events[i], n);
		g_events_len += n;
		g_events[g_events_len++] = '\n';
	}
	size_t off;
	char err[KR_ERRBUF];
	static const char *const catch[2] = {"{\"version\":[\"0\"]}",
					     "{\"id\":[{\"exists\":true}]}"};
	for (int i = 0; i < 2; i++)
		if (kr_json_parse(catch[i], strlen(catch[i]), NULL, &g_catch[i], &off, err) != KR_OK)
			abort();
	return 0;
}

static void add_rule(struct kr_rules *r, const struct kr_json *root, const struct kr_json *pat)
{
	const struct kr_json *bad = NULL;
	char err[KR_ERRBUF] = "";
	uint32_t before = kr_rules_count(r);
	enum kr_err e = kr_rules_add(r, pat, &bad, err);
	if (e == KR_OK) {
		CHECK(kr_rules_count(r) == before + 1);
		return;
	}
	CHECK(kr_rules_count(r) == before);
	CHECK(err[0] != 0);
	CHECK(strlen(err) < KR_ERRBUF);
	CHECK(bad == NULL || in_tree(root, bad));
	g_sink += strlen(err);
}

/* kr_json_text_path finds in the text what kr_json_path finds in the tree, for every path into
 * j that a JSONPath can say (names without '.', '[', ']' or NUL), up to a bounded number. */
static void check_text_paths(const char *text, size_t n, const struct kr_json_members *top,
			     const struct kr_json *root, const struct kr_json *j, char *path,
			     size_t plen, int *budget)
{
	if (--*budget < 0)
		return;
	path[plen] = 0;
	struct kr_json_span sp, msp;
	const struct kr_json *want = kr_json_path(root, path);
	bool got = kr_json_text_path(text, n, path, &sp);
	CHECK(got == (want != NULL));
	CHECK(kr_json_members_path(top, path, &msp) == got);
	CHECK(!got || (msp.type == sp.type && msp.p == sp.p && msp.len == sp.len &&
		       msp.escaped == sp.escaped));
	if (want) {
		CHECK(sp.type == want->type);
		if (want->type == KR_JSON_NUMBER)
			CHECK(sp.len == want->len && memcmp(sp.p, want->str, sp.len) == 0);
		if (want->type == KR_JSON_STRING) {
			struct kr_buf b = {0};
			CHECK(kr_json_span_string(&b, &sp));
			CHECK(b.len == want->len && memcmp(b.p, want->str, b.len) == 0);
			kr_buf_free(&b);
		}
	}
	for (size_t i = 0; j->type >= KR_JSON_ARRAY && i < j->n && plen < 200; i++) {
		int l;
		if (j->type == KR_JSON_OBJECT) {
			if (strpbrk(j->keys[i], ".[]") || memchr(j->keys[i], 0, j->keylens[i]) ||
			    j->keylens[i] > 40)
				continue;
			l = snprintf(path + plen, 256 - plen, ".%s", j->keys[i]);
		} else {
			l = snprintf(path + plen, 256 - plen, "[%zu]", i);
		}
		check_text_paths(text, n, top, root, j->items[i], path, plen + (size_t)l, budget);
	}
	path[plen] = 0;
}

/* Two trees built from one text are the same: types, offsets, texts, values, keys. */
static void same_tree(const struct kr_json *a, const struct kr_json *b)
{
	CHECK(a->type == b->type && a->offset == b->offset && a->n == b->n);
	if (a->type == KR_JSON_STRING || a->type == KR_JSON_NUMBER) {
		CHECK(a->len == b->len && memcmp(a->str, b->str, a->len) == 0);
		CHECK(a->type == KR_JSON_STRING || memcmp(&a->num, &b->num, sizeof a->num) == 0);
	}
	for (size_t i = 0; (a->type == KR_JSON_ARRAY || a->type == KR_JSON_OBJECT) && i < a->n; i++) {
		if (a->type == KR_JSON_OBJECT) {
			CHECK(a->keylens[i] == b->keylens[i] && a->key_offsets[i] == b->key_offsets[i]);
			CHECK(memcmp(a->keys[i], b->keys[i], a->keylens[i]) == 0);
		}
		same_tree(a->items[i], b->items[i]);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct kr_json_opts jopts = {.last_key_wins = true};
	static const struct kr_json_opts yopts = {.last_key_wins = true, .yajl_only = true};
	struct kr_json *doc = NULL, *ydoc = NULL;
	size_t off = 0, yoff = 0;
	char err[KR_ERRBUF] = "", yerr[KR_ERRBUF] = "";
	struct kr_json_span sp;
	/* yajl alone (without the fast path, lex.h) gives the same tree or the same error */
	enum kr_err e = kr_json_parse((const char *)data, size, &jopts, &doc, &off, err);
	enum kr_err ye = kr_json_parse((const char *)data, size, &yopts, &ydoc, &yoff, yerr);
	CHECK(e == ye);
	if (e == KR_OK)
		same_tree(doc, ydoc);
	else
		CHECK(off == yoff && strcmp(err, yerr) == 0);
	kr_json_free(ydoc);
	if (e != KR_OK) {
		CHECK(err[0] != 0 && off <= size);
		/* text that is not JSON: scanned no further than its end (ASan), whatever it says */
		(void)kr_json_text_path((const char *)data, size, "$.detail.key-id", &sp);
		(void)kr_json_text_path((const char *)data, size, "$[0][1].a", &sp);
		struct kr_json_members top;
		kr_json_members_scan(&top, (const char *)data, size);
		CHECK(kr_json_members_path(&top, "$.detail.key-id", &sp) ==
		      kr_json_text_path((const char *)data, size, "$.detail.key-id", &sp));
		return 0;
	}
	CHECK(doc != NULL);
	{
		char path[256] = "$";
		int budget = 256;
		struct kr_json_members top;
		kr_json_members_scan(&top, (const char *)data, size);
		check_text_paths((const char *)data, size, &top, doc, doc, path, 1, &budget);
	}
	if (doc->type != KR_JSON_OBJECT && doc->type != KR_JSON_ARRAY) {
		kr_json_free(doc);
		return 0;
	}
	struct kr_rules *r = NULL;
	if (kr_rules_new(&r) != KR_OK)
		abort();
	if (doc->type == KR_JSON_OBJECT) {
		add_rule(r, doc, doc);
	} else {
		for (size_t i = 0; i < doc->n && i < MAX_RULES; i++)
			add_rule(r, doc, doc->items[i]);
	}
	uint32_t count = kr_rules_count(r);
	if (count == 0)
		goto done;
	/* the catch-all rules last: every event must match them */
	for (int i = 0; i < 2; i++)
		CHECK(kr_rules_add(r, g_catch[i], NULL, err) == KR_OK);
	count += 2;
	if (kr_rules_build(r) != KR_OK)
		goto done;
	CHECK(kr_rules_add(r, g_catch[0], NULL, err) != KR_OK); /* already built */
	CHECK(kr_rules_count(r) == count);

	struct matchctx m = {.rules = r, .count = count, .catch_all = count - 2};
	m.st = kr_match_state_new(r);
	if (!m.st)
		abort();
	struct kr_stream *s = NULL;
	static const struct kr_stream_callbacks cb = {.event = on_event, .invalid = on_invalid};
	if (kr_stream_new(kr_rules_paths(r), NULL, &cb, &m, &s) != KR_OK)
		abort();
	CHECK(kr_stream_parse_mem(s, g_events, g_events_len) == KR_OK);
	CHECK(kr_stream_end(s) == KR_OK);
	CHECK(m.events == NEVENTS && m.invalid == 0);
	kr_stream_free(s);
	kr_match_state_free(m.st);
	g_sink += m.sink;
done:
	kr_rules_free(r);
	kr_json_free(doc);
	return 0;
}
