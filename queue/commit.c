#include "config.h"
#include "queue/commit.h"
#include "lib/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COMMIT_STACK ((size_t)256 << 10)	/* envelope parsing uses a few 4 KiB lines */
struct commit_job {
	struct commit_job *next;
	const struct commit_ops *ops;
	void *arg;
	int dirfd;
	int error;
	bool flushing;			/* its worker is in flush(): settle waits */
	int flush_error;
	char err[COMMIT_ERR_SIZE];
	char ferr[COMMIT_ERR_SIZE];	/* flush()'s, written while a syncer may use err */
};

/* A FIFO of jobs; every list below is guarded by commit.lock. */
struct commit_list {
	struct commit_job *head, *tail;
};

struct commit {
	pthread_mutex_t lock;
	pthread_cond_t work;		/* todo has jobs, or stopping */
	pthread_cond_t sync;		/* staged or serial has jobs, or stopping */
	pthread_cond_t flushed;		/* a job's flush() returned */
	struct commit_list todo;	/* parallel jobs to stage */
	struct commit_list serial;	/* ordered jobs, staged by the sync thread */
	struct commit_list staged;	/* renamed, waiting for their directory fsync */
	struct commit_list done;	/* settled, waiting for commit_reap */
	unsigned staging;		/* parallel jobs inside stage() */
	unsigned pending;		/* submitted, not reaped */
	bool stopping;
	int pipe[2];			/* a byte per finished batch wakes the loop */
	pthread_t workers[COMMIT_WORKERS];
	pthread_t syncers[COMMIT_SYNCERS];
	unsigned nsyncers;		/* started */
	bool serial_busy;		/* a syncer is running serial jobs: one at a time */
	unsigned nthreads;		/* workers started */
	struct commit_stats stats;
};

static void commit_push(struct commit_list *l, struct commit_job *j)
{
	j->next = NULL;
	if (l->tail)
		l->tail->next = j;
	else
		l->head = j;
	l->tail = j;
}

static struct commit_job *commit_pop(struct commit_list *l)
{
	struct commit_job *j = l->head;

	if (j && !(l->head = j->next))
		l->tail = NULL;
	return j;
}

static struct commit_list commit_take(struct commit_list *l)
{
	struct commit_list all = *l;

	l->head = l->tail = NULL;
	return all;
}

static void commit_append(struct commit_list *to, struct commit_list *from)
{
	if (!from->head)
		return;
	if (to->tail)
		to->tail->next = from->head;
	else
		to->head = from->head;
	to->tail = from->tail;
}

static void commit_stage_one(struct commit_job *j)
{
	j->dirfd = -1;
	j->err[0] = '\0';
	j->error = j->ops->stage(j->arg, &j->dirfd, j->err, sizeof(j->err));
	if (j->error)
		j->dirfd = -1;
}

/* Nothing to wait for (a read, or a job that failed before its rename):
 * settled and handed to the loop by its worker. */
static void commit_finish_alone(struct commit *c, struct commit_job *j)
{
	char byte = 1;

	bool wake;

	if (j->ops->settle)
		j->error = j->ops->settle(j->arg, j->error, j->err, sizeof(j->err));
	pthread_mutex_lock(&c->lock);
	wake = !c->done.head;
	commit_push(&c->done, j);
	c->stats.jobs++;
	pthread_mutex_unlock(&c->lock);
	if (wake)
		(void)!write(c->pipe[1], &byte, 1);
}

/* The file's own flush, overlapping the directory fsync of its batch.  The
 * syncer that took j waits for flushing to clear before it touches j. */
static void commit_flush(struct commit *c, struct commit_job *j)
{
	int e = j->ops->flush(j->arg, j->ferr, sizeof(j->ferr));

	pthread_mutex_lock(&c->lock);
	j->flush_error = e;
	j->flushing = false;
	pthread_cond_broadcast(&c->flushed);
	pthread_mutex_unlock(&c->lock);
}

