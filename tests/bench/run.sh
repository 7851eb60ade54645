#!/usr/bin/env bash
# shoal's benchmark, one command, as root on Debian/Ubuntu:
#   tests/bench/run.sh
# Prints binary size (static, stripped), container start latency of the whole
# client → daemon → container → exit path against crun and runc measured in the same run,
# daemon idle RSS and shim RSS per container. Runs in a throwaway network namespace.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/deps.sh
apt_install busybox-static iproute2 tar crun runc hyperfine jq
ensure_rust

target=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked -q --target "$target"
bin=$PWD/target/$target/release/shoal
size=$(stat -c %s "$bin")

work=$(mktemp -d /tmp/shoal-bench.XXXXXX)
ns=shoal-bench-$$
daemon_pid=
cleanup() {
    set +e
    for id in $(SHOAL_HOST=unix://$work/shoal.sock "$bin" ps -aq 2>/dev/null); do
        SHOAL_HOST=unix://$work/shoal.sock "$bin" rm -f "$id" >/dev/null
    done
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    ip netns del "$ns" 2>/dev/null
    find /sys/fs/cgroup -depth -type d -name "shoal-bench-$$" -exec rmdir {} \; 2>/dev/null
    umount -R "$work" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up

# The same busybox rootfs for shoal and for the OCI runtimes' bundle.
sh tests/lab/busybox-image.sh "$work/busybox.tar"
mkdir -p "$work/bundle/rootfs"
tar -C "$work/bundle/rootfs" -xf "$work/busybox.tar"
(cd "$work/bundle" && crun spec && jq '.process.args = ["true"] | .process.terminal = false' config.json >c && mv c config.json)

nsenter --net=/run/netns/"$ns" "$bin" daemon --root "$work/root" --socket "$work/shoal.sock" \
    --cgroup-parent "shoal-bench-$$" --log-level warn >"$work/daemon.log" 2>&1 &
daemon_pid=$!
export SHOAL_HOST=unix://$work/shoal.sock
for _ in $(seq 200); do [ -S "$work/shoal.sock" ] && break; sleep 0.05; done
"$bin" import "$work/busybox.tar" busybox:latest >/dev/null
"$bin" run --rm --network none busybox true   # warm the page cache

# crun 1.8 refuses hybrid cgroup layouts; in a private mount namespace the cgroup2 mount at
# /sys/fs/cgroup/unified is covered by a tmpfs so it sees plain v1. All three run there.
cat >"$work/in-ns.sh" <<INNER
set -e
if mountpoint -q /sys/fs/cgroup/unified; then mount -t tmpfs none /sys/fs/cgroup/unified; fi
cd "$work/bundle"
hyperfine -N --warmup 5 --runs "${SHOAL_BENCH_RUNS:-40}" --export-json "$work/start.json" \
    -n shoal "$bin run --rm --network none busybox true" \
    -n shoal-bridge "$bin run --rm busybox true" \
    -n crun "crun run bench-crun" \
    -n runc "runc run bench-runc" >"$work/hyperfine.txt"
INNER
unshare -m --propagation private sh "$work/in-ns.sh"

median() { jq -r ".results[] | select(.command==\"$1\") | .median" "$work/start.json"; }
shoal_ms=$(median shoal | awk '{printf "%.1f", $1*1000}')
crun_ms=$(median crun | awk '{printf "%.1f", $1*1000}')
runc_ms=$(median runc | awk '{printf "%.1f", $1*1000}')
bridge_ms=$(median shoal-bridge | awk '{printf "%.1f", $1*1000}')

# A fully cached rebuild of a 10-instruction Dockerfile: every step is "Using cache" (the
# context is still sent, the COPY source hashed and each step's cache entry looked up).
mkdir -p "$work/buildctx"
printf 'hello\n' >"$work/buildctx/index.html"
cat >"$work/buildctx/Dockerfile" <<'DOCKERFILE'
FROM busybox
ARG VERSION=1
ENV APP_VERSION=$VERSION
WORKDIR /srv
COPY index.html ./
RUN echo "$APP_VERSION" > version
LABEL org.example.role=bench
EXPOSE 8080
USER nobody
CMD ["cat", "/srv/version"]
DOCKERFILE
"$bin" build -q -t bench-build "$work/buildctx" >/dev/null
hyperfine -N --warmup 3 --runs "${SHOAL_BENCH_RUNS:-40}" --export-json "$work/build.json" \
    -n cached-build "$bin build -q -t bench-build $work/buildctx" >/dev/null
build_ms=$(jq -r '.results[0].median' "$work/build.json" | awk '{printf "%.1f", $1*1000}')

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
daemon_rss=$(rss_kib "$daemon_pid")
"$bin" run -d --name rss --network none busybox sleep 1000 >/dev/null
shim_pid=$(pgrep -f " shim .*$("$bin" inspect --format "{{.Id}}" rss)" | head -1)
shim_rss=$(rss_kib "$shim_pid")
# The shim is the same binary re-executed: its text pages are shared by every shim and the
# daemon. What each further container costs is its private memory (anonymous pages), and
# PSS splits the shared pages fairly between the processes mapping them.
shim_anon=$(awk '/^RssAnon/ {print $2}' "/proc/$shim_pid/status")
shim_pss=$(awk '/^Pss:/ {print $2}' "/proc/$shim_pid/smaps_rollup")
"$bin" rm -f rss >/dev/null

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
echo "shoal benchmark ($(uname -m), $(nproc) cores)"
printf '  binary size (static, stripped, %s): %d bytes (%.2f MiB)\n' "$target" "$size" "$(awk -v s="$size" 'BEGIN{print s/1048576}')"
printf '  start, run --rm --network none busybox true (median): shoal %s ms | crun %s ms | runc %s ms\n' "$shoal_ms" "$crun_ms" "$runc_ms"
printf '  ratio shoal/crun: %s (goal <= 2.00)   shoal/runc: %s\n' "$(ratio "$shoal_ms" "$crun_ms")" "$(ratio "$shoal_ms" "$runc_ms")"
printf '  start on the default bridge (netns, veth, address, DNS): %s ms, ratio to --network none: %s (goal <= 1.50)\n' "$bridge_ms" "$(ratio "$bridge_ms" "$shoal_ms")"
printf '  daemon idle RSS: %d KiB (goal <= 8192)\n' "$daemon_rss"
printf '  shim per container: private (RssAnon) %d KiB (goal <= 1024), PSS %d KiB, RSS incl. shared text %d KiB\n' "$shim_anon" "$shim_pss" "$shim_rss"
printf '  fully cached rebuild of a 10-instruction Dockerfile (median): %s ms (goal <= 100)\n' "$build_ms"
