#!/usr/bin/python3
"""`pantry serve` speaks systemd's notify protocol (sd_notify(3)) to the socket $NOTIFY_SOCKET
names, here an AF_UNIX datagram socket of this test's own with SO_PASSCRED, so that each message
comes with its sender's pid:

  1. the serve sends READY=1 once it serves, from its own pid;
  2. SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1, from the serve;
  3. `pantry upgrade`: MAINPID=<new pid> and READY=1, sent by the new process itself; the old
     process exits without a word (no STOPPING=1: the service goes on);
  4. SIGTERM to the new process: STOPPING=1 from it.

Run with the pantry binary as the first argument:
    /usr/bin/python3 tests/integration/ops_notify_test.py build/asan/cli/pantry
Everything is on 127.0.0.1 (the PyPI upstream is never asked); every process started here is
stopped in tearDown().
"""

import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
from pantry_serve import Pantry, free_port, stop_pids, wait_gone  # noqa: E402

PANTRY = None
UCRED = struct.Struct("3i")  # pid, uid, gid


class NotifyTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="pantry-notify-test-")
        self.sock_path = os.path.join(self.work, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.sock_path)
        self.pantry = None
        self.pids = []
        self.received = []  # every (pid, text), for failure messages

    def tearDown(self):
        stop_pids(self.pids)
        if self.pantry is not None:
            self.pantry.stop()
        self.sock.close()
        shutil.rmtree(self.work, ignore_errors=True)

    def receive(self, timeout=60):
        """The next datagram as (sender pid, text); fails with what came so far if none comes."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            self.fail(f"no notify message within {timeout} s; received so far: {self.received}\n"
                      f"--- pantry log:\n{self.pantry.tail() if self.pantry else ''}")
        data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(UCRED.size))
        pid = None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = UCRED.unpack(payload[:UCRED.size])[0]
        self.received.append((pid, data.decode()))
        return pid, data.decode()

    def pending(self):
        """Datagrams already queued, without waiting."""
        out = []
        while select.select([self.sock], [], [], 0)[0]:
            out.append(self.receive())
        return out

    def serve_pid(self):
        with open(os.path.join(self.pantry.data_dir, "serve.json")) as f:
            return json.load(f)["pid"]

    def test_ready_reload_upgrade_and_stop_are_told(self):
        os.environ["NOTIFY_SOCKET"] = self.sock_path
        try:
            self.pantry = Pantry(PANTRY, os.path.join(self.work, "pantry"),
                                 f"http://127.0.0.1:{free_port()}/simple/")
        finally:
            del os.environ["NOTIFY_SOCKET"]
        first = self.pantry.process.pid
        self.pids.append(first)

        # 1. Ready, from the serve itself.
        pid, text = self.receive()
        self.assertEqual((pid, text), (first, "READY=1"), f"serve pid {first}")

        # 2. A reload on SIGHUP.
        os.kill(first, signal.SIGHUP)
        pid, text = self.receive()
        lines = text.split("\n")
        self.assertEqual(pid, first, text)
        self.assertEqual(lines[0], "RELOADING=1", text)
        self.assertEqual(len(lines), 2, text)
        self.assertTrue(lines[1].startswith("MONOTONIC_USEC=") and
                        lines[1][len("MONOTONIC_USEC="):].isdigit(), text)
        self.assertEqual(self.receive(), (first, "READY=1"))

        # 3. An upgrade: the new process names itself the main pid, then the old one exits quietly.
        r = subprocess.run([PANTRY, "upgrade", "--config", self.pantry.config],
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, f"pantry upgrade:\n{r.stdout}\n{r.stderr}\n"
                                          f"--- pantry log:\n{self.pantry.tail()}")
        second = self.serve_pid()
        self.pids.append(second)
        self.assertNotEqual(second, first, r.stdout)
        pid, text = self.receive()
        self.assertEqual((pid, text), (second, f"MAINPID={second}\nREADY=1"),
                         f"old pid {first}, new pid {second}")
        self.assertTrue(wait_gone(first), f"process {first} still runs after the upgrade:\n"
                                          f"{self.pantry.tail()}")
        self.pantry.process.wait(timeout=30)
        self.assertEqual(self.pending(), [],
                         f"messages after the new process's READY=1 (old pid {first})")

        # 4. Stopping the new process for good.
        os.kill(second, signal.SIGTERM)
        pid, text = self.receive()
        self.assertEqual((pid, text), (second, "STOPPING=1"))
        self.assertTrue(wait_gone(second), f"process {second} still runs after SIGTERM")


if __name__ == "__main__":
    PANTRY = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
