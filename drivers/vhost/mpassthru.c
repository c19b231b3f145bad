// SPDX-License-Identifier: GPL-2.0-only
/*
 * mpassthru: mediated passthrough of one host Ethernet device to one guest.
 *
 * Each open of /dev/mpassthru can bind one device (MPASSTHRU_BIND).  While
 * bound, everything the device receives goes to this file instead of the
 * host stack (we are the device's rx_handler), and what is written to the
 * file is sent on the device.  The file is both a tap-compatible
 * descriptor (read, write, poll and the TUN ioctls QEMU issues for
 * "-netdev tap,fd=N") and, through the socket behind it, a backend for
 * vhost-net, whose sendmsg() may hand us a ubuf_info: the guest's pages
 * are then attached to the skb, and vhost-net learns through our
 * completion when the device has let go of them.
 *
 * Receive copies by default: frames wait on the socket's receive queue
 * until the reader copies them into its buffers.  With the net/core
 * page-constructor series, vhost-net posts the guest's receive buffers
 * through the posted-receive protocol we register with it (struct
 * vmp_rx_post_ops), and the NIC writes frames straight into them; see
 * Documentation/mpassthru.rst.
 *
 * Locking: a binding is made and undone under RTNL, which also serialises
 * us with the device's unregistration.  The datapath finds the device
 * through an RCU pointer and holds a reference on it while it sends.
 */
#define pr_fmt(fmt) "mpassthru: " fmt

#include <linux/debugfs.h>
#include <linux/etherdevice.h>
#include <linux/highmem.h>
#include <linux/if_arp.h>
#include <linux/if_tun.h>
#include <linux/if_vlan.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/vmp_net_backend.h>
#include <linux/netdevice.h>
#include <linux/poll.h>
#include <linux/rtnetlink.h>
#include <linux/sched/signal.h>
#include <linux/seq_file.h>
#include <linux/skbuff.h>
#include <linux/slab.h>
#include <linux/uio.h>
#include <linux/virtio_net.h>
#include <net/gso.h>
#include <net/net_namespace.h>
#if IS_ENABLED(CONFIG_NET_PAGE_CTOR)
#include <net/page_ctor.h>
#endif
#include <net/sock.h>
#include <uapi/linux/mpassthru.h>

/* Frames waiting for the reader; beyond this they are dropped. */
#define MP_RX_QUEUE_LEN		1024
/* Below this a frame is copied even when the caller could wait for it. */
#define MP_ZC_MIN_LEN		256
/* Bytes copied into the linear part when the header length is unknown. */
#define MP_COPY_HDR_LEN		128
#define MP_MAX_VNET_HDR		256
#define MP_MAX_FRAME		(ETH_HLEN + VLAN_HLEN + 65535)
#define MP_TUN_FEATURES		(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
#define MP_OFFLOADS		(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | \
				 TUN_F_TSO_ECN | TUN_F_UFO | TUN_F_USO4 | \
				 TUN_F_USO6)
/* What the reader always takes: we can hand it any skb layout. */
#define MP_BASE_FEATURES	(NETIF_F_GSO | NETIF_F_SG | NETIF_F_FRAGLIST)
/*
 * Guest receive buffers posted at most: a full ring of the largest size
 * QEMU offers (rx_queue_size=1024), so that the device's own ring can be
 * refilled while the guest still works through what it was given.
 */
#define MP_RX_POST_MAX		1024
/* Pieces of one guest receive buffer, each within a page. */
#define MP_RXBUF_SEGS		8
/* Posted buffers the driver leaves for frames that land in host memory. */
#define MP_RX_COPY_RESERVE	4
/*
 * Host pages the driver gets once its ring has held no guest buffer for
 * MP_RX_DRY_MS: well within the 5 s after which a stalled peer's
 * transmit watchdog fires, well beyond a guest that is only slow.  A
 * NAPI budget of them, so that the ring still has some when the next
 * poll refills it: a device whose ring keeps running dry stalls its
 * peer in bursts, and QEMU's hub reorders frames at each one.
 */
#define MP_RX_HOST_BUFS		64
#define MP_RX_DRY_MS		2000
/* How long the end of a posting period waits for buffers the stack holds. */
#define MP_RX_STOP_WAIT_MS	250

/* In the order of struct mpassthru_stats. */
enum {
	MP_RX_PACKETS,
	MP_RX_BYTES,
	MP_RX_ZCOPY_BYTES,
	MP_RX_COPY_BYTES,
	MP_RX_DROPPED,
	MP_TX_PACKETS,
	MP_TX_BYTES,
	MP_TX_ZCOPY_BYTES,
	MP_TX_COPY_BYTES,
	MP_TX_DROPPED,
	MP_PINNED_PAGES,
	MP_NR_STATS,
};

struct mp_file;

/* What we keep in skb->cb of a frame on our receive queue. */
struct mp_skb_cb {
	bool in_place;	/* in a guest buffer, delivered where it lies */
};

#define MP_SKB_CB(skb)	((struct mp_skb_cb *)(skb)->cb)

#if IS_ENABLED(CONFIG_NET_PAGE_CTOR)
/**
 * struct mp_rxseg - a piece of a guest receive buffer, within one page
 * @page: the pinned page
 * @off: offset in @page
 * @len: length
 */
struct mp_rxseg {
	struct page *page;
	unsigned int off;
	unsigned int len;
};

/**
 * struct mp_rxbuf - a guest receive buffer posted for zero-copy receive
 * @cb: what the device driver sees: the buffer after its header room
 * @node: in one of the file's rx lists
 * @head: the guest's descriptor chain
 * @hdr_len: room for the virtio-net header at the start
 * @gen: the posting period it was posted in
 * @nr_segs: valid entries of @segs
 * @segs: the whole buffer, header room first
 * @delivered: the frame in it went to the guest; unpin and forget it
 * @in_ring: lent to the driver, and the device has not written it yet
 * @host: one of the file's host pages, lent when the guest has none
 *
 * Pinned from mp_rx_post() until delivered or returned.  A host buffer
 * uses only @cb and @node.
 */
struct mp_rxbuf {
	struct netdev_page_ctor_buf cb;
	struct list_head node;
	u32 gen;
	u16 head;
	u16 hdr_len;
	unsigned int nr_segs;
	struct mp_rxseg segs[MP_RXBUF_SEGS];
	bool delivered;
	bool in_ring;
	bool host;
};

/**
 * struct mp_rx_zc - zero-copy receive state of a file
 * @ctor: lends @ready buffers to the bound device's driver
 * @lock: protects the lists and the period's fields below (taken from
 *	softirq, IRQs off)
 * @ready: pinned buffers the driver may take
 * @nr_ready: entries on @ready
 * @done: buffers to unpin and forget (process context): delivered, or
 *	of a period that ended before they came back
 * @returned: buffers given back unfilled, pages already unpinned
 * @owner: the vhost-net ring that claimed posted receive, or NULL
 * @gen: the current posting period; a buffer of another is stale
 * @stopping: no period runs: buffers come back, none go out
 * @out: buffers of this period in the driver or in the stack
 * @posted: buffers of this period not yet reported
 * @attached: @ctor is attached to the device (RTNL)
 * @refused: the device's driver cannot take lent buffers (RTNL)
 * @too_small: guest buffers refused because a frame would not fit
 * @stale: buffers that came back after their period ended
 * @host_free: host buffers not lent
 * @in_ring: guest buffers in the driver's ring, not yet written
 * @dry_since: when @in_ring last dropped to 0
 * @feeding: @ctor is attached: the dry watch may run
 * @host_fill: the driver's ring ran dry: lend it host buffers
 * @dry_work: looks at a ring that ran dry; holds the socket while queued
 * @host_bufs: host buffers allocated, lent or not (dry watch only)
 * @host_frames: frames that arrived in host buffers, copied out
 *
 * A period runs from the first post after a claim or a stop to the next
 * stop; every buffer posted in it is reported once, by a reap, or never
 * when it outlives the period (the stack held on to its frame).
 */
struct mp_rx_zc {
	struct netdev_page_ctor ctor;
	spinlock_t lock;	/* see above */
	struct list_head ready;
	unsigned int nr_ready;
	struct list_head done;
	struct list_head returned;
	const void *owner;
	u32 gen;
	bool stopping;
	unsigned int out;
	unsigned int posted;
	bool attached;
	bool refused;
	atomic64_t too_small;
	atomic64_t stale;
	struct list_head host_free;
	unsigned int in_ring;
	unsigned long dry_since;
	bool feeding;
	bool host_fill;
	struct delayed_work dry_work;
	unsigned int host_bufs;
	atomic64_t host_frames;
};

#endif

/**
 * struct mp_port - a device bound to an mpassthru file
 * @dev: the device; we hold a reference while bound
 * @tracker: for that reference
 * @mf: the file it is bound to
 * @rcu: the port is freed after a grace period
 *
 * The device's rx_handler_data points here.
 */
struct mp_port {
	struct net_device *dev;
	netdevice_tracker tracker;
	struct mp_file *mf;
	struct rcu_head rcu;
};

/**
 * struct mp_file - one open of /dev/mpassthru
 * @sk: our socket's sock; must come first (sk_alloc() allocates us)
 * @socket: what vhost-net sends and receives through
 * @port: current binding, or NULL (RCU; changed under RTNL)
 * @state: MPASSTHRU_STATE_* (written under RTNL)
 * @flags: MPASSTHRU_F_* of the binding
 * @vnet_hdr_sz: header in front of each frame when MPASSTHRU_F_VNET_HDR
 * @offloads: TUN_F_* the reader accepts
 * @rx_features: @offloads as device features, for segmentation on receive
 * @ifindex: bound device at bind time
 * @ifname: its name at bind time
 * @stats: MP_* counters; all but MP_PINNED_PAGES start again at each bind
 * @node: in mp_files, for debugfs
 * @lock: serialises the ioctls that change the fields above
 * @zc: zero-copy receive into posted guest buffers
 */
struct mp_file {
	struct sock sk;
	struct socket socket;
	struct mp_port __rcu *port;
	u32 state;
	u32 flags;
	int vnet_hdr_sz;
	unsigned int offloads;
	netdev_features_t rx_features;
	int ifindex;
	char ifname[IFNAMSIZ];
	atomic64_t stats[MP_NR_STATS];
	struct list_head node;
	struct mutex lock;	/* see @lock above */
#if IS_ENABLED(CONFIG_NET_PAGE_CTOR)
	struct mp_rx_zc zc;
#endif
};

/**
 * struct mp_ubuf - our completion for a frame sent from guest pages
 * @ubuf: attached to the skb
 * @upper: the caller's (vhost-net's) completion, or NULL
 * @mf: owner of the socket the frame was charged to; we hold a reference
 * @npages: page references held by the skb's fragments
 */
struct mp_ubuf {
	struct ubuf_info ubuf;
	struct ubuf_info *upper;
	struct mp_file *mf;
	unsigned int npages;
};

