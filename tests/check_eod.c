#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "smtp/eod.h"
#include "tests/ckrun.h"

enum feed_mode { FEED_WHOLE, FEED_BYTES, FEED_SMALL_OUT, FEED_MODES };

struct result {
	struct buf out;
	size_t used;
	bool done;
};

/* Feed in[0..len) the way mode says until end of data or input runs out. */
static void run(const char *in, size_t len, enum feed_mode mode, struct result *r)
{
	struct eod e;
	char out[64];
	size_t outcap = mode == FEED_SMALL_OUT ? EOD_OUT_MIN : sizeof(out);

	eod_init(&e);
	buf_init(&r->out, 1 << 20);
	r->used = 0;
	while (r->used < len && !eod_done(&e)) {
		size_t step = mode == FEED_BYTES ? 1 : len - r->used, olen, n;
		n = eod_feed(&e, in + r->used, step, out, outcap, &olen);
		ck_assert(n > 0);
		ck_assert_uint_le(olen, outcap);
		ck_assert_int_eq(buf_append(&r->out, out, olen), 0);
		r->used += n;
	}
	r->done = eod_done(&e);
}

/* Every CR in the output is followed by LF and every LF preceded by CR. */
static void assert_crlf_only(const struct buf *b)
{
	for (size_t i = 0; i < b->len; i++) {
		if (b->data[i] == '\r')
			ck_assert_msg(i + 1 < b->len && b->data[i + 1] == '\n', "bare CR at %zu", i);
		if (b->data[i] == '\n')
			ck_assert_msg(i > 0 && b->data[i - 1] == '\r', "bare LF at %zu", i);
	}
}

static void expect(const char *in, const char *out, size_t used)
{
	for (int m = 0; m < FEED_MODES; m++) {
		struct result r;
		run(in, strlen(in), (enum feed_mode)m, &r);
		ck_assert_msg(r.done, "mode %d: no end of data in %s", m, in);
		ck_assert_uint_eq(r.used, used);
		ck_assert_uint_eq(r.out.len, strlen(out));
		ck_assert_msg(memcmp(r.out.data ? r.out.data : "", out, r.out.len) == 0,
		    "mode %d: got [%s] want [%s]", m, r.out.data ? r.out.data : "", out);
		assert_crlf_only(&r.out);
		buf_free(&r.out);
	}
}

START_TEST(test_plain_message)
{
	expect("Subject: x\r\n\r\nbody\r\n.\r\n", "Subject: x\r\n\r\nbody\r\n", 23);
}
END_TEST

START_TEST(test_empty_message)
{
	expect(".\r\n", "", 3);
	expect("\r\n.\r\n", "\r\n", 5);
}
END_TEST

START_TEST(test_rest_not_consumed)
{
	const char *in = "a\r\n.\r\nQUIT\r\n";

	expect(in, "a\r\n", 6);
}
END_TEST

START_TEST(test_dot_unstuffing)
{
	expect("..\r\n.\r\n", ".\r\n", 7);
	expect("a\r\n..b\r\n.\r\n", "a\r\n.b\r\n", 11);
	expect("a\r\n...\r\n.\r\n", "a\r\n..\r\n", 11);
	expect(". \r\n.\r\n", " \r\n", 7);
	expect("a\r\n.x\r\n.\r\n", "a\r\nx\r\n", 10);
	/* A dot not at a line start stays. */
	expect("a.\r\nb..\r\n.\r\n", "a.\r\nb..\r\n", 12);
}
END_TEST

START_TEST(test_normalisation)
{
	expect("a\nb\rc\r\n.\r\n", "a\r\nb\r\nc\r\n", 10);
	expect("\n\n\r\r\r\n.\r\n", "\r\n\r\n\r\n\r\n\r\n", 9);
	expect("a\r\r\nb\r\n.\r\n", "a\r\n\r\nb\r\n", 10);
	/* A dot after a bare line end is content, kept as it is. */
	expect("a\n.b\r\n.\r\n", "a\r\n.b\r\n", 9);
	expect("a\r.b\r\n.\r\n", "a\r\n.b\r\n", 9);
}
END_TEST

/* Each must not end data; the real CRLF.CRLF after it must. */
static const char *const smuggle[] = {
	"\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r", "\r\n.\r", "\r.\r\n", "\n.\r",
	"\r.\n", "\n.\r\r\n", "\r\n.\r\r\n", "\r\n.\rX\r\n", "\r\n. \r\n", "\r\n.\n\n",
	"\r\n..\r\n", "\r\n.\r.\r\n", "\r\r\n.\n", "\n\r.\r\n", "\r\n\n.\r\n",
};

START_TEST(test_smuggling)
{
	const char *v = smuggle[_i];
	char in[128];

	snprintf(in, sizeof(in), "Subject: a%sMAIL FROM:<evil@example.com>\r\n", v);
	for (int m = 0; m < FEED_MODES; m++) {
		struct result r;
		run(in, strlen(in), (enum feed_mode)m, &r);
		ck_assert_msg(!r.done, "variant %d ended data", _i);
		ck_assert_uint_eq(r.used, strlen(in));
		assert_crlf_only(&r.out);
		ck_assert_ptr_nonnull(strstr(r.out.data, "MAIL FROM:<evil@example.com>\r\n"));
		buf_free(&r.out);
	}
	/* Followed by a real end of data it ends exactly there. */
	strcat(in, ".\r\nRSET\r\n");
	for (int m = 0; m < FEED_MODES; m++) {
		struct result r;
		run(in, strlen(in), (enum feed_mode)m, &r);
		ck_assert(r.done);
		ck_assert_uint_eq(r.used, strlen(in) - strlen("RSET\r\n"));
		assert_crlf_only(&r.out);
		buf_free(&r.out);
	}
}
END_TEST

