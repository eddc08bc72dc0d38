#include "config.h"
#define LOG_ROLE LOG_ROLE_QMGR
#include "relay/maillog.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "relay/conn.h"
#include "lib/log.h"

#define MAILLOG_HEADER_MAX 65536

bool maillog_stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void maillog_init(bool test, bool debug)
{
	bool journal = maillog_stderr_is_journal();
	/* smtprelayd(8) names $JOURNAL_STREAM; one that is not our stderr (a test
	 * harness, an inherited variable) keeps stderr as before. */
	bool to_stderr = test || debug || (getenv("JOURNAL_STREAM") && !journal);

	if (test) {
		log_init("smtprelayd", LOG_TARGET_STDERR, false);
		log_stderr_priority_prefix(journal);	/* ExecStartPre's warnings */
		return;
	}
	log_init("smtprelay", to_stderr ? LOG_TARGET_STDERR : LOG_TARGET_SYSLOG, debug);
	log_roles(LOG_ROLE_MASTER);
	log_stderr_priority_prefix(to_stderr && journal);
}

/* ---- delivery lines ---- */

void maillog_format_delay(char *out, size_t size, double s)
{
	if (!(s >= 0.01))	/* also NaN and negative clock steps */
		snprintf(out, size, "0");
	else if (s < 1)
		snprintf(out, size, "%.2f", s);
	else if (s < 10)
		snprintf(out, size, "%.1f", s);
	else
		snprintf(out, size, "%.0f", s);
	/* Postfix prints no trailing zeros: 0.3, not 0.30; 2, not 2.0. */
	if (strchr(out, '.')) {
		char *e = out + strlen(out) - 1;

		while (*e == '0')
			*e-- = '\0';
		if (*e == '.')
			*e = '\0';
	}
}

static bool maillog_is_dsn_at(const char *p, char cls)
{
	int n1 = 0, n2 = 0;

	if (*p != cls || p[1] != '.')
		return false;
	for (p += 2; isdigit((unsigned char)*p) && n1 < 4; p++)
		n1++;
	if (!n1 || *p != '.')
		return false;
	for (p++; isdigit((unsigned char)*p) && n2 < 4; p++)
		n2++;
	return n2 && n1 <= 3 && n2 <= 3 && !isdigit((unsigned char)*p) && *p != '.';
}

void maillog_dsn(const char *reason, char cls, char out[16])
{
	for (const char *p = reason ? reason : ""; *p; p++) {
		if ((p != reason && (isalnum((unsigned char)p[-1]) || p[-1] == '.')) ||
		    !maillog_is_dsn_at(p, cls))
			continue;
		size_t n = strspn(p, "0123456789.");

		snprintf(out, 16, "%.*s", (int)(n < 15 ? n : 15), p);
		return;
	}
	snprintf(out, 16, "%c.0.0", cls);
}

int maillog_format_delivery(char *out, size_t size, const struct maillog_delivery *d)
{
	char delay[16], a[16], b[16], c[16], e[16], orig[600] = "";

	maillog_format_delay(delay, sizeof(delay), d->delay);
	maillog_format_delay(a, sizeof(a), d->delays[0]);
	maillog_format_delay(b, sizeof(b), d->delays[1]);
	maillog_format_delay(c, sizeof(c), d->delays[2]);
	maillog_format_delay(e, sizeof(e), d->delays[3]);
	const char *o = d->orig_to;

	if (o && strncasecmp(o, "rfc822;", 7) == 0)
		o += 7;		/* a DSN ORCPT names its address type */
	if (o && *o && strcasecmp(o, d->to) != 0)
		snprintf(orig, sizeof(orig), "orig_to=<%s>, ", o);
	return snprintf(out, size, "%s: to=<%s>, %srelay=%s, delay=%s, delays=%s/%s/%s/%s, "
	    "dsn=%s, status=%s (%s)", d->id, d->to, orig, d->relay, delay, a, b, c, e, d->dsn,
	    d->status, d->reason ? d->reason : "");
}

void maillog_delivery(const struct maillog_delivery *d)
{
	char line[1800];

	maillog_format_delivery(line, sizeof(line), d);
	log_as(d->by_qmgr ? LOG_ROLE_QMGR : LOG_ROLE_SMTP, LOG_INFO, "%s", line);
}

