/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Frames for the mpassthru tests: a test ethertype, a magic, a sequence
 * number and a pattern, so that what arrives can be checked byte by byte
 * and told apart from anything else on the wire.  And the host side: an
 * AF_PACKET socket on the NIC that shares a QEMU hub with the bound one.
 */
#ifndef MPASSTHRU_LIB_H
#define MPASSTHRU_LIB_H

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/mpassthru.h>
#include <linux/virtio_net.h>

#define MPT_ETHERTYPE	0x88b5
#define MPT_MAGIC	0x4d505448U	/* "MPTH" */
#define MPT_MIN_FRAME	60
#define MPT_MAX_FRAME	1514

static const uint8_t mpt_mac_guest[6] = { 0x02, 0x4d, 0x50, 0x00, 0x00, 0x01 };
static const uint8_t mpt_mac_peer[6] = { 0x02, 0x4d, 0x50, 0x00, 0x00, 0x02 };

/* Frame sizes cycle from the minimum to the MTU. */
static inline size_t mpt_frame_len(uint32_t seq)
{
	return MPT_MIN_FRAME + (seq * 397) % (MPT_MAX_FRAME - MPT_MIN_FRAME + 1);
}

static inline void mpt_build(uint8_t *f, size_t len, uint32_t seq,
			     const uint8_t *dst, const uint8_t *src)
{
	uint32_t v;
	size_t i;

	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	f[12] = MPT_ETHERTYPE >> 8;
	f[13] = MPT_ETHERTYPE & 0xff;
	v = htonl(MPT_MAGIC);
	memcpy(f + 14, &v, 4);
	v = htonl(seq);
	memcpy(f + 18, &v, 4);
	for (i = 22; i < len; i++)
		f[i] = (uint8_t)(seq * 131 + i);
}

/* The sequence number of one of our frames, or -1 for anything else. */
static inline long mpt_seq(const uint8_t *f, size_t len)
{
	uint32_t v;

	if (len < 22 || f[12] != (MPT_ETHERTYPE >> 8) ||
	    f[13] != (MPT_ETHERTYPE & 0xff))
		return -1;
	memcpy(&v, f + 14, 4);
	if (ntohl(v) != MPT_MAGIC)
		return -1;
	memcpy(&v, f + 18, 4);
	return ntohl(v);
}

/* True if @f is exactly frame @seq of @len bytes (a NIC may pad to 60). */
static inline bool mpt_check(const uint8_t *f, size_t got, uint32_t seq,
			     size_t len, const uint8_t *dst,
			     const uint8_t *src)
{
	uint8_t want[MPT_MAX_FRAME];

	if (got < len)
		return false;
	mpt_build(want, len, seq, dst, src);
	return !memcmp(f, want, len);
}

/* An AF_PACKET socket on @ifindex that sees only what arrives there. */
static inline int mpt_peer_socket(int ifindex)
{
	struct sockaddr_ll sll = {
		.sll_family = AF_PACKET,
		.sll_protocol = htons(MPT_ETHERTYPE),
		.sll_ifindex = ifindex,
	};
	int one = 1, size = 8 << 20, fd;

	fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(MPT_ETHERTYPE));
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one,
		       sizeof(one)) ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) ||
	    bind(fd, (struct sockaddr *)&sll, sizeof(sll))) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The peer (@fd, on @ifindex) sends frame @seq of @len bytes to the guest. */
static inline ssize_t mpt_inject(int fd, int ifindex, uint32_t seq, size_t len)
{
	struct sockaddr_ll sll = {
		.sll_family = AF_PACKET,
		.sll_ifindex = ifindex,
		.sll_halen = 6,
	};
	uint8_t f[MPT_MAX_FRAME];

	memcpy(sll.sll_addr, mpt_mac_guest, 6);
	mpt_build(f, len, seq, mpt_mac_guest, mpt_mac_peer);
	return sendto(fd, f, len, 0, (struct sockaddr *)&sll, sizeof(sll));
}

/* Wait up to @ms for @fd to become readable. */
static inline bool mpt_wait_in(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

static inline int mpt_info(int fd, struct mpassthru_info *info)
{
	memset(info, 0, sizeof(*info));
	return ioctl(fd, MPASSTHRU_GET_INFO, info);
}

static inline int mpt_bind(int fd, const char *ifname, uint32_t flags)
{
	struct mpassthru_bind b = { .flags = flags };

	snprintf(b.ifname, sizeof(b.ifname), "%s", ifname);
	return ioctl(fd, MPASSTHRU_BIND, &b);
}

/*
 * A counter of the binding of @ifname from debugfs (the fields the info
 * ioctl does not carry: rx_zc, rx_posted, rx_lent, rx_too_small,
 * rx_driver_copied).  -1 if there is no such binding or field.
 */
static inline long long mpt_dbg_field(const char *ifname, const char *key)
{
	FILE *f = fopen("/sys/kernel/debug/mpassthru/bindings", "r");
	static const char sep[] = { ' ', '\n', 0 };
	char line[1024], want[64], *p;
	long long v = -1;

	if (!f)
		return -1;
	snprintf(want, sizeof(want), "file %s state 1 ", ifname);
	while (v < 0 && fgets(line, sizeof(line), f)) {
		if (strncmp(line, want, strlen(want)))
			continue;
		for (p = strtok(line, sep); p; p = strtok(NULL, sep))
			if (!strcmp(p, key)) {
				p = strtok(NULL, sep);
				v = p ? atoll(p) : -1;
				break;
			}
	}
	fclose(f);
	return v;
}

#endif /* MPASSTHRU_LIB_H */
