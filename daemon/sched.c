#include "config.h"
#define LOG_ROLE LOG_ROLE_QMGR
#include "daemon/sched.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/dsn.h"
#include "daemon/durable.h"
#include "relay/maillog.h"
#include "daemon/qstore.h"
#include "lib/log.h"

#define SCHED_LOCKED_RETRY 60		/* another process holds the lock */
#define SCHED_ERROR_RETRY 60		/* state could not be written etc. */
#define SCHED_REASON_MAX 900

struct sched_msg {
	char id[QID_SIZE];
	time_t due;
	bool busy;
	bool forced;			/* flushed: ignore the recipients' next_attempt */
	bool storing;			/* busy writing the state of an attempt */
	bool loading;			/* busy being locked and read (qstore_load) */
	bool flush_after;		/* flushed while storing: due once stored */
	bool cancelled;			/* deleted while in delivery: remove when done */
	long cancel_uid;
};

struct sched_job {
	struct sched *s;
	struct sched_job *prev_job, *next_job;	/* in flight, freed by sched_free */
	struct q_envelope *env;
	struct sched_prev *prev;
	int lockfd;
	bool *failed;			/* recipients that failed in this attempt */
	time_t due;			/* next attempt, once the state is stored */
};

struct sched {
	struct daemon *d;
	struct sched_msg *msgs;		/* sorted by id (= arrival order) */
	size_t n, cap;
	struct event *timer;
	sched_deliver_fn deliver;
	void *deliver_ctx;
	size_t inflight;
	struct sched_job *jobs;
	bool stopped;
	sched_finished_fn finished;
	void *finished_ctx;
};

/* ---- pure policy ---- */

time_t sched_backoff(unsigned retry_min, unsigned retry_max, unsigned attempts)
{
	uint64_t delay = retry_min ? retry_min : 1;
	uint64_t cap = retry_max ? retry_max : delay;

	if (cap < 1)
		cap = 1;
	for (unsigned i = 1; i < attempts && delay < cap; i++)
		delay *= 2;
	return (time_t)(delay < cap ? delay : cap);
}

bool sched_expired(int64_t arrival_us, time_t now, unsigned lifetime)
{
	int64_t arrival = arrival_us / 1000000;

	return (int64_t)now - arrival >= (int64_t)lifetime;
}

void sched_duration_text(unsigned seconds, char *out, size_t len)
{
	static const struct { unsigned secs; const char *name; } units[] = {
		{ 86400, "day" }, { 3600, "hour" }, { 60, "minute" },
	};
	unsigned n = seconds;
	const char *name = "second";

	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (seconds >= units[i].secs && seconds % units[i].secs == 0) {
			n = seconds / units[i].secs;
			name = units[i].name;
			break;
		}
	}
	snprintf(out, len, "%u %s%s", n, name, n == 1 ? "" : "s");
}

time_t sched_env_due(const struct q_envelope *env)
{
	time_t due = -1;

	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct q_rcpt *r = &env->rcpts[i];
		time_t t;

		if (r->state == Q_DELIVERED || r->state == Q_FAILED)
			continue;
		t = r->state == Q_PENDING ? 0 : r->next_attempt;
		if (t < 0)
			t = 0;
		if (due < 0 || t < due)
			due = t;
	}
	return due;
}

time_t sched_held_until(const struct q_envelope *env, unsigned lifetime, time_t now)
{
	time_t until = (time_t)(env->arrival_us / 1000000) + (time_t)lifetime;

	if (!env->held || sched_env_due(env) >= 0 || until <= now)
		return -1;
	return until;
}

static int sched_expire_rcpt(struct q_rcpt *r, const char *lifetime)
{
	char reason[SCHED_REASON_MAX];
	char *copy;

	snprintf(reason, sizeof(reason), "message expired after %s in the queue: %s", lifetime,
	    r->last_reason ? r->last_reason : "no delivery attempt succeeded");
	if (!(copy = strdup(reason)))
		return -1;
	free(r->last_reason);
	r->last_reason = copy;
	r->state = Q_FAILED;
	return 0;
}

