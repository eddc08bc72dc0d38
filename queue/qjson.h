/* The queue as JSON: `smtprelay queue --json` (smtprelay(8) "queue", a contract).
 *
 * An array of objects: id, size (bytes of content), arrival (RFC 3339),
 * sender, recipients (each address, state pending|deferred|delivered|failed,
 * attempts, last_reason (string or null), next_attempt (RFC 3339 or null)).
 * Always valid JSON: every string is escaped, control characters as \u00XX
 * and bytes that are not UTF-8 as U+FFFD.
 */
#ifndef SMTPRELAY_QJSON_H
#define SMTPRELAY_QJSON_H

#include <stdio.h>
#include <time.h>

#include "queue/queue.h"

/* Print queue/ and maildrop/ (in that order) as one array.  0, or -1 when
 * the spool cannot be read (message in err, errno set; what was printed
 * is then incomplete: print into a memory stream first). */
int qjson_print(struct queue *q, FILE *out, char *err, size_t errlen);
/* One message object (no trailing newline). */
void qjson_message(FILE *out, const struct q_envelope *env);
/* A JSON string literal. */
void qjson_string(FILE *out, const char *s);

#endif
