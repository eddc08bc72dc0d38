#include "config.h"
#define LOG_ROLE LOG_ROLE_SMTPD
#include "daemon/listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "daemon/daemon.h"
#include "daemon/durable.h"
#include "daemon/sched.h"
#include "relay/stats.h"
#include "daemon/harden.h"
#include "lib/log.h"
#include "queue/submit.h"
#include "relay/maillog.h"
#include "smtp/server.h"

#define LISTENER_CHUNK 16384
#define LISTENER_HELO_MAX 255
#define LISTENER_GRACE 5		/* seconds to get the last reply out */
/* Full 64 KiB buffers a message may have waiting for the disk before its
 * session stops reading: 256 KiB of memory per session at most, enough to
 * keep a writer thread busy while the next one fills. */
#define LISTENER_SPILL_MAX 4

struct lsess {
	struct listener *l;
	struct lsess *prev, *next;
	struct bufferevent *bev;
	struct smtp_server *srv;
	struct submit *sub;
	struct lcommit *committing;	/* DATA being made durable off the loop */
	struct lspill *spill;		/* the current message's writes, once it has any */
	bool commit_waiting;		/* final dot seen: commit when the spill is done */
	struct event *timer;
	char ip[INET6_ADDRSTRLEN];
	char name[16];			/* "localhost" for loopback, else "unknown" (no rDNS) */
	bool allowed;
	bool eof;
	bool eof_told;			/* smtp_server_eof called (deferred while paused) */
	time_t deadline;		/* monotonic: 421 when no message done by then */
};

struct listener {
	struct daemon *d;
	struct evconnlistener **levs;
	char **specs;			/* what is bound, to notice a changed `listen` */
	size_t n;
	struct lsess *sessions;
	unsigned nsessions;
	unsigned ndenied;		/* sessions of peers outside allow_networks */
};

/* One message on its way to the disk; outlives its session if need be,
 * since a message that reached the disk must be delivered all the same. */
struct lcommit {
	struct daemon *d;
	struct lsess *s;		/* NULL once the session is gone */
	struct qwriter *w;
	char id[QID_SIZE];
	char client[INET6_ADDRSTRLEN + 24];	/* "localhost[127.0.0.1]" */
	struct maillog_summary sum;	/* read back by the commit thread, logged on the loop */
};

/* A big message's full buffers on their way to tmp.ID (qwriter_spill), on
 * the commit stage's workers, one job at a time per message.  It outlives
 * its session if need be: a writer is never freed while a job uses it. */
struct lspill {
	struct daemon *d;
	struct lsess *s;		/* NULL once the session let go of the message */
	struct submit *sub;		/* the message, owned here once s is NULL */
	struct qwriter *w;
	bool busy;			/* a job is queued or running */
	bool drop;			/* the job is the message's abort */
};

static void lsess_free(struct lsess *s);
static void lsess_pump(struct lsess *s);
static void lsess_set_deadline(struct lsess *s);
static void lsess_drop(struct lsess *s);
static void lsess_spill(struct lsess *s);

/* ---- the sink: smtp_server -> queue/submit ---- */

static void lsess_reply(struct smtp_reply *r, const struct submit_error *e)
{
	const char *enh = e->enhanced[0] ? e->enhanced : "4.3.0";

	r->code = e->smtp_code ? e->smtp_code : 451;
	/* A local storage problem (4.3.x) is the log's business: the text names
	 * spool files, which a remote client has no need to learn. */
	if (strcmp(enh, "4.3.1") == 0)
		snprintf(r->text, sizeof(r->text), "4.3.1 Insufficient system storage");
	else if (strncmp(enh, "4.3.", 4) == 0)
		snprintf(r->text, sizeof(r->text), "%.11s Local error in processing", enh);
	else
		snprintf(r->text, sizeof(r->text), "%.11s %.240s", enh, e->text);
}

static int lsess_rcpt(void *ctx, const char *rcpt, struct smtp_reply *fail)
{
	struct lsess *s = ctx;
	struct submit_error e = { 0 };
	struct strv list = { 0 };

	if (submit_resolve(s->l->d->conf, rcpt, &list, &e) < 0) {
		lsess_reply(fail, &e);
		return -1;
	}
	strv_free(&list);
	return 0;
}

