#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# End to end: the host's unmodified QEMU runs an unmodified Linux guest
# with -netdev tap,vhost=on,vhostforce=on on the vhost_net implementation
# named by $1.  Ping both ways over the tap and prove that the vhost
# worker thread of that QEMU carried the packets.
. "$(dirname "$0")/vm_lib.sh"

impl=${1:?usage: nested_ping.sh ours|reference}
L2_LOG=$HOSTROOT/tmp/l2.log
TAP=tap0
L1_ADDR=10.99.0.1
L2_ADDR=10.99.0.2
PINGS=10

group "nested ping ($impl)"

wait_for() {
	local secs=$1 i=0
	shift
	while ! "$@"; do
		i=$((i + 1))
		[ "$i" -ge "$secs" ] && return 1
		sleep 1
	done
}

start_l2() {
	mkdir -p "$HOSTROOT/tmp/l2"
	cp /l2/bzImage /l2/initramfs.cpio.gz "$HOSTROOT/tmp/l2/"
	in_host_bg qemu-system-x86_64 -accel tcg -m 256 -smp 1 -nodefaults \
		-display none -no-reboot \
		-kernel /tmp/l2/bzImage -initrd /tmp/l2/initramfs.cpio.gz \
		-append "console=ttyS0 panic=-1 quiet" \
		-serial file:/tmp/l2.log \
		-netdev tap,id=n0,ifname=$TAP,script=no,downscript=no,vhost=on,vhostforce=on \
		-device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56 \
		< /dev/null > /tmp/qemu-l2.out 2>&1
	QEMU_PID=$!
}

# The vhost worker of a vhost_task is a thread of QEMU named vhost-<pid>.
worker_tid() {
	local t
	for t in /proc/"$QEMU_PID"/task/*; do
		[ "$(cat "$t/comm" 2>/dev/null)" = "vhost-$QEMU_PID" ] &&
			{ basename "$t"; return 0; }
	done
	return 1
}

worker_wakeups() {
	sed -n 's/^voluntary_ctxt_switches:[[:space:]]*//p' \
		"/proc/$QEMU_PID/task/$1/status"
}

worker_cpu_ticks() {
	awk '{ print $14 + $15 }' "/proc/$QEMU_PID/task/$1/stat"
}

tap_up() {
	[ -d /sys/class/net/$TAP ] || return 1
	ip addr add $L1_ADDR/24 dev $TAP && ip link set $TAP up
}

stop_l2() {
	kill "$QEMU_PID" 2>/dev/null
	wait "$QEMU_PID" 2>/dev/null
	return 0
}

if ! impl_available "$impl"; then
	skip "nested guest on $impl vhost_net" "implementation not built"
	exit 0
fi
check "load $impl vhost_net" load_vhost "$impl" || exit 1
check "host root usable for qemu" hostroot_ready || exit 1

start_l2
if ! wait_for 60 tap_up; then
	fail "QEMU created $TAP"
	cat /tmp/qemu-l2.out "$HOSTROOT/tmp/qemu-l2.out" 2>/dev/null | sed 's/^/# /'
	stop_l2
	exit 1
fi
pass "QEMU created $TAP with vhost=on"

if wait_for 300 grep -q 'L2-PING-' "$L2_LOG"; then
	check "L2 guest pings L1 over vhost" grep -q 'L2-PING-OK' "$L2_LOG"
else
	fail "L2 guest booted and reported"
fi
sed 's/^/# l2: /' "$L2_LOG" | tail -n 12

tid=$(worker_tid)
if [ -z "$tid" ]; then
	fail "vhost worker thread vhost-$QEMU_PID exists"
	stop_l2
	unload_vhost
	exit 1
fi
pass "vhost worker thread vhost-$QEMU_PID exists"

wake0=$(worker_wakeups "$tid")
cpu0=$(worker_cpu_ticks "$tid")
rx0=$(cat /sys/class/net/$TAP/statistics/rx_packets)
check "L1 pings L2 ($PINGS echo requests)" \
	timeout 60 ping -c $PINGS -W 5 -q $L2_ADDR
wake1=$(worker_wakeups "$tid")
cpu1=$(worker_cpu_ticks "$tid")
rx1=$(cat /sys/class/net/$TAP/statistics/rx_packets)
note "worker wakeups $wake0 -> $wake1, cpu ticks $cpu0 -> $cpu1, tap rx $rx0 -> $rx1"
# Every echo request reaches the guest through the worker's RX path and
# every reply leaves through its TX path: at least one wakeup per ping.
check "vhost worker woke for each packet" [ $((wake1 - wake0)) -ge $PINGS ]
check "guest replies arrived on $TAP" [ $((rx1 - rx0)) -ge $PINGS ]

stop_l2
check "QEMU exited" wait_for 30 sh -c "[ ! -d /proc/$QEMU_PID ]"
check "unload $impl vhost_net after use" unload_vhost
exit $FAILED
