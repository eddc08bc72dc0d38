#include "config.h"
#include "lib/buf.h"
#include "lib/msg.h"
#include "tests/ckrun.h"

#include <check.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NOW ((time_t)1795345739)	/* Sun, 22 Nov 2026 11:08:59 UTC */
#define DATE_HDR "Date: Sun, 22 Nov 2026 11:08:59 +0000\r\n"
#define MSGID_HDR "Message-ID: <20261122110859.4ABC123@vm1.example.com>\r\n"
#define FROM_HDR "From: alice@vm1.example.com\r\n"
#define ADDED DATE_HDR MSGID_HDR FROM_HDR

struct sink {
	struct buf b;
	int calls;
	int fail_at;		/* out() call number that fails; 0 = never */
};

static int sink_out(void *ctx, const char *data, size_t len)
{
	struct sink *s = ctx;

	s->calls++;
	if (s->fail_at && s->calls >= s->fail_at)
		return -1;
	return buf_append(&s->b, data, len);
}

static struct msg_params params(struct sink *s)
{
	struct msg_params p = {
		.from_stdin = true,
		.hostname = "vm1.example.com",
		.queue_id = "4ABC123",
		.from_addr = "alice@vm1.example.com",
		.now = NOW,
		.out = sink_out,
		.out_ctx = s,
	};

	buf_init(&s->b, 1 << 26);
	s->calls = 0;
	s->fail_at = 0;
	return p;
}

/* Feed len bytes in chunks of step (0: all at once) and finish. */
static struct msg *feed(const struct msg_params *p, const char *in, size_t len, size_t step)
{
	struct msg *m = msg_new(p);
	size_t i = 0;

	ck_assert_ptr_nonnull(m);
	if (step == 0)
		step = len ? len : 1;
	while (i < len) {
		size_t n = len - i < step ? len - i : step;

		ck_assert_int_eq(msg_input(m, in + i, n), 0);
		i += n;
	}
	ck_assert_int_eq(msg_finish(m), 0);
	return m;
}

/* Run the filter over a C string and return the output (caller frees). */
static char *filter(struct msg_params *p, const char *in)
{
	struct sink *s = p->out_ctx;

	msg_free(feed(p, in, strlen(in), 0));
	return buf_steal(&s->b);
}

static void check_out(struct msg_params *p, const char *in, const char *want)
{
	char *got = filter(p, in);

	ck_assert_msg(strcmp(got, want) == 0, "input [%s]:\ngot  [%s]\nwant [%s]", in, got, want);
	free(got);
}

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

START_TEST(test_line_ends)
{
	struct sink s;
	struct msg_params p = params(&s);

	check_out(&p, "Subject: x\n\nbody\nline2\n", "Subject: x\r\n\r\nbody\r\nline2\r\n");
	check_out(&p, "Subject: x\r\rbody\r", "Subject: x\r\n\r\nbody\r\n");
	check_out(&p, "Subject: x\r\n\r\nbody\r\n", "Subject: x\r\n\r\nbody\r\n");
	check_out(&p, "Subject: x\n\na\r\r\nb\n\rc", "Subject: x\r\n\r\na\r\n\r\nb\r\n\r\nc\r\n");
	check_out(&p, "Subject: x\n\nno final newline", "Subject: x\r\n\r\nno final newline\r\n");
	/* The SMTP path: CRLF kept, stray bare CR/LF still made CRLF. */
	p.from_stdin = false;
	check_out(&p, "Subject: x\r\n\r\nbody\r\n", "Subject: x\r\n\r\nbody\r\n");
	check_out(&p, "Subject: x\r\n\r\na\nb\rc\r\n", "Subject: x\r\n\r\na\r\nb\r\nc\r\n");
}
END_TEST

