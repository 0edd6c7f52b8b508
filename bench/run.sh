#!/usr/bin/env bash
# bench/run.sh: aigate's overhead as ratios against no aigate, measured side
# by side (bench/README.md explains the method). Run as root from anywhere
# in the repository:
#
#   bench/run.sh                 # host benchmarks, then the BPF-LSM ones in the 6.1 guest
#   bench/run.sh --no-vm         # host only
#   bench/run.sh --vm-only       # the guest only (the host rows are kept)
#   bench/run.sh --rounds 20     # rounds per host figure (default 10)
#   bench/run.sh --vm-rounds 60  # rounds per guest figure (default 40: the
#                                # emulated guest is far noisier than the host)
#   bench/run.sh --out FILE      # where the table goes (default bench/results.md)
#
# It builds each package's test binary once, runs its benchmarks, and
# writes one markdown table with the date, kernel, CPU and load average.
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
rounds=10
vmrounds=40
out=bench/results.md
vm=1
host=1
vmkernel=${VMKERNEL:-6.1}
while [ $# -gt 0 ]; do
	case $1 in
	--no-vm) vm=0 ;;
	--vm-only) host=0 ;;
	--rounds) rounds=$2; shift ;;
	--vm-rounds) vmrounds=$2; shift ;;
	--out) out=$2; shift ;;
	--kernel) vmkernel=$2; shift ;;
	*) echo "usage: bench/run.sh [--no-vm | --vm-only] [--rounds N] [--vm-rounds N] [--out FILE] [--kernel 6.1|6.12]" >&2; exit 2 ;;
	esac
	shift
done
if [ "$vm" = 0 ] && [ "$host" = 0 ]; then
	echo "bench/run.sh: --no-vm and --vm-only leave nothing to run; give one of them" >&2
	exit 2
fi
if [ "$(id -u)" != 0 ]; then
	echo "bench/run.sh: needs root (fanotify marks, cgroups, BPF programs); run it with sudo" >&2
	exit 1
fi
export AIGATE_BENCH_ROUNDS=$rounds
# A benchmark that cannot run must say so, not skip quietly.
export AIGATE_REQUIRE_KERNEL=1


tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
raw=$tmp/raw.txt
: >"$raw"

# --no-vm keeps the guest rows of the results it replaces, marked with the
# date they were measured, and any section added below the generated part
# ("## ..."), so that a host-only run does not lose them.
kept_date=
kept_guest=
if [ "$vm" = 0 ] && [ -f "$out" ]; then
	# Rows kept once already keep the date they were measured on.
	kept_date=$(sed -n 's/^- guest rows: kept from the results of \(.*\) (this run.*/\1/p' "$out" | head -1)
	[ -n "$kept_date" ] || kept_date=$(sed -n 's/^- date: //p' "$out" | head -1)
	kept_guest=$(sed -n 's/^- guest: Linux \([^ ]*\) .*/\1/p' "$out" | head -1)
	awk '/^## /{exit} /^guest:Benchmark/' "$out" >"$tmp/kept-rows.txt"
	awk '/^## /{p=1} p' "$out" >"$tmp/kept-sections.md"
fi
# --vm-only does the converse: it keeps the host rows, with their date.
kept_host_date=
if [ "$host" = 0 ] && [ -f "$out" ]; then
	kept_host_date=$(sed -n 's/^- host rows: kept from the results of \(.*\) (this run.*/\1/p' "$out" | head -1)
	[ -n "$kept_host_date" ] || kept_host_date=$(sed -n 's/^- date: //p' "$out" | head -1)
	awk '/^## /{exit} /^Benchmark/' "$out" >"$tmp/kept-host-rows.txt"
	awk '/^## /{p=1} p' "$out" >"$tmp/kept-sections.md"
fi

load() { cut -d' ' -f1-3 /proc/loadavg; }
load_start=$(load)
started=$(date -u '+%Y-%m-%d %H:%M UTC')

