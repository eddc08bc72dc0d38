/* sendmail -bs: an SMTP session on stdin/stdout (Symfony Mailer uses it). */
#ifndef SMTPRELAY_BS_H
#define SMTPRELAY_BS_H

#include "conf/conf.h"
#include "frontend/sendmail.h"

/* Runs the session to its end; returns a sysexits code. */
int bs_run(const struct sendmail_opts *o, const struct config *c);

#endif
