#!/usr/bin/env bash
# shoal's network benchmark, as root on Debian/Ubuntu (also run by tests/bench/run.sh):
#   tests/bench/net.sh
# In throwaway network namespaces (a "board" running the daemon and a "LAN host" joined to
# it by a veth pair), measured in the same run:
#   - the embedded DNS answering container names vs dnsmasq serving the same names from a
#     hosts file (dnsperf: queries per second at full load, p50/p99 latency at a fixed rate);
#   - a forwarded query through the embedded DNS vs asking its upstream directly;
#   - TCP throughput to a container through a published port vs to its address (iperf3).
# Nothing touches the machine's own namespace; the DNS upstream is a dnsmasq inside the lab.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/deps.sh
apt_install busybox-static iproute2 dnsperf dnsmasq-base iperf3 jq nftables
ensure_rust

bin=${SHOAL_BIN:-}
if [ -z "$bin" ]; then
    target=x86_64-unknown-linux-gnu
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked -q --target "$target"
    bin=$PWD/target/$target/release/shoal
fi
secs=${SHOAL_NETBENCH_SECS:-5}

work=$(mktemp -d /tmp/shoal-netbench.XXXXXX)
lab=shoal-nb-$$
lan=shoal-nbl-$$
pids=()
cleanup() {
    set +e
    for id in $(SHOAL_HOST=unix://$work/shoal.sock "$bin" ps -aq 2>/dev/null); do
        SHOAL_HOST=unix://$work/shoal.sock "$bin" rm -f "$id" >/dev/null
    done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    ip netns del "$lab" 2>/dev/null
    ip netns del "$lan" 2>/dev/null
    find /sys/fs/cgroup -depth -type d -name "shoal-nb-$$" -exec rmdir {} \; 2>/dev/null
    umount -R "$work" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
in_lab() { nsenter --net=/run/netns/"$lab" "$@"; }
in_lan() { nsenter --net=/run/netns/"$lan" "$@"; }

# The board and a LAN host: 192.168.200.1 (board) <-> 192.168.200.2 (LAN host).
ip netns add "$lab"
ip netns add "$lan"
ip -n "$lab" link set lo up
ip -n "$lan" link set lo up
ip -n "$lab" link add lan0 type veth peer name eth0 netns "$lan"
ip -n "$lab" addr add 192.168.200.1/24 dev lan0
ip -n "$lab" link set lan0 up
ip -n "$lan" addr add 192.168.200.2/24 dev eth0
ip -n "$lan" link set eth0 up

# The upstream resolver of the board: dnsmasq on the board's loopback, one outside name.
echo "192.0.2.10 outside.example" >"$work/upstream.hosts"
# Background processes are started by nsenter itself (it execs them), so $! is their pid.
dnsmasq_at() {
    nsenter --net=/run/netns/"$lab" dnsmasq --keep-in-foreground --no-resolv --no-hosts --addn-hosts="$2" \
        --listen-address="$1" --bind-interfaces --port=53 --user=root --pid-file= \
        --log-facility=- >/dev/null 2>&1 &
    pids+=($!)
}
dnsmasq_at 127.0.0.2 "$work/upstream.hosts"

nsenter --net=/run/netns/"$lab" "$bin" daemon --root "$work/root" --socket "$work/shoal.sock" --cgroup-parent "shoal-nb-$$" \
    --dns 127.0.0.2 --log-level warn >"$work/daemon.log" 2>&1 &
pids+=($!)
export SHOAL_HOST=unix://$work/shoal.sock
for _ in $(seq 200); do [ -S "$work/shoal.sock" ] && break; sleep 0.05; done
sh tests/lab/busybox-image.sh "$work/busybox.tar"
"$bin" import "$work/busybox.tar" busybox:latest >/dev/null
"$bin" network create --subnet 10.99.0.0/24 nb >/dev/null
dns=10.99.0.1

# Ten containers; dnsmasq gets the same names from a hosts file.
: >"$work/names.hosts"
: >"$work/names.queries"
for i in $(seq 0 9); do
    "$bin" run -d --name "c$i" --network nb busybox sleep 100000 >/dev/null
    ip=$("$bin" inspect -f '{{.NetworkSettings.Networks.nb.IPAddress}}' "c$i")
    echo "$ip c$i" >>"$work/names.hosts"
    echo "c$i A" >>"$work/names.queries"
done
dnsmasq_at 127.0.0.3 "$work/names.hosts"
echo "outside.example A" >"$work/outside.queries"
sleep 0.5

# Full-load queries per second (two clients, 100 outstanding).
qps() {
    in_lab dnsperf -s "$1" -d "$2" -l "$secs" -c 2 -q 100 2>/dev/null |
        awk '/Queries per second/ {printf "%.0f", $4}'
}
# p50 and p99 latency in ms at a fixed rate, from dnsperf's per-query lines.
latency() {
    in_lab dnsperf -s "$1" -d "$2" -l "$secs" -Q 2000 -v 2>/dev/null |
        awk '/^> NOERROR/ {print $NF * 1000}' | sort -n |
        awk '{v[NR]=$1} END {
            if (NR == 0) {print "none none"; exit}
            a = int(NR*0.50) + 1; if (a > NR) a = NR
            b = int(NR*0.99) + 1; if (b > NR) b = NR
            printf "%.3f %.3f\n", v[a], v[b]}'
}
# Every answer right, before timing anything.
for i in 0 9; do
    want=$(awk -v n="c$i" '$2 == n {print $1}' "$work/names.hosts")
    got=$(in_lab dig +short +time=2 +tries=1 @"$dns" "c$i")
    [ "$got" = "$want" ] || { echo "embedded DNS answered '$got' for c$i, want $want" >&2; exit 1; }
done
[ "$(in_lab dig +short +time=2 +tries=1 @"$dns" outside.example)" = 192.0.2.10 ] ||
    { echo "embedded DNS does not forward to the lab's upstream" >&2; exit 1; }

shoal_qps=$(qps "$dns" "$work/names.queries")
dnsmasq_qps=$(qps 127.0.0.3 "$work/names.queries")
read -r shoal_p50 shoal_p99 < <(latency "$dns" "$work/names.queries")
read -r dnsmasq_p50 dnsmasq_p99 < <(latency 127.0.0.3 "$work/names.queries")
read -r direct_p50 direct_p99 < <(latency 127.0.0.2 "$work/outside.queries")
read -r fwd_p50 fwd_p99 < <(latency "$dns" "$work/outside.queries")

# iperf3 in a container: an image holding the binary and the libraries it links.
mkdir -p "$work/iperf/bin" "$work/iperf/tmp"
cp /usr/bin/iperf3 "$work/iperf/bin/"
for lib in $(ldd /usr/bin/iperf3 | grep -o '/[^ ]*'); do
    mkdir -p "$work/iperf$(dirname "$lib")"
    cp -L "$lib" "$work/iperf$lib"
done
tar -C "$work/iperf" -cf "$work/iperf.tar" .
"$bin" import "$work/iperf.tar" iperf:latest >/dev/null
"$bin" run -d --name ipf --network nb -p 5201:5201 iperf /bin/iperf3 -s >/dev/null
ipf=$("$bin" inspect -f '{{.NetworkSettings.Networks.nb.IPAddress}}' ipf)
ip -n "$lan" route add 10.99.0.0/24 via 192.168.200.1
for _ in $(seq 50); do in_lan iperf3 -c "$ipf" -t 1 >/dev/null 2>&1 && break; sleep 0.1; done
gbits() {
    "$@" -t "$secs" -J 2>/dev/null | jq -r '.end.sum_received.bits_per_second / 1e9 | . * 100 | round / 100'
}
direct_gb=$(gbits in_lan iperf3 -c "$ipf")
published_gb=$(gbits in_lan iperf3 -c 192.168.200.1 -p 5201)
local_gb=$(gbits in_lab iperf3 -c 127.0.0.1 -p 5201)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b == 0) print "n/a"; else printf "%.2f", a/b}'; }
echo "shoal network benchmark ($(uname -m), $(nproc) cores, ${secs} s per measurement)"
printf '  embedded DNS, container names: %s qps | dnsmasq (hosts file) %s qps | ratio %s (goal >= 1.00)\n' \
    "$shoal_qps" "$dnsmasq_qps" "$(ratio "$shoal_qps" "$dnsmasq_qps")"
printf '  latency at 2000 qps, p50/p99 ms: shoal %s/%s | dnsmasq %s/%s\n' \
    "$shoal_p50" "$shoal_p99" "$dnsmasq_p50" "$dnsmasq_p99"
printf '  forwarded query p50/p99 ms: through shoal %s/%s | upstream directly %s/%s | added p50 %s ms (goal <= 1)\n' \
    "$fwd_p50" "$fwd_p99" "$direct_p50" "$direct_p99" "$(awk -v a="$fwd_p50" -v b="$direct_p50" 'BEGIN {printf "%.3f", a-b}')"
printf '  TCP through a published port from the LAN: %s Gbit/s | to the container directly %s Gbit/s | ratio %s (goal >= 0.90)\n' \
    "$published_gb" "$direct_gb" "$(ratio "$published_gb" "$direct_gb")"
printf '  TCP through a published port from the board itself (127.0.0.1): %s Gbit/s\n' "$local_gb"
