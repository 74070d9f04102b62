"""pantry's pytest plugin: runs a test job's tests in the order pantry wrote, keeps the job's
shard, re-runs each failing test once, and records the re-run where pantry's JUnit reader
finds it. No dependency beyond pytest (7.2 or later); enable it with PYTEST_PLUGINS=pantry_pytest
and this file's directory on PYTHONPATH (the runner mounts it read-only in every job).

With an older pytest it prints one line and registers nothing: the order, the shard split, the
re-runs, fail fast and the quarantine are off (a sharded job then runs every test in each shard:
slower, still correct), and only the JUnit report still goes to PANTRY_JUNIT.

Environment (docs/ARCHITECTURE.md, "Test intelligence"):

PANTRY_TEST_ORDER  path of the order file (format "pantry-test-order", version 2; see
                   orchestrator/coordinator/include/pantry/orchestrator/coordinator/test_order.h).
                   Unset: the collection order is kept.
PANTRY_SHARD       this job's shard, 1..PANTRY_SHARDS (set by pantry for `parallel: N`).
PANTRY_SHARDS      the number of shards; 0 or 1 (or unset) runs every test.
PANTRY_RERUN       "0" turns the re-run of failing tests off (default: on).
PANTRY_FAIL_FAST   "1": stop at the first failing test whose re-run fails too.
PANTRY_JUNIT       a directory; unless --junitxml is given, the report is written there as
                   pytest.xml (pytest-shard-K.xml for shard K; pytest-2.xml, ... when a
                   job runs pytest more than once).

Test ids are pytest's node ids, relative to pytest's rootdir: run pytest from the project's root
(where pantry reads changed files from), or give it --rootdir there, so that they match.

A test the order file does not list goes to shard 1 + fnv1a64(node id) mod shards, and runs
after the listed tests of its group: "changed" when its file is in the file's changed_files,
else "new". Every testcase of the JUnit report carries the property pantry.id (the node id,
byte for byte); a re-run's testcase also carries pantry.rerun = 1. A re-run never changes the
session's exit status: a test that failed once failed the job, and its re-run is evidence that
it is flaky.

A test's first failing report (setup, call or teardown; not a re-run's, not a quarantined test's)
adds the property pantry.failed_at to its testcase: the wall time of that report in whole
milliseconds since the Unix epoch, from which pantry measures time to red at the first failure
rather than at the job's end.

Quarantined tests (the order file's "quarantined") run and are reported as usual, with the
property pantry.quarantined = 1 on their testcases; when they are the only failures, the
session's exit status is success, and the terminal (the job's log) names them. Fail fast never
stops at a quarantined test.
"""

import json
import os
import re
import sys
import time

import pytest
from _pytest.runner import runtestprotocol

ORDER_FORMAT = "pantry-test-order"
ORDER_VERSION = 2
MAX_SHARDS = 100
GROUPS = ("failed", "changed", "new", "rest")
ID_PROPERTY = "pantry.id"
RERUN_PROPERTY = "pantry.rerun"
QUARANTINED_PROPERTY = "pantry.quarantined"
FAILED_AT_PROPERTY = "pantry.failed_at"

# The oldest pytest this plugin was run against (Debian 12's); its hooks and runtestprotocol's
# signature are those of 7.2.
OLDEST_PYTEST = (7, 2)

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211


