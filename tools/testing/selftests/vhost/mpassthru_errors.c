// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/mpassthru: the binding rules, untrusted ioctl and write input, and
 * the tap-compatible descriptor moving frames both ways, every byte
 * checked.
 *
 * $MP_IF is a NIC this test may bind (a virtio-net NIC on a QEMU hub) and
 * $MP_PEER the other NIC on that hub, where an AF_PACKET socket sees what
 * the bound NIC sends and sends what it must receive.  Builds as a 32-bit
 * program too (gcc -m32): the ABI needs no compat translation, and this
 * proves it against the 64-bit kernel.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <linux/capability.h>
#include <linux/if_tun.h>

#include "mpassthru_lib.h"
#include "../kselftest_harness.h"

#define HDR_LEN		sizeof(struct virtio_net_hdr_v1)	/* 12 */
#define NFRAMES		200
#define WAIT_MS		5000

static const char *env_if(struct __test_metadata *_metadata, const char *name)
{
	const char *v = getenv(name);

	if (!v || !*v)
		SKIP(return NULL, "%s not set (the mpassthru VM suite sets it)",
		     name);
	return v;
}

static int mp_open(void)
{
	return open("/dev/mpassthru", O_RDWR | O_CLOEXEC);
}

/* The ABI is the same on 32-bit and 64-bit: sizes and offsets pinned. */
TEST(abi_layout)
{
	EXPECT_EQ(24U, sizeof(struct mpassthru_bind));
	EXPECT_EQ(128U, sizeof(struct mpassthru_info));
	EXPECT_EQ(24U, offsetof(struct mpassthru_info, ifname));
	EXPECT_EQ(40U, offsetof(struct mpassthru_info, stats));
	EXPECT_EQ(88U, sizeof(struct mpassthru_stats));
	/* 0xB9 is ours in ioctl-number.rst (0xB6 is fpga-dfl's). */
	EXPECT_EQ(0x4018b900U, (unsigned int)MPASSTHRU_BIND);
	EXPECT_EQ(0x0000b901U, (unsigned int)MPASSTHRU_UNBIND);
	EXPECT_EQ(0x8080b902U, (unsigned int)MPASSTHRU_GET_INFO);
}

/*
 * fpga-dfl's first ioctls (DFL_FPGA_GET_API_VERSION, and
 * DFL_FPGA_CHECK_EXTENSION, which MPASSTHRU_UNBIND once equalled) mean
 * nothing to us: ENOTTY, and a bound file stays bound.
 */
TEST(foreign_ioctl_numbers)
{
	int fd = mp_open();

	ASSERT_LE(0, fd);
	EXPECT_EQ(-1, ioctl(fd, _IO(0xB6, 0x00)));
	EXPECT_EQ(ENOTTY, errno);
	EXPECT_EQ(-1, ioctl(fd, _IO(0xB6, 0x01), 0UL));
	EXPECT_EQ(ENOTTY, errno);
	close(fd);
}

TEST(unbound_info)
{
	struct mpassthru_info info;
	int fd = mp_open();

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, mpt_info(fd, &info));
	EXPECT_EQ(MPASSTHRU_STATE_UNBOUND, info.state);
	EXPECT_EQ(0U, info.ifindex);
	EXPECT_EQ(0U, info.vnet_hdr_sz);
	EXPECT_EQ(0ULL, info.stats.tx_packets);
	EXPECT_EQ(-1, ioctl(fd, MPASSTHRU_GET_INFO, NULL));
	EXPECT_EQ(EFAULT, errno);
	close(fd);
}

TEST(bind_bad_arguments)
{
	struct mpassthru_bind b;
	int fd = mp_open();

	ASSERT_LE(0, fd);
	EXPECT_EQ(-1, mpt_bind(fd, "mp-no-such0", 0));
	EXPECT_EQ(ENODEV, errno);
	EXPECT_EQ(-1, mpt_bind(fd, "lo", 0));
	EXPECT_EQ(EOPNOTSUPP, errno);
	EXPECT_EQ(-1, mpt_bind(fd, "lo", 1U << 31));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, mpt_bind(fd, "", 0));
	EXPECT_EQ(EINVAL, errno);

	memset(&b, 0, sizeof(b));
	memcpy(b.ifname, "lo", 3);
	b.reserved = 1;
	EXPECT_EQ(-1, ioctl(fd, MPASSTHRU_BIND, &b));
	EXPECT_EQ(EINVAL, errno);
	/* A name that fills the field without its NUL. */
	memset(&b, 'x', sizeof(b.ifname));
	b.reserved = 0;
	b.flags = 0;
	EXPECT_EQ(-1, ioctl(fd, MPASSTHRU_BIND, &b));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, ioctl(fd, MPASSTHRU_BIND, NULL));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(-1, ioctl(fd, MPASSTHRU_BIND, (void *)16));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(-1, ioctl(fd, MPASSTHRU_UNBIND));
	EXPECT_EQ(ENXIO, errno);
	close(fd);
}

