// SPDX-License-Identifier: GPL-2.0-only
/*
 * vhost-mp core.
 *
 * A device is owned by the process that called VHOST_SET_OWNER.  All its
 * virtqueues are served by one worker, a vhost_task that is a thread of
 * that process: it shares the owner's mm (so guest memory is reached with
 * plain uaccess on the owner's mapping of it) and the owner's cgroups.
 *
 * Guest-physical addresses found in descriptors are translated through our
 * own memory table, a sorted array of regions searched by bisection.  A
 * descriptor that is not entirely covered by the table is a guest error:
 * the ring is failed, the error eventfd signalled, and nothing outside the
 * table is ever touched.
 */
#define pr_fmt(fmt) "vhost-mp: " fmt

#include <linux/bitops.h>
#include <linux/file.h>
#include <linux/highmem.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/nospec.h>
#include <linux/rcupdate.h>
#include <linux/sched/mm.h>
#include <linux/sched/vhost_task.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/vhost.h>

#include "vhost.h"

static unsigned int max_mem_regions = 64;
module_param(max_mem_regions, uint, 0444);
MODULE_PARM_DESC(max_mem_regions,
		 "Most memory regions accepted by VHOST_SET_MEM_TABLE (default 64)");

/* Whatever the parameter says: keeps the table allocation sane. */
#define VMP_MAX_REGIONS_HARD	4096U
/* Most descriptors in one indirect table; Linux guests use far fewer. */
#define VMP_MAX_INDIRECT	UIO_MAXIOV
/* An indirect table may straddle this many memory regions at most. */
#define VMP_INDIRECT_SEGS	8
#define VMP_LOG_PAGE_SHIFT	ilog2(VHOST_PAGE_SIZE)

enum {
	VMP_WORK_QUEUED = 0,
};

/**
 * struct vmp_worker - the per-device thread and its queue
 * @task: the vhost_task running vmp_worker_fn()
 * @items: work queued for the task, newest first
 * @dev: device served
 */
struct vmp_worker {
	struct vhost_task *task;
	struct llist_head items;
	struct vmp_dev *dev;
};

/* ---- worker ------------------------------------------------------------ */

/**
 * vmp_work_init - prepare a work item
 * @work: item to set up
 * @fn: function the worker will call
 */
void vmp_work_init(struct vmp_work *work, vmp_work_fn_t fn)
{
	clear_bit(VMP_WORK_QUEUED, &work->flags);
	work->fn = fn;
}
EXPORT_SYMBOL_GPL(vmp_work_init);

/**
 * vmp_work_queue - ask the device worker to run @work
 * @dev: device
 * @work: item; queueing an item that is already pending is a no-op
 *
 * Safe from any context, including hard and soft interrupts: it only takes
 * the RCU read lock, touches a lock-free list and wakes a task.
 *
 * Return: true if the device has a live worker, which will run @work.
 */
bool vmp_work_queue(struct vmp_dev *dev, struct vmp_work *work)
{
	struct vmp_worker *w;

	rcu_read_lock();
	w = rcu_dereference(dev->live);
	if (w && !test_and_set_bit(VMP_WORK_QUEUED, &work->flags)) {
		llist_add(&work->node, &w->items);
		vhost_task_wake(w->task);
	}
	rcu_read_unlock();
	return w;
}
EXPORT_SYMBOL_GPL(vmp_work_queue);

/**
 * vmp_dev_work_pending - is work waiting for the worker?
 * @dev: device
 *
 * Used by busy-polling loops to give up early when something else needs
 * the worker.
 *
 * Return: true if at least one item is queued.
 */
bool vmp_dev_work_pending(struct vmp_dev *dev)
{
	struct vmp_worker *w;
	bool pending;

	rcu_read_lock();
	w = rcu_dereference(dev->live);
	pending = w && !llist_empty(&w->items);
	rcu_read_unlock();
	return pending;
}
EXPORT_SYMBOL_GPL(vmp_dev_work_pending);

static void vmp_run_items(struct llist_node *list)
{
	struct vmp_work *work, *next;

	list = llist_reverse_order(list);
	llist_for_each_entry_safe(work, next, list, node) {
		/*
		 * Clear before running, so an event that arrives while
		 * fn() runs queues the item again instead of being lost.
		 */
		clear_bit(VMP_WORK_QUEUED, &work->flags);
		/* Order the clear before fn() reads the state it acts on. */
		smp_mb__after_atomic();
		work->fn(work);
		cond_resched();
	}
}

static bool vmp_worker_fn(void *data)
{
	struct vmp_worker *w = data;
	struct llist_node *list;

	list = llist_del_all(&w->items);
	if (!list)
		return false;

	/* vhost_task calls us in TASK_INTERRUPTIBLE; handlers may sleep. */
	__set_current_state(TASK_RUNNING);
	WRITE_ONCE(w->dev->worker_runs, w->dev->worker_runs + 1);
	vmp_run_items(list);
	return true;
}

/*
 * The owner got SIGKILL and the worker is exiting.  Stop accepting work
 * and run what is already queued, so that a concurrent vmp_dev_flush()
 * completes instead of waiting forever for a thread that is gone.
 */
static void vmp_worker_killed(void *data)
{
	struct vmp_worker *w = data;
	struct llist_node *list;

	rcu_assign_pointer(w->dev->live, NULL);
	synchronize_rcu();
	list = llist_del_all(&w->items);
	if (list)
		vmp_run_items(list);
}

struct vmp_flush {
	struct vmp_work work;
	struct completion done;
};

static void vmp_flush_fn(struct vmp_work *work)
{
	struct vmp_flush *f = container_of(work, struct vmp_flush, work);

	complete(&f->done);
}

/**
 * vmp_dev_flush - wait until all work queued so far has run
 * @dev: device
 *
 * Must not be called with any virtqueue mutex held: queued handlers take
 * them.
 */
void vmp_dev_flush(struct vmp_dev *dev)
{
	struct vmp_flush f;

	init_completion(&f.done);
	vmp_work_init(&f.work, vmp_flush_fn);
	if (vmp_work_queue(dev, &f.work))
		wait_for_completion(&f.done);
}
EXPORT_SYMBOL_GPL(vmp_dev_flush);

static int vmp_worker_start(struct vmp_dev *dev)
{
	char name[TASK_COMM_LEN];
	struct vhost_task *task;
	struct vmp_worker *w;

	w = kzalloc(sizeof(*w), GFP_KERNEL_ACCOUNT);
	if (!w)
		return -ENOMEM;
	init_llist_head(&w->items);
	w->dev = dev;

	snprintf(name, sizeof(name), "vhost-%d", current->tgid);
	task = vhost_task_create(vmp_worker_fn, vmp_worker_killed, w, name);
	if (IS_ERR(task)) {
		kfree(w);
		return PTR_ERR(task);
	}
	w->task = task;
	dev->worker = w;
	rcu_assign_pointer(dev->live, w);
	vhost_task_start(task);
	return 0;
}

static void vmp_worker_stop(struct vmp_dev *dev)
{
	struct vmp_worker *w = dev->worker;
	struct vmp_work *work, *next;
	struct llist_node *list;

	if (!w)
		return;
	vmp_dev_flush(dev);
	rcu_assign_pointer(dev->live, NULL);
	/* Nobody can reach the worker once queuers have left their RCU
	 * sections, so stopping and freeing it below is safe.
	 */
	synchronize_rcu();
	vhost_task_stop(w->task);

	/* Items that raced with the flush never ran; let them queue again
	 * on a future worker.
	 */
	list = llist_del_all(&w->items);
	llist_for_each_entry_safe(work, next, list, node)
		clear_bit(VMP_WORK_QUEUED, &work->flags);
	kfree(w);
	dev->worker = NULL;
}

