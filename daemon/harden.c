#include "config.h"
#include "daemon/harden.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "lib/log.h"

#define HARDEN_PAUSE_SEC 1
#define HARDEN_LOG_EVERY 60		/* seconds between two "paused" lines */

void harden_process(void)
{
	struct rlimit rl = { 0, 0 };

	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		log_warn("prctl(PR_SET_DUMPABLE, 0): %s: other processes of this user "
		    "may read the daemon's memory", strerror(errno));
	if (setrlimit(RLIMIT_CORE, &rl) < 0)
		log_warn("setrlimit(RLIMIT_CORE, 0): %s", strerror(errno));
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rlim_t soft = rl.rlim_cur;

		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("cannot raise the open-files limit from %llu to %llu: %s",
			    (unsigned long long)soft, (unsigned long long)rl.rlim_max,
			    strerror(errno));
	}
}

/* ---- accept() back-off ---- */

struct harden_guard {
	struct evconnlistener *lev;
	struct event *resume;
	char what[128];
	time_t last_log;
	unsigned pauses;		/* since the last log line */
	struct harden_guard *next;
};

static struct harden_guard *harden_guards;

static struct harden_guard *harden_find(struct evconnlistener *lev)
{
	for (struct harden_guard *g = harden_guards; g; g = g->next)
		if (g->lev == lev)
			return g;
	return NULL;
}

static void harden_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct harden_guard *g = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(g->lev);
}

static bool harden_resource_error(int e)
{
	return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

static void harden_accept_failed(struct evconnlistener *lev)
{
	int e = EVUTIL_SOCKET_ERROR();
	struct harden_guard *g = harden_find(lev);
	struct timeval tv = { HARDEN_PAUSE_SEC, 0 };
	time_t now = time(NULL);

	if (!g || !harden_resource_error(e)) {
		/* ECONNABORTED and the like: one client's problem, not ours. */
		log_debug("accept on %s: %s", g ? g->what : "a listener", strerror(e));
		return;
	}
	evconnlistener_disable(lev);
	event_add(g->resume, &tv);
	g->pauses++;
	if (g->last_log == 0 || now - g->last_log >= HARDEN_LOG_EVERY) {
		log_err("accept on %s: %s: not accepting for %d s (%u pause(s) since the last "
		    "report); raise LimitNOFILE= or lower max_connections", g->what, strerror(e),
		    HARDEN_PAUSE_SEC, g->pauses);
		g->last_log = now;
		g->pauses = 0;
	}
}

static void harden_error_cb(struct evconnlistener *lev, void *arg)
{
	(void)arg;
	harden_accept_failed(lev);
}

int harden_guard(struct event_base *base, struct evconnlistener *lev, const char *what)
{
	struct harden_guard *g = calloc(1, sizeof(*g));

	if (!g || !(g->resume = evtimer_new(base, harden_resume_cb, g))) {
		free(g);
		return -1;
	}
	g->lev = lev;
	snprintf(g->what, sizeof(g->what), "%s", what);
	g->next = harden_guards;
	harden_guards = g;
	evconnlistener_set_error_cb(lev, harden_error_cb);
	return 0;
}

void harden_unguard(struct evconnlistener *lev)
{
	for (struct harden_guard **pp = &harden_guards; *pp; pp = &(*pp)->next) {
		struct harden_guard *g = *pp;

		if (g->lev == lev) {
			*pp = g->next;
			event_free(g->resume);
			free(g);
			return;
		}
	}
}

/* ---- local clients per uid ---- */

struct harden_uid {
	uid_t uid;
	unsigned n;
	bool logged;
};

struct harden_clients {
	char what[64];
	unsigned total;
	bool logged_total;
	struct harden_uid uids[HARDEN_CLIENTS_TOTAL];	/* n == 0: free slot */
};

struct harden_clients *harden_clients_new(const char *what)
{
	struct harden_clients *hc = calloc(1, sizeof(*hc));

	if (hc)
		snprintf(hc->what, sizeof(hc->what), "%s", what);
	return hc;
}

void harden_clients_free(struct harden_clients *hc)
{
	free(hc);
}

static struct harden_uid *harden_uid_slot(struct harden_clients *hc, uid_t uid, bool add)
{
	struct harden_uid *free_slot = NULL;

	for (size_t i = 0; i < HARDEN_CLIENTS_TOTAL; i++) {
		if (hc->uids[i].n > 0 && hc->uids[i].uid == uid)
			return &hc->uids[i];
		if (hc->uids[i].n == 0 && !free_slot)
			free_slot = &hc->uids[i];
	}
	if (add && free_slot) {
		free_slot->uid = uid;
		free_slot->logged = false;
	}
	return add ? free_slot : NULL;
}

bool harden_clients_admit(struct harden_clients *hc, uid_t uid)
{
	struct harden_uid *u;

	if (hc->total >= HARDEN_CLIENTS_TOTAL) {
		if (!hc->logged_total)
			log_warn("%s: %d local clients connected: refusing more until some "
			    "finish", hc->what, HARDEN_CLIENTS_TOTAL);
		hc->logged_total = true;
		return false;
	}
	u = harden_uid_slot(hc, uid, true);
	if (u->n >= HARDEN_CLIENTS_PER_UID) {
		if (!u->logged)
			log_warn("%s: uid %ld has %d clients connected: refusing more from it "
			    "until some finish", hc->what, (long)uid, HARDEN_CLIENTS_PER_UID);
		u->logged = true;
		return false;
	}
	u->n++;
	hc->total++;
	return true;
}

void harden_clients_release(struct harden_clients *hc, uid_t uid)
{
	struct harden_uid *u = harden_uid_slot(hc, uid, false);

	if (!u || hc->total == 0)
		return;
	u->n--;
	hc->total--;
	if (hc->total < HARDEN_CLIENTS_TOTAL / 2)
		hc->logged_total = false;
}
