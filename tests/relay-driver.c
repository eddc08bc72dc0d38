/* Test driver for the delivery engine: relay-driver [options] CONFIG SPOOL [ID...]
 *
 *   --pickup         first move every maildrop message into queue/ (queue_pickup)
 *   --hold MS        throttle hold (default: the engine's 15 s)
 *   --idle MS        idle connection timeout
 *   --down MS        how long a failed smarthost is skipped
 *   --timeout S      give up after S seconds (relay_shutdown, grace 1 s)
 *   -d               debug log lines
 *
 * relay-driver --inject SPOOL SENDER RCPT... < CONTENT queues one message
 * (CRLF content as given) straight into queue/ and prints its id: tests use
 * it when they need no front end processing.
 *
 * "--then" among the IDs starts a new batch once the one before it is done
 * (a second run in the same process: the sticky port is remembered).
 * Without IDs every message in queue/ is delivered.  Each envelope is read,
 * locked and handed to relay_deliver on one event loop; each outcome is
 * written with queue_update_state and printed as "ID RCPT STATE REASON".
 * Exit 0 when every message got its outcomes.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "conf/conf.h"
#include "relay/relay.h"
#include "lib/log.h"
#include "queue/queue.h"

struct job;

struct driver {
	struct event_base *base;
	struct queue *q;
	struct relay *relay;
	size_t pending;
	bool timed_out;
	char **ids;
	int nids, next;
	struct job **jobs;
};

struct job {
	struct driver *d;
	struct q_envelope *env;
	int lock;
};

static void driver_batch(struct driver *d);

static void driver_done(struct q_envelope *env, void *arg)
{
	struct job *j = arg;
	char err[256];

	if (queue_update_state(j->d->q, env, err, sizeof(err)) < 0)
		fprintf(stderr, "relay-driver: %s\n", err);
	for (size_t i = 0; i < env->nrcpts; i++)
		printf("%s %s %s %s\n", env->id, env->rcpts[i].addr, q_state_name(env->rcpts[i].state),
		    env->rcpts[i].last_reason ? env->rcpts[i].last_reason : "");
	fflush(stdout);
	if (--j->d->pending == 0)
		driver_batch(j->d);
}

static void driver_idle(void *arg)
{
	event_base_loopexit(((struct driver *)arg)->base, NULL);
}

static void driver_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct driver *d = arg;

	d->timed_out = true;
	relay_shutdown(d->relay, 1, driver_idle, d);
}

static int driver_pickup(struct queue *q)
{
	char (*ids)[QID_SIZE] = NULL, err[256];
	int n = queue_scan(q, Q_MAILDROP, &ids, 3600);

	for (int i = 0; i < n; i++)
		if (queue_pickup(q, ids[i], err, sizeof(err)) < 0)
			fprintf(stderr, "relay-driver: pickup %s: %s\n", ids[i], err);
	free(ids);
	return n < 0 ? -1 : 0;
}

static struct job *driver_start(struct driver *d, const char *id)
{
	struct job *j = calloc(1, sizeof(*j));
	char err[256];

	if (!j)
		return NULL;
	j->d = d;
	j->lock = queue_lock(d->q, id);
	if (j->lock < 0 || queue_read(d->q, Q_QUEUE, id, &j->env, err, sizeof(err)) < 0) {
		fprintf(stderr, "relay-driver: %s: %s\n", id, j->lock < 0 ? strerror(errno) : err);
		if (j->lock >= 0)
			close(j->lock);
		free(j);
		return NULL;
	}
	d->pending++;
	if (relay_deliver(d->relay, j->env, driver_done, j) < 0) {
		d->pending--;
		fprintf(stderr, "relay-driver: %s: out of memory\n", id);
	}
	return j;
}

struct opts {
	bool pickup, debug;
	long hold, idle, down, timeout;
	int first;
};

static int driver_args(int argc, char **argv, struct opts *o)
{
	int i;

	memset(o, 0, sizeof(*o));
	o->hold = o->idle = o->down = -1;
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--pickup") == 0)
			o->pickup = true;
		else if (strcmp(argv[i], "-d") == 0)
			o->debug = true;
		else if (i + 1 < argc && strcmp(argv[i], "--hold") == 0)
			o->hold = atol(argv[++i]);
		else if (i + 1 < argc && strcmp(argv[i], "--idle") == 0)
			o->idle = atol(argv[++i]);
		else if (i + 1 < argc && strcmp(argv[i], "--down") == 0)
			o->down = atol(argv[++i]);
		else if (i + 1 < argc && strcmp(argv[i], "--timeout") == 0)
			o->timeout = atol(argv[++i]);
		else
			return -1;
	}
	o->first = i;
	return argc - i >= 2 ? 0 : -1;
}

static void driver_tune(struct relay *r, const struct opts *o)
{
	struct relay_tuning t;

	relay_get_tuning(r, &t);
	if (o->hold >= 0)
		t.throttle_hold_ms = (unsigned)o->hold;
	if (o->idle >= 0)
		t.idle_timeout_ms = (unsigned)o->idle;
	if (o->down >= 0)
		t.down_ms = (unsigned)o->down;
	relay_set_tuning(r, &t);
}

static struct config *driver_config(const char *path)
{
	char *errors = NULL;
	struct config *c = conf_load(path, &errors);

	if (c && conf_load_secrets(c, NULL, &errors) < 0)
		fprintf(stderr, "%s", errors ? errors : "");
	else if (!c)
		fprintf(stderr, "%s", errors ? errors : "configuration error\n");
	free(errors);
	return c;
}

/* Start the IDs up to the next "--then"; the end of the loop after the last. */
static void driver_batch(struct driver *d)
{
	while (d->pending == 0 && d->next < d->nids) {
		for (; d->next < d->nids; d->next++) {
			if (strcmp(d->ids[d->next], "--then") == 0) {
				d->next++;
				break;
			}
			d->jobs[d->next] = driver_start(d, d->ids[d->next]);
		}
	}
	if (d->pending == 0)
		event_base_loopexit(d->base, NULL);
}

