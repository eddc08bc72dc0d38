#include "config.h"
#include "frontend/sendmail.h"

#ifdef __SANITIZE_ADDRESS__
#include <sys/prctl.h>

/* --enable-sanitizers: a setgid sendmail (or one that has dropped its
 * privilege) is not dumpable, so LeakSanitizer can neither read
 * ASAN_OPTIONS from /proc/self/environ nor trace the process at exit, and
 * would fail the exit instead of finding leaks.  It checks only processes
 * it can trace; the front end's leaks are caught when it runs unprivileged. */
int __lsan_is_turned_off(void);
int __lsan_is_turned_off(void)
{
	return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 1;
}
#endif

int main(int argc, char **argv)
{
	return sendmail_main(argc, argv);
}
