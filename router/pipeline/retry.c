/* The retry policy (see retry.h). */
#include "retry.h"

bool kr_retry_delay(const struct kr_retry_cfg *p, uint64_t attempts, uint64_t age_ms,
		    uint64_t wait_at_least_ms, uint64_t random, uint64_t *delay_ms)
{
	if (attempts >= p->max_attempts || age_ms >= p->max_age_ms)
		return false;
	uint64_t cap = p->initial_backoff_ms;
	for (uint64_t i = 1; i < attempts && cap < p->max_backoff_ms; i++)
		cap *= 2;
	if (cap > p->max_backoff_ms)
		cap = p->max_backoff_ms;
	uint64_t delay = random % (cap + 1);
	if (wait_at_least_ms > delay)
		delay = wait_at_least_ms;
	if (age_ms + delay >= p->max_age_ms)
		delay = p->max_age_ms - age_ms;
	*delay_ms = delay;
	return true;
}
