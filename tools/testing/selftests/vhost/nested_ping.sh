#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# End to end: the host's unmodified QEMU runs an unmodified Linux guest
# with -netdev tap,vhost=on,vhostforce=on on the vhost_net implementation
# named by $1.  Ping both ways over the tap and prove that the vhost
# worker thread of that QEMU carried the packets.
. "$(dirname "$0")/vm_lib.sh"
. "$(dirname "$0")/nested_lib.sh"

impl=${1:?usage: nested_ping.sh ours|reference}
PINGS=10

group "nested ping ($impl)"

if ! impl_available "$impl"; then
	skip "nested guest on $impl vhost_net" "implementation not built"
	exit 0
fi
check "load $impl vhost_net" load_vhost "$impl" || exit 1
check "host root usable for qemu" hostroot_ready || exit 1

boot_l2 1 "" || { unload_vhost; exit 1; }
if wait_for $L2_BOOT_WAIT grep -q 'L2-PING-' "$L2_LOG"; then
	check "L2 guest pings L1 over vhost" grep -q 'L2-PING-OK' "$L2_LOG"
else
	fail "L2 guest reported its ping"
fi
sed 's/^/# l2: /' "$L2_LOG" | tail -n 12

tid=$(worker_tids | head -n 1)
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
check "QEMU exited" wait_for 120 sh -c "[ ! -d /proc/$QEMU_PID ]"
check "unload $impl vhost_net after use" unload_vhost
exit $FAILED
