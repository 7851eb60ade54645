#!/bin/sh
# Build a firmware image for a qemu board: Debian's kernel + an initramfs whose /init is
# shoal, with the kernel modules the board needs and a busybox image loaded at first boot.
#
#   board/firmware.sh qemu/x86_64          -> board/out/qemu/x86_64/{vmlinuz,initramfs.cpio.gz,run-qemu.sh}
#   board/firmware.sh qemu/aarch64-virt
#   BUSYBOX_INIT=1 board/firmware.sh qemu/x86_64   -> board/out/qemu/x86_64-busybox-init/...
#       the same image plus BusyBox as /sbin/init with board/common/busybox-init/inittab,
#       which starts shoal through rootfs/etc/init.d/S60shoal (boot with rdinit=/sbin/init)
#
# Steps (Buildroot's order): shoal for the board's CPU (board/build.sh, skipped when
# board/out/<target>/shoal exists; SHOAL_BIN=path uses another static binary), kernel from
# `apt-get download`, modules and their dependencies resolved with depmod/modprobe, the
# root tree from rootfs/ plus the board's post-build.sh, then cpio + gzip and the board's
# post-image.sh.
set -eu

board=${1:?usage: board/firmware.sh <vendor/board>   (e.g. qemu/x86_64)}
repo=$(cd "$(dirname "$0")/.." && pwd)
bdir=$repo/board/$board
[ -f "$bdir/target" ] || { echo "firmware.sh: no board $board (missing $bdir/target)" >&2; exit 1; }
# shellcheck source=/dev/null
. "$bdir/target"
: "${RUST_TARGET:?} ${DEB_ARCH:?} ${KERNEL_PKG:?}"
out=$repo/board/out/$board
[ "${BUSYBOX_INIT:-0}" = 1 ] && out=$out-busybox-init
cache=${FIRMWARE_CACHE:-${CARGO_TARGET_DIR:-$repo/target}/firmware-cache}
mkdir -p "$out" "$cache"
say() { printf '== %s\n' "$*" >&2; }

# 1. shoal
bin=${SHOAL_BIN:-$repo/board/out/$RUST_TARGET/shoal}
if [ ! -x "$bin" ]; then
    say "building shoal for $RUST_TARGET"
    TARGETS=$RUST_TARGET "$repo/board/build.sh"
fi
file "$bin" | grep -Eq "static(-pie)? linked|statically linked" || { echo "firmware.sh: $bin is not static" >&2; exit 1; }

# 2. kernel
for p in kmod cpio; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$p" >&2
done
if [ "$DEB_ARCH" != "$(dpkg --print-architecture)" ] && ! dpkg --print-foreign-architectures | grep -qx "$DEB_ARCH"; then
    dpkg --add-architecture "$DEB_ARCH"
    apt-get update -q >&2 || true
fi
pkgspec=$KERNEL_PKG
[ "$DEB_ARCH" = "$(dpkg --print-architecture)" ] || pkgspec="$KERNEL_PKG:$DEB_ARCH"
# The metapackage names the current ABI's image package.
image_pkg=$(apt-cache depends "$pkgspec" | sed -n 's/^ *Depends: \(linux-image-[^ :]*\).*/\1/p' | head -n1)
[ -n "$image_pkg" ] || { echo "firmware.sh: cannot resolve $pkgspec" >&2; exit 1; }
kroot=$cache/$image_pkg-$DEB_ARCH
if [ ! -d "$kroot/boot" ]; then
    say "downloading $image_pkg ($DEB_ARCH)"
    (cd "$cache" && apt-get download "$image_pkg:$DEB_ARCH" >&2)
    mkdir -p "$kroot"
    dpkg -x "$cache/${image_pkg}_"*"_$DEB_ARCH.deb" "$kroot"
fi
kver=$(ls "$kroot/lib/modules" | head -n1)
[ -f "$kroot/lib/modules/$kver/modules.dep" ] || depmod -b "$kroot" "$kver"
# Outputs are written beside their final names and renamed into place, so a reader (a test
# booting the image while another builds it) never sees half a file.
cp "$kroot/boot/vmlinuz-$kver" "$out/vmlinuz.$$" && mv -f "$out/vmlinuz.$$" "$out/vmlinuz"

# 3. root tree
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree/usr/bin" "$tree/etc/shoal" "$tree/etc/init.d" "$tree/dev" "$tree/proc" "$tree/sys" \
    "$tree/run" "$tree/tmp" "$tree/var/lib/shoal" "$tree/usr/share/shoal/images" "$tree/lib/modules/$kver"
