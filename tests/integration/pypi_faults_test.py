#!/usr/bin/python3
"""pantry's PyPI proxy against upstreams that misbehave, and under a thundering herd.

Run with the pantry binary as the first argument:
    /usr/bin/python3 tests/integration/pypi_faults_test.py build/asan/cli/pantry

FaultTest: a small upstream of our own (ThreadingHTTPServer in a thread) serves one
project, "faulty", as a PEP 691 JSON page whose file URLs point back at itself; the test
switches, per path, between good behaviour and faults: connection reset mid-file, a body
that does not match its sha256, a stall past pantry's idle timeout mid-body, 503 and 429
on the index page.  After each fault the client must have seen an error, the cache must
hold no new blob, and once the upstream behaves the same file must come through intact.

HerdTest: real nginx (tests/fixtures/nginx_pypi.py) with one extra 50 MB wheel; 100
concurrent GETs through pantry must make exactly one upstream GET and all get the right
bytes; again with nginx limit_rate 10m.
Everything is on 127.0.0.1; every process started here is stopped in tearDown(Class).
"""

import hashlib
import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
import make_pypi_upstream  # noqa: E402
import nginx_pypi  # noqa: E402
from pantry_serve import CLIENT_TIMEOUT, Pantry as _Pantry, free_port, get  # noqa: E402

PANTRY = None
JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def get_outcome(url, headers=None):
    """Like get(), but a broken transfer is a result, not an exception:
    ("ok", status, headers, body) or ("error", repr(exception), received_headers, partial_len)."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        r = urllib.request.urlopen(req, timeout=CLIENT_TIMEOUT)
    except urllib.error.HTTPError as e:
        try:
            body = e.read()
        except (OSError, http.client.HTTPException) as inner:
            return ("error", f"HTTP {e.code} then {inner!r}", e.headers, None)
        return ("ok", e.code, e.headers, body)
    except (OSError, http.client.HTTPException) as e:
        return ("error", repr(e), None, 0)
    received = 0
    chunks = []
    try:
        with r:
            while True:
                chunk = r.read(65536)
                if not chunk:
                    break
                received += len(chunk)
                chunks.append(chunk)
    except (OSError, http.client.HTTPException) as e:
        return ("error", repr(e), r.headers, received)
    return ("ok", r.status, r.headers, b"".join(chunks))


def Pantry(*args, **kwargs):
    return _Pantry(PANTRY, *args, **kwargs)


# ------------------------------------------------------------------ misbehaving upstream

class FaultyUpstream:
    """One project, "faulty", served as PEP 691 JSON; files at /packages/<name>.

    mode[path] picks the behaviour of a path: "good", "reset" (headers + half the body,
    then RST), "badhash" (a body of the right size that does not match its sha256),
    "stall" (headers + half the body, then silence until released), "503", "429".
    Unknown paths under /simple/ use mode["/simple/*"] (default "good": 404)."""

    PROJECT = "faulty"

    def __init__(self, files):
        self.files = dict(files)  # filename -> bytes
        self.mode = {}
        self.hits = {}
        self.lock = threading.Lock()
        self.release = threading.Event()  # ends stalls (teardown)
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def do_GET(self):
                upstream.handle(self)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
                    super().handle_error(request, client_address)  # pantry hanging up is expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def index_url(self):
        return f"http://127.0.0.1:{self.port}/simple/"

    def file_path(self, filename):
        return f"/packages/{filename}"

    def page(self):
        files = [{
            "filename": name,
            "url": f"http://127.0.0.1:{self.port}{self.file_path(name)}",
            "hashes": {"sha256": sha256(data)},
            "requires-python": None,
            "yanked": False,
            "size": len(data),
        } for name, data in sorted(self.files.items())]
        return (json.dumps({"meta": {"api-version": "1.1"}, "name": self.PROJECT,
                            "versions": ["1.0"], "files": files}) + "\n").encode()

    def set_mode(self, path, mode):
        with self.lock:
            self.mode[path] = mode

    def hit_count(self, path):
        with self.lock:
            return self.hits.get(path, 0)

    def handle(self, h):
        path = h.path.split("?", 1)[0]
        with self.lock:
            self.hits[path] = self.hits.get(path, 0) + 1
            if path.startswith("/simple/") and path != f"/simple/{self.PROJECT}/":
                mode = self.mode.get(path, self.mode.get("/simple/*", "good"))
            else:
                mode = self.mode.get(path, "good")
        if mode in ("503", "429"):
            body = f"upstream says {mode}\n".encode()
            h.send_response(int(mode))
            if mode == "429":
                h.send_header("Retry-After", "1")
            h.send_header("Content-Type", "text/plain")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        if path == f"/simple/{self.PROJECT}/":
            body = self.page()
            h.send_response(200)
            h.send_header("Content-Type", JSON_TYPE)
            h.send_header("Vary", "Accept")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        name = path[len("/packages/"):] if path.startswith("/packages/") else None
        if name not in self.files:
            body = b"not found\n"
            h.send_response(404)
            h.send_header("Content-Type", "text/plain")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        data = self.files[name]
        if mode == "badhash":
            data = bytes([data[0] ^ 0xFF]) + data[1:-1] + bytes([data[-1] ^ 0xFF])
        h.send_response(200)
        h.send_header("Content-Type", "application/zip")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if mode in ("reset", "stall"):
            h.wfile.write(data[:len(data) // 2])
            h.wfile.flush()
            if mode == "stall":
                self.release.wait(timeout=8)  # far past pantry's 2 s idle timeout
            self.abort(h)
            return
        h.wfile.write(data)

    @staticmethod
    def abort(h):
        """Close with SO_LINGER 0: the peer gets a RST, not a FIN."""
        h.close_connection = True
        try:
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            os.close(h.connection.detach())
        except OSError:
            pass

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def wheel_bytes(seed, size):
    """Deterministic incompressible-looking bytes (pantry never unzips them here)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest() * 64
        counter += 1
    return bytes(out[:size])


