#include "config.h"
#include "relay/tls.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define TLS_NAMES_MAX 200

/* A failed verification leaves no peer certificate in the session: the
 * verify callback keeps the leaf and the certificate that failed, for
 * messages that name the issuer, the host names and the dates. */
static int tls_idx_leaf = -1;
static int tls_idx_failed = -1;

static void tls_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	X509_free(ptr);
}

static int tls_verify_cb(int ok, X509_STORE_CTX *x)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
	X509 *leaf = X509_STORE_CTX_get0_cert(x);
	X509 *cur = X509_STORE_CTX_get_current_cert(x);

	if (ok || !ssl || SSL_get_ex_data(ssl, tls_idx_failed))
		return ok;
	if (leaf && X509_up_ref(leaf) == 1 && SSL_set_ex_data(ssl, tls_idx_leaf, leaf) != 1)
		X509_free(leaf);
	if (cur && X509_up_ref(cur) == 1 && SSL_set_ex_data(ssl, tls_idx_failed, cur) != 1)
		X509_free(cur);
	return ok;
}

static int tls_init_ex(void)
{
	if (tls_idx_leaf < 0)
		tls_idx_leaf = SSL_get_ex_new_index(0, NULL, NULL, NULL, tls_ex_free);
	if (tls_idx_failed < 0)
		tls_idx_failed = SSL_get_ex_new_index(0, NULL, NULL, NULL, tls_ex_free);
	return tls_idx_leaf < 0 || tls_idx_failed < 0 ? -1 : 0;
}

/* "OpenSSL's reason" for the newest error in the queue; empties the queue. */
static void tls_last_error(char *dst, size_t len)
{
	unsigned long e, last = 0;

	while ((e = ERR_get_error()) != 0)
		last = e;
	if (last && ERR_reason_error_string(last))
		snprintf(dst, len, "%s", ERR_reason_error_string(last));
	else if (last)
		snprintf(dst, len, "OpenSSL error %lx", last);
	else
		snprintf(dst, len, "%s", strerror(errno ? errno : EIO));
}

static int tls_load_ca(SSL_CTX *ctx, const char *file, char *err, size_t errlen)
{
	char why[160];
	FILE *f = fopen(file, "r");

	/* Name the usual cause (missing, unreadable) in plain words first. */
	if (!f) {
		snprintf(err, errlen, "tls_ca_file %s: %s", file, strerror(errno));
		return -1;
	}
	fclose(f);
	ERR_clear_error();
	if (SSL_CTX_load_verify_locations(ctx, file, NULL) != 1) {
		tls_last_error(why, sizeof(why));
		snprintf(err, errlen, "tls_ca_file %s: cannot load certificates: %s", file, why);
		return -1;
	}
	return 0;
}

/* Does dir hold OpenSSL's hash links (HHHHHHHH.N)?  A few entries tell. */
static bool tls_dir_hashed(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int seen = 0;
	bool found = false;

	if (!d)
		return false;
	while (!found && seen++ < 64 && (e = readdir(d))) {
		size_t n = strspn(e->d_name, "0123456789abcdef");
		found = n == 8 && e->d_name[8] == '.' && isdigit((unsigned char)e->d_name[9]);
	}
	closedir(d);
	return found;
}

/* The system CA store.  The hashed directory is read on demand, a few
 * certificates per handshake, while the bundle file is parsed at once
 * (about 2.7 MB resident per context): prefer the directory where it is
 * usable and nobody pointed SSL_CERT_FILE elsewhere. */
static void tls_system_store(SSL_CTX *ctx)
{
	const char *dir = getenv(X509_get_default_cert_dir_env());
	const char *file = getenv(X509_get_default_cert_file_env());

	if (!dir || !*dir)
		dir = X509_get_default_cert_dir();
	if ((!file || !*file) && tls_dir_hashed(dir) && SSL_CTX_set_default_verify_dir(ctx) == 1)
		return;
	/* A host without a system CA store still works with tls_ca_file. */
	if (SSL_CTX_set_default_verify_paths(ctx) != 1)
		ERR_clear_error();
}

