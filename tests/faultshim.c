/* LD_PRELOAD fault injection for the disk-full tests: write, pwrite, fsync,
 * fdatasync, rename, renameat and renameat2 fail with a chosen errno on
 * files under a chosen directory, while a switch file exists.  Independent
 * of smtprelay's internals: only libc calls are intercepted.
 *
 *   FAULTSHIM_CALLS   comma-separated calls to fail: "write,fsync,rename"
 *                     (write covers pwrite, fsync covers fdatasync, rename
 *                     covers renameat and renameat2)
 *   FAULTSHIM_ERRNO   ENOSPC (default), EIO, EDQUOT
 *   FAULTSHIM_PATH    only files whose path starts with this directory
 *   FAULTSHIM_SWITCH  faults happen while this file exists (tests turn the
 *                     disk "full" and "free" again by creating/removing it)
 *   FAULTSHIM_SKIP    let the first N calls that would fail succeed (to hit
 *                     the Nth fsync of a process, say)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static int shim_errno(void)
{
	const char *e = getenv("FAULTSHIM_ERRNO");

	if (e && strcmp(e, "EIO") == 0)
		return EIO;
	if (e && strcmp(e, "EDQUOT") == 0)
		return EDQUOT;
	return ENOSPC;
}

/* Is call listed and the switch on? */
static int shim_armed(const char *call)
{
	const char *calls = getenv("FAULTSHIM_CALLS"), *sw = getenv("FAULTSHIM_SWITCH");
	size_t n = strlen(call);

	if (!calls || !sw || access(sw, F_OK) != 0)
		return 0;
	for (const char *p = calls; (p = strstr(p, call)) != NULL; p += n)
		if ((p == calls || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
			return 1;
	return 0;
}

static int shim_path_matches(const char *path)
{
	static long skipped;
	const char *dir = getenv("FAULTSHIM_PATH"), *skip = getenv("FAULTSHIM_SKIP");

	if (!dir || strncmp(path, dir, strlen(dir)) != 0)
		return 0;
	return !skip || skipped++ >= atol(skip);
}

static int shim_fd_matches(int fd)
{
	char link[64], path[4096];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n < 0)
		return 0;
	path[n] = '\0';
	return shim_path_matches(path);
}

static int shim_at_matches(int dirfd, const char *name)
{
	char dir[4096], link[64], path[8192];
	ssize_t n;

	if (name[0] == '/')
		return shim_path_matches(name);
	if (dirfd == AT_FDCWD) {
		if (!getcwd(dir, sizeof(dir)))
			return 0;
	} else {
		snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
		if ((n = readlink(link, dir, sizeof(dir) - 1)) < 0)
			return 0;
		dir[n] = '\0';
	}
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return shim_path_matches(path);
}

#define SHIM_NEXT(type, name) ((type)dlsym(RTLD_NEXT, name))

ssize_t write(int fd, const void *buf, size_t len)
{
	if (shim_armed("write") && shim_fd_matches(fd)) {
		errno = shim_errno();
		return -1;
	}
	return SHIM_NEXT(ssize_t (*)(int, const void *, size_t), "write")(fd, buf, len);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	if (shim_armed("write") && shim_fd_matches(fd)) {
		errno = shim_errno();
		return -1;
	}
	return SHIM_NEXT(ssize_t (*)(int, const void *, size_t, off_t), "pwrite")(fd, buf, len,
	    off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
	return pwrite(fd, buf, len, off);
}

int fsync(int fd)
{
	if (shim_armed("fsync") && shim_fd_matches(fd)) {
		errno = shim_errno();
		return -1;
	}
	return SHIM_NEXT(int (*)(int), "fsync")(fd);
}

int fdatasync(int fd)
{
	if (shim_armed("fsync") && shim_fd_matches(fd)) {
		errno = shim_errno();
		return -1;
	}
	return SHIM_NEXT(int (*)(int), "fdatasync")(fd);
}

int rename(const char *from, const char *to)
{
	if (shim_armed("rename") && shim_path_matches(to)) {
		errno = shim_errno();
		return -1;
	}
	return SHIM_NEXT(int (*)(const char *, const char *), "rename")(from, to);
}

int renameat(int ofd, const char *from, int nfd, const char *to)
{
	if (shim_armed("rename") && shim_at_matches(nfd, to)) {
		errno = shim_errno();
		return -1;
	}
	return SHIM_NEXT(int (*)(int, const char *, int, const char *), "renameat")(ofd, from,
	    nfd, to);
}

int renameat2(int ofd, const char *from, int nfd, const char *to, unsigned flags)
{
	if (shim_armed("rename") && shim_at_matches(nfd, to)) {
		errno = shim_errno();
		return -1;
	}
	return SHIM_NEXT(int (*)(int, const char *, int, const char *, unsigned), "renameat2")(
	    ofd, from, nfd, to, flags);
}
