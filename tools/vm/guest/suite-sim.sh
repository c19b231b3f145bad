#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The userspace virtio-net guest against tap, macvtap and AF_PACKET
# backends, every byte checked; then the same guest misbehaving, dirty
# logging, and zero-copy transmit against a NIC that holds its skbs.
# Against our vhost_net, or with the argument "reference" (make
# check-reference) against upstream's, so both are held to one behaviour.
. /selftests/vm_lib.sh

IMPLS=$(impls_of "${1:-}") || { fail "suite argument '$1'"; exit 1; }

# netem holds every frame this long in the zero-copy test.
ZC_DELAY_MS=12000

# Two veth pairs: a macvtap (passthru) on one end of the first, an
# AF_PACKET backend bound to one end of the second; the test sees the
# wire from the other ends.  And for zero-copy: a persistent tap in a
# bridge whose other port, a dummy, delays everything with netem.
# The VM's busybox has none of this, so the host's ip and tc do it (by
# full path: busybox applets would shadow them).
hip() { in_host /usr/bin/ip "$@"; }

setup_net() {
	echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6
	hostroot_ready &&
	hip link add simmv0 type veth peer name simmv1 &&
	hip link add link simmv0 name simmvt0 type macvtap \
		mode passthru &&
	hip link add simpk0 type veth peer name simpk1 &&
	hip link add zcbr0 type bridge &&
	hip link add zcdum0 type dummy &&
	hip tuntap add dev zctap0 mode tap vnet_hdr &&
	hip link set zcdum0 master zcbr0 &&
	hip link set zctap0 master zcbr0 &&
	in_host /usr/sbin/tc qdisc add dev zcdum0 root netem \
		delay "${ZC_DELAY_MS}ms" limit 100000 || return 1
	for dev in simmv0 simmv1 simmvt0 simpk0 simpk1 zcbr0 zcdum0 zctap0; do
		hip link set "$dev" up || return 1
	done
	export SIM_MACVTAP=simmvt0 SIM_MACVTAP_PEER=simmv1
	export SIM_PACKET_IF=simpk0 SIM_PACKET_PEER=simpk1
	export ZC_TAP=zctap0 ZC_DELAY_MS
}

group "network for the backends"
check "veth pairs, macvtap, bridge with netem" setup_net

for impl in $IMPLS; do
	group "guest simulator ($impl)"
	if ! impl_available "$impl"; then
		skip "vhost_net_sim ($impl)" "$impl vhost_net not built yet"
		continue
	fi
	check "load $impl vhost_net" load_vhost "$impl" || continue
	export VHOST_IMPL=$impl
	# The mpassthru backend needs the hub NICs: the mpassthru suite.
	run_prog "vhost_net_sim ($impl)" /selftests/vhost_net_sim \
		-V mpassthru_mrg_evidx_indirect -V mpassthru_big_flags_direct \
		-V mpassthru_mrg_small_rx
	check "unload $impl vhost_net" unload_vhost
done

# Malformed rings from the guest, and dirty-page logging after traffic.
for impl in $IMPLS; do
	impl_available "$impl" || continue
	export VHOST_IMPL=$impl
	for prog in vhost_net_guest_errors vhost_net_dirty_log; do
		group "$prog ($impl)"
		check "load $impl vhost_net" load_vhost "$impl" || continue
		run_prog "$prog ($impl)" "/selftests/$prog"
		check "unload $impl vhost_net" unload_vhost
	done
done

# Zero-copy transmit: ours as it loads by default, the reference with
# its zero-copy switched on.
for impl in $IMPLS; do
	impl_available "$impl" || continue
	export VHOST_IMPL=$impl
	group "vhost_net_zcopy_stall ($impl)"
	if [ "$impl" = reference ]; then
		params=experimental_zcopytx=1
	else
		params=
	fi
	# shellcheck disable=SC2086 # no parameter, or one
	check "load $impl vhost_net $params" load_vhost "$impl" $params ||
		continue
	run_prog "vhost_net_zcopy_stall ($impl)" /selftests/vhost_net_zcopy_stall
	check "unload $impl vhost_net" unload_vhost
done

exit $FAILED
