#!/usr/bin/env bash
# bench/toolcache.sh: what the sandboxes' own Go caches cost. `go build
# ./internal/config` of this repository (107 packages with the standard
# library) as an unprivileged user: outside with the user's warm caches
# (the baseline), against the same build inside `aigate run` (default
# policy, the agent's backend): first with the sandboxes' caches emptied
# (every package compiled, modules unpacked from the user's module cache
# through GOPROXY=file://), then with them warm. Each pair is measured side
# by side, the order alternating; reported: the ratio inside/outside, median
# and min-max. Run as root (an agent, a user, namespaces):
#
#   bench/toolcache.sh [--rounds N] [--warm N]   # first builds (default 2), warm pairs (default 9)
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
rounds=2
warm=9
while [ $# -gt 0 ]; do case $1 in --rounds) rounds=$2; shift ;; --warm) warm=$2; shift ;; *) echo "usage: bench/toolcache.sh [--rounds N] [--warm N]" >&2; exit 2 ;; esac; shift; done
[ "$(id -u)" = 0 ] || { echo "bench/toolcache.sh: needs root (an agent, a user, namespaces)" >&2; exit 1; }

user=aigate-tcbench
tmp=$(mktemp -d /var/tmp/aigate-tcbench.XXXXXX)
chmod 0755 "$tmp"
home=$tmp/home
cleanup() { userdel "$user" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
useradd --no-create-home --home-dir "$home" --user-group "$user"
mkdir -p "$home/proj" "$tmp/agent"
git archive HEAD | tar -x -C "$home/proj"
"$GO" build -o "$tmp/aigate" ./cmd/aigate
# A stand-in proxy for the network: root's download cache.
cp -a "$("$GO" env GOMODCACHE)/cache/download" "$tmp/proxy"
chown -R "$user:$user" "$home"
chmod -R a+rX "$tmp/proxy" "$tmp/aigate"
gobin=$(command -v "$GO")

cat >"$tmp/measure.sh" <<EOF
set -eu
mount -t tmpfs tmpfs /run
ip link set lo up
"$tmp/aigate" agent --backend auto --socket "$tmp/agent/sock" --group "$user" --metrics-addr "" --trust-dir "" --log-level error 2>"$tmp/agent.log" &
agent=\$!
trap 'kill \$agent; wait' EXIT
for i in \$(seq 100); do [ -S "$tmp/agent/sock" ] && break; sleep 0.1; done
as() { runuser -u "$user" -- env -i PATH=/usr/bin:/bin HOME="$home" USER="$user" AIGATE_SOCKET="$tmp/agent/sock" GOTOOLCHAIN=local GOFLAGS=-mod=mod "\$@"; }
build="cd $home/proj && $gobin build -o /dev/null ./internal/config"
now() { date +%s.%N; }
timed() { local t0; t0=\$(now); "\$@" >/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }; awk -v a="\$t0" -v b="\$(now)" "BEGIN { printf \\"%.3f\\", b - a }"; }
# The user's caches, warm: a build outside, modules from the stand-in proxy.
as env GOPROXY=file://$tmp/proxy GOSUMDB=off sh -c "\$build"
as "$tmp/aigate" init >/dev/null
# First builds: the sandboxes' caches emptied before each, against the
# outside build of the same round (order alternating).
for r in \$(seq $rounds); do
	rm -rf "$home/.cache/aigate"
	if [ \$((r % 2)) = 1 ]; then
		out=\$(timed as sh -c "\$build")
		in=\$(timed as "$tmp/aigate" run -q -- sh -c "\$build")
	else
		in=\$(timed as "$tmp/aigate" run -q -- sh -c "\$build")
		out=\$(timed as sh -c "\$build")
	fi
	echo "first \$r \$out \$in"
done
# Later builds: the sandboxes' caches warm.
for r in \$(seq $warm); do
	if [ \$((r % 2)) = 1 ]; then
		out=\$(timed as sh -c "\$build")
		in=\$(timed as "$tmp/aigate" run -q -- sh -c "\$build")
	else
		in=\$(timed as "$tmp/aigate" run -q -- sh -c "\$build")
		out=\$(timed as sh -c "\$build")
	fi
	echo "warm \$r \$out \$in"
done
EOF
echo "kind round outside_s inside_s"
unshare --mount --net sh "$tmp/measure.sh" | tee "$tmp/rows"
# median and min-max of inside/outside per kind
for kind in first warm; do
	awk -v k=$kind '$1 == k { printf "%.4f %.3f\n", $4 / $3, $3 }' "$tmp/rows" | sort -n | awk -v k=$kind '
		{ r[NR] = $1; o[NR] = $2 } END { m = int((NR + 1) / 2)
		printf "%s build inside / outside (user'"'"'s warm caches, ~%.2f s): median %.2fx (min-max %.2f-%.2f, %d rounds)\n", k, o[m], r[m], r[1], r[NR], NR }'
done
