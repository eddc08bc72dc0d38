#include "config.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "conf/conf.h"
#include "conf/hostdefaults.h"
#include "daemon/ctl.h"
#include "daemon/handover.h"
#include "daemon/harden.h"
#include "daemon/daemon.h"
#include "daemon/dsn.h"
#include "daemon/durable.h"
#include "daemon/listener.h"
#include "daemon/metrics.h"
#include "relay/maillog.h"
#include "daemon/notify.h"
#include "relay/oauth2.h"
#include "daemon/pickup.h"
#include "relay/relay.h"
#include "daemon/sched.h"
#include "relay/stats.h"
#include "relay/signer.h"
#include "relay/secaccess.h"
#include "lib/log.h"

#define MAIN_GRACE 8			/* deliveries in progress may finish */
#define MAIN_STOP_DEADLINE 9		/* then the loop ends whatever happens */

struct main_opts {
	const char *conf;
	bool test;
	bool version;
	bool debug;
};

/* The daemon's own state besides the shared context. */
struct main_state {
	struct daemon d;
	const char *conf_path;
	struct event *sig_hup, *sig_term, *sig_int;
	struct event *deadline;
	int exit_code;
};

static void main_usage(void)
{
	fputs("usage: smtprelayd [-C FILE|-c FILE] [-t] [-V] [-d]\n", stderr);
}

static int main_args(int argc, char **argv, struct main_opts *o)
{
	int ch;

	memset(o, 0, sizeof(*o));
	opterr = 0;
	while ((ch = getopt(argc, argv, "+C:c:tVd")) != -1) {
		switch (ch) {
		case 'C': case 'c': o->conf = optarg; break;
		case 't': o->test = true; break;
		case 'V': o->version = true; break;
		case 'd': o->debug = true; break;
		default:
			if (optopt == 'C' || optopt == 'c')
				fprintf(stderr, "smtprelayd: -%c needs a file name\n", optopt);
			else
				fprintf(stderr, "smtprelayd: unknown option -%c\n", optopt);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "smtprelayd: unexpected argument \"%s\"\n", argv[optind]);
		return -1;
	}
	return 0;
}

/* Each "FILE:LINE: message" line as a warning: -t may run as a user who
 * cannot read the secrets the daemon (as root) can. */
static void main_warn_lines(char *text)
{
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
		log_warn("%s", line);
}

/* Fail closed (smtprelayd(8) "Privileges"): a secret the service user cannot read stops the
 * start and -t, whoever runs them (systemd starts us as that user).  At
 * start we are the reader ourselves, whatever user that is. */
static int main_secrets(struct config *c, bool starting)
{
	char *errors = NULL, *warnings = NULL;
	int r = secaccess_load(c, starting, &errors, &warnings);

	if (warnings)
		main_warn_lines(warnings);
	if (errors) {
		fputs(errors, stderr);
		if (starting && !isatty(STDERR_FILENO))
			for (char *l = strtok(errors, "\n"); l; l = strtok(NULL, "\n"))
				log_err("%s", l);
	}
	free(errors);
	free(warnings);
	return r;
}

/* -t: exit 0 if the configuration is usable, 78 with FILE:LINE messages if not. */
static int main_check_config(const char *path)
{
	char *errors = NULL;
	struct config *c = conf_load(path, &errors);

	if (!c) {
		fputs(errors ? errors : "configuration error\n", stderr);
		free(errors);
		return EX_CONFIG;
	}
	if (main_secrets(c, false) < 0 || signer_check(c) < 0) {
		conf_free(c);
		return EX_CONFIG;
	}
	if (c->nsmarthosts == 0)
		log_warn("%s: no smarthost configured: mail will stay queued", path);
	hostdefaults_warn(c);
	conf_free(c);
	return EX_OK;
}


/* ---- spool and privileges ---- */

static const struct {
	const char *name;
	mode_t mode;			/* tools/install-spool's modes */
	bool group;			/* owned by the service group too */
} main_spool_dirs[] = {
	{ "", 0755, false },
	{ "maildrop", 03770, true },
	{ "queue", 0700, false },
	{ "corrupt", 0700, false },
	{ "public", 0755, false },
};
#define MAIN_NDIRS (sizeof(main_spool_dirs) / sizeof(main_spool_dirs[0]))

static void main_spool_path(const char *spool, size_t i, char *out, size_t len)
{
	snprintf(out, len, "%s%s%s", spool, main_spool_dirs[i].name[0] ? "/" : "",
	    main_spool_dirs[i].name);
}

/* Directories this start creates get install-spool's owners and modes;
 * existing ones are left as installed. */