int maillog_format_tls(char *out, size_t size, const char *peer, const struct conn_tls_info *t)
{
	/* A pin that matched authenticates the server as Postfix's
	 * "fingerprint" level does, which it logs as Verified. */
	const char *trust = t->verified || t->pin_ok ? "Verified"
	    : t->subject[0] ? "Untrusted" : "Anonymous";

	return snprintf(out, size, "%s TLS connection established to %s: %s with cipher %s "
	    "(%d/%d bits)", trust, peer, t->version, t->cipher, t->bits, t->alg_bits);
}

/* ---- arrival ---- */

static const char *maillog_header_value(const char *line, const char *end, const char *name)
{
	size_t n = strlen(name);

	if ((size_t)(end - line) <= n || strncasecmp(line, name, n) != 0 || line[n] != ':')
		return NULL;
	return line + n + 1;
}

/* The value of the Message-ID header, unfolded up to its '>'. */
static bool maillog_copy_id(const char *v, const char *end, char *out, size_t size)
{
	const char *lt = memchr(v, '<', (size_t)(end - v)), *gt;

	if (!lt || !(gt = memchr(lt, '>', (size_t)(end - lt))) || gt - lt < 2)
		return false;
	size_t n = 0;

	for (const char *p = lt + 1; p < gt && n + 1 < size; p++)
		if (!isspace((unsigned char)*p))
			out[n++] = *p;
	out[n] = '\0';
	return n > 0;
}

bool maillog_message_id(const char *text, size_t len, char *out, size_t size)
{
	const char *p = text, *end = text + len;

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *next = eol ? eol + 1 : end, *v;

		if (*p == '\r' || *p == '\n')
			return false;	/* end of the headers */
		if ((v = maillog_header_value(p, eol ? eol : end, "Message-ID"))) {
			/* Folded: the value may continue on indented lines. */
			while (next < end && (*next == ' ' || *next == '\t')) {
				const char *e2 = memchr(next, '\n', (size_t)(end - next));
				next = e2 ? e2 + 1 : end;
			}
			return maillog_copy_id(v, next, out, size);
		}
		p = next;
	}
	return false;
}

static void maillog_read_message_id(struct queue *q, const struct q_envelope *env, char *out,
    size_t size)
{
	char *buf = malloc(MAILLOG_HEADER_MAX);
	int fd = queue_open_content(q, Q_QUEUE, env);
	ssize_t n = 0, r;

	out[0] = '\0';
	if (fd >= 0 && buf)
		while (n < MAILLOG_HEADER_MAX &&
		    (r = read(fd, buf + n, (size_t)(MAILLOG_HEADER_MAX - n))) > 0)
			n += r;
	if (fd >= 0)
		close(fd);
	if (buf && !maillog_message_id(buf, (size_t)n, out, size))
		out[0] = '\0';
	free(buf);
}

void maillog_summary_read(struct queue *q, const char *id, struct maillog_summary *s)
{
	struct q_envelope *env = NULL;

	memset(s, 0, sizeof(*s));
	snprintf(s->id, sizeof(s->id), "%s", id);
	if (queue_read(q, Q_QUEUE, id, &env, s->err, sizeof(s->err)) < 0)
		return;
	snprintf(s->sender, sizeof(s->sender), "%s", env->sender);
	s->uid = env->uid;
	s->size = (unsigned long long)env->size;
	s->nrcpts = env->nrcpts;
	maillog_read_message_id(q, env, s->message_id, sizeof(s->message_id));
	s->ok = true;
	q_envelope_free(env);
}

void maillog_summary_log(const struct maillog_summary *s, const char *note)
{
	if (!s->ok) {
		log_warn("%s: %s", s->id, s->err);
		return;
	}
	if (note)
		log_as(LOG_ROLE_PICKUP, LOG_INFO, "%s: uid=%ld from=<%s>%s", s->id, s->uid,
		    s->sender, note);
	if (s->message_id[0])
		log_as(LOG_ROLE_CLEANUP, LOG_INFO, "%s: message-id=<%s>", s->id, s->message_id);
	log_info("%s: from=<%s>, size=%llu, nrcpt=%zu (queue active)", s->id, s->sender, s->size,
	    s->nrcpts);
}

void maillog_queued(struct queue *q, const char *id)
{
	struct maillog_summary s;

	maillog_summary_read(q, id, &s);
	maillog_summary_log(&s, NULL);
}
