/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The host side of the simulated guest's network: backends for
 * VHOST_NET_SET_BACKEND (a tap, a macvtap, an AF_PACKET raw socket) and
 * the AF_PACKET sockets through which a test sees what the guest sent and
 * sends what the guest must receive.  Shared by the tests that drive
 * /dev/vhost-net with virtio_sim.h.
 *
 * Every function returns a file descriptor or 0 on success, and -1 with
 * errno set on failure; nothing asserts.
 */
#ifndef SIM_NET_H
#define SIM_NET_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
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

#include "mpassthru_lib.h"

/* The header every test negotiates: VERSION_1 (or MRG_RXBUF) layout. */
#define SIMNET_HDR_LEN		sizeof(struct virtio_net_hdr_v1)
#define SIMNET_OFFLOADS		(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
#define SIMNET_SOCKBUF		(64 << 20)

/*
 * Bring @ifname up without ARP or IPv6 autoconfiguration (nothing but the
 * test's own frames on the wire) and return its index in @ifindex.
 */
/* Close @fd on a failed setup, keeping the errno of the failure. */
static inline int simnet_fail(int fd)
{
	int err = errno;

	close(fd);
	errno = err;
	return -1;
}

static inline int simnet_if_up(const char *ifname, int *ifindex)
{
	struct ifreq ifr;
	char path[96];
	int sk, r = -1;

	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6",
		 ifname);
	sk = open(path, O_WRONLY | O_CLOEXEC);
	if (sk >= 0) {
		if (write(sk, "1", 1) != 1)
			perror("disable_ipv6");
		close(sk);
	}

	sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sk < 0)
		return -1;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	if (ioctl(sk, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP | IFF_NOARP;
		if (ioctl(sk, SIOCSIFFLAGS, &ifr) == 0 &&
		    ioctl(sk, SIOCGIFINDEX, &ifr) == 0) {
			*ifindex = ifr.ifr_ifindex;
			r = 0;
		}
	}
	close(sk);
	return r;
}

/*
 * Open a tap with a SIMNET_HDR_LEN vnet header: a new one named after
 * @name ("simtap%d"), or the existing persistent tap @name.  @offloads
 * (TUN_F_*) are enabled when not 0.  The tap is brought up; its name goes
 * to @ifname (IFNAMSIZ bytes) and its index to @ifindex.
 */
static inline int simnet_tap_open(const char *name, unsigned int offloads,
				  char *ifname, int *ifindex)
{
	int hdr_sz = SIMNET_HDR_LEN, fd;
	struct ifreq ifr;

	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0 ||
	    ioctl(fd, TUNSETVNETHDRSZ, &hdr_sz) < 0 ||
	    (offloads && ioctl(fd, TUNSETOFFLOAD, offloads) < 0))
		goto err;
	memcpy(ifname, ifr.ifr_name, IFNAMSIZ);
	if (simnet_if_up(ifname, ifindex))
		goto err;
	return fd;
err:
	return simnet_fail(fd);
}

/*
 * Open the character device of macvtap @name (/dev/tapN, N its index)
 * with a SIMNET_HDR_LEN vnet header and SIMNET_OFFLOADS, as QEMU does.
 */
static inline int simnet_macvtap_open(const char *name, int *ifindex)
{
	int hdr_sz = SIMNET_HDR_LEN, fd;
	char path[64];

	if (simnet_if_up(name, ifindex))
		return -1;
	snprintf(path, sizeof(path), "/dev/tap%d", *ifindex);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr_sz) < 0 ||
	    ioctl(fd, TUNSETOFFLOAD, SIMNET_OFFLOADS) < 0)
		return simnet_fail(fd);
	return fd;
}

/*
 * Open /dev/mpassthru and bind @name to it (brought up first), with a
 * SIMNET_HDR_LEN vnet header and SIMNET_OFFLOADS, as mpassthru-run does.
 */
static inline int simnet_mpassthru_open(const char *name, int *ifindex)
{
	int hdr_sz = SIMNET_HDR_LEN, fd;

	if (simnet_if_up(name, ifindex))
		return -1;
	fd = open("/dev/mpassthru", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (mpt_bind(fd, name, MPASSTHRU_F_VNET_HDR) < 0 ||
	    ioctl(fd, TUNSETVNETHDRSZ, &hdr_sz) < 0 ||
	    ioctl(fd, TUNSETOFFLOAD, SIMNET_OFFLOADS) < 0)
		return simnet_fail(fd);
	return fd;
}

static inline int simnet_bind(int fd, int ifindex)
{
	struct sockaddr_ll sll;

	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = ifindex;
	return bind(fd, (struct sockaddr *)&sll, sizeof(sll));
}

/*
 * An AF_PACKET raw socket on @ifindex, every frame with a
 * struct virtio_net_hdr in front: with @capture, bound and receiving
 * what arrives there (not what leaves); else for simnet_inject().
 */
static inline int simnet_packet_socket(int ifindex, bool capture)
{
	int one = 1, size = SIMNET_SOCKBUF, fd;

	fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)))
		goto err;
	if (capture) {
		if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one,
			       sizeof(one)) ||
		    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size,
			       sizeof(size)) ||
		    simnet_bind(fd, ifindex))
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
	return simnet_fail(fd);
}

/*
 * The AF_PACKET backend: a raw socket bound to @ifindex without a vnet
 * header (vhost adds and strips it: VHOST_NET_F_VIRTIO_NET_HDR), which
 * receives only what arrives on the interface, not what the guest sends.
 */
static inline int simnet_packet_backend(int ifindex)
{
	int one = 1, size = SIMNET_SOCKBUF, fd;

	fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one,
		       sizeof(one)) ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) ||
	    simnet_bind(fd, ifindex))
		return simnet_fail(fd);
	return fd;
}

/*
 * Send @len bytes (a struct virtio_net_hdr, then an ethernet frame to
 * @dst of ethertype @proto) on @ifindex through injection socket @fd.
 */
static inline ssize_t simnet_inject(int fd, int ifindex, const uint8_t *dst,
				    uint16_t proto, const void *buf,
				    size_t len, int flags)
{
	struct sockaddr_ll sll;

	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_ifindex = ifindex;
	sll.sll_halen = 6;
	sll.sll_protocol = htons(proto);
	memcpy(sll.sll_addr, dst, 6);
	return sendto(fd, buf, len, flags, (struct sockaddr *)&sll,
		      sizeof(sll));
}

#endif /* SIM_NET_H */
