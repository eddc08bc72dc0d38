#include "config.h"
#include "daemon/durable.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "daemon/daemon.h"
#include "relay/oauth2.h"
#include "lib/log.h"

#define DURABLE_TICK_US 10000		/* the stall probe's period */
#define DURABLE_LINGER_US 1000000	/* keep probing this long after the last write */

struct durable {
	struct daemon *d;
	struct commit *c;
	struct event *ev;		/* commit_fd readable: completions to run */
	struct event *probe;		/* the stall probe, armed while writes are in flight */
	bool probing;
	int64_t expected_us;		/* when the probe should fire next */
	int64_t last_busy_us;
	int64_t worst_stall_us;
	bool stopping;			/* no more probing: stopping is not serving */
	int64_t worst_own_us;		/* the worst stall less the time spent waiting for a CPU */
	int schedstat;			/* /proc/thread-self/schedstat of the loop, or -1 */
	int64_t runq_ns;		/* its run-queue wait at the last tick */
};

static int64_t durable_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void durable_reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct durable *u = arg;

	(void)fd;
	(void)what;
	commit_reap(u->c);
}

/* Nanoseconds the loop thread has waited on a run queue (ready, no CPU):
 * on a busy host that, not our code, may be why a tick is late. */
static int64_t durable_runq_ns(struct durable *u)
{
	char buf[128];
	long long run, wait;
	ssize_t n;

	if (u->schedstat < 0 || (n = pread(u->schedstat, buf, sizeof(buf) - 1, 0)) <= 0)
		return 0;
	buf[n] = '\0';
	return sscanf(buf, "%lld %lld", &run, &wait) == 2 ? (int64_t)wait : 0;
}

/* A late tick means some callback held the loop that long, or the thread
 * waited that long for a CPU. */
static void durable_probe_cb(evutil_socket_t fd, short what, void *arg)
{
	struct durable *u = arg;
	int64_t now = durable_now_us(), late = now - u->expected_us;
	int64_t runq = durable_runq_ns(u), waited = (runq - u->runq_ns) / 1000;

	(void)fd;
	(void)what;
	u->runq_ns = runq;
	if (late > u->worst_stall_us)
		u->worst_stall_us = late;
	if (late - waited > u->worst_own_us)
		u->worst_own_us = late - waited;
	if (commit_pending(u->c))
		u->last_busy_us = now;
	if (now - u->last_busy_us > DURABLE_LINGER_US) {
		event_del(u->probe);
		u->probing = false;
		return;
	}
	u->expected_us = now + DURABLE_TICK_US;
}

static void durable_probe_start(struct durable *u)
{
	struct timeval tv = { 0, DURABLE_TICK_US };

	u->last_busy_us = durable_now_us();
	if (u->probing || !u->probe || u->stopping)
		return;
	u->expected_us = u->last_busy_us + DURABLE_TICK_US;
	u->runq_ns = durable_runq_ns(u);
	u->probing = event_add(u->probe, &tv) == 0;
}

struct durable *durable_new(struct daemon *d, char *err, size_t errlen)
{
	struct durable *u = calloc(1, sizeof(*u));

	if (!u) {
		snprintf(err, errlen, "durable-write stage: out of memory");
		return NULL;
	}
	u->d = d;
	u->schedstat = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
	if (!(u->c = commit_new(err, errlen))) {
		if (u->schedstat >= 0)
			close(u->schedstat);
		free(u);
		return NULL;
	}
	u->ev = event_new(d->base, commit_fd(u->c), EV_READ | EV_PERSIST, durable_reap_cb, u);
	u->probe = event_new(d->base, -1, EV_PERSIST, durable_probe_cb, u);
	if (!u->ev || !u->probe || event_add(u->ev, NULL) < 0) {
		snprintf(err, errlen, "durable-write stage: cannot watch its completions");
		durable_free(u);
		return NULL;
	}
	return u;
}

void durable_stop_probe(struct durable *u)
{
	if (!u)
		return;
	u->stopping = true;
	if (u->probing)
		event_del(u->probe);
	u->probing = false;
}

