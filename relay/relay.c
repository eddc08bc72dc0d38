#include "config.h"
#define LOG_ROLE LOG_ROLE_SMTP
#include "relay/relay.h"
#include "relay/signer.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/time.h>
#include <unistd.h>

#include "relay/conn.h"
#include "relay/cred.h"
#include "relay/oauth2.h"
#include "relay/ratelimit.h"
#include "relay/replyclass.h"
#include "relay/secret.h"
#include "relay/stats.h"
#include "relay/tls.h"
#include "relay/maillog.h"
#include "lib/log.h"

#define RELAY_REASON_MAX 1024
#define RELAY_PEER_MAX 320
#define RELAY_SHUTDOWN_REASON "delivery interrupted by shutdown"

/* Log lines (smtprelayd(8) "LOGGING"): Postfix's delivery line (relay/maillog.h); TLS
 * details are on their own line, once per connection. */

struct relay_rcpt {
	size_t idx;			/* into env->rcpts */
	bool done;
	enum q_rcpt_state state;
	char *reason;
};

struct relay_conn;
struct relay_sh;

struct relay_msg {
	struct relay *r;
	struct q_envelope *env;
	relay_done_fn done;
	void *arg;
	struct relay_rcpt *rcpts;
	size_t nrcpts;
	size_t nopen;			/* recipients without an outcome */
	struct relay_sh *sh;		/* whose FIFO it waits in */
	double throttled_since;		/* monotonic; 0 = never held */
	bool reuse_retried;
	double t_active;		/* wall clock: handed to the relay (delays= a/b) */
	double t_send;			/* the transaction started; 0 = not yet */
	double setup;			/* its connection's setup time, 0 when reused */
	char reason[RELAY_REASON_MAX];	/* the last connection-level failure */
	char relay[RELAY_PEER_MAX];	/* its relay= text */
	char shname[72];		/* the smarthost it was last queued for */
	/* The transaction in progress: */
	struct relay_conn *rc;
	const char **addrs;
	const char **orcpts;
	unsigned *notify;
	size_t *map;			/* transaction recipient -> rcpts[] */
	size_t nsend;
	TAILQ_ENTRY(relay_msg) link;
};
TAILQ_HEAD(relay_msgq, relay_msg);

struct relay_conn {
	struct relay_sh *sh;
	struct conn *c;			/* NULL while the credentials are fetched */
	struct cred_req *cred;		/* password_command or OAuth2 token on its way */
	size_t walk;			/* position in the port order */
	size_t port;			/* index into sh->conf->ports */
	bool ready;			/* the session came up */
	bool idle;
	bool quitting;
	unsigned nsent;
	struct relay_msg *msg;
	struct event *idle_ev;
	LIST_ENTRY(relay_conn) link;
};

struct relay_sh {
	struct relay *r;
	const struct conf_smarthost *conf;
	size_t index;
	bool retired;			/* from a config replaced by reload */
	SSL_CTX *ctx;
	char ctx_err[256];
	size_t sticky;
	struct relay_msgq waiting;
	size_t nwaiting;
	LIST_HEAD(, relay_conn) conns;
	unsigned nconns, nconnecting, nworking;
	struct ratelimit rl;
	double hold_until;		/* monotonic */
	double down_until;
	struct event *ev;		/* dispatch: kicked, or a timer */
	time_t last_success, last_error_time, held_until_wall;
	char last_error[256];
	char portname[32];
	LIST_ENTRY(relay_sh) retired_link;
};

struct relay {
	struct event_base *base;
	struct evdns_base *dns;
	struct queue *q;
	const struct config *conf;
	struct relay_sh **shs;
	size_t nshs;
	LIST_HEAD(, relay_sh) retired;
	struct relay_msgq finished;
	struct event *finish_ev;
	size_t inflight;
	struct relay_tuning tune;
	struct oauth2 *oauth2;		/* access tokens for oauth2_token_url */
	const struct signer *signer;	/* DKIM keys; NULL = none */
	bool shutting_down;
	bool idle_called;
	struct event *grace_ev;
	void (*idle)(void *);
	void *idle_arg;
};

static void relay_sh_dispatch(struct relay_sh *sh);
static void relay_route(struct relay_msg *m, size_t start);
static int relay_open(struct relay_sh *sh, size_t walk);

/* ---- small helpers ---- */

static double relay_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double relay_wall(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void relay_arm(struct event *ev, double secs)
{
	struct timeval tv;

	if (secs < 0)
		secs = 0;
	tv.tv_sec = (time_t)secs;
	tv.tv_usec = (suseconds_t)((secs - (double)tv.tv_sec) * 1e6) + 1;
	evtimer_add(ev, &tv);
}

static bool relay_contains_nocase(const char *hay, const char *needle)
{
	size_t n = strlen(needle);

	for (; *hay; hay++) {
		size_t i = 0;

		while (i < n && hay[i] && tolower((unsigned char)hay[i]) == needle[i])
			i++;
		if (i == n)
			return true;
	}
	return false;
}

/* SES "454 Throttling failure", 421/451 rate or concurrency limits. */
static bool relay_is_throttle(int code, const char *text)
{
	static const char *const words[] = {
		"throttl", "rate", "too many", "concurrenc", "slow down", "limit exceeded",
	};

	if (code != 421 && code != 451 && code != 454)
		return false;
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (relay_contains_nocase(text, words[i]))
			return true;
	return false;
}

static const char *relay_mode_name(enum conf_tls_mode m)
{
	switch (m) {
	case CONF_TLS_STARTTLS: return "starttls";
	case CONF_TLS_IMPLICIT: return "tls";
	case CONF_TLS_NONE: return "none";
	}
	return "?";
}

static void relay_copy(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src ? src : "");
}

/* ---- messages ---- */

static void relay_msg_free(struct relay_msg *m)
{
	for (size_t i = 0; i < m->nrcpts; i++)
		free(m->rcpts[i].reason);
	free(m->rcpts);
	free(m->addrs);
	free(m->orcpts);
	free(m->notify);
	free(m->map);
	free(m);
}

static void relay_sh_kick(struct relay_sh *sh)
{
	event_active(sh->ev, EV_TIMEOUT, 1);
}

