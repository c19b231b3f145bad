// SPDX-License-Identifier: GPL-2.0
/*
 * A virtio-net guest simulated in user space, driving /dev/vhost-net with a
 * tap backend, every byte of every frame verified in both directions.
 *
 * The guest side is virtio_sim.h: guest memory in three regions, split
 * rings of 256 entries, direct and indirect chains, EVENT_IDX or flag-based
 * notification suppression.  The host side is the tap's network device:
 * vhost owns the tap's only queue, so the test reaches the other end of it
 * through AF_PACKET sockets bound to the tap, with PACKET_VNET_HDR so that
 * GSO frames keep their virtio_net_hdr: what the guest sends, the tap
 * delivers to the host stack and the capture socket sees it; what the
 * injection socket sends on the tap, vhost delivers to the guest.
 *
 * Every variant (mergeable rx buffers, EVENT_IDX, indirect descriptors, on
 * or off) runs every test: 60 B, 1514 B and 64 KiB GSO frames each way,
 * both ways at once with mixed sizes, and both ways across the 16-bit ring
 * index wrap.  The same traffic then runs over the two other backends, a
 * macvtap and an AF_PACKET socket, each on a veth pair; and over a tap
 * with busy polling (VHOST_SET_VRING_BUSYLOOP_TIMEOUT), where the device
 * must also pick up a frame the guest did not kick for.  Runs against
 * whichever vhost_net module is loaded.
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
#define MEM_SIZE	(120UL << 20)
#define MEM_REGIONS	3
#define SLOT_SIZE	(80UL << 10)
#define NSLOTS		256
#define HDR_LEN		sizeof(struct virtio_net_hdr_v1)	/* 12 */
#define PKT_MAX		(128UL << 10)
#define WAIT_MS		15000
#define SLICE_MS	200

/* Frames: ethernet, then our payload header, then a pattern. */
#define ETH_HLEN_	14
#define IP_OFF		ETH_HLEN_
#define TCP_OFF		(IP_OFF + 20)
#define TCP_HLEN_	(TCP_OFF + 20)	/* 54: all headers of a TCP frame */
#define GSO_MSS		1448
/*
 * The largest GSO frame: a transmit skb of 64 KiB or more (headers
 * included) exceeds the tap's gso_max_size and would be segmented.
 */
#define GSO_MAX_FRAME	65535
#define ETHERTYPE_SIM	0x88b5		/* IEEE local experimental */
#define MAGIC		0x5653494dU	/* "VSIM" */
#define RX_POISON	0xa5
#define RX_BIG_PAGES	17		/* non-mergeable: 17 x 4 KiB of data */

static const uint8_t mac_guest[6] = { 0x02, 0x53, 0x49, 0x4d, 0x00, 0x01 };
static const uint8_t mac_host[6] = { 0x02, 0x53, 0x49, 0x4d, 0x00, 0x02 };

/* K_MIXED_MTU: K_MIXED without its GSO frames. */
enum kind { K_SMALL, K_MTU, K_GSO, K_MIXED, K_MIXED_MTU };

struct fspec {
	uint32_t len;	/* ethernet frame length */
	bool tcp;	/* IPv4/TCP GSO frame with a virtio_net_hdr to match */
};

struct slot_fifo {
	uint16_t q[NSLOTS];
	unsigned int head;
	unsigned int count;
};

struct tx_state {
	enum kind kind;
	unsigned int total, inflight;
	unsigned int submitted, used, captured;
	uint16_t order[NSLOTS];		/* slots in submission order */
	unsigned int order_head;
	unsigned int overtaken;		/* completions out of submission order */
	bool no_kick;			/* publish only, whatever the device asks */
	struct slot_fifo slots;
};

struct rx_state {
	enum kind kind;
	unsigned int total, inflight;
	unsigned int injected, received;
	struct slot_fifo slots;
	unsigned int need, got;		/* buffers of the packet being built */
	size_t asm_len;
	unsigned int nb_untouched, nb_one;
	int inject_errno;		/* why the last injection stopped */
};

enum backend { BE_TAP, BE_MACVTAP, BE_PACKET, BE_MPASSTHRU };

/* Everything a test owns: the simulated guest and the host side. */
struct simnet {
	struct sim s;
	int tap;		/* the backend: tap, macvtap, packet socket or mpassthru */
	enum backend be;
	int ifindex;
	char ifname[IFNAMSIZ];
	char lower[IFNAMSIZ];	/* the NIC behind the backend, if any */
	unsigned int rx_mrg_len;	/* size of mergeable RX buffers, 0: mixed */
	bool rx_copy;		/* mpassthru: receive is expected by copy */
	/* host side, on the tap or on the veth peer of the backend */
	int cap;		/* receives what the guest sends */
	int inj;		/* host side: sends what the guest receives */
	uint64_t tx_arena, rx_arena;
	bool mrg, indirect;
	struct tx_state tx;
	struct rx_state rx;
	uint8_t *pkt;		/* scratch: header + frame being built */
	uint8_t *exp;		/* scratch: expected frame */
	uint8_t *buf;		/* scratch: what the host side received */
	uint8_t *asm_buf;	/* rx: reassembled header + frame */
	unsigned long foreign;
	unsigned long foreign_rx_bytes;	/* of those, received by the guest */
	unsigned long rx_bytes, tx_bytes;
};

FIXTURE(sim) {
	struct simnet t;
};

FIXTURE_VARIANT(sim) {
	bool mrg;
	bool event_idx;
	bool indirect;
};

FIXTURE_VARIANT_ADD(sim, mrg_evidx_indirect) {
	.mrg = true, .event_idx = true, .indirect = true,
};

FIXTURE_VARIANT_ADD(sim, mrg_evidx_direct) {
	.mrg = true, .event_idx = true, .indirect = false,
};

FIXTURE_VARIANT_ADD(sim, mrg_flags_indirect) {
	.mrg = true, .event_idx = false, .indirect = true,
};

FIXTURE_VARIANT_ADD(sim, mrg_flags_direct) {
	.mrg = true, .event_idx = false, .indirect = false,
};

FIXTURE_VARIANT_ADD(sim, big_evidx_indirect) {
	.mrg = false, .event_idx = true, .indirect = true,
};

FIXTURE_VARIANT_ADD(sim, big_evidx_direct) {
	.mrg = false, .event_idx = true, .indirect = false,
};

FIXTURE_VARIANT_ADD(sim, big_flags_indirect) {
	.mrg = false, .event_idx = false, .indirect = true,
};

FIXTURE_VARIANT_ADD(sim, big_flags_direct) {
	.mrg = false, .event_idx = false, .indirect = false,
};

/* ---- frames ---------------------------------------------------------- */

static struct fspec frame_spec(enum kind kind, uint32_t seq)
{
	static const uint32_t mixed[] = {
		60, 1514, 61, 1000, 128, 1513, 342, 64, 999, 1200, 77,
	};
	static const uint32_t mixed_gso[] = { GSO_MAX_FRAME, 23456, 3000 };
	struct fspec f = { 0 };

	switch (kind) {
	case K_SMALL:
		f.len = 60;
		break;
	case K_MTU:
		f.len = 1514;
		break;
	case K_GSO:
		f.len = GSO_MAX_FRAME - (seq % 4) * 333;
		f.tcp = true;
		break;
	case K_MIXED:
	case K_MIXED_MTU:
		if (kind == K_MIXED && seq % 16 == 7) {
			f.len = mixed_gso[(seq / 16) % 3];
			f.tcp = true;
		} else {
			f.len = mixed[seq % (ARRAY_SIZE(mixed))];
		}
		break;
	}
	return f;
}

