#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/dsn.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "tests/ckrun.h"

struct part {
	char *headers;
	char *body;
};

static struct q_envelope *env_new(void)
{
	struct q_envelope *e = calloc(1, sizeof(*e));

	ck_assert_ptr_nonnull(e);
	snprintf(e->id, sizeof(e->id), "0123456789ABCDEFGH");
	e->arrival_us = (int64_t)1700000000 * 1000000;
	e->sender = strdup("alice@example.com");
	e->nrcpts = 2;
	e->rcpts = calloc(2, sizeof(*e->rcpts));
	e->rcpts[0].addr = strdup("bad@example.net");
	e->rcpts[0].orcpt = strdup("rfc822;Bad@example.net");
	e->rcpts[0].state = Q_FAILED;
	e->rcpts[0].last_reason = strdup("550 5.1.1 <bad@example.net>: no such user");
	e->rcpts[0].last_attempt = 1700000100;
	e->rcpts[1].addr = strdup("good@example.net");
	e->rcpts[1].state = Q_DELIVERED;
	return e;
}

/* A content file: the message as queued (headers, blank line, body). */
static int content_fd(const char *text, size_t len)
{
	char path[] = "/tmp/check_dsn.XXXXXX";
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	unlink(path);
	ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
	lseek(fd, 0, SEEK_SET);
	return fd;
}

static char *build(const struct q_envelope *e, const bool *failed, const char *content, size_t len)
{
	struct dsn_info info = { .hostname = "relay.test", .message_id = "ID@relay.test",
	    .now = 1700000200 };
	struct buf b;
	int fd = content_fd(content, len);

	ck_assert_int_eq(dsn_build(&b, &info, e, failed, fd), 0);
	close(fd);
	return buf_steal(&b);
}

static const char *header_value(const char *headers, const char *name, char *out, size_t len)
{
	size_t n = strlen(name);

	for (const char *p = headers; p && *p; p = strstr(p, "\r\n") ? strstr(p, "\r\n") + 2 : NULL) {
		if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
			const char *v = p + n + 1, *end;

			while (*v == ' ')
				v++;
			end = strstr(v, "\r\n");
			/* unfold continuation lines */
			while (end && (end[2] == '\t' || end[2] == ' '))
				end = strstr(end + 2, "\r\n");
			snprintf(out, len, "%.*s", (int)(end ? end - v : (long)strlen(v)), v);
			return out;
		}
	}
	return NULL;
}

/* Split "HEADERS\r\n\r\nBODY". */
static void split(const char *msg, struct part *p)
{
	const char *sep = strstr(msg, "\r\n\r\n");

	ck_assert_ptr_nonnull(sep);
	p->headers = strndup(msg, (size_t)(sep - msg) + 2);
	p->body = strdup(sep + 4);
}

/* The parts of a multipart body: returns how many, fills parts. */
static int mime_parts(const char *body, const char *boundary, struct part *parts, int max)
{
	char delim[300], close_delim[300];
	const char *p;
	int n = 0;

	snprintf(delim, sizeof(delim), "--%s\r\n", boundary);
	snprintf(close_delim, sizeof(close_delim), "\r\n--%s--\r\n", boundary);
	ck_assert_ptr_nonnull(strstr(body, close_delim));
	p = strstr(body, delim);
	while (p && n < max) {
		const char *start = p + strlen(delim);
		const char *next = strstr(start, delim);
		const char *end = next ? next : strstr(start, close_delim);
		char *raw;

		ck_assert_ptr_nonnull(end);
		/* the CRLF before a delimiter belongs to the delimiter */
		raw = strndup(start, (size_t)(end - start) - (next ? 2 : 0));
		if (raw[0] == '\r' && raw[1] == '\n') {
			parts[n].headers = strdup("");
			parts[n].body = strdup(raw + 2);
		} else {
			split(raw, &parts[n]);
		}
		free(raw);
		n++;
		p = next;
	}
	return n;
}

static void parts_free(struct part *p, int n)
{
	for (int i = 0; i < n; i++) {
		free(p[i].headers);
		free(p[i].body);
	}
}

