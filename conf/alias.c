#include "config.h"
#include "conf/conf.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/addr.h"
#include "lib/buf.h"
#include "lib/fsutil.h"
#include "lib/log.h"

#define CONF_ALIASES_MAX_FILE (16 * 1024 * 1024)
#define CONF_ALIAS_MAX_DEPTH 10
#define CONF_ALIAS_MAX_TARGETS 1000
#define CONF_ALIAS_MAX_LINE (64 * 1024)

void conf_strv_free(char **v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void conf_alias_free_one(struct conf_alias *a)
{
	free(a->name);
	conf_strv_free(a->targets, a->ntargets);
}

void conf_aliases_free(struct config *c)
{
	for (size_t i = 0; i < c->naliases; i++)
		conf_alias_free_one(&c->aliases[i]);
	free(c->aliases);
	c->aliases = NULL;
	c->naliases = 0;
}

const struct conf_alias *conf_alias_find(const struct config *c, const char *name)
{
	for (size_t i = 0; i < c->naliases; i++)
		if (strcasecmp(c->aliases[i].name, name) == 0)
			return &c->aliases[i];
	return NULL;
}

int conf_alias_add(struct config *c, const char *name, char **targets, size_t ntargets, bool from_block)
{
	struct conf_alias *a = (struct conf_alias *)conf_alias_find(c, name), *v;
	char *n = strdup(name);

	if (!n) {
		conf_strv_free(targets, ntargets);
		return -1;
	}
	for (char *p = n; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (a && a->from_block && !from_block) {
		/* The aliases { } block wins over aliases_file. */
		free(n);
		conf_strv_free(targets, ntargets);
		return 0;
	}
	if (!a) {
		v = realloc(c->aliases, (c->naliases + 1) * sizeof(*v));
		if (!v) {
			free(n);
			conf_strv_free(targets, ntargets);
			return -1;
		}
		c->aliases = v;
		a = &c->aliases[c->naliases++];
	} else {
		conf_alias_free_one(a);
	}
	a->name = n;
	a->targets = targets;
	a->ntargets = ntargets;
	a->from_block = from_block;
	return 0;
}

/* Targets a null client cannot deliver: it has no local delivery agent. */
static const char *conf_alias_unsupported(const char *t)
{
	if (t[0] == '"')
		t++;
	if (t[0] == '|')
		return "command";
	if (t[0] == '/')
		return "file";
	if (strncasecmp(t, ":include:", 9) == 0)
		return ":include:";
	return NULL;
}

/* Next comma-separated element outside double quotes, whitespace trimmed;
 * returns where it ends: at a ',' or at the end of the string. */
static const char *conf_alias_next(const char *p, const char **start, size_t *len)
{
	bool quoted = false;
	const char *s, *e;

	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	s = p;
	for (; *p && (quoted || *p != ','); p++) {
		if (quoted && *p == '\\' && p[1])
			p++;
		else if (*p == '"')
			quoted = !quoted;
	}
	e = p;
	while (e > s && isspace((unsigned char)e[-1]))
		e--;
	*start = s;
	*len = (size_t)(e - s);
	return p;
}

static int conf_strv_push(struct strv *v, const char *s, size_t len)
{
	char *d;

	if (v->n >= CONF_ALIAS_MAX_TARGETS) {
		errno = E2BIG;
		return -1;
	}
	d = strndup(s, len);
	if (!d)
		return -1;
	if (strv_push(v, d) < 0) {
		free(d);
		return -1;
	}
	return 0;
}

static int conf_alias_check(const char *t, char *err, size_t errlen)
{
	const char *what = conf_alias_unsupported(t);

	if (what) {
		snprintf(err, errlen, "\"%s\": %s targets are not supported "
		    "(a null client delivers no mail locally; use an address)", t, what);
		return -1;
	}
	if (!addr_valid(t, ADDR_ALLOW_BARE | ADDR_ALLOW_UTF8)) {
		snprintf(err, errlen, "\"%s\": not a valid address or local name", t);
		return -1;
	}
	return 0;
}

int conf_alias_split(const char *value, struct strv *targets, char *err, size_t errlen)
{
	const char *p = value, *s;
	struct strv v = { 0 };
	size_t len;

	do {
		if (*p == ',')
			p++;
		p = conf_alias_next(p, &s, &len);
		if (len == 0 || len > ADDR_MAX) {
			snprintf(err, errlen, len ? "an address is too long" : v.n || *p ?
			    "empty element (use \"a@example.com, b@example.com\")" : "no target address");
			goto fail;
		}
		if (conf_strv_push(&v, s, len) < 0) {
			snprintf(err, errlen, "%s", strerror(errno));
			goto fail;
		}
		if (conf_alias_check(v.v[v.n - 1], err, errlen) < 0)
			goto fail;
	} while (*p == ',');
	*targets = v;
	return 0;
fail:
	strv_free(&v);
	return -1;
}

/* ---- aliases_file: name: target, target (aliases(5) syntax) ---- */

struct conf_afile {
	struct config *c;
	const char *path;
	int line;		/* first line of the current entry */
};

/* The name before ':', unquoted; returns a pointer after the ':' or NULL. */
static const char *conf_afile_name(const char *p, char *name, size_t size)
{
	size_t n = 0;

	if (*p == '"') {
		for (p++; *p && *p != '"'; p++) {
			if (*p == '\\' && p[1])
				p++;
			if (n + 1 >= size)
				return NULL;
			name[n++] = *p;
		}
		if (*p++ != '"')
			return NULL;
	} else {
		for (; *p && *p != ':' && !isspace((unsigned char)*p); p++) {
			if (n + 1 >= size)
				return NULL;
			name[n++] = *p;
		}
	}
	name[n] = '\0';
	while (*p == ' ' || *p == '\t')
		p++;
	return (n > 0 && *p == ':') ? p + 1 : NULL;
}

static void conf_afile_target(struct conf_afile *f, const char *name, const char *t,
    struct strv *v)
{
	const char *what = conf_alias_unsupported(t);

	if (what) {
		log_warn("%s:%d: alias \"%s\": ignoring %s target \"%s\" "
		    "(a null client delivers no mail locally)", f->path, f->line, name, what, t);
		return;
	}
	if (!addr_valid(t, ADDR_ALLOW_BARE | ADDR_ALLOW_UTF8)) {
		log_warn("%s:%d: alias \"%s\": ignoring invalid address \"%s\"",
		    f->path, f->line, name, t);
		return;
	}
	if (conf_strv_push(v, t, strlen(t)) < 0)
		log_warn("%s:%d: alias \"%s\": %s", f->path, f->line, name, strerror(errno));
}

static int conf_afile_entry(struct conf_afile *f, const char *text)
{
	char name[ADDR_MAX_LOCAL + 1], *t;
	const char *p = conf_afile_name(text, name, sizeof(name)), *s;
	const struct conf_alias *old;
	struct strv v = { 0 };
	size_t len;

	if (!p) {
		log_warn("%s:%d: ignoring line without \"name: target\"", f->path, f->line);
		return 0;
	}
	old = conf_alias_find(f->c, name);
	if (old && !old->from_block) {
		log_warn("%s:%d: duplicate alias \"%s\": keeping the first", f->path, f->line, name);
		return 0;
	}
	for (; *p; p += *p == ',') {
		p = conf_alias_next(p, &s, &len);
		if (len == 0)
			continue;
		t = strndup(s, len);
		if (!t)
			return -1;
		conf_afile_target(f, name, t, &v);
		free(t);
	}
	if (v.n == 0) {
		log_warn("%s:%d: alias \"%s\" has no usable target: ignored", f->path, f->line, name);
		return 0;
	}
	return conf_alias_add(f->c, name, v.v, v.n, false);
}

/* Feed one logical entry (continuation lines joined) to conf_afile_entry. */
static int conf_afile_flush(struct conf_afile *f, struct buf *entry)
{
	int r = 0;

	if (entry->len > 0)
		r = conf_afile_entry(f, entry->data);
	buf_reset(entry);
	return r;
}

static int conf_afile_lines(struct conf_afile *f, char *text)
{
	struct buf entry;
	int lineno = 0, r = 0;
	char *line, *next;

	buf_init(&entry, CONF_ALIAS_MAX_LINE);
	for (line = text; line && *line && r == 0; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		line[strcspn(line, "\r")] = '\0';
		const char *q = line + strspn(line, " \t");
		if (*q == '\0' || *q == '#')
			continue;
		if (q == line) {
			r = conf_afile_flush(f, &entry);
			f->line = lineno;
		} else if (entry.len == 0) {
			log_warn("%s:%d: continuation line without an entry: ignored", f->path, lineno);
			continue;
		}
		if (r == 0 && ((entry.len > 0 && buf_puts(&entry, " ") < 0) || buf_puts(&entry, q) < 0)) {
			log_warn("%s:%d: entry too long: ignored", f->path, f->line);
			buf_reset(&entry);
		}
	}
	if (r == 0)
		r = conf_afile_flush(f, &entry);
	buf_free(&entry);
	return r;
}

int conf_aliases_read(struct config *c, const char *path, char *err, size_t errlen)
{
	struct conf_afile f = { c, path, 0 };
	char *text;
	size_t len;
	int r;

	if (fs_read_file(path, CONF_ALIASES_MAX_FILE, &text, &len) < 0) {
		snprintf(err, errlen, "cannot read \"%s\": %s", path, strerror(errno));
		return -1;
	}
	if (memchr(text, '\0', len)) {
		snprintf(err, errlen, "\"%s\" contains a NUL byte: not an aliases file", path);
		free(text);
		return -1;
	}
	r = conf_afile_lines(&f, text);
	free(text);
	if (r < 0)
		snprintf(err, errlen, "reading \"%s\": %s", path, strerror(ENOMEM));
	return r;
}

/* ---- resolution ---- */

struct conf_res {
	const struct config *c;
	struct strv out;
	char *err;
	size_t errlen;
	char stack[CONF_ALIAS_MAX_DEPTH + 1][ADDR_MAX_LOCAL + 1];
	int depth;
};

/* Duplicates are found case-insensitively, as every mail system treats
 * local parts in practice. */
static bool conf_addr_eq(const char *a, const char *b)
{
	return strcasecmp(a, b) == 0;
}

/* Takes ownership of addr. */
static int conf_res_add(struct conf_res *r, char *addr)
{
	if (!addr)
		goto oom;
	for (size_t i = 0; i < r->out.n; i++) {
		if (conf_addr_eq(r->out.v[i], addr)) {
			free(addr);
			return 0;
		}
	}
	if (strv_push(&r->out, addr) < 0) {
		free(addr);
		goto oom;
	}
	return 0;
oom:
	snprintf(r->err, r->errlen, "%s", strerror(ENOMEM));
	return -1;
}

/* Local part as a lower-cased name without quotes; -1 if too long. */
static int conf_local_name(const char *addr, char *name, size_t size)
{
	size_t len = addr_local_len(addr), n = 0;

	for (size_t i = 0; i < len; i++) {
		char ch = addr[i];
		if (ch == '"' && (i == 0 || i == len - 1) && addr[0] == '"' && len >= 2)
			continue;
		if (ch == '\\' && addr[0] == '"' && i + 1 < len)
			ch = addr[++i];
		if (n + 1 >= size)
			return -1;
		name[n++] = (char)tolower((unsigned char)ch);
	}
	name[n] = '\0';
	return n > 0 ? 0 : -1;
}

/* A local part with "@hostname": the name as the smarthost should see it. */
static char *conf_local_qualify(const struct config *c, const char *addr)
{
	size_t l = addr_local_len(addr), h = strlen(c->hostname);
	char *r = malloc(l + h + 2);

	if (!r)
		return NULL;
	memcpy(r, addr, l);
	r[l] = '@';
	memcpy(r + l + 1, c->hostname, h + 1);
	return r;
}

/* A local name that no alias expands further. */
static int conf_res_terminal(struct conf_res *r, const char *addr)
{
	if (r->c->admin_address)
		return conf_res_add(r, strdup(r->c->admin_address));
	return conf_res_add(r, conf_local_qualify(r->c, addr));
}

static int conf_res_loop(struct conf_res *r, const char *name)
{
	struct buf b;

	/* Bounded: at most CONF_ALIAS_MAX_DEPTH names of ADDR_MAX_LOCAL bytes. */
	buf_init(&b, 4096);
	buf_puts(&b, "alias loop: ");
	for (int i = 0; i < r->depth; i++)
		buf_printf(&b, "%s -> ", r->stack[i]);
	buf_puts(&b, name);
	snprintf(r->err, r->errlen, "%s", b.data ? b.data : "alias loop");
	buf_free(&b);
	return -1;
}

static int conf_res_local(struct conf_res *r, const char *addr);

static int conf_res_target(struct conf_res *r, const char *self, const char *t)
{
	char name[ADDR_MAX_LOCAL + 1];

	if (!addr_is_local(t, r->c->hostname))
		return conf_res_add(r, strdup(t));
	if (conf_local_name(t, name, sizeof(name)) < 0) {
		snprintf(r->err, r->errlen, "alias target \"%s\": local part too long", t);
		return -1;
	}
	if (strcmp(name, self) == 0)
		return conf_res_terminal(r, t);
	for (int i = 0; i < r->depth; i++)
		if (strcmp(r->stack[i], name) == 0)
			return conf_res_loop(r, name);
	return conf_res_local(r, t);
}

static int conf_res_local(struct conf_res *r, const char *addr)
{
	char *self = r->stack[r->depth];
	const struct conf_alias *a;
	int rc = 0;

	if (r->depth >= CONF_ALIAS_MAX_DEPTH) {
		snprintf(r->err, r->errlen, "aliases nested more than %d deep at \"%s\"",
		    CONF_ALIAS_MAX_DEPTH, addr);
		return -1;
	}
	if (conf_local_name(addr, self, ADDR_MAX_LOCAL + 1) < 0) {
		snprintf(r->err, r->errlen, "\"%s\": empty or too long local part", addr);
		return -1;
	}
	a = conf_alias_find(r->c, self);
	if (!a)
		return conf_res_terminal(r, addr);
	r->depth++;
	for (size_t i = 0; i < a->ntargets && rc == 0; i++)
		rc = conf_res_target(r, self, a->targets[i]);
	r->depth--;
	return rc;
}

int conf_resolve(const struct config *c, const char *addr, struct strv *out, char *err, size_t errlen)
{
	struct conf_res r;
	int rc;

	memset(&r, 0, sizeof(r));
	r.c = c;
	r.err = err;
	r.errlen = errlen;
	if (!addr || addr[0] == '\0' || strlen(addr) > ADDR_MAX) {
		snprintf(err, errlen, "empty or too long address");
		return -1;
	}
	if (addr_is_local(addr, c->hostname))
		rc = conf_res_local(&r, addr);
	else
		rc = conf_res_add(&r, strdup(addr));
	if (rc < 0) {
		strv_free(&r.out);
		return -1;
	}
	*out = r.out;
	return (int)r.out.n;
}

char *conf_rewrite_sender(const struct config *c, const char *sender)
{
	if (sender[0] == '\0' || !addr_is_local(sender, c->hostname))
		return strdup(sender);
	if (c->from_address)
		return strdup(c->from_address);
	return conf_local_qualify(c, sender);
}
