/* Fuzz target: what a local user hands the daemon, both ways: a maildrop
 * file picked up into queue/ and a descriptor passed over the submit
 * socket (queue_accept_fd).  Either is validated as untrusted and queued,
 * or refused (and a bad maildrop file quarantined); never anything else. */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz/fuzz.h"
#include "queue/queue.h"

static struct queue *fuzz_queue(void)
{
	static struct queue *q;
	char err[512];

	if (!q && !(q = queue_open(fuzz_spool(), true, err, sizeof(err)))) {
		fprintf(stderr, "fuzz: %s\n", err);
		abort();
	}
	return q;
}

/* Whatever was queued must read back; then it goes. */
static void fuzz_maildrop_drain(struct queue *q, const char *id)
{
	struct q_envelope *env = NULL;
	char err[512];

	FUZZ_CHECK(queue_read(q, Q_QUEUE, id, &env, err, sizeof(err)) == 0);
	q_envelope_free(env);
	queue_remove(q, Q_QUEUE, id);
}

static void fuzz_clear_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	while (d && (e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			unlinkat(dirfd(d), e->d_name, 0);
	if (d)
		closedir(d);
}

static void fuzz_pickup(struct queue *q, const uint8_t *data, size_t size)
{
	char id[QID_SIZE], path[512], err[512];
	FILE *f;

	queue_new_id(id);
	snprintf(path, sizeof(path), "%s/maildrop/%s", queue_path(q), id);
	if (!(f = fopen(path, "wb")))
		abort();
	fwrite(data, 1, size, f);
	fclose(f);
	if (queue_pickup(q, id, err, sizeof(err)) == 0)
		fuzz_maildrop_drain(q, id);
	/* Refused: the file is quarantined or left; either way not for the next run. */
	unlink(path);
	snprintf(path, sizeof(path), "%s/corrupt", queue_path(q));
	fuzz_clear_dir(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct queue *q;
	char id[QID_SIZE], err[512];
	int fd;

	fuzz_init();
	q = fuzz_queue();
	if ((fd = fuzz_memfd(data, size)) >= 0) {
		if (queue_accept_fd(q, fd, 1000, id, err, sizeof(err)) == 0)
			fuzz_maildrop_drain(q, id);
		close(fd);
	}
	fuzz_pickup(q, data, size);
	return 0;
}