# run PKG BENCH BENCHTIME: one package's benchmarks from its prebuilt binary.
run() {
	local pkg=$1 re=$2 n=$3 bin
	bin=$tmp/$(basename "$pkg").test
	[ -x "$bin" ] || CGO_ENABLED=0 $GO test -c -o "$bin" "./$pkg"
	echo "== $pkg -bench '$re' -benchtime=$n (load $(load))" >&2
	(cd "$pkg" && "$bin" -test.run '^$' -test.bench "$re" -test.benchtime="$n") | tee -a "$raw" >&2
}

# Cheap operations get more of them per measurement; a fanotify round trip
# (tens of microseconds) fewer, so that each benchmark stays within seconds.
if [ "$host" = 1 ]; then
	run internal/fanotify 'Open/.*/^(unmarked|ignored)$' 20000x
	run internal/fanotify 'Open/.*/^(child-event|marked|exec-binary)$' 2000x
	run internal/fanotify 'RoundTripFloor' 2000x
	run internal/fanotify 'ExecFS' 300x
	run internal/fanotify 'TmpChurn/^(trees|above|in-tmp)$' 20000x
	run internal/loader 'NetConnect' 20000x
	run internal/dns 'Query' 2000x
elif [ -s "$tmp/kept-host-rows.txt" ]; then
	cat "$tmp/kept-host-rows.txt" >>"$raw"
fi

guest=
if [ "$vm" = 1 ]; then
	echo "== vmtest --kernel $vmkernel ./internal/lsm -bench OpenClose (load $(load))" >&2
	$GO run ./vmtest --kernel "$vmkernel" --pkg ./internal/lsm --env AIGATE_BENCH_ROUNDS="$vmrounds" --timeout 20m -- \
		-test.run '^$' -test.bench 'OpenClose' -test.benchtime=1000x | tee "$tmp/vm.txt" >&2
	guest=$(sed -n 's/^vmtest: guest kernel //p' "$tmp/vm.txt")
	sed -n 's/^\(BenchmarkOpenClose\)/\1/p' "$tmp/vm.txt" | sed 's/^/guest:/' >>"$raw"
	# An exec costs tens of milliseconds in the guest: far fewer of them.
	# --host-root: the benchmark executes a copy of the host's true, which
	# needs the host's dynamic loader and libc (without them it exits 127).
	echo "== vmtest --kernel $vmkernel ./internal/lsm -bench ExecCopy (load $(load))" >&2
	$GO run ./vmtest --kernel "$vmkernel" --host-root --pkg ./internal/lsm --env AIGATE_BENCH_ROUNDS="$vmrounds" --timeout 20m -- \
		-test.run '^$' -test.bench 'ExecCopy' -test.benchtime=10x | tee "$tmp/vmexec.txt" >&2
	sed -n 's/^\(BenchmarkExecCopy\)/\1/p' "$tmp/vmexec.txt" | sed 's/^/guest:/' >>"$raw"
fi
load_end=$(load)
guest_when=
if [ -s "$tmp/kept-rows.txt" ]; then
	cat "$tmp/kept-rows.txt" >>"$raw"
	guest=$kept_guest
	guest_when=", measured $kept_date"
fi