/* One log line per recipient outcome (smtprelayd(8) "LOGGING"). */
static void relay_log_outcome(const struct relay_msg *m, const struct relay_rcpt *rr,
    const char *relay, const char *tls)
{
	static const char *const words[] = {
		[Q_PENDING] = "deferred", [Q_DEFERRED] = "deferred",
		[Q_DELIVERED] = "sent", [Q_FAILED] = "bounced",
	};
	static const char classes[] = { [Q_PENDING] = '4', [Q_DEFERRED] = '4',
		[Q_DELIVERED] = '2', [Q_FAILED] = '5' };
	double now = relay_wall();
	double arrival = m->env->arrival_us ? (double)m->env->arrival_us / 1e6 : now;
	struct maillog_delivery d = {
		.id = m->env->id, .to = m->env->rcpts[rr->idx].addr, .relay = relay,
		.orig_to = m->env->rcpts[rr->idx].orcpt, .delay = now - arrival,
		.status = words[rr->state], .reason = rr->reason,
		.delays = { m->t_active - arrival },
	};
	char dsn[16];

	(void)tls;	/* logged once per connection by relay_on_ready */
	if (m->t_send > 0) {
		d.delays[1] = m->t_send - m->t_active - m->setup;
		d.delays[2] = m->setup;
		d.delays[3] = now - m->t_send;
	} else {
		d.delays[2] = now - m->t_active;	/* no session came up */
	}
	maillog_dsn(rr->reason, classes[rr->state], dsn);
	if (strcmp(dsn, "4.0.0") == 0 && strcmp(relay, "none") == 0)
		snprintf(dsn, sizeof(dsn), "4.4.1");	/* Postfix: no answer from host */
	d.dsn = dsn;
	maillog_delivery(&d);
}

static void relay_outcome(struct relay_msg *m, struct relay_rcpt *rr, enum q_rcpt_state st,
    const char *relay, const char *tls, const char *reason)
{
	if (rr->done)
		return;
	rr->done = true;
	rr->state = st;
	free(rr->reason);
	rr->reason = strdup(reason ? reason : "");
	m->nopen--;
	relay_log_outcome(m, rr, relay, tls);
	stats_outcome(m->shname, st, relay, rr->reason, relay_wall() -
	    (m->env->arrival_us ? (double)m->env->arrival_us / 1e6 : relay_wall()));
	/* Kept as the recipient's last_reason: `smtprelay send-test` and
	 * `show` report where a delivered message went. */
	if (st == Q_DELIVERED && rr->reason) {
		char *via = NULL;

		if (asprintf(&via, "%.300s (%.500s)", relay, rr->reason) >= 0) {
			free(rr->reason);
			rr->reason = via;
		}
	}
}

/* Every recipient has an outcome: write them into env, report from the loop. */
static void relay_complete(struct relay_msg *m)
{
	struct relay *r = m->r;
	time_t now = time(NULL);

	for (size_t i = 0; i < m->nrcpts; i++) {
		struct relay_rcpt *rr = &m->rcpts[i];
		struct q_rcpt *qr = &m->env->rcpts[rr->idx];

		qr->state = rr->state;
		free(qr->last_reason);
		qr->last_reason = rr->reason;
		rr->reason = NULL;
		qr->last_attempt = now;
		qr->attempts++;
	}
	TAILQ_INSERT_TAIL(&r->finished, m, link);
	event_active(r->finish_ev, EV_TIMEOUT, 1);
}

static void relay_check_complete(struct relay_msg *m)
{
	if (m->nopen == 0)
		relay_complete(m);
}

static void relay_defer_all(struct relay_msg *m, const char *relay, const char *tls,
    const char *reason)
{
	for (size_t i = 0; i < m->nrcpts; i++)
		relay_outcome(m, &m->rcpts[i], Q_DEFERRED, relay, tls, reason);
	relay_check_complete(m);
}

static void relay_enqueue(struct relay_sh *sh, struct relay_msg *m, bool front)
{
	m->sh = sh;
	relay_copy(m->shname, sizeof(m->shname), sh->conf->name);
	if (front)
		TAILQ_INSERT_HEAD(&sh->waiting, m, link);
	else
		TAILQ_INSERT_TAIL(&sh->waiting, m, link);
	sh->nwaiting++;
	relay_sh_kick(sh);
}

static void relay_dequeue(struct relay_sh *sh, struct relay_msg *m)
{
	TAILQ_REMOVE(&sh->waiting, m, link);
	sh->nwaiting--;
	m->sh = NULL;
}

/* Back to the head of its smarthost's FIFO without an attempt counted
 * (throttling, a reused connection the server had dropped). */
static void relay_requeue(struct relay_sh *sh, struct relay_msg *m)
{
	if (m->r->shutting_down) {
		relay_defer_all(m, "none", NULL, RELAY_SHUTDOWN_REASON);
		return;
	}
	if (sh->retired) {
		relay_route(m, 0);
		return;
	}
	relay_enqueue(sh, m, true);
}

/* Queue m for the first usable smarthost from start on; after the last one,
 * every open recipient is deferred with the most recent failure. */
static void relay_route(struct relay_msg *m, size_t start)
{
	struct relay *r = m->r;
	double now = relay_now();

	for (size_t i = start; i < r->nshs; i++) {
		struct relay_sh *sh = r->shs[i];

		if (!conf_smarthost_serves(r->conf, sh->conf, m->env->sender))
			continue;	/* senders = {...}: not this sender's (smtprelay.conf(5) "senders") */
		if (sh->down_until > now) {
			snprintf(m->reason, sizeof(m->reason), "delivery temporarily suspended: %s",
			    sh->last_error);
			relay_copy(m->relay, sizeof(m->relay), "none");
			continue;
		}
		relay_enqueue(sh, m, false);
		return;
	}
	if (!m->reason[0] && start == 0)
		snprintf(m->reason, sizeof(m->reason), "no smarthost serves sender <%s> in %s",
		    m->env->sender, r->conf->path);
	if (!m->reason[0])
		snprintf(m->reason, sizeof(m->reason), "no smarthost could be reached");
	relay_defer_all(m, m->relay[0] ? m->relay : "none", NULL, m->reason);
}

static int relay_msg_arrays(struct relay_msg *m)
{
	m->addrs = calloc(m->nrcpts, sizeof(*m->addrs));
	m->orcpts = calloc(m->nrcpts, sizeof(*m->orcpts));
	m->notify = calloc(m->nrcpts, sizeof(*m->notify));
	m->map = calloc(m->nrcpts, sizeof(*m->map));
	return m->addrs && m->orcpts && m->notify && m->map ? 0 : -1;
}

static struct relay_msg *relay_msg_new(struct relay *r, struct q_envelope *env,
    relay_done_fn done, void *arg)
{
	struct relay_msg *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->r = r;
	m->env = env;
	m->t_active = relay_wall();
	m->done = done;
	m->arg = arg;
	m->rcpts = calloc(env->nrcpts ? env->nrcpts : 1, sizeof(*m->rcpts));
	if (!m->rcpts)
		goto fail;
	for (size_t i = 0; i < env->nrcpts; i++) {
		enum q_rcpt_state st = env->rcpts[i].state;

		if (st == Q_PENDING || st == Q_DEFERRED)
			m->rcpts[m->nrcpts++].idx = i;
	}
	m->nopen = m->nrcpts;
	if (m->nrcpts && relay_msg_arrays(m) < 0)
		goto fail;
	return m;
fail:
	relay_msg_free(m);
	return NULL;
}

