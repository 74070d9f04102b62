#!/usr/bin/python3
"""The CI dashboard's pages of a real pantry, read over HTTP and in Debian's headless Chromium.

A pantry serve with its coordinator and built-in runner (ci_test.py's site, on the Debian Python
image) runs three pipelines of a small project: green, red (a failing test), and one whose
`ticker` job prints a line every 0.3 s for about nine seconds. Checked over plain HTTP: sign-in
(401 with a Basic challenge without a token, a runner's token refused), 404 pages naming the
unknown pipeline, job and project, the log page's step and pattern filters without JavaScript, a
bad pattern named, the raw download (text/plain, an attachment), the script and the
Content-Security-Policy. Checked in Chromium (playwright-core from npm, driving /usr/bin/chromium;
tests/browser/dashboard_check.js): every page loads with no console error, no failed request and
no error status; the charts have data points; the log page of the running ticker grows while the
job runs, without a reload, and the follow ends with the job; the pipeline page, open meanwhile,
shows the job passed without a reload. Screenshots are kept in the test's output directory,
test-artifacts/dashboard/ beside ctest's working directory, or $PANTRY_TEST_OUTPUT.

Usage: dashboard_test.py PANTRY_BINARY NODE_MODULES_DIR
"""

import base64
import json
import os
import re
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import ci_test  # noqa: E402
from ci_test import READ_TOKEN, CiBase, described, pipeline_id  # noqa: E402

NODE_MODULES = None
CHECK_SCRIPT = os.path.join(HERE, "..", "browser", "dashboard_check.js")
OUTPUT = os.environ.get("PANTRY_TEST_OUTPUT",
                        os.path.join(os.getcwd(), "test-artifacts", "dashboard"))
