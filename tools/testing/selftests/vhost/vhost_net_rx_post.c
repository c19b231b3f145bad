// SPDX-License-Identifier: GPL-2.0
/*
 * Posted receive: vhost-net lending the guest's receive buffers to a
 * backend that receives in place (mpassthru, its NIC writing into them),
 * and taking every one of them back whenever that stops being right.
 *
 * The test is the guest: its rings and buffers in its own memory, a frame
 * of known content for each sequence number injected by the NIC on the
 * other side of the wire, and every frame checked byte by byte as it
 * arrives, never twice. Attaching or detaching the page constructor resets
 * the NIC's receive queue: QEMU's virtio-net drops what it had not yet
 * written, and a frame that went to host memory just before may be
 * delivered after one the NIC wrote in place just after. Each test bounds
 * such losses and overtakings by its own count of resets. What it changes
 * under the traffic: ring sizes down to one entry, dirty logging switched
 * on and off, the NIC's MTU, the memory table (with the old pages watched
 * for stale writes), the features, the backend (with RPS spreading the
 * NIC's frames over CPUs), a second device on the same file, a guest that
 * makes one buffer available twice, a last close by a process that is not
 * the owner (with its memory at the owner's ring addresses watched), an
 * oversized frame sent, a guest that stops posting for longer than the
 * peer's transmit watchdog waits, and a NIC driver whose queue reset
 * fails when the binding ends (fail_function).
 *
 * $MP_IF is a NIC it may bind (a virtio-net NIC on a QEMU hub), $MP_PEER
 * the other NIC of that hub.  Whether vhost_net posts at all
 * (vhost_net.zcopy_rx) is read from the module parameter: with it off,
 * the tests about posting skip and the others check the copy path.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <linux/sockios.h>

#include "virtio_sim.h"
#include "sim_net.h"
#include "../kselftest_harness.h"

#ifndef BIT_ULL
#define BIT_ULL(n)	(1ULL << (n))
#endif

#define MEM_SIZE	(8ULL << 20)	/* two regions of 4 MiB */
#define BUF_SIZE	2048
#define HDR_LEN		sizeof(struct virtio_net_hdr_mrg_rxbuf)
#define TX_NUM		64
#define WAIT_MS		20000
#define POISON		0xee
#define MAX_SEQ		4096	/* frames one test sends at most */
#define CANARY		0xa5
#define FEATURES	(BIT_ULL(VIRTIO_F_VERSION_1) | \
			 BIT_ULL(VIRTIO_NET_F_MRG_RXBUF))

struct rxp {
	struct sim s;
	int mp;			/* the bound mpassthru file */
	int peer;		/* AF_PACKET on the peer NIC */
	int peer_idx;
	const char *nic;
	bool zc;		/* vhost_net.zcopy_rx */
	unsigned int rx_num;
	uint64_t bufs;		/* gpa of the buffer of head 0 */
	uint32_t sent;		/* frames injected */
	uint32_t want;		/* next frame expected */
	unsigned long empty;	/* buffers given back unfilled */
	unsigned long foreign;	/* frames that were not the test's */
	unsigned long lost;	/* frames that never arrived */
	unsigned long late;	/* frames overtaken by a later one */
	bool seen[MAX_SEQ];	/* frames that arrived */
	unsigned int transitions;	/* NIC queue resets the test caused */
	uint8_t *log;		/* dirty bitmap, when logging */
	unsigned long logged;	/* frames whose pages were found logged */
	int mtu;		/* the NIC's MTU to put back, 0: untouched */
};

static const char *env_if(struct __test_metadata *_metadata, const char *name)
{
	const char *v = getenv(name);

	if (!v || !*v)
		SKIP(return NULL, "%s not set (the mpassthru VM suite sets it)",
		     name);
	return v;
}

static bool zcopy_rx_on(void)
{
	FILE *f = fopen("/sys/module/vhost_net/parameters/zcopy_rx", "r");
	int c = f ? fgetc(f) : 'N';

	if (f)
		fclose(f);
	return c == 'Y';
}

/* One counter of this process' vhost-net device, from debugfs; -1: none. */
static long long net_stat(const char *key)
{
	char pat[96], line[128], name[64];
	long long v = -1, x;
	glob_t g;
	FILE *f;

	snprintf(pat, sizeof(pat), "/sys/kernel/debug/vhost-mp/net-%d-*/stats",
		 getpid());
	if (glob(pat, 0, NULL, &g) || g.gl_pathc != 1) {
		globfree(&g);
		return -1;
	}
	f = fopen(g.gl_pathv[0], "r");
	globfree(&g);
	while (f && v < 0 && fgets(line, sizeof(line), f))
		if (sscanf(line, "%63s %lld", name, &x) == 2 &&
		    !strcmp(name, key))
			v = x;
	if (f)
		fclose(f);
	return v;
}

static long long mp_stat(struct rxp *t, const char *key)
{
	return mpt_dbg_field(t->nic, key);
}

