#!/usr/bin/python3
"""The front page (`GET /`) of a real pantry, read as a browser reads it.

Run by ctest with the pantry binary as the first argument:
    /usr/bin/python3 tests/integration/front_page_test.py build/debug/cli/pantry

pantry proxies a PyPI upstream of the test's own (a small HTTP server) and two registries on a
closed port (so that they have failed), one with a username and password that the page must
never show (the config refuses user info in upstream URLs; the unit tests check that the page
would cut it). After a miss, a hit and a failed pull, the page must show the client settings for
the Host the request named, both upstreams' last success and failure, and the cache's counts; it
is loaded in Debian's headless Chromium (`chromium --headless --dump-dom`, and a screenshot kept
in the test's output directory, front_page_output/ beside ctest's working directory or
$PANTRY_TEST_OUTPUT). Without chromium the page is checked with http.client and html.parser only,
and the test says so.
"""

import html.parser
import http.client
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
from pantry_serve import Pantry, free_port  # noqa: E402

PANTRY = None
SECRETS = ["oci-s3cret-password", "someone", "hosted-s3cret-token"]
CHROMIUM = shutil.which("chromium")
OUTPUT = os.environ.get("PANTRY_TEST_OUTPUT",
                        os.path.join(os.getcwd(), "front_page_output"))

DEMO_PAGE = b"""<!DOCTYPE html><html><body>
<a href="../../files/demo-1.0.tar.gz#sha256=%s">demo-1.0.tar.gz</a>
</body></html>""" % (b"0" * 64)


class Upstream(http.server.BaseHTTPRequestHandler):
    """A PyPI index with one project, demo, and no files worth fetching."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path.rstrip("/") == "/simple/demo":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(DEMO_PAGE)))
            self.end_headers()
            self.wfile.write(DEMO_PAGE)
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


class Text(html.parser.HTMLParser):
    """The page's visible text (no tags, entities decoded) and what it would load."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts = []
        self.loads = []  # src= and <link href=> values: the page must need none
        self.scripts = 0
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag in ("style", "script"):
            self._skip += 1
        if "src" in a:
            self.loads.append(a["src"])
        if tag == "link" and "href" in a:
            self.loads.append(a["href"])

    def handle_endtag(self, tag):
        if tag in ("style", "script"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)

    @property
    def text(self):
        return "".join(self.parts)


def parse(body):
    p = Text()
    p.feed(body)
    return p