void durable_report(struct durable *u)
{
	struct commit_stats st;

	commit_get_stats(u->c, &st);
	log_info("durable writes: %lu in %lu batches (largest %lu), %lu directory fsyncs; "
	    "event loop worst stall %.1f ms (%.1f ms not spent waiting for a CPU)", st.jobs,
	    st.batches, st.max_batch, st.dir_fsyncs, (double)u->worst_stall_us / 1000.0,
	    (double)u->worst_own_us / 1000.0);
}

void durable_free(struct durable *u)
{
	if (!u)
		return;
	if (u->c) {
		durable_report(u);	/* before commit_free: the stats live in it */
		commit_free(u->c);
	}
	if (u->ev)
		event_free(u->ev);
	if (u->probe)
		event_free(u->probe);
	if (u->schedstat >= 0)
		close(u->schedstat);
	free(u);
}

int durable_submit(struct durable *u, const struct commit_ops *ops, void *arg, bool serial)
{
	if (!u || commit_submit(u->c, ops, arg, serial) < 0)
		return -1;
	durable_probe_start(u);
	return 0;
}

/* ---- durable_run: a job with nothing for the directory-fsync thread ---- */

struct durable_job {
	durable_work_fn work;
	durable_done_fn done;
	void *arg;
};

/* dirfd stays -1 and there is no flush op: the worker that ran this
 * finishes the job at once (queue/commit.h). */
static int durable_job_stage(void *arg, int *dirfd, char *err, size_t errlen)
{
	struct durable_job *j = arg;

	(void)dirfd;
	return j->work(j->arg, err, errlen);
}

static void durable_job_done(void *arg, int error, const char *err)
{
	struct durable_job *j = arg;

	j->done(j->arg, error, err);
	free(j);
}

static const struct commit_ops durable_job_ops = {
	.stage = durable_job_stage, .done = durable_job_done,
};

void durable_run(struct durable *u, durable_work_fn work, durable_done_fn done, void *arg,
    bool serial)
{
	struct durable_job *j = malloc(sizeof(*j));
	char err[COMMIT_ERR_SIZE] = "";

	if (!j) {
		done(arg, ENOMEM, "out of memory queueing a job for the commit threads");
		return;
	}
	*j = (struct durable_job){ .work = work, .done = done, .arg = arg };
	if (durable_submit(u, &durable_job_ops, j, serial) == 0)
		return;
	/* No stage (unit tests) or it is stopping: here and now. */
	durable_job_done(j, durable_job_stage(j, NULL, err, sizeof(err)), err);
}

/* ---- the OAuth2 refresh token file ---- */

struct durable_token {
	char *path, *token;
	void (*done)(void *arg, int error, const char *err);
	void *arg;
};

static void durable_token_free(struct durable_token *t)
{
	free(t->path);
	if (t->token)
		oauth2_wipe(t->token, strlen(t->token));
	free(t->token);
	free(t);
}

static int durable_token_work(void *arg, char *err, size_t errlen)
{
	struct durable_token *t = arg;

	if (oauth2_save_refresh_token(t->path, t->token, err, errlen) < 0)
		return errno ? errno : EIO;
	return 0;
}

static void durable_token_done(void *arg, int error, const char *err)
{
	struct durable_token *t = arg;

	t->done(t->arg, error, err);
	durable_token_free(t);
}

void durable_save_token(void *ctx, const char *path, const char *token,
    void (*done)(void *arg, int error, const char *err), void *arg)
{
	struct daemon *d = ctx;
	struct durable_token *t = calloc(1, sizeof(*t));

	if (!t || !(t->path = strdup(path)) || !(t->token = strdup(token))) {
		if (t)
			durable_token_free(t);
		done(arg, ENOMEM, "out of memory");
		return;
	}
	t->done = done;
	t->arg = arg;
	/* Serial: two rotations in a row reach the file in their order. */
	durable_run(d->durable, durable_token_work, durable_token_done, t, true);
}
