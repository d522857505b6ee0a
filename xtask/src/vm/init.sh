#!/bin/busybox sh
# The guest's /init (written by `cargo xtask vm-test`): mounts what ckpt-watch and CRIU use,
# loads the modules staged for this kernel, runs the suite, and reports over serial ports:
# ttyS0 console, ttyS1 result records (JSON lines), ttyS2 the runner's exit code alone.
/bin/busybox --install -s /bin
# pivot_root(2), with which runc enters a container's rootfs, cannot leave the initramfs (its
# root mount has no parent): /init runs again on a bind mount of it moved over /, the switch
# of root a distro's initramfs makes, without the copy.
if [ -z "$ROOT_MOVED" ]; then
	mkdir -p /.root
	mount --bind / /.root
	cd /.root
	mount --move . /
	export ROOT_MOVED=1
	exec chroot . /init
fi
# The real tools (ip from iproute2, for CRIU) before the busybox applets of the same name.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o ptmxmode=0666 devpts /dev/pts
for t in /tmp /run /dev/shm; do mount -t tmpfs tmpfs $t; done
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t securityfs securityfs /sys/kernel/security
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
# Modules come in dependency order; one that is already built in fails harmlessly.
while read -r m; do insmod /lib/modules/$m.ko 2>/dev/null; done < /etc/modules.load
# The zoo lives on the ext4 scratch disk when there is one (the runner reports which fs).
sleep 0.2
[ -b /dev/vda ] && mount -t ext4 /dev/vda /srv/zoo
# Raw mode: no CR/LF translation or echo on the data ports.
stty -F /dev/ttyS1 raw -echo
stty -F /dev/ttyS2 raw -echo
/bin/xtask vm-test --guest > /dev/ttyS1
echo "$?" > /dev/ttyS2
sync
# With -no-reboot, QEMU exits instead of rebooting.
reboot -f
