#!/bin/sh
# The qemu boards' post-image hook: $1 is the image directory (vmlinuz, initramfs.cpio.gz),
# $2 the board folder whose `target` names the qemu machine.
# Writes run-qemu.sh there: boots the image on the serial console, TCG, no network backend
# (the NIC is attached to an empty qemu hub, so the guest can configure it and reach
# nobody). Extra kernel words: run-qemu.sh 'ip=10.0.2.15::10.0.2.2:24:b1:eth0'.
set -eu
out=${1:?usage: qemu-post-image.sh IMAGES_DIR BOARD_DIR}
bdir=${2:?usage: qemu-post-image.sh IMAGES_DIR BOARD_DIR}
. "$bdir/target"
cat > "$out/run-qemu.sh" <<RUN
#!/bin/sh
# Boot this image under qemu (TCG). MEM (MiB, default 256), APPEND (kernel words), NETDEV
# (qemu -netdev value with id=lan; default: an empty hub), MAC and DISK (a raw image attached
# as /dev/vda, e.g. for shoal.data=/dev/vda) may be set.
d=\$(cd "\$(dirname "\$0")" && pwd)
exec $QEMU $QEMU_MACHINE -m "\${MEM:-256}" -smp 1 -nographic -no-reboot \\
    -kernel "\$d/vmlinuz" -initrd "\$d/initramfs.cpio.gz" \\
    -device virtio-rng-pci \\
    -netdev "\${NETDEV:-hubport,id=lan,hubid=0}" -device "$NET_DEVICE,netdev=lan,mac=\${MAC:-52:54:00:12:34:56}" \\
    \${DISK:+-drive "file=\$DISK,if=none,id=data,format=raw" -device virtio-blk-pci,drive=data} \\
    -append "console=$CONSOLE panic=-1 quiet \${APPEND:-} \$*"
RUN
chmod +x "$out/run-qemu.sh"
