#include "config.h"
#include "conf/conf.h"
#include "conf/cint.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- value parsers ---- */

/* Digits only (no sign, no spaces, no 0x); -1 if not a number or > max. */
int conf_parse_ulong(const char *s, const char **end, unsigned long long max,
    unsigned long long *out)
{
	unsigned long long v = 0;
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return -1;
	for (; isdigit((unsigned char)*p); p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (end)
		*end = p;
	else if (*p)
		return -1;
	*out = v;
	return 0;
}

long conf_parse_duration(const char *s)
{
	static const struct { char c; long mult; } units[] = {
		{ 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 },
	};
	unsigned long long v;
	const char *p;
	long mult = 1;

	if (!s || conf_parse_ulong(s, &p, LONG_MAX, &v) < 0)
		return -1;
	if (*p) {
		size_t i;
		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
			if (tolower((unsigned char)*p) == units[i].c)
				break;
		if (i == sizeof(units) / sizeof(units[0]) || p[1] != '\0')
			return -1;
		mult = units[i].mult;
	}
	if (v > (unsigned long long)(LONG_MAX / mult))
		return -1;
	return (long)v * mult;
}

int conf_parse_rate_window(const char *s, unsigned *n, double *window)
{
	static const struct { const char *name; double secs; } units[] = {
		{ "s", 1 }, { "sec", 1 }, { "second", 1 },
		{ "m", 60 }, { "min", 60 }, { "minute", 60 },
		{ "h", 3600 }, { "hour", 3600 }, { "d", 86400 }, { "day", 86400 },
	};
	unsigned long long v;
	const char *p;

	*n = 0;
	*window = 0;
	if (!s)
		return -1;
	if (strcmp(s, "0") == 0)
		return 0;
	if (conf_parse_ulong(s, &p, 1000000000ULL, &v) < 0 || *p != '/')
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcasecmp(p + 1, units[i].name) == 0) {
			*n = (unsigned)v;
			*window = v ? units[i].secs : 0;
			return 0;
		}
	return -1;
}

double conf_parse_rate(const char *s)
{
	unsigned n;
	double w;

	if (conf_parse_rate_window(s, &n, &w) < 0)
		return -1;
	return n ? n / w : 0;
}

/* Bytes, optionally with k, M or G (powers of 1024). */
int conf_parse_size(const char *s, size_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	const char *p;

	if (conf_parse_ulong(s, &p, SIZE_MAX, &v) < 0)
		return -1;
	switch (*p) {
	case '\0': break;
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	default: return -1;
	}
	if (*p && p[1] != '\0')
		return -1;
	if (v > (unsigned long long)SIZE_MAX >> shift)
		return -1;
	*out = (size_t)(v << shift);
	return 0;
}

int conf_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

static int conf_hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

int conf_parse_fingerprint(const char *s, unsigned char out[32])
{
	size_t n = 0;

	if (strncasecmp(s, "sha256:", 7) != 0)
		return -1;
	for (s += 7; *s; ) {
		int hi = conf_hexval(s[0]), lo = hi < 0 ? -1 : conf_hexval(s[1]);
		if (lo < 0 || n == 32)
			return -1;
		out[n++] = (unsigned char)(hi << 4 | lo);
		s += 2;
		/* A colon may separate byte pairs, never end the string. */
		if (*s == ':' && *++s == '\0')
			return -1;
	}
	return n == 32 ? 0 : -1;
}

static int conf_parse_portnum(const char *s, size_t len, unsigned *port)
{
	unsigned long long v;
	char tmp[8];

	if (len == 0 || len >= sizeof(tmp))
		return -1;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	if (conf_parse_ulong(tmp, NULL, 65535, &v) < 0 || v == 0)
		return -1;
	*port = (unsigned)v;
	return 0;
}

int conf_parse_port(const char *s, struct conf_port *out, char *err, size_t errlen)
{
	static const struct { const char *name; enum conf_tls_mode mode; } modes[] = {
		{ "starttls", CONF_TLS_STARTTLS }, { "tls", CONF_TLS_IMPLICIT },
		{ "none", CONF_TLS_NONE },
	};
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);

	if (conf_parse_portnum(s, n, &out->port) < 0) {
		snprintf(err, errlen, "not a port number 1-65535 "
		    "(use PORT or PORT/starttls, PORT/tls, PORT/none)");
		return -1;
	}
	if (!slash) {
		/* 465 is the submissions port (RFC 8314): implicit TLS. */
		out->mode = out->port == 465 ? CONF_TLS_IMPLICIT : CONF_TLS_STARTTLS;
		return 0;
	}
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		if (strcasecmp(slash + 1, modes[i].name) == 0) {
			out->mode = modes[i].mode;
			return 0;
		}
	}
	snprintf(err, errlen, "unknown TLS mode \"%.50s\" (use starttls, tls or none)", slash + 1);
	return -1;
}

