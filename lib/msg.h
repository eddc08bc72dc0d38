/* The streaming filter every submission passes through (sendmail stdin and
 * SMTP DATA): line-end normalisation, the sendmail dot rule, header clean-up
 * (Bcc removal, missing Date/Message-ID/From, From rewriting), recipient
 * extraction for -t and the size limit.
 *
 * Only the header section is buffered, one field at a time and at most
 * MSG_HEADER_MAX bytes in all; the body is streamed through a fixed output
 * buffer.  A header section over the limit fails with MSG_BAD_HEADER (rather
 * than Postfix's "rest is body") so that a late Bcc: can never leak.
 */
#ifndef SMTPRELAY_MSG_H
#define SMTPRELAY_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define MSG_HEADER_MAX (1024 * 1024)

struct msg_params {
	bool from_stdin;          /* sendmail: LF, CR and CRLF end lines; dot_ends applies; a leading mbox "From " line is dropped */
	bool dot_ends;            /* with from_stdin (sendmail without -i/-oi): a line with a single "." ends input */
	bool extract_rcpts;       /* -t: collect recipients from To/Cc/Bcc (or Resent-To/Cc/Bcc if any Resent- header is present) */
	bool add_missing;         /* add Date:, Message-ID:, From: when absent */
	const char *hostname;     /* for Message-ID and qualifying a bare From address; NULL = "localhost" */
	const char *queue_id;     /* for Message-ID: <YYYYMMDDhhmmss.QUEUEID@hostname> (UTC, as Postfix) */
	const char *from_addr;    /* address for a generated From: (the envelope sender); NULL/"" = MAILER-DAEMON */
	const char *full_name;    /* -F / GECOS display name, may be NULL; quoted or RFC 2047 encoded as needed */
	bool qualify_headers;     /* From/Sender/Reply-To/To/Cc (and Resent-): bare local parts get @hostname (Postfix's append_at_myorigin) */
	const char *rewrite_from; /* rewrite_from_header: a local From: address (bare, @localhost, @hostname) becomes this; NULL = off */
	const char *prepend;      /* raw header text to put first (CRLF-terminated lines, e.g. "Received: ...\r\n"), may be NULL */
	size_t max_size;          /* output limit in bytes (prepend and added headers count); 0 = none */
	time_t now;               /* for Date: and Message-ID: (tests pass a fixed time) */
	int (*out)(void *ctx, const char *data, size_t len); /* output sink (the queue writer); non-zero aborts */
	void *out_ctx;
};

enum msg_error { MSG_OK, MSG_ENOMEM, MSG_TOO_BIG, MSG_OUTPUT, MSG_BAD_HEADER };

struct msg;

/* The strings in p must outlive the msg.  NULL on ENOMEM (or EINVAL: no out).
 * The prepend text is buffered at once, so max_size may already be exceeded:
 * msg_input then fails. */
struct msg *msg_new(const struct msg_params *p);
/* Feed input in chunks of any size; chunk boundaries never change the
 * result.  0, or -1 with msg_error() set (sticky; out is not called again). */
int msg_input(struct msg *m, const char *data, size_t len);
/* End of input: complete the last line (CRLF is added to an unterminated
 * one), the header section and the added headers, flush the output.  0 or -1.
 * Must be called even after msg_ended_by_dot(). */
int msg_finish(struct msg *m);
/* A lone "." line was seen (dot_ends); the rest of the input was ignored. */
bool msg_ended_by_dot(const struct msg *m);
/* true once the header section has ended (msg_rcpts is then final). */
bool msg_headers_done(const struct msg *m);
/* -t recipients once the header section is over, in order, deduplicated
 * (local part exact, domain case-insensitive); owned by m.  NULL with
 * *n = 0 before. */
char **msg_rcpts(const struct msg *m, size_t *n);
/* List members in To/Cc/Bcc (or Resent-) that could not be parsed (-t). */
size_t msg_rcpts_skipped(const struct msg *m);
/* Any input byte >= 0x80 seen (up to the end of input or the lone dot). */
bool msg_eightbit(const struct msg *m);
/* Output bytes so far, prepend and added headers included (all of them
 * have been passed to out() once msg_finish() returned 0). */
size_t msg_size(const struct msg *m);
enum msg_error msg_error(const struct msg *m);
const char *msg_strerror(enum msg_error e);
void msg_free(struct msg *m);

#endif
