"""Tests of pantry's pytest plugin (orchestrator/coordinator/pytest/pantry_pytest.py) with
pytest's pytester: the order, the shards, the re-runs in the JUnit report, fail fast, and the
errors for a bad environment. Run by ctest (label unit) with Debian's pytest:
    PYTHONPATH=orchestrator/coordinator/pytest /usr/bin/python3 -m pytest -p pytester \
        tests/unit/orchestrator/coordinator/pantry_pytest_test.py
"""

import json
import os
import re
import time
import xml.etree.ElementTree as ET

import pytest

import pantry_pytest

HERE = os.path.dirname(os.path.abspath(__file__))
# The JUnit report of PLUGIN_SUITE as this plugin and pytest write it, which the C++ reader's
# tests read too (junit_test.cpp): the two sides agree on one file, checked on both sides.
AGREED_REPORT = os.path.join(HERE, "data", "pytest_plugin_junit.xml")

PANTRY_VARS = ("PANTRY_TEST_ORDER", "PANTRY_SHARD", "PANTRY_SHARDS", "PANTRY_RERUN",
               "PANTRY_FAIL_FAST", "PANTRY_JUNIT")

# A flaky test fails on its first run in a session and passes on its second, by a counter in a
# file beside it; a broken one always fails.
PLUGIN_SUITE = {
    "test_a.py": """
import os, pytest
COUNTER = os.path.join(os.path.dirname(__file__), "flaky.count")

def test_ok():
    pass

def test_flaky():
    n = int(open(COUNTER).read()) if os.path.exists(COUNTER) else 0
    open(COUNTER, "w").write(str(n + 1))
    assert n % 2 == 1, "fails every other run"

def test_broken():
    assert 1 == 2

@pytest.mark.parametrize("x", ["a::b", "1-\u00e9"])
def test_param(x):
    pass

@pytest.mark.skip(reason="not today")
def test_skipped():
    pass
""",
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in PANTRY_VARS:
        monkeypatch.delenv(name, raising=False)


def write_order(pytester, tests, shards=1, changed_files=(), quarantined=()):
    path = pytester.path / "order.json"
    path.write_text(json.dumps({
        "format": "pantry-test-order", "version": pantry_pytest.ORDER_VERSION, "shards": shards,
        "groups": ["failed", "changed", "new", "rest"], "changed_files": list(changed_files),
        "quarantined": list(quarantined),
        "tests": [dict(zip(("id", "shard", "group"), t)) for t in tests],
    }))
    return str(path)


def ran(result):
    """The node ids in the order their first run reported them (-v output)."""
    seen = []
    for line in result.outlines:
        m = re.match(r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED)", line)
        if m and m.group(1) not in seen:
            seen.append(m.group(1))
    return seen


def junit_testcases(path, failed_at=None):
    """(name, properties, outcome tags) of each testcase of a JUnit report, in order. The value
    of a pantry.failed_at property (a time) is given as "MS" after checking it is a whole number
    of milliseconds; `failed_at`, a dict, gets the values themselves by test name."""
    out = []
    for tc in ET.parse(path).getroot().iter("testcase"):
        props = []
        for p in tc.iter("property"):
            name, value = p.get("name"), p.get("value")
            if name == pantry_pytest.FAILED_AT_PROPERTY:
                assert re.fullmatch(r"[1-9][0-9]{12}", value), (tc.get("name"), value)
                if failed_at is not None:
                    failed_at[tc.get("name")] = int(value)
                value = "MS"
            props.append((name, value))
        props = tuple(props)
        tags = tuple(sorted(c.tag for c in tc if c.tag in ("failure", "error", "skipped")))
        out.append((tc.get("name"), props, tags))
    return out


def test_fnv_rule_matches_pantrys():
    # The same values as test_order_test.cpp's UnknownTestsGoToTheSharedHashShard.
    assert pantry_pytest.fnv1a64("") == 14695981039346656037
    assert pantry_pytest.fnv1a64("a") == 0xAF63DC4C8601EC8C
    assert pantry_pytest.fnv1a64("tests/test_a.py::test_x[1]") == 0x88AF7101348335C6
    assert pantry_pytest.unknown_test_shard("a", 3) == 1 + 0xAF63DC4C8601EC8C % 3


def test_order_file_orders_listed_then_unlisted_by_group(pytester, monkeypatch):
    pytester.makepyfile(
        test_one="def test_a(): pass\ndef test_b(): pass\ndef test_c(): pass\ndef test_new(): pass\n",
        test_two="def test_x(): pass\ndef test_y(): pass\n",
    )
    order = write_order(pytester, [
        ("test_one.py::test_c", 1, "failed"),
        ("test_two.py::test_y", 1, "changed"),
        ("test_one.py::test_b", 1, "rest"),
        ("test_one.py::test_a", 1, "rest"),
        ("gone.py::test_deleted", 1, "rest"),
    ], changed_files=["test_two.py"])
    monkeypatch.setenv("PANTRY_TEST_ORDER", order)
    result = pytester.runpytest("-p", "pantry_pytest", "-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
    # test_x is unlisted in a changed file: after the listed changed test; test_new is new.
    assert ran(result) == [
        "test_one.py::test_c", "test_two.py::test_y", "test_two.py::test_x",
        "test_one.py::test_new", "test_one.py::test_b", "test_one.py::test_a",
    ], result.outlines


def test_without_an_order_file_the_collection_order_stays(pytester):
    pytester.makepyfile(test_one="def test_b(): pass\ndef test_a(): pass\n")
    result = pytester.runpytest("-p", "pantry_pytest", "-v", "-p", "no:cacheprovider")
    assert ran(result) == ["test_one.py::test_b", "test_one.py::test_a"], result.outlines


def test_shards_take_their_tests_and_unlisted_ones_by_the_hash(pytester, monkeypatch):
    names = ["test_%d" % i for i in range(30)]
    pytester.makepyfile(test_many="".join("def %s(): pass\n" % n for n in names))
    listed = [("test_many.py::%s" % n, 1 + i % 3, "rest") for i, n in enumerate(names[:10])]
    order = write_order(pytester, listed, shards=3)
    monkeypatch.setenv("PANTRY_TEST_ORDER", order)
    monkeypatch.setenv("PANTRY_SHARDS", "3")
    per_shard = {}
    for shard in (1, 2, 3):
        monkeypatch.setenv("PANTRY_SHARD", str(shard))
        result = pytester.runpytest("-p", "pantry_pytest", "-v", "-p", "no:cacheprovider")
        per_shard[shard] = ran(result)
        deselected = 30 - len(per_shard[shard])
        if deselected:
            result.stdout.fnmatch_lines(["*%d deselected*" % deselected])
    everything = [t for s in per_shard.values() for t in s]
    assert sorted(everything) == sorted("test_many.py::%s" % n for n in names), per_shard
    for test_id, shard, _ in listed:
        assert test_id in per_shard[shard]
    for n in names[10:]:
        test_id = "test_many.py::" + n
        assert test_id in per_shard[pantry_pytest.unknown_test_shard(test_id, 3)]
    # each shard runs its never-seen tests before the listed "rest", and those in the file's order
    for shard in (1, 2, 3):
        mine = [t for t, s, _ in listed if s == shard]
        assert per_shard[shard][-len(mine):] == mine, per_shard[shard]


def test_shards_without_an_order_file_split_by_the_hash(pytester, monkeypatch):
    pytester.makepyfile(test_many="".join("def test_%d(): pass\n" % i for i in range(20)))
    monkeypatch.setenv("PANTRY_SHARDS", "2")
    seen = []
    for shard in (1, 2):
        monkeypatch.setenv("PANTRY_SHARD", str(shard))
        result = pytester.runpytest("-p", "pantry_pytest", "-v", "-p", "no:cacheprovider")
        mine = ran(result)
        assert all(pantry_pytest.unknown_test_shard(t, 2) == shard for t in mine), mine
        seen += mine
    assert len(seen) == 20 and len(set(seen)) == 20


def test_a_shard_without_tests_passes(pytester, monkeypatch):
    pytester.makepyfile(test_one="def test_only(): pass\n")
    monkeypatch.setenv("PANTRY_SHARDS", "2")
    mine = pantry_pytest.unknown_test_shard("test_one.py::test_only", 2)
    monkeypatch.setenv("PANTRY_SHARD", str(3 - mine))
    result = pytester.runpytest("-p", "pantry_pytest", "-v", "-p", "no:cacheprovider")
    assert result.ret == 0, result.outlines
    assert ran(result) == []
    result.stdout.fnmatch_lines(["pantry: shard %d of 2 has none of the collected tests" % (3 - mine)])
    # Nothing collected at all is still pytest's "no tests collected".
    (pytester.path / "test_one.py").unlink()
    result = pytester.runpytest("-p", "pantry_pytest", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED, result.outlines


def test_failing_tests_are_rerun_once_and_the_report_marks_the_reruns(pytester, monkeypatch):
    pytester.makepyfile(**PLUGIN_SUITE)
    junit = pytester.path / "junit"
    monkeypatch.setenv("PANTRY_JUNIT", str(junit))
    result = pytester.runpytest("-p", "pantry_pytest", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    # The re-runs are reported apart: the first runs' counts stay as they were.
    result.stdout.fnmatch_lines(["*2 failed, 3 passed, 1 skipped*, 2 rerun in*"])
    report = junit / "pytest.xml"
    cases = junit_testcases(report)
    rid = lambda name: ("pantry.id", "test_a.py::" + name)
    rerun = ("pantry.rerun", "1")
    failed_at = ("pantry.failed_at", "MS")
    assert cases == [
        ("test_ok", (rid("test_ok"),), ()),
        ("test_flaky", (rid("test_flaky"), failed_at), ("failure",)),
        ("test_broken", (rid("test_broken"), failed_at), ("failure",)),
        ("test_param[a::b]", (rid("test_param[a::b]"),), ()),
        ("test_param[1-\\xe9]", (rid("test_param[1-\\xe9]"),), ()),
        ("test_skipped", (rid("test_skipped"),), ("skipped",)),
        ("test_flaky", (rid("test_flaky"), rerun), ()),
        ("test_broken", (rid("test_broken"), rerun), ("failure",)),
    ], cases
    # The C++ reader's tests read the agreed copy of this report: it must be what the plugin
    # writes today (times, timestamps and host names aside).
    assert junit_testcases(AGREED_REPORT) == cases, (
        "the plugin's report changed; copy %s to %s and check junit_test.cpp" % (report, AGREED_REPORT))


def test_failing_reports_carry_their_wall_time_once(pytester, monkeypatch):
    pytester.makepyfile(test_t="""
import time, pytest

def test_early():
    assert False

def test_slow():
    time.sleep(0.2)

def test_late():
    assert False

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown")

def test_teardown_fails(broken_teardown):
    pass

@pytest.fixture
def broken_setup():
    raise RuntimeError("setup")

def test_setup_fails(broken_setup):
    pass

def test_quarantined():
    assert False
""")
    order = write_order(pytester, [], quarantined=["test_t.py::test_quarantined"])
    monkeypatch.setenv("PANTRY_TEST_ORDER", order)
    before = int(time.time() * 1000)
    result = pytester.runpytest("-p", "pantry_pytest", "-p", "no:cacheprovider",
                                "--junitxml", "out.xml")
    after = int(time.time() * 1000)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.outlines
    failed_at = {}
    cases = junit_testcases(pytester.path / "out.xml", failed_at)
    # Each failing test once, on its first run (not on its re-run, which comes later); not the
    # passing one nor the quarantined one.
    stamped = [name for name, props, _ in cases if ("pantry.failed_at", "MS") in props]
    assert stamped == ["test_early", "test_late", "test_teardown_fails", "test_setup_fails"], cases
    assert before <= failed_at["test_early"] <= failed_at["test_late"] <= after, (before, failed_at, after)
    # In run order: the slow test between them is 0.2 s.
    assert failed_at["test_late"] - failed_at["test_early"] >= 200, failed_at


def test_rerun_can_be_turned_off(pytester, monkeypatch):
    pytester.makepyfile(**PLUGIN_SUITE)
    monkeypatch.setenv("PANTRY_RERUN", "0")
    result = pytester.runpytest("-p", "pantry_pytest", "-p", "no:cacheprovider",
                                "--junitxml", "out.xml")
    result.stdout.fnmatch_lines(["*2 failed, 3 passed, 1 skipped*in*"])
    assert all(("pantry.rerun", "1") not in props for _, props, _ in junit_testcases(pytester.path / "out.xml"))


def test_fail_fast_stops_at_the_first_failure_that_fails_its_rerun(pytester, monkeypatch):
    pytester.makepyfile(**PLUGIN_SUITE)
    order = write_order(pytester, [
        ("test_a.py::test_flaky", 1, "failed"),
        ("test_a.py::test_broken", 1, "failed"),
        ("test_a.py::test_ok", 1, "rest"),
    ])
    monkeypatch.setenv("PANTRY_TEST_ORDER", order)
    monkeypatch.setenv("PANTRY_FAIL_FAST", "1")
    result = pytester.runpytest("-p", "pantry_pytest", "-v", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "test_a.py::test_flaky FAILED*",
        "test_a.py::test_flaky RERUN PASSED*",
        "test_a.py::test_broken FAILED*",
        "test_a.py::test_broken RERUN FAILED*",
        "*pantry: fail fast: test_a.py::test_broken failed and failed its re-run*",
    ])
    assert ran(result) == ["test_a.py::test_flaky", "test_a.py::test_broken"], result.outlines


def test_fail_fast_without_rerun_stops_at_the_first_failure(pytester, monkeypatch):
    pytester.makepyfile(**PLUGIN_SUITE)
    monkeypatch.setenv("PANTRY_FAIL_FAST", "1")
    monkeypatch.setenv("PANTRY_RERUN", "0")
    result = pytester.runpytest("-p", "pantry_pytest", "-v", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert ran(result) == ["test_a.py::test_ok", "test_a.py::test_flaky"], result.outlines


def test_quarantined_failures_do_not_fail_the_session(pytester, monkeypatch):
    pytester.makepyfile(**PLUGIN_SUITE)
    junit = pytester.path / "junit"
    monkeypatch.setenv("PANTRY_JUNIT", str(junit))
    order = write_order(pytester, [], quarantined=["test_a.py::test_broken", "test_a.py::test_flaky"])
    monkeypatch.setenv("PANTRY_TEST_ORDER", order)
    result = pytester.runpytest("-p", "pantry_pytest", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK, result.outlines
    # Still run, re-run and counted as failures: only the exit status ignores them.
    result.stdout.fnmatch_lines([
        "pantry: 2 quarantined tests failed (test_a.py::test_flaky, test_a.py::test_broken); "
        "they do not fail the job",
        "*2 failed, 3 passed, 1 skipped*, 2 rerun in*",
    ])
    quarantined = ("pantry.quarantined", "1")
    marked = {(name, tags) for name, props, tags in junit_testcases(junit / "pytest.xml")
              if quarantined in props}
    assert marked == {("test_flaky", ("failure",)), ("test_broken", ("failure",)),
                      ("test_flaky", ()), }, marked


def test_quarantine_does_not_hide_other_failures(pytester, monkeypatch):
    pytester.makepyfile(**PLUGIN_SUITE)
    order = write_order(pytester, [], quarantined=["test_a.py::test_broken"])
    monkeypatch.setenv("PANTRY_TEST_ORDER", order)
    result = pytester.runpytest("-p", "pantry_pytest", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.outlines
    result.stdout.fnmatch_lines([
        "pantry: 1 quarantined test failed (test_a.py::test_broken); they do not count, but other "
        "tests failed too",
    ])


def test_fail_fast_goes_past_a_quarantined_failure(pytester, monkeypatch):
    pytester.makepyfile(**PLUGIN_SUITE)
    order = write_order(pytester, [
        ("test_a.py::test_broken", 1, "failed"),
        ("test_a.py::test_ok", 1, "rest"),
    ], quarantined=["test_a.py::test_broken", "test_a.py::test_flaky"])
    monkeypatch.setenv("PANTRY_TEST_ORDER", order)
    monkeypatch.setenv("PANTRY_FAIL_FAST", "1")
    result = pytester.runpytest("-p", "pantry_pytest", "-v", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK, result.outlines
    assert len(ran(result)) == 6, result.outlines
    result.stdout.fnmatch_lines(["test_a.py::test_broken RERUN FAILED*"])


def test_an_older_pytest_turns_the_plugin_off_with_one_line(pytester, monkeypatch):
    pytester.makepyfile(test_one="def test_b(): pass\ndef test_a(): assert False\n")
    order = write_order(pytester, [("test_one.py::test_a", 2, "failed")], shards=2,
                        quarantined=["test_one.py::test_a"])
    junit = pytester.path / "junit"
    monkeypatch.setenv("PANTRY_TEST_ORDER", order)
    monkeypatch.setenv("PANTRY_SHARDS", "2")
    monkeypatch.setenv("PANTRY_SHARD", "1")
    monkeypatch.setenv("PANTRY_JUNIT", str(junit))
    monkeypatch.setattr(pytest, "__version__", "7.1.3")
    result = pytester.runpytest("-p", "pantry_pytest", "-v", "-p", "no:cacheprovider")
    lines = [l for l in result.errlines if l.startswith("pantry: ")]
    assert lines == [
        "pantry: pytest 7.1.3 is older than 7.2, the oldest this plugin was verified with: the "
        "planned order, the shard split (each shard runs every test), re-runs, fail fast and the "
        "quarantine are off; install pytest>=7.2 in the image to have them"], result.errlines
    # pytest's own order, every test in this shard, no re-run, the quarantined failure counts.
    assert ran(result) == ["test_one.py::test_b", "test_one.py::test_a"], result.outlines
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "rerun" not in result.outlines[-1]
    assert [name for name, _, _ in junit_testcases(junit / "pytest.xml")] == ["test_b", "test_a"]


@pytest.mark.parametrize("text, parsed", [
    ("7.2.1", (7, 2)), ("6.2.5", (6, 2)), ("8.0.0rc1", (8, 0)), ("10.1", (10, 1)), ("dev", (0, 0)),
])
def test_version_tuple(text, parsed):
    assert pantry_pytest.version_tuple(text) == parsed
    assert (parsed >= pantry_pytest.OLDEST_PYTEST) == (text in ("7.2.1", "8.0.0rc1", "10.1"))


@pytest.mark.parametrize("env, message", [
    ({"PANTRY_SHARDS": "3", "PANTRY_SHARD": "4"}, "PANTRY_SHARD=4 is not from 1 to PANTRY_SHARDS=3"),
    ({"PANTRY_SHARDS": "3"}, "PANTRY_SHARDS=3 but PANTRY_SHARD is not set"),
    ({"PANTRY_SHARDS": "x"}, "PANTRY_SHARDS='x' is not a whole number"),
    ({"PANTRY_SHARDS": "101", "PANTRY_SHARD": "1"}, "PANTRY_SHARDS=101 is not from 1 to 100"),
    ({"PANTRY_FAIL_FAST": "yes"}, "PANTRY_FAIL_FAST='yes': use 1 (on) or 0 (off)"),
    ({"PANTRY_TEST_ORDER": "/nonexistent/order.json"},
     "order file /nonexistent/order.json (PANTRY_TEST_ORDER): cannot read: No such file"),
])
def test_bad_environment_is_a_usage_error_naming_the_value(pytester, monkeypatch, env, message):
    pytester.makepyfile(test_one="def test_a(): pass\n")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = pytester.runpytest("-p", "pantry_pytest", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "pantry: " + message in result.stderr.str(), result.stderr.str()


@pytest.mark.parametrize("content, message", [
    ("{", "not JSON"),
    ('{"format": "other"}', 'format: expected "pantry-test-order"'),
    ('{"format": "pantry-test-order", "version": 1}', "version: expected 2"),
    ('{"format": "pantry-test-order", "version": 2, "shards": 1, "quarantined": [""], "tests": []}',
     "quarantined: expected an array of test ids"),
    ('{"format": "pantry-test-order", "version": 2, "shards": 1, "tests": [{"id": "a", "shard": 2, "group": "rest"}]}',
     "tests[0].shard: expected a whole number from 1 to 1"),
    ('{"format": "pantry-test-order", "version": 2, "shards": 1, "tests": [{"id": "a", "shard": 1, "group": "soon"}]}',
     "tests[0].group: expected one of failed, changed, new, rest"),
    ('{"format": "pantry-test-order", "version": 2, "shards": 2, "tests": []}',
     "has 2 shards but PANTRY_SHARDS=1"),
])
def test_bad_order_file_is_a_usage_error_naming_the_file(pytester, monkeypatch, content, message):
    pytester.makepyfile(test_one="def test_a(): pass\n")
    path = pytester.path / "order.json"
    path.write_text(content)
    monkeypatch.setenv("PANTRY_TEST_ORDER", str(path))
    result = pytester.runpytest("-p", "pantry_pytest", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert str(path) in err and message in err, err


def test_pytest_plugins_variable_enables_it_in_a_fresh_process(pytester, monkeypatch):
    pytester.makepyfile(test_one="def test_a(): pass\ndef test_b(): assert False\n")
    junit = pytester.path / "reports"
    monkeypatch.setenv("PYTEST_PLUGINS", "pantry_pytest")
    monkeypatch.setenv("PYTHONPATH", os.path.dirname(os.path.abspath(pantry_pytest.__file__)))
    monkeypatch.setenv("PANTRY_JUNIT", str(junit))
    monkeypatch.setenv("PANTRY_SHARDS", "1")
    monkeypatch.setenv("PANTRY_SHARD", "1")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*1 failed, 1 passed, 1 rerun*"])
    names = [(name, props) for name, props, _ in junit_testcases(junit / "pytest.xml")]
    assert names == [
        ("test_a", (("pantry.id", "test_one.py::test_a"),)),
        ("test_b", (("pantry.id", "test_one.py::test_b"), ("pantry.failed_at", "MS"))),
        ("test_b", (("pantry.id", "test_one.py::test_b"), ("pantry.rerun", "1"))),
    ], names


def test_each_run_of_a_job_writes_its_own_report(pytester, monkeypatch):
    pytester.makepyfile(test_one="def test_a(): pass\n")
    junit = pytester.path / "reports"
    monkeypatch.setenv("PANTRY_JUNIT", str(junit))
    monkeypatch.setenv("PANTRY_SHARDS", "2")
    monkeypatch.setenv("PANTRY_SHARD", "2")
    for _ in range(3):
        pytester.runpytest("-p", "pantry_pytest", "-p", "no:cacheprovider")
    assert sorted(os.listdir(junit)) == [
        "pytest-shard-2-2.xml", "pytest-shard-2-3.xml", "pytest-shard-2.xml"]
    # --junitxml wins over PANTRY_JUNIT
    pytester.runpytest("-p", "pantry_pytest", "-p", "no:cacheprovider", "--junitxml", "mine.xml")
    assert (pytester.path / "mine.xml").exists()
    assert len(os.listdir(junit)) == 3
