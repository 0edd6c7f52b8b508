#!/bin/bash
# bench/startup-kept.sh OLD_BINARY [ROUNDS]: an embedded `aigate run -- true`
# (no agent, as root) of bin/aigate with its network programs kept
# (`kept`), of bin/aigate after the kept set is removed (`fresh`: loads
# and pins), of OLD_BINARY (`old`, e.g. a build of main) and bwrap,
# interleaved over ROUNDS rounds in an order rotating each round; prints
# the medians and the per-round ratios (docs/performance.md, start-up).
# Each binary runs in a mount namespace of its own with its own /run:
# lsm-probe.json remembers one binary, and alternating two in one /run
# would make each probe BPF LSM again at every run. It runs in a network
# namespace of its own, so no agent socket or metrics port is shared.
set -eu
# stdin from /dev/null: started with the stdin of a non-terminal harness,
# the inner shell was once killed by SIGTERM and once hung in a run
# (cause not found).
exec </dev/null
[ "$(id -u)" = 0 ] || { echo "bench/startup-kept.sh: needs root" >&2; exit 2; }
old=${1:?usage: bench/startup-kept.sh OLD_BINARY [ROUNDS]}
rounds=${2:-21}
new=$(cd "$(dirname "$0")/.." && pwd)/bin/aigate
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/home" "$tmp/run-new" "$tmp/run-old"
export HOME=$tmp/home tmp new old rounds

unshare --net bash -c '
set -eu
exec </dev/null
ip link set lo up
inrun() { local r=$1; shift; unshare --mount sh -c "mount --bind $tmp/run-$r /run && exec $*"; }
declare -A cmd=([old]="inrun old $old run -- true" [kept]="inrun new $new run -- true"
	[fresh]="inrun new $new run -- true" [bwrap]="inrun new bwrap --unshare-all --ro-bind / / true")
names=(old kept fresh bwrap)
for i in 1 2; do inrun new "$new" run -- true 2>/dev/null; inrun old "$old" run -- true 2>/dev/null; done
echo "load at the start: $(cat /proc/loadavg)" >&2
for ((r = 0; r < rounds; r++)); do
	for ((i = 0; i < 4; i++)); do
		n=${names[$(((i + r) % 4))]}
		[ "$n" = fresh ] && rm -rf /sys/fs/bpf/aigate-kept
		s=$(date +%s%N); eval "${cmd[$n]}" 2>/dev/null; e=$(date +%s%N)
		echo "$r $n $(((e - s) / 1000))"
	done
done >"$tmp/times"
echo "load at the end: $(cat /proc/loadavg)" >&2
'
python3 - "$tmp/times" <<'PY'
import sys
by = {}
for line in open(sys.argv[1]):
    r, n, us = line.split()
    by.setdefault(int(r), {})[n] = int(us) / 1000
def pct(xs, p):
    xs = sorted(xs); k = (len(xs) - 1) * p; f = int(k); c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)
for n in ["old", "kept", "fresh", "bwrap"]:
    xs = [by[r][n] for r in by]
    print("%-5s median %.1f ms (IQR %.1f-%.1f)" % (n, pct(xs, .5), pct(xs, .25), pct(xs, .75)))
for a, b in [("kept", "old"), ("fresh", "old"), ("kept", "fresh"), ("kept", "bwrap"), ("old", "bwrap")]:
    xs = [by[r][a] / by[r][b] for r in by]
    print("%s vs %s: %.3fx (IQR %.3f-%.3f, min-max %.3f-%.3f), %d rounds" % (a, b, pct(xs, .5), pct(xs, .25), pct(xs, .75), min(xs), max(xs), len(xs)))
PY
