// SPDX-License-Identifier: GPL-2.0
/*
 * Traffic through a bound mpassthru file while its binding goes away.
 *
 *   mpassthru_load BOUND PEER unbind|external ENXIO|ENODEV [READY_FILE]
 *
 * Binds BOUND and keeps frames flowing both ways: a writer thread writes
 * to the file, an injector sends on PEER (the other end of the wire), a
 * reader thread reads from the file.  Once both directions carried
 * traffic, either this program unbinds (MPASSTHRU_UNBIND from another
 * thread, while the reader is blocked in read()), or it creates
 * READY_FILE and waits for someone else to take the device away (ip link
 * del, driver unbind).  Then the reader and the writer must both end with
 * the expected errno, and the file must say so in GET_INFO and poll().
 * Prints what it saw; exit status 0 when everything held.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/uio.h>

#include "mpassthru_lib.h"

#define HDR_LEN		sizeof(struct virtio_net_hdr)
#define TRAFFIC_TIMEOUT	30
#define GONE_TIMEOUT	60

struct load {
	int fd;
	int peer;
	int peer_ifindex;
	atomic_bool stop;
	atomic_ulong rx, tx;
	int reader_err, writer_err;
	atomic_bool reader_done, writer_done;
};

static void *reader(void *arg)
{
	struct load *l = arg;
	uint8_t buf[HDR_LEN + 2048];
	ssize_t n;

	for (;;) {
		n = read(l->fd, buf, sizeof(buf));
		if (n < 0) {
			l->reader_err = errno;
			break;
		}
		if (mpt_seq(buf + HDR_LEN, n - HDR_LEN) >= 0)
			l->rx++;
	}
	l->reader_done = true;
	return NULL;
}

static void *writer(void *arg)
{
	struct virtio_net_hdr h = { .gso_type = VIRTIO_NET_HDR_GSO_NONE };
	uint8_t f[MPT_MAX_FRAME];
	struct iovec iov[2] = {
		{ .iov_base = &h, .iov_len = sizeof(h) },
		{ .iov_base = f },
	};
	struct load *l = arg;
	uint32_t seq;

	for (seq = 0;; seq++) {
		iov[1].iov_len = mpt_frame_len(seq);
		mpt_build(f, iov[1].iov_len, seq, mpt_mac_peer, mpt_mac_guest);
		if (writev(l->fd, iov, 2) < 0) {
			l->writer_err = errno;
			break;
		}
		l->tx++;
		usleep(200);
	}
	l->writer_done = true;
	return NULL;
}

/* The far end; it may vanish with the device (a veth pair): ignore. */
static void *injector(void *arg)
{
	struct load *l = arg;
	uint32_t seq;

	for (seq = 0; !l->stop; seq++) {
		mpt_inject(l->peer, l->peer_ifindex, seq, mpt_frame_len(seq));
		usleep(200);
	}
	return NULL;
}

static bool wait_until(atomic_bool *a, atomic_bool *b, int secs)
{
	time_t end = time(NULL) + secs;

	while (!(*a && *b)) {
		if (time(NULL) > end)
			return false;
		usleep(10000);
	}
	return true;
}

static bool traffic_flows(struct load *l)
{
	time_t end = time(NULL) + TRAFFIC_TIMEOUT;

	while (l->rx < 100 || l->tx < 100) {
		if (time(NULL) > end || l->reader_done || l->writer_done)
			return false;
		usleep(10000);
	}
	return true;
}

static int fail(const char *what)
{
	printf("# FAIL: %s\n", what);
	return 1;
}

int main(int argc, char **argv)
{
	pthread_t rt, wt, it;
	struct mpassthru_info info;
	struct pollfd p = { .events = POLLIN };
	struct load l = { 0 };
	int want, r = 0;
	bool self_unbind;

	if (argc < 5)
		return fail("usage: BOUND PEER unbind|external ENXIO|ENODEV [READY_FILE]");
	self_unbind = !strcmp(argv[3], "unbind");
	want = !strcmp(argv[4], "ENODEV") ? ENODEV : ENXIO;
	l.fd = open("/dev/mpassthru", O_RDWR | O_CLOEXEC);
	if (l.fd < 0 || mpt_bind(l.fd, argv[1], MPASSTHRU_F_VNET_HDR))
		return fail("bind");
	l.peer_ifindex = if_nametoindex(argv[2]);
	l.peer = mpt_peer_socket(l.peer_ifindex);
	if (l.peer < 0)
		return fail("peer socket");

	pthread_create(&rt, NULL, reader, &l);
	pthread_create(&wt, NULL, writer, &l);
	pthread_create(&it, NULL, injector, &l);
	if (!traffic_flows(&l))
		r |= fail("traffic both ways before the event");
	printf("# before: %lu frames read, %lu written\n", l.rx, l.tx);

	if (self_unbind) {
		if (ioctl(l.fd, MPASSTHRU_UNBIND))
			r |= fail("MPASSTHRU_UNBIND");
	} else if (argc > 5) {
		close(open(argv[5], O_CREAT | O_WRONLY, 0644));
	}
	if (!wait_until(&l.reader_done, &l.writer_done, GONE_TIMEOUT))
		r |= fail("reader and writer stopped");
	l.stop = true;
	pthread_join(it, NULL);
	printf("# reader: %s, writer: %s (want %s)\n", strerror(l.reader_err),
	       strerror(l.writer_err), strerror(want));
	if (l.reader_err != want || l.writer_err != want)
		r |= fail("errno after the event");

	if (mpt_info(l.fd, &info))
		r |= fail("GET_INFO");
	printf("# info: state %u, rx %llu, tx %llu, pinned %llu\n", info.state,
	       (unsigned long long)info.stats.rx_packets,
	       (unsigned long long)info.stats.tx_packets,
	       (unsigned long long)info.stats.pinned_pages);
	if (info.state != (want == ENODEV ? MPASSTHRU_STATE_GONE :
					    MPASSTHRU_STATE_UNBOUND))
		r |= fail("state after the event");
	p.fd = l.fd;
	if (poll(&p, 1, 0) != 1 || !(p.revents & POLLHUP))
		r |= fail("poll says POLLHUP");
	if (want == ENODEV && ioctl(l.fd, MPASSTHRU_UNBIND) == 0)
		r |= fail("UNBIND of a gone device fails");
	pthread_join(rt, NULL);
	pthread_join(wt, NULL);
	close(l.fd);
	close(l.peer);
	return r;
}