/* Postfix's trace: "from HELO (localhost [127.0.0.1])". */
static void lsess_received_from(const struct lsess *s, const char *helo, char *out, size_t len)
{
	char h[LISTENER_HELO_MAX + 1];
	size_t i = 0;

	for (const char *p = helo ? helo : "unknown"; *p && i < LISTENER_HELO_MAX; p++)
		h[i++] = *p == '(' || *p == ')' || *p == '\\' ? '_' : *p;
	h[i] = '\0';
	snprintf(out, len, "%s (%s [%s])", h, s->name, s->ip);
}

static int lsess_begin(void *ctx, const struct smtp_envelope_in *env, struct smtp_reply *fail)
{
	struct lsess *s = ctx;
	struct submit_error e = { 0 };
	char from[LISTENER_HELO_MAX + 100], origin[INET6_ADDRSTRLEN + 16];
	struct submit_params p = {
		.conf = s->l->d->conf, .queue = s->l->d->queue, .area = Q_QUEUE,
		.sender = env->sender, .rcpts = env->rcpts, .nrcpts = env->nrcpts,
		.received_from = from, .protocol = env->esmtp ? "ESMTP" : "SMTP",
		.notify_each = env->notify, .orcpts = env->orcpts, .envid = env->envid,
		.ret = env->ret == 1 ? SMTP_RET_FULL : env->ret == 2 ? SMTP_RET_HDRS : SMTP_RET_DEFAULT,
		.eightbit = env->eightbit, .smtputf8 = env->smtputf8,
		.uid = -1, .origin = origin,
		.remote_client = strcmp(s->name, "localhost") != 0, .async_writer = true,
	};

	lsess_received_from(s, env->helo, from, sizeof(from));
	snprintf(origin, sizeof(origin), "smtp [%s]", s->ip);
	s->sub = submit_begin(&p, &e);
	if (!s->sub) {
		log_warn("client=%s[%s]: %d %s", s->name, s->ip, e.smtp_code, e.text);
		lsess_reply(fail, &e);
		return -1;
	}
	return 0;
}

static int lsess_write(void *ctx, const char *data, size_t len, struct smtp_reply *fail)
{
	struct lsess *s = ctx;
	struct submit_error e = { 0 };

	if (submit_write(s->sub, data, len, &e) < 0) {
		lsess_drop(s);
		log_warn("client=%s[%s]: %d %s", s->name, s->ip, e.smtp_code, e.text);
		lsess_reply(fail, &e);
		return -1;
	}
	lsess_spill(s);
	return 0;
}

/* The message is durable: log it as Postfix does and hand it to delivery. */
static void lsess_queued(struct daemon *d, const struct lcommit *c)
{
	log_info("%s: client=%s", c->id, c->client);
	maillog_summary_log(&c->sum, NULL);
	stats_received(STATS_SRC_SMTP);
	if (sched_add(d->sched, c->id) < 0)
		log_err("%s: out of memory scheduling (delivered at the next queue scan)", c->id);
}

static int lcommit_stage(void *arg, int *dirfd, char *err, size_t errlen)
{
	struct lcommit *c = arg;

	if (qwriter_stage_early(c->w, err, errlen) < 0)
		return errno ? errno : EIO;
	*dirfd = qwriter_dirfd(c->w);
	return 0;
}

static int lcommit_flush(void *arg, char *err, size_t errlen)
{
	struct lcommit *c = arg;

	return qwriter_sync(c->w, err, errlen) < 0 ? (errno ? errno : EIO) : 0;
}

static int lcommit_settle(void *arg, int error, char *err, size_t errlen)
{
	struct lcommit *c = arg;
	int r = qwriter_settle(c->w, error, err, errlen);

	c->w = NULL;
	if (r < 0)
		return errno ? errno : EIO;
	maillog_summary_read(c->d->queue, c->id, &c->sum);
	return 0;
}

static void lcommit_done(void *arg, int error, const char *err)
{
	struct lcommit *c = arg;
	struct submit_error e = { 0 };
	struct smtp_reply fail = { 0 };
	struct lsess *s = c->s;

	if (error) {
		submit_spool_failure(&e, error, err);
		log_warn("client=%s: %d %s", c->client, e.smtp_code, e.text);
		lsess_reply(&fail, &e);
	} else {
		lsess_queued(c->d, c);
	}
	if (s) {
		s->committing = NULL;
		smtp_server_commit_done(s->srv, error ? NULL : c->id, &fail);
		lsess_pump(s);
	}
	free(c);
}

