/* Fail closed on credentials (smtprelayd(8) "Privileges"): every secret must be usable by
 * the service user, however the daemon is started.
 *
 * systemd starts smtprelayd directly as that user and SIGHUP re-reads
 * secrets after privileges are dropped, so a secret only root can read is a
 * configuration error even when the check runs as root.  Run as root, the
 * files are opened in a child that switched to the service user's uid, gid
 * and groups (exact: ACLs, directory permissions and all); run as that user,
 * they are opened directly.  Checked: password_file,
 * oauth2_client_secret_file, and oauth2_refresh_token_file with its
 * directory (which must be writable for token rotation).
 */
#ifndef SMTPRELAY_SECACCESS_H
#define SMTPRELAY_SECACCESS_H

#include <stdbool.h>

#include "conf/conf.h"

/* 0: every secret is usable by c->user.  -1: *errors (malloc'ed) holds one
 * line per problem, e.g. "FILE: not readable by user smtprelay (owner root,
 * mode 0600): make it group smtprelay, mode 0640, or use LoadCredential=".
 * 1: run as an unprivileged user other than c->user: nothing could be
 * checked exactly, *errors says so.  *errors may be NULL on 0. */
int secaccess_check(const struct config *c, char **errors);
/* The policy of start, -t, check-config and probe: secaccess_check, then
 * conf_load_secrets.  reader: the caller is the daemon itself, which will
 * use the secrets as whatever user it runs as, so what it cannot read is an
 * error in any case.  0: usable (*warnings, malloc'ed or NULL, holds what an
 * unprivileged caller other than the service user could not check); -1:
 * *errors holds one line per problem and the caller exits 78. */
int secaccess_load(struct config *c, bool reader, char **errors, char **warnings);

#endif
