#!/usr/bin/python3
"""Test intelligence: time to the first failure report of a 200-test suite whose one failing
test runs last in pytest's own order, pantry's ordered run against plain pytest on the same
runner; and the balance of `parallel: 3` shards against pytest-xdist's `--dist load` and an
alphabetical split.

    bench/tests/run.py PANTRY_BINARY [--runs 3] [--quick] [--workdir DIR] [--keep]

Set-up, all on 127.0.0.1 and started here (needs root): bench/ci's scene (`pantry serve` with a
hosted local/ repository, the runner and the coordinator, its runc root, state dir and cgroup
parent its own) with 3 slots, and the Debian Python image (tests/fixtures/python_image.py)
pushed to local/python.

The suite (tests/fixtures/pytest_suite.py): 200 tests in 6 files, 188 of them quick arithmetic,
9 that sleep 0.3 to 1.5 s (7.8 s together), and 3 in the last file, whose last test fails.  Each part
submits it with `pantry submit --wait` as a user would.

1. Time to the first failure report, one job, --runs times each, alternating:
   - plain pytest: `python3 -m pytest -v -p no:pantry_pytest tests`: pantry's plugin blocked,
     so pytest's own order on the same runner and image;
   - pantry, first run: the plugin with no history for its project (a fresh project name
     each time): pytest's order too, plus the plugin's own cost;
   - pantry, second run: the same project again: the order file puts the failure first.
   Measured from the job's log as the API gives it (?format=ndjson, each line stamped by the
   runner as it read it): the stamp of the first `FAILED` test line, from the pipeline's
   creation (what the submitter waits) and from pytest's "test session starts" line (the order
   alone, without the container's start).  For pantry, also the pipeline's time to red from the
   measures API (now taken at the first failing test's report).  Target: the second run's first
   failure ≥ 5× sooner than plain pytest's (printed from the pipeline's creation and from the
   session's start).
2. Shard balance over 3 shards, slowest shard ÷ mean, by the tests' summed durations:
   - pantry's plan: `parallel: 3` after one run of history (the second run's shards, summed
     from their JUnit reports as the job log's "recorded" line gives them), and the first run's
     (no history: the plugin's hash split);
   - pytest-xdist `-n 3 --dist load` on the host (when installed: Debian's python3-pytest-xdist),
     per worker from its `-v` lines ([gwN]) and the JUnit durations;
   - an alphabetical split: the sorted test ids cut into 3 runs of equal count, priced with the
     durations pantry recorded.

Output: progress on stderr, the tables on stdout (Markdown).  Exit status 0; 1 if a command
under test failed; 2 on another error.  The target is printed, not enforced.  Python 3 standard
library; needs root and the Debian packages runc, skopeo, umoci, git, mmdebstrap (the image).
"""

import argparse
import contextlib
import importlib.util
import json
import os
import re
import signal
import statistics
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
import pytest_suite  # noqa: E402
import python_image  # noqa: E402


# bench/ci's scene (serve, runner, coordinator, clean-up) and helpers, and through it bench/pypi's
# driver and bench/runner's scene.
_spec = importlib.util.spec_from_file_location("ci_bench", os.path.join(ROOT, "bench", "ci", "run.py"))
ci_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ci_bench)
Failure, log, loadavg, run = ci_bench.Failure, ci_bench.log, ci_bench.loadavg, ci_bench.run
ci_bench.SLOTS = 3
SHARDS = 3
PYTHON = "/usr/bin/python3"

SLOW = {"test_slow_a": 1.5, "test_slow_b": 1.2, "test_slow_c": 1.1, "test_slow_d": 1.0,
        "test_slow_e": 0.9, "test_slow_f": 0.7, "test_slow_g": 0.6, "test_slow_h": 0.5,
        "test_slow_i": 0.3}
FAST_FILES, FAST_PER_FILE = 4, 47
FAILING = pytest_suite.FAILING
TEST_LINE = re.compile(r"(tests/test_\w+\.py::\S+) (PASSED|FAILED)")
RECORDED = re.compile(r"tests: \d+ tests in \d+ JUnit files: .* (\d+\.\d{3}) s; recorded")
XDIST_LINE = re.compile(r"\[(gw\d+)\].* (PASSED|FAILED) (tests/\S+)")


