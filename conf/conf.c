#include "config.h"
#include "conf/conf.h"

#include <arpa/inet.h>
#include <confuse.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/addr.h"
#include "lib/buf.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "conf/cint.h"
#include "conf/hostdefaults.h"

#define CONF_MAX_FILE (4 * 1024 * 1024)
#define CONF_ERRLEN 512
#define CONF_MAX_MSGS 200
/* A hidden list option with a default: libconfuse parses the default when a
 * smarthost section opens, which is the only moment its line is known. */
#define CONF_SECTION_LINE "_smtprelay_section_line"

/* libconfuse keeps no line numbers: the validate callbacks note where each
 * value (each list element) was written while parsing. */
struct conf_line {
	const cfg_t *sec;
	char *key;
	unsigned idx;
	int line;
};

struct conf_msg {
	int line;
	char *text;
};

struct conf_ctx {
	const char *path;
	struct conf_msg *msgs;		/* problems, in the order found */
	size_t nmsgs;
	unsigned nerrors;
	struct conf_line *lines;
	size_t nlines;
	size_t last;			/* index of the last line noted + 1 */
	int unknown_line;		/* line of the last unknown key */
};

/* libconfuse callbacks carry no user pointer; conf_load is not reentrant. */
static struct conf_ctx *conf_cur;

/* ---- errors ---- */

