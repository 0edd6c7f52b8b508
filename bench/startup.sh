#!/usr/bin/env bash
# bench/startup.sh: start-up of `aigate run -- true` side by side with the
# peers, bubblewrap and srt (Anthropic's sandbox-runtime), and with no
# sandbox; writes its sections of docs/performance.md (the others stay)
# and its plot. Run as root from
# anywhere in the repository:
#
#   bench/startup.sh                  # 15 interleaved rounds
#   bench/startup.sh --rounds 30
#   bench/startup.sh --before main    # also aigate built from a git ref, for before/after ratios
#   bench/startup.sh --big-home /root # also from a large home (fanotify walks it), 3 rounds
#   bench/startup.sh --big-home gen   # the same from a generated home: 18,000 directories, 54,000 files
#
# Its own setup installs the peers: bubblewrap, socat and ripgrep (srt's
# Linux dependencies) and gnuplot through apt, srt through npm at a pinned
# version into a cache directory. srt runs with a settings file of its own
# that allows no network domain, so nothing external is contacted.
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
rounds=15
before=
bighome=
bigrounds=3
out=docs/performance.md
plot=docs/performance-startup.png
srtver=0.0.83
cache=${AIGATE_BENCH_CACHE:-/var/tmp/aigate-bench}
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) rounds=$2; shift ;;
	--before) before=$2; shift ;;
	--big-home) bighome=$2; shift ;;
	--big-rounds) bigrounds=$2; shift ;;
	--out) out=$2; shift ;;
	*) echo "usage: bench/startup.sh [--rounds N] [--before GITREF] [--big-home DIR|gen [--big-rounds N]] [--out FILE]" >&2; exit 2 ;;
	esac
	shift
done
if [ "$(id -u)" != 0 ]; then
	echo "bench/startup.sh: needs root (the aigate agent, an embedded aigate run); run it with sudo" >&2
	exit 1
fi

