"""Live progress in the step log: SLOW lines while a test runs, and progress lines on a schedule,
printed by ``tiergate run``'s supervisor from the events it follows."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

from supervised import make_project, run_tiergate, tiergate_argv

from tiergate.supervisor.progress import Progress, age, progress_line

THREE_SECONDS = """
import time

def test_three_seconds():
    time.sleep(3)

def test_quick():
    pass
"""


def test_a_slow_test_gets_its_slow_line_while_it_runs(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"test_slow.py": THREE_SECONDS})
    proc = run_tiergate(project, "run", "--tier", "fast", "--slow-after", "1s",
                        "--progress-interval", "0", "--", "-v", "-p", "no:randomly")
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    # pytest -v names the test when it starts and says PASSED when it ends: the SLOW line
    # comes in between, while the test runs.
    started = out.index("test_slow.py::test_three_seconds")
    slow = out.index("SLOW [>1s] test_slow.py::test_three_seconds")
    finished = out.index("PASSED")
    assert started < slow < finished
    assert out.count("SLOW [") == 1  # once, and never for the quick test


WAITS_FOR_ITS_PROGRESS_LINE = """
import os, time
from pathlib import Path

def test_waits_for_its_progress_line():
    # passes once the supervisor's log names it in flight: the line came while it ran
    log = Path(os.environ["SUPERVISOR_LOG"])
    deadline = time.monotonic() + 60
    while "running: test_wait.py::test_waits_for_its_progress_line (" not in log.read_text():
        assert time.monotonic() < deadline, "no progress line named this test"
        time.sleep(0.05)

def test_after():
    pass
"""


def test_progress_lines_name_the_test_in_flight_and_the_counts(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", {"test_wait.py": WAITS_FOR_ITS_PROGRESS_LINE})
    log = tmp_path / "supervisor.log"
    with log.open("w") as out:
        proc = subprocess.run(
            tiergate_argv("run", "--tier", "fast", "--slow-after", "0", "--progress-interval",
                          "0.5s", "--", "-p", "no:randomly"),
            cwd=project, stdout=out, stderr=subprocess.STDOUT, timeout=120, check=False,
            env={**os.environ, "SUPERVISOR_LOG": str(log)})
    text = log.read_text()
    assert proc.returncode == 0, text
    (line, *_) = [line for line in text.splitlines()
                  if "running: test_wait.py::test_waits_for_its_progress_line (" in line]
    assert line.startswith("PROGRESS 0 done, 2 left, budget ")
    assert "SLOW [" not in text  # slow-after 0: never


@dataclasses.dataclass
class _Test:
    nodeid: str
    started: float
    timeout: float | None = 60.0
    debugging: bool = False


def _lines(progress_args: dict[str, object], tests: list[_Test], nows: list[float]) -> list[str]:
    said: list[str] = []
    progress = Progress(said.append, first_line_at=0.0, **progress_args)  # type: ignore[arg-type]
    for now in nows:
        progress.check(tests, now=now, done=3, total=10, budget_left=100.0)
    return said


def test_by_default_a_test_is_slow_at_a_quarter_of_its_own_limit() -> None:
    tests = [_Test("a", started=0.0, timeout=40.0), _Test("b", started=0.0, timeout=None)]
    said = _lines({"slow_after": None, "interval": 0.0}, tests, [9.9, 10.1, 30.0])
    assert said == ["SLOW [>10s] a"]  # once; a test without a limit has no default threshold


def test_a_test_in_a_debugger_is_not_called_slow() -> None:
    said = _lines({"slow_after": 1.0, "interval": 0.0}, [_Test("a", 0.0, debugging=True)], [5.0])
    assert said == []


def test_progress_lines_come_once_per_interval() -> None:
    said = _lines({"slow_after": 0.0, "interval": 30.0}, [_Test("a", 0.0)],
                  [10.0, 29.0, 30.5, 31.0, 59.0, 61.0])
    assert said == ["PROGRESS 3 done, 7 left, budget 100s left; running: a (30s)",
                    "PROGRESS 3 done, 7 left, budget 100s left; running: a (61s)"]


def test_a_progress_line_lists_the_oldest_first_and_counts_the_rest() -> None:
    tests = [_Test(f"t{n}", started=float(n)) for n in range(10, 0, -1)]
    line = progress_line(tests, now=20.0, done=0, total=None, budget_left=5.0)  # type: ignore[arg-type]
    assert line.startswith("PROGRESS 0 done, budget 5s left; running: t1 (19s), t2 (18s)")
    assert line.endswith("and 2 more")


def test_a_test_id_cannot_become_a_workflow_command() -> None:
    said = _lines({"slow_after": 1.0, "interval": 0.0}, [_Test("::error::x\nnext", 0.0)], [2.0])
    assert said and "\n" not in said[0] and not said[0].startswith("::")


def test_ages_read_as_a_person_writes_them() -> None:
    assert [age(s) for s in (1.5, 1.0, 45.3, 119, 185, 7300)] == [
        "1.5s", "1s", "45s", "119s", "3m05s", "2h01m"]
