// SPDX-License-Identifier: GPL-2.0-only
/*
 * vhost-mp net: /dev/vhost-net, a virtio-net datapath in the host kernel.
 *
 * Each open file is one queue pair: ring 0 receives (socket to guest),
 * ring 1 transmits (guest to socket).  The backend socket comes from a tap
 * or macvtap file, an AF_PACKET raw socket, or a file of any kind that a
 * module registered with vmp_net_register_backend() (mpassthru does).
 *
 * Transmit to a tap or macvtap: packets that fit in a page are copied into
 * page fragments and handed over in batches (one sendmsg() for up to
 * VMP_NET_BATCH packets), which the backend turns into skbs in place.
 *
 * Zero-copy transmit: larger packets are handed to the backend with a
 * ubuf_info whose completion marks the descriptor done; those descriptors
 * go back to the guest in submission order once the backend lets go of the
 * pages.  Only a bounded number may be outstanding, and beyond that, for
 * small packets, or when the backend keeps copying anyway, packets are
 * copied and returned at once.  A slow or stuck device therefore holds at
 * most a quarter of the ring, never the whole guest.
 *
 * Posted receive: a backend that registers struct vmp_rx_post_ops takes
 * the guest's receive buffers ahead of the frames and has its device write
 * into them.  The RX ring claims the backend at attach (one ring of one
 * device per backend); buffers go out only from the owner's worker and
 * come back there.  Whenever posting stops being right (dirty logging,
 * a memory table or feature change, a refused buffer, an unbound device,
 * detach), every buffer is taken back, on the worker, before the copy
 * path runs again.
 */
#define pr_fmt(fmt) "vhost-mp-net: " fmt

#include <linux/bitmap.h>
#include <linux/debugfs.h>
#include <linux/file.h>
#include <linux/if_tap.h>
#include <linux/if_tun.h>
#include <linux/if_vlan.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/net.h>
#include <linux/nospec.h>
#include <linux/ptr_ring.h>
#include <linux/sched/signal.h>
#include <linux/seq_file.h>
#include <linux/skb_array.h>
#include <linux/skbuff.h>
#include <linux/slab.h>
#include <linux/socket.h>
#include <linux/timekeeping.h>
#include <linux/vhost.h>
#include <linux/virtio_net.h>
#include <linux/vmp_net_backend.h>
#include <net/xdp.h>
#include <net/sock.h>

#include "vhost.h"

static bool zcopy_tx = true;
module_param(zcopy_tx, bool, 0644);
MODULE_PARM_DESC(zcopy_tx,
		 "Zero-copy transmit for large packets (default on; read when a backend is attached)");

static bool zcopy_rx = true;
module_param(zcopy_rx, bool, 0644);
MODULE_PARM_DESC(zcopy_rx,
		 "Post receive buffers to backends that receive in place (mpassthru; default on; read when a backend is attached)");

#define VMP_NET_FEATURES				\
	(VMP_CORE_FEATURES |				\
	 BIT_ULL(VHOST_NET_F_VIRTIO_NET_HDR) |		\
	 BIT_ULL(VIRTIO_NET_F_MRG_RXBUF))

/* Per run of a handler, so one busy ring cannot starve the other. */
#define VMP_NET_PKT_WEIGHT	256
#define VMP_NET_BYTE_WEIGHT	0x80000

/* Smaller packets are cheaper to copy than to pin. */
#define VMP_NET_ZC_MIN_LEN	256
#define VMP_NET_ZC_MAX_SLOTS	256
/* Every window of zero-copy sends, check how many got copied anyway... */
#define VMP_NET_ZC_WINDOW	256
/* ...and if it was most of them, copy this many packets before retrying. */
#define VMP_NET_ZC_BACKOFF	4096
/* Copied packets handed to a tap in one sendmsg(). */
#define VMP_NET_BATCH		64
/* Room before a batched frame: the tun_xdp_hdr, and what XDP may use. */
#define VMP_NET_XDP_HEADROOM	XDP_PACKET_HEADROOM

enum {
	VMP_NET_RX = 0,
	VMP_NET_TX = 1,
	VMP_NET_NVQ = 2,
};

/* Handler outcomes besides 0 (progress) and negative (ring failed). */
enum {
	VMP_NET_STOP = 1,	/* wait for the socket or the guest */
	VMP_NET_SHORT,		/* RX: not enough guest buffers yet */
};

enum {
	VMP_ZC_FREE,
	VMP_ZC_INFLIGHT,
	VMP_ZC_DONE,
};

struct vmp_net;
struct vmp_zc;

/**
 * struct vmp_zc_slot - one zero-copy transmit in flight
 * @ubuf: handed to the backend; its completion lands in vmp_zc_complete()
 * @zc: owning table
 * @head: descriptor to give back once done
 * @state: VMP_ZC_*; written by the completion, read by the worker
 */
struct vmp_zc_slot {
	struct ubuf_info ubuf;
	struct vmp_zc *zc;
	u16 head;
	u8 state;
};

/**
 * struct vmp_zc - zero-copy state of one transmit ring and backend
 * @net: device, for statistics and to queue the reaper
 * @work: work that reaps completed slots
 * @inflight: slots whose completion has not run yet
 * @copied: completions in this window where the backend copied after all
 * @drained: woken when @inflight drops to zero
 * @head: next slot to fill (vq mutex)
 * @tail: oldest slot not yet given back (vq mutex)
 * @cap: number of slots, a power of two
 * @slot: FIFO of slots, indexed modulo @cap
 *
 * Lives from backend attach to detach.  Detach waits for @inflight to drop
 * to zero and for an RCU grace period (completions run under
 * rcu_read_lock()) before freeing it.
 */
struct vmp_zc {
	struct vmp_net *net;
	struct vmp_work *work;
	atomic_t inflight;
	atomic_t copied;
	wait_queue_head_t drained;
	u32 head;
	u32 tail;
	u32 cap;
	struct vmp_zc_slot slot[] __counted_by(cap);
};

/**
 * struct vmp_net_backend - the socket a ring is attached to
 * @file: our reference on the backend file
 * @sock: socket behind @file
 * @type: which kind of backend it is; we hold a reference on its module
 */
struct vmp_net_backend {
	struct file *file;
	struct socket *sock;
	const struct vmp_net_backend_type *type;
};

/**
 * struct vmp_net_rx_post - posted receive of the RX ring
 * @ops: the backend's protocol
 * @claimed: this ring holds the backend's claim (from attach to detach)
 * @posting: buffers may be out with the backend
 * @num: ring size the tables below were made for
 * @inflight: one bit per descriptor the backend holds
 * @nr_inflight: bits set in @inflight
 * @head_seq: for each descriptor, @seq when it was posted
 * @seq: buffers posted so far, less those the ring was rewound by
 *
 * Under the RX ring's mutex.
 */
struct vmp_net_rx_post {
	const struct vmp_rx_post_ops *ops;
	bool claimed;
	bool posting;
	unsigned int num;
	unsigned long *inflight;
	unsigned int nr_inflight;
	u32 *head_seq;
	u32 seq;
};

/**
 * struct vmp_net_batch - copied packets waiting for one sendmsg()
 * @xdp: one per packet, VMP_NET_BATCH of them (TX ring only)
 * @n: packets in @xdp
 * @bytes: their length, for statistics
 * @frags: where their buffers come from
 *
 * Filled and flushed by the worker within one run of the TX handler, under
 * the ring's mutex: it is always empty when the handler returns.
 */
struct vmp_net_batch {
	struct xdp_buff *xdp;
	unsigned int n;
	size_t bytes;
	struct page_frag_cache frags;
};

/**
 * struct vmp_net_rxq - received packets taken from the backend in one go
 * @ring: the backend's queue, or NULL to receive one packet at a time
 * @ptr: packets taken and not yet received, from @head to @tail
 * @head: next one to receive
 * @tail: end of those taken
 *
 * RX ring only, under its mutex.  What is left when the backend goes away
 * is put back on its queue.
 */
struct vmp_net_rxq {
	struct ptr_ring *ring;
	void *ptr[VMP_NET_BATCH];
	unsigned int head;
	unsigned int tail;
};

/**
 * struct vmp_net_vq - a ring plus its backend
 * @vq: core ring
 * @net: device
 * @sock_poll: RX: socket readable; TX: socket writable again
 * @be: current backend; vq.backend points here when attached
 * @zc: zero-copy table, TX only and only if the backend supports it
 * @batch: TX only: copied packets not yet handed to the backend
 * @rxq: RX only: packets taken from the backend's queue
 * @guest_hlen: virtio-net header vhost writes (RX) or strips (TX) itself
 * @sock_hlen: header the backend reads and writes with the data
 * @zc_window: zero-copy sends in the current window
 * @zc_backoff: packets still to copy before zero-copy is tried again
 * @heads: RX used entries of the packet being received
 * @rx_copy_only: receive by copy: the backend refused a posted buffer, or
 *	zcopy_rx was off when it was attached
 * @rx_paused: an owner ioctl is changing what posted buffers mean
 * @rxp: posted receive (RX ring only)
 */
struct vmp_net_vq {
	struct vmp_vq vq;
	struct vmp_net *net;
	struct vmp_poll sock_poll;
	struct vmp_net_backend be;
	struct vmp_zc *zc;
	struct vmp_net_batch batch;
	struct vmp_net_rxq rxq;
	size_t guest_hlen;
	size_t sock_hlen;
	u32 zc_window;
	u32 zc_backoff;
	struct vring_used_elem *heads;
	bool rx_copy_only;
	bool rx_paused;
	struct vmp_net_rx_post rxp;
};

