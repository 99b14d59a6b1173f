"""Retries: a failed test runs again, every attempt is kept (events, report, junit.xml), and a
test that passed on a retry is flaky. With pytester (in-process pytest --tier) and end to end
under ``tiergate run``."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from junitparser.xunit2 import FlakyFailure, JUnitXml, RerunFailure
from supervised import events, findings, make_project, results, run_tiergate

from tiergate.report.flaky import attempts_story
from tiergate.results.junit_in import read_junit
from tiergate.results.model import build

pytest_plugins = ["pytester"]

# Fails on its first attempt, passes on the next: a file in the project says it ran before.
FAILS_ONCE = """
from pathlib import Path

def test_once():
    ran = Path(__file__).with_name("ran-before")
    if not ran.exists():
        ran.write_text("1")
        print("output of attempt 1")
        assert False, "the service was not ready"
"""

ALWAYS_FAILS = """
def test_never():
    assert 1 == 2, "broken for good"
"""


def tier(**keys: Any) -> str:
    lines = [f"{k.replace('_', '-')} = {json.dumps(v)}" for k, v in keys.items()]
    return "[tool.tiergate.tiers.fast]\n" + "\n".join(lines) + "\n"


def read_events(root: Path) -> list[dict[str, Any]]:
    path = root / ".tiergate" / "fast" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def junit_cases(root: Path) -> dict[str, ET.Element]:
    tree = ET.parse(root / ".tiergate" / "fast" / "junit.xml")
    return {case.get("name", ""): case for case in tree.iter("testcase")}


# Maven Surefire's schema (surefire-test-report-3.0.xsd): the children of a <testcase> in this
# order, and each attempt element a stackTrace, then system-out and system-err if any.
SUREFIRE_ORDER = ["failure", "rerunFailure", "flakyFailure", "skipped", "error", "rerunError",
                  "flakyError", "system-out", "system-err"]


def assert_surefire_shape(case: ET.Element) -> None:
    tags = [child.tag for child in case]
    assert tags == sorted(tags, key=SUREFIRE_ORDER.index), tags
    for child in case:
        if child.tag.startswith(("flaky", "rerun")):
            assert child.get("type"), "type is required"
            parts = [part.tag for part in child]
            assert parts[0] == "stackTrace" and parts[1:] in (
                [], ["system-out"], ["system-err"], ["system-out", "system-err"]), parts


def test_a_test_that_passes_on_its_retry_is_flaky_with_its_failed_attempt_kept(
        pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(tier(retries=1))
    pytester.makepyfile(test_once=FAILS_ONCE)
    result = pytester.runpytest("--tier", "fast", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*1 passed, 1 rerun*"])
    log = read_events(pytester.path)
    attempts = [e for e in log if e["event"] == "test-attempt"]
    assert [(a["attempt"], a["outcome"], a["message"]) for a in attempts] == [
        (1, "failed", "AssertionError: the service was not ready")]
    assert attempts[0]["stdout"] == "output of attempt 1\n"
    # one test-finish: the last attempt's (its output is its own)
    finishes = [e for e in log if e["event"] == "test-finish"]
    assert [(f["outcome"], f.get("stdout")) for f in finishes] == [("passed", None)]
    flaky = [e["finding"] for e in log if e["event"] == "finding"]
    assert [(f["kind"], f["severity"]) for f in flaky] == [("flaky", "warning")]
    assert flaky[0]["message"] == ("flaky: attempt 1 failed with AssertionError: the service "
                                   "was not ready, attempt 2 passed")

    case = junit_cases(pytester.path)["test_once"]
    assert [child.tag for child in case] == ["flakyFailure"]  # a passed testcase
    assert case[0].get("message") == "AssertionError: the service was not ready"
    assert case[0].findtext("system-out") == "output of attempt 1\n"
    assert "assert False" in (case[0].findtext("stackTrace") or "")
    assert_surefire_shape(case)
    summary = (pytester.path / ".tiergate" / "fast" / "summary.md").read_text()
    assert "attempt 1 failed with AssertionError: the service was not ready, attempt 2 passed" \
        in summary


def test_flaky_fail_makes_a_flaky_test_fail_the_tier(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(tier(retries=1, flaky="fail"))
    pytester.makepyfile(test_once=FAILS_ONCE)
    result = pytester.runpytest("--tier", "fast", "-p", "no:cacheprovider")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["tiergate: 1 error finding (flaky)*"])


def test_flaky_pass_reports_it_without_a_finding(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(tier(retries=1, flaky="pass"))
    pytester.makepyfile(test_once=FAILS_ONCE)
    assert pytester.runpytest("--tier", "fast", "-p", "no:cacheprovider").ret == 0
    run = build(read_events(pytester.path))
    assert run.findings == [] and [t.nodeid for t in run.flaky_tests] == ["test_once.py::test_once"]


def test_a_test_failing_every_attempt_is_failed_with_each_rerun_in_junit(
        pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(tier(retries=2))
    pytester.makepyfile(test_never=ALWAYS_FAILS)
    result = pytester.runpytest("--tier", "fast", "-p", "no:cacheprovider")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*1 failed, 2 rerun*"])
    run = build(read_events(pytester.path))
    test = run.tests["test_never.py::test_never"]
    assert test.outcome == "failed" and not test.flaky
    assert attempts_story(test) == ", ".join(
        f"attempt {n} failed with AssertionError: broken for good" for n in (1, 2, 3))
    case = junit_cases(pytester.path)["test_never"]
    assert [child.tag for child in case] == ["failure", "rerunFailure", "rerunFailure"]
    assert_surefire_shape(case)
    assert run.findings == []  # no flaky finding: it never passed


def test_junit_attempts_read_back_by_junitparser_and_by_our_reader(
        pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(tier(retries=2))
    pytester.makepyfile(test_once=FAILS_ONCE, test_never=ALWAYS_FAILS)
    pytester.runpytest("--tier", "fast", "-p", "no:cacheprovider")
    junit = pytester.path / ".tiergate" / "fast" / "junit.xml"
    cases = {c.name: c for suite in JUnitXml.fromfile(str(junit)) for c in suite}
    flaky = cases["test_once"].interim_result
    assert [type(r) for r in flaky] == [FlakyFailure] and cases["test_once"].is_passed
    assert flaky[0].system_out == "output of attempt 1\n"
    assert "assert False" in flaky[0].stack_trace
    reruns = cases["test_never"].rerun_failures()
    assert [type(r) for r in reruns] == [RerunFailure, RerunFailure]
    again = read_junit(junit)
    once, never = again.tests["test_once.py::test_once"], again.tests["test_never.py::test_never"]
    assert once.flaky and [(a.number, a.outcome, a.stdout) for a in once.attempts] == [
        (1, "failed", "output of attempt 1\n")]
    assert never.outcome == "failed" and [a.number for a in never.attempts] == [1, 2]


def test_retry_on_that_does_not_match_means_no_retry(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(tier(retries=2, retry_on=["ConnectionError", "not ready"]))
    pytester.makepyfile(test_once=FAILS_ONCE, test_never=ALWAYS_FAILS)
    result = pytester.runpytest("--tier", "fast", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*1 failed, 1 passed, 1 rerun*"])  # test_once matched
    attempts = [e["nodeid"] for e in read_events(pytester.path) if e["event"] == "test-attempt"]
    assert attempts == ["test_once.py::test_once"]


def test_markers_set_retries_per_test(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(tier(retries=0))
    pytester.makepyfile(test_marked="""
        import pytest

        @pytest.mark.tiergate_retries(2)
        def test_ours():
            assert False

        @pytest.mark.flaky(reruns=1)
        def test_rerunfailures_style():
            assert False

        def test_unmarked():
            assert False
    """)
    result = pytester.runpytest("--tier", "fast", "-p", "no:cacheprovider", "--strict-markers")
    result.stdout.fnmatch_lines(["*3 failed, 3 rerun*"])
    run = build(read_events(pytester.path))
    assert {n.split("::")[1]: len(t.attempts) for n, t in run.tests.items()} == {
        "test_ours": 2, "test_rerunfailures_style": 1, "test_unmarked": 0}


def test_a_failed_setup_is_retried_only_when_retry_kinds_says_error(
        pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        import pytest
        from pathlib import Path

        @pytest.fixture
        def service():
            ran = Path("setup-ran")
            if not ran.exists():
                ran.write_text("1")
                raise RuntimeError("service did not start")
            return "up"
    """)
    pytester.makepyfile(test_setup="def test_uses(service):\n    assert service == 'up'\n")
    pytester.makepyprojecttoml(tier(retries=1))
    assert pytester.runpytest("--tier", "fast", "-p", "no:cacheprovider").ret == 1
    (pytester.path / "setup-ran").unlink()
    pytester.makepyprojecttoml(tier(retries=1, retry_kinds=["failure", "error"]))
    assert pytester.runpytest("--tier", "fast", "-p", "no:cacheprovider").ret == 0
    test = build(read_events(pytester.path)).tests["test_setup.py::test_uses"]
    assert test.flaky and test.attempts[0].outcome == "error"
    case = junit_cases(pytester.path)["test_uses"]
    assert [child.tag for child in case] == ["flakyError"]


