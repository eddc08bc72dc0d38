/* Wiping secrets and quoting server text, for the OAuth2 modules. */
#include "config.h"
#include "relay/oauth2.h"
#include "relay/oauth2int.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>

#include "relay/tls.h"
#include "lib/fsutil.h"
#include "lib/log.h"

void oauth2_wipe(void *p, size_t n)
{
	volatile unsigned char *v = p;

	while (p && n--)
		*v++ = 0;
}

void oauth2_free_secret(char *s)
{
	if (s) {
		oauth2_wipe(s, strlen(s));
		free(s);
	}
}

void oauth2_buf_wipe(struct buf *b)
{
	oauth2_wipe(b->data, b->cap);
	buf_free(b);
}

void oauth2_clean(char *dst, size_t len, const char *src)
{
	size_t n = 0;

	for (; src && *src && n + 1 < len && n < OAUTH2_TEXT_MAX; src++) {
		unsigned char ch = (unsigned char)*src;

		if (ch == '\r' || ch == '\n')
			break;
		dst[n++] = ch < 0x20 || ch > 0x7e ? '?' : (char)ch;
	}
	while (n > 0 && dst[n - 1] == ' ')
		n--;
	dst[n] = '\0';
}