static struct proto mp_proto = {
	.name		= "mpassthru",
	.owner		= THIS_MODULE,
	.obj_size	= sizeof(struct mp_file),
};

/* Guest pages referenced by frames in flight, over every binding. */
static atomic_long_t mp_pinned_pages = ATOMIC_LONG_INIT(0);
/* Posted guest buffers inside a NIC driver or an skb, over every binding. */
static atomic_long_t mp_lent_bufs = ATOMIC_LONG_INIT(0);
/* Detaches after which a driver kept lent buffers (a ring failed to reset). */
static atomic_long_t mp_detach_failures = ATOMIC_LONG_INIT(0);
static LIST_HEAD(mp_files);
static DEFINE_MUTEX(mp_files_lock);
static struct dentry *mp_dbg_root;

static inline void mp_stat_add(struct mp_file *mf, unsigned int i, s64 v)
{
	atomic64_add(v, &mf->stats[i]);
}

static struct mp_file *mp_from_sock(struct socket *sock)
{
	return container_of(sock, struct mp_file, socket);
}

static size_t mp_hdr_len(const struct mp_file *mf)
{
	return (READ_ONCE(mf->flags) & MPASSTHRU_F_VNET_HDR) ?
	       READ_ONCE(mf->vnet_hdr_sz) : 0;
}

/* The error a file without a usable device answers with. */
static int mp_unbound_err(const struct mp_file *mf)
{
	return READ_ONCE(mf->state) == MPASSTHRU_STATE_GONE ? -ENODEV : -ENXIO;
}

/* ---- receive: device to file ------------------------------------------- */

#if IS_ENABLED(CONFIG_NET_PAGE_CTOR)
/* The posted buffer @skb was built over, if it is one of ours. */
static struct mp_rxbuf *mp_rxbuf_of(struct mp_file *mf, struct sk_buff *skb)
{
	struct netdev_page_ctor_buf *cb = netdev_page_ctor_buf_of(skb);

	if (!cb || cb->ctor != &mf->zc.ctor)
		return NULL;
	return container_of(cb, struct mp_rxbuf, cb);
}

static bool mp_skb_in_guest(struct mp_file *mf, struct sk_buff *skb)
{
	struct mp_rxbuf *rb = mp_rxbuf_of(mf, skb);

	return rb && !rb->host;
}

/* Look at the driver's ring after @delay jiffies (0: now, again). */
static void mp_zc_watch(struct mp_file *mf, unsigned long delay)
{
	bool queued;

	/* The work holds the socket while queued; the caller holds it too. */
	sock_hold(&mf->sk);
	if (delay)
		queued = queue_delayed_work(system_wq, &mf->zc.dry_work, delay);
	else
		queued = !mod_delayed_work(system_wq, &mf->zc.dry_work, 0);
	if (!queued)
		sock_put(&mf->sk);
}

/*
 * The device wrote @rb, or the driver gave it back unwritten.  Returns
 * whether that left the ring without a guest buffer, to be watched.
 * zc.lock held.
 */
static bool mp_zc_left_ring(struct mp_file *mf, struct mp_rxbuf *rb)
{
	if (!rb->in_ring)
		return false;
	rb->in_ring = false;
	if (--mf->zc.in_ring)
		return false;
	mf->zc.dry_since = jiffies;
	return mf->zc.feeding && !mf->zc.host_fill;
}

/*
 * A frame arrived in a buffer we lent.  One in a host buffer is copied
 * out at once, so that the page goes back to the driver's ring while the
 * copy waits in our queue for a guest buffer.
 */
static struct sk_buff *mp_zc_arrived(struct mp_file *mf, struct sk_buff *skb)
{
	struct mp_rxbuf *rb = mp_rxbuf_of(mf, skb);
	struct sk_buff *copy;
	unsigned long flags;
	bool dry;

	if (!rb)
		return skb;
	spin_lock_irqsave(&mf->zc.lock, flags);
	dry = mp_zc_left_ring(mf, rb);
	spin_unlock_irqrestore(&mf->zc.lock, flags);
	if (dry)
		mp_zc_watch(mf, msecs_to_jiffies(MP_RX_DRY_MS));
	if (!rb->host)
		return skb;
	atomic64_inc(&mf->zc.host_frames);
	copy = skb_copy(skb, GFP_ATOMIC);
	consume_skb(skb);
	return copy;
}
#else
static bool mp_skb_in_guest(struct mp_file *mf, struct sk_buff *skb)
{
	return false;
}

static struct sk_buff *mp_zc_arrived(struct mp_file *mf, struct sk_buff *skb)
{
	return skb;
}
#endif

/*
 * A frame in a guest buffer goes to the guest where it lies, only when it
 * needs nothing done to it first: no VLAN tag to put back, no checksum the
 * guest cannot finish, no segmentation.  Otherwise it is handled, and
 * then copied, like a frame in host memory.
 */
static bool mp_frame_in_place(struct sk_buff *skb,
			      netdev_features_t features)
{
	return !skb_vlan_tag_present(skb) && !netif_needs_gso(skb, features) &&
	       (skb->ip_summed != CHECKSUM_PARTIAL ||
		(features & NETIF_F_CSUM_MASK));
}

static void mp_queue_rx(struct mp_file *mf, struct sk_buff *skb)
{
	struct sk_buff_head *q = &mf->sk.sk_receive_queue;

	if (skb_queue_len_lockless(q) >= MP_RX_QUEUE_LEN) {
		mp_stat_add(mf, MP_RX_DROPPED, 1);
		kfree_skb_reason(skb, SKB_DROP_REASON_FULL_RING);
		return;
	}
	skb_queue_tail(q, skb);
}

static void mp_queue_in_place(struct mp_file *mf, struct sk_buff *skb)
{
	MP_SKB_CB(skb)->in_place = true;
	mp_queue_rx(mf, skb);
}

/* Segment what the reader cannot take whole, then queue it. */
static void mp_rx_segment(struct mp_file *mf, struct sk_buff *skb,
			  netdev_features_t features)
{
	struct sk_buff *segs, *next;

	segs = __skb_gso_segment(skb, features, false);
	if (IS_ERR(segs)) {
		mp_stat_add(mf, MP_RX_DROPPED, 1);
		kfree_skb_reason(skb, SKB_DROP_REASON_SKB_GSO_SEG);
		return;
	}
	if (!segs) {
		mp_queue_rx(mf, skb);
		return;
	}
	consume_skb(skb);
	skb_list_walk_safe(segs, skb, next) {
		skb_mark_not_on_list(skb);
		mp_queue_rx(mf, skb);
	}
}

/*
 * The device's rx_handler: every frame is the guest's, none goes up the
 * host stack.  Softirq context, under rcu_read_lock().
 */
static rx_handler_result_t mp_handle_frame(struct sk_buff **pskb)
{
	struct sk_buff *skb = *pskb;
	struct mp_port *port = rcu_dereference(skb->dev->rx_handler_data);
	struct mp_file *mf = port->mf;
	netdev_features_t features = MP_BASE_FEATURES |
				     READ_ONCE(mf->rx_features);

	skb = skb_share_check(skb, GFP_ATOMIC);
	if (skb)
		skb = mp_zc_arrived(mf, skb);
	if (!skb)
		goto dropped;
	skb_orphan(skb);
	skb_push(skb, ETH_HLEN);
	MP_SKB_CB(skb)->in_place = false;
	/* Already in a guest buffer, as it was on the wire. */
	if (mp_skb_in_guest(mf, skb) && mp_frame_in_place(skb, features)) {
		mp_queue_in_place(mf, skb);
		goto queued;
	}
	/* The reader sees the frame as it was on the wire. */
	if (skb_vlan_tag_present(skb)) {
		skb = __vlan_hwaccel_push_inside(skb);
		if (!skb)
			goto dropped;
	}
	if (netif_needs_gso(skb, features)) {
		mp_rx_segment(mf, skb, features);
	} else if (skb->ip_summed == CHECKSUM_PARTIAL &&
		   !(features & NETIF_F_CSUM_MASK) && skb_checksum_help(skb)) {
		mp_stat_add(mf, MP_RX_DROPPED, 1);
		kfree_skb_reason(skb, SKB_DROP_REASON_SKB_CSUM);
	} else {
		mp_queue_rx(mf, skb);
	}
queued:
	mf->sk.sk_data_ready(&mf->sk);
	return RX_HANDLER_CONSUMED;
dropped:
	mp_stat_add(mf, MP_RX_DROPPED, 1);
	return RX_HANDLER_CONSUMED;
}

/* Next received frame, waiting for one unless @noblock. */
static struct sk_buff *mp_dequeue(struct mp_file *mf, bool noblock)
{
	struct sk_buff_head *q = &mf->sk.sk_receive_queue;
	struct sk_buff *skb;
	int err;

	for (;;) {
		skb = skb_dequeue(q);
		if (skb)
			return skb;
		if (READ_ONCE(mf->state) != MPASSTHRU_STATE_BOUND)
			return ERR_PTR(mp_unbound_err(mf));
		if (noblock)
			return ERR_PTR(-EAGAIN);
		err = wait_event_interruptible(*sk_sleep(&mf->sk),
					       !skb_queue_empty_lockless(q) ||
					       READ_ONCE(mf->state) !=
					       MPASSTHRU_STATE_BOUND);
		if (err)
			return ERR_PTR(err);
	}
}

static int mp_put_vnet_hdr(struct mp_file *mf, const struct sk_buff *skb,
			   struct iov_iter *to, size_t hlen)
{
	struct virtio_net_hdr hdr;

	if (virtio_net_hdr_from_skb(skb, &hdr, true, true, 0))
		return -EINVAL;
	if (copy_to_iter(&hdr, sizeof(hdr), to) != sizeof(hdr))
		return -EFAULT;
	/* The rest (num_buffers and beyond) is the reader's to fill. */
	iov_iter_advance(to, hlen - sizeof(hdr));
	return 0;
}

/*
 * Copy one frame, with its header, to @to.  Returns the frame's full size
 * (header included) and sets *@copied to what fit; a frame that does not
 * fit is truncated and consumed all the same, as on a tap.  A buffer too
 * short even for the header costs the frame too (-EINVAL): leaving it
 * queued would have vhost-net retry it forever.
 */
static ssize_t mp_recv(struct mp_file *mf, struct iov_iter *to, bool noblock,
		       size_t *copied)
{
	size_t hlen = mp_hdr_len(mf), n;
	struct sk_buff *skb;
	int err = -EINVAL;

	skb = mp_dequeue(mf, noblock);
	if (IS_ERR(skb))
		return PTR_ERR(skb);
	if (iov_iter_count(to) < hlen)
		goto drop;
	if (hlen) {
		err = mp_put_vnet_hdr(mf, skb, to, hlen);
		if (err)
			goto drop;
	}
	n = min_t(size_t, skb->len, iov_iter_count(to));
	err = skb_copy_datagram_iter(skb, 0, to, n);
	if (err)
		goto drop;
	mp_stat_add(mf, MP_RX_PACKETS, 1);
	mp_stat_add(mf, MP_RX_BYTES, skb->len);
	mp_stat_add(mf, MP_RX_COPY_BYTES, n);
	*copied = hlen + n;
	n = hlen + skb->len;
	consume_skb(skb);
	return n;
drop:
	mp_stat_add(mf, MP_RX_DROPPED, 1);
	kfree_skb(skb);
	return err;
}