static void assert_crlf_only(const char *s)
{
	for (const char *p = s; *p; p++) {
		if (*p == '\n')
			ck_assert_msg(p > s && p[-1] == '\r', "bare LF at %ld", (long)(p - s));
		if (*p == '\r')
			ck_assert_msg(p[1] == '\n', "bare CR at %ld", (long)(p - s));
	}
}

static const char original[] =
	"Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	"From: Alice <alice@example.com>\r\n"
	"To: bad@example.net, good@example.net\r\n"
	"Subject: quarterly report\r\n"
	"Message-ID: <orig@example.com>\r\n"
	"\r\n"
	"SECRET-BODY-LINE\r\n"
	"more body\r\n";

START_TEST(test_structure)
{
	struct q_envelope *e = env_new();
	bool failed[2] = { true, false };
	char *dsn = build(e, failed, original, strlen(original));
	struct part top, parts[4];
	char v[512], boundary[256];
	const char *b;
	int n;

	assert_crlf_only(dsn);
	split(dsn, &top);
	ck_assert_str_eq(header_value(top.headers, "From", v, sizeof(v)),
	    "\"Mail Delivery System\" <MAILER-DAEMON@relay.test>");
	ck_assert_str_eq(header_value(top.headers, "To", v, sizeof(v)), "<alice@example.com>");
	ck_assert_str_eq(header_value(top.headers, "Subject", v, sizeof(v)),
	    "Undelivered Mail Returned to Sender");
	ck_assert_str_eq(header_value(top.headers, "Auto-Submitted", v, sizeof(v)), "auto-replied");
	ck_assert_str_eq(header_value(top.headers, "MIME-Version", v, sizeof(v)), "1.0");
	ck_assert_str_eq(header_value(top.headers, "Message-ID", v, sizeof(v)), "<ID@relay.test>");
	ck_assert_ptr_nonnull(header_value(top.headers, "Date", v, sizeof(v)));
	ck_assert_ptr_nonnull(header_value(top.headers, "Content-Type", v, sizeof(v)));
	ck_assert_ptr_nonnull(strstr(v, "multipart/report"));
	ck_assert_ptr_nonnull(strstr(v, "report-type=delivery-status"));
	b = strstr(v, "boundary=\"");
	ck_assert_ptr_nonnull(b);
	snprintf(boundary, sizeof(boundary), "%.*s", (int)strcspn(b + 10, "\""), b + 10);

	n = mime_parts(top.body, boundary, parts, 4);
	ck_assert_int_eq(n, 3);
	/* 1: for people */
	ck_assert_ptr_nonnull(strstr(parts[0].headers, "Content-Type: text/plain"));
	ck_assert_ptr_nonnull(strstr(parts[0].body, "<bad@example.net>: 550 5.1.1"));
	ck_assert_ptr_null(strstr(parts[0].body, "good@example.net"));
	/* 2: machine-readable */
	ck_assert_ptr_nonnull(strstr(parts[1].headers, "Content-Type: message/delivery-status"));
	ck_assert_ptr_nonnull(strstr(parts[1].body, "Reporting-MTA: dns; relay.test\r\n"));
	ck_assert_ptr_nonnull(strstr(parts[1].body, "Arrival-Date: "));
	ck_assert_ptr_nonnull(strstr(parts[1].body, "\r\n\r\nFinal-Recipient: rfc822; bad@example.net\r\n"));
	ck_assert_ptr_nonnull(strstr(parts[1].body, "Original-Recipient: rfc822;Bad@example.net\r\n"));
	ck_assert_ptr_nonnull(strstr(parts[1].body, "Action: failed\r\n"));
	ck_assert_ptr_nonnull(strstr(parts[1].body, "Status: 5.1.1\r\n"));
	ck_assert_ptr_nonnull(strstr(parts[1].body,
	    "Diagnostic-Code: smtp; 550 5.1.1 <bad@example.net>: no such user\r\n"));
	ck_assert_ptr_nonnull(strstr(parts[1].body, "Last-Attempt-Date: "));
	ck_assert_ptr_null(strstr(parts[1].body, "good@example.net"));
	/* 3: the original's headers, not its body */
	ck_assert_ptr_nonnull(strstr(parts[2].headers, "Content-Type: text/rfc822-headers"));
	ck_assert_ptr_nonnull(strstr(parts[2].body, "Subject: quarterly report\r\n"));
	ck_assert_ptr_nonnull(strstr(parts[2].body, "Message-ID: <orig@example.com>\r\n"));
	ck_assert_ptr_null(strstr(dsn, "SECRET-BODY-LINE"));
	ck_assert_ptr_null(strstr(dsn, "more body"));

	parts_free(parts, n);
	free(top.headers);
	free(top.body);
	free(dsn);
	q_envelope_free(e);
}
END_TEST

