#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Development aid: run a script from the host's file system (through the
# read-only 9p root) inside the VM, e.g.
#   tools/vm/run-vm.sh -a /work/main/my-test.sh hostscript
script=${1:?usage: suite-hostscript.sh /host/path/to/script}
exec sh "/hostroot$script"
