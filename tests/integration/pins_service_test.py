#!/usr/bin/python3
"""The pin bot beside pantry's coordinator and inside `pantry serve`.

PinsCiTest: a `pantry serve` with the built-in runner and the coordinator, the PyPI fixture
(nginx) as its upstream and a busybox image pushed to its hosted registry; a git repository hash-
pinned to pantry-demo-app 1.1, pantry-demo-lib 1.0 and pantry-demo-util 0.9, whose .pantry.yml
job passes only where app is pinned to 2.0. `pantry pins bump` (finding the serve through the
data dir) makes three branches and submits one pipeline per branch with the branch's files:
app's passes, lib's and util's fail; `pantry pins status` shows each branch with its pipeline's
result and exits 1; a second bump submits nothing again (same commits) and records the ended
states. A bump while another holds <data_dir>/pins/bump.lock is refused naming the holder's pid.
The same repository served by URL (git http-backend behind a server that wants a token), with the
header line for runners in ci.secrets' pins-remote: its pipelines carry a git source with the
branch's commit and base commit, which the built-in runner fetches with that header.
GET /api/v1/pins, with a read or submit token, answers what `pantry pins status` prints (the
branches, their pipelines, the last bump's outcome); 401 without a token, 404 for an unknown repo.

PinsScheduleTest: a second `pantry serve` (no coordinator) whose pins.schedule names the next
minute (UTC, at least 30 s ahead); within about 90 s it runs one bump on its own: the branches
appear in its repository, the log has one start and one summary line, and the record says why no
pipeline ran.

Usage: pins_service_test.py PANTRY_BINARY
"""

import datetime
import fcntl
import json
import os
import re
import shutil
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
import git_http  # noqa: E402
import make_oci_images  # noqa: E402
import nginx_pypi  # noqa: E402
from pantry_serve import Pantry, clean_env  # noqa: E402
from pins_test import pinned  # noqa: E402

PANTRY = None
TIMEOUT = 180
PUSH_TOKEN = "7d1c5a0e9b2f4c6e8a1d3f5b"
SUBMIT_TOKEN = "submit-token-0123456789abcdef"
READ_TOKEN = "read-token-0123456789abcdef01"
GIT_TOKEN = "git-token-4d2b6f8a0c1e"
# What pantry's runners send (ci.secrets' pins-remote): told apart from the bot's Bearer header.
RUNNER_AUTH = "Basic cnVubmVyOmdpdC10b2tlbi00ZDJiNmY4YTBjMWU="
PINS = ("  enabled: true\n  python: [\"3.11\"]\n  platforms: [linux-x86_64]\n")
BRANCHES = {
    "pantry/pins/pantry-demo-app-2.0": "passed",
    "pantry/pins/pantry-demo-lib-1.1": "failed",
    "pantry/pins/pantry-demo-util-1.0": "failed",
}


