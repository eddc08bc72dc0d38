/* Per-smarthost sending rate: a token bucket plus throttling feedback.
 *
 * The bucket holds at most one second's worth of tokens (at least one), so
 * bursts never exceed the rate by more than that (DESIGN §4).  A throttling
 * reply halves the rate (from the configured one, or when unlimited from the
 * observed sending rate), never below one message a minute; successes win
 * it back by 10% every 10, up to the configured rate (or, when unlimited, up
 * to the rate the throttle cut, after which the bucket is unlimited
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

struct ratelimit {
	double configured;		/* msgs/s from the config; 0 = unlimited */
	double rate;			/* in force now; 0 = unlimited */
	double ceiling;			/* unlimited config: back to unlimited above this */
	double tokens;
	double last;			/* time of the last refill */
	unsigned successes;		/* since the last recovery step */
	double sends[RATELIMIT_HISTORY];
	size_t nsends, sends_pos;
};

void ratelimit_init(struct ratelimit *rl, double rate, double now);
/* New configured rate (reload); drops any throttling. */
void ratelimit_configure(struct ratelimit *rl, double rate, double now);
/* Take a token for one message: true, or false when the bucket is empty. */
bool ratelimit_take(struct ratelimit *rl, double now);
/* Seconds until a token is available (0 when one is). */
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
