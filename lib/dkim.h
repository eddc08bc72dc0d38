/* DKIM signing (RFC 6376) with relaxed/relaxed canonicalization, for
 * rsa-sha256 and ed25519-sha256 (RFC 8463).  Transport-free: bytes in, a
 * header block out; keys come from PEM files through OpenSSL 3.
 *
 * Streaming: the message (CRLF lines, not dot-stuffed: exactly what the
 * relay hands its SMTP client) is fed in chunks of any size.  Only the
 * header section is buffered (at most DKIM_HEADER_MAX bytes); the body goes
 * straight through canonicalization into SHA-256, so a message of
 * max_message_size costs no more memory than a small one.  Bare CR or LF
 * count as line ends, as the SMTP client sends them as CRLF.
 *
 * Not here: verification, simple canonicalization, l= (never emitted),
 * i=, x=, DNS.  A signer signs mail whose From: domain equals its domain
 * (ASCII case-insensitive); with several signers for that domain (RSA plus
 * Ed25519) each adds its own DKIM-Signature.
 */
#ifndef SMTPRELAY_DKIM_H
#define SMTPRELAY_DKIM_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define DKIM_HEADER_MAX (2 * 1024 * 1024)
#define DKIM_RSA_MIN_BITS 1024

enum dkim_alg { DKIM_RSA_SHA256, DKIM_ED25519_SHA256 };

struct dkim_key;

/* A PEM private key (PKCS#8 or traditional RSA).  NULL with a sentence in
 * err (cannot read, not a PEM private key, RSA under 1024 bits, other key
 * type). */
struct dkim_key *dkim_key_load(const char *path, char *err, size_t errlen);
/* An Ed25519 key from its 32-byte seed (RFC 8032 private key). */
struct dkim_key *dkim_key_ed25519_seed(const unsigned char seed[32]);
/* A new key: RSA of bits (>= 1024) or Ed25519 (bits ignored). */
struct dkim_key *dkim_key_generate(enum dkim_alg alg, unsigned bits, char *err, size_t errlen);
/* PKCS#8 PEM text (malloc'd, NUL-terminated); NULL on failure. */
char *dkim_key_pem(const struct dkim_key *k);
/* "v=DKIM1; k=rsa; p=BASE64" (SubjectPublicKeyInfo) or "v=DKIM1;
 * k=ed25519; p=BASE64" (the raw 32-byte key, RFC 8463 §4.2); malloc'd. */
char *dkim_key_txt(const struct dkim_key *k);
enum dkim_alg dkim_key_alg(const struct dkim_key *k);
/* The signature over data, base64 (malloc'd): RSASSA-PKCS1-v1_5 with
 * SHA-256, or Ed25519 over the SHA-256 hash of data (RFC 8463 §3). */
char *dkim_key_sign(const struct dkim_key *k, const char *data, size_t len);
void dkim_key_free(struct dkim_key *k);

/* Relaxed header canonicalization (RFC 6376 §3.4.2) of one field as it
 * stands in the message (name, colon, value, folds; a final CRLF optional).
 * out needs len + 3 bytes; it gets "name:value\r\n" (with_crlf) or without
 * the CRLF, NUL-terminated.  Returns the length written. */
size_t dkim_canon_header(const char *field, size_t len, char *out, bool with_crlf);

/* Relaxed body canonicalization (RFC 6376 §3.4.4), streaming. */
struct dkim_body {
	bool in_line;			/* the current line has non-WSP content */
	bool wsp;			/* WSP seen since the last content byte */
	bool cr;			/* the previous byte was CR */
	size_t empty;			/* empty lines held back (maybe trailing) */
	size_t olen;
	char obuf[4096];		/* out() gets runs, not bytes */
	void (*out)(void *arg, const char *data, size_t len);
	void *arg;
};
void dkim_body_init(struct dkim_body *b, void (*out)(void *, const char *, size_t), void *arg);
void dkim_body_input(struct dkim_body *b, const char *data, size_t len);
void dkim_body_finish(struct dkim_body *b);

/* The canonical header data of the fields named in names (in that order,
 * each taking the lowest unused field of that name: RFC 6376 §5.4.2; a name
 * with none left adds nothing, which is how oversigning works), from a
 * header section (CRLF lines, without the empty line).  malloc'd. */
char *dkim_select_headers(const char *hdr, size_t hlen, const char *const *names, size_t n,
    size_t *outlen);

struct dkim_signer {
	const char *domain;
	const char *selector;
	const struct dkim_key *key;
	const char *const *headers;	/* lower case; "from" is always signed and oversigned */
	size_t nheaders;
};

struct dkim_sign;

/* signers (and what they point to) must outlive the dkim_sign; now is t=. */
struct dkim_sign *dkim_sign_new(const struct dkim_signer *signers, size_t n, time_t now);
/* 0, or -1 when the header section exceeds DKIM_HEADER_MAX (sticky). */
int dkim_sign_input(struct dkim_sign *s, const char *data, size_t len);
/* true once the header section is complete and no signer has the From:
 * domain: the rest of the message need not be fed (finish gives ""). */
bool dkim_sign_unwanted(struct dkim_sign *s);
/* End of message.  *out: the DKIM-Signature fields (CRLF-terminated, folded
 * under 78 columns) of every signer whose domain is the From: domain, ""
 * when none is (or there is no single From: address); malloc'd.  -1 with a
 * sentence in err (header section too big, signing failed, ENOMEM). */
int dkim_sign_finish(struct dkim_sign *s, char **out, size_t *outlen, char *err, size_t errlen);
void dkim_sign_free(struct dkim_sign *s);

/* Domain of the single address in a From: field value, lower-cased, or
 * NULL (none, several, no domain, ENOMEM); malloc'd. */
char *dkim_from_domain(const char *value, size_t len);

#endif
