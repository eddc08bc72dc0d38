/* application/x-www-form-urlencoded bodies for token requests. */
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

/* ---- form encoding ---- */

static int form_encode(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		char enc[3] = { '%', hex[ch >> 4], hex[ch & 15] };
		int r;

		if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~')
			r = buf_append(b, s, 1);
		else if (ch == ' ')
			r = buf_append(b, "+", 1);
		else
			r = buf_append(b, enc, 3);
		if (r < 0)
			return -1;
	}
	return 0;
}

int oauth2_form_add(struct buf *b, const char *key, const char *value)
{
	if ((b->len > 0 && buf_append(b, "&", 1) < 0) || form_encode(b, key) < 0
	    || buf_append(b, "=", 1) < 0 || form_encode(b, value) < 0)
		return -1;
	return 0;
}
