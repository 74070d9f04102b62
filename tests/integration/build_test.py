#!/usr/bin/python3
"""`pantry build`: a Containerfile on the Debian Python image (tests/fixtures/python_image.py),
built against a running `pantry serve`, with real peers.

The Containerfile makes a venv and pip-installs pantry-demo-app from the PyPI fixture (nginx)
through pantry, in a RUN step on network isolated; copies a small project; deletes a file of the
base image with `RUN rm`. Checked: a first build runs every step; an unchanged rebuild hits every
step and gives the same digest; a changed COPY source misses that step and the later ones only;
--no-cache runs every step and gives the same digest; the same file built in a second pantry with
a fresh data dir gives the same digest, the venv step included; the image runs under `pantry run`
and, pulled from pantry, under podman and under a dockerd of the test's own
(tests/fixtures/daemons.py), with the same output and without the deleted file;
`skopeo inspect` shows its config and history; a failing RUN names the line and the exit code;
a tag without a digest in FROM is refused with the digest.

Usage: build_test.py PANTRY_BINARY
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))

import daemons  # noqa: E402
import nginx_pypi  # noqa: E402
import python_image  # noqa: E402
from pantry_serve import Pantry  # noqa: E402

PANTRY = None
SKOPEO = "/usr/bin/skopeo"
PODMAN = "/usr/bin/podman"
TIMEOUT = 600
# What the built image's CMD prints: /usr/bin/pydoc3, in the base image, is removed by `RUN rm`.
EXPECTED_OUTPUT = "app 2.0\nlib 1.1\npydoc3 present: False\nhello from the image\n"
# The one user of oci.hosted.users, who pushes the base image (pantry build pushes with its own
# control token).
TOKEN = "7d1c5a0e9b2f4c6e8a1d3f5b"

MAIN_PY = """import importlib.metadata, os
print("app", importlib.metadata.version("pantry-demo-app"))
print("lib", importlib.metadata.version("pantry-demo-lib"))
print("pydoc3 present:", os.path.exists("/usr/bin/pydoc3"))
print(open("/app/message.txt").read().strip())
"""


def run(cmd, timeout=TIMEOUT, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


def described(r):
    return f"exit {r.returncode}\n--- stdout:\n{r.stdout}\n--- stderr:\n{r.stderr}"


def outcomes(stdout):
    """[(outcome, instruction)] from pantry build's step lines "[1/3] miss   0.123 s  RUN …"."""
    out = []
    for line in stdout.splitlines():
        if line.startswith("["):
            parts = line.split(None, 4)
            out.append((parts[1], parts[4]))
    return out


def image_digest(stdout):
    last = stdout.strip().splitlines()[-1]
    return last.rsplit("@", 1)[1]


class Site:
    """A pantry serve with hosted local/, the runner, and the PyPI fixture as upstream. IDENT
    names its runner's places outside WORK (runc root, state dir, cgroup parent): unique to this
    run, because the runner sweeps what it finds there when it starts."""

    def __init__(self, work, index_url, ident):
        self.work = work
        self.ident = ident
        self.places = daemons.RunnerPlaces("build-test", ident)
        self.cgroup_parent = self.places.cgroup_parent
        self.runner_yaml = f"""runner:
  runc_root: {self.places.run_dir}/runc
  state_dir: {self.places.var_dir}/containers
  cgroup_parent: {self.cgroup_parent}
  layers: {{ dir: {work}/layers }}
"""
        self.pantry = Pantry(PANTRY, work, index_url,
                             oci=("  hosted:\n    prefix: local/\n"
                                  f"    users: [ {{ name: ci, token: \"{TOKEN}\" }} ]\n"),
                             extra=self.runner_yaml)

    def stop(self):
        self.pantry.stop()
        self.places.remove()


class BuildTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-build-test-")
        cls.image = python_image.ensure_python_image()
        cls.nginx = nginx_pypi.start(os.path.join(cls.work, "upstream"), build=True)
        cls.sites = []
        cls.site = cls.new_site("a")
        cls.base = cls.push_base(cls.site)
        cls.context = os.path.join(cls.work, "context")
        os.makedirs(os.path.join(cls.context, "app"))
        with open(os.path.join(cls.context, "app", "main.py"), "w") as f:
            f.write(MAIN_PY)
        cls.set_message("hello from the image")
        with open(os.path.join(cls.context, ".containerignore"), "w") as f:
            f.write("app/*.log\n")
        with open(os.path.join(cls.context, "Containerfile"), "w") as f:
            f.write(f"""# syntax=docker/dockerfile:1
FROM {cls.base}
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --disable-pip-version-check pantry-demo-app
ENV PATH=/opt/venv/bin:$PATH
RUN rm /usr/bin/pydoc3
WORKDIR /app
COPY app/ /app/
CMD ["python3", "/app/main.py"]
""")

    @classmethod
    def new_site(cls, name):
        run_id = os.path.basename(cls.work).replace("pantry-build-test-", "")
        site = Site(os.path.join(cls.work, name), cls.nginx.index_url, f"{run_id}-{name}")
        cls.sites.append(site)
        return site

    @classmethod
    def push_base(cls, site):
        digest = python_image.push(cls.image["layout"], cls.image["tag"],
                                   f"127.0.0.1:{site.pantry.port}", "local/python",
                                   creds=f"ci:{TOKEN}")
        return f"local/python@{digest}"

    @classmethod
    def set_message(cls, text):
        with open(os.path.join(cls.context, "app", "message.txt"), "w") as f:
            f.write(text + "\n")

    @classmethod
    def tearDownClass(cls):
        for s in cls.sites:
            s.stop()
        cls.nginx.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    def build(self, *args, site=None, tag="local/app:1"):
        site = site or self.site
        r = run([PANTRY, "build", "--config", site.pantry.config, "-t", tag, *args, self.context])
        self.assertEqual(r.returncode, 0, described(r) + "\n--- pantry log:\n" + site.pantry.tail())
        return r

    def test_a_cold_then_unchanged_then_changed_copy(self):
        cold = self.build()
        steps = outcomes(cold.stdout)
        self.assertEqual([o for o, _ in steps], ["miss", "config", "miss", "config", "miss", "config"],
                         described(cold))
        digest = image_digest(cold.stdout)
        type(self).digest = digest

        warm = self.build()
        self.assertEqual([o for o, _ in outcomes(warm.stdout)],
                         ["hit", "config", "hit", "config", "hit", "config"], described(warm))
        self.assertEqual(image_digest(warm.stdout), digest)

        # A file the ignore rules exclude changes nothing.
        with open(os.path.join(self.context, "app", "debug.log"), "w") as f:
            f.write("noise\n")
        self.assertEqual(image_digest(self.build().stdout), digest)

        self.set_message("changed")
        changed = self.build(tag="local/app:2")
        self.assertEqual([o for o, _ in outcomes(changed.stdout)],
                         ["hit", "config", "hit", "config", "miss", "config"], described(changed))
        self.assertNotEqual(image_digest(changed.stdout), digest)
        self.set_message("hello from the image")
        self.assertEqual(image_digest(self.build().stdout), digest)

    def ran(self, needle):
        """How many steps the serve ran whose command contains `needle` (its log lines)."""
        return sum(1 for line in self.site.pantry.tail(100000).splitlines()
                   if "runner: step" in line and needle in line)

    def test_b_no_cache_gives_the_same_digest(self):
        pip_runs, rm_runs = self.ran("pip install"), self.ran("rm /usr/bin/pydoc3")
        r = self.build("--no-cache")
        self.assertEqual([o for o, _ in outcomes(r.stdout)],
                         ["miss", "config", "miss", "config", "miss", "config"], described(r))
        self.assertEqual(image_digest(r.stdout), self.digest)
        self.assertEqual((self.ran("pip install"), self.ran("rm /usr/bin/pydoc3")),
                         (pip_runs + 1, rm_runs + 1), "--no-cache runs every RUN step again")

    def pantry_run_output(self):
        """What the built image prints under `pantry run` (run once per class)."""
        if getattr(type(self), "pantry_output", None) is None:
            r = run([PANTRY, "run", "--config", self.site.pantry.config, "--image",
                     f"local/app@{self.digest}", "--no-report"])
            self.assertEqual(r.returncode, 0, described(r))
            type(self).pantry_output = r.stdout
        return self.pantry_output

    def test_c_runs_under_dockerd(self):
        """Pulled from pantry by a dockerd of the test's own and run with --network none: the
        same output as under `pantry run`, the file removed by `RUN rm` absent."""
        if not daemons.dockerd_available():
            self.skipTest("dockerd, docker, containerd or runc not installed (Debian packages "
                          "in scripts/debian-packages.txt)")
        expected = self.pantry_run_output()
        self.assertEqual(expected, EXPECTED_OUTPUT, "pantry run")
        host = f"127.0.0.1:{self.site.pantry.port}"
        image = f"{host}/local/app@{self.digest}"
        dockerd = daemons.Dockerd(os.path.join(self.work, "docker"), insecure_registries=[host],
                                  data_tmpfs="4g")
        try:
            pulled = run([daemons.DOCKER, "pull", "--quiet", image], env=dockerd.env)
            ran = run([daemons.DOCKER, "run", "--rm", "--network", "none", image],
                      env=dockerd.env) if pulled.returncode == 0 else None
        finally:
            left = dockerd.stop()
            log = dockerd.tail(15)
            daemons.wipe(dockerd.workdir)
        self.assertEqual(pulled.returncode, 0, described(pulled) + "\n--- dockerd log:\n" + log)
        self.assertEqual(ran.returncode, 0, described(ran) + "\n--- dockerd log:\n" + log)
        self.assertEqual(ran.stdout, expected, described(ran))
        self.assertEqual(left, [], "dockerd left these behind")

    def test_c_runs_under_pantry_run_and_podman(self):
        ref = f"local/app@{self.digest}"
        expected = self.pantry_run_output()
        self.assertEqual(expected, EXPECTED_OUTPUT, "pantry run")

        env = daemons.podman_env(os.path.join(self.work, "podman"))
        image = f"127.0.0.1:{self.site.pantry.port}/{ref}"
        pulled = run([PODMAN, "pull", "--tls-verify=false", image], env=env)
        self.assertEqual(pulled.returncode, 0, described(pulled))
        ran = run([PODMAN, "run", "--rm", image], env=env)
        run([PODMAN, "rmi", "-a", "-f"], env=env)
        run([PODMAN, "system", "reset", "--force"], env=env)
        self.assertEqual(ran.returncode, 0, described(ran))
        self.assertEqual(ran.stdout, expected, described(ran))

        inspect = run([SKOPEO, "inspect", "--tls-verify=false", "--config",
                       f"docker://127.0.0.1:{self.site.pantry.port}/{ref}"])
        self.assertEqual(inspect.returncode, 0, described(inspect))
        config = json.loads(inspect.stdout)
        self.assertEqual(config["config"]["Cmd"], ["python3", "/app/main.py"])
        self.assertEqual(config["config"]["WorkingDir"], "/app")
        created_by = [h.get("created_by", "") for h in config["history"]]
        self.assertTrue(any("pip install" in c for c in created_by), created_by)
        self.assertTrue(any("rm /usr/bin/pydoc3" in c for c in created_by), created_by)

    def test_d_fresh_data_dir_gives_the_same_digest(self):
        site = self.new_site("b")
        self.assertEqual(self.push_base(site), self.base)
        r = self.build(site=site)
        self.assertEqual([o for o, _ in outcomes(r.stdout)],
                         ["miss", "config", "miss", "config", "miss", "config"], described(r))
        self.assertEqual(image_digest(r.stdout), self.digest,
                         "two pantrys with fresh data dirs build the same image")
        # With no serve holding the data dir, pantry build starts pantry in its own process.
        site.pantry.stop()
        r = run([PANTRY, "build", "--config", site.pantry.config, "-t", "local/app:1",
                 self.context])
        self.assertEqual(r.returncode, 0, described(r))
        self.assertEqual([o for o, _ in outcomes(r.stdout)],
                         ["hit", "config", "hit", "config", "hit", "config"], described(r))
        self.assertEqual(image_digest(r.stdout), self.digest)

    def test_g_two_builds_of_one_key_at_once_run_it_once(self):
        ctx = os.path.join(self.work, "twice")
        os.makedirs(ctx, exist_ok=True)
        with open(os.path.join(ctx, "Containerfile"), "w") as f:
            f.write(f"FROM {self.base}\nRUN sleep 2 && echo built-once > /once.txt\n")
        cmd = [PANTRY, "build", "--config", self.site.pantry.config, ctx]
        procs = [subprocess.Popen(cmd + ["-t", f"local/twice:{i}"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for i in (1, 2)]
        results = [p.communicate(timeout=TIMEOUT) + (p.returncode,) for p in procs]
        for out, err, code in results:
            self.assertEqual(code, 0, f"{out}\n{err}")
        self.assertEqual(image_digest(results[0][0]), image_digest(results[1][0]))
        log = self.site.pantry.tail(2000)
        runs = [line for line in log.splitlines()
                if "runner: step" in line and "built-once" in line]
        self.assertEqual(len(runs), 1, "the RUN step ran once for both builds:\n" + "\n".join(runs))

    def test_e_errors(self):
        bad = os.path.join(self.work, "bad")
        os.makedirs(bad, exist_ok=True)
        with open(os.path.join(bad, "Containerfile"), "w") as f:
            f.write(f"FROM {self.base}\nRUN echo about to fail && exit 7\n")
        r = run([PANTRY, "build", "--config", self.site.pantry.config, "-t", "local/bad:1", bad])
        self.assertEqual(r.returncode, 1, described(r))
        self.assertIn("Containerfile:2: RUN", r.stderr, described(r))
        self.assertIn("exited with code 7", r.stderr, described(r))
        self.assertIn("about to fail", r.stderr, described(r))

        with open(os.path.join(bad, "Containerfile"), "w") as f:
            f.write("FROM local/python:latest\nRUN true\n")
        python_image.push(self.image["layout"], self.image["tag"],
                          f"127.0.0.1:{self.site.pantry.port}", "local/python",
                          creds=f"ci:{TOKEN}")
        r = run([PANTRY, "build", "--config", self.site.pantry.config, "-t", "local/bad:1", bad])
        self.assertEqual(r.returncode, 1, described(r))
        self.assertIn(f"local/python:latest@{self.base.split('@')[1]}", r.stderr, described(r))

    def test_f_report_names_python_pip_and_the_installed_distributions(self):
        r = run([PANTRY, "run", "--config", self.site.pantry.config, "--image",
                 f"local/app@{self.digest}", "--", "true"])
        self.assertEqual(r.returncode, 0, described(r))
        for line in ("python: Python 3.", "pip: pip ", "pip freeze:", "  pantry-demo-app==2.0",
                     "  PATH=/opt/venv/bin:", "  PIP_INDEX_URL=http://127.0.0.1:8585/simple/"):
            self.assertIn(line, r.stderr, described(r))


def main():
    global PANTRY
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    PANTRY = os.path.abspath(sys.argv.pop(1))
    return 0 if unittest.main(exit=False, verbosity=2).result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
