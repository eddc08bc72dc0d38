/* lib/dkim: canonicalization against RFC 6376 §3.4.6, the RFC 8463
 * Appendix A signature reproduced from its fixed key, streaming invariance,
 * signer selection, keys.  dkimpy verifies whole messages in test_dkim.py. */
#include "config.h"
#include "lib/buf.h"
#include "lib/dkim.h"
#include "tests/ckrun.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

static void append_out(void *arg, const char *data, size_t len)
{
	ck_assert_int_eq(buf_append(arg, data, len), 0);
}

/* The relaxed body of in, fed in chunks of step bytes. */
static char *canon_body(const char *in, size_t step)
{
	struct buf b;
	struct dkim_body body;
	size_t len = strlen(in);

	buf_init(&b, 1 << 20);
	dkim_body_init(&body, append_out, &b);
	for (size_t i = 0; i < len; i += step)
		dkim_body_input(&body, in + i, len - i < step ? len - i : step);
	dkim_body_finish(&body);
	return buf_steal(&b);
}

static char *canon_header(const char *field, bool crlf)
{
	char *out = malloc(strlen(field) + 3);

	ck_assert_ptr_nonnull(out);
	dkim_canon_header(field, strlen(field), out, crlf);
	return out;
}

/* RFC 6376 §3.4.6, relaxed/relaxed. */
START_TEST(test_rfc6376_example)
{
	char *a = canon_header("A: X\r\n", true);
	char *b = canon_header("B : Y\t\r\n\tZ  \r\n", true);
	char *body = canon_body(" C \r\nD \t E\r\n\r\n\r\n", 1);

	ck_assert_str_eq(a, "a:X\r\n");
	ck_assert_str_eq(b, "b:Y Z\r\n");
	ck_assert_str_eq(body, " C\r\nD E\r\n");
	free(a);
	free(b);
	free(body);
}
END_TEST

static const struct {
	const char *in, *want;
} body_cases[] = {
	{ "", "" },
	{ "\r\n", "" },
	{ "\r\n\r\n\r\n", "" },
	{ "  \t \r\n\t\r\n", "" },
	{ "no final newline", "no final newline\r\n" },
	{ "a  \t b \t\r\n", "a b\r\n" },
	{ "\tlead\r\n", " lead\r\n" },
	{ "a\r\n\r\n\r\nb\r\n\r\n", "a\r\n\r\n\r\nb\r\n" },
	{ "..dot\r\n.\r\n", "..dot\r\n.\r\n" },
	{ "bare\nlf\rcr\r\n", "bare\r\nlf\r\ncr\r\n" },
	{ "x\r", "x\r\n" },
	{ "gr\xc3\xbc\xc3\x9f  dich \r\n", "gr\xc3\xbc\xc3\x9f dich\r\n" },
	{ "a\r\n \r\nb", "a\r\n\r\nb\r\n" },
};

START_TEST(test_body_cases)
{
	for (size_t step = 1; step <= 7; step += 6) {
		char *got = canon_body(body_cases[_i].in, step);

		ck_assert_msg(strcmp(got, body_cases[_i].want) == 0, "case %d step %zu: got [%s]",
		    _i, step, got);
		free(got);
	}
}
END_TEST

static const struct {
	const char *in, *want;
} header_cases[] = {
	{ "Subject: Hello   World  \r\n", "subject:Hello World" },
	{ "SUBJECT:x", "subject:x" },
	{ "To:\r\n  a@b.example,\r\n\tc@d.example\r\n", "to:a@b.example, c@d.example" },
	{ "X-Tab:\t\tv\t\r\n", "x-tab:v" },
	{ "Empty:   \r\n", "empty:" },
	{ "Name \t: value\r\n", "name:value" },
};

START_TEST(test_header_cases)
{
	char *got = canon_header(header_cases[_i].in, false);

	ck_assert_str_eq(got, header_cases[_i].want);
	free(got);
}
END_TEST

static const char rfc_msg[] =
    "From: Joe SixPack <joe@football.example.com>\r\n"
    "To: Suzie Q <suzie@shopping.example.net>\r\n"
    "Subject: Is dinner ready?\r\n"
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    "\r\n"
    "Hi.\r\n"
    "\r\n"
    "We lost the game.  Are you hungry yet?\r\n"
    "\r\n"
    "Joe.\r\n";

/* RFC 8463 A.2: the private key (RFC 8032 §7.1 test 1). */
static struct dkim_key *rfc_key(void)
{
	unsigned char seed[33];
	struct dkim_key *k;

