#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Build one VM kernel configuration ("test" or "bench"):
#   pristine 6.12 source + net/core/patches/series + our overlay,
#   tinyconfig + tools/vm/config/{base,<cfg>}.config, bzImage + modules.
# Trees and outputs are cached by content; the overlay is synced with
# checksums so an unchanged file keeps its mtime and make rebuilds only
# what really changed.
. "$(dirname "$0")/lib.sh"

cfg=${1:?usage: build-kernel.sh test|bench}
[ -f "$REPO/tools/vm/config/$cfg.config" ] || die "no config $cfg"

"$REPO/tools/vm/fetch-source.sh"
src=$(pristine_dir)
tree=$(tree_dir)
out=$(out_dir "$cfg")
base="$tree/.overlay-base"

# Directories we own entirely inside the tree, and the prefix we add files to.
OWNED_DIRS=(drivers/vhost tools/testing/selftests/vhost)
SHARED_DIRS=(include)

apply_series() {
	local dir=$1 p
	while read -r p; do
		case "$p" in ''|'#'*) continue ;; esac
		log "applying $p"
		patch -d "$dir" -p1 --fuzz=0 --no-backup-if-mismatch -s \
			-i "$REPO/net/core/patches/$p" || die "$p does not apply"
	done < "$REPO/net/core/patches/series"
}

make_tree() {
	[ -f "$tree/.ready" ] && return
	log "preparing tree $tree"
	rm -rf "$tree" "$tree.tmp"
	cp -a "$src" "$tree.tmp"
	apply_series "$tree.tmp"
	touch "$tree.tmp/.ready"
	mv "$tree.tmp" "$tree"
	# Older trees are dead weight once the series moved on.
	find "$CACHE" -maxdepth 1 -name 'tree-*' ! -name "$(basename "$tree")" \
		-exec rm -rf {} +
}

prune_outputs() {
	find "$CACHE" -maxdepth 1 -name "out-*-$cfg" ! -name "$(basename "$out")" \
		-exec rm -rf {} +
}

# An owned directory becomes pristine content with our files on top.
sync_owned_dir() {
	local d=$1 stage
	stage=$(mktemp -d)
	[ -d "$src/$d" ] && cp -a "$src/$d/." "$stage/"
	[ -d "$REPO/$d" ] && cp -a "$REPO/$d/." "$stage/"
	mkdir -p "$tree/$d"
	rsync -rc --delete "$stage/" "$tree/$d/"
	rm -rf "$stage"
}

# In a shared directory we add or replace single files; a file we stop
# shipping is restored from the patched source (or removed).
sync_shared_dir() {
	local d=$1 manifest="$tree/.overlay-$(echo "$1" | tr / _)" f
	if [ -f "$manifest" ]; then
		while read -r f; do
			[ -f "$REPO/$f" ] && continue
			if [ -f "$base/$f" ]; then
				cp "$base/$f" "$tree/$f"
			else
				rm -f "$tree/$f"
			fi
		done < "$manifest"
	fi
	: > "$manifest.new"
	[ -d "$REPO/$d" ] || { mv "$manifest.new" "$manifest"; return; }
	(cd "$REPO" && find "$d" -type f) | while read -r f; do
		if [ ! -f "$base/$f" ] && [ -f "$tree/$f" ] &&
		   ! grep -qx "$f" "$manifest" 2>/dev/null; then
			mkdir -p "$(dirname "$base/$f")"
			cp "$tree/$f" "$base/$f"
		fi
		mkdir -p "$(dirname "$tree/$f")"
		cmp -s "$REPO/$f" "$tree/$f" || cp "$REPO/$f" "$tree/$f"
		echo "$f" >> "$manifest.new"
	done
	mv "$manifest.new" "$manifest"
}

overlay() {
	local d
	mkdir -p "$base"
	for d in "${OWNED_DIRS[@]}"; do sync_owned_dir "$d"; done
	for d in "${SHARED_DIRS[@]}"; do sync_shared_dir "$d"; done
}

# Fail loudly when Kconfig silently drops an option we asked for.
check_config() {
	local line key want got
	grep -h '^CONFIG_' "$REPO/tools/vm/config/base.config" \
		"$REPO/tools/vm/config/$cfg.config" | while read -r line; do
		key=${line%%=*}
		want=${line#*=}
		got=$(sed -n "s/^$key=//p" "$out/.config")
		[ "$want" = n ] && want=""
		[ "$got" = "$want" ] || die "$key: want '${want:-n}', got '${got:-n}'"
	done
}

configure() {
	[ -f "$out/.config" ] && return
	log "configuring $cfg in $out"
	mkdir -p "$out"
	make -s -C "$tree" O="$out" ARCH=x86_64 tinyconfig >/dev/null
	"$tree/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" \
		"$REPO/tools/vm/config/base.config" \
		"$REPO/tools/vm/config/$cfg.config" >/dev/null
	make -s -C "$tree" O="$out" ARCH=x86_64 olddefconfig
	if ! check_config; then
		rm -f "$out/.config"
		exit 1
	fi
}

build() {
	log "building $cfg kernel ($(cat "$src/.debian-version"))"
	make -s -C "$tree" O="$out" ARCH=x86_64 -j"$JOBS" bzImage modules headers
	log "built $(kernel_release "$cfg"): $out/arch/x86/boot/bzImage"
}

make_tree
prune_outputs
overlay
configure
build