static void driver_run(struct driver *d, const struct opts *o)
{
	struct event *tev = NULL;

	driver_batch(d);
	if (o->timeout > 0) {
		struct timeval tv = { o->timeout, 0 };

		tev = evtimer_new(d->base, driver_timeout, d);
		evtimer_add(tev, &tv);
	}
	if (d->pending > 0)
		event_base_dispatch(d->base);
	if (tev)
		event_free(tev);
}

static void driver_cleanup(struct job **jobs, int n)
{
	for (int i = 0; i < n; i++) {
		if (!jobs[i])
			continue;
		q_envelope_free(jobs[i]->env);
		close(jobs[i]->lock);
		free(jobs[i]);
	}
	free(jobs);
}

static int driver_inject(int argc, char **argv)
{
	struct q_envelope env;
	struct q_rcpt *rcpts;
	struct queue *q;
	struct qwriter *w;
	char err[256], data[65536];
	size_t n;

	if (argc < 5)
		return 64;
	if (!(q = queue_open(argv[2], true, err, sizeof(err)))) {
		fprintf(stderr, "relay-driver: %s\n", err);
		return 73;
	}
	rcpts = calloc((size_t)argc - 4, sizeof(*rcpts));
	memset(&env, 0, sizeof(env));
	env.sender = argv[3];
	env.rcpts = rcpts;
	env.nrcpts = (size_t)argc - 4;
	env.uid = (long)getuid();
	env.origin = "relay-driver";
	for (size_t i = 0; rcpts && i < env.nrcpts; i++)
		rcpts[i].addr = argv[4 + i];
	w = rcpts ? qwriter_open(q, Q_QUEUE, &env, err, sizeof(err)) : NULL;
	if (!w) {
		fprintf(stderr, "relay-driver: %s\n", rcpts ? err : "out of memory");
		return 75;
	}
	while ((n = fread(data, 1, sizeof(data), stdin)) > 0)
		qwriter_write(w, data, n);
	printf("%s\n", qwriter_id(w));
	if (qwriter_commit(w, err, sizeof(err)) < 0) {
		fprintf(stderr, "relay-driver: %s\n", err);
		return 75;
	}
	free(rcpts);
	queue_close(q);
	return 0;
}

int main(int argc, char **argv)
{
	struct driver d = { 0 };
	struct opts o;
	struct config *conf;
	struct evdns_base *dns;
	char err[256], **ids, (*scan)[QID_SIZE] = NULL;
	struct job **jobs;
	int nids, rc = 0;

	if (argc > 1 && strcmp(argv[1], "--inject") == 0)
		return driver_inject(argc, argv);
	if (driver_args(argc, argv, &o) < 0) {
		fputs("usage: relay-driver [--pickup] [--hold MS] [--idle MS] [--down MS] "
		    "[--timeout S] [-d] CONFIG SPOOL [ID...]\n", stderr);
		return 64;
	}
	log_init("relay-driver", LOG_TARGET_STDERR, o.debug);
	if (!(conf = driver_config(argv[o.first])))
		return 78;
	if (!(d.q = queue_open(argv[o.first + 1], true, err, sizeof(err)))) {
		fprintf(stderr, "relay-driver: %s\n", err);
		return 73;
	}
	if (o.pickup)
		driver_pickup(d.q);
	ids = argv + o.first + 2;
	nids = argc - o.first - 2;
	if (nids == 0) {
		nids = queue_scan(d.q, Q_QUEUE, &scan, 3600);
		if (nids < 0)
			nids = 0;
		ids = calloc((size_t)nids + 1, sizeof(*ids));
		for (int i = 0; ids && i < nids; i++)
			ids[i] = scan[i];
		if (!ids)
			nids = 0;
	}
	d.base = event_base_new();
	dns = evdns_base_new(d.base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (!dns)
		dns = evdns_base_new(d.base, 0);
	d.relay = relay_new(d.base, dns, d.q, conf);
	jobs = calloc((size_t)nids + 1, sizeof(*jobs));
	if (!d.base || !dns || !d.relay || !jobs) {
		fputs("relay-driver: cannot set up the event loop\n", stderr);
		return 70;
	}
	driver_tune(d.relay, &o);
	d.ids = ids;
	d.nids = nids;
	d.jobs = jobs;
	driver_run(&d, &o);
	if (d.pending > 0 || d.timed_out)
		rc = 1;
	relay_free(d.relay);
	driver_cleanup(jobs, nids);
	if (scan)
		free(ids);
	free(scan);
	evdns_base_free(dns, 0);
	event_base_free(d.base);
	queue_close(d.q);
	conf_free(conf);
	return rc;
}