/* The number a sysfs or debugfs file holds; -1: none. */
static long long file_number(const char *path)
{
	long long v = -1;
	FILE *f = fopen(path, "r");

	if (f) {
		if (fscanf(f, "%lld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

/* Write @v whole into a sysfs or debugfs file: 0, or -1. */
static int write_str(const char *path, const char *v)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n = -1;

	if (fd >= 0) {
		n = write(fd, v, strlen(v));
		close(fd);
	}
	return n == (ssize_t)strlen(v) ? 0 : -1;
}

/* A module-wide mpassthru counter (a debugfs file of its own); -1: none. */
static long long mp_total(const char *name)
{
	char path[96];

	snprintf(path, sizeof(path), "/sys/kernel/debug/mpassthru/%s", name);
	return file_number(path);
}

/* Frames the NIC's own driver counted received: not our code's count. */
static long long nic_rx_packets(const char *ifname)
{
	char path[96];

	snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/rx_packets",
		 ifname);
	return file_number(path);
}

static unsigned long long mp_zcopy_bytes(struct rxp *t)
{
	struct mpassthru_info info;

	return mpt_info(t->mp, &info) ? 0 : info.stats.rx_zcopy_bytes;
}

static int set_mtu(const char *ifname, int mtu)
{
	struct ifreq ifr = { .ifr_mtu = mtu };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), r;

	if (fd < 0)
		return -1;
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	r = ioctl(fd, SIOCSIFMTU, &ifr);
	close(fd);
	return r;
}

static uint8_t *buf_of(struct rxp *t, unsigned int head)
{
	return sim_ptr(&t->s, t->bufs + (uint64_t)head * BUF_SIZE, BUF_SIZE);
}

/* Every free descriptor gets its buffer back, poisoned, and is published. */
static void refill(struct rxp *t)
{
	struct sim_vq *vq = &t->s.vq[SIM_RX_VQ];

	while (vq->num_free) {
		struct sim_sg sg = {
			.gpa = t->bufs + (uint64_t)vq->free_head * BUF_SIZE,
			.len = BUF_SIZE,
		};

		memset(buf_of(t, vq->free_head), POISON, BUF_SIZE);
		sim_post_rx(&t->s, &sg, 1, false, vq->free_head);
	}
	sim_kick(vq);
}

static bool page_logged(struct rxp *t, uint64_t gpa)
{
	uint64_t pfn = gpa / SIM_PAGE;

	return t->log[pfn / 8] & (1U << (pfn % 8));
}

/* With logging on, the pages a frame was written to are in the log. */
static bool frame_logged(struct rxp *t, unsigned int head, uint32_t len)
{
	uint64_t gpa = t->bufs + (uint64_t)head * BUF_SIZE, end = gpa + len;

	for (; gpa < end; gpa = (gpa & ~(SIM_PAGE - 1)) + SIM_PAGE)
		if (!page_logged(t, gpa))
			return false;
	return true;
}

/* Take every used entry: each the next frame, intact, or an empty buffer. */
static void harvest(struct __test_metadata *_metadata, struct rxp *t)
{
	struct sim_vq *vq = &t->s.vq[SIM_RX_VQ];
	struct virtio_net_hdr_mrg_rxbuf *h;
	size_t want_len;
	uintptr_t token;
	uint32_t len;
	uint8_t *b;
	long seq;
	int head;

	while ((head = sim_get_used(vq, &len, &token)) != -EAGAIN) {
		ASSERT_LE(0, head) {
			TH_LOG("used entry %u names a buffer the guest did not post",
			       (uint16_t)(vq->last_used - 1));
		}
		if (!len) {
			t->empty++;
			continue;
		}
		b = buf_of(t, head);
		ASSERT_LE(HDR_LEN, len);
		seq = mpt_seq(b + HDR_LEN, len - HDR_LEN);
		/* Not a test frame (nothing else should be on this wire). */
		if (seq < 0) {
			t->foreign++;
			continue;
		}
		ASSERT_GT(MAX_SEQ, seq);
		ASSERT_FALSE(t->seen[seq]) {
			TH_LOG("frame %ld arrived twice", seq);
		}
		t->seen[seq] = true;
		if (seq < t->want) {
			/* Overtaken at a queue reset: it was counted lost. */
			t->lost--;
			t->late++;
			if (t->late <= 3)
				TH_LOG("frame %ld arrived after frame %u",
				       seq, t->want - 1);
			ASSERT_TRUE(mpt_check(b + HDR_LEN, len - HDR_LEN, seq,
					      mpt_frame_len(seq), mpt_mac_guest,
					      mpt_mac_peer));
			continue;
		}
		t->lost += seq - t->want;
		t->want = seq;
		h = (void *)b;
		want_len = mpt_frame_len(t->want);
		ASSERT_EQ(1, le16toh(h->num_buffers));
		ASSERT_TRUE(mpt_check(b + HDR_LEN, len - HDR_LEN, t->want,
				      want_len, mpt_mac_guest, mpt_mac_peer)) {
			TH_LOG("frame %u (%zu B): %u B arrived in buffer %d, carrying frame %ld",
			       t->want, want_len, len - (uint32_t)HDR_LEN, head,
			       mpt_seq(b + HDR_LEN, len - HDR_LEN));
		}
		if (t->log) {
			ASSERT_TRUE(frame_logged(t, head, len)) {
				TH_LOG("frame %u written at %#llx, not logged",
				       t->want, (unsigned long long)(t->bufs +
				       (uint64_t)head * BUF_SIZE));
			}
			t->logged++;
		}
		t->want++;
	}
}

static void inject(struct __test_metadata *_metadata, struct rxp *t)
{
	size_t len = mpt_frame_len(t->sent);

	ASSERT_EQ((ssize_t)len, mpt_inject(t->peer, t->peer_idx, t->sent, len)) {
		TH_LOG("frame %u not sent: %s", t->sent, strerror(errno));
	}
	t->sent++;
}

/*
 * Frames in flight at most.  A ring that posts lends the NIC all but the
 * four buffers mpassthru keeps for frames in host memory: stay well
 * within that, so the NIC never runs dry while the worker refills it (a
 * QEMU hub in front of a NIC without buffers may drop a frame).  A ring
 * that copies holds what it holds; the rest waits in mpassthru's queue.
 */
static unsigned int flow_window(const struct rxp *t)
{
	unsigned int w = t->rx_num > 8 ? (t->rx_num - 4) / 2 : t->rx_num;

	return w < 32 ? w : 32;
}

/*
 * @n more frames from the peer, at most a ring's worth ahead of what the
 * guest has, until every one arrived; fails on a virtqueue error, a frame
 * out of place, or 20 s without progress.
 */
static void flow(struct __test_metadata *_metadata, struct rxp *t,
		 unsigned int n)
{
	struct sim_vq *vq = &t->s.vq[SIM_RX_VQ];
	unsigned int window = flow_window(t);
	uint32_t end = t->sent + n, seen;
	uint64_t deadline = sim_now_ms() + WAIT_MS;
	unsigned int extra = 0;
	int r;

	while (t->want < end) {
		while (t->sent < end && t->sent - t->want < window)
			inject(_metadata, t);
		/*
		 * All sent, nothing for a while: the last ones may have been
		 * lost at a queue reset.  One more frame tells that from a
		 * stall, which delivers nothing at all.
		 */
		if (t->sent == end && sim_now_ms() + WAIT_MS - deadline > 2000 &&
		    extra < 8) {
			end++;
			extra++;
			continue;
		}
		r = sim_wait_used(vq, 100);
		ASSERT_NE(-EIO, r) {
			TH_LOG("virtqueue error at frame %u", t->want);
		}
		seen = t->want;
		harvest(_metadata, t);
		refill(t);
		if (t->want != seen)
			deadline = sim_now_ms() + WAIT_MS;
		ASSERT_GT(deadline, sim_now_ms()) {
			TH_LOG("stuck at frame %u of %u (%u sent, %lu empty, posting %lld)",
			       t->want, end, t->sent, t->empty,
			       net_stat("rx_posting"));
		}
	}
}

/* The device with an RX ring of @rx_num entries, on the bound NIC. */
static void start(struct __test_metadata *_metadata, struct rxp *t,
		  unsigned int rx_num)
{
	sim_init(&t->s);
	t->rx_num = rx_num;
	ASSERT_EQ(0, sim_mem_init(&t->s, MEM_SIZE, 2));
	ASSERT_EQ(0, sim_open(&t->s, "/dev/vhost-net"));
	ASSERT_EQ(0, sim_negotiate(&t->s, FEATURES));
	ASSERT_EQ(0, sim_set_mem_table(&t->s));
	ASSERT_EQ(0, sim_vq_init(&t->s, SIM_RX_VQ, rx_num, 0));
	ASSERT_EQ(0, sim_vq_init(&t->s, SIM_TX_VQ, TX_NUM, 0));
	/* Rings in region 0, receive buffers alone in region 1. */
	t->bufs = t->s.region[1].gpa;
	ASSERT_GE(t->s.region[1].gpa, t->s.brk);
	refill(t);
	ASSERT_EQ(0, sim_set_backend(&t->s, t->mp));
	/* The first post attaches the constructor: a NIC queue reset. */
	t->transitions++;
}

/* Posting is on (when vhost_net posts at all) and the NIC writes in place. */
static void expect_posting(struct __test_metadata *_metadata, struct rxp *t,
			   unsigned long long zc_before)
{
	if (!t->zc)
		return;
	EXPECT_EQ(1, net_stat("rx_posting"));
	EXPECT_LT(zc_before, mp_zcopy_bytes(t));
}

/* Nothing posted: no buffer with mpassthru, none lent to the NIC. */
static void expect_nothing_out(struct __test_metadata *_metadata,
			       struct rxp *t)
{
	EXPECT_EQ(0, net_stat("rx_posting"));
	EXPECT_EQ(0, net_stat("rx_post_inflight"));
	EXPECT_EQ(0, mp_stat(t, "rx_posted"));
	EXPECT_EQ(0, mp_stat(t, "rx_lent"));
}

FIXTURE(rxp) {
	struct rxp t;
};

FIXTURE_SETUP(rxp)
{
	struct rxp *t = &self->t;
	const char *peer;

	memset(t, 0, sizeof(*t));
	sim_init(&t->s);
	t->mp = -1;
	t->peer = -1;
	t->nic = env_if(_metadata, "MP_IF");
	peer = env_if(_metadata, "MP_PEER");
	if (!t->nic || !peer)
		return;
	t->zc = zcopy_rx_on();
	t->mp = simnet_mpassthru_open(t->nic, &(int){ 0 });
	ASSERT_LE(0, t->mp) {
		TH_LOG("bind %s: %s", t->nic, strerror(errno));
	}
	ASSERT_EQ(0, simnet_if_up(peer, &t->peer_idx));
	t->peer = mpt_peer_socket(t->peer_idx);
	ASSERT_LE(0, t->peer);
}

/* After every test: no guest page pinned, no buffer lent, by anyone. */
FIXTURE_TEARDOWN(rxp)
{
	struct rxp *t = &self->t;

	if (t->lost || t->late || t->transitions)
		TH_LOG("%lu frames lost, %lu overtaken, over %u NIC queue resets",
		       t->lost, t->late, t->transitions);
	EXPECT_GE(t->transitions * flow_window(t), t->lost);
	EXPECT_GE(t->transitions * flow_window(t), t->late);
	sim_close(&t->s);
	if (t->mtu)
		set_mtu(t->nic, t->mtu);
	if (t->mp >= 0) {
		EXPECT_EQ(0, mp_stat(t, "rx_posted"));
		EXPECT_EQ(0, mp_stat(t, "rx_lent"));
		EXPECT_EQ(0, mp_stat(t, "pinned_pages"));
		close(t->mp);
	}
	if (t->peer >= 0)
		close(t->peer);
	if (t->log)
		munmap(t->log, (MEM_SIZE + SIM_GPA_BASE) / SIM_PAGE / 8 + 1);
}

/*
 * Rings of every size up to past mpassthru's reserve: the smallest
 * receive by copy (posting would leave the NIC nothing to receive into),
 * the larger post; frames of every length arrive intact either way, and
 * no entry is lost or doubled when more buffers come back than the ring
 * holds at once.  A size that is not a power of two is refused.
 */
TEST_F_TIMEOUT(rxp, small_rings, 300)
{
	static const unsigned int sizes[] = { 1, 2, 4, 8, 16, 32 };
	struct rxp *t = &self->t;
	struct vhost_vring_state st = { .index = SIM_RX_VQ, .num = 31 };
	unsigned long long zc0;
	unsigned int i;

	if (t->mp < 0)
		return;
	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		t->sent = 0;
		t->want = 0;
		memset(t->seen, 0, sizeof(t->seen));
		zc0 = mp_zcopy_bytes(t);
		start(_metadata, t, sizes[i]);
		flow(_metadata, t, 150);
		TH_LOG("ring %u: %u frames, posting %lld, %llu B zero-copy, %lu empty",
		       sizes[i], t->want, net_stat("rx_posting"),
		       mp_zcopy_bytes(t) - zc0, t->empty);
		if (sizes[i] <= 8 || !t->zc) {
			EXPECT_EQ(0, net_stat("rx_posting"));
			EXPECT_EQ(zc0, mp_zcopy_bytes(t));
		} else {
			expect_posting(_metadata, t, zc0);
		}
		sim_close(&t->s);
		EXPECT_EQ(0, mp_stat(t, "rx_posted"));
		EXPECT_EQ(0, mp_stat(t, "rx_lent"));
	}
	ASSERT_EQ(0, sim_mem_init(&t->s, MEM_SIZE, 1));
	ASSERT_EQ(0, sim_open(&t->s, "/dev/vhost-net"));
	EXPECT_EQ(-EINVAL, sim_ioctl(&t->s, VHOST_SET_VRING_NUM, &st));
}

