#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Unmodified QEMU and guest on our vhost_net under load: iperf3 both ways
# with one queue pair and with QEMU's mq=on and two; then QEMU killed
# with SIGKILL in the middle of a stream, on both implementations.
. /selftests/vm_lib.sh

/selftests/nested_iperf.sh ours 1 || FAILED=1
/selftests/nested_iperf.sh ours 2 || FAILED=1
for impl in ours reference; do
	/selftests/nested_kill.sh "$impl" || FAILED=1
done
exit $FAILED
