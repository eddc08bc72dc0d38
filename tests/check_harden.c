#include "config.h"

#include <check.h>
#include <stdlib.h>

#include "daemon/harden.h"
#include "lib/log.h"

/* Per-uid and global caps on local clients (issue 12 finding 2). */
START_TEST(test_caps)
{
	struct harden_clients *hc = harden_clients_new("test socket");
	uid_t uid;

	ck_assert_ptr_nonnull(hc);
	for (int i = 0; i < HARDEN_CLIENTS_PER_UID; i++)
		ck_assert(harden_clients_admit(hc, 1000));
	ck_assert(!harden_clients_admit(hc, 1000));
	ck_assert(harden_clients_admit(hc, 1001));	/* another user is not starved */
	harden_clients_release(hc, 1000);
	ck_assert(harden_clients_admit(hc, 1000));
	/* Fill up to the global cap with other users. */
	for (uid = 2000; ; uid++) {
		int n = 0;

		while (n < HARDEN_CLIENTS_PER_UID && harden_clients_admit(hc, uid))
			n++;
		if (n < HARDEN_CLIENTS_PER_UID)
			break;
	}
	ck_assert(!harden_clients_admit(hc, 5000));
	harden_clients_release(hc, 1001);
	ck_assert(harden_clients_admit(hc, 5000));
	/* Releasing an unknown uid changes nothing. */
	harden_clients_release(hc, 4242);
	ck_assert(!harden_clients_admit(hc, 5001));
	harden_clients_free(hc);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("harden");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	log_init("check_harden", LOG_TARGET_STDERR, false);
	tcase_add_test(tc, test_caps);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
