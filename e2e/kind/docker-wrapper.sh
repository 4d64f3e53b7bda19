#!/bin/bash
# docker wrapper written by cilia's e2e/kind (WriteDockerWrapper), only on a
# host that needs it. When this host's docker refuses `run --privileged`
# ("unable to apply caps"; rewrite_privileged=1): kind passes --privileged to
# `docker run` (node containers) and `docker exec`; here `run` gets the
# capabilities the host can grant instead, and `exec` runs without it. A
# missing /lib/modules (which kind mounts) is mounted from an empty folder
# rather than created on the host.
set -euo pipefail
real="@REAL_DOCKER@"
empty_modules="@EMPTY_MODULES@"
rewrite_privileged="@REWRITE_PRIVILEGED@"

if [[ $# -eq 0 ]]; then exec "$real"; fi
cmd="$1"
shift
args=()
case "$cmd" in
run | create)
	for a in "$@"; do
		case "$a" in
		--privileged)
			if [[ "$rewrite_privileged" != 1 ]]; then
				args+=("$a")
				continue
			fi
			args+=(--cap-add=ALL --cap-drop=SYS_RESOURCE
				--security-opt systempaths=unconfined
				--device-cgroup-rule='a *:* rwm')
			[[ -e /dev/kmsg ]] && args+=(--device /dev/kmsg)
			;;
		/lib/modules:/lib/modules:ro)
			if [[ -d /lib/modules ]]; then args+=("$a"); else args+=("$empty_modules:/lib/modules:ro"); fi
			;;
		*) args+=("$a") ;;
		esac
	done
	;;
exec)
	for a in "$@"; do
		[[ "$a" == --privileged && "$rewrite_privileged" == 1 ]] || args+=("$a")
	done
	;;
*) args=("$@") ;;
esac
exec "$real" "$cmd" "${args[@]}"
