/* RFC 3464 delivery status notifications for failed recipients.
 *
 * A DSN is multipart/report; report-type=delivery-status with a text part
 * for people, a message/delivery-status part and the original's header
 * section as text/rfc822-headers (at most DSN_HEADERS_MAX bytes, never the
 * body: no bounce can carry a payload).  It is sent from the null sender,
 * so it never bounces itself; failures of null-sender messages are only
 * logged; at most DSN_LIMIT_PER_HOUR DSNs go to one sender address per hour.
 */
#ifndef SMTPRELAY_DSN_H
#define SMTPRELAY_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "daemon/daemon.h"
#include "lib/buf.h"
#include "queue/queue.h"
#include "daemon/qstore.h"

#define DSN_HEADERS_MAX (64 * 1024)
#define DSN_LIMIT_PER_HOUR 10
#define DSN_LIMIT_WINDOW 3600

struct dsn_info {
	const char *hostname;		/* Reporting-MTA, From: MAILER-DAEMON@ */
	const char *message_id;		/* without <>, e.g. "ID@HOSTNAME" */
	time_t now;
};

/* The complete DSN message (header section and body, CRLF line ends) for
 * the recipients of env with failed[i] set, the original headers read from
 * content_fd (positioned at the content).  0, or -1 with errno. */
int dsn_build(struct buf *out, const struct dsn_info *info, const struct q_envelope *env,
    const bool *failed, int content_fd);

/* Whether the failures deserve a DSN: not for the null sender, not when
 * every failed recipient asked NOTIFY without FAILURE. */
bool dsn_wanted(const struct q_envelope *env, const bool *failed);

/* Per-sender counter (in memory): true when one more DSN to sender is allowed
 * now (and counts it). */
struct dsn_limit *dsn_limit_new(void);
void dsn_limit_free(struct dsn_limit *l);
bool dsn_limit_take(struct dsn_limit *l, const char *sender, time_t now);

/* Decide (here) whether a DSN is due for env's newly failed recipients;
 * if so, build and queue it (queue/, through submit) off the event loop: a
 * commit worker reads the original's headers and writes the DSN, as a
 * serial job (daemon/qstore.h), so it is durable before the failed state
 * asked for after it.  1: on its way: cb(arg, error, err, dsnid) says
 * whether it was queued (the caller then schedules it), possibly before
 * dsn_send returns; env and failed must stay untouched until then.  0: none
 * is due (null sender, NOTIFY, rate limit; logged); -1: out of memory
 * (logged).  On -1 or a cb error, keep the failures retryable. */
int dsn_send(struct daemon *d, const struct q_envelope *env, const bool *failed,
    qstore_cb cb, void *arg);

/* The enhanced status code in a reply or reason text ("5.1.1"), into out;
 * false if there is none. */
bool dsn_status_code(const char *reason, char *out, size_t len);

#endif
