#!/usr/bin/python3
"""Test intelligence end to end: a real `pantry serve` (built-in runner, the Debian Python image
of tests/fixtures/python_image.py) runs a project the test makes, of 200 pytest tests in
`parallel: 3` shards under `keep_going`, four times:

  1. pytest's own order (no history yet): the failing test is the last of its shard, after
     3.7 s of slow tests; the seeded coin test passes.
  2. The failing test is the first test line of its shard's log, and the pipeline's time to red
     (measured at the first failing test's report, not at a job's end) drops below the first
     pipeline's. The shards were planned by the first run's durations: their summed recorded
     durations (the "recorded" line of each shard's log, from its JUnit report) are within 1.3x
     of each other, as the plan said. The coin test fails, then passes its re-run: flaky, with
     that evidence, in the API and `pantry tests --flaky`.
  3. The failing test is fixed; the coin test fails its first run again: the pipeline is red
     only because of a flaky test, and the measures say so.
  4. The coin test is quarantined through the API: it still runs and fails in the log, and the
     pipeline is green.
Then the project's measures (API, /metrics, `pantry ci measures`) hold all of it.

The coin test's outcome is random.Random(seed).random() < 0.5 with a seed from a file the test
writes into the project before each run and the attempt number in the pytest process; the test
picks seeds that give each run's outcomes, so it is random in form and deterministic in fact.

Usage: test_intelligence_test.py PANTRY_BINARY
"""

import html
import json
import os
import random
import re
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
sys.path.insert(0, HERE)

import ci_test  # noqa: E402
import pytest_suite  # noqa: E402
import python_image  # noqa: E402
from ci_test import READ_TOKEN, described, pipeline_id  # noqa: E402

PROJECT = "intel"
FAILING = pytest_suite.FAILING
COIN = "tests/test_coin.py::test_coin_flip"
# Slow tests by name and seconds. With no history the plugin splits by fnv1a64(id) mod 3: the
# first three share the failing test's shard (3.7 s before it), the others go to the other two.
SLOW = {"test_slow_0": 1.5, "test_slow_3": 1.2, "test_slow_6": 1.0, "test_slow_1": 0.9,
        "test_slow_2": 0.8, "test_slow_5": 0.6}
FAST_FILES, FAST_PER_FILE = 10, 19
TOTAL = pytest_suite.count(FAST_FILES, FAST_PER_FILE, SLOW) + 1  # and the coin test
TEST_LINE = re.compile(r"(tests/test_\w+\.py::\S+) (PASSED|FAILED)")
RECORDED = re.compile(r"tests: (\d+) tests in \d+ JUnit files: .* (\d+\.\d{3}) s; recorded")
PLANNED = re.compile(r"tests: shard (\d) of 3: .* (\d+\.\d{3}) s by their past durations")

COIN_TEST = """import os
import random

SEED_FILE = os.path.join(os.path.dirname(__file__), "..", "coin_seed")
_attempts = [0]


def test_coin_flip():
    # Heads (below 0.5) fails. The seed: the run's number from the file and the attempt in this
    # process (the plugin's re-run is the second).
    _attempts[0] += 1
    with open(SEED_FILE) as f:
        seed = int(f.read()) * 1000 + _attempts[0]
    assert random.Random(seed).random() >= 0.5, "heads with seed %d" % seed
"""


def coin_fails(seed, attempt):
    """What COIN_TEST does with the run's seed on its attempt-th run in a process."""
    return random.Random(seed * 1000 + attempt).random() < 0.5


def seed_for(first_fails, after, second_fails=None):
    """The smallest seed above `after` whose first attempt fails iff first_fails (and second iff
    second_fails, when given)."""
    seed = after + 1
    while (coin_fails(seed, 1) != first_fails
           or (second_fails is not None and coin_fails(seed, 2) != second_fails)):
        seed += 1
    return seed


class TestIntelligenceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-intel-test-")
        cls.image = python_image.ensure_python_image()
        ident = os.path.basename(cls.work).replace("pantry-intel-test-", "intel-")
        # No job installs anything: the PyPI upstream is never asked.
        cls.site = ci_test.Site(os.path.join(cls.work, "site"), "http://127.0.0.1:9/simple/",
                                ident, slots=3)
        digest = python_image.push(cls.image["layout"], cls.image["tag"],
                                   f"127.0.0.1:{cls.site.pantry.port}", "local/python",
                                   creds=f"ci:{ci_test.PUSH_TOKEN}")
        cls.base = f"local/python@{digest}"
        cls.project_dir = os.path.join(cls.work, "project")

    @classmethod
    def tearDownClass(cls):
        cls.site.stop()
        cls.site.clean()
        shutil.rmtree(cls.work, ignore_errors=True)

    def write_project(self, seed, failing):
        contents = pytest_suite.files(FAST_FILES, FAST_PER_FILE, SLOW, failing=failing)
        contents["tests/test_coin.py"] = COIN_TEST
        contents["coin_seed"] = f"{seed}\n"
        contents[".pantry.yml"] = f"""image: {self.base}
keep_going: true
jobs:
  test:
    parallel: 3
    run:
      - python3 -m pytest -v -p no:cacheprovider tests
"""
        pytest_suite.write(self.project_dir, contents)

    def submit(self, patch, expect_exit):
        r = self.site.pantry_cmd("submit", "-C", self.project_dir, "--project", PROJECT,
                                 "--patch", str(patch), "--wait", "--no-color")
        self.assertEqual(r.returncode, expect_exit, described(r) + "\n" + self.site.pantry.tail())
        pid = pipeline_id(r.stdout)
        pipeline = self.site.api_json(f"/api/v1/pipelines/{pid}")
        shards = {}
        for job in pipeline["jobs"]:
            status, log = self.site.api(f"/api/v1/jobs/{job['id']}/log")
            self.assertEqual(status, 200, log)
            shards[job["shard"]] = {"job": job, "log": log,
                                    "order": [m.group(1) for m in TEST_LINE.finditer(log)]}
        self.assertEqual(sorted(shards), [1, 2, 3], pipeline)
        ran = [t for s in shards.values() for t in s["order"]]
        self.assertEqual(len(ran), TOTAL, "every test in exactly one shard: %s" % ran)
        self.assertEqual(len(set(ran)), TOTAL, ran)
        return int(pid), pipeline, shards

    def shard_of(self, shards, test):
        for n, s in shards.items():
            if test in s["order"]:
                return n
        self.fail(f"{test} ran in no shard")

    def recorded_seconds(self, shard):
        m = RECORDED.search(shard["log"])
        self.assertIsNotNone(m, shard["log"][-2000:])
        return int(m.group(1)), float(m.group(2))

    def measures(self):
        status, text = self.site.api(f"/api/v1/projects/{PROJECT}/measures", token=READ_TOKEN)
        self.assertEqual(status, 200, text)
        m = json.loads(text)
        return m, {p["pipeline"]: p for p in m["each"]}

    def flaky(self):
        status, text = self.site.api(f"/api/v1/projects/{PROJECT}/tests?flaky=1",
                                     token=READ_TOKEN)
        self.assertEqual(status, 200, text)
        return {f["id"]: f for f in json.loads(text)["flaky"]}

    def test_history_orders_balances_finds_the_flake_and_quarantine_makes_it_green(self):
        # 1: pytest's own order.
        seed1 = seed_for(first_fails=False, after=0)
        self.write_project(seed1, failing=True)
        p1, _, shards = self.submit(1, expect_exit=1)
        failing_shard = self.shard_of(shards, FAILING)
        first_run = shards[failing_shard]["order"]
        self.assertEqual(first_run[-1], FAILING, first_run)
        slow_before = [t for t in first_run if "test_slow" in t]
        self.assertEqual(len(slow_before), 3, first_run)
        self.assertIn(f"{FAILING} FAILED", shards[failing_shard]["log"])
        self.assertIn(f"{COIN} PASSED", "".join(s["log"] for s in shards.values()))
        for s in shards.values():
            self.assertIn("no test in pantry's order (no history yet)", s["log"])
        _, each = self.measures()
        red1 = each[p1]["time_to_red"]
        self.assertIsNotNone(red1, each[p1])

        # 2: the failure first; shards planned by duration; the coin fails once.
        seed2 = seed_for(first_fails=True, second_fails=False, after=seed1)
        self.write_project(seed2, failing=True)
        p2, pipeline2, shards = self.submit(2, expect_exit=1)
        failing_shard = self.shard_of(shards, FAILING)
        order = shards[failing_shard]["order"]
        self.assertEqual(order[0], FAILING, order)
        self.assertIn(f"{COIN} FAILED", "".join(s["log"] for s in shards.values()))

        planned, recorded = {}, {}
        for n, s in shards.items():
            m = PLANNED.search(s["log"])
            self.assertIsNotNone(m, s["log"][:3000])
            self.assertEqual(int(m.group(1)), n, m.group(0))
            planned[n] = float(m.group(2))
            count, seconds = self.recorded_seconds(s)
            self.assertEqual(count, len(s["order"]), s["log"][-2000:])
            recorded[n] = seconds
        balance = f"planned {planned}, recorded {recorded} (summed JUnit durations per shard)"
        self.assertLessEqual(max(planned.values()), 1.3 * min(planned.values()), balance)
        self.assertLessEqual(max(recorded.values()), 1.3 * min(recorded.values()), balance)
        # The first run's split by hash was not balanced: the plan is what made the difference.
        for n in shards:
            self.assertGreater(recorded[n], 0.5 * planned[n], balance)
            self.assertLess(recorded[n], 2 * planned[n], balance)

        m, each = self.measures()
        red2 = each[p2]["time_to_red"]
        self.assertIsNotNone(red2, each[p2])
        # Measured at the failing test's report, not the job's end: the failing shard's job ran
        # on for its other tests (a second or more of them) after it.
        job = shards[failing_shard]["job"]
        job_end = (job["finished_at"] - pipeline2["created_at"]) / 1000
        self.assertLess(red2, job_end, (each[p2], job))
        # And the failure came before 3.7 s of slow tests did, not after.
        self.assertLess(red2, red1, f"time to red: first pipeline {red1} s, second {red2} s")
        sys.stderr.write(f"time to red: first pipeline {red1:.2f} s, second {red2:.2f} s (its "
                         f"failing shard ended at {job_end:.2f} s); {balance}\n")

        flaky = self.flaky()
        self.assertEqual(list(flaky), [COIN], flaky)
        evidence = flaky[COIN]["evidence"]
        coin_job = shards[self.shard_of(shards, COIN)]["job"]["id"]
        self.assertIn(("rerun", coin_job, coin_job),
                      [(e["kind"], e["failed_job"], e["passed_job"]) for e in evidence], flaky)
        listed = self.site.pantry_cmd("tests", "--project", PROJECT, "--flaky")
        self.assertEqual(listed.returncode, 0, described(listed))
        self.assertIn(COIN, listed.stdout)

        # 3: the failure fixed; the coin fails its first run: red only because of a flaky test.
        seed3 = seed_for(first_fails=True, second_fails=False, after=seed2)
        self.write_project(seed3, failing=False)
        p3, _, shards = self.submit(3, expect_exit=1)
        _, each = self.measures()
        self.assertEqual(each[p3]["failing_tests"], [], each[p3])  # it passed its re-run
        self.assertTrue(each[p3]["red_only_flaky"], each[p3])
        self.assertFalse(each[p1]["red_only_flaky"], each[p1])
        self.assertFalse(each[p2]["red_only_flaky"], each[p2])

        # 4: quarantined, it still runs (and fails) and the pipeline is green.
        status, text = self.site.api(f"/api/v1/projects/{PROJECT}/quarantine?test={COIN}",
                                     method="PUT")
        self.assertEqual(status, 200, text)
        seed4 = seed_for(first_fails=True, after=seed3)
        self.write_project(seed4, failing=False)
        p4, _, shards = self.submit(4, expect_exit=0)
        coin_log = shards[self.shard_of(shards, COIN)]["log"]
        self.assertIn(f"{COIN} FAILED", coin_log)
        self.assertIn(f"pantry: 1 quarantined test failed ({COIN}); they do not fail the job",
                      coin_log)

        # The measures over the four pipelines, in the API, /metrics and the CLI.
        m, each = self.measures()
        self.assertEqual([each[p]["state"] for p in (p1, p2, p3, p4)],
                         ["failed", "failed", "failed", "passed"], m)
        self.assertEqual((m["tests"], m["flaky_tests"], m["red_only_flaky"]), (TOTAL, 1, 1), m)
        self.assertAlmostEqual(m["flaky_test_rate"], 1 / TOTAL, places=6)
        self.assertAlmostEqual(m["red_only_flaky_rate"], 1 / 3, places=6)
        self.assertIsNotNone(each[p4]["time_to_green"], each[p4])
        reds = sorted(each[p]["time_to_red"] for p in (p1, p2, p3))
        self.assertAlmostEqual(m["median_time_to_red"], reds[1], places=3)
        metrics = self.site.api("/metrics", token=None)[1]
        for name, value in (("pantry_ci_flaky_tests", 1), ("pantry_ci_red_only_flaky_pipelines", 1),
                            ("pantry_ci_window_pipelines", 4)):
            self.assertRegex(metrics, rf'{name}\{{project="{PROJECT}"\}} {value}\b',
                             metrics[-3000:])
        red = re.search(rf'pantry_ci_time_to_red_seconds\{{project="{PROJECT}"\}} (\S+)', metrics)
        self.assertIsNotNone(red, metrics[-3000:])
        self.assertAlmostEqual(float(red.group(1)), m["median_time_to_red"], places=3)
        out = self.site.pantry_cmd("ci", "measures", "--project", PROJECT)
        self.assertEqual(out.returncode, 0, described(out))
        self.assertIn(f"project {PROJECT}: 4 pipelines", out.stdout)
        self.assertIn("time to red", out.stdout)

        # And the dashboard's pages: the coin flaky and quarantined, four pipelines charted.
        status, page = self.site.api(f"/projects/{PROJECT}/tests", token=READ_TOKEN)
        self.assertEqual(status, 200, page[:2000])
        for section in ("flaky", "quarantined"):
            m = re.search(rf'<section id="{section}">(.*?)</section>', page, re.S)
            self.assertIsNotNone(m, page[:3000])
            self.assertIn(html.escape(COIN), m.group(1), m.group(0))
        status, page = self.site.api(f"/projects/{PROJECT}/charts", token=READ_TOKEN)
        self.assertEqual(status, 200, page[:2000])
        points = {title: int(n) for n, title in
                  re.findall(r'data-points="(\d+)"><title>([^<]*)</title>', page)}
        self.assertEqual((points.get("Time to red"), points.get("Time to green"),
                          points.get("CPU-seconds")), (3, 1, 4), points)


if __name__ == "__main__":
    ci_test.PANTRY = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
