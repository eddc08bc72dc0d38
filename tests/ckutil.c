#include "config.h"
#include "tests/ckutil.h"

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int ckutil_saved_stderr = -1;

void ckutil_capture_start(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	ck_assert_int_ge(fd, 0);
	fflush(stderr);
	ckutil_saved_stderr = dup(2);
	dup2(fd, 2);
	close(fd);
}

char *ckutil_capture_stop(const char *path)
{
	char *text = malloc(65536);
	FILE *f;
	size_t n;

	ck_assert_ptr_nonnull(text);
	fflush(stderr);
	dup2(ckutil_saved_stderr, 2);
	close(ckutil_saved_stderr);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	n = fread(text, 1, 65535, f);
	text[n] = '\0';
	fclose(f);
	return text;
}