static int main_open_spool(struct daemon *d, const struct passwd *pw)
{
	bool existed[MAIN_NDIRS];
	char path[4096], err[512];
	struct stat st;

	for (size_t i = 0; i < MAIN_NDIRS; i++) {
		main_spool_path(d->conf->spool_dir, i, path, sizeof(path));
		existed[i] = stat(path, &st) == 0;
	}
	d->queue = queue_open(d->conf->spool_dir, true, err, sizeof(err));
	if (!d->queue) {
		log_err("%s", err);
		return -1;
	}
	for (size_t i = 0; i < MAIN_NDIRS; i++) {
		if (existed[i])
			continue;
		main_spool_path(d->conf->spool_dir, i, path, sizeof(path));
		if (pw && chown(path, pw->pw_uid, main_spool_dirs[i].group ? pw->pw_gid : (gid_t)-1) < 0)
			log_warn("%s: chown to %s: %s", path, pw->pw_name, strerror(errno));
		if (chmod(path, main_spool_dirs[i].mode) < 0)
			log_warn("%s: chmod: %s", path, strerror(errno));
	}
	return 0;
}

static int main_drop_privileges(const struct passwd *pw)
{
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0) {
		log_err("cannot drop privileges to user %s: %s", pw->pw_name, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0 || getuid() != pw->pw_uid || geteuid() != pw->pw_uid ||
	    getegid() != pw->pw_gid) {
		log_err("privileges not dropped to user %s: refusing to run", pw->pw_name);
		return -1;
	}
	log_debug("running as user %s (uid %ld)", pw->pw_name, (long)pw->pw_uid);
	return 0;
}

/* ---- delivery ---- */

static int main_deliver(void *ctx, struct q_envelope *env, sched_done_fn done, void *arg)
{
	struct daemon *d = ctx;

	return relay_deliver(d->relay, env, done, arg);
}

/* Mail goes out only with a smarthost.  Without one the relay still runs:
 * it defers each message with "no smarthost configured in FILE", so mailq,
 * `smtprelay queue` and the log say why mail waits (README "Installing"). */
static int main_update_relay(struct daemon *d)
{
	if (d->conf->nsmarthosts == 0)
		log_warn("%s: no smarthost configured: mail will stay queued", d->conf->path);
	if (!d->relay) {
		d->relay = relay_new(d->base, d->dns, d->queue, d->conf);
		if (!d->relay) {
			log_err("cannot start the delivery engine: out of memory");
			return -1;
		}
	} else if (relay_reload(d->relay, d->conf) < 0) {
		log_err("delivery engine: out of memory applying the new configuration");
	}
	relay_set_signer(d->relay, d->signer);
	relay_set_token_saver(d->relay, durable_save_token, d);
	sched_set_deliverer(d->sched, main_deliver, d);
	return 0;
}

/* ---- signals ---- */

static void main_log_lines(int prio, char *text)
{
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
		log_msg(prio, "%s", line);
}

static void main_reload_warnings(const struct daemon *d, const struct config *c)
{
	if (d->listener && listener_changed(d->listener, c))
		log_warn("listen changed: the listener keeps its sockets until smtprelayd is restarted");
	if (strcmp(c->spool_dir, d->conf->spool_dir) != 0)
		log_warn("spool_dir changed: takes effect when smtprelayd is restarted");
	if (strcmp(c->user, d->conf->user) != 0)
		log_warn("user changed: takes effect when smtprelayd is restarted");
}

/* SIGHUP: a bad file keeps the old configuration, with each problem logged. */
static void main_reload(struct main_state *m)
{
	struct daemon *d = &m->d;
	char *errors = NULL;
	struct config *c;
	struct signer *signer, *old_signer;

	notify_reloading();
	log_info("reloading %s", m->conf_path);
	if (!(c = conf_load(m->conf_path, &errors))) {
		main_log_lines(LOG_ERR, errors ? errors : (char[]){ "configuration error" });
		log_err("%s: not reloaded: still running on the previous configuration", m->conf_path);
		free(errors);
		notify_send("READY=1");
		return;
	}
	if (conf_load_secrets(c, d->conf, &errors) < 0 && errors)
		main_log_lines(LOG_WARNING, errors);
	free(errors);
	errors = NULL;
	if (!(signer = signer_load(c, &errors))) {
		main_log_lines(LOG_ERR, errors ? errors : (char[]){ "cannot load DKIM keys" });
		log_err("%s: not reloaded: still running on the previous configuration", m->conf_path);
		free(errors);
		conf_free(c);
		notify_send("READY=1");
		return;
	}
	main_reload_warnings(d, c);
	/* The relay may still use the outgoing config until the next reload. */
	conf_free(d->prev_conf);
	d->prev_conf = d->conf;
	d->conf = c;
	old_signer = d->signer;
	d->signer = signer;
	main_update_relay(d);
	metrics_reload(d->metrics);
	signer_free(old_signer);
	log_info("configuration reloaded");
	notify_send("READY=1");
}