static const struct commit_ops lcommit_ops = {
	.stage = lcommit_stage, .settle = lcommit_settle, .done = lcommit_done,
	.flush = lcommit_flush,
};

/* Without the stage (or its memory): commit here, as the front ends do. */
static int lsess_commit_now(struct lcommit *c, struct smtp_reply *fail)
{
	struct submit_error e = { 0 };
	char err[256];
	int r = qwriter_commit(c->w, err, sizeof(err));

	if (r == 0)
		maillog_summary_read(c->d->queue, c->id, &c->sum);
	if (r < 0) {
		submit_spool_failure(&e, errno, err);
		log_warn("client=%s: %d %s", c->client, e.smtp_code, e.text);
		lsess_reply(fail, &e);
	} else {
		lsess_queued(c->d, c);
	}
	free(c);
	return r;
}

static int lsess_commit_go(struct lsess *s, char *queue_id, size_t idlen, struct smtp_reply *fail)
{
	struct submit_error e = { 0 };
	struct lcommit *c = calloc(1, sizeof(*c));

	/* No spill runs: the commit's stage writes what is still queued. */
	free(s->spill);
	s->spill = NULL;
	if (c)
		c->w = submit_finish(s->sub, c->id, &e);
	else
		submit_abort(s->sub);
	s->sub = NULL;
	if (!c || !c->w) {
		if (!c)
			submit_spool_failure(&e, ENOMEM, "accepting a message");
		log_warn("client=%s[%s]: %d %s", s->name, s->ip, e.smtp_code, e.text);
		lsess_reply(fail, &e);
		free(c);
		return -1;
	}
	lsess_set_deadline(s);
	c->d = s->l->d;
	snprintf(c->client, sizeof(c->client), "%s[%s]", s->name, s->ip);
	snprintf(queue_id, idlen, "%s", c->id);
	if (durable_submit(c->d->durable, &lcommit_ops, c, false) < 0)
		return lsess_commit_now(c, fail);
	c->s = s;
	s->committing = c;
	return 1;
}

/* ---- big messages: full buffers written off the loop ---- */

static int lspill_stage(void *arg, int *dirfd, char *err, size_t errlen)
{
	struct lspill *sp = arg;

	(void)dirfd;
	(void)err;
	(void)errlen;
	if (sp->drop) {
		/* Given up: its tmp.ID is closed and unlinked here, not on the loop. */
		submit_abort(sp->sub);
		sp->sub = NULL;
		return 0;
	}
	/* An error stays in the writer: the message fails with it (452/451)
	 * at its next write or at its commit, as a failed write() would. */
	(void)qwriter_spill(sp->w);
	return 0;
}

static void lspill_done(void *arg, int error, const char *err);
static const struct commit_ops lspill_ops = { .stage = lspill_stage, .done = lspill_done };

/* The session let go of the message: freed off the loop once no spill
 * uses its writer (lspill_done comes back here). */
static void lspill_release(struct lspill *sp)
{
	sp->s = NULL;
	if (sp->busy)
		return;
	sp->drop = true;
	sp->busy = true;
	if (durable_submit(sp->d->durable, &lspill_ops, sp, false) < 0) {
		submit_abort(sp->sub);
		free(sp);
	}
}

/* The final dot came while chunks were being written: commit now. */
static void lsess_commit_resume(struct lsess *s)
{
	char id[SMTP_SERVER_ID_SIZE];
	struct smtp_reply fail = { 0 };
	int r;

	s->commit_waiting = false;
	r = lsess_commit_go(s, id, sizeof(id), &fail);
	if (r != 1)
		smtp_server_commit_done(s->srv, r == 0 ? id : NULL, &fail);
	lsess_pump(s);
}

static void lspill_done(void *arg, int error, const char *err)
{
	struct lspill *sp = arg;
	struct lsess *s = sp->s;

	(void)error;
	(void)err;
	sp->busy = false;
	if (sp->drop) {
		free(sp);
		return;
	}
	if (!s) {
		lspill_release(sp);
		return;
	}
	if (s->commit_waiting) {
		lsess_commit_resume(s);
		return;
	}
	lsess_spill(s);		/* what was queued meanwhile */
	lsess_pump(s);		/* reading again if it was paused */
}

