#include "config.h"
#include "relay/secaccess.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "relay/oauth2.h"
#include "lib/buf.h"

#define SECACCESS_MAX 65536

/* What the probe found, one line each: "R PATH" (the service user cannot
 * open PATH for reading) or "M TEXT" (a finished message).  Missing files
 * and the like are conf_load_secrets' to report, with their FILE:LINE. */
static bool secaccess_try(struct buf *out, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd >= 0) {
		close(fd);
		return true;
	}
	if (errno != EACCES && errno != EPERM)
		return true;
	buf_printf(out, "R %s\n", path);
	return false;
}

static void secaccess_try_secret(const struct config *c, const char *file, struct buf *out)
{
	char path[PATH_MAX];

	if (file && conf_secret_file_path(c, file, path, sizeof(path)) == 0)
		secaccess_try(out, path);
}

/* As the service user: what the daemon will need at start and at run time. */
static void secaccess_probe(const struct config *c, struct buf *out)
{
	char err[512];

	for (size_t i = 0; i < c->nsmarthosts; i++) {
		const struct conf_smarthost *sh = &c->smarthosts[i];

		secaccess_try_secret(c, sh->password_file, out);
		secaccess_try_secret(c, sh->oauth2_client_secret_file, out);
		if (!sh->oauth2_token_url || !sh->oauth2_refresh_token_file ||
		    !secaccess_try(out, sh->oauth2_refresh_token_file))
			continue;
		if (oauth2_check_files(sh, err, sizeof(err)) < 0)
			buf_printf(out, "M %s:%d: smarthost \"%s\": %s\n", c->path, sh->line,
			    sh->name, err);
	}
}

static void secaccess_write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		data += n;
		len -= (size_t)n;
	}
}

static void secaccess_child(const struct config *c, const struct passwd *pw, int fd)
{
	struct buf b;

	buf_init(&b, SECACCESS_MAX);
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0)
		buf_printf(&b, "M cannot switch to user %s to check its access to the secrets: %s\n",
		    pw->pw_name, strerror(errno));
	else
		secaccess_probe(c, &b);
	if (b.len)
		secaccess_write_all(fd, b.data, b.len);
	_exit(0);
}

