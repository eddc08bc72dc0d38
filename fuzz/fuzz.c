#include "config.h"
#include "fuzz/fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/log.h"

void fuzz_fail(const char *file, int line, const char *what)
{
	fprintf(stderr, "%s:%d: invariant failed: %s\n", file, line, what);
	abort();
}

void fuzz_init(void)
{
	static bool done;

	if (done)
		return;
	done = true;
	log_init("fuzz", LOG_TARGET_STDERR, false);
	log_quiet(true);
}

char *fuzz_str(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		abort();
	if (size)
		memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

int fuzz_memfd(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz", MFD_CLOEXEC);

	if (fd < 0)
		return -1;
	if (size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return -1;
	}
	lseek(fd, 0, SEEK_SET);
	return fd;
}

void fuzz_fd_path(int fd, char *out, size_t len)
{
	snprintf(out, len, "/proc/self/fd/%d", fd);
}

static char fuzz_spool_dir[64];

static void fuzz_spool_remove(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fuzz_spool_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz: could not remove %s\n", fuzz_spool_dir);
}

const char *fuzz_spool(void)
{
	if (fuzz_spool_dir[0])
		return fuzz_spool_dir;
	/* tmpfs when there is one: the queue fsyncs every file. */
	snprintf(fuzz_spool_dir, sizeof(fuzz_spool_dir), "%s/smtprelay-fuzz.XXXXXX",
	    access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	if (!mkdtemp(fuzz_spool_dir)) {
		perror(fuzz_spool_dir);
		abort();
	}
	atexit(fuzz_spool_remove);
	return fuzz_spool_dir;
}

uint32_t fuzz_rand(uint32_t *st)
{
	*st ^= *st << 13;
	*st ^= *st >> 17;
	*st ^= *st << 5;
	return *st;
}

uint32_t fuzz_seed(const uint8_t *data, size_t size)
{
	uint32_t st = 2463534242u;

	for (size_t i = 0; i < size; i++)
		st = (st ^ data[i]) * 16777619u | 1;
	return st;
}
