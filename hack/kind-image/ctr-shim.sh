#!/bin/sh
# ctr shim for containerd 1.6 in a kind node: kind calls `ctr info`, which
# this ctr lacks (mapped to `ctr version`, which also needs a live daemon),
# and `ctr images import --label=...`, whose flag it lacks (dropped: the
# label only pins images against garbage collection). Installed by
# hack/kind-image/build.sh only when the node's ctr has no `info` command.
set -eu
real="${CILIA_REAL_CTR:-/usr/bin/ctr}" # overridable for tests
seen_cmd=0
for a in "$@"; do
	shift
	case "$a" in
	--label=*) continue ;;
	info)
		if [ "$seen_cmd" = 0 ]; then
			seen_cmd=1
			set -- "$@" version
			continue
		fi
		;;
	-*) ;;
	*) seen_cmd=1 ;;
	esac
	set -- "$@" "$a"
done
exec "$real" "$@"
