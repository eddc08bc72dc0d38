/* The Postfix log formats (relay/maillog): golden lines in
 * tests/golden/maillog-delivery.txt, one per case below, in order; and the
 * role tags and severities of lib/log. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "relay/conn.h"
#include "relay/maillog.h"
#include "lib/log.h"
#include "tests/ckutil.h"
#include "tests/ckrun.h"

#define ID "4jjPHq4tzzz08LxTgj"
#define SES "smtp.example.com[192.0.2.1]:587"

static const struct maillog_delivery deliveries[] = {
	{ ID, "ops@example.com", NULL, SES, 0.42, { 0.01, 0.004, 0.3, 0.11 }, "2.0.0", "sent",
	  "250 2.0.0 Ok", false },
	{ ID, "ops@example.com", "rfc822;root", SES, 1.34, { 0.05, 0.01, 1.0, 0.24 }, "2.0.0",
	  "sent", "250 Ok: queued as 0100018c", false },
	{ ID, "bob@example.net", "bob@example.net", SES, 12.4, { 0, 11, 0.6, 0.02 }, "5.1.1",
	  "bounced", "host smtp.example.com said: 550 5.1.1 <bob@example.net>: Recipient "
	  "address rejected (in reply to RCPT TO command)", false },
	{ ID, "bob@example.net", NULL, "none", 3600, { 3570, 0, 30, 0 }, "4.4.1", "deferred",
	  "connect to smtp.example.com:25: timed out (outbound port 25 is often blocked by "
	  "cloud providers)", false },
	{ ID, "bob@example.net", NULL, SES, 0.2, { -0.001, 0, 0.1, 0.1 }, "4.7.0", "deferred",
	  "host smtp.example.com said: 454 4.7.0 Throttling failure: Maximum sending rate "
	  "exceeded (in reply to MAIL FROM command)", false },
	{ ID, "bob@example.net", NULL, "none", 432000, { 0, 432000, 0, 0 }, "4.4.7", "bounced",
	  "message expired after 5 days in the queue: connect to smtp.example.com:587: "
	  "Connection refused", true },
};

static const struct {
	const char *peer;
	struct conn_tls_info t;
} tlss[] = {
	{ SES, { .active = true, .version = "TLSv1.3", .cipher = "TLS_AES_256_GCM_SHA384",
	  .bits = 256, .alg_bits = 256, .subject = "CN=smtp.example.com", .verified = true } },
	{ "10.0.0.5[10.0.0.5]:25", { .active = true, .version = "TLSv1.2",
	  .cipher = "ECDHE-RSA-AES128-GCM-SHA256", .bits = 128, .alg_bits = 128,
	  .subject = "CN=mail" } },
	{ "relay.internal[10.0.0.6]:587", { .active = true, .version = "TLSv1.3",
	  .cipher = "TLS_CHACHA20_POLY1305_SHA256", .bits = 256, .alg_bits = 256 } },
};

#define NDELIVERIES (int)(sizeof(deliveries) / sizeof(deliveries[0]))
#define NTLS (int)(sizeof(tlss) / sizeof(tlss[0]))

/* Line n (0-based) of the golden file, without its newline. */
static void golden_line(int n, char *out, size_t size)
{
	const char *top = getenv("top_srcdir");
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/tests/golden/maillog-delivery.txt", top ? top : ".");
	f = fopen(path, "r");
	ck_assert_msg(f != NULL, "%s: cannot open (run from make check)", path);
	for (int i = 0; i <= n; i++)
		ck_assert_msg(fgets(out, (int)size, f) != NULL, "%s: no line %d", path, n + 1);
	fclose(f);
	out[strcspn(out, "\n")] = '\0';
}

START_TEST(test_delivery_golden)
{
	char want[2048], got[2048];

	golden_line(_i, want, sizeof(want));
	maillog_format_delivery(got, sizeof(got), &deliveries[_i]);
	ck_assert_str_eq(got, want);
}
END_TEST

START_TEST(test_tls_golden)
{
	char want[1024], got[1024];

	golden_line(NDELIVERIES + _i, want, sizeof(want));
	maillog_format_tls(got, sizeof(got), tlss[_i].peer, &tlss[_i].t);
	ck_assert_str_eq(got, want);
}
END_TEST

static const struct {
	double s;
	const char *want;
} delays[] = {
	{ 0, "0" }, { 0.004, "0" }, { 0.01, "0.01" }, { 0.3, "0.3" }, { 0.42, "0.42" },
	{ 0.999, "1" }, { 1.34, "1.3" }, { 2.0, "2" }, { 9.96, "10" }, { 12.4, "12" },
	{ 1200, "1200" }, { -5, "0" },
};