SSL_CTX *tls_client_ctx(const struct conf_smarthost *sh, char *err, size_t errlen)
{
	SSL_CTX *ctx;
	char why[160];
	int min = sh->tls_min_version ? sh->tls_min_version : TLS1_2_VERSION;

	ERR_clear_error();
	ctx = tls_init_ex() < 0 ? NULL : SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		tls_last_error(why, sizeof(why));
		snprintf(err, errlen, "cannot create a TLS context: %s", why);
		return NULL;
	}
	tls_system_store(ctx);
	if (sh->tls_ca_file && sh->tls_ca_file[0] && tls_load_ca(ctx, sh->tls_ca_file, err, errlen) < 0)
		goto fail;
	if (SSL_CTX_set_min_proto_version(ctx, min) != 1) {
		snprintf(err, errlen, "cannot set the minimum TLS version 0x%04x", (unsigned)min);
		goto fail;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_verify(ctx, sh->tls_verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, tls_verify_cb);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return NULL;
}

static bool tls_is_ip(const char *host)
{
	unsigned char a[16];

	return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

SSL *tls_new_ssl(SSL_CTX *ctx, const struct conf_smarthost *sh)
{
	SSL *ssl = SSL_new(ctx);
	int ok;

	if (!ssl)
		return NULL;
	/* RFC 6066: no SNI for address literals; verify the address instead. */
	if (tls_is_ip(sh->host)) {
		ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), sh->host) == 1;
	} else {
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		ok = SSL_set_tlsext_host_name(ssl, sh->host) == 1 && SSL_set1_host(ssl, sh->host) == 1;
	}
	if (!ok) {
		SSL_free(ssl);
		ERR_clear_error();
		return NULL;
	}
	return ssl;
}

/* ---- certificate details for messages ---- */

static void tls_name(const X509_NAME *n, char *dst, size_t len)
{
	BIO *b = BIO_new(BIO_s_mem());
	int r;

	dst[0] = '\0';
	if (!b)
		return;
	if (X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
		r = BIO_read(b, dst, (int)len - 1);
		dst[r > 0 ? r : 0] = '\0';
	}
	BIO_free(b);
	/* Certificate text goes into log lines: no control characters. */
	for (char *p = dst; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
}

static time_t tls_time(const ASN1_TIME *t)
{
	struct tm tm;

	if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return timegm(&tm);
}

static void tls_fmt_time(time_t t, char *dst, size_t len)
{
	struct tm tm;

	if (!t || !gmtime_r(&t, &tm) || strftime(dst, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(dst, len, "an unknown date");
}

static void tls_add_name(char *dst, size_t len, const char *name, size_t nlen)
{
	size_t used = strlen(dst);

	if (used + nlen + 3 >= len)
		return;
	if (used) {
		memcpy(dst + used, ", ", 2);
		used += 2;
	}
	for (size_t i = 0; i < nlen; i++)
		dst[used++] = (unsigned char)name[i] < 0x20 ? '?' : name[i];
	dst[used] = '\0';
}

static void tls_add_ip(char *dst, size_t len, const ASN1_OCTET_STRING *ip)
{
	char s[INET6_ADDRSTRLEN];
	int n = ASN1_STRING_length(ip);
	const unsigned char *d = ASN1_STRING_get0_data(ip);

	if ((n == 4 && inet_ntop(AF_INET, d, s, sizeof(s)))
	    || (n == 16 && inet_ntop(AF_INET6, d, s, sizeof(s))))
		tls_add_name(dst, len, s, strlen(s));
}

/* The names a certificate is for: its subjectAltName DNS and IP entries, or
 * its common name when it has none. */
static void tls_cert_names(X509 *cert, char *dst, size_t len)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);

	dst[0] = '\0';
	for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);

		if (g->type == GEN_DNS)
			tls_add_name(dst, len, (const char *)ASN1_STRING_get0_data(g->d.dNSName),
			    (size_t)ASN1_STRING_length(g->d.dNSName));
		else if (g->type == GEN_IPADD)
			tls_add_ip(dst, len, g->d.iPAddress);
	}
	GENERAL_NAMES_free(gens);
	if (!dst[0]) {
		char cn[256];
		int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName,
		    cn, sizeof(cn));

		if (n > 0)
			tls_add_name(dst, len, cn, (size_t)n);
	}
	if (!dst[0])
		snprintf(dst, len, "no host name");
}

/* ---- after the handshake ---- */

/* sha256 of the leaf's DER SubjectPublicKeyInfo (as `openssl pkey -pubin
 * -outform der | sha256sum`).  X509_pubkey_digest would hash only the key
 * bits, not the SPKI. */