/* Written under the vq mutex of their direction, read without locks. */
struct vmp_net_stats {
	u64 tx_packets;
	u64 tx_bytes;
	u64 tx_zcopy_packets;
	u64 tx_zcopy_bytes;
	u64 tx_copy_packets;
	u64 tx_dropped;
	u64 rx_packets;
	u64 rx_bytes;
	u64 rx_dropped;
	u64 rx_post_refused;
	u64 rx_post_stops;
	u64 rx_post_lost;
	u64 rx_post_stray;
};

struct vmp_net {
	struct vmp_dev dev;
	struct vmp_net_vq vqs[VMP_NET_NVQ];
	struct vmp_vq *vq_ptrs[VMP_NET_NVQ];
	struct vmp_net_stats stats;
	/* Ends posted receive on the worker, for an owner ioctl. */
	struct vmp_work rx_leave;
	/* Zero-copy sends the backend ended up copying (any context). */
	atomic64_t zc_copied;
	struct dentry *dbg;
};

/* Single writer per counter; readers may see a slightly stale value. */
static inline void vmp_stat_add(u64 *ctr, u64 v)
{
	WRITE_ONCE(*ctr, *ctr + v);
}

static struct dentry *vmp_net_dbg_root;
static atomic_t vmp_net_dbg_seq = ATOMIC_INIT(0);

/* ---- backends ---------------------------------------------------------- */

static struct socket *vmp_packet_socket(struct file *file)
{
	struct socket *sock = sock_from_file(file);

	if (!sock || sock->sk->sk_type != SOCK_RAW)
		return ERR_PTR(-ENOTSOCK);
	if (sock->sk->sk_family != AF_PACKET)
		return ERR_PTR(-EPFNOSUPPORT);
	return sock;
}

/* The kinds vhost-net knows itself, tried first, in order. */
static const struct vmp_net_backend_type vmp_net_builtin[] = {
	{ .name = "tun", .get_socket = tun_get_socket,
	  .get_ring = tun_get_tx_ring,
	  .flags = VMP_BACKEND_UBUF | VMP_BACKEND_XDP },
	{ .name = "macvtap", .get_socket = tap_get_socket,
	  .get_ring = tap_get_ptr_ring,
	  .flags = VMP_BACKEND_UBUF | VMP_BACKEND_XDP },
	{ .name = "packet", .get_socket = vmp_packet_socket },
};

/* Kinds other modules registered, tried after those. */
static LIST_HEAD(vmp_net_types);
static DEFINE_MUTEX(vmp_net_types_lock);

/**
 * vmp_net_register_backend - let vhost-net take files of another kind
 * @type: how to recognise and use them; lives until unregistered
 *
 * Return: 0, or -EINVAL without a get_socket or with an incomplete
 * rx_post.
 */
int vmp_net_register_backend(struct vmp_net_backend_type *type)
{
	const struct vmp_rx_post_ops *rp = type->rx_post;

	if (!type->get_socket)
		return -EINVAL;
	if (rp && (!rp->claim || !rp->release || !rp->usable || !rp->post ||
		   !rp->kick || !rp->reap || !rp->stop))
		return -EINVAL;
	mutex_lock(&vmp_net_types_lock);
	list_add_tail(&type->node, &vmp_net_types);
	mutex_unlock(&vmp_net_types_lock);
	return 0;
}
EXPORT_SYMBOL_GPL(vmp_net_register_backend);

/**
 * vmp_net_unregister_backend - undo vmp_net_register_backend()
 * @type: as registered
 *
 * A ring attached to a file of this kind holds a reference on
 * @type->owner, so this only runs once none is.
 */
void vmp_net_unregister_backend(struct vmp_net_backend_type *type)
{
	mutex_lock(&vmp_net_types_lock);
	list_del(&type->node);
	mutex_unlock(&vmp_net_types_lock);
}
EXPORT_SYMBOL_GPL(vmp_net_unregister_backend);

/*
 * Is @file of kind @type?  0 and @be filled in, -ENOTSOCK for "not of
 * this kind", or the error of a file of this kind that cannot be used.
 */
static int vmp_net_probe(const struct vmp_net_backend_type *type,
			 struct file *file, struct vmp_net_backend *be)
{
	struct socket *sock = type->get_socket(file);
	int r;

	if (IS_ERR(sock)) {
		r = PTR_ERR(sock);
		return r == -EINVAL ? -ENOTSOCK : r;
	}
	if (!try_module_get(type->owner))
		return -ENOTSOCK;
	be->file = file;
	be->sock = sock;
	be->type = type;
	return 0;
}

static int vmp_net_probe_registered(struct file *file,
				    struct vmp_net_backend *be)
{
	const struct vmp_net_backend_type *type;
	int r = -ENOTSOCK;

	mutex_lock(&vmp_net_types_lock);
	list_for_each_entry(type, &vmp_net_types, node) {
		r = vmp_net_probe(type, file, be);
		if (r != -ENOTSOCK)
			break;
	}
	mutex_unlock(&vmp_net_types_lock);
	return r;
}

static int vmp_net_backend_get(int fd, struct vmp_net_backend *be)
{
	struct file *file = fget(fd);
	unsigned int i;
	int r = -ENOTSOCK;

	if (!file)
		return -EBADF;
	for (i = 0; i < ARRAY_SIZE(vmp_net_builtin) && r == -ENOTSOCK; i++)
		r = vmp_net_probe(&vmp_net_builtin[i], file, be);
	if (r == -ENOTSOCK)
		r = vmp_net_probe_registered(file, be);
	if (r)
		fput(file);
	return r;
}

static void vmp_net_backend_put(struct vmp_net_backend *be)
{
	if (!be->file)
		return;
	module_put(be->type->owner);
	fput(be->file);
}

/* ---- zero-copy transmit ------------------------------------------------ */

/*
 * Runs when the last skb using the guest pages is freed: any context,
 * often softirq.  Only marks the slot and queues the reaper.
 */
static void vmp_zc_complete(struct sk_buff *skb, struct ubuf_info *ubuf,
			    bool success)
{
	struct vmp_zc_slot *slot = container_of(ubuf, struct vmp_zc_slot, ubuf);
	struct vmp_zc *zc = slot->zc;

	/* Clones share the ubuf; only the last reference completes it. */
	if (!refcount_dec_and_test(&ubuf->refcnt))
		return;

	rcu_read_lock();
	if (!success) {
		atomic_inc(&zc->copied);
		atomic64_inc(&zc->net->zc_copied);
	}
	/* Pairs with the acquire in vmp_zc_reap(): state after counters. */
	smp_store_release(&slot->state, VMP_ZC_DONE);
	vmp_work_queue(&zc->net->dev, zc->work);
	/* Last access to @zc: once this hits zero, detach may free it
	 * (after the grace period that our read lock holds off).
	 */
	if (atomic_dec_and_test(&zc->inflight))
		wake_up(&zc->drained);
	rcu_read_unlock();
}

/*
 * link_skb is only used when a ubuf is appended to a stream socket's skb
 * (MSG_ZEROCOPY on TCP); our ubufs only reach tap-like backends, which
 * attach them with skb_zcopy_init(), so it is left out.
 */
static const struct ubuf_info_ops vmp_zc_ops = {
	.complete = vmp_zc_complete,
};

static struct vmp_zc *vmp_zc_alloc(struct vmp_net_vq *nvq,
				   const struct vmp_net_backend *be)
{
	u32 cap = clamp(nvq->vq.num / 4, 1U, (u32)VMP_NET_ZC_MAX_SLOTS);
	struct vmp_zc *zc;
	u32 i;

	if (!zcopy_tx || nvq != &nvq->net->vqs[VMP_NET_TX] ||
	    !(be->type->flags & VMP_BACKEND_UBUF) ||
	    !sock_flag(be->sock->sk, SOCK_ZEROCOPY))
		return NULL;
	cap = rounddown_pow_of_two(cap);
	/* Zero-copy is an optimisation; without memory we just copy. */
	zc = kzalloc(struct_size(zc, slot, cap), GFP_KERNEL_ACCOUNT);
	if (!zc)
		return NULL;
	zc->cap = cap;
	zc->net = nvq->net;
	zc->work = &nvq->vq.work;
	atomic_set(&zc->inflight, 0);
	atomic_set(&zc->copied, 0);
	init_waitqueue_head(&zc->drained);
	for (i = 0; i < cap; i++)
		zc->slot[i].zc = zc;
	return zc;
}

/* Turn zero-copy off for a while if the backend keeps copying anyway. */
static void vmp_zc_account(struct vmp_net_vq *nvq)
{
	if (++nvq->zc_window < VMP_NET_ZC_WINDOW)
		return;
	nvq->zc_window = 0;
	if (atomic_xchg(&nvq->zc->copied, 0) > VMP_NET_ZC_WINDOW / 2)
		nvq->zc_backoff = VMP_NET_ZC_BACKOFF;
}

