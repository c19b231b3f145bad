/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A user space virtio guest for /dev/vhost-net: guest memory registered as
 * the vhost memory table, split virtqueues driven the way a guest driver
 * drives them (descriptor chains, direct or indirect, the avail ring, kick
 * and interrupt suppression with or without EVENT_IDX), and the used ring
 * harvested back.  Shared by the functional, negative and benchmark tests,
 * so it also exposes the raw descriptor table and avail ring for tests that
 * build malformed chains on purpose.
 *
 * Everything here returns 0 or a negative errno; nothing asserts, so the
 * caller decides what is a failure.
 */
#ifndef VIRTIO_SIM_H
#define VIRTIO_SIM_H

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/vhost.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#define SIM_MAX_REGIONS		4
#define SIM_GPA_BASE		0x100000ULL
#define SIM_PAGE		4096UL
#define SIM_RING_ALIGN		4096UL
/* Longest chain a test builds; also the size of each indirect table. */
#define SIM_MAX_SG		64
#define SIM_NVQ			2
#define SIM_RX_VQ		0
#define SIM_TX_VQ		1

struct sim;

/* One guest buffer of a chain: guest-physical address, length, direction. */
struct sim_sg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

struct sim_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
};

/* Driver-side state of one outstanding chain, indexed by its head. */
struct sim_head {
	bool busy;
	bool indirect;
	uint16_t ndesc;		/* descriptors taken from the ring table */
	uint16_t last;		/* last of them, to give the chain back */
	uintptr_t token;	/* caller's cookie, returned with the used entry */
};

struct sim_vq {
	struct sim *sim;
	unsigned int index;
	unsigned int num;
	struct vring vr;		/* host virtual addresses of the ring */
	uint64_t ring_gpa;
	uint64_t indirect_gpa;		/* one SIM_MAX_SG table per head */
	struct vring_desc *indirect;
	uint16_t *free_next;		/* free list, kept out of guest memory */
	uint16_t free_head;
	unsigned int num_free;
	struct sim_head *heads;
	uint16_t avail_idx;		/* next avail slot (published by kick) */
	uint16_t kicked_idx;		/* avail idx seen by the last kick check */
	uint16_t last_used;		/* next used entry to harvest */
	bool event_idx;
	bool always_kick;		/* ignore the device's kick suppression */
	int kick_fd;
	int call_fd;
	int err_fd;
	/* statistics */
	unsigned long kicks;
	unsigned long kicks_suppressed;
	unsigned long calls;
	unsigned long added;
	unsigned long harvested;
};

struct sim {
	int fd;
	uint64_t offered;
	uint64_t features;
	unsigned int nregions;
	struct sim_region region[SIM_MAX_REGIONS];
	uint64_t mem_size;
	uint64_t brk;			/* bump allocator, guest-physical */
	struct sim_vq vq[SIM_NVQ];
};

static inline void sim_mb(void)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static inline uint64_t sim_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline bool sim_has(const struct sim *s, unsigned int bit)
{
	return s->features & (1ULL << bit);
}

/* Reset @s to the "nothing allocated, nothing open" state. */
static inline void sim_init(struct sim *s)
{
	unsigned int i;

	memset(s, 0, sizeof(*s));
	s->fd = -1;
	for (i = 0; i < SIM_NVQ; i++) {
		s->vq[i].kick_fd = -1;
		s->vq[i].call_fd = -1;
		s->vq[i].err_fd = -1;
	}
}

/* ---- guest memory ---------------------------------------------------- */

/*
 * @size bytes of guest memory at SIM_GPA_BASE, contiguous in guest-physical
 * space but split into @nregions separate mappings, so that a buffer which
 * crosses a region boundary is contiguous for the guest and not for the
 * host: the device must split it.
 *
 * The memory is faulted in on first touch, as a guest's RAM is unless its
 * VMM preallocates it: populating 100 MiB up front costs seconds per test
 * under the debug kernel, and the device must cope with absent pages
 * anyway.  sim_mem_prefault() is for callers that time the datapath.
 */
