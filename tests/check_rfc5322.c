#include "config.h"
#include "lib/buf.h"
#include "lib/rfc5322.h"
#include "tests/ckrun.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Parse exactly len bytes from an exact-size copy (so reading past len is a
 * valgrind/ASan error) and join the result with '|'. */
static char *parse_n(const char *in, size_t len, int *skipped)
{
	char *copy = malloc(len ? len : 1);
	struct strv v = { 0 };
	struct buf b;
	int r;

	ck_assert_ptr_nonnull(copy);
	memcpy(copy, in, len);
	r = rfc5322_parse_addrlist(copy, len, &v);
	free(copy);
	ck_assert_int_ge(r, 0);
	if (v.n == 0)
		ck_assert_ptr_null(v.v);
	buf_init(&b, 1 << 26);
	for (size_t i = 0; i < v.n; i++)
		ck_assert_int_eq(buf_printf(&b, "%s%s", i ? "|" : "", v.v[i]), 0);
	strv_free(&v);
	if (skipped)
		*skipped = r;
	return buf_steal(&b);
}

static void check_parse(const char *in, const char *want, int want_skipped)
{
	int skipped = -1;
	char *got = parse_n(in, strlen(in), &skipped);

	ck_assert_msg(strcmp(got, want) == 0, "input [%s]: got [%s], want [%s]", in, got, want);
	ck_assert_msg(skipped == want_skipped, "input [%s]: skipped %d, want %d", in, skipped,
	    want_skipped);
	free(got);
}

START_TEST(test_plain_forms)
{
	check_parse("a@b.example", "a@b.example", 0);
	check_parse("  a@b.example  ", "a@b.example", 0);
	check_parse("Name <a@b.example>", "a@b.example", 0);
	check_parse("Name<a@b.example>", "a@b.example", 0);
	check_parse("<a@b.example>", "a@b.example", 0);
	check_parse("\"Quoted, Name\" <a@b.example>, c@d.example", "a@b.example|c@d.example", 0);
	check_parse("\"Tricky <x@y.example>\" <a@b.example>", "a@b.example", 0);
	check_parse("Joe Q. Public <john.q.public@example.com>", "john.q.public@example.com", 0);
	check_parse("a@b.example; c@d.example", "a@b.example|c@d.example", 0);
	check_parse("jörg@example.de, Jörg <j@bücher.example>", "jörg@example.de|j@bücher.example", 0);
	check_parse("a @ b.example, john . smith@example.com", "a@b.example|john.smith@example.com", 0);
	check_parse("x@[192.0.2.1]", "x@[192.0.2.1]", 0);
}
END_TEST

START_TEST(test_comments)
{
	check_parse("a@b.example (Comment, with, commas), c@d.example",
	    "a@b.example|c@d.example", 0);
	check_parse("a@b.example (outer (inner, x) y), c@d.example", "a@b.example|c@d.example", 0);
	check_parse("(lead) a@b.example", "a@b.example", 0);
	check_parse("john(c).smith@example.com", "john.smith@example.com", 0);
	check_parse("a@b.example (escaped \\) paren, still comment), c@d.example",
	    "a@b.example|c@d.example", 0);
	check_parse("Name (c <x@y>) <a@b.example>", "a@b.example", 0);
	check_parse("(just a comment), a@b.example", "a@b.example", 0);
}
END_TEST

START_TEST(test_groups)
{
	check_parse("Team: a@b.example, c@d.example;", "a@b.example|c@d.example", 0);
	check_parse("Team: a@b.example, c@d.example;, e@f.example",
	    "a@b.example|c@d.example|e@f.example", 0);
	check_parse("undisclosed-recipients:;", "", 0);
	check_parse("undisclosed-recipients: ;, a@b.example", "a@b.example", 0);
	check_parse("\"A: Team\": Name <a@b.example>; B: c@d.example;",
	    "a@b.example|c@d.example", 0);
	check_parse("Team: a@b.example", "a@b.example", 0);	/* missing ';' */
}
END_TEST

START_TEST(test_routes_quoted_bare)
{
	check_parse("<@r1.example,@r2.example:a@b.example>", "a@b.example", 0);
	check_parse("Name <@r1.example:a@b.example>, c@d.example", "a@b.example|c@d.example", 0);
	check_parse("\"john smith\"@example.com", "\"john smith\"@example.com", 0);
	check_parse("\"a,b\"@example.com, c@d.example", "\"a,b\"@example.com|c@d.example", 0);
	check_parse("root", "root", 0);
	check_parse("Root User <root>", "root", 0);
	check_parse("root, www-data (web)", "root|www-data", 0);
}
END_TEST

