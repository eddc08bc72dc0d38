#include "config.h"
#include "frontend/login_state.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#define LOGIN_STATE_PROG "smtprelay oauth2-login"

static char *login_state_dir(const char *file)
{
	const char *slash = strrchr(file, '/');

	if (!slash)
		return strdup(".");
	return strndup(file, slash == file ? 1 : (size_t)(slash - file));
}

/* mkdir -p for the parents (root-owned, 0755 as a package would), the last
 * one for the service user. */
static int login_state_mkdir(const char *dir, const struct passwd *pw)
{
	char *p = strdup(dir);

	if (!p)
		return -1;
	for (char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST) {
			free(p);
			return -1;
		}
		*s = '/';
	}
	free(p);
	if (mkdir(dir, 0700) < 0 || chown(dir, pw->pw_uid, pw->pw_gid) < 0)
		return -1;
	printf("Created %s (owner %s, mode 0700) for the refresh token.\n", dir, pw->pw_name);
	return 0;
}

static int login_state_missing(const char *dir, const struct passwd *pw, const char *user)
{
	if (geteuid() == 0 && pw) {
		if (login_state_mkdir(dir, pw) == 0)
			return EX_OK;
		fprintf(stderr, "%s: cannot create %s: %s\n", LOGIN_STATE_PROG, dir, strerror(errno));
		return EX_CANTCREAT;
	}
	fprintf(stderr, "%s: directory %s does not exist; create it for the service user with\n"
	    "  sudo install -d -o %s -g %s -m 0700 %s\n"
	    "(or run smtprelay oauth2-login as root, which does that)\n", LOGIN_STATE_PROG, dir,
	    user, pw ? pw->pw_name : user, dir);
	return EX_CANTCREAT;
}

int login_state_prepare(const struct config *c, const char *token_file)
{
	struct passwd *pw = getpwnam(c->user);
	char *dir = login_state_dir(token_file);
	struct stat st;
	int rc = EX_OK;

	if (!dir)
		return EX_OSERR;
	if (stat(dir, &st) < 0 && errno == ENOENT)
		rc = login_state_missing(dir, pw, c->user);
	else if (geteuid() == 0 && pw && pw->pw_uid != 0 && st.st_uid != pw->pw_uid &&
	    !(st.st_gid == pw->pw_gid && (st.st_mode & S_IWGRP))) {
		fprintf(stderr, "%s: directory %s is not writable by user %s, who must replace "
		    "the token when the provider rotates it; run: chown %s: %s\n",
		    LOGIN_STATE_PROG, dir, c->user, c->user, dir);
		rc = EX_CANTCREAT;
	} else if (geteuid() != 0 && access(dir, W_OK | X_OK) < 0) {
		fprintf(stderr, "%s: cannot store the refresh token: directory %s is not writable "
		    "by uid %ld (%s); run this as root, or give the directory to the service "
		    "user: sudo chown %s: %s\n", LOGIN_STATE_PROG, dir, (long)geteuid(),
		    strerror(errno), c->user, dir);
		rc = EX_CANTCREAT;
	}
	free(dir);
	return rc;
}

int login_state_own(const struct config *c, const char *token_file)
{
	struct passwd *pw = getpwnam(c->user);

	if (geteuid() != 0 || !pw || pw->pw_uid == 0)
		return EX_OK;
	/* Written by root: the daemon, running as the service user, must read it
	 * and replace it when the provider rotates it. */
	if (chown(token_file, pw->pw_uid, pw->pw_gid) < 0) {
		fprintf(stderr, "%s: stored %s but cannot give it to user %s: %s; run: "
		    "chown %s: %s\n", LOGIN_STATE_PROG, token_file, c->user, strerror(errno),
		    c->user, token_file);
		return EX_CANTCREAT;
	}
	return EX_OK;
}
