"""The run's timeline as a Chrome trace (the Trace Event Format, JSON), which Perfetto
(ui.perfetto.dev) and chrome://tracing open: one lane per process that ran tests (pytest, or
each xdist worker, per attempt), each test a slice on its lane, and the dumps, kills and stops
as instants. Built from the results model, like every report: a run killed at any instant still
has a timeline up to that instant.

Timestamps are microseconds from the run's start, so the trace reads from 0.
"""

from __future__ import annotations

import json
from typing import Any

from tiergate.protocol.layout import TRACE_FILE
from tiergate.results.model import Moment, RunResult, TestResult

RUN_PID = 1  # the whole trace is one "process": the tier's run; its lanes are "threads"
SUPERVISOR_LANE = 0  # the instants no test lane owns: a budget, a cancel, pytest's exits
_US = 1_000_000


def trace_document(run: RunResult) -> dict[str, Any]:
    """The trace of *run*: ``{"traceEvents": [...], "displayTimeUnit": "ms"}``."""
    # Tests from JUnit have no time of day, so no place on a timeline.
    starts = {t.nodeid: (start, t) for t in run.tests.values()
              if (start := _start(run, t)) is not None}
    origin = _origin(run, [start for start, _ in starts.values()])
    lanes: dict[str, int] = {}
    test_lane: dict[str, int] = {}
    events: list[dict[str, Any]] = []
    for nodeid, (start, test) in sorted(starts.items(), key=lambda kv: (kv[1][0], kv[0])):
        lane = test_lane[nodeid] = lanes.setdefault(_lane_name(test), len(lanes) + 1)
        events.append({
            "name": nodeid, "cat": "test", "ph": "X", "pid": RUN_PID, "tid": lane,
            "ts": _micros(start - origin), "dur": _micros(_length(run, test)),
            "args": _test_args(test),
        })
    events += [_instant(m, origin, test_lane) for m in run.moments]
    if run.started is not None and run.finished is not None:  # the whole run, on its own lane
        events.append({"name": f"tier {run.tier or '?'}", "cat": "run", "ph": "X",
                       "pid": RUN_PID, "tid": SUPERVISOR_LANE, "ts": _micros(run.started - origin),
                       "dur": _micros(run.finished - run.started),
                       "args": {"outcome": run.outcome, "attempts": run.attempts}})
    names = {SUPERVISOR_LANE: "supervisor", **{lane: name for name, lane in lanes.items()}}
    meta = [{"name": "process_name", "ph": "M", "pid": RUN_PID, "tid": SUPERVISOR_LANE,
             "args": {"name": f"tier {run.tier or '?'}"}}]
    meta += [{"name": "thread_name", "ph": "M", "pid": RUN_PID, "tid": lane,
              "args": {"name": name}} for lane, name in sorted(names.items())]
    meta += [{"name": "thread_sort_index", "ph": "M", "pid": RUN_PID, "tid": lane,
              "args": {"sort_index": lane}} for lane in sorted(names)]
    return {"traceEvents": meta + events, "displayTimeUnit": "ms"}


def trace_hint(run: RunResult, *, written: bool = True) -> str:
    """The job summary's line on how to see the timeline; none for results with no times.
    *written*: trace.json is with the results (``tiergate run`` and ``report`` write it; a plain
    ``pytest --tier`` leaves it to ``tiergate trace``)."""
    if not run.times:
        return ""
    where = (f"`{TRACE_FILE}` in the results (the uploaded artifact)" if written
             else f"`tiergate trace` writes `{TRACE_FILE}` from the results")
    return (f"🕒 **Timeline:** {where}; open it in "
            "https://ui.perfetto.dev (*Open trace file*) or `chrome://tracing`.")


def render_trace(run: RunResult) -> str:
    return json.dumps(trace_document(run), separators=(",", ":")) + "\n"


def _origin(run: RunResult, starts: list[float]) -> float:
    starts = [*starts, *(m.t for m in run.moments)]
    if run.started is not None:
        starts.append(run.started)
    return min(starts, default=0.0)


def _start(run: RunResult, test: TestResult) -> float | None:
    if test.nodeid not in run.times:
        return None
    began, ended = run.times[test.nodeid]
    return began if began is not None else ended - test.duration


def _length(run: RunResult, test: TestResult) -> float:
    began, ended = run.times.get(test.nodeid, (None, 0.0))
    if began is None:
        return test.duration
    return max(test.duration, ended - began)  # a killed test's report says 0


def _lane_name(test: TestResult) -> str:
    """xdist workers by name; otherwise the process, so a resumed attempt is a lane of its own."""
    if test.worker:
        return f"{test.worker} (pid {test.pid})" if test.pid else test.worker
    return f"pytest (pid {test.pid})" if test.pid else "pytest"


def _test_args(test: TestResult) -> dict[str, Any]:
    args: dict[str, Any] = {"outcome": test.outcome}
    if test.message:
        args["message"] = test.message[:500]
    if test.dump:
        args["dump"] = test.dump
    return args


def _instant(moment: Moment, origin: float, test_lane: dict[str, int]) -> dict[str, Any]:
    """On the lane of its test where it has one (a thread instant), else the supervisor's lane
    and across the whole run (a process instant: a budget or a cancel stops every lane)."""
    lane = test_lane.get(moment.nodeid or "")
    args: dict[str, Any] = {"what": moment.what}
    if moment.nodeid:
        args["test"] = moment.nodeid
    if moment.dump:
        args["dump"] = moment.dump
    return {"name": moment.kind, "cat": "dump" if moment.dump else "run", "ph": "i",
            "s": "t" if lane is not None else "p", "pid": RUN_PID,
            "tid": lane if lane is not None else SUPERVISOR_LANE,
            "ts": _micros(moment.t - origin), "args": args}


def _micros(seconds: float) -> int:
    return max(0, round(seconds * _US))
