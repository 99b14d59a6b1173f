"""A retry after a hard timeout or a crash runs in the resumed pytest (supervisor/killretry.py).

Real `tiergate run`: pytest is killed (the hard timeout) or dies (os._exit) in a test's first
attempt; where the tier retries that kind, the resumed pytest runs the test again as its next
attempt, the killed attempt kept (with its dump); without the kind it stays timeout/crash.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from supervised import (
    assert_a_flaky_pass_after_a_hard_timeout,
    events,
    findings,
    make_project,
    results,
    run_tiergate,
)

from tiergate.results.model import build

# The first attempt ignores the soft timeout's signal and sleeps past its limit and the grace:
# the supervisor's hard timeout kills pytest. A file in the project says it ran before.
HANGS_ONCE = """
import signal, time
from pathlib import Path

def test_hangs_once():
    ran = Path(__file__).with_name("ran-before")
    if not ran.exists():
        ran.write_text("1")
        # No soft timeout: ignored, not blocked, as a signal blocked in this thread is still
        # taken by any other thread of the process, and Python runs its handler here.
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        time.sleep(600)

def test_after():
    with Path(__file__).with_name("after-ran").open("a") as ran:
        ran.write("x")
"""

CRASHES_ONCE = """
import os
from pathlib import Path

def test_crashes_once():
    ran = Path(__file__).with_name("ran-before")
    if not ran.exists():
        ran.write_text("1")
        os._exit(3)

def test_after():
    with Path(__file__).with_name("after-ran").open("a") as ran:
        ran.write("x")
"""

TIMEOUTS = ["--test-timeout", "1s", "--grace", "1s"]


def tier(**keys: Any) -> str:
    lines = [f"{k.replace('_', '-')} = {json.dumps(v)}" for k, v in keys.items()]
    return "[tool.tiergate.tiers.fast]\n" + "\n".join(lines) + "\n"


def test_a_hard_timeout_retried_in_the_resumed_pytest_is_flaky(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"test_hang.py": HANGS_ONCE},
                           tier(retries=1, retry_kinds=["failure", "timeout"]))
    proc = run_tiergate(project, "run", "--tier", "fast", *TIMEOUTS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = build(events(project))
    test = run.tests["test_hang.py::test_hangs_once"]
    assert test.flaky and test.outcome == "passed"
    [killed] = test.attempts
    assert killed.outcome == "timeout" and "hard timeout" in (killed.message or "")
    assert killed.dump and (results(project) / killed.dump).is_file()
    assert run.tests["test_hang.py::test_after"].outcome == "passed"
    assert (project / "after-ran").read_text() == "x"  # run once, in the resumed pytest
    assert_a_flaky_pass_after_a_hard_timeout(project)


def test_a_crash_retried_in_the_resumed_pytest_is_flaky(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"test_crash.py": CRASHES_ONCE},
                           tier(retries=1, retry_kinds=["failure", "crash"]))
    proc = run_tiergate(project, "run", "--tier", "fast")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = build(events(project))
    test = run.tests["test_crash.py::test_crashes_once"]
    assert test.flaky
    [crashed] = test.attempts
    assert (crashed.message or "").startswith("crash: pytest")
    assert run.tests["test_crash.py::test_after"].outcome == "passed"
    assert findings(project)["outcome"] == "passed"


@pytest.mark.parametrize(("files", "kinds", "outcome"), [
    ({"test_hang.py": HANGS_ONCE}, ["failure", "crash"], "timeout"),
    ({"test_crash.py": CRASHES_ONCE}, ["failure", "timeout"], "failed"),
])
def test_without_the_retry_kind_a_killed_test_is_not_run_again(
        tmp_path: Path, files: dict[str, str], kinds: list[str], outcome: str) -> None:
    project = make_project(tmp_path, files, tier(retries=1, retry_kinds=kinds))
    proc = run_tiergate(project, "run", "--tier", "fast", *TIMEOUTS)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    run = build(events(project))
    [test] = [t for t in run.tests.values() if t.nodeid.endswith("_once")]
    assert test.outcome == outcome and not test.attempts
    assert not any(e["event"] == "test-attempt" for e in events(project))


def test_a_marker_without_retries_wins_over_the_tier_for_a_killed_test(tmp_path: Path) -> None:
    """pytest says how many retries a test has (the marker): the supervisor asks it."""
    source = HANGS_ONCE.replace("def test_hangs_once", "import pytest\n\n"
                                "@pytest.mark.tiergate_retries(0)\ndef test_hangs_once")
    project = make_project(tmp_path, {"test_hang.py": source},
                           tier(retries=1, retry_kinds=["timeout"]))
    proc = run_tiergate(project, "run", "--tier", "fast", *TIMEOUTS)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    test = build(events(project)).tests["test_hang.py::test_hangs_once"]
    assert test.outcome == "timeout" and not test.attempts


def test_a_test_killed_on_every_attempt_fails_with_each_kept(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"test_crash.py": """
        import os

        def test_always_crashes():
            os._exit(3)
    """}, tier(retries=1, retry_kinds=["crash"]))
    proc = run_tiergate(project, "run", "--tier", "fast")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    test = build(events(project)).tests["test_crash.py::test_always_crashes"]
    assert test.crashed and [a.number for a in test.attempts] == [1]
    assert sum(e["event"] == "attempt-start" for e in events(project)) == 2
