#!/usr/bin/env bash
# shoal's benchmark, one command, as root on Debian/Ubuntu:
#   tests/bench/run.sh
# Prints binary size (static, stripped), container start latency of the whole
# client → daemon → container → exit path against crun and runc measured in the same run,
# daemon idle RSS and shim RSS per container, and a pull of a multi-layer image from a
# loopback docker-registry against `skopeo copy` of it. Runs in a throwaway network namespace.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/deps.sh
apt_install busybox-static iproute2 tar crun runc hyperfine jq docker-registry skopeo
ensure_rust

target=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked -q --target "$target"
bin=${CARGO_TARGET_DIR:-$PWD/target}/$target/release/shoal
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
    [ -n "${registry_pid:-}" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
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

# The admin page: the daemon again, now with --admin-addr, idle RSS with the page on, then
# 50 containers (10 running): the time each page takes to build (its Server-Timing), its
# weight, and the daemon's RSS growth over 500 requests after a warm-up.
kill "$daemon_pid"; wait "$daemon_pid" 2>/dev/null || true
nsenter --net=/run/netns/"$ns" "$bin" daemon --root "$work/root" --socket "$work/shoal.sock" \
    --cgroup-parent "shoal-bench-$$" --log-level warn --admin-addr 127.0.0.1:2380 >>"$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 200); do
    nsenter --net=/run/netns/"$ns" curl -s -o /dev/null http://127.0.0.1:2380/login && break
    sleep 0.05
done
sleep 0.5
admin_idle_rss=$(rss_kib "$daemon_pid")
token=$("$bin" admin token --root "$work/root")
for i in $(seq -w 0 49); do
    "$bin" create --name "a$i" --network none --label "com.docker.compose.project=p$((10#$i % 5))" \
        busybox sleep 1000 >/dev/null
done
for i in $(seq -w 0 49 | head -10); do "$bin" start "a$i" >/dev/null; done
admin_get() {
    nsenter --net=/run/netns/"$ns" curl -s -o /dev/null -H "Authorization: Bearer $token" \
        -D - -w 'size=%{size_download}\n' "http://127.0.0.1:2380$1"
}
admin_pages="/ /containers /containers/a01 /projects /images /networks /events /metrics"
for _ in 1 2 3; do for p in $admin_pages; do admin_get "$p" >/dev/null; done; done
admin_report=""
for p in $admin_pages; do
    best=""; page_size=0
    for _ in 1 2 3 4 5; do
        out=$(admin_get "$p")
        ms=$(echo "$out" | tr -d '\r' | awk -F'dur=' '/^Server-Timing/ {print $2}')
        page_size=$(echo "$out" | awk -F= '/^size=/ {print $2}')
        best=$(awk -v a="$best" -v b="$ms" 'BEGIN {print (a == "" || b < a) ? b : a}')
    done
    admin_report="$admin_report$(printf '    %-16s %6.2f ms  %6d bytes' "$p" "$best" "$page_size")"$'\n'
done
admin_rss0=$(rss_kib "$daemon_pid")
for _ in $(seq 63); do for p in $admin_pages; do admin_get "$p" >/dev/null; done; done
admin_rss1=$(rss_kib "$daemon_pid")
# Pull of a multi-layer image from a loopback docker-registry (inside the netns) against
# `skopeo copy` of the same image to a local directory, both timed by hyperfine.
mkdir -p "$work/reg" "$work/oci/blobs/sha256"
cat >"$work/reg/config.yml" <<REG
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/reg/data}}
http: {addr: 127.0.0.1:5055}
REG
nsenter --net=/run/netns/"$ns" docker-registry serve "$work/reg/config.yml" >"$work/reg/log" 2>&1 &
registry_pid=$!
blob() { # file → digest; stores it in the layout
    local d; d=$(sha256sum "$1" | cut -d' ' -f1); cp "$1" "$work/oci/blobs/sha256/$d"; echo "$d"; }
