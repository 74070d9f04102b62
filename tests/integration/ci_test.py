#!/usr/bin/python3
"""CI pipelines end to end: `pantry submit` against a running `pantry serve` whose coordinator
runs the jobs on its built-in runner, on the Debian Python image (tests/fixtures/python_image.py),
with pip going through pantry to the PyPI fixture (nginx).

The project, made by the test: a tiny package with four test files, a flake8 `lint` job (which
keeps a report as its artifact), a `test` job with `parallel: 2` (each shard runs pytest on every
test file after pip-installing pantry-demo-lib through pantry; pantry's plugin keeps to the
shard's tests, so that every test runs in exactly one shard), and a `package` job that
needs both, finds lint's artifact in its workspace and builds a wheel with `python -m build`.
Checked: a green run (`--wait` exits 0, the wheel comes back with `pantry artifacts`, every job
passed, `pantry logs --grep` filters); a commit with a failing test (red, `--wait` exits 1, the
package job never starts, the failing assertion is in the shard's log); supersede (a slow
pipeline for patch 7 is cancelled within a second when another is submitted for patch 7, and its
container is gone); bad input (a malformed .pantry.yml exits 2 naming line and field and nothing
runs; an unknown token gets 401; a secret is masked in the log and absent from every answer); a
job printing 1 GB is cut at the configured limit; a coordinator killed with SIGKILL with jobs
queued and running: after the restart the queued job runs and the running one is re-queued once.
CiTestHistoryTest (issue 16's wiring): a project of 30 pytest tests, the one failing last in
pytest's own order; the first pipeline's JUnit report is recorded (`pantry tests` and the API
list every test, the failing one as failing), and in the second pipeline the failing test runs
first (its line comes before every other test's in the job's log). Then the CI measures, and a
job that pip-downloads three projects through its own listener twice (two pipelines): the first
fetches from upstream, the second is served from the cache alone (hit ratio 1.0), and the test's
own requests to the main port meanwhile count to no job.

Usage: ci_test.py PANTRY_BINARY
"""

import json
import os
import re
import shutil
import signal
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

import daemons  # noqa: E402
import nginx_pypi  # noqa: E402
import python_image  # noqa: E402
from pantry_serve import Pantry  # noqa: E402

PANTRY = None
TIMEOUT = 600
PUSH_TOKEN = "7d1c5a0e9b2f4c6e8a1d3f5b"
SUBMIT_TOKEN = "submit-token-0123456789abcdef"
READ_TOKEN = "read-token-0123456789abcdef"
SECRET_VALUE = "s3cr3t-value-that-must-not-leak"

SETUP_PY = """from setuptools import setup
setup(name="tiny", version="1.0", packages=["tiny"])
"""
TINY = """def add(a, b):
    return a + b
"""
TEST_FILE = """from tiny import add


def test_add_{n}():
    assert add({n}, 1) == {expected}
"""


