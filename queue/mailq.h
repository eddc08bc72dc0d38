/* Queue listings: Postfix's mailq layout (monitoring plugins parse it),
 * queue counts for `smtprelay status`, one message for `smtprelay show`. */
#ifndef SMTPRELAY_MAILQ_H
#define SMTPRELAY_MAILQ_H

#include <stdbool.h>
#include <stdio.h>

#include "queue/queue.h"

/* true when the message is being delivered right now (the daemon knows). */
typedef bool (*mailq_active_fn)(void *ctx, const char *id);

/* Print the queue (queue/ and maildrop/) like Postfix's mailq.  Returns 0, or
 * -1 when the spool cannot be read (message in err). */
int mailq_print(struct queue *q, FILE *out, char *err, size_t errlen);
/* The same with Postfix's '*' after the id of a message in delivery. */
int mailq_print_active(struct queue *q, FILE *out, mailq_active_fn active, void *ctx,
    char *err, size_t errlen);

/* Call fn for each readable message of an area (a missing queue/ is empty).
 * 0, or -1 with err (errno set) when the directory cannot be read. */
typedef void (*mailq_each_fn)(void *ctx, enum q_area area, const struct q_envelope *env);
int mailq_foreach(struct queue *q, enum q_area area, mailq_each_fn fn, void *ctx,
    char *err, size_t errlen);

struct mailq_counts {
	unsigned long messages;		/* in queue/ and maildrop/ */
	unsigned long maildrop;		/* of which not yet picked up */
	unsigned long active;		/* of which in delivery */
	unsigned long long bytes;
	unsigned long rcpts[Q_FAILED + 1];	/* by state */
	unsigned long held;		/* on hold (README "Running it") */
};
int mailq_count(struct queue *q, mailq_active_fn active, void *ctx, struct mailq_counts *c,
    char *err, size_t errlen);
/* "queue: 3 messages (1 in delivery, 0 in maildrop), 12 KiB" and
 * "recipients: 1 pending, 2 deferred, 0 delivered, 0 failed". */
void mailq_counts_print(FILE *out, const struct mailq_counts *c);

/* `smtprelay show`: envelope, each recipient's state, then the header
 * section read from the content file (q NULL: the content is gone).
 * Control characters in the headers are shown as '?'. */
void mailq_show(FILE *out, const struct q_envelope *env, const char *status, struct queue *q,
    enum q_area area);

#endif
