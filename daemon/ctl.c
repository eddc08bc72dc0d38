#include "config.h"
#include "daemon/ctl.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
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

#include "daemon/durable.h"
#include "daemon/metrics.h"
#include "daemon/pickup.h"
#include "relay/relay.h"
#include "daemon/sched.h"
#include "lib/rfc3339.h"
#include "queue/control.h"
#include "queue/mailq.h"
#include "queue/qjson.h"
#include "daemon/harden.h"
#include "lib/log.h"
#include "lib/usock.h"

#define CTL_RECENT 64		/* finished messages remembered for show/state */

struct ctl_wait;

struct ctl_client {
	struct ctl *ctl;
	struct bufferevent *bev;
	struct ctl_client *next;
	uid_t uid;
	pid_t pid;
	bool answered;
	struct ctl_wait *wait;		/* a request waiting for a commit thread */
};

/* What a view of the metrics is for. */
enum ctl_view { CTL_VIEW_STATUS, CTL_VIEW_JSON, CTL_VIEW_PROM };

/* A request answered after disk work on a commit thread (reading the
 * queue, removing messages).  cl is NULL once the client has gone
 * (ctl_client_free): the work still completes, the answer is dropped. */
struct ctl_wait {
	struct ctl_client *cl;
	struct daemon *d;		/* on the loop only */
	struct queue *q;		/* what the worker reads */
	enum ctl_view view;
	long uid;			/* delete: who asked */
	bool all;			/* delete all: the ids come from a scan */
	bool json;			/* queue: as JSON */
	char *text;			/* queue: the listing */
	size_t len;
	char (*ids)[QID_SIZE];		/* delete: the messages; queue: those in delivery */
	unsigned char *outcome;		/* delete: enum ctl_del of each */
	size_t n;
	char err[512];			/* delete: the last error */
};

struct ctl {
	struct daemon *d;
	struct evconnlistener *lev;
	struct ctl_client *clients;
	struct harden_clients *limit;	/* per uid and in total */
	time_t started;
	struct q_envelope *recent[CTL_RECENT];	/* ring of finished messages */
	size_t recent_next;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* A message found by id: where it is and what it is doing. */
struct ctl_msg {
	struct q_envelope *env;
	bool owned;			/* env is ours to free (not a ring entry) */
	enum q_area area;
	const char *status;		/* queued, held, delivering, maildrop, finished */
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
	if (cl->wait)
		cl->wait->cl = NULL;
	harden_clients_release(cl->ctl->limit, cl->uid);
	bufferevent_free(cl->bev);
	free(cl);
}

/* The request is taken: no more reading (a second line is not a second
 * request, and no read timeout runs while the work does). */
static struct ctl_wait *ctl_wait_new(struct ctl_client *cl)
{
	struct ctl_wait *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->cl = cl;
	w->d = cl->ctl->d;
	w->q = w->d->queue;
	w->uid = (long)cl->uid;
	cl->wait = w;
	bufferevent_disable(cl->bev, EV_READ);
	return w;
}

/* The work is over: the client to answer, if it is still there.  Frees w. */
static struct ctl_client *ctl_wait_end(struct ctl_wait *w)
{
	struct ctl_client *cl = w->cl;

