#!/usr/bin/env bash
# The whole test suite, on a fresh Debian/Ubuntu machine as root:
#   tests/run.sh
# Installs what the tests need (packages, a Rust toolchain if none), builds shoal, and runs
# the unit, simulation and integration tests (integration tests make their own network
# namespaces, state dirs and cgroups, and clean up after themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib/deps.sh
install_test_deps

# Network safety: tests work only inside namespaces they make. Note what the machine's own
# namespace has now, and fail the run if the tests left a bridge or rule of ours in it.
root_net_state() {
    { ip -o link show | grep -Eo ': (shoal[^:@]*|br-[0-9a-f]+)' || true
      nft list tables 2>/dev/null | grep shoal || true; } | sort
}
before=$(root_net_state)

export RUST_BACKTRACE=1
# Integration tests start daemons and containers; two at a time suits a small machine.
# (Failures must not end the script here: the summary and the safety check still run.)
set +e
cargo test --locked --no-fail-fast -- --test-threads="${SHOAL_TEST_THREADS:-2}" 2>&1 | tee /tmp/shoal-test.log
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' /tmp/shoal-test.log | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' /tmp/shoal-test.log | awk '{s+=$1} END {print s+0}')
after=$(root_net_state)
if [ "$before" != "$after" ]; then
    echo "network safety: the tests changed the machine's own namespace:" >&2
    diff <(echo "$before") <(echo "$after") >&2 || true
    status=1
fi
echo "shoal: ${passed} passed, ${failed} failed"
exit "$status"
