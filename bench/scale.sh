#!/usr/bin/env bash
# bench/scale.sh: per-operation cost inside a sandbox against rule count and
# sandbox count, and the agent's memory (bench/scale/main.go says how), then
# the two PNG plots of docs/performance.md. Run as root from anywhere in the
# repository:
#
#   bench/scale.sh                  # measure, write bench/scale-results.tsv, plot
#   bench/scale.sh --plot           # only plot bench/scale-results.tsv again
#   bench/scale.sh --rounds 40      # rounds per figure (default 20: the round trips are noisy)
#
# The agent and its sandboxes run in mount and network namespaces of their
# own, so the socket and the loopback address collide with nobody's.
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
rounds=20
measure=1
while [ $# -gt 0 ]; do
	case $1 in
	--plot) measure=0 ;;
	--rounds) rounds=$2; shift ;;
	*) echo "usage: bench/scale.sh [--plot] [--rounds N]" >&2; exit 2 ;;
	esac
	shift
done
out=bench/scale-results.tsv
if [ "$measure" = 1 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "bench/scale.sh: needs root (an agent, cgroups, fanotify marks); run it with sudo" >&2
		exit 1
	fi
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	make build >&2
	CGO_ENABLED=0 $GO build -o "$tmp/scale" ./bench/scale
	{
		echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD), kernel $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $rounds rounds"
		AIGATE_BENCH_ROUNDS=$rounds unshare --mount --net sh -c \
			'mount -t tmpfs tmpfs /run && ip link set lo up && exec "$0" -aigate bin/aigate -n 4000' "$tmp/scale"
	} >"$tmp/out.tsv"
	mv "$tmp/out.tsv" "$out"
fi
command -v gnuplot >/dev/null || { echo "bench/scale.sh: gnuplot is missing: apt-get install gnuplot-nox" >&2; exit 1; }
sub=$(sed -n '1s/^# //p' "$out")
# gnuplot skips the comment line; the header row is not numeric and is skipped too.
gnuplot -e "in='$out'; dir='docs'; sub='$sub'" bench/scale.gp
echo "bench/scale.sh: wrote $out, docs/performance-rules.png, docs/performance-sandboxes.png" >&2
