#!/bin/sh
# Write a busybox root filesystem tar, the input of `shoal import` and `docker import`:
#   tests/lab/busybox-image.sh OUT.tar [NAME]
# It holds Debian's static busybox as /bin/busybox with a symlink per applet (as
# `busybox --install -s` makes), /etc/passwd and /etc/group with root, app (1000, also in group extra) and nobody, empty
# /tmp, /root, /proc, /sys, /dev. NAME (default "busybox") is written to /etc/image-name, so
# two calls with different names give images with different IDs.
set -eu
out=${1:?usage: busybox-image.sh OUT.tar [NAME]}
name=${2:-busybox}
bb=${BUSYBOX:-/bin/busybox}
[ -x "$bb" ] || { echo "busybox-image.sh: $bb not found (apt-get install busybox-static)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin" "$root/etc" "$root/root" \
    "$root/tmp" "$root/home/app" "$root/proc" "$root/sys" "$root/dev" "$root/var"
chmod 1777 "$root/tmp"
chmod 700 "$root/root"
cp "$bb" "$root/bin/busybox"
chmod 755 "$root/bin/busybox"
for applet in $("$bb" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
app:x:1000:
extra:x:2000:app
nogroup:x:65534:
GROUP
printf '%s\n' "$name" > "$root/etc/image-name"
tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$out" .
