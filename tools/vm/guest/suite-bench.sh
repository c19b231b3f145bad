#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# "make bench", inside one bench VM: the same workloads through each
# datapath in turn, in this one boot, so that the ratios between them hold
# on a noisy machine.  Results are "# bench: key=value ..." records that
# tools/vm/bench-report.py turns into BENCHMARKS.md; the TAP lines only say
# whether each datapath came up.  Nothing here judges speed.
#
# Argument (vmtest.arg): SECS:REPS, default 5:3.
. /selftests/vm_lib.sh
. /selftests/nested_lib.sh

arg=${1:-5:3}
SECS=${arg%%:*}
REPS=${arg##*:}

record() { echo "# bench: $*"; }

# Datapaths, in the order they run.  mpassthru rows wait for their issue.
ROWS="qemu reference reference-zc ours"
LATER_ROWS="mpassthru-copy mpassthru-zc"

setup_row() {
	case "$1" in
	qemu)
		L2_VHOST=off
		unload_vhost
		;;
	reference)
		L2_VHOST=on
		load_vhost reference experimental_zcopytx=0
		;;
	reference-zc)
		L2_VHOST=on
		load_vhost reference experimental_zcopytx=1
		;;
	ours)
		L2_VHOST=on
		load_vhost ours
		;;
	esac
}

row_available() {
	case "$1" in
	qemu) return 0 ;;
	reference | reference-zc) impl_available reference ;;
	*) impl_available "$1" ;;
	esac
}

# CPU ticks of the threads that move the packets: the vhost workers, or
# for QEMU's own datapath its main loop thread (the vCPUs are separate).
datapath_ticks() {
	local t n=0
	if [ "$L2_VHOST" = off ]; then
		worker_cpu_ticks "$QEMU_PID"
		return
	fi
	for t in $(worker_tids); do
		n=$((n + $(worker_cpu_ticks "$t")))
	done
	echo $n
}

# read and write family system calls of the whole QEMU process.
qemu_syscalls() {
	awk '$1 == "syscr:" || $1 == "syscw:" { n += $2 } END { print n + 0 }' \
		"/proc/$QEMU_PID/io" 2>/dev/null
}

tap_packets() {
	echo $(($(cat /sys/class/net/$TAP/statistics/rx_packets) +
		$(cat /sys/class/net/$TAP/statistics/tx_packets)))
}

# Sum of one of our debugfs counters over this QEMU's devices.
our_counter() {
	cat /sys/kernel/debug/vhost-mp/net-$QEMU_PID-*/stats 2>/dev/null |
		awk -v k="$1" '$1 == k { n += $2 } END { print n + 0 }'
}

COUNTERS="tx_bytes tx_zcopy_packets tx_zcopy_bytes tx_zcopy_copied rx_bytes"

# snapshot: one line of every cost counter, for a before/after difference.
snapshot() {
	local c line
	line="$(datapath_ticks) $(qemu_syscalls) $(tap_packets)"
	for c in $COUNTERS; do
		line="$line $(our_counter "$c")"
	done
	echo "$line"
}

# costs BEFORE AFTER: the differences as key=value pairs.
costs() {
	echo "$1 $2" | awk -v names="ticks syscalls packets $COUNTERS" '
		BEGIN { n = split(names, k, " ") }
		{ for (i = 1; i <= n; i++) printf "%s=%d ", k[i], $(i + n) - $i }'
}

# iperf3 from L1's host tools; the receiver's summary line is the result.
# One retry: under TCG the server now and then misses a control message.
iperf() {
	local try
	for try in 1 2; do
		if timeout $((SECS + 60)) chroot "$HOSTROOT" /usr/bin/iperf3 \
			-c $L2_ADDR -t "$SECS" -f m "$@" > /tmp/iperf3.out 2>&1; then
			grep receiver /tmp/iperf3.out | tail -n 1
			return 0
		fi
		sed 's/^/# iperf3: /' /tmp/iperf3.out | tail -n 3 >&2
		sleep 2
	done
	return 1
}

# TCP: Mbit/s and the bytes the receiver got.
tcp_result() {
	awk '{ for (i = 2; i <= NF; i++) {
		if ($i == "Mbits/sec") r = $(i - 1)
		if ($i == "MBytes") b = $(i - 1) * 1048576
		if ($i == "GBytes") b = $(i - 1) * 1073741824
	} } END { printf "value=%s bytes=%d", r, b }'
}

