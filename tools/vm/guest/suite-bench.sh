#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# "make bench", inside one bench VM: the same workloads through each
# datapath in turn, in this one boot, so that the ratios between them hold
# on a noisy machine.  Results are "# bench: key=value ..." records that
# tools/vm/bench-report.py turns into BENCHMARKS.md; the TAP lines only say
# whether each datapath came up.  Nothing here judges speed.
#
# Two wires.  On a tap in this VM (drivers "sim" and "nested"): QEMU's own
# datapath, upstream vhost_net and ours.  On the VM's hub NIC eth0, with
# the traffic's far end on eth1 (drivers "sim-nic" and "nested-nic"):
# upstream vhost_net on a macvtap in passthru mode, the way to give a
# guest a NIC without us, against ours on mpassthru, receiving by copy and
# zero-copy.  Ratios are only taken within one wire.
#
# Argument (vmtest.arg): SECS:REPS[:tap|nic], default 3:3 (both wires).
. /selftests/vm_lib.sh
. /selftests/nested_lib.sh
. /selftests/mpassthru_vm.sh

WITH_MPASSTHRU=1

arg=${1:-3:3}
SECS=${arg%%:*}
arg=${arg#*:}
REPS=${arg%%:*}
# An optional third field picks one wire, for a quicker look: tap or nic.
WIRES=all
[ "$arg" != "$REPS" ] && WIRES=${arg#*:}

record() { echo "# bench: $*"; }

# Datapaths, in the order they run, on each wire.
ROWS="qemu reference reference-zc ours"
NIC_ROWS="macvtap-reference mpassthru-copy mpassthru-zc"
MACVTAP=bmvt0
# Where packets are counted, and where iperf3 and ping run from.
PKT_IF=$TAP
CLIENT=""

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
	macvtap-reference)
		L2_VHOST=on
		load_vhost reference experimental_zcopytx=0 &&
		hip link add link $BOUND name $MACVTAP type macvtap mode passthru &&
		hip link set $MACVTAP up
		;;
	mpassthru-copy)
		L2_VHOST=on
		load_vhost ours zcopy_rx=0
		;;
	mpassthru-zc)
		L2_VHOST=on
		load_vhost ours zcopy_rx=1
		;;
	esac
}

teardown_row() {
	[ -d /sys/class/net/$MACVTAP ] && hip link del $MACVTAP
	unload_vhost
}

row_available() {
	case "$1" in
	qemu) return 0 ;;
	reference | reference-zc | macvtap-reference) impl_available reference ;;
	*) impl_available ours ;;
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

wire_packets() {
	echo $(($(cat /sys/class/net/$PKT_IF/statistics/rx_packets) +
		$(cat /sys/class/net/$PKT_IF/statistics/tx_packets)))
}

# Sum of one of our debugfs counters over this QEMU's devices.
our_counter() {
	cat /sys/kernel/debug/vhost-mp/net-$QEMU_PID-*/stats 2>/dev/null |
		awk -v k="$1" '$1 == k { n += $2 } END { print n + 0 }'
}

# One counter of mpassthru's binding of $BOUND (0 without one).
mp_counter() {
	awk -v k="$1" -v d="$BOUND" '$1 == "file" && $2 == d {
		for (i = 3; i < NF; i++) if ($i == k) n = $(i + 1) }
		END { print n + 0 }' /sys/kernel/debug/mpassthru/bindings 2>/dev/null
}

COUNTERS="tx_bytes tx_zcopy_packets tx_zcopy_bytes tx_zcopy_copied rx_bytes rx_packets"
MP_COUNTERS="rx_zcopy_bytes rx_copy_bytes"

# snapshot: one line of every cost counter, for a before/after difference.
snapshot() {
	local c line
	line="$(datapath_ticks) $(qemu_syscalls) $(wire_packets)"
	for c in $COUNTERS; do
		line="$line $(our_counter "$c")"
	done
	for c in $MP_COUNTERS; do
		line="$line $(mp_counter "$c")"
	done
	echo "$line"
}

