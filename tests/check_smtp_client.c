#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "conf/conf.h"
#include "lib/buf.h"
#include "queue/queue.h"
#include "smtp/client.h"
#include "smtp/sasl.h"
#include "tests/ckrun.h"

#define HELO "relay.test"
#define SECRET "s3cr3t-hunter2-pw"
#define TOKEN "ya29.TOKEN-abcdef0123456789"

/* ---- fake server harness ---- */

static struct buf transcript;	/* everything the client ever sent */
static struct buf outq;		/* sent by the client, not yet matched */

static void setup(void)
{
	buf_init(&transcript, 64 << 20);
	buf_init(&outq, 64 << 20);
}

static void teardown(void)
{
	buf_free(&transcript);
	buf_free(&outq);
}

static void pull(struct smtp_client *c)
{
	size_t n;
	const char *o = smtp_client_output(c, &n);

	if (n == 0)
		return;
	ck_assert_int_eq(buf_append(&outq, o, n), 0);
	ck_assert_int_eq(buf_append(&transcript, o, n), 0);
	smtp_client_consume_output(c, n);
}

/* Next CRLF-terminated line the client sent (malloc'd, without CRLF). */
static char *next_line(struct smtp_client *c)
{
	char *nl, *line;
	size_t n;

	pull(c);
	nl = outq.len ? memchr(outq.data, '\n', outq.len) : NULL;
	if (!nl)
		return NULL;
	n = (size_t)(nl - outq.data);
	ck_assert_msg(n > 0 && outq.data[n - 1] == '\r', "line without CRLF");
	line = strndup(outq.data, n - 1);
	buf_consume(&outq, n + 1);
	return line;
}

static void expect_line(struct smtp_client *c, const char *want)
{
	char *line = next_line(c);

	ck_assert_msg(line != NULL, "client sent nothing, expected \"%s\"", want);
	ck_assert_str_eq(line, want);
	free(line);
}

static void expect_nothing(struct smtp_client *c)
{
	pull(c);
	ck_assert_msg(outq.len == 0, "unexpected output: \"%.*s\"", (int)outq.len, outq.data);
}

static void feed(struct smtp_client *c, const char *s)
{
	smtp_client_input(c, s, strlen(s));
}

struct step {
	const char *send;	/* line the client must send next (NULL: none) */
	const char *reply;	/* then the server says (NULL: nothing yet) */
};

/* The client must have sent everything before each reply, and nothing
 * more: that checks both pipelining and waiting for replies. */
static void run(struct smtp_client *c, const struct step *s)
{
	for (; s->send || s->reply; s++) {
		if (s->send)
			expect_line(c, s->send);
		if (s->reply) {
			expect_nothing(c);
			feed(c, s->reply);
		}
	}
}

static struct smtp_client *mk(enum smtp_client_tls tls, const char *user, const char *secret,
    unsigned mechs)
{
	struct smtp_client_params p = {
		.helo_name = HELO, .tls = tls, .username = user, .secret = secret,
		.auth_mechs = mechs, .line_max = 0,
	};
	struct smtp_client *c = smtp_client_new(&p);

	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_WAIT);
	return c;
}

static void assert_err(struct smtp_client *c, enum smtp_client_error e, const char *in_reason)
{
	const char *reason;

	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_CLOSED);
	ck_assert_int_eq(smtp_client_error(c, &reason), e);
	if (in_reason)
		ck_assert_msg(strstr(reason, in_reason), "reason \"%s\" lacks \"%s\"", reason, in_reason);
}

static void assert_rcpt(struct smtp_client *c, size_t i, int code, const char *text)
{
	const struct smtp_client_result *r = smtp_client_rcpt_result(c, i);

	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(r->code, code);
	if (text)
		ck_assert_msg(strstr(r->text, text), "rcpt %zu: \"%s\" lacks \"%s\"", i, r->text, text);
}

static const char *const two_rcpts[] = { "a@x.test", "b@x.test" };

static struct smtp_client_msg msg2(void)
{
	return (struct smtp_client_msg){ .sender = "s@y.test", .rcpts = two_rcpts, .nrcpts = 2 };
}

/* Session on a PORT/none server with the given EHLO extension lines. */
static struct smtp_client *session(const char *ehlo_reply)
{
	struct smtp_client *c = mk(SMTP_CLIENT_TLS_NONE, NULL, NULL, 0);
	const struct step s[] = {
		{ NULL, "220 mx.test ESMTP\r\n" },
		{ "EHLO " HELO, ehlo_reply },
		{ NULL, NULL },
	};

	run(c, s);
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_READY);
	return c;
}

#define EHLO_PIPE "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n" \
	"250-ENHANCEDSTATUSCODES\r\n250 DSN\r\n"
#define EHLO_PLAIN "250-mx.test\r\n250 8BITMIME\r\n"

static void send_body(struct smtp_client *c, const char *body)
{
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_NEED_DATA);
	ck_assert_int_eq(smtp_client_data(c, body, strlen(body), true), (ssize_t)strlen(body));
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_WAIT);
}

/* Decode the base64 argument and compare it with the expected clear text. */
static void assert_b64(const char *b64, const char *want, size_t wantlen)
{
	unsigned char dec[4096];
	size_t len = strlen(b64);
	int n;

	ck_assert_uint_eq(len % 4, 0);
	n = EVP_DecodeBlock(dec, (const unsigned char *)b64, (int)len);
	ck_assert_int_ge(n, 0);
	if (len && b64[len - 1] == '=')
		n--;
	if (len > 1 && b64[len - 2] == '=')
		n--;
	ck_assert_int_eq(n, (int)wantlen);
	ck_assert_msg(memcmp(dec, want, wantlen) == 0, "decoded \"%.*s\"", n, dec);
}

/* The next line must be "PREFIX base64" decoding to want. */
static void expect_b64_line(struct smtp_client *c, const char *prefix, const char *want,
    size_t wantlen)
{
	char *line = next_line(c);

	ck_assert_ptr_nonnull(line);
	ck_assert_msg(strncmp(line, prefix, strlen(prefix)) == 0, "line \"%s\"", line);
	assert_b64(line + strlen(prefix), want, wantlen);
	free(line);
}

static bool transcript_has(const char *s)
{
	return transcript.len && strstr(transcript.data, s) != NULL;
}

/* ---- session set-up ---- */

START_TEST(test_plain_session)
{
	struct smtp_client *c = mk(SMTP_CLIENT_TLS_NONE, NULL, NULL, 0);
	struct smtp_client_msg m = msg2();
	const struct step s1[] = {
		{ NULL, "220-mx.test ESMTP\r\n220 welcome\r\n" },
		{ "EHLO " HELO, "250-mx.test\r\n250-8BITMIME\r\n250 SIZE\r\n" },
		{ NULL, NULL },
	};
	const struct step s2[] = {
		{ "MAIL FROM:<s@y.test> SIZE=42", "250 2.1.0 Ok\r\n" },
		{ "RCPT TO:<a@x.test>", "250 2.1.5 Ok\r\n" },
		{ "RCPT TO:<b@x.test>", "250 2.1.5 Ok\r\n" },
		{ "DATA", "354 go ahead\r\n" },
		{ NULL, NULL },
	};
	const struct step s3[] = {
		{ "Subject: hi", NULL },
		{ "", NULL },
		{ "body", NULL },
		{ ".", "250 2.0.0 Ok: queued as ABC\r\n" },
		{ NULL, NULL },
	};
	const struct step s4[] = { { "QUIT", "221 2.0.0 Bye\r\n" }, { NULL, NULL } };

	run(c, s1);
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_READY);
	ck_assert(smtp_client_ehlo(c)->size_ext);
	ck_assert_uint_eq(smtp_client_ehlo(c)->size, 0);
	ck_assert_str_eq(smtp_client_ehlo(c)->raw, "8BITMIME SIZE");
	m.size = 42;
	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	run(c, s2);
	send_body(c, "Subject: hi\r\n\r\nbody\r\n");
	run(c, s3);
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_MSG_DONE);
	assert_rcpt(c, 0, 250, "250 2.0.0 Ok: queued as ABC");
	assert_rcpt(c, 1, 250, "queued as ABC");
	ck_assert_int_eq(smtp_client_rcpt_result(c, 1)->stage, SMTP_CLIENT_STAGE_DOT);
	ck_assert_str_eq(smtp_client_stage_name(SMTP_CLIENT_STAGE_DOT), "end of DATA");
	ck_assert_int_eq(smtp_client_msg_result(c)->code, 250);
	ck_assert_int_eq(smtp_client_auth_used(c), 0);
	smtp_client_quit(c);
	run(c, s4);
	assert_err(c, SMTP_CLIENT_OK, NULL);
	expect_nothing(c);
	smtp_client_free(c);
}
END_TEST

