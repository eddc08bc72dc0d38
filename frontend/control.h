/* Client side of the daemon's control socket (SPOOL/public/control).
 * Protocol: one request line ("flush", later "queue", "delete ID"...), the
 * daemon answers lines and ends with "ok ..." or "error ...". */
#ifndef SMTPRELAY_CONTROL_H
#define SMTPRELAY_CONTROL_H

#include <stddef.h>

#define CONTROL_SOCKET "public/control"

/* Send one request; the final status line's text goes to reply (may be
 * NULL).  0 when the daemon said ok; -1 with err explaining (daemon not
 * running, refused, timeout). */
int control_request(const char *spool_dir, const char *request, char *reply, size_t replylen,
    char *err, size_t errlen);

#endif
