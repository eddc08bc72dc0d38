#include "config.h"
#include "queue/qint.h"
#include "lib/fsutil.h"
#include "lib/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define SCAN_STATE_SUFFIX ".state"
#define SCAN_COPY_SIZE ((size_t)64 << 10)

struct scan_list {
	char (*ids)[QID_SIZE];
	size_t n, cap;
};

static int scan_add(struct scan_list *l, const char *id)
{
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 64;
		char (*p)[QID_SIZE];
		if (ncap > INT_MAX) {
			errno = EOVERFLOW;
			return -1;
		}
		if (!(p = realloc(l->ids, ncap * sizeof(*p))))
			return -1;
		l->ids = p;
		l->cap = ncap;
	}
	memcpy(l->ids[l->n++], id, QID_SIZE);
	return 0;
}

/* A tmp file is a write in progress, or the leftover of a crash once old. */
static void scan_tmp(struct queue *q, enum q_area area, int dirfd, const char *name,
    time_t now, time_t max_age)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	if (now - st.st_mtime <= max_age)
		return;
	char safe[NAME_MAX + 1];

	if (unlinkat(dirfd, name, 0) == 0)
		log_info("%s/%s/%s: removed stale temporary file", q->path,
		    store_area_name(area), store_safe_name(name, safe, sizeof(safe)));
}

/* "ID.state" whose ID is valid: "ID" returned in id. */
static bool scan_state_name(const char *name, char id[QID_SIZE])
{
	size_t n = strlen(name), sl = sizeof(SCAN_STATE_SUFFIX) - 1;

	if (n != QID_ID_LEN + sl || strcmp(name + QID_ID_LEN, SCAN_STATE_SUFFIX) != 0)
		return false;
	memcpy(id, name, QID_ID_LEN);
	id[QID_ID_LEN] = '\0';
	return queue_id_valid(id);
}

/* queue_remove deletes the content first: a state file alone is its leftover. */
static void scan_orphan(struct queue *q, int dirfd, const char *name, const char *id)
{
	struct stat st;

	if (fstatat(dirfd, id, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT)
		return;
	if (unlinkat(dirfd, name, 0) == 0)
		log_info("%s: removed orphan state file %s/queue/%s", id, q->path, name);
}

static void scan_entry(struct queue *q, enum q_area area, int dirfd, const char *name,
    time_t now, time_t max_age, struct scan_list *l, int *err)
{
	char id[QID_SIZE];

	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return;
	if (strncmp(name, "tmp.", 4) == 0) {
		scan_tmp(q, area, dirfd, name, now, max_age);
	} else if (queue_id_valid(name)) {
		if (scan_add(l, name) < 0 && !*err)
			*err = errno;
	} else if (area == Q_QUEUE && scan_state_name(name, id)) {
		scan_orphan(q, dirfd, name, id);
	} else {
		char safe[NAME_MAX + 1];
		log_warn("%s/%s/%s: ignoring a file that is not a queue file", q->path,
		    store_area_name(area), store_safe_name(name, safe, sizeof(safe)));
	}
}

static int scan_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

int queue_scan(struct queue *q, enum q_area area, char (**ids)[QID_SIZE], time_t max_tmp_age)
{
	struct scan_list l = { NULL, 0, 0 };
	struct dirent *de;
	DIR *dir;
	time_t now = time(NULL);
	int dirfd, fd, err = 0;

	*ids = NULL;
	if ((dirfd = store_area_fd(q, area, NULL, 0)) < 0)
		return -1;
	/* fdopendir takes the descriptor: give it a private one. */
	fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(dir = fdopendir(fd))) {
		err = errno;
		if (fd >= 0)
			close(fd);
		errno = err;
		return -1;
	}
	for (;;) {
		errno = 0;
		if (!(de = readdir(dir))) {
			if (errno && !err)
				err = errno;
			break;
		}
		scan_entry(q, area, dirfd, de->d_name, now, max_tmp_age, &l, &err);
	}
	closedir(dir);
	if (err) {
		free(l.ids);
		errno = err;
		return -1;
	}
	if (l.n > 1)
		qsort(l.ids, l.n, sizeof(*l.ids), scan_cmp);
	*ids = l.ids;
	return (int)l.n;
}

