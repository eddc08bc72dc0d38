/* Per-smarthost sending rate: a sliding window plus throttling feedback.
 *
 * rate_limit "N/W" (smtprelay.conf(5)) means that no interval [t, t+W) ever holds
 * more than N starts (ratelimit_take), however they are spread over the
 * smarthost's connections: the start times of the last N sends are kept in
 * a ring, and a send is allowed only when the oldest of them is at least W
 * old.  There is no burst allowance beyond N.  The ring holds at most
 * RATELIMIT_RING_MAX times; a larger N is enforced as N/k per W/k with
 * k = ceil(N / RATELIMIT_RING_MAX), which is stricter (any W holds at most
 * k * floor(N/k) <= N) and loses fewer than k sends per W.
 *
 * A throttling reply halves the rate (from the configured N/W, or when
 * unlimited from the observed sending rate), never below one message a
 * minute, and while throttled sends are also spaced 1/rate apart; successes
 * win it back by 10% every 10, up to the configured rate (or, when
 * unlimited, up to the rate the throttle cut, after which it is unlimited
 * again).  Times are seconds on a monotonic clock, passed in by the caller
 * so the arithmetic is testable.
 */
#ifndef SMTPRELAY_RATELIMIT_H
#define SMTPRELAY_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>

#define RATELIMIT_MIN_RATE (1.0 / 60)	/* floor after throttling: 1/min */
#define RATELIMIT_HISTORY 16		/* sends remembered for the observed rate */
#define RATELIMIT_RECOVER_EVERY 10	/* successes per recovery step */
#define RATELIMIT_RECOVER_FACTOR 1.1
#define RATELIMIT_RING_MAX 1024		/* window timestamps kept (8 KiB) */

struct ratelimit {
	unsigned n;			/* window limit in force (after scaling); 0 = none */
	double window;			/* seconds */
	double configured;		/* msgs/s from the config; 0 = unlimited */
	double rate;			/* in force now; 0 = unlimited */
	double ceiling;			/* unlimited config: back to unlimited above this */
	double last;			/* last start, for spacing while throttled */
	bool started;			/* last is valid */
	unsigned successes;		/* since the last recovery step */
	double ring[RATELIMIT_RING_MAX];/* start times of the last n sends */
	size_t nring, ring_pos;		/* ring_pos: oldest once nring == n */
	double sends[RATELIMIT_HISTORY];
	size_t nsends, sends_pos;
};

/* n sends per window seconds; n == 0 or window <= 0 means unlimited. */
void ratelimit_init(struct ratelimit *rl, unsigned n, double window, double now);
/* New configured limit (reload); drops any throttling, keeps the history. */
void ratelimit_configure(struct ratelimit *rl, unsigned n, double window, double now);
/* Start one transaction: true, or false when it would break the limit. */
bool ratelimit_take(struct ratelimit *rl, double now);
/* Seconds until ratelimit_take would succeed (0 when it would now). */
double ratelimit_wait(struct ratelimit *rl, double now);
/* A throttling reply: halve the rate; returns the new rate (msgs/s). */
double ratelimit_throttle(struct ratelimit *rl, double now);
/* A message was accepted: gradual recovery. */
void ratelimit_success(struct ratelimit *rl);
/* Current rate, 0 = unlimited. */
double ratelimit_rate(const struct ratelimit *rl);
/* Messages per second over the remembered recent sends (0 if none). */
double ratelimit_observed(const struct ratelimit *rl, double now);

#endif
