#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Turn the "# bench:" records of one benchmark VM run into BENCHMARKS.md
and a chart.  Every figure comes from the log; a datapath that did not run
is reported as such, never filled in."""

import argparse
import datetime
import os
import re
import statistics
import subprocess
import sys
import tempfile

USER_HZ = 100

ROW_NAMES = {
    "qemu": "QEMU userspace virtio-net (vhost=off)",
    "reference": "upstream vhost_net, zero-copy TX off (its default)",
    "reference-zc": "upstream vhost_net, experimental_zcopytx=1",
    "ours": "our vhost_net on tap",
    "macvtap-reference": "upstream vhost_net on a macvtap (passthru) on the NIC",
    "mpassthru-copy": "our vhost_net on mpassthru, copy receive",
    "mpassthru-zc": "our vhost_net on mpassthru, zero-copy receive",
}

WORKLOADS = {
    "tcp_h2g_1": ("TCP host to guest, 1 stream", "Mbit/s", True),
    "tcp_h2g_4": ("TCP host to guest, 4 streams", "Mbit/s", True),
    "tcp_g2h_1": ("TCP guest to host, 1 stream", "Mbit/s", True),
    "tcp_g2h_4": ("TCP guest to host, 4 streams", "Mbit/s", True),
    "udp64_h2g": ("64-byte UDP host to guest", "packets/s", True),
    "udp64_g2h": ("64-byte UDP guest to host", "packets/s", True),
    "rtt": ("ICMP echo round trip", "µs", False),
    "sim_tx_64": ("TX, 64-byte frames", "packets/s", True),
    "sim_tx_1514": ("TX, 1514-byte frames", "Mbit/s", True),
    "sim_tx_64k": ("TX, 64 KiB GSO frames", "Mbit/s", True),
    "sim_rx_64": ("RX, 64-byte frames", "packets/s", True),
    "sim_rx_1514": ("RX, 1514-byte frames", "Mbit/s", True),
}

# Each driver of the traffic, on one wire, with the upstream datapath its
# ratios are taken against.
DRIVERS = {
    "nested": ("Nested unmodified QEMU guest (L2) on a tap in L1, driven from L1 "
               "with iperf3 and ping", "reference"),
    "sim": ("Simulated guest (the selftests' userspace virtio driver) on a tap: "
            "the vhost datapath alone", "reference"),
    "nested-nic": ("Nested unmodified QEMU guest (L2) on L1's NIC eth0, driven from "
                   "a peer on eth1 across QEMU's hub", "macvtap-reference"),
    "sim-nic": ("Simulated guest on L1's NIC eth0, frames injected on eth1 across "
                "QEMU's hub", "macvtap-reference"),
}
# Bars in the chart, one colour per datapath.
CHART_ROWS = ("qemu", "reference-zc", "ours", "mpassthru-copy", "mpassthru-zc")


def parse(path):
    meta, runs, status = {}, [], {}
    rec = re.compile(r"^# bench: (.*)$")
    with open(path, errors="replace") as f:
        for line in f:
            m = rec.match(line.strip())
            if not m:
                continue
            words = m.group(1).split()
            kv = dict(w.split("=", 1) for w in words if "=" in w)
            if words[0] == "meta":
                meta.update(kv)
            elif "status" in kv:
                status[(kv["driver"], kv["row"])] = kv["status"]
            else:
                runs.append(kv)
    return meta, runs, status


def num(kv, key):
    try:
        return float(kv.get(key, "nan"))
    except ValueError:
        return float("nan")


def fmt(v):
    if v != v:
        return "n/a"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


class Table:
    """Medians and spreads per (driver, row, workload)."""

    def __init__(self, runs):
        self.values = {}
        self.runs = runs
        for kv in runs:
            key = (kv["driver"], kv["row"], kv["workload"])
            self.values.setdefault(key, []).append(num(kv, "value"))

    def rows(self, driver):
        seen = []
        for d, r, _ in self.values:
            if d == driver and r not in seen:
                seen.append(r)
        return seen

    def workloads(self, driver):
        return [w for w in WORKLOADS if any(
            d == driver and wl == w for d, _, wl in self.values)]

    def median(self, driver, row, wl):
        v = self.values.get((driver, row, wl))
        return statistics.median(v) if v else float("nan")

    def spread(self, driver, row, wl):
        v = self.values.get((driver, row, wl))
        return (min(v), max(v), len(v)) if v else None

    def ratio(self, driver, row, wl):
        base = self.median(driver, DRIVERS[driver][1], wl)
        val = self.median(driver, row, wl)
        if not base or not val or base != base or val != val:
            return float("nan")
        higher_better = WORKLOADS[wl][2]
        return val / base if higher_better else base / val

    def total(self, driver, row, key, workloads=None):
        return sum(num(kv, key) for kv in self.runs
                   if kv["driver"] == driver and kv["row"] == row and
                   (workloads is None or kv["workload"] in workloads) and
                   num(kv, key) == num(kv, key))


def speed_section(t, driver, status):
    out = [f"### {DRIVERS[driver][0]}", "",
           f"Baseline (1.00×): {ROW_NAMES[DRIVERS[driver][1]]}.", ""]
    out.append("| workload | datapath | median | min – max (runs) | vs upstream |")
    out.append("|---|---|---:|---|---:|")
    for wl in t.workloads(driver):
        title, unit, _ = WORKLOADS[wl]
        for row in t.rows(driver):
            s = t.spread(driver, row, wl)
            if not s:
                continue
            out.append(f"| {title} ({unit}) | {row} | {fmt(t.median(driver, row, wl))} | "
                       f"{fmt(s[0])} – {fmt(s[1])} ({s[2]}) | {fmt(t.ratio(driver, row, wl))}× |")
    for (d, row), st in sorted(status.items()):
        if d == driver:
            out.append(f"| all | {row} | {st.replace('-', ' ')} | | |")
    out.append("")
    return out


def rx_copied(t, driver, row):
    """Received bytes copied per byte, "1.00" unless mpassthru counted."""
    zc = t.total(driver, row, "mp_rx_zcopy_bytes")
    cp = t.total(driver, row, "mp_rx_copy_bytes")
    if not row.startswith("mpassthru"):
        return "1.00"
    if not zc + cp:
        return "n/a"
    share = cp / (zc + cp)
    # A few copied frames in a zero-copy stream must not read as 0.
    return f"{share:.4f}" if 0 < share < 0.01 else f"{share:.2f}"


def copy_per_byte(t, driver, row):
    """Bytes copied per byte delivered, from our counters (ours only)."""
    if row in ("qemu", "reference", "macvtap-reference"):
        return "1 (by design)"
    if row == "reference-zc":
        return "not counted"
    tx = t.total(driver, row, "tx_bytes")
    zb = t.total(driver, row, "tx_zcopy_bytes")
    zp = t.total(driver, row, "tx_zcopy_packets")
    zc = t.total(driver, row, "tx_zcopy_copied")
    rx = t.total(driver, row, "rx_bytes")
    if not tx and not rx:
        return "n/a"
    # A zero-copy send that the stack copied anyway counts as copied; the
    # counter is in packets, so its bytes are estimated at the mean size.
    late = zb * (zc / zp) if zp else 0
    copied_tx = tx - zb + late
    parts = []
    if tx:
        parts.append(f"TX {copied_tx / tx:.2f}")
    if rx:
        parts.append(f"RX {rx_copied(t, driver, row)}")
    return ", ".join(parts)


def cost_section(t, driver):
    # Bulk transfers only: CPU per byte means little for 64-byte frames.
    tcp = [w for w in WORKLOADS if w.startswith("tcp_") or
           w in ("sim_tx_1514", "sim_tx_64k", "sim_rx_1514")]
    out = ["| datapath | datapath CPU s per GB (bulk) | system calls per packet | "
           "TCP retransmits per MB | guest RX packet, mean bytes (TCP) | bytes copied per byte |",
           "|---|---:|---:|---:|---:|---|"]
    for row in t.rows(driver):
        ticks = t.total(driver, row, "ticks", tcp)
        gb = t.total(driver, row, "bytes", tcp) / 1e9
        sysc = t.total(driver, row, "syscalls")
        pkts = t.total(driver, row, "packets")
        cpu = (ticks / USER_HZ) / gb if gb else float("nan")
        spp = sysc / pkts if pkts else float("nan")
        tcp_only = [w for w in tcp if w.startswith("tcp_")]
        mb = t.total(driver, row, "bytes", tcp_only) / 1e6
        retr = t.total(driver, row, "retr", tcp_only) / mb if mb else float("nan")
        rxb = t.total(driver, row, "rx_bytes", tcp_only)
        rxp = t.total(driver, row, "rx_packets", tcp_only)
        rx_mean = rxb / rxp if rxp else float("nan")
        out.append(f"| {row} | {fmt(cpu)} | {fmt(spp)} | {fmt(retr)} | {fmt(rx_mean)} | "
                   f"{copy_per_byte(t, driver, row)} |")
    out.append("")
    return out


def chart(t, path):
    rows = [r for r in CHART_ROWS if any(r in t.rows(d) for d in DRIVERS)]
    lines = []
    for driver in DRIVERS:
        for wl in t.workloads(driver):
            vals = [fmt(t.ratio(driver, r, wl)).replace("n/a", "?") for r in rows]
            label = f"{driver}:{wl}"
            lines.append(f"\"{label}\" " + " ".join(v.replace(",", "") for v in vals))
    if not lines:
        return
    with tempfile.NamedTemporaryFile("w", suffix=".dat", delete=False) as d:
        d.write("\n".join(lines) + "\n")
    plots = ", ".join(
        f"'{d.name}' using {i + 2}:xtic(1) title '{r}'" for i, r in enumerate(rows))
    script = f"""