def request(port, method, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return r.status, r.headers, r.read()
    finally:
        c.close()


class FrontPageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-front-test-")
        cls.upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
        threading.Thread(target=cls.upstream.serve_forever, daemon=True).start()
        up_port = cls.upstream.server_address[1]
        with socket.socket() as s:  # a port nothing listens on: the registry that fails
            s.bind(("127.0.0.1", 0))
            cls.closed_port = s.getsockname()[1]
        oci = f"""  default_upstream: docker.io
  upstreams:
    - {{ name: docker.io, url: "http://127.0.0.1:{cls.closed_port}" }}
    - {{ name: ghcr.io, url: "http://127.0.0.1:{cls.closed_port}", username: someone, password: oci-s3cret-password }}
  hosted:
    prefix: team/
    users: [{{ name: pusher, token: "hosted-s3cret-token-0123456789" }}]
"""
        cls.pantry = Pantry(PANTRY, os.path.join(cls.work, "pantry"),
                            f"http://127.0.0.1:{up_port}/simple/",
                            oci=oci)
        # A miss, then a hit, on the PyPI upstream; a failed pull from docker.io.
        for _ in range(2):
            status, _, body = cls.pantry.fetch("/simple/demo/")
            assert status == 200, (status, body, cls.pantry.tail())
        status, _, _ = cls.pantry.fetch("/v2/library/busybox/manifests/1.36")
        assert status >= 500, (status, cls.pantry.tail())
        os.makedirs(OUTPUT, exist_ok=True)

    @classmethod
    def tearDownClass(cls):
        cls.pantry.stop()
        cls.upstream.shutdown()
        shutil.rmtree(cls.work, ignore_errors=True)

    def page(self, host):
        status, headers, body = request(self.pantry.port, "GET", "/",
                                        {"Host": host, "Accept": "text/html"})
        self.assertEqual(status, 200, body[:500])
        self.assertEqual(headers["Content-Type"], "text/html; charset=utf-8")
        self.assertEqual(headers["Cache-Control"], "no-store")
        self.assertIn("default-src 'none'", headers["Content-Security-Policy"])
        return body.decode()

    def assert_no_secret(self, text, what):
        for secret in SECRETS:
            self.assertNotIn(secret, text, f"{what} shows a secret")

    def test_html_has_the_settings_for_the_host_the_client_named(self):
        body = self.page("pantry.example.test:8585")
        p = parse(body)
        text = p.text
        self.assertEqual(p.scripts, 0)
        self.assertEqual(p.loads, [], "the page loads nothing")
        self.assert_no_secret(body, "the HTML")
        for expected in [
                "export PIP_INDEX_URL=http://pantry.example.test:8585/simple/",
                "export PIP_TRUSTED_HOST=pantry.example.test",
                "index-url = http://pantry.example.test:8585/simple/",
                "UV_DEFAULT_INDEX=http://pantry.example.test:8585/simple/",
                'url = "http://pantry.example.test:8585/simple/"',
                '"registry-mirrors": ["http://pantry.example.test:8585"]',
                '"insecure-registries": ["pantry.example.test:8585"]',
                'location = "pantry.example.test:8585/ghcr.io"',
                "/etc/containerd/certs.d/ghcr.io/hosts.toml",
                '[host."http://pantry.example.test:8585"]',
                f"http://127.0.0.1:{self.upstream.server_address[1]}/simple/",
                "http://pantry.example.test:8585/api/v1/",
        ]:
            self.assertIn(expected, text)
        self.assertNotIn("twine", text.lower())

    def test_hostile_host_header_is_not_echoed(self):
        body = self.page('x"><script>alert(1)</script>')
        self.assertNotIn("<script>alert", body)
        self.assertIn(f"127.0.0.1:{self.pantry.port}/simple/", parse(body).text)

    def test_json_has_upstream_health_and_cache_counts(self):
        status, headers, body = request(self.pantry.port, "GET", "/",
                                        {"Accept": "application/json",
                                         "Host": f"127.0.0.1:{self.pantry.port}"})
        self.assertEqual(status, 200, body[:500])
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assert_no_secret(body.decode(), "the JSON")
        page = json.loads(body)
        ups = {(u["protocol"], u["name"]): u for u in page["upstreams"]}
        up = ups[("pypi", "up")]
        self.assertIsNotNone(up["last_success"], up)
        self.assertIsNone(up["last_failure"], up)
        self.assertFalse(up["credentials"])
        hub = ups[("oci", "docker.io")]
        self.assertIsNotNone(hub["last_failure"], hub)
        self.assertIn("refused", hub["failure"])
        self.assertTrue(ups[("oci", "ghcr.io")]["credentials"])
        self.assertGreaterEqual(page["cache"]["hits"], 1, page["cache"])
        self.assertGreaterEqual(page["cache"]["misses"], 1, page["cache"])
        self.assertGreater(page["cache"]["bytes"], 0, page["cache"])
        self.assertEqual(page["cache"]["quota"], 2 << 30)
        self.assertEqual(page["serves"]["pypi"]["index_url"],
                         f"http://127.0.0.1:{self.pantry.port}/simple/")

    def test_unknown_paths_still_get_a_404_and_post_a_405(self):
        status, _, body = request(self.pantry.port, "GET", "/nope")
        self.assertEqual(status, 404, body)
        self.assertIn(b"no route for path /nope", body)
        status, headers, _ = request(self.pantry.port, "POST", "/")
        self.assertEqual(status, 405)
        self.assertEqual(headers["Allow"], "GET, HEAD")
        status, _, body = request(self.pantry.port, "HEAD", "/")
        self.assertEqual((status, body), (200, b""))

    def test_chromium_renders_the_page(self):
        if not CHROMIUM:
            print("front_page_test: chromium is not installed; the page was checked with "
                  "http.client and html.parser only", file=sys.stderr)
            self.skipTest("chromium is not installed")
        url = self.pantry.url("/")
        profile = os.path.join(self.work, "chromium-profile")
        common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-dev-shm-usage", f"--user-data-dir={profile}"]
        r = subprocess.run(common + ["--dump-dom", url], capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        text = parse(r.stdout).text
        self.assertIn(f"pantry", text)
        self.assertIn(f"export PIP_INDEX_URL=http://127.0.0.1:{self.pantry.port}/simple/", text)
        self.assertIn("What this pantry serves", text)
        self.assertIn("hits since start", text)
        self.assert_no_secret(r.stdout, "chromium's DOM")
        shot = os.path.join(OUTPUT, "front_page.png")
        if os.path.exists(shot):
            os.remove(shot)
        r = subprocess.run(common + ["--window-size=1280,2200", f"--screenshot={shot}", url],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        with open(shot, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        print(f"front_page_test: screenshot at {shot}", file=sys.stderr)


if __name__ == "__main__":
    PANTRY = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
