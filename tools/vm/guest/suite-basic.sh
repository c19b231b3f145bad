#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Device basics, against our vhost_net or (with the argument "reference",
# make check-reference) upstream's.  The nested guest's first checks, ping
# both ways, are in e2e's migration case (nested_migrate.sh).
. /selftests/vm_lib.sh

IMPLS=$(impls_of "${1:-}") || { fail "suite argument '$1'"; exit 1; }

for impl in $IMPLS; do
	group "selftests ($impl)"
	if ! impl_available "$impl"; then
		skip "vhost_net_features ($impl)" "$impl vhost_net not built yet"
		continue
	fi
	check "load $impl vhost_net" load_vhost "$impl" || continue
	[ "$impl" = ours ] &&
		check "vhost_net loads without mpassthru" \
			sh -c "! grep -q '^mpassthru ' /proc/modules"
	run_prog "vhost_net_features ($impl)" /selftests/vhost_net_features
	check "unload $impl vhost_net" unload_vhost
done

# Untrusted ioctl input and fd lifecycle, 64-bit and through compat_ioctl.
for impl in $IMPLS; do
	impl_available "$impl" || continue
	for bits in 64 32; do
		prog=/selftests/vhost_net_errors
		[ "$bits" = 32 ] && prog=${prog}_32
		group "ioctl errors ($impl, $bits-bit)"
		check "load $impl vhost_net" load_vhost "$impl" || continue
		export VHOST_IMPL=$impl
		run_prog "vhost_net_errors ($impl, $bits-bit)" "$prog"
		check "unload $impl vhost_net" unload_vhost
	done
done

# Unload and reload while idle, a few times over.
reload_round() {
	load_vhost ours &&
	/selftests/vhost_net_features -t set_owner_once > /dev/null &&
	unload_vhost
}

if [ "${IMPLS#ours}" != "$IMPLS" ] && impl_available ours; then
	group "module reload (ours)"
	for round in 1 2 3; do
		check "round $round: load, open, set owner, unload" reload_round
	done
fi

exit $FAILED