/* ---- zero-copy receive: posted guest buffers ------------------------------ */

#if IS_ENABLED(CONFIG_NET_PAGE_CTOR)

static void mp_rxbuf_unpin(struct mp_file *mf, struct mp_rxbuf *rb,
			   bool dirty)
{
	unsigned int i;

	for (i = 0; i < rb->nr_segs; i++) {
		if (dirty)
			unpin_user_pages_dirty_lock(&rb->segs[i].page, 1, true);
		else
			unpin_user_page(rb->segs[i].page);
	}
	atomic_long_sub(rb->nr_segs, &mp_pinned_pages);
	mp_stat_add(mf, MP_PINNED_PAGES, -(s64)rb->nr_segs);
	rb->nr_segs = 0;
}

/* Pin the first @need bytes of the chain, one segment per page touched. */
static int mp_rxbuf_pin(struct mp_file *mf, struct mp_rxbuf *rb,
			const struct iovec *iov, unsigned int niov, size_t need)
{
	unsigned int i, off, n;
	unsigned long addr;
	struct mp_rxseg *sg;
	size_t len;

	for (i = 0; i < niov && need; i++) {
		addr = (unsigned long)iov[i].iov_base;
		len = min(iov[i].iov_len, need);
		need -= len;
		while (len) {
			if (rb->nr_segs == MP_RXBUF_SEGS)
				return -EMSGSIZE;
			off = offset_in_page(addr);
			n = min_t(size_t, len, PAGE_SIZE - off);
			sg = &rb->segs[rb->nr_segs];
			if (pin_user_pages_fast(addr & PAGE_MASK, 1,
						FOLL_WRITE | FOLL_LONGTERM,
						&sg->page) != 1)
				return -EFAULT;
			sg->off = off;
			sg->len = n;
			rb->nr_segs++;
			atomic_long_inc(&mp_pinned_pages);
			mp_stat_add(mf, MP_PINNED_PAGES, 1);
			addr += n;
			len -= n;
		}
	}
	return need ? -EMSGSIZE : 0;
}

/* What the driver sees: the segments after the header room. */
static int mp_rxbuf_layout(struct mp_rxbuf *rb)
{
	unsigned int i, cut, n = 0, skip = rb->hdr_len;
	struct netdev_page_ctor_frag *f;

	rb->cb.size = 0;
	for (i = 0; i < rb->nr_segs; i++) {
		cut = min(skip, rb->segs[i].len);
		skip -= cut;
		if (cut == rb->segs[i].len)
			continue;
		if (n == NETDEV_PAGE_CTOR_MAX_FRAGS)
			return -EMSGSIZE;
		f = &rb->cb.frags[n++];
		f->page = rb->segs[i].page;
		f->offset = rb->segs[i].off + cut;
		f->len = rb->segs[i].len - cut;
		rb->cb.size += f->len;
	}
	rb->cb.nr_frags = n;
	return 0;
}

/* Copy @len bytes of @skb from @pos to the buffer at @off. */
static int mp_rxbuf_copy_skb(struct mp_rxbuf *rb, const struct sk_buff *skb,
			     int pos, unsigned int off, unsigned int len)
{
	unsigned int i, n;
	void *to;
	int err = 0;

	for (i = 0; i < rb->nr_segs && len && !err; i++) {
		if (off >= rb->segs[i].len) {
			off -= rb->segs[i].len;
			continue;
		}
		n = min(len, rb->segs[i].len - off);
		to = kmap_local_page(rb->segs[i].page);
		err = skb_copy_bits(skb, pos, to + rb->segs[i].off + off, n);
		kunmap_local(to);
		pos += n;
		len -= n;
		off = 0;
	}
	return err ?: (len ? -EMSGSIZE : 0);
}

static void mp_rxbuf_write(struct mp_rxbuf *rb, const void *from,
			   unsigned int len)
{
	unsigned int i, n;

	for (i = 0; i < rb->nr_segs && len; i++) {
		n = min(len, rb->segs[i].len);
		memcpy_to_page(rb->segs[i].page, rb->segs[i].off, from, n);
		from += n;
		len -= n;
	}
}

/* The only bytes the host writes into a zero-copy buffer. */
static int mp_rxbuf_put_hdr(struct mp_rxbuf *rb, const struct sk_buff *skb,
			    int vlan_hlen)
{
	u8 hdr[MP_MAX_VNET_HDR] = { };
	struct virtio_net_hdr_mrg_rxbuf *mrg = (void *)hdr;

	if (virtio_net_hdr_from_skb(skb, &mrg->hdr, true, true, vlan_hlen))
		return -EINVAL;
	if (rb->hdr_len >= sizeof(*mrg))
		mrg->num_buffers = __cpu_to_virtio16(true, 1);
	mp_rxbuf_write(rb, hdr, rb->hdr_len);
	return 0;
}

static struct mp_rxbuf *mp_zc_take_ready(struct mp_file *mf)
{
	struct mp_rxbuf *rb;
	unsigned long flags;

	spin_lock_irqsave(&mf->zc.lock, flags);
	rb = list_first_entry_or_null(&mf->zc.ready, struct mp_rxbuf, node);
	if (rb) {
		list_del(&rb->node);
		mf->zc.nr_ready--;
	}
	spin_unlock_irqrestore(&mf->zc.lock, flags);
	return rb;
}

static void mp_zc_add(struct mp_file *mf, struct mp_rxbuf *rb,
		      struct list_head *list)
{
	unsigned long flags;

	spin_lock_irqsave(&mf->zc.lock, flags);
	list_add_tail(&rb->node, list);
	if (list == &mf->zc.ready)
		mf->zc.nr_ready++;
	spin_unlock_irqrestore(&mf->zc.lock, flags);
}

/* The next ready guest buffer for the driver's ring; zc.lock held. */
static struct mp_rxbuf *mp_zc_lend_guest(struct mp_file *mf)
{
	struct mp_rxbuf *rb;

	rb = list_first_entry(&mf->zc.ready, struct mp_rxbuf, node);
	list_del(&rb->node);
	mf->zc.nr_ready--;
	mf->zc.out++;
	rb->in_ring = true;
	mf->zc.in_ring++;
	mf->zc.host_fill = false;
	return rb;
}

/* A host buffer, while the ring is fed with them; zc.lock held. */
static struct mp_rxbuf *mp_zc_lend_host(struct mp_file *mf)
{
	struct mp_rxbuf *rb;

	if (!mf->zc.host_fill)
		return NULL;
	rb = list_first_entry_or_null(&mf->zc.host_free, struct mp_rxbuf, node);
	if (rb)
		list_del(&rb->node);
	return rb;
}

/* The next frame to deliver waits for a posted buffer to be copied into. */
static bool mp_zc_copy_waiting(struct mp_file *mf)
{
	struct sk_buff_head *q = &mf->sk.sk_receive_queue;
	unsigned long flags;
	struct sk_buff *skb;
	bool waiting;

	spin_lock_irqsave(&q->lock, flags);
	skb = skb_peek(q);
	waiting = skb && !MP_SKB_CB(skb)->in_place;
	spin_unlock_irqrestore(&q->lock, flags);
	return waiting;
}

/*
 * The driver refills from softirq.  A few buffers stay behind for frames
 * that arrive in host memory after all (queued before the constructor was
 * attached, spread over several device buffers, copied by a packet tap).
 * A ring the guest left without buffers is watched: a device that cannot
 * receive stalls whatever sends to it (QEMU's hub stops the peer NIC, as
 * a flow-controlled switch port would), so after MP_RX_DRY_MS it gets
 * host buffers, and what lands in them is copied and queued for the
 * guest, or dropped and counted once our queue is full.  While such
 * copies wait, the guest's buffers go to them first: in order, and
 * before the device fills more.
 */
static struct netdev_page_ctor_buf *mp_zc_get_buf(struct netdev_page_ctor *ctor)
{
	struct mp_file *mf = container_of(ctor, struct mp_file, zc.ctor);
	struct mp_rxbuf *rb = NULL;
	unsigned long flags, due = 0;

	bool backlog = mp_zc_copy_waiting(mf);

	spin_lock_irqsave(&mf->zc.lock, flags);
	if (!mf->zc.stopping)
		rb = mf->zc.nr_ready > MP_RX_COPY_RESERVE && !backlog ?
		     mp_zc_lend_guest(mf) : mp_zc_lend_host(mf);
	if (!rb && !mf->zc.in_ring && mf->zc.feeding && !mf->zc.host_fill)
		due = mf->zc.dry_since + msecs_to_jiffies(MP_RX_DRY_MS);
	spin_unlock_irqrestore(&mf->zc.lock, flags);
	if (due)
		mp_zc_watch(mf, max_t(long, (long)(due - jiffies), 1));
	if (!rb)
		return NULL;
	/* Lent buffers keep the file, and so the constructor, alive. */
	sock_hold(&mf->sk);
	atomic_long_inc(&mp_lent_bufs);
	return &rb->cb;
}

/*
 * Where a buffer goes when the driver or the stack lets go of it: to be
 * unpinned when its frame went to the guest or its period is over, else
 * back among the ready ones.  zc.lock held.
 */
static struct list_head *mp_zc_home(struct mp_file *mf, struct mp_rxbuf *rb)
{
	if (rb->gen != mf->zc.gen) {
		atomic64_inc(&mf->zc.stale);
		return &mf->zc.done;
	}
	mf->zc.out--;
	if (rb->delivered)
		return &mf->zc.done;
	mf->zc.nr_ready++;
	return &mf->zc.ready;
}

static void mp_zc_put_buf(struct netdev_page_ctor *ctor,
			  struct netdev_page_ctor_buf *cb)
{
	struct mp_file *mf = container_of(ctor, struct mp_file, zc.ctor);
	struct mp_rxbuf *rb = container_of(cb, struct mp_rxbuf, cb);
	unsigned long flags;
	bool dry = false, refill = false;

	spin_lock_irqsave(&mf->zc.lock, flags);
	if (rb->host) {
		list_add_tail(&rb->node, &mf->zc.host_free);
		/* The driver stopped refilling when it ran out of these. */
		refill = mf->zc.host_fill && mf->zc.feeding;
	} else {
		dry = mp_zc_left_ring(mf, rb);
		list_add_tail(&rb->node, mp_zc_home(mf, rb));
	}
	spin_unlock_irqrestore(&mf->zc.lock, flags);
	if (dry || refill)
		mp_zc_watch(mf, dry ? msecs_to_jiffies(MP_RX_DRY_MS) : 0);
	atomic_long_dec(&mp_lent_bufs);
	sock_put(&mf->sk);
}

