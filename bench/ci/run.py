#!/usr/bin/python3
"""The CI coordinator: `pantry submit` against `pantry run` of the same step, a pipeline of 1,000
jobs on 2 slots, and the follow of a job's 100 MB log (issue 13's benchmark).

    bench/ci/run.py PANTRY_BINARY [--runs 21] [--jobs 1000] [--log-mb 100] [--quick]
                    [--workdir DIR] [--keep]

Set-up, all on 127.0.0.1 and started here (needs root):

  pantry    `PANTRY_BINARY serve` (tests/fixtures/pantry_serve.py) with a hosted local/
            repository, the runner (its runc root, state dir and cgroup parent its own, under
            /run/pantry-bench-ci/ID and pantry-bench-ci-ID) and the coordinator: `ci.slots: 2`,
            a submit token, logs up to 256 MiB a job; the PyPI upstream is a closed port (no job
            here uses pip);
  image     busybox-static (tests/fixtures/make_oci_images.py, as bench/runner uses it), pushed
            with skopeo to local/busybox; a first `pantry run` unpacks its layer (warm);
  project   a git work tree holding only the .pantry.yml of each part, submitted with
            `pantry submit -C DIR --url … --token …` as a user would (the tree is packed, its
            digest HEADed, uploaded once).

1. Submit to output and result, --runs times each, alternating, after two warm-up rounds:
   `pantry submit --wait --no-color` of a one-job pipeline (`run: echo hello`) against
   `pantry run --image local/busybox@… -- /bin/sh -ec 'echo hello'` (the step the coordinator
   gives the runner: the same shell, the same environment report, the same network default).
   The bench starts the client and stamps each line of its merged stdout and stderr as it reads
   it (unbuffered pipe): "first line" is the line `echo | hello` (submit) or `hello` (run);
   "result" is the client's exit (submit: after the `pipeline N passed` line).  The API's own
   times of the pipeline (created_at, the job's queued_at, started_at, finished_at, in ms) split
   submit's time into: client to pipeline created (pack, HEAD, POST), queued to started, the job,
   finished to the client's exit.  Target: submit ≤ pantry run + 100 ms.
2. A pipeline of --jobs jobs `run: "true"` with no needs, on the 2 slots: `pantry submit --wait`
   from start to exit.  Against: the same number of `pantry run -- /bin/sh -ec true` from 2
   threads, each running its share one after another (what 2 slots do by hand, each a client
   process, so the anchor pays a client start per step that the coordinator does not).
   Scheduling overhead per job, two ways: against the anchor, (pipeline − anchor) × 2 / jobs;
   from the API, the time the 2 slots spent outside the jobs' own spans
   (2 × (pipeline's finished_at − created_at) − Σ(finished_at − started_at)) / jobs.  The jobs
   per second in the first and the last tenth of the pipeline (by started_at) show whether the
   scheduler slows down as the pipeline grows.  The serve's VmRSS and VmHWM (/proc) before and
   after, and the highest VmRSS sampled every 20 ms while it ran.
3. A job printing --log-mb MB (`busybox yes … | busybox head -c N`): submitted without --wait,
   then `pantry logs -f JOB` started at once, its stdout read by the bench in 1 MiB reads;
   throughput from the first to the last byte; the serve's VmRSS sampled every 20 ms (highest
   minus before).  Against: `pantry run` of the same step, its stdout read the same way (the
   runner's own stream), and `pantry logs JOB` of the stored log once the job ended.

Output: progress on stderr, the tables on stdout (Markdown).  Everything started is stopped and
removed at the end, also after a failure; the scratch dir (pantry-bench-ci-XXXXXX in the temp
dir, or --workdir) is removed after a clean run and kept with --keep or after a failure.  Exit
status 0; 1 if a command under test failed; 2 on another error.  The target is printed, not
enforced.  Python 3 standard library; needs root and the Debian packages runc, skopeo, umoci,
busybox-static, git.
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
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
import daemons  # noqa: E402
import make_oci_images as moi  # noqa: E402
import oci_registry  # noqa: E402
import pantry_serve  # noqa: E402


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The driver, log and load average are bench/pypi's; the scene's clean-up stack and removal of
# the runner's state are bench/runner's.
pypi_bench = _load("pypi_bench", os.path.join(ROOT, "bench", "pypi", "run.py"))
runner_bench = _load("runner_bench", os.path.join(ROOT, "bench", "runner", "run.py"))
Failure, log, loadavg = pypi_bench.Failure, pypi_bench.log, pypi_bench.loadavg

RUNC = daemons.RUNC
GIT = "/usr/bin/git"
PUSH_TOKEN = "3f9a0c7e5b1d4a2c8e6f0b9d"
SUBMIT_TOKEN = "bench-submit-token-0123456789"
STATE_BASE = "/run/pantry-bench-ci"
SLOTS = 2
CMD_TIMEOUT = 1800
LOG_LINE = "pantry bench: a line of the job log that repeats"


# ---------------------------------------------------------------- small helpers

def run(cmd, check=True, timeout=CMD_TIMEOUT, what=None, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, **kw)
    if check and r.returncode != 0:
        raise Failure(f"{what or ' '.join(cmd)}: exit {r.returncode}\n--- stdout:\n{r.stdout[-3000:]}"
                      f"\n--- stderr:\n{r.stderr[-3000:]}")
    return r


def ms(xs, q):
    """The q-quantile of XS (seconds) in ms: 0.5 the median, 0.9 p90 (inclusive method)."""
    xs = sorted(xs)
    if q == 0.5:
        return statistics.median(xs) * 1000
    if len(xs) < 2:
        return xs[0] * 1000
    return statistics.quantiles(xs, n=10, method="inclusive")[int(q * 10) - 1] * 1000


def proc_status(pid):
    """{VmRSS, VmHWM} of PID in MiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out