static inline int sim_mem_init(struct sim *s, uint64_t size,
			       unsigned int nregions)
{
	uint64_t per, gpa = SIM_GPA_BASE;
	unsigned int i;

	if (!nregions || nregions > SIM_MAX_REGIONS)
		return -EINVAL;
	per = (size / nregions) & ~(SIM_PAGE - 1);
	if (!per)
		return -EINVAL;
	for (i = 0; i < nregions; i++) {
		void *p = mmap(NULL, per, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			return -errno;
		s->region[i].gpa = gpa;
		s->region[i].size = per;
		s->region[i].hva = p;
		s->nregions = i + 1;
		gpa += per;
	}
	s->mem_size = per * nregions;
	s->brk = SIM_GPA_BASE;
	return 0;
}

/* Touch every page of guest memory, so that no fault is timed later. */
static inline void sim_mem_prefault(struct sim *s)
{
	unsigned int i;

	for (i = 0; i < s->nregions; i++)
		memset(s->region[i].hva, 0, s->region[i].size);
}

static inline uint64_t sim_mem_end(const struct sim *s)
{
	return SIM_GPA_BASE + s->mem_size;
}

/* Host pointer for [gpa, gpa + len) if it lies in one region, else NULL. */
static inline void *sim_ptr(const struct sim *s, uint64_t gpa, uint64_t len)
{
	unsigned int i;

	for (i = 0; i < s->nregions; i++) {
		const struct sim_region *r = &s->region[i];

		if (gpa >= r->gpa && gpa - r->gpa < r->size &&
		    len <= r->size - (gpa - r->gpa))
			return r->hva + (gpa - r->gpa);
	}
	return NULL;
}

/* Walk [gpa, gpa + len) region by region. */
static inline int sim_mem_op(const struct sim *s, uint64_t gpa, uint8_t *buf,
			     uint64_t len, int op, uint8_t fill)
{
	while (len) {
		const struct sim_region *r = NULL;
		uint64_t chunk;
		unsigned int i;
		uint8_t *p;

		for (i = 0; i < s->nregions; i++)
			if (gpa >= s->region[i].gpa &&
			    gpa - s->region[i].gpa < s->region[i].size)
				r = &s->region[i];
		if (!r)
			return -EFAULT;
		p = r->hva + (gpa - r->gpa);
		chunk = r->size - (gpa - r->gpa);
		if (chunk > len)
			chunk = len;
		if (op == 0)
			memcpy(p, buf, chunk);
		else if (op == 1)
			memcpy(buf, p, chunk);
		else
			memset(p, fill, chunk);
		if (buf)
			buf += chunk;
		gpa += chunk;
		len -= chunk;
	}
	return 0;
}

static inline int sim_write(const struct sim *s, uint64_t gpa, const void *src,
			    uint64_t len)
{
	return sim_mem_op(s, gpa, (uint8_t *)src, len, 0, 0);
}

static inline int sim_read(const struct sim *s, void *dst, uint64_t gpa,
			   uint64_t len)
{
	return sim_mem_op(s, gpa, dst, len, 1, 0);
}

static inline int sim_fill(const struct sim *s, uint64_t gpa, uint8_t byte,
			   uint64_t len)
{
	return sim_mem_op(s, gpa, NULL, len, 2, byte);
}

/* Bump allocator; returns 0 when guest memory is exhausted. */
static inline uint64_t sim_alloc(struct sim *s, uint64_t len, uint64_t align)
{
	uint64_t gpa = (s->brk + align - 1) & ~(align - 1);

	if (gpa + len > sim_mem_end(s))
		return 0;
	s->brk = gpa + len;
	return gpa;
}

/* ---- device --------------------------------------------------------- */

static inline int sim_ioctl(struct sim *s, unsigned long req, void *arg)
{
	return ioctl(s->fd, req, arg) < 0 ? -errno : 0;
}

/* Open the device and take ownership, as QEMU does first. */
static inline int sim_open(struct sim *s, const char *path)
{
	s->fd = open(path, O_RDWR | O_CLOEXEC);
	if (s->fd < 0)
		return -errno;
	return sim_ioctl(s, VHOST_SET_OWNER, NULL);
}

/* GET_FEATURES, then SET_FEATURES with @want if all of it is offered. */
static inline int sim_negotiate(struct sim *s, uint64_t want)
{
	int r = sim_ioctl(s, VHOST_GET_FEATURES, &s->offered);

	if (r)
		return r;
	if (want & ~s->offered)
		return -EOPNOTSUPP;
	r = sim_ioctl(s, VHOST_SET_FEATURES, &want);
	if (!r)
		s->features = want;
	return r;
}

/* Register every region of guest memory with VHOST_SET_MEM_TABLE. */
static inline int sim_set_mem_table(struct sim *s)
{
	struct vhost_memory *mem;
	unsigned int i;
	int r;

	mem = calloc(1, sizeof(*mem) +
		     s->nregions * sizeof(struct vhost_memory_region));
	if (!mem)
		return -ENOMEM;
	mem->nregions = s->nregions;
	for (i = 0; i < s->nregions; i++) {
		mem->regions[i].guest_phys_addr = s->region[i].gpa;
		mem->regions[i].memory_size = s->region[i].size;
		mem->regions[i].userspace_addr =
			(uint64_t)(uintptr_t)s->region[i].hva;
	}
	r = sim_ioctl(s, VHOST_SET_MEM_TABLE, mem);
	free(mem);
	return r;
}

/*
 * Lay out virtqueue @index (num entries, a power of two) in guest memory and
 * configure it: NUM, BASE, ADDR, KICK, CALL, ERR.  The used index in guest
 * memory starts at @base too: vhost reads it back when the backend is set.
 */
static inline int sim_vq_init(struct sim *s, unsigned int index,
			      unsigned int num, uint16_t base)
{
	struct sim_vq *vq = &s->vq[index];
	struct vhost_vring_state state;
	struct vhost_vring_addr addr;
	struct vhost_vring_file file;
	unsigned int i;
	void *ring;
	int r;

	memset(vq, 0, sizeof(*vq));
	vq->sim = s;
	vq->index = index;
	vq->num = num;
	vq->kick_fd = -1;
	vq->call_fd = -1;
	vq->err_fd = -1;
	vq->event_idx = sim_has(s, VIRTIO_RING_F_EVENT_IDX);

	vq->ring_gpa = sim_alloc(s, vring_size(num, SIM_RING_ALIGN),
				 SIM_RING_ALIGN);
	vq->indirect_gpa = sim_alloc(s, (uint64_t)num * SIM_MAX_SG *
				     sizeof(struct vring_desc), SIM_PAGE);
	if (!vq->ring_gpa || !vq->indirect_gpa)
		return -ENOMEM;
	ring = sim_ptr(s, vq->ring_gpa, vring_size(num, SIM_RING_ALIGN));
	vq->indirect = sim_ptr(s, vq->indirect_gpa, (uint64_t)num *
			       SIM_MAX_SG * sizeof(struct vring_desc));
	if (!ring || !vq->indirect)
		return -EFAULT;	/* crosses a region: not for rings */
	memset(ring, 0, vring_size(num, SIM_RING_ALIGN));
	vring_init(&vq->vr, num, ring, SIM_RING_ALIGN);

	vq->heads = calloc(num, sizeof(*vq->heads));
	vq->free_next = calloc(num, sizeof(*vq->free_next));
	if (!vq->heads || !vq->free_next)
		return -ENOMEM;
	for (i = 0; i < num; i++)
		vq->free_next[i] = (i + 1) % num;
	vq->free_head = 0;
	vq->num_free = num;

	vq->avail_idx = base;
	vq->kicked_idx = base;
	vq->last_used = base;
	/*
	 * A ring that starts at @base looks like one handed over mid-life
	 * (as after migration): both indices and both event indices there.
	 */
	vq->vr.avail->idx = htole16(base);
	vq->vr.used->idx = htole16(base);
	vring_used_event(&vq->vr) = htole16(base);
	vring_avail_event(&vq->vr) = htole16(base);

	vq->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	vq->call_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	vq->err_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (vq->kick_fd < 0 || vq->call_fd < 0 || vq->err_fd < 0)
		return -errno;

	state.index = index;
	state.num = num;
	r = sim_ioctl(s, VHOST_SET_VRING_NUM, &state);
	if (r)
		return r;
	state.num = base;
	r = sim_ioctl(s, VHOST_SET_VRING_BASE, &state);
	if (r)
		return r;
	memset(&addr, 0, sizeof(addr));
	addr.index = index;
	addr.desc_user_addr = (uint64_t)(uintptr_t)vq->vr.desc;
	addr.avail_user_addr = (uint64_t)(uintptr_t)vq->vr.avail;
	addr.used_user_addr = (uint64_t)(uintptr_t)vq->vr.used;
	r = sim_ioctl(s, VHOST_SET_VRING_ADDR, &addr);
	if (r)
		return r;
	file.index = index;
	file.fd = vq->kick_fd;
	r = sim_ioctl(s, VHOST_SET_VRING_KICK, &file);
	if (r)
		return r;
	file.fd = vq->call_fd;
	r = sim_ioctl(s, VHOST_SET_VRING_CALL, &file);
	if (r)
		return r;
	file.fd = vq->err_fd;
	return sim_ioctl(s, VHOST_SET_VRING_ERR, &file);
}

/* VHOST_NET_SET_BACKEND on every virtqueue; @fd -1 detaches. */
static inline int sim_set_backend(struct sim *s, int fd)
{
	struct vhost_vring_file file;
	unsigned int i;
	int r;

	for (i = 0; i < SIM_NVQ; i++) {
		file.index = i;
		file.fd = fd;
		r = sim_ioctl(s, VHOST_NET_SET_BACKEND, &file);
		if (r)
			return r;
	}
	return 0;
}

/* VHOST_GET_VRING_BASE: the device's next avail index. */
static inline int sim_get_vring_base(struct sim *s, unsigned int index,
				     uint16_t *base)
{
	struct vhost_vring_state state = { .index = index };
	int r = sim_ioctl(s, VHOST_GET_VRING_BASE, &state);

	if (!r)
		*base = state.num;
	return r;
}

static inline void sim_close(struct sim *s)
{
	unsigned int i;

	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	for (i = 0; i < SIM_NVQ; i++) {
		struct sim_vq *vq = &s->vq[i];

		if (vq->kick_fd >= 0)
			close(vq->kick_fd);
		if (vq->call_fd >= 0)
			close(vq->call_fd);
		if (vq->err_fd >= 0)
			close(vq->err_fd);
		vq->kick_fd = -1;
	vq->call_fd = -1;
	vq->err_fd = -1;
		free(vq->heads);
		free(vq->free_next);
		vq->heads = NULL;
		vq->free_next = NULL;
	}
	for (i = 0; i < s->nregions; i++)
		munmap(s->region[i].hva, s->region[i].size);
	s->nregions = 0;
}

/* ---- driver side of a split virtqueue -------------------------------- */

static inline struct vring_desc *sim_desc(struct sim_vq *vq, unsigned int i)
{
	return &vq->vr.desc[i % vq->num];
}

/* Put @head in the next avail slot without publishing it (raw access). */
static inline void sim_avail_push(struct sim_vq *vq, uint16_t head)
{
	vq->vr.avail->ring[vq->avail_idx % vq->num] = htole16(head);
	vq->avail_idx++;
	vq->added++;
}

static inline void sim_fill_desc(struct vring_desc *d, const struct sim_sg *sg,
				 uint16_t flags, uint16_t next)
{
	d->addr = htole64(sg->gpa);
	d->len = htole32(sg->len);
	d->flags = htole16(flags | (sg->write ? VRING_DESC_F_WRITE : 0));
	d->next = htole16(next);
}

/*
 * Add a chain of @n buffers (device-readable ones first, as the spec asks)
 * to the avail ring; @indirect puts it in this head's indirect table.  The
 * chain is published by the next sim_kick() or sim_publish().  Returns the
 * head, or -ENOSPC when the ring is full.
 */
static inline int sim_add_chain(struct sim_vq *vq, const struct sim_sg *sg,
				unsigned int n, bool indirect, uintptr_t token)
{
	unsigned int need = indirect ? 1 : n, i;
	uint16_t head, cur, prev = 0;

	if (!n || n > SIM_MAX_SG || (!indirect && n > vq->num))
		return -EINVAL;
	if (vq->num_free < need)
		return -ENOSPC;

	head = vq->free_head;
	if (indirect) {
		struct vring_desc *table = vq->indirect + (size_t)head * SIM_MAX_SG;
		struct sim_sg ind = {
			.gpa = vq->indirect_gpa + (uint64_t)head * SIM_MAX_SG *
			       sizeof(struct vring_desc),
			.len = n * sizeof(struct vring_desc),
		};

		for (i = 0; i < n; i++)
			sim_fill_desc(&table[i], &sg[i],
				      i + 1 < n ? VRING_DESC_F_NEXT : 0, i + 1);
		sim_fill_desc(&vq->vr.desc[head], &ind, VRING_DESC_F_INDIRECT,
			      0);
		prev = head;
	} else {
		cur = head;
		for (i = 0; i < n; i++) {
			uint16_t next = vq->free_next[cur];

			sim_fill_desc(&vq->vr.desc[cur], &sg[i],
				      i + 1 < n ? VRING_DESC_F_NEXT : 0, next);
			prev = cur;
			cur = next;
		}
	}
	vq->free_head = vq->free_next[prev];
	vq->num_free -= need;
	vq->heads[head].busy = true;
	vq->heads[head].indirect = indirect;
	vq->heads[head].ndesc = need;
	vq->heads[head].last = prev;
	vq->heads[head].token = token;
	sim_avail_push(vq, head);
	return head;
}

/* A packet for the device to send: every buffer device-readable. */
static inline int sim_add_tx(struct sim *s, struct sim_sg *sg, unsigned int n,
			     bool indirect, uintptr_t token)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		sg[i].write = false;
	return sim_add_chain(&s->vq[SIM_TX_VQ], sg, n, indirect, token);
}

