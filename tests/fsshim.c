/* fsshim.so: an LD_PRELOAD shim that makes the disk slow or failing, for
 * tests and benchmarks of the spool (reusable by any test: nothing in here
 * knows about smtprelay).
 *
 *   FSSHIM_DELAY_US=N     add N microseconds to every fsync/fdatasync (a
 *                         cloud disk's flush latency)
 *   FSSHIM_WRITE_DELAY_US=N  add N microseconds to every write, pwrite or
 *                         writev of a file whose path matches the glob
 *                         FSSHIM_WRITE_DELAY_PATH (a disk that falls behind
 *                         a fast sender; sockets and logs are not slowed)
 *   FSSHIM_UNLINK_US=N    add N microseconds to every unlink/unlinkat (a
 *                         directory update on a slow or FUSE file system)
 *   FSSHIM_COUNT=PATH     count fsync/fdatasync calls in PATH (created; 8
 *                         bytes, shared by every process that has the shim:
 *                         read it as a little-endian uint64)
 *   FSSHIM_FAIL=RULE;...  RULE is OP:ERRNO:NTH:GLOB.  OP is write (write,
 *                         pwrite, writev), fsync (fsync, fdatasync) or rename
 *                         (rename, renameat, renameat2: GLOB matches the old
 *                         name as given); ERRNO is a name (ENOSPC, EIO,
 *                         EDQUOT, EROFS) or a number; the NTH matching call
 *                         of this process fails (1 = the first; 0 = every
 *                         one); GLOB (fnmatch, no FNM_PATHNAME) is matched
 *                         against the file's path from /proc/self/fd.
 *                         Example: "fsync:EIO:2:*\/queue/tmp.*"
 *
 * Calls that match no rule go straight to libc; a process without these
 * variables pays one getenv per first call.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define FSSHIM_MAX_RULES 8

enum fsshim_op { OP_WRITE, OP_FSYNC, OP_RENAME };

struct fsshim_rule {
	enum fsshim_op op;
	int err;
	unsigned long nth;
	unsigned long seen;		/* matching calls so far (atomic) */
	char glob[256];
};

static pthread_once_t fsshim_once = PTHREAD_ONCE_INIT;
static struct fsshim_rule fsshim_rules[FSSHIM_MAX_RULES];
static int fsshim_nrules;
static long fsshim_delay_us;
static long fsshim_write_delay_us;
static char fsshim_write_glob[256];
static long fsshim_unlink_us;
static uint64_t *fsshim_counter;

static void fsshim_sleep_us(long us);

static const struct { const char *name; int err; } fsshim_errnos[] = {
	{ "ENOSPC", ENOSPC }, { "EIO", EIO }, { "EDQUOT", EDQUOT }, { "EROFS", EROFS },
	{ "EACCES", EACCES }, { "EFBIG", EFBIG },
};

static int fsshim_errno(const char *s)
{
	for (size_t i = 0; i < sizeof(fsshim_errnos) / sizeof(fsshim_errnos[0]); i++)
		if (strcmp(s, fsshim_errnos[i].name) == 0)
			return fsshim_errnos[i].err;
	return atoi(s) > 0 ? atoi(s) : EIO;
}

static void fsshim_parse_rule(char *r)
{
	struct fsshim_rule *x = &fsshim_rules[fsshim_nrules];
	char *op = strtok(r, ":"), *err = strtok(NULL, ":"), *nth = strtok(NULL, ":");
	char *glob = strtok(NULL, "");

	if (!op || !err || !nth || !glob || fsshim_nrules >= FSSHIM_MAX_RULES) {
		fprintf(stderr, "fsshim: FSSHIM_FAIL: bad rule (want OP:ERRNO:NTH:GLOB)\n");
		return;
	}
	x->op = strcmp(op, "write") == 0 ? OP_WRITE : strcmp(op, "rename") == 0 ? OP_RENAME : OP_FSYNC;
	x->err = fsshim_errno(err);
	x->nth = strtoul(nth, NULL, 10);
	snprintf(x->glob, sizeof(x->glob), "%s", glob);
	fsshim_nrules++;
}

static void fsshim_map_counter(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);

	if (fd < 0)
		return;
	if (ftruncate(fd, 4096) == 0) {
		void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p != MAP_FAILED)
			fsshim_counter = p;
	}
	close(fd);
}

static void fsshim_init(void)
{
	const char *d = getenv("FSSHIM_DELAY_US"), *c = getenv("FSSHIM_COUNT");
	const char *f = getenv("FSSHIM_FAIL"), *u = getenv("FSSHIM_UNLINK_US");
	const char *wd = getenv("FSSHIM_WRITE_DELAY_US"), *wp = getenv("FSSHIM_WRITE_DELAY_PATH");
	char *copy, *save = NULL;

	fsshim_delay_us = d ? atol(d) : 0;
	fsshim_unlink_us = u ? atol(u) : 0;
	fsshim_write_delay_us = wd && wp && *wp ? atol(wd) : 0;
	snprintf(fsshim_write_glob, sizeof(fsshim_write_glob), "%s", wp ? wp : "");
	if (c && *c)
		fsshim_map_counter(c);
	if (!f || !*f || !(copy = strdup(f)))
		return;
	for (char *r = strtok_r(copy, ";", &save); r; r = strtok_r(NULL, ";", &save)) {
		char *one = strdup(r);
		if (one)
			fsshim_parse_rule(one);
		free(one);
	}
	free(copy);
}

