/* relay/cred: where a connection's credentials come from, the decision that
 * delivery and probe share (never AUTH in clear; a missing secret is told
 * apart from "no AUTH wanted"). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>

#include "relay/cred.h"
#include "tests/ckrun.h"

static const struct {
	const char *username, *password, *command, *token_url;
	enum conf_tls_mode mode;
	enum cred_kind want;
} cases[] = {
	{ NULL, NULL, NULL, NULL, CONF_TLS_STARTTLS, CRED_NONE },
	{ "u", "pw", NULL, NULL, CONF_TLS_NONE, CRED_NONE },
	{ "u", NULL, "cmd", NULL, CONF_TLS_NONE, CRED_NONE },
	{ "u", "pw", NULL, NULL, CONF_TLS_STARTTLS, CRED_PASSWORD },
	{ "u", "pw", NULL, NULL, CONF_TLS_IMPLICIT, CRED_PASSWORD },
	{ "u", NULL, NULL, NULL, CONF_TLS_STARTTLS, CRED_MISSING },
	{ "u", NULL, "cmd", NULL, CONF_TLS_IMPLICIT, CRED_COMMAND },
	{ "u", NULL, NULL, "https://t.test/token", CONF_TLS_STARTTLS, CRED_OAUTH2 },
};

START_TEST(test_kind)
{
	struct conf_port port = { 587, cases[_i].mode };
	struct conf_smarthost sh = {
		.name = "sh", .ports = &port, .nports = 1,
		.username = (char *)cases[_i].username, .password = (char *)cases[_i].password,
		.password_command = (char *)cases[_i].command,
		.oauth2_token_url = (char *)cases[_i].token_url,
	};

	ck_assert_int_eq(cred_kind(&sh, 0), cases[_i].want);
}
END_TEST

/* A request that cannot start says why, naming the smarthost. */
START_TEST(test_get_fails_with_reason)
{
	struct conf_port port = { 587, CONF_TLS_STARTTLS };
	struct conf_smarthost sh = {
		.name = "sh", .ports = &port, .nports = 1, .username = "u",
		.oauth2_token_url = "https://t.test/token",
	};
	char err[256] = "";

	ck_assert_ptr_null(cred_get(NULL, NULL, &sh, 0, 5, NULL, NULL, err, sizeof(err)));
	ck_assert_str_eq(err, "smarthost sh: cannot request an OAuth2 access token: "
	    "Cannot allocate memory");
	/* Not an errno left over from earlier calls. */
	errno = ESRCH;
	ck_assert_ptr_null(cred_get(NULL, NULL, &sh, 0, 5, NULL, NULL, err, sizeof(err)));
	ck_assert_str_eq(err, "smarthost sh: cannot request an OAuth2 access token: "
	    "Cannot allocate memory");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cred");
	TCase *tc = tcase_create("core");

	tcase_add_loop_test(tc, test_kind, 0, sizeof(cases) / sizeof(cases[0]));
	tcase_add_test(tc, test_get_fails_with_reason);
	suite_add_tcase(s, tc);
	return ckrun(s);
}
