#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The userspace virtio-net guest against a tap backend, every byte checked,
# run against both implementations so they are held to one behaviour; then
# the same guest misbehaving, and dirty logging.
. /selftests/vm_lib.sh

for impl in ours reference; do
	group "guest simulator ($impl)"
	if ! impl_available "$impl"; then
		skip "vhost_net_sim ($impl)" "$impl vhost_net not built yet"
		continue
	fi
	check "load $impl vhost_net" load_vhost "$impl" || continue
	export VHOST_IMPL=$impl
	run_prog "vhost_net_sim ($impl)" /selftests/vhost_net_sim
	check "unload $impl vhost_net" unload_vhost
done

# Malformed rings from the guest, and dirty-page logging after traffic.
for impl in ours reference; do
	impl_available "$impl" || continue
	export VHOST_IMPL=$impl
	for prog in vhost_net_guest_errors vhost_net_dirty_log; do
		group "$prog ($impl)"
		check "load $impl vhost_net" load_vhost "$impl" || continue
		run_prog "$prog ($impl)" "/selftests/$prog"
		check "unload $impl vhost_net" unload_vhost
	done
done

exit $FAILED