static void set_features(struct __test_metadata *_metadata, struct rxp *t,
			 uint64_t features)
{
	ASSERT_EQ(0, sim_ioctl(&t->s, VHOST_SET_FEATURES, &features));
	t->s.features = features;
}

/*
 * Migration: QEMU turns LOG_ALL on mid-stream.  Posting ends at once,
 * every buffer back, and traffic goes on by copy with each frame's pages
 * in the log; with LOG_ALL off again, posting comes back.
 */
TEST_F_TIMEOUT(rxp, log_all_mid_stream, 240)
{
	size_t log_len = (MEM_SIZE + SIM_GPA_BASE) / SIM_PAGE / 8 + 1;
	struct rxp *t = &self->t;
	unsigned long long zc0, zc1;
	long long stops;
	uint64_t base;
	int fd;

	if (t->mp < 0)
		return;
	if (!t->zc)
		SKIP(return, "vhost_net.zcopy_rx=0: nothing is posted");
	start(_metadata, t, 256);
	zc0 = mp_zcopy_bytes(t);
	flow(_metadata, t, 200);
	expect_posting(_metadata, t, zc0);
	stops = net_stat("rx_post_stops");

	t->log = mmap(NULL, log_len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, t->log);
	base = (uintptr_t)t->log;
	fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, sim_ioctl(&t->s, VHOST_SET_LOG_BASE, &base));
	ASSERT_EQ(0, sim_ioctl(&t->s, VHOST_SET_LOG_FD, &fd));
	set_features(_metadata, t, FEATURES | BIT_ULL(VHOST_F_LOG_ALL));
	t->transitions += 2;	/* the detach now, the attach at the end */
	/* Synchronously: by the time the ioctl returns, all is back. */
	expect_nothing_out(_metadata, t);
	EXPECT_EQ(stops + 1, net_stat("rx_post_stops"));
	EXPECT_EQ(0, net_stat("rx_post_lost"));

	zc1 = mp_zcopy_bytes(t);
	flow(_metadata, t, 200);
	EXPECT_EQ(zc1, mp_zcopy_bytes(t));
	EXPECT_LE(200UL, t->logged);
	expect_nothing_out(_metadata, t);

	t->log = NULL;
	set_features(_metadata, t, FEATURES);
	munmap((void *)(uintptr_t)base, log_len);
	close(fd);
	flow(_metadata, t, 200);
	expect_posting(_metadata, t, zc1);
}

