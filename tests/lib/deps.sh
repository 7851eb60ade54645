# Shared by tests/run.sh, tests/demo.sh and the benchmark: install what they need.
# Debian/Ubuntu, as root. Idempotent and quiet when everything is present.

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_rust() {
    if command -v cargo >/dev/null 2>&1; then return 0; fi
    [ -x "$HOME/.cargo/bin/cargo" ] && { export PATH="$HOME/.cargo/bin:$PATH"; return 0; }
    # Debian 12 ships a current toolchain as rustc-web/cargo-web.
    apt_install rustc-web cargo-web gcc libc6-dev
}

install_test_deps() {
    apt_install busybox-static iproute2 tar procps kmod crun runc hyperfine dnsutils curl ca-certificates skopeo jq zstd nftables docker-registry apache2-utils openssl dnsmasq-base
    # The admin page's browser test drives headless Chromium through chromedriver.
    apt_install chromium chromium-driver
    # The firmware tests boot board/firmware.sh images under TCG.
    apt_install qemu-system-x86 qemu-system-arm
    ensure_rust
    # A second compose client (Python, v1 API usage) for the compose tests.
    apt_install docker-compose || true
    if ! command -v docker >/dev/null 2>&1 || ! command -v dockerd >/dev/null 2>&1; then
        # The docker CLI drives shoal in tests; image tests also start a private dockerd in its
        # own network namespace (no bridge, no iptables) as a second implementation.
        apt_install docker.io || true
    fi
}
