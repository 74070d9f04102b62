#!/usr/bin/python3
"""A hosted Python index: the real twine uploads to pantry, pip installs through it.

Run by ctest with the pantry binary as the first argument:
    tests/integration/pypi_hosted_test.py build/debug/cli/pantry
The upstream is nginx serving the static PyPI of tests/fixtures/make_pypi_upstream.py; the
uploaded distributions are built here offline with the same builders. The test methods run in
name order, each building on the state the ones before left.
"""

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import urllib.error
import urllib.request
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
import clients  # noqa: E402
import make_pypi_upstream as mk  # noqa: E402
import nginx_pypi  # noqa: E402
from pantry_serve import Pantry, clean_env  # noqa: E402

PANTRY = None
PYTHON = "/usr/bin/python3"
CI_TOKEN = "ci-token-0123456789abcdef"
READER_TOKEN = "reader-token-0123456789abcdef"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
MTIME = 1700000000

HOSTED = """  hosted:
    - name: team
      uploaders: [ci]
"""
USERS = f"""  hosted:
    users:
      - {{name: ci, token: "{CI_TOKEN}"}}
      - {{name: reader, token: "{READER_TOKEN}"}}
"""


def build(release, wheel=True, sdist=False, outdir=None):
    """Writes the release's wheel and/or sdist into outdir; returns {filename: bytes}."""
    metadata = mk.core_metadata(release)
    out = {}
    if wheel:
        name, data = mk.build_wheel(release, metadata, MTIME)
        out[name] = data
    if sdist:
        name, data = mk.build_sdist(release, metadata, MTIME)
        out[name] = data
    for name, data in out.items():
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)
    return out


def build_big_wheel(release, outdir, extra_bytes):
    """A wheel of `release` carrying `extra_bytes` random (incompressible) bytes."""
    name, data = mk.build_wheel(release, mk.core_metadata(release), MTIME)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        entries = [(n, zf.read(n)) for n in zf.namelist()]
    entries.insert(0, (f"{mk.module_name(release)}/blob.bin", os.urandom(extra_bytes)))
    with open(os.path.join(outdir, name), "wb") as f:
        f.write(mk.zip_bytes(entries, MTIME))


def basic(user, token):
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()


