#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# mpassthru on the VM's two hub NICs (run-vm.sh -n): eth0 is bound, eth1
# is the far end of the wire.  The ioctl rules (64-bit and 32-bit), the
# tap-compatible descriptor, the simulated guest through vhost-net with
# mpassthru as its backend, the host locked out of a bound NIC, bindings
# that go away under traffic (unbind, ip link del, driver unbind), and an
# unmodified QEMU guest through mpassthru-run, received zero-copy.  After
# each, no guest page may stay pinned and no guest buffer lent to a NIC.
. /selftests/vm_lib.sh
. /selftests/mpassthru_vm.sh

WITH_MPASSTHRU=1

PINNED=/sys/kernel/debug/mpassthru/pinned_pages
LENT=/sys/kernel/debug/mpassthru/lent_buffers

# No guest page pinned, and no guest buffer left in a NIC's ring.
no_pages_pinned() {
	local i=0
	# Frames sent zero-copy complete when the NIC frees them.
	while [ "$(cat $PINNED)" != 0 ] || [ "$(cat $LENT)" != 0 ]; do
		i=$((i + 1))
		[ "$i" -ge 150 ] && {
			note "pinned_pages: $(cat $PINNED), lent_buffers: $(cat $LENT)"
			return 1
		}
		sleep 0.2
	done
}


group "mpassthru module"
check "load vhost_net and mpassthru" load_vhost ours
# mpassthru links to vhost_net (it registers as a backend), never the reverse.
check "mpassthru uses vhost_net, vhost_net does not use mpassthru" sh -c \
	"grep -q '^vhost_net .* mpassthru,' /proc/modules &&
	 ! grep -q '^mpassthru .* vhost_net,' /proc/modules"
check "/dev/mpassthru exists, mode 0600" \
	sh -c '[ -c /dev/mpassthru ] && [ "$(stat -c %a /dev/mpassthru)" = 600 ]'
check "host root usable" hostroot_ready
check "hub NICs $BOUND and $PEER up" nics_up
export MP_IF=$BOUND MP_PEER=$PEER

for bits in 64 32; do
	prog=/selftests/mpassthru_errors
	[ "$bits" = 32 ] && prog=${prog}_32
	group "mpassthru ioctls and tap fd ($bits-bit)"
	run_prog "mpassthru_errors ($bits-bit)" "$prog"
	check "no page pinned, no buffer lent" no_pages_pinned
done

group "simulated guest on vhost-net over mpassthru"
export SIM_MPASSTHRU_IF=$BOUND SIM_MPASSTHRU_PEER=$PEER VHOST_IMPL=ours
run_prog "vhost_net_sim (mpassthru)" /selftests/vhost_net_sim \
	-v mpassthru_mrg_evidx_indirect -v mpassthru_big_flags_direct \
	-v mpassthru_mrg_small_rx
check "no page pinned, no buffer lent after the simulated guest" no_pages_pinned

group "posted receive: small rings, LOG_ALL, MTU, memory table, teardown"
run_prog "vhost_net_rx_post" /selftests/vhost_net_rx_post
check "no page pinned, no buffer lent after posted receive" no_pages_pinned

group "vhost_net.zcopy_rx=0: the simulated guest receives by copy"
check "reload vhost_net with zcopy_rx=0" load_vhost ours zcopy_rx=0
export SIM_RX_COPY=1
run_prog "vhost_net_sim (mpassthru, zcopy_rx=0)" /selftests/vhost_net_sim \
	-r backend.mpassthru_mrg_evidx_indirect.rx_1514 \
	-r backend.mpassthru_mrg_evidx_indirect.bidir_mixed
unset SIM_RX_COPY
run_prog "vhost_net_rx_post (zcopy_rx=0)" /selftests/vhost_net_rx_post \
	-t small_rings -t two_devices_one_file -t oversized_tx -t guest_stops_posting
check "no page pinned, no buffer lent after zcopy_rx=0" no_pages_pinned
check "reload vhost_net with zcopy_rx=1" load_vhost ours

# run-vm.sh -n -a sim mpassthru: stop here, for a quick round.
if [ "${1:-}" = sim ]; then
	unload_vhost
	exit $FAILED
fi

# ---- the host stack loses a bound NIC and gets it back -------------------

ns_ping() {
	in_host /usr/sbin/ip netns exec mppeer /usr/bin/ping -c 2 -W 2 -w 8 -q "$1" \
		> /dev/null 2>&1
}

