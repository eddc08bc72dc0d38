/* password_command: run a command for a secret without blocking the loop.
 *
 * `/bin/sh -c CMD` runs as the current (service) user in a process group of
 * its own, stdin from /dev/null.  Its stdout (at most SECRET_MAX bytes, one
 * trailing newline stripped) is the secret; a non-zero exit, a signal, the
 * timeout (the whole group is killed), an empty or overlong output is a
 * failure described by the first line of its stderr.  The secret never
 * appears in any message.
 */
#ifndef SMTPRELAY_SECRET_H
#define SMTPRELAY_SECRET_H

#include <stddef.h>

#include <event2/event.h>

#define SECRET_MAX 16384
#define SECRET_TIMEOUT 30		/* seconds (smtprelay.conf(5)) */

struct secret_job;

/* ok: secret (NUL-terminated, len bytes) is valid during the call only and
 * wiped after it; else secret is NULL, status says what went wrong ("exit
 * 1", "signal 9", "timed out after 30s", "no output", "output over 16384
 * bytes") and detail is the first line of its stderr ("" when none).  The
 * job is freed after the callback returns. */
typedef void (*secret_done_fn)(const char *secret, size_t len, const char *status,
    const char *detail, void *arg);

/* NULL with errno on failure to start (fork, pipe, ENOMEM). */
struct secret_job *secret_run(struct event_base *base, const char *cmd, unsigned timeout_sec,
    secret_done_fn done, void *arg);
/* Kill the process group and free the job without calling done. */
void secret_cancel(struct secret_job *j);

#endif
