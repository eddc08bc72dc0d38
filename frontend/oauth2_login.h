/* `smtprelay oauth2-login NAME`: the first refresh token of a smarthost with
 * oauth2_token_url, by the OAuth 2.0 device authorization grant (RFC 8628).
 *
 * Asks the device authorization endpoint (derived for Microsoft and Google,
 * else --device-url) for a code, prints the verification URL and the user
 * code for a person to enter on any other device, polls the token endpoint
 * (honouring interval, authorization_pending and slow_down) and stores the
 * refresh token in oauth2_refresh_token_file (atomically, mode 0600).  Uses
 * the daemon's HTTPS client on a private event loop.  The device code and
 * the tokens are never printed.
 */
#ifndef SMTPRELAY_OAUTH2_LOGIN_H
#define SMTPRELAY_OAUTH2_LOGIN_H

#include "conf/conf.h"

/* argv[0] is the subcommand ("oauth2-login"); then [--device-url URL]
 * [--timeout SECONDS] NAME.  c must have its secrets loaded.  Returns an
 * exit status (sysexits.h): 0 stored; 64 usage; 78 configuration; 77 access
 * denied; 75 timed out or the code expired; 69 endpoint failure; 73 the
 * file cannot be written. */
int oauth2_login_main(const struct config *c, int argc, char **argv);

/* The device authorization endpoint that goes with a token endpoint:
 * Microsoft identity platform .../oauth2/v2.0/token -> .../devicecode,
 * Google https://oauth2.googleapis.com/token -> .../device/code.  NULL when
 * unknown (or ENOMEM); the caller frees. */
char *oauth2_login_device_url(const char *token_url);

#endif
