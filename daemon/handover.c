#include "config.h"
#define LOG_ROLE LOG_ROLE_PICKUP
#include "daemon/handover.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "daemon/qstore.h"
#include "daemon/sched.h"
#include "relay/stats.h"
#include "queue/handoff.h"
#include "relay/maillog.h"
#include "daemon/harden.h"
#include "lib/log.h"
#include "lib/usock.h"

#define HANDOVER_TIMEOUT 10

struct handover {
	struct daemon *d;
	struct evconnlistener *lev;
	struct harden_clients *limit;	/* per uid and in total */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

struct handover_client {
	struct handover *h;
	struct event *ev;
	int fd;
	uid_t uid;			/* the peer (SO_PEERCRED at accept) */
	long pid;			/* once its message is in */
};

static void handover_client_free(struct handover_client *cl)
{
	harden_clients_release(cl->h->limit, cl->uid);
	event_free(cl->ev);
	close(cl->fd);
	free(cl);
}

/* One "submit\n" with one descriptor attached; anything else is refused. */
static int handover_receive(int s, int *fd)
{
	char line[16];
	ssize_t n = usock_recv_fd(s, line, sizeof(line), fd);

	if (n == 7 && *fd >= 0 && memcmp(line, "submit\n", 7) == 0)
		return 0;
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
	return -1;
}

static void handover_reply(int s, const char *word, const char *text)
{
	char line[600];
	int n = snprintf(line, sizeof(line), "%s %s\n", word, text);

	if (n > 0)
		(void)send(s, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* A bound before reading anything: the header is small, content is capped. */
static int handover_check(struct handover *h, int fd, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st) < 0 || st.st_size < 0 ||
	    (uint64_t)st.st_size > (uint64_t)h->d->conf->max_message_size + 65536) {
		snprintf(err, errlen, "message larger than max_message_size");
		return -1;
	}
	return 0;
}

/* The message is queued (or not): answer the front end, which waits. */
static void handover_queued(void *arg, int error, const char *err,
    const struct maillog_summary *sum)
{
	const char *id = sum ? sum->id : "";
	struct handover_client *cl = arg;
	int s = cl->fd;

	if (error) {
		log_warn("message handed over by uid %ld refused: %s", (long)cl->uid, err);
		handover_reply(s, "error", err);
	} else {
		char note[64];

		snprintf(note, sizeof(note), " (handed over by pid %ld)", cl->pid);
		maillog_summary_log(sum, note);
		handover_reply(s, "ok", id);
		stats_received(STATS_SRC_SENDMAIL);
		if (sched_add(cl->h->d->sched, id) < 0)
			log_err("%s: out of memory scheduling (delivered at the next queue scan)", id);
	}
	handover_client_free(cl);
}

static void handover_read_cb(evutil_socket_t s, short what, void *arg)
{
	struct handover_client *cl = arg;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	char err[512];
	int fd;

	if (what & EV_TIMEOUT) {
		handover_client_free(cl);
		return;
	}
	if (handover_receive(s, &fd) < 0 ||
	    getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		handover_reply(s, "error", "expected \"submit\" with a message descriptor");
		handover_client_free(cl);
		return;
	}
	if (handover_check(cl->h, fd, err, sizeof(err)) < 0) {
		log_warn("message handed over by uid %ld refused: %s", (long)cred.uid, err);
		handover_reply(s, "error", err);
		close(fd);
		handover_client_free(cl);
		return;
	}
	cl->pid = (long)cred.pid;
	/* Reading the caller's file (maybe on a slow or FUSE file system) and
	 * queueing it happen off the loop; no timeout meanwhile. */
	event_del(cl->ev);
	qstore_accept_fd(cl->h->d, fd, (long)cred.uid, handover_queued, cl);
}

static void handover_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct handover *h = arg;
	struct timeval tv = { .tv_sec = HANDOVER_TIMEOUT };
	struct handover_client *cl = calloc(1, sizeof(*cl));
	struct ucred cred;
	socklen_t clen = sizeof(cred);

	if (!cl) {
		close(fd);
		return;
	}
	cl->h = h;
	cl->fd = fd;
	cl->uid = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0 ?
	    cred.uid : (uid_t)-1;
	if (!harden_clients_admit(h->limit, cl->uid)) {
		handover_reply(fd, "error", "too many connections from this user; try again later");
		close(fd);
		free(cl);
		return;
	}
	cl->ev = event_new(h->d->base, fd, EV_READ, handover_read_cb, cl);
	if (!cl->ev || event_add(cl->ev, &tv) < 0) {
		if (cl->ev)
			event_free(cl->ev);
		harden_clients_release(h->limit, cl->uid);
		close(fd);
		free(cl);
	}
}

static int handover_bind(struct handover *h, char *err, size_t errlen)
{
	struct sockaddr_un sun;

	if (usock_addr(&sun, queue_path(h->d->queue), HANDOFF_SOCKET, err, errlen) < 0)
		return -1;
	snprintf(h->path, sizeof(h->path), "%s", sun.sun_path);
	/* The control socket already proved no other daemon runs on this spool. */
	unlink(sun.sun_path);
	return usock_listen(&sun, 0666, err, errlen);
}

struct handover *handover_new(struct daemon *d, char *err, size_t errlen)
{
	struct handover *h = calloc(1, sizeof(*h));
	int fd;

	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->d = d;
	if (!(h->limit = harden_clients_new("submit socket"))) {
		snprintf(err, errlen, "out of memory");
		free(h);
		return NULL;
	}
	if ((fd = handover_bind(h, err, errlen)) < 0) {
		harden_clients_free(h->limit);
		free(h);
		return NULL;
	}
	h->lev = evconnlistener_new(d->base, handover_accept_cb, h, LEV_OPT_CLOSE_ON_FREE, 0, fd);
	if (!h->lev || harden_guard(d->base, h->lev, h->path) < 0) {
		snprintf(err, errlen, "%s: cannot listen: %s", h->path, strerror(errno));
		if (h->lev)
			evconnlistener_free(h->lev);
		else
			close(fd);
		unlink(h->path);
		harden_clients_free(h->limit);
		free(h);
		return NULL;
	}
	return h;
}

void handover_free(struct handover *h)
{
	if (!h)
		return;
	harden_unguard(h->lev);
	evconnlistener_free(h->lev);
	unlink(h->path);
	harden_clients_free(h->limit);
	free(h);
}