# Setup: the peers and the plotting tool.
need=()
for p in bwrap:bubblewrap socat:socat rg:ripgrep gnuplot:gnuplot-nox; do
	command -v "${p%%:*}" >/dev/null || need+=("${p#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
	echo "== apt-get install ${need[*]}" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2
fi
srt=$cache/srt-$srtver/node_modules/.bin/srt
if [ ! -x "$srt" ]; then
	echo "== npm install @anthropic-ai/sandbox-runtime@$srtver into $cache" >&2
	mkdir -p "$cache/srt-$srtver"
	npm install --no-audit --no-fund --prefix "$cache/srt-$srtver" "@anthropic-ai/sandbox-runtime@$srtver" >&2
fi

tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

echo "== build" >&2
$GO build -o "$tmp/aigate" ./cmd/aigate
$GO build -o "$tmp/startup" ./bench/startup
if [ -n "$before" ]; then
	mkdir "$tmp/before-src"
	git archive "$before" | tar -x -C "$tmp/before-src"
	(cd "$tmp/before-src" && $GO build -o "$tmp/aigate-before" ./cmd/aigate)
fi

# srt: no domain allowed (no network at all), reads denied like aigate's
# defaults would, writes in the project only.
cat >"$tmp/srt.json" <<'JSON'
{"network": {"allowedDomains": [], "deniedDomains": []},
 "filesystem": {"denyRead": ["~/.ssh", "~/.aws"], "allowWrite": ["."], "denyWrite": [".env"]}}
JSON

# home NAME: a small home with a project, one per case so that no two
# agents mark the same directories.
home() {
	mkdir -p "$tmp/$1/proj/src" "$tmp/$1/.ssh"
	echo "KEY=x" >"$tmp/$1/proj/.env"
	echo "$tmp/$1"
}

# The agents and the embedded runs keep their policy records in a trust
# directory of the script's own (root's, 0700, removed at the end), not in
# the machine's /var/lib/aigate/trust: a benchmark must not write the
# records that decide whether a user's real runs are refused.
trust=$tmp/trust
mkdir -m 0700 "$trust"

# agent NAME BIN: an agent of its own, its socket in tmp, no metrics port.
agent() {
	"$2" agent --backend auto --socket "$tmp/$1.sock" --metrics-addr "" --trust-dir "$trust/$1" --log-level error 2>"$tmp/$1.log" &
	pids+=($!)
	for _ in $(seq 100); do [ -S "$tmp/$1.sock" ] && return; sleep 0.1; done
	echo "bench/startup.sh: the $1 agent did not start:" >&2
	cat "$tmp/$1.log" >&2
	exit 1
}

# genhome DIR: a large home, the same on every machine: 20 x 30 x 30
# directories of three files each, and a project with a .env. Its
# directories must be older than the walk cache's 2 s margin
# (internal/fanotify/walkcache.go) to be cached, as a real home's are.
genhome() {
	mkdir -p "$1/proj"
	echo "KEY=x" >"$1/proj/.env"
	(cd "$1" && mkdir -p p{0..19}/m{0..29}/n{0..29} &&
		printf '%s\n' p{0..19}/m{0..29}/n{0..29}/{a.go,b.txt,README} | xargs touch)
	sleep 3
}
bighome_before=$bighome
if [ "$bighome" = gen ]; then
	# One copy per agent, so that neither walks a tree the other's marks
	# are on.
	bighome=$tmp/bighome bighome_before=$tmp/bighome-before
	echo "== generate large homes in $bighome and $bighome_before" >&2
	genhome "$bighome"
	genhome "$bighome_before"
fi

cases=(
	"bare=true"
	"bwrap=bwrap --unshare-all --ro-bind / / true"
	"srt=HOME=$(home srt) $srt --settings $tmp/srt.json true"
)
agent after "$tmp/aigate"
cases+=("aigate=AIGATE_SOCKET=$tmp/after.sock HOME=$(home after) $tmp/aigate run -- true")
if [ -n "$before" ]; then
	agent before "$tmp/aigate-before"
	cases+=("aigate-$before=AIGATE_SOCKET=$tmp/before.sock HOME=$(home before) $tmp/aigate-before run -- true")
fi
cases+=("aigate-embedded=AIGATE_SOCKET=$tmp/none.sock HOME=$(home embedded) $tmp/aigate run --trust-dir $trust/embedded -- true")
[ -n "$before" ] && cases+=("aigate-$before-embedded=AIGATE_SOCKET=$tmp/none-before.sock HOME=$(home embedded-before) $tmp/aigate-before run --trust-dir $trust/embedded-before -- true")

load() { cut -d' ' -f1-3 /proc/loadavg; }
load_start=$(load)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
echo "== $rounds rounds (load $load_start)" >&2
refs=bwrap,srt
[ -n "$before" ] && refs=$refs,aigate-$before,aigate-$before-embedded
mkdir "$tmp/work"
(cd "$tmp/work" && "$tmp/startup" -rounds "$rounds" -ref "$refs" -tsv "$tmp/raw.tsv" "${cases[@]}") >"$tmp/summary.tsv"
if [ -n "$bighome" ]; then
	big=("aigate-big=AIGATE_SOCKET=$tmp/after.sock HOME=$bighome $tmp/aigate run -- true")
	big+=("aigate-big-embedded=AIGATE_SOCKET=$tmp/none.sock HOME=$bighome $tmp/aigate run --trust-dir $trust/embedded -- true")
	if [ -n "$before" ]; then
		big+=("aigate-$before-big=AIGATE_SOCKET=$tmp/before.sock HOME=$bighome_before $tmp/aigate-before run -- true")
		big+=("aigate-$before-big-embedded=AIGATE_SOCKET=$tmp/none-before.sock HOME=$bighome_before $tmp/aigate-before run --trust-dir $trust/embedded-before -- true")
		bigrefs=(aigate-$before-big aigate-$before-big-embedded)
	else
		bigrefs=(aigate-big aigate-big-embedded)
	fi
	echo "== $bigrounds rounds from $bighome (load $(load))" >&2
	(cd "$tmp/work" && "$tmp/startup" -rounds "$bigrounds" -warmup 1 -ref "$(IFS=,; echo "${bigrefs[*]}")" "${big[@]}") >"$tmp/big.tsv"
	cat "$tmp/big.tsv" >&2
fi
load_end=$(load)
cat "$tmp/summary.tsv" >&2

# The plot: median wall time per case, the interquartile range as the
# error bar, log scale.
awk -F'\t' 'NR > 1 && $8 == "bwrap"' "$tmp/summary.tsv" >"$tmp/plot.tsv"
gnuplot -e "in='$tmp/plot.tsv'; out='$plot'; sub='$started, $(uname -r), $(nproc) CPUs, load $load_start'" bench/startup.gp

row() { # case ref [file] -> "median (q1-q3, min-max)"
	awk -F'\t' -v c="$1" -v r="$2" '$1 == c && $8 == r { printf "**%.3gx** (IQR %.3g-%.3g, min-max %.3g-%.3g)", $9, $10, $11, $12, $13 }' "${3:-$tmp/summary.tsv}"
}
abs() { # case [file] -> "ms (IQR) MiB"
	awk -F'\t' -v c="$1" '$1 == c && !seen++ { printf "%.1f ms (IQR %.1f-%.1f) | %.1f MiB", $2, $3, $4, $7 }' "${2:-$tmp/summary.tsv}"
}
names=$(awk -F'\t' 'NR > 1 && !seen[$1]++ { print $1 }' "$tmp/summary.tsv")
{
	echo "# aigate performance"
	echo
	echo "Written by \`make bench\` (\`bench/startup.sh\`; per-operation figures by \`bench/run.sh\`"
	echo "in [bench/results.md](../bench/results.md), method in [bench/README.md](../bench/README.md))."
	echo
	echo "- date: $started"
	echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$([ -n "$(git status --porcelain -- . ':!docs/performance*' 2>/dev/null)" ] && echo ' (with uncommitted changes)')"
	echo "- kernel: $(uname -r)"
	echo "- machine: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "- load average (1, 5, 15 min): $load_start at the start, $load_end at the end"
	echo "- peers: $(bwrap --version 2>/dev/null | head -1), srt $srtver (npm @anthropic-ai/sandbox-runtime, no domain allowed)"
	echo
	echo "This machine is a shared 2-CPU VM on which other work runs: absolute times move with"
	echo "the load, and figures taken while it is high are noisy. What is comparable is each"
	echo "ratio: every round runs every case once, back to back, in an order rotating from round"
	echo "to round; a ratio is taken within a round, and the figure is the median over $rounds rounds,"
	echo "with its interquartile range and extremes."
	echo
	echo "## Start-up: \`run -- true\`"
	echo
	echo "Whole-process wall time of starting a sandbox around \`true\` and tearing it down,"
	echo "from a small home. aigate goes through an agent (its own, started by the script) or"
	echo "embeds one (\`aigate-embedded\`, as root with no agent running); MiB is the largest"
	echo "resident set of the process and the children it waited for (the agent's is not counted)."
	echo
	echo "![start-up against the peers](performance-startup.png)"
	echo
	echo "| case | median (IQR) | peak RSS | vs bwrap | vs srt |$([ -n "$before" ] && echo " vs aigate-$before | vs aigate-$before-embedded |")"
	echo "|---|---|---:|---|---|$([ -n "$before" ] && echo "---|---|")"
	for c in $names; do
		echo "| $c | $(abs "$c") | $(row "$c" bwrap) | $(row "$c" srt) |$([ -n "$before" ] && echo " $(row "$c" "aigate-$before") | $(row "$c" "aigate-$before-embedded") |")"
	done
	echo
	if [ -n "$bighome" ]; then
		echo "## Start-up from a large home"
		echo
		echo "The same \`aigate run -- true\` through the agent with HOME=$bighome ($(du -sh "$bighome" 2>/dev/null | cut -f1),"
		echo "$(find "$bighome" -xdev -type d 2>/dev/null | wc -l) directories): the fanotify backend walks the home for name rules"
		echo "(\`.env\`, \`*.pem\`) and marks its directories, for each sandbox; an agent reuses the listing of a directory"
		echo "that has not changed since an earlier walk (internal/fanotify/walkcache.go), and an embedded run (\`-embedded\`)"
		echo "the listings an earlier run left in /run/aigate/walk (walkpersist.go). $bigrounds rounds after one warm-up."
		echo
		echo "| case | median (IQR) | peak RSS | vs ${bigrefs[0]} | vs ${bigrefs[1]} |"
		echo "|---|---|---:|---|---|"
		for c in $(awk -F'\t' 'NR > 1 && !seen[$1]++ { print $1 }' "$tmp/big.tsv"); do
			echo "| $c | $(abs "$c" "$tmp/big.tsv") | $(row "$c" "${bigrefs[0]}" "$tmp/big.tsv") | $(row "$c" "${bigrefs[1]}" "$tmp/big.tsv") |"
		done
		echo
	fi
	echo "Commands: \`bare\` is \`true\` alone; \`bwrap\` is \`bwrap --unshare-all --ro-bind / / true\`;"
	echo "\`srt\` is \`srt --settings FILE true\`; \`aigate\` is \`aigate run -- true\` with the default policy."
	[ -n "$before" ] && echo "\`aigate-$before\` is the same built from git ref \`$before\` ($(git rev-parse --short "$before")), through an agent of its own; \`aigate-$before-embedded\` that build embedding its agent."
	if [ -f bench/startup-notes.md ]; then
		echo
		cat bench/startup-notes.md
	fi
} >"$tmp/section.md"
# Replace only this script's part of $out: the head above the first "## "
# heading and its own sections (the start-up ones and those of
# bench/startup-notes.md); the other scripts' sections (bench/scale.sh,
# bench/realwork.sh) stay as they are, after it.
{
	echo "## Start-up: \`run -- true\`"
	echo "## Start-up from a large home"
	[ -f bench/startup-notes.md ] && grep '^## ' bench/startup-notes.md
} >"$tmp/own.txt"
[ -f "$out" ] || : >"$out"
awk -v own="$tmp/own.txt" '
	BEGIN { while ((getline l < own) > 0) mine[l] = 1; skip = 1 }
	/^## / { skip = ($0 in mine) }
	!skip { print }' "$out" >"$tmp/rest.md"
{
	cat "$tmp/section.md"
	if [ -s "$tmp/rest.md" ]; then
		echo
		cat "$tmp/rest.md"
	fi
} >"$tmp/doc.md"
cat "$tmp/doc.md" >"$out"
echo "bench/startup.sh: wrote its sections of $out and $plot" >&2
