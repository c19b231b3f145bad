/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * /dev/mpassthru: bind one host Ethernet device to one guest.
 *
 * Every structure here has the same size and layout for 32-bit and 64-bit
 * user space (fixed-width fields, 64-bit fields on 8-byte offsets, explicit
 * padding), so the compat ioctl path needs no translation.
 */
#ifndef _UAPI_LINUX_MPASSTHRU_H
#define _UAPI_LINUX_MPASSTHRU_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define MPASSTHRU_IFNAMSIZ	16

/* Frames read and written carry a struct virtio_net_hdr (or a larger one,
 * TUNSETVNETHDRSZ) in front, as a tap opened with IFF_VNET_HDR does.
 */
#define MPASSTHRU_F_VNET_HDR	(1U << 0)

#define MPASSTHRU_BIND_FLAGS	MPASSTHRU_F_VNET_HDR

/**
 * struct mpassthru_bind - MPASSTHRU_BIND argument
 * @ifname: device name, NUL-terminated, in the caller's network namespace
 * @flags: MPASSTHRU_F_* (unknown bits: EINVAL)
 * @reserved: must be 0
 */
struct mpassthru_bind {
	char ifname[MPASSTHRU_IFNAMSIZ];
	__u32 flags;
	__u32 reserved;
};

/* mpassthru_info.state */
#define MPASSTHRU_STATE_UNBOUND	0	/* never bound, or unbound */
#define MPASSTHRU_STATE_BOUND	1
#define MPASSTHRU_STATE_GONE	2	/* the device was unregistered */

/**
 * struct mpassthru_stats - counters of one binding, reset by MPASSTHRU_BIND
 * @rx_packets: frames delivered to the guest
 * @rx_bytes: their length, without the virtio-net header
 * @rx_zcopy_bytes: of those, bytes the NIC wrote into guest memory itself
 * @rx_copy_bytes: of those, bytes copied from host buffers
 * @rx_dropped: frames the binding dropped (queue full, no guest buffer)
 * @tx_packets: frames handed to the device
 * @tx_bytes: their length, without the virtio-net header
 * @tx_zcopy_bytes: of those, bytes sent from pinned guest pages
 * @tx_copy_bytes: of those, bytes copied into host buffers
 * @tx_dropped: frames refused (bad header, device down or gone)
 * @pinned_pages: guest pages referenced by this binding's frames in flight
 */
struct mpassthru_stats {
	__u64 rx_packets;
	__u64 rx_bytes;
	__u64 rx_zcopy_bytes;
	__u64 rx_copy_bytes;
	__u64 rx_dropped;
	__u64 tx_packets;
	__u64 tx_bytes;
	__u64 tx_zcopy_bytes;
	__u64 tx_copy_bytes;
	__u64 tx_dropped;
	__u64 pinned_pages;
};

/**
 * struct mpassthru_info - MPASSTHRU_GET_INFO result
 * @ifindex: bound device, 0 when not bound
 * @state: MPASSTHRU_STATE_*
 * @flags: MPASSTHRU_F_* given at bind time
 * @vnet_hdr_sz: size of the header in front of each frame (0: none)
 * @features: TUN_F_* offloads the reader accepts (TUNSETOFFLOAD)
 * @ifname: name of the bound device at bind time
 * @stats: counters of the current (or last) binding
 */
struct mpassthru_info {
	__u32 ifindex;
	__u32 state;
	__u32 flags;
	__u32 vnet_hdr_sz;
	__u64 features;
	char ifname[MPASSTHRU_IFNAMSIZ];
	struct mpassthru_stats stats;
};

#define MPASSTHRU_IOC_MAGIC	0xB9	/* ioctl-number.rst: 0xB9 00-0F */

#define MPASSTHRU_BIND		_IOW(MPASSTHRU_IOC_MAGIC, 0x00, struct mpassthru_bind)
#define MPASSTHRU_UNBIND	_IO(MPASSTHRU_IOC_MAGIC, 0x01)
#define MPASSTHRU_GET_INFO	_IOR(MPASSTHRU_IOC_MAGIC, 0x02, struct mpassthru_info)

#endif /* _UAPI_LINUX_MPASSTHRU_H */