layers_json=; diffs_json=
mk_layer() { # dir → appends one gzip layer of that directory
    tar --numeric-owner -C "$1" -cf "$work/l.tar" . ; gzip -1 -c "$work/l.tar" >"$work/l.tgz"
    local diff gz size; diff=$(sha256sum "$work/l.tar" | cut -d' ' -f1); gz=$(blob "$work/l.tgz"); size=$(stat -c %s "$work/l.tgz")
    layers_json="$layers_json${layers_json:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$gz\",\"size\":$size}"
    diffs_json="$diffs_json${diffs_json:+,}\"sha256:$diff\""
}
mkdir -p "$work/L1" && tar -C "$work/L1" -xf "$work/busybox.tar" && mk_layer "$work/L1"
for i in 2 3 4; do mkdir -p "$work/L$i"; head -c 8M /dev/urandom >"$work/L$i/random"; mk_layer "$work/L$i"; done
mkdir -p "$work/L5" && seq 1 3000000 >"$work/L5/numbers" && mk_layer "$work/L5"
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[%s]}}' "$diffs_json" >"$work/config.json"
cfg=$(blob "$work/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[%s]}' \
    "$cfg" "$(stat -c %s "$work/config.json")" "$layers_json" >"$work/manifest.json"
man=$(blob "$work/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' \
    "$man" "$(stat -c %s "$work/manifest.json")" >"$work/oci/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
for _ in $(seq 100); do nsenter --net=/run/netns/"$ns" sh -c 'exec 3<>/dev/tcp/127.0.0.1/5055' 2>/dev/null && break; sleep 0.1; done
nsenter --net=/run/netns/"$ns" skopeo copy -q --dest-tls-verify=false "oci:$work/oci:bench" docker://127.0.0.1:5055/bench/multi:v1
pull_bytes=$(du -cb "$work"/oci/blobs/sha256/* | tail -1 | cut -f1)
in_ns="nsenter --net=/run/netns/$ns"
hyperfine -N --warmup 1 --runs "${SHOAL_BENCH_PULL_RUNS:-5}" --export-json "$work/pull.json" \
    --prepare "sh -c '$bin rmi -f 127.0.0.1:5055/bench/multi:v1 >/dev/null 2>&1; true'" -n shoal-pull "$in_ns $bin pull -q 127.0.0.1:5055/bench/multi:v1" \
    --prepare "rm -rf $work/skopeo-dir" -n skopeo-copy "$in_ns skopeo copy -q --src-tls-verify=false docker://127.0.0.1:5055/bench/multi:v1 dir:$work/skopeo-dir" \
    >"$work/hyperfine-pull.txt"
pull_ms=$(jq -r '.results[] | select(.command=="shoal-pull") | .median' "$work/pull.json" | awk '{printf "%.0f", $1*1000}')
skopeo_ms=$(jq -r '.results[] | select(.command=="skopeo-copy") | .median' "$work/pull.json" | awk '{printf "%.0f", $1*1000}')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
echo "shoal benchmark ($(uname -m), $(nproc) cores)"
printf '  binary size (static, stripped, %s): %d bytes (%.2f MiB)\n' "$target" "$size" "$(awk -v s="$size" 'BEGIN{print s/1048576}')"
printf '  start, run --rm --network none busybox true (median): shoal %s ms | crun %s ms | runc %s ms\n' "$shoal_ms" "$crun_ms" "$runc_ms"
printf '  ratio shoal/crun: %s (goal <= 2.00)   shoal/runc: %s\n' "$(ratio "$shoal_ms" "$crun_ms")" "$(ratio "$shoal_ms" "$runc_ms")"
printf '  start on the default bridge (netns, veth, address, DNS): %s ms, ratio to --network none: %s (goal <= 1.50)\n' "$bridge_ms" "$(ratio "$bridge_ms" "$shoal_ms")"
printf '  daemon idle RSS: %d KiB (goal <= 8192)\n' "$daemon_rss"
printf '  shim per container: private (RssAnon) %d KiB (goal <= 1024), PSS %d KiB, RSS incl. shared text %d KiB\n' "$shim_anon" "$shim_pss" "$shim_rss"
printf '  fully cached rebuild of a 10-instruction Dockerfile (median): %s ms (goal <= 100)\n' "$build_ms"

printf '  admin page: daemon idle RSS with it on %d KiB; with 50 containers (10 running), best of 5:\n' "$admin_idle_rss"
printf '%s' "$admin_report"
printf '    page build goal <= 5 ms, weight goal <= 51200 bytes\n'
printf '  admin page in use: daemon RSS %d -> %d KiB over 504 requests, growth %d KiB (goal <= 1024)\n' \
    "$admin_rss0" "$admin_rss1" "$((admin_rss1 - admin_rss0))"
printf '  pull of a 5-layer image (%d MiB of blobs) from a loopback registry (median): shoal %s ms | skopeo copy to dir %s ms, ratio %s (goal <= 1.00)\n' \
    "$((pull_bytes / 1048576))" "$pull_ms" "$skopeo_ms" "$(ratio "$pull_ms" "$skopeo_ms")"

# Networks: embedded DNS vs dnsmasq, forwarding, published-port throughput (own lab).
SHOAL_BIN=$bin bash tests/bench/net.sh