static int tls_spki_sha256(X509 *cert, unsigned char md[32])
{
	unsigned char *der = NULL;
	unsigned int mdlen = 0;
	int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
	int ok;

	if (n <= 0)
		return -1;
	ok = EVP_Digest(der, (size_t)n, md, &mdlen, EVP_sha256(), NULL) == 1 && mdlen == 32;
	OPENSSL_free(der);
	return ok ? 0 : -1;
}

static void tls_hex(const unsigned char *d, size_t n, char *dst)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		dst[2 * i] = hex[d[i] >> 4];
		dst[2 * i + 1] = hex[d[i] & 15];
	}
	dst[2 * n] = '\0';
}

static enum conn_verdict tls_check_pin(X509 *cert, const struct conf_smarthost *sh,
    struct conn_tls_info *info, char *reason, size_t len)
{
	unsigned char md[32];
	char want[65], got[65];

	info->pin_checked = true;
	if (tls_spki_sha256(cert, md) < 0) {
		snprintf(reason, len, "cannot compute the public key fingerprint of %s's certificate",
		    sh->host);
		return CONN_TLS_FAILED;
	}
	info->pin_ok = memcmp(md, sh->fingerprint, sizeof(md)) == 0;
	if (info->pin_ok)
		return CONN_OK;
	tls_hex(sh->fingerprint, 32, want);
	tls_hex(md, 32, got);
	snprintf(reason, len, "the public key of %s's certificate does not match tls_fingerprint: "
	    "expected sha256:%s, got sha256:%s", sh->host, want, got);
	return CONN_TLS_FAILED;
}

static void tls_fill_info(SSL *ssl, X509 *cert, struct conn_tls_info *info)
{
	long vr = SSL_get_verify_result(ssl);

	info->active = true;
	snprintf(info->version, sizeof(info->version), "%s", SSL_get_version(ssl));
	snprintf(info->cipher, sizeof(info->cipher), "%s", SSL_get_cipher_name(ssl));
	info->verified = cert && vr == X509_V_OK;
	info->verify_error[0] = '\0';
	if (cert && vr != X509_V_OK)
		snprintf(info->verify_error, sizeof(info->verify_error), "%s",
		    X509_verify_cert_error_string(vr));
	info->subject[0] = info->issuer[0] = '\0';
	info->not_after = 0;
	if (!cert)
		return;
	tls_name(X509_get_subject_name(cert), info->subject, sizeof(info->subject));
	tls_name(X509_get_issuer_name(cert), info->issuer, sizeof(info->issuer));
	info->not_after = tls_time(X509_get0_notAfter(cert));
}

enum conn_verdict tls_check_peer(SSL *ssl, const struct conf_smarthost *sh,
    struct conn_tls_info *info, char *reason, size_t len)
{
	X509 *cert = SSL_get0_peer_certificate(ssl);

	tls_fill_info(ssl, cert, info);
	if (!cert) {
		snprintf(reason, len, "%s sent no certificate", sh->host);
		return CONN_TLS_FAILED;
	}
	/* Normally the handshake already failed; never go on unverified. */
	if (sh->tls_verify && !info->verified) {
		snprintf(reason, len, "certificate of %s is not valid: %s", sh->host, info->verify_error);
		return CONN_CERT_UNTRUSTED;
	}
	if (sh->has_fingerprint)
		return tls_check_pin(cert, sh, info, reason, len);
	return CONN_OK;
}

/* ---- classifying a failed handshake ---- */

