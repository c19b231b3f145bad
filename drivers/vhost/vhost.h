/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vhost-mp core: virtqueues that live in a user process' memory and are
 * served by a kernel worker running as a thread of that process.
 *
 * The core knows about split rings, the guest memory table, eventfds and
 * dirty logging.  A device driver (vhost-net) embeds a struct vmp_dev,
 * supplies one handler per virtqueue, and moves the payload.
 */
#ifndef _VHOST_MP_VHOST_H
#define _VHOST_MP_VHOST_H

#include <linux/compiler.h>
#include <linux/eventfd.h>
#include <linux/llist.h>
#include <linux/mutex.h>
#include <linux/poll.h>
#include <linux/types.h>
#include <linux/uio.h>
#include <linux/virtio_byteorder.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <linux/vhost_types.h>

struct vmp_dev;
struct vmp_vq;
struct vmp_work;
struct file;
struct socket;

/* Features every vhost-mp device understands on its rings. */
#define VMP_CORE_FEATURES					\
	(BIT_ULL(VIRTIO_F_VERSION_1) |				\
	 BIT_ULL(VIRTIO_F_NOTIFY_ON_EMPTY) |			\
	 BIT_ULL(VIRTIO_F_ANY_LAYOUT) |				\
	 BIT_ULL(VIRTIO_RING_F_INDIRECT_DESC) |			\
	 BIT_ULL(VIRTIO_RING_F_EVENT_IDX) |			\
	 BIT_ULL(VHOST_F_LOG_ALL))

/* Upper bound on iovec entries gathered for one packet. */
#define VMP_MAX_SEGS		UIO_MAXIOV
/* Largest ring the ABI allows for a split ring. */
#define VMP_MAX_RING		32768U

typedef void (*vmp_work_fn_t)(struct vmp_work *work);

/**
 * struct vmp_work - one unit of deferred work run by the device worker
 * @node: link in the worker's lock-free list
 * @flags: VMP_WORK_QUEUED while on the list
 * @fn: what to run
 */
struct vmp_work {
	struct llist_node node;
	unsigned long flags;
	vmp_work_fn_t fn;
};

/**
 * struct vmp_poll - wait queue hook that turns file readiness into work
 * @wait: our entry on the file's wait queue
 * @table: poll table used to find that wait queue
 * @wqh: the wait queue we are on, NULL when idle
 * @mask: events that should queue @work
 * @dev: device whose worker runs @work
 * @work: work queued on readiness
 */
struct vmp_poll {
	wait_queue_entry_t wait;
	poll_table table;
	wait_queue_head_t *wqh;
	__poll_t mask;
	struct vmp_dev *dev;
	struct vmp_work *work;
};

/**
 * struct vmp_log_range - guest-physical range written by the device
 * @gpa: start of the range
 * @len: bytes
 */
struct vmp_log_range {
	u64 gpa;
	u64 len;
};

/**
 * struct vmp_chain - one descriptor chain taken from the avail ring
 * @head: descriptor index to hand back in the used ring
 * @nr_out: iovecs the device reads (driver to device)
 * @nr_in: iovecs the device writes, stored after the @nr_out ones
 * @out_bytes: total bytes of the readable part
 * @in_bytes: total bytes of the writable part
 * @nr_log: log ranges recorded for the writable part (only when logging)
 */
struct vmp_chain {
	u16 head;
	unsigned int nr_out;
	unsigned int nr_in;
	u32 out_bytes;
	u32 in_bytes;
	unsigned int nr_log;
};

/**
 * struct vmp_vq - one split virtqueue
 *
 * The fields from @num on are protected by @mutex: the ioctl path takes it
 * to change the configuration and the worker takes it to process the ring,
 * so the worker always sees a consistent configuration.
 */
struct vmp_vq {
	/** @dev: device this ring belongs to */
	struct vmp_dev *dev;
	/** @index: position in the device's array */
	unsigned int index;
	/** @handle: driver callback run by the worker on a kick */
	void (*handle)(struct vmp_vq *vq);
	/** @work: queued by the kick eventfd and by driver-side polls */
	struct vmp_work work;
	/** @kick_poll: watches @kick */
	struct vmp_poll kick_poll;
	/** @mutex: serialises ring configuration against the worker */
	struct mutex mutex;

