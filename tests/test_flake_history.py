"""Flake history: ``tiergate report`` counts each run in the tier's ``history`` folder, the report
says how often a flaky test flaked before, ``tiergate flakes`` lists the worst, and a test that is
not in the history runs ``new-test-runs`` times. End to end under ``tiergate run``/``report``."""

from __future__ import annotations

import json
from pathlib import Path

from supervised import events, findings, make_project, results, run_tiergate

from tiergate.report.flaky import flaky_sections
from tiergate.results.history import RELEASE_AFTER, FlakeHistory, TestHistory
from tiergate.results.model import RunResult, TestResult, build

# Fails on its first attempt in the third run only: the harness writes the run's number.
FLAKES_IN_RUN_3 = {"tests/test_svc.py": """
    from pathlib import Path

    def test_sometimes():
        here = Path(__file__).parent
        number = (here / "run-number").read_text()
        marker = here / f"failed-in-{number}"
        if number == "3" and not marker.exists():
            marker.write_text("1")
            assert False, "the port was taken"

    def test_steady():
        pass
"""}

# Each run of a test leaves a line in ran-<name>, so the runs can be counted.
COUNTED = """
from pathlib import Path

def _ran(name):
    with open(Path(__file__).parent / f"ran-{name}", "a") as out:
        out.write("x\\n")

def test_old():
    _ran("old")
"""

NEW_TEST = """
def test_new():
    _ran("new")
"""

# Passes on its first run, fails on its second: the flake new-test-runs is there to catch.
NEW_AND_FLAKY = """
def test_new():
    _ran("new")
    assert len((Path(__file__).parent / "ran-new").read_text().split()) == 1, "second run"
"""


def pyproject(**keys: object) -> str:
    lines = [f"{k.replace('_', '-')} = {json.dumps(v)}" for k, v in keys.items()]
    return "[tool.tiergate.tiers.fast]\n" + "\n".join(lines) + "\n"


def run_and_report(project: Path) -> str:
    run_tiergate(project, "run", "--tier", "fast")
    proc = run_tiergate(project, "report", "--results-dir", ".tiergate/fast")
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return (results(project) / "summary.md").read_text()


def test_a_test_that_flakes_once_in_three_runs_shows_its_rate(tmp_path: Path) -> None:
    project = make_project(tmp_path, FLAKES_IN_RUN_3, pyproject(retries=1, history=".hist"))
    for number in ("1", "2"):
        (project / "tests" / "run-number").write_text(number)
        assert "Flaky" not in run_and_report(project)
    (project / "tests" / "run-number").write_text("3")
    summary = run_and_report(project)
    flaky = summary[summary.index("Flaky"):]
    assert "failed 1 of 2 attempts here; flaky in 1 of the last 3 runs" in flaky
    # a second report of the same run does not count it again
    proc = run_tiergate(project, "report", "--results-dir", ".tiergate/fast")
    assert "flaky in 1 of the last 3 runs" in (results(project) / "summary.md").read_text()
    saved = json.loads((project / ".hist" / "flakes.json").read_text())
    assert saved["tests"]["tests/test_svc.py::test_sometimes"]["recent"] == "ppf"
    assert saved["tests"]["tests/test_svc.py::test_sometimes"]["attempts"] == 4
    proc = run_tiergate(project, "flakes")
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.splitlines()
    assert rows[0] == "tier fast: 2 tests over 3 runs; 1 flaked or failed"
    assert rows[2].split() == ["1/3", "1", "1", "4", rows[2].split()[4],
                               "tests/test_svc.py::test_sometimes"]


def test_a_new_test_runs_new_test_runs_times_and_a_known_one_once(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"tests/test_a.py": COUNTED},
                           pyproject(history=".hist", new_test_runs=3))
    run_and_report(project)  # no history yet: nothing is new, test_old runs once
    assert (project / "tests" / "ran-old").read_text().count("x") == 1
    (project / "tests" / "test_a.py").write_text(COUNTED + NEW_TEST)
    run_and_report(project)
    assert (project / "tests" / "ran-new").read_text().count("x") == 3
    assert (project / "tests" / "ran-old").read_text().count("x") == 2
    run = build(events(project))
    assert run.tests["tests/test_a.py::test_new"].outcome == "passed"
    assert not run.tests["tests/test_a.py::test_new"].attempts  # passing runs: not flaky
    assert findings(project)["outcome"] == "passed"