int sched_apply(struct q_envelope *env, const struct sched_prev *prev,
    const struct sched_policy *p, time_t now, bool *failed)
{
	bool expired = sched_expired(env->arrival_us, now, p->queue_lifetime);
	char lifetime[64];
	int nfailed = 0;

	sched_duration_text(p->queue_lifetime, lifetime, sizeof(lifetime));
	for (size_t i = 0; i < env->nrcpts; i++) {
		struct q_rcpt *r = &env->rcpts[i];

		failed[i] = false;
		if (prev[i].state == Q_DELIVERED || prev[i].state == Q_FAILED)
			continue;
		if (r->state == Q_DEFERRED && r->attempts > prev[i].attempts) {
			time_t base = r->last_attempt ? r->last_attempt : now;

			r->next_attempt = base + sched_backoff(p->retry_min, p->retry_max, r->attempts);
		}
		if (r->state == Q_DEFERRED && expired && sched_expire_rcpt(r, lifetime) < 0)
			return -1;
		if (r->state == Q_FAILED) {
			failed[i] = true;
			nfailed++;
		}
	}
	return nfailed;
}

void sched_unfail(struct q_rcpt *r, const struct sched_prev *prev, time_t retry_at)
{
	(void)prev;
	r->state = Q_DEFERRED;
	r->next_attempt = retry_at;
}

/* ---- the index ---- */

static bool sched_find(const struct sched *s, const char *id, size_t *pos)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(s->msgs[mid].id, id);

		if (c == 0) {
			*pos = mid;
			return true;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*pos = lo;
	return false;
}

static struct sched_msg *sched_lookup(struct sched *s, const char *id)
{
	size_t pos;

	return sched_find(s, id, &pos) ? &s->msgs[pos] : NULL;
}

/* Insert or update; new ids mostly sort last, so insertion is cheap. */
static int sched_put(struct sched *s, const char *id, time_t due)
{
	size_t pos;

	if (sched_find(s, id, &pos)) {
		if (!s->msgs[pos].busy && due < s->msgs[pos].due)
			s->msgs[pos].due = due;
		return 0;
	}
	if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 64;
		struct sched_msg *m = reallocarray(s->msgs, ncap, sizeof(*m));

		if (!m)
			return -1;
		s->msgs = m;
		s->cap = ncap;
	}
	memmove(&s->msgs[pos + 1], &s->msgs[pos], (s->n - pos) * sizeof(*s->msgs));
	memset(&s->msgs[pos], 0, sizeof(*s->msgs));
	snprintf(s->msgs[pos].id, sizeof(s->msgs[pos].id), "%s", id);
	s->msgs[pos].due = due;
	s->n++;
	return 0;
}

static void sched_drop(struct sched *s, const char *id)
{
	size_t pos;

	if (!sched_find(s, id, &pos))
		return;
	memmove(&s->msgs[pos], &s->msgs[pos + 1], (s->n - pos - 1) * sizeof(*s->msgs));
	s->n--;
}

/* Arm the timer for the earliest due message (nothing when there is no
 * deliverer, or the in-flight cap is reached: a completion re-arms it). */
static void sched_arm(struct sched *s)
{
	struct timeval tv = { 0, 0 };
	time_t now = time(NULL), first = -1;

	if (s->stopped || !s->deliver || s->inflight >= SCHED_MAX_INFLIGHT) {
		evtimer_del(s->timer);
		return;
	}
	for (size_t i = 0; i < s->n; i++)
		if (!s->msgs[i].busy && (first < 0 || s->msgs[i].due < first))
			first = s->msgs[i].due;
	if (first < 0) {
		evtimer_del(s->timer);
		return;
	}
	if (first > now)
		tv.tv_sec = first - now;
	evtimer_add(s->timer, &tv);
}

/* ---- finishing a message ---- */