	/** @num: ring size, a power of two; 0 until set */
	unsigned int num;
	/** @desc: descriptor table in the owner's address space */
	struct vring_desc __user *desc;
	/** @avail: driver area */
	struct vring_avail __user *avail;
	/** @used: device area */
	struct vring_used __user *used;
	/** @log_gpa: guest-physical address of the used ring, for logging */
	u64 log_gpa;
	/** @log_used: log writes to the used ring (VHOST_VRING_F_LOG) */
	bool log_used;

	/** @last_avail: next avail slot the device will consume */
	u16 last_avail;
	/** @avail_seen: last avail->idx value read from the ring */
	u16 avail_seen;
	/** @last_used: next used slot the device will fill */
	u16 last_used;
	/** @used_flags: our copy of used->flags */
	u16 used_flags;
	/** @signalled_used: used idx at the last interrupt (EVENT_IDX) */
	u16 signalled_used;
	/** @signalled_valid: @signalled_used may be compared against */
	bool signalled_valid;
	/** @halted: GET_VRING_BASE stopped the ring */
	bool halted;
	/** @failed: the guest broke the ring; nothing runs until reset */
	bool failed;

	/** @kick: eventfd file the guest kicks, polled by @kick_poll */
	struct file *kick;
	/** @call_ctx: eventfd we signal to interrupt the guest */
	struct eventfd_ctx *call_ctx;
	/** @err_ctx: eventfd we signal when the guest breaks the ring */
	struct eventfd_ctx *err_ctx;
	/** @log_ctx: the device's log eventfd (reference held by the dev) */
	struct eventfd_ctx *log_ctx;
	/** @log_base: user address of the dirty bitmap */
	u64 log_base;
	/** @log_base_set: VHOST_SET_LOG_BASE was done */
	bool log_base_set;

	/** @features: acked feature bits */
	u64 features;
	/** @busyloop_us: VHOST_SET_VRING_BUSYLOOP_TIMEOUT, microseconds */
	u32 busyloop_us;
	/** @mem: the device's memory table, refreshed under @mutex */
	const struct vmp_memtable *mem;
	/** @backend: driver state; the vq is live only when non-NULL */
	void *backend;

	/** @iov: scratch iovecs for the worker */
	struct iovec *iov;
	/** @log: scratch log ranges, filled alongside @iov */
	struct vmp_log_range *log;
	/** @pending: used entries not yet published */
	struct vring_used_elem *pending;
	/** @nr_pending: entries in @pending */
	unsigned int nr_pending;
	/** @pending_cap: flush threshold, never more than the ring size */
	unsigned int pending_cap;
	/** @unsignalled: used idx moved since the last interrupt decision */
	bool unsignalled;
};

/**
 * struct vmp_memtable - guest memory layout, sorted by guest address
 * @nr: number of regions
 * @max_gpa: last guest-physical byte covered, for log bitmap checks
 * @r: the regions
 */
struct vmp_memtable {
	unsigned int nr;
	u64 max_gpa;
	struct vmp_region {
		u64 gpa;
		u64 last;
		u64 uaddr;
	} r[] __counted_by(nr);
};

struct vmp_worker;

/**
 * struct vmp_dev - state shared by all virtqueues of one open file
 */
struct vmp_dev {
	/** @mutex: serialises ioctls; taken before any vq mutex */
	struct mutex mutex;
	/** @vqs: the rings, owned by the driver */
	struct vmp_vq **vqs;
	/** @nvqs: number of rings */
	unsigned int nvqs;

	/** @owner_mm: address space of the owner; NULL when unowned */
	struct mm_struct *owner_mm;
	/** @owner_tgid: process id of the owner, for names */
	pid_t owner_tgid;
	/** @worker: owned worker, NULL when unowned */
	struct vmp_worker *worker;
	/** @live: RCU view of @worker used to queue work; NULL once dying */
	struct vmp_worker __rcu *live;

