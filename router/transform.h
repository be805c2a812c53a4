/* kr_transform: the payload a target receives, as EventBridge's InputPath and InputTransformer
 * make it. Without either, the original event bytes, unchanged. InputPath selects part of the
 * event with a JSONPath ($, $.a.b, $.a[0]). InputTransformer extracts variables with JSONPaths
 * and substitutes <name> in a template; string values go in without their quotes (write
 * "<name>" in a JSON template), other values as JSON; the reserved <aws.events.rule-name>,
 * <aws.events.rule-arn>, <aws.events.event>, <aws.events.event.json> and
 * <aws.events.event.ingestion-time> are always there. Pure function; any thread. */
#ifndef KR_TRANSFORM_H
#define KR_TRANSFORM_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Returns a new payload (free with free()) and its length in *outlen, or NULL with err set. */
char *kr_transform(const struct kr_target_cfg *tc, const char *rule, const char *event,
		   size_t len, uint64_t received_wall_ms, size_t *outlen, char *err);

#endif
