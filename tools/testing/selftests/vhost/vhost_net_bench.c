// SPDX-License-Identifier: GPL-2.0
/*
 * The vhost datapath alone, for "make bench": the simulated guest of
 * virtio_sim.h drives /dev/vhost-net as fast as it can over a tap that a
 * bridge forwards to a dummy device, so what is measured is the device and
 * the backend, not a nested guest.  One "# bench:" record per run; this
 * program measures and never judges.
 *
 *   vhost_net_bench ROW BACKEND SECS REPS [PEER]
 *
 * ROW names the datapath the caller set up.  BACKEND is tap:NAME (a
 * persistent tap with a vnet header), macvtap:NAME or mpassthru:NIC.
 * Received frames are injected on the backend's own interface, or with
 * PEER on that NIC, the far end of the wire from the backend's NIC; the
 * records then name the driver "sim-nic" instead of "sim".
 */
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/vhost.h>

#include "virtio_sim.h"
#include "sim_net.h"

#define RING		256
#define SLOT		(SIMNET_HDR_LEN + 65536 + 128)
#define RX_BUF		2048
#define MEM		(64UL << 20)
#define IP_HLEN		20
#define TCP_HLEN	20
/*
 * Across QEMU's hub an injector that outruns the receiver backs the hub
 * up until it stalls for good.  There it stays at most INJECT_WINDOW
 * frames ahead of what the guest received, and starts afresh after
 * INJECT_RESYNC_MS without progress, so that lost frames cannot stop it.
 */
#define INJECT_WINDOW		128
#define INJECT_RESYNC_MS	20
#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#endif

static const uint8_t mac_far[6] = { 0x02, 0x42, 0x45, 0x4e, 0x00, 0x01 };
static const uint8_t mac_guest[6] = { 0x02, 0x42, 0x45, 0x4e, 0x00, 0x02 };

struct workload {
	const char *name;
	bool rx;
	unsigned int frame;	/* ethernet frame length */
	const char *unit;	/* "pps" or "Mbit/s" */
};

static const struct workload workloads[] = {
	{ "sim_tx_64", false, 64, "pps" },
	{ "sim_tx_1514", false, 1514, "Mbit/s" },
	{ "sim_tx_64k", false, 65535 - 20 + ETH_HLEN, "Mbit/s" },
	{ "sim_rx_64", true, 64, "pps" },
	{ "sim_rx_1514", true, 1514, "Mbit/s" },
};

struct bench {
	struct sim s;
	int tap;
	int ifindex;
	int inject_ifindex;	/* where the injector sends */
	uint64_t tx_slots;	/* guest-physical base of the TX buffers */
	uint64_t rx_slots;
	pid_t worker;
	/* RX: a thread injects frames into the tap while the guest receives */
	pthread_t injector;
	bool stop;		/* __atomic: read by the injector */
	unsigned long received;	/* __atomic: frames the guest got this run */
	const struct workload *wl;
	const char *driver;	/* "sim", or "sim-nic" across a wire */
};

struct costs {
	unsigned long long ticks;
	unsigned long long notify;
	unsigned long long tx_bytes;
	unsigned long long tx_zcopy_packets;
	unsigned long long tx_zcopy_bytes;
	unsigned long long tx_zcopy_copied;
	unsigned long long rx_bytes;
	struct mpassthru_info mp;	/* zeroes unless an mpassthru backend */
};

static void die(const char *what, int err)
{
	fprintf(stderr, "vhost_net_bench: %s: %s\n", what, strerror(err));
	exit(1);
}

/* The vhost worker is one of our threads, named vhost-<our pid>. */
static pid_t find_worker(void)
{
	char path[320], comm[32], want[32];
	struct dirent *d;
	pid_t tid = 0;
	DIR *dir;
	FILE *f;

	snprintf(want, sizeof(want), "vhost-%d\n", getpid());
	dir = opendir("/proc/self/task");
	if (!dir)
		return 0;
	while (!tid && (d = readdir(dir))) {
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm",
			 d->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(comm, sizeof(comm), f) && !strcmp(comm, want))
			tid = atoi(d->d_name);
		fclose(f);
	}
	closedir(dir);
	return tid;
}

static unsigned long long worker_ticks(pid_t tid)
{
	unsigned long long ut, st, ticks = 0;
	char path[64], buf[512], *p;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	/*
	 * Fields 14 and 15, counted after the parenthesised command name; a
	 * vhost worker runs in the kernel, so its user time stays 0.
	 */
	if (fgets(buf, sizeof(buf), f)) {
		p = strrchr(buf, ')');
		if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
				&ut, &st) == 2)
			ticks = ut + st;
	}
	fclose(f);
	return ticks;
}

