#include "config.h"
#include "frontend/bs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "frontend/enqueue.h"
#include "queue/handoff.h"
#include "frontend/noconf.h"
#include "frontend/priv.h"
#include "lib/fsutil.h"
#include "queue/submit.h"
#include "smtp/server.h"

struct bs_ctx {
	const struct sendmail_opts *o;
	const struct config *c;
	struct queue *q;
	struct submit *s;
	bool handover;			/* no maildrop access: pass messages to the daemon */
	bool raw;			/* no config either: the daemon submits (noconf.h) */
	int memfd;
	const char *full_name;
	char gecos[256];
};

static void bs_reply(struct smtp_reply *r, const struct submit_error *e)
{
	r->code = e->smtp_code ? e->smtp_code : 451;
	/* Replies are short: the reason is cut to fit one reply line. */
	snprintf(r->text, sizeof(r->text), "%.11s %.200s",
	    e->enhanced[0] ? e->enhanced : "4.3.0", e->text);
}

static void bs_close_memfd(struct bs_ctx *b)
{
	if (b->memfd >= 0)
		close(b->memfd);
	b->memfd = -1;
}

static int bs_rcpt(void *ctx, const char *rcpt, struct smtp_reply *fail)
{
	struct bs_ctx *b = ctx;
	struct submit_error e = { 0 };
	struct strv list = { 0 };

	if (submit_resolve(b->c, rcpt, &list, &e) < 0) {
		bs_reply(fail, &e);
		return -1;
	}
	strv_free(&list);
	return 0;
}

static int bs_begin(void *ctx, const struct smtp_envelope_in *env, struct smtp_reply *fail)
{
	struct bs_ctx *b = ctx;
	struct submit_error e = { 0 };
	struct submit_params p = {
		.conf = b->c, .queue = b->q, .area = Q_MAILDROP,
		.sender = env->sender, .rcpts = env->rcpts, .nrcpts = env->nrcpts,
		.full_name = b->full_name, .envid = env->envid,
		.notify_each = env->notify, .orcpts = env->orcpts,
		.ret = env->ret == 1 ? SMTP_RET_FULL : env->ret == 2 ? SMTP_RET_HDRS : SMTP_RET_DEFAULT,
		.eightbit = env->eightbit, .smtputf8 = env->smtputf8,
		.uid = (long)getuid(), .origin = "sendmail -bs",
	};

	if (b->raw) {
		if (noconf_begin(&p, &b->memfd, &e) < 0) {
			bs_reply(fail, &e);
			return -1;
		}
		return 0;
	}
	if (b->handover) {
		p.handover = true;
		p.handover_fd = b->memfd = handoff_memfd();
		if (b->memfd < 0) {
			fail->code = 451;
			snprintf(fail->text, sizeof(fail->text), "4.3.0 memfd_create failed");
			return -1;
		}
	}
	priv_raise();
	b->s = submit_begin(&p, &e);
	if (!b->s) {
		priv_lower();
		bs_reply(fail, &e);
		return -1;
	}
	return 0;
}

static int bs_write(void *ctx, const char *data, size_t len, struct smtp_reply *fail)
{
	struct bs_ctx *b = ctx;
	struct submit_error e = { 0 };

	if (b->raw) {
		if (noconf_write(b->memfd, data, len, b->c->max_message_size, &e) == 0)
			return 0;
		bs_close_memfd(b);
		bs_reply(fail, &e);
		return -1;
	}
	if (submit_write(b->s, data, len, &e) < 0) {
		submit_abort(b->s);
		b->s = NULL;
		priv_lower();
		bs_reply(fail, &e);
		return -1;
	}
	return 0;
}

static int bs_commit(void *ctx, char *queue_id, size_t idlen, struct smtp_reply *fail)
{
	struct bs_ctx *b = ctx;
	struct submit_error e = { 0 };
	char id[QID_SIZE];
	int r;

	if (b->raw) {
		r = noconf_handoff(b->c, b->memfd, id, &e);
		bs_close_memfd(b);
		if (r < 0) {
			bs_reply(fail, &e);
			return -1;
		}
		snprintf(queue_id, idlen, "%s", id);
		return 0;
	}
	r = submit_commit(b->s, id, &e);
	b->s = NULL;
	priv_lower();
	if (r == 0 && b->handover &&
	    handoff_send(b->c->spool_dir, b->memfd, id, sizeof(id), e.text, sizeof(e.text)) < 0) {
		e.smtp_code = 451;
		snprintf(e.enhanced, sizeof(e.enhanced), "4.3.0");
		r = -1;
	}
	bs_close_memfd(b);
	if (r < 0) {
		bs_reply(fail, &e);
		return -1;
	}
	snprintf(queue_id, idlen, "%s", id);
	return 0;
}

static void bs_abort(void *ctx)
{
	struct bs_ctx *b = ctx;

	bs_close_memfd(b);
	if (b->s) {
		submit_abort(b->s);
		b->s = NULL;
		priv_lower();
	}
}

static const struct smtp_server_sink bs_sink = {
	.rcpt = bs_rcpt, .begin = bs_begin, .write = bs_write,
	.commit = bs_commit, .abort = bs_abort,
};

static int bs_flush(struct smtp_server *srv)
{
	const char *out;
	size_t len;

	while ((out = smtp_server_output(srv, &len)) && len > 0) {
		if (fs_write_all(STDOUT_FILENO, out, len) < 0)
			return -1;
		smtp_server_consume_output(srv, len);
	}
	return 0;
}

static int bs_loop(struct smtp_server *srv)
{
	char buf[16384];
	ssize_t n;

	while (!smtp_server_closing(srv)) {
		if (bs_flush(srv) < 0)
			return EX_IOERR;
		n = read(STDIN_FILENO, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			smtp_server_eof(srv);
			break;
		}
		if (smtp_server_input(srv, buf, (size_t)n) < 0)
			return EX_TEMPFAIL;
	}
	return bs_flush(srv) < 0 ? EX_IOERR : EX_OK;
}

int bs_run(const struct sendmail_opts *o, const struct config *c)
{
	struct bs_ctx b = { .o = o, .c = c, .memfd = -1 };
	struct smtp_server_params sp = {
		.hostname = c->hostname, .peer_allowed = true,
		.max_message_size = c->max_message_size, .max_recipients = c->max_recipients,
		.sink = &bs_sink, .sink_ctx = &b,
	};
	struct smtp_server *srv;
	char err[512];
	int r;

	priv_raise();
	b.raw = noconf_active();
	b.handover = b.raw || handoff_needed(c->spool_dir);
	if (!b.handover)
		b.q = queue_open(c->spool_dir, !priv_have(), err, sizeof(err));
	priv_lower();
	if (!b.q && !b.handover) {
		printf("421 4.3.0 %s Service not available: %s\r\n", c->hostname, err);
		return EX_TEMPFAIL;
	}
	b.full_name = enqueue_full_name(o->full_name, b.gecos, sizeof(b.gecos));
	srv = smtp_server_new(&sp);
	if (!srv) {
		queue_close(b.q);
		return EX_TEMPFAIL;
	}
	r = bs_loop(srv);
	smtp_server_free(srv);
	bs_abort(&b);
	if (b.q)
		queue_close(b.q);
	return r;
}
