#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Build the kselftests (statically linked, from inside the pinned tree so
# they use its kselftest_harness.h and freshly exported uapi headers) and
# the harness self-test module, for one kernel configuration.
. "$(dirname "$0")/lib.sh"

cfg=${1:-test}
out=$(out_dir "$cfg")
tree=$(tree_dir)
[ -f "$out/Module.symvers" ] || die "build the $cfg kernel first (make kernel)"

mkdir -p "$out/selftests"
make -s -C "$tree/tools/testing/selftests/vhost" OUTPUT="$out/selftests" \
	KHDR_INCLUDES="-isystem $out/usr/include"

# The launcher users run (tools/mpassthru), for the VM's end-to-end tests.
gcc -static -O2 -Wall -Werror -isystem "$out/usr/include" \
	-o "$out/selftests/mpassthru-run" "$REPO/tools/mpassthru/mpassthru-run.c"

mkdir -p "$out/harness-test"
rsync -rc "$REPO/tools/vm/harness-test/" "$out/harness-test/"
make -s -C "$out" M="$out/harness-test" modules
log "selftests and harness module built for $cfg"