static const struct netdev_page_ctor_ops mp_rx_ctor_ops = {
	.get_buf = mp_zc_get_buf,
	.put_buf = mp_zc_put_buf,
};

static void mp_zc_free_list(struct mp_file *mf, struct list_head *list,
			    bool dirty)
{
	struct mp_rxbuf *rb, *tmp;

	list_for_each_entry_safe(rb, tmp, list, node) {
		mp_rxbuf_unpin(mf, rb, dirty);
		kfree(rb);
	}
}

/*
 * Host pages for a ring the guest left dry, the first time one is; the
 * dry watch only, so never twice at once.  Fewer than asked for will do.
 */
static int mp_zc_host_alloc(struct mp_file *mf)
{
	struct mp_rxbuf *rb;
	unsigned long flags;
	struct page *page;

	while (mf->zc.host_bufs < MP_RX_HOST_BUFS) {
		rb = kzalloc(sizeof(*rb), GFP_KERNEL_ACCOUNT);
		page = alloc_page(GFP_KERNEL_ACCOUNT);
		if (!rb || !page) {
			kfree(rb);
			if (page)
				__free_page(page);
			break;
		}
		rb->host = true;
		rb->cb.nr_frags = 1;
		rb->cb.size = PAGE_SIZE;
		rb->cb.frags[0].page = page;
		rb->cb.frags[0].len = PAGE_SIZE;
		spin_lock_irqsave(&mf->zc.lock, flags);
		list_add_tail(&rb->node, &mf->zc.host_free);
		spin_unlock_irqrestore(&mf->zc.lock, flags);
		mf->zc.host_bufs++;
	}
	return mf->zc.host_bufs ? 0 : -ENOMEM;
}

/* The host pages, none lent any more; any context. */
static void mp_zc_host_free(struct mp_file *mf)
{
	struct mp_rxbuf *rb, *tmp;

	list_for_each_entry_safe(rb, tmp, &mf->zc.host_free, node) {
		__free_page(rb->cb.frags[0].page);
		kfree(rb);
	}
	INIT_LIST_HEAD(&mf->zc.host_free);
	mf->zc.host_bufs = 0;
}

/* Unpin delivered and stale buffers; process context. */
static void mp_zc_unpin_done(struct mp_file *mf)
{
	unsigned long flags;
	LIST_HEAD(list);

	spin_lock_irqsave(&mf->zc.lock, flags);
	list_splice_init(&mf->zc.done, &list);
	spin_unlock_irqrestore(&mf->zc.lock, flags);
	mp_zc_free_list(mf, &list, true);
}

/* Give every buffer not lent back to the guest, unfilled. */
static void mp_zc_return_ready(struct mp_file *mf)
{
	struct mp_rxbuf *rb;

	while ((rb = mp_zc_take_ready(mf))) {
		mp_rxbuf_unpin(mf, rb, false);
		mp_zc_add(mf, rb, &mf->zc.returned);
	}
}

/*
 * End the period, if one runs, and start the next one (or none, with
 * @stop): what it left on our lists is never reported, and buffers still
 * out become stale.  Process context.
 */
static void mp_zc_next_period(struct mp_file *mf, bool stop)
{
	unsigned long flags;
	LIST_HEAD(old);

	spin_lock_irqsave(&mf->zc.lock, flags);
	mf->zc.gen++;
	mf->zc.stopping = stop;
	mf->zc.out = 0;
	mf->zc.posted = 0;
	list_splice_init(&mf->zc.ready, &old);
	list_splice_init(&mf->zc.returned, &old);
	mf->zc.nr_ready = 0;
	spin_unlock_irqrestore(&mf->zc.lock, flags);
	mp_zc_free_list(mf, &old, false);
}

/* Start or end the watch for a ring the guest leaves dry. */
static void mp_zc_set_feeding(struct mp_file *mf, bool feeding)
{
	unsigned long flags;

	spin_lock_irqsave(&mf->zc.lock, flags);
	mf->zc.feeding = feeding;
	mf->zc.host_fill = false;
	mf->zc.dry_since = jiffies;
	spin_unlock_irqrestore(&mf->zc.lock, flags);
}

/*
 * After feeding went off, nothing queues the watch again: cancel it.
 * The caller holds the file, so the reference the work held is not the
 * last one.
 */
static void mp_zc_unwatch(struct mp_file *mf)
{
	if (cancel_delayed_work_sync(&mf->zc.dry_work))
		sock_put(&mf->sk);
}

/*
 * Take the lent buffers back from the driver; RTNL held.  A driver that
 * cannot reset a ring keeps that ring's buffers until it can: they hold
 * the file, never reach the guest (their period ends), and are unpinned
 * when they come back.
 */
static void mp_zc_detach(struct mp_file *mf, struct net_device *dev)
{
	int err;

	ASSERT_RTNL();
	if (!mf->zc.attached)
		return;
	mp_zc_set_feeding(mf, false);
	err = netdev_page_ctor_detach(dev, &mf->zc.ctor);
	WRITE_ONCE(mf->zc.attached, false);
	mp_zc_unwatch(mf);
	if (err) {
		atomic_long_inc(&mp_detach_failures);
		netdev_warn(dev, "mpassthru: %d receive buffers stay with the driver until it resets its rings (%d)\n",
			    atomic_read(&mf->zc.ctor.lent), err);
	}
}

/* Have the driver refill its rings from us. */
static void mp_zc_wake(struct mp_file *mf)
{
	rcu_read_lock();
	if (rcu_dereference(mf->port) && READ_ONCE(mf->zc.attached))
		netdev_page_ctor_wakeup(&mf->zc.ctor);
	rcu_read_unlock();
}

/*
 * A ring left without guest buffers: once it has been dry for
 * MP_RX_DRY_MS, feed it host buffers until the guest posts again.
 * While it is fed, each host buffer that comes back is a refill.
 */
static void mp_zc_dry_work(struct work_struct *work)
{
	struct mp_file *mf = container_of(to_delayed_work(work), struct mp_file,
					  zc.dry_work);
	unsigned long flags, due;
	bool dry = false;
	long left = 0;

	spin_lock_irqsave(&mf->zc.lock, flags);
	due = mf->zc.dry_since + msecs_to_jiffies(MP_RX_DRY_MS);
	/* Not when detached, nor once the guest's buffers are back. */
	if (mf->zc.feeding && !mf->zc.in_ring) {
		if (mf->zc.host_fill || time_after_eq(jiffies, due))
			dry = true;
		else
			left = (long)(due - jiffies);
	}
	spin_unlock_irqrestore(&mf->zc.lock, flags);
	if (dry && mp_zc_host_alloc(mf))
		left = msecs_to_jiffies(MP_RX_DRY_MS);	/* no memory now */
	if (dry) {
		spin_lock_irqsave(&mf->zc.lock, flags);
		/* The guest may have posted meanwhile. */
		mf->zc.host_fill = mf->zc.feeding && mf->zc.host_bufs &&
				   mf->zc.nr_ready <= MP_RX_COPY_RESERVE;
		spin_unlock_irqrestore(&mf->zc.lock, flags);
		mp_zc_wake(mf);
	}
	if (left > 0)
		mp_zc_watch(mf, left);
	sock_put(&mf->sk);
}

/* Lend @dev our buffers; RTNL held. */
static int mp_zc_attach_dev(struct mp_file *mf, struct net_device *dev)
{
	int err;

	mp_zc_set_feeding(mf, true);
	err = netdev_page_ctor_attach(dev, &mf->zc.ctor);
	/* Whatever the reason, the copy path is the answer. */
	mf->zc.refused = err;
	WRITE_ONCE(mf->zc.attached, !err);
	if (err) {
		mp_zc_set_feeding(mf, false);
		mp_zc_unwatch(mf);
	}
	return err;
}

static int mp_zc_attach(struct mp_file *mf)
{
	struct mp_port *port;
	int err = 0;

	if (READ_ONCE(mf->zc.attached))
		return 0;
	rtnl_lock();
	port = rtnl_dereference(mf->port);
	if (!port)
		err = mp_unbound_err(mf);
	else if (mf->zc.refused)
		err = -EOPNOTSUPP;
	else if (!mf->zc.attached)
		err = mp_zc_attach_dev(mf, port->dev);
	rtnl_unlock();
	return err;
}

/* Bytes a buffer needs for any frame the device can receive, or -errno. */
static int mp_zc_room(struct mp_file *mf, size_t hdr_len)
{
	struct mp_port *port;
	int room;

	rcu_read_lock();
	port = rcu_dereference(mf->port);
	room = port ? hdr_len + VLAN_ETH_HLEN + READ_ONCE(port->dev->mtu) :
		      mp_unbound_err(mf);
	rcu_read_unlock();
	return room;
}

/* ---- the posted-receive protocol vhost-net drives ------------------------ */

/*
 * A ring this small would leave the device no buffer at all beside the
 * reserve: with nothing to receive into it would stop receiving, and a
 * switch (or QEMU's hub) in front of it would stall.  It receives by copy.
 */
#define MP_RX_MIN_RING		(2 * MP_RX_COPY_RESERVE)

static int mp_rx_claim(struct socket *sock, const void *owner,
		       unsigned int ring_size)
{
	struct mp_file *mf = mp_from_sock(sock);
	unsigned long flags;
	int err = 0;

	if (ring_size <= MP_RX_MIN_RING)
		return -ENOBUFS;
	spin_lock_irqsave(&mf->zc.lock, flags);
	if (mf->zc.owner && mf->zc.owner != owner)
		err = -EBUSY;
	else
		mf->zc.owner = owner;
	spin_unlock_irqrestore(&mf->zc.lock, flags);
	return err;
}

static void mp_rx_release(struct socket *sock, const void *owner)
{
	struct mp_file *mf = mp_from_sock(sock);

	if (READ_ONCE(mf->zc.owner) != owner)
		return;
	mp_zc_next_period(mf, true);
	mp_zc_unpin_done(mf);
	WRITE_ONCE(mf->zc.owner, NULL);
}

/* Bound to a device whose driver takes lent buffers and has not refused. */
static bool mp_rx_usable(struct socket *sock)
{
	struct mp_file *mf = mp_from_sock(sock);
	struct mp_port *port;
	bool usable;

	rcu_read_lock();
	port = rcu_dereference(mf->port);
	usable = port && port->dev->netdev_ops->ndo_page_ctor_set &&
		 !READ_ONCE(mf->zc.refused);
	rcu_read_unlock();
	return usable;
}

