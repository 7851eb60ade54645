#!/bin/sh
# Buildroot-style post-image hook: $1 is the image directory (vmlinuz, initramfs.cpio.gz).
# Lays out the FAT boot partition of an SD card in $1/boot: kernel, initramfs, device tree,
# config.txt and cmdline.txt. The GPU firmware files (start4.elf, fixup4.dat) come from
# Debian's raspi-firmware package. Partition 2 (ext4, any size) holds /var/lib/shoal.
set -eu
out=${1:?usage: post-image.sh IMAGES_DIR}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/target"
boot=$out/boot
mkdir -p "$boot"
cp "$out/vmlinuz" "$boot/kernel8.img"
cp "$out/initramfs.cpio.gz" "$boot/initramfs.gz"
[ -n "${KERNEL_ROOT:-}" ] && cp "$KERNEL_ROOT/usr/lib/linux-image-"*"/$DTB" "$boot/" 2>/dev/null || true
cat > "$boot/config.txt" <<CFG
# Raspberry Pi 4, 64-bit kernel, initramfs with shoal as /init.
arm_64bit=1
enable_uart=1
kernel=kernel8.img
initramfs initramfs.gz followkernel
device_tree=$(basename "$DTB")
CFG
cat > "$boot/cmdline.txt" <<CMD
console=$CONSOLE,115200 console=tty1 shoal.data=/dev/mmcblk1p2 ip=dhcp
CMD
cat > "$out/genimage.cfg" <<GEN
image boot.vfat {
  vfat { files = { "boot/kernel8.img", "boot/initramfs.gz", "boot/config.txt", "boot/cmdline.txt" } }
  size = 64M
}
image sdcard.img {
  hdimage { }
  partition boot { partition-type = 0xC bootable = "true" image = "boot.vfat" }
  partition data { partition-type = 0x83 size = 512M }
}
GEN
