"""Under xdist a test whose worker died (the supervisor killed it for a hard timeout, or it
crashed) is retried on a worker where the tier's ``retry-kinds`` asks (plugin/crashretry.py).

Real `tiergate run` with ``workers = 2`` (real xdist workers): the killed attempt is kept (with
its dump), the test runs again as its next attempt, and the tier's verdict is a flaky test's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from supervised import (
    assert_a_flaky_pass_after_a_hard_timeout,
    events,
    findings,
    make_project,
    results,
    run_tiergate,
)
from test_retry_resume import CRASHES_ONCE, HANGS_ONCE, TIMEOUTS, tier

from tiergate.results.model import build

XDIST = {"workers": 2}


def test_a_hard_timeout_under_xdist_is_retried_on_a_worker(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"test_hang.py": HANGS_ONCE},
                           tier(retries=1, retry_kinds=["failure", "timeout"], **XDIST))
    proc = run_tiergate(project, "run", "--tier", "fast", *TIMEOUTS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "tiergate: test_hang.py::test_hangs_once runs again on another worker (attempt 2)" \
        in proc.stderr
    run = build(events(project))
    test = run.tests["test_hang.py::test_hangs_once"]
    assert test.flaky and test.outcome == "passed" and test.worker
    [killed] = test.attempts
    assert killed.outcome == "timeout" and "hard timeout" in (killed.message or "")
    assert killed.dump and (results(project) / killed.dump).is_file()
    assert (project / "after-ran").read_text() == "x"
    assert_a_flaky_pass_after_a_hard_timeout(project)


def test_a_crash_under_xdist_is_retried_on_a_worker(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"test_crash.py": CRASHES_ONCE},
                           tier(retries=1, retry_kinds=["failure", "crash"], **XDIST))
    proc = run_tiergate(project, "run", "--tier", "fast")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = build(events(project))
    test = run.tests["test_crash.py::test_crashes_once"]
    assert test.flaky and test.outcome == "passed"
    [crashed] = test.attempts
    assert (crashed.message or "").startswith("crash: worker 'gw")
    data = findings(project)
    assert data["outcome"] == "passed"
    assert {(f["kind"], f["severity"]) for f in data["findings"]} == {
        ("crash", "warning"), ("flaky", "warning")}
    assert "<flakyFailure" in (results(project) / "junit.xml").read_text()


@pytest.mark.parametrize(("files", "kinds", "outcome"), [
    ({"test_hang.py": HANGS_ONCE}, ["failure", "crash"], "timeout"),
    ({"test_crash.py": CRASHES_ONCE}, ["failure", "timeout"], "failed"),
])
def test_without_the_retry_kind_a_killed_worker_s_test_is_not_run_again(
        tmp_path: Path, files: dict[str, str], kinds: list[str], outcome: str) -> None:
    project = make_project(tmp_path, files, tier(retries=1, retry_kinds=kinds, **XDIST))
    proc = run_tiergate(project, "run", "--tier", "fast", *TIMEOUTS)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [test] = [t for t in build(events(project)).tests.values() if t.nodeid.endswith("_once")]
    assert test.outcome == outcome and not test.attempts
    assert not any(e["event"] == "test-attempt" for e in events(project))


def test_a_test_crashing_its_worker_on_every_attempt_fails_with_each_kept(
        tmp_path: Path) -> None:
    """Two retries: attempt 1 fails in-process, attempts 2 and 3 take their workers with them;
    the numbering goes on across workers and the third is the last."""
    project = make_project(tmp_path, {"test_crash.py": """
        import os
        from pathlib import Path

        def test_always_crashes():
            ran = Path(__file__).with_name("runs")
            with ran.open("a") as runs:
                runs.write("x")
            if len(ran.read_text()) == 1:
                assert False, "first attempt fails in-process"
            os._exit(3)
    """}, tier(retries=2, retry_kinds=["failure", "crash"], **XDIST))
    proc = run_tiergate(project, "run", "--tier", "fast")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (project / "runs").read_text() == "xxx"
    test = build(events(project)).tests["test_crash.py::test_always_crashes"]
    assert test.crashed and not test.flaky
    assert [(a.number, a.outcome) for a in test.attempts] == [(1, "failed"), (2, "failed")]
    assert (test.attempts[0].message or "").startswith("AssertionError: first attempt")