static void conf_verr(struct conf_ctx *x, int line, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));
static void conf_err(struct conf_ctx *x, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void conf_bad(struct conf_ctx *x, int line, const char *key, const char *value,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void conf_verr(struct conf_ctx *x, int line, const char *fmt, va_list ap)
{
	char msg[CONF_ERRLEN];
	struct conf_msg *v;

	x->nerrors++;
	if (x->nmsgs >= CONF_MAX_MSGS)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* One problem per line, whatever the config file contained. */
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	v = realloc(x->msgs, (x->nmsgs + 1) * sizeof(*v));
	if (!v)
		return;
	x->msgs = v;
	v[x->nmsgs].line = line;
	v[x->nmsgs].text = strdup(msg);
	if (v[x->nmsgs].text)
		x->nmsgs++;
}

static void conf_err(struct conf_ctx *x, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	conf_verr(x, line, fmt, ap);
	va_end(ap);
}

/* "KEY: "VALUE": what is wrong (what is accepted)" */
static void conf_bad(struct conf_ctx *x, int line, const char *key, const char *value,
    const char *fmt, ...)
{
	char msg[CONF_ERRLEN];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	conf_err(x, line, "%s: \"%.200s\": %s", key, value, msg);
}

static void conf_oom(struct conf_ctx *x)
{
	conf_err(x, 0, "%s", strerror(ENOMEM));
}

/* Append b to the caller's *errors (NULL or malloc'd). */
void conf_errors_out(struct buf *b, char **errors)
{
	size_t old;
	char *p;

	if (!errors || b->len == 0)
		return;
	if (!*errors) {
		*errors = buf_steal(b);
		return;
	}
	old = strlen(*errors);
	p = realloc(*errors, old + b->len + 1);
	if (!p)
		return;
	memcpy(p + old, b->data, b->len + 1);
	*errors = p;
}

/* "FILE:LINE: message" lines in file order. */
static void conf_msgs_out(struct conf_ctx *x, char **errors)
{
	struct buf b;

	/* Insertion sort: stable, so one line's problems keep their order. */
	for (size_t i = 1; i < x->nmsgs; i++)
		for (size_t j = i; j > 0 && x->msgs[j - 1].line > x->msgs[j].line; j--) {
			struct conf_msg t = x->msgs[j];
			x->msgs[j] = x->msgs[j - 1];
			x->msgs[j - 1] = t;
		}
	buf_init(&b, CONF_MAX_ERRORS);
	for (size_t i = 0; i < x->nmsgs; i++) {
		if (x->msgs[i].line > 0)
			buf_printf(&b, "%s:%d: %s\n", x->path, x->msgs[i].line, x->msgs[i].text);
		else
			buf_printf(&b, "%s: %s\n", x->path, x->msgs[i].text);
	}
	if (x->nmsgs == 0)
		buf_printf(&b, "%s: %s\n", x->path, strerror(ENOMEM));
	conf_errors_out(&b, errors);
	buf_free(&b);
}

/* ---- line bookkeeping ---- */

static struct conf_line *conf_line_find(struct conf_ctx *x, const cfg_t *sec,
    const char *key, unsigned idx)
{
	for (size_t i = 0; i < x->nlines; i++) {
		struct conf_line *l = &x->lines[i];
		if (l->sec == sec && l->idx == idx && strcmp(l->key, key) == 0)
			return l;
	}
	return NULL;
}

static void conf_line_set(struct conf_ctx *x, const cfg_t *sec, const char *key,
    unsigned idx, int line)
{
	struct conf_line *l = conf_line_find(x, sec, key, idx), *v;

	if (!l) {
		char *k = strdup(key);
		v = k ? realloc(x->lines, (x->nlines + 1) * sizeof(*v)) : NULL;
		if (!v) {
			free(k);
			return;		/* only a line number is lost */
		}
		x->lines = v;
		l = &x->lines[x->nlines++];
		l->sec = sec;
		l->key = k;
		l->idx = idx;
	}
	l->line = line;
	x->last = (size_t)(l - x->lines) + 1;
}

/* Line of a value; falls back to the first element, then the section. */
static int conf_line_of(struct conf_ctx *x, const cfg_t *sec, const char *key, unsigned idx)
{
	struct conf_line *l = conf_line_find(x, sec, key, idx);

	if (!l && idx > 0)
		l = conf_line_find(x, sec, key, 0);
	if (!l)
		l = conf_line_find(x, sec, CONF_SECTION_LINE, 0);
	return l ? l->line : 0;
}

static int conf_note_line(cfg_t *cfg, cfg_opt_t *opt)
{
	struct conf_ctx *x = conf_cur;
	unsigned idx;

	if (!x || opt->nvalues == 0)
		return 0;
	idx = opt->nvalues - 1;
	/* A list's closing brace repeats the callback for its last element. */
	if ((opt->flags & CFGF_LIST) && x->last > 0) {
		struct conf_line *l = &x->lines[x->last - 1];
		if (l->sec == cfg && l->idx == idx && strcmp(l->key, opt->name) == 0)
			return 0;
	}
	conf_line_set(x, cfg, opt->name, idx, cfg->line);
	return 0;
}

static void conf_unknown_key(struct conf_ctx *x, cfg_t *cfg, const char *name)
{
	conf_line_set(x, cfg, name, 0, cfg->line);
	/* libconfuse 3.3 reports every free-form key of the aliases block. */
	if (strcmp(cfg->name, "aliases") == 0)
		return;
	x->unknown_line = cfg->line;
	if (cfg->title)
		conf_err(x, cfg->line, "unknown key \"%.100s\" in %s \"%.100s\" "
		    "(see smtprelay.conf(5))", name, cfg->name, cfg->title);
	else
		conf_err(x, cfg->line, "unknown key \"%.100s\" (see smtprelay.conf(5))", name);
}

static void conf_confuse_err(cfg_t *cfg, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

static void conf_confuse_err(cfg_t *cfg, const char *fmt, va_list ap)
{
	struct conf_ctx *x = conf_cur;
	char msg[CONF_ERRLEN];

	if (!x)
		return;
	if (strcmp(fmt, "no such option '%s'") == 0) {
		va_list ap2;
		va_copy(ap2, ap);
		conf_unknown_key(x, cfg, va_arg(ap2, const char *));
		va_end(ap2);
		return;
	}
	/* What follows an unknown key ("missing equal sign", "unexpected
	 * token") only repeats that problem. */
	if (cfg->line == x->unknown_line)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	conf_err(x, cfg->line, "%s", msg);
}

/* ---- preprocessing ---- */

/* The text libconfuse sees is rewritten first, keeping every newline:
 * - comments become blanks: libconfuse 3.3 counts three lines for each
 *   comment line and rejects a comment inside a list;
 * - "${" is made literal: libconfuse would substitute environment
 *   variables, and the setgid front end must not let its caller's
 *   environment change root's configuration (nor mangle a password that
 *   happens to contain "${"). */
struct conf_pp {
	const char *p;
	char *out;
	size_t n;
};

static void conf_pp_quoted(struct conf_pp *x)
{
	char q = *x->p;

	x->out[x->n++] = *x->p++;
	for (; *x->p && *x->p != q; x->p++) {
		if (q == '"' && x->p[0] == '$' && x->p[1] == '{') {
			memcpy(x->out + x->n, "$\\{", 3);
			x->n += 3;
			x->p++;
			continue;
		}
		if (*x->p == '\\' && x->p[1])
			x->out[x->n++] = *x->p++;
		x->out[x->n++] = *x->p;
	}
	if (*x->p)
		x->out[x->n++] = *x->p++;
}

/* Unquoted ${...}: becomes the literal string "${...}". */
static void conf_pp_dollar(struct conf_pp *x)
{
	const char *e = strchr(x->p, '}');
	size_t len = e ? (size_t)(e - x->p) - 2 : strlen(x->p) - 2;

	memcpy(x->out + x->n, "\"$\\{", 4);
	x->n += 4;
	x->p += 2;
	for (size_t i = 0; i < len; i++, x->p++) {
		if (*x->p == '"' || *x->p == '\\')
			x->out[x->n++] = '\\';
		x->out[x->n++] = *x->p;
	}
	if (e) {
		x->out[x->n++] = '}';
		x->p++;
	}
	x->out[x->n++] = '"';
}

static void conf_pp_blank(struct conf_pp *x, const char *end)
{
	size_t elen = strlen(end);

	while (*x->p && strncmp(x->p, end, elen) != 0)
		x->out[x->n++] = *x->p++ == '\n' ? '\n' : ' ';
	for (size_t i = 0; elen > 1 && *x->p && i < elen; i++, x->p++)
		x->out[x->n++] = ' ';
}

static char *conf_preprocess(const char *text, size_t len)
{
	/* Worst case: "${" -> "\"$\\{", "}" -> "}\"", a quote inside -> 2 bytes. */
	struct conf_pp x = { text, malloc(3 * len + 1), 0 };

	if (!x.out)
		return NULL;
	while (*x.p) {
		if (*x.p == '"' || *x.p == '\'') {
			conf_pp_quoted(&x);
		} else if (x.p[0] == '$' && x.p[1] == '{') {
			conf_pp_dollar(&x);
		} else if (*x.p == '#' || (x.p[0] == '/' && x.p[1] == '/')) {
			conf_pp_blank(&x, "\n");
		} else if (x.p[0] == '/' && x.p[1] == '*') {
			x.p += 2;
			x.out[x.n++] = ' ';
			x.out[x.n++] = ' ';
			conf_pp_blank(&x, "*/");
		} else {
			x.out[x.n++] = *x.p++;
		}
	}
	x.out[x.n] = '\0';
	return x.out;
}

/* ---- option tables ---- */

/* Every value is read as a string and converted here, so that a wrong type
 * is one more collected error (with a useful message), not a parse abort. */
static const char *const conf_root_keys[] = {
	"hostname", "spool_dir", "user", "smtpd_timeout", "max_message_size",
	"max_recipients", "max_connections", "admin_address", "aliases_file",
	"from_address", "rewrite_from_header", "retry_min", "retry_max",
	"queue_lifetime", "metrics_listen", "metrics_textfile", NULL
};
static const char *const conf_root_lists[] = { "listen", "allow_networks", NULL };
static const char *const conf_sh_keys[] = {
	"host", "username", "password", "password_file", "password_command",
	"tls_verify", "tls_ca_file", "tls_min_version", "tls_fingerprint",
	"connect_timeout", "command_timeout", "max_connections",
	"max_messages_per_connection", "rate_limit", "oauth2_token_url",
	"oauth2_client_id", "oauth2_client_secret_file", "oauth2_refresh_token_file",
	"oauth2_scope", NULL
};
static const char *const conf_sh_lists[] = { "ports", "auth", "senders", CONF_SECTION_LINE,
	NULL };
static const char *const conf_dkim_keys[] = { "selector", "key_file", NULL };
static const char *const conf_dkim_lists[] = { "headers", CONF_SECTION_LINE, NULL };

static bool conf_known(const char *const *keys, const char *name)
{
	for (size_t i = 0; keys[i]; i++)
		if (strcmp(keys[i], name) == 0)
			return true;
	return false;
}

/* Fill opts from the key tables; returns the number of entries used. */
static size_t conf_opts_fill(cfg_opt_t *opts, const char *const *keys, const char *const *lists)
{
	static const cfg_opt_t str = CFG_STR("x", NULL, CFGF_NONE);
	static const cfg_opt_t list = CFG_STR_LIST("x", NULL, CFGF_NONE);
	size_t n = 0;

	for (size_t i = 0; keys[i]; i++) {
		opts[n] = str;
		opts[n++].name = keys[i];
	}
	for (size_t i = 0; lists[i]; i++) {
		opts[n] = list;
		opts[n++].name = lists[i];
	}
	return n;
}

#define CONF_NOPTS 32

struct conf_opts {
	cfg_opt_t root[CONF_NOPTS];
	cfg_opt_t sh[CONF_NOPTS];
	cfg_opt_t dkim[8];
	cfg_opt_t aliases[1];
};

static void conf_opts_init(struct conf_opts *o)
{
	static const cfg_opt_t end = CFG_END();
	cfg_opt_t aliases = CFG_SEC("aliases", o->aliases, CFGF_KEYSTRVAL);
	cfg_opt_t sh = CFG_SEC("smarthost", o->sh, CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES);
	/* Title dupes allowed: two selectors for one domain dual-sign. */
	cfg_opt_t dkim = CFG_SEC("dkim", o->dkim, CFGF_MULTI | CFGF_TITLE);
	size_t n;

	o->aliases[0] = end;
	n = conf_opts_fill(o->sh, conf_sh_keys, conf_sh_lists);
	o->sh[n - 1].def.parsed = (char *)"{0}";
	o->sh[n] = end;
	n = conf_opts_fill(o->dkim, conf_dkim_keys, conf_dkim_lists);
	o->dkim[n - 1].def.parsed = (char *)"{0}";
	o->dkim[n] = end;
	n = conf_opts_fill(o->root, conf_root_keys, conf_root_lists);
	o->root[n++] = aliases;
	o->root[n++] = sh;
	o->root[n++] = dkim;
	o->root[n] = end;
}

static void conf_set_validators(cfg_t *cfg)
{
	char path[64];

	for (const char *const *k = conf_root_keys; *k; k++)
		cfg_set_validate_func(cfg, *k, conf_note_line);
	for (const char *const *k = conf_root_lists; *k; k++)
		cfg_set_validate_func(cfg, *k, conf_note_line);
	for (const char *const *k = conf_sh_keys; *k; k++) {
		snprintf(path, sizeof(path), "smarthost|%s", *k);
		cfg_set_validate_func(cfg, path, conf_note_line);
	}
	for (const char *const *k = conf_sh_lists; *k; k++) {
		snprintf(path, sizeof(path), "smarthost|%s", *k);
		cfg_set_validate_func(cfg, path, conf_note_line);
	}
	for (const char *const *k = conf_dkim_keys; *k; k++) {
		snprintf(path, sizeof(path), "dkim|%s", *k);
		cfg_set_validate_func(cfg, path, conf_note_line);
	}
	for (const char *const *k = conf_dkim_lists; *k; k++) {
		snprintf(path, sizeof(path), "dkim|%s", *k);
		cfg_set_validate_func(cfg, path, conf_note_line);
	}
	cfg_set_validate_func(cfg, "aliases", conf_note_line);
}

/* ---- typed getters: a missing key gives the default ---- */

static int conf_key_line(struct conf_ctx *x, cfg_t *sec, const char *key)
{
	return conf_line_of(x, sec, key, 0);
}

static void conf_get_uint(struct conf_ctx *x, cfg_t *sec, const char *key, unsigned def,
    unsigned *out)
{
	const char *v = cfg_getstr(sec, key);
	unsigned long long n;

	*out = def;
	if (!v)
		return;
	if (conf_parse_ulong(v, NULL, UINT_MAX, &n) < 0 || n == 0) {
		conf_bad(x, conf_key_line(x, sec, key), key, v,
		    "not a positive whole number (e.g. %u)", def);
		return;
	}
	*out = (unsigned)n;
}

static void conf_get_duration(struct conf_ctx *x, cfg_t *sec, const char *key, unsigned def,
    unsigned *out)
{
	const char *v = cfg_getstr(sec, key);
	long n;

	*out = def;
	if (!v)
		return;
	n = conf_parse_duration(v);
	if (n <= 0 || (unsigned long)n > UINT_MAX) {
		conf_bad(x, conf_key_line(x, sec, key), key, v, "%s", n == 0 ?
		    "must be more than 0 seconds" : "not a duration (use seconds, or a "
		    "number with s, m, h or d, e.g. 300 or 5m)");
		return;
	}
	*out = (unsigned)n;
}

static void conf_get_size(struct conf_ctx *x, cfg_t *sec, const char *key, size_t def,
    size_t *out)
{
	const char *v = cfg_getstr(sec, key);

	*out = def;
	if (!v)
		return;
	if (conf_parse_size(v, out) < 0 || *out == 0) {
		*out = def;
		conf_bad(x, conf_key_line(x, sec, key), key, v,
		    "not a positive size in bytes (e.g. %zu; k, M and G suffixes allowed)", def);
	}
}

static void conf_get_bool(struct conf_ctx *x, cfg_t *sec, const char *key, bool def, bool *out)
{
	const char *v = cfg_getstr(sec, key);

	*out = def;
	if (v && conf_parse_bool(v, out) < 0) {
		*out = def;
		conf_bad(x, conf_key_line(x, sec, key), key, v, "use true or false");
	}
}

/* Optional string: absent or "" leaves *out NULL. */
static const char *conf_get_str(struct conf_ctx *x, cfg_t *sec, const char *key, char **out)
{
	const char *v = cfg_getstr(sec, key);

	*out = NULL;
	if (!v || !*v)
		return NULL;
	*out = strdup(v);
	if (!*out)
		conf_oom(x);
	return *out;
}

static void conf_get_path(struct conf_ctx *x, cfg_t *sec, const char *key, bool relative_ok,
    char **out)
{
	const char *v = conf_get_str(x, sec, key, out);

	if (v && !relative_ok && v[0] != '/')
		conf_bad(x, conf_key_line(x, sec, key), key, v,
		    "must be an absolute path (starting with /)");
}

/* A full address (local@domain) such as admin_address. */
static void conf_get_addr(struct conf_ctx *x, cfg_t *sec, const char *key, char **out)
{
	const char *v = conf_get_str(x, sec, key, out);

	if (v && (!addr_valid(v, ADDR_ALLOW_UTF8) || !addr_domain(v)))
		conf_bad(x, conf_key_line(x, sec, key), key, v,
		    "not a valid address (use local@domain, e.g. ops@example.com)");
}

/* A list key's elements, or the defaults when the key is absent ({} is
 * present and empty). */
struct conf_list {
	cfg_t *sec;
	cfg_opt_t *opt;
	const char *const *defs;
	size_t n;
	bool given;
};

static void conf_list_open(struct conf_list *l, cfg_t *sec, const char *key,
    const char *const *defs, size_t ndefs)
{
	l->sec = sec;
	l->opt = cfg_getopt(sec, key);
	l->defs = defs;
	l->given = l->opt && (l->opt->flags & CFGF_MODIFIED);
	l->n = l->given ? cfg_opt_size(l->opt) : ndefs;
}

static const char *conf_list_at(const struct conf_list *l, size_t i)
{
	const char *v = l->given ? cfg_opt_getnstr(l->opt, (unsigned)i) : l->defs[i];

	return v ? v : "";
}

/* ---- the main section ---- */

/* The host's FQDN, as Postfix's myhostname: gethostname(), made canonical. */
static char *conf_default_hostname(void)
{
	struct addrinfo hints, *res = NULL;
	char name[HOST_NAME_MAX + 1];
	char *r = NULL;

	if (gethostname(name, sizeof(name)) < 0)
		return strdup("localhost");
	name[sizeof(name) - 1] = '\0';
	/* Already qualified: no resolver round trip on every sendmail call. */
	if (strchr(name, '.') && addr_valid_domain(name, false))
		return strdup(name);
	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = AI_CANONNAME;
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(name, NULL, &hints, &res) == 0 && res && res->ai_canonname &&
	    addr_valid_domain(res->ai_canonname, false) &&
	    strncasecmp(res->ai_canonname, "localhost", 9) != 0)
		r = strdup(res->ai_canonname);
	if (res)
		freeaddrinfo(res);
	return r ? r : strdup(name);
}

static void conf_build_hostname(struct conf_ctx *x, cfg_t *cfg, struct config *c)
{
	const char *v = cfg_getstr(cfg, "hostname");

	if (!v) {
		/* Debian: /etc/mailname names the host's mail domain (smtprelay.conf(5)). */
		c->hostname = hostdefaults_mailname();
		if (!c->hostname)
			c->hostname = conf_default_hostname();
		if (!c->hostname)
			conf_oom(x);
		return;
	}
	if (!addr_valid_domain(v, false)) {
		conf_bad(x, conf_key_line(x, cfg, "hostname"), "hostname", v,
		    "not a valid host name (use a fully qualified name, e.g. vm1.example.com)");
		return;
	}
	c->hostname = strdup(v);
	if (!c->hostname)
		conf_oom(x);
}

static void conf_build_listen(struct conf_ctx *x, cfg_t *cfg, struct config *c)
{
	static const char *const defs[] = { "127.0.0.1:25", "[::1]:25" };
	char err[CONF_ERRLEN];
	struct conf_list l;

	conf_list_open(&l, cfg, "listen", defs, 2);
	c->listen = calloc(l.n ? l.n : 1, sizeof(*c->listen));
	if (!c->listen) {
		conf_oom(x);
		return;
	}
	for (size_t i = 0; i < l.n; i++) {
		const char *v = conf_list_at(&l, i);
		struct conf_listen *e = &c->listen[c->nlisten];
		if (conf_parse_listen(v, e, err, sizeof(err)) < 0) {
			conf_bad(x, conf_line_of(x, cfg, "listen", (unsigned)i), "listen", v, "%s", err);
			continue;
		}
		e->spec = strdup(v);
		if (!e->spec) {
			conf_oom(x);
			return;
		}
		/* Only what the admin did not ask for may be missing (smtprelay.conf(5)). */
		e->optional = !l.given && e->addr.ss_family == AF_INET6;
		c->nlisten++;
	}
}

static void conf_warn_host_bits(struct conf_ctx *x, int line, const char *v,
    const struct conf_cidr *n)
{
	char text[INET6_ADDRSTRLEN];

	if (!inet_ntop(n->family, n->addr, text, sizeof(text)))
		return;
	log_warn("%s:%d: allow_networks: \"%s\" has host bits set; using %s/%u",
	    x->path, line, v, text, n->prefix);
}

static void conf_build_allow(struct conf_ctx *x, cfg_t *cfg, struct config *c)
{
	static const char *const defs[] = { "127.0.0.0/8", "::1/128" };
	char err[CONF_ERRLEN];
	struct conf_list l;
	bool host_bits;

	conf_list_open(&l, cfg, "allow_networks", defs, 2);
	c->allow = calloc(l.n ? l.n : 1, sizeof(*c->allow));
	if (!c->allow) {
		conf_oom(x);
		return;
	}
	for (size_t i = 0; i < l.n; i++) {
		const char *v = conf_list_at(&l, i);
		int line = conf_line_of(x, cfg, "allow_networks", (unsigned)i);
		if (conf_parse_cidr(v, &c->allow[c->nallow], &host_bits, err, sizeof(err)) < 0) {
			conf_bad(x, line, "allow_networks", v, "%s", err);
			continue;
		}
		if (host_bits)
			conf_warn_host_bits(x, line, v, &c->allow[c->nallow]);
		c->nallow++;
	}
}

/* A key with a default that may not be set to "". */
static void conf_get_nonempty(struct conf_ctx *x, cfg_t *sec, const char *key, const char *def,
    char **out)
{
	const char *v = cfg_getstr(sec, key);

	if (v && !*v) {
		conf_bad(x, conf_key_line(x, sec, key), key, v, "must not be empty (default: %s)", def);
		v = NULL;
	}
	*out = strdup(v ? v : def);
	if (!*out)
		conf_oom(x);
}

static void conf_build_paths(struct conf_ctx *x, cfg_t *cfg, struct config *c)
{
	conf_get_nonempty(x, cfg, "spool_dir", SPOOLDIR, &c->spool_dir);
	if (c->spool_dir && c->spool_dir[0] != '/')
		conf_bad(x, conf_key_line(x, cfg, "spool_dir"), "spool_dir", c->spool_dir,
		    "must be an absolute path (starting with /)");
	conf_get_nonempty(x, cfg, "user", SMTPRELAY_USER, &c->user);
	if (c->user && (c->user[0] == '-' || c->user[strcspn(c->user, "/:, \t")] != '\0'))
		conf_bad(x, conf_key_line(x, cfg, "user"), "user", c->user, "not a user name");
	conf_get_path(x, cfg, "aliases_file", false, &c->aliases_file);
	/* Unset: /etc/aliases when it exists; "" means none. */
	if (!cfg_getstr(cfg, "aliases_file"))
		c->aliases_file = hostdefaults_aliases();
}

static void conf_build_numbers(struct conf_ctx *x, cfg_t *cfg, struct config *c)
{
	conf_get_duration(x, cfg, "smtpd_timeout", 300, &c->smtpd_timeout);
	conf_get_size(x, cfg, "max_message_size", 36700160, &c->max_message_size);
	conf_get_uint(x, cfg, "max_recipients", 1000, &c->max_recipients);
	conf_get_uint(x, cfg, "max_connections", 64, &c->max_connections);
	conf_get_duration(x, cfg, "retry_min", 300, &c->retry_min);
	conf_get_duration(x, cfg, "retry_max", 3600, &c->retry_max);
	conf_get_duration(x, cfg, "queue_lifetime", 432000, &c->queue_lifetime);
	if (c->retry_min > c->retry_max) {
		const char *key = cfg_getstr(cfg, "retry_min") ? "retry_min" : "retry_max";
		conf_err(x, conf_key_line(x, cfg, key), "%s: retry_min (%u s) is more than "
		    "retry_max (%u s)", key, c->retry_min, c->retry_max);
	}
}

/* Prometheus exposition (README "Monitoring"): an address to serve it on, a file to
 * rewrite; both off by default. */
static void conf_build_metrics(struct conf_ctx *x, cfg_t *cfg, struct config *c)
{
	const char *v = cfg_getstr(cfg, "metrics_listen");
	char err[CONF_ERRLEN];

	if (v && *v) {
		if (conf_parse_listen(v, &c->metrics_listen, err, sizeof(err)) < 0)
			conf_bad(x, conf_key_line(x, cfg, "metrics_listen"), "metrics_listen", v,
			    "%s (e.g. \"127.0.0.1:9465\")", err);
		else if (!(c->metrics_listen.spec = strdup(v)))
			conf_oom(x);
	}
	v = cfg_getstr(cfg, "metrics_textfile");
	if (v && *v)
		conf_get_path(x, cfg, "metrics_textfile", false, &c->metrics_textfile);
}

static void conf_build_root(struct conf_ctx *x, cfg_t *cfg, struct config *c)
{
	conf_build_hostname(x, cfg, c);
	conf_build_listen(x, cfg, c);
	conf_build_allow(x, cfg, c);
	conf_build_paths(x, cfg, c);
	conf_build_numbers(x, cfg, c);
	conf_get_addr(x, cfg, "admin_address", &c->admin_address);
	conf_get_addr(x, cfg, "from_address", &c->from_address);
	conf_get_bool(x, cfg, "rewrite_from_header", false, &c->rewrite_from_header);
	conf_build_metrics(x, cfg, c);
	/* Mail to local names goes to admin_address: it must leave the host. */
	if (c->admin_address && c->hostname && addr_valid(c->admin_address, ADDR_ALLOW_UTF8) &&
	    addr_is_local(c->admin_address, c->hostname))
		conf_bad(x, conf_key_line(x, cfg, "admin_address"), "admin_address",
		    c->admin_address, "must be a remote address, not a local name");
}

/* ---- smarthost sections ---- */

static bool conf_sh_name_ok(const char *name)
{
	if (!name || !*name || strlen(name) > 64)
		return false;
	for (const char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
			return false;
	return true;
}

static void conf_build_host(struct conf_ctx *x, cfg_t *sec, struct conf_smarthost *sh)
{
	unsigned char tmp[16];
	const char *v = conf_get_str(x, sec, "host", &sh->host);

	if (!v) {
		conf_err(x, sh->line, "smarthost \"%s\": host is missing "
		    "(e.g. host = \"smtp.example.com\")", sh->name);
		return;
	}
	if (!addr_valid_domain(v, false) && inet_pton(AF_INET6, v, tmp) != 1)
		conf_bad(x, conf_key_line(x, sec, "host"), "host", v,
		    "not a valid host name or IP address");
}

static void conf_build_ports(struct conf_ctx *x, cfg_t *sec, struct conf_smarthost *sh)
{
	static const char *const defs[] = { "587", "465" };
	char err[CONF_ERRLEN];
	struct conf_list l;

	conf_list_open(&l, sec, "ports", defs, 2);
	if (l.n == 0) {
		conf_err(x, conf_key_line(x, sec, "ports"), "ports: empty (e.g. {\"587\", \"465\"})");
		return;
	}
	sh->ports = calloc(l.n, sizeof(*sh->ports));
	if (!sh->ports) {
		conf_oom(x);
		return;
	}
	for (size_t i = 0; i < l.n; i++) {
		const char *v = conf_list_at(&l, i);
		int line = conf_line_of(x, sec, "ports", (unsigned)i);
		struct conf_port *p = &sh->ports[sh->nports];
		if (conf_parse_port(v, p, err, sizeof(err)) < 0) {
			conf_bad(x, line, "ports", v, "%s", err);
			continue;
		}
		for (size_t j = 0; j < sh->nports; j++)
			if (sh->ports[j].port == p->port) {
				conf_bad(x, line, "ports", v, "port %u is listed twice", p->port);
				break;
			}
		sh->nports++;
	}
}

static void conf_build_auth(struct conf_ctx *x, cfg_t *sec, struct conf_smarthost *sh)
{
	static const struct { const char *name; unsigned bit; } mechs[] = {
		{ "plain", SASL_PLAIN }, { "login", SASL_LOGIN },
		{ "xoauth2", SASL_XOAUTH2 }, { "oauthbearer", SASL_OAUTHBEARER },
	};
	struct conf_list l;

	conf_list_open(&l, sec, "auth", NULL, 0);
	for (size_t i = 0; i < l.n; i++) {
		const char *v = conf_list_at(&l, i);
		size_t m;
		for (m = 0; m < sizeof(mechs) / sizeof(mechs[0]); m++)
			if (strcasecmp(v, mechs[m].name) == 0)
				break;
		if (m == sizeof(mechs) / sizeof(mechs[0])) {
			conf_bad(x, conf_line_of(x, sec, "auth", (unsigned)i), "auth", v,
			    "unknown mechanism (use plain, login, xoauth2 or oauthbearer)");
			continue;
		}
		sh->auth_mechs |= mechs[m].bit;
	}
}

static void conf_build_tls(struct conf_ctx *x, cfg_t *sec, struct conf_smarthost *sh)
{
	const char *v;

	conf_get_bool(x, sec, "tls_verify", true, &sh->tls_verify);
	conf_get_path(x, sec, "tls_ca_file", false, &sh->tls_ca_file);
	sh->tls_min_version = 0x0303;
	v = cfg_getstr(sec, "tls_min_version");
	if (v && *v) {
		const char *n = strncasecmp(v, "TLSv", 4) == 0 ? v + 4 : v;
		if (strcmp(n, "1.2") == 0)
			sh->tls_min_version = 0x0303;
		else if (strcmp(n, "1.3") == 0)
			sh->tls_min_version = 0x0304;
		else
			conf_bad(x, conf_key_line(x, sec, "tls_min_version"), "tls_min_version", v,
			    "use \"1.2\" or \"1.3\"");
	}
	v = cfg_getstr(sec, "tls_fingerprint");
	if (v && *v) {
		if (conf_parse_fingerprint(v, sh->fingerprint) == 0)
			sh->has_fingerprint = true;
		else
			conf_bad(x, conf_key_line(x, sec, "tls_fingerprint"), "tls_fingerprint", v,
			    "use \"sha256:\" and 64 hex digits (colons between bytes allowed)");
	}
}

static void conf_build_limits(struct conf_ctx *x, cfg_t *sec, struct conf_smarthost *sh)
{
	const char *v;

	conf_get_duration(x, sec, "connect_timeout", 30, &sh->connect_timeout);
	conf_get_duration(x, sec, "command_timeout", 300, &sh->command_timeout);
	conf_get_uint(x, sec, "max_connections", 4, &sh->max_connections);
	conf_get_uint(x, sec, "max_messages_per_connection", 100,
	    &sh->max_messages_per_connection);
	v = cfg_getstr(sec, "rate_limit");
	if (v) {
		sh->rate_per_sec = conf_parse_rate(v);
		if (conf_parse_rate_window(v, &sh->rate_count, &sh->rate_window) < 0 ||
		    sh->rate_per_sec < 0) {
			sh->rate_per_sec = 0;
			conf_bad(x, conf_key_line(x, sec, "rate_limit"), "rate_limit", v,
			    "use N/s, N/min or N/h (e.g. \"14/s\"), or \"0\" for no limit");
		}
	}
}

static void conf_build_credentials(struct conf_ctx *x, cfg_t *sec, struct conf_smarthost *sh)
{
	conf_get_str(x, sec, "username", &sh->username);
	conf_get_str(x, sec, "password", &sh->password);
	conf_get_path(x, sec, "password_file", true, &sh->password_file);
	conf_get_str(x, sec, "password_command", &sh->password_command);
	conf_get_str(x, sec, "oauth2_token_url", &sh->oauth2_token_url);
	conf_get_str(x, sec, "oauth2_client_id", &sh->oauth2_client_id);
	conf_get_path(x, sec, "oauth2_client_secret_file", true, &sh->oauth2_client_secret_file);
	conf_get_path(x, sec, "oauth2_refresh_token_file", false, &sh->oauth2_refresh_token_file);
	conf_get_str(x, sec, "oauth2_scope", &sh->oauth2_scope);
}

static void conf_check_password(struct conf_ctx *x, cfg_t *sec, struct conf_smarthost *sh)
{
	const char *keys[] = { "password", "password_file", "password_command" };
	const bool set[] = { sh->password, sh->password_file, sh->password_command };
	const char *last = NULL;
	int n = 0;

	for (size_t i = 0; i < 3; i++)
		if (set[i]) {
			n++;
			last = keys[i];
		}
	if (n > 1)
		conf_err(x, conf_key_line(x, sec, last), "%s: smarthost \"%s\" sets more than one "
		    "of password, password_file and password_command (keep one)", last, sh->name);
	if (n > 0 && sh->oauth2_token_url)
		conf_err(x, conf_key_line(x, sec, "oauth2_token_url"), "oauth2_token_url: use "
		    "either built-in OAuth2 refresh or %s, not both", last);
	if (n > 0 && !sh->username)
		conf_err(x, conf_key_line(x, sec, last), "%s: needs username "
		    "(the account to authenticate as)", last);
	if (sh->username && n == 0 && !sh->oauth2_token_url)
		conf_bad(x, conf_key_line(x, sec, "username"), "username", sh->username,
		    "no password (set password_file, password or password_command)");
	if (sh->auth_mechs && !sh->username)
		conf_err(x, conf_key_line(x, sec, "auth"), "auth: needs username and a password");
}

static void conf_check_oauth2(struct conf_ctx *x, cfg_t *sec, struct conf_smarthost *sh)
{
	const char *keys[] = { "oauth2_client_id", "oauth2_client_secret_file",
	    "oauth2_refresh_token_file", "oauth2_scope" };
	const bool set[] = { sh->oauth2_client_id, sh->oauth2_client_secret_file,
	    sh->oauth2_refresh_token_file, sh->oauth2_scope };
	const unsigned oauth = SASL_XOAUTH2 | SASL_OAUTHBEARER;
	int line = conf_key_line(x, sec, "oauth2_token_url");

	if (!sh->oauth2_token_url) {
		for (size_t i = 0; i < 4; i++)
			if (set[i])
				conf_err(x, conf_key_line(x, sec, keys[i]),
				    "%s: only used with oauth2_token_url", keys[i]);
		return;
	}
	if (strncasecmp(sh->oauth2_token_url, "https://", 8) != 0)
		conf_bad(x, line, "oauth2_token_url", sh->oauth2_token_url,
		    "must be an https:// URL");
	if (!sh->oauth2_client_id || !sh->oauth2_refresh_token_file)
		conf_err(x, line, "oauth2_token_url: needs oauth2_client_id and "
		    "oauth2_refresh_token_file");
	if (sh->username && !sh->auth_mechs)
		sh->auth_mechs = oauth;
	else if (sh->username && !(sh->auth_mechs & oauth))
		conf_err(x, conf_key_line(x, sec, "auth"), "auth: OAuth2 needs xoauth2 or "
		    "oauthbearer");
	else if (!sh->username)
		conf_err(x, line, "oauth2_token_url: needs username (the mailbox to send as)");
}

static void conf_check_smarthost(struct conf_ctx *x, cfg_t *sec, struct conf_smarthost *sh)
{
	bool plain_only = sh->nports > 0;

	conf_check_password(x, sec, sh);
	conf_check_oauth2(x, sec, sh);
	for (size_t i = 0; i < sh->nports; i++)
		if (sh->ports[i].mode != CONF_TLS_NONE)
			plain_only = false;
	if (sh->username && plain_only)
		log_warn("%s:%d: smarthost \"%s\": only /none ports: credentials are never sent "
		    "without TLS, so username is not used", x->path, sh->line, sh->name);
	if (!sh->tls_verify && !sh->has_fingerprint && !plain_only)
		log_warn("%s:%d: smarthost \"%s\": tls_verify = false without tls_fingerprint: "
		    "the server is not authenticated", x->path, sh->line, sh->name);
}

/* senders = {...}: envelope sender patterns this section serves (smtprelay.conf(5) "senders"). */
static void conf_build_senders(struct conf_ctx *x, cfg_t *sec, struct conf_smarthost *sh)
{
	struct conf_list l;

	conf_list_open(&l, sec, "senders", NULL, 0);
	if (l.given && l.n == 0)
		conf_err(x, conf_key_line(x, sec, "senders"), "senders: {} would serve no sender: "
		    "remove the key to serve every sender");
	if (l.n && !(sh->senders = calloc(l.n, sizeof(*sh->senders)))) {
		conf_oom(x);
		return;
	}
	for (size_t i = 0; i < l.n; i++) {
		const char *v = conf_list_at(&l, i), *why = conf_sender_pattern_error(v);

		if (why) {
			conf_bad(x, conf_line_of(x, sec, "senders", (unsigned)i), "senders", v,
			    "%s", why);
			continue;
		}
		if (!(sh->senders[sh->nsenders] = strdup(v))) {
			conf_oom(x);
			return;
		}
		sh->nsenders++;
	}
}

static void conf_build_smarthost(struct conf_ctx *x, cfg_t *sec, struct conf_smarthost *sh)
{
	const char *title = cfg_title(sec);

	sh->line = conf_line_of(x, sec, CONF_SECTION_LINE, 0);
	sh->name = strdup(title ? title : "");
	if (!sh->name) {
		conf_oom(x);
		return;
	}
	if (!conf_sh_name_ok(sh->name))
		conf_err(x, sh->line, "smarthost \"%.100s\": use a name of letters, digits, "
		    "'.', '_' and '-'", sh->name);
	conf_build_host(x, sec, sh);
	conf_build_ports(x, sec, sh);
	conf_build_auth(x, sec, sh);
	conf_build_tls(x, sec, sh);
	conf_build_limits(x, sec, sh);
	conf_build_credentials(x, sec, sh);
	conf_build_senders(x, sec, sh);
	conf_check_smarthost(x, sec, sh);
}

static void conf_build_smarthosts(struct conf_ctx *x, cfg_t *cfg, struct config *c)
{
	unsigned n = cfg_size(cfg, "smarthost");

	if (n == 0)
		return;
	c->smarthosts = calloc(n, sizeof(*c->smarthosts));
	if (!c->smarthosts) {
		conf_oom(x);
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		c->nsmarthosts++;
		conf_build_smarthost(x, cfg_getnsec(cfg, "smarthost", i), &c->smarthosts[i]);
	}
	if (!conf_senders_cover_all(c))
		conf_err(x, c->smarthosts[n - 1].line, "smarthost \"%s\": every smarthost has "
		    "senders, so mail from other senders (and bounces, sent from <>) could go "
		    "nowhere: add a smarthost without senders, or \"*@*\" to the last one's",
		    c->smarthosts[n - 1].name);
}

/* ---- dkim sections (smtprelay.conf(5) "DKIM SECTIONS"; values checked in conf/dkim.c) ---- */

static void conf_build_dkim_headers(struct conf_ctx *x, cfg_t *sec, struct conf_dkim *d)
{
	struct conf_list l;
	size_t ndefs = 0;

	while (conf_dkim_default_headers[ndefs])
		ndefs++;
	conf_list_open(&l, sec, "headers", conf_dkim_default_headers, ndefs);
	if (!(d->headers = calloc(l.n ? l.n : 1, sizeof(*d->headers)))) {
		conf_oom(x);
		return;
	}
	for (size_t i = 0; i < l.n; i++) {
		const char *v = conf_list_at(&l, i);

		if (!conf_dkim_header_ok(v)) {
			conf_bad(x, conf_line_of(x, sec, "headers", (unsigned)i), "headers", v,
			    "not a header field name that can be signed (e.g. \"subject\"; "
			    "not received or dkim-signature)");
			continue;
		}
		if (!(d->headers[d->nheaders] = strdup(v))) {
			conf_oom(x);
			return;
		}
		for (char *p = d->headers[d->nheaders]; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		d->nheaders++;
	}
}

static void conf_build_dkim(struct conf_ctx *x, cfg_t *sec, struct conf_dkim *d)
{
	const char *title = cfg_title(sec);

	d->line = conf_line_of(x, sec, CONF_SECTION_LINE, 0);
	if (!(d->domain = strdup(title ? title : ""))) {
		conf_oom(x);
		return;
	}
	for (char *p = d->domain; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (!addr_valid_domain(d->domain, false) || !strchr(d->domain, '.'))
		conf_err(x, d->line, "dkim \"%.100s\": the title must be the signing domain "
		    "(e.g. dkim \"example.com\")", d->domain);
	if (!conf_get_str(x, sec, "selector", &d->selector))
		conf_err(x, d->line, "dkim \"%.100s\": selector is missing", d->domain);
	else if (!conf_dkim_selector_ok(d->selector))
		conf_bad(x, conf_key_line(x, sec, "selector"), "selector", d->selector,
		    "use DNS labels: letters, digits, '-', '_', separated by '.'");
	if (!conf_get_str(x, sec, "key_file", &d->key_file))
		conf_err(x, d->line, "dkim \"%.100s\": key_file is missing (make one with "
		    "smtprelay dkim-keygen)", d->domain);
	else if (d->key_file[0] != '/')
		conf_bad(x, conf_key_line(x, sec, "key_file"), "key_file", d->key_file,
		    "must be an absolute path (starting with /)");
	conf_build_dkim_headers(x, sec, d);
}

static void conf_check_dkim_dupes(struct conf_ctx *x, const struct config *c)
{
	for (size_t i = 0; i < c->ndkim; i++)
		for (size_t j = 0; j < i; j++)
			if (c->dkim[i].selector && c->dkim[j].selector
			    && strcmp(c->dkim[i].domain, c->dkim[j].domain) == 0
			    && strcmp(c->dkim[i].selector, c->dkim[j].selector) == 0)
				conf_err(x, c->dkim[i].line, "dkim \"%s\": selector \"%s\" "
				    "already used at line %d", c->dkim[i].domain,
				    c->dkim[i].selector, c->dkim[j].line);
}

static void conf_build_dkims(struct conf_ctx *x, cfg_t *cfg, struct config *c)
{
	unsigned n = cfg_size(cfg, "dkim");

	if (n == 0)
		return;
	if (!(c->dkim = calloc(n, sizeof(*c->dkim)))) {
		conf_oom(x);
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		c->ndkim++;
		conf_build_dkim(x, cfg_getnsec(cfg, "dkim", i), &c->dkim[i]);
	}
	conf_check_dkim_dupes(x, c);
}

/* ---- aliases and leftovers ---- */

static void conf_build_alias_block(struct conf_ctx *x, cfg_t *cfg, struct config *c)
{
	cfg_t *sec = cfg_getsec(cfg, "aliases");
	int block_line = conf_key_line(x, cfg, "aliases");
	char err[CONF_ERRLEN];

	for (unsigned i = 0; sec && i < cfg_num(sec); i++) {
		cfg_opt_t *o = cfg_getnopt(sec, i);
		const char *name = cfg_opt_name(o), *v = cfg_opt_getnstr(o, 0);
		struct conf_line *l = conf_line_find(x, sec, name, 0);
		int line = l ? l->line : block_line;
		struct strv t = { 0 };

		if (!addr_valid(name, ADDR_ALLOW_BARE | ADDR_ALLOW_UTF8) || addr_domain(name)) {
			conf_err(x, line, "aliases: \"%.100s\": an alias name is a local name "
			    "without @domain (e.g. root)", name);
			continue;
		}
		if (conf_alias_split(v ? v : "", &t, err, sizeof(err)) < 0) {
			conf_err(x, line, "aliases: %s: %s", name, err);
			continue;
		}
		if (conf_alias_add(c, name, t.v, t.n, true) < 0)
			conf_oom(x);
	}
}

static void conf_build_aliases(struct conf_ctx *x, cfg_t *cfg, struct config *c)
{
	char err[CONF_ERRLEN];

	conf_build_alias_block(x, cfg, c);
	if (c->aliases_file && c->aliases_file[0] == '/' &&
	    conf_aliases_read(c, c->aliases_file, err, sizeof(err)) < 0)
		conf_err(x, conf_key_line(x, cfg, "aliases_file"), "aliases_file: %s", err);
}

/* Keys libconfuse took as free-form (see CFGF_KEYSTRVAL in conf_parse) that
 * were not already reported while parsing. */
static void conf_check_unknown(struct conf_ctx *x, cfg_t *sec, const char *const *keys,
    const char *const *lists)
{
	for (unsigned i = 0; i < cfg_num(sec); i++) {
		cfg_opt_t *o = cfg_getnopt(sec, i);
		const char *name = cfg_opt_name(o);

		if (o->type == CFGT_SEC || conf_known(keys, name) || conf_known(lists, name) ||
		    conf_line_find(x, sec, name, 0))
			continue;
		conf_err(x, conf_line_of(x, sec, name, 0), "unknown key \"%.100s\" "
		    "(see smtprelay.conf(5))", name);
	}
}

static struct config *conf_build(struct conf_ctx *x, cfg_t *cfg)
{
	struct config *c = calloc(1, sizeof(*c));

	if (!c || !(c->path = strdup(x->path))) {
		free(c);
		conf_oom(x);
		return NULL;
	}
	conf_check_unknown(x, cfg, conf_root_keys, conf_root_lists);
	for (unsigned i = 0; i < cfg_size(cfg, "smarthost"); i++)
		conf_check_unknown(x, cfg_getnsec(cfg, "smarthost", i), conf_sh_keys, conf_sh_lists);
	conf_build_root(x, cfg, c);
	for (unsigned i = 0; i < cfg_size(cfg, "dkim"); i++)
		conf_check_unknown(x, cfg_getnsec(cfg, "dkim", i), conf_dkim_keys, conf_dkim_lists);
	conf_build_smarthosts(x, cfg, c);
	conf_build_dkims(x, cfg, c);
	conf_build_aliases(x, cfg, c);
	return c;
}

/* ---- load / free ---- */

static int conf_read(struct conf_ctx *x, const char *path, char **text, struct stat *st)
{
	const char *why = NULL;
	size_t len;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0 || fstat(fd, st) < 0)
		why = strerror(errno);
	else if (!S_ISREG(st->st_mode))
		why = "not a regular file";
	else if (fs_read_fd(fd, CONF_MAX_FILE, text, &len) < 0)
		why = errno == EFBIG ? "file too large" : strerror(errno);
	else if (memchr(*text, '\0', len)) {
		why = "it contains a NUL byte";
		free(*text);
	}
	if (fd >= 0)
		close(fd);
	if (why)
		conf_err(x, 0, "cannot read the configuration: %s", why);
	return why ? -1 : 0;
}

static cfg_t *conf_parse(struct conf_ctx *x, const char *text, int *rc)
{
	struct conf_opts o;
	cfg_t *cfg;

	conf_opts_init(&o);
	conf_cur = x;
	/* Free-form keys everywhere: an unknown key then is one more error
	 * instead of ending the parse (conf_unknown_key, conf_check_unknown). */
	cfg = cfg_init(o.root, CFGF_KEYSTRVAL);
	if (!cfg) {
		conf_cur = NULL;
		conf_oom(x);
		return NULL;
	}
	cfg_set_error_function(cfg, conf_confuse_err);
	conf_set_validators(cfg);
	*rc = cfg_parse_buf(cfg, text);
	conf_cur = NULL;
	return cfg;
}

static void conf_warn_readable(const struct config *c, const struct stat *st)
{
	if (!(st->st_mode & S_IROTH))
		return;
	for (size_t i = 0; i < c->nsmarthosts; i++) {
		if (c->smarthosts[i].password) {
			log_warn("%s contains a password and is readable by others: "
			    "run chmod 640 %s (or use password_file)", c->path, c->path);
			return;
		}
	}
}

static void conf_ctx_free(struct conf_ctx *x)
{
	for (size_t i = 0; i < x->nlines; i++)
		free(x->lines[i].key);
	free(x->lines);
	for (size_t i = 0; i < x->nmsgs; i++)
		free(x->msgs[i].text);
	free(x->msgs);
}

struct config *conf_load(const char *path, char **errors)
{
	struct conf_ctx x;
	struct config *c = NULL;
	struct stat st;
	char *text;
	cfg_t *cfg;
	int rc = CFG_PARSE_ERROR;

	memset(&x, 0, sizeof(x));
	x.path = path;
	if (conf_read(&x, path, &text, &st) == 0) {
		char *pp = conf_preprocess(text, strlen(text));
		free(text);
		cfg = pp ? conf_parse(&x, pp, &rc) : NULL;
		if (cfg && rc == CFG_SUCCESS)
			c = conf_build(&x, cfg);
		else if (cfg && x.nerrors == 0)
			conf_err(&x, 0, "syntax error");
		if (cfg)
			cfg_free(cfg);
		else if (!pp)
			conf_oom(&x);
		free(pp);
	}
	if (c && x.nerrors == 0)
		conf_warn_readable(c, &st);
	if (x.nerrors > 0) {
		conf_free(c);
		c = NULL;
		conf_msgs_out(&x, errors);
	}
	conf_ctx_free(&x);
	return c;
}

/* An empty file's worth of configuration: the compiled-in defaults only. */
struct config *conf_load_defaults(const char *path, char **errors)
{
	struct conf_ctx x;
	struct config *c = NULL;
	char *pp = conf_preprocess("", 0);
	cfg_t *cfg;
	int rc = CFG_PARSE_ERROR;

	memset(&x, 0, sizeof(x));
	x.path = path;
	cfg = pp ? conf_parse(&x, pp, &rc) : NULL;
	if (cfg && rc == CFG_SUCCESS)
		c = conf_build(&x, cfg);
	else
		conf_oom(&x);
	if (cfg)
		cfg_free(cfg);
	free(pp);
	if (x.nerrors > 0) {
		conf_free(c);
		c = NULL;
		conf_msgs_out(&x, errors);
	}
	conf_ctx_free(&x);
	return c;
}

void conf_free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

static void conf_free_smarthost(struct conf_smarthost *sh)
{
	free(sh->name);
	free(sh->host);
	free(sh->ports);
	free(sh->username);
	conf_free_secret(sh->password);
	free(sh->password_file);
	free(sh->password_command);
	free(sh->tls_ca_file);
	free(sh->oauth2_token_url);
	free(sh->oauth2_client_id);
	free(sh->oauth2_client_secret_file);
	conf_free_secret(sh->oauth2_client_secret);
	free(sh->oauth2_refresh_token_file);
	free(sh->oauth2_scope);
	conf_strv_free(sh->senders, sh->nsenders);
}

void conf_free(struct config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nlisten; i++)
		free(c->listen[i].spec);
	free(c->listen);
	free(c->allow);
	for (size_t i = 0; i < c->nsmarthosts; i++)
		conf_free_smarthost(&c->smarthosts[i]);
	free(c->smarthosts);
	for (size_t i = 0; i < c->ndkim; i++)
		conf_dkim_free(&c->dkim[i]);
	free(c->dkim);
	conf_aliases_free(c);
	free(c->path);
	free(c->hostname);
	free(c->spool_dir);
	free(c->user);
	free(c->admin_address);
	free(c->aliases_file);
	free(c->from_address);
	free(c->metrics_listen.spec);
	free(c->metrics_textfile);
	free(c);
}

const char *conf_default_path(const char *given)
{
	const char *env;

	if (given)
		return given;
	env = getenv("SMTPRELAY_CONF");
	if (env && *env)
		return env;
	return CONF_DEFAULT_PATH;
}
