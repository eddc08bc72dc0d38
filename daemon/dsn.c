#include "config.h"
#define LOG_ROLE LOG_ROLE_BOUNCE
#include "daemon/dsn.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lib/addr.h"
#include "relay/maillog.h"
#include "lib/log.h"
#include "lib/rfc5322.h"
#include "queue/submit.h"
#include "daemon/durable.h"
#include "daemon/qstore.h"
#include "lib/fsutil.h"

/* Bounds of what dsn_build writes: fixed text, and per failed recipient a
 * text line and the delivery-status fields (each at most DSN_TEXT_MAX). */
#define DSN_FIXED_MAX (16 * 1024)
#define DSN_PER_RCPT_MAX (10 * 1024)
#define DSN_LIMIT_SLOTS 4096
#define DSN_TEXT_MAX 1000

/* ---- text helpers ---- */

/* One header-safe line: control characters (CR, LF, TAB...) become spaces. */
static void dsn_clean(const char *s, char *out, size_t len)
{
	size_t i = 0;

	for (; s && *s && i + 1 < len; s++)
		out[i++] = (unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s;
	out[i] = '\0';
}

static bool dsn_is_status(const char *p, size_t *len)
{
	const char *q = p;

	if (*q != '2' && *q != '4' && *q != '5')
		return false;
	q++;
	for (int part = 0; part < 2; part++) {
		int digits = 0;

		if (*q++ != '.')
			return false;
		while (isdigit((unsigned char)*q) && digits < 4) {
			q++;
			digits++;
		}
		if (digits == 0 || digits > 3)
			return false;
	}
	if (*q && !isspace((unsigned char)*q) && *q != ')' && *q != ',' && *q != ';')
		return false;
	*len = (size_t)(q - p);
	return true;
}

bool dsn_status_code(const char *reason, char *out, size_t len)
{
	size_t n;

	for (const char *p = reason; p && *p; p++) {
		if (p != reason && !isspace((unsigned char)p[-1]) && p[-1] != '(')
			continue;
		if (dsn_is_status(p, &n) && n < len) {
			memcpy(out, p, n);
			out[n] = '\0';
			return true;
		}
	}
	return false;
}

/* Where an SMTP reply ("550 5.1.1 ...") starts in a reason, or NULL. */
static const char *dsn_smtp_reply(const char *reason)
{
	for (const char *p = reason; p && *p; p++) {
		if (p != reason && !isspace((unsigned char)p[-1]) && p[-1] != '(')
			continue;
		if ((p[0] == '4' || p[0] == '5') && isdigit((unsigned char)p[1]) &&
		    isdigit((unsigned char)p[2]) && (p[3] == ' ' || p[3] == '-'))
			return p;
	}
	return NULL;
}

static bool dsn_expired(const struct q_rcpt *r)
{
	return r->last_reason && strncmp(r->last_reason, "message expired", 15) == 0;
}

/* Status: expiry is 4.4.7 (RFC 3463), else the reply's code, else 5.0.0. */
static void dsn_rcpt_status(const struct q_rcpt *r, char *out, size_t len)
{
	if (dsn_expired(r))
		snprintf(out, len, "4.4.7");
	else if (!dsn_status_code(r->last_reason, out, len))
		snprintf(out, len, "5.0.0");
}

static bool dsn_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

static bool dsn_has_8bit(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}

/* ---- the parts ---- */

static int dsn_head(struct buf *b, const struct dsn_info *info, const struct q_envelope *env,
    const char *boundary)
{
	char date[RFC5322_DATE_MAX], to[DSN_TEXT_MAX];

	if (rfc5322_date(info->now, date, sizeof(date)) < 0)
		return -1;
	dsn_clean(env->sender, to, sizeof(to));
	return buf_printf(b,
	    "From: \"Mail Delivery System\" <MAILER-DAEMON@%s>\r\n"
	    "To: <%s>\r\n"
	    "Subject: Undelivered Mail Returned to Sender\r\n"
	    "Date: %s\r\n"
	    "Message-ID: <%s>\r\n"
	    "Auto-Submitted: auto-replied\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	    "\tboundary=\"%s\"\r\n"
	    "\r\n"
	    "This is a MIME-encapsulated message.\r\n"
	    "\r\n", info->hostname, to, date, info->message_id, boundary);
}

static int dsn_text_part(struct buf *b, const struct dsn_info *info, const struct q_envelope *env,
    const bool *failed, const char *boundary, bool eightbit)
{
	char addr[DSN_TEXT_MAX], why[DSN_TEXT_MAX];

	buf_printf(b, "--%s\r\nContent-Description: Notification\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n%s\r\n", boundary,
	    eightbit ? "Content-Transfer-Encoding: 8bit\r\n" : "");
	buf_printf(b, "This is the mail system at host %s.\r\n\r\n"
	    "I'm sorry to have to inform you that your message could not\r\n"
	    "be delivered to one or more recipients. The headers of your\r\n"
	    "message are attached below (its body is not returned).\r\n\r\n"
	    "Check the addresses and the reasons below; if a reason names a\r\n"
	    "problem with this system, please contact its administrator.\r\n\r\n",
	    info->hostname);
	for (size_t i = 0; i < env->nrcpts; i++) {
		if (!failed[i])
			continue;
		dsn_clean(env->rcpts[i].addr, addr, sizeof(addr));
		dsn_clean(env->rcpts[i].last_reason ? env->rcpts[i].last_reason :
		    "delivery failed", why, sizeof(why));
		buf_printf(b, "<%s>: %s\r\n", addr, why);
	}
	return buf_puts(b, "\r\n");
}

static int dsn_rcpt_fields(struct buf *b, const struct q_rcpt *r, time_t now)
{
	char addr[DSN_TEXT_MAX], text[DSN_TEXT_MAX], status[16], date[RFC5322_DATE_MAX];
	const char *inner = r->last_reason;
	const char *reply;

	/* An expired recipient's reason carries the last reply after the prefix. */
	if (dsn_expired(r) && inner && strstr(inner, "in the queue: "))
		inner = strstr(inner, "in the queue: ") + 14;
	reply = dsn_smtp_reply(inner);

	dsn_clean(r->addr, addr, sizeof(addr));
	buf_printf(b, "\r\nFinal-Recipient: %s; %s\r\n", dsn_ascii(addr) ? "rfc822" : "utf-8", addr);
	if (r->orcpt) {
		dsn_clean(r->orcpt, text, sizeof(text));
		/* ORCPT from the listener keeps its "type;" prefix. */
		if (strchr(text, ';'))
			buf_printf(b, "Original-Recipient: %s\r\n", text);
		else
			buf_printf(b, "Original-Recipient: %s; %s\r\n",
			    dsn_ascii(text) ? "rfc822" : "utf-8", text);
	}
	dsn_rcpt_status(r, status, sizeof(status));
	buf_printf(b, "Action: failed\r\nStatus: %s\r\n", status);
	if (reply) {
		dsn_clean(reply, text, sizeof(text));
		buf_printf(b, "Diagnostic-Code: smtp; %s\r\n", text);
	} else if (r->last_reason) {
		dsn_clean(r->last_reason, text, sizeof(text));
		buf_printf(b, "Diagnostic-Code: X-smtprelay; %s\r\n", text);
	}
	if (rfc5322_date(r->last_attempt ? r->last_attempt : now, date, sizeof(date)) == 0)
		buf_printf(b, "Last-Attempt-Date: %s\r\n", date);
	return 0;
}

static int dsn_status_part(struct buf *b, const struct dsn_info *info, const struct q_envelope *env,
    const bool *failed, const char *boundary)
{
	char date[RFC5322_DATE_MAX], envid[DSN_TEXT_MAX];

	buf_printf(b, "--%s\r\nContent-Description: Delivery report\r\n"
	    "Content-Type: message/delivery-status\r\n\r\n", boundary);
	buf_printf(b, "Reporting-MTA: dns; %s\r\nX-Smtprelay-Queue-ID: %s\r\n",
	    info->hostname, env->id);
	if (env->envid) {
		dsn_clean(env->envid, envid, sizeof(envid));
		buf_printf(b, "Original-Envelope-Id: %s\r\n", envid);
	}
	if (rfc5322_date((time_t)(env->arrival_us / 1000000), date, sizeof(date)) == 0)
		buf_printf(b, "Arrival-Date: %s\r\n", date);
	for (size_t i = 0; i < env->nrcpts; i++)
		if (failed[i])
			dsn_rcpt_fields(b, &env->rcpts[i], info->now);
	return buf_puts(b, "\r\n");
}

/* The original's header section, cut at a line end within DSN_HEADERS_MAX. */
static int dsn_read_headers(int fd, char **out, size_t *outlen)
{
	char *h = malloc(DSN_HEADERS_MAX + 1);
	size_t len = 0, end;
	ssize_t n;
	char *p;

	if (!h)
		return -1;
	while (len < DSN_HEADERS_MAX) {
		n = read(fd, h + len, DSN_HEADERS_MAX - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(h);
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	h[len] = '\0';
	if (len >= 2 && h[0] == '\r' && h[1] == '\n')
		end = 0;		/* no header section at all */
	else if ((p = memmem(h, len, "\r\n\r\n", 4)))
		end = (size_t)(p - h) + 2;
	else {
		/* No end in sight: the last complete line within the limit. */
		end = 0;
		for (size_t i = len; i >= 2; i--) {
			if (h[i - 2] == '\r' && h[i - 1] == '\n') {
				end = i;
				break;
			}
		}
	}
	h[end] = '\0';
	*out = h;
	*outlen = end;
	return 0;
}

static int dsn_headers_part(struct buf *b, const char *boundary, const char *h, size_t hlen,
    bool eightbit)
{
	buf_printf(b, "--%s\r\nContent-Description: Undelivered Message Headers\r\n"
	    "Content-Type: text/rfc822-headers\r\n%s\r\n", boundary,
	    eightbit ? "Content-Transfer-Encoding: 8bit\r\n" : "");
	buf_append(b, h, hlen);
	if (hlen && (hlen < 2 || memcmp(h + hlen - 2, "\r\n", 2) != 0))
		buf_puts(b, "\r\n");
	return buf_printf(b, "\r\n--%s--\r\n", boundary);
}

static bool dsn_failed_8bit(const struct q_envelope *env, const bool *failed)
{
	for (size_t i = 0; i < env->nrcpts; i++)
		if (failed[i] && env->rcpts[i].last_reason &&
		    dsn_has_8bit(env->rcpts[i].last_reason, strlen(env->rcpts[i].last_reason)))
			return true;
	return false;
}

/* All the memory the DSN can need, up front: no append fails half-way
 * (which would leave a DSN with a part silently missing). */
static int dsn_reserve(struct buf *out, const struct q_envelope *env, const bool *failed)
{
	size_t max = DSN_HEADERS_MAX + DSN_FIXED_MAX;
	char *zero;

	for (size_t i = 0; i < env->nrcpts; i++)
		if (failed[i])
			max += DSN_PER_RCPT_MAX;
	buf_init(out, max);
	if (!(zero = calloc(1, max))) {
		errno = ENOMEM;
		return -1;
	}
	if (buf_append(out, zero, max) < 0) {
		free(zero);
		buf_free(out);
		return -1;
	}
	free(zero);
	buf_reset(out);
	return 0;
}

int dsn_build(struct buf *out, const struct dsn_info *info, const struct q_envelope *env,
    const bool *failed, int content_fd)
{
	char boundary[128];
	char *h = NULL;
	size_t hlen = 0;
	bool eightbit;
	int r = 0;

	if (dsn_read_headers(content_fd, &h, &hlen) < 0)
		return -1;
	snprintf(boundary, sizeof(boundary), "%s/%s", env->id, info->hostname);
	eightbit = dsn_has_8bit(h, hlen) || dsn_failed_8bit(env, failed) ||
	    !dsn_ascii(env->sender);
	if (dsn_reserve(out, env, failed) < 0) {
		free(h);
		return -1;
	}
	if (dsn_head(out, info, env, boundary) < 0 ||
	    dsn_text_part(out, info, env, failed, boundary, eightbit) < 0 ||
	    dsn_status_part(out, info, env, failed, boundary) < 0 ||
	    dsn_headers_part(out, boundary, h, hlen, eightbit) < 0) {
		r = -1;
		buf_free(out);
	}
	free(h);
	return r;
}

/* ---- policy ---- */

bool dsn_wanted(const struct q_envelope *env, const bool *failed)
{
	if (!env->sender || !env->sender[0])
		return false;
	for (size_t i = 0; i < env->nrcpts; i++) {
		unsigned n = env->rcpts[i].notify;

		/* Not given means the default: failures are reported. */
		if (failed[i] && (n == 0 || (n & SMTP_NOTIFY_FAILURE)))
			return true;
	}
	return false;
}

struct dsn_limit_slot {
	char *sender;
	time_t start;
	unsigned count;
};

struct dsn_limit {
	struct dsn_limit_slot slots[DSN_LIMIT_SLOTS];
	size_t n;
};

struct dsn_limit *dsn_limit_new(void)
{
	return calloc(1, sizeof(struct dsn_limit));
}

void dsn_limit_free(struct dsn_limit *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		free(l->slots[i].sender);
	free(l);
}

static void dsn_limit_prune(struct dsn_limit *l, time_t now)
{
	size_t j = 0;

	for (size_t i = 0; i < l->n; i++) {
		if (now - l->slots[i].start >= DSN_LIMIT_WINDOW || now < l->slots[i].start) {
			free(l->slots[i].sender);
			continue;
		}
		l->slots[j++] = l->slots[i];
	}
	l->n = j;
}

bool dsn_limit_take(struct dsn_limit *l, const char *sender, time_t now)
{
	dsn_limit_prune(l, now);
	for (size_t i = 0; i < l->n; i++) {
		if (strcasecmp(l->slots[i].sender, sender) != 0)
			continue;
		if (l->slots[i].count >= DSN_LIMIT_PER_HOUR)
			return false;
		l->slots[i].count++;
		return true;
	}
	/* A full table (thousands of distinct senders in an hour) stops counting
	 * new senders rather than stopping DSNs: each still gets at most one per
	 * failed message. */
	if (l->n < DSN_LIMIT_SLOTS && (l->slots[l->n].sender = strdup(sender))) {
		l->slots[l->n].start = now;
		l->slots[l->n].count = 1;
		l->n++;
	}
	return true;
}

/* ---- queueing, off the event loop ---- */

/* One DSN on its way to the disk.  A commit worker reads the original's
 * headers, builds the DSN and writes it (none of it on the event loop); as
 * a serial job it is durable before the failed state that the sched asks
 * for after it (daemon/qstore.h). */
struct dsn_job {
	const struct config *conf;	/* d->conf when asked (read-only) */
	struct queue *queue;
	const struct q_envelope *env;	/* the sched's: untouched until cb */
	const bool *failed;
	struct qwriter *w;		/* from stage to settle */
	char dsnid[QID_SIZE];
	struct maillog_summary sum;	/* read back by the worker, logged on the loop */
	qstore_cb cb;
	void *arg;
};

/* The DSN, complete and not yet staged, from the original's content on fd;
 * NULL with err set. */
static struct qwriter *dsn_write(struct dsn_job *j, int fd, char *err, size_t errlen)
{
	char *rcpts[1] = { j->env->sender };
	struct submit_params p = {
		.conf = j->conf, .queue = j->queue, .area = Q_QUEUE,
		.sender = "", .rcpts = rcpts, .nrcpts = 1, .uid = -1, .origin = "dsn",
		.smtputf8 = !dsn_ascii(j->env->sender),
	};
	struct submit_error e = { 0 };
	struct dsn_info info = { .hostname = j->conf->hostname, .now = time(NULL) };
	char msgid[QID_SIZE + 300];
	struct qwriter *w = NULL;
	struct submit *s;
	struct buf b;

	p.eightbit = p.smtputf8;
	if (!(s = submit_begin(&p, &e))) {
		snprintf(err, errlen, "%s", e.text);
		return NULL;
	}
	snprintf(msgid, sizeof(msgid), "%s@%s", submit_id(s), j->conf->hostname);
	info.message_id = msgid;
	if (dsn_build(&b, &info, j->env, j->failed, fd) < 0) {
		snprintf(err, errlen, "cannot build it: %s", strerror(errno));
		submit_abort(s);
		return NULL;
	}
	if (submit_write(s, b.data, b.len, &e) < 0)
		submit_abort(s);
	else
		w = submit_finish(s, j->dsnid, &e);
	buf_free(&b);
	if (!w)
		snprintf(err, errlen, "%s", e.text);
	return w;
}

static int dsn_stage(void *arg, int *dirfd, char *err, size_t errlen)
{
	struct dsn_job *j = arg;
	int fd = queue_open_content(j->queue, Q_QUEUE, j->env), e;

	if (fd < 0) {
		e = errno ? errno : EIO;
		snprintf(err, errlen, "cannot read the message: %s", strerror(e));
		return e;
	}
	errno = 0;
	j->w = dsn_write(j, fd, err, errlen);
	e = errno ? errno : EIO;
	close(fd);
	if (!j->w)
		return e;
	if (qwriter_stage_early(j->w, err, errlen) < 0)
		return errno ? errno : EIO;
	*dirfd = qwriter_dirfd(j->w);
	return 0;
}

static int dsn_flush(void *arg, char *err, size_t errlen)
{
	struct dsn_job *j = arg;

	return qwriter_sync(j->w, err, errlen) < 0 ? (errno ? errno : EIO) : 0;
}

static int dsn_settle(void *arg, int error, char *err, size_t errlen)
{
	struct dsn_job *j = arg;
	int r = error;

	if (j->w) {
		r = qwriter_settle(j->w, error, err, errlen) < 0 ? (errno ? errno : EIO) : 0;
		j->w = NULL;
	}
	if (r == 0)
		maillog_summary_read(j->queue, j->dsnid, &j->sum);
	return r;
}

/* On the loop: logged when queued, then the caller is told. */
static void dsn_done(void *arg, int error, const char *err)
{
	struct dsn_job *j = arg;

	if (error) {
		log_err("%s: cannot queue a DSN: %s", j->env->id, err);
	} else {
		log_info("%s: sender non-delivery notification: %s", j->env->id, j->dsnid);
		maillog_summary_log(&j->sum, NULL);
	}
	j->cb(j->arg, error, err, j->dsnid);
	free(j);
}

static const struct commit_ops dsn_ops = {
	.stage = dsn_stage, .settle = dsn_settle, .done = dsn_done, .flush = dsn_flush,
};

/* Without the stage (unit tests): the same steps, here and now. */
static void dsn_now(struct dsn_job *j)
{
	char err[COMMIT_ERR_SIZE] = "";
	int dirfd = -1, e;

	e = dsn_stage(j, &dirfd, err, sizeof(err));
	if (!e)
		e = dsn_flush(j, err, sizeof(err));
	if (!e && dirfd >= 0 && fs_fsync_dirfd(dirfd) < 0)
		e = errno ? errno : EIO;
	e = dsn_settle(j, e, err, sizeof(err));
	dsn_done(j, e, err);
}

int dsn_send(struct daemon *d, const struct q_envelope *env, const bool *failed,
    qstore_cb cb, void *arg)
{
	struct dsn_job *j;

	if (!env->sender[0]) {
		log_info("%s: sender is null: not returning a DSN", env->id);
		return 0;
	}
	if (!dsn_wanted(env, failed)) {
		log_info("%s: NOTIFY excludes failures: not returning a DSN", env->id);
		return 0;
	}
	if (!dsn_limit_take(d->dsn_limit, env->sender, time(NULL))) {
		log_warn("%s: sender <%s> already got %d DSNs this hour: not returning another",
		    env->id, env->sender, DSN_LIMIT_PER_HOUR);
		return 0;
	}
	if (!(j = calloc(1, sizeof(*j)))) {
		log_err("%s: cannot queue a DSN: out of memory", env->id);
		return -1;
	}
	j->conf = d->conf;
	j->queue = d->queue;
	j->env = env;
	j->failed = failed;
	j->cb = cb;
	j->arg = arg;
	/* Serial: on disk before the failed state that the sched writes next. */
	if (durable_submit(d->durable, &dsn_ops, j, true) < 0)
		dsn_now(j);
	return 1;
}
