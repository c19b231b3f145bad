#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Install what the build and the VMs need from Debian's archive.
# Idempotent: when everything is already installed it only checks.
. "$(dirname "$0")/lib.sh"

PACKAGES=(
	build-essential gcc-multilib bc bison flex cpio rsync kmod file
	libelf-dev libssl-dev dwarves python3 xz-utils lz4 ca-certificates
	perl sparse
	qemu-system-x86 busybox-static
	iproute2 iperf3 iputils-ping jq
	gnuplot-nox
)

missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing+=("$p")
done
[ "${#missing[@]}" = 0 ] && exit 0

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
log "installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
	"${missing[@]}" > /dev/null
