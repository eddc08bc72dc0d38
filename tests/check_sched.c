#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/sched.h"
#include "lib/log.h"
#include "tests/ckrun.h"

static struct q_envelope *env_new(size_t n, int64_t arrival_us)
{
	struct q_envelope *e = calloc(1, sizeof(*e));

	ck_assert_ptr_nonnull(e);
	e->rcpts = calloc(n, sizeof(*e->rcpts));
	ck_assert_ptr_nonnull(e->rcpts);
	e->nrcpts = n;
	e->arrival_us = arrival_us;
	e->sender = strdup("a@example.com");
	snprintf(e->id, sizeof(e->id), "TESTID");
	for (size_t i = 0; i < n; i++) {
		char a[32];

		snprintf(a, sizeof(a), "r%zu@example.com", i);
		e->rcpts[i].addr = strdup(a);
	}
	return e;
}

static void set_reason(struct q_rcpt *r, const char *why)
{
	free(r->last_reason);
	r->last_reason = strdup(why);
}

START_TEST(test_backoff)
{
	ck_assert_int_eq(sched_backoff(300, 3600, 1), 300);
	ck_assert_int_eq(sched_backoff(300, 3600, 2), 600);
	ck_assert_int_eq(sched_backoff(300, 3600, 3), 1200);
	ck_assert_int_eq(sched_backoff(300, 3600, 4), 2400);
	ck_assert_int_eq(sched_backoff(300, 3600, 5), 3600);
	ck_assert_int_eq(sched_backoff(300, 3600, 500), 3600);
	ck_assert_int_eq(sched_backoff(300, 3600, 0xffffffffu), 3600);
	/* attempts 0 (never tried) behaves as the first */
	ck_assert_int_eq(sched_backoff(300, 3600, 0), 300);
	/* a cap below the minimum wins; zero values never give a 0 s busy loop */
	ck_assert_int_eq(sched_backoff(600, 60, 1), 60);
	ck_assert_int_eq(sched_backoff(0, 0, 3), 1);
	ck_assert_int_eq(sched_backoff(1, 2, 1), 1);
	ck_assert_int_eq(sched_backoff(1, 2, 2), 2);
	ck_assert_int_eq(sched_backoff(1, 2, 9), 2);
	ck_assert_int_eq(sched_backoff(4000000000u, 4000000000u, 40), 4000000000LL);
}
END_TEST

START_TEST(test_expired)
{
	int64_t arr = (int64_t)1000000 * 1000000;	/* t = 1000000 s */

	ck_assert(!sched_expired(arr, 1000000, 3));
	ck_assert(!sched_expired(arr, 1000002, 3));
	ck_assert(sched_expired(arr, 1000003, 3));
	ck_assert(sched_expired(arr, 2000000, 432000));
	ck_assert(!sched_expired(arr, 1000000 + 431999, 432000));
	/* a clock that went backwards is not an expiry */
	ck_assert(!sched_expired(arr, 999000, 3));
}
END_TEST

START_TEST(test_duration_text)
{
	char b[64];

	sched_duration_text(432000, b, sizeof(b));
	ck_assert_str_eq(b, "5 days");
	sched_duration_text(86400, b, sizeof(b));
	ck_assert_str_eq(b, "1 day");
	sched_duration_text(7200, b, sizeof(b));
	ck_assert_str_eq(b, "2 hours");
	sched_duration_text(90000, b, sizeof(b));
	ck_assert_str_eq(b, "25 hours");
	sched_duration_text(600, b, sizeof(b));
	ck_assert_str_eq(b, "10 minutes");
	sched_duration_text(3, b, sizeof(b));
	ck_assert_str_eq(b, "3 seconds");
	sched_duration_text(61, b, sizeof(b));
	ck_assert_str_eq(b, "61 seconds");
}
END_TEST

START_TEST(test_env_due)
{
	struct q_envelope *e = env_new(3, 0);

	ck_assert_int_eq(sched_env_due(e), 0);		/* pending: now */
	e->rcpts[0].state = Q_DELIVERED;
	e->rcpts[1].state = Q_DEFERRED;
	e->rcpts[1].next_attempt = 500;
	e->rcpts[2].state = Q_DEFERRED;
	e->rcpts[2].next_attempt = 400;
	ck_assert_int_eq(sched_env_due(e), 400);
	e->rcpts[2].state = Q_FAILED;
	ck_assert_int_eq(sched_env_due(e), 500);
	e->rcpts[1].state = Q_DELIVERED;
	ck_assert_int_eq(sched_env_due(e), -1);
	q_envelope_free(e);
}
END_TEST

