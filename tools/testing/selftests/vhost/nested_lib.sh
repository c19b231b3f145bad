#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The nested fixture: the host's unmodified QEMU, run from the 9p root,
# boots an unmodified Linux guest (L2) whose virtio-net NIC is served by
# /dev/vhost-net through a tap in this VM (L1).  Sourced after vm_lib.sh.

L2_LOG=$HOSTROOT/tmp/l2.log
TAP=tap0
L1_ADDR=10.99.0.1
L2_ADDR=10.99.0.2
L2_MAC=52:54:00:12:34:56

# With L2_NIC2 set to virtio-net-pci properties (comma-separated), L2 gets
# a second NIC configured with them, on its own tap and subnet and served
# by the same vhost_net: one boot measures two device configurations.
TAP2=tap1
L1_ADDR2=10.99.1.1
L2_ADDR2=10.99.1.2
L2_MAC2=52:54:00:12:34:57

wait_for() {
	local secs=$1 i=0
	shift
	while ! "$@"; do
		i=$((i + 1))
		[ "$i" -ge "$secs" ] && return 1
		sleep 1
	done
}

# L2 is emulated by an emulated CPU: on a loaded 2-core machine its boot
# took 460 to 490 s.  Its kernel, like L1's, skips ACPI's interrupt
# routing and PnP enumeration (AML that slow hit the interpreter's loop
# timeout and cost _PRT) and takes a stalled vCPU for starvation, not a
# lockup.  It also trusts the timer interrupt without timing it: at that
# speed the check can miss the tick, and its fallback through the other
# IO-APIC pins once ended in a NULL dereference (io_apic_modify_irq) at
# 0.77 s.  Boot waits are iterations of at least a second each.
L2_BOOT_ARGS="acpi=noirq pnpacpi=off watchdog_thresh=60 no_timer_check"
L2_BOOT_WAIT=900

# start_l2_with SMP APPEND NETDEV DEVICE [LAUNCHER...]: boot L2 in the
# background, its NIC given by QEMU's -netdev NETDEV -device DEVICE.
# LAUNCHER, when given, opens the descriptors NETDEV names and execs the
# rest of its arguments, so that $QEMU_PID is QEMU itself.
#
# L2_NAME (default l2) names its serial log, /tmp/$L2_NAME.log, and
# QEMU's output, /tmp/qemu-$L2_NAME.out, in the host root (the first is
# $L2_LOG).  L2_9P=0 leaves out the 9p export; L2_QEMU_EXTRA adds options
# (words without spaces).
start_l2_with() {
	local smp=$1 append=$2 netdev=$3 device=$4 nic2="" fs="" name=${L2_NAME:-l2}
	shift 4
	[ -n "${L2_NIC2:-}" ] &&
		nic2="-netdev tap,id=n1,ifname=$TAP2,script=no,downscript=no,vhost=on,vhostforce=on
		      -device virtio-net-pci,netdev=n1,mac=$L2_MAC2,$L2_NIC2"
	[ "${L2_9P:-1}" = 1 ] &&
		fs="-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
	mkdir -p "$HOSTROOT/tmp/l2"
	cp /l2/bzImage /l2/initramfs.cpio "$HOSTROOT/tmp/l2/"
	: > "$HOSTROOT/tmp/$name.log"
	# shellcheck disable=SC2086 # $nic2, $fs and the extra options split
	(exec "$@" chroot "$HOSTROOT" env TMPDIR=/tmp PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		qemu-system-x86_64 -accel tcg -m 256 -smp "$smp" -nodefaults \
		-display none -no-reboot \
		-kernel /tmp/l2/bzImage -initrd /tmp/l2/initramfs.cpio \
		-append "console=ttyS0 panic=-1 quiet $L2_BOOT_ARGS $append" \
		-serial "file:/tmp/$name.log" $fs \
		-netdev "$netdev" -device "$device" $nic2 ${L2_QEMU_EXTRA:-} \
		< /dev/null > "$HOSTROOT/tmp/qemu-$name.out" 2>&1) &
	QEMU_PID=$!
}