START_TEST(test_greeting_rejected)
{
	struct smtp_client *c = mk(SMTP_CLIENT_TLS_STARTTLS, NULL, NULL, 0);

	feed(c, "554 5.7.1 no service for you\r\n");
	assert_err(c, SMTP_CLIENT_E_GREETING, "554 5.7.1 no service for you");
	ck_assert_int_eq(smtp_client_error_reply(c)->code, 554);
	ck_assert_int_eq(smtp_client_stage(c), SMTP_CLIENT_STAGE_GREETING);
	expect_line(c, "QUIT");
	smtp_client_free(c);

	c = mk(SMTP_CLIENT_TLS_STARTTLS, NULL, NULL, 0);
	feed(c, "421 4.7.0 mx.test Too many concurrent SMTP connections\r\n");
	assert_err(c, SMTP_CLIENT_E_TEMP, "server is unavailable: 421 4.7.0 mx.test Too many");
	expect_nothing(c);
	smtp_client_free(c);
}
END_TEST

START_TEST(test_starttls_flow)
{
	struct smtp_client *c = mk(SMTP_CLIENT_TLS_STARTTLS, "user@x.test", SECRET, 0);
	const struct step s[] = {
		{ NULL, "220 mx.test ESMTP\r\n" },
		{ "EHLO " HELO, "250-mx.test\r\n250-PIPELINING\r\n250-AUTH PLAIN\r\n250 STARTTLS\r\n" },
		{ "STARTTLS", "220 2.0.0 Ready to start TLS\r\n" },
		{ NULL, NULL },
	};
	const struct step s2[] = {
		{ "EHLO " HELO, "250-mx.test\r\n250-AUTH LOGIN\r\n250 SIZE 100\r\n" },
		{ "AUTH LOGIN", "334 VXNlcm5hbWU6\r\n" },
		{ NULL, NULL },
	};

	run(c, s);
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_START_TLS);
	ck_assert(!transcript_has("AUTH"));	/* never before TLS */
	expect_nothing(c);
	smtp_client_tls_ready(c);
	run(c, s2);
	/* What the plaintext EHLO said is forgotten (RFC 3207). */
	ck_assert(!smtp_client_ehlo(c)->pipelining);
	ck_assert(!smtp_client_ehlo(c)->starttls);
	ck_assert_uint_eq(smtp_client_ehlo(c)->auth_offered, SASL_LOGIN);
	ck_assert_uint_eq(smtp_client_ehlo(c)->size, 100);
	expect_b64_line(c, "", "user@x.test", 11);
	feed(c, "334 UGFzc3dvcmQ6\r\n");
	expect_b64_line(c, "", SECRET, strlen(SECRET));
	expect_nothing(c);
	feed(c, "235 2.7.0 Authentication successful\r\n");
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_READY);
	ck_assert_uint_eq(smtp_client_auth_used(c), SASL_LOGIN);
	smtp_client_free(c);
}
END_TEST

START_TEST(test_starttls_missing)
{
	struct smtp_client *c = mk(SMTP_CLIENT_TLS_STARTTLS, "user", SECRET, 0);
	struct smtp_client_msg m = msg2();

	feed(c, "220 mx.test ESMTP\r\n");
	expect_line(c, "EHLO " HELO);
	feed(c, "250-mx.test\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n");
	assert_err(c, SMTP_CLIENT_E_STARTTLS_MISSING, "does not offer STARTTLS");
	ck_assert_int_eq(smtp_client_send(c, &m), -1);
	pull(c);
	/* Nothing but EHLO and a courtesy QUIT ever went out in plaintext. */
	ck_assert_str_eq(transcript.data, "EHLO " HELO "\r\nQUIT\r\n");
	ck_assert(!transcript_has("MAIL") && !transcript_has("AUTH"));
	smtp_client_free(c);
}
END_TEST

START_TEST(test_starttls_refused)
{
	struct smtp_client *c = mk(SMTP_CLIENT_TLS_STARTTLS, NULL, NULL, 0);

	feed(c, "220 mx.test\r\n250-x\r\n");
	expect_line(c, "EHLO " HELO);
	feed(c, "250 STARTTLS\r\n");
	expect_line(c, "STARTTLS");
	feed(c, "454 4.7.0 TLS not available\r\n");
	assert_err(c, SMTP_CLIENT_E_STARTTLS_REFUSED, "454 4.7.0 TLS not available");
	smtp_client_free(c);
}
END_TEST

START_TEST(test_starttls_injection)
{
	struct smtp_client *c = mk(SMTP_CLIENT_TLS_STARTTLS, NULL, NULL, 0);

	feed(c, "220 mx.test\r\n");
	feed(c, "250-mx.test\r\n250 STARTTLS\r\n");
	expect_line(c, "EHLO " HELO);
	expect_line(c, "STARTTLS");
	/* The 220 and a forged reply in the same read (CVE-2011-0411 class). */
	feed(c, "220 go ahead\r\n250-forged\r\n");
	assert_err(c, SMTP_CLIENT_E_PROTOCOL, "injection");
	smtp_client_tls_ready(c);	/* too late: stays closed */
	assert_err(c, SMTP_CLIENT_E_PROTOCOL, NULL);
	expect_nothing(c);
	smtp_client_free(c);

	/* Same with the extra bytes arriving after the 220, before the handshake. */
	c = mk(SMTP_CLIENT_TLS_STARTTLS, NULL, NULL, 0);
	feed(c, "220 mx.test\r\n");
	feed(c, "250-mx\r\n250 STARTTLS\r\n");
	feed(c, "220 go ahead\r\n");
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_START_TLS);
	ck_assert_int_eq(smtp_client_input(c, "2", 1), -1);
	assert_err(c, SMTP_CLIENT_E_PROTOCOL, "STARTTLS");
	smtp_client_free(c);
}
END_TEST

START_TEST(test_implicit_tls)
{
	struct smtp_client *c = mk(SMTP_CLIENT_TLS_IMPLICIT, "u", SECRET, 0);
	static const char want[] = "\0u\0" SECRET;

	feed(c, "220 mx.test ESMTP\r\n");
	expect_line(c, "EHLO " HELO);
	feed(c, "250-mx.test\r\n250 AUTH LOGIN PLAIN\r\n");
	expect_b64_line(c, "AUTH PLAIN ", want, sizeof(want) - 1);
	expect_nothing(c);
	feed(c, "235 ok\r\n");
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_READY);
	ck_assert_uint_eq(smtp_client_auth_used(c), SASL_PLAIN);
	ck_assert(!transcript_has("STARTTLS"));
	smtp_client_free(c);
}
END_TEST