class RssSampler:
    """The highest VmRSS of PID (MiB), sampled every 20 ms while in the `with`."""

    def __init__(self, pid):
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()

    def __enter__(self):
        self.before = proc_status(self.pid)
        self.peak = self.before["VmRSS"]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.02):
            with contextlib.suppress(OSError, KeyError):
                self.peak = max(self.peak, proc_status(self.pid)["VmRSS"])

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.after = proc_status(self.pid)
        self.peak = max(self.peak, self.after["VmRSS"])


def reap(p):
    """Kills process P if it still runs (a read or wait that failed) and closes its stdout."""
    if p.poll() is None:
        p.kill()
        p.wait()
    p.stdout.close()


def stamped_lines(cmd, first, timeout=CMD_TIMEOUT):
    """Runs CMD with stdout and stderr merged into one unbuffered pipe; returns (seconds to the
    first line for which FIRST(line) holds or None, seconds to the exit, the output, the start as
    time.time())."""
    wall0 = time.time()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, bufsize=0)
    t_first, out = None, []
    try:
        for raw in iter(p.stdout.readline, b""):
            now = time.perf_counter()
            line = raw.decode(errors="replace").rstrip("\n")
            out.append(line)
            if t_first is None and first(line):
                t_first = now - t0
        p.wait(timeout=timeout)
    finally:
        reap(p)
    t_exit = time.perf_counter() - t0
    text = "\n".join(out)
    if p.returncode != 0:
        raise Failure(f"{' '.join(cmd)}: exit {p.returncode}\n{text[-3000:]}")
    return t_first, t_exit, text, wall0


