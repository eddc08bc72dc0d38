/* The daemon's spool writes, off the event loop (smtprelayd(8), "Queue guarantees").
 *
 * Each call queues one write on the durable-write stage (daemon/durable.h)
 * and returns at once; cb runs later on the loop with error 0 when the write
 * is durable (or, for a removal, done), else an errno and a sentence naming
 * the file.  Writes that touch one message (its state, its removal, a DSN
 * that must precede its failed state) are "serial": they happen in the
 * order they were asked for.  Without a stage (d->durable NULL, as in unit
 * tests) the write is done synchronously and cb runs before the call
 * returns.  A descriptor passed in (a lock, a handed-over message) is
 * closed once the write is over, so a lock is held until then.
 */
#ifndef SMTPRELAY_QSTORE_H
#define SMTPRELAY_QSTORE_H

#include <stdbool.h>

#include "queue/queue.h"
#include "relay/maillog.h"

struct daemon;

/* id: the message concerned (for pickup and handover, the id it got). */
typedef void (*qstore_cb)(void *arg, int error, const char *err, const char *id);

/* queue_remove of queue/ID; lockfd (or -1) is closed afterwards. */
void qstore_remove(struct daemon *d, const char *id, int lockfd, qstore_cb cb, void *arg);
/* queue_update_state; env must stay untouched until cb. */
void qstore_state(struct daemon *d, const struct q_envelope *env, qstore_cb cb, void *arg);
/* Commit a finished writer (submit_finish), e.g. a DSN; serial keeps it
 * ahead of the serial writes asked for after it. */
void qstore_writer(struct daemon *d, struct qwriter *w, bool serial, qstore_cb cb, void *arg);
/* A message from a local user is queued (error 0): sum is what the log
 * says of it, read back off the loop (sum->id is its id). */
typedef void (*qstore_queued_cb)(void *arg, int error, const char *err,
    const struct maillog_summary *sum);
/* queue_pickup of maildrop/ID. */
void qstore_pickup(struct daemon *d, const char *id, qstore_queued_cb cb, void *arg);
/* queue_accept_fd: the handed-over message on fd (closed afterwards) is
 * read, validated and queued off the loop. */
void qstore_accept_fd(struct daemon *d, int fd, long uid, qstore_queued_cb cb, void *arg);

/* queue_lock and queue_read of queue/ID off the loop (a read waits for the
 * directory while other threads create and rename in it).  cb owns the
 * lock and envelope it gets; on failure lockfd is -1, env NULL, error the
 * errno (EWOULDBLOCK: locked elsewhere; EBADMSG: corrupt, err says why). */
typedef void (*qstore_load_cb)(void *arg, const char *id, int lockfd, struct q_envelope *env,
    int error, const char *err);
void qstore_load(struct daemon *d, const char *id, qstore_load_cb cb, void *arg);
#endif
