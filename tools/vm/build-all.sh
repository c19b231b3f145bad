#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Everything the VMs need, for the given configurations (default: both):
# kernels, reference modules, selftests, initramfs.  Quiet on success;
# the full output is in $CACHE/build.log.
. "$(dirname "$0")/lib.sh"

cfgs=("${@:-test bench}")
read -r -a cfgs <<< "${cfgs[*]}"
mkdir -p "$CACHE"
buildlog="$CACHE/build.log"

steps() {
	local cfg
	# The nested guest always runs the bench kernel.
	"$REPO/tools/vm/build-kernel.sh" bench
	for cfg in "${cfgs[@]}"; do
		[ "$cfg" = bench ] || "$REPO/tools/vm/build-kernel.sh" "$cfg"
		"$REPO/tools/vm/build-reference.sh" "$cfg"
		"$REPO/tools/vm/build-selftests.sh" "$cfg"
		"$REPO/tools/vm/mkinitramfs.sh" "$cfg"
	done
}

start=$(date +%s)
# Not "if ! steps": errexit is ignored inside a condition.
set +e
(steps) > "$buildlog" 2>&1
rc=$?
set -e
if [ "$rc" != 0 ]; then
	tail -n 40 "$buildlog" >&2
	die "build failed after $(($(date +%s) - start))s (full log: $buildlog)"
fi
grep -h 'kernel source:' "$buildlog" | tail -1 | sed 's/^\[[^]]*\] /# /'
echo "# build: ${cfgs[*]} ready in $(($(date +%s) - start))s (log: $buildlog)"
