#include "config.h"
#include "queue/qint.h"
#include "lib/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A full buffer waiting for qwriter_spill (asynchronous writers). */
struct qchunk {
	struct qchunk *next;
	size_t len;
	char *data;		/* Q_WBUF_SIZE bytes, a former wbuf */
};

/* A message is born as tmp.ID and becomes ID only when complete and durable,
 * so scans never see a partial message and a crash leaves only a stale tmp. */
struct qwriter {
	struct queue *q;
	enum q_area area;
	int dirfd;		/* borrowed from q */
	int fd;
	int error;		/* first write error (errno): later calls fail with it */
	uint64_t size;		/* content bytes so far */
	size_t used;		/* bytes waiting in wbuf */
	bool written;		/* something went to the file: the size needs a pwrite */
	bool eightbit;		/* patched into the header at commit */
	bool renamed;		/* staged: in place, its directory not yet fsynced */
	bool sync_failed;	/* qwriter_sync failed: its message names the file */
	bool lazy;		/* tmp.ID not created yet: at the first flush */
	bool replace_tmp;	/* a stale tmp.ID of a crashed pickup may be in the way */
	off_t eightbit_off;	/* offset of the 8bitmime flag digit */
	char id[QID_SIZE];
	char tmpname[QID_SIZE + 8];
	char *wbuf;		/* Q_WBUF_SIZE bytes: many small writes, few syscalls */
	/* Asynchronous mode: the loop fills wbuf and queues it; one thread
	 * at a time spills the queue into fd.  lock guards the four fields
	 * below; fd, lazy and tmpname then belong to the spilling thread. */
	bool async;
	pthread_mutex_t lock;
	struct qchunk *chunks, *last;
	unsigned nchunks;
	int spill_error;	/* first error of qwriter_spill: the message fails with it */
};

/* maildrop files are written by the submitting user and read by the daemon
 * through the group; queue files are the daemon's own. */
static mode_t qwriter_mode(enum q_area area)
{
	return area == Q_MAILDROP ? 0640 : 0600;
}

static int qwriter_create_now(struct qwriter *w);

static int qwriter_flush(struct qwriter *w)
{
	if (w->error) {
		errno = w->error;
		return -1;
	}
	/* Asynchronous: what is queued goes first (no spill runs now). */
	if (w->async && qwriter_spill(w) < 0) {
		w->error = errno;
		return -1;
	}
	if ((w->used && w->lazy && qwriter_create_now(w) < 0) ||
	    (w->used && fs_write_all(w->fd, w->wbuf, w->used) < 0)) {
		w->error = errno;
		return -1;
	}
	w->written = w->written || w->used;
	w->used = 0;
	return 0;
}

/* Asynchronous: the full buffer becomes a chunk, a fresh one takes its
 * place; no file I/O on the caller's thread.  An error of an earlier spill
 * fails the write, as a failed write() would. */
static int qwriter_queue_chunk(struct qwriter *w)
{
	struct qchunk *c = NULL;
	char *fresh = NULL;
	int e;

	pthread_mutex_lock(&w->lock);
	e = w->spill_error;
	pthread_mutex_unlock(&w->lock);
	if (e == 0 && (!(c = malloc(sizeof(*c))) || !(fresh = malloc(Q_WBUF_SIZE)))) {
		free(c);
		e = ENOMEM;
	}
	if (e) {
		w->error = e;
		errno = e;
		return -1;
	}
	c->next = NULL;
	c->data = w->wbuf;
	c->len = w->used;
	w->wbuf = fresh;
	w->used = 0;
	w->written = true;	/* the header left wbuf: patched in the file */
	pthread_mutex_lock(&w->lock);
	if (w->last)
		w->last->next = c;
	else
		w->chunks = c;
	w->last = c;
	w->nchunks++;
	pthread_mutex_unlock(&w->lock);
	return 0;
}

