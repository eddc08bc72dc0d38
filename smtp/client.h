/* Transport-free SMTP client state machine (RFC 5321, 3207, 4954, 2920, 3461).
 *
 * The driver (delivery daemon on libevent bufferevents, `smtprelay probe`,
 * tests) owns the connection, TLS and clocks.  It feeds received bytes with
 * smtp_client_input(), reports EOF, timeouts and a finished STARTTLS
 * handshake, sends whatever smtp_client_output() returns, and asks
 * smtp_client_action() what to do next:
 *
 *   WAIT       flush output, wait for input (arm command_timeout)
 *   START_TLS  flush output, run the TLS handshake, then smtp_client_tls_ready()
 *   READY      session set up: smtp_client_send() a message or smtp_client_quit()
 *   NEED_DATA  feed the content with smtp_client_data() while output drains
 *   MSG_DONE   read the results, then smtp_client_reset() or smtp_client_quit()
 *   CLOSED     close the connection (optionally flush pending output first:
 *              a courtesy QUIT); see smtp_client_error()
 *
 * Policy (smtprelayd(8) "Delivery"): credentials are only used on a TLS session.  With
 * SMTP_CLIENT_TLS_NONE ("PORT/none", internal relays) a configured username
 * is ignored and no AUTH is sent.  In STARTTLS mode a server without
 * STARTTLS (or without EHLO) fails the session; it never goes on in
 * plaintext.  With credentials on a TLS session, a server that cannot
 * authenticate fails the session.  The secret never appears in any reason
 * or result text (server echoes of it are masked too).
 *
 * Memory is bounded: reply lines by line_max, replies by lines_max, content
 * by SMTP_CLIENT_DATA_CHUNK per call (smtp_client_data takes nothing while
 * more than that is waiting to be sent).
 */
#ifndef SMTPRELAY_SMTP_CLIENT_H
#define SMTPRELAY_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "smtp/dsnparam.h"

#define SMTP_CLIENT_LINE_MAX 4096	/* default bound on a reply line */
#define SMTP_CLIENT_LINES_MAX 200	/* default bound on lines per reply */
#define SMTP_CLIENT_DATA_CHUNK 65536	/* content taken per smtp_client_data call */
#define SMTP_CLIENT_ADDR_MAX 1000	/* longest address accepted in an envelope */
#define SMTP_CLIENT_RCPTS_MAX 100000
#define SMTP_CLIENT_TEXT_MAX 512
#define SMTP_CLIENT_REASON_MAX 1024

enum smtp_client_tls {
	SMTP_CLIENT_TLS_NONE,
	SMTP_CLIENT_TLS_STARTTLS,
	SMTP_CLIENT_TLS_IMPLICIT,	/* the driver did the handshake before the greeting */
};

struct smtp_client_params {
	const char *helo_name;		/* our hostname for EHLO/HELO */
	enum smtp_client_tls tls;
	const char *username;		/* NULL: no AUTH */
	const char *secret;		/* password or OAuth2 access token; copied, wiped on free */
	unsigned auth_mechs;		/* allowed SASL_* bits (smtp/sasl.h); 0 = PLAIN or LOGIN, best offered */
	const char *server_host;	/* for OAUTHBEARER host= (NULL: left out) */
	unsigned server_port;		/* for OAUTHBEARER port= (0: left out) */
	size_t line_max;		/* 0 = SMTP_CLIENT_LINE_MAX, else 64..1 MiB */
	size_t lines_max;		/* 0 = SMTP_CLIENT_LINES_MAX */
};

enum smtp_client_action {
	SMTP_CLIENT_WAIT,
	SMTP_CLIENT_START_TLS,
	SMTP_CLIENT_READY,
	SMTP_CLIENT_NEED_DATA,
	SMTP_CLIENT_MSG_DONE,
	SMTP_CLIENT_CLOSED,
};

