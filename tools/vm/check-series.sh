#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The net/core series patch by patch: on a pristine copy of the pinned
# source, each patch must apply with no fuzz and no offset, and after it
# every C file the series has touched so far must compile, with
# net/core/dev.c standing in for the users of the headers it changes.
# One TAP-style line per patch on stdout: "ok NAME" or "not ok NAME".
. "$(dirname "$0")/lib.sh"

series="$REPO/net/core/patches/series"
work="$CACHE/series-check"
src=$(pristine_dir)

"$REPO/tools/vm/fetch-source.sh" > /dev/null
rm -rf "$work"
mkdir -p "$work"
cp -a "$src" "$work/tree"
out="$work/out"
mkdir -p "$out"
make -s -C "$work/tree" O="$out" ARCH=x86_64 tinyconfig > /dev/null
"$work/tree/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" \
	"$REPO/tools/vm/config/base.config" \
	"$REPO/tools/vm/config/bench.config" > /dev/null

objs=(net/core/dev.o)
rc=0
while read -r p; do
	case "$p" in ''|'#'*) continue ;; esac
	log="$work/$p.log"
	if ! patch -d "$work/tree" -p1 --fuzz=0 --no-backup-if-mismatch \
		-i "$REPO/net/core/patches/$p" > "$log" 2>&1 ||
	   grep -qiE 'offset|fuzz' "$log"; then
		sed 's/^/# /' "$log"
		echo "not ok $p applies with no fuzz"
		rc=1
		break
	fi
	while read -r f; do
		case "$f" in *.c) objs+=("${f%.c}.o") ;; esac
	done < <(sed -n 's|^+++ b/||p' "$REPO/net/core/patches/$p")
	if make -s -C "$work/tree" O="$out" ARCH=x86_64 olddefconfig > "$log" 2>&1 &&
	   make -s -C "$work/tree" O="$out" ARCH=x86_64 KCFLAGS=-Werror \
		-j"$(nproc)" "${objs[@]}" >> "$log" 2>&1; then
		echo "ok $p applies and builds (${objs[*]})"
	else
		tail -n 20 "$log" | sed 's/^/# /'
		echo "not ok $p applies and builds (${objs[*]})"
		rc=1
		break
	fi
done < "$series"
rm -rf "$work"
exit $rc