static int qwriter_put_async(struct qwriter *w, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		size_t n = Q_WBUF_SIZE - w->used;

		if (n == 0) {
			if (qwriter_queue_chunk(w) < 0)
				return -1;
			continue;
		}
		if (n > len)
			n = len;
		memcpy(w->wbuf + w->used, p, n);
		w->used += n;
		p += n;
		len -= n;
	}
	return 0;
}

static int qwriter_put(struct qwriter *w, const void *data, size_t len)
{
	if (w->error) {
		errno = w->error;
		return -1;
	}
	if (len == 0)
		return 0;
	if (w->async)
		return qwriter_put_async(w, data, len);
	if (len > Q_WBUF_SIZE - w->used) {
		if (qwriter_flush(w) < 0)
			return -1;
		if (len >= Q_WBUF_SIZE) {
			if (w->lazy && qwriter_create_now(w) < 0) {
				w->error = errno;
				return -1;
			}
			w->written = true;
			if (fs_write_all(w->fd, data, len) < 0) {
				w->error = errno;
				return -1;
			}
			return 0;
		}
	}
	memcpy(w->wbuf + w->used, data, len);
	w->used += len;
	return 0;
}

static void qwriter_free(struct qwriter *w, bool unlink_tmp)
{
	if (w->fd >= 0)
		close(w->fd);
	if (unlink_tmp && w->tmpname[0])
		unlinkat(w->dirfd, w->tmpname, 0);
	while (w->chunks) {
		struct qchunk *c = w->chunks;

		w->chunks = c->next;
		free(c->data);
		free(c);
	}
	if (w->async)
		pthread_mutex_destroy(&w->lock);
	free(w->wbuf);
	free(w);
}

static int64_t qwriter_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Create tmp.ID exclusively; a fresh id is retried on the (theoretical) clash. */
static int qwriter_create(struct qwriter *w, struct q_envelope *env, bool preset,
    bool replace_tmp, char *err, size_t errlen)
{
	for (int tries = 0;; tries++) {
		snprintf(w->tmpname, sizeof(w->tmpname), "tmp.%s", env->id);
		if (replace_tmp)
			unlinkat(w->dirfd, w->tmpname, 0);
		w->fd = openat(w->dirfd, w->tmpname,
		    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, qwriter_mode(w->area));
		if (w->fd >= 0)
			break;
		if (errno != EEXIST || preset || tries >= 3) {
			int saved = errno;
			store_err(err, errlen, w->q, w->area, w->tmpname, "create: %s", strerror(saved));
			w->tmpname[0] = '\0';	/* not ours: never unlink it */
			errno = saved;
			return -1;
		}
		queue_new_id(env->id);
	}
	memcpy(w->id, env->id, sizeof(w->id));
	/* open() obeys the caller's umask; the daemon must still be able to read it. */
	if (fchmod(w->fd, qwriter_mode(w->area)) < 0) {
		int saved = errno;
		store_err(err, errlen, w->q, w->area, w->tmpname, "chmod: %s", strerror(saved));
		errno = saved;
		return -1;
	}
	return 0;
}

/* The deferred creation of tmp.ID.  A queue/ message is created only when
 * its first bytes leave the buffer: for most messages that is at commit, on
 * the commit stage's thread, so the event loop never waits for a create. */
static int qwriter_create_now(struct qwriter *w)
{
	snprintf(w->tmpname, sizeof(w->tmpname), "tmp.%s", w->id);
	if (w->replace_tmp)
		unlinkat(w->dirfd, w->tmpname, 0);
	w->fd = openat(w->dirfd, w->tmpname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    qwriter_mode(w->area));
	if (w->fd < 0 || fchmod(w->fd, qwriter_mode(w->area)) < 0) {
		int saved = errno;

		if (w->fd < 0)
			w->tmpname[0] = '\0';	/* not ours: never unlink it */
		errno = saved;
		return -1;
	}
	w->lazy = false;
	return 0;
}

