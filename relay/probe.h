/* The engine of `smtprelay probe`: every port of every smarthost, in config
 * order and one after another, gets one connection on the event loop
 * (relay/conn: DNS, connect, TLS, greeting, EHLO, AUTH, with the relay's own
 * credentials, relay/cred) that ends with QUIT: no mail is ever sent.  Each
 * port gets a verdict word (README "The admin tool and probe"; the first
 * failing stage decides), a summary and detail notes.  Printing them is the
 * admin tool's (frontend/probe.c).
 */
#ifndef SMTPRELAY_RELAY_PROBE_H
#define SMTPRELAY_RELAY_PROBE_H

#include <stdbool.h>
#include <stddef.h>

#include "conf/conf.h"

#define PROBE_TEXT_MAX 1280
#define PROBE_NOTES_MAX 10

struct probe_result {
	const struct conf_smarthost *sh;
	size_t index;			/* into sh->ports */
	bool done;
	bool ready;			/* the session came up: ok */
	bool unchecked;			/* our caller could not read the secret: unknown */
	bool collected;
	const char *verdict;		/* "ok" or a verdict word of README "The admin tool and probe" */
	char summary[PROBE_TEXT_MAX];
	char notes[PROBE_NOTES_MAX][PROBE_TEXT_MAX];
	size_t nnotes;
	bool tls;
	char tls_version[16];
	char cipher[64];
	char auth[256];			/* mechanisms offered (after TLS), space-separated */
	long elapsed_ms;
};

/* Probe every port of c's smarthosts (c loaded with conf_load_secrets;
 * password_command runs here, per port needing AUTH).  0 with *res an
 * array of *n results (free with free()), or -1 with errno when the event
 * loop cannot be set up. */
int probe_ports(const struct config *c, struct probe_result **res, size_t *n);
/* How many ports probe_ports tries. */
size_t probe_count(const struct config *c);
/* The port a result is about, and a mode's name ("starttls", "tls", "none"). */
const struct conf_port *probe_port(const struct probe_result *r);
const char *probe_mode_name(enum conf_tls_mode m);

#endif
