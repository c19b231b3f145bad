#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# "make check": build everything, run every suite in its VM, print one
# TAP stream numbered across all of them, and close with the line
# "N passed, N failed, N skipped".  Exit status is non-zero on any failure.
#
# check.sh reference ("make check-reference"): the same build, then the
# suites that hold both implementations to one behaviour (basic, sim,
# e2e), run against upstream's reference modules instead of ours.
#
# check.sh migration ("make check-migration"): the same build, then the
# live migration under traffic, on ours and on upstream's.
. "$(dirname "$0")/lib.sh"

MODE=${1:-ours}
case "$MODE" in
ours | reference | migration) ;;
*) die "usage: check.sh [ours|reference|migration]" ;;
esac

RUNS="$CACHE/runs"
n=0
passed=0
failed=0
skipped=0

result() { # result ok|fail|skip DESCRIPTION [REASON]
	n=$((n + 1))
	case $1 in
	ok) passed=$((passed + 1)); echo "ok $n - $2" ;;
	skip) skipped=$((skipped + 1)); echo "ok $n - $2 # SKIP ${3:-}" ;;
	*) failed=$((failed + 1)); echo "not ok $n - $2" ;;
	esac
}

finish() {
	echo "1..$n"
	echo "$passed passed, $failed failed, $skipped skipped"
	[ "$failed" = 0 ]
	exit
}

# Renumber a VM's TAP into ours, prefixing each result with its group.
import_tap() {
	local file=$1 group="" line rest desc
	while IFS= read -r line; do
		line=${line%$'\r'}
		case "$line" in
		'# group: '*) group=${line#'# group: '}; echo "# --- $group" ;;
		'ok '*|'not ok '*)
			rest=${line#not }
			rest=${rest#ok }
			desc=${rest#* }
			desc=${desc#- }
			desc="${group:+$group: }$desc"
			if [[ "$line" == not* ]]; then
				result fail "${desc%% # *}"
			elif [[ "$desc" == *'# SKIP'* ]]; then
				result skip "${desc%% # SKIP*}" "${desc#*# SKIP }"
			else
				result ok "$desc"
			fi
			;;
		'VMTEST-EXIT:'*|'') ;;
		'#'*) echo "$line" ;;
		*) echo "# $line" ;;
		esac
	done < "$file"
}

# run_suite SUITE CFG [RUN-VM OPTION...]: boot, import its TAP, and judge
# the run itself.
run_suite() {
	local suite=$1 cfg=$2 dir="$RUNS/$1" rc=0 t0
	shift 2
	rm -rf "$dir"
	t0=$(date +%s)
	"$REPO/tools/vm/run-vm.sh" -q -o "$dir" "$@" \
		-k "$(out_dir "$cfg")/arch/x86/boot/bzImage" \
		-i "$CACHE/initramfs-$cfg.cpio.gz" "$suite" 2> "$dir.err" || rc=$?
	import_tap "$dir/tap.log"
	sed 's/^/# /' "$dir.err"
	if [ "$rc" = 0 ]; then
		result ok "vm $suite: exited cleanly, kernel log clean ($(($(date +%s) - t0))s)"
	else
		result fail "vm $suite: status $rc, see $dir/console.log"
	fi
}

# The runner must turn a kernel WARN and a kmemleak report into a failed
# run, even when the suite itself reports success.
harness_selftest() {
	local dir="$RUNS/harness-test" rc=0
	rm -rf "$dir"
	"$REPO/tools/vm/run-vm.sh" -q -o "$dir" -t 300 \
		-k "$(out_dir test)/arch/x86/boot/bzImage" \
		-i "$CACHE/initramfs-test.cpio.gz" harness-test 2> "$dir.err" || rc=$?
	if [ "$rc" = 125 ] && grep -q '^ok .*warn_test.ko loaded' "$dir/tap.log" &&
	   grep -q '^ok .*leak_test.ko loaded' "$dir/tap.log"; then
		result ok "harness self-test: the runner rejected the run"
	else
		result fail "harness self-test: runner returned $rc (want 125)"
	fi
	if grep -q 'WARNING:.*warn_test' "$dir/console.log"; then
		result ok "harness self-test: a kernel WARN is caught"
	else
		result fail "harness self-test: a kernel WARN is caught"
	fi
	# The module's init text is gone by the scan, so recognise the leaked
	# object by its contents rather than by its backtrace.
	if grep -A4 'unreferenced object' "$dir/console.log" | grep -q 'vhost-mp harness'; then
		result ok "harness self-test: a kmemleak report is caught"
	else
		result fail "harness self-test: a kmemleak report is caught"
	fi
}

