/* InputPath and InputTransformer (see transform.h). The event is parsed into a tree only for
 * targets that transform; the default path copies bytes. */
#include "transform.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"

/* The value at a JSONPath ($, $.a.b, $.a[0]) or NULL. */
static const struct kr_json *jsonpath(const struct kr_json *root, const char *p)
{
	const struct kr_json *cur = root;
	const char *c = p + 1;
	while (cur && *c) {
		if (*c == '.') {
			c++;
			size_t n = strcspn(c, ".[");
			const struct kr_json *next = NULL;
			if (cur->type == KR_JSON_OBJECT)
				for (size_t i = 0; i < cur->n; i++)
					if (cur->keylens[i] == n && memcmp(cur->keys[i], c, n) == 0)
						next = cur->items[i];
			cur = next;
			c += n;
		} else if (*c == '[') {
			char *end;
			unsigned long idx = strtoul(c + 1, &end, 10);
			cur = cur->type == KR_JSON_ARRAY && idx < cur->n ? cur->items[idx] : NULL;
			c = *end == ']' ? end + 1 : end;
		} else {
			return NULL;
		}
	}
	return cur;
}

static char *copy_out(const struct kr_buf *b, size_t *outlen)
{
	*outlen = b->len;
	return b->p;
}

char *kr_transform(const struct kr_target_cfg *tc, const char *rule, const char *event,
		   size_t len, uint64_t received_wall_ms, size_t *outlen, char *err)
{
	if (!tc || (!tc->input_path && !tc->input_transformer)) {
		char *p = malloc(len + 1);
		if (!p) {
			kr_errf(err, KR_ERR_NOMEM, "out of memory");
			return NULL;
		}
		memcpy(p, event, len);
		p[len] = 0;
		*outlen = len;
		return p;
	}
	struct kr_json *doc = NULL;
	size_t off;
	struct kr_json_opts o = {.last_key_wins = true, .max_depth = 128};
	char jerr[KR_ERRBUF];
	if (kr_json_parse(event, len, &o, &doc, &off, jerr) != KR_OK) {
		kr_errf(err, KR_ERR_EVENT, "the event is not JSON: %s", jerr);
		return NULL;
	}
	struct kr_buf b = {0};
	bool ok = true;
	if (tc->input_path) {
		const struct kr_json *v = jsonpath(doc, tc->input_path->str);
		ok = v ? kr_json_write(&b, v) : kr_buf_puts(&b, "null");
	} else {
		const struct kr_json *paths = kr_json_get(tc->input_transformer, "input_paths");
		const char *t = kr_json_get(tc->input_transformer, "input_template")->str;
		char stamp[40];
		time_t secs = (time_t)(received_wall_ms / 1000);
		struct tm tm;
		gmtime_r(&secs, &tm);
		strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
		while (*t && ok) {
			const char *lt = strchr(t, '<');
			const char *gt = lt ? strchr(lt + 1, '>') : NULL;
			if (!lt || !gt) {
				ok = kr_buf_puts(&b, t);
				break;
			}
			ok = kr_buf_append(&b, t, (size_t)(lt - t));
			size_t n = (size_t)(gt - lt - 1);
			char name[128];
			if (n >= sizeof name) {
				ok = ok && kr_buf_append(&b, lt, 1);
				t = lt + 1;
				continue;
			}
			memcpy(name, lt + 1, n);
			name[n] = 0;
			const struct kr_json *var = NULL;
			for (size_t i = 0; paths && i < paths->n; i++)
				if (strcmp(paths->keys[i], name) == 0)
					var = paths->items[i];
			if (var) {
				const struct kr_json *v = jsonpath(doc, var->str);
				if (!v)
					ok = ok && kr_buf_puts(&b, "null");
				else if (v->type == KR_JSON_STRING) {
					/* inside the template's quotes: the characters, escaped */
					struct kr_buf q = {0};
					ok = ok && kr_buf_json_string(&q, v->str, v->len) && q.len >= 2 &&
					     kr_buf_append(&b, q.p + 1, q.len - 2);
					kr_buf_free(&q);
				} else {
					ok = ok && kr_json_write(&b, v);
				}
			} else if (strcmp(name, "aws.events.rule-name") == 0) {
				ok = ok && kr_buf_puts(&b, rule);
			} else if (strcmp(name, "aws.events.rule-arn") == 0) {
				ok = ok && kr_buf_puts(&b, "arn:kmsrouter:events:::rule/") &&
				     kr_buf_puts(&b, rule);
			} else if (strcmp(name, "aws.events.event") == 0 ||
				   strcmp(name, "aws.events.event.json") == 0) {
				ok = ok && kr_json_write(&b, doc);
			} else if (strcmp(name, "aws.events.event.ingestion-time") == 0) {
				ok = ok && kr_buf_puts(&b, stamp);
			} else {
				/* not a variable: the text stays, as in EventBridge */
				ok = ok && kr_buf_append(&b, lt, n + 2);
			}
			t = gt + 1;
		}
	}
	kr_json_free(doc);
	if (!ok || !b.p) {
		if (!ok) {
			kr_buf_free(&b);
			kr_errf(err, KR_ERR_NOMEM, "out of memory");
			return NULL;
		}
		b.p = calloc(1, 1);
		if (!b.p) {
			kr_errf(err, KR_ERR_NOMEM, "out of memory");
			return NULL;
		}
	}
	return copy_out(&b, outlen);
}