/* The probe in a child running as pw (we are root). */
static int secaccess_as_user(const struct config *c, const struct passwd *pw, struct buf *out)
{
	char chunk[4096];
	int p[2], status;
	ssize_t n;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	if ((pid = fork()) < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		close(p[0]);
		secaccess_child(c, pw, p[1]);
	}
	close(p[1]);
	while ((n = read(p[0], chunk, sizeof(chunk))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || buf_append(out, chunk, (size_t)n) < 0)
			break;
	}
	close(p[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return 0;
}

static const char *secaccess_user_name(uid_t uid, char *tmp, size_t size)
{
	struct passwd *pw = getpwuid(uid);

	if (pw)
		return pw->pw_name;
	snprintf(tmp, size, "%ld", (long)uid);
	return tmp;
}

/* The service user, copied: getpw* results are overwritten by the next call. */
struct secaccess_user {
	char name[64];
	uid_t uid;
	gid_t gid;
	bool known;
};

/* Whether the mode bits let u do what mask (S_IROTH, S_IXOTH) asks for. */
static bool secaccess_mode_allows(const struct stat *st, const struct secaccess_user *u, mode_t mask)
{
	if (st->st_uid == u->uid)
		return st->st_mode & (mask << 6);
	if (st->st_gid == u->gid)
		return st->st_mode & (mask << 3);
	return st->st_mode & mask;
}

/* The file itself is readable by its mode: a directory on the way is not. */
static bool secaccess_explain_dir(struct buf *errs, const char *path, const struct secaccess_user *u)
{
	char *dir = strdup(path), *slash, tmp[32];
	struct stat st;
	bool found = false;

	while (dir && !found && (slash = strrchr(dir, '/')) && slash != dir) {
		*slash = '\0';
		if (stat(dir, &st) == 0 && !secaccess_mode_allows(&st, u, S_IXOTH)) {
			buf_printf(errs, "%s: not readable by user %s: directory %s (owner %s, mode "
			    "%04o) is closed to it: chmod o+x %s, or use LoadCredential=\n", path,
			    u->name, dir, secaccess_user_name(st.st_uid, tmp, sizeof(tmp)),
			    (unsigned)(st.st_mode & 07777), dir);
			found = true;
		}
	}
	free(dir);
	return found;
}

/* smtprelayd(8)'s sentence: the file, its owner and mode, and the fix. */
static void secaccess_explain(struct buf *errs, const char *path, const struct secaccess_user *u)
{
	struct group *gr = getgrgid(u->gid);
	char group[64], tmp[32];
	const char *user = u->name;
	struct stat st;

	snprintf(group, sizeof(group), "%s", gr ? gr->gr_name : user);
	if (u->known && stat(path, &st) == 0 && secaccess_mode_allows(&st, u, S_IROTH) &&
	    secaccess_explain_dir(errs, path, u))
		return;

	if (stat(path, &st) < 0) {
		buf_printf(errs, "%s: not readable by user %s (%s): make it and its directories "
		    "accessible to group %s, or use LoadCredential=\n", path, user, strerror(errno),
		    group);
		return;
	}
	buf_printf(errs, "%s: not readable by user %s (owner %s, mode %04o): make it group %s, "
	    "mode 0640, or use LoadCredential=\n", path, user,
	    secaccess_user_name(st.st_uid, tmp, sizeof(tmp)), (unsigned)(st.st_mode & 07777), group);
}

static void secaccess_format(const struct buf *found, const struct secaccess_user *u,
    struct buf *errs)
{
	char *copy = found->len ? strndup(found->data, found->len) : NULL, *save = NULL;

	for (char *l = copy ? strtok_r(copy, "\n", &save) : NULL; l; l = strtok_r(NULL, "\n", &save)) {
		if (l[0] == 'R' && l[1] == ' ')
			secaccess_explain(errs, l + 2, u);
		else if (l[0] == 'M' && l[1] == ' ')
			buf_printf(errs, "%s\n", l + 2);
	}
	free(copy);
}

int secaccess_check(const struct config *c, char **errors)
{
	struct passwd *pw = getpwnam(c->user);
	uid_t me = geteuid();
	struct secaccess_user u = { .uid = pw ? pw->pw_uid : me, .gid = pw ? pw->pw_gid : getegid(),
		.known = pw != NULL };
	struct buf found, errs;
	int r = 0;

	snprintf(u.name, sizeof(u.name), "%s", pw ? pw->pw_name : c->user);
	*errors = NULL;
	if (me != 0 && (!pw || pw->pw_uid != me)) {
		if (asprintf(errors, "%s: running as uid %ld: secrets not checked as user %s "
		    "(run as root or as %s)\n", c->path, (long)me, c->user, c->user) < 0)
			*errors = NULL;
		return 1;
	}
	buf_init(&found, SECACCESS_MAX);
	buf_init(&errs, SECACCESS_MAX);
	if (me == 0 && pw && pw->pw_uid != 0) {
		if (secaccess_as_user(c, pw, &found) < 0)
			buf_printf(&errs, "cannot check the secrets as user %s: %s\n", c->user,
			    strerror(errno));
	} else {
		secaccess_probe(c, &found);
	}
	secaccess_format(&found, &u, &errs);
	if (errs.len) {
		*errors = buf_steal(&errs);
		r = -1;
	}
	buf_free(&found);
	buf_free(&errs);
	return r;
}

static char *secaccess_join(char *a, char *b)
{
	char *s;

	if (!a || !b)
		return a ? a : b;
	if (asprintf(&s, "%s%s", a, b) < 0)
		s = NULL;
	free(a);
	free(b);
	return s;
}

int secaccess_load(struct config *c, bool reader, char **errors, char **warnings)
{
	char *found = NULL, *unread = NULL;
	int r = secaccess_check(c, &found);

	*errors = *warnings = NULL;
	if (r < 0) {
		*errors = found;
		return -1;
	}
	if (r > 0 && reader) {
		/* We are the process that will use them, whoever we run as. */
		free(found);
		found = NULL;
		r = 0;
	}
	if (conf_load_secrets(c, NULL, &unread) < 0 && r == 0) {
		*errors = unread ? unread : strdup("cannot read the secrets\n");
		free(found);
		return -1;
	}
	/* Run by another user: what it cannot read may still be fine for the
	 * service user, so it only warns. */
	*warnings = secaccess_join(found, unread);
	return 0;
}
