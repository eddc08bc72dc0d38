#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "smtp/reply.h"
#include "smtp/server.h"
#include "tests/ckrun.h"

#define HOST "relay.example.org"
#define GREETING "220 " HOST " ESMTP smtprelay\r\n"
#define EHLO_REPLY "250-" HOST "\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n" \
	"250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n"
#define QUEUED "250 2.0.0 Ok: queued as ABC123\r\n"

/* A sink that records every call and can be told to fail. */
struct fake {
	struct buf calls;		/* "rcpt(a) begin write commit abort " */
	struct buf env;			/* text form of the last envelope */
	struct buf content;		/* all content of the current message */
	struct buf done;		/* content of the last committed message */
	bool fail_rcpt, fail_begin, fail_write, fail_commit;
	bool async_commit;	/* commit answers later (returns 1) */
	int commits, aborts;
	bool open;
};

static struct fake fk;
static struct smtp_server *srv;
static struct buf got;

static int fake_rcpt(void *ctx, const char *rcpt, struct smtp_reply *fail)
{
	buf_printf(&fk.calls, "rcpt(%s) ", rcpt);
	if (!fk.fail_rcpt)
		return 0;
	smtp_reply_set(fail, 550, "5.1.1 <%s>: Recipient address rejected", rcpt);
	return -1;
}

static void fake_env(const struct smtp_envelope_in *env)
{
	buf_reset(&fk.env);
	buf_printf(&fk.env, "helo=%s from=<%s> to=", env->helo, env->sender);
	for (size_t i = 0; i < env->nrcpts; i++)
		buf_printf(&fk.env, "%s<%s>/%u/%s", i ? "," : "", env->rcpts[i], env->notify[i],
		    env->orcpts[i] ? env->orcpts[i] : "-");
	buf_printf(&fk.env, " 8bit=%d utf8=%d ret=%d envid=%s", env->eightbit, env->smtputf8,
	    env->ret, env->envid ? env->envid : "-");
}

static int fake_begin(void *ctx, const struct smtp_envelope_in *env, struct smtp_reply *fail)
{
	ck_assert(!fk.open);
	buf_puts(&fk.calls, "begin ");
	fake_env(env);
	if (fk.fail_begin) {
		smtp_reply_set(fail, 452, "4.3.1 Insufficient system storage");
		return -1;
	}
	fk.open = true;
	buf_reset(&fk.content);
	return 0;
}

static int fake_write(void *ctx, const char *data, size_t len, struct smtp_reply *fail)
{
	ck_assert(fk.open);
	ck_assert_uint_gt(len, 0);
	if (fk.calls.len < 6 || strcmp(fk.calls.data + fk.calls.len - 6, "write ") != 0)
		buf_puts(&fk.calls, "write ");
	if (fk.fail_write) {
		smtp_reply_set(fail, 452, "4.3.1 Insufficient system storage");
		return -1;
	}
	ck_assert_int_eq(buf_append(&fk.content, data, len), 0);
	return 0;
}

static int fake_commit(void *ctx, char *id, size_t idlen, struct smtp_reply *fail)
{
	ck_assert(fk.open);
	fk.open = false;
	buf_puts(&fk.calls, "commit ");
	if (fk.fail_commit) {
		smtp_reply_set(fail, 452, "4.3.1 Insufficient system storage");
		return -1;
	}
	fk.commits++;
	if (fk.async_commit)
		return 1;
	buf_reset(&fk.done);
	buf_append(&fk.done, fk.content.data, fk.content.len);
	snprintf(id, idlen, "ABC123");
	return 0;
}

static void fake_abort(void *ctx)
{
	ck_assert(fk.open);
	fk.open = false;
	fk.aborts++;
	buf_puts(&fk.calls, "abort ");
}

static const struct smtp_server_sink fake_sink = {
	fake_rcpt, fake_begin, fake_write, fake_commit, fake_abort,
};

static void start_with(bool allowed, size_t max_size, unsigned max_rcpts)
{
	struct smtp_server_params p = {
		.hostname = HOST, .peer_allowed = allowed, .max_message_size = max_size,
		.max_recipients = max_rcpts, .sink = &fake_sink, .sink_ctx = &fk,
	};

	memset(&fk, 0, sizeof(fk));
	buf_init(&fk.calls, 1 << 20);
	buf_init(&fk.env, 1 << 20);
	buf_init(&fk.content, 1 << 24);
	buf_init(&fk.done, 1 << 24);
	buf_init(&got, 1 << 24);
	srv = smtp_server_new(&p);
	ck_assert_ptr_nonnull(srv);
}

