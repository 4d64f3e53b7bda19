#!/usr/bin/env bash
# Build a kind node image offline: everything from Debian's packages and the Go
# module proxy, nothing from a container registry. Called by
# `go run ./e2e/kind/cmd/cilia-kind image` (make kind-image), which decides
# whether this host needs it at all (a host that can pull kindest/node uses the
# stock image) and puts the docker wrapper first on PATH when the host refuses
# `docker run --privileged`. See docs/e2e.md.
#
# Every step is cached under $CILIA_CACHE/kind, keyed on the step's versions
# and the text of the step's own function (declare -f): a second run rebuilds
# nothing, and editing one step rebuilds that step and what depends on it.
#
# Environment (defaults in brackets):
#   CILIA_CACHE [/var/cache/cilia]   cache root, outside the repository
#   KUBE_VERSION [v1.34.4]           Kubernetes (k8s.io/kubernetes module version)
#   KIND_VERSION [v0.33.0]           sigs.k8s.io/kind (CLI and base-image recipe)
#   DEBIAN_SUITE [bookworm]          debootstrap suite for the base rootfs
#   DEBIAN_MIRROR [http://deb.debian.org/debian]
# The last line on stdout is the node image name; it is also written to
# $CILIA_CACHE/kind/node-image. `build.sh deps` only installs the host
# packages (docker.io, debootstrap, containernetworking-plugins) it misses.
set -euo pipefail

CILIA_CACHE="${CILIA_CACHE:-/var/cache/cilia}"
KUBE_VERSION="${KUBE_VERSION:-v1.34.4}"
KIND_VERSION="${KIND_VERSION:-v0.33.0}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
export PATH="$PATH:/usr/local/go/bin"
export DOCKER_BUILDKIT=0 # the legacy builder works FROM scratch without a registry

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
C="$CILIA_CACHE/kind"
mkdir -p "$C/stamps" "$C/bin" "$C/src" "$C/out"

log() { echo "kind-image: $*" >&2; }
die() { echo "kind-image: error: $*" >&2; exit 1; }

# step NAME FN INPUTS...: run FN unless the stamp of NAME holds the same key.
# The key hashes FN's own text, the inputs and the keys of earlier steps
# (passed in INPUTS), so a step reruns when its recipe or a dependency changes.
step() {
	local name="$1" fn="$2"
	shift 2
	local key
	key="$({ declare -f "$fn"; printf '%s\n' "$@"; } | sha256sum | cut -c1-16)"
	eval "key_${name//-/_}=$key"
	if [[ -f "$C/stamps/$name" && "$(cat "$C/stamps/$name")" == "$key" ]]; then
		log "$name: cached ($key)"
		return 0
	fi
	log "$name: building ($key)"
	local start=$SECONDS
	"$fn"
	echo "$key" >"$C/stamps/$name"
	log "$name: done in $((SECONDS - start))s"
}

# --- host packages -----------------------------------------------------------