START_TEST(test_delay_notation)
{
	char got[32];

	maillog_format_delay(got, sizeof(got), delays[_i].s);
	ck_assert_str_eq(got, delays[_i].want);
}
END_TEST

static const struct {
	const char *reason;
	char cls;
	const char *want;
} dsns[] = {
	{ "250 2.0.0 Ok: queued as 1234", '2', "2.0.0" },
	{ "host h said: 550 5.1.1 <a@b>: unknown user (in reply to RCPT TO command)", '5', "5.1.1" },
	{ "host h said: 550 unknown user", '5', "5.0.0" },
	{ "host h said: 451 4.3.0 try again; see 5.1.1 docs", '4', "4.3.0" },
	{ "lost connection with h[1.2.3.4]:587 during the transaction", '4', "4.0.0" },
	{ "version 12.4.5.6 is not a code", '4', "4.0.0" },
	{ NULL, '2', "2.0.0" },
};

START_TEST(test_dsn_from_reply)
{
	char got[16];

	maillog_dsn(dsns[_i].reason, dsns[_i].cls, got);
	ck_assert_str_eq(got, dsns[_i].want);
}
END_TEST

static const struct {
	const char *headers;
	const char *want;	/* NULL: none */
} mids[] = {
	{ "From: a@b\r\nMessage-ID: <20261207.4jjP@vm.example.com>\r\n\r\nbody", "20261207.4jjP@vm.example.com" },
	{ "message-id:\r\n <folded@example.com>\r\nSubject: x\r\n\r\n", "folded@example.com" },
	{ "Subject: x\r\n\r\nMessage-ID: <in-body@example.com>\r\n", NULL },
	{ "X-Message-ID: <not@this>\r\nSubject: x\r\n\r\n", NULL },
	{ "Message-ID: no brackets\r\n\r\n", NULL },
};

START_TEST(test_message_id)
{
	char got[256];
	bool found = maillog_message_id(mids[_i].headers, strlen(mids[_i].headers), got,
	    sizeof(got));

	ck_assert_int_eq(found, mids[_i].want != NULL);
	if (found)
		ck_assert_str_eq(got, mids[_i].want);
}
END_TEST

/* Stderr carries the same tags as syslog, and with sd-daemon prefixes the
 * journal gets the real severity. */
START_TEST(test_role_tags_on_stderr)
{
	char path[] = "/tmp/check_maillog.XXXXXX", want[256];
	int fd = mkstemp(path);
	char *text;

	ck_assert_int_ge(fd, 0);
	close(fd);
	log_init("smtprelay", LOG_TARGET_STDERR, false);
	log_roles(LOG_ROLE_MASTER);
	log_stderr_priority_prefix(true);
	ckutil_capture_start(path);
	log_as(LOG_ROLE_SMTP, LOG_INFO, "%s: to=<a@b>", ID);
	log_warn("no role given");
	log_as(LOG_ROLE_QMGR, LOG_ERR, "%s: cannot lock", ID);
	log_as(LOG_ROLE_BOUNCE, LOG_DEBUG, "hidden without -d");
	text = ckutil_capture_stop(path);
	unlink(path);
	snprintf(want, sizeof(want), "<6>smtprelay/smtp[%ld]: " ID ": to=<a@b>\n"
	    "<4>smtprelay/master[%ld]: warning: no role given\n"
	    "<3>smtprelay/qmgr[%ld]: error: " ID ": cannot lock\n",
	    (long)getpid(), (long)getpid(), (long)getpid());
	ck_assert_str_eq(text, want);
	free(text);
	ck_assert_str_eq(log_tag(LOG_ROLE_CLEANUP), "smtprelay/cleanup");
	ck_assert_str_eq(log_tag(LOG_ROLE_PICKUP), "smtprelay/pickup");
	ck_assert_str_eq(log_tag(LOG_ROLE_SMTPD), "smtprelay/smtpd");
}
END_TEST

static Suite *maillog_suite(void)
{
	Suite *s = suite_create("maillog");
	TCase *tc = tcase_create("formats");

	tcase_add_loop_test(tc, test_delivery_golden, 0, NDELIVERIES);
	tcase_add_loop_test(tc, test_tls_golden, 0, NTLS);
	tcase_add_loop_test(tc, test_delay_notation, 0, (int)(sizeof(delays) / sizeof(delays[0])));
	tcase_add_loop_test(tc, test_dsn_from_reply, 0, (int)(sizeof(dsns) / sizeof(dsns[0])));
	tcase_add_loop_test(tc, test_message_id, 0, (int)(sizeof(mids) / sizeof(mids[0])));
	tcase_add_test(tc, test_role_tags_on_stderr);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ckrun(maillog_suite());
}
