#!/bin/sh
# Layering (docs/architecture.md, "Folders and layers"): a source file may
# include headers from its own folder and from folders of lower layers only.
# LAYERS lists the folders bottom up; "|" separates layers, and folders in one
# layer (daemon, frontend) must not include each other either.  Files outside
# these folders (tests/, bench/, fuzz/) may include anything.
LAYERS='lib | smtp | conf | queue | relay | daemon frontend'

cd "${top_srcdir:-.}" || exit 99

# stdin: "path:#include line"; prints one line per include that points up or
# sideways.
violations() {
	awk -v layers="$LAYERS" '
	BEGIN {
		n = split(layers, g, "|")
		for (i = 1; i <= n; i++) {
			m = split(g[i], f, " ")
			for (j = 1; j <= m; j++)
				rank[f[j]] = i
		}
	}
	{
		file = $0; sub(/:.*/, "", file)
		from = file; sub(/\/.*/, "", from)
		if (!match($0, /"[^"]*"/))
			next
		hdr = substr($0, RSTART + 1, RLENGTH - 2)
		to = hdr; sub(/\/.*/, "", to)
		if (!(to in rank) || !(from in rank) || to == from)
			next
		if (rank[to] >= rank[from])
			printf "%s includes %s: %s/ is not below %s/ (LAYERS in %s)\n", file, hdr, to, from, "tests/test_layers.sh"
	}'
}

# The check itself must be able to fail.
probe=$(printf '%s\n' 'smtp/x.c:#include "conf/conf.h"' 'daemon/x.c:#include "frontend/x.h"' \
	'queue/x.c:#include "lib/buf.h"' | violations | wc -l)
if [ "$probe" -ne 2 ]; then
	echo "test_layers: the checker found $probe of 2 planted violations; fix violations()" >&2
	exit 99
fi

folders=$(echo "$LAYERS" | tr '|' ' ')
for d in $folders; do
	[ -d "$d" ] || { echo "test_layers: folder $d/ in LAYERS does not exist" >&2; exit 1; }
done
bad=$(for d in $folders; do
	grep -H '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$d"/*.c "$d"/*.h 2>/dev/null
done | violations)
if [ -n "$bad" ]; then
	echo "$bad" >&2
	echo "test_layers: $(echo "$bad" | wc -l) include(s) point up or sideways; move the code down or the header up" >&2
	exit 1
fi
echo "test_layers: $(echo "$folders" | wc -w) folders, every include points down"