/* A buffer of @hdr_len header room and the chain @iov, pinned, or -errno. */
static struct mp_rxbuf *mp_rxbuf_make(struct mp_file *mf,
				      const struct iovec *iov,
				      unsigned int niov, u16 head,
				      size_t hdr_len)
{
	struct mp_rxbuf *rb;
	int room, err;

	room = mp_zc_room(mf, hdr_len);
	if (room < 0)
		return ERR_PTR(room);
	rb = kzalloc(sizeof(*rb), GFP_KERNEL_ACCOUNT);
	if (!rb)
		return ERR_PTR(-ENOMEM);
	rb->head = head;
	rb->hdr_len = hdr_len;
	err = mp_rxbuf_pin(mf, rb, iov, niov, room);
	if (!err)
		err = mp_rxbuf_layout(rb);
	if (err) {
		if (err == -EMSGSIZE)
			atomic64_inc(&mf->zc.too_small);
		mp_rxbuf_unpin(mf, rb, false);
		kfree(rb);
		return ERR_PTR(err);
	}
	return rb;
}

/*
 * Lend one guest receive buffer to the device, pinned until the frame
 * written into it is reaped or it is given back.  The first post after a
 * stop starts a new period.
 */
static int mp_rx_post(struct socket *sock, const struct iovec *iov,
		      unsigned int niov, u16 head, size_t hdr_len)
{
	struct mp_file *mf = mp_from_sock(sock);
	struct mp_rxbuf *rb;
	unsigned long flags;
	int err;

	if (!hdr_len || hdr_len > MP_MAX_VNET_HDR)
		return -EOPNOTSUPP;
	if (READ_ONCE(mf->zc.posted) >= MP_RX_POST_MAX)
		return -ENOSPC;
	if (READ_ONCE(mf->zc.stopping)) {
		mp_zc_next_period(mf, false);
		mp_zc_unpin_done(mf);
	}
	rb = mp_rxbuf_make(mf, iov, niov, head, hdr_len);
	if (IS_ERR(rb))
		return PTR_ERR(rb);
	err = mp_zc_attach(mf);
	if (err) {
		mp_rxbuf_unpin(mf, rb, false);
		kfree(rb);
		return err;
	}
	spin_lock_irqsave(&mf->zc.lock, flags);
	rb->gen = mf->zc.gen;
	mf->zc.posted++;
	list_add_tail(&rb->node, &mf->zc.ready);
	mf->zc.nr_ready++;
	/* The guest is back: no more host buffers, and the dry watch restarts. */
	mf->zc.dry_since = jiffies;
	if (mf->zc.nr_ready > MP_RX_COPY_RESERVE)
		mf->zc.host_fill = false;
	spin_unlock_irqrestore(&mf->zc.lock, flags);
	/* An unbind that ran meanwhile missed this one. */
	if (READ_ONCE(mf->state) != MPASSTHRU_STATE_BOUND)
		mp_zc_return_ready(mf);
	return 0;
}

/* Tell the driver that posted buffers are ready. */
static void mp_rx_kick(struct socket *sock)
{
	mp_zc_wake(mp_from_sock(sock));
}

/* The buffer @skb lies in, when it is to be delivered where it lies. */
static struct mp_rxbuf *mp_zc_in_place(struct mp_file *mf, struct sk_buff *skb)
{
	return MP_SKB_CB(skb)->in_place ? mp_rxbuf_of(mf, skb) : NULL;
}

/*
 * Put a received frame into a posted buffer: where it lies, or by copy
 * into @copy_to, a ready one.  A frame whose buffer outlived its period
 * is dropped.
 */
static int mp_zc_deliver(struct mp_file *mf, struct sk_buff *skb,
			 struct mp_rxbuf *copy_to, struct vmp_rx_done *done)
{
	struct mp_rxbuf *rb = copy_to ?: mp_zc_in_place(mf, skb);
	unsigned int len = copy_to ? skb->len : rb->cb.frame_len;
	int err = 0;

	if (!copy_to && rb->gen != READ_ONCE(mf->zc.gen))
		err = -ESTALE;
	else if (copy_to)
		err = mp_rxbuf_copy_skb(rb, skb, 0, rb->hdr_len, len);
	if (!err)
		err = mp_rxbuf_put_hdr(rb, skb, 0);
	if (err) {
		if (copy_to)
			mp_zc_add(mf, copy_to, &mf->zc.ready);
		mp_stat_add(mf, MP_RX_DROPPED, 1);
		kfree_skb(skb);
		return err;
	}

	done->head = rb->head;
	done->len = rb->hdr_len + len;
	mp_stat_add(mf, MP_RX_PACKETS, 1);
	mp_stat_add(mf, MP_RX_BYTES, len);
	mp_stat_add(mf, copy_to ? MP_RX_COPY_BYTES : MP_RX_ZCOPY_BYTES, len);
	rb->delivered = true;
	WRITE_ONCE(mf->zc.posted, mf->zc.posted - 1);
	if (copy_to)
		mp_zc_add(mf, rb, &mf->zc.done);
	/* Ours comes back through mp_zc_put_buf(), now as delivered. */
	consume_skb(skb);
	return 0;
}

static unsigned int mp_zc_take_returned(struct mp_file *mf,
					struct vmp_rx_done *done,
					unsigned int max)
{
	struct mp_rxbuf *rb;
	unsigned long flags;
	unsigned int n = 0;

	spin_lock_irqsave(&mf->zc.lock, flags);
	while (n < max && !list_empty(&mf->zc.returned)) {
		rb = list_first_entry(&mf->zc.returned, struct mp_rxbuf, node);
		list_del(&rb->node);
		done[n].head = rb->head;
		done[n++].len = 0;
		mf->zc.posted--;
		kfree(rb);
	}
	spin_unlock_irqrestore(&mf->zc.lock, flags);
	return n;
}

/*
 * The frame at the head of our queue, with the ready buffer it is to be
 * copied into (*@copy_to) unless it lies in one.  A copy with no buffer
 * to go to stays queued, and everything behind it waits: the guest
 * receives in order, and nothing is dropped for want of a buffer.
 */
static struct sk_buff *mp_zc_next_live(struct mp_file *mf,
				       struct mp_rxbuf **copy_to)
{
	struct sk_buff_head *q = &mf->sk.sk_receive_queue;
	struct sk_buff *skb;
	unsigned long flags;

	spin_lock_irqsave(&q->lock, flags);
	skb = skb_peek(q);
	if (skb && !mp_zc_in_place(mf, skb)) {
		*copy_to = mp_zc_take_ready(mf);
		if (!*copy_to)
			skb = NULL;
	}
	if (skb)
		__skb_unlink(skb, q);
	spin_unlock_irqrestore(&q->lock, flags);
	return skb;
}

/*
 * The next frame to put into a posted buffer.  While no period runs, only
 * frames that lie in one as they are to be delivered: the others wait for
 * the copy path.
 */
static struct sk_buff *mp_zc_next_frame(struct mp_file *mf,
					struct mp_rxbuf **copy_to)
{
	struct sk_buff_head *q = &mf->sk.sk_receive_queue;
	struct sk_buff *skb, *tmp;
	unsigned long flags;

	*copy_to = NULL;
	if (!READ_ONCE(mf->zc.stopping))
		return READ_ONCE(mf->zc.attached) ?
		       mp_zc_next_live(mf, copy_to) : NULL;
	spin_lock_irqsave(&q->lock, flags);
	skb_queue_walk_safe(q, skb, tmp) {
		if (mp_zc_in_place(mf, skb)) {
			__skb_unlink(skb, q);
			spin_unlock_irqrestore(&q->lock, flags);
			return skb;
		}
	}
	spin_unlock_irqrestore(&q->lock, flags);
	return NULL;
}

/*
 * Posted buffers that are the guest's again: filled (header included in
 * the length) or, with 0 bytes, given back unfilled.  Frames received
 * into host memory are copied into a posted buffer the driver has not
 * taken.
 */
static int mp_rx_reap(struct socket *sock, struct vmp_rx_done *done,
		      unsigned int max)
{
	struct mp_file *mf = mp_from_sock(sock);
	unsigned int n = mp_zc_take_returned(mf, done, max);
	struct mp_rxbuf *copy_to;
	struct sk_buff *skb;

	while (n < max && (skb = mp_zc_next_frame(mf, &copy_to))) {
		if (!mp_zc_deliver(mf, skb, copy_to, &done[n]))
			n++;
	}
	mp_zc_unpin_done(mf);
	return n;
}

/* Buffers of this period in our queue, in frames not yet delivered. */
static unsigned int mp_zc_queued(struct mp_file *mf)
{
	struct sk_buff_head *q = &mf->sk.sk_receive_queue;
	struct mp_rxbuf *rb;
	struct sk_buff *skb;
	unsigned long flags;
	unsigned int n = 0;

	spin_lock_irqsave(&q->lock, flags);
	skb_queue_walk(q, skb) {
		rb = mp_rxbuf_of(mf, skb);
		n += rb && rb->gen == READ_ONCE(mf->zc.gen);
	}
	spin_unlock_irqrestore(&q->lock, flags);
	return n;
}

/*
 * Frames of this period may still be on their way through the stack (a
 * GRO list, an RPS backlog): give them a moment to reach our queue or to
 * come back.  One held longer (a packet tap's clone) outlives the period.
 */
static void mp_zc_wait_out(struct mp_file *mf)
{
	unsigned long end = jiffies + msecs_to_jiffies(MP_RX_STOP_WAIT_MS);

	while (READ_ONCE(mf->zc.out) > mp_zc_queued(mf) &&
	       time_before(jiffies, end))
		usleep_range(500, 1000);
}

/*
 * End the period: the driver returns what it holds, and every buffer of
 * the period is then reported by the next reaps, filled or unfilled.
 */
static void mp_rx_stop(struct socket *sock)
{
	struct mp_file *mf = mp_from_sock(sock);
	struct mp_port *port;
	unsigned long flags;

	spin_lock_irqsave(&mf->zc.lock, flags);
	mf->zc.stopping = true;
	spin_unlock_irqrestore(&mf->zc.lock, flags);
	rtnl_lock();
	port = rtnl_dereference(mf->port);
	if (port)
		mp_zc_detach(mf, port->dev);
	rtnl_unlock();
	mp_zc_wait_out(mf);
	mp_zc_return_ready(mf);
	mp_zc_unpin_done(mf);
}

static const struct vmp_rx_post_ops mp_rx_post_ops = {
	.claim = mp_rx_claim,
	.release = mp_rx_release,
	.usable = mp_rx_usable,
	.post = mp_rx_post,
	.kick = mp_rx_kick,
	.reap = mp_rx_reap,
	.stop = mp_rx_stop,
};

#define MP_RX_POST_OPS	(&mp_rx_post_ops)

/* Whatever is left when the file goes; any context. */
static void mp_zc_free_all(struct mp_file *mf)
{
	/*
	 * Not dirtied, which may sleep: ready and returned buffers were never
	 * filled, and delivered ones are unpinned dirty by the reap or by
	 * the end of their period, unless the stack freed their skb later.
	 */
	mp_zc_free_list(mf, &mf->zc.ready, false);
	mp_zc_free_list(mf, &mf->zc.done, false);
	mp_zc_free_list(mf, &mf->zc.returned, false);
	mp_zc_host_free(mf);
}