TEST(unbound_io)
{
	struct pollfd p = { .events = POLLIN | POLLOUT };
	uint8_t buf[64] = { 0 };
	int fd = mp_open();

	ASSERT_LE(0, fd);
	EXPECT_EQ(-1, read(fd, buf, sizeof(buf)));
	EXPECT_EQ(ENXIO, errno);
	EXPECT_EQ(-1, write(fd, buf, sizeof(buf)));
	EXPECT_EQ(ENXIO, errno);
	p.fd = fd;
	EXPECT_EQ(1, poll(&p, 1, 0));
	EXPECT_TRUE(p.revents & POLLHUP);
	close(fd);
}

TEST(tun_ioctls)
{
	struct ifreq ifr;
	int fd = mp_open(), v;

	ASSERT_LE(0, fd);
	EXPECT_EQ(-1, ioctl(fd, TUNGETIFF, &ifr));
	EXPECT_EQ(EBADFD, errno);
	ASSERT_EQ(0, ioctl(fd, TUNGETFEATURES, &v));
	EXPECT_EQ(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, v);
	v = 9;
	EXPECT_EQ(-1, ioctl(fd, TUNSETVNETHDRSZ, &v));
	EXPECT_EQ(EINVAL, errno);
	v = 4096;
	EXPECT_EQ(-1, ioctl(fd, TUNSETVNETHDRSZ, &v));
	EXPECT_EQ(EINVAL, errno);
	v = HDR_LEN;
	EXPECT_EQ(0, ioctl(fd, TUNSETVNETHDRSZ, &v));
	v = 0;
	EXPECT_EQ(0, ioctl(fd, TUNGETVNETHDRSZ, &v));
	EXPECT_EQ((int)HDR_LEN, v);
	EXPECT_EQ(-1, ioctl(fd, TUNSETVNETHDRSZ, NULL));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(-1, ioctl(fd, TUNSETOFFLOAD, 1UL << 30));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(0, ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 |
			   TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_UFO));
	v = 0;
	EXPECT_EQ(-1, ioctl(fd, TUNSETSNDBUF, &v));
	EXPECT_EQ(EINVAL, errno);
	v = 65536;
	EXPECT_EQ(0, ioctl(fd, TUNSETSNDBUF, &v));
	v = 0;
	EXPECT_EQ(0, ioctl(fd, TUNGETSNDBUF, &v));
	EXPECT_EQ(65536, v);
	v = 1;
	EXPECT_EQ(0, ioctl(fd, TUNSETVNETLE, &v));
	v = 0;
	EXPECT_EQ(0, ioctl(fd, TUNGETVNETLE, &v));
	EXPECT_EQ(1, v);
	/* The device is named by MPASSTHRU_BIND, not by TUNSETIFF. */
	memset(&ifr, 0, sizeof(ifr));
	EXPECT_EQ(-1, ioctl(fd, TUNSETIFF, &ifr));
	EXPECT_EQ(ENOTTY, errno);
	EXPECT_EQ(-1, ioctl(fd, TUNSETQUEUE, &ifr));
	EXPECT_EQ(ENOTTY, errno);
	close(fd);
}

