#!/usr/bin/python3
"""`pantry run`: steps in containers of images named by digest, on the built-in runner.

A busybox-static image (tests/fixtures/make_oci_images.py) is pushed with skopeo to pantry's hosted
local/ repositories; `pantry run` then runs steps in it, first as the client of a running
`pantry serve` (which holds the data dir), and last with no serve, when `pantry run` starts pantry
in its own process on the same data dir. Checked: output and exit codes; the environment report;
a tag without a digest refused with the digest it resolves to; network isolated reaching pantry's
read-only routes at 127.0.0.1:8585 and nothing else (not a push route, not pantry's own port on
the host); secrets masked; OOM kills, timeouts, ^C; and nothing left behind in the runner's runc
root, mounts and cgroups after a cancel, or after pantry is SIGKILLed mid-step and restarted.

Usage: run_test.py PANTRY_BINARY
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))

import make_oci_images  # noqa: E402
from pantry_serve import Pantry, free_port  # noqa: E402

PANTRY = None
SKOPEO = "/usr/bin/skopeo"
RUNC = "/usr/sbin/runc"
STEP_TIMEOUT = 120
# The one user of oci.hosted.users, who pushes the test's image.
TOKEN = "7d1c5a0e9b2f4c6e8a1d3f5b"


def run(cmd, timeout=STEP_TIMEOUT, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


def described(r):
    return f"exit {r.returncode}\n--- stdout:\n{r.stdout}\n--- stderr:\n{r.stderr}"


class RunTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-run-test-")
        ident = os.path.basename(cls.work).replace("pantry-run-test-", "")
        cls.runc_root = f"/run/pantry-run-test/{ident}/runc"
        cls.state_dir = f"/run/pantry-run-test/{ident}/containers"
        cls.cgroup_parent = f"pantry-run-test-{ident}"
        cls.runner_yaml = f"""runner:
  runc_root: {cls.runc_root}
  state_dir: {cls.state_dir}
  cgroup_parent: {cls.cgroup_parent}
  layers: {{ dir: {cls.work}/layers }}
  defaults: {{ timeout: 2m }}