# wait_bound yes|no: until $BOUND is (or is no longer) bound, up to 30 s
# (state 1 is MPASSTHRU_STATE_BOUND).
wait_bound() {
	local i=0
	while :; do
		if grep -q "^file $BOUND state 1 " /sys/kernel/debug/mpassthru/bindings; then
			[ "$1" = yes ] && return 0
		else
			[ "$1" = no ] && return 0
		fi
		i=$((i + 1))
		[ "$i" -ge 300 ] && return 1
		sleep 0.1
	done
}

lockout() {
	local holder r=0
	ip addr add 10.77.0.1/24 dev $BOUND || return 1
	ns_ping 10.77.0.1 || { note "no ping before binding"; r=1; }
	(exec /selftests/mpassthru-run --no-vhost $BOUND -- sleep 600) &
	holder=$!
	if ! wait_bound yes; then
		note "$BOUND never showed as bound"
		r=1
	elif ns_ping 10.77.0.1; then
		note "the host stack answered through a bound NIC"
		r=1
	fi
	kill $holder
	wait $holder 2>/dev/null
	wait_bound no || { note "$BOUND still bound after its holder exited"; r=1; }
	ns_ping 10.77.0.1 || { note "no ping after the binding ended"; r=1; }
	ip addr del 10.77.0.1/24 dev $BOUND
	return $r
}


peer_home() {
	hip -n mppeer link set $PEER netns 1 && hip netns del mppeer &&
	nics_up
}

# ---- bindings that go away under traffic ----------------------------------

group "binding lifecycle under traffic"
check "unbind during traffic: ENXIO, device given back" \
	/selftests/mpassthru_load $BOUND $PEER unbind ENXIO
check "no page pinned, no buffer lent after unbind" no_pages_pinned

# load_gone BOUND PEER CMD...: CMD takes BOUND away mid-traffic.
load_gone() {
	local bound=$1 peer=$2 ready=/tmp/mp-ready pid rc=0
	shift 2
	rm -f $ready
	/selftests/mpassthru_load "$bound" "$peer" external ENODEV $ready &
	pid=$!
	i=0
	while [ ! -f $ready ] && [ -d /proc/$pid ] && [ $i -lt 300 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	[ -f $ready ] || { kill $pid; wait $pid; return 1; }
	"$@" || rc=1
	wait $pid || rc=1
	return $rc
}

veth_up() {
	hip link add mpv0 type veth peer name mpv1 &&
	for d in mpv0 mpv1; do
		echo 1 > /proc/sys/net/ipv6/conf/$d/disable_ipv6
		ip link set $d up || return 1
	done
}

check "veth pair mpv0/mpv1" veth_up
check "ip link del of a bound NIC during traffic: ENODEV" \
	load_gone mpv0 mpv1 hip link del mpv0
check "no page pinned, no buffer lent after ip link del" no_pages_pinned

# Another namespace is another host stack: the binding ends there too.
netns_move() {
	hip netns add mpaway &&
	hip link set mpv0 netns mpaway
}

check "veth pair mpv0/mpv1 again" veth_up
check "moving a bound NIC to another netns during traffic: ENODEV" \
	load_gone mpv0 mpv1 netns_move
check "no page pinned, no buffer lent after the move" no_pages_pinned
check "clean up the moved NIC" sh -c \
	"chroot $HOSTROOT /usr/sbin/ip netns del mpaway"

group "host stack locked out of a bound NIC"
check "NICs ready for IP" nics_up
check "peer $PEER in netns mppeer" peer_to_netns
check "ping to $BOUND fails while bound, works before and after" lockout

/selftests/mpassthru_nested.sh $BOUND mppeer $PEER || FAILED=1
check "no page pinned, no buffer lent after the nested guests" no_pages_pinned

# Last: the driver goes away (hot unplug as far as the stack can tell).
group "driver unbind"
check "peer $PEER back in the init netns" peer_home
virtio_of() { basename "$(readlink /sys/class/net/$1/device)"; }
dev=$(virtio_of $BOUND)
check "driver unbind of a bound NIC during traffic: ENODEV" \
	load_gone $BOUND $PEER sh -c "echo $dev > /sys/bus/virtio/drivers/virtio_net/unbind"
check "no page pinned, no buffer lent after driver unbind" no_pages_pinned
check "driver bound again" sh -c "echo $dev > /sys/bus/virtio/drivers/virtio_net/bind"
check "the NIC can be bound again" sh -c \
	"/selftests/mpassthru-run --no-vhost \$(ls /sys/bus/virtio/devices/$dev/net) -- true"

check "unload mpassthru" rmmod mpassthru
check "unload vhost_net" unload_vhost
exit $FAILED
