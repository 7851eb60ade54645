#!/bin/sh
# Write a busybox root file system tar (input of `shoal import`):
#   BUSYBOX=/path/to/static/busybox APPLETS="sh ls ..." board/common/busybox-rootfs.sh OUT.tar
# /bin/busybox plus one symlink per applet, /etc/passwd and /etc/group, empty /tmp, /proc,
# /sys, /dev. APPLETS defaults to what BUSYBOX --list prints (when it can run here).
set -eu
out=${1:?usage: busybox-rootfs.sh OUT.tar}
bb=${BUSYBOX:-/bin/busybox}
applets=${APPLETS:-$("$bb" --list)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root/bin" "$root/etc" "$root/root" "$root/tmp" "$root/proc" "$root/sys" "$root/dev" "$root/var"
chmod 1777 "$root/tmp"
chmod 700 "$root/root"
cp "$bb" "$root/bin/busybox"
chmod 755 "$root/bin/busybox"
for applet in $applets; do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$out" .
