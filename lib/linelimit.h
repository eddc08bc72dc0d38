/* Lines longer than RFC 5321 allows, broken so a smarthost takes them.
 *
 * RFC 5321 §4.5.3.1.6: a text line is at most 998 octets plus CRLF, and a
 * smarthost that enforces it rejects the whole message (the contract: such a
 * line must never cost a message).  Like Postfix's smtp_line_length_limit,
 * a longer line is broken by inserting CRLF SPACE: in a header that is a
 * legal fold, in a body it keeps MIME structure intact.  The "." that
 * dot-stuffing adds does not count (RFC 5321 §4.5.3.1.6).
 *
 * A streaming filter over the queued content, applied in the relay's output
 * path before anything that hashes what is sent (a DKIM signer must sign the
 * broken form).  Pure: no allocation, no I/O but linelimit_read's read().
 */
#ifndef SMTPRELAY_LINELIMIT_H
#define SMTPRELAY_LINELIMIT_H

#include <stddef.h>
#include <sys/types.h>

#define LINELIMIT_MAX 998	/* octets per line, CRLF excluded */
#define LINELIMIT_OUT_MIN 4	/* "\r\n " and the byte itself */

struct linelimit {
	size_t col;		/* octets in the current output line */
	unsigned long breaks;	/* lines broken so far (for the log) */
};

void linelimit_init(struct linelimit *l);
/* Copy in[0..inlen) to out, breaking long lines; stops when out may not hold
 * another byte's output (outcap >= LINELIMIT_OUT_MIN).  A CR or LF ends a
 * line.  Returns the input bytes consumed and sets *outlen. */
size_t linelimit_feed(struct linelimit *l, const char *in, size_t inlen, char *out,
    size_t outcap, size_t *outlen);
/* read(2) from fd into out (cap >= 1024) through linelimit_feed: bytes put
 * in out, 0 at end of file, -1 with errno. */
ssize_t linelimit_read(struct linelimit *l, int fd, char *out, size_t cap);

#endif