static uint8_t pattern(uint32_t seq, uint32_t i)
{
	return (uint8_t)(seq * 131 + i * 7 + (i >> 8) + 0x5a);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p + 2, v);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3];
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t len)
{
	size_t i;

	for (i = 0; i + 1 < len; i += 2)
		sum += p[i] << 8 | p[i + 1];
	if (len & 1)
		sum += p[len - 1] << 8;
	return sum;
}

/*
 * Frame @seq going to the guest (@to_guest) or from it.  A TCP frame has a
 * valid IPv4 header and, as a guest driver leaves it for checksum offload,
 * the pseudo-header sum in the TCP checksum field.
 */
static void build_frame(uint8_t *f, uint32_t seq, struct fspec spec,
			bool to_guest)
{
	uint32_t i, off = spec.tcp ? TCP_HLEN_ : ETH_HLEN_;

	memcpy(f, to_guest ? mac_guest : mac_host, 6);
	memcpy(f + 6, to_guest ? mac_host : mac_guest, 6);
	put16(f + 12, spec.tcp ? ETH_P_IP : ETHERTYPE_SIM);
	if (spec.tcp) {
		uint8_t *ip = f + IP_OFF, *th = f + TCP_OFF;
		uint32_t tcp_len = spec.len - TCP_OFF;

		memset(ip, 0, 20);
		ip[0] = 0x45;
		put16(ip + 2, spec.len - IP_OFF);
		put16(ip + 4, seq);
		put16(ip + 6, 0x4000);
		ip[8] = 64;
		ip[9] = 6;
		put32(ip + 12, to_guest ? 0x0a534902 : 0x0a534901);
		put32(ip + 16, to_guest ? 0x0a534901 : 0x0a534902);
		put16(ip + 10, ~csum_fold(csum_add(0, ip, 20)));

		memset(th, 0, 20);
		put16(th, to_guest ? 5001 : 40000);
		put16(th + 2, to_guest ? 40000 : 5001);
		put32(th + 4, seq * 1000003u);
		th[12] = 5 << 4;
		th[13] = 0x18;	/* PSH | ACK */
		put16(th + 14, 0xffff);
		put16(th + 16, csum_fold(csum_add(6 + tcp_len, ip + 12, 8)));
	}
	put32(f + off, MAGIC);
	put32(f + off + 4, seq);
	put32(f + off + 8, spec.len);
	for (i = off + 12; i < spec.len; i++)
		f[i] = pattern(seq, i);
}

/* Is this one of our frames?  Gives its sequence number. */
static bool frame_seq(const uint8_t *f, size_t len, uint32_t *seq)
{
	size_t off;

	if (len < ETH_HLEN_ + 12)
		return false;
	if (f[12] == ETHERTYPE_SIM >> 8 && f[13] == (ETHERTYPE_SIM & 0xff))
		off = ETH_HLEN_;
	else if (f[12] == 0x08 && f[13] == 0x00 && len >= TCP_HLEN_ + 12)
		off = TCP_HLEN_;
	else
		return false;
	if (get32(f + off) != MAGIC)
		return false;
	*seq = get32(f + off + 4);
	return true;
}

static long first_diff(const uint8_t *a, const uint8_t *b, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (a[i] != b[i])
			return i;
	return -1;
}

static long first_not(const uint8_t *a, size_t len, uint8_t byte)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (a[i] != byte)
			return i;
	return -1;
}

/* virtio_net_hdr of a TCP GSO frame, as the Linux driver and tap fill it. */
static void gso_hdr(struct virtio_net_hdr *h)
{
	memset(h, 0, sizeof(*h));
	h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	h->gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
	h->hdr_len = htole16(TCP_HLEN_);
	h->gso_size = htole16(GSO_MSS);
	h->csum_start = htole16(TCP_OFF);
	h->csum_offset = htole16(16);
}

/* ---- slots: per-chain buffer areas in guest memory ------------------ */

static void fifo_init(struct slot_fifo *f)
{
	unsigned int i;

	f->head = 0;
	f->count = NSLOTS;
	for (i = 0; i < NSLOTS; i++)
		f->q[i] = i;
}

static int fifo_pop(struct slot_fifo *f)
{
	int v;

	if (!f->count)
		return -1;
	v = f->q[f->head];
	f->head = (f->head + 1) % NSLOTS;
	f->count--;
	return v;
}

static void fifo_push(struct slot_fifo *f, uint16_t v)
{
	f->q[(f->head + f->count) % NSLOTS] = v;
	f->count++;
}

/*
 * The receive buffers of rx slot @slot, as a Linux guest posts them: one
 * 1536 B or 4 KiB buffer with mergeable buffers, else a "big packet"
 * chain of a 12-byte header buffer and 17 pages.
 */
static unsigned int rx_chain(struct simnet *t, unsigned int slot,
			     struct sim_sg *sg)
{
	uint64_t base = t->rx_arena + (uint64_t)slot * SLOT_SIZE;
	unsigned int i;

	if (t->mrg) {
		sg[0].gpa = base;
		sg[0].len = t->rx_mrg_len ?: (slot % 3 == 2 ? 4096 : 1536);
		return 1;
	}
	sg[0].gpa = base;
	sg[0].len = HDR_LEN;
	for (i = 0; i < RX_BIG_PAGES; i++) {
		sg[i + 1].gpa = base + 64 + i * (4096 + 32);
		sg[i + 1].len = 4096;
	}
	return RX_BIG_PAGES + 1;
}

/*
 * Scatter header + frame (@len bytes at @pkt) into tx slot @slot in one of
 * four layouts chosen by @seq: one buffer (ANY_LAYOUT), header and frame,
 * the header itself split and a 1-byte buffer, or header + L2/L3/L4
 * headers + page-sized pieces as a Linux guest sends a GSO skb.  Buffers
 * are 16 bytes apart so nothing can assume they are contiguous.
 */
static unsigned int tx_chain(struct simnet *t, unsigned int slot,
			     uint32_t seq, const uint8_t *pkt, uint32_t len,
			     bool tcp, struct sim_sg *sg)
{
	uint64_t at = t->tx_arena + (uint64_t)slot * SLOT_SIZE;
	uint32_t cuts[SIM_MAX_SG], done = 0, piece;
	unsigned int n = 0, i;

	switch (seq % 4) {
	case 0:
		cuts[n++] = len;
		break;
	case 1:
		cuts[n++] = HDR_LEN;
		break;
	case 2:
		cuts[n++] = 5;
		cuts[n++] = HDR_LEN - 5 + 100;
		cuts[n++] = 1;
		break;
	default:
		cuts[n++] = HDR_LEN;
		cuts[n++] = tcp ? TCP_HLEN_ : ETH_HLEN_;
		break;
	}
	for (i = 0; i < n && done < len; i++) {
		piece = cuts[i] < len - done ? cuts[i] : len - done;
		sg[i].gpa = at;
		sg[i].len = piece;
		sim_write(&t->s, at, pkt + done, piece);
		done += piece;
		at += piece + 16;
	}
	n = i;
	while (done < len && n < SIM_MAX_SG) {
		piece = len - done < 4096 ? len - done : 4096;
		sg[n].gpa = at;
		sg[n].len = piece;
		sim_write(&t->s, at, pkt + done, piece);
		done += piece;
		at += piece + 16;
		n++;
	}
	return n;
}

/* ---- setup ------------------------------------------------------------ */

static const char *env_or_skip(struct __test_metadata *_metadata,
			       const char *name)
{
	const char *v = getenv(name);

	if (!v || !*v)
		SKIP(return NULL, "%s not set (the VM suite sets up the veth pair)",
		     name);
	return v;
}

