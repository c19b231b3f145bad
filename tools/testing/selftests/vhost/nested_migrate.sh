#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Live migration with vhost on both sides, under traffic: two QEMUs in L1,
# both on vhost_net implementation $1, their taps in one bridge.  The
# source boots L2; the destination waits with -incoming.  First L1 and
# L2 ping each other through the source's vhost worker (the nested
# fixture's own check, on this guest to save a boot).  Then L1 streams
# random data into L2 over TCP and, a MiB in, migrates through the
# source's QMP socket (migrate_stream.py); the stream goes on through the
# migration and ends after it.  Then L2 must answer from the destination,
# and the SHA-256 of what it received must be that of what L1 sent: what
# vhost wrote into guest memory during the migration was in the dirty
# log.
. "$(dirname "$0")/vm_lib.sh"
. "$(dirname "$0")/nested_lib.sh"

impl=${1:?usage: [MIGRATE=0] nested_migrate.sh ours|reference}
# MIGRATE=0 (make check): the two QEMUs and the pings only.  The stream
# and the migration run in "make check-migration": on this fixture the
# destination L2 has crashed after the migration on upstream's vhost_net
# as well as on ours (a BUG in dql_completed, virtio_net's TX completion),
# so a failure there does not yet tell ours from the fixture.
MIGRATE=${MIGRATE:-1}
BR=mbr0
TAP_DST=tap0d
PORT=4444
SRC_LOG=$L2_LOG
DST_LOG=$HOSTROOT/tmp/l2-dst.log
RESULT=/tmp/migrate.json
SENT=/tmp/migrate-sent.bin	# in the host root
PINGS=10

if [ "$MIGRATE" = 1 ]; then
	group "live migration under traffic ($impl)"
else
	group "nested guest beside a migration destination ($impl)"
fi

if ! impl_available "$impl"; then
	skip "live migration on $impl vhost_net" "implementation not built"
	exit 0
fi

# One bridge, L1's address on it, both QEMUs' taps in it once they exist.
bridge_up() {
	ip link add $BR type bridge 2> /dev/null
	ip addr show dev $BR | grep -q "inet $L1_ADDR/" ||
		ip addr add $L1_ADDR/24 dev $BR || return 1
	ip link set $BR up
}

enslave() {
	[ -d "/sys/class/net/$1" ] || return 1
	ip link set "$1" master $BR && ip link set "$1" up
}

# Both taps in the bridge; or one QEMU gone, which ends the wait too.
taps_bridged() {
	[ -d /proc/$SRC_PID ] && [ -d /proc/$DST_PID ] || return 0
	enslave $TAP && enslave $TAP_DST
}

taps_in_bridge() {
	[ "$(basename "$(readlink /sys/class/net/$TAP/master)")" = $BR ] &&
		[ "$(basename "$(readlink /sys/class/net/$TAP_DST/master)")" = $BR ]
}

# start_side NAME TAP EXTRA...: an L2 QEMU on our tap TAP, with no 9p
# export (QEMU refuses to migrate a guest that has it mounted), its
# serial log /tmp/NAME.log and a QMP socket /tmp/qmp-NAME.sock in the
# host root.
start_side() {
	local name=$1 tap=$2
	shift 2
	L2_NAME=$name L2_9P=0 \
	L2_QEMU_EXTRA="-qmp unix:/tmp/qmp-$name.sock,server=on,wait=off $*" \
		start_l2_with 1 l2.recv=1 \
		"tap,id=n0,ifname=$tap,script=no,downscript=no,vhost=on,vhostforce=on" \
		"virtio-net-pci,netdev=n0,mac=$L2_MAC"
}

# The SHA-256 (field 1) or length (2) of the last stream L2 received,
# from the destination's serial log (the source's stops at the migration).
l2_received() {
	awk -v f="$1" '$1 == "L2-RECV" { v = $(f + 1) } END { print v }' "$DST_LOG"
}

# Where what L2 received differs from what L1 sent: L2 serves it back.
show_differences() {
	local len
	len=$(l2_received 2)
	[ -n "$len" ] || return 0
	timeout 300 chroot "$HOSTROOT" /usr/bin/python3 - --to $L2_ADDR:5002 \
		--compare $SENT --length "$len" --timeout 240 \
		< "$(dirname "$0")/migrate_stream.py" 2>&1 | sed 's/^/# differences: /'
}

# What QEMU said, and where each guest's log ends.
show_qemu() {
	local name
	for name in l2 l2-dst; do
		sed "s/^/# qemu $name: /" "$HOSTROOT/tmp/qemu-$name.out" 2> /dev/null
		tail -n 10 "$HOSTROOT/tmp/$name.log" 2> /dev/null | sed "s/^/# $name: /"
	done
}

# jq on the stream's report.
report() {
	in_host /usr/bin/jq -er "$1" < $RESULT 2> /dev/null
}

# Sum of one counter over the vhost-net devices of QEMU $1 (ours only).
qemu_counter() {
	cat /sys/kernel/debug/vhost-mp/net-"$1"-*/stats 2> /dev/null |
		awk -v k="$2" '$1 == k { n += $2 } END { print n + 0 }'
}

l2_answers() {
	timeout 60 ping -c 3 -W 5 $L2_ADDR > /tmp/ping-dst.log 2>&1 && return 0
	sed 's/^/# ping: /' /tmp/ping-dst.log
	return 1
}

