#!/usr/bin/python3
"""`pantry upgrade`: a new binary takes over pantry's port and data dir without a failed request.

Run with the pantry binary as the first argument:
    /usr/bin/python3 tests/integration/ops_upgrade_test.py build/asan/cli/pantry

Real nginx (tests/fixtures/nginx_pypi.py) is the PyPI upstream, with a project of small files
and one 40 MB wheel; `pantry serve` caches them all first.  Then four keep-alive clients
(http.client, one connection each, no retries) loop over the project's page and files while:

  1. `pantry upgrade --binary COPY` hands over to a copy of the binary, while a download of
     the big wheel that started before the upgrade is still in flight (it finishes after the
     old process has begun to drain, and must be byte-correct);
  2. `pantry upgrade --binary /bin/false` and `pantry upgrade` with the config made invalid
     fail, say why, and leave the serving process as it was;
  3. a plain `pantry upgrade` hands over again (to the binary the serve was started from).

Every request must succeed with the right bytes: failures are counted and must be zero.  Each
old process must be gone afterwards, the last one must serve everything from its cache (nginx
sees no second GET of any file), and `pantry upgrade` must say what became of CI jobs.
Everything is on 127.0.0.1; every process started here is stopped in tearDown().
"""

import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
import make_pypi_upstream  # noqa: E402
import nginx_pypi  # noqa: E402
from pantry_serve import Pantry, gone, stop_pids, wait_gone  # noqa: E402

PANTRY = None
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
CLIENTS = 4
BIG_NAME = "big-1.0-py3-none-any.whl"
BIG_SIZE = 40 * 1000 * 1000
SMALL = [(f"small-1.{i}-py3-none-any.whl", 20_000 + 37_000 * i) for i in range(5)]


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class Loop:
    """CLIENTS threads, each with one keep-alive connection, GETting `paths` round and round
    and checking each answer against `expected` (path -> check function) until stop()."""

    def __init__(self, port, paths, expected):
        self.port = port
        self.paths = paths
        self.expected = expected
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(i,), daemon=True)
                        for i in range(CLIENTS)]
        for t in self.threads:
            t.start()

    def client(self, i):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        n = i
        while not self.stopping.is_set():
            path = self.paths[n % len(self.paths)]
            n += 1
            try:
                headers = {"Accept": JSON_TYPE} if path.startswith("/simple/") else {}
                conn.request("GET", path, headers=headers)
                r = conn.getresponse()
                body = r.read()
                problem = None if r.status == 200 else f"status {r.status}: {body[:200]!r}"
                if problem is None:
                    problem = self.expected[path](body)
            except (OSError, http.client.HTTPException) as e:
                problem = repr(e)
                conn.close()  # the next request opens a new connection: not a retry of this one
            with self.lock:
                if problem is None:
                    self.ok += 1
                else:
                    self.failures.append(f"client {i} GET {path}: {problem}")
        conn.close()

    def count(self):
        with self.lock:
            return self.ok, len(self.failures)

    def wait_for_more(self, than, timeout=60):
        """Waits until more than `than` requests succeeded (the loop is running)."""
        deadline = time.monotonic() + timeout  # a bound on the test only
        while time.monotonic() < deadline:
            if self.count()[0] > than:
                return True
            time.sleep(0.01)
        return False

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=120)


class UpgradeTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="pantry-upgrade-test-")
        self.nginx = None
        self.pantry = None
        self.loop = None
        self.pids = []  # every serve process seen, to stop them whatever happens

    def tearDown(self):
        if self.loop is not None:
            self.loop.stop()
        stop_pids(self.pids)
        if self.pantry is not None:
            self.pantry.stop()
        if self.nginx is not None:
            self.nginx.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def serve_pid(self):
        with open(os.path.join(self.pantry.data_dir, "serve.json")) as f:
            return json.load(f)["pid"]

    def upgrade(self, *args, data_dir=False):
        where = ["--data-dir", self.pantry.data_dir] if data_dir else ["--config", self.pantry.config]
        return subprocess.run([PANTRY, "upgrade", *where, *args], capture_output=True, text=True,
                              timeout=300)

    def file_gets(self):
        return [e for e in self.nginx.log_entries()
                if e.get("method") == "GET" and "/packages/" in e.get("uri", "")]

    def test_upgrades_without_a_failed_request(self):
        tree = os.path.join(self.work, "upstream")
        self.nginx = nginx_pypi.start(tree, build=True)
        small = make_pypi_upstream.add_random_project(tree, self.nginx.files_base, "small", SMALL)
        big = make_pypi_upstream.add_random_project(tree, self.nginx.files_base, "big",
                                                    [(BIG_NAME, BIG_SIZE)])
        self.pantry = Pantry(PANTRY, os.path.join(self.work, "pantry"), self.nginx.index_url)
        first_pid = self.pantry.process.pid
        self.pids.append(first_pid)

        # Everything cached once, and the answers to check the loop's against.
        expected = {}
        file_urls = {}
        for project, files in (("small", small), ("big", big)):
            status, _, body = self.pantry.fetch(f"/simple/{project}/", {"Accept": JSON_TYPE})
            self.assertEqual(status, 200, f"{body[:300]!r}\n{self.pantry.tail()}")
            listed = sorted(f["filename"] for f in json.loads(body)["files"])
            self.assertEqual(listed, sorted(files))
            for f in json.loads(body)["files"]:
                file_urls[f["filename"]] = f["url"]

            def page_check(b, listed=listed):
                try:
                    got = sorted(f["filename"] for f in json.loads(b)["files"])
                except (ValueError, KeyError) as e:
                    return f"not a PEP 691 page: {e!r}: {b[:200]!r}"
                return None if got == listed else f"lists {got}, expected {listed}"
            expected[f"/simple/{project}/"] = page_check
        for name, info in list(small.items()) + list(big.items()):
            status, _, body = self.pantry.fetch(file_urls[name])
            self.assertEqual((status, len(body), sha256(body)), (200, info["size"], info["sha256"]),
                             self.pantry.tail())

            def file_check(b, info=info):
                if len(b) == info["size"] and sha256(b) == info["sha256"]:
                    return None
                return f"{len(b)} bytes with sha256 {sha256(b)}, expected {info['size']} and {info['sha256']}"
            expected[file_urls[name]] = file_check
        self.assertEqual(len(self.file_gets()), len(SMALL) + 1, "each file fetched upstream once")

        paths = ["/simple/small/"] + [file_urls[n] for n, _ in SMALL]
        self.loop = Loop(self.pantry.port, paths, expected)
        self.assertTrue(self.loop.wait_for_more(50), "the client loop runs")

        # A download of the big wheel begun before the upgrade, finished after the hand-over.
        resume = threading.Event()
        big_result = {}

        def download():
            conn = http.client.HTTPConnection("127.0.0.1", self.pantry.port, timeout=120)
            try:
                conn.request("GET", file_urls[BIG_NAME])
                r = conn.getresponse()
                h = hashlib.sha256()
                first = r.read(1 << 20)
                h.update(first)
                n = len(first)
                big_result["started"] = n
                resume.wait(timeout=120)
                while True:
                    chunk = r.read(1 << 20)
                    if not chunk:
                        break
                    h.update(chunk)
                    n += len(chunk)
                big_result["done"] = (r.status, n, h.hexdigest())
            except (OSError, http.client.HTTPException) as e:
                big_result["done"] = ("error", repr(e))
            finally:
                conn.close()

        downloader = threading.Thread(target=download, daemon=True)
        downloader.start()
        deadline = time.monotonic() + 60  # a bound on the test only
        while "started" not in big_result and "done" not in big_result and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertIn("started", big_result, big_result)

        # 1. To a copy of the binary.
        copy = os.path.join(self.work, "pantry-next")
        shutil.copy2(PANTRY, copy)
        before = self.loop.count()[0]
        cli = subprocess.Popen([PANTRY, "upgrade", "--config", self.pantry.config, "--binary", copy],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = []
        for line in cli.stdout:
            lines.append(line)
            if "finishes its in-flight responses" in line:
                resume.set()  # the old process drains now; the download goes on there
        resume.set()
        cli.stdout.close()
        err = cli.stderr.read()
        cli.stderr.close()
        self.assertEqual(cli.wait(timeout=300), 0, f"{''.join(lines)}{err}\n{self.pantry.tail()}")
        out = "".join(lines)
        second_pid = self.serve_pid()
        self.pids.append(second_pid)
        self.assertNotEqual(second_pid, first_pid)
        self.assertIn(f"process {second_pid} ({copy}) serves", out)
        self.assertIn(f"process {first_pid} has exited", out)
        self.assertIn(f"CI jobs drained: the jobs running in process {first_pid} run on while it drains", out)
        self.assertEqual(self.pantry.process.wait(timeout=60), 0, "the old serve exits cleanly")
        downloader.join(timeout=120)
        self.assertEqual(big_result.get("done"), (200, BIG_SIZE, big[BIG_NAME]["sha256"]),
                         "the download in flight across the upgrade is whole and correct")
        self.assertTrue(self.loop.wait_for_more(before + 50), "the loop goes on after the upgrade")

        # 2. Upgrades that cannot happen leave the serving process as it is.
        failed = self.upgrade("--binary", "/bin/false")
        self.assertEqual(failed.returncode, 1, failed.stdout + failed.stderr)
        self.assertIn("/bin/false", failed.stderr)
        self.assertIn("exited with status 1 before it was ready", failed.stderr)
        self.assertIn(f"process {second_pid} serves on", failed.stderr)
        with open(self.pantry.config) as f:
            good_config = f.read()
        with open(self.pantry.config, "w") as f:
            f.write(good_config.replace("index_ttl: 10m", "index_ttl: ten minutes"))
        bad = self.upgrade(data_dir=True)
        with open(self.pantry.config, "w") as f:
            f.write(good_config)
        self.assertEqual(bad.returncode, 1, bad.stdout + bad.stderr)
        self.assertIn("cannot start", bad.stderr)
        self.assertIn("index_ttl", bad.stderr, "the successor's config error reaches the user")
        self.assertEqual(self.serve_pid(), second_pid)
        self.assertFalse(gone(second_pid))
        before = self.loop.count()[0]
        self.assertTrue(self.loop.wait_for_more(before + 50), "still serving")

        # 3. Again, to the binary the serve runs (the copy).
        again = self.upgrade()
        self.assertEqual(again.returncode, 0, again.stdout + again.stderr + self.pantry.tail())
        third_pid = self.serve_pid()
        self.pids.append(third_pid)
        self.assertNotEqual(third_pid, second_pid)
        self.assertIn(f"process {second_pid} has exited", again.stdout)
        self.assertTrue(gone(second_pid))
        before = self.loop.count()[0]
        self.assertTrue(self.loop.wait_for_more(before + 50), "the loop goes on")

        self.loop.stop()
        ok, failures = self.loop.count()
        print(f"ops.upgrade: {ok + failures} requests over {CLIENTS} keep-alive connections across "
              f"two upgrades, {failures} failed", file=sys.stderr)
        self.assertEqual(self.loop.failures, [],
                         f"{failures} of {ok + failures} requests failed\n{self.pantry.tail(80)}")
        self.loop = None

        # The last process serves what the first cached, without asking upstream again.
        for name, info in list(small.items()) + list(big.items()):
            status, _, body = self.pantry.fetch(file_urls[name])
            self.assertEqual((status, len(body), sha256(body)), (200, info["size"], info["sha256"]))
        self.assertEqual(len(self.file_gets()), len(SMALL) + 1,
                         "no file was fetched upstream again across the upgrades")
        with open(self.pantry.log_path, errors="replace") as f:
            log = f.read()
        self.assertIn(f"took over port {self.pantry.port} from process {first_pid}", log)
        self.assertIn(f"process {second_pid} handed the data dir over", log)

        os.kill(third_pid, signal.SIGTERM)
        self.assertTrue(wait_gone(third_pid), "the last serve stops on SIGTERM")
        self.assertIn("pantry serve: stopped", self.pantry.tail(5))


if __name__ == "__main__":
    PANTRY = os.path.abspath(sys.argv.pop(1))
    unittest.main()
