/* kr_retry_delay: EventBridge's retry policy (at most max_attempts attempts, none once the event
 * is max_age old) with exponential back-off and full jitter between attempts, and never before
 * the service's own "not before" (Retry-After). Pure function. */
#ifndef KR_RETRY_H
#define KR_RETRY_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

/* After attempt number attempts failed, on an event age_ms old: whether to try again and, if so,
 * the wait in *delay_ms. The wait is uniform in [0, cap] where cap doubles from
 * initial_backoff_ms with each attempt up to max_backoff_ms (random is a fresh random number),
 * at least wait_at_least_ms, and never past the event's max age. */
bool kr_retry_delay(const struct kr_retry_cfg *p, uint64_t attempts, uint64_t age_ms,
		    uint64_t wait_at_least_ms, uint64_t random, uint64_t *delay_ms);

#endif
