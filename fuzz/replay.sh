#!/bin/sh
# make check: every file of every target's corpus (fuzz/corpus/*/) through
# every fuzz target, built with the normal compiler (fuzz/replay_TARGET).
# A crash found by tools/fuzz is fixed with its reproducer added to the
# corpus, so it stays fixed.
set -u
src=${top_srcdir:-$(dirname "$0")/..}
build=${top_builddir:-$(dirname "$0")/..}
status=0
n=0
for dir in "$src"/fuzz/corpus/*/; do
	t=$(basename "$dir")
	if [ ! -x "$build/fuzz/replay_$t" ]; then
		echo "replay: no fuzz/replay_$t for corpus $dir (add the target to fuzz/Makefile.inc)"
		status=1
		continue
	fi
	if ! "$build/fuzz/replay_$t" "$src"/fuzz/corpus/*/ >"$build/fuzz/replay_$t.out" 2>&1; then
		echo "replay: FAIL: $t (output in fuzz/replay_$t.out):"
		tail -20 "$build/fuzz/replay_$t.out"
		status=1
	else
		cat "$build/fuzz/replay_$t.out" | tail -1
	fi
	n=$((n + 1))
done
echo "replay: $n targets"
exit $status
