#include "config.h"
#include "relay/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/secmem.h"

#define SECRET_ERR_MAX 1024
#define SECRET_REAP_MS 10		/* poll for the exit once the pipes closed */

struct secret_job {
	pid_t pid;
	int fds[2];			/* stdout, stderr read ends; -1 once closed */
	struct event *ev[2];
	struct event *timeout;
	struct event *reap;
	unsigned timeout_sec;
	bool timed_out;
	bool overflow;
	char out[SECRET_MAX + 1];
	size_t outlen;
	char err[SECRET_ERR_MAX];
	size_t errlen;
	secret_done_fn done;
	void *arg;
};

static void secret_wipe(void *p, size_t n)
{
	volatile unsigned char *v = p;

	while (n--)
		*v++ = 0;
}

static void secret_close_fd(struct secret_job *j, int i)
{
	if (j->ev[i]) {
		event_free(j->ev[i]);
		j->ev[i] = NULL;
	}
	if (j->fds[i] >= 0) {
		close(j->fds[i]);
		j->fds[i] = -1;
	}
}

static void secret_free(struct secret_job *j)
{
	secret_close_fd(j, 0);
	secret_close_fd(j, 1);
	if (j->timeout)
		event_free(j->timeout);
	if (j->reap)
		event_free(j->reap);
	secmem_free(j, sizeof(*j));
}

/* The first line of stderr, control characters replaced: it goes to logs. */
static void secret_first_line(struct secret_job *j, char *dst, size_t size)
{
	size_t n = 0;

	for (size_t i = 0; i < j->errlen && n + 1 < size; i++) {
		unsigned char ch = (unsigned char)j->err[i];

		if (ch == '\n')
			break;
		if (ch == '\r' && (i + 1 == j->errlen || j->err[i + 1] == '\n'))
			continue;
		dst[n++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
	}
	dst[n] = '\0';
}

static void secret_finish(struct secret_job *j, int wstatus)
{
	char status[64], detail[256];

	secret_first_line(j, detail, sizeof(detail));
	status[0] = '\0';
	if (j->timed_out)
		snprintf(status, sizeof(status), "timed out after %us", j->timeout_sec);
	else if (WIFSIGNALED(wstatus))
		snprintf(status, sizeof(status), "signal %d", WTERMSIG(wstatus));
	else if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) != 0)
		snprintf(status, sizeof(status), "exit %d", WEXITSTATUS(wstatus));
	else if (j->overflow)
		snprintf(status, sizeof(status), "output over %d bytes", SECRET_MAX);
	if (!status[0] && j->outlen > 0 && j->out[j->outlen - 1] == '\n')
		j->outlen--;
	if (!status[0] && j->outlen == 0)
		snprintf(status, sizeof(status), "no output");
	j->out[j->outlen] = '\0';
	if (status[0])
		j->done(NULL, 0, status, detail, j->arg);
	else
		j->done(j->out, j->outlen, NULL, NULL, j->arg);
	secret_free(j);
}

static void secret_try_reap(struct secret_job *j)
{
	struct timeval tv = { 0, SECRET_REAP_MS * 1000 };
	int wstatus;
	pid_t p;

	do
		p = waitpid(j->pid, &wstatus, WNOHANG);
	while (p < 0 && errno == EINTR);
	if (p == j->pid || (p < 0 && errno == ECHILD)) {
		/* ECHILD: someone set SIGCHLD to SIG_IGN; the output decides. */
		if (p < 0)
			wstatus = 0;
		j->pid = -1;
		secret_finish(j, wstatus);
		return;
	}
	evtimer_add(j->reap, &tv);
}

static void secret_on_reap(evutil_socket_t fd, short what, void *arg)
{
	secret_try_reap(arg);
}

static void secret_on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct secret_job *j = arg;

	j->timed_out = true;
	kill(-j->pid, SIGKILL);
	secret_close_fd(j, 0);
	secret_close_fd(j, 1);
	secret_try_reap(j);
}

