#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Fetch Debian's linux-source package at the pinned version, check its
# sha256 and unpack it once into the cache as the pristine source.
. "$(dirname "$0")/lib.sh"

deb="$CACHE/dl/${LINUX_PKG}_${LINUX_DEBVER/:/%3a}_all.deb"
src=$(pristine_dir)

fetch_deb() {
	mkdir -p "$CACHE/dl"
	[ -f "$deb" ] && return
	log "downloading $LINUX_PKG=$LINUX_DEBVER"
	# A machine whose package lists are stale or empty needs an update first.
	(cd "$CACHE/dl" && apt-get download "$LINUX_PKG=$LINUX_DEBVER") ||
		{ apt-get update -qq && cd "$CACHE/dl" && apt-get download "$LINUX_PKG=$LINUX_DEBVER"; } ||
		die "apt-get download $LINUX_PKG=$LINUX_DEBVER failed (run 'make deps', which runs apt-get update)"
}

check_deb() {
	local sum
	sum=$(sha256sum "$deb" | cut -d' ' -f1)
	if [ "$sum" != "$LINUX_SHA256" ]; then
		rm -f "$deb"
		die "sha256 mismatch for $deb: got $sum, want $LINUX_SHA256"
	fi
	log "kernel source: $LINUX_PKG $LINUX_DEBVER sha256 $sum"
}

unpack() {
	[ -f "$src/.unpacked" ] && return
	log "unpacking into $src"
	rm -rf "$src" "$src.tmp"
	mkdir -p "$src.tmp"
	dpkg-deb --fsys-tarfile "$deb" |
		tar -xO --wildcards './usr/src/linux-source-*.tar.xz' |
		tar -xJ -C "$src.tmp" --strip-components=1
	printf '%s %s\n' "$LINUX_DEBVER" "$LINUX_SHA256" > "$src.tmp/.debian-version"
	touch "$src.tmp/.unpacked"
	mv "$src.tmp" "$src"
}

fetch_deb
check_deb
unpack
