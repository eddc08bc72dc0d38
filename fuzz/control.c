/* Fuzz target: the control socket protocol as the daemon serves it (the
 * socket is 0666: any local user's bytes).  A real ctl on a private spool
 * and event loop; each input is sent by a client that then shuts down its
 * side, and the daemon must answer with data lines and exactly one final
 * "ok ..." or "error ..." line, then close, without the loop stalling. */
#include "config.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "daemon/ctl.h"
#include "daemon/daemon.h"
#include "queue/control.h"
#include "fuzz/fuzz.h"
#include "lib/usock.h"

#define FUZZ_CTL_IN_MAX 8192
#define FUZZ_CTL_OUT_MAX (1 << 20)

static struct daemon *fuzz_ctl_daemon(void)
{
	static struct daemon d;
	char text[512], path[64], err[512], *errors = NULL;
	int fd;

	if (d.ctl)
		return &d;
	snprintf(text, sizeof(text), "hostname = \"relay.fuzz\"\nspool_dir = \"%s\"\nlisten = {}\n",
	    fuzz_spool());
	fd = fuzz_memfd((const uint8_t *)text, strlen(text));
	fuzz_fd_path(fd, path, sizeof(path));
	if (!(d.conf = conf_load(path, &errors)) || !(d.base = event_base_new()) ||
	    !(d.queue = queue_open(fuzz_spool(), true, err, sizeof(err))) ||
	    !(d.ctl = ctl_new(&d, err, sizeof(err)))) {
		fprintf(stderr, "fuzz: control setup: %s\n", errors ? errors : err);
		abort();
	}
	close(fd);
	return &d;
}

/* Run the loop until the daemon has closed the connection; the reply. */
static size_t fuzz_ctl_exchange(struct daemon *d, int s, char *out)
{
	size_t len = 0;

	for (int round = 0; round < 10000; round++) {
		struct pollfd p = { .fd = s, .events = POLLIN };
		ssize_t n;

		event_base_loop(d->base, EVLOOP_NONBLOCK);
		if (poll(&p, 1, 0) <= 0)
			continue;
		n = read(s, out + len, FUZZ_CTL_OUT_MAX - len);
		if (n <= 0)
			return len;
		len += (size_t)n;
		FUZZ_CHECK(len < FUZZ_CTL_OUT_MAX);
	}
	FUZZ_CHECK(!"the daemon never closed the control connection");
	return len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char out[FUZZ_CTL_OUT_MAX];
	struct daemon *d;
	struct sockaddr_un sun;
	char err[256];
	const char *last;
	size_t len;
	int s;

	fuzz_init();
	d = fuzz_ctl_daemon();
	if (size > FUZZ_CTL_IN_MAX)
		size = FUZZ_CTL_IN_MAX;
	if (usock_addr(&sun, fuzz_spool(), CONTROL_SOCKET, err, sizeof(err)) < 0 ||
	    (s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		abort();
	FUZZ_CHECK(connect(s, (struct sockaddr *)&sun, sizeof(sun)) == 0);
	FUZZ_CHECK(size == 0 || write(s, data, size) == (ssize_t)size);
	shutdown(s, SHUT_WR);
	len = fuzz_ctl_exchange(d, s, out);
	close(s);
	if (len == 0)
		return 0;	/* an empty request gets no answer */
	FUZZ_CHECK(out[len - 1] == '\n');
	out[len - 1] = '\0';
	last = strrchr(out, '\n');
	last = last ? last + 1 : out;
	FUZZ_CHECK(strncmp(last, "ok", 2) == 0 || strncmp(last, "error ", 6) == 0);
	return 0;
}
