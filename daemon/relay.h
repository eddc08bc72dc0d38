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

struct relay;

/* Called once per relay_deliver when every attempted recipient of env has an
 * outcome: state DELIVERED, FAILED (5xx), or DEFERRED (4xx, connection
 * failure, shutdown) with last_reason and last_attempt set and attempts
 * incremented.  next_attempt is the scheduler's business.  One log line per
 * recipient has been written (DESIGN §6 format). */
typedef void (*relay_done_fn)(struct q_envelope *env, void *arg);

struct relay *relay_new(struct event_base *base, struct evdns_base *dns, struct queue *q,
    const struct config *conf);
/* Deliver env's recipients that are PENDING or DEFERRED.  env stays owned
 * by the caller, untouched until done() is called.  The relay opens the
 * content itself (queue_open_content).  Returns 0; -1 on ENOMEM. */
int relay_deliver(struct relay *r, struct q_envelope *env, relay_done_fn done, void *arg);
/* Messages accepted but not finished. */
size_t relay_inflight(const struct relay *r);
/* SIGHUP: new config (the caller keeps it alive until the next reload);
 * connections in progress finish on the old settings, idle ones close. */
int relay_reload(struct relay *r, const struct config *conf);
/* SIGTERM: start nothing new; transactions in progress may finish until
 * grace runs out, then everything is aborted and every message still held is
 * reported DEFERRED ("delivery interrupted by shutdown").  idle() is called
 * once nothing is in flight. */
void relay_shutdown(struct relay *r, unsigned grace_seconds, void (*idle)(void *), void *arg);
void relay_free(struct relay *r);

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