int relay_deliver(struct relay *r, struct q_envelope *env, relay_done_fn done, void *arg)
{
	struct relay_msg *m = relay_msg_new(r, env, done, arg);
	char reason[RELAY_REASON_MAX];

	if (!m) {
		errno = ENOMEM;
		return -1;
	}
	r->inflight++;
	if (m->nrcpts == 0) {
		relay_complete(m);
	} else if (r->shutting_down) {
		relay_defer_all(m, "none", NULL, RELAY_SHUTDOWN_REASON);
	} else if (r->nshs == 0) {
		snprintf(reason, sizeof(reason), "no smarthost configured in %s", r->conf->path);
		relay_defer_all(m, "none", NULL, reason);
	} else {
		relay_route(m, 0);
	}
	return 0;
}

size_t relay_inflight(const struct relay *r)
{
	return r->inflight;
}

static void relay_maybe_idle(struct relay *r);

static void relay_on_finish(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	struct relay_msg *m;

	/* One at a time: done() may deliver more (appended to the list). */
	while ((m = TAILQ_FIRST(&r->finished))) {
		relay_done_fn done = m->done;
		struct q_envelope *env = m->env;
		void *darg = m->arg;

		TAILQ_REMOVE(&r->finished, m, link);
		relay_msg_free(m);
		r->inflight--;
		if (done)
			done(env, darg);
	}
	relay_maybe_idle(r);
}

/* ---- connections ---- */

/* Port order: the sticky one (worked last), then the others in order. */
static size_t relay_port_at(const struct relay_sh *sh, size_t walk)
{
	size_t i;

	if (walk == 0)
		return sh->sticky;
	i = walk - 1;
	return i >= sh->sticky ? i + 1 : i;
}

static void relay_set_portname(struct relay_sh *sh)
{
	const struct conf_port *p = &sh->conf->ports[sh->sticky];

	snprintf(sh->portname, sizeof(sh->portname), "%u/%s", p->port, relay_mode_name(p->mode));
}

static void relay_note_error(struct relay_sh *sh, const char *reason)
{
	relay_copy(sh->last_error, sizeof(sh->last_error), reason);
	sh->last_error_time = time(NULL);
}

static void relay_sh_maybe_free(struct relay_sh *sh);

/* Unlink rc from its smarthost and free it (the conn is gone already). */
static void relay_conn_release(struct relay_conn *rc)
{
	struct relay_sh *sh = rc->sh;

	LIST_REMOVE(rc, link);
	sh->nconns--;
	if (rc->ready)
		sh->nworking--;
	else
		sh->nconnecting--;
	if (rc->idle_ev)
		event_free(rc->idle_ev);
	free(rc);
}

/* Where a failing smarthost's waiting messages go: the next smarthost. */
static void relay_sh_failover(struct relay_sh *sh, const char *relay, const char *reason)
{
	struct relay_msg *m;

	sh->down_until = relay_now() + sh->r->tune.down_ms / 1000.0;
	while ((m = TAILQ_FIRST(&sh->waiting))) {
		relay_dequeue(sh, m);
		relay_copy(m->reason, sizeof(m->reason), reason);
		relay_copy(m->relay, sizeof(m->relay), relay);
		if (sh->retired)
			relay_route(m, 0);
		else
			relay_route(m, sh->index + 1);
	}
}

static void relay_sh_throttle(struct relay_sh *sh, const char *reply)
{
	struct relay *r = sh->r;
	double now = relay_now(), hold = r->tune.throttle_hold_ms / 1000.0, rate;

	if (sh->hold_until > now)
		return;		/* one cut per hold, however many replies say so */
	rate = ratelimit_throttle(&sh->rl, now);
	sh->hold_until = now + hold;
	sh->held_until_wall = time(NULL) + (time_t)hold;
	log_warn("smarthost %s throttling (%s): rate now %.3g/s, holding for %gs",
	    sh->conf->name, reply, rate, hold);
	relay_arm(sh->ev, hold);
}

/* A session refused as throttled before it came up: hold the smarthost and
 * keep its messages, except those held past the cap. */
static void relay_sh_temp_throttle(struct relay_sh *sh, const char *reason)
{
	struct relay *r = sh->r;
	double now = relay_now(), cap = r->tune.throttle_cap_ms / 1000.0;
	struct relay_msg *m, *next;

	relay_sh_throttle(sh, reason);
	for (m = TAILQ_FIRST(&sh->waiting); m; m = next) {
		next = TAILQ_NEXT(m, link);
		if (m->throttled_since == 0)
			m->throttled_since = now;
		if (now - m->throttled_since <= cap)
			continue;
		relay_dequeue(sh, m);
		relay_copy(m->reason, sizeof(m->reason), reason);
		relay_copy(m->relay, sizeof(m->relay), "none");
		relay_route(m, sh->retired ? 0 : sh->index + 1);
	}
}

/* A reply blaming our account or configuration (smtprelayd(8) "Delivery"): the same for
 * every message until the admin acts, so the smarthost is paused (its waiting
 * messages fail over or are deferred) instead of failing one after another. */
static void relay_sh_config_pause(struct relay_sh *sh, const char *relay, const char *reason)
{
	double pause = sh->r->tune.down_ms / 1000.0;

	relay_note_error(sh, reason);
	sh->held_until_wall = time(NULL) + (time_t)pause;
	log_err("smarthost %s: %s: mail stays queued; smarthost paused for %gs (fix the account "
	    "or configuration, then run smtprelay flush)", sh->conf->name, reason, pause);
	if (!sh->retired)
		relay_sh_failover(sh, relay, reason);
}

/* "configuration error: " + reason, in place (truncated to fit). */
static void relay_config_reason(char *reason, size_t size)
{
	size_t plen = strlen(REPLYCLASS_PREFIX), len = strlen(reason);

	if (strstr(reason, "configuration error") || size <= plen + 1)
		return;
	if (len + plen >= size)
		len = size - 1 - plen;
	memmove(reason + plen, reason, len);
	memcpy(reason, REPLYCLASS_PREFIX, plen);
	reason[plen + len] = '\0';
}

static const char *relay_secret_file(const struct relay_sh *sh)
{
	if (sh->conf->password_file)
		return sh->conf->password_file;
	if (sh->conf->password_command)
		return "the output of password_command";
	if (sh->conf->oauth2_token_url)
		return "the access token from oauth2_token_url";
	return sh->r->conf->path;
}

/* A connection failed before its session came up.  reply: the server's reply
 * behind the failure as the SMTP client parsed it (code as data), NULL when
 * the failure was local. */
