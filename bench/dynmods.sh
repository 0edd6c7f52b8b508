#!/usr/bin/env bash
# bench/dynmods.sh: what the cgroup v2 option favordynmods gives
# `aigate run -- true` through the agent, and what it costs every other
# process (fork, thread, make), off and on side by side (bench/dynmods).
# Root only; run it in a private mount and network namespace (the agent's
# socket, trust records and DNS proxy stay in temporary directories). The
# option is machine-wide: bench/dynmods puts it back as it found it, and
# says on stderr when it changed it.
#
#   bench/dynmods.sh                    # 20 rounds
#   bench/dynmods.sh --rounds 40 --only run,peer
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
rounds=20
only=move,run,peer,fork,thread,make
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) rounds=$2; shift ;;
	--only) only=$2; shift ;;
	*) echo "usage: bench/dynmods.sh [--rounds N] [--only move,run,peer,fork,thread,make]" >&2; exit 2 ;;
	esac
	shift
done
[ "$(id -u)" = 0 ] || { echo "bench/dynmods.sh: needs root (it remounts the cgroup v2 hierarchy)" >&2; exit 2; }

tmp=$(mktemp -d)
agent=
cleanup() {
	if [ -n "$agent" ]; then kill "$agent" 2>/dev/null || true; wait "$agent" 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT

echo "== build" >&2
CGO_ENABLED=0 $GO build -trimpath -ldflags '-s -w' -o "$tmp/aigate" ./cmd/aigate
$GO build -o "$tmp/dynmods" ./bench/dynmods
mkdir -m 0700 "$tmp/trust"
mkdir -p "$tmp/home/proj"
"$tmp/aigate" agent --backend auto --socket "$tmp/agent.sock" --metrics-addr "" --trust-dir "$tmp/trust/agent" --log-level error 2>"$tmp/agent.log" &
agent=$!
for _ in $(seq 100); do [ -S "$tmp/agent.sock" ] && break; sleep 0.1; done
[ -S "$tmp/agent.sock" ] || { echo "bench/dynmods.sh: the agent did not start:" >&2; cat "$tmp/agent.log" >&2; exit 1; }
cd "$tmp/home/proj"
"$tmp/dynmods" -rounds "$rounds" -only "$only" \
	-run "AIGATE_SOCKET=$tmp/agent.sock HOME=$tmp/home $tmp/aigate run -- true" \
	-peer "bwrap --unshare-all --ro-bind / / true"
