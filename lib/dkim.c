/* DKIM signing: see dkim.h. */
#include "config.h"
#include "lib/dkim.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "lib/addr.h"
#include "lib/buf.h"
#include "lib/rfc5322.h"

#define DKIM_FOLD 76		/* fold before this column (RFC 5322 prefers < 78) */

struct dkim_key {
	EVP_PKEY *pkey;
	enum dkim_alg alg;
};

/* ---- keys ---- */

/* An encrypted key would make OpenSSL prompt on the terminal: refuse it. */
static int dkim_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag, (void)u;
	return -1;
}

static struct dkim_key *dkim_key_wrap(EVP_PKEY *pkey, char *err, size_t errlen)
{
	struct dkim_key *k;
	int id = EVP_PKEY_get_base_id(pkey);

	if (id == EVP_PKEY_RSA && EVP_PKEY_get_bits(pkey) < DKIM_RSA_MIN_BITS) {
		snprintf(err, errlen, "RSA key of %d bits: DKIM needs at least %d "
		    "(make a new one with smtprelay dkim-keygen)", EVP_PKEY_get_bits(pkey),
		    DKIM_RSA_MIN_BITS);
		goto fail;
	}
	if (id != EVP_PKEY_RSA && id != EVP_PKEY_ED25519) {
		snprintf(err, errlen, "%s key: only RSA and Ed25519 keys can sign DKIM",
		    OBJ_nid2sn(id));
		goto fail;
	}
	if (!(k = calloc(1, sizeof(*k)))) {
		snprintf(err, errlen, "%s", strerror(ENOMEM));
		goto fail;
	}
	k->pkey = pkey;
	k->alg = id == EVP_PKEY_RSA ? DKIM_RSA_SHA256 : DKIM_ED25519_SHA256;
	return k;
fail:
	EVP_PKEY_free(pkey);
	return NULL;
}

struct dkim_key *dkim_key_load(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	EVP_PKEY *pkey;

	if (!f) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	pkey = PEM_read_PrivateKey(f, NULL, dkim_no_passphrase, NULL);
	fclose(f);
	ERR_clear_error();
	if (!pkey) {
		snprintf(err, errlen, "%s: not an unencrypted PEM private key (make one with "
		    "smtprelay dkim-keygen)", path);
		return NULL;
	}
	return dkim_key_wrap(pkey, err, errlen);
}

struct dkim_key *dkim_key_ed25519_seed(const unsigned char seed[32])
{
	char err[128];
	EVP_PKEY *pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);

	return pkey ? dkim_key_wrap(pkey, err, sizeof(err)) : NULL;
}

struct dkim_key *dkim_key_generate(enum dkim_alg alg, unsigned bits, char *err, size_t errlen)
{
	EVP_PKEY *pkey;

	if (alg == DKIM_RSA_SHA256 && bits < DKIM_RSA_MIN_BITS) {
		snprintf(err, errlen, "RSA keys need at least %d bits", DKIM_RSA_MIN_BITS);
		return NULL;
	}
	pkey = alg == DKIM_RSA_SHA256 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits)
	    : EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (!pkey) {
		snprintf(err, errlen, "key generation failed: %s",
		    ERR_reason_error_string(ERR_get_error()));
		return NULL;
	}
	return dkim_key_wrap(pkey, err, errlen);
}

enum dkim_alg dkim_key_alg(const struct dkim_key *k)
{
	return k->alg;
}

void dkim_key_free(struct dkim_key *k)
{
	if (k) {
		EVP_PKEY_free(k->pkey);
		free(k);
	}
}

static char *dkim_base64(const unsigned char *data, size_t len)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);

	if (out)
		EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

char *dkim_key_pem(const struct dkim_key *k)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data, *out = NULL;
	long n;

	if (bio && PEM_write_bio_PrivateKey(bio, k->pkey, NULL, NULL, 0, NULL, NULL) == 1
	    && (n = BIO_get_mem_data(bio, &data)) > 0 && (out = malloc((size_t)n + 1))) {
		memcpy(out, data, (size_t)n);
		out[n] = '\0';
	}
	BIO_free(bio);
	return out;
}