/* A slot for a zero-copy send of @len bytes, or NULL to copy instead. */
static struct vmp_zc_slot *vmp_zc_get(struct vmp_net_vq *nvq, u16 head,
				      size_t len)
{
	struct vmp_zc *zc = nvq->zc;
	struct vmp_zc_slot *slot;

	if (!zc || len < VMP_NET_ZC_MIN_LEN)
		return NULL;
	if (nvq->zc_backoff) {
		nvq->zc_backoff--;
		return NULL;
	}
	/* Completions lag behind: copy rather than make the guest wait. */
	if (zc->head - zc->tail >= zc->cap)
		return NULL;

	slot = &zc->slot[zc->head % zc->cap];
	slot->head = head;
	WRITE_ONCE(slot->state, VMP_ZC_INFLIGHT);
	slot->ubuf.ops = &vmp_zc_ops;
	slot->ubuf.flags = SKBFL_ZEROCOPY_FRAG;
	refcount_set(&slot->ubuf.refcnt, 1);
	atomic_inc(&zc->inflight);
	zc->head++;
	vmp_zc_account(nvq);
	return slot;
}

/*
 * sendmsg() failed.  If the backend never took the ubuf (it completes it
 * synchronously when it does, even on error), take the slot back and
 * report true: the packet is then handled like a copied one.
 */
static bool vmp_zc_unget(struct vmp_zc *zc, struct vmp_zc_slot *slot)
{
	/* A synchronous completion inside sendmsg() already ran. */
	if (smp_load_acquire(&slot->state) != VMP_ZC_INFLIGHT)
		return false;
	WRITE_ONCE(slot->state, VMP_ZC_FREE);
	zc->head--;
	/* Nobody waits on @drained while the ring is attached. */
	atomic_dec(&zc->inflight);
	return true;
}

/* Give completed slots back to the guest, oldest first, in order. */
static void vmp_zc_reap(struct vmp_vq *vq, struct vmp_zc *zc)
{
	while (zc->tail != zc->head) {
		struct vmp_zc_slot *slot = &zc->slot[zc->tail % zc->cap];
		struct vring_used_elem e;

		/* Pairs with the release in vmp_zc_complete(). */
		if (smp_load_acquire(&slot->state) != VMP_ZC_DONE)
			break;
		e = vmp_used_elem(slot->head, 0);
		if (vmp_vq_add_used(vq, &e, 1))
			break;
		WRITE_ONCE(slot->state, VMP_ZC_FREE);
		zc->tail++;
	}
}

/*
 * Wait until the backend has let go of every zero-copy buffer of a
 * detached ring, then free the table.  With @give_back (ioctl context of
 * the owner) the descriptors are also returned to the guest.
 */
static void vmp_zc_drain(struct vmp_net_vq *nvq, struct vmp_zc *zc,
			 bool give_back)
{
	struct vmp_vq *vq = &nvq->vq;

	wait_event(zc->drained, !atomic_read(&zc->inflight));
	/* A completion may still be between its last use and unlock. */
	synchronize_rcu();
	if (give_back) {
		mutex_lock(&vq->mutex);
		vmp_zc_reap(vq, zc);
		vmp_vq_publish(vq);
		mutex_unlock(&vq->mutex);
	}
	kfree(zc);
}

/* ---- busy polling ------------------------------------------------------ */

static u64 vmp_net_busy_deadline(struct vmp_vq *vq)
{
	if (!vq->busyloop_us)
		return 0;
	return ktime_get_ns() + (u64)vq->busyloop_us * NSEC_PER_USEC;
}

/* Keep spinning only while nothing else wants this CPU or the worker. */
static bool vmp_net_busy_more(struct vmp_vq *vq, u64 deadline)
{
	return deadline && ktime_get_ns() < deadline && !need_resched() &&
	       !signal_pending(current) && !vmp_dev_work_pending(vq->dev);
}

/* ---- transmit ---------------------------------------------------------- */

static bool vmp_net_tx_busy_wait(struct vmp_vq *vq)
{
	u64 deadline = vmp_net_busy_deadline(vq);

	/* What is done goes to the guest now, not when polling ends. */
	if (deadline)
		vmp_vq_publish(vq);
	while (vmp_net_busy_more(vq, deadline)) {
		if (!vmp_vq_avail_empty(vq))
			return true;
		cpu_relax();
	}
	return false;
}

static bool vmp_net_tx_full(int err)
{
	return err == -EAGAIN || err == -ENOMEM || err == -ENOBUFS;
}

static void vmp_net_tx_account(struct vmp_net *n, size_t len, int err,
			       bool zcopy)
{
	if (err < 0) {
		vmp_stat_add(&n->stats.tx_dropped, 1);
		return;
	}
	vmp_stat_add(&n->stats.tx_packets, 1);
	vmp_stat_add(&n->stats.tx_bytes, len);
	if (zcopy) {
		vmp_stat_add(&n->stats.tx_zcopy_packets, 1);
		vmp_stat_add(&n->stats.tx_zcopy_bytes, len);
	} else {
		vmp_stat_add(&n->stats.tx_copy_packets, 1);
	}
}

/* ---- batched copies ---------------------------------------------------- */

static unsigned int vmp_net_batch_buflen(size_t frame)
{
	return SKB_DATA_ALIGN(VMP_NET_XDP_HEADROOM + frame) +
	       SKB_DATA_ALIGN(sizeof(struct skb_shared_info));
}

/*
 * Can a packet of @len bytes (backend header included) join the batch?
 * Batched packets bypass the socket's send buffer accounting, so only
 * when the owner left it unlimited (QEMU's default, unless sndbuf=).
 */
static bool vmp_net_batchable(const struct vmp_net_vq *nvq, size_t len)
{
	return nvq->batch.xdp &&
	       (nvq->be.type->flags & VMP_BACKEND_XDP) &&
	       READ_ONCE(nvq->be.sock->sk->sk_sndbuf) == INT_MAX &&
	       len >= nvq->sock_hlen &&
	       vmp_net_batch_buflen(len - nvq->sock_hlen) <= PAGE_SIZE;
}

/* Hand the batch to the backend, which consumes every buffer in it. */
static void vmp_net_tx_flush(struct vmp_net_vq *nvq)
{
	struct vmp_net_batch *b = &nvq->batch;
	struct tun_msg_ctl ctl = {
		.type = TUN_MSG_PTR,
		.num = b->n,
		.ptr = b->xdp,
	};
	struct msghdr msg = {
		.msg_control = &ctl,
		.msg_controllen = sizeof(ctl),
	};
	struct vmp_net_stats *st = &nvq->net->stats;
	struct socket *sock = nvq->be.sock;
	unsigned int i;

	if (!b->n)
		return;
	if (sock->ops->sendmsg(sock, &msg, 0) < 0) {
		/* Refused before it looked at them: the buffers are ours. */
		for (i = 0; i < b->n; i++)
			page_frag_free(b->xdp[i].data_hard_start);
		vmp_stat_add(&st->tx_dropped, b->n);
	} else {
		vmp_stat_add(&st->tx_packets, b->n);
		vmp_stat_add(&st->tx_copy_packets, b->n);
		vmp_stat_add(&st->tx_bytes, b->bytes);
	}
	b->n = 0;
	b->bytes = 0;
}

/*
 * Copy a packet of @len bytes (backend header, then frame) from @from into
 * a page fragment laid out as the backend expects: a struct tun_xdp_hdr
 * with the buffer size and the virtio-net header, then the frame.
 */
static int vmp_net_tx_batch_add(struct vmp_net_vq *nvq, struct iov_iter *from,
				size_t len)
{
	struct vmp_net_batch *b = &nvq->batch;
	size_t frame = len - nvq->sock_hlen;
	unsigned int buflen = vmp_net_batch_buflen(frame);
	size_t ghdr = min(nvq->sock_hlen, sizeof(struct virtio_net_hdr));
	struct tun_xdp_hdr *hdr;
	struct xdp_buff *xdp;
	void *buf;

	buf = page_frag_alloc_align(&b->frags, buflen, GFP_KERNEL,
				    SMP_CACHE_BYTES);
	if (!buf)
		return -ENOMEM;
	hdr = buf;
	hdr->buflen = buflen;
	memset(&hdr->gso, 0, sizeof(hdr->gso));
	if (copy_from_iter(&hdr->gso, ghdr, from) != ghdr)
		goto fault;
	iov_iter_advance(from, nvq->sock_hlen - ghdr);
	if (copy_from_iter(buf + VMP_NET_XDP_HEADROOM, frame, from) != frame)
		goto fault;
	xdp = &b->xdp[b->n++];
	xdp_init_buff(xdp, buflen, NULL);
	xdp_prepare_buff(xdp, buf, VMP_NET_XDP_HEADROOM, frame, true);
	b->bytes += len;
	if (b->n == VMP_NET_BATCH)
		vmp_net_tx_flush(nvq);
	return 0;
fault:
	page_frag_free(buf);
	return -EFAULT;
}

/*
 * Copy a small packet into the batch and give its descriptor back at once.
 * -ENOMEM when there was no memory for it: send it on its own instead.
 */
static int vmp_net_tx_batched(struct vmp_net_vq *nvq,
			      const struct vmp_chain *c, struct iov_iter *from,
			      size_t len)
{
	struct vring_used_elem e = vmp_used_elem(c->head, 0);
	int err = vmp_net_tx_batch_add(nvq, from, len);

	if (err == -ENOMEM)
		return err;
	if (err)
		vmp_stat_add(&nvq->net->stats.tx_dropped, 1);
	return vmp_vq_add_used(&nvq->vq, &e, 1);
}

/* ---- transmit, one packet at a time ------------------------------------ */

