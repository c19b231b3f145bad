#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# "make run": load our vhost_net, boot a nested unmodified guest on it
# with vhost=on, ping it, then push iperf3 TCP through it both ways and
# show the counters of the vhost worker that moved the packets.
. /selftests/vm_lib.sh

/selftests/nested_ping.sh ours || FAILED=1
/selftests/nested_iperf.sh ours 1 || FAILED=1
exit $FAILED