/* One binding per NIC, one NIC per file; unbind gives it back. */
TEST(bind_rules)
{
	const char *ifname = env_if(_metadata, "MP_IF");
	struct mpassthru_info info;
	struct ifreq ifr;
	int a, b;

	if (!ifname)
		return;
	a = mp_open();
	b = mp_open();
	ASSERT_LE(0, a);
	ASSERT_LE(0, b);
	ASSERT_EQ(0, mpt_bind(a, ifname, MPASSTHRU_F_VNET_HDR)) {
		TH_LOG("bind %s: %s", ifname, strerror(errno));
	}
	ASSERT_EQ(0, mpt_info(a, &info));
	EXPECT_EQ(MPASSTHRU_STATE_BOUND, info.state);
	EXPECT_EQ(if_nametoindex(ifname), info.ifindex);
	EXPECT_STREQ(ifname, info.ifname);
	EXPECT_EQ(MPASSTHRU_F_VNET_HDR, info.flags);
	EXPECT_EQ(sizeof(struct virtio_net_hdr), info.vnet_hdr_sz);

	/* What QEMU asks of a "-netdev tap,fd=N" descriptor. */
	memset(&ifr, 0, sizeof(ifr));
	ASSERT_EQ(0, ioctl(a, TUNGETIFF, &ifr));
	EXPECT_STREQ(ifname, ifr.ifr_name);
	EXPECT_EQ(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, ifr.ifr_flags);

	EXPECT_EQ(-1, mpt_bind(a, ifname, 0));
	EXPECT_EQ(EBUSY, errno);
	EXPECT_EQ(-1, mpt_bind(a, "lo", 0));
	EXPECT_EQ(EBUSY, errno);
	EXPECT_EQ(-1, mpt_bind(b, ifname, 0));
	EXPECT_EQ(EBUSY, errno);

	EXPECT_EQ(0, ioctl(a, MPASSTHRU_UNBIND));
	EXPECT_EQ(-1, ioctl(a, MPASSTHRU_UNBIND));
	EXPECT_EQ(ENXIO, errno);
	ASSERT_EQ(0, mpt_info(a, &info));
	EXPECT_EQ(MPASSTHRU_STATE_UNBOUND, info.state);
	EXPECT_EQ(0U, info.ifindex);

	EXPECT_EQ(0, mpt_bind(b, ifname, 0));
	EXPECT_EQ(0, ioctl(b, TUNGETIFF, &ifr));
	EXPECT_EQ(IFF_TAP | IFF_NO_PI, ifr.ifr_flags);
	/* Closing a bound file gives the NIC back too. */
	close(b);
	EXPECT_EQ(0, mpt_bind(a, ifname, 0));
	close(a);
}

static int drop_cap_net_admin(void)
{
	struct __user_cap_header_struct h = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d))
		return -1;
	d[CAP_NET_ADMIN / 32].effective &= ~(1U << (CAP_NET_ADMIN % 32));
	d[CAP_NET_ADMIN / 32].permitted &= ~(1U << (CAP_NET_ADMIN % 32));
	return syscall(SYS_capset, &h, d);
}

/*
 * Without CAP_NET_ADMIN a file opened by root still cannot take a NIC; a
 * user who is not root cannot open the device at all (mode 0600).
 */
TEST(eperm_without_cap_net_admin)
{
	const char *ifname = env_if(_metadata, "MP_IF");
	int fd, status;
	pid_t pid;

	if (!ifname)
		return;
	fd = mp_open();
	ASSERT_LE(0, fd);
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		if (drop_cap_net_admin())
			_exit(10);
		if (mpt_bind(fd, ifname, 0) == 0)
			_exit(11);
		if (errno != EPERM)
			_exit(12);
		if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
			_exit(13);
		if (mp_open() >= 0 || errno != EACCES)
			_exit(14);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status)) {
		TH_LOG("child step %d failed", WEXITSTATUS(status) - 10);
	}
	/* The refusal bound nothing. */
	EXPECT_EQ(0, mpt_bind(fd, ifname, 0));
	close(fd);
}

FIXTURE(tapfd) {
	int fd;
	int peer;
	int ifindex;
	uint8_t buf[HDR_LEN + 65536];
};

FIXTURE_SETUP(tapfd)
{
	const char *ifname = env_if(_metadata, "MP_IF");
	const char *peer = env_if(_metadata, "MP_PEER");
	int v = HDR_LEN;

	self->fd = -1;
	self->peer = -1;
	if (!ifname || !peer)
		return;
	self->fd = mp_open();
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, mpt_bind(self->fd, ifname, MPASSTHRU_F_VNET_HDR)) {
		TH_LOG("bind %s: %s", ifname, strerror(errno));
	}
	ASSERT_EQ(0, ioctl(self->fd, TUNSETVNETHDRSZ, &v));
	self->ifindex = if_nametoindex(peer);
	ASSERT_LT(0, self->ifindex);
	self->peer = mpt_peer_socket(self->ifindex);
	ASSERT_LE(0, self->peer) {
		TH_LOG("peer socket on %s: %s", peer, strerror(errno));
	}
}

FIXTURE_TEARDOWN(tapfd)
{
	if (self->fd >= 0)
		close(self->fd);
	if (self->peer >= 0)
		close(self->peer);
}

