#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Lifecycle under load: SIGKILL the QEMU of a nested guest in the middle
# of an iperf3 stream through vhost_net implementation $1.  The vhost
# workers must go with it, the module must unload, and the kernel log must
# stay clean (the runner checks it, with kmemleak, after the suite).
. "$(dirname "$0")/vm_lib.sh"
. "$(dirname "$0")/nested_lib.sh"

impl=${1:?usage: nested_kill.sh ours|reference}

group "SIGKILL of QEMU mid-traffic ($impl)"

if ! impl_available "$impl"; then
	skip "SIGKILL mid-traffic on $impl vhost_net" "implementation not built"
	exit 0
fi
check "load $impl vhost_net" load_vhost "$impl" || exit 1
check "host root usable for qemu" hostroot_ready || exit 1
boot_l2 2 "l2.iperf=1" || { unload_vhost; exit 1; }
check "L2 serves iperf3" grep -q 'L2-IPERF-SERVER-UP' "$L2_LOG"

timeout 90 chroot "$HOSTROOT" /usr/bin/iperf3 -c $L2_ADDR -t 60 -P 4 \
	> /tmp/iperf3-kill.out 2>&1 &
iperf_pid=$!

# iperf3 starts from the 9p root under TCG: wait for a real stream (100
# kB through the tap), however long it takes to get going, up to 3 min.
tap_tx() { cat /sys/class/net/$TAP/statistics/tx_bytes; }
tap_tx_grew() { [ $(($(tap_tx) - $1)) -gt 100000 ]; }
check "traffic flowing before the kill" wait_for 180 tap_tx_grew "$(tap_tx)"
tids=$(worker_tids)
check "vhost workers running before the kill" [ -n "$tids" ]
kill -KILL "$QEMU_PID"
check "QEMU gone after SIGKILL" wait_for 120 sh -c "[ ! -d /proc/$QEMU_PID ]"
wait "$QEMU_PID" 2>/dev/null
kill "$iperf_pid" 2>/dev/null
wait "$iperf_pid" 2>/dev/null
check "tap0 went away with its last file" wait_for 60 sh -c "[ ! -d /sys/class/net/$TAP ]"
check "unload $impl vhost_net after the kill" unload_vhost
exit $FAILED
