#!/bin/bash
# cilia-node-fixups: run by kind's entrypoint in every offline node before it
# configures containerd. Each fixup first detects whether this node needs it:
#  1. cgroup v1 controllers mounted read-only (a node started without
#     --privileged): remount them read-write.
#  2. no CAP_SYS_RESOURCE (a negative oom_score_adj is refused): containerd's
#     restrict_oom_score_adj = true, or every pod sandbox fails to start
#     ("can't get final child's PID from pipe: EOF").
set -euo pipefail

log() { echo "cilia-node-fixups: $*" >&2; }

while read -r target opts; do
	case ",$opts," in
	*,ro,*)
		log "remounting $target read-write"
		mount -o remount,bind,rw "$target" || log "could not remount $target"
		;;
	esac
done < <(findmnt -lun -o target,options -t cgroup,cgroup2)

if ! (echo -1 >/proc/self/oom_score_adj) 2>/dev/null; then
	log "negative oom_score_adj refused: restrict_oom_score_adj = true"
	sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' /etc/containerd/config.toml
fi
