#include "config.h"
#include "lib/linelimit.h"

#include <errno.h>
#include <unistd.h>

void linelimit_init(struct linelimit *l)
{
	l->col = 0;
	l->breaks = 0;
}

size_t linelimit_feed(struct linelimit *l, const char *in, size_t inlen, char *out,
    size_t outcap, size_t *outlen)
{
	size_t i = 0, o = 0;

	for (; i < inlen && outcap - o >= LINELIMIT_OUT_MIN; i++) {
		char ch = in[i];

		if (ch == '\r' || ch == '\n') {
			l->col = 0;
		} else {
			if (l->col >= LINELIMIT_MAX) {
				out[o++] = '\r';
				out[o++] = '\n';
				out[o++] = ' ';
				l->col = 1;
				l->breaks++;
			}
			l->col++;
		}
		out[o++] = ch;
	}
	*outlen = o;
	return i;
}

ssize_t linelimit_read(struct linelimit *l, int fd, char *out, size_t cap)
{
	/* Every LINELIMIT_MAX - 1 input bytes add at most 3: read what fits. */
	size_t want = cap - LINELIMIT_OUT_MIN - 3 * (cap / (LINELIMIT_MAX - 1) + 1);
	char in[8192];
	size_t used = 0;

	while (used + LINELIMIT_OUT_MIN <= cap && want > 0) {
		size_t chunk = want < sizeof(in) ? want : sizeof(in), olen, took;
		ssize_t n = read(fd, in, chunk);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return used > 0 ? (ssize_t)used : -1;
		if (n == 0)
			break;
		took = linelimit_feed(l, in, (size_t)n, out + used, cap - used, &olen);
		if (took != (size_t)n) {	/* cannot happen with want as computed */
			errno = EOVERFLOW;
			return -1;
		}
		used += olen;
		want -= (size_t)n;
		if ((size_t)n < chunk)
			break;	/* a short read: hand over what we have */
	}
	return (ssize_t)used;
}
