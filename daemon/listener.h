/* The loopback SMTP listener: one smtp_server per connection over libevent
 * bufferevents, storing through queue/submit into queue/ and handing each
 * accepted message to the scheduler at once.
 *
 * Peers outside allow_networks get the 554 greeting and 503s and are
 * dropped after LISTENER_DENIED_TIMEOUT; at most LISTENER_DENIED_MAX of them
 * at once, outside max_connections (they cannot crowd out allowed clients);
 * over max_connections a client gets 421 and is closed; idle sessions get 421
 * after smtpd_timeout, and so does a session that has not completed a
 * message for LISTENER_SESSION_FACTOR x smtpd_timeout (one byte every few
 * seconds does not hold a session forever).
 */
#ifndef SMTPRELAY_LISTENER_H
#define SMTPRELAY_LISTENER_H

#include <stddef.h>

#include "daemon/daemon.h"

#define LISTENER_DENIED_TIMEOUT 10
#define LISTENER_DENIED_MAX 4
#define LISTENER_SESSION_FACTOR 10
#define LISTENER_OUT_MAX (64 * 1024)	/* replies queued to a client that does not read */

/* Bind every `listen` address of d->conf (before dropping privileges).
 * NULL with a message naming the address on failure. */
struct listener *listener_new(struct daemon *d, char *err, size_t errlen);
/* Stop accepting and drop every session (what was not yet acknowledged is
 * the client's to retry). */
void listener_free(struct listener *l);
/* Stop accepting new connections; sessions continue. */
void listener_disable(struct listener *l);
unsigned listener_sessions(const struct listener *l);
/* Whether the configured addresses differ from those bound (needs a restart). */
bool listener_changed(const struct listener *l, const struct config *c);

#endif