START_TEST(test_folding_empty_members)
{
	check_parse("a@b.example,\r\n\tc@d.example", "a@b.example|c@d.example", 0);
	check_parse("Long\r\n Name\r\n <a@b.example>", "a@b.example", 0);
	check_parse("a@b.example,,c@d.example, ,", "a@b.example|c@d.example", 0);
	check_parse("", "", 0);
	check_parse(" , ,, ", "", 0);
}
END_TEST

START_TEST(test_garbage)
{
	check_parse("a@b.example, John Smith, c@d.example", "a@b.example|c@d.example", 1);
	check_parse("<>, a@b.example", "a@b.example", 1);
	check_parse("a@b@c.example, d@e.example", "d@e.example", 1);
	check_parse("<a@b.example> <c@d.example>, e@f.example", "e@f.example", 1);
	check_parse("a@b.example>, c@d.example", "c@d.example", 1);
	check_parse("a@-bad-.example, @x.example, x@, .a@b.example", "", 4);
	check_parse("<@route-without-colon>, a@b.example", "a@b.example", 1);
	check_parse("<a:b@c.example>", "", 1);
}
END_TEST

START_TEST(test_unterminated)
{
	check_parse("a@b.example, \"unterminated", "a@b.example", 1);
	check_parse("a@b.example, c@d.example (oops, e@f.example", "a@b.example", 1);
	check_parse("Name <a@b.example, c@d.example", "c@d.example", 1);
	check_parse("Name <a@b.example", "", 1);
	check_parse("x@[192.0.2.1, y@z.example", "", 1);
	check_parse("a@b.example, ((((", "a@b.example", 1);
}
END_TEST

/* Each input ends in the middle of something that reads ahead; the exact-size
 * copies make any read past len visible to valgrind and ASan. */
START_TEST(test_no_read_past_len)
{
	static const char *const inputs[] = {
		"\"abc\\", "(abc\\", "<a@b", "a@b (", "[x\\", "x@[1.2", "<", "<  ",
		"<@r", "<@r,", "\\", "a@b.example,", "T:", "\"", "(", "a\"", "<\"a@b",
	};

	for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		int skipped;
		char *got = parse_n(inputs[i], strlen(inputs[i]), &skipped);

		free(got);
	}
	/* A prefix: nothing after len may be seen. */
	{
		int skipped;
		char *got = parse_n("a@b.example, c@d.example", 11, &skipped);

		ck_assert_str_eq(got, "a@b.example");
		ck_assert_int_eq(skipped, 0);
		free(got);
	}
}
END_TEST

START_TEST(test_nul_in_middle)
{
	static const char in[] = "a@b.example,c\0d@e.example,f@g.example,\"x\0y\"@h.example";
	int skipped;
	char *got = parse_n(in, sizeof(in) - 1, &skipped);

	ck_assert_str_eq(got, "a@b.example|f@g.example");
	ck_assert_int_eq(skipped, 2);
	free(got);
}
END_TEST

START_TEST(test_very_long)
{
	const size_t n = 100000;
	struct buf in;
	struct strv v = { 0 };
	int r;

	buf_init(&in, 1 << 26);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(buf_printf(&in, "u%zu@d.example, ", i), 0);
	r = rfc5322_parse_addrlist(in.data, in.len, &v);
	ck_assert_int_eq(r, 0);
	ck_assert_uint_eq(v.n, n);
	ck_assert_str_eq(v.v[0], "u0@d.example");
	ck_assert_str_eq(v.v[n - 1], "u99999@d.example");
	strv_free(&v);

	/* One 1 MiB atom, deep comment nesting, a long quoted string. */
	buf_reset(&in);
	for (size_t i = 0; i < (1 << 20); i++)
		ck_assert_int_eq(buf_append(&in, "x", 1), 0);
	ck_assert_int_eq(buf_puts(&in, "@d.example, ok@d.example"), 0);
	r = rfc5322_parse_addrlist(in.data, in.len, &v);
	ck_assert_int_eq(r, 1);
	ck_assert_uint_eq(v.n, 1);
	ck_assert_str_eq(v.v[0], "ok@d.example");
	strv_free(&v);

	buf_reset(&in);
	for (size_t i = 0; i < 200000; i++)
		ck_assert_int_eq(buf_append(&in, "(", 1), 0);
	for (size_t i = 0; i < 200000; i++)
		ck_assert_int_eq(buf_append(&in, ")", 1), 0);
	ck_assert_int_eq(buf_puts(&in, " a@b.example"), 0);
	r = rfc5322_parse_addrlist(in.data, in.len, &v);
	ck_assert_int_eq(r, 0);
	ck_assert_uint_eq(v.n, 1);
	strv_free(&v);
	buf_free(&in);
}
END_TEST

