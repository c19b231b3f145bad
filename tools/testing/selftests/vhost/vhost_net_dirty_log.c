// SPDX-License-Identifier: GPL-2.0
/*
 * Dirty page logging of /dev/vhost-net, as used for live migration.
 *
 * A user space virtio-net guest (virtio_sim.h) negotiates VHOST_F_LOG_ALL,
 * hands the device a bitmap with one bit per 4 KiB guest-physical page
 * (VHOST_SET_LOG_BASE) and a log eventfd (VHOST_SET_LOG_FD), and asks for
 * the used rings to be logged (VHOST_VRING_F_LOG with the used ring's
 * guest-physical address).  Frames are then injected on the tap towards
 * the guest and sent by the guest on the tap.
 *
 * The bitmap must then be exactly the set of pages the device wrote: the
 * pages of the bytes of every receive buffer the used ring says were
 * written, and the used ring pages of the logged rings.  Nothing else: not
 * the rest of the receive buffers, not the unused receive buffers, not the
 * transmit buffers, descriptor tables, avail rings or indirect tables
 * (which the device only reads), not a guard area nobody touches, and not
 * the used ring of a ring without VHOST_VRING_F_LOG.  The log eventfd must
 * have been signalled.
 *
 * Runs against whichever vhost_net module is loaded; both implementations
 * must behave the same.
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
#include <sys/eventfd.h>
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

#define VQ_NUM		256
#define MEM_SIZE	(48UL << 20)
#define MEM_REGIONS	3
#define HDR_LEN		sizeof(struct virtio_net_hdr_mrg_rxbuf)	/* 12 */
#define LOG_PAGE	4096UL
#define NRX		32		/* receive buffers posted */
#define NFRAMES		16		/* frames each way */
#define RX_SPAN		5		/* pages of guest memory per buffer */
#define SEG0_LEN	64
#define SEG1_BIG	2000
#define SEG1_MRG	700
#define SEG1_OFF	(2 * LOG_PAGE + 100)
#define GUARD_PAGES	16
#define FRAME_MAX	1514
#define WAIT_MS		10000
#define ETHERTYPE_SIM	0x88b5
#define MAGIC		0x444c4f47U	/* "DLOG" */

static const uint8_t mac_guest[6] = { 0x02, 0x44, 0x4c, 0x4f, 0x00, 0x01 };
static const uint8_t mac_host[6] = { 0x02, 0x44, 0x4c, 0x4f, 0x00, 0x02 };

struct dlog {
	struct sim s;
	int tap, cap, inj, ifindex;
	char ifname[IFNAMSIZ];
	int log_fd;
	uint8_t *bitmap;
	size_t bitmap_len;		/* mapped, a whole number of pages */
	uint64_t rx_arena, tx_arena, guard;
	struct sim_sg rx_sg[NRX][2];
	uint32_t seg1_len;
	bool *expect;			/* one per bit of the mapping */
	uint8_t pkt[HDR_LEN + FRAME_MAX];
	uint8_t buf[4096];
};

FIXTURE(dlog) {
	struct dlog t;
};

FIXTURE_VARIANT(dlog) {
	bool mrg;
	bool indirect;
	bool tx_log;		/* VHOST_VRING_F_LOG on the transmit ring */
};

FIXTURE_VARIANT_ADD(dlog, big_direct) {
	.mrg = false, .indirect = false, .tx_log = true,
};

FIXTURE_VARIANT_ADD(dlog, big_indirect) {
	.mrg = false, .indirect = true, .tx_log = true,
};

FIXTURE_VARIANT_ADD(dlog, mrg_direct) {
	.mrg = true, .indirect = false, .tx_log = true,
};

FIXTURE_VARIANT_ADD(dlog, mrg_indirect_tx_used_unlogged) {
	.mrg = true, .indirect = true, .tx_log = false,
};

static uint32_t frame_len(unsigned int k)
{
	return 60 + (k * 173) % (FRAME_MAX - 60 + 1);
}

