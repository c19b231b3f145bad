#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Unmodified QEMU and guest on our vhost_net under load: iperf3 both ways
# with one queue pair and with QEMU's mq=on and two; then QEMU killed
# with SIGKILL in the middle of a stream (for ours, the two-queue guest
# once its streams are checked: one L2 boot fewer).  The one-queue guest
# has a second NIC with checksum offload and TSO off, whose rates are
# compared with the same guest's on upstream's vhost_net.  Last, pings
# through the source QEMU of the live-migration fixture.  With the
# argument "reference" (make check-reference), the SIGKILL case and the
# pings on upstream's; with "migration" (make check-migration), the live
# migration under traffic on ours and on upstream's.
. /selftests/vm_lib.sh

# "make check-migration": the live migration under traffic, on both.
if [ "${1:-}" = migration ]; then
	for impl in ours reference; do
		MIGRATE=1 /selftests/nested_migrate.sh "$impl" || FAILED=1
	done
	exit $FAILED
fi

IMPLS=$(impls_of "${1:-}") || { fail "suite argument '$1'"; exit 1; }
for impl in $IMPLS; do
	if [ "$impl" = ours ]; then
		/selftests/nested_iperf.sh ours 1 || FAILED=1
		# Only ours' rates, when it was built, are compared.
		if impl_available ours; then
			/selftests/nested_offload.sh || FAILED=1
		fi
		/selftests/nested_iperf.sh ours 2 kill || FAILED=1
	else
		/selftests/nested_kill.sh "$impl" || FAILED=1
	fi
	MIGRATE=0 /selftests/nested_migrate.sh "$impl" || FAILED=1
done
exit $FAILED
