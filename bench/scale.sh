#!/usr/bin/env bash
# bench/scale.sh: per-operation cost inside a sandbox against rule count and
# sandbox count, and the agent's memory (bench/scale/main.go says how), then
# the two PNG plots and the "Rule count and sandbox count" section of
# docs/performance.md. Run as root from anywhere in the repository:
#
#   bench/scale.sh                  # measure, write bench/scale-results.tsv, plot, write the section
#   bench/scale.sh --plot           # only plot bench/scale-results.tsv and write the section again (no root)
#   bench/scale.sh --rounds 40      # rounds per figure (default 20: the round trips are noisy)
#   bench/scale.sh --aigate BIN --rules 10,10000 --sandboxes 0 --out FILE
#                                   # measure another build (before/after), fewer points, elsewhere
#
# The agent and its sandboxes run in mount and network namespaces of their
# own, so the socket and the loopback address collide with nobody's.
# `make bench` runs it after bench/startup.sh, which rewrites
# docs/performance.md without this section.
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
rounds=20
measure=1
aigate=
ruleCounts=10,100,1000,10000
boxCounts=1,100,1000
out=bench/scale-results.tsv
while [ $# -gt 0 ]; do
	case $1 in
	--plot) measure=0 ;;
	--rounds) rounds=$2; shift ;;
	--aigate) aigate=$2; shift ;;
	--rules) ruleCounts=$2; shift ;;
	--sandboxes) boxCounts=$2; shift ;;
	--out) out=$2; shift ;;
	*) echo "usage: bench/scale.sh [--plot] [--rounds N] [--aigate BIN] [--rules N,..] [--sandboxes N,..] [--out FILE]" >&2; exit 2 ;;
	esac
	shift
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ "$measure" = 1 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "bench/scale.sh: needs root (an agent, cgroups, fanotify marks); run it with sudo" >&2
		exit 1
	fi
	if [ -z "$aigate" ]; then
		make build >&2
		aigate=bin/aigate
	fi
	CGO_ENABLED=0 $GO build -o "$tmp/scale" ./bench/scale
	{
		echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)$([ "$aigate" != bin/aigate ] && echo " (agent: $aigate)"), kernel $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $rounds rounds"
		AIGATE_BENCH_ROUNDS=$rounds unshare --mount --net sh -c \
			'mount -t tmpfs tmpfs /run && ip link set lo up && exec "$0" -aigate "$1" -n 4000 -rules "$2" -sandboxes "$3"' \
			"$tmp/scale" "$aigate" "$ruleCounts" "${boxCounts:-0}"
	} >"$tmp/out.tsv"
	mv "$tmp/out.tsv" "$out"
	if [ "$out" != bench/scale-results.tsv ]; then
		echo "bench/scale.sh: wrote $out (not plotted: only bench/scale-results.tsv is)" >&2
		exit 0
	fi
fi
command -v gnuplot >/dev/null || { echo "bench/scale.sh: gnuplot is missing: apt-get install gnuplot-nox" >&2; exit 1; }
sub=$(sed -n '1s/^# //p' "$out")
# gnuplot skips the comment line; the header row is not numeric and is skipped too.
gnuplot -e "in='$out'; dir='docs'; sub='$sub'" bench/scale.gp

