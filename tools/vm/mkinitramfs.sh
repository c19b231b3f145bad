#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Pack the initramfs of the test VM for one kernel configuration:
# static busybox, /init, the kernel's modules (with depmod, so modprobe
# works), upstream's reference vhost modules, the selftests and suites,
# and the nested guest (bench kernel + its own tiny initramfs).
. "$(dirname "$0")/lib.sh"

cfg=${1:-test}
out=$(out_dir "$cfg")
l2_kernel=$(out_dir bench)/arch/x86/boot/bzImage
[ -x /bin/busybox ] || die "need /bin/busybox from busybox-static (make deps)"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

base_layout() {
	local root=$1 init=$2
	mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,etc,root,lib,hostroot,usr/bin,usr/sbin}
	cp /bin/busybox "$root/bin/busybox"
	cp "$init" "$root/init"
	chmod 755 "$root/init"
}

# pack DIR FILE [COMPRESSOR]: a newc archive of DIR, through COMPRESSOR
# (default gzip -1; "cat" for none).
pack() {
	(cd "$1" && find . -print0 | sort -z |
		cpio --null -o -H newc --quiet --owner=0:0) | ${3:-gzip -1} > "$2.tmp"
	mv "$2.tmp" "$2"
}

# The nested guest's archive stays uncompressed: under TCG within TCG,
# inflating even 1 MB held its boot for half a minute (a soft lockup in
# the unpacking), where copying 2 MB costs nothing.
make_l2() {
	local root="$stage/l2"
	base_layout "$root" "$REPO/tools/vm/guest/l2-init"
	pack "$root" "$CACHE/initramfs-l2.cpio" cat
}

make_l1() {
	local root="$stage/l1" ours=0
	base_layout "$root" "$REPO/tools/vm/guest/init"
	make -s -C "$out" INSTALL_MOD_PATH="$root" INSTALL_MOD_STRIP=1 \
		DEPMOD=/sbin/depmod modules_install
	mkdir -p "$root/lib/vhost-reference" "$root/lib/harness" "$root/selftests" "$root/tests" "$root/l2"
	cp "$out"/vhost-reference/*.ko "$root/lib/vhost-reference/"
	cp "$out"/harness-test/*.ko "$root/lib/harness/"
	cp "$out"/selftests/* "$root/selftests/"
	cp "$REPO"/tools/testing/selftests/vhost/*.sh \
		"$REPO"/tools/testing/selftests/vhost/*.py "$root/selftests/"
	cp "$REPO"/tools/vm/guest/suite-*.sh "$root/tests/"
	cp "$l2_kernel" "$root/l2/bzImage"
	cp "$CACHE/initramfs-l2.cpio" "$root/l2/initramfs.cpio"
	# Our vhost_net is "ours" only once this repository ships it; until
	# then the tree's module is upstream's code and must not pass for ours.
	[ -f "$REPO/drivers/vhost/net.c" ] && ours=1
	printf 'OURS_VHOST=%s\nKERNEL_RELEASE=%s\n' "$ours" "$(kernel_release "$cfg")" \
		> "$root/etc/vhost-mp.conf"
	pack "$root" "$CACHE/initramfs-$cfg.cpio.gz"
}

[ -f "$l2_kernel" ] || die "the nested guest needs the bench kernel (make kernel)"
make_l2
make_l1
log "initramfs: $CACHE/initramfs-$cfg.cpio.gz ($(du -h "$CACHE/initramfs-$cfg.cpio.gz" | cut -f1))"