/* Send one chain.  0 on progress, VMP_NET_STOP if the socket is full. */
static int vmp_net_tx_one(struct vmp_net_vq *nvq, const struct vmp_chain *c)
{
	struct vmp_vq *vq = &nvq->vq;
	struct socket *sock = nvq->be.sock;
	struct msghdr msg = { .msg_flags = MSG_DONTWAIT };
	struct tun_msg_ctl ctl = { .type = TUN_MSG_UBUF };
	struct vmp_zc_slot *slot;
	struct vring_used_elem e;
	size_t len;
	int err;

	if (c->nr_in) {
		vmp_vq_fail(vq, "TX chain %u has writable buffers", c->head);
		return -EINVAL;
	}
	if (c->out_bytes < nvq->guest_hlen) {
		vmp_vq_fail(vq, "TX packet of %u bytes has no room for its header",
			    c->out_bytes);
		return -EINVAL;
	}
	len = c->out_bytes - nvq->guest_hlen;
	iov_iter_init(&msg.msg_iter, ITER_SOURCE, vq->iov, c->nr_out,
		      c->out_bytes);
	iov_iter_advance(&msg.msg_iter, nvq->guest_hlen);

	if (vmp_net_batchable(nvq, len)) {
		err = vmp_net_tx_batched(nvq, c, &msg.msg_iter, len);
		if (err != -ENOMEM)
			return err;
	}
	/* What goes out on its own must not overtake the batch. */
	vmp_net_tx_flush(nvq);
	slot = vmp_zc_get(nvq, c->head, len);
	if (slot) {
		ctl.ptr = &slot->ubuf;
		msg.msg_control = &ctl;
		msg.msg_controllen = sizeof(ctl);
	}
	err = sock->ops->sendmsg(sock, &msg, len);
	if (slot && err < 0 && vmp_zc_unget(nvq->zc, slot))
		slot = NULL;
	if (!slot && vmp_net_tx_full(err)) {
		/* Retry this chain when the socket drains. */
		vmp_vq_unget(vq, 1);
		vmp_poll_start(&nvq->sock_poll, nvq->be.file);
		return VMP_NET_STOP;
	}
	vmp_net_tx_account(nvq->net, len, err, slot);
	/* A zero-copy descriptor goes back when the backend lets go. */
	if (slot)
		return 0;
	e = vmp_used_elem(c->head, 0);
	return vmp_vq_add_used(vq, &e, 1);
}

/* Sleep only once notifications are on and the ring is still empty. */
static bool vmp_net_tx_idle(struct vmp_vq *vq)
{
	if (vmp_net_tx_busy_wait(vq))
		return false;
	if (!vmp_vq_notify_on(vq))
		return true;
	vmp_vq_notify_off(vq);
	return vq->failed;
}

/* The next chain of a ring that takes no log, or an error after failing it. */
static int vmp_net_next_chain(struct vmp_vq *vq, const char *dir,
			      struct vmp_chain *c)
{
	int r = vmp_vq_get_chain(vq, 0, 0, c);

	if (r == -E2BIG)
		vmp_vq_fail(vq, "%s chain with more than %u segments", dir,
			    VMP_MAX_SEGS);
	return r;
}

static void vmp_net_tx_run(struct vmp_net_vq *nvq)
{
	struct vmp_vq *vq = &nvq->vq;
	unsigned int pkts = 0;
	size_t bytes = 0;
	struct vmp_chain c;
	int r;

	for (;;) {
		r = vmp_net_next_chain(vq, "TX", &c);
		if (r < 0)
			break;
		if (!r) {
			vmp_net_tx_flush(nvq);
			if (vmp_net_tx_idle(vq))
				break;
			continue;
		}
		if (vmp_net_tx_one(nvq, &c))
			break;
		bytes += c.out_bytes;
		if (++pkts >= VMP_NET_PKT_WEIGHT ||
		    bytes >= VMP_NET_BYTE_WEIGHT) {
			vmp_work_queue(vq->dev, &vq->work);
			break;
		}
	}
}

static void vmp_net_handle_tx(struct vmp_vq *vq)
{
	struct vmp_net_vq *nvq = container_of(vq, struct vmp_net_vq, vq);

	mutex_lock(&vq->mutex);
	if (vmp_vq_runnable(vq)) {
		/* Socket space only matters after a full socket stopped us. */
		vmp_poll_stop(&nvq->sock_poll);
		vmp_vq_notify_off(vq);
		if (nvq->zc)
			vmp_zc_reap(vq, nvq->zc);
		vmp_net_tx_run(nvq);
		vmp_net_tx_flush(nvq);
		vmp_vq_publish(vq);
	}
	mutex_unlock(&vq->mutex);
}

/* ---- receive ----------------------------------------------------------- */

/* Length of a packet as tun and macvtap queue it: an skb or an xdp_frame. */
static int vmp_net_ptr_len(void *ptr)
{
	if (tun_is_xdp_frame(ptr))
		return tun_ptr_to_xdp(ptr)->len;
	return __skb_array_len_with_tag(ptr);
}

/* Take up to VMP_NET_BATCH packets off the backend's queue at once. */
static int vmp_net_rxq_peek(struct vmp_net_rxq *q)
{
	if (q->head == q->tail) {
		q->head = 0;
		q->tail = ptr_ring_consume_batched(q->ring, q->ptr,
						   VMP_NET_BATCH);
		if (!q->tail)
			return 0;
	}
	return vmp_net_ptr_len(q->ptr[q->head]);
}

/* The packet recvmsg() must receive (msg_control), or NULL for its own. */
static void *vmp_net_rxq_take(struct vmp_net_vq *nvq)
{
	struct vmp_net_rxq *q = &nvq->rxq;

	if (!q->ring || q->head == q->tail)
		return NULL;
	return q->ptr[q->head++];
}

/* Give packets taken and not received back to the backend's queue. */
static void vmp_net_rxq_put_back(struct vmp_net_rxq *q)
{
	if (q->ring && q->head != q->tail)
		ptr_ring_unconsume(q->ring, q->ptr + q->head, q->tail - q->head,
				   tun_ptr_free);
	q->ring = NULL;
	q->head = 0;
	q->tail = 0;
}

/* Length of the next packet, or 0 if there is none. */
static int vmp_net_peek(struct vmp_net_vq *nvq)
{
	struct socket *sock = nvq->be.sock;
	struct sock *sk = sock->sk;
	struct sk_buff *skb;
	unsigned long flags;
	int len = 0;

	if (nvq->rxq.ring)
		return vmp_net_rxq_peek(&nvq->rxq);
	if (sock->ops->peek_len)
		return sock->ops->peek_len(sock);

	spin_lock_irqsave(&sk->sk_receive_queue.lock, flags);
	skb = skb_peek(&sk->sk_receive_queue);
	if (skb) {
		/* At least one byte, so an empty frame is still consumed. */
		len = max(skb->len, 1U);
		/* A stripped VLAN tag may be put back on the way out. */
		if (skb_vlan_tag_present(skb))
			len += VLAN_HLEN;
	}
	spin_unlock_irqrestore(&sk->sk_receive_queue.lock, flags);
	return len;
}

static int vmp_net_rx_peek(struct vmp_net_vq *nvq)
{
	struct vmp_vq *vq = &nvq->vq;
	u64 deadline;
	int len;

	len = vmp_net_peek(nvq);
	if (len > 0 || !vq->busyloop_us)
		return len;
	/* Packets already received go to the guest before we spin. */
	vmp_vq_publish(vq);
	deadline = vmp_net_busy_deadline(vq);
	while (vmp_net_busy_more(vq, deadline)) {
		len = vmp_net_peek(nvq);
		if (len > 0)
			return len;
		cpu_relax();
	}
	return 0;
}

/* Drop the next packet without touching guest memory. */
static void vmp_net_rx_discard(struct vmp_net_vq *nvq)
{
	struct socket *sock = nvq->be.sock;
	struct msghdr msg = { .msg_control = vmp_net_rxq_take(nvq) };
	u8 sink[sizeof(struct virtio_net_hdr_mrg_rxbuf)];
	struct kvec kv = { .iov_base = sink, .iov_len = sizeof(sink) };

	/* Backends only dequeue for a non-empty buffer; a short one makes
	 * them drop the packet, which is what we want.
	 */
	iov_iter_kvec(&msg.msg_iter, ITER_DEST, &kv, 1, sizeof(sink));
	sock->ops->recvmsg(sock, &msg, sizeof(sink), MSG_DONTWAIT | MSG_TRUNC);
	vmp_stat_add(&nvq->net->stats.rx_dropped, 1);
}

/**
 * struct vmp_rx_pkt - guest buffers gathered for one received packet
 * @nheads: chains taken, in nvq->heads (len = chain capacity)
 * @niov: iovecs in vq->iov
 * @nlog: log ranges in vq->log
 * @room: total capacity
 */
struct vmp_rx_pkt {
	unsigned int nheads;
	unsigned int niov;
	unsigned int nlog;
	size_t room;
};

/*
 * Take enough chains to hold @want bytes: several with mergeable buffers,
 * exactly one otherwise.  Returns 0, VMP_NET_SHORT if the guest has not
 * posted enough yet, VMP_NET_STOP if the packet can never fit (it must be
 * dropped), or a negative errno after failing the ring.
 */
static int vmp_net_rx_gather(struct vmp_net_vq *nvq, size_t want,
			     struct vmp_rx_pkt *p)
{
	struct vmp_vq *vq = &nvq->vq;
	unsigned int max_heads = vmp_vq_has(vq, VIRTIO_NET_F_MRG_RXBUF) ?
				 vq->pending_cap : 1;
	struct vmp_chain c;
	int r;