char *dkim_key_txt(const struct dkim_key *k)
{
	unsigned char raw[32], *der = NULL;
	size_t rawlen = sizeof(raw);
	char *b64 = NULL, *txt = NULL;
	int n;

	if (k->alg == DKIM_ED25519_SHA256) {
		if (EVP_PKEY_get_raw_public_key(k->pkey, raw, &rawlen) == 1)
			b64 = dkim_base64(raw, rawlen);
	} else if ((n = i2d_PUBKEY(k->pkey, &der)) > 0) {
		b64 = dkim_base64(der, (size_t)n);
	}
	OPENSSL_free(der);
	if (b64 && (txt = malloc(strlen(b64) + 32)))
		sprintf(txt, "v=DKIM1; k=%s; p=%s", k->alg == DKIM_RSA_SHA256 ? "rsa" : "ed25519",
		    b64);
	free(b64);
	return txt;
}

char *dkim_key_sign(const struct dkim_key *k, const char *data, size_t len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char hash[32], *sig = NULL;
	const unsigned char *in = (const unsigned char *)data;
	size_t siglen = 0;
	char *b64 = NULL;

	if (k->alg == DKIM_ED25519_SHA256) {
		/* RFC 8463 §3: PureEdDSA over the SHA-256 of the header data. */
		if (!EVP_Digest(data, len, hash, NULL, EVP_sha256(), NULL))
			goto done;
		in = hash;
		len = sizeof(hash);
	}
	if (!ctx || EVP_DigestSignInit(ctx, NULL, k->alg == DKIM_RSA_SHA256 ? EVP_sha256() : NULL,
	    NULL, k->pkey) != 1 || EVP_DigestSign(ctx, NULL, &siglen, in, len) != 1
	    || !(sig = malloc(siglen)) || EVP_DigestSign(ctx, sig, &siglen, in, len) != 1)
		goto done;
	b64 = dkim_base64(sig, siglen);
done:
	ERR_clear_error();
	free(sig);
	EVP_MD_CTX_free(ctx);
	return b64;
}

/* ---- canonicalization ---- */

static bool dkim_wsp(char c)
{
	return c == ' ' || c == '\t';
}

size_t dkim_canon_header(const char *f, size_t len, char *out, bool with_crlf)
{
	const char *colon = memchr(f, ':', len), *end = f + len;
	size_t n = 0, nlen = colon ? (size_t)(colon - f) : len;
	bool wsp = false, started = false;

	while (nlen > 0 && dkim_wsp(f[nlen - 1]))
		nlen--;
	for (size_t i = 0; i < nlen; i++)
		out[n++] = (char)tolower((unsigned char)f[i]);
	out[n++] = ':';
	for (const char *p = colon ? colon + 1 : end; p < end; p++) {
		if (*p == '\r' || *p == '\n')
			continue;	/* unfold: the WSP after the break stays */
		if (dkim_wsp(*p)) {
			wsp = true;
			continue;
		}
		if (wsp && started)
			out[n++] = ' ';
		wsp = false;
		started = true;
		out[n++] = *p;
	}
	if (with_crlf) {
		out[n++] = '\r';
		out[n++] = '\n';
	}
	out[n] = '\0';
	return n;
}

void dkim_body_init(struct dkim_body *b, void (*out)(void *, const char *, size_t), void *arg)
{
	memset(b, 0, sizeof(*b));
	b->out = out;
	b->arg = arg;
}

static void dkim_body_put(struct dkim_body *b, const char *s, size_t n)
{
	if (b->olen + n > sizeof(b->obuf)) {
		b->out(b->arg, b->obuf, b->olen);
		b->olen = 0;
	}
	if (n > sizeof(b->obuf)) {
		b->out(b->arg, s, n);
		return;
	}
	memcpy(b->obuf + b->olen, s, n);
	b->olen += n;
}