static void sched_job_free(struct sched_job *j)
{
	if (j->prev_job)
		j->prev_job->next_job = j->next_job;
	else if (j->s && j->s->jobs == j)
		j->s->jobs = j->next_job;
	if (j->next_job)
		j->next_job->prev_job = j->prev_job;
	if (j->lockfd >= 0)
		close(j->lockfd);
	q_envelope_free(j->env);
	free(j->prev);
	free(j->failed);
	free(j);
}

static void sched_removed(void *arg, int error, const char *err, const char *id)
{
	(void)arg;
	if (error)
		log_err("%s", err);
	else
		log_info("%s: removed", id);
}

/* Every recipient is DELIVERED or FAILED: the message leaves the queue, off
 * the loop; its lock (lockfd, or -1) is held until it has. */
static void sched_finish(struct sched *s, const char *id, int lockfd)
{
	sched_drop(s, id);
	qstore_remove(s->d, id, lockfd, sched_removed, NULL);
}

static void sched_log_expired(const struct q_envelope *env, const bool *failed, time_t now)
{
	struct maillog_delivery d = {
		.id = env->id, .relay = "none", .dsn = "4.4.7", .status = "bounced",
		.delay = (double)now - (double)(env->arrival_us / 1000000), .by_qmgr = true,
	};

	d.delays[1] = d.delay;	/* all of it waiting in the queue */
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct q_rcpt *r = &env->rcpts[i];

		if (!failed[i] || !r->last_reason || strncmp(r->last_reason, "message expired", 15))
			continue;
		d.to = r->addr;
		d.orig_to = r->orcpt;
		d.reason = r->last_reason;
		maillog_delivery(&d);
	}
}

static void sched_store(struct sched *s, struct sched_job *j);

/* The attempt is over and its state stored (or not): release the message. */
static void sched_release(struct sched *s, struct sched_job *j, time_t due)
{
	struct sched_msg *m = sched_lookup(s, j->env->id);
	time_t now = time(NULL);

	if (m) {
		m->busy = m->storing = false;
		m->forced = m->flush_after;
		m->due = m->flush_after ? 0 : due < 0 ? now + SCHED_ERROR_RETRY : due;
		m->flush_after = false;
	}
	s->inflight--;
	sched_job_free(j);
	sched_arm(s);
}

/* Recipients that just failed wait to fail again (their DSN could not be
 * queued).  The relay already logged them bounced: log readers must see
 * that they are still in the queue. */
static void sched_unfail_all(struct sched *s, struct sched_job *j, time_t when, const char *why)
{
	struct q_envelope *env = j->env;
	time_t now = time(NULL);
	char reason[256];
	struct maillog_delivery d = {
		.id = env->id, .relay = "none", .dsn = "4.3.0", .status = "deferred",
		.delay = (double)now - (double)(env->arrival_us / 1000000), .by_qmgr = true,
		.reason = reason,
	};

	(void)s;
	snprintf(reason, sizeof(reason), "%s; failing again in %lld s", why,
	    (long long)(when - now));
	d.delays[1] = d.delay;
	for (size_t i = 0; i < env->nrcpts; i++) {
		if (env->rcpts[i].state != Q_FAILED || j->prev[i].state == Q_FAILED)
			continue;
		sched_unfail(&env->rcpts[i], &j->prev[i], when);
		d.to = env->rcpts[i].addr;
		d.orig_to = env->rcpts[i].orcpt;
		maillog_delivery(&d);
	}
}

static void sched_bounced(void *arg, int error, const char *err, const char *dsnid)
{
	struct sched_job *j = arg;
	struct sched *s = j->s;

	(void)err;
	if (error) {
		sched_unfail_all(s, j, time(NULL) + s->d->conf->retry_min,
		    "the failure notice could not be queued");
	} else {
		j->env->dsn_count++;
		if (sched_add(s, dsnid) < 0)
			log_err("%s: out of memory scheduling the DSN", dsnid);
	}
	sched_store(s, j);
}