set terminal pngcairo noenhanced size 1600,700 font ',10'
set output '{path}'
set title 'Speed relative to upstream vhost_net on the same wire (tap, or macvtap on the NIC) = 1.0; higher is better; log scale'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set datafile missing '?'
set xtics rotate by -35
set bmargin 9
set rmargin 14
set logscale y 2
set yrange [0.0625:32]
set grid ytics
set key top left
plot {plots}, 1 with lines dt 2 lc 'black' notitle
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    os.unlink(d.name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True, action="append",
                    help="a run's tap.log; more than one: one run per wire")
    ap.add_argument("--out", required=True)
    ap.add_argument("--chart", required=True)
    ap.add_argument("--command", default="make bench")
    ap.add_argument("--machine", default="")
    ap.add_argument("--qemu", default="")
    a = ap.parse_args()

    meta, runs, status = {}, [], {}
    for log in a.log:
        m, r, st = parse(log)
        meta = {**m, **meta}
        runs += r
        status.update(st)
    if not runs:
        sys.exit("bench-report: no results in " + ", ".join(a.log))
    boots = "one VM boot" if len(a.log) == 1 else f"{len(a.log)} VM boots, one per wire"
    t = Table(runs)
    doc = ["# Benchmarks", "",
           f"Generated by `{a.command}` on {datetime.date.today()} from {boots}; "
           "do not edit by hand.", "",
           f"- Kernel in the VM: {meta.get('kernel', '?')} (the `bench` build: no debug options), "
           f"{meta.get('cpus', '?')} vCPUs under QEMU TCG",
           f"- Host: {a.machine}; {a.qemu}",
           f"- Each workload: {meta.get('reps', '?')} runs of {meta.get('secs', '?')} s per datapath; "
           "the median is shown, with the spread.",
           "- \"vs upstream\" is the median divided by upstream vhost_net's (zero-copy TX off, "
           "its default) on the same wire: a tap in L1, or on the NIC a macvtap in passthru "
           "mode, which is how a guest gets a NIC without mpassthru. For round-trip time it "
           "is inverted, so above 1 is always better.",
           "- Everything runs under TCG (no KVM here), nested for the QEMU guest: absolute "
           "numbers are far below real hardware, and only the ratios within one run mean anything.",
           "", "![speed relative to upstream](BENCHMARKS.png)", "", "## Speed", ""]
    for driver in DRIVERS:
        if t.rows(driver) or any(d == driver for d, _ in status):
            doc += speed_section(t, driver, status)
    doc += ["## Cost", "",
            "- *Datapath CPU*: user+system time of the threads that move packets "
            "(the `vhost-<pid>` workers; for vhost=off, QEMU's main loop thread), "
            "per GB moved over the bulk workloads: TCP, and for the simulated guest "
            "1514-byte and 64 KiB frames.",
            "- *System calls*: QEMU's read and write family calls (/proc/PID/io) per packet "
            "through the tap or the NIC; for the simulated guest, its kicks and interrupts "
            "(eventfd writes and reads) per packet. Under TCG QEMU kicks and acknowledges vhost through eventfds "
            "itself, so with vhost they are not zero as they would be with KVM.",
            "- *TCP retransmits*: segments the iperf3 sender retransmitted, per MB "
            "received; a datapath that loses frames shows here first.",
            "- *Guest RX packet*: bytes per packet our vhost-net put into the guest over "
            "the TCP workloads (our counters only). Copy receive hands the guest what host "
            "GRO merged, up to 64 KiB in one packet; zero-copy receive puts each wire frame "
            "in its own guest buffer, so the guest pays per frame.",
            "- *Bytes copied*: from our debugfs counters (vhost-net's for TX, mpassthru's "
            "`rx_zcopy_bytes` and `rx_copy_bytes` for RX); upstream keeps none, and copies "
            "every byte received and (zero-copy off) sent by design.", ""]
    for driver in DRIVERS:
        if t.rows(driver):
            doc += [f"### {DRIVERS[driver][0]}", ""] + cost_section(t, driver)
    with open(a.out, "w") as f:
        f.write("\n".join(doc))
    chart(t, a.chart)


if __name__ == "__main__":
    main()
