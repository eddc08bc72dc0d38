/* Unit tests: sendmail flag parsing (Postfix-compatible meanings). */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/enqueue.h"
#include "frontend/sendmail.h"
#include "tests/ckrun.h"

static int parse(struct sendmail_opts *o, const char *args)
{
	static char copy[1024];
	static char *argv[64];
	char *save = NULL;
	int argc = 0;

	snprintf(copy, sizeof(copy), "%s", args);
	for (char *t = strtok_r(copy, " ", &save); t && argc < 63; t = strtok_r(NULL, " ", &save))
		argv[argc++] = t;
	argv[argc] = NULL;
	/* copy is static: o->rcpts points into it after we return */
	return sendmail_parse(argc, argv, o);
}

START_TEST(test_cron_flags)
{
	struct sendmail_opts o;

	ck_assert_int_eq(parse(&o, "sendmail -i -FCronDaemon -B8BITMIME -oem alice"), 0);
	ck_assert(o.ignore_dots);
	ck_assert_str_eq(o.full_name, "CronDaemon");
	ck_assert(o.eightbit);
	ck_assert_int_eq(o.mode, SM_DELIVER);
	ck_assert_int_eq(o.nrcpts, 1);
	ck_assert_str_eq(o.rcpts[0], "alice");
}
END_TEST

START_TEST(test_php_and_upgrades)
{
	struct sendmail_opts o;

	ck_assert_int_eq(parse(&o, "sendmail -t -i"), 0);
	ck_assert(o.extract && o.ignore_dots);
	ck_assert_int_eq(o.nrcpts, 0);
	ck_assert_int_eq(parse(&o, "sendmail -oi -t"), 0);
	ck_assert(o.extract && o.ignore_dots);
}
END_TEST

START_TEST(test_modes_and_argv0)
{
	struct sendmail_opts o;

	ck_assert_int_eq(parse(&o, "/usr/bin/mailq"), 0);
	ck_assert_int_eq(o.mode, SM_PRINT);
	ck_assert_int_eq(parse(&o, "newaliases"), 0);
	ck_assert_int_eq(o.mode, SM_ALIASES);
	ck_assert_int_eq(parse(&o, "sendmail -bs"), 0);
	ck_assert_int_eq(o.mode, SM_SMTP);
	ck_assert_int_eq(parse(&o, "sendmail -bv root"), 0);
	ck_assert_int_eq(o.mode, SM_VERIFY);
	ck_assert_int_eq(parse(&o, "sendmail -q"), 0);
	ck_assert_int_eq(o.mode, SM_FLUSH);
	ck_assert_int_eq(parse(&o, "sendmail -q1h"), 0);
	ck_assert_int_eq(o.mode, SM_FLUSH);
	ck_assert_int_eq(parse(&o, "sendmail -I"), 0);
	ck_assert_int_eq(o.mode, SM_ALIASES);
}
END_TEST

START_TEST(test_values)
{
	struct sendmail_opts o;

	ck_assert_int_eq(parse(&o, "sendmail -f a@b -N success,delay -R hdrs -V env1 -C /x.conf -- -r"), 0);
	ck_assert_str_eq(o.sender, "a@b");
	ck_assert_uint_eq(o.notify, SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_DELAY);
	ck_assert_int_eq(o.ret, SMTP_RET_HDRS);
	ck_assert_str_eq(o.envid, "env1");
	ck_assert_str_eq(o.config, "/x.conf");
	ck_assert_int_eq(o.nrcpts, 1);
	ck_assert_str_eq(o.rcpts[0], "-r");
	ck_assert_int_eq(parse(&o, "sendmail -r b@c -O DeliveryMode=b -odb -G -U -L app -X /log x"), 0);
	ck_assert_str_eq(o.sender, "b@c");
	ck_assert_str_eq(o.label, "app");
	ck_assert_int_eq(parse(&o, "sendmail -c /y.conf x"), 0);
	ck_assert_str_eq(o.config, "/y.conf");
}
END_TEST

START_TEST(test_errors)
{
	struct sendmail_opts o;
	FILE *saved = stderr;

	stderr = fopen("/dev/null", "w");
	ck_assert_int_eq(parse(&o, "sendmail -Z root"), -1);
	ck_assert_int_eq(parse(&o, "sendmail -N maybe root"), -1);
	ck_assert_int_eq(parse(&o, "sendmail -N never,success root"), -1);
	ck_assert_int_eq(parse(&o, "sendmail -R everything root"), -1);
	ck_assert_int_eq(parse(&o, "sendmail -B binary root"), -1);
	ck_assert_int_eq(parse(&o, "sendmail -bd"), -1);
	ck_assert_int_eq(parse(&o, "sendmail -bx"), -1);
	ck_assert_int_eq(parse(&o, "sendmail -f"), -1);
	fclose(stderr);
	stderr = saved;
}
END_TEST

START_TEST(test_sender)
{
	char *s;

	s = enqueue_sender("<a@example.com>");
	ck_assert_str_eq(s, "a@example.com");
	free(s);
	s = enqueue_sender("<>");
	ck_assert_str_eq(s, "");
	free(s);
	s = enqueue_sender("root");
	ck_assert_str_eq(s, "root");
	free(s);
	ck_assert_ptr_null(enqueue_sender("a b@c"));
	ck_assert_ptr_null(enqueue_sender("x@@y"));
	s = enqueue_sender(NULL);
	ck_assert_ptr_nonnull(s);
	ck_assert(strlen(s) > 0);
	free(s);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("sendmail");
	TCase *tc = tcase_create("parse");

	tcase_add_test(tc, test_cron_flags);
	tcase_add_test(tc, test_php_and_upgrades);
	tcase_add_test(tc, test_modes_and_argv0);
	tcase_add_test(tc, test_values);
	tcase_add_test(tc, test_errors);
	tcase_add_test(tc, test_sender);
	suite_add_tcase(s, tc);
	return ckrun(s);
}
