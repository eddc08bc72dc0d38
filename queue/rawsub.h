/* The raw submission record: what a sendmail front end hands to the daemon
 * when it could not read the system configuration (a caller confined with
 * NoNewPrivileges and not in the service group, README "Who may use which config").  Without the
 * configuration the front end cannot resolve aliases, rewrite the sender,
 * qualify headers with the configured host name or know max_message_size,
 * so it sends the submission as given and the daemon runs the usual
 * submission path (queue/submit.c) with its own configuration.
 *
 * Format, version 1 (text lines in exactly this order, then the raw input):
 *
 *   SMTPRELAY-SUBMIT 1          the marker: "the front end had no config"
 *   opts E S D B U R N          -t, stdin line ends, lone-dot ends, 8BITMIME,
 *                               SMTPUTF8 (0|1), RET (0..2), NOTIFY (0..15)
 *   origin TEXT                 "sendmail" or "sendmail -bs", nothing else
 *   sender TEXT                 as given (-f syntax); empty for the null sender
 *   fullname TEXT               empty when none
 *   envid TEXT                  empty when none, else as sendmail -V takes it
 *   rcpts N                     0..Q_MAX_RCPTS, then N times:
 *   rcpt NOTIFY ADDRESS ORCPT   as given; ORCPT empty when none
 *   data
 *   <the message as read from stdin or the -bs DATA phase, unfiltered>
 *
 * TEXT is %-escaped as in queue/envelope.c; no decoded value may hold a
 * control character, and ORCPT must be "addr-type;address".  The daemon treats the whole
 * record as untrusted input: every field is bounded and validated, and the
 * submission path validates addresses and content as for any client.
 */
#ifndef SMTPRELAY_RAWSUB_H
#define SMTPRELAY_RAWSUB_H

#include <stdbool.h>
#include <stdio.h>

#include "queue/submit.h"

#define RAWSUB_MAGIC_NAME "SMTPRELAY-SUBMIT"
#define RAWSUB_MAGIC RAWSUB_MAGIC_NAME " 1\n"

/* Write the record header for p (its sender, recipients, flags) to fd.
 * 0, or -1 with errno set. */
int rawsub_write_header(int fd, const struct submit_params *p);

/* true when fd (read from offset 0) starts with the marker. */
bool rawsub_detect(int fd);

/* A parsed header: params points into it; its conf, queue, area and uid are
 * left for the caller to fill. */
struct rawsub;
/* Parse the header from f (at its start), leaving f at the first data byte.
 * NULL with why set on a malformed header or ENOMEM. */
struct rawsub *rawsub_read_header(FILE *f, char *why, size_t whylen);
struct submit_params *rawsub_params(struct rawsub *r);
void rawsub_free(struct rawsub *r);

#endif