/* Queued chunks go to the disk, one job at a time per message. */
static void lsess_spill(struct lsess *s)
{
	struct qwriter *w = s->sub ? submit_writer(s->sub) : NULL;
	struct lspill *sp = s->spill;

	if (!w || qwriter_queued(w) == 0 || (sp && sp->busy))
		return;
	if (!sp && (sp = calloc(1, sizeof(*sp)))) {
		sp->d = s->l->d;
		sp->s = s;
		sp->w = w;
		s->spill = sp;
	}
	if (sp) {
		sp->busy = true;
		if (durable_submit(sp->d->durable, &lspill_ops, sp, false) == 0)
			return;
		sp->busy = false;
	}
	/* No stage (unit tests) or no memory: written here, as the front ends do. */
	(void)qwriter_spill(w);
}

/* The disk is behind this message: stop reading its client until a spill
 * is done, so that a fast sender cannot fill the daemon's memory. */
static bool lsess_paused(const struct lsess *s)
{
	return s->spill && s->spill->busy && qwriter_queued(s->spill->w) >= LISTENER_SPILL_MAX;
}

/* The session lets go of its message (write error, RSET, disconnect). */
static void lsess_drop(struct lsess *s)
{
	struct lspill *sp = s->spill;

	s->spill = NULL;
	s->commit_waiting = false;
	if (sp) {
		sp->sub = s->sub;
		s->sub = NULL;
		lspill_release(sp);
		return;
	}
	submit_abort(s->sub);
	s->sub = NULL;
}

static int lsess_commit(void *ctx, char *queue_id, size_t idlen, struct smtp_reply *fail)
{
	struct lsess *s = ctx;

	if (s->spill && s->spill->busy) {
		/* Its last chunks are on their way: lspill_done commits. */
		snprintf(queue_id, idlen, "%s", submit_id(s->sub));
		lsess_set_deadline(s);
		s->commit_waiting = true;
		return 1;
	}
	return lsess_commit_go(s, queue_id, idlen, fail);
}

static void lsess_abort(void *ctx)
{
	struct lsess *s = ctx;

	if (s->sub)
		lsess_drop(s);
}

static const struct smtp_server_sink lsess_sink = {
	.rcpt = lsess_rcpt, .begin = lsess_begin, .write = lsess_write,
	.commit = lsess_commit, .abort = lsess_abort,
};

/* ---- one session over a bufferevent ---- */

/* Replies go to the socket as long as the client keeps reading them. */
static void lsess_move_output(struct lsess *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	const char *data;
	size_t len;

	while (evbuffer_get_length(out) < LISTENER_OUT_MAX &&
	    (data = smtp_server_output(s->srv, &len)) && len > 0) {
		if (len > LISTENER_OUT_MAX)
			len = LISTENER_OUT_MAX;
		if (bufferevent_write(s->bev, data, len) < 0)
			break;
		smtp_server_consume_output(s->srv, len);
	}
}

static bool lsess_flushed(struct lsess *s)
{
	size_t len = 0;

	smtp_server_output(s->srv, &len);
	return len == 0 && evbuffer_get_length(bufferevent_get_output(s->bev)) == 0;
}

static void lsess_feed(struct lsess *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	char chunk[LISTENER_CHUNK];
	int n;

	for (;;) {
		lsess_move_output(s);
		if (smtp_server_closing(s->srv) || !smtp_server_want_input(s->srv) ||
		    lsess_paused(s) || evbuffer_get_length(in) == 0)
			break;
		n = evbuffer_remove(in, chunk, sizeof(chunk));
		if (n <= 0)
			break;
		if (smtp_server_input(s->srv, chunk, (size_t)n) < 0) {
			lsess_move_output(s);
			break;
		}
	}
}

/* Move bytes both ways; close once the session is over and flushed.
 * The session may be freed on return. */
