/* systemd readiness notification (sd_notify protocol) without libsystemd. */
#ifndef SMTPRELAY_NOTIFY_H
#define SMTPRELAY_NOTIFY_H

/* Send state lines ("READY=1", "STOPPING=1"...) as one datagram to
 * $NOTIFY_SOCKET (an abstract socket when it starts with '@').  0, also
 * when not running under systemd; -1 on error (logged at debug). */
int notify_send(const char *state);
/* "RELOADING=1" with MONOTONIC_USEC, as Type=notify-reload expects. */
int notify_reloading(void);

#endif