	ck_assert_int_eq(EVP_DecodeBlock(seed, (const unsigned char *)
	    "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=", 44), 33);
	k = dkim_key_ed25519_seed(seed);
	ck_assert_ptr_nonnull(k);
	return k;
}

START_TEST(test_rfc8463_appendix_a)
{
	static const char *const h[] = { "from", "to", "subject", "date", "message-id",
		"from", "subject", "date" };
	static const char sighdr[] =
	    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
	    " d=football.example.com; i=@football.example.com;\r\n"
	    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
	    " subject : date : message-id : from : subject : date;\r\n"
	    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
	    " b=";
	const char *body = strstr(rfc_msg, "\r\n\r\n") + 4;
	struct dkim_key *k = rfc_key();
	unsigned char md[32], b64[64];
	char *canon = canon_body(body, 3), *data, *sig, *txt;
	size_t n;
	struct buf all;

	EVP_Digest(canon, strlen(canon), md, NULL, EVP_sha256(), NULL);
	EVP_EncodeBlock(b64, md, 32);
	ck_assert_str_eq((char *)b64, "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=");
	data = dkim_select_headers(rfc_msg, (size_t)(body - 2 - rfc_msg), h, 8, &n);
	ck_assert_ptr_nonnull(data);
	buf_init(&all, 1 << 20);
	buf_append(&all, data, n);
	free(canon);
	canon = canon_header(sighdr, false);
	buf_puts(&all, canon);
	sig = dkim_key_sign(k, all.data, all.len);
	ck_assert_str_eq(sig, "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus"
	    "Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==");
	txt = dkim_key_txt(k);
	ck_assert_str_eq(txt, "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
	free(txt);
	free(sig);
	free(canon);
	free(data);
	buf_free(&all);
	dkim_key_free(k);
}
END_TEST

static char *sign_msg(const struct dkim_signer *sg, size_t n, const char *msg, size_t step)
{
	struct dkim_sign *s = dkim_sign_new(sg, n, 1528637909);
	size_t len = strlen(msg), outlen;
	char *out, err[256];

	ck_assert_ptr_nonnull(s);
	for (size_t i = 0; i < len; i += step)
		ck_assert_int_eq(dkim_sign_input(s, msg + i, len - i < step ? len - i : step), 0);
	ck_assert_msg(dkim_sign_finish(s, &out, &outlen, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(strlen(out), outlen);
	dkim_sign_free(s);
	return out;
}

static const char *const def_headers[] = { "from", "to", "subject", "date" };

/* Same signature whatever the chunking; the body hash is RFC 8463's. */
START_TEST(test_sign_streaming)
{
	struct dkim_key *k = rfc_key();
	struct dkim_signer sg = { "football.example.com", "brisbane", k, def_headers, 4 };
	char *whole = sign_msg(&sg, 1, rfc_msg, sizeof(rfc_msg)), *bytes = sign_msg(&sg, 1, rfc_msg, 1);

	ck_assert_str_eq(whole, bytes);
	ck_assert_ptr_nonnull(strstr(whole, "bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;"));
	ck_assert_ptr_nonnull(strstr(whole, "h=from:from:to:subject:date;"));
	ck_assert_ptr_nonnull(strstr(whole, "a=ed25519-sha256; c=relaxed/relaxed;"));
	ck_assert_ptr_nonnull(strstr(whole, "t=1528637909;"));
	ck_assert_ptr_null(strstr(whole, "l="));
	for (const char *p = whole; *p; ) {
		const char *e = strstr(p, "\r\n");

		ck_assert_ptr_nonnull(e);
		ck_assert_uint_lt((size_t)(e - p), 78);
		p = e + 2;
	}
	free(whole);
	free(bytes);
	dkim_key_free(k);
}
END_TEST

START_TEST(test_sign_selection)
{
	struct dkim_key *k = rfc_key();
	struct dkim_signer sg[2] = {
		{ "Football.Example.COM", "one", k, def_headers, 4 },
		{ "football.example.com", "two", k, def_headers, 4 },
	};
	char *out = sign_msg(sg, 2, rfc_msg, 5), *none;
	const char *second = strstr(out + 1, "DKIM-Signature:");
	static const char other[] = "From: a@other.example\r\nSubject: x\r\n\r\nbody\r\n";
	static const char twofrom[] = "From: a@football.example.com\r\nFrom: b@x.example\r\n\r\n";
	static const char dup[] = "From: a@football.example.com\r\nSubject: 1\r\nSubject: 2\r\n\r\n";

	ck_assert_ptr_nonnull(second);
	ck_assert_ptr_nonnull(strstr(out, "s=one;"));
	ck_assert_ptr_nonnull(strstr(second, "s=two;"));
	none = sign_msg(sg, 2, other, 4);
	ck_assert_str_eq(none, "");
	free(none);
	{
		struct dkim_sign *ds = dkim_sign_new(sg, 2, 0);

		ck_assert_int_eq(dkim_sign_input(ds, other, 20), 0);
		ck_assert(!dkim_sign_unwanted(ds));	/* header section not complete */
		ck_assert_int_eq(dkim_sign_input(ds, other + 20, strlen(other) - 20), 0);
		ck_assert(dkim_sign_unwanted(ds));
		dkim_sign_free(ds);
		ds = dkim_sign_new(sg, 2, 0);
		ck_assert_int_eq(dkim_sign_input(ds, rfc_msg, strlen(rfc_msg)), 0);
		ck_assert(!dkim_sign_unwanted(ds));
		dkim_sign_free(ds);
	}
	none = sign_msg(sg, 2, twofrom, 4);
	ck_assert_str_eq(none, "");
	free(none);
	none = sign_msg(sg, 1, dup, 4);
	ck_assert_ptr_nonnull(strstr(none, "h=from:from:subject:subject;"));
	free(none);
	free(out);
	dkim_key_free(k);
}
END_TEST

static const struct {
	const char *in, *want;
} from_cases[] = {
	{ "Joe <joe@Football.Example.com>", "football.example.com" },
	{ " x@y.example (comment)", "y.example" },
	{ "a@b.example, c@d.example", NULL },
	{ "root", NULL },
	{ "", NULL },
};

START_TEST(test_from_domain)
{
	char *d = dkim_from_domain(from_cases[_i].in, strlen(from_cases[_i].in));

	if (from_cases[_i].want)
		ck_assert_str_eq(d, from_cases[_i].want);
	else
		ck_assert_ptr_null(d);
	free(d);
}
END_TEST

static char *write_tmp(const char *text)
{
	char *path = strdup("/tmp/check_dkim.XXXXXX");
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

START_TEST(test_keys)
{
	char err[256], *pem, *path, *txt;
	struct dkim_key *k, *back;

	ck_assert_ptr_null(dkim_key_load("/nonexistent/dkim.key", err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "cannot read /nonexistent/dkim.key"));
	path = write_tmp("not a key\n");
	ck_assert_ptr_null(dkim_key_load(path, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "not an unencrypted PEM private key"));
	unlink(path);
	free(path);
	ck_assert_ptr_null(dkim_key_generate(DKIM_RSA_SHA256, 512, err, sizeof(err)));
	k = dkim_key_generate(DKIM_RSA_SHA256, 1024, err, sizeof(err));
	ck_assert_ptr_nonnull(k);
	pem = dkim_key_pem(k);
	path = write_tmp(pem);
	back = dkim_key_load(path, err, sizeof(err));
	ck_assert_msg(back != NULL, "%s", err);
	ck_assert_int_eq(dkim_key_alg(back), DKIM_RSA_SHA256);
	txt = dkim_key_txt(back);
	ck_assert_ptr_nonnull(strstr(txt, "v=DKIM1; k=rsa; p=MIGfMA0G"));
	unlink(path);
	free(path);
	free(pem);
	free(txt);
	dkim_key_free(back);
	dkim_key_free(k);
}
END_TEST

/* A 512-bit RSA key (OpenSSL still makes them) is refused on load. */
START_TEST(test_short_rsa)
{
	EVP_PKEY *p = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)512);
	FILE *f;
	char path[] = "/tmp/check_dkim.XXXXXX", err[256];
	int fd = mkstemp(path);

	ck_assert_ptr_nonnull(p);
	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	ck_assert_int_eq(PEM_write_PrivateKey(f, p, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
	ck_assert_ptr_null(dkim_key_load(path, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "RSA key of 512 bits"));
	unlink(path);
	EVP_PKEY_free(p);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("dkim");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_rfc6376_example);
	tcase_add_loop_test(tc, test_body_cases, 0, sizeof(body_cases) / sizeof(body_cases[0]));
	tcase_add_loop_test(tc, test_header_cases, 0,
	    sizeof(header_cases) / sizeof(header_cases[0]));
	tcase_add_test(tc, test_rfc8463_appendix_a);
	tcase_add_test(tc, test_sign_streaming);
	tcase_add_test(tc, test_sign_selection);
	tcase_add_loop_test(tc, test_from_domain, 0, sizeof(from_cases) / sizeof(from_cases[0]));
	tcase_add_test(tc, test_keys);
	tcase_add_test(tc, test_short_rsa);
	suite_add_tcase(s, tc);
	return ckrun(s);
}
