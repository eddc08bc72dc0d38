/* SPOOL/public/submit: messages from a front end that cannot write the
 * maildrop (sendmail under NoNewPrivileges, where setgid is ignored).  The
 * client passes a memfd holding a queue-format message with SCM_RIGHTS; it
 * is validated like a maildrop file, queued durably with the peer's uid from
 * SO_PEERCRED, and only then answered "ok ID". */
#ifndef SMTPRELAY_HANDOVER_H
#define SMTPRELAY_HANDOVER_H

#include <stddef.h>

#include "daemon/daemon.h"

struct handover;

/* Bind the socket (before dropping privileges); NULL with err set. */
struct handover *handover_new(struct daemon *d, char *err, size_t errlen);
void handover_free(struct handover *h);

#endif
