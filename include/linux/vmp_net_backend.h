/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Backends of vhost-mp's vhost-net: the kinds of file VHOST_NET_SET_BACKEND
 * takes, and the protocol through which a backend receives straight into
 * buffers the guest posted ahead of the frames.
 *
 * vhost-net knows tap, macvtap and AF_PACKET sockets itself.  Any other
 * backend registers a struct vmp_net_backend_type with
 * vmp_net_register_backend(); vhost-net then finds it by probing the file,
 * without a symbol of the backend's.
 */
#ifndef _LINUX_VMP_NET_BACKEND_H
#define _LINUX_VMP_NET_BACKEND_H

#include <linux/bits.h>
#include <linux/list.h>
#include <linux/types.h>

struct file;
struct iovec;
struct module;
struct ptr_ring;
struct socket;

/*
 * The backend accepts a struct tun_msg_ctl of type TUN_MSG_UBUF in
 * msg_control and completes zero-copy sends through its ubuf_info.
 */
#define VMP_BACKEND_UBUF	BIT(0)
/*
 * The backend accepts a struct tun_msg_ctl of type TUN_MSG_PTR: an array
 * of xdp_buffs, each a page fragment that starts with a struct
 * tun_xdp_hdr, which it turns into skbs without another copy.
 */
#define VMP_BACKEND_XDP		BIT(1)

/**
 * struct vmp_rx_done - a posted buffer that is the guest's again
 * @head: the descriptor given to @post
 * @len: bytes written, virtio-net header included; 0 when given back unfilled
 */
struct vmp_rx_done {
	u16 head;
	u32 len;
};

/**
 * struct vmp_rx_post_ops - receive into buffers the guest posted ahead
 * @claim: make @owner (one receive ring of @ring_size entries of one
 *	device) the only user of the protocol on @sock, from backend attach
 *	to @release; -EBUSY when another owner holds it, any other error
 *	when this ring cannot be served in place (receive then copies).
 *	Touches no guest memory.
 * @release: end @owner's claim; a @stop must have ended any posting.
 *	Buffers still lent (a frame the stack holds on to) come back later
 *	and are unpinned, never reported.
 * @usable: whether posting can pay off now (bound, the driver takes lent
 *	buffers).  Any context.
 * @post: lend one guest buffer, @niov user addresses of the owner's mm;
 *	@head comes back once in a @reap.  0, or -ENOSPC (enough posted),
 *	-ENOMEM (try again later), -ENXIO/-ENODEV (not bound), or an error
 *	that says this guest cannot be served in place (-EMSGSIZE: buffers
 *	too small; -EFAULT: cannot be pinned; -EOPNOTSUPP).
 * @kick: after one or more @post calls, let the device take them
 * @reap: up to @max buffers the backend is done with, filled or not
 * @stop: end a posting period: take back every buffer lent to the device
 *	and wait (bounded) for those the stack still holds.  After it, @reap
 *	reports every buffer posted before, once, and then nothing more of
 *	that period; host-memory frames stay queued for the copy path.
 *
 * All but @usable are called by the owner with its ring's mutex held;
 * @post, @kick and @reap only from the owner's worker, in the owner's
 * address space.
 */
struct vmp_rx_post_ops {
	int (*claim)(struct socket *sock, const void *owner,
		     unsigned int ring_size);
	void (*release)(struct socket *sock, const void *owner);
	bool (*usable)(struct socket *sock);
	int (*post)(struct socket *sock, const struct iovec *iov,
		    unsigned int niov, u16 head, size_t hdr_len);
	void (*kick)(struct socket *sock);
	int (*reap)(struct socket *sock, struct vmp_rx_done *done,
		    unsigned int max);
	void (*stop)(struct socket *sock);
};

/**
 * struct vmp_net_backend_type - one kind of file vhost-net can use
 * @name: for messages
 * @owner: module that provides it; held while vhost-net probes a file
 * @get_socket: the socket behind @file, or ERR_PTR(-EINVAL) or
 *	ERR_PTR(-ENOTSOCK) when @file is not of this kind (any other error:
 *	it is, but cannot be used).  The socket lives as long as @file.
 * @get_ring: optional; the ptr_ring the backend queues received packets
 *	on, from which vhost-net may take several at once and hand each back
 *	to recvmsg() in msg_control (as tun and macvtap allow)
 * @flags: VMP_BACKEND_*
 * @rx_post: optional; receive into posted guest buffers
 * @node: in vhost-net's list of registered types
 */
struct vmp_net_backend_type {
	const char *name;
	struct module *owner;
	struct socket *(*get_socket)(struct file *file);
	struct ptr_ring *(*get_ring)(struct file *file);
	unsigned int flags;
	const struct vmp_rx_post_ops *rx_post;
	struct list_head node;
};

#if IS_REACHABLE(CONFIG_VHOST_NET)
int vmp_net_register_backend(struct vmp_net_backend_type *type);
void vmp_net_unregister_backend(struct vmp_net_backend_type *type);
#else
static inline int vmp_net_register_backend(struct vmp_net_backend_type *type)
{
	return 0;
}

static inline void
vmp_net_unregister_backend(struct vmp_net_backend_type *type)
{
}
#endif

#endif /* _LINUX_VMP_NET_BACKEND_H */
