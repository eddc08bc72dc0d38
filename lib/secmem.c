#include "config.h"
#include "lib/secmem.h"

#include <sys/mman.h>
#include <unistd.h>

static size_t secmem_round(size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return (len + page - 1) / page * page;
}

void *secmem_alloc(size_t len)
{
	size_t n = secmem_round(len ? len : 1);
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	/* Best effort: kernels before 3.4 lack it, and that is no reason to fail. */
	(void)madvise(p, n, MADV_DONTDUMP);
	return p;
}

void secmem_free(void *p, size_t len)
{
	volatile unsigned char *v = p;
	size_t n = secmem_round(len ? len : 1);

	if (!p)
		return;
	for (size_t i = 0; i < n; i++)
		v[i] = 0;
	munmap(p, n);
}