static const char *const equiv_inputs[] = {
	"",
	"\r",
	"\n",
	".",
	".\r",
	".\r\n",
	"Subject: x\r\n\r\nbody\r\n",
	"Subject: x\n\nbody\n.\nafter\n",
	"Subject: x\r\rbody\r.\rafter",
	"To: a@x.example,\r\n b@x.example\r\nBcc: c@x.example,\n\td@x.example\nSubject: s\n\n..\n. \nx.\n.",
	"From user@host Mon Jan  1 00:00:00 2026\nFrom: root\nResent-To: r@x.example\n\n\r\n\r\r\n",
	"not a header\nSubject: s\n",
	" leading space\n",
	"Subject: x\nTo: a@x.example",
	"Subject: x\n.\nbody\n",
	"Subject: x\n\n\xc3\xa9t\xc3\xa9\r\n.\r\n",
	"Subject : obsolete\r\nFROM: Root <root>\r\n\r\n.x\r\n..\r\n.",
	"X: \r\n\r\n\r\n.\n",
	"Subject: x\n\nline\r",
};

/* Output, lone-dot end and recipients of one run, for comparison. */
static char *run_summary(struct msg_params *p, const char *in, size_t step)
{
	struct sink *s = p->out_ctx;
	struct msg *m = feed(p, in, strlen(in), step);
	size_t n;
	char **r = msg_rcpts(m, &n);

	ck_assert_int_eq(buf_printf(&s->b, "|dot=%d|8bit=%d|", msg_ended_by_dot(m),
	    msg_eightbit(m)), 0);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(buf_printf(&s->b, "%s,", r[i]), 0);
	msg_free(m);
	return buf_steal(&s->b);
}

START_TEST(test_chunk_equivalence)
{
	static const size_t steps[] = { 1, 2, 3, 5, 7, 13 };

	for (unsigned mode = 0; mode < 8; mode++) {
		struct sink s;
		struct msg_params p = params(&s);

		p.dot_ends = mode & 1;
		p.extract_rcpts = mode & 2;
		p.add_missing = mode & 4;
		p.rewrite_from = mode == 6 ? "ops@example.com" : NULL;
		for (size_t i = 0; i < sizeof(equiv_inputs) / sizeof(equiv_inputs[0]); i++) {
			char *whole = run_summary(&p, equiv_inputs[i], 0);

			for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
				char *part = run_summary(&p, equiv_inputs[i], steps[k]);

				ck_assert_msg(strcmp(whole, part) == 0,
				    "mode %u input %zu step %zu:\n[%s]\n[%s]", mode, i, steps[k],
				    whole, part);
				free(part);
			}
			free(whole);
		}
	}
}
END_TEST

/* Every line end in the output is CRLF: no bare CR or LF survives. */
START_TEST(test_output_crlf_only)
{
	for (size_t i = 0; i < sizeof(equiv_inputs) / sizeof(equiv_inputs[0]); i++) {
		struct sink s;
		struct msg_params p = params(&s);
		char *out;

		p.add_missing = true;
		out = filter(&p, equiv_inputs[i]);
		for (size_t k = 0; out[k]; k++) {
			if (out[k] == '\r')
				ck_assert_msg(out[k + 1] == '\n', "input %zu: bare CR", i);
			if (out[k] == '\n')
				ck_assert_msg(k > 0 && out[k - 1] == '\r', "input %zu: bare LF", i);
		}
		free(out);
	}
}
END_TEST

START_TEST(test_dot_rule)
{
	struct sink s;
	struct msg_params p = params(&s);
	struct msg *m;
	char *out;

	p.dot_ends = true;
	check_out(&p, "Subject: x\n\nline\n.\nafter\n", "Subject: x\r\n\r\nline\r\n");
	check_out(&p, "Subject: x\r\n\r\nline\r\n.\r\nafter\r\n", "Subject: x\r\n\r\nline\r\n");
	check_out(&p, "Subject: x\n\nline\n.", "Subject: x\r\n\r\nline\r\n");
	check_out(&p, "Subject: x\n\n..\n. \nx.\n.x\n", "Subject: x\r\n\r\n..\r\n. \r\nx.\r\n.x\r\n");
	/* In the header section it ends input too; no empty line is added. */
	check_out(&p, "Subject: x\n.\nbody\n", "Subject: x\r\n");
	check_out(&p, ".\nbody\n", "");

	m = feed(&p, "Subject: x\n\nline\n.\nafter\n", 25, 0);
	ck_assert(msg_ended_by_dot(m));
	msg_free(m);
	out = buf_steal(&s.b);
	free(out);
	m = feed(&p, "Subject: x\n\n..\n", 15, 0);
	ck_assert(!msg_ended_by_dot(m));
	msg_free(m);
	out = buf_steal(&s.b);
	free(out);

	/* Without dot_ends (-i), or on the SMTP path, a dot is just a line. */
	p.dot_ends = false;
	check_out(&p, "Subject: x\n\nline\n.\nafter\n.", "Subject: x\r\n\r\nline\r\n.\r\nafter\r\n.\r\n");
	p.dot_ends = true;
	p.from_stdin = false;
	check_out(&p, "Subject: x\r\n\r\n.\r\nafter\r\n", "Subject: x\r\n\r\n.\r\nafter\r\n");
}
END_TEST

