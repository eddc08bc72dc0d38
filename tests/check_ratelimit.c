#include "config.h"

#include <check.h>
#include <stdlib.h>

#include "conf/conf.h"
#include "daemon/ratelimit.h"

START_TEST(test_unlimited)
{
	struct ratelimit rl;

	ratelimit_init(&rl, 0, 100.0);
	for (int i = 0; i < 1000; i++)
		ck_assert(ratelimit_take(&rl, 100.0));
	ck_assert(ratelimit_wait(&rl, 100.0) == 0);
	ck_assert(ratelimit_rate(&rl) == 0);
}
END_TEST

START_TEST(test_burst_is_one_second)
{
	struct ratelimit rl;
	int n = 0;

	ratelimit_init(&rl, 5, 10.0);
	while (ratelimit_take(&rl, 10.0))
		n++;
	ck_assert_int_eq(n, 5);
	ck_assert_double_eq_tol(ratelimit_wait(&rl, 10.0), 0.2, 1e-9);
	/* Idle for a long time: still no more than one second's worth. */
	n = 0;
	while (ratelimit_take(&rl, 1000.0))
		n++;
	ck_assert_int_eq(n, 5);
}
END_TEST

START_TEST(test_slow_rate_burst_one)
{
	struct ratelimit rl;

	/* 30/min: a burst of at least one, then one every 2 s. */
	ratelimit_init(&rl, conf_parse_rate("30/min"), 0.0);
	ck_assert(ratelimit_take(&rl, 0.0));
	ck_assert(!ratelimit_take(&rl, 0.0));
	ck_assert_double_eq_tol(ratelimit_wait(&rl, 0.0), 2.0, 1e-9);
	ck_assert(!ratelimit_take(&rl, 1.9));
	ck_assert(ratelimit_take(&rl, 2.0));
	ck_assert(!ratelimit_take(&rl, 2.1));
}
END_TEST

START_TEST(test_refill_steady)
{
	struct ratelimit rl;
	double t = 0;
	int sent = 0;

	ratelimit_init(&rl, conf_parse_rate("14/s"), 0.0);
	/* Over 10 s at most 14*10 + 14 (the initial burst). */
	for (t = 0; t < 10.0; t += 0.001)
		if (ratelimit_take(&rl, t))
			sent++;
	ck_assert_int_le(sent, 14 * 10 + 14);
	ck_assert_int_ge(sent, 14 * 10);
}
END_TEST

START_TEST(test_rate_strings)
{
	ck_assert_double_eq_tol(conf_parse_rate("1000/h"), 1000.0 / 3600, 1e-9);
	ck_assert_double_eq_tol(conf_parse_rate("30/min"), 0.5, 1e-9);
	ck_assert(conf_parse_rate("0") == 0);
}
END_TEST

START_TEST(test_throttle_halves_configured)
{
	struct ratelimit rl;

	ratelimit_init(&rl, 10, 0.0);
	ck_assert_double_eq_tol(ratelimit_throttle(&rl, 0.0), 5, 1e-9);
	ck_assert_double_eq_tol(ratelimit_throttle(&rl, 0.0), 2.5, 1e-9);
	/* The bucket shrank with the rate. */
	int n = 0;
	while (ratelimit_take(&rl, 0.0))
		n++;
	ck_assert_int_le(n, 3);
}
END_TEST

START_TEST(test_throttle_floor)
{
	struct ratelimit rl;

	ratelimit_init(&rl, 1, 0.0);
	for (int i = 0; i < 20; i++)
		ratelimit_throttle(&rl, 0.0);
	ck_assert_double_eq_tol(ratelimit_rate(&rl), RATELIMIT_MIN_RATE, 1e-12);
}
END_TEST