/*
 * The host raises the NIC's MTU mid-stream: the guest's buffers no longer
 * hold every frame the NIC may receive, so posting ends, by itself, and
 * traffic goes on by copy.
 */
TEST_F_TIMEOUT(rxp, mtu_raised_mid_stream, 240)
{
	struct rxp *t = &self->t;
	unsigned long long zc0;

	if (t->mp < 0)
		return;
	if (!t->zc)
		SKIP(return, "vhost_net.zcopy_rx=0: nothing is posted");
	start(_metadata, t, 256);
	zc0 = mp_zcopy_bytes(t);
	flow(_metadata, t, 200);
	expect_posting(_metadata, t, zc0);
	t->mtu = 1500;
	t->transitions++;	/* the detach when posting ends */
	ASSERT_EQ(0, set_mtu(t->nic, 9000)) {
		TH_LOG("MTU 9000 on %s: %s", t->nic, strerror(errno));
	}
	flow(_metadata, t, 300);
	EXPECT_EQ(1, net_stat("rx_copy_only"));
	EXPECT_LE(1, net_stat("rx_post_refused"));
	expect_nothing_out(_metadata, t);
}

/*
 * QEMU moves guest memory: region 1, which holds every receive buffer,
 * gets new host pages.  Posted buffers were pinned in the old ones; they
 * all come back first, the NIC never writes the old pages again (they
 * are watched), and posting resumes in the new ones.
 */
TEST_F_TIMEOUT(rxp, mem_table_moved, 240)
{
	struct rxp *t = &self->t;
	struct sim_region *r = &t->s.region[1];
	unsigned long long zc0;
	uint8_t *old, *moved;
	uint64_t i;

	if (t->mp < 0)
		return;
	start(_metadata, t, 256);
	zc0 = mp_zcopy_bytes(t);
	flow(_metadata, t, 200);
	expect_posting(_metadata, t, zc0);

	moved = mmap(NULL, r->size, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, moved);
	memcpy(moved, r->hva, r->size);
	old = r->hva;
	r->hva = moved;
	ASSERT_EQ(0, sim_set_mem_table(&t->s));
	t->transitions += 2;
	memset(old, CANARY, r->size);
	zc0 = mp_zcopy_bytes(t);
	flow(_metadata, t, 300);
	expect_posting(_metadata, t, zc0);
	for (i = 0; i < r->size && old[i] == CANARY; i++)
		;
	EXPECT_EQ(r->size, i) {
		TH_LOG("old page at offset %#llx written after the move",
		       (unsigned long long)i);
	}
	munmap(old, r->size);
}

