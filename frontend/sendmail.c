#include "config.h"
#include "frontend/sendmail.h"

#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <unistd.h>

#include "conf/conf.h"
#include "conf/hostdefaults.h"
#include "frontend/bs.h"
#include "queue/control.h"
#include "frontend/enqueue.h"
#include "queue/mailq.h"
#include "frontend/noconf.h"
#include "frontend/priv.h"
#include "lib/addr.h"
#include "lib/log.h"
#include "lib/rfc5322.h"
#include "queue/submit.h"

static const char *sendmail_prog = "sendmail";

static void sendmail_usage(void)
{
	fprintf(stderr,
	    "usage: %s [-t] [-i|-oi] [-f sender] [-F name] [-C config] [-N dsn] [-R ret]\n"
	    "          [-V envid] [-B type] [-bm|-bs|-bp|-bi|-bv|-q] [--] [recipient ...]\n"
	    "See sendmail(8).\n", sendmail_prog);
}

static int sendmail_bad(const char *what, const char *arg)
{
	fprintf(stderr, "%s: %s: \"%s\"\n", sendmail_prog, what, arg);
	sendmail_usage();
	return -1;
}

/* -N never | success,failure,delay (RFC 3461 NOTIFY) */
static int sendmail_parse_notify(const char *arg, unsigned *out)
{
	char buf[64], *save = NULL;
	unsigned n = 0;

	if (strlen(arg) >= sizeof(buf))
		return -1;
	strcpy(buf, arg);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (strcasecmp(t, "never") == 0)
			n |= SMTP_NOTIFY_NEVER;
		else if (strcasecmp(t, "success") == 0)
			n |= SMTP_NOTIFY_SUCCESS;
		else if (strcasecmp(t, "failure") == 0)
			n |= SMTP_NOTIFY_FAILURE;
		else if (strcasecmp(t, "delay") == 0)
			n |= SMTP_NOTIFY_DELAY;
		else
			return -1;
	}
	if (n == 0 || ((n & SMTP_NOTIFY_NEVER) && n != SMTP_NOTIFY_NEVER))
		return -1;
	*out = n;
	return 0;
}

/* ENVID: printable ASCII, bounded (RFC 3461 §4.4 allows 100 characters). */
static bool sendmail_valid_envid(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > 100)
		return false;
	for (; *s; s++)
		if (*s < 0x21 || *s > 0x7e)
			return false;
	return true;
}

static int sendmail_opt_b(struct sendmail_opts *o, const char *arg)
{
	static const struct { const char *name; enum sendmail_mode mode; } modes[] = {
		{ "m", SM_DELIVER }, { "s", SM_SMTP }, { "p", SM_PRINT },
		{ "i", SM_ALIASES }, { "v", SM_VERIFY },
	};

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		if (strcmp(arg, modes[i].name) == 0) {
			o->mode = modes[i].mode;
			return 0;
		}
	}
	if (strcmp(arg, "d") == 0 || strcmp(arg, "D") == 0)
		return sendmail_bad("daemon mode is smtprelayd(8), not sendmail", arg);
	return sendmail_bad("unsupported -b mode", arg);
}

static int sendmail_opt_value(struct sendmail_opts *o, int c, const char *arg)
{
	switch (c) {
	case 'N':
		return sendmail_parse_notify(arg, &o->notify) < 0 ?
		    sendmail_bad("bad -N value (use never or success,failure,delay)", arg) : 0;
	case 'R':
		if (strcasecmp(arg, "full") == 0)
			o->ret = SMTP_RET_FULL;
		else if (strcasecmp(arg, "hdrs") == 0)
			o->ret = SMTP_RET_HDRS;
		else
			return sendmail_bad("bad -R value (use full or hdrs)", arg);
		return 0;
	case 'V':
		if (!sendmail_valid_envid(arg))
			return sendmail_bad("bad -V envelope id (printable ASCII, at most 100)", arg);
		o->envid = arg;
		return 0;
	case 'B':
		if (strcasecmp(arg, "8BITMIME") == 0)
			o->eightbit = true;
		else if (strcasecmp(arg, "7BIT") != 0)
			return sendmail_bad("bad -B body type (use 7BIT or 8BITMIME)", arg);
		return 0;
	case 'o':
		/* -oi is the one meaningful -o option; -oem, -odb, -oX... are accepted. */
		if (strcmp(arg, "i") == 0)
			o->ignore_dots = true;
		return 0;
	}
	return 0;
}