static char *rcpts_of(struct msg *m)
{
	struct buf b;
	size_t n;
	char **r = msg_rcpts(m, &n);

	buf_init(&b, 1 << 20);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(buf_printf(&b, "%s%s", i ? "|" : "", r[i]), 0);
	return buf_steal(&b);
}

static void check_extract(const char *in, const char *out_want, const char *rcpts_want,
    size_t skipped_want)
{
	struct sink s;
	struct msg_params p = params(&s);
	struct msg *m;
	char *out, *r;

	p.extract_rcpts = true;
	m = feed(&p, in, strlen(in), 0);
	out = buf_steal(&s.b);
	r = rcpts_of(m);
	if (out_want)
		ck_assert_msg(strcmp(out, out_want) == 0, "got [%s] want [%s]", out, out_want);
	ck_assert_msg(strcmp(r, rcpts_want) == 0, "rcpts [%s] want [%s]", r, rcpts_want);
	ck_assert_uint_eq(msg_rcpts_skipped(m), skipped_want);
	free(out);
	free(r);
	msg_free(m);
}

START_TEST(test_bcc_removed_and_extracted)
{
	struct sink s;
	struct msg_params p = params(&s);

	check_extract("To: a@x.example\nBcc: b@x.example,\n c@x.example\n\t(Carol)\nSubject: s\n\nbody\n",
	    "To: a@x.example\r\nSubject: s\r\n\r\nbody\r\n", "a@x.example|b@x.example|c@x.example", 0);
	check_extract("BCC: b@x.example\nbcc :c@x.example\nSubject: s\n\n",
	    "Subject: s\r\n\r\n", "b@x.example|c@x.example", 0);
	/* Bcc goes even without -t, and a Bcc as the last header too. */
	check_out(&p, "Subject: s\nBcc: secret@x.example,\n more@x.example", "Subject: s\r\n");
	check_out(&p, "Resent-Bcc: secret@x.example\nX: y\n\nBcc: in body\n",
	    "X: y\r\n\r\nBcc: in body\r\n");
}
END_TEST

START_TEST(test_resent_precedence)
{
	check_extract("To: a@x.example\nCc: b@x.example\nResent-To: r@x.example\n"
	    "Resent-Cc: s@x.example\nResent-Bcc: t@x.example\n\n",
	    "To: a@x.example\r\nCc: b@x.example\r\nResent-To: r@x.example\r\n"
	    "Resent-Cc: s@x.example\r\n\r\n", "r@x.example|s@x.example|t@x.example", 0);
	/* Resent- headers decide even when they come after To:, and even when
	 * none of them names a recipient. */
	check_extract("To: a@x.example\nRESENT-FROM: me@x.example\n\n", NULL, "", 0);
	check_extract("To: a@x.example\nCc: b@x.example\n\n", NULL, "a@x.example|b@x.example", 0);
}
END_TEST

START_TEST(test_to_group_comments_dedup)
{
	check_extract("To: Team: a@x.example (A), \"B, Bee\" <b@x.example>;, c@x.example (C)\n"
	    "Cc: a@X.Example, A@x.example, undisclosed-recipients:;\n\n",
	    NULL, "a@x.example|b@x.example|c@x.example|A@x.example", 0);
	check_extract("To: a@x.example, John Smith, <>\nCc: root\n\n", NULL, "a@x.example|root", 2);
	check_extract("To: a@x.example,\r\n b@x.example\r\nTo: (c) c@x.example,\r\n\t\"d e\"@x.example\r\n\r\n",
	    NULL, "a@x.example|b@x.example|c@x.example|\"d e\"@x.example", 0);
	check_extract("To : obsolete@x.example\n\n", NULL, "obsolete@x.example", 0);
	/* Without -t nothing is collected. */
	{
		struct sink s;
		struct msg_params p = params(&s);
		struct msg *m = feed(&p, "To: a@x.example\n\n", 17, 0);
		size_t n = 99;

		ck_assert_ptr_null(msg_rcpts(m, &n));
		ck_assert_uint_eq(n, 0);
		msg_free(m);
		buf_free(&s.b);
	}
}
END_TEST

