// SPDX-License-Identifier: GPL-2.0
/*
 * Zero-copy transmit against a NIC that holds on to its skbs.
 *
 * The backend is a persistent tap ($ZC_TAP) in a bridge whose other port
 * is a dummy device with a netem qdisc delaying every frame by
 * $ZC_DELAY_MS: a frame sent zero-copy keeps its guest pages referenced
 * until netem lets it go.  (tools/vm/guest/suite-sim.sh builds this.)
 *
 * The simulated guest (virtio_sim.h) sends four rings' worth of 6000-byte
 * TCP GSO frames, refilling the ring as used entries come back.  A device may
 * keep the descriptors of held zero-copy frames, and must keep them: the
 * guest could otherwise rewrite pages still on their way out.  What it
 * must not do is let them hold up the rest of the ring.  So, long before
 * the delay expires, every frame must have been submitted and all of them
 * returned but the held ones, at most a quarter of the ring; some must
 * still be held (else the setup did not hold zero-copy buffers and proves
 * nothing); and ours must show both zero-copy sends and copies in its
 * debugfs counters.  Once the delay has passed, every frame must have
 * come back exactly once.  Then the vhost fd is closed while frames are
 * held in netem: close must return once they are released, and the VM
 * harness checks the kernel log for warnings, KASAN and kmemleak.
 *
 * VHOST_IMPL says which vhost_net is loaded ("ours" with its default
 * zcopy_tx=1, or "reference" loaded with experimental_zcopytx=1).
 */
#include <errno.h>
#include <glob.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "virtio_sim.h"
#include "sim_net.h"
#include "../kselftest_harness.h"

#define VQ_NUM		256
#define TOTAL		(4 * VQ_NUM)
#define MEM_SIZE	(8UL << 20)
#define SLOT		8192UL
/*
 * TCP GSO frames larger than a page: too large to be worth copying (for
 * ours, and for upstream's VHOST_GOODCOPY_LEN), and being GSO they may be
 * forwarded past the dummy's MTU.
 */
#define FRAME_LEN	6000U
#define TCP_OFF		(14 + 20)
#define HDRS_LEN	(TCP_OFF + 20)
#define GSO_MSS		1448

static const uint8_t mac_guest[6] = { 0x02, 0x5a, 0x43, 0x53, 0x00, 0x01 };
static const uint8_t mac_host[6] = { 0x02, 0x5a, 0x43, 0x53, 0x00, 0x02 };

struct zc_stats {
	long long zcopy, copy;
};

struct zcs {
	struct sim s;
	int tap;
	int ifindex;
	char ifname[IFNAMSIZ];
	bool ours;
	unsigned int delay_ms;
	uint64_t arena;
	uint16_t free_slot[VQ_NUM];
	unsigned int nfree;
	uint16_t slot_of[TOTAL];
	uint8_t seen[TOTAL];
	unsigned int submitted, used, dup;
	uint8_t pkt[SIMNET_HDR_LEN + FRAME_LEN];
};

FIXTURE(zc) {
	struct zcs t;
};

FIXTURE_SETUP(zc)
{
	struct zcs *t = &self->t;
	const char *tap = getenv("ZC_TAP");
	const char *delay = getenv("ZC_DELAY_MS");
	const char *impl = getenv("VHOST_IMPL");
	uint64_t want = 1ULL << VIRTIO_F_VERSION_1;
	unsigned int i;
	int r;

	sim_init(&t->s);
	t->tap = -1;
	if (!tap || !delay || !impl)
		SKIP(return, "ZC_TAP, ZC_DELAY_MS and VHOST_IMPL must be set");
	t->ours = !strcmp(impl, "ours");
	t->delay_ms = strtoul(delay, NULL, 0);
	ASSERT_LE(3000U, t->delay_ms);

	t->tap = simnet_tap_open(tap, 0, t->ifname, &t->ifindex);
	ASSERT_LE(0, t->tap) {
		TH_LOG("tap %s: %s", tap, strerror(errno));
	}
	ASSERT_EQ(0, sim_mem_init(&t->s, MEM_SIZE, 1));
	r = sim_open(&t->s, "/dev/vhost-net");
	ASSERT_EQ(0, r) {
		TH_LOG("/dev/vhost-net: %s", strerror(-r));
	}
	ASSERT_EQ(0, sim_negotiate(&t->s, want));
	ASSERT_EQ(0, sim_set_mem_table(&t->s));
	ASSERT_EQ(0, sim_vq_init(&t->s, SIM_RX_VQ, VQ_NUM, 0));
	ASSERT_EQ(0, sim_vq_init(&t->s, SIM_TX_VQ, VQ_NUM, 0));
	t->arena = sim_alloc(&t->s, VQ_NUM * SLOT, SIM_PAGE);
	ASSERT_NE(0, t->arena);
	for (i = 0; i < VQ_NUM; i++)
		t->free_slot[i] = i;
	t->nfree = VQ_NUM;
	r = sim_set_backend(&t->s, t->tap);
	ASSERT_EQ(0, r) {
		TH_LOG("VHOST_NET_SET_BACKEND: %s", strerror(-r));
	}
}