static void relay_conn_failed(struct relay_sh *sh, size_t walk, enum conn_verdict v,
    const char *relay, const char *reason, const struct smtp_client_result *reply)
{
	struct relay *r = sh->r;

	if (v == CONN_OK || r->shutting_down)
		return;
	stats_conn_failure(sh->conf->name, sh->conf->ports[relay_port_at(sh, walk)].port,
	    conn_verdict_name(v));
	relay_note_error(sh, reason);
	if (sh->retired)
		return;
	if (conn_verdict_next_port(v) && walk + 1 < sh->conf->nports) {
		log_info("smarthost %s: %s; trying the next port", sh->conf->name, reason);
		if (relay_open(sh, walk + 1) != -2)
			return;
	}
	if (v == CONN_AUTH_FAILED && sh->conf->oauth2_token_url)
		oauth2_invalidate(r->oauth2, sh->conf);
	if (v == CONN_AUTH_FAILED)
		log_err("smarthost %s: authentication failed for user %s: %s — check "
		    "username/password in %s", sh->conf->name,
		    sh->conf->username ? sh->conf->username : "", reason, relay_secret_file(sh));
	if (v == CONN_TEMP && reply && !reply->local && relay_is_throttle(reply->code, reply->text)) {
		relay_sh_temp_throttle(sh, reason);
		return;
	}
	/* Other connections of this smarthost work (or are still trying). */
	if (sh->nconns > 0)
		return;
	relay_sh_failover(sh, relay, reason);
}

/* End of a connection attempt that never got a conn (or lost it at once). */
static void relay_conn_fail_early(struct relay_conn *rc, enum conn_verdict v, const char *reason)
{
	struct relay_sh *sh = rc->sh;
	size_t walk = rc->walk;

	relay_conn_release(rc);
	relay_conn_failed(sh, walk, v, "none", reason, NULL);
	relay_sh_maybe_free(sh);
}

static void relay_on_ready(struct conn *c, void *arg);
static void relay_on_msg_done(struct conn *c, void *arg);
static void relay_on_closed(struct conn *c, enum conn_verdict v, const char *reason, void *arg);

static const struct conn_events relay_conn_events = {
	.ready = relay_on_ready,
	.msg_done = relay_on_msg_done,
	.closed = relay_on_closed,
};

static int relay_connect(struct relay_conn *rc, const char *secret)
{
	struct relay_sh *sh = rc->sh;
	struct conn_params p = {
		.sh = sh->conf,
		.port_index = rc->port,
		.helo_name = sh->r->conf->hostname,
		.secret = cred_kind(sh->conf, rc->port) != CRED_NONE ? secret : NULL,
		.ssl_ctx = sh->ctx,
	};
	char reason[RELAY_REASON_MAX];

	rc->c = conn_new(sh->r->base, sh->r->dns, &p, &relay_conn_events, rc);
	if (rc->c)
		return 0;
	snprintf(reason, sizeof(reason), "smarthost %s: cannot start a connection to %s:%u: %s",
	    sh->conf->name, sh->conf->host, sh->conf->ports[rc->port].port, strerror(errno));
	relay_conn_fail_early(rc, CONN_TEMP, reason);
	return -1;
}

static void relay_on_cred(const char *secret, long expires_in, const char *why, void *arg)
{
	struct relay_conn *rc = arg;
	char reason[RELAY_REASON_MAX];

	rc->cred = NULL;
	if (secret) {
		relay_connect(rc, secret);
		return;
	}
	if (cred_kind(rc->sh->conf, rc->port) != CRED_COMMAND) {
		relay_conn_fail_early(rc, CONN_TOKEN_FAILED, why);	/* logged by oauth2 */
		return;
	}
	snprintf(reason, sizeof(reason), "configuration error: %s", why);
	log_err("%s", reason);
	relay_conn_fail_early(rc, CONN_TOKEN_FAILED, reason);
}

/* Open a connection to the port at walk; 0, -1 when it failed at once
 * (already handled: next port, failover), -2 on ENOMEM (nothing done). */
static int relay_open(struct relay_sh *sh, size_t walk)
{
	struct relay_conn *rc = calloc(1, sizeof(*rc));
	char reason[RELAY_REASON_MAX];
	enum cred_kind kind;

	if (!rc)
		return -2;
	rc->sh = sh;
	rc->walk = walk;
	rc->port = relay_port_at(sh, walk);
	LIST_INSERT_HEAD(&sh->conns, rc, link);
	sh->nconns++;
	sh->nconnecting++;
	if (sh->conf->ports[rc->port].mode != CONF_TLS_NONE && !sh->ctx) {
		relay_conn_fail_early(rc, CONN_TLS_FAILED, sh->ctx_err);
		return -1;
	}
	kind = cred_kind(sh->conf, rc->port);
	if (kind == CRED_COMMAND || kind == CRED_OAUTH2) {
		rc->cred = cred_get(sh->r->base, sh->r->oauth2, sh->conf, rc->port,
		    sh->r->tune.password_timeout, relay_on_cred, rc, reason, sizeof(reason));
		if (rc->cred)
			return 0;
		relay_conn_fail_early(rc, CONN_TOKEN_FAILED, reason);
		return -1;
	}
	if (kind == CRED_MISSING) {
		snprintf(reason, sizeof(reason), "configuration error: smarthost %s: the secret for "
		    "user %s could not be read (%s): not sending without AUTH", sh->conf->name,
		    sh->conf->username, relay_secret_file(sh));
		log_err("%s", reason);
		relay_conn_fail_early(rc, CONN_TOKEN_FAILED, reason);
		return -1;
	}
	return relay_connect(rc, sh->conf->password);
}

/* Stop a connection without callbacks (shutdown, reload); its message, if
 * any, is the caller's. */
static void relay_conn_abort(struct relay_conn *rc)
{
	cred_cancel(rc->cred);
	if (rc->c)
		conn_abort(rc->c);
	rc->cred = NULL;
	rc->c = NULL;
	relay_conn_release(rc);
}

static void relay_conn_quit(struct relay_conn *rc)
{
	rc->idle = false;
	if (rc->quitting)
		return;
	rc->quitting = true;
	if (rc->idle_ev)
		evtimer_del(rc->idle_ev);
	conn_quit(rc->c);
}

static void relay_on_idle_timeout(evutil_socket_t fd, short what, void *arg)
{
	relay_conn_quit(arg);
}

static void relay_log_tls(const struct conn *c)
{
	const struct conn_tls_info *t = conn_tls(c);
	char line[600];

	if (!t || !t->active)
		return;
	maillog_format_tls(line, sizeof(line), conn_peer(c), t);
	log_info("%s", line);
}

static void relay_on_ready(struct conn *c, void *arg)
{
	struct relay_conn *rc = arg;
	struct relay_sh *sh = rc->sh;

	if (!rc->ready) {
		rc->ready = true;
		sh->nconnecting--;
		sh->nworking++;
		sh->down_until = 0;
		if (!sh->retired) {
			sh->sticky = rc->port;
			relay_set_portname(sh);
		}
		if (conn_tls(c) && conn_tls(c)->active)
			stats_tls(sh->conf->name, conn_tls(c)->version);
		log_debug("smarthost %s: session up with %s (%ld ms)", sh->conf->name,
		    conn_peer(c), conn_elapsed_ms(c));
		relay_log_tls(c);
	}
	if (!rc->idle_ev)
		rc->idle_ev = evtimer_new(sh->r->base, relay_on_idle_timeout, rc);
	if (rc->idle_ev)
		relay_arm(rc->idle_ev, sh->r->tune.idle_timeout_ms / 1000.0);
	rc->idle = true;
	/* Not from here: conn_reset may call us back synchronously. */
	relay_sh_kick(sh);
}

