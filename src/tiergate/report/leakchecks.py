"""The leak confirmation runs of a run (its ``leak-check`` events), totalled for the reports.

A suspect test is run again before a leak is reported (``leaks/repeat.py``); those repeats are
part of the run's time, so the summary and the terminal say which tests were run again, how many
times, for how long and what each came to. The records come from the event log: every field is
read as untrusted (a wrong type counts as nothing), and the renderers escape what they show."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

from tiergate.results.model import RunResult

# What a test's confirmation runs came to, in the reader's words, strongest first: one leak
# among a test's checks (a resumed or sharded run may check it twice) makes it a leak.
_VERDICTS = ("leak confirmed", "inconclusive", "first use, not a leak", "released, not a leak",
             "no leak")


@dataclasses.dataclass(frozen=True)
class TestChecks:
    """One test's confirmation runs."""

    __test__ = False  # not a pytest test class

    nodeid: str
    repeats: int
    seconds: float
    verdict: str  # one of _VERDICTS, or a newer writer's own word


@dataclasses.dataclass(frozen=True)
class LeakChecks:
    """Every test that was run again, the longest first, and the totals."""

    tests: list[TestChecks]
    repeats: int
    seconds: float


def leak_checks(run: RunResult) -> LeakChecks | None:
    """The run's confirmation runs by test, or None when no test was run again."""
    by_test: dict[str, list[Mapping[str, Any]]] = {}
    for record in run.leak_checks:
        nodeid = record.get("nodeid")
        if isinstance(nodeid, str) and nodeid:
            by_test.setdefault(nodeid, []).append(record)
    if not by_test:
        return None
    tests = [_test_checks(nodeid, records) for nodeid, records in by_test.items()]
    tests.sort(key=lambda t: (-t.seconds, t.nodeid))
    return LeakChecks(tests, sum(t.repeats for t in tests), sum(t.seconds for t in tests))


def _test_checks(nodeid: str, records: Iterable[Mapping[str, Any]]) -> TestChecks:
    repeats, seconds, verdicts = 0, 0.0, []
    for record in records:
        repeats += _count(record.get("repeats"))
        seconds += _seconds(record.get("seconds"))
        verdicts.append(_verdict(record))
    return TestChecks(nodeid, repeats, seconds, min(verdicts, key=_rank))


def _rank(verdict: str) -> int:
    return _VERDICTS.index(verdict) if verdict in _VERDICTS else len(_VERDICTS)


def _verdict(record: Mapping[str, Any]) -> str:
    result = record.get("result")
    if result == "leak":
        return "leak confirmed"
    if result == "no leak":
        kinds = record.get("kinds")
        said = set(kinds.values()) if isinstance(kinds, Mapping) else set()
        if "first use" in said:
            return "first use, not a leak"
        return "released, not a leak" if "released" in said else "no leak"
    if isinstance(result, str) and result and result != "inconclusive":
        return result[:40]  # a newer writer's word: shown as it is (the renderers escape it)
    return "inconclusive"


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return value if 0 <= value < 10**9 else 0


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    seconds = float(value)
    return seconds if math.isfinite(seconds) and 0.0 <= seconds < 1e9 else 0.0