/*
 * The backend, and the interface where the capture and injection sockets
 * sit: the tap itself, or for macvtap and AF_PACKET the far end of a veth
 * pair whose near end carries the macvtap (passthru) or the bound socket.
 * For mpassthru, the bound NIC and the NIC it shares a QEMU hub with.
 * The VM suites name them in $SIM_MACVTAP, $SIM_MACVTAP_PEER,
 * $SIM_PACKET_IF, $SIM_PACKET_PEER, $SIM_MPASSTHRU_IF and
 * $SIM_MPASSTHRU_PEER.
 */
static void open_backend(struct __test_metadata *_metadata, struct simnet *t,
			 enum backend be)
{
	static const char * const lower_env[] = {
		[BE_MACVTAP] = "SIM_MACVTAP",
		[BE_PACKET] = "SIM_PACKET_IF",
		[BE_MPASSTHRU] = "SIM_MPASSTHRU_IF",
	};
	static const char * const peer_env[] = {
		[BE_MACVTAP] = "SIM_MACVTAP_PEER",
		[BE_PACKET] = "SIM_PACKET_PEER",
		[BE_MPASSTHRU] = "SIM_MPASSTHRU_PEER",
	};
	const char *lower, *peer;
	int idx;

	t->be = be;
	if (be == BE_TAP) {
		t->tap = simnet_tap_open("simtap%d", SIMNET_OFFLOADS, t->ifname,
					 &t->ifindex);
		ASSERT_LE(0, t->tap) {
			TH_LOG("tap: %s", strerror(errno));
		}
		return;
	}
	lower = env_or_skip(_metadata, lower_env[be]);
	if (lower)
		snprintf(t->lower, IFNAMSIZ, "%s", lower);
	peer = env_or_skip(_metadata, peer_env[be]);
	if (!lower || !peer)
		return;
	if (be == BE_MACVTAP) {
		t->tap = simnet_macvtap_open(lower, &idx);
	} else if (be == BE_MPASSTHRU) {
		t->tap = simnet_mpassthru_open(lower, &idx);
	} else {
		ASSERT_EQ(0, simnet_if_up(lower, &idx)) {
			TH_LOG("%s: %s", lower, strerror(errno));
		}
		t->tap = simnet_packet_backend(idx);
	}
	ASSERT_LE(0, t->tap) {
		TH_LOG("backend on %s: %s", lower, strerror(errno));
	}
	snprintf(t->ifname, IFNAMSIZ, "%s", peer);
	ASSERT_EQ(0, simnet_if_up(peer, &t->ifindex)) {
		TH_LOG("%s: %s", peer, strerror(errno));
	}
}

static void setup(struct __test_metadata *_metadata, struct simnet *t,
		  bool mrg, bool event_idx, bool indirect, enum backend be)
{
	uint64_t want = 1ULL << VIRTIO_F_VERSION_1;
	int r;

	sim_init(&t->s);
	t->tap = -1;
	t->cap = -1;
	t->inj = -1;
	t->mrg = mrg;
	t->indirect = indirect;
	t->pkt = malloc(PKT_MAX);
	t->exp = malloc(PKT_MAX);
	t->buf = malloc(PKT_MAX);
	t->asm_buf = malloc(PKT_MAX);
	ASSERT_TRUE(t->pkt && t->exp && t->buf && t->asm_buf);

	open_backend(_metadata, t, be);
	if (t->tap < 0)
		return;		/* skipped */
	t->cap = simnet_packet_socket(t->ifindex, true);
	t->inj = simnet_packet_socket(t->ifindex, false);
	ASSERT_LE(0, t->cap) {
		TH_LOG("capture socket: %s", strerror(errno));
	}
	ASSERT_LE(0, t->inj) {
		TH_LOG("injection socket: %s", strerror(errno));
	}

	ASSERT_EQ(0, sim_mem_init(&t->s, MEM_SIZE, MEM_REGIONS));
	r = sim_open(&t->s, "/dev/vhost-net");
	ASSERT_EQ(0, r) {
		TH_LOG("/dev/vhost-net: %s", strerror(-r));
	}
	if (mrg)
		want |= 1ULL << VIRTIO_NET_F_MRG_RXBUF;
	if (event_idx)
		want |= 1ULL << VIRTIO_RING_F_EVENT_IDX;
	if (indirect)
		want |= 1ULL << VIRTIO_RING_F_INDIRECT_DESC;
	/* No vnet header on an AF_PACKET socket: vhost adds and strips it. */
	if (be == BE_PACKET)
		want |= 1ULL << VHOST_NET_F_VIRTIO_NET_HDR;
	r = sim_negotiate(&t->s, want);
	ASSERT_EQ(0, r) {
		TH_LOG("features 0x%llx of 0x%llx: %s",
		       (unsigned long long)want,
		       (unsigned long long)t->s.offered, strerror(-r));
	}
	ASSERT_EQ(0, sim_set_mem_table(&t->s));

	/*
	 * Buffer arenas straddle region boundaries, so that some buffers are
	 * contiguous in guest-physical space and not in the host's.
	 */
	t->tx_arena = t->s.region[1].gpa - (100 * SLOT_SIZE + 777);
	t->rx_arena = t->s.region[2].gpa - (100 * SLOT_SIZE + 1234);
	ASSERT_LE(t->rx_arena + NSLOTS * SLOT_SIZE, sim_mem_end(&t->s));
}

static void teardown(struct simnet *t)
{
	sim_close(&t->s);
	if (t->cap >= 0)
		close(t->cap);
	if (t->inj >= 0)
		close(t->inj);
	if (t->tap >= 0)
		close(t->tap);
	free(t->pkt);
	free(t->exp);
	free(t->buf);
	free(t->asm_buf);
}

FIXTURE_SETUP(sim)
{
	setup(_metadata, &self->t, variant->mrg, variant->event_idx,
	      variant->indirect, BE_TAP);
}

FIXTURE_TEARDOWN(sim)
{
	teardown(&self->t);
}

/* ---- transmit: guest -> tap -> capture socket ------------------------ */

static bool tx_active(struct simnet *t)
{
	struct tx_state *tx = &t->tx;

	return tx->used < tx->total || tx->captured < tx->total;
}

static unsigned int tx_fill(struct __test_metadata *_metadata,
			    struct simnet *t)
{
	struct sim_vq *vq = &t->s.vq[SIM_TX_VQ];
	struct tx_state *tx = &t->tx;
	struct sim_sg sg[SIM_MAX_SG];
	unsigned int added = 0, n;
	int head;

	while (tx->submitted < tx->total &&
	       tx->submitted - tx->used < tx->inflight && tx->slots.count) {
		uint32_t seq = tx->submitted;
		struct fspec spec = frame_spec(tx->kind, seq);
		struct virtio_net_hdr_v1 *h = (void *)t->pkt;
		bool ind = t->indirect && (seq & 1);
		int slot;

		memset(h, 0, HDR_LEN);
		if (spec.tcp)
			gso_hdr((struct virtio_net_hdr *)h);
		build_frame(t->pkt + HDR_LEN, seq, spec, false);
		slot = tx->slots.q[tx->slots.head];
		n = tx_chain(t, slot, seq, t->pkt, HDR_LEN + spec.len,
			     spec.tcp, sg);
		if (vq->num_free < (ind ? 1 : n))
			break;
		fifo_pop(&tx->slots);
		head = sim_add_tx(&t->s, sg, n, ind, slot);
		ASSERT_LE(0, head);
		tx->order[(tx->order_head + tx->submitted - tx->used) % NSLOTS] = slot;
		tx->submitted++;
		t->tx_bytes += spec.len;
		added++;
	}
	if (added && tx->no_kick)
		sim_publish(vq);
	else if (added)
		sim_kick(vq);
	return added;
}

