/* The sendmail-compatible front end (also mailq and newaliases by argv[0]). */
#ifndef SMTPRELAY_SENDMAIL_H
#define SMTPRELAY_SENDMAIL_H

#include <stdbool.h>
#include <stddef.h>

#include "queue/queue.h"

enum sendmail_mode {
	SM_DELIVER,		/* -bm (default) */
	SM_SMTP,		/* -bs */
	SM_PRINT,		/* -bp, mailq */
	SM_ALIASES,		/* -bi, -I, newaliases */
	SM_VERIFY,		/* -bv */
	SM_FLUSH,		/* -q */
};

struct sendmail_opts {
	enum sendmail_mode mode;
	const char *config;		/* -C / -c */
	const char *sender;		/* -f / -r, NULL = login name */
	const char *full_name;		/* -F */
	const char *envid;		/* -V */
	const char *label;		/* -L */
	unsigned notify;		/* -N */
	enum smtp_ret ret;			/* -R */
	bool eightbit;			/* -B 8BITMIME */
	bool extract;			/* -t */
	bool ignore_dots;		/* -i, -oi */
	bool verbose;			/* -v */
	char **rcpts;			/* remaining arguments */
	int nrcpts;
};

/* Parse argv (argv[0] selects mailq/newaliases).  0, or -1 after printing a
 * usage error naming the bad flag to stderr (exit 64). */
int sendmail_parse(int argc, char **argv, struct sendmail_opts *o);
int sendmail_main(int argc, char **argv);

#endif