/* ---- readiness polling ------------------------------------------------- */

static int vmp_poll_wake(wait_queue_entry_t *wait, unsigned int mode,
			 int sync, void *key)
{
	struct vmp_poll *poll = container_of(wait, struct vmp_poll, wait);
	/* A wakeup without a key may be anything: treat it as ours. */
	__poll_t events = key ? key_to_poll(key) : poll->mask;

	if (events & poll->mask)
		vmp_work_queue(poll->dev, poll->work);
	return 0;
}

static void vmp_poll_enqueue(struct file *file, wait_queue_head_t *wqh,
			     poll_table *pt)
{
	struct vmp_poll *poll = container_of(pt, struct vmp_poll, table);

	/* One wait queue is enough for eventfds and sockets. */
	if (poll->wqh)
		return;
	poll->wqh = wqh;
	add_wait_queue(wqh, &poll->wait);
}

/**
 * vmp_poll_init - prepare a readiness hook
 * @poll: hook
 * @dev: device whose worker runs @work
 * @work: queued when the polled file reports one of @mask
 * @mask: interesting events
 */
void vmp_poll_init(struct vmp_poll *poll, struct vmp_dev *dev,
		   struct vmp_work *work, __poll_t mask)
{
	init_waitqueue_func_entry(&poll->wait, vmp_poll_wake);
	init_poll_funcptr(&poll->table, vmp_poll_enqueue);
	poll->wqh = NULL;
	poll->mask = mask;
	poll->dev = dev;
	poll->work = work;
}
EXPORT_SYMBOL_GPL(vmp_poll_init);

/**
 * vmp_poll_start - start watching @file
 * @poll: idle or already started hook
 * @file: file to watch; the caller keeps a reference until vmp_poll_stop()
 *
 * If @file is already ready the work is queued at once.
 *
 * Return: 0, or -EINVAL if the file reports an error condition.
 */
int vmp_poll_start(struct vmp_poll *poll, struct file *file)
{
	__poll_t events;

	if (poll->wqh)
		return 0;
	events = vfs_poll(file, &poll->table);
	if (events & poll->mask)
		vmp_work_queue(poll->dev, poll->work);
	if (events & EPOLLERR) {
		vmp_poll_stop(poll);
		return -EINVAL;
	}
	return 0;
}
EXPORT_SYMBOL_GPL(vmp_poll_start);

/**
 * vmp_poll_stop - stop watching
 * @poll: hook, started or not
 *
 * On return the wakeup callback is not running and will not run again, but
 * work it queued may still be pending: flush before freeing what it uses.
 */
void vmp_poll_stop(struct vmp_poll *poll)
{
	if (!poll->wqh)
		return;
	remove_wait_queue(poll->wqh, &poll->wait);
	poll->wqh = NULL;
}
EXPORT_SYMBOL_GPL(vmp_poll_stop);

/* ---- memory table ------------------------------------------------------ */

static int vmp_region_cmp(const void *a, const void *b)
{
	const struct vmp_region *ra = a, *rb = b;

	if (ra->gpa < rb->gpa)
		return -1;
	return ra->gpa > rb->gpa;
}

static const struct vmp_region *vmp_mem_find(const struct vmp_memtable *mt,
					     u64 gpa)
{
	unsigned int lo = 0, hi = mt->nr;

	/* Find the last region starting at or below @gpa. */
	while (lo < hi) {
		unsigned int mid = lo + (hi - lo) / 2;

		if (mt->r[mid].gpa <= gpa)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo || gpa > mt->r[lo - 1].last)
		return NULL;
	return &mt->r[lo - 1];
}

/*
 * Map [gpa, gpa + len) to user iovecs.  Returns the number of iovecs used,
 * -EFAULT if some byte is outside the table, -E2BIG if @room is too small.
 */
static int vmp_translate(const struct vmp_memtable *mt, u64 gpa, u32 len,
			 struct iovec *iov, unsigned int room)
{
	unsigned int n = 0;

	/*
	 * A buffer must be one range of guest-physical space: without this,
	 * one that runs past 2^64 would continue in a region at address 0.
	 */
	if (len && gpa + (len - 1) < gpa)
		return -EFAULT;

	while (len) {
		const struct vmp_region *r;
		u64 chunk;

		r = mt ? vmp_mem_find(mt, gpa) : NULL;
		if (!r)
			return -EFAULT;
		if (n == room)
			return -E2BIG;
		/* Bytes left in this region, counted without overflow. */
		chunk = r->last - gpa;
		chunk = chunk >= len - 1 ? len : chunk + 1;
		iov[n].iov_base = u64_to_user_ptr(r->uaddr + (gpa - r->gpa));
		iov[n].iov_len = chunk;
		n++;
		gpa += chunk;
		len -= chunk;
	}
	return n;
}

static int vmp_region_from_user(struct vmp_region *r,
				const struct vhost_memory_region *ur)
{
	u64 size = ur->memory_size;

	if (!size)
		return -EINVAL;
	if (ur->guest_phys_addr + (size - 1) < ur->guest_phys_addr ||
	    ur->userspace_addr + (size - 1) < ur->userspace_addr)
		return -EINVAL;
	if ((u64)(unsigned long)ur->userspace_addr != ur->userspace_addr ||
	    (u64)(unsigned long)size != size)
		return -EFAULT;
	if (!access_ok(u64_to_user_ptr(ur->userspace_addr), size))
		return -EFAULT;
	r->gpa = ur->guest_phys_addr;
	r->last = ur->guest_phys_addr + (size - 1);
	r->uaddr = ur->userspace_addr;
	return 0;
}

static struct vmp_memtable *vmp_mem_build(const struct vhost_memory_region *ur,
					  unsigned int nr)
{
	struct vmp_memtable *mt;
	unsigned int i;
	int r;

	mt = kvzalloc(struct_size(mt, r, nr), GFP_KERNEL_ACCOUNT);
	if (!mt)
		return ERR_PTR(-ENOMEM);
	mt->nr = nr;
	for (i = 0; i < nr; i++) {
		r = vmp_region_from_user(&mt->r[i], &ur[i]);
		if (r)
			goto err;
	}
	sort(mt->r, nr, sizeof(mt->r[0]), vmp_region_cmp, NULL);
	for (i = 1; i < nr; i++) {
		if (mt->r[i].gpa <= mt->r[i - 1].last) {
			r = -EINVAL;
			goto err;
		}
	}
	mt->max_gpa = nr ? mt->r[nr - 1].last : 0;
	return mt;
err:
	kvfree(mt);
	return ERR_PTR(r);
}

/* Can the log bitmap at @base hold one bit per page of @mt? */
static bool vmp_log_covers(u64 base, const struct vmp_memtable *mt)
{
	u64 bytes;

	if (!mt || !mt->nr)
		return true;
	bytes = (mt->max_gpa >> VMP_LOG_PAGE_SHIFT) / BITS_PER_BYTE + 1;
	return access_ok(u64_to_user_ptr(base), bytes);
}

static u64 vmp_used_size(unsigned int num)
{
	return sizeof(struct vring_used) +
	       sizeof(struct vring_used_elem) * num + sizeof(__virtio16);
}

/*
 * Can the log bitmap at @base hold the bits of a used ring of @num entries
 * at guest address @gpa?  Checked when the ring's address, size or log
 * base is set, so that logging the ring cannot fault later.
 */
static bool vmp_log_covers_used(u64 base, u64 gpa, unsigned int num)
{
	u64 last = gpa + vmp_used_size(num) - 1;
	u64 first_byte = (gpa >> VMP_LOG_PAGE_SHIFT) / BITS_PER_BYTE;
	u64 last_byte = (last >> VMP_LOG_PAGE_SHIFT) / BITS_PER_BYTE;

	if (last < gpa || base + first_byte < base)
		return false;
	return access_ok(u64_to_user_ptr(base + first_byte),
			 last_byte - first_byte + 1);
}

