/* The daemon's half of a submission from a front end that could not read
 * the configuration (queue/rawsub.h): the record is parsed as untrusted
 * input and run through the submission path with the daemon's own
 * configuration, so aliases, admin_address, from_address, header
 * qualification, rewrite_from_header and max_message_size apply exactly as
 * for a front end that read the config.  Called off the event loop by
 * daemon/qstore.c for a handed-over descriptor (daemon/handover.c): it only
 * reads the configuration, which a reload keeps alive meanwhile. */
#ifndef SMTPRELAY_RAWPICKUP_H
#define SMTPRELAY_RAWPICKUP_H

#include <stdbool.h>
#include <stddef.h>

#include "daemon/daemon.h"

/* true when the handed-over descriptor holds a raw submission record. */
bool rawpickup_detect(int fd);
/* Queue it durably with uid as the submitter (the caller schedules it).  0 with the
 * new queue id, or -1 with err = "SMTP-CODE X.Y.Z reason (sendmail exit N)",
 * which the front end turns back into its exit status and reply. */
int rawpickup_queue(struct daemon *d, int fd, long uid, char id[QID_SIZE], char *err,
    size_t errlen);

#endif
