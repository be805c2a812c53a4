/* libFuzzer target for configuration loading (router/config/config.h).
 *
 * The input is the text of a configuration file, any bytes (NUL bytes and invalid UTF-8
 * included), given with its length to kr_config_parse under the name "fuzz.json", then freed
 * with kr_config_free. kr_config_parse loads as `check` and `run` do, not offline, so it looks at
 * this machine, read-only: getenv for the *_env secrets (the target sets KR_FUZZ_SECRET for its
 * seeds), stat/access for the folder of a log sink's path, and, for the kafka source and sink,
 * librdkafka (dlopen) and rd_kafka_conf_set with the "properties" of the input. One property
 * would act at once: librdkafka loads (dlopen) the libraries that "plugin.library.paths" names
 * while it is set. kmsrouter refuses that property before librdkafka sees it (rdkafka.c); as a
 * second guard, an input is skipped when its text, parsed as config.c parses it (comments
 * allowed, depth 128), has an object key, anywhere, containing "plugin" in any case (as a C
 * string, which is what rd_kafka_conf_set gets); text that this parse rejects must then be
 * rejected by kr_config_parse too (checked below). Nothing in loading writes or deletes files,
 * starts processes or connects anywhere (the AWS credential_process, the metrics listener and
 * the Kafka clients only start in `run`). Run it from a scratch folder all the same: relative
 * paths resolve against the config's folder, here ".".
 *
 * Invariants (a violation calls __builtin_trap()):
 *   - failure (not KR_OK): *out is NULL (config.h does not say so; parse_owned_as sets it
 *     first and tests/unit/test_config.c holds it to that); err, KR_ERRBUF bytes on the heap,
 *     is NUL-terminated within them and not empty; unless KR_ERR_NOMEM ("out of memory"), it is
 *     "fuzz.json:LINE:COL: $PATH: MESSAGE" as config.h promises: LINE and COL decimal, at least
 *     1, LINE at most the input's lines, COL at most its length + 1, then ": $", a ": " after it
 *     and, when the message is not cut at KR_ERRBUF, something after the last separator;
 *   - input that is not JSON with comments (the skip test above) is rejected;
 *   - success: *out is not NULL and, as config.h's struct comments say: every sink index
 *     (a sink's and a target's dead_letter, invalid_dead_letter, unmatched: -1 or below nsinks;
 *     a rule's targets[k] and tcfg[k].sink, the same, below nsinks), every retry policy's
 *     max_attempts >= 1, a source's or sink's plugin NULL exactly when its conf is, nrules <=
 *     rules_cap, rule i of the config is rule id i (kr_rules_count == nrules), input_path a
 *     string and input_transformer an object when set, metrics.listen "HOST:PORT" when set,
 *     log.format and log.level indexes of kr_log_format_names and kr_log_level_names;
 *     kr_config_unavailable counts the entries without a plugin, with its message
 *     NUL-terminated within KR_ERRBUF;
 *   - kr_config_free frees everything (LSan), ASan catches the rest. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "err.h"
#include "json.h"
#include "log.h"
#include "rules.h"

#define CHECK(c)                         \
	do {                             \
		if (!(c))                \
			__builtin_trap(); \
	} while (0)

#define NAME "fuzz.json"

static volatile size_t g_sink;

/* Whether s contains "plugin", in any case. */
static bool has_plugin(const char *s)
{
	static const char w[] = "plugin";
	for (; *s; s++) {
		size_t i = 0;
		while (w[i] && (s[i] | 0x20) == w[i])
			i++;
		if (!w[i])
			return true;
	}
	return false;
}

/* Whether the tree has an object key (anywhere) naming a librdkafka plugin property. */
static bool names_plugin(const struct kr_json *j)
{
	if (j->type != KR_JSON_OBJECT && j->type != KR_JSON_ARRAY)
		return false;
	for (size_t i = 0; i < j->n; i++) {
		if (j->type == KR_JSON_OBJECT && has_plugin(j->keys[i]))
			return true;
		if (names_plugin(j->items[i]))
			return true;
	}
	return false;
}

/* A decimal number (at most 19 digits) at *p, which moves past it. */
static bool number(const char **p, size_t *out)
{
	size_t n = 0, digits = 0;
	while (**p >= '0' && **p <= '9' && digits < 19) {
		n = n * 10 + (size_t)(**p - '0');
		(*p)++;
		digits++;
	}
	*out = n;
	return digits > 0 && !(**p >= '0' && **p <= '9');
}

