#include "config.h"
#include "queue/queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_GETRANDOM
#include <sys/random.h>
#endif

/* Postfix's long queue id (src/global/mail_queue.h, Postfix >= 2.9), so
 * that log tools which know it (logwatch with long ids on) parse ours:
 * seconds since the epoch in 6 base-52 digits, microseconds in 4 base-52
 * digits, the separator 'z', then where Postfix puts the inode number (base
 * 51, no 'z') our pid (4 digits) and random (3 digits).  The alphabet has no
 * vowels (no words in ids) and is in ASCII order, so with fixed widths a
 * byte-wise sort is a sort by creation time; 52^6 seconds last until the
 * year 2596, 51^4 exceeds the largest Linux pid (2^22).
 *
 * Ids made before (base 62, 18 characters: "0" then 9 digits of
 * microseconds, pid, random) stay valid and sort before every new id. */
#define QID_SEC_DIGITS 6
#define QID_USEC_DIGITS 4
#define QID_PID_DIGITS 4
#define QID_RAND_DIGITS 3
#define QID_SEP 'z'

_Static_assert(QID_SEC_DIGITS + QID_USEC_DIGITS + 1 + QID_PID_DIGITS + QID_RAND_DIGITS ==
    QID_ID_LEN, "queue ids have a fixed length");

static const char qid_digits[] = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz";

static void qid_encode(char *out, uint64_t v, int width, unsigned base)
{
	for (int i = width - 1; i >= 0; i--) {
		out[i] = qid_digits[v % base];
		v /= base;
	}
}

static uint64_t qid_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Random bits are a second line of defence (pid reuse after a clock step
 * backwards); without getrandom the time and a counter still differ. */
static uint64_t qid_random(void)
{
	static uint64_t counter;
	uint64_t r = 0;

#ifdef HAVE_GETRANDOM
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) == (ssize_t)sizeof(r))
		return r;
#endif
	r = qid_now_us() * 6364136223846793005u + ++counter * 1442695040888963407u;
	return r ^ (r >> 29);
}

void queue_new_id(char id[QID_SIZE])
{
	/* Strictly increasing within a process, even if called twice in one
	 * microsecond or the clock steps back. */
	static uint64_t last_us;
	/* The daemon's commit threads make ids too (pickup, handover). */
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	uint64_t now = qid_now_us(), rnd;
	char *p = id;

	pthread_mutex_lock(&lock);
	if (now <= last_us)
		now = last_us + 1;
	last_us = now;
	rnd = qid_random();	/* its fallback counter is shared too */
	pthread_mutex_unlock(&lock);
	qid_encode(p, now / 1000000u, QID_SEC_DIGITS, 52);
	qid_encode(p += QID_SEC_DIGITS, now % 1000000u, QID_USEC_DIGITS, 52);
	*(p += QID_USEC_DIGITS) = QID_SEP;
	qid_encode(++p, (uint64_t)getpid(), QID_PID_DIGITS, 51);
	qid_encode(p + QID_PID_DIGITS, rnd, QID_RAND_DIGITS, 51);
	id[QID_ID_LEN] = '\0';
}

/* Both id formats: the new alphabet is a subset of the old one. */
bool queue_id_valid(const char *id)
{
	size_t i;

	if (!id)
		return false;
	for (i = 0; i < QID_ID_LEN; i++) {
		char c = id[i];
		if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
			return false;
	}
	return id[i] == '\0';
}
