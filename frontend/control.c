#include "config.h"
#include "frontend/control.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/fsutil.h"

#define CONTROL_TIMEOUT 30

static int control_connect(const char *spool_dir, char *err, size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = CONTROL_TIMEOUT };
	int fd;

	if ((size_t)snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/%s", spool_dir,
	    CONTROL_SOCKET) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "spool path too long for a socket: %s", spool_dir);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		snprintf(err, errlen, "smtprelayd is not running (connect to %s: %s); "
		    "queued mail goes out when it starts", sun.sun_path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Read until the final "ok"/"error" line; bounded. */
static int control_read_status(int fd, char *reply, size_t replylen, char *err, size_t errlen)
{
	char buf[4096];
	size_t len = 0;
	ssize_t n;

	while (len < sizeof(buf) - 1) {
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (reply)
		snprintf(reply, replylen, "%s", buf);
	if (strncmp(buf, "ok", 2) == 0)
		return 0;
	snprintf(err, errlen, "smtprelayd answered: %s", len ? buf : "(nothing)");
	return -1;
}

int control_request(const char *spool_dir, const char *request, char *reply, size_t replylen,
    char *err, size_t errlen)
{
	char line[1024];
	int fd, r;

	fd = control_connect(spool_dir, err, errlen);
	if (fd < 0)
		return -1;
	snprintf(line, sizeof(line), "%s\n", request);
	if (fs_write_all(fd, line, strlen(line)) < 0) {
		snprintf(err, errlen, "writing to smtprelayd: %s", strerror(errno));
		close(fd);
		return -1;
	}
	shutdown(fd, SHUT_WR);
	r = control_read_status(fd, reply, replylen, err, errlen);
	close(fd);
	return r;
}