static int sendmail_opt(struct sendmail_opts *o, int c, const char *arg)
{
	switch (c) {
	case 'C': case 'c': o->config = arg; return 0;
	case 'f': case 'r': o->sender = arg; return 0;
	case 'F': o->full_name = arg; return 0;
	case 'L': o->label = arg; return 0;
	case 'b': return sendmail_opt_b(o, arg);
	case 't': o->extract = true; return 0;
	case 'i': o->ignore_dots = true; return 0;
	case 'v': o->verbose = true; return 0;
	case 'q': o->mode = SM_FLUSH; return 0;
	case 'I': o->mode = SM_ALIASES; return 0;
	/* Accepted for compatibility, no meaning here. */
	case 'G': case 'U': case 'm': case 'n': case 'O': case 'X': case 'h': case 'p':
		return 0;
	case 'N': case 'R': case 'V': case 'B': case 'o':
		return sendmail_opt_value(o, c, arg);
	}
	return -1;
}

int sendmail_parse(int argc, char **argv, struct sendmail_opts *o)
{
	static const char optstring[] = ":B:C:F:GIL:N:O:R:UV:X:b:c:f:h:imno:p:q::r:tv";
	char *base = argv[0] ? strrchr(argv[0], '/') : NULL;
	const char *name = base ? base + 1 : (argv[0] ? argv[0] : "sendmail");
	int c;

	memset(o, 0, sizeof(*o));
	if (strcmp(name, "mailq") == 0)
		o->mode = SM_PRINT;
	else if (strcmp(name, "newaliases") == 0)
		o->mode = SM_ALIASES;
	sendmail_prog = name;
	opterr = 0;
	optind = 0;	/* glibc: a full reset, so parsing twice (tests) works */
	while ((c = getopt(argc, argv, optstring)) != -1) {
		char flag[3] = { '-', (char)optopt, '\0' };
		if (c == '?')
			return sendmail_bad("unknown option", flag);
		if (c == ':')
			return sendmail_bad("option needs an argument", flag);
		if (sendmail_opt(o, c, optarg) < 0)
			return -1;
	}
	o->rcpts = argv + optind;
	o->nrcpts = argc - optind;
	return 0;
}

static void sendmail_fatal_errors(const char *errors)
{
	fputs(errors, stderr);
	if (errors[0] && errors[strlen(errors) - 1] != '\n')
		fputc('\n', stderr);
}

/* -C and $SMTPRELAY_CONF are for root, the service user, or an unprivileged
 * private instance: anyone else loses the setgid privilege first (sendmail(8) "SECURITY"). */
static struct config *sendmail_config(const struct sendmail_opts *o)
{
	const char *env = getenv("SMTPRELAY_CONF");
	const char *path = conf_default_path(o->config);
	char *errors = NULL;
	struct config *c;

	if ((o->config || (env && *env)) && priv_have() && !priv_caller_trusted() &&
	    priv_drop() < 0) {
		fprintf(stderr, "%s: fatal: cannot drop privileges: %s\n", sendmail_prog,
		    strerror(errno));
		exit(EX_OSERR);
	}
	/* The system config may be readable by the service group only. */
	priv_raise();
	c = conf_load(path, &errors);
	priv_lower();
	/* Not in the service group under NoNewPrivileges: the daemon decides. */
	if (!c && (c = noconf_config(o, path)) != NULL) {
		free(errors);
		return c;
	}
	if (!c) {
		sendmail_fatal_errors(errors ? errors : "configuration error\n");
		free(errors);
		exit(EX_CONFIG);
	}
	free(errors);
	return c;
}

static struct queue *sendmail_queue(const struct config *c, bool write)
{
	char err[512];
	struct queue *q;

	/* An unprivileged private instance (tests, try-it) makes its own spool. */
	q = queue_open(c->spool_dir, write && !priv_have(), err, sizeof(err));
	if (!q && !write && errno == EACCES) {
		fprintf(stderr, "%s: fatal: the queue in %s is readable only by root and the "
		    SMTPRELAY_USER " user\n", sendmail_prog, c->spool_dir);
		exit(EX_NOPERM);
	}
	if (!q) {
		fprintf(stderr, "%s: fatal: %s\n", sendmail_prog, err);
		exit(errno == EACCES ? EX_TEMPFAIL : EX_CANTCREAT);
	}
	return q;
}

