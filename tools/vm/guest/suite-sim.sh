#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The userspace virtio-net guest against a tap backend, every byte checked,
# run against both implementations so they are held to one behaviour.
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

exit $FAILED