static void check_error(enum kr_err e, const char *err, const uint8_t *data, size_t size)
{
	size_t n = strnlen(err, KR_ERRBUF);
	CHECK(n < KR_ERRBUF);
	CHECK(n > 0);
	if (e == KR_ERR_NOMEM)
		return;
	CHECK(strncmp(err, NAME ":", sizeof NAME) == 0);
	const char *p = err + sizeof NAME;
	size_t line, col;
	CHECK(number(&p, &line) && *p++ == ':');
	CHECK(number(&p, &col) && *p++ == ':');
	CHECK(*p++ == ' ' && *p == '$');
	size_t lines = 1;
	for (size_t i = 0; i < size; i++)
		lines += data[i] == '\n';
	CHECK(line >= 1 && line <= lines);
	CHECK(col >= 1 && col <= size + 1);
	const char *sep = strstr(p, ": ");
	CHECK(sep != NULL);
	if (n < KR_ERRBUF - 1)
		CHECK(!(n >= 2 && err[n - 2] == ':' && err[n - 1] == ' '));
}

static bool sink_ref_ok(int32_t i, size_t nsinks)
{
	return i == -1 || (i >= 0 && (size_t)i < nsinks);
}

static size_t count_names(const char *const *v)
{
	size_t n = 0;
	while (v[n])
		n++;
	return n;
}

static void check_config(const struct kr_config *c)
{
	size_t without = 0;
	for (size_t i = 0; i < c->nsinks; i++) {
		const struct kr_sink_cfg *s = &c->sinks[i];
		CHECK(s->name && s->type);
		CHECK((s->plugin == NULL) == (s->conf == NULL));
		CHECK(s->retry.max_attempts >= 1);
		CHECK(sink_ref_ok(s->dead_letter, c->nsinks));
		without += s->plugin == NULL;
	}
	for (size_t i = 0; i < c->nsources; i++) {
		const struct kr_source_cfg *s = &c->sources[i];
		CHECK(s->name && s->type);
		CHECK((s->plugin == NULL) == (s->conf == NULL));
		without += s->plugin == NULL;
	}
	CHECK(c->nrules <= c->rules_cap);
	CHECK(c->compiled != NULL && kr_rules_count(c->compiled) == c->nrules);
	for (size_t i = 0; i < c->nrules; i++) {
		const struct kr_rule_cfg *r = &c->rules[i];
		CHECK(r->name != NULL);
		for (size_t k = 0; k < r->ntargets; k++) {
			const struct kr_target_cfg *t = &r->tcfg[k];
			CHECK(r->targets[k] < c->nsinks && t->sink == r->targets[k]);
			CHECK(t->retry.max_attempts >= 1);
			CHECK(sink_ref_ok(t->dead_letter, c->nsinks));
			CHECK(!t->input_path || t->input_path->type == KR_JSON_STRING);
			CHECK(!t->input_transformer || t->input_transformer->type == KR_JSON_OBJECT);
		}
		g_sink += r->nmerged;
	}
	CHECK(sink_ref_ok(c->invalid_dead_letter, c->nsinks));
	CHECK(sink_ref_ok(c->unmatched, c->nsinks));
	CHECK(!c->metrics.listen || strchr(c->metrics.listen, ':'));
	CHECK(c->log.format >= 0 && (size_t)c->log.format < count_names(kr_log_format_names));
	CHECK(c->log.level >= 0 && (size_t)c->log.level < count_names(kr_log_level_names));

	char *msg = malloc(KR_ERRBUF);
	if (!msg)
		abort();
	memset(msg, 0xa5, KR_ERRBUF);
	CHECK(kr_config_unavailable(c, msg) == without);
	CHECK(strnlen(msg, KR_ERRBUF) < KR_ERRBUF);
	free(msg);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* the secret the seeds' *_env options name */
	setenv("KR_FUZZ_SECRET", "fuzz-secret", 1);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* an exact copy: nothing past its end to read */
	char *text = malloc(size ? size : 1);
	if (!text)
		abort();
	memcpy(text, data, size);

	struct kr_json_opts jo = {.allow_comments = true, .max_depth = 128};
	struct kr_json *tree = NULL;
	size_t off = 0;
	char jerr[KR_ERRBUF];
	bool json = kr_json_parse(text, size, &jo, &tree, &off, jerr) == KR_OK;
	bool skip = json && names_plugin(tree);
	kr_json_free(tree);
	if (skip) {
		free(text);
		return 0;
	}

	char *err = malloc(KR_ERRBUF);
	if (!err)
		abort();
	memset(err, 0xa5, KR_ERRBUF);
	struct kr_config *c = (struct kr_config *)1; /* overwritten either way */
	enum kr_err e = kr_config_parse(NAME, text, size, &c, err);
	if (e == KR_OK) {
		CHECK(json);
		CHECK(c != NULL && c != (struct kr_config *)1);
		check_config(c);
		kr_config_free(c);
	} else {
		CHECK(c == NULL);
		check_error(e, err, data, size);
	}
	free(err);
	free(text);
	return 0;
}