/* SET_FEATURES with the same features: posting pauses and resumes. */
TEST_F_TIMEOUT(rxp, features_set_again, 240)
{
	struct rxp *t = &self->t;
	unsigned long long zc0;
	long long stops;

	if (t->mp < 0)
		return;
	start(_metadata, t, 256);
	flow(_metadata, t, 100);
	stops = net_stat("rx_post_stops");
	set_features(_metadata, t, FEATURES);
	t->transitions += 2;
	if (t->zc)
		EXPECT_EQ(stops + 1, net_stat("rx_post_stops"));
	zc0 = mp_zcopy_bytes(t);
	flow(_metadata, t, 200);
	expect_posting(_metadata, t, zc0);
}

/*
 * One mpassthru file, two vhost devices: the second RX ring is refused
 * (EBUSY) while the first holds the file's posted receive, its TX ring is
 * not, and once the first lets go the second may take it.
 */
TEST_F_TIMEOUT(rxp, two_devices_one_file, 120)
{
	struct vhost_vring_file rx = { .index = SIM_RX_VQ, .fd = -1 };
	struct vhost_vring_file tx = { .index = SIM_TX_VQ, .fd = -1 };
	struct rxp *t = &self->t;
	struct sim other;
	int r;

	if (t->mp < 0)
		return;
	start(_metadata, t, 256);
	sim_init(&other);
	ASSERT_EQ(0, sim_mem_init(&other, MEM_SIZE, 1));
	ASSERT_EQ(0, sim_open(&other, "/dev/vhost-net"));
	ASSERT_EQ(0, sim_negotiate(&other, FEATURES));
	ASSERT_EQ(0, sim_set_mem_table(&other));
	ASSERT_EQ(0, sim_vq_init(&other, SIM_RX_VQ, 256, 0));
	ASSERT_EQ(0, sim_vq_init(&other, SIM_TX_VQ, TX_NUM, 0));
	rx.fd = t->mp;
	tx.fd = t->mp;
	r = sim_ioctl(&other, VHOST_NET_SET_BACKEND, &rx);
	EXPECT_EQ(t->zc ? -EBUSY : 0, r);
	EXPECT_EQ(0, sim_ioctl(&other, VHOST_NET_SET_BACKEND, &tx));
	/* The first device keeps receiving all the while. */
	flow(_metadata, t, 100);
	rx.fd = -1;
	ASSERT_EQ(0, sim_ioctl(&t->s, VHOST_NET_SET_BACKEND, &rx));
	t->transitions++;
	rx.fd = t->mp;
	EXPECT_EQ(0, sim_ioctl(&other, VHOST_NET_SET_BACKEND, &rx));
	sim_close(&other);
}

/*
 * A guest makes the same buffer available twice while the device holds
 * it: a clean virtqueue error, not a second post (and no kernel warning:
 * the runner checks the log).
 */
TEST_F_TIMEOUT(rxp, republished_head, 120)
{
	struct rxp *t = &self->t;
	struct sim_vq *vq;
	unsigned long long zc0;

	if (t->mp < 0)
		return;
	if (!t->zc)
		SKIP(return, "vhost_net.zcopy_rx=0: nothing is posted");
	start(_metadata, t, 256);
	vq = &t->s.vq[SIM_RX_VQ];
	zc0 = mp_zcopy_bytes(t);
	flow(_metadata, t, 50);
	expect_posting(_metadata, t, zc0);
	/* Head 0 is posted (all are): make it available once more. */
	ASSERT_EQ(0, vq->num_free);
	sim_avail_push(vq, 0);
	vq->always_kick = true;
	sim_kick(vq);
	EXPECT_EQ(0, sim_wait_error(vq, WAIT_MS));
}

/*
 * A frame larger than the NIC's MTU from the guest is dropped and
 * counted, and its buffer still goes back; frames within it pass.
 */
TEST_F_TIMEOUT(rxp, oversized_tx, 120)
{
	struct rxp *t = &self->t;
	struct sim_vq *vq;
	struct mpassthru_info a, b;
	static const size_t lens[] = { 1514, 1600, 3000, 1514 };
	uint8_t f[3000 + HDR_LEN];
	struct sim_sg sg;
	uintptr_t token;
	uint32_t len;
	unsigned int i, got = 0;
	uint8_t rbuf[4096];
	ssize_t n;

	if (t->mp < 0)
		return;
	start(_metadata, t, 256);
	vq = &t->s.vq[SIM_TX_VQ];
	ASSERT_EQ(0, mpt_info(t->mp, &a));
	for (i = 0; i < ARRAY_SIZE(lens); i++) {
		sg.gpa = t->s.region[1].gpa + 2 * 1024 * 1024 + i * 4096;
		sg.len = HDR_LEN + lens[i];
		memset(f, 0, HDR_LEN);
		mpt_build(f + HDR_LEN, lens[i], 1000 + i, mpt_mac_peer,
			  mpt_mac_guest);
		sim_write(&t->s, sg.gpa, f, sg.len);
		ASSERT_LE(0, sim_add_tx(&t->s, &sg, 1, false, i));
	}
	sim_kick(vq);
	while (got < ARRAY_SIZE(lens) && !sim_wait_used(vq, WAIT_MS))
		while (sim_get_used(vq, &len, &token) >= 0)
			got++;
	EXPECT_EQ(ARRAY_SIZE(lens), got);
	/* The peer sees the two that fit the MTU of 1500, and only those. */
	got = 0;
	while (mpt_wait_in(t->peer, 2000)) {
		n = recv(t->peer, rbuf, sizeof(rbuf), 0);
		if (n > 0 && mpt_seq(rbuf, n) >= 1000) {
			EXPECT_EQ(1514, n);
			got++;
		}
	}
	EXPECT_EQ(2U, got);
	ASSERT_EQ(0, mpt_info(t->mp, &b));
	EXPECT_EQ(2ULL, b.stats.tx_dropped - a.stats.tx_dropped);
	EXPECT_EQ(2ULL, b.stats.tx_packets - a.stats.tx_packets);
}