def run(cmd, timeout=TIMEOUT, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


def described(r):
    return f"exit {r.returncode}\n--- stdout:\n{r.stdout}\n--- stderr:\n{r.stderr}"


class Site:
    """A pantry serve with hosted local/, the runner, the coordinator with two slots, and the PyPI
    fixture as upstream. IDENT names the runner's places outside WORK (see build_test.py)."""

    def __init__(self, work, index_url, ident, slots=2, port=None):
        self.work = work
        self.ident = ident
        self.index_url = index_url
        self.slots = slots
        self.places = daemons.RunnerPlaces("ci-test", ident)
        self.cgroup_parent = self.places.cgroup_parent
        os.makedirs(work, exist_ok=True)
        self.secret_file = os.path.join(work, "api_key")
        with open(self.secret_file, "w") as f:
            f.write(SECRET_VALUE + "\n")
        self.start(port)

    def start(self, port=None):
        extra = f"""runner:
  runc_root: {self.places.run_dir}/runc
  state_dir: {self.places.var_dir}/containers
  cgroup_parent: {self.cgroup_parent}
  layers: {{ dir: {self.work}/layers }}
ci:
  slots: {self.slots}
  tokens:
    - {{ name: dev, token: "{SUBMIT_TOKEN}", role: submit }}
    - {{ name: viewer, token: "{READ_TOKEN}", role: read }}
  secrets: {{ api_key: {self.secret_file} }}
  logs: {{ max_job: 1MiB }}
  quarantine: {{ history: ["{QUARANTINED_BY_CONFIG}"] }}
  quarantine_exit_passes: 2
"""
        self.pantry = Pantry(PANTRY, self.work, self.index_url,
                             oci=("  hosted:\n    prefix: local/\n"
                                  f"    users: [ {{ name: ci, token: \"{PUSH_TOKEN}\" }} ]\n"),
                             extra=extra, port=port)

    def url(self, path):
        return self.pantry.url(path)

    def api(self, path, method="GET", token=SUBMIT_TOKEN, body=None):
        req = urllib.request.Request(self.url(path), method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
        if token:
            req.add_header("Authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def api_json(self, path):
        status, text = self.api(path)
        if status != 200:
            raise AssertionError(f"GET {path}: {status} {text}\n{self.pantry.tail()}")
        return json.loads(text)

    def pantry_cmd(self, *args, timeout=TIMEOUT):
        return run([PANTRY, *args, "--url", self.url(""), "--token", SUBMIT_TOKEN],
                   timeout=timeout)

    def stop(self):
        self.pantry.stop()

    def clean(self):
        self.places.remove()


def pipeline_id(stdout):
    m = re.search(r"/api/v1/pipelines/(\d+)", stdout)
    if not m:
        raise AssertionError(f"no pipeline URL in: {stdout!r}")
    return m.group(1)


class CiBase(unittest.TestCase):
    """The site and the project helpers both halves share; its own tests are in the halves."""

    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-ci-test-")
        cls.image = python_image.ensure_python_image()
        cls.nginx = nginx_pypi.start(os.path.join(cls.work, "upstream"), build=True)
        run_id = os.path.basename(cls.work).replace("pantry-ci-test-", "")
        cls.site = Site(os.path.join(cls.work, "site"), cls.nginx.index_url, run_id)
        digest = python_image.push(cls.image["layout"], cls.image["tag"],
                                   f"127.0.0.1:{cls.site.pantry.port}", "local/python",
                                   creds=f"ci:{PUSH_TOKEN}")
        cls.base = f"local/python@{digest}"

    @classmethod
    def tearDownClass(cls):
        cls.site.stop()
        cls.site.clean()
        cls.nginx.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    def project(self, name, spec, failing=False):
        """A git work tree with the tiny package, its tests and `spec` as .pantry.yml."""
        d = os.path.join(self.work, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(os.path.join(d, "tiny"))
        os.makedirs(os.path.join(d, "tests"))
        with open(os.path.join(d, "setup.py"), "w") as f:
            f.write(SETUP_PY)
        with open(os.path.join(d, "tiny", "__init__.py"), "w") as f:
            f.write(TINY)
        for n in range(1, 5):
            expected = n + 1 if not (failing and n == 3) else n + 2
            with open(os.path.join(d, "tests", f"test_{n}.py"), "w") as f:
                f.write(TEST_FILE.format(n=n, expected=expected))
        with open(os.path.join(d, ".pantry.yml"), "w") as f:
            f.write(spec)
        with open(os.path.join(d, ".gitignore"), "w") as f:
            f.write("build/\n*.egg-info/\n")
        env = dict(os.environ, GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
        for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"]):
            r = run(cmd, cwd=d, env=env)
            self.assertEqual(r.returncode, 0, described(r))
        return d

    def pipeline_spec(self):
        return f"""image: {self.base}
jobs:
  lint:
    run:
      - python3 -m flake8 --max-line-length 100 tiny tests | tee lint-report.txt
    artifacts: [lint-report.txt]
  test:
    parallel: 2
    run:
      - python3 -m venv --system-site-packages /tmp/venv
      - /tmp/venv/bin/pip install --disable-pip-version-check pantry-demo-lib
      - /tmp/venv/bin/python -c "import importlib.metadata as m; print('lib', m.version('pantry-demo-lib'))"
      - echo "shard $PANTRY_SHARD of $PANTRY_SHARDS"
      - /tmp/venv/bin/python -m pytest -v tests
  package:
    needs: [lint, test]
    run:
      - test -f lint-report.txt
      - python3 -m build --no-isolation --wheel --outdir dist .
    artifacts: [dist]
"""

    def jobs_of(self, pid):
        return {j["name"]: j for j in self.site.api_json(f"/api/v1/pipelines/{pid}")["jobs"]}

    def ran_in(self, job):
        """The test ids a job's log shows with their first outcome (pytest -v)."""
        status, text = self.site.api(f"/api/v1/jobs/{job['id']}/log")
        self.assertEqual(status, 200, text)
        ran = {}
        for m in re.finditer(r"(tests/test_\w+\.py::\S+) (PASSED|FAILED)", text):
            ran.setdefault(m.group(1), m.group(2))
        return ran


class CiTest(CiBase):
    """Pipelines green and red, bad input, a log cut at its limit."""

    def test_a_green_then_red(self):
        d = self.project("tiny", self.pipeline_spec())
        r = self.site.pantry_cmd("submit", "-C", d, "--project", "tiny", "--patch", "1",
                                 "--wait", "--no-color")
        self.assertEqual(r.returncode, 0, described(r) + "\n" + self.site.pantry.tail())
        pid = pipeline_id(r.stdout)
        self.assertIn("lint", r.stdout)
        self.assertIn("shard 1 of 2", r.stdout)
        self.assertIn("shard 2 of 2", r.stdout)
        self.assertRegex(r.stdout, r"test 1/2 \| lib 1\.\d")
        jobs = self.jobs_of(pid)
        self.assertEqual(sorted(jobs), ["lint", "package", "test 1/2", "test 2/2"], jobs)
        self.assertEqual({n: j["state"] for n, j in jobs.items()},
                         {n: "passed" for n in jobs}, jobs)

        out = os.path.join(self.work, "artifacts")
        a = self.site.pantry_cmd("artifacts", str(jobs["package"]["id"]), "-o", out)
        self.assertEqual(a.returncode, 0, described(a))
        wheels = os.listdir(os.path.join(out, "dist"))
        self.assertEqual(wheels, ["tiny-1.0-py3-none-any.whl"], wheels)

        logs = self.site.pantry_cmd("logs", str(jobs["test 1/2"]["id"]), "--grep", "PASSED")
        self.assertEqual(logs.returncode, 0, described(logs))
        lines = logs.stdout.splitlines()
        self.assertTrue(lines and all("PASSED" in line for line in lines), logs.stdout)
        listed = self.site.pantry_cmd("jobs", "--project", "tiny")
        self.assertEqual(listed.returncode, 0, described(listed))
        self.assertIn("package", listed.stdout)
        # The shards split the tests: each test ran in exactly one of them.
        shards = [self.ran_in(jobs[f"test {k}/2"]) for k in (1, 2)]
        self.assertEqual(sorted([*shards[0], *shards[1]]),
                         [f"tests/test_{n}.py::test_add_{n}" for n in range(1, 5)], shards)

        # The same project with test_3 failing: red, and package never starts.
        d = self.project("tiny", self.pipeline_spec(), failing=True)
        r = self.site.pantry_cmd("submit", "-C", d, "--project", "tiny", "--patch", "2",
                                 "--wait", "--no-color")
        self.assertEqual(r.returncode, 1, described(r))
        pid = pipeline_id(r.stdout)
        jobs = self.jobs_of(pid)
        failed = [n for n, j in jobs.items() if j["state"] == "failed"]
        # The shard that ran test_3 (the split comes from the first run's durations).
        holder = [f"test {k}/2" for k in (1, 2)
                  if "tests/test_3.py::test_add_3" in self.ran_in(jobs[f"test {k}/2"])]
        self.assertEqual(len(holder), 1, jobs)
        self.assertEqual(failed, holder, jobs)
        self.assertIn(jobs["package"]["state"], ("cancelled", "skipped"), jobs)
        self.assertEqual(jobs["package"]["attempts"], 0, jobs)
        log = self.site.pantry_cmd("logs", str(jobs[holder[0]]["id"]))
        self.assertIn("assert 4 == 5", log.stdout, log.stdout[-3000:])

    def test_c_bad_input(self):
        bad = self.project("bad", f"""image: {self.base}
jobs:
  lint:
    run: true
    parallel: lots
    needz: [x]
""")
        r = self.site.pantry_cmd("submit", "-C", bad, "--project", "bad")
        self.assertEqual(r.returncode, 2, described(r))
        self.assertIn(".pantry.yml:5", r.stderr)
        self.assertIn("parallel", r.stderr)
        self.assertIn("needs", r.stderr)  # the suggestion for needz
        cycle = self.project("cycle", f"""image: {self.base}
jobs:
  a: {{ run: "true", needs: [b] }}
  b: {{ run: "true", needs: [a] }}
""")
        r = self.site.pantry_cmd("submit", "-C", cycle, "--project", "bad")
        self.assertEqual(r.returncode, 2, described(r))
        self.assertIn("cycle", r.stderr)
        unpinned = self.project("unpinned", """image: local/python:latest
jobs:
  a: { run: "true" }
""")
        r = self.site.pantry_cmd("submit", "-C", unpinned, "--project", "bad")
        self.assertEqual(r.returncode, 2, described(r))
        self.assertIn("digest", r.stderr)
        listed = self.site.api_json("/api/v1/pipelines?project=bad")
        self.assertEqual(listed["pipelines"], [], listed)

        status, _ = self.site.api("/api/v1/pipelines", token="not-a-token-of-this-pantry")
        self.assertEqual(status, 401)
        status, _ = self.site.api("/api/v1/pipelines", token=READ_TOKEN)
        self.assertEqual(status, 200)
        status, _ = self.site.api("/api/v1/pipelines", method="POST", token=READ_TOKEN, body={})
        self.assertEqual(status, 403)

        secret = self.project("secret", f"""image: {self.base}
jobs:
  peek:
    secrets: [api_key]
    run: |
      cat /run/secrets/api_key
      echo "env: $(env | grep -c s3cr3t || true)"
""")
        r = self.site.pantry_cmd("submit", "-C", secret, "--project", "secret", "--wait",
                                 "--no-color")
        self.assertEqual(r.returncode, 0, described(r))
        self.assertNotIn(SECRET_VALUE, r.stdout + r.stderr)
        self.assertIn("****", r.stdout)
        self.assertIn("env: 0", r.stdout)
        pid = pipeline_id(r.stdout)
        for path in (f"/api/v1/pipelines/{pid}", "/api/v1/jobs", "/api/v1/pipelines"):
            status, text = self.site.api(path)
            self.assertEqual(status, 200, text)
            self.assertNotIn(SECRET_VALUE, text, path)
        job = self.jobs_of(pid)["peek"]["id"]
        status, text = self.site.api(f"/api/v1/jobs/{job}/log")
        self.assertNotIn(SECRET_VALUE, text)

    def test_d_endless_output_is_cut(self):
        loud = self.project("loud", f"""image: {self.base}
jobs:
  loud:
    run: yes 'a line that repeats' | head -c 1000000000
""")
        r = self.site.pantry_cmd("submit", "-C", loud, "--project", "loud", "--wait",
                                 "--no-color")
        pid = pipeline_id(r.stdout)
        job = self.jobs_of(pid)["loud"]["id"]
        status, text = self.site.api(f"/api/v1/jobs/{job}/log")
        self.assertEqual(status, 200)
        self.assertLess(len(text), 2 * 1024 * 1024, text[-500:])
        self.assertRegex(text, r"cut at")


class CiLifecycleTest(CiBase):
    """Supersede, a restart, the image build job, git sources."""

    def test_b_supersede(self):
        slow = self.project("slow", f"""image: {self.base}
jobs:
  slow:
    run: sleep 300
""")
        r = self.site.pantry_cmd("submit", "-C", slow, "--project", "sup", "--patch", "7")
        self.assertEqual(r.returncode, 0, described(r))
        first = pipeline_id(r.stdout)
        deadline = time.monotonic() + 120
        while self.jobs_of(first)["slow"]["state"] != "running":
            self.assertLess(time.monotonic(), deadline, self.jobs_of(first))
            time.sleep(0.1)
        time.sleep(1)  # the container is up
        quick = self.project("quick", f"""image: {self.base}
jobs:
  quick:
    run: echo quick
""")
        r = self.site.pantry_cmd("submit", "-C", quick, "--project", "sup", "--patch", "7")
        self.assertEqual(r.returncode, 0, described(r))
        second = pipeline_id(r.stdout)
        p = self.site.api_json(f"/api/v1/pipelines/{first}")
        self.assertEqual(p["state"], "cancelled", p)
        self.assertEqual(p["superseded_by"], int(second), p)
        # Its container is killed: the job's process is gone from the runner's runc root soon.
        deadline = time.monotonic() + 10
        while True:
            ls = run(["runc", "--root", f"{self.site.places.run_dir}/runc", "list",
                      "--format", "json"])
            running = [c for c in json.loads(ls.stdout or "null") or []
                       if c.get("status") == "running"]
            if not running:
                break
            self.assertLess(time.monotonic(), deadline, running)
            time.sleep(0.1)
        metrics = self.site.api("/metrics", token=None)[1]
        self.assertRegex(metrics, r'pantry_ci_superseded_total\{project="sup"\} 1')

    def test_e_restart_requeues(self):
        spec = f"""image: {self.base}
jobs:
  first: {{ run: "sleep 4; echo first done" }}
  second: {{ run: "echo second done" }}
  third: {{ run: "echo third done", needs: [first] }}
"""
        d = self.project("restart", spec)
        r = self.site.pantry_cmd("submit", "-C", d, "--project", "restart")
        self.assertEqual(r.returncode, 0, described(r))
        pid = pipeline_id(r.stdout)
        deadline = time.monotonic() + 120
        while self.jobs_of(pid)["first"]["state"] != "running":
            self.assertLess(time.monotonic(), deadline, self.jobs_of(pid))
            time.sleep(0.05)
        port = self.site.pantry.port
        self.site.pantry.process.send_signal(signal.SIGKILL)
        self.site.pantry.process.wait()
        self.site.start(port=port)
        deadline = time.monotonic() + 180
        while self.site.api_json(f"/api/v1/pipelines/{pid}")["state"] == "running":
            self.assertLess(time.monotonic(), deadline, self.jobs_of(pid))
            time.sleep(0.2)
        jobs = self.jobs_of(pid)
        self.assertEqual({n: j["state"] for n, j in jobs.items()},
                         {"first": "passed", "second": "passed", "third": "passed"}, jobs)
        self.assertEqual(jobs["first"]["attempts"], 2, jobs)
        self.assertEqual(jobs["third"]["attempts"], 1, jobs)
        log = self.site.api(f"/api/v1/jobs/{jobs['first']['id']}/log")[1]
        self.assertIn("first done", log)

    def test_f_image_built_from_containerfile(self):
        spec = """build: { file: ci/Containerfile, context: ci }
jobs:
  check:
    run: cat /marker; python3 -c "print('python in the built image')"
"""
        d = self.project("built", spec)
        os.makedirs(os.path.join(d, "ci"))
        with open(os.path.join(d, "ci", "Containerfile"), "w") as f:
            f.write(f"FROM {self.base}\nCOPY marker /marker\n")
        with open(os.path.join(d, "ci", "marker"), "w") as f:
            f.write("made by the pipeline's image build\n")
        images = []
        for attempt in range(2):
            r = self.site.pantry_cmd("submit", "-C", d, "--project", "built", "--wait",
                                     "--no-color")
            self.assertEqual(r.returncode, 0, described(r) + "\n" + self.site.pantry.tail())
            self.assertIn("made by the pipeline's image build", r.stdout)
            self.assertIn("python in the built image", r.stdout)
            jobs = self.jobs_of(pipeline_id(r.stdout))
            self.assertEqual(sorted(jobs), ["check", "image"], jobs)
            self.assertTrue(jobs["image"]["image"].startswith("local/ci/built@sha256:"), jobs)
            self.assertEqual(jobs["check"]["image"], jobs["image"]["image"], jobs)
            images.append(jobs["image"]["image"])
            # An unchanged tree is not sent twice.
            self.assertIn("in pantry already" if attempt else "sent,", r.stderr, r.stderr)
        # The second pipeline's build is all cache hits: the same image.
        self.assertEqual(images[0], images[1])

    def test_g_git_source(self):
        """A pipeline of a commit the runner fetches itself (git daemon on loopback); a second
        commit fetches only what is new into the same mirror; a file:// URL is refused."""
        repo = self.project("fromgit", f"""image: {self.base}
jobs:
  show: {{ run: "cat version.txt; echo; cat $PANTRY_TEST_ORDER; echo" }}
""")
        env = dict(os.environ, GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")

        def commit(text):
            with open(os.path.join(repo, "version.txt"), "w") as f:
                f.write(text + "\n")
            for cmd in (["git", "add", "-A"],
                        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", text]):
                r = run(cmd, cwd=repo, env=env)
                self.assertEqual(r.returncode, 0, described(r))
            return run(["git", "rev-parse", "HEAD"], cwd=repo, env=env).stdout.strip()

        port = nginx_pypi.free_port()
        daemon = subprocess.Popen(
            ["git", "daemon", "--export-all", "--reuseaddr", f"--base-path={self.work}",
             "--listen=127.0.0.1", f"--port={port}", self.work],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            preexec_fn=nginx_pypi.die_with_parent)
        try:
            deadline = time.monotonic() + 10
            while run(["git", "ls-remote", f"git://127.0.0.1:{port}/fromgit"],
                      env=env).returncode != 0:
                self.assertLess(time.monotonic(), deadline, "git daemon did not start")
                time.sleep(0.1)
            url = f"git://127.0.0.1:{port}/fromgit"
            base = []
            for text in ("first version", "second version"):
                sha = commit(text)
                # The second is submitted with the first as its base: the order file names the
                # file changed between them.
                r = self.site.pantry_cmd("submit", "-C", repo, "--project", "fromgit", "--git",
                                         url, "--commit", sha, *base, "--wait", "--no-color")
                self.assertEqual(r.returncode, 0, described(r) + "\n" + self.site.pantry.tail())
                self.assertIn(f"{url} at {sha}", r.stdout)
                self.assertIn(text, r.stdout)
                changed = '"changed_files":["version.txt"]' if base else '"changed_files":[]'
                self.assertIn(changed, r.stdout)
                base = ["--base", sha]
        finally:
            daemon.terminate()
            daemon.wait()
        sha = run(["git", "rev-parse", "HEAD"], cwd=repo, env=env).stdout.strip()
        r = self.site.pantry_cmd("submit", "-C", repo, "--project", "fromgit", "--git",
                                 f"file://{repo}", "--commit", sha, "--wait", "--no-color")
        self.assertEqual(r.returncode, 1, described(r))
        jobs = self.jobs_of(pipeline_id(r.stdout))
        self.assertIn("file", jobs["show"]["reason"], jobs)


HISTORY_TESTS = {
    # 28 passing tests over three files (one slow enough to be the slowest), and test_zulu.py.
    "tests/test_alpha.py": "".join(f"def test_alpha_{n}():\n    assert {n} + 1 == {n + 1}\n\n\n"
                                   for n in range(10)),
    "tests/test_beta.py": "import pytest\n\n\n@pytest.mark.parametrize('n', range(10))\n"
                          "def test_beta(n):\n    assert n * 2 == n + n\n",
    "tests/test_gamma.py": "import time\n\n\ndef test_gamma_slow():\n    time.sleep(0.3)\n\n\n" +
                           "".join(f"def test_gamma_{n}():\n    assert str({n}) == '{n}'\n\n\n"
                                   for n in range(7)),
    # pytest runs this file last and this test last in it.
    "tests/test_zulu.py": "def test_zulu_ok():\n    assert True\n\n\n"
                          "def test_zulu_fails():\n    assert 2 + 2 == 5\n",
}
FAILING = "tests/test_zulu.py::test_zulu_fails"
# In the site's ci.quarantine; it passes, so it leaves after ci.quarantine_exit_passes (2) runs.
QUARANTINED_BY_CONFIG = "tests/test_zulu.py::test_zulu_ok"
TEST_LINE = re.compile(r"(tests/test_\w+\.py::\S+) (PASSED|FAILED)")


class CiTestHistoryTest(CiBase):
    """A job's JUnit results in the project's test history, and its order planned from it."""

    def spec_project(self, name, spec, files=None):
        """A directory `name` with `files` (path -> text) and `spec` as its .pantry.yml."""
        d = os.path.join(self.work, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for path, text in (files or {}).items():
            os.makedirs(os.path.dirname(os.path.join(d, path)), exist_ok=True)
            with open(os.path.join(d, path), "w") as f:
                f.write(text)
        with open(os.path.join(d, ".pantry.yml"), "w") as f:
            f.write(spec)
        return d

    def history_project(self, job_keys=""):
        return self.spec_project("history", f"""image: {self.base}
jobs:
  test:
    run:
      - test -d "$PANTRY_JUNIT" && test -r "$PANTRY_TEST_ORDER" && echo "plugins=$PYTEST_PLUGINS"
      - python3 -m pytest -v -p no:cacheprovider tests
{job_keys}""", HISTORY_TESTS)

    def job_log(self, pid):
        job = self.jobs_of(pid)["test"]["id"]
        status, text = self.site.api(f"/api/v1/jobs/{job}/log")
        self.assertEqual(status, 200, text)
        return text

    def test_h_results_recorded_then_failing_test_first(self):
        d = self.history_project()
        r = self.site.pantry_cmd("submit", "-C", d, "--project", "history", "--patch", "1",
                                 "--wait", "--no-color")
        self.assertEqual(r.returncode, 1, described(r) + "\n" + self.site.pantry.tail())
        log = self.job_log(pipeline_id(r.stdout))
        self.assertIn("plugins=pantry_pytest", log, log[-3000:])
        order = [m.group(1) for m in TEST_LINE.finditer(log)]
        self.assertEqual(len(set(order)), 30, order)
        # Without history, pytest's own order: the failing test is the last of the 30 (its
        # re-run at the session's end comes after).
        self.assertEqual(order[29], FAILING, order)
        self.assertRegex(log, r"tests: 30 tests in 1 JUnit files: 29 passed, 1 failed, "
                              r"0 skipped, 1 re-run, \d+\.\d{3} s; recorded")

        listed = self.site.pantry_cmd("tests", "--project", "history")
        self.assertEqual(listed.returncode, 0, described(listed))
        self.assertIn("project history: 30 tests in 1 runs, 1 failing in their last run",
                      listed.stdout)
        rows = {line.split()[-1]: line.split()[0] for line in listed.stdout.splitlines()[2:]}
        self.assertEqual(len(rows), 30, listed.stdout)
        self.assertEqual(rows[FAILING], "failed", listed.stdout)
        self.assertEqual({t for t, last in rows.items() if last != "passed"}, {FAILING},
                         listed.stdout)

        # The API, with the read token: every test, the failure, the slowest, no flaky test.
        status, text = self.site.api("/api/v1/projects/history/tests", token=READ_TOKEN)
        self.assertEqual(status, 200, text)
        answer = json.loads(text)
        self.assertEqual(answer["runs"], 1, answer)
        self.assertEqual(len(answer["tests"]), 30, answer)
        self.assertEqual([f["id"] for f in answer["recent_failures"]], [FAILING], answer)
        self.assertEqual(answer["recent_failures"][0]["rerun"], "failed", answer)
        self.assertIn("assert", answer["recent_failures"][0]["message"], answer)
        status, text = self.site.api("/api/v1/projects/history/tests?slowest=1", token=READ_TOKEN)
        self.assertEqual(status, 200, text)
        self.assertEqual([t["id"] for t in json.loads(text)["tests"]],
                         ["tests/test_gamma.py::test_gamma_slow"], text)
        flaky = self.site.pantry_cmd("tests", "--project", "history", "--flaky")
        self.assertEqual(flaky.returncode, 0, described(flaky))
        self.assertIn("0 flaky tests in 1 runs", flaky.stdout)
        status, text = self.site.api("/api/v1/projects/history/tests?slowest=many",
                                     token=READ_TOKEN)
        self.assertEqual(status, 400, text)
        self.assertIn("many", text)
        status, text = self.site.api("/api/v1/projects/history/tests", token=None)
        self.assertEqual(status, 401, text)

        # The second pipeline: the test that failed runs first.
        r = self.site.pantry_cmd("submit", "-C", d, "--project", "history", "--patch", "2",
                                 "--wait", "--no-color")
        self.assertEqual(r.returncode, 1, described(r))
        log = self.job_log(pipeline_id(r.stdout))
        order = [m.group(1) for m in TEST_LINE.finditer(log)]
        self.assertEqual(len(set(order)), 30, order)
        self.assertEqual(order[0], FAILING, order)
        listed = self.site.pantry_cmd("tests", "--project", "history")
        self.assertIn("30 tests in 2 runs", listed.stdout, described(listed))
        # The config's quarantined test passed its second run in a row: it leaves, and says so.
        self.assertIn(f"tests: {QUARANTINED_BY_CONFIG} leaves quarantine: it passed 2 runs in a "
                      "row (ci.quarantine_exit_passes: 2)", log)

    def test_i_quarantined_failure_runs_but_the_pipeline_is_green(self):
        d = self.history_project()
        # A read token may look, not change.
        status, text = self.site.api(f"/api/v1/projects/history/quarantine?test={FAILING}",
                                     method="PUT", token=READ_TOKEN)
        self.assertEqual(status, 403, text)
        status, text = self.site.api("/api/v1/projects/history/quarantine", method="PUT")
        self.assertEqual(status, 400, text)
        self.assertIn("?test=ID", text)
        put = self.site.pantry_cmd("tests", "--project", "history", "--quarantine", FAILING)
        self.assertEqual(put.returncode, 0, described(put))
        self.assertIn(f"{FAILING} is in quarantine", put.stdout)
        listed = self.site.pantry_cmd("tests", "--project", "history", "--quarantined")
        self.assertEqual(listed.returncode, 0, described(listed))
        self.assertIn("project history: 1 quarantined tests", listed.stdout)
        self.assertRegex(listed.stdout, r"api +\S+ \S+ +dev +" + re.escape(FAILING))

        r = self.site.pantry_cmd("submit", "-C", d, "--project", "history", "--patch", "3",
                                 "--wait", "--no-color")
        self.assertEqual(r.returncode, 0, described(r) + "\n" + self.site.pantry.tail())
        log = self.job_log(pipeline_id(r.stdout))
        order = [m.group(1) for m in TEST_LINE.finditer(log)]
        self.assertEqual(order[0], FAILING, order)
        self.assertIn(f"{FAILING} FAILED", log)
        self.assertIn(f"pantry: 1 quarantined test failed ({FAILING}); they do not fail the job",
                      log)
        # Still recorded as the failure it was, and shown as quarantined.
        status, text = self.site.api("/api/v1/projects/history/tests", token=READ_TOKEN)
        self.assertEqual(status, 200, text)
        answer = json.loads(text)
        self.assertEqual(answer["runs"], 3, answer)
        last = {t["id"]: t["last_outcome"] for t in answer["tests"]}
        self.assertEqual(last[FAILING], "failed", answer)
        self.assertEqual([(q["id"], q["source"], q["by"]) for q in answer["quarantined"]],
                         [(FAILING, "api", "dev")], answer)

        out = self.site.pantry_cmd("tests", "--project", "history", "--unquarantine", FAILING)
        self.assertEqual(out.returncode, 0, described(out))
        self.assertIn("project history: 0 quarantined tests", out.stdout)

    def test_j_fail_fast_stops_at_the_failure_that_runs_first(self):
        d = self.history_project(job_keys="    fail_fast: true\n")
        r = self.site.pantry_cmd("submit", "-C", d, "--project", "history", "--patch", "4",
                                 "--wait", "--no-color")
        self.assertEqual(r.returncode, 1, described(r) + "\n" + self.site.pantry.tail())
        log = self.job_log(pipeline_id(r.stdout))
        self.assertIn("PANTRY_FAIL_FAST=1", log)
        order = [m.group(1) for m in TEST_LINE.finditer(log)]
        # The failing test runs first, fails its immediate re-run, and nothing runs after it.
        self.assertEqual(order, [FAILING], order)
        self.assertIn(f"pantry: fail fast: {FAILING} failed and failed its re-run", log)
        self.assertRegex(log, r"tests: 1 tests in 1 JUnit files: 0 passed, 1 failed")

    def test_k_measures_after_the_pipelines(self):
        # After h (two red), i (green with a quarantined failure) and j (red, stopped fast).
        status, text = self.site.api("/api/v1/projects/history/measures", token=READ_TOKEN)
        self.assertEqual(status, 200, text)
        m = json.loads(text)
        self.assertEqual(m["project"], "history", m)
        self.assertEqual(m["pipelines"], len(m["each"]), m)
        self.assertGreaterEqual(m["failed"], 3, m)
        self.assertGreaterEqual(m["passed"], 1, m)
        self.assertGreater(m["median_time_to_red"], 0, m)
        self.assertGreater(m["median_time_to_green"], 0, m)
        self.assertGreaterEqual(m["median_queue_wait"], 0, m)
        self.assertGreater(m["cpu_seconds"], 0, m)
        # The always-failing test is no flake (it fails its re-run too): every red pipeline is
        # red for real, and the flaky rate is 0 of the 30 tests.
        self.assertEqual(m["tests"], 30, m)
        self.assertEqual(m["flaky_tests"], 0, m)
        self.assertEqual(m["flaky_test_rate"], 0, m)
        self.assertEqual(m["red_only_flaky"], 0, m)
        self.assertEqual(m["red_only_flaky_rate"], 0, m)
        for p in m["each"]:
            if p["state"] == "failed":
                self.assertIn(FAILING, p["failing_tests"], p)
                self.assertGreater(p["time_to_red"], 0, p)
                self.assertIsNone(p["time_to_green"], p)
        status, text = self.site.api("/api/v1/projects/history/measures?pipelines=1",
                                     token=READ_TOKEN)
        self.assertEqual(status, 200, text)
        self.assertEqual(len(json.loads(text)["each"]), 1, text)
        status, text = self.site.api("/api/v1/projects/history/measures?days=soon",
                                     token=READ_TOKEN)
        self.assertEqual(status, 400, text)
        self.assertIn("soon", text)
        status, text = self.site.api("/api/v1/projects/history/measures", token=None)
        self.assertEqual(status, 401, text)

        # /metrics: the same aggregate as gauges with the project label.
        metrics = self.site.api("/metrics", token=None)[1]
        red = re.search(r'pantry_ci_time_to_red_seconds\{project="history"\} (\S+)', metrics)
        self.assertIsNotNone(red, metrics[-3000:])
        self.assertAlmostEqual(float(red.group(1)), m["median_time_to_red"], places=3)
        self.assertRegex(metrics, r'pantry_ci_flaky_tests\{project="history"\} 0\b')
        self.assertRegex(metrics, r'pantry_ci_window_pipelines\{project="history"\} ' +
                         str(m["pipelines"]) + r"\b")
        self.assertRegex(metrics, r'pantry_ci_window_saved_seconds'
                                  r'\{project="history",by="stopping_early"\} ')

        out = self.site.pantry_cmd("ci", "measures", "--project", "history")
        self.assertEqual(out.returncode, 0, described(out))
        self.assertIn(f"project history: {m['pipelines']} pipelines", out.stdout)
        self.assertIn("time to red", out.stdout)

    def test_l_cache_hit_ratio_per_job(self):
        """A job's pip traffic through its own listener, first from upstream, then from the
        cache; requests on the main port meanwhile are nobody's job's."""
        d = self.spec_project("cachehit", f"""image: {self.base}
jobs:
  fetch:
    run:
      - python3 -m pip download --disable-pip-version-check --no-cache-dir -d /tmp/dl pantry-demo-app
      - ls /tmp/dl
""")

        def fetch_job(patch):
            r = self.site.pantry_cmd("submit", "-C", d, "--project", "cachehit", "--patch", patch,
                                     "--wait", "--no-color")
            self.assertEqual(r.returncode, 0, described(r) + "\n" + self.site.pantry.tail())
            self.assertIn("pantry_demo_app-2.0", r.stdout)
            job = self.jobs_of(pipeline_id(r.stdout))["fetch"]
            return pipeline_id(r.stdout), self.site.api_json(f"/api/v1/jobs/{job['id']}")

        first_pid, first = fetch_job("1")
        # Outside any job: the test's own requests to the main port while the second job runs.
        outside = {"sent": 0, "stop": False}

        def hammer():
            while not outside["stop"]:
                with urllib.request.urlopen(self.site.url("/simple/pantry-demo-app/"),
                                            timeout=30) as r:
                    r.read()
                outside["sent"] += 1
                time.sleep(0.05)

        t = threading.Thread(target=hammer)
        t.start()
        try:
            second_pid, second = fetch_job("2")
        finally:
            outside["stop"] = True
            t.join()
        self.assertGreater(outside["sent"], 0)

        one, two = first["cache"], second["cache"]
        detail = json.dumps({"first": one, "second": two}, indent=1)
        # Three index pages and three wheels (app, lib, util), the same in both jobs: none of the
        # main port's requests counted to the second.
        def total(split):
            return sum(split[k]["requests"] for k in ("cache", "upstream", "coalesced"))

        self.assertEqual(total(one["pypi"]), 6, detail)
        self.assertEqual(total(two["pypi"]), 6, detail)
        self.assertGreater(one["pypi"]["upstream"]["requests"], 0, detail)
        self.assertEqual(two["pypi"]["cache"]["requests"], 6, detail)
        self.assertGreater(two["pypi"]["cache"]["bytes"], 0, detail)
        # The image pull the runner made for each job (the manifest and config at least), from
        # pantry's hosted registry.
        self.assertGreaterEqual(one["image"]["cache"]["requests"], 2, detail)
        self.assertEqual(total(one["oci"]), 0, detail)
        self.assertLess(one["hit_ratio"], second["cache"]["hit_ratio"], detail)
        self.assertEqual(two["hit_ratio"], 1.0, detail)
        self.assertEqual(two["byte_hit_ratio"], 1.0, detail)

        # The measures: per pipeline (for a chart), the project's, /metrics and the CLI.
        m = self.site.api_json("/api/v1/projects/cachehit/measures")
        each = {str(p["pipeline"]): p for p in m["each"]}
        self.assertLess(each[first_pid]["cache_hit_ratio"], each[second_pid]["cache_hit_ratio"],
                        m)
        self.assertEqual(each[second_pid]["cache_hit_ratio"], 1.0, m)
        self.assertAlmostEqual(each[first_pid]["cache_hit_ratio"], one["hit_ratio"], msg=m)
        self.assertGreater(m["cache_hit_ratio"], each[first_pid]["cache_hit_ratio"], m)
        self.assertLess(m["cache_hit_ratio"], 1.0, m)
        metrics = self.site.api("/metrics", token=None)[1]
        ratio = re.search(r'pantry_ci_cache_hit_ratio\{project="cachehit"\} (\S+)', metrics)
        self.assertIsNotNone(ratio, metrics[-3000:])
        self.assertAlmostEqual(float(ratio.group(1)), m["cache_hit_ratio"], places=6)
        upstream = sum(one[p]["upstream"]["requests"] for p in ("pypi", "oci", "image"))
        self.assertRegex(metrics, r'pantry_ci_window_cache_requests'
                                  r'\{project="cachehit",from="upstream"\} ' +
                         str(upstream) + r"\b")
        out = self.site.pantry_cmd("ci", "measures", "--project", "cachehit")
        self.assertEqual(out.returncode, 0, described(out))
        self.assertIn(f"from pantry's cache {m['cache_hit_ratio'] * 100:.1f}% of the jobs' pip "
                      "and image requests", out.stdout)


if __name__ == "__main__":
    PANTRY = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