static void secret_append(struct secret_job *j, int i, const char *data, size_t n)
{
	if (i == 0) {
		if (j->overflow || n > SECRET_MAX - j->outlen) {
			j->overflow = true;
			return;
		}
		memcpy(j->out + j->outlen, data, n);
		j->outlen += n;
	} else {
		if (n > sizeof(j->err) - j->errlen)
			n = sizeof(j->err) - j->errlen;
		memcpy(j->err + j->errlen, data, n);
		j->errlen += n;
	}
}

static void secret_on_read(struct secret_job *j, int i)
{
	char data[4096];
	ssize_t n = read(j->fds[i], data, sizeof(data));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0) {
		secret_append(j, i, data, (size_t)n);
		secret_wipe(data, (size_t)n);
		return;
	}
	secret_close_fd(j, i);
	if (j->fds[0] < 0 && j->fds[1] < 0)
		secret_try_reap(j);
}

static void secret_on_stdout(evutil_socket_t fd, short what, void *arg)
{
	secret_on_read(arg, 0);
}

static void secret_on_stderr(evutil_socket_t fd, short what, void *arg)
{
	secret_on_read(arg, 1);
}

/* In the child: only async-signal-safe calls until exec. */
static void secret_child(const char *cmd, int out, int err)
{
	sigset_t none;
	int null = open("/dev/null", O_RDONLY);

	setpgid(0, 0);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
		_exit(126);
	execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
	_exit(127);
}

static int secret_events(struct secret_job *j, struct event_base *base)
{
	j->ev[0] = event_new(base, j->fds[0], EV_READ | EV_PERSIST, secret_on_stdout, j);
	j->ev[1] = event_new(base, j->fds[1], EV_READ | EV_PERSIST, secret_on_stderr, j);
	j->timeout = evtimer_new(base, secret_on_timeout, j);
	j->reap = evtimer_new(base, secret_on_reap, j);
	if (!j->ev[0] || !j->ev[1] || !j->timeout || !j->reap)
		return -1;
	return 0;
}

static int secret_start(struct secret_job *j, const char *cmd)
{
	int out[2], err[2];

	if (pipe2(out, O_CLOEXEC) < 0)
		return -1;
	if (pipe2(err, O_CLOEXEC) < 0) {
		close(out[0]);
		close(out[1]);
		return -1;
	}
	j->fds[0] = out[0];
	j->fds[1] = err[0];
	j->pid = fork();
	if (j->pid == 0)
		secret_child(cmd, out[1], err[1]);
	close(out[1]);
	close(err[1]);
	if (j->pid < 0)
		return -1;
	/* Also here: the timeout must be able to kill the group at once. */
	setpgid(j->pid, j->pid);
	fcntl(j->fds[0], F_SETFL, O_NONBLOCK);
	fcntl(j->fds[1], F_SETFL, O_NONBLOCK);
	return 0;
}

struct secret_job *secret_run(struct event_base *base, const char *cmd, unsigned timeout_sec,
    secret_done_fn done, void *arg)
{
	/* Its output buffer holds the secret: pages kept out of core dumps. */
	struct secret_job *j = secmem_alloc(sizeof(*j));
	struct timeval tv = { (time_t)timeout_sec, 0 };
	int saved;

	if (!j)
		return NULL;
	j->fds[0] = j->fds[1] = -1;
	j->pid = -1;
	j->timeout_sec = timeout_sec;
	j->done = done;
	j->arg = arg;
	if (secret_start(j, cmd) < 0 || secret_events(j, base) < 0)
		goto fail;
	if (event_add(j->ev[0], NULL) < 0 || event_add(j->ev[1], NULL) < 0 ||
	    evtimer_add(j->timeout, &tv) < 0)
		goto fail;
	return j;
fail:
	saved = errno;
	if (j->pid > 0) {
		kill(-j->pid, SIGKILL);
		while (waitpid(j->pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	secret_free(j);
	errno = saved ? saved : ENOMEM;
	return NULL;
}

/* The process is killed with SIGKILL first, so waiting for it is brief. */
void secret_cancel(struct secret_job *j)
{
	if (!j)
		return;
	if (j->pid > 0) {
		kill(-j->pid, SIGKILL);
		while (waitpid(j->pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	secret_free(j);
}