/*
 * The backend detached and attached again and again under traffic, with
 * RPS handing the NIC's frames to other CPUs: every used entry names a
 * buffer the guest has out (no stale one from an earlier attach), every
 * frame arrives intact, and what is lost to the guest is counted.
 */
TEST_F_TIMEOUT(rxp, backend_cycles_rps, 300)
{
	struct vhost_vring_file f = { .index = SIM_RX_VQ };
	struct rxp *t = &self->t;
	char path[96];
	unsigned int round;
	bool rps;

	if (t->mp < 0)
		return;
	snprintf(path, sizeof(path), "/sys/class/net/%s/queues/rx-0/rps_cpus",
		 t->nic);
	rps = !access(path, W_OK);
	if (!rps)
		TH_LOG("%s: %s: cycles without RPS", path, strerror(errno));
	else
		EXPECT_EQ(0, write_str(path, "3"));
	start(_metadata, t, 256);
	for (round = 0; round < 10; round++) {
		flow(_metadata, t, 60);
		f.fd = -1;
		ASSERT_EQ(0, sim_ioctl(&t->s, VHOST_NET_SET_BACKEND, &f));
		t->transitions += 2;
		expect_nothing_out(_metadata, t);
		/* Frames that come meanwhile wait for the copy or the guest. */
		inject(_metadata, t);
		f.fd = t->mp;
		ASSERT_EQ(0, sim_ioctl(&t->s, VHOST_NET_SET_BACKEND, &f));
	}
	flow(_metadata, t, 60);
	TH_LOG("%u frames over 10 attaches, %lu buffers back empty, %lld never back",
	       t->want, t->empty, net_stat("rx_post_lost"));
	if (rps)
		EXPECT_EQ(0, write_str(path, "0"));
}

/* The host reserve of a ring the guest left dry (mpassthru.rst). */
#define MP_HOST_BUFS	64

/* Wait until the NIC's driver counted @want frames received, or fail. */
static void nic_received(struct __test_metadata *_metadata, struct rxp *t,
			 long long want)
{
	uint64_t end = sim_now_ms() + WAIT_MS;
	long long rx;

	while ((rx = nic_rx_packets(t->nic)) < want && sim_now_ms() < end)
		usleep(50 * 1000);
	ASSERT_LE(want, rx) {
		TH_LOG("the NIC's driver counts %lld frames received, want %lld: stalled",
		       rx, want);
	}
}

/*
 * The guest stops giving the ring buffers while the peer goes on
 * sending, for longer than a transmit watchdog waits (5 s): the NIC
 * must go on receiving all the same.  A NIC that cannot receive stalls
 * its peer on a QEMU hub (a NETDEV WATCHDOG on the peer, which fails the
 * run), as a flow-controlled switch port would.  What arrives meanwhile
 * waits for the guest, and reaches it intact, every frame once, once it
 * posts again; then the NIC writes into guest buffers again.
 */
TEST_F_TIMEOUT(rxp, guest_stops_posting, 120)
{
	const unsigned int ring = 64, burst = 5 * ring, paced = 300;
	struct rxp *t = &self->t;
	long long rx0, host0 = 0;
	unsigned long lost0;
	unsigned long late0;
	unsigned long long zc0;
	uint64_t start_ms;
	unsigned int i;

	if (t->mp < 0)
		return;
	start(_metadata, t, ring);
	flow(_metadata, t, 100);
	if (t->zc)
		host0 = mp_stat(t, "rx_host_frames");
	rx0 = nic_rx_packets(t->nic);
	ASSERT_LE(0, rx0);
	/* The constructor's attach may have cost a frame or two; not since. */
	lost0 = t->lost;
	late0 = t->late;
	/* The guest takes nothing and posts nothing from here on. */
	start_ms = sim_now_ms();
	for (i = 0; i < burst; i++)
		inject(_metadata, t);
	nic_received(_metadata, t, rx0 + burst);
	TH_LOG("the NIC received a burst of %u frames in %llu ms with the guest's buffers gone",
	       burst, (unsigned long long)(sim_now_ms() - start_ms));
	/* Beyond the ring's buffers, every one landed in a host buffer. */
	if (t->zc)
		EXPECT_LE(host0 + burst - ring,
			  mp_stat(t, "rx_host_frames"));
	/* Past a transmit watchdog's 5 s, one frame every 20 ms. */
	for (i = 0; i < paced; i++) {
		inject(_metadata, t);
		usleep(20 * 1000);
	}
	nic_received(_metadata, t, rx0 + burst + paced);
	TH_LOG("%u frames in %llu ms without a post, %lld in host buffers, %lld posting stops",
	       burst + paced, (unsigned long long)(sim_now_ms() - start_ms),
	       t->zc ? mp_stat(t, "rx_host_frames") - host0 : 0,
	       net_stat("rx_post_stops"));
	/* The guest posts again: everything, intact. */
	zc0 = mp_zcopy_bytes(t);
	flow(_metadata, t, 0);
	TH_LOG("all %u frames back, %lu overtaken, %lld posting stops",
	       t->want, t->late - late0, net_stat("rx_post_stops"));
	EXPECT_EQ(lost0, t->lost);
	/*
	 * The ring ran dry before the reserve came, and again each time the
	 * NIC filled all of it before the next poll.  QEMU's hub queues what
	 * a NIC cannot take, then may hand it the next frame before the
	 * queued ones: count each spell like a queue reset.
	 */
	if (t->zc)
		t->transitions += 1 + (mp_stat(t, "rx_host_frames") - host0) /
				      MP_HOST_BUFS;
	flow(_metadata, t, 100);
	expect_posting(_metadata, t, zc0);
}

