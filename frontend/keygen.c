/* smtprelay dkim-keygen: see keygen.h. */
#include "config.h"
#include "frontend/keygen.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "lib/addr.h"
#include "lib/buf.h"
#include "lib/dkim.h"

#define KEYGEN_STRING_MAX 255

struct keygen_args {
	enum dkim_alg alg;
	unsigned bits;
	const char *out;
	const char *domain;
	const char *selector;
};

static int keygen_usage(const char *why, const char *arg)
{
	fprintf(stderr, "smtprelay dkim-keygen: %s%s%s\n"
	    "usage: smtprelay dkim-keygen [--rsa BITS | --ed25519] [-o FILE] DOMAIN SELECTOR\n",
	    why, arg ? ": " : "", arg ? arg : "");
	return EX_USAGE;
}

static int keygen_bits(const char *s, unsigned *bits)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v < DKIM_RSA_MIN_BITS || v > KEYGEN_RSA_MAX)
		return -1;
	*bits = (unsigned)v;
	return 0;
}

static int keygen_args(int argc, char **argv, struct keygen_args *a)
{
	int npos = 0;

	*a = (struct keygen_args){ DKIM_RSA_SHA256, KEYGEN_RSA_DEFAULT, NULL, NULL, NULL };
	for (int i = 1; i < argc; i++) {
		const char *s = argv[i];

		if (strcmp(s, "--rsa") == 0) {
			if (++i >= argc || keygen_bits(argv[i], &a->bits) < 0)
				return keygen_usage("--rsa needs a size in bits from 1024 to 8192",
				    i < argc ? argv[i] : NULL);
			a->alg = DKIM_RSA_SHA256;
		} else if (strcmp(s, "--ed25519") == 0) {
			a->alg = DKIM_ED25519_SHA256;
		} else if (strcmp(s, "-o") == 0) {
			if (++i >= argc)
				return keygen_usage("-o needs a file name", NULL);
			a->out = argv[i];
		} else if (s[0] == '-' && s[1]) {
			return keygen_usage("unknown option", s);
		} else if (npos++ == 0) {
			a->domain = s;
		} else if (npos == 2) {
			a->selector = s;
		} else {
			return keygen_usage("unexpected argument", s);
		}
	}
	if (!a->selector)
		return keygen_usage("DOMAIN and SELECTOR are needed", NULL);
	if (!addr_valid_domain(a->domain, false) || !strchr(a->domain, '.'))
		return keygen_usage("not a domain name", a->domain);
	if (!conf_dkim_selector_ok(a->selector))
		return keygen_usage("a selector is DNS labels (letters, digits, '-', '_')",
		    a->selector);
	return 0;
}

char *keygen_txt_record(const char *domain, const char *selector, const char *value)
{
	struct buf b;
	size_t len = strlen(value);

	buf_init(&b, 1 << 16);
	buf_printf(&b, "%s._domainkey.%s. IN TXT", selector, domain);
	for (size_t off = 0; off < len; off += KEYGEN_STRING_MAX) {
		size_t n = len - off < KEYGEN_STRING_MAX ? len - off : KEYGEN_STRING_MAX;

		buf_printf(&b, " \"%.*s\"", (int)n, value + off);
	}
	return buf_steal(&b);
}

/* mkdir -p of path's directory; an existing one is left as it is. */
static void keygen_mkdirs(const char *path)
{
	char *d = strdup(path);

	for (char *p = d ? d + 1 : NULL; p && (p = strchr(p, '/')); p++) {
		*p = '\0';
		mkdir(d, 0755);
		*p = '/';
	}
	free(d);
}

/* The daemon (as the service user) must read the key: group ownership. */
static void keygen_chgrp(int fd, const char *path, const char *user)
{
	struct passwd *pw = getpwnam(user);

	if (!pw)
		fprintf(stderr, "smtprelay dkim-keygen: warning: user \"%s\" does not exist: %s "
		    "keeps your group; make it readable by the service user\n", user, path);
	else if (fchown(fd, (uid_t)-1, pw->pw_gid) < 0)
		fprintf(stderr, "smtprelay dkim-keygen: warning: cannot give %s to group %u of "
		    "user \"%s\" (%s): run as root or chgrp it, else smtprelayd cannot read it\n",
		    path, (unsigned)pw->pw_gid, user, strerror(errno));
}

static int keygen_write(const char *path, const char *pem, const char *user)
{
	size_t len = strlen(pem);
	int fd;

	keygen_mkdirs(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "smtprelay dkim-keygen: %s: %s%s\n", path, strerror(errno),
		    errno == EEXIST ? " (never overwritten: remove it or choose another "
		    "selector)" : "");
		return EX_CANTCREAT;
	}
	keygen_chgrp(fd, path, user);
	if (fchmod(fd, 0640) < 0 || write(fd, pem, len) != (ssize_t)len || fsync(fd) < 0) {
		fprintf(stderr, "smtprelay dkim-keygen: %s: %s\n", path, strerror(errno));
		close(fd);
		unlink(path);
		return EX_CANTCREAT;
	}
	close(fd);
	return EX_OK;
}

static int keygen_output(const struct keygen_args *a, const struct dkim_key *k,
    const char *path, const char *user)
{
	char *pem = dkim_key_pem(k), *txt = dkim_key_txt(k), *rec = NULL;
	int r = EX_SOFTWARE;

	if (!pem || !txt || !(rec = keygen_txt_record(a->domain, a->selector, txt)))
		fprintf(stderr, "smtprelay dkim-keygen: cannot encode the key: out of memory\n");
	else if ((r = keygen_write(path, pem, user)) == EX_OK)
		printf("%s\n%s\n", path, rec);
	if (pem)
		explicit_bzero(pem, strlen(pem));
	free(pem);
	free(txt);
	free(rec);
	return r;
}

int keygen_main(const struct config *c, int argc, char **argv)
{
	struct keygen_args a;
	struct dkim_key *k;
	char err[256], path[4096];
	int r = keygen_args(argc, argv, &a);

	if (r != 0)
		return r;
	if (a.out)
		snprintf(path, sizeof(path), "%s", a.out);
	else
		snprintf(path, sizeof(path), "%s/smtprelay/dkim/%s.%s.key", SYSCONFDIR, a.domain,
		    a.selector);
	if (!(k = dkim_key_generate(a.alg, a.bits, err, sizeof(err)))) {
		fprintf(stderr, "smtprelay dkim-keygen: %s\n", err);
		return EX_SOFTWARE;
	}
	r = keygen_output(&a, k, path, c->user);
	dkim_key_free(k);
	return r;
}
