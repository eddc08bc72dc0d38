/* sendmail -bm / -t: a message on stdin into the maildrop. */
#ifndef SMTPRELAY_ENQUEUE_H
#define SMTPRELAY_ENQUEUE_H

#include "conf/conf.h"
#include "frontend/sendmail.h"

/* Returns a sysexits code; 0 only once the message is durably queued. */
int enqueue_stdin(const struct sendmail_opts *o, const struct config *c);
/* Envelope sender for local submission: -f/-r value (angle brackets
 * stripped, "<>" = null sender) or the login name.  NULL if invalid. */
char *enqueue_sender(const char *given);
/* Full name for a generated From: -F, else $NAME, else the GECOS field. */
const char *enqueue_full_name(const char *given, char *buf, size_t len);

#endif