START_TEST(test_tls_record_greeting)
{
	static const char rec[] = "\x16\x03\x01\x00\x2a\x02\x00";
	enum smtp_client_tls modes[] = { SMTP_CLIENT_TLS_NONE, SMTP_CLIENT_TLS_STARTTLS };

	for (size_t i = 0; i < 2; i++) {
		struct smtp_client *c = mk(modes[i], NULL, NULL, 0);

		/* One byte first: the decision waits for the second. */
		ck_assert_int_eq(smtp_client_input(c, rec, 1), 0);
		ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_WAIT);
		smtp_client_input(c, rec + 1, sizeof(rec) - 2);
		assert_err(c, SMTP_CLIENT_E_TLS_MODE, "use PORT/tls");
		expect_nothing(c);
		smtp_client_free(c);
	}
}
END_TEST

START_TEST(test_greeting_timeout_hint)
{
	struct smtp_client *c = mk(SMTP_CLIENT_TLS_STARTTLS, NULL, NULL, 0);

	smtp_client_timeout(c);
	assert_err(c, SMTP_CLIENT_E_TIMEOUT, "initial server greeting");
	assert_err(c, SMTP_CLIENT_E_TIMEOUT, "PORT/tls");
	ck_assert_int_eq(smtp_client_stage(c), SMTP_CLIENT_STAGE_GREETING);
	smtp_client_free(c);
}
END_TEST

START_TEST(test_helo_fallback)
{
	struct smtp_client *c = mk(SMTP_CLIENT_TLS_NONE, NULL, NULL, 0);
	const struct step s[] = {
		{ NULL, "220 old.test\r\n" },
		{ "EHLO " HELO, "502 5.5.1 what?\r\n" },
		{ "HELO " HELO, "250 old.test\r\n" },
		{ NULL, NULL },
	};

	run(c, s);
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_READY);
	ck_assert(!smtp_client_ehlo(c)->pipelining);
	smtp_client_free(c);

	/* No EHLO, no STARTTLS: never plaintext on a STARTTLS port. */
	c = mk(SMTP_CLIENT_TLS_STARTTLS, NULL, NULL, 0);
	run(c, s);
	assert_err(c, SMTP_CLIENT_E_STARTTLS_MISSING, "STARTTLS");
	smtp_client_free(c);

	/* Implicit TLS with credentials: a HELO server cannot authenticate us. */
	c = mk(SMTP_CLIENT_TLS_IMPLICIT, "u", SECRET, 0);
	run(c, s);
	assert_err(c, SMTP_CLIENT_E_AUTH_UNSUPPORTED, "EHLO");
	ck_assert(!transcript_has("AUTH"));
	smtp_client_free(c);
}
END_TEST

START_TEST(test_ehlo_temp)
{
	struct smtp_client *c = mk(SMTP_CLIENT_TLS_NONE, NULL, NULL, 0);

	feed(c, "220 mx\r\n");
	feed(c, "421 4.3.2 shutting down\r\n");
	assert_err(c, SMTP_CLIENT_E_TEMP, "421 4.3.2 shutting down");
	pull(c);
	ck_assert(!transcript_has("QUIT"));	/* 421: the server is gone */
	smtp_client_free(c);
}
END_TEST

/* ---- AUTH ---- */

START_TEST(test_auth_xoauth2)
{
	struct smtp_client *c = mk(SMTP_CLIENT_TLS_IMPLICIT, "me@x.test", TOKEN, SASL_XOAUTH2);
	static const char want[] = "user=me@x.test\001auth=Bearer " TOKEN "\001\001";
	static const char json[] = "{\"status\":\"400\",\"schemes\":\"Bearer\",\"scope\":\"https://mail.google.com/\"}";
	struct buf b64;
	const char *reason;

	buf_init(&b64, 4096);
	ck_assert_int_eq(sasl_b64_encode(&b64, json, strlen(json)), 0);
	feed(c, "220 smtp.gmail.com ESMTP\r\n");
	expect_line(c, "EHLO " HELO);
	feed(c, "250-smtp.gmail.com\r\n250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER\r\n250 SMTPUTF8\r\n");
	expect_b64_line(c, "AUTH XOAUTH2 ", want, sizeof(want) - 1);
	expect_nothing(c);
	feed(c, "334 ");
	feed(c, b64.data);
	feed(c, "\r\n");
	expect_line(c, "");	/* the empty response that ends the exchange */
	expect_nothing(c);
	feed(c, "535-5.7.8 Username and Password not accepted.\r\n535 5.7.8 https://support.google.com/mail\r\n");
	assert_err(c, SMTP_CLIENT_E_AUTH_FAILED, "\"status\":\"400\"");
	assert_err(c, SMTP_CLIENT_E_AUTH_FAILED, "535 5.7.8 Username and Password not accepted.; 5.7.8 https");
	smtp_client_error(c, &reason);
	ck_assert(!strstr(reason, TOKEN));
	ck_assert_str_eq(smtp_client_ehlo(c)->auth_raw, "LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER");
	buf_free(&b64);
	smtp_client_free(c);

	c = mk(SMTP_CLIENT_TLS_IMPLICIT, "me@x.test", TOKEN, SASL_XOAUTH2);
	feed(c, "220 x\r\n250-x\r\n250 AUTH XOAUTH2\r\n235 2.7.0 Accepted\r\n");
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_READY);
	ck_assert_uint_eq(smtp_client_auth_used(c), SASL_XOAUTH2);
	smtp_client_free(c);
}
END_TEST

START_TEST(test_auth_oauthbearer)
{
	struct smtp_client_params p = {
		.helo_name = HELO, .tls = SMTP_CLIENT_TLS_STARTTLS, .username = "a,b=c@x.test",
		.secret = TOKEN, .auth_mechs = SASL_OAUTHBEARER,
		.server_host = "smtp.office365.com", .server_port = 587,
	};
	static const char want[] = "n,a=a=2Cb=3Dc@x.test,\001host=smtp.office365.com\001port=587\001"
	    "auth=Bearer " TOKEN "\001\001";
	struct smtp_client *c = smtp_client_new(&p);

	ck_assert_ptr_nonnull(c);
	feed(c, "220 x\r\n250-x\r\n250 STARTTLS\r\n220 go\r\n");
	smtp_client_tls_ready(c);
	feed(c, "250-x\r\n250 AUTH LOGIN XOAUTH2 OAUTHBEARER\r\n");
	expect_line(c, "EHLO " HELO);
	expect_line(c, "STARTTLS");
	expect_line(c, "EHLO " HELO);
	expect_b64_line(c, "AUTH OAUTHBEARER ", want, sizeof(want) - 1);
	feed(c, "334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=\r\n");
	expect_line(c, "AQ==");
	feed(c, "535 5.7.3 Authentication unsuccessful\r\n");
	assert_err(c, SMTP_CLIENT_E_AUTH_FAILED, "invalid_token");
	assert_err(c, SMTP_CLIENT_E_AUTH_FAILED, "535 5.7.3 Authentication unsuccessful");
	smtp_client_free(c);
}
END_TEST

struct mech_case {
	const char *offered;	/* EHLO AUTH line, NULL: no AUTH */
	unsigned allowed;
	unsigned want;		/* 0: AUTH_UNSUPPORTED */
};

