#!/usr/bin/python3
"""Real container clients pull through pantry's registry proxy (/v2/).

A docker-registry started here (tests/fixtures/oci_registry.py) holds images built offline
(tests/fixtures/make_oci_images.py); pantry proxies it twice: as `docker.io` (also the default
upstream) and as `registry.example`, the second registry that clients reach as a mirror under
`pantry/registry.example/...` (podman, skopeo), by containerd's `?ns=registry.example`, or as
`PANTRY/registry.example/NAME` (docker, which mirrors only Docker Hub).

  podman      [[registry.mirror]] in a registries.conf of the test's own; pull, inspect, run
  dockerd     started here with "registry-mirrors" and "insecure-registries"; pull, run
  containerd  started here; ctr images pull --hosts-dir (hosts.toml per registry); ctr run
  skopeo      the podman registries.conf (--registries-conf); copy and inspect

pantry also hosts local/ with one user (oci.hosted.users: ci) and so challenges /v2/:

  docker      login with a wrong token fails, with the right one succeeds (DOCKER_CONFIG in the
              temp dir); push to local/app; removed, pulled back (same image ID) and run;
              logged out, a push is refused
  podman      the same with podman login --tls-verify=false (REGISTRY_AUTH_FILE in the temp dir)
              and podman push --creds; without --tls-verify=false the push fails (HTTPS)
  anonymous   skopeo pushes an OCI index (--dest-creds); podman and docker, with no
              credentials, pull it and what the other two pushed, and run them

Then the upstream is stopped, every client's storage is wiped, and everything is pulled (and
run) again: it must all come from pantry's cache (oci.tag_ttl is 1s, so tags are served stale).

Run by ctest with the pantry binary as the first argument:
    tests/integration/oci_clients_test.py build/asan/cli/pantry
KEEP=1 keeps the temp dir (configs, logs of pantry, docker-registry, dockerd, containerd).
Needs root and the Debian packages podman, docker.io, containerd, runc (listed in
scripts/debian-packages.txt); a client whose binary is missing is skipped, saying so.
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
import make_oci_images as moi  # noqa: E402
import oci_registry  # noqa: E402
from daemons import (CONTAINERD, DOCKER, DOCKERD, RUNC, Daemon, Dockerd,  # noqa: E402
                     client_env, kill_strays, mounts_under, podman_env, remove_cgroups, tail,
                     unmount_all, wipe)
from pantry_serve import Pantry  # noqa: E402

PANTRY = None
# Debian's binaries by path: a machine may have other builds earlier on PATH (e.g. a
# /usr/local/bin/docker that is not Debian's). dockerd, docker, containerd and runc: daemons.py.
PODMAN = "/usr/bin/podman"
CTR = "/usr/bin/ctr"
SKOPEO = "/usr/bin/skopeo"
CMD_TIMEOUT = 120
# The one user of oci.hosted.users: pushes to local/..., pulling stays anonymous.
USER = "ci"
TOKEN = "3f9c0c2e6d0b47d1a1c5e8b2"
WRONG_TOKEN = "3f9c0c2e6d0b47d1a1c5e8b3"

# pantry's access log: "[time] [info] 127.0.0.1:43802 GET /v2/x/manifests/1.36 200 349 21.477 MISS"
PANTRY_LINE = re.compile(r"\] \[info\] (?P<peer>\S+) (?P<method>\S+) (?P<target>\S+) "
                         r"(?P<status>\d{3}) (?P<bytes>\d+) (?P<ms>[\d.]+) (?P<outcome>\S+)$")


# ---------------------------------------------------------------------------------------------
# processes, mounts, files
# ---------------------------------------------------------------------------------------------

class CommandFailed(AssertionError):
    pass


def run(cmd, env=None, timeout=CMD_TIMEOUT, check=True, context="", input=None):
    """subprocess.run with text output (INPUT on its stdin, else none); a failure (or timeout)
    raises CommandFailed with the command, its output and CONTEXT (a callable or a string:
    pantry's log tail, say)."""
    stdin = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                           **stdin)
    except subprocess.TimeoutExpired as e:
        raise CommandFailed(f"{' '.join(cmd)}: no answer within {timeout} s\nstdout: "
                            f"{e.stdout}\nstderr: {e.stderr}\n{_context(context)}") from None
    if check and r.returncode != 0:
        raise CommandFailed(f"{' '.join(cmd)} failed ({r.returncode}):\nstdout: {r.stdout}\n"
                            f"stderr: {r.stderr}\n{_context(context)}")
    return r


def _context(context):
    return context() if callable(context) else context


# containerd's namespace for this run. Its containers' cgroups go under /<namespace> in every
# hierarchy, and containerd leaves that directory behind: remove_cgroups() does.
CTR_NAMESPACE = f"pantry-test-{os.getpid()}"


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


# ---------------------------------------------------------------------------------------------
# the test
# ---------------------------------------------------------------------------------------------