static void main_exit_loop(void *arg)
{
	struct main_state *m = arg;

	event_base_loopexit(m->d.base, NULL);
}

static void main_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	log_warn("shutdown deadline reached: abandoning deliveries in progress (they stay queued)");
	main_exit_loop(arg);
}

/* SIGTERM/SIGINT: stop accepting, drop unfinished sessions (their mail was
 * not acknowledged), let deliveries finish for a grace period, exit 0. */
static void main_stop(struct main_state *m, int sig)
{
	struct daemon *d = &m->d;
	struct timeval tv = { MAIN_STOP_DEADLINE, 0 };

	if (d->stopping)
		return;
	d->stopping = true;
	durable_stop_probe(d->durable);
	notify_send("STOPPING=1");
	log_info("stopping on signal %d", sig);
	listener_free(d->listener);
	d->listener = NULL;
	ctl_free(d->ctl);
	d->ctl = NULL;
	pickup_free(d->pickup);
	d->pickup = NULL;
	sched_stop(d->sched);
	if ((m->deadline = evtimer_new(d->base, main_deadline_cb, m)))
		evtimer_add(m->deadline, &tv);
	if (d->relay)
		relay_shutdown(d->relay, MAIN_GRACE, main_exit_loop, m);
	else
		main_exit_loop(m);
}

static void main_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	if (sig == SIGHUP)
		main_reload(arg);
	else
		main_stop(arg, (int)sig);
}

static int main_signals(struct main_state *m)
{
	struct event_base *b = m->d.base;

	signal(SIGPIPE, SIG_IGN);
	m->sig_hup = evsignal_new(b, SIGHUP, main_signal_cb, m);
	m->sig_term = evsignal_new(b, SIGTERM, main_signal_cb, m);
	m->sig_int = evsignal_new(b, SIGINT, main_signal_cb, m);
	if (!m->sig_hup || !m->sig_term || !m->sig_int || evsignal_add(m->sig_hup, NULL) < 0 ||
	    evsignal_add(m->sig_term, NULL) < 0 || evsignal_add(m->sig_int, NULL) < 0) {
		log_err("cannot set up signal handling");
		return -1;
	}
	return 0;
}

/* ---- start and end ---- */

static struct config *main_load_config(const char *path)
{
	char *errors = NULL;
	struct config *c = conf_load(path, &errors);

	if (!c) {
		fputs(errors ? errors : "configuration error\n", stderr);
		if (!isatty(STDERR_FILENO) && errors)
			main_log_lines(LOG_ERR, errors);
		free(errors);
		return NULL;
	}
	if (main_secrets(c, true) < 0) {
		conf_free(c);
		return NULL;
	}
	return c;
}

/* Under load one loop iteration may run many callbacks (sessions, TLS
 * writes, completions); after 1 ms of them libevent looks at the clock and
 * the sockets again, so that timers and new connections are not held up
 * by a long batch. */
static struct event_base *main_event_base(void)
{
	struct timeval max = { 0, 1000 };
	struct event_config *cfg = event_config_new();
	struct event_base *b;

	if (!cfg)
		return NULL;
	event_config_set_max_dispatch_interval(cfg, &max, -1, 0);
	b = event_base_new_with_config(cfg);
	event_config_free(cfg);
	return b;
}

