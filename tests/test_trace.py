"""``tiergate trace``: the run's timeline as a Chrome trace / Perfetto JSON file, from a real run.

No trace parser is in the registries this project uses offline (Perfetto's trace processor
downloads its binary), so the file is checked against the Trace Event Format's own rules
(the JSON Object Format; phases X, i and M with their fields), written as a JSON schema."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from supervised import make_project, results, run_tiergate

from tiergate.report.trace import trace_document
from tiergate.results.model import Moment, RunResult, TestResult

_COMMON = {"name": {"type": "string"}, "pid": {"type": "integer"}, "tid": {"type": "integer"},
           "args": {"type": "object"}, "cat": {"type": "string"}}
TRACE_EVENT_FORMAT = {
    "type": "object",
    "required": ["traceEvents"],
    "properties": {
        "displayTimeUnit": {"enum": ["ms", "ns"]},
        "traceEvents": {"type": "array", "items": {"oneOf": [
            {"type": "object", "required": ["name", "ph", "ts", "dur", "pid", "tid"],
             "properties": {**_COMMON, "ph": {"const": "X"},
                            "ts": {"type": "integer", "minimum": 0},
                            "dur": {"type": "integer", "minimum": 0}}},
            {"type": "object", "required": ["name", "ph", "ts", "s", "pid", "tid"],
             "properties": {**_COMMON, "ph": {"const": "i"}, "s": {"enum": ["g", "p", "t"]},
                            "ts": {"type": "integer", "minimum": 0}}},
            {"type": "object", "required": ["name", "ph", "pid", "args"],
             "properties": {**_COMMON, "ph": {"const": "M"},
                            "name": {"enum": ["process_name", "thread_name",
                                              "thread_sort_index", "process_sort_index"]}}},
        ]}},
    },
}

SUITE = """
import time

def test_stuck_in_c():
    time.sleep(30)  # past its 1s limit and the grace: a hard timeout, the worker killed

def test_a():
    time.sleep(0.2)

def test_b():
    time.sleep(0.2)

def test_c():
    pass
