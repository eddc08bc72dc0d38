#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "relay/oauth2.h"
#include "frontend/oauth2_login.h"
#include "tests/ckrun.h"

static int parse(const char *s, struct oauth2_json *j, char *err, size_t len)
{
	return oauth2_json_parse(s, strlen(s), j, err, len);
}

START_TEST(test_json_token_response)
{
	const char *body = "{\"token_type\":\"Bearer\",\"scope\":\"https://outlook.office.com/SMTP.Send\","
	    "\"expires_in\":3599,\"ext_expires_in\":3599,\"access_token\":\"eyJ0eXAi.x-y_z\","
	    "\"refresh_token\":\"0.AXoA\",\"id_token\":null,\"nested\":{\"a\":[1,2,{\"b\":\"c\"}]}}";
	struct oauth2_json j;
	char err[128];
	long n;

	ck_assert_int_eq(parse(body, &j, err, sizeof(err)), 0);
	ck_assert_str_eq(oauth2_json_str(&j, "access_token"), "eyJ0eXAi.x-y_z");
	ck_assert_str_eq(oauth2_json_str(&j, "refresh_token"), "0.AXoA");
	ck_assert(oauth2_json_long(&j, "expires_in", &n));
	ck_assert_int_eq(n, 3599);
	ck_assert_ptr_null(oauth2_json_str(&j, "expires_in"));	/* a number, not a string */
	ck_assert_ptr_null(oauth2_json_str(&j, "id_token"));
	ck_assert_ptr_null(oauth2_json_str(&j, "nested"));
	ck_assert_ptr_null(oauth2_json_str(&j, "b"));		/* nested members are not top level */
	oauth2_json_free(&j);
}
END_TEST

START_TEST(test_json_escapes)
{
	struct oauth2_json j;
	char err[128];
	long n;

	ck_assert_int_eq(parse(" {\"a\" : \"x\\\"y\\\\z\\/\\n\\t\\u00e9\\u20ac\\ud83d\\ude00\","
	    "\"expires_in\":\"3600\", \"f\": 1.5e3, \"neg\": -4, \"a2\": \"\"} ", &j, err,
	    sizeof(err)), 0);
	ck_assert_str_eq(oauth2_json_str(&j, "a"), "x\"y\\z/\n\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	ck_assert(oauth2_json_long(&j, "expires_in", &n));	/* some servers send a string */
	ck_assert_int_eq(n, 3600);
	ck_assert(oauth2_json_long(&j, "f", &n));
	ck_assert_int_eq(n, 1500);
	ck_assert(!oauth2_json_long(&j, "neg", &n));
	ck_assert(!oauth2_json_long(&j, "a", &n));
	ck_assert_str_eq(oauth2_json_str(&j, "a2"), "");
	oauth2_json_free(&j);
	/* The last duplicate wins. */
	ck_assert_int_eq(parse("{\"k\":\"1\",\"k\":\"2\"}", &j, err, sizeof(err)), 0);
	ck_assert_int_eq((int)j.n, 1);
	ck_assert_str_eq(oauth2_json_str(&j, "k"), "2");
	oauth2_json_free(&j);
}
END_TEST

static const char *const hostile[] = {
	"", "   ", "[]", "\"x\"", "null", "{", "{\"a\"", "{\"a\":}", "{\"a\":\"b\"", "{\"a\":\"b\",}",
	"{\"a\" \"b\"}", "{a:1}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":-}", "{\"a\":1e}", "{\"a\":tru}",
	"{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}", "{\"a\":\"\\ud800\"}", "{\"a\":\"\\udc00\"}",
	"{\"a\":\"\\ud800\\u0041\"}", "{\"a\":\"\\u0000\"}", "{\"a\":\"tab\there\"}",
	"{\"a\":1} x", "{\"a\":1}{", "{\"a\":[1,2}", "{\"a\":[1,,2]}", "{\"a\":{\"b\"}}",
	"{\"a\":\"unterminated\\", "<html>502 Bad Gateway</html>",
};

START_TEST(test_json_hostile)
{
	struct oauth2_json j;
	char err[128];

	for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		err[0] = '\0';
		ck_assert_msg(parse(hostile[i], &j, err, sizeof(err)) == -1, "accepted: %s", hostile[i]);
		ck_assert_msg(err[0], "no message for %s", hostile[i]);
		ck_assert_ptr_null(j.m);
	}
	/* An embedded NUL ends nothing: the length counts. */
	ck_assert_int_eq(oauth2_json_parse("{\"a\":1}\0", 8, &j, err, sizeof(err)), -1);
}
END_TEST