# costs BEFORE AFTER: the differences as key=value pairs.
costs() {
	echo "$1 $2" | awk -v names="ticks syscalls packets $COUNTERS mp_rx_zcopy_bytes mp_rx_copy_bytes" '
		BEGIN { n = split(names, k, " ") }
		{ for (i = 1; i <= n; i++) printf "%s=%d ", k[i], $(i + n) - $i }'
}

# iperf3 from L1's host tools, its JSON report in $IPERF_OUT (read with
# nested_lib.sh's iperf_field, never from the text iperf3 prints).
# One retry: under TCG the server now and then misses a control message.
IPERF_OUT=/tmp/iperf3.json
iperf() {
	local try
	for try in 1 2; do
		# shellcheck disable=SC2086 # $CLIENT is a command prefix
		if timeout $((SECS + 180)) chroot "$HOSTROOT" $CLIENT /usr/bin/iperf3 -J \
			-c $L2_ADDR -t "$SECS" "$@" > $IPERF_OUT 2> $IPERF_OUT.err &&
		   iperf_ok $IPERF_OUT; then
			note "iperf3 $*: $(iperf_summary $IPERF_OUT)" >&2
			return 0
		fi
		iperf_show $IPERF_OUT >&2
		sleep 2
	done
	return 1
}

# TCP: Mbit/s and the bytes the receiver got, and the sender's
# retransmitted segments (a lossy path shows there first).
tcp_result() {
	iperf_field $IPERF_OUT '.end | "value=\(.sum_received.bits_per_second / 1e4 | floor / 100) bytes=\(.sum_received.bytes) retr=\(.sum_sent.retransmits // 0)"'
}

# UDP: datagrams received per second (sent less lost, over the run).
udp_result() {
	iperf_field $IPERF_OUT ".end.sum_received | \"value=\\((.packets - .lost_packets) / $SECS | floor) bytes=\\(.bytes)\""
}

# ping: average round trip in microseconds.  ping has no machine-readable
# output; iputils always prints its summary in milliseconds, as
# "rtt min/avg/max/mdev = A/B/C/D ms", and anything else is no result.
rtt_result() {
	# shellcheck disable=SC2086 # $CLIENT is a command prefix
	timeout 60 chroot "$HOSTROOT" $CLIENT /usr/bin/ping -q -c 100 -i 0.02 -W 2 \
		$L2_ADDR 2>&1 |
		sed -n 's|^rtt min/avg/max/mdev = [0-9.]*/\([0-9.]*\)/[0-9.]*/[0-9.]* ms$|\1|p' |
		awk '{ printf "value=%d bytes=0", $1 * 1000 }'
}

# measure ROW WORKLOAD REP UNIT CMD...: one run with its costs, on the
# wire of $DRIVER.
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
	record "driver=$DRIVER row=$row workload=$wl rep=$rep unit=$unit" \
		"$res $(costs "$before" "$after")"
}

# 64-byte UDP offered at 5000 packets/s: above what any datapath delivers
# under TCG, but not the unbounded flood (-b 0) that only measures how
# the receiver collapses.
UDP_RATE=2560K

tcp() { iperf "$@" && tcp_result; }
udp() { iperf -u -l 64 -b $UDP_RATE "$@" && udp_result; }

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

# run_workloads ROW: every workload $REPS times on the L2 that runs.
run_workloads() {
	local row=$1 rep=1
	check "L2 serves iperf3" grep -q 'L2-IPERF-SERVER-UP' "$L2_LOG"
	while [ $rep -le "$REPS" ]; do
		workloads "$row" $rep
		rep=$((rep + 1))
	done
	stop_l2
	check "QEMU exited" wait_for 120 sh -c "[ ! -d /proc/$QEMU_PID ]"
}

bench_row() {
	local row=$1
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
	run_workloads "$row"
	unload_vhost
}

# start_nic_l2 ROW: L2 with vhost on eth0, through a macvtap or mpassthru.
# Its receive ring is QEMU's largest: with zero-copy receive the guest's
# posted buffers are all the NIC has to receive into.
start_nic_l2() {
	local netdev="tap,id=n0,fd=3,vhost=on,vhostfd=4"
	local device="virtio-net-pci,netdev=n0,mac=$L2_MAC,rx_queue_size=1024" tapdev
	if [ "$1" = macvtap-reference ]; then
		tapdev=/dev/tap$(cat /sys/class/net/$MACVTAP/ifindex)
		# shellcheck disable=SC2016 # expanded by the launcher's shell
		start_l2_with 1 l2.iperf=1 "$netdev" "$device" \
			sh -c 'exec 3<>"$0" 4<>/dev/vhost-net; exec "$@"' "$tapdev"
	else
		start_l2_with 1 l2.iperf=1 "$netdev" "$device" \
			/selftests/mpassthru-run "$BOUND" --
	fi
}

