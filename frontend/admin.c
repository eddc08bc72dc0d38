#include "config.h"
#include "frontend/admin.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sysexits.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "conf/hostdefaults.h"
#include "lib/rfc3339.h"
#include "queue/control.h"
#include "queue/handoff.h"
#include "queue/mailq.h"
#include "queue/qjson.h"
#include "lib/log.h"
#include "queue/submit.h"

#include "frontend/oauth2_login.h"
#include "frontend/probe.h"
#include "frontend/keygen.h"
#include "relay/signer.h"
#include "relay/secaccess.h"

#define ADMIN_POLL_MS 200		/* send-test: how often the daemon is asked */
#define ADMIN_MAX_RCPTS 64		/* send-test: recipients reported */

struct admin {
	const char *conf_path;
	struct config *conf;
};

/* Answers of the daemon, collected in memory. */
struct admin_answer {
	char *text;
	size_t len;
	char status[1024];
	char err[512];
};

static void admin_usage(FILE *f)
{
	fputs("usage: smtprelay [-C FILE|-c FILE] COMMAND [ARGS]\n"
	    "commands:\n"
	    "  queue [--json]             list the queue (mailq layout, or JSON)\n"
	    "  flush                      deliver deferred mail now, lifting every hold\n"
	    "  delete ID... | --all       remove messages (root or the service user)\n"
	    "  show ID                    a message's envelope, recipients and headers\n"
	    "  status [--json]            daemon, queue counts, smarthosts, counters\n"
	    "  metrics                    the counters in Prometheus text format\n"
	    "  check-config               check the configuration (like smtprelayd -t)\n"
	    "  send-test [--wait SECONDS] ADDRESS\n"
	    "                             queue a test message and wait for the outcome\n"
	    "  probe [--json]             try every smarthost port without sending mail\n"
	    "  oauth2-login NAME          get an OAuth2 refresh token for smarthost NAME\n"
	    "  dkim-keygen [--rsa BITS | --ed25519] [-o FILE] DOMAIN SELECTOR\n"
	    "                             make a DKIM key, print its DNS record\n"
	    "options: -C FILE, -c FILE (configuration), -h/--help, -V/--version\n"
	    "See smtprelay(8).\n", f);
}

static int admin_bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int admin_bad_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("smtprelay: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	admin_usage(stderr);
	return EX_USAGE;
}

/* ---- talking to the daemon ---- */

static enum control_result admin_ask(const struct admin *a, const char *req,
    struct admin_answer *ans)
{
	FILE *mem;
	enum control_result r;

	ans->text = NULL;
	ans->len = 0;
	ans->status[0] = ans->err[0] = '\0';
	if (!(mem = open_memstream(&ans->text, &ans->len))) {
		snprintf(ans->err, sizeof(ans->err), "out of memory");
		return CONTROL_FAIL;
	}
	r = control_query(a->conf->spool_dir, req, mem, ans->status, sizeof(ans->status),
	    ans->err, sizeof(ans->err));
	if (fclose(mem) != 0 || !ans->text) {
		snprintf(ans->err, sizeof(ans->err), "out of memory");
		return CONTROL_FAIL;
	}
	return r;
}

static void admin_answer_free(struct admin_answer *ans)
{
	free(ans->text);
	ans->text = NULL;
}

static int admin_write_out(const char *text, size_t len)
{
	if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0) {
		fprintf(stderr, "smtprelay: writing the output: %s\n", strerror(errno));
		return EX_IOERR;
	}
	return EX_OK;
}

/* An "error ..." answer: permission problems are 77, the rest 1. */
static int admin_refused(const char *text)
{
	fprintf(stderr, "smtprelay: %s\n", text);
	return strncmp(text, "permission denied", 17) == 0 ? EX_NOPERM : 1;
}

/* ---- reading the spool directly (daemon down) ---- */

