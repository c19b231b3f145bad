#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The normal test suite of one VM boot: the kselftests and the end-to-end
# scripts, each against our vhost_net and against upstream's reference.
. /selftests/vm_lib.sh

for impl in ours reference; do
	group "selftests ($impl)"
	if ! impl_available "$impl"; then
		skip "vhost_net_features ($impl)" "$impl vhost_net not built yet"
		continue
	fi
	check "load $impl vhost_net" load_vhost "$impl" || continue
	run_prog "vhost_net_features ($impl)" /selftests/vhost_net_features
	check "unload $impl vhost_net" unload_vhost
done

for impl in ours reference; do
	/selftests/nested_ping.sh "$impl" || FAILED=1
done

exit $FAILED