/* ---- pickup: maildrop/ID (written by a user) -> queue/ID (the daemon's) ---- */

static int scan_done(struct queue *q, const char *id)
{
	int mfd = q->areafd[Q_MAILDROP];

	if (unlinkat(mfd, id, 0) < 0 && errno != ENOENT)
		return -1;
	return fs_fsync_dirfd(mfd);
}

/* Copy size bytes of content from fd at off; EBADMSG when the file ends early. */
static int scan_copy_content(int fd, uint64_t off, uint64_t size, struct qwriter *w)
{
	char *b = malloc(SCAN_COPY_SIZE);
	int r = 0;

	if (!b)
		return -1;
	while (size > 0) {
		size_t want = size < SCAN_COPY_SIZE ? (size_t)size : SCAN_COPY_SIZE;
		ssize_t got = pread(fd, b, want, (off_t)off);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			if (got == 0)
				errno = EBADMSG;
			r = -1;
			break;
		}
		if (qwriter_write(w, b, (size_t)got) < 0) {
			r = -1;
			break;
		}
		off += (uint64_t)got;
		size -= (uint64_t)got;
	}
	free(b);
	return r;
}

/* The file owner is who submitted it; the uid field is only a claim. */
static void scan_check_owner(struct q_envelope *env, const struct stat *st)
{
	if (env->uid == (long)st->st_uid)
		return;
	log_warn("%s: maildrop file claims uid %ld but is owned by uid %ld; using the owner",
	    env->id, env->uid, (long)st->st_uid);
	env->uid = (long)st->st_uid;
}

static int scan_bad(struct queue *q, const char *id, const char *why, char *err, size_t errlen)
{
	if (err && errlen && err != why)
		snprintf(err, errlen, "%s", why);
	queue_quarantine(q, Q_MAILDROP, id, why);
	errno = EBADMSG;
	return -1;
}

/* Copy the validated maildrop message on fd into queue/ under env->id. */
static int scan_transfer(struct queue *q, const char *id, int fd, struct q_envelope *env,
    bool from_maildrop, char *err, size_t errlen)
{
	struct qwriter *w;
	int r;

	w = store_writer_open(q, Q_QUEUE, env, true, err, errlen);
	if (!w)
		return -1;
	r = scan_copy_content(fd, env->content_offset, env->size, w);
	if (r < 0) {
		int saved = errno;
		qwriter_abort(w);
		if (saved == EBADMSG && from_maildrop)
			return scan_bad(q, id, "content shorter than its header says", err, errlen);
		store_err(err, errlen, q, Q_QUEUE, env->id, "copy: %s", strerror(saved));
		errno = saved;
		return -1;
	}
	if (qwriter_commit(w, err, errlen) < 0)
		return errno == EEXIST ? 0 : -1;	/* someone else queued it: done */
	return 0;
}

/* Is this message already in queue/ (a crash after the copy was committed,
 * before the maildrop unlink)?  1 yes, 0 no, 2 a different message holds
 * the id (a clock step back reproduced it), -1 error. */
static int scan_queued(struct queue *q, const struct q_envelope *env)
{
	struct q_envelope *qenv;
	struct stat st;
	int fd, r;

	fd = store_open_msg(q, Q_QUEUE, env->id, &st, NULL, 0);
	if (fd < 0)
		return errno == ENOENT ? 0 : errno == EBADMSG ? 2 : -1;
	r = envelope_parse(fd, env->id, (uint64_t)st.st_size, &qenv, NULL, 0);
	close(fd);
	if (r < 0)
		return errno == EBADMSG ? 2 : -1;
	r = qenv->size == env->size && qenv->nrcpts == env->nrcpts &&
	    strcmp(qenv->sender, env->sender) == 0 &&
	    strcmp(qenv->rcpts[0].addr, env->rcpts[0].addr) == 0 ? 1 : 2;
	q_envelope_free(qenv);
	return r;
}

/* Under our lock, is maildrop/ID still the file we opened?  A concurrent
 * pickup may have finished with it between our open and our lock. */
