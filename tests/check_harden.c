#include "config.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/harden.h"
#include "lib/log.h"
#include "lib/secmem.h"

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

/* The VmFlags of the mapping holding p in /proc/self/smaps. */
static void vmflags_of(const void *p, char *flags, size_t len)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	bool in = false;

	ck_assert_ptr_nonnull(f);
	flags[0] = '\0';
	while (fgets(line, sizeof(line), f)) {
		uintptr_t lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
			in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
		else if (in && strncmp(line, "VmFlags:", 8) == 0)
			snprintf(flags, len, "%s", line + 8);
	}
	fclose(f);
}

/* Finding 6: secret buffers are kept out of core dumps ("dd" in VmFlags). */
START_TEST(test_secmem_dontdump)
{
	char *p = secmem_alloc(5000), flags[512];

	ck_assert_ptr_nonnull(p);
	for (size_t i = 0; i < 5000; i++)
		ck_assert_int_eq(p[i], 0);
	memset(p, 'x', 5000);
	vmflags_of(p, flags, sizeof(flags));
	ck_assert_msg(strstr(flags, " dd") != NULL, "VmFlags:%s", flags);
	vmflags_of(p + 4999, flags, sizeof(flags));
	ck_assert_msg(strstr(flags, " dd") != NULL, "VmFlags:%s", flags);
	secmem_free(p, 5000);
	secmem_free(NULL, 10);
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
	tcase_add_test(tc, test_secmem_dontdump);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
