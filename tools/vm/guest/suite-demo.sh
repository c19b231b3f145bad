#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# "make run", the whole datapath: our vhost_net and mpassthru are loaded,
# the VM's traffic NIC eth0 is bound to mpassthru, and the host's
# unmodified QEMU runs a nested Linux guest on it through mpassthru-run
# (-netdev tap,fd=3,vhost=on,vhostfd=4).  A peer on eth1, in its own
# network namespace, pings the guest and runs iperf3 both ways; then the
# throughput and mpassthru's counters: bytes the NIC wrote straight into
# the guest's buffers against bytes copied, and pages sent zero-copy.
. /selftests/vm_lib.sh
. /selftests/mpassthru_vm.sh

WITH_MPASSTHRU=1

check "load vhost_net and mpassthru" load_vhost ours
check "host root usable" hostroot_ready
check "hub NICs $BOUND and $PEER up" nics_up
check "peer $PEER in netns mppeer" peer_to_netns
/selftests/mpassthru_nested.sh $BOUND mppeer $PEER demo || FAILED=1
note "$(cat /sys/kernel/debug/mpassthru/pinned_pages) guest pages pinned, $(cat /sys/kernel/debug/mpassthru/lent_buffers) buffers lent after QEMU exited"
exit $FAILED
