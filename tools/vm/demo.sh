#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# "make run": build what is needed, boot the bench VM, load vhost_net and
# show a nested, unmodified guest whose traffic goes through it.
. "$(dirname "$0")/lib.sh"

"$REPO/tools/vm/build-all.sh" bench
log "booting the demo VM (TCG; the nested guest takes a minute or two)"
rc=0
"$REPO/tools/vm/run-vm.sh" -o "$CACHE/runs/demo" \
	-k "$(out_dir bench)/arch/x86/boot/bzImage" \
	-i "$CACHE/initramfs-bench.cpio.gz" demo || rc=$?
log "demo finished with status $rc; kernel log: $CACHE/runs/demo/console.log"
exit "$rc"