static bool admin_privileged(const struct config *c)
{
	uid_t uid = getuid();
	struct passwd *pw;

	if (uid == 0)
		return true;
	pw = getpwnam(c->user);
	return pw && pw->pw_uid == uid;
}

static void admin_note_down(void)
{
	fputs("smtprelay: smtprelayd is not running: showing the spool directly\n", stderr);
}

static int admin_spool_error(const struct admin *a, const char *err, int errnum)
{
	if (errnum == EACCES || errnum == EPERM) {
		fprintf(stderr, "smtprelay: smtprelayd is not running and the queue is readable only "
		    "by root and %s\n", a->conf->user);
		return EX_NOPERM;
	}
	fprintf(stderr, "smtprelay: %s\n", err);
	return EX_IOERR;
}

static struct queue *admin_spool(const struct admin *a, int *rc)
{
	char err[512];
	struct queue *q = queue_open(a->conf->spool_dir, false, err, sizeof(err));

	if (!q)
		*rc = admin_spool_error(a, err, errno);
	return q;
}

/* ---- queue ---- */

/* arg: "json" for the JSON listing, NULL for the mailq layout. */
static int admin_queue_direct(const struct admin *a, const char *arg)
{
	bool json = arg != NULL;

	struct queue *q;
	char err[512], *text = NULL;
	size_t len = 0;
	FILE *mem;
	int rc = EX_OK, r, saved;

	admin_note_down();
	if (!(q = admin_spool(a, &rc)))
		return rc;
	if (!(mem = open_memstream(&text, &len))) {
		queue_close(q);
		fprintf(stderr, "smtprelay: out of memory\n");
		return EX_OSERR;
	}
	r = json ? qjson_print(q, mem, err, sizeof(err)) : mailq_print(q, mem, err, sizeof(err));
	saved = errno;
	queue_close(q);
	fclose(mem);
	rc = r < 0 ? admin_spool_error(a, err, saved) : admin_write_out(text, len);
	free(text);
	return rc;
}

/* Print the daemon's answer to req; with the daemon down, read the spool
 * directly instead (direct(a, arg)). */
static int admin_print_answer(struct admin *a, const char *req,
    int (*direct)(const struct admin *a, const char *arg), const char *arg)
{
	struct admin_answer ans;
	int rc;

	switch (admin_ask(a, req, &ans)) {
	case CONTROL_OK:
		rc = admin_write_out(ans.text, ans.len);
		break;
	case CONTROL_DOWN:
		rc = direct(a, arg);
		break;
	case CONTROL_ERROR:
		rc = admin_refused(ans.status);
		break;
	default:
		fprintf(stderr, "smtprelay: %s\n", ans.err);
		rc = EX_UNAVAILABLE;
		break;
	}
	admin_answer_free(&ans);
	return rc;
}

static int admin_queue(struct admin *a, int argc, char **argv)
{
	bool json = false;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else
			return admin_bad_usage("queue: unexpected argument \"%s\"", argv[i]);
	}
	return admin_print_answer(a, json ? "queue json" : "queue", admin_queue_direct,
	    json ? "json" : NULL);
}

/* ---- flush ---- */

static int admin_flush(struct admin *a, int argc, char **argv)
{
	struct admin_answer ans;
	enum control_result r;

	if (argc > 1)
		return admin_bad_usage("flush: unexpected argument \"%s\"", argv[1]);
	r = admin_ask(a, "flush", &ans);
	admin_answer_free(&ans);
	if (r == CONTROL_OK) {
		printf("%s\n", ans.status);
		return EX_OK;
	}
	if (r == CONTROL_ERROR)
		return admin_refused(ans.status);
	fprintf(stderr, "smtprelay: cannot flush the queue: %s\n", ans.err);
	return EX_UNAVAILABLE;
}

/* ---- delete ---- */

static void admin_log_removed(const char *id)
{
	/* The daemon logs this when it does the removal; here the tool does. */
	openlog("smtprelay", LOG_PID, LOG_MAIL);
	syslog(LOG_INFO, "%s: removed by uid %ld", id, (long)getuid());
	closelog();
	printf("%s: removed\n", id);
}

