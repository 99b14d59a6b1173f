"""Tests that no longer run: those that ran on the base commit (its check run keeps their ids,
github/known.py) and are missing from this run, or skipped in it now. A suite that silently stops
running half its tests (a renamed conftest, a collection filter, a skipif that is always true)
passes, and nobody sees it; the PR comment and the check run list them."""

from __future__ import annotations

from collections.abc import Collection

from tiergate.report.escape import md_code
from tiergate.results.model import RunResult

SHOWN = 30  # ids listed; the rest are counted


class LostTests:
    """A plain class, not a dataclass: the summary imports this on every run, and making a
    dataclass costs more than the rest of the module."""

    __slots__ = ("gone", "skipped")

    def __init__(self, gone: list[str], skipped: list[str]) -> None:
        self.gone = gone  # ran on the base, not in this run at all (removed, renamed, deselected)
        self.skipped = skipped  # ran on the base, skipped in this run

    def __len__(self) -> int:
        return len(self.gone) + len(self.skipped)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, LostTests) and self.gone == other.gone
                and self.skipped == other.skipped)

    __hash__ = None  # type: ignore[assignment]  # mutable lists inside, as the dataclass had


def ran(run: RunResult) -> list[str]:
    """The tests this run ran (every outcome but skipped), for the next commit to compare with."""
    return [t.nodeid for t in run.tests.values() if t.outcome != "skipped"]


def lost_tests(run: RunResult, base: Collection[str] | None) -> LostTests:
    """What ran on the base and does not run here. Tests the run selected but did not get to
    (max-fail, the budget, a crash) are left out: the report names them as not run already."""
    if not base:
        return LostTests([], [])
    accounted = set(run.not_run)
    gone = sorted(n for n in base if n not in run.tests and n not in accounted)
    skipped = sorted(n for n in base if n in run.tests and run.tests[n].outcome == "skipped")
    return LostTests(gone, skipped)


def lost_section(lost: LostTests) -> str:
    """"⚠️ 3 tests no longer run …", with the ids; empty when none are lost."""
    if not lost:
        return ""
    count = len(lost)
    tests = "test" if count == 1 else "tests"
    head = f"⚠️ **{count:,} {tests} no longer run** that ran on the base commit"
    parts = [f"{len(lost.gone):,} missing (removed, renamed or deselected)"] if lost.gone else []
    parts += [f"{len(lost.skipped):,} skipped now"] if lost.skipped else []
    listed = [f"- {md_code(n, 200)}" for n in lost.gone[:SHOWN]]
    room = max(0, SHOWN - len(listed))
    listed += [f"- {md_code(n, 200)} (skipped)" for n in lost.skipped[:room]]
    more = [f"- … and {count - len(listed):,} more"] if count > len(listed) else []
    return "\n".join([f"{head}: {', '.join(parts)}.", "", *listed, *more])