static void *commit_worker(void *arg)
{
	struct commit *c = arg;
	struct commit_job *j;
	bool flush;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		while (!c->todo.head && !c->stopping)
			pthread_cond_wait(&c->work, &c->lock);
		if (!(j = commit_pop(&c->todo)))
			break;
		c->staging++;
		pthread_mutex_unlock(&c->lock);
		commit_stage_one(j);
		flush = !j->error && j->ops->flush;
		if (j->dirfd < 0 && !flush) {
			commit_finish_alone(c, j);
			pthread_mutex_lock(&c->lock);
			c->staging--;
			pthread_cond_signal(&c->sync);	/* a stopping syncer may wait for it */
			continue;
		}
		pthread_mutex_lock(&c->lock);
		c->staging--;
		j->flushing = flush;
		commit_push(&c->staged, j);
		pthread_cond_signal(&c->sync);
		if (flush) {
			pthread_mutex_unlock(&c->lock);
			commit_flush(c, j);
			pthread_mutex_lock(&c->lock);
		}
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* One fsync per distinct directory of the batch; jobs whose directory could
 * not be synced get that errno. */
static unsigned long commit_sync_dirs(struct commit_list *batch)
{
	unsigned long n = 0;

	for (struct commit_job *j = batch->head; j; j = j->next) {
		int fd = j->dirfd, e = 0;

		if (fd < 0)
			continue;
		if (fs_fsync_dirfd(fd) < 0)
			e = errno;
		n++;
		for (struct commit_job *k = j; k; k = k->next) {
			if (k->dirfd != fd)
				continue;
			k->dirfd = -1;
			if (e && !k->error) {
				k->error = e;
				snprintf(k->err, sizeof(k->err), "fsync of the queue directory: %s",
				    strerror(e));
			}
		}
	}
	return n;
}

/* Wait for the batch's file flushes; a failed one fails its job. */
static void commit_wait_flushes(struct commit *c, struct commit_list *batch)
{
	pthread_mutex_lock(&c->lock);
	for (struct commit_job *j = batch->head; j; j = j->next)
		while (j->flushing)
			pthread_cond_wait(&c->flushed, &c->lock);
	pthread_mutex_unlock(&c->lock);
	for (struct commit_job *j = batch->head; j; j = j->next)
		if (j->flush_error && !j->error) {
			j->error = j->flush_error;
			memcpy(j->err, j->ferr, sizeof(j->err));
		}
}

static void commit_settle(struct commit_list *batch)
{
	for (struct commit_job *j = batch->head; j; j = j->next)
		if (j->ops->settle)
			j->error = j->ops->settle(j->arg, j->error, j->err, sizeof(j->err));
}

/* One round: serial jobs in order, then the directory fsyncs for all. */
static void commit_round(struct commit *c, struct commit_list *serial, struct commit_list *batch)
{
	unsigned long n = 0, fsyncs;
	bool had_serial = serial->head != NULL, wake;
	char byte = 1;

	for (struct commit_job *j = serial->head; j; j = j->next) {
		commit_stage_one(j);
		if (!j->error && j->ops->flush)
			j->error = j->ops->flush(j->arg, j->err, sizeof(j->err));
	}
	commit_append(batch, serial);
	fsyncs = commit_sync_dirs(batch);
	commit_wait_flushes(c, batch);
	commit_settle(batch);
	for (struct commit_job *j = batch->head; j; j = j->next)
		n++;
	pthread_mutex_lock(&c->lock);
	wake = !c->done.head;
	commit_append(&c->done, batch);
	c->stats.dir_fsyncs += fsyncs;
	if (had_serial) {
		c->serial_busy = false;
		pthread_cond_broadcast(&c->sync);
	}
	c->stats.batches++;
	c->stats.jobs += n;
	if (n > c->stats.max_batch)
		c->stats.max_batch = n;
	pthread_mutex_unlock(&c->lock);
	/* One wake-up per non-empty done list (commit_reap takes it all); a
	 * full pipe already has one in it. */
	if (wake)
		(void)!write(c->pipe[1], &byte, 1);
}

/* Nothing this syncer may take: no staged job, and no serial job that is
 * not already another syncer's turn. */
static bool commit_idle(const struct commit *c)
{
	return !c->staged.head && (!c->serial.head || c->serial_busy);
}

/* Several syncers: while one waits for a directory fsync, the next batch
 * need not wait for it (a lone message costs two flushes, not three). */
static void *commit_syncer(void *arg)
{
	struct commit *c = arg;
	struct commit_list batch, serial = { NULL, NULL };

	pthread_mutex_lock(&c->lock);
	for (;;) {
		while (commit_idle(c) && !(c->stopping && !c->todo.head && !c->staging))
			pthread_cond_wait(&c->sync, &c->lock);
		if (commit_idle(c))
			break;
		batch = commit_take(&c->staged);
		if (!c->serial_busy && c->serial.head) {
			serial = commit_take(&c->serial);
			c->serial_busy = true;
		}
		pthread_mutex_unlock(&c->lock);
		commit_round(c, &serial, &batch);
		serial.head = serial.tail = NULL;
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* Workers must not take the daemon's signals (SIGTERM, SIGHUP...). */
static int commit_spawn(struct commit *c, pthread_t *t, void *(*fn)(void *))
{
	pthread_attr_t attr;
	sigset_t all, old;
	int e;

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, COMMIT_STACK);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	e = pthread_create(t, &attr, fn, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return e;
}

static int commit_start(struct commit *c)
{
	int e;

	for (; c->nsyncers < COMMIT_SYNCERS; c->nsyncers++)
		if ((e = commit_spawn(c, &c->syncers[c->nsyncers], commit_syncer)))
			break;
	if (!c->nsyncers)
		return e;
	for (; c->nthreads < COMMIT_WORKERS; c->nthreads++)
		if ((e = commit_spawn(c, &c->workers[c->nthreads], commit_worker)))
			return c->nthreads ? 0 : e;	/* fewer threads only means less overlap */
	return 0;
}

struct commit *commit_new(char *err, size_t errlen)
{
	struct commit *c = calloc(1, sizeof(*c));
	int e;

	if (!c) {
		snprintf(err, errlen, "commit stage: %s", strerror(ENOMEM));
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->work, NULL);
	pthread_cond_init(&c->sync, NULL);
	pthread_cond_init(&c->flushed, NULL);
	if (pipe2(c->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
		e = errno;
		snprintf(err, errlen, "commit stage: pipe: %s", strerror(e));
		free(c);
		errno = e;
		return NULL;
	}
	if ((e = commit_start(c))) {
		snprintf(err, errlen, "commit stage: cannot start threads: %s "
		    "(raise the process or memory limits)", strerror(e));
		commit_free(c);
		errno = e;
		return NULL;
	}
	return c;
}

void commit_free(struct commit *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	c->stopping = true;
	pthread_cond_broadcast(&c->work);
	pthread_cond_broadcast(&c->sync);
	pthread_mutex_unlock(&c->lock);
	for (unsigned i = 0; i < c->nthreads; i++)
		pthread_join(c->workers[i], NULL);
	/* The workers are gone: wake the syncers for their last staged jobs. */
	pthread_mutex_lock(&c->lock);
	pthread_cond_broadcast(&c->sync);
	pthread_mutex_unlock(&c->lock);
	for (unsigned i = 0; i < c->nsyncers; i++)
		pthread_join(c->syncers[i], NULL);
	commit_reap(c);
	close(c->pipe[0]);
	close(c->pipe[1]);
	pthread_cond_destroy(&c->sync);
	pthread_cond_destroy(&c->flushed);
	pthread_cond_destroy(&c->work);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

int commit_submit(struct commit *c, const struct commit_ops *ops, void *arg, bool serial)
{
	struct commit_job *j;

	if (c->stopping) {
		errno = ESHUTDOWN;
		return -1;
	}
	if (!(j = calloc(1, sizeof(*j))))
		return -1;
	j->ops = ops;
	j->arg = arg;
	pthread_mutex_lock(&c->lock);
	c->pending++;
	commit_push(serial ? &c->serial : &c->todo, j);
	pthread_cond_signal(serial ? &c->sync : &c->work);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

int commit_fd(const struct commit *c)
{
	return c->pipe[0];
}

int commit_reap(struct commit *c)
{
	struct commit_list done;
	struct commit_job *j;
	char drain[64];
	int n = 0;

	while (read(c->pipe[0], drain, sizeof(drain)) > 0)
		;
	pthread_mutex_lock(&c->lock);
	done = commit_take(&c->done);
	pthread_mutex_unlock(&c->lock);
	while ((j = commit_pop(&done))) {
		pthread_mutex_lock(&c->lock);
		c->pending--;
		pthread_mutex_unlock(&c->lock);
		j->ops->done(j->arg, j->error, j->err);
		free(j);
		n++;
	}
	return n;
}

unsigned commit_pending(const struct commit *c)
{
	return c->pending;
}

void commit_get_stats(struct commit *c, struct commit_stats *st)
{
	pthread_mutex_lock(&c->lock);
	*st = c->stats;
	pthread_mutex_unlock(&c->lock);
}