/* The ring's used-ring log, if it has one, fits the log at @base. */
static bool vmp_vq_log_covered(const struct vmp_vq *vq, u64 base, bool log_used,
			       u64 gpa)
{
	return !log_used || !vq->num || vmp_log_covers_used(base, gpa, vq->num);
}

/**
 * vmp_dev_log_ok - may dirty logging be turned on?
 * @dev: device, with its mutex held
 *
 * Return: true if no log base is set yet, or if it covers the memory table.
 */
bool vmp_dev_log_ok(struct vmp_dev *dev)
{
	lockdep_assert_held(&dev->mutex);
	return !dev->log_base_set || vmp_log_covers(dev->log_base, dev->mem);
}
EXPORT_SYMBOL_GPL(vmp_dev_log_ok);

static bool vmp_dev_logging(struct vmp_dev *dev)
{
	unsigned int i;

	for (i = 0; i < dev->nvqs; i++)
		if (READ_ONCE(dev->vqs[i]->features) & BIT_ULL(VHOST_F_LOG_ALL))
			return true;
	return false;
}

static void vmp_dev_install_mem(struct vmp_dev *dev, struct vmp_memtable *mt)
{
	struct vmp_memtable *old = dev->mem;
	unsigned int i;

	/* Workers only look at vq->mem under the vq mutex, so once every
	 * vq points at @mt nobody can still be using @old.
	 */
	for (i = 0; i < dev->nvqs; i++) {
		struct vmp_vq *vq = dev->vqs[i];

		mutex_lock(&vq->mutex);
		vq->mem = mt;
		mutex_unlock(&vq->mutex);
	}
	dev->mem = mt;
	kvfree(old);
}

static long vmp_set_mem_table(struct vmp_dev *dev,
			      struct vhost_memory __user *argp)
{
	struct vhost_memory_region *ur = NULL;
	struct vhost_memory hdr;
	struct vmp_memtable *mt;

	if (copy_from_user(&hdr, argp, sizeof(hdr)))
		return -EFAULT;
	if (hdr.padding)
		return -EOPNOTSUPP;
	if (hdr.nregions > min(max_mem_regions, VMP_MAX_REGIONS_HARD))
		return -E2BIG;
	if (hdr.nregions) {
		ur = vmemdup_array_user(argp->regions, hdr.nregions,
					sizeof(*ur));
		if (IS_ERR(ur))
			return PTR_ERR(ur);
	}
	mt = vmp_mem_build(ur, hdr.nregions);
	kvfree(ur);
	if (IS_ERR(mt))
		return PTR_ERR(mt);
	if (dev->log_base_set && vmp_dev_logging(dev) &&
	    !vmp_log_covers(dev->log_base, mt)) {
		kvfree(mt);
		return -EFAULT;
	}
	vmp_dev_install_mem(dev, mt);
	return 0;
}

/* ---- dirty log --------------------------------------------------------- */

/*
 * Set the bits of pages *@pfn..@last that live in one page of the bitmap,
 * advancing *@pfn past them.  The bitmap is user memory that other threads
 * update too, so bits are set atomically through a pinned kernel mapping.
 */
static int vmp_log_one_page(u64 base, u64 *pfn, u64 last)
{
	u64 byte = base + *pfn / BITS_PER_BYTE;
	unsigned long page_addr;
	struct page *page;
	void *map;

	if (byte < base || (u64)(unsigned long)byte != byte)
		return -EFAULT;
	page_addr = byte & PAGE_MASK;
	if (pin_user_pages_fast(page_addr, 1, FOLL_WRITE, &page) != 1)
		return -EFAULT;
	map = kmap_local_page(page);
	do {
		set_bit_le((byte - page_addr) * BITS_PER_BYTE +
			   *pfn % BITS_PER_BYTE, map);
		(*pfn)++;
		byte = base + *pfn / BITS_PER_BYTE;
	} while (*pfn <= last && (byte & PAGE_MASK) == page_addr);
	kunmap_local(map);
	unpin_user_pages_dirty_lock(&page, 1, true);
	return 0;
}

static int vmp_log_gpa(struct vmp_vq *vq, u64 gpa, u64 len)
{
	u64 pfn, last;
	int r;

	if (!len)
		return 0;
	if (gpa + (len - 1) < gpa)
		return -EFAULT;
	pfn = gpa >> VMP_LOG_PAGE_SHIFT;
	last = (gpa + (len - 1)) >> VMP_LOG_PAGE_SHIFT;
	/* Bitmap bits must not become visible before the data they cover. */
	smp_wmb();
	while (pfn <= last) {
		r = vmp_log_one_page(vq->log_base, &pfn, last);
		if (r)
			return r;
	}
	return 0;
}

/* Log a write of @len bytes at byte @off of the used ring. */
static int vmp_log_used(struct vmp_vq *vq, u64 off, u64 len)
{
	if (!vq->log_used || !vmp_vq_logging(vq))
		return 0;
	return vmp_log_gpa(vq, vq->log_gpa + off, len);
}

/**
 * vmp_vq_log_write - mark guest pages written by the device as dirty
 * @vq: virtqueue, mutex held
 * @log: ranges recorded by vmp_vq_get_chain(), in buffer order
 * @nr: number of ranges
 * @len: bytes actually written from the start of the first range
 *
 * Does nothing unless dirty logging is on.
 *
 * Return: 0 or -EFAULT if the bitmap is not writable.
 */
int vmp_vq_log_write(struct vmp_vq *vq, const struct vmp_log_range *log,
		     unsigned int nr, u64 len)
{
	unsigned int i;
	int r;

	if (!vmp_vq_logging(vq))
		return 0;
	for (i = 0; i < nr && len; i++) {
		u64 chunk = min(len, log[i].len);

		r = vmp_log_gpa(vq, log[i].gpa, chunk);
		if (r)
			return r;
		len -= chunk;
	}
	return 0;
}
EXPORT_SYMBOL_GPL(vmp_vq_log_write);

/* ---- ring access ------------------------------------------------------- */

/**
 * vmp_vq_fail - the guest (or owner) broke the ring: stop serving it
 * @vq: virtqueue, mutex held
 * @fmt: what went wrong
 *
 * The ring stays stopped until it is reconfigured.  The error eventfd, if
 * any, tells user space.
 */
void vmp_vq_fail(struct vmp_vq *vq, const char *fmt, ...)
{
	struct va_format vaf;
	va_list args;

	va_start(args, fmt);
	vaf.fmt = fmt;
	vaf.va = &args;
	pr_warn_ratelimited("vq %u: %pV\n", vq->index, &vaf);
	va_end(args);

	vq->failed = true;
	if (vq->err_ctx)
		eventfd_signal(vq->err_ctx);
}
EXPORT_SYMBOL_GPL(vmp_vq_fail);

static __virtio16 __user *vmp_used_event(struct vmp_vq *vq)
{
	return &vq->avail->ring[vq->num];
}

static __virtio16 __user *vmp_avail_event(struct vmp_vq *vq)
{
	return (__virtio16 __user *)&vq->used->ring[vq->num];
}

static bool vmp_rings_ok(unsigned int num, struct vring_desc __user *desc,
			 struct vring_avail __user *avail,
			 struct vring_used __user *used)
{
	/* Include the event index words, present or not: it costs nothing. */
	size_t dsz = sizeof(*desc) * num;
	size_t asz = sizeof(*avail) + sizeof(__virtio16) * (num + 1);

	return access_ok(desc, dsz) && access_ok(avail, asz) &&
	       access_ok(used, vmp_used_size(num));
}