/* A line with content ends in CRLF; an empty one (or WSP only) is held
 * back until content follows, so trailing empty lines vanish. */
static void dkim_body_eol(struct dkim_body *b)
{
	if (b->in_line)
		dkim_body_put(b, "\r\n", 2);
	else
		b->empty++;
	b->in_line = b->wsp = false;
}

static void dkim_body_byte(struct dkim_body *b, char c)
{
	if (b->cr) {
		b->cr = false;
		dkim_body_eol(b);	/* CRLF, or a bare CR sent as CRLF */
		if (c == '\n')
			return;
	}
	if (c == '\r') {
		b->cr = true;
	} else if (c == '\n') {
		dkim_body_eol(b);
	} else if (dkim_wsp(c)) {
		b->wsp = true;
	} else {
		for (; !b->in_line && b->empty > 0; b->empty--)
			dkim_body_put(b, "\r\n", 2);
		if (b->wsp)
			dkim_body_put(b, " ", 1);
		b->in_line = true;
		b->wsp = false;
		dkim_body_put(b, &c, 1);
	}
}

static bool dkim_plain(char c)
{
	return c != ' ' && c != '\t' && c != '\r' && c != '\n';
}

void dkim_body_input(struct dkim_body *b, const char *data, size_t len)
{
	size_t i = 0;

	while (i < len) {
		size_t j = i;

		/* Fast path: inside a line, bytes other than WSP and line ends
		 * pass unchanged (35 MiB would otherwise take a byte at a time). */
		if (b->in_line && !b->wsp && !b->cr)
			while (j < len && dkim_plain(data[j]))
				j++;
		if (j > i) {
			dkim_body_put(b, data + i, j - i);
			i = j;
		} else {
			dkim_body_byte(b, data[i++]);
		}
	}
}

void dkim_body_finish(struct dkim_body *b)
{
	if (b->cr) {
		b->cr = false;
		dkim_body_eol(b);
	}
	if (b->in_line)
		dkim_body_eol(b);	/* a missing final CRLF is added */
	if (b->olen)
		b->out(b->arg, b->obuf, b->olen);
	b->olen = 0;
}

/* ---- header fields ---- */

struct dkim_field {
	const char *p;
	size_t len;		/* with its CRLF */
	size_t namelen;
};

/* Split a header section into fields; *n of them, malloc'd array. */
static struct dkim_field *dkim_fields(const char *hdr, size_t hlen, size_t *n)
{
	struct dkim_field *f = NULL, *v;
	size_t nf = 0, cap = 0, i = 0;

	while (i < hlen) {
		const char *nl = memchr(hdr + i, '\n', hlen - i);
		size_t end = nl ? (size_t)(nl - hdr) + 1 : hlen;

		if (nf > 0 && dkim_wsp(hdr[i])) {
			f[nf - 1].len += end - i;	/* continuation line */
		} else {
			if (nf == cap) {
				cap = cap ? cap * 2 : 32;
				if (!(v = realloc(f, cap * sizeof(*f)))) {
					free(f);
					return NULL;
				}
				f = v;
			}
			f[nf++] = (struct dkim_field){ hdr + i, end - i, 0 };
		}
		i = end;
	}
	for (size_t j = 0; j < nf; j++) {
		const char *colon = memchr(f[j].p, ':', f[j].len);
		size_t nl = colon ? (size_t)(colon - f[j].p) : 0;

		while (nl > 0 && dkim_wsp(f[j].p[nl - 1]))
			nl--;
		f[j].namelen = nl;
	}
	*n = nf;
	return f ? f : calloc(1, sizeof(*f));
}

static bool dkim_field_is(const struct dkim_field *f, const char *name)
{
	return f->namelen == strlen(name) && strncasecmp(f->p, name, f->namelen) == 0;
}

