#!/usr/bin/python3
"""The pin bot inside `pantry serve`.

PinsScheduleTest: a `pantry serve` (no coordinator) whose pins.schedule names the next minute
(UTC, at least 15 s ahead); within about 75 s it runs one bump on its own: the branches appear in
its repository, and the log has one start and one summary line.

Usage: pins_service_test.py PANTRY_BINARY
"""

import datetime
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
import nginx_pypi  # noqa: E402
from pantry_serve import Pantry, clean_env  # noqa: E402
from pins_test import pinned  # noqa: E402

PANTRY = None
TIMEOUT = 180
PINS = ("  enabled: true\n  python: [\"3.11\"]\n  platforms: [linux-x86_64]\n")
BRANCHES = ["pantry/pins/pantry-demo-app-2.0", "pantry/pins/pantry-demo-lib-1.1",
            "pantry/pins/pantry-demo-util-1.0"]


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


class PinsScheduleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-pins-schedule-test-")
        cls.nginx = nginx_pypi.start(os.path.join(cls.work, "upstream"), build=True)
        with open(os.path.join(cls.work, "upstream", "manifest.json")) as f:
            manifest = json.load(f)
        cls.repo = os.path.join(cls.work, "app")
        make_repo(cls.repo, manifest)
        # The next minute at least 15 s away, as cron names it in UTC: it fires once today.
        due = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=75)
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


if __name__ == "__main__":
    PANTRY = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
