/* sendmail when the system configuration is unreadable: a caller confined
 * with NoNewPrivileges (setgid ignored) and not in the service group, while
 * /etc/smtprelay.conf is 0640 root:smtprelay.  README "Who may use which config": it may still
 * submit: the front end runs on the compiled-in defaults (spool_dir,
 * max_message_size, hostname as conf/hostdefaults.c finds it) and hands the
 * submission as given to the running daemon (queue/rawsub.h), which applies
 * its configuration (daemon/rawpickup.h).  -C and $SMTPRELAY_CONF never fall
 * back: their errors stay fatal. */
#ifndef SMTPRELAY_NOCONF_H
#define SMTPRELAY_NOCONF_H

#include <stdbool.h>
#include <stddef.h>

#include "conf/conf.h"
#include "frontend/sendmail.h"
#include "queue/submit.h"

/* The defaults config when o and path allow the fallback (system config,
 * EACCES, no setgid privilege), else NULL. */
struct config *noconf_config(const struct sendmail_opts *o, const char *path);
/* true once noconf_config gave a config: submissions then go raw. */
bool noconf_active(void);
/* The sentence naming why and the fix, for modes that need the config. */
const char *noconf_why(void);

/* A raw submission into a fresh memfd: begin writes the header (-1 with e). */
int noconf_begin(const struct submit_params *p, int *fd, struct submit_error *e);
/* Append content; refuses beyond max bytes (the default max_message_size). */
int noconf_write(int fd, const char *data, size_t len, size_t max, struct submit_error *e);
/* Hand fd to the daemon; 0 with id, or -1 with e as the daemon classed it
 * (so an oversized message exits 65 as with the config) or 75. */
int noconf_handoff(const struct config *c, int fd, char id[QID_SIZE], struct submit_error *e);

#endif
