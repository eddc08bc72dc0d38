#include "config.h"
#include "conf/conf.h"
#include "conf/cint.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/fsutil.h"
#include "lib/log.h"

#define CONF_MAX_SECRET (64 * 1024)

/* ---- secrets ---- */

/* Absolute as given; relative in $CREDENTIALS_DIRECTORY (systemd
 * LoadCredential=), else next to the configuration file. */
static int conf_secret_path(const struct config *c, const char *file, char *out, size_t size)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY"), *slash = strrchr(c->path, '/');
	int n;

	if (file[0] == '/')
		n = snprintf(out, size, "%s", file);
	else if (dir && *dir)
		n = snprintf(out, size, "%s/%s", dir, file);
	else if (slash)
		n = snprintf(out, size, "%.*s/%s", (int)(slash - c->path), c->path, file);
	else
		n = snprintf(out, size, "%s", file);
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* NULL on success, else why not. */
static const char *conf_secret_read(const char *path, char **out)
{
	const char *why = NULL;
	struct stat st;
	size_t len = 0;
	char *s = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0 || fstat(fd, &st) < 0)
		why = strerror(errno);
	else if (!S_ISREG(st.st_mode))
		why = "not a regular file";
	else if (fs_read_fd(fd, CONF_MAX_SECRET, &s, &len) < 0)
		why = errno == EFBIG ? "file too large" : strerror(errno);
	if (fd >= 0)
		close(fd);
	if (why)
		return why;
	if (st.st_mode & S_IROTH)
		log_warn("secret file %s is readable by others: run chmod o-r %s (the service "
		    "user reads it as owner or group)", path, path);
	/* One trailing newline is an editor's, not the secret's. */
	if (len > 0 && s[len - 1] == '\n' && --len > 0 && s[len - 1] == '\r')
		len--;
	s[len] = '\0';
	if (len == 0 || memchr(s, '\0', len)) {
		explicit_bzero(s, len);
		free(s);
		return len ? "contains a NUL byte" : "empty";
	}
	*out = s;
	return NULL;
}

struct conf_secrets {
	const struct config *c;
	const struct conf_smarthost *sh;
	const struct conf_smarthost *old;	/* same name in the previous config */
	struct buf errors;
	int rc;
};

static void conf_secret_load(struct conf_secrets *j, const char *key, const char *file,
    char **dst, const char *old)
{
	char path[PATH_MAX], *v = NULL;
	const char *why;

	if (!file)
		return;
	if (conf_secret_path(j->c, file, path, sizeof(path)) < 0) {
		snprintf(path, sizeof(path), "%s", file);
		why = strerror(ENAMETOOLONG);
	} else {
		why = conf_secret_read(path, &v);
	}
	if (!why) {
		conf_free_secret(*dst);
		*dst = v;
		return;
	}
	if (old && (v = strdup(old)) != NULL) {
		log_warn("%s:%d: smarthost \"%s\": %s %s: %s; keeping the previous value",
		    j->c->path, j->sh->line, j->sh->name, key, path, why);
		conf_free_secret(*dst);
		*dst = v;
		return;
	}
	buf_printf(&j->errors, "%s:%d: smarthost \"%s\": %s %s: %s\n",
	    j->c->path, j->sh->line, j->sh->name, key, path, why);
	j->rc = -1;
}

static const struct conf_smarthost *conf_old_smarthost(const struct config *old, const char *name)
{
	for (size_t i = 0; old && i < old->nsmarthosts; i++)
		if (strcmp(old->smarthosts[i].name, name) == 0)
			return &old->smarthosts[i];
	return NULL;
}

int conf_load_secrets(struct config *c, const struct config *old, char **errors)
{
	struct conf_secrets j;

	memset(&j, 0, sizeof(j));
	j.c = c;
	buf_init(&j.errors, CONF_MAX_ERRORS);
	for (size_t i = 0; i < c->nsmarthosts; i++) {
		struct conf_smarthost *sh = &c->smarthosts[i];
		j.sh = sh;
		j.old = conf_old_smarthost(old, sh->name);
		conf_secret_load(&j, "password_file", sh->password_file, &sh->password,
		    j.old ? j.old->password : NULL);
		conf_secret_load(&j, "oauth2_client_secret_file", sh->oauth2_client_secret_file,
		    &sh->oauth2_client_secret, j.old ? j.old->oauth2_client_secret : NULL);
	}
	conf_errors_out(&j.errors, errors);
	buf_free(&j.errors);
	return j.rc;
}

int conf_secret_file_path(const struct config *c, const char *file, char *out, size_t size)
{
	return conf_secret_path(c, file, out, size);
}
