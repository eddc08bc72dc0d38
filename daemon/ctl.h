/* The daemon side of the control socket SPOOL/public/control (mode 0666).
 *
 * A client sends one request line; the daemon answers with lines, the last
 * one "ok ..." or "error ...", and closes.  Requests: "flush" (retry the
 * queue now), "ping".  The peer's credentials (SO_PEERCRED) are recorded
 * for requests that will need authorization.
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
