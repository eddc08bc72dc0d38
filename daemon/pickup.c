#include "config.h"
#define LOG_ROLE LOG_ROLE_PICKUP
#include "daemon/pickup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "daemon/durable.h"
#include "daemon/qstore.h"
#include "daemon/sched.h"
#include "relay/stats.h"
#include "relay/maillog.h"
#include "lib/log.h"

#define PICKUP_TMP_AGE 3600		/* a sendmail that has not finished in an hour died */

struct pickup {
	struct daemon *d;
	int ifd;			/* inotify, -1 when unavailable */
	struct event *ev;		/* inotify readable */
	struct event *timer;		/* safety net */
	char path[PATH_MAX];
	unsigned inflight;		/* moves under way off the loop */
	bool rescan;			/* a scan was asked for meanwhile */
	bool scanning;			/* maildrop/ being read off the loop */
};

/* One move is over (the pickup may be gone: the daemon is stopping).  On
 * success sum says "ID: uid=N from=<sender>" and the rest. */
static void pickup_moved(void *arg, int error, const char *err, const struct maillog_summary *sum)
{
	const char *id = sum ? sum->id : "";
	struct daemon *d = arg;
	struct pickup *p = d->pickup;

	if (error) {
		/* Another pickup holds it, or an I/O error: the next scan retries. */
		log_warn("pickup: %s", err);
	} else {
		maillog_summary_log(sum, "");
		stats_received(STATS_SRC_SENDMAIL);
		if (sched_add(d->sched, id) < 0)
			log_err("%s: out of memory scheduling", id);
	}
	if (!p || --p->inflight > 0 || !p->rescan)
		return;
	p->rescan = false;
	pickup_scan(p);
}

/* One scan of a spool area, read off the loop (maildrop/ for new mail,
 * queue/ for the index); pickup may be gone when it is back. */
struct pickup_dirscan {
	struct daemon *d;		/* on the loop only */
	struct queue *q;
	enum q_area area;
	char (*ids)[QID_SIZE];
	int n;
};

static struct pickup_dirscan *pickup_dirscan_new(struct pickup *p, enum q_area area)
{
	struct pickup_dirscan *r = calloc(1, sizeof(*r));

	if (!r) {
		log_err("%s/%s: not scanned this time: out of memory", queue_path(p->d->queue),
		    area == Q_MAILDROP ? "maildrop" : "queue");
		return NULL;
	}
	r->d = p->d;
	r->q = p->d->queue;
	r->area = area;
	return r;
}

/* Worker: a long directory is long to read, and the scan removes stale
 * temporary files (of a sendmail that died, of a crash) with unlinks. */
static int pickup_dirscan_work(void *arg, char *err, size_t errlen)
{
	struct pickup_dirscan *r = arg;
	int e;

	if ((r->n = queue_scan(r->q, r->area, &r->ids, PICKUP_TMP_AGE)) >= 0)
		return 0;
	e = errno ? errno : EIO;
	snprintf(err, errlen, "%s/%s: cannot scan: %s", queue_path(r->q),
	    r->area == Q_MAILDROP ? "maildrop" : "queue", strerror(e));
	return e;
}

static void pickup_mscan_done(void *arg, int error, const char *err)
{
	struct pickup_dirscan *r = arg;
	struct pickup *p = r->d->pickup;

	if (p)
		p->scanning = false;
	if (error)
		log_err("%s", err);
	else if (p) {
		/* Counted first: a synchronous completion must not start a rescan. */
		p->inflight += (unsigned)r->n;
		for (int i = 0; i < r->n; i++)
			qstore_pickup(p->d, r->ids[i], pickup_moved, p->d);
	}
	free(r->ids);
	free(r);
	if (p && !p->inflight && p->rescan) {
		p->rescan = false;
		pickup_scan(p);
	}
}

int pickup_scan(struct pickup *p)
{
	struct pickup_dirscan *r;

	/* A scan now would see the files still being moved: wait for them. */
	if (p->inflight || p->scanning) {
		p->rescan = true;
		return 0;
	}
	if (!(r = pickup_dirscan_new(p, Q_MAILDROP)))
		return -1;
	p->scanning = true;
	durable_run(p->d->durable, pickup_dirscan_work, pickup_mscan_done, r, false);
	return 0;
}

static void pickup_resync_done(void *arg, int error, const char *err)
{
	struct pickup_dirscan *r = arg;

	if (error)
		log_warn("%s", err);
	for (int i = 0; !error && i < r->n; i++)
		sched_know(r->d->sched, r->ids[i]);
	free(r->ids);
	free(r);
}

/* queue/ files the index does not know about (picked up under a new id,
 * or moved in by hand) are found here. */
static void pickup_resync(struct pickup *p)
{
	struct pickup_dirscan *r = pickup_dirscan_new(p, Q_QUEUE);

	if (r)
		durable_run(p->d->durable, pickup_dirscan_work, pickup_resync_done, r, false);
}

static void pickup_inotify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pickup *p = arg;
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;

	(void)what;
	/* Drain every queued event, then scan once for all of them. */
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		;
	if (n < 0 && errno != EAGAIN && errno != EINTR)
		log_warn("%s: inotify read: %s", p->path, strerror(errno));
	pickup_scan(p);
}

static void pickup_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pickup *p = arg;

	(void)fd;
	(void)what;
	pickup_scan(p);
	pickup_resync(p);
}

/* IN_CREATE too: where renameat2 is missing, a message arrives by link(). */
static int pickup_watch(struct pickup *p)
{
	p->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (p->ifd < 0 || inotify_add_watch(p->ifd, p->path, IN_MOVED_TO | IN_CLOSE_WRITE | IN_CREATE) < 0) {
		log_warn("%s: cannot watch for new mail (%s): picking it up every %d s instead",
		    p->path, strerror(errno), PICKUP_SAFETY_INTERVAL);
		if (p->ifd >= 0)
			close(p->ifd);
		p->ifd = -1;
		return 0;
	}
	p->ev = event_new(p->d->base, p->ifd, EV_READ | EV_PERSIST, pickup_inotify_cb, p);
	if (!p->ev || event_add(p->ev, NULL) < 0)
		return -1;
	return 0;
}

struct pickup *pickup_new(struct daemon *d)
{
	struct pickup *p = calloc(1, sizeof(*p));
	struct timeval tv = { PICKUP_SAFETY_INTERVAL, 0 };

	if (!p)
		return NULL;
	p->d = d;
	p->ifd = -1;
	snprintf(p->path, sizeof(p->path), "%s/maildrop", queue_path(d->queue));
	if (pickup_watch(p) < 0)
		goto fail;
	p->timer = event_new(d->base, -1, EV_PERSIST, pickup_timer_cb, p);
	if (!p->timer || event_add(p->timer, &tv) < 0)
		goto fail;
	return p;
fail:
	pickup_free(p);
	return NULL;
}

void pickup_free(struct pickup *p)
{
	if (!p)
		return;
	if (p->ev)
		event_free(p->ev);
	if (p->timer)
		event_free(p->timer);
	if (p->ifd >= 0)
		close(p->ifd);
	free(p);
}
