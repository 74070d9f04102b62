#!/usr/bin/python3
"""`pantry cache warm` against a real pantry in front of nginx serving a static PyPI.

Run by ctest with the pantry binary as the first argument:
    /usr/bin/python3 tests/integration/cache_warm_test.py build/asan/cli/pantry

The fixture tree (tests/fixtures/make_pypi_upstream.py) gets one more project here,
pantry-demo-native 1.0, whose only files are two platform wheels (manylinux x86_64 and
win_amd64, both cp311) and no sdist, for the --platform / --python-version filters.
Tests run in name order: the last one stops nginx and installs what was warmed with pip.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
import make_pypi_upstream  # noqa: E402
import nginx_pypi  # noqa: E402
from pantry_serve import Pantry, get, clean_env  # noqa: E402

PANTRY = None
PYTHON = "/usr/bin/python3"
SUMMARY = re.compile(r"^warmed (\d+) files? \((.+?), with (\d+) \.metadata files?\) for (\d+) pins?: "
                     r"(\d+) failed(.*)$", re.M)

NATIVE = "pantry-demo-native"
NATIVE_LINUX = "pantry_demo_native-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
NATIVE_WIN = "pantry_demo_native-1.0-cp311-cp311-win_amd64.whl"


def add_native_project(tree, files_base):
    """simple/pantry-demo-native/ with two platform wheels (no .metadata: pantry makes it)."""
    mpu = make_pypi_upstream
    epoch = mpu.DEFAULT_EPOCH
    release = mpu.Release(NATIVE, "1.0")
    metadata = mpu.core_metadata(release)
    dists = []
    for filename in (NATIVE_LINUX, NATIVE_WIN):
        tag = filename[len("pantry_demo_native-1.0-"):-len(".whl")]
        dist_info = "pantry_demo_native-1.0.dist-info"
        wheel = f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag}\n".encode()
        data = mpu.zip_bytes([(f"{dist_info}/METADATA", metadata), (f"{dist_info}/WHEEL", wheel)],
                             epoch)
        dist = mpu.Dist(NATIVE, "1.0", filename, data, "wheel", ">=3.7", False, epoch)
        mpu.place(dist, files_base)
        dists.append(dist)
    mpu.write_dists(tree, dists)
    page_html, page_json = mpu.project_pages(NATIVE, dists)
    mpu.write_file(tree, f"simple/{NATIVE}/index.html", page_html, epoch)
    mpu.write_file(tree, f"simple/{NATIVE}/index.json", page_json, epoch)


class CacheWarmTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-warm-test-")
        cls.tree = os.path.join(cls.work, "upstream")
        cls.nginx = nginx_pypi.start(cls.tree, build=True)
        add_native_project(cls.tree, cls.nginx.files_base)
        with open(os.path.join(cls.tree, "manifest.json")) as f:
            cls.manifest = json.load(f)
        cls.files = {f["filename"]: f for f in cls.manifest["files"]}
        cls.pantry = Pantry(PANTRY, os.path.join(cls.work, "pantry"), cls.nginx.index_url,
                            upstream_timeouts="connect_timeout: 5s, header_timeout: 10s, idle_timeout: 10s")

    @classmethod
    def tearDownClass(cls):
        cls.pantry.stop()
        cls.nginx.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    # ---- helpers

    def write(self, relpath, text):
        path = os.path.join(self.work, "reqs", relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path

    def warm(self, *args, url=True):
        cmd = [PANTRY, "cache", "warm", *args]
        if url:
            cmd += ["--url", self.pantry.url("/")]
        # stdin/stdout/stderr are pipes: not a terminal, so no progress bar.
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                           stdin=subprocess.DEVNULL)
        r.cmd = " ".join(cmd)
        return r

    def explain(self, r):
        return (f"{r.cmd}\nexit {r.returncode}\n--- stdout:\n{r.stdout}\n--- stderr:\n{r.stderr}"
                f"\n--- pantry log tail:\n{self.pantry.tail()}")

    def summary(self, r):
        m = SUMMARY.search(r.stdout)
        self.assertIsNotNone(m, "no summary line\n" + self.explain(r))
        self.assertEqual(len(r.stdout.strip().splitlines()), 1, "stdout is one line\n" + self.explain(r))
        self.assertNotIn("\r", r.stderr, "no progress bar off a terminal\n" + self.explain(r))
        files, _, metadata, pins, failed, rest = m.groups()
        return {"files": int(files), "metadata": int(metadata), "pins": int(pins),
                "failed": int(failed), "rest": rest}

    def upstream_gets(self, filename):
        time.sleep(0.05)  # nginx logs a request just after it answers
        return [e for e in self.nginx.log_entries()
                if e.get("method") == "GET" and e.get("uri", "").endswith("/" + filename)]

    def sha(self, filename):
        return self.files[filename]["sha256"]

    # ---- tests

    def test_a_warms_pins_from_includes_with_hashes(self):
        app = "pantry_demo_app-2.0-py3-none-any.whl"
        lib = "pantry_demo_lib-1.1-py3-none-any.whl"
        util = "Pantry_Demo.Util-1.0-py3-none-any.whl"
        sdist = "Pantry_Demo.Util-1.0.tar.gz"
        self.write("more/lib.txt",
                   f'pantry-demo-lib==1.1 ; python_version >= "3.7" --hash=sha256:{self.sha(lib)}\n')
        # Only the util wheel's hash: its sdist is left out, as pip would never take it.
        main = self.write("main.txt", f"""# the demo app, pinned as pip-compile --generate-hashes writes it
