/* SMTP reply helpers shared by the server and the sinks that fill
 * struct smtp_reply (daemon listener, sendmail -bs). */
#ifndef SMTPRELAY_SMTP_REPLY_H
#define SMTPRELAY_SMTP_REPLY_H

#include <stddef.h>

#include "smtp/server.h"

/* Fill r: code and a printf-formatted text ("4.3.1 Insufficient system
 * storage"); the text is truncated to fit. */
void smtp_reply_set(struct smtp_reply *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Write "CODE TEXT" (no CRLF) into out (size >= 8) as a safe single reply
 * line: a code outside 400..599 becomes 451, bytes outside printable ASCII
 * are dropped, an empty text gets a generic one.  Returns the length. */
size_t smtp_reply_failure_line(const struct smtp_reply *r, char *out, size_t size);

#endif
