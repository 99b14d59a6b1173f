"""``max-fail``: the tier stops right after its Nth failure, the rest is reported as not run and
the run is not resumed; with real pytest processes under ``tiergate run``."""

from __future__ import annotations

from pathlib import Path

from supervised import events, findings, make_project, results, run_tiergate

from tiergate.results.model import build

SECOND_FAILS = """
import pytest

@pytest.mark.parametrize("n", range(10))
def test_step(n):
    assert n != 1
"""


def test_max_fail_one_ends_the_tier_after_the_first_failure(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"test_steps.py": SECOND_FAILS})
    proc = run_tiergate(project, "run", "--tier", "fast", "--max-fail", "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "stopped after 1 failure (max-fail 1); 8 tests not run" in proc.stdout
    counts = findings(project)["counts"]
    assert (counts["passed"], counts["failed"], counts["not_run"]) == (1, 1, 8)
    run = build(events(project))
    assert run.stopped_early == "stopped after 1 failure (max-fail 1); 8 tests not run"
    assert [e["failures"] for e in events(project) if e["event"] == "max-fail"] == [1]
    # Said once in the terminal summary and in summary.md's status, not only by `run`.
    assert proc.stdout.count("stopped after 1 failure") == 1
    summary = (results(project) / "summary.md").read_text()
    status = next(line for line in summary.splitlines() if line.startswith("**Failed"))
    shown = status.replace("\\", "")  # as GitHub renders it: markdown escapes gone
    assert shown.endswith("The tier stopped after 1 failure (max-fail 1); 8 tests not run.")
    assert "never ran" not in status
    report = run_tiergate(project, "report", "--results-dir", str(results(project)))
    assert "stopped after 1 failure (max-fail 1); 8 tests not run" in report.stdout


def test_a_test_in_flight_at_max_fail_is_stopped_and_not_run(tmp_path: Path) -> None:
    """With xdist a worker is still running a test when another's fails: the supervisor stops
    it with the ladder, and that test is not run, not a crash; nothing is resumed."""
    project = make_project(tmp_path, {"test_pair.py": """
        import os, time
        from pathlib import Path

        def test_waits_for_the_failure():
            Path("waiting").touch()
            while True:  # until the tier stops it
                time.sleep(0.05)

        def test_fails_once_the_other_runs():
            while not os.path.exists("waiting"):
                time.sleep(0.01)
            assert False
    """})
    proc = run_tiergate(project, "run", "--tier", "fast", "--max-fail", "1", "--workers", "2",
                        "--grace", "2s")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "stopped after 1 failure (max-fail 1); 1 test not run" in proc.stdout
    data = findings(project)
    assert data["counts"]["failed"] == 1 and data["counts"]["not_run"] == 1
    assert [f["kind"] for f in data["findings"]] == []  # stopped on purpose: no crash finding
    assert sum(e["event"] == "attempt-start" for e in events(project)) == 1  # no resume
    assert (results(project) / "junit.xml").exists()


def test_without_max_fail_every_test_runs(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"test_steps.py": SECOND_FAILS})
    proc = run_tiergate(project, "run", "--tier", "fast")
    counts = findings(project)["counts"]
    assert proc.returncode == 1 and (counts["passed"], counts["failed"]) == (9, 1)
    assert "max-fail" not in proc.stdout


def test_a_bad_max_fail_is_one_line(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"test_steps.py": SECOND_FAILS})
    proc = run_tiergate(project, "run", "--tier", "fast", "--max-fail", "0")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "tiergate: error: --max-fail 0 is not valid: use a whole number of failures above zero"]
