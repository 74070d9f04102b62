#!/usr/bin/python3
"""Three pantry instances behind a real HAProxy using the deployed deploy/haproxy/haproxy.cfg.

HAProxy hashes each request's path onto a ring of the instances (balance uri, hash-type
consistent), so an index page, a wheel, a manifest or a layer always goes to the same instance,
and an instance asked for a /files/ URL whose index page another instance served resolves the
file through that page itself. What this test checks, with pip and skopeo as the clients, a real
nginx as the PyPI upstream and a real docker-registry as the container registry upstream:

- round one: every file and blob is fetched from its upstream exactly once across the three
  instances, and the objects are spread over more than one instance;
- round two (fresh clients): nothing at all is asked upstream;
- one instance killed: the clients still succeed, and nothing is fetched upstream more than once
  more (the killed instance's share, by whichever instance takes its keys);
- the instance restarted on its data dir: it serves what it had, nothing is fetched upstream;
- hosted content (a push, then a pull) goes to the one instance that owns it, and a registry
  token any instance issued is accepted by all of them (a shared oci.hosted.token_key).

Run by ctest with the pantry binary as the first argument:
    tests/integration/scale_haproxy_test.py build/debug/cli/pantry
"""

import base64
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
import make_oci_images as moi  # noqa: E402
import nginx_pypi  # noqa: E402
import oci_registry  # noqa: E402
import clients  # noqa: E402
from haproxy import HAProxy  # noqa: E402
from pantry_serve import Pantry, get  # noqa: E402

PANTRY = None
USER = "ci-pusher"
TOKEN = "scale-test-token-0123456789"
TOKEN_KEY = "one-key-for-every-instance-0123456789"  # oci.hosted.token_key, shared
IMAGES = ("library/busybox:1.36", "org/multi:latest")
FILE_SUFFIXES = (".whl", ".tar.gz", ".metadata")


class ScaleOutBehindHAProxyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-scale-haproxy-test-")
        cls.nginx = None
        cls.reg = None
        cls.lb = None
        cls.pantries = []
        try:
            cls.nginx = nginx_pypi.start(os.path.join(cls.work, "pypi"), build=True)
            cls.images = moi.build(os.path.join(cls.work, "images"))["images"]
            cls.reg = oci_registry.Registry("open", os.path.join(cls.work, "registry"))
            cls.reg.push(cls.images["busybox"]["layout"], "latest", "library/busybox:1.36")
            cls.reg.push(cls.images["multi"]["layout"], "latest", "org/multi:latest")
            for i in range(3):
                cls.pantries.append(cls.start_pantry(i))
            cls.lb = HAProxy(cls.work, cls.pantries)
            for i in range(3):
                cls.lb.wait_status(f"pantry{i + 1}", "UP")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.lb is not None:
            cls.lb.stop()
        for p in cls.pantries:
            p.stop()
        if cls.reg is not None:
            cls.reg.close()
        if cls.nginx is not None:
            cls.nginx.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    @classmethod
    def start_pantry(cls, i, port=None):
        return Pantry(PANTRY, os.path.join(cls.work, f"pantry{i + 1}"), cls.nginx.index_url,
                      port=port,
                      upstream_timeouts="connect_timeout: 5s, header_timeout: 10s, "
                                        "idle_timeout: 10s",
                      oci=f"""\
  default_upstream: docker.io
  upstreams:
    - {{name: docker.io, url: "{cls.reg.url}"}}
  tag_ttl: 10m
  hosted:
    prefix: local/
    users: [{{name: {USER}, token: "{TOKEN}"}}]
    token_key: "{TOKEN_KEY}"
""")

    def logs(self):
        return self.lb.tails(self.pantries)

    # ---- the clients ----

    def pip_round(self, name):
        """pip installs the demo app and a real wheel through HAProxy into a fresh venv."""
        proc, got = clients.pip_install(self.work, name, self.lb.url("/simple/"),
                                        ["pantry-demo-app", "wheel==0.38.4"],
                                        env={"PIP_RETRIES": "5"})
        self.assertEqual(proc.returncode, 0, f"{name}: {' '.join(proc.args)}:\n{proc.stdout}\n"
                                             f"{proc.stderr}{self.logs()}")
        self.assertEqual({k: got.get(k) for k in ("pantry-demo-app", "pantry-demo-lib",
                                                  "pantry-demo-util", "wheel")},
                         {"pantry-demo-app": "2.0", "pantry-demo-lib": "1.1",
                          "pantry-demo-util": "1.0", "wheel": "0.38.4"}, f"{name}: {got}")

    def skopeo_round(self, name):
        """skopeo copies each image (every platform) through HAProxy, retrying as docker does."""
        for ref in IMAGES:
            proc = clients.skopeo_copy_all(f"127.0.0.1:{self.lb.port}/{ref}", self.work, name,
                                           retries=3)
            self.assertEqual(proc.returncode, 0, f"{name}: {' '.join(proc.args)}:\n{proc.stdout}"
                                                 f"{proc.stderr}{self.logs()}")

    # ---- what reached the upstreams ----

    def pypi_files_fetched(self, since):
        """{path: GETs} of wheels, sdists and metadata files nginx answered since entry SINCE."""
        got = collections.Counter()
        for e in nginx_pypi.read_access_log(self.nginx.access_log)[since:]:
            uri = e.get("uri", e.get("request", ""))
            if e.get("method", "GET") == "GET" and uri.split("?")[0].endswith(FILE_SUFFIXES):
                got[uri] += 1
        return got

    def pypi_mark(self):
        return len(nginx_pypi.read_access_log(self.nginx.access_log))

    def blobs_fetched(self, since):
        """{path: GETs} of blobs docker-registry answered since its mark SINCE."""
        got = collections.Counter()
        for e in self.reg.entries(since):
            if e["method"] == "GET" and "/blobs/" in e["path"]:
                got[e["path"]] += 1
        return got

    def upstream_mark(self):
        return self.pypi_mark(), self.reg.mark()

    def fetched(self, mark):
        both = self.pypi_files_fetched(mark[0])
        both.update(self.blobs_fetched(mark[1]))
        return both

    def everything_asked(self, mark):
        """Every request either upstream answered since MARK."""
        pypi = [e.get("uri", e.get("request")) for e in
                nginx_pypi.read_access_log(self.nginx.access_log)[mark[0]:]]
        oci = [(e["method"], e["uri"]) for e in self.reg.entries(mark[1])]
        return pypi, oci

    # ---- the scenario, in order ----

    def test_a_first_round_fetches_each_object_once_across_the_instances(self):
        mark = self.upstream_mark()
        self.pip_round("first")
        self.skopeo_round("first")
        got = self.fetched(mark)
        self.assertTrue(any(p.endswith(".whl") for p in got), f"no wheel fetched: {got}")
        self.assertTrue(any("/blobs/" in p for p in got), f"no blob fetched: {got}")
        self.assertEqual({p: n for p, n in got.items() if n != 1}, {},
                         f"objects fetched upstream more than once across three instances: "
                         f"{dict(got)}{self.logs()}")
        holding = [p.blobs()[0] for p in self.pantries]
        self.assertGreaterEqual(sum(1 for n in holding if n > 0), 2,
                                f"blobs per instance {holding}: the hash did not spread the load")

    def test_b_second_round_is_all_cache_hits(self):
        mark = self.upstream_mark()
        self.pip_round("second")
        self.skopeo_round("second")
        pypi, oci = self.everything_asked(mark)
        self.assertEqual((pypi, oci), ([], []),
                         f"fresh clients made pantry ask upstream again{self.logs()}")
        # Every path went to one instance each time it was asked.
        servers = collections.defaultdict(set)
        for server, _, path in self.lb.routed():
            servers[path].add(server)
        self.assertGreater(len(servers), 10, self.lb.tail())
        self.assertEqual({p: s for p, s in servers.items() if len(s) > 1}, {},
                         "paths HAProxy sent to more than one instance")

    def test_c_an_instance_killed_then_restarted(self):
        victim = self.pantries[1]
        port = victim.port
        held = victim.blobs()[0]
        self.assertGreater(held, 0, "pantry2 holds nothing: the test would prove nothing")
        victim.process.send_signal(signal.SIGKILL)
        victim.stop()  # reaps it, closes its log
        mark = self.upstream_mark()
        # Clients right after the kill (before the health check notices): HAProxy's retry on
        # another instance, and the clients' own retries, hide it.
        self.pip_round("killed")
        self.skopeo_round("killed")
        self.lb.wait_status("pantry2", "DOWN")
        got = self.fetched(mark)
        self.assertEqual({p: n for p, n in got.items() if n != 1}, {},
                         f"after a kill, objects fetched more than once more: {dict(got)}"
                         f"{self.logs()}")
        self.assertGreater(len(got), 0, "the killed instance's share was never fetched again: "
                                        "did it own anything the clients asked for?")

        # Restarted on its data dir and port: it serves what it had.
        self.pantries[1] = self.start_pantry(1, port=port)
        self.lb.wait_status("pantry2", "UP")
        mark = self.upstream_mark()
        self.pip_round("restarted")
        self.skopeo_round("restarted")
        got = self.fetched(mark)
        self.assertEqual(dict(got), {}, f"the restarted instance lost its cache{self.logs()}")

    def test_d_hosted_content_and_tokens_go_to_the_owner(self):
        ref = f"127.0.0.1:{self.lb.port}/local/app:1"
        src = oci_registry.source_ref(self.images["busybox"]["layout"])
        cmd = ["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", f"{USER}:{TOKEN}",
               src, f"docker://{ref}"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, f"push through haproxy:\n{r.stdout}{r.stderr}"
                                          f"{self.logs()}")
        for _ in range(3):
            dest = os.path.join(self.work, "hosted-pull")
            r = subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}",
                                f"dir:{dest}"], capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, f"pull of a hosted image through haproxy:\n"
                                              f"{r.stdout}{r.stderr}{self.logs()}")
            shutil.rmtree(dest, ignore_errors=True)
        status, _, body = get(self.pantries[0].url("/v2/local/app/tags/list"))
        self.assertEqual((status, json.loads(body).get("tags")), (200, ["1"]), body[:300])

        # A token one instance issued is good at every other (they share oci.hosted.token_key);
        # a token with a wrong signature is good nowhere.
        basic = "Basic " + base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()
        status, _, body = get(self.pantries[1].url("/auth/token?service=pantry&scope="
                                                   "repository:local/app:pull,push"),
                              {"Authorization": basic})
        self.assertEqual(status, 200, body[:300])
        token = json.loads(body)["token"]
        forged = token[:-1] + ("0" if token[-1] != "0" else "1")
        for i, p in enumerate(self.pantries, 1):
            status, _, body = get(p.url("/v2/"), {"Authorization": f"Bearer {token}"})
            self.assertEqual(status, 200, f"pantry{i} refused pantry2's token: {body[:300]!r}")
            status, _, body = get(p.url("/v2/"), {"Authorization": f"Bearer {forged}"})
            self.assertEqual(status, 401, f"pantry{i} took a forged token: {body[:300]!r}")


if __name__ == "__main__":
    PANTRY = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
