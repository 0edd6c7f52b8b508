#!/usr/bin/env bash
# bench/binstart.sh: the aigate binary's own start-ups, this tree against a
# git ref, side by side (bench/startup, interleaved rounds):
#
#   version   `aigate version`: the Go start-up every process pays
#   helper    the exec helper alone, started as launch.Prepare starts it with
#             its go-ahead already in the pipe, exec'ing /bin/true (the
#             `helper-none` case is the same wrapper exec'ing /bin/true
#             directly: what is not the helper's)
#   run       `aigate run -- true` through an agent of each binary's own
#             (as root only: sockets, trust directories and homes in a
#             temporary directory, no metrics port)
#
#   bench/binstart.sh --before main                 # wall time, 100 rounds
#   bench/binstart.sh --before main --metric cpu    # user + system time
#   bench/binstart.sh --before main --rounds 300 --only version,helper
#
# Prints bench/startup's tables (ratios against the `before` binary's case).
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
rounds=100
before=
metric=wall
only=version,helper,run
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) rounds=$2; shift ;;
	--before) before=$2; shift ;;
	--metric) metric=$2; shift ;;
	--only) only=$2; shift ;;
	*) echo "usage: bench/binstart.sh --before GITREF [--rounds N] [--metric wall|cpu] [--only version,helper,run]" >&2; exit 2 ;;
	esac
	shift
done
[ -n "$before" ] || { echo "bench/binstart.sh: --before GITREF is required" >&2; exit 2; }

tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

echo "== build this tree and $before" >&2
CGO_ENABLED=0 $GO build -trimpath -ldflags '-s -w' -o "$tmp/after/aigate" ./cmd/aigate
$GO build -o "$tmp/startup" ./bench/startup
mkdir "$tmp/before-src"
git archive "$before" | tar -x -C "$tmp/before-src"
(cd "$tmp/before-src" && CGO_ENABLED=0 $GO build -trimpath -ldflags '-s -w' -o "$tmp/before/aigate" ./cmd/aigate)

# The helper reads its go-ahead ('g' and JSON: no Landlock options, no
# filter but its own) from the descriptor AIGATE_SANDBOX_FD names.
printf 'g{}' >"$tmp/goahead"
cat >"$tmp/helper.sh" <<SH
#!/bin/sh
exec 3<$tmp/goahead
AIGATE_SANDBOX_EXEC=/bin/true AIGATE_SANDBOX_FD=3 exec "\$1"
SH
chmod +x "$tmp/helper.sh"

cases=()
refs=()
case ,$only, in *,version,*)
	cases+=("version-before=$tmp/before/aigate version" "version=$tmp/after/aigate version")
	refs+=(version-before) ;;
esac
case ,$only, in *,helper,*)
	cases+=("helper-before=$tmp/helper.sh $tmp/before/aigate" "helper=$tmp/helper.sh $tmp/after/aigate" "helper-none=$tmp/helper.sh /bin/true")
	refs+=(helper-before) ;;
esac
case ,$only, in *,run,*)
	if [ "$(id -u)" != 0 ]; then
		echo "bench/binstart.sh: the run cases need root (an agent each); skipped" >&2
	else
		mkdir -m 0700 "$tmp/trust"
		for b in before after; do
			mkdir -p "$tmp/home-$b/proj"
			"$tmp/$b/aigate" agent --backend auto --socket "$tmp/$b.sock" --metrics-addr "" --trust-dir "$tmp/trust/$b" --log-level error 2>"$tmp/$b.log" &
			pids+=($!)
			for _ in $(seq 100); do [ -S "$tmp/$b.sock" ] && break; sleep 0.1; done
			[ -S "$tmp/$b.sock" ] || { echo "bench/binstart.sh: the $b agent did not start:" >&2; cat "$tmp/$b.log" >&2; exit 1; }
		done
		cases+=("run-before=AIGATE_SOCKET=$tmp/before.sock HOME=$tmp/home-before $tmp/before/aigate run -- true"
			"run=AIGATE_SOCKET=$tmp/after.sock HOME=$tmp/home-after $tmp/after/aigate run -- true"
			"bwrap=bwrap --unshare-all --ro-bind / / true")
		refs+=(run-before bwrap)
	fi ;;
esac

mkdir "$tmp/work"
echo "== $rounds rounds, $metric (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
(cd "$tmp/work" && "$tmp/startup" -rounds "$rounds" -metric "$metric" -ref "$(IFS=,; echo "${refs[*]}")" "${cases[@]}")
echo "== load at the end $(cut -d' ' -f1-3 /proc/loadavg)" >&2
