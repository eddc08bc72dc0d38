/* Process and resource hardening for smtprelayd (issue 12 findings 2, 6):
 * not dumpable, no core files, descriptors up to the hard limit; listeners
 * that back off on EMFILE instead of spinning; a per-uid and global cap on
 * local (control/submit socket) clients. */
#ifndef SMTPRELAY_DAEMON_HARDEN_H
#define SMTPRELAY_DAEMON_HARDEN_H

#include <stdbool.h>
#include <sys/types.h>

struct event_base;
struct evconnlistener;

/* Local clients allowed at once: per uid (so one local user cannot starve
 * the others) and in total (so the daemon keeps descriptors for mail). */
#define HARDEN_CLIENTS_PER_UID 32
#define HARDEN_CLIENTS_TOTAL 256

/* Called once privileges are final: PR_SET_DUMPABLE 0 (nothing running as
 * the service user may read our memory), RLIMIT_CORE 0, and RLIMIT_NOFILE's
 * soft limit raised to its hard limit.  Failures are logged, not fatal. */
void harden_process(void);

/* Route lev's accept errors to a guard: on EMFILE/ENFILE/ENOBUFS/ENOMEM the
 * listener is disabled for a second, and logged once per minute at most,
 * instead of libevent retrying accept() in a tight loop.  what names the
 * socket in the log.  -1 on ENOMEM. */
int harden_guard(struct event_base *base, struct evconnlistener *lev, const char *what);
/* Forget lev's guard; call before evconnlistener_free. */
void harden_unguard(struct evconnlistener *lev);

struct harden_clients;
struct harden_clients *harden_clients_new(const char *what);
void harden_clients_free(struct harden_clients *hc);
/* true if one more client of uid fits (then counted); false logs once per
 * uid and episode, and the caller closes the connection. */
bool harden_clients_admit(struct harden_clients *hc, uid_t uid);
void harden_clients_release(struct harden_clients *hc, uid_t uid);

#endif