static void mp_zc_reset(struct mp_file *mf)
{
	mf->zc.refused = false;
	atomic64_set(&mf->zc.too_small, 0);
	atomic64_set(&mf->zc.host_frames, 0);
}

static void mp_zc_show(struct seq_file *s, struct mp_file *mf)
{
	seq_printf(s, " rx_zc %d rx_posted %u rx_lent %d rx_too_small %lld rx_driver_copied %lld rx_claimed %d rx_stale %lld rx_host_frames %lld",
		   READ_ONCE(mf->zc.attached), READ_ONCE(mf->zc.posted),
		   atomic_read(&mf->zc.ctor.lent),
		   (s64)atomic64_read(&mf->zc.too_small),
		   (s64)atomic64_read(&mf->zc.ctor.copied_frames),
		   !!READ_ONCE(mf->zc.owner),
		   (s64)atomic64_read(&mf->zc.stale),
		   (s64)atomic64_read(&mf->zc.host_frames));
}

static void mp_zc_init(struct mp_file *mf)
{
	mf->zc.ctor.ops = &mp_rx_ctor_ops;
	spin_lock_init(&mf->zc.lock);
	INIT_LIST_HEAD(&mf->zc.ready);
	INIT_LIST_HEAD(&mf->zc.done);
	INIT_LIST_HEAD(&mf->zc.returned);
	INIT_LIST_HEAD(&mf->zc.host_free);
	INIT_DELAYED_WORK(&mf->zc.dry_work, mp_zc_dry_work);
	/* No period runs until the first post. */
	mf->zc.stopping = true;
}

#else /* !CONFIG_NET_PAGE_CTOR: no lent buffers, receive copies */

#define MP_RX_POST_OPS	NULL

static void mp_zc_detach(struct mp_file *mf, struct net_device *dev)
{
}

static void mp_zc_return_ready(struct mp_file *mf)
{
}

static void mp_zc_unpin_done(struct mp_file *mf)
{
}

static void mp_zc_free_all(struct mp_file *mf)
{
}

static void mp_zc_reset(struct mp_file *mf)
{
}

static void mp_zc_show(struct seq_file *s, struct mp_file *mf)
{
}

static void mp_zc_init(struct mp_file *mf)
{
}
#endif /* CONFIG_NET_PAGE_CTOR */

/* ---- transmit: file to device ------------------------------------------- */

/* The bound device, with a reference for the caller, or an ERR_PTR(). */
static struct net_device *mp_get_dev(struct mp_file *mf,
				     netdevice_tracker *tracker)
{
	struct net_device *dev = NULL;
	struct mp_port *port;

	rcu_read_lock();
	port = rcu_dereference(mf->port);
	if (port) {
		dev = port->dev;
		netdev_hold(dev, tracker, GFP_ATOMIC);
	}
	rcu_read_unlock();
	return dev ?: ERR_PTR(mp_unbound_err(mf));
}

static void mp_zc_complete(struct sk_buff *skb, struct ubuf_info *ubuf,
			   bool success)
{
	struct mp_ubuf *mu = container_of(ubuf, struct mp_ubuf, ubuf);
	struct ubuf_info *upper = mu->upper;
	struct mp_file *mf = mu->mf;

	/* Clones share the ubuf; only the last reference completes it. */
	if (!refcount_dec_and_test(&ubuf->refcnt))
		return;
	atomic_long_sub(mu->npages, &mp_pinned_pages);
	mp_stat_add(mf, MP_PINNED_PAGES, -(s64)mu->npages);
	kfree(mu);
	if (upper)
		upper->ops->complete(skb, upper, success);
	sock_put(&mf->sk);
}

/*
 * Our ubufs only ever go on skbs we build ourselves, never onto a stream
 * socket's, so link_skb is not needed.
 */
static const struct ubuf_info_ops mp_zc_ops = {
	.complete = mp_zc_complete,
};

static struct mp_ubuf *mp_ubuf_alloc(struct mp_file *mf,
				     struct ubuf_info *upper)
{
	struct mp_ubuf *mu = kzalloc(sizeof(*mu), GFP_KERNEL);

	if (!mu)
		return NULL;
	mu->ubuf.ops = &mp_zc_ops;
	mu->ubuf.flags = SKBFL_ZEROCOPY_FRAG;
	refcount_set(&mu->ubuf.refcnt, 1);
	mu->upper = upper;
	mu->mf = mf;
	return mu;
}

/* From here on the skb owns the pages, and its completion owns @mu. */
static void mp_ubuf_attach(struct sk_buff *skb, struct mp_ubuf *mu)
{
	mu->npages = skb_shinfo(skb)->nr_frags;
	atomic_long_add(mu->npages, &mp_pinned_pages);
	mp_stat_add(mu->mf, MP_PINNED_PAGES, mu->npages);
	sock_hold(&mu->mf->sk);
	skb_zcopy_init(skb, &mu->ubuf);
}

/* Read and check the virtio-net header in front of a frame of @len. */
static int mp_get_vnet_hdr(struct iov_iter *from, size_t hlen, size_t len,
			   struct virtio_net_hdr *hdr)
{
	u16 start, off, hdr_len;

	memset(hdr, 0, sizeof(*hdr));
	if (!hlen)
		return 0;
	if (!copy_from_iter_full(hdr, sizeof(*hdr), from))
		return -EFAULT;
	iov_iter_advance(from, hlen - sizeof(*hdr));
	start = __virtio16_to_cpu(true, hdr->csum_start);
	off = __virtio16_to_cpu(true, hdr->csum_offset);
	hdr_len = __virtio16_to_cpu(true, hdr->hdr_len);
	if ((hdr->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) &&
	    (u32)start + off + 2 > hdr_len)
		hdr_len = start + off + 2;
	if (hdr_len > len)
		return -EINVAL;
	hdr->hdr_len = __cpu_to_virtio16(true, hdr_len);
	return 0;
}

static struct sk_buff *mp_alloc_skb(struct mp_file *mf, struct net_device *dev,
				    size_t len, size_t linear, bool noblock)
{
	size_t prepad = LL_RESERVED_SPACE(dev);
	struct sk_buff *skb;
	int err;

	skb = sock_alloc_send_pskb(&mf->sk, prepad + linear, len - linear,
				   noblock, &err, PAGE_ALLOC_COSTLY_ORDER);
	if (!skb)
		return ERR_PTR(err);
	skb_reserve(skb, prepad);
	skb_put(skb, linear);
	skb->data_len = len - linear;
	skb->len += len - linear;
	return skb;
}

/* Point the skb's headers at the Ethernet frame it carries. */
static void mp_set_headers(struct sk_buff *skb, struct net_device *dev)
{
	int depth;

	skb->dev = dev;
	skb_reset_mac_header(skb);
	skb->protocol = eth_hdr(skb)->h_proto;
	skb_set_network_header(skb, ETH_HLEN);
	if (eth_type_vlan(skb->protocol) &&
	    vlan_get_protocol_and_depth(skb, skb->protocol, &depth) != 0)
		skb_set_network_header(skb, depth);
	skb_probe_transport_header(skb);
}

/*
 * Build an skb for @len bytes of frame at @from: with @mu, the headers
 * are copied and the rest of the frame stays in the caller's pages.
 */
static struct sk_buff *mp_build_skb(struct mp_file *mf, struct net_device *dev,
				    struct iov_iter *from, size_t len,
				    size_t hdr_len, struct mp_ubuf *mu,
				    bool noblock)
{
	size_t linear = min_t(size_t, len, SKB_MAX_HEAD(LL_RESERVED_SPACE(dev)));
	struct sk_buff *skb;
	int err;

	if (mu)
		linear = min(linear, max_t(size_t, hdr_len ?: MP_COPY_HDR_LEN,
					   ETH_HLEN));
	else if (len + LL_RESERVED_SPACE(dev) >= PAGE_SIZE)
		linear = min(linear, max_t(size_t, hdr_len, MP_COPY_HDR_LEN));
	skb = mp_alloc_skb(mf, dev, mu ? linear : len, linear, noblock);
	if (IS_ERR(skb))
		return skb;
	if (mu)
		err = zerocopy_sg_from_iter(skb, from);
	else
		err = skb_copy_datagram_from_iter(skb, 0, from, len);
	if (err) {
		kfree_skb(skb);
		return ERR_PTR(-EFAULT);
	}
	return skb;
}

/* Zero-copy only pays for large frames that fit the skb's fragments. */
static bool mp_want_zcopy(struct ubuf_info *upper, struct iov_iter *from,
			  size_t len)
{
	return upper && len >= MP_ZC_MIN_LEN &&
	       iov_iter_npages(from, INT_MAX) <= MAX_SKB_FRAGS;
}

static void mp_xmit(struct mp_file *mf, struct sk_buff *skb, size_t len,
		    bool zcopy)
{
	int r;

	mp_stat_add(mf, MP_TX_PACKETS, 1);
	mp_stat_add(mf, MP_TX_BYTES, len);
	mp_stat_add(mf, zcopy ? MP_TX_ZCOPY_BYTES : MP_TX_COPY_BYTES, len);
	r = dev_queue_xmit(skb);
	if (r != NET_XMIT_SUCCESS && r != NET_XMIT_CN)
		mp_stat_add(mf, MP_TX_DROPPED, 1);
}

/*
 * What the device may be asked to send: a frame within its MTU (one VLAN
 * tag allowed on top, as the bridge does), or GSO segments within it.
 * Some NICs reset on oversized frames.
 */
static int mp_check_mtu(const struct net_device *dev,
			const struct virtio_net_hdr *hdr, size_t len)
{
	unsigned int mtu = READ_ONCE(dev->mtu);

	if (hdr->gso_type == VIRTIO_NET_HDR_GSO_NONE)
		return len > mtu + dev->hard_header_len + VLAN_HLEN ?
		       -EMSGSIZE : 0;
	return __virtio16_to_cpu(true, hdr->gso_size) > mtu ? -EMSGSIZE : 0;
}

static ssize_t mp_send_one(struct mp_file *mf, struct iov_iter *from,
			   struct ubuf_info *upper, bool noblock)
{
	size_t total = iov_iter_count(from), hlen = mp_hdr_len(mf), len;
	struct mp_ubuf *mu = NULL;
	struct virtio_net_hdr hdr;
	netdevice_tracker tracker;
	struct net_device *dev;
	struct sk_buff *skb;
	int err;

