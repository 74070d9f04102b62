#!/usr/bin/python3
"""pip through pantry, against a real nginx serving a static PyPI built offline.

Run by ctest with the pantry binary as the first argument:
    tests/integration/pypi_proxy_test.py build/asan/cli/pantry
Every pip runs in a fresh venv with nothing from the machine's pip configuration.
"""

import gzip
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
import nginx_pypi  # noqa: E402
from pantry_serve import Pantry, get, clean_env  # noqa: E402

PANTRY = None
PYTHON = "/usr/bin/python3"


class PipThroughPantryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-pypi-test-")
        cls.tree = os.path.join(cls.work, "upstream")
        cls.nginx = nginx_pypi.start(cls.tree, build=True)
        with open(os.path.join(cls.tree, "manifest.json")) as f:
            cls.manifest = json.load(f)
        cls.pantry = Pantry(PANTRY, cls.work, cls.nginx.index_url, upstream_timeouts="connect_timeout: 5s, header_timeout: 10s, idle_timeout: 10s")

    @classmethod
    def tearDownClass(cls):
        cls.pantry.stop()
        cls.nginx.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    def venv(self, name, python=PYTHON):
        path = os.path.join(self.work, "venvs", name)
        shutil.rmtree(path, ignore_errors=True)
        subprocess.run([python, "-m", "venv", path], check=True, env=clean_env())
        return os.path.join(path, "bin", "python")

    def pip(self, python, *args, index=None):
        cmd = [python, "-m", "pip", *args, "--index-url", index or self.pantry.index_url]
        r = subprocess.run(cmd, env=clean_env(), capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}\n"
                                          f"pantry log:\n{self.pantry.tail()}")
        return r

    def installed(self, python):
        r = subprocess.run([python, "-m", "pip", "list", "--format", "json"], env=clean_env(),
                           capture_output=True, text=True, check=True)
        return {p["name"].lower().replace("_", "-").replace(".", "-"): p["version"]
                for p in json.loads(r.stdout)}

    def upstream_gets(self, suffix):
        return [e for e in self.nginx.log_entries()
                if e.get("method", "GET") == "GET" and e.get("uri", e.get("request", "")).endswith(suffix)]

    def assert_installs(self, python, expected):
        got = self.installed(python)
        for project, version in expected.items():
            self.assertEqual(got.get(project), version,
                             f"{project}: expected {version}, installed {got}")

    def test_a_install_scenarios_resolve_as_against_upstream(self):
        for i, scenario in enumerate(self.manifest["expect"]["scenarios"]):
            with self.subTest(args=scenario["pip_args"]):
                py = self.venv(f"scenario{i}")
                self.pip(py, "install", *scenario["pip_args"])
                self.assert_installs(py, scenario["installs"])

    def test_b_require_hashes(self):
        scenario = self.manifest["expect"]["scenarios"][0]
        req = os.path.join(self.work, "requirements.txt")
        with open(req, "w") as f:
            f.write(scenario["requirements_with_hashes"])
        py = self.venv("hashes")
        self.pip(py, "install", "--require-hashes", "-r", req)
        self.assert_installs(py, scenario["installs"])

    def test_c_each_file_came_from_upstream_once(self):
        # Earlier tests installed the same files in several venvs.
        for f in self.manifest["files"]:
            name = f["path"].rsplit("/", 1)[-1]
            gets = self.upstream_gets("/" + name)
            self.assertLessEqual(len(gets), 1, f"{name} fetched {len(gets)} times: {gets}")

    def test_d_json_and_html_by_accept(self):
        url = self.pantry.url("/simple/pantry-demo-lib/")
        status, headers, body = get(url, {"Accept": "application/vnd.pypi.simple.v1+json"})
        self.assertEqual(status, 200, body)
        self.assertEqual(headers["Content-Type"], "application/vnd.pypi.simple.v1+json")
        self.assertIn("Accept", headers.get("Vary", ""))
        page = json.loads(body)
        self.assertEqual(page["meta"]["api-version"], "1.1")
        yanked = {f["filename"]: f["yanked"] for f in page["files"]}
        self.assertEqual(yanked["pantry_demo_lib-1.2-py3-none-any.whl"],
                         "broken build <don't use>; use 1.1 & later")
        for f in page["files"]:
            self.assertTrue(f["url"].startswith("/files/up/127.0.0.1:"), f["url"])
        status, headers, body = get(url, {"Accept": "*/*"})
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/html"), headers["Content-Type"])
        self.assertIn(b'data-requires-python="&gt;=3.7,&lt;4"', body)
        self.assertIn(b"#sha256=", body)
        status, headers, body = get(url, {"Accept": "application/xml"})
        self.assertEqual(status, 406, body)
        status, headers, body = get(url, {"Accept-Encoding": "gzip"})
        self.assertEqual(headers.get("Content-Encoding"), "gzip")
        self.assertIn(b"pantry_demo_lib-1.1", gzip.decompress(body))

    def test_d_non_normalized_names_redirect(self):
        status, headers, _ = get(self.pantry.url("/simple/Pantry_Demo.Util/"))
        self.assertEqual(status, 301)
        self.assertEqual(headers["Location"], "/simple/pantry-demo-util/")
        status, headers, _ = get(self.pantry.url("/simple/pantry-demo-util"))
        self.assertEqual(status, 301)
        self.assertEqual(headers["Location"], "/simple/pantry-demo-util/")

    def test_e_conditional_and_range_requests(self):
        url = self.pantry.url("/simple/pantry-demo-app/")
        status, headers, _ = get(url)
        etag = headers["ETag"]
        status, headers, body = get(url, {"If-None-Match": etag})
        self.assertEqual(status, 304, body)
        self.assertEqual(headers["ETag"], etag)
        page = json.loads(get(url, {"Accept": "application/vnd.pypi.simple.v1+json"})[2])
        f = next(f for f in page["files"] if f["filename"].endswith(".whl"))
        file_url = self.pantry.url(f["url"])
        status, headers, whole = get(file_url)
        self.assertEqual(status, 200)
        self.assertEqual(len(whole), f["size"])
        status, headers, part = get(file_url, {"Range": "bytes=10-19"})
        self.assertEqual(status, 206)
        self.assertEqual(part, whole[10:20])
        self.assertEqual(headers["Content-Range"], f"bytes 10-19/{len(whole)}")
        status, _, _ = get(file_url, {"Range": f"bytes={len(whole)}-"})
        self.assertEqual(status, 416)
        # Last-Modified / If-Modified-Since, for pages and files alike; the 304 carries the ETag.
        for u in (url, file_url):
            status, headers, _ = get(u)
            modified, etag = headers["Last-Modified"], headers["ETag"]
            status, headers, body = get(u, {"If-Modified-Since": modified})
            self.assertEqual((status, headers.get("ETag")), (304, etag), f"{u}: {body[:200]}")
            status, _, _ = get(u, {"If-Modified-Since": "Thu, 01 Jan 2015 00:00:00 GMT"})
            self.assertEqual(status, 200, u)
            # If-None-Match wins over If-Modified-Since when both are sent.
            status, _, _ = get(u, {"If-Modified-Since": modified, "If-None-Match": '"other"'})
            self.assertEqual(status, 200, u)
        # /metrics counts requests by cache outcome.
        _, _, metrics = get(self.pantry.url("/metrics"))
        hits = [l for l in metrics.decode().splitlines()
                if l.startswith("pantry_cache_requests_total{") and 'outcome="hit"' in l]
        self.assertTrue(hits and all(float(l.rsplit(" ", 1)[1]) > 0 for l in hits), hits)

    def test_f_metadata_generated_when_upstream_has_none(self):
        page = json.loads(get(self.pantry.url("/simple/pantry-demo-util/"),
                              {"Accept": "application/vnd.pypi.simple.v1+json"})[2])
        wheel = next(f for f in page["files"] if f["filename"] == "Pantry_Demo.Util-1.0-py3-none-any.whl")
        self.assertIn("core-metadata", wheel)
        self.assertNotIn("dist-info-metadata", wheel)
        status, _, metadata = get(self.pantry.url(wheel["url"] + ".metadata"))
        self.assertEqual(status, 200, metadata)
        _, _, whole = get(self.pantry.url(wheel["url"]))
        with zipfile.ZipFile(__import__("io").BytesIO(whole)) as z:
            expected = z.read("Pantry_Demo.Util-1.0.dist-info/METADATA")
        self.assertEqual(metadata, expected)

    def test_g_unlisted_and_hostile_file_paths_are_refused(self):
        status, _, body = get(self.pantry.url("/files/up/127.0.0.1:1/packages/x.whl"))
        self.assertEqual(status, 404, body)
        self.assertIn(b"/simple/", body)
        status, _, body = get(self.pantry.url("/files/up/127.0.0.1:1/../../etc/passwd"))
        self.assertIn(status, (400, 404), body)
        status, _, body = get(self.pantry.url("/files/up/example.com/%2e%2e/x"))
        self.assertEqual(status, 400, body)

    def test_h_newer_pip_uses_metadata_files(self):
        pythons = sorted(p for p in (os.path.expanduser("~/.pyenv/versions/" + v + "/bin/python")
                                     for v in os.listdir(os.path.expanduser("~/.pyenv/versions")))
                         if os.path.exists(p)) if os.path.isdir(os.path.expanduser("~/.pyenv/versions")) else []
        newer = None
        for p in pythons:
            r = subprocess.run([p, "-c", "import pip,sys; v=tuple(map(int,pip.__version__.split('.')[:2])); sys.exit(0 if v>=(23,2) else 1)"],
                               env=clean_env(), capture_output=True)
            if r.returncode == 0:
                newer = p
                break
        if newer is None:
            self.skipTest("no Python with pip >= 23.2 on this machine")
        py = self.venv("newer-pip", python=newer)
        scenario = self.manifest["expect"]["scenarios"][0]
        self.pip(py, "install", *scenario["pip_args"])
        self.assert_installs(py, scenario["installs"])

    def test_i_json_api(self):
        status, headers, body = self.pantry.fetch("/pypi/pantry-demo-lib/json")
        self.assertEqual(status, 200, body[:300])
        self.assertEqual(headers["Content-Type"], "application/json")
        api = json.loads(body)
        mine = {f["filename"]: f for f in self.manifest["files"] if f["project"] == "pantry-demo-lib"}
        got = {f["filename"]: f for files in api["releases"].values() for f in files}
        self.assertEqual(sorted(got), sorted(mine))
        files_base = self.pantry.url("/files/up/127.0.0.1:")
        for name, f in got.items():
            self.assertTrue(f["url"].startswith(files_base), f"{name}: {f['url']}")
            self.assertEqual(f["digests"]["sha256"], mine[name]["sha256"], name)
        # A client of the JSON API downloads `url` as it stands.
        first = api["releases"]["1.0"][0]
        status, _, data = get(first["url"])
        self.assertEqual(status, 200, data[:300])
        self.assertEqual(hashlib.sha256(data).hexdigest(), first["digests"]["sha256"])

        status, _, body = self.pantry.fetch("/pypi/pantry-demo-lib/1.0/json")
        self.assertEqual(status, 200, body[:300])
        one = json.loads(body)
        self.assertEqual(one["info"]["version"], "1.0")
        self.assertEqual(sorted(f["filename"] for f in one["urls"]),
                         sorted(n for n, f in mine.items() if f["version"] == "1.0"))

        # Served from the cache within index_ttl; conditional and gzip like the simple pages.
        status, headers, _ = self.pantry.fetch("/pypi/pantry-demo-lib/json")
        self.assertEqual(len(self.upstream_gets("/pypi/pantry-demo-lib/json")), 1,
                         self.upstream_gets("/pypi/pantry-demo-lib/json"))
        status, _, _ = self.pantry.fetch("/pypi/pantry-demo-lib/json", {"If-None-Match": headers["ETag"]})
        self.assertEqual(status, 304)
        status, headers, body = self.pantry.fetch("/pypi/pantry-demo-lib/json", {"Accept-Encoding": "gzip"})
        self.assertEqual(headers.get("Content-Encoding"), "gzip")
        self.assertEqual(json.loads(gzip.decompress(body)), api)

        status, headers, _ = self.pantry.fetch("/pypi/Pantry_Demo.Lib/1.0/json")
        self.assertEqual((status, headers.get("Location")), (301, "/pypi/pantry-demo-lib/1.0/json"))
        for path, want in (("/pypi/no-such-project/json", "not on any index"),
                           ("/pypi/pantry-demo-lib/9.9/json", "not on any index"),
                           ("/pypi/pantry-demo-lib/simple", "not a JSON API URL"),
                           ("/pypi/pantry-demo-lib/1.0/../json", "not a JSON API URL")):
            status, _, body = self.pantry.fetch(path)
            self.assertEqual(status, 404, f"{path}: {body[:300]}")
            self.assertIn(want, body.decode(), path)

    def test_j_root_lists_every_upstream_project(self):
        status, headers, body = self.pantry.fetch("/simple/", {"Accept": "application/vnd.pypi.simple.v1+json"})
        self.assertEqual(status, 200, body[:300])
        names = {p["name"] for p in json.loads(body)["projects"]}
        want = {p["display_name"] for p in self.manifest["projects"].values()}
        self.assertEqual(names, want)
        status, _, body = self.pantry.fetch("/simple/")
        self.assertEqual(status, 200)
        for normalized in self.manifest["projects"]:
            self.assertIn(f'href="{normalized}/"'.encode(), body)

    def test_z_installs_from_pantry_alone_when_upstream_is_down(self):
        self.nginx.stop()
        scenario = self.manifest["expect"]["scenarios"][0]
        py = self.venv("offline")
        self.pip(py, "install", *scenario["pip_args"])
        self.assert_installs(py, scenario["installs"])
        status, _, body = self.pantry.fetch("/pypi/pantry-demo-lib/json")
        self.assertEqual(status, 200, body[:300])
        status, _, body = self.pantry.fetch("/simple/", {"Accept": "application/vnd.pypi.simple.v1+json"})
        self.assertEqual(status, 200, body[:300])
        self.assertEqual({p["name"] for p in json.loads(body)["projects"]},
                         {p["display_name"] for p in self.manifest["projects"].values()})


if __name__ == "__main__":
    PANTRY = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
