"""Issue 18: a debugger in use is no hang. A test paused in the debugger past its limit and its
grace is neither failed by the soft timeout nor killed by the hard one; tiergate says so once."""

from __future__ import annotations

import bdb
import subprocess
import time
from pathlib import Path

from supervised import events, findings, make_project, results, tiergate_argv, wait_for_event

from tiergate.plugin.softtimeout import is_debugger_trace

PAUSES = """
def test_pauses_in_the_debugger():
    answer = 41
    breakpoint()
    assert answer + 1 == 42
"""

FAILS = """
def test_fails_and_is_inspected():
    assert 41 + 1 == 43
"""

LIMIT, GRACE = 2, 1
SAID = "tiergate: timeouts suspended while the debugger is active for "


def pause_in_the_debugger(project: Path, *pytest_args: str) -> tuple[int, str]:
    """``tiergate run`` with the user at the debugger's prompt for longer than the test's limit
    and its grace together, then typing ``c``."""
    output = project / "output.txt"
    with output.open("w") as out:
        run = subprocess.Popen(
            tiergate_argv("run", "--tier", "fast", "--test-timeout", f"{LIMIT}s",
                          "--grace", f"{GRACE}s", "--", *pytest_args),
            cwd=project, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, text=True)
        try:
            wait_for_event(project, lambda e: e["event"] == "debugger" and e["active"])
            time.sleep(LIMIT + GRACE + 1)  # the user reads the code at the prompt
            assert run.stdin is not None
            run.stdin.write("c\n")
            run.stdin.close()
            returncode = run.wait(timeout=60)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
    return returncode, output.read_text()


def no_dumps(project: Path) -> bool:
    dumps = results(project) / "dumps"
    return not dumps.exists() or not any(dumps.iterdir())


def test_a_test_paused_at_a_breakpoint_past_its_limit_passes(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"test_pauses.py": PAUSES})
    returncode, text = pause_in_the_debugger(project, "-s")
    assert returncode == 0, text
    data = findings(project)
    assert data["counts"]["passed"] == 1 and data["findings"] == [], text
    assert no_dumps(project), "a dump was taken of a test in the debugger"
    assert text.count(SAID + "test_pauses.py::test_pauses_in_the_debugger") == 1, text
    said = [e["active"] for e in events(project) if e["event"] == "debugger"]
    assert said == [True, False]


def test_a_failure_inspected_with_pdb_past_its_limit_is_no_timeout(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"test_fails.py": FAILS})
    returncode, text = pause_in_the_debugger(project, "-s", "--pdb")
    assert returncode == 1, text
    data = findings(project)
    assert data["counts"]["failed"] == 1 and data["counts"]["timeout"] == 0, text
    assert data["findings"] == [], text
    assert no_dumps(project)
    assert text.count(SAID + "test_fails.py::test_fails_and_is_inspected") == 1, text


def test_a_debuggers_trace_function_is_told_from_other_tracers() -> None:
    assert is_debugger_trace(bdb.Bdb().trace_dispatch)  # pdb and every bdb-based debugger
    assert not is_debugger_trace(lambda frame, event, arg: None)  # a coverage-like tracer
