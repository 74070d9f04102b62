#!/usr/bin/python3
"""`pantry run` and `pantry build` against runc alone, podman, docker and buildah, on the same
images and the same Containerfile, in one run (issue 12's benchmark).

    bench/runner/run.py PANTRY_BINARY [--runs 21] [--build-runs 11] [--cold-runs 3]
                        [--skip podman,docker,buildah] [--no-build] [--quick]
                        [--workdir DIR] [--keep]

Set-up, all on 127.0.0.1 and started here (needs root):

  upstream  tests/fixtures/nginx_pypi.py serving the PyPI fixture tree (pantry-demo-app and
            pantry-demo-lib wheels), pantry's PyPI upstream;
  pantry    `PANTRY_BINARY serve` (tests/fixtures/pantry_serve.py) with a hosted local/
            repository and the runner enabled, its runc root, state dir and cgroup parent its
            own (under /run/pantry-bench-runner/ID and pantry-bench-runner-ID), the runner's
            job_port equal to the port serve listens on (so one URL, http://127.0.0.1:PORT/simple/,
            reaches pantry from an isolated step and from a build step on the host network);
  images    busybox-static (tests/fixtures/make_oci_images.py) and the Debian Python image
            (tests/fixtures/python_image.py, built once per machine), pushed with skopeo to
            local/busybox and local/python;
  dockerd   tests/fixtures/daemons.py's: its own socket, data-root and exec-root under the
            scratch dir, runc, cgroupfs, "default-ulimits" nofile 20000, no bridge or iptables,
            its containers under a cgroup parent of its own; pantry its Docker Hub mirror (so
            `local/NAME@sha256:...` is pulled from pantry's hosted repository); stopped at the end;
  podman,   storage, run root, runc root and configuration under the scratch dir
  buildah   (CONTAINERS_CONF: runc, cgroupfs, nofile 20000; registries.conf: pantry as the
            docker.io mirror).

Start-to-exit of `true` in the busybox image, layers already unpacked and images already
pulled, --runs times each, the kinds alternating and their order rotating every round:

  pantry run     `pantry run --no-report --image local/busybox@sha256:... -- true` against the
                 running serve: the client process's whole wall time, as a user sees it.  The
                 defaults of the runner apply (network isolated, memory 2GiB with a 1GiB tmpfs
                 upper, pids 4096).  "in the runner" is the step's wall_seconds from the summary
                 line on stderr (from `runc run --detach` to the step's exit).
  runc run       runc alone on an equivalent bundle: the config.json pantry generated for this
                 image (copied while a step ran: docker's seccomp profile converted, caps, masked
                 paths, rlimits, memory and pids limits), with its own overlay root (the layer
                 unpacked with tar as the lower dir, upper and work on a 1GiB tmpfs, mounted once),
                 its own copies of /etc/hosts, hostname and resolv.conf, a new network namespace
                 made by runc, its own cgroup; `runc run` in the foreground, which deletes the
                 container when it exits.  The target: pantry run <= 1.5 x this.
  runc --keep    the same bundle, `runc run --keep` then `runc delete`: what a runner that reads
                 the cgroup's accounting after the exit must do at least.
  podman run     `podman run --rm --network none --memory 2g --pids-limit 4096` of the image.
  docker run     `docker run --rm --network none --memory 2g --pids-limit 4096` of the image.

Builds of one Containerfile (FROM the Python image by digest; RUN python3 -m venv and pip install
pantry-demo-app from pantry's PyPI; ENV; RUN pip freeze; WORKDIR; COPY a small project; CMD),
the same text for every tool (pip's --index-url names pantry's port, which RUN steps reach in
pantry's isolated network and on docker's and buildah's host network):

  no-change rebuild   --build-runs times each, alternating, after a first build: `pantry build`,
                      `docker build` with the classic builder (DOCKER_BUILDKIT=0, --network
                      host), `buildah build --layers --network host`; whole client wall time.
                      The target: pantry <= docker.
  cold build          --cold-runs times each: `pantry build --no-cache` (the serve's log must
                      show both RUN steps run), `docker build --no-cache`, `buildah build
                      --layers --no-cache`; the base image unpacked or in their stores, pip's
                      wheels in pantry's cache.
  first build         once each, before the rebuilds: pantry's build cache empty (its PyPI cache
                      too: pip's wheels come from the upstream), docker and buildah without their
                      layer caches; the base image's layers already unpacked or pulled.

Output: progress on stderr, the tables on stdout (Markdown).  Everything started is stopped and
removed at the end, also after a failure (containers, mounts, cgroups, daemons, storage); the
scratch dir (pantry-bench-runner-XXXXXX in the temp dir, or --workdir) is removed after a clean
run and kept, with logs and configs only, after a failure or with --keep.  Exit status 0; 1 if a
command under test failed or left something behind; 2 on another error.  The targets are
printed, not enforced.  Python 3 standard library; needs root and the Debian packages runc,
skopeo, umoci, busybox-static, nginx, podman, docker.io, buildah, mmdebstrap.
"""

