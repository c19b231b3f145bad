// SPDX-License-Identifier: GPL-2.0
/*
 * A misbehaving virtio-net guest: malformed descriptor chains on the
 * transmit and the receive ring of /dev/vhost-net, with a tap backend.
 *
 * For every malformed chain the device must signal a virtqueue error on
 * the VHOST_SET_VRING_ERR eventfd and put nothing in the used ring for it;
 * nothing may leave on the tap, nothing outside the guest memory table may
 * be written (canary pages sit next to every region in the host mapping),
 * and the kernel must stay quiet (the VM runner watches for KASAN, lockdep
 * and warnings).  Then the ring is reset the way a driver does it (backend
 * detached, VHOST_GET_VRING_BASE, VHOST_SET_VRING_BASE, backend attached
 * again) and a good frame must go through.
 *
 * The two implementations differ in what happens between the error and
 * the reset, and the test checks each one's exact behaviour:
 *  - ours fails the ring: it stays stopped, without further errors, until
 *    it is reset;
 *  - the reference stops until the next kick, then reads the same chain
 *    again (and signals again), or, when the chain was already consumed
 *    (a TX chain with writable buffers, an RX chain with readable ones),
 *    goes on with the next chain.
 * The reference also accepts a few chains that ours rejects: an indirect
 * descriptor when VIRTIO_RING_F_INDIRECT_DESC was not negotiated, one with
 * VRING_DESC_F_NEXT (it follows the chain after the table), and indirect
 * tables of more than 1024 entries.
 *
 * VHOST_IMPL ("ours" or "reference") says which vhost_net is loaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <linux/if.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>

#include "virtio_sim.h"
#include "sim_net.h"
#include "../kselftest_harness.h"

#define VQ_NUM		64
#define HDR_LEN		sizeof(struct virtio_net_hdr_mrg_rxbuf)	/* 12 */
#define FRAME_LEN	60U
#define PKT_LEN		(HDR_LEN + FRAME_LEN)
#define RXBUF_LEN	2048U
/* Guest memory: R0 and R1 with a guest-physical hole between them. */
#define R0_SIZE		(8UL << 20)
#define R1_SIZE		0x100000UL
#define HOLE		0x100000UL
#define R1_GPA		(SIM_GPA_BASE + R0_SIZE + HOLE)
/* Extra regions at guest-physical 0 and at the very top of the space. */
#define SMALL_SIZE	(64UL << 10)
#define TOP_GPA		(0ULL - SMALL_SIZE)
/* Host memory around every region, never in the memory table. */
#define GUARD		(64UL << 10)
#define CANARY		0xc5
#define MAX_REGIONS	4
#define WAIT_MS		5000
#define QUIET_MS	500
#define DRAIN_MS	200
#define ETHERTYPE_SIM	0x88b5		/* IEEE local experimental */
#define MAGIC		0x47455252U	/* "GERR" */
/* More entries than a 16-bit next field can reach, and than UIO_MAXIOV. */
#define BIG_IND		(65536U + 1)
#define MID_IND		1025U
#define DESC_SZ		sizeof(struct vring_desc)

static const uint8_t mac_guest[6] = { 0x02, 0x47, 0x45, 0x52, 0x00, 0x01 };
static const uint8_t mac_host[6] = { 0x02, 0x47, 0x45, 0x52, 0x00, 0x02 };

enum impl { IMPL_OURS, IMPL_REF };
static enum impl impl;

static void __attribute__((constructor)) pick_impl(void)
{
	const char *s = getenv("VHOST_IMPL");

	if (s && !strcmp(s, "ours"))
		impl = IMPL_OURS;
	else if (s && !strcmp(s, "reference"))
		impl = IMPL_REF;
	else
		ksft_exit_fail_msg("VHOST_IMPL must be \"ours\" or \"reference\"\n");
}

enum kind {
	K_LOOP,			/* next points back to the head */
	K_LONG,			/* every descriptor chained in a cycle */
	K_HEAD_OOR,		/* avail ring names head >= num */
	K_NEXT_OOR,		/* next >= num */
	K_AVAIL_JUMP,		/* avail idx more than num ahead */
	K_IND_NESTED,		/* indirect descriptor in an indirect table */
	K_IND_NEXT,		/* indirect descriptor with NEXT */
	K_IND_LEN_ODD,		/* table length not a multiple of 16 */
	K_IND_LEN_ZERO,		/* table of 0 bytes */
	K_IND_TOO_BIG,		/* 65537 entries */
	K_IND_1025,		/* 1025 entries */
	K_IND_NOFEAT,		/* INDIRECT_DESC not negotiated */
	K_ADDR_HOLE,		/* buffer in no region */
	K_ADDR_PAST_END,	/* buffer runs off a region into a hole */
	K_ADDR_WRAP,		/* address + length wraps past 2^64 */
	K_ADDR_WRAP_REGIONS,	/* same, with regions at the top and at 0 */
	K_HUGE_LEN,		/* length 0xffffffff */
	K_WRONG_DIR,		/* TX: writable buffer; RX: readable buffer */
	K_READ_AFTER_WRITE,	/* readable descriptor after a writable one */
	K_UNMAP_RINGS,		/* the ring's pages unmapped after setup */
	K_UNMAP_USED,		/* only the used ring's page unmapped */
};

