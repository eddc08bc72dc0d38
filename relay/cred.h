/* Credentials for one connection to one smarthost port: the one path that
 * delivery (relay/relay.c) and `smtprelay probe` (frontend/probe.c) share, so
 * both decide the same way where a secret comes from and describe a failure
 * in the same words.
 *
 * Credentials are only for TLS ports of a section with a username (never
 * sent in clear).  They come from password or password_file (read by
 * conf_load_secrets), from a fresh password_command run per connection, or
 * from the OAuth2 token manager; the configuration allows only one of them.
 * What to do when a secret is missing is the caller's decision: delivery
 * defers (fail closed), probe reports the port unchecked.
 */
#ifndef SMTPRELAY_CRED_H
#define SMTPRELAY_CRED_H

#include <stddef.h>

#include <event2/event.h>

#include "conf/conf.h"

enum cred_kind {
	CRED_NONE,		/* no AUTH on this port (no username, or PORT/none) */
	CRED_PASSWORD,		/* sh->password, in memory */
	CRED_MISSING,		/* a username, but password_file could not be read */
	CRED_COMMAND,		/* password_command, run for this connection */
	CRED_OAUTH2,		/* an access token from oauth2_token_url */
};

enum cred_kind cred_kind(const struct conf_smarthost *sh, size_t port);

struct oauth2;
struct cred_req;

/* secret: valid during the call only; expires_in its remaining lifetime in
 * seconds (OAuth2), else -1.  On failure secret is NULL and why is a
 * sentence naming the smarthost and the cause (never the secret).  Called
 * from the event loop, never from within cred_get; the request is freed
 * after it returns. */
typedef void (*cred_done_fn)(const char *secret, long expires_in, const char *why, void *arg);

/* Start fetching the secret of a CRED_COMMAND or CRED_OAUTH2 port (the
 * command runs for at most timeout_sec).  NULL when it could not start, with
 * the reason in err; done is then not called. */
struct cred_req *cred_get(struct event_base *base, struct oauth2 *o,
    const struct conf_smarthost *sh, size_t port, unsigned timeout_sec,
    cred_done_fn done, void *arg, char *err, size_t errlen);
/* Stop a request without calling done (NULL is fine). */
void cred_cancel(struct cred_req *r);

#endif
