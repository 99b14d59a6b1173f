"""``leak-memory``: a suspect from RSS growth, confirmed by running the test again.

RSS grows for many innocent reasons (a cache warmed once, the allocator keeping freed pages, a
fixture built on first use), so growth over the threshold only makes a test a *suspect*. The test
is then run again, quietly (no reports), a few times: a leak grows again on every run, a warm-up
does not. tracemalloc runs only on the last confirmation run of a confirmed leak, to name the
allocation sites; it never runs for the suite at large.
"""

from __future__ import annotations

import dataclasses
import gc
import linecache
import os

import pytest
from _pytest.runner import runtestprotocol

from tiergate.leaks.probes import memory_rss
from tiergate.leaks.sites import Site

CONFIRM_RUNS = 2  # runs that must each grow by at least half the threshold
TOP_SITES = 5


@dataclasses.dataclass(frozen=True)
class MemoryLeak:
    growth: list[int]  # bytes per confirmation run
    sites: list[tuple[Site, int]]  # (allocation site, bytes) from tracemalloc, largest first


def _run_again(item: pytest.Item, nextitem: pytest.Item | None) -> bool:
    reports = runtestprotocol(item, log=False, nextitem=nextitem)
    return all(not report.failed for report in reports)


def confirm(item: pytest.Item, nextitem: pytest.Item | None, threshold: float) -> MemoryLeak | None:
    """Run *item* again; a MemoryLeak when every run grows RSS by at least half of *threshold*."""
    growth = []
    for _ in range(CONFIRM_RUNS):
        gc.collect()
        before = memory_rss()
        if not _run_again(item, nextitem):
            return None  # a test that fails when repeated says nothing about memory
        gc.collect()
        grew = memory_rss() - before
        if grew < threshold / 2:
            return None
        growth.append(grew)
    return MemoryLeak(growth, _allocation_sites(item, nextitem))


def _allocation_sites(item: pytest.Item, nextitem: pytest.Item | None) -> list[tuple[Site, int]]:
    import tracemalloc  # here: a run without a confirmed leak never pays for importing it

    if tracemalloc.is_tracing():
        return []  # someone else is tracing; their numbers are not ours to reset
    tracemalloc.start(1)
    try:
        before = tracemalloc.take_snapshot()
        _run_again(item, nextitem)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    ignore = (tracemalloc.__file__, os.sep + "_pytest" + os.sep, os.sep + "pluggy" + os.sep,
              os.sep + "tiergate" + os.sep + "leaks" + os.sep, "<frozen ")
    sites = []
    for stat in after.compare_to(before, "lineno"):
        if stat.size_diff <= 0:
            continue
        frame = stat.traceback[0]
        if any(part in frame.filename for part in ignore):
            continue
        function = _function_at(frame.filename, frame.lineno)
        sites.append((Site(frame.filename, frame.lineno, function), stat.size_diff))
        if len(sites) >= TOP_SITES:
            break
    return sites


def _function_at(path: str, line: int) -> str:
    """The name of the def enclosing *line* (a cheap read of the source; '' when unknown)."""
    for number in range(line, 0, -1):
        text = linecache.getline(path, number).lstrip()
        if text.startswith(("def ", "async def ")):
            return text.split("def ", 1)[1].split("(", 1)[0].strip()
        if text.startswith("class "):
            break
    return "<module>" if line else ""