# describe NAME: "subsystem|what is measured|baseline" for a benchmark line.
describe() {
	case $1 in
	BenchmarkOpen/*) local where=${1#BenchmarkOpen/}; where=${where%%/*}
		local what
		case ${1##*/} in
		unmarked) what="file in a directory nothing marks" ;;
		ignored) what="unrelated file in a marked directory (ignore mask)" ;;
		child-event) what="file created in a marked directory after the sandbox started (its first open a round trip, allowed; then an ignore mask)" ;;
		marked) what="protected file opened in an allowed way (round trip, allowed)" ;;
		exec-binary) what="deny_exec binary opened for reading (round trip, allowed; inside: the dynamic loader check, from what the loaders know)" ;;
		esac
		echo "fanotify open+close|$what, $where a sandbox|no aigate" ;;
	BenchmarkRoundTripFloor) echo "fanotify open+close|file marked by a bare group of the benchmark's own whose reader answers every event at once (no aigate: the floor under the round trips above)|no mark" ;;
	BenchmarkExecFS/*-noignore) local where=${1##*/}; echo "fanotify exec|fork+exec+wait of true, ${where%-noignore} a sandbox with a deny_exec binary (every writable filesystem marked for execs, no ignore marks: the backend before issue #15's)|the same backend and sandbox without the filesystem exec marks" ;;
	BenchmarkExecFS/*) echo "fanotify exec|fork+exec+wait of true, ${1##*/} a sandbox with a deny_exec binary (every writable filesystem marked for execs; /usr/bin, only root's, ignored)|the same backend and sandbox without the filesystem exec marks" ;;
	BenchmarkTmpChurn/trees) echo "fanotify watcher|create+unlink of a file in /tmp by a process outside every sandbox, the sandbox's deny_write path in the project|no aigate" ;;
	BenchmarkTmpChurn/above) echo "fanotify watcher|create+unlink of a file in /tmp by a process outside every sandbox, the sandbox's deny_write path in a user's directory in /tmp|no aigate" ;;
	BenchmarkTmpChurn/in-tmp) echo "fanotify watcher|create+unlink of a file in /tmp by a process outside every sandbox, the sandbox's deny_write path directly in /tmp (the watcher then watches /tmp for its name)|no aigate" ;;
	BenchmarkNetConnect/udp/*) echo "sock_addr connect4|UDP connect, ${1##*/} a sandbox|cgroup without programs" ;;
	BenchmarkNetConnect/sendto/*) echo "sock_addr sendmsg4|UDP sendto, ${1##*/} a sandbox|cgroup without programs" ;;
	BenchmarkQuery/cached) echo "DNS|A query through the aigate proxy (loopback upstream), a name asked again within its TTL: answered from the proxy's cache|the same query sent to the upstream directly" ;;
	BenchmarkQuery/member) echo "DNS|A query through the aigate proxy (loopback upstream), a name asked again within its TTL, the proxy also checking with sock_diag that the client's socket is in its sandbox's cgroup (as the agent's proxies do)|the same query sent to the upstream directly" ;;
	BenchmarkQuery/uncached) echo "DNS|A query through the aigate proxy (loopback upstream), an answer with TTL 0: forwarded every time|the same query sent to the upstream directly" ;;
	guest:BenchmarkExecCopy/other-size*) echo "BPF LSM fork+exec+wait (guest $guest, TCG$guest_when)|allowed program of another size than the sandbox's deny_exec binary, inside a sandbox|bprm_copy detached" ;;
	guest:BenchmarkExecCopy/same-size*) echo "BPF LSM fork+exec+wait (guest $guest, TCG$guest_when)|allowed program of the same size as the sandbox's deny_exec binary (IMA hashes it), inside a sandbox|bprm_copy detached" ;;
	guest:BenchmarkOpenClose/*) echo "BPF LSM open+close (guest $guest, TCG$guest_when)|allowed file, ${1##*/} a sandbox (policy with every rule kind)|file_open program detached (the only aigate program on this path)" ;;
	*) echo "?|$1|?" ;;
	esac
}

