/* The delivery engine: hands messages to smarthosts.
 *
 * Per smarthost (in config order = failover order): ports tried in order
 * starting with the one that worked last, connections reused (RSET) up to
 * max_messages_per_connection, at most max_connections in parallel, sending
 * within rate_limit (token bucket, bursts of one second's worth), and a
 * throttling reply (SES 454 "Throttling failure", 421/451 rate or
 * concurrency limits) halves the rate and holds that smarthost's queue
 * briefly instead of burning retries.  Credentials come from the config or
 * from password_command (run per connection needing AUTH).
 */
#ifndef SMTPRELAY_RELAY_H
#define SMTPRELAY_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "relay/oauth2.h"

struct relay;

/* Called once per relay_deliver when every attempted recipient of env has an
 * outcome: state DELIVERED, FAILED (5xx), or DEFERRED (4xx, connection
 * failure, shutdown) with last_reason and last_attempt set and attempts
 * incremented.  next_attempt is the scheduler's business.  One log line per
 * recipient has been written (format: smtprelayd(8) "LOGGING").  Always called from the
 * event loop, never from within relay_deliver; env may be handed to
 * relay_deliver again from here. */
typedef void (*relay_done_fn)(struct q_envelope *env, void *arg);

struct relay *relay_new(struct event_base *base, struct evdns_base *dns, struct queue *q,
    const struct config *conf);
/* Deliver env's recipients that are PENDING or DEFERRED.  env stays owned
 * by the caller, untouched until done() is called.  The relay opens the
 * content itself (queue_open_content).  Returns 0; -1 on ENOMEM. */
int relay_deliver(struct relay *r, struct q_envelope *env, relay_done_fn done, void *arg);
/* Messages accepted but not finished. */
size_t relay_inflight(const struct relay *r);
/* SIGHUP: new config.  Connections in the middle of a transaction finish
 * on the old settings, then quit; idle and connecting ones close at once;
 * waiting messages start over with the first smarthost of the new config.
 * The caller keeps each config alive until the reload after the one that
 * replaced it (so: the previous one too) or relay_free; connections still
 * on a config two reloads old are aborted (their messages are retried).
 * Returns 0; -1 on ENOMEM (the old config stays in use). */
int relay_reload(struct relay *r, const struct config *conf);
/* `smtprelay flush` / `sendmail -q` (smtprelayd(8) "Queue guarantees"): every smarthost eligible
 * at once: no hold after a failed connection or a configuration-error
 * reply, no throttling hold or slowdown (rate_limit still applies).  Each
 * smarthost it released is logged. */
void relay_flush(struct relay *r);
/* SIGTERM: start nothing new; transactions in progress may finish until
 * grace runs out, then everything is aborted and every message still held is
 * reported DEFERRED ("delivery interrupted by shutdown").  idle() is called
 * once nothing is in flight. */
void relay_shutdown(struct relay *r, unsigned grace_seconds, void (*idle)(void *), void *arg);
/* Frees everything; done() is not called for unfinished messages.  Not
 * from within done() or idle(). */
void relay_free(struct relay *r);

/* DKIM keys for the messages sent from now on (NULL: none); the caller
 * keeps s alive until it is replaced or the relay is freed. */
/* Where a rotated OAuth2 refresh token is saved (relay/oauth2.h,
 * oauth2_set_saver): the daemon passes its commit stage; without it the
 * relay writes the file on the loop. */
void relay_set_token_saver(struct relay *r, oauth2_saver_fn save, void *ctx);

struct signer;
void relay_set_signer(struct relay *r, const struct signer *s);

/* Internal timings; tests shorten them. */
struct relay_tuning {
	unsigned idle_timeout_ms;	/* an idle connection is kept for reuse: 5000 */
	unsigned throttle_hold_ms;	/* a throttled smarthost is held: 15000 */
	unsigned throttle_cap_ms;	/* a message held longer in total is deferred: 300000 */
	unsigned down_ms;		/* a smarthost whose every port failed is skipped: 60000 */
	unsigned password_timeout;	/* seconds for password_command: 30 */
};
void relay_get_tuning(const struct relay *r, struct relay_tuning *t);
void relay_set_tuning(struct relay *r, const struct relay_tuning *t);

/* For `smtprelay status`: what a smarthost is doing. */
struct relay_smarthost_status {
	const char *name;
	const char *port;		/* the port delivery uses now, e.g. "587/starttls" */
	time_t last_success;
	time_t last_error_time;
	char last_error[256];
	unsigned connections;
	double rate_per_sec;		/* current (may be throttled below the configured) */
	time_t held_until;
};
size_t relay_status(const struct relay *r, struct relay_smarthost_status *out, size_t max);

#endif
