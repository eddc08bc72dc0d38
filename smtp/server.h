/* Transport-free RFC 5321 server state machine.
 *
 * The driver (daemon listener, `sendmail -bs`, tests, fuzzers) feeds the
 * bytes it received with smtp_server_input() and sends whatever
 * smtp_server_output() returns.  Storing a message is delegated to a sink
 * (the queue): 250 is answered to DATA only after sink->commit returned
 * success, at once or, for a commit done in the background, when the driver
 * reports it with smtp_server_commit_done().  No I/O and no clocks in here: the driver
 * reports idle timeouts with smtp_server_timeout().
 */
#ifndef SMTPRELAY_SMTP_SERVER_H
#define SMTPRELAY_SMTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#define SMTP_LINE_MAX 512		/* command line incl. CRLF (RFC 5321 §4.5.3.1.4) */
#define SMTP_OUT_HIGH 65536		/* replies pending: stop reading commands */
#define SMTP_IN_MAX (1024 * 1024)	/* unprocessed input kept at most */
#define SMTP_SERVER_ID_SIZE 64		/* room for the id a sink's commit returns */

struct smtp_reply {
	int code;			/* e.g. 452 */
	char text[256];			/* e.g. "4.3.1 Insufficient system storage" */
};

struct smtp_envelope_in {
	const char *helo;
	bool esmtp;			/* the client greeted with EHLO */
	const char *sender;		/* "" for <> */
	char *const *rcpts;
	size_t nrcpts;
	bool eightbit;			/* BODY=8BITMIME */
	bool smtputf8;
	const char *envid;		/* ENVID= xtext-decoded, or NULL */
	int ret;			/* 0 none, 1 FULL, 2 HDRS (enum smtp_ret) */
	const unsigned *notify;		/* per recipient, q_notify bits (0 = not given) */
	char *const *orcpts;		/* per recipient ORCPT= decoded as "rfc822;addr",
					 * or NULL entries */
};

/* Storage supplied by the driver.  Each returns 0, or -1 after filling *fail
 * with the reply to send (e.g. 452 4.3.1, 554 5.7.1; a code outside 400..599
 * becomes 451, non-printable text is dropped).  begin, write and commit are
 * required.  Addresses are as the client sent them (bare names such as
 * "root" unqualified, "" for the null sender).
 * Storage is open from a successful begin until commit is called or abort
 * is: abort is called exactly then (RSET, EHLO, QUIT, EOF, timeout, free
 * while in DATA; a write failure; content over max_message_size), never
 * after commit, which must release its storage whether it succeeds or not. */
struct smtp_server_sink {
	/* Check one recipient at RCPT time (may be NULL: accept all valid). */
	int (*rcpt)(void *ctx, const char *rcpt, struct smtp_reply *fail);
	/* After DATA and before 354: open storage for this envelope. */
	int (*begin)(void *ctx, const struct smtp_envelope_in *env, struct smtp_reply *fail);
	/* Message content: dot-unstuffed, CRLF line ends only, in order. */
	int (*write)(void *ctx, const char *data, size_t len, struct smtp_reply *fail);
	/* End of data: make durable.  On success fill ok->text's queue id part
	 * (the server sends "250 2.0.0 Ok: queued as ID"), fill queue_id.
	 * Returning 1 means "committing in the background": the server answers
	 * nothing and reads no further input until the driver calls
	 * smtp_server_commit_done (storage is released as for a return). */
	int (*commit)(void *ctx, char *queue_id, size_t idlen, struct smtp_reply *fail);
	/* The transaction is abandoned (RSET, error, oversize, disconnect). */
	void (*abort)(void *ctx);
};

struct smtp_server_params {
	const char *hostname;		/* greeting and EHLO */
	bool peer_allowed;		/* false: 554 greeting, 503 to all but QUIT */
	size_t max_message_size;	/* SIZE and the 552 5.3.4 limit */
	unsigned max_recipients;
	const struct smtp_server_sink *sink;
	void *sink_ctx;
};

struct smtp_server;

struct smtp_server *smtp_server_new(const struct smtp_server_params *p);
void smtp_server_free(struct smtp_server *s);
/* Input received from the client; returns 0, or -1 (ENOMEM; ENOBUFS when
 * more than SMTP_IN_MAX bytes wait because replies are not being read):
 * the session is then closed with a 421 queued and the driver drops it. */
int smtp_server_input(struct smtp_server *s, const char *data, size_t len);
/* The peer closed its side: abort any transaction. */
void smtp_server_eof(struct smtp_server *s);
/* A commit that returned 1 is over: queue_id when durable, else fail is
 * the reply; input held meanwhile is processed.  Ignored unless committing
 * (the session may have been closed by a timeout in between). */
void smtp_server_commit_done(struct smtp_server *s, const char *queue_id,
    const struct smtp_reply *fail);
/* true from a commit that returned 1 until smtp_server_commit_done. */
bool smtp_server_committing(const struct smtp_server *s);
/* The driver's idle timer fired: queue 421 and close. */
void smtp_server_timeout(struct smtp_server *s);
/* Bytes to send (replies); consume what was sent. */
const char *smtp_server_output(struct smtp_server *s, size_t *len);
void smtp_server_consume_output(struct smtp_server *s, size_t len);
/* true once the session is over (after QUIT/421 output is flushed the driver closes). */
bool smtp_server_closing(const struct smtp_server *s);
/* false while SMTP_OUT_HIGH bytes of replies wait (the client pipelines
 * without reading) or the session is over: the driver may stop reading
 * until it has consumed output.  Input given anyway is kept (up to
 * SMTP_IN_MAX) and processed once output is consumed. */
bool smtp_server_want_input(const struct smtp_server *s);

#endif