enum outcome {
	O_STUCK,	/* error; the chain is not consumed */
	O_CONSUMED,	/* error; the chain is consumed, no used entry */
	O_ACCEPTED,	/* processed like a good chain */
};

static enum outcome expected_outcome(enum kind kind)
{
	switch (kind) {
	case K_WRONG_DIR:
		return O_CONSUMED;
	case K_IND_NEXT:
	case K_IND_1025:
	case K_IND_NOFEAT:
		return impl == IMPL_REF ? O_ACCEPTED : O_STUCK;
	default:
		return O_STUCK;
	}
}

static bool is_unmap(enum kind kind)
{
	return kind == K_UNMAP_RINGS || kind == K_UNMAP_USED;
}

struct gerr {
	struct sim s;
	uint8_t *arena;
	size_t arena_len;
	int tap;
	int cap;		/* host side: what the guest sends */
	int inj;		/* host side: what the guest receives */
	int ifindex;
	char ifname[IFNAMSIZ];
	uint64_t txbuf, rxbuf;		/* buffers of the bad chains */
	uint64_t txgood, rxgood;	/* buffers of good chains */
	uint64_t bigtab;		/* BIG_IND entries of indirect table */
	uint8_t pkt[PKT_LEN];		/* header + frame the guest sends */
	uint8_t frame[FRAME_LEN];	/* frame the guest receives */
	uint8_t buf[4096];
};

FIXTURE(gerr) {
	struct gerr t;
};

FIXTURE_VARIANT(gerr) {
	unsigned int ring;
	enum kind kind;
};

FIXTURE_VARIANT_ADD(gerr, tx_desc_loop) {
	.ring = SIM_TX_VQ, .kind = K_LOOP,
};

FIXTURE_VARIANT_ADD(gerr, rx_desc_loop) {
	.ring = SIM_RX_VQ, .kind = K_LOOP,
};

FIXTURE_VARIANT_ADD(gerr, tx_chain_longer_than_ring) {
	.ring = SIM_TX_VQ, .kind = K_LONG,
};

FIXTURE_VARIANT_ADD(gerr, rx_chain_longer_than_ring) {
	.ring = SIM_RX_VQ, .kind = K_LONG,
};

FIXTURE_VARIANT_ADD(gerr, tx_head_out_of_range) {
	.ring = SIM_TX_VQ, .kind = K_HEAD_OOR,
};

FIXTURE_VARIANT_ADD(gerr, rx_head_out_of_range) {
	.ring = SIM_RX_VQ, .kind = K_HEAD_OOR,
};

FIXTURE_VARIANT_ADD(gerr, tx_next_out_of_range) {
	.ring = SIM_TX_VQ, .kind = K_NEXT_OOR,
};

FIXTURE_VARIANT_ADD(gerr, rx_next_out_of_range) {
	.ring = SIM_RX_VQ, .kind = K_NEXT_OOR,
};

FIXTURE_VARIANT_ADD(gerr, tx_avail_idx_jump) {
	.ring = SIM_TX_VQ, .kind = K_AVAIL_JUMP,
};

FIXTURE_VARIANT_ADD(gerr, rx_avail_idx_jump) {
	.ring = SIM_RX_VQ, .kind = K_AVAIL_JUMP,
};

FIXTURE_VARIANT_ADD(gerr, tx_indirect_nested) {
	.ring = SIM_TX_VQ, .kind = K_IND_NESTED,
};

FIXTURE_VARIANT_ADD(gerr, rx_indirect_nested) {
	.ring = SIM_RX_VQ, .kind = K_IND_NESTED,
};

FIXTURE_VARIANT_ADD(gerr, tx_indirect_with_next) {
	.ring = SIM_TX_VQ, .kind = K_IND_NEXT,
};

FIXTURE_VARIANT_ADD(gerr, rx_indirect_with_next) {
	.ring = SIM_RX_VQ, .kind = K_IND_NEXT,
};

