#!/bin/sh
# usage: private-devlog.sh SOCKET SCRATCHDIR COMMAND...
# Run by tests under `unshare -m --propagation private`: gives COMMAND a /dev
# of its own with the host's entries and SOCKET (a datagram socket the test
# reads) as /dev/log, so the test receives exactly what syslog(3) sends.
# Nothing outside this mount namespace changes; the host's /dev/log (if any)
# is left alone.
set -eu
sock=$1 old=$2
shift 2
mkdir -p "$old"
mount --rbind /dev "$old"
mount -t tmpfs -o mode=0755 smtprelay-test-dev /dev
for p in "$old"/*; do
	n=${p##*/}
	[ "$n" = log ] && continue
	if [ -L "$p" ]; then
		cp -P "$p" "/dev/$n"
	elif [ -d "$p" ]; then
		mkdir "/dev/$n" && mount --rbind "$p" "/dev/$n"
	else
		: >"/dev/$n" && mount --bind "$p" "/dev/$n"
	fi
done
: >/dev/log
mount --bind "$sock" /dev/log
exec "$@"
