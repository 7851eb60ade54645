#!/usr/bin/env bash
# The demo, on built-in defaults, on a fresh Debian/Ubuntu machine as root:
#   tests/demo.sh
# Builds shoal, starts its daemon inside a throwaway network namespace with a temporary state
# root, imports a busybox image, walks through the container verbs, then removes everything.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib/deps.sh
apt_install busybox-static iproute2 tar procps
ensure_rust
cargo build --release --locked -q
bin=$PWD/target/release/shoal

lab=$(mktemp -d /tmp/shoal-demo.XXXXXX)
ns=shoal-demo-$$
daemon_pid=
cleanup() {
    set +e
    for id in $("$bin" ps -aq 2>/dev/null); do "$bin" rm -f "$id" >/dev/null; done
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    ip netns del "$ns" 2>/dev/null
    find /sys/fs/cgroup -depth -type d -name "shoal-demo-$$" -exec rmdir {} \; 2>/dev/null
    rm -rf "$lab"
}
trap cleanup EXIT

ip netns add "$ns"
ip -n "$ns" link set lo up
nsenter --net=/run/netns/"$ns" "$bin" daemon --root "$lab/root" --socket "$lab/shoal.sock" \
    --cgroup-parent "shoal-demo-$$" >"$lab/daemon.log" 2>&1 &
daemon_pid=$!
export SHOAL_HOST=unix://$lab/shoal.sock
for _ in $(seq 200); do [ -S "$lab/shoal.sock" ] && break; sleep 0.05; done

step() {
    printf '\n\033[1m$ shoal %s\033[0m\n' "$*"
    "$bin" "$@"
}

echo "shoal binary: $(du -h "$bin" | cut -f1)"
sh tests/lab/busybox-image.sh "$lab/busybox.tar"
step version
step import --change 'CMD ["sh"]' "$lab/busybox.tar" busybox:latest
step images
step run --rm busybox echo "hello from a shoal container"
step run -d --name web --restart unless-stopped -m 32m --pids-limit 64 busybox \
    sh -c 'trap "echo stopping; exit 0" TERM; echo serving; while true; do sleep 1; done'
step ps
step logs web
step exec web sh -c 'echo "inside: hostname=$(hostname), pid 1 is $(cat /proc/1/comm)"'
step top web
step stats --no-stream web
step inspect --format '{{.State.Status}} since {{.State.StartedAt}}' web
step run --rm busybox sh -c 'grep -E "CapEff|NoNewPrivs|Seccomp:" /proc/self/status; echo "masked /proc/keys has $(wc -c < /proc/keys) bytes"; echo 1 > /proc/sys/kernel/panic || echo "/proc/sys is read-only"'
step stop -t 1 web
step ps -a
step rm web
echo
echo "demo done: daemon log in $lab/daemon.log (removed on exit)"
