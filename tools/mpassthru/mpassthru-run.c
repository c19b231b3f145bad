// SPDX-License-Identifier: GPL-2.0
/*
 * mpassthru-run: bind a host NIC to a guest and start QEMU on it.
 *
 *   mpassthru-run [--no-vhost] IFNAME -- qemu-system-x86_64 ... \
 *	-netdev tap,id=n0,fd=3,vhost=on,vhostfd=4 -device virtio-net-pci,netdev=n0
 *
 * Opens /dev/mpassthru, binds IFNAME with a virtio-net header on every
 * frame (what QEMU expects of a tap), puts the file on descriptor 3 and an
 * open /dev/vhost-net on descriptor 4 (unless --no-vhost), and executes
 * the command.  QEMU then needs no privilege of its own: the binding
 * lives as long as the descriptor, and ends when QEMU exits, however it
 * exits.  Needs CAP_NET_ADMIN (for the bind) and access to both devices.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <linux/mpassthru.h>

#define MP_FD		3
#define VHOST_FD	4

static void die_usage(void)
{
	fprintf(stderr,
		"usage: mpassthru-run [--no-vhost] IFNAME -- COMMAND [ARG...]\n"
		"  the bound NIC is on fd %d, /dev/vhost-net on fd %d:\n"
		"  qemu ... -netdev tap,id=n0,fd=%d,vhost=on,vhostfd=%d\n",
		MP_FD, VHOST_FD, MP_FD, VHOST_FD);
	exit(2);
}

/* Open @path and move it to descriptor @want, inherited across exec. */
static void open_at(const char *path, int want)
{
	int fd = open(path, O_RDWR);

	if (fd < 0) {
		fprintf(stderr, "mpassthru-run: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	if (fd != want) {
		if (dup2(fd, want) < 0) {
			perror("mpassthru-run: dup2");
			exit(1);
		}
		close(fd);
	}
}

int main(int argc, char **argv)
{
	struct mpassthru_bind b = { .flags = MPASSTHRU_F_VNET_HDR };
	int vhost = 1, i = 1;

	if (i < argc && !strcmp(argv[i], "--no-vhost")) {
		vhost = 0;
		i++;
	}
	if (argc - i < 3 || strcmp(argv[i + 1], "--"))
		die_usage();
	if (strlen(argv[i]) >= sizeof(b.ifname)) {
		fprintf(stderr, "mpassthru-run: %s: name too long\n", argv[i]);
		return 1;
	}
	memcpy(b.ifname, argv[i], strlen(argv[i]) + 1);
	/* Keep 3 and 4 free for us whatever the caller left open. */
	close(MP_FD);
	close(VHOST_FD);
	open_at("/dev/mpassthru", MP_FD);
	if (ioctl(MP_FD, MPASSTHRU_BIND, &b)) {
		fprintf(stderr, "mpassthru-run: bind %s: %s\n", b.ifname,
			strerror(errno));
		return 1;
	}
	if (vhost)
		open_at("/dev/vhost-net", VHOST_FD);
	execvp(argv[i + 2], argv + i + 2);
	fprintf(stderr, "mpassthru-run: %s: %s\n", argv[i + 2], strerror(errno));
	return 127;
}