"""


def _trace(project: Path) -> dict[str, Any]:
    proc = run_tiergate(project, "trace", "--results-dir", str(results(project)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ui.perfetto.dev" in proc.stdout
    data: dict[str, Any] = json.loads((results(project) / "trace.json").read_text())
    return data


def test_a_two_worker_run_is_one_lane_per_worker_each_test_once(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"test_suite.py": SUITE.replace(
        # Ignored, not blocked: an xdist worker has other threads, which take a signal the
        # main thread blocks, and the handler then runs when anything wakes the main thread.
        "time.sleep(30)", "import signal; signal.signal(signal.SIGALRM, signal.SIG_IGN); "
        "time.sleep(30)")})
    proc = run_tiergate(project, "run", "--tier", "fast", "--workers", "2",
                        "--test-timeout", "1s", "--grace", "1s")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    trace = _trace(project)
    jsonschema.validate(trace, TRACE_EVENT_FORMAT)
    slices = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["cat"] == "test"]
    assert Counter(e["name"] for e in slices) == Counter(
        f"test_suite.py::{name}" for name in ("test_stuck_in_c", "test_a", "test_b", "test_c"))
    lanes = {e["tid"]: e["args"]["name"] for e in trace["traceEvents"]
             if e["ph"] == "M" and e["name"] == "thread_name"}
    assert all(lanes[e["tid"]].startswith("gw") for e in slices), lanes  # xdist workers' lanes
    stuck = next(e for e in slices if e["name"].endswith("test_stuck_in_c"))
    assert stuck["args"]["outcome"] == "timeout"
    kills = [e for e in trace["traceEvents"] if e["ph"] == "i" and e["name"] == "hard-timeout"]
    assert len(kills) == 1 and kills[0]["tid"] == stuck["tid"]  # on the stuck test's lane
    assert kills[0]["args"]["dump"].startswith("dumps/")


def test_a_plain_run_is_one_lane_and_reads_from_zero(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"test_suite.py": "def test_a():\n    pass\n"})
    assert run_tiergate(project, "run", "--tier", "fast").returncode == 0
    trace = _trace(project)
    jsonschema.validate(trace, TRACE_EVENT_FORMAT)
    (test,) = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["cat"] == "test"]
    assert test["name"] == "test_suite.py::test_a" and test["ts"] >= 0
    assert min(e["ts"] for e in trace["traceEvents"] if "ts" in e) == 0


def test_a_stop_with_no_test_is_across_the_run() -> None:
    run = RunResult(tier="fast", tests={"t": TestResult("t", duration=1.0, pid=7)},
                    times={"t": (None, 11.0)},
                    moments=[Moment("budget-expired", 12.0, 3, None, "dumps/b.txt", "budget")])
    events = trace_document(run)["traceEvents"]
    (stop,) = [e for e in events if e["ph"] == "i"]
    assert (stop["s"], stop["tid"], stop["ts"]) == ("p", 0, 2_000_000)
    jsonschema.validate({"traceEvents": events}, TRACE_EVENT_FORMAT)


def test_results_without_times_have_no_slices() -> None:
    """JUnit from another runner has no time of day: nothing to place, nothing made up."""
    events = trace_document(RunResult(tests={"t": TestResult("t", duration=1.0)}))["traceEvents"]
    assert [e for e in events if e["ph"] == "X" and e["cat"] == "test"] == []


def test_an_unwritable_output_is_one_line(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"test_suite.py": "def test_a():\n    pass\n"})
    assert run_tiergate(project, "run", "--tier", "fast").returncode == 0
    proc = run_tiergate(project, "trace", "--results-dir", str(results(project)),
                        "--output", str(tmp_path / "no" / "such" / "trace.json"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "cannot write the trace to" in proc.stderr


def test_every_run_leaves_its_trace_with_the_results(tmp_path: Path) -> None:
    """No `tiergate trace` step needed: the results dir the action uploads holds trace.json,
    and the summary names it."""
    project = make_project(tmp_path, {"test_suite.py": "def test_a():\n    pass\n"})
    assert run_tiergate(project, "run", "--tier", "fast").returncode == 0
    trace = json.loads((results(project) / "trace.json").read_text())
    jsonschema.validate(trace, TRACE_EVENT_FORMAT)
    assert [e["name"] for e in trace["traceEvents"] if e.get("cat") == "test"] == [
        "test_suite.py::test_a"]
    summary = (results(project) / "summary.md").read_text()
    assert "`trace.json` in the results" in summary and "ui.perfetto.dev" in summary


def test_a_report_writes_the_merged_trace(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"test_suite.py": "def test_a():\n    pass\n"
                                      "def test_b():\n    pass\n"})
    dirs = []
    for k in (1, 2):
        dirs += ["--results-dir", str(tmp_path / f"shard-{k}")]
        assert run_tiergate(project, "run", "--tier", "fast", "--shard", f"{k}/2",
                            "--results-dir", dirs[-1]).returncode == 0
    merged = tmp_path / "merged"
    assert run_tiergate(project, "report", *dirs, "--output-dir", str(merged)).returncode == 0
    trace = json.loads((merged / "trace.json").read_text())
    jsonschema.validate(trace, TRACE_EVENT_FORMAT)
    assert sorted(e["name"] for e in trace["traceEvents"] if e.get("cat") == "test") == [
        "test_suite.py::test_a", "test_suite.py::test_b"]


def test_a_plain_pytest_run_leaves_the_timeline_to_tiergate_trace(
    pytester: pytest.Pytester,
) -> None:
    """``pytest --tier`` pays for no trace.json (its slices cost as much per test as the JUnit
    file); its summary says how to get one, and ``tiergate trace`` writes it from the log."""
    pytester.makepyfile(test_suite="def test_a():\n    pass\n")
    pytester.runpytest_subprocess("--tier", "fast").assert_outcomes(passed=1)
    out = pytester.path / ".tiergate" / "fast"
    assert (out / "junit.xml").exists() and not (out / "trace.json").exists()
    summary = (out / "summary.md").read_text()
    assert "`tiergate trace` writes `trace.json`" in summary
    proc = run_tiergate(pytester.path, "trace", "--results-dir", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jsonschema.validate(json.loads((out / "trace.json").read_text()), TRACE_EVENT_FORMAT)
