#!/bin/sh
# Build static, stripped release binaries of shoal for the three board CPUs, on a Debian
# bookworm x86_64 machine, then run the foreign ones under qemu-user-static.
#
#   board/build.sh                 all three targets
#   TARGETS="aarch64-unknown-linux-gnu" board/build.sh
#   UNIT_TESTS="armv7-unknown-linux-gnueabihf" board/build.sh
#                                  also runs the library's unit tests of these targets
#                                  under qemu-user (32-bit armv7 is the one unlike x86_64)
#
# Output: board/out/<target>/shoal (and a size line per target). The release profile in
# Cargo.toml is already opt-level "z", LTO, one codegen unit, panic=abort, strip.
#
# Toolchains: x86_64 uses the rustup toolchain; aarch64/armv7 use Debian's rustc-web (1.96)
# with its std for the foreign architecture and the gcc cross linkers. Missing packages are
# installed with apt-get. When the armhf std cannot be installed through apt (its runtime
# package drags in libllvm for armhf, or the security mirror is mid-sync) the std rlibs are
# taken from the same version's -dev package, unpacked privately and passed with -L.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
TARGETS=${TARGETS:-"x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf"}
OUT=${OUT:-$repo/board/out}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
DEB_RUSTC=/usr/bin/rustc
SECURITY_POOL=http://deb.debian.org/debian-security/pool/updates/main/r/rustc-web

say() { printf '== %s\n' "$*" >&2; }

need_pkgs() {
    # Install the named packages when dpkg does not list them as installed.
    missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    refresh_apt_lists
    say "installing$missing"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >&2
}

# A fresh machine's apt lists may predate bookworm-security's rustc-web (1.96); installing
# from them would bring bookworm's 1.85, too old for shoal. Refresh them once per run.
apt_lists_fresh=no
refresh_apt_lists() {
    [ "$apt_lists_fresh" = yes ] && return 0
    apt-get update -q >&2 || say "apt-get update failed; installing from the lists at hand"
    apt_lists_fresh=yes
}

# Debian's rustc-web must be at least Cargo.toml's rust-version; an older one is upgraded.
ensure_rustc_web_version() {
    need=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml)
    have=$($DEB_RUSTC --version | cut -d' ' -f2)
    dpkg --compare-versions "$have" ge "$need" && return 0
    say "Debian's rustc-web is $have, shoal needs $need: upgrading it"
    refresh_apt_lists
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends rustc-web >&2
    have=$($DEB_RUSTC --version | cut -d' ' -f2)
    if ! dpkg --compare-versions "$have" ge "$need"; then
        echo "board/build.sh: Debian's rustc-web is $have after upgrading; shoal needs $need" \
            "(bookworm-security has 1.96: is it in /etc/apt/sources.list?)" >&2
        exit 1
    fi
}

add_arch() {
    if ! dpkg --print-foreign-architectures | grep -qx "$1"; then
        dpkg --add-architecture "$1"
        apt_lists_fresh=no
        refresh_apt_lists
    fi
}

rustc_web_version() {
    dpkg-query -W -f='${Version}' rustc-web 2>/dev/null
}

# Foreign std: the apt package when it installs cleanly at rustc-web's version, otherwise
# the rlibs of that exact version unpacked under the target dir.
foreign_std() { # $1 debian arch, $2 rust target; prints extra RUSTFLAGS
    arch=$1 target=$2
    ver=$(rustc_web_version)
    [ "$(dpkg-query -W -f='${Version}' "libstd-rust-web-dev:$arch" 2>/dev/null)" = "$ver" ] && return 0
    if DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "libstd-rust-web-dev:$arch=$ver" >&2 2>/dev/null; then
        return 0
    fi
    private="$CARGO_TARGET_DIR/std-$arch-$ver"
    if [ ! -d "$private/usr/lib/rustlib/$target/lib" ]; then
        say "apt cannot install libstd-rust-web-dev:$arch=$ver; unpacking it privately"
        mkdir -p "$private"
        deb="$private.deb"
        curl -fsSL -o "$deb" "$SECURITY_POOL/libstd-rust-web-dev_${ver}_${arch}.deb"
        dpkg -x "$deb" "$private"
        rm -f "$deb"
    fi
    printf -- '-L %s' "$private/usr/lib/rustlib/$target/lib"
}