START_TEST(test_mech_selection)
{
	static const struct mech_case cases[] = {
		{ "AUTH PLAIN LOGIN XOAUTH2", 0, SASL_PLAIN },
		{ "AUTH LOGIN PLAIN", SASL_LOGIN, SASL_LOGIN },
		{ "AUTH LOGIN", 0, SASL_LOGIN },
		{ "AUTH=LOGIN", 0, SASL_LOGIN },
		{ "AUTH PLAIN XOAUTH2", SASL_PLAIN | SASL_XOAUTH2, SASL_XOAUTH2 },
		{ "AUTH OAUTHBEARER XOAUTH2", SASL_XOAUTH2 | SASL_OAUTHBEARER, SASL_XOAUTH2 },
		{ "AUTH PLAIN OAUTHBEARER", SASL_XOAUTH2 | SASL_OAUTHBEARER, SASL_OAUTHBEARER },
		{ "AUTH XOAUTH2 OAUTHBEARER", 0, 0 },	/* tokens only when asked for */
		{ "AUTH CRAM-MD5 GSSAPI", 0, 0 },
		{ "AUTH PLAIN", SASL_LOGIN, 0 },
		{ NULL, 0, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_client *c = mk(SMTP_CLIENT_TLS_IMPLICIT, "u", SECRET, cases[i].allowed);
		char ehlo[256];
		char *line;

		snprintf(ehlo, sizeof(ehlo), "250-mx\r\n250 %s\r\n", cases[i].offered ? cases[i].offered : "8BITMIME");
		feed(c, "220 mx\r\n");
		feed(c, ehlo);
		expect_line(c, "EHLO " HELO);
		line = next_line(c);
		if (cases[i].want == 0) {
			assert_err(c, SMTP_CLIENT_E_AUTH_UNSUPPORTED, "AUTH");
			ck_assert_str_eq(line, "QUIT");
		} else {
			char prefix[64];

			snprintf(prefix, sizeof(prefix), "AUTH %s", smtp_client_mech_name(cases[i].want));
			ck_assert_msg(strncmp(line, prefix, strlen(prefix)) == 0, "case %zu: %s", i, line);
		}
		free(line);
		smtp_client_free(c);
		buf_reset(&transcript);
	}
}
END_TEST

START_TEST(test_auth_none_port_skips_auth)
{
	struct smtp_client *c = mk(SMTP_CLIENT_TLS_NONE, "u", SECRET, 0);

	feed(c, "220 mx\r\n250-mx\r\n250 AUTH PLAIN LOGIN\r\n");
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_READY);
	pull(c);
	ck_assert_str_eq(transcript.data, "EHLO " HELO "\r\n");
	smtp_client_free(c);
}
END_TEST

START_TEST(test_auth_failed_no_secret)
{
	struct smtp_client *c = mk(SMTP_CLIENT_TLS_IMPLICIT, "u", SECRET, 0);
	struct buf b;
	const char *reason;

	buf_init(&b, 4096);
	ck_assert_int_eq(sasl_plain(&b, "u", SECRET), 0);
	feed(c, "220 mx\r\n250-mx\r\n250 AUTH PLAIN\r\n");
	/* A server echoing the password and the response back at us. */
	feed(c, "535-5.7.8 bad credentials " SECRET "\r\n535 5.7.8 for ");
	feed(c, b.data);
	feed(c, "\r\n");
	assert_err(c, SMTP_CLIENT_E_AUTH_FAILED, "535 5.7.8 bad credentials");
	ck_assert_str_eq(smtp_client_error_reply(c)->enhanced, "5.7.8");
	ck_assert_int_eq(smtp_client_error_reply(c)->stage, SMTP_CLIENT_STAGE_AUTH);
	smtp_client_error(c, &reason);
	ck_assert_msg(!strstr(reason, SECRET) && !strstr(reason, b.data), "%s", reason);
	ck_assert(!strstr(reason, "hunter2"));
	ck_assert(!strstr(smtp_client_error_reply(c)->text, SECRET));
	ck_assert(!strstr(smtp_client_error_reply(c)->text, b.data));
	buf_free(&b);
	smtp_client_free(c);

	c = mk(SMTP_CLIENT_TLS_IMPLICIT, "u", SECRET, 0);
	feed(c, "220 mx\r\n250-mx\r\n250 AUTH LOGIN\r\n334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n");
	feed(c, "454 4.7.0 Temporary authentication failure\r\n");
	assert_err(c, SMTP_CLIENT_E_TEMP, "454 4.7.0 Temporary authentication failure");
	smtp_client_error(c, &reason);
	ck_assert(!strstr(reason, SECRET));
	smtp_client_free(c);
}
END_TEST

START_TEST(test_auth_unexpected_challenge)
{
	struct smtp_client *c = mk(SMTP_CLIENT_TLS_IMPLICIT, "u", SECRET, SASL_PLAIN);

	feed(c, "220 mx\r\n250-mx\r\n250 AUTH PLAIN\r\n");
	expect_line(c, "EHLO " HELO);
	free(next_line(c));
	feed(c, "334 \r\n");
	expect_line(c, "*");	/* cancel (RFC 4954 §4) */
	feed(c, "501 5.7.0 cancelled\r\n");
	assert_err(c, SMTP_CLIENT_E_AUTH_FAILED, "501");
	smtp_client_free(c);
}
END_TEST

/* ---- transactions ---- */

START_TEST(test_pipelined_mixed_rcpts)
{
	struct smtp_client *c = session(EHLO_PIPE);
	struct smtp_client_msg m = msg2();
	const struct step s[] = {
		{ "MAIL FROM:<s@y.test> SIZE=300 BODY=8BITMIME", NULL },
		{ "RCPT TO:<a@x.test>", NULL },
		{ "RCPT TO:<b@x.test>", NULL },
		{ "DATA", "250 2.1.0 Ok\r\n550 5.1.1 <a@x.test>: Recipient address rejected\r\n"
			  "250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n" },
		{ NULL, NULL },
	};

	m.size = 300;
	m.eightbit = true;
	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	run(c, s);
	send_body(c, "x\r\n");
	expect_line(c, "x");
	expect_line(c, ".");
	feed(c, "250 2.0.0 Ok: queued as 12345\r\n");
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_MSG_DONE);
	assert_rcpt(c, 0, 550, "550 5.1.1 <a@x.test>: Recipient address rejected");
	ck_assert_int_eq(smtp_client_rcpt_result(c, 0)->stage, SMTP_CLIENT_STAGE_RCPT);
	assert_rcpt(c, 1, 250, "queued as 12345");
	ck_assert_int_eq(smtp_client_msg_result(c)->code, 250);
	ck_assert_ptr_null(smtp_client_rcpt_result(c, 2));
	smtp_client_free(c);
}
END_TEST

START_TEST(test_non_pipelined_rcpt_refused)
{
	struct smtp_client *c = session(EHLO_PLAIN);
	struct smtp_client_msg m = msg2();
	const struct step s[] = {
		{ "MAIL FROM:<s@y.test>", "250 ok\r\n" },
		{ "RCPT TO:<a@x.test>", "450 4.2.0 greylisted\r\n" },
		{ "RCPT TO:<b@x.test>", "250 ok\r\n" },
		{ "DATA", "354 go\r\n" },
		{ NULL, NULL },
	};

	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	run(c, s);
	send_body(c, "");
	expect_line(c, ".");
	feed(c, "250 queued\r\n");
	assert_rcpt(c, 0, 450, "greylisted");
	assert_rcpt(c, 1, 250, "250 queued");
	smtp_client_free(c);
}
END_TEST