"""
        cls.oci_yaml = ("  hosted:\n    prefix: local/\n"
                        f"    users: [ {{ name: ci, token: \"{TOKEN}\" }} ]\n")
        os.makedirs(os.path.join(cls.work, "images"))
        cls.image = make_oci_images.build_busybox(os.path.join(cls.work, "images"), 1700000000)
        cls.pantry = cls.start_pantry()
        digest_file = os.path.join(cls.work, "digest")
        r = run([SKOPEO, "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds",
                 f"ci:{TOKEN}", "--digestfile", digest_file,
                 cls.image["source"], f"docker://127.0.0.1:{cls.pantry.port}/local/busybox:1"])
        if r.returncode != 0:
            raise AssertionError("skopeo copy to pantry failed:\n" + described(r))
        with open(digest_file) as f:
            cls.digest = f.read().strip()
        cls.ref = f"local/busybox@{cls.digest}"

    @classmethod
    def start_pantry(cls):
        # No PyPI upstream answers: these steps use the registry routes only.
        return Pantry(PANTRY, cls.work, f"http://127.0.0.1:{free_port()}/simple/",
                      oci=cls.oci_yaml, extra=cls.runner_yaml)

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "pantry", None):
            cls.pantry.stop()
        leftovers = cls.leftovers()
        # A stopped pantry removes its (empty) parent cgroup too.
        leftovers["parent cgroups"] = [
            d for d in (os.path.join("/sys/fs/cgroup", h, cls.cgroup_parent)
                        for h in os.listdir("/sys/fs/cgroup")) if os.path.isdir(d)]
        for d in leftovers["parent cgroups"]:
            os.rmdir(d)
        # ... and its empty places (runc root, state dir).
        leftovers["places"] = [d for d in (cls.runc_root, cls.state_dir) if os.path.exists(d)]
        shutil.rmtree(os.path.dirname(cls.runc_root), ignore_errors=True)
        shutil.rmtree(cls.work, ignore_errors=True)
        if any(leftovers.values()):
            raise AssertionError(f"the runner left things behind: {leftovers}")

    @classmethod
    def leftovers(cls):
        """What the runner has in its runc root, under its state dir, and in its cgroups."""
        out = {"containers": [], "mounts": [], "cgroups": []}
        if os.path.isdir(cls.runc_root):
            r = run([RUNC, "--root", cls.runc_root, "list", "--quiet"])
            out["containers"] = r.stdout.split()
        with open("/proc/self/mountinfo") as f:
            out["mounts"] = [line.split()[4] for line in f
                             if line.split()[4].startswith(cls.state_dir)]
        for hierarchy in os.listdir("/sys/fs/cgroup"):
            d = os.path.join("/sys/fs/cgroup", hierarchy, cls.cgroup_parent)
            if os.path.isdir(d):
                out["cgroups"] += [os.path.join(d, e) for e in os.listdir(d)
                                   if os.path.isdir(os.path.join(d, e))]
        return out

    def wait_clean(self, seconds=15):
        deadline = time.monotonic() + seconds
        while True:
            left = self.leftovers()
            if not any(left.values()) or time.monotonic() > deadline:
                return left
            time.sleep(0.2)

    def pantry_run(self, *args, config=True, timeout=STEP_TIMEOUT):
        cmd = [PANTRY, "run"]
        if config:
            cmd += ["--config", self.pantry.config]
        return run(cmd + list(args), timeout=timeout)

    # ---- as the client of a running serve

    def test_output_and_exit_code(self):
        r = self.pantry_run("--image", self.ref, "--", "sh", "-c",
                            "echo out; echo err >&2; echo again; exit 3")
        self.assertEqual(r.returncode, 3, described(r))
        # One pipe for both streams: the order is the order of the writes.
        self.assertEqual(r.stdout, "out\nerr\nagain\n", described(r))
        self.assertIn(f"image: {self.ref}", r.stderr, described(r))
        self.assertIn("exit code 3", r.stderr, described(r))
        self.assertIn("runner: step", self.pantry.tail(200), "the serve ran the step")

    def test_image_command_and_environment(self):
        r = self.pantry_run("--image", self.ref, "--env", "GREETING=hi", "--", "sh", "-c",
                            'echo "$GREETING $PATH $PIP_INDEX_URL $PIP_NO_CACHE_DIR"; cat /etc/hostname')
        self.assertEqual(r.returncode, 0, described(r))
        self.assertEqual(r.stdout, "hi /bin http://127.0.0.1:8585/simple/ 1\npantry\n", described(r))
        self.assertIn("  GREETING=hi", r.stderr, described(r))
        self.assertIn("host: ", r.stderr, described(r))

    def test_separate_streams(self):
        r = self.pantry_run("--image", self.ref, "--separate-streams", "--no-report", "--",
                            "sh", "-c", "echo out; echo err >&2")
        self.assertEqual(r.returncode, 0, described(r))
        self.assertEqual(r.stdout, "out\n", described(r))
        self.assertIn("err\n", r.stderr, described(r))
        self.assertNotIn("image: ", r.stderr, described(r))

    def test_unpinned_tag_is_refused_with_its_digest(self):
        r = self.pantry_run("--image", "local/busybox:1", "--", "true")
        self.assertEqual(r.returncode, 125, described(r))
        self.assertIn(f"local/busybox:1@{self.digest}", r.stderr, described(r))
        r = self.pantry_run("--image", "local/busybox:1", "--allow-unpinned", "--", "true")
        self.assertEqual(r.returncode, 0, described(r))
        self.assertIn(f"image pinned: local/busybox@{self.digest}", r.stderr, described(r))

    def test_unknown_image_and_bad_options(self):
        r = self.pantry_run("--image", "local/none@sha256:" + "0" * 64, "--", "true")
        self.assertEqual(r.returncode, 125, described(r))
        self.assertIn("local/none", r.stderr, described(r))
        r = self.pantry_run("--image", self.ref, "--network", "bridge", "--", "true")
        self.assertEqual(r.returncode, 2, described(r))
        self.assertIn("--network bridge", r.stderr, described(r))
        r = self.pantry_run("--image", self.ref, "--", "no-such-command")
        self.assertEqual(r.returncode, 127, described(r))

    def test_isolated_network_reaches_only_read_only_routes(self):
        manifest = f"/v2/local/busybox/manifests/{self.digest}"
        script = (
            f"wget -q -O - http://127.0.0.1:8585{manifest} | grep -c schemaVersion; "
            "wget -q -O - --post-data x http://127.0.0.1:8585/v2/local/x/blobs/uploads/ "
            "  >/dev/null 2>&1 && echo push-allowed || echo push-refused; "
            f"wget -q -O - http://127.0.0.1:{self.pantry.port}{manifest} >/dev/null 2>&1 "
            "  && echo host-reachable || echo host-unreachable")
        r = self.pantry_run("--image", self.ref, "--no-report", "--", "sh", "-c", script)
        self.assertEqual(r.returncode, 0, described(r))
        self.assertEqual(r.stdout, "1\npush-refused\nhost-unreachable\n", described(r))
        # With --network none nothing answers at all; with host pantry's own port does.
        r = self.pantry_run("--image", self.ref, "--no-report", "--network", "none", "--", "sh",
                            "-c", f"wget -q -O - http://127.0.0.1:8585{manifest} 2>/dev/null || echo none")
        self.assertEqual(r.stdout, "none\n", described(r))
        r = self.pantry_run("--image", self.ref, "--no-report", "--network", "host", "--", "sh",
                            "-c", f"wget -q -O - http://127.0.0.1:{self.pantry.port}{manifest} "
                                  "| grep -c schemaVersion")
        self.assertEqual(r.stdout, "1\n", described(r))

    def test_secret_is_a_file_and_never_in_the_log(self):
        secret = os.path.join(self.work, "token")
        with open(secret, "w") as f:
            f.write("s3cr3t-v4lue-0123\n")
        r = self.pantry_run("--image", self.ref, "--secret", f"pypi_token={secret}",
                            "--env", "API_TOKEN=visible-in-env-only", "--", "sh", "-c",
                            "cat /run/secrets/pypi_token; env | grep -c s3cr3t || true")
        self.assertEqual(r.returncode, 0, described(r))
        self.assertNotIn("s3cr3t", r.stdout + r.stderr, described(r))
        self.assertIn("0\n", r.stdout, "the secret is not in the environment: " + described(r))
        self.assertIn("  API_TOKEN=[masked]", r.stderr, described(r))

    def test_memory_limit_oom_kill(self):
        # The inner shell is OOM-killed; the outer one exits 0 all the same.
        r = self.pantry_run("--image", self.ref, "--no-report", "--memory", "16MiB",
                            "--tmpfs-size", "0", "--", "sh", "-c",
                            "sh -c 'x=$(head -c 100000000 /dev/zero | tr \"\\0\" a)'; exit 0")
        self.assertEqual(r.returncode, 137, described(r))
        self.assertIn("OOM-killed", r.stderr, described(r))

    def test_timeout(self):
        r = self.pantry_run("--image", self.ref, "--no-report", "--timeout", "1s", "--",
                            "sh", "-c", "sleep 60")
        self.assertEqual(r.returncode, 124, described(r))
        # Killed at the timeout, not waited for (the exit code says so; no clock is asserted).
        self.assertIn(": timed out in ", r.stderr, described(r))
        self.assertEqual(self.wait_clean(), {"containers": [], "mounts": [], "cgroups": []})

    def test_interrupt_cancels_and_cleans_up(self):
        p = subprocess.Popen([PANTRY, "run", "--config", self.pantry.config, "--image", self.ref,
                              "--no-report", "--", "sh", "-c", "echo started; sleep 600"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.assertEqual(p.stdout.readline(), "started\n")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 130, f"{out}\n{err}")
        self.assertEqual(self.wait_clean(), {"containers": [], "mounts": [], "cgroups": []})

    # ---- a crash of the serve, then no serve at all (last: they restart and stop pantry)

    def test_y_sigkill_of_serve_then_restart_leaves_nothing(self):
        p = subprocess.Popen([PANTRY, "run", "--config", self.pantry.config, "--image", self.ref,
                              "--no-report", "--", "sh", "-c", "echo started; sleep 600"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            self.assertEqual(p.stdout.readline(), "started\n")
            left = self.leftovers()
            self.assertEqual(len(left["containers"]), 1, left)
            self.pantry.process.kill()
            self.pantry.process.wait()
            p.communicate(timeout=30)
            self.assertNotEqual(p.returncode, 0)
        finally:
            if p.poll() is None:
                p.kill()
        # The step's container outlives a SIGKILLed pantry; the next start removes it.
        self.assertEqual(len(self.leftovers()["containers"]), 1)
        self.pantry.stop()
        type(self).pantry = self.start_pantry()
        self.assertEqual(self.wait_clean(), {"containers": [], "mounts": [], "cgroups": []})

    def test_z_in_process_when_no_serve_holds_the_data_dir(self):
        self.pantry.stop()
        self.assertFalse(os.path.exists(os.path.join(self.pantry.data_dir, "serve.json")),
                         "a stopped serve withdraws its control file")
        r = self.pantry_run("--image", self.ref, "--", "sh", "-c", "echo in-process")
        self.assertEqual(r.returncode, 0, described(r))
        self.assertEqual(r.stdout, "in-process\n", described(r))
        self.assertIn(f"image: {self.ref}", r.stderr, described(r))
        self.assertEqual(self.wait_clean(), {"containers": [], "mounts": [], "cgroups": []})


def main():
    global PANTRY
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    PANTRY = os.path.abspath(sys.argv.pop(1))
    return 0 if unittest.main(exit=False, verbosity=2).result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