/* 0 removed, 1 unknown, -1 error (printed). */
static int admin_remove_direct(struct queue *q, const char *id)
{
	int fd;

	if (!queue_id_valid(id))
		return 1;
	fd = queue_lock(q, id);
	if (fd < 0 && errno == EWOULDBLOCK) {
		fprintf(stderr, "smtprelay: %s: being worked on by another process; try again\n", id);
		return -1;
	}
	if (fd >= 0 || errno != ENOENT) {
		if (queue_remove(q, Q_QUEUE, id) == 0) {
			close(fd);
			admin_log_removed(id);
			return 0;
		}
		if (fd >= 0)
			close(fd);
	}
	if (queue_remove(q, Q_MAILDROP, id) == 0) {
		admin_log_removed(id);
		return 0;
	}
	if (errno == ENOENT)
		return 1;
	fprintf(stderr, "smtprelay: %s: cannot remove: %s\n", id, strerror(errno));
	return -1;
}

static int admin_delete_all_direct(struct queue *q)
{
	char (*ids)[QID_SIZE] = NULL;
	int rc = EX_OK;

	for (int a = 0; a < 2; a++) {
		int n = queue_scan(q, a == 0 ? Q_QUEUE : Q_MAILDROP, &ids, 0);

		if (n < 0 && !(errno == ENOENT && a == 0)) {
			fprintf(stderr, "smtprelay: cannot list the queue: %s\n", strerror(errno));
			rc = EX_IOERR;
		}
		for (int i = 0; i < n; i++)
			if (admin_remove_direct(q, ids[i]) < 0)
				rc = 1;
		free(ids);
		ids = NULL;
	}
	return rc;
}

static int admin_delete_direct(const struct admin *a, int argc, char **argv, bool all)
{
	struct queue *q;
	int rc = EX_OK;

	admin_note_down();
	if (!admin_privileged(a->conf)) {
		fprintf(stderr, "smtprelay: permission denied: only root or %s may delete mail\n",
		    a->conf->user);
		return EX_NOPERM;
	}
	if (!(q = admin_spool(a, &rc)))
		return rc;
	if (all)
		rc = admin_delete_all_direct(q);
	for (int i = 1; !all && i < argc; i++) {
		int r = admin_remove_direct(q, argv[i]);

		if (r == 1)
			fprintf(stderr, "smtprelay: %s: no such message in the queue\n", argv[i]);
		if (r != 0)
			rc = 1;
	}
	queue_close(q);
	return rc;
}

/* One request per id: one bad id does not stop the others. */
static int admin_delete_ask(struct admin *a, const char *what, int *rc)
{
	struct admin_answer ans;
	char req[128];
	enum control_result r;

	snprintf(req, sizeof(req), "delete %s", what);
	r = admin_ask(a, req, &ans);
	admin_answer_free(&ans);
	if (r == CONTROL_OK) {
		printf("%s\n", ans.status);
	} else if (r == CONTROL_ERROR) {
		*rc = admin_refused(ans.status);
		return *rc == EX_NOPERM ? -1 : 0;
	} else if (r == CONTROL_FAIL) {
		fprintf(stderr, "smtprelay: %s\n", ans.err);
		*rc = EX_UNAVAILABLE;
		return -1;
	}
	return r == CONTROL_DOWN ? 1 : 0;
}

static int admin_delete(struct admin *a, int argc, char **argv)
{
	bool all = argc == 2 && strcmp(argv[1], "--all") == 0;
	int rc = EX_OK, r;

	if (argc < 2)
		return admin_bad_usage("%s: give queue ids or --all", argv[0]);
	for (int i = 1; i < argc && !all; i++) {
		if (argv[i][0] == '-')
			return admin_bad_usage("delete: unexpected option \"%s\"", argv[i]);
		if (strlen(argv[i]) > QID_LEN)
			return admin_bad_usage("delete: not a queue id: \"%s\"", argv[i]);
	}
	for (int i = all ? 0 : 1; i < argc; i++) {
		r = admin_delete_ask(a, all ? "all" : argv[i], &rc);
		if (r < 0)
			return rc;
		if (r == 1)
			return admin_delete_direct(a, argc, argv, all);
		if (all)
			break;
	}
	return rc;
}

