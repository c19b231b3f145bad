#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# "make run": load vhost_net, boot a nested unmodified guest on it with
# vhost=on and show its traffic going through the in-kernel datapath.
. /selftests/vm_lib.sh

impl=ours
if ! impl_available ours; then
	note "our vhost_net has not landed yet; the demo uses upstream's reference module"
	impl=reference
fi
/selftests/nested_ping.sh "$impl"
