#!/usr/bin/python3
"""Lock files through pantry after its cache is lost.

Lock files (pdm, poetry, uv, a pip requirements file with hashes) record pantry's absolute
/files/ URLs. A first pantry in front of a real nginx PyPI makes such a file; then a pantry with
a FRESH data dir on the same address (a new pantry, a wiped data dir, a second pantry behind a
load balancer) must still serve every URL in it, by asking the upstream for the page of the
project each file name names, and must still fetch nothing that no page lists.

Run by ctest with the pantry binary as the first argument:
    tests/integration/pypi_lockfile_test.py build/debug/cli/pantry
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
import nginx_pypi  # noqa: E402
from pantry_serve import Pantry, get, clean_env, free_port  # noqa: E402

PANTRY = None
PYTHON = "/usr/bin/python3"
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


class LockFileAfterCacheLossTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-lockfile-test-")
        cls.tree = os.path.join(cls.work, "upstream")
        cls.nginx = nginx_pypi.start(cls.tree, build=True)
        with open(os.path.join(cls.tree, "manifest.json")) as f:
            cls.manifest = json.load(f)
        cls.port = free_port()
        cls.pantries = []
        # The first pantry writes the lock file: one file of each project the first scenario
        # installs, its absolute pantry URL and sha256 as the project's page lists them.
        first = cls.start_pantry("first")
        cls.locked = {}  # project -> (absolute URL, sha256, filename)
        cls.sdist = None  # (absolute URL, sha256) of an sdist, not installed
        for project, version in cls.manifest["expect"]["scenarios"][0]["installs"].items():
            status, _, body = first.fetch(f"/simple/{project}/", JSON)
            assert status == 200, body
            files = json.loads(body)["files"]
            for f in files:
                if f["filename"].endswith(f"-{version}-py3-none-any.whl"):
                    cls.locked[project] = (first.url(f["url"]), f["hashes"]["sha256"],
                                           f["filename"])
                elif f["filename"].endswith(f"-{version}.tar.gz"):
                    cls.sdist = (first.url(f["url"]), f["hashes"]["sha256"])
        first.stop()

    @classmethod
    def tearDownClass(cls):
        for p in cls.pantries:
            p.stop()
        cls.nginx.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    @classmethod
    def start_pantry(cls, name):
        """A pantry with an empty data dir of its own, on the address the lock file names."""
        p = Pantry(PANTRY, os.path.join(cls.work, name), cls.nginx.index_url, port=cls.port,
                   upstream_timeouts="connect_timeout: 5s, header_timeout: 10s, idle_timeout: 10s")
        cls.pantries.append(p)
        return p

    def upstream_gets(self, suffix):
        return [e for e in self.nginx.log_entries()
                if e.get("method", "GET") == "GET"
                and e.get("uri", e.get("request", "")).endswith(suffix)]

    def test_a_pip_installs_a_hash_locked_requirements_file_from_a_fresh_pantry(self):
        self.assertEqual(len(self.locked), 3, self.locked)
        pantry = self.start_pantry("fresh-pip")
        try:
            req = os.path.join(self.work, "locked-requirements.txt")
            with open(req, "w") as f:
                for project, (url, sha, _) in sorted(self.locked.items()):
                    f.write(f"{project} @ {url} --hash=sha256:{sha}\n")
            venv = os.path.join(self.work, "venv")
            subprocess.run([PYTHON, "-m", "venv", venv], check=True, env=clean_env())
            # --no-index: pip reads no /simple/ page; only the lock file's URLs reach pantry.
            cmd = [os.path.join(venv, "bin", "python"), "-m", "pip", "install", "--no-index",
                   "--require-hashes", "-r", req]
            r = subprocess.run(cmd, env=clean_env(), capture_output=True, text=True, timeout=300)
            self.assertEqual(r.returncode, 0, f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}\n"
                                              f"pantry log:\n{pantry.tail()}")
            r = subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", "list",
                                "--format", "json"], env=clean_env(), capture_output=True,
                               text=True, check=True)
            got = {p["name"].lower().replace("_", "-").replace(".", "-"): p["version"]
                   for p in json.loads(r.stdout)}
            for project, version in self.manifest["expect"]["scenarios"][0]["installs"].items():
                self.assertEqual(got.get(project), version, got)
        finally:
            pantry.stop()

    def test_b_sdist_and_metadata_urls_from_a_fresh_pantry(self):
        self.assertIsNotNone(self.sdist)
        pantry = self.start_pantry("fresh-get")
        try:
            url, sha = self.sdist
            status, _, body = get(url)
            self.assertEqual(status, 200, body[:300])
            self.assertEqual(hashlib.sha256(body).hexdigest(), sha)
            # A PEP 658 URL alone (here of a wheel whose metadata pantry makes from it).
            wheel_url, _, filename = self.locked["pantry-demo-lib"]
            status, _, body = get(wheel_url + ".metadata")
            self.assertEqual(status, 200, body[:300])
            self.assertIn(b"Name: pantry-demo-lib", body)
        finally:
            pantry.stop()

    def test_c_a_url_no_page_lists_is_404_and_never_fetched(self):
        # A real file upstream, under the configured upstream's files host, that no page lists.
        wheel = next(f for f in self.manifest["files"] if f["filename"].endswith(".whl"))
        hidden = "packages/unlisted/pantry_demo_lib-9.9-py3-none-any.whl"
        os.makedirs(os.path.join(self.tree, "packages", "unlisted"), exist_ok=True)
        shutil.copy(os.path.join(self.tree, wheel["path"]), os.path.join(self.tree, hidden))
        files_host = wheel["url"].split("/")[2]
        pantry = self.start_pantry("fresh-unlisted")
        try:
            for path in (hidden, hidden + ".metadata", "manifest.json",
                         "packages/unlisted/README.txt"):
                status, _, body = pantry.fetch(f"/files/up/{files_host}/{path}")
                self.assertEqual(status, 404, f"{path}: {body[:300]}")
                self.assertIn(b"/simple/", body, path)
            for name in ("pantry_demo_lib-9.9-py3-none-any.whl", "manifest.json",
                         "pantry_demo_lib-9.9-py3-none-any.whl.metadata", "README.txt"):
                self.assertEqual(self.upstream_gets("/" + name), [], name)
        finally:
            pantry.stop()


if __name__ == "__main__":
    PANTRY = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