/**
 * vmp_vq_start - make a configured ring live (backend being attached)
 * @vq: virtqueue, mutex held, with num and addresses set
 *
 * Checks the ring addresses, publishes our notification flags and picks up
 * the used index from guest memory, where it survives migration.
 *
 * Return: 0 or -EFAULT.
 */
int vmp_vq_start(struct vmp_vq *vq)
{
	__virtio16 idx;

	if (!vq->num || !vq->desc || !vq->avail || !vq->used)
		return -EFAULT;
	if (!vmp_rings_ok(vq->num, vq->desc, vq->avail, vq->used))
		return -EFAULT;
	if (vq->log_base_set &&
	    !vmp_vq_log_covered(vq, vq->log_base, vq->log_used, vq->log_gpa))
		return -EFAULT;
	vq->used_flags = 0;
	if (put_user(cpu_to_vmp16(0), &vq->used->flags))
		return -EFAULT;
	if (vmp_log_used(vq, offsetof(struct vring_used, flags),
			 sizeof(vq->used->flags)))
		return -EFAULT;
	if (get_user(idx, &vq->used->idx))
		return -EFAULT;
	vq->last_used = vmp16_to_cpu(idx);
	vq->signalled_valid = false;
	vq->unsignalled = false;
	vq->nr_pending = 0;
	vq->pending_cap = min(vq->num, VMP_MAX_SEGS);
	vq->halted = false;
	vq->failed = false;
	return 0;
}
EXPORT_SYMBOL_GPL(vmp_vq_start);

/**
 * vmp_vq_runnable - may the worker process this ring now?
 * @vq: virtqueue, mutex held
 *
 * Return: true with a backend, a memory table, and no stop or error.
 */
bool vmp_vq_runnable(struct vmp_vq *vq)
{
	return vq->backend && vq->mem && !vq->halted && !vq->failed;
}
EXPORT_SYMBOL_GPL(vmp_vq_runnable);

/*
 * How many avail entries may be consumed.  Reads avail->idx only when the
 * cached value is used up.  Negative on a guest error.
 */
static int vmp_vq_avail_count(struct vmp_vq *vq)
{
	__virtio16 raw;
	u16 idx;

	if (vq->avail_seen != vq->last_avail)
		return (u16)(vq->avail_seen - vq->last_avail);
	if (get_user(raw, &vq->avail->idx)) {
		vmp_vq_fail(vq, "cannot read avail idx at %p", &vq->avail->idx);
		return -EFAULT;
	}
	idx = vmp16_to_cpu(raw);
	if ((u16)(idx - vq->last_avail) > vq->num) {
		vmp_vq_fail(vq, "avail idx %u is %u entries ahead of %u",
			    idx, (u16)(idx - vq->last_avail), vq->num);
		return -EINVAL;
	}
	vq->avail_seen = idx;
	/* Ring entries are only valid once their index has been seen. */
	smp_rmb();
	return (u16)(idx - vq->last_avail);
}

/**
 * vmp_vq_avail_empty - has the guest no new buffers for us?
 * @vq: virtqueue, mutex held
 *
 * Return: true if nothing is available (or the index is unreadable).
 */
bool vmp_vq_avail_empty(struct vmp_vq *vq)
{
	__virtio16 raw;

	if (vq->avail_seen != vq->last_avail)
		return false;
	if (get_user(raw, &vq->avail->idx))
		return true;
	return vmp16_to_cpu(raw) == vq->last_avail;
}
EXPORT_SYMBOL_GPL(vmp_vq_avail_empty);

/**
 * vmp_vq_unget - give back the last @n chains taken
 * @vq: virtqueue, mutex held
 * @n: chains to return to the avail ring, in reverse order of taking
 */
void vmp_vq_unget(struct vmp_vq *vq, unsigned int n)
{
	vq->last_avail -= n;
}
EXPORT_SYMBOL_GPL(vmp_vq_unget);

/* State of one descriptor chain walk. */
struct vmp_walk {
	struct vmp_vq *vq;
	struct vmp_chain *c;
	struct iovec *iov;
	unsigned int iov_room;
	struct vmp_log_range *log;
	unsigned int log_room;
	bool logging;
};

static int vmp_walk_count(struct vmp_walk *w, u32 *total, u32 len)
{
	if (len > S32_MAX - *total) {
		vmp_vq_fail(w->vq, "descriptor chain longer than 2 GiB");
		return -EINVAL;
	}
	*total += len;
	return 0;
}

/* Add one (direct or indirect-table) descriptor's buffer to the chain. */
static int vmp_walk_add(struct vmp_walk *w, const struct vring_desc *d)
{
	struct vmp_chain *c = w->c;
	bool writable = d->flags & cpu_to_vmp16(VRING_DESC_F_WRITE);
	u64 gpa = __virtio64_to_cpu(true, d->addr);
	u32 len = __virtio32_to_cpu(true, d->len);
	unsigned int used = c->nr_out + c->nr_in;
	int n;

	if (!writable && c->nr_in) {
		vmp_vq_fail(w->vq, "readable descriptor after a writable one in chain %u",
			    c->head);
		return -EINVAL;
	}
	if (!len)
		return 0;
	if (writable && w->logging) {
		if (c->nr_log == w->log_room)
			return -E2BIG;
		w->log[c->nr_log].gpa = gpa;
		w->log[c->nr_log].len = len;
		c->nr_log++;
	}
	n = vmp_translate(w->vq->mem, gpa, len, w->iov + used,
			  w->iov_room - used);
	if (n == -EFAULT) {
		vmp_vq_fail(w->vq, "buffer %#llx+%u is outside guest memory",
			    gpa, len);
		return n;
	}
	if (n < 0)
		return n;
	if (writable) {
		c->nr_in += n;
		return vmp_walk_count(w, &c->in_bytes, len);
	}
	c->nr_out += n;
	return vmp_walk_count(w, &c->out_bytes, len);
}

/* Read indirect entry @i from a table scattered over @seg user segments. */
static int vmp_read_indirect(const struct iovec *seg, unsigned int nseg,
			     unsigned int i, struct vring_desc *d)
{
	size_t off = (size_t)i * sizeof(*d), done = 0;
	unsigned int s;

	for (s = 0; s < nseg && done < sizeof(*d); s++) {
		size_t chunk;

		if (off >= seg[s].iov_len) {
			off -= seg[s].iov_len;
			continue;
		}
		chunk = min(seg[s].iov_len - off, sizeof(*d) - done);
		if (copy_from_user((u8 *)d + done, seg[s].iov_base + off, chunk))
			return -EFAULT;
		done += chunk;
		off = 0;
	}
	return done == sizeof(*d) ? 0 : -EFAULT;
}