setup_toolchains() {
    need_pkgs curl ca-certificates
    case "$TARGETS" in *aarch64*|*armv7*)
        need_pkgs rustc-web qemu-user-static
        ensure_rustc_web_version ;;
    esac
    case "$TARGETS" in *aarch64*)
        add_arch arm64
        need_pkgs gcc-aarch64-linux-gnu libc6-dev-arm64-cross ;;
    esac
    case "$TARGETS" in *armv7*)
        add_arch armhf
        need_pkgs gcc-arm-linux-gnueabihf libc6-dev-armhf-cross ;;
    esac
}

# Runs cargo for target $1 with the toolchain, linker and flags of that target; the foreign
# ones' binaries (tests) run under qemu-user.
cargo_for() { # $1 rust target, then cargo's arguments
    target=$1
    shift
    static="-C target-feature=+crt-static"
    case "$target" in
    x86_64-unknown-linux-gnu)
        rustup target list --installed 2>/dev/null | grep -qx "$target" || rustup target add "$target"
        # rust-lld (the x86_64 default since Rust 1.90) folds identical functions: 115 KB.
        # Rust makes no promise that distinct functions have distinct addresses.
        # RELR packs the static-pie's relative relocations (glibc >= 2.36 applies them at
        # start): 200 KB of .rela.dyn become 2 KB.
        x86_link="-C link-arg=-Wl,--icf=all -C link-arg=-Wl,-z,pack-relative-relocs"
        env RUSTFLAGS="$static $x86_link" cargo "$@" --target "$target" >&2
        ;;
    aarch64-unknown-linux-gnu)
        extra=$(foreign_std arm64 "$target")
        env RUSTC="$DEB_RUSTC" CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
            CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64-static \
            RUSTFLAGS="$static $extra" cargo "$@" --target "$target" >&2
        ;;
    armv7-unknown-linux-gnueabihf)
        extra=$(foreign_std armhf "$target")
        env RUSTC="$DEB_RUSTC" CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc \
            CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER=qemu-arm-static \
            RUSTFLAGS="$static $extra" cargo "$@" --target "$target" >&2
        ;;
    *)
        echo "unknown target $target" >&2
        return 1
        ;;
    esac
}

build_one() { # $1 rust target
    cargo_for "$1" build --locked --release
    mkdir -p "$OUT/$1"
    cp "$CARGO_TARGET_DIR/$1/release/shoal" "$OUT/$1/shoal"
}

qemu_for() {
    case "$1" in
    aarch64-*) echo qemu-aarch64-static ;;
    armv7-*) echo qemu-arm-static ;;
    *) echo "" ;;
    esac
}

check_one() { # $1 rust target: static, runs, self-test passes
    bin="$OUT/$1/shoal"
    if file "$bin" 2>/dev/null | grep -q "dynamically linked"; then
        echo "$bin is dynamically linked" >&2
        return 1
    fi
    runner=$(qemu_for "$1")
    $runner "$bin" --version || return 1
    $runner "$bin" self-test || return 1
}

setup_toolchains
status=0
for t in $TARGETS; do
    say "building $t"
    build_one "$t"
done
printf '%-34s %10s %8s\n' target bytes MiB
for t in $TARGETS; do
    bytes=$(stat -c %s "$OUT/$t/shoal")
    printf '%-34s %10s %8s\n' "$t" "$bytes" "$(awk -v b="$bytes" 'BEGIN{printf "%.2f", b/1048576}')"
done
for t in $TARGETS; do
    say "checking $t"
    check_one "$t" || status=1
done
for t in ${UNIT_TESTS:-}; do
    say "unit tests of $t"
    # Time budgets in the tests are for native runs, not for emulation.
    SHOAL_TEST_EMULATED=$(qemu_for "$t") cargo_for "$t" test --locked --lib || status=1
done
exit $status