FIXTURE_VARIANT_ADD(gerr, tx_indirect_len_not_16n) {
	.ring = SIM_TX_VQ, .kind = K_IND_LEN_ODD,
};

FIXTURE_VARIANT_ADD(gerr, rx_indirect_len_not_16n) {
	.ring = SIM_RX_VQ, .kind = K_IND_LEN_ODD,
};

FIXTURE_VARIANT_ADD(gerr, tx_indirect_len_zero) {
	.ring = SIM_TX_VQ, .kind = K_IND_LEN_ZERO,
};

FIXTURE_VARIANT_ADD(gerr, rx_indirect_len_zero) {
	.ring = SIM_RX_VQ, .kind = K_IND_LEN_ZERO,
};

FIXTURE_VARIANT_ADD(gerr, tx_indirect_too_big) {
	.ring = SIM_TX_VQ, .kind = K_IND_TOO_BIG,
};

FIXTURE_VARIANT_ADD(gerr, rx_indirect_too_big) {
	.ring = SIM_RX_VQ, .kind = K_IND_TOO_BIG,
};

FIXTURE_VARIANT_ADD(gerr, tx_indirect_1025) {
	.ring = SIM_TX_VQ, .kind = K_IND_1025,
};

FIXTURE_VARIANT_ADD(gerr, rx_indirect_1025) {
	.ring = SIM_RX_VQ, .kind = K_IND_1025,
};

FIXTURE_VARIANT_ADD(gerr, tx_indirect_not_negotiated) {
	.ring = SIM_TX_VQ, .kind = K_IND_NOFEAT,
};

FIXTURE_VARIANT_ADD(gerr, rx_indirect_not_negotiated) {
	.ring = SIM_RX_VQ, .kind = K_IND_NOFEAT,
};

FIXTURE_VARIANT_ADD(gerr, tx_addr_in_hole) {
	.ring = SIM_TX_VQ, .kind = K_ADDR_HOLE,
};

FIXTURE_VARIANT_ADD(gerr, rx_addr_in_hole) {
	.ring = SIM_RX_VQ, .kind = K_ADDR_HOLE,
};

FIXTURE_VARIANT_ADD(gerr, tx_addr_past_region_end) {
	.ring = SIM_TX_VQ, .kind = K_ADDR_PAST_END,
};

FIXTURE_VARIANT_ADD(gerr, rx_addr_past_region_end) {
	.ring = SIM_RX_VQ, .kind = K_ADDR_PAST_END,
};

FIXTURE_VARIANT_ADD(gerr, tx_addr_len_wraps) {
	.ring = SIM_TX_VQ, .kind = K_ADDR_WRAP,
};

FIXTURE_VARIANT_ADD(gerr, rx_addr_len_wraps) {
	.ring = SIM_RX_VQ, .kind = K_ADDR_WRAP,
};

FIXTURE_VARIANT_ADD(gerr, tx_addr_len_wraps_to_region_0) {
	.ring = SIM_TX_VQ, .kind = K_ADDR_WRAP_REGIONS,
};

FIXTURE_VARIANT_ADD(gerr, rx_addr_len_wraps_to_region_0) {
	.ring = SIM_RX_VQ, .kind = K_ADDR_WRAP_REGIONS,
};

FIXTURE_VARIANT_ADD(gerr, tx_huge_len) {
	.ring = SIM_TX_VQ, .kind = K_HUGE_LEN,
};

FIXTURE_VARIANT_ADD(gerr, rx_huge_len) {
	.ring = SIM_RX_VQ, .kind = K_HUGE_LEN,
};

FIXTURE_VARIANT_ADD(gerr, tx_writable_buffer) {
	.ring = SIM_TX_VQ, .kind = K_WRONG_DIR,
};

FIXTURE_VARIANT_ADD(gerr, rx_readable_buffer) {
	.ring = SIM_RX_VQ, .kind = K_WRONG_DIR,
};

FIXTURE_VARIANT_ADD(gerr, tx_readable_after_writable) {
	.ring = SIM_TX_VQ, .kind = K_READ_AFTER_WRITE,
};

FIXTURE_VARIANT_ADD(gerr, rx_readable_after_writable) {
	.ring = SIM_RX_VQ, .kind = K_READ_AFTER_WRITE,
};

FIXTURE_VARIANT_ADD(gerr, tx_rings_unmapped) {
	.ring = SIM_TX_VQ, .kind = K_UNMAP_RINGS,
};