static void setup(void)
{
	start_with(true, 1000, 3);
}

static void teardown(void)
{
	smtp_server_free(srv);
	ck_assert(!fk.open);
	buf_free(&fk.calls);
	buf_free(&fk.env);
	buf_free(&fk.content);
	buf_free(&fk.done);
	buf_free(&got);
}

/* Everything the server wants to send, consumed; "" when nothing. */
static const char *drain(void)
{
	size_t len;
	const char *o = smtp_server_output(srv, &len);

	buf_reset(&got);
	ck_assert_int_eq(buf_append(&got, o, len), 0);
	smtp_server_consume_output(srv, len);
	if (got.len)
		ck_assert(got.len >= 2 && memcmp(got.data + got.len - 2, "\r\n", 2) == 0);
	return got.data ? got.data : "";
}

static const char *say(const char *in)
{
	ck_assert_int_eq(smtp_server_input(srv, in, strlen(in)), 0);
	return drain();
}

#define ck_say(in, out) ck_assert_str_eq(say(in), out)

static void ehlo(void)
{
	ck_assert_str_eq(drain(), GREETING);
	ck_say("EHLO client.example.com\r\n", EHLO_REPLY);
}

START_TEST(test_full_transaction)
{
	ehlo();
	ck_say("MAIL FROM:<alice@example.com>\r\n", "250 2.1.0 Ok\r\n");
	ck_say("RCPT TO:<bob@example.net>\r\n", "250 2.1.5 Ok\r\n");
	ck_say("DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n");
	ck_say("Subject: hi\r\n\r\nhello\r\n", "");
	ck_say("..dot\r\n.\r\n", QUEUED);
	ck_assert_str_eq(fk.done.data, "Subject: hi\r\n\r\nhello\r\n.dot\r\n");
	ck_assert_str_eq(fk.env.data, "helo=client.example.com from=<alice@example.com> "
	    "to=<bob@example.net>/0/- 8bit=0 utf8=0 ret=0 envid=-");
	ck_assert_str_eq(fk.calls.data, "rcpt(bob@example.net) begin write commit ");
	ck_assert(!smtp_server_closing(srv));
	/* Ready for the next transaction with the same EHLO. */
	ck_say("MAIL FROM:<alice@example.com>\r\n", "250 2.1.0 Ok\r\n");
	ck_say("QUIT\r\n", "221 2.0.0 Bye\r\n");
	ck_assert(smtp_server_closing(srv));
	ck_say("NOOP\r\n", "");
	ck_assert_int_eq(fk.aborts, 0);
}
END_TEST

static const char pipelined[] =
	"EHLO c\r\nMAIL FROM:<a@example.com> BODY=8BITMIME SIZE=100\r\n"
	"RCPT TO:<b@example.com>\r\nRCPT TO:<bad>@x>\r\nRCPT TO:<root>\r\nDATA\r\n"
	"line1\r\n.\r\nQUIT\r\nNOOP\r\n";
static const char pipelined_reply[] =
	GREETING EHLO_REPLY "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
	"501 5.1.3 Bad recipient address syntax\r\n250 2.1.5 Ok\r\n"
	"354 End data with <CR><LF>.<CR><LF>\r\n" QUEUED "221 2.0.0 Bye\r\n";

START_TEST(test_pipelined_one_chunk)
{
	ck_say(pipelined, pipelined_reply);
	ck_assert_str_eq(fk.done.data, "line1\r\n");
	ck_assert_str_eq(fk.env.data, "helo=c from=<a@example.com> to=<b@example.com>/0/-,"
	    "<root>/0/- 8bit=1 utf8=0 ret=0 envid=-");
	ck_assert(smtp_server_closing(srv));
}
END_TEST

START_TEST(test_pipelined_byte_by_byte)
{
	struct buf all;

	buf_init(&all, 1 << 20);
	for (size_t i = 0; i < sizeof(pipelined) - 1; i++) {
		ck_assert_int_eq(smtp_server_input(srv, pipelined + i, 1), 0);
		buf_puts(&all, drain());
	}
	ck_assert_str_eq(all.data, pipelined_reply);
	ck_assert_str_eq(fk.done.data, "line1\r\n");
	buf_free(&all);
}
END_TEST

