#include "config.h"
#include "daemon/ctl.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "daemon/pickup.h"
#include "daemon/sched.h"
#include "frontend/control.h"
#include "lib/log.h"

struct ctl_client {
	struct ctl *ctl;
	struct bufferevent *bev;
	struct ctl_client *next;
	uid_t uid;
	pid_t pid;
	bool answered;
};

struct ctl {
	struct daemon *d;
	struct evconnlistener *lev;
	struct ctl_client *clients;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static void ctl_client_free(struct ctl_client *cl)
{
	struct ctl_client **pp;

	for (pp = &cl->ctl->clients; *pp; pp = &(*pp)->next) {
		if (*pp == cl) {
			*pp = cl->next;
			break;
		}
	}
	bufferevent_free(cl->bev);
	free(cl);
}

static void ctl_answer(struct ctl_client *cl, const char *line)
{
	bufferevent_write(cl->bev, line, strlen(line));
	bufferevent_write(cl->bev, "\n", 1);
	cl->answered = true;
	/* Nothing more to read: close once the answer is written. */
	bufferevent_disable(cl->bev, EV_READ);
}

static void ctl_request(struct ctl_client *cl, const char *req)
{
	struct daemon *d = cl->ctl->d;
	char line[128];

	log_debug("control: \"%s\" from uid %ld pid %ld", req, (long)cl->uid, (long)cl->pid);
	if (strcmp(req, "flush") == 0) {
		size_t n;

		if (d->pickup)
			pickup_scan(d->pickup);
		n = d->sched ? sched_flush(d->sched) : 0;
		snprintf(line, sizeof(line), "ok flushing %zu message%s", n, n == 1 ? "" : "s");
		log_info("flush requested (uid %ld): %zu message%s", (long)cl->uid, n,
		    n == 1 ? "" : "s");
		ctl_answer(cl, line);
	} else if (strcmp(req, "ping") == 0) {
		ctl_answer(cl, "ok smtprelayd " PACKAGE_VERSION);
	} else {
		ctl_answer(cl, "error unknown request");
	}
}

static void ctl_read_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_client *cl = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;
	char *line;

	if (cl->answered)
		return;
	line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
	if (!line) {
		if (evbuffer_get_length(in) > CTL_LINE_MAX)
			ctl_answer(cl, "error request too long");
		return;
	}
	if (len > CTL_LINE_MAX)
		ctl_answer(cl, "error request too long");
	else
		ctl_request(cl, line);
	free(line);
}

static void ctl_write_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_client *cl = arg;

	if (cl->answered && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		ctl_client_free(cl);
}

static void ctl_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct ctl_client *cl = arg;

	(void)bev;
	/* EOF before the line ended: a request without newline still counts. */
	if ((what & BEV_EVENT_EOF) && !cl->answered) {
		struct evbuffer *in = bufferevent_get_input(cl->bev);
		size_t len = evbuffer_get_length(in);

		if (len > 0 && len <= CTL_LINE_MAX) {
			char line[CTL_LINE_MAX + 1];

			evbuffer_remove(in, line, len);
			line[len] = '\0';
			ctl_request(cl, line);
			return;
		}
	}
	ctl_client_free(cl);
}

static void ctl_accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct ctl *c = arg;
	struct ctl_client *cl = calloc(1, sizeof(*cl));
	struct timeval tv = { CTL_TIMEOUT, 0 };
	struct ucred cred;
	socklen_t clen = sizeof(cred);

	(void)lev;
	(void)sa;
	(void)salen;
	if (!cl || !(cl->bev = bufferevent_socket_new(c->d->base, fd, BEV_OPT_CLOSE_ON_FREE))) {
		free(cl);
		close(fd);
		return;
	}
	cl->ctl = c;
	cl->uid = (uid_t)-1;
	cl->pid = -1;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0) {
		cl->uid = cred.uid;
		cl->pid = cred.pid;
	}
	cl->next = c->clients;
	c->clients = cl;
	bufferevent_setcb(cl->bev, ctl_read_cb, ctl_write_cb, ctl_event_cb, cl);
	bufferevent_setwatermark(cl->bev, EV_READ, 0, CTL_LINE_MAX + 2);
	bufferevent_set_timeouts(cl->bev, &tv, &tv);
	bufferevent_enable(cl->bev, EV_READ | EV_WRITE);
}

/* A socket file nobody answers on is left over from a crash. */
static int ctl_clear_stale(const struct sockaddr_un *sun, char *err, size_t errlen)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0) {
		close(fd);
		snprintf(err, errlen, "%s: another smtprelayd is already running on this spool",
		    sun->sun_path);
		return -1;
	}
	close(fd);
	if (unlink(sun->sun_path) < 0 && errno != ENOENT) {
		snprintf(err, errlen, "%s: cannot remove the stale socket: %s", sun->sun_path,
		    strerror(errno));
		return -1;
	}
	return 0;
}

static int ctl_bind(struct ctl *c, char *err, size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	if ((size_t)snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/%s", queue_path(c->d->queue),
	    CONTROL_SOCKET) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "%s: spool path too long for the control socket",
		    queue_path(c->d->queue));
		return -1;
	}
	snprintf(c->path, sizeof(c->path), "%s", sun.sun_path);
	if (ctl_clear_stale(&sun, err, errlen) < 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    chmod(sun.sun_path, 0666) < 0 || listen(fd, 64) < 0) {
		snprintf(err, errlen, "%s: %s", sun.sun_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

struct ctl *ctl_new(struct daemon *d, char *err, size_t errlen)
{
	struct ctl *c = calloc(1, sizeof(*c));
	int fd;

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->d = d;
	if ((fd = ctl_bind(c, err, errlen)) < 0) {
		free(c);
		return NULL;
	}
	c->lev = evconnlistener_new(d->base, ctl_accept_cb, c, LEV_OPT_CLOSE_ON_FREE, 0, fd);
	if (!c->lev) {
		snprintf(err, errlen, "%s: cannot listen: %s", c->path, strerror(errno));
		close(fd);
		unlink(c->path);
		free(c);
		return NULL;
	}
	return c;
}

void ctl_free(struct ctl *c)
{
	if (!c)
		return;
	evconnlistener_free(c->lev);
	while (c->clients)
		ctl_client_free(c->clients);
	unlink(c->path);
	free(c);
}
