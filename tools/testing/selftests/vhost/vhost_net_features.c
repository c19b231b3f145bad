// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/vhost-net basics every implementation must get right: ownership and
 * the feature bits QEMU relies on.  Runs against whichever vhost_net module
 * is loaded, ours or the upstream reference.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <linux/vhost.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>

#include "../kselftest_harness.h"

#define BIT_ULL_(n) (1ULL << (n))

/* What QEMU's vhost=on path needs from the device, and what we promise. */
static const struct {
	int bit;
	const char *name;
} required_features[] = {
	{ VIRTIO_F_VERSION_1, "VIRTIO_F_VERSION_1" },
	{ VIRTIO_NET_F_MRG_RXBUF, "VIRTIO_NET_F_MRG_RXBUF" },
	{ VHOST_NET_F_VIRTIO_NET_HDR, "VHOST_NET_F_VIRTIO_NET_HDR" },
	{ VIRTIO_RING_F_INDIRECT_DESC, "VIRTIO_RING_F_INDIRECT_DESC" },
	{ VIRTIO_RING_F_EVENT_IDX, "VIRTIO_RING_F_EVENT_IDX" },
	{ VIRTIO_F_NOTIFY_ON_EMPTY, "VIRTIO_F_NOTIFY_ON_EMPTY" },
	{ VIRTIO_F_ANY_LAYOUT, "VIRTIO_F_ANY_LAYOUT" },
	{ VHOST_F_LOG_ALL, "VHOST_F_LOG_ALL" },
};

FIXTURE(vhost_net) {
	int fd;
};

FIXTURE_SETUP(vhost_net)
{
	self->fd = open("/dev/vhost-net", O_RDWR);
	ASSERT_LE(0, self->fd) {
		TH_LOG("open /dev/vhost-net: %s", strerror(errno));
	}
}

FIXTURE_TEARDOWN(vhost_net)
{
	close(self->fd);
}

TEST_F(vhost_net, set_owner_once)
{
	ASSERT_EQ(0, ioctl(self->fd, VHOST_SET_OWNER, NULL));
	ASSERT_EQ(-1, ioctl(self->fd, VHOST_SET_OWNER, NULL));
	ASSERT_EQ(EBUSY, errno);
}

TEST_F(vhost_net, offers_required_features)
{
	uint64_t features = 0;
	size_t i;

	ASSERT_EQ(0, ioctl(self->fd, VHOST_SET_OWNER, NULL));
	ASSERT_EQ(0, ioctl(self->fd, VHOST_GET_FEATURES, &features));
	TH_LOG("offered features 0x%016llx", (unsigned long long)features);
	for (i = 0; i < ARRAY_SIZE(required_features); i++) {
		uint64_t bit = BIT_ULL_(required_features[i].bit);

		EXPECT_EQ(bit, features & bit) {
			TH_LOG("missing %s", required_features[i].name);
		}
	}
}

TEST_F(vhost_net, accepts_offered_features)
{
	uint64_t features = 0, want = 0;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(required_features); i++)
		want |= BIT_ULL_(required_features[i].bit);
	/* Logging needs a log base first; it has its own tests. */
	want &= ~BIT_ULL_(VHOST_F_LOG_ALL);

	ASSERT_EQ(0, ioctl(self->fd, VHOST_SET_OWNER, NULL));
	ASSERT_EQ(0, ioctl(self->fd, VHOST_GET_FEATURES, &features));
	ASSERT_EQ(want, features & want);
	ASSERT_EQ(0, ioctl(self->fd, VHOST_SET_FEATURES, &want));
}

TEST_F(vhost_net, rejects_unknown_features)
{
	uint64_t features = 0, bogus;
	int bit;

	ASSERT_EQ(0, ioctl(self->fd, VHOST_SET_OWNER, NULL));
	ASSERT_EQ(0, ioctl(self->fd, VHOST_GET_FEATURES, &features));
	for (bit = 63; bit >= 0 && (features & BIT_ULL_(bit)); bit--)
		;
	ASSERT_LE(0, bit);
	bogus = features | BIT_ULL_(bit);
	ASSERT_EQ(-1, ioctl(self->fd, VHOST_SET_FEATURES, &bogus));
	ASSERT_EQ(EOPNOTSUPP, errno);
}

TEST_HARNESS_MAIN
