#!/usr/bin/python3
"""pantry's OCI pull-through cache (/v2/) against upstreams that misbehave, under a thundering
herd, and in front of upstreams with token and htpasswd auth.

Run with the pantry binary as the first argument:
    /usr/bin/python3 tests/integration/oci_faults_test.py build/asan/cli/pantry

FaultTest: registries of the test's own (FaultyRegistry, a ThreadingHTTPServer in a thread)
serve the registry API (GET/HEAD /v2/, manifests by tag and digest, blobs) straight from OCI
layouts: busybox and multi from make_oci_images.build(), and one small image per fault test,
made with make_oci_images.Layout, so that no two tests share a blob (pantry stores blobs by
digest, whatever the repository).  Per path the test switches a fault on: connection reset
mid-blob, a blob whose bytes do not match its digest, a stall past pantry's idle timeout,
429 with Retry-After, 503, 401 with a Bearer challenge.  After a blob fault the client must
have failed, pantry's cache must hold no new blob, and once the fault is off the same pull
must come through intact, fetched from upstream again.  A manifest that fails upstream is
served stale once its tag was cached (tag_ttl 1 s), and fails with the upstream's meaning
(429 + Retry-After, 502) when it was not.  A second upstream is stopped (dead upstream), a
third answers 401 for every repository (as Docker Hub does for a missing one), a fourth wants
a Bearer token and stops taking pantry's cached one (pantry must get a new one, for blobs as
for manifests).  50 clients at once on an expired tag: one upstream HEAD.  Requests pantry
must refuse never reach an upstream.

HerdTest: 50 concurrent raw pulls (manifest, then every blob) of one uncached image from the
real docker-registry fixture through pantry: one upstream GET per blob, right bytes for all.

TokenTest: docker-registry with token auth: pulls work, tokens are reused within their
lifetime and renewed after it, and an answer without expires_in works.

HtpasswdTest: docker-registry with Basic auth, pantry with the upstream's credentials and a
user of its own: anonymous clients get 401, `skopeo --src-creds user:token` pulls.

Everything is on 127.0.0.1; every process and temp dir made here is removed in tearDown(Class).
"""

import base64
import collections
import hashlib
import http.client
import http.server
import json
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
import make_oci_images as moi  # noqa: E402
import oci_registry  # noqa: E402
from pantry_serve import Pantry as _Pantry  # noqa: E402

PANTRY = None
SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
ALL_MANIFEST_TYPES = ", ".join([moi.OCI_MANIFEST, moi.OCI_INDEX, moi.DOCKER_MANIFEST,
                                moi.DOCKER_MANIFEST_LIST])
ACCEPT = {"Accept": ALL_MANIFEST_TYPES}
TAG_TTL = 1.0          # seconds; oci.tag_ttl of the FaultTest pantry
# An expired tag served because revalidating it failed (the Warning PyPI's pages get too).
STALE_WARNING = '111 pantry "Revalidation Failed"'
CLIENT_TIMEOUT = 60
NO_PYPI = "http://127.0.0.1:9/simple/"  # pantry_serve always writes a pypi: section; never used
USER, USER_TOKEN = "ci", "ci-token-0123456789abcdef"


