#!/bin/sh
# Buildroot-style post-build hook: $1 is the root tree about to be packed into the initramfs.
set -eu
tree=${1:?usage: post-build.sh TARGET_DIR}
board=$(basename "$(dirname "$0")")
echo "qemu-$board" > "$tree/etc/hostname"