static ssize_t write_frame(int fd, uint32_t seq, size_t len)
{
	struct virtio_net_hdr_v1 h = { .gso_type = VIRTIO_NET_HDR_GSO_NONE };
	uint8_t f[MPT_MAX_FRAME];
	struct iovec iov[2] = {
		{ .iov_base = &h, .iov_len = sizeof(h) },
		{ .iov_base = f, .iov_len = len },
	};

	mpt_build(f, len, seq, mpt_mac_peer, mpt_mac_guest);
	return writev(fd, iov, 2);
}

/*
 * Read what @fd has (waiting up to @ms for the first frame): each of our
 * frames, found @off bytes in (after the virtio-net header of the
 * mpassthru file, or none on the peer's socket), must be frame *@next
 * from @src to @dst, intact.  Anything else on the wire is skipped.
 * Stops once *@next reaches NFRAMES.
 */
static void take_frames(struct __test_metadata *_metadata, int fd, size_t off,
			const uint8_t *dst, const uint8_t *src, uint8_t *buf,
			size_t size, uint32_t *next, int ms)
{
	const struct virtio_net_hdr_v1 *h = (void *)buf;
	ssize_t n;

	while (*next < NFRAMES && mpt_wait_in(fd, ms)) {
		n = read(fd, buf, size);
		ASSERT_LT((ssize_t)off, n);
		if (mpt_seq(buf + off, n - off) < 0)
			continue;
		if (off)
			EXPECT_EQ(VIRTIO_NET_HDR_GSO_NONE, h->gso_type);
		ASSERT_EQ(*next, mpt_seq(buf + off, n - off));
		ASSERT_TRUE(mpt_check(buf + off, n - off, *next,
				      mpt_frame_len(*next), dst, src)) {
			TH_LOG("frame %u differs", *next);
		}
		++*next;
	}
}

/* Guest to wire: every frame written arrives on the peer, intact. */
TEST_F(tapfd, write_frames_arrive)
{
	struct mpassthru_info info;
	unsigned long bytes = 0;
	uint32_t seq, next = 0;

	if (self->fd < 0)
		return;
	for (seq = 0; seq < NFRAMES; seq++) {
		size_t len = mpt_frame_len(seq);

		ASSERT_EQ((ssize_t)(HDR_LEN + len), write_frame(self->fd, seq, len));
		bytes += len;
		/* Read as we go: the hub does not queue much. */
		take_frames(_metadata, self->peer, 0, mpt_mac_peer, mpt_mac_guest,
			    self->buf, sizeof(self->buf), &next,
			    seq + 1 == NFRAMES ? WAIT_MS : 0);
	}
	EXPECT_EQ(NFRAMES, next);
	ASSERT_EQ(0, mpt_info(self->fd, &info));
	EXPECT_EQ(NFRAMES, info.stats.tx_packets);
	EXPECT_EQ(bytes, info.stats.tx_bytes);
	EXPECT_EQ(bytes, info.stats.tx_copy_bytes);
	EXPECT_EQ(0ULL, info.stats.tx_zcopy_bytes);
	EXPECT_EQ(0ULL, info.stats.tx_dropped);
}

/* Wire to guest: every frame sent on the peer is read, intact. */
TEST_F(tapfd, read_frames_arrive)
{
	struct mpassthru_info info;
	uint32_t seq, next = 0;

	if (self->fd < 0)
		return;
	fcntl(self->fd, F_SETFL, O_NONBLOCK);
	EXPECT_EQ(-1, read(self->fd, self->buf, sizeof(self->buf)));
	EXPECT_EQ(EAGAIN, errno);
	for (seq = 0; seq < NFRAMES; seq++) {
		size_t len = mpt_frame_len(seq);

		ASSERT_EQ((ssize_t)len, mpt_inject(self->peer, self->ifindex, seq, len));
		take_frames(_metadata, self->fd, HDR_LEN, mpt_mac_guest,
			    mpt_mac_peer, self->buf, sizeof(self->buf), &next,
			    seq + 1 == NFRAMES ? WAIT_MS : 0);
	}
	EXPECT_EQ(NFRAMES, next);
	ASSERT_EQ(0, mpt_info(self->fd, &info));
	EXPECT_LE(NFRAMES, info.stats.rx_packets);
	EXPECT_EQ(info.stats.rx_bytes, info.stats.rx_copy_bytes);
	EXPECT_EQ(0ULL, info.stats.rx_zcopy_bytes);
}

