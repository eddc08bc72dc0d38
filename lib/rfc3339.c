#include "config.h"
#include "lib/rfc3339.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rfc3339_local(time_t t, char *buf, size_t len)
{
	struct tm tm;
	char zone[8];
	long off;

	if (!localtime_r(&t, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
		snprintf(buf, len, "1970-01-01T00:00:00Z");
		return;
	}
	off = tm.tm_gmtoff;
	if (off == 0)
		snprintf(zone, sizeof(zone), "Z");
	else
		snprintf(zone, sizeof(zone), "%c%02ld:%02ld", off < 0 ? '-' : '+',
		    labs(off) / 3600 % 100, labs(off) / 60 % 60);
	snprintf(buf + strlen(buf), len - strlen(buf), "%s", zone);
}
