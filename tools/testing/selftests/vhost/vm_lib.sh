#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Helpers for the scripts that run inside the test VM: TAP output, choosing
# the vhost implementation, and running host programs from the 9p root.
#
# TAP convention: the harness renumbers results across the whole run, so
# scripts print "ok 0 ..." and start each block with "# group: NAME".

VM_CONF=/etc/vhost-mp.conf
[ -f "$VM_CONF" ] && . "$VM_CONF"
REF_DIR=/lib/vhost-reference
HOSTROOT=/hostroot
FAILED=0

# A result that took a while is preceded by "# took Ns", the time since
# the result before it (in any script of the run), so that the log shows
# where a suite's minutes go.
RESULT_CLOCK=/tmp/vmtest.clock
took() {
	local now last _
	read -r now _ < /proc/uptime
	now=${now%.*}
	last=$now
	[ -f $RESULT_CLOCK ] && read -r last < $RESULT_CLOCK
	echo "$now" > $RESULT_CLOCK
	[ $((now - last)) -lt 5 ] || echo "# took $((now - last))s"
}

group() { took; echo "# group: $*"; }
pass() { took; echo "ok 0 $*"; }
fail() { took; echo "not ok 0 $*"; FAILED=1; }
skip() { took; echo "ok 0 $1 # SKIP $2"; }
note() { echo "# $*"; }

# check NAME CMD...: one TAP line from a command's exit status, which
# it returns, so that "check ... || exit 1" stops a script on a failure.
check() {
	local name=$1
	shift
	if "$@"; then pass "$name"; else fail "$name"; return 1; fi
}

# run_prog NAME CMD...: stream a kselftest program's TAP; a program that
# dies without reporting a failure still counts as one.
run_prog() {
	local name=$1 out=/tmp/run_prog.$$ rc
	shift
	{ "$@" 2>&1; echo $? > "$out.rc"; } | timed > "$out"
	read -r rc < "$out.rc"
	cat "$out"
	if [ "$rc" != 0 ]; then
		FAILED=1
		grep -q '^not ok' "$out" || fail "$name exited with status $rc"
	fi
	rm -f "$out" "$out.rc"
}

# timed: copy a program's TAP, each result with its time (see took).
timed() {
	local line
	while IFS= read -r line; do
		case "$line" in
		'ok '* | 'not ok '*) took ;;
		esac
		printf '%s\n' "$line"
	done
}

# Implementations: "ours" is the tree's vhost_net (drivers/vhost of this
# repository), "reference" is upstream's, built unmodified as external
# modules.  Only one is loaded at a time.
impl_available() {
	case "$1" in
	ours) [ "${OURS_VHOST:-0}" = 1 ] ;;
	reference) [ -f "$REF_DIR/vhost_net.ko" ] ;;
	*) return 1 ;;
	esac
}

# impls_of ARG: the implementations a suite runs against.  "make check"
# runs ours (ARG empty or "ours"); "make check-reference" repeats the same
# suites against upstream's ("reference"); "both" runs one after the other.
impls_of() {
	case "${1:-ours}" in
	ours) echo ours ;;
	reference) echo reference ;;
	both) echo ours reference ;;
	*) return 1 ;;
	esac
}

# mpassthru registers itself with our vhost_net, so it goes first.
unload_vhost() {
	local m
	for m in mpassthru vhost_net vhost vhost_iotlb; do
		grep -q "^$m " /proc/modules && rmmod "$m"
	done
	! grep -qE '^(mpassthru|vhost_net|vhost|vhost_iotlb) ' /proc/modules
}

# load_vhost IMPL [PARAM=VALUE...]: the parameters go to vhost_net.  With
# WITH_MPASSTHRU=1 (the suites that bind NICs), ours comes with mpassthru,
# which vhost_net itself never pulls in.
load_vhost() {
	local impl=$1
	shift
	unload_vhost || return 1
	case "$impl" in
	ours)
		modprobe vhost_net "$@" || return 1
		[ "${WITH_MPASSTHRU:-0}" = 1 ] && { modprobe mpassthru || return 1; }
		;;
	reference)
		insmod "$REF_DIR/vhost_iotlb.ko" &&
		insmod "$REF_DIR/vhost.ko" &&
		insmod "$REF_DIR/vhost_net.ko" "$@" || return 1
		;;
	esac
	[ -c /dev/vhost-net ]
}

# Host programs (qemu, ip, iperf3) run chrooted in the read-only 9p root
# with this VM's /dev, /proc, /sys and writable scratch space.
hostroot_ready() {
	[ -x "$HOSTROOT/usr/bin/qemu-system-x86_64" ] || return 1
	grep -q " $HOSTROOT/proc " /proc/mounts && return 0
	mount --bind /dev "$HOSTROOT/dev" &&
	mount -t proc proc "$HOSTROOT/proc" &&
	mount -t sysfs sys "$HOSTROOT/sys" &&
	mount -t tmpfs tmp "$HOSTROOT/tmp" &&
	mount -t tmpfs shm "$HOSTROOT/dev/shm" &&
	mount -t tmpfs run "$HOSTROOT/run"
}

in_host() {
	chroot "$HOSTROOT" env TMPDIR=/tmp PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

# Same in the background; $! is then the program's own pid, not a subshell's.
in_host_bg() {
	(exec chroot "$HOSTROOT" env TMPDIR=/tmp PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@") &
}
