#include "config.h"
#include "queue/qjson.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/rfc3339.h"
#include "queue/mailq.h"

/* Length of the valid UTF-8 sequence at s (1..4), 0 if invalid. */
static size_t qjson_utf8_len(const unsigned char *s)
{
	size_t n, i;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* Overlong forms, surrogates and beyond U+10FFFF are not UTF-8. */
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

void qjson_string(FILE *out, const char *str)
{
	const unsigned char *s = (const unsigned char *)(str ? str : "");

	fputc('"', out);
	while (*s) {
		size_t n = qjson_utf8_len(s);

		if (n == 0) {
			fputs("\\ufffd", out);
			s++;
		} else if (*s == '"' || *s == '\\') {
			fprintf(out, "\\%c", *s++);
		} else if (*s < 0x20 || *s == 0x7f) {
			fprintf(out, "\\u%04x", *s++);
		} else {
			fwrite(s, 1, n, out);
			s += n;
		}
	}
	fputc('"', out);
}

static void qjson_time(FILE *out, time_t t)
{
	char buf[40];

	if (t <= 0) {
		fputs("null", out);
		return;
	}
	rfc3339_local(t, buf, sizeof(buf));
	fprintf(out, "\"%s\"", buf);
}

static void qjson_rcpt(FILE *out, const struct q_rcpt *r)
{
	fputs("{\"address\": ", out);
	qjson_string(out, r->addr);
	fprintf(out, ", \"state\": \"%s\", \"attempts\": %u, \"last_reason\": ",
	    q_state_name(r->state), r->attempts);
	if (r->last_reason)
		qjson_string(out, r->last_reason);
	else
		fputs("null", out);
	fputs(", \"next_attempt\": ", out);
	/* Only a deferred recipient waits for a time; pending ones go now. */
	qjson_time(out, r->state == Q_DEFERRED ? r->next_attempt : 0);
	fputc('}', out);
}

void qjson_message(FILE *out, const struct q_envelope *env)
{
	time_t arrival = (time_t)(env->arrival_us / 1000000);

	fputs("{\"id\": ", out);
	qjson_string(out, env->id);
	fprintf(out, ", \"size\": %llu, \"arrival\": ", (unsigned long long)env->size);
	qjson_time(out, arrival > 0 ? arrival : 1);
	fputs(", \"sender\": ", out);
	qjson_string(out, env->sender);
	/* "held": nothing left to deliver, kept visible (README "Running it"). */
	fprintf(out, ", \"state\": \"%s\"", env->held ? "held" : "queued");
	fputs(", \"recipients\": [", out);
	for (size_t i = 0; i < env->nrcpts; i++) {
		if (i)
			fputs(", ", out);
		qjson_rcpt(out, &env->rcpts[i]);
	}
	fputs("]}", out);
}

struct qjson_ctx {
	FILE *out;
	size_t count;
};

static void qjson_one(void *arg, enum q_area area, const struct q_envelope *env)
{
	struct qjson_ctx *j = arg;

	(void)area;
	fputs(j->count ? ",\n" : "\n", j->out);
	qjson_message(j->out, env);
	j->count++;
}

int qjson_print(struct queue *q, FILE *out, char *err, size_t errlen)
{
	struct qjson_ctx j = { .out = out };

	fputc('[', out);
	if (mailq_foreach(q, Q_QUEUE, qjson_one, &j, err, errlen) < 0 ||
	    mailq_foreach(q, Q_MAILDROP, qjson_one, &j, err, errlen) < 0)
		return -1;
	fputs(j.count ? "\n]\n" : "]\n", out);
	return 0;
}