static void lsess_pump(struct lsess *s)
{
	lsess_feed(s);
	if (lsess_paused(s)) {
		/* lspill_done pumps again; an end of input waits for what is
		 * still unread before it. */
		bufferevent_disable(s->bev, EV_READ);
		return;
	}
	if (s->eof && !s->eof_told) {
		s->eof_told = true;
		smtp_server_eof(s->srv);
		lsess_feed(s);
	}
	if (smtp_server_committing(s->srv)) {
		/* Nothing to read until the disk answers; the client waits for us. */
		bufferevent_disable(s->bev, EV_READ);
		return;
	}
	if (smtp_server_closing(s->srv) || s->eof) {
		struct timeval grace = { LISTENER_GRACE, 0 };

		bufferevent_disable(s->bev, EV_READ);
		if (lsess_flushed(s))
			lsess_free(s);
		else
			evtimer_add(s->timer, &grace);
		return;
	}
	if (smtp_server_want_input(s->srv))
		bufferevent_enable(s->bev, EV_READ);
	else
		bufferevent_disable(s->bev, EV_READ);
}

static time_t lsess_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* A new message may take LISTENER_SESSION_FACTOR x smtpd_timeout. */
static void lsess_set_deadline(struct lsess *s)
{
	s->deadline = lsess_now() + (time_t)s->l->d->conf->smtpd_timeout * LISTENER_SESSION_FACTOR;
}

static void lsess_arm_idle(struct lsess *s)
{
	struct timeval tv = { s->l->d->conf->smtpd_timeout, 0 };
	time_t left = s->deadline - lsess_now();

	if (left < tv.tv_sec)
		tv.tv_sec = left > 0 ? left : 0;
	/* A denied peer's clock is not reset by its commands. */
	if (s->allowed)
		evtimer_add(s->timer, &tv);
}

static void lsess_read_cb(struct bufferevent *bev, void *arg)
{
	struct lsess *s = arg;

	(void)bev;
	lsess_arm_idle(s);
	lsess_pump(s);
}

static void lsess_write_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	lsess_pump(arg);
}

static void lsess_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct lsess *s = arg;

	(void)bev;
	if (what & BEV_EVENT_EOF) {
		/* The client is done sending; answer what it sent, then close
		 * (lsess_pump tells the server once all of it is read). */
		s->eof = true;
		lsess_pump(s);
		return;
	}
	lsess_free(s);
}

static void lsess_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lsess *s = arg;
	struct timeval grace = { LISTENER_GRACE, 0 };

	(void)fd;
	(void)what;
	if (smtp_server_closing(s->srv)) {
		/* Even the goodbye is not being read: give up. */
		lsess_free(s);
		return;
	}
	if (s->allowed && lsess_now() >= s->deadline)
		log_info("timeout from %s[%s]: no message completed in %d x smtpd_timeout",
		    s->name, s->ip, LISTENER_SESSION_FACTOR);
	else
		log_info("timeout after %s from %s[%s]", s->allowed ? "idling" : "denied access",
		    s->name, s->ip);
	smtp_server_timeout(s->srv);
	lsess_move_output(s);
	bufferevent_disable(s->bev, EV_READ);
	if (lsess_flushed(s)) {
		lsess_free(s);
		return;
	}
	/* The write callback closes once the 421 is out; this is the backstop. */
	evtimer_add(s->timer, &grace);
}

static void lsess_free(struct lsess *s)
{
	struct listener *l = s->l;

	if (s->prev)
		s->prev->next = s->next;
	else
		l->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	if (s->allowed)
		l->nsessions--;
	else
		l->ndenied--;
	if (s->ip[0])
		log_info("disconnect from %s[%s]", s->name, s->ip);
	/* Frees the transaction too: the sink's abort drops unacknowledged mail. */
	smtp_server_free(s->srv);
	lsess_abort(s);
	if (s->committing)
		s->committing->s = NULL;
	if (s->timer)
		event_free(s->timer);
	bufferevent_free(s->bev);
	free(s);
}

static bool lsess_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

static bool lsess_allowed(const struct config *c, const struct sockaddr *sa)
{
	for (size_t i = 0; i < c->nallow; i++)
		if (conf_cidr_match(&c->allow[i], sa))
			return true;
	return false;
}

