#!/usr/bin/env bash
# Install what cilia needs from the distribution's packages, only what is
# missing, without prompting. Safe to run again: it does nothing when all is
# there. Debian 12 and Ubuntu (apt) are supported; elsewhere it names what is
# missing and fails.
#
#   hack/install-deps.sh                  everything: generate + test
#   hack/install-deps.sh --generate-only  clang-19, llvm-19, libbpf-dev, linux-libc-dev (make generate)
#   hack/install-deps.sh --test-only      iproute2, tcpdump, iptables and a bpffs at /sys/fs/bpf (make test, make bench)
#
# Environment: CLANG (default clang-19) picks the compiler, and with it the
# clang-N/llvm-N packages. With CILIA_SKIP_PRIVILEGED=1 a non-root caller gets
# a warning instead of an error for what only privileged tests need.
set -euo pipefail

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }

want_generate=1
want_test=1
case "${1:-}" in
	"") ;;
	--generate-only) want_test=0 ;;
	--test-only) want_generate=0 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "install-deps: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
esac

export PATH="$PATH:/usr/local/go/bin"
export DEBIAN_FRONTEND=noninteractive

CLANG="${CLANG:-clang-19}"
llvm_version="${CLANG#clang-}"
if [[ "$llvm_version" == "$CLANG" ]]; then
	llvm_version="" # plain "clang": unversioned packages
fi
suffix="${llvm_version:+-$llvm_version}"

log() { echo "install-deps: $*"; }
die() { echo "install-deps: error: $*" >&2; exit 1; }

have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pkg() {
	have_cmd dpkg-query &&
		[[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

# can_root: whether run_root can work (root, or sudo without a prompt).
can_root() {
	[[ "$(id -u)" == 0 ]] || { have_cmd sudo && sudo -n true 2>/dev/null; }
}
# run_root CMD...: run as root, directly or through sudo.
run_root() {
	if [[ "$(id -u)" == 0 ]]; then
		"$@"
	else
		sudo -n "$@"
	fi
}

missing=() # apt packages to install

# need_cmd CMD PKG: PKG provides CMD.
need_cmd() { have_cmd "$1" || missing+=("$2"); }
# need_pkg PKG: a package without a command to probe (headers).
need_pkg() {
	if have_cmd dpkg-query; then
		have_pkg "$1" || missing+=("$1")
	fi
}

# Tools every target uses.
need_cmd make make
need_cmd git git

if ((want_generate)); then
	need_cmd "$CLANG" "clang$suffix"
	need_cmd "llvm-strip$suffix" "llvm$suffix" # bpf2go strips debug info with it
	need_pkg libbpf-dev                         # bpf/bpf_helpers.h and friends
	need_pkg linux-libc-dev                     # linux/*.h, asm/*.h
	if ! have_cmd dpkg-query; then
		[[ -e /usr/include/bpf/bpf_helpers.h ]] || missing+=(libbpf-dev)
		[[ -e /usr/include/linux/bpf.h ]] || missing+=(linux-libc-dev)
	fi
fi

skip_privileged=0
[[ "${CILIA_SKIP_PRIVILEGED:-}" == 1 ]] && skip_privileged=1

if ((want_test)); then
	if ! have_cmd ip && ((skip_privileged)) && ! can_root; then
		log "warning: ip (iproute2) missing and not root; CILIA_SKIP_PRIVILEGED=1, so continuing"
	else
		need_cmd ip iproute2     # netns/veth tests
		need_cmd tcpdump tcpdump # cilia sim capture and its test
		need_cmd iptables-restore iptables # cilia bench services (kube-proxy-style rules)
		need_cmd nsenter util-linux
	fi
fi

if ((${#missing[@]})); then
	# Deduplicate, keep order.
	declare -A seen=()
	pkgs=()
	for p in "${missing[@]}"; do
		[[ -n "${seen[$p]:-}" ]] && continue
		seen[$p]=1
		pkgs+=("$p")
	done
	have_cmd apt-get || die "missing ${pkgs[*]}, and this is not an apt system: install them with your package manager"
	can_root || die "missing ${pkgs[*]}; run this as root (or with passwordless sudo) to install them"
	log "installing ${pkgs[*]}"
	apt_opts=(-y -q --no-install-recommends -o Dpkg::Use-Pty=0 -o Acquire::Retries=3)
	run_root env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null || die "apt-get update failed"
	run_root env DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "${pkgs[@]}" </dev/null ||
		die "apt-get install ${pkgs[*]} failed"
else
	log "packages: all present"
fi

if ((want_generate)); then
	have_cmd "$CLANG" || die "$CLANG still not found after installing clang$suffix"
	log "compiler: $("$CLANG" --version | head -n1)"
fi

# bpffs: where the datapath pins maps. Tests and the agent need it mounted.
if ((want_test)); then
	fstype="$(stat -f -c %T /sys/fs/bpf 2>/dev/null || true)"
	if [[ "$fstype" == bpf_fs ]]; then
		log "bpffs: mounted at /sys/fs/bpf"
	else
		log "bpffs: mounting at /sys/fs/bpf"
		if ! { can_root && run_root mkdir -p /sys/fs/bpf && run_root mount -t bpf bpf /sys/fs/bpf; }; then
			if ((skip_privileged)) && ! can_root; then
				log "warning: could not mount bpffs (not root); CILIA_SKIP_PRIVILEGED=1, so continuing"
			else
				die "could not mount bpffs at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf): run as root on a kernel with BPF"
			fi
		fi
	fi
fi

if ! have_cmd go; then
	log "warning: go not found on PATH or in /usr/local/go/bin; install the Go version named in go.mod"
fi