static int vmp_walk_indirect(struct vmp_walk *w, const struct vring_desc *ind)
{
	struct iovec seg[VMP_INDIRECT_SEGS];
	u64 gpa = __virtio64_to_cpu(true, ind->addr);
	u32 len = __virtio32_to_cpu(true, ind->len);
	unsigned int count, i = 0, steps = 0;
	struct vring_desc d;
	int nseg, r;

	if (!vmp_vq_has(w->vq, VIRTIO_RING_F_INDIRECT_DESC)) {
		vmp_vq_fail(w->vq, "indirect descriptor without the feature");
		return -EINVAL;
	}
	if (ind->flags & cpu_to_vmp16(VRING_DESC_F_NEXT)) {
		vmp_vq_fail(w->vq, "indirect descriptor with NEXT set");
		return -EINVAL;
	}
	if (!len || len % sizeof(d) || len / sizeof(d) > VMP_MAX_INDIRECT) {
		vmp_vq_fail(w->vq, "bad indirect table length %u", len);
		return -EINVAL;
	}
	count = len / sizeof(d);
	nseg = vmp_translate(w->vq->mem, gpa, len, seg, ARRAY_SIZE(seg));
	if (nseg < 0) {
		vmp_vq_fail(w->vq, "indirect table %#llx+%u is not in guest memory",
			    gpa, len);
		return -EFAULT;
	}
	for (;;) {
		if (++steps > count) {
			vmp_vq_fail(w->vq, "loop in indirect table %#llx", gpa);
			return -EINVAL;
		}
		if (vmp_read_indirect(seg, nseg, i, &d)) {
			vmp_vq_fail(w->vq, "cannot read indirect table %#llx", gpa);
			return -EFAULT;
		}
		if (d.flags & cpu_to_vmp16(VRING_DESC_F_INDIRECT)) {
			vmp_vq_fail(w->vq, "nested indirect table at %#llx", gpa);
			return -EINVAL;
		}
		r = vmp_walk_add(w, &d);
		if (r)
			return r;
		if (!(d.flags & cpu_to_vmp16(VRING_DESC_F_NEXT)))
			return 0;
		i = vmp16_to_cpu(d.next);
		if (i >= count) {
			vmp_vq_fail(w->vq, "indirect next %u beyond table of %u",
				    i, count);
			return -EINVAL;
		}
	}
}

static int vmp_walk_chain(struct vmp_walk *w, u16 head)
{
	struct vmp_vq *vq = w->vq;
	unsigned int i = head, steps = 0;
	struct vring_desc d;
	int r;

	for (;;) {
		if (++steps > vq->num) {
			vmp_vq_fail(vq, "descriptor loop from head %u", head);
			return -EINVAL;
		}
		if (copy_from_user(&d, vq->desc + i, sizeof(d))) {
			vmp_vq_fail(vq, "cannot read descriptor %u", i);
			return -EFAULT;
		}
		if (d.flags & cpu_to_vmp16(VRING_DESC_F_INDIRECT))
			return vmp_walk_indirect(w, &d);
		r = vmp_walk_add(w, &d);
		if (r)
			return r;
		if (!(d.flags & cpu_to_vmp16(VRING_DESC_F_NEXT)))
			return 0;
		i = vmp16_to_cpu(d.next);
		if (i >= vq->num) {
			vmp_vq_fail(vq, "next %u beyond ring of %u", i, vq->num);
			return -EINVAL;
		}
	}
}

/**
 * vmp_vq_get_chain - take the next available descriptor chain
 * @vq: virtqueue, mutex held
 * @iov_off: first entry of vq->iov to fill
 * @log_off: first entry of vq->log to fill (only used while logging)
 * @chain: filled on success
 *
 * The readable buffers come first in vq->iov, then the writable ones.  On
 * -E2BIG nothing was consumed and the ring is intact: the caller ran out of
 * room and decides whether that is the guest's fault.
 *
 * Return: 1 with a chain, 0 if the ring is empty, -E2BIG, or another
 * negative errno after failing the ring.
 */
int vmp_vq_get_chain(struct vmp_vq *vq, unsigned int iov_off,
		     unsigned int log_off, struct vmp_chain *chain)
{
	struct vmp_walk w = {
		.vq = vq,
		.c = chain,
		.iov = vq->iov + iov_off,
		.iov_room = VMP_MAX_SEGS - min(iov_off, VMP_MAX_SEGS),
		.log = vq->log + log_off,
		.log_room = VMP_MAX_SEGS - min(log_off, VMP_MAX_SEGS),
		.logging = vmp_vq_logging(vq),
	};
	__virtio16 raw;
	u16 head;
	int r;

	r = vmp_vq_avail_count(vq);
	if (r <= 0)
		return r;
	if (get_user(raw, &vq->avail->ring[vq->last_avail & (vq->num - 1)])) {
		vmp_vq_fail(vq, "cannot read avail ring");
		return -EFAULT;
	}
	head = vmp16_to_cpu(raw);
	if (head >= vq->num) {
		vmp_vq_fail(vq, "avail head %u beyond ring of %u", head, vq->num);
		return -EINVAL;
	}
	memset(chain, 0, sizeof(*chain));
	chain->head = head;
	r = vmp_walk_chain(&w, head);
	if (r)
		return r;
	vq->last_avail++;
	return 1;
}
EXPORT_SYMBOL_GPL(vmp_vq_get_chain);

static int vmp_write_used_flags(struct vmp_vq *vq)
{
	if (put_user(cpu_to_vmp16(vq->used_flags), &vq->used->flags))
		return -EFAULT;
	return vmp_log_used(vq, offsetof(struct vring_used, flags),
			    sizeof(__virtio16));
}

static int vmp_write_avail_event(struct vmp_vq *vq)
{
	if (put_user(cpu_to_vmp16(vq->avail_seen), vmp_avail_event(vq)))
		return -EFAULT;
	return vmp_log_used(vq, offsetof(struct vring_used, ring) +
			    sizeof(struct vring_used_elem) * vq->num,
			    sizeof(__virtio16));
}

/**
 * vmp_vq_notify_off - ask the guest not to kick us while we are busy
 * @vq: virtqueue, mutex held
 *
 * With EVENT_IDX nothing needs writing: the guest only kicks when it
 * passes the avail event index, which we leave where it is.
 */
void vmp_vq_notify_off(struct vmp_vq *vq)
{
	if (vmp_vq_has(vq, VIRTIO_RING_F_EVENT_IDX) ||
	    (vq->used_flags & VRING_USED_F_NO_NOTIFY))
		return;
	vq->used_flags |= VRING_USED_F_NO_NOTIFY;
	if (vmp_write_used_flags(vq))
		vmp_vq_fail(vq, "cannot write used flags");
}
EXPORT_SYMBOL_GPL(vmp_vq_notify_off);

/**
 * vmp_vq_notify_on - ask the guest to kick us on its next buffer
 * @vq: virtqueue, mutex held
 *
 * Return: true if the guest added buffers beyond the ones we have seen
 * meanwhile, in which case the caller should keep going instead of
 * sleeping (and may turn notifications off again).
 */
bool vmp_vq_notify_on(struct vmp_vq *vq)
{
	__virtio16 raw;
	int r;

	if (vmp_vq_has(vq, VIRTIO_RING_F_EVENT_IDX)) {
		r = vmp_write_avail_event(vq);
	} else if (vq->used_flags & VRING_USED_F_NO_NOTIFY) {
		vq->used_flags &= ~VRING_USED_F_NO_NOTIFY;
		r = vmp_write_used_flags(vq);
	} else {
		r = 0;
	}
	if (r) {
		vmp_vq_fail(vq, "cannot enable guest notifications");
		return false;
	}
	/* The flag must be visible before we look for buffers again, or a
	 * buffer added in between would neither be seen nor kicked.
	 */
	smp_mb();
	if (get_user(raw, &vq->avail->idx)) {
		vmp_vq_fail(vq, "cannot read avail idx");
		return false;
	}
	return vmp16_to_cpu(raw) != vq->avail_seen;
}
EXPORT_SYMBOL_GPL(vmp_vq_notify_on);

static int vmp_copy_used(struct vmp_vq *vq, unsigned int slot,
			 const struct vring_used_elem *e, unsigned int n)
{
	size_t off = offsetof(struct vring_used, ring) + sizeof(*e) * slot;

	if (copy_to_user(&vq->used->ring[slot], e, sizeof(*e) * n))
		return -EFAULT;
	return vmp_log_used(vq, off, sizeof(*e) * n);
}