# L2 came up and pinged the peer across the wire.
boot_nic_l2() {
	start_nic_l2 "$1"
	wait_l2_booted "L2 guest on $1 booted" || return 1
	if ! grep -q 'L2-PING-OK' "$L2_LOG"; then
		sed 's/^/# l2: /' "$L2_LOG" | tail -n 12
		fail "L2 guest on $1 pings the peer"
		stop_l2
		return 1
	fi
	pass "L2 guest on $1 pings the peer"
}

nic_row() {
	local row=$1
	group "nested guest on $row (hub NIC)"
	if ! row_available "$row"; then
		record "driver=nested-nic row=$row status=unavailable"
		skip "datapath $row" "not built"
		return 0
	fi
	check "set up $row" setup_row "$row" || return 1
	if ! boot_nic_l2 "$row"; then
		teardown_row
		return 1
	fi
	run_workloads "$row"
	check "tear down $row" teardown_row
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

# sim_run DRIVER ROW BACKEND [PEER]: the simulated guest on one datapath.
sim_run() {
	local driver=$1 row=$2 backend=$3 peer=${4:-}
	group "simulated guest on $row ($driver)"
	if ! row_available "$row"; then
		record "driver=$driver row=$row status=unavailable"
		skip "datapath $row" "not built"
		return 0
	fi
	check "set up $row" setup_row "$row" || return 1
	# shellcheck disable=SC2086 # $peer is empty or one interface
	run_prog "vhost_net_bench on $row" /selftests/vhost_net_bench \
		"$row" "$backend" "$SECS" "$REPS" $peer
	check "tear down $row" teardown_row
}

sim_row() {
	if [ "$1" = qemu ]; then
		record "driver=sim row=$1 status=not-applicable"
		return 0
	fi
	sim_run sim "$1" tap:btap0
}

# On the NIC the guest's frames go out on eth0 and its received frames are
# injected on eth1: both cross QEMU's hub.
sim_nic_row() {
	case "$1" in
	macvtap-reference) sim_run sim-nic "$1" macvtap:$MACVTAP $PEER ;;
	*) sim_run sim-nic "$1" mpassthru:$BOUND $PEER ;;
	esac
}

# The peer, in its own netns, is "the host" for the nested guest on a NIC.
nic_peer() {
	peer_to_netns &&
	hip -n mppeer addr add $L1_ADDR/24 dev $PEER
}

check "host root usable for qemu" hostroot_ready || exit 1
record "meta kernel=$(uname -r) cpus=$(nproc) secs=$SECS reps=$REPS"
check "bridge, dummy and tap for the simulated guest" sim_topology || exit 1
check "hub NICs $BOUND and $PEER up" nics_up || exit 1
# Only frames for the peer's own address concern it.
ip link set $PEER promisc off
[ "$WIRES" = nic ] && ROWS=""
[ "$WIRES" = tap ] && NIC_ROWS=""
for row in $ROWS; do
	sim_row "$row" || FAILED=1
done
for row in $NIC_ROWS; do
	sim_nic_row "$row" || FAILED=1
done
DRIVER=nested
for row in $ROWS; do
	bench_row "$row" || FAILED=1
done
[ -z "$NIC_ROWS" ] && exit $FAILED
# The simulated guest's setup turned ARP off on both NICs; IP needs it.
check "hub NICs $BOUND and $PEER up, with ARP" nics_up || exit 1
ip link set $PEER promisc off
check "peer $PEER in netns mppeer, at $L1_ADDR" nic_peer || exit 1
DRIVER=nested-nic PKT_IF=$BOUND CLIENT="/usr/sbin/ip netns exec mppeer"
for row in $NIC_ROWS; do
	nic_row "$row" || FAILED=1
done
exit $FAILED
