/* Debian's host-wide mail settings as defaults, as Postfix uses them there:
 * `hostname` defaults to the name in /etc/mailname (else the FQDN, see
 * conf.c), `aliases_file` to /etc/aliases when that file exists.
 *
 * Tests point these at their own files with $SMTPRELAY_MAILNAME_FILE and
 * $SMTPRELAY_ALIASES_FILE.  They are read with secure_getenv(), so the
 * setgid sendmail never honours them for an unprivileged caller: nobody can
 * make the privileged front end read a file of their choosing.  This module
 * only reads; conf.c decides what is a default.
 */
#ifndef SMTPRELAY_HOSTDEFAULTS_H
#define SMTPRELAY_HOSTDEFAULTS_H

struct config;

#define HOSTDEFAULTS_MAILNAME "/etc/mailname"
#define HOSTDEFAULTS_ALIASES "/etc/aliases"

/* The files consulted (the environment's override, else the above). */
const char *hostdefaults_mailname_path(void);
const char *hostdefaults_aliases_path(void);
/* The mail name: the file's first line without surrounding blanks, when the
 * file exists and holds a valid host name (new string).  NULL when it does
 * not exist or is unusable (then with a warning naming the file and what to
 * fix), or on ENOMEM. */
char *hostdefaults_mailname(void);
/* The aliases file path when it exists (new string), else NULL. */
char *hostdefaults_aliases(void);

/* Log a warning for each way the host's own mail (cron, root) would go out
 * wrong: a hostname without a dot, and root with neither an alias nor an
 * admin_address.  For smtprelayd -t and start, check-config, sendmail -v. */
void hostdefaults_warn(const struct config *c);

#endif
