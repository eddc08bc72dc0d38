/* Counters since the daemon started (README "Monitoring"), for `smtprelay status`
 * and the Prometheus exposition (daemon/metrics.h renders them).
 *
 * One set per process, outside the configuration: a SIGHUP keeps every
 * count, and a smarthost removed by a reload keeps its counts (keyed by
 * section name) until the daemon exits.  Counts are per recipient outcome,
 * like the log's delivery lines.  Everything runs on the event loop; no
 * locking.  On ENOMEM a count is lost, never the mail.
 */
#ifndef SMTPRELAY_STATS_H
#define SMTPRELAY_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "queue/queue.h"

/* Why recipients were deferred: the `reason` label, a small fixed set. */
enum stats_reason {
	STATS_R_CONNECTION,	/* no session with any port of the smarthost */
	STATS_R_AUTH,		/* credentials or account (a configuration error) */
	STATS_R_REPLY,		/* a 4xx reply to the transaction */
	STATS_R_THROTTLED,	/* held too long by throttling */
	STATS_R_LOST,		/* connection lost during the transaction */
	STATS_R_SHUTDOWN,	/* the daemon stopped first */
	STATS_R_NO_SMARTHOST,	/* none configured / none serves the sender */
	STATS_R_OTHER,		/* local trouble (queue file unreadable, memory) */
	STATS_NREASONS
};
const char *stats_reason_name(enum stats_reason r);
/* Classify a deferral by its reason text and relay= value ("none" when no
 * session was made). */
enum stats_reason stats_reason_of(const char *relay, const char *reason);

enum stats_source { STATS_SRC_SENDMAIL, STATS_SRC_SMTP, STATS_NSOURCES };

struct stats_pair {
	char key[32];			/* verdict word, or TLS version */
	unsigned port;			/* for connection failures */
	uint64_t n;
};

struct stats_sh {
	char name[72];			/* section name; "none" without a smarthost */
	uint64_t delivered, bounced;
	uint64_t deferred[STATS_NREASONS];
	struct stats_pair *fail, *tls;
	size_t nfail, ntls;
};

/* Upper bounds (seconds) of the delivery duration histogram's buckets. */
#define STATS_NBUCKETS 14
extern const double stats_bucket_bounds[STATS_NBUCKETS];

struct stats {
	time_t started;
	uint64_t received[STATS_NSOURCES];
	struct stats_sh *sh;
	size_t nsh;
	uint64_t buckets[STATS_NBUCKETS];	/* not cumulative */
	uint64_t duration_count;
	double duration_sum;
};

/* Start the clock (the daemon calls it once at start). */
void stats_start(void);
const struct stats *stats_get(void);
/* The counters of a smarthost by name, NULL when it has none yet. */
const struct stats_sh *stats_find(const char *smarthost);

void stats_received(enum stats_source src);
/* A recipient's outcome through smarthost (NULL or "": none); delay is
 * seconds since the message arrived (observed for delivered ones). */
void stats_outcome(const char *smarthost, enum q_rcpt_state st, const char *relay,
    const char *reason, double delay);
void stats_conn_failure(const char *smarthost, unsigned port, const char *verdict);
void stats_tls(const char *smarthost, const char *version);
/* Forget everything (tests). */
void stats_reset(void);

#endif
