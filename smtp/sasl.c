#include "config.h"
#include "smtp/sasl.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* Multiple of 3 so that chunks encode without padding in the middle. */
#define SASL_B64_CHUNK (3 * 1024)

int sasl_b64_encode(struct buf *out, const void *data, size_t len)
{
	const unsigned char *p = data;
	unsigned char enc[SASL_B64_CHUNK / 3 * 4 + 1];

	if (len > SASL_INPUT_MAX) {
		errno = EINVAL;
		return -1;
	}
	while (len > 0) {
		size_t n = len < SASL_B64_CHUNK ? len : SASL_B64_CHUNK;
		int m = EVP_EncodeBlock(enc, p, (int)n);

		if (m < 0 || buf_append(out, enc, (size_t)m) < 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

static bool sasl_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

int sasl_b64_decode(struct buf *out, const char *s, size_t len)
{
	unsigned char *dec;
	size_t pad = 0;
	int n, r;

	while (len > 0 && sasl_space(s[0])) {
		s++;
		len--;
	}
	while (len > 0 && sasl_space(s[len - 1]))
		len--;
	/* EVP_DecodeBlock wants whole quanta; it returns the padding as zeros. */
	if (len % 4 != 0 || len > SASL_INPUT_MAX) {
		errno = EINVAL;
		return -1;
	}
	if (len == 0)
		return 0;
	if (s[len - 1] == '=')
		pad++;
	if (s[len - 2] == '=')
		pad++;
	dec = malloc(len / 4 * 3 + 1);
	if (!dec)
		return -1;
	n = EVP_DecodeBlock(dec, (const unsigned char *)s, (int)len);
	if (n < 0 || (size_t)n < pad) {
		free(dec);
		errno = EINVAL;
		return -1;
	}
	r = buf_append(out, dec, (size_t)n - pad);
	free(dec);
	return r;
}

/* Encode the clear text in tmp, then wipe it whatever happened. */
static int sasl_finish(struct buf *out, struct buf *tmp, int r)
{
	if (r == 0)
		r = sasl_b64_encode(out, tmp->data, tmp->len);
	if (tmp->data)
		explicit_bzero(tmp->data, tmp->cap);
	buf_free(tmp);
	return r;
}

int sasl_plain(struct buf *out, const char *user, const char *pass)
{
	struct buf tmp;
	int r;

	buf_init(&tmp, SASL_INPUT_MAX);
	r = buf_append(&tmp, "", 1);
	if (r == 0)
		r = buf_append(&tmp, user, strlen(user) + 1);
	if (r == 0)
		r = buf_puts(&tmp, pass);
	return sasl_finish(out, &tmp, r);
}

int sasl_xoauth2(struct buf *out, const char *user, const char *token)
{
	struct buf tmp;
	int r;

	buf_init(&tmp, SASL_INPUT_MAX);
	r = buf_printf(&tmp, "user=%s\001auth=Bearer %s\001\001", user, token);
	return sasl_finish(out, &tmp, r);
}

/* RFC 5801 saslname: ',' and '=' are escaped as =2C and =3D. */
static int sasl_saslname(struct buf *b, const char *s)
{
	for (; *s; s++) {
		int r;

		if (*s == ',')
			r = buf_puts(b, "=2C");
		else if (*s == '=')
			r = buf_puts(b, "=3D");
		else
			r = buf_append(b, s, 1);
		if (r < 0)
			return -1;
	}
	return 0;
}

int sasl_oauthbearer(struct buf *out, const char *user, const char *host,
    unsigned port, const char *token)
{
	struct buf tmp;
	int r;

	buf_init(&tmp, SASL_INPUT_MAX);
	r = buf_puts(&tmp, "n,a=");
	if (r == 0)
		r = sasl_saslname(&tmp, user);
	if (r == 0)
		r = buf_puts(&tmp, ",\001");
	if (r == 0 && host && *host)
		r = buf_printf(&tmp, "host=%s\001", host);
	if (r == 0 && port)
		r = buf_printf(&tmp, "port=%u\001", port);
	if (r == 0)
		r = buf_printf(&tmp, "auth=Bearer %s\001\001", token);
	return sasl_finish(out, &tmp, r);
}