/* A receive buffer: every buffer device-writable. */
static inline int sim_post_rx(struct sim *s, struct sim_sg *sg, unsigned int n,
			      bool indirect, uintptr_t token)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		sg[i].write = true;
	return sim_add_chain(&s->vq[SIM_RX_VQ], sg, n, indirect, token);
}

static inline void sim_publish(struct sim_vq *vq)
{
	__atomic_store_n(&vq->vr.avail->idx, htole16(vq->avail_idx),
			 __ATOMIC_RELEASE);
}

/*
 * Publish what was added and notify the device unless it asked not to be
 * (VRING_USED_F_NO_NOTIFY, or the avail event index with EVENT_IDX).
 * Returns true when the kick eventfd was written.
 */
static inline bool sim_kick(struct sim_vq *vq)
{
	uint16_t old = vq->kicked_idx, now = vq->avail_idx;
	uint64_t one = 1;
	bool need;

	sim_publish(vq);
	sim_mb();
	if (vq->event_idx)
		need = vring_need_event(le16toh(vring_avail_event(&vq->vr)),
					now, old);
	else
		need = !(le16toh(vq->vr.used->flags) & VRING_USED_F_NO_NOTIFY);
	vq->kicked_idx = now;
	if (!need && !vq->always_kick) {
		vq->kicks_suppressed++;
		return false;
	}
	vq->kicks++;
	return write(vq->kick_fd, &one, sizeof(one)) == sizeof(one);
}