--trusted-host example.invalid
--prefer-binary

pantry-demo-app==2.0 \\
    --hash=sha256:{self.sha(app)}
-r more/lib.txt
Pantry_Demo.Util==1.0 \\
    --hash=sha256:{self.sha(util)}
""")
        # Default URL: the listen address of the config pantry runs with.
        r = self.warm("-r", main, "--config", self.pantry.config, "--jobs", "2", url=False)
        self.assertEqual(r.returncode, 0, self.explain(r))
        self.assertEqual(r.stderr, "", self.explain(r))
        s = self.summary(r)
        self.assertEqual((s["files"], s["pins"], s["failed"]), (3, 3, 0), self.explain(r))
        # app and lib have upstream .metadata files; util's is made by pantry from its wheel.
        self.assertEqual(s["metadata"], 3, self.explain(r))
        self.assertIn("1 file left out by --hash", s["rest"], self.explain(r))
        for name in (app, lib, util):
            self.assertEqual(len(self.upstream_gets(name)), 1, name)
        self.assertEqual(self.upstream_gets(sdist), [])
        self.assertEqual(len(self.upstream_gets(app + ".metadata")), 1)

        # Again: everything comes from pantry's cache, nothing from upstream.
        r = self.warm("-r", main)
        self.assertEqual(r.returncode, 0, self.explain(r))
        self.assertEqual(self.summary(r)["files"], 3, self.explain(r))
        for name in (app, lib, util, app + ".metadata"):
            self.assertEqual(len(self.upstream_gets(name)), 1, name)

    def test_b_unpinned_lines_are_usage_errors_naming_file_and_line(self):
        before = len(self.nginx.log_entries())
        bad = self.write("bad.txt", "pantry-demo-app==2.0\npantry-demo-lib>=1.0\n-e ./src\n")
        r = self.warm("-r", bad)
        self.assertEqual(r.returncode, 2, self.explain(r))
        self.assertIn(f'{bad}:2: "pantry-demo-lib>=1.0"', r.stderr, self.explain(r))
        self.assertIn(f"{bad}:3:", r.stderr, self.explain(r))
        self.assertIn("pinned with ==", r.stderr, self.explain(r))
        self.assertEqual(r.stdout, "")
        self.assertEqual(len(self.nginx.log_entries()), before, "nothing was fetched")

        missing = os.path.join(self.work, "reqs", "missing.txt")
        r = self.warm("-r", missing)
        self.assertEqual(r.returncode, 2, self.explain(r))
        self.assertIn(missing, r.stderr)

        r = self.warm("--platform", "any")
        self.assertEqual(r.returncode, 2, self.explain(r))
        self.assertIn("usage:", r.stderr)
        r = self.warm("-r", bad, "--jobs", "0")
        self.assertEqual(r.returncode, 2, self.explain(r))
        self.assertIn("--jobs 0", r.stderr)

    def test_c_a_missing_version_or_hash_fails_naming_the_pin(self):
        req = self.write("missing.txt", "pantry-demo-lib==1.1\npantry-demo-app==9.9\n"
                                        f"wheel==0.38.4 --hash=sha256:{'0' * 64}\n"
                                        "no-such-project==1.0\n")
        # A PIP_INDEX_URL works as --url too.
        r = self.warm("-r", req, "--url", self.pantry.index_url, url=False)
        self.assertEqual(r.returncode, 1, self.explain(r))
        s = self.summary(r)
        self.assertEqual((s["files"], s["pins"], s["failed"]), (1, 4, 3), self.explain(r))
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 3, self.explain(r))
        self.assertIn(f"FAILED {req}:2: pantry-demo-app==9.9: the index has no wheel or sdist of "
                      "version 9.9 (versions: 1.0, 1.1, 2.0)", r.stderr, self.explain(r))
        self.assertIn(f"FAILED {req}:3: wheel==0.38.4: none of the 1 files", r.stderr,
                      self.explain(r))
        self.assertIn(f"FAILED {req}:4: no-such-project==1.0: GET ", r.stderr, self.explain(r))
        self.assertIn("HTTP 404", r.stderr, self.explain(r))

    def test_d_platform_and_python_filters(self):
        app = "pantry_demo_app-1.1-py3-none-any.whl"
        req = self.write("native.txt", f"{NATIVE}==1.0\npantry-demo-app==1.1\n")
        # No wheel of native is for aarch64 and it has no sdist: a note, nothing fetched for it.
        # Pure wheels are for every platform.
        r = self.warm("-r", req, "--platform", "linux_aarch64")
        self.assertEqual(r.returncode, 0, self.explain(r))
        s = self.summary(r)
        self.assertEqual((s["files"], s["failed"]), (1, 0), self.explain(r))
        self.assertIn("1 pin with no file for the platform", s["rest"], self.explain(r))
        self.assertIn(f"note: {req}:1: {NATIVE}==1.0: no wheel matches --platform linux_aarch64",
                      r.stderr, self.explain(r))
        self.assertEqual(self.upstream_gets(NATIVE_LINUX) + self.upstream_gets(NATIVE_WIN), [])
        self.assertEqual(len(self.upstream_gets(app)), 1)

        r = self.warm("-r", req, "--platform", "win_amd64", "--python-version", "3.11")
        self.assertEqual(r.returncode, 0, self.explain(r))
        self.assertEqual(self.summary(r)["files"], 2, self.explain(r))
        self.assertEqual(len(self.upstream_gets(NATIVE_WIN)), 1)
        self.assertEqual(self.upstream_gets(NATIVE_LINUX), [])

        # A newer glibc takes the manylinux2014 wheel; Python 3.10 takes no cp311 wheel.
        r = self.warm("-r", req, "--platform", "manylinux_2_28_x86_64", "--python-version", "3.10")
        self.assertEqual(r.returncode, 0, self.explain(r))
        self.assertIn("1 pin with no file for the platform", r.stdout, self.explain(r))
        self.assertEqual(self.upstream_gets(NATIVE_LINUX), [])
        r = self.warm("-r", req, "--platform", "manylinux_2_28_x86_64")
        self.assertEqual(r.returncode, 0, self.explain(r))
        self.assertEqual(len(self.upstream_gets(NATIVE_LINUX)), 1)
        self.assertEqual(len(self.upstream_gets(NATIVE_WIN)), 1)

        # No wheel runs on Python 2.7: the sdist is what pip there would build.
        util = self.write("util.txt", "pantry-demo-util==1.0\n")
        r = self.warm("-r", util, "--python-version", "2.7")
        self.assertEqual(r.returncode, 0, self.explain(r))
        self.assertEqual(self.summary(r)["files"], 1, self.explain(r))
        self.assertEqual(len(self.upstream_gets("Pantry_Demo.Util-1.0.tar.gz")), 1)

    def test_e_a_pin_of_a_yanked_release_is_warmed(self):
        req = self.write("yanked.txt", "pantry-demo-lib==1.2\n")
        r = self.warm("-r", req)
        self.assertEqual(r.returncode, 0, self.explain(r))
        self.assertEqual(self.summary(r)["files"], 1, self.explain(r))
        self.assertEqual(len(self.upstream_gets("pantry_demo_lib-1.2-py3-none-any.whl")), 1)

    def test_z_pip_installs_what_was_warmed_with_upstream_down(self):
        main = os.path.join(self.work, "reqs", "main.txt")
        self.assertTrue(os.path.exists(main), "test_a wrote it")
        self.nginx.stop()
        venv = os.path.join(self.work, "venv")
        subprocess.run([PYTHON, "-m", "venv", venv], check=True, env=clean_env())
        python = os.path.join(venv, "bin", "python")
        cmd = [python, "-m", "pip", "install", "--no-deps", "-r", main,
               "--index-url", self.pantry.index_url]
        r = subprocess.run(cmd, env=clean_env(), capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, f"{' '.join(cmd)}:\n{r.stdout}\n{r.stderr}\n"
                                          f"pantry log:\n{self.pantry.tail()}")
        r = subprocess.run([python, "-m", "pip", "list", "--format", "json"], env=clean_env(),
                           capture_output=True, text=True, check=True)
        got = {p["name"].lower().replace("_", "-").replace(".", "-"): p["version"]
               for p in json.loads(r.stdout)}
        for project, version in {"pantry-demo-app": "2.0", "pantry-demo-lib": "1.1",
                                 "pantry-demo-util": "1.0"}.items():
            self.assertEqual(got.get(project), version, got)
        # The warmed sdist too comes from pantry alone.
        page = json.loads(get(self.pantry.url("/simple/pantry-demo-util/"),
                              {"Accept": "application/vnd.pypi.simple.v1+json"})[2])
        sdist = next(f for f in page["files"] if f["filename"] == "Pantry_Demo.Util-1.0.tar.gz")
        status, _, body = get(self.pantry.url(sdist["url"]))
        self.assertEqual(status, 200, body[:300])
        self.assertEqual(len(body), sdist["size"])


if __name__ == "__main__":
    PANTRY = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