/* A failure nobody is told about (no DSN: null sender, or the DSN limit)
 * keeps the message visible on hold instead of deleting it (README "Running it"). */
static void sched_hold(struct sched *s, struct q_envelope *env, time_t now)
{
	char lifetime[64];

	/* Marked now even while other recipients are deferred: held once they are done. */
	if (env->held)
		return;
	sched_duration_text(s->d->conf->queue_lifetime, lifetime, sizeof(lifetime));
	if (sched_expired(env->arrival_us, now, s->d->conf->queue_lifetime)) {
		log_warn("%s: failed and no DSN was sent; it is %s old: not held, removed",
		    env->id, lifetime);
		return;
	}
	env->held = true;
	log_warn("%s: held: failed and no DSN was sent; kept in the queue (mailq, smtprelay "
	    "show %s) until it is %s old or smtprelay delete %s removes it", env->id, env->id,
	    lifetime, env->id);
}

/* The DSN goes into the queue before the failed state is written; if it
 * cannot, the recipients stay deferred so the DSN is tried again later.
 * true: the DSN is on its way and sched_bounced continues.  No DSN at all
 * (null sender, the DSN limit) holds the message, unless NOTIFY said the
 * sender does not want to know. */
static bool sched_bounce(struct sched *s, struct sched_job *j, time_t now)
{
	int r;

	sched_log_expired(j->env, j->failed, now);
	r = dsn_send(s->d, j->env, j->failed, sched_bounced, j);
	if (r < 0)
		sched_unfail_all(s, j, now + s->d->conf->retry_min,
		    "the failure notice could not be queued");
	else if (r == 0 && (!j->env->sender[0] || dsn_wanted(j->env, j->failed)))
		sched_hold(s, j->env, now);
	return r > 0;
}

/* Deleted during its delivery (sched_cancel): no state, no DSN, just gone. */
static void sched_cancel_removed(void *arg, int error, const char *err, const char *id)
{
	if (error)
		log_err("%s", err);
	else
		log_info("%s: removed by uid %ld", id, (long)(intptr_t)arg);
}

static void sched_cancelled_done(struct sched *s, struct sched_job *j, long uid)
{
	const char *id = j->env->id;

	qstore_remove(s->d, id, j->lockfd, sched_cancel_removed, (void *)(intptr_t)uid);
	j->lockfd = -1;
	sched_drop(s, id);
	s->inflight--;
	sched_job_free(j);
	sched_arm(s);
}

static void sched_stored(void *arg, int error, const char *err, const char *id)
{
	struct sched_job *j = arg;

	if (error) {
		log_err("%s: %s", id, err);
		j->due = time(NULL) + SCHED_ERROR_RETRY;
	}
	sched_release(j->s, j, j->due);
}

/* Every recipient is final: removing the message is its state update,
 * which saves a state file and two fsyncs per message.  A removal lost in a
 * crash means a duplicate at worst, which at-least-once allows.  Else the
 * state file is written off the loop, the message staying busy (and
 * locked) until it is durable, so the next attempt reads what this one did. */
static void sched_store(struct sched *s, struct sched_job *j)
{
	struct q_envelope *env = j->env;
	struct sched_msg *m;

	j->due = sched_env_due(env);
	if (j->due < 0)
		j->due = sched_held_until(env, s->d->conf->queue_lifetime, time(NULL));
	if (j->due < 0) {
		if (s->finished)
			s->finished(s->finished_ctx, env);
		sched_finish(s, env->id, j->lockfd);
		j->lockfd = -1;
		sched_release(s, j, j->due);
		return;
	}
	if ((m = sched_lookup(s, env->id)))
		m->storing = true;
	qstore_state(s->d, env, sched_stored, j);
}