import argparse
import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
sys.path.insert(0, FIXTURES)
import daemons  # noqa: E402
import make_oci_images as moi  # noqa: E402
import nginx_pypi  # noqa: E402
import oci_registry  # noqa: E402
import pantry_serve  # noqa: E402
import python_image  # noqa: E402


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The driver, log and load average are bench/pypi's; podman's set-up is the interop test's
# (tests/integration/oci_clients_test.py); dockerd and the mounts, processes and cgroups helpers
# are tests/fixtures/daemons.py.
pypi_bench = _load("pypi_bench", os.path.join(ROOT, "bench", "pypi", "run.py"))
clients = _load("oci_clients_test", os.path.join(ROOT, "tests", "integration", "oci_clients_test.py"))
Failure, log, loadavg = pypi_bench.Failure, pypi_bench.log, pypi_bench.loadavg

RUNC = daemons.RUNC
PODMAN = clients.PODMAN
DOCKER = daemons.DOCKER
DOCKERD = daemons.DOCKERD
BUILDAH = "/usr/bin/buildah"
SKOPEO = clients.SKOPEO
MOUNT = "/bin/mount"
TAR = "/bin/tar"
TOKEN = "5b1e0c9d7a3f4e2b8c6d0a1f"  # the one user of oci.hosted.users, who pushes the images
CMD_TIMEOUT = 600
STATE_BASE = "/run/pantry-bench-runner"
CGROUP_ROOT = daemons.CGROUP_ROOT
# What pantry's runner gives a step by default (deploy/pantry.example.yaml), for docker and podman.
MEMORY, PIDS = "2g", "4096"
TOOLS_RUN = ("pantry", "runc", "runc-keep", "podman", "docker")
TOOLS_BUILD = ("pantry", "docker", "buildah")

MAIN_PY = """import importlib.metadata
print("app", importlib.metadata.version("pantry-demo-app"))
print("lib", importlib.metadata.version("pantry-demo-lib"))
"""


# ---------------------------------------------------------------- small helpers

def run(cmd, env=None, check=True, timeout=CMD_TIMEOUT, what=None):
    """CMD's CompletedProcess (text); a failure raises Failure with its output."""
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise Failure(f"{what or ' '.join(cmd)}: exit {r.returncode}\n--- stdout:\n{r.stdout[-3000:]}"
                      f"\n--- stderr:\n{r.stderr[-3000:]}")
    return r


def timed(cmd, env=None, what=None, timeout=CMD_TIMEOUT):
    """(wall seconds, CompletedProcess) of CMD, which must succeed."""
    t0 = time.perf_counter()
    r = run(cmd, env=env, timeout=timeout, what=what)
    return time.perf_counter() - t0, r


def median_ms(xs):
    return statistics.median(xs) * 1000


def quartiles_ms(xs):
    if len(xs) < 4:
        return min(xs) * 1000, max(xs) * 1000
    q = statistics.quantiles(xs, n=4)
    return q[0] * 1000, q[2] * 1000


def cgroup_dirs(name):
    """The directory of cgroup NAME in every hierarchy that has it."""
    out = []
    for h in sorted(os.listdir(CGROUP_ROOT)):
        d = os.path.join(CGROUP_ROOT, h, name)
        if os.path.isdir(d):
            out.append(d)
    return out


def cgroup_children(name):
    """Cgroups still under NAME (in any hierarchy)."""
    left = []
    for d in cgroup_dirs(name):
        left += [os.path.join(d, e) for e in os.listdir(d) if os.path.isdir(os.path.join(d, e))]
    return left


def remove_cgroup(name):
    """Removes cgroup NAME and what is under it; raises Failure naming what stayed."""
    left = daemons.remove_cgroups(name)
    if left:
        raise Failure(f"cgroup {name} could not be removed: {left}")


def unmount(path):
    r = run([daemons.UMOUNT, path], check=False)
    if r.returncode != 0:
        raise Failure(f"umount {path}: {r.stderr.strip()}")


def fs_type(path):
    """The file system type of the mount PATH is on (from /proc/self/mounts)."""
    best, kind = "", "?"
    with open("/proc/self/mounts") as f:
        for line in f:
            _, point, fstype = line.split()[:3]
            if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                best, kind = point, fstype
    return kind


def runc_list(root):
    if not os.path.isdir(root):
        return []
    return run([RUNC, "--root", root, "list", "--quiet"], check=False).stdout.split()


# ---------------------------------------------------------------- the scene

