#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Live-migrate a QEMU while a TCP stream runs into its guest.

Run by nested_migrate.sh with the host's python3 in L1.  It connects to
the guest's receiver, sends random data (hashing every byte it sends),
and once the first --pre bytes are out asks the source QEMU, over QMP,
to migrate.  It keeps the stream going until QEMU reports the migration
over, then sends --post bytes more and closes.  One JSON object on
stdout: the bytes sent (in all, and while the migration ran), their
SHA-256, and QEMU's migration figures, or the error that stopped it.
With --save, what was sent is also kept in a file.

With --compare SENT, it instead fetches --length bytes from the guest
(which serves back what it received) and prints, as JSON, every range
where they differ from the file SENT, with the offset in SENT where each
wrong range's bytes come from, if they do: a wrong range of zeroes or of
old data points at a write the dirty log missed, a shifted one at a
buffer the guest was handed twice.
"""

import argparse
import array
import fcntl
import hashlib
import json
import os
import socket
import sys
import termios
import threading
import time

CHUNK = 16384


class Qmp:
    """A QMP client on a UNIX socket: one command at a time."""

    def __init__(self, path, deadline):
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        # A QEMU that stops answering fails the run instead of hanging it.
        self.sock.settimeout(60)
        self.file = self.sock.makefile("r")
        self.reply()  # the greeting
        self.command("qmp_capabilities")

    def reply(self):
        """The next line that is not an asynchronous event."""
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("QMP connection closed")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def command(self, name, **args):
        req = {"execute": name}
        if args:
            req["arguments"] = args
        self.sock.sendall((json.dumps(req) + "\n").encode())
        msg = self.reply()
        if "error" in msg:
            raise RuntimeError(f"{name}: {msg['error'].get('desc')}")
        return msg.get("return")


class Stream(threading.Thread):
    """Random bytes to the guest until told to finish, all of them hashed."""

    def __init__(self, addr, port, deadline, save=None):
        super().__init__(daemon=True)
        self.addr, self.port, self.deadline = addr, port, deadline
        self.save = save
        self.sha = hashlib.sha256()
        self.sent = 0
        self.limit = None  # total to send; None: until set
        self.sock = None
        self.error = None
        self.lock = threading.Lock()
        self.done = threading.Event()

    def run(self):
        try:
            sock = connect(self.addr, self.port, self.deadline)
            with self.lock:
                self.sock = sock
            sock.settimeout(max(1, self.deadline - time.monotonic()))
            while True:
                with self.lock:
                    if self.limit is not None and self.sent >= self.limit:
                        break
                buf = os.urandom(CHUNK)
                sock.sendall(buf)
                if self.save:
                    self.save.write(buf)
                with self.lock:
                    self.sha.update(buf)
                    self.sent += len(buf)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(4096):
                pass
            with self.lock:
                self.sock = None
            sock.close()
        except (OSError, ValueError) as err:
            self.error = f"stream: {err}"
        self.done.set()

    def count(self):
        with self.lock:
            return self.sent

    def acked(self):
        """Bytes the guest has acknowledged: sent less what is still queued."""
        unacked = array.array("i", [0])
        with self.lock:
            if self.sock:
                fcntl.ioctl(self.sock.fileno(), termios.TIOCOUTQ, unacked)
            return self.sent - unacked[0]

    def finish_after(self, more):
        with self.lock:
            self.limit = self.sent + more


def connect(addr, port, deadline):
    """A TCP connection, retried until the guest listens or @deadline."""
    while True:
        try:
            return socket.create_connection((addr, port), 10)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def wait_until(cond, deadline, what):
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def migrate(args, stream, result):
    deadline = time.monotonic() + args.timeout
    qmp = Qmp(args.qmp, deadline)
    stream.start()
    wait_until(lambda: stream.count() >= args.pre or stream.done.is_set(),
               deadline, "the first bytes of the stream")
    if stream.error:
        raise RuntimeError(stream.error)
    before = stream.acked()
    qmp.command("migrate", uri=args.uri)
    while True:
        info = qmp.command("query-migrate")
        if info.get("status") in ("completed", "failed", "cancelled"):
            break
        if stream.done.is_set():
            raise RuntimeError(stream.error or "the stream ended early")
        if time.monotonic() > deadline:
            raise TimeoutError("migration still %s" % info.get("status"))
        time.sleep(0.5)
    # What the guest acknowledged while it migrated, not what merely went
    # into the socket's send buffer.
    result["during"] = stream.acked() - before
    result["migration"] = {
        "status": info.get("status"),
        "total_ms": info.get("total-time"),
        "downtime_ms": info.get("downtime"),
        "ram_bytes": info.get("ram", {}).get("transferred"),
    }
    if info.get("status") != "completed":
        raise RuntimeError("migration %s: %s" % (info.get("status"),
                                                 info.get("error-desc")))
    stream.finish_after(args.post)
    if not stream.done.wait(max(1, deadline - time.monotonic())):
        raise TimeoutError("the end of the stream")


def fetch(addr, port, length, deadline):
    """@length bytes from the guest's port, or what came before EOF."""
    sock = connect(addr, port, deadline)
    sock.settimeout(max(1, deadline - time.monotonic()))
    got = bytearray()
    while len(got) < length:
        data = sock.recv(min(65536, length - len(got)))
        if not data:
            break
        got += data
    sock.close()
    return bytes(got)