START_TEST(test_mail_5xx)
{
	struct smtp_client *c = session(EHLO_PLAIN);
	struct smtp_client_msg m = msg2();

	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	expect_line(c, "MAIL FROM:<s@y.test>");
	expect_nothing(c);
	feed(c, "553 5.7.1 Sender address rejected: not owned by user\r\n");
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_MSG_DONE);
	expect_nothing(c);	/* no RCPT, no DATA */
	assert_rcpt(c, 0, 553, "not owned by user");
	assert_rcpt(c, 1, 553, "not owned by user");
	ck_assert_int_eq(smtp_client_msg_result(c)->code, 553);
	ck_assert_int_eq(smtp_client_msg_result(c)->stage, SMTP_CLIENT_STAGE_MAIL);
	ck_assert_str_eq(smtp_client_msg_result(c)->enhanced, "5.7.1");
	smtp_client_reset(c);
	expect_line(c, "RSET");
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_READY);
	/* Without PIPELINING the next MAIL waits for the RSET reply. */
	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	ck_assert_int_eq(smtp_client_msg_result(c)->code, 0);	/* nothing known yet */
	expect_nothing(c);
	feed(c, "250 ok\r\n");
	expect_line(c, "MAIL FROM:<s@y.test>");
	expect_nothing(c);
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_WAIT);
	smtp_client_free(c);
}
END_TEST

/* RFC 3463 codes as data: only a well-formed one of the reply's class. */
START_TEST(test_enhanced_codes)
{
	static const struct { const char *reply; const char *enhanced; } cases[] = {
		{ "550 5.4.5 Daily user sending quota exceeded\r\n", "5.4.5" },
		{ "554 5.7.14 <https://support.google.com> Please log in\r\n", "5.7.14" },
		{ "530-5.7.0 Authentication required\r\n530 5.7.0 see docs\r\n", "5.7.0" },
		{ "550 4.7.0 class differs from the code\r\n", "" },
		{ "550 5.7 too short\r\n", "" },
		{ "550 5.7.1234 detail too long\r\n", "" },
		{ "550 5.7.1x no space after\r\n", "" },
		{ "550 no enhanced code\r\n", "" },
		{ "550\r\n", "" },
		{ "550 5.1.1\r\n", "5.1.1" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_client *c = session(EHLO_PLAIN);
		struct smtp_client_msg m = msg2();

		ck_assert_int_eq(smtp_client_send(c, &m), 0);
		expect_line(c, "MAIL FROM:<s@y.test>");
		feed(c, cases[i].reply);
		ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_MSG_DONE);
		ck_assert_msg(strcmp(smtp_client_msg_result(c)->enhanced, cases[i].enhanced) == 0,
		    "%s: got \"%s\"", cases[i].reply, smtp_client_msg_result(c)->enhanced);
		smtp_client_free(c);
	}
}
END_TEST

/* The probe's test: MAIL FROM only, its reply (2xx too) is the result. */
START_TEST(test_mail_only)
{
	struct smtp_client *c = session(EHLO_PIPE);
	struct smtp_client_msg m = { .sender = "p@y.test", .mail_only = true };

	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	expect_line(c, "MAIL FROM:<p@y.test>");
	expect_nothing(c);	/* no RCPT, no DATA, even with PIPELINING */
	feed(c, "530 5.7.0 Authentication required\r\n");
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_MSG_DONE);
	ck_assert_int_eq(smtp_client_msg_result(c)->code, 530);
	ck_assert_str_eq(smtp_client_msg_result(c)->enhanced, "5.7.0");
	smtp_client_reset(c);
	expect_line(c, "RSET");
	feed(c, "250 ok\r\n");
	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	expect_line(c, "MAIL FROM:<p@y.test>");
	feed(c, "250 2.1.0 ok\r\n");
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_MSG_DONE);
	ck_assert_int_eq(smtp_client_msg_result(c)->code, 250);
	expect_nothing(c);
	/* Recipients with mail_only are a caller's mistake. */
	smtp_client_reset(c);
	expect_line(c, "RSET");
	feed(c, "250 ok\r\n");
	m.rcpts = two_rcpts;
	m.nrcpts = 2;
	ck_assert_int_eq(smtp_client_send(c, &m), -1);
	smtp_client_free(c);
}
END_TEST

START_TEST(test_mail_4xx_pipelined)
{
	struct smtp_client *c = session(EHLO_PIPE);
	struct smtp_client_msg m = msg2();
	const struct step s[] = {
		{ "MAIL FROM:<s@y.test>", NULL },
		{ "RCPT TO:<a@x.test>", NULL },
		{ "RCPT TO:<b@x.test>", NULL },
		{ "DATA", "454 4.7.0 Throttling failure: Maximum sending rate exceeded.\r\n"
			  "503 5.5.1 Error: need MAIL command\r\n503 5.5.1 Error: need MAIL command\r\n" },
		{ NULL, NULL },
	};

	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	run(c, s);
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_WAIT);	/* DATA reply due */
	feed(c, "554 5.5.1 Error: no valid recipients\r\n");
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_MSG_DONE);
	expect_nothing(c);
	assert_rcpt(c, 0, 454, "Throttling failure");
	assert_rcpt(c, 1, 454, "Throttling failure");
	ck_assert_int_eq(smtp_client_msg_result(c)->code, 454);
	ck_assert_int_eq(smtp_client_msg_result(c)->stage, SMTP_CLIENT_STAGE_MAIL);
	smtp_client_free(c);
}
END_TEST

START_TEST(test_data_4xx)
{
	struct smtp_client *c = session(EHLO_PIPE);
	struct smtp_client_msg m = msg2();

	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	feed(c, "250 ok\r\n550 no\r\n250 ok\r\n451 4.3.0 try later\r\n");
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_MSG_DONE);
	assert_rcpt(c, 0, 550, "550 no");
	assert_rcpt(c, 1, 451, "451 4.3.0 try later");
	ck_assert_int_eq(smtp_client_rcpt_result(c, 1)->stage, SMTP_CLIENT_STAGE_DATA);
	ck_assert_int_eq(smtp_client_msg_result(c)->code, 451);
	expect_line(c, "MAIL FROM:<s@y.test>");
	expect_line(c, "RCPT TO:<a@x.test>");
	expect_line(c, "RCPT TO:<b@x.test>");
	expect_line(c, "DATA");
	expect_nothing(c);
	smtp_client_free(c);
}
END_TEST

START_TEST(test_dot_5xx)
{
	struct smtp_client *c = session(EHLO_PLAIN);
	struct smtp_client_msg m = msg2();

	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	feed(c, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
	send_body(c, "spam\r\n");
	feed(c, "554 5.7.1 Message rejected: spam\r\n");
	assert_rcpt(c, 0, 554, "spam");
	assert_rcpt(c, 1, 554, "spam");
	ck_assert_int_eq(smtp_client_msg_result(c)->code, 554);
	smtp_client_free(c);
}
END_TEST

START_TEST(test_all_rcpts_refused)
{
	struct smtp_client *c = session(EHLO_PLAIN);
	struct smtp_client_msg m = msg2();
	const struct step s[] = {
		{ "MAIL FROM:<s@y.test>", "250 ok\r\n" },
		{ "RCPT TO:<a@x.test>", "550 5.1.1 unknown a\r\n" },
		{ "RCPT TO:<b@x.test>", "550 5.1.1 unknown b\r\n" },
		{ NULL, NULL },
	};

	/* Without PIPELINING, DATA is not even sent. */
	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	run(c, s);
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_MSG_DONE);
	expect_nothing(c);
	assert_rcpt(c, 0, 550, "unknown a");
	assert_rcpt(c, 1, 550, "unknown b");
	ck_assert_int_eq(smtp_client_msg_result(c)->code, 550);
	ck_assert_int_eq(smtp_client_msg_result(c)->stage, SMTP_CLIENT_STAGE_RCPT);
	smtp_client_free(c);

	/* Pipelined, a broken server answers DATA with 354 anyway: an empty
	 * message is ended and its result ignored. */
	c = session(EHLO_PIPE);
	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	feed(c, "250 ok\r\n550 5.1.1 unknown a\r\n550 5.1.1 unknown b\r\n354 go\r\n");
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_WAIT);
	expect_line(c, "MAIL FROM:<s@y.test>");
	expect_line(c, "RCPT TO:<a@x.test>");
	expect_line(c, "RCPT TO:<b@x.test>");
	expect_line(c, "DATA");
	expect_line(c, ".");
	expect_nothing(c);
	feed(c, "250 2.0.0 queued as NOTHING\r\n");
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_MSG_DONE);
	assert_rcpt(c, 0, 550, "unknown a");
	assert_rcpt(c, 1, 550, "unknown b");
	ck_assert_int_eq(smtp_client_msg_result(c)->code, 550);
	smtp_client_free(c);
}
END_TEST