cp "$bin" "$tree/usr/bin/shoal"
ln -s usr/bin/shoal "$tree/init"
cp "$repo/rootfs/etc/shoal/config.toml" "$tree/etc/shoal/config.toml"
cp "$repo/rootfs/etc/init.d/S60shoal" "$tree/etc/init.d/S60shoal"
mknod -m 600 "$tree/dev/console" c 5 1
mknod -m 666 "$tree/dev/null" c 1 3
# Two lists: the board's drivers, loaded by init before the network comes up, and the
# container features (board/common/modules.preload), which the kernel asks for on first use
# through /sbin/modprobe (shoal) and init loads in the background once the daemon is ready.
# Each module is copied with everything modprobe would load with it (soft dependencies
# included: libcrc32c wants crc32c); depmod below writes the alias and softdep tables.
copy_modules() { # LIST_FILE OUT_LIST
    : > "$2"
    for m in $(sed 's/#.*//' "$1"); do
        modprobe -d "$kroot" -S "$kver" --show-depends "$m" | while read -r kind path _; do
            [ "$kind" = insmod ] || continue
            rel=${path#"$kroot/lib/modules/$kver/"}
            mkdir -p "$tree/lib/modules/$kver/$(dirname "$rel")"
            cp "$path" "$tree/lib/modules/$kver/$rel"
        done
        echo "$m" >> "$2"
    done
}
copy_modules "$bdir/modules" "$tree/etc/shoal/modules"
copy_modules "$repo/board/common/modules.preload" "$tree/etc/shoal/modules.preload"
mkdir -p "$tree/sbin"
ln -s ../usr/bin/shoal "$tree/sbin/modprobe"
cp "$kroot/lib/modules/$kver/modules.builtin" "$kroot/lib/modules/$kver/modules.builtin.modinfo" "$kroot/lib/modules/$kver/modules.order" "$tree/lib/modules/$kver/"
depmod -b "$tree" "$kver"
# The busybox image: Debian's static busybox for the board's CPU, as a root file system tar
# that init imports as busybox:latest at first boot.
bbdeb=$(ls "$cache"/busybox-static_*_"$DEB_ARCH".deb 2>/dev/null | head -n1 || true)
if [ -z "$bbdeb" ]; then
    bbspec=busybox-static
    [ "$DEB_ARCH" = "$(dpkg --print-architecture)" ] || bbspec="busybox-static:$DEB_ARCH"
    (cd "$cache" && apt-get download "$bbspec" >&2)
    bbdeb=$(ls "$cache"/busybox-static_*_"$DEB_ARCH".deb | head -n1)
fi
bbx=$(mktemp -d)
dpkg -x "$bbdeb" "$bbx"
# Applet names come from the host's busybox of the same Debian release (the foreign one
# cannot run here without binfmt).
BUSYBOX=$bbx/bin/busybox APPLETS="$(busybox --list)" sh "$repo/board/common/busybox-rootfs.sh" \
    "$tree/usr/share/shoal/images/busybox.rootfs.tar"
if [ "${BUSYBOX_INIT:-0}" = 1 ]; then
    mkdir -p "$tree/bin" "$tree/var/log"
    cp "$bbx/bin/busybox" "$tree/bin/busybox"
    for applet in $(busybox --list); do
        [ -e "$tree/bin/$applet" ] || ln -s busybox "$tree/bin/$applet"
    done
    ln -s ../bin/busybox "$tree/sbin/init"
    ln -s ../usr/bin/shoal "$tree/bin/shoal"
    cp "$repo/board/common/busybox-init/inittab" "$tree/etc/inittab"
    cp "$repo/board/common/busybox-init/selftest.sh" "$tree/etc/init.d/selftest.sh"
fi
rm -rf "$bbx"
[ -x "$bdir/post-build.sh" ] && "$bdir/post-build.sh" "$tree"

# 4. image
(cd "$tree" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -6 > "$out/initramfs.cpio.gz.$$")
mv -f "$out/initramfs.cpio.gz.$$" "$out/initramfs.cpio.gz"
[ -x "$bdir/post-image.sh" ] && KERNEL_ROOT=$kroot "$bdir/post-image.sh" "$out"
say "kernel $kver: $(stat -c %s "$out/vmlinuz") bytes; initramfs: $(stat -c %s "$out/initramfs.cpio.gz") bytes"
echo "$out"
