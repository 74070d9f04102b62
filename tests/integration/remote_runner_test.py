#!/usr/bin/python3
"""A remote runner (`pantry runner`) in a second process with its own data dir and runner places,
taking jobs from a coordinator (`pantry serve` with one built-in slot and ci.runner_timeout 2s),
on the busybox image (tests/fixtures/make_oci_images.py) pushed to the coordinator's hosted
local/ repositories, which the runner pulls through its own pantry as `coordinator/local/...`.

A first pipeline's long job holds the built-in slot; the runner takes the next pipeline's job
(its `runner` is the runner token's name) and is killed with SIGKILL while the job runs. The
coordinator re-queues the job once, when the runner has been silent for 2 s; it completes on the
built-in runner (attempts 2) once the first pipeline is cancelled. The killed runner's container
is swept by the runner itself when it starts again. Then a job on the runner writes a JUnit report
and a malformed one into its PANTRY_JUNIT: the results reach the coordinator's test history
(POST /api/v1/runners/jobs/<id>/tests) and the malformed file is a line in the job's log; its
image pull through the runner's pantry comes with its finish report, in the job's cache counts.
Needs root.

Usage: remote_runner_test.py PANTRY_BINARY
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))

import daemons  # noqa: E402
import make_oci_images  # noqa: E402
import nginx_pypi  # noqa: E402
from pantry_serve import Pantry, free_port, get  # noqa: E402

PANTRY = None
RUNC = "/usr/sbin/runc"
TIMEOUT = 120
PUSH_TOKEN = "7d1c5a0e9b2f4c6e8a1d3f5b"
SUBMIT_TOKEN = "submit-token-0123456789abcdef"
RUNNER_TOKEN = "runner-token-0123456789abcdef"


def run(cmd, timeout=TIMEOUT, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


def described(r):
    return f"exit {r.returncode}\n--- stdout:\n{r.stdout}\n--- stderr:\n{r.stderr}"


def places(ident, who):
    return {"runc_root": f"/run/pantry-remote-test/{ident}/{who}/runc",
            "state_dir": f"/run/pantry-remote-test/{ident}/{who}/containers",
            "cgroup_parent": f"pantry-remote-test-{ident}-{who}"}


def runner_yaml(p, layers):
    return f"""runner:
  runc_root: {p["runc_root"]}
  state_dir: {p["state_dir"]}
  cgroup_parent: {p["cgroup_parent"]}
  layers: {{ dir: {layers} }}
  defaults: {{ timeout: 2m }}
"""


def containers(runc_root):
    if not os.path.isdir(runc_root):
        return []
    r = run([RUNC, "--root", runc_root, "list", "--format", "json"])
    return json.loads(r.stdout or "null") or []


class RemoteRunner:
    """`pantry runner` in a process of its own, with a config file of its own."""

    def __init__(self, work, coordinator_url, ident):
        self.work = work
        self.places = places(ident, "remote")
        self.port = free_port()
        self.log_path = os.path.join(work, "runner.log")
        self.config = os.path.join(work, "runner.yaml")
        os.makedirs(work, exist_ok=True)
        with open(self.config, "w") as f:
            f.write(f"""listen: 127.0.0.1:{self.port}
data_dir: {work}/data
cache: {{ max_size: 1GiB }}
server: {{ threads: 2 }}
""" + runner_yaml(self.places, f"{work}/layers"))
        self.coordinator_url = coordinator_url
        self.process = None

    def start(self):
        self.log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            [PANTRY, "runner", "--coordinator", self.coordinator_url, "--token", RUNNER_TOKEN,
             "--slots", "1", "--config", self.config],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=nginx_pypi.die_with_parent)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"pantry runner exited with {self.process.returncode}:\n"
                                     + self.tail())
            try:
                if get(f"http://127.0.0.1:{self.port}/healthz", timeout=5)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("pantry runner did not answer /healthz:\n" + self.tail())

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.log.close()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process and not self.log.closed:
            self.log.close()
        return self.process.returncode if self.process else 0

    def tail(self, lines=40):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])


class RemoteRunnerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-remote-test-")
        cls.ident = os.path.basename(cls.work).replace("pantry-remote-test-", "")
        cls.coord_places = places(cls.ident, "coordinator")
        extra = runner_yaml(cls.coord_places, f"{cls.work}/coordinator/layers") + f"""ci:
  slots: 1
  runner_timeout: 2s
  tokens:
    - {{ name: dev, token: "{SUBMIT_TOKEN}", role: submit }}
    - {{ name: box, token: "{RUNNER_TOKEN}", role: runner }}
