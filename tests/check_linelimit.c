#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/linelimit.h"

/* Run in through the filter in pieces of step bytes with outcap of room. */
static char *run(const char *in, size_t len, size_t step, size_t outcap, size_t *outlen)
{
	struct linelimit l;
	char *out = malloc(len * 2 + 16), tmp[64];
	size_t used = 0, o = 0;

	ck_assert_ptr_nonnull(out);
	ck_assert_uint_le(outcap, sizeof(tmp));
	linelimit_init(&l);
	while (used < len) {
		size_t n = len - used < step ? len - used : step, olen;
		size_t took = linelimit_feed(&l, in + used, n, tmp, outcap, &olen);

		ck_assert_uint_gt(took, 0);
		memcpy(out + o, tmp, olen);
		o += olen;
		used += took;
	}
	*outlen = o;
	return out;
}

/* No line over LINELIMIT_MAX octets (a stuffing dot would not count). */
static void assert_short_lines(const char *s, size_t len)
{
	size_t col = 0;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\r' || s[i] == '\n') {
			col = 0;
			continue;
		}
		ck_assert_uint_le(++col, LINELIMIT_MAX);
	}
}

/* Removing every inserted CRLF SP gives the input back. */
static void assert_unbroken(const char *out, size_t olen, const char *in, size_t len)
{
	char *back = malloc(olen + 1);
	size_t b = 0;

	for (size_t i = 0; i < olen; i++) {
		if (i + 2 < olen && memcmp(out + i, "\r\n ", 3) == 0 &&
		    !(b + 3 <= len && memcmp(in + b, "\r\n ", 3) == 0)) {
			i += 2;
			continue;
		}
		back[b++] = out[i];
	}
	ck_assert_uint_eq(b, len);
	ck_assert(memcmp(back, in, len) == 0);
	free(back);
}

START_TEST(test_short_lines_unchanged)
{
	const char *in = "Subject: x\r\n\r\n.dot\r\nbare\nlf\rcr\r\n";
	size_t olen;
	char *out = run(in, strlen(in), 5, LINELIMIT_OUT_MIN, &olen);

	ck_assert_uint_eq(olen, strlen(in));
	ck_assert(memcmp(out, in, olen) == 0);
	free(out);
}
END_TEST

/* Finding 3 of issue 12: a 5000-octet line went out unchanged and the
 * smarthost answered "500 Line too long": the message bounced. */
START_TEST(test_long_lines_broken)
{
	static const size_t lens[] = { 997, 998, 999, 1996, 5000, 70000 };
	size_t len = lens[_i], olen, steps[] = { 1, 7, 4096, len + 2 };
	char *in = malloc(len + 8);

	for (size_t i = 0; i < len; i++)
		in[i] = (char)('a' + i % 26);
	in[0] = '.';
	memcpy(in + len, "\r\nx\r\n", 5);
	for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
		char *out = run(in, len + 5, steps[s], s % 2 ? 64 : LINELIMIT_OUT_MIN, &olen);

		assert_short_lines(out, olen);
		assert_unbroken(out, olen, in, len + 5);
		ck_assert_uint_eq(olen > len + 5, len > LINELIMIT_MAX);
		free(out);
	}
	free(in);
}
END_TEST

START_TEST(test_read_from_file)
{
	char path[] = "/tmp/check_linelimit.XXXXXX", *in = malloc(300000), *out = malloc(300000);
	int fd = mkstemp(path);
	struct linelimit l;
	size_t len = 0, o = 0;
	ssize_t n;

	ck_assert_int_ge(fd, 0);
	unlink(path);
	for (int line = 0; line < 40; line++) {
		size_t w = (size_t)(line * 997) % 9000;

		memset(in + len, 'x', w);
		len += w;
		memcpy(in + len, "\r\n", 2);
		len += 2;
	}
	ck_assert_int_eq(write(fd, in, len), (ssize_t)len);
	lseek(fd, 0, SEEK_SET);
	linelimit_init(&l);
	while ((n = linelimit_read(&l, fd, out + o, 4096)) > 0) {
		ck_assert_int_le(n, 4096);
		o += (size_t)n;
	}
	ck_assert_int_eq(n, 0);
	assert_short_lines(out, o);
	assert_unbroken(out, o, in, len);
	ck_assert_uint_gt(l.breaks, 0);
	close(fd);
	free(in);
	free(out);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("linelimit");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_short_lines_unchanged);
	tcase_add_loop_test(tc, test_long_lines_broken, 0, 6);
	tcase_add_test(tc, test_read_from_file);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