	if (total < hlen + ETH_HLEN || total - hlen > MP_MAX_FRAME)
		return -EINVAL;
	len = total - hlen;
	err = mp_get_vnet_hdr(from, hlen, len, &hdr);
	if (err)
		return err;
	dev = mp_get_dev(mf, &tracker);
	if (IS_ERR(dev))
		return PTR_ERR(dev);
	err = mp_check_mtu(dev, &hdr, len);
	if (err)
		goto out;
	if (mp_want_zcopy(upper, from, len))
		mu = mp_ubuf_alloc(mf, upper);
	skb = mp_build_skb(mf, dev, from, len,
			   __virtio16_to_cpu(true, hdr.hdr_len), mu, noblock);
	if (IS_ERR(skb)) {
		err = PTR_ERR(skb);
		goto out;
	}
	if (virtio_net_hdr_to_skb(skb, &hdr, true)) {
		kfree_skb(skb);
		err = -EINVAL;
		goto out;
	}
	mp_set_headers(skb, dev);
	if (mu) {
		mp_ubuf_attach(skb, mu);
		mu = NULL;
	} else if (upper) {
		upper->ops->complete(NULL, upper, false);
	}
	mp_xmit(mf, skb, len, skb_zcopy(skb));
out:
	kfree(mu);
	netdev_put(dev, &tracker);
	return err ?: total;
}

/*
 * Send one frame (virtio-net header first, when the binding has one).
 * With @upper, the caller's buffers may stay in the skb until @upper is
 * completed; @upper is completed exactly once if we return success, and
 * never if we fail.  Returns the bytes consumed.
 */
static ssize_t mp_send(struct mp_file *mf, struct iov_iter *from,
		       struct ubuf_info *upper, bool noblock)
{
	ssize_t r = mp_send_one(mf, from, upper, noblock);

	/* A full send buffer is not a drop: the caller tries again. */
	if (r < 0 && r != -EAGAIN && r != -ERESTARTSYS)
		mp_stat_add(mf, MP_TX_DROPPED, 1);
	return r;
}

/* ---- the socket vhost-net uses ------------------------------------------ */

static int mp_sendmsg(struct socket *sock, struct msghdr *m, size_t len)
{
	struct tun_msg_ctl *ctl = m->msg_control;
	struct ubuf_info *upper = NULL;

	/* Only vhost-net reaches this, with kernel pointers in msg_control. */
	if (ctl) {
		if (ctl->type != TUN_MSG_UBUF)
			return -EINVAL;
		upper = ctl->ptr;
	}
	return mp_send(mp_from_sock(sock), &m->msg_iter, upper,
		       m->msg_flags & MSG_DONTWAIT);
}

static int mp_recvmsg(struct socket *sock, struct msghdr *m, size_t len,
		      int flags)
{
	size_t copied = 0;
	ssize_t r;

	if (flags & ~(MSG_DONTWAIT | MSG_TRUNC))
		return -EINVAL;
	r = mp_recv(mp_from_sock(sock), &m->msg_iter, flags & MSG_DONTWAIT,
		    &copied);
	if (r < 0)
		return r;
	if (copied < r)
		m->msg_flags |= MSG_TRUNC;
	return (flags & MSG_TRUNC) ? r : copied;
}

static int mp_peek_len(struct socket *sock)
{
	struct sk_buff_head *q = &mp_from_sock(sock)->sk.sk_receive_queue;
	struct sk_buff *skb;
	unsigned long flags;
	int len = 0;

	spin_lock_irqsave(&q->lock, flags);
	skb = skb_peek(q);
	if (skb)
		len = skb->len;
	spin_unlock_irqrestore(&q->lock, flags);
	return len;
}

static const struct proto_ops mp_socket_ops = {
	.peek_len	= mp_peek_len,
	.sendmsg	= mp_sendmsg,
	.recvmsg	= mp_recvmsg,
};

static const struct file_operations mp_fops;

/*
 * For vhost-net: the socket behind an mpassthru file, valid for as long as
 * the caller holds its reference on @file; ERR_PTR(-EINVAL) for any other
 * file.
 */
static struct socket *mp_get_socket(struct file *file)
{
	if (file->f_op != &mp_fops)
		return ERR_PTR(-EINVAL);
	return &((struct mp_file *)file->private_data)->socket;
}

/* How vhost-net recognises and drives us, without a symbol of ours. */
static struct vmp_net_backend_type mp_backend = {
	.name		= "mpassthru",
	.owner		= THIS_MODULE,
	.get_socket	= mp_get_socket,
	.flags		= VMP_BACKEND_UBUF,
	.rx_post	= MP_RX_POST_OPS,
};

/* ---- binding ------------------------------------------------------------ */

static void mp_reset_stats(struct mp_file *mf)
{
	unsigned int i;

	for (i = 0; i < MP_NR_STATS; i++)
		if (i != MP_PINNED_PAGES)
			atomic64_set(&mf->stats[i], 0);
}

/* Undo the binding, if any, and leave @state behind.  RTNL held. */
static void mp_detach(struct mp_file *mf, u32 state)
{
	struct mp_port *port = rtnl_dereference(mf->port);

	ASSERT_RTNL();
	if (!port)
		return;
	/* The driver gives back what it holds, then no frame lands in one. */
	mp_zc_detach(mf, port->dev);
	/* Waits for running handlers: nothing is queued after this. */
	netdev_rx_handler_unregister(port->dev);
	dev_set_promiscuity(port->dev, -1);
	RCU_INIT_POINTER(mf->port, NULL);
	WRITE_ONCE(mf->state, state);
	netdev_put(port->dev, &port->tracker);
	kfree_rcu(port, rcu);
	skb_queue_purge(&mf->sk.sk_receive_queue);
	/* Posted buffers go back to the guest through the next reap. */
	mp_zc_return_ready(mf);
	mp_zc_unpin_done(mf);
	/* Readers and pollers learn that the device is gone. */
	wake_up_interruptible_poll(sk_sleep(&mf->sk),
				   EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP);
}

static int mp_check_dev(const struct net_device *dev)
{
	if (dev->type != ARPHRD_ETHER || dev->addr_len != ETH_ALEN ||
	    (dev->flags & IFF_LOOPBACK))
		return -EOPNOTSUPP;
	return 0;
}

/* Bind @name; RTNL held.  The caller's capability was checked. */
static int mp_attach(struct mp_file *mf, const char *name, u32 flags)
{
	struct mp_port *port;
	struct net_device *dev;
	int err;

	if (rtnl_dereference(mf->port))
		return -EBUSY;
	dev = __dev_get_by_name(sock_net(&mf->sk), name);
	if (!dev)
		return -ENODEV;
	err = mp_check_dev(dev);
	if (err)
		return err;
	port = kzalloc(sizeof(*port), GFP_KERNEL_ACCOUNT);
	if (!port)
		return -ENOMEM;
	port->dev = dev;
	port->mf = mf;
	/* The guest has its own MAC address: take every frame. */
	err = dev_set_promiscuity(dev, 1);
	if (err)
		goto free;
	/* -EBUSY if another mpassthru, a bridge or a bond has the device. */
	err = netdev_rx_handler_register(dev, mp_handle_frame, port);
	if (err) {
		dev_set_promiscuity(dev, -1);
		goto free;
	}
	netdev_hold(dev, &port->tracker, GFP_KERNEL);
	mp_reset_stats(mf);
	mp_zc_reset(mf);
	WRITE_ONCE(mf->flags, flags);
	mf->ifindex = dev->ifindex;
	strscpy(mf->ifname, dev->name, sizeof(mf->ifname));
	WRITE_ONCE(mf->state, MPASSTHRU_STATE_BOUND);
	rcu_assign_pointer(mf->port, port);
	return 0;
free:
	kfree(port);
	return err;
}

static long mp_bind(struct mp_file *mf, void __user *argp)
{
	struct mpassthru_bind b;
	int err;

	if (copy_from_user(&b, argp, sizeof(b)))
		return -EFAULT;
	if ((b.flags & ~MPASSTHRU_BIND_FLAGS) || b.reserved)
		return -EINVAL;
	if (!b.ifname[0] || strnlen(b.ifname, sizeof(b.ifname)) == sizeof(b.ifname))
		return -EINVAL;
	/* The device belongs to the namespace the file was opened in. */
	if (!ns_capable(sock_net(&mf->sk)->user_ns, CAP_NET_ADMIN))
		return -EPERM;
	rtnl_lock();
	err = mp_attach(mf, b.ifname, b.flags);
	rtnl_unlock();
	return err;
}

static long mp_unbind(struct mp_file *mf)
{
	int err = 0;

	rtnl_lock();
	if (rtnl_dereference(mf->port))
		mp_detach(mf, MPASSTHRU_STATE_UNBOUND);
	else
		err = mp_unbound_err(mf);
	rtnl_unlock();
	return err;
}

static void mp_fill_stats(struct mp_file *mf, struct mpassthru_stats *st)
{
	u64 *v = (u64 *)st;
	unsigned int i;

	BUILD_BUG_ON(sizeof(*st) != MP_NR_STATS * sizeof(u64));
	for (i = 0; i < MP_NR_STATS; i++)
		v[i] = atomic64_read(&mf->stats[i]);
}

static long mp_get_info(struct mp_file *mf, void __user *argp)
{
	struct mpassthru_info info = { };

	info.state = READ_ONCE(mf->state);
	if (info.state == MPASSTHRU_STATE_BOUND)
		info.ifindex = mf->ifindex;
	info.flags = mf->flags;
	info.vnet_hdr_sz = mp_hdr_len(mf);
	info.features = mf->offloads;
	memcpy(info.ifname, mf->ifname, sizeof(info.ifname));
	mp_fill_stats(mf, &info.stats);
	return copy_to_user(argp, &info, sizeof(info)) ? -EFAULT : 0;
}

/* ---- the TUN ioctls QEMU issues on "-netdev tap,fd=N" ------------------- */

/*
 * Only ifr_name and ifr_flags are written: they sit at the same offsets
 * in the 32-bit and the 64-bit struct ifreq, so compat needs nothing.
 */
static long mp_tun_get_iff(struct mp_file *mf, void __user *argp)
{
	struct ifreq ifr = { };

	if (READ_ONCE(mf->state) != MPASSTHRU_STATE_BOUND)
		return -EBADFD;
	memcpy(ifr.ifr_name, mf->ifname, IFNAMSIZ);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	if (mf->flags & MPASSTHRU_F_VNET_HDR)
		ifr.ifr_flags |= IFF_VNET_HDR;
	if (copy_to_user(argp, &ifr, offsetofend(struct ifreq, ifr_flags)))
		return -EFAULT;
	return 0;
}

static netdev_features_t mp_offloads_to_features(unsigned long arg)
{
	netdev_features_t f = 0;

	if (!(arg & TUN_F_CSUM))
		return 0;
	f = NETIF_F_HW_CSUM;
	if (arg & (TUN_F_TSO4 | TUN_F_TSO6)) {
		if (arg & TUN_F_TSO4)
			f |= NETIF_F_TSO;
		if (arg & TUN_F_TSO6)
			f |= NETIF_F_TSO6;
		if (arg & TUN_F_TSO_ECN)
			f |= NETIF_F_TSO_ECN;
	}
	if ((arg & (TUN_F_USO4 | TUN_F_USO6)) == (TUN_F_USO4 | TUN_F_USO6))
		f |= NETIF_F_GSO_UDP_L4;
	return f;
}