def run(cmd, timeout=TIMEOUT, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


def described(r):
    return f"exit {r.returncode}\n--- stdout:\n{r.stdout}\n--- stderr:\n{r.stderr}"


def git(repo, *args):
    env = dict(clean_env(), GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
    r = run(["git", "-C", repo, *args], env=env)
    if r.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {described(r)}")
    return r.stdout


def make_repo(path, manifest, spec=None):
    """A git repository on branch main with requirements.txt (and `spec` as .pantry.yml)."""
    os.makedirs(path)
    text = (pinned(manifest, "pantry-demo-app", "1.1") + pinned(manifest, "pantry-demo-lib", "1.0")
            + pinned(manifest, "pantry-demo-util", "0.9"))
    with open(os.path.join(path, "requirements.txt"), "w") as f:
        f.write(text)
    git(path, "init", "-q", "-b", "main")
    if spec is not None:
        with open(os.path.join(path, ".pantry.yml"), "w") as f:
            f.write(spec)
    git(path, "add", "-A")
    git(path, "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-q", "-m", "pins")


def pins_branches(repo):
    return sorted(git(repo, "for-each-ref", "--format=%(refname:short)",
                      "refs/heads/pantry/pins").split())


class PinsCiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-pins-ci-test-")
        cls.ident = os.path.basename(cls.work).replace("pantry-pins-ci-test-", "")
        cls.nginx = nginx_pypi.start(os.path.join(cls.work, "upstream"), build=True)
        with open(os.path.join(cls.work, "upstream", "manifest.json")) as f:
            cls.manifest = json.load(f)
        cls.repo = os.path.join(cls.work, "app")
        cls.cgroup_parent = f"pantry-pins-ci-test-{cls.ident}"
        # The same repository by URL (remote.git, made below), behind a server that wants a token:
        # the bot sends it from token_file, the runners the header line of ci.secrets' pins-remote.
        srv = os.path.join(cls.work, "srv")
        os.makedirs(srv)
        cls.server = git_http.GitHttp(srv, "Bearer " + GIT_TOKEN, RUNNER_AUTH)
        cls.remote_url = cls.server.url("remote.git")
        with open(os.path.join(cls.work, "git_token"), "w") as f:
            f.write(GIT_TOKEN + "\n")
        with open(os.path.join(cls.work, "git_header"), "w") as f:
            f.write("Authorization: " + RUNNER_AUTH)
        extra = f"""runner:
  runc_root: /run/pantry-pins-ci-test/{cls.ident}/runc
  state_dir: /run/pantry-pins-ci-test/{cls.ident}/containers
  cgroup_parent: {cls.cgroup_parent}
  layers: {{ dir: {cls.work}/layers }}
  defaults: {{ timeout: 2m }}
ci:
  slots: 2
  tokens:
    - {{ name: dev, token: "{SUBMIT_TOKEN}", role: submit }}
    - {{ name: dash, token: "{READ_TOKEN}", role: read }}
  secrets: {{ pins-remote: {cls.work}/git_header }}
pins:
{PINS}  schedule: "0 0 1 1 *"
  repositories:
    - {{ name: app, path: {cls.repo}, files: [requirements.txt] }}
    - {{ name: remote, url: "{cls.remote_url}", token_file: {cls.work}/git_token,
         files: [requirements.txt] }}
"""
        cls.pantry = Pantry(PANTRY, os.path.join(cls.work, "pantry"), cls.nginx.index_url,
                            oci=("  hosted:\n    prefix: local/\n"
                                 f"    users: [ {{ name: ci, token: \"{PUSH_TOKEN}\" }} ]\n"),
                            extra=extra)
        ref = make_oci_images.push_busybox(cls.work, cls.pantry.port, f"ci:{PUSH_TOKEN}")
        # Passes only on the branch that pins app 2.0: the job sees the branch's own files.
        spec = (f"image: {ref}\njobs:\n  pins:\n    run:\n"
                "      - grep -q '^pantry-demo-app==2.0 ' requirements.txt\n")
        make_repo(cls.repo, cls.manifest, spec)
        git(srv, "clone", "-q", "--bare", cls.repo, "remote.git")
        cls.bare = os.path.join(srv, "remote.git")

    @classmethod
    def tearDownClass(cls):
        cls.pantry.stop()
        cls.nginx.stop()
        cls.server.close()
        shutil.rmtree(f"/run/pantry-pins-ci-test/{cls.ident}", ignore_errors=True)
        daemons.remove_cgroups(cls.cgroup_parent)
        shutil.rmtree(cls.work, ignore_errors=True)

    def pins(self, *args):
        env = {k: v for k, v in os.environ.items() if k not in ("PANTRY_URL", "PANTRY_TOKEN")}
        return run([PANTRY, "pins", *args, "--config", self.pantry.config], env=env)

    def pipeline(self, pid):
        req = urllib.request.Request(self.pantry.url(f"/api/v1/pipelines/{pid}"))
        req.add_header("Authorization", "Bearer " + SUBMIT_TOKEN)
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.load(r)

    def ended(self, by_branch):
        """The state of each branch's pipeline once none is running (or at the timeout)."""
        deadline = time.monotonic() + TIMEOUT
        states = {}
        while time.monotonic() < deadline:
            states = {br: self.pipeline(b["pipeline"])["state"] for br, b in by_branch.items()}
            if all(s != "running" for s in states.values()):
                break
            time.sleep(0.5)
        return states

    def test_1_bump_submits_a_pipeline_per_branch_and_status_shows_their_results(self):
        r = self.pins("bump", "--repo", "app")
        self.assertEqual(r.returncode, 0, described(r) + "\n" + self.pantry.tail())
        self.assertEqual(pins_branches(self.repo), sorted(BRANCHES), r.stdout)
        submitted = re.findall(r"^    pipeline (\d+) submitted: (\S+)$", r.stdout, re.M)
        self.assertEqual(len(submitted), 3, r.stdout)
        with open(os.path.join(self.pantry.data_dir, "pins", "branches.json")) as f:
            record = json.load(f)
        self.assertEqual(record["format"], "pantry-pins-branches", record)
        by_branch = {b["branch"]: b for b in record["branches"]}
        self.assertEqual(sorted(by_branch), sorted(BRANCHES), record)
        for branch, b in by_branch.items():
            self.assertEqual(b["repository"], "app", b)
            self.assertEqual(b["commit"], git(self.repo, "rev-parse", branch).strip(), b)
            self.assertEqual(b["base"], git(self.repo, "rev-parse", "main").strip(), b)
            self.assertIn(b["status"], ("queued", "running"), b)
            self.assertIn((str(b["pipeline"]), b["pipeline_url"]), submitted, b)
            pipeline = self.pipeline(b["pipeline"])
            # project = the repository, patch = the branch, commit = the branch's commit.
            self.assertEqual((pipeline["project"], pipeline["patch"], pipeline["commit"]),
                             ("app", branch, b["commit"]), pipeline)

        self.assertEqual(self.ended(by_branch), BRANCHES, self.pantry.tail())

        r = self.pins("status")
        self.assertEqual(r.returncode, 1, described(r))
        for branch, state in BRANCHES.items():
            b = by_branch[branch]
            self.assertIn(f"    pipeline {b['pipeline']} {state} {b['pipeline_url']}",
                          r.stdout.splitlines(), r.stdout)
            self.assertIn(f"    commit {b['commit'][:12]}", r.stdout.splitlines(), r.stdout)
        self.assertIn("app pantry/pins/pantry-demo-app-2.0: pantry-demo-app 1.1 -> 2.0, "
                      "pantry-demo-lib 1.0 -> 1.1", r.stdout.splitlines(), r.stdout)

        # A second bump finds the branches at the same commits: nothing is submitted again, and
        # the ended pipelines are recorded.
        r = self.pins("bump", "--repo", "app")
        self.assertEqual(r.returncode, 0, described(r))
        self.assertNotIn("submitted", r.stdout)
        for branch, state in BRANCHES.items():
            self.assertIn(f"app: {branch}: pipeline {by_branch[branch]['pipeline']} {state}",
                          r.stdout.splitlines(), r.stdout)
        with open(os.path.join(self.pantry.data_dir, "pins", "branches.json")) as f:
            record = json.load(f)
        self.assertEqual({b["branch"]: b["status"] for b in record["branches"]
                          if b["repository"] == "app"}, BRANCHES, record)
        r = self.pins("status", "--repo", "nope")
        self.assertEqual(r.returncode, 2, described(r))
        self.assertIn('--repo "nope" is not a repository of pins', r.stderr)

    def test_2_a_bump_while_another_holds_the_lock_names_its_pid(self):
        lock = os.path.join(self.pantry.data_dir, "pins", "bump.lock")
        os.makedirs(os.path.dirname(lock), exist_ok=True)
        with open(lock, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            f.truncate(0)
            f.write(f"{os.getpid()}\n")
            f.flush()
            r = self.pins("bump", "--repo", "app")
        self.assertEqual(r.returncode, 2, described(r))
        self.assertIn(f"another pins bump holds {lock} (pid {os.getpid()}); wait for it to end",
                      r.stderr)
        r = self.pins("bump", "--repo", "app")
        self.assertEqual(r.returncode, 0, described(r))

    def test_3_a_url_repository_pipeline_fetches_its_commit_with_the_base(self):
        r = self.pins("bump", "--repo", "remote")
        self.assertEqual(r.returncode, 0, described(r) + "\n" + self.pantry.tail())
        self.assertEqual(pins_branches(self.bare), sorted(BRANCHES), r.stdout)
        submitted = re.findall(r"^    pipeline (\d+) submitted: (\S+)$", r.stdout, re.M)
        self.assertEqual(len(submitted), 3, r.stdout)
        self.assertNotIn(GIT_TOKEN, r.stdout + r.stderr)
        main = git(self.bare, "rev-parse", "main").strip()
        with open(os.path.join(self.pantry.data_dir, "pins", "branches.json")) as f:
            record = json.load(f)
        by_branch = {b["branch"]: b for b in record["branches"] if b["repository"] == "remote"}
        self.assertEqual(sorted(by_branch), sorted(BRANCHES), record)
        for branch, b in by_branch.items():
            pipeline = self.pipeline(b["pipeline"])
            self.assertEqual((pipeline["project"], pipeline["patch"], pipeline["commit"]),
                             ("remote", branch, git(self.bare, "rev-parse", branch).strip()),
                             pipeline)
            # A git source the runner fetches itself, with the base commit of the branch.
            self.assertEqual(pipeline["attachment"]["source"],
                             {"git": self.remote_url, "commit": b["commit"], "base": main,
                              "auth_secret": "pins-remote"}, pipeline)
        # app 2.0's job passes only with the branch's files: the runner fetched its commit
        # through the server, with the header of ci.secrets.
        self.assertEqual(self.ended(by_branch), BRANCHES, self.pantry.tail())
        self.assertGreater(self.server.served_by[RUNNER_AUTH], 0, self.server.served_by)

    def api(self, path, token):
        req = urllib.request.Request(self.pantry.url(path))
        if token:
            req.add_header("Authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def test_4_the_api_answers_what_pins_status_prints(self):
        r = self.pins("status")
        self.assertEqual(r.returncode, 1, described(r))
        code, answer = self.api("/api/v1/pins", READ_TOKEN)
        self.assertEqual(code, 200, answer)
        repos = answer["repositories"]
        self.assertEqual([repo["name"] for repo in repos], ["app", "remote"], answer)
        self.assertEqual((repos[0]["path"], repos[0]["files"]), (self.repo, ["requirements.txt"]),
                         answer)
        self.assertEqual(repos[1]["url"], self.remote_url, answer)
        for repo in repos:
            self.assertEqual({b["branch"]: b["status"] for b in repo["branches"]}, BRANCHES, answer)
        # The last bump (test_3's) made every branch of the URL repository.
        self.assertEqual((answer["last_run"]["outcome"], answer["last_run"]["checked"]),
                         ("ok", 3), answer)
        self.assertEqual(status_lines(answer), r.stdout.splitlines(), r.stdout)
        self.assertEqual(self.api("/api/v1/pins", SUBMIT_TOKEN), (code, answer))

        code, one = self.api("/api/v1/pins?repo=app", READ_TOKEN)
        self.assertEqual((code, one["repositories"]), (200, repos[:1]), one)
        code, body = self.api("/api/v1/pins?repo=nope", READ_TOKEN)
        self.assertEqual(code, 404, body)
        self.assertIn('"nope" is not a repository of pins (the config has app, remote)',
                      body["error"])
        code, body = self.api("/api/v1/pins", None)
        self.assertEqual(code, 401, body)
        code, body = self.api("/api/v1/pins", "not-a-token")
        self.assertEqual(code, 401, body)


def status_lines(answer):
    """What `pantry pins status` prints for GET /api/v1/pins's answer."""
    lines = []
    branches = [b for repo in answer["repositories"] for b in repo["branches"]]
    if not branches:
        lines.append("no branches made by pins bump")
    for b in branches:
        lines.append(f"{b['repository']} {b['branch']}: {b['change']}")
        lines.append(f"    commit {b['commit'][:12] or '-'}")
        if b["pipeline"]:
            lines.append(f"    pipeline {b['pipeline']} {b['status']} {b['pipeline_url']}")
        else:
            lines.append(f"    pipeline - {b['note'] or 'none'}")
        if b["pr_url"]:
            lines.append(f"    pull request {b['pr_url']}" + (" (declined)" if b["declined"] else ""))
    for repo in answer["repositories"]:
        for d in repo["declined"]:
            lines.append(f"{repo['name']} {d['branch']}: declined" +
                         (f" ({d['url']})" if d["url"] else ""))
    last = answer["last_run"]
    if last is None:
        lines.append("last bump: none recorded")
    else:
        problems = "problem" if last["problems"] == 1 else "problems"
        lines.append(f"last bump: {last['started']} to {last['ended']}, {last['outcome']}: "
                     f"{last['checked']} checked, {last['problems']} {problems}")
        lines += ["    " + p for p in last["first_problems"]]
    return lines


class PinsScheduleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-pins-schedule-test-")
        cls.nginx = nginx_pypi.start(os.path.join(cls.work, "upstream"), build=True)
        with open(os.path.join(cls.work, "upstream", "manifest.json")) as f:
            manifest = json.load(f)
        cls.repo = os.path.join(cls.work, "app")
        make_repo(cls.repo, manifest)
        # The next minute at least 30 s away (pantry's start may take a while on a loaded
        # machine), as cron names it in UTC: it fires once today.
        due = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=90)
        cls.due = due.replace(second=0, microsecond=0)
        extra = f"""runner: {{ enabled: false }}
ci: {{ enabled: false }}
pins:
{PINS}  schedule: "{cls.due.minute} {cls.due.hour} * * *"
  repositories:
    - {{ name: app, path: {cls.repo}, files: [requirements.txt] }}
"""
        cls.pantry = Pantry(PANTRY, os.path.join(cls.work, "pantry"), cls.nginx.index_url,
                            extra=extra)

    @classmethod
    def tearDownClass(cls):
        cls.pantry.stop()
        cls.nginx.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    def log(self):
        with open(self.pantry.log_path, errors="replace") as f:
            return f.read()

    def test_the_schedule_runs_one_bump_at_its_due_time(self):
        due = self.due.strftime("%Y-%m-%d %H:%M UTC")
        self.assertIn(f"the first run is at {due}", self.log())
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and f"the run due at {due} ended" not in self.log():
            time.sleep(1)
        log = self.log()
        self.assertIn(f"the run due at {due} ended", log, self.pantry.tail())
        self.assertEqual(log.count("the run due at"), 2, log)
        self.assertGreaterEqual(datetime.datetime.now(datetime.timezone.utc), self.due)
        self.assertIn("3 pins and images checked, no problems", log, log)
        self.assertEqual(pins_branches(self.repo), sorted(BRANCHES), log)
        with open(os.path.join(self.pantry.data_dir, "pins", "branches.json")) as f:
            record = json.load(f)
        notes = {b["branch"]: (b["status"], b["note"]) for b in record["branches"]}
        expected = ("none", "no CI run: this pantry runs no coordinator (ci.enabled is false)")
        self.assertEqual(notes, {b: expected for b in BRANCHES}, record)


if __name__ == "__main__":
    PANTRY = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
