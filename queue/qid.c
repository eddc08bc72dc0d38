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

/* Id = microseconds since the epoch (10 digits), pid (4), random (4), all in
 * base 62 with digits ordered as in ASCII, so that a byte-wise sort of ids is
 * a sort by creation time.  62^10 microseconds last until the year 28000;
 * 62^4 exceeds the largest Linux pid (2^22). */
#define QID_TIME_DIGITS 10
#define QID_PID_DIGITS 4
#define QID_RAND_DIGITS 4

static const char qid_digits[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static void qid_encode(char *out, uint64_t v, int width)
{
	for (int i = width - 1; i >= 0; i--) {
		out[i] = qid_digits[v % 62];
		v /= 62;
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
	uint64_t now = qid_now_us();

	pthread_mutex_lock(&lock);
	if (now <= last_us)
		now = last_us + 1;
	last_us = now;
	pthread_mutex_unlock(&lock);
	qid_encode(id, now, QID_TIME_DIGITS);
	qid_encode(id + QID_TIME_DIGITS, (uint64_t)getpid(), QID_PID_DIGITS);
	qid_encode(id + QID_TIME_DIGITS + QID_PID_DIGITS, qid_random(), QID_RAND_DIGITS);
	id[QID_ID_LEN] = '\0';
}

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
