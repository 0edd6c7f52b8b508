#!/usr/bin/env bash
# bench/toolcache.sh: what the sandboxes' own Go caches cost. `go build
# ./internal/config` of this repository (107 packages with the standard
# library) as an unprivileged user: outside with the user's warm caches
# (the baseline), then inside `aigate run` with the sandboxes' caches
# emptied (a first build: every package compiled, modules unpacked from the
# user's module cache through GOPROXY=file://), then inside again (a second
# build: warm). Rounds interleave the three, the order of the two firsts
# alternating; the ratios to the round's baseline are reported as median
# and min-max. Run as root (an agent, a user, namespaces):
#
#   bench/toolcache.sh [--rounds N]     # default 3
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
rounds=3
[ "${1:-}" = --rounds ] && rounds=$2
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
for r in \$(seq $rounds); do
	rm -rf "$home/.cache/aigate"
	if [ \$((r % 2)) = 1 ]; then
		out=\$(timed as sh -c "\$build")
		first=\$(timed as "$tmp/aigate" run -q -- sh -c "\$build")
	else
		first=\$(timed as "$tmp/aigate" run -q -- sh -c "\$build")
		out=\$(timed as sh -c "\$build")
	fi
	second=\$(timed as "$tmp/aigate" run -q -- sh -c "\$build")
	echo "\$r \$out \$first \$second"
done
EOF
echo "round outside_s first_inside_s second_inside_s"
unshare --mount --net sh "$tmp/measure.sh" | tee "$tmp/rows"
awk '{ f[NR] = $3 / $2; s[NR] = $4 / $2; o[NR] = $2 } END {
	n = NR; asort(f); asort(s); asort(o)
	m = int((n + 1) / 2)
	printf "outside (the user'"'"'s warm caches): median %.2f s\n", o[m]
	printf "first build inside (sandbox caches empty): median %.1fx (%.1f-%.1f)\n", f[m], f[1], f[n]
	printf "second build inside (sandbox caches warm): median %.2fx (%.2f-%.2f)\n", s[m], s[1], s[n]
}' "$tmp/rows"
