#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Boot one VM under TCG, run one suite in it and judge the result.
#
#   run-vm.sh [options] SUITE
#     -k KERNEL     bzImage (default: the test kernel)
#     -i INITRD     initramfs (default: the test initramfs)
#     -o DIR        where console.log and tap.log go (default: a new dir)
#     -t SECONDS    hard timeout (default 2700: a hang-catcher, with room
#                   for a machine half as fast as the one measured)
#     -m MEM        guest memory (default 2G)
#     -n            add the two hub NICs used by the mpassthru tests
#     -q            do not echo the suite's output to stdout
#     -a ARG        argument for the suite (vmtest.arg=, no spaces)
#
# Exit status: the suite's own status, or 124 on timeout, or 125 when the
# kernel log shows a warning, BUG, KASAN, lockdep, hang or leak report.
. "$(dirname "$0")/lib.sh"

kernel=
initrd=
outdir=
timeout=2700
mem=2G
nics=0
quiet=0
suite_arg=
while getopts k:i:o:t:m:nqa: opt; do
	case $opt in
	k) kernel=$OPTARG ;;
	i) initrd=$OPTARG ;;
	o) outdir=$OPTARG ;;
	t) timeout=$OPTARG ;;
	m) mem=$OPTARG ;;
	n) nics=1 ;;
	q) quiet=1 ;;
	a) suite_arg=$OPTARG ;;
	*) die "bad option" ;;
	esac
done
shift $((OPTIND - 1))
suite=${1:?suite name}
kernel=${kernel:-$(out_dir test)/arch/x86/boot/bzImage}
initrd=${initrd:-$CACHE/initramfs-test.cpio.gz}
outdir=${outdir:-$(mktemp -d "${TMPDIR:-/tmp}/vhost-mp-vm.XXXXXX")}
mkdir -p "$outdir"
console="$outdir/console.log"
tap="$outdir/tap.log"
: > "$console"
: > "$tap"

qemu_args=(
	-accel tcg -cpu max -smp 2 -m "$mem"
	-display none -monitor none -no-reboot
	-kernel "$kernel" -initrd "$initrd"
	-append "console=ttyS0 panic=-1 oops=panic loglevel=6 acpi=noirq pnpacpi=off watchdog_thresh=60 vmtest.suite=$suite${suite_arg:+ vmtest.arg=$suite_arg}"
	-serial "file:$console" -serial "file:$tap"
	-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap
	-nic none
)
if [ "$nics" = 1 ]; then
	qemu_args+=(
		-netdev hubport,id=hp0,hubid=0 -device virtio-net-pci,netdev=hp0,mac=52:54:00:00:01:01
		-netdev hubport,id=hp1,hubid=0 -device virtio-net-pci,netdev=hp1,mac=52:54:00:00:01:02
	)
fi

follow_pid=
if [ "$quiet" = 0 ]; then
	tail -n +1 -f "$tap" &
	follow_pid=$!
fi

rc=0
timeout --kill-after=10 "$timeout" qemu-system-x86_64 "${qemu_args[@]}" \
	< /dev/null > "$outdir/qemu.log" 2>&1 || rc=$?
if [ -n "$follow_pid" ]; then
	sleep 0.5
	kill "$follow_pid" 2>/dev/null || true
	wait "$follow_pid" 2>/dev/null || true
fi

if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
	log "$suite: VM timed out after ${timeout}s (log: $console)"
	exit 124
fi
if [ "$rc" != 0 ]; then
	log "$suite: qemu failed with status $rc: $(tail -3 "$outdir/qemu.log")"
	exit 126
fi
if grep -aEq "$BAD_LOG" "$console"; then
	log "$suite: kernel log shows a problem (log: $console):"
	grep -aE -m5 "$BAD_LOG" "$console" | sed 's/^/    /' >&2
	exit 125
fi
status=$(sed -n 's/^VMTEST-EXIT: \([0-9]*\).*/\1/p' "$console" | tail -1)
if [ -z "$status" ]; then
	log "$suite: VM stopped without reporting a result (log: $console)"
	exit 126
fi
exit "$status"