	memset(p, 0, sizeof(*p));
	while (p->room < want) {
		if (p->nheads == max_heads)
			goto too_big;
		r = vmp_vq_get_chain(vq, p->niov, p->nlog, &c);
		if (r == -E2BIG && p->nheads)
			goto too_big;
		if (r == -E2BIG)
			vmp_vq_fail(vq, "RX chain with more than %u segments",
				    VMP_MAX_SEGS);
		if (r < 0)
			return r;
		if (!r) {
			vmp_vq_unget(vq, p->nheads);
			return VMP_NET_SHORT;
		}
		if (c.nr_out) {
			vmp_vq_fail(vq, "RX chain %u has readable buffers",
				    c.head);
			return -EINVAL;
		}
		nvq->heads[p->nheads++] = vmp_used_elem(c.head, c.in_bytes);
		p->niov += c.nr_in;
		p->nlog += c.nr_log;
		p->room += c.in_bytes;
	}
	return 0;
too_big:
	vmp_vq_unget(vq, p->nheads);
	return VMP_NET_STOP;
}

/*
 * Size each used entry to what was written, give back chains that got
 * nothing, and return how many chains the packet occupies.
 */
static unsigned int vmp_net_rx_trim(struct vmp_net_vq *nvq,
				    const struct vmp_rx_pkt *p, size_t total)
{
	unsigned int i;

	for (i = 0; i < p->nheads && (total || !i); i++) {
		u32 cap = __virtio32_to_cpu(true, nvq->heads[i].len);
		u32 len = min_t(size_t, cap, total);

		nvq->heads[i].len = __cpu_to_virtio32(true, len);
		total -= len;
	}
	vmp_vq_unget(&nvq->vq, p->nheads - i);
	return i;
}

/* Fill in the parts of the virtio-net header that are ours to write. */
static int vmp_net_rx_header(struct vmp_net_vq *nvq, struct iov_iter *hdr,
			     unsigned int nbufs)
{
	static const struct virtio_net_hdr zero = {
		.gso_type = VIRTIO_NET_HDR_GSO_NONE,
	};
	size_t hlen = nvq->guest_hlen ?: nvq->sock_hlen;
	__virtio16 nb = cpu_to_vmp16(nbufs);

	if (!hlen)
		return 0;
	/* Our own header carries no offload; a backend's is left alone. */
	if (nvq->guest_hlen) {
		if (copy_to_iter(&zero, sizeof(zero), hdr) != sizeof(zero))
			return -EFAULT;
	} else {
		iov_iter_advance(hdr, sizeof(zero));
	}
	if (hlen < sizeof(struct virtio_net_hdr_mrg_rxbuf))
		return 0;
	return copy_to_iter(&nb, sizeof(nb), hdr) == sizeof(nb) ? 0 : -EFAULT;
}

static int vmp_net_rx_finish(struct vmp_net_vq *nvq,
			     const struct vmp_rx_pkt *p, struct iov_iter *hdr,
			     size_t total)
{
	struct vmp_vq *vq = &nvq->vq;
	unsigned int nbufs = vmp_net_rx_trim(nvq, p, total);

	if (vmp_net_rx_header(nvq, hdr, nbufs)) {
		vmp_vq_unget(vq, nbufs);
		vmp_vq_fail(vq, "cannot write the RX header");
		return -EFAULT;
	}
	if (vmp_vq_log_write(vq, vq->log, p->nlog, total)) {
		vmp_vq_fail(vq, "cannot write the dirty log");
		return -EFAULT;
	}
	return vmp_vq_add_used(vq, nvq->heads, nbufs);
}

/* Receive one packet of @len bytes (without the backend's header). */
static int vmp_net_rx_one(struct vmp_net_vq *nvq, size_t len)
{
	struct vmp_vq *vq = &nvq->vq;
	struct socket *sock = nvq->be.sock;
	size_t want = nvq->guest_hlen + nvq->sock_hlen + len;
	struct msghdr msg = { };
	struct vmp_rx_pkt p;
	struct iov_iter hdr;
	int r, got;

	r = vmp_net_rx_gather(nvq, want, &p);
	if (r == VMP_NET_STOP) {
		vmp_net_rx_discard(nvq);
		return 0;
	}
	if (r)
		return r;

	iov_iter_init(&msg.msg_iter, ITER_DEST, vq->iov, p.niov, p.room);
	msg.msg_control = vmp_net_rxq_take(nvq);
	hdr = msg.msg_iter;
	iov_iter_advance(&msg.msg_iter, nvq->guest_hlen);
	got = sock->ops->recvmsg(sock, &msg, want - nvq->guest_hlen,
				 MSG_DONTWAIT | MSG_TRUNC);
	if (got < 0 || (size_t)got < nvq->sock_hlen || (msg.msg_flags & MSG_TRUNC)) {
		/* The packet is gone (or never was): reuse the buffers. */
		vmp_vq_unget(vq, p.nheads);
		if (got == -EAGAIN)
			return VMP_NET_STOP;
		vmp_stat_add(&nvq->net->stats.rx_dropped, 1);
		return 0;
	}
	r = vmp_net_rx_finish(nvq, &p, &hdr, nvq->guest_hlen + got);
	if (!r) {
		vmp_stat_add(&nvq->net->stats.rx_packets, 1);
		vmp_stat_add(&nvq->net->stats.rx_bytes, got - nvq->sock_hlen);
	}
	return r;
}

/* ---- RX into posted buffers -------------------------------------------- */

#define VMP_NET_REAP_BATCH	32

static void vmp_net_rx_post_free(struct vmp_net_rx_post *rxp)
{
	bitmap_free(rxp->inflight);
	kvfree(rxp->head_seq);
	memset(rxp, 0, sizeof(*rxp));
}

/*
 * Claim the backend's posted receive for this ring at attach; vq mutex
 * held, ring started.  A backend another ring has claimed is -EBUSY;
 * without memory for the tables, or when the backend cannot serve this
 * ring in place, receive copies.
 */
static int vmp_net_rx_post_attach(struct vmp_net_vq *nvq)
{
	const struct vmp_rx_post_ops *ops = nvq->be.type->rx_post;
	struct vmp_net_rx_post *rxp = &nvq->rxp;
	unsigned int num = nvq->vq.num;
	int r;

	if (!ops || nvq->rx_copy_only)
		return 0;
	rxp->inflight = bitmap_zalloc(num, GFP_KERNEL_ACCOUNT);
	rxp->head_seq = kvcalloc(num, sizeof(u32), GFP_KERNEL_ACCOUNT);
	if (!rxp->inflight || !rxp->head_seq) {
		vmp_net_rx_post_free(rxp);
		nvq->rx_copy_only = true;
		return 0;
	}
	r = ops->claim(nvq->be.sock, nvq, num);
	if (r) {
		vmp_net_rx_post_free(rxp);
		if (r == -EBUSY)
			return r;
		nvq->rx_copy_only = true;
		vmp_stat_add(&nvq->net->stats.rx_post_refused, 1);
		return 0;
	}
	rxp->ops = ops;
	rxp->num = num;
	rxp->claimed = true;
	return 0;
}

/*
 * Posting is right while the backend can take buffers, nothing needs the
 * device's writes logged (LOG_ALL), and no owner ioctl is changing what
 * the buffers mean.
 */
static bool vmp_net_rx_want_posting(struct vmp_net_vq *nvq)
{
	struct vmp_net_rx_post *rxp = &nvq->rxp;

	return rxp->claimed && !nvq->rx_paused && !nvq->rx_copy_only &&
	       !vmp_vq_has(&nvq->vq, VHOST_F_LOG_ALL) &&
	       rxp->ops->usable(nvq->be.sock);
}

/* @head came back: true if it is one we lent and had not got back yet. */
static bool vmp_net_rx_returned(struct vmp_net_rx_post *rxp, u16 head)
{
	if (head >= rxp->num || !__test_and_clear_bit(head, rxp->inflight))
		return false;
	rxp->nr_inflight--;
	return true;
}

/*
 * Buffers the backend gives back unfilled were taken from the avail ring
 * in order.  When they are the last ones taken, the guest gets them back
 * by rewinding the ring, so nothing is lost and GET_VRING_BASE stays
 * exact; otherwise they are returned used, with nothing written.  No
 * descriptor is out twice, so @n never exceeds the ring.
 */
static int vmp_net_rx_give_back(struct vmp_net_vq *nvq, unsigned int n,
				u32 first_seq)
{
	struct vmp_net_rx_post *rxp = &nvq->rxp;
	unsigned int i;

	if (!n)
		return 0;
	if (first_seq == rxp->seq - n) {
		vmp_vq_unget(&nvq->vq, n);
		rxp->seq -= n;
		return 0;
	}
	for (i = 0; i < n; i++)
		nvq->heads[i].len = 0;
	return vmp_vq_add_used_each(&nvq->vq, nvq->heads, n);
}

/*
 * Take back the buffers the backend is done with.  With @write they go
 * to the guest (worker only); without, they are only forgotten.  Returns
 * how many came back, or a negative errno after failing the ring; *@pkts
 * counts the filled ones.
 */