/* Untrusted frames: a clear errno each, and the device still works. */
TEST_F(tapfd, write_bad_frames)
{
	struct virtio_net_hdr_v1 h = { .gso_type = VIRTIO_NET_HDR_GSO_NONE };
	uint8_t f[MPT_MAX_FRAME];
	struct iovec iov[2] = {
		{ .iov_base = &h, .iov_len = sizeof(h) },
		{ .iov_base = f, .iov_len = 100 },
	};
	struct mpassthru_info info;
	static uint8_t big[HDR_LEN + 70000];
	void *unmapped = mmap(NULL, 4096, PROT_NONE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (self->fd < 0)
		return;
	mpt_build(f, sizeof(f), 0, mpt_mac_peer, mpt_mac_guest);
	/* Shorter than header plus an Ethernet header. */
	EXPECT_EQ(-1, write(self->fd, f, HDR_LEN + 13));
	EXPECT_EQ(EINVAL, errno);
	/* Headers longer than the frame. */
	h.hdr_len = htole16(200);
	EXPECT_EQ(-1, writev(self->fd, iov, 2));
	EXPECT_EQ(EINVAL, errno);
	/* Checksum offset past the frame. */
	h.hdr_len = 0;
	h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	h.csum_start = htole16(90);
	h.csum_offset = htole16(60);
	EXPECT_EQ(-1, writev(self->fd, iov, 2));
	EXPECT_EQ(EINVAL, errno);
	/* A GSO type nobody knows. */
	h.flags = 0;
	h.csum_start = 0;
	h.csum_offset = 0;
	h.gso_type = 0x77;
	h.gso_size = htole16(100);
	EXPECT_EQ(-1, writev(self->fd, iov, 2));
	EXPECT_EQ(EINVAL, errno);
	/* Larger than any Ethernet frame, even a GSO one. */
	EXPECT_EQ(-1, write(self->fd, big, sizeof(big)));
	EXPECT_EQ(EINVAL, errno);
	/* A buffer we cannot read. */
	ASSERT_TRUE(unmapped != MAP_FAILED);
	EXPECT_EQ(-1, write(self->fd, unmapped, 200));
	EXPECT_EQ(EFAULT, errno);

	ASSERT_EQ((ssize_t)(HDR_LEN + 100), write_frame(self->fd, 7, 100));
	ASSERT_TRUE(mpt_wait_in(self->peer, WAIT_MS));
	ASSERT_EQ(0, mpt_info(self->fd, &info));
	EXPECT_EQ(1ULL, info.stats.tx_packets);
	EXPECT_EQ(6ULL, info.stats.tx_dropped);
}

/*
 * A buffer smaller than the frame truncates it, as on a tap; one too small
 * for the header costs the frame (EINVAL) and counts it as dropped.
 */
TEST_F(tapfd, short_reads)
{
	struct mpassthru_info info;
	uint8_t f[MPT_MAX_FRAME];
	ssize_t n;

	if (self->fd < 0)
		return;
	ASSERT_EQ(1000, mpt_inject(self->peer, self->ifindex, 3, 1000));
	ASSERT_TRUE(mpt_wait_in(self->fd, WAIT_MS));
	n = read(self->fd, self->buf, HDR_LEN + 100);
	EXPECT_EQ((ssize_t)(HDR_LEN + 100), n);
	mpt_build(f, 1000, 3, mpt_mac_guest, mpt_mac_peer);
	EXPECT_EQ(0, memcmp(self->buf + HDR_LEN, f, 100));

	ASSERT_EQ(1000, mpt_inject(self->peer, self->ifindex, 4, 1000));
	ASSERT_TRUE(mpt_wait_in(self->fd, WAIT_MS));
	EXPECT_EQ(-1, read(self->fd, self->buf, HDR_LEN - 1));
	EXPECT_EQ(EINVAL, errno);
	ASSERT_EQ(0, mpt_info(self->fd, &info));
	EXPECT_LE(1ULL, info.stats.rx_dropped);
	fcntl(self->fd, F_SETFL, O_NONBLOCK);
	/* Only frames of ours count; anything else on the wire may come. */
	while ((n = read(self->fd, self->buf, sizeof(self->buf))) > 0)
		EXPECT_GT(0, mpt_seq(self->buf + HDR_LEN, n - HDR_LEN));
	EXPECT_EQ(EAGAIN, errno);
}

TEST_HARNESS_MAIN