{
	echo "# aigate overhead, as ratios against no aigate"
	echo
	echo "Written by \`bench/run.sh\`; bench/README.md explains the method. Each ratio is"
	if [ "$host" = 1 ]; then
		echo "the median over $rounds rounds$([ "$vm" = 1 ] && echo " ($vmrounds in the guest)") of (case / baseline), the two measured next to"
	else
		echo "the median over $vmrounds rounds in the guest (host rows: as when measured) of (case / baseline), the two measured next to"
	fi
	echo "each other in the same process, alternating which goes first; the spread is"
	echo "the interquartile range and the extremes of those per-round ratios."
	echo
	echo "- date: $started"
	echo "- commit: ${BENCH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
	echo "- host kernel: $(uname -r)"
	echo "- machine: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "- load average (1, 5, 15 min): $load_start at the start, $load_end at the end"
	[ -n "$guest" ] && echo "- guest: Linux $guest in QEMU TCG (no KVM), 2 vCPUs, booted by vmtest"
	[ -n "$guest_when" ] && echo "- guest rows: kept from the results of $kept_date (this run was --no-vm, host only)"
	[ -n "$kept_host_date" ] && echo "- host rows: kept from the results of $kept_host_date (this run was --vm-only, guest only)"
	echo
	echo "| what | case | baseline | ratio (median) | IQR | min-max | case ns/op | baseline ns/op |"
	echo "|---|---|---|---:|---:|---:|---:|---:|"
	grep -E '^(guest:)?Benchmark' "$raw" | while read -r name _ rest; do
		name=${name%-[0-9]*}
		declare -A m=()
		set -- $rest
		while [ $# -ge 2 ]; do m[$2]=$1; shift 2; done
		IFS='|' read -r what case base <<<"$(describe "$name")"
		printf '| %s | %s | %s | **%.2fx** | %.2f-%.2f | %.2f-%.2f | %.0f | %.0f |\n' \
			"$what" "$case" "$base" "${m[x-vs-baseline]:-0}" "${m[x-q1]:-0}" "${m[x-q3]:-0}" \
			"${m[x-min]:-0}" "${m[x-max]:-0}" "${m[ns/op]:-0}" "${m[base-ns/op]:-0}"
		unset m
	done
	echo
	echo "Reading it:"
	echo
	echo "- Outside a sandbox is what every other process on the machine pays while aigate runs."
	echo "- child-event: the file's first open is a round trip; finding it unrelated to every"
	echo "  sandbox gives it an ignore mask (internal/fanotify/ignorenew.go), so the rest are not."
	echo "- The fanotify round trips (marked, exec-binary): the opener sleeps until aigate's reader"
	echo "  thread has been woken, read the event and answered, so most of their cost is two"
	echo "  wake-ups of sleeping threads, which the machine's load stretches: read them as upper"
	echo "  bounds. The reader answers both outside and inside a sandbox itself; inside it also"
	echo "  reads the file's path (readlink of the event's fd), an fstat, matches the policy and, for"
	echo "  a protected file, how it is opened (/proc/TID/syscall, kept open per thread); for a"
	echo "  deny_exec file, whether the opener's /proc/TID/exe is a known dynamic loader. Only a"
	echo "  decision that may wait (a binary's interpreter not read yet, a hash) goes to a worker"
	echo "  goroutine."
	echo "- DNS: client, proxy and fake upstream share the benchmark process's CPUs. A name asked"
	echo "  again within its TTL is answered from the proxy's cache: one loopback hop, like the"
	echo "  baseline's. An uncached one adds the proxy's own exchange with the upstream, from a"
	echo "  fresh random port per query: two more thread wake-ups and the upstream's work again"
	echo "  (BenchmarkRelayFloor, a bare relay through the proxy's socket pool measured the same"
	echo "  way: 1.24-1.32x with one port kept, 1.39-1.43x with a fresh port per query)."
	echo "- The BPF-LSM rows come from an emulated guest (QEMU TCG): absolute times are ten times"
	echo "  the host's or more and single measurements vary by up to 2x, hence more rounds and a"
	echo "  wide spread. Read them as an indication, not as what a real machine pays."
	echo
	echo "Raw \`go test -bench\` lines (the sock_addr lines also carry prog-ns/op, the"
	echo "kernel's own accounting of the program's run time, from one extra run):"
	echo
	echo '```'
	grep -E '^(guest:)?Benchmark' "$raw"
	echo '```'
	if [ -s "$tmp/kept-sections.md" ]; then
		echo
		cat "$tmp/kept-sections.md"
	fi
} >"$out"
echo "bench/run.sh: wrote $out" >&2
