#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# "make bench": build the bench kernel and everything its VM needs, run
# every datapath side by side in one VM boot, and regenerate
# BENCHMARKS.md and BENCHMARKS.png from that run.
#
#   bench.sh [SECS:REPS[:WIRE]]  seconds per measurement and repetitions
#                                (3:3); WIRE tap or nic runs only that wire
. "$(dirname "$0")/lib.sh"

plan=${1:-${BENCH_PLAN:-3:3}}
[[ "$plan" =~ ^[0-9]+:[0-9]+(:tap|:nic)?$ ]] || die "usage: bench.sh [SECS:REPS[:tap|:nic]]"
start=$(date +%s)
"$REPO/tools/vm/build-all.sh" bench
out="$CACHE/runs/bench"
rm -rf "$out"
log "benchmark VM: $plan (seconds:repetitions) per workload and datapath"
rc=0
"$REPO/tools/vm/run-vm.sh" -o "$out" -t 3000 -q -n -a "$plan" \
	-k "$(out_dir bench)/arch/x86/boot/bzImage" \
	-i "$CACHE/initramfs-bench.cpio.gz" bench || rc=$?
grep -E '^(not )?ok ' "$out/tap.log" | sed 's/^/# /'
[ "$rc" = 0 ] || die "benchmark VM failed ($rc); logs in $out"

python3 "$REPO/tools/vm/bench-report.py" \
	--log "$out/tap.log" --out "$REPO/BENCHMARKS.md" \
	--chart "$REPO/BENCHMARKS.png" \
	--command "make bench BENCH_PLAN=$plan" \
	--machine "$(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" \
	--qemu "$(qemu-system-x86_64 --version | head -n 1)"
log "BENCHMARKS.md and BENCHMARKS.png written in $(($(date +%s) - start))s"
