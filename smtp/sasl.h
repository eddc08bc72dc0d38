/* SASL client responses and base64, for AUTH (RFC 4954).
 *
 * Every builder appends the base64 form of the response to out.  The clear
 * text holds secrets, so it only ever lives in a temporary that is wiped. */
#ifndef SMTPRELAY_SMTP_SASL_H
#define SMTPRELAY_SMTP_SASL_H

#include <stddef.h>

#include "lib/buf.h"

/* The mechanisms we speak, as bits so that a configuration can allow a set. */
enum sasl_mech {
	SASL_PLAIN = 1 << 0,
	SASL_LOGIN = 1 << 1,
	SASL_XOAUTH2 = 1 << 2,
	SASL_OAUTHBEARER = 1 << 3,
};

#define SASL_INPUT_MAX (64 * 1024)	/* longest clear text we encode or decode */

/* Append base64 of data.  0, or -1 (ENOBUFS, ENOMEM, EINVAL when too long). */
int sasl_b64_encode(struct buf *out, const void *data, size_t len);
/* Append the decoded bytes of base64 text s (surrounding white space
 * ignored).  0, or -1 with errno EINVAL for invalid base64. */
int sasl_b64_decode(struct buf *out, const char *s, size_t len);

/* RFC 4616 PLAIN initial response: base64("" NUL user NUL pass). */
int sasl_plain(struct buf *out, const char *user, const char *pass);
/* Google/Microsoft XOAUTH2: base64("user=" U ^A "auth=Bearer " T ^A ^A). */
int sasl_xoauth2(struct buf *out, const char *user, const char *token);
/* RFC 7628 OAUTHBEARER: base64("n,a=" U "," ^A ["host=" H ^A] ["port=" P ^A]
 * "auth=Bearer " T ^A ^A); U escaped as an RFC 5801 saslname; host NULL or
 * "" and port 0 are left out. */
int sasl_oauthbearer(struct buf *out, const char *user, const char *host,
    unsigned port, const char *token);

#endif