/* ---- transactions ---- */

static void relay_build_txn(struct relay_msg *m, struct smtp_client_msg *sm)
{
	const struct q_envelope *env = m->env;

	m->nsend = 0;
	for (size_t i = 0; i < m->nrcpts; i++) {
		const struct q_rcpt *q = &env->rcpts[m->rcpts[i].idx];

		if (m->rcpts[i].done)
			continue;
		m->addrs[m->nsend] = q->addr;
		m->orcpts[m->nsend] = q->orcpt;
		m->notify[m->nsend] = q->notify;
		m->map[m->nsend] = i;
		m->nsend++;
	}
	memset(sm, 0, sizeof(*sm));
	sm->sender = env->sender ? env->sender : "";
	sm->rcpts = m->addrs;
	sm->nrcpts = m->nsend;
	sm->size = env->size;
	sm->eightbit = env->eightbit;
	sm->smtputf8 = env->smtputf8;
	sm->envid = env->envid;
	sm->ret = (int)env->ret;	/* enum smtp_ret (smtp/dsnparam.h) */
	sm->notify = m->notify;
	sm->orcpts = m->orcpts;
}

static void relay_conn_set_idle(struct relay_conn *rc)
{
	rc->idle = true;
	if (rc->idle_ev)
		relay_arm(rc->idle_ev, rc->sh->r->tune.idle_timeout_ms / 1000.0);
	relay_sh_kick(rc->sh);
}

void relay_set_signer(struct relay *r, const struct signer *s)
{
	r->signer = s;
}

/* DKIM (smtprelay.conf(5) "DKIM SECTIONS"): the fields to prepend, "" when not signed.  A failure
 * defers: a configured signer never lets mail out unsigned. */
static int relay_sign(struct relay *r, struct relay_msg *m, int fd, char **sig, size_t *len,
    char *reason, size_t size)
{
	char err[512];

	*sig = NULL;
	*len = 0;
	if (signer_count(r->signer) == 0)
		return 0;
	if (signer_sign_fd(r->signer, fd, time(NULL), sig, len, err, sizeof(err)) == 0)
		return 0;
	snprintf(reason, size, "DKIM signing of %s failed: %s", m->env->id, err);
	return -1;
}

static void relay_send(struct relay_conn *rc, struct relay_msg *m)
{
	struct relay *r = rc->sh->r;
	struct smtp_client_msg sm;
	char reason[RELAY_REASON_MAX], *sig;
	size_t siglen;
	int fd, sent;

	rc->idle = false;
	if (rc->idle_ev)
		evtimer_del(rc->idle_ev);
	relay_build_txn(m, &sm);
	fd = queue_open_content(r->q, Q_QUEUE, m->env);
	if (fd < 0) {
		snprintf(reason, sizeof(reason), "cannot read queue file %s: %s", m->env->id,
		    strerror(errno));
		relay_defer_all(m, "none", NULL, reason);
		relay_conn_set_idle(rc);
		return;
	}
	if (relay_sign(r, m, fd, &sig, &siglen, reason, sizeof(reason)) < 0) {
		close(fd);
		relay_defer_all(m, "none", NULL, reason);
		relay_conn_set_idle(rc);
		return;
	}
	sm.size += siglen;
	rc->msg = m;
	m->rc = rc;
	m->t_send = relay_wall();
	m->setup = rc->nsent == 0 ? conn_elapsed_ms(rc->c) / 1000.0 : 0;
	sent = conn_send_prefixed(rc->c, &sm, sig, siglen, fd);
	free(sig);
	if (sent == 0)
		return;
	snprintf(reason, sizeof(reason), "cannot start a transaction with %s: %s",
	    conn_peer(rc->c), strerror(errno));
	close(fd);	/* still ours when conn_send fails */
	rc->msg = NULL;
	m->rc = NULL;
	relay_defer_all(m, "none", NULL, reason);
	relay_conn_quit(rc);
}

/* "host[addr]:port" -> "host[addr]" for Postfix's "host X said:". */
static void relay_peer_host(const char *peer, char *out, size_t size)
{
	const char *br = strrchr(peer, ']');
	size_t n = br ? (size_t)(br - peer) + 1 : strlen(peer);

	if (n >= size)
		n = size - 1;
	memcpy(out, peer, n);
	out[n] = '\0';
}

static void relay_result_reason(const struct smtp_client_result *res, const char *peer,
    char *out, size_t size)
{
	char host[RELAY_PEER_MAX];

	if (!res || res->code == 0) {
		snprintf(out, size, "lost connection with %s during the transaction", peer);
	} else if (res->code / 100 == 2) {
		snprintf(out, size, "%s", res->text);
	} else if (res->local) {
		snprintf(out, size, "%s: %d %s", peer, res->code, res->text);
	} else {
		relay_peer_host(peer, host, sizeof(host));
		snprintf(out, size, "host %s said: %s (in reply to %s command)", host, res->text,
		    smtp_client_stage_name(res->stage));
	}
}

static enum q_rcpt_state relay_code_state(int code)
{
	if (code / 100 == 2)
		return Q_DELIVERED;
	if (code / 100 == 5)
		return Q_FAILED;
	return Q_DEFERRED;
}

static const struct smtp_client_result *relay_find_throttle(const struct smtp_client *cl,
    size_t n)
{
	const struct smtp_client_result *res = smtp_client_msg_result(cl);

	if (res && !res->local && relay_is_throttle(res->code, res->text))
		return res;
	for (size_t i = 0; i < n; i++) {
		res = smtp_client_rcpt_result(cl, i);
		if (res && !res->local && relay_is_throttle(res->code, res->text))
			return res;
	}
	return NULL;
}

/* A reused connection the server had already dropped: nothing past MAIL
 * was answered, so sending again on a fresh connection is safe. */
static bool relay_dropped_before_mail(const struct smtp_client *cl)
{
	const struct smtp_client_result *res = smtp_client_msg_result(cl);

	return !res || (res->local && res->stage <= SMTP_CLIENT_STAGE_MAIL);
}

/* Whether a throttled message goes back to the FIFO (not past the cap). */
static bool relay_keep_throttled(struct relay_msg *m)
{
	double now = relay_now();

	if (m->throttled_since == 0)
		m->throttled_since = now;
	return now - m->throttled_since <= m->r->tune.throttle_cap_ms / 1000.0;
}

