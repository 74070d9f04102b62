#!/usr/bin/python3
"""pantry in tiers: two edge pantries whose upstreams are a central pantry, which fronts the
fixtures (a real nginx PyPI and a real docker-registry).

An edge's PyPI upstream is the central's /simple/ and its container registry upstream is the
central's /v2/; the edge serves from its own cache and fills from the central. Checked with pip
and skopeo as the clients:

- each file and blob is fetched from the fixtures once, however many edges' clients ask;
- with the central stopped, each edge still serves everything it has cached (fresh clients
  install and pull), answers what it never had with a 502 that names the central, and stays
  ready on /readyz (degraded, the central listed as failing).

Run by ctest with the pantry binary as the first argument:
    tests/integration/scale_tiers_test.py build/debug/cli/pantry
"""

import collections
import json
import os
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
import make_oci_images as moi  # noqa: E402
import nginx_pypi  # noqa: E402
import oci_registry  # noqa: E402
import clients  # noqa: E402
from pantry_serve import Pantry  # noqa: E402

PANTRY = None
IMAGES = ("library/busybox:1.36", "org/multi:latest")
FILE_SUFFIXES = (".whl", ".tar.gz", ".metadata")
TIMEOUTS = "connect_timeout: 2s, header_timeout: 10s, idle_timeout: 10s"


class TiersTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-scale-tiers-test-")
        cls.nginx = cls.reg = cls.central = None
        cls.edges = []
        try:
            cls.nginx = nginx_pypi.start(os.path.join(cls.work, "pypi"), build=True)
            cls.images = moi.build(os.path.join(cls.work, "images"))["images"]
            cls.reg = oci_registry.Registry("open", os.path.join(cls.work, "registry"))
            cls.reg.push(cls.images["busybox"]["layout"], "latest", "library/busybox:1.36")
            cls.reg.push(cls.images["multi"]["layout"], "latest", "org/multi:latest")
            cls.central = Pantry(PANTRY, os.path.join(cls.work, "central"), cls.nginx.index_url,
                                 upstream_timeouts=TIMEOUTS, oci=f"""\
  default_upstream: docker.io
  upstreams:
    - {{name: docker.io, url: "{cls.reg.url}"}}
  tag_ttl: 10m
""")
            for i in range(2):
                cls.edges.append(Pantry(
                    PANTRY, os.path.join(cls.work, f"edge{i + 1}"), cls.central.url("/simple/"),
                    upstream_timeouts=TIMEOUTS, oci=f"""\
  default_upstream: docker.io
  upstreams:
    - {{name: docker.io, url: "http://127.0.0.1:{cls.central.port}"}}
  tag_ttl: 10m
"""))
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for p in cls.edges:
            p.stop()
        if cls.central is not None:
            cls.central.stop()
        if cls.reg is not None:
            cls.reg.close()
        if cls.nginx is not None:
            cls.nginx.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    def logs(self):
        text = f"\n--- central log tail:\n{self.central.tail(15)}"
        for i, p in enumerate(self.edges, 1):
            text += f"\n--- edge{i} log tail:\n{p.tail(15)}"
        return text

    def pip_install(self, edge, name):
        proc, got = clients.pip_install(self.work, name, edge.url("/simple/"),
                                        ["pantry-demo-app", "wheel==0.38.4"])
        self.assertEqual(proc.returncode, 0, f"{name}: {' '.join(proc.args)}:\n{proc.stdout}\n"
                                             f"{proc.stderr}{self.logs()}")
        self.assertEqual({k: got.get(k) for k in ("pantry-demo-app", "pantry-demo-lib", "wheel")},
                         {"pantry-demo-app": "2.0", "pantry-demo-lib": "1.1", "wheel": "0.38.4"},
                         f"{name}: {got}")

    def pull(self, edge, name):
        for ref in IMAGES:
            proc = clients.skopeo_copy_all(f"127.0.0.1:{edge.port}/{ref}", self.work, name)
            self.assertEqual(proc.returncode, 0, f"{name}: {' '.join(proc.args)}:\n{proc.stdout}"
                                                 f"{proc.stderr}{self.logs()}")

    def fixture_fetches(self):
        """{path: GETs} of files and blobs the fixtures answered."""
        got = collections.Counter()
        for e in nginx_pypi.read_access_log(self.nginx.access_log):
            uri = e.get("uri", "")
            if e.get("method") == "GET" and uri.split("?")[0].endswith(FILE_SUFFIXES):
                got[uri] += 1
        for e in self.reg.entries():
            if e["method"] == "GET" and "/blobs/" in e["path"]:
                got[e["path"]] += 1
        return got

    def test_a_one_fixture_fetch_per_object_for_every_edge(self):
        for i, edge in enumerate(self.edges, 1):
            status, _, body = edge.fetch("/readyz")
            self.assertEqual(status, 200, body[:500])
            self.assertEqual({u["state"] for u in json.loads(body)["upstreams"]}, {"unknown"},
                             f"edge{i} before any request: {body[:500]!r}")
            self.pip_install(edge, f"edge{i}")
            self.pull(edge, f"edge{i}")
            ready = json.loads(edge.fetch("/readyz")[2])
            self.assertEqual((ready["degraded"], {u["state"] for u in ready["upstreams"]}),
                             (False, {"up"}), f"edge{i} after its clients: {ready}")
        got = self.fixture_fetches()
        self.assertTrue(any(p.endswith(".whl") for p in got), f"no wheel fetched: {got}")
        self.assertTrue(any("/blobs/" in p for p in got), f"no blob fetched: {got}")
        self.assertEqual({p: n for p, n in got.items() if n != 1}, {},
                         f"objects the fixtures served more than once to two edges: {dict(got)}"
                         f"{self.logs()}")
        for i, edge in enumerate(self.edges, 1):
            self.assertGreater(edge.blobs()[0], 0, f"edge{i} cached nothing")

    def test_b_the_central_stopped(self):
        self.central.stop()
        for i, edge in enumerate(self.edges, 1):
            self.pip_install(edge, f"edge{i}-central-down")
            self.pull(edge, f"edge{i}-central-down")
            status, _, body = edge.fetch("/simple/pantry-never-asked/")
            self.assertEqual(status, 502, f"edge{i}: an uncached page with the central down: "
                                          f"{status} {body[:300]!r}")
            self.assertIn(f"127.0.0.1:{self.central.port}".encode(), body,
                          f"edge{i}: the 502 does not name the central: {body[:300]!r}")
            status, _, body = edge.fetch("/v2/library/never-pulled/manifests/1",
                                         {"Accept": "application/vnd.oci.image.manifest.v1+json"})
            self.assertEqual(status, 502, f"edge{i}: an uncached manifest with the central down: "
                                          f"{status} {body[:300]!r}")
            # Still ready (it serves its cache), and says which upstream fails.
            status, _, body = edge.fetch("/readyz")
            self.assertEqual(status, 200, f"edge{i}: /readyz with the central down: {body[:500]!r}")
            ready = json.loads(body)
            self.assertEqual((ready["ready"], ready["degraded"], ready["cache"]), (True, True, "ok"),
                             ready)
            self.assertEqual({(u["protocol"], u["state"]) for u in ready["upstreams"]},
                             {("pypi", "failing"), ("oci", "failing")}, ready)


if __name__ == "__main__":
    PANTRY = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