def test_each_attempt_gets_fresh_fixtures_and_a_fresh_instance(
        pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(tier(retries=1))
    pytester.makepyfile(test_state="""
        import pytest
        from pathlib import Path

        @pytest.fixture
        def box():
            return []

        class TestState:
            def test_fresh(self, box):
                box.append(1)
                assert not hasattr(self, "seen") and box == [1]
                self.seen = True
                if not Path("ran-before").exists():
                    Path("ran-before").write_text("1")
                    assert False
    """)
    assert pytester.runpytest("--tier", "fast", "-p", "no:cacheprovider").ret == 0


def test_config_errors_are_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(tier(retry_on=["("]))
    pytester.makepyfile(test_never=ALWAYS_FAILS)
    result = pytester.runpytest("--tier", "fast", "-p", "no:cacheprovider")
    assert result.ret == 4
    errors = result.stderr.str().strip().splitlines()
    assert len(errors) == 1 and "retry-on = ['('] is not valid: '(' is not a regular expr" \
        in errors[0]


# -- under tiergate run ------------------------------------------------------------------------


def test_a_soft_timeout_retried_passes_as_flaky_under_tiergate_run(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"test_hang.py": """
        import time
        from pathlib import Path

        def test_hangs_once():
            ran = Path("ran-before")
            if not ran.exists():
                ran.write_text("1")
                while True:  # until the soft timeout ends it
                    time.sleep(0.05)
    """}, tier(retries=1, retry_kinds=["timeout"], test_timeout="1s"))
    proc = run_tiergate(project, "run", "--tier", "fast")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = findings(project)
    assert {(f["kind"], f["severity"]) for f in data["findings"]} == {
        ("timeout", "warning"), ("flaky", "warning")}
    assert data["outcome"] == "passed"
    case = junit_cases(project)["test_hangs_once"]
    assert [(c.tag, c.get("type")) for c in case] == [("flakyFailure", "timeout")]