START_TEST(test_json_deep_and_large)
{
	struct oauth2_json j;
	char err[128], *s;
	size_t n;

	/* Nesting beyond the limit is refused without recursing further. */
	s = malloc(100000);
	ck_assert_ptr_nonnull(s);
	n = (size_t)sprintf(s, "{\"a\":");
	for (int i = 0; i < 5000; i++)
		s[n++] = '[';
	s[n] = '\0';
	ck_assert_int_eq(oauth2_json_parse(s, n, &j, err, sizeof(err)), -1);
	ck_assert(strstr(err, "nested too deeply"));
	/* Within the limit is fine. */
	n = (size_t)sprintf(s, "{\"a\":");
	for (int i = 0; i < OAUTH2_DEPTH_MAX; i++)
		s[n++] = '[';
	for (int i = 0; i < OAUTH2_DEPTH_MAX; i++)
		s[n++] = ']';
	n += (size_t)sprintf(s + n, "}");
	ck_assert_int_eq(oauth2_json_parse(s, n, &j, err, sizeof(err)), 0);
	oauth2_json_free(&j);
	/* Over 64 KiB: refused before parsing. */
	memset(s, ' ', 99999);
	s[0] = '{';
	s[99998] = '}';
	ck_assert_int_eq(oauth2_json_parse(s, 99999, &j, err, sizeof(err)), -1);
	ck_assert(strstr(err, "larger than"));
	free(s);
}
END_TEST

START_TEST(test_token_ok)
{
	struct oauth2_token t;
	char err[256];
	const char *ok = "{\"token_type\":\"bearer\",\"access_token\":\"ya29.a0Af\",\"expires_in\":3599}";

	ck_assert_int_eq(oauth2_token_response(200, ok, strlen(ok), &t, err, sizeof(err)), OAUTH2_OK);
	ck_assert_str_eq(t.access_token, "ya29.a0Af");
	ck_assert_ptr_null(t.refresh_token);
	ck_assert_int_eq(t.expires_in, 3599);
	oauth2_token_clear(&t);
	ck_assert_ptr_null(t.access_token);
}
END_TEST

START_TEST(test_token_errors)
{
	struct oauth2_token t;
	char err[512];
	const char *grant = "{\"error\":\"invalid_grant\",\"error_description\":\"AADSTS70008: "
	    "expired due to inactivity.\\r\\nTrace ID: 1\",\"error_codes\":[70008]}";
	const char *mac = "{\"token_type\":\"mac\",\"access_token\":\"x\"}";
	const char *ctl = "{\"access_token\":\"a\\u0001b\"}";
	const char *none = "{\"expires_in\":3600}";

	ck_assert_int_eq(oauth2_token_response(400, grant, strlen(grant), &t, err, sizeof(err)),
	    OAUTH2_REJECTED);
	ck_assert_str_eq(err, "invalid_grant: AADSTS70008: expired due to inactivity.");
	ck_assert_int_eq(oauth2_token_response(503, "<html>down</html>", 17, &t, err, sizeof(err)),
	    OAUTH2_TEMP);
	ck_assert_str_eq(err, "HTTP 503");
	ck_assert_int_eq(oauth2_token_response(200, "{\"access_token\":", 16, &t, err, sizeof(err)),
	    OAUTH2_TEMP);
	ck_assert(strstr(err, "not valid JSON"));
	ck_assert_int_eq(oauth2_token_response(200, mac, strlen(mac), &t, err, sizeof(err)), OAUTH2_TEMP);
	ck_assert(strstr(err, "not Bearer"));
	/* ^A frames XOAUTH2: such a token must never reach the SMTP client. */
	ck_assert_int_eq(oauth2_token_response(200, ctl, strlen(ctl), &t, err, sizeof(err)), OAUTH2_TEMP);
	ck_assert(!strstr(err, "a\001b"));
	ck_assert_int_eq(oauth2_token_response(200, none, strlen(none), &t, err, sizeof(err)), OAUTH2_TEMP);
	ck_assert_str_eq(err, "the response has no access_token");
}
END_TEST

START_TEST(test_token_device_errors)
{
	static const struct {
		const char *code;
		enum oauth2_outcome want;
	} cases[] = {
		{ "authorization_pending", OAUTH2_PENDING }, { "slow_down", OAUTH2_SLOW_DOWN },
		{ "access_denied", OAUTH2_DENIED }, { "authorization_declined", OAUTH2_DENIED },
		{ "expired_token", OAUTH2_EXPIRED }, { "invalid_client", OAUTH2_REJECTED },
		{ "unauthorized_client", OAUTH2_REJECTED }, { "temporarily_unavailable", OAUTH2_TEMP },
	};
	struct oauth2_token t;
	char body[128], err[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(body, sizeof(body), "{\"error\":\"%s\"}", cases[i].code);
		ck_assert_int_eq(oauth2_token_response(400, body, strlen(body), &t, err, sizeof(err)),
		    cases[i].want);
		ck_assert_str_eq(err, cases[i].code);
	}
	/* Server text is cleaned before it reaches a message. */
	snprintf(body, sizeof(body), "{\"error\":\"x\\u001b[31m\",\"error_description\":\"\\u00e9\"}");
	oauth2_token_response(400, body, strlen(body), &t, err, sizeof(err));
	ck_assert_str_eq(err, "x?[31m: ??");
}
END_TEST