static void sched_done(struct q_envelope *env, void *arg)
{
	struct sched_job *j = arg;
	struct sched *s = j->s;
	const struct config *c = s->d->conf;
	struct sched_policy pol = { c->retry_min, c->retry_max, c->queue_lifetime };
	struct sched_msg *m = sched_lookup(s, env->id);
	time_t now = time(NULL);
	int nfailed;

	if (m && m->cancelled) {
		sched_cancelled_done(s, j, m->cancel_uid);
		return;
	}
	j->failed = calloc(env->nrcpts ? env->nrcpts : 1, sizeof(*j->failed));
	nfailed = j->failed ? sched_apply(env, j->prev, &pol, now, j->failed) : -1;
	if (nfailed < 0) {
		/* No DSN without memory: recipients that just failed wait to fail again. */
		log_err("%s: out of memory updating the recipients' state", env->id);
		sched_unfail_all(s, j, now + c->retry_min, "out of memory updating the recipients' state");
	} else if (nfailed > 0 && sched_bounce(s, j, now)) {
		return;
	}
	sched_store(s, j);
}

/* ---- dispatching ---- */

struct sched_corrupt {
	struct queue *q;
	char id[QID_SIZE];
	char why[512];
};

/* Worker thread: the rename into corrupt/ and its directory fsyncs
 * (queue_quarantine logs the outcome). */
static int sched_quarantine_work(void *arg, char *err, size_t errlen)
{
	struct sched_corrupt *c = arg;

	if (queue_quarantine(c->q, Q_QUEUE, c->id, c->why) == 0)
		return 0;
	snprintf(err, errlen, "%s: still in %s/queue, left out of delivery until the next start",
	    c->id, queue_path(c->q));
	return errno ? errno : EIO;
}

static void sched_quarantine_done(void *arg, int error, const char *err)
{
	if (error)
		log_warn("%s", err);
	free(arg);
}

/* A corrupt message found at run time leaves the index now and queue/ off
 * the loop (at start, sched_load_one may move it synchronously). */
static void sched_quarantine(struct sched *s, const char *id, const char *why)
{
	struct sched_corrupt *c = calloc(1, sizeof(*c));

	if (!c) {
		log_err("%s: corrupt (%s), left in the queue: out of memory", id, why);
		return;
	}
	c->q = s->d->queue;
	snprintf(c->id, sizeof(c->id), "%s", id);
	snprintf(c->why, sizeof(c->why), "%s", why);
	durable_run(s->d->durable, sched_quarantine_work, sched_quarantine_done, c, false);
}

/* A message that could not be locked or read: postponed when another
 * process holds it, else dropped from the index (quarantined if corrupt). */
static void sched_unreadable(struct sched *s, struct sched_msg *m, int error, const char *err,
    time_t now)
{
	char id[QID_SIZE];

	snprintf(id, sizeof(id), "%s", m->id);
	if (error == EWOULDBLOCK) {
		m->due = now + SCHED_LOCKED_RETRY;
		return;
	}
	if (error == EBADMSG)
		sched_quarantine(s, id, err);
	else if (error != ENOENT)
		log_err("%s", err);
	sched_drop(s, id);
}

static struct sched_prev *sched_snapshot(const struct q_envelope *env)
{
	struct sched_prev *prev = calloc(env->nrcpts ? env->nrcpts : 1, sizeof(*prev));

	if (!prev)
		return NULL;
	for (size_t i = 0; i < env->nrcpts; i++) {
		prev[i].state = env->rcpts[i].state;
		prev[i].attempts = env->rcpts[i].attempts;
	}
	return prev;
}

/* The message is locked and read: start its delivery, or put it back to
 * wait, or finish it. */