static bool scan_still_linked(struct queue *q, const char *id, int fd)
{
	struct stat a, b;

	if (fstat(fd, &a) < 0 || a.st_nlink == 0)
		return false;
	if (fstatat(q->areafd[Q_MAILDROP], id, &b, AT_SYMLINK_NOFOLLOW) < 0)
		return false;
	return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Parse, de-duplicate and move the locked maildrop file. */
static int scan_move(struct queue *q, const char *id, int fd, const struct stat *st,
    char *err, size_t errlen)
{
	struct q_envelope *env;
	char why[256];
	int r;

	if (envelope_parse(fd, id, (uint64_t)st->st_size, &env, why, sizeof(why)) < 0) {
		if (errno != EBADMSG) {
			store_err(err, errlen, q, Q_MAILDROP, id, "%s", why);
			return -1;
		}
		return scan_bad(q, id, why, err, errlen);
	}
	scan_check_owner(env, st);
	r = scan_queued(q, env);
	if (r == 2) {
		log_warn("%s: queue id already used by another queued message; picking it up "
		    "under a new id", id);
		env->id[0] = '\0';
		r = 0;
	}
	if (r == 0)
		r = scan_transfer(q, id, fd, env, true, err, errlen);
	else if (r < 0)
		store_err(err, errlen, q, Q_QUEUE, id, "%s", strerror(errno));
	q_envelope_free(env);
	return r < 0 ? -1 : 0;
}

static int scan_pickup_fd(struct queue *q, const char *id, int fd, const struct stat *st,
    char *err, size_t errlen)
{
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int saved = errno;
		store_err(err, errlen, q, Q_MAILDROP, id, "being picked up by another process");
		errno = saved;
		return -1;
	}
	if (!scan_still_linked(q, id, fd))
		return 0;
	if (scan_move(q, id, fd, st, err, errlen) < 0)
		return -1;
	if (scan_done(q, id) < 0) {
		store_err(err, errlen, q, Q_MAILDROP, id, "unlink: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int queue_pickup(struct queue *q, const char *id, char *err, size_t errlen)
{
	struct stat st, qst;
	int fd, r, saved;

	if (store_area_fd(q, Q_MAILDROP, err, errlen) < 0 || store_area_fd(q, Q_QUEUE, err, errlen) < 0)
		return -1;
	fd = store_open_msg(q, Q_MAILDROP, id, &st, err, errlen);
	if (fd < 0) {
		saved = errno;
		if (saved == EBADMSG)
			return scan_bad(q, id, err && errlen ? err : "not a regular file", err, errlen);
		/* Already moved by an earlier pickup: nothing left to do. */
		if (saved == ENOENT && fstatat(q->areafd[Q_QUEUE], id, &qst, AT_SYMLINK_NOFOLLOW) == 0)
			return 0;
		errno = saved;
		return -1;
	}
	r = scan_pickup_fd(q, id, fd, &st, err, errlen);
	saved = errno;
	close(fd);
	errno = saved;
	return r;
}

/* ---- handover: a message on a descriptor from a front end that could not
 * write the maildrop (NoNewPrivileges); as untrusted as a maildrop file ---- */

int queue_accept_fd(struct queue *q, int fd, long uid, char id[QID_SIZE], char *err,
    size_t errlen)
{
	struct q_envelope *env;
	struct stat st;
	char why[256];
	int r;

	if (store_area_fd(q, Q_QUEUE, err, errlen) < 0)
		return -1;
	/* The sender shares the file offset: start from the beginning. */
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || lseek(fd, 0, SEEK_SET) < 0) {
		snprintf(err, errlen, "handed-over message is not a regular file");
		errno = EBADMSG;
		return -1;
	}
	if (envelope_parse(fd, NULL, (uint64_t)st.st_size, &env, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "handed-over message: %s", why);
		return -1;
	}
	/* Who sent it is what the kernel says, and the id is ours to choose. */
	env->uid = uid;
	env->id[0] = '\0';
	r = scan_transfer(q, "handover", fd, env, false, err, errlen);
	if (r == 0)
		memcpy(id, env->id, QID_SIZE);
	q_envelope_free(env);
	return r;
}