def fnv1a64(text):
    """64-bit FNV-1a of the UTF-8 bytes of text (the rule pantry's test_order.h shares)."""
    h = _FNV_OFFSET
    for byte in text.encode("utf-8", "surrogateescape"):
        h ^= byte
        h = (h * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


def unknown_test_shard(test_id, shards):
    """The shard (1..shards) of a test the order file does not place."""
    return 1 + fnv1a64(test_id) % shards


def _file_of(test_id):
    sep = test_id.find("::")
    return "" if sep < 0 else test_id[:sep]


def _usage_error(message):
    return pytest.UsageError("pantry: " + message)


def _whole(name, text):
    try:
        return int(text)
    except ValueError:
        raise _usage_error(
            "%s=%r is not a whole number; pantry sets it, remove it from the job's env" % (name, text)
        ) from None


def read_shard(environ):
    """(shard, shards) from the environment; (1, 1) when not sharded."""
    shards_text = environ.get("PANTRY_SHARDS", "").strip()
    shards = _whole("PANTRY_SHARDS", shards_text) if shards_text else 1
    if shards in (0, 1):
        return 1, 1
    if not 1 <= shards <= MAX_SHARDS:
        raise _usage_error("PANTRY_SHARDS=%d is not from 1 to %d" % (shards, MAX_SHARDS))
    shard_text = environ.get("PANTRY_SHARD", "").strip()
    if not shard_text:
        raise _usage_error("PANTRY_SHARDS=%d but PANTRY_SHARD is not set" % shards)
    shard = _whole("PANTRY_SHARD", shard_text)
    if not 1 <= shard <= shards:
        raise _usage_error("PANTRY_SHARD=%d is not from 1 to PANTRY_SHARDS=%d" % (shard, shards))
    return shard, shards


class Order:
    """An order file's contents: where each listed test runs and in which shard."""

    def __init__(self, shards=1, changed_files=(), tests=(), quarantined=()):
        self.shards = shards
        self.changed_files = set(changed_files)
        self.quarantined = set(quarantined)
        # id -> (group rank, position, shard); the first listing of an id wins
        self.tests = {}
        for position, (test_id, group, shard) in enumerate(tests):
            self.tests.setdefault(test_id, (GROUPS.index(group), position, shard))

    def place(self, test_id):
        """(group rank, position, shard) of a test; position None when the file does not list it."""
        listed = self.tests.get(test_id)
        if listed is not None:
            return listed
        group = "changed" if _file_of(test_id) in self.changed_files else "new"
        return GROUPS.index(group), None, unknown_test_shard(test_id, self.shards)


def read_order_file(path):
    """The Order in the file at path; a pytest.UsageError naming the file and the problem."""

    def bad(why):
        return _usage_error("order file %s (PANTRY_TEST_ORDER): %s" % (path, why))

    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8", "surrogateescape"))
    except OSError as e:
        raise bad("cannot read: %s" % e.strerror) from None
    except ValueError as e:
        raise bad("not JSON (%s)" % e) from None
    if not isinstance(data, dict):
        raise bad("not a JSON object")
    if data.get("format") != ORDER_FORMAT:
        raise bad('format: expected "%s"' % ORDER_FORMAT)
    if data.get("version") != ORDER_VERSION:
        raise bad("version: expected %d; this plugin is older than the pantry that wrote it" % ORDER_VERSION)
    shards = data.get("shards")
    if type(shards) is not int or not 1 <= shards <= MAX_SHARDS:
        raise bad("shards: expected a whole number from 1 to %d" % MAX_SHARDS)
    changed = data.get("changed_files", [])
    if not isinstance(changed, list) or not all(isinstance(f, str) for f in changed):
        raise bad("changed_files: expected an array of paths")
    quarantined = data.get("quarantined", [])
    if not isinstance(quarantined, list) or not all(isinstance(t, str) and t for t in quarantined):
        raise bad("quarantined: expected an array of test ids")
    tests = data.get("tests")
    if not isinstance(tests, list):
        raise bad("tests: expected an array")
    entries = []
    for i, t in enumerate(tests):
        where = "tests[%d]" % i
        if not isinstance(t, dict):
            raise bad(where + ": expected an object")
        test_id, shard, group = t.get("id"), t.get("shard"), t.get("group")
        if not isinstance(test_id, str) or not test_id:
            raise bad(where + ".id: expected a test id")
        if type(shard) is not int or not 1 <= shard <= shards:
            raise bad(where + ".shard: expected a whole number from 1 to %d" % shards)
        if group not in GROUPS:
            raise bad(where + ".group: expected one of " + ", ".join(GROUPS))
        entries.append((test_id, group, shard))
    return Order(shards, changed, entries, quarantined)


def _is_rerun(report):
    return (RERUN_PROPERTY, "1") in getattr(report, "user_properties", ())


class PantryPlugin:
    def __init__(self, config, order, shard, shards, rerun, fail_fast):
        self.config = config
        self.order = order
        self.shard = shard
        self.shards = shards
        self.rerun = rerun
        self.fail_fast = fail_fast
        self.failed = []  # items that failed their first run, in the order they ran
        self.failed_ids = set()
        self.rerunning = False
        self._pending = None  # the node id of the running item when it failed
        self.all_elsewhere = False  # tests were collected, and every one is another shard's
        self.quarantined = order.quarantined if order is not None else set()
        self.quarantined_failures = 0  # failed reports of quarantined tests (as pytest counts)
        self.quarantined_failed = []  # node ids of quarantined tests that failed, in order

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session, config, items):
        order = self.order or Order(self.shards)
        keyed = []
        for index, item in enumerate(items):
            rank, position, shard = order.place(item.nodeid)
            if self.order is None:
                rank, position = 0, None  # no order file: keep the collection order
            keyed.append(((rank, 0 if position is not None else 1, position or 0, index), shard, item))
        keyed.sort(key=lambda k: k[0])
        selected, deselected = [], []
        for _, shard, item in keyed:
            (selected if self.shards == 1 or shard == self.shard else deselected).append(item)
        for item in selected:
            item.user_properties.append((ID_PROPERTY, item.nodeid))
            if item.nodeid in self.quarantined:
                item.user_properties.append((QUARANTINED_PROPERTY, "1"))
        if deselected:
            config.hook.pytest_deselected(items=deselected)
        self.all_elsewhere = bool(deselected) and not selected
        items[:] = selected

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus):
        # A shard that the split left without tests (few tests, or all of them in other shards
        # by the hash) has nothing to run, which is not a failure: pytest's "no tests collected"
        # (exit status 5) would make the job red.
        terminal = session.config.pluginmanager.get_plugin("terminalreporter")
        if self.all_elsewhere and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
            session.exitstatus = pytest.ExitCode.OK
            if terminal is not None:
                terminal.write_line("pantry: shard %d of %d has none of the collected tests" % (
                    self.shard, self.shards))
        if not self.quarantined_failed:
            return
        # Every failure pytest counted (collection errors and re-runs too) is a quarantined
        # test's: the job passes. Any other failure keeps the exit status as it is.
        only_quarantined = session.testsfailed == self.quarantined_failures
        if only_quarantined and exitstatus == pytest.ExitCode.TESTS_FAILED:
            session.exitstatus = pytest.ExitCode.OK
        if terminal is not None:
            terminal.write_line("pantry: %d quarantined test%s failed (%s); %s" % (
                len(self.quarantined_failed), "" if len(self.quarantined_failed) == 1 else "s",
                ", ".join(self.quarantined_failed),
                "they do not fail the job" if only_quarantined
                else "they do not count, but other tests failed too"))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if not report.failed or self.rerunning or item.nodeid in self.quarantined:
            return
        if any(name == FAILED_AT_PROPERTY for name, _ in item.user_properties):
            return
        stamp = (FAILED_AT_PROPERTY, str(int(time.time() * 1000)))
        # The report pytest's JUnit writer reads is the teardown's, which copies the item's
        # properties when it is made: a teardown's own failure is added to its report as well.
        item.user_properties.append(stamp)
        if report.when == "teardown":
            report.user_properties.append(stamp)

    def pytest_runtest_logreport(self, report):
        if report.failed and report.nodeid in self.quarantined and not hasattr(report, "wasxfail"):
            self.quarantined_failures += 1
            if report.nodeid not in self.quarantined_failed:
                self.quarantined_failed.append(report.nodeid)
        if self.rerunning or not report.failed or report.nodeid in self.failed_ids:
            return
        self.failed_ids.add(report.nodeid)
        self._pending = report.nodeid

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        self._pending = None
        yield
        if self._pending is None or self.rerunning:
            return
        self.failed.append(item)
        if not self.fail_fast:
            return
        session = item.session
        quarantined = item.nodeid in self.quarantined
        if not self.rerun:
            if quarantined:
                return
            session.shouldfail = "pantry: fail fast: %s failed (PANTRY_FAIL_FAST=1)" % item.nodeid
            return
        # At once, not at the end: a failure that fails again stops the job now (shouldfail, as
        # -x does, so that the exit status is "tests failed", not "interrupted").
        if self._run_again(item, nextitem) and not quarantined:
            session.shouldfail = (
                "pantry: fail fast: %s failed and failed its re-run (PANTRY_FAIL_FAST=1)" % item.nodeid
            )

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtestloop(self, session):
        outcome = yield
        if not self.rerun or self.fail_fast or not self.failed:
            return
        excinfo = outcome.excinfo
        if excinfo is not None and issubclass(excinfo[0], KeyboardInterrupt):
            return
        terminal = session.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is not None:
            terminal.write_sep("-", "pantry: running %d failed test%s once more" % (
                len(self.failed), "" if len(self.failed) == 1 else "s"))
        for item in self.failed:
            self._run_again(item, None, at_end=True)

    def _run_again(self, item, nextitem, at_end=False):
        """Runs item once more, marked as a re-run; True iff the re-run failed."""
        # The first run's report is written; its failure time is not the re-run's.
        item.user_properties[:] = [p for p in item.user_properties if p[0] != FAILED_AT_PROPERTY]
        item.user_properties.append((RERUN_PROPERTY, "1"))
        self.rerunning = True
        try:
            item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
            reports = runtestprotocol(item, nextitem=nextitem, log=True)
            if not at_end:
                # At the end the terminal's progress is complete already: it would print
                # another "[100%]" after each re-run.
                item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        finally:
            self.rerunning = False
            item.user_properties.remove((RERUN_PROPERTY, "1"))
        return any(r.failed for r in reports)

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report, config):
        if not _is_rerun(report):
            return None
        if report.when == "call" or report.failed:
            return "rerun", "R", "RERUN " + report.outcome.upper()
        return "", "", ""


