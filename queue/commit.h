/* The durable-write stage: spool writes off the event loop, with group commit.
 *
 * Promise: a job's done() runs on the thread that calls commit_reap() (the
 * event loop) after the job's stage() and settle() ran on a worker thread,
 * and, when stage() asked for it, after one fsync of its directory that
 * started after stage() returned.  Jobs staged while a directory fsync is
 * running share the next one (group commit), so N concurrent commits cost
 * their N file fsyncs, done in parallel by up to COMMIT_WORKERS threads, plus
 * one or two directory fsyncs, not 2N flushes in a row.  A lone job is
 * started at once: batching only ever takes what is already waiting, and
 * with COMMIT_SYNCERS threads a new batch does not wait for the fsync of
 * the one before.
 *
 * A job whose stage() leaves nothing to sync (no directory, no flush) is
 * finished by its worker at once: reads done off the loop do not wait for
 * a round of directory fsyncs.
 *
 * Ordering: "serial" jobs (per-recipient state, removals) run one at a time
 * in submission order, on a directory-fsync thread (one at a time: a round
 * with serial jobs ends before the next such round starts), so two updates of one
 * message can never overtake each other; parallel jobs (new messages) have
 * no order among themselves.  done() callbacks run in completion order.
 *
 * Errors belong to one job: a failing stage() or settle() fails that job
 * alone; a failing directory fsync fails exactly the jobs that relied on it
 * (their settle() sees the errno and undoes what is not durable).
 *
 * Not promised: cancellation (a job always runs; a caller that goes away
 * makes its done() a no-op), or anything about jobs after commit_free
 * (which waits for all of them and runs their done()).
 *
 * The stage owns no event loop: the owner watches commit_fd() for reading
 * and calls commit_reap() when it is readable (tests can poll it).
 */
#ifndef SMTPRELAY_COMMIT_H
#define SMTPRELAY_COMMIT_H

#include <stdbool.h>
#include <stddef.h>

#define COMMIT_WORKERS 16		/* parallel file fsyncs: flushes overlap on real disks */
#ifndef COMMIT_SYNCERS
#define COMMIT_SYNCERS 2		/* directory fsyncs that may be in flight at once */
#endif
#define COMMIT_ERR_SIZE 512

struct commit;

/* What a job does.  stage and settle run on a worker thread and must touch
 * only what the job owns (and thread-safe calls); done runs on the loop. */
struct commit_ops {
	/* Do the work up to the point where an fsync of *dirfd makes it
	 * durable (leave *dirfd at -1 if nothing needs it).  0 or an errno,
	 * with err filled. */
	int (*stage)(void *arg, int *dirfd, char *err, size_t errlen);
	/* After the directory fsync, with error = stage's result or the
	 * fsync's errno: finish or undo.  Returns the job's final errno (0 =
	 * durable).  May be NULL (the error stands). */
	int (*settle)(void *arg, int error, char *err, size_t errlen);
	/* On the loop: error 0 = durable; err names the cause otherwise.
	 * Frees arg. */
	void (*done)(void *arg, int error, const char *err);
	/* Optional, on a worker thread after stage() succeeded, while the
	 * directory fsync runs: the job's own flush (fsync of the file that
	 * stage() already renamed into place), so a commit costs one flush
	 * time, not two in a row.  0 or an errno, with err filled; settle()
	 * sees it like a failed directory fsync.  A serial job's flush runs
	 * right after its stage(), before the directory fsync. */
	int (*flush)(void *arg, char *err, size_t errlen);
};

struct commit_stats {
	unsigned long jobs;		/* completed */
	unsigned long batches;		/* rounds of the fsync thread */
	unsigned long dir_fsyncs;
	unsigned long max_batch;	/* most jobs settled by one round */
};

/* Start the worker threads.  NULL with err set (errno kept). */
struct commit *commit_new(char *err, size_t errlen);
/* Wait for every submitted job, run the remaining done() callbacks, stop. */
void commit_free(struct commit *c);
/* Queue a job; serial jobs keep their order (see above).  -1 (ENOMEM or
 * stopping): nothing was queued and done() will not be called. */
int commit_submit(struct commit *c, const struct commit_ops *ops, void *arg, bool serial);
/* Readable when finished jobs wait for commit_reap(). */
int commit_fd(const struct commit *c);
/* Run done() of every finished job; returns how many. */
int commit_reap(struct commit *c);
/* Jobs submitted and not yet reaped. */
unsigned commit_pending(const struct commit *c);
void commit_get_stats(struct commit *c, struct commit_stats *st);

#endif
