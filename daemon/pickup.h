/* Pickup: moves mail that `sendmail` dropped in SPOOL/maildrop into queue/
 * and hands it to the scheduler at once.
 *
 * inotify (IN_MOVED_TO, IN_CLOSE_WRITE) on maildrop/ wakes the loop as soon
 * as a message is renamed into place; a scan also runs at start, on flush
 * and every PICKUP_SAFETY_INTERVAL seconds as a safety net (which also
 * indexes queue/ files the scheduler does not know, e.g. a pickup that had
 * to choose a new id).
 */
#ifndef SMTPRELAY_PICKUP_H
#define SMTPRELAY_PICKUP_H

#include "daemon/daemon.h"

#define PICKUP_SAFETY_INTERVAL 60

struct pickup *pickup_new(struct daemon *d);
void pickup_free(struct pickup *p);
/* Scan maildrop/ now and move what is there, all off the loop (the scan
 * through durable_run, the moves through daemon/qstore.h); 0, or -1 when
 * out of memory.  While a scan or moves are under way, the scan is done
 * again when they are over. */
int pickup_scan(struct pickup *p);

#endif
