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
"""

import argparse
import hashlib
import json
import os
import socket
import sys
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

    def __init__(self, addr, port, deadline):
        super().__init__(daemon=True)
        self.addr, self.port, self.deadline = addr, port, deadline
        self.sha = hashlib.sha256()
        self.sent = 0
        self.limit = None  # total to send; None: until set
        self.error = None
        self.lock = threading.Lock()
        self.done = threading.Event()

    def connect(self):
        while True:
            try:
                return socket.create_connection((self.addr, self.port), 10)
            except OSError:
                if time.monotonic() > self.deadline:
                    raise
                time.sleep(1)

    def run(self):
        try:
            sock = self.connect()
            sock.settimeout(max(1, self.deadline - time.monotonic()))
            while True:
                with self.lock:
                    if self.limit is not None and self.sent >= self.limit:
                        break
                buf = os.urandom(CHUNK)
                sock.sendall(buf)
                with self.lock:
                    self.sha.update(buf)
                    self.sent += len(buf)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(4096):
                pass
            sock.close()
        except OSError as err:
            self.error = f"stream: {err}"
        self.done.set()

    def count(self):
        with self.lock:
            return self.sent

    def finish_after(self, more):
        with self.lock:
            self.limit = self.sent + more


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
    before = stream.count()
    qmp.command("migrate", uri=args.uri)
    while True:
        info = qmp.command("query-migrate")
        if info.get("status") in ("completed", "failed", "cancelled"):
            break
        if time.monotonic() > deadline:
            raise TimeoutError("migration still %s" % info.get("status"))
        time.sleep(0.5)
    result["during"] = stream.count() - before
    result["migration"] = {
        "status": info.get("status"),
        "total_ms": info.get("total-time"),
        "downtime_ms": info.get("downtime"),
        "ram_bytes": info.get("ram", {}).get("transferred"),
    }
    stream.finish_after(args.post)
    if not stream.done.wait(max(1, deadline - time.monotonic())):
        raise TimeoutError("the end of the stream")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--to", required=True, help="guest address:port")
    ap.add_argument("--qmp", required=True, help="source QEMU's QMP socket")
    ap.add_argument("--uri", required=True, help="destination, tcp:host:port")
    ap.add_argument("--pre", type=int, default=1 << 20)
    ap.add_argument("--post", type=int, default=1 << 20)
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    addr, port = args.to.rsplit(":", 1)
    stream = Stream(addr, int(port), time.monotonic() + args.timeout)
    result = {"error": None}
    try:
        migrate(args, stream, result)
    except (OSError, RuntimeError, TimeoutError, ValueError) as err:
        result["error"] = str(err)
    if stream.error and not result["error"]:
        result["error"] = stream.error
    result["sent"] = stream.count()
    with stream.lock:
        result["sha256"] = stream.sha.hexdigest()
    json.dump(result, sys.stdout)
    print()
    return 1 if result["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
