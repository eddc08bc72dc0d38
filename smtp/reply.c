#include "config.h"
#include "smtp/reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void smtp_reply_set(struct smtp_reply *r, int code, const char *fmt, ...)
{
	va_list ap;

	r->code = code;
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof(r->text), fmt, ap);
	va_end(ap);
}

/* A sink's text goes to the client verbatim otherwise: a CR or LF in it
 * would let it forge further replies and desynchronise the session. */
static size_t smtp_reply_clean(const char *text, size_t textmax, char *out, size_t size)
{
	size_t n = 0;

	for (size_t i = 0; i < textmax && text[i] != '\0' && n + 1 < size; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c >= 0x20 && c < 0x7f)
			out[n++] = (char)c;
	}
	out[n] = '\0';
	return n;
}

size_t smtp_reply_failure_line(const struct smtp_reply *r, char *out, size_t size)
{
	int code = r->code;
	int n;

	if (code < 400 || code > 599)
		code = 451;
	n = snprintf(out, size, "%03d ", code);
	if (n < 0 || (size_t)n >= size)
		return 0;
	if (smtp_reply_clean(r->text, sizeof(r->text), out + n, size - (size_t)n) > 0)
		return strlen(out);
	snprintf(out + n, size - (size_t)n, "%s",
	    code < 500 ? "4.3.0 Error: temporary failure" : "5.3.0 Error: request rejected");
	return strlen(out);
}