static void sched_start(struct sched *s, struct sched_msg *m, struct q_envelope *env, int lockfd,
    time_t now)
{
	struct sched_job *j;
	char id[QID_SIZE];
	time_t due;

	snprintf(id, sizeof(id), "%s", m->id);
	due = sched_env_due(env);
	if (due < 0 && (due = sched_held_until(env, s->d->conf->queue_lifetime, now)) > 0)
		m->forced = false;	/* a held message waits for its end, flush or not */
	if (due < 0) {
		if (env->held)
			log_info("%s: held for queue_lifetime: removing it", id);
		sched_finish(s, id, lockfd);
		q_envelope_free(env);
		return;
	}
	if (due > now && !m->forced) {
		m->due = due;
		close(lockfd);
		q_envelope_free(env);
		return;
	}
	j = calloc(1, sizeof(*j));
	if (!j || !(j->prev = sched_snapshot(env))) {
		free(j);
		close(lockfd);
		q_envelope_free(env);
		m->due = now + SCHED_ERROR_RETRY;
		return;
	}
	j->s = s;
	j->env = env;
	j->lockfd = lockfd;
	j->next_job = s->jobs;
	if (s->jobs)
		s->jobs->prev_job = j;
	s->jobs = j;
	m->busy = true;
	s->inflight++;
	if (s->deliver(s->deliver_ctx, env, sched_done, j) < 0) {
		log_err("%s: cannot start delivery: out of memory", id);
		if ((m = sched_lookup(s, id))) {
			m->busy = false;
			m->due = now + SCHED_ERROR_RETRY;
		}
		s->inflight--;
		sched_job_free(j);
	}
}

/* Back on the loop with the message locked and read (qstore_load).  It
 * may have been deleted meanwhile (sched_cancel), or the daemon stopped. */
static void sched_loaded(void *arg, const char *id, int lockfd, struct q_envelope *env, int error,
    const char *err)
{
	struct sched *s = arg;
	struct sched_msg *m = sched_lookup(s, id);
	time_t now = time(NULL);

	s->inflight--;
	if (m)
		m->busy = m->loading = false;
	if (m && m->cancelled && lockfd >= 0) {
		qstore_remove(s->d, id, lockfd, sched_cancel_removed,
		    (void *)(intptr_t)m->cancel_uid);
		sched_drop(s, id);
		q_envelope_free(env);
	} else if (!m || s->stopped) {
		if (lockfd >= 0)
			close(lockfd);
		q_envelope_free(env);
	} else if (error) {
		sched_unreadable(s, m, error, err, now);
	} else {
		sched_start(s, m, env, lockfd, now);
	}
	sched_arm(s);
}

/* Hand one due message to the deliverer: it is locked and read off the
 * loop first, counted in flight meanwhile. */
static void sched_dispatch(struct sched *s, struct sched_msg *m)
{
	char id[QID_SIZE];

	snprintf(id, sizeof(id), "%s", m->id);
	m->busy = m->loading = true;
	s->inflight++;
	qstore_load(s->d, id, sched_loaded, s);
}

static void sched_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched *s = arg;
	time_t now = time(NULL);
	size_t i = 0;

	(void)fd;
	(void)what;
	while (i < s->n && !s->stopped && s->deliver && s->inflight < SCHED_MAX_INFLIGHT) {
		struct sched_msg *m = &s->msgs[i];
		size_t before = s->n;

		if (m->busy || m->due > now) {
			i++;
			continue;
		}
		sched_dispatch(s, m);
		/* Dropped entries shift the rest down; otherwise move on. */
		if (s->n == before)
			i++;
	}
	sched_arm(s);
}

/* ---- interface ---- */

struct sched *sched_new(struct daemon *d)
{
	struct sched *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->d = d;
	s->timer = evtimer_new(d->base, sched_timer_cb, s);
	if (!s->timer) {
		free(s);
		return NULL;
	}
	return s;
}

void sched_free(struct sched *s)
{
	if (!s)
		return;
	/* Deliveries abandoned at exit (the relay is gone): they stay queued. */
	while (s->jobs)
		sched_job_free(s->jobs);
	event_free(s->timer);
	free(s->msgs);
	free(s);
}

void sched_set_deliverer(struct sched *s, sched_deliver_fn fn, void *ctx)
{
	s->deliver = fn;
	s->deliver_ctx = ctx;
	sched_arm(s);
}

