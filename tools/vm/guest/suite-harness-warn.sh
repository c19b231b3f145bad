#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Harness self-test: load a module that WARNs.  The suite itself passes;
# the runner must still fail the run because of the kernel log.
. /selftests/vm_lib.sh

group "harness self-test"
check "warn_test.ko loaded" insmod /lib/harness/warn_test.ko
exit $FAILED