/* ---- show ---- */

static int admin_show_direct(const struct admin *a, const char *id)
{
	struct q_envelope *env = NULL;
	struct queue *q;
	char err[512];
	int rc = EX_OK;

	admin_note_down();
	if (!(q = admin_spool(a, &rc)))
		return rc;
	for (int i = 0; i < 2; i++) {
		enum q_area area = i == 0 ? Q_QUEUE : Q_MAILDROP;

		if (!queue_id_valid(id)) {
			errno = ENOENT;
			break;
		}
		if (queue_read(q, area, id, &env, err, sizeof(err)) == 0) {
			mailq_show(stdout, env, area == Q_QUEUE ? "queued" : "maildrop", q, area);
			q_envelope_free(env);
			queue_close(q);
			return fflush(stdout) == 0 ? EX_OK : EX_IOERR;
		}
		if (errno != ENOENT) {
			queue_close(q);
			return admin_spool_error(a, err, errno);
		}
	}
	queue_close(q);
	fprintf(stderr, "smtprelay: %s: no such message in the queue\n", id);
	return 1;
}

static int admin_show(struct admin *a, int argc, char **argv)
{
	char req[128];

	if (argc != 2)
		return admin_bad_usage("%s: give one queue id", argv[0]);
	if (strlen(argv[1]) > QID_LEN || argv[1][0] == '-')
		return admin_bad_usage("show: not a queue id: \"%s\"", argv[1]);
	snprintf(req, sizeof(req), "show %s", argv[1]);
	return admin_print_answer(a, req, admin_show_direct, argv[1]);
}

/* ---- status ---- */

static const char *admin_mode_name(enum conf_tls_mode m)
{
	return m == CONF_TLS_IMPLICIT ? "tls" : m == CONF_TLS_NONE ? "none" : "starttls";
}

static void admin_status_config(const struct config *c)
{
	printf("listen (configured):");
	for (size_t i = 0; i < c->nlisten; i++)
		printf("%s%s", i ? ", " : " ", c->listen[i].spec);
	printf("%s", c->nlisten ? "\n" : " none\n");
	if (c->nsmarthosts == 0)
		printf("smarthosts: none configured (mail stays queued)\n");
	for (size_t i = 0; i < c->nsmarthosts; i++) {
		const struct conf_smarthost *sh = &c->smarthosts[i];

		printf("smarthost %s (configured): %s, ports", sh->name, sh->host);
		for (size_t j = 0; j < sh->nports; j++)
			printf("%s%u/%s", j ? ", " : " ", sh->ports[j].port,
			    admin_mode_name(sh->ports[j].mode));
		putchar('\n');
	}
}

static int admin_status_down(const struct admin *a, const char *why)
{
	struct mailq_counts k;
	struct queue *q;
	char err[512];

	printf("smtprelayd: not running (%s)\nconfig: %s\nspool: %s\n", why, a->conf->path,
	    a->conf->spool_dir);
	if ((q = queue_open(a->conf->spool_dir, false, err, sizeof(err))) &&
	    mailq_count(q, NULL, NULL, &k, err, sizeof(err)) == 0)
		mailq_counts_print(stdout, &k);
	else if (errno == EACCES || errno == EPERM)
		printf("queue: not readable (only root and %s may read the spool)\n", a->conf->user);
	else
		printf("queue: %s\n", err);
	queue_close(q);
	admin_status_config(a->conf);
	return ADMIN_EXIT_DOWN;
}

