/* Local (AF_UNIX stream) sockets in the spool: the daemon's control and
 * submit sockets and their clients. */
#ifndef SMTPRELAY_USOCK_H
#define SMTPRELAY_USOCK_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/un.h>

/* sun = DIR/NAME; -1 with err set when the path does not fit. */
int usock_addr(struct sockaddr_un *sun, const char *dir, const char *name, char *err,
    size_t errlen);
/* Non-blocking listening socket at sun, chmod mode (access is decided by
 * the peer's credentials, not the file mode).  -1 with err naming the path. */
int usock_listen(const struct sockaddr_un *sun, mode_t mode, char *err, size_t errlen);
/* Blocking client with send/receive timeouts.  -1 with errno (the caller
 * words the error: "daemon not running" is its business). */
int usock_connect(const struct sockaddr_un *sun, int timeout_sec);

#endif