START_TEST(test_headers_cut)
{
	struct q_envelope *e = env_new();
	bool failed[2] = { true, false };
	struct buf c;
	char *dsn, *h3, *end;
	size_t hlen;

	buf_init(&c, 1024 * 1024);
	buf_puts(&c, "Subject: big\r\n");
	for (int i = 0; i < 3000; i++)
		buf_printf(&c, "X-Filler-%04d: %s\r\n", i,
		    "0123456789012345678901234567890123456789012345678901234567890123");
	buf_puts(&c, "\r\nSECRET-BODY-LINE\r\n");
	dsn = build(e, failed, c.data, c.len);
	assert_crlf_only(dsn);
	h3 = strstr(dsn, "Content-Type: text/rfc822-headers\r\n\r\n");
	ck_assert_ptr_nonnull(h3);
	h3 += strlen("Content-Type: text/rfc822-headers\r\n\r\n");
	end = strstr(h3, "\r\n--");
	ck_assert_ptr_nonnull(end);
	hlen = (size_t)(end - h3) + 2;
	ck_assert_uint_le(hlen, DSN_HEADERS_MAX);
	ck_assert_uint_gt(hlen, DSN_HEADERS_MAX - 200);
	/* cut at a line end: the last line is complete */
	ck_assert(end[-1] == '3' || end[-1] != ' ');
	ck_assert_ptr_nonnull(strstr(h3, "Subject: big\r\n"));
	ck_assert_ptr_null(strstr(dsn, "SECRET-BODY-LINE"));
	ck_assert_ptr_null(strstr(dsn, "X-Filler-2999"));
	buf_free(&c);
	free(dsn);
	q_envelope_free(e);
}
END_TEST

START_TEST(test_expired_status)
{
	struct q_envelope *e = env_new();
	bool failed[2] = { true, false };
	char *dsn;

	free(e->rcpts[0].last_reason);
	e->rcpts[0].last_reason = strdup("message expired after 450 seconds in the queue: "
	    "451 4.3.0 mailbox busy");
	dsn = build(e, failed, original, strlen(original));
	ck_assert_ptr_nonnull(strstr(dsn, "Status: 4.4.7\r\n"));
	ck_assert_ptr_nonnull(strstr(dsn, "Diagnostic-Code: smtp; 451 4.3.0 mailbox busy\r\n"));
	ck_assert_ptr_nonnull(strstr(dsn, "message expired after 450 seconds"));
	free(dsn);

	free(e->rcpts[0].last_reason);
	e->rcpts[0].last_reason = strdup("message expired after 3 seconds in the queue: "
	    "connect to 127.0.0.1:9: Connection refused");
	dsn = build(e, failed, original, strlen(original));
	ck_assert_ptr_nonnull(strstr(dsn, "Status: 4.4.7\r\n"));
	ck_assert_ptr_nonnull(strstr(dsn, "Diagnostic-Code: X-smtprelay; message expired"));
	free(dsn);
	q_envelope_free(e);
}
END_TEST