/* The running daemon lists the queue for those who cannot read the spool
 * (Postfix's showq).  -1 when it does not answer. */
static int sendmail_print_daemon(const struct config *c)
{
	char status[512], err[512];

	if (control_query(c->spool_dir, "queue", stdout, status, sizeof(status), err,
	    sizeof(err)) != CONTROL_OK)
		return -1;
	return fflush(stdout) == 0 ? EX_OK : EX_IOERR;
}

static int sendmail_print(const struct sendmail_opts *o, struct config *c)
{
	char err[512];
	struct queue *q;
	int r, saved;

	(void)o;
	priv_drop();
	q = queue_open(c->spool_dir, false, err, sizeof(err));
	if (!q && errno == EACCES && (r = sendmail_print_daemon(c)) >= 0)
		return r;
	if (!q)
		q = sendmail_queue(c, false);
	r = mailq_print(q, stdout, err, sizeof(err));
	saved = errno;
	queue_close(q);
	if (r < 0 && saved == EACCES && (r = sendmail_print_daemon(c)) >= 0)
		return r;
	errno = saved;
	if (r < 0) {
		fprintf(stderr, "%s: fatal: %s%s\n", sendmail_prog, err,
		    errno == EACCES ? " (run as root or as the " SMTPRELAY_USER " user)" : "");
		return EX_IOERR;
	}
	return fflush(stdout) == 0 ? EX_OK : EX_IOERR;
}

/* -bv: "ADDRESS -> RESOLVED, ..." per address; nothing is sent. */
static int sendmail_verify(const struct sendmail_opts *o, struct config *c)
{
	int status = EX_OK;

	if (o->nrcpts == 0) {
		fprintf(stderr, "%s: fatal: no recipients specified\n", sendmail_prog);
		return EX_NOUSER;
	}
	for (int i = 0; i < o->nrcpts; i++) {
		struct submit_error e;
		struct strv list = { 0 };

		if (submit_resolve(c, o->rcpts[i], &list, &e) < 0) {
			printf("%s -> error: %s\n", o->rcpts[i], e.text);
			status = e.exit_code;
			continue;
		}
		/* Changed by resolution: only the daemon's config knows the answer. */
		if (noconf_active() && (list.n != 1 || strcmp(list.v[0], o->rcpts[i]) != 0)) {
			printf("%s -> error: resolved by smtprelayd with its configuration; %s\n",
			    o->rcpts[i], noconf_why());
			strv_free(&list);
			status = EX_NOPERM;
			continue;
		}
		printf("%s -> ", o->rcpts[i]);
		for (size_t j = 0; j < list.n; j++)
			printf("%s%s", j ? ", " : "", list.v[j]);
		putchar('\n');
		strv_free(&list);
	}
	return status;
}

static int sendmail_flush(const struct config *c)
{
	char err[512];

	priv_drop();
	if (control_request(c->spool_dir, "flush", NULL, 0, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: cannot flush the queue: %s\n", sendmail_prog, err);
		return EX_UNAVAILABLE;
	}
	return EX_OK;
}

/* conf_load checked the aliases, unless it could not read the config. */
static int sendmail_aliases(void)
{
	if (!noconf_active())
		return EX_OK;
	fprintf(stderr, "%s: fatal: cannot check the aliases: %s\n", sendmail_prog, noconf_why());
	return EX_NOPERM;
}

int sendmail_main(int argc, char **argv)
{
	struct sendmail_opts o;
	struct config *c;
	int r;

	priv_init();
	if (sendmail_parse(argc, argv, &o) < 0)
		return EX_USAGE;
	log_init(o.label ? o.label : sendmail_prog, LOG_TARGET_STDERR, o.verbose);
	/* Warnings only with -v (and for newaliases, whose job is checking). */
	log_quiet(!o.verbose && o.mode != SM_ALIASES);
	c = sendmail_config(&o);
	switch (o.mode) {
	case SM_PRINT: r = sendmail_print(&o, c); break;
	case SM_ALIASES: r = sendmail_aliases(); break;
	case SM_VERIFY: r = sendmail_verify(&o, c); break;
	case SM_FLUSH: r = sendmail_flush(c); break;
	case SM_SMTP: r = bs_run(&o, c); break;
	default:
		/* printed with -v only (log_quiet); without the config the daemon's counts */
		if (!noconf_active())
			hostdefaults_warn(c);
		r = enqueue_stdin(&o, c);
		break;
	}
	conf_free(c);
	return r;
}