static enum conn_verdict tls_verify_failure(SSL *ssl, long vr, const char *host, unsigned port,
    char *reason, size_t len)
{
	X509 *cert = SSL_get_ex_data(ssl, tls_idx_leaf);
	X509 *failed = SSL_get_ex_data(ssl, tls_idx_failed);
	char what[TLS_NAMES_MAX], when[40];

	switch (vr) {
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		if (cert)
			tls_cert_names(cert, what, sizeof(what));
		else
			snprintf(what, sizeof(what), "another name");
		snprintf(reason, len, "certificate of %s:%u is for %s, not %s", host, port, what, host);
		return CONN_CERT_HOSTNAME;
	case X509_V_ERR_CERT_HAS_EXPIRED:
		tls_fmt_time(cert ? tls_time(X509_get0_notAfter(cert)) : 0, when, sizeof(when));
		snprintf(reason, len, "certificate of %s:%u expired on %s", host, port, when);
		return CONN_CERT_EXPIRED;
	case X509_V_ERR_CERT_NOT_YET_VALID:
		tls_fmt_time(cert ? tls_time(X509_get0_notBefore(cert)) : 0, when, sizeof(when));
		snprintf(reason, len, "certificate of %s:%u is not valid before %s (check the clock)",
		    host, port, when);
		return CONN_CERT_EXPIRED;
	default:
		break;
	}
	if (failed)
		tls_name(X509_get_issuer_name(failed), what, sizeof(what));
	else
		snprintf(what, sizeof(what), "unknown");
	snprintf(reason, len, "certificate of %s:%u is not trusted: %s (issuer: %s; "
	    "set tls_ca_file if a private CA signed it)", host, port,
	    X509_verify_cert_error_string(vr), what);
	return CONN_CERT_UNTRUSTED;
}

static bool tls_is_version_error(int r)
{
	return r == SSL_R_UNSUPPORTED_PROTOCOL || r == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION
	    || r == SSL_R_NO_PROTOCOLS_AVAILABLE || r == SSL_R_WRONG_SSL_VERSION
	    || r == SSL_R_UNSUPPORTED_SSL_VERSION || r == SSL_R_VERSION_TOO_LOW;
}

/* What a plaintext "220 ..." looks like to a TLS record layer. */
static bool tls_is_plaintext_error(int r)
{
	return r == SSL_R_WRONG_VERSION_NUMBER || r == SSL_R_PACKET_LENGTH_TOO_LONG
	    || r == SSL_R_RECORD_LENGTH_MISMATCH || r == SSL_R_UNKNOWN_PROTOCOL
	    || r == SSL_R_BAD_RECORD_TYPE;
}

static const char *tls_version_name(int v)
{
	switch (v) {
	case TLS1_3_VERSION: return "TLSv1.3";
	case TLS1_2_VERSION: return "TLSv1.2";
	case TLS1_1_VERSION: return "TLSv1.1";
	case TLS1_VERSION: return "TLSv1";
	default: return "the configured minimum";
	}
}

/* The server hung up without an alert.  Right after our hello that is how
 * OpenSSL and Python servers refuse a version they do not speak. */
static enum conn_verdict tls_closed_failure(SSL *ssl, const char *host, unsigned port,
    char *reason, size_t len)
{
	if (ssl && SSL_get_state(ssl) == TLS_ST_CW_CLNT_HELLO) {
		snprintf(reason, len, "%s:%u closed the connection in reply to our TLS hello: it "
		    "probably does not support %s or later (tls_min_version)", host, port,
		    tls_version_name((int)SSL_get_min_proto_version(ssl)));
		return CONN_TLS_VERSION;
	}
	snprintf(reason, len, "TLS handshake with %s:%u failed: the server closed the connection",
	    host, port);
	return CONN_TLS_FAILED;
}

enum conn_verdict tls_classify_failure(SSL *ssl, unsigned long err, const char *host,
    unsigned port, bool implicit, char *reason, size_t len)
{
	long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
	int r = err && ERR_GET_LIB(err) == ERR_LIB_SSL ? ERR_GET_REASON(err) : 0;
	const char *why;

	if (ssl && vr != X509_V_OK && (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER)
	    && (r == 0 || r == SSL_R_CERTIFICATE_VERIFY_FAILED))
		return tls_verify_failure(ssl, vr, host, port, reason, len);
	if (tls_is_version_error(r)) {
		snprintf(reason, len, "%s:%u does not support %s or later (%s)", host, port,
		    tls_version_name(ssl ? (int)SSL_get_min_proto_version(ssl) : 0),
		    ERR_reason_error_string(err));
		return CONN_TLS_VERSION;
	}
	if (implicit && tls_is_plaintext_error(r)) {
		snprintf(reason, len, "%s:%u answered in plaintext: this port expects STARTTLS, "
		    "not implicit TLS (use %u/starttls)", host, port, port);
		return CONN_TLS_MODE_MISMATCH;
	}
	if (!err)
		return tls_closed_failure(ssl, host, port, reason, len);
	why = ERR_reason_error_string(err);
	snprintf(reason, len, "TLS handshake with %s:%u failed: %s", host, port,
	    why ? why : "unknown OpenSSL error");
	return CONN_TLS_FAILED;
}