static inline uint16_t sim_used_idx(struct sim_vq *vq)
{
	return le16toh(__atomic_load_n(&vq->vr.used->idx, __ATOMIC_ACQUIRE));
}

static inline unsigned int sim_pending_used(struct sim_vq *vq)
{
	return (uint16_t)(sim_used_idx(vq) - vq->last_used);
}

/*
 * Harvest one used entry: returns its head and fills @len and @token, or
 * -EAGAIN when there is none, or -EBADMSG when the device returned a head
 * that is not outstanding (that entry is consumed).
 */
static inline int sim_get_used(struct sim_vq *vq, uint32_t *len,
			       uintptr_t *token)
{
	struct vring_used_elem *e;
	struct sim_head *h;
	uint32_t id;

	if (sim_used_idx(vq) == vq->last_used)
		return -EAGAIN;
	e = &vq->vr.used->ring[vq->last_used % vq->num];
	id = le32toh(e->id);
	*len = le32toh(e->len);
	vq->last_used++;
	if (id >= vq->num || !vq->heads[id].busy)
		return -EBADMSG;
	h = &vq->heads[id];
	*token = h->token;
	vq->free_next[h->last] = vq->free_head;
	vq->free_head = id;
	vq->num_free += h->ndesc;
	h->busy = false;
	vq->harvested++;
	return id;
}