/* status --json: the daemon's numbers, or why there are none. */
static int admin_status_json(struct admin *a)
{
	struct admin_answer ans;
	enum control_result r = admin_ask(a, "status json", &ans);
	int rc;

	if (r == CONTROL_OK) {
		rc = admin_write_out(ans.text, ans.len);
	} else {
		printf("{\"running\": false, \"error\": ");
		qjson_string(stdout, r == CONTROL_ERROR ? ans.status : r == CONTROL_DOWN ?
		    "nothing answers on the control socket" : ans.err);
		printf("}\n");
		rc = ADMIN_EXIT_DOWN;
	}
	admin_answer_free(&ans);
	return rc;
}

static int admin_status(struct admin *a, int argc, char **argv)
{
	struct admin_answer ans;
	enum control_result r;
	int rc;

	if (argc == 2 && strcmp(argv[1], "--json") == 0)
		return admin_status_json(a);
	if (argc > 1)
		return admin_bad_usage("status: unexpected argument \"%s\"", argv[1]);
	r = admin_ask(a, "status", &ans);
	if (r == CONTROL_OK) {
		printf("smtprelayd: running\n");
		rc = admin_write_out(ans.text, ans.len);
	} else if (r == CONTROL_DOWN) {
		rc = admin_status_down(a, "nothing answers on the control socket");
	} else {
		fprintf(stderr, "smtprelay: %s\n", r == CONTROL_ERROR ? ans.status : ans.err);
		rc = admin_status_down(a, "the control socket does not answer properly");
	}
	admin_answer_free(&ans);
	return rc;
}

/* ---- metrics ---- */

static int admin_metrics(struct admin *a, int argc, char **argv)
{
	struct admin_answer ans;
	enum control_result r;
	int rc;

	if (argc > 1)
		return admin_bad_usage("metrics: unexpected argument \"%s\"", argv[1]);
	r = admin_ask(a, "metrics", &ans);
	if (r == CONTROL_OK) {
		rc = admin_write_out(ans.text, ans.len);
	} else {
		fprintf(stderr, "smtprelay: metrics: %s (the counters live in the daemon: start "
		    "smtprelayd)\n", r == CONTROL_ERROR ? ans.status : r == CONTROL_DOWN ?
		    "smtprelayd is not running (nothing answers on the control socket)" : ans.err);
		rc = r == CONTROL_ERROR ? admin_refused(ans.status) : ADMIN_EXIT_DOWN;
	}
	admin_answer_free(&ans);
	return rc;
}

/* ---- check-config ---- */

static void admin_warn_lines(char *text)
{
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
		log_warn("%s", line);
}

/* Secrets as the service user sees them (smtprelayd(8) "Privileges"); -1 after printing why. */
static int admin_fail_closed(struct admin *a)
{
	char *errors = NULL, *warnings = NULL;
	int r = secaccess_load(a->conf, false, &errors, &warnings);

	if (warnings)
		admin_warn_lines(warnings);
	if (errors)
		fputs(errors, stderr);
	free(errors);
	free(warnings);
	return r;
}

static int admin_check_config(struct admin *a, int argc, char **argv)
{
	if (argc > 1)
		return admin_bad_usage("check-config: unexpected argument \"%s\"", argv[1]);
	/* The config itself was loaded (and found valid) before any command. */
	if (admin_fail_closed(a) < 0 || signer_check(a->conf) < 0)
		return EX_CONFIG;
	if (a->conf->nsmarthosts == 0)
		log_warn("%s: no smarthost configured: mail will stay queued", a->conf->path);
	hostdefaults_warn(a->conf);
	printf("%s: ok\n", a->conf->path);
	return EX_OK;
}

/* ---- send-test ---- */

struct admin_test {
	const char *address;
	long wait;
	char id[QID_SIZE];
};

