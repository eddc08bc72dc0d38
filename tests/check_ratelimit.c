#include "config.h"

#include <check.h>
#include <stdlib.h>

#include "conf/conf.h"
#include "relay/ratelimit.h"
#include "tests/ckrun.h"

/* rate_limit as the config gives it: N and W. */
static void rl_init(struct ratelimit *rl, const char *spec, double now)
{
	unsigned n;
	double w;

	ck_assert_int_eq(conf_parse_rate_window(spec, &n, &w), 0);
	ratelimit_init(rl, n, w, now);
}

/* The sliding-window contract, checked from outside: the most starts seen in
 * any interval [t, t + w) of the recorded times (sorted ascending). */
static int max_in_window(const double *t, int n, double w)
{
	int best = 0;

	for (int i = 0, j = 0; i < n; i++) {
		while (t[i] - t[j] >= w)
			j++;
		if (i - j + 1 > best)
			best = i - j + 1;
	}
	return best;
}

START_TEST(test_unlimited)
{
	struct ratelimit rl;

	rl_init(&rl, "0", 100.0);
	for (int i = 0; i < 1000; i++)
		ck_assert(ratelimit_take(&rl, 100.0));
	ck_assert(ratelimit_wait(&rl, 100.0) == 0);
	ck_assert(ratelimit_rate(&rl) == 0);
}
END_TEST

/* Issue 9 item 7: "2/s" let four messages start within one second (a token
 * bucket full at the start and refilled while sending). */
START_TEST(test_issue_burst_2_per_s)
{
	struct ratelimit rl;
	double t[64];
	int n = 0;

	rl_init(&rl, "2/s", 10.0);
	ck_assert(ratelimit_take(&rl, 10.0));
	ck_assert(ratelimit_take(&rl, 10.0));
	ck_assert(!ratelimit_take(&rl, 10.5));
	ck_assert(!ratelimit_take(&rl, 10.999));
	ck_assert_double_eq_tol(ratelimit_wait(&rl, 10.5), 0.5, 1e-9);
	ck_assert(ratelimit_take(&rl, 11.0));
	ck_assert(ratelimit_take(&rl, 11.0));
	/* The bucket's failure: idle, then a full burst plus the refill. */
	rl_init(&rl, "2/s", 0.0);
	for (double now = 100.0; now < 102.0; now += 0.01)
		if (ratelimit_take(&rl, now))
			t[n++] = now;
	ck_assert_int_eq(max_in_window(t, n, 1.0), 2);
	ck_assert_int_eq(n, 4);
}
END_TEST

/* Many callers (connections) polling at random times never beat the window. */
START_TEST(test_window_any_interval)
{
	static const char *const specs[] = { "14/s", "5/s", "30/min", "3/min", "1000/h" };
	const char *spec = specs[_i];
	struct ratelimit rl;
	static double t[20000];
	unsigned seed = 42 + _i, n;
	double w, now = 0;
	int sent = 0;

	ck_assert_int_eq(conf_parse_rate_window(spec, &n, &w), 0);
	ratelimit_init(&rl, n, w, 0.0);
	for (int i = 0; i < 200000 && sent < 20000; i++) {
		now += (rand_r(&seed) % 1000) * w / (10000.0 * n);
		if (ratelimit_take(&rl, now))
			t[sent++] = now;
	}
	ck_assert_int_eq(max_in_window(t, sent, w), (int)n);
	/* ...and is not needlessly slow: about N per W overall. */
	ck_assert_double_ge(sent, 0.95 * n * (now / w));
}
END_TEST

START_TEST(test_wait_is_exact)
{
	struct ratelimit rl;

	/* 30/min: 30 at once, then the next when the first is a minute old. */
	rl_init(&rl, "30/min", 0.0);
	for (int i = 0; i < 30; i++)
		ck_assert(ratelimit_take(&rl, i * 0.5));
	ck_assert(!ratelimit_take(&rl, 59.9));
	ck_assert_double_eq_tol(ratelimit_wait(&rl, 20.0), 40.0, 1e-9);
	ck_assert(ratelimit_take(&rl, 60.0));
	ck_assert(!ratelimit_take(&rl, 60.2));
	ck_assert_double_eq_tol(ratelimit_wait(&rl, 60.2), 0.3, 1e-9);
}
END_TEST

