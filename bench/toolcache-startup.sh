#!/usr/bin/env bash
# bench/toolcache-startup.sh: `aigate run -q -- true` for a user whose
# ~/.cache/go-build holds 256 x FILES empty files, alternating the default
# policy (the user's caches deny_write: on the fanotify backend every file
# beneath them is protected by inode) with the same policy plus
# shared_caches: [go, npm, pip]; prints one line per run: policy, ms.
# Figures: bench/toolcache-notes.md. Run as root:
#
#   bench/toolcache-startup.sh bin/aigate [ROUNDS [FILES]]   # default 5 rounds, 400 files per directory
set -euo pipefail
bin=$1; n=${2:-5}
user=aigate-tcexp
# The home lies beneath /home, as a user's does: beneath a shared temp
# directory (/var/tmp) Landlock cannot make it read-only (aigate run
# warns), so the fanotify backend would protect each cached file by inode.
tmp=$(mktemp -d /home/aigate-tcexp.XXXXXX); chmod 755 $tmp
home=$tmp/home
trap 'userdel $user 2>/dev/null || true; rm -rf $tmp' EXIT
useradd --no-create-home --home-dir $home --user-group $user
mkdir -p $home/proj $tmp/agent $home/.aigate
for d in $(seq 0 255); do dd=$(printf %02x $d); mkdir -p $home/.cache/go-build/$dd; for f in $(seq ${3:-400}); do : > $home/.cache/go-build/$dd/$f-d; done; done
mkdir -p $home/go/pkg/mod $home/.npm $home/.cache/pip
cp $bin $tmp/aigate
chown -R $user:$user $home
cat > $tmp/m.sh <<EOF
set -eu
mount -t tmpfs tmpfs /run; ip link set lo up
$tmp/aigate agent --backend auto --socket $tmp/agent/sock --group $user --metrics-addr "" --trust-dir "" --log-level error 2>$tmp/agent.log &
agent=\$!; trap 'kill \$agent; wait' EXIT
for i in \$(seq 100); do [ -S $tmp/agent/sock ] && break; sleep 0.1; done
as() { runuser -u $user -- env -i PATH=/usr/bin:/bin HOME=$home USER=$user AIGATE_SOCKET=$tmp/agent/sock "\$@"; }
cd $home/proj
as $tmp/aigate init >/dev/null
cp $home/.aigate/config.yaml $tmp/own.yaml; { cat $tmp/own.yaml; printf 'shared_caches: [go, npm, pip]\n'; } > $tmp/shared.yaml; chmod a+r $tmp/*.yaml
for r in \$(seq $n); do
 for c in own shared; do
  t0=\$(date +%s%N); (cd $home/proj && as $tmp/aigate --config $tmp/\$c.yaml run -q -- true); t1=\$(date +%s%N)
  echo "\$c \$(( (t1-t0)/1000000 ))"
 done
done
EOF
unshare --mount --net sh $tmp/m.sh