# start_l2 QUEUES L2_CMDLINE: boot L2 on a new tap, $TAP; with more than
# one queue pair L2 gets one vCPU per pair so that its virtio_net driver
# enables them all.  L2_VHOST=off gives QEMU's own userspace datapath
# instead (the benchmark's baseline).
start_l2() {
	local queues=$1 append=$2 netdev device
	netdev="tap,id=n0,ifname=$TAP,script=no,downscript=no"
	if [ "${L2_VHOST:-on}" = on ]; then
		netdev="$netdev,vhost=on,vhostforce=on"
	else
		netdev="$netdev,vhost=off"
	fi
	device="virtio-net-pci,netdev=n0,mac=$L2_MAC"
	if [ "$queues" -gt 1 ]; then
		netdev="$netdev,queues=$queues"
		device="$device,mq=on,vectors=$((2 * queues + 2))"
	fi
	start_l2_with "$queues" "$append" "$netdev" "$device"
}

# tap_addr_up TAP ADDR: address and link up once QEMU has created the
# tap; safe to retry.
tap_addr_up() {
	[ -d "/sys/class/net/$1" ] || return 1
	ip addr show dev "$1" | grep -q "inet $2/" ||
		ip addr add "$2/24" dev "$1" || return 1
	ip link set "$1" up
}

# The L1 side of L2's taps: the second one only when L2 has that NIC.
tap_up() {
	tap_addr_up $TAP $L1_ADDR || return 1
	[ -z "${L2_NIC2:-}" ] || tap_addr_up $TAP2 $L1_ADDR2
}

# QEMU starts from the 9p root under TCG: on a loaded machine that alone
# can take over a minute.  Wait for the tap, or for QEMU to die.
tap_or_dead() {
	tap_up || [ ! -d /proc/$QEMU_PID ]
}

# l2_logged_or_gone PATTERN: L2's serial log has PATTERN, or its QEMU has
# exited (it runs with -no-reboot, so a panic ends it): either ends a wait.
l2_logged_or_gone() {
	grep -q "$1" "$L2_LOG" || [ ! -d /proc/$QEMU_PID ]
}

# Boot L2 and wait until it reports "L2-READY"; TAP lines on the way.
boot_l2() {
	start_l2 "$@"
	wait_for 300 tap_or_dead
	if ! tap_up; then
		fail "QEMU created $TAP"
		note "QEMU $QEMU_PID $([ -d /proc/$QEMU_PID ] && echo running || echo gone)"
		sed 's/^/# qemu: /' "$HOSTROOT/tmp/qemu-l2.out" 2>/dev/null
		stop_l2
		return 1
	fi
	pass "QEMU created $TAP with vhost=${L2_VHOST:-on}"
	wait_for $L2_BOOT_WAIT l2_logged_or_gone L2-READY
	if ! grep -q 'L2-READY' "$L2_LOG"; then
		fail "L2 guest booted"
		note "QEMU $QEMU_PID $([ -d /proc/$QEMU_PID ] && echo running || echo gone)"
		sed 's/^/# l2: /' "$L2_LOG" | tail -n 20
		stop_l2
		return 1
	fi
	pass "L2 guest booted"
}

# wait_l2_booted NAME: after start_l2_with, wait until L2 has tried to
# ping L1's address (its init does once it is up); one TAP line NAME.
wait_l2_booted() {
	wait_for $L2_BOOT_WAIT l2_logged_or_gone L2-PING-
	if ! grep -q 'L2-PING-' "$L2_LOG"; then
		fail "$1"
		sed 's/^/# qemu: /' "$HOSTROOT/tmp/qemu-l2.out"
		sed 's/^/# l2: /' "$L2_LOG" | tail -n 20
		stop_l2
		return 1
	fi
	pass "$1"
}

stop_l2() {
	kill "$QEMU_PID" 2>/dev/null
	wait "$QEMU_PID" 2>/dev/null
	return 0
}

# kill_mid_stream IMPL: SIGKILL the running L2's QEMU in the middle of an
# iperf3 stream to it.  Its vhost workers must go with it, its tap with
# its last file, and vhost_net must then unload; the runner checks the
# kernel log, with kmemleak, after the suite.
kill_mid_stream() {
	local iperf_pid tids

	timeout 90 chroot "$HOSTROOT" /usr/bin/iperf3 -c $L2_ADDR -t 60 -P 4 \
		> /tmp/iperf3-kill.out 2>&1 &
	iperf_pid=$!
	# iperf3 starts from the 9p root under TCG: wait for a real stream
	# (100 kB through the tap), however long it takes to get going.
	check "traffic flowing before the kill" wait_for 180 tap_tx_grew "$(tap_tx)"
	tids=$(worker_tids)
	check "vhost workers running before the kill" [ -n "$tids" ]
	kill -KILL "$QEMU_PID"
	check "QEMU gone after SIGKILL" wait_for 120 sh -c "[ ! -d /proc/$QEMU_PID ]"
	wait "$QEMU_PID" 2>/dev/null
	kill "$iperf_pid" 2>/dev/null
	wait "$iperf_pid" 2>/dev/null
	check "$TAP went away with its last file" \
		wait_for 60 sh -c "[ ! -d /sys/class/net/$TAP ]"
	check "unload $1 vhost_net after the kill" unload_vhost
}