static int admin_test_args(int argc, char **argv, struct admin_test *t)
{
	t->address = NULL;
	t->wait = ADMIN_WAIT_DEFAULT;
	for (int i = 1; i < argc; i++) {
		const char *v = NULL;
		char *end;

		if (strcmp(argv[i], "--wait") == 0) {
			if (++i >= argc)
				return admin_bad_usage("send-test: %s needs a number of seconds", "--wait");
			v = argv[i];
		} else if (strncmp(argv[i], "--wait=", 7) == 0) {
			v = argv[i] + 7;
		} else if (argv[i][0] == '-' || t->address) {
			return admin_bad_usage("send-test: unexpected argument \"%s\"", argv[i]);
		} else {
			t->address = argv[i];
			continue;
		}
		errno = 0;
		t->wait = strtol(v, &end, 10);
		if (errno || end == v || *end || t->wait < 0 || t->wait > 86400)
			return admin_bad_usage("send-test: bad --wait value \"%s\"", v);
	}
	if (!t->address)
		return admin_bad_usage("%s: give a recipient address", "send-test");
	return EX_OK;
}

static char *admin_test_body(const struct admin *a, const char *to, const char *user)
{
	char when[40], *msg = NULL;

	rfc3339_local(time(NULL), when, sizeof(when));
	if (asprintf(&msg, "To: %s\nSubject: smtprelay test from %s\n\n"
	    "This is a test message from smtprelay on %s,\n"
	    "sent with `smtprelay send-test` by %s (uid %ld) at %s.\n\n"
	    "configuration: %s\nspool: %s\n", to, a->conf->hostname, a->conf->hostname, user,
	    (long)getuid(), when, a->conf->path, a->conf->spool_dir) < 0)
		return NULL;
	return msg;
}

/* Through the normal submission path: the maildrop, or the daemon's
 * handoff socket when this user cannot write there. */
static int admin_test_submit(const struct admin *a, struct submit_params *p, const char *msg,
    char id[QID_SIZE], struct submit_error *e)
{
	struct submit *s;
	char err[512];
	int r;

	p->handover = handoff_needed(a->conf->spool_dir);
	if (p->handover && (p->handover_fd = handoff_memfd()) < 0) {
		snprintf(e->text, sizeof(e->text), "memfd_create: %s", strerror(errno));
		e->exit_code = EX_OSERR;
		return -1;
	}
	if (!p->handover &&
	    !(p->queue = queue_open(a->conf->spool_dir, false, err, sizeof(err)))) {
		snprintf(e->text, sizeof(e->text), "%s", err);
		e->exit_code = errno == EACCES ? EX_TEMPFAIL : EX_CANTCREAT;
		return -1;
	}
	r = (s = submit_begin(p, e)) ? submit_write(s, msg, strlen(msg), e) : -1;
	if (r < 0 && s)
		submit_abort(s);
	else if (r == 0)
		r = submit_commit(s, id, e);
	queue_close(p->queue);
	if (r == 0 && p->handover &&
	    handoff_send(a->conf->spool_dir, p->handover_fd, id, QID_SIZE, e->text,
	    sizeof(e->text)) < 0) {
		e->exit_code = EX_TEMPFAIL;
		r = -1;
	}
	if (p->handover)
		close(p->handover_fd);
	return r;
}

static int admin_test_queue(const struct admin *a, struct admin_test *t)
{
	struct submit_params p = { 0 };
	struct submit_error e = { 0 };
	struct passwd *pw = getpwuid(getuid());
	const char *user = pw && pw->pw_name[0] ? pw->pw_name : "nobody";
	char *rcpts[1] = { (char *)t->address };
	char *msg = admin_test_body(a, t->address, user);
	int r;

	if (!msg) {
		fprintf(stderr, "smtprelay: out of memory\n");
		return EX_OSERR;
	}
	p.conf = a->conf;
	p.area = Q_MAILDROP;
	p.sender = user;		/* becomes from_address when that is set */
	p.rcpts = rcpts;
	p.nrcpts = 1;
	p.from_stdin = true;		/* LF line ends become CRLF */
	p.full_name = "smtprelay send-test";
	p.uid = (long)getuid();
	p.origin = "smtprelay send-test";
	r = admin_test_submit(a, &p, msg, t->id, &e);
	free(msg);
	if (r < 0) {
		fprintf(stderr, "smtprelay: send-test: %s\n", e.text);
		return e.exit_code ? e.exit_code : EX_SOFTWARE;
	}
	printf("queued as %s\n", t->id);
	fflush(stdout);
	return EX_OK;
}