static int dkim_canon_append(struct buf *b, const struct dkim_field *f)
{
	char *c = malloc(f->len + 3);
	int r;

	if (!c)
		return -1;
	r = buf_append(b, c, dkim_canon_header(f->p, f->len, c, true));
	free(c);
	return r;
}

static int dkim_select(struct buf *b, const struct dkim_field *f, size_t nf,
    const char *const *names, size_t n)
{
	bool *used = calloc(nf ? nf : 1, sizeof(*used));

	if (!used)
		return -1;
	for (size_t i = 0; i < n; i++) {
		for (size_t j = nf; j-- > 0;) {
			if (used[j] || !dkim_field_is(&f[j], names[i]))
				continue;
			used[j] = true;
			if (dkim_canon_append(b, &f[j]) < 0) {
				free(used);
				return -1;
			}
			break;
		}
	}
	free(used);
	return 0;
}

char *dkim_select_headers(const char *hdr, size_t hlen, const char *const *names, size_t n,
    size_t *outlen)
{
	struct buf b;
	size_t nf;
	struct dkim_field *f = dkim_fields(hdr, hlen, &nf);

	buf_init(&b, (size_t)-1);
	if (!f || dkim_select(&b, f, nf, names, n) < 0) {
		free(f);
		buf_free(&b);
		return NULL;
	}
	free(f);
	*outlen = b.len;
	return buf_steal(&b);
}

char *dkim_from_domain(const char *value, size_t len)
{
	struct strv addrs = { 0 };
	char *d = NULL;
	int skipped = rfc5322_parse_addrlist(value, len, &addrs);
	const char *dom = skipped == 0 && addrs.n == 1 ? addr_domain(addrs.v[0]) : NULL;

	if (dom && *dom && (d = strdup(dom)))
		for (char *p = d; *p; p++)
			*p = (char)tolower((unsigned char)*p);
	strv_free(&addrs);
	return d;
}

/* ---- signing a message ---- */

struct dkim_sign {
	const struct dkim_signer *signers;
	size_t nsigners;
	time_t now;
	struct buf hdr;			/* the header section, without the empty line */
	bool in_header, bol, blank_cr, failed;
	int unwanted;			/* -1 not known yet, else dkim_sign_unwanted() */
	int errnum;			/* why failed */
	struct dkim_body body;
	EVP_MD_CTX *bh;			/* SHA-256 of the canonical body */
};

static void dkim_sign_body_out(void *arg, const char *data, size_t len)
{
	struct dkim_sign *s = arg;

	if (EVP_DigestUpdate(s->bh, data, len) != 1) {
		s->errnum = EIO;
		s->failed = true;
	}
}

struct dkim_sign *dkim_sign_new(const struct dkim_signer *signers, size_t n, time_t now)
{
	struct dkim_sign *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->signers = signers;
	s->nsigners = n;
	s->now = now;
	s->in_header = s->bol = true;
	s->unwanted = -1;
	buf_init(&s->hdr, DKIM_HEADER_MAX);
	dkim_body_init(&s->body, dkim_sign_body_out, s);
	if (!(s->bh = EVP_MD_CTX_new()) || EVP_DigestInit_ex(s->bh, EVP_sha256(), NULL) != 1) {
		dkim_sign_free(s);
		return NULL;
	}
	return s;
}

void dkim_sign_free(struct dkim_sign *s)
{
	if (!s)
		return;
	buf_free(&s->hdr);
	EVP_MD_CTX_free(s->bh);
	free(s);
}

/* Header bytes up to and including the empty line; returns how many were
 * taken.  A bare CR or LF line is empty too (it goes out as CRLF). */
static size_t dkim_sign_header(struct dkim_sign *s, const char *data, size_t len)
{
	size_t i = 0;

	while (i < len && s->in_header) {
		const char *nl;
		size_t n;

		if (s->bol && (s->blank_cr || data[i] == '\n')) {
			s->in_header = false;
			return data[i] == '\n' ? i + 1 : i;
		}
		if (s->bol && data[i] == '\r') {
			s->blank_cr = true;
			i++;
			continue;
		}
		nl = memchr(data + i, '\n', len - i);
		n = nl ? (size_t)(nl - (data + i)) + 1 : len - i;
		if (buf_append(&s->hdr, data + i, n) < 0) {
			s->errnum = errno;
			s->failed = true;
			return len;
		}
		s->bol = nl != NULL;
		i += n;
	}
	return i;
}