def upstream_failures(pantry):
    """pantry_upstream_failures_total of the upstream "up" (0 before the first failure)."""
    status, _, body = pantry.fetch("/metrics")
    assert status == 200, status
    series = 'pantry_upstream_failures_total{protocol="pypi",upstream="up"} '
    for line in body.decode().splitlines():
        if line.startswith(series):
            return float(line[len(series):])
    return 0


class FaultTest(unittest.TestCase):
    FILES = {
        "faulty-1.0-py3-none-any.whl": wheel_bytes("reset", 1 << 20),
        "faulty-1.1-py3-none-any.whl": wheel_bytes("badhash", 1 << 20),
        "faulty-1.2-py3-none-any.whl": wheel_bytes("stall", 1 << 20),
        "faulty-1.3-py3-none-any.whl": wheel_bytes("good", 1 << 20),
    }

    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-faults-test-")
        cls.upstream = FaultyUpstream(cls.FILES)
        cls.pantry = None
        cls.pantry_ttl = None
        try:
            # Files: a long index TTL, so the page stays cached and blob counts move only by files.
            cls.pantry = Pantry(os.path.join(cls.work, "files"), cls.upstream.index_url)
            # Index pages: TTL 1 s, to see stale-on-error.
            cls.pantry_ttl = Pantry(os.path.join(cls.work, "index"), cls.upstream.index_url,
                                    index_ttl="1s")
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for p in (cls.pantry, cls.pantry_ttl):
            if p is not None:
                p.stop()
        cls.upstream.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    def tearDown(self):
        for p in (self.pantry, self.pantry_ttl):
            if p.process.poll() is not None:
                self.fail(f"pantry exited with {p.process.returncode} during this test{self.logs(p)}")

    def logs(self, pantry):
        return f"\n--- pantry log tail ({pantry.log_path}):\n{pantry.tail()}"

    def page(self, pantry):
        status, headers, body = pantry.fetch(f"/simple/{FaultyUpstream.PROJECT}/",
                                             {"Accept": JSON_TYPE})
        self.assertEqual(status, 200, f"index page: {status} {headers} {body[:500]!r}{self.logs(pantry)}")
        return json.loads(body)

    def pantry_file_url(self, filename):
        files = {f["filename"]: f for f in self.page(self.pantry)["files"]}
        self.assertIn(filename, files, f"{filename} not in pantry's page: {sorted(files)}")
        url = files[filename]["url"]
        self.assertTrue(url.startswith("/files/up/127.0.0.1:"), url)
        return self.pantry.url(url)

    def check_fault_then_recovery(self, filename, fault):
        data = self.FILES[filename]
        upstream_path = self.upstream.file_path(filename)
        url = self.pantry_file_url(filename)
        blobs_before, stats_before = self.pantry.blobs()
        hits_before = self.upstream.hit_count(upstream_path)

        self.upstream.set_mode(upstream_path, fault)
        outcome = get_outcome(url)
        if outcome[0] == "ok":
            status, headers, body = outcome[1], outcome[2], outcome[3]
            self.assertNotEqual(status, 200,
                                f"{fault}: GET {url} gave a clean 200 with {len(body)} bytes "
                                f"(sha256 {sha256(body)}, expected {sha256(data)}); the client must "
                                f"see a reset/short read or an error status{self.logs(self.pantry)}")
            self.assertGreaterEqual(status, 500, f"{fault}: status {status} {body[:300]!r}{self.logs(self.pantry)}")
        else:
            _, error, headers, received = outcome
            self.assertTrue(received is None or received < len(data) or headers is None,
                            f"{fault}: error {error} after {received} bytes{self.logs(self.pantry)}")
        self.assertGreater(self.upstream.hit_count(upstream_path), hits_before,
                           f"{fault}: pantry never asked upstream for {upstream_path}{self.logs(self.pantry)}")

        blobs_after, stats_after = self.pantry.blobs()
        self.assertEqual(blobs_after, blobs_before,
                         f"{fault}: the cache gained a blob after a failed download of {filename}:\n"
                         f"before:\n{stats_before}\nafter:\n{stats_after}{self.logs(self.pantry)}")

        # Upstream recovers: the same file must now come through whole, fetched anew.
        self.upstream.set_mode(upstream_path, "good")
        hits_mid = self.upstream.hit_count(upstream_path)
        outcome = get_outcome(url)
        self.assertEqual(outcome[:2], ("ok", 200), f"{fault} then good: {outcome[:3]}{self.logs(self.pantry)}")
        body = outcome[3]
        self.assertEqual((len(body), sha256(body)), (len(data), sha256(data)),
                         f"{fault} then good: wrong body{self.logs(self.pantry)}")
        self.assertGreater(self.upstream.hit_count(upstream_path), hits_mid,
                           f"{fault} then good: served without asking upstream again, so the bad "
                           f"download was cached{self.logs(self.pantry)}")
        blobs_good, stats_good = self.pantry.blobs()
        self.assertGreater(blobs_good, blobs_after,
                           f"{fault} then good: no new blob after a good download:\n{stats_good}")
        # And from the cache now, without upstream.
        hits_cached = self.upstream.hit_count(upstream_path)
        outcome = get_outcome(url)
        self.assertEqual(outcome[:2], ("ok", 200), f"{fault}, cached: {outcome[:3]}{self.logs(self.pantry)}")
        self.assertEqual(sha256(outcome[3]), sha256(data), f"{fault}, cached: wrong body{self.logs(self.pantry)}")
        self.assertEqual(self.upstream.hit_count(upstream_path), hits_cached,
                         f"{fault}: a cached file went upstream again{self.logs(self.pantry)}")

    def test_file_reset_mid_body(self):
        self.check_fault_then_recovery("faulty-1.0-py3-none-any.whl", "reset")

    def test_file_sha256_mismatch(self):
        self.check_fault_then_recovery("faulty-1.1-py3-none-any.whl", "badhash")

    def test_file_stall_past_idle_timeout(self):
        self.check_fault_then_recovery("faulty-1.2-py3-none-any.whl", "stall")

    def test_file_good(self):
        filename = "faulty-1.3-py3-none-any.whl"
        url = self.pantry_file_url(filename)
        outcome = get_outcome(url)
        self.assertEqual(outcome[:2], ("ok", 200), f"{outcome[:3]}{self.logs(self.pantry)}")
        self.assertEqual(sha256(outcome[3]), sha256(self.FILES[filename]))

    def stale_page_on(self, code):
        pantry = self.pantry_ttl
        path = f"/simple/{FaultyUpstream.PROJECT}/"
        self.upstream.set_mode(path, "good")
        status, headers, fresh = pantry.fetch(path, {"Accept": JSON_TYPE})
        self.assertEqual(status, 200, f"{status} {fresh[:300]!r}{self.logs(pantry)}")
        self.assertIsNone(headers.get("Warning"), f"fresh page has Warning {headers.get('Warning')}")
        time.sleep(1.5)  # let the 1 s index TTL run out (not a timing assertion)
        self.upstream.set_mode(path, code)
        try:
            hits = self.upstream.hit_count(path)
            failures = upstream_failures(pantry)
            status, headers, body = pantry.fetch(path, {"Accept": JSON_TYPE})
            self.assertGreater(self.upstream.hit_count(path), hits,
                               f"{code}: pantry did not revalidate an expired page{self.logs(pantry)}")
            self.assertGreater(upstream_failures(pantry), failures,
                               f"{code}: the failure is not counted{self.logs(pantry)}")
            self.assertEqual(status, 200, f"upstream {code}, expired page cached: got {status} "
                                          f"{dict(headers)} {body[:300]!r}{self.logs(pantry)}")
            self.assertEqual(body, fresh, f"upstream {code}: stale body differs{self.logs(pantry)}")
            warning = headers.get("Warning")
            self.assertIsNotNone(warning, f"upstream {code}: stale page without Warning; headers "
                                          f"{dict(headers)}{self.logs(pantry)}")
            # Revalidation was tried and failed: 111, as the registry says it.
            self.assertEqual(warning, '111 pantry "Revalidation Failed"', warning)
        finally:
            self.upstream.set_mode(path, "good")

    def test_index_stale_on_503(self):
        self.stale_page_on("503")

    def test_index_stale_on_429(self):
        self.stale_page_on("429")

    def nothing_cached(self, code, project):
        pantry = self.pantry_ttl
        path = f"/simple/{project}/"
        self.upstream.set_mode(path, code)
        status, headers, body = pantry.fetch(path, {"Accept": JSON_TYPE})
        self.assertEqual(status, 502, f"upstream {code}, nothing cached: got {status} "
                                      f"{dict(headers)} {body[:300]!r}{self.logs(pantry)}")
        text = body.decode(errors="replace")
        upstream_url = f"http://127.0.0.1:{self.upstream.port}{path}"
        self.assertIn(upstream_url, text, f"502 body does not name the upstream URL: {text!r}")
        self.assertIn(code, text, f"502 body does not name the cause ({code}): {text!r}")

    def test_index_502_on_503_when_nothing_cached(self):
        self.nothing_cached("503", "never-cached-a")

    def test_index_502_on_429_when_nothing_cached(self):
        self.nothing_cached("429", "never-cached-b")