/*
 * Upstream's vhost_net (6.12) leaks its per-ring zero-copy refcount
 * (struct vhost_net_ubuf_ref) when the device is closed with a zero-copy
 * backend attached: kmemleak reports it.  So for the reference the
 * backend is detached first, as QEMU does; ours is closed as it is.
 */
static int ref_detach(struct zcs *t)
{
	if (t->ours || t->s.fd < 0)
		return 0;
	return sim_set_backend(&t->s, -1);
}

FIXTURE_TEARDOWN(zc)
{
	ref_detach(&self->t);
	sim_close(&self->t.s);
	if (self->t.tap >= 0)
		close(self->t.tap);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v;
}

/*
 * virtio_net_hdr and an IPv4/TCP frame to an unknown MAC address, which
 * the bridge floods to the dummy.  Checksums are left to offload.
 */
static void build_pkt(uint8_t *pkt, unsigned int seq)
{
	struct virtio_net_hdr *h = (void *)pkt;
	uint8_t *f = pkt + SIMNET_HDR_LEN;
	unsigned int i;

	memset(pkt, 0, SIMNET_HDR_LEN + HDRS_LEN);
	h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	h->gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
	h->hdr_len = htole16(HDRS_LEN);
	h->gso_size = htole16(GSO_MSS);
	h->csum_start = htole16(TCP_OFF);
	h->csum_offset = htole16(16);
	memcpy(f, mac_host, 6);
	memcpy(f + 6, mac_guest, 6);
	put16(f + 12, ETH_P_IP);
	f[14] = 0x45;
	put16(f + 16, FRAME_LEN - 14);
	put16(f + 18, seq);
	f[22] = 64;
	f[23] = 6;
	memcpy(f + 26, "\x0a\x5a\x43\x01\x0a\x5a\x43\x02", 8);
	put16(f + TCP_OFF, 40000);
	put16(f + TCP_OFF + 2, 5001);
	f[TCP_OFF + 12] = 5 << 4;
	f[TCP_OFF + 13] = 0x18;
	put16(f + TCP_OFF + 14, 0xffff);
	for (i = HDRS_LEN; i < FRAME_LEN; i++)
		f[i] = seq * 31 + i;
}

/* Add frames while there are slots and descriptors; kick once. */
static unsigned int fill(struct __test_metadata *_metadata, struct zcs *t,
			 unsigned int want)
{
	struct sim_vq *vq = &t->s.vq[SIM_TX_VQ];
	unsigned int added = 0;

	while (t->submitted < want && t->nfree && vq->num_free) {
		unsigned int seq = t->submitted;
		uint16_t slot = t->free_slot[--t->nfree];
		struct sim_sg sg = {
			.gpa = t->arena + slot * SLOT,
			.len = sizeof(t->pkt),
		};

		build_pkt(t->pkt, seq);
		ASSERT_EQ(0, sim_write(&t->s, sg.gpa, t->pkt, sizeof(t->pkt)));
		ASSERT_LE(0, sim_add_tx(&t->s, &sg, 1, false, seq));
		t->slot_of[seq] = slot;
		t->submitted++;
		added++;
	}
	if (added)
		sim_kick(vq);
	return added;
}

/* Take every used entry; each frame must come back exactly once. */
static unsigned int harvest(struct __test_metadata *_metadata, struct zcs *t)
{
	struct sim_vq *vq = &t->s.vq[SIM_TX_VQ];
	unsigned int got = 0;
	uintptr_t seq;
	uint32_t len;
	int head;

	while ((head = sim_get_used(vq, &len, &seq)) != -EAGAIN) {
		ASSERT_LE(0, head) {
			TH_LOG("used entry %u is not an outstanding head",
			       (uint16_t)(vq->last_used - 1));
		}
		ASSERT_GT(TOTAL, seq);
		if (t->seen[seq]++)
			t->dup++;
		t->free_slot[t->nfree++] = t->slot_of[seq];
		t->used++;
		got++;
	}
	return got;
}

/* Send until @want frames are submitted and used, or until @until_ms. */
static void pump(struct __test_metadata *_metadata, struct zcs *t,
		 unsigned int want, uint64_t until_ms)
{
	struct sim_vq *vq = &t->s.vq[SIM_TX_VQ];

	while (sim_now_ms() < until_ms) {
		fill(_metadata, t, want);
		harvest(_metadata, t);
		if (t->submitted == want && t->used == want)
			return;
		ASSERT_FALSE(sim_vq_error(vq));
		sim_wait_used(vq, 20);
	}
}

