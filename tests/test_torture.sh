#!/bin/sh
# The short kill -9 torture for make check: 3 cycles, nothing acknowledged
# may be lost (tools/torture -n 100 is the long run).
top=${top_srcdir:-$(dirname "$0")/..}
if [ "$(id -u)" != 0 ]; then
	echo "SKIP: tools/torture needs root (its NoNewPrivileges submitter runs as nobody)"
	exit 77
fi
exec /usr/bin/python3 -B "$top/tools/torture" -n 3
