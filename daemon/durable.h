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
/* Any other disk work off the loop (spool scans for the metrics, admin
 * removals, quarantine, the OAuth2 refresh token file): work(arg) runs on
 * a commit worker and must touch only what arg owns; done(arg, error, err)
 * runs later on the loop with work's result (0 or an errno, err naming the
 * file) and frees arg.  Serial jobs keep their order among the serial
 * writes (queue/commit.h).  Without a stage (u NULL, unit tests) both run
 * before the call returns. */
typedef int (*durable_work_fn)(void *arg, char *err, size_t errlen);
typedef void (*durable_done_fn)(void *arg, int error, const char *err);
void durable_run(struct durable *u, durable_work_fn work, durable_done_fn done, void *arg,
    bool serial);
/* relay/oauth2.h's saver: the refresh token file is written by a serial
 * durable_run job (ctx is the struct daemon). */
void durable_save_token(void *ctx, const char *path, const char *token,
    void (*done)(void *arg, int error, const char *err), void *arg);
/* The daemon is stopping: closing every session and connection at once is
 * not a stall of the service, so the probe stops measuring. */
void durable_stop_probe(struct durable *u);
/* One log line: jobs, batches, directory fsyncs, the loop's worst stall. */
void durable_report(struct durable *u);

#endif
