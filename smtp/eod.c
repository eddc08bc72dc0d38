#include "config.h"
#include "smtp/eod.h"

void eod_init(struct eod *e)
{
	/* The DATA command's own CRLF precedes the first line. */
	e->state = EOD_BOL;
}

bool eod_done(const struct eod *e)
{
	return e->state == EOD_END;
}

static void eod_crlf(char *out, size_t *n)
{
	out[(*n)++] = '\r';
	out[(*n)++] = '\n';
}

/* A byte inside a line: bare LF becomes CRLF but never starts a line on
 * which "." means anything; CR waits for the next byte. */
static enum eod_state eod_mid(char c, char *out, size_t *n)
{
	if (c == '\r')
		return EOD_CR;
	if (c == '\n')
		eod_crlf(out, n);
	else
		out[(*n)++] = c;
	return EOD_MID;
}

static enum eod_state eod_step(enum eod_state st, char c, char *out, size_t *n)
{
	switch (st) {
	case EOD_BOL:
		return c == '.' ? EOD_DOT : eod_mid(c, out, n);
	case EOD_CR:
		eod_crlf(out, n);
		if (c == '\n')
			return EOD_BOL;
		/* The pending CR was bare: it ended a line, but not a real one. */
		return eod_mid(c, out, n);
	case EOD_DOT:
		return c == '\r' ? EOD_DOT_CR : eod_mid(c, out, n);
	case EOD_DOT_CR:
		if (c == '\n')
			return EOD_END;
		eod_crlf(out, n);
		return eod_mid(c, out, n);
	case EOD_MID:
	case EOD_END:
	default:
		return eod_mid(c, out, n);
	}
}

size_t eod_feed(struct eod *e, const char *in, size_t inlen, char *out, size_t outcap,
    size_t *outlen)
{
	size_t i = 0, n = 0;

	while (i < inlen && e->state != EOD_END && outcap - n >= EOD_OUT_MIN)
		e->state = eod_step(e->state, in[i++], out, &n);
	*outlen = n;
	return i;
}