/* Nothing lent or pinned anywhere, and no buffer of vhost-net's out. */
static bool all_back(void)
{
	return !mp_total("lent_buffers") && !mp_total("pinned_pages") &&
	       !net_stat("rx_post_inflight");
}

/*
 * The binding ends (MPASSTHRU_UNBIND, the teardown that ip link del, a
 * move to another netns and a driver unbind share) while the NIC holds
 * lent guest buffers: by the time the unbind returns the NIC has given
 * every one back and none is pinned, and vhost-net gets back every buffer
 * it posted.  Bound again, the same ring receives again, posting.
 */
TEST_F_TIMEOUT(rxp, unbind_while_lent, 120)
{
	int hdr_sz = SIMNET_HDR_LEN;
	struct rxp *t = &self->t;
	uint64_t deadline;

	if (t->mp < 0)
		return;
	start(_metadata, t, 256);
	flow(_metadata, t, 60);
	if (t->zc) {
		EXPECT_LT(0, mp_stat(t, "rx_lent"));
		EXPECT_LT(0, mp_total("pinned_pages"));
	}
	ASSERT_EQ(0, ioctl(t->mp, MPASSTHRU_UNBIND));
	t->transitions++;
	EXPECT_EQ(0, mp_total("lent_buffers"));
	EXPECT_EQ(0, mp_total("pinned_pages"));
	/* The worker collects what came back; a kick makes sure it runs. */
	deadline = sim_now_ms() + WAIT_MS;
	while (!all_back() && sim_now_ms() < deadline) {
		sim_kick(&t->s.vq[SIM_RX_VQ]);
		usleep(100 * 1000);
	}
	EXPECT_TRUE(all_back()) {
		TH_LOG("after unbind: %lld lent, %lld pages pinned, %lld posted buffers out",
		       mp_total("lent_buffers"), mp_total("pinned_pages"),
		       net_stat("rx_post_inflight"));
	}
	ASSERT_EQ(0, mpt_bind(t->mp, t->nic, MPASSTHRU_F_VNET_HDR));
	ASSERT_EQ(0, ioctl(t->mp, TUNSETVNETHDRSZ, &hdr_sz));
	ASSERT_EQ(0, ioctl(t->mp, TUNSETOFFLOAD, SIMNET_OFFLOADS));
	t->transitions++;
	sim_kick(&t->s.vq[SIM_RX_VQ]);
	flow(_metadata, t, 60);
	/* The statistics start again with the binding. */
	expect_posting(_metadata, t, 0);
}

/* ---- a NIC driver that cannot take its buffers back ---------------------- */

#define FAIL_FN		"/sys/kernel/debug/fail_function"
/* virtio_net's reset of a receive queue, apart for error injection (0002) */
#define RESET_FN	"virtnet_rq_reset_bufs"

/* The next receive-queue reset of virtio_net fails, once, silently. */
static int fail_next_reset(void)
{
	static const char *const attr[][2] = {
		{ "probability", "100" }, { "interval", "1" },
		{ "times", "1" }, { "space", "0" }, { "verbose", "0" },
	};
	char path[128];
	unsigned int i;

	if (write_str(FAIL_FN "/inject", RESET_FN))
		return -1;
	for (i = 0; i < ARRAY_SIZE(attr); i++) {
		snprintf(path, sizeof(path), FAIL_FN "/%s", attr[i][0]);
		if (write_str(path, attr[i][1]))
			return -1;
	}
	return 0;
}

static int set_promisc(const char *ifname, bool on)
{
	struct ifreq ifr = { 0 };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), r = -1;

	if (fd < 0)
		return -1;
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	if (!ioctl(fd, SIOCGIFFLAGS, &ifr)) {
		ifr.ifr_flags = on ? ifr.ifr_flags | IFF_PROMISC :
				     ifr.ifr_flags & ~IFF_PROMISC;
		r = ioctl(fd, SIOCSIFFLAGS, &ifr);
	}
	close(fd);
	return r;
}

/*
 * One frame at a time into the ring's kept buffers, each going up the
 * host's stack (the NIC is promiscuous for it) and freed there, until
 * none is lent: never one more, which would wait at the hub for the next
 * session.  No frame of these may reach a guest.
 */
static void consume_kept(struct __test_metadata *_metadata, struct rxp *t,
			 long long kept)
{
	uint64_t end = sim_now_ms() + 3 * WAIT_MS;
	long long lent, rx, frames = 0;

	ASSERT_EQ(0, set_promisc(t->nic, true));
	/* A few more than were kept, should some have been in the stack. */
	while ((lent = mp_total("lent_buffers")) > 0 && sim_now_ms() < end &&
	       t->sent < MAX_SEQ && frames++ < kept + 8) {
		rx = nic_rx_packets(t->nic);
		t->seen[t->sent] = true;
		inject(_metadata, t);
		nic_received(_metadata, t, rx + 1);
		while (mp_total("lent_buffers") >= lent && sim_now_ms() < end)
			usleep(2 * 1000);
	}
	set_promisc(t->nic, false);
	t->want = t->sent;
	EXPECT_EQ(0, lent) {
		TH_LOG("%lld buffers still lent after %lld frames", lent,
		       frames);
	}
}

/*
 * Detaching the constructor resets each receive queue of the NIC; here
 * that reset fails (fail_function on virtio_net's).  The unbind still
 * ends the binding, and the ring keeps the buffers it held, pinned, lent
 * and reported nowhere; the driver takes no new one.  Closing the files
 * leaves those buffers holding what they need: frames then use every one
 * of them and free them without touching freed memory (KASAN would fail
 * the run; the old driver called into the freed file on its next refill).
 * Bound again, the attach's reset takes the ring back and the NIC
 * receives into guest buffers as before.
 */
