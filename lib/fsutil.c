#include "config.h"
#include "lib/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fs_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int fs_fsync_dirfd(int dirfd)
{
	/* Some file systems refuse fsync on directories: nothing more can be done there. */
	if (fsync(dirfd) < 0 && errno != EINVAL && errno != EROFS)
		return -1;
	return 0;
}

int fs_fsync_dir(const char *path)
{
	int fd, r, saved;

	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	r = fs_fsync_dirfd(fd);
	saved = errno;
	close(fd);
	errno = saved;
	return r;
}

int fs_read_fd(int fd, size_t max, char **out, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *p = malloc(cap + 1);

	if (!p)
		return -1;
	for (;;) {
		ssize_t r;
		if (n == cap) {
			char *q;
			if (cap > max) {
				free(p);
				errno = EFBIG;
				return -1;
			}
			cap *= 2;
			q = realloc(p, cap + 1);
			if (!q) {
				free(p);
				return -1;
			}
			p = q;
		}
		r = read(fd, p + n, cap - n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			free(p);
			return -1;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n > max) {
		free(p);
		errno = EFBIG;
		return -1;
	}
	p[n] = '\0';
	*out = p;
	if (len)
		*len = n;
	return 0;
}

int fs_read_file(const char *path, size_t max, char **out, size_t *len)
{
	int fd, r, saved;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -1;
	r = fs_read_fd(fd, max, out, len);
	saved = errno;
	close(fd);
	errno = saved;
	return r;
}

int fs_rename_noreplace(int olddirfd, const char *oldname, int newdirfd, const char *newname)
{
#ifdef HAVE_RENAMEAT2
	if (renameat2(olddirfd, oldname, newdirfd, newname, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
#endif
	/* Fallback for file systems without RENAME_NOREPLACE: link fails on EEXIST. */
	if (linkat(olddirfd, oldname, newdirfd, newname, 0) < 0)
		return -1;
	return unlinkat(olddirfd, oldname, 0);
}

int fs_mkdir_p(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(tmp, path, len + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return -1;
	return 0;
}