def first_difference(sent, got, off, end):
    """The first offset from @off where the two differ, or @end."""
    block = 4096
    while off < end and sent[off:off + block] == got[off:off + block]:
        off += block
    while off < end and sent[off] == got[off]:
        off += 1
    return min(off, end)


def differences(sent, got, limit=20, gap=64):
    """Ranges where @got differs from @sent, each with its bytes' origin.

    A range ends at @gap equal bytes in a row, so that wrong bytes that
    happen to match here and there do not split it.
    """
    ranges, end = [], min(len(sent), len(got))
    off = first_difference(sent, got, 0, end)
    while off < end and len(ranges) < limit:
        start = last = off
        while off < end and off - last < gap:
            if sent[off] != got[off]:
                last = off
            off += 1
        bad = got[start:last + 1]
        ranges.append({
            "offset": start,
            "length": len(bad),
            "zeroes": bad.count(0) == len(bad),
            "found_at": sent.find(bad) if len(bad) >= 16 else None,
            "head": bad[:16].hex(),
        })
        off = first_difference(sent, got, off, end)
    return ranges


def compare(args, addr, port):
    with open(args.compare, "rb") as f:
        sent = f.read()
    got = fetch(addr, port, args.length, time.monotonic() + args.timeout)
    json.dump({"sent": len(sent), "received": len(got),
               "differences": differences(sent, got)}, sys.stdout)
    print()
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--to", required=True, help="guest address:port")
    ap.add_argument("--qmp", help="source QEMU's QMP socket")
    ap.add_argument("--uri", help="destination, tcp:host:port")
    ap.add_argument("--pre", type=int, default=1 << 20)
    ap.add_argument("--post", type=int, default=1 << 20)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--save", help="keep the bytes sent in this file")
    ap.add_argument("--compare", metavar="SENT",
                    help="compare what the guest serves with this file")
    ap.add_argument("--length", type=int, help="bytes the guest serves")
    args = ap.parse_args()
    addr, port = args.to.rsplit(":", 1)
    if args.compare:
        return compare(args, addr, int(port))
    if not args.qmp or not args.uri:
        ap.error("--qmp and --uri are needed to migrate")
    save = open(args.save, "wb") if args.save else None
    stream = Stream(addr, int(port), time.monotonic() + args.timeout, save)
    result = {"error": None}
    try:
        migrate(args, stream, result)
    except (OSError, RuntimeError, TimeoutError, ValueError) as err:
        result["error"] = str(err)
    if stream.error and not result["error"]:
        result["error"] = stream.error
    if save:
        stream.done.wait(5)
        save.close()
    result["sent"] = stream.count()
    with stream.lock:
        result["sha256"] = stream.sha.hexdigest()
    json.dump(result, sys.stdout)
    print()
    return 1 if result["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
