/* The daemon's durable-write stage: queue/commit.h wired to the event loop.
 *
 * Every spool write of the running daemon that needs an fsync, rename or
 * unlink goes through durable_submit(), so the event loop never waits for
 * the disk (smtprelayd(8), "Queue guarantees"); completions run as ordinary loop callbacks.  While
 * writes are in flight, a 10 ms timer measures how late the loop runs
 * ("worst stall"), reported with the commit counters when the daemon stops
 * and by durable_report().  Without a stage (NULL) callers write
 * synchronously, as the front ends do.
 */
#ifndef SMTPRELAY_DURABLE_H
#define SMTPRELAY_DURABLE_H

#include <stdbool.h>
#include <stddef.h>

#include "queue/commit.h"

struct daemon;
struct durable;

struct durable *durable_new(struct daemon *d, char *err, size_t errlen);
/* Waits for every write in flight and runs their completions. */
void durable_free(struct durable *u);
/* commit_submit on the daemon's stage; -1 when it cannot take the job (the
 * caller then writes synchronously or reports the error). */
int durable_submit(struct durable *u, const struct commit_ops *ops, void *arg, bool serial);
/* The daemon is stopping: closing every session and connection at once is
 * not a stall of the service, so the probe stops measuring. */
void durable_stop_probe(struct durable *u);
/* One log line: jobs, batches, directory fsyncs, the loop's worst stall. */
void durable_report(struct durable *u);

#endif
