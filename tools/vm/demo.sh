#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# "make run": build what is needed, boot the bench VM with two NICs on a
# QEMU hub, bind one to mpassthru and show a nested, unmodified guest whose
# traffic goes through our vhost_net and mpassthru, received zero-copy.
. "$(dirname "$0")/lib.sh"

"$REPO/tools/vm/build-all.sh" bench
log "booting the demo VM (TCG; the nested guest takes a minute or two)"
rc=0
"$REPO/tools/vm/run-vm.sh" -o "$CACHE/runs/demo" \
	-k "$(out_dir bench)/arch/x86/boot/bzImage" \
	-i "$CACHE/initramfs-bench.cpio.gz" -n demo || rc=$?
log "demo finished with status $rc; kernel log: $CACHE/runs/demo/console.log"
exit "$rc"
