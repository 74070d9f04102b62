#!/usr/bin/python3
"""The appliance image (deploy/appliance/) built with `pantry build` and run by podman and by
docker, with pip and skopeo pulling through it.

deploy/appliance/build.py packages the pantry binary under test: its base (mmdebstrap) is kept
in BUILD_DIR/appliance across runs, the image is built in a fresh data dir and written as a
docker-archive. Then, one runtime at a time, each with its state in the test's directory:

- the archive loads (`podman load`, `docker load` into a dockerd of the test's own), and the
  image's config says what deploy/appliance/Containerfile says (user pantry, volume, port,
  health check, entrypoint), and its embedded config passes `pantry config check` inside it;
- the image runs on the host's network with the test's config mounted over the embedded one
  (upstreams: the nginx PyPI fixture and a docker-registry with a busybox image) and its data
  in a named volume; its HEALTHCHECK (`pantry health`) turns healthy;
- it runs as uid 8585, not root, so its runner is off and says so in its log;
- pip installs pantry-demo-app and skopeo copies library/busybox:1.36 through it;
- stopped, it exits 0 (SIGTERM closes the cache);
- run as root and privileged (podman), its runner starts and `pantry run` in the container runs
  a step of the busybox image pulled through it.

Usage: appliance_test.py PANTRY_BINARY BUILD_DIR [unittest args]
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
import clients  # noqa: E402
import daemons  # noqa: E402
import make_oci_images as moi  # noqa: E402
import nginx_pypi  # noqa: E402
import oci_registry  # noqa: E402
from pantry_serve import free_port, get  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
BUILD_SCRIPT = os.path.join(ROOT, "deploy", "appliance", "build.py")
PODMAN = "/usr/bin/podman"
PANTRY = None
BUILD_DIR = None
USER_ID = "8585"
CONTAINER_TIMEOUT = 120
MAX_BUILD_DATA = 3 << 30


def run(cmd, timeout=600, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=timeout, **kw)


def du(path):
    return int(subprocess.run(["du", "-sb", "--", path], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def loaded_image(r):
    """The name `podman load` or `docker load` gave the image ("Loaded image: NAME")."""
    names = [line.split(": ", 1)[1].strip() for line in r.stdout.splitlines()
             if line.startswith("Loaded image")]
    if not names:
        raise AssertionError(f"no image name in what load said:\n{described(r)}")
    return names[-1]


def described(r):
    return f"{' '.join(r.args)}: exit {r.returncode}\n--- stdout:\n{r.stdout}\n--- stderr:\n{r.stderr}"


class ApplianceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-appliance-test-")
        cls.nginx = cls.registry = None
        try:
            cls.nginx = nginx_pypi.start(os.path.join(cls.work, "pypi"), build=True)
            images = moi.build(os.path.join(cls.work, "images"))["images"]
            cls.registry = oci_registry.Registry("open", os.path.join(cls.work, "registry"))
            cls.registry.push(images["busybox"]["layout"], "latest", "library/busybox:1.36")
            cls.busybox_digest = images["busybox"]["digest"]
            archive = os.path.join(cls.work, "pantry.tar")
            work = os.path.join(BUILD_DIR, "appliance")
            # The build's data dir keeps its layer cache for the next run (the base is a hit);
            # each new binary adds an image to its hosted registry, so start afresh now and then.
            data = os.path.join(work, "pantry-data")
            if os.path.isdir(data) and du(data) > MAX_BUILD_DATA:
                shutil.rmtree(data)
            r = run(["/usr/bin/python3", BUILD_SCRIPT, "--pantry", PANTRY, "--work", work,
                     "--archive", archive])
            if r.returncode != 0:
                raise AssertionError(f"the appliance did not build:\n{described(r)}")
            cls.built = json.loads(r.stdout)
            print(f"appliance: {cls.built['tag']}@{cls.built['digest']} in "
                  f"{cls.built['seconds']} s (base made now: {cls.built['base_made']})\n"
                  f"{cls.built['steps']}", file=sys.stderr)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "podman", None) is not None:
            run([PODMAN, "system", "reset", "--force"], env=cls.podman[0])
        if cls.registry is not None:
            cls.registry.close()
        if cls.nginx is not None:
            cls.nginx.stop()
        daemons.wipe(cls.work)

    def write_config(self, name):
        """The config mounted over the image's: on the host's loopback at a free port, the
        fixtures as upstreams. Returns (path, port)."""
        port = free_port()
        path = os.path.join(self.work, f"{name}.yaml")
        with open(path, "w") as f:
            f.write(f"""listen: 127.0.0.1:{port}
