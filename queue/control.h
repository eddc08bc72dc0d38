/* Client side of the daemon's control socket (SPOOL/public/control).
 *
 * Protocol: one request line; the daemon answers data lines, each starting
 * with one space (removed by the client), then one final line "ok TEXT" or
 * "error TEXT", and closes.  Requests (see daemon/ctl.h): ping, flush,
 * queue, queue json, show ID, state ID, delete ID, delete all, status. */
#ifndef SMTPRELAY_CONTROL_H
#define SMTPRELAY_CONTROL_H

#include <stddef.h>
#include <stdio.h>

#define CONTROL_SOCKET "public/control"

/* Send one request; the final status line's text goes to reply (may be
 * NULL).  0 when the daemon said ok; -1 with err explaining (daemon not
 * running, refused, timeout). */
int control_request(const char *spool_dir, const char *request, char *reply, size_t replylen,
    char *err, size_t errlen);

enum control_result {
	CONTROL_OK = 0,			/* "ok TEXT": TEXT in status */
	CONTROL_ERROR = 1,		/* "error TEXT": TEXT in status */
	CONTROL_FAIL = -1,		/* talking to the daemon failed: err */
	CONTROL_DOWN = -2,		/* nobody listens on the socket: err */
};

/* Send one request; data lines go to out (without their leading space;
 * discarded when out is NULL), the final line's text after "ok "/"error "
 * to status.  Lines of any length are passed through; the status line is
 * bounded by statuslen. */
enum control_result control_query(const char *spool_dir, const char *request, FILE *out,
    char *status, size_t statuslen, char *err, size_t errlen);

#endif
