#include "config.h"
#include "lib/addr.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool addr_atext(unsigned char c, bool utf8)
{
	if (c >= 0x80)
		return utf8;
	return isalnum(c) || strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* Dot-atom: atoms separated by single dots, no leading/trailing dot. */
static bool addr_valid_dot_atom(const char *s, size_t len, bool utf8)
{
	bool prev_dot = true;

	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (prev_dot)
				return false;
			prev_dot = true;
			continue;
		}
		if (!addr_atext(c, utf8))
			return false;
		prev_dot = false;
	}
	return !prev_dot;
}

/* Quoted-string: printable ASCII (and UTF-8) with backslash escapes. */
static bool addr_valid_quoted(const char *s, size_t len, bool utf8)
{
	if (len < 2 || s[0] != '"' || s[len - 1] != '"')
		return false;
	for (size_t i = 1; i < len - 1; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\\') {
			if (++i >= len - 1)
				return false;
			c = (unsigned char)s[i];
			if (c < 0x20 || c == 0x7f)
				return false;
			continue;
		}
		if (c == '"' || c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8))
			return false;
	}
	return true;
}

static bool addr_valid_local(const char *s, size_t len, bool utf8)
{
	if (len == 0 || len > ADDR_MAX_LOCAL)
		return false;
	if (s[0] == '"')
		return addr_valid_quoted(s, len, utf8);
	return addr_valid_dot_atom(s, len, utf8);
}

bool addr_valid_domain(const char *s, bool utf8)
{
	size_t len = strlen(s), lablen = 0;

	if (len == 0 || len > ADDR_MAX_DOMAIN)
		return false;
	for (size_t i = 0; i <= len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.' || c == '\0') {
			/* Labels: 1..63 chars, no leading or trailing hyphen. */
			if (lablen == 0 || lablen > 63 || s[i - 1] == '-')
				return false;
			lablen = 0;
			continue;
		}
		if (lablen == 0 && c == '-')
			return false;
		if (!(isalnum(c) || c == '-' || (c >= 0x80 && utf8)))
			return false;
		lablen++;
	}
	return true;
}

/* [1.2.3.4] or [IPv6:...]; checked loosely for allowed characters. */
static bool addr_valid_literal(const char *s)
{
	size_t len = strlen(s);

	if (len < 3 || s[0] != '[' || s[len - 1] != ']')
		return false;
	for (size_t i = 1; i < len - 1; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!(isalnum(c) || c == '.' || c == ':'))
			return false;
	}
	return true;
}

const char *addr_domain(const char *addr)
{
	const char *at = NULL;
	bool quoted = false;

	for (const char *p = addr; *p; p++) {
		if (quoted && *p == '\\' && p[1]) {
			p++;
			continue;
		}
		if (*p == '"')
			quoted = !quoted;
		else if (*p == '@' && !quoted)
			at = p;
	}
	return at ? at + 1 : NULL;
}

size_t addr_local_len(const char *addr)
{
	const char *d = addr_domain(addr);

	return d ? (size_t)(d - 1 - addr) : strlen(addr);
}

bool addr_valid(const char *s, unsigned flags)
{
	bool utf8 = flags & ADDR_ALLOW_UTF8;
	const char *dom;

	if (strlen(s) > ADDR_MAX)
		return false;
	dom = addr_domain(s);
	if (!dom)
		return (flags & ADDR_ALLOW_BARE) && addr_valid_local(s, strlen(s), utf8);
	if (!addr_valid_local(s, (size_t)(dom - 1 - s), utf8))
		return false;
	return dom[0] == '[' ? addr_valid_literal(dom) : addr_valid_domain(dom, utf8);
}

bool addr_is_local(const char *addr, const char *hostname)
{
	const char *dom = addr_domain(addr);

	if (!dom)
		return true;
	return strcasecmp(dom, "localhost") == 0 ||
	    strcasecmp(dom, "localhost.localdomain") == 0 ||
	    (hostname && strcasecmp(dom, hostname) == 0);
}

char *addr_qualify(const char *addr, const char *domain)
{
	size_t a, d;
	char *r;

	if (addr_domain(addr) || addr[0] == '\0')
		return strdup(addr);
	a = strlen(addr);
	d = strlen(domain);
	r = malloc(a + d + 2);
	if (!r)
		return NULL;
	memcpy(r, addr, a);
	r[a] = '@';
	memcpy(r + a + 1, domain, d + 1);
	return r;
}

bool addr_is_utf8(const char *addr)
{
	for (const unsigned char *p = (const unsigned char *)addr; *p; p++)
		if (*p >= 0x80)
			return true;
	return false;
}

/* Skip "@a,@b:" source route at the start of a path. */
static const char *addr_skip_route(const char *p, const char *end)
{
	const char *colon;

	if (*p != '@')
		return p;
	colon = memchr(p, ':', (size_t)(end - p));
	return colon ? colon + 1 : NULL;
}

int addr_parse_path(const char *arg, unsigned flags, char **addr, const char **params)
{
	const char *p = arg, *start, *end;
	bool quoted = false;
	size_t len;
	char *a;

	if (*p != '<')
		return -1;
	start = ++p;
	for (; *p; p++) {
		if (quoted && *p == '\\' && p[1]) {
			p++;
			continue;
		}
		if (*p == '"')
			quoted = !quoted;
		else if (*p == '>' && !quoted)
			break;
	}
	if (*p != '>')
		return -1;
	end = p;
	if (p[1] != '\0' && p[1] != ' ')
		return -1;
	start = addr_skip_route(start, end);
	if (!start)
		return -1;
	len = (size_t)(end - start);
	a = strndup(start, len);
	if (!a)
		return -1;
	if (len > 0 && !addr_valid(a, flags)) {
		free(a);
		return -1;
	}
	p = end + 1;
	while (*p == ' ')
		p++;
	*addr = a;
	*params = p;
	return 0;
}
