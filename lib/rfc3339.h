/* RFC 3339 timestamps in local time, as `smtprelay queue --json`, `show`,
 * status and the metrics text print them. */
#ifndef SMTPRELAY_RFC3339_H
#define SMTPRELAY_RFC3339_H

#include <stddef.h>
#include <time.h>

/* "2026-11-22T11:08:59+01:00" ("Z" when the offset is zero); the epoch when
 * t cannot be converted.  len >= 26 holds every result. */
void rfc3339_local(time_t t, char *buf, size_t len);

#endif