FIXTURE_VARIANT_ADD(gerr, rx_rings_unmapped) {
	.ring = SIM_RX_VQ, .kind = K_UNMAP_RINGS,
};

FIXTURE_VARIANT_ADD(gerr, tx_used_unmapped) {
	.ring = SIM_TX_VQ, .kind = K_UNMAP_USED,
};

FIXTURE_VARIANT_ADD(gerr, rx_used_unmapped) {
	.ring = SIM_RX_VQ, .kind = K_UNMAP_USED,
};

static void build_frame(uint8_t *f, bool to_guest)
{
	unsigned int i;

	memcpy(f, to_guest ? mac_guest : mac_host, 6);
	memcpy(f + 6, to_guest ? mac_host : mac_guest, 6);
	f[12] = ETHERTYPE_SIM >> 8;
	f[13] = ETHERTYPE_SIM & 0xff;
	f[14] = (uint8_t)(MAGIC >> 24);
	f[15] = (uint8_t)(MAGIC >> 16);
	f[16] = (uint8_t)(MAGIC >> 8);
	f[17] = (uint8_t)MAGIC;
	f[18] = to_guest;
	for (i = 19; i < FRAME_LEN; i++)
		f[i] = i * 7 + 3;
}

/* Send the receive frame on the tap, towards the guest. */
static int inject(struct gerr *t)
{
	const size_t vhl = sizeof(struct virtio_net_hdr);
	uint8_t pkt[sizeof(struct virtio_net_hdr) + FRAME_LEN];

	memset(pkt, 0, vhl);
	memcpy(pkt + vhl, t->frame, FRAME_LEN);
	if (simnet_inject(t->inj, t->ifindex, mac_guest, ETHERTYPE_SIM, pkt,
			  sizeof(pkt), MSG_DONTWAIT) != (ssize_t)sizeof(pkt))
		return -errno;
	return 0;
}

/*
 * Count the guest's frames seen on the tap: wait up to @timeout_ms for
 * @want of them, then DRAIN_MS more for any extra.  A frame of ours with
 * other content than the guest's packet counts as -1000, to fail loudly.
 */
static int captured(struct gerr *t, int want, int timeout_ms)
{
	const size_t vhl = sizeof(struct virtio_net_hdr);
	uint64_t end = sim_now_ms() + timeout_ms;
	bool draining = false;
	int got = 0;

	for (;;) {
		struct pollfd p = { .fd = t->cap, .events = POLLIN };
		uint64_t now = sim_now_ms();
		const uint8_t *f = t->buf + vhl;
		ssize_t n;

		if (!draining && (got >= want || now >= end)) {
			draining = true;
			end = now + DRAIN_MS;
		}
		if (draining && now >= end)
			return got;
		if (poll(&p, 1, end - now) <= 0)
			continue;
		n = recv(t->cap, t->buf, sizeof(t->buf), MSG_DONTWAIT);
		if (n < (ssize_t)(vhl + 18) || f[12] != ETHERTYPE_SIM >> 8 ||
		    f[13] != (ETHERTYPE_SIM & 0xff))
			continue;
		if (n != (ssize_t)(vhl + FRAME_LEN) ||
		    memcmp(f, t->pkt + HDR_LEN, FRAME_LEN))
			got -= 1000;
		else
			got++;
	}
}

/* ---- guest side --------------------------------------------------------- */