# The ticker's lines, 0.3 s apart: long enough for Chromium to start and load the page while
# the job still runs, even on a loaded machine.
TICKS = 40


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class DashboardTest(CiBase):

    def dash_project(self, ticks, failing=False):
        spec = f"""image: {self.base}
jobs:
  test:
    run:
      - python3 -m pytest -v -p no:cacheprovider tests
  ticker:
    run:
      - echo "ticker starts"
      - for i in $(seq 1 {ticks}); do echo "tick $i"; sleep 0.3; done
"""
        return self.project("dash", spec, failing=failing)

    def page(self, path, auth=basic("viewer", READ_TOKEN)):
        """(status, headers, body text) of a GET of a dashboard path."""
        req = urllib.request.Request(self.site.url(path))
        if auth:
            req.add_header("Authorization", auth)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.headers, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode()

    def submit(self, d, patch, wait=True, expect=0):
        args = ["submit", "-C", d, "--project", "dash", "--patch", patch, "--no-color"]
        r = self.site.pantry_cmd(*args, *(["--wait"] if wait else []))
        self.assertEqual(r.returncode, expect, described(r) + "\n" + self.site.pantry.tail())
        return pipeline_id(r.stdout)

    def wait_for(self, what, check, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.2)
        self.fail(f"timed out waiting for {what}\n{self.site.pantry.tail()}")

    def test_dashboard(self):
        green = self.submit(self.dash_project(1), "1")
        red = self.submit(self.dash_project(1, failing=True), "2", expect=1)
        jobs = self.jobs_of(green)
        test_job = jobs["test"]["id"]

        # --- Over plain HTTP, as a browser without JavaScript reads it ---
        status, headers, body = self.page("/pipelines", auth=None)
        self.assertEqual(status, 401, body)
        self.assertIn("Basic", headers["WWW-Authenticate"])
        self.assertIn("ci.tokens", body)
        status, _, body = self.page("/pipelines", auth=basic("x", "not-a-token-of-this-pantry"))
        self.assertEqual(status, 401, body)
        status, headers, body = self.page("/pipelines", auth="Bearer " + READ_TOKEN)
        self.assertEqual(status, 200, body)
        csp = headers["Content-Security-Policy"]
        for rule in ("default-src 'none'", "script-src 'self'", "connect-src 'self'"):
            self.assertIn(rule, csp)
        self.assertNotIn("unsafe-eval", csp)
        self.assertIn(f'href="/pipelines/{green}"', body)
        self.assertIn(f'href="/pipelines/{red}"', body)
        self.assertIn('<span class="st st-failed">failed</span>', body)

        for path, status, text in (
                ("/pipelines/987654", 404, "No pipeline 987654"),
                ("/jobs/987654/log", 404, "No job 987654"),
                ("/jobs/987654/log/raw", 404, "No job 987654"),
                ("/projects/no-such-project/charts", 404, "No project &quot;no-such-project&quot;"),
                ("/projects/no-such-project/tests", 404, "No project &quot;no-such-project&quot;"),
                ("/projects/dash/charts?days=lots", 400, "days: &quot;lots&quot; is not a count")):
            got, _, body = self.page(path)
            self.assertEqual(got, status, f"{path}: {body}")
            self.assertIn(text, body, path)

        status, _, body = self.page(f"/jobs/{test_job}/log")
        self.assertEqual(status, 200, body)
        self.assertIn("test_add_1 PASSED", body)
        self.assertNotIn("data-follow", body)  # the job ended: nothing to follow
        status, _, body = self.page(f"/jobs/{test_job}/log?step=run&grep=test_add_2")
        self.assertEqual(status, 200, body)
        lines = re.findall(r'<span class="[oe]">([^<]*)', body)
        self.assertTrue(lines, body)
        self.assertTrue(all("test_add_2" in line for line in lines), lines)
        status, _, body = self.page(f"/jobs/{test_job}/log?step=setup")
        self.assertEqual(status, 200, body)
        self.assertNotIn("test_add_1 PASSED", body)
        status, _, body = self.page(f"/jobs/{test_job}/log?grep=(unclosed")
        self.assertEqual(status, 400, body)
        self.assertIn("(unclosed", body)

        status, headers, raw = self.page(f"/jobs/{test_job}/log/raw")
        self.assertEqual(status, 200, raw)
        self.assertTrue(headers["Content-Type"].startswith("text/plain"), headers)
        self.assertEqual(headers["Content-Disposition"],
                         f'attachment; filename="job-{test_job}.log"')
        api_status, api_text = self.site.api(f"/api/v1/jobs/{test_job}/log")
        self.assertEqual(api_status, 200, api_text)
        self.assertEqual(raw, api_text)  # the whole log, byte for byte as the API gives it
        status, headers, raw = self.page(f"/jobs/{test_job}/log/raw?grep=PASSED")
        self.assertEqual(status, 200, raw)
        self.assertIn("-filtered.log", headers["Content-Disposition"])
        self.assertTrue(raw and all("PASSED" in line for line in raw.splitlines()), raw)

        status, headers, script = self.page("/static/dashboard.js", auth=None)
        self.assertEqual(status, 200, script)
        self.assertTrue(headers["Content-Type"].startswith("text/javascript"), headers)
        self.assertIn("data-follow", script)

        status, _, body = self.page("/projects/dash/tests")
        self.assertEqual(status, 200, body)
        self.assertIn("tests/test_3.py::test_add_3", body)  # the red pipeline's failure
        self.assertIn("assert", body)

        # --- In Chromium: a pipeline whose ticker job is running while the log page follows it ---
        running = self.submit(self.dash_project(TICKS), "3", wait=False)
        ticker = self.jobs_of(running)["ticker"]["id"]

        def ticking():
            s, text = self.site.api(f"/api/v1/jobs/{ticker}/log")
            return s == 200 and "tick 1\n" in text and f"tick {TICKS}\n" not in text
        self.wait_for("the ticker's first line", ticking)

        plan = {
            "base": self.site.url(""),
            "user": "viewer",
            "password": READ_TOKEN,
            "screenshots": OUTPUT,
            "pages": [
                {"name": "front", "path": "/"},
                {"name": "pipelines", "path": "/pipelines"},
                {"name": "pipeline-green", "path": f"/pipelines/{green}"},
                {"name": "pipeline-red", "path": f"/pipelines/{red}"},
                {"name": "log-filtered", "path": f"/jobs/{test_job}/log?grep=PASSED"},
                {"name": "projects", "path": "/projects"},
                {"name": "tests", "path": "/projects/dash/tests"},
                {"name": "charts", "path": "/projects/dash/charts"},
            ],
            "follow": {
                "path": f"/jobs/{ticker}/log",
                "pattern": r"^tick \d+$",
                "live_path": f"/pipelines/{running}",
                "live_selector": f'tr[data-job="{ticker}"]',
                "live_text": "passed",
            },
        }
        plan_file = os.path.join(self.work, "plan.json")
        with open(plan_file, "w") as f:
            json.dump(plan, f)
        env = dict(os.environ, NODE_PATH=NODE_MODULES, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
        r = subprocess.run(["node", CHECK_SCRIPT, plan_file], capture_output=True, text=True,
                           timeout=300, env=env, stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, described(r) + "\n" + self.site.pantry.tail())
        report = json.loads(r.stdout)

        for p in report["pages"]:
            self.assertEqual(p["status"], 200, p)
            self.assertEqual(p["console_errors"], [], p)
            self.assertEqual(p["failed_requests"], [], p)
            self.assertEqual(p["bad_responses"], [], p)
        charts = {c["title"]: c for p in report["pages"] if p["name"] == "charts"
                  for c in p["charts"]}
        self.assertEqual(sorted(charts), sorted(["Time to red", "Time to green", "Flaky rate",
                                                 "CPU-seconds", "Runner-seconds saved",
                                                 "Cache hit ratio"]), charts)
        for title in ("Time to red", "Time to green", "Flaky rate", "CPU-seconds",
                      "Runner-seconds saved", "Cache hit ratio"):
            self.assertGreaterEqual(charts[title]["points"], 1, charts)
            self.assertEqual(charts[title]["circles"], charts[title]["points"], charts)
        # Every pipeline: the charts are loaded after the follow, when the third one has ended.
        self.assertEqual(charts["CPU-seconds"]["points"], 3, charts)
        self.assertEqual(charts["Time to green"]["points"], 2, charts)
        self.assertEqual(charts["Time to red"]["points"], 1, charts)

        follow = report["follow"]
        self.assertTrue(follow["had_follow_url"], follow)
        self.assertEqual(follow["console_errors"], [], follow)
        self.assertEqual(follow["failed_requests"], [], follow)
        self.assertEqual(follow["bad_responses"], [], follow)
        self.assertGreaterEqual(follow["at_load"], 1, follow)
        self.assertLess(follow["at_load"], TICKS, follow)
        # The page grew while the job ran, in more than one step, to every line once.
        self.assertGreaterEqual(len(follow["samples"]), 3, follow)
        self.assertEqual(follow["samples"], sorted(follow["samples"]), follow)
        self.assertTrue(follow["ended"], follow)
        self.assertEqual(follow["at_end"], TICKS, follow)
        self.assertIn("ended", follow["status_text"], follow)
        # The heading takes the job's final state once the follow ends, without a reload.
        self.assertIn("passed", follow["heading"], follow)
        self.assertNotIn("running", follow["heading"], follow)
        self.assertTrue(follow["live_updated"], follow)
        for shot in ("charts.png", "log-following-start.png", "log-followed.png",
                     "pipeline-live.png"):
            self.assertGreater(os.path.getsize(os.path.join(OUTPUT, shot)), 1000, shot)


if __name__ == "__main__":
    ci_test.PANTRY = sys.argv[1]
    NODE_MODULES = sys.argv[2]
    del sys.argv[1:3]
    unittest.main(verbosity=2)
