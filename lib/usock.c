#include "config.h"
#include "lib/usock.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

int usock_addr(struct sockaddr_un *sun, const char *dir, const char *name, char *err,
    size_t errlen)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if ((size_t)snprintf(sun->sun_path, sizeof(sun->sun_path), "%s/%s", dir, name) >=
	    sizeof(sun->sun_path)) {
		snprintf(err, errlen, "%s/%s: path too long for a socket (at most %zu bytes)", dir,
		    name, sizeof(sun->sun_path) - 1);
		return -1;
	}
	return 0;
}

int usock_listen(const struct sockaddr_un *sun, mode_t mode, char *err, size_t errlen)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (const struct sockaddr *)sun, sizeof(*sun)) < 0 ||
	    chmod(sun->sun_path, mode) < 0 || listen(fd, 64) < 0) {
		snprintf(err, errlen, "%s: %s", sun->sun_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

int usock_connect(const struct sockaddr_un *sun, int timeout_sec)
{
	struct timeval tv = { .tv_sec = timeout_sec };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), saved;

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) < 0) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}