/* Write the pending used entries and the new used index. */
static int vmp_vq_write_used(struct vmp_vq *vq)
{
	unsigned int n = vq->nr_pending;
	unsigned int slot = vq->last_used & (vq->num - 1);
	unsigned int first = min(n, vq->num - slot);
	u16 new = vq->last_used + n;

	if (!n)
		return 0;
	if (vmp_copy_used(vq, slot, vq->pending, first) ||
	    (n > first &&
	     vmp_copy_used(vq, 0, vq->pending + first, n - first)))
		return -EFAULT;
	/* Entries must be visible before the index that exposes them. */
	smp_wmb();
	if (put_user(cpu_to_vmp16(new), &vq->used->idx) ||
	    vmp_log_used(vq, offsetof(struct vring_used, idx),
			 sizeof(__virtio16)))
		return -EFAULT;
	/* If the index ran all the way round past the last value we
	 * signalled, that value means nothing any more.
	 */
	if ((u16)(new - vq->signalled_used) < (u16)(new - vq->last_used))
		vq->signalled_valid = false;
	vq->last_used = new;
	vq->nr_pending = 0;
	vq->unsignalled = true;
	if (vmp_vq_logging(vq) && vq->log_ctx)
		eventfd_signal(vq->log_ctx);
	return 0;
}

/**
 * vmp_vq_add_used - queue used entries for the guest
 * @vq: virtqueue, mutex held
 * @elems: entries, made with vmp_used_elem()
 * @n: how many; they become visible to the guest together
 *
 * Entries are batched and written by vmp_vq_publish().
 *
 * Return: 0, or a negative errno after failing the ring.
 */
int vmp_vq_add_used(struct vmp_vq *vq, const struct vring_used_elem *elems,
		    unsigned int n)
{
	/* More than the ring holds cannot become visible together. */
	if (n > vq->pending_cap) {
		vmp_vq_fail(vq, "%u used entries at once, the ring holds %u",
			    n, vq->pending_cap);
		return -EINVAL;
	}
	if (vq->nr_pending + n > vq->pending_cap && vmp_vq_write_used(vq)) {
		vmp_vq_fail(vq, "cannot write used ring");
		return -EFAULT;
	}
	memcpy(vq->pending + vq->nr_pending, elems, sizeof(*elems) * n);
	vq->nr_pending += n;
	return 0;
}
EXPORT_SYMBOL_GPL(vmp_vq_add_used);

/**
 * vmp_vq_add_used_each - queue used entries that each stand alone
 * @vq: virtqueue, mutex held
 * @elems: entries, made with vmp_used_elem()
 * @n: how many, any number
 *
 * For entries that are not parts of one packet (buffers a backend hands
 * back one by one): they may become visible in several steps, so a ring
 * smaller than @n takes them all.
 *
 * Return: 0, or a negative errno after failing the ring.
 */
int vmp_vq_add_used_each(struct vmp_vq *vq,
			 const struct vring_used_elem *elems, unsigned int n)
{
	unsigned int k;
	int r;

	if (n && !vq->pending_cap)
		return -EINVAL;
	for (; n; n -= k, elems += k) {
		k = min(n, vq->pending_cap);
		r = vmp_vq_add_used(vq, elems, k);
		if (r)
			return r;
	}
	return 0;
}
EXPORT_SYMBOL_GPL(vmp_vq_add_used_each);

/* Decide whether the guest wants an interrupt for what we just used. */
static bool vmp_vq_want_signal(struct vmp_vq *vq)
{
	__virtio16 raw;
	u16 old, new;
	bool valid;

	/* Our used index must be visible before we read the guest's
	 * suppression state, or we could miss its request for an interrupt.
	 */
	smp_mb();
	if (vmp_vq_has(vq, VIRTIO_F_NOTIFY_ON_EMPTY) && vmp_vq_avail_empty(vq))
		return true;
	if (!vmp_vq_has(vq, VIRTIO_RING_F_EVENT_IDX)) {
		if (get_user(raw, &vq->avail->flags))
			return true;
		return !(raw & cpu_to_vmp16(VRING_AVAIL_F_NO_INTERRUPT));
	}
	old = vq->signalled_used;
	valid = vq->signalled_valid;
	new = vq->last_used;
	vq->signalled_used = new;
	vq->signalled_valid = true;
	if (!valid)
		return true;
	if (get_user(raw, vmp_used_event(vq)))
		return true;
	return vring_need_event(vmp16_to_cpu(raw), new, old);
}

/**
 * vmp_vq_publish - write batched used entries and interrupt the guest
 * @vq: virtqueue, mutex held
 *
 * Honours VRING_AVAIL_F_NO_INTERRUPT, or the used event index with
 * EVENT_IDX, and NOTIFY_ON_EMPTY.
 */
void vmp_vq_publish(struct vmp_vq *vq)
{
	if (vmp_vq_write_used(vq)) {
		vmp_vq_fail(vq, "cannot write used ring");
		return;
	}
	if (!vq->unsignalled)
		return;
	vq->unsignalled = false;
	if (vq->call_ctx && vmp_vq_want_signal(vq))
		eventfd_signal(vq->call_ctx);
}
EXPORT_SYMBOL_GPL(vmp_vq_publish);

/* ---- vring ioctls ------------------------------------------------------ */

static long vmp_vring_set_num(struct vmp_vq *vq, void __user *argp)
{
	struct vhost_vring_state s;

	if (vq->backend)
		return -EBUSY;
	if (copy_from_user(&s, argp, sizeof(s)))
		return -EFAULT;
	if (!s.num || s.num > VMP_MAX_RING || !is_power_of_2(s.num))
		return -EINVAL;
	vq->num = s.num;
	vq->failed = false;
	return 0;
}

static bool vmp_addr_fits(u64 a)
{
	return (u64)(unsigned long)a == a;
}

static long vmp_vring_set_addr(struct vmp_vq *vq, void __user *argp)
{
	struct vhost_vring_addr a;
	void __user *desc, *avail, *used;

	if (copy_from_user(&a, argp, sizeof(a)))
		return -EFAULT;
	if (a.flags & ~BIT(VHOST_VRING_F_LOG))
		return -EOPNOTSUPP;
	if (!vmp_addr_fits(a.desc_user_addr) ||
	    !vmp_addr_fits(a.avail_user_addr) ||
	    !vmp_addr_fits(a.used_user_addr))
		return -EFAULT;
	if (!IS_ALIGNED(a.desc_user_addr, VRING_DESC_ALIGN_SIZE) ||
	    !IS_ALIGNED(a.avail_user_addr, VRING_AVAIL_ALIGN_SIZE) ||
	    !IS_ALIGNED(a.used_user_addr, VRING_USED_ALIGN_SIZE) ||
	    !IS_ALIGNED(a.log_guest_addr, VRING_USED_ALIGN_SIZE))
		return -EINVAL;
	desc = u64_to_user_ptr(a.desc_user_addr);
	avail = u64_to_user_ptr(a.avail_user_addr);
	used = u64_to_user_ptr(a.used_user_addr);
	/* Without a size the check waits for the backend to be attached. */
	if (vq->num && !vmp_rings_ok(vq->num, desc, avail, used))
		return -EFAULT;
	if (vq->log_base_set &&
	    !vmp_vq_log_covered(vq, vq->log_base, a.flags & BIT(VHOST_VRING_F_LOG),
				a.log_guest_addr))
		return -EFAULT;

	/* Changing addresses of a live ring is how QEMU toggles used-ring
	 * logging during migration, so it is allowed.
	 */
	vq->desc = desc;
	vq->avail = avail;
	vq->used = used;
	vq->log_gpa = a.log_guest_addr;
	vq->log_used = a.flags & BIT(VHOST_VRING_F_LOG);
	if (!vq->backend)
		vq->failed = false;
	return 0;
}

static long vmp_vring_set_base(struct vmp_vq *vq, void __user *argp)
{
	struct vhost_vring_state s;

	if (vq->backend)
		return -EBUSY;
	if (copy_from_user(&s, argp, sizeof(s)))
		return -EFAULT;
	if (s.num > 0xffff)
		return -EINVAL;
	vq->last_avail = s.num;
	vq->avail_seen = s.num;
	vq->halted = false;
	vq->failed = false;
	return 0;
}