static int vmp_net_rx_reap(struct vmp_net_vq *nvq, bool write,
			   unsigned int *pkts)
{
	struct vring_used_elem used[VMP_NET_REAP_BATCH];
	struct vmp_rx_done done[VMP_NET_REAP_BATCH];
	size_t hlen = nvq->guest_hlen + nvq->sock_hlen;
	struct vmp_net_rx_post *rxp = &nvq->rxp;
	struct vmp_net_stats *st = &nvq->net->stats;
	unsigned int nret = 0, nused, total = 0;
	u32 first_seq = U32_MAX;
	int n, i, r = 0;

	do {
		n = rxp->ops->reap(nvq->be.sock, done, ARRAY_SIZE(done));
		for (i = 0, nused = 0; i < n; i++) {
			u16 head = done[i].head;

			if (!vmp_net_rx_returned(rxp, head)) {
				vmp_stat_add(&st->rx_post_stray, 1);
				continue;
			}
			total++;
			if (!done[i].len) {
				nvq->heads[nret++] = vmp_used_elem(head, 0);
				first_seq = min(first_seq, rxp->head_seq[head]);
				continue;
			}
			used[nused++] = vmp_used_elem(head, done[i].len);
			vmp_stat_add(&st->rx_packets, 1);
			vmp_stat_add(&st->rx_bytes,
				     done[i].len - min_t(size_t, hlen, done[i].len));
		}
		if (write && nused)
			r = vmp_vq_add_used_each(&nvq->vq, used, nused);
		*pkts += nused;
	} while (!r && n == ARRAY_SIZE(done) && *pkts < VMP_NET_PKT_WEIGHT &&
		 nret + VMP_NET_REAP_BATCH <= VMP_MAX_SEGS);
	if (!r && write)
		r = vmp_net_rx_give_back(nvq, nret, first_seq);
	return r ?: total;
}

/* A post failed with @err: stop for now, or receive by copy from now on. */
static void vmp_net_rx_post_refused(struct vmp_net_vq *nvq, int err)
{
	switch (err) {
	case -ENOSPC:	/* enough posted */
	case -ENXIO:	/* not bound: usable() says so next time */
	case -ENODEV:
	case -ENOMEM:	/* retried when a buffer comes back */
		return;
	}
	/* Buffers too small, memory that cannot be pinned, no lent buffers. */
	nvq->rx_copy_only = true;
	vmp_stat_add(&nvq->net->stats.rx_post_refused, 1);
}

/*
 * Give the backend every buffer the guest posted, up to its limit.
 * -ENOMEM when nothing could be posted and nothing is out, so that the
 * copy path serves this round instead of waiting for an event that will
 * not come.
 */
static int vmp_net_rx_post(struct vmp_net_vq *nvq)
{
	size_t hlen = nvq->guest_hlen + nvq->sock_hlen;
	struct vmp_net_rx_post *rxp = &nvq->rxp;
	struct vmp_vq *vq = &nvq->vq;
	unsigned int posted = 0;
	struct vmp_chain c;
	int r;

	for (;;) {
		r = vmp_net_next_chain(vq, "RX", &c);
		if (r < 0)
			return r;
		if (!r) {
			/* Wait for the guest unless it just posted more. */
			if (!vmp_vq_notify_on(vq))
				break;
			vmp_vq_notify_off(vq);
			continue;
		}
		if (c.nr_out) {
			vmp_vq_fail(vq, "RX chain %u has readable buffers",
				    c.head);
			return -EINVAL;
		}
		if (c.head >= rxp->num || test_bit(c.head, rxp->inflight)) {
			vmp_vq_fail(vq, "RX head %u made available again while the device holds it",
				    c.head);
			return -EINVAL;
		}
		r = rxp->ops->post(nvq->be.sock, vq->iov, c.nr_in, c.head,
				   hlen);
		if (r) {
			vmp_vq_unget(vq, 1);
			vmp_net_rx_post_refused(nvq, r);
			break;
		}
		__set_bit(c.head, rxp->inflight);
		rxp->nr_inflight++;
		rxp->head_seq[c.head] = rxp->seq++;
		posted++;
	}
	if (posted)
		rxp->ops->kick(nvq->be.sock);
	return r == -ENOMEM && !rxp->nr_inflight ? -ENOMEM : 0;
}

static int vmp_net_rx_run_posted(struct vmp_net_vq *nvq)
{
	unsigned int pkts = 0;
	u32 seq;
	int r;

	nvq->rxp.posting = true;
	r = vmp_net_rx_reap(nvq, true, &pkts);
	seq = nvq->rxp.seq;
	if (r >= 0)
		r = vmp_net_rx_post(nvq);
	/*
	 * Frames the backend holds until a buffer is posted (copies of what
	 * landed in its own memory) can go into the new ones now, not at
	 * the next event, which may never come while they wait.
	 */
	if (!r && nvq->rxp.seq != seq)
		r = min(vmp_net_rx_reap(nvq, true, &pkts), 0);
	if (!r && pkts >= VMP_NET_PKT_WEIGHT)
		vmp_work_queue(nvq->vq.dev, &nvq->vq.work);
	return r;
}

/*
 * Leave posting mode: the backend takes every buffer back from its device,
 * and each comes back to the guest (@write: worker only) or is forgotten.
 * A buffer the stack still held past the backend's wait never comes back:
 * it is lost to the guest, counted, and unpinned by the backend later.
 */
static void vmp_net_rx_unpost(struct vmp_net_vq *nvq, bool write)
{
	struct vmp_net_rx_post *rxp = &nvq->rxp;
	unsigned int pkts;
	int n;

	rxp->ops->stop(nvq->be.sock);
	do {
		pkts = 0;
		n = vmp_net_rx_reap(nvq, write && !nvq->vq.failed, &pkts);
	} while (n > 0 && rxp->nr_inflight);
	if (rxp->nr_inflight) {
		vmp_stat_add(&nvq->net->stats.rx_post_lost, rxp->nr_inflight);
		bitmap_zero(rxp->inflight, rxp->num);
		rxp->nr_inflight = 0;
	}
	if (write && !nvq->vq.failed)
		vmp_vq_publish(&nvq->vq);
	rxp->posting = false;
	vmp_stat_add(&nvq->net->stats.rx_post_stops, 1);
}

/* Detach: end posting, with nothing written, and the claim. */
static void vmp_net_rx_post_detach(struct vmp_net_vq *nvq)
{
	struct vmp_net_rx_post *rxp = &nvq->rxp;

	if (!rxp->claimed)
		return;
	if (rxp->posting)
		vmp_net_rx_unpost(nvq, false);
	rxp->ops->release(nvq->be.sock, nvq);
	vmp_net_rx_post_free(rxp);
}

/* The worker's side of vmp_net_rx_pause(). */
static void vmp_net_rx_leave_fn(struct vmp_work *work)
{
	struct vmp_net *n = container_of(work, struct vmp_net, rx_leave);
	struct vmp_net_vq *nvq = &n->vqs[VMP_NET_RX];

	mutex_lock(&nvq->vq.mutex);
	if (nvq->rxp.posting)
		vmp_net_rx_unpost(nvq, true);
	mutex_unlock(&nvq->vq.mutex);
}

/*
 * Owner ioctls that change what posted buffers mean (the memory table,
 * the features, the ring's base, the backend) first end posting, on the
 * worker and so in the owner's address space, and wait until it has.
 * No vq mutex held.
 */
static void vmp_net_rx_pause(struct vmp_net *n)
{
	struct vmp_net_vq *nvq = &n->vqs[VMP_NET_RX];
	bool posting;

	mutex_lock(&nvq->vq.mutex);
	nvq->rx_paused = true;
	posting = nvq->rxp.posting;
	mutex_unlock(&nvq->vq.mutex);
	if (posting && vmp_work_queue(&n->dev, &n->rx_leave))
		vmp_dev_flush(&n->dev);
}

/* Posting may start again, if it is still right. */
static void vmp_net_rx_resume(struct vmp_net *n)
{
	struct vmp_net_vq *nvq = &n->vqs[VMP_NET_RX];

	mutex_lock(&nvq->vq.mutex);
	nvq->rx_paused = false;
	mutex_unlock(&nvq->vq.mutex);
	vmp_work_queue(&n->dev, &nvq->vq.work);
}

/* Receive by copy, from the backend's queue into guest buffers. */
static void vmp_net_rx_run_copy(struct vmp_net_vq *nvq)
{
	struct vmp_vq *vq = &nvq->vq;
	unsigned int pkts = 0;
	size_t bytes = 0;
	int len, r;

	for (;;) {
		len = vmp_net_rx_peek(nvq);
		if (len <= 0)
			break;
		r = vmp_net_rx_one(nvq, len);
		if (r == VMP_NET_SHORT) {
			/* Wait for the guest unless it just posted more. */
			if (!vmp_vq_notify_on(vq))
				break;
			vmp_vq_notify_off(vq);
			if (vq->failed)
				break;
			continue;
		}
		if (r)
			break;
		bytes += len;
		if (++pkts >= VMP_NET_PKT_WEIGHT ||
		    bytes >= VMP_NET_BYTE_WEIGHT) {
			vmp_work_queue(vq->dev, &vq->work);
			break;
		}
	}
}

/* Posted receive while it is right; otherwise, once posting is over, copy. */
static void vmp_net_rx_run(struct vmp_net_vq *nvq)
{
	int r;

	if (vmp_net_rx_want_posting(nvq)) {
		r = vmp_net_rx_run_posted(nvq);
		if (r && r != -ENOMEM)
			return;
		if (!r && vmp_net_rx_want_posting(nvq))
			return;
	}
	if (nvq->rxp.posting)
		vmp_net_rx_unpost(nvq, true);
	vmp_net_rx_run_copy(nvq);
}