/* Send body in chunks split at every position; return the wire bytes. */
static char *stuffed(const char *body, size_t split1, size_t split2)
{
	struct smtp_client *c = session(EHLO_PIPE);
	struct smtp_client_msg m = msg2();
	size_t len = strlen(body), n;
	const char *o;
	char *res;

	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	feed(c, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
	smtp_client_output(c, &n);
	smtp_client_consume_output(c, n);
	ck_assert_int_eq(smtp_client_data(c, body, split1, false), (ssize_t)split1);
	ck_assert_int_eq(smtp_client_data(c, body + split1, split2 - split1, false),
	    (ssize_t)(split2 - split1));
	ck_assert_int_eq(smtp_client_data(c, body + split2, len - split2, true),
	    (ssize_t)(len - split2));
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_WAIT);
	o = smtp_client_output(c, &n);
	res = strndup(o, n);
	smtp_client_free(c);
	buf_reset(&transcript);
	buf_reset(&outq);
	return res;
}

START_TEST(test_dot_stuffing)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ ".a\r\nb\r\n..c\r\n.\r\n", "..a\r\nb\r\n...c\r\n..\r\n.\r\n" },
		{ "x\r\n.\r\ny", "x\r\n..\r\ny\r\n.\r\n" },	/* no final CRLF */
		{ "abc", "abc\r\n.\r\n" },
		{ "a.b\r\n .c\r\n", "a.b\r\n .c\r\n.\r\n" },
		{ "", ".\r\n" },
		{ "bare\nlf\n.x", "bare\r\nlf\r\n..x\r\n.\r\n" },
		{ "bare\rcr\r.y\r", "bare\r\ncr\r\n..y\r\n.\r\n" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = strlen(cases[i].in);

		for (size_t a = 0; a <= len; a++) {
			for (size_t b = a; b <= len; b++) {
				char *got = stuffed(cases[i].in, a, b);

				ck_assert_msg(strcmp(got, cases[i].out) == 0,
				    "case %zu split %zu/%zu: \"%s\"", i, a, b, got);
				free(got);
			}
		}
	}
}
END_TEST

/* A big message goes through in bounded pieces, never all in memory. */
START_TEST(test_data_flow_control)
{
	struct smtp_client *c = session(EHLO_PIPE);
	struct smtp_client_msg m = msg2();
	size_t total = 1 << 20, off = 0, maxpend = 0, n, lines = 0;
	char *body = malloc(total);
	struct buf wire;

	ck_assert_ptr_nonnull(body);
	for (size_t i = 0; i < total; i++)
		body[i] = i % 64 == 62 ? '\r' : i % 64 == 63 ? '\n' : i % 64 == 0 ? '.' : 'a';
	buf_init(&wire, 4 << 20);
	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	feed(c, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
	smtp_client_output(c, &n);
	smtp_client_consume_output(c, n);
	while (smtp_client_action(c) == SMTP_CLIENT_NEED_DATA) {
		ssize_t took = smtp_client_data(c, body + off, total - off, true);
		const char *o;

		ck_assert_int_ge(took, 0);
		ck_assert_int_le(took, SMTP_CLIENT_DATA_CHUNK);
		off += (size_t)took;
		o = smtp_client_output(c, &n);
		maxpend = n > maxpend ? n : maxpend;
		if (took == 0 || off % (3 * SMTP_CLIENT_DATA_CHUNK) == 0) {
			/* The network drains it. */
			ck_assert_int_eq(buf_append(&wire, o, n), 0);
			smtp_client_consume_output(c, n);
		}
	}
	ck_assert_uint_eq(off, total);
	ck_assert_uint_le(maxpend, 4 * SMTP_CLIENT_DATA_CHUNK);
	{
		const char *o = smtp_client_output(c, &n);

		ck_assert_int_eq(buf_append(&wire, o, n), 0);
	}
	/* Every line had its leading dot doubled, plus the terminator. */
	for (size_t i = 0; i + 1 < wire.len; i++)
		lines += wire.data[i] == '\n' && wire.data[i + 1] == '.' && i + 2 < wire.len
		    && wire.data[i + 2] == '.';
	ck_assert_uint_eq(wire.len, total + total / 64 + 3);
	ck_assert_uint_eq(lines, total / 64 - 1);
	ck_assert_int_eq(memcmp(wire.data + wire.len - 5, "\r\n.\r\n", 5), 0);
	buf_free(&wire);
	free(body);
	smtp_client_free(c);
}
END_TEST

START_TEST(test_rset_reuse)
{
	struct smtp_client *c = session(EHLO_PIPE);
	struct smtp_client_msg m = msg2();

	for (int i = 0; i < 3; i++) {
		char queued[64];
		const struct step s[] = {
			{ "RSET", NULL },	/* pipelined before the next MAIL */
			{ "MAIL FROM:<s@y.test>", NULL },
			{ "RCPT TO:<a@x.test>", NULL },
			{ "RCPT TO:<b@x.test>", NULL },
			{ "DATA", i ? "250 2.0.0 Ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"
				    : "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n" },
			{ NULL, NULL },
		};

		ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_READY);
		ck_assert_int_eq(smtp_client_send(c, &m), 0);
		run(c, i ? s : s + 1);
		send_body(c, "msg\r\n");
		expect_line(c, "msg");
		expect_line(c, ".");
		snprintf(queued, sizeof(queued), "250 2.0.0 Ok: queued as Q%d\r\n", i);
		feed(c, queued);
		ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_MSG_DONE);
		snprintf(queued, sizeof(queued), "queued as Q%d", i);
		assert_rcpt(c, 0, 250, queued);
		assert_rcpt(c, 1, 250, queued);
		smtp_client_reset(c);
	}
	smtp_client_quit(c);
	expect_line(c, "RSET");
	expect_line(c, "QUIT");
	feed(c, "250 ok\r\n221 bye\r\n");
	assert_err(c, SMTP_CLIENT_OK, NULL);
	smtp_client_free(c);
}
END_TEST