static void relay_results(struct relay_conn *rc, struct relay_msg *m, struct conn *c, bool lost)
{
	struct relay_sh *sh = rc->sh;
	const struct smtp_client *cl = conn_client(c);
	const struct conn_tls_info *ti = conn_tls(c);
	const char *peer = conn_peer(c), *tls = ti && ti->active ? ti->version : "none";
	size_t n = cl ? smtp_client_nrcpts(cl) : 0;
	const struct smtp_client_result *thr = cl ? relay_find_throttle(cl, n) : NULL;
	bool keep = false, delivered = false, hold = thr && relay_keep_throttled(m);
	char reason[RELAY_REASON_MAX], cfg_reason[RELAY_REASON_MAX] = "";

	if (lost && rc->nsent > 0 && !m->reuse_retried && cl && relay_dropped_before_mail(cl)) {
		m->reuse_retried = true;
		m->nsend = 0;
		relay_requeue(sh, m);
		return;
	}
	for (size_t i = 0; i < m->nsend; i++) {
		struct relay_rcpt *rr = &m->rcpts[m->map[i]];
		const struct smtp_client_result *res = i < n ? smtp_client_rcpt_result(cl, i) : NULL;
		int code = res ? res->code : 0;
		bool config = replyclass_result_is_config(res);

		if (hold && code / 100 != 2 && code / 100 != 5) {
			keep = true;	/* not an attempt: back in line */
			continue;
		}
		relay_result_reason(res, peer, reason, sizeof(reason));
		if (config) {
			relay_config_reason(reason, sizeof(reason));
			relay_copy(cfg_reason, sizeof(cfg_reason), reason);
		}
		relay_outcome(m, rr, config ? Q_DEFERRED : relay_code_state(code), peer, tls, reason);
		delivered |= rr->state == Q_DELIVERED;
	}
	m->nsend = 0;
	if (delivered) {
		sh->last_success = time(NULL);
		ratelimit_success(&sh->rl);
	}
	if (thr)
		relay_sh_throttle(sh, thr->text);
	if (cfg_reason[0])
		relay_sh_config_pause(sh, peer, cfg_reason);
	if (keep)
		relay_requeue(sh, m);
	else
		relay_check_complete(m);
}

static void relay_on_msg_done(struct conn *c, void *arg)
{
	struct relay_conn *rc = arg;
	struct relay_sh *sh = rc->sh;
	struct relay_msg *m = rc->msg;
	unsigned max = sh->conf->max_messages_per_connection;

	rc->msg = NULL;
	if (m) {
		m->rc = NULL;
		relay_results(rc, m, c, false);
	}
	rc->nsent++;
	if (sh->r->shutting_down || sh->retired || (max && rc->nsent >= max))
		relay_conn_quit(rc);
	else
		conn_reset(c);	/* may call relay_on_ready at once */
}

static void relay_wake(struct relay *r)
{
	event_active(r->finish_ev, EV_TIMEOUT, 1);
}

/* relay= for a failure before the session was up: the peer once connected. */
static void relay_fail_peer(struct conn *c, enum conn_verdict v, char *out, size_t size)
{
	if (v == CONN_REFUSED || v == CONN_TIMEOUT || v == CONN_DNS || v == CONN_UNREACHABLE ||
	    !strchr(conn_peer(c), '['))
		relay_copy(out, size, "none");
	else
		relay_copy(out, size, conn_peer(c));
}

/* The session failed on a reply that blames our account or configuration
 * (530 to EHLO, 535, 5.7.x to AUTH...): out gets the configuration-error reason. */
static bool relay_session_config_error(struct conn *c, const char *reason, char *out, size_t size)
{
	const struct smtp_client *cl = conn_client(c);

	if (!cl || !replyclass_result_is_config(smtp_client_error_reply(cl)))
		return false;
	relay_copy(out, size, reason ? reason : "authentication or account refused");
	relay_config_reason(out, size);
	return true;
}

static void relay_on_closed(struct conn *c, enum conn_verdict v, const char *reason, void *arg)
{
	struct relay_conn *rc = arg;
	struct relay_sh *sh = rc->sh;
	struct relay_msg *m = rc->msg;
	bool ready = rc->ready;
	size_t walk = rc->walk;
	char relay[RELAY_PEER_MAX], cfg[RELAY_REASON_MAX];
	const struct smtp_client *cl = conn_client(c);
	const struct smtp_client_result *reply = cl ? smtp_client_error_reply(cl) : NULL;

	relay_fail_peer(c, v, relay, sizeof(relay));
	rc->msg = NULL;
	if (m) {
		m->rc = NULL;
		relay_results(rc, m, c, true);
	}
	rc->c = NULL;
	relay_conn_release(rc);
	if (!ready && relay_session_config_error(c, reason, cfg, sizeof(cfg))) {
		if (v != CONN_AUTH_FAILED)	/* that one is logged with its fix */
			log_err("smarthost %s: %s: mail stays queued (fix the account or "
			    "configuration, then run smtprelay flush)", sh->conf->name, cfg);
		relay_conn_failed(sh, walk, v, relay, cfg, reply);
		if (sh->down_until > relay_now())	/* status: "held until" */
			sh->held_until_wall = time(NULL) + (time_t)(sh->down_until - relay_now());
	} else if (!ready)
		relay_conn_failed(sh, walk, v, relay, reason ? reason : "connection failed", reply);
	else if (v != CONN_OK && reason)
		relay_note_error(sh, reason);
	relay_sh_kick(sh);
	relay_wake(sh->r);
}

static void relay_sh_maybe_free(struct relay_sh *sh)
{
	relay_wake(sh->r);
}

/* ---- dispatch ---- */

static struct relay_conn *relay_idle_conn(struct relay_sh *sh)
{
	struct relay_conn *rc;

	LIST_FOREACH(rc, &sh->conns, link)
		if (rc->idle && !rc->quitting && !rc->msg)
			return rc;
	return NULL;
}

static void relay_quit_idle(struct relay_sh *sh)
{
	struct relay_conn *rc, *next;

	for (rc = LIST_FIRST(&sh->conns); rc; rc = next) {
		next = LIST_NEXT(rc, link);
		if (rc->idle)
			relay_conn_quit(rc);
	}
}

/* New connections for waiting messages: no more than they need, at most
 * max_connections, and a single probe while none works (a dead port must
 * not cost a storm of parallel failing attempts). */
static void relay_open_more(struct relay_sh *sh)
{
	unsigned max = sh->conf->max_connections ? sh->conf->max_connections : 1;

	for (unsigned tries = 0; tries < max; tries++) {
		if (sh->nwaiting <= sh->nconnecting || sh->nconns >= max)
			return;
		if (sh->nworking == 0 && sh->nconnecting >= 1)
			return;
		if (relay_open(sh, 0) < 0)
			return;
	}
}

static void relay_sh_dispatch(struct relay_sh *sh)
{
	struct relay_conn *rc;
	struct relay_msg *m;
	double now = relay_now(), wait;

	if (sh->r->shutting_down || sh->retired) {
		relay_quit_idle(sh);
		return;
	}
	if (TAILQ_EMPTY(&sh->waiting))
		return;
	if (sh->hold_until > now) {
		relay_arm(sh->ev, sh->hold_until - now);
		return;
	}
	if (sh->conf->nports == 0) {
		relay_sh_failover(sh, "none", "smarthost has no ports configured");
		return;
	}
	while ((m = TAILQ_FIRST(&sh->waiting)) && (rc = relay_idle_conn(sh))) {
		if ((wait = ratelimit_wait(&sh->rl, now)) > 0) {
			relay_arm(sh->ev, wait);
			return;
		}
		ratelimit_take(&sh->rl, now);
		relay_dequeue(sh, m);
		relay_send(rc, m);
	}
	relay_open_more(sh);
}

