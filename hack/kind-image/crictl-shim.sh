#!/bin/bash
# crictl stand-in for the offline kind node image. sigs.k8s.io/cri-tools is
# not served by the Go module proxy here (403) nor packaged by Debian, and
# kubeadm (1.31+) no longer needs crictl; kind calls only `crictl images`
# (kind export logs) and `crictl inspecti` (kind load). Both are answered
# from containerd's k8s.io namespace with ctr. Anything else fails loudly.
set -euo pipefail
ctr=(ctr --namespace=k8s.io)

# refs_of DIGEST: every image record whose target is DIGEST.
refs_of() { "${ctr[@]}" images ls | awk -v d="$1" 'NR > 1 && $3 == d { print $1 }'; }

case "${1:-}" in
images)
	"${ctr[@]}" images ls | awk 'NR == 1 { print "IMAGE\tDIGEST\tSIZE"; next } $1 !~ /^sha256:/ && $1 !~ /@/ { print $1 "\t" $3 "\t" $4 $5 }'
	;;
ps)
	"${ctr[@]}" containers ls
	;;
inspecti)
	[[ $# -eq 2 ]] || { echo "crictl (cilia stand-in): usage: crictl inspecti IMAGE" >&2; exit 2; }
	want="$2"
	digest="$("${ctr[@]}" images ls | awk -v w="$want" 'NR > 1 && ($1 == w || $1 == "docker.io/" w || $1 == "docker.io/library/" w || $1 == w ":latest") { print $3; exit }')"
	[[ -n "$digest" ]] || { echo "crictl (cilia stand-in): no such image \"$want\"" >&2; exit 1; }
	id="" tags=()
	while read -r ref; do
		case "$ref" in
		sha256:*) id="$ref" ;;
		*@*) ;;
		*) tags+=("\"$ref\"") ;;
		esac
	done < <(refs_of "$digest")
	[[ -n "$id" ]] || id="$digest"
	printf '{"status":{"id":"%s","repoTags":[%s]}}\n' "$id" "$(IFS=,; echo "${tags[*]-}")"
	;;
*)
	echo "crictl (cilia stand-in): unsupported command \"${1:-}\" (supported: images, ps, inspecti)" >&2
	exit 2
	;;
esac