START_TEST(test_throttle_unlimited_uses_observed)
{
	struct ratelimit rl;

	ratelimit_init(&rl, 0, 0.0);
	/* 16 sends over 2 s: about 8/s observed. */
	for (int i = 0; i < 16; i++)
		ck_assert(ratelimit_take(&rl, i * 0.125));
	double obs = ratelimit_observed(&rl, 2.0);
	ck_assert(obs > 7.5 && obs < 8.5);
	ck_assert_double_eq_tol(ratelimit_throttle(&rl, 2.0), obs / 2, 1e-9);
	/* Now limited: the bucket holds one second's worth (>= 1). */
	int n = 0;
	while (ratelimit_take(&rl, 2.0))
		n++;
	ck_assert_int_le(n, 4);
}
END_TEST

START_TEST(test_throttle_unlimited_no_history)
{
	struct ratelimit rl;

	ratelimit_init(&rl, 0, 0.0);
	/* Nothing observed: from 1/s, so 0.5/s. */
	ck_assert_double_eq_tol(ratelimit_throttle(&rl, 0.0), 0.5, 1e-9);
}
END_TEST

START_TEST(test_recovery_to_configured)
{
	struct ratelimit rl;
	int steps = 0;

	ratelimit_init(&rl, 10, 0.0);
	ratelimit_throttle(&rl, 0.0);
	/* Nine successes change nothing; the tenth adds 10%. */
	for (int i = 0; i < 9; i++)
		ratelimit_success(&rl);
	ck_assert_double_eq_tol(ratelimit_rate(&rl), 5, 1e-9);
	ratelimit_success(&rl);
	ck_assert_double_eq_tol(ratelimit_rate(&rl), 5.5, 1e-9);
	while (ratelimit_rate(&rl) < 10 && steps < 1000) {
		ratelimit_success(&rl);
		steps++;
	}
	ck_assert_double_eq(ratelimit_rate(&rl), 10);
	/* Never above the configured rate. */
	for (int i = 0; i < 100; i++)
		ratelimit_success(&rl);
	ck_assert_double_eq(ratelimit_rate(&rl), 10);
}
END_TEST

START_TEST(test_recovery_to_unlimited)
{
	struct ratelimit rl;
	int i;

	ratelimit_init(&rl, 0, 0.0);
	ratelimit_throttle(&rl, 0.0);		/* 0.5/s, ceiling 1/s */
	for (i = 0; i < 1000 && ratelimit_rate(&rl) != 0; i++)
		ratelimit_success(&rl);
	ck_assert_double_eq(ratelimit_rate(&rl), 0);
	ck_assert_int_gt(i, 10);
	ck_assert(ratelimit_take(&rl, 0.0) && ratelimit_take(&rl, 0.0) && ratelimit_take(&rl, 0.0));
}
END_TEST

START_TEST(test_configure_resets)
{
	struct ratelimit rl;

	ratelimit_init(&rl, 10, 0.0);
	ratelimit_throttle(&rl, 0.0);
	ratelimit_configure(&rl, 20, 0.0);
	ck_assert_double_eq(ratelimit_rate(&rl), 20);
	ratelimit_configure(&rl, 0, 0.0);
	ck_assert_double_eq(ratelimit_rate(&rl), 0);
}
END_TEST

static Suite *ratelimit_suite(void)
{
	Suite *s = suite_create("ratelimit");
	TCase *tc = tcase_create("bucket");

	tcase_add_test(tc, test_unlimited);
	tcase_add_test(tc, test_burst_is_one_second);
	tcase_add_test(tc, test_slow_rate_burst_one);
	tcase_add_test(tc, test_refill_steady);
	tcase_add_test(tc, test_rate_strings);
	suite_add_tcase(s, tc);
	tc = tcase_create("throttle");
	tcase_add_test(tc, test_throttle_halves_configured);
	tcase_add_test(tc, test_throttle_floor);
	tcase_add_test(tc, test_throttle_unlimited_uses_observed);
	tcase_add_test(tc, test_throttle_unlimited_no_history);
	tcase_add_test(tc, test_recovery_to_configured);
	tcase_add_test(tc, test_recovery_to_unlimited);
	tcase_add_test(tc, test_configure_resets);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(ratelimit_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
