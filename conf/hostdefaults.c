#include "config.h"
#include "conf/hostdefaults.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "conf/conf.h"
#include "lib/addr.h"
#include "lib/log.h"

static const char *hostdefaults_env(const char *name, const char *def)
{
	const char *v = secure_getenv(name);

	return v && *v ? v : def;
}

const char *hostdefaults_mailname_path(void)
{
	return hostdefaults_env("SMTPRELAY_MAILNAME_FILE", HOSTDEFAULTS_MAILNAME);
}

const char *hostdefaults_aliases_path(void)
{
	return hostdefaults_env("SMTPRELAY_ALIASES_FILE", HOSTDEFAULTS_ALIASES);
}

/* s without leading and trailing blanks (in place). */
static char *hostdefaults_trim(char *s)
{
	size_t n;

	s += strspn(s, " \t");
	n = strlen(s);
	while (n && strchr(" \t\r\n", s[n - 1]))
		s[--n] = '\0';
	return s;
}

char *hostdefaults_mailname(void)
{
	const char *path = hostdefaults_mailname_path();
	char line[300], *name;
	FILE *f = fopen(path, "re");

	if (!f) {
		if (errno != ENOENT)
			log_warn("%s: %s: using the FQDN as hostname (make it readable, or set "
			    "hostname)", path, strerror(errno));
		return NULL;
	}
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	name = hostdefaults_trim(line);
	if (!addr_valid_domain(name, false)) {
		log_warn("%s: \"%s\" is not a valid host name: using the FQDN as hostname "
		    "(fix the file, or set hostname)", path, name);
		return NULL;
	}
	return strdup(name);
}

char *hostdefaults_aliases(void)
{
	const char *path = hostdefaults_aliases_path();
	struct stat st;

	if (stat(path, &st) < 0)
		return NULL;
	return strdup(path);
}

void hostdefaults_warn(const struct config *c)
{
	if (c->hostname && !strchr(c->hostname, '.'))
		log_warn("%s: hostname \"%s\" has no dot: mail from local users (root, cron) "
		    "goes out as user@%s, which other servers refuse: set hostname = "
		    "\"%s.example.com\" or write your mail domain to %s", c->path, c->hostname,
		    c->hostname, c->hostname, hostdefaults_mailname_path());
	if (!c->admin_address && !conf_alias_find(c, "root"))
		log_warn("%s: root has no alias and admin_address is not set: mail to root "
		    "(cron, system alerts) goes to root@%s: set admin_address = "
		    "\"you@example.com\" (or add an alias for root)", c->path,
		    c->hostname ? c->hostname : "localhost");
}