int dkim_sign_input(struct dkim_sign *s, const char *data, size_t len)
{
	size_t used = 0;

	if (s->failed)
		return -1;
	if (s->in_header)
		used = dkim_sign_header(s, data, len);
	if (!s->in_header && !s->failed)
		dkim_body_input(&s->body, data + used, len - used);
	return s->failed ? -1 : 0;
}

/* h= for one signer: each configured name once per field present (so a
 * repeated header is signed in full), From once more (oversigned: a From
 * added in transit breaks the signature). */
static int dkim_h_list(const struct dkim_signer *sg, const struct dkim_field *f, size_t nf,
    const char ***out, size_t *nout)
{
	const char **h = NULL, **v;
	size_t n = 0;

	for (size_t i = 0; i <= sg->nheaders; i++) {
		const char *name = i == 0 ? "from" : sg->headers[i - 1];
		size_t k = i == 0 ? 1 : 0;

		if (i > 0 && strcasecmp(name, "from") == 0)
			continue;
		for (size_t j = 0; j < nf; j++)
			k += dkim_field_is(&f[j], name);
		if (k == 0)
			continue;
		if (!(v = realloc(h, (n + k) * sizeof(*h)))) {
			free(h);
			return -1;
		}
		h = v;
		while (k-- > 0)
			h[n++] = name;
	}
	*out = h;
	*nout = n;
	return 0;
}

/* "DKIM-Signature: ...; b=" folded, without the signature itself. */
static int dkim_sig_template(struct buf *b, const struct dkim_signer *sg, time_t now,
    const char *const *h, size_t nh, const char *bh)
{
	size_t col;

	buf_printf(b, "DKIM-Signature: v=1; a=%s; c=relaxed/relaxed;\r\n\td=%s; s=%s; t=%lld;\r\n\th=",
	    dkim_key_alg(sg->key) == DKIM_RSA_SHA256 ? "rsa-sha256" : "ed25519-sha256",
	    sg->domain, sg->selector, (long long)now);
	col = 10;
	for (size_t i = 0; i < nh; i++) {
		size_t w = strlen(h[i]) + 1;

		if (i > 0 && col + w > DKIM_FOLD) {
			buf_puts(b, "\r\n\t");
			col = 8;
		}
		buf_printf(b, "%s%s", h[i], i + 1 < nh ? ":" : ";");
		col += w;
	}
	return buf_printf(b, "\r\n\tbh=%s;\r\n\tb=", bh);
}

/* b= value in lines that stay under DKIM_FOLD columns. */
static int dkim_fold_b(struct buf *b, const char *sig)
{
	size_t len = strlen(sig), first = DKIM_FOLD - 11, off = 0;

	while (off < len) {
		size_t n = len - off < first ? len - off : first;

		if (off > 0)
			buf_puts(b, "\r\n\t");
		buf_append(b, sig + off, n);
		off += n;
		first = DKIM_FOLD - 9;
	}
	return buf_puts(b, "\r\n");
}

static int dkim_sign_one(struct dkim_sign *s, const struct dkim_signer *sg,
    const struct dkim_field *f, size_t nf, const char *bh, struct buf *out)
{
	const char **h = NULL;
	size_t nh, start = out->len;
	char *sig = NULL, *canon = NULL;
	struct buf data;
	int r = -1;

	buf_init(&data, (size_t)-1);
	if (dkim_h_list(sg, f, nf, &h, &nh) < 0 || dkim_select(&data, f, nf, h, nh) < 0
	    || dkim_sig_template(out, sg, s->now, h, nh, bh) < 0
	    || !(canon = malloc(out->len - start + 3)))
		goto done;
	buf_append(&data, canon, dkim_canon_header(out->data + start, out->len - start, canon,
	    false));
	if ((sig = dkim_key_sign(sg->key, data.data, data.len)))
		r = dkim_fold_b(out, sig);
done:
	free(h);
	free(sig);
	free(canon);
	buf_free(&data);
	return r;
}