/*
 * Upstream returns TX buffers strictly in submission order.  Ours lets a
 * copied packet overtake zero-copy ones still in flight (legal: neither
 * offers VIRTIO_F_IN_ORDER), so a stalled NIC cannot stall the guest; for
 * ours only exactly-once completion is required (sim_get_used checks it).
 */
static bool tx_order_is_strict(void)
{
	static int strict = -1;
	const char *impl;

	if (strict < 0) {
		impl = getenv("VHOST_IMPL");
		strict = !impl || strcmp(impl, "ours") != 0;
	}
	return strict;
}

static unsigned int tx_harvest(struct __test_metadata *_metadata,
			       struct simnet *t)
{
	struct sim_vq *vq = &t->s.vq[SIM_TX_VQ];
	struct tx_state *tx = &t->tx;
	unsigned int got = 0;
	uintptr_t slot;
	uint32_t len;
	int head;

	while ((head = sim_get_used(vq, &len, &slot)) != -EAGAIN) {
		ASSERT_LE(0, head) {
			TH_LOG("tx: used entry %u is not an outstanding head",
			       (uint16_t)(vq->last_used - 1));
		}
		ASSERT_LT(tx->used, tx->submitted);
		if (tx->order[tx->order_head] != slot) {
			tx->overtaken++;
			EXPECT_FALSE(tx_order_is_strict()) {
				TH_LOG("tx: completion %u out of order", tx->used);
			}
		}
		EXPECT_EQ(0U, len) {
			TH_LOG("tx: used len %u for a read-only chain", len);
		}
		tx->order_head = (tx->order_head + 1) % NSLOTS;
		fifo_push(&tx->slots, slot);
		tx->used++;
		got++;
	}
	return got;
}

static unsigned int tx_capture(struct __test_metadata *_metadata,
			       struct simnet *t)
{
	struct tx_state *tx = &t->tx;
	const struct virtio_net_hdr *vh = (void *)t->buf;
	const size_t vhl = sizeof(struct virtio_net_hdr);
	unsigned int got = 0;
	struct fspec spec;
	uint32_t seq;
	ssize_t n;
	long d;

	while ((n = recv(t->cap, t->buf, PKT_MAX,
			 MSG_DONTWAIT | MSG_TRUNC)) >= 0) {
		const uint8_t *f = t->buf + vhl;
		size_t flen = n - vhl;

		ASSERT_LE((size_t)n, PKT_MAX);
		ASSERT_LE(vhl, (size_t)n);
		if (!frame_seq(f, flen, &seq)) {
			t->foreign++;
			continue;
		}
		ASSERT_EQ(tx->captured, seq) {
			TH_LOG("tx: expected frame %u, the tap delivered %u",
			       tx->captured, seq);
		}
		spec = frame_spec(tx->kind, seq);
		build_frame(t->exp, seq, spec, false);
		ASSERT_EQ(spec.len, flen) {
			TH_LOG("tx: frame %u length", seq);
		}
		d = first_diff(t->exp, f, flen);
		ASSERT_EQ(-1, d) {
			TH_LOG("tx: frame %u (%u B) differs at byte %ld: %02x, want %02x",
			       seq, spec.len, d, f[d], t->exp[d]);
		}
		if (spec.tcp) {
			EXPECT_EQ(VIRTIO_NET_HDR_GSO_TCPV4, vh->gso_type);
			EXPECT_EQ(GSO_MSS, le16toh(vh->gso_size));
			EXPECT_TRUE(vh->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM);
			EXPECT_EQ(TCP_OFF, le16toh(vh->csum_start));
			EXPECT_EQ(16, le16toh(vh->csum_offset));
		} else {
			EXPECT_EQ(VIRTIO_NET_HDR_GSO_NONE, vh->gso_type);
		}
		tx->captured++;
		got++;
	}
	ASSERT_EQ(EAGAIN, errno);
	return got;
}

/* ---- receive: injection socket -> tap -> guest ----------------------- */

static bool rx_active(struct simnet *t)
{
	return t->rx.received < t->rx.total;
}

static unsigned int rx_refill(struct __test_metadata *_metadata,
			      struct simnet *t)
{
	struct sim_vq *vq = &t->s.vq[SIM_RX_VQ];
	struct rx_state *rx = &t->rx;
	struct sim_sg sg[SIM_MAX_SG];
	unsigned int added = 0, n, i;
	bool ind;
	int slot;

	while (rx->slots.count) {
		slot = rx->slots.q[rx->slots.head];
		n = rx_chain(t, slot, sg);
		/* mergeable buffers: some indirect anyway, to cover it */
		ind = t->indirect && (!t->mrg || slot % 4 == 1);
		if (vq->num_free < (ind ? 1 : n))
			break;
		fifo_pop(&rx->slots);
		for (i = 0; i < n; i++)
			sim_fill(&t->s, sg[i].gpa, RX_POISON, sg[i].len);
		ASSERT_LE(0, sim_post_rx(&t->s, sg, n, ind, slot));
		added++;
	}
	if (added)
		sim_kick(vq);
	return added;
}

static unsigned int rx_inject(struct __test_metadata *_metadata,
			      struct simnet *t)
{
	const size_t vhl = sizeof(struct virtio_net_hdr);
	struct rx_state *rx = &t->rx;
	unsigned int sent = 0;

	while (rx->injected < rx->total &&
	       rx->injected - rx->received < rx->inflight) {
		struct fspec spec = frame_spec(rx->kind, rx->injected);
		ssize_t n;

		memset(t->pkt, 0, vhl);
		if (spec.tcp)
			gso_hdr((struct virtio_net_hdr *)t->pkt);
		build_frame(t->pkt + vhl, rx->injected, spec, true);
		n = simnet_inject(t->inj, t->ifindex, mac_guest,
				  spec.tcp ? ETH_P_IP : ETHERTYPE_SIM, t->pkt,
				  vhl + spec.len, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == ENOBUFS)) {
			rx->inject_errno = errno;
			break;
		}
		ASSERT_EQ((ssize_t)(vhl + spec.len), n) {
			TH_LOG("inject frame %u (%u B): %s", rx->injected,
			       spec.len, strerror(errno));
		}
		rx->injected++;
		sent++;
	}
	return sent;
}

/* What the backend saw, when the guest missed a frame. */
static void rx_log_backend(struct __test_metadata *_metadata,
			   struct simnet *t)
{
	struct mpassthru_info info;

	if (t->be != BE_MPASSTHRU || mpt_info(t->tap, &info))
		return;
	TH_LOG("mpassthru: rx %llu frames, %llu dropped, %llu B zero-copy, %llu B copied",
	       (unsigned long long)info.stats.rx_packets,
	       (unsigned long long)info.stats.rx_dropped,
	       (unsigned long long)info.stats.rx_zcopy_bytes,
	       (unsigned long long)info.stats.rx_copy_bytes);
}

/* A whole packet is in asm_buf: check it against what was injected. */
static void rx_check_packet(struct __test_metadata *_metadata,
			    struct simnet *t)
{
	const struct virtio_net_hdr_v1 *h = (void *)t->asm_buf;
	const uint8_t *f = t->asm_buf + HDR_LEN;
	struct rx_state *rx = &t->rx;
	size_t flen = rx->asm_len - HDR_LEN;
	uint16_t nb = le16toh(h->num_buffers);
	struct fspec spec;
	uint32_t seq;
	long d;