class Scene:
    """Everything the bench starts, each with its cleanup on one stack (undone in reverse, all of
    it, whatever fails); `left_behind()` checks that nothing stayed."""

    def __init__(self, args, work, stack):
        self.args, self.work, self.stack = args, work, stack
        self.ident = os.path.basename(work).rsplit("-", 1)[-1]
        self.state = f"{STATE_BASE}/{self.ident}"
        self.runc_root = f"{self.state}/runc"
        self.state_dir = f"{self.state}/containers"
        self.cgroup_parent = f"pantry-bench-runner-{self.ident}"
        self.anchor_root = f"{self.state}/anchor-runc"
        self.anchor_cgroup = f"pantry-bench-runc-{self.ident}"
        self.podman_cgroup = f"pantry-bench-podman-{self.ident}"
        self.buildah_cgroup = f"pantry-bench-buildah-{self.ident}"
        self.cold_steps = []  # {instruction: seconds} of the RUN and COPY steps of cold builds
        self.cleanup_errors = []

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    def defer(self, fn, *a, **kw):
        """Runs FN(*A, **KW) at the end; its error is recorded and the clean-up goes on."""
        def guarded():
            try:
                fn(*a, **kw)
            except Exception as e:  # noqa: BLE001 -- the other clean-ups must run all the same
                self.cleanup_errors.append(f"clean-up {getattr(fn, '__name__', fn)}: {e}")
                log(self.cleanup_errors[-1])
        self.stack.callback(guarded)

    # ---- pantry and the images

    def start_pantry(self):
        self.nginx = nginx_pypi.start(self.path("upstream"), build=True,
                                      workdir=self.path("upstream-nginx"))
        self.defer(self.nginx.stop)
        self.defer(self.remove_state)
        if self.args.state_tmpfs:
            # as on a host whose /run is a tmpfs (Debian's default): the runc roots and state dirs
            # of pantry and of the anchor
            os.makedirs(self.state)
            run([MOUNT, "-t", "tmpfs", "-o", "size=4g,mode=0700", "tmpfs", self.state])
        self.port = pantry_serve.free_port()
        self.pantry = self.new_pantry("pantry", self.runc_root, self.state_dir, self.cgroup_parent,
                                      self.port)
        self.host = f"127.0.0.1:{self.port}"

    def new_pantry(self, name, runc_root, state_dir, cgroup_parent, port):
        """A `pantry serve` on PORT with its own data dir and runner places; its job_port is the
        same PORT, so that the Containerfile's index URL reaches it from an isolated step too."""
        runner = f"""runner:
  runc_root: {runc_root}
  state_dir: {state_dir}
  cgroup_parent: {cgroup_parent}
  job_port: {port}
"""
        oci = f'  hosted:\n    prefix: local/\n    users: [ {{ name: ci, token: "{TOKEN}" }} ]\n'
        self.defer(remove_cgroup, cgroup_parent)  # pantry leaves its (empty) parent
        pantry = pantry_serve.Pantry(self.args.pantry, self.path(name), self.nginx.index_url,
                                     oci=oci, extra=runner, port=port)
        self.defer(self.stop_pantry, pantry)
        return pantry

    @staticmethod
    def stop_pantry(pantry):
        pantry.stop()
        # the data dir (cache, unpacked layers) is storage: never kept
        shutil.rmtree(pantry.data_dir, ignore_errors=True)

    def remove_state(self):
        for m in daemons.mounts_under(self.state):
            unmount(m)
        shutil.rmtree(self.state, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(STATE_BASE)  # when no other run uses it

    def push_images(self):
        os.makedirs(self.path("images"), exist_ok=True)
        self.busybox = moi.build_busybox(self.path("images"), moi.DEFAULT_EPOCH)
        digest = oci_registry.push(self.busybox["layout"], "latest", f"{self.host}/local/busybox:1",
                                   creds=f"ci:{TOKEN}")
        self.busybox_ref = f"local/busybox@{digest}"
        self.python = python_image.ensure_python_image()
        digest = python_image.push(self.python["layout"], self.python["tag"], self.host,
                                   "local/python", creds=f"ci:{TOKEN}")
        self.python_ref = f"local/python@{digest}"
        log(f"pushed {self.busybox_ref} and {self.python_ref} to pantry at {self.host}")

    # ---- pantry run

    def pantry_run_cmd(self, *argv, extra=()):
        return [self.args.pantry, "run", "--config", self.pantry.config, "--no-report",
                *extra, "--image", self.busybox_ref, "--", *argv]

    def pantry_run(self):
        """(client wall s, the runner's wall_seconds)."""
        wall, r = timed(self.pantry_run_cmd("true"), what="pantry run")
        m = re.search(r"^pantry: .*: exit code 0 in ([0-9.]+) s", r.stderr, re.M)
        if not m:
            raise Failure(f"pantry run: no summary line on stderr:\n{r.stderr}")
        return wall, float(m.group(1))

    # ---- runc alone on an equivalent bundle

    def capture_pantry_bundle(self):
        """The config.json (and the /etc files it mounts) of a step pantry runs in the busybox
        image: a step that spins until it is interrupted, copied while it runs."""
        p = subprocess.Popen(self.pantry_run_cmd("sh", "-c", "while :; do :; done",
                                                 extra=("--timeout", "60s")),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while True:
                if p.poll() is not None:
                    raise Failure(f"pantry run of the spinning step ended: {p.communicate()}")
                if time.monotonic() > deadline:
                    raise Failure("no bundle of pantry's in its state dir within 60 s")
                found = None
                for c in sorted(os.listdir(self.state_dir)) if os.path.isdir(self.state_dir) else []:
                    # runc has the container once its init's pid file is there
                    if os.path.exists(os.path.join(self.state_dir, c, "init.pid")):
                        found = os.path.join(self.state_dir, c)
                if found:
                    with open(os.path.join(found, "config.json")) as f:
                        config = json.load(f)
                    files = {}
                    for m in config.get("mounts", []):
                        src = m.get("source", "")
                        if src.startswith(found + "/") and os.path.isfile(src):
                            with open(src, "rb") as f:
                                files[src] = f.read()
                    return found, config, files
                time.sleep(0.05)
        finally:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
            try:
                p.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()

    def make_anchor_bundle(self):
        pantry_dir, config, files = self.capture_pantry_bundle()
        bundle = f"{self.state}/anchor-bundle"
        lower, scratch, rootfs = f"{bundle}/lower", f"{bundle}/scratch", f"{bundle}/rootfs"
        for d in (lower, scratch, rootfs):
            os.makedirs(d)
        layers = self.busybox["layers"]
        if len(layers) != 1:
            raise Failure(f"the busybox image has {len(layers)} layers, want 1")
        run([TAR, "-xzf", os.path.join(self.busybox["layout"], "blobs",
                                       *layers[0]["digest"].split(":", 1)), "-C", lower])
        # pantry's scratch: a tmpfs of the step's tmpfs_size (default 1GiB), upper and work on it
        run([MOUNT, "-t", "tmpfs", "-o", "size=1g,mode=0755,nosuid,nodev", "tmpfs", scratch])
        self.defer(unmount, scratch)
        os.makedirs(f"{scratch}/upper", mode=0o755)
        os.makedirs(f"{scratch}/work", mode=0o700)
        run([MOUNT, "-t", "overlay", "overlay", "-o",
             f"lowerdir={lower},upperdir={scratch}/upper,workdir={scratch}/work,"
             "redirect_dir=off,metacopy=off,index=off", rootfs])
        self.defer(unmount, rootfs)

        config["process"]["args"] = ["true"]
        config["root"]["path"] = rootfs
        for m in config.get("mounts", []):
            if m.get("source") in files:
                copy = os.path.join(bundle, os.path.basename(m["source"]))
                with open(copy, "wb") as f:
                    f.write(files[m["source"]])
                m["source"] = copy
        for ns in config["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns.pop("path", None)  # a new one, made by runc (its lo comes up)
        config["linux"]["cgroupsPath"] = f"/{self.anchor_cgroup}/anchor"
        text = json.dumps(config, indent=1)
        for p in (pantry_dir, self.state_dir, self.runc_root):
            if p in text:
                raise Failure(f"the anchor's config.json still names {p}:\n{text}")
        with open(f"{bundle}/config.json", "w") as f:
            f.write(text)
        self.defer(self.check_cgroup_gone, self.anchor_cgroup)
        self.defer(self.delete_anchor)
        self.anchor_bundle = bundle
        limits = config["linux"].get("resources", {})
        log(f"runc anchor: bundle {bundle} from pantry's {os.path.basename(pantry_dir)}: seccomp "
            f"{len(config['linux'].get('seccomp', {}).get('syscalls', []))} rules, memory "
            f"{limits.get('memory', {}).get('limit')}, pids {limits.get('pids', {}).get('limit')}, "
            f"namespaces {[n['type'] for n in config['linux']['namespaces']]}")

    def delete_anchor(self):
        if runc_list(self.anchor_root):
            run([RUNC, "--root", self.anchor_root, "delete", "--force", "anchor"], check=False)
            raise Failure("the anchor's container was left in runc's state (a run failed)")

    @staticmethod
    def check_cgroup_gone(name):
        """Removes the anchor's parent cgroup; runc must have removed the container's."""
        left = cgroup_children(name)
        remove_cgroup(name)
        if left:
            raise Failure(f"runc left cgroups behind: {left}")

    def runc_run(self, keep=False):
        cmd = [RUNC, "--root", self.anchor_root, "run", "--bundle", self.anchor_bundle, "anchor"]
        if not keep:
            return timed(cmd, what="runc run")[0]
        t0 = time.perf_counter()
        run(cmd[:4] + ["--keep"] + cmd[4:], what="runc run --keep")
        run([RUNC, "--root", self.anchor_root, "delete", "anchor"], what="runc delete")
        return time.perf_counter() - t0

    # ---- podman and buildah

    def containers_env(self):
        """podman's and buildah's environment, their configuration written under podman/ the
        first time: the interop test's (tests/integration/oci_clients_test.py), which reads only
        path() and host of its test: runc (crun refuses cgroups v1 "hybrid" mode), cgroupfs (no
        systemd), nofile within root's hard limit (20000), pantry as the docker.io mirror."""
        return clients.OciClientsTest.podman_env(self)

    def podman(self, *args):
        d = self.path("podman")
        return [PODMAN, "--root", f"{d}/root", "--runroot", f"{d}/run", "--storage-driver",
                "overlay", "--runtime-flag", f"root={d}/run/runc", *args]

    def buildah(self, *args):
        d = self.path("podman")
        return [BUILDAH, "--root", f"{d}/root", "--runroot", f"{d}/run", "--storage-driver",
                "overlay", *args]

    def start_podman(self):
        self.defer_stop_podman()
        run(self.podman("pull", "--quiet", self.busybox_ref), env=self.containers_env())

    def stop_podman(self):
        d = self.path("podman")
        env = self.containers_env()
        errors = []
        for cmd in (self.podman("rm", "--all", "--force"), self.buildah("rm", "--all"),
                    self.podman("system", "reset", "--force")):
            r = run(cmd, env=env, check=False)
            if r.returncode != 0:
                errors.append(f"{' '.join(cmd[-3:])}: {r.stderr.strip()[-500:]}")
        strays = daemons.kill_strays(d)
        unmounted = daemons.unmount_all(d)
        if unmounted:
            log(f"podman/buildah left mounted, now unmounted: {unmounted}")
        daemons.wipe(f"{d}/root")
        daemons.wipe(f"{d}/run")
        for name in (self.podman_cgroup, self.buildah_cgroup):
            remove_cgroup(name)
        if strays:
            raise Failure(f"podman/buildah left processes behind: {strays} (killed)")
        if errors:
            log("podman/buildah clean-up said: " + "; ".join(errors))

    def podman_run(self):
        return timed(self.podman("run", "--rm", "--network", "none", "--memory", MEMORY,
                                 "--pids-limit", PIDS, "--cgroup-parent", f"/{self.podman_cgroup}",
                                 self.busybox_ref, "true"),
                     env=self.containers_env(), what="podman run")[0]

    # ---- dockerd

    def start_dockerd(self):
        """dockerd of tests/fixtures/daemons.py (runc, cgroupfs, nofile 20000, no bridge), pantry
        its Docker Hub mirror, so that local/NAME@sha256:... comes from pantry's hosted repository."""
        self.defer(self.stop_dockerd)
        self.dockerd = daemons.Dockerd(self.path("docker"), insecure_registries=[self.host],
                                       registry_mirrors=[f"http://{self.host}"])
        self.docker_env = self.dockerd.env
        run([DOCKER, "pull", "--quiet", self.busybox_ref], env=self.docker_env)

    def stop_dockerd(self):
        d = self.path("docker")
        daemon = getattr(self, "dockerd", None)
        if daemon is None:  # it did not start
            strays = daemons.kill_strays(d)
            daemons.unmount_all(d)
            problems = [f"processes {strays} (killed)"] if strays else []
        else:
            strays = daemons.Daemon.stop(daemon)  # dockerd and its containerd
            # dockerd 20.10 leaves exec-root/netns/default (the host's netns, which --network
            # host builds use) mounted when it stops: known, not counted as a leak
            known = [m for m in daemons.mounts_under(d) if m.endswith("/exec/netns/default")]
            for m in known:
                daemons.unmount_all(m)
            if known:
                log(f"dockerd left mounted, now unmounted: {known}")
            problems = daemon.stop() + ([f"processes {strays} (killed)"] if strays else [])
        daemons.wipe(f"{d}/data")
        daemons.wipe(f"{d}/exec")
        if problems:
            raise Failure(f"dockerd left behind: {problems}")

    def docker_run(self):
        return timed([DOCKER, "run", "--rm", "--network", "none", "--memory", MEMORY,
                      "--pids-limit", PIDS, self.busybox_ref, "true"],
                     env=self.docker_env, what="docker run")[0]

    # ---- builds

    def make_context(self):
        ctx = self.path("context")
        clients.write(os.path.join(ctx, "app", "main.py"), MAIN_PY)
        clients.write(os.path.join(ctx, "app", "message.txt"), "hello from the bench\n")
        clients.write(os.path.join(ctx, "Containerfile"), f"""\
FROM {self.python_ref}
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --disable-pip-version-check --index-url http://{self.host}/simple/ pantry-demo-app
ENV PATH=/opt/venv/bin:$PATH
RUN pip freeze --disable-pip-version-check > /opt/requirements.lock
WORKDIR /app
COPY app/ /app/
CMD ["python3", "/app/main.py"]
""")
        self.context = ctx

    def pantry_build(self, cold=False, first=False):
        """(wall s, what the client says it took).  Cold: `--no-cache`, and the serve's log must
        show both RUN steps run."""
        cmd = [self.args.pantry, "build", "--config", self.pantry.config, "-f",
               os.path.join(self.context, "Containerfile"), "-t", "local/bench-app:1"]
        runs_before = self.runner_steps()
        wall, r = timed(cmd + (["--no-cache"] if cold else []) + [self.context], what="pantry build")
        steps = [line.split() for line in r.stdout.splitlines() if line.startswith("[")]
        outcomes = [step[1] for step in steps]
        want = "miss" if cold or first else "hit"
        if len(outcomes) != 6 or any(o not in (want, "config") for o in outcomes):
            raise Failure(f"pantry build: steps {outcomes}, want 6 of {want} or config:\n"
                          f"{r.stdout}\n{r.stderr}")
        ran = self.runner_steps() - runs_before
        if ran != (2 if want == "miss" else 0):
            raise Failure(f"pantry build{' --no-cache' if cold else ''}: the runner ran {ran} "
                          f"steps, want {2 if want == 'miss' else 0}:\n{r.stdout}")
        if cold:
            self.cold_steps.append({" ".join(step[4:])[:50]: float(step[2]) for step in steps
                                    if step[1] == "miss"})
        m = re.search(r"^pantry: built in ([0-9.]+) s", r.stderr, re.M)
        return wall, float(m.group(1)) if m else None

    def runner_steps(self):
        """How many steps the serve's runner has started (its "runner: step N in ..." lines)."""
        self.pantry.log.flush()
        with open(self.pantry.log_path, errors="replace") as f:
            return sum(1 for line in f if "] runner: step " in line and ": cleaning up:" not in line)

    def docker_build(self, cold=False, first=False):
        env = dict(self.docker_env, DOCKER_BUILDKIT="0")
        cmd = [DOCKER, "build", "--network", "host", "-t", "bench/app:1", "-f",
               os.path.join(self.context, "Containerfile")]
        wall, r = timed(cmd + (["--no-cache"] if cold else []) + [self.context], env=env,
                        what="docker build")
        cached = r.stdout.count("Using cache")
        if not cold and not first and cached != 6:  # RUN, ENV, RUN, WORKDIR, COPY, CMD
            log(f"docker build: {cached} steps said 'Using cache':\n{r.stdout}")
        return wall

    def defer_stop_podman(self):
        if not getattr(self, "podman_deferred", False):
            self.podman_deferred = True
            self.defer(self.stop_podman)

    def start_buildah(self):
        self.defer_stop_podman()
        run(self.buildah("pull", "--quiet", self.python_ref), env=self.containers_env())

    def buildah_build(self, cold=False, first=False):
        cmd = self.buildah("build", "--layers", "--network", "host", "--isolation", "oci",
                           "--cgroup-parent", f"/{self.buildah_cgroup}", "-t", "bench/app:1", "-f",
                           os.path.join(self.context, "Containerfile"))
        return timed(cmd + (["--no-cache"] if cold else []) + [self.context],
                     env=self.containers_env(), what="buildah build")[0]

    def pull_python_into_docker(self):
        run([DOCKER, "pull", "--quiet", self.python_ref], env=self.docker_env)

    # ---- the check at the end

    def left_behind(self):
        left = {}
        for name, root in (("pantry's runc", self.runc_root), ("the anchor's runc", self.anchor_root)):
            ids = runc_list(root)
            if ids:
                left[name] = ids
        mounts = daemons.mounts_under(self.work) + daemons.mounts_under(self.state)
        if mounts:
            left["mounts"] = mounts
        cgroups = [os.path.join(CGROUP_ROOT, h, name) for h in os.listdir(CGROUP_ROOT)
                   if os.path.isdir(os.path.join(CGROUP_ROOT, h))
                   for name in os.listdir(os.path.join(CGROUP_ROOT, h))
                   if name.startswith("pantry-bench-") and name.endswith(self.ident)]
        if getattr(self, "dockerd", None):
            cgroups += cgroup_dirs(self.dockerd.cgroup_parent.lstrip("/"))
        if cgroups:
            left["cgroups"] = cgroups
        strays = daemons.pids_mentioning(self.work)
        if strays:
            left["processes"] = strays
        return left


# ---------------------------------------------------------------- the measurements

def rotate(kinds, i):
    return kinds[i % len(kinds):] + kinds[:i % len(kinds)]


def alternate(fns, kinds, runs, progress=None, **kw):
    """Calls fns[kind](**kw) RUNS times for each kind, the kinds' order rotating every round, so
    that the machine's load weighs on all alike.  Returns ({kind: [wall s]}, [pantry's own
    figure]): a call may return (wall s, its own figure or None)."""
    times = {k: [] for k in kinds}
    own = []
    for i in range(runs):
        for kind in rotate(list(kinds), i):
            got = fns[kind](**kw)
            if isinstance(got, tuple):
                got, inner = got
                if inner is not None:
                    own.append(inner)
            times[kind].append(got)
        if progress:
            progress(i, times)
    return times, own


def measure_start_to_exit(scene, kinds, runs):
    fns = {"pantry": scene.pantry_run, "runc": scene.runc_run,
           "runc-keep": lambda: scene.runc_run(keep=True), "podman": scene.podman_run,
           "docker": scene.docker_run}
    # warm-up: the first runs unpack and page in what the later ones reuse
    alternate(fns, kinds, 2)

    def progress(i, times):
        if (i + 1) % 5 == 0 or i + 1 == runs:
            log(f"start-to-exit round {i + 1}/{runs}: " + ", ".join(
                f"{k} {median_ms(v):.1f} ms" for k, v in times.items()) + f"; load {loadavg()}")
    return alternate(fns, kinds, runs, progress)


def measure_builds(scene, kinds, runs, cold_runs):
    fns = {"pantry": scene.pantry_build, "docker": scene.docker_build,
           "buildah": scene.buildah_build}
    first = {}
    for kind in kinds:
        t0 = time.perf_counter()
        fns[kind](first=True)
        first[kind] = time.perf_counter() - t0
        log(f"first build, {kind}: {first[kind]:.2f} s")
    warm, pantry_inner = alternate(fns, kinds, runs)
    log("no-change rebuilds: " + ", ".join(f"{k} {median_ms(v):.0f} ms" for k, v in warm.items()))

    def progress(i, times):
        log(f"cold builds {i + 1}/{cold_runs}: " + ", ".join(
            f"{k} {v[-1]:.2f} s" for k, v in times.items()) + f"; load {loadavg()}")
    cold, _ = alternate(fns, kinds, cold_runs, progress, cold=True)
    return first, warm, pantry_inner, cold


# ---------------------------------------------------------------- the run

def run_bench(args, work, failures):
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_start = loadavg()
    versions = {
        "pantry": run([args.pantry, "version"]).stdout.strip(),
        "runc": run([RUNC, "--version"]).stdout.splitlines()[0],
    }
    for name, cmd in (("podman", [PODMAN, "--version"]), ("docker", [DOCKERD, "--version"]),
                      ("buildah", [BUILDAH, "--version"])):
        if name not in args.skip:
            versions[name] = run(cmd).stdout.strip()
    log(f"bench/runner: {started}, {os.cpu_count()} cores, load average {load_start}; work dir {work}")

    run_kinds = [k for k in TOOLS_RUN if k not in args.skip]
    build_kinds = [k for k in TOOLS_BUILD if k not in args.skip]
    with contextlib.ExitStack() as stack:
        scene = Scene(args, work, stack)
        try:
            scene.start_pantry()
            scene.push_images()
            scene.make_anchor_bundle()
            if "podman" in run_kinds or "buildah" in build_kinds:
                scene.start_podman()
            if "docker" in run_kinds or "docker" in build_kinds:
                scene.start_dockerd()
            times, inner = measure_start_to_exit(scene, run_kinds, args.runs)
            builds = None
            if not args.no_build:
                scene.make_context()
                # the base image's layers unpacked, as docker and buildah have it pulled
                run([args.pantry, "run", "--config", scene.pantry.config, "--no-report", "--image",
                     scene.python_ref, "--", "true"], what="pantry run in the Python image")
                if "docker" in build_kinds:
                    scene.pull_python_into_docker()
                if "buildah" in build_kinds:
                    scene.start_buildah()
                builds = measure_builds(scene, build_kinds, args.build_runs, args.cold_runs)
        except KeyboardInterrupt:
            log(f"bench/runner: interrupted; cleaning up, then keeping the scratch dir (logs, "
                f"configs): {work}")
            raise
        except BaseException:
            log("--- pantry log tail:\n" + (scene.pantry.tail(60) if hasattr(scene, "pantry") else ""))
            if getattr(scene, "dockerd", None):
                log("--- dockerd log tail:\n" + scene.dockerd.tail(30))
            raise
    failures += scene.cleanup_errors
    left = scene.left_behind()
    if left:
        failures.append(f"left behind after the clean-up: {left}")

    # ------------------------------------------------------------ report
    load_end = loadavg()
    out = [f"# bench/runner/run.py, {started}: {os.cpu_count()} cores, load average {load_start} "
           f"at start, {load_end} at end",
           "# " + "; ".join(versions.values()),
           f"# runc roots, state dirs and bundles under {STATE_BASE} on "
           f"{'a tmpfs (--state-tmpfs)' if args.state_tmpfs else fs_type('/run')}", ""]
    base = median_ms(times["runc"]) if "runc" in times else None
    labels = {
        "pantry": "`pantry run --no-report` (client wall time)",
        "runc": "`runc run`, equivalent bundle (seccomp, limits, own netns, overlay root)",
        "runc-keep": "`runc run --keep` + `runc delete`, same bundle",
        "podman": "`podman run --rm --network none`",
        "docker": "`docker run --rm --network none`",
    }
    out.append(f"Start-to-exit of `true` in local/busybox, ms, median of {args.runs} alternating runs:")
    out.append("")
    out.append("| how | median ms | p25 | p75 | ÷ runc alone |")
    out.append("|---|---:|---:|---:|---:|")
    for kind in run_kinds:
        q1, q3 = quartiles_ms(times[kind])
        ratio = f"{median_ms(times[kind]) / base:.2f}" if base else ""
        out.append(f"| {labels[kind]} | {median_ms(times[kind]):.1f} | {q1:.1f} | {q3:.1f} | {ratio} |")
        if kind == "pantry":
            q1, q3 = quartiles_ms(inner)
            out.append(f"| … of it in the runner: `runc run --detach` to the step's exit "
                       f"(wall_seconds) | {median_ms(inner):.1f} | {q1:.1f} | {q3:.1f} | |")
            rest = [t - w for t, w in zip(times["pantry"], inner)]
            q1, q3 = quartiles_ms(rest)
            out.append(f"| … the rest: CLI, HTTP, image resolve, layer leases, bundle, netns, "
                       f"mounts, accounting, `runc delete`, removal | {median_ms(rest):.1f} | "
                       f"{q1:.1f} | {q3:.1f} | |")
    targets = []
    if base and "pantry" in times:
        ratio = median_ms(times["pantry"]) / base
        targets.append((f"pantry run / runc alone on the equivalent bundle: {ratio:.2f} <= 1.5",
                        ratio <= 1.5))
    if builds:
        first, warm, pantry_inner, cold = builds
        out.append("")
        out.append(f"Builds of one 6-step Containerfile (FROM local/python by digest; RUN venv + pip "
                   f"install; ENV; RUN pip freeze; WORKDIR; COPY; CMD), seconds; no-change rebuild: "
                   f"median of {args.build_runs}, cold: median of {args.cold_runs}:")
        out.append("")
        heads = {"pantry": "pantry build", "docker": "docker build (classic)",
                 "buildah": "buildah build --layers"}
        out.append("| build | " + " | ".join(heads[k] for k in build_kinds) + " | "
                   + " | ".join(f"pantry ÷ {k}" for k in build_kinds if k != "pantry") + " |")
        out.append("|---|" + "---:|" * (2 * len(build_kinds) - 1))
        for label, data in (("no-change rebuild", warm), ("cold (--no-cache)", cold),
                            ("first build (pip's wheels not yet in pantry's cache)", {k: [v] for k, v in first.items()})):
            med = {k: statistics.median(v) for k, v in data.items()}
            out.append(f"| {label} | " + " | ".join(f"{med[k]:.3f}" for k in build_kinds) + " | "
                       + " | ".join(f"{med['pantry'] / med[k]:.2f}" for k in build_kinds
                                    if k != "pantry" and "pantry" in med) + " |")
        if scene.cold_steps:
            out.append("")
            out.append("pantry's cold builds, the steps that ran (median s): " + "; ".join(
                f"`{k}` {statistics.median(d[k] for d in scene.cold_steps):.2f}"
                for k in scene.cold_steps[0]))
        if pantry_inner:
            out.append("")
            out.append(f"pantry's no-change rebuild: the client says `built in "
                       f"{statistics.median(pantry_inner) * 1000:.0f} ms` (median), of "
                       f"{median_ms(warm['pantry']):.0f} ms of wall time")
        if "pantry" in warm and "docker" in warm:
            p, d = statistics.median(warm["pantry"]), statistics.median(warm["docker"])
            targets.append((f"pantry's no-change rebuild {p:.3f} s <= docker's {d:.3f} s", p <= d))
    out.append("")
    out.append("targets:")
    out += [f"- {'met   ' if ok else 'MISSED'} {text}" for text, ok in targets]
    print("\n".join(out), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description="pantry run / pantry build against runc alone, "
                                                 "podman, docker and buildah")
    parser.add_argument("pantry", help="the pantry binary (a release build)")
    parser.add_argument("--runs", type=int, default=21, help="start-to-exit runs per kind (default 21)")
    parser.add_argument("--build-runs", type=int, default=11,
                        help="no-change rebuilds per tool (default 11)")
    parser.add_argument("--cold-runs", type=int, default=3, help="cold builds per tool (default 3)")
    parser.add_argument("--skip", default="", help="comma-separated: podman, docker, buildah")
    parser.add_argument("--no-build", action="store_true", help="only the start-to-exit rows")
    parser.add_argument("--state-tmpfs", action="store_true",
                        help=f"a tmpfs at {STATE_BASE}/ID for the runc roots and state dirs (as "
                             "when /run is a tmpfs)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 5 runs, 3 rebuilds, 1 cold build")
    parser.add_argument("--workdir", help="where the scratch dir goes (default: the temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (logs, configs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.build_runs, args.cold_runs = 5, 3, 1
    args.skip = {s for s in args.skip.split(",") if s}
    if os.geteuid() != 0:
        parser.error("needs root (runc, mounts, cgroups, dockerd)")
    tools = [RUNC, SKOPEO, moi.UMOCI, nginx_pypi.NGINX]
    tools += [t for name, t in (("podman", PODMAN), ("docker", DOCKERD), ("docker", DOCKER),
                                ("buildah", BUILDAH)) if name not in args.skip]
    # SIGTERM and SIGHUP unwind like ^C, so that the clean-up runs
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.default_int_handler)
    try:
        return pypi_bench.drive("runner", parser, args, tools, run_bench)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
