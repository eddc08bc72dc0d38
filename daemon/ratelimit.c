#include "config.h"
#include "daemon/ratelimit.h"

#include <string.h>

static double ratelimit_burst(const struct ratelimit *rl)
{
	return rl->rate > 1.0 ? rl->rate : 1.0;
}

static void ratelimit_refill(struct ratelimit *rl, double now)
{
	double burst = ratelimit_burst(rl);

	if (now > rl->last)
		rl->tokens += (now - rl->last) * rl->rate;
	rl->last = now;
	if (rl->tokens > burst)
		rl->tokens = burst;
}

void ratelimit_init(struct ratelimit *rl, double rate, double now)
{
	memset(rl, 0, sizeof(*rl));
	ratelimit_configure(rl, rate, now);
}

void ratelimit_configure(struct ratelimit *rl, double rate, double now)
{
	rl->configured = rate > 0 ? rate : 0;
	rl->rate = rl->configured;
	rl->ceiling = 0;
	rl->successes = 0;
	rl->tokens = ratelimit_burst(rl);
	rl->last = now;
}

static void ratelimit_remember(struct ratelimit *rl, double now)
{
	rl->sends[rl->sends_pos] = now;
	rl->sends_pos = (rl->sends_pos + 1) % RATELIMIT_HISTORY;
	if (rl->nsends < RATELIMIT_HISTORY)
		rl->nsends++;
}

bool ratelimit_take(struct ratelimit *rl, double now)
{
	if (rl->rate > 0) {
		ratelimit_refill(rl, now);
		if (rl->tokens < 1.0)
			return false;
		rl->tokens -= 1.0;
	}
	ratelimit_remember(rl, now);
	return true;
}

double ratelimit_wait(struct ratelimit *rl, double now)
{
	if (rl->rate <= 0)
		return 0;
	ratelimit_refill(rl, now);
	if (rl->tokens >= 1.0)
		return 0;
	return (1.0 - rl->tokens) / rl->rate;
}

double ratelimit_observed(const struct ratelimit *rl, double now)
{
	double oldest = now, span;

	if (rl->nsends == 0)
		return 0;
	for (size_t i = 0; i < rl->nsends; i++)
		if (rl->sends[i] < oldest)
			oldest = rl->sends[i];
	/* Over at least a second: a burst of n sends is n/s, not infinite. */
	span = now - oldest;
	if (span < 1.0)
		span = 1.0;
	return (double)rl->nsends / span;
}

double ratelimit_throttle(struct ratelimit *rl, double now)
{
	double base = rl->rate;

	if (base <= 0) {
		/* Unlimited: cut from what we were actually sending. */
		base = ratelimit_observed(rl, now);
		if (base < 1.0)
			base = 1.0;
		rl->ceiling = base;
	}
	ratelimit_refill(rl, now);
	rl->rate = base / 2;
	if (rl->rate < RATELIMIT_MIN_RATE)
		rl->rate = RATELIMIT_MIN_RATE;
	if (rl->tokens > ratelimit_burst(rl))
		rl->tokens = ratelimit_burst(rl);
	rl->successes = 0;
	return rl->rate;
}

void ratelimit_success(struct ratelimit *rl)
{
	double cap;

	if (rl->rate <= 0 || rl->rate == rl->configured)
		return;
	if (++rl->successes < RATELIMIT_RECOVER_EVERY)
		return;
	rl->successes = 0;
	rl->rate *= RATELIMIT_RECOVER_FACTOR;
	cap = rl->configured > 0 ? rl->configured : rl->ceiling;
	if (rl->rate >= cap)
		rl->rate = rl->configured;
}

double ratelimit_rate(const struct ratelimit *rl)
{
	return rl->rate;
}
