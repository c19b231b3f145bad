# SPDX-License-Identifier: GPL-2.0
#
# vhost-mp top level.  Kernel work happens in the cache
# ($XDG_CACHE_HOME/vhost-mp, or ~/.cache/vhost-mp), never on the host:
# every module is loaded only inside a QEMU (TCG) virtual machine.
#
#   make deps        install build and test dependencies (apt-get)
#   make kernel      pinned 6.12 + patches + overlay: test and bench kernels
#   make modules     out-of-tree build of our modules, KDIR=<kernel build dir>
#   make reference   upstream's drivers/vhost as external modules
#   make check       everything above, then the whole test suite in VMs
#   make check-reference  the parity suites against upstream's vhost_net
#   make check-migration  live migration under traffic, ours and upstream's
#   make run         the demo: boot a VM, load vhost_net, run a nested guest
#   make bench       every datapath side by side in one VM: BENCHMARKS.md

VM := tools/vm
KDIR ?= /lib/modules/$(shell uname -r)/build

.PHONY: all deps kernel kernel-test kernel-bench modules reference selftests \
	initramfs check check-reference check-migration run bench clean-modules

all: modules

deps:
	@$(VM)/deps.sh

kernel: kernel-test kernel-bench

kernel-test kernel-bench:
	@$(VM)/build-kernel.sh $(@:kernel-%=%)

# What a user runs on their own host, against their own kernel headers.
modules:
	@if [ ! -f drivers/vhost/Makefile ]; then \
		echo "no modules yet: drivers/vhost has not landed"; \
	else \
		$(MAKE) -C $(KDIR) M=$(CURDIR)/drivers/vhost \
			CONFIG_VHOST=m CONFIG_VHOST_NET=m CONFIG_MPASSTHRU=m modules; \
	fi

clean-modules:
	@[ ! -f drivers/vhost/Makefile ] || $(MAKE) -C $(KDIR) M=$(CURDIR)/drivers/vhost clean

reference: kernel
	@$(VM)/build-reference.sh test
	@$(VM)/build-reference.sh bench

selftests: kernel
	@$(VM)/build-selftests.sh test
	@$(VM)/build-selftests.sh bench

initramfs: reference selftests
	@$(VM)/mkinitramfs.sh test
	@$(VM)/mkinitramfs.sh bench

check: deps
	@$(VM)/check.sh

# The basic, sim and e2e suites again, against upstream's modules.
check-reference: deps
	@$(VM)/check.sh reference

# A live migration under traffic on ours and on upstream's vhost_net.
check-migration: deps
	@$(VM)/check.sh migration

run: deps
	@$(VM)/demo.sh

# BENCH_PLAN=SECS:REPS[:tap|:nic] (default 3:3) shortens or lengthens
# every measurement, or runs one wire only.
bench: deps
	@$(VM)/bench.sh $(BENCH_PLAN)