static void lsess_peer(struct lsess *s, const struct sockaddr *sa)
{
	const void *a = sa->sa_family == AF_INET6 ?
	    (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr :
	    (const void *)&((const struct sockaddr_in *)sa)->sin_addr;

	if (!inet_ntop(sa->sa_family, a, s->ip, sizeof(s->ip)))
		snprintf(s->ip, sizeof(s->ip), "unknown");
	snprintf(s->name, sizeof(s->name), "%s", lsess_loopback(sa) ? "localhost" : "unknown");
}

static int lsess_start(struct lsess *s, evutil_socket_t fd, const struct sockaddr *sa)
{
	const struct config *c = s->l->d->conf;
	struct smtp_server_params sp = {
		.hostname = c->hostname, .max_message_size = c->max_message_size,
		.max_recipients = c->max_recipients, .sink = &lsess_sink, .sink_ctx = s,
	};
	struct timeval denied = { LISTENER_DENIED_TIMEOUT, 0 };

	lsess_peer(s, sa);
	s->allowed = lsess_allowed(c, sa);
	lsess_set_deadline(s);
	sp.peer_allowed = s->allowed;
	if (!(s->bev = bufferevent_socket_new(s->l->d->base, fd, BEV_OPT_CLOSE_ON_FREE))) {
		close(fd);
		return -1;
	}
	if (!(s->timer = evtimer_new(s->l->d->base, lsess_timer_cb, s)) ||
	    !(s->srv = smtp_server_new(&sp)))
		return -1;
	bufferevent_setcb(s->bev, lsess_read_cb, lsess_write_cb, lsess_event_cb, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, LISTENER_CHUNK * 4);
	bufferevent_setwatermark(s->bev, EV_WRITE, LISTENER_OUT_MAX / 4, 0);
	log_info("connect from %s[%s]%s", s->name, s->ip, s->allowed ? "" :
	    ": not in allow_networks");
	if (s->allowed)
		lsess_arm_idle(s);
	else
		evtimer_add(s->timer, &denied);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	lsess_pump(s);
	return 0;
}

/* Over max_connections: a one-line refusal written straight to the socket
 * (best effort; a client that cannot take 60 bytes loses it). */
static void listener_refuse(struct listener *l, evutil_socket_t fd, const struct sockaddr *sa)
{
	char line[400];
	struct lsess tmp;
	int n;

	lsess_peer(&tmp, sa);
	n = snprintf(line, sizeof(line), "421 4.7.0 %s Error: too many connections\r\n",
	    l->d->conf->hostname);
	if (n > 0 && send(fd, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1,
	    MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		log_debug("421 to %s: %s", tmp.ip, strerror(errno));
	log_warn("too many connections (max_connections = %u): refused %s[%s]",
	    l->d->conf->max_connections, tmp.name, tmp.ip);
	close(fd);
}

static void listener_accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct listener *l = arg;
	struct lsess *s;
	bool allowed;

	(void)lev;
	(void)salen;
	if (l->d->stopping) {
		close(fd);
		return;
	}
	allowed = lsess_allowed(l->d->conf, sa);
	if (!allowed && l->ndenied >= LISTENER_DENIED_MAX) {
		/* Their own small budget: they never take max_connections slots. */
		log_debug("peer outside allow_networks dropped: %u already waiting",
		    l->ndenied);
		close(fd);
		return;
	}
	if (allowed && l->nsessions >= l->d->conf->max_connections) {
		listener_refuse(l, fd, sa);
		return;
	}
	if (!(s = calloc(1, sizeof(*s)))) {
		close(fd);
		return;
	}
	s->l = l;
	s->next = l->sessions;
	if (l->sessions)
		l->sessions->prev = s;
	l->sessions = s;
	if (allowed)
		l->nsessions++;
	else
		l->ndenied++;
	if (lsess_start(s, fd, sa) < 0) {
		log_err("out of memory accepting a connection");
		if (!s->bev) {
			/* lsess_start closed fd; give lsess_free something to free. */
			l->sessions = s->next;
			if (s->next)
				s->next->prev = NULL;
			if (allowed)
				l->nsessions--;
			else
				l->ndenied--;
			free(s);
			return;
		}
		lsess_free(s);
	}
}

static const char *listener_hint(int e)
{
	if (e == EADDRINUSE)
		return " (is another MTA running? stop it or change listen)";
	if (e == EACCES)
		return " (ports below 1024 need root or CAP_NET_BIND_SERVICE)";
	if (e == EADDRNOTAVAIL)
		return " (no such local address on this host: fix or remove it in listen)";
	if (e == EAFNOSUPPORT)
		return " (this host has that address family disabled: remove it from listen)";
	return "";
}

static int listener_bind(const struct conf_listen *cl, char *err, size_t errlen)
{
	const struct sockaddr *sa = (const struct sockaddr *)&cl->addr;
	int one = 1, fd, e;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto fail;
	if (sa->sa_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, sa, cl->addrlen) < 0 || listen(fd, 128) < 0)
		goto fail;
	return fd;
fail:
	e = errno;
	if (fd >= 0)
		close(fd);
	snprintf(err, errlen, "cannot listen on %s: %s%s", cl->spec, strerror(e), listener_hint(e));
	errno = e;
	return -1;
}

/* The default listen's [::1]:25 on a host without IPv6 (disabled by sysctl
 * or on the kernel command line, common on cloud images) is skipped rather
 * than stopping the relay; an address the admin listed never is. */
static bool listener_skippable(const struct conf_listen *cl, int e)
{
	if (!cl->optional || (e != EAFNOSUPPORT && e != EADDRNOTAVAIL && e != EPROTONOSUPPORT))
		return false;
	log_warn("listen: default address %s skipped: %s (IPv6 unavailable on this host); "
	    "listening on IPv4 only. Set listen = {\"127.0.0.1:25\"} to silence this",
	    cl->spec, strerror(e));
	return true;
}

struct listener *listener_new(struct daemon *d, char *err, size_t errlen)
{
	const struct config *c = d->conf;
	struct listener *l = calloc(1, sizeof(*l));

	if (!l || (c->nlisten && (!(l->levs = calloc(c->nlisten, sizeof(*l->levs))) ||
	    !(l->specs = calloc(c->nlisten, sizeof(*l->specs)))))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	l->d = d;
	for (size_t i = 0; i < c->nlisten; i++) {
		int fd = listener_bind(&c->listen[i], err, errlen);

		if (fd < 0 && listener_skippable(&c->listen[i], errno)) {
			l->specs[i] = strdup(c->listen[i].spec);
			l->n = i + 1;
			if (!l->specs[i])
				goto fail;
			continue;
		}
		if (fd < 0)
			goto fail;
		l->levs[i] = evconnlistener_new(d->base, listener_accept_cb, l,
		    LEV_OPT_CLOSE_ON_FREE, 0, fd);
		l->specs[i] = strdup(c->listen[i].spec);
		if (!l->levs[i] || !l->specs[i]) {
			if (!l->levs[i])
				close(fd);
			snprintf(err, errlen, "cannot listen on %s: out of memory", c->listen[i].spec);
			l->n = i + 1;
			goto fail;
		}
		/* EMFILE and the like: pause, keep serving the sessions we have. */
		if (harden_guard(d->base, l->levs[i], c->listen[i].spec) < 0) {
			snprintf(err, errlen, "cannot listen on %s: out of memory", c->listen[i].spec);
			l->n = i + 1;
			goto fail;
		}
		l->n = i + 1;
		log_info("listening on %s", c->listen[i].spec);
	}
	return l;
fail:
	listener_free(l);
	return NULL;
}

void listener_disable(struct listener *l)
{
	for (size_t i = 0; l && i < l->n; i++)
		if (l->levs[i]) {
			harden_unguard(l->levs[i]);	/* no resuming after this */
			evconnlistener_disable(l->levs[i]);
		}
}

void listener_free(struct listener *l)
{
	if (!l)
		return;
	while (l->sessions)
		lsess_free(l->sessions);
	for (size_t i = 0; i < l->n; i++) {
		if (l->levs && l->levs[i]) {
			harden_unguard(l->levs[i]);
			evconnlistener_free(l->levs[i]);
		}
		if (l->specs)
			free(l->specs[i]);
	}
	free(l->levs);
	free(l->specs);
	free(l);
}

unsigned listener_sessions(const struct listener *l)
{
	return l ? l->nsessions : 0;
}

bool listener_changed(const struct listener *l, const struct config *c)
{
	if (c->nlisten != l->n)
		return true;
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->specs[i], c->listen[i].spec) != 0)
			return true;
	return false;
}
