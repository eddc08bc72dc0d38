/* `smtprelay probe`: connectivity diagnosis of every smarthost port (README,
 * "The admin tool and probe").
 *
 * The engine (relay/probe.h) gives every port of every smarthost, in config
 * order and one after another, one connection on the event loop (relay/conn:
 * DNS, connect, TLS, greeting, EHLO, AUTH) that ends with QUIT: no mail is
 * ever sent.  Here each port is reported on one line
 *
 *   NAME HOST:PORT/MODE: VERDICT DETAIL
 *
 * (VERDICT: "ok" or one of the verdict words listed in README "The admin
 * tool and probe"; the first failing stage decides), followed by indented
 * detail lines, and then the port delivery will use: "delivery will use
 * NAME HOST:PORT/MODE" or "no usable port: mail will stay queued".  With
 * json, a JSON array of one object per port instead (keys smarthost, host, port, mode, verdict, detail, tls_version,
 * cipher, auth_mechanisms, elapsed_ms: the README's list, kept exact).  In
 * text, a section with senders = {...} adds a "serves senders:" line.
 */
#ifndef SMTPRELAY_PROBE_H
#define SMTPRELAY_PROBE_H

#include <stdbool.h>
#include <stdio.h>

#include "conf/conf.h"

/* c: loaded with conf_load_secrets (password_command runs here, per port
 * needing AUTH).  Writes the report to out; "no smarthost configured in
 * FILE" goes to stderr.  Returns the exit status: 0 when some port is
 * usable, else 1.  Log lines (debug with the log set up so) go to the log. */
int probe_run(const struct config *c, bool json, FILE *out);

#endif