/* Host memory: guard, R0, guard, R1, guard [, RZ, guard, RT, guard]. */
static int arena_setup(struct gerr *t, bool wrap)
{
	static const uint64_t size[MAX_REGIONS] = {
		R0_SIZE, R1_SIZE, SMALL_SIZE, SMALL_SIZE,
	};
	static const uint64_t gpa[MAX_REGIONS] = {
		SIM_GPA_BASE, R1_GPA, 0, TOP_GPA,
	};
	unsigned int n = wrap ? 4 : 2, i;
	size_t off = GUARD;

	t->arena_len = GUARD;
	for (i = 0; i < n; i++)
		t->arena_len += size[i] + GUARD;
	t->arena = mmap(NULL, t->arena_len, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (t->arena == MAP_FAILED) {
		t->arena = NULL;
		return -errno;
	}
	memset(t->arena, CANARY, t->arena_len);
	for (i = 0; i < n; i++) {
		t->s.region[i].gpa = gpa[i];
		t->s.region[i].size = size[i];
		t->s.region[i].hva = t->arena + off;
		memset(t->arena + off, 0, size[i]);
		off += size[i] + GUARD;
	}
	t->s.nregions = n;
	/* The bump allocator only hands out R0. */
	t->s.mem_size = R0_SIZE;
	t->s.brk = SIM_GPA_BASE;
	return 0;
}

/* Offset in the arena of the first guard byte that changed, or -1. */
static long guards_changed(struct gerr *t)
{
	size_t off = 0, i, end;
	unsigned int r;

	for (r = 0; r <= t->s.nregions; r++) {
		end = off + GUARD;
		for (i = off; i < end; i++)
			if (t->arena[i] != CANARY)
				return i;
		if (r < t->s.nregions)
			off = end + t->s.region[r].size;
	}
	return -1;
}

FIXTURE_SETUP(gerr)
{
	struct gerr *t = &self->t;
	uint64_t want = 1ULL << VIRTIO_F_VERSION_1;
	int r;

	sim_init(&t->s);
	t->tap = -1;
	t->cap = -1;
	t->inj = -1;
	t->arena = NULL;
	memset(t->pkt, 0, HDR_LEN);
	build_frame(t->pkt + HDR_LEN, false);
	build_frame(t->frame, true);

	t->tap = simnet_tap_open("gerrtap%d", 0, t->ifname, &t->ifindex);
	ASSERT_LE(0, t->tap) {
		TH_LOG("tap: %s", strerror(errno));
	}
	t->cap = simnet_packet_socket(t->ifindex, true);
	t->inj = simnet_packet_socket(t->ifindex, false);
	ASSERT_LE(0, t->cap);
	ASSERT_LE(0, t->inj);

	ASSERT_EQ(0, arena_setup(t, variant->kind == K_ADDR_WRAP_REGIONS));
	r = sim_open(&t->s, "/dev/vhost-net");
	ASSERT_EQ(0, r) {
		TH_LOG("/dev/vhost-net: %s", strerror(-r));
	}
	if (variant->kind != K_IND_NOFEAT)
		want |= 1ULL << VIRTIO_RING_F_INDIRECT_DESC;
	ASSERT_EQ(0, sim_negotiate(&t->s, want));
	r = sim_set_mem_table(&t->s);
	ASSERT_EQ(0, r) {
		TH_LOG("memory table: %s", strerror(-r));
	}
	ASSERT_EQ(0, sim_vq_init(&t->s, SIM_RX_VQ, VQ_NUM, 0));
	ASSERT_EQ(0, sim_vq_init(&t->s, SIM_TX_VQ, VQ_NUM, 0));
	t->txbuf = sim_alloc(&t->s, SIM_PAGE, SIM_PAGE);
	t->txgood = sim_alloc(&t->s, SIM_PAGE, SIM_PAGE);
	t->rxbuf = sim_alloc(&t->s, RXBUF_LEN, SIM_PAGE);
	t->rxgood = sim_alloc(&t->s, RXBUF_LEN, SIM_PAGE);
	t->bigtab = sim_alloc(&t->s, BIG_IND * DESC_SZ, SIM_PAGE);
	ASSERT_TRUE(t->txbuf && t->txgood && t->rxbuf && t->rxgood &&
		    t->bigtab);
	ASSERT_EQ(0, sim_write(&t->s, t->txbuf, t->pkt, PKT_LEN));
	ASSERT_EQ(0, sim_write(&t->s, t->txgood, t->pkt, PKT_LEN));
	r = sim_set_backend(&t->s, t->tap);
	ASSERT_EQ(0, r) {
		TH_LOG("attach: %s", strerror(-r));
	}
}

FIXTURE_TEARDOWN(gerr)
{
	struct gerr *t = &self->t;

	sim_close(&t->s);
	if (t->arena)
		munmap(t->arena, t->arena_len);
	if (t->cap >= 0)
		close(t->cap);
	if (t->inj >= 0)
		close(t->inj);
	if (t->tap >= 0)
		close(t->tap);
}

static void put_desc(struct vring_desc *d, uint64_t gpa, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	d->addr = htole64(gpa);
	d->len = htole32(len);
	d->flags = htole16(flags);
	d->next = htole16(next);
}

/* Kick, whatever the device asked for; @publish the avail index first. */
static void kick_pub(struct sim_vq *vq, bool publish)
{
	uint64_t one = 1;

	if (publish)
		sim_publish(vq);
	sim_mb();
	if (write(vq->kick_fd, &one, sizeof(one)) != sizeof(one))
		perror("kick");
}

static void kick(struct sim_vq *vq)
{
	kick_pub(vq, true);
}

/* The ring's pages, or the used ring's page, in the host mapping. */
static void ring_span(struct sim_vq *vq, bool used_only, uint8_t **p,
		      size_t *len)
{
	if (used_only) {
		*p = (uint8_t *)vq->vr.used;
		*len = SIM_PAGE;
	} else {
		*p = (uint8_t *)vq->vr.desc;
		*len = (vring_size(vq->num, SIM_RING_ALIGN) + SIM_PAGE - 1) &
		       ~(SIM_PAGE - 1);
	}
}

/*
 * Lay out the malformed chain of @kind at descriptor 0 (and its indirect
 * tables) and put it in the avail ring.  Returns a descriptor the bad
 * chain does not use, for a good chain, or -1 if there is none.
 */
static int build_bad(struct gerr *t, struct sim_vq *vq, enum kind kind)
{
	bool rx = vq->index == SIM_RX_VQ;
	uint16_t w = rx ? VRING_DESC_F_WRITE : 0;
	uint16_t ro = rx ? 0 : VRING_DESC_F_WRITE;	/* wrong direction */
	uint64_t buf = rx ? t->rxbuf : t->txbuf;
	uint32_t blen = rx ? RXBUF_LEN : PKT_LEN;
	struct vring_desc *d = vq->vr.desc, *tab = vq->indirect;
	uint64_t tab_gpa = vq->indirect_gpa, gpa;
	struct vring_desc *big = sim_ptr(&t->s, t->bigtab, BIG_IND * DESC_SZ);
	const uint16_t ind = VRING_DESC_F_INDIRECT, nx = VRING_DESC_F_NEXT;
	int spare = VQ_NUM - 1;
	uint8_t *p;
	size_t len;
	unsigned int i;

	switch (kind) {
	case K_LOOP:
		put_desc(&d[0], buf, HDR_LEN, w | nx, 1);
		put_desc(&d[1], buf + HDR_LEN, blen - HDR_LEN, w | nx, 0);
		break;
	case K_LONG:
		for (i = 0; i < VQ_NUM; i++)
			put_desc(&d[i], buf + i, 1, w | nx, (i + 1) % VQ_NUM);
		spare = -1;
		break;
	case K_HEAD_OOR:
		put_desc(&d[0], buf, blen, w, 0);
		sim_avail_push(vq, VQ_NUM);
		return spare;
	case K_NEXT_OOR:
		put_desc(&d[0], buf, HDR_LEN, w | nx, VQ_NUM);
		break;
	case K_AVAIL_JUMP:
		put_desc(&d[0], buf, blen, w, 0);
		sim_avail_push(vq, 0);
		/* Published as num + 1 entries ahead of the device. */
		vq->avail_idx += VQ_NUM;
		return -1;
	case K_IND_NESTED:
		put_desc(&tab[0], buf, HDR_LEN, w | nx, 1);
		put_desc(&tab[1], tab_gpa + SIM_MAX_SG * DESC_SZ, DESC_SZ,
			 ind, 0);
		put_desc(&tab[SIM_MAX_SG], buf + HDR_LEN, blen - HDR_LEN, w, 0);
		put_desc(&d[0], tab_gpa, 2 * DESC_SZ, ind, 0);
		break;
	case K_IND_NEXT:
		put_desc(&tab[0], buf, HDR_LEN, w, 0);
		put_desc(&d[0], tab_gpa, DESC_SZ, ind | nx, 1);
		put_desc(&d[1], buf + HDR_LEN, blen - HDR_LEN, w, 0);
		break;
	case K_IND_LEN_ODD:
		put_desc(&tab[0], buf, blen, w, 0);
		put_desc(&d[0], tab_gpa, DESC_SZ + 4, ind, 0);
		break;
	case K_IND_LEN_ZERO:
		put_desc(&tab[0], buf, blen, w, 0);
		put_desc(&d[0], tab_gpa, 0, ind, 0);
		break;
	case K_IND_TOO_BIG:
	case K_IND_1025:
	case K_IND_NOFEAT:
		if (kind == K_IND_NOFEAT) {
			put_desc(&tab[0], buf, blen, w, 0);
			put_desc(&d[0], tab_gpa, DESC_SZ, ind, 0);
			break;
		}
		put_desc(&big[0], buf, blen, w, 0);
		put_desc(&d[0], t->bigtab,
			 (kind == K_IND_TOO_BIG ? BIG_IND : MID_IND) * DESC_SZ,
			 ind, 0);
		break;
	case K_ADDR_HOLE:
		put_desc(&d[0], SIM_GPA_BASE + R0_SIZE + HOLE / 2, blen, w, 0);
		break;
	case K_ADDR_PAST_END:
		gpa = SIM_GPA_BASE + R0_SIZE - 32;
		sim_write(&t->s, gpa, t->pkt, 32);
		put_desc(&d[0], gpa, blen, w, 0);
		break;
	case K_ADDR_WRAP:
		put_desc(&d[0], 0ULL - blen / 2, blen, w, 0);
		break;
	case K_ADDR_WRAP_REGIONS:
		/* Half of a good packet at the top, the rest at 0. */
		gpa = 0ULL - PKT_LEN / 2;
		sim_write(&t->s, gpa, t->pkt, PKT_LEN / 2);
		sim_write(&t->s, 0, t->pkt + PKT_LEN / 2, PKT_LEN - PKT_LEN / 2);
		put_desc(&d[0], rx ? 0ULL - 36 : gpa, blen, w, 0);
		break;
	case K_HUGE_LEN:
		put_desc(&d[0], buf, 0xffffffffU, w, 0);
		break;
	case K_WRONG_DIR:
		if (rx) {
			put_desc(&d[0], buf, blen, ro, 0);
		} else {
			put_desc(&d[0], buf, HDR_LEN, nx, 1);
			put_desc(&d[1], buf + HDR_LEN, blen - HDR_LEN, ro, 0);
		}
		break;
	case K_READ_AFTER_WRITE:
		put_desc(&d[0], buf, HDR_LEN, VRING_DESC_F_WRITE | nx, 1);
		put_desc(&d[1], buf + HDR_LEN, blen - HDR_LEN, 0, 0);
		break;
	case K_UNMAP_RINGS:
		/*
		 * Nothing published: the device may still be about to look
		 * at the ring for the attach, and must find it gone.
		 */
		ring_span(vq, false, &p, &len);
		munmap(p, len);
		return -1;
	case K_UNMAP_USED:
		/* A good chain, published once the used ring is gone. */
		put_desc(&d[0], buf, blen, w, 0);
		sim_avail_push(vq, 0);
		ring_span(vq, true, &p, &len);
		munmap(p, len);
		sim_publish(vq);
		return -1;
	}
	sim_avail_push(vq, 0);
	return spare;
}

/* Take one used entry without the driver's bookkeeping. */
static void raw_used(struct sim_vq *vq, uint32_t *id, uint32_t *len)
{
	struct vring_used_elem *e = &vq->vr.used->ring[vq->last_used % vq->num];

	*id = le32toh(e->id);
	*len = le32toh(e->len);
	vq->last_used++;
}

/* The receive frame is at @gpa + HDR_LEN? */
static bool rx_frame_at(struct gerr *t, uint64_t gpa)
{
	uint8_t got[FRAME_LEN];

	return !sim_read(&t->s, got, gpa + HDR_LEN, FRAME_LEN) &&
	       !memcmp(got, t->frame, FRAME_LEN);
}

/* A good frame goes through the (reset) ring. */
static void good_frame(struct __test_metadata *_metadata, struct gerr *t,
		       struct sim_vq *vq)
{
	bool rx = vq->index == SIM_RX_VQ;
	struct sim_sg sg = {
		.gpa = rx ? t->rxgood : t->txgood,
		.len = rx ? RXBUF_LEN : PKT_LEN,
	};
	uintptr_t token;
	uint32_t len;
	int head, r;

	if (rx) {
		sim_fill(&t->s, t->rxgood, 0, RXBUF_LEN);
		head = sim_post_rx(&t->s, &sg, 1, false, 1);
	} else {
		head = sim_add_tx(&t->s, &sg, 1, false, 1);
	}
	ASSERT_LE(0, head);
	kick(vq);
	if (rx)
		ASSERT_EQ(0, inject(t));
	r = sim_wait_used(vq, WAIT_MS);
	ASSERT_EQ(0, r) {
		TH_LOG("good frame after the reset: %s", strerror(-r));
	}
	ASSERT_EQ(head, sim_get_used(vq, &len, &token));
	if (rx) {
		ASSERT_EQ(PKT_LEN, len);
		ASSERT_TRUE(rx_frame_at(t, t->rxgood));
	} else {
		ASSERT_EQ(1, captured(t, 1, WAIT_MS));
	}
}

TEST_F_TIMEOUT(gerr, bad_chain, 90)
{
	struct gerr *t = &self->t;
	struct sim_vq *vq = &t->s.vq[variant->ring];
	bool rx = variant->ring == SIM_RX_VQ;
	bool unmap = is_unmap(variant->kind);
	enum outcome o = expected_outcome(variant->kind);
	uint16_t bad = vq->avail_idx, want_base, base;
	int spare, sent = 0, r;
	uint32_t id, len;
	uint8_t *p;
	size_t plen;
	long g;

	spare = build_bad(t, vq, variant->kind);
	/* An unmapped ring is not touched any more. */
	kick_pub(vq, !unmap);
	if (rx)
		ASSERT_EQ(0, inject(t));

	if (o == O_ACCEPTED) {
		/* The reference takes these chains as good ones. */
		r = sim_wait_used(vq, WAIT_MS);
		ASSERT_EQ(0, r) {
			TH_LOG("reference: chain not processed: %s",
			       strerror(-r));
		}
		raw_used(vq, &id, &len);
		ASSERT_EQ(0, id);
		ASSERT_EQ(rx ? PKT_LEN : 0, len);
		ASSERT_TRUE(!rx || rx_frame_at(t, t->rxbuf));
		sent = !rx;
		EXPECT_FALSE(sim_take_error(vq));
		want_base = bad + 1;
	} else {
		r = sim_wait_error(vq, WAIT_MS);
		ASSERT_EQ(0, r) {
			TH_LOG("no virtqueue error signalled; %u used entries",
			       unmap ? 0 : sim_pending_used(vq));
		}
		want_base = bad + (o == O_CONSUMED);
	}

	if (o != O_ACCEPTED && !unmap) {
		ASSERT_EQ(0, sim_pending_used(vq)) {
			TH_LOG("the bad chain was used");
		}
		/* A good chain after it, and another kick. */
		if (spare >= 0) {
			put_desc(&vq->vr.desc[spare], rx ? t->rxgood : t->txgood,
				 rx ? RXBUF_LEN : PKT_LEN,
				 rx ? VRING_DESC_F_WRITE : 0, 0);
			sim_avail_push(vq, spare);
		}
		kick(vq);
		if (impl == IMPL_OURS) {
			/* The ring is failed: silent until reset. */
			ASSERT_EQ(-ETIMEDOUT, sim_wait_error(vq, QUIET_MS)) {
				TH_LOG("ours: a failed ring signalled again");
			}
			ASSERT_EQ(0, sim_pending_used(vq)) {
				TH_LOG("ours: a failed ring made progress");
			}
		} else if (o == O_CONSUMED) {
			/* The reference goes on with the next chain. */
			ASSERT_LE(0, spare);
			r = sim_wait_used(vq, WAIT_MS);
			ASSERT_EQ(0, r) {
				TH_LOG("reference: next chain not used: %s",
				       strerror(-r));
			}
			raw_used(vq, &id, &len);
			ASSERT_EQ(spare, id);
			ASSERT_EQ(rx ? PKT_LEN : 0, len);
			ASSERT_TRUE(!rx || rx_frame_at(t, t->rxgood));
			sent = !rx;
			ASSERT_EQ(0, sim_pending_used(vq));
			EXPECT_FALSE(sim_take_error(vq));
			want_base++;
		} else {
			/* The reference reads the same bad chain again. */
			ASSERT_EQ(0, sim_wait_error(vq, WAIT_MS)) {
				TH_LOG("reference: no error on the second kick");
			}
			ASSERT_EQ(0, sim_pending_used(vq));
		}
	}
	/*
	 * Nothing may leave for a bad chain, except when only the used ring
	 * write fails: the packet itself was good.
	 */
	if (!rx && variant->kind == K_UNMAP_USED)
		captured(t, 0, 0);
	else if (!rx)
		ASSERT_EQ(sent, captured(t, sent, WAIT_MS));

	/* Reset: detach, where does the device stand, restart, attach. */
	ASSERT_EQ(0, sim_set_backend(&t->s, -1));
	ASSERT_EQ(0, sim_get_vring_base(&t->s, vq->index, &base));
	if (!unmap)
		ASSERT_EQ(want_base, base);
	if (unmap) {
		/* Attaching to rings that are not there fails. */
		ASSERT_EQ(-EFAULT, sim_set_backend(&t->s, t->tap));
		ring_span(vq, variant->kind == K_UNMAP_USED, &p, &plen);
		ASSERT_EQ(p, mmap(p, plen, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
				  -1, 0));
	}
	sim_take_error(vq);
	ASSERT_EQ(0, sim_vq_reset(vq, base + 0x100));
	r = sim_set_backend(&t->s, t->tap);
	ASSERT_EQ(0, r) {
		TH_LOG("attach after the reset: %s", strerror(-r));
	}
	good_frame(_metadata, t, vq);
	EXPECT_FALSE(sim_take_error(vq));

	g = guards_changed(t);
	ASSERT_EQ(-1, g) {
		TH_LOG("host memory outside the table changed at arena offset %ld",
		       g);
	}
}

TEST_HARNESS_MAIN