static int qwriter_header(struct qwriter *w, const struct q_envelope *env, char *err, size_t errlen)
{
	struct buf b;
	int r, saved;

	buf_init(&b, Q_MAX_HEADER);
	r = envelope_encode(env, &b);
	if (r == 0) {
		/* Whether the body is 8-bit is known only at the end: remember
		 * where the flag is, to patch it like the size. */
		const char *f = strstr(b.data, "\n8bitmime ");
		w->eightbit = env->eightbit;
		w->eightbit_off = f ? (off_t)(f - b.data) + 10 : -1;
		r = qwriter_put(w, b.data, b.len);
	}
	saved = errno;
	buf_free(&b);
	if (r < 0) {
		store_err(err, errlen, w->q, w->area, w->tmpname, "write: %s", strerror(saved));
		errno = saved;
	}
	return r;
}

struct qwriter *store_writer_open(struct queue *q, enum q_area area, struct q_envelope *env,
    bool replace_tmp, char *err, size_t errlen)
{
	struct qwriter *w;
	bool preset = env->id[0] != '\0';
	char why[128];
	int dirfd;

	if ((dirfd = store_area_fd(q, area, err, errlen)) < 0)
		return NULL;
	if (!preset)
		queue_new_id(env->id);
	if (env->arrival_us == 0)
		env->arrival_us = qwriter_now_us();
	if (envelope_check(env, why, sizeof(why)) < 0) {
		store_err(err, errlen, q, area, NULL, "cannot queue message: %s", why);
		errno = EINVAL;
		return NULL;
	}
	if (!(w = calloc(1, sizeof(*w))) || !(w->wbuf = malloc(Q_WBUF_SIZE))) {
		free(w);
		store_err(err, errlen, q, area, NULL, "%s", strerror(ENOMEM));
		errno = ENOMEM;
		return NULL;
	}
	w->q = q;
	w->area = area;
	w->dirfd = dirfd;
	w->fd = -1;
	w->replace_tmp = replace_tmp;
	/* The daemon's own queue/ files are made at the first flush; a front
	 * end's maildrop file at once, so that a spool it cannot write is
	 * reported before it reads the message. */
	if (area == Q_QUEUE) {
		w->lazy = true;
		memcpy(w->id, env->id, sizeof(w->id));
	} else if (qwriter_create(w, env, preset, replace_tmp, err, errlen) < 0) {
		qwriter_free(w, true);
		return NULL;
	}
	if (qwriter_header(w, env, err, errlen) < 0) {
		int saved = errno;
		qwriter_free(w, true);
		errno = saved;
		return NULL;
	}
	return w;
}

struct qwriter *qwriter_open(struct queue *q, enum q_area area, struct q_envelope *env,
    char *err, size_t errlen)
{
	return store_writer_open(q, area, env, false, err, errlen);
}

/* Same format into a descriptor (a memfd handed to the daemon by a front end
 * that cannot write the maildrop): no name, no rename. */
struct qwriter *qwriter_open_fd(int fd, struct q_envelope *env, char *err, size_t errlen)
{
	struct qwriter *w;
	char why[128];

	if (env->id[0] == '\0')
		queue_new_id(env->id);
	if (env->arrival_us == 0)
		env->arrival_us = qwriter_now_us();
	if (envelope_check(env, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "cannot queue message: %s", why);
		errno = EINVAL;
		return NULL;
	}
	if (!(w = calloc(1, sizeof(*w))) || !(w->wbuf = malloc(Q_WBUF_SIZE)) ||
	    (w->fd = dup(fd)) < 0) {
		if (w)
			free(w->wbuf);
		free(w);
		snprintf(err, errlen, "%s", strerror(errno ? errno : ENOMEM));
		return NULL;
	}
	w->dirfd = -1;
	memcpy(w->id, env->id, sizeof(w->id));
	if (qwriter_header(w, env, err, errlen) < 0) {
		int saved = errno;
		qwriter_free(w, false);
		errno = saved;
		return NULL;
	}
	return w;
}

const char *qwriter_id(const struct qwriter *w)
{
	return w->id;
}

