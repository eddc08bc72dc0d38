/* The scheduler: which queued message goes to the relay when.
 *
 * An in-memory index of queue/ (id, next due time, busy) built at start by
 * scanning the queue; a timer fires at the earliest due time and due
 * messages are locked and handed to the deliverer (the relay), at most
 * SCHED_MAX_INFLIGHT at a time.  When a delivery is done the scheduler sets
 * each deferred recipient's next attempt (exponential backoff), expires
 * messages older than queue_lifetime, queues one DSN for newly failed
 * recipients (before writing their state: a crash may duplicate a DSN,
 * never lose it), writes the state and removes finished messages.
 */
#ifndef SMTPRELAY_SCHED_H
#define SMTPRELAY_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "daemon/daemon.h"
#include "queue/queue.h"

#define SCHED_MAX_INFLIGHT 500

/* The delivery engine as the scheduler sees it (relay_deliver's shape). */
typedef void (*sched_done_fn)(struct q_envelope *env, void *arg);
typedef int (*sched_deliver_fn)(void *ctx, struct q_envelope *env, sched_done_fn done, void *arg);

struct sched *sched_new(struct daemon *d);
void sched_free(struct sched *s);
/* Set (or clear, with NULL) the deliverer; without one messages stay queued. */
void sched_set_deliverer(struct sched *s, sched_deliver_fn fn, void *ctx);
/* Read queue/ into the index (corrupt files quarantined, finished ones removed). */
int sched_load(struct sched *s);
/* A message just entered queue/: deliver it now. */
int sched_add(struct sched *s, const char *id);
/* Index a queue/ message found by a scan unless already known. */
int sched_know(struct sched *s, const char *id);
/* Every message not in delivery becomes due now; returns how many. */
size_t sched_flush(struct sched *s);
/* Stop dispatching (shutdown); deliveries in progress still complete. */
void sched_stop(struct sched *s);
size_t sched_count(const struct sched *s);
size_t sched_inflight(const struct sched *s);

/* For the control socket (smtprelay queue/show/delete). */
/* true while the message is handed to the deliverer. */
bool sched_busy(const struct sched *s, const char *id);
/* A sorted copy of the ids sched_busy() is true for (*ids malloc'ed, *n
 * of them): what the metrics and status read off the loop classify as
 * "in delivery".  0, or -1 on ENOMEM. */
int sched_busy_ids(const struct sched *s, char (**ids)[QID_SIZE], size_t *n);
/* Forget a message being deleted by uid.  0: not in delivery (dropped from
 * the index, the caller removes its files); 1: in delivery: it is removed
 * when that delivery ends (no state written, no DSN) with the log line
 * "ID: removed by uid N". */
int sched_cancel(struct sched *s, const char *id, long uid);
/* Called with each message whose every recipient is done, just before it
 * leaves the queue. */
typedef void (*sched_finished_fn)(void *ctx, const struct q_envelope *env);
void sched_set_finished(struct sched *s, sched_finished_fn fn, void *ctx);

/* Pure policy, unit-tested. */
struct sched_policy {
	unsigned retry_min;
	unsigned retry_max;
	unsigned queue_lifetime;
};

struct sched_prev {
	enum q_rcpt_state state;
	unsigned attempts;
};

/* Delay before the next attempt after the attempts-th: retry_min doubled
 * per earlier attempt, capped at retry_max (and never below 1 s). */
time_t sched_backoff(unsigned retry_min, unsigned retry_max, unsigned attempts);
/* true once the message has been queued for lifetime seconds. */
bool sched_expired(int64_t arrival_us, time_t now, unsigned lifetime);
/* "5 days", "3 hours", "10 minutes", "30 seconds" (largest exact unit). */
void sched_duration_text(unsigned seconds, char *out, size_t len);
/* Earliest time a recipient is due (0 = now), or -1 when every recipient
 * is DELIVERED or FAILED. */
time_t sched_env_due(const struct q_envelope *env);
/* A held message (README "Running it": env->held, nothing left to deliver) stays in
 * the queue until queue_lifetime ends: that time, or -1 when it is not held
 * or its time is over. */
time_t sched_held_until(const struct q_envelope *env, unsigned lifetime, time_t now);
/* After a delivery attempt: newly deferred recipients get next_attempt;
 * past queue_lifetime every still-deferred recipient fails with
 * "message expired after N days in the queue: LAST REASON".  failed[i] is
 * set for each recipient that became FAILED.  Returns how many did, -1 on
 * ENOMEM. */
int sched_apply(struct q_envelope *env, const struct sched_prev *prev,
    const struct sched_policy *p, time_t now, bool *failed);
/* Undo a newly failed recipient (the DSN could not be queued): deferred
 * again, to be retried after retry_min. */
void sched_unfail(struct q_rcpt *r, const struct sched_prev *prev, time_t retry_at);

#endif