static int main_event_setup(struct daemon *d)
{
	if (!(d->base = main_event_base())) {
		log_err("cannot create the event loop");
		return -1;
	}
	d->dns = evdns_base_new(d->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (!d->dns) {
		/* No /etc/resolv.conf: DNS lookups fail and the relay says so. */
		log_warn("no DNS resolver configuration: smarthost names cannot be resolved");
		d->dns = evdns_base_new(d->base, 0);
	}
	if (!d->dns || !(d->sched = sched_new(d)) || !(d->dsn_limit = dsn_limit_new())) {
		log_err("cannot start: out of memory");
		return -1;
	}
	return 0;
}

/* Everything that needs root: spool ownership, sockets; then drop it. */
/* As the service user: a rotated refresh token must be writable back
 * (smtprelayd(8) "Privileges"), or the next rotation would lose it. */
static int main_check_oauth2_files(const struct config *c)
{
	char err[512];
	int r = 0;

	for (size_t i = 0; i < c->nsmarthosts; i++) {
		if (!c->smarthosts[i].oauth2_token_url)
			continue;
		if (oauth2_check_files(&c->smarthosts[i], err, sizeof(err)) < 0) {
			log_err("%s: %s", c->path, err);
			r = -1;
		}
	}
	return r;
}

/* As the service user, as SIGHUP will: a key it cannot read stops the
 * start (exit 78) rather than letting mail go out unsigned. */
static int main_load_dkim(struct daemon *d)
{
	char *errors = NULL;

	if ((d->signer = signer_load(d->conf, &errors)))
		return EX_OK;
	fputs(errors ? errors : "cannot load DKIM keys: out of memory\n", stderr);
	if (!isatty(STDERR_FILENO) && errors)
		main_log_lines(LOG_ERR, errors);
	free(errors);
	return EX_CONFIG;
}

static int main_privileged(struct daemon *d)
{
	struct passwd *pw = NULL;
	char err[512];

	hostdefaults_warn(d->conf);
	if (geteuid() == 0 && !(pw = getpwnam(d->conf->user))) {
		log_err("%s: user \"%s\" does not exist (create it or set user)", d->conf->path,
		    d->conf->user);
		return EX_NOUSER;
	}
	if (main_open_spool(d, pw) < 0)
		return EX_CANTCREAT;
	if (!(d->listener = listener_new(d, err, sizeof(err)))) {
		log_err("%s", err);
		return EX_UNAVAILABLE;
	}
	if (!(d->ctl = ctl_new(d, err, sizeof(err)))) {
		log_err("%s", err);
		return EX_UNAVAILABLE;
	}
	if (!(d->handover = handover_new(d, err, sizeof(err)))) {
		log_err("%s", err);
		return EX_UNAVAILABLE;
	}
	if (!(d->metrics = metrics_new(d, err, sizeof(err)))) {
		log_err("%s", err);
		return EX_UNAVAILABLE;
	}
	if (pw && pw->pw_uid == 0)
		log_warn("%s: user is root: running with full privileges", d->conf->path);
	else if (pw && main_drop_privileges(pw) < 0)
		return EX_OSERR;
	harden_process();
	if (main_check_oauth2_files(d->conf) < 0)
		return EX_CONFIG;
	return main_load_dkim(d);
}

static int main_serve(struct main_state *m)
{
	struct daemon *d = &m->d;

	char err[512];

	if (main_signals(m) < 0 || main_update_relay(d) < 0 || sched_load(d->sched) < 0)
		return EX_SOFTWARE;
	/* After the privilege drop: the worker threads run as the service user. */
	if (!(d->durable = durable_new(d, err, sizeof(err)))) {
		log_err("%s", err);
		return EX_OSERR;
	}
	if (!(d->pickup = pickup_new(d))) {
		log_err("cannot watch the maildrop: out of memory");
		return EX_SOFTWARE;
	}
	pickup_scan(d->pickup);
	log_info("smtprelayd %s ready", PACKAGE_VERSION);
	notify_send("READY=1");
	if (event_base_dispatch(d->base) < 0) {
		log_err("event loop failed");
		return EX_SOFTWARE;
	}
	log_info("stopped");
	return EX_OK;
}

static void main_cleanup(struct main_state *m)
{
	struct daemon *d = &m->d;

	/* Writes in flight complete (and their messages get scheduled) first. */
	durable_free(d->durable);
	d->durable = NULL;	/* sessions freed below write synchronously */
	listener_free(d->listener);
	ctl_free(d->ctl);
	handover_free(d->handover);
	metrics_free(d->metrics);
	pickup_free(d->pickup);
	if (d->relay)
		relay_free(d->relay);
	sched_free(d->sched);
	dsn_limit_free(d->dsn_limit);
	if (d->dns)
		evdns_base_free(d->dns, 0);
	if (m->sig_hup)
		event_free(m->sig_hup);
	if (m->sig_term)
		event_free(m->sig_term);
	if (m->sig_int)
		event_free(m->sig_int);
	if (m->deadline)
		event_free(m->deadline);
	if (d->base)
		event_base_free(d->base);
	if (d->queue)
		queue_close(d->queue);
	signer_free(d->signer);
	conf_free(d->prev_conf);
	conf_free(d->conf);
	stats_reset();
}

static int main_run(const char *path)
{
	struct main_state m = { .conf_path = path };
	int r;

	if (!(m.d.conf = main_load_config(path)))
		return EX_CONFIG;
	stats_start();
	r = main_event_setup(&m.d) < 0 ? EX_OSERR : main_privileged(&m.d);
	if (r == EX_OK)
		r = main_serve(&m);
	main_cleanup(&m);
	return r;
}

int main(int argc, char **argv)
{
	struct main_opts o;

	if (main_args(argc, argv, &o) < 0) {
		main_usage();
		return EX_USAGE;
	}
	if (o.version) {
		printf("smtprelayd %s\n", PACKAGE_VERSION);
		return EX_OK;
	}
	maillog_init(o.test, o.debug);
	if (o.test)
		return main_check_config(conf_default_path(o.conf));
	return main_run(conf_default_path(o.conf));
}
