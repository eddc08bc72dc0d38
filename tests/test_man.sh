#!/bin/sh
# Every man page renders without a groff warning.
set -eu
b=${top_builddir:-.}
s=${top_srcdir:-.}
command -v groff >/dev/null || { echo "SKIP: groff not installed"; exit 77; }
fail=0
for p in "$b"/man/built/* "$s"/man/mailq.1 "$s"/man/newaliases.8; do
	case $p in *.1|*.8) ;; *.5) ;; *) continue ;; esac
	[ -f "$p" ] || continue
	if head -1 "$p" | grep -q '^\.so '; then continue; fi
	# -Wbreak: a configured path longer than the line (make distcheck's
	# prefix) "cannot adjust line"; that is the prefix, not the page.
	out=$(groff -man -ww -Wbreak -z -Tutf8 "$p" 2>&1)
	if [ -n "$out" ]; then echo "$p:"; echo "$out"; fail=1; fi
	grep -q '@[A-Z]*@' "$p" && { echo "$p: unsubstituted @VAR@"; fail=1; }
	echo "rendered: $p"
done
exit $fail