static void relay_on_sh_event(evutil_socket_t fd, short what, void *arg)
{
	relay_sh_dispatch(arg);
}

/* ---- smarthosts ---- */

static bool relay_sh_needs_tls(const struct conf_smarthost *c)
{
	for (size_t i = 0; i < c->nports; i++)
		if (c->ports[i].mode != CONF_TLS_NONE)
			return true;
	return false;
}

static struct relay_sh *relay_sh_new(struct relay *r, const struct conf_smarthost *c, size_t index)
{
	struct relay_sh *sh = calloc(1, sizeof(*sh));
	char err[200];

	if (!sh)
		return NULL;
	sh->r = r;
	sh->conf = c;
	sh->index = index;
	TAILQ_INIT(&sh->waiting);
	LIST_INIT(&sh->conns);
	ratelimit_init(&sh->rl, c->rate_count, c->rate_window, relay_now());
	sh->ev = evtimer_new(r->base, relay_on_sh_event, sh);
	if (!sh->ev) {
		free(sh);
		return NULL;
	}
	if (relay_sh_needs_tls(c)) {
		sh->ctx = tls_client_ctx(c, err, sizeof(err));
		if (!sh->ctx) {
			snprintf(sh->ctx_err, sizeof(sh->ctx_err), "smarthost %s: %s", c->name, err);
			log_err("%s", sh->ctx_err);
		}
	}
	if (c->nports)
		relay_set_portname(sh);
	return sh;
}

/* Everything still attached goes: connections aborted, messages freed. */
static void relay_sh_destroy(struct relay_sh *sh)
{
	struct relay_conn *rc;
	struct relay_msg *m;

	while ((rc = LIST_FIRST(&sh->conns))) {
		m = rc->msg;
		relay_conn_abort(rc);
		if (m)
			relay_msg_free(m);
	}
	while ((m = TAILQ_FIRST(&sh->waiting))) {
		relay_dequeue(sh, m);
		relay_msg_free(m);
	}
	event_free(sh->ev);
	if (sh->ctx)
		SSL_CTX_free(sh->ctx);
	free(sh);
}

static void relay_free_shs(struct relay_sh **shs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		relay_sh_destroy(shs[i]);
	free(shs);
}

static int relay_build(struct relay *r, const struct config *conf, struct relay_sh ***out,
    size_t *nout)
{
	struct relay_sh **shs = calloc(conf->nsmarthosts ? conf->nsmarthosts : 1, sizeof(*shs));

	if (!shs)
		return -1;
	for (size_t i = 0; i < conf->nsmarthosts; i++) {
		shs[i] = relay_sh_new(r, &conf->smarthosts[i], i);
		if (!shs[i]) {
			relay_free_shs(shs, i);
			return -1;
		}
	}
	*out = shs;
	*nout = conf->nsmarthosts;
	return 0;
}

static unsigned relay_total_conns(const struct relay *r)
{
	const struct relay_sh *sh;
	unsigned n = 0;

	for (size_t i = 0; i < r->nshs; i++)
		n += r->shs[i]->nconns;
	LIST_FOREACH(sh, &r->retired, retired_link)
		n += sh->nconns;
	return n;
}

static void relay_reap_retired(struct relay *r)
{
	struct relay_sh *sh, *next;

	for (sh = LIST_FIRST(&r->retired); sh; sh = next) {
		next = LIST_NEXT(sh, retired_link);
		if (sh->nconns == 0) {
			LIST_REMOVE(sh, retired_link);
			relay_sh_destroy(sh);
		}
	}
}

static void relay_maybe_idle(struct relay *r)
{
	relay_reap_retired(r);
	if (!r->shutting_down || r->idle_called || r->inflight > 0 || relay_total_conns(r) > 0)
		return;
	r->idle_called = true;
	if (r->grace_ev)
		evtimer_del(r->grace_ev);
	if (r->idle)
		r->idle(r->idle_arg);
}

struct relay *relay_new(struct event_base *base, struct evdns_base *dns, struct queue *q,
    const struct config *conf)
{
	struct relay *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->base = base;
	r->dns = dns;
	r->q = q;
	r->conf = conf;
	r->tune = (struct relay_tuning){
		.idle_timeout_ms = 5000,
		.throttle_hold_ms = 15000,
		.throttle_cap_ms = 300000,
		.down_ms = 60000,
		.password_timeout = SECRET_TIMEOUT,
	};
	TAILQ_INIT(&r->finished);
	LIST_INIT(&r->retired);
	r->finish_ev = event_new(base, -1, 0, relay_on_finish, r);
	r->oauth2 = oauth2_new(base, dns);
	if (!r->finish_ev || !r->oauth2 || relay_build(r, conf, &r->shs, &r->nshs) < 0) {
		if (r->finish_ev)
			event_free(r->finish_ev);
		oauth2_free(r->oauth2);
		free(r);
		return NULL;
	}
	return r;
}

void relay_set_token_saver(struct relay *r, oauth2_saver_fn save, void *ctx)
{
	oauth2_set_saver(r->oauth2, save, ctx);
}

void relay_get_tuning(const struct relay *r, struct relay_tuning *t)
{
	*t = r->tune;
}

void relay_set_tuning(struct relay *r, const struct relay_tuning *t)
{
	r->tune = *t;
}

/* ---- reload, shutdown, free ---- */

/* Connections still running on a config two reloads old: that config may
 * be gone after this reload, so they stop now and their messages retry. */
static void relay_abort_retired(struct relay *r, struct relay_msgq *moved)
{
	struct relay_sh *sh;
	struct relay_conn *rc;
	struct relay_msg *m;

	LIST_FOREACH(sh, &r->retired, retired_link) {
		while ((rc = LIST_FIRST(&sh->conns))) {
			m = rc->msg;
			relay_conn_abort(rc);
			if (m) {
				m->rc = NULL;
				m->nsend = 0;
				TAILQ_INSERT_TAIL(moved, m, link);
			}
		}
	}
	relay_reap_retired(r);
}

static bool relay_same_ports(const struct conf_smarthost *a, const struct conf_smarthost *b)
{
	if (a->nports != b->nports || strcmp(a->host, b->host) != 0)
		return false;
	for (size_t i = 0; i < a->nports; i++)
		if (a->ports[i].port != b->ports[i].port || a->ports[i].mode != b->ports[i].mode)
			return false;
	return true;
}