# UDP: datagrams received per second (total less lost, over the run).
udp_result() {
	awk -v secs="$SECS" '{ for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+\/[0-9]+$/) {
		split($i, p, "/"); got = p[2] - p[1]
	} } END { printf "value=%d bytes=%d", got / secs, got * 64 }'
}

# ping: average round trip in microseconds.
rtt_result() {
	timeout 60 chroot "$HOSTROOT" /usr/bin/ping -q -c 100 -i 0.02 -W 2 \
		$L2_ADDR 2>&1 | sed -n 's/^rtt [^=]*= //p' |
		awk -F/ '{ printf "value=%d bytes=0", $2 * 1000 }'
}

# measure ROW WORKLOAD REP UNIT CMD...: one run with its costs.
measure() {
	local row=$1 wl=$2 rep=$3 unit=$4 before after res
	shift 4
	before=$(snapshot)
	res=$("$@")
	after=$(snapshot)
	case "$res" in
	*value=[0-9]*) ;;
	*) fail "$row $wl run $rep produced a result"; return 1 ;;
	esac
	record "driver=nested row=$row workload=$wl rep=$rep unit=$unit" \
		"$res $(costs "$before" "$after")"
}

# 64-byte UDP offered at 5000 packets/s: above what any datapath delivers
# under TCG, but not the unbounded flood (-b 0) that only measures how
# the receiver collapses.
UDP_RATE=2560K

tcp() { iperf "$@" | tcp_result; }
udp() { iperf -u -l 64 -b $UDP_RATE "$@" | udp_result; }

workloads() {
	local row=$1 rep=$2
	measure "$row" tcp_h2g_1 "$rep" Mbit/s tcp -P 1
	measure "$row" tcp_h2g_4 "$rep" Mbit/s tcp -P 4
	measure "$row" tcp_g2h_1 "$rep" Mbit/s tcp -P 1 -R
	measure "$row" tcp_g2h_4 "$rep" Mbit/s tcp -P 4 -R
	measure "$row" udp64_h2g "$rep" pps udp
	measure "$row" udp64_g2h "$rep" pps udp -R
	measure "$row" rtt "$rep" us rtt_result
}

bench_row() {
	local row=$1 rep=1
	group "nested guest on $row"
	if ! row_available "$row"; then
		record "driver=nested row=$row status=unavailable"
		skip "datapath $row" "not built"
		return 0
	fi
	check "set up $row" setup_row "$row" || return 1
	if ! boot_l2 1 "l2.iperf=1"; then
		unload_vhost
		return 1
	fi
	check "L2 serves iperf3" grep -q 'L2-IPERF-SERVER-UP' "$L2_LOG"
	while [ $rep -le "$REPS" ]; do
		workloads "$row" $rep
		rep=$((rep + 1))
	done
	stop_l2
	check "QEMU exited" wait_for 30 sh -c "[ ! -d /proc/$QEMU_PID ]"
	unload_vhost
}

# The simulated guest's tap sits in a bridge whose other port is a dummy
# device: transmitted frames leave through a "NIC" that frees them at once.
sim_topology() {
	in_host /usr/bin/ip tuntap add dev btap0 mode tap vnet_hdr &&
	in_host /usr/bin/ip link add bbr0 type bridge &&
	in_host /usr/bin/ip link add bdum0 type dummy &&
	in_host /usr/bin/ip link set btap0 master bbr0 &&
	in_host /usr/bin/ip link set bdum0 master bbr0 &&
	in_host /usr/bin/ip link set bdum0 up &&
	in_host /usr/bin/ip link set bbr0 up
}

sim_row() {
	local row=$1
	group "simulated guest on $row"
	if [ "$row" = qemu ]; then
		record "driver=sim row=$row status=not-applicable"
		return 0
	fi
	if ! row_available "$row"; then
		record "driver=sim row=$row status=unavailable"
		skip "datapath $row" "not built"
		return 0
	fi
	check "set up $row" setup_row "$row" || return 1
	run_prog "vhost_net_bench on $row" /selftests/vhost_net_bench "$row" btap0 "$SECS" "$REPS"
	check "unload $row" unload_vhost
}

check "host root usable for qemu" hostroot_ready || exit 1
record "meta kernel=$(uname -r) cpus=$(nproc) secs=$SECS reps=$REPS"
check "bridge, dummy and tap for the simulated guest" sim_topology || exit 1
for row in $ROWS; do
	sim_row "$row" || FAILED=1
done
for row in $ROWS; do
	bench_row "$row" || FAILED=1
done
for row in $LATER_ROWS; do
	record "driver=sim row=$row status=not-available-yet"
	record "driver=nested row=$row status=not-available-yet"
done
exit $FAILED