START_TEST(test_missing_headers_added)
{
	struct sink s;
	struct msg_params p = params(&s);
	char *out;

	p.add_missing = true;
	check_out(&p, "Subject: s\n\nbody\n", "Subject: s\r\n" ADDED "\r\nbody\r\n");
	/* Present headers (any case, obsolete spacing) are not added again. */
	check_out(&p, "DATE: Mon, 1 Jan 2026 00:00:00 +0000\nmessage-id: <y@x>\nFROM: z@x.example\n\nb\n",
	    "DATE: Mon, 1 Jan 2026 00:00:00 +0000\r\nmessage-id: <y@x>\r\nFROM: z@x.example\r\n\r\nb\r\n");
	check_out(&p, "From : z@x.example\n\n", "From : z@x.example\r\n" DATE_HDR MSGID_HDR "\r\n");
	out = filter(&p, "Date: x\nSubject: s\nDate: y\n\nDate: in body\nFrom: in body\n");
	ck_assert_uint_eq(count(out, "Date:"), 3);
	ck_assert_uint_eq(count(out, "Message-ID:"), 1);
	ck_assert_uint_eq(count(out, "From:"), 2);
	ck_assert_ptr_nonnull(strstr(out, FROM_HDR "\r\nDate: in body"));
	free(out);
	/* Resent- headers do not count as Date/From. */
	out = filter(&p, "Resent-Date: x\nResent-From: y@x.example\n\n");
	ck_assert_uint_eq(count(out, "\nDate:"), 1);
	ck_assert_uint_eq(count(out, "\nFrom:"), 1);
	free(out);
	/* Off: nothing is added. */
	p.add_missing = false;
	check_out(&p, "Subject: s\n\nbody\n", "Subject: s\r\n\r\nbody\r\n");
}
END_TEST

START_TEST(test_message_id_format)
{
	struct sink s;
	struct msg_params p = params(&s);
	char *out;
	const char *id;

	p.add_missing = true;
	p.hostname = "host.example.org";
	p.queue_id = "7F3A2B91C";
	p.now = 1772323200;	/* 2026-03-01 00:00:00 UTC */
	out = filter(&p, "");
	ck_assert_ptr_nonnull((id = strstr(out, "Message-ID: <")));
	ck_assert_int_eq(strncmp(id, "Message-ID: <20260301000000.7F3A2B91C@host.example.org>\r\n", 57), 0);
	free(out);
	/* Without a queue id a process-unique one is made up. */
	p.queue_id = NULL;
	out = filter(&p, "");
	ck_assert_ptr_nonnull((id = strstr(out, "Message-ID: <20260301000000.")));
	ck_assert_ptr_nonnull(strstr(id, "@host.example.org>\r\n"));
	free(out);
}
END_TEST

static void check_from(const char *full_name, const char *from_addr, const char *want)
{
	struct sink s;
	struct msg_params p = params(&s);
	char *out;

	p.add_missing = true;
	p.full_name = full_name;
	p.from_addr = from_addr;
	out = filter(&p, "Subject: s\n\n");
	ck_assert_msg(strstr(out, want) != NULL, "want [%s] in [%s]", want, out);
	ck_assert_uint_eq(count(out, "\r\n"), 5);	/* no injected line */
	free(out);
}