/* Report where the ring stands and stop consuming it, as on device stop. */
static long vmp_vring_get_base(struct vmp_vq *vq, u32 idx, void __user *argp)
{
	struct vhost_vring_state s = {
		.index = idx,
		.num = vq->last_avail,
	};

	vq->halted = true;
	if (copy_to_user(argp, &s, sizeof(s)))
		return -EFAULT;
	return 0;
}

static long vmp_vring_set_kick(struct vmp_vq *vq, void __user *argp)
{
	struct vhost_vring_file f;
	struct file *file = NULL, *old;
	long r = 0;

	if (copy_from_user(&f, argp, sizeof(f)))
		return -EFAULT;
	if (f.fd != VHOST_FILE_UNBIND) {
		file = eventfd_fget(f.fd);
		if (IS_ERR(file))
			return PTR_ERR(file);
	}
	old = vq->kick;
	if (file == old) {
		if (file)
			fput(file);
		return 0;
	}
	vmp_poll_stop(&vq->kick_poll);
	vq->kick = file;
	if (file)
		r = vmp_poll_start(&vq->kick_poll, file);
	if (old)
		fput(old);
	return r;
}

/* Swap an eventfd context; fd -1 clears it. */
static long vmp_vring_set_ctx(struct eventfd_ctx **slot, void __user *argp)
{
	struct eventfd_ctx *ctx = NULL;
	struct vhost_vring_file f;

	if (copy_from_user(&f, argp, sizeof(f)))
		return -EFAULT;
	if (f.fd != VHOST_FILE_UNBIND) {
		ctx = eventfd_ctx_fdget(f.fd);
		if (IS_ERR(ctx))
			return PTR_ERR(ctx);
	}
	swap(ctx, *slot);
	if (ctx)
		eventfd_ctx_put(ctx);
	return 0;
}

static long vmp_vring_busyloop(struct vmp_vq *vq, unsigned int cmd, u32 idx,
			       void __user *argp)
{
	struct vhost_vring_state s;

	if (cmd == VHOST_GET_VRING_BUSYLOOP_TIMEOUT) {
		s.index = idx;
		s.num = vq->busyloop_us;
		return copy_to_user(argp, &s, sizeof(s)) ? -EFAULT : 0;
	}
	if (copy_from_user(&s, argp, sizeof(s)))
		return -EFAULT;
	vq->busyloop_us = s.num;
	return 0;
}

static long vmp_vring_cmd(struct vmp_vq *vq, unsigned int cmd, u32 idx,
			  void __user *argp)
{
	switch (cmd) {
	case VHOST_SET_VRING_NUM:
		return vmp_vring_set_num(vq, argp);
	case VHOST_SET_VRING_ADDR:
		return vmp_vring_set_addr(vq, argp);
	case VHOST_SET_VRING_BASE:
		return vmp_vring_set_base(vq, argp);
	case VHOST_GET_VRING_BASE:
		return vmp_vring_get_base(vq, idx, argp);
	case VHOST_SET_VRING_KICK:
		return vmp_vring_set_kick(vq, argp);
	case VHOST_SET_VRING_CALL:
		return vmp_vring_set_ctx(&vq->call_ctx, argp);
	case VHOST_SET_VRING_ERR:
		return vmp_vring_set_ctx(&vq->err_ctx, argp);
	case VHOST_SET_VRING_BUSYLOOP_TIMEOUT:
	case VHOST_GET_VRING_BUSYLOOP_TIMEOUT:
		return vmp_vring_busyloop(vq, cmd, idx, argp);
	default:
		return -ENOIOCTLCMD;
	}
}

static bool vmp_is_vring_cmd(unsigned int cmd)
{
	switch (cmd) {
	case VHOST_SET_VRING_NUM:
	case VHOST_SET_VRING_ADDR:
	case VHOST_SET_VRING_BASE:
	case VHOST_GET_VRING_BASE:
	case VHOST_SET_VRING_KICK:
	case VHOST_SET_VRING_CALL:
	case VHOST_SET_VRING_ERR:
	case VHOST_SET_VRING_BUSYLOOP_TIMEOUT:
	case VHOST_GET_VRING_BUSYLOOP_TIMEOUT:
		return true;
	default:
		return false;
	}
}

static long vmp_vring_ioctl(struct vmp_dev *dev, unsigned int cmd,
			    void __user *argp)
{
	struct vmp_vq *vq;
	u32 idx;
	long r;

	/* Every vring argument starts with the ring index. */
	if (get_user(idx, (u32 __user *)argp))
		return -EFAULT;
	if (idx >= dev->nvqs)
		return -ENOBUFS;
	idx = array_index_nospec(idx, dev->nvqs);
	vq = dev->vqs[idx];

	mutex_lock(&vq->mutex);
	r = vmp_vring_cmd(vq, cmd, idx, argp);
	mutex_unlock(&vq->mutex);
	return r;
}

/* ---- device ioctls ----------------------------------------------------- */

static bool vmp_vq_log_fits(struct vmp_vq *vq, u64 base)
{
	bool ok;

	mutex_lock(&vq->mutex);
	ok = vmp_vq_log_covered(vq, base, vq->log_used, vq->log_gpa);
	mutex_unlock(&vq->mutex);
	return ok;
}

static long vmp_set_log_base(struct vmp_dev *dev, u64 __user *argp)
{
	unsigned int i;
	u64 base;

	if (copy_from_user(&base, argp, sizeof(base)))
		return -EFAULT;
	if (!vmp_addr_fits(base) || !vmp_log_covers(base, dev->mem))
		return -EFAULT;
	for (i = 0; i < dev->nvqs; i++)
		if (!vmp_vq_log_fits(dev->vqs[i], base))
			return -EFAULT;
	dev->log_base = base;
	dev->log_base_set = true;
	for (i = 0; i < dev->nvqs; i++) {
		struct vmp_vq *vq = dev->vqs[i];

		mutex_lock(&vq->mutex);
		vq->log_base = base;
		vq->log_base_set = true;
		mutex_unlock(&vq->mutex);
	}
	return 0;
}

static long vmp_set_log_fd(struct vmp_dev *dev, int __user *argp)
{
	struct eventfd_ctx *ctx = NULL, *old;
	unsigned int i;
	int fd;

	if (get_user(fd, argp))
		return -EFAULT;
	if (fd != VHOST_FILE_UNBIND) {
		ctx = eventfd_ctx_fdget(fd);
		if (IS_ERR(ctx))
			return PTR_ERR(ctx);
	}
	old = dev->log_ctx;
	dev->log_ctx = ctx;
	for (i = 0; i < dev->nvqs; i++) {
		struct vmp_vq *vq = dev->vqs[i];

		mutex_lock(&vq->mutex);
		vq->log_ctx = ctx;
		mutex_unlock(&vq->mutex);
	}
	if (old)
		eventfd_ctx_put(old);
	return 0;
}

static long vmp_dev_set_owner(struct vmp_dev *dev)
{
	int r;

	if (dev->owner_mm)
		return -EBUSY;
	if (!current->mm)
		return -EINVAL;
	r = vmp_worker_start(dev);
	if (r)
		return r;
	dev->owner_mm = current->mm;
	mmgrab(dev->owner_mm);
	dev->owner_tgid = current->tgid;
	return 0;
}

/**
 * vmp_dev_has_owner - was VHOST_SET_OWNER done?
 * @dev: device, mutex held
 *
 * Return: true if the device is owned.
 */
bool vmp_dev_has_owner(struct vmp_dev *dev)
{
	return dev->owner_mm;
}
EXPORT_SYMBOL_GPL(vmp_dev_has_owner);

