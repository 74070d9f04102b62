#!/usr/bin/python3
"""`pantry pins check` and `pantry pins bump` against pantry in front of a real nginx PyPI.

The fixture tree (make_pypi_upstream.py) has pantry-demo-util 0.9, 1.0 and 2.0 (Requires-Python
>=3.99), pantry-demo-lib 1.0, 1.1 and 1.2 (yanked; needs util), pantry-demo-app 1.0 (yanked), 1.1
and 2.0 (needs lib>=1.1); the test publishes pantry-pins-pre 1.0 and 1.1rc1, later 1.1. The
requirements files are hash-pinned as pip-compile writes them, in repositories the config's pins:
section names; the check must report each decision with its reasons and hashes, change no file,
and exit 0, 1 or 2 as `pantry pins check` promises; bump must make one branch with one commit per
upgrade in a git repository the test makes, leave its working tree alone, not make a branch twice,
and each branch's file must install with `pip install --require-hashes` through pantry.

A repository by URL (test_url_*): a bare repository behind `git http-backend` on a server the test
makes, which answers 401 without the token's header; bump clones it, pushes one branch per upgrade
and one branch for the group pantry-pytest-* (two pins, one commit), with the token only in git's
environment: not in any output, record, commit or process argument list (a git wrapper on PATH
logs each argv, and /proc is watched while bump runs). A wrong token and an unreachable server are
errors naming the URL that change no branch.

Image pins (PinsImageTest): a Containerfile pinned to a multi-arch image's index digest, behind
pantry's OCI proxy in front of docker-registry with a 1 s tag TTL; the tag is pushed again
upstream, and after the TTL check reports the new index digest and bump makes one branch whose
only change is that digest.

HTML-only upstreams (PinsHtmlIndexTest): two projects nginx serves as PEP 503 HTML whatever the
client accepts, so pantry's JSON page for them is API 1.0 without upload times; with
min_release_age set, one is decided with the upload times of its /pypi/<name>/json (through
pantry) and its 2.0 sdist, listed without a sha256, is downloaded and hashed; the other, with no
JSON API, is skipped with the reason.

Run by ctest with the pantry binary as the first argument:
    tests/integration/pins_test.py build/debug/cli/pantry
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
import make_oci_images  # noqa: E402
import git_http  # noqa: E402
import make_pypi_upstream  # noqa: E402
import nginx_pypi  # noqa: E402
import oci_registry  # noqa: E402
from make_pypi_upstream import Release  # noqa: E402
from pantry_serve import Pantry, clean_env, free_port  # noqa: E402

PANTRY = None
PYTHON = "/usr/bin/python3"
PRE = "pantry-pins-pre"
TOKEN = "pins-url-token-5e0c7a9d21f4"
# Two projects that the grouping rule "pantry-pytest-*" puts into one branch.
GROUPED = {"pantry-pytest-a": ("1.0", "1.1"), "pantry-pytest-b": ("2.0", "2.1")}


def pinned(manifest, project, version):
    """`project==version` with every file's hash, in pip-compile's layout."""
    hashes = sorted(f["sha256"] for f in manifest["files"]
                    if f["project"] == project and f["version"] == version)
    lines = [f"{project}=={version} \\"]
    lines += [f"    --hash=sha256:{h} \\" for h in hashes]
    lines[-1] = lines[-1][:-2]
    return "\n".join(lines) + "\n"


def line_of(text, start):
    """The 1-based number of the first line of `text` that starts with `start`."""
    return next(i + 1 for i, line in enumerate(text.splitlines()) if line.startswith(start))


def start_index(cls, prefix, html_only=()):
    """Sets cls.work (a new temporary directory), cls.tree (the fixture tree in it, served by
    nginx as cls.nginx, the projects in `html_only` as HTML only) and cls.manifest (the tree's
    manifest.json)."""
    cls.work = tempfile.mkdtemp(prefix=prefix)
    cls.tree = os.path.join(cls.work, "upstream")
    cls.nginx = nginx_pypi.start(cls.tree, build=True, html_only=html_only)
    with open(os.path.join(cls.tree, "manifest.json")) as f:
        cls.manifest = json.load(f)


def stop_index(cls):
    """Stops what start_index started and cls.pantry, and removes cls.work."""
    cls.pantry.stop()
    cls.nginx.stop()
    shutil.rmtree(cls.work, ignore_errors=True)


class PinsCheckTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        start_index(cls, "pantry-pins-test-")
        cls.pre_releases = [Release(PRE, "1.0"), Release(PRE, "1.1rc1")]
        cls.pre_hashes = make_pypi_upstream.add_releases(cls.tree, cls.pre_releases,
                                                         cls.nginx.files_base)
        cls.grouped_hashes = make_pypi_upstream.add_releases(
            cls.tree, [Release(p, v) for p, vs in GROUPED.items() for v in vs],
            cls.nginx.files_base)
        cls.pantry = Pantry(PANTRY, os.path.join(cls.work, "pantry"), cls.nginx.index_url,
                            index_ttl="1s")
        m = cls.manifest
        cls.files = {
            "outdated": ("# pins the test checks\n--index-url http://127.0.0.1:1/simple/\n\n" +
                         pinned(m, "pantry-demo-app", "1.1") + "    # via -r requirements.in\n" +
                         pinned(m, "pantry-demo-lib", "1.0") + "    # via pantry-demo-app\n" +
                         pinned(m, "pantry-demo-util", "0.9") + "    # via pantry-demo-lib\n"),
            "yanked": pinned(m, "pantry-demo-lib", "1.2"),
            "current": (pinned(m, "pantry-demo-util", "1.0") + "pantry-pins-pre==1.0 \\\n"
                        f"    --hash=sha256:{cls.pre_hashes['pantry_pins_pre-1.0-py3-none-any.whl']}\n"),
            "broken": pinned(m, "pantry-demo-util", "0.9") + "pantry-demo-lib===\n",
        }
        repos = []
        for name, text in cls.files.items():
            path = os.path.join(cls.work, "repos", name)
            os.makedirs(path)
            with open(os.path.join(path, "requirements.txt"), "w") as f:
                f.write(text)
            repos.append(f"    - {{name: {name}, path: {path}, files: [requirements.txt]}}\n")
        cls.config = os.path.join(cls.work, "pins.yaml")
        with open(cls.config, "w") as f:
            f.write(f"data_dir: {os.path.join(cls.work, 'nodata')}\n"
                    "pins:\n  python: [\"3.11\"]\n  platforms: [linux-x86_64]\n"
                    "  prereleases: if_pinned\n  repositories:\n" + "".join(repos))

    @classmethod
    def tearDownClass(cls):
        stop_index(cls)

    def check(self, *args, pantry_url=None):
        cmd = [PANTRY, "pins", "check", "--config", self.config,
               "--pantry", pantry_url or self.pantry.url("")] + list(args)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        return r.returncode, r.stdout, r.stderr

    def assert_untouched(self):
        for name, text in self.files.items():
            with open(os.path.join(self.work, "repos", name, "requirements.txt")) as f:
                self.assertEqual(f.read(), text, f"{name}/requirements.txt changed")

    def hash_line(self, project, version):
        return [f"    {project} {version} --hash=sha256:{f['sha256']}"
                for f in self.manifest["files"] if f["project"] == project and f["version"] == version]

    def where(self, repo, project):
        return f"{repo}/requirements.txt:{line_of(self.files[repo], project + '==')}"

    def test_outdated_pins_are_reported_with_new_versions_hashes_and_reasons(self):
        code, out, err = self.check("--repo", "outdated")
        self.assertEqual(code, 1, f"stdout:\n{out}\nstderr:\n{err}")
        lines = out.splitlines()
        # app 2.0 needs lib>=1.1: the lib pin moves with it in the same patch.
        self.assertIn(self.where("outdated", "pantry-demo-app") + ": pantry-demo-app 1.1 -> 2.0, "
                      "pantry-demo-lib 1.0 -> 1.1", lines, out)
        self.assertIn("    co-upgrade pantry-demo-lib 1.0 -> 1.1: pantry-demo-app 2.0 requires "
                      "pantry-demo-lib>=1.1", lines, out)
        for line in self.hash_line("pantry-demo-app", "2.0") + self.hash_line("pantry-demo-lib", "1.1"):
            self.assertIn(line, lines, out)
        # lib 1.2 is newer but yanked.
        self.assertIn(self.where("outdated", "pantry-demo-lib") + ": pantry-demo-lib 1.0 -> 1.1", lines, out)
        self.assertIn("    1.2: yanked (" + make_pypi_upstream.LIB_YANK_REASON + ")", lines, out)
        # util 2.0 is excluded by its Requires-Python: 1.0 is proposed, util's sdist hashed too.
        self.assertIn(self.where("outdated", "pantry-demo-util") + ": pantry-demo-util 0.9 -> 1.0", lines, out)
        self.assertIn("    2.0: requires Python >=3.99, not 3.11", lines, out)
        util = self.hash_line("pantry-demo-util", "1.0")
        self.assertEqual(len(util), 2, self.manifest["files"])
        for line in util:
            self.assertIn(line, lines, out)
        self.assert_untouched()

    def test_a_yanked_pin_moves_down_and_brings_its_new_requirement(self):
        code, out, err = self.check("--repo", "yanked")
        self.assertEqual(code, 1, f"stdout:\n{out}\nstderr:\n{err}")
        lines = out.splitlines()
        self.assertIn(self.where("yanked", "pantry-demo-lib") + ": pantry-demo-lib 1.2 -> 1.1, +pantry-demo-util 1.0",
                      lines, out)
        self.assertIn("    1.2 is yanked (" + make_pypi_upstream.LIB_YANK_REASON + "); nothing "
                      "newer qualifies, so moved down to the nearest release that does", lines, out)
        # The requirement as lib's METADATA writes it (the fixture spells util's name oddly).
        self.assertIn("    add pantry-demo-util==1.0: pantry-demo-lib 1.1 requires "
                      f"{make_pypi_upstream.UTIL}>=0.9, which no pin of the file covers", lines, out)
        self.assert_untouched()

    def test_a_prerelease_is_not_proposed_and_a_second_check_changes_nothing(self):
        for attempt in range(2):
            code, out, err = self.check("--repo", "current")
            self.assertEqual(code, 0, f"check {attempt + 1}: stdout:\n{out}\nstderr:\n{err}")
            self.assertIn(self.where("current", PRE) + ": pantry-pins-pre 1.0 up to date",
                          out.splitlines(), out)
            self.assertIn("    1.1rc1: a pre-release", out.splitlines(), out)
        self.assert_untouched()

    def test_zz_a_new_release_is_found_after_the_index_ttl(self):
        # Runs last (unittest sorts by name): the other tests see the tree without 1.1.
        releases = self.pre_releases + [Release(PRE, "1.1")]
        hashes = make_pypi_upstream.add_releases(self.tree, releases, self.nginx.files_base)
        time.sleep(1.5)
        code, out, err = self.check("--repo", "current", "--only", "Pantry_Pins.Pre")
        self.assertEqual(code, 1, f"stdout:\n{out}\nstderr:\n{err}")
        self.assertIn(self.where("current", PRE) + ": pantry-pins-pre 1.0 -> 1.1", out.splitlines(), out)
        self.assertIn("    pantry-pins-pre 1.1 --hash=sha256:" +
                      hashes["pantry_pins_pre-1.1-py3-none-any.whl"], out.splitlines(), out)
        self.assertNotIn("pantry-demo-util", out)
        self.assert_untouched()

    def test_a_malformed_line_is_named_and_the_file_left_as_it_is(self):
        code, out, err = self.check("--repo", "broken")
        self.assertEqual(code, 2, f"stdout:\n{out}\nstderr:\n{err}")
        self.assertIn(f"broken/requirements.txt:{line_of(self.files['broken'], 'pantry-demo-lib')}:",
                      err)
        self.assertEqual(out, "")
        self.assert_untouched()

    def test_an_unreachable_index_is_an_error_that_changes_nothing(self):
        code, out, err = self.check("--repo", "outdated",
                                    pantry_url=f"http://127.0.0.1:{free_port()}")
        self.assertEqual(code, 2, f"stdout:\n{out}\nstderr:\n{err}")
        self.assertIn("pantry-demo-app", err)
        self.assert_untouched()

    def test_an_unknown_repository_is_named(self):
        code, out, err = self.check("--repo", "nope")
        self.assertEqual(code, 2, f"stdout:\n{out}\nstderr:\n{err}")
        self.assertIn('--repo "nope" is not a repository of pins', err)
        self.assertIn("outdated, yanked, current, broken", err)


    def git(self, repo, *args):
        r = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                           timeout=60, env=dict(clean_env(), GIT_CONFIG_NOSYSTEM="1",
                                                HOME=self.work))
        self.assertEqual(r.returncode, 0, f"git {' '.join(args)}: {r.stderr}")
        return r.stdout

    def commit_requirements(self, repo, text):
        """A new git repository at `repo` whose branch main holds `text` as requirements.txt."""
        os.makedirs(repo)
        with open(os.path.join(repo, "requirements.txt"), "w") as f:
            f.write(text)
        self.git(repo, "init", "-q", "-b", "main")
        self.git(repo, "add", "requirements.txt")
        self.git(repo, "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-q", "-m", "pins")

    def test_bump_makes_one_branch_per_upgrade_and_pip_installs_each(self):
        m = self.manifest
        parts = {p: pinned(m, p, v) for p, v in
                 (("pantry-demo-app", "1.1"), ("pantry-demo-lib", "1.0"), ("pantry-demo-util", "0.9"))}
        text = ("# compiled\n" + parts["pantry-demo-app"] + "    # via -r requirements.in\n" +
                parts["pantry-demo-lib"] + "    # via pantry-demo-app\n" +
                parts["pantry-demo-util"] + "    # via pantry-demo-lib\n")
        repo = os.path.join(self.work, "git", "app")
        self.commit_requirements(repo, text)
        head = self.git(repo, "rev-parse", "HEAD").strip()
        config = os.path.join(self.work, "git", "pins.yaml")
        with open(config, "w") as f:
            f.write(f"data_dir: {os.path.join(self.work, 'git', 'data')}\n"
                    "pins:\n  python: [\"3.11\"]\n  platforms: [linux-x86_64]\n  repositories:\n"
                    f"    - {{name: app, path: {repo}, files: [requirements.txt]}}\n")
        cmd = [PANTRY, "pins", "bump", "--config", config, "--pantry", self.pantry.url("")]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        branches = {
            "pantry/pins/pantry-demo-app-2.0": {"pantry-demo-app": "2.0", "pantry-demo-lib": "1.1"},
            "pantry/pins/pantry-demo-lib-1.1": {"pantry-demo-lib": "1.1"},
            "pantry/pins/pantry-demo-util-1.0": {"pantry-demo-util": "1.0"},
        }
        made = self.git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/pantry/pins")
        self.assertEqual(sorted(made.split()), sorted(branches), r.stdout)
        # The user's working tree and branch are as they were.
        self.assertEqual(self.git(repo, "rev-parse", "HEAD").strip(), head)
        self.assertEqual(self.git(repo, "symbolic-ref", "--short", "HEAD").strip(), "main")
        self.assertEqual(self.git(repo, "status", "--porcelain"), "")
        with open(os.path.join(repo, "requirements.txt")) as f:
            self.assertEqual(f.read(), text)

        venv = os.path.join(self.work, "git", "venv")
        subprocess.run([PYTHON, "-m", "venv", venv], check=True, env=clean_env(), timeout=120)
        for branch, moved in branches.items():
            self.assertEqual(self.git(repo, "rev-list", "--count", f"main..{branch}").strip(), "1")
            subject = self.git(repo, "log", "-1", "--format=%s", branch).strip()
            self.assertEqual(subject, "pins: " + ", ".join(
                f"{p} {v_old} -> {moved[p]}" for p, v_old in
                (("pantry-demo-app", "1.1"), ("pantry-demo-lib", "1.0"), ("pantry-demo-util", "0.9"))
                if p in moved))
            body = self.git(repo, "log", "-1", "--format=%b", branch)
            self.assertIn("is the newest release that qualifies", body)
            self.assertIn("Uploaded: 2023-", body)
            self.assertIn("Pinned version yanked: no", body)
            # Only the moved pins' lines differ: everything else byte for byte.
            expected = text
            for project, version in moved.items():
                old = parts[project]
                expected = expected.replace(old, pinned(m, project, version))
            got = self.git(repo, "show", f"{branch}:requirements.txt")
            self.assertEqual(got, expected, branch)
            req = os.path.join(self.work, "git", branch.replace("/", "_") + ".txt")
            with open(req, "w") as f:
                f.write(got)
            target = req + ".d"
            pip = [os.path.join(venv, "bin", "python"), "-m", "pip", "install", "--quiet",
                   "--disable-pip-version-check", "--index-url", self.pantry.index_url,
                   "--require-hashes", "--target", target, "-r", req]
            p = subprocess.run(pip, capture_output=True, text=True, env=clean_env(), timeout=300)
            self.assertEqual(p.returncode, 0, f"{branch}: {p.stdout}\n{p.stderr}")
            installed = {}
            for n in os.listdir(target):
                if n.endswith(".dist-info"):
                    name, version = n[:-len(".dist-info")].rsplit("-", 1)
                    installed[make_pypi_upstream.normalize(name)] = version
            for project, version in moved.items():
                self.assertEqual(installed.get(project), version, f"{branch}: {installed}")

        # A second run finds the same upgrades and leaves their branches as they are.
        tips = self.git(repo, "for-each-ref", "--format=%(objectname)", "refs/heads/pantry/pins")
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        self.assertEqual(r.stdout.count("exists: left as it is"), 3, r.stdout)
        self.assertEqual(self.git(repo, "for-each-ref", "--format=%(objectname)",
                                  "refs/heads/pantry/pins"), tips)

    def grouped_pin(self, project, version):
        wheel = f"{project.replace('-', '_')}-{version}-py3-none-any.whl"
        return f"{project}=={version} \\\n    --hash=sha256:{self.grouped_hashes[wheel]}\n"

    def url_repository(self):
        """A bare repository served over HTTP with the token (Bearer), its main branch holding the
        requirements of test_bump_makes_one_branch_per_upgrade plus the two grouped pins; a token
        file; a git on PATH that logs each argv; the config. Returns the pieces as a dict."""
        m = self.manifest
        base = tempfile.mkdtemp(prefix="url-", dir=self.work)
        text = ("# compiled\n" + pinned(m, "pantry-demo-app", "1.1") + pinned(m, "pantry-demo-lib", "1.0")
                + pinned(m, "pantry-demo-util", "0.9") +
                "".join(self.grouped_pin(p, vs[0]) for p, vs in GROUPED.items()))
        bare = os.path.join(base, "srv", "app.git")
        os.makedirs(bare)
        self.git(bare, "init", "-q", "--bare", "-b", "main")
        work = os.path.join(base, "work")
        self.commit_requirements(work, text)
        self.git(work, "push", "-q", bare, "main")
        server = git_http.GitHttp(os.path.join(base, "srv"), "Bearer " + TOKEN)
        self.addCleanup(server.close)
        token_file = os.path.join(base, "token")
        with open(token_file, "w") as f:
            f.write(TOKEN + "\n")
        # Every git the bump runs goes through this wrapper: its argv is what ps shows.
        bindir = os.path.join(base, "bin")
        os.makedirs(bindir)
        argv_log = os.path.join(base, "argv.log")
        with open(os.path.join(bindir, "git"), "w") as f:
            f.write(f"#!/bin/sh\necho \"$0 $*\" >> {argv_log}\n"
                    f"echo \"header key: $GIT_CONFIG_KEY_0\" >> {argv_log}\n"
                    "exec /usr/bin/git \"$@\"\n")
        os.chmod(os.path.join(bindir, "git"), 0o755)
        config = os.path.join(base, "pins.yaml")
        with open(config, "w") as f:
            f.write(f"data_dir: {os.path.join(base, 'data')}\n"
                    "pins:\n  python: [\"3.11\"]\n  platforms: [linux-x86_64]\n"
                    "  groups: [{name: pytest, match: \"pantry-pytest-*\"}]\n  repositories:\n"
                    f"    - {{name: app, url: \"{server.url('app.git')}\", token_file: {token_file},"
                    " files: [requirements.txt]}\n")
        return dict(text=text, bare=bare, server=server, token_file=token_file, bindir=bindir,
                    argv_log=argv_log, config=config, data=os.path.join(base, "data"))

    def pins_with(self, url, verb, config):
        """`pantry pins VERB` on `config` with url's git wrapper first on PATH, /proc watched
        for the token in any process's arguments while it runs."""
        env = dict(os.environ, PATH=url["bindir"] + ":" + os.environ["PATH"])
        seen = []
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                for pid in os.listdir("/proc"):
                    try:
                        with open(f"/proc/{pid}/cmdline", "rb") as f:
                            cmdline = f.read()
                    except OSError:
                        continue
                    if TOKEN.encode() in cmdline:
                        seen.append(cmdline)
                time.sleep(0.005)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            r = subprocess.run([PANTRY, "pins", verb, "--config", config, "--pantry",
                                self.pantry.url("")], capture_output=True, text=True, timeout=120,
                               env=env)
        finally:
            stop.set()
            watcher.join()
        self.assertEqual(seen, [], "the token in a process's arguments")
        return r

    def test_url_repository_bump_pushes_branches_and_a_group_with_the_token_kept_secret(self):
        url = self.url_repository()
        m = self.manifest
        r = self.pins_with(url, "check", url["config"])
        self.assertEqual(r.returncode, 1, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        self.assertIn("app/requirements.txt:2: pantry-demo-app 1.1 -> 2.0, pantry-demo-lib 1.0 -> 1.1",
                      r.stdout.splitlines(), r.stdout)
        self.assertEqual(self.git(url["bare"], "for-each-ref", "refs/heads/pantry"), "")

        r = self.pins_with(url, "bump", url["config"])
        self.assertEqual(r.returncode, 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        group_set = "".join(sorted(f"{p}=={vs[1]}\n" for p, vs in GROUPED.items()))
        group = "pantry/pins/group/pytest-" + hashlib.sha256(group_set.encode()).hexdigest()[:12]
        branches = {
            "pantry/pins/pantry-demo-app-2.0": {"pantry-demo-app": "2.0", "pantry-demo-lib": "1.1"},
            "pantry/pins/pantry-demo-lib-1.1": {"pantry-demo-lib": "1.1"},
            "pantry/pins/pantry-demo-util-1.0": {"pantry-demo-util": "1.0"},
            group: {p: vs[1] for p, vs in GROUPED.items()},
        }
        made = self.git(url["bare"], "for-each-ref", "--format=%(refname:short)", "refs/heads/pantry")
        self.assertEqual(sorted(made.split()), sorted(branches), r.stdout)
        self.assertIn(f"app: group pytest: made branch {group} (2 upgrades)", r.stdout.splitlines(),
                      r.stdout)
        old = {"pantry-demo-app": "1.1", "pantry-demo-lib": "1.0", "pantry-demo-util": "0.9"}
        for branch, moved in branches.items():
            self.assertEqual(self.git(url["bare"], "rev-list", "--count", f"main..{branch}").strip(),
                             "1", branch)
            expected = url["text"]
            for project, version in moved.items():
                if project in GROUPED:
                    expected = expected.replace(self.grouped_pin(project, GROUPED[project][0]),
                                                self.grouped_pin(project, version))
                else:
                    expected = expected.replace(pinned(m, project, old[project]),
                                                pinned(m, project, version))
            self.assertEqual(self.git(url["bare"], "show", f"{branch}:requirements.txt"), expected,
                             branch)
        subject = self.git(url["bare"], "log", "-1", "--format=%s", group).strip()
        self.assertEqual(subject, "pins: group pytest: pantry-pytest-a 1.0 -> 1.1; "
                                  "pantry-pytest-b 2.0 -> 2.1")
        body = self.git(url["bare"], "log", "-1", "--format=%b", group)
        for p, (v_old, v_new) in GROUPED.items():
            self.assertIn(f"{p} {v_old} -> {v_new} (requirements.txt):\n"
                          f"{v_new} is the newest release that qualifies", body)
        self.assertEqual(url["server"].refused, 0)
        self.assertGreater(url["server"].served, 0)

        # The token went to git through its environment only.
        with open(url["argv_log"]) as f:
            argv = f.read()
        self.assertIn(f"clone --quiet --no-hardlinks -- {url['server'].url('app.git')}", argv)
        self.assertIn("header key: http.extraHeader", argv)
        leaks = [("stdout", r.stdout), ("stderr", r.stderr), ("argv log", argv),
                 ("commits", self.git(url["bare"], "log", "-p", "--all"))]
        for top in (os.path.dirname(url["bare"]), url["data"]):
            for root, _, files in os.walk(top):
                for n in files:
                    with open(os.path.join(root, n), "rb") as f:
                        leaks.append((os.path.join(root, n), f.read().decode("latin-1")))
        for where, text in leaks:
            self.assertNotIn(TOKEN, text, where)

        # A second run leaves the branches as they are.
        tips = self.git(url["bare"], "for-each-ref", "--format=%(objectname)", "refs/heads/pantry")
        r = self.pins_with(url, "bump", url["config"])
        self.assertEqual(r.returncode, 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        self.assertEqual(r.stdout.count("exists: left as it is"), 4, r.stdout)
        self.assertEqual(self.git(url["bare"], "for-each-ref", "--format=%(objectname)",
                                  "refs/heads/pantry"), tips)

        # A newer release of one grouped pin: the group's new set gets a branch of its own, and
        # the branch of the old set is superseded (deleted: no forge here).
        make_pypi_upstream.add_releases(
            self.tree, [Release("pantry-pytest-a", v) for v in ("1.0", "1.1", "1.2")],
            self.nginx.files_base)
        time.sleep(1.5)  # past the index_ttl of 1s
        r = self.pins_with(url, "bump", url["config"])
        self.assertEqual(r.returncode, 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        newer_set = "pantry-pytest-a==1.2\npantry-pytest-b==2.1\n"
        newer = "pantry/pins/group/pytest-" + hashlib.sha256(newer_set.encode()).hexdigest()[:12]
        self.assertIn(f"app: group pytest: made branch {newer} (2 upgrades)", r.stdout.splitlines(),
                      r.stdout)
        self.assertIn(f"    superseded {group}: deleted its branch", r.stdout.splitlines(), r.stdout)
        made = self.git(url["bare"], "for-each-ref", "--format=%(refname:short)", "refs/heads/pantry")
        self.assertEqual(sorted(made.split()), sorted(set(branches) - {group} | {newer}), r.stdout)
        self.assertEqual(self.git(url["bare"], "log", "-1", "--format=%s", newer).strip(),
                         "pins: group pytest: pantry-pytest-a 1.0 -> 1.2; "
                         "pantry-pytest-b 2.0 -> 2.1")

    def test_url_repository_with_a_wrong_token_or_no_server_changes_nothing(self):
        url = self.url_repository()
        wrong = "wrong-token-0b1d2e"
        with open(url["token_file"], "w") as f:
            f.write(wrong + "\n")
        r = self.pins_with(url, "bump", url["config"])
        self.assertEqual(r.returncode, 2, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        self.assertIn(f"app: {url['server'].url('app.git')} refused the token in "
                      f"{url['token_file']}: check that it is current", r.stderr)
        self.assertGreater(url["server"].refused, 0)
        self.assertNotIn(wrong, r.stdout + r.stderr)
        self.assertEqual(self.git(url["bare"], "for-each-ref", "refs/heads/pantry"), "")

        with open(url["token_file"], "w") as f:
            f.write(TOKEN + "\n")
        gone = f"http://127.0.0.1:{free_port()}/app.git"
        config = url["config"] + ".gone"
        with open(url["config"]) as f, open(config, "w") as out:
            out.write(f.read().replace(url["server"].url("app.git"), gone))
        r = self.pins_with(url, "bump", config)
        self.assertEqual(r.returncode, 2, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        self.assertIn(f"app: {gone} cannot be reached: check the URL and that the server is up; "
                      "nothing was changed", r.stderr)
        self.assertNotIn(TOKEN, r.stdout + r.stderr)
        self.assertEqual(self.git(url["bare"], "for-each-ref", "refs/heads/pantry"), "")


HTML = "pantry-pins-html"
NO_JSON = "pantry-pins-nojson"


class PinsHtmlIndexTest(unittest.TestCase):
    """An upstream that serves two projects as PEP 503 HTML only: pantry answers their pages as
    API 1.0, without upload times. pantry-pins-html has warehouse's JSON API, and its 2.0 sdist is
    listed without a sha256; pantry-pins-nojson has no JSON API. With min_release_age set, the
    bot takes the upload times from /pypi/<name>/json through pantry and proposes html 2.0 with
    every hash, the sdist's made by downloading it; nojson's age cannot be checked, so its
    upgrade is skipped with the reason."""

    @classmethod
    def setUpClass(cls):
        start_index(cls, "pantry-pins-html-test-", html_only=(HTML, NO_JSON))
        cls.releases = [Release(HTML, "1.0"), Release(HTML, "2.0", sdist=True),
                        Release(NO_JSON, "1.0"), Release(NO_JSON, "2.0")]
        cls.sdist = "pantry_pins_html-2.0.tar.gz"
        cls.hashes = make_pypi_upstream.add_releases(cls.tree, cls.releases, cls.nginx.files_base,
                                                     no_digest=(cls.sdist,))
        shutil.rmtree(os.path.join(cls.tree, "pypi", NO_JSON))
        epoch = make_pypi_upstream.DEFAULT_EPOCH
        cls.uploaded = make_pypi_upstream.iso_time(epoch + 2 * 86400)  # release 1: html 2.0
        cls.pantry = Pantry(PANTRY, os.path.join(cls.work, "pantry"), cls.nginx.index_url)
        cls.text = (f"{HTML}==1.0 \\\n    --hash=sha256:{cls.hashes['pantry_pins_html-1.0-py3-none-any.whl']}\n"
                    f"{NO_JSON}==1.0 \\\n    --hash=sha256:"
                    f"{cls.hashes['pantry_pins_nojson-1.0-py3-none-any.whl']}\n")
        cls.repo = os.path.join(cls.work, "html")
        os.makedirs(cls.repo)
        with open(os.path.join(cls.repo, "requirements.txt"), "w") as f:
            f.write(cls.text)
        for args in (("init", "-q", "-b", "main"), ("add", "requirements.txt"),
                     ("-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-q", "-m",
                      "pins")):
            subprocess.run(["git", "-C", cls.repo, *args], check=True, capture_output=True,
                           timeout=60)
        cls.config = os.path.join(cls.work, "pins.yaml")
        with open(cls.config, "w") as f:
            f.write(f"data_dir: {os.path.join(cls.work, 'data')}\n"
                    "pins:\n  python: [\"3.11\"]\n  platforms: [linux-x86_64]\n"
                    "  min_release_age: 2d\n  repositories:\n"
                    f"    - {{name: html, path: {cls.repo}, files: [requirements.txt]}}\n")

    @classmethod
    def tearDownClass(cls):
        stop_index(cls)

    def pins(self, verb):
        cmd = [PANTRY, "pins", verb, "--config", self.config, "--pantry", self.pantry.url("")]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    def sdist_gets(self):
        return [e for e in self.nginx.log_entries()
                if e["method"] == "GET" and e["uri"].endswith("/" + self.sdist)]

    def test_html_only_projects_are_decided_with_the_json_api_and_hashed_by_download(self):
        # What pantry answers for such a project: API 1.0, no upload times, the sdist unhashed.
        req = urllib.request.Request(self.pantry.url(f"/simple/{HTML}/"),
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            page = json.load(r)
        self.assertEqual(page["meta"]["api-version"], "1.0", page)
        self.assertFalse(any("upload-time" in f for f in page["files"]), page)
        self.assertEqual([f["hashes"] for f in page["files"] if f["filename"] == self.sdist],
                         [{}], page)

        r = self.pins("check")
        self.assertEqual(r.returncode, 1, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        lines = r.stdout.splitlines()
        sdist_hash = hashlib.sha256(self.sdist_bytes()).hexdigest()
        self.assertEqual(sdist_hash, self.hashes[self.sdist])
        self.assertIn(f"html/requirements.txt:1: {HTML} 1.0 -> 2.0", lines, r.stdout)
        self.assertIn(f"    2.0 is the newest release that qualifies (uploaded {self.uploaded})",
                      lines, r.stdout)
        self.assertIn(f"    the index gives no sha256 for {self.sdist}: downloaded and hashed "
                      f"(sha256:{sdist_hash})", lines, r.stdout)
        wheel_hash = self.hashes["pantry_pins_html-2.0-py3-none-any.whl"]
        self.assertEqual([line for line in lines if line.startswith(f"    {HTML} 2.0 --hash=")],
                         [f"    {HTML} 2.0 --hash=sha256:{h}"
                          for h in sorted((sdist_hash, wheel_hash))], r.stdout)
        self.assertEqual(len(self.sdist_gets()), 1, self.sdist_gets())
        # No JSON API: the age cannot be checked, and the upgrade is skipped, saying why.
        self.assertIn(f"html/requirements.txt:3: {NO_JSON} 1.0 -> 2.0 (skipped)", lines, r.stdout)
        self.assertIn("    not applied: min_release_age (2 days) cannot be checked for 2.0: the "
                      "index gives no upload time (nor does its JSON API), so its age is unknown",
                      lines, r.stdout)

        r = self.pins("bump")
        self.assertEqual(r.returncode, 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        branch = f"pantry/pins/{HTML}-2.0"
        self.assertIn(f"    made branch {branch}", r.stdout.splitlines(), r.stdout)
        got = subprocess.run(["git", "-C", self.repo, "show", f"{branch}:requirements.txt"],
                             capture_output=True, text=True, check=True).stdout
        hashes = "".join(f" \\\n    --hash=sha256:{h}" for h in sorted((sdist_hash, wheel_hash)))
        self.assertEqual(got, self.text.replace(
            f"{HTML}==1.0 \\\n    --hash=sha256:{self.hashes['pantry_pins_html-1.0-py3-none-any.whl']}\n",
            f"{HTML}==2.0{hashes}\n"))
        self.assertNotIn(f"pantry/pins/{NO_JSON}", subprocess.run(
            ["git", "-C", self.repo, "branch", "--list"], capture_output=True, text=True).stdout)
        # The branch installs with --require-hashes through pantry.
        req = os.path.join(self.work, "branch.txt")
        with open(req, "w") as f:
            f.write(got)
        venv = os.path.join(self.work, "venv")
        subprocess.run([PYTHON, "-m", "venv", venv], check=True, env=clean_env(), timeout=120)
        pip = [os.path.join(venv, "bin", "python"), "-m", "pip", "install", "--quiet",
               "--disable-pip-version-check", "--index-url", self.pantry.index_url,
               "--require-hashes", "--target", os.path.join(self.work, "target"), "-r", req]
        p = subprocess.run(pip, capture_output=True, text=True, env=clean_env(), timeout=300)
        self.assertEqual(p.returncode, 0, f"{p.stdout}\n{p.stderr}")

    def sdist_bytes(self):
        """The sdist's bytes as the upstream serves them."""
        for root, _, names in os.walk(os.path.join(self.tree, "packages")):
            if self.sdist in names:
                with open(os.path.join(root, self.sdist), "rb") as f:
                    return f.read()
        self.fail(f"{self.sdist} is not in the tree")


def git_in(test, repo, *args):
    r = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, timeout=60)
    test.assertEqual(r.returncode, 0, f"git {' '.join(args)}: {r.stderr}")
    return r.stdout


class PinsImageTest(unittest.TestCase):
    IMAGE = "org/multi:1.0"

    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-pins-image-test-")
        # Two multi-arch images (OCI indexes of linux/amd64 and linux/arm64) that differ only by
        # their timestamps: the tag's first and second image.
        cls.first = make_oci_images.build_multi(os.path.join(cls.work, "first"), 1700000000)
        cls.second = make_oci_images.build_multi(os.path.join(cls.work, "second"), 1700086400)
        cls.reg = oci_registry.Registry("open", os.path.join(cls.work, "upstream"))
        cls.old = cls.reg.push(cls.first["layout"], "latest", cls.IMAGE)
        cls.pantry = Pantry(PANTRY, os.path.join(cls.work, "pantry"), "http://127.0.0.1:9/simple/",
                            oci=f"""\
  default_upstream: docker.io
  upstreams:
    - {{name: docker.io, url: "{cls.reg.url}"}}
  tag_ttl: 1s
""")
        cls.repo = os.path.join(cls.work, "app")
        os.makedirs(cls.repo)
        cls.containerfile = (
            "# syntax=docker/dockerfile:1\n"
            f"FROM --platform=linux/amd64 {cls.IMAGE}@{cls.old} AS build\r\n"
            "RUN echo built > /out\n"
            "FROM org/multi:1.0\n"
            "FROM scratch\n"
            "COPY --from=build /out /out\n")
        with open(os.path.join(cls.repo, "Containerfile"), "w", newline="") as f:
            f.write(cls.containerfile)
        cls.pipeline = f"image: org/multi@{cls.old}\njobs:\n  test:\n    script: [true]\n"
        with open(os.path.join(cls.repo, ".pantry.yml"), "w") as f:
            f.write(cls.pipeline)
        cls.config = os.path.join(cls.work, "pins.yaml")
        with open(cls.config, "w") as f:
            f.write(f"data_dir: {os.path.join(cls.work, 'nodata')}\n"
                    "pins:\n  python: [\"3.11\"]\n  platforms: [linux-x86_64]\n  repositories:\n"
                    f"    - {{name: app, path: {cls.repo}, files: [Containerfile, .pantry.yml]}}\n")

    @classmethod
    def tearDownClass(cls):
        cls.pantry.stop()
        cls.reg.close()
        shutil.rmtree(cls.work, ignore_errors=True)

    def pins(self, verb, pantry_url=None):
        cmd = [PANTRY, "pins", verb, "--config", self.config, "--pantry",
               pantry_url or self.pantry.url("")]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        return r.returncode, r.stdout, r.stderr

    def assert_untouched(self):
        with open(os.path.join(self.repo, "Containerfile"), newline="") as f:
            self.assertEqual(f.read(), self.containerfile)
        with open(os.path.join(self.repo, ".pantry.yml")) as f:
            self.assertEqual(f.read(), self.pipeline)

    def test_a_moved_tag_is_reported_with_its_new_index_digest_and_bumped_alone(self):
        self.assertEqual(self.old, self.first["digest"])
        self.assertEqual(self.first["media_type"], make_oci_images.OCI_INDEX)
        code, out, err = self.pins("check")
        self.assertEqual(code, 0, f"stdout:\n{out}\nstderr:\n{err}")
        lines = out.splitlines()
        self.assertIn(f"app/Containerfile:2: image {self.IMAGE}: {self.old} is current", lines, out)
        self.assertIn("app/Containerfile:4: image org/multi:1.0: not checked: no digest: the tag is "
                      "not pinned (add @DIGEST to pin it)", lines, out)
        self.assertTrue(any(line.startswith("app/Containerfile:5: image scratch") for line in lines),
                        out)
        self.assertIn(f"app/.pantry.yml:1: image org/multi@{self.old}: not checked: no tag: a digest "
                      "alone names no newer image to move to", lines, out)

        new = self.reg.push(self.second["layout"], "latest", self.IMAGE)
        self.assertEqual(new, self.second["digest"])
        self.assertNotEqual(new, self.old)
        time.sleep(1.5)  # past pantry's tag_ttl: it asks the upstream again
        code, out, err = self.pins("check")
        self.assertEqual(code, 1, f"stdout:\n{out}\nstderr:\n{err}")
        self.assertIn(f"app/Containerfile:2: image {self.IMAGE}: {self.old} \u2192 {new}",
                      out.splitlines(), out)
        self.assert_untouched()

        # An unreachable registry: an error naming the image, nothing changed.
        code, out, err = self.pins("check", pantry_url=f"http://127.0.0.1:{free_port()}")
        self.assertEqual(code, 2, f"stdout:\n{out}\nstderr:\n{err}")
        self.assertIn(f"app/Containerfile:2: image {self.IMAGE}: pantry's registry at", err)
        self.assert_untouched()

        git_in(self, self.repo, "init", "-q", "-b", "main")
        git_in(self, self.repo, "add", "Containerfile", ".pantry.yml")
        git_in(self, self.repo, "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-q",
               "-m", "images")
        head = git_in(self, self.repo, "rev-parse", "HEAD").strip()
        code, out, err = self.pins("bump")
        self.assertEqual(code, 0, f"stdout:\n{out}\nstderr:\n{err}")
        branch = "pantry/pins/org-multi-1.0"
        self.assertIn(f"app: image {self.IMAGE}: made branch {branch}", out.splitlines(), out)
        made = git_in(self, self.repo, "for-each-ref", "--format=%(refname:short)",
                      "refs/heads/pantry/pins").split()
        self.assertEqual(made, [branch])
        self.assertEqual(git_in(self, self.repo, "rev-list", "--count", f"main..{branch}").strip(), "1")
        self.assertEqual(git_in(self, self.repo, "log", "-1", "--format=%s", branch).strip(),
                         f"image {self.IMAGE}: {self.old} \u2192 {new}")
        self.assertEqual(git_in(self, self.repo, "diff", "--name-only", f"main..{branch}").split(),
                         ["Containerfile"])
        got = subprocess.run(["git", "-C", self.repo, "show", f"{branch}:Containerfile"],
                             capture_output=True, check=True).stdout
        self.assertEqual(got, self.containerfile.replace(self.old, new).encode())
        # The user's working tree and branch are as they were.
        self.assertEqual(git_in(self, self.repo, "rev-parse", "HEAD").strip(), head)
        self.assertEqual(git_in(self, self.repo, "status", "--porcelain"), "")
        self.assert_untouched()

        # A second bump finds the branch and leaves it.
        tip = git_in(self, self.repo, "rev-parse", branch)
        code, out, err = self.pins("bump")
        self.assertEqual(code, 0, f"stdout:\n{out}\nstderr:\n{err}")
        self.assertIn(f"app: image {self.IMAGE}: branch {branch} exists: left as it is",
                      out.splitlines(), out)
        self.assertEqual(git_in(self, self.repo, "rev-parse", branch), tip)


if __name__ == "__main__":
    PANTRY = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
