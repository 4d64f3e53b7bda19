#!/usr/bin/env bash
# Check that the committed bpf2go output (datapath/*_bpfel.go, *_bpfel.o) is
# what the bpf/ sources in this tree compile to.
#
# It never touches the working tree: the tree (tracked and untracked files,
# as they are on disk, minus what .gitignore ignores) is copied to a temporary
# git repository, the generated files are deleted there and regenerated with
# `go generate ./datapath/...`, and `git status --porcelain -- datapath` in the
# copy lists every file that would change. Exit 0 if none, 1 otherwise.
#
# Needs clang-19 and friends (hack/install-deps.sh --generate-only).
# Set KEEP_TMP=1 to keep the copy for inspection.
set -euo pipefail

export PATH="$PATH:/usr/local/go/bin"
GO="${GO:-go}"
command -v "$GO" >/dev/null 2>&1 || { echo "check-generated: $GO not found (looked on PATH and in /usr/local/go/bin)" >&2; exit 1; }
export PATH="$PATH:$("$GO" env GOPATH)/bin"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
git rev-parse --is-inside-work-tree >/dev/null 2>&1 ||
	{ echo "check-generated: $root is not a git work tree" >&2; exit 1; }

tmp="$(mktemp -d "${TMPDIR:-/tmp}/cilia-check-generated.XXXXXX")"
if [[ "${KEEP_TMP:-}" == 1 ]]; then
	echo "check-generated: keeping $tmp"
else
	trap 'rm -rf "$tmp"' EXIT
fi
copy="$tmp/src"
mkdir -p "$copy"

# Snapshot the tree as it is on disk (files deleted but not yet committed are
# left out).
git ls-files -z --cached --others --exclude-standard |
	while IFS= read -r -d '' f; do
		[[ -e "$f" || -L "$f" ]] && printf '%s\0' "$f"
	done |
	tar --null --no-recursion -T - -cf - | tar -xf - -C "$copy"

g() { git -C "$copy" -c user.name=check-generated -c user.email=check-generated@localhost \
	-c commit.gpgsign=false -c core.hooksPath=/dev/null -c init.defaultBranch=main "$@"; }
g init -q
g add -A
g commit -q --no-verify -m snapshot

# Delete what bpf2go writes, so an output no directive produces any more
# shows up as deleted.
find "$copy/datapath" -type f \( -name '*_bpfel.go' -o -name '*_bpfel.o' -o -name '*_bpfeb.go' -o -name '*_bpfeb.o' \) -delete

echo "check-generated: regenerating in a copy of the tree ($GO generate ./datapath/...)"
if ! (cd "$copy" && "$GO" generate ./datapath/...); then
	echo "check-generated: FAIL: go generate failed (is clang-19 installed? run hack/install-deps.sh --generate-only)" >&2
	exit 1
fi

status="$(g status --porcelain --untracked-files=all -- datapath)"
if [[ -z "$status" ]]; then
	echo "check-generated: OK: the generated files in datapath/ are current"
	exit 0
fi

{
	echo "check-generated: FAIL: the generated files in datapath/ are stale;"
	echo "regenerating from bpf/ changes them (M modified, D no longer generated, ?? new):"
	echo
	sed 's/^/    /' <<<"$status"
	echo
	# Show how the Go side changed (the .o files are binary).
	if ! g diff --quiet -- 'datapath/*.go'; then
		echo "Changes to the generated Go files (first 100 lines):"
		g --no-pager diff --stat -- 'datapath/*.go' | sed 's/^/    /'
		g --no-pager diff -- 'datapath/*.go' | head -n 100 | sed 's/^/    /'
		echo
	fi
	echo "Run 'make generate' and commit the result."
} >&2
exit 1
