#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Shared settings of the harness scripts; sourced, never run.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${VHOST_MP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vhost-mp}

# The pinned kernel baseline.  When Debian no longer serves this exact
# version, fetch-source.sh says so and stops: a silent move to another
# version would invalidate the patch series.
LINUX_PKG=linux-source-6.12
LINUX_DEBVER=6.12.117-1~deb12u1
LINUX_SHA256=e849faf31ca3555757f3a8877cb01af92122f744f75d1f3102734651c4e14703

# Bump when the way a tree is prepared changes (not what goes into it:
# the patch series and the config fragments are keyed by content).
TREE_RECIPE=1

JOBS=${JOBS:-$(($(nproc) + 1))}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Content key of a list of files and strings: sha256 over names and bytes.
content_key() {
	local item
	for item in "$@"; do
		if [ -f "$item" ]; then
			printf 'file %s\n' "${item#"$REPO"/}"
			cat "$item"
		else
			printf 'str %s\n' "$item"
		fi
	done | sha256sum | cut -c1-16
}

pristine_dir() { echo "$CACHE/src/linux-$LINUX_DEBVER"; }

# Tree = pristine source + our patch series; overlay goes on top later.
tree_key() {
	local p files=("$REPO/net/core/patches/series")
	while read -r p; do
		case "$p" in ''|'#'*) continue ;; esac
		files+=("$REPO/net/core/patches/$p")
	done < "$REPO/net/core/patches/series"
	content_key "$LINUX_SHA256" "tree-recipe-$TREE_RECIPE" "${files[@]}"
}

tree_dir() { echo "$CACHE/tree-$(tree_key)"; }

# Build output of one configuration (test or bench) of that tree.
out_dir() {
	local cfg=$1
	echo "$CACHE/out-$(content_key "$(tree_key)" \
		"$REPO/tools/vm/config/base.config" \
		"$REPO/tools/vm/config/$cfg.config")-$cfg"
}

kernel_release() { cat "$(out_dir "$1")/include/config/kernel.release"; }

# What in a kernel log fails a VM run: warnings, crashes, sanitizers,
# lockdep, hangs and leaks, and a NIC whose hardware path is stuck (a
# transmit watchdog, a driver's own TX timeout or hang report).
BAD_LOG='BUG:|WARNING:|KASAN|Oops|general protection fault|Kernel panic|possible circular locking|possible recursive locking|soft lockup|hung task|blocked for more than|unreferenced object|suspected memory leak|UBSAN'
BAD_LOG+='|NETDEV WATCHDOG|transmit queue [0-9]+ timed out|TX timeout on queue|Tx Unit Hang|Hardware Unit Hang|Reset adapter unexpectedly'