uint64_t qwriter_size(const struct qwriter *w)
{
	return w->size;
}

void qwriter_set_eightbit(struct qwriter *w, bool eightbit)
{
	w->eightbit = w->eightbit || eightbit;
}

int qwriter_set_async(struct qwriter *w)
{
	if (!w->lazy || w->async || w->written) {
		errno = EINVAL;		/* only a fresh queue/ writer, whose file is not made yet */
		return -1;
	}
	if ((errno = pthread_mutex_init(&w->lock, NULL)) != 0)
		return -1;
	w->async = true;
	return 0;
}

unsigned qwriter_queued(struct qwriter *w)
{
	unsigned n;

	if (!w->async)
		return 0;
	pthread_mutex_lock(&w->lock);
	n = w->nchunks;
	pthread_mutex_unlock(&w->lock);
	return n;
}

/* One chunk into the file; tmp.ID is made by the first. */
static int qwriter_spill_one(struct qwriter *w, const struct qchunk *c)
{
	if (w->lazy && qwriter_create_now(w) < 0)
		return errno;
	return fs_write_all(w->fd, c->data, c->len) < 0 ? errno : 0;
}

int qwriter_spill(struct qwriter *w)
{
	struct qchunk *c;
	int e;

	for (;;) {
		pthread_mutex_lock(&w->lock);
		/* Dequeued only once written: qwriter_queued counts what is
		 * not on disk yet, which is what the caller's backpressure
		 * is about. */
		c = w->chunks;
		e = w->spill_error;
		pthread_mutex_unlock(&w->lock);
		if (!c)
			break;
		/* After an error the rest is dropped: the message fails. */
		if (e == 0)
			e = qwriter_spill_one(w, c);
		pthread_mutex_lock(&w->lock);
		if (!(w->chunks = c->next))
			w->last = NULL;
		w->nchunks--;
		if (e && !w->spill_error)
			w->spill_error = e;
		pthread_mutex_unlock(&w->lock);
		free(c->data);
		free(c);
	}
	if (e) {
		errno = e;
		return -1;
	}
	return 0;
}

/* Patch a header field of the same width, in the buffer or in the file. */
static int qwriter_patch(struct qwriter *w, bool in_buf, off_t off, const char *v, size_t len)
{
	ssize_t n;

	if (in_buf) {
		memcpy(w->wbuf + off, v, len);
		return 0;
	}
	n = pwrite(w->fd, v, len, off);
	if (n != (ssize_t)len) {
		if (n >= 0)
			errno = EIO;
		return -1;
	}
	return 0;
}

int qwriter_write(struct qwriter *w, const void *data, size_t len)
{
	if (len > UINT64_MAX - w->size) {
		errno = EFBIG;
		return -1;
	}
	if (qwriter_put(w, data, len) < 0)
		return -1;
	w->size += len;
	return 0;
}

/* Everything up to a complete tmp file with the right size field. */
static int qwriter_complete(struct qwriter *w, const char **step)
{
	char field[ENVELOPE_SIZE_WIDTH + 1];
	bool in_buf;

	*step = "write";
	/* Asynchronous: the queued chunks first, so that the header is in
	 * the file when it is patched there. */
	if (w->async && !w->error && qwriter_spill(w) < 0)
		w->error = errno;
	in_buf = !w->written && !w->error;	/* the header starts wbuf */
	envelope_size_field(field, w->size);
	/* A typical message is still all in the buffer: fix the fields there
	 * and write the file in one go. */
	if (qwriter_patch(w, in_buf, (off_t)envelope_size_offset(), field, ENVELOPE_SIZE_WIDTH) < 0)
		return -1;
	if (w->eightbit && w->eightbit_off > 0 &&
	    qwriter_patch(w, in_buf, w->eightbit_off, "1", 1) < 0)
		return -1;
	if (qwriter_flush(w) < 0)
		return -1;
	if (w->lazy && qwriter_create_now(w) < 0) {
		w->error = errno;
		return -1;	/* an empty buffer: only a header-less writer */
	}
	return 0;
}