# Lines that a stuck NIC leaves in a kernel log (6.12's dev_watchdog,
# virtio_net's, e1000's and e1000e's own reports) fail a run.
stuck_nic_selftest() {
	local line miss=0
	while read -r line; do
		if ! printf '%s\n' "$line" | grep -aEq "$BAD_LOG"; then
			echo "# not caught: $line"
			miss=1
		fi
	done <<-'EOF'
	[   42.100000] NETDEV WATCHDOG: eth1 (virtio_net): transmit queue 0 timed out 5120 ms
	[   42.100001] virtio_net virtio1 eth1: TX timeout on queue: 0, sq: output.0, vq: 0x1, name: output.0, 5120000 usecs ago
	[   42.100002] e1000e 0000:00:04.0 eth2: Detected Hardware Unit Hang:
	[   42.100003] e1000 0000:00:03.0 eth0: Detected Tx Unit Hang
	[   42.100004] e1000e 0000:00:04.0 eth2: Reset adapter unexpectedly
	EOF
	if [ "$miss" = 0 ]; then
		result ok "harness self-test: a stuck NIC's kernel messages fail a run"
	else
		result fail "harness self-test: a stuck NIC's kernel messages fail a run"
	fi
}

# Our own sources must be checkpatch --strict clean.
checkpatch() {
	local tree files
	tree=$(tree_dir)
	mapfile -t files < <(cd "$REPO" && git ls-files -co --exclude-standard \
		'drivers/*.[ch]' 'include/*.h' 'tools/testing/selftests/vhost/*.c' \
		'tools/vm/*.c' 'tools/mpassthru/*.c' 2>/dev/null)
	if [ "${#files[@]}" = 0 ]; then
		result skip "checkpatch --strict on our sources" "no sources"
		return
	fi
	if (cd "$REPO" && "$tree/scripts/checkpatch.pl" --strict --no-tree --quiet \
		-f "${files[@]}") > "$RUNS/checkpatch.log" 2>&1; then
		result ok "checkpatch --strict clean on ${#files[@]} files"
	else
		sed 's/^/# /' "$RUNS/checkpatch.log" | head -40
		result fail "checkpatch --strict on our sources"
	fi
}

# The net/core series: each patch applies with no fuzz and builds alone.
series_check() {
	local line
	"$REPO/tools/vm/check-series.sh" > "$RUNS/series.log" 2>&1
	while IFS= read -r line; do
		case "$line" in
		'ok '*) result ok "series: ${line#ok }" ;;
		'not ok '*) result fail "series: ${line#not ok }" ;;
		*) echo "$line" ;;
		esac
	done < "$RUNS/series.log"
	grep -q '^ok \|^not ok ' "$RUNS/series.log" ||
		result fail "series: check-series.sh ran"
}

# Every patch of the series is checkpatch --strict clean.
series_checkpatch() {
	local tree p bad=0
	tree=$(tree_dir)
	for p in "$REPO"/net/core/patches/*.patch; do
		[ -f "$p" ] || continue
		if ! "$tree/scripts/checkpatch.pl" --strict --no-tree --quiet "$p" \
			> "$RUNS/checkpatch-series.log" 2>&1; then
			sed 's/^/# /' "$RUNS/checkpatch-series.log" | head -20
			bad=1
		fi
	done
	if [ "$bad" = 0 ]; then
		result ok "checkpatch --strict clean on the net/core series"
	else
		result fail "checkpatch --strict clean on the net/core series"
	fi
}

# What a user does on their own host: "make modules KDIR=...", here
# against the test kernel's build tree, from a copy of the checkout.
out_of_tree_modules() {
	local copy
	if [ ! -f "$REPO/drivers/vhost/Makefile" ]; then
		result skip "make modules KDIR=<test kernel>" "no drivers/vhost yet"
		return
	fi
	copy=$(mktemp -d)
	cp -a "$REPO/Makefile" "$REPO/drivers" "$copy/"
	[ -d "$REPO/include" ] && cp -a "$REPO/include" "$copy/"
	# C=2: sparse on every file; KCFLAGS=-Werror: no compiler warning.
	if make -s -C "$copy" modules KDIR="$(out_dir test)" C=2 KCFLAGS=-Werror \
		> "$RUNS/modules.log" 2>&1 &&
	   [ -f "$copy/drivers/vhost/vhost_net.ko" ] &&
	   ! grep -qE 'warning:|error:' "$RUNS/modules.log"; then
		result ok "make modules KDIR=<test kernel>: out-of-tree build, gcc and sparse clean"
	else
		sed 's/^/# /' "$RUNS/modules.log" | tail -20
		result fail "make modules KDIR=<test kernel>: out-of-tree build, gcc and sparse clean"
	fi
	rm -rf "$copy"
}

echo "TAP version 13"
mkdir -p "$RUNS"
if ! "$REPO/tools/vm/build-all.sh" test bench; then
	result fail "build kernels, modules, selftests and initramfs"
	finish
fi
result ok "build kernels, modules, selftests and initramfs"
if [ "$MODE" = migration ]; then
	run_suite e2e test -a migration
	finish
fi
if [ "$MODE" = reference ]; then
	for suite in basic sim e2e; do
		run_suite "$suite" test -a reference
	done
	finish
fi
# timed STEP...: run a step, then say what it took.
timed() {
	local t0=$SECONDS
	"$@"
	echo "# $1 took $((SECONDS - t0))s"
}

timed checkpatch
timed series_checkpatch
timed series_check
timed out_of_tree_modules
for suite in basic sim e2e; do
	run_suite "$suite" test
done
# Two extra virtio-net NICs on one QEMU hub: one bound, one its peer.
run_suite mpassthru test -n
harness_selftest
stuck_nic_selftest
finish