static void vmp_net_handle_rx(struct vmp_vq *vq)
{
	struct vmp_net_vq *nvq = container_of(vq, struct vmp_net_vq, vq);

	mutex_lock(&vq->mutex);
	if (vmp_vq_runnable(vq)) {
		vmp_vq_notify_off(vq);
		vmp_net_rx_run(nvq);
		vmp_vq_publish(vq);
	}
	mutex_unlock(&vq->mutex);
}

/* ---- backend attach and detach ----------------------------------------- */

/* Unhook the ring from its backend; vq mutex held.  Cannot fail. */
static void vmp_net_vq_detach(struct vmp_net_vq *nvq,
			      struct vmp_net_backend *old, struct vmp_zc **zc)
{
	vmp_poll_stop(&nvq->sock_poll);
	vmp_net_rxq_put_back(&nvq->rxq);
	vmp_net_rx_post_detach(nvq);
	*old = nvq->be;
	*zc = nvq->zc;
	memset(&nvq->be, 0, sizeof(nvq->be));
	nvq->zc = NULL;
	nvq->vq.backend = NULL;
}

static void vmp_net_rxq_attach(struct vmp_net_vq *nvq,
			       const struct vmp_net_backend *be)
{
	struct ptr_ring *ring = NULL;

	if (be->type->get_ring)
		ring = be->type->get_ring(be->file);
	nvq->rxq.ring = IS_ERR(ring) ? NULL : ring;
	nvq->rxq.head = 0;
	nvq->rxq.tail = 0;
}

/* Hook the ring to @be; vq mutex held, ring already started. */
static int vmp_net_vq_attach(struct vmp_net_vq *nvq,
			     const struct vmp_net_backend *be,
			     struct vmp_zc *zc)
{
	struct vmp_vq *vq = &nvq->vq;
	int r;

	nvq->be = *be;
	nvq->zc = zc;
	nvq->zc_window = 0;
	nvq->zc_backoff = 0;
	nvq->rx_copy_only = !zcopy_rx;
	vq->backend = &nvq->be;
	if (nvq == &nvq->net->vqs[VMP_NET_RX]) {
		vmp_net_rxq_attach(nvq, be);
		r = vmp_net_rx_post_attach(nvq);
		if (!r)
			r = vmp_poll_start(&nvq->sock_poll, be->file);
		if (r) {
			vmp_net_rx_post_detach(nvq);
			vmp_net_rxq_put_back(&nvq->rxq);
			memset(&nvq->be, 0, sizeof(nvq->be));
			nvq->zc = NULL;
			vq->backend = NULL;
			return r;
		}
	}
	/* The guest may have queued buffers before we were attached. */
	vmp_work_queue(vq->dev, &vq->work);
	return 0;
}

/* Release what a detached ring held; no vq mutex held. */
static void vmp_net_put_backend(struct vmp_net_vq *nvq,
				struct vmp_net_backend *old, struct vmp_zc *zc,
				bool give_back)
{
	if (zc)
		vmp_zc_drain(nvq, zc, give_back);
	vmp_net_backend_put(old);
}

/* Swap the backend of a ring under its mutex; see vmp_net_set_backend(). */
static int vmp_net_swap_backend(struct vmp_net_vq *nvq,
				struct vmp_net_backend *nb,
				struct vmp_net_backend *old,
				struct vmp_zc **old_zc)
{
	struct vmp_vq *vq = &nvq->vq;
	struct vmp_zc *zc = NULL;
	int r;

	memset(old, 0, sizeof(*old));
	*old_zc = NULL;
	if (nb->file && nb->file == nvq->be.file)
		return -EALREADY;
	if (nb->file) {
		r = vmp_vq_start(vq);
		if (r)
			return r;
		zc = vmp_zc_alloc(nvq, nb);
	}
	vmp_net_vq_detach(nvq, old, old_zc);
	if (!nb->file)
		return 0;
	r = vmp_net_vq_attach(nvq, nb, zc);
	if (r)
		kfree(zc);
	return r;
}

static long vmp_net_set_backend(struct vmp_net *n, void __user *argp)
{
	struct vmp_net_backend nb = { }, old;
	struct vhost_vring_file f;
	struct vmp_net_vq *nvq;
	struct vmp_zc *old_zc;
	long r;

	if (copy_from_user(&f, argp, sizeof(f)))
		return -EFAULT;
	r = vmp_dev_check_owner(&n->dev);
	if (r)
		return r;
	if (f.index >= VMP_NET_NVQ)
		return -ENOBUFS;
	nvq = &n->vqs[array_index_nospec(f.index, VMP_NET_NVQ)];
	if (f.fd != VHOST_FILE_UNBIND) {
		r = vmp_net_backend_get(f.fd, &nb);
		if (r)
			return r;
	}

	/* Posted buffers go back to the guest before the backend does. */
	if (nvq == &n->vqs[VMP_NET_RX])
		vmp_net_rx_pause(n);
	mutex_lock(&nvq->vq.mutex);
	r = vmp_net_swap_backend(nvq, &nb, &old, &old_zc);
	mutex_unlock(&nvq->vq.mutex);
	if (nvq == &n->vqs[VMP_NET_RX])
		vmp_net_rx_resume(n);

	if (r)
		vmp_net_backend_put(&nb);
	vmp_net_put_backend(nvq, &old, old_zc, true);
	return r == -EALREADY ? 0 : r;
}

/*
 * Detach both rings and wait for outstanding zero-copy buffers.  Guest
 * memory is only touched with @give_back, i.e. for the owner's ioctl:
 * posted receive buffers then go back on the owner's worker.  The last
 * close, whoever does it, drops what is still out instead.
 */
static void vmp_net_stop(struct vmp_net *n, bool give_back)
{
	struct vmp_net_backend old[VMP_NET_NVQ];
	struct vmp_zc *zc[VMP_NET_NVQ];
	unsigned int i;

	if (give_back)
		vmp_net_rx_pause(n);
	for (i = 0; i < VMP_NET_NVQ; i++) {
		mutex_lock(&n->vqs[i].vq.mutex);
		vmp_net_vq_detach(&n->vqs[i], &old[i], &zc[i]);
		mutex_unlock(&n->vqs[i].vq.mutex);
	}
	if (give_back)
		vmp_net_rx_resume(n);
	for (i = 0; i < VMP_NET_NVQ; i++)
		vmp_net_put_backend(&n->vqs[i], &old[i], zc[i], give_back);
	vmp_dev_flush(&n->dev);
}

/* ---- features ---------------------------------------------------------- */

static void vmp_net_apply_features(struct vmp_net *n, u64 features)
{
	size_t hlen = sizeof(struct virtio_net_hdr);
	unsigned int i;

	if (features & (BIT_ULL(VIRTIO_NET_F_MRG_RXBUF) |
			BIT_ULL(VIRTIO_F_VERSION_1)))
		hlen = sizeof(struct virtio_net_hdr_mrg_rxbuf);
	for (i = 0; i < VMP_NET_NVQ; i++) {
		struct vmp_net_vq *nvq = &n->vqs[i];

		mutex_lock(&nvq->vq.mutex);
		nvq->vq.features = features;
		/* Whoever does not know about headers, we add them for. */
		if (features & BIT_ULL(VHOST_NET_F_VIRTIO_NET_HDR)) {
			nvq->guest_hlen = hlen;
			nvq->sock_hlen = 0;
		} else {
			nvq->guest_hlen = 0;
			nvq->sock_hlen = hlen;
		}
		mutex_unlock(&nvq->vq.mutex);
	}
}

static long vmp_net_set_features(struct vmp_net *n, u64 __user *argp)
{
	u64 features;

	if (copy_from_user(&features, argp, sizeof(features)))
		return -EFAULT;
	if (features & ~VMP_NET_FEATURES)
		return -EOPNOTSUPP;
	/* Rings are accessed as little endian only. */
	if (!(features & BIT_ULL(VIRTIO_F_VERSION_1)) &&
	    !virtio_legacy_is_little_endian())
		return -EINVAL;
	if ((features & BIT_ULL(VHOST_F_LOG_ALL)) && !vmp_dev_log_ok(&n->dev))
		return -EFAULT;
	/* LOG_ALL (migration) ends posting: the device's writes need a log. */
	vmp_net_rx_pause(n);
	vmp_net_apply_features(n, features);
	vmp_net_rx_resume(n);
	return 0;
}

static void vmp_net_clear_hlen(struct vmp_net *n)
{
	unsigned int i;

	for (i = 0; i < VMP_NET_NVQ; i++) {
		n->vqs[i].guest_hlen = 0;
		n->vqs[i].sock_hlen = 0;
	}
}

/* ---- debugfs ----------------------------------------------------------- */

