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
 * index wrap.  Runs against whichever vhost_net module is loaded.
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

enum kind { K_SMALL, K_MTU, K_GSO, K_MIXED };

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

/* Everything a test owns: the simulated guest and the host side. */
struct simnet {
	struct sim s;
	int tap;
	int ifindex;
	char ifname[IFNAMSIZ];
	int cap;		/* host side: receives what the guest sends */
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
		if (seq % 16 == 7) {
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
		sg[0].len = slot % 3 == 2 ? 4096 : 1536;
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

/* ---- host side: tap and packet sockets --------------------------------- */

static int tap_open(struct simnet *t)
{
	int hdr_sz = HDR_LEN, fd, sk, r = -1;
	struct ifreq ifr;
	char path[96];

	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, IFNAMSIZ, "simtap%%d");
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0 ||
	    ioctl(fd, TUNSETVNETHDRSZ, &hdr_sz) < 0 ||
	    ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0)
		goto out;
	memcpy(t->ifname, ifr.ifr_name, IFNAMSIZ);

	/* No IPv6 autoconfiguration chatter towards the guest. */
	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6",
		 t->ifname);
	sk = open(path, O_WRONLY | O_CLOEXEC);
	if (sk >= 0) {
		if (write(sk, "1", 1) != 1)
			perror("disable_ipv6");
		close(sk);
	}

	sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sk < 0)
		goto out;
	if (ioctl(sk, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP | IFF_NOARP;
		if (ioctl(sk, SIOCSIFFLAGS, &ifr) == 0 &&
		    ioctl(sk, SIOCGIFINDEX, &ifr) == 0) {
			t->ifindex = ifr.ifr_ifindex;
			r = 0;
		}
	}
	close(sk);
out:
	if (r) {
		close(fd);
		return -1;
	}
	return fd;
}

static int packet_socket(struct simnet *t, bool capture)
{
	int one = 1, size = 64 << 20, fd;
	struct sockaddr_ll sll;

	fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)))
		goto err;
	if (capture) {
		if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one,
			       sizeof(one)) ||
		    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size,
			       sizeof(size)))
			goto err;
		memset(&sll, 0, sizeof(sll));
		sll.sll_family = AF_PACKET;
		sll.sll_protocol = htons(ETH_P_ALL);
		sll.sll_ifindex = t->ifindex;
		if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)))
			goto err;
	} else {
		if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one,
			       sizeof(one)) ||
		    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size,
			       sizeof(size)))
			goto err;
	}
	return fd;
err:
	close(fd);
	return -1;
}

/* ---- setup ------------------------------------------------------------ */

FIXTURE_SETUP(sim)
{
	struct simnet *t = &self->t;
	uint64_t want = 1ULL << VIRTIO_F_VERSION_1;
	int r;

	sim_init(&t->s);
	t->tap = -1;
	t->cap = -1;
	t->inj = -1;
	t->mrg = variant->mrg;
	t->indirect = variant->indirect;
	t->pkt = malloc(PKT_MAX);
	t->exp = malloc(PKT_MAX);
	t->buf = malloc(PKT_MAX);
	t->asm_buf = malloc(PKT_MAX);
	ASSERT_TRUE(t->pkt && t->exp && t->buf && t->asm_buf);

	t->tap = tap_open(t);
	ASSERT_LE(0, t->tap) {
		TH_LOG("tap: %s", strerror(errno));
	}
	t->cap = packet_socket(t, true);
	t->inj = packet_socket(t, false);
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
	if (variant->mrg)
		want |= 1ULL << VIRTIO_NET_F_MRG_RXBUF;
	if (variant->event_idx)
		want |= 1ULL << VIRTIO_RING_F_EVENT_IDX;
	if (variant->indirect)
		want |= 1ULL << VIRTIO_RING_F_INDIRECT_DESC;
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

FIXTURE_TEARDOWN(sim)
{
	struct simnet *t = &self->t;

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
	if (added)
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
	struct sockaddr_ll sll;

	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_ifindex = t->ifindex;
	sll.sll_halen = 6;
	memcpy(sll.sll_addr, mac_guest, 6);

	while (rx->injected < rx->total &&
	       rx->injected - rx->received < rx->inflight) {
		struct fspec spec = frame_spec(rx->kind, rx->injected);
		ssize_t n;

		memset(t->pkt, 0, vhl);
		if (spec.tcp)
			gso_hdr((struct virtio_net_hdr *)t->pkt);
		build_frame(t->pkt + vhl, rx->injected, spec, true);
		sll.sll_protocol = htons(spec.tcp ? ETH_P_IP : ETHERTYPE_SIM);
		n = sendto(t->inj, t->pkt, vhl + spec.len, MSG_DONTWAIT,
			   (struct sockaddr *)&sll, sizeof(sll));
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
		return;
	}
	ASSERT_EQ(rx->received, seq) {
		TH_LOG("rx: expected frame %u, the guest got %u",
		       rx->received, seq);
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

	if (rx.total)
		rx_refill(_metadata, t);

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

/* 300 frames: the 256-entry ring wraps at least once. */
TEST_F_TIMEOUT(sim, tx_60, 240)
{
	start(_metadata, &self->t, 0, 0);
	run(_metadata, &self->t, (struct traffic){ K_SMALL, 300, 64 }, none);
	finish(_metadata, &self->t);
}

TEST_F_TIMEOUT(sim, tx_1514, 240)
{
	start(_metadata, &self->t, 0, 0);
	run(_metadata, &self->t, (struct traffic){ K_MTU, 300, 64 }, none);
	finish(_metadata, &self->t);
}

TEST_F_TIMEOUT(sim, tx_gso_64k, 240)
{
	start(_metadata, &self->t, 0, 0);
	run(_metadata, &self->t, (struct traffic){ K_GSO, 40, 16 }, none);
	finish(_metadata, &self->t);
}

TEST_F_TIMEOUT(sim, rx_60, 240)
{
	start(_metadata, &self->t, 0, 0);
	run(_metadata, &self->t, none, (struct traffic){ K_SMALL, 300, 64 });
	finish(_metadata, &self->t);
}

TEST_F_TIMEOUT(sim, rx_1514, 240)
{
	start(_metadata, &self->t, 0, 0);
	run(_metadata, &self->t, none, (struct traffic){ K_MTU, 300, 64 });
	finish(_metadata, &self->t);
}

TEST_F_TIMEOUT(sim, rx_gso_64k, 240)
{
	start(_metadata, &self->t, 0, 0);
	run(_metadata, &self->t, none, (struct traffic){ K_GSO, 40, 16 });
	finish(_metadata, &self->t);
}

/* Both directions at once, sizes from 60 B to 64 KiB GSO interleaved. */
TEST_F_TIMEOUT(sim, bidir_mixed, 240)
{
	start(_metadata, &self->t, 0, 0);
	run(_metadata, &self->t, (struct traffic){ K_MIXED, 400, 64 },
	    (struct traffic){ K_MIXED, 400, 64 });
	finish(_metadata, &self->t);
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

TEST_HARNESS_MAIN