static void check_locate(const char *in, const char *addr, const char *replaced)
{
	size_t s = 0, e = 0, len = strlen(in);
	char *a = NULL;
	int r = rfc5322_locate_mailbox(in, len, &a, &s, &e);

	if (!addr) {
		ck_assert_msg(r == 0, "[%s] should not be a single mailbox", in);
		ck_assert_ptr_null(a);
		return;
	}
	ck_assert_msg(r == 1, "[%s] should be a single mailbox", in);
	ck_assert_str_eq(a, addr);
	ck_assert_uint_le(s, e);
	ck_assert_uint_le(e, len);
	{
		char out[256];

		snprintf(out, sizeof(out), "%.*sNEW%s", (int)s, in, in + e);
		ck_assert_str_eq(out, replaced);
	}
	free(a);
}

START_TEST(test_locate_mailbox)
{
	check_locate("Root User <root>", "root", "Root User <NEW>");
	check_locate(" root (Cron Daemon)", "root", " NEW (Cron Daemon)");
	check_locate("  root@localhost  ", "root@localhost", "  NEW  ");
	check_locate("\"Q, N\" <@r.example:x@y.example>", "x@y.example", "\"Q, N\" <NEW>");
	check_locate("a@b.example, ", "a@b.example", "NEW, ");
	check_locate("a@b.example, c@d.example", NULL, NULL);
	check_locate("G: a@b.example;", NULL, NULL);
	check_locate("undisclosed-recipients:;", NULL, NULL);
	check_locate("garbage words", NULL, NULL);
	check_locate("a@b.example, garbage words", NULL, NULL);
	check_locate("", NULL, NULL);
}
END_TEST

START_TEST(test_unfold)
{
	char s[] = "a,\r\n b,\r\n\tc\n d";
	size_t n = rfc5322_unfold(s, strlen(s));

	ck_assert_uint_eq(n, 9);
	ck_assert_int_eq(memcmp(s, "a, b,\tc d", 9), 0);
}
END_TEST

static void check_date(const char *tz, time_t t, const char *want)
{
	char out[RFC5322_DATE_MAX];

	ck_assert_int_eq(setenv("TZ", tz, 1), 0);
	tzset();
	ck_assert_int_eq(rfc5322_date(t, out, sizeof(out)), 0);
	ck_assert_str_eq(out, want);
}

START_TEST(test_date)
{
	char small[10];

	check_date("UTC0", 1795345739, "Sun, 22 Nov 2026 11:08:59 +0000");
	check_date("XYZ-5:30", 1795345739, "Sun, 22 Nov 2026 16:38:59 +0530");
	check_date("ABC+3", 1795345739, "Sun, 22 Nov 2026 08:08:59 -0300");
	check_date("UTC0", 0, "Thu, 01 Jan 1970 00:00:00 +0000");
	check_date("UTC0", 1772323200, "Sun, 01 Mar 2026 00:00:00 +0000");
	ck_assert_int_eq(rfc5322_date(0, small, sizeof(small)), -1);
	ck_assert_int_eq(setenv("TZ", "UTC0", 1), 0);
	tzset();
}
END_TEST

static Suite *rfc5322_suite(void)
{
	Suite *s = suite_create("rfc5322");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_plain_forms);
	tcase_add_test(tc, test_comments);
	tcase_add_test(tc, test_groups);
	tcase_add_test(tc, test_routes_quoted_bare);
	tcase_add_test(tc, test_folding_empty_members);
	tcase_add_test(tc, test_garbage);
	tcase_add_test(tc, test_unterminated);
	tcase_add_test(tc, test_no_read_past_len);
	tcase_add_test(tc, test_nul_in_middle);
	tcase_add_test(tc, test_very_long);
	tcase_add_test(tc, test_locate_mailbox);
	tcase_add_test(tc, test_unfold);
	tcase_add_test(tc, test_date);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ckrun(rfc5322_suite());
}
