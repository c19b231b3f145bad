#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# End to end under load: iperf3 TCP between L1 and an unmodified L2 guest
# served by the vhost_net implementation $1, host to guest and guest to
# host, with $2 queue pairs (QEMU mq=on when more than one).  Proves that
# every vhost worker of that QEMU carried traffic.
. "$(dirname "$0")/vm_lib.sh"
. "$(dirname "$0")/nested_lib.sh"

impl=${1:?usage: nested_iperf.sh ours|reference [queue pairs]}
queues=${2:-1}
SECS=10
STREAMS=$((queues > 1 ? 4 : 1))

group "nested iperf3 ($impl, $queues queue pair(s))"

if ! impl_available "$impl"; then
	skip "iperf3 through $impl vhost_net" "implementation not built"
	exit 0
fi

worker_wakeup_list() {
	local t
	for t in $(worker_tids); do
		worker_wakeups "$t"
	done
}

# Sum of one counter over the debugfs stats of this QEMU's vhost-net
# devices (ours only): the proof that our worker moved the bytes.
our_counter() {
	cat /sys/kernel/debug/vhost-mp/net-$QEMU_PID-*/stats 2>/dev/null |
		awk -v k="$1" '$1 == k { n += $2 } END { print n + 0 }'
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
	check "$2: our $3 counted all bytes" [ $((c1 - c0)) -ge "$BYTES" ]
}

check "load $impl vhost_net" load_vhost "$impl" || exit 1
check "host root usable for qemu" hostroot_ready || exit 1
boot_l2 "$queues" "l2.iperf=1" || { unload_vhost; exit 1; }
check "L2 serves iperf3" grep -q 'L2-IPERF-SERVER-UP' "$L2_LOG"
check "L2 driver enabled $queues queue pair(s)" grep -q "L2-READY.* queues $queues[^0-9]*$" "$L2_LOG"

tids=$(worker_tids)
check "one vhost worker per queue pair" [ "$(echo $tids | wc -w)" = "$queues" ]
before=$(worker_wakeup_list)
counted_iperf "" "host to guest" rx_bytes
counted_iperf -R "guest to host" tx_bytes
after=$(worker_wakeup_list)
note "worker wakeups before: $(echo $before) after: $(echo $after)"
i=1
for t in $tids; do
	b=$(echo $before | cut -d' ' -f$i)
	a=$(echo $after | cut -d' ' -f$i)
	check "vhost worker $i (tid $t) carried traffic" [ $((a - b)) -ge 100 ]
	i=$((i + 1))
done
for s in /sys/kernel/debug/vhost-mp/net-$QEMU_PID-*/stats; do
	[ -f "$s" ] && note "$s: $(tr '\n' ' ' < "$s")"
done

stop_l2
check "QEMU exited" wait_for 30 sh -c "[ ! -d /proc/$QEMU_PID ]"
check "unload $impl vhost_net after use" unload_vhost
exit $FAILED
