#include "config.h"
#include "daemon/qstore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "daemon/durable.h"
#include "daemon/rawpickup.h"
#include "lib/fsutil.h"

enum qstore_kind { QS_REMOVE, QS_STATE, QS_WRITER, QS_PICKUP, QS_ACCEPT, QS_LOAD };

struct qstore_job {
	enum qstore_kind kind;
	struct daemon *d;		/* its configuration, for raw submissions */
	struct queue *q;
	char id[QID_SIZE];
	int fd;				/* lock or handed-over message; -1 */
	long uid;
	const struct q_envelope *env;
	struct qwriter *w;
	qstore_cb cb;
	qstore_load_cb load_cb;
	struct q_envelope *loaded;
	qstore_queued_cb queued_cb;
	struct maillog_summary sum;
	void *arg;
};

static int qstore_errno(void)
{
	return errno ? errno : EIO;
}

/* Lock, then read: the envelope read is the one delivery will use. */
static int qstore_load_now(struct qstore_job *j, char *err, size_t errlen)
{
	if ((j->fd = queue_lock(j->q, j->id)) < 0) {
		int e = qstore_errno();

		snprintf(err, errlen, "%s: cannot lock: %s", j->id, strerror(e));
		return e;
	}
	if (queue_read(j->q, Q_QUEUE, j->id, &j->loaded, err, errlen) < 0) {
		int e = qstore_errno();

		close(j->fd);
		j->fd = -1;
		return e;
	}
	return 0;
}

/* Worker thread: the whole write, or for a writer all but the directory fsync. */
static int qstore_stage(void *arg, int *dirfd, char *err, size_t errlen)
{
	struct qstore_job *j = arg;

	switch (j->kind) {
	case QS_REMOVE:
		if (queue_remove(j->q, Q_QUEUE, j->id) < 0 && errno != ENOENT) {
			snprintf(err, errlen, "%s/queue/%s: remove: %s", queue_path(j->q), j->id,
			    strerror(errno));
			return qstore_errno();
		}
		/* The lock is the message file: its last close frees the
		 * blocks, which on a file system mounted with discard waits
		 * for the device (milliseconds); here, not on the loop. */
		if (j->fd >= 0) {
			close(j->fd);
			j->fd = -1;
		}
		return 0;
	case QS_STATE:
		return queue_update_state(j->q, j->env, err, errlen) < 0 ? qstore_errno() : 0;
	case QS_WRITER:
		if (qwriter_stage_early(j->w, err, errlen) < 0)
			return qstore_errno();
		*dirfd = qwriter_dirfd(j->w);
		return 0;
	case QS_LOAD:
		return qstore_load_now(j, err, errlen);
	case QS_PICKUP:
		if (queue_pickup(j->q, j->id, err, errlen) < 0)
			return qstore_errno();
		maillog_summary_read(j->q, j->id, &j->sum);
		return 0;
	case QS_ACCEPT:
		/* From a front end that could not read the config: submitted here. */
		if (rawpickup_detect(j->fd) ?
		    rawpickup_queue(j->d, j->fd, j->uid, j->id, err, errlen) < 0 :
		    queue_accept_fd(j->q, j->fd, j->uid, j->id, err, errlen) < 0)
			return qstore_errno();
		maillog_summary_read(j->q, j->id, &j->sum);
		return 0;
	}
	return EINVAL;
}

static int qstore_settle(void *arg, int error, char *err, size_t errlen)
{
	struct qstore_job *j = arg;
	int r = error;

	if (j->kind == QS_WRITER) {
		r = qwriter_settle(j->w, error, err, errlen) < 0 ? qstore_errno() : 0;
		j->w = NULL;
	}
	return r;
}

static int qstore_flush(void *arg, char *err, size_t errlen)
{
	struct qstore_job *j = arg;

	if (j->kind != QS_WRITER)
		return 0;
	return qwriter_sync(j->w, err, errlen) < 0 ? qstore_errno() : 0;
}

static void qstore_done(void *arg, int error, const char *err)
{
	struct qstore_job *j = arg;

	if (j->kind == QS_LOAD) {
		j->load_cb(j->arg, j->id, j->fd, j->loaded, error, err);
		free(j);
		return;
	}
	if (j->fd >= 0)
		close(j->fd);
	if (j->queued_cb)
		j->queued_cb(j->arg, error, err, &j->sum);
	else if (j->cb)
		j->cb(j->arg, error, err, j->id);
	free(j);
}