START_TEST(test_421_mid_session)
{
	struct smtp_client *c = session(EHLO_PIPE);
	const char *const r3[] = { "a@x.test", "b@x.test", "c@x.test" };
	struct smtp_client_msg m = { .sender = "s@y.test", .rcpts = r3, .nrcpts = 3 };

	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	feed(c, "250 ok\r\n250 ok\r\n550 5.1.1 unknown b\r\n421 4.4.2 mx.test Error: timeout exceeded\r\n");
	assert_err(c, SMTP_CLIENT_E_TEMP, "421 4.4.2 mx.test Error: timeout exceeded");
	ck_assert_int_eq(smtp_client_stage(c), SMTP_CLIENT_STAGE_RCPT);
	assert_rcpt(c, 0, 421, "timeout exceeded");	/* accepted, never delivered */
	assert_rcpt(c, 1, 550, "unknown b");
	assert_rcpt(c, 2, 421, "timeout exceeded");
	ck_assert(!smtp_client_rcpt_result(c, 2)->local);
	ck_assert_int_eq(smtp_client_msg_result(c)->code, 421);
	ck_assert_int_eq(smtp_client_send(c, &m), -1);
	smtp_client_free(c);

	/* Unsolicited 421 while idle. */
	c = session(EHLO_PIPE);
	feed(c, "421 4.3.2 Service shutting down\r\n");
	assert_err(c, SMTP_CLIENT_E_TEMP, "Service shutting down");
	smtp_client_free(c);
}
END_TEST

START_TEST(test_timeout_and_eof_in_txn)
{
	struct smtp_client *c = session(EHLO_PIPE);
	struct smtp_client_msg m = msg2();
	const struct smtp_client_result *r;

	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	feed(c, "250 ok\r\n250 ok\r\n550 no\r\n354 go\r\n");
	send_body(c, "hello\r\n");
	smtp_client_timeout(c);
	assert_err(c, SMTP_CLIENT_E_TIMEOUT, "timed out while sending end of data");
	ck_assert_int_eq(smtp_client_stage(c), SMTP_CLIENT_STAGE_DOT);
	r = smtp_client_rcpt_result(c, 0);
	ck_assert_int_eq(r->code, 421);
	ck_assert(r->local);
	ck_assert_msg(strstr(r->text, "4.4.2 conversation timed out") != NULL, "%s", r->text);
	assert_rcpt(c, 1, 550, "550 no");
	smtp_client_eof(c);	/* already closed: no change */
	assert_err(c, SMTP_CLIENT_E_TIMEOUT, NULL);
	smtp_client_free(c);

	c = session(EHLO_PLAIN);
	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	feed(c, "250 ok\r\n");
	smtp_client_eof(c);
	assert_err(c, SMTP_CLIENT_E_EOF, "lost connection while sending RCPT TO");
	assert_rcpt(c, 0, 421, "4.4.2 lost connection");
	assert_rcpt(c, 1, 421, "4.4.2 lost connection");
	smtp_client_free(c);
}
END_TEST

START_TEST(test_multiline_replies)
{
	struct smtp_client *c = session("250-mx.test Hello\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n"
	    "250-ETRN\r\n250-AUTH=PLAIN LOGIN\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n"
	    "250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n");
	const struct smtp_client_ehlo *e = smtp_client_ehlo(c);
	struct smtp_client_msg m = msg2();

	ck_assert(e->pipelining && e->eightbitmime && e->smtputf8 && e->dsn);
	ck_assert(e->enhancedstatuscodes && e->size_ext && !e->starttls);
	ck_assert_uint_eq(e->size, 52428800);
	ck_assert_uint_eq(e->auth_offered, SASL_PLAIN | SASL_LOGIN);
	ck_assert_str_eq(e->auth_raw, "PLAIN LOGIN");
	ck_assert_str_eq(e->raw, "PIPELINING SIZE ETRN AUTH ENHANCEDSTATUSCODES 8BITMIME DSN SMTPUTF8 CHUNKING");
	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	feed(c, "250 ok\r\n550-5.1.1 The email account that you tried to reach does not exist.\r\n"
	    "550-5.1.1 Please try double-checking\r\n550 5.1.1 https://support.example/\r\n"
	    "250 ok\r\n");
	feed(c, "354 go\r\n");
	assert_rcpt(c, 0, 550, "550 5.1.1 The email account that you tried to reach does not exist.; "
	    "5.1.1 Please try double-checking; 5.1.1 https://support.example/");
	smtp_client_free(c);

	/* Code changing within a reply. */
	c = mk(SMTP_CLIENT_TLS_NONE, NULL, NULL, 0);
	feed(c, "220-mx\r\n250 ok\r\n");
	assert_err(c, SMTP_CLIENT_E_PROTOCOL, "reply code changed");
	smtp_client_free(c);
}
END_TEST

START_TEST(test_bad_replies)
{
	struct smtp_client_params p = { .helo_name = HELO, .tls = SMTP_CLIENT_TLS_NONE,
		.line_max = 128, .lines_max = 5 };
	static const char *const bad[] = { "hello\r\n", "22\r\n", "2200 x\r\n", "620 x\r\n", "2x0 x\r\n",
		"\x15\x01zz\r\n" };
	struct smtp_client *c;
	char line[300];

	/* Overlong line, even when split over many reads. */
	c = smtp_client_new(&p);
	ck_assert_ptr_nonnull(c);
	memset(line, 'a', sizeof(line));
	memcpy(line, "220 ", 4);
	for (size_t i = 0; i < sizeof(line) && smtp_client_action(c) != SMTP_CLIENT_CLOSED; i += 10)
		smtp_client_input(c, line + i, 10);
	assert_err(c, SMTP_CLIENT_E_PROTOCOL, "reply line too long");
	smtp_client_free(c);

	/* Exactly line_max is fine. */
	c = smtp_client_new(&p);
	memset(line, 'b', 128);
	memcpy(line, "220 ", 4);
	memcpy(line + 128, "\r\n", 3);
	feed(c, line);
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_WAIT);
	expect_line(c, "EHLO " HELO);
	/* Too many lines. */
	feed(c, "250-a\r\n250-b\r\n250-c\r\n250-d\r\n250-e\r\n250 f\r\n");
	assert_err(c, SMTP_CLIENT_E_PROTOCOL, "too many lines");
	smtp_client_free(c);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		c = smtp_client_new(&p);
		ck_assert_int_eq(smtp_client_input(c, bad[i], strlen(bad[i])), -1);
		assert_err(c, SMTP_CLIENT_E_PROTOCOL, "malformed reply line");
		smtp_client_free(c);
	}

	/* A reply nobody asked for. */
	c = session(EHLO_PIPE);
	feed(c, "250 surprise\r\n");
	assert_err(c, SMTP_CLIENT_E_PROTOCOL, "unexpected reply");
	smtp_client_free(c);

	/* Bare LF line ends and a code-only line are accepted. */
	c = mk(SMTP_CLIENT_TLS_NONE, NULL, NULL, 0);
	feed(c, "220\n250\n");
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_READY);
	smtp_client_free(c);
}
END_TEST

START_TEST(test_size_exceeded)
{
	struct smtp_client *c = session(EHLO_PIPE);
	struct smtp_client_msg m = msg2();

	m.size = 1000001;
	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_MSG_DONE);
	expect_nothing(c);
	assert_rcpt(c, 0, 552, "5.3.4 message size 1000001 exceeds size limit 1000000");
	ck_assert(smtp_client_rcpt_result(c, 1)->local);
	ck_assert_int_eq(smtp_client_msg_result(c)->code, 552);
	/* Nothing reached the server: no RSET needed. */
	smtp_client_reset(c);
	expect_nothing(c);
	m.size = 1000000;
	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	expect_line(c, "MAIL FROM:<s@y.test> SIZE=1000000");
	smtp_client_free(c);
}
END_TEST

START_TEST(test_smtputf8)
{
	struct smtp_client *c = session(EHLO_PIPE);
	const char *const r[] = { "j\xc3\xb6rg@b\xc3\xbc" "cher.test" };
	struct smtp_client_msg m = { .sender = "", .rcpts = r, .nrcpts = 1, .smtputf8 = true };

	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_MSG_DONE);
	expect_nothing(c);
	assert_rcpt(c, 0, 554, "5.6.7 server does not support SMTPUTF8");
	smtp_client_free(c);

	c = session("250-mx\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n");
	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	expect_line(c, "MAIL FROM:<> SMTPUTF8");
	expect_line(c, "RCPT TO:<j\xc3\xb6rg@b\xc3\xbc" "cher.test>");
	smtp_client_free(c);
}
END_TEST

