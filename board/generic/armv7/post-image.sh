#!/bin/sh
# Buildroot-style post-image hook: $1 is the image directory (vmlinuz, initramfs.cpio.gz).
# Writes extlinux/extlinux.conf for U-Boot's distro boot: put the directory on the first
# partition (FAT or ext4) next to the board's device tree in dtbs/.
set -eu
out=${1:?usage: post-image.sh IMAGES_DIR}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/target"
mkdir -p "$out/extlinux"
cat > "$out/extlinux/extlinux.conf" <<CONF
label shoal
    kernel /vmlinuz
    initrd /initramfs.cpio.gz
    fdtdir /dtbs
    append console=$CONSOLE,115200 shoal.data=/dev/mmcblk0p2
CONF