/**
 * vmp_dev_check_owner - is the caller the owner?
 * @dev: device, mutex held
 *
 * The worker uses the owner's address space, so only the owner may hand
 * us user addresses.
 *
 * Return: 0 or -EPERM.
 */
int vmp_dev_check_owner(struct vmp_dev *dev)
{
	return dev->owner_mm && dev->owner_mm == current->mm ? 0 : -EPERM;
}
EXPORT_SYMBOL_GPL(vmp_dev_check_owner);

/**
 * vmp_dev_ioctl - generic device and vring ioctls
 * @dev: device, mutex held by the caller
 * @cmd: ioctl number
 * @argp: user argument
 *
 * Handles VHOST_SET_OWNER, the memory table, dirty log and per-ring
 * commands.  Everything but SET_OWNER is for the owner only.
 *
 * Return: the ioctl result, or -ENOIOCTLCMD for commands it does not know.
 */
long vmp_dev_ioctl(struct vmp_dev *dev, unsigned int cmd, void __user *argp)
{
	long r;

	lockdep_assert_held(&dev->mutex);
	if (cmd == VHOST_SET_OWNER)
		return vmp_dev_set_owner(dev);
	r = vmp_dev_check_owner(dev);
	if (r)
		return r;

	switch (cmd) {
	case VHOST_SET_MEM_TABLE:
		return vmp_set_mem_table(dev, argp);
	case VHOST_SET_LOG_BASE:
		return vmp_set_log_base(dev, argp);
	case VHOST_SET_LOG_FD:
		return vmp_set_log_fd(dev, argp);
	default:
		if (vmp_is_vring_cmd(cmd))
			return vmp_vring_ioctl(dev, cmd, argp);
		return -ENOIOCTLCMD;
	}
}
EXPORT_SYMBOL_GPL(vmp_dev_ioctl);

/* ---- life cycle -------------------------------------------------------- */

static void vmp_vq_reset(struct vmp_vq *vq)
{
	vq->num = 0;
	vq->desc = NULL;
	vq->avail = NULL;
	vq->used = NULL;
	vq->log_gpa = 0;
	vq->log_used = false;
	vq->last_avail = 0;
	vq->avail_seen = 0;
	vq->last_used = 0;
	vq->used_flags = 0;
	vq->signalled_used = 0;
	vq->signalled_valid = false;
	vq->halted = false;
	vq->failed = false;
	vq->log_base = 0;
	vq->log_base_set = false;
	vq->features = 0;
	vq->busyloop_us = 0;
	vq->mem = NULL;
	vq->nr_pending = 0;
	vq->pending_cap = 0;
	vq->unsignalled = false;
}

/* Drop every file and eventfd a ring holds.  The worker is stopped. */
static void vmp_vq_release_files(struct vmp_vq *vq)
{
	vmp_poll_stop(&vq->kick_poll);
	if (vq->kick)
		fput(vq->kick);
	vq->kick = NULL;
	if (vq->call_ctx)
		eventfd_ctx_put(vq->call_ctx);
	vq->call_ctx = NULL;
	if (vq->err_ctx)
		eventfd_ctx_put(vq->err_ctx);
	vq->err_ctx = NULL;
	vq->log_ctx = NULL;
}

static void vmp_vq_work_fn(struct vmp_work *work)
{
	struct vmp_vq *vq = container_of(work, struct vmp_vq, work);

	vq->handle(vq);
}

static void vmp_vq_free_scratch(struct vmp_vq *vq)
{
	kvfree(vq->iov);
	kvfree(vq->log);
	kvfree(vq->pending);
	vq->iov = NULL;
	vq->log = NULL;
	vq->pending = NULL;
}

static int vmp_vq_init(struct vmp_dev *dev, struct vmp_vq *vq,
		       unsigned int index)
{
	vq->dev = dev;
	vq->index = index;
	mutex_init(&vq->mutex);
	vmp_work_init(&vq->work, vmp_vq_work_fn);
	vmp_poll_init(&vq->kick_poll, dev, &vq->work, EPOLLIN);
	vq->kick = NULL;
	vq->call_ctx = NULL;
	vq->err_ctx = NULL;
	vq->log_ctx = NULL;
	vq->backend = NULL;
	vmp_vq_reset(vq);
	vq->iov = kvmalloc_array(VMP_MAX_SEGS, sizeof(*vq->iov),
				 GFP_KERNEL_ACCOUNT);
	vq->log = kvmalloc_array(VMP_MAX_SEGS, sizeof(*vq->log),
				 GFP_KERNEL_ACCOUNT);
	vq->pending = kvmalloc_array(VMP_MAX_SEGS, sizeof(*vq->pending),
				     GFP_KERNEL_ACCOUNT);
	if (!vq->iov || !vq->log || !vq->pending) {
		vmp_vq_free_scratch(vq);
		return -ENOMEM;
	}
	return 0;
}

/**
 * vmp_dev_init - set up a device and its virtqueues
 * @dev: device, zeroed by the caller
 * @vqs: the virtqueues; each needs ->handle set by the caller
 * @nvqs: number of virtqueues
 *
 * Return: 0 or -ENOMEM.
 */
int vmp_dev_init(struct vmp_dev *dev, struct vmp_vq **vqs, unsigned int nvqs)
{
	unsigned int i;
	int r;

	mutex_init(&dev->mutex);
	dev->vqs = vqs;
	dev->nvqs = nvqs;
	RCU_INIT_POINTER(dev->live, NULL);
	for (i = 0; i < nvqs; i++) {
		r = vmp_vq_init(dev, vqs[i], i);
		if (r)
			goto err;
	}
	return 0;
err:
	while (i--)
		vmp_vq_free_scratch(vqs[i]);
	return r;
}
EXPORT_SYMBOL_GPL(vmp_dev_init);

static void vmp_dev_teardown(struct vmp_dev *dev)
{
	unsigned int i;

	for (i = 0; i < dev->nvqs; i++)
		vmp_poll_stop(&dev->vqs[i]->kick_poll);
	vmp_worker_stop(dev);
	for (i = 0; i < dev->nvqs; i++) {
		struct vmp_vq *vq = dev->vqs[i];

		WARN_ON(vq->backend);
		vmp_vq_release_files(vq);
		vmp_vq_reset(vq);
	}
	if (dev->log_ctx)
		eventfd_ctx_put(dev->log_ctx);
	dev->log_ctx = NULL;
	dev->log_base = 0;
	dev->log_base_set = false;
	kvfree(dev->mem);
	dev->mem = NULL;
	if (dev->owner_mm)
		mmdrop(dev->owner_mm);
	dev->owner_mm = NULL;
	dev->owner_tgid = 0;
}

/**
 * vmp_dev_reset_owner - return the device to its just-opened state
 * @dev: device, mutex held; the driver has detached every backend
 *
 * Stops the worker and drops eventfds, memory table, log and features, so
 * that VHOST_SET_OWNER may be called again.
 */
void vmp_dev_reset_owner(struct vmp_dev *dev)
{
	lockdep_assert_held(&dev->mutex);
	vmp_dev_teardown(dev);
}
EXPORT_SYMBOL_GPL(vmp_dev_reset_owner);

/**
 * vmp_dev_cleanup - release everything a device holds
 * @dev: device being freed; the driver has detached every backend
 */
void vmp_dev_cleanup(struct vmp_dev *dev)
{
	unsigned int i;

	vmp_dev_teardown(dev);
	for (i = 0; i < dev->nvqs; i++)
		vmp_vq_free_scratch(dev->vqs[i]);
}
EXPORT_SYMBOL_GPL(vmp_dev_cleanup);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("vhost-mp core: virtqueues served in the host kernel");