/* A recipient as "state ID" reports it. */
struct admin_rcpt {
	const char *state, *addr, *reason;
	unsigned attempts;
};

struct admin_state {
	const char *status;
	struct admin_rcpt r[ADMIN_MAX_RCPTS];
	size_t n;
};

/* Parse the answer in place ("status S", "rcpt STATE N ADDR", "reason T"). */
static void admin_state_parse(char *text, struct admin_state *st)
{
	char *save = NULL;

	memset(st, 0, sizeof(*st));
	st->status = "";
	for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		if (strncmp(l, "status ", 7) == 0) {
			st->status = l + 7;
		} else if (strncmp(l, "rcpt ", 5) == 0 && st->n < ADMIN_MAX_RCPTS) {
			struct admin_rcpt *r = &st->r[st->n];
			char *sp1 = strchr(l + 5, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;

			if (!sp2)
				continue;
			*sp1 = *sp2 = '\0';
			r->state = l + 5;
			r->attempts = (unsigned)strtoul(sp1 + 1, NULL, 10);
			r->addr = sp2 + 1;
			st->n++;
		} else if (strncmp(l, "reason ", 7) == 0 && st->n > 0) {
			st->r[st->n - 1].reason = l + 7;
		}
	}
}

/* true once every recipient has an outcome worth reporting: delivered,
 * failed, or deferred after an attempt. */
static bool admin_state_settled(const struct admin_state *st)
{
	if (strcmp(st->status, "finished") == 0)
		return true;
	if (st->n == 0 || strcmp(st->status, "delivering") == 0)
		return false;
	for (size_t i = 0; i < st->n; i++)
		if (strcmp(st->r[i].state, "pending") == 0 ||
		    (strcmp(st->r[i].state, "deferred") == 0 && st->r[i].attempts == 0))
			return false;
	return true;
}

static int admin_state_report(const struct admin_state *st)
{
	int rc = EX_OK;

	for (size_t i = 0; i < st->n; i++) {
		const struct admin_rcpt *r = &st->r[i];
		const char *why = r->reason ? r->reason : "no reason given";

		if (strcmp(r->state, "delivered") == 0) {
			printf("delivered to %s via %s\n", r->addr, why);
			continue;
		}
		if (strcmp(r->state, "failed") == 0) {
			printf("bounced: %s: %s\n", r->addr, why);
			if (rc == EX_OK)
				rc = 1;
		} else {
			printf("deferred: %s: %s\n", r->addr, why);
			rc = EX_TEMPFAIL;
		}
	}
	return rc;
}

static void admin_sleep_ms(int ms)
{
	poll(NULL, 0, ms);
}

/* Ask the daemon about the message until it settles or the time is up. */
static int admin_test_wait(struct admin *a, const struct admin_test *t)
{
	struct timespec start, now;
	struct admin_answer ans;
	struct admin_state st;
	char req[64];

	snprintf(req, sizeof(req), "state %s", t->id);
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		enum control_result r = admin_ask(a, req, &ans);

		if (r == CONTROL_DOWN) {
			admin_answer_free(&ans);
			printf("smtprelayd is not running: the message stays queued and goes out when "
			    "smtprelayd starts\n");
			return EX_TEMPFAIL;
		}
		if (r != CONTROL_OK) {
			fprintf(stderr, "smtprelay: %s\n", r == CONTROL_ERROR ? ans.status : ans.err);
			admin_answer_free(&ans);
			return r == CONTROL_ERROR ? 1 : EX_UNAVAILABLE;
		}
		admin_state_parse(ans.text, &st);
		if (admin_state_settled(&st)) {
			int rc = admin_state_report(&st);

			admin_answer_free(&ans);
			return rc;
		}
		admin_answer_free(&ans);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - start.tv_sec >= t->wait) {
			printf("not delivered yet after %ld seconds: still queued as %s\n", t->wait,
			    t->id);
			return EX_TEMPFAIL;
		}
		admin_sleep_ms(ADMIN_POLL_MS);
	}
}