	/** @mem: current memory table; each vq caches it in vq->mem */
	struct vmp_memtable *mem;
	/** @log_ctx: VHOST_SET_LOG_FD eventfd, signalled after logging */
	struct eventfd_ctx *log_ctx;
	/** @log_base: VHOST_SET_LOG_BASE address, copied into each vq */
	u64 log_base;
	/** @log_base_set: @log_base is valid */
	bool log_base_set;

	/** @worker_runs: worker loop iterations that found work (stats) */
	u64 worker_runs;
};

/* Device life cycle. */
int vmp_dev_init(struct vmp_dev *dev, struct vmp_vq **vqs, unsigned int nvqs);
void vmp_dev_cleanup(struct vmp_dev *dev);
void vmp_dev_reset_owner(struct vmp_dev *dev);
int vmp_dev_check_owner(struct vmp_dev *dev);
bool vmp_dev_has_owner(struct vmp_dev *dev);
long vmp_dev_ioctl(struct vmp_dev *dev, unsigned int cmd, void __user *argp);
bool vmp_dev_log_ok(struct vmp_dev *dev);

/* Worker. */
void vmp_work_init(struct vmp_work *work, vmp_work_fn_t fn);
bool vmp_work_queue(struct vmp_dev *dev, struct vmp_work *work);
void vmp_dev_flush(struct vmp_dev *dev);
bool vmp_dev_work_pending(struct vmp_dev *dev);

/* Readiness polling. */
void vmp_poll_init(struct vmp_poll *poll, struct vmp_dev *dev,
		   struct vmp_work *work, __poll_t mask);
int vmp_poll_start(struct vmp_poll *poll, struct file *file);
void vmp_poll_stop(struct vmp_poll *poll);

/* Ring access, all with vq->mutex held. */
int vmp_vq_start(struct vmp_vq *vq);
bool vmp_vq_runnable(struct vmp_vq *vq);
int vmp_vq_get_chain(struct vmp_vq *vq, unsigned int iov_off,
		     unsigned int log_off, struct vmp_chain *chain);
void vmp_vq_unget(struct vmp_vq *vq, unsigned int n);
bool vmp_vq_avail_empty(struct vmp_vq *vq);
int vmp_vq_add_used(struct vmp_vq *vq, const struct vring_used_elem *elems,
		    unsigned int n);
int vmp_vq_add_used_each(struct vmp_vq *vq,
			 const struct vring_used_elem *elems, unsigned int n);
void vmp_vq_publish(struct vmp_vq *vq);
void vmp_vq_notify_off(struct vmp_vq *vq);
bool vmp_vq_notify_on(struct vmp_vq *vq);
int vmp_vq_log_write(struct vmp_vq *vq, const struct vmp_log_range *log,
		     unsigned int nr, u64 len);
__printf(2, 3) void vmp_vq_fail(struct vmp_vq *vq, const char *fmt, ...);

/* Rings are little endian: VERSION_1, or legacy on a little-endian host. */
static inline u16 vmp16_to_cpu(__virtio16 v)
{
	return __virtio16_to_cpu(true, v);
}

static inline __virtio16 cpu_to_vmp16(u16 v)
{
	return __cpu_to_virtio16(true, v);
}

static inline struct vring_used_elem vmp_used_elem(u16 head, u32 len)
{
	struct vring_used_elem e = {
		.id = __cpu_to_virtio32(true, head),
		.len = __cpu_to_virtio32(true, len),
	};

	return e;
}

static inline bool vmp_vq_has(const struct vmp_vq *vq, unsigned int bit)
{
	return vq->features & BIT_ULL(bit);
}

/* Dirty logging is on when the driver asked for it and gave us a bitmap. */
static inline bool vmp_vq_logging(const struct vmp_vq *vq)
{
	return vmp_vq_has(vq, VHOST_F_LOG_ALL) && vq->log_base_set;
}

#endif /* _VHOST_MP_VHOST_H */
