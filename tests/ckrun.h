/* The main of every Check suite: run all its tests (forked, so a crash is a
 * failed test, not a dead runner), print Check's report, and give the exit
 * status automake's test driver reads. */
#ifndef SMTPRELAY_CKRUN_H
#define SMTPRELAY_CKRUN_H

#include <check.h>
#include <stdlib.h>

static inline int ckrun(Suite *s)
{
	SRunner *r = srunner_create(s);
	int failed;

	srunner_run_all(r, CK_NORMAL);
	failed = srunner_ntests_failed(r);
	srunner_free(r);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