/* The From: domain, when there is exactly one From field with one address. */
static char *dkim_msg_domain(const struct dkim_field *f, size_t nf)
{
	const struct dkim_field *from = NULL;

	for (size_t j = 0; j < nf; j++) {
		if (!dkim_field_is(&f[j], "from"))
			continue;
		if (from)
			return NULL;
		from = &f[j];
	}
	if (!from)
		return NULL;
	return dkim_from_domain(from->p + from->namelen + 1, from->len - from->namelen - 1);
}

static char *dkim_body_hash(struct dkim_sign *s)
{
	unsigned char md[32];
	unsigned int mdlen = 0;

	dkim_body_finish(&s->body);
	if (s->failed || EVP_DigestFinal_ex(s->bh, md, &mdlen) != 1)
		return NULL;
	return dkim_base64(md, mdlen);
}

static int dkim_sign_all(struct dkim_sign *s, struct buf *out, char *err, size_t errlen)
{
	size_t nf;
	struct dkim_field *f = dkim_fields(s->hdr.data ? s->hdr.data : "", s->hdr.len, &nf);
	char *domain = f ? dkim_msg_domain(f, nf) : NULL, *bh = NULL;
	int r = 0;

	for (size_t i = 0; domain && i < s->nsigners && r == 0; i++) {
		const struct dkim_signer *sg = &s->signers[i];

		if (strcasecmp(sg->domain, domain) != 0)
			continue;
		if (!bh && !(bh = dkim_body_hash(s))) {
			snprintf(err, errlen, "DKIM body hash failed");
			r = -1;
		} else if (dkim_sign_one(s, sg, f, nf, bh, out) < 0) {
			snprintf(err, errlen, "DKIM signing for %s (selector %s) failed: %s",
			    sg->domain, sg->selector, errno == ENOMEM ? strerror(ENOMEM)
			    : "the key refused to sign");
			r = -1;
		}
	}
	if (!f) {
		snprintf(err, errlen, "%s", strerror(ENOMEM));
		r = -1;
	}
	free(f);
	free(domain);
	free(bh);
	return r;
}

bool dkim_sign_unwanted(struct dkim_sign *s)
{
	size_t nf;
	struct dkim_field *f;
	char *domain;

	if (s->in_header || s->failed)
		return false;
	if (s->unwanted >= 0)
		return s->unwanted;
	f = dkim_fields(s->hdr.data ? s->hdr.data : "", s->hdr.len, &nf);
	domain = f ? dkim_msg_domain(f, nf) : NULL;
	s->unwanted = f != NULL;
	for (size_t i = 0; domain && i < s->nsigners; i++)
		if (strcasecmp(s->signers[i].domain, domain) == 0)
			s->unwanted = 0;
	free(f);
	free(domain);
	return s->unwanted;
}

int dkim_sign_finish(struct dkim_sign *s, char **out, size_t *outlen, char *err, size_t errlen)
{
	struct buf b;

	*out = NULL;
	*outlen = 0;
	if (s->failed) {
		snprintf(err, errlen, "%s", s->errnum == ENOBUFS ? "header section over 2 MiB: "
		    "cannot sign" : strerror(s->errnum));
		return -1;
	}
	if (s->in_header && s->blank_cr)
		s->in_header = false;
	buf_init(&b, (size_t)-1);
	if (dkim_sign_all(s, &b, err, errlen) < 0) {
		buf_free(&b);
		return -1;
	}
	*outlen = b.len;
	if (!(*out = buf_steal(&b))) {
		snprintf(err, errlen, "%s", strerror(ENOMEM));
		return -1;
	}
	return 0;
}