/*
 * Ask for an interrupt at the next used entry.  Returns true when entries
 * are already pending, in which case the caller must not sleep.
 */
static inline bool sim_enable_cb(struct sim_vq *vq)
{
	if (vq->event_idx)
		vring_used_event(&vq->vr) = htole16(vq->last_used);
	else
		vq->vr.avail->flags = 0;
	sim_mb();
	return sim_pending_used(vq) != 0;
}

/* Ask for no interrupts (only effective without EVENT_IDX). */
static inline void sim_disable_cb(struct sim_vq *vq)
{
	if (!vq->event_idx)
		vq->vr.avail->flags = htole16(VRING_AVAIL_F_NO_INTERRUPT);
}

/* Consume a pending call; returns true if there was one. */
static inline bool sim_ack_call(struct sim_vq *vq)
{
	uint64_t v;

	if (read(vq->call_fd, &v, sizeof(v)) != sizeof(v))
		return false;
	vq->calls++;
	return true;
}

/* Has the device signalled an error on this virtqueue? */
static inline bool sim_vq_error(struct sim_vq *vq)
{
	struct pollfd p = { .fd = vq->err_fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1;
}

/*
 * Wait until a used entry is pending, at most @timeout_ms.  0 when one is,
 * -ETIMEDOUT, or -EIO when the device signalled a virtqueue error instead.
 */
static inline int sim_wait_used(struct sim_vq *vq, int timeout_ms)
{
	uint64_t end = sim_now_ms() + timeout_ms;

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = vq->call_fd, .events = POLLIN },
			{ .fd = vq->err_fd, .events = POLLIN },
		};
		uint64_t now;
		int r;

		if (sim_enable_cb(vq))
			return 0;
		now = sim_now_ms();
		if (now >= end)
			return -ETIMEDOUT;
		r = poll(p, 2, end - now);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (p[1].revents & POLLIN)
			return -EIO;
		if (p[0].revents & POLLIN)
			sim_ack_call(vq);
	}
}