	if (!frame_seq(f, flen, &seq)) {
		t->foreign++;
		t->foreign_rx_bytes += flen;
		return;
	}
	ASSERT_EQ(rx->received, seq) {
		TH_LOG("rx: expected frame %u, the guest got %u (%lu foreign)",
		       rx->received, seq, t->foreign);
		rx_log_backend(_metadata, t);
	}
	spec = frame_spec(rx->kind, seq);
	build_frame(t->exp, seq, spec, true);
	ASSERT_EQ(spec.len, flen) {
		TH_LOG("rx: frame %u length (%u buffers)", seq, rx->got);
	}
	d = first_diff(t->exp, f, flen);
	ASSERT_EQ(-1, d) {
		TH_LOG("rx: frame %u (%u B) differs at byte %ld: %02x, want %02x",
		       seq, spec.len, d, f[d], t->exp[d]);
	}
	if (spec.tcp) {
		EXPECT_EQ(VIRTIO_NET_HDR_GSO_TCPV4, h->gso_type);
		EXPECT_EQ(GSO_MSS, le16toh(h->gso_size));
		EXPECT_TRUE(h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM);
		EXPECT_EQ(TCP_OFF, le16toh(h->csum_start));
		EXPECT_EQ(16, le16toh(h->csum_offset));
		EXPECT_GE(flen, le16toh(h->hdr_len));
	} else {
		EXPECT_EQ(VIRTIO_NET_HDR_GSO_NONE, h->gso_type);
		EXPECT_FALSE(h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM);
	}
	if (!t->mrg) {
		/* Not written by upstream without MRG_RXBUF; 1 is fine too. */
		EXPECT_TRUE(nb == 1 || nb == (RX_POISON << 8 | RX_POISON)) {
			TH_LOG("rx: num_buffers %u without MRG_RXBUF", nb);
		}
		if (nb == 1)
			rx->nb_one++;
		else
			rx->nb_untouched++;
	}
	t->rx_bytes += flen;
	rx->received++;
}

static unsigned int rx_harvest(struct __test_metadata *_metadata,
			       struct simnet *t)
{
	struct sim_vq *vq = &t->s.vq[SIM_RX_VQ];
	struct rx_state *rx = &t->rx;
	struct sim_sg sg[SIM_MAX_SG];
	unsigned int got = 0, n, i;
	uint32_t len, cap, take;
	uintptr_t slot;
	int head;

	while ((head = sim_get_used(vq, &len, &slot)) != -EAGAIN) {
		ASSERT_LE(0, head) {
			TH_LOG("rx: used entry %u is not an outstanding head",
			       (uint16_t)(vq->last_used - 1));
		}
		n = rx_chain(t, slot, sg);
		for (cap = 0, i = 0; i < n; i++)
			cap += sg[i].len;
		ASSERT_LE(len, cap) {
			TH_LOG("rx: used len %u beyond the %u B buffer", len,
			       cap);
		}
		ASSERT_LE(rx->asm_len + len, PKT_MAX);
		/* Gather what was written, check the rest is untouched. */
		for (i = 0; i < n; i++) {
			take = len < sg[i].len ? len : sg[i].len;
			sim_read(&t->s, t->asm_buf + rx->asm_len,
				 sg[i].gpa, take);
			rx->asm_len += take;
			len -= take;
			if (take < sg[i].len) {
				uint32_t rest = sg[i].len - take;
				long d;

				sim_read(&t->s, t->buf, sg[i].gpa + take,
					 rest);
				d = first_not(t->buf, rest, RX_POISON);
				ASSERT_EQ(-1, d) {
					TH_LOG("rx: written past used len: buffer %u byte %lu",
					       i, take + d);
				}
			}
		}
		fifo_push(&rx->slots, slot);
		got++;

		if (!rx->got) {
			ASSERT_LE(HDR_LEN, rx->asm_len) {
				TH_LOG("rx: first buffer shorter than the header");
			}
			rx->need = 1;
			if (t->mrg) {
				const struct virtio_net_hdr_v1 *h =
					(void *)t->asm_buf;

				rx->need = le16toh(h->num_buffers);
				ASSERT_TRUE(rx->need >= 1 && rx->need <= VQ_NUM) {
					TH_LOG("rx: num_buffers %u", rx->need);
				}
			}
		}
		if (++rx->got == rx->need) {
			rx_check_packet(_metadata, t);
			rx->got = 0;
			rx->asm_len = 0;
		}
	}
	return got;
}

/* ---- the loop ---------------------------------------------------------- */

static void wait_any(struct __test_metadata *_metadata,
		     struct simnet *t, int timeout_ms)
{
	struct sim_vq *rxq = &t->s.vq[SIM_RX_VQ];
	struct sim_vq *txq = &t->s.vq[SIM_TX_VQ];
	struct pollfd p[5];
	int n = 0;

	if (tx_active(t)) {
		if (sim_enable_cb(txq))
			return;
		p[n].fd = txq->call_fd;
		p[n++].events = POLLIN;
		p[n].fd = t->cap;
		p[n++].events = POLLIN;
	}
	if (rx_active(t)) {
		if (sim_enable_cb(rxq))
			return;
		p[n].fd = rxq->call_fd;
		p[n++].events = POLLIN;
	}
	p[n].fd = txq->err_fd;
	p[n++].events = POLLIN;
	p[n].fd = rxq->err_fd;
	p[n++].events = POLLIN;
	ASSERT_LE(0, poll(p, n, timeout_ms));
	ASSERT_FALSE(sim_vq_error(txq));
	ASSERT_FALSE(sim_vq_error(rxq));
	sim_ack_call(txq);
	sim_ack_call(rxq);
}

struct traffic {
	enum kind kind;
	unsigned int total;
	unsigned int inflight;
};

static void start(struct __test_metadata *_metadata, struct simnet *t,
		  uint16_t rx_base, uint16_t tx_base)
{
	int r;

	ASSERT_EQ(0, sim_vq_init(&t->s, SIM_RX_VQ, VQ_NUM, rx_base));
	ASSERT_EQ(0, sim_vq_init(&t->s, SIM_TX_VQ, VQ_NUM, tx_base));
	r = sim_set_backend(&t->s, t->tap);
	ASSERT_EQ(0, r) {
		TH_LOG("VHOST_NET_SET_BACKEND: %s", strerror(-r));
	}
}

/*
 * mpassthru lends the guest's buffers to the NIC once vhost-net posts
 * them; a frame that comes first lands in the driver's own buffer and is
 * copied.  Wait until the NIC has guest buffers (when it can take them).
 */
static void rx_wait_lent(struct simnet *t)
{
	int i;

	if (t->be != BE_MPASSTHRU || t->rx_copy)
		return;
	for (i = 0; i < WAIT_MS / 50 && mpt_dbg_field(t->lower, "rx_lent") <= 0;
	     i++)
		usleep(50000);
}

static void run(struct __test_metadata *_metadata, struct simnet *t,
		struct traffic tx, struct traffic rx)
{
	struct sim_vq *rxq = &t->s.vq[SIM_RX_VQ];
	struct sim_vq *txq = &t->s.vq[SIM_TX_VQ];
	uint64_t last = sim_now_ms();

	memset(&t->tx, 0, sizeof(t->tx));
	memset(&t->rx, 0, sizeof(t->rx));
	t->tx.kind = tx.kind;
	t->tx.total = tx.total;
	t->tx.inflight = tx.inflight;
	t->rx.kind = rx.kind;
	t->rx.total = rx.total;
	t->rx.inflight = rx.inflight;
	fifo_init(&t->tx.slots);
	fifo_init(&t->rx.slots);