class Scene(ci_bench.Scene):
    def push_image(self):
        image = python_image.ensure_python_image()
        digest = python_image.push(image["layout"], image["tag"], self.host, "local/python",
                                   creds=f"ci:{ci_bench.PUSH_TOKEN}")
        self.image = f"local/python@{digest}"
        log(f"pushed {self.image} to pantry at {self.host}")

    def suite_project(self, name, command, parallel=1):
        d = self.path("projects", name)
        contents = pytest_suite.files(FAST_FILES, FAST_PER_FILE, SLOW)
        contents[".pantry.yml"] = (f"image: {self.image}\nkeep_going: true\njobs:\n  test:\n"
                                   + (f"    parallel: {parallel}\n" if parallel > 1 else "")
                                   + f"    run: {json.dumps(command)}\n")
        pytest_suite.write(d, contents)
        return d

    def submit(self, d, project):
        """The pipeline's record and {shard: (job record, [ndjson log lines])}; the run must be
        red (the suite fails)."""
        r = run(self.client("submit", "-C", d, "--project", project, "--wait", "--no-color"),
                check=False)
        if r.returncode != 1:
            raise Failure(f"pantry submit of {project}: exit {r.returncode}, expected 1 (red)\n"
                          f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        p = self.api(f"/api/v1/pipelines/{ci_bench.pipeline_id(r.stdout)}")
        jobs = {}
        for j in p["jobs"]:
            req = urllib.request.Request(
                self.pantry.url(f"/api/v1/jobs/{j['id']}/log?format=ndjson"),
                headers={"Authorization": "Bearer " + ci_bench.SUBMIT_TOKEN})
            with urllib.request.urlopen(req, timeout=60) as resp:
                lines = [json.loads(x) for x in resp.read().decode().splitlines() if x.strip()]
            jobs[j["shard"] or 1] = (j, lines)
        return p, jobs

    def measures(self, project):
        m = self.api(f"/api/v1/projects/{project}/measures")
        return {x["pipeline"]: x for x in m["each"]}


def first_failure(pipeline, jobs):
    """(s from the pipeline's creation, s from pytest's session start) to the first FAILED line."""
    best = None
    for _, lines in jobs.values():
        start = next((x["time"] for x in lines if "test session starts" in x["text"]), None)
        for x in lines:
            m = TEST_LINE.search(x["text"])
            if m and m.group(2) == "FAILED":
                if start is None:
                    raise Failure(f"no 'test session starts' line before {x['x']!r}")
                if best is None or x["time"] < best[0]:
                    best = (x["time"], start)
                break
    if best is None:
        raise Failure(f"pipeline {pipeline['id']}: no FAILED test line in its logs")
    return (best[0] - pipeline["created_at"]) / 1000, (best[0] - best[1]) / 1000


def first_test(jobs):
    for _, lines in jobs.values():
        for x in lines:
            m = TEST_LINE.search(x["text"])
            if m:
                return m.group(1)
    return None


def measure_first_failure(scene, runs):
    """Part 1: {kind: [(from creation, from session start, pantry's time to red or None)]}."""
    kinds = {"plain pytest": [], "pantry, first run": [], "pantry, second run": []}
    plain = scene.suite_project("plain", "python3 -m pytest -v -p no:cacheprovider "
                                         "-p no:pantry_pytest tests")
    for i in range(runs):
        p, jobs = scene.submit(plain, "plain")
        if first_test(jobs) == FAILING:
            raise Failure("plain pytest ran the failing test first: the plugin was not blocked")
        kinds["plain pytest"].append(first_failure(p, jobs) + (None,))
        project = f"ordered-{i}"
        d = scene.suite_project(project, "python3 -m pytest -v -p no:cacheprovider tests")
        for n, kind in ((1, "pantry, first run"), (2, "pantry, second run")):
            p, jobs = scene.submit(d, project)
            first = first_test(jobs)
            if (first == FAILING) != (n == 2):
                raise Failure(f"{kind}: the first test was {first}")
            red = scene.measures(project)[p["id"]]["time_to_red"]
            kinds[kind].append(first_failure(p, jobs) + (red,))
        log(f"round {i + 1}/{runs}: " + "; ".join(
            f"{k} {v[-1][0]:.2f} s" for k, v in kinds.items()) + f"; load {loadavg()}")
    return kinds


def balance(sums):
    return max(sums) / statistics.mean(sums)


def durations(scene, project):
    """{test id: median seconds} from pantry's history of PROJECT."""
    tests = scene.api(f"/api/v1/projects/{project}/tests")["tests"]
    return {t["id"]: t["seconds"] or 0.0 for t in tests}


def xdist_sums(scene, d):
    """Per-worker summed durations of `pytest -n 3 --dist load` on the host, or None."""
    probe = run([PYTHON, "-c", "import xdist"], check=False)
    if probe.returncode != 0:
        return None
    xml = os.path.join(scene.work, "xdist.xml")
    r = run([PYTHON, "-m", "pytest", "-n", str(SHARDS), "--dist", "load", "-v",
             "-p", "no:cacheprovider", "-p", "no:randomly", f"--junitxml={xml}", "tests"],
            check=False, cwd=d, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    if r.returncode != 1:
        raise Failure(f"pytest-xdist: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    worker = {}
    for m in XDIST_LINE.finditer(r.stdout):
        worker.setdefault(m.group(3), m.group(1))
    seconds = {}
    for tc in ET.parse(xml).getroot().iter("testcase"):
        path = tc.get("classname").replace(".", "/") + ".py"
        seconds[f"{path}::{tc.get('name')}"] = seconds.get(
            f"{path}::{tc.get('name')}", 0.0) + float(tc.get("time") or 0)
    if set(worker) != set(seconds):
        raise Failure(f"pytest-xdist: {len(worker)} tests in -v lines, {len(seconds)} in JUnit")
    sums = {}
    for test, gw in worker.items():
        sums[gw] = sums.get(gw, 0.0) + seconds[test]
    return [sums.get(f"gw{i}", 0.0) for i in range(SHARDS)]


def measure_balance(scene):
    """Part 2: {split: [per-shard seconds]}."""
    project = "sharded"
    d = scene.suite_project(project, "python3 -m pytest -v -p no:cacheprovider tests",
                            parallel=SHARDS)
    out = {}
    for label in ("pantry, first run (no history: hash split)",
                  "pantry, second run (planned by duration)"):
        _, jobs = scene.submit(d, project)
        sums = []
        for shard in range(1, SHARDS + 1):
            text = "\n".join(x["text"] for x in jobs[shard][1])
            m = RECORDED.search(text)
            if not m:
                raise Failure(f"{label}: shard {shard} has no 'recorded' line:\n{text[-2000:]}")
            sums.append(float(m.group(1)))
        out[label] = sums
        log(f"{label}: {sums}")
    known = durations(scene, project)
    ids = sorted(known)
    cut = [ids[i * len(ids) // SHARDS:(i + 1) * len(ids) // SHARDS] for i in range(SHARDS)]
    out["alphabetical split (equal counts)"] = [sum(known[t] for t in c) for c in cut]
    xd = xdist_sums(scene, d)
    out["pytest-xdist -n 3 --dist load" + ("" if xd else ": not installed")] = xd
    return out


def report(started, load_start, versions, kinds, shards, runs):
    out = [f"bench/tests, {started}: {versions['pantry']}, {versions['runc']}; {os.cpu_count()} "
           f"cores; load average "
           f"{load_start} at the start, {loadavg()} at the end", ""]
    targets = []
    if kinds:
        plain = [statistics.median(x[i] for x in kinds["plain pytest"]) for i in (0, 1)]
        out.append(f"time to the first failure report, 200 tests (one failing, last in pytest's "
                   f"order), one job; median of {runs} runs:")
        out.append("")
        out.append("| run | from the pipeline's creation | from pytest's session start | "
                   "pantry's time to red (measures API) | plain ÷ this: creation / session |")
        out.append("|---|---:|---:|---:|---:|")
        for kind, xs in kinds.items():
            created, session = (statistics.median(x[i] for x in xs) for i in (0, 1))
            reds = [x[2] for x in xs if x[2] is not None]
            red = f"{statistics.median(reds):.2f} s" if reds else "-"
            out.append(f"| {kind} | {created:.2f} s | {session:.2f} s | {red} | "
                       f"{plain[0] / created:.2f} / {plain[1] / session:.2f} |")
        second = [statistics.median(x[i] for x in kinds["pantry, second run"]) for i in (0, 1)]
        for i, since in enumerate(("the pipeline's creation", "pytest's session start")):
            ratio = plain[i] / second[i]
            targets.append((f"second run's first failure ≥ 5× sooner than plain pytest's, from "
                            f"{since}: {ratio:.1f}×", ratio >= 5))
        out.append("")
    if shards:
        out.append("shard balance, 3 shards, by summed test durations (s):")
        out.append("")
        out.append("| split | shard seconds | slowest ÷ mean |")
        out.append("|---|---|---:|")
        for label, sums in shards.items():
            if sums is None:
                out.append(f"| {label} | - | - |")
                continue
            out.append(f"| {label} | {' / '.join(f'{s:.2f}' for s in sums)} | "
                       f"{balance(sums):.2f} |")
        out.append("")
    out.append("targets:")
    for text, ok in targets:
        out.append(("- met    " if ok else "- MISSED ") + text)
    print("\n".join(out), flush=True)


def run_bench(args, work, failures):
    versions = {"pantry": run([args.pantry, "version"]).stdout.strip(),
                "runc": run([ci_bench.RUNC, "--version"]).stdout.splitlines()[0]}
    started, load_start = time.strftime("%Y-%m-%d %H:%M:%S %Z"), loadavg()
    log(f"bench/tests: {started}, {os.cpu_count()} cores, load average {load_start}; work {work}")
    kinds = shards = None
    with contextlib.ExitStack() as stack:
        scene = Scene(args, work, stack)
        try:
            scene.start_pantry()
            scene.push_image()
            kinds = measure_first_failure(scene, args.runs)
            shards = measure_balance(scene)
        finally:
            left = scene.left_behind()
        if left:
            failures.append(f"left behind while pantry ran: {left}")
    failures += scene.cleanup_errors
    report(started, load_start, versions, kinds, shards, args.runs)


def main(argv=None):
    parser = argparse.ArgumentParser(description="test intelligence: time to the first failure "
                                                 "and shard balance")
    parser.add_argument("pantry", help="the pantry binary (a release build)")
    parser.add_argument("--runs", type=int, default=3, help="rounds of part 1 (default 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round")
    parser.add_argument("--workdir", help="where the scratch dir goes (default: the temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (logs, configs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 1
    if os.geteuid() != 0:
        parser.error("needs root (runc, mounts, cgroups)")
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.default_int_handler)
    try:
        return ci_bench.pypi_bench.drive("tests", parser, args,
                                         [ci_bench.RUNC, ci_bench.moi.UMOCI,
                                          ci_bench.oci_registry.SKOPEO], run_bench)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