# The section of docs/performance.md: conditions and tables from the TSV,
# then the hand-written reading of them (bench/scale-notes.md).
cell() { # kind x op -> "ratio (q1-q3)"
	awk -F'\t' -v k="$1" -v x="$2" -v o="$3" '$1 == k && $2 == x && $3 == o { printf "%.2fx (%.2f-%.2f)", $4, $5, $6 }' "$out"
}
ns() { # kind x op -> case ns/op against baseline ns/op, in us
	awk -F'\t' -v k="$1" -v x="$2" -v o="$3" '$1 == k && $2 == x && $3 == o { printf "%.1f us against %.1f us", $9 / 1000, $10 / 1000 }' "$out"
}
rss() { # kind x -> agent MiB
	awk -F'\t' -v k="$1" -v x="$2" '$1 == k && $2 == x { m = $11 } END { printf "%.0f MiB", m }' "$out"
}
cpu() { # kind x -> the agent's CPU while idle, % of one CPU ("-" when not measured)
	awk -F'\t' -v k="$1" -v x="$2" '$1 == k && $2 == x { c = $12 } END { if (c == "" || c < 0) printf "-"; else printf "%.1f%%", c }' "$out"
}
perBox() { # x -> the agent's RSS added per sandbox from 1 to x, in KiB
	awk -F'\t' -v x="$1" '$1 == "sandboxes" && $2 == 1 { a = $11 } $1 == "sandboxes" && $2 == x { b = $11 }
		END { if (x > 1 && a > 0) printf "%.0f KiB", (b - a) * 1024 / (x - 1); else printf "-" }' "$out"
}
xs() { awk -F'\t' -v k="$1" '$1 == k && !seen[$2]++ { print $2 }' "$out"; }
{
	echo "## Rule count and sandbox count"
	echo
	echo "Written by \`bench/scale.sh\` (method in [bench/README.md](../bench/README.md),"
	echo "program \`bench/scale/main.go\`, raw figures in"
	echo "[bench/scale-results.tsv](../bench/scale-results.tsv)); plots by \`bench/scale.gp\`."
	echo
	echo "- measured: $sub."
	echo "- fanotify backend and the cgroup sock_addr programs (this host refuses BPF LSM)."
	echo "- Each round is one measurement of the baseline and one of the case, interleaved; a"
	echo "  measurement is 4,000 operations (400 for the round trips), its cost the median"
	echo "  batch's. Figures: the median ratio over the rounds (IQR in brackets)."
	echo
	echo "Operations, by a worker process inside the sandbox: **open**, open+close of"
	echo "a file no rule names; **prot**, open+close read-only of a deny_write file"
	echo "(allowed, but a round trip to the agent on fanotify); **conn**, connect of"
	echo "a UDP socket to 127.0.0.1, allowed by allow_net."
	echo
	echo "### Against rule count"
	echo
	echo "A sandbox with N rules (deny_read names, \`*.ext\` globs and \`~/\` paths and"
	echo "allow_net addresses, a quarter each) against a sandbox with 10, both alive,"
	echo "their workers measured alternately. Target: at most 1.05x at 10,000 rules."
	echo
	echo "![per-operation cost against rule count](performance-rules.png)"
	echo
	echo "| rules | open | prot (round trip) | conn |"
	echo "|---:|---|---|---|"
	for x in $(xs rules); do
		echo "| $x | $(cell rules "$x" open) | $(cell rules "$x" prot), $(ns rules "$x" prot) | $(cell rules "$x" conn) |"
	done
	echo
	echo "### Against sandbox count"
	echo
	echo "The 10-rule sandbox's worker against the same worker outside any sandbox,"
	echo "with 1, 100 and 1,000 sandboxes held by one agent; the agent's resident set"
	echo "(VmRSS) at each. The agent allows 32 sandboxes per user and is not changed:"
	echo "root may create a sandbox for any uid, so the idle sandboxes (a placed"
	echo "\`sleep\` each) belong to owners 60000 and up, 32 each, with a home of their"
	echo "own per owner."
	echo
	echo "![per-operation cost against sandbox count](performance-sandboxes.png)"
	echo
	if [ -n "$(xs idle)" ]; then
		echo "The agent idle, before any sandbox: $(rss idle 0) resident, $(cpu idle 0) of a CPU."
		echo "Agent CPU while idle: its utime+stime over 5 s in which nothing happens"
		echo "in its sandboxes (their workers wait), at each sandbox count."
		echo
	fi
	echo "| sandboxes | agent RSS | RSS per sandbox from 1 | agent CPU while idle | open | prot (round trip) | conn |"
	echo "|---:|---:|---:|---:|---|---|---|"
	for x in $(xs sandboxes); do
		echo "| $x | $(rss sandboxes "$x") | $(perBox "$x") | $(cpu sandboxes "$x") | $(cell sandboxes "$x" open) | $(cell sandboxes "$x" prot), $(ns sandboxes "$x" prot) | $(cell sandboxes "$x" conn) |"
	done
	if [ -f bench/scale-notes.md ]; then
		echo
		cat bench/scale-notes.md
	fi
} >"$tmp/section.md"
# Replace the section (up to the next "## " heading) or append it.
doc=docs/performance.md
[ -f "$doc" ] || : >"$doc"
awk -v sec="$tmp/section.md" '
	function put(  l) { while ((getline l < sec) > 0) print l; done = 1 }
	/^## Rule count and sandbox count$/ { put(); skip = 1; next }
	skip && /^## / { skip = 0; print "" }
	!skip { print }
	END { if (!done) { print ""; put() } }' "$doc" >"$tmp/doc.md"
cat "$tmp/doc.md" >"$doc"
echo "bench/scale.sh: wrote $out, docs/performance-rules.png, docs/performance-sandboxes.png and its section of $doc" >&2