def byte_stream(cmd, timeout=CMD_TIMEOUT):
    """Runs CMD, reading its stdout in 1 MiB reads: (bytes, seconds from the first to the last
    byte, seconds from the start to the exit)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, bufsize=0)
    err = []
    reader = threading.Thread(target=lambda: err.append(p.stderr.read()), daemon=True)
    reader.start()
    n, t_first, t_last = 0, None, None
    fd = p.stdout.fileno()
    try:
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            t_last = time.perf_counter()
            if t_first is None:
                t_first = t_last
            n += len(chunk)
        p.wait(timeout=timeout)
    finally:
        reap(p)
    reader.join()
    if p.returncode != 0:
        raise Failure(f"{' '.join(cmd)}: exit {p.returncode}\n{(err[0] if err else b'').decode()[-3000:]}")
    if t_first is None:
        raise Failure(f"{' '.join(cmd)}: no output")
    return n, t_last - t_first, time.perf_counter() - t0


# ---------------------------------------------------------------- the scene

class Scene(runner_bench.Scene):
    """bench/runner's scene (path, defer, remove_state) with one serve and its coordinator."""

    def __init__(self, args, work, stack):
        self.args, self.work, self.stack = args, work, stack
        self.ident = os.path.basename(work).rsplit("-", 1)[-1]
        self.state = f"{STATE_BASE}/{self.ident}"
        self.runc_root = f"{self.state}/runc"
        self.cgroup_parent = f"pantry-bench-ci-{self.ident}"
        self.cleanup_errors = []

    def start_pantry(self):
        self.defer(self.remove_state)
        self.defer(daemons.remove_cgroups, self.cgroup_parent)
        extra = f"""runner:
  runc_root: {self.runc_root}
  state_dir: {self.state}/containers
  cgroup_parent: {self.cgroup_parent}
ci:
  slots: {SLOTS}
  tokens:
    - {{ name: bench, token: "{SUBMIT_TOKEN}", role: submit }}
  logs: {{ max_job: 256MiB, max_total: 4GiB }}
"""
        oci = f'  hosted:\n    prefix: local/\n    users: [ {{ name: ci, token: "{PUSH_TOKEN}" }} ]\n'
        # no job uses pip: the upstream is a port nothing listens on
        upstream = f"http://127.0.0.1:{pantry_serve.free_port()}/simple/"
        self.pantry = pantry_serve.Pantry(self.args.pantry, self.path("pantry"), upstream,
                                          oci=oci, extra=extra)
        self.defer(self.stop_pantry)
        self.pid = self.pantry.process.pid
        self.host = f"127.0.0.1:{self.pantry.port}"

    def stop_pantry(self):
        self.pantry.stop()
        shutil.rmtree(self.pantry.data_dir, ignore_errors=True)

    def remove_state(self):
        super().remove_state()
        with contextlib.suppress(OSError):
            os.rmdir(STATE_BASE)  # when no other run uses it

    def push_image(self):
        os.makedirs(self.path("images"), exist_ok=True)
        busybox = moi.build_busybox(self.path("images"), moi.DEFAULT_EPOCH)
        digest = oci_registry.push(busybox["layout"], "latest", f"{self.host}/local/busybox:1",
                                   creds=f"ci:{PUSH_TOKEN}")
        self.image = f"local/busybox@{digest}"
        run(self.pantry_run_cmd("true"), what="the warm-up pantry run")
        log(f"pushed {self.image} to pantry at {self.host}; its layer unpacked")

    # ---- clients

    def pantry_run_cmd(self, script):
        return [self.args.pantry, "run", "--config", self.pantry.config, "--image", self.image,
                "--", "/bin/sh", "-ec", script]

    def client(self, *args):
        return [self.args.pantry, *args, "--url", self.pantry.url(""), "--token", SUBMIT_TOKEN]

    def project(self, name, jobs):
        """A git work tree holding .pantry.yml with JOBS ({name: run}); its path."""
        d = self.path("projects", name)
        os.makedirs(d)
        with open(os.path.join(d, ".pantry.yml"), "w") as f:
            f.write(f"image: {self.image}\njobs:\n")
            for job, script in jobs.items():
                f.write(f"  {job}:\n    run: {json.dumps(script)}\n")
        env = dict(os.environ, GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
        for cmd in ([GIT, "init", "-q", "-b", "main"], [GIT, "add", "-A"],
                    [GIT, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "c"]):
            run(cmd, cwd=d, env=env)
        return d

    def api(self, path):
        req = urllib.request.Request(self.pantry.url(path),
                                     headers={"Authorization": "Bearer " + SUBMIT_TOKEN})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    def left_behind(self):
        left = {}
        if os.path.isdir(self.runc_root):
            ids = run([RUNC, "--root", self.runc_root, "list", "--quiet"], check=False).stdout.split()
            if ids:
                left["runc"] = ids
        mounts = daemons.mounts_under(self.work) + daemons.mounts_under(self.state)
        if mounts:
            left["mounts"] = mounts
        return left


def pipeline_id(text):
    m = re.search(r"/api/v1/pipelines/(\d+)", text)
    if not m:
        raise Failure(f"no pipeline URL in: {text[-2000:]!r}")
    return m.group(1)


# ---------------------------------------------------------------- the measurements

def measure_latency(scene, runs):
    """Part 1: {kind: {"first": [s], "result": [s]}} and the API's split of submit's time."""
    d = scene.project("hello", {"echo": "echo hello"})
    submit = scene.client("submit", "-C", d, "--project", "hello", "--wait", "--no-color")
    run_cmd = scene.pantry_run_cmd("echo hello")
    times = {k: {"first": [], "result": []} for k in ("submit", "run")}
    split = {k: [] for k in ("client to created", "queued to started", "job", "finished to exit")}

    def one_submit(record):
        first, end, text, wall0 = stamped_lines(submit, lambda l: l.rstrip().endswith("| hello"))
        if first is None:
            raise Failure(f"pantry submit: no `echo | hello` line:\n{text[-2000:]}")
        if record:
            times["submit"]["first"].append(first)
            times["submit"]["result"].append(end)
            p = scene.api(f"/api/v1/pipelines/{pipeline_id(text)}")
            j = p["jobs"][0]
            split["client to created"].append(p["created_at"] / 1000 - wall0)
            split["queued to started"].append((j["started_at"] - j["queued_at"]) / 1000)
            split["job"].append((j["finished_at"] - j["started_at"]) / 1000)
            split["finished to exit"].append(wall0 + end - p["finished_at"] / 1000)

    def one_run(record):
        first, end, text, _ = stamped_lines(run_cmd, lambda l: l.rstrip() == "hello")
        if first is None:
            raise Failure(f"pantry run: no `hello` line:\n{text[-2000:]}")
        if record:
            times["run"]["first"].append(first)
            times["run"]["result"].append(end)

    for i in range(runs + 2):
        order = (one_submit, one_run) if i % 2 == 0 else (one_run, one_submit)
        for fn in order:
            fn(record=i >= 2)
        if i >= 2 and ((i - 1) % 5 == 0 or i + 1 == runs + 2):
            log(f"latency round {i - 1}/{runs}: submit {ms(times['submit']['result'], 0.5):.1f} ms, "
                f"run {ms(times['run']['result'], 0.5):.1f} ms; load {loadavg()}")
    return times, split


def measure_many(scene, jobs):
    """Part 2: the pipeline of JOBS `true` jobs and the anchor."""
    width = len(str(jobs))
    d = scene.project("many", {f"t{i:0{width}d}": "true" for i in range(1, jobs + 1)})
    before = proc_status(scene.pid)
    with RssSampler(scene.pid) as rss:
        t0 = time.perf_counter()
        wall0 = time.time()
        r = run(scene.client("submit", "-C", d, "--project", "many", "--wait", "--no-color"),
                what="pantry submit of the many-job pipeline")
        total = time.perf_counter() - t0
    p = scene.api(f"/api/v1/pipelines/{pipeline_id(r.stdout)}")
    if p["state"] != "passed" or len(p["jobs"]) != jobs:
        raise Failure(f"the {jobs}-job pipeline: {p['state']}, {len(p['jobs'])} jobs")
    span = (p["finished_at"] - p["created_at"]) / 1000
    busy = sum(j["finished_at"] - j["started_at"] for j in p["jobs"]) / 1000
    starts = sorted(j["started_at"] / 1000 for j in p["jobs"])
    tenth = max(jobs // 10, 2)

    def rate(xs):
        return (len(xs) - 1) / (xs[-1] - xs[0]) if xs[-1] > xs[0] else float("inf")
    many = dict(total=total, span=span, busy=busy, submit_to_created=p["created_at"] / 1000 - wall0,
                job_median=statistics.median((j["finished_at"] - j["started_at"]) / 1000
                                             for j in p["jobs"]),
                rate_first=rate(starts[:tenth]), rate_last=rate(starts[-tenth:]),
                rss_before=before, rss_after=rss.after, rss_peak=rss.peak)
    log(f"{jobs} jobs: {total:.1f} s; RSS {before['VmRSS']:.1f} -> {rss.after['VmRSS']:.1f} MiB "
        f"(peak {rss.peak:.1f}); load {loadavg()}")

    # the anchor: 2 workers, each running its share of `pantry run` one after another
    cmd = scene.pantry_run_cmd("true")
    errors = []

    def worker(n):
        for _ in range(n):
            r = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL)
            if r.returncode != 0:
                errors.append(r.stderr.decode(errors="replace")[-2000:])
                return
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(jobs // SLOTS + (i < jobs % SLOTS),))
               for i in range(SLOTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    many["anchor"] = time.perf_counter() - t0
    if errors:
        raise Failure("pantry run of true: " + errors[0])
    log(f"{jobs} pantry runs on {SLOTS} workers: {many['anchor']:.1f} s; load {loadavg()}")
    return many


def measure_log(scene, mb):
    """Part 3: following a job that prints MB megabytes."""
    size = mb * 1000 * 1000
    script = f"busybox yes '{LOG_LINE}' | busybox head -c {size}"
    d = scene.project("loud", {"loud": script})
    with RssSampler(scene.pid) as rss:
        r = run(scene.client("submit", "-C", d, "--project", "loud", "--no-color"))
        pid = pipeline_id(r.stdout)
        job = str(scene.api(f"/api/v1/pipelines/{pid}")["jobs"][0]["id"])
        n, span, _ = byte_stream(scene.client("logs", "-f", job))
    j = scene.api(f"/api/v1/jobs/{job}")
    if j["state"] != "passed":
        raise Failure(f"the loud job: {j['state']} {j.get('reason')}")
    if n < size:
        raise Failure(f"pantry logs -f gave {n} bytes of a job that printed {size}")
    stored_n, stored_span, _ = byte_stream(scene.client("logs", job))
    # the same job again with nobody following its log: what the coordinator's ingestion alone
    # costs (the API polled every 100 ms, which reads the job's record only)
    r = run(scene.client("submit", "-C", d, "--project", "loud", "--no-color"))
    pid = pipeline_id(r.stdout)
    deadline = time.monotonic() + CMD_TIMEOUT
    while True:
        alone = scene.api(f"/api/v1/pipelines/{pid}")["jobs"][0]
        if alone["state"] not in ("queued", "running"):
            break
        if time.monotonic() > deadline:
            raise Failure(f"the unfollowed loud job did not end: {alone}")
        time.sleep(0.1)
    if alone["state"] != "passed":
        raise Failure(f"the unfollowed loud job: {alone['state']} {alone.get('reason')}")
    run_n, run_span, _ = byte_stream(scene.pantry_run_cmd(script))
    out = dict(bytes=n, span=span, job=(j["finished_at"] - j["started_at"]) / 1000,
               alone=(alone["finished_at"] - alone["started_at"]) / 1000,
               stored_bytes=stored_n, stored_span=stored_span, run_bytes=run_n, run_span=run_span,
               rss_before=rss.before, rss_after=rss.after, rss_peak=rss.peak)
    log(f"log follow: {n / span / 1e6:.1f} MB/s; RSS {rss.before['VmRSS']:.1f} -> "
        f"{rss.after['VmRSS']:.1f} MiB (peak {rss.peak:.1f}); load {loadavg()}")
    return out


# ---------------------------------------------------------------- the report

def report(args, versions, started, loads, times, split, many, logf):
    out = [f"bench/ci, {started}: {versions['pantry']}, {versions['runc']}; {os.cpu_count()} cores; "
           f"load average {loads[0]} at the start, {loadavg()} at the end", ""]
    targets = []
    if times:
        out.append(f"submit to output and result, one job `echo hello`, {args.runs} runs each "
                   "(warm), ms:")
        out.append("")
        out.append("| how | first line median | p90 | result median | p90 |")
        out.append("|---|---:|---:|---:|---:|")
        for kind, label in (("submit", "`pantry submit --wait`"),
                            ("run", "`pantry run -- /bin/sh -ec 'echo hello'`")):
            t = times[kind]
            out.append(f"| {label} | {ms(t['first'], 0.5):.1f} | {ms(t['first'], 0.9):.1f} | "
                       f"{ms(t['result'], 0.5):.1f} | {ms(t['result'], 0.9):.1f} |")
        d_first = ms(times["submit"]["first"], 0.5) - ms(times["run"]["first"], 0.5)
        d_result = ms(times["submit"]["result"], 0.5) - ms(times["run"]["result"], 0.5)
        d_first90 = ms(times["submit"]["first"], 0.9) - ms(times["run"]["first"], 0.9)
        d_result90 = ms(times["submit"]["result"], 0.9) - ms(times["run"]["result"], 0.9)
        out.append(f"| overhead: submit − run | {d_first:+.1f} | {d_first90:+.1f} | "
                   f"{d_result:+.1f} | {d_result90:+.1f} |")
        out.append(f"| ratio: submit ÷ run | {ms(times['submit']['first'], 0.5) / ms(times['run']['first'], 0.5):.2f} | | "
                   f"{ms(times['submit']['result'], 0.5) / ms(times['run']['result'], 0.5):.2f} | |")
        out.append("| GitLab runner's default poll interval (`check_interval`), for comparison | "
                   "| | 3000 (a job waits up to this long to be picked up) | |")
        out.append("")
        out.append("submit's time from the API's stamps (median ms): " + "; ".join(
            f"{k} {ms(v, 0.5):.1f}" for k, v in split.items()))
        out.append("")
        targets.append((f"submit to result ≤ pantry run + 100 ms: +{d_result:.1f} ms (median), "
                        f"+{d_result90:.1f} (p90)", d_result <= 100))
    if many:
        n = args.jobs
        per_anchor = (many["total"] - many["anchor"]) * SLOTS / n * 1000
        per_api = (SLOTS * many["span"] - many["busy"]) / n * 1000
        out.append(f"{n} jobs `true` in one pipeline on {SLOTS} slots:")
        out.append("")
        out.append("| what | value |")
        out.append("|---|---:|")
        out.append(f"| `pantry submit --wait`, start to exit | {many['total']:.2f} s |")
        out.append(f"| {n} × `pantry run -- /bin/sh -ec true` from {SLOTS} threads | "
                   f"{many['anchor']:.2f} s |")
        out.append(f"| ratio pipeline ÷ pantry runs | {many['total'] / many['anchor']:.2f} |")
        out.append(f"| overhead per job against the runs: (pipeline − runs) × {SLOTS} / {n} | "
                   f"{per_anchor:+.1f} ms |")
        out.append(f"| a job's own span, started_at to finished_at (median) | "
                   f"{many['job_median'] * 1000:.1f} ms |")
        out.append(f"| slots idle per job (API): ({SLOTS} × span − Σ job spans) / {n} | "
                   f"{per_api:.1f} ms |")
        out.append(f"| client start to pipeline created (pack, upload, POST of {n} jobs) | "
                   f"{many['submit_to_created'] * 1000:.0f} ms |")
        out.append(f"| jobs started per second, first tenth / last tenth | "
                   f"{many['rate_first']:.1f} / {many['rate_last']:.1f} |")
        b, a = many["rss_before"], many["rss_after"]
        out.append(f"| serve VmRSS before / after / highest sampled | {b['VmRSS']:.1f} / "
                   f"{a['VmRSS']:.1f} / {many['rss_peak']:.1f} MiB |")
        out.append(f"| serve VmHWM before / after | {b['VmHWM']:.1f} / {a['VmHWM']:.1f} MiB |")
        out.append("")
    if logf:
        mbps = logf["bytes"] / logf["span"] / 1e6
        out.append(f"a job printing {args.log_mb} MB:")
        out.append("")
        out.append("| how | MB | s | MB/s | ÷ pantry run |")
        out.append("|---|---:|---:|---:|---:|")
        run_mbps = logf["run_bytes"] / logf["run_span"] / 1e6
        stored_mbps = logf["stored_bytes"] / logf["stored_span"] / 1e6
        out.append(f"| `pantry logs -f`, first to last byte, while the job runs | "
                   f"{logf['bytes'] / 1e6:.1f} | {logf['span']:.2f} | {mbps:.1f} | "
                   f"{mbps / run_mbps:.2f} |")
        out.append(f"| the job's own span (API), followed | | {logf['job']:.2f} | "
                   f"{args.log_mb / logf['job']:.1f} | |")
        out.append(f"| the same job's span with nobody following (API) | | {logf['alone']:.2f} | "
                   f"{args.log_mb / logf['alone']:.1f} | |")
        out.append(f"| `pantry logs`, the stored log after the end | {logf['stored_bytes'] / 1e6:.1f} | "
                   f"{logf['stored_span']:.2f} | {stored_mbps:.1f} | {stored_mbps / run_mbps:.2f} |")
        out.append(f"| `pantry run` of the same step, its stdout | {logf['run_bytes'] / 1e6:.1f} | "
                   f"{logf['run_span']:.2f} | {run_mbps:.1f} | 1.00 |")
        b, a = logf["rss_before"], logf["rss_after"]
        out.append("")
        out.append(f"serve VmRSS while following: {b['VmRSS']:.1f} MiB before, highest "
                   f"{logf['rss_peak']:.1f} (+{logf['rss_peak'] - b['VmRSS']:.1f}), "
                   f"{a['VmRSS']:.1f} after; VmHWM {b['VmHWM']:.1f} -> {a['VmHWM']:.1f} MiB")
        out.append("")
    out.append("targets:")
    out += [f"- {'met   ' if ok else 'MISSED'} {text}" for text, ok in targets]
    print("\n".join(out), flush=True)


def run_bench(args, work, failures):
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_start = loadavg()
    versions = {"pantry": run([args.pantry, "version"]).stdout.strip(),
                "runc": run([RUNC, "--version"]).stdout.splitlines()[0]}
    log(f"bench/ci: {started}, {os.cpu_count()} cores, load average {load_start}; work dir {work}")
    times = split = many = logf = None
    with contextlib.ExitStack() as stack:
        scene = Scene(args, work, stack)
        try:
            scene.start_pantry()
            scene.push_image()
            if "latency" not in args.skip:
                times, split = measure_latency(scene, args.runs)
            if "many" not in args.skip:
                many = measure_many(scene, args.jobs)
            if "log" not in args.skip:
                logf = measure_log(scene, args.log_mb)
        except KeyboardInterrupt:
            log("bench/ci: interrupted; cleaning up")
            raise
        finally:
            left = scene.left_behind()
        if left:
            failures.append(f"left behind while pantry ran: {left}")
    failures += scene.cleanup_errors
    report(args, versions, started, (load_start,), times, split, many, logf)


def main(argv=None):
    parser = argparse.ArgumentParser(description="the CI coordinator: submit latency, a "
                                                 "1,000-job pipeline, a 100 MB log")
    parser.add_argument("pantry", help="the pantry binary (a release build)")
    parser.add_argument("--runs", type=int, default=21, help="latency runs per kind (default 21)")
    parser.add_argument("--jobs", type=int, default=1000, help="jobs of the big pipeline (1000)")
    parser.add_argument("--log-mb", type=int, default=100, help="MB the loud job prints (100)")
    parser.add_argument("--skip", default="", help="comma-separated: latency, many, log")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 runs, 100 jobs, 10 MB")
    parser.add_argument("--workdir", help="where the scratch dir goes (default: the temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (logs, configs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.jobs, args.log_mb = 5, 100, 10
    args.skip = {s for s in args.skip.split(",") if s}
    if os.geteuid() != 0:
        parser.error("needs root (runc, mounts, cgroups)")
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.default_int_handler)
    try:
        return pypi_bench.drive("ci", parser, args, [RUNC, moi.UMOCI, oci_registry.SKOPEO, GIT],
                                run_bench)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