START_TEST(test_form)
{
	struct buf b;

	buf_init(&b, 4096);
	ck_assert_int_eq(oauth2_form_add(&b, "grant_type", "refresh_token"), 0);
	ck_assert_int_eq(oauth2_form_add(&b, "scope",
	    "https://outlook.office.com/SMTP.Send offline_access"), 0);
	ck_assert_int_eq(oauth2_form_add(&b, "client_secret", "a+b/c=d&e~f_g.h-i%\xc3\xa9"), 0);
	ck_assert_int_eq(oauth2_form_add(&b, "empty", ""), 0);
	ck_assert_str_eq(b.data, "grant_type=refresh_token"
	    "&scope=https%3A%2F%2Foutlook.office.com%2FSMTP.Send+offline_access"
	    "&client_secret=a%2Bb%2Fc%3Dd%26e~f_g.h-i%25%C3%A9&empty=");
	buf_free(&b);
	/* Bounded: an oversize value fails instead of growing without limit. */
	buf_init(&b, 16);
	ck_assert_int_eq(oauth2_form_add(&b, "k", "0123456789abcdef"), -1);
	buf_free(&b);
}
END_TEST

START_TEST(test_device_url)
{
	char *u;

	u = oauth2_login_device_url("https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token");
	ck_assert_str_eq(u, "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/devicecode");
	free(u);
	u = oauth2_login_device_url("https://login.microsoftonline.com/common/oauth2/v2.0/token");
	ck_assert_str_eq(u, "https://login.microsoftonline.com/common/oauth2/v2.0/devicecode");
	free(u);
	u = oauth2_login_device_url("https://oauth2.googleapis.com/token");
	ck_assert_str_eq(u, "https://oauth2.googleapis.com/device/code");
	free(u);
	ck_assert_ptr_null(oauth2_login_device_url("https://idp.example.com/oauth2/token"));
	ck_assert_ptr_null(oauth2_login_device_url("https://login.microsoftonline.com/oauth2/v2.0/token"));
}
END_TEST

START_TEST(test_refresh_token_file)
{
	char dir[] = "/tmp/check_oauth2.XXXXXX", path[256], err[256], *tok;
	struct stat st;
	FILE *f;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/rt", dir);
	ck_assert_ptr_null(oauth2_load_refresh_token(path, err, sizeof(err)));
	ck_assert(strstr(err, "No such file"));
	f = fopen(path, "w");
	fputs("  \n", f);
	fclose(f);
	ck_assert_ptr_null(oauth2_load_refresh_token(path, err, sizeof(err)));
	ck_assert(strstr(err, "is empty"));
	ck_assert_int_eq(oauth2_save_refresh_token(path, "1//0gRT-x_y", err, sizeof(err)), 0);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	tok = oauth2_load_refresh_token(path, err, sizeof(err));
	ck_assert_str_eq(tok, "1//0gRT-x_y");
	free(tok);
	unlink(path);
	snprintf(path, sizeof(path), "%s/missing/rt", dir);
	ck_assert_int_eq(oauth2_save_refresh_token(path, "x", err, sizeof(err)), -1);
	ck_assert(strstr(err, "cannot write"));
	ck_assert(!strstr(err, ": x"));
	rmdir(dir);
}
END_TEST

static Suite *oauth2_suite(void)
{
	Suite *s = suite_create("oauth2");
	TCase *tc = tcase_create("json");

	tcase_add_test(tc, test_json_token_response);
	tcase_add_test(tc, test_json_escapes);
	tcase_add_test(tc, test_json_hostile);
	tcase_add_test(tc, test_json_deep_and_large);
	suite_add_tcase(s, tc);
	tc = tcase_create("responses");
	tcase_add_test(tc, test_token_ok);
	tcase_add_test(tc, test_token_errors);
	tcase_add_test(tc, test_token_device_errors);
	suite_add_tcase(s, tc);
	tc = tcase_create("requests");
	tcase_add_test(tc, test_form);
	tcase_add_test(tc, test_device_url);
	tcase_add_test(tc, test_refresh_token_file);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ckrun(oauth2_suite());
}