/* Where the conversation is (or was, once CLOSED). */
enum smtp_client_stage {
	SMTP_CLIENT_STAGE_GREETING,
	SMTP_CLIENT_STAGE_EHLO,
	SMTP_CLIENT_STAGE_HELO,
	SMTP_CLIENT_STAGE_STARTTLS,
	SMTP_CLIENT_STAGE_TLS,		/* between 220 to STARTTLS and tls_ready */
	SMTP_CLIENT_STAGE_AUTH,
	SMTP_CLIENT_STAGE_IDLE,
	SMTP_CLIENT_STAGE_RSET,
	SMTP_CLIENT_STAGE_MAIL,
	SMTP_CLIENT_STAGE_RCPT,
	SMTP_CLIENT_STAGE_DATA,		/* the DATA command */
	SMTP_CLIENT_STAGE_CONTENT,	/* sending the message body */
	SMTP_CLIENT_STAGE_DOT,		/* waiting for the reply to end of data */
	SMTP_CLIENT_STAGE_QUIT,
};

enum smtp_client_error {
	SMTP_CLIENT_OK,
	SMTP_CLIENT_E_GREETING,		/* greeting other than 220 (421: E_TEMP) */
	SMTP_CLIENT_E_PROTOCOL,		/* garbage, overlong, unexpected or injected replies */
	SMTP_CLIENT_E_TLS_MODE,		/* TLS record where a plaintext greeting was expected */
	SMTP_CLIENT_E_STARTTLS_MISSING,	/* STARTTLS mode, server does not offer it */
	SMTP_CLIENT_E_STARTTLS_REFUSED,	/* STARTTLS answered with other than 220 */
	SMTP_CLIENT_E_AUTH_UNSUPPORTED,	/* credentials set, no allowed mechanism offered */
	SMTP_CLIENT_E_AUTH_FAILED,	/* 5xx to AUTH (535...) */
	SMTP_CLIENT_E_TIMEOUT,
	SMTP_CLIENT_E_EOF,
	SMTP_CLIENT_E_TEMP,		/* 421 anywhere, 4xx to EHLO/HELO/AUTH */
	SMTP_CLIENT_E_REJECTED,		/* 5xx to HELO or RSET, 5xx while sending content */
	SMTP_CLIENT_E_INTERNAL,		/* out of memory, output bound exceeded */
};

struct smtp_client_msg {
	const char *sender;		/* "" for the null sender <> */
	const char *const *rcpts;
	size_t nrcpts;			/* 1..SMTP_CLIENT_RCPTS_MAX */
	uint64_t size;			/* content bytes for SIZE=; 0 = unknown */
	bool eightbit;			/* BODY=8BITMIME when offered */
	bool smtputf8;			/* SMTPUTF8 needed: fails locally when not offered */
	const char *envid;		/* DSN ENVID (plain text, xtext-encoded here) or NULL */
	int ret;			/* enum smtp_ret */
	const unsigned *notify;		/* per recipient SMTP_NOTIFY_* bits (0 = none), or NULL */
	const char *const *orcpts;	/* per recipient original address, NULL entries / NULL = none;
					 * "type;xtext" (e.g. "rfc822;a+2Bb@x") is sent as is */
	/* `smtprelay probe`: MAIL FROM only (no recipients, nothing sent): its
	 * reply is the message result (2xx included), then MSG_DONE. */
	bool mail_only;
};

/* Outcome for a recipient or a message.  code: 2xx delivered/accepted,
 * 4xx deferred, 5xx failed, 0 none yet.  text is the server's reply
 * ("550 5.1.1 <x@y>: unknown; second line"), or a made-up one when local. */
#define SMTP_CLIENT_ENHANCED_MAX 12	/* "5.999.999" */

struct smtp_client_result {
	int code;
	bool local;			/* not said by the server (SIZE, SMTPUTF8, lost connection) */
	enum smtp_client_stage stage;	/* the command this is the reply to */
	char text[SMTP_CLIENT_TEXT_MAX];
	/* RFC 3463 enhanced status code of the reply's first line ("5.7.0"),
	 * "" when it has none or its class differs from the code's. */
	char enhanced[SMTP_CLIENT_ENHANCED_MAX];
};

/* Extensions from the last successful EHLO (cleared by STARTTLS, RFC 3207). */
struct smtp_client_ehlo {
	bool pipelining, starttls, eightbitmime, smtputf8, dsn, enhancedstatuscodes;
	bool size_ext;			/* SIZE offered */
	uint64_t size;			/* its limit; 0 = none given */
	unsigned auth_offered;		/* SASL_* bits (smtp/sasl.h) we know */
	char auth_raw[256];		/* every mechanism offered, space-separated */
	char raw[1024];			/* extension keywords, space-separated */
};