static bool fsshim_path(int fd, char *path, size_t len)
{
	char link[64];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if ((n = readlink(link, path, len - 1)) < 0)
		return false;
	path[n] = '\0';
	return true;
}

/* A slow write to a matching file; called before the real one. */
static void fsshim_write_delay(int fd)
{
	char path[4096];

	pthread_once(&fsshim_once, fsshim_init);
	if (fsshim_write_delay_us > 0 && fsshim_path(fd, path, sizeof(path)) &&
	    fnmatch(fsshim_write_glob, path, 0) == 0)
		fsshim_sleep_us(fsshim_write_delay_us);
}

static void *fsshim_next(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

/* Does a rule make this call fail?  Sets errno and returns true if so. */
static bool fsshim_fails(enum fsshim_op op, int fd, const char *name)
{
	char link[64], path[4096];
	ssize_t n;

	pthread_once(&fsshim_once, fsshim_init);
	if (fsshim_nrules == 0)
		return false;
	if (!name) {
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		if ((n = readlink(link, path, sizeof(path) - 1)) < 0)
			return false;
		path[n] = '\0';
		name = path;
	}
	for (int i = 0; i < fsshim_nrules; i++) {
		struct fsshim_rule *x = &fsshim_rules[i];
		unsigned long k;

		if (x->op != op || fnmatch(x->glob, name, 0) != 0)
			continue;
		k = __atomic_add_fetch(&x->seen, 1, __ATOMIC_SEQ_CST);
		if (x->nth == 0 || k == x->nth) {
			errno = x->err;
			return true;
		}
	}
	return false;
}

static void fsshim_sleep_us(long us)
{
	struct timespec ts;

	if (us <= 0)
		return;
	ts.tv_sec = us / 1000000;
	ts.tv_nsec = (us % 1000000) * 1000;
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void fsshim_flush_delay(void)
{
	pthread_once(&fsshim_once, fsshim_init);
	if (fsshim_counter)
		__atomic_add_fetch(fsshim_counter, 1, __ATOMIC_SEQ_CST);
	fsshim_sleep_us(fsshim_delay_us);
}

int fsync(int fd)
{
	static int (*next)(int);

	if (!next)
		next = fsshim_next("fsync");
	fsshim_flush_delay();
	if (fsshim_fails(OP_FSYNC, fd, NULL))
		return -1;
	return next(fd);
}

int fdatasync(int fd)
{
	static int (*next)(int);

	if (!next)
		next = fsshim_next("fdatasync");
	fsshim_flush_delay();
	if (fsshim_fails(OP_FSYNC, fd, NULL))
		return -1;
	return next(fd);
}

ssize_t write(int fd, const void *buf, size_t len)
{
	static ssize_t (*next)(int, const void *, size_t);

	if (!next)
		next = fsshim_next("write");
	fsshim_write_delay(fd);
	if (fsshim_fails(OP_WRITE, fd, NULL))
		return -1;
	return next(fd, buf, len);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	static ssize_t (*next)(int, const void *, size_t, off_t);

	if (!next)
		next = fsshim_next("pwrite");
	fsshim_write_delay(fd);
	if (fsshim_fails(OP_WRITE, fd, NULL))
		return -1;
	return next(fd, buf, len, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
	return pwrite(fd, buf, len, off);
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
	static ssize_t (*next)(int, const struct iovec *, int);

	if (!next)
		next = fsshim_next("writev");
	fsshim_write_delay(fd);
	if (fsshim_fails(OP_WRITE, fd, NULL))
		return -1;
	return next(fd, iov, n);
}

int rename(const char *from, const char *to)
{
	static int (*next)(const char *, const char *);

	if (!next)
		next = fsshim_next("rename");
	if (fsshim_fails(OP_RENAME, -1, from))
		return -1;
	return next(from, to);
}

int renameat(int fromfd, const char *from, int tofd, const char *to)
{
	static int (*next)(int, const char *, int, const char *);

	if (!next)
		next = fsshim_next("renameat");
	if (fsshim_fails(OP_RENAME, -1, from))
		return -1;
	return next(fromfd, from, tofd, to);
}

int renameat2(int fromfd, const char *from, int tofd, const char *to, unsigned flags)
{
	static int (*next)(int, const char *, int, const char *, unsigned);

	if (!next)
		next = fsshim_next("renameat2");
	if (fsshim_fails(OP_RENAME, -1, from))
		return -1;
	return next(fromfd, from, tofd, to, flags);
}

int unlink(const char *path)
{
	static int (*next)(const char *);

	if (!next)
		next = fsshim_next("unlink");
	pthread_once(&fsshim_once, fsshim_init);
	fsshim_sleep_us(fsshim_unlink_us);
	return next(path);
}

int unlinkat(int dirfd, const char *path, int flags)
{
	static int (*next)(int, const char *, int);

	if (!next)
		next = fsshim_next("unlinkat");
	pthread_once(&fsshim_once, fsshim_init);
	fsshim_sleep_us(fsshim_unlink_us);
	return next(dirfd, path, flags);
}

/* For a test that changes FSSHIM_* between cases in one process: read them
 * again (call through dlsym(RTLD_DEFAULT, "fsshim_reload")). */
void fsshim_reload(void);
void fsshim_reload(void)
{
	pthread_once(&fsshim_once, fsshim_init);
	fsshim_nrules = 0;
	memset(fsshim_rules, 0, sizeof(fsshim_rules));
	fsshim_init();
}