	if (rx.total) {
		unsigned int posted = rx_refill(_metadata, t);

		rx_wait_lent(t);
		/*
		 * Zero-copy receive: a NIC that used up the guest's buffers
		 * has nowhere to put the next frame, and QEMU's hub then
		 * loses one.  Keep well within what the guest posted.
		 */
		if (t->be == BE_MPASSTHRU && !t->rx_copy && posted / 3 < rx.inflight)
			t->rx.inflight = posted / 3 ?: 1;
	}

	while (tx_active(t) || rx_active(t)) {
		unsigned int progress = 0;
		uint64_t now;

		if (tx_active(t)) {
			progress += tx_fill(_metadata, t);
			progress += tx_harvest(_metadata, t);
			progress += tx_capture(_metadata, t);
		}
		if (rx_active(t)) {
			progress += rx_inject(_metadata, t);
			progress += rx_harvest(_metadata, t);
			rx_refill(_metadata, t);
		}
		now = sim_now_ms();
		if (progress) {
			last = now;
			continue;
		}
		ASSERT_LT(now - last, (uint64_t)WAIT_MS) {
			TH_LOG("stalled: tx %u/%u submitted, %u used, %u captured",
			       t->tx.submitted, t->tx.total,
			       t->tx.used, t->tx.captured);
			TH_LOG("stalled: rx %u/%u injected (%s), %u received",
			       t->rx.injected, t->rx.total,
			       strerror(t->rx.inject_errno), t->rx.received);
			TH_LOG("tx ring: avail %u used %u flags %x",
			       txq->avail_idx, sim_used_idx(txq),
			       le16toh(txq->vr.used->flags));
			TH_LOG("rx ring: avail %u used %u flags %x",
			       rxq->avail_idx, sim_used_idx(rxq),
			       le16toh(rxq->vr.used->flags));
		}
		wait_any(_metadata, t, SLICE_MS);
	}
}

/*
 * Stop the device as QEMU does and check its view matches ours: no error
 * signalled, no used entry we did not see, and GET_VRING_BASE equal to what
 * it consumed (all of TX, and on RX exactly what it returned).
 */
static void finish(struct __test_metadata *_metadata, struct simnet *t)
{
	struct sim_vq *rxq = &t->s.vq[SIM_RX_VQ];
	struct sim_vq *txq = &t->s.vq[SIM_TX_VQ];
	uint16_t base;

	EXPECT_FALSE(sim_vq_error(txq));
	EXPECT_FALSE(sim_vq_error(rxq));
	ASSERT_EQ(0, sim_set_backend(&t->s, -1));
	EXPECT_EQ(0U, sim_pending_used(txq));
	EXPECT_EQ(0U, sim_pending_used(rxq));
	ASSERT_EQ(0, sim_get_vring_base(&t->s, SIM_TX_VQ, &base));
	EXPECT_EQ(txq->avail_idx, base);
	ASSERT_EQ(0, sim_get_vring_base(&t->s, SIM_RX_VQ, &base));
	EXPECT_EQ(rxq->last_used, base);
	if (t->foreign)
		TH_LOG("ignored %lu frames that were not ours", t->foreign);
	if (t->tx.total)
		TH_LOG("tx: %u frames %lu B, kicks %lu (suppressed %lu), calls %lu",
		       t->tx.captured, t->tx_bytes, txq->kicks,
		       txq->kicks_suppressed, txq->calls);
	if (t->rx.total)
		TH_LOG("rx: %u frames %lu B, kicks %lu (suppressed %lu), calls %lu",
		       t->rx.received, t->rx_bytes, rxq->kicks,
		       rxq->kicks_suppressed, rxq->calls);
	if (t->tx.overtaken)
		TH_LOG("tx: %u completions overtook earlier buffers",
		       t->tx.overtaken);
	if (!t->mrg && t->rx.received)
		TH_LOG("rx: num_buffers left untouched %u, set to 1 %u",
		       t->rx.nb_untouched, t->rx.nb_one);
}

static const struct traffic none;

/* One run on fresh rings, stopped and checked as QEMU would. */
static void traffic(struct __test_metadata *_metadata, struct simnet *t,
		    struct traffic tx, struct traffic rx)
{
	start(_metadata, t, 0, 0);
	run(_metadata, t, tx, rx);
	finish(_metadata, t);
}

/* 300 frames: the 256-entry ring wraps at least once. */
TEST_F_TIMEOUT(sim, tx_60, 240)
{
	traffic(_metadata, &self->t, (struct traffic){ K_SMALL, 300, 64 },
		none);
}

TEST_F_TIMEOUT(sim, tx_1514, 240)
{
	traffic(_metadata, &self->t, (struct traffic){ K_MTU, 300, 64 }, none);
}

TEST_F_TIMEOUT(sim, tx_gso_64k, 240)
{
	traffic(_metadata, &self->t, (struct traffic){ K_GSO, 40, 16 }, none);
}

TEST_F_TIMEOUT(sim, rx_60, 240)
{
	traffic(_metadata, &self->t, none,
		(struct traffic){ K_SMALL, 300, 64 });
}

TEST_F_TIMEOUT(sim, rx_1514, 240)
{
	traffic(_metadata, &self->t, none, (struct traffic){ K_MTU, 300, 64 });
}

TEST_F_TIMEOUT(sim, rx_gso_64k, 240)
{
	traffic(_metadata, &self->t, none, (struct traffic){ K_GSO, 40, 16 });
}

/* Both directions at once, sizes from 60 B to 64 KiB GSO interleaved. */
TEST_F_TIMEOUT(sim, bidir_mixed, 240)
{
	traffic(_metadata, &self->t, (struct traffic){ K_MIXED, 400, 64 },
		(struct traffic){ K_MIXED, 400, 64 });
}

/* Ring indices start just below 65535 and wrap the 16-bit counters. */
TEST_F_TIMEOUT(sim, bidir_index_wrap, 240)
{
	start(_metadata, &self->t, 65535 - 150, 65535 - 37);
	run(_metadata, &self->t, (struct traffic){ K_MIXED, 400, 64 },
	    (struct traffic){ K_MIXED, 400, 64 });
	finish(_metadata, &self->t);
	/* both ended past the wrap (and not all the way round again) */
	EXPECT_LT(self->t.s.vq[SIM_TX_VQ].avail_idx, 65535 - 37);
	EXPECT_LT(self->t.s.vq[SIM_RX_VQ].last_used, 65535 - 150);
}

/* ---- macvtap and AF_PACKET backends ------------------------------------ */

/*
 * The same guest on the other backends of VHOST_NET_SET_BACKEND: a
 * macvtap (passthru, with a vnet header as QEMU opens it) or an AF_PACKET
 * raw socket (no vnet header: VHOST_NET_F_VIRTIO_NET_HDR, vhost adds and
 * strips it, so no GSO) on one end of a veth pair; the capture and
 * injection sockets sit on the other end.
 */
FIXTURE(backend) {
	struct simnet t;
};

FIXTURE_VARIANT(backend) {
	enum backend be;
	bool mrg;
	bool event_idx;
	bool indirect;
	bool small_rx;
};

FIXTURE_VARIANT_ADD(backend, macvtap_mrg_evidx_indirect) {
	.be = BE_MACVTAP, .mrg = true, .event_idx = true, .indirect = true,
};

FIXTURE_VARIANT_ADD(backend, macvtap_big_flags_direct) {
	.be = BE_MACVTAP, .mrg = false, .event_idx = false, .indirect = false,
};

FIXTURE_VARIANT_ADD(backend, packet_mrg_flags_indirect) {
	.be = BE_PACKET, .mrg = true, .event_idx = false, .indirect = true,
};

FIXTURE_VARIANT_ADD(backend, packet_big_evidx_direct) {
	.be = BE_PACKET, .mrg = false, .event_idx = true, .indirect = false,
};

