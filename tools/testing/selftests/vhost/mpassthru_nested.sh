#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# End to end through mpassthru: mpassthru-run binds NIC $1 and starts the
# host's unmodified QEMU with "-netdev tap,fd=3,vhost=on,vhostfd=4" (then
# with vhost=off, where QEMU reads and writes the descriptor itself), and
# an unmodified Linux guest talks to a peer in network namespace $2 on
# the other NIC of the hub ($3, the same driver, not bound): ping both
# ways, iperf3 both ways counted by mpassthru, received into the guest's
# buffers by the NIC itself, and QEMU killed with SIGKILL in the middle of
# a stream.  With $4 = demo, only the streams and the counters.
# Our vhost_net and mpassthru must be loaded.
. "$(dirname "$0")/vm_lib.sh"
. "$(dirname "$0")/nested_lib.sh"

bound=${1:?usage: mpassthru_nested.sh NIC NETNS PEER}
ns=${2:?usage: mpassthru_nested.sh NIC NETNS PEER}
peer=${3:?usage: mpassthru_nested.sh NIC NETNS PEER}
mode=${4:-test}
SECS=5
BINDINGS=/sys/kernel/debug/mpassthru/bindings

nsx() { in_host /usr/sbin/ip netns exec "$ns" "$@"; }

# start_mp_l2 on|off: L2 on the bound NIC; $QEMU_PID is QEMU itself.
start_mp_l2() {
	local netdev="tap,id=n0,fd=3" run=""
	if [ "$1" = on ]; then
		netdev="$netdev,vhost=on,vhostfd=4"
	else
		netdev="$netdev,vhost=off"
		run=--no-vhost
	fi
	# shellcheck disable=SC2086 # $run is empty or one option
	start_l2_with 1 l2.iperf=1 "$netdev" "virtio-net-pci,netdev=n0,mac=$L2_MAC" \
		/selftests/mpassthru-run $run "$bound" --
}

boot_mp_l2() {
	start_mp_l2 "$1"
	wait_l2_booted "L2 guest booted on $bound (vhost=$1)" || return 1
	if ! grep -q 'L2-PING-OK' "$L2_LOG"; then
		sed 's/^/# l2: /' "$L2_LOG" | tail -n 12
		fail "L2 pings the peer through mpassthru"
		return 0
	fi
	pass "L2 pings the peer through mpassthru"
}

# One counter of this binding from debugfs.
mp_counter() {
	awk -v k="$1" -v d="$bound" '$1 == "file" && $2 == d {
		for (i = 3; i < NF; i++) if ($i == k) print $(i + 1) }' $BINDINGS
}

# counted_iperf FLAG NAME COUNTER: mpassthru counted what iperf3 received.
counted_iperf() {
	local c0 c1
	c0=$(mp_counter "$3")
	run_iperf "$1" "$2" /usr/sbin/ip netns exec "$ns" || return
	c1=$(mp_counter "$3")
	note "$3: $c0 -> $c1, iperf3 received $BYTES bytes"
	check "$2: mpassthru $3 counted the stream, within bounds" counted_ok $((c1 - c0))
}

# One counter of our vhost-net device of this QEMU, from debugfs.
net_counter() {
	cat /sys/kernel/debug/vhost-mp/net-$QEMU_PID-*/stats 2>/dev/null |
		awk -v k="$1" '$1 == k { n += $2 } END { print n + 0 }'
}

# tx_grew BEFORE BYTES: the guest has sent BYTES more than BEFORE.
tx_grew() {
	[ $(($(mp_counter tx_bytes) - $1)) -gt "$2" ]
}

nic_free() {
	/selftests/mpassthru-run --no-vhost "$bound" -- true
}

group "nested guest on mpassthru, vhost=on"
check "peer has the guest's subnet" \
	in_host /usr/sbin/ip -n "$ns" addr add $L1_ADDR/24 dev "$peer"
if boot_mp_l2 on; then
	check "peer pings L2 (10 echo requests)" \
		nsx /usr/bin/ping -c 10 -W 5 -w 60 -q $L2_ADDR
	tid=$(worker_tids | head -n 1)
	check "vhost worker thread vhost-$QEMU_PID exists" [ -n "$tid" ]
	v0=$(net_counter rx_bytes)
	zc0=$(mp_counter rx_zcopy_bytes)
	cp0=$(mp_counter rx_copy_bytes)
	counted_iperf "" "peer to guest" rx_bytes
	h2g=$BYTES
	zc1=$(mp_counter rx_zcopy_bytes)
	cp1=$(mp_counter rx_copy_bytes)
	note "peer to guest: rx_zcopy_bytes $zc0 -> $zc1, rx_copy_bytes $cp0 -> $cp1"
	check "peer to guest: the NIC wrote the whole stream into guest buffers" \
		[ $((zc1 - zc0)) -ge "$BYTES" ]
	check "peer to guest: not a byte copied" [ "$cp1" = "$cp0" ]
	rx1=$(mp_counter rx_bytes)
	counted_iperf -R "guest to peer" tx_bytes
	rx2=$(mp_counter rx_bytes)
	cp2=$(mp_counter rx_copy_bytes)
	note "guest to peer: the guest received $((rx2 - rx1)) bytes, $((cp2 - cp1)) copied"
	# Pure ACKs are the frames a parser pulls whole into the skb head.
	check "guest to peer: the guest received the peer's ACKs" [ "$rx2" -gt "$rx1" ]
	check "guest to peer: the ACKs the guest received were not copied" \
		[ "$cp2" = "$cp1" ]
	v1=$(net_counter rx_bytes)
	note "our vhost-net device's rx_bytes $v0 -> $v1"
	check "our vhost-net device put the peer's stream into the guest" \
		[ $((v1 - v0)) -ge "$h2g" ]
	note "$(grep "file $bound " $BINDINGS)"
	check "guest pages went to the NIC without a copy (tx_zcopy_bytes > 0)" \
		[ "$(mp_counter tx_zcopy_bytes)" -gt 0 ]
	if [ "$mode" = demo ]; then
		stop_l2
		wait_for 120 sh -c "[ ! -d /proc/$QEMU_PID ]"
		exit $FAILED
	fi

	# SIGKILL in the middle of a stream: the binding ends with the fd.
	in_host_bg /usr/sbin/ip netns exec "$ns" /usr/bin/iperf3 -c $L2_ADDR -t 60 -R
	iperf_pid=$!
	tx0=$(mp_counter tx_bytes)
	check "guest to peer stream running before the kill (100 kB sent)" \
		wait_for 180 tx_grew "$tx0" 100000
	kill -9 "$QEMU_PID"
	check "QEMU killed mid-stream exited" wait_for 120 sh -c "[ ! -d /proc/$QEMU_PID ]"
	wait "$QEMU_PID" 2>/dev/null
	kill "$iperf_pid" 2>/dev/null
	wait "$iperf_pid" 2>/dev/null
	check "the NIC is free again after SIGKILL" nic_free
fi

group "nested guest on mpassthru, vhost=off"
if boot_mp_l2 off; then
	check "peer pings L2 through QEMU's own reads and writes" \
		nsx /usr/bin/ping -c 5 -W 5 -w 60 -q $L2_ADDR
	check "no vhost worker with vhost=off" [ -z "$(worker_tids)" ]
	stop_l2
	check "QEMU exited" wait_for 120 sh -c "[ ! -d /proc/$QEMU_PID ]"
	check "the NIC is free again after QEMU exited" nic_free
fi
exit $FAILED
