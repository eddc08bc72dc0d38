#include "config.h"
#include "frontend/mailq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"

/* Postfix's short-id layout (showq_compat.c), so existing parsers work. */
#define MAILQ_STRING_FORMAT "%-11s %7s %-20s %s\n"
#define MAILQ_SENDER_FORMAT "%-11s %7llu %20.20s %s\n"

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

static void mailq_message(FILE *out, const struct q_envelope *env)
{
	const char *prev = "";
	time_t arrival = (time_t)(env->arrival_us / 1000000);
	char tbuf[32], *ts;
	struct tm tm;

	ts = asctime_r(localtime_r(&arrival, &tm), tbuf);
	fprintf(out, MAILQ_SENDER_FORMAT, env->id, (unsigned long long)env->size,
	    ts ? ts : "", env->sender[0] ? env->sender : "MAILER-DAEMON");
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct q_rcpt *r = &env->rcpts[i];
		/* Done recipients are no longer queued, as in Postfix. */
		if (r->state == Q_DELIVERED || r->state == Q_FAILED)
			continue;
		mailq_reason(out, r->last_reason ? r->last_reason : "", &prev);
		fprintf(out, MAILQ_STRING_FORMAT, "", "", "", r->addr);
	}
}

static int mailq_area(struct queue *q, enum q_area area, FILE *out, unsigned long *count,
    unsigned long long *bytes, char *err, size_t errlen)
{
	char (*ids)[QID_SIZE] = NULL;
	int n = queue_scan(q, area, &ids, 0);

	/* queue/ appears when the daemon first runs: until then it is empty. */
	if (n < 0 && errno == ENOENT && area == Q_QUEUE)
		return 0;
	if (n < 0) {
		snprintf(err, errlen, "cannot read the %s directory of %s: %s",
		    area == Q_MAILDROP ? "maildrop" : "queue", queue_path(q), strerror(errno));
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
		if (*count)
			fputc('\n', out);
		else
			fprintf(out, MAILQ_STRING_FORMAT, "-Queue ID-", "--Size--",
			    "----Arrival Time----", "-Sender/Recipient-------");
		mailq_message(out, env);
		(*count)++;
		*bytes += env->size;
		q_envelope_free(env);
	}
	free(ids);
	return 0;
}

int mailq_print(struct queue *q, FILE *out, char *err, size_t errlen)
{
	unsigned long count = 0;
	unsigned long long bytes = 0;

	if (mailq_area(q, Q_QUEUE, out, &count, &bytes, err, errlen) < 0)
		return -1;
	if (mailq_area(q, Q_MAILDROP, out, &count, &bytes, err, errlen) < 0)
		return -1;
	if (count == 0)
		fprintf(out, "Mail queue is empty\n");
	else
		fprintf(out, "\n-- %llu Kbytes in %lu Request%s.\n", bytes / 1024, count,
		    count == 1 ? "" : "s");
	return 0;
}