START_TEST(test_generated_from)
{
	check_from(NULL, "alice@vm1.example.com", "\r\nFrom: alice@vm1.example.com\r\n");
	check_from("", "alice@vm1.example.com", "\r\nFrom: alice@vm1.example.com\r\n");
	check_from("   ", "alice@vm1.example.com", "\r\nFrom: alice@vm1.example.com\r\n");
	check_from("CronDaemon", "root@vm1.example.com", "\r\nFrom: CronDaemon <root@vm1.example.com>\r\n");
	check_from("Cron Daemon", "root@vm1.example.com", "\r\nFrom: Cron Daemon <root@vm1.example.com>\r\n");
	check_from("Smith, John", "js@x.example", "\r\nFrom: \"Smith, John\" <js@x.example>\r\n");
	check_from("John Q. Public", "jqp@x.example", "\r\nFrom: \"John Q. Public\" <jqp@x.example>\r\n");
	check_from("Say \"hi\" \\o/", "a@x.example", "\r\nFrom: \"Say \\\"hi\\\" \\\\o/\" <a@x.example>\r\n");
	check_from("Jos\xc3\xa9", "jose@x.example", "\r\nFrom: =?utf-8?B?Sm9zw6k=?= <jose@x.example>\r\n");
	check_from("Evil\r\nBcc: victim@x.example", "a@x.example",
	    "\r\nFrom: \"Evil  Bcc: victim@x.example\" <a@x.example>\r\n");
	/* A bare sender is qualified with the hostname; no sender is MAILER-DAEMON. */
	check_from(NULL, "bob", "\r\nFrom: bob@vm1.example.com\r\n");
	check_from(NULL, "", "\r\nFrom: MAILER-DAEMON@vm1.example.com\r\n");
}
END_TEST

START_TEST(test_generated_from_long_utf8)
{
	struct sink s;
	struct msg_params p = params(&s);
	struct buf name;
	char *out, *line, *end;

	/* 40 x "é" (80 bytes): two encoded-words of 22 and 18 characters, as a
	 * 45-byte cut would split a UTF-8 sequence; none over 75 characters. */
	buf_init(&name, 1024);
	for (int i = 0; i < 40; i++)
		ck_assert_int_eq(buf_puts(&name, "\xc3\xa9"), 0);
	p.add_missing = true;
	p.full_name = name.data;
	out = filter(&p, "");
	line = strstr(out, "From: ");
	ck_assert_ptr_nonnull(line);
	end = strstr(line, "\r\n");
	*end = '\0';
	ck_assert_str_eq(line, "From: "
	    "=?utf-8?B?w6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6k=?= "
	    "=?utf-8?B?w6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOp?= "
	    "<alice@vm1.example.com>");
	free(out);
	buf_free(&name);
}
END_TEST

START_TEST(test_rewrite_from)
{
	struct sink s;
	struct msg_params p = params(&s);

	p.rewrite_from = "ops@example.com";
	check_out(&p, "From: Root User <root>\n\n", "From: Root User <ops@example.com>\r\n\r\n");
	check_out(&p, "From: root@localhost (Cron Daemon)\n\n", "From: ops@example.com (Cron Daemon)\r\n\r\n");
	check_out(&p, "FROM:root@VM1.example.com\n\n", "FROM:ops@example.com\r\n\r\n");
	check_out(&p, "From: \"Root, Admin\"\n <root@localhost.localdomain>\n\n",
	    "From: \"Root, Admin\" <ops@example.com>\r\n\r\n");
	/* Not local, not a single mailbox, or garbage: left alone. */
	check_out(&p, "From: Bob <bob@other.example>\n\n", "From: Bob <bob@other.example>\r\n\r\n");
	check_out(&p, "From: root, bob@other.example\n\n", "From: root, bob@other.example\r\n\r\n");
	check_out(&p, "From: some words\n\n", "From: some words\r\n\r\n");
	/* Only From:, not Sender: or Reply-To:. */
	check_out(&p, "Reply-To: root\nSender: root\n\n", "Reply-To: root\r\nSender: root\r\n\r\n");
	/* Off: a local From: stays. */
	p.rewrite_from = NULL;
	check_out(&p, "From: root\n\n", "From: root\r\n\r\n");
}
END_TEST

