/* Durable file-system helpers: every new name is made durable by fsyncing its directory. */
#ifndef SMTPRELAY_FSUTIL_H
#define SMTPRELAY_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* Write all of data, retrying on EINTR and short writes. 0 or -1/errno. */
int fs_write_all(int fd, const void *data, size_t len);
/* fsync the directory at path (or the directory fd). 0 or -1/errno. */
int fs_fsync_dir(const char *path);
int fs_fsync_dirfd(int dirfd);
/* Read a whole regular file of at most max bytes; *out is NUL-terminated, caller frees.
 * -1/errno (EFBIG when larger than max). */
int fs_read_file(const char *path, size_t max, char **out, size_t *len);
int fs_read_fd(int fd, size_t max, char **out, size_t *len);
/* rename without replacing an existing target (renameat2 NOREPLACE, else link+unlink). */
int fs_rename_noreplace(int olddirfd, const char *oldname, int newdirfd, const char *newname);
/* Create dir (and parents) with mode if missing. */
int fs_mkdir_p(const char *path, mode_t mode);

#endif