# ------------------------------------------------------------------ thundering herd

BIG_NAME = "big-1.0-py3-none-any.whl"
BIG_SIZE = 50 * 1000 * 1000
CLIENTS = 100


def add_big_project(tree, files_base):
    """simple/big/ listing one 50 MB wheel of random bytes; returns its sha256."""
    files = make_pypi_upstream.add_random_project(tree, files_base, "big", [(BIG_NAME, BIG_SIZE)])
    return files[BIG_NAME]["sha256"]


class HerdTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="pantry-herd-test-")
        self.nginx = None
        self.pantry = None

    def tearDown(self):
        if self.pantry is not None:
            self.pantry.stop()
        if self.nginx is not None:
            self.nginx.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def file_gets(self):
        return [e for e in self.nginx.log_entries()
                if e.get("method") == "GET" and e.get("uri", "").endswith("/" + BIG_NAME)]

    def herd(self, limit_rate=None):
        tree = os.path.join(self.work, "upstream")
        self.nginx = nginx_pypi.start(tree, build=True, limit_rate=limit_rate)
        digest = add_big_project(tree, self.nginx.files_base)
        self.pantry = Pantry(os.path.join(self.work, "pantry"), self.nginx.index_url,
                             upstream_timeouts="connect_timeout: 5s, header_timeout: 10s, idle_timeout: 10s")
        status, headers, body = self.pantry.fetch("/simple/big/", {"Accept": JSON_TYPE})
        self.assertEqual(status, 200, f"{status} {body[:300]!r}{self.pantry.tail()}")
        files = json.loads(body)["files"]
        self.assertEqual([f["filename"] for f in files], [BIG_NAME])
        url = self.pantry.url(files[0]["url"])

        barrier = threading.Barrier(CLIENTS)
        results = [None] * CLIENTS
        progress = [0] * CLIENTS  # bytes received so far, per client

        def client(i):
            try:
                barrier.wait(timeout=30)
            except threading.BrokenBarrierError:
                pass
            h = hashlib.sha256()
            n = 0
            try:
                with urllib.request.urlopen(url, timeout=120) as r:
                    status = r.status
                    while True:
                        chunk = r.read(1 << 20)
                        if not chunk:
                            break
                        h.update(chunk)
                        n += len(chunk)
                        progress[i] = n
                results[i] = (status, n, h.hexdigest())
            except urllib.error.HTTPError as e:
                results[i] = (e.code, n, e.read()[:200])
            except (OSError, http.client.HTTPException) as e:
                results[i] = ("error", n, repr(e))

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 240  # a bound on the test, not a performance assertion
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        stuck = [i for i, t in enumerate(threads) if t.is_alive()]
        if stuck:
            time.sleep(0.1)
            gets = self.file_gets()
            self.fail(f"{len(stuck)} of {CLIENTS} clients still reading after 240 s; bytes received "
                      f"by them: {sorted(progress[i] for i in stuck)[:20]}...; finished: "
                      f"{sorted(set(r for r in results if r is not None))[:5]}\n"
                      f"upstream GETs logged so far: {len(gets)}\n"
                      + "\n".join(json.dumps(g) for g in gets[:5])
                      + f"\n--- pantry log tail:\n{self.pantry.tail()}")

        good = (200, BIG_SIZE, digest)
        bad = [(i, r) for i, r in enumerate(results) if r != good]
        self.assertEqual(bad, [], f"{len(bad)} of {CLIENTS} clients did not get {good}: {bad[:10]}"
                                  f"\n--- pantry log tail:\n{self.pantry.tail()}")

        gets = self.file_gets()
        for _ in range(20):  # nginx logs a request just after it ends
            if gets:
                break
            time.sleep(0.1)
            gets = self.file_gets()
        self.assertEqual(len(gets), 1, f"upstream GETs of {BIG_NAME}: {len(gets)}\n"
                                       + "\n".join(json.dumps(g) for g in gets[:20])
                                       + f"\n--- pantry log tail:\n{self.pantry.tail()}")
        self.assertEqual((gets[0]["status"], gets[0]["bytes"]), (200, BIG_SIZE), json.dumps(gets[0]))

    def test_herd_fast_upstream(self):
        self.herd()

    def test_herd_slow_upstream(self):
        self.herd(limit_rate="10m")


if __name__ == "__main__":
    PANTRY = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
