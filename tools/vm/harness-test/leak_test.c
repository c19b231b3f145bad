// SPDX-License-Identifier: GPL-2.0
/*
 * Harness self-test: a module that leaks one allocation on load, so the
 * test runner can prove that a kmemleak report fails a VM run.  Never part
 * of the normal suite.
 */
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/string.h>

static int __init leak_test_init(void)
{
	char *lost = kmalloc(256, GFP_KERNEL);

	if (!lost)
		return -ENOMEM;
	strscpy(lost, "vhost-mp harness self-test: this leak is intentional", 256);
	/* The only pointer to it dies with this stack frame. */
	return 0;
}

static void __exit leak_test_exit(void)
{
}

module_init(leak_test_init);
module_exit(leak_test_exit);
MODULE_DESCRIPTION("vhost-mp harness self-test: leak on load");
MODULE_LICENSE("GPL");
