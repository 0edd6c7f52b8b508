#!/usr/bin/env bash
# bench/embhome.sh: embedded `aigate run -q -- true` (as root, no agent)
# from a large home, this tree's build against one built from a git ref,
# side by side in interleaved rounds (bench/startup: medians, IQR, the
# per-round ratio). Figures: bench/results.md, docs/performance.md. Run as
# root from anywhere in the repository:
#
#   bench/embhome.sh                      # against main, 15 rounds, a generated home
#   bench/embhome.sh --before REF --rounds 30
#   bench/embhome.sh --home DIR           # from an existing home (read only)
#
# The generated home (~5,800 directories, ~161,000 files) has what a
# developer's has: a Go build cache (256 x 400 files), a module cache (40
# modules x 60 directories x 12 files), a project with node_modules (800
# packages), a git repository (256 object directories x 60, 400 source
# directories x 25). It lies beneath /home: beneath a shared temp
# directory Landlock covers nothing, so the caches would be protected by
# inode (bench/toolcache-notes.md). Each binary runs in a mount and
# network namespace of its own with its own /run, where it keeps its walk
# cache (/run/aigate/walk) and its BPF LSM verdict: two binaries in one
# /run replace each other's walk cache at every run.
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
rounds=15
before=main
home=
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) rounds=$2; shift ;;
	--before) before=$2; shift ;;
	--home) home=$2; shift ;;
	*) echo "usage: bench/embhome.sh [--rounds N] [--before GITREF] [--home DIR]" >&2; exit 2 ;;
	esac
	shift
done
if [ "$(id -u)" != 0 ]; then
	echo "bench/embhome.sh: needs root (an embedded aigate run); run it with sudo" >&2
	exit 1
fi

tmp=$(mktemp -d /home/aigate-embhome.XXXXXX)
chmod 755 "$tmp"
holders=()
cleanup() {
	for p in "${holders[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${holders[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

echo "== build this tree and $before" >&2
$GO build -o "$tmp/aigate-after" ./cmd/aigate
$GO build -o "$tmp/startup" ./bench/startup
mkdir "$tmp/before-src"
git archive "$before" | tar -x -C "$tmp/before-src"
(cd "$tmp/before-src" && $GO build -o "$tmp/aigate-before" ./cmd/aigate)

if [ -z "$home" ]; then
	home=$tmp/home
	echo "== generate a large home in $home" >&2
	mkdir -p "$home/.cache/go-build" "$home/proj/node_modules" "$home/repo/.git/objects" "$home/.ssh"
	(cd "$home/.cache/go-build" && for i in $(seq 0 255); do
		d=$(printf %02x "$i"); mkdir "$d"; (cd "$d" && seq -f "%06g-a" 1 400 | xargs touch)
	done)
	for m in $(seq 40); do for d in $(seq 60); do
		p=$home/go/pkg/mod/example.com/mod$m@v1.0.0/pkg/d$d
		mkdir -p "$p"; (cd "$p" && touch a.go b.go c.go d.go e.go f.go g_test.go h.go i.go j.go README.md LICENSE)
	done; done
	(cd "$home/proj/node_modules" && for p in $(seq 800); do
		mkdir -p "p$p/lib" "p$p/dist"; (cd "p$p" && touch package.json index.js README.md lib/a.js lib/b.js dist/x.js)
	done)
	(cd "$home/repo/.git/objects" && for i in $(seq 0 255); do
		d=$(printf %02x "$i"); mkdir "$d"; (cd "$d" && seq -f "%038g" 1 60 | xargs touch)
	done)
	(cd "$home/repo" && for i in $(seq 400); do
		d=src/m$((i % 20))/d$i; mkdir -p "$d"; (cd "$d" && touch f{1..25}.c)
	done)
	echo "KEY=x" >"$home/proj/.env"
	echo "k" >"$home/.ssh/id_rsa"
	# Older than the walk cache's 2 s margin (walkcache.go), as a real
	# home's directories are.
	sleep 3
fi
mkdir -p "$home/proj"

# holder NAME: a process in new mount and network namespaces with its own
# /run, for the runs of one binary to enter.
holder() {
	unshare --mount --net sh -c 'mount -t tmpfs tmpfs /run && ip link set lo up && exec sleep infinity' &
	holders+=($!)
	sleep 0.3
}
holder; hb=${holders[0]}
holder; ha=${holders[1]}
mkdir -m 0700 "$tmp/trust-before" "$tmp/trust-after"
run() { # PID BIN TRUST: the case's command
	echo "nsenter -t $1 -m -n --wd=$home/proj env HOME=$home AIGATE_SOCKET=/run/none.sock $2 run -q --trust-dir $3 -- true"
}
cases=(
	"before=$(run "$hb" "$tmp/aigate-before" "$tmp/trust-before")"
	"after=$(run "$ha" "$tmp/aigate-after" "$tmp/trust-after")"
)
load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "== $(find "$home" -xdev -type d | wc -l) directories, $(find "$home" -xdev -type f | wc -l) files; $rounds rounds (load $(load))" >&2
(cd "$home/proj" && "$tmp/startup" -rounds "$rounds" -warmup 2 -ref before "${cases[@]}")
echo "== load at the end $(load); before = $before ($(git rev-parse --short "$before"))" >&2
