/* Helpers shared by the fuzz targets in fuzz/ (one parser each).
 *
 * Every target defines LLVMFuzzerTestOneInput.  ./configure --enable-fuzzing
 * links each with libFuzzer (fuzz/fuzz_TARGET, run by tools/fuzz); every
 * build links each with fuzz/replay.c (fuzz/replay_TARGET), which make check
 * runs over every file in fuzz/corpus/ so a crash once fixed stays fixed.
 */
#ifndef SMTPRELAY_FUZZ_H
#define SMTPRELAY_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant of the code under test: abort (a crash to libFuzzer). */
#define FUZZ_CHECK(cond) do { \
	if (!(cond)) \
		fuzz_fail(__FILE__, __LINE__, #cond); \
} while (0)
void fuzz_fail(const char *file, int line, const char *what) __attribute__((noreturn));

/* First call: logging down to errors only (a fuzzer runs millions of inputs). */
void fuzz_init(void);
/* data as a NUL-terminated string (NULs inside stay); free it. */
char *fuzz_str(const uint8_t *data, size_t size);
/* A memfd holding data, offset 0; -1 on error. */
int fuzz_memfd(const uint8_t *data, size_t size);
/* "/proc/self/fd/N" for a memfd, for APIs that take a path. */
void fuzz_fd_path(int fd, char *out, size_t len);
/* A private spool directory for this process, made once (removed at exit). */
const char *fuzz_spool(void);

/* xorshift32, seeded from the input so runs are reproducible. */
uint32_t fuzz_rand(uint32_t *st);
uint32_t fuzz_seed(const uint8_t *data, size_t size);

#endif
