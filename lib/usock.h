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
/* Send data with one descriptor attached (SCM_RIGHTS); 0 or -1/errno. */
int usock_send_fd(int s, const void *data, size_t len, int fd);
/* Receive up to len bytes and at most one descriptor (-1 in *fd when none
 * came).  A truncated control message or more than one descriptor is refused
 * with EBADMSG, every descriptor that came with it closed.  Bytes read, or -1. */
ssize_t usock_recv_fd(int s, void *data, size_t len, int *fd);

#endif
