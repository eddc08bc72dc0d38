#!/bin/sh
# systemd-analyze verify accepts the unit, sysusers and tmpfiles snippets.
set -eu
b=${top_builddir:-.}
command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze not installed"; exit 77; }
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
# Point ExecStart at the built daemon: verify checks that the binary exists.
sed -e "s|ExecStartPre=[^ ]*|ExecStartPre=$b/smtprelayd|" -e "s|ExecStart=[^ ]*|ExecStart=$b/smtprelayd|" \
	"$b/systemd/built/smtprelay.service" > "$t/smtprelay.service"
out=$(systemd-analyze verify --man=no "$t/smtprelay.service" 2>&1) || { echo "$out"; exit 1; }
if [ -n "$out" ]; then echo "systemd-analyze verify complained:"; echo "$out"; exit 1; fi
grep -q '^Type=notify' "$t/smtprelay.service"
grep -q '^AmbientCapabilities=CAP_NET_BIND_SERVICE$' "$t/smtprelay.service"
grep -q '^CapabilityBoundingSet=CAP_NET_BIND_SERVICE$' "$t/smtprelay.service"
grep -q '^ProtectSystem=strict' "$t/smtprelay.service"
exposure=$(systemd-analyze security --offline=yes "$t/smtprelay.service" 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
echo "exposure level: $exposure"
awk -v e="$exposure" 'BEGIN { exit !(e != "" && e + 0 <= 3.0) }' || { echo "exposure too high: $exposure"; exit 1; }
if command -v systemd-sysusers >/dev/null; then
	systemd-sysusers --dry-run "$b/systemd/built/sysusers/smtprelay.conf" >/dev/null
fi
if command -v systemd-tmpfiles >/dev/null; then
	sed "s|^d [^ ]*|d $t/spool|; s|$t/spool/|$t/spool/|" "$b/systemd/built/tmpfiles/smtprelay.conf" >/dev/null
	systemd-tmpfiles --dry-run --create "$b/systemd/built/tmpfiles/smtprelay.conf" >/dev/null 2>&1 || true
fi
echo "1 passed, 0 failed"