def Pantry(workdir, oci, **kwargs):
    return _Pantry(PANTRY, workdir, NO_PYPI, oci=oci, **kwargs)


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def request(port, path, method="GET", headers=None, timeout=CLIENT_TIMEOUT):
    """One request with http.client (the path is sent exactly as given).  A broken transfer is
    a result: ("ok", status, headers, body) or ("error", repr(exception), headers or None,
    bytes received)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        try:
            conn.request(method, path, headers=headers or {})
            r = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            return ("error", repr(e), None, 0)
        chunks, received = [], 0
        try:
            while True:
                chunk = r.read(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
                received += len(chunk)
        except (OSError, http.client.HTTPException) as e:
            return ("error", repr(e), r.headers, received)
        return ("ok", r.status, r.headers, b"".join(chunks))
    finally:
        conn.close()


def show(outcome):
    """An outcome of request() for a failure message."""
    if outcome[0] == "ok":
        return f"{outcome[1]} {dict(outcome[2])} {outcome[3][:300]!r}"
    return f"{outcome[1]} after {outcome[3]} body bytes"


def log_outcomes(pantry, needle):
    """Counter of the outcome column (MISS, HIT, COALESCED, ...) of pantry's access-log lines
    that contain NEEDLE."""
    with open(pantry.log_path, errors="replace") as f:
        return collections.Counter(line.split()[-1] for line in f if needle in line)


def error_codes(body):
    """The codes of an OCI {"errors": [...]} body, or the body itself when it is not one."""
    try:
        return [e["code"] for e in json.loads(body)["errors"]]
    except (ValueError, KeyError, TypeError):
        return body[:300]


def skopeo_copy(src_ref, dest, creds=None, all_platforms=True, timeout=120):
    """(returncode, digest written or None, output) of skopeo copy from a registry over HTTP."""
    with tempfile.NamedTemporaryFile(prefix="pantry-digest-") as digestfile:
        cmd = [SKOPEO, "copy", "--quiet", "--src-tls-verify=false", "--retry-times", "0",
               "--digestfile", digestfile.name]
        if all_platforms:
            cmd.append("--all")
        if creds:
            cmd += ["--src-creds", creds]
        cmd += [src_ref, dest]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        digest = None
        if r.returncode == 0:
            with open(digestfile.name) as f:
                digest = f.read().strip()
        return r.returncode, digest, f"$ {' '.join(cmd)}\n{r.stdout}{r.stderr}"


def dir_blobs(dest_dir):
    """{digest: sha256 of the file} of the blobs a skopeo dir: copy holds."""
    out = {}
    for name in os.listdir(dest_dir):
        if re.fullmatch(r"[0-9a-f]{64}", name):
            with open(os.path.join(dest_dir, name), "rb") as f:
                out["sha256:" + name] = digest_of(f.read())
    return out


def random_image(workdir, name, payload_bytes, seed):
    """A one-layer OCI image whose blobs no other image has: /data.bin of seeded random bytes,
    gzip level 1 (so the layer is about PAYLOAD_BYTES big).  Returns what describe_oci does."""
    rootfs = moi.RootFS(moi.DEFAULT_EPOCH)
    rootfs.file("data.bin", random.Random(seed).randbytes(payload_bytes))
    rootfs.file("etc/pantry-image", f"{name}\n".encode())
    layout = moi.Layout(os.path.join(workdir, name))
    desc = layout.add_image([layout.add_layer(rootfs, level=1)], "linux/amd64", moi.DEFAULT_EPOCH)
    layout.tag(desc, moi.TAG)
    return moi.describe_oci(layout.path)


# ------------------------------------------------------------------ misbehaving upstream

class FaultyRegistry:
    """The registry API (pull side) served from OCI layouts: repos = {name: layout dir}.

    mode[path] picks the behaviour of a path (any method unless said otherwise):
      "good"     as a registry would
      "reset"    GET: headers with the full Content-Length, half the body, then RST
      "badhash"  GET: a body of the right length whose sha256 is not its digest (the
                 Docker-Content-Digest header still names the right one)
      "badhash-nodigest"  the same without Docker-Content-Digest
      "stall"    GET: headers with the full Content-Length, then nothing (until STALL_SECONDS
                 or stop()), then RST; HEAD: nothing at all until then
      "slow"     as "good", after SLOW_SECONDS
      "429"      429 TOOMANYREQUESTS with Retry-After: RETRY_AFTER
      "503"      503 UNAVAILABLE
      "401"      401 UNAUTHORIZED with a Bearer challenge (how Docker Hub says "no such
                 repository")
      "redirect" GET of a blob: 307 to /cdn/<digest>?sig=… on this server, which serves the
                 bytes without asking for a token and records the Authorization it got in
                 cdn_authorization (a CDN must never see the registry's token)
    Repositories not in repos answer 404 NAME_UNKNOWN, or with unknown_401 the 401 above.
    GET /token is an anonymous token endpoint (any scope, any service) answering "tok-<N>";
    with require_token every /v2/<name>/... request needs "Bearer tok-<N>" of the current N
    (else the 401 above), and rotate_token() makes N+1 current (the old token is refused from
    then on, as after a signing-key rotation).  Every request is counted by (method, path) in
    hits."""

    STALL_SECONDS = 8  # far past pantry's 2 s idle_timeout
    RETRY_AFTER = "7"
    SLOW_SECONDS = 0.5

    def __init__(self, repos, unknown_401=False, require_token=False):
        self.repos = {}
        for name, layout in repos.items():
            self.add_repo(name, layout)
        self.unknown_401 = unknown_401
        self.require_token = require_token
        self.token_generation = 1
        self.mode = {}
        self.hits = collections.Counter()
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.cdn_authorization = []
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def do_GET(self):
                registry.handle(self)

            def do_HEAD(self):
                registry.handle(self)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def process_request(self, request, client_address):
                with registry.lock:
                    registry.connections.add(request)
                super().process_request(request, client_address)

            def shutdown_request(self, request):
                with registry.lock:
                    registry.connections.discard(request)
                super().shutdown_request(request)

            def handle_error(self, request, client_address):
                if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
                    super().handle_error(request, client_address)  # pantry hanging up is expected

        self.connections = set()  # open connections: stop() closes them (keep-alive ones too)
        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.stopped = False

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def add_repo(self, name, layout):
        with open(os.path.join(layout, "index.json")) as f:
            index = json.load(f)
        tags = {d["annotations"][moi.REF_NAME]: d["digest"] for d in index["manifests"]
                if moi.REF_NAME in d.get("annotations", {})}
        self.repos[name] = {"layout": layout, "tags": tags}

    def rotate_token(self):
        with self.lock:
            self.token_generation += 1

    def set_mode(self, path, mode):
        with self.lock:
            self.mode[path] = mode

    def count(self, path, method="GET"):
        with self.lock:
            if method is None:
                return sum(n for (m, p), n in self.hits.items() if p == path)
            return self.hits[(method, path)]

    def total(self):
        with self.lock:
            return sum(self.hits.values())

    # -- answers --

    @staticmethod
    def send(h, status, body, content_type="application/json", headers=()):
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Docker-Distribution-API-Version", "registry/2.0")
        for k, v in headers:
            h.send_header(k, v)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def send_error(self, h, status, code, message, headers=()):
        body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()
        self.send(h, status, body, headers=headers)

    def challenge(self, h, name):
        value = (f'Bearer realm="{self.url}/token",service="faulty-registry",'
                 f'scope="repository:{name}:pull"')
        if h.headers.get("Authorization", "").startswith("Bearer "):
            value += ',error="insufficient_scope"'
        self.send_error(h, 401, "UNAUTHORIZED", "authentication required",
                        [("WWW-Authenticate", value)])

    @staticmethod
    def abort(h):
        """Close with SO_LINGER 0: the peer gets a RST, not a FIN."""
        h.close_connection = True
        try:
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            os.close(h.connection.detach())
        except OSError:
            pass

    def handle(self, h):
        path = urllib.parse.urlsplit(h.path).path
        with self.lock:
            self.hits[(h.command, path)] += 1
            mode = self.mode.get(path, "good")
            token = f"tok-{self.token_generation}"
        if path == "/token":
            return self.send(h, 200, json.dumps({"token": token, "expires_in": 300}).encode())
        if path in ("/v2", "/v2/"):
            return self.send(h, 200, b"{}")
        if path.startswith("/cdn/"):
            digest = path[len("/cdn/"):]
            with self.lock:
                self.cdn_authorization.append(h.headers.get("Authorization"))
            for repo in self.repos.values():
                blob = os.path.join(repo["layout"], "blobs", *digest.split(":", 1))
                if os.path.isfile(blob):
                    with open(blob, "rb") as f:
                        return self.send(h, 200, f.read(), "application/octet-stream")
            return self.send_error(h, 404, "BLOB_UNKNOWN", f"the CDN has no {digest}")
        m = re.fullmatch(r"/v2/(.+)/(manifests|blobs)/([^/]+)", path)
        if not m:
            return self.send_error(h, 404, "NOT_FOUND", f"{path} is no registry endpoint")
        name, kind, ref = m.groups()
        if mode == "slow":
            time.sleep(self.SLOW_SECONDS)
            mode = "good"
        if self.require_token and h.headers.get("Authorization") != f"Bearer {token}":
            return self.challenge(h, name)
        if mode == "429":
            return self.send_error(h, 429, "TOOMANYREQUESTS", "slow down",
                                   [("Retry-After", self.RETRY_AFTER)])
        if mode == "503":
            return self.send_error(h, 503, "UNAVAILABLE", "upstream says 503")
        repo = self.repos.get(name)
        if mode == "401" or (repo is None and self.unknown_401):
            return self.challenge(h, name)
        if repo is None:
            return self.send_error(h, 404, "NAME_UNKNOWN", f"no repository {name}")
        digest = repo["tags"].get(ref, ref) if kind == "manifests" else ref
        blob = os.path.join(repo["layout"], "blobs", *digest.split(":", 1))
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest) or not os.path.isfile(blob):
            code = "MANIFEST_UNKNOWN" if kind == "manifests" else "BLOB_UNKNOWN"
            return self.send_error(h, 404, code, f"{name} has no {ref}")
        with open(blob, "rb") as f:
            data = f.read()
        if kind == "manifests":
            doc = json.loads(data)
            content_type = doc.get("mediaType") or (moi.OCI_INDEX if "manifests" in doc
                                                    else moi.OCI_MANIFEST)
        else:
            content_type = "application/octet-stream"
        if h.command == "HEAD" and mode == "stall":
            self.release.wait(timeout=self.STALL_SECONDS)
            return self.abort(h)
        if mode == "redirect" and kind == "blobs" and h.command == "GET":
            return self.send(h, 307, b"", "text/plain",
                             [("Location", f"{self.url}/cdn/{digest}?sig=signed-url")])
        if h.command == "HEAD" or mode == "good":
            return self.send(h, 200, data, content_type, [("Docker-Content-Digest", digest)])
        if mode.startswith("badhash"):
            data = bytes([data[0] ^ 0xFF]) + data[1:-1] + bytes([data[-1] ^ 0xFF])
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        if mode != "badhash-nodigest":
            h.send_header("Docker-Content-Digest", digest)
        h.end_headers()
        if mode.startswith("badhash"):
            h.wfile.write(data)
            return
        if mode == "reset":
            h.wfile.write(data[:len(data) // 2])
            h.wfile.flush()
            time.sleep(0.05)
        elif mode == "stall":
            h.wfile.flush()
            self.release.wait(timeout=self.STALL_SECONDS)
        else:
            raise AssertionError(f"unknown fault mode {mode!r} for {path}")
        self.abort(h)

    def stop(self):
        if self.stopped:
            return
        self.stopped = True
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            connections = list(self.connections)
        for c in connections:  # a dead upstream keeps no keep-alive connection answering
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(timeout=10)


# ------------------------------------------------------------------ the fault tests

class FaultTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-oci-faults-")
        cls.up = cls.dead = cls.hub = cls.tok = cls.pantry = None
        try:
            built = moi.build(os.path.join(cls.work, "images"))["images"]
            cls.images = {"busybox": built["busybox"], "multi": built["multi"]}
            # One image per test, so that no two tests share a blob; 1 MiB layers where a body
            # fault must strike mid-transfer.
            for fault, size in (("reset", 1 << 20), ("badhash", 1 << 20), ("stall", 1 << 20),
                                ("herd-badhash", 1 << 20), ("blob-status", 4096),
                                ("manifest-badhash", 4096), ("manifest-reset", 4096),
                                ("rl", 4096), ("rl-cached", 4096), ("unavail", 4096),
                                ("unavail-cached", 4096), ("stall-cached", 4096), ("dead", 4096),
                                ("token", 4096), ("revalidate", 4096), ("redirect", 300_000)):
                cls.images[fault] = random_image(os.path.join(cls.work, "images"), fault, size,
                                                 seed=f"oci-{fault}")
            cls.up = FaultyRegistry({f"fault/{n}": img["layout"] for n, img in cls.images.items()})
            cls.dead = FaultyRegistry({"img": cls.images["dead"]["layout"]})
            cls.hub = FaultyRegistry({}, unknown_401=True)
            cls.tok = FaultyRegistry({"img": cls.images["token"]["layout"],
                                      "cdn": cls.images["redirect"]["layout"]},
                                     require_token=True)
            cls.pantry = Pantry(os.path.join(cls.work, "pantry"), f"""\
  default_upstream: up
  upstreams:
    - name: up
      url: "{cls.up.url}"
    - name: dead
      url: "{cls.dead.url}"
    - name: hub
      url: "{cls.hub.url}"
    - name: tok
      url: "{cls.tok.url}"
  tag_ttl: {int(TAG_TTL)}s
""")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.pantry is not None:
            cls.pantry.stop()
        for r in (cls.up, cls.dead, cls.hub, cls.tok):
            if r is not None:
                r.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="pull-", dir=self.work)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.pantry.process.poll() is not None:
            self.fail(f"pantry exited with {self.pantry.process.returncode} during this test"
                      f"{self.logs()}")

    def logs(self):
        return f"\n--- pantry log tail ({self.pantry.log_path}):\n{self.pantry.tail()}"

    # -- helpers --

    def get(self, path, headers=None, method="GET"):
        return request(self.pantry.port, path, method, headers)

    def get_ok(self, path, headers=None):
        outcome = self.get(path, headers)
        self.assertEqual(outcome[:2], ("ok", 200), f"GET {path}: {show(outcome)}{self.logs()}")
        return outcome[2], outcome[3]

    def upstream_failures(self, upstream):
        """pantry_upstream_failures_total of `upstream` (0 before the first failure)."""
        _, body = self.get_ok("/metrics")
        series = f'pantry_upstream_failures_total{{protocol="oci",upstream="{upstream}"}} '
        for line in body.decode().splitlines():
            if line.startswith(series):
                return float(line[len(series):])
        return 0

    def pull(self, name, expect_ok=True):
        """skopeo copy docker://PANTRY/NAME:latest to a dir:; returns (returncode, digest,
        output, destination directory)."""
        dest = os.path.join(self.tmp, f"{name.replace('/', '_')}-{time.monotonic_ns()}")
        rc, digest, out = skopeo_copy(f"docker://127.0.0.1:{self.pantry.port}/{name}:latest",
                                      f"dir:{dest}")
        if expect_ok:
            self.assertEqual(rc, 0, f"skopeo pull of {name} through pantry failed:\n{out}{self.logs()}")
        return rc, digest, out, dest

    def check_pull(self, name, image):
        _, digest, out, dest = self.pull(name)
        self.assertEqual(digest, image["digest"], f"{name}: {out}")
        got = dir_blobs(dest)
        for d in image["blobs"]:
            self.assertEqual(got.get(d), d, f"{name}: blob {d} missing or wrong in {dest}: {got}")

    # -- good upstream --

    def test_good_pulls(self):
        for name in ("busybox", "multi"):
            with self.subTest(image=name):
                self.check_pull(f"fault/{name}", self.images[name])
        # The whole index, by digest, from the cache now: no upstream request.
        before = self.up.total()
        img = self.images["multi"]
        headers, body = self.get_ok(f"/v2/fault/multi/manifests/{img['digest']}", ACCEPT)
        self.assertEqual((digest_of(body), headers.get("Content-Type")),
                         (img["digest"], moi.OCI_INDEX))
        self.assertEqual(headers.get("Docker-Content-Digest"), img["digest"])
        for d in img["blobs"]:
            _, blob = self.get_ok(f"/v2/fault/multi/blobs/{d}")
            self.assertEqual(digest_of(blob), d)
        self.assertEqual(self.up.total(), before,
                         f"cached manifest and blobs went upstream: {self.up.hits}{self.logs()}")

    # -- blob faults --

    def check_blob_fault(self, fault):
        name = f"fault/{fault}"
        image = self.images[fault]
        layer = image["layers"][0]["digest"]
        size = image["layers"][0]["size"]
        upstream_path = f"/v2/{name}/blobs/{layer}"
        # The manifest first, as a client does: pantry learns the blob's size from it.
        self.get_ok(f"/v2/{name}/manifests/latest", ACCEPT)
        blobs_before, stats_before = self.pantry.blobs()
        gets_before = self.up.count(upstream_path)

        self.up.set_mode(upstream_path, fault)
        try:
            outcome = self.get(f"/v2/{name}/blobs/{layer}")
            if outcome[0] == "ok":
                status, headers, body = outcome[1:]
                self.assertNotEqual(status, 200,
                                    f"{fault}: GET blob gave a clean 200 with {len(body)} bytes "
                                    f"(sha256 {digest_of(body)}, expected {layer}); the client must "
                                    f"see a reset/short read or an error status{self.logs()}")
                self.assertGreaterEqual(status, 500, f"{fault}: {status} {body[:300]!r}{self.logs()}")
            else:
                _, error, headers, received = outcome
                self.assertLess(received, size,
                                f"{fault}: error {error} only after all {received} bytes{self.logs()}")
            self.assertGreater(self.up.count(upstream_path), gets_before,
                               f"{fault}: pantry never asked upstream for the blob{self.logs()}")
            # skopeo, fault still on: fails.
            gets_mid = self.up.count(upstream_path)
            rc, digest, out, _ = self.pull(name, expect_ok=False)
            self.assertNotEqual(rc, 0, f"{fault}: skopeo pulled despite the fault:\n{out}{self.logs()}")
            self.assertGreater(self.up.count(upstream_path), gets_mid,
                               f"{fault}: skopeo's pull did not reach upstream for the blob, so "
                               f"something of the failed fetch was cached:\n{out}{self.logs()}")
            blobs_after, stats_after = self.pantry.blobs()
            self.assertEqual(blobs_after, blobs_before,
                             f"{fault}: the cache gained a blob from failed downloads:\nbefore:\n"
                             f"{stats_before}\nafter:\n{stats_after}{self.logs()}")
        finally:
            self.up.set_mode(upstream_path, "good")

        # The fault is gone: the same pull succeeds with the right bytes, fetched again.
        gets_good = self.up.count(upstream_path)
        self.check_pull(name, image)
        self.assertEqual(self.up.count(upstream_path), gets_good + 1,
                         f"{fault} then good: upstream GETs of the blob {upstream_path}{self.logs()}")
        blobs_good, stats_good = self.pantry.blobs()
        self.assertGreater(blobs_good, blobs_after, f"{fault} then good: no new blob:\n{stats_good}")
        # From the cache now.
        _, body = self.get_ok(f"/v2/{name}/blobs/{layer}")
        self.assertEqual(digest_of(body), layer)
        self.assertEqual(self.up.count(upstream_path), gets_good + 1,
                         f"{fault}: a cached blob went upstream again{self.logs()}")

    def test_blob_reset_mid_body(self):
        self.check_blob_fault("reset")

    def test_blob_sha256_mismatch(self):
        self.check_blob_fault("badhash")

    def test_blob_stall_past_idle_timeout(self):
        self.check_blob_fault("stall")

    def test_blob_sha256_mismatch_herd(self):
        """Clients that join a fetch whose bytes turn out wrong all fail: none holds a whole
        body (pantry withholds the last byte until the digest checks out)."""
        name = "fault/herd-badhash"
        image = self.images["herd-badhash"]
        layer, size = image["layers"][0]["digest"], image["layers"][0]["size"]
        upstream_path = f"/v2/{name}/blobs/{layer}"
        self.get_ok(f"/v2/{name}/manifests/latest", ACCEPT)
        blobs_before, stats_before = self.pantry.blobs()
        clients = 8
        results = [None] * clients
        barrier = threading.Barrier(clients)

        def client(i):
            try:
                barrier.wait(timeout=30)
            except threading.BrokenBarrierError:
                pass
            o = self.get(f"/v2/{name}/blobs/{layer}")
            results[i] = (o[0], o[1], o[3]) if o[0] == "error" else \
                (o[0], o[1], len(o[3]), digest_of(o[3]))

        self.up.set_mode(upstream_path, "badhash")
        try:
            threads = [threading.Thread(target=client, args=(i,), daemon=True)
                       for i in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
        finally:
            self.up.set_mode(upstream_path, "good")
        whole = [r for r in results if r is None or (r[0] == "ok" and r[1] == 200)
                 or (r[0] == "error" and r[2] >= size)]
        self.assertEqual(whole, [], f"clients that got a whole body (or none) of a blob whose bytes "
                                    f"are wrong: {results}{self.logs()}")
        self.assertGreaterEqual(self.up.count(upstream_path), 1)
        blobs_after, stats_after = self.pantry.blobs()
        self.assertEqual(blobs_after, blobs_before, f"{stats_before}\n{stats_after}{self.logs()}")
        self.check_pull(name, image)

    def test_blob_error_statuses(self):
        """A blob upstream answers 429 / 503 for: an error status with an OCI error body, not
        cached, and fetched once the upstream is well again."""
        name = "fault/blob-status"
        image = self.images["blob-status"]
        layer = image["layers"][0]["digest"]
        upstream_path = f"/v2/{name}/blobs/{layer}"
        self.get_ok(f"/v2/{name}/manifests/latest", ACCEPT)
        blobs_before, stats_before = self.pantry.blobs()
        for fault, statuses in (("429", (429, 502, 503)), ("503", (502, 503))):
            with self.subTest(fault=fault):
                self.up.set_mode(upstream_path, fault)
                try:
                    gets = self.up.count(upstream_path)
                    outcome = self.get(f"/v2/{name}/blobs/{layer}")
                    self.assertEqual(outcome[0], "ok", f"{show(outcome)}{self.logs()}")
                    status, headers, body = outcome[1:]
                    codes = error_codes(body)
                    self.assertTrue(status in statuses and isinstance(codes, list),
                                    f"blob, upstream {fault}: {status} {body[:300]!r}{self.logs()}")
                    self.assertGreater(self.up.count(upstream_path), gets, f"never asked{self.logs()}")
                finally:
                    self.up.set_mode(upstream_path, "good")
        blobs_after, stats_after = self.pantry.blobs()
        self.assertEqual(blobs_after, blobs_before, f"{stats_before}\n{stats_after}{self.logs()}")
        gets = self.up.count(upstream_path)
        self.check_pull(name, image)
        self.assertEqual(self.up.count(upstream_path), gets + 1, f"{dict(self.up.hits)}{self.logs()}")

    # -- manifest faults --

    def test_manifest_sha256_mismatch(self):
        name = "fault/manifest-badhash"
        image = self.images["manifest-badhash"]
        by_tag = f"/v2/{name}/manifests/latest"
        by_digest = f"/v2/{name}/manifests/{image['digest']}"
        blobs_before, stats_before = self.pantry.blobs()
        # By tag, the bytes contradict Docker-Content-Digest; by digest, the digest asked for
        # (no Docker-Content-Digest to compare with).
        for path, fault in ((by_tag, "badhash"), (by_digest, "badhash-nodigest")):
            with self.subTest(path=path, fault=fault):
                self.up.set_mode(path, fault)
                try:
                    gets = self.up.count(path)
                    outcome = self.get(path, ACCEPT)
                    self.assertEqual(outcome[0], "ok", f"{show(outcome)}{self.logs()}")
                    status, headers, body = outcome[1:]
                    self.assertEqual((status, error_codes(body)), (502, ["MANIFEST_INVALID"]),
                                     f"{fault} manifest: {status} {body[:500]!r}{self.logs()}")
                    self.assertEqual(self.up.count(path), gets + 1, f"{dict(self.up.hits)}")
                finally:
                    self.up.set_mode(path, "good")
        blobs_after, stats_after = self.pantry.blobs()
        self.assertEqual(blobs_after, blobs_before,
                         f"a wrong manifest was cached:\n{stats_before}\n{stats_after}{self.logs()}")
        gets = self.up.count(by_tag)
        self.check_pull(name, image)
        self.assertGreater(self.up.count(by_tag), gets, f"not asked again{self.logs()}")

    def manifest_fails_uncached(self, fault, name, want_status, want_code):
        """A manifest never cached, upstream faulty: the client gets WANT_STATUS/WANT_CODE and
        nothing is cached; with the fault gone it comes through (asked upstream again)."""
        image = self.images[name.split("/", 1)[1]]
        path = f"/v2/{name}/manifests/latest"
        blobs_before, stats_before = self.pantry.blobs()
        self.up.set_mode(path, fault)
        try:
            outcome = self.get(path, ACCEPT)
            self.assertEqual(outcome[0], "ok", f"{show(outcome)}{self.logs()}")
            status, headers, body = outcome[1:]
            self.assertEqual((status, error_codes(body)), (want_status, [want_code]),
                             f"upstream {fault}, nothing cached: {status} {dict(headers)} "
                             f"{body[:500]!r}{self.logs()}")
            asked = self.up.count(path)
            self.assertGreater(asked, 0, f"never asked upstream{self.logs()}")
        finally:
            self.up.set_mode(path, "good")
        blobs_after, stats_after = self.pantry.blobs()
        self.assertEqual(blobs_after, blobs_before,
                         f"upstream {fault}: the cache gained a blob:\n{stats_before}\n"
                         f"{stats_after}{self.logs()}")
        headers_ok, body = self.get_ok(path, ACCEPT)
        self.assertEqual(digest_of(body), image["digest"])
        self.assertGreater(self.up.count(path), asked,
                           f"served without asking upstream again: {dict(self.up.hits)}{self.logs()}")
        return headers

    def test_manifest_429_uncached(self):
        headers = self.manifest_fails_uncached("429", "fault/rl", 429, "TOOMANYREQUESTS")
        self.assertEqual(headers.get("Retry-After"), FaultyRegistry.RETRY_AFTER,
                         f"429 without the upstream's Retry-After: {dict(headers)}{self.logs()}")

    def test_manifest_503_uncached(self):
        self.manifest_fails_uncached("503", "fault/unavail", 502, "UNAVAILABLE")

    def test_manifest_reset_uncached(self):
        self.manifest_fails_uncached("reset", "fault/manifest-reset", 502, "UNAVAILABLE")

    def stale_manifest_on(self, fault, name):
        image = self.images[name.split("/", 1)[1]]
        path = f"/v2/{name}/manifests/latest"
        headers, fresh = self.get_ok(path, ACCEPT)
        self.assertEqual(digest_of(fresh), image["digest"])
        self.assertIsNone(headers.get("Warning"), f"fresh manifest with Warning {headers.get('Warning')}")
        time.sleep(TAG_TTL + 0.5)  # let the tag expire (not a timing assertion)
        self.up.set_mode(path, fault)
        try:
            asked = self.up.count(path, None)
            failures = self.upstream_failures("up")
            headers, body = self.get_ok(path, ACCEPT)
            self.assertGreater(self.up.count(path, None), asked,
                               f"{fault}: pantry did not ask upstream about an expired tag{self.logs()}")
            self.assertGreater(self.upstream_failures("up"), failures,
                               f"{fault}: the failure is not counted{self.logs()}")
            self.assertEqual(body, fresh, f"upstream {fault}: stale body differs{self.logs()}")
            self.assertEqual(headers.get("Docker-Content-Digest"), image["digest"])
            self.assertEqual(headers.get("Warning"), STALE_WARNING,
                             f"upstream {fault}: stale manifest without Warning 111: {dict(headers)}")
            # skopeo pulls the stale image (its blobs come from upstream: only the tag is faulted).
            self.check_pull(name, image)
        finally:
            self.up.set_mode(path, "good")

    def test_manifest_429_stale(self):
        self.stale_manifest_on("429", "fault/rl-cached")

    def test_manifest_503_stale(self):
        self.stale_manifest_on("503", "fault/unavail-cached")

    def test_manifest_stall_stale(self):
        self.stale_manifest_on("stall", "fault/stall-cached")

    def test_dead_upstream_stale(self):
        image = self.images["dead"]
        self.check_pull("dead/img", image)
        headers, fresh = self.get_ok("/v2/dead/img/manifests/latest", ACCEPT)
        self.dead.stop()
        time.sleep(TAG_TTL + 0.5)
        headers, body = self.get_ok("/v2/dead/img/manifests/latest", ACCEPT)
        self.assertEqual(body, fresh)
        self.assertEqual(headers.get("Warning"), STALE_WARNING,
                         f"dead upstream: stale manifest without Warning 111: {dict(headers)}")
        self.check_pull("dead/img", image)
        headers, body = self.get_ok(f"/v2/dead/img/manifests/{image['digest']}", ACCEPT)
        self.assertEqual(body, fresh)
        # What was never cached fails cleanly.
        outcome = self.get("/v2/dead/img/manifests/other", ACCEPT)
        self.assertEqual(outcome[0], "ok", f"{show(outcome)}{self.logs()}")
        self.assertEqual((outcome[1], error_codes(outcome[3])), (502, ["UNAVAILABLE"]),
                         f"{show(outcome)}{self.logs()}")

    # -- 401 for a missing repository --

    def test_401_means_name_unknown(self):
        digest = self.images["busybox"]["digest"]
        for path in ("/v2/hub/nosuch/manifests/latest", f"/v2/hub/nosuch/manifests/{digest}",
                     f"/v2/hub/nosuch/blobs/{digest}"):
            with self.subTest(path=path):
                outcome = self.get(path, ACCEPT)
                self.assertEqual(outcome[0], "ok", f"{show(outcome)}{self.logs()}")
                status, headers, body = outcome[1:]
                self.assertEqual((status, error_codes(body)), (404, ["NAME_UNKNOWN"]),
                                 f"{path} with upstream 401: {status} {dict(headers)} "
                                 f"{body[:500]!r}{self.logs()}")
                upstream_path = "/v2" + path[len("/v2/hub"):]
                self.assertGreater(self.hub.count(upstream_path, None), 0,
                                   f"never asked upstream for {upstream_path}: {dict(self.hub.hits)}"
                                   f"{self.logs()}")
        rc, _, out, _ = self.pull("hub/nosuch", expect_ok=False)
        self.assertNotEqual(rc, 0, out)

    # -- many clients, one expired tag --

    def test_expired_tag_revalidated_once_for_a_herd(self):
        """50 clients ask at once for a tag whose tag_ttl ran out while upstream takes 0.5 s to
        answer: one upstream HEAD answers for all of them, as one GET does for a tag never
        cached (so a CI fleet pulling one tag does not multiply requests upstream)."""
        name = "fault/revalidate"
        image = self.images["revalidate"]
        path = f"/v2/{name}/manifests/latest"
        self.get_ok(path, ACCEPT)
        time.sleep(TAG_TTL + 0.5)  # the tag expires
        clients = 50
        barrier = threading.Barrier(clients)
        results = [None] * clients

        def client(i):
            try:
                barrier.wait(timeout=30)
            except threading.BrokenBarrierError:
                pass
            o = self.get(path, ACCEPT)
            results[i] = (o[1], digest_of(o[3])) if o[0] == "ok" else o[:2]

        heads, gets = self.up.count(path, "HEAD"), self.up.count(path, "GET")
        self.up.set_mode(path, "slow")
        try:
            threads = [threading.Thread(target=client, args=(i,), daemon=True)
                       for i in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
        finally:
            self.up.set_mode(path, "good")
        want = (200, image["digest"])
        self.assertEqual([r for r in results if r != want], [], self.logs())
        asked = (self.up.count(path, "HEAD") - heads, self.up.count(path, "GET") - gets)
        self.assertEqual(asked, (1, 0),
                         f"upstream (HEADs, GETs) of one expired tag for {clients} concurrent "
                         f"clients; pantry's outcomes: {dict(log_outcomes(self.pantry, f'GET {path} '))}")

    # -- a token the upstream stops taking --

    def test_blob_token_refused_is_renewed(self):
        """The upstream refuses pantry's cached token before it expires (signing key rotated,
        token revoked, clocks apart): pantry gets a new one and the blob still comes through,
        as a manifest does."""
        image = self.images["token"]
        # Other tests use this upstream too (another repository, another token): count from here.
        before = self.tok.count("/token")
        self.get_ok("/v2/tok/img/manifests/latest", ACCEPT)
        self.assertEqual(self.tok.count("/token") - before, 1,
                         f"{dict(self.tok.hits)}{self.logs()}")
        self.tok.rotate_token()
        for blob in image["blobs"]:
            with self.subTest(blob=blob):
                outcome = self.get(f"/v2/tok/img/blobs/{blob}")
                self.assertEqual(outcome[:2], ("ok", 200),
                                 f"blob GET after the upstream stopped taking pantry's token: "
                                 f"{show(outcome)}; upstream requests "
                                 f"{dict(self.tok.hits)}{self.logs()}")
                self.assertEqual(digest_of(outcome[3]), blob)
        self.assertEqual(self.tok.count("/token") - before, 2,
                         f"{dict(self.tok.hits)}{self.logs()}")
        self.check_pull("tok/img", image)

    def test_blob_redirect_to_a_cdn_without_the_token(self):
        """Registries answer a blob GET with 307 to a CDN: pantry follows it without sending
        the registry's Authorization there, and caches what it got."""
        image = self.images["redirect"]
        self.get_ok("/v2/tok/cdn/manifests/latest", ACCEPT)
        layer = image["layers"][0]["digest"]
        self.tok.set_mode(f"/v2/cdn/blobs/{layer}", "redirect")
        outcome = self.get(f"/v2/tok/cdn/blobs/{layer}")
        self.assertEqual(outcome[:2], ("ok", 200), f"{show(outcome)}{self.logs()}")
        self.assertEqual(digest_of(outcome[3]), layer)
        self.assertEqual(self.tok.cdn_authorization, [None],
                         f"what the CDN was sent as Authorization{self.logs()}")
        self.assertEqual(self.tok.count(f"/v2/cdn/blobs/{layer}"), 1, dict(self.tok.hits))
        again = self.get(f"/v2/tok/cdn/blobs/{layer}")
        self.assertEqual((again[:2], digest_of(again[3])), (("ok", 200), layer))
        self.assertEqual(len(self.tok.cdn_authorization), 1, "the second GET was a cache hit")

    # -- requests pantry must refuse --

    def test_bad_requests_not_sent_upstream(self):
        layer = self.images["busybox"]["layers"][0]["digest"]
        cases = [
            ("/v2/Bad/Name/manifests/latest", 400, "NAME_INVALID"),
            ("/v2/fault/Busybox/blobs/" + layer, 400, "NAME_INVALID"),
            ("/v2/fault/busybox/blobs/sha256:xyz", 400, "DIGEST_INVALID"),
            # A read by a reference that is neither a tag nor a digest names no manifest.
            ("/v2/fault/busybox/manifests/sha256:xyz", 404, "MANIFEST_UNKNOWN"),
            ("/v2/fault/busybox/blobs/sha256:" + "A" * 64, 400, "DIGEST_INVALID"),
            ("/v2/fault/busybox/blobs/md5:" + "0" * 32, 400, "DIGEST_INVALID"),
            ("/v2/../x/manifests/a", (400, 404), ("NAME_INVALID", "NAME_UNKNOWN")),
            ("/v2/fault/../busybox/manifests/latest", (400, 404), ("NAME_INVALID", "NAME_UNKNOWN")),
            ("/v2/fault/%2e%2e/busybox/manifests/latest", (400, 404), ("NAME_INVALID", "NAME_UNKNOWN")),
            ("/v2/fault//busybox/manifests/latest", (400, 404), ("NAME_INVALID", "NAME_UNKNOWN")),
            ("/v2/fault%2Fbusybox/manifests/latest", (400, 404), ("NAME_INVALID", "NAME_UNKNOWN")),
            ("/v2/fault/busybox/manifests/latest/../../x", (400, 404),
             ("MANIFEST_UNKNOWN", "NAME_INVALID")),
            ("/v2/busybox/manifests/latest?ns=nosuch.example", 404, "NAME_UNKNOWN"),
        ]
        before = (self.up.total(), self.dead.total(), self.hub.total(), self.tok.total())
        for path, statuses, codes in cases:
            with self.subTest(path=path):
                statuses = statuses if isinstance(statuses, tuple) else (statuses,)
                codes = codes if isinstance(codes, tuple) else (codes,)
                outcome = self.get(path, ACCEPT)
                self.assertEqual(outcome[0], "ok", f"{path}: {show(outcome)}{self.logs()}")
                status, headers, body = outcome[1:]
                got = error_codes(body)
                self.assertTrue(status in statuses and isinstance(got, list) and len(got) == 1
                                and got[0] in codes,
                                f"{path}: {status} {got}, expected one of {statuses} with one of "
                                f"{codes}{self.logs()}")
        self.assertEqual((self.up.total(), self.dead.total(), self.hub.total(), self.tok.total()),
                         before,
                         f"refused requests reached an upstream: {self.up.hits}{self.logs()}")