static void build_frame(uint8_t *f, uint32_t len, unsigned int k,
			bool to_guest)
{
	uint32_t i;

	memcpy(f, to_guest ? mac_guest : mac_host, 6);
	memcpy(f + 6, to_guest ? mac_host : mac_guest, 6);
	f[12] = ETHERTYPE_SIM >> 8;
	f[13] = ETHERTYPE_SIM & 0xff;
	f[14] = (uint8_t)(MAGIC >> 24);
	f[15] = (uint8_t)(MAGIC >> 16);
	f[16] = (uint8_t)(MAGIC >> 8);
	f[17] = (uint8_t)MAGIC;
	f[18] = k;
	for (i = 19; i < len; i++)
		f[i] = i * 13 + k;
}

static uint64_t used_gpa(struct sim_vq *vq)
{
	return vq->ring_gpa + ((uint8_t *)vq->vr.used - (uint8_t *)vq->vr.desc);
}

static uint64_t used_bytes(struct sim_vq *vq)
{
	return 3 * sizeof(uint16_t) + vq->num * sizeof(struct vring_used_elem);
}

static int set_vring_log(struct sim *s, unsigned int index, bool log)
{
	struct sim_vq *vq = &s->vq[index];
	struct vhost_vring_addr addr = {
		.index = index,
		.flags = log ? 1U << VHOST_VRING_F_LOG : 0,
		.desc_user_addr = (uintptr_t)vq->vr.desc,
		.avail_user_addr = (uintptr_t)vq->vr.avail,
		.used_user_addr = (uintptr_t)vq->vr.used,
		.log_guest_addr = used_gpa(vq),
	};

	return sim_ioctl(s, VHOST_SET_VRING_ADDR, &addr);
}

static void expect_range(struct dlog *t, uint64_t gpa, uint64_t len)
{
	uint64_t pfn;

	if (!len)
		return;
	for (pfn = gpa / LOG_PAGE; pfn <= (gpa + len - 1) / LOG_PAGE; pfn++)
		t->expect[pfn] = true;
}

static bool logged(struct dlog *t, uint64_t pfn)
{
	return __atomic_load_n(&t->bitmap[pfn / 8], __ATOMIC_ACQUIRE) &
	       (1U << (pfn % 8));
}

/* Until every page expected is logged, or @ms pass; the caller judges. */
static void wait_logged(struct dlog *t, unsigned int ms)
{
	uint64_t end = sim_now_ms() + ms, pfn, npfn = t->bitmap_len * 8;

	for (pfn = 0; pfn < npfn; pfn++) {
		while (t->expect[pfn] && !logged(t, pfn) && sim_now_ms() < end)
			usleep(1000);
	}
}