class OciClientsTest(unittest.TestCase):
    """Ordered: test_a..d pull with the upstream up (each client from empty storage), test_e..g
    push to and pull from pantry's hosted repositories, test_z pulls with the upstream down.
    test_z pulls with the upstream up first for a client whose test did not run."""

    @classmethod
    def setUpClass(cls):
        cls.cleanups = []  # run in reverse by tearDownClass, whatever failed
        cls.work = tempfile.mkdtemp(prefix="pantry-oci-clients-test-")
        try:
            cls._set_up()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _set_up(cls):
        started = time.monotonic()
        images = moi.build(os.path.join(cls.work, "images"))["images"]
        cls.registry = oci_registry.Registry("open", os.path.join(cls.work, "registry"))
        cls.cleanups.append(cls.registry.close)
        reg = cls.registry
        # name as clients write it -> (upstream name, repository upstream, built image)
        cls.images = {
            # An OCI image manifest (umoci's, without mediaType) on Docker Hub's library/.
            "busybox": ("docker.io", "library/busybox:1.36", images["busybox"]),
            # A Docker manifest list of two schema 2 images, as most of Docker Hub is.
            "app": ("docker.io", "team/app:2.0", images["multi_schema2"]),
            # An OCI index on the second registry.
            "multi": ("registry.example", "team/multi:1.0", images["multi"]),
        }
        for _, repo_tag, image in cls.images.values():
            pushed = reg.push(image["layout"], image["tag"], repo_tag)
            assert pushed == image["digest"], (repo_tag, pushed, image["digest"])
        cls.pantry = Pantry(PANTRY, os.path.join(cls.work, "pantry"), "http://127.0.0.1:9/simple/",
                            upstream_timeouts="connect_timeout: 2s, header_timeout: 10s, "
                                              "idle_timeout: 10s",
                            oci=f"""  default_upstream: docker.io
  upstreams:
    - {{ name: docker.io, url: "{reg.url}" }}
    - {{ name: registry.example, url: "{reg.url}" }}
  tag_ttl: 1s
  hosted:
    prefix: local/
    users: [ {{ name: {USER}, token: "{TOKEN}" }} ]
""")
        cls.cleanups.append(cls.stop_pantry)
        cls.port = cls.pantry.port
        cls.host = f"127.0.0.1:{cls.port}"
        cls.pulled = set()  # clients that pulled everything with the upstream up
        cls.pushed = {}  # client -> (reference, manifest digest, config digest) it pushed
        cls.timings = {"setup": time.monotonic() - started}

    @classmethod
    def stop_pantry(cls):
        code = cls.pantry.stop()
        if code not in (0, None):
            # Reported by tearDownClass: a crash at shutdown (ASan, say) is a pantry bug.
            with open(cls.pantry.log_path, errors="replace") as f:
                lines = f.readlines()
            start = next((i for i, line in enumerate(lines) if "ERROR: AddressSanitizer" in line
                          or "runtime error:" in line), max(0, len(lines) - 40))
            report = [line[:300] for line in lines[start:start + 40]]
            report += [line for line in lines[start + 40:] if line.startswith("SUMMARY:")]
            cls.pantry_exit = (code, "".join(report))

    @classmethod
    def tearDownClass(cls):
        errors = []
        for cleanup in reversed(cls.cleanups):
            try:
                cleanup()
            except Exception as e:  # keep cleaning
                errors.append(f"{cleanup}: {e!r}")
        cls.cleanups = []
        left = mounts_under(cls.work)
        if left:
            unmount_all(cls.work)
        strays = kill_strays(cls.work)
        if os.environ.get("KEEP"):
            print(f"\nkept {cls.work}", file=sys.stderr)
        else:
            shutil.rmtree(cls.work, ignore_errors=True)
        timings = {k: round(v, 1) for k, v in getattr(cls, "timings", {}).items()}
        print(f"\ntimings (s): {json.dumps(timings)}", file=sys.stderr)
        exit_info = getattr(cls, "pantry_exit", None)
        if left:
            errors.append(f"mounts left under {cls.work}: {left}")
        if strays:
            errors.append(f"processes left running (killed): {strays}")
        if exit_info:
            errors.append(f"pantry exited with {exit_info[0]}:\n{exit_info[1]}")
        if errors:
            raise AssertionError("after the tests: " + "\n".join(errors))

    # -- helpers --

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    def context(self):
        """What a failing assertion prints besides its values: pantry's log tail."""
        return (f"--- pantry log tail ({self.pantry.log_path}):\n{self.pantry.tail(40)}"
                f"--- docker-registry access log tail:\n{tail(self.registry.access_log, 10)}")

    def cmd(self, cmd, env=None, timeout=CMD_TIMEOUT, extra=lambda: "", check=True, input=None):
        return run(cmd, env=env or client_env(), timeout=timeout, check=check, input=input,
                   context=lambda: extra() + self.context())

    def need(self, *binaries):
        missing = [b for b in binaries if not os.access(b, os.X_OK)]
        if missing:
            self.skipTest(f"{', '.join(missing)} not installed (Debian packages in "
                          "scripts/debian-packages.txt)")

    def pantry_lines(self):
        """pantry's log, once it has not grown for 50 ms (it logs a request after answering)."""
        size = -1
        while size != os.path.getsize(self.pantry.log_path):
            size = os.path.getsize(self.pantry.log_path)
            time.sleep(0.05)
        with open(self.pantry.log_path, errors="replace") as f:
            return f.readlines()

    def pantry_requests(self, since=0):
        """pantry's access log entries from line SINCE on: dicts method, target, path, query,
        status, outcome."""
        entries = []
        lines = self.pantry_lines()
        for line in lines[since:]:
            m = PANTRY_LINE.search(line.rstrip("\n"))
            if m:
                e = m.groupdict()
                e["status"] = int(e["status"])
                e["path"], _, e["query"] = e["target"].partition("?")
                entries.append(e)
        return entries

    def pantry_mark(self):
        """The number of log lines so far: pass it as since= to see only what follows."""
        return len(self.pantry_lines())

    def expected(self, name):
        """(top manifest digest, linux/amd64 config digest, {blob: size} of linux/amd64)."""
        image = self.images[name][2]
        amd64 = image["manifests"]["linux/amd64"] if "manifests" in image else image
        blobs = {amd64["config"]["digest"]: amd64["config"]["size"]}
        blobs.update({layer["digest"]: layer["size"] for layer in amd64["layers"]})
        return image["digest"], amd64["config"]["digest"], blobs

    def repo(self, name, ns=False):
        """(repository, tag) of image NAME in the /v2/ paths a client sends pantry: a mirror of
        the second registry is under its name, unless the client says it with ?ns= (containerd)."""
        upstream, repo_tag, _ = self.images[name]
        repo, tag = repo_tag.split(":")
        return (repo if upstream == "docker.io" or ns else f"{upstream}/{repo}"), tag

    def check_through_pantry(self, client, since, names, ns=False):
        """Since pantry log line SINCE: every /v2/ answer was 2xx (but the 401 challenge of
        /v2/ itself); each image of NAMES had its tag asked for under its repository (see
        repo()), with ?ns=<registry> on every request when NS; every blob of their linux/amd64
        images was fetched (a client fetches a blob it already has from another image once).
        Returns the /v2/ requests."""
        requests = [e for e in self.pantry_requests(since) if e["path"].startswith("/v2/")]
        shown = "\n".join(f"  {e['method']} {e['target']} {e['status']} {e['outcome']}"
                          for e in requests)
        self.assertTrue(requests, f"{client}: no /v2/ request reached pantry\n{self.context()}")
        # oci.hosted.users is set: /v2/ challenges a client without a token, which then gets
        # an anonymous one from /auth/token.
        failed = [e for e in requests if e["status"] >= 300
                  and not (e["path"] == "/v2/" and e["status"] == 401)]
        self.assertEqual(failed, [], f"{client}: pantry answered these with errors:\n{shown}\n"
                                     f"{self.context()}")
        asked = {e["path"] for e in requests}
        for name in names:
            repo, tag = self.repo(name, ns)
            self.assertIn(f"/v2/{repo}/manifests/{tag}", asked, f"{client}: {name} not pulled "
                                                               f"as {repo}:{tag}:\n{shown}")
            if ns:
                upstream = self.images[name][0]
                wrong = [e["target"] for e in requests if e["path"].startswith(f"/v2/{repo}/")
                         and e["query"] != f"ns={upstream}"]
                self.assertEqual(wrong, [], f"{client}: requests for {name} without ?ns={upstream}")
        fetched = {e["path"].rsplit("/", 1)[1] for e in requests
                   if e["method"] == "GET" and "/blobs/" in e["path"]}
        wanted = set()
        for name in names:
            wanted |= set(self.expected(name)[2])
        self.assertEqual(wanted - fetched, set(),
                         f"{client}: blobs never fetched from pantry:\n{shown}")
        return requests

    def check_upstream_blob_gets_once(self):
        """However many clients pulled, pantry fetched each blob from the upstream once."""
        counts = {}
        for e in self.registry.entries():
            if e["method"] == "GET" and "/blobs/" in e["path"] and e["status"] == 200:
                digest = e["path"].rsplit("/", 1)[1]
                counts[digest] = counts.get(digest, 0) + 1
        twice = {d: n for d, n in counts.items() if n > 1}
        log = [(e["method"], e["uri"]) for e in self.registry.entries()]
        self.assertEqual(twice, {}, f"blobs pantry fetched more than once from the upstream: {log}")

    def check_run(self, client, out, expected):
        self.assertEqual(out.strip(), expected, f"{client}: the container printed {out!r}")

    # ---- podman (and skopeo: same registries.conf) ----

    def podman_env(self):
        return podman_env(self.path("podman"), registries_conf=f"""\
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"

# Docker Hub through pantry: pantry proxies docker.io at its root.
[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "{self.host}"
insecure = true

# Another registry through pantry: under its name.
[[registry]]
prefix = "registry.example"
location = "registry.example"
[[registry.mirror]]
location = "{self.host}/registry.example"
insecure = true
""")

    def podman(self, *args, timeout=CMD_TIMEOUT, input=None):
        return self.podman_try(*args, timeout=timeout, input=input, check=True).stdout

    def podman_try(self, *args, timeout=CMD_TIMEOUT, input=None, check=False, env=None):
        """podman ARGS; the CompletedProcess, a failure not raised unless CHECK."""
        d = self.path("podman")
        # runc's container state under the temp dir too (else /run/runc/<id>).
        return self.cmd([PODMAN, "--root", f"{d}/root", "--runroot", f"{d}/run",
                         "--storage-driver", "overlay", "--runtime-flag", f"root={d}/run/runc",
                         *args], env=env or self.podman_env(), timeout=timeout, check=check,
                        input=input)

    def podman_pull_all(self):
        refs = {"busybox": "docker.io/library/busybox:1.36", "app": "docker.io/team/app:2.0",
                "multi": "registry.example/team/multi:1.0"}
        since = self.pantry_mark()
        for name, ref in refs.items():
            image_id = self.podman("pull", "--quiet", ref).strip().splitlines()[-1]
            digest, config, _ = self.expected(name)
            self.assertEqual("sha256:" + image_id, config, f"podman pull {ref}: image ID")
            # app's and multi's linux/amd64 images are one image (same config): its
            # RepoDigests name both; "Digest" is the first pull's.
            got = json.loads(self.podman("image", "inspect", ref))[0]
            self.assertIn(f"{ref.rsplit(':', 1)[0]}@{digest}", got["RepoDigests"],
                          f"podman image inspect {ref}")
        self.check_through_pantry("podman", since, list(refs))
        self.check_run("podman", self.podman("run", "--rm", "--network", "none",
                                             refs["busybox"], "echo", "hi"), "hi")
        self.check_run("podman", self.podman("run", "--rm", "--network", "none", refs["multi"],
                                             "cat", "/etc/platform"), "linux/amd64")

    def test_a_podman(self):
        self.need(PODMAN, RUNC)
        started = time.monotonic()
        self.podman_pull_all()
        self.pulled.add("podman")
        self.timings["podman"] = time.monotonic() - started

    # ---- dockerd ----

    def dockerd_start(self):
        # Docker Hub through pantry as its mirror; pantry answers plain HTTP (daemons.Dockerd).
        daemon = Dockerd(self.path("docker"), insecure_registries=[self.host],
                         registry_mirrors=[f"http://{self.host}"])
        type(self).dockerd = daemon
        type(self).docker_env = daemon.env
        self.cleanups.append(self.dockerd_stop)
        return daemon

    @classmethod
    def dockerd_stop(cls):
        daemon = getattr(cls, "dockerd", None)
        if daemon is None:
            return
        cls.dockerd = None
        problems = daemon.stop()
        if problems:
            raise AssertionError(f"dockerd left {'; '.join(problems)}")

    def docker(self, *args, timeout=CMD_TIMEOUT, input=None):
        return self.docker_try(*args, timeout=timeout, input=input, check=True).stdout

    def docker_try(self, *args, timeout=CMD_TIMEOUT, input=None, check=False):
        """docker ARGS; the CompletedProcess, a failure not raised unless CHECK."""
        return self.cmd([DOCKER, *args], env=self.docker_env, timeout=timeout, check=check,
                        input=input,
                        extra=lambda: f"--- dockerd log tail:\n{self.dockerd.tail(15)}")

    def docker_pull_all(self):
        # Docker Hub names go to the mirror; other registries' images are pulled from pantry
        # by its address (dockerd mirrors only Docker Hub).
        refs = {"busybox": "busybox:1.36", "app": "team/app:2.0",
                "multi": f"{self.host}/registry.example/team/multi:1.0"}
        since = self.pantry_mark()
        for name, ref in refs.items():
            self.docker("pull", "--quiet", ref)
            digest, config, _ = self.expected(name)
            got = json.loads(self.docker("image", "inspect", ref))[0]
            self.assertEqual(got["Id"], config, f"docker image inspect {ref}: {got}")
            self.assertIn(f"{ref.rsplit(':', 1)[0]}@{digest}", got["RepoDigests"],
                          f"docker image inspect {ref}")
        self.check_through_pantry("docker", since, list(refs))
        self.check_run("docker", self.docker("run", "--rm", "--network", "none", "busybox:1.36",
                                             "echo", "hi"), "hi")
        self.check_run("docker", self.docker("run", "--rm", "--network", "none", refs["multi"],
                                             "cat", "/etc/platform"), "linux/amd64")

    def test_b_dockerd(self):
        self.need(DOCKERD, DOCKER, CONTAINERD, RUNC)
        started = time.monotonic()
        if not getattr(self, "dockerd", None):
            self.dockerd_start()
        self.timings["dockerd start"] = time.monotonic() - started
        self.docker_pull_all()
        self.pulled.add("docker")
        self.timings["docker"] = time.monotonic() - started

    # ---- containerd ----

    def containerd_start(self):
        d = self.path("containerd")
        sock = f"{d}/containerd.sock"
        config = write(f"{d}/config.toml", f"""\
version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
""")
        # One hosts.toml per registry: pull and resolve through pantry over plain HTTP.
        # containerd adds ?ns=<registry> to mirror requests, which pantry routes on.
        for registry, server in (("docker.io", "https://registry-1.docker.io"),
                                 ("registry.example", "https://registry.example")):
            write(f"{d}/certs.d/{registry}/hosts.toml", f"""\
server = "{server}"

[host."http://{self.host}"]
  capabilities = ["pull", "resolve"]
""")
        self.ctr_base = [CTR, "--address", sock, "--namespace", CTR_NAMESPACE]

        def ready():
            return os.path.exists(sock) and run([*self.ctr_base, "version"], env=client_env(),
                                                check=False, timeout=10).returncode == 0
        daemon = Daemon("containerd", [CONTAINERD, "--config", config], d, ready)
        type(self).containerd = daemon
        self.cleanups.append(self.containerd_stop)
        return daemon

    @classmethod
    def containerd_stop(cls):
        daemon = getattr(cls, "containerd", None)
        if daemon is None:
            return
        cls.containerd = None
        strays = daemon.stop()
        left = unmount_all(daemon.workdir)
        cgroups = remove_cgroups(CTR_NAMESPACE)
        if strays or left or cgroups:
            raise AssertionError(f"containerd left processes {strays}, mounts {left} and cgroups "
                                 f"{cgroups}")

    def ctr(self, *args, timeout=CMD_TIMEOUT):
        extra = lambda: f"--- containerd log tail:\n{self.containerd.tail(15)}"  # noqa: E731
        return self.cmd([*self.ctr_base, *args], timeout=timeout, extra=extra).stdout

    def ctr_images(self):
        """{ref: digest} of `ctr images ls`."""
        lines = self.ctr("images", "ls").splitlines()[1:]
        return {line.split()[0]: line.split()[2] for line in lines if line.strip()}

    def containerd_pull_all(self):
        hosts_dir = self.path("containerd", "certs.d")
        refs = {"busybox": "docker.io/library/busybox:1.36", "app": "docker.io/team/app:2.0",
                "multi": "registry.example/team/multi:1.0"}
        since = self.pantry_mark()
        for ref in refs.values():
            self.ctr("images", "pull", "--hosts-dir", hosts_dir, ref)
        self.check_through_pantry("containerd", since, list(refs), ns=True)
        got = self.ctr_images()
        self.assertEqual(got, {ref: self.expected(name)[0] for name, ref in refs.items()},
                         "ctr images ls")
        # ctr run: its own network namespace with only loopback; fifos and runc's state in the
        # temp dir (by default /run/containerd/fifo and /run/containerd/runc/<namespace>).
        run_flags = ["--rm", "--fifo-dir", self.path("containerd", "state", "fifo"),
                     "--runc-root", self.path("containerd", "state", "runc")]
        self.check_run("containerd", self.ctr("run", *run_flags, refs["busybox"],
                                              "pantry-test-echo", "echo", "hi"), "hi")
        self.check_run("containerd", self.ctr("run", *run_flags, refs["multi"], "pantry-test-cat",
                                              "cat", "/etc/platform"), "linux/amd64")

    def test_c_containerd(self):
        self.need(CONTAINERD, CTR, RUNC)
        started = time.monotonic()
        if not getattr(self, "containerd", None):
            self.containerd_start()
        self.containerd_pull_all()
        self.pulled.add("containerd")
        self.timings["containerd"] = time.monotonic() - started

    # ---- skopeo ----

    def skopeo_pull_all(self):
        env = self.podman_env()
        conf = env["CONTAINERS_REGISTRIES_CONF"]
        out = self.path("skopeo")
        wipe(out)
        os.makedirs(out)
        refs = {"busybox": "docker.io/library/busybox:1.36", "app": "docker.io/team/app:2.0",
                "multi": "registry.example/team/multi:1.0"}
        since = self.pantry_mark()
        for name, ref in refs.items():
            digest = self.expected(name)[0]
            # dir: keeps the manifest bytes; --all: every platform.
            self.cmd([SKOPEO, "--registries-conf", conf, "copy", "--quiet", "--all",
                      "--digestfile", f"{out}-{name}.digest", f"docker://{ref}",
                      f"dir:{out}/{name}"], env=env)
            with open(f"{out}-{name}.digest") as f:
                self.assertEqual(f.read().strip(), digest, f"skopeo copy {ref}")
            # inspect goes through the mirror only with --no-tags (tag lists go to the
            # registry itself); --raw lists none.
            raw = self.cmd([SKOPEO, "--registries-conf", conf, "inspect", "--raw",
                            f"docker://{ref}"], env=env).stdout
            self.assertEqual(oci_registry.digest_of(raw.encode()), digest,
                             f"skopeo inspect --raw {ref}")
        # Without a registries.conf: pantry by its address, the registry as the first component.
        direct = self.cmd([SKOPEO, "inspect", "--no-tags", "--tls-verify=false",
                           f"docker://{self.host}/registry.example/team/multi:1.0"], env=env).stdout
        self.assertEqual(json.loads(direct)["Digest"], self.expected("multi")[0], direct)
        # skopeo keeps nothing between copies: every blob of each image, for every platform.
        requests = self.check_through_pantry("skopeo", since, list(refs))
        for name in refs:
            repo, _ = self.repo(name)
            fetched = {e["path"].rsplit("/", 1)[1] for e in requests
                       if e["path"].startswith(f"/v2/{repo}/blobs/")}
            self.assertEqual(set(self.images[name][2]["blobs"]) - fetched, set(),
                             f"skopeo copy --all {name}: blobs not fetched under /v2/{repo}/")

    def test_d_skopeo(self):
        self.need(SKOPEO)
        started = time.monotonic()
        self.skopeo_pull_all()
        self.pulled.add("skopeo")
        self.timings["skopeo"] = time.monotonic() - started

    # ---- pushing to pantry's own repositories (oci.hosted) ----

    def answers(self, since):
        """(method, path, status) of pantry's access log since line SINCE."""
        return [(e["method"], e["path"], e["status"]) for e in self.pantry_requests(since)]

    def check_login_refused(self, client, r, since, saved):
        """A login with WRONG_TOKEN: the client failed, pantry's token endpoint refused it (no
        token issued), and the client saved nothing."""
        answers = self.answers(since)
        self.assertNotEqual(r.returncode, 0, f"{client} login with a wrong token succeeded:\n"
                                             f"{r.stdout}{r.stderr}\n{answers}\n{self.context()}")
        self.assertIn(("GET", "/auth/token", 401), answers, f"{client} login: {r.stderr}")
        self.assertNotIn(("GET", "/auth/token", 200), answers, f"{client} login: {r.stderr}")
        self.assertNotIn(self.host, saved(), f"{client} saved credentials pantry refused")

    def check_login_accepted(self, client, out, since, saved):
        """A login with TOKEN: pantry issued a token and /v2/ took it."""
        answers = self.answers(since)
        self.assertIn("Login Succeeded", out, f"{client} login")
        self.assertIn(("GET", "/auth/token", 200), answers, f"{client} login:\n{self.context()}")
        self.assertIn(("GET", "/v2/", 200), answers, f"{client} login:\n{self.context()}")
        self.assertIn(self.host, saved(), f"{client} login saved no credentials")

    def check_push(self, client, since, repo, tag):
        """Since pantry log line SINCE: the manifest was put (201) and nothing failed but the
        challenges a client answers by getting a token (and the HEADs of blobs not there yet).
        Returns (digest, manifest) of what pantry keeps."""
        # Not the clients' attempts at HTTPS first (logged as a 400 without a method).
        requests = [e for e in self.pantry_requests(since)
                    if e["path"].startswith(("/v2/", "/auth/"))]
        shown = "\n".join(f"  {e['method']} {e['target']} {e['status']}" for e in requests)
        self.assertIn(("PUT", f"/v2/{repo}/manifests/{tag}", 201), self.answers(since),
                      f"{client} push:\n{shown}\n{self.context()}")
        failed = [e for e in requests if e["status"] >= 400 and not (
            e["status"] == 401 and e["method"] in ("GET", "HEAD", "POST"))
            and not (e["status"] == 404 and e["method"] == "HEAD" and "/blobs/" in e["path"])]
        self.assertEqual(failed, [], f"{client} push: pantry refused:\n{shown}")
        return self.hosted_manifest(repo, tag)

    def hosted_manifest(self, repo, tag):
        """(digest, manifest) of REPO:TAG as pantry serves it to an anonymous client."""
        status, headers, body = self.pantry.fetch(f"/v2/{repo}/manifests/{tag}", {
            "Accept": f"{moi.OCI_MANIFEST}, {moi.OCI_INDEX}, {moi.DOCKER_MANIFEST}, "
                      "application/vnd.docker.distribution.manifest.list.v2+json"})
        self.assertEqual(status, 200, f"GET /v2/{repo}/manifests/{tag}: {body[:300]}")
        self.assertEqual(headers["Docker-Content-Digest"], oci_registry.digest_of(body))
        return headers["Docker-Content-Digest"], json.loads(body)

    def check_pull(self, client, since, repo, manifest):
        """Since pantry log line SINCE: every blob of MANIFEST (an image manifest) was fetched
        from REPO, every /v2/REPO/ answer was 2xx."""
        requests = [e for e in self.pantry_requests(since)
                    if e["path"].startswith(f"/v2/{repo}/")]
        shown = "\n".join(f"  {e['method']} {e['target']} {e['status']}" for e in requests)
        self.assertEqual([e for e in requests if e["status"] >= 300], [],
                         f"{client} pull of {repo}:\n{shown}")
        fetched = {e["path"].rsplit("/", 1)[1] for e in requests
                   if e["method"] == "GET" and "/blobs/" in e["path"]}
        wanted = {manifest["config"]["digest"]} | {layer["digest"] for layer in manifest["layers"]}
        self.assertEqual(wanted - fetched, set(), f"{client} pull: blobs not fetched:\n{shown}")

    def test_e_docker_login_push_pull(self):
        """README: docker login checks the token; docker push to local/; pull back; logged out,
        a push is refused."""
        self.need(DOCKERD, DOCKER, CONTAINERD, RUNC)
        started = time.monotonic()
        if not getattr(self, "dockerd", None):
            self.dockerd_start()
        config_json = os.path.join(self.docker_env["DOCKER_CONFIG"], "config.json")

        def saved():
            try:
                with open(config_json) as f:
                    return json.load(f).get("auths", {})
            except FileNotFoundError:
                return {}
        login = ("login", self.host, "-u", USER, "--password-stdin")
        since = self.pantry_mark()
        r = self.docker_try(*login, input=WRONG_TOKEN + "\n")
        self.check_login_refused("docker", r, since, saved)
        since = self.pantry_mark()
        self.check_login_accepted("docker", self.docker(*login, input=TOKEN + "\n"), since, saved)

        source = "busybox:1.36"  # through the mirror
        if self.docker_try("image", "inspect", source).returncode != 0:
            self.docker("pull", "--quiet", source)
        ref = f"{self.host}/local/app:1.0"
        self.docker("tag", source, ref)
        since = self.pantry_mark()
        out = self.docker("push", ref)
        digest, manifest = self.check_push("docker", since, "local/app", "1.0")
        self.assertIn(f"1.0: digest: {digest} ", out, "docker push")
        config = self.expected("busybox")[1]
        self.assertEqual(manifest["config"]["digest"], config, "docker pushed another image")

        # Gone from dockerd (both names), pulled back: the same image.
        self.docker("rmi", ref, source)
        since = self.pantry_mark()
        self.docker("pull", "--quiet", ref)
        got = json.loads(self.docker("image", "inspect", ref))[0]
        self.assertEqual(got["Id"], config, f"docker image inspect {ref}: {got}")
        self.assertIn(f"{self.host}/local/app@{digest}", got["RepoDigests"])
        self.check_pull("docker", since, "local/app", manifest)
        self.check_run("docker", self.docker("run", "--rm", "--network", "none", ref,
                                             "echo", "hi"), "hi")
        self.pushed["docker"] = (ref, digest, config)

        # Logged out: a push is refused (a new tag: the blobs are there, the manifest is not).
        self.docker("logout", self.host)
        self.assertNotIn(self.host, saved(), "docker logout")
        self.docker("tag", ref, f"{self.host}/local/app:1.1")
        since = self.pantry_mark()
        r = self.docker_try("push", f"{self.host}/local/app:1.1")
        answers = self.answers(since)
        self.assertNotEqual(r.returncode, 0, f"docker push, logged out: {r.stdout}\n{answers}")
        self.assertIn("unauthorized", r.stderr + r.stdout, "docker push, logged out")
        self.assertNotIn(("PUT", "/v2/local/app/manifests/1.1", 201), answers)
        status = self.pantry.fetch("/v2/local/app/manifests/1.1")[0]
        self.assertEqual(status, 404, "local/app:1.1 pushed without a login")
        self.timings["docker push"] = time.monotonic() - started

    def test_f_podman_login_push_pull(self):
        """README: podman login checks the token; podman push --creds to local/; pull back;
        without credentials a push is refused."""
        self.need(PODMAN, RUNC)
        started = time.monotonic()
        auth_file = self.podman_env()["REGISTRY_AUTH_FILE"]

        def saved():
            with open(auth_file) as f:
                return json.load(f).get("auths", {})
        login = ("login", "--tls-verify=false", "-u", USER, "--password-stdin", self.host)
        since = self.pantry_mark()
        r = self.podman_try(*login, input=WRONG_TOKEN + "\n")
        self.check_login_refused("podman", r, since, saved)
        since = self.pantry_mark()
        self.check_login_accepted("podman", self.podman(*login, input=TOKEN + "\n"), since, saved)

        source = "docker.io/library/busybox:1.36"  # through the mirror
        if self.podman_try("image", "exists", source).returncode != 0:
            self.podman("pull", "--quiet", source)
        ref = f"{self.host}/local/podman-app:1.0"
        creds = f"--creds={USER}:{TOKEN}"
        # pantry answers plain HTTP: without --tls-verify=false (or the registry `insecure`
        # in registries.conf) podman tries HTTPS and stops there.
        r = self.podman_try("push", creds, source, ref)
        self.assertNotEqual(r.returncode, 0, f"podman push over HTTPS to pantry: {r.stdout}")
        self.assertIn("server gave HTTP response to HTTPS client", r.stderr)
        since = self.pantry_mark()
        digest_file = self.path("podman", "push.digest")
        self.podman("push", "--quiet", "--tls-verify=false", creds, "--digestfile", digest_file,
                    source, ref)
        digest, manifest = self.check_push("podman", since, "local/podman-app", "1.0")
        with open(digest_file) as f:
            self.assertEqual(f.read().strip(), digest, "podman push --digestfile")
        config = self.expected("busybox")[1]
        self.assertEqual(manifest["config"]["digest"], config, "podman pushed another image")

        # Gone from podman's storage, pulled back (logged in): the same image.
        self.podman("rmi", source)
        self.assertNotEqual(self.podman_try("image", "exists", config).returncode, 0)
        since = self.pantry_mark()
        image_id = self.podman("pull", "--quiet", "--tls-verify=false", ref).split()[-1]
        self.assertEqual("sha256:" + image_id, config, f"podman pull {ref}: image ID")
        got = json.loads(self.podman("image", "inspect", ref))[0]
        self.assertIn(f"{self.host}/local/podman-app@{digest}", got["RepoDigests"])
        self.check_pull("podman", since, "local/podman-app", manifest)
        self.check_run("podman", self.podman("run", "--rm", "--network", "none", ref,
                                             "echo", "hi"), "hi")
        self.pushed["podman"] = (ref, digest, config)

        # Logged out, no --creds: a push is refused.
        self.podman("logout", self.host)
        self.assertNotIn(self.host, saved(), "podman logout")
        since = self.pantry_mark()
        r = self.podman_try("push", "--tls-verify=false", ref,
                            f"{self.host}/local/podman-app:1.1")
        answers = self.answers(since)
        self.assertNotEqual(r.returncode, 0, f"podman push, logged out: {r.stdout}\n{answers}")
        self.assertNotIn(("PUT", "/v2/local/podman-app/manifests/1.1", 201), answers)
        status = self.pantry.fetch("/v2/local/podman-app/manifests/1.1")[0]
        self.assertEqual(status, 404, "local/podman-app:1.1 pushed without a login")
        self.timings["podman push"] = time.monotonic() - started

    def test_g_anonymous_pull_of_hosted_images(self):
        """pull_auth false: podman and docker pull hosted images without logging in, among them
        an OCI index pushed by skopeo (the README's line) and what the other client pushed."""
        self.need(SKOPEO)
        started = time.monotonic()
        image = self.images["multi"][2]
        ref = f"{self.host}/local/multi:1.0"
        digest_file = self.path("skopeo-push.digest")
        since = self.pantry_mark()
        self.cmd([SKOPEO, "copy", "--quiet", "--all", "--dest-tls-verify=false",
                  f"--dest-creds={USER}:{TOKEN}", "--digestfile", digest_file,
                  f"oci:{image['layout']}:{image['tag']}", f"docker://{ref}"])
        digest, _ = self.check_push("skopeo", since, "local/multi", "1.0")
        with open(digest_file) as f:
            self.assertEqual(f.read().strip(), digest, "skopeo copy --digestfile")
        self.assertEqual(digest, image["digest"], "skopeo copy changed the index")
        amd64 = image["manifests"]["linux/amd64"]
        refs = {"skopeo": (ref, digest, amd64["config"]["digest"])}
        refs.update(self.pushed)
        expected_out = {"skopeo": ("cat", "/etc/platform", "linux/amd64"),
                        "docker": ("echo", "hi", "hi"), "podman": ("echo", "hi", "hi")}

        def check(client, empty, pull, inspect, run_image):
            for pusher, (ref, digest, config) in refs.items():
                with self.subTest(client=client, pushed_by=pusher):
                    repo = ref.split("/", 1)[1].rsplit(":", 1)[0]
                    # The images pushed by docker and podman are one image (busybox's config
                    # and layer, compressed by each): emptied, the client fetches every blob.
                    empty()
                    since = self.pantry_mark()
                    pulled_id = pull(ref)
                    got = inspect(ref)
                    self.assertEqual(got["Id"].removeprefix("sha256:"),
                                     config.removeprefix("sha256:"), f"{client} pull {ref}")
                    self.assertEqual(pulled_id.removeprefix("sha256:"),
                                     config.removeprefix("sha256:"), f"{client} pull {ref}")
                    self.assertIn(f"{ref.rsplit(':', 1)[0]}@{digest}", got["RepoDigests"])
                    # No credentials sent: an anonymous token (no account=), given.
                    tokens = [(e["query"], e["status"]) for e in self.pantry_requests(since)
                              if e["path"] == "/auth/token"]
                    self.assertTrue(tokens, f"{client} pull {ref}: no token asked for")
                    self.assertEqual([t for t in tokens if "account=" in t[0] or t[1] != 200],
                                     [], f"{client} pull {ref}: not anonymous")
                    wanted = (amd64 if pusher == "skopeo" else self.hosted_manifest(repo, "1.0")[1])
                    self.check_pull(client, since, repo, wanted)
                    cmd, arg, out = expected_out[pusher]
                    self.check_run(client, run_image(ref, cmd, arg), out)

        if os.access(PODMAN, os.X_OK) and os.access(RUNC, os.X_OK):
            # No credentials at all: an auth file of its own, empty.
            env = self.podman_env()
            env["REGISTRY_AUTH_FILE"] = write(self.path("podman", "anonymous.json"), "{}")

            def podman_empty():
                self.podman_try("rmi", "--all", "--force", env=env, check=True)

            def podman_pull(ref):
                return self.podman_try("pull", "--quiet", "--tls-verify=false", ref, env=env,
                                       check=True).stdout.split()[-1]

            def podman_inspect(ref):
                return json.loads(self.podman_try("image", "inspect", ref, env=env,
                                                  check=True).stdout)[0]

            def podman_run(ref, *cmd):
                return self.podman_try("run", "--rm", "--network", "none", ref, *cmd, env=env,
                                       check=True).stdout
            check("podman", podman_empty, podman_pull, podman_inspect, podman_run)
            with open(env["REGISTRY_AUTH_FILE"]) as f:
                self.assertEqual(json.load(f), {}, "podman saved credentials")

        if all(os.access(b, os.X_OK) for b in (DOCKERD, DOCKER, CONTAINERD, RUNC)):
            if not getattr(self, "dockerd", None):
                self.dockerd_start()
            self.docker("logout", self.host)  # logged out already if test_e ran

            def docker_empty():
                self.docker("image", "prune", "--all", "--force")

            def docker_pull(ref):
                self.docker("pull", "--quiet", ref)
                return self.docker("image", "inspect", "--format", "{{.Id}}", ref).strip()

            def docker_inspect(ref):
                return json.loads(self.docker("image", "inspect", ref))[0]

            def docker_run(ref, *cmd):
                return self.docker("run", "--rm", "--network", "none", ref, *cmd)
            check("docker", docker_empty, docker_pull, docker_inspect, docker_run)
        self.timings["anonymous pulls"] = time.monotonic() - started

    # ---- the upstream down ----

    def test_z_upstream_down_every_client_pulls_from_pantry_alone(self):
        clients = {
            "podman": ((PODMAN, RUNC), self.podman_pull_all),
            "docker": ((DOCKERD, DOCKER, CONTAINERD, RUNC), self.docker_pull_all),
            "containerd": ((CONTAINERD, CTR, RUNC), self.containerd_pull_all),
            "skopeo": ((SKOPEO,), self.skopeo_pull_all),
        }
        usable = {name: c for name, c in clients.items()
                  if all(os.access(b, os.X_OK) for b in c[0])}
        if not usable:
            self.skipTest("no container client installed")
        # A client whose own test did not run pulls once with the upstream up.
        for name, (_, pull_all) in usable.items():
            if name not in self.pulled:
                if name == "docker" and not getattr(self, "dockerd", None):
                    self.dockerd_start()
                if name == "containerd" and not getattr(self, "containerd", None):
                    self.containerd_start()
                pull_all()
        self.check_upstream_blob_gets_once()

        started = time.monotonic()
        self.registry.stop()
        try:
            # Past oci.tag_ttl (1s): every tag is expired, pantry must serve it stale.
            time.sleep(1.1)
            since = self.pantry_mark()
            for name, (_, pull_all) in usable.items():
                with self.subTest(client=name):
                    # Each client's storage wiped: everything must come over the network.
                    if name == "podman":
                        wipe(self.path("podman", "root"))
                        wipe(self.path("podman", "run"))
                    elif name == "docker":
                        self.dockerd_stop()
                        wipe(self.path("docker", "data"))
                        wipe(self.path("docker", "exec"))
                        self.dockerd_start()
                    elif name == "containerd":
                        self.containerd_stop()
                        wipe(self.path("containerd", "root"))
                        wipe(self.path("containerd", "state"))
                        self.containerd_start()
                    pull_all()
            requests = [e for e in self.pantry_requests(since) if e["path"].startswith("/v2/")]
            outcomes = {}
            for e in requests:
                outcomes.setdefault(e["outcome"], []).append(f"{e['method']} {e['target']}")
            self.assertNotIn("MISS", outcomes, f"pantry went upstream: {outcomes.get('MISS')}")
            self.assertIn("STALE", outcomes, "no tag served stale with the upstream down: "
                                             f"{json.dumps(outcomes, indent=1)}\n{self.context()}")
        finally:
            self.registry.start()
        self.timings["upstream down"] = time.monotonic() - started

        # The upstream back: an expired tag is revalidated with a HEAD, nothing fetched again.
        mark, since = self.registry.mark(), self.pantry_mark()
        ref = "docker://" + self.host + "/library/busybox:1.36"
        raw = self.cmd([SKOPEO, "inspect", "--raw", "--tls-verify=false", ref]).stdout
        self.assertEqual(oci_registry.digest_of(raw.encode()), self.expected("busybox")[0], ref)
        answers = [(e["method"], e["target"], e["status"], e["outcome"])
                   for e in self.pantry_requests(since) if e["path"].startswith("/v2/library/")]
        self.assertIn(("GET", "/v2/library/busybox/manifests/1.36", 200, "REVALIDATED"), answers)
        upstream = [(e["method"], e["uri"]) for e in self.registry.entries(mark)]
        self.assertEqual(upstream, [("HEAD", "/v2/library/busybox/manifests/1.36")],
                         "what pantry asked the upstream")


if __name__ == "__main__":
    if len(sys.argv) < 2 or not os.access(sys.argv[1], os.X_OK):
        sys.exit(f"usage: {sys.argv[0]} PANTRY_BINARY [unittest args]")
    PANTRY = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
