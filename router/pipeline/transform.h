/* kr_transform: the payload a target receives, as EventBridge's InputPath and InputTransformer
 * make it. Without either, the original event bytes, unchanged. InputPath selects part of the
 * event with a JSONPath ($, $.a.b, $.a[0]).
 *
 * InputTransformer follows the EventBridge user guide ("Amazon EventBridge input
 * transformation"). input_paths names up to 100 variables, each a JSONPath into the event; the
 * predefined <aws.events.rule-name>, <aws.events.rule-arn>, <aws.events.event.ingestion-time>,
 * <aws.events.event> (the event without "detail") and <aws.events.event.json> (the whole event)
 * are always there. A template whose first character other than blanks is '{' or '[' is a JSON
 * template: outside quotes a variable is written as JSON (a string quoted and escaped), inside a
 * string as text (escaped; an object or array loses its quotes), and the output is minified JSON.
 * One whose first such character is '"' is a text template: one or more strings in double
 * quotes (one per line), filled the same way and kept as written. A variable whose path is not in
 * the event does not appear: no text in a string, and the field or array item it is the value of
 * is left out. kr_template_check refuses, at load, every template that could give anything else;
 * pure functions, any thread. */
#ifndef KR_TRANSFORM_H
#define KR_TRANSFORM_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Returns a new payload (NUL-terminated; free with free()) and its length in *outlen, or NULL
 * with err set: KR_ERR_EVENT when the event is not JSON, KR_ERR_CONFIG for a template that
 * kr_template_check would have refused. */
char *kr_transform(const struct kr_target_cfg *tc, const char *rule, const char *event,
		   size_t len, uint64_t received_wall_ms, size_t *outlen, char *err);

/* Checks the template tmpl (len bytes, decoded from the config) against paths (the input_paths
 * object, or NULL): KR_OK when every event gives valid output, else KR_ERR_CONFIG with the
 * reason in err and *at the byte of tmpl where the problem is (or KR_ERR_NOMEM). */
enum kr_err kr_template_check(const char *tmpl, size_t len, const struct kr_json *paths,
			      size_t *at, char *err);

#endif