START_TEST(test_non_header_line)
{
	struct sink s;
	struct msg_params p = params(&s);

	check_out(&p, "Subject: s\nnot a header\nmore\n", "Subject: s\r\n\r\nnot a header\r\nmore\r\n");
	check_out(&p, "hello world\nSubject: x\n", "\r\nhello world\r\nSubject: x\r\n");
	check_out(&p, " leading space\n", "\r\n leading space\r\n");
	check_out(&p, "Subject: s\n continued\n\tagain\nX: y\n\nb\n",
	    "Subject: s\r\n continued\r\n\tagain\r\nX: y\r\n\r\nb\r\n");
	check_out(&p, "Bad Name: x\n", "\r\nBad Name: x\r\n");
	check_out(&p, ":no name\n", "\r\n:no name\r\n");
	p.add_missing = true;
	check_out(&p, "plain text\n", ADDED "\r\nplain text\r\n");
}
END_TEST

START_TEST(test_mbox_from_line)
{
	struct sink s;
	struct msg_params p = params(&s);

	check_out(&p, "From user@host Mon Jan  1 00:00:00 2026\nFrom user2 x\nSubject: s\n\nFrom here\n",
	    "Subject: s\r\n\r\nFrom here\r\n");
	check_out(&p, "Subject: s\nFrom user@host x\n", "Subject: s\r\n\r\nFrom user@host x\r\n");
	p.from_stdin = false;
	check_out(&p, "From user@host x\r\nSubject: s\r\n", "\r\nFrom user@host x\r\nSubject: s\r\n");
}
END_TEST

START_TEST(test_headers_only_and_empty)
{
	struct sink s;
	struct msg_params p = params(&s);

	check_out(&p, "Subject: s\nTo: a@b.example", "Subject: s\r\nTo: a@b.example\r\n");
	check_out(&p, "Subject: s\nTo: a@b.example\n", "Subject: s\r\nTo: a@b.example\r\n");
	check_out(&p, "", "");
	p.add_missing = true;
	check_out(&p, "Subject: s\n", "Subject: s\r\n" ADDED);
	check_out(&p, "", ADDED);
	check_out(&p, "\n", ADDED "\r\n");
	p.prepend = "Received: from localhost by vm1.example.com;\r\n\tSun, 22 Nov 2026\r\n";
	check_out(&p, "", "Received: from localhost by vm1.example.com;\r\n\tSun, 22 Nov 2026\r\n" ADDED);
	check_out(&p, "Subject: s\n\nb",
	    "Received: from localhost by vm1.example.com;\r\n\tSun, 22 Nov 2026\r\nSubject: s\r\n"
	    ADDED "\r\nb\r\n");
}
END_TEST

START_TEST(test_max_size)
{
	struct sink s;
	struct msg_params p = params(&s);
	static const char in[] = "Subject: s\n\n0123456789\n";	/* 26 bytes out */
	struct msg *m;
	char *out;

	p.max_size = 26;
	out = filter(&p, in);
	ck_assert_uint_eq(strlen(out), 26);
	free(out);

	p.max_size = 25;
	s.calls = 0;
	m = msg_new(&p);
	ck_assert_int_eq(msg_input(m, in, sizeof(in) - 1), -1);
	ck_assert_int_eq(msg_error(m), MSG_TOO_BIG);
	ck_assert_int_eq(msg_input(m, "x", 1), -1);
	ck_assert_int_eq(msg_finish(m), -1);
	ck_assert_int_eq(s.calls, 0);		/* nothing was passed on */
	msg_free(m);
	buf_free(&s.b);

	/* Streaming: the error comes while input is still arriving, and out()
	 * never receives more than max_size bytes. */
	p.max_size = 200000;
	m = msg_new(&p);
	ck_assert_int_eq(msg_input(m, "Subject: s\n\n", 12), 0);
	{
		char chunk[1000];
		int rc = 0;

		memset(chunk, 'a', sizeof(chunk));
		for (int i = 0; i < 1000 && rc == 0; i++)
			rc = msg_input(m, chunk, sizeof(chunk));
		ck_assert_int_eq(rc, -1);
	}
	ck_assert_int_eq(msg_error(m), MSG_TOO_BIG);
	ck_assert_uint_le(s.b.len, 200000);
	msg_free(m);
	buf_free(&s.b);

	/* The prepend and added headers count too. */
	p.max_size = 10;
	p.prepend = "Received: by x\r\n";
	m = msg_new(&p);
	ck_assert_int_eq(msg_input(m, "", 0), -1);
	ck_assert_int_eq(msg_error(m), MSG_TOO_BIG);
	msg_free(m);
	buf_free(&s.b);
}
END_TEST

