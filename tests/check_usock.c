#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/usock.h"

/* Open descriptors of this process: a leak shows up as a higher count. */
static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* Send "x" with nfds copies of /dev/null in one SCM_RIGHTS message, the way
 * a hostile local client can (usock_send_fd only ever sends one). */
static void send_fds(int s, int nfds)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(8 * sizeof(int))];
	} u;
	struct iovec iov = { .iov_base = "x", .iov_len = 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
	    .msg_controllen = CMSG_SPACE(nfds * sizeof(int)) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	int fds[8];

	ck_assert_int_le(nfds, 8);
	memset(&u, 0, sizeof(u));
	for (int i = 0; i < nfds; i++)
		fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
	memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	ck_assert_int_eq(sendmsg(s, &m, 0), 1);
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
}

START_TEST(test_one_fd)
{
	int sv[2], fd = -2, before;
	char c;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	before = count_fds();
	send_fds(sv[0], 1);
	ck_assert_int_eq(usock_recv_fd(sv[1], &c, 1, &fd), 1);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(count_fds(), before);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* Finding 1 of issue 12: two or more descriptors in one message used to be
 * ignored and never closed, so 540 connections exhausted the daemon's fds. */
START_TEST(test_extra_fds_closed)
{
	int sv[2], fd = -2, before;
	int nfds = 2 + _i * 3;	/* 2, 5, 8 */
	char c;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	before = count_fds();
	for (int round = 0; round < 20; round++) {
		send_fds(sv[0], nfds);
		ck_assert_int_eq(usock_recv_fd(sv[1], &c, 1, &fd), -1);
		ck_assert_int_eq(errno, EBADMSG);
		ck_assert_int_eq(fd, -1);
	}
	ck_assert_int_eq(count_fds(), before);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(test_no_fd)
{
	int sv[2], fd = -2;
	char c;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_int_eq(write(sv[0], "y", 1), 1);
	ck_assert_int_eq(usock_recv_fd(sv[1], &c, 1, &fd), 1);
	ck_assert_int_eq(fd, -1);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("usock");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_one_fd);
	tcase_add_loop_test(tc, test_extra_fds_closed, 0, 3);
	tcase_add_test(tc, test_no_fd);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
