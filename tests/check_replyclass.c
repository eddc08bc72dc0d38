#include "config.h"

#include <check.h>
#include <stdlib.h>

#include "relay/replyclass.h"
#include "tests/ckrun.h"

static const struct {
	int code;
	const char *enhanced;
	enum smtp_client_stage stage;
	bool config;
} cases[] = {
	/* 530 and 535 at any stage, with or without an enhanced code */
	{ 530, "5.7.0", SMTP_CLIENT_STAGE_MAIL, true },
	{ 530, "", SMTP_CLIENT_STAGE_RCPT, true },
	{ 530, "5.7.0", SMTP_CLIENT_STAGE_DOT, true },
	{ 535, "5.7.8", SMTP_CLIENT_STAGE_AUTH, true },
	{ 535, "", SMTP_CLIENT_STAGE_DATA, true },
	/* account-level 5.7.x before DATA */
	{ 554, "5.7.0", SMTP_CLIENT_STAGE_MAIL, true },
	{ 550, "5.7.1", SMTP_CLIENT_STAGE_MAIL, true },
	{ 550, "5.7.1", SMTP_CLIENT_STAGE_EHLO, true },
	{ 554, "5.7.9", SMTP_CLIENT_STAGE_AUTH, true },
	{ 534, "5.7.14", SMTP_CLIENT_STAGE_AUTH, true },
	{ 554, "5.7.8", SMTP_CLIENT_STAGE_HELO, true },
	/* ... but not about a recipient or the content */
	{ 550, "5.7.1", SMTP_CLIENT_STAGE_RCPT, false },
	{ 554, "5.7.1", SMTP_CLIENT_STAGE_DOT, false },
	{ 554, "5.7.0", SMTP_CLIENT_STAGE_DATA, false },
	/* other 5.7.x are about the message */
	{ 550, "5.7.26", SMTP_CLIENT_STAGE_MAIL, false },
	{ 550, "5.7.2", SMTP_CLIENT_STAGE_MAIL, false },
	/* quota at any stage */
	{ 550, "5.4.5", SMTP_CLIENT_STAGE_MAIL, true },
	{ 552, "5.4.5", SMTP_CLIENT_STAGE_RCPT, true },
	{ 554, "5.4.5", SMTP_CLIENT_STAGE_DOT, true },
	/* ordinary failures stay failures, temporary ones are not ours to pause */
	{ 550, "5.1.1", SMTP_CLIENT_STAGE_RCPT, false },
	{ 550, "", SMTP_CLIENT_STAGE_MAIL, false },
	{ 552, "5.3.4", SMTP_CLIENT_STAGE_DOT, false },
	{ 451, "4.7.0", SMTP_CLIENT_STAGE_MAIL, false },
	{ 454, "4.7.0", SMTP_CLIENT_STAGE_AUTH, false },
	{ 250, "2.0.0", SMTP_CLIENT_STAGE_DOT, false },
	{ 550, NULL, SMTP_CLIENT_STAGE_MAIL, false },
};

START_TEST(test_table)
{
	ck_assert_msg(replyclass_is_config(cases[_i].code, cases[_i].enhanced, cases[_i].stage) ==
	    cases[_i].config, "case %d: %d %s at stage %d", _i, cases[_i].code,
	    cases[_i].enhanced ? cases[_i].enhanced : "(null)", (int)cases[_i].stage);
}
END_TEST

START_TEST(test_local_result_never)
{
	struct smtp_client_result r = { .code = 530, .local = true, .stage = SMTP_CLIENT_STAGE_MAIL };

	ck_assert(!replyclass_result_is_config(&r));
	r.local = false;
	ck_assert(replyclass_result_is_config(&r));
	ck_assert(!replyclass_result_is_config(NULL));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("replyclass");
	TCase *tc = tcase_create("core");

	tcase_add_loop_test(tc, test_table, 0, (int)(sizeof(cases) / sizeof(cases[0])));
	tcase_add_test(tc, test_local_result_never);
	suite_add_tcase(s, tc);
	return ckrun(s);
}
