#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/qualify.h"
#include "tests/ckrun.h"

/* Field bodies as they follow the colon, folding included. */
static const struct {
	const char *in, *out;
	int count;
} cases[] = {
	{ " root", " root@h.example", 1 },
	{ " root\r\n", " root@h.example\r\n", 1 },
	{ " root (Cron Daemon)", " root@h.example (Cron Daemon)", 1 },
	{ " Cron Daemon <root>", " Cron Daemon <root@h.example>", 1 },
	{ " \"Doe, John\" <jdoe>", " \"Doe, John\" <jdoe@h.example>", 1 },
	{ " < root >", " < root@h.example >", 1 },
	{ " <@relay.example:root>", " <@relay.example:root@h.example>", 1 },
	{ " root, ops@example.com,\r\n\tadmin (the admin)",
	  " root@h.example, ops@example.com,\r\n\tadmin@h.example (the admin)", 2 },
	{ " \"John Q.\"\r\n <jq>", " \"John Q.\"\r\n <jq@h.example>", 1 },
	{ " Team: alice, bob@example.com, carol;", " Team: alice@h.example, bob@example.com, carol@h.example;", 2 },
	{ " Team: alice;, dave", " Team: alice@h.example;, dave@h.example", 2 },
	{ " undisclosed-recipients:;", " undisclosed-recipients:;", 0 },
	{ " ops@example.com", " ops@example.com", 0 },
	{ " Ops <ops@example.com>", " Ops <ops@example.com>", 0 },
	{ " root@localhost", " root@localhost", 0 },
	{ " \"odd local\"", " \"odd local\"@h.example", 1 },
	{ " (only a comment) root", " (only a comment) root@h.example", 1 },
	{ " (a, b: c) root", " (a, b: c) root@h.example", 1 },
	{ " John Doe", " John Doe", 0 },	/* a phrase, not an address */
	{ " <root", " <root", 0 },		/* unterminated */
	{ " \"root", " \"root", 0 },
	{ " (root", " (root", 0 },
	{ " <>", " <>", 0 },
	{ "", "", 0 },
	{ " , ,", " , ,", 0 },
	{ " =?utf-8?q?J=C3=B6rg?= <joerg>", " =?utf-8?q?J=C3=B6rg?= <joerg@h.example>", 1 },
	{ " <root> (x), \"a>b\" <b>", " <root@h.example> (x), \"a>b\" <b@h.example>", 2 },
	{ " [1.2.3.4]", " [1.2.3.4]", 0 },
};

START_TEST(test_cases)
{
	struct buf b;
	int r;

	buf_init(&b, 4096);
	r = qualify_field_body(cases[_i].in, strlen(cases[_i].in), "h.example", &b);
	ck_assert_msg(r == cases[_i].count, "case %d %s: %d qualified", _i, cases[_i].in, r);
	ck_assert_uint_eq(b.len, strlen(cases[_i].out));
	ck_assert_msg(memcmp(b.data ? b.data : "", cases[_i].out, b.len) == 0,
	    "case %d: got [%.*s] want [%s]", _i, (int)b.len, b.data ? b.data : "", cases[_i].out);
	buf_free(&b);
}
END_TEST

START_TEST(test_wanted)
{
	static const char *const yes[] = { "From", "to", "CC", "Reply-To", "Sender",
	    "Resent-From", "resent-cc" };
	static const char *const no[] = { "Bcc", "Subject", "Message-ID", "Resent-Bcc", "Received",
	    "X-To", "Resent-" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		ck_assert_msg(qualify_field_wanted(yes[i], strlen(yes[i])), "%s", yes[i]);
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		ck_assert_msg(!qualify_field_wanted(no[i], strlen(no[i])), "%s", no[i]);
}
END_TEST

START_TEST(test_out_of_room)
{
	struct buf b;

	buf_init(&b, 8);
	ck_assert_int_eq(qualify_field_body(" root, admin", 12, "h.example", &b), -1);
	buf_free(&b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("qualify");
	TCase *tc = tcase_create("qualify");

	tcase_add_loop_test(tc, test_cases, 0, sizeof(cases) / sizeof(cases[0]));
	tcase_add_test(tc, test_wanted);
	tcase_add_test(tc, test_out_of_room);
	suite_add_tcase(s, tc);
	return ckrun(s);
}
