/* kr_fields: what sinks send beside the payload, taken from the event: message attributes (SNS,
 * SQS) and templates (FIFO message group and deduplication ids, an SNS subject, a CloudWatch Logs
 * stream name, a Kinesis partition key).
 *
 * A template is text with placeholders <$.path>, each replaced by the value at that JSONPath
 * ($.a.b, $.a[0]) of the event: a string as it is, a number or true/false as its JSON text. A
 * placeholder whose field is absent, null, an object or an array gives nothing, and the template
 * is incomplete for that event (kr_tmpl_fill says so; sinks do not use an id from an incomplete
 * template). A '<' that does not start "<$" is text. "<$.detail.key-id>" is the key id of a KMS event, "<$.id>" its event id.
 *
 * An attribute is named by the last segment of its path ("$.detail.key-id" is "key-id"); an event
 * without the field, or with an empty string, an object, an array or null there, has no such
 * attribute. Pure functions, any thread. */
#ifndef KR_FIELDS_H
#define KR_FIELDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "json.h"
#include "plugin.h"

struct kr_tmpl;

/* Compiles text; NULL with the reason in err (KR_ERRBUF) when a placeholder is not <$...> with a
 * JSONPath, or out of memory. */
struct kr_tmpl *kr_tmpl_new(const char *text, char *err);
void kr_tmpl_free(struct kr_tmpl *t);
/* The event a delivery is for: its JSON text (kr_delivery's event), read field by field without
 * a tree: its top-level members found by one scan (kr_json_members) at the first field asked
 * for (so a sink that asks for none scans nothing), each field then within its member. text
 * NULL: no event (the dead letter of an invalid record), and every field is absent. The
 * functions below that read fields take it non-const for that reason. */
struct kr_event_text {
	const char *text;
	size_t len;
	struct kr_json_members top; /* top.text NULL: not scanned yet */
};

/* The event of a delivery's event text: no event when the text is not an object. */
struct kr_event_text kr_event_text_of(const char *text, size_t len);

/* Appends the template filled from ev (NULL: every placeholder gives nothing) to out; false when
 * out of memory. *complete says whether every placeholder had a value. */
bool kr_tmpl_fill(const struct kr_tmpl *t, struct kr_event_text *ev, struct kr_buf *out,
		  bool *complete);
/* The template filled from ev into scratch (emptied first), NUL-terminated; *n its length, or 0
 * when the template is incomplete for ev. NULL when out of memory. */
const char *kr_tmpl_text(const struct kr_tmpl *t, struct kr_event_text *ev,
			 struct kr_buf *scratch, size_t *n);
/* Whether the template has no placeholder (the same text for every event). */
bool kr_tmpl_constant(const struct kr_tmpl *t);

/* Checks a JSONPath of an attribute ($.a.b: names only); NULL when good, else the reason. */
const char *kr_attr_path_check(const char *path);
/* Checks a list of attribute paths for a service that takes at most max attributes, whose names
 * have 1 to 256 letters, digits, '_', '-' and '.' (SNS, SQS): NULL when good, else the reason
 * in msg (cap bytes). */
const char *kr_attr_list_check(const struct kr_strings *paths, size_t max, char *msg, size_t cap);
/* The attribute's name: the path's last segment (points into path). */
const char *kr_attr_name(const char *path);

/* The value for an attribute at path in ev: a non-empty string, or a number or boolean as its
 * JSON text, with *is_number set for a number; NULL when the event has no such attribute. It
 * points into the event's text, or into scratch (emptied first) for a string with escapes. */
const char *kr_attr_value(struct kr_event_text *ev, const char *path, struct kr_buf *scratch,
			  size_t *len, bool *is_number);

/* The event's "time" (RFC 3339) in milliseconds since the epoch, or -1 when it has none. */
int64_t kr_event_time_ms(struct kr_event_text *ev);

#endif
