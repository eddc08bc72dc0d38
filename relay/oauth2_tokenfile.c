/* The refresh token file: read, replaced atomically (mode 0600), and
 * checked for the service user at start. */
#include "config.h"
#include "relay/oauth2.h"
#include "relay/oauth2int.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>

#include "relay/tls.h"
#include "lib/fsutil.h"
#include "lib/log.h"

/* ---- the refresh token file ---- */

char *oauth2_load_refresh_token(const char *path, char *err, size_t errlen)
{
	char *data = NULL, *start, *end;
	size_t len = 0;

	if (fs_read_file(path, OAUTH2_TOKEN_MAX + 256, &data, &len) < 0) {
		snprintf(err, errlen, "cannot read %s: %s", path,
		    errno == EFBIG ? "file too large" : strerror(errno));
		return NULL;
	}
	for (start = data; *start && isspace((unsigned char)*start); start++)
		;
	for (end = data + strlen(data); end > start && isspace((unsigned char)end[-1]); end--)
		;
	*end = '\0';
	if (!oauth2_token_ok(start)) {
		snprintf(err, errlen, "%s %s", path, *start ? "does not hold a usable refresh token"
		    : "is empty");
		oauth2_wipe(data, len);
		free(data);
		return NULL;
	}
	memmove(data, start, strlen(start) + 1);
	return data;
}

static char *oauth2_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

static int oauth2_write_tmp(int fd, const char *token)
{
	if (fchmod(fd, 0600) < 0 || fs_write_all(fd, token, strlen(token)) < 0
	    || fs_write_all(fd, "\n", 1) < 0 || fsync(fd) < 0)
		return -1;
	return 0;
}

int oauth2_save_refresh_token(const char *path, const char *token, char *err, size_t errlen)
{
	char *dir = oauth2_dirname(path), *tmp = NULL;
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	int fd = -1, saved;

	if (!dir || asprintf(&tmp, "%s/.%s.XXXXXX", dir, base) < 0) {
		tmp = NULL;
		errno = ENOMEM;
		goto fail;
	}
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0 || oauth2_write_tmp(fd, token) < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0 || fs_fsync_dir(dir) < 0)
		goto fail;
	free(tmp);
	free(dir);
	return 0;
fail:
	saved = errno;
	snprintf(err, errlen, "cannot write %s: %s", path, strerror(saved));
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	} else if (tmp && access(tmp, F_OK) == 0) {
		unlink(tmp);
	}
	free(tmp);
	free(dir);
	errno = saved;
	return -1;
}

int oauth2_check_files(const struct conf_smarthost *sh, char *err, size_t errlen)
{
	char *dir, *tok;

	if (!sh->oauth2_token_url || !sh->oauth2_refresh_token_file)
		return 0;
	tok = oauth2_load_refresh_token(sh->oauth2_refresh_token_file, err, errlen);
	if (!tok)
		return -1;
	oauth2_free_secret(tok);
	dir = oauth2_dirname(sh->oauth2_refresh_token_file);
	if (!dir) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (access(dir, W_OK | X_OK) < 0) {
		snprintf(err, errlen, "directory %s of oauth2_refresh_token_file is not writable "
		    "(%s): a rotated refresh token could not be saved", dir, strerror(errno));
		free(dir);
		return -1;
	}
	free(dir);
	return 0;
}