# ------------------------------------------------------------------ thundering herd

HERD_CLIENTS = 50
BIG_BYTES = 24 << 20


class HerdTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-oci-herd-")
        cls.reg = cls.pantry = None
        try:
            images = moi.build(os.path.join(cls.work, "images"), big_bytes=BIG_BYTES)["images"]
            cls.image = images["big"]
            cls.reg = oci_registry.Registry("open", os.path.join(cls.work, "registry"))
            cls.reg.push(cls.image["layout"], "latest", "herd/big:latest")
            cls.pantry = Pantry(os.path.join(cls.work, "pantry"), f"""\
  default_upstream: reg
  upstreams:
    - name: reg
      url: "{cls.reg.url}"
""", upstream_timeouts="connect_timeout: 5s, header_timeout: 10s, idle_timeout: 10s")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.pantry is not None:
            cls.pantry.stop()
        if cls.reg is not None:
            cls.reg.close()
        shutil.rmtree(cls.work, ignore_errors=True)

    def logs(self):
        return f"\n--- pantry log tail ({self.pantry.log_path}):\n{self.pantry.tail()}"

    def test_herd_one_upstream_get_per_blob(self):
        image = self.image
        mark = self.reg.mark()
        barrier = threading.Barrier(HERD_CLIENTS)
        results = [None] * HERD_CLIENTS

        def client(i):
            try:
                barrier.wait(timeout=30)
            except threading.BrokenBarrierError:
                pass
            got = {}
            conn = http.client.HTTPConnection("127.0.0.1", self.pantry.port, timeout=120)
            try:
                conn.request("GET", "/v2/herd/big/manifests/latest", headers=ACCEPT)
                r = conn.getresponse()
                body = r.read()
                got["manifest"] = (r.status, digest_of(body))
                if r.status != 200:
                    results[i] = got
                    return
                manifest = json.loads(body)
                for d in [manifest["config"]["digest"]] + [l["digest"] for l in manifest["layers"]]:
                    conn.request("GET", f"/v2/herd/big/blobs/{d}")
                    r = conn.getresponse()
                    h = hashlib.sha256()
                    n = 0
                    while True:
                        chunk = r.read(1 << 20)
                        if not chunk:
                            break
                        h.update(chunk)
                        n += len(chunk)
                    got[d] = (r.status, n, "sha256:" + h.hexdigest())
            except (OSError, http.client.HTTPException, ValueError) as e:
                got["error"] = repr(e)
            finally:
                conn.close()
            results[i] = got

        threads = [threading.Thread(target=client, args=(i,), daemon=True)
                   for i in range(HERD_CLIENTS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 90  # a bound on the test, not a performance assertion
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        stuck = [i for i, t in enumerate(threads) if t.is_alive()]
        self.assertEqual(stuck, [], f"{len(stuck)} clients still pulling after 90 s{self.logs()}")

        want = {"manifest": (200, image["digest"])}
        want.update({d: (200, size, d) for d, size in image["blobs"].items()})
        bad = [(i, r) for i, r in enumerate(results) if r != want]
        self.assertEqual(bad, [], f"{len(bad)} of {HERD_CLIENTS} clients did not get {want}: "
                                  f"{bad[:5]}{self.logs()}")

        counts = {d: self.reg.count("GET", f"/v2/herd/big/blobs/{d}", since=mark)
                  for d in image["blobs"]}
        self.assertEqual(counts, {d: 1 for d in image["blobs"]},
                         f"upstream GETs per blob (sizes {image['blobs']}){self.logs()}")
        manifest_gets = self.reg.count("GET", "/v2/herd/big/manifests/", since=mark)
        self.assertEqual(manifest_gets, 1, f"upstream manifest GETs{self.logs()}")
        # The test means something only if clients asked while the big layer's fetch ran.
        big = max(image["blobs"], key=image["blobs"].get)
        outcomes = log_outcomes(self.pantry, f"GET /v2/herd/big/blobs/{big} ")
        print(f"\n  herd: pantry's outcomes for the {image['blobs'][big]} byte layer: "
              f"{dict(outcomes)}", file=sys.stderr)
        self.assertGreater(outcomes["COALESCED"], 0,
                           f"no client joined the running fetch of the big layer: {dict(outcomes)}")

        # skopeo, warm: everything from pantry's cache.
        mark = self.reg.mark()
        dest = os.path.join(self.work, "pulled")
        rc, digest, out = skopeo_copy(f"docker://127.0.0.1:{self.pantry.port}/herd/big:latest",
                                      f"dir:{dest}")
        self.assertEqual((rc, digest), (0, image["digest"]), out + self.logs())
        self.assertEqual(dir_blobs(dest), {d: d for d in image["blobs"]})
        self.assertEqual(self.reg.count("GET", "/blobs/", since=mark), 0,
                         f"a warm pull fetched blobs upstream{self.logs()}")


# ------------------------------------------------------------------ upstream auth

class AuthTestBase(unittest.TestCase):
    images = None
    work = None

    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix=f"pantry-oci-{cls.__name__.lower()}-")
        try:
            cls.images = moi.build(os.path.join(cls.work, "images"))["images"]
        except BaseException:
            shutil.rmtree(cls.work, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)

    def setUp(self):
        self.reg = self.pantry = None
        self.tmp = tempfile.mkdtemp(prefix="t-", dir=self.work)

    def tearDown(self):
        if self.pantry is not None:
            self.pantry.stop()
        if self.reg is not None:
            self.reg.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def logs(self):
        text = ""
        if self.pantry is not None:
            text += f"\n--- pantry log tail ({self.pantry.log_path}):\n{self.pantry.tail()}"
        if self.reg is not None:
            text += f"\n--- upstream registry log tail:\n{self.reg.log_tail(10)}"
        return text

    def start(self, mode, oci_extra="", upstream_creds=False, **reg_kwargs):
        self.reg = oci_registry.Registry(mode, os.path.join(self.tmp, "registry"), **reg_kwargs)
        self.reg.push(self.images["busybox"]["layout"], "latest", "team/app:one")
        self.reg.push(self.images["multi"]["layout"], "latest", "team/app:two")
        self.reg.push(self.images["busybox"]["layout"], "latest", "other/img:latest")
        creds = (f'\n      username: "{self.reg.user}"\n      password: "{self.reg.password}"'
                 if upstream_creds else "")
        self.pantry = Pantry(os.path.join(self.tmp, "pantry"), f"""\
  default_upstream: reg
  upstreams:
    - name: reg
      url: "{self.reg.url}"{creds}
{oci_extra}""")

    def pull(self, name_tag, image, creds=None):
        dest = os.path.join(self.tmp, f"{name_tag.replace('/', '_').replace(':', '_')}-"
                                      f"{time.monotonic_ns()}")
        rc, digest, out = skopeo_copy(f"docker://127.0.0.1:{self.pantry.port}/{name_tag}",
                                      f"dir:{dest}", creds=creds)
        self.assertEqual(rc, 0, f"pull of {name_tag} through pantry:\n{out}{self.logs()}")
        self.assertEqual(digest, image["digest"], out)
        got = dir_blobs(dest)
        self.assertEqual({d: got.get(d) for d in image["blobs"]}, {d: d for d in image["blobs"]},
                         f"{name_tag}: blobs in {dest}")


class TokenTest(AuthTestBase):
    def pantry_tokens(self, since):
        """Token requests answered 200 since SINCE (an index into tokens.requests()) made by
        pantry (anonymous: the pushes authenticate as the registry's user)."""
        return [r for r in self.reg.tokens.requests()[since:] if r["status"] == 200 and r["user"] is None]

    def test_tokens_reused(self):
        self.start("token", anonymous_pull=True)
        since = len(self.reg.tokens.requests())
        self.pull("team/app:one", self.images["busybox"])
        self.pull("team/app:two", self.images["multi"])
        got = self.pantry_tokens(since)
        self.assertEqual([r["scopes"] for r in got], [["repository:team/app:pull"]],
                         f"token requests for two images of one repository{self.logs()}")
        self.pull("other/img:latest", self.images["busybox"])
        got = self.pantry_tokens(since)
        self.assertEqual([r["scopes"] for r in got],
                         [["repository:team/app:pull"], ["repository:other/img:pull"]],
                         f"token requests after a second repository{self.logs()}")
        upstream_gets = self.reg.count("GET", "/v2/team/app/", status=200)
        self.assertGreater(upstream_gets, 0, "nothing fetched upstream with a token")

    def test_token_renewed_after_expiry(self):
        # expires_in 3 s: pantry renews before it runs out (docker-registry itself would still
        # take it for 60 s more, so only the count shows it).
        self.start("token", anonymous_pull=True, token_ttl=3)
        since = len(self.reg.tokens.requests())
        self.pull("team/app:one", self.images["busybox"])
        self.assertEqual(len(self.pantry_tokens(since)), 1, self.logs())
        time.sleep(3.2)
        self.pull("team/app:two", self.images["multi"])
        got = self.pantry_tokens(since)
        self.assertEqual([r["scopes"] for r in got], [["repository:team/app:pull"]] * 2,
                         f"a token past its expires_in was not renewed{self.logs()}")

    def test_no_expires_in(self):
        # No expires_in: the spec's 60 s default; pantry authenticates as the registry's user.
        self.start("token", upstream_creds=True, send_expires_in=False,
                   oci_extra=f"""\
  hosted:
    users:
      - {{name: {USER}, token: "{USER_TOKEN}"}}
""")
        since = len(self.reg.tokens.requests())
        creds = f"{USER}:{USER_TOKEN}"
        self.pull("team/app:one", self.images["busybox"], creds=creds)
        self.pull("team/app:two", self.images["multi"], creds=creds)
        got = [r for r in self.reg.tokens.requests()[since:] if r["status"] == 200]
        self.assertEqual([(r["user"], r["scopes"]) for r in got],
                         [(self.reg.user, ["repository:team/app:pull"])],
                         f"token requests without expires_in{self.logs()}")


class HtpasswdTest(AuthTestBase):
    def test_pantry_credentials_and_users(self):
        self.start("htpasswd", upstream_creds=True, oci_extra=f"""\
  hosted:
    users:
      - {{name: {USER}, token: "{USER_TOKEN}"}}
""")
        mark = self.reg.mark()
        path = "/v2/team/app/manifests/one"
        # No credentials: 401 from pantry, with a challenge, and nothing asked upstream.
        outcome = request(self.pantry.port, path, headers=ACCEPT)
        self.assertEqual(outcome[0], "ok", f"{show(outcome)}{self.logs()}")
        status, headers, body = outcome[1:]
        self.assertEqual((status, error_codes(body)), (401, ["UNAUTHORIZED"]),
                         f"anonymous GET {path}: {status} {body[:300]!r}{self.logs()}")
        self.assertTrue((headers.get("WWW-Authenticate") or "").startswith("Bearer realm="),
                        dict(headers))
        # A wrong token: 401 too.
        outcome = request(self.pantry.port, path,
                          headers=dict(ACCEPT, Authorization=basic(USER, "wrong-token-0123456789")))
        self.assertEqual(outcome[:2], ("ok", 401), f"{show(outcome)}{self.logs()}")
        rc, _, out = skopeo_copy(f"docker://127.0.0.1:{self.pantry.port}/team/app:one",
                                 f"dir:{os.path.join(self.tmp, 'anon')}")
        self.assertNotEqual(rc, 0, f"an anonymous skopeo pulled:\n{out}")
        self.assertEqual(self.reg.count(None, "/v2/team/", since=mark), 0,
                         f"unauthenticated clients made pantry ask upstream{self.logs()}")

        # With pantry's user: skopeo (token from pantry's /auth/token) and Basic both work.
        creds = f"{USER}:{USER_TOKEN}"
        self.pull("team/app:one", self.images["busybox"], creds=creds)
        self.pull("team/app:two", self.images["multi"], creds=creds)
        status, headers, body = request(self.pantry.port, path,
                                        headers=dict(ACCEPT, Authorization=basic(USER, USER_TOKEN)))[1:]
        self.assertEqual((status, digest_of(body)), (200, self.images["busybox"]["digest"]),
                         f"{body[:300]!r}{self.logs()}")
        self.assertGreater(self.reg.count("GET", "/v2/team/app/", status=200, since=mark), 0,
                           "pantry fetched nothing upstream with its credentials")

        # Anyone may pull from the hosted repositories here (pull_auth is off): a mount does not
        # carry what the upstream's credentials pulled into them; an ordinary upload starts.
        layer = self.images["busybox"]["layers"][0]["digest"]
        auth = {"Authorization": basic(USER, USER_TOKEN)}
        status, headers, body = request(
            self.pantry.port, f"/v2/local/copy/blobs/uploads/?mount={layer}&from=team/app",
            method="POST", headers=auth)[1:]
        self.assertEqual(status, 202, f"mount from a credentialed upstream: {status} "
                                      f"{dict(headers)} {body[:300]!r}{self.logs()}")
        status = request(self.pantry.port, f"/v2/local/copy/blobs/{layer}")[1]
        self.assertEqual(status, 404, f"the layer is readable under local/copy{self.logs()}")
        # Nor does a mount without `from` (the spec's automatic content discovery) find it there.
        status, headers, body = request(
            self.pantry.port, f"/v2/local/copy/blobs/uploads/?mount={layer}", method="POST",
            headers=auth)[1:]
        self.assertEqual(status, 202, f"mount without from of a credentialed upstream's layer: "
                                      f"{status} {dict(headers)} {body[:300]!r}{self.logs()}")
        status = request(self.pantry.port, f"/v2/local/copy/blobs/{layer}")[1]
        self.assertEqual(status, 404, f"the layer is readable under local/copy{self.logs()}")


if __name__ == "__main__":
    PANTRY = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
