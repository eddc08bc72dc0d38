/* DKIM keys and message signing: see signer.h. */
#include "config.h"
#include "relay/signer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/dkim.h"
#include "lib/linelimit.h"

#define SIGNER_READ 65536

struct signer {
	struct dkim_signer *sg;
	struct dkim_key **keys;
	size_t n;
};

static int signer_add(struct signer *s, const struct conf_dkim *d, struct buf *errs,
    const char *path)
{
	char err[512];
	struct dkim_key *k = dkim_key_load(d->key_file, err, sizeof(err));

	if (!k) {
		buf_printf(errs, "%s:%d: dkim \"%s\" selector \"%s\": key_file: %s\n", path, d->line,
		    d->domain, d->selector, err);
		return -1;
	}
	s->keys[s->n] = k;
	s->sg[s->n] = (struct dkim_signer){ d->domain, d->selector, k,
		(const char *const *)d->headers, d->nheaders };
	s->n++;
	return 0;
}

struct signer *signer_load(const struct config *c, char **errors)
{
	struct signer *s = calloc(1, sizeof(*s));
	struct buf errs;
	int bad = 0;

	buf_init(&errs, 1 << 20);
	if (!s || !(s->sg = calloc(c->ndkim + 1, sizeof(*s->sg)))
	    || !(s->keys = calloc(c->ndkim + 1, sizeof(*s->keys)))) {
		buf_printf(&errs, "%s: %s\n", c->path, strerror(ENOMEM));
		bad = 1;
	} else {
		for (size_t i = 0; i < c->ndkim; i++)
			if (signer_add(s, &c->dkim[i], &errs, c->path) < 0)
				bad = 1;
	}
	if (!bad)
		return s;
	signer_free(s);
	if (errors && errs.len) {
		size_t old = *errors ? strlen(*errors) : 0;
		char *v = realloc(*errors, old + errs.len + 1);

		if (v) {
			memcpy(v + old, errs.data, errs.len + 1);
			*errors = v;
		}
	}
	buf_free(&errs);
	return NULL;
}

size_t signer_count(const struct signer *s)
{
	return s ? s->n : 0;
}

void signer_free(struct signer *s)
{
	if (!s)
		return;
	for (size_t i = 0; s->keys && i < s->n; i++)
		dkim_key_free(s->keys[i]);
	free(s->keys);
	free(s->sg);
	free(s);
}

/* The signature covers what conn_feed sends: lines over 998 octets broken
 * there the same way (lib/linelimit.h), so they are broken here too. */
static int signer_input(struct dkim_sign *ds, struct linelimit *ll, const char *in, size_t n,
    char *out)
{
	while (n > 0) {
		size_t outlen, used = linelimit_feed(ll, in, n, out, SIGNER_READ, &outlen);

		if (dkim_sign_input(ds, out, outlen) < 0)
			return -1;
		in += used;
		n -= used;
	}
	return 0;
}

static int signer_feed(struct dkim_sign *ds, int fd, char *err, size_t errlen)
{
	char *chunk = malloc(2 * SIGNER_READ);
	off_t off = lseek(fd, 0, SEEK_CUR);
	struct linelimit ll;
	ssize_t n;

	if (!chunk || off < 0) {
		snprintf(err, errlen, "%s", strerror(chunk ? errno : ENOMEM));
		free(chunk);
		return -1;
	}
	linelimit_init(&ll);
	while ((n = pread(fd, chunk, SIGNER_READ, off)) > 0) {
		off += n;
		/* Mail we do not sign is not read to its end. */
		if (signer_input(ds, &ll, chunk, (size_t)n, chunk + SIGNER_READ) < 0 ||
		    dkim_sign_unwanted(ds))
			break;
	}
	free(chunk);
	if (n < 0) {
		snprintf(err, errlen, "cannot read the queued message: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int signer_sign_fd(const struct signer *s, int fd, time_t now, char **hdr, size_t *len,
    char *err, size_t errlen)
{
	struct dkim_sign *ds = dkim_sign_new(s->sg, s->n, now);
	int r;

	if (!ds) {
		snprintf(err, errlen, "%s", strerror(ENOMEM));
		return -1;
	}
	r = signer_feed(ds, fd, err, errlen);
	if (r == 0)
		r = dkim_sign_finish(ds, hdr, len, err, errlen);
	dkim_sign_free(ds);
	return r;
}

int signer_check(const struct config *c)
{
	char *errors = NULL;
	struct signer *s = signer_load(c, &errors);

	if (!s)
		fputs(errors ? errors : "out of memory loading DKIM keys\n", stderr);
	free(errors);
	signer_free(s);
	return s ? 0 : -1;
}