def test_a_new_test_that_fails_on_a_later_run_fails_the_tier_unretried(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"tests/test_a.py": COUNTED},
                           pyproject(history=".hist", new_test_runs=3, retries=2))
    run_and_report(project)
    (project / "tests" / "test_a.py").write_text(COUNTED + NEW_AND_FLAKY)
    proc = run_tiergate(project, "run", "--tier", "fast")
    assert proc.returncode != 0
    assert (project / "tests" / "ran-new").read_text().count("x") == 2  # no retry after it
    flaky = [f for f in findings(project)["findings"] if f["kind"] == "flaky"]
    assert flaky and flaky[0]["severity"] == "error"
    assert "passed 1 time, then failed on run 2 of 3" in flaky[0]["message"]


def test_a_damaged_history_is_one_line(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"tests/test_a.py": COUNTED}, pyproject(history=".hist"))
    (project / ".hist").mkdir()
    (project / ".hist" / "flakes.json").write_text("{not json")
    run_tiergate(project, "run", "--tier", "fast")
    proc = run_tiergate(project, "report", "--results-dir", ".tiergate/fast")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "delete it to start a new one" in proc.stderr


def test_a_quarantined_test_that_kept_passing_is_suggested_for_release() -> None:
    nodeid = "tests/test_a.py::test_upload"
    entry = {"test": nodeid, "reason": "races", "until": "2999-01-01"}
    run = RunResult(tests={nodeid: TestResult(nodeid, quarantine=entry)}, quarantine=[entry])
    run.history = FlakeHistory({nodeid: TestHistory(recent="p" * (RELEASE_AFTER - 1))})
    assert "release it" not in "".join(flaky_sections(run))
    run.history = FlakeHistory({nodeid: TestHistory(recent="f" + "p" * RELEASE_AFTER)})
    assert f"passed on every one of its last {RELEASE_AFTER} runs: release it" in "".join(
        flaky_sections(run))


def test_flakes_lists_the_worst_first_and_leaves_out_the_steady(tmp_path: Path) -> None:
    history = FlakeHistory({
        "tests/test_a.py::test_steady": TestHistory(runs=5, attempts=5, recent="ppppp"),
        "tests/test_a.py::test_broken": TestHistory(runs=5, attempts=15, failures=15,
                                                    recent="xxxxx"),
        "tests/test_a.py::test_once": TestHistory(runs=5, attempts=6, failures=1, flaky=1,
                                                  recent="pfppp"),
        "tests/test_a.py::test_often": TestHistory(runs=5, attempts=8, failures=3, flaky=3,
                                                   recent="fpfpf"),
        "tests/test_a.py::test_long_ago": TestHistory(runs=40, attempts=41, failures=1,
                                                      flaky=1, recent="p" * 30),
    }, counted=[f"fast@{i}" for i in range(40)])
    project = make_project(tmp_path, {"tests/test_a.py": COUNTED}, pyproject(history=".hist"))
    (project / ".hist").mkdir()
    (project / ".hist" / "flakes.json").write_text(json.dumps(history.to_json()))
    proc = run_tiergate(project, "flakes")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split()[-1] for line in proc.stdout.splitlines()[2:-1]]
    # flaky in its recent runs first, then flaky at all, then failing: steady ones not at all
    assert rows == [f"tests/test_a.py::test_{name}"
                    for name in ("often", "once", "long_ago", "broken")], proc.stdout
    assert proc.stdout.splitlines()[0] == "tier fast: 5 tests over 40 runs; 4 flaked or failed"


def test_flakes_without_a_history_folder_is_one_line(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"tests/test_a.py": COUNTED}, pyproject())
    proc = run_tiergate(project, "flakes")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert 'history = ".tiergate-history"' in proc.stderr