def test_attempts_and_resume_after_a_crash_under_tiergate_run(tmp_path: Path) -> None:
    """pytest dies in the test after a flaky one: the resumed pytest runs what is left, not the
    flaky test again (it finished with its last attempt), and a test that crashed on its retry
    keeps its failed first attempt."""
    project = make_project(tmp_path, {"test_a_once.py": FAILS_ONCE, "test_b_crash.py": """
        import os
        from pathlib import Path

        def test_crash_on_retry():
            ran = Path("b-ran-before")
            if not ran.exists():
                ran.write_text("1")
                assert False, "first"
            os._exit(3)

        def test_after():
            Path("after-ran").open("a").write("x")
    """}, tier(retries=1))
    proc = run_tiergate(project, "run", "--tier", "fast")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    run = build(events(project))
    assert run.tests["test_a_once.py::test_once"].flaky
    crashed = run.tests["test_b_crash.py::test_crash_on_retry"]
    assert crashed.crashed and [a.message for a in crashed.attempts] == [
        "AssertionError: first"]
    assert run.tests["test_b_crash.py::test_after"].outcome == "passed"
    assert (project / "after-ran").read_text() == "x"  # resumed once, not rerun
    assert sum(e["event"] == "attempt-start" for e in events(project)) == 2
    assert (results(project) / "junit.xml").exists()