# Before the migration, L1 pings L2, and the source's vhost worker must
# carry every packet: each echo request reaches L2 through its RX path
# and each reply leaves through its TX path, at least one wakeup each.
ping_both_ways() {
	local tid wake0 wake1 rx0 rx1
	tid=$(worker_tids | head -n 1)
	check "vhost worker thread vhost-$QEMU_PID exists" [ -n "$tid" ] || return
	wake0=$(worker_wakeups "$tid")
	rx0=$(cat /sys/class/net/$TAP/statistics/rx_packets)
	check "L1 pings L2 ($PINGS echo requests)" \
		timeout 60 ping -c $PINGS -W 5 -q $L2_ADDR
	wake1=$(worker_wakeups "$tid")
	rx1=$(cat /sys/class/net/$TAP/statistics/rx_packets)
	note "worker wakeups $wake0 -> $wake1, tap rx $rx0 -> $rx1"
	check "vhost worker woke for each packet" [ $((wake1 - wake0)) -ge $PINGS ]
	check "guest replies arrived on $TAP" [ $((rx1 - rx0)) -ge $PINGS ]
}

stop_both() {
	kill "$SRC_PID" "$DST_PID" 2> /dev/null
	wait "$SRC_PID" "$DST_PID" 2> /dev/null
	ip link del $BR 2> /dev/null
	return 0
}

# Stop both QEMUs, check that they went and that the module unloads.
finish_case() {
	stop_both
	check "both QEMUs exited" wait_for 120 sh -c \
		"[ ! -d /proc/$SRC_PID ] && [ ! -d /proc/$DST_PID ]"
	check "unload $impl vhost_net after use" unload_vhost
	exit $FAILED
}

check "load $impl vhost_net" load_vhost "$impl" || exit 1
check "host root usable for qemu" hostroot_ready || exit 1
check "bridge $BR with $L1_ADDR" bridge_up || exit 1

start_side l2 $TAP
SRC_PID=$QEMU_PID
start_side l2-dst $TAP_DST "-incoming tcp:127.0.0.1:$PORT"
DST_PID=$QEMU_PID
QEMU_PID=$SRC_PID
wait_for 300 taps_bridged
if ! check "source QEMU running, destination waiting" \
	[ -d /proc/$SRC_PID -a -d /proc/$DST_PID ] ||
   ! check "both QEMUs' taps in $BR" taps_in_bridge ||
   ! wait_l2_booted "L2 guest booted on the source"; then
	show_qemu
	stop_both
	unload_vhost
	exit 1
fi
check "L2 pings L1 through the bridge" grep -q 'L2-PING-OK' "$SRC_LOG"
ping_both_ways
[ "$MIGRATE" = 1 ] || finish_case

src0=$(qemu_counter $SRC_PID rx_bytes)
# shellcheck disable=SC2094 # the script is read from stdin, not $RESULT
timeout 900 chroot "$HOSTROOT" /usr/bin/python3 - --to $L2_ADDR:5001 \
	--qmp /tmp/qmp-l2.sock --uri "tcp:127.0.0.1:$PORT" --timeout 800 \
	--save $SENT < "$(dirname "$0")/migrate_stream.py" > $RESULT 2> $RESULT.err
note "stream and migration: $(cat $RESULT)"
[ -s $RESULT.err ] && sed 's/^/# migrate_stream.py: /' $RESULT.err
check "migration completed" [ "$(report .migration.status)" = completed ] ||
	show_qemu
note "migration: $(report '.migration | "\(.total_ms) ms in all, \(.downtime_ms) ms down, \(.ram_bytes) bytes of RAM"')"
# At least a TCP window's worth acknowledged by L2 while it migrated.
check "the stream ran through the migration" \
	[ "$(report '.during // 0')" -ge 65536 ] 2> /dev/null
check "the stream ended cleanly" [ "$(report '.error // "none"')" = none ]
src1=$(qemu_counter $SRC_PID rx_bytes)

# The source stays paused after a migration: stop it, so that nothing
# but the destination can answer.
kill "$SRC_PID" 2> /dev/null
wait "$SRC_PID" 2> /dev/null
check "L2 answers from the destination" l2_answers || show_qemu
if ! wait_for 120 sh -c "grep -q '^L2-RECV ' $DST_LOG"; then
	sed 's/^/# l2 (destination): /' "$DST_LOG" | tail -n 10
fi
dst1=$(qemu_counter $DST_PID rx_bytes)
sent=$(report .sha256)
got=$(l2_received 1)
note "L1 sent $(report .sent) bytes, SHA-256 $sent;" \
	"L2 received $(l2_received 2) bytes, SHA-256 ${got:-(none)}"
check "L2 received every byte intact: the SHA-256s match" \
	[ "$(report '.sent // 0')" -gt 0 -a -n "$got" -a "$got" = "$sent" ] ||
	show_differences
rm -f "$HOSTROOT$SENT"
# The first MiB of the stream went in before the migration began, the
# last after it ended: each through its own side's vhost-net device.
if [ "$impl" = ours ]; then
	note "rx_bytes: source $src0 -> $src1, destination $dst1"
	check "our vhost-net on the source carried the stream's start" \
		[ $((src1 - src0)) -ge 1048576 ]
	check "our vhost-net on the destination carried its end" \
		[ "$dst1" -ge 1048576 ]
fi
finish_case