data_dir: /var/lib/pantry
server: {{ threads: 2 }}
upstream: {{ connect_timeout: 5s, header_timeout: 10s, idle_timeout: 10s }}
pypi:
  upstreams:
    - {{ name: up, url: "{self.nginx.index_url}" }}
oci:
  default_upstream: docker.io
  upstreams:
    - {{ name: docker.io, url: "{self.registry.url}" }}
runner:
  state_dir: /var/lib/pantry/runner
""")
        os.chmod(path, 0o644)  # read by the image's user pantry
        return path, port

    def sanitizer_env(self):
        """`-e NAME` for the sanitizer options ctest gives this process, so that the binary in
        the container runs as the one on the host does."""
        return [a for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS") if k in os.environ
                for a in ("-e", k)]

    def check_image_config(self, cli, env, image):
        r = run([cli, "image", "inspect", image], env=env)
        self.assertEqual(r.returncode, 0, described(r))
        inspected = json.loads(r.stdout)[0]
        config = inspected["Config"]
        self.assertEqual(config.get("User"), "pantry", config)
        self.assertEqual(list(config.get("Volumes") or {}), ["/var/lib/pantry"], config)
        self.assertEqual(list(config.get("ExposedPorts") or {}), ["8585/tcp"], config)
        self.assertEqual(config.get("Entrypoint"),
                         ["/usr/local/bin/pantry", "serve", "--config", "/etc/pantry/pantry.yaml"],
                         config)
        # docker shows the health check in Config, podman beside it.
        health = config.get("Healthcheck") or inspected.get("Healthcheck") or {}
        self.assertEqual(health.get("Test"),
                         ["CMD", "/usr/local/bin/pantry", "health", "--config",
                          "/etc/pantry/pantry.yaml"], config)
        r = run([cli, "run", "--rm", "--network", "none", *self.sanitizer_env(),
                 "--entrypoint", "/usr/local/bin/pantry", image,
                 "config", "check", "/etc/pantry/pantry.yaml"], env=env)
        self.assertEqual((r.returncode, r.stdout), (0, "/etc/pantry/pantry.yaml: ok\n"),
                         described(r))

    def wait_healthy(self, health, logs):
        """Calls HEALTH() (True once the container is healthy) until it is, or fails with LOGS()."""
        deadline = time.monotonic() + CONTAINER_TIMEOUT
        while not health():
            if time.monotonic() > deadline:
                self.fail(f"the appliance did not turn healthy in {CONTAINER_TIMEOUT} s:\n{logs()}")
            time.sleep(1)

    def pull_through(self, name, port, logs):
        status, _, body = get(f"http://127.0.0.1:{port}/readyz")
        self.assertEqual(status, 200, body)
        proc, got = clients.pip_install(self.work, name, f"http://127.0.0.1:{port}/simple/",
                                        ["pantry-demo-app"])
        self.assertEqual(proc.returncode, 0, f"{described(proc)}\n--- appliance log:\n{logs()}")
        self.assertEqual({k: got.get(k) for k in ("pantry-demo-app", "pantry-demo-lib")},
                         {"pantry-demo-app": "2.0", "pantry-demo-lib": "1.1"}, got)
        proc = clients.skopeo_copy_all(f"127.0.0.1:{port}/library/busybox:1.36", self.work, name)
        self.assertEqual(proc.returncode, 0, f"{described(proc)}\n--- appliance log:\n{logs()}")

    def run_container(self, cli, env, image, name, extra=()):
        """Runs IMAGE detached as NAME with the test's config and a named volume; returns the
        port it serves on."""
        config, port = self.write_config(name)
        r = run([cli, "run", "-d", "--name", name, "--network", "host",
                 "-v", f"{config}:/etc/pantry/pantry.yaml:ro", "-v", f"{name}-data:/var/lib/pantry",
                 *self.sanitizer_env(), *extra, image], env=env)
        self.assertEqual(r.returncode, 0, described(r))
        return port

    def check_running(self, cli, env, name, port):
        def logs():
            r = run([cli, "logs", name], env=env)
            return (r.stdout + r.stderr)[-6000:]
        r = run([cli, "exec", name, "id", "-u"], env=env)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, USER_ID), described(r))
        self.pull_through(name, port, logs)
        self.assertIn("runner: disabled", logs(),
                      "as a user other than root the runner stays off and says so")
        r = run([cli, "stop", "-t", "30", name], env=env)
        self.assertEqual(r.returncode, 0, described(r))
        r = run([cli, "inspect", "--format", "{{.State.ExitCode}}", name], env=env)
        self.assertEqual(r.stdout.strip(), "0", f"{described(r)}\n--- appliance log:\n{logs()}")
        return logs

    def podman_image(self):
        """(podman's environment, the image loaded into it): loaded once for both podman tests."""
        if getattr(type(self), "podman", None) is None:
            env = daemons.podman_env(os.path.join(self.work, "podman"))
            r = run([PODMAN, "load", "-i", self.built["archive"]], env=env)
            self.assertEqual(r.returncode, 0, described(r))
            image = loaded_image(r)
            # The short name the compose files and docs use finds it too.
            exists = run([PODMAN, "image", "exists", self.built["archive_name"]], env=env)
            self.assertEqual(exists.returncode, 0, f"{described(exists)}\nloaded as {image}")
            type(self).podman = (env, image)
        return self.podman

    def test_podman(self):
        env, image = self.podman_image()
        name = "pantry-appliance-podman"
        try:
            self.check_image_config(PODMAN, env, image)
            port = self.run_container(PODMAN, env, image, name)

            def logs():
                r = run([PODMAN, "logs", name], env=env)
                return (r.stdout + r.stderr)[-6000:]
            # `podman healthcheck run` runs the image's HEALTHCHECK once: 0 when healthy.
            self.wait_healthy(lambda: run([PODMAN, "healthcheck", "run", name],
                                          env=env).returncode == 0, logs)
            self.check_running(PODMAN, env, name, port)
        finally:
            run([PODMAN, "rm", "-f", name], env=env)
            run([PODMAN, "volume", "rm", f"{name}-data"], env=env)

    def test_podman_as_root_privileged_runs_jobs(self):
        """As root in a privileged container, with the runner's state dir on the data volume (the
        image's config): the runner starts, and `pantry run` inside the container runs a step
        of busybox pulled through the appliance."""
        env, image = self.podman_image()
        name = "pantry-appliance-root"
        try:
            self.run_container(PODMAN, env, image, name, extra=("--user", "0", "--privileged"))

            def logs():
                r = run([PODMAN, "logs", name], env=env)
                return (r.stdout + r.stderr)[-6000:]
            self.wait_healthy(lambda: run([PODMAN, "healthcheck", "run", name],
                                          env=env).returncode == 0, logs)
            step = run([PODMAN, "exec", name, "/usr/local/bin/pantry", "run", "--config",
                        "/etc/pantry/pantry.yaml", "--no-report", "--network", "none",
                        "--image", f"library/busybox@{self.busybox_digest}", "--",
                        "echo", "hello from a job"], env=env)
            self.assertEqual((step.returncode, step.stdout), (0, "hello from a job\n"),
                             f"{described(step)}\n--- appliance log:\n{logs()}")
            self.assertNotIn("runner: disabled", logs())
        finally:
            run([PODMAN, "rm", "-f", name], env=env)
            run([PODMAN, "volume", "rm", f"{name}-data"], env=env)

    def test_docker(self):
        if not daemons.dockerd_available():
            self.skipTest("dockerd, docker, containerd or runc not installed (Debian packages "
                          "in scripts/debian-packages.txt)")
        dockerd = daemons.Dockerd(os.path.join(self.work, "docker"), data_tmpfs="4g")
        name = "pantry-appliance-docker"
        try:
            docker = daemons.DOCKER
            r = run([docker, "load", "-i", self.built["archive"]], env=dockerd.env)
            self.assertEqual(r.returncode, 0, described(r))
            image = loaded_image(r)
            self.assertEqual(image, self.built["archive_name"], described(r))
            self.check_image_config(docker, dockerd.env, image)
            # The image's health check, run every second rather than every 30 s.
            port = self.run_container(docker, dockerd.env, image, name,
                                      extra=("--health-interval", "1s", "--health-start-period",
                                             "1s"))

            def logs():
                r = run([docker, "logs", name], env=dockerd.env)
                return (r.stdout + r.stderr)[-6000:]

            def healthy():
                r = run([docker, "inspect", "--format", "{{.State.Health.Status}}", name],
                        env=dockerd.env)
                return r.stdout.strip() == "healthy"
            self.wait_healthy(healthy, logs)
            self.check_running(docker, dockerd.env, name, port)
            run([docker, "rm", "-f", name], env=dockerd.env)
            run([docker, "volume", "rm", f"{name}-data"], env=dockerd.env)
        finally:
            left = dockerd.stop()
            log = dockerd.tail(15)
        # dockerd bind-mounts the host's network namespace there for --network host and leaves
        # it when it stops (stop() unmounts it); anything else left is a leak.
        default_netns = os.path.join(dockerd.workdir, "exec", "netns", "default")
        left = [x for x in left if x != f"mounts {[default_netns]}"]
        self.assertEqual(left, [], f"dockerd left these behind\n--- dockerd log:\n{log}")


if __name__ == "__main__":
    PANTRY = os.path.abspath(sys.argv[1])
    BUILD_DIR = os.path.abspath(sys.argv[2])
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
