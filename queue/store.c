#include "config.h"
#include "queue/qint.h"
#include "lib/fsutil.h"
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORE_STATE_SUFFIX ".state"
#define STORE_NAME_SIZE (QID_SIZE + 16)	/* "tmp." ID ".state" */

static const struct {
	const char *name;
	mode_t mode;
} store_dirs[] = {
	{ "maildrop", 03770 },
	{ "queue", 0700 },
	{ "corrupt", 0700 },
	{ "public", 0755 },
};

const char *store_area_name(enum q_area area)
{
	return area == Q_MAILDROP ? "maildrop" : "queue";
}

/* A file name fit for a log line: anyone can name files in maildrop/. */
const char *store_safe_name(const char *name, char *out, size_t outlen)
{
	size_t i;

	for (i = 0; name[i] && i + 1 < outlen; i++)
		out[i] = (unsigned char)name[i] < 0x20 || name[i] == 0x7f ? '?' : name[i];
	out[i] = '\0';
	return out;
}

const char *queue_path(const struct queue *q)
{
	return q->path;
}

/* "SPOOL/AREA/NAME: message" (NAME may be NULL for the area itself). */
void store_err(char *err, size_t errlen, const struct queue *q, enum q_area area,
    const char *name, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!err || !errlen)
		return;
	/* q is NULL for a writer on a descriptor (no spool path to name). */
	n = q ? snprintf(err, errlen, "%s/%s%s%s: ", q->path, store_area_name(area),
	    name ? "/" : "", name ? name : "") : snprintf(err, errlen, "message handover: ");
	if (n < 0 || (size_t)n >= errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

/* What to try, for the errors an administrator can fix. */
static const char *store_hint(int e)
{
	switch (e) {
	case ENOENT:
		return " (start smtprelayd once to create the spool, or check spool_dir in the config)";
	case EACCES:
	case EPERM:
		return " (check owners and modes: maildrop 3770 and queue 0700, owned by the service user; "
		    "reinstall or run as root)";
	case ENOTDIR:
		return " (move the file away; the spool needs a directory here)";
	default:
		return "";
	}
}

static void store_dir_err(char *err, size_t errlen, const char *path, const char *sub, int e)
{
	if (err && errlen)
		snprintf(err, errlen, "%s%s%s: %s%s", path, sub ? "/" : "", sub ? sub : "",
		    strerror(e), store_hint(e));
	errno = e;
}

int store_area_fd(struct queue *q, enum q_area area, char *err, size_t errlen)
{
	int fd;

	if (q->areafd[area] >= 0)
		return q->areafd[area];
	fd = openat(q->dirfd, store_area_name(area), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		store_dir_err(err, errlen, q->path, store_area_name(area), errno);
		return -1;
	}
	q->areafd[area] = fd;
	return fd;
}

/* Make the spool and its subdirectories; existing ones keep the owners and
 * modes that installation gave them, but must be directories. */
static int store_create(const char *path, char *err, size_t errlen)
{
	bool created = false;
	int dfd;

	if (fs_mkdir_p(path, 0755) < 0) {
		store_dir_err(err, errlen, path, NULL, errno);
		return -1;
	}
	if ((dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		store_dir_err(err, errlen, path, NULL, errno);
		return -1;
	}
	for (size_t i = 0; i < sizeof(store_dirs) / sizeof(store_dirs[0]); i++) {
		const char *sub = store_dirs[i].name;
		struct stat st;
		int e = 0;

		if (mkdirat(dfd, sub, store_dirs[i].mode & 0777) == 0) {
			created = true;
			/* mkdir obeys the umask and drops the sticky bit: set the mode exactly. */
			if (fchmodat(dfd, sub, store_dirs[i].mode, 0) < 0)
				e = errno;
		} else if (errno != EEXIST) {
			e = errno;
		} else if (fstatat(dfd, sub, &st, 0) < 0) {
			e = errno;
		} else if (!S_ISDIR(st.st_mode)) {
			e = ENOTDIR;
		}
		if (e) {
			close(dfd);
			store_dir_err(err, errlen, path, sub, e);
			return -1;
		}
	}
	/* New directories must survive a crash; on every later call nothing changed. */
	if (created)
		fs_fsync_dirfd(dfd);
	close(dfd);
	return 0;
}

struct queue *queue_open(const char *spool_dir, bool create, char *err, size_t errlen)
{
	struct queue *q = calloc(1, sizeof(*q));

	if (!q || !(q->path = strdup(spool_dir))) {
		free(q);
		store_dir_err(err, errlen, spool_dir, NULL, ENOMEM);
		return NULL;
	}
	q->dirfd = q->areafd[0] = q->areafd[1] = -1;
	if (create && store_create(spool_dir, err, errlen) < 0)
		goto fail;
	q->dirfd = open(spool_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (q->dirfd < 0) {
		store_dir_err(err, errlen, spool_dir, NULL, errno);
		goto fail;
	}
	/* The unprivileged front end cannot enter queue/: open it only when asked to. */
	if (store_area_fd(q, Q_MAILDROP, err, errlen) < 0 ||
	    (create && store_area_fd(q, Q_QUEUE, err, errlen) < 0))
		goto fail;
	return q;
fail:
	{
		int saved = errno;
		queue_close(q);
		errno = saved;
	}
	return NULL;
}

void queue_close(struct queue *q)
{
	if (!q)
		return;
	for (int i = 0; i < 2; i++)
		if (q->areafd[i] >= 0)
			close(q->areafd[i]);
	if (q->dirfd >= 0)
		close(q->dirfd);
	free(q->path);
	free(q);
}

/* Reading a message must not write to the disk: an atime update needs the
 * file system's journal, which may be busy for a whole flush while the
 * commit threads sync, and the daemon's event loop reads messages.
 * O_NOATIME is only for the file's owner (maildrop files are the users'). */
static int store_openat_read(int dirfd, const char *name)
{
	int flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY;
	int fd = openat(dirfd, name, flags | O_NOATIME);

	return fd < 0 && errno == EPERM ? openat(dirfd, name, flags) : fd;
}

/* Open a queue file as untrusted: no symlinks, no FIFOs or devices (O_NONBLOCK
 * keeps a FIFO from hanging us), no hard links to someone else's file.
 * Refusals are EBADMSG so that the caller quarantines the name. */
static int store_open_file(struct queue *q, enum q_area area, const char *name,
    struct stat *st, char *err, size_t errlen)
{
	int dirfd, fd, e;
	const char *why = NULL;

	if ((dirfd = store_area_fd(q, area, err, errlen)) < 0)
		return -1;
	fd = store_openat_read(dirfd, name);
	if (fd < 0) {
		e = errno == ELOOP ? EBADMSG : errno;
		store_err(err, errlen, q, area, name, "%s",
		    e == EBADMSG ? "is a symbolic link" : strerror(e));
		errno = e;
		return -1;
	}
	if (fstat(fd, st) < 0)
		why = strerror(errno);
	else if (!S_ISREG(st->st_mode))
		why = "not a regular file";
	else if (st->st_nlink != 1)
		why = "has more than one hard link";
	if (why) {
		store_err(err, errlen, q, area, name, "%s", why);
		close(fd);
		errno = EBADMSG;
		return -1;
	}
	return fd;
}

int store_open_msg(struct queue *q, enum q_area area, const char *id, struct stat *st,
    char *err, size_t errlen)
{
	if (!queue_id_valid(id)) {
		if (err && errlen)
			snprintf(err, errlen, "invalid queue id");
		errno = EINVAL;
		return -1;
	}
	return store_open_file(q, area, id, st, err, errlen);
}

static int store_read_state(struct queue *q, struct q_envelope *env, char *err, size_t errlen)
{
	char name[STORE_NAME_SIZE], why[256];
	struct stat st;
	int fd, r;

	snprintf(name, sizeof(name), "%s%s", env->id, STORE_STATE_SUFFIX);
	fd = store_open_file(q, Q_QUEUE, name, &st, err, errlen);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	r = envelope_parse_state(fd, env, why, sizeof(why));
	if (r < 0) {
		int saved = errno;
		store_err(err, errlen, q, Q_QUEUE, name, "%s", why);
		errno = saved;
	}
	close(fd);
	return r;
}

int queue_read(struct queue *q, enum q_area area, const char *id, struct q_envelope **out,
    char *err, size_t errlen)
{
	struct q_envelope *env;
	struct stat st;
	char why[256];
	int fd, r, saved;

	if ((fd = store_open_msg(q, area, id, &st, err, errlen)) < 0)
		return -1;
	r = envelope_parse(fd, id, (uint64_t)st.st_size, &env, why, sizeof(why));
	saved = errno;
	close(fd);
	if (r < 0) {
		store_err(err, errlen, q, area, id, "%s", why);
		errno = saved;
		return -1;
	}
	if (area == Q_QUEUE && store_read_state(q, env, err, errlen) < 0) {
		saved = errno;
		q_envelope_free(env);
		errno = saved;
		return -1;
	}
	*out = env;
	return 0;
}

int queue_open_content(struct queue *q, enum q_area area, const struct q_envelope *env)
{
	struct stat st;
	int fd;

	if ((fd = store_open_msg(q, area, env->id, &st, NULL, 0)) < 0)
		return -1;
	if ((uint64_t)st.st_size != env->content_offset + env->size) {
		close(fd);
		errno = EBADMSG;
		return -1;
	}
	if (lseek(fd, (off_t)env->content_offset, SEEK_SET) < 0) {
		int saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

/* Write tmp.ID.state completely and durably; the caller renames it. */
static int store_write_state(int dirfd, const char *tmp, const struct buf *b)
{
	int fd, saved;

	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	if (fs_write_all(fd, b->data, b->len) < 0 || fsync(fd) < 0) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return close(fd);
}

/* Refuse what the reader would reject: a bad state file quarantines the message. */
static bool store_state_ok(const struct q_envelope *env)
{
	if (!queue_id_valid(env->id) || env->nrcpts == 0 || env->nrcpts > Q_MAX_RCPTS || !env->rcpts)
		return false;
	for (size_t i = 0; i < env->nrcpts; i++)
		if ((unsigned)env->rcpts[i].state > Q_FAILED)
			return false;
	return true;
}

int queue_update_state(struct queue *q, const struct q_envelope *env, char *err, size_t errlen)
{
	char tmp[STORE_NAME_SIZE + 8], name[STORE_NAME_SIZE];
	struct buf b;
	int dirfd, saved;
	const char *step;

	if (!store_state_ok(env)) {
		if (err && errlen)
			snprintf(err, errlen, "invalid envelope for a state update");
		errno = EINVAL;
		return -1;
	}
	if ((dirfd = store_area_fd(q, Q_QUEUE, err, errlen)) < 0)
		return -1;
	snprintf(name, sizeof(name), "%s%s", env->id, STORE_STATE_SUFFIX);
	snprintf(tmp, sizeof(tmp), "tmp.%s", name);
	buf_init(&b, Q_MAX_HEADER);
	step = "encode";
	if (envelope_encode_state(env, &b) < 0)
		goto fail;
	step = "write";
	if (store_write_state(dirfd, tmp, &b) < 0)
		goto fail;
	step = "rename";
	if (renameat(dirfd, tmp, dirfd, name) < 0)
		goto fail;
	buf_free(&b);
	step = "fsync directory";
	if (fs_fsync_dirfd(dirfd) < 0) {
		saved = errno;
		store_err(err, errlen, q, Q_QUEUE, NULL, "%s: %s", step, strerror(saved));
		errno = saved;
		return -1;
	}
	return 0;
fail:
	saved = errno;
	buf_free(&b);
	unlinkat(dirfd, tmp, 0);
	store_err(err, errlen, q, Q_QUEUE, tmp, "%s: %s", step, strerror(saved));
	errno = saved;
	return -1;
}

int queue_remove(struct queue *q, enum q_area area, const char *id)
{
	char name[STORE_NAME_SIZE];
	int dirfd, r, saved;

	if (!queue_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	if ((dirfd = store_area_fd(q, area, NULL, 0)) < 0)
		return -1;
	r = unlinkat(dirfd, id, 0);
	saved = errno;
	if (area == Q_QUEUE) {
		snprintf(name, sizeof(name), "%s%s", id, STORE_STATE_SUFFIX);
		if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT && r == 0) {
			r = -1;
			saved = errno;
		}
	}
	/* No directory fsync: a removal undone by a crash re-sends the message
	 * (at-least-once), it never loses one; Postfix does the same. */
	errno = saved;
	return r;
}

/* A name that stays inside its directory. */
static bool store_name_ok(const char *name)
{
	size_t n = strlen(name);

	return n > 0 && n < NAME_MAX - 16 && name[0] != '.' && !strchr(name, '/');
}

static int store_corrupt_fd(struct queue *q)
{
	if (mkdirat(q->dirfd, "corrupt", 0700) < 0 && errno != EEXIST)
		return -1;
	return openat(q->dirfd, "corrupt", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/* Move NAME (and its state file) into corrupt/, never over an earlier victim. */
static int store_move_corrupt(int dirfd, int cfd, enum q_area area, const char *name)
{
	char target[NAME_MAX + 1], from[NAME_MAX + 16], to[NAME_MAX + 16];
	int r = -1;

	snprintf(target, sizeof(target), "%s", name);
	for (unsigned i = 1; i < 1000; i++) {
		r = fs_rename_noreplace(dirfd, name, cfd, target);
		if (r == 0 || errno != EEXIST)
			break;
		snprintf(target, sizeof(target), "%s.%u", name, i);
	}
	if (r < 0)
		return -1;
	if (area == Q_QUEUE && queue_id_valid(name)) {
		snprintf(from, sizeof(from), "%s%s", name, STORE_STATE_SUFFIX);
		snprintf(to, sizeof(to), "%s%s", target, STORE_STATE_SUFFIX);
		/* Best effort: a state file left behind is an orphan that scans remove. */
		fs_rename_noreplace(dirfd, from, cfd, to);
	}
	return 0;
}

int queue_quarantine(struct queue *q, enum q_area area, const char *id, const char *why)
{
	char safe[NAME_MAX + 1];
	int dirfd, cfd, r, saved;

	if (!store_name_ok(id)) {
		errno = EINVAL;
		return -1;
	}
	if ((dirfd = store_area_fd(q, area, NULL, 0)) < 0)
		return -1;
	if ((cfd = store_corrupt_fd(q)) < 0) {
		saved = errno;
		log_err("%s: cannot move to %s/corrupt: %s", store_safe_name(id, safe, sizeof(safe)), q->path, strerror(saved));
		errno = saved;
		return -1;
	}
	r = store_move_corrupt(dirfd, cfd, area, id);
	saved = errno;
	if (r == 0) {
		fs_fsync_dirfd(cfd);
		fs_fsync_dirfd(dirfd);
		log_warn("%s: moved to corrupt/: %s", store_safe_name(id, safe, sizeof(safe)), why ? why : "unreadable");
	} else {
		log_err("%s: cannot move to %s/corrupt: %s", store_safe_name(id, safe, sizeof(safe)), q->path, strerror(saved));
	}
	close(cfd);
	errno = saved;
	return r;
}

int queue_lock(struct queue *q, const char *id)
{
	struct stat st;
	int dirfd, fd, saved;

	if (!queue_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	if ((dirfd = store_area_fd(q, Q_QUEUE, NULL, 0)) < 0)
		return -1;
	fd = store_openat_read(dirfd, id);
	if (fd < 0)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	/* The previous holder may have finished and removed it while we waited. */
	if (fstat(fd, &st) < 0 || st.st_nlink == 0) {
		close(fd);
		errno = ENOENT;
		return -1;
	}
	return fd;
}
