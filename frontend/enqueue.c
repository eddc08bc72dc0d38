#include "config.h"
#include "frontend/enqueue.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "queue/handoff.h"
#include "frontend/noconf.h"
#include "frontend/priv.h"
#include "lib/addr.h"
#include "lib/rfc5322.h"
#include "queue/submit.h"

#define ENQUEUE_CHUNK 65536

char *enqueue_sender(const char *given)
{
	struct passwd *pw;
	size_t len;

	if (!given) {
		pw = getpwuid(getuid());
		return strdup(pw && pw->pw_name[0] ? pw->pw_name : "nobody");
	}
	len = strlen(given);
	if (len >= 2 && given[0] == '<' && given[len - 1] == '>') {
		given++;
		len -= 2;
	}
	if (len == 0)
		return strdup("");
	if (len > ADDR_MAX)
		return NULL;
	char *s = strndup(given, len);
	if (s && !addr_valid(s, ADDR_ALLOW_BARE | ADDR_ALLOW_UTF8)) {
		free(s);
		return NULL;
	}
	return s;
}

const char *enqueue_full_name(const char *given, char *buf, size_t len)
{
	const char *env = getenv("NAME");
	struct passwd *pw;
	size_t n;

	if (given)
		return given;
	if (env && *env)
		return env;
	pw = getpwuid(getuid());
	if (!pw || !pw->pw_gecos || !pw->pw_gecos[0])
		return NULL;
	/* GECOS: "Full Name,room,phone,...": the name is the first field. */
	n = strcspn(pw->pw_gecos, ",");
	if (n == 0 || n >= len)
		return NULL;
	memcpy(buf, pw->pw_gecos, n);
	buf[n] = '\0';
	return buf;
}

/* Command-line recipients may be RFC 5322 lists ("a@b, Name <c@d>"). */
static int enqueue_args(const struct sendmail_opts *o, struct strv *out)
{
	for (int i = 0; i < o->nrcpts; i++) {
		size_t before = out->n;
		int skipped = rfc5322_parse_addrlist(o->rcpts[i], strlen(o->rcpts[i]), out);

		if (skipped < 0)
			return EX_TEMPFAIL;
		if (out->n == before || skipped) {
			fprintf(stderr, "sendmail: bad recipient address: \"%s\"\n", o->rcpts[i]);
			return EX_USAGE;
		}
	}
	return EX_OK;
}

static int enqueue_fail(const struct submit_error *e)
{
	fprintf(stderr, "sendmail: fatal: %s\n", e->text);
	return e->exit_code ? e->exit_code : EX_SOFTWARE;
}

/* Standard input, chunk by chunk, into sink (the submission, or the raw
 * record for the daemon): 0 at end of input, -1 with e set. */
typedef int (*enqueue_sink)(void *ctx, const char *data, size_t len, struct submit_error *e);

static int enqueue_read_stdin(enqueue_sink sink, void *ctx, struct submit_error *e)
{
	char *buf = malloc(ENQUEUE_CHUNK);
	ssize_t n;

	if (!buf) {
		e->exit_code = EX_TEMPFAIL;
		snprintf(e->text, sizeof(e->text), "out of memory");
		return -1;
	}
	for (;;) {
		n = read(STDIN_FILENO, buf, ENQUEUE_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			e->exit_code = EX_IOERR;
			snprintf(e->text, sizeof(e->text), "reading the message from standard input: %s",
			    strerror(errno));
			break;
		}
		if (n == 0 || sink(ctx, buf, (size_t)n, e) < 0)
			break;
	}
	free(buf);
	return n == 0 ? 0 : -1;
}

static int enqueue_to_submit(void *ctx, const char *data, size_t len, struct submit_error *e)
{
	return submit_write(ctx, data, len, e);
}

static int enqueue_copy(struct submit *s, struct submit_error *e)
{
	return enqueue_read_stdin(enqueue_to_submit, s, e);
}

static int enqueue_handover(const struct config *c, int fd, char *id, struct submit_error *e)
{
	if (handoff_send(c->spool_dir, fd, id, QID_SIZE, e->text, sizeof(e->text)) < 0) {
		e->exit_code = EX_TEMPFAIL;
		return -1;
	}
	return 0;
}