/* Consume a pending virtqueue error; returns true if there was one. */
static inline bool sim_take_error(struct sim_vq *vq)
{
	uint64_t v;

	return read(vq->err_fd, &v, sizeof(v)) == sizeof(v);
}

/*
 * Wait at most @timeout_ms for the device to signal a virtqueue error and
 * consume it: 0 when it did, -ETIMEDOUT when it did not.
 */
static inline int sim_wait_error(struct sim_vq *vq, int timeout_ms)
{
	struct pollfd p = { .fd = vq->err_fd, .events = POLLIN };
	int r;

	do {
		r = poll(&p, 1, timeout_ms);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if (!r)
		return -ETIMEDOUT;
	sim_take_error(vq);
	return 0;
}

/*
 * Start @vq over as an empty ring whose indices all stand at @base: ring
 * memory cleared, every descriptor free, and the device told with
 * VHOST_SET_VRING_BASE.  This is how a driver recovers a ring the device
 * stopped on an error; the backend must be detached first.
 */
static inline int sim_vq_reset(struct sim_vq *vq, uint16_t base)
{
	struct vhost_vring_state state = { .index = vq->index, .num = base };
	unsigned int i;

	memset(vq->vr.desc, 0, vring_size(vq->num, SIM_RING_ALIGN));
	memset(vq->heads, 0, vq->num * sizeof(*vq->heads));
	for (i = 0; i < vq->num; i++)
		vq->free_next[i] = (i + 1) % vq->num;
	vq->free_head = 0;
	vq->num_free = vq->num;
	vq->avail_idx = base;
	vq->kicked_idx = base;
	vq->last_used = base;
	vq->vr.avail->idx = htole16(base);
	vq->vr.used->idx = htole16(base);
	vring_used_event(&vq->vr) = htole16(base);
	vring_avail_event(&vq->vr) = htole16(base);
	return sim_ioctl(vq->sim, VHOST_SET_VRING_BASE, &state);
}

#endif /* VIRTIO_SIM_H */