static void relay_retire(struct relay *r, struct relay_sh *sh, struct relay_msgq *moved)
{
	struct relay_conn *rc, *next;
	struct relay_msg *m;

	for (size_t i = 0; i < r->nshs; i++) {
		struct relay_sh *n = r->shs[i];

		if (strcmp(n->conf->name, sh->conf->name) == 0 && relay_same_ports(n->conf, sh->conf)) {
			n->sticky = sh->sticky;
			relay_set_portname(n);
			/* A reload must not reopen the window (rate_limit). */
			n->rl = sh->rl;
			ratelimit_configure(&n->rl, n->conf->rate_count, n->conf->rate_window,
			    relay_now());
		}
	}
	sh->retired = true;
	evtimer_del(sh->ev);
	while ((m = TAILQ_FIRST(&sh->waiting))) {
		relay_dequeue(sh, m);
		TAILQ_INSERT_TAIL(moved, m, link);
	}
	for (rc = LIST_FIRST(&sh->conns); rc; rc = next) {
		next = LIST_NEXT(rc, link);
		if (!rc->ready && !rc->msg)
			relay_conn_abort(rc);
		else if (rc->idle)
			relay_conn_quit(rc);
	}
	LIST_INSERT_HEAD(&r->retired, sh, retired_link);
}

static void relay_sh_flush(struct relay_sh *sh, double now)
{
	bool down = sh->down_until > now, held = sh->hold_until > now;
	bool slowed = ratelimit_rate(&sh->rl) != sh->conf->rate_per_sec;

	if (!down && !held && !slowed)
		return;
	log_info("flush: smarthost %s eligible now (%s%s%s%s%s)", sh->conf->name,
	    down ? "pause after a failure lifted" : "", down && (held || slowed) ? ", " : "",
	    held ? "throttling hold lifted" : "", held && slowed ? ", " : "",
	    slowed ? "sending rate back to rate_limit" : "");
	sh->down_until = 0;
	sh->hold_until = 0;
	sh->held_until_wall = 0;
	if (slowed)
		ratelimit_configure(&sh->rl, sh->conf->rate_count, sh->conf->rate_window, now);
	relay_sh_kick(sh);
}

void relay_flush(struct relay *r)
{
	double now = relay_now();

	for (size_t i = 0; i < r->nshs; i++)
		relay_sh_flush(r->shs[i], now);
}

int relay_reload(struct relay *r, const struct config *conf)
{
	struct relay_sh **old = r->shs;
	size_t nold = r->nshs;
	struct relay_msgq moved;
	struct relay_msg *m;

	TAILQ_INIT(&moved);
	if (relay_build(r, conf, &r->shs, &r->nshs) < 0) {
		r->shs = old;
		r->nshs = nold;
		return -1;
	}
	r->conf = conf;
	relay_abort_retired(r, &moved);
	for (size_t i = 0; i < nold; i++)
		relay_retire(r, old[i], &moved);
	free(old);
	while ((m = TAILQ_FIRST(&moved))) {
		char reason[RELAY_REASON_MAX];

		TAILQ_REMOVE(&moved, m, link);
		m->reason[0] = m->relay[0] = '\0';
		if (r->shutting_down) {
			relay_defer_all(m, "none", NULL, RELAY_SHUTDOWN_REASON);
		} else if (r->nshs == 0) {
			snprintf(reason, sizeof(reason), "no smarthost configured in %s", conf->path);
			relay_defer_all(m, "none", NULL, reason);
		} else {
			relay_route(m, 0);
		}
	}
	relay_wake(r);
	return 0;
}

static void relay_sh_stop(struct relay_sh *sh)
{
	struct relay_conn *rc, *next;
	struct relay_msg *m;

	evtimer_del(sh->ev);
	while ((m = TAILQ_FIRST(&sh->waiting))) {
		relay_dequeue(sh, m);
		relay_defer_all(m, "none", NULL, RELAY_SHUTDOWN_REASON);
	}
	for (rc = LIST_FIRST(&sh->conns); rc; rc = next) {
		next = LIST_NEXT(rc, link);
		if (rc->msg)
			continue;	/* may finish within the grace period */
		if (rc->ready)
			relay_conn_quit(rc);
		else
			relay_conn_abort(rc);
	}
}

static void relay_sh_interrupt(struct relay_sh *sh)
{
	struct relay_conn *rc;
	struct relay_msg *m;

	while ((rc = LIST_FIRST(&sh->conns))) {
		m = rc->msg;
		relay_conn_abort(rc);
		if (m) {
			m->rc = NULL;
			m->nsend = 0;
			relay_defer_all(m, "none", NULL, RELAY_SHUTDOWN_REASON);
		}
	}
}

static void relay_on_grace(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	struct relay_sh *sh;

	for (size_t i = 0; i < r->nshs; i++)
		relay_sh_interrupt(r->shs[i]);
	LIST_FOREACH(sh, &r->retired, retired_link)
		relay_sh_interrupt(sh);
	relay_wake(r);
}

void relay_shutdown(struct relay *r, unsigned grace_seconds, void (*idle)(void *), void *arg)
{
	struct relay_sh *sh;

	r->idle = idle;
	r->idle_arg = arg;
	if (r->shutting_down)
		return;
	r->shutting_down = true;
	for (size_t i = 0; i < r->nshs; i++)
		relay_sh_stop(r->shs[i]);
	LIST_FOREACH(sh, &r->retired, retired_link)
		relay_sh_stop(sh);
	r->grace_ev = evtimer_new(r->base, relay_on_grace, r);
	if (r->grace_ev)
		relay_arm(r->grace_ev, grace_seconds);
	else
		relay_on_grace(-1, 0, r);
	relay_wake(r);
}

void relay_free(struct relay *r)
{
	struct relay_sh *sh;
	struct relay_msg *m;

	if (!r)
		return;
	relay_free_shs(r->shs, r->nshs);
	while ((sh = LIST_FIRST(&r->retired))) {
		LIST_REMOVE(sh, retired_link);
		relay_sh_destroy(sh);
	}
	while ((m = TAILQ_FIRST(&r->finished))) {
		TAILQ_REMOVE(&r->finished, m, link);
		relay_msg_free(m);
	}
	if (r->grace_ev)
		event_free(r->grace_ev);
	event_free(r->finish_ev);
	oauth2_free(r->oauth2);
	free(r);
}

size_t relay_status(const struct relay *r, struct relay_smarthost_status *out, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < r->nshs && n < max; i++, n++) {
		const struct relay_sh *sh = r->shs[i];
		struct relay_smarthost_status *s = &out[n];

		memset(s, 0, sizeof(*s));
		s->name = sh->conf->name;
		s->port = sh->portname;
		s->last_success = sh->last_success;
		s->last_error_time = sh->last_error_time;
		relay_copy(s->last_error, sizeof(s->last_error), sh->last_error);
		s->connections = sh->nconns;
		s->rate_per_sec = ratelimit_rate(&sh->rl);
		/* Throttled, or paused by a configuration error (down_until). */
		s->held_until = (sh->hold_until > relay_now() || sh->down_until > relay_now()) &&
		    sh->held_until_wall > time(NULL) ? sh->held_until_wall : 0;
	}
	return n;
}
