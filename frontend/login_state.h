/* Where `smtprelay oauth2-login` stores the refresh token (smtprelay.conf(5), README "Installing"):
 * the directory of oauth2_refresh_token_file must exist and be writable by
 * the service user, who reads and rotates the token.
 *
 * Run as root on a fresh install (no /var/lib/smtprelay yet), the directory
 * is created, owned by the service user, mode 0700, and the stored token is
 * handed to that user.  Run as anyone else, a missing or unwritable
 * directory is refused with the exact command that fixes it.
 */
#ifndef SMTPRELAY_LOGIN_STATE_H
#define SMTPRELAY_LOGIN_STATE_H

#include "conf/conf.h"

/* Before signing in.  EX_OK, or an exit code after printing why and what to run. */
int login_state_prepare(const struct config *c, const char *token_file);
/* After the token was written as root: owned by the service user (0600).
 * EX_OK, or EX_CANTCREAT after printing why. */
int login_state_own(const struct config *c, const char *token_file);

#endif
