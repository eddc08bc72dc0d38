#include "config.h"
#include "queue/handoff.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/usock.h"

#define HANDOFF_TIMEOUT 60

bool handoff_needed(const char *spool_dir)
{
	char path[PATH_MAX];

	if ((size_t)snprintf(path, sizeof(path), "%s/maildrop", spool_dir) >= sizeof(path))
		return false;
	/* Effective ids: that is what open() in the maildrop will use. */
	return faccessat(AT_FDCWD, path, W_OK | X_OK, AT_EACCESS) < 0 &&
	    (errno == EACCES || errno == EPERM);
}

int handoff_memfd(void)
{
	return memfd_create("smtprelay-message", MFD_CLOEXEC);
}

static int handoff_connect(const char *spool_dir, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	int s;

	if (usock_addr(&sun, spool_dir, HANDOFF_SOCKET, err, errlen) < 0)
		return -1;
	s = usock_connect(&sun, HANDOFF_TIMEOUT);
	if (s < 0)
		snprintf(err, errlen, "the maildrop is not writable (sendmail lacks its setgid "
		    "privilege, e.g. under NoNewPrivileges) and smtprelayd does not answer on %s: %s",
		    sun.sun_path, strerror(errno));
	return s;
}

static int handoff_pass(int s, int fd)
{
	static const char line[] = "submit\n";

	return usock_send_fd(s, line, sizeof(line) - 1, fd);
}

int handoff_send(const char *spool_dir, int fd, char *id, size_t idlen, char *err, size_t errlen)
{
	char reply[512];
	size_t len = 0;
	ssize_t n;
	int s;

	if ((s = handoff_connect(spool_dir, err, errlen)) < 0)
		return -1;
	if (handoff_pass(s, fd) < 0) {
		snprintf(err, errlen, "passing the message to smtprelayd: %s", strerror(errno));
		close(s);
		return -1;
	}
	while (len < sizeof(reply) - 1 && !memchr(reply, '\n', len)) {
		n = read(s, reply + len, sizeof(reply) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(s);
	reply[len] = '\0';
	reply[strcspn(reply, "\r\n")] = '\0';
	if (strncmp(reply, "ok ", 3) != 0) {
		snprintf(err, errlen, "smtprelayd did not take the message: %s",
		    len ? reply : "no answer");
		return -1;
	}
	snprintf(id, idlen, "%s", reply + 3);
	return 0;
}
