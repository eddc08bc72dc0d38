#include "config.h"
#include "relay/ratelimit.h"

#include <string.h>

void ratelimit_init(struct ratelimit *rl, unsigned n, double window, double now)
{
	memset(rl, 0, sizeof(*rl));
	ratelimit_configure(rl, n, window, now);
}

void ratelimit_configure(struct ratelimit *rl, unsigned n, double window, double now)
{
	unsigned k;

	(void)now;
	if (n == 0 || !(window > 0))
		n = 0, window = 0;
	rl->configured = n ? n / window : 0;
	/* Scale a huge N down so the ring stays bounded (see the header). */
	k = n > RATELIMIT_RING_MAX ? (n + RATELIMIT_RING_MAX - 1) / RATELIMIT_RING_MAX : 1;
	/* The ring is laid out modulo n: a new n starts it afresh. */
	if (rl->n != n / k)
		rl->nring = 0, rl->ring_pos = 0;
	rl->n = n / k;
	rl->window = window / k;
	rl->rate = rl->configured;
	rl->ceiling = 0;
	rl->successes = 0;
}

static bool ratelimit_throttled(const struct ratelimit *rl)
{
	return rl->rate > 0 && rl->rate != rl->configured;
}

/* Time from which the window admits another start. */
static double ratelimit_window_free_at(const struct ratelimit *rl)
{
	if (rl->n == 0 || rl->nring < rl->n)
		return 0;
	return rl->ring[rl->ring_pos] + rl->window;
}

static double ratelimit_spacing_free_at(const struct ratelimit *rl)
{
	if (!ratelimit_throttled(rl) || !rl->started)
		return 0;
	return rl->last + 1.0 / rl->rate;
}

static void ratelimit_remember(struct ratelimit *rl, double now)
{
	if (rl->n) {
		if (rl->nring < rl->n) {
			rl->ring[(rl->ring_pos + rl->nring) % rl->n] = now;
			rl->nring++;
		} else {
			rl->ring[rl->ring_pos] = now;
			rl->ring_pos = (rl->ring_pos + 1) % rl->n;
		}
	}
	rl->last = now;
	rl->started = true;
	rl->sends[rl->sends_pos] = now;
	rl->sends_pos = (rl->sends_pos + 1) % RATELIMIT_HISTORY;
	if (rl->nsends < RATELIMIT_HISTORY)
		rl->nsends++;
}

double ratelimit_wait(struct ratelimit *rl, double now)
{
	double at = ratelimit_window_free_at(rl), sp = ratelimit_spacing_free_at(rl);

	if (sp > at)
		at = sp;
	return at > now ? at - now : 0;
}

bool ratelimit_take(struct ratelimit *rl, double now)
{
	if (ratelimit_wait(rl, now) > 0)
		return false;
	ratelimit_remember(rl, now);
	return true;
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
	rl->rate = base / 2;
	if (rl->rate < RATELIMIT_MIN_RATE)
		rl->rate = RATELIMIT_MIN_RATE;
	rl->successes = 0;
	return rl->rate;
}

void ratelimit_success(struct ratelimit *rl)
{
	double cap;

	if (!ratelimit_throttled(rl))
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
