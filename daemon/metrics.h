/* Exposition of the daemon's state (README "Monitoring"): Prometheus text format
 * 0.0.4, `status --json`, and the since-start lines of `smtprelay status`.
 *
 * The numbers come from relay/stats (counters), the relay (current port,
 * throttling, last error) and one pass over the queue (messages by state,
 * oldest age).  Served three ways: on metrics_listen over HTTP (libevent's
 * evhttp: GET /metrics only; other paths 404, other methods 405, oversized
 * requests are refused, a client idle for METRICS_HTTP_TIMEOUT seconds is
 * dropped), into metrics_textfile every METRICS_TEXTFILE_PERIOD seconds
 * (written beside it, then renamed over it: node_exporter never reads half
 * a file), and through the control socket (`smtprelay metrics`).  The HTTP
 * server is on the event loop, like delivery; the spool is read and the
 * file written on the commit threads (daemon/durable.h), so a scrape of a
 * long queue or a slow disk never stalls the loop: a scrape is answered
 * once its snapshot is read, and a textfile period is skipped while the
 * last write is still running.  A failure of either is logged and never
 * stops the daemon.
 *
 * Families (names and labels are the contract): smtprelay_build_info,
 * smtprelay_queue_messages{state}, smtprelay_queue_oldest_age_seconds,
 * smtprelay_received_messages_total{source}, smtprelay_delivered_,
 * _deferred_ (with reason) and _bounced_recipients_total{smarthost},
 * smtprelay_connection_failures_total{smarthost,port,verdict},
 * smtprelay_tls_connections_total{smarthost,version},
 * smtprelay_delivery_duration_seconds (histogram), smtprelay_throttled.
 */
#ifndef SMTPRELAY_METRICS_H
#define SMTPRELAY_METRICS_H

#include <stdbool.h>
#include <stdio.h>

#include "daemon/daemon.h"

#define METRICS_TEXTFILE_PERIOD 15
#define METRICS_HTTP_TIMEOUT 10
#define METRICS_HTTP_MAX_HEADERS 8192

/* Start serving metrics_listen and writing metrics_textfile (each only
 * when configured).  NULL with err when metrics_listen cannot be bound. */
struct metrics *metrics_new(struct daemon *d, char *err, size_t errlen);
/* After SIGHUP: a changed metrics_listen is bound anew (on failure the old
 * one is kept, logged); metrics_textfile is read from d->conf each time. */
void metrics_reload(struct metrics *m);
void metrics_free(struct metrics *m);

/* One consistent view of the numbers: the queue as read on a commit
 * worker, with the messages in delivery when the request was made
 * (sched_busy_ids) counted "active"; the relay's state and the counters as
 * they are when ready runs. */
struct metrics_snap;
/* On the loop, once; s is valid during the call (NULL: out of memory). */
typedef void (*metrics_ready_fn)(void *arg, const struct metrics_snap *s);
/* Take a snapshot (one pass over the spool, also for the counts of
 * `smtprelay status`).  Without a commit stage, ready runs before this
 * returns; a caller that may go away meanwhile passes an arg it can
 * disown. */
void metrics_request(struct daemon *d, metrics_ready_fn ready, void *arg);

/* The Prometheus text; 0, or -1 with errno when out could not be written. */
int metrics_write_prom(FILE *out, const struct metrics_snap *s);
/* The same numbers as one JSON object (`smtprelay status --json`). */
void metrics_write_json(FILE *out, const struct metrics_snap *s);
/* name="value" with the text format's escapes (backslash, double quote,
 * line feed). */
void metrics_label(FILE *out, const char *name, const char *value);
/* The "queue:" and "recipients:" lines of `smtprelay status`. */
void metrics_status_counts(FILE *out, const struct metrics_snap *s);
/* Extra lines of `smtprelay status`: received counts, oldest message. */
void metrics_status_head(FILE *out, const struct metrics_snap *s);
/* Since-start lines of one smarthost (indented, after its status line). */
void metrics_status_smarthost(FILE *out, struct daemon *d, const char *name);

#endif
