/* smtprelay(8): the admin tool.
 *
 *   smtprelay [-C FILE|-c FILE] COMMAND [ARGS]
 *
 * queue [--json], flush, delete ID...|--all, show ID, status, check-config,
 * send-test [--wait SECONDS] ADDRESS, probe [--json], oauth2-login NAME.
 *
 * While smtprelayd runs, everything goes through its control socket
 * (daemon/ctl.h), which authorizes by the caller's uid.  When it is down,
 * queue/show/delete/status read the spool directly if the caller may (root
 * or the service user), after saying so on stderr.
 *
 * Exit status: 0 success; 1 a named message does not exist (or send-test:
 * bounced); 3 status: the daemon is not running; 64 usage; 69 the daemon is
 * needed and not running (flush); 74 spool unreadable; 75 send-test: queued
 * but not (yet) delivered; 77 permission denied; 78 configuration error.
 */
#ifndef SMTPRELAY_ADMIN_H
#define SMTPRELAY_ADMIN_H

#define ADMIN_EXIT_DOWN 3		/* `status` with the daemon down, like systemctl */
#define ADMIN_WAIT_DEFAULT 60		/* send-test --wait */

int admin_main(int argc, char **argv);

#endif
