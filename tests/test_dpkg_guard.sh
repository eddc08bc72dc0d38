#!/bin/sh
# tools/dpkg-guard: make install/uninstall refuse a path dpkg records as a
# package's file (here /usr/bin/dpkg-query, dpkg's own), unless DESTDIR is
# set or SMTPRELAY_OVERWRITE_DPKG=yes; other paths pass.
set -u
s=${top_srcdir:-.}
command -v dpkg-query >/dev/null || { echo "SKIP: not a dpkg system"; exit 77; }
g="$s/tools/dpkg-guard"
owned=$(command -v dpkg-query)
fail=0
expect() {
	want=$1; shift
	out=$(env -u SMTPRELAY_OVERWRITE_DPKG "$@" 2>&1); rc=$?
	if [ "$rc" != "$want" ]; then echo "FAIL: $* -> $rc (want $want): $out"; fail=1; else echo "ok: $* -> $rc"; fi
}
expect 1 sh "$g" install "" "$owned"
out=$(sh "$g" uninstall "" /nonexistent/sendmail "$owned" 2>&1)
echo "$out" | grep -q "$owned belongs to the Debian package 'dpkg'" || { echo "FAIL: message: $out"; fail=1; }
echo "$out" | grep -q "nonexistent" && { echo "FAIL: unowned path named: $out"; fail=1; }
expect 0 sh "$g" install "" /nonexistent/sendmail
expect 0 sh "$g" install /tmp/destdir "$owned"
expect 0 env SMTPRELAY_OVERWRITE_DPKG=yes sh "$g" install "" "$owned"
exit $fail
