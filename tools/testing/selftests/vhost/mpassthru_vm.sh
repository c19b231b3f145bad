# SPDX-License-Identifier: GPL-2.0
# The VM's two hub NICs for mpassthru (run-vm.sh -n): $BOUND is bound,
# $PEER is the far end of the wire.  Sourced after vm_lib.sh.

BOUND=${BOUND:-eth0}
PEER=${PEER:-eth1}

hip() { in_host /usr/sbin/ip "$@"; }

nics_up() {
	local d
	for d in $BOUND $PEER; do
		[ -d /sys/class/net/$d ] || return 1
		echo 1 > /proc/sys/net/ipv6/conf/$d/disable_ipv6
		# The simulated guest's setup turns ARP off; IP needs it.
		ip link set $d up arp on || return 1
	done
	# The test's frames are for MACs the peer NIC does not own.
	ip link set $PEER promisc on
}

# The peer gets its own host stack, so IP traffic really crosses the wire.
peer_to_netns() {
	hip netns add mppeer &&
	hip link set $PEER netns mppeer &&
	hip -n mppeer link set lo up &&
	hip -n mppeer link set $PEER up &&
	hip -n mppeer addr add 10.77.0.2/24 dev $PEER
}