/* A real NIC (virtio-net on a QEMU hub) bound to /dev/mpassthru. */
FIXTURE_VARIANT_ADD(backend, mpassthru_mrg_evidx_indirect) {
	.be = BE_MPASSTHRU, .mrg = true, .event_idx = true, .indirect = true,
};

FIXTURE_VARIANT_ADD(backend, mpassthru_big_flags_direct) {
	.be = BE_MPASSTHRU, .mrg = false, .event_idx = false, .indirect = false,
};

/* 512-byte receive buffers: no frame fits one, so receive copies. */
FIXTURE_VARIANT_ADD(backend, mpassthru_mrg_small_rx) {
	.be = BE_MPASSTHRU, .mrg = true, .event_idx = true, .indirect = false,
	.small_rx = true,
};

FIXTURE_SETUP(backend)
{
	setup(_metadata, &self->t, variant->mrg, variant->event_idx,
	      variant->indirect, variant->be);
	self->t.rx_mrg_len = variant->small_rx ? 512 : 0;
	/* SIM_RX_COPY=1: the suite loaded vhost_net with zcopy_rx=0. */
	self->t.rx_copy = variant->small_rx ||
			  (getenv("SIM_RX_COPY") && !strcmp(getenv("SIM_RX_COPY"), "1"));
}

/*
 * Once vhost-net has let go (the device is closed, so every zero-copy
 * frame completed), no guest page may stay referenced by the binding.
 */
FIXTURE_TEARDOWN(backend)
{
	struct simnet *t = &self->t;
	struct mpassthru_info info;

	if (t->be == BE_MPASSTHRU && t->tap >= 0) {
		sim_close(&t->s);
		ASSERT_EQ(0, mpt_info(t->tap, &info));
		TH_LOG("mpassthru: tx %llu B zero-copy, %llu B copied",
		       (unsigned long long)info.stats.tx_zcopy_bytes,
		       (unsigned long long)info.stats.tx_copy_bytes);
		TH_LOG("mpassthru: rx %llu B copied, %llu dropped",
		       (unsigned long long)info.stats.rx_copy_bytes,
		       (unsigned long long)info.stats.rx_dropped);
		EXPECT_EQ(0ULL, info.stats.pinned_pages);
		/* Still bound, but no guest buffer is left in the NIC's ring. */
		EXPECT_EQ(0, mpt_dbg_field(t->lower, "rx_lent"));
		EXPECT_EQ(0, mpt_dbg_field(t->lower, "rx_posted"));
	}
	teardown(t);
}

/*
 * mpassthru's own counters agree with what the test saw, and frames large
 * enough for vhost-net to offer them zero-copy went out from guest pages.
 */
static void mp_check_counters(struct __test_metadata *_metadata,
			      struct simnet *t, struct traffic tx,
			      struct traffic rx)
{
	struct mpassthru_info info;

	if (t->be != BE_MPASSTHRU)
		return;
	ASSERT_EQ(0, mpt_info(t->tap, &info));
	EXPECT_EQ(MPASSTHRU_STATE_BOUND, info.state);
	EXPECT_EQ(tx.total, info.stats.tx_packets);
	EXPECT_EQ(t->tx_bytes, info.stats.tx_bytes);
	EXPECT_LE(rx.total, info.stats.rx_packets);
	if (tx.kind == K_MTU)
		EXPECT_LT(0ULL, info.stats.tx_zcopy_bytes);
	/* Split between zero-copy and copy, the bytes the test itself sent. */
	EXPECT_EQ(t->tx_bytes,
		  info.stats.tx_zcopy_bytes + info.stats.tx_copy_bytes);
	if (!rx.total)
		return;
	TH_LOG("mpassthru: rx %llu B zero-copy, %llu B copied, %lld small",
	       (unsigned long long)info.stats.rx_zcopy_bytes,
	       (unsigned long long)info.stats.rx_copy_bytes,
	       mpt_dbg_field(t->lower, "rx_too_small"));
	/* And every frame the guest received, as the test counted them. */
	EXPECT_EQ(t->rx_bytes + t->foreign_rx_bytes,
		  info.stats.rx_zcopy_bytes + info.stats.rx_copy_bytes);
	if (t->rx_mrg_len) {
		/* Refused for zero-copy, received by copy, nothing lost. */
		EXPECT_EQ(0ULL, info.stats.rx_zcopy_bytes);
		EXPECT_LT(0, mpt_dbg_field(t->lower, "rx_too_small"));
	} else if (t->rx_copy) {
		/* vhost-net posted nothing: the NIC never had guest buffers. */
		EXPECT_EQ(0ULL, info.stats.rx_zcopy_bytes);
		EXPECT_EQ(0, mpt_dbg_field(t->lower, "rx_zc"));
		EXPECT_EQ(0, mpt_dbg_field(t->lower, "rx_lent"));
	} else {
		/* The NIC wrote every frame into the guest's buffers. */
		EXPECT_EQ(0ULL, info.stats.rx_copy_bytes);
		EXPECT_LT(0ULL, info.stats.rx_zcopy_bytes);
	}
}

static void backend_traffic(struct __test_metadata *_metadata,
			    struct simnet *t, struct traffic tx,
			    struct traffic rx)
{
	traffic(_metadata, t, tx, rx);
	mp_check_counters(_metadata, t, tx, rx);
}

TEST_F_TIMEOUT(backend, tx_60, 240)
{
	backend_traffic(_metadata, &self->t,
			(struct traffic){ K_SMALL, 300, 64 }, none);
}

TEST_F_TIMEOUT(backend, tx_1514, 240)
{
	backend_traffic(_metadata, &self->t,
			(struct traffic){ K_MTU, 300, 64 }, none);
}

TEST_F_TIMEOUT(backend, rx_60, 240)
{
	backend_traffic(_metadata, &self->t, none,
			(struct traffic){ K_SMALL, 300, 64 });
}

TEST_F_TIMEOUT(backend, rx_1514, 240)
{
	backend_traffic(_metadata, &self->t, none,
			(struct traffic){ K_MTU, 300, 64 });
}

/*
 * 60 B to 1514 B both ways at once; with macvtap 64 KiB GSO frames too
 * (a NIC on a QEMU hub has no TSO: it would segment them on the way).
 */
TEST_F_TIMEOUT(backend, bidir_mixed, 240)
{
	enum kind k = variant->be == BE_MACVTAP ? K_MIXED : K_MIXED_MTU;

	start(_metadata, &self->t, 65535 - 100, 0);
	run(_metadata, &self->t, (struct traffic){ k, 400, 64 },
	    (struct traffic){ k, 400, 64 });
	finish(_metadata, &self->t);
}

/* ---- busy polling ------------------------------------------------------ */

/* Long enough to tell apart from scheduling noise under TCG. */
#define BUSY_US		1000000U
#define BUSY_ROUNDS	4

FIXTURE(busy) {
	struct simnet t;
};

FIXTURE_SETUP(busy)
{
	setup(_metadata, &self->t, true, true, false, BE_TAP);
}

FIXTURE_TEARDOWN(busy)
{
	teardown(&self->t);
}

static int set_busyloop(struct sim *s, unsigned int index, unsigned int us)
{
	struct vhost_vring_state st = { .index = index, .num = us };

	return sim_ioctl(s, VHOST_SET_VRING_BUSYLOOP_TIMEOUT, &st);
}

static int get_busyloop(struct sim *s, unsigned int index, unsigned int *us)
{
	struct vhost_vring_state st = { .index = index, .num = 0xdead };
	int r = sim_ioctl(s, VHOST_GET_VRING_BUSYLOOP_TIMEOUT, &st);

	if (!r && st.index != index)
		return -EPROTO;
	*us = st.num;
	return r;
}

