/* The daemon side of the control socket SPOOL/public/control (mode 0666).
 *
 * A client sends one request line; the daemon answers with data lines, each
 * starting with one space, then one final line "ok ..." or "error ...", and
 * closes (queue/control.h is the client).  Requests:
 *   ping            "ok smtprelayd VERSION"
 *   flush           retry the queue now
 *   queue           mailq text ('*' after the id of a message in delivery)
 *   queue json      the queue as JSON (queue/qjson.h)
 *   status          "key: value" lines: pid, version, started, uptime, config,
 *                   spool, queue and recipient counts, listen, each smarthost
 *   status json     the same numbers as the metrics, one JSON object
 *   metrics         Prometheus text format (daemon/metrics.h)
 *   show ID         envelope, recipients' state, header section
 *   state ID        "status queued|delivering|maildrop|finished", then per
 *                   recipient "rcpt STATE ATTEMPTS ADDRESS" and optionally
 *                   "reason TEXT" (for send-test; the last CTL_RECENT
 *                   finished messages are remembered)
 *   delete ID|all   remove messages ("ID: removed by uid N" is logged); a
 *                   message in delivery is removed when that delivery ends
 * queue, status, metrics and delete read or remove the spool on the commit
 * threads (daemon/durable.h) and answer when that is done; a client that
 * leaves meanwhile is not answered, the work still completes.  ping,
 * flush, show and state answer at once.
 * Authorization by the peer's credentials (SO_PEERCRED): anyone may ping,
 * flush, list and ask for status; delete needs uid 0 or the daemon's own
 * uid; show and state need that or the uid that submitted the message.
 */
#ifndef SMTPRELAY_CTL_H
#define SMTPRELAY_CTL_H

#include "daemon/daemon.h"

#define CTL_LINE_MAX 1024
#define CTL_TIMEOUT 10

/* Create the socket (before dropping privileges); a stale socket is
 * replaced, a live one (another daemon on this spool) is an error.  NULL
 * with err set. */
struct ctl *ctl_new(struct daemon *d, char *err, size_t errlen);
/* Stop accepting and remove the socket (clients in progress are dropped). */
void ctl_free(struct ctl *c);

#endif
