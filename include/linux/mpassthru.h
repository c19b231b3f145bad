/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mpassthru for other kernel code: vhost-net takes an mpassthru file as a
 * backend through the socket behind it.
 */
#ifndef _LINUX_MPASSTHRU_H
#define _LINUX_MPASSTHRU_H

#include <linux/err.h>
#include <linux/types.h>
#include <uapi/linux/mpassthru.h>

struct file;
struct iovec;
struct socket;

/**
 * struct mpassthru_rx_done - a posted receive buffer that is the guest's again
 * @head: the descriptor given to mpassthru_rx_post()
 * @len: bytes written, virtio-net header included; 0 when given back unfilled
 */
struct mpassthru_rx_done {
	u16 head;
	u32 len;
};

#if IS_ENABLED(CONFIG_MPASSTHRU)
struct socket *mpassthru_get_socket(struct file *file);
bool mpassthru_rx_zerocopy(struct socket *sock);
int mpassthru_rx_post(struct socket *sock, const struct iovec *iov,
		      unsigned int niov, u16 head, size_t hdr_len);
void mpassthru_rx_kick(struct socket *sock);
int mpassthru_rx_reap(struct socket *sock, struct mpassthru_rx_done *done,
		      unsigned int max);
void mpassthru_rx_stop(struct socket *sock);
#else
static inline struct socket *mpassthru_get_socket(struct file *file)
{
	return ERR_PTR(-EINVAL);
}

static inline bool mpassthru_rx_zerocopy(struct socket *sock)
{
	return false;
}

static inline int mpassthru_rx_post(struct socket *sock,
				    const struct iovec *iov, unsigned int niov,
				    u16 head, size_t hdr_len)
{
	return -EOPNOTSUPP;
}

static inline void mpassthru_rx_kick(struct socket *sock)
{
}

static inline int mpassthru_rx_reap(struct socket *sock,
				    struct mpassthru_rx_done *done,
				    unsigned int max)
{
	return 0;
}

static inline void mpassthru_rx_stop(struct socket *sock)
{
}
#endif

#endif /* _LINUX_MPASSTHRU_H */