FIXTURE_SETUP(dlog)
{
	struct dlog *t = &self->t;
	uint64_t want = 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VHOST_F_LOG_ALL;
	uint64_t base, pages;
	unsigned int i;
	int r;

	sim_init(&t->s);
	t->tap = -1;
	t->cap = -1;
	t->inj = -1;
	t->log_fd = -1;
	t->bitmap = NULL;
	t->expect = NULL;

	t->tap = simnet_tap_open("dlogtap%d", 0, t->ifname, &t->ifindex);
	ASSERT_LE(0, t->tap) {
		TH_LOG("tap: %s", strerror(errno));
	}
	t->cap = simnet_packet_socket(t->ifindex, true);
	t->inj = simnet_packet_socket(t->ifindex, false);
	ASSERT_LE(0, t->cap);
	ASSERT_LE(0, t->inj);

	ASSERT_EQ(0, sim_mem_init(&t->s, MEM_SIZE, MEM_REGIONS));
	r = sim_open(&t->s, "/dev/vhost-net");
	ASSERT_EQ(0, r) {
		TH_LOG("/dev/vhost-net: %s", strerror(-r));
	}
	ASSERT_EQ(0, sim_set_mem_table(&t->s));

	/* One bit per page of guest-physical space up to the table's end. */
	pages = sim_mem_end(&t->s) / LOG_PAGE;
	t->bitmap_len = (pages / 8 + 1 + SIM_PAGE - 1) & ~(SIM_PAGE - 1);
	t->bitmap = mmap(NULL, t->bitmap_len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	ASSERT_NE(MAP_FAILED, t->bitmap);
	t->expect = calloc(t->bitmap_len * 8, sizeof(bool));
	ASSERT_NE(NULL, t->expect);
	base = (uintptr_t)t->bitmap;
	r = sim_ioctl(&t->s, VHOST_SET_LOG_BASE, &base);
	ASSERT_EQ(0, r) {
		TH_LOG("VHOST_SET_LOG_BASE: %s", strerror(-r));
	}
	t->log_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ASSERT_LE(0, t->log_fd);
	r = sim_ioctl(&t->s, VHOST_SET_LOG_FD, &t->log_fd);
	ASSERT_EQ(0, r) {
		TH_LOG("VHOST_SET_LOG_FD: %s", strerror(-r));
	}

	if (variant->mrg)
		want |= 1ULL << VIRTIO_NET_F_MRG_RXBUF;
	if (variant->indirect)
		want |= 1ULL << VIRTIO_RING_F_INDIRECT_DESC;
	r = sim_negotiate(&t->s, want);
	ASSERT_EQ(0, r) {
		TH_LOG("features 0x%llx: %s", (unsigned long long)want,
		       strerror(-r));
	}
	ASSERT_EQ(0, sim_vq_init(&t->s, SIM_RX_VQ, VQ_NUM, 0));
	ASSERT_EQ(0, sim_vq_init(&t->s, SIM_TX_VQ, VQ_NUM, 0));
	ASSERT_EQ(0, set_vring_log(&t->s, SIM_RX_VQ, true));
	ASSERT_EQ(0, set_vring_log(&t->s, SIM_TX_VQ, variant->tx_log));

	/* Transmit buffers and a guard area nobody touches, in region 0. */
	t->tx_arena = sim_alloc(&t->s, NFRAMES * SIM_PAGE, SIM_PAGE);
	t->guard = sim_alloc(&t->s, GUARD_PAGES * SIM_PAGE, SIM_PAGE);
	/* Receive buffers straddling the boundary of regions 0 and 1. */
	t->s.brk = t->s.region[1].gpa - 7 * RX_SPAN * SIM_PAGE;
	t->rx_arena = sim_alloc(&t->s, NRX * RX_SPAN * SIM_PAGE, SIM_PAGE);
	ASSERT_TRUE(t->tx_arena && t->guard && t->rx_arena);
	ASSERT_LT(t->tx_arena + NFRAMES * SIM_PAGE, t->s.region[1].gpa);

	/*
	 * Each receive buffer: 64 bytes ending somewhere near a page end,
	 * then the rest two pages further, so that the page in between is
	 * never written.
	 */
	t->seg1_len = variant->mrg ? SEG1_MRG : SEG1_BIG;
	for (i = 0; i < NRX; i++) {
		uint64_t page = t->rx_arena + (uint64_t)i * RX_SPAN * SIM_PAGE;
		uint64_t off = SIM_PAGE - 120 + (i * 37) % 100;

		t->rx_sg[i][0].gpa = page + off;
		t->rx_sg[i][0].len = SEG0_LEN;
		t->rx_sg[i][1].gpa = page + SEG1_OFF;
		t->rx_sg[i][1].len = t->seg1_len;
	}

	r = sim_set_backend(&t->s, t->tap);
	ASSERT_EQ(0, r) {
		TH_LOG("attach: %s", strerror(-r));
	}
}

FIXTURE_TEARDOWN(dlog)
{
	struct dlog *t = &self->t;

	sim_close(&t->s);
	if (t->bitmap)
		munmap(t->bitmap, t->bitmap_len);
	free(t->expect);
	if (t->log_fd >= 0)
		close(t->log_fd);
	if (t->cap >= 0)
		close(t->cap);
	if (t->inj >= 0)
		close(t->inj);
	if (t->tap >= 0)
		close(t->tap);
}

static void inject(struct __test_metadata *_metadata, struct dlog *t,
		   unsigned int k)
{
	const size_t vhl = sizeof(struct virtio_net_hdr);
	uint32_t len = frame_len(k);

	memset(t->pkt, 0, vhl);
	build_frame(t->pkt + vhl, len, k, true);
	ASSERT_EQ((ssize_t)(vhl + len),
		  simnet_inject(t->inj, t->ifindex, mac_guest, ETHERTYPE_SIM,
				t->pkt, vhl + len, 0)) {
		TH_LOG("frame %u to the guest: %s", k, strerror(errno));
	}
}

/* Mark what a used receive entry says was written into buffer @slot. */
static void expect_rx(struct dlog *t, unsigned int slot, uint32_t len)
{
	unsigned int i;

	for (i = 0; i < 2 && len; i++) {
		uint32_t n = len < t->rx_sg[slot][i].len ?
			     len : t->rx_sg[slot][i].len;

		expect_range(t, t->rx_sg[slot][i].gpa, n);
		len -= n;
	}
}

static const char *what(struct dlog *t, uint64_t pfn)
{
	uint64_t gpa = pfn * LOG_PAGE;
	unsigned int i;

	for (i = 0; i < SIM_NVQ; i++) {
		struct sim_vq *vq = &t->s.vq[i];

		if (gpa >= vq->ring_gpa &&
		    gpa < vq->ring_gpa + vring_size(vq->num, SIM_RING_ALIGN))
			return gpa >= (used_gpa(vq) & ~(LOG_PAGE - 1)) ?
			       (i ? "tx used ring" : "rx used ring") :
			       (i ? "tx desc/avail" : "rx desc/avail");
		if (gpa >= vq->indirect_gpa &&
		    gpa < vq->indirect_gpa + (uint64_t)vq->num * SIM_MAX_SG *
		    sizeof(struct vring_desc))
			return "indirect tables";
	}
	if (gpa >= t->tx_arena && gpa < t->tx_arena + NFRAMES * SIM_PAGE)
		return "tx buffers";
	if (gpa >= t->guard && gpa < t->guard + GUARD_PAGES * SIM_PAGE)
		return "guard area";
	if (gpa >= t->rx_arena &&
	    gpa < t->rx_arena + NRX * RX_SPAN * SIM_PAGE)
		return "rx buffers";
	if (gpa >= sim_mem_end(&t->s))
		return "beyond the memory table";
	return "other guest memory";
}

TEST_F_TIMEOUT(dlog, traffic, 120)
{
	struct dlog *t = &self->t;
	struct sim_vq *rxq = &t->s.vq[SIM_RX_VQ], *txq = &t->s.vq[SIM_TX_VQ];
	const size_t vhl = sizeof(struct virtio_net_hdr);
	uint64_t want_bytes = 0, got_bytes = 0, end, v;
	unsigned int i, got = 0, bad = 0, nbits;
	uintptr_t token;
	uint32_t len;
	ssize_t n;
	int r;

	/* Receive: post every buffer, inject the frames, harvest. */
	for (i = 0; i < NRX; i++) {
		sim_fill(&t->s, t->rx_sg[i][0].gpa, 0, SEG0_LEN);
		sim_fill(&t->s, t->rx_sg[i][1].gpa, 0, t->seg1_len);
		ASSERT_LE(0, sim_post_rx(&t->s, t->rx_sg[i], 2,
					 variant->indirect, i));
	}
	sim_kick(rxq);
	for (i = 0; i < NFRAMES; i++) {
		inject(_metadata, t, i);
		want_bytes += HDR_LEN + frame_len(i);
	}
	end = sim_now_ms() + WAIT_MS;
	while (got_bytes < want_bytes && sim_now_ms() < end) {
		r = sim_wait_used(rxq, end - sim_now_ms());
		ASSERT_NE(-EIO, r) {
			TH_LOG("rx: virtqueue error");
		}
		while ((r = sim_get_used(rxq, &len, &token)) >= 0) {
			ASSERT_LT(token, (uintptr_t)NRX);
			expect_rx(t, token, len);
			got_bytes += len;
		}
		ASSERT_EQ(-EAGAIN, r);
	}
	ASSERT_EQ(want_bytes, got_bytes) {
		TH_LOG("rx: %llu of %llu bytes received",
		       (unsigned long long)got_bytes,
		       (unsigned long long)want_bytes);
	}

	/* Transmit: one frame per page of the transmit arena. */
	for (i = 0; i < NFRAMES; i++) {
		struct sim_sg sg = {
			.gpa = t->tx_arena + (uint64_t)i * SIM_PAGE,
			.len = HDR_LEN + frame_len(i),
		};

		memset(t->pkt, 0, HDR_LEN);
		build_frame(t->pkt + HDR_LEN, frame_len(i), i, false);
		sim_write(&t->s, sg.gpa, t->pkt, sg.len);
		ASSERT_LE(0, sim_add_tx(&t->s, &sg, 1, variant->indirect, i));
	}
	sim_kick(txq);
	end = sim_now_ms() + WAIT_MS;
	while (got < NFRAMES && sim_now_ms() < end) {
		struct pollfd p = { .fd = t->cap, .events = POLLIN };

		if (poll(&p, 1, 100) <= 0)
			continue;
		n = recv(t->cap, t->buf, sizeof(t->buf), MSG_DONTWAIT);
		if (n >= (ssize_t)(vhl + 14) &&
		    t->buf[vhl + 12] == ETHERTYPE_SIM >> 8 &&
		    t->buf[vhl + 13] == (ETHERTYPE_SIM & 0xff))
			got++;
	}
	ASSERT_EQ(NFRAMES, got);
	got = 0;
	end = sim_now_ms() + WAIT_MS;
	while (got < NFRAMES && sim_now_ms() < end) {
		r = sim_wait_used(txq, end - sim_now_ms());
		ASSERT_NE(-EIO, r);
		while (sim_get_used(txq, &len, &token) >= 0)
			got++;
	}
	ASSERT_EQ(NFRAMES, got);

	expect_range(t, used_gpa(rxq), used_bytes(rxq));
	if (variant->tx_log)
		expect_range(t, used_gpa(txq), used_bytes(txq));
	/*
	 * The used index is logged just after the guest can see it: wait
	 * for the log to cover every page expected, then judge it whole.
	 */
	wait_logged(t, WAIT_MS);

	ASSERT_EQ((ssize_t)sizeof(v), read(t->log_fd, &v, sizeof(v))) {
		TH_LOG("the log eventfd was not signalled");
	}
	ASSERT_LT(0, v);

	nbits = t->bitmap_len * 8;
	for (i = 0; i < nbits; i++) {
		bool set = t->bitmap[i / 8] & (1U << (i % 8));

		if (set == t->expect[i])
			continue;
		if (bad++ < 16)
			TH_LOG("page %#llx (%s): %s",
			       (unsigned long long)i * LOG_PAGE, what(t, i),
			       set ? "logged but never written" :
			       "written but not logged");
	}
	ASSERT_EQ(0, bad) {
		TH_LOG("%u pages wrongly logged or not logged", bad);
	}
	/* Sanity: the comparison covered the interesting pages. */
	ASSERT_TRUE(t->expect[used_gpa(rxq) / LOG_PAGE]);
	ASSERT_FALSE(t->expect[t->guard / LOG_PAGE]);
	ASSERT_FALSE(t->expect[t->tx_arena / LOG_PAGE]);
}

TEST_HARNESS_MAIN