static int qwriter_sync_close(struct qwriter *w, const char **step)
{
	int n;

	*step = "fsync";
	if (fsync(w->fd) < 0)
		return -1;
	*step = "close";
	n = close(w->fd);
	w->fd = -1;
	return n < 0 ? -1 : 0;
}

static int qwriter_rename(struct qwriter *w, const char **step)
{
	*step = "rename";
	if (fs_rename_noreplace(w->dirfd, w->tmpname, w->dirfd, w->id) < 0)
		return -1;
	w->tmpname[0] = '\0';
	w->renamed = true;
	return 0;
}

/* Name the failed step and file, and remove the temporary file. */
static int qwriter_fail(struct qwriter *w, const char *step, char *err, size_t errlen)
{
	int saved = errno;

	if (w->lazy) {
		/* tmp.ID could not even be created: name it all the same. */
		step = "create";
		snprintf(w->tmpname, sizeof(w->tmpname), "tmp.%s", w->id);
		store_err(err, errlen, w->q, w->area, w->tmpname, "%s: %s", step, strerror(saved));
		w->tmpname[0] = '\0';
	} else {
		store_err(err, errlen, w->q, w->area, w->renamed ? NULL : w->tmpname, "%s: %s", step,
		    strerror(saved));
	}
	if (w->tmpname[0])
		unlinkat(w->dirfd, w->tmpname, 0);
	w->tmpname[0] = '\0';
	errno = saved;
	return -1;
}

int qwriter_stage(struct qwriter *w, char *err, size_t errlen)
{
	const char *step;

	if (qwriter_complete(w, &step) < 0 || qwriter_sync_close(w, &step) < 0)
		return qwriter_fail(w, step, err, errlen);
	if (w->dirfd >= 0 && qwriter_rename(w, &step) < 0)
		return qwriter_fail(w, step, err, errlen);
	return 0;
}

int qwriter_stage_early(struct qwriter *w, char *err, size_t errlen)
{
	const char *step;

	if (w->dirfd < 0)
		return qwriter_stage(w, err, errlen);
	if (qwriter_complete(w, &step) < 0 || qwriter_rename(w, &step) < 0)
		return qwriter_fail(w, step, err, errlen);
	return 0;
}

int qwriter_sync(struct qwriter *w, char *err, size_t errlen)
{
	const char *step;
	int saved;

	if (w->fd < 0)
		return 0;
	if (qwriter_sync_close(w, &step) == 0)
		return 0;
	saved = errno;
	w->sync_failed = true;
	store_err(err, errlen, w->q, w->area, w->id, "%s: %s", step, strerror(saved));
	errno = saved;
	return -1;
}

int qwriter_dirfd(const struct qwriter *w)
{
	return w->renamed ? w->dirfd : -1;
}

int qwriter_settle(struct qwriter *w, int error, char *err, size_t errlen)
{
	if (error && w->renamed) {
		/* Not durable, so not accepted: take it back rather than risk a
		 * duplicate when the client retries. */
		unlinkat(w->dirfd, w->id, 0);
		if (!w->sync_failed)	/* the directory's fsync, not the file's */
			store_err(err, errlen, w->q, w->area, NULL, "fsync: %s", strerror(error));
	}
	qwriter_free(w, true);
	errno = error;
	return error ? -1 : 0;
}

int qwriter_commit(struct qwriter *w, char *err, size_t errlen)
{
	int e = 0;

	if (qwriter_stage(w, err, errlen) < 0)
		e = errno;
	else if (qwriter_dirfd(w) >= 0 && fs_fsync_dirfd(w->dirfd) < 0)
		e = errno;
	if (e && !w->renamed) {
		qwriter_free(w, true);
		errno = e;
		return -1;
	}
	return qwriter_settle(w, e, err, errlen);
}

void qwriter_abort(struct qwriter *w)
{
	int saved = errno;

	if (w)
		qwriter_free(w, true);
	errno = saved;
}
