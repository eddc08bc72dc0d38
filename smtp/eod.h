/* SMTP end-of-data detector, dot-unstuffer and line-end normaliser.
 *
 * Fed the bytes that follow a DATA command's 354, in chunks of any size.
 * End of data is only CRLF "." CRLF with both line ends real CRLFs; the
 * first line counts as starting after a CRLF.  A bare LF or bare CR never
 * takes part in end of data (no SMTP smuggling) and becomes CRLF in the
 * output, so the output has CRLF line ends only.  A "." that starts a line
 * after a real CRLF is removed (RFC 5321 §4.5.2).
 */
#ifndef SMTPRELAY_SMTP_EOD_H
#define SMTPRELAY_SMTP_EOD_H

#include <stdbool.h>
#include <stddef.h>

/* Output needed for one input byte at most: a pending bare CR ("\r\n") plus
 * the byte itself. */
#define EOD_OUT_MIN 3

enum eod_state {
	EOD_BOL,	/* at a line start after a real CRLF */
	EOD_MID,	/* inside a line (or after a bare LF/CR) */
	EOD_CR,		/* a CR is pending: CRLF or bare CR decides */
	EOD_DOT,	/* "." at a line start seen (and dropped) */
	EOD_DOT_CR,	/* "." CR at a line start seen: LF ends data */
	EOD_END		/* end of data seen */
};

struct eod {
	enum eod_state state;
};

void eod_init(struct eod *e);
/* Process in[0..inlen) and append content to out (outcap >= EOD_OUT_MIN).
 * Stops after end of data or when out may not hold another byte's output.
 * Returns the number of input bytes consumed and sets *outlen. */
size_t eod_feed(struct eod *e, const char *in, size_t inlen, char *out, size_t outcap,
    size_t *outlen);
/* true once CRLF.CRLF has been consumed. */
bool eod_done(const struct eod *e);

#endif