static long mp_tun_set_offload(struct mp_file *mf, unsigned long arg)
{
	if (arg & ~MP_OFFLOADS)
		return -EINVAL;
	mf->offloads = arg;
	WRITE_ONCE(mf->rx_features, mp_offloads_to_features(arg));
	return 0;
}

static long mp_tun_set_hdrsz(struct mp_file *mf, int __user *argp)
{
	int sz;

	if (get_user(sz, argp))
		return -EFAULT;
	if (sz < (int)sizeof(struct virtio_net_hdr) || sz > MP_MAX_VNET_HDR)
		return -EINVAL;
	WRITE_ONCE(mf->vnet_hdr_sz, sz);
	return 0;
}

static long mp_tun_set_sndbuf(struct mp_file *mf, int __user *argp)
{
	int sndbuf;

	if (get_user(sndbuf, argp))
		return -EFAULT;
	if (sndbuf <= 0)
		return -EINVAL;
	WRITE_ONCE(mf->sk.sk_sndbuf, sndbuf);
	/* A larger buffer may let a blocked writer go on. */
	mf->sk.sk_write_space(&mf->sk);
	return 0;
}

/* We only speak little-endian headers (VERSION_1, or a legacy LE guest). */
static long mp_tun_set_vnet_le(int __user *argp)
{
	int le;

	if (get_user(le, argp))
		return -EFAULT;
	return le || virtio_legacy_is_little_endian() ? 0 : -EINVAL;
}

static long mp_tun_ioctl(struct mp_file *mf, unsigned int cmd,
			 unsigned long arg)
{
	int __user *ip = (int __user *)arg;

	switch (cmd) {
	case TUNGETIFF:
		return mp_tun_get_iff(mf, (void __user *)arg);
	case TUNGETFEATURES:
		return put_user(MP_TUN_FEATURES, (unsigned int __user *)arg);
	case TUNSETOFFLOAD:
		return mp_tun_set_offload(mf, arg);
	case TUNGETVNETHDRSZ:
		return put_user(READ_ONCE(mf->vnet_hdr_sz), ip);
	case TUNSETVNETHDRSZ:
		return mp_tun_set_hdrsz(mf, ip);
	case TUNGETSNDBUF:
		return put_user(READ_ONCE(mf->sk.sk_sndbuf), ip);
	case TUNSETSNDBUF:
		return mp_tun_set_sndbuf(mf, ip);
	case TUNGETVNETLE:
		return put_user(1, ip);
	case TUNSETVNETLE:
		return mp_tun_set_vnet_le(ip);
	default:
		return -ENOTTY;
	}
}

/* ---- file operations ---------------------------------------------------- */

static long mp_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct mp_file *mf = file->private_data;
	void __user *argp = (void __user *)arg;
	long r;

	mutex_lock(&mf->lock);
	switch (cmd) {
	case MPASSTHRU_BIND:
		r = mp_bind(mf, argp);
		break;
	case MPASSTHRU_UNBIND:
		r = mp_unbind(mf);
		break;
	case MPASSTHRU_GET_INFO:
		r = mp_get_info(mf, argp);
		break;
	default:
		r = mp_tun_ioctl(mf, cmd, arg);
		break;
	}
	mutex_unlock(&mf->lock);
	return r;
}

static bool mp_noblock(const struct kiocb *iocb)
{
	return (iocb->ki_filp->f_flags & O_NONBLOCK) ||
	       (iocb->ki_flags & IOCB_NOWAIT);
}

static ssize_t mp_read_iter(struct kiocb *iocb, struct iov_iter *to)
{
	struct mp_file *mf = iocb->ki_filp->private_data;
	size_t copied = 0;
	ssize_t r;

	r = mp_recv(mf, to, mp_noblock(iocb), &copied);
	return r < 0 ? r : copied;
}

static ssize_t mp_write_iter(struct kiocb *iocb, struct iov_iter *from)
{
	struct mp_file *mf = iocb->ki_filp->private_data;

	/* A write() returns before the device is done: always copy. */
	return mp_send(mf, from, NULL, mp_noblock(iocb));
}

static __poll_t mp_poll(struct file *file, poll_table *wait)
{
	struct mp_file *mf = file->private_data;
	struct sock *sk = &mf->sk;
	__poll_t mask = 0;

	poll_wait(file, sk_sleep(sk), wait);
	if (!skb_queue_empty_lockless(&sk->sk_receive_queue))
		mask |= EPOLLIN | EPOLLRDNORM;
	if (READ_ONCE(mf->state) != MPASSTHRU_STATE_BOUND)
		return mask | EPOLLERR | EPOLLHUP;
	if (sock_writeable(sk))
		mask |= EPOLLOUT | EPOLLWRNORM;
	return mask;
}

static void mp_sk_destruct(struct sock *sk)
{
	mp_zc_free_all((struct mp_file *)sk);
}

static int mp_open(struct inode *inode, struct file *file)
{
	struct mp_file *mf;

	mf = (struct mp_file *)sk_alloc(current->nsproxy->net_ns, AF_UNSPEC,
					GFP_KERNEL, &mp_proto, 0);
	if (!mf)
		return -ENOMEM;
	/* sk_alloc() zeroed all of it: unbound, no flags, no counters. */
	mf->vnet_hdr_sz = sizeof(struct virtio_net_hdr);
	mutex_init(&mf->lock);
	init_waitqueue_head(&mf->socket.wq.wait);
	mf->socket.file = file;
	mf->socket.ops = &mp_socket_ops;
	sock_init_data_uid(&mf->socket, &mf->sk, current_fsuid());
	/* As a tap: unlimited until the owner says otherwise. */
	mf->sk.sk_sndbuf = INT_MAX;
	sock_set_flag(&mf->sk, SOCK_ZEROCOPY);
	mp_zc_init(mf);
	mf->sk.sk_destruct = mp_sk_destruct;
	file->private_data = mf;
	mutex_lock(&mp_files_lock);
	list_add_tail(&mf->node, &mp_files);
	mutex_unlock(&mp_files_lock);
	return stream_open(inode, file);
}

static int mp_release(struct inode *inode, struct file *file)
{
	struct mp_file *mf = file->private_data;

	mutex_lock(&mp_files_lock);
	list_del(&mf->node);
	mutex_unlock(&mp_files_lock);
	rtnl_lock();
	/* Purges the receive queue: only a bound file can have one. */
	mp_detach(mf, MPASSTHRU_STATE_UNBOUND);
	rtnl_unlock();
	mutex_destroy(&mf->lock);
	/* Frames still in flight hold the socket until they complete. */
	sock_put(&mf->sk);
	return 0;
}

static const struct file_operations mp_fops = {
	.owner		= THIS_MODULE,
	.open		= mp_open,
	.release	= mp_release,
	.read_iter	= mp_read_iter,
	.write_iter	= mp_write_iter,
	.poll		= mp_poll,
	.unlocked_ioctl	= mp_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
};

static struct miscdevice mp_misc = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= "mpassthru",
	.fops	= &mp_fops,
	.mode	= 0600,
};

/* ---- device unregistration ---------------------------------------------- */

static int mp_netdev_event(struct notifier_block *nb, unsigned long event,
			   void *ptr)
{
	struct net_device *dev = netdev_notifier_info_to_dev(ptr);
	struct mp_port *port;

	if (event != NETDEV_UNREGISTER ||
	    rcu_access_pointer(dev->rx_handler) != mp_handle_frame)
		return NOTIFY_DONE;
	port = rtnl_dereference(dev->rx_handler_data);
	pr_info("%s is going away: binding torn down\n", dev->name);
	mp_detach(port->mf, MPASSTHRU_STATE_GONE);
	return NOTIFY_OK;
}

static struct notifier_block mp_notifier = {
	.notifier_call = mp_netdev_event,
};

/* ---- debugfs ------------------------------------------------------------ */

static const char * const mp_stat_names[MP_NR_STATS] = {
	"rx_packets", "rx_bytes", "rx_zcopy_bytes", "rx_copy_bytes",
	"rx_dropped", "tx_packets", "tx_bytes", "tx_zcopy_bytes",
	"tx_copy_bytes", "tx_dropped", "pinned_pages",
};

static int mp_bindings_show(struct seq_file *s, void *unused)
{
	struct mp_file *mf;
	unsigned int i;

	seq_printf(s, "pinned_pages %ld\n", atomic_long_read(&mp_pinned_pages));
	mutex_lock(&mp_files_lock);
	list_for_each_entry(mf, &mp_files, node) {
		seq_printf(s, "file %s state %u", mf->ifname,
			   READ_ONCE(mf->state));
		for (i = 0; i < MP_NR_STATS; i++)
			seq_printf(s, " %s %lld", mp_stat_names[i],
				   (s64)atomic64_read(&mf->stats[i]));
		mp_zc_show(s, mf);
		seq_putc(s, '\n');
	}
	mutex_unlock(&mp_files_lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(mp_bindings);

/* One of the module-wide counters above; @data is the atomic_long_t. */
static int mp_counter_get(void *data, u64 *val)
{
	*val = atomic_long_read(data);
	return 0;
}
DEFINE_DEBUGFS_ATTRIBUTE(mp_counter_fops, mp_counter_get, NULL, "%llu\n");

static void mp_debugfs_init(void)
{
	mp_dbg_root = debugfs_create_dir("mpassthru", NULL);
	debugfs_create_file("bindings", 0444, mp_dbg_root, NULL,
			    &mp_bindings_fops);
	debugfs_create_file_unsafe("pinned_pages", 0444, mp_dbg_root,
				   &mp_pinned_pages, &mp_counter_fops);
	debugfs_create_file_unsafe("lent_buffers", 0444, mp_dbg_root,
				   &mp_lent_bufs, &mp_counter_fops);
	debugfs_create_file_unsafe("detach_failures", 0444, mp_dbg_root,
				   &mp_detach_failures, &mp_counter_fops);
}

static int __init mp_init(void)
{
	int r;

	r = register_netdevice_notifier(&mp_notifier);
	if (r)
		return r;
	r = misc_register(&mp_misc);
	if (r)
		goto notifier;
	r = vmp_net_register_backend(&mp_backend);
	if (r)
		goto misc;
	mp_debugfs_init();
	return 0;
misc:
	misc_deregister(&mp_misc);
notifier:
	unregister_netdevice_notifier(&mp_notifier);
	return r;
}
module_init(mp_init);

static void __exit mp_exit(void)
{
	debugfs_remove(mp_dbg_root);
	vmp_net_unregister_backend(&mp_backend);
	misc_deregister(&mp_misc);
	unregister_netdevice_notifier(&mp_notifier);
	/* kfree_rcu() of the last ports. */
	rcu_barrier();
}
module_exit(mp_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("mpassthru: a host Ethernet device bound to one guest");
