/* Handing a message to the running daemon when the maildrop is not writable
 * (sendmail started under NoNewPrivileges, so setgid was ignored): the
 * message is written to a memfd in the queue format and passed over
 * SPOOL/public/submit with SCM_RIGHTS; the daemon validates it, queues it
 * durably and answers "ok ID". */
#ifndef SMTPRELAY_HANDOFF_H
#define SMTPRELAY_HANDOFF_H

#include <stdbool.h>
#include <stddef.h>

#define HANDOFF_SOCKET "public/submit"

/* true when this process cannot create files in SPOOL/maildrop. */
bool handoff_needed(const char *spool_dir);
/* An anonymous file for the message; -1 on error. */
int handoff_memfd(void);
/* Pass fd to the daemon; 0 with the queue id in id, or -1 with err. */
int handoff_send(const char *spool_dir, int fd, char *id, size_t idlen, char *err, size_t errlen);

#endif