START_TEST(test_no_header_section)
{
	struct q_envelope *e = env_new();
	bool failed[2] = { true, true };
	static const char body_only[] = "\r\nSECRET-BODY-LINE\r\n";
	char *dsn;

	free(e->rcpts[1].last_reason);
	e->rcpts[1].last_reason = strdup("host said: 554 5.7.1\r\nrejected\x01");
	dsn = build(e, failed, body_only, strlen(body_only));
	assert_crlf_only(dsn);
	ck_assert_ptr_null(strstr(dsn, "SECRET-BODY-LINE"));
	ck_assert_ptr_nonnull(strstr(dsn, "Final-Recipient: rfc822; good@example.net\r\n"));
	/* a reason's control characters never break a header line */
	ck_assert_ptr_nonnull(strstr(dsn, "Diagnostic-Code: smtp; 554 5.7.1  rejected \r\n"));
	ck_assert_ptr_nonnull(strstr(dsn, "Status: 5.7.1\r\n"));
	free(dsn);
	q_envelope_free(e);
}
END_TEST

START_TEST(test_status_code)
{
	char c[16];

	ck_assert(dsn_status_code("550 5.1.1 no such user", c, sizeof(c)));
	ck_assert_str_eq(c, "5.1.1");
	ck_assert(dsn_status_code("host x said: 552 5.3.4 too big", c, sizeof(c)));
	ck_assert_str_eq(c, "5.3.4");
	ck_assert(dsn_status_code("554 5.7.1", c, sizeof(c)));
	ck_assert_str_eq(c, "5.7.1");
	ck_assert(!dsn_status_code("550 no such user", c, sizeof(c)));
	ck_assert(!dsn_status_code("version 1.2.3", c, sizeof(c)));
	ck_assert(!dsn_status_code("550 5.1.1234 x", c, sizeof(c)));
	ck_assert(!dsn_status_code(NULL, c, sizeof(c)));
}
END_TEST

START_TEST(test_wanted)
{
	struct q_envelope *e = env_new();
	bool failed[2] = { true, false };

	ck_assert(dsn_wanted(e, failed));
	e->rcpts[0].notify = SMTP_NOTIFY_NEVER;
	ck_assert(!dsn_wanted(e, failed));
	e->rcpts[0].notify = SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_DELAY;
	ck_assert(!dsn_wanted(e, failed));
	e->rcpts[0].notify = SMTP_NOTIFY_FAILURE;
	ck_assert(dsn_wanted(e, failed));
	/* one failed recipient still asking for failures is enough */
	e->rcpts[0].notify = SMTP_NOTIFY_NEVER;
	e->rcpts[1].state = Q_FAILED;
	failed[1] = true;
	ck_assert(dsn_wanted(e, failed));
	free(e->sender);
	e->sender = strdup("");
	ck_assert(!dsn_wanted(e, failed));
	q_envelope_free(e);
}
END_TEST

START_TEST(test_limit)
{
	struct dsn_limit *l = dsn_limit_new();

	ck_assert_ptr_nonnull(l);
	for (int i = 0; i < DSN_LIMIT_PER_HOUR; i++)
		ck_assert(dsn_limit_take(l, "a@example.com", 1000 + i));
	ck_assert(!dsn_limit_take(l, "a@example.com", 1100));
	ck_assert(!dsn_limit_take(l, "A@Example.com", 1200));
	ck_assert(dsn_limit_take(l, "b@example.com", 1200));
	ck_assert(!dsn_limit_take(l, "a@example.com", 1000 + DSN_LIMIT_WINDOW - 1));
	ck_assert(dsn_limit_take(l, "a@example.com", 1000 + DSN_LIMIT_WINDOW));
	dsn_limit_free(l);
}
END_TEST

static Suite *dsn_suite(void)
{
	Suite *s = suite_create("dsn");
	TCase *tc = tcase_create("dsn");

	tcase_add_test(tc, test_structure);
	tcase_add_test(tc, test_headers_cut);
	tcase_add_test(tc, test_expired_status);
	tcase_add_test(tc, test_no_header_section);
	tcase_add_test(tc, test_status_code);
	tcase_add_test(tc, test_wanted);
	tcase_add_test(tc, test_limit);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	log_init("check_dsn", LOG_TARGET_STDERR, false);
	return ckrun(dsn_suite());
}
