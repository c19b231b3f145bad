#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Build upstream's unmodified drivers/vhost from the pinned source as
# external modules for one of our kernels, so tests and benchmarks can
# load either implementation in the same VM.
. "$(dirname "$0")/lib.sh"

cfg=${1:-test}
out=$(out_dir "$cfg")
[ -f "$out/Module.symvers" ] || die "build the $cfg kernel first (make kernel)"
ref="$out/vhost-reference"

mkdir -p "$ref"
rsync -rc --delete --exclude '*.o' --exclude '*.ko' --exclude '.*' \
	--exclude '*.mod*' --exclude 'Module.symvers' --exclude 'modules.order' \
	"$(pristine_dir)/drivers/vhost/" "$ref/"
make -s -C "$out" M="$ref" -j"$JOBS" \
	CONFIG_VHOST_IOTLB=m CONFIG_VHOST=m CONFIG_VHOST_NET=m modules
log "reference vhost modules ($cfg): $(cd "$ref" && echo *.ko)"
