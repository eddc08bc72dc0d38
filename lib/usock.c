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

/* Room for exactly one descriptor, aligned as cmsg wants. */
union usock_cmsg {
	struct cmsghdr h;
	char buf[CMSG_SPACE(sizeof(int))];
};

int usock_send_fd(int s, const void *data, size_t len, int fd)
{
	struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
	union usock_cmsg u;
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
	    .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);

	memset(&u, 0, sizeof(u));
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(s, &m, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

/* Room for more descriptors than anyone should send: whatever arrives is
 * counted and closed, so a hostile peer cannot leave descriptors with us. */
#define USOCK_RECV_FDS 16

/* Close every descriptor in every SCM_RIGHTS message; how many there were. */
static size_t usock_close_fds(struct msghdr *m)
{
	size_t total = 0;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
		size_t n;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
		    c->cmsg_len < CMSG_LEN(0))
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			close(fd);
		}
		total += n;
	}
	return total;
}

ssize_t usock_recv_fd(int s, void *data, size_t len, int *fd)
{
	struct iovec iov = { .iov_base = data, .iov_len = len };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(USOCK_RECV_FDS * sizeof(int))];
	} u;
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
	    .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *c;
	ssize_t n;

	*fd = -1;
	n = recvmsg(s, &m, MSG_CMSG_CLOEXEC);
	if (n < 0)
		return -1;
	c = CMSG_FIRSTHDR(&m);
	/* Exactly one message with exactly one descriptor, or none at all. */
	if (!(m.msg_flags & MSG_CTRUNC) && c && CMSG_NXTHDR(&m, c) == NULL &&
	    c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
	    c->cmsg_len == CMSG_LEN(sizeof(int))) {
		memcpy(fd, CMSG_DATA(c), sizeof(int));
		return n;
	}
	if (usock_close_fds(&m) == 0 && !(m.msg_flags & MSG_CTRUNC))
		return n;
	errno = EBADMSG;
	return -1;
}