static int vmp_net_stats_show(struct seq_file *s, void *unused)
{
	struct vmp_net *n = s->private;
	const struct vmp_net_stats *st = &n->stats;

	seq_printf(s, "tx_packets %llu\n", READ_ONCE(st->tx_packets));
	seq_printf(s, "tx_bytes %llu\n", READ_ONCE(st->tx_bytes));
	seq_printf(s, "tx_zcopy_packets %llu\n",
		   READ_ONCE(st->tx_zcopy_packets));
	seq_printf(s, "tx_zcopy_bytes %llu\n", READ_ONCE(st->tx_zcopy_bytes));
	seq_printf(s, "tx_copy_packets %llu\n", READ_ONCE(st->tx_copy_packets));
	seq_printf(s, "tx_zcopy_copied %lld\n",
		   (s64)atomic64_read(&n->zc_copied));
	seq_printf(s, "tx_dropped %llu\n", READ_ONCE(st->tx_dropped));
	seq_printf(s, "rx_packets %llu\n", READ_ONCE(st->rx_packets));
	seq_printf(s, "rx_bytes %llu\n", READ_ONCE(st->rx_bytes));
	seq_printf(s, "rx_dropped %llu\n", READ_ONCE(st->rx_dropped));
	/* Why a backend that can receive in place is received from by copy. */
	seq_printf(s, "rx_post_refused %llu\n", READ_ONCE(st->rx_post_refused));
	seq_printf(s, "rx_copy_only %d\n",
		   READ_ONCE(n->vqs[VMP_NET_RX].rx_copy_only));
	seq_printf(s, "rx_posting %d\n", READ_ONCE(n->vqs[VMP_NET_RX].rxp.posting));
	seq_printf(s, "rx_post_inflight %u\n",
		   READ_ONCE(n->vqs[VMP_NET_RX].rxp.nr_inflight));
	/* Times posting ended, and buffers that never came back then. */
	seq_printf(s, "rx_post_stops %llu\n", READ_ONCE(st->rx_post_stops));
	seq_printf(s, "rx_post_lost %llu\n", READ_ONCE(st->rx_post_lost));
	seq_printf(s, "rx_post_stray %llu\n", READ_ONCE(st->rx_post_stray));
	seq_printf(s, "worker_runs %llu\n", READ_ONCE(n->dev.worker_runs));
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(vmp_net_stats);

/* Counters start from zero with each owner. */
static void vmp_net_debugfs_add(struct vmp_net *n)
{
	char name[40];

	memset(&n->stats, 0, sizeof(n->stats));
	atomic64_set(&n->zc_copied, 0);
	WRITE_ONCE(n->dev.worker_runs, 0);
	snprintf(name, sizeof(name), "net-%d-%u", n->dev.owner_tgid,
		 atomic_inc_return(&vmp_net_dbg_seq));
	n->dbg = debugfs_create_dir(name, vmp_net_dbg_root);
	debugfs_create_file("stats", 0444, n->dbg, n, &vmp_net_stats_fops);
}

/* Waits for readers of the stats file, so @n may be freed afterwards. */
static void vmp_net_debugfs_remove(struct vmp_net *n)
{
	debugfs_remove(n->dbg);
	n->dbg = NULL;
}

/* ---- file operations --------------------------------------------------- */

static long vmp_net_reset_owner(struct vmp_net *n)
{
	long r = vmp_dev_check_owner(&n->dev);

	if (r)
		return r;
	vmp_net_stop(n, true);
	vmp_net_debugfs_remove(n);
	vmp_dev_reset_owner(&n->dev);
	vmp_net_clear_hlen(n);
	return 0;
}

static long vmp_net_set_owner(struct vmp_net *n, void __user *argp)
{
	long r = vmp_dev_ioctl(&n->dev, VHOST_SET_OWNER, argp);

	if (!r)
		vmp_net_debugfs_add(n);
	return r;
}

/*
 * A new memory table leaves posted buffers pointing at the old one, and
 * GET_VRING_BASE must not count buffers still out as consumed: posted
 * receive ends first, and starts again afterwards if it still can.
 */
static long vmp_net_paused_ioctl(struct vmp_net *n, unsigned int cmd,
				 void __user *argp)
{
	long r;

	vmp_net_rx_pause(n);
	r = vmp_dev_ioctl(&n->dev, cmd, argp);
	vmp_net_rx_resume(n);
	return r;
}

static long vmp_net_locked_ioctl(struct vmp_net *n, unsigned int cmd,
				 void __user *argp)
{
	switch (cmd) {
	case VHOST_NET_SET_BACKEND:
		return vmp_net_set_backend(n, argp);
	case VHOST_SET_FEATURES:
		return vmp_net_set_features(n, argp);
	case VHOST_SET_OWNER:
		return vmp_net_set_owner(n, argp);
	case VHOST_RESET_OWNER:
		return vmp_net_reset_owner(n);
	case VHOST_SET_MEM_TABLE:
	case VHOST_GET_VRING_BASE:
		return vmp_net_paused_ioctl(n, cmd, argp);
	default:
		return vmp_dev_ioctl(&n->dev, cmd, argp);
	}
}

static long vmp_net_put_u64(void __user *argp, u64 val)
{
	return copy_to_user(argp, &val, sizeof(val)) ? -EFAULT : 0;
}

static long vmp_net_set_backend_features(void __user *argp)
{
	u64 features;

	if (copy_from_user(&features, argp, sizeof(features)))
		return -EFAULT;
	/* No IOTLB: nothing to offer, nothing to accept. */
	return features ? -EOPNOTSUPP : 0;
}

static long vmp_net_ioctl(struct file *f, unsigned int cmd, unsigned long arg)
{
	struct vmp_net *n = f->private_data;
	void __user *argp = (void __user *)arg;
	long r;

	switch (cmd) {
	case VHOST_GET_FEATURES:
		return vmp_net_put_u64(argp, VMP_NET_FEATURES);
	case VHOST_GET_BACKEND_FEATURES:
		return vmp_net_put_u64(argp, 0);
	case VHOST_SET_BACKEND_FEATURES:
		return vmp_net_set_backend_features(argp);
	}

	mutex_lock(&n->dev.mutex);
	r = vmp_net_locked_ioctl(n, cmd, argp);
	mutex_unlock(&n->dev.mutex);
	return r;
}

static void vmp_net_free(struct vmp_net *n)
{
	page_frag_cache_drain(&n->vqs[VMP_NET_TX].batch.frags);
	kfree(n->vqs[VMP_NET_TX].batch.xdp);
	kvfree(n->vqs[VMP_NET_RX].heads);
	kfree(n);
}

static int vmp_net_open(struct inode *inode, struct file *f)
{
	struct vmp_net *n;
	unsigned int i;
	int r;

	n = kzalloc(sizeof(*n), GFP_KERNEL_ACCOUNT);
	if (!n)
		return -ENOMEM;
	n->vqs[VMP_NET_RX].heads = kvmalloc_array(VMP_MAX_SEGS,
						  sizeof(struct vring_used_elem),
						  GFP_KERNEL_ACCOUNT);
	n->vqs[VMP_NET_TX].batch.xdp = kmalloc_array(VMP_NET_BATCH,
						     sizeof(struct xdp_buff),
						     GFP_KERNEL_ACCOUNT);
	if (!n->vqs[VMP_NET_RX].heads || !n->vqs[VMP_NET_TX].batch.xdp) {
		vmp_net_free(n);
		return -ENOMEM;
	}
	for (i = 0; i < VMP_NET_NVQ; i++) {
		n->vqs[i].net = n;
		n->vq_ptrs[i] = &n->vqs[i].vq;
	}
	n->vqs[VMP_NET_RX].vq.handle = vmp_net_handle_rx;
	n->vqs[VMP_NET_TX].vq.handle = vmp_net_handle_tx;
	r = vmp_dev_init(&n->dev, n->vq_ptrs, VMP_NET_NVQ);
	if (r) {
		vmp_net_free(n);
		return r;
	}
	vmp_work_init(&n->rx_leave, vmp_net_rx_leave_fn);
	vmp_poll_init(&n->vqs[VMP_NET_RX].sock_poll, &n->dev,
		      &n->vqs[VMP_NET_RX].vq.work, EPOLLIN);
	vmp_poll_init(&n->vqs[VMP_NET_TX].sock_poll, &n->dev,
		      &n->vqs[VMP_NET_TX].vq.work, EPOLLOUT);
	atomic64_set(&n->zc_copied, 0);
	f->private_data = n;
	return 0;
}

static int vmp_net_release(struct inode *inode, struct file *f)
{
	struct vmp_net *n = f->private_data;

	/* Last reference: the mutex only keeps lockdep assertions honest. */
	mutex_lock(&n->dev.mutex);
	vmp_net_stop(n, false);
	vmp_net_debugfs_remove(n);
	vmp_dev_cleanup(&n->dev);
	mutex_unlock(&n->dev.mutex);
	vmp_net_free(n);
	return 0;
}

static const struct file_operations vmp_net_fops = {
	.owner		= THIS_MODULE,
	.open		= vmp_net_open,
	.release	= vmp_net_release,
	.unlocked_ioctl	= vmp_net_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
	.llseek		= noop_llseek,
};

static struct miscdevice vmp_net_misc = {
	.minor	= VHOST_NET_MINOR,
	.name	= "vhost-net",
	.fops	= &vmp_net_fops,
};

static int __init vmp_net_init(void)
{
	int r;

	vmp_net_dbg_root = debugfs_create_dir("vhost-mp", NULL);
	r = misc_register(&vmp_net_misc);
	if (r)
		debugfs_remove(vmp_net_dbg_root);
	return r;
}
module_init(vmp_net_init);

static void __exit vmp_net_exit(void)
{
	misc_deregister(&vmp_net_misc);
	debugfs_remove(vmp_net_dbg_root);
}
module_exit(vmp_net_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("vhost-mp: virtio-net datapath in the host kernel");
MODULE_ALIAS_MISCDEV(VHOST_NET_MINOR);
MODULE_ALIAS("devname:vhost-net");
