#include "config.h"
#include "queue/control.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/fsutil.h"
#include "lib/usock.h"

#define CONTROL_TIMEOUT 30

static int control_connect(const char *spool_dir, char *err, size_t errlen, int *down)
{
	struct sockaddr_un sun;
	int fd;

	if (usock_addr(&sun, spool_dir, CONTROL_SOCKET, err, errlen) < 0)
		return -1;
	fd = usock_connect(&sun, CONTROL_TIMEOUT);
	if (fd < 0) {
		*down = errno == ENOENT || errno == ECONNREFUSED;
		snprintf(err, errlen, "smtprelayd is not running (connect to %s: %s); "
		    "queued mail goes out when it starts", sun.sun_path, strerror(errno));
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

/* Connect and send the request line. */
static int control_open(const char *spool_dir, const char *request, char *err, size_t errlen,
    int *down)
{
	char line[1024];
	int fd;

	*down = 0;
	if ((size_t)snprintf(line, sizeof(line), "%s\n", request) >= sizeof(line)) {
		snprintf(err, errlen, "request too long");
		return -1;
	}
	if ((fd = control_connect(spool_dir, err, errlen, down)) < 0)
		return -1;
	if (fs_write_all(fd, line, strlen(line)) < 0) {
		snprintf(err, errlen, "writing to smtprelayd: %s", strerror(errno));
		close(fd);
		return -1;
	}
	shutdown(fd, SHUT_WR);
	return fd;
}

int control_request(const char *spool_dir, const char *request, char *reply, size_t replylen,
    char *err, size_t errlen)
{
	int fd, r, down;

	if ((fd = control_open(spool_dir, request, err, errlen, &down)) < 0)
		return -1;
	r = control_read_status(fd, reply, replylen, err, errlen);
	close(fd);
	return r;
}

struct control_reader {
	FILE *out;
	bool at_start;			/* the next byte starts a line */
	bool in_data;			/* inside a data line */
	bool done;			/* the status line ended */
	char status[1024];
	size_t slen;
};

/* One byte of the answer: data lines stream to out, the status line is
 * collected (bounded). */
static void control_byte(struct control_reader *rd, char ch)
{
	if (rd->done)
		return;
	if (rd->at_start) {
		rd->at_start = false;
		rd->in_data = ch == ' ';
		if (rd->in_data)
			return;
	}
	if (rd->in_data) {
		if (rd->out)
			fputc(ch, rd->out);
		rd->at_start = ch == '\n';
		return;
	}
	if (ch == '\n' || ch == '\r') {
		rd->done = true;
		return;
	}
	if (rd->slen < sizeof(rd->status) - 1)
		rd->status[rd->slen++] = ch;
}

static enum control_result control_finish(struct control_reader *rd, char *status,
    size_t statuslen, char *err, size_t errlen)
{
	rd->status[rd->slen] = '\0';
	if (strncmp(rd->status, "ok", 2) == 0 && (!rd->status[2] || rd->status[2] == ' ')) {
		snprintf(status, statuslen, "%s", rd->status + (rd->status[2] ? 3 : 2));
		return CONTROL_OK;
	}
	if (strncmp(rd->status, "error", 5) == 0) {
		snprintf(status, statuslen, "%s", rd->status + (rd->status[5] ? 6 : 5));
		return CONTROL_ERROR;
	}
	snprintf(err, errlen, "smtprelayd answered: %s", rd->slen ? rd->status :
	    "(nothing: connection closed)");
	return CONTROL_FAIL;
}

enum control_result control_query(const char *spool_dir, const char *request, FILE *out,
    char *status, size_t statuslen, char *err, size_t errlen)
{
	struct control_reader rd = { .out = out, .at_start = true };
	char buf[4096];
	ssize_t n;
	int fd, down;

	status[0] = '\0';
	if ((fd = control_open(spool_dir, request, err, errlen, &down)) < 0)
		return down ? CONTROL_DOWN : CONTROL_FAIL;
	while (!rd.done) {
		n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "reading from smtprelayd: %s", strerror(errno));
			close(fd);
			return CONTROL_FAIL;
		}
		if (n == 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			control_byte(&rd, buf[i]);
	}
	close(fd);
	return control_finish(&rd, status, statuslen, err, errlen);
}
