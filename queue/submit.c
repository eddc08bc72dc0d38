#include "config.h"
#include "queue/submit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "lib/addr.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/msg.h"
#include "lib/rfc5322.h"

struct submit {
	const struct config *conf;
	struct queue *queue;
	enum q_area area;
	int handover_fd;		/* -1: write into the spool area */
	struct msg *msg;
	struct qwriter *w;
	struct q_envelope env;
	char **rcpts;			/* resolved, deduplicated */
	unsigned *rnotify;		/* per recipient: DSN NOTIFY ... */
	char **rorcpt;			/* ... and the original recipient (NULL: same) */
	size_t nrcpts;
	unsigned notify;
	unsigned max_rcpts;
	bool extract;
	bool async_writer;
	char *received;
	char *daemon_from;		/* the From: of a null-sender message; the filter's */
	struct buf pending;		/* output held until the header section is over */
	struct submit_error err;	/* first failure seen in the output path */
	bool failed;
};

static void submit_set_error(struct submit_error *e, int exit_code, int smtp_code,
    const char *enhanced, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void submit_set_error(struct submit_error *e, int exit_code, int smtp_code,
    const char *enhanced, const char *fmt, ...)
{
	va_list ap;

	if (!e)
		return;
	e->exit_code = exit_code;
	e->smtp_code = smtp_code;
	snprintf(e->enhanced, sizeof(e->enhanced), "%s", enhanced);
	va_start(ap, fmt);
	vsnprintf(e->text, sizeof(e->text), fmt, ap);
	va_end(ap);
}

/* Map a spool errno to what the caller should tell its client (smtprelayd(8) "Queue guarantees":
 * disk full or spool unwritable is a temporary failure, 452 / exit 75). */
static void submit_spool_error(struct submit_error *e, int err, const char *what)
{
	switch (err) {
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		submit_set_error(e, EX_TEMPFAIL, 452, "4.3.1",
		    "Insufficient system storage: %s", what);
		break;
	case EACCES:
	case EPERM:
	case EROFS:
		submit_set_error(e, EX_TEMPFAIL, 451, "4.3.0",
		    "spool not writable: %s", what);
		break;
	case ENOENT:
	case ENOTDIR:
		submit_set_error(e, EX_CANTCREAT, 451, "4.3.0",
		    "spool missing: %s", what);
		break;
	case ENOMEM:
		submit_set_error(e, EX_TEMPFAIL, 451, "4.3.0", "out of memory: %s", what);
		break;
	default:
		/* An I/O error is a disk's bad moment, not a verdict on the
		 * message: the caller should try again (smtprelayd(8), "Queue guarantees"). */
		submit_set_error(e, EX_TEMPFAIL, 451, "4.3.0", "spool error: %s", what);
		break;
	}
}

void submit_free_list(char **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

static int submit_list_add(struct strv *list, const char *addr)
{
	char *copy;

	for (size_t i = 0; i < list->n; i++)
		if (strcmp(list->v[i], addr) == 0)
			return 0;
	if (!(copy = strdup(addr)))
		return -1;
	if (strv_push(list, copy) < 0) {
		free(copy);
		return -1;
	}
	return 0;
}

/* Validate and resolve one recipient as given; the count of addresses in
 * out, or -1 with e set. */
static int submit_expand(const struct config *conf, const char *given, struct strv *out,
    struct submit_error *e)
{
	char err[256] = "";
	int cnt;

	if (!addr_valid(given, ADDR_ALLOW_BARE | ADDR_ALLOW_UTF8)) {
		submit_set_error(e, EX_USAGE, 501, "5.1.3",
		    "bad recipient address syntax: <%s>", given);
		return -1;
	}
	cnt = conf_resolve(conf, given, out, err, sizeof(err));
	if (cnt < 0)
		submit_set_error(e, EX_CONFIG, 451, "4.3.5", "cannot resolve <%s>: %s",
		    given, err[0] ? err : "alias error");
	return cnt;
}

int submit_resolve(const struct config *conf, const char *given, struct strv *list,
    struct submit_error *e)
{
	struct strv out = { 0 };
	int cnt = submit_expand(conf, given, &out, e);

	if (cnt < 0)
		return -1;
	for (int i = 0; i < cnt; i++) {
		if (submit_list_add(list, out.v[i]) < 0) {
			strv_free(&out);
			submit_set_error(e, EX_TEMPFAIL, 451, "4.3.0", "out of memory");
			return -1;
		}
	}
	strv_free(&out);
	return 0;
}

/* Add one resolved recipient with its DSN parameters (first one wins). */
static int submit_add(struct submit *s, const char *addr, unsigned notify, const char *orcpt)
{
	size_t n = s->nrcpts;
	char **r, **o;
	unsigned *no;

	for (size_t i = 0; i < n; i++)
		if (strcmp(s->rcpts[i], addr) == 0)
			return 0;
	if (!(r = realloc(s->rcpts, (n + 1) * sizeof(*r))))
		return -1;
	s->rcpts = r;
	if (!(o = realloc(s->rorcpt, (n + 1) * sizeof(*o))))
		return -1;
	s->rorcpt = o;
	if (!(no = realloc(s->rnotify, (n + 1) * sizeof(*no))))
		return -1;
	s->rnotify = no;
	r[n] = strdup(addr);
	o[n] = orcpt ? strdup(orcpt) : NULL;
	no[n] = notify;
	if (!r[n] || (orcpt && !o[n])) {
		free(r[n]);
		free(o[n]);
		return -1;
	}
	s->nrcpts++;
	return 0;
}

/* Resolve a recipient into s.  An alias expansion remembers what was asked
 * for (qualified) as the original recipient, for the DSN and ORCPT. */
static int submit_take(struct submit *s, const char *given, unsigned notify, const char *orcpt,
    struct submit_error *e)
{
	struct strv out = { 0 };
	char *q = NULL;
	int cnt = submit_expand(s->conf, given, &out, e), r = 0;

	if (cnt < 0)
		return -1;
	if (s->max_rcpts && s->nrcpts + (size_t)cnt > s->max_rcpts) {
		strv_free(&out);
		submit_set_error(e, EX_DATAERR, 452, "4.5.3",
		    "too many recipients: more than %u (max_recipients)", s->max_rcpts);
		return -1;
	}
	for (int i = 0; i < cnt && r == 0; i++) {
		const char *o = orcpt;
		if (!o && strcmp(out.v[i], given) != 0) {
			if (!q && !(q = addr_qualify(given, s->conf->hostname)))
				r = -1;
			o = q && strcmp(out.v[i], q) != 0 ? q : NULL;
		}
		if (r == 0)
			r = submit_add(s, out.v[i], notify, o);
	}
	free(q);
	strv_free(&out);
	if (r < 0)
		submit_set_error(e, EX_TEMPFAIL, 451, "4.3.0", "out of memory");
	return r;
}

/* "Received:" trace header: listener mail names the client, local mail the uid. */
static char *submit_received(const struct submit_params *p, const char *id, time_t now)
{
	char date[64];
	struct buf b;

	rfc5322_date(now, date, sizeof(date));
	buf_init(&b, 4096);
	if (p->received_from)
		buf_printf(&b, "Received: from %s\r\n\tby %s (smtprelay) with %s id %s;\r\n\t%s\r\n",
		    p->received_from, p->conf->hostname, p->protocol ? p->protocol : "SMTP",
		    id, date);
	else
		buf_printf(&b, "Received: by %s (smtprelay, from userid %ld)\r\n\tid %s; %s\r\n",
		    p->conf->hostname, p->uid, id, date);
	return buf_steal(&b);
}

/* The envelope is written ahead of the content, so the queue file is opened
 * only once the header section is through the filter (-t recipients known). */
static int submit_open_writer(struct submit *s)
{
	char err[256];
	char **extra;
	size_t nextra = 0;

	if (s->extract) {
		extra = msg_rcpts(s->msg, &nextra);
		for (size_t i = 0; i < nextra; i++)
			if (submit_take(s, extra[i], s->notify, NULL, &s->err) < 0)
				return -1;
	}
	if (s->nrcpts == 0) {
		submit_set_error(&s->err, EX_NOUSER, 554, "5.5.1", "no recipients specified%s",
		    s->extract ? " (none on the command line nor in To:/Cc:/Bcc:)" : "");
		return -1;
	}
	s->env.rcpts = calloc(s->nrcpts, sizeof(*s->env.rcpts));
	if (!s->env.rcpts) {
		submit_set_error(&s->err, EX_TEMPFAIL, 451, "4.3.0", "out of memory");
		return -1;
	}
	s->env.nrcpts = s->nrcpts;
	for (size_t i = 0; i < s->nrcpts; i++) {
		s->env.rcpts[i].addr = s->rcpts[i];
		s->env.rcpts[i].orcpt = s->rorcpt[i];
		s->env.rcpts[i].notify = s->rnotify[i];
		s->env.rcpts[i].state = Q_PENDING;
		if (addr_is_utf8(s->rcpts[i]))
			s->env.smtputf8 = true;
	}
	s->w = s->handover_fd >= 0 ?
	    qwriter_open_fd(s->handover_fd, &s->env, err, sizeof(err)) :
	    qwriter_open(s->queue, s->area, &s->env, err, sizeof(err));
	if (!s->w) {
		submit_spool_error(&s->err, errno, err);
		return -1;
	}
	if (s->async_writer && s->handover_fd < 0 && s->area == Q_QUEUE &&
	    qwriter_set_async(s->w) < 0) {
		submit_spool_error(&s->err, errno, "writing the queue file");
		return -1;
	}
	return 0;
}

static int submit_out(void *ctx, const char *data, size_t len)
{
	struct submit *s = ctx;
	char err[256];

	if (s->failed)
		return -1;
	if (!s->w && !msg_headers_done(s->msg)) {
		/* A huge header section: -t recipients are not known yet. */
		if (buf_append(&s->pending, data, len) < 0) {
			submit_set_error(&s->err, EX_TEMPFAIL, 451, "4.3.0", "out of memory");
			s->failed = true;
			return -1;
		}
		return 0;
	}
	if (!s->w && (submit_open_writer(s) < 0 ||
	    qwriter_write(s->w, s->pending.data, s->pending.len) < 0)) {
		if (s->w)
			submit_spool_error(&s->err, errno, "writing the queue file");
		s->failed = true;
		return -1;
	}
	buf_free(&s->pending);
	if (qwriter_write(s->w, data, len) < 0) {
		snprintf(err, sizeof(err), "writing %s: %s", queue_path(s->queue), strerror(errno));
		submit_spool_error(&s->err, errno, err);
		s->failed = true;
		return -1;
	}
	return 0;
}

static struct msg *submit_new_filter(struct submit *s, const struct submit_params *p, time_t now)
{
	struct msg_params mp = {
		.from_stdin = p->from_stdin,
		.dot_ends = p->dot_ends,
		.extract_rcpts = p->extract_rcpts,
		.add_missing = true,
		.qualify_headers = !p->remote_client,
		.hostname = p->conf->hostname,
		.queue_id = s->env.id,
		.from_addr = s->env.sender[0] ? s->env.sender : NULL,
		.full_name = p->full_name,
		.rewrite_from = p->conf->rewrite_from_header ? p->conf->from_address : NULL,
		.prepend = s->received,
		.max_size = p->conf->max_message_size,
		.now = now,
		.out = submit_out,
		.out_ctx = s,
	};
	/* A bounce-like null sender still needs a From: address for the header;
	 * the filter keeps the pointer, so it lives as long as s. */
	if (!mp.from_addr) {
		s->daemon_from = addr_qualify("MAILER-DAEMON", p->conf->hostname);
		mp.from_addr = s->daemon_from;
	}
	return msg_new(&mp);
}

static int submit_init_envelope(struct submit *s, const struct submit_params *p,
    struct submit_error *e)
{
	struct q_envelope *env = &s->env;

	queue_new_id(env->id);
	env->sender = conf_rewrite_sender(p->conf, p->sender ? p->sender : "");
	env->envid = p->envid ? strdup(p->envid) : NULL;
	env->origin = p->origin ? strdup(p->origin) : NULL;
	if (!env->sender || (p->envid && !env->envid) || (p->origin && !env->origin)) {
		submit_set_error(e, EX_TEMPFAIL, 451, "4.3.0", "out of memory");
		return -1;
	}
	env->ret = p->ret;
	env->eightbit = p->eightbit;
	env->smtputf8 = p->smtputf8 || addr_is_utf8(env->sender);
	env->uid = p->uid;
	return 0;
}

struct submit *submit_begin(const struct submit_params *p, struct submit_error *e)
{
	time_t now = p->now ? p->now : time(NULL);
	struct submit *s = calloc(1, sizeof(*s));

	if (!s) {
		submit_set_error(e, EX_TEMPFAIL, 451, "4.3.0", "out of memory");
		return NULL;
	}
	buf_init(&s->pending, 2 * 1024 * 1024);
	s->conf = p->conf;
	s->queue = p->queue;
	s->handover_fd = p->handover ? p->handover_fd : -1;
	s->area = p->area;
	s->notify = p->notify;
	s->max_rcpts = p->max_rcpts;
	s->extract = p->extract_rcpts;
	s->async_writer = p->async_writer;
	if (submit_init_envelope(s, p, e) < 0)
		goto fail;
	for (size_t i = 0; i < p->nrcpts; i++)
		if (submit_take(s, p->rcpts[i], p->notify_each ? p->notify_each[i] : p->notify,
		    p->orcpts ? p->orcpts[i] : NULL, e) < 0)
			goto fail;
	s->received = submit_received(p, s->env.id, now);
	s->msg = s->received ? submit_new_filter(s, p, now) : NULL;
	if (!s->msg) {
		submit_set_error(e, EX_TEMPFAIL, 451, "4.3.0", "out of memory");
		goto fail;
	}
	return s;
fail:
	submit_abort(s);
	return NULL;
}

const char *submit_id(const struct submit *s)
{
	return s->env.id;
}

static void submit_msg_error(struct submit *s, struct submit_error *e)
{
	if (s->failed) {
		*e = s->err;
		return;
	}
	switch (msg_error(s->msg)) {
	case MSG_TOO_BIG:
		submit_set_error(e, EX_DATAERR, 552, "5.3.4",
		    "message size exceeds the limit of %zu bytes (max_message_size)",
		    s->conf->max_message_size);
		break;
	case MSG_BAD_HEADER:
		submit_set_error(e, EX_DATAERR, 554, "5.6.0", "malformed message header section");
		break;
	default:
		submit_set_error(e, EX_TEMPFAIL, 451, "4.3.0", "out of memory");
		break;
	}
}

struct qwriter *submit_writer(const struct submit *s)
{
	return s->w;
}

int submit_write(struct submit *s, const char *data, size_t len, struct submit_error *e)
{
	if (msg_input(s->msg, data, len) < 0) {
		submit_msg_error(s, e);
		return -1;
	}
	return 0;
}

struct qwriter *submit_finish(struct submit *s, char id[QID_SIZE], struct submit_error *e)
{
	struct qwriter *w;

	if (msg_finish(s->msg) < 0) {
		submit_msg_error(s, e);
		submit_abort(s);
		return NULL;
	}
	if (!s->w && (submit_open_writer(s) < 0 ||
	    qwriter_write(s->w, s->pending.data, s->pending.len) < 0)) {
		if (s->w)
			submit_spool_error(&s->err, errno, "writing the queue file");
		*e = s->err;
		submit_abort(s);
		return NULL;
	}
	qwriter_set_eightbit(s->w, msg_eightbit(s->msg));
	w = s->w;
	s->w = NULL;
	memcpy(id, s->env.id, QID_SIZE);
	submit_abort(s);
	return w;
}

void submit_spool_failure(struct submit_error *e, int err, const char *what)
{
	submit_spool_error(e, err, what);
}

int submit_commit(struct submit *s, char id[QID_SIZE], struct submit_error *e)
{
	char err[256];
	struct qwriter *w = submit_finish(s, id, e);

	if (!w)
		return -1;
	if (qwriter_commit(w, err, sizeof(err)) < 0) {
		submit_spool_error(e, errno, err);
		return -1;
	}
	return 0;
}

/* Also the destructor: everything not committed is dropped. */
void submit_abort(struct submit *s)
{
	if (!s)
		return;
	if (s->w)
		qwriter_abort(s->w);
	if (s->msg)
		msg_free(s->msg);
	free(s->env.rcpts);
	submit_free_list(s->rcpts, s->nrcpts);
	submit_free_list(s->rorcpt, s->nrcpts);
	free(s->rnotify);
	free(s->env.sender);
	free(s->env.envid);
	free(s->env.origin);
	free(s->received);
	free(s->daemon_from);
	buf_free(&s->pending);
	free(s);
}