/* One queued message at start: index it by its recipients' due time. */
static void sched_load_one(struct sched *s, const char *id)
{
	struct q_envelope *env = NULL;
	char err[512];
	time_t due;

	if (queue_read(s->d->queue, Q_QUEUE, id, &env, err, sizeof(err)) < 0) {
		if (errno == EBADMSG)
			queue_quarantine(s->d->queue, Q_QUEUE, id, err);
		else if (errno != ENOENT)
			log_err("%s: %s", id, err);
		return;
	}
	due = sched_env_due(env);
	if (due < 0)
		due = sched_held_until(env, s->d->conf->queue_lifetime, time(NULL));
	q_envelope_free(env);
	if (due < 0) {
		/* Finished before a crash could remove it. */
		int fd = queue_lock(s->d->queue, id);

		if (fd >= 0)
			sched_finish(s, id, fd);
		return;
	}
	if (sched_put(s, id, due) < 0)
		log_err("%s: out of memory indexing the queue", id);
}

int sched_load(struct sched *s)
{
	char (*ids)[QID_SIZE] = NULL;
	int n = queue_scan(s->d->queue, Q_QUEUE, &ids, 3600);

	if (n < 0) {
		log_err("%s/queue: cannot scan: %s", queue_path(s->d->queue), strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++)
		sched_load_one(s, ids[i]);
	free(ids);
	log_info("queue: %zu message%s", s->n, s->n == 1 ? "" : "s");
	sched_arm(s);
	return 0;
}

int sched_add(struct sched *s, const char *id)
{
	if (sched_put(s, id, 0) < 0)
		return -1;
	sched_arm(s);
	return 0;
}

int sched_know(struct sched *s, const char *id)
{
	size_t pos;

	if (sched_find(s, id, &pos))
		return 0;
	return sched_add(s, id);
}

size_t sched_flush(struct sched *s)
{
	size_t n = 0;

	for (size_t i = 0; i < s->n; i++) {
		/* One whose attempt is over but not yet on disk goes once it is. */
		if (s->msgs[i].busy && s->msgs[i].storing) {
			s->msgs[i].flush_after = true;
			n++;
		}
		/* One being read decides when it is due once read: now. */
		if (s->msgs[i].busy && s->msgs[i].loading) {
			s->msgs[i].forced = true;
			n++;
		}
		if (s->msgs[i].busy)
			continue;
		s->msgs[i].due = 0;
		s->msgs[i].forced = true;
		n++;
	}
	sched_arm(s);
	return n;
}

void sched_stop(struct sched *s)
{
	s->stopped = true;
	evtimer_del(s->timer);
}

size_t sched_count(const struct sched *s)
{
	return s->n;
}

size_t sched_inflight(const struct sched *s)
{
	return s->inflight;
}

bool sched_busy(const struct sched *s, const char *id)
{
	size_t pos;

	return sched_find(s, id, &pos) && s->msgs[pos].busy;
}

int sched_cancel(struct sched *s, const char *id, long uid)
{
	size_t pos;

	if (!sched_find(s, id, &pos))
		return 0;
	if (s->msgs[pos].busy) {
		s->msgs[pos].cancelled = true;
		s->msgs[pos].cancel_uid = uid;
		return 1;
	}
	sched_drop(s, id);
	return 0;
}

void sched_set_finished(struct sched *s, sched_finished_fn fn, void *ctx)
{
	s->finished = fn;
	s->finished_ctx = ctx;
}

int sched_busy_ids(const struct sched *s, char (**ids)[QID_SIZE], size_t *n)
{
	size_t k = 0, busy = 0;

	*n = 0;
	for (size_t i = 0; i < s->n; i++)
		busy += s->msgs[i].busy;
	if (!(*ids = malloc((busy ? busy : 1) * sizeof(**ids))))
		return -1;
	/* The index is sorted by id, so the copy is too. */
	for (size_t i = 0; i < s->n; i++)
		if (s->msgs[i].busy)
			memcpy((*ids)[k++], s->msgs[i].id, QID_SIZE);
	*n = k;
	return 0;
}