/* Each ring keeps its own value; a ring that does not exist is refused. */
TEST_F(busy, timeout_round_trip)
{
	static const unsigned int val[] = { 0, 1, 50, 123456, 0xffffffffU, 0 };
	struct sim *s = &self->t.s;
	unsigned int i, rx, tx;

	ASSERT_EQ(0, get_busyloop(s, SIM_RX_VQ, &rx));
	ASSERT_EQ(0, get_busyloop(s, SIM_TX_VQ, &tx));
	EXPECT_EQ(0U, rx);
	EXPECT_EQ(0U, tx);
	for (i = 0; i < ARRAY_SIZE(val); i++) {
		ASSERT_EQ(0, set_busyloop(s, SIM_RX_VQ, val[i]));
		ASSERT_EQ(0, set_busyloop(s, SIM_TX_VQ, val[i] ^ 0x55));
		ASSERT_EQ(0, get_busyloop(s, SIM_RX_VQ, &rx));
		ASSERT_EQ(0, get_busyloop(s, SIM_TX_VQ, &tx));
		EXPECT_EQ(val[i], rx);
		EXPECT_EQ(val[i] ^ 0x55, tx);
	}
	EXPECT_EQ(-ENOBUFS, set_busyloop(s, SIM_NVQ, 10));
	EXPECT_EQ(-ENOBUFS, get_busyloop(s, SIM_NVQ, &rx));
}

/* Both ways at once with both rings busy polling, every byte checked. */
TEST_F_TIMEOUT(busy, traffic, 240)
{
	struct sim *s = &self->t.s;
	unsigned int us;

	ASSERT_EQ(0, set_busyloop(s, SIM_RX_VQ, 20000));
	ASSERT_EQ(0, set_busyloop(s, SIM_TX_VQ, 20000));
	traffic(_metadata, &self->t, (struct traffic){ K_MIXED, 400, 64 },
		(struct traffic){ K_MIXED, 400, 64 });
	ASSERT_EQ(0, get_busyloop(s, SIM_TX_VQ, &us));
	EXPECT_EQ(20000U, us);
}

/*
 * Send one frame (tx.inflight is 1), with a kick when the device asks for
 * one or (@kick false) with none at all, and wait @wait_ms for its used
 * entry: false if it did not come.  Its latency goes to @worst_ms; the
 * frame must arrive intact.
 */
static bool tx_one(struct __test_metadata *_metadata, struct simnet *t,
		   bool kick, int wait_ms, uint64_t *worst_ms)
{
	struct sim_vq *vq = &t->s.vq[SIM_TX_VQ];
	struct tx_state *tx = &t->tx;
	uint64_t t0 = sim_now_ms(), lat;

	tx->no_kick = !kick;
	if (tx->submitted == tx->used)
		EXPECT_EQ(1U, tx_fill(_metadata, t));
	tx->no_kick = false;
	if (sim_wait_used(vq, wait_ms))
		return false;
	lat = sim_now_ms() - t0;
	*worst_ms = lat > *worst_ms ? lat : *worst_ms;
	EXPECT_EQ(1U, tx_harvest(_metadata, t));
	while (tx->captured < tx->used && sim_now_ms() - t0 < WAIT_MS) {
		struct pollfd p = { .fd = t->cap, .events = POLLIN };

		poll(&p, 1, SLICE_MS);
		tx_capture(_metadata, t);
	}
	EXPECT_EQ(tx->used, tx->captured);
	return true;
}

/*
 * While the device busy polls after a frame, the guest publishes the next
 * one without kicking at all (a driver skips the kick when the device
 * asked for none): it must still be sent, and the used entry of the first
 * one must not wait until polling ends.  Control: with a timeout of 0 the
 * same frame stays put until the guest kicks.  Polling stops early when
 * the worker's CPU is wanted, so one frame sent unkicked out of
 * BUSY_ROUNDS is enough; none may be lost or damaged in any round.
 */
TEST_F_TIMEOUT(busy, tx_without_kick, 120)
{
	struct simnet *t = &self->t;
	struct sim_vq *vq = &t->s.vq[SIM_TX_VQ];
	unsigned int mode, round, unkicked[2] = { 0, 0 };
	uint64_t worst = 0;

	start(_metadata, t, 0, 0);
	memset(&t->tx, 0, sizeof(t->tx));
	t->tx.kind = K_MTU;
	t->tx.total = 4 * BUSY_ROUNDS;
	t->tx.inflight = 1;
	fifo_init(&t->tx.slots);
	for (mode = 0; mode < 2; mode++) {
		ASSERT_EQ(0, set_busyloop(&t->s, SIM_TX_VQ, mode ? BUSY_US : 0));
		for (round = 0; round < BUSY_ROUNDS; round++) {
			/* let any polling run out: the device is idle */
			usleep(BUSY_US + 300000);
			ASSERT_TRUE(tx_one(_metadata, t, true, WAIT_MS, &worst));
			usleep(50000);
			if (tx_one(_metadata, t, false, BUSY_US / 2000,
				   &worst)) {
				unkicked[mode]++;
				continue;
			}
			/* not picked up: kick, and it must go now */
			vq->always_kick = true;
			sim_kick(vq);
			vq->always_kick = false;
			ASSERT_TRUE(tx_one(_metadata, t, true, WAIT_MS, &worst));
		}
	}
	TH_LOG("sent without a kick: %u/%u rounds idle, %u/%u polling; slowest used entry %llu ms",
	       unkicked[0], BUSY_ROUNDS, unkicked[1], BUSY_ROUNDS,
	       (unsigned long long)worst);
	EXPECT_EQ(0U, unkicked[0]);
	EXPECT_LT(0U, unkicked[1]);
	EXPECT_GT(BUSY_US / 2000, worst) {
		TH_LOG("a used entry waited for busy polling to end");
	}
	finish(_metadata, t);
}

/*
 * A received frame reaches the guest while the device goes on polling
 * the socket for the next one, not when polling ends.
 */
TEST_F_TIMEOUT(busy, rx_latency, 120)
{
	struct simnet *t = &self->t;
	struct sim_vq *vq = &t->s.vq[SIM_RX_VQ];
	uint64_t t0, lat, worst = 0;
	unsigned int round;

	ASSERT_EQ(0, set_busyloop(&t->s, SIM_RX_VQ, BUSY_US));
	start(_metadata, t, 0, 0);
	memset(&t->rx, 0, sizeof(t->rx));
	t->rx.kind = K_MTU;
	t->rx.total = BUSY_ROUNDS;
	t->rx.inflight = 1;
	fifo_init(&t->rx.slots);
	rx_refill(_metadata, t);
	for (round = 0; round < BUSY_ROUNDS; round++) {
		usleep(BUSY_US + 300000);
		t0 = sim_now_ms();
		ASSERT_EQ(1U, rx_inject(_metadata, t));
		ASSERT_EQ(0, sim_wait_used(vq, WAIT_MS));
		lat = sim_now_ms() - t0;
		worst = lat > worst ? lat : worst;
		ASSERT_LE(1U, rx_harvest(_metadata, t));
		ASSERT_EQ(round + 1, t->rx.received);
		rx_refill(_metadata, t);
	}
	TH_LOG("slowest frame to the guest: %llu ms",
	       (unsigned long long)worst);
	EXPECT_GT(BUSY_US / 2000, worst) {
		TH_LOG("a received frame waited for busy polling to end");
	}
	finish(_metadata, t);
}

TEST_HARNESS_MAIN
