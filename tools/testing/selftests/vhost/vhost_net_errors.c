// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/vhost-net under hostile ioctl input, and its life cycle.
 *
 * Every bad argument must give a clear errno and leave the device usable;
 * closing things in awkward orders must neither crash, warn nor leak (the
 * VM's kmemleak scan and kernel log checks judge the latter).
 *
 * The same program runs against our vhost_net and upstream's reference,
 * told apart by VHOST_IMPL=ours|reference.  What both must do is asserted
 * for both; where ours is deliberately different, each implementation is
 * held to what its source does, and the difference is named in a comment.
 *
 * The test is its own "guest": one anonymous mapping registered as guest
 * memory at GPA_BASE, split rings for RX (0) and TX (1) inside it, and a
 * tap device as backend.  "The device works" means a frame put on the TX
 * ring after a kick comes back in the used ring.  The tap is left down, so
 * the frame is dropped by tun with -EIO, which both implementations still
 * complete to the guest.
 *
 * Builds as a 32-bit program too (gcc -m32), which exercises compat_ioctl.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <linux/if_ether.h>
#include <linux/if_tun.h>
#include <linux/vhost.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>

#include "../kselftest_harness.h"

#define NVQ		2
#define RX		0
#define TX		1
#define RING_NUM	256U
/* Guest memory: one region of MEM_SIZE bytes at guest address GPA_BASE. */
#define GPA_BASE	0x100000ULL
#define MEM_SIZE	0x100000UL
/* Per ring: descriptors, avail and used, each on its own page. */
#define RING_AREA	0x8000UL
#define DESC_OFF	0x0000UL
#define AVAIL_OFF	0x1000UL
#define USED_OFF	0x2000UL
/* TX frames, one slot per descriptor. */
#define BUF_OFF		0x10000UL
#define BUF_SIZE	0x800UL
#define HDR_LEN		sizeof(struct virtio_net_hdr_mrg_rxbuf)
#define FRAME_LEN	60U
#define PAGE		4096UL
/* Canonical kernel address on x86-64 (the direct map), never user memory. */
#define KERNEL_ADDR	0xffff888000000000ULL
#define WAIT_MS		10000
#define VHOST_BOGUS	_IOW(VHOST_VIRTIO, 0xe0, struct vhost_vring_state)

enum impl { IMPL_UNKNOWN, IMPL_OURS, IMPL_REF };
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

/* The errno (0: success) expected from ours and from the reference. */
#define BY_IMPL(ours, ref)	(impl == IMPL_REF ? (ref) : (ours))

static void check_result(struct __test_metadata *_metadata, const char *what,
			 long ret, int err, int want)
{
	if (!want) {
		ASSERT_EQ(0, ret) {
			TH_LOG("%s: failed with %s, want success", what,
			       strerror(err));
		}
		return;
	}
	ASSERT_EQ(-1, ret) {
		TH_LOG("%s: returned %ld, want %s", what, ret, strerror(want));
	}
	ASSERT_EQ(want, err) {
		TH_LOG("%s: got %s, want %s", what, strerror(err),
		       strerror(want));
	}
}

/* CHECK(0, call) or CHECK(EINVAL, call): call must succeed or fail so. */
#define CHECK(want, call) do {						\
		long __ret = (call);					\
		check_result(_metadata, #call, __ret, errno, (want));	\
	} while (0)

struct guest {
	int fd;
	int tap;
	char ifname[IFNAMSIZ];
	uint8_t *mem;
	int kick[NVQ], call[NVQ], err[NVQ];
	uint16_t tx_avail;
};

static uint64_t uptr(const void *p)
{
	return (uintptr_t)p;
}

static uint8_t *ring(struct guest *g, unsigned int idx, unsigned long off)
{
	return g->mem + idx * RING_AREA + off;
}

static int vring_state(int fd, unsigned long cmd, unsigned int idx,
		       unsigned int num)
{
	struct vhost_vring_state s = { .index = idx, .num = num };

	return ioctl(fd, cmd, &s);
}

static int vring_file(int fd, unsigned long cmd, unsigned int idx, int vfd)
{
	struct vhost_vring_file f = { .index = idx, .fd = vfd };

	return ioctl(fd, cmd, &f);
}

static int set_backend(int fd, unsigned int idx, int bfd)
{
	return vring_file(fd, VHOST_NET_SET_BACKEND, idx, bfd);
}

static int set_features(int fd, uint64_t features)
{
	return ioctl(fd, VHOST_SET_FEATURES, &features);
}

static int set_log_base(int fd, uint64_t base)
{
	return ioctl(fd, VHOST_SET_LOG_BASE, &base);
}

static int set_regions(int fd, const struct vhost_memory_region *r,
		       unsigned int n)
{
	struct vhost_memory *m;
	int ret, err;

	m = calloc(1, sizeof(*m) + n * sizeof(*r));
	if (!m)
		return -1;
	m->nregions = n;
	if (n)
		memcpy(m->regions, r, n * sizeof(*r));
	ret = ioctl(fd, VHOST_SET_MEM_TABLE, m);
	err = errno;
	free(m);
	errno = err;
	return ret;
}

static struct vhost_memory_region good_region(struct guest *g)
{
	struct vhost_memory_region r = {
		.guest_phys_addr = GPA_BASE,
		.memory_size = MEM_SIZE,
		.userspace_addr = uptr(g->mem),
	};

	return r;
}

static int set_good_table(struct guest *g)
{
	struct vhost_memory_region r = good_region(g);

	return set_regions(g->fd, &r, 1);
}

static struct vhost_vring_addr good_addr(struct guest *g, unsigned int idx)
{
	struct vhost_vring_addr a = {
		.index = idx,
		.desc_user_addr = uptr(ring(g, idx, DESC_OFF)),
		.avail_user_addr = uptr(ring(g, idx, AVAIL_OFF)),
		.used_user_addr = uptr(ring(g, idx, USED_OFF)),
		.log_guest_addr = GPA_BASE + idx * RING_AREA + USED_OFF,
	};

	return a;
}

/* Fresh, empty ring @idx at its usual place. */
static int set_vring(struct guest *g, unsigned int idx)
{
	struct vhost_vring_addr a = good_addr(g, idx);

	memset(ring(g, idx, 0), 0, RING_AREA);
	if (idx == TX)
		g->tx_avail = 0;
	if (vring_state(g->fd, VHOST_SET_VRING_NUM, idx, RING_NUM) ||
	    vring_state(g->fd, VHOST_SET_VRING_BASE, idx, 0) ||
	    ioctl(g->fd, VHOST_SET_VRING_ADDR, &a))
		return -1;
	return 0;
}

static int set_vring_files(struct guest *g, unsigned int idx)
{
	if (vring_file(g->fd, VHOST_SET_VRING_KICK, idx, g->kick[idx]) ||
	    vring_file(g->fd, VHOST_SET_VRING_CALL, idx, g->call[idx]) ||
	    vring_file(g->fd, VHOST_SET_VRING_ERR, idx, g->err[idx]))
		return -1;
	return 0;
}

static int open_tap(struct guest *g)
{
	struct ifreq ifr = { };
	int hdr = HDR_LEN;
	int fd;

	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	snprintf(ifr.ifr_name, IFNAMSIZ, "vnerr%%d");
	if (ioctl(fd, TUNSETIFF, &ifr) || ioctl(fd, TUNSETVNETHDRSZ, &hdr)) {
		close(fd);
		return -1;
	}
	memcpy(g->ifname, ifr.ifr_name, IFNAMSIZ);
	g->tap = fd;
	return 0;
}

/* Open /dev/vhost-net and the guest resources; the tap is left to tests. */
static int guest_open(struct guest *g, bool own)
{
	unsigned int i;

	memset(g, 0, sizeof(*g));
	g->tap = -1;
	for (i = 0; i < NVQ; i++) {
		g->kick[i] = -1;
		g->call[i] = -1;
		g->err[i] = -1;
	}
	g->fd = open("/dev/vhost-net", O_RDWR | O_CLOEXEC);
	if (g->fd < 0)
		return -1;
	if (own && ioctl(g->fd, VHOST_SET_OWNER, NULL))
		return -1;
	g->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (g->mem == MAP_FAILED) {
		g->mem = NULL;
		return -1;
	}
	for (i = 0; i < NVQ; i++) {
		g->kick[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		g->call[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		g->err[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (g->kick[i] < 0 || g->call[i] < 0 || g->err[i] < 0)
			return -1;
	}
	return 0;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void guest_close(struct guest *g)
{
	unsigned int i;

	close_fd(&g->fd);
	close_fd(&g->tap);
	for (i = 0; i < NVQ; i++) {
		close_fd(&g->kick[i]);
		close_fd(&g->call[i]);
		close_fd(&g->err[i]);
	}
	if (g->mem)
		munmap(g->mem, MEM_SIZE);
	g->mem = NULL;
}

/* What QEMU does for -netdev tap,vhost=on, minus the guest. */
static int guest_setup_fd(struct guest *g)
{
	unsigned int i;

	if (set_features(g->fd, 1ULL << VIRTIO_F_VERSION_1) ||
	    set_good_table(g))
		return -1;
	for (i = 0; i < NVQ; i++)
		if (set_vring(g, i) || set_vring_files(g, i))
			return -1;
	for (i = 0; i < NVQ; i++)
		if (set_backend(g->fd, i, g->tap))
			return -1;
	return 0;
}

static void setup_all(struct __test_metadata *_metadata, struct guest *g)
{
	if (g->tap < 0)
		ASSERT_EQ(0, open_tap(g)) {
			TH_LOG("tap: %s", strerror(errno));
		}
	ASSERT_EQ(0, guest_setup_fd(g)) {
		TH_LOG("setup: %s", strerror(errno));
	}
}

static bool wait_readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

static uint16_t used_idx(struct guest *g, unsigned int idx)
{
	struct vring_used *u = (struct vring_used *)ring(g, idx, USED_OFF);

	return __atomic_load_n(&u->idx, __ATOMIC_ACQUIRE);
}

/* Queue one frame of @len bytes (after the header) on TX and kick. */
static void tx_post(struct guest *g, unsigned int len)
{
	struct vring_desc *desc = (struct vring_desc *)ring(g, TX, DESC_OFF);
	struct vring_avail *avail = (struct vring_avail *)ring(g, TX, AVAIL_OFF);
	uint16_t slot = g->tx_avail % RING_NUM;
	unsigned long off = BUF_OFF + slot * BUF_SIZE;
	uint8_t *buf = g->mem + off;
	uint64_t one = 1;

	memset(buf, 0, HDR_LEN);
	memset(buf + HDR_LEN, 0xff, ETH_ALEN);
	memset(buf + HDR_LEN + ETH_ALEN, 0x02, ETH_ALEN);
	buf[HDR_LEN + 12] = 0x88;
	buf[HDR_LEN + 13] = 0xb5;
	memset(buf + HDR_LEN + ETH_HLEN, slot, len - ETH_HLEN);
	desc[slot].addr = GPA_BASE + off;
	desc[slot].len = HDR_LEN + len;
	desc[slot].flags = 0;
	desc[slot].next = 0;
	avail->ring[slot] = slot;
	__atomic_store_n(&avail->idx, ++g->tx_avail, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (write(g->kick[TX], &one, sizeof(one)) != sizeof(one))
		return;
}

/* Has the device completed every TX frame posted within @ms? */
static bool tx_done(struct guest *g, int ms)
{
	for (; ms > 0 && used_idx(g, TX) != g->tx_avail; ms--)
		usleep(1000);
	return used_idx(g, TX) == g->tx_avail;
}

/* The device consumes a TX frame: it is alive and its rings are sane. */
static void tx_works(struct __test_metadata *_metadata, struct guest *g)
{
	tx_post(g, FRAME_LEN);
	ASSERT_TRUE(tx_done(g, WAIT_MS)) {
		TH_LOG("TX frame not completed within %d ms", WAIT_MS);
	}
}

/* Detach ring @idx, rebuild it empty in good memory, attach the tap. */
static void rearm(struct __test_metadata *_metadata, struct guest *g,
		  unsigned int idx)
{
	uint64_t v;

	CHECK(0, set_backend(g->fd, idx, -1));
	CHECK(0, set_vring(g, idx));
	CHECK(0, set_backend(g->fd, idx, g->tap));
	while (read(g->err[idx], &v, sizeof(v)) == sizeof(v))
		;
}

static unsigned int region_limit(void)
{
	unsigned int n = 64;
	FILE *f;

	f = fopen("/sys/module/vhost/parameters/max_mem_regions", "r");
	if (f) {
		if (fscanf(f, "%u", &n) != 1)
			n = 64;
		fclose(f);
	}
	return n;
}

/* A mapping of @pages pages with protection @prot. */
static uint8_t *map_pages(unsigned int pages, int prot)
{
	void *p = mmap(NULL, pages * PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* A descriptor number that nothing will be opened at during the test. */
static int closed_fd(void)
{
	int fd = 1000;

	while (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
		if (++fd > 2000)
			return -1;
	return fd;
}

static bool netdev_gone(const char *name)
{
	int ms;

	for (ms = 0; ms < WAIT_MS; ms += 10) {
		if (!if_nametoindex(name))
			return true;
		usleep(10000);
	}
	return false;
}

FIXTURE(vhost) {
	struct guest g;
};

FIXTURE_SETUP(vhost)
{
	if (access("/dev/vhost-net", F_OK))
		SKIP(return, "no /dev/vhost-net");
	ASSERT_EQ(0, guest_open(&self->g, true)) {
		TH_LOG("open and own /dev/vhost-net: %s", strerror(errno));
	}
}

FIXTURE_TEARDOWN(vhost)
{
	guest_close(&self->g);
}

/* ---- ownership --------------------------------------------------------- */

/*
 * Before SET_OWNER only the feature ioctls work; everything that hands the
 * device user addresses or files is EPERM in both implementations.
 */
TEST(no_owner)
{
	struct vhost_vring_addr a;
	struct guest g;
	uint64_t v = 0;
	int fd = -1;

	if (access("/dev/vhost-net", F_OK))
		SKIP(return, "no /dev/vhost-net");
	ASSERT_EQ(0, guest_open(&g, false));
	a = good_addr(&g, 0);
	CHECK(EPERM, set_good_table(&g));
	CHECK(EPERM, vring_state(g.fd, VHOST_SET_VRING_NUM, 0, RING_NUM));
	CHECK(EPERM, vring_state(g.fd, VHOST_SET_VRING_BASE, 0, 0));
	CHECK(EPERM, vring_state(g.fd, VHOST_GET_VRING_BASE, 0, 0));
	CHECK(EPERM, ioctl(g.fd, VHOST_SET_VRING_ADDR, &a));
	CHECK(EPERM, vring_file(g.fd, VHOST_SET_VRING_KICK, 0, g.kick[0]));
	CHECK(EPERM, vring_file(g.fd, VHOST_SET_VRING_CALL, 0, g.call[0]));
	CHECK(EPERM, vring_file(g.fd, VHOST_SET_VRING_ERR, 0, g.err[0]));
	CHECK(EPERM, vring_state(g.fd, VHOST_SET_VRING_BUSYLOOP_TIMEOUT, 0, 1));
	CHECK(EPERM, set_log_base(g.fd, uptr(g.mem)));
	CHECK(EPERM, ioctl(g.fd, VHOST_SET_LOG_FD, &fd));
	CHECK(EPERM, set_backend(g.fd, 0, -1));
	CHECK(EPERM, ioctl(g.fd, VHOST_RESET_OWNER, NULL));
	CHECK(EPERM, ioctl(g.fd, VHOST_BOGUS, &a));
	/* Feature negotiation needs no owner. */
	CHECK(0, ioctl(g.fd, VHOST_GET_FEATURES, &v));
	CHECK(0, set_features(g.fd, 1ULL << VIRTIO_F_VERSION_1));
	CHECK(0, ioctl(g.fd, VHOST_GET_BACKEND_FEATURES, &v));
	CHECK(0, ioctl(g.fd, VHOST_SET_BACKEND_FEATURES, &v));
	/* None of that got in the way of a real owner. */
	CHECK(0, ioctl(g.fd, VHOST_SET_OWNER, NULL));
	setup_all(_metadata, &g);
	tx_works(_metadata, &g);
	guest_close(&g);
}

TEST_F(vhost, set_owner_twice)
{
	CHECK(EBUSY, ioctl(self->g.fd, VHOST_SET_OWNER, NULL));
	setup_all(_metadata, &self->g);
	CHECK(EBUSY, ioctl(self->g.fd, VHOST_SET_OWNER, NULL));
	tx_works(_metadata, &self->g);
}

/* Checks done by a process that shares the fd but not the mm. */
static int child_not_owner(struct guest *g)
{
	if (ioctl(g->fd, VHOST_SET_OWNER, NULL) != -1 || errno != EBUSY)
		return 1;
	if (set_good_table(g) != -1 || errno != EPERM)
		return 2;
	if (vring_state(g->fd, VHOST_SET_VRING_NUM, TX, 16) != -1 ||
	    errno != EPERM)
		return 3;
	if (set_backend(g->fd, TX, -1) != -1 || errno != EPERM)
		return 4;
	if (ioctl(g->fd, VHOST_RESET_OWNER, NULL) != -1 || errno != EPERM)
		return 5;
	if (set_log_base(g->fd, uptr(g->mem)) != -1 || errno != EPERM)
		return 6;
	return 0;
}

TEST_F(vhost, other_process_is_not_owner)
{
	int status;
	pid_t pid;

	setup_all(_metadata, &self->g);
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid)
		_exit(child_not_owner(&self->g));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status)) {
		TH_LOG("check %d in the child failed", WEXITSTATUS(status));
	}
	tx_works(_metadata, &self->g);
}

/* RESET_OWNER returns the device to the just-opened state, repeatedly. */
TEST_F(vhost, reset_owner_then_reuse)
{
	int round;

	for (round = 0; round < 3; round++) {
		setup_all(_metadata, &self->g);
		tx_works(_metadata, &self->g);
		CHECK(0, ioctl(self->g.fd, VHOST_RESET_OWNER, NULL));
		CHECK(EPERM, ioctl(self->g.fd, VHOST_RESET_OWNER, NULL));
		CHECK(EPERM, set_good_table(&self->g));
		CHECK(EPERM, set_backend(self->g.fd, TX, self->g.tap));
		CHECK(0, ioctl(self->g.fd, VHOST_SET_OWNER, NULL));
	}
	setup_all(_metadata, &self->g);
	tx_works(_metadata, &self->g);
}

TEST_F(vhost, unknown_ioctl)
{
	struct vhost_vring_state s = { };

	CHECK(ENOTTY, ioctl(self->g.fd, VHOST_BOGUS, &s));
	CHECK(ENOTTY, ioctl(self->g.fd, _IO('x', 0x42), &s));
	/* Another vhost flavour's ioctl (vDPA) is just as unknown here. */
	CHECK(ENOTTY, ioctl(self->g.fd, VHOST_VDPA_GET_DEVICE_ID, &s));
	/*
	 * Upstream tries every unknown ioctl as a vring ioctl and reads the
	 * ring index from the argument first, so a bad pointer is EFAULT
	 * there; ours knows the command is not a vring command.
	 */
	CHECK(BY_IMPL(ENOTTY, EFAULT), ioctl(self->g.fd, VHOST_BOGUS, NULL));
	setup_all(_metadata, &self->g);
	tx_works(_metadata, &self->g);
}

/* ---- VHOST_SET_MEM_TABLE ----------------------------------------------- */

TEST_F(vhost, mem_table_too_many_regions)
{
	unsigned int max = region_limit(), i;
	struct vhost_memory_region *r;
	struct vhost_memory hdr = { };

	TH_LOG("max_mem_regions = %u", max);
	r = calloc(max + 1, sizeof(*r));
	ASSERT_TRUE(!!r);
	for (i = 0; i <= max; i++) {
		r[i].guest_phys_addr = GPA_BASE + (uint64_t)i * PAGE;
		r[i].memory_size = PAGE;
		r[i].userspace_addr = uptr(self->g.mem) + (i % 16) * PAGE;
	}
	CHECK(E2BIG, set_regions(self->g.fd, r, max + 1));
	hdr.nregions = 0xffffffffU;
	CHECK(E2BIG, ioctl(self->g.fd, VHOST_SET_MEM_TABLE, &hdr));
	/* Exactly the limit is fine. */
	CHECK(0, set_regions(self->g.fd, r, max));
	free(r);
	CHECK(0, set_regions(self->g.fd, NULL, 0));
	setup_all(_metadata, &self->g);
	tx_works(_metadata, &self->g);
}

TEST_F(vhost, mem_table_bad_pointer)
{
	struct vhost_memory *m;
	uint8_t *p;

	CHECK(EFAULT, ioctl(self->g.fd, VHOST_SET_MEM_TABLE, NULL));
	CHECK(EFAULT, ioctl(self->g.fd, VHOST_SET_MEM_TABLE,
			    (void *)(uintptr_t)0x10));
	/* The header is readable, the region array behind it is not. */
	p = map_pages(2, PROT_READ | PROT_WRITE);
	ASSERT_TRUE(!!p);
	ASSERT_EQ(0, mprotect(p + PAGE, PAGE, PROT_NONE));
	m = (struct vhost_memory *)(p + PAGE - sizeof(*m));
	m->nregions = 1;
	m->padding = 0;
	CHECK(EFAULT, ioctl(self->g.fd, VHOST_SET_MEM_TABLE, m));
	munmap(p, 2 * PAGE);
	setup_all(_metadata, &self->g);
	tx_works(_metadata, &self->g);
}

TEST_F(vhost, mem_table_padding)
{
	struct {
		struct vhost_memory m;
		struct vhost_memory_region r;
	} t = { };

	t.m.nregions = 1;
	t.m.padding = 1;
	t.r = good_region(&self->g);
	CHECK(EOPNOTSUPP, ioctl(self->g.fd, VHOST_SET_MEM_TABLE, &t));
	setup_all(_metadata, &self->g);
	tx_works(_metadata, &self->g);
}

/*
 * One extra region next to the good one.  Upstream turns any region it
 * cannot insert into EFAULT, and only checks user addresses of regions when
 * a ring is live; ours validates every region at once and says EINVAL for
 * malformed ones, EFAULT for ones outside user space.
 */
FIXTURE(memtab) {
	struct guest g;
};

FIXTURE_VARIANT(memtab) {
	uint64_t gpa;
	uint64_t size;		/* ~0: wrap userspace_addr + size */
	uint64_t uaddr;		/* offset into guest memory, unless abs */
	bool abs;
	int ours;
	int ref_idle;		/* no ring live */
	int ref_live;		/* backends attached */
};

FIXTURE_SETUP(memtab)
{
	if (access("/dev/vhost-net", F_OK))
		SKIP(return, "no /dev/vhost-net");
	ASSERT_EQ(0, guest_open(&self->g, true)) {
		TH_LOG("open and own /dev/vhost-net: %s", strerror(errno));
	}
}

FIXTURE_TEARDOWN(memtab)
{
	guest_close(&self->g);
}

FIXTURE_VARIANT_ADD(memtab, zero_size) {
	.gpa = 0x10000000, .size = 0,
	.ours = EINVAL, .ref_idle = EFAULT, .ref_live = EFAULT,
};

/* Upstream reads size 0 at address 0 as "the whole 64-bit space". */
FIXTURE_VARIANT_ADD(memtab, zero_size_at_0) {
	.gpa = 0, .size = 0,
	.ours = EINVAL, .ref_idle = 0, .ref_live = EFAULT,
};

FIXTURE_VARIANT_ADD(memtab, gpa_overflow) {
	.gpa = 0xfffffffffffff000ULL, .size = 0x2000,
	.ours = EINVAL, .ref_idle = EFAULT, .ref_live = EFAULT,
};

FIXTURE_VARIANT_ADD(memtab, gpa_ends_at_max) {
	.gpa = 0xfffffffffffff000ULL, .size = 0x1000,
};

FIXTURE_VARIANT_ADD(memtab, uaddr_overflow) {
	.gpa = 0x200000, .size = ~0ULL,
	.ours = EINVAL, .ref_idle = 0, .ref_live = EFAULT,
};

FIXTURE_VARIANT_ADD(memtab, uaddr_kernel) {
	.gpa = 0x200000, .size = 0x1000, .uaddr = KERNEL_ADDR, .abs = true,
	.ours = EFAULT, .ref_idle = 0, .ref_live = EFAULT,
};

FIXTURE_VARIANT_ADD(memtab, overlap) {
	.gpa = GPA_BASE + MEM_SIZE / 2, .size = MEM_SIZE,
	.ours = EINVAL, .ref_idle = 0, .ref_live = 0,
};

FIXTURE_VARIANT_ADD(memtab, duplicate) {
	.gpa = GPA_BASE, .size = MEM_SIZE,
	.ours = EINVAL, .ref_idle = 0, .ref_live = 0,
};

FIXTURE_VARIANT_ADD(memtab, adjacent) {
	.gpa = GPA_BASE + MEM_SIZE, .size = 0x1000,
};

/* The good region plus the variant's, bad one first so sorting matters. */
static void variant_table(struct guest *g, uint64_t gpa, uint64_t size,
			  uint64_t uaddr, bool abs,
			  struct vhost_memory_region r[2])
{
	struct vhost_memory_region good = good_region(g), bad = {
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = abs ? uaddr : uptr(g->mem) + uaddr,
	};

	if (size == ~0ULL)
		bad.memory_size = -bad.userspace_addr + 0x1000;
	r[0] = gpa > GPA_BASE ? bad : good;
	r[1] = gpa > GPA_BASE ? good : bad;
}

TEST_F(memtab, idle)
{
	struct vhost_memory_region r[2];
	int want = BY_IMPL(variant->ours, variant->ref_idle);

	ASSERT_EQ(0, open_tap(&self->g));
	variant_table(&self->g, variant->gpa, variant->size, variant->uaddr,
		      variant->abs, r);
	CHECK(want, set_regions(self->g.fd, r, 2));
	/*
	 * Upstream accepts some of these lazily: then it must refuse to
	 * start a ring on that table.
	 */
	if (!want && BY_IMPL(variant->ours, variant->ref_live)) {
		CHECK(0, set_vring(&self->g, TX));
		CHECK(EFAULT, set_backend(self->g.fd, TX, self->g.tap));
	}
	setup_all(_metadata, &self->g);
	tx_works(_metadata, &self->g);
}

TEST_F(memtab, live)
{
	struct vhost_memory_region r[2];

	setup_all(_metadata, &self->g);
	variant_table(&self->g, variant->gpa, variant->size, variant->uaddr,
		      variant->abs, r);
	CHECK(BY_IMPL(variant->ours, variant->ref_live),
	      set_regions(self->g.fd, r, 2));
	/* Failed or not, the rings still translate through a good table. */
	tx_works(_metadata, &self->g);
}

/* An empty table is legal; a live ring then fails on its next buffer. */
TEST_F(vhost, mem_table_emptied_under_live_ring)
{
	setup_all(_metadata, &self->g);
	tx_works(_metadata, &self->g);
	CHECK(0, set_regions(self->g.fd, NULL, 0));
	tx_post(&self->g, FRAME_LEN);
	ASSERT_TRUE(wait_readable(self->g.err[TX], WAIT_MS)) {
		TH_LOG("no error signal for a buffer outside the table");
	}
	ASSERT_NE(self->g.tx_avail, used_idx(&self->g, TX));
	CHECK(0, set_good_table(&self->g));
	rearm(_metadata, &self->g, TX);
	tx_works(_metadata, &self->g);
}

/* ---- VHOST_SET_VRING_NUM / BASE ---------------------------------------- */

TEST_F(vhost, vring_num)
{
	int fd = self->g.fd;

	CHECK(EINVAL, vring_state(fd, VHOST_SET_VRING_NUM, TX, 0));
	CHECK(EINVAL, vring_state(fd, VHOST_SET_VRING_NUM, TX, 3));
	CHECK(EINVAL, vring_state(fd, VHOST_SET_VRING_NUM, TX, 1000));
	CHECK(EINVAL, vring_state(fd, VHOST_SET_VRING_NUM, TX, 65536));
	CHECK(EINVAL, vring_state(fd, VHOST_SET_VRING_NUM, TX, 0xffffffffU));
	CHECK(ENOBUFS, vring_state(fd, VHOST_SET_VRING_NUM, 2, RING_NUM));
	CHECK(ENOBUFS, vring_state(fd, VHOST_SET_VRING_NUM, 0xffffffffU, 1));
	CHECK(EFAULT, ioctl(fd, VHOST_SET_VRING_NUM, NULL));
	CHECK(0, vring_state(fd, VHOST_SET_VRING_NUM, TX, 1));
	CHECK(0, vring_state(fd, VHOST_SET_VRING_NUM, TX, 32768));
	setup_all(_metadata, &self->g);
	/* No resizing under a live backend. */
	CHECK(EBUSY, vring_state(fd, VHOST_SET_VRING_NUM, TX, 16));
	tx_works(_metadata, &self->g);
}

TEST_F(vhost, vring_base)
{
	struct vhost_vring_state s = { .index = TX };
	int fd = self->g.fd;

	CHECK(EINVAL, vring_state(fd, VHOST_SET_VRING_BASE, TX, 0x10000));
	CHECK(EINVAL, vring_state(fd, VHOST_SET_VRING_BASE, TX, 0xffffffffU));
	CHECK(ENOBUFS, vring_state(fd, VHOST_SET_VRING_BASE, 2, 0));
	CHECK(ENOBUFS, vring_state(fd, VHOST_GET_VRING_BASE, 2, 0));
	CHECK(EFAULT, ioctl(fd, VHOST_SET_VRING_BASE, NULL));
	CHECK(EFAULT, ioctl(fd, VHOST_GET_VRING_BASE, NULL));
	CHECK(0, vring_state(fd, VHOST_SET_VRING_BASE, TX, 0xffff));
	CHECK(0, ioctl(fd, VHOST_GET_VRING_BASE, &s));
	ASSERT_EQ(0xffff, s.num);
	setup_all(_metadata, &self->g);
	CHECK(EBUSY, vring_state(fd, VHOST_SET_VRING_BASE, TX, 0));
	tx_works(_metadata, &self->g);
}

/*
 * GET_VRING_BASE on a live ring reports where it stands.  Ours also stops
 * the ring there, so that the reported index stays true, until the ring
 * is restarted; upstream keeps running.
 */
TEST_F(vhost, vring_get_base_live)
{
	struct vhost_vring_state s = { .index = TX };
	int fd = self->g.fd;

	setup_all(_metadata, &self->g);
	tx_works(_metadata, &self->g);
	CHECK(0, ioctl(fd, VHOST_GET_VRING_BASE, &s));
	ASSERT_EQ(self->g.tx_avail, s.num);
	tx_post(&self->g, FRAME_LEN);
	if (impl == IMPL_OURS) {
		ASSERT_FALSE(tx_done(&self->g, 500)) {
			TH_LOG("ring kept running after GET_VRING_BASE");
		}
		/* Attaching the same tap again is a no-op for both. */
		CHECK(0, set_backend(fd, TX, self->g.tap));
		TH_LOG("same backend again %s the halted ring",
		       tx_done(&self->g, 500) ? "restarts" : "does not restart");
	} else {
		ASSERT_TRUE(tx_done(&self->g, WAIT_MS));
	}
	/* Detach and attach: what QEMU does on stop and start. */
	CHECK(0, set_backend(fd, TX, -1));
	CHECK(0, set_backend(fd, TX, self->g.tap));
	ASSERT_TRUE(tx_done(&self->g, WAIT_MS));
	tx_works(_metadata, &self->g);
}

/* ---- VHOST_SET_VRING_ADDR ---------------------------------------------- */

TEST_F(vhost, vring_addr_bad_flags_and_index)
{
	struct vhost_vring_addr a = good_addr(&self->g, TX);

	a.flags = 1U << 1;
	CHECK(EOPNOTSUPP, ioctl(self->g.fd, VHOST_SET_VRING_ADDR, &a));
	a.flags = ~0U;
	CHECK(EOPNOTSUPP, ioctl(self->g.fd, VHOST_SET_VRING_ADDR, &a));
	a = good_addr(&self->g, TX);
	a.index = 2;
	CHECK(ENOBUFS, ioctl(self->g.fd, VHOST_SET_VRING_ADDR, &a));
	a.index = 0xffffffffU;
	CHECK(ENOBUFS, ioctl(self->g.fd, VHOST_SET_VRING_ADDR, &a));
	CHECK(EFAULT, ioctl(self->g.fd, VHOST_SET_VRING_ADDR, NULL));
	setup_all(_metadata, &self->g);
	tx_works(_metadata, &self->g);
}

TEST_F(vhost, vring_addr_misaligned)
{
	struct vhost_vring_addr a;

	a = good_addr(&self->g, TX);
	a.avail_user_addr += 1;
	CHECK(EINVAL, ioctl(self->g.fd, VHOST_SET_VRING_ADDR, &a));
	a = good_addr(&self->g, TX);
	a.used_user_addr += 2;
	CHECK(EINVAL, ioctl(self->g.fd, VHOST_SET_VRING_ADDR, &a));
	a = good_addr(&self->g, TX);
	a.log_guest_addr += 2;
	a.flags = 1U << VHOST_VRING_F_LOG;
	CHECK(EINVAL, ioctl(self->g.fd, VHOST_SET_VRING_ADDR, &a));
	/*
	 * The descriptor table must be 16-byte aligned (virtio 1.x, 2.7.5).
	 * Ours enforces it; upstream does not check it at all.
	 */
	a = good_addr(&self->g, TX);
	a.desc_user_addr += 8;
	CHECK(BY_IMPL(EINVAL, 0), ioctl(self->g.fd, VHOST_SET_VRING_ADDR, &a));
	setup_all(_metadata, &self->g);
	/* Same checks on a live ring, which keeps its old addresses. */
	a = good_addr(&self->g, TX);
	a.used_user_addr += 2;
	CHECK(EINVAL, ioctl(self->g.fd, VHOST_SET_VRING_ADDR, &a));
	a = good_addr(&self->g, TX);
	a.avail_user_addr += 1;
	CHECK(EINVAL, ioctl(self->g.fd, VHOST_SET_VRING_ADDR, &a));
	tx_works(_metadata, &self->g);
}

/*
 * Ring addresses in kernel space.  With a size known, ours refuses them at
 * once (EFAULT); upstream only checks when a backend is attached, and then
 * says EINVAL for SET_VRING_ADDR but EFAULT for SET_BACKEND.
 */
TEST_F(vhost, vring_addr_kernel_idle)
{
	struct vhost_vring_addr a = good_addr(&self->g, TX);

	ASSERT_EQ(0, open_tap(&self->g));
	CHECK(0, set_good_table(&self->g));
	CHECK(0, vring_state(self->g.fd, VHOST_SET_VRING_NUM, TX, RING_NUM));
	a.used_user_addr = KERNEL_ADDR;
	CHECK(BY_IMPL(EFAULT, 0), ioctl(self->g.fd, VHOST_SET_VRING_ADDR, &a));
	a = good_addr(&self->g, TX);
	a.desc_user_addr = KERNEL_ADDR;
	CHECK(BY_IMPL(EFAULT, 0), ioctl(self->g.fd, VHOST_SET_VRING_ADDR, &a));
	a = good_addr(&self->g, TX);
	a.avail_user_addr = KERNEL_ADDR;
	CHECK(BY_IMPL(EFAULT, 0), ioctl(self->g.fd, VHOST_SET_VRING_ADDR, &a));
	/* Ours still has the addresses of no ring; upstream the kernel ones. */
	CHECK(EFAULT, set_backend(self->g.fd, TX, self->g.tap));
	setup_all(_metadata, &self->g);
	tx_works(_metadata, &self->g);
}

TEST_F(vhost, vring_addr_kernel_live)
{
	struct vhost_vring_addr a;

	setup_all(_metadata, &self->g);
	a = good_addr(&self->g, TX);
	a.used_user_addr = KERNEL_ADDR;
	CHECK(BY_IMPL(EFAULT, EINVAL),
	      ioctl(self->g.fd, VHOST_SET_VRING_ADDR, &a));
	a = good_addr(&self->g, TX);
	a.desc_user_addr = KERNEL_ADDR;
	CHECK(BY_IMPL(EFAULT, EINVAL),
	      ioctl(self->g.fd, VHOST_SET_VRING_ADDR, &a));
	tx_works(_metadata, &self->g);
}

/*
 * A used ring logged at a guest address whose bits lie beyond the end of
 * the log bitmap (past the top of user space): refused when the address
 * or the log base is set, not found out when the ring is first logged.
 * On a live ring upstream says EINVAL for SET_VRING_ADDR; ours EFAULT,
 * as for every address that does not fit.
 */
TEST_F(vhost, vring_addr_log_beyond_bitmap)
{
	struct vhost_vring_addr a;
	uint8_t *bitmap;

	bitmap = map_pages(1, PROT_READ | PROT_WRITE);
	ASSERT_TRUE(!!bitmap);
	setup_all(_metadata, &self->g);
	/* 2^50: its bits are 32 GiB into the bitmap.  No base yet: fine. */
	a = good_addr(&self->g, TX);
	a.flags = 1U << VHOST_VRING_F_LOG;
	a.log_guest_addr = 1ULL << 50;
	CHECK(0, ioctl(self->g.fd, VHOST_SET_VRING_ADDR, &a));
	/* A base 4 GiB below the top of user space cannot hold them. */
	CHECK(EFAULT, set_log_base(self->g.fd, 0x7fff00000000ULL));
	CHECK(0, set_log_base(self->g.fd, uptr(bitmap)));
	/* 2^62: 2^59 bytes into any bitmap, beyond user space. */
	a.log_guest_addr = 1ULL << 62;
	CHECK(BY_IMPL(EFAULT, EINVAL),
	      ioctl(self->g.fd, VHOST_SET_VRING_ADDR, &a));
	a = good_addr(&self->g, TX);
	CHECK(0, ioctl(self->g.fd, VHOST_SET_VRING_ADDR, &a));
	tx_works(_metadata, &self->g);
	munmap(bitmap, PAGE);
}

/* Rings in memory the owner cannot touch: SET_BACKEND must say EFAULT. */
TEST_F(vhost, backend_on_unreadable_rings)
{
	struct vhost_vring_addr a = good_addr(&self->g, TX);
	uint8_t *none, *ro;

	none = map_pages(3, PROT_NONE);
	ro = map_pages(3, PROT_READ);
	ASSERT_TRUE(!!none);
	ASSERT_TRUE(!!ro);
	ASSERT_EQ(0, open_tap(&self->g));
	CHECK(0, set_good_table(&self->g));
	CHECK(0, set_vring(&self->g, TX));

	a.desc_user_addr = uptr(none);
	a.avail_user_addr = uptr(none + PAGE);
	a.used_user_addr = uptr(none + 2 * PAGE);
	CHECK(0, ioctl(self->g.fd, VHOST_SET_VRING_ADDR, &a));
	CHECK(EFAULT, set_backend(self->g.fd, TX, self->g.tap));

	/* A used ring the device cannot write. */
	a = good_addr(&self->g, TX);
	a.used_user_addr = uptr(ro + 2 * PAGE);
	CHECK(0, ioctl(self->g.fd, VHOST_SET_VRING_ADDR, &a));
	CHECK(EFAULT, set_backend(self->g.fd, TX, self->g.tap));

	/* Unmapped after SET_VRING_ADDR: same answer. */
	a = good_addr(&self->g, TX);
	a.used_user_addr = uptr(none + 2 * PAGE);
	ASSERT_EQ(0, munmap(none, 3 * PAGE));
	CHECK(0, ioctl(self->g.fd, VHOST_SET_VRING_ADDR, &a));
	CHECK(EFAULT, set_backend(self->g.fd, TX, self->g.tap));
	munmap(ro, 3 * PAGE);

	setup_all(_metadata, &self->g);
	tx_works(_metadata, &self->g);
}

/*
 * Only the used ring is touched at attach time; an unreadable avail ring
 * shows up when the guest kicks, as a signal on the error eventfd.
 */
TEST_F(vhost, unreadable_avail_signals_err)
{
	struct vhost_vring_addr a;
	uint8_t *none;
	uint64_t one = 1;

	none = map_pages(2, PROT_NONE);
	ASSERT_TRUE(!!none);
	setup_all(_metadata, &self->g);
	CHECK(0, set_backend(self->g.fd, TX, -1));
	a = good_addr(&self->g, TX);
	a.desc_user_addr = uptr(none);
	a.avail_user_addr = uptr(none + PAGE);
	CHECK(0, ioctl(self->g.fd, VHOST_SET_VRING_ADDR, &a));
	CHECK(0, set_backend(self->g.fd, TX, self->g.tap));
	ASSERT_EQ(sizeof(one), write(self->g.kick[TX], &one, sizeof(one)));
	ASSERT_TRUE(wait_readable(self->g.err[TX], WAIT_MS)) {
		TH_LOG("no error signal for an unreadable avail ring");
	}
	rearm(_metadata, &self->g, TX);
	tx_works(_metadata, &self->g);
	munmap(none, 2 * PAGE);
}

/* ---- VHOST_NET_SET_BACKEND --------------------------------------------- */

static void rings_ready(struct __test_metadata *_metadata, struct guest *g)
{
	unsigned int i;

	ASSERT_EQ(0, open_tap(g));
	CHECK(0, set_features(g->fd, 1ULL << VIRTIO_F_VERSION_1));
	CHECK(0, set_good_table(g));
	for (i = 0; i < NVQ; i++) {
		CHECK(0, set_vring(g, i));
		CHECK(0, set_vring_files(g, i));
	}
}

TEST_F(vhost, backend_not_a_socket)
{
	int p[2], efd, nfd;

	rings_ready(_metadata, &self->g);
	ASSERT_EQ(0, pipe(p));
	efd = eventfd(0, 0);
	nfd = open("/dev/null", O_RDWR);
	ASSERT_LE(0, efd);
	ASSERT_LE(0, nfd);
	CHECK(ENOTSOCK, set_backend(self->g.fd, TX, p[0]));
	CHECK(ENOTSOCK, set_backend(self->g.fd, RX, p[1]));
	CHECK(ENOTSOCK, set_backend(self->g.fd, TX, efd));
	CHECK(ENOTSOCK, set_backend(self->g.fd, TX, nfd));
	CHECK(ENOTSOCK, set_backend(self->g.fd, TX, self->g.fd));
	close(p[0]);
	close(p[1]);
	close(efd);
	close(nfd);
	CHECK(0, set_backend(self->g.fd, TX, self->g.tap));
	CHECK(0, set_backend(self->g.fd, RX, self->g.tap));
	tx_works(_metadata, &self->g);
}

TEST_F(vhost, backend_wrong_socket)
{
	static const struct {
		int family, type, proto;
		const char *name;
		int ours, ref;
	} socks[] = {
		{ AF_INET, SOCK_STREAM, 0, "tcp", ENOTSOCK, ENOTSOCK },
		{ AF_INET, SOCK_DGRAM, 0, "udp", ENOTSOCK, ENOTSOCK },
		{ AF_INET6, SOCK_DGRAM, 0, "udp6", ENOTSOCK, ENOTSOCK },
		{ AF_UNIX, SOCK_STREAM, 0, "unix", ENOTSOCK, ENOTSOCK },
		{ AF_PACKET, SOCK_DGRAM, 0, "packet dgram", ENOTSOCK, ENOTSOCK },
		/*
		 * A raw socket of the wrong family: ours names the problem,
		 * upstream folds every failure into ENOTSOCK.
		 */
		{ AF_INET, SOCK_RAW, IPPROTO_UDP, "raw inet", EPFNOSUPPORT,
		  ENOTSOCK },
	};
	unsigned int i;
	int s;

	rings_ready(_metadata, &self->g);
	for (i = 0; i < ARRAY_SIZE(socks); i++) {
		s = socket(socks[i].family, socks[i].type, socks[i].proto);
		if (s < 0) {
			TH_LOG("no %s socket: %s", socks[i].name,
			       strerror(errno));
			continue;
		}
		TH_LOG("%s socket", socks[i].name);
		CHECK(BY_IMPL(socks[i].ours, socks[i].ref),
		      set_backend(self->g.fd, TX, s));
		close(s);
	}
	/* A raw AF_PACKET socket is a valid backend in both. */
	s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
	ASSERT_LE(0, s);
	CHECK(0, set_backend(self->g.fd, TX, s));
	CHECK(0, set_backend(self->g.fd, TX, -1));
	close(s);
	CHECK(0, set_backend(self->g.fd, TX, self->g.tap));
	CHECK(0, set_backend(self->g.fd, RX, self->g.tap));
	tx_works(_metadata, &self->g);
}

TEST_F(vhost, backend_bad_fd_and_index)
{
	rings_ready(_metadata, &self->g);
	/* Ours reports a closed fd as such; upstream says ENOTSOCK. */
	CHECK(BY_IMPL(EBADF, ENOTSOCK), set_backend(self->g.fd, TX, closed_fd()));
	CHECK(BY_IMPL(EBADF, ENOTSOCK), set_backend(self->g.fd, TX, -2));
	CHECK(BY_IMPL(EBADF, ENOTSOCK), set_backend(self->g.fd, TX, 1 << 30));
	CHECK(ENOBUFS, set_backend(self->g.fd, 2, self->g.tap));
	CHECK(ENOBUFS, set_backend(self->g.fd, 0xffffffffU, self->g.tap));
	CHECK(ENOBUFS, set_backend(self->g.fd, 2, -1));
	CHECK(EFAULT, ioctl(self->g.fd, VHOST_NET_SET_BACKEND, NULL));
	CHECK(0, set_backend(self->g.fd, TX, self->g.tap));
	/* The same backend again is a no-op in both. */
	CHECK(0, set_backend(self->g.fd, TX, self->g.tap));
	CHECK(0, set_backend(self->g.fd, RX, self->g.tap));
	tx_works(_metadata, &self->g);
}

TEST_F(vhost, backend_detach_when_none)
{
	/*
	 * Upstream checks the rings (memory table included) before it even
	 * looks at the fd, so detaching needs a table there.  Ours lets an
	 * fd -1 through on a bare device.
	 */
	CHECK(BY_IMPL(0, EFAULT), set_backend(self->g.fd, TX, -1));
	CHECK(0, set_good_table(&self->g));
	CHECK(0, set_backend(self->g.fd, TX, -1));
	CHECK(0, set_backend(self->g.fd, RX, -1));
	setup_all(_metadata, &self->g);
	tx_works(_metadata, &self->g);
	CHECK(0, set_backend(self->g.fd, TX, -1));
	CHECK(0, set_backend(self->g.fd, TX, -1));
	rearm(_metadata, &self->g, TX);
	tx_works(_metadata, &self->g);
}

TEST_F(vhost, backend_unconfigured_ring)
{
	ASSERT_EQ(0, open_tap(&self->g));
	CHECK(0, set_good_table(&self->g));
	/* No size, no addresses. */
	CHECK(EFAULT, set_backend(self->g.fd, TX, self->g.tap));
	/* A size but no addresses. */
	CHECK(0, vring_state(self->g.fd, VHOST_SET_VRING_NUM, TX, RING_NUM));
	CHECK(EFAULT, set_backend(self->g.fd, TX, self->g.tap));
	setup_all(_metadata, &self->g);
	tx_works(_metadata, &self->g);
}

/* ---- eventfds ---------------------------------------------------------- */

TEST_F(vhost, vring_eventfds)
{
	static const unsigned long cmds[] = {
		VHOST_SET_VRING_KICK, VHOST_SET_VRING_CALL, VHOST_SET_VRING_ERR,
	};
	int fd = self->g.fd, p[2], s, bad, i;

	ASSERT_EQ(0, pipe(p));
	s = socket(AF_UNIX, SOCK_DGRAM, 0);
	ASSERT_LE(0, s);
	bad = closed_fd();
	ASSERT_LE(0, bad);
	for (i = 0; i < 3; i++) {
		TH_LOG("cmd 0x%lx", cmds[i]);
		CHECK(EINVAL, vring_file(fd, cmds[i], TX, p[0]));
		CHECK(EINVAL, vring_file(fd, cmds[i], TX, s));
		CHECK(EINVAL, vring_file(fd, cmds[i], TX, fd));
		CHECK(EBADF, vring_file(fd, cmds[i], TX, bad));
		CHECK(EBADF, vring_file(fd, cmds[i], TX, -2));
		CHECK(ENOBUFS, vring_file(fd, cmds[i], 2, -1));
		CHECK(EFAULT, ioctl(fd, cmds[i], NULL));
		CHECK(0, vring_file(fd, cmds[i], TX, -1));
		CHECK(0, vring_file(fd, cmds[i], TX, -1));
	}
	CHECK(EINVAL, ioctl(fd, VHOST_SET_LOG_FD, &p[0]));
	CHECK(EBADF, ioctl(fd, VHOST_SET_LOG_FD, &bad));
	CHECK(EFAULT, ioctl(fd, VHOST_SET_LOG_FD, NULL));
	i = -1;
	CHECK(0, ioctl(fd, VHOST_SET_LOG_FD, &i));
	setup_all(_metadata, &self->g);
	/* Live: bad files are refused, the ring keeps its eventfds. */
	for (i = 0; i < 3; i++) {
		CHECK(EINVAL, vring_file(fd, cmds[i], TX, p[1]));
		CHECK(EBADF, vring_file(fd, cmds[i], TX, bad));
	}
	tx_works(_metadata, &self->g);
	/* Same eventfd twice, then swap kick for another eventfd. */
	CHECK(0, vring_file(fd, VHOST_SET_VRING_KICK, TX, self->g.kick[TX]));
	close(self->g.kick[TX]);
	self->g.kick[TX] = eventfd(0, EFD_CLOEXEC);
	ASSERT_LE(0, self->g.kick[TX]);
	CHECK(0, vring_file(fd, VHOST_SET_VRING_KICK, TX, self->g.kick[TX]));
	tx_works(_metadata, &self->g);
	/* No call or err eventfd: the device runs silently. */
	CHECK(0, vring_file(fd, VHOST_SET_VRING_CALL, TX, -1));
	CHECK(0, vring_file(fd, VHOST_SET_VRING_ERR, TX, -1));
	tx_works(_metadata, &self->g);
	close(p[0]);
	close(p[1]);
	close(s);
}

/* ---- features and dirty log -------------------------------------------- */

TEST_F(vhost, features_unknown_bits)
{
	uint64_t offered = 0;
	int bit;

	CHECK(0, ioctl(self->g.fd, VHOST_GET_FEATURES, &offered));
	CHECK(EOPNOTSUPP, set_features(self->g.fd, ~offered));
	for (bit = 63; bit >= 0; bit--) {
		if (offered & (1ULL << bit))
			continue;
		CHECK(EOPNOTSUPP,
		      set_features(self->g.fd, (offered | (1ULL << bit))));
	}
	CHECK(EFAULT, ioctl(self->g.fd, VHOST_SET_FEATURES, NULL));
	CHECK(EFAULT, ioctl(self->g.fd, VHOST_GET_FEATURES, NULL));
	setup_all(_metadata, &self->g);
	tx_works(_metadata, &self->g);
}

TEST_F(vhost, backend_features)
{
	uint64_t offered = ~0ULL, v;
	int bit;

	CHECK(0, ioctl(self->g.fd, VHOST_GET_BACKEND_FEATURES, &offered));
	TH_LOG("backend features 0x%llx", (unsigned long long)offered);
	/* Ours has no IOTLB, so nothing to offer; upstream has MSG_V2. */
	ASSERT_EQ(BY_IMPL(0ULL, 1ULL << VHOST_BACKEND_F_IOTLB_MSG_V2),
		  offered);
	for (bit = 63; bit >= 0; bit--) {
		if (offered & (1ULL << bit))
			continue;
		v = offered | (1ULL << bit);
		CHECK(EOPNOTSUPP,
		      ioctl(self->g.fd, VHOST_SET_BACKEND_FEATURES, &v));
	}
	CHECK(0, ioctl(self->g.fd, VHOST_SET_BACKEND_FEATURES, &offered));
	v = 0;
	CHECK(0, ioctl(self->g.fd, VHOST_SET_BACKEND_FEATURES, &v));
	CHECK(EFAULT, ioctl(self->g.fd, VHOST_SET_BACKEND_FEATURES, NULL));
	CHECK(EFAULT, ioctl(self->g.fd, VHOST_GET_BACKEND_FEATURES, NULL));
	setup_all(_metadata, &self->g);
	tx_works(_metadata, &self->g);
}

/* LOG_ALL without a log base is accepted by both: nothing is logged yet. */
TEST_F(vhost, log_all_without_log_base)
{
	uint64_t f = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VHOST_F_LOG_ALL);

	CHECK(0, set_features(self->g.fd, f));
	setup_all(_metadata, &self->g);
	CHECK(0, set_features(self->g.fd, f));
	tx_works(_metadata, &self->g);
}

/*
 * A dirty bitmap in kernel space.  Ours checks it against the memory
 * table when it is set; upstream only when a live ring would log to it.
 */
TEST_F(vhost, log_base_kernel_idle)
{
	uint64_t f = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VHOST_F_LOG_ALL);
	uint8_t *bitmap;

	bitmap = map_pages(1, PROT_READ | PROT_WRITE);
	ASSERT_TRUE(!!bitmap);
	ASSERT_EQ(0, open_tap(&self->g));
	CHECK(0, set_good_table(&self->g));
	CHECK(BY_IMPL(EFAULT, 0), set_log_base(self->g.fd, KERNEL_ADDR));
	CHECK(0, set_features(self->g.fd, f));
	CHECK(0, set_vring(&self->g, TX));
	/* Upstream refuses to start logging into it. */
	CHECK(BY_IMPL(0, EFAULT), set_backend(self->g.fd, TX, self->g.tap));
	/* Upstream checks the rings even to detach: that fails too. */
	CHECK(BY_IMPL(0, EFAULT), set_backend(self->g.fd, TX, -1));
	CHECK(EFAULT, ioctl(self->g.fd, VHOST_SET_LOG_BASE, NULL));
	CHECK(0, set_log_base(self->g.fd, uptr(bitmap)));
	CHECK(0, set_backend(self->g.fd, TX, -1));
	setup_all(_metadata, &self->g);
	tx_works(_metadata, &self->g);
	munmap(bitmap, PAGE);
}

TEST_F(vhost, log_base_kernel_live)
{
	uint64_t f = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VHOST_F_LOG_ALL);
	uint8_t *bitmap;

	bitmap = map_pages(1, PROT_READ | PROT_WRITE);
	ASSERT_TRUE(!!bitmap);
	setup_all(_metadata, &self->g);
	/* Not logging yet: ours still refuses, upstream has nothing to check. */
	CHECK(BY_IMPL(EFAULT, 0), set_log_base(self->g.fd, KERNEL_ADDR));
	CHECK(0, set_log_base(self->g.fd, uptr(bitmap)));
	CHECK(0, set_features(self->g.fd, f));
	tx_works(_metadata, &self->g);
	/* Logging on a live ring: both refuse and keep the old bitmap. */
	CHECK(EFAULT, set_log_base(self->g.fd, KERNEL_ADDR));
	tx_works(_metadata, &self->g);
	munmap(bitmap, PAGE);
}

/* ---- life cycle -------------------------------------------------------- */

/*
 * Full QEMU-style setup and teardown, 200 times, ending four different
 * ways; kmemleak at the end of the VM run tells whether anything leaked.
 */
TEST_F_TIMEOUT(vhost, open_close_full_setup, 900)
{
	struct guest *g = &self->g;
	int i, fd;

	ASSERT_EQ(0, open_tap(g));
	close_fd(&g->fd);
	for (i = 0; i < 200; i++) {
		fd = open("/dev/vhost-net", O_RDWR | O_CLOEXEC);
		ASSERT_LE(0, fd);
		g->fd = fd;
		CHECK(0, ioctl(fd, VHOST_SET_OWNER, NULL));
		ASSERT_EQ(0, guest_setup_fd(g)) {
			TH_LOG("round %d: %s", i, strerror(errno));
		}
		switch (i % 4) {
		case 0:		/* close with both backends attached */
			break;
		case 1:		/* what QEMU does on vhost_dev_stop */
			CHECK(0, set_backend(fd, TX, -1));
			CHECK(0, set_backend(fd, RX, -1));
			CHECK(0, vring_state(fd, VHOST_GET_VRING_BASE, TX, 0));
			CHECK(0, vring_state(fd, VHOST_GET_VRING_BASE, RX, 0));
			break;
		case 2:
			CHECK(0, ioctl(fd, VHOST_RESET_OWNER, NULL));
			break;
		case 3:		/* one frame through first */
			tx_works(_metadata, g);
			break;
		}
		close_fd(&g->fd);
	}
}

/* The tap fd goes first; vhost keeps the device alive until it lets go. */
TEST_F(vhost, close_tap_while_attached)
{
	char name[IFNAMSIZ];

	setup_all(_metadata, &self->g);
	memcpy(name, self->g.ifname, IFNAMSIZ);
	close_fd(&self->g.tap);
	tx_works(_metadata, &self->g);
	ASSERT_NE(0, if_nametoindex(name));
	CHECK(0, set_backend(self->g.fd, TX, -1));
	tx_post(&self->g, FRAME_LEN);
	close_fd(&self->g.fd);
	ASSERT_TRUE(netdev_gone(name)) {
		TH_LOG("%s outlived every file that used it", name);
	}
}

/* The vhost fd goes first, backend attached and frames in flight. */
TEST_F(vhost, close_vhost_while_attached)
{
	char name[IFNAMSIZ];
	int i;

	setup_all(_metadata, &self->g);
	memcpy(name, self->g.ifname, IFNAMSIZ);
	for (i = 0; i < 32; i++)
		tx_post(&self->g, 1000);
	close_fd(&self->g.fd);
	/* The same tap serves a new vhost device. */
	self->g.fd = open("/dev/vhost-net", O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->g.fd);
	CHECK(0, ioctl(self->g.fd, VHOST_SET_OWNER, NULL));
	setup_all(_metadata, &self->g);
	tx_works(_metadata, &self->g);
	close_fd(&self->g.fd);
	close_fd(&self->g.tap);
	ASSERT_TRUE(netdev_gone(name)) {
		TH_LOG("%s outlived every file that used it", name);
	}
}

/* Traffic queued both ways on an up tap, then the vhost fd closes. */
TEST_F(vhost, close_with_pending_traffic)
{
	struct vring_desc *desc = (struct vring_desc *)ring(&self->g, RX, DESC_OFF);
	struct vring_avail *avail = (struct vring_avail *)ring(&self->g, RX, AVAIL_OFF);
	struct ifreq ifr = { };
	char name[IFNAMSIZ];
	int i, s;

	setup_all(_metadata, &self->g);
	memcpy(name, self->g.ifname, IFNAMSIZ);
	s = socket(AF_INET, SOCK_DGRAM, 0);
	ASSERT_LE(0, s);
	memcpy(ifr.ifr_name, name, IFNAMSIZ);
	ifr.ifr_flags = IFF_UP;
	CHECK(0, ioctl(s, SIOCSIFFLAGS, &ifr));
	close(s);
	/* A few RX buffers, fewer than what the stack may send us. */
	for (i = 0; i < 4; i++) {
		desc[i].addr = GPA_BASE + BUF_OFF + (128 + i) * BUF_SIZE;
		desc[i].len = BUF_SIZE;
		desc[i].flags = VRING_DESC_F_WRITE;
		avail->ring[i] = i;
	}
	__atomic_store_n(&avail->idx, 4, __ATOMIC_RELEASE);
	for (i = 0; i < 64; i++)
		tx_post(&self->g, i & 1 ? 1400 : 100);
	usleep(100000);
	close_fd(&self->g.fd);
	close_fd(&self->g.tap);
	ASSERT_TRUE(netdev_gone(name));
}

/*
 * The owner dies first and another process holding the fd closes it: the
 * worker was a thread of the dead owner, its mm is gone.
 */
TEST(owner_exits_before_close)
{
	char name[IFNAMSIZ];
	struct guest g;
	int status, fd;
	pid_t pid;

	if (access("/dev/vhost-net", F_OK))
		SKIP(return, "no /dev/vhost-net");
	ASSERT_EQ(0, guest_open(&g, false));
	ASSERT_EQ(0, open_tap(&g));
	memcpy(name, g.ifname, IFNAMSIZ);
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		if (ioctl(g.fd, VHOST_SET_OWNER, NULL) || guest_setup_fd(&g))
			_exit(1);
		tx_post(&g, FRAME_LEN);
		tx_post(&g, 1000);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	CHECK(EBUSY, ioctl(g.fd, VHOST_SET_OWNER, NULL));
	CHECK(EPERM, set_good_table(&g));
	CHECK(EPERM, ioctl(g.fd, VHOST_RESET_OWNER, NULL));
	fd = g.fd;
	g.fd = -1;
	close(fd);
	guest_close(&g);
	ASSERT_TRUE(netdev_gone(name));
}

TEST_HARNESS_MAIN