TEST_F_TIMEOUT(rxp, detach_fails, 240)
{
	long long failures, kept;
	struct rxp *t = &self->t;
	uint64_t deadline;

	if (t->mp < 0)
		return;
	if (!t->zc)
		SKIP(return, "vhost_net.zcopy_rx is off: nothing is lent");
	start(_metadata, t, 256);
	flow(_metadata, t, 60);
	EXPECT_LT(0, mp_stat(t, "rx_lent"));
	failures = mp_total("detach_failures");
	ASSERT_EQ(0, fail_next_reset()) {
		TH_LOG("%s/inject: %s (the test kernel has CONFIG_FAIL_FUNCTION)",
		       FAIL_FN, strerror(errno));
	}
	EXPECT_EQ(0, ioctl(t->mp, MPASSTHRU_UNBIND));
	write_str(FAIL_FN "/inject", "\n");
	t->transitions++;
	EXPECT_EQ(failures + 1, mp_total("detach_failures"));
	kept = mp_total("lent_buffers");
	EXPECT_LT(0, kept);
	EXPECT_LT(0, mp_total("pinned_pages"));
	TH_LOG("the failed reset kept %lld buffers in the ring", kept);

	sim_close(&t->s);
	close(t->mp);
	t->mp = -1;
	consume_kept(_metadata, t, kept);
	/* The last buffer was the file's last reference: it is gone. */
	deadline = sim_now_ms() + WAIT_MS;
	while (mp_total("pinned_pages") && sim_now_ms() < deadline)
		usleep(50 * 1000);
	EXPECT_EQ(0, mp_total("pinned_pages"));

	t->mp = simnet_mpassthru_open(t->nic, &(int){ 0 });
	ASSERT_LE(0, t->mp);
	start(_metadata, t, 256);
	flow(_metadata, t, 60);
	expect_posting(_metadata, t, 0);
}

/* ---- the last close, by a process that is not the owner ---------------- */

static int send_fd(int sock, int fd, const void *data, size_t len)
{
	char ctl[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
	struct msghdr m = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = ctl, .msg_controllen = sizeof(ctl),
	};
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &m, 0) == (ssize_t)len ? 0 : -1;
}

static int recv_fd(int sock, void *data, size_t len)
{
	char ctl[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { .iov_base = data, .iov_len = len };
	struct msghdr m = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = ctl, .msg_controllen = sizeof(ctl),
	};
	struct cmsghdr *c;
	int fd;

	if (recvmsg(sock, &m, 0) != (ssize_t)len)
		return -1;
	c = CMSG_FIRSTHDR(&m);
	if (!c || c->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

/* Where the owner's guest memory was: the closer maps its canary there. */
struct owner_map {
	uintptr_t hva[2];
	uint64_t size[2];
	unsigned int inflight;
};

/* The owner: a device with buffers posted, handed over, then gone. */
static int owner_child(struct rxp *t, int sock)
{
	struct owner_map m;
	uint64_t end = sim_now_ms() + WAIT_MS;
	unsigned int i;

	sim_init(&t->s);
	if (sim_mem_init(&t->s, MEM_SIZE, 2) ||
	    sim_open(&t->s, "/dev/vhost-net") ||
	    sim_negotiate(&t->s, FEATURES) || sim_set_mem_table(&t->s) ||
	    sim_vq_init(&t->s, SIM_RX_VQ, 256, 0) ||
	    sim_vq_init(&t->s, SIM_TX_VQ, TX_NUM, 0))
		return 2;
	t->rx_num = 256;
	t->bufs = t->s.region[1].gpa;
	refill(t);
	if (sim_set_backend(&t->s, t->mp))
		return 3;
	/* Wait until the worker has posted every buffer it can. */
	while (net_stat("rx_post_inflight") < 200 && sim_now_ms() < end)
		usleep(10000);
	for (i = 0; i < 2; i++) {
		m.hva[i] = (uintptr_t)t->s.region[i].hva;
		m.size[i] = t->s.region[i].size;
	}
	m.inflight = net_stat("rx_post_inflight");
	if (send_fd(sock, t->s.fd, &m, sizeof(m)))
		return 4;
	/* Exit holding nothing: the closer's reference is the last one. */
	return 0;
}

TEST_F_TIMEOUT(rxp, last_close_by_another_process, 120)
{
	struct rxp *t = &self->t;
	struct owner_map m;
	int sv[2], status, fd;
	unsigned int i;
	uint64_t j;
	uint8_t *c[2];
	pid_t pid;

	if (t->mp < 0)
		return;
	if (!t->zc)
		SKIP(return, "vhost_net.zcopy_rx=0: nothing is posted");
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		close(sv[0]);
		_exit(owner_child(t, sv[1]));
	}
	close(sv[1]);
	fd = recv_fd(sv[0], &m, sizeof(m));
	ASSERT_LE(0, fd);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_EQ(0, WEXITSTATUS(status));
	TH_LOG("owner %d gone with %u buffers posted", pid, m.inflight);
	EXPECT_LT(0U, m.inflight);
	/* Our memory where the owner's guest memory (and rings) were. */
	for (i = 0; i < 2; i++) {
		c[i] = mmap((void *)m.hva[i], m.size[i], PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
			    -1, 0);
		ASSERT_EQ((void *)m.hva[i], c[i]);
		memset(c[i], CANARY, m.size[i]);
	}
	close(fd);
	for (i = 0; i < 2; i++) {
		for (j = 0; j < m.size[i] && c[i][j] == CANARY; j++)
			;
		EXPECT_EQ(m.size[i], j) {
			TH_LOG("region %u written at offset %#llx by the last close",
			       i, (unsigned long long)j);
		}
		munmap(c[i], m.size[i]);
	}
	close(sv[0]);
}

TEST_HARNESS_MAIN