tap_tx() { cat /sys/class/net/$TAP/statistics/tx_bytes; }
tap_tx_grew() { [ $(($(tap_tx) - $1)) -gt 100000 ]; }

# The vhost workers of a QEMU are its threads named vhost-<pid>: one per
# /dev/vhost-net file, that is one per queue pair.
worker_tids() {
	local t
	for t in /proc/"$QEMU_PID"/task/*; do
		[ "$(cat "$t/comm" 2>/dev/null)" = "vhost-$QEMU_PID" ] && basename "$t"
	done
}

worker_wakeups() {
	sed -n 's/^voluntary_ctxt_switches:[[:space:]]*//p' \
		"/proc/$QEMU_PID/task/$1/status"
}

worker_cpu_ticks() {
	awk '{ print $14 + $15 }' "/proc/$QEMU_PID/task/$1/stat"
}

# iperf3 runs with -J: every result is read from its JSON report by the
# host's jq, never from the text it prints for people (whose units change
# with the rate: Bytes, KBytes, MBytes, ...).
#
# iperf_field FILE FILTER: the value FILTER (jq) picks from the report in
# FILE; fails when the report is not JSON or the value is null or false.
iperf_field() {
	in_host /usr/bin/jq -er "$2" < "$1" 2> /dev/null
}

# iperf_ok FILE: the report is whole and names no error.  iperf3 -J
# exits 0 on some failures (a refused connection), so its status alone
# does not tell.
iperf_ok() {
	iperf_field "$1" 'if .error then false else .end.sum_received.bytes end' \
		> /dev/null
}

# iperf_show FILE: what a failing check prints: the report's error and
# totals, or the raw output when it is not a JSON report at all.
iperf_show() {
	local summary=/tmp/iperf3.summary
	if in_host /usr/bin/jq -c '{error, end: (.end | del(.streams))}' \
		< "$1" > $summary 2>&1; then
		sed 's/^/# iperf3 report: /' $summary
	else
		sed 's/^/# iperf3 output: /' "$1" | tail -n 20
	fi
	[ -s "$1.err" ] && sed 's/^/# iperf3 stderr: /' "$1.err" | tail -n 5
	return 0
}

# iperf_summary FILE: one line for the log: the receiver's bytes and
# rate, and the sender's retransmitted segments.
iperf_summary() {
	iperf_field "$1" '.end | "receiver \(.sum_received.bytes) bytes, \(.sum_received.bits_per_second / 1e6 * 100 | floor / 100) Mbit/s; sender retransmits \(.sum_sent.retransmits // "n/a")"'
}

# run_iperf FLAG NAME [PREFIX...]: an iperf3 client to L2 (at $IPERF_TO,
# by default $L2_ADDR) for $SECS seconds with ${STREAMS:-1} streams, started through PREFIX (for
# instance "ip netns exec NS"); one TAP line, $BYTES set to what the
# receiving side counted (at $RATE bit/s), $SENT to what the sending one
# wrote and $RETRANS to the segments it resent.
run_iperf() {
	local flag=$1 name=$2 out=/tmp/iperf3.json
	shift 2
	BYTES=0
	RATE=0
	SENT=0
	RETRANS=0
	# shellcheck disable=SC2086 # $flag is empty or one option
	if ! timeout $((SECS + 180)) chroot "$HOSTROOT" "$@" /usr/bin/iperf3 -J \
		-c "${IPERF_TO:-$L2_ADDR}" -t "$SECS" -P "${STREAMS:-1}" $flag \
		> $out 2> $out.err ||
	   ! iperf_ok $out; then
		iperf_show $out
		fail "iperf3 $name"
		return 1
	fi
	note "iperf3 $name: $(iperf_summary $out)"
	BYTES=$(iperf_field $out '.end.sum_received.bytes | floor')
	RATE=$(iperf_field $out '.end.sum_received.bits_per_second | floor')
	RETRANS=$(iperf_field $out '.end.sum_sent.retransmits // 0')
	SENT=$(iperf_field $out '.end.sum_sent.bytes | floor')
	if [ "${BYTES:-0}" -gt 0 ] 2> /dev/null; then
		pass "iperf3 $name: data received"
	else
		iperf_show $out
		fail "iperf3 $name: data received"
		BYTES=0
	fi
}

