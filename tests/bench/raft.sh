#!/usr/bin/env bash
# shoal's raft benchmark, one command, as root on Debian/Ubuntu:
#   tests/bench/raft.sh
# A 3-node `shoal raft-node` cluster (release build, WAL fsynced on disk, encrypted transport),
# each node in its own network namespace (10.77.0.N/24) on a bridge inside a lab namespace;
# the measuring client runs in the lab namespace. Nothing is created in the root namespace.
# Measures: leader failover after kill -9, term changes in a steady state with both cores
# busy, commit latency over TCP against the cost of one fdatasync, and throughput with
# concurrent writers (which the leader batches into one WAL write and one fsync).
#
# Environment: SHOAL_RAFT_STEADY_SECS (300), SHOAL_RAFT_FAILOVERS (20),
# SHOAL_RAFT_LATENCY_PUTS (500), SHOAL_RAFT_WRITERS (16), SHOAL_RAFT_BENCH_DIR (/var/tmp,
# where the WAL lives: it should be the disk that is measured, not a tmpfs).
set -euo pipefail

# The measuring part runs inside the lab namespace (see the end of the setup below).
if [ "${1:-}" = --in-lab ]; then
    work=$2 bin=$3 tag=$4
    nodes=(1 2 3)
    declare -A pid
    hogs=()
    stop_all() {
        set +e
        [ ${#hogs[@]} -gt 0 ] && kill "${hogs[@]}" 2>/dev/null
        for i in "${nodes[@]}"; do
            [ -n "${pid[$i]:-}" ] && kill -9 "${pid[$i]}" 2>/dev/null
        done
        wait 2>/dev/null
    }
    trap stop_all EXIT

    start_node() {
        local i=$1 peers=() p
        for p in "${nodes[@]}"; do
            [ "$p" != "$i" ] && peers+=(--peer "$p=10.77.0.$p:7000")
        done
        # Started from a subshell that exits at once: the node is not a job of this shell, so
        # its kill -9 prints no "Killed" notice and init reaps it.
        pid[$i]=$(
            nsenter --net="/run/netns/$tag-n$i" "$bin" raft-node --id "$i" --data "$work/n$i" \
                --listen "10.77.0.$i:7000" --client "10.77.0.$i:7001" \
                --key-file "$work/cluster.key" --bootstrap "${peers[@]}" \
                </dev/null >/dev/null 2>>"$work/n$i.log" &
            echo $!
        )
    }

    # One request on a fresh connection; the answer lands in $ans ("" if none).
    req() {
        local fd
        ans=
        { exec {fd}<>"/dev/tcp/10.77.0.$1/7001"; } 2>/dev/null || return 1
        printf '%s\n' "$2" >&"$fd"
        read -r -t 6 ans <&"$fd" || true
        exec {fd}>&-
        [ -n "$ans" ]
    }
    now_us() { local t=$EPOCHREALTIME; echo "${t//[.,]/}"; }

    # Prints the id of a running node that says it leads.
    leader() {
        local i
        for i in "${nodes[@]}"; do
            [ -n "${pid[$i]:-}" ] || continue
            if req "$i" status && [ "$(cut -d' ' -f3 <<<"$ans")" = leader ]; then
                echo "$i"
                return 0
            fi
        done
        return 1
    }
    wait_leader() {
        local l deadline=$(($(now_us) + 15000000))
        until l=$(leader); do
            [ "$(now_us)" -lt $deadline ] || { echo "no leader within 15 s" >&2; return 1; }
            sleep 0.02
        done
        echo "$l"
    }
    max_term() {
        local i t max=0
        for i in "${nodes[@]}"; do
            req "$i" status || continue
            t=$(cut -d' ' -f2 <<<"$ans")
            [ "$t" -gt "$max" ] && max=$t
        done
        echo "$max"
    }
    # percentile FILE P: the P-th percentile (nearest rank) of the numbers in FILE.
    percentile() {
        sort -n "$1" | awk -v p="$2" '{v[NR]=$1} END {r=int((p*NR+99)/100); if (r<1) r=1; print v[r]}'
    }
    ms() { awk -v us="$1" 'BEGIN {printf "%.1f", us/1000}'; }

    for i in "${nodes[@]}"; do start_node "$i"; done
    l=$(wait_leader)
    req "$l" "put warm up" && [[ $ans == ok* ]] || { echo "first put failed: $ans" >&2; exit 1; }

    # 1. Failover: kill -9 the leader, time until a survivor acknowledges a write.
    runs=${SHOAL_RAFT_FAILOVERS:-20}
    : >"$work/failover.us"
    for run in $(seq "$runs"); do
        l=$(wait_leader)
        req "$l" "put fo $run" && [[ $ans == ok* ]] || { echo "put fo $run: $ans" >&2; exit 1; }
        kill -9 "${pid[$l]}"
        t0=$(now_us)
        pid[$l]=
        a=$((l % 3 + 1)) b=$(((l + 1) % 3 + 1))
        target=$a
        while :; do
            if req "$target" "put after $run" && [[ $ans == ok* ]]; then
                break
            fi
            next=$(cut -d' ' -f2 <<<"$ans")
            if [[ $ans == redirect* ]] && { [ "$next" = "$a" ] || [ "$next" = "$b" ]; } && [ "$next" != "$target" ]; then
                target=$next
            else
                # No leader yet: ask the other survivor.
                if [ "$target" = "$a" ]; then target=$b; else target=$a; fi
                sleep 0.01
            fi
            [ $(($(now_us) - t0)) -lt 30000000 ] || { echo "failover run $run: no write within 30 s" >&2; exit 1; }
        done
        echo $(($(now_us) - t0)) >>"$work/failover.us"
        start_node "$l"
        # The restarted node catches up before the next round.
        deadline=$(($(now_us) + 30000000))
        until req "$l" "get after" && [ "$ans" = "value $run" ]; do
            [ "$(now_us)" -lt $deadline ] || { echo "node $l did not catch up after run $run" >&2; exit 1; }
            sleep 0.05
        done
    done

    # 2. Steady state with both cores busy: no term changes.
    steady=${SHOAL_RAFT_STEADY_SECS:-300}
    l=$(wait_leader)
    term0=$(max_term)
    for _ in $(seq "$(nproc)"); do
        yes >/dev/null &
        hogs+=($!)
    done
    leader_changes=0
    end=$(($(now_us) + steady * 1000000))
    while [ "$(now_us)" -lt $end ]; do
        sleep 1
        cur=$(leader || echo none)
        if [ "$cur" != "$l" ]; then
            leader_changes=$((leader_changes + 1))
            [ "$cur" != none ] && l=$cur
        fi
    done
    term1=$(max_term)
    kill "${hogs[@]}"
    wait "${hogs[@]}" 2>/dev/null || true
    hogs=()

    # 3. Commit latency: sequential puts on one connection, each answered once applied
    # (appended and fsynced on a majority).
    l=$(wait_leader)
    puts=${SHOAL_RAFT_LATENCY_PUTS:-500}
    exec {conn}<>"/dev/tcp/10.77.0.$l/7001"
    : >"$work/latency.us"
    t_start=$(now_us)
    for k in $(seq "$puts"); do
        t0=$(now_us)
        printf 'put lat%d %d\n' $((k % 50)) "$k" >&"$conn"
        read -r -t 10 ans <&"$conn"
        t1=$(now_us)
        [[ $ans == ok* ]] || { echo "put lat$k: $ans" >&2; exit 1; }
        echo $((t1 - t0)) >>"$work/latency.us"
    done
    t_end=$(now_us)
    exec {conn}>&-
    seq_rate=$(awk -v n="$puts" -v us=$((t_end - t_start)) 'BEGIN {printf "%.0f", n*1e6/us}')

    # The cost of one small append + fdatasync on the disk the WAL is on.
    probes=500
    t0=$(now_us)
    dd if=/dev/zero of="$work/n$l/fsync-probe" bs=128 count=$probes oflag=dsync conv=notrunc status=none
    fsync_us=$((($(now_us) - t0) / probes))
    rm -f "$work/n$l/fsync-probe"

    # 4. Throughput with concurrent writers, each on its own connection.
    writers=${SHOAL_RAFT_WRITERS:-16}
    per_writer=$(((puts + writers - 1) / writers * 4))
    t0=$(now_us)
    writer_pids=()
    for w in $(seq "$writers"); do
        (
            exec {c}<>"/dev/tcp/10.77.0.$l/7001"
            ok=0
            for k in $(seq "$per_writer"); do
                printf 'put w%d-%d %d\n' "$w" $((k % 20)) "$k" >&"$c"
                read -r -t 10 a <&"$c" || break
                [[ $a == ok* ]] && ok=$((ok + 1))
            done
            echo "$ok" >"$work/writer$w.ok"
        ) &
        writer_pids+=($!)
    done
    wait "${writer_pids[@]}"
    t1=$(now_us)
    acked=$(cat "$work"/writer*.ok | awk '{s+=$1} END {print s}')
    total=$((writers * per_writer))
    conc_rate=$(awk -v n="$acked" -v us=$((t1 - t0)) 'BEGIN {printf "%.0f", n*1e6/us}')

    fs=$(df -T "$work" | awk 'NR==2 {print $2}')
    echo "shoal raft benchmark: 3 nodes in network namespaces ($(uname -m), $(nproc) cores, WAL on $fs at $work)"
    printf '  %-58s median %s ms, p99 %s ms, max %s ms\n' \
        "failover, kill -9 leader -> write acked ($runs runs):" \
        "$(ms "$(percentile "$work/failover.us" 50)")" "$(ms "$(percentile "$work/failover.us" 99)")" \
        "$(ms "$(percentile "$work/failover.us" 100)")"
    printf '  %-58s %d (term %s -> %s), leader changes %d\n' \
        "steady state ${steady} s, $(nproc) cores busy: term changes" \
        $((term1 - term0)) "$term0" "$term1" "$leader_changes"
    printf '  %-58s p50 %s ms, p99 %s ms\n' "commit latency over TCP with fsync ($puts puts):" \
        "$(ms "$(percentile "$work/latency.us" 50)")" "$(ms "$(percentile "$work/latency.us" 99)")"
    printf '  %-58s %s ms\n' "append + fdatasync alone (dd oflag=dsync, 128 B, mean):" "$(ms "$fsync_us")"
    printf '  %-58s 1 writer %s puts/s | %d writers %s puts/s (%d/%d acked)\n' \
        "throughput:" "$seq_rate" "$writers" "$conc_rate" "$acked" "$total"
    exit 0
fi

self=$(readlink -f "$0")
cd "$(dirname "$self")/../.."
. tests/lib/deps.sh
apt_install iproute2 util-linux procps coreutils
ensure_rust

cargo build --release --locked -q
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/shoal
[ -x "$bin" ] || { echo "no release binary at $bin" >&2; exit 1; }

work=$(mktemp -d "${SHOAL_RAFT_BENCH_DIR:-/var/tmp}/shoal-raft-bench.XXXXXX")
tag=srb$$
namespaces=("$tag-lab" "$tag-n1" "$tag-n2" "$tag-n3")
cleanup() {
    set +e
    for ns in "${namespaces[@]}"; do
        [ -e "/run/netns/$ns" ] || continue
        # Only processes inside this benchmark's own namespaces.
        for p in $(ip netns pids "$ns"); do kill -9 "$p" 2>/dev/null; done
        ip netns del "$ns"
    done
    rm -rf "$work"
}
trap cleanup EXIT
printf '%s' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$work/cluster.key"

lab=$tag-lab
ip netns add "$lab"
ip -n "$lab" link set lo up
ip -n "$lab" link add br0 type bridge
ip -n "$lab" addr add 10.77.0.254/24 dev br0
ip -n "$lab" link set br0 up
for i in 1 2 3; do
    ns=$tag-n$i
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$lab" link add "v$i" type veth peer name eth0 netns "$ns"
    ip -n "$lab" link set "v$i" master br0
    ip -n "$lab" link set "v$i" up
    ip -n "$ns" addr add "10.77.0.$i/24" dev eth0
    ip -n "$ns" link set eth0 up
done

nsenter --net="/run/netns/$lab" "$BASH" "$self" --in-lab "$work" "$bin" "$tag"