START_TEST(test_apply_deferred)
{
	struct sched_policy p = { 300, 3600, 432000 };
	struct q_envelope *e = env_new(3, (int64_t)10000 * 1000000);
	struct sched_prev prev[3] = { { Q_PENDING, 0 }, { Q_DEFERRED, 2 }, { Q_DELIVERED, 1 } };
	bool failed[3];

	e->rcpts[2].state = Q_DELIVERED;
	/* the relay's outcome: r0 deferred (1st attempt), r1 deferred (3rd) */
	e->rcpts[0].state = Q_DEFERRED;
	e->rcpts[0].attempts = 1;
	e->rcpts[0].last_attempt = 20000;
	set_reason(&e->rcpts[0], "451 4.3.0 try later");
	e->rcpts[1].state = Q_DEFERRED;
	e->rcpts[1].attempts = 3;
	e->rcpts[1].last_attempt = 20000;
	ck_assert_int_eq(sched_apply(e, prev, &p, 20001, failed), 0);
	ck_assert_int_eq(e->rcpts[0].next_attempt, 20300);
	ck_assert_int_eq(e->rcpts[1].next_attempt, 21200);
	ck_assert(!failed[0] && !failed[1] && !failed[2]);
	ck_assert_int_eq(sched_env_due(e), 20300);
	q_envelope_free(e);
}
END_TEST

START_TEST(test_apply_failed)
{
	struct sched_policy p = { 300, 3600, 432000 };
	struct q_envelope *e = env_new(2, (int64_t)10000 * 1000000);
	struct sched_prev prev[2] = { { Q_PENDING, 0 }, { Q_PENDING, 0 } };
	bool failed[2];

	e->rcpts[0].state = Q_FAILED;
	e->rcpts[0].attempts = 1;
	set_reason(&e->rcpts[0], "550 5.1.1 no such user");
	e->rcpts[1].state = Q_DELIVERED;
	ck_assert_int_eq(sched_apply(e, prev, &p, 10001, failed), 1);
	ck_assert(failed[0]);
	ck_assert(!failed[1]);
	ck_assert_str_eq(e->rcpts[0].last_reason, "550 5.1.1 no such user");
	ck_assert_int_eq(sched_env_due(e), -1);
	q_envelope_free(e);
}
END_TEST

START_TEST(test_apply_expiry)
{
	struct sched_policy p = { 300, 3600, 3 };
	struct q_envelope *e = env_new(3, (int64_t)10000 * 1000000);
	struct sched_prev prev[3] = { { Q_DEFERRED, 1 }, { Q_DELIVERED, 1 }, { Q_FAILED, 1 } };
	bool failed[3];

	e->rcpts[0].state = Q_DEFERRED;
	e->rcpts[0].attempts = 2;
	e->rcpts[0].last_attempt = 10003;
	set_reason(&e->rcpts[0], "connect to 127.0.0.1:25: refused");
	e->rcpts[1].state = Q_DELIVERED;
	e->rcpts[2].state = Q_FAILED;	/* failed earlier: no second DSN */
	/* not expired yet at 10002 */
	ck_assert_int_eq(sched_apply(e, prev, &p, 10002, failed), 0);
	ck_assert_int_eq(e->rcpts[0].state, Q_DEFERRED);
	ck_assert_int_eq(sched_apply(e, prev, &p, 10003, failed), 1);
	ck_assert(failed[0] && !failed[1] && !failed[2]);
	ck_assert_int_eq(e->rcpts[0].state, Q_FAILED);
	ck_assert_str_eq(e->rcpts[0].last_reason,
	    "message expired after 3 seconds in the queue: connect to 127.0.0.1:25: refused");
	ck_assert_int_eq(sched_env_due(e), -1);
	q_envelope_free(e);
}
END_TEST