	if (cl)
		cl->wait = NULL;
	free(w->ids);
	free(w->outcome);
	free(w->text);
	free(w);
	return cl;
}

static void ctl_answer(struct ctl_client *cl, const char *line)
{
	bufferevent_write(cl->bev, line, strlen(line));
	bufferevent_write(cl->bev, "\n", 1);
	cl->answered = true;
	/* Nothing more to read: close once the answer is written. */
	bufferevent_disable(cl->bev, EV_READ);
}

static void ctl_answerf(struct ctl_client *cl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void ctl_answerf(struct ctl_client *cl, const char *fmt, ...)
{
	char line[CTL_LINE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One line whatever the text holds: the client reads up to the newline. */
	for (char *p = line; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	ctl_answer(cl, line);
}

/* Data lines, each prefixed with a space so that no line of data can look
 * like the final "ok"/"error" line.  -1 on ENOMEM. */
static int ctl_data(struct ctl_client *cl, const char *text, size_t len)
{
	struct evbuffer *out = bufferevent_get_output(cl->bev);
	size_t pos = 0;

	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;

		if (evbuffer_add(out, " ", 1) < 0 || evbuffer_add(out, text + pos, n) < 0 ||
		    evbuffer_add(out, "\n", 1) < 0)
			return -1;
		pos += n + (nl ? 1 : 0);
	}
	return 0;
}

/* Answers are composed in memory, then sent as data lines. */
struct ctl_out {
	FILE *f;
	char *text;
	size_t len;
};

static FILE *ctl_out_open(struct ctl_out *o)
{
	o->text = NULL;
	o->len = 0;
	o->f = open_memstream(&o->text, &o->len);
	return o->f;
}

/* Send what was written and the final line; "error out of memory" when
 * the text could not be built. */
static void ctl_out_send(struct ctl_client *cl, struct ctl_out *o, const char *final)
{
	bool bad = fclose(o->f) != 0 || !o->text;

	if (bad || ctl_data(cl, o->text, o->len) < 0)
		ctl_answer(cl, "error out of memory");
	else
		ctl_answer(cl, final);
	free(o->text);
}

/* Root and the daemon's own user may see and delete everything. */
static bool ctl_privileged(const struct ctl_client *cl)
{
	return cl->uid == 0 || cl->uid == getuid();
}

/* ---- finished messages ---- */

static int ctl_copy_rcpt(struct q_rcpt *to, const struct q_rcpt *from)
{
	to->state = from->state;
	to->attempts = from->attempts;
	to->next_attempt = from->next_attempt;
	to->last_attempt = from->last_attempt;
	to->addr = strdup(from->addr);
	to->last_reason = from->last_reason ? strdup(from->last_reason) : NULL;
	return to->addr && (to->last_reason || !from->last_reason) ? 0 : -1;
}

/* What show and state need of a message that left the queue. */
static struct q_envelope *ctl_env_copy(const struct q_envelope *env)
{
	struct q_envelope *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	memcpy(c->id, env->id, sizeof(c->id));
	c->arrival_us = env->arrival_us;
	c->size = env->size;
	c->uid = env->uid;
	c->sender = strdup(env->sender);
	c->origin = env->origin ? strdup(env->origin) : NULL;
	c->rcpts = calloc(env->nrcpts ? env->nrcpts : 1, sizeof(*c->rcpts));
	if (!c->sender || !c->rcpts || (env->origin && !c->origin)) {
		q_envelope_free(c);
		return NULL;
	}
	for (size_t i = 0; i < env->nrcpts; i++) {
		c->nrcpts++;
		if (ctl_copy_rcpt(&c->rcpts[i], &env->rcpts[i]) < 0) {
			q_envelope_free(c);
			return NULL;
		}
	}
	return c;
}

static void ctl_finished(void *arg, const struct q_envelope *env)
{
	struct ctl *c = arg;
	struct q_envelope *copy = ctl_env_copy(env);

	if (!copy)
		return;
	q_envelope_free(c->recent[c->recent_next]);
	c->recent[c->recent_next] = copy;
	c->recent_next = (c->recent_next + 1) % CTL_RECENT;
}

static struct q_envelope *ctl_recent(struct ctl *c, const char *id)
{
	for (size_t i = 0; i < CTL_RECENT; i++)
		if (c->recent[i] && strcmp(c->recent[i]->id, id) == 0)
			return c->recent[i];
	return NULL;
}

/* ---- finding a message ---- */

/* 0 found, -1 unknown (errno ENOENT) or unreadable (message in err). */
static int ctl_find(struct ctl *c, const char *id, struct ctl_msg *m, char *err, size_t errlen)
{
	struct daemon *d = c->d;

	memset(m, 0, sizeof(*m));
	snprintf(err, errlen, "%s: no such message in the queue", id);
	if (!queue_id_valid(id)) {
		errno = ENOENT;
		return -1;
	}
	m->owned = true;
	for (int a = 0; a < 2; a++) {
		m->area = a == 0 ? Q_QUEUE : Q_MAILDROP;
		if (queue_read(d->queue, m->area, id, &m->env, err, errlen) == 0) {
			m->status = m->area == Q_MAILDROP ? "maildrop" :
			    d->sched && sched_busy(d->sched, id) ? "delivering" :
			    m->env->held ? "held" : "queued";
			return 0;
		}
		if (errno != ENOENT)
			return -1;
		snprintf(err, errlen, "%s: no such message in the queue", id);
	}
	m->owned = false;
	if ((m->env = ctl_recent(c, id))) {
		m->status = "finished";
		return 0;
	}
	errno = ENOENT;
	return -1;
}

static void ctl_msg_free(struct ctl_msg *m)
{
	if (m->owned)
		q_envelope_free(m->env);
	m->env = NULL;
}

/* show and state: root, the service user, and the submitter. */
static bool ctl_may_read(const struct ctl_client *cl, const struct q_envelope *env)
{
	return ctl_privileged(cl) || (env->uid >= 0 && (uid_t)env->uid == cl->uid);
}

/* Look up ID for a reader; on failure the answer is sent and -1 returned. */
static int ctl_find_for(struct ctl_client *cl, const char *id, struct ctl_msg *m)
{
	char err[512];

	if (ctl_find(cl->ctl, id, m, err, sizeof(err)) < 0) {
		ctl_answerf(cl, "error %s", err);
		return -1;
	}
	if (!ctl_may_read(cl, m->env)) {
		ctl_msg_free(m);
		ctl_answerf(cl, "error permission denied: only root, %s and the sender's user may "
		    "see a message", cl->ctl->d->conf->user);
		return -1;
	}
	return 0;
}

/* ---- requests ---- */

static int ctl_id_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* On the worker: sched_busy() as it was when the listing was asked for. */
static bool ctl_busy_then(void *arg, const char *id)
{
	const struct ctl_wait *w = arg;

	return w->n && bsearch(id, w->ids, w->n, sizeof(*w->ids), ctl_id_cmp);
}

static void ctl_flush(struct ctl_client *cl, const char *arg)
{
	struct daemon *d = cl->ctl->d;
	size_t n;

	(void)arg;
	if (d->pickup)
		pickup_scan(d->pickup);
	log_info("flush requested (uid %ld)", (long)cl->uid);
	/* Smarthosts first: a flushed message must find them eligible (README,
	 * "Running it": flush). */
	if (d->relay)
		relay_flush(d->relay);
	n = d->sched ? sched_flush(d->sched) : 0;
	log_info("flush: %zu deferred message%s due now", n, n == 1 ? "" : "s");
	ctl_answerf(cl, "ok flushing %zu message%s", n, n == 1 ? "" : "s");
}

static void ctl_ping(struct ctl_client *cl, const char *arg)
{
	(void)arg;
	ctl_answer(cl, "ok smtprelayd " PACKAGE_VERSION);
}

/* Worker: the listing reads every envelope, so not on the loop. */
static int ctl_queue_work(void *arg, char *err, size_t errlen)
{
	struct ctl_wait *w = arg;
	FILE *f = open_memstream(&w->text, &w->len);
	int r, e;

	if (!f) {
		snprintf(err, errlen, "out of memory");
		return ENOMEM;
	}
	r = w->json ? qjson_print(w->q, f, err, errlen) :
	    mailq_print_active(w->q, f, ctl_busy_then, w, err, errlen);
	e = r < 0 ? (errno ? errno : EIO) : 0;
	if (fclose(f) != 0 && !e) {
		snprintf(err, errlen, "out of memory");
		e = ENOMEM;
	}
	return e;
}

static void ctl_queue_done(void *arg, int error, const char *err)
{
	struct ctl_wait *w = arg;
	struct ctl_client *cl = w->cl;

	if (cl && error)
		ctl_answerf(cl, "error %s", err);
	else if (cl && ctl_data(cl, w->text ? w->text : "", w->len) < 0)
		ctl_answer(cl, "error out of memory");
	else if (cl)
		ctl_answer(cl, "ok");
	ctl_wait_end(w);
}

static void ctl_queue(struct ctl_client *cl, const char *arg)
{
	struct daemon *d = cl->ctl->d;
	bool json = strcmp(arg, "json") == 0;
	struct ctl_wait *w;

	if (*arg && !json) {
		ctl_answer(cl, "error usage: queue [json]");
		return;
	}
	if (!(w = ctl_wait_new(cl))) {
		ctl_answer(cl, "error out of memory");
		return;
	}
	w->json = json;
	if (d->sched && sched_busy_ids(d->sched, &w->ids, &w->n) < 0) {
		ctl_wait_end(w);
		ctl_answer(cl, "error out of memory");
		return;
	}
	durable_run(d->durable, ctl_queue_work, ctl_queue_done, w, false);
}

static void ctl_show(struct ctl_client *cl, const char *id)
{
	struct ctl_msg m;
	struct ctl_out o;
	bool gone;

	if (ctl_find_for(cl, id, &m) < 0)
		return;
	if (!ctl_out_open(&o)) {
		ctl_msg_free(&m);
		ctl_answer(cl, "error out of memory");
		return;
	}
	gone = strcmp(m.status, "finished") == 0;
	mailq_show(o.f, m.env, m.status, gone ? NULL : cl->ctl->d->queue, m.area);
	ctl_msg_free(&m);
	ctl_out_send(cl, &o, "ok");
}

/* Machine-readable state of one message (smtprelay send-test polls it):
 * "status S", then per recipient "rcpt STATE ATTEMPTS ADDRESS" and,
 * when there is one, "reason TEXT". */
static void ctl_state(struct ctl_client *cl, const char *id)
{
	struct ctl_msg m;
	struct ctl_out o;

	if (ctl_find_for(cl, id, &m) < 0)
		return;
	if (!ctl_out_open(&o)) {
		ctl_msg_free(&m);
		ctl_answer(cl, "error out of memory");
		return;
	}
	fprintf(o.f, "status %s\n", m.status);
	for (size_t i = 0; i < m.env->nrcpts; i++) {
		const struct q_rcpt *r = &m.env->rcpts[i];

		fprintf(o.f, "rcpt %s %u %s\n", q_state_name(r->state), r->attempts, r->addr);
		if (r->last_reason)
			fprintf(o.f, "reason %s\n", r->last_reason);
	}
	ctl_msg_free(&m);
	ctl_out_send(cl, &o, "ok");
}

enum ctl_del { CTL_DEL_DONE, CTL_DEL_LATER, CTL_DEL_UNKNOWN, CTL_DEL_ERROR, CTL_DEL_TODO };

/* On a commit worker: remove queue/ID under its lock, or maildrop/ID when
 * it has not been picked up yet (the daemon owns maildrop/, sticky or
 * not).  The scheduler has already forgotten the message (sched_cancel). */
static enum ctl_del ctl_delete_spool(struct queue *q, const char *id, long uid, char *err,
    size_t errlen)
{
	int fd = queue_lock(q, id);

	if (fd < 0 && errno != ENOENT) {
		snprintf(err, errlen, "%s: %s", id, errno == EWOULDBLOCK ?
		    "being worked on by another process; try again" : strerror(errno));
		return CTL_DEL_ERROR;
	}
	if (fd >= 0) {
		int r = queue_remove(q, Q_QUEUE, id), e = errno;

		close(fd);
		if (r < 0) {
			snprintf(err, errlen, "%s: cannot remove: %s", id, strerror(e));
			return CTL_DEL_ERROR;
		}
	} else if (queue_remove(q, Q_MAILDROP, id) < 0) {
		if (errno == ENOENT) {
			snprintf(err, errlen, "%s: no such message in the queue", id);
			return CTL_DEL_UNKNOWN;
		}
		snprintf(err, errlen, "%s: cannot remove: %s", id, strerror(errno));
		return CTL_DEL_ERROR;
	}
	log_info("%s: removed by uid %ld", id, uid);
	return CTL_DEL_DONE;
}

/* Worker: every message the loop left to remove. */
static int ctl_delete_work(void *arg, char *err, size_t errlen)
{
	struct ctl_wait *w = arg;
	struct queue *q = w->q;

	(void)err;
	(void)errlen;
	for (size_t i = 0; i < w->n; i++) {
		if (w->outcome[i] != CTL_DEL_TODO)
			continue;
		w->outcome[i] = ctl_delete_spool(q, w->ids[i], w->uid, w->err, sizeof(w->err));
		if (w->all && w->outcome[i] == CTL_DEL_ERROR)
			log_warn("delete: %s", w->err);
	}
	return 0;
}

static void ctl_delete_answer(struct ctl_client *cl, const struct ctl_wait *w,
    const size_t count[CTL_DEL_TODO])
{
	if (!w->all && w->outcome[0] == CTL_DEL_DONE)
		ctl_answerf(cl, "ok %s: removed", w->ids[0]);
	else if (!w->all && w->outcome[0] == CTL_DEL_LATER)
		ctl_answerf(cl, "ok %s: in delivery: removed when the delivery in progress ends",
		    w->ids[0]);
	else if (!w->all)
		ctl_answerf(cl, "error %s", w->err);
	else if (count[CTL_DEL_ERROR])
		ctl_answerf(cl, "error %zu removed, %zu after their delivery ends, %zu could not be "
		    "removed (see the log)", count[CTL_DEL_DONE], count[CTL_DEL_LATER],
		    count[CTL_DEL_ERROR]);
	else
		ctl_answerf(cl, "ok %zu message%s removed, %zu more when their delivery ends",
		    count[CTL_DEL_DONE], count[CTL_DEL_DONE] == 1 ? "" : "s", count[CTL_DEL_LATER]);
}

/* Loop: a message that could not be removed is indexed again (it may
 * still be queued), then the answer. */
static void ctl_delete_done(void *arg, int error, const char *err)
{
	struct ctl_wait *w = arg;
	size_t count[CTL_DEL_TODO] = { 0 };
	struct ctl_client *cl;

	for (size_t i = 0; i < w->n; i++) {
		if (error && w->outcome[i] == CTL_DEL_TODO) {	/* the job could not run */
			w->outcome[i] = CTL_DEL_ERROR;
			snprintf(w->err, sizeof(w->err), "%s: %s", w->ids[i], err);
		}
		if (w->outcome[i] == CTL_DEL_ERROR && w->d->sched)
			sched_know(w->d->sched, w->ids[i]);
		count[w->outcome[i]]++;
	}
	if ((cl = w->cl))
		ctl_delete_answer(cl, w, count);
	ctl_wait_end(w);
}

/* Loop: the scheduler decides which messages wait for their delivery to
 * end (it removes those itself); the rest are removed off the loop. */
static void ctl_delete_start(struct ctl_wait *w)
{
	if (!(w->outcome = malloc(w->n ? w->n : 1))) {
		snprintf(w->err, sizeof(w->err), "out of memory");
		w->n = 0;
		w->all = false;
	}
	for (size_t i = 0; i < w->n; i++) {
		w->outcome[i] = CTL_DEL_TODO;
		if (w->d->sched && sched_cancel(w->d->sched, w->ids[i], w->uid) == 1) {
			log_info("%s: removal requested by uid %ld: after the delivery in progress",
			    w->ids[i], w->uid);
			w->outcome[i] = CTL_DEL_LATER;
		}
	}
	if (!w->outcome) {
		if (w->cl)
			ctl_answerf(w->cl, "error %s", w->err);
		ctl_wait_end(w);
		return;
	}
	durable_run(w->d->durable, ctl_delete_work, ctl_delete_done, w, false);
}

/* Worker: the ids of queue/ and of maildrop/. */
static int ctl_scan_work(void *arg, char *err, size_t errlen)
{
	struct ctl_wait *w = arg;
	char (*mids)[QID_SIZE] = NULL, (*all)[QID_SIZE];
	int nq = queue_scan(w->q, Q_QUEUE, &w->ids, 0), nm;

	if (nq < 0 || (nm = queue_scan(w->q, Q_MAILDROP, &mids, 0)) < 0) {
		int e = errno ? errno : EIO;

		snprintf(err, errlen, "%s: cannot list the queue: %s", queue_path(w->q),
		    strerror(e));
		return e;
	}
	if (nm > 0 && !(all = reallocarray(w->ids, (size_t)nq + (size_t)nm, QID_SIZE))) {
		free(mids);
		snprintf(err, errlen, "out of memory listing the queue");
		return ENOMEM;
	}
	if (nm > 0) {
		memcpy(all[nq], mids, (size_t)nm * QID_SIZE);
		w->ids = all;
	}
	free(mids);
	w->n = (size_t)nq + (size_t)(nm > 0 ? nm : 0);
	return 0;
}

static void ctl_scan_done(void *arg, int error, const char *err)
{
	struct ctl_wait *w = arg;

	if (error) {
		if (w->cl)
			ctl_answerf(w->cl, "error %s", err);
		ctl_wait_end(w);
		return;
	}
	ctl_delete_start(w);
}

static void ctl_delete(struct ctl_client *cl, const char *arg)
{
	struct ctl_wait *w;

	if (!ctl_privileged(cl)) {
		ctl_answerf(cl, "error permission denied: only root or %s may delete mail",
		    cl->ctl->d->conf->user);
		return;
	}
	if (!*arg) {
		ctl_answer(cl, "error usage: delete ID|all");
		return;
	}
	if (strcmp(arg, "all") != 0 && !queue_id_valid(arg)) {
		ctl_answerf(cl, "error %s: no such message in the queue", arg);
		return;
	}
	if (!(w = ctl_wait_new(cl))) {
		ctl_answer(cl, "error out of memory");
		return;
	}
	if ((w->all = strcmp(arg, "all") == 0)) {
		durable_run(w->d->durable, ctl_scan_work, ctl_scan_done, w, false);
		return;
	}
	if (!(w->ids = malloc(sizeof(*w->ids)))) {
		ctl_wait_end(w);
		ctl_answer(cl, "error out of memory");
		return;
	}
	snprintf(w->ids[0], sizeof(w->ids[0]), "%s", arg);
	w->n = 1;
	ctl_delete_start(w);
}

/* ---- status ---- */

static void ctl_duration(FILE *f, time_t secs)
{
	long d = (long)(secs / 86400), h = (long)(secs / 3600 % 24), m = (long)(secs / 60 % 60);

	if (d)
		fprintf(f, "%ldd ", d);
	if (d || h)
		fprintf(f, "%ldh ", h);
	if (d || h || m)
		fprintf(f, "%ldm ", m);
	fprintf(f, "%lds", (long)(secs % 60));
}

static void ctl_time(FILE *f, const char *label, time_t t)
{
	char buf[40];

	if (t <= 0) {
		fprintf(f, "%snever\n", label);
		return;
	}
	rfc3339_local(t, buf, sizeof(buf));
	fprintf(f, "%s%s\n", label, buf);
}

static const char *ctl_sh_host(const struct config *c, const char *name)
{
	for (size_t i = 0; i < c->nsmarthosts; i++)
		if (strcmp(c->smarthosts[i].name, name) == 0)
			return c->smarthosts[i].host;
	return "?";
}

/* A secret the service user could not read (a reload kept no old value):
 * that smarthost sends nothing until it is fixed (smtprelayd(8) "Delivery"). */
static void ctl_status_credentials(FILE *f, const struct config *c, const char *name)
{
	for (size_t i = 0; i < c->nsmarthosts; i++) {
		const struct conf_smarthost *sh = &c->smarthosts[i];
		const char *file = sh->password_file && !sh->password ? sh->password_file
		    : sh->oauth2_client_secret_file && !sh->oauth2_client_secret
		    ? sh->oauth2_client_secret_file : NULL;

		if (strcmp(sh->name, name) == 0 && file)
			fprintf(f, "  CREDENTIALS UNREADABLE: %s cannot be read by user %s: nothing "
			    "is sent to this smarthost, its mail stays queued (smtprelayd -t says "
			    "why)\n", file, c->user);
	}
}

static void ctl_status_smarthosts(FILE *f, struct daemon *d)
{
	struct relay_smarthost_status st[16];
	size_t n = d->relay && d->conf->nsmarthosts ? relay_status(d->relay, st, 16) : 0;

	if (n == 0)
		fputs("smarthosts: none configured (mail stays queued)\n", f);
	for (size_t i = 0; i < n; i++) {
		fprintf(f, "smarthost %s: %s, port %s, %u connection%s, ", st[i].name,
		    ctl_sh_host(d->conf, st[i].name), st[i].port ? st[i].port : "-",
		    st[i].connections, st[i].connections == 1 ? "" : "s");
		if (st[i].rate_per_sec > 0)
			fprintf(f, "rate %.2f/s\n", st[i].rate_per_sec);
		else
			fputs("rate unlimited\n", f);
		ctl_status_credentials(f, d->conf, st[i].name);
		ctl_time(f, "  last success: ", st[i].last_success);
		if (st[i].last_error[0])
			fprintf(f, "  last error: %s\n", st[i].last_error);
		if (st[i].last_error[0])
			ctl_time(f, "  last error at: ", st[i].last_error_time);
		if (st[i].held_until > 0)
			ctl_time(f, "  held until: ", st[i].held_until);
		metrics_status_smarthost(f, d, st[i].name);
	}
}

/* The text of `smtprelay status` from a snapshot of the metrics. */
static void ctl_status_text(FILE *f, struct ctl *c, const struct metrics_snap *s)
{
	struct daemon *d = c->d;

	fprintf(f, "pid: %ld\nversion: %s\n", (long)getpid(), PACKAGE_VERSION);
	ctl_time(f, "started: ", c->started);
	fputs("uptime: ", f);
	ctl_duration(f, time(NULL) - c->started);
	fprintf(f, "\nconfig: %s\nspool: %s\n", d->conf->path, queue_path(d->queue));
	metrics_status_counts(f, s);
	fputs("listen:", f);
	for (size_t i = 0; i < d->conf->nlisten; i++)
		fprintf(f, "%s%s", i ? ", " : " ", d->conf->listen[i].spec);
	fputs(d->conf->nlisten ? "\n" : " none\n", f);
	metrics_status_head(f, s);
	ctl_status_smarthosts(f, d);
}

/* The queue has been read on a commit worker: answer, if still asked. */
static void ctl_view_ready(void *arg, const struct metrics_snap *s)
{
	struct ctl_wait *w = arg;
	enum ctl_view view = w->view;
	struct ctl_client *cl = ctl_wait_end(w);
	struct ctl_out o;

	if (!cl)
		return;
	if (!s || !ctl_out_open(&o)) {
		ctl_answer(cl, "error out of memory");
		return;
	}
	if (view == CTL_VIEW_STATUS)
		ctl_status_text(o.f, cl->ctl, s);
	else if (view == CTL_VIEW_JSON)
		metrics_write_json(o.f, s);
	else
		metrics_write_prom(o.f, s);
	ctl_out_send(cl, &o, "ok");
}

/* status, "status json" and "metrics": the numbers of README "Monitoring"
 * (daemon/metrics.h), answered once the queue is read off the loop. */
static void ctl_view(struct ctl_client *cl, enum ctl_view view)
{
	struct ctl_wait *w = ctl_wait_new(cl);

	if (!w) {
		ctl_answer(cl, "error out of memory");
		return;
	}
	w->view = view;
	metrics_request(cl->ctl->d, ctl_view_ready, w);
}

static void ctl_status(struct ctl_client *cl, const char *arg)
{
	ctl_view(cl, strcmp(arg, "json") == 0 ? CTL_VIEW_JSON : CTL_VIEW_STATUS);
}

static void ctl_metrics(struct ctl_client *cl, const char *arg)
{
	ctl_view(cl, strcmp(arg, "json") == 0 ? CTL_VIEW_JSON : CTL_VIEW_PROM);
}

static const struct {
	const char *name;
	void (*fn)(struct ctl_client *cl, const char *arg);
} ctl_cmds[] = {
	{ "ping", ctl_ping }, { "flush", ctl_flush }, { "queue", ctl_queue },
	{ "show", ctl_show }, { "state", ctl_state }, { "delete", ctl_delete },
	{ "status", ctl_status }, { "metrics", ctl_metrics },
};

static void ctl_request(struct ctl_client *cl, const char *req)
{
	size_t n = strcspn(req, " ");
	const char *arg = req[n] ? req + n + 1 : "";

	log_debug("control: \"%s\" from uid %ld pid %ld", req, (long)cl->uid, (long)cl->pid);
	for (size_t i = 0; i < sizeof(ctl_cmds) / sizeof(ctl_cmds[0]); i++) {
		if (strlen(ctl_cmds[i].name) == n && strncmp(req, ctl_cmds[i].name, n) == 0) {
			ctl_cmds[i].fn(cl, arg);
			return;
		}
	}
	ctl_answer(cl, "error unknown request");
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
	if (!harden_clients_admit(c->limit, cl->uid)) {
		bufferevent_free(cl->bev);
		free(cl);
		return;
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
	struct sockaddr_un sun;

	if (usock_addr(&sun, queue_path(c->d->queue), CONTROL_SOCKET, err, errlen) < 0)
		return -1;
	snprintf(c->path, sizeof(c->path), "%s", sun.sun_path);
	if (ctl_clear_stale(&sun, err, errlen) < 0)
		return -1;
	/* Anyone may connect: requests are authorised by SO_PEERCRED. */
	return usock_listen(&sun, 0666, err, errlen);
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
	c->started = time(NULL);
	if (!(c->limit = harden_clients_new("control socket"))) {
		snprintf(err, errlen, "out of memory");
		free(c);
		return NULL;
	}
	if ((fd = ctl_bind(c, err, errlen)) < 0) {
		harden_clients_free(c->limit);
		free(c);
		return NULL;
	}
	c->lev = evconnlistener_new(d->base, ctl_accept_cb, c, LEV_OPT_CLOSE_ON_FREE, 0, fd);
	if (!c->lev || harden_guard(d->base, c->lev, c->path) < 0) {
		snprintf(err, errlen, "%s: cannot listen: %s", c->path, strerror(errno));
		if (c->lev)
			evconnlistener_free(c->lev);
		else
			close(fd);
		unlink(c->path);
		harden_clients_free(c->limit);
		free(c);
		return NULL;
	}
	if (d->sched)
		sched_set_finished(d->sched, ctl_finished, c);
	return c;
}

void ctl_free(struct ctl *c)
{
	if (!c)
		return;
	harden_unguard(c->lev);
	evconnlistener_free(c->lev);
	while (c->clients)
		ctl_client_free(c->clients);
	harden_clients_free(c->limit);
	if (c->d->sched)
		sched_set_finished(c->d->sched, NULL, NULL);
	for (size_t i = 0; i < CTL_RECENT; i++)
		q_envelope_free(c->recent[i]);
	unlink(c->path);
	free(c);
}
