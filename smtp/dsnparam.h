/* DSN parameters (RFC 3461): the NOTIFY bits and RET of one message.  Defined
 * once, here at the bottom: the SMTP server core parses them, the client core
 * sends them, and the queue stores them as these numbers in its envelope files
 * (so the values are part of the spool format and never change). */
#ifndef SMTPRELAY_SMTP_DSNPARAM_H
#define SMTPRELAY_SMTP_DSNPARAM_H

/* NOTIFY bits; 0 = not given (default: failure). */
enum smtp_notify { SMTP_NOTIFY_NEVER = 1, SMTP_NOTIFY_SUCCESS = 2, SMTP_NOTIFY_FAILURE = 4,
	SMTP_NOTIFY_DELAY = 8 };
enum smtp_ret { SMTP_RET_DEFAULT, SMTP_RET_FULL, SMTP_RET_HDRS };

#endif
