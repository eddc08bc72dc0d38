/* Queue listings: Postfix's mailq layout (monitoring plugins parse it). */
#ifndef SMTPRELAY_MAILQ_H
#define SMTPRELAY_MAILQ_H

#include <stdio.h>

#include "queue/queue.h"

/* Print the queue (queue/ and maildrop/) like Postfix's mailq.  Returns 0, or
 * -1 when the spool cannot be read (message in err). */
int mailq_print(struct queue *q, FILE *out, char *err, size_t errlen);

#endif