struct smtp_client;

/* NULL with errno EINVAL (bad or overlong parameter: control characters in
 * helo_name/username, ^A in the secret, username without secret) or ENOMEM. */
struct smtp_client *smtp_client_new(const struct smtp_client_params *p);
void smtp_client_free(struct smtp_client *c);

/* Events.  input returns 0, or -1 when the session failed (action CLOSED). */
int smtp_client_input(struct smtp_client *c, const char *data, size_t len);
void smtp_client_tls_ready(struct smtp_client *c);
void smtp_client_eof(struct smtp_client *c);
void smtp_client_timeout(struct smtp_client *c);

/* Bytes to send (NULL/0 when none), and how many were sent. */
const char *smtp_client_output(struct smtp_client *c, size_t *len);
void smtp_client_consume_output(struct smtp_client *c, size_t len);

enum smtp_client_action smtp_client_action(const struct smtp_client *c);
enum smtp_client_stage smtp_client_stage(const struct smtp_client *c);
/* "greeting", "EHLO", "MAIL FROM", "RCPT TO", "end of DATA"... for
 * "(in reply to %s command)" style log text. */
const char *smtp_client_stage_name(enum smtp_client_stage s);

/* Start a transaction; only in READY.  Pipelined when offered (RFC 2920).
 * A local refusal (SIZE over the server's limit, SMTPUTF8 not offered) goes
 * straight to MSG_DONE without sending anything.  0, or -1 with errno
 * EINVAL (wrong state, bad envelope: control characters, overlong) or ENOMEM. */
int smtp_client_send(struct smtp_client *c, const struct smtp_client_msg *m);
/* Content with CRLF line ends, in order, in NEED_DATA.  Dot-stuffed here
 * (across calls), bare CR or LF become CRLF, a missing final CRLF is added,
 * then "." ends it when last is set and everything was taken (the action
 * then leaves NEED_DATA).  Returns the number of bytes taken, at most
 * SMTP_CLIENT_DATA_CHUNK, 0 while that much waits to be sent (drain the
 * output and call again), or -1 (EINVAL, ENOMEM). */
ssize_t smtp_client_data(struct smtp_client *c, const char *data, size_t len, bool last);
/* After MSG_DONE: RSET (pipelined when offered) and back to READY at once. */
void smtp_client_reset(struct smtp_client *c);
/* In READY or MSG_DONE: send QUIT, CLOSED once answered.  Elsewhere: abort
 * at once (unfinished recipients are deferred). */
void smtp_client_quit(struct smtp_client *c);

/* Results of the current (or last, once CLOSED) transaction, until reset.
 * After a failure mid-transaction every recipient without a final answer
 * holds a 4xx deferral. */
size_t smtp_client_nrcpts(const struct smtp_client *c);
const struct smtp_client_result *smtp_client_rcpt_result(const struct smtp_client *c, size_t i);
/* The MAIL or DATA failure, the final reply to end of data, the first
 * recipient refusal when none was accepted, or a local refusal; NULL when
 * no transaction was started. */
const struct smtp_client_result *smtp_client_msg_result(const struct smtp_client *c);

/* Session failure: a sentence naming the stage and quoting the server
 * ("server refused STARTTLS: 454 4.7.0 TLS not available"); "" while all is
 * well ("session aborted while ..." after smtp_client_quit mid-way, with OK). */
enum smtp_client_error smtp_client_error(const struct smtp_client *c, const char **reason);
/* The server reply behind the error (code 0 when none, e.g. timeouts). */
const struct smtp_client_result *smtp_client_error_reply(const struct smtp_client *c);

const struct smtp_client_ehlo *smtp_client_ehlo(const struct smtp_client *c);
/* The server's greeting ("220 smtp.example.com ESMTP ready", lines joined
 * with "; ", control characters replaced), "" until it arrived. */
const char *smtp_client_greeting(const struct smtp_client *c);
/* The SASL_* (smtp/sasl.h) mechanism that authenticated the session, 0 when none. */
unsigned smtp_client_auth_used(const struct smtp_client *c);
/* Mechanism name for a SASL_* (smtp/sasl.h) bit ("PLAIN"), "" when unknown. */
const char *smtp_client_mech_name(unsigned mech);

#endif
