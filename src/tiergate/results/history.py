"""Flake history: what each test did across runs (attempts, failures, flaky passes, last seen),
kept in ``flakes.json`` in the tier's ``history`` folder, the folder the nightly template caches
with the test durations.

A run is counted once: the history remembers the runs it has counted (by tier and start time),
so ``tiergate report`` run twice on the same results, or ``tiergate post`` after it, does not
count a run twice. Each test keeps one letter per run for its last ``KEPT_RUNS`` runs, which
is where "flaky in 4 of the last 30 runs" and "passed on every one of its last 10 runs" come
from; the totals (attempts, failures, flaky) cover every run the file has seen.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tiergate.errors import InputError
from tiergate.results.model import FAILING_OUTCOMES, RunResult, TestResult

HISTORY_FILE = "flakes.json"
KEPT_RUNS = 30  # letters per test: the window of "flaky in N of the last M runs"
KEPT_RUN_IDS = 200  # runs remembered as counted, so none is counted twice
RELEASE_AFTER = 10  # a quarantined test that passed this many runs in a row may be released

# One letter per run a test was in, oldest first.
PASSED, FLAKY, FAILED, SKIPPED = "p", "f", "x", "s"


@dataclasses.dataclass
class TestHistory:
    __test__ = False  # not a pytest test class

    runs: int = 0
    attempts: int = 0
    failures: int = 0  # failed attempts
    flaky: int = 0  # runs in which it failed, then passed on a retry
    last_seen: str = ""  # the date of the last run that had it
    recent: str = ""  # its last KEPT_RUNS runs, one letter each

    @property
    def recent_flaky(self) -> int:
        return self.recent.count(FLAKY)

    @property
    def passed_streak(self) -> int:
        """Runs in a row, up to the last, that it passed on its first attempt."""
        return len(self.recent) - len(self.recent.rstrip(PASSED))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class FlakeHistory:
    tests: dict[str, TestHistory] = dataclasses.field(default_factory=dict)
    counted: list[str] = dataclasses.field(default_factory=list)  # run ids, oldest first
    branches: dict[str, str] = dataclasses.field(default_factory=dict)  # run id -> branch

    @property
    def branch(self) -> str | None:
        """The one branch every counted run with a known branch ran on, else None."""
        names = {self.branches[r] for r in self.counted if r in self.branches}
        return names.pop() if len(names) == 1 else None

    def with_run(self, run: RunResult, *, branch: str | None = None,
                 today: datetime.date | None = None) -> FlakeHistory:
        """This history with *run* counted (a copy; the same history when it already is)."""
        ident = run_id(run)
        if ident is None or ident in self.counted:
            return self
        day = (today or datetime.date.today()).isoformat()
        tests = {nodeid: dataclasses.replace(h) for nodeid, h in self.tests.items()}
        for nodeid, test in run.tests.items():
            tests[nodeid] = _counted(tests.get(nodeid, TestHistory()), test, day)
        counted = [*self.counted, ident][-KEPT_RUN_IDS:]
        branches = {r: b for r, b in self.branches.items() if r in counted}
        if branch:
            branches[ident] = branch
        return FlakeHistory(tests, counted, branches)

    def worst_first(self) -> list[tuple[str, TestHistory]]:
        """Tests that flaked or failed, most recent flakes first, then the most failures."""
        bad = [(n, h) for n, h in self.tests.items() if h.flaky or h.failures]
        return sorted(bad, key=lambda item: (-item[1].recent_flaky, -item[1].flaky,
                                             -_failure_rate(item[1]), item[0]))

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "counted": self.counted, "branches": self.branches,
                "tests": {n: h.to_json() for n, h in sorted(self.tests.items())}}


def run_id(run: RunResult) -> str | None:
    """What names a run in the history: its tier and the time it started (None: unknown)."""
    if run.started is None:
        return None
    return f"{run.tier or '?'}@{run.started:.6f}"


def flake_line(test: TestResult, history: FlakeHistory | None) -> str:
    """``failed 1 of 2 attempts here; flaky in 4 of the last 30 runs on main``."""
    tried = len(test.attempts) + 1
    failed = len(test.attempts) + (1 if test.outcome in FAILING_OUTCOMES else 0)
    line = f"failed {failed} of {tried} attempts here"
    past = history.tests.get(test.nodeid) if history is not None else None
    if past is not None and past.recent:
        where = f" on {history.branch}" if history is not None and history.branch else ""
        line += (f"; flaky in {past.recent_flaky} of the last {len(past.recent)} "
                 f"run{'s' if len(past.recent) != 1 else ''}{where}")
    return line


def ready_for_release(nodeid: str, history: FlakeHistory | None) -> int | None:
    """The runs in a row a quarantined test passed, when that is enough to release it."""
    past = history.tests.get(nodeid) if history is not None else None
    if past is None or past.passed_streak < RELEASE_AFTER:
        return None
    return past.passed_streak


def load_history(folder: Path) -> FlakeHistory:
    """The history kept in *folder* (an empty one when there is none yet: the first run)."""
    path = folder / HISTORY_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return FlakeHistory()
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the flake history ({exc}): delete it to start "
                         "a new one") from None
    try:
        return _parse(data)
    except (TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{path}: not a tiergate flake history ({exc}): delete it to start "
                         "a new one") from None


def write_history(folder: Path, history: FlakeHistory) -> Path:
    """Write *history* whole (a temporary file renamed over the old one: never half a file)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / HISTORY_FILE
    tmp = folder / f".{HISTORY_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(history.to_json(), indent=0) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def ci_branch(env: Mapping[str, str] | None = None) -> str | None:
    """The branch a GitHub Actions run is for: a PR's head branch, else the pushed branch."""
    source = os.environ if env is None else env
    return source.get("GITHUB_HEAD_REF") or source.get("GITHUB_REF_NAME") or None


def _counted(past: TestHistory, test: TestResult, day: str) -> TestHistory:
    skipped = test.outcome in ("skipped", "xfailed")
    tried = 0 if skipped else len(test.attempts) + 1
    failed = len(test.attempts) + (1 if test.outcome in FAILING_OUTCOMES else 0)
    letter = (SKIPPED if skipped else FLAKY if test.flaky
              else FAILED if test.outcome in FAILING_OUTCOMES else PASSED)
    return TestHistory(runs=past.runs + 1, attempts=past.attempts + tried,
                       failures=past.failures + failed, flaky=past.flaky + int(test.flaky),
                       last_seen=day, recent=(past.recent + letter)[-KEPT_RUNS:])


def _failure_rate(history: TestHistory) -> float:
    return history.failures / history.attempts if history.attempts else 0.0


def _parse(data: Any) -> FlakeHistory:
    if not isinstance(data, dict) or not isinstance(data.get("tests"), dict):
        raise ValueError("no table of tests")
    fields = {f.name for f in dataclasses.fields(TestHistory)}
    tests = {str(nodeid): TestHistory(**{k: v for k, v in entry.items() if k in fields})
             for nodeid, entry in data["tests"].items()}
    for entry in tests.values():
        if not (isinstance(entry.recent, str) and isinstance(entry.runs, int)):
            raise ValueError("a test's entry has the wrong types")
    counted = [str(r) for r in data.get("counted") or []]
    branches = {str(k): str(v) for k, v in (data.get("branches") or {}).items()}
    return FlakeHistory(tests, counted, branches)