"""
        # No PyPI upstream answers: the jobs use the registry routes only.
        cls.coordinator = Pantry(PANTRY, os.path.join(cls.work, "coordinator"),
                                 f"http://127.0.0.1:{free_port()}/simple/",
                                 oci=("  hosted:\n    prefix: local/\n"
                                      f"    users: [ {{ name: ci, token: \"{PUSH_TOKEN}\" }} ]\n"),
                                 extra=extra)
        cls.runner = RemoteRunner(os.path.join(cls.work, "remote"), cls.coordinator.url(""),
                                  cls.ident)
        cls.ref = make_oci_images.push_busybox(cls.work, cls.coordinator.port, f"ci:{PUSH_TOKEN}")

    @classmethod
    def tearDownClass(cls):
        cls.runner.stop()
        cls.coordinator.stop()
        shutil.rmtree(f"/run/pantry-remote-test/{cls.ident}", ignore_errors=True)
        for p in (cls.coord_places, cls.runner.places):
            daemons.remove_cgroups(p["cgroup_parent"])
        shutil.rmtree(cls.work, ignore_errors=True)

    def api(self, path, method="GET"):
        req = urllib.request.Request(self.coordinator.url(path), method=method)
        req.add_header("Authorization", "Bearer " + SUBMIT_TOKEN)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def job_of(self, pid):
        status, text = self.api(f"/api/v1/pipelines/{pid}")
        self.assertEqual(status, 200, text)
        jobs = json.loads(text)["jobs"]
        self.assertEqual(len(jobs), 1, jobs)
        return jobs[0]

    def submit(self, name, script):
        d = os.path.join(self.work, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, ".pantry.yml"), "w") as f:
            f.write(f"image: {self.ref}\njobs:\n  {name}:\n    run: {json.dumps(script)}\n")
        r = run([PANTRY, "submit", "-C", d, "--project", name, "--url", self.coordinator.url(""),
                 "--token", SUBMIT_TOKEN])
        self.assertEqual(r.returncode, 0, described(r) + "\n" + self.coordinator.tail())
        m = re.search(r"/api/v1/pipelines/(\d+)", r.stdout)
        self.assertTrue(m, r.stdout)
        return m.group(1)

    def wait_for(self, what, check, seconds=TIMEOUT):
        deadline = time.monotonic() + seconds
        while True:
            got = check()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n--- coordinator:\n"
                                     f"{self.coordinator.tail()}\n--- runner:\n"
                                     f"{self.runner.tail()}")
            time.sleep(0.1)

    def test_killed_runner_job_is_requeued_once_and_completes_built_in(self):
        # The built-in slot is taken by a long job.
        long_pid = self.submit("long", "sleep 300")
        self.wait_for("the long job on the built-in runner",
                      lambda: self.job_of(long_pid)["state"] == "running")
        self.assertEqual(self.job_of(long_pid)["runner"], "built-in")

        self.runner.start()
        pid = self.submit("remote", "echo hello from $PANTRY_JOB_NAME; sleep 6; echo done")
        job = self.wait_for("the job on the remote runner",
                            lambda: (lambda j: j if j["state"] == "running" else None)(
                                self.job_of(pid)))
        self.assertEqual(job["runner"], "box", job)
        self.assertEqual(job["attempts"], 1, job)
        jid = job["id"]
        # Its container is up and its log reaches the coordinator (batched, within a second).
        self.wait_for("the remote job's first line",
                      lambda: "hello from remote" in self.api(f"/api/v1/jobs/{jid}/log")[1],
                      seconds=30)
        log = self.api(f"/api/v1/jobs/{jid}/log")[1]
        self.assertIn("on runner", log)
        self.wait_for("the remote job's container", lambda: [
            c for c in containers(self.runner.places["runc_root"]) if c.get("status") == "running"],
            seconds=10)

        self.runner.kill()
        # Silent for 2 s: re-queued once; the built-in slot is still busy.
        job = self.wait_for("the job re-queued",
                            lambda: (lambda j: j if j["state"] == "queued" else None)(
                                self.job_of(pid)), seconds=30)
        self.assertIn("box", job["reason"], job)
        status, text = self.api(f"/api/v1/pipelines/{long_pid}/cancel", method="POST")
        self.assertEqual(status, 200, text)
        job = self.wait_for("the job's end",
                            lambda: (lambda j: j if j["state"] in ("passed", "failed", "cancelled")
                                     else None)(self.job_of(pid)))
        self.assertEqual(job["state"], "passed", job)
        self.assertEqual(job["attempts"], 2, job)
        self.assertEqual(job["runner"], "built-in", job)
        log = self.api(f"/api/v1/jobs/{jid}/log")[1]
        self.assertEqual(log.count("hello from remote"), 2, log)
        self.assertIn("done", log)

        # The built-in slot busy again before the runner is back, so that the next job can only
        # go to the runner (a runner that is up would race the built-in slot for this one).
        long_pid = self.submit("long", "sleep 300")
        self.wait_for("the long job on the built-in runner",
                      lambda: self.job_of(long_pid)["state"] == "running")
        self.assertEqual(self.job_of(long_pid)["runner"], "built-in")

        # The killed runner left its container behind (runc run --detach outlives pantry); the
        # runner sweeps its own places when it starts again.
        self.assertTrue(containers(self.runner.places["runc_root"]))
        self.runner.start()
        self.wait_for("the killed runner's container swept",
                      lambda: not containers(self.runner.places["runc_root"]), seconds=30)

        # Test results from the remote runner.
        report = ('<testsuite name="t"><testcase classname="t" name="remote_ok" file="t.py" '
                  'time="0.5"/><testcase classname="t" name="remote_bad" file="t.py" time="0.25">'
                  '<failure message="boom">boom</failure></testcase></testsuite>')
        pid = self.submit("reports", f"test -r \"$PANTRY_TEST_ORDER\"; "
                                     f"echo '{report}' > \"$PANTRY_JUNIT/report.xml\"; "
                                     f"echo '<testsuite' > \"$PANTRY_JUNIT/broken.xml\"")
        job = self.wait_for("the reporting job's end",
                            lambda: (lambda j: j if j["state"] in ("passed", "failed", "cancelled")
                                     else None)(self.job_of(pid)))
        log = self.api(f"/api/v1/jobs/{job['id']}/log")[1]
        self.assertEqual((job["state"], job["runner"]), ("passed", "box"), f"{job}\n{log}")
        self.assertIn("broken.xml", log)
        # The runner's pull of the image through its own pantry (the manifest and the config at
        # least), counted there and reported with the job's finish.
        pulled = job["cache"]["image"]
        self.assertGreaterEqual(sum(pulled[k]["requests"] for k in pulled), 2, job)
        self.assertRegex(log, r"tests: 2 tests in 1 JUnit files: 1 passed, 1 failed, 0 skipped, "
                              r"0 re-run, \d+\.\d{3} s; recorded")
        status, text = self.api("/api/v1/projects/reports/tests")
        self.assertEqual(status, 200, text)
        tests = {t["id"]: t for t in json.loads(text)["tests"]}
        self.assertEqual(sorted(tests), ["t.py::remote_bad", "t.py::remote_ok"], text)
        self.assertEqual(tests["t.py::remote_bad"]["last_outcome"], "failed", text)
        self.assertEqual(tests["t.py::remote_ok"]["seconds"], 0.5, text)
        status, text = self.api(f"/api/v1/pipelines/{long_pid}/cancel", method="POST")
        self.assertEqual(status, 200, text)
        self.assertEqual(self.runner.stop(), 0, self.runner.tail())


if __name__ == "__main__":
    PANTRY = sys.argv.pop(1)
    unittest.main(verbosity=2)