START_TEST(test_dsn_params)
{
	const char *const r[] = { "a@x.test", "b@x.test", "c@x.test" };
	const char *const o[] = { "A+b=c@x.test", NULL, "rfc822;orig+2Bc@x.test" };
	const unsigned n[] = { SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE,
		SMTP_NOTIFY_NEVER, 0 };
	struct smtp_client_msg m = { .sender = "s@y.test", .rcpts = r, .nrcpts = 3,
		.envid = "id 1+2", .ret = SMTP_RET_HDRS, .notify = n, .orcpts = o };
	struct smtp_client *c = session(EHLO_PIPE);

	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	expect_line(c, "MAIL FROM:<s@y.test> RET=HDRS ENVID=id+201+2B2");
	expect_line(c, "RCPT TO:<a@x.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;A+2Bb+3Dc@x.test");
	expect_line(c, "RCPT TO:<b@x.test> NOTIFY=NEVER");
	expect_line(c, "RCPT TO:<c@x.test> ORCPT=rfc822;orig+2Bc@x.test");
	expect_line(c, "DATA");
	smtp_client_free(c);

	/* Without DSN offered, none of it is sent. */
	c = session(EHLO_PLAIN);
	m.eightbit = true;
	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	expect_line(c, "MAIL FROM:<s@y.test> BODY=8BITMIME");
	feed(c, "250 ok\r\n");
	expect_line(c, "RCPT TO:<a@x.test>");
	smtp_client_free(c);

	/* The DSN values are stored as numbers in the queue's envelope files. */
	ck_assert_int_eq(SMTP_NOTIFY_NEVER, 1);
	ck_assert_int_eq(SMTP_NOTIFY_SUCCESS, 2);
	ck_assert_int_eq(SMTP_NOTIFY_FAILURE, 4);
	ck_assert_int_eq(SMTP_NOTIFY_DELAY, 8);
	ck_assert_int_eq(SMTP_RET_FULL, 1);
	ck_assert_int_eq(SMTP_RET_HDRS, 2);
}
END_TEST

START_TEST(test_bad_input_rejected)
{
	struct smtp_client_params p = { .helo_name = "bad name", .tls = SMTP_CLIENT_TLS_NONE };
	const char *const r[] = { "a@x.test\r\nDATA" };
	struct smtp_client_msg m = { .sender = "s@y.test", .rcpts = r, .nrcpts = 1 };
	struct smtp_client *c;
	size_t n;

	ck_assert_ptr_null(smtp_client_new(&p));
	p.helo_name = HELO;
	p.username = "u";	/* credentials without a secret */
	ck_assert_ptr_null(smtp_client_new(&p));
	p.secret = "x\001y";
	ck_assert_ptr_null(smtp_client_new(&p));

	c = session(EHLO_PIPE);
	ck_assert_int_eq(smtp_client_send(c, &m), -1);	/* CRLF injection */
	m.nrcpts = 0;
	ck_assert_int_eq(smtp_client_send(c, &m), -1);
	ck_assert_int_eq(smtp_client_data(c, "x", 1, true), -1);
	ck_assert_int_eq(smtp_client_action(c), SMTP_CLIENT_READY);
	ck_assert_ptr_null(smtp_client_output(c, &n));
	ck_assert_ptr_null(smtp_client_msg_result(c));
	smtp_client_free(c);
}
END_TEST

START_TEST(test_quit_paths)
{
	struct smtp_client *c = session(EHLO_PLAIN);
	struct smtp_client_msg m = msg2();

	smtp_client_quit(c);
	expect_line(c, "QUIT");
	smtp_client_eof(c);	/* some servers just close */
	assert_err(c, SMTP_CLIENT_OK, NULL);
	smtp_client_free(c);

	/* Abort mid-transaction: recipients deferred, nothing more sent. */
	c = session(EHLO_PLAIN);
	ck_assert_int_eq(smtp_client_send(c, &m), 0);
	expect_line(c, "MAIL FROM:<s@y.test>");
	smtp_client_quit(c);
	assert_err(c, SMTP_CLIENT_OK, "aborted");
	assert_rcpt(c, 0, 421, "4.4.2 session aborted while sending MAIL FROM");
	expect_nothing(c);
	smtp_client_free(c);
}
END_TEST

START_TEST(test_sasl_helpers)
{
	struct buf b;

	buf_init(&b, 1024);
	ck_assert_int_eq(sasl_b64_decode(&b, " aGVsbG8= \r\n", 12), 0);
	ck_assert_str_eq(b.data, "hello");
	buf_reset(&b);
	ck_assert_int_eq(sasl_b64_decode(&b, "aGVsbG8", 7), -1);
	ck_assert_int_eq(sasl_b64_decode(&b, "a!==", 4), -1);
	ck_assert_int_eq(sasl_b64_encode(&b, "hello", 5), 0);
	ck_assert_str_eq(b.data, "aGVsbG8=");
	buf_free(&b);
}
END_TEST

static Suite *client_suite(void)
{
	Suite *s = suite_create("smtp_client");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_plain_session);
	tcase_add_test(tc, test_greeting_rejected);
	tcase_add_test(tc, test_starttls_flow);
	tcase_add_test(tc, test_starttls_missing);
	tcase_add_test(tc, test_starttls_refused);
	tcase_add_test(tc, test_starttls_injection);
	tcase_add_test(tc, test_implicit_tls);
	tcase_add_test(tc, test_tls_record_greeting);
	tcase_add_test(tc, test_greeting_timeout_hint);
	tcase_add_test(tc, test_helo_fallback);
	tcase_add_test(tc, test_ehlo_temp);
	tcase_add_test(tc, test_auth_xoauth2);
	tcase_add_test(tc, test_auth_oauthbearer);
	tcase_add_test(tc, test_mech_selection);
	tcase_add_test(tc, test_auth_none_port_skips_auth);
	tcase_add_test(tc, test_auth_failed_no_secret);
	tcase_add_test(tc, test_auth_unexpected_challenge);
	tcase_add_test(tc, test_pipelined_mixed_rcpts);
	tcase_add_test(tc, test_non_pipelined_rcpt_refused);
	tcase_add_test(tc, test_mail_5xx);
	tcase_add_test(tc, test_enhanced_codes);
	tcase_add_test(tc, test_mail_only);
	tcase_add_test(tc, test_mail_4xx_pipelined);
	tcase_add_test(tc, test_data_4xx);
	tcase_add_test(tc, test_dot_5xx);
	tcase_add_test(tc, test_all_rcpts_refused);
	tcase_add_test(tc, test_dot_stuffing);
	tcase_add_test(tc, test_data_flow_control);
	tcase_add_test(tc, test_rset_reuse);
	tcase_add_test(tc, test_421_mid_session);
	tcase_add_test(tc, test_timeout_and_eof_in_txn);
	tcase_add_test(tc, test_multiline_replies);
	tcase_add_test(tc, test_bad_replies);
	tcase_add_test(tc, test_size_exceeded);
	tcase_add_test(tc, test_smtputf8);
	tcase_add_test(tc, test_dsn_params);
	tcase_add_test(tc, test_bad_input_rejected);
	tcase_add_test(tc, test_quit_paths);
	tcase_add_test(tc, test_sasl_helpers);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ckrun(client_suite());
}
