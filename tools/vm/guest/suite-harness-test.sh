#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Harness self-test: load a module that WARNs and one that leaks.  The
# suite itself passes; the runner must still fail the run because of the
# kernel log (the WARN) and kmemleak's report (the leak).
. /selftests/vm_lib.sh

group "harness self-test"
check "warn_test.ko loaded" insmod /lib/harness/warn_test.ko
check "leak_test.ko loaded" insmod /lib/harness/leak_test.ko
exit $FAILED