def _flag(environ, name, default):
    text = environ.get(name, "").strip()
    if not text:
        return default
    if text not in ("0", "1"):
        raise _usage_error("%s=%r: use 1 (on) or 0 (off)" % (name, text))
    return text == "1"


def _report_path(directory, stem):
    """directory/stem.xml, or stem-2.xml, -3, ... when a run of this job wrote that already."""
    path = os.path.join(directory, stem + ".xml")
    n = 2
    while os.path.lexists(path):
        path = os.path.join(directory, "%s-%d.xml" % (stem, n))
        n += 1
    return path


def version_tuple(text):
    """(major, minor) of a version string such as "7.2.1" or "8.0.0rc1"; (0, 0) if unreadable."""
    m = re.match(r"(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    environ = os.environ
    junit_dir = environ.get("PANTRY_JUNIT", "").strip()
    if version_tuple(pytest.__version__) < OLDEST_PYTEST:
        sys.stderr.write(
            "pantry: pytest %s is older than %d.%d, the oldest this plugin was verified with: the "
            "planned order, the shard split (each shard runs every test), re-runs, fail fast and "
            "the quarantine are off; install pytest>=%d.%d in the image to have them\n"
            % ((pytest.__version__,) + OLDEST_PYTEST + OLDEST_PYTEST))
        if junit_dir and not getattr(config.option, "xmlpath", None):
            config.option.xmlpath = _report_path(junit_dir, "pytest")
        return
    shard, shards = read_shard(environ)
    order = None
    order_path = environ.get("PANTRY_TEST_ORDER", "").strip()
    if order_path:
        order = read_order_file(order_path)
        if order.shards != shards:
            raise _usage_error(
                "order file %s has %d shards but PANTRY_SHARDS=%d; pantry writes both from the "
                "job's `parallel`, so the file is not this job's" % (order_path, order.shards, shards)
            )
    if junit_dir and not getattr(config.option, "xmlpath", None):
        config.option.xmlpath = _report_path(junit_dir, "pytest" if shards == 1 else "pytest-shard-%d" % shard)
    plugin = PantryPlugin(
        config,
        order,
        shard,
        shards,
        rerun=_flag(environ, "PANTRY_RERUN", True),
        fail_fast=_flag(environ, "PANTRY_FAIL_FAST", False),
    )
    config.pluginmanager.register(plugin, "pantry-plugin")