START_TEST(test_output_error)
{
	struct sink s;
	struct msg_params p = params(&s);
	struct msg *m;
	char big[100000];

	memset(big, 'b', sizeof(big));
	s.fail_at = 1;
	m = msg_new(&p);
	ck_assert_int_eq(msg_input(m, "Subject: s\n\n", 12), 0);
	ck_assert_int_eq(msg_input(m, big, sizeof(big)), -1);
	ck_assert_int_eq(msg_error(m), MSG_OUTPUT);
	ck_assert_int_eq(msg_input(m, big, sizeof(big)), -1);
	ck_assert_int_eq(msg_finish(m), -1);
	ck_assert_int_eq(s.calls, 1);
	ck_assert_str_ne(msg_strerror(MSG_OUTPUT), "");
	msg_free(m);
	buf_free(&s.b);

	/* No sink, no filter. */
	p.out = NULL;
	errno = 0;
	ck_assert_ptr_null(msg_new(&p));
	ck_assert_int_eq(errno, EINVAL);
}
END_TEST

START_TEST(test_eightbit)
{
	struct sink s;
	struct msg_params p = params(&s);
	static const char in[] = "Subject: =?utf-8?q?x?=\n\nGr\xc3\xbc\xc3\x9f" "e \xe2\x80\x93 \xe2\x9c\x93\n"
	    "\xff\xfe raw\x00nul\n";
	struct msg *m;
	char *out;

	m = feed(&p, in, sizeof(in) - 1, 0);
	ck_assert(msg_eightbit(m));
	ck_assert_uint_eq(s.b.len, sizeof(in) - 1 + 4);	/* 4 LF became CRLF */
	ck_assert_int_eq(memcmp(s.b.data, "Subject: =?utf-8?q?x?=\r\n\r\nGr\xc3\xbc\xc3\x9f"
	    "e \xe2\x80\x93 \xe2\x9c\x93\r\n\xff\xfe raw\x00nul\r\n", s.b.len), 0);
	msg_free(m);
	buf_free(&s.b);

	m = feed(&p, "Subject: s\n\nplain ascii\n", 24, 0);
	ck_assert(!msg_eightbit(m));
	msg_free(m);
	buf_free(&s.b);

	/* Bytes after the lone dot are not part of the message. */
	p.dot_ends = true;
	m = feed(&p, "Subject: s\n\n.\n\xc3\xa9\n", 17, 0);
	ck_assert(!msg_eightbit(m));
	msg_free(m);
	out = buf_steal(&s.b);
	ck_assert_str_eq(out, "Subject: s\r\n\r\n");
	free(out);
}
END_TEST

START_TEST(test_header_limit)
{
	struct sink s;
	struct msg_params p = params(&s);
	struct msg *m;
	char *chunk = malloc(65536);
	int rc = 0;

	ck_assert_ptr_nonnull(chunk);
	memset(chunk, 'h', 65536);
	/* A header field larger than the limit is refused, Bcc can't slip through. */
	m = msg_new(&p);
	ck_assert_int_eq(msg_input(m, "X-Long: ", 8), 0);
	for (int i = 0; i < 32 && rc == 0; i++)
		rc = msg_input(m, chunk, 65536);
	ck_assert_int_eq(rc, -1);
	ck_assert_int_eq(msg_error(m), MSG_BAD_HEADER);
	ck_assert_uint_eq(s.b.len, 0);
	msg_free(m);
	buf_free(&s.b);

	/* Many small fields adding up past the limit too. */
	m = msg_new(&p);
	rc = 0;
	for (int i = 0; i < 100000 && rc == 0; i++)
		rc = msg_input(m, "X-Field: some value here\n", 25);
	ck_assert_int_eq(rc, -1);
	ck_assert_int_eq(msg_error(m), MSG_BAD_HEADER);
	msg_free(m);
	buf_free(&s.b);

	/* A huge first line that is no header is simply the body. */
	m = msg_new(&p);
	rc = 0;
	for (int i = 0; i < 32 && rc == 0; i++)
		rc = msg_input(m, chunk, 65536);
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(msg_input(m, "\nnext\n", 6), 0);
	ck_assert_int_eq(msg_finish(m), 0);
	ck_assert_uint_eq(s.b.len, 2 + 32 * 65536 + 2 + 6);
	ck_assert_int_eq(memcmp(s.b.data, "\r\nhhh", 5), 0);
	ck_assert_int_eq(memcmp(s.b.data + s.b.len - 9, "h\r\nnext\r\n", 9), 0);
	msg_free(m);
	buf_free(&s.b);
	free(chunk);
}
END_TEST

