#!/bin/sh
# Buildroot-style post-image hook: $1 is the image directory. Shared by the qemu boards.
exec "$(dirname "$0")/../../common/qemu-post-image.sh" "$1" "$(cd "$(dirname "$0")" && pwd)"
