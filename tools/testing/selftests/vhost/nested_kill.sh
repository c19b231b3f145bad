#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Lifecycle under load: SIGKILL the QEMU of a nested guest in the middle
# of an iperf3 stream through vhost_net implementation $1 (see
# kill_mid_stream).  make check runs this case on ours at the end of
# nested_iperf.sh's two-queue run; make check-reference runs it here.
. "$(dirname "$0")/vm_lib.sh"
. "$(dirname "$0")/nested_lib.sh"

impl=${1:?usage: nested_kill.sh ours|reference}

group "SIGKILL of QEMU mid-traffic ($impl)"

if ! impl_available "$impl"; then
	skip "SIGKILL mid-traffic on $impl vhost_net" "implementation not built"
	exit 0
fi
check "load $impl vhost_net" load_vhost "$impl" || exit 1
check "host root usable for qemu" hostroot_ready || exit 1
boot_l2 2 "l2.iperf=1" || { unload_vhost; exit 1; }
check "L2 serves iperf3" grep -q 'L2-IPERF-SERVER-UP' "$L2_LOG"
kill_mid_stream "$impl"
exit $FAILED
