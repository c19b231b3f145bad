// SPDX-License-Identifier: GPL-2.0
/*
 * Harness self-test: a module whose only job is to WARN when loaded, so the
 * test runner can prove that a kernel warning fails a VM run.  Never part of
 * the normal suite.
 */
#include <linux/bug.h>
#include <linux/module.h>

static int __init warn_test_init(void)
{
	WARN(1, "vhost-mp harness self-test: this warning is intentional\n");
	return 0;
}

static void __exit warn_test_exit(void)
{
}

module_init(warn_test_init);
module_exit(warn_test_exit);
MODULE_DESCRIPTION("vhost-mp harness self-test: WARN on load");
MODULE_LICENSE("GPL");