START_TEST(test_sequence_errors)
{
	drain();
	ck_say("MAIL FROM:<a@example.com>\r\n", "503 5.5.1 Error: send HELO/EHLO first\r\n");
	ck_say("RCPT TO:<a@example.com>\r\n", "503 5.5.1 Error: send HELO/EHLO first\r\n");
	ck_say("HELO c\r\n", "250 " HOST "\r\n");
	ck_say("RCPT TO:<a@example.com>\r\n", "503 5.5.1 Error: need MAIL command\r\n");
	ck_say("DATA\r\n", "503 5.5.1 Error: need MAIL command\r\n");
	ck_say("MAIL FROM:<a@example.com>\r\n", "250 2.1.0 Ok\r\n");
	ck_say("MAIL FROM:<a@example.com>\r\n", "503 5.5.1 Error: nested MAIL command\r\n");
	ck_say("DATA\r\n", "503 5.5.1 Error: need RCPT command\r\n");
	fk.fail_rcpt = true;
	ck_say("RCPT TO:<x@example.com>\r\n",
	    "550 5.1.1 <x@example.com>: Recipient address rejected\r\n");
	ck_say("DATA\r\n", "554 5.5.1 Error: no valid recipients\r\n");
	ck_assert_ptr_null(strstr(fk.calls.data, "begin"));
}
END_TEST