START_TEST(test_apply_expiry_untouched)
{
	/* a recipient the relay did not attempt (attempts unchanged) keeps its
	 * next_attempt, but still expires with the message */
	struct sched_policy p = { 60, 600, 86400 };
	struct q_envelope *e = env_new(1, (int64_t)10000 * 1000000);
	struct sched_prev prev[1] = { { Q_DEFERRED, 4 } };
	bool failed[1];

	e->rcpts[0].state = Q_DEFERRED;
	e->rcpts[0].attempts = 4;
	e->rcpts[0].next_attempt = 12345;
	ck_assert_int_eq(sched_apply(e, prev, &p, 10100, failed), 0);
	ck_assert_int_eq(e->rcpts[0].next_attempt, 12345);
	ck_assert_int_eq(sched_apply(e, prev, &p, 10000 + 86400, failed), 1);
	ck_assert_str_eq(e->rcpts[0].last_reason,
	    "message expired after 1 day in the queue: no delivery attempt succeeded");
	q_envelope_free(e);
}
END_TEST

START_TEST(test_unfail)
{
	struct q_envelope *e = env_new(1, 0);
	struct sched_prev prev = { Q_PENDING, 0 };

	e->rcpts[0].state = Q_FAILED;
	sched_unfail(&e->rcpts[0], &prev, 777);
	ck_assert_int_eq(e->rcpts[0].state, Q_DEFERRED);
	ck_assert_int_eq(sched_env_due(e), 777);
	q_envelope_free(e);
}
END_TEST

/* A flushed delivery that made no attempt (the relay deferred nothing new:
 * attempts unchanged) keeps the backoff it had: no doubling. */
START_TEST(test_apply_no_attempt_keeps_backoff)
{
	struct sched_policy p = { 60, 3600, 432000 };
	struct q_envelope *e = env_new(1, (int64_t)10000 * 1000000);
	struct sched_prev prev[1] = { { Q_DEFERRED, 1 } };
	bool failed[1];

	e->rcpts[0].state = Q_DEFERRED;
	e->rcpts[0].attempts = 1;
	e->rcpts[0].last_attempt = 20000;
	e->rcpts[0].next_attempt = 20060;
	ck_assert_int_eq(sched_apply(e, prev, &p, 20010, failed), 0);
	ck_assert_int_eq(e->rcpts[0].next_attempt, 20060);
	/* A real attempt right after (the flush reached the smarthost): 2nd
	 * attempt, 120 s: the backoff counts attempts, not flushes. */
	e->rcpts[0].attempts = 2;
	e->rcpts[0].last_attempt = 20010;
	ck_assert_int_eq(sched_apply(e, prev, &p, 20010, failed), 0);
	ck_assert_int_eq(e->rcpts[0].next_attempt, 20130);
	q_envelope_free(e);
}
END_TEST

START_TEST(test_held_until)
{
	struct q_envelope *e = env_new(2, (int64_t)10000 * 1000000);

	e->rcpts[0].state = Q_FAILED;
	e->rcpts[1].state = Q_DEFERRED;
	e->rcpts[1].next_attempt = 10500;
	/* Not held: -1 whatever the recipients. */
	ck_assert_int_eq(sched_held_until(e, 1000, 10100), -1);
	e->held = true;
	/* Held but a recipient still to deliver: not on hold yet. */
	ck_assert_int_eq(sched_held_until(e, 1000, 10100), -1);
	e->rcpts[1].state = Q_DELIVERED;
	ck_assert_int_eq(sched_held_until(e, 1000, 10100), 11000);
	/* queue_lifetime over: it may go. */
	ck_assert_int_eq(sched_held_until(e, 1000, 11000), -1);
	q_envelope_free(e);
}
END_TEST

static Suite *sched_suite(void)
{
	Suite *s = suite_create("sched");
	TCase *tc = tcase_create("policy");

	tcase_add_test(tc, test_backoff);
	tcase_add_test(tc, test_expired);
	tcase_add_test(tc, test_duration_text);
	tcase_add_test(tc, test_env_due);
	tcase_add_test(tc, test_apply_deferred);
	tcase_add_test(tc, test_apply_failed);
	tcase_add_test(tc, test_apply_expiry);
	tcase_add_test(tc, test_apply_expiry_untouched);
	tcase_add_test(tc, test_unfail);
	tcase_add_test(tc, test_apply_no_attempt_keeps_backoff);
	tcase_add_test(tc, test_held_until);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	log_init("check_sched", LOG_TARGET_STDERR, false);
	return ckrun(sched_suite());
}