def request(url, method="GET", body=None, headers=None):
    """(status, reason, headers, body); HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.reason, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.reason, e.headers, e.read()


class HostedIndexTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-pypi-hosted-test-")
        cls.tree = os.path.join(cls.work, "upstream")
        cls.nginx = nginx_pypi.start(cls.tree, build=True)
        cls.pantry = cls.start_pantry()
        cls.dists = {}
        cls.dirs = {}
        # team-tool: the team's own project, whose dependency comes from the upstream.
        # pantry-demo-util: also an upstream project (0.9, 1.0, 2.0): the hosted 5.0 shadows it.
        for key, release, sdist in (
                ("tool-1.0", mk.Release("Team.Tool", "1.0", ("pantry-demo-lib>=1.0",),
                                        requires_python=">=3.7"), True),
                ("tool-1.1", mk.Release("Team.Tool", "1.1", ("pantry-demo-lib>=1.0",),
                                        requires_python=">=3.7"), False),
                ("util-5.0", mk.Release("pantry-demo-util", "5.0"), False),
                ("tool-1.0-other", mk.Release("Team.Tool", "1.0", ("pantry-demo-app",)), True)):
            d = os.path.join(cls.work, "dist", key)
            os.makedirs(d)
            cls.dirs[key] = d
            cls.dists[key] = build(release, sdist=sdist, outdir=d)
        # Refused uploads: 4 MiB, more than the server drops of a body the handler did not read
        # (1 MiB), so that twine must still see the 403 the server answered before reading it.
        cls.dirs["tool-9.0"] = os.path.join(cls.work, "dist", "tool-9.0")
        os.makedirs(cls.dirs["tool-9.0"])
        build_big_wheel(mk.Release("Team.Tool", "9.0"), cls.dirs["tool-9.0"], 4 << 20)

    @classmethod
    def start_pantry(cls):
        return Pantry(PANTRY, cls.work, cls.nginx.index_url, pypi_extra=HOSTED, oci=USERS)

    @classmethod
    def tearDownClass(cls):
        cls.pantry.stop()
        cls.nginx.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    # ---- helpers

    def twine(self, key, user="ci", token=CI_TOKEN, expect_ok=True):
        files = sorted(os.path.join(self.dirs[key], f) for f in os.listdir(self.dirs[key]))
        r = clients.twine_upload(self.pantry.url("/team/"), user, token, files)
        cmd = r.args
        out = r.stdout + r.stderr
        if expect_ok:
            self.assertEqual(r.returncode, 0, f"{' '.join(cmd)} failed:\n{out}\n"
                                              f"pantry log:\n{self.pantry.tail()}")
        else:
            self.assertNotEqual(r.returncode, 0, f"{' '.join(cmd)} succeeded:\n{out}")
        return out

    def venv(self, name):
        path = os.path.join(self.work, "venvs", name)
        shutil.rmtree(path, ignore_errors=True)
        subprocess.run([PYTHON, "-m", "venv", path], check=True, env=clean_env())
        return os.path.join(path, "bin", "python")

    def pip_install(self, *args):
        python = self.venv("v")
        cmd = [python, "-m", "pip", "install", *args, "--index-url", self.pantry.index_url]
        r = subprocess.run(cmd, env=clean_env(), capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}\n"
                                          f"pantry log:\n{self.pantry.tail()}")
        listed = subprocess.run([python, "-m", "pip", "list", "--format", "json"], env=clean_env(),
                                capture_output=True, text=True, check=True)
        return {mk.normalize(p["name"]): p["version"] for p in json.loads(listed.stdout)}

    def page(self, project, path_prefix=""):
        status, _, headers, body = request(self.pantry.url(f"{path_prefix}/simple/{project}/"),
                                           headers={"Accept": JSON_TYPE})
        self.assertEqual(status, 200, body)
        self.assertEqual(headers["Content-Type"], JSON_TYPE)
        return json.loads(body)

    def filenames(self, project):
        return sorted(f["filename"] for f in self.page(project)["files"])

    def upstream_asked_for(self, project):
        return [e for e in self.nginx.log_entries()
                if f"/{project}/" in e.get("uri", e.get("request", ""))]

    # ---- the scenario, in order

    def test_a_twine_uploads_a_wheel_and_an_sdist(self):
        out = self.twine("tool-1.0")
        self.assertIn("team_tool-1.0-py3-none-any.whl", out)
        self.twine("tool-1.1")
        self.twine("util-5.0")
        page = self.page("team-tool")
        self.assertEqual(page["name"], "Team.Tool")
        self.assertEqual(page["meta"]["api-version"], "1.1")
        self.assertEqual(page["versions"], ["1.0", "1.1"])
        by_name = {f["filename"]: f for f in page["files"]}
        self.assertEqual(sorted(by_name), ["team_tool-1.0-py3-none-any.whl",
                                           "team_tool-1.0.tar.gz",
                                           "team_tool-1.1-py3-none-any.whl"])
        for filename, data in {**self.dists["tool-1.0"], **self.dists["tool-1.1"]}.items():
            f = by_name[filename]
            self.assertEqual(f["hashes"]["sha256"], hashlib.sha256(data).hexdigest(), f)
            self.assertEqual(f["size"], len(data), f)
            self.assertEqual(f["requires-python"], ">=3.7", f)
            self.assertRegex(f["upload-time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
            self.assertFalse(f["yanked"], f)
            # The file itself, from the URL the page gives.
            status, _, _, body = request(self.pantry.url(f["url"]) if f["url"].startswith("/")
                                         else f["url"])
            self.assertEqual((status, hashlib.sha256(body).hexdigest()),
                             (200, f["hashes"]["sha256"]), f["url"])
            if filename.endswith(".whl"):
                # PEP 658/714: the METADATA extracted at upload, under the hash the page gives.
                meta_hash = f["core-metadata"]["sha256"]
                self.assertEqual(f["data-dist-info-metadata"], f["core-metadata"])
                status, _, _, meta = request(self.pantry.url(f["url"] + ".metadata"))
                self.assertEqual(status, 200)
                self.assertEqual(hashlib.sha256(meta).hexdigest(), meta_hash)
                self.assertIn(b"Name: Team.Tool", meta)
            else:
                self.assertNotIn("core-metadata", f)
        # The HTML page carries the same, as PEP 503/658 attributes.
        status, _, headers, html = request(self.pantry.url("/simple/team-tool/"),
                                           headers={"Accept": "text/html"})
        self.assertEqual(status, 200)
        self.assertIn(b'data-dist-info-metadata="sha256=', html)
        self.assertIn(b'data-requires-python="&gt;=3.7"', html)
        # The project list and the index's own pages list hosted names.
        status, _, _, root = request(self.pantry.url("/simple/"), headers={"Accept": JSON_TYPE})
        self.assertIn("Team.Tool", [p["name"] for p in json.loads(root)["projects"]])
        status, _, _, root = request(self.pantry.url("/team/simple/"),
                                     headers={"Accept": JSON_TYPE})
        self.assertEqual(sorted(p["name"] for p in json.loads(root)["projects"]),
                         ["Team.Tool", "pantry-demo-util"])
        self.assertEqual(len(self.page("team-tool", "/team")["files"]), 3)

    def test_b_pip_installs_hosted_with_upstream_dependencies_and_the_hosted_name_shadows(self):
        got = self.pip_install("team-tool")
        # team-tool from the hosted index, pantry-demo-lib from the upstream, and
        # pantry-demo-util 5.0 from the hosted index, never the upstream's 1.0.
        self.assertEqual((got.get("team-tool"), got.get("pantry-demo-lib"),
                          got.get("pantry-demo-util")), ("1.1", "1.1", "5.0"), got)
        self.assertEqual(self.filenames("pantry-demo-util"),
                         ["pantry_demo_util-5.0-py3-none-any.whl"])
        self.assertEqual(self.upstream_asked_for("pantry-demo-util"), [],
                         "a hosted name is never asked of an upstream")
        self.assertNotEqual(self.upstream_asked_for("pantry-demo-lib"), [])
        # The JSON API gives no upstream answer for a hosted name either.
        status, _, _, body = request(self.pantry.url("/pypi/pantry-demo-util/json"))
        self.assertEqual(status, 404)
        self.assertIn(b"is hosted in team", body)

    def test_c_reupload_with_other_bytes_is_refused_and_same_bytes_are_a_no_op(self):
        before = self.page("team-tool")
        out = self.twine("tool-1.0-other", expect_ok=False)
        self.assertIn("400", out)
        self.assertIn("File already exists", out)
        self.assertEqual(self.page("team-tool"), before)
        out = self.twine("tool-1.0")
        self.assertEqual(self.page("team-tool"), before)

    def test_d_wrong_token_and_wrong_user_are_refused_and_nothing_is_stored(self):
        blobs_before, _ = self.pantry.blobs()
        out = self.twine("tool-9.0", token="not-the-token-0123456789", expect_ok=False)
        self.assertIn("403", out)
        out = self.twine("tool-9.0", user="reader", token=READER_TOKEN, expect_ok=False)
        self.assertIn("403", out)
        self.assertIn("isn't allowed to upload", out)
        self.assertEqual(self.filenames("team-tool"), ["team_tool-1.0-py3-none-any.whl",
                                                       "team_tool-1.0.tar.gz",
                                                       "team_tool-1.1-py3-none-any.whl"])
        self.assertEqual(self.pantry.blobs()[0], blobs_before)
        # Without credentials: 401 with a Basic challenge, as twine expects.
        status, _, headers, body = request(self.pantry.url("/team/"), method="POST",
                                           body=b"--x--",
                                           headers={"Content-Type":
                                                    "multipart/form-data; boundary=x"})
        self.assertEqual(status, 401, body)
        self.assertEqual(headers["WWW-Authenticate"], 'Basic realm="pantry"')

    def test_e_yank_shows_on_both_pages_and_pip_skips_it_until_unyanked(self):
        url = self.pantry.url("/team/team.tool/1.1/yank")
        status, _, _, body = request(url, method="PUT", body=b'{"reason": "broken <build>"}',
                                     headers={"Authorization": basic("ci", CI_TOKEN)})
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body), {"project": "Team.Tool", "version": "1.1",
                                            "yanked": True, "reason": "broken <build>",
                                            "files": ["team_tool-1.1-py3-none-any.whl"]})
        yanked = {f["filename"]: f["yanked"] for f in self.page("team-tool")["files"]}
        self.assertEqual(yanked["team_tool-1.1-py3-none-any.whl"], "broken <build>")
        self.assertFalse(yanked["team_tool-1.0.tar.gz"])
        _, _, _, html = request(self.pantry.url("/simple/team-tool/"))
        self.assertIn(b'data-yanked="broken &lt;build&gt;"', html)
        self.assertEqual(self.pip_install("team-tool").get("team-tool"), "1.0")
        # Other users may not yank; an unknown version is 404.
        status, _, _, _ = request(url, method="PUT",
                                  headers={"Authorization": basic("reader", READER_TOKEN)})
        self.assertEqual(status, 403)
        status, _, _, body = request(self.pantry.url("/team/team-tool/7.0/yank"), method="PUT",
                                     headers={"Authorization": basic("ci", CI_TOKEN)})
        self.assertEqual(status, 404, body)
        status, _, _, body = request(url, method="DELETE",
                                     headers={"Authorization": basic("ci", CI_TOKEN)})
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["yanked"], False)
        self.assertFalse(any(f["yanked"] for f in self.page("team-tool")["files"]))

    def test_f_restart_and_cache_gc_keep_every_hosted_file(self):
        cls = type(self)
        before = {p: self.page(p) for p in ("team-tool", "pantry-demo-util")}
        cls.pantry.stop()
        # gc with a quota of nothing: every unpinned blob goes, hosted ones must stay.
        gc_config = os.path.join(self.work, "gc.yaml")
        with open(cls.pantry.config) as f:
            text = f.read()
        with open(gc_config, "w") as f:
            f.write(text.replace("max_size: 2GiB", "max_size: 1KiB"))
        r = subprocess.run([PANTRY, "cache", "gc", "--config", gc_config, "--grace", "0s"],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"evicted [1-9]\d* blobs", "gc evicted the proxied files")
        cls.pantry = cls.start_pantry()
        for project, page in before.items():
            self.assertEqual(self.page(project), page)
            for f in page["files"]:
                status, _, _, body = request(self.pantry.url(f["url"]))
                self.assertEqual((status, hashlib.sha256(body).hexdigest()),
                                 (200, f["hashes"]["sha256"]), f["url"])
        got = self.pip_install("team-tool==1.0")
        self.assertEqual((got.get("team-tool"), got.get("pantry-demo-util")), ("1.0", "5.0"), got)


if __name__ == "__main__":
    PANTRY = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