static int admin_send_test(struct admin *a, int argc, char **argv)
{
	struct admin_test t;
	int rc = admin_test_args(argc, argv, &t);

	if (rc != EX_OK || (rc = admin_test_queue(a, &t)) != EX_OK)
		return rc;
	return admin_test_wait(a, &t);
}

/* ---- probe, oauth2-login (other modules) ---- */

static int admin_load_secrets(struct admin *a)
{
	char *errors = NULL;

	if (conf_load_secrets(a->conf, NULL, &errors) < 0 && errors)
		admin_warn_lines(errors);
	free(errors);
	return 0;
}

static int admin_probe(struct admin *a, int argc, char **argv)
{
	bool json = false;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else
			return admin_bad_usage("probe: unexpected argument \"%s\"", argv[i]);
	}
	if (admin_fail_closed(a) < 0)
		return EX_CONFIG;
	return probe_run(a->conf, json, stdout);
}

static int admin_oauth2_login(struct admin *a, int argc, char **argv)
{
	admin_load_secrets(a);
	return oauth2_login_main(a->conf, argc, argv);
}

static int admin_dkim_keygen(struct admin *a, int argc, char **argv)
{
	return keygen_main(a->conf, argc, argv);
}

/* ---- dispatch ---- */

static const struct {
	const char *name;
	int (*fn)(struct admin *a, int argc, char **argv);
} admin_cmds[] = {
	{ "queue", admin_queue }, { "flush", admin_flush }, { "delete", admin_delete },
	{ "show", admin_show }, { "status", admin_status }, { "check-config", admin_check_config },
	{ "send-test", admin_send_test }, { "probe", admin_probe },
	{ "oauth2-login", admin_oauth2_login }, { "metrics", admin_metrics },
	{ "dkim-keygen", admin_dkim_keygen },
};

/* 1 to go on, or an exit status (-h, -V, usage). */
static int admin_options(int argc, char **argv, struct admin *a)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	opterr = 0;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "+:C:c:hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'C': case 'c': a->conf_path = optarg; break;
		case 'h': admin_usage(stdout); return EX_OK;
		case 'V': printf("smtprelay %s\n", PACKAGE_VERSION); return EX_OK;
		case ':': return admin_bad_usage("option %s needs a file name", argv[optind - 1]);
		default: return admin_bad_usage("unknown option \"%s\"", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return admin_bad_usage("%s", "no command given");
	return 1;
}

static struct config *admin_config(const char *path)
{
	char *errors = NULL;
	struct config *c = conf_load(path, &errors);

	if (!c) {
		fputs(errors ? errors : "configuration error\n", stderr);
		if (errors && errors[0] && errors[strlen(errors) - 1] != '\n')
			fputc('\n', stderr);
	}
	free(errors);
	return c;
}

int admin_main(int argc, char **argv)
{
	struct admin a = { 0 };
	int r = admin_options(argc, argv, &a);
	const char *cmd;

	if (r != 1)
		return r;
	cmd = argv[optind];
	log_init("smtprelay", LOG_TARGET_STDERR, false);
	for (size_t i = 0; i < sizeof(admin_cmds) / sizeof(admin_cmds[0]); i++) {
		if (strcmp(cmd, admin_cmds[i].name) != 0)
			continue;
		if (!(a.conf = admin_config(conf_default_path(a.conf_path))))
			return EX_CONFIG;
		r = admin_cmds[i].fn(&a, argc - optind, argv + optind);
		conf_free(a.conf);
		return r;
	}
	return admin_bad_usage("unknown command \"%s\"", cmd);
}
