#include "config.h"
#include "queue/mailq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/rfc3339.h"

/* Postfix's short-id layout (showq_compat.c), so existing parsers work. */
#define MAILQ_STRING_FORMAT "%-11s %7s %-20s %s\n"
#define MAILQ_SENDER_FORMAT "%-11s %7llu %20.20s %s\n"
#define MAILQ_HEADER_MAX 65536		/* `show` prints at most this much header */

/* Print "(reason)" right-aligned at column 76 only when it changes. */
static void mailq_reason(FILE *out, const char *why, const char **prev)
{
	const char *show;
	int pad;

	if (strcmp(*prev, why) == 0)
		return;
	*prev = why;
	show = *why ? why : "reason unavailable";
	pad = 76 - (int)strlen(show);
	fprintf(out, "%*s(%s)\n", pad > 0 ? pad : 0, "", show);
}

static void mailq_message(FILE *out, const struct q_envelope *env, bool active)
{
	const char *prev = "";
	time_t arrival = (time_t)(env->arrival_us / 1000000);
	char tbuf[32], *ts, id[QID_SIZE + 1];
	struct tm tm;

	/* Postfix marks a message in delivery '*' and one on hold '!'. */
	snprintf(id, sizeof(id), "%s%s", env->id, active ? "*" : env->held ? "!" : "");
	ts = asctime_r(localtime_r(&arrival, &tm), tbuf);
	fprintf(out, MAILQ_SENDER_FORMAT, id, (unsigned long long)env->size,
	    ts ? ts : "", env->sender[0] ? env->sender : "MAILER-DAEMON");
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct q_rcpt *r = &env->rcpts[i];
		/* Done recipients are no longer queued, as in Postfix; a held
		 * message shows the failures it is held for. */
		if (r->state == Q_DELIVERED || (r->state == Q_FAILED && !env->held))
			continue;
		mailq_reason(out, r->last_reason ? r->last_reason : "", &prev);
		fprintf(out, MAILQ_STRING_FORMAT, "", "", "", r->addr);
	}
}

int mailq_foreach(struct queue *q, enum q_area area, mailq_each_fn fn, void *ctx,
    char *err, size_t errlen)
{
	char (*ids)[QID_SIZE] = NULL;
	int n = queue_scan(q, area, &ids, 0);

	/* queue/ appears when the daemon first runs: until then it is empty. */
	if (n < 0 && errno == ENOENT && area == Q_QUEUE)
		return 0;
	if (n < 0) {
		int saved = errno;

		snprintf(err, errlen, "cannot read the %s directory of %s: %s",
		    area == Q_MAILDROP ? "maildrop" : "queue", queue_path(q), strerror(errno));
		errno = saved;
		return -1;
	}
	for (int i = 0; i < n; i++) {
		struct q_envelope *env;
		char why[256];

		if (queue_read(q, area, ids[i], &env, why, sizeof(why)) < 0) {
			/* Gone meanwhile (delivered or picked up) is normal. */
			if (errno != ENOENT)
				log_warn("%s: unreadable queue file: %s", ids[i], why);
			continue;
		}
		fn(ctx, area, env);
		q_envelope_free(env);
	}
	free(ids);
	return 0;
}

struct mailq_print_ctx {
	FILE *out;
	mailq_active_fn active;
	void *active_ctx;
	unsigned long count;
	unsigned long long bytes;
};

static void mailq_print_one(void *arg, enum q_area area, const struct q_envelope *env)
{
	struct mailq_print_ctx *p = arg;
	bool active = area == Q_QUEUE && p->active && p->active(p->active_ctx, env->id);

	if (p->count)
		fputc('\n', p->out);
	else
		fprintf(p->out, MAILQ_STRING_FORMAT, "-Queue ID-", "--Size--",
		    "----Arrival Time----", "-Sender/Recipient-------");
	mailq_message(p->out, env, active);
	p->count++;
	p->bytes += env->size;
}

int mailq_print_active(struct queue *q, FILE *out, mailq_active_fn active, void *ctx,
    char *err, size_t errlen)
{
	struct mailq_print_ctx p = { .out = out, .active = active, .active_ctx = ctx };

	if (mailq_foreach(q, Q_QUEUE, mailq_print_one, &p, err, errlen) < 0 ||
	    mailq_foreach(q, Q_MAILDROP, mailq_print_one, &p, err, errlen) < 0)
		return -1;
	if (p.count == 0)
		fprintf(out, "Mail queue is empty\n");
	else
		fprintf(out, "\n-- %llu Kbytes in %lu Request%s.\n", p.bytes / 1024, p.count,
		    p.count == 1 ? "" : "s");
	return 0;
}

int mailq_print(struct queue *q, FILE *out, char *err, size_t errlen)
{
	return mailq_print_active(q, out, NULL, NULL, err, errlen);
}

struct mailq_count_ctx {
	struct mailq_counts *c;
	mailq_active_fn active;
	void *active_ctx;
};

static void mailq_count_one(void *arg, enum q_area area, const struct q_envelope *env)
{
	struct mailq_count_ctx *k = arg;

	k->c->messages++;
	k->c->bytes += env->size;
	if (area == Q_MAILDROP)
		k->c->maildrop++;
	else if (k->active && k->active(k->active_ctx, env->id))
		k->c->active++;
	for (size_t i = 0; i < env->nrcpts; i++)
		if ((unsigned)env->rcpts[i].state <= Q_FAILED)
			k->c->rcpts[env->rcpts[i].state]++;
	if (env->held)
		k->c->held++;
}

