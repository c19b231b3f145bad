#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# End to end under load: iperf3 TCP between L1 and an unmodified L2 guest
# served by the vhost_net implementation $1, host to guest and guest to
# host, with $2 queue pairs (QEMU mq=on when more than one).  Proves that
# every vhost worker of that QEMU carried traffic.  The one-queue guest
# has a second NIC with checksum offload and TSO off, measured both ways
# too.  Then L2 is stopped as QEMU stops it, or with a third argument "kill", its
# QEMU is killed mid-stream (kill_mid_stream: the SIGKILL case without a
# boot of its own).
. "$(dirname "$0")/vm_lib.sh"
. "$(dirname "$0")/nested_lib.sh"

impl=${1:?usage: nested_iperf.sh ours|reference [queue pairs] [kill]}
queues=${2:-1}
ending=${3:-stop}
SECS=10
STREAMS=$((queues > 1 ? 4 : 1))

group "nested iperf3 ($impl, $queues queue pair(s))"

if ! impl_available "$impl"; then
	skip "iperf3 through $impl vhost_net" "implementation not built"
	exit 0
fi

# The vhost-net devices of L2's first NIC: one per queue pair, opened
# before the second NIC's.
nic_devices() {
	qemu_devices | head -n "$queues"
}

# Bytes each of the first NIC's vhost-net devices moved both ways, one
# line each, in a stable order.
device_bytes_list() {
	local d
	for d in $(nic_devices); do
		awk '$1 == "rx_bytes" || $1 == "tx_bytes" { n += $2 } END { print n + 0 }' "$d/stats"
	done
}

# Sum of one counter over the debugfs stats of the first NIC's vhost-net
# devices (ours only): the proof that our worker moved the bytes.
our_counter() {
	local d
	for d in $(nic_devices); do
		cat "$d/stats"
	done | awk -v k="$1" '$1 == k { n += $2 } END { print n + 0 }'
}

# counted_iperf FLAG NAME COUNTER: iperf3, then for ours check that the
# device counted at least the bytes iperf3 saw arrive.
counted_iperf() {
	local c0 c1
	c0=$(our_counter "$3")
	run_iperf "$1" "$2" || return
	c1=$(our_counter "$3")
	[ "$impl" = ours ] || return 0
	note "$3: $c0 -> $c1, iperf3 received $BYTES bytes"
	check "$2: our $3 counted the stream, within bounds" counted_ok $((c1 - c0))
}

check "load $impl vhost_net" load_vhost "$impl" || exit 1
check "host root usable for qemu" hostroot_ready || exit 1
# The one-queue guest also has a NIC with checksum offload and TSO off
# (measured after the first NIC's checks; nested_offload.sh compares the
# reference).
[ "$queues" = 1 ] && L2_NIC2=$NO_OFFLOADS
boot_l2 "$queues" "l2.iperf=1" || { unload_vhost; exit 1; }
check "L2 serves iperf3" grep -q 'L2-IPERF-SERVER-UP' "$L2_LOG"
check "L2 driver enabled $queues queue pair(s)" grep -q "L2-READY.* queues $queues[^0-9]*$" "$L2_LOG"

# One vhost worker per queue pair, and one for the second NIC.
workers=$queues
[ -n "${L2_NIC2:-}" ] && workers=$((queues + 1))
tids=$(worker_tids)
check "one vhost worker per queue pair" [ "$(echo $tids | wc -w)" = "$workers" ]
before=$(device_bytes_list)
counted_iperf "" "host to guest" rx_bytes
counted_iperf -R "guest to host" tx_bytes
after=$(device_bytes_list)
note "bytes per device before: $(echo $before) after: $(echo $after)"
# Each queue pair is its own device and worker: each carried part of the
# streams (64 KiB at least: more than a connection's setup and teardown).
if [ "$impl" = ours ]; then
	check "one vhost-net device per queue pair and NIC" \
		[ "$(qemu_devices | wc -l)" = "$workers" ]
	i=1
	while [ $i -le "$queues" ]; do
		b=$(echo $before | cut -d' ' -f$i)
		a=$(echo $after | cut -d' ' -f$i)
		check "queue pair $i carried part of the streams" \
			[ $((a - b)) -ge 65536 ]
		i=$((i + 1))
	done
fi
for d in $(qemu_devices); do
	note "$d: $(tr '\n' ' ' < "$d/stats")"
done
if [ -n "${L2_NIC2:-}" ]; then
	group "no offloads ($impl): L2's second NIC"
	no_offload_streams "$impl"
fi

if [ "$ending" = kill ]; then
	group "SIGKILL of QEMU mid-traffic ($impl, $queues queue pair(s))"
	kill_mid_stream "$impl"
	exit $FAILED
fi
stop_l2
check "QEMU exited" wait_for 120 sh -c "[ ! -d /proc/$QEMU_PID ]"
check "unload $impl vhost_net after use" unload_vhost
exit $FAILED