/* Counts and checks the output without keeping it. */
struct stream_sink {
	size_t bytes, calls, lines;
	bool bad;
};

static int stream_out(void *ctx, const char *data, size_t len)
{
	struct stream_sink *s = ctx;

	s->calls++;
	s->bytes += len;
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\n')
			s->lines++;
		else if (data[i] != '\r' && data[i] != 'x' && (data[i] < 'A' || data[i] > 'Z') &&
		    strchr(":-. 0123456789abcdefghijklmnopqrstuvwyz<>@,+", data[i]) == NULL)
			s->bad = true;
	}
	return 0;
}

START_TEST(test_large_body_streamed)
{
	struct stream_sink ss = { 0 };
	struct msg_params p = {
		.from_stdin = true, .dot_ends = true, .add_missing = true,
		.hostname = "vm1.example.com", .queue_id = "Q1", .from_addr = "a@b.example",
		.now = NOW, .out = stream_out, .out_ctx = &ss,
	};
	const size_t total = 10u << 20, linelen = 100;
	char chunk[65536 + 7];
	struct msg *m = msg_new(&p);
	size_t fed = 0;
	struct mallinfo2 before, during;

	/* Lines of 99 'x' and LF; the chunk size (not a multiple of 100) puts
	 * chunk boundaries everywhere within lines. */
	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = (i % linelen) == linelen - 1 ? '\n' : 'x';
	ck_assert_int_eq(msg_input(m, "Subject: big\n\n", 14), 0);
	before = mallinfo2();
	while (fed < total) {
		size_t off = fed % linelen, n = sizeof(chunk) - linelen;

		ck_assert_int_eq(msg_input(m, chunk + off, n), 0);
		fed += n;
	}
	during = mallinfo2();
	/* Streamed: nearly everything went out before the end of input, and
	 * the heap did not grow with the body. */
	ck_assert_uint_ge(ss.bytes, fed - 65536);
	ck_assert_uint_gt(ss.calls, 100);
	ck_assert_uint_lt(during.uordblks, before.uordblks + 256 * 1024);
	ck_assert_int_eq(msg_finish(m), 0);
	ck_assert(!ss.bad);
	ck_assert_uint_eq(msg_size(m), ss.bytes);
	ck_assert_uint_ge(ss.lines, fed / linelen);
	msg_free(m);
}
END_TEST

static Suite *msg_suite(void)
{
	Suite *s = suite_create("msg");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_line_ends);
	tcase_add_test(tc, test_chunk_equivalence);
	tcase_add_test(tc, test_output_crlf_only);
	tcase_add_test(tc, test_dot_rule);
	tcase_add_test(tc, test_bcc_removed_and_extracted);
	tcase_add_test(tc, test_resent_precedence);
	tcase_add_test(tc, test_to_group_comments_dedup);
	tcase_add_test(tc, test_missing_headers_added);
	tcase_add_test(tc, test_message_id_format);
	tcase_add_test(tc, test_generated_from);
	tcase_add_test(tc, test_generated_from_long_utf8);
	tcase_add_test(tc, test_rewrite_from);
	tcase_add_test(tc, test_non_header_line);
	tcase_add_test(tc, test_mbox_from_line);
	tcase_add_test(tc, test_headers_only_and_empty);
	tcase_add_test(tc, test_max_size);
	tcase_add_test(tc, test_output_error);
	tcase_add_test(tc, test_eightbit);
	tcase_add_test(tc, test_header_limit);
	tcase_add_test(tc, test_large_body_streamed);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	/* Date: uses the local zone; make it fixed. */
	setenv("TZ", "UTC0", 1);
	tzset();
	return ckrun(msg_suite());
}