int mailq_count(struct queue *q, mailq_active_fn active, void *ctx, struct mailq_counts *c,
    char *err, size_t errlen)
{
	struct mailq_count_ctx k = { .c = c, .active = active, .active_ctx = ctx };

	memset(c, 0, sizeof(*c));
	if (mailq_foreach(q, Q_QUEUE, mailq_count_one, &k, err, errlen) < 0 ||
	    mailq_foreach(q, Q_MAILDROP, mailq_count_one, &k, err, errlen) < 0)
		return -1;
	return 0;
}

void mailq_counts_print(FILE *out, const struct mailq_counts *c)
{
	fprintf(out, "queue: %lu message%s (%lu in delivery, %lu in maildrop), %llu KiB\n",
	    c->messages, c->messages == 1 ? "" : "s", c->active, c->maildrop, c->bytes / 1024);
	fprintf(out, "recipients: %lu pending, %lu deferred, %lu delivered, %lu failed\n",
	    c->rcpts[Q_PENDING], c->rcpts[Q_DEFERRED], c->rcpts[Q_DELIVERED], c->rcpts[Q_FAILED]);
	if (c->held)
		fprintf(out, "held: %lu message%s with failures nobody was told about (mailq "
		    "marks them '!'; smtprelay show ID, smtprelay delete ID)\n", c->held,
		    c->held == 1 ? "" : "s");
}

/* ---- show ---- */

static void mailq_time_line(FILE *out, const char *label, time_t t)
{
	char buf[40];

	rfc3339_local(t, buf, sizeof(buf));
	fprintf(out, "%s%s\n", label, buf);
}

static void mailq_show_rcpt(FILE *out, const struct q_rcpt *r)
{
	char when[40];

	fprintf(out, "recipient: %s\n  state: %s, %u attempt%s", r->addr, q_state_name(r->state),
	    r->attempts, r->attempts == 1 ? "" : "s");
	if (r->state == Q_DEFERRED && r->next_attempt > 0) {
		rfc3339_local(r->next_attempt, when, sizeof(when));
		fprintf(out, ", next attempt %s", when);
	}
	fputc('\n', out);
	if (r->last_reason)
		fprintf(out, "  %s: %s\n", r->state == Q_DELIVERED ? "delivered via" : "last reason",
		    r->last_reason);
}

/* Header lines as they are, CRLF shown as LF, other controls as '?'. */
static void mailq_show_bytes(FILE *out, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)p[i];

		if (ch == '\r' && i + 1 < n && p[i + 1] == '\n')
			continue;
		fputc((ch < 0x20 && ch != '\t' && ch != '\n') || ch == 0x7f ? '?' : ch, out);
	}
}

static void mailq_show_headers(FILE *out, struct queue *q, enum q_area area,
    const struct q_envelope *env)
{
	char *buf = malloc(MAILQ_HEADER_MAX + 1), *end;
	size_t len = 0;
	ssize_t n;
	int fd = buf ? queue_open_content(q, area, env) : -1;

	if (fd < 0) {
		fprintf(out, "(the content cannot be read: %s)\n", strerror(errno));
		free(buf);
		return;
	}
	while (len < MAILQ_HEADER_MAX && (n = read(fd, buf + len, MAILQ_HEADER_MAX - len)) > 0) {
		len += (size_t)n;
		buf[len] = '\0';
		if (memmem(buf, len, "\r\n\r\n", 4) || (len >= 2 && memcmp(buf, "\r\n", 2) == 0))
			break;
	}
	close(fd);
	buf[len] = '\0';
	/* The header section ends at the first empty line; the body is not shown. */
	if (len >= 2 && memcmp(buf, "\r\n", 2) == 0)
		len = 0;
	else if ((end = memmem(buf, len, "\r\n\r\n", 4)))
		len = (size_t)(end - buf) + 2;
	mailq_show_bytes(out, buf, len);
	if (len == MAILQ_HEADER_MAX)
		fputs("\n(header section truncated)\n", out);
	free(buf);
}

void mailq_show(FILE *out, const struct q_envelope *env, const char *status, struct queue *q,
    enum q_area area)
{
	fprintf(out, "id: %s\nstatus: %s\nsender: %s\n", env->id, status,
	    env->sender[0] ? env->sender : "<> (null sender)");
	mailq_time_line(out, "arrival: ", (time_t)(env->arrival_us / 1000000));
	fprintf(out, "size: %llu bytes\n", (unsigned long long)env->size);
	fprintf(out, "origin: %s", env->origin ? env->origin : "unknown");
	if (env->uid >= 0)
		fprintf(out, ", uid %ld", env->uid);
	fputc('\n', out);
	for (size_t i = 0; i < env->nrcpts; i++)
		mailq_show_rcpt(out, &env->rcpts[i]);
	fputs("\nheader section:\n", out);
	if (q)
		mailq_show_headers(out, q, area, env);
	else
		fputs("(the message has left the queue: its content is gone)\n", out);
}