# counted_ok DELTA: a datapath counter that grew by DELTA over a stream
# (its frames with their headers) carried at least the $BYTES of payload
# the receiving application read, and not much more than the $SENT the
# sending one wrote (a slow receiver reads less than its kernel got): a
# fifth more for headers, every retransmitted segment once more at full
# size, and 1 MiB for the control connection and the neighbours.
counted_ok() {
	local max=$((SENT + SENT / 5 + RETRANS * 1514 + 1048576))

	[ "$1" -ge "$BYTES" ] && [ "$1" -le "$max" ] && return 0
	note "counted $1 bytes for $BYTES B read of $SENT B sent ($RETRANS retransmits): want $BYTES..$max"
	return 1
}

# The vhost-net devices of this QEMU (their debugfs directories), in the
# order QEMU opened them: that of its -netdev options, and in each the
# order of its queue pairs.
qemu_devices() {
	local d
	for d in /sys/kernel/debug/vhost-mp/net-$QEMU_PID-*; do
		[ -d "$d" ] && echo "${d##*-} $d"
	done | sort -n | cut -d' ' -f2
}

# Checksum offload and TSO off in both directions, as a user may configure
# the device: the guest sends and receives only whole frames, each with
# its checksum filled in, and vhost-net never sees a GSO header.
NO_OFFLOADS=csum=off,guest_csum=off,guest_tso4=off,guest_tso6=off,host_tso4=off,host_tso6=off

# nic2_offloads_off: L2's second NIC negotiated none of those (bits 0, 1,
# 7, 8, 11 and 12 of the features its virtio device lists in sysfs).
nic2_offloads_off() {
	local f bit
	f=$(sed -n 's/.*L2-NIC2-UP .* features \([01]*\).*/\1/p' "$L2_LOG")
	note "L2's second NIC: features ${f:-(none reported)}"
	[ -n "$f" ] || return 1
	for bit in 0 1 7 8 11 12; do
		[ "$(echo "$f" | cut -c$((bit + 1)))" = 0 ] || return 1
	done
}

# retrans_ok: the sender resent at most one segment in fifty (and ten
# more, for a short stream's losses at its start).
retrans_ok() {
	local max=$((SENT / 1448 / 50 + 10))

	[ "$RETRANS" -le "$max" ] && return 0
	note "$RETRANS segments resent of $((SENT / 1448)): want at most $max"
	return 1
}

# no_offload_streams IMPL: iperf3 both ways through L2's second NIC
# (booted with L2_NIC2=$NO_OFFLOADS).  Each direction's receiver rate,
# retransmits and bytes sent go to /tmp/no-offload-IMPL-DIR for the
# comparison with the other implementation; for ours, the device that
# serves the NIC must have counted each stream, within bounds.
no_offload_streams() {
	local impl=$1 dev flag dir name c0 c1 key SECS=6
	check "L2's second NIC has checksum offload and TSO off" nic2_offloads_off
	dev=$(qemu_devices | tail -n 1)
	for dir in g2h h2g; do
		if [ $dir = g2h ]; then
			flag=-R name="no offloads: guest to host" key=tx_bytes
		else
			flag="" name="no offloads: host to guest" key=rx_bytes
		fi
		rm -f "/tmp/no-offload-$impl-$dir"
		c0=$(awk -v k=$key '$1 == k { print $2 }' "$dev/stats" 2>/dev/null)
		IPERF_TO=$L2_ADDR2 run_iperf "$flag" "$name" || continue
		c1=$(awk -v k=$key '$1 == k { print $2 }' "$dev/stats" 2>/dev/null)
		echo "$RATE $RETRANS $SENT" > "/tmp/no-offload-$impl-$dir"
		check "$name: retransmits within bounds" retrans_ok
		[ "$impl" = ours ] || continue
		note "$key of the second NIC's device: $c0 -> $c1"
		check "$name: our $key counted the stream, within bounds" \
			counted_ok $((${c1:-0} - ${c0:-0}))
	done
}
