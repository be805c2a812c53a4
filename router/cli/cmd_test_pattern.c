/* kmsrouter test-pattern: EventBridge's TestEventPattern, offline.
 *
 * The event goes through the same stream parser and view as `match` uses, so this command tests
 * the production path, not a second implementation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "config.h"
#include "json.h"
#include "rules.h"
#include "stream.h"

/* event-ruler reads patterns and events as token streams: every occurrence of a repeated key
 * counts (the pattern compiler lets a later one replace an earlier leaf, the event gets the
 * values of all), so all are kept. */
static const struct kr_json_opts lenient = {.keep_duplicate_keys = true};

struct one_event {
	struct kr_rules *rules;
	struct kr_match_state *st;
	int events;
	bool matched;
	char error[KR_ERRBUF];
};

static int on_event(void *ctx, const struct kr_event *ev)
{
	struct one_event *o = ctx;
	const uint32_t *ids;
	o->events++;
	o->matched = kr_rules_match(o->rules, o->st, ev->view, &ids) > 0;
	return 0;
}

static int on_invalid(void *ctx, const struct kr_invalid *inv)
{
	struct one_event *o = ctx;
	if (!o->error[0])
		snprintf(o->error, sizeof o->error, "invalid event: %s", inv->message);
	return 0;
}

/* Tests one pattern against one event. The event is written back to JSON text (numbers as they
 * were written, duplicate keys resolved) and read by the stream parser, as `match` reads events.
 * Returns 1 match, 0 no match, -1 error (message in err). */
static int test_one(const struct kr_json *pattern, const struct kr_json *event, char *err)
{
	struct kr_rules *r = NULL;
	struct kr_stream *s = NULL;
	struct one_event o = {0};
	struct kr_buf eb = {0};
	int result = -1;
	if (kr_rules_new(&r) != KR_OK) {
		kr_errf(err, KR_ERR_NOMEM, "out of memory");
		goto done;
	}
	if (kr_rules_add(r, pattern, NULL, err) != KR_OK)
		goto done;
	if (event->type != KR_JSON_OBJECT) {
		kr_errf(err, KR_ERR_EVENT, "the event must be a JSON object");
		goto done;
	}
	if (kr_rules_build(r) != KR_OK || !(o.st = kr_match_state_new(r)) ||
	    !kr_json_write(&eb, event)) {
		kr_errf(err, KR_ERR_NOMEM, "out of memory");
		goto done;
	}
	o.rules = r;
	struct kr_stream_callbacks cb = {.event = on_event, .invalid = on_invalid};
	struct kr_stream_opts so = {.raw_events_only = true, .no_time = true,
				    .max_record = eb.len + 1};
	if (kr_stream_new(kr_rules_paths(r), &so, &cb, &o, &s) != KR_OK ||
	    kr_stream_parse_mem(s, eb.p, eb.len) != KR_OK || kr_stream_end(s) != KR_OK) {
		kr_errf(err, KR_ERR_NOMEM, "out of memory");
		goto done;
	}
	if (o.error[0])
		kr_errf(err, KR_ERR_EVENT, "%s", o.error);
	else if (o.events != 1)
		kr_errf(err, KR_ERR_EVENT, "the event must be exactly one JSON object");
	else
		result = o.matched;
done:
	kr_stream_free(s);
	kr_buf_free(&eb);
	kr_match_state_free(o.st);
	kr_rules_free(r);
	return result;
}

static void oneline(char *s)
{
	for (; *s; s++)
		if (*s == '\n' || *s == '\r')
			*s = ' ';
}

static int batch(void)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int status = KR_EXIT_OK;
	while ((n = getline(&line, &cap, stdin)) >= 0) {
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = 0;
		char err[KR_ERRBUF] = "";
		struct kr_json *doc = NULL;
		size_t off;
		int r = -1;
		if (kr_json_parse(line, (size_t)n, &lenient, &doc, &off, err) != KR_OK) {
			char m[KR_ERRBUF];
			snprintf(m, sizeof m, "invalid JSON line at byte %zu: %s", off, err);
			memcpy(err, m, sizeof m);
		} else if (doc->type != KR_JSON_OBJECT || !kr_json_get(doc, "pattern") ||
			   !kr_json_get(doc, "event")) {
			snprintf(err, sizeof err, "each line must be an object with \"pattern\" and \"event\"");
		} else {
			r = test_one(kr_json_get(doc, "pattern"), kr_json_get(doc, "event"), err);
		}
		kr_json_free(doc);
		if (r < 0) {
			oneline(err);
			printf("error: %s\n", err);
			status = KR_EXIT_NOMATCH;
		} else {
			puts(r ? "true" : "false");
		}
	}
	free(line);
	return status;
}

static const char help[] =
	"usage: kmsrouter test-pattern PATTERN EVENT\n"
	"       kmsrouter test-pattern --batch < cases.jsonl\n\n"
	"Tests an EventBridge event pattern against an event, as EventBridge's TestEventPattern\n"
	"API does. PATTERN and EVENT are JSON text, or @FILE to read one from a file.\n"
	"Prints true or false; exit status 0 on a match, 1 on no match, 2 on an invalid pattern\n"
	"or event.\n\n"
	"  --batch   read JSON Lines on stdin, each {\"pattern\": ..., \"event\": ...} (other keys\n"
	"            are ignored), and print one line per input line: true, false or\n"
	"            error: MESSAGE. Exit status: 0 when every line was answered true or\n"
	"            false (a false answer is not a failure here), 1 when some line was an error\n"
	"            (each still has its own answer line), 2 on a usage error.\n";

/* Parses a command-line argument: JSON text, or @FILE. Returns a new tree or NULL (err says why). */
static struct kr_json *load_arg(const char *a, const char *what, char *err)
{
	char *text;
	size_t len;
	if (a[0] == '@') {
		if (kr_read_file(a + 1, &text, &len, err) != KR_OK)
			return NULL;
	} else {
		len = strlen(a);
		text = strdup(a);
		if (!text) {
			kr_errf(err, KR_ERR_NOMEM, "out of memory");
			return NULL;
		}
	}
	struct kr_json *j = NULL;
	size_t off;
	char jerr[KR_ERRBUF];
	if (kr_json_parse(text, len, &lenient, &j, &off, jerr) != KR_OK) {
		size_t line, col;
		kr_json_linecol(text, len, off, &line, &col);
		kr_errf(err, KR_ERR_JSON, "%s is not valid JSON (%zu:%zu): %s", what, line, col, jerr);
	}
	free(text);
	return j;
}

int kr_cmd_test_pattern(int argc, char **argv)
{
	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(help, stdout);
		return KR_EXIT_OK;
	}
	if (argc == 2 && strcmp(argv[1], "--batch") == 0)
		return batch();
	if (argc != 3) {
		fputs(help, stderr);
		return KR_EXIT_USAGE;
	}
	char err[KR_ERRBUF] = "";
	struct kr_json *p = load_arg(argv[1], "the pattern", err);
	struct kr_json *e = p ? load_arg(argv[2], "the event", err) : NULL;
	int r = -1;
	if (p && e)
		r = test_one(p, e, err);
	kr_json_free(p);
	kr_json_free(e);
	if (r < 0) {
		fprintf(stderr, "kmsrouter: %s\n", err);
		return KR_EXIT_USAGE;
	}
	puts(r ? "true" : "false");
	return r ? KR_EXIT_OK : KR_EXIT_NOMATCH;
}