static const struct commit_ops qstore_ops = {
	.stage = qstore_stage, .settle = qstore_settle, .done = qstore_done,
};

/* A writer's file fsync overlaps its directory's (queue/commit.h). */
static const struct commit_ops qstore_writer_ops = {
	.stage = qstore_stage, .settle = qstore_settle, .done = qstore_done,
	.flush = qstore_flush,
};

/* Without the stage: the same steps, here and now. */
static void qstore_now(struct qstore_job *j)
{
	char err[COMMIT_ERR_SIZE] = "";
	int dirfd = -1, e;

	e = qstore_stage(j, &dirfd, err, sizeof(err));
	if (!e)
		e = qstore_flush(j, err, sizeof(err));
	if (!e && dirfd >= 0 && fs_fsync_dirfd(dirfd) < 0)
		e = qstore_errno();
	e = qstore_settle(j, e, err, sizeof(err));
	qstore_done(j, e, err);
}

static struct qstore_job *qstore_job(struct daemon *d, enum qstore_kind kind, const char *id,
    qstore_cb cb, void *arg)
{
	struct qstore_job *j = calloc(1, sizeof(*j));

	if (!j) {
		if (cb)
			cb(arg, ENOMEM, "out of memory queueing a spool write", id ? id : "");
		return NULL;
	}
	j->kind = kind;
	j->d = d;
	j->q = d->queue;
	j->fd = -1;
	j->cb = cb;
	j->arg = arg;
	if (id)
		snprintf(j->id, sizeof(j->id), "%s", id);
	return j;
}

static void qstore_go(struct daemon *d, struct qstore_job *j, bool serial)
{
	if (durable_submit(d->durable, j->kind == QS_WRITER ? &qstore_writer_ops : &qstore_ops, j,
	    serial) < 0)
		qstore_now(j);
}

void qstore_remove(struct daemon *d, const char *id, int lockfd, qstore_cb cb, void *arg)
{
	struct qstore_job *j = qstore_job(d, QS_REMOVE, id, cb, arg);

	if (!j) {
		if (lockfd >= 0)
			close(lockfd);
		return;
	}
	j->fd = lockfd;
	qstore_go(d, j, true);
}

void qstore_state(struct daemon *d, const struct q_envelope *env, qstore_cb cb, void *arg)
{
	struct qstore_job *j = qstore_job(d, QS_STATE, env->id, cb, arg);

	if (!j)
		return;
	j->env = env;
	qstore_go(d, j, true);
}

void qstore_writer(struct daemon *d, struct qwriter *w, bool serial, qstore_cb cb, void *arg)
{
	struct qstore_job *j = qstore_job(d, QS_WRITER, qwriter_id(w), cb, arg);

	if (!j) {
		qwriter_abort(w);
		return;
	}
	j->w = w;
	qstore_go(d, j, serial);
}

void qstore_pickup(struct daemon *d, const char *id, qstore_queued_cb cb, void *arg)
{
	struct qstore_job *j = qstore_job(d, QS_PICKUP, id, NULL, NULL);

	if (!j) {
		cb(arg, ENOMEM, "out of memory queueing a spool write", NULL);
		return;
	}
	j->queued_cb = cb;
	j->arg = arg;
	qstore_go(d, j, false);
}

void qstore_accept_fd(struct daemon *d, int fd, long uid, qstore_queued_cb cb, void *arg)
{
	struct qstore_job *j = qstore_job(d, QS_ACCEPT, NULL, NULL, NULL);

	if (!j) {
		close(fd);
		cb(arg, ENOMEM, "out of memory queueing a spool write", NULL);
		return;
	}
	j->queued_cb = cb;
	j->arg = arg;
	j->fd = fd;
	j->uid = uid;
	qstore_go(d, j, false);
}

void qstore_load(struct daemon *d, const char *id, qstore_load_cb cb, void *arg)
{
	struct qstore_job *j = qstore_job(d, QS_LOAD, id, NULL, NULL);

	if (!j) {
		cb(arg, id, -1, NULL, ENOMEM, "out of memory reading a queued message");
		return;
	}
	j->load_cb = cb;
	j->arg = arg;
	qstore_go(d, j, false);
}