/* Our per-device debugfs counters; false if there are none. */
static bool read_stats(struct zc_stats *st)
{
	char pattern[96], line[128];
	bool found = false;
	glob_t g;
	FILE *f;

	snprintf(pattern, sizeof(pattern),
		 "/sys/kernel/debug/vhost-mp/net-%d-*/stats", getpid());
	if (glob(pattern, 0, NULL, &g))
		return false;
	/* Each open of /dev/vhost-net has its own: this process has one. */
	f = g.gl_pathc == 1 ? fopen(g.gl_pathv[0], "r") : NULL;
	globfree(&g);
	if (!f)
		return false;
	st->zcopy = -1;
	st->copy = -1;
	while (fgets(line, sizeof(line), f)) {
		long long v;

		if (sscanf(line, "tx_zcopy_packets %lld", &v) == 1)
			st->zcopy = v;
		else if (sscanf(line, "tx_copy_packets %lld", &v) == 1)
			st->copy = v;
	}
	fclose(f);
	found = st->zcopy >= 0 && st->copy >= 0;
	return found;
}

/*
 * Four rings' worth of frames while netem holds every frame for the delay:
 * the guest must not stall, and every frame comes back exactly once.
 */
TEST_F_TIMEOUT(zc, no_stall, 120)
{
	struct zcs *t = &self->t;
	unsigned int held, bound = VQ_NUM / 4;
	uint64_t start = sim_now_ms(), sent_ms, all_ms;
	struct zc_stats st;

	/* The reference may go one over its limit of num / 4 pending. */
	if (!t->ours)
		bound++;
	pump(_metadata, t, TOTAL, start + t->delay_ms / 3);
	sent_ms = sim_now_ms() - start;
	held = t->submitted - t->used;
	TH_LOG("after %llu ms of a %u ms delay: %u/%u frames submitted, %u used, %u held",
	       (unsigned long long)sent_ms, t->delay_ms, t->submitted,
	       TOTAL, t->used, held);
	/* Liveness: the whole load went out long before the delay ended. */
	EXPECT_EQ(TOTAL, t->submitted);
	/* Only held zero-copy frames are missing, and a bounded number. */
	EXPECT_GE(bound, held);
	/* Control: zero-copy buffers really are held by the qdisc. */
	EXPECT_LT(0U, held) {
		TH_LOG("nothing held: no zero-copy send, or netem let go");
	}
	if (t->ours) {
		ASSERT_TRUE(read_stats(&st)) {
			TH_LOG("no debugfs counters for this device");
		}
		TH_LOG("debugfs: tx_zcopy_packets %lld tx_copy_packets %lld",
		       st.zcopy, st.copy);
		EXPECT_LE(held, st.zcopy);
		EXPECT_LT(0, st.copy);
		EXPECT_EQ(TOTAL, st.zcopy + st.copy);
	}

	/* Once netem lets go, the held ones come back too, each once. */
	pump(_metadata, t, TOTAL, start + 2 * t->delay_ms + 10000);
	all_ms = sim_now_ms() - start;
	TH_LOG("all %u used after %llu ms", t->used,
	       (unsigned long long)all_ms);
	EXPECT_EQ(TOTAL, t->used);
	EXPECT_EQ(0U, t->dup);
	/* The held ones were held by the delay, not lost and found early. */
	if (held)
		EXPECT_LE(t->delay_ms * 9 / 10, all_ms);
	EXPECT_FALSE(sim_vq_error(&t->s.vq[SIM_TX_VQ]));
}

/*
 * Close the device while frames sent zero-copy sit in netem: close must
 * come back once they are released (the device may wait for them), and
 * nothing may touch the freed device when they complete afterwards.  The
 * reference detaches its backend first (see ref_detach()).
 */
TEST_F_TIMEOUT(zc, close_while_held, 120)
{
	struct zcs *t = &self->t;
	uint64_t start = sim_now_ms(), t0, close_ms;
	unsigned int held;

	pump(_metadata, t, VQ_NUM, start + 1000);
	held = t->submitted - t->used;
	TH_LOG("%u frames submitted, %u held in netem", t->submitted, held);
	ASSERT_LT(0U, held);
	t0 = sim_now_ms();
	if (!t->ours)
		TH_LOG("reference: backend detached before close");
	EXPECT_EQ(0, ref_detach(t));
	close(t->s.fd);
	t->s.fd = -1;
	close_ms = sim_now_ms() - t0;
	TH_LOG("close took %llu ms", (unsigned long long)close_ms);
	EXPECT_GT(t->delay_ms + 10000, close_ms);
	/* Wait the delay out so every held frame completes after close. */
	while (sim_now_ms() < start + t->delay_ms + 2000)
		usleep(100000);
}

TEST_HARNESS_MAIN