host_packages() {
	local missing=()
	command -v debootstrap >/dev/null || missing+=(debootstrap)
	[[ -x /usr/lib/cni/ptp ]] || missing+=(containernetworking-plugins)
	command -v dockerd >/dev/null || missing+=(docker.io)
	if ((${#missing[@]})); then
		log "installing ${missing[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 || {
			apt-get update -qq >&2
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
		}
	fi
}

# --- Go programs from the module proxy ----------------------------------------

kind_src() { go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p'; }

build_kind_cli() {
	GOBIN="$C/bin" CGO_ENABLED=0 go install "sigs.k8s.io/kind@$KIND_VERSION"
}

# gomod DIR MODULE VERSION [REPLACES...]: a throwaway module in DIR that
# requires MODULE@VERSION, so its main packages build with the versions the
# module itself asks for (plus REPLACES, "old=new@v" lines).
gomod() {
	local dir="$1" mod="$2" ver="$3"
	shift 3
	rm -rf "$dir"
	mkdir -p "$dir"
	printf 'module cilia.local/build\n\ngo 1.26\n' >"$dir/go.mod"
	local r
	for r in "$@"; do
		(cd "$dir" && go mod edit -replace "$r")
	done
	(cd "$dir" && go get "$mod@$ver" >&2)
}

build_kubernetes() {
	local dir="$C/src/kubernetes" out="$C/out/kubernetes-$KUBE_VERSION"
	local gomodfile staging=() m minor="${KUBE_VERSION#v1.}"
	gomodfile="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
	# k8s.io/kubernetes replaces its staging modules with folders; a module
	# that requires it must name their published versions (v0.MINOR.PATCH).
	for m in $(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomodfile"); do
		staging+=("$m=$m@v0.$minor")
	done
	((${#staging[@]})) || die "no staging modules found in $gomodfile"
	gomod "$dir" k8s.io/kubernetes "$KUBE_VERSION" "${staging[@]}"
	local major="${KUBE_VERSION#v}"
	major="${major%%.*}"
	local m2="${minor%%.*}"
	local ld="-s -w" pkg
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$m2"
		ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
	done
	mkdir -p "$out"
	(cd "$dir" && CGO_ENABLED=0 go build -mod=mod -trimpath -tags providerless -ldflags "$ld" -o "$out/" \
		k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubectl \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy)
	"$out/kubeadm" version -o short >&2
}

# The etcd, coredns and pause tags kubeadm asks for at this version.
kubeadm_images() { "$C/out/kubernetes-$KUBE_VERSION/kubeadm" config images list --kubernetes-version "$KUBE_VERSION" 2>/dev/null; }
image_tag() { kubeadm_images | grep "/$1:" | sed 's/.*://'; }

build_etcd() {
	local tag v
	tag="$(image_tag etcd)"
	v="v${tag%-*}"
	gomod "$C/src/etcd" go.etcd.io/etcd/server/v3 "$v"
	(cd "$C/src/etcd" && CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "-s -w" -o "$C/out/etcd-$v/etcd" go.etcd.io/etcd/server/v3)
}

build_coredns() {
	local v
	v="$(image_tag coredns)"
	gomod "$C/src/coredns" github.com/coredns/coredns "$v"
	(cd "$C/src/coredns" && CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "-s -w" -o "$C/out/coredns-$v/coredns" github.com/coredns/coredns)
}


build_pause() {
	(cd "$repo" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$C/out/pause/pause" ./hack/kind-image/pause)
}

# --- images --------------------------------------------------------------------

# scratch_image TAG BINARY...: a FROM scratch image holding the static
# BINARYs in /usr/local/bin, the first as entrypoint.
scratch_image() {
	local tag="$1"
	shift
	local ctx b
	ctx="$(mktemp -d)"
	{
		echo "FROM scratch"
		echo "ENV PATH=/usr/local/bin:/usr/bin:/bin"
		for b in "$@"; do
			cp "$b" "$ctx/"
			echo "COPY $(basename "$b") /usr/local/bin/$(basename "$b")"
		done
		echo "ENTRYPOINT [\"/usr/local/bin/$(basename "$1")\"]"
	} >"$ctx/Dockerfile"
	docker build -q -t "$tag" "$ctx" >/dev/null
	rm -rf "$ctx"
}

# save_repositories_first OUT IMAGE...: docker save, with the tar's
# `repositories` entry first: kind reads only the first manifest.json entry
# but every repositories entry, so this is how one archive declares several
# images as built.
save_repositories_first() {
	local out="$1"
	shift
	local d
	d="$(mktemp -d)"
	docker save "$@" | tar -x -C "$d"
	# docker writes familiar names ("kindest/x"); kind compares full ones
	sed -i 's#"kindest/#"docker.io/kindest/#g' "$d/repositories"
	(cd "$d" && tar -cf "$out" repositories manifest.json $(ls | grep -v -x -e repositories -e manifest.json))
	rm -rf "$d"
}

build_kube_tarball() {
	local bin="$C/out/kubernetes-$KUBE_VERSION" t="$C/out/tarball" arch=amd64 c
	rm -rf "$t"
	mkdir -p "$t/kubernetes/server/bin"
	echo "$KUBE_VERSION" >"$t/kubernetes/version"
	cp "$bin/kubeadm" "$bin/kubelet" "$bin/kubectl" "$t/kubernetes/server/bin/"
	for c in kube-apiserver kube-controller-manager kube-scheduler; do
		scratch_image "registry.k8s.io/$c-$arch:$KUBE_VERSION" "$bin/$c"
		docker save "registry.k8s.io/$c-$arch:$KUBE_VERSION" >"$t/kubernetes/server/bin/$c.tar"
	done
	# kube-proxy.tar also carries every other image the node needs, so that
	# kind pulls nothing: etcd, coredns, pause and stand-ins for kind's own
	# kindnetd and local-path images (unused: the CNI is ptp and the storage
	# manifest is cut down to a StorageClass).
	local ksrc etcd_tag coredns_tag pause_tags kindest=() p
	ksrc="$(kind_src)"
	etcd_tag="$(image_tag etcd)"
	coredns_tag="$(image_tag coredns)"
	pause_tags="$(kubeadm_images | grep /pause: ; sed -n 's/.*sandbox_image = "\(.*\)"/\1/p' "$ksrc/images/base/files/etc/containerd/config.toml")"
	mapfile -t kindest < <(grep -rhoE '"docker.io/kindest/[a-z-]+:[^"]+"' "$ksrc/pkg/build/nodeimage/" | tr -d '"' | grep -v /base: | sort -u)
	scratch_image "registry.k8s.io/kube-proxy-$arch:$KUBE_VERSION" "$bin/kube-proxy"
	scratch_image "registry.k8s.io/etcd:$etcd_tag" "$C/out/etcd-v${etcd_tag%-*}/etcd"
	scratch_image "registry.k8s.io/coredns/coredns:$coredns_tag" "$C/out/coredns-$coredns_tag/coredns"
	local extra=("registry.k8s.io/etcd:$etcd_tag" "registry.k8s.io/coredns/coredns:$coredns_tag")
	for p in $pause_tags "${kindest[@]}"; do
		scratch_image "$p" "$C/out/pause/pause"
		extra+=("$p")
	done
	save_repositories_first "$t/kubernetes/server/bin/kube-proxy.tar" "registry.k8s.io/kube-proxy-$arch:$KUBE_VERSION" "${extra[@]}"
	tar -C "$t" -czf "$C/out/kubernetes-server-linux-$arch.tar.gz" kubernetes
	# The archives hold them now: drop the host's tags, so no stand-in passes
	# for a registry image on this host.
	for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
		docker rmi "registry.k8s.io/$c-$arch:$KUBE_VERSION" >/dev/null
	done
	docker rmi "${extra[@]}" >/dev/null
}

# --- base image: kind's images/base recipe on a debootstrap rootfs --------------

build_base() {
	local ksrc r pkgs
	ksrc="$(kind_src)"
	r="$C/rootfs"
	# the package list of kind's Dockerfile (the clean-install lines), plus
	# what its other stages build from source, here from Debian.
	pkgs="$(sed -n '/clean-install \\$/,/&& find/p' "$ksrc/images/base/Dockerfile" | grep -v -e clean-install -e '&&' | tr -d '\\' | xargs | tr ' ' ',')"
	pkgs+=",containerd,runc,containernetworking-plugins"
	[[ -n "$pkgs" ]] || die "no package list in $ksrc/images/base/Dockerfile"
	rm -rf "$r"
	mkdir -p "$C/debs" # downloaded .debs, kept for the next rebuild
	debootstrap --variant=minbase --cache-dir="$C/debs" --include="$pkgs" "$DEBIAN_SUITE" "$r" "$DEBIAN_MIRROR" >&2
	# the COPY lines of kind's Dockerfile
	local f="$ksrc/images/base/files"
	install -m 0755 "$f"/usr/local/bin/* "$r/usr/local/bin/"
	mkdir -p "$r/kind/bin" "$r/LICENSES" "$r/etc/containerd" "$r/etc/systemd/system/kubelet.service.d"
	cp -r "$f/kind/." "$r/kind/"
	chmod -R u+rwX,go+rX "$r/kind"
	chmod 0755 "$r"/kind/bin/*
	cp "$f"/LICENSES/* "$r/LICENSES/"
	install -m 0644 "$f/etc/crictl.yaml" "$r/etc/"
	install -m 0644 "$f"/etc/containerd/* "$r/etc/containerd/"
	install -m 0644 "$f"/etc/default/* "$r/etc/default/"
	install -m 0644 "$f"/etc/sysctl.d/* "$r/etc/sysctl.d/"
	find "$f/etc/systemd/system" -maxdepth 1 -type f -exec install -m 0644 {} "$r/etc/systemd/system/" \;
	install -m 0644 "$f"/etc/systemd/system/kubelet.service.d/* "$r/etc/systemd/system/kubelet.service.d/"
	# the RUN lines of kind's Dockerfile
	find "$r/lib/systemd/system/sysinit.target.wants/" -name "systemd-tmpfiles-setup.service" -delete
	rm -f "$r"/lib/systemd/system/multi-user.target.wants/* "$r"/etc/systemd/system/*.wants/* \
		"$r"/lib/systemd/system/local-fs.target.wants/* "$r"/lib/systemd/system/sockets.target.wants/*udev* \
		"$r"/lib/systemd/system/sockets.target.wants/*initctl* "$r"/lib/systemd/system/basic.target.wants/*
	echo "ReadKMsg=no" >>"$r/etc/systemd/journald.conf"
	ln -sf /usr/lib/systemd/systemd "$r/sbin/init"
	chroot "$r" systemctl enable kubelet.service containerd.service undo-mount-hacks.service >&2
	chroot "$r" systemctl mask systemd-binfmt.service >&2
	mkdir -p "$r/etc/kubernetes/manifests"
	# containerd, runc, crictl and the CNI plugins where kind's stages put them
	ln -sf /usr/bin/containerd "$r/usr/local/bin/containerd"
	ln -sf /usr/bin/containerd-shim-runc-v2 "$r/usr/local/bin/containerd-shim-runc-v2"
	# crictl: sigs.k8s.io/cri-tools is not on the module proxy here; a ctr-based
	# stand-in answers what kind asks (see crictl-shim.sh)
	install -m 0755 "$here/crictl-shim.sh" "$r/usr/local/bin/crictl"
	mkdir -p "$r/opt/cni/bin"
	for p in host-local loopback ptp portmap; do ln -sf "/usr/lib/cni/$p" "$r/opt/cni/bin/$p"; done
	chroot "$r" sh -c "ctr oci spec | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {\"path\": \"/kind/bin/mount-product-files.sh\"}' | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json"
	# kind calls `ctr info` and `ctr images import --label=...`: older ctr
	# (containerd 1.6) has neither; a shim maps them, only when needed.
	local ctr_help
	ctr_help="$(chroot "$r" /usr/bin/ctr --help)"
	if ! grep -qE '^[[:space:]]+info([[:space:],]|$)' <<<"$ctr_help"; then
		log "base: this ctr lacks 'info': installing the ctr shim"
		install -m 0755 "$here/ctr-shim.sh" "$r/usr/local/bin/ctr"
	fi
	# runtime fixups, each applied only when the node detects it needs it
	install -m 0755 "$here/node-fixups.sh" "$r/usr/local/bin/cilia-node-fixups"
	sed -i 's#^configure_containerd$#/usr/local/bin/cilia-node-fixups\nconfigure_containerd#' "$r/usr/local/bin/entrypoint"
	grep -q cilia-node-fixups "$r/usr/local/bin/entrypoint" || die "could not hook the fixups into kind's entrypoint"
	rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/*
	tar -C "$r" -c . | docker import \
		--change 'ENV container=docker' \
		--change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
		- "cilia/kind-base:import" >/dev/null
	local ctx
	ctx="$(mktemp -d)"
	printf 'FROM cilia/kind-base:import\nSTOPSIGNAL SIGRTMIN+3\n' >"$ctx/Dockerfile"
	docker build -q -t "$base_image" "$ctx" >/dev/null
	docker rmi cilia/kind-base:import >/dev/null
	rm -rf "$ctx" "$r"
}

build_node() {
	local raw="cilia/kind-node:raw"
	"$C/bin/kind" build node-image --type file "$C/out/kubernetes-server-linux-amd64.tar.gz" \
		--base-image "$base_image" --image "$raw" >&2
	# No local-path provisioner offline: keep only the StorageClass.
	local ctx
	ctx="$(mktemp -d)"
	cp "$here/default-storage.yaml" "$ctx/"
	printf 'FROM %s\nCOPY default-storage.yaml /kind/manifests/default-storage.yaml\n' "$raw" >"$ctx/Dockerfile"
	docker build -q -t "$node_image" "$ctx" >/dev/null
	docker rmi "$raw" >/dev/null
	rm -rf "$ctx"
}

# prune_old REPO KEEP: remove this pipeline's older images of REPO.
prune_old() {
	local img
	for img in $(docker images "$1" --format '{{.Repository}}:{{.Tag}}'); do
		[[ "$img" == "$2" ]] || docker rmi "$img" >/dev/null || log "could not remove old image $img"
	done
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

main() {
	local start=$SECONDS
	host_packages # not cached: cheap, and a machine can lose what a stamp recorded
	if [[ "${1:-}" == deps ]]; then
		return 0
	fi
	docker info >/dev/null 2>&1 || die "docker does not answer (is dockerd running?)"
	step kind-cli build_kind_cli "$KIND_VERSION"
	step kubernetes build_kubernetes "$KUBE_VERSION"
	step etcd build_etcd "$KUBE_VERSION" "$key_kubernetes"
	step coredns build_coredns "$KUBE_VERSION" "$key_kubernetes"
	step pause build_pause "$(cd "$here" && sha256sum pause/main.go)"
	step kube-tarball build_kube_tarball "$key_kubernetes" "$key_etcd" "$key_coredns" "$key_pause" \
		"$KIND_VERSION" "$(declare -f scratch_image save_repositories_first)"
	base_image="cilia/kind-base:$DEBIAN_SUITE"
	# the base key covers kind's recipe (by version), the shims and the fixups
	local base_inputs=("$DEBIAN_SUITE" "$KIND_VERSION"
		"$(cd "$here" && sha256sum ctr-shim.sh crictl-shim.sh node-fixups.sh)")
	base_image="cilia/kind-base:$DEBIAN_SUITE-$({ declare -f build_base; printf '%s\n' "${base_inputs[@]}"; } | sha256sum | cut -c1-12)"
	image_exists "$base_image" || rm -f "$C/stamps/base"
	step base build_base "${base_inputs[@]}"
	node_image="cilia/kind-node:$KUBE_VERSION-$({ declare -f build_node; printf '%s\n' "$key_base" "$key_kube_tarball" "$(cd "$here" && sha256sum default-storage.yaml)"; } | sha256sum | cut -c1-12)"
	image_exists "$node_image" || rm -f "$C/stamps/node"
	step node build_node "$key_base" "$key_kube_tarball" "$node_image"
	echo "$node_image" >"$C/node-image"
	prune_old cilia/kind-node "$node_image"
	prune_old cilia/kind-base "$base_image"
	log "node image $node_image ready in $((SECONDS - start))s"
	echo "$node_image"
}

main "$@"
