#!/usr/bin/python3
"""The compose files and Kubernetes manifests of deploy/, checked by the tools that read them,
offline.

ComposeTest: Debian's docker-compose (`config`) and podman-compose (which has no `config`: its
`--dry-run up` parses the file and prints the podman commands it would run, against a podman whose
state is in the test's own directory) accept deploy/compose/compose.yaml and compose.fleet.yaml;
what they make of them is checked (image, port 8585, a volume per instance at /var/lib/pantry,
HAProxy with deploy/haproxy/haproxy.cfg and every variable it reads); both refuse a file without
PANTRY_IMAGE, naming it.

KubernetesTest: deploy/kubernetes/*.yaml validated against the Kubernetes API schemas by
deploy/kubernetes/check/validate.mjs (npm's kubernetes-models, installed with `npm ci` into
BUILD_DIR/kubernetes-check once per package-lock.json), which also checks the references between
the objects, haproxy.cfg and the instances' pantry config (`pantry config check`); broken copies
of the manifests are refused with the problem named.

Usage: deploy_files_test.py PANTRY_BINARY BUILD_DIR [unittest args]
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
import daemons  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
COMPOSE = os.path.join(ROOT, "deploy", "compose")
KUBERNETES = os.path.join(ROOT, "deploy", "kubernetes")
HAPROXY_CFG = os.path.join(ROOT, "deploy", "haproxy", "haproxy.cfg")
IMAGE = "pantry:0.1.0"
PANTRY = None
BUILD_DIR = None


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=300, **kw)


def described(r):
    return f"{' '.join(r.args)}: exit {r.returncode}\n--- stdout:\n{r.stdout}\n--- stderr:\n{r.stderr}"


def haproxy_variables():
    """The environment variables deploy/haproxy/haproxy.cfg reads (outside its comments)."""
    with open(HAPROXY_CFG) as f:
        text = "".join(line.split("#", 1)[0] + "\n" for line in f)
    return sorted(set(re.findall(r"\$\{(\w+)(?:\[\*\])?\}", text)))


class ComposeTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="pantry-compose-test-")

    def tearDown(self):
        daemons.wipe(self.work)

    def docker_compose(self, name, image=IMAGE):
        env = daemons.client_env()
        env.pop("PANTRY_IMAGE", None)
        if image:
            env["PANTRY_IMAGE"] = image
        return run(["docker-compose", "-f", os.path.join(COMPOSE, name), "config"], env=env)

    def podman_compose(self, name, image=IMAGE):
        env = daemons.podman_env(os.path.join(self.work, "podman"))
        env.pop("PANTRY_IMAGE", None)
        if image:
            env["PANTRY_IMAGE"] = image
        return run(["podman-compose", "--dry-run", "-f", os.path.join(COMPOSE, name), "up", "-d"],
                   env=env, cwd=self.work)

    def podman_runs(self, r):
        """{service: the words of its `podman run` line} from podman-compose --dry-run."""
        runs = {}
        for line in r.stdout.splitlines():
            if line.startswith("podman run "):
                words = line.split()
                service = next(w.split("=", 1)[1] for w in words
                               if w.startswith("com.docker.compose.service="))
                runs[service] = words
        return runs

    def test_one_instance(self):
        r = self.docker_compose("compose.yaml")
        self.assertEqual(r.returncode, 0, described(r))
        config = yaml.safe_load(r.stdout)
        pantry = config["services"]["pantry"]
        self.assertEqual(pantry["image"], IMAGE, r.stdout)
        self.assertEqual([(p["published"], p["target"]) for p in pantry["ports"]], [(8585, 8585)],
                         r.stdout)
        self.assertEqual(pantry["volumes"], ["pantry-data:/var/lib/pantry:rw"], r.stdout)
        self.assertIn("pantry-data", config["volumes"], r.stdout)

        r = self.podman_compose("compose.yaml")
        self.assertEqual(r.returncode, 0, described(r))
        words = self.podman_runs(r).get("pantry")
        self.assertIsNotNone(words, described(r))
        self.assertEqual(words[-1], IMAGE, described(r))
        self.assertIn("-p 8585:8585", " ".join(words), described(r))
        self.assertTrue(any(w.endswith("_pantry-data:/var/lib/pantry") for w in words),
                        described(r))

    def test_fleet(self):
        r = self.docker_compose("compose.fleet.yaml")
        self.assertEqual(r.returncode, 0, described(r))
        config = yaml.safe_load(r.stdout)
        services = config["services"]
        self.assertEqual(sorted(services), ["haproxy", "pantry1", "pantry2", "pantry3"], r.stdout)
        for i in (1, 2, 3):
            self.assertEqual(services[f"pantry{i}"]["image"], IMAGE, r.stdout)
            self.assertEqual(services[f"pantry{i}"]["volumes"],
                             [f"pantry{i}-data:/var/lib/pantry:rw"], r.stdout)
        lb = services["haproxy"]
        self.assertEqual(lb["volumes"],
                         [f"{HAPROXY_CFG}:/usr/local/etc/haproxy/haproxy.cfg:ro"], r.stdout)
        self.assertEqual(sorted(lb["environment"]), haproxy_variables(), r.stdout)
        self.assertEqual([lb["environment"][f"PANTRY_{i}"] for i in (1, 2, 3)],
                         ["pantry1:8585", "pantry2:8585", "pantry3:8585"], r.stdout)

        r = self.podman_compose("compose.fleet.yaml")
        self.assertEqual(r.returncode, 0, described(r))
        runs = self.podman_runs(r)
        self.assertEqual(sorted(runs), ["haproxy", "pantry1", "pantry2", "pantry3"], described(r))
        self.assertIn(f"{HAPROXY_CFG}:/usr/local/etc/haproxy/haproxy.cfg:ro", runs["haproxy"],
                      described(r))
        for i in (1, 2, 3):
            self.assertEqual(runs[f"pantry{i}"][-1], IMAGE, described(r))
            self.assertIn(f"PANTRY_{i}=pantry{i}:8585", runs["haproxy"], described(r))

    def test_no_image_is_refused_by_name(self):
        for name in ("compose.yaml", "compose.fleet.yaml"):
            for r in (self.docker_compose(name, image=None), self.podman_compose(name, image=None)):
                self.assertNotEqual(r.returncode, 0, described(r))
                self.assertIn("set PANTRY_IMAGE", r.stdout + r.stderr, described(r))


class KubernetesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        """validate.mjs and its packages in BUILD_DIR/kubernetes-check: `npm ci` from the npm
        registry when package-lock.json changed, else what the last run installed."""
        cls.check = os.path.join(BUILD_DIR, "kubernetes-check")
        source = os.path.join(KUBERNETES, "check")
        os.makedirs(cls.check, exist_ok=True)
        stamp = os.path.join(cls.check, "node_modules", ".package-lock.json")
        with open(os.path.join(source, "package-lock.json")) as f:
            lock = f.read()
        installed = None
        if os.path.exists(stamp):
            with open(os.path.join(cls.check, "package-lock.json")) as f:
                installed = f.read()
        for name in ("package.json", "package-lock.json", "validate.mjs"):
            shutil.copyfile(os.path.join(source, name), os.path.join(cls.check, name))
        if installed != lock:
            npm = shutil.which("npm")
            if npm is None:
                raise RuntimeError("npm is missing: install the Debian package npm (or a nodejs "
                                   "that carries npm); scripts/debian-packages.txt")
            r = run([npm, "ci", "--no-audit", "--no-fund"], cwd=cls.check)
            if r.returncode != 0:
                raise RuntimeError(f"npm ci in {cls.check} failed:\n{described(r)}")
        cls.manifests = sorted(os.path.join(KUBERNETES, f) for f in os.listdir(KUBERNETES)
                               if f.endswith(".yaml"))

    def validate(self, *files, pantry=True):
        cmd = ["node", os.path.join(self.check, "validate.mjs"), "--haproxy-cfg", HAPROXY_CFG]
        if pantry:
            cmd += ["--pantry", PANTRY]
        return run(cmd + list(files))

    def test_manifests_are_valid(self):
        self.assertEqual([os.path.basename(f) for f in self.manifests],
                         ["haproxy.yaml", "pantry.yaml"])
        r = self.validate(*self.manifests)
        self.assertEqual(r.returncode, 0, described(r))
        valid = sorted(re.findall(r"^valid: \S+: (\S+)$", r.stdout, re.M))
        self.assertEqual(valid, ["ConfigMap/pantry-config", "ConfigMap/pantry-haproxy",
                                 "Deployment/pantry-haproxy", "Service/pantry",
                                 "Service/pantry-pods", "StatefulSet/pantry"], described(r))

    def broken(self, edits):
        """The manifests, with copies of those EDITS names ({file name: [(old, new)]}) in which
        each old text is replaced once."""
        work = tempfile.mkdtemp(prefix="pantry-k8s-test-")
        self.addCleanup(shutil.rmtree, work, True)
        files = []
        for m in self.manifests:
            name = os.path.basename(m)
            if name not in edits:
                files.append(m)
                continue
            with open(m) as f:
                text = f.read()
            for old, new in edits[name]:
                self.assertIn(old, text)
                text = text.replace(old, new, 1)
            files.append(os.path.join(work, name))
            with open(files[-1], "w") as f:
                f.write(text)
        return files

    def test_schema_errors_are_named(self):
        files = self.broken({"pantry.yaml": [("replicas: 3", 'replicas: "three"'),
                                             ("storage: 64Gi", "storage: [64Gi]")]})
        r = self.validate(*files, pantry=False)
        self.assertEqual(r.returncode, 1, described(r))
        self.assertIn("StatefulSet/pantry: data/spec/replicas must be integer", r.stderr,
                      described(r))
        self.assertIn("volumeClaimTemplates/0/spec/resources/requests/storage", r.stderr,
                      described(r))

    def test_broken_references_are_named(self):
        files = self.broken({"pantry.yaml": [("path: /readyz", "path: /ready"),
                                             ("targetPort: http", "targetPort: web"),
                                             ("subPath: pantry.yaml", "subPath: config.yaml"),
                                             ("serviceName: pantry-pods", "serviceName: pantry")]})
        r = self.validate(*files, pantry=False)
        self.assertEqual(r.returncode, 1, described(r))
        for expected in ('readinessProbe must GET /readyz, not "/ready"',
                         'targetPort "web" is no port of StatefulSet/pantry',
                         "takes key config.yaml of ConfigMap pantry-config",
                         "serviceName pantry must be a headless Service"):
            self.assertIn(expected, r.stderr, described(r))

    def test_haproxy_config_and_replicas_must_agree(self):
        files = self.broken({"haproxy.yaml": [("timeout connect 5s", "timeout connect 9s")],
                             "pantry.yaml": [("replicas: 3", "replicas: 4")]})
        r = self.validate(*files, pantry=False)
        self.assertEqual(r.returncode, 1, described(r))
        self.assertIn("haproxy.cfg differs from", r.stderr, described(r))
        self.assertIn("replicas 4, but", r.stderr, described(r))

    def test_pantry_config_is_checked_by_pantry(self):
        files = self.broken({"pantry.yaml": [("max_size: 40GiB", "max_size: 40 gigabytes")]})
        r = self.validate(*files)
        self.assertEqual(r.returncode, 1, described(r))
        self.assertIn("ConfigMap/pantry-config: key pantry.yaml:", r.stderr, described(r))
        self.assertIn("40 gigabytes", r.stderr, described(r))


if __name__ == "__main__":
    PANTRY = os.path.abspath(sys.argv[1])
    BUILD_DIR = os.path.abspath(sys.argv[2])
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