/* N beyond the ring: enforced as N/k per W/k, never more than N per W. */
START_TEST(test_huge_n_bounded)
{
	struct ratelimit rl;
	static double t[100000];
	int sent = 0;
	double now;

	ratelimit_init(&rl, 5000, 10.0, 0.0);
	ck_assert_uint_le(rl.n, RATELIMIT_RING_MAX);
	for (now = 0; now < 40.0 && sent < 100000; now += 0.0005)
		if (ratelimit_take(&rl, now))
			t[sent++] = now;
	ck_assert_int_le(max_in_window(t, sent, 10.0), 5000);
	ck_assert_int_ge(max_in_window(t, sent, 10.0), 5000 - 5);
	ck_assert_double_eq_tol(ratelimit_rate(&rl), 500.0, 1e-9);
}
END_TEST

START_TEST(test_rate_strings)
{
	unsigned n;
	double w;

	ck_assert_double_eq_tol(conf_parse_rate("1000/h"), 1000.0 / 3600, 1e-9);
	ck_assert_double_eq_tol(conf_parse_rate("30/min"), 0.5, 1e-9);
	ck_assert(conf_parse_rate("0") == 0);
	ck_assert_int_eq(conf_parse_rate_window("30/min", &n, &w), 0);
	ck_assert_uint_eq(n, 30);
	ck_assert_double_eq(w, 60);
	ck_assert_int_eq(conf_parse_rate_window("0/s", &n, &w), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_lt(conf_parse_rate_window("5/fortnight", &n, &w), 0);
}
END_TEST

START_TEST(test_throttle_halves_configured)
{
	struct ratelimit rl;

	rl_init(&rl, "10/s", 0.0);
	ck_assert_double_eq_tol(ratelimit_throttle(&rl, 0.0), 5, 1e-9);
	ck_assert_double_eq_tol(ratelimit_throttle(&rl, 0.0), 2.5, 1e-9);
	/* Throttled: spaced 1/rate apart, no burst. */
	ck_assert(ratelimit_take(&rl, 0.0));
	ck_assert(!ratelimit_take(&rl, 0.0));
	ck_assert_double_eq_tol(ratelimit_wait(&rl, 0.0), 0.4, 1e-9);
	ck_assert(ratelimit_take(&rl, 0.4));
}
END_TEST

START_TEST(test_throttle_floor)
{
	struct ratelimit rl;

	rl_init(&rl, "1/s", 0.0);
	for (int i = 0; i < 20; i++)
		ratelimit_throttle(&rl, 0.0);
	ck_assert_double_eq_tol(ratelimit_rate(&rl), RATELIMIT_MIN_RATE, 1e-12);
}
END_TEST

START_TEST(test_throttle_unlimited_uses_observed)
{
	struct ratelimit rl;

	rl_init(&rl, "0", 0.0);
	/* 16 sends over 2 s: about 8/s observed. */
	for (int i = 0; i < 16; i++)
		ck_assert(ratelimit_take(&rl, i * 0.125));
	double obs = ratelimit_observed(&rl, 2.0);
	ck_assert(obs > 7.5 && obs < 8.5);
	ck_assert_double_eq_tol(ratelimit_throttle(&rl, 2.0), obs / 2, 1e-9);
	/* Now limited: spaced 1/rate after the last start, one at a time. */
	double next = 15 * 0.125 + 1 / ratelimit_rate(&rl);
	ck_assert_double_eq_tol(ratelimit_wait(&rl, 2.0), next - 2.0, 1e-9);
	ck_assert(ratelimit_take(&rl, next));
	ck_assert(!ratelimit_take(&rl, next));
}
END_TEST

START_TEST(test_throttle_unlimited_no_history)
{
	struct ratelimit rl;

	rl_init(&rl, "0", 0.0);
	/* Nothing observed: from 1/s, so 0.5/s. */
	ck_assert_double_eq_tol(ratelimit_throttle(&rl, 0.0), 0.5, 1e-9);
}
END_TEST

START_TEST(test_recovery_to_configured)
{
	struct ratelimit rl;
	int steps = 0;

	rl_init(&rl, "10/s", 0.0);
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

	rl_init(&rl, "0", 0.0);
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

	rl_init(&rl, "10/s", 0.0);
	ratelimit_throttle(&rl, 0.0);
	ratelimit_configure(&rl, 20, 1.0, 0.0);
	ck_assert_double_eq(ratelimit_rate(&rl), 20);
	ratelimit_configure(&rl, 0, 0, 0.0);
	ck_assert_double_eq(ratelimit_rate(&rl), 0);
}
END_TEST

static Suite *ratelimit_suite(void)
{
	Suite *s = suite_create("ratelimit");
	TCase *tc = tcase_create("window");

	tcase_add_test(tc, test_unlimited);
	tcase_add_test(tc, test_issue_burst_2_per_s);
	tcase_add_loop_test(tc, test_window_any_interval, 0, 5);
	tcase_add_test(tc, test_wait_is_exact);
	tcase_add_test(tc, test_huge_n_bounded);
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
	return ckrun(ratelimit_suite());
}