START_TEST(test_syntax_errors)
{
	ehlo();
	ck_say("EHLO\r\n", "501 5.5.4 Syntax: EHLO hostname\r\n");
	ck_say("HELO \r\n", "501 5.5.4 Syntax: HELO hostname\r\n");
	ck_say("FOO bar\r\n", "500 5.5.2 Error: command not recognized\r\n");
	ck_say("\r\n", "500 5.5.2 Error: command not recognized\r\n");
	ck_say("EXPN staff\r\n", "502 5.5.1 Error: command not implemented\r\n");
	ck_say("STARTTLS\r\n", "502 5.5.1 Error: command not implemented\r\n");
	ck_say("AUTH PLAIN\r\n", "502 5.5.1 Error: command not implemented\r\n");
	ck_say("ETRN x\r\nTURN\r\n", "502 5.5.1 Error: command not implemented\r\n"
	    "502 5.5.1 Error: command not implemented\r\n");
	ck_say("MAIL TO:<a@example.com>\r\n", "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
	ck_say("MAIL FROM:<a@@example.com>\r\n", "501 5.1.7 Bad sender address syntax\r\n");
	ck_say("MAIL FROM:<a@example.com\r\n", "501 5.1.7 Bad sender address syntax\r\n");
	ck_say("MAIL FROM:\r\n", "501 5.1.7 Bad sender address syntax\r\n");
	ck_say("MAIL FROM:<a@example.com> SIZE=12x\r\n", "501 5.5.4 Bad SIZE parameter syntax\r\n");
	ck_say("MAIL FROM:<a@example.com> BODY=BINARYMIME\r\n",
	    "501 5.5.4 Bad BODY parameter syntax\r\n");
	ck_say("MAIL FROM:<a@example.com> RET=ALL\r\n", "501 5.5.4 Bad RET parameter syntax\r\n");
	ck_say("MAIL FROM:<a@example.com> ENVID=a=b\r\n",
	    "501 5.5.4 Bad ENVID parameter syntax\r\n");
	ck_say("MAIL FROM:<a@example.com> FOO=bar\r\n", "555 5.5.4 Unsupported option\r\n");
	ck_say("MAIL FROM:<a@example.com> NOTIFY=NEVER\r\n", "555 5.5.4 Unsupported option\r\n");
	ck_say("MAIL FROM:<a@example.com> SIZE=1 SIZE=2\r\n", "555 5.5.4 Unsupported option\r\n");
	ck_say("MAIL FROM:<a@example.com> SMTPUTF8=yes\r\n",
	    "501 5.5.4 Bad SMTPUTF8 parameter syntax\r\n");
	ck_say("MAIL FROM:<a@example.com>\r\n", "250 2.1.0 Ok\r\n");
	ck_say("RCPT FROM:<b@example.com>\r\n", "501 5.5.4 Syntax: RCPT TO:<address>\r\n");
	ck_say("RCPT TO:<>\r\n", "501 5.1.3 Bad recipient address syntax\r\n");
	ck_say("RCPT TO:<b@example.com> NOTIFY=NEVER,SUCCESS\r\n",
	    "501 5.5.4 Bad NOTIFY parameter syntax\r\n");
	ck_say("RCPT TO:<b@example.com> NOTIFY=\r\n", "501 5.5.4 Bad NOTIFY parameter syntax\r\n");
	ck_say("RCPT TO:<b@example.com> ORCPT=rfc822\r\n",
	    "501 5.5.4 Bad ORCPT parameter syntax\r\n");
	ck_say("RCPT TO:<b@example.com> SIZE=1\r\n", "555 5.5.4 Unsupported option\r\n");
	ck_say("DATA now\r\n", "501 5.5.4 Syntax: DATA\r\n");
	ck_say("RSET x\r\n", "501 5.5.4 Syntax: RSET\r\n");
	ck_say("VRFY\r\n", "501 5.5.4 Syntax: VRFY address\r\n");
	ck_say("RCPT TO:<b@example.com>\r\n", "250 2.1.5 Ok\r\n");
	ck_assert_str_eq(fk.calls.data, "rcpt(b@example.com) ");
}
END_TEST

START_TEST(test_misc_commands)
{
	ehlo();
	ck_say("noop\r\n", "250 2.0.0 Ok\r\n");
	ck_say("NOOP with args\r\n", "250 2.0.0 Ok\r\n");
	ck_say("VRFY root\r\n",
	    "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery\r\n");
	ck_assert_int_eq(strncmp(say("HELP\r\n"), "214 2.0.0 ", 10), 0);
	/* Bare LF ends a command line too. */
	ck_say("RSET\nNOOP\n", "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n");
	/* Unbracketed path and a space after the colon, as Postfix tolerates. */
	ck_say("MAIL FROM: a@example.com SIZE=10\r\n", "250 2.1.0 Ok\r\n");
	ck_say("RCPT TO: <b@example.com>\r\n", "250 2.1.5 Ok\r\n");
	ck_say("DATA\r\n.\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n" QUEUED);
	ck_assert_uint_eq(fk.done.len, 0);
	ck_assert_str_eq(fk.env.data, "helo=client.example.com from=<a@example.com> "
	    "to=<b@example.com>/0/- 8bit=0 utf8=0 ret=0 envid=-");
}
END_TEST

START_TEST(test_too_many_recipients)
{
	ehlo();
	ck_say("MAIL FROM:<a@example.com>\r\nRCPT TO:<1@example.com>\r\nRCPT TO:<2@example.com>\r\n"
	    "RCPT TO:<3@example.com>\r\nRCPT TO:<4@example.com>\r\n",
	    "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n"
	    "452 4.5.3 Error: too many recipients\r\n");
	ck_say("DATA\r\nx\r\n.\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n" QUEUED);
	ck_assert_ptr_nonnull(strstr(fk.env.data, "<3@example.com>"));
	ck_assert_ptr_null(strstr(fk.env.data, "<4@example.com>"));
}
END_TEST

START_TEST(test_size_param)
{
	ehlo();
	ck_say("MAIL FROM:<a@example.com> SIZE=1001\r\n",
	    "552 5.3.4 Message size exceeds fixed limit\r\n");
	ck_say("MAIL FROM:<a@example.com> SIZE=99999999999999999999999999\r\n",
	    "552 5.3.4 Message size exceeds fixed limit\r\n");
	ck_say("MAIL FROM:<a@example.com> SIZE=1000\r\n", "250 2.1.0 Ok\r\n");
}
END_TEST

START_TEST(test_oversize_data)
{
	char body[400];

	ehlo();
	ck_say("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n",
	    "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
	memset(body, 'x', sizeof(body) - 3);
	memcpy(body + sizeof(body) - 3, "\r\n", 3);
	for (int i = 0; i < 4; i++)
		ck_say(body, "");	/* 1600 bytes > 1000: no reply before the end */
	ck_assert_int_eq(fk.aborts, 1);
	/* A "command" inside the discarded data is not a command. */
	ck_say("QUIT\r\n", "");
	ck_say(".\r\nMAIL FROM:<a@example.com>\r\n",
	    "552 5.3.4 Error: message file too big\r\n250 2.1.0 Ok\r\n");
	ck_assert_int_eq(fk.commits, 0);
	ck_assert(!smtp_server_closing(srv));
	ck_say("RCPT TO:<b@example.com>\r\nDATA\r\nsmall\r\n.\r\n",
	    "250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n" QUEUED);
	ck_assert_str_eq(fk.done.data, "small\r\n");
	ck_assert_str_eq(fk.calls.data, "rcpt(b@example.com) begin write abort "
	    "rcpt(b@example.com) begin write commit ");
}
END_TEST

START_TEST(test_line_too_long)
{
	char line[640];

	ehlo();
	memset(line, 'A', 600);
	strcpy(line + 600, "\r\nNOOP\r\n");
	ck_say(line, "500 5.5.2 Error: line too long\r\n250 2.0.0 Ok\r\n");
	/* The same line in pieces: one reply, the tail is not a command. */
	ck_say("NOOP ", "");
	for (int i = 0; i < 6; i++)
		ck_assert_str_eq(say("RSET RSET RSET RSET RSET RSET RSET RSET RSET RSET RSET RSET "
		    "RSET RSET RSET RSET RSET RSET RSET RSET RSET RSET "), i == 4 ?
		    "500 5.5.2 Error: line too long\r\n" : "");
	ck_say("\r\nNOOP\r\n", "250 2.0.0 Ok\r\n");
	/* Exactly SMTP_LINE_MAX with CRLF is fine, one more is not. */
	memset(line, ' ', sizeof(line));
	memcpy(line, "NOOP", 4);
	memcpy(line + SMTP_LINE_MAX - 2, "x\r\n", 4);
	ck_assert_uint_eq(strlen(line), SMTP_LINE_MAX + 1);
	ck_say(line, "500 5.5.2 Error: line too long\r\n");
	memcpy(line + SMTP_LINE_MAX - 2, "\r\n", 3);
	ck_say(line, "250 2.0.0 Ok\r\n");
	memcpy(line + SMTP_LINE_MAX - 2, "\n", 2);
	ck_say(line, "250 2.0.0 Ok\r\n");
}
END_TEST

START_TEST(test_denied_peer)
{
	smtp_server_free(srv);
	srv = NULL;
	teardown();
	start_with(false, 1000, 3);
	ck_assert_str_eq(drain(), "554 5.7.1 " HOST " access denied\r\n");
	ck_say("EHLO c\r\n", "503 5.7.1 Error: access denied for " HOST "\r\n");
	ck_say("MAIL FROM:<a@example.com>\r\nFOO\r\nRSET\r\nSTARTTLS\r\n",
	    "503 5.7.1 Error: access denied for " HOST "\r\n"
	    "503 5.7.1 Error: access denied for " HOST "\r\n"
	    "503 5.7.1 Error: access denied for " HOST "\r\n"
	    "503 5.7.1 Error: access denied for " HOST "\r\n");
	ck_assert(!smtp_server_closing(srv));
	ck_say("QUIT\r\n", "221 2.0.0 Bye\r\n");
	ck_assert(smtp_server_closing(srv));
	ck_assert_uint_eq(fk.calls.len, 0);
}
END_TEST

START_TEST(test_timeout)
{
	ehlo();
	ck_say("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nabc",
	    "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
	smtp_server_timeout(srv);
	ck_assert_str_eq(drain(), "421 4.4.2 " HOST " Error: timeout exceeded\r\n");
	ck_assert(smtp_server_closing(srv));
	ck_assert_int_eq(fk.aborts, 1);
	ck_say("\r\n.\r\n", "");
	smtp_server_timeout(srv);
	ck_assert_str_eq(drain(), "");
	ck_assert_int_eq(fk.commits, 0);
}
END_TEST

START_TEST(test_eof_mid_data)
{
	ehlo();
	ck_say("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nabc\r\n",
	    "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
	smtp_server_eof(srv);
	ck_assert(smtp_server_closing(srv));
	ck_assert_int_eq(fk.aborts, 1);
	ck_assert_int_eq(fk.commits, 0);
	ck_assert_str_eq(fk.calls.data, "rcpt(b@example.com) begin write abort ");
}
END_TEST

START_TEST(test_free_mid_data_aborts)
{
	ehlo();
	say("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
	smtp_server_free(srv);
	srv = NULL;
	ck_assert_int_eq(fk.aborts, 1);
}
END_TEST

START_TEST(test_sink_failures)
{
	ehlo();
	fk.fail_begin = true;
	ck_say("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nNOOP\r\n",
	    "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n452 4.3.1 Insufficient system storage\r\n"
	    "250 2.0.0 Ok\r\n");
	fk.fail_begin = false;
	fk.fail_commit = true;
	ck_say("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\n",
	    "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
	    "452 4.3.1 Insufficient system storage\r\n");
	fk.fail_commit = false;
	fk.fail_write = true;
	ck_say("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\ny\r\n",
	    "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
	ck_say(".\r\n", "452 4.3.1 Insufficient system storage\r\n");
	fk.fail_write = false;
	ck_say("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nok\r\n.\r\n",
	    "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n" QUEUED);
	ck_assert_int_eq(fk.commits, 1);
	ck_assert_int_eq(fk.aborts, 1);
	ck_assert_str_eq(fk.calls.data,
	    "rcpt(b@example.com) begin "
	    "rcpt(b@example.com) begin write commit "
	    "rcpt(b@example.com) begin write abort "
	    "rcpt(b@example.com) begin write commit ");
}
END_TEST

/* A sink reply with line breaks must not forge extra replies. */
static int evil_begin(void *ctx, const struct smtp_envelope_in *env, struct smtp_reply *fail)
{
	fail->code = 250;
	snprintf(fail->text, sizeof(fail->text), "2.0.0 fine\r\n250 forged");
	return -1;
}

START_TEST(test_sink_reply_sanitised)
{
	struct smtp_server_sink evil = fake_sink;
	struct smtp_server_params p = {
		.hostname = HOST, .peer_allowed = true, .max_message_size = 1000,
		.max_recipients = 3, .sink = &evil, .sink_ctx = &fk,
	};

	evil.begin = evil_begin;
	smtp_server_free(srv);
	srv = smtp_server_new(&p);
	drain();
	ck_say("HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n",
	    "250 " HOST "\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n451 2.0.0 fine250 forged\r\n");
}
END_TEST

/* A commit done in the background: nothing is answered or read until the
 * driver reports it; pipelined commands wait, then run in order. */
START_TEST(test_async_commit)
{
	ehlo();
	fk.async_commit = true;
	ck_say("MAIL FROM:<a@example.com>\r\n", "250 2.1.0 Ok\r\n");
	ck_say("RCPT TO:<b@example.com>\r\n", "250 2.1.5 Ok\r\n");
	ck_say("DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n");
	ck_say("hi\r\n.\r\nNOOP\r\n", "");
	ck_assert(smtp_server_committing(srv));
	ck_assert(!smtp_server_want_input(srv));
	ck_say("QUIT\r\n", "");
	smtp_server_commit_done(srv, "ID1", NULL);
	ck_assert_str_eq(drain(), "250 2.0.0 Ok: queued as ID1\r\n250 2.0.0 Ok\r\n"
	    "221 2.0.0 Bye\r\n");
	ck_assert(smtp_server_closing(srv));
	/* A late report after the session ended is ignored. */
	smtp_server_commit_done(srv, "ID2", NULL);
	ck_assert_str_eq(drain(), "");
}
END_TEST

START_TEST(test_async_commit_failure_and_eof)
{
	struct smtp_reply fail;

	ehlo();
	fk.async_commit = true;
	ck_say("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n",
	    "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
	ck_say("hi\r\n.\r\n", "");
	/* The client half-closes after its dot: it still gets its answer. */
	smtp_server_eof(srv);
	ck_assert(!smtp_server_closing(srv));
	smtp_reply_set(&fail, 452, "4.3.1 Insufficient system storage");
	smtp_server_commit_done(srv, NULL, &fail);
	ck_assert_str_eq(drain(), "452 4.3.1 Insufficient system storage\r\n");
	ck_assert(smtp_server_closing(srv));
}
END_TEST

START_TEST(test_rset_clears)
{
	ehlo();
	ck_say("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nRSET\r\nDATA\r\n",
	    "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok\r\n"
	    "503 5.5.1 Error: need MAIL command\r\n");
	ck_say("MAIL FROM:<c@example.com>\r\nRCPT TO:<d@example.com>\r\nDATA\r\n.\r\n",
	    "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n" QUEUED);
	ck_assert_str_eq(fk.env.data, "helo=client.example.com from=<c@example.com> "
	    "to=<d@example.com>/0/- 8bit=0 utf8=0 ret=0 envid=-");
	/* A new EHLO resets a transaction as well. */
	ck_say("MAIL FROM:<a@example.com>\r\nEHLO other\r\nRCPT TO:<b@example.com>\r\n",
	    "250 2.1.0 Ok\r\n" EHLO_REPLY "503 5.5.1 Error: need MAIL command\r\n");
}
END_TEST

START_TEST(test_helo_vs_ehlo)
{
	drain();
	ck_say("HELO c.example.com\r\n", "250 " HOST "\r\n");
	/* Enhanced status codes are always given, like Postfix. */
	ck_say("MAIL FROM:<a@example.com>\r\n", "250 2.1.0 Ok\r\n");
	ck_say("RCPT TO:<root>\r\nDATA\r\nx\r\n.\r\n",
	    "250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n" QUEUED);
	ck_assert_str_eq(fk.env.data, "helo=c.example.com from=<a@example.com> "
	    "to=<root>/0/- 8bit=0 utf8=0 ret=0 envid=-");
}
END_TEST

START_TEST(test_smtputf8)
{
	ehlo();
	ck_say("MAIL FROM:<j\xc3\xb6rg@ex\xc3\xa4mple.de>\r\n",
	    "553 5.6.7 Must declare SMTPUTF8 to send unicode address\r\n");
	ck_say("MAIL FROM:<a@example.com>\r\n", "250 2.1.0 Ok\r\n");
	ck_say("RCPT TO:<j\xc3\xb6rg@example.de>\r\n",
	    "553 5.6.7 Must declare SMTPUTF8 to send unicode address\r\n");
	ck_say("RSET\r\nMAIL FROM:<j\xc3\xb6rg@ex\xc3\xa4mple.de> SMTPUTF8\r\n",
	    "250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n");
	ck_say("RCPT TO:<\xe7\x94\xa8\xe6\x88\xb7@example.de>\r\nDATA\r\n.\r\n",
	    "250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n" QUEUED);
	ck_assert_str_eq(fk.env.data, "helo=client.example.com "
	    "from=<j\xc3\xb6rg@ex\xc3\xa4mple.de> to=<\xe7\x94\xa8\xe6\x88\xb7@example.de>/0/- "
	    "8bit=0 utf8=1 ret=0 envid=-");
}
END_TEST

START_TEST(test_null_sender_and_dsn)
{
	ehlo();
	ck_say("MAIL FROM:<> RET=HDRS ENVID=abc+2Bdef body=8bitmime\r\n", "250 2.1.0 Ok\r\n");
	ck_say("RCPT TO:<b@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+40example.com\r\n",
	    "250 2.1.5 Ok\r\n");
	ck_say("RCPT TO:<c@example.com> NOTIFY=NEVER\r\n", "250 2.1.5 Ok\r\n");
	ck_say("DATA\r\n.\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n" QUEUED);
	ck_assert_str_eq(fk.env.data, "helo=client.example.com from=<> "
	    "to=<b@example.com>/6/rfc822;bob@example.com,<c@example.com>/1/- "
	    "8bit=1 utf8=0 ret=2 envid=abc+def");
}
END_TEST

START_TEST(test_smuggling_session)
{
	ehlo();
	ck_say("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
	    "Subject: x\r\n\r\nhi\n.\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<v@example.com>\r\n"
	    "DATA\r\nevil\r\n\r.\r\n.\r\n",
	    "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n" QUEUED);
	ck_assert_int_eq(fk.commits, 1);
	ck_assert_str_eq(fk.done.data, "Subject: x\r\n\r\nhi\r\n.\r\nMAIL FROM:<evil@example.com>\r\n"
	    "RCPT TO:<v@example.com>\r\nDATA\r\nevil\r\n\r\n.\r\n");
	ck_assert_str_eq(fk.calls.data, "rcpt(b@example.com) begin write commit ");
}
END_TEST

START_TEST(test_data_chunked_and_bare_lf)
{
	const char *msg = "A: b\nC: d\r\n\r\nline\rtwo\r\n..\r\n.\r\n";

	ehlo();
	say("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
	for (const char *p = msg; *p; p++)
		ck_assert_int_eq(smtp_server_input(srv, p, 1), 0);
	ck_assert_str_eq(drain(), QUEUED);
	ck_assert_str_eq(fk.done.data, "A: b\r\nC: d\r\n\r\nline\r\ntwo\r\n.\r\n");
}
END_TEST

START_TEST(test_big_message_streams)
{
	static char chunk[10000];
	struct smtp_server_params p = {
		.hostname = HOST, .peer_allowed = true, .max_message_size = 0,
		.max_recipients = 0, .sink = &fake_sink, .sink_ctx = &fk,
	};

	smtp_server_free(srv);
	srv = smtp_server_new(&p);
	ck_assert_ptr_nonnull(strstr(say("EHLO c\r\n"), "250-SIZE\r\n"));
	say("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
	memset(chunk, 'y', sizeof(chunk));
	for (size_t i = 99; i < sizeof(chunk); i += 100)
		chunk[i - 1] = '\r', chunk[i] = '\n';
	for (int i = 0; i < 200; i++)
		ck_assert_int_eq(smtp_server_input(srv, chunk, sizeof(chunk)), 0);
	ck_say(".\r\n", QUEUED);
	ck_assert_uint_eq(fk.done.len, 200 * sizeof(chunk));
}
END_TEST

START_TEST(test_output_backpressure)
{
	const size_t n = 30000;
	struct buf in;
	size_t replies = 0, len;

	buf_init(&in, 1 << 20);
	drain();
	for (size_t i = 0; i < n; i++)
		buf_puts(&in, "NOOP\r\n");
	buf_puts(&in, "QUIT\r\n");
	ck_assert_int_eq(smtp_server_input(srv, in.data, in.len), 0);
	ck_assert(!smtp_server_want_input(srv));
	smtp_server_output(srv, &len);
	ck_assert_uint_ge(len, SMTP_OUT_HIGH);
	ck_assert_uint_lt(len, SMTP_OUT_HIGH + SMTP_LINE_MAX);
	ck_assert(!smtp_server_closing(srv));
	for (;;) {
		const char *o = smtp_server_output(srv, &len);
		size_t take = len > 1000 ? 1000 : len;

		if (len == 0)
			break;
		/* Consume in odd-sized pieces, as a socket would. */
		for (size_t i = 0; i < take; i++)
			replies += o[i] == '\n';
		smtp_server_consume_output(srv, take);
	}
	/* Everything was processed once the replies were read. */
	ck_assert(smtp_server_closing(srv));
	ck_assert_uint_eq(replies, n + 1);
	buf_free(&in);
}
END_TEST

START_TEST(test_input_limit)
{
	static char noops[60000];
	int r = 0;

	drain();
	for (size_t i = 0; i < sizeof(noops); i += 6)
		memcpy(noops + i, "NOOP\r\n", 6);
	/* Never reading replies: the server gives up with 421, not unbounded memory. */
	for (int i = 0; i < 100 && r == 0; i++)
		r = smtp_server_input(srv, noops, sizeof(noops));
	ck_assert_int_eq(r, -1);
	ck_assert(smtp_server_closing(srv));
	ck_assert_int_eq(smtp_server_input(srv, "NOOP\r\n", 6), 0);
}
END_TEST

START_TEST(test_reply_helpers)
{
	struct smtp_reply r;
	char line[64];

	smtp_reply_set(&r, 452, "4.3.1 %s", "Insufficient system storage");
	smtp_reply_failure_line(&r, line, sizeof(line));
	ck_assert_str_eq(line, "452 4.3.1 Insufficient system storage");
	smtp_reply_set(&r, 200, "%s", "");
	smtp_reply_failure_line(&r, line, sizeof(line));
	ck_assert_str_eq(line, "451 4.3.0 Error: temporary failure");
	smtp_reply_set(&r, 554, "5.7.1 \x01no\x7f");
	smtp_reply_failure_line(&r, line, 12);
	ck_assert_str_eq(line, "554 5.7.1 n");
}
END_TEST

static Suite *server_suite(void)
{
	Suite *s = suite_create("smtp_server");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_full_transaction);
	tcase_add_test(tc, test_async_commit);
	tcase_add_test(tc, test_async_commit_failure_and_eof);
	tcase_add_test(tc, test_pipelined_one_chunk);
	tcase_add_test(tc, test_pipelined_byte_by_byte);
	tcase_add_test(tc, test_sequence_errors);
	tcase_add_test(tc, test_syntax_errors);
	tcase_add_test(tc, test_misc_commands);
	tcase_add_test(tc, test_too_many_recipients);
	tcase_add_test(tc, test_size_param);
	tcase_add_test(tc, test_oversize_data);
	tcase_add_test(tc, test_line_too_long);
	tcase_add_test(tc, test_denied_peer);
	tcase_add_test(tc, test_timeout);
	tcase_add_test(tc, test_eof_mid_data);
	tcase_add_test(tc, test_free_mid_data_aborts);
	tcase_add_test(tc, test_sink_failures);
	tcase_add_test(tc, test_sink_reply_sanitised);
	tcase_add_test(tc, test_rset_clears);
	tcase_add_test(tc, test_helo_vs_ehlo);
	tcase_add_test(tc, test_smtputf8);
	tcase_add_test(tc, test_null_sender_and_dsn);
	tcase_add_test(tc, test_smuggling_session);
	tcase_add_test(tc, test_data_chunked_and_bare_lf);
	tcase_add_test(tc, test_big_message_streams);
	tcase_add_test(tc, test_output_backpressure);
	tcase_add_test(tc, test_input_limit);
	tcase_add_test(tc, test_reply_helpers);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ckrun(server_suite());
}
