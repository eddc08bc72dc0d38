/* Sender-dependent smarthosts (conf/senders.c, smtprelay.conf(5) "senders") and the metrics
 * keys: pattern syntax and matching, which sections serve a sender, the
 * coverage rule of `smtprelayd -t`, and the counters' reason classes
 * (relay/stats.c). */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "daemon/metrics.h"
#include "relay/stats.h"
#include "lib/log.h"
#include "tests/ckrun.h"

static char conf_path[64];

static struct config *load(const char *text, char **errors)
{
	int fd;

	strcpy(conf_path, "/tmp/check_senders.XXXXXX");
	fd = mkstemp(conf_path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	*errors = NULL;
	struct config *c = conf_load(conf_path, errors);
	unlink(conf_path);
	return c;
}

static const struct {
	const char *pattern, *sender;
	bool match;
} matches[] = {
	{ "*@example.org", "billing@example.org", true },
	{ "*@example.org", "Billing@EXAMPLE.org", true },
	{ "*@example.org", "a@sub.example.org", false },
	{ "*@example.org", "a@notexample.org", false },
	{ "billing@example.com", "billing@example.com", true },
	{ "billing@example.com", "BILLING@example.com", true },
	{ "billing@example.com", "billing2@example.com", false },
	{ "billing@example.com", "xbilling@example.com", false },
	{ "*@*.example.net", "a@mx.example.net", true },
	{ "*@*.example.net", "a@b.c.example.net", true },
	{ "*@*.example.net", "a@example.net", false },
	{ "*@*.example.net", "a@badexample.net", false },
	{ "ops@*.example.net", "ops@eu.example.net", true },
	{ "ops@*.example.net", "dev@eu.example.net", false },
	{ "*@*", "anyone@anywhere.example", true },
	{ "*@*", "", true },
	{ "*@example.org", "", false },
	{ "root@*", "root@host.example", true },
	{ "root@*", "", false },
	{ "*@example.org", "local", false },
};

START_TEST(test_match)
{
	ck_assert_msg(conf_sender_match(matches[_i].pattern, matches[_i].sender) == matches[_i].match,
	    "%s vs <%s>", matches[_i].pattern, matches[_i].sender);
}
END_TEST

static const struct {
	const char *pattern;
	const char *needle;	/* NULL: valid */
} patterns[] = {
	{ "*@example.org", NULL }, { "a.b+c@example.org", NULL }, { "*@*", NULL },
	{ "*@*.example.org", NULL }, { "x@*", NULL },
	{ "example.org", "not a sender pattern" }, { "@example.org", "not a sender pattern" },
	{ "a@", "not a sender pattern" }, { "bill*@example.org", "whole local part" },
	{ "*@ex*ample.org", "domain must be" }, { "*@.example.org", "domain must be" },
	{ "*@example..org", "domain must be" }, { "*@*.", "domain must be" },
};

START_TEST(test_pattern_syntax)
{
	const char *why = conf_sender_pattern_error(patterns[_i].pattern);

	if (!patterns[_i].needle)
		ck_assert_msg(why == NULL, "%s: %s", patterns[_i].pattern, why);
	else
		ck_assert_msg(why && strstr(why, patterns[_i].needle), "%s: %s",
		    patterns[_i].pattern, why ? why : "(accepted)");
}
END_TEST

#define SH(name, senders) "smarthost " name " {\n host = h.example\n" senders "}\n"

/* Mail matching some sections goes only through those, in order; mail
 * matching none goes through the sections without senders. */
START_TEST(test_serves)
{
	char *errors;
	struct config *c = load(SH("billing", " senders = {\"billing@example.com\", \"*@*.bill.example\"}\n")
	    SH("main", "") SH("billing2", " senders = {\"billing@example.com\"}\n")
	    SH("fallback", ""), &errors);
	const struct conf_smarthost *sh;

	ck_assert_msg(c != NULL, "%s", errors ? errors : "");
	sh = c->smarthosts;
	ck_assert(conf_smarthost_serves(c, &sh[0], "billing@example.com"));
	ck_assert(!conf_smarthost_serves(c, &sh[1], "billing@example.com"));
	ck_assert(conf_smarthost_serves(c, &sh[2], "billing@example.com"));
	ck_assert(!conf_smarthost_serves(c, &sh[3], "billing@example.com"));
	ck_assert(conf_smarthost_serves(c, &sh[0], "x@eu.bill.example"));
	ck_assert(!conf_smarthost_serves(c, &sh[2], "x@eu.bill.example"));
	ck_assert(!conf_smarthost_serves(c, &sh[0], "alice@example.com"));
	ck_assert(conf_smarthost_serves(c, &sh[1], "alice@example.com"));
	ck_assert(!conf_smarthost_serves(c, &sh[2], "alice@example.com"));
	ck_assert(conf_smarthost_serves(c, &sh[3], "alice@example.com"));
	ck_assert(conf_smarthost_serves(c, &sh[1], ""));	/* DSNs */
	ck_assert_uint_eq(sh[0].nsenders, 2);
	ck_assert_uint_eq(sh[1].nsenders, 0);
	conf_free(c);
}
END_TEST

START_TEST(test_coverage)
{
	char *errors;
	struct config *c = load(SH("a", " senders = {\"*@example.org\"}\n")
	    SH("b", " senders = {\"*@*\"}\n"), &errors);

	ck_assert_msg(c != NULL, "%s", errors ? errors : "");
	ck_assert(conf_smarthost_serves(c, &c->smarthosts[1], ""));
	ck_assert(conf_smarthost_serves(c, &c->smarthosts[1], "x@example.org"));	/* both match */
	conf_free(c);
	c = load(SH("a", " senders = {\"*@example.org\"}\n") SH("b", " senders = {\"*@*.example.com\"}\n"),
	    &errors);
	ck_assert_ptr_null(c);
	ck_assert_msg(strstr(errors, ":5: smarthost \"b\": every smarthost has senders"), "%s", errors);
	ck_assert_msg(strstr(errors, "add a smarthost without senders, or \"*@*\""), "%s", errors);
	free(errors);
}
END_TEST

START_TEST(test_bad_senders)
{
	char *errors;
	struct config *c = load(SH("a", " senders = {\"*@example.org\",\n  \"bill*@x.example\"}\n")
	    SH("b", " senders = {}\n") SH("c", ""), &errors);

	ck_assert_ptr_null(c);
	ck_assert_msg(strstr(errors, ":4: senders: \"bill*@x.example\": '*' stands for a whole local part"),
	    "%s", errors);
	ck_assert_msg(strstr(errors, "senders: {} would serve no sender"), "%s", errors);
	free(errors);
}
END_TEST

START_TEST(test_metrics_keys)
{
	char *errors;
	struct config *c = load("metrics_listen = \"127.0.0.1:9465\"\n"
	    "metrics_textfile = \"/var/lib/prometheus/node-exporter/smtprelay.prom\"\n", &errors);

	ck_assert_msg(c != NULL, "%s", errors ? errors : "");
	ck_assert_str_eq(c->metrics_listen.spec, "127.0.0.1:9465");
	ck_assert_str_eq(c->metrics_textfile, "/var/lib/prometheus/node-exporter/smtprelay.prom");
	conf_free(c);
	c = load("metrics_listen = \"\"\nmetrics_textfile = \"\"\n", &errors);
	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_null(c->metrics_listen.spec);
	ck_assert_ptr_null(c->metrics_textfile);
	conf_free(c);
	c = load("metrics_listen = \"localhost:9465\"\nmetrics_textfile = \"x.prom\"\n", &errors);
	ck_assert_ptr_null(c);
	ck_assert_msg(strstr(errors, ":1: metrics_listen: \"localhost:9465\""), "%s", errors);
	ck_assert_msg(strstr(errors, ":2: metrics_textfile: \"x.prom\": must be an absolute path"),
	    "%s", errors);
	free(errors);
}
END_TEST

static const struct {
	const char *relay, *reason;
	enum stats_reason want;
} reasons[] = {
	{ "none", "connect to h.example[192.0.2.1]:587: Connection refused", STATS_R_CONNECTION },
	{ "none", "delivery temporarily suspended: connect to h:587: timed out", STATS_R_CONNECTION },
	{ "h[192.0.2.1]:587", "host h[192.0.2.1] said: 451 4.3.0 try later (in reply to RCPT TO command)",
	  STATS_R_REPLY },
	{ "none", "h[192.0.2.1]:587: 535 5.7.8 bad credentials (configuration error: check the username "
	  "and password)", STATS_R_AUTH },
	{ "h[192.0.2.1]:587", "lost connection with h[192.0.2.1]:587 during the transaction", STATS_R_LOST },
	{ "none", "delivery interrupted by shutdown", STATS_R_SHUTDOWN },
	{ "none", "no smarthost configured in /etc/smtprelay.conf", STATS_R_NO_SMARTHOST },
	{ "none", "no smarthost serves sender <a@b.example> in /etc/smtprelay.conf", STATS_R_NO_SMARTHOST },
	{ "none", "host h said: 454 Throttling failure: Maximum sending rate exceeded", STATS_R_THROTTLED },
	{ "none", "cannot read queue file X: Permission denied", STATS_R_OTHER },
};

START_TEST(test_reason_classes)
{
	ck_assert_str_eq(stats_reason_name(stats_reason_of(reasons[_i].relay, reasons[_i].reason)),
	    stats_reason_name(reasons[_i].want));
}
END_TEST

START_TEST(test_counters)
{
	const struct stats *st;

	stats_reset();
	stats_outcome("a", Q_DELIVERED, "h[1.2.3.4]:587", "250 ok", 0.3);
	stats_outcome("a", Q_DELIVERED, "h[1.2.3.4]:587", "250 ok", 7200);
	stats_outcome("a", Q_FAILED, "h[1.2.3.4]:587", "550 no", 1);
	stats_outcome(NULL, Q_DEFERRED, "none", "no smarthost configured in x", 0);
	stats_conn_failure("a", 2525, "refused");
	stats_conn_failure("a", 2525, "refused");
	stats_conn_failure("a", 587, "timeout");
	stats_tls("a", "TLSv1.3");
	stats_received(STATS_SRC_SMTP);
	st = stats_get();
	ck_assert_uint_eq(st->nsh, 2);
	ck_assert_uint_eq(stats_find("a")->delivered, 2);
	ck_assert_uint_eq(stats_find("a")->bounced, 1);
	ck_assert_uint_eq(stats_find("none")->deferred[STATS_R_NO_SMARTHOST], 1);
	ck_assert_uint_eq(stats_find("a")->nfail, 2);
	ck_assert_uint_eq(stats_find("a")->fail[0].n, 2);
	ck_assert_uint_eq(stats_find("a")->fail[0].port, 2525);
	ck_assert_uint_eq(st->duration_count, 2);
	ck_assert_uint_eq(st->buckets[2], 1);			/* 0.3 s: le 0.5 */
	ck_assert_uint_eq(st->buckets[12], 1);			/* 2 h: le 14400 */
	ck_assert_uint_eq(st->received[STATS_SRC_SMTP], 1);
	stats_reset();
	ck_assert_uint_eq(stats_get()->nsh, 0);
}
END_TEST

START_TEST(test_label_escapes)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	ck_assert_ptr_nonnull(f);
	metrics_label(f, "smarthost", "a\\b\"c\nd");
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_str_eq(text, "smarthost=\"a\\\\b\\\"c\\nd\"");
	free(text);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("senders");
	TCase *t = tcase_create("senders");

	log_init("check_senders", LOG_TARGET_STDERR, false);
	tcase_add_loop_test(t, test_match, 0, sizeof(matches) / sizeof(matches[0]));
	tcase_add_loop_test(t, test_pattern_syntax, 0, sizeof(patterns) / sizeof(patterns[0]));
	tcase_add_test(t, test_serves);
	tcase_add_test(t, test_coverage);
	tcase_add_test(t, test_bad_senders);
	tcase_add_test(t, test_metrics_keys);
	tcase_add_loop_test(t, test_reason_classes, 0, sizeof(reasons) / sizeof(reasons[0]));
	tcase_add_test(t, test_counters);
	tcase_add_test(t, test_label_escapes);
	suite_add_tcase(s, t);
	return ckrun(s);
}