/* Our debugfs counters, when the implementation under test is ours. */
static unsigned long long our_counter(const char *key)
{
	char prefix[32], path[320], k[64];
	unsigned long long v, sum = 0;
	struct dirent *d;
	DIR *dir;
	FILE *f;

	dir = opendir("/sys/kernel/debug/vhost-mp");
	if (!dir)
		return 0;
	snprintf(prefix, sizeof(prefix), "net-%d-", getpid());
	while ((d = readdir(dir))) {
		if (strncmp(d->d_name, prefix, strlen(prefix)))
			continue;
		snprintf(path, sizeof(path), "/sys/kernel/debug/vhost-mp/%s/stats",
			 d->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		while (fscanf(f, "%63s %llu", k, &v) == 2)
			if (!strcmp(k, key))
				sum += v;
		fclose(f);
	}
	closedir(dir);
	return sum;
}

static void snapshot(struct bench *b, struct costs *c)
{
	if (mpt_info(b->tap, &c->mp))
		memset(&c->mp, 0, sizeof(c->mp));
	c->ticks = worker_ticks(b->worker);
	c->notify = b->s.vq[SIM_TX_VQ].kicks + b->s.vq[SIM_RX_VQ].kicks +
		    b->s.vq[SIM_TX_VQ].calls + b->s.vq[SIM_RX_VQ].calls;
	c->tx_bytes = our_counter("tx_bytes");
	c->tx_zcopy_packets = our_counter("tx_zcopy_packets");
	c->tx_zcopy_bytes = our_counter("tx_zcopy_bytes");
	c->tx_zcopy_copied = our_counter("tx_zcopy_copied");
	c->rx_bytes = our_counter("rx_bytes");
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v;
}

/*
 * An IPv4/TCP frame to a MAC nobody has, so that the bridge floods it to
 * the dummy port, which drops it: a NIC that never holds a packet.
 */
static void build_frame(uint8_t *f, unsigned int frame, const uint8_t *dst)
{
	memset(f, 0, ETH_HLEN + IP_HLEN + TCP_HLEN);
	memcpy(f, dst, 6);
	memcpy(f + 6, mac_guest, 6);
	put16(f + 12, ETH_P_IP);
	f[14] = 0x45;
	put16(f + 16, frame - ETH_HLEN);
	f[22] = 64;
	f[23] = 6;		/* TCP */
	f[26] = 10;
	f[30] = 10;
	f[31] = 1;
	f[46] = 5 << 4;		/* TCP header length */
	memset(f + 54, 0xa5, frame > 54 ? frame - 54 : 0);
}

/* A guest TX slot: header, then frame; over an MTU it goes as TSO. */
static void build_tx(uint8_t *slot, unsigned int frame)
{
	struct virtio_net_hdr_v1 *h = (void *)slot;

	memset(h, 0, sizeof(*h));
	build_frame(slot + SIMNET_HDR_LEN, frame, mac_far);
	if (frame <= 1514)
		return;
	h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	h->gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
	h->hdr_len = ETH_HLEN + IP_HLEN + TCP_HLEN;
	h->gso_size = 1448;
	h->csum_start = ETH_HLEN + IP_HLEN;
	h->csum_offset = 16;
}

static void post_rx(struct bench *b, unsigned int slot)
{
	struct sim_sg sg = {
		.gpa = b->rx_slots + (uint64_t)slot * RX_BUF,
		.len = RX_BUF,
	};

	sim_post_rx(&b->s, &sg, 1, false, slot);
}

/* BACKEND: tap:NAME, macvtap:NAME or mpassthru:NIC. */
static int open_backend(const char *spec, int *ifindex)
{
	const char *name = strchr(spec, ':');
	char ifname[IFNAMSIZ];

	if (!name || !name[1] || strlen(name + 1) >= IFNAMSIZ)
		return -1;
	name++;
	if (!strncmp(spec, "tap:", 4))
		return simnet_tap_open(name, SIMNET_OFFLOADS, ifname, ifindex);
	if (!strncmp(spec, "macvtap:", 8))
		return simnet_macvtap_open(name, ifindex);
	if (!strncmp(spec, "mpassthru:", 10))
		return simnet_mpassthru_open(name, ifindex);
	errno = EINVAL;
	return -1;
}

static void setup(struct bench *b, const char *backend, const char *peer)
{
	uint64_t want = (1ULL << VIRTIO_F_VERSION_1) |
			(1ULL << VIRTIO_NET_F_MRG_RXBUF) |
			(1ULL << VIRTIO_RING_F_EVENT_IDX);
	int r, i;

	sim_init(&b->s);
	b->tap = open_backend(backend, &b->ifindex);
	if (b->tap < 0)
		die(backend, errno);
	b->inject_ifindex = b->ifindex;
	b->driver = peer ? "sim-nic" : "sim";
	if (peer && simnet_if_up(peer, &b->inject_ifindex))
		die(peer, errno);
	r = sim_mem_init(&b->s, MEM, 1);
	if (!r) {
		sim_mem_prefault(&b->s);
		r = sim_open(&b->s, "/dev/vhost-net");
	}
	if (!r)
		r = sim_negotiate(&b->s, want);
	if (!r)
		r = sim_set_mem_table(&b->s);
	for (i = 0; !r && i < SIM_NVQ; i++)
		r = sim_vq_init(&b->s, i, RING, 0);
	if (!r)
		r = sim_set_backend(&b->s, b->tap);
	if (r)
		die("configuring /dev/vhost-net", -r);
	b->tx_slots = sim_alloc(&b->s, (uint64_t)RING * SLOT, SIM_PAGE);
	b->rx_slots = sim_alloc(&b->s, (uint64_t)RING * RX_BUF, SIM_PAGE);
	if (!b->tx_slots || !b->rx_slots)
		die("guest memory", ENOMEM);
	b->worker = find_worker();
	if (!b->worker)
		die("no vhost worker thread", ESRCH);
	/* Receive buffers stay posted from here on; RX runs repost them. */
	for (i = 0; i < RING; i++)
		post_rx(b, i);
	sim_kick(&b->s.vq[SIM_RX_VQ]);
}

/* Send as fast as the ring allows; returns the frames the device used. */
static unsigned long run_tx(struct bench *b, unsigned int frame, int secs)
{
	struct sim_vq *vq = &b->s.vq[SIM_TX_VQ];
	uint64_t end = sim_now_ms() + secs * 1000ULL;
	unsigned long done = 0;
	struct sim_sg sg;
	uintptr_t token;
	uint32_t len;
	unsigned int i;

	for (i = 0; i < RING; i++)
		build_tx(sim_ptr(&b->s, b->tx_slots + (uint64_t)i * SLOT, SLOT),
			 frame);
	i = 0;
	while (sim_now_ms() < end) {
		bool added = false;

		while (sim_get_used(vq, &len, &token) >= 0)
			done++;
		while (vq->num_free) {
			sg.gpa = b->tx_slots + (uint64_t)(i++ % RING) * SLOT;
			sg.len = SIMNET_HDR_LEN + frame;
			if (sim_add_tx(&b->s, &sg, 1, false, 0) < 0)
				break;
			added = true;
		}
		if (added)
			sim_kick(vq);
		else if (sim_wait_used(vq, 100) == -EIO)
			die("TX virtqueue error", EIO);
	}
	/* What is still in flight is not counted. */
	return done;
}

struct inject_window {
	unsigned long sent;
	unsigned long seen;	/* frames received when last looked */
	uint64_t idle_since;
};

/* Whether the injector may send now; see INJECT_WINDOW. */
static bool inject_may_send(struct bench *b, struct inject_window *w)
{
	unsigned long got = __atomic_load_n(&b->received, __ATOMIC_RELAXED);
	uint64_t now;

	/* Injecting on the backend's own interface needs no window. */
	if (b->inject_ifindex == b->ifindex ||
	    (long)(w->sent - got) < INJECT_WINDOW)
		return true;
	now = sim_now_ms();
	if (got != w->seen) {
		w->seen = got;
		w->idle_since = now;
	}
	if (now - w->idle_since < INJECT_RESYNC_MS) {
		sched_yield();
		return false;
	}
	w->sent = got;
	w->idle_since = now;
	return true;
}

static void *inject(void *arg)
{
	/* An AF_PACKET socket's vnet header is the 10-byte legacy one. */
	uint8_t frame[sizeof(struct virtio_net_hdr) + 1514] = { 0 };
	const size_t hlen = sizeof(struct virtio_net_hdr);
	struct inject_window w = { .idle_since = sim_now_ms() };
	struct bench *b = arg;
	unsigned int len = b->wl->frame;
	int fd;

	fd = simnet_packet_socket(b->inject_ifindex, false);
	if (fd < 0)
		die("injection socket", errno);
	build_frame(frame + hlen, len, mac_guest);
	while (!__atomic_load_n(&b->stop, __ATOMIC_RELAXED)) {
		if (!inject_may_send(b, &w))
			continue;
		if (simnet_inject(fd, b->inject_ifindex, mac_guest, ETH_P_IP,
				  frame, hlen + len, 0) > 0)
			w.sent++;
	}
	close(fd);
	return NULL;
}

/* Receive what the injector sends for @secs; returns the frames. */
static unsigned long run_rx(struct bench *b, int secs)
{
	struct sim_vq *vq = &b->s.vq[SIM_RX_VQ];
	uint64_t end;
	unsigned long done = 0;
	uintptr_t slot;
	uint32_t len;

	__atomic_store_n(&b->stop, false, __ATOMIC_RELAXED);
	__atomic_store_n(&b->received, 0, __ATOMIC_RELAXED);
	if (pthread_create(&b->injector, NULL, inject, b))
		die("injector thread", errno);
	end = sim_now_ms() + secs * 1000ULL;
	while (sim_now_ms() < end) {
		bool got = false;

		while (sim_get_used(vq, &len, &slot) >= 0) {
			post_rx(b, slot);
			got = true;
			done++;
		}
		if (got) {
			__atomic_store_n(&b->received, done, __ATOMIC_RELAXED);
			sim_kick(vq);
		} else if (sim_wait_used(vq, 100) == -EIO) {
			die("RX virtqueue error", EIO);
		}
	}
	__atomic_store_n(&b->stop, true, __ATOMIC_RELAXED);
	pthread_join(b->injector, NULL);
	return done;
}

/* Let the device finish what it holds so that runs do not overlap. */
static void drain(struct bench *b, unsigned int index)
{
	struct sim_vq *vq = &b->s.vq[index];
	uintptr_t token;
	uint32_t len;

	while (sim_wait_used(vq, 500) == 0)
		while (sim_get_used(vq, &len, &token) >= 0)
			if (index == SIM_RX_VQ)
				post_rx(b, token);
}

static void report(const struct bench *b, const char *row, int rep,
		   int secs, unsigned long frames, const struct costs *a,
		   const struct costs *z)
{
	const struct workload *wl = b->wl;
	unsigned long long bytes = (unsigned long long)frames * wl->frame;
	double value = !strcmp(wl->unit, "pps") ? (double)frames / secs :
			bytes * 8.0 / secs / 1e6;

	printf("# bench: driver=%s row=%s workload=%s rep=%d unit=%s",
	       b->driver, row, wl->name, rep, wl->unit);
	printf(" value=%.1f bytes=%llu ticks=%llu syscalls=%llu packets=%lu",
	       value, bytes, z->ticks - a->ticks, z->notify - a->notify,
	       frames);
	printf(" tx_bytes=%llu tx_zcopy_packets=%llu tx_zcopy_bytes=%llu",
	       z->tx_bytes - a->tx_bytes,
	       z->tx_zcopy_packets - a->tx_zcopy_packets,
	       z->tx_zcopy_bytes - a->tx_zcopy_bytes);
	printf(" tx_zcopy_copied=%llu rx_bytes=%llu",
	       z->tx_zcopy_copied - a->tx_zcopy_copied,
	       z->rx_bytes - a->rx_bytes);
	printf(" mp_rx_zcopy_bytes=%llu mp_rx_copy_bytes=%llu\n",
	       (unsigned long long)(z->mp.stats.rx_zcopy_bytes -
				    a->mp.stats.rx_zcopy_bytes),
	       (unsigned long long)(z->mp.stats.rx_copy_bytes -
				    a->mp.stats.rx_copy_bytes));
	fflush(stdout);
}

int main(int argc, char **argv)
{
	static struct bench b;
	struct costs before, after;
	unsigned long frames;
	unsigned int w;
	int secs, reps, rep;

	if (argc != 5 && argc != 6) {
		fprintf(stderr, "usage: %s ROW BACKEND SECS REPS [PEER]\n",
			argv[0]);
		return 2;
	}
	secs = atoi(argv[3]);
	reps = atoi(argv[4]);
	if (secs < 1 || reps < 1)
		return 2;
	setup(&b, argv[2], argc == 6 ? argv[5] : NULL);
	for (rep = 1; rep <= reps; rep++) {
		for (w = 0; w < ARRAY_SIZE(workloads); w++) {
			b.wl = &workloads[w];
			snapshot(&b, &before);
			if (b.wl->rx)
				frames = run_rx(&b, secs);
			else
				frames = run_tx(&b, b.wl->frame, secs);
			snapshot(&b, &after);
			report(&b, argv[1], rep, secs, frames, &before, &after);
			drain(&b, b.wl->rx ? SIM_RX_VQ : SIM_TX_VQ);
		}
	}
	sim_close(&b.s);
	close(b.tap);
	return 0;
}