struct enqueue_raw {
	int fd;
	size_t max;
};

static int enqueue_to_raw(void *ctx, const char *data, size_t len, struct submit_error *e)
{
	struct enqueue_raw *r = ctx;

	return noconf_write(r->fd, data, len, r->max, e);
}

static int enqueue_noconf_copy(int fd, size_t max, struct submit_error *e)
{
	struct enqueue_raw r = { fd, max };

	return enqueue_read_stdin(enqueue_to_raw, &r, e);
}

/* Without the config: stdin as read goes to the daemon (frontend/noconf.h). */
static int enqueue_noconf(const struct sendmail_opts *o, const struct config *c,
    const struct submit_params *p)
{
	struct submit_error e = { 0 };
	char id[QID_SIZE];
	int fd, r;

	if (noconf_begin(p, &fd, &e) < 0)
		return enqueue_fail(&e);
	r = enqueue_noconf_copy(fd, c->max_message_size, &e);
	if (r == 0)
		r = noconf_handoff(c, fd, id, &e);
	close(fd);
	if (r < 0)
		return enqueue_fail(&e);
	if (o->verbose)
		fprintf(stderr, "sendmail: queued as %s\n", id);
	return EX_OK;
}

static int enqueue_run(const struct sendmail_opts *o, const struct config *c,
    struct submit_params *p)
{
	struct submit_error e = { 0 };
	char id[QID_SIZE], err[512];
	struct submit *s;
	int r;

	priv_raise();
	/* No setgid privilege (NoNewPrivileges): the daemon takes the message. */
	p->handover = handoff_needed(c->spool_dir);
	if (p->handover && (p->handover_fd = handoff_memfd()) < 0) {
		priv_lower();
		fprintf(stderr, "sendmail: fatal: memfd_create: %s\n", strerror(errno));
		return EX_OSERR;
	}
	if (!p->handover && !(p->queue = queue_open(c->spool_dir, !priv_have(), err, sizeof(err)))) {
		priv_lower();
		fprintf(stderr, "sendmail: fatal: %s\n", err);
		return errno == EACCES ? EX_TEMPFAIL : EX_CANTCREAT;
	}
	s = submit_begin(p, &e);
	r = s ? enqueue_copy(s, &e) : -1;
	if (r < 0 && s)
		submit_abort(s);
	else if (r == 0)
		r = submit_commit(s, id, &e);
	priv_lower();
	if (p->queue)
		queue_close(p->queue);
	if (r == 0 && p->handover)
		r = enqueue_handover(c, p->handover_fd, id, &e);
	if (p->handover)
		close(p->handover_fd);
	if (r < 0)
		return enqueue_fail(&e);
	if (o->verbose)
		fprintf(stderr, "sendmail: queued as %s\n", id);
	return EX_OK;
}

int enqueue_stdin(const struct sendmail_opts *o, const struct config *c)
{
	struct submit_params p = { 0 };
	char gecos[256], *sender;
	struct strv rcpts = { 0 };
	int r;

	sender = enqueue_sender(o->sender);
	if (!sender) {
		fprintf(stderr, "sendmail: bad sender address: \"%s\"\n", o->sender);
		return EX_USAGE;
	}
	r = enqueue_args(o, &rcpts);
	if (r == EX_OK && rcpts.n == 0 && !o->extract) {
		fprintf(stderr, "sendmail: fatal: no recipients specified "
		    "(give them as arguments, or use -t to read them from the headers)\n");
		r = EX_NOUSER;
	}
	if (r == EX_OK) {
		p.conf = c;
		p.area = Q_MAILDROP;
		p.sender = sender;
		p.rcpts = rcpts.v;
		p.nrcpts = rcpts.n;
		p.extract_rcpts = o->extract;
		p.from_stdin = true;
		p.dot_ends = !o->ignore_dots;
		p.full_name = enqueue_full_name(o->full_name, gecos, sizeof(gecos));
		p.notify = o->notify;
		p.ret = o->ret;
		p.envid = o->envid;
		p.eightbit = o->eightbit;
		p.uid = (long)getuid();
		p.origin = "sendmail";
		r = noconf_active() ? enqueue_noconf(o, c, &p) : enqueue_run(o, c, &p);
	}
	strv_free(&rcpts);
	free(sender);
	return r;
}
