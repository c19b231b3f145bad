/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mpassthru for other kernel code: vhost-net takes an mpassthru file as a
 * backend through the socket behind it.
 */
#ifndef _LINUX_MPASSTHRU_H
#define _LINUX_MPASSTHRU_H

#include <linux/err.h>
#include <uapi/linux/mpassthru.h>

struct file;
struct socket;

#if IS_ENABLED(CONFIG_MPASSTHRU)
struct socket *mpassthru_get_socket(struct file *file);
#else
static inline struct socket *mpassthru_get_socket(struct file *file)
{
	return ERR_PTR(-EINVAL);
}
#endif

#endif /* _LINUX_MPASSTHRU_H */