/* Split "ADDR:PORT" / "[ADDR6]:PORT" into host (copied) and port text. */
static int conf_split_hostport(const char *s, char *host, size_t size, const char **port,
    int *family, char *err, size_t errlen)
{
	const char *h = s, *e;

	if (s[0] == '[') {
		h = s + 1;
		e = strchr(h, ']');
		if (!e || e[1] != ':') {
			snprintf(err, errlen, "use [IPV6-ADDRESS]:PORT, e.g. [::1]:25");
			return -1;
		}
		*port = e + 2;
		*family = AF_INET6;
	} else {
		e = strrchr(s, ':');
		if (!e) {
			snprintf(err, errlen, "missing port (use ADDRESS:PORT, e.g. 127.0.0.1:25 or [::1]:25)");
			return -1;
		}
		if (memchr(s, ':', (size_t)(e - s))) {
			snprintf(err, errlen, "IPv6 addresses go in brackets, e.g. [::1]:25");
			return -1;
		}
		*port = e + 1;
		*family = AF_INET;
	}
	if (e == h || (size_t)(e - h) >= size) {
		snprintf(err, errlen, "missing or too long address");
		return -1;
	}
	memcpy(host, h, (size_t)(e - h));
	host[e - h] = '\0';
	return 0;
}

int conf_parse_listen(const char *s, struct conf_listen *out, char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL;
	char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
	const char *port;
	unsigned num;
	int family, r;

	if (conf_split_hostport(s, host, sizeof(host), &port, &family, err, errlen) < 0)
		return -1;
	if (conf_parse_portnum(port, strlen(port), &num) < 0) {
		snprintf(err, errlen, "port must be a number 1-65535");
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = family;
	hints.ai_socktype = SOCK_STREAM;
	/* Numeric only: the config must not depend on DNS at start. */
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	r = getaddrinfo(host, port, &hints, &res);
	if (r != 0 || !res || res->ai_addrlen > sizeof(out->addr)) {
		snprintf(err, errlen, "\"%s\" is not a numeric %s address (host names are not resolved)",
		    host, family == AF_INET6 ? "IPv6" : "IPv4");
		if (res)
			freeaddrinfo(res);
		return -1;
	}
	memset(&out->addr, 0, sizeof(out->addr));
	memcpy(&out->addr, res->ai_addr, res->ai_addrlen);
	out->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

int conf_parse_cidr(const char *s, struct conf_cidr *out, bool *host_bits, char *err, size_t errlen)
{
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	char host[INET6_ADDRSTRLEN + 1];
	unsigned long long prefix;
	unsigned max;

	memset(out, 0, sizeof(*out));
	if (n == 0 || n >= sizeof(host))
		goto bad_addr;
	memcpy(host, s, n);
	host[n] = '\0';
	if (inet_pton(AF_INET, host, out->addr) == 1)
		out->family = AF_INET, max = 32;
	else if (inet_pton(AF_INET6, host, out->addr) == 1)
		out->family = AF_INET6, max = 128;
	else
		goto bad_addr;
	prefix = max;
	if (slash && conf_parse_ulong(slash + 1, NULL, max, &prefix) < 0) {
		snprintf(err, errlen, "prefix length must be 0-%u", max);
		return -1;
	}
	out->prefix = (unsigned)prefix;
	*host_bits = false;
	for (unsigned bit = out->prefix; bit < max; bit++) {
		unsigned char mask = (unsigned char)(0x80 >> (bit % 8));
		if (out->addr[bit / 8] & mask)
			*host_bits = true;
		out->addr[bit / 8] &= (unsigned char)~mask;
	}
	return 0;
bad_addr:
	snprintf(err, errlen, "not an IPv4 or IPv6 network (use e.g. 127.0.0.0/8 or ::1/128)");
	return -1;
}

static bool conf_prefix_eq(const unsigned char *a, const unsigned char *b, unsigned prefix)
{
	unsigned bytes = prefix / 8, rest = prefix % 8;

	if (memcmp(a, b, bytes) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[bytes] ^ b[bytes]) & (unsigned char)(0xff << (8 - rest))) == 0;
}

bool conf_cidr_match(const struct conf_cidr *n, const struct sockaddr *sa)
{
	static const unsigned char mapped[12] = { 0,0,0,0, 0,0,0,0, 0,0,0xff,0xff };
	const unsigned char *a;

	if (sa->sa_family == AF_INET) {
		a = (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
		return n->family == AF_INET && conf_prefix_eq(a, n->addr, n->prefix);
	}
	if (sa->sa_family != AF_INET6)
		return false;
	a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
	if (n->family == AF_INET6)
		return conf_prefix_eq(a, n->addr, n->prefix);
	/* An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d. */
	return memcmp(a, mapped, sizeof(mapped)) == 0 && conf_prefix_eq(a + 12, n->addr, n->prefix);
}