START_TEST(test_smuggling_at_start)
{
	/* The first line starts after DATA's CRLF, but only ".\r\n" ends it. */
	static const char *const starts[] = { ".\n", ".\r", ".\rX", ". \r\n", ".\n.\r" };

	for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++) {
		struct result r;
		run(starts[i], strlen(starts[i]), FEED_BYTES, &r);
		ck_assert_msg(!r.done, "start %zu ended data", i);
		buf_free(&r.out);
	}
}
END_TEST

START_TEST(test_chunk_boundaries)
{
	struct eod e;
	char out[16];
	size_t olen;

	/* CR at the end of one chunk, LF at the start of the next. */
	eod_init(&e);
	ck_assert_uint_eq(eod_feed(&e, "a\r", 2, out, sizeof(out), &olen), 2);
	ck_assert_uint_eq(olen, 1);
	ck_assert_uint_eq(eod_feed(&e, "\n.", 2, out, sizeof(out), &olen), 2);
	ck_assert_uint_eq(olen, 2);
	ck_assert(memcmp(out, "\r\n", 2) == 0);
	ck_assert_uint_eq(eod_feed(&e, "\r", 1, out, sizeof(out), &olen), 1);
	ck_assert_uint_eq(olen, 0);
	ck_assert(!eod_done(&e));
	ck_assert_uint_eq(eod_feed(&e, "\nX", 2, out, sizeof(out), &olen), 1);
	ck_assert(eod_done(&e));

	/* A pending CR that turns out bare once the next chunk arrives. */
	eod_init(&e);
	eod_feed(&e, "a\r", 2, out, sizeof(out), &olen);
	ck_assert_uint_eq(eod_feed(&e, "b", 1, out, sizeof(out), &olen), 1);
	ck_assert_uint_eq(olen, 3);
	ck_assert(memcmp(out, "\r\nb", 3) == 0);

	/* Output too small for one more byte: nothing is consumed. */
	ck_assert_uint_eq(eod_feed(&e, "c", 1, out, EOD_OUT_MIN - 1, &olen), 0);
	ck_assert_uint_eq(olen, 0);
}
END_TEST

/* Reference: end of data is the first "\r\n.\r\n" in "\r\n" + input; a dot
 * right after a real CRLF (or at the start) is dropped; then bare CR and LF
 * become CRLF.  Returns consumed length or 0 when there is no end. */
static size_t reference(const char *in, size_t len, struct buf *out)
{
	size_t k = (size_t)-1;
	struct buf u;

	for (size_t i = 0; i + 3 <= len; i++) {
		bool crlf_before = i == 0 || (i >= 2 && in[i - 2] == '\r' && in[i - 1] == '\n');
		if (crlf_before && memcmp(in + i, ".\r\n", 3) == 0) {
			k = i;
			break;
		}
	}
	if (k == (size_t)-1)
		return 0;
	buf_init(&u, 1 << 20);
	for (size_t i = 0; i < k; i++) {
		bool crlf_before = i == 0 || (i >= 2 && in[i - 2] == '\r' && in[i - 1] == '\n');
		if (!(in[i] == '.' && crlf_before))
			buf_append(&u, in + i, 1);
	}
	for (size_t i = 0; i < u.len; i++) {
		if (u.data[i] == '\r' && i + 1 < u.len && u.data[i + 1] == '\n')
			i++;
		if (u.data[i] == '\r' || u.data[i] == '\n')
			buf_append(out, "\r\n", 2);
		else
			buf_append(out, u.data + i, 1);
	}
	buf_free(&u);
	return k + 3;
}

START_TEST(test_random_against_reference)
{
	static const char alphabet[] = "\r\n.a";
	char in[64];

	srand(12345);
	for (int iter = 0; iter < 20000; iter++) {
		size_t len = (size_t)(rand() % 40);
		struct buf want;
		size_t used;

		for (size_t i = 0; i < len; i++)
			in[i] = alphabet[rand() % 4];
		memcpy(in + len, "\r\n.\r\nZ", 6);
		len += 6;
		buf_init(&want, 1 << 20);
		used = reference(in, len, &want);
		ck_assert_uint_gt(used, 0);
		for (int m = 0; m < FEED_MODES; m++) {
			struct result r;
			run(in, len, (enum feed_mode)m, &r);
			ck_assert(r.done);
			ck_assert_uint_eq(r.used, used);
			ck_assert_uint_eq(r.out.len, want.len);
			ck_assert(r.out.len == 0 || memcmp(r.out.data, want.data, want.len) == 0);
			assert_crlf_only(&r.out);
			buf_free(&r.out);
		}
		buf_free(&want);
	}
}
END_TEST

static Suite *eod_suite(void)
{
	Suite *s = suite_create("eod");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_plain_message);
	tcase_add_test(tc, test_empty_message);
	tcase_add_test(tc, test_rest_not_consumed);
	tcase_add_test(tc, test_dot_unstuffing);
	tcase_add_test(tc, test_normalisation);
	tcase_add_loop_test(tc, test_smuggling, 0, (int)(sizeof(smuggle) / sizeof(smuggle[0])));
	tcase_add_test(tc, test_smuggling_at_start);
	tcase_add_test(tc, test_chunk_boundaries);
	tcase_add_test(tc, test_random_against_reference);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ckrun(eod_suite());
}
