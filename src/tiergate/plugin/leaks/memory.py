"""``leak-memory``: a suspect from RSS growth, confirmed by Python-level retained memory.

RSS is what the per-test path can afford (one ``pread``), but it moves for many innocent reasons:
a cache warmed once, a fixture built on first use, and the allocator's high-water mark: memory
that malloc keeps after it was freed (fragmentation, a trim threshold raised by an earlier big
block), which a later, bigger allocation extends. That last one can grow on every run, and more
so when a module runs on its own in a young process, while nothing at all is retained. So growth
over the threshold only makes a test a *suspect*.

The suspect is then run again, quietly, ``CONFIRM_RUNS`` times (``watch.LeakWatch._confirm``)
under tracemalloc: a leak is Python-level memory still allocated after each repeat and a
collection, by at least half the threshold each time. RSS is recorded next to it but decides
nothing. tracemalloc runs only during those repeats, never for the suite at large; the snapshots
around the last repeat name the allocation sites.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any

from tiergate.plugin.leaks.sites import Site, function_at

CONFIRM_RUNS = 2  # repeats that must each retain at least half the threshold
TOP_SITES = 5


class Tracer:
    """tracemalloc over the repeats of one suspect: started here unless someone else traces
    already (their tracing is used as it is, never reset or stopped)."""

    def __init__(self) -> None:
        import tracemalloc  # here: a run without a suspect never pays for importing it

        self._tm = tracemalloc
        self._ours = False

    def __enter__(self) -> Tracer:
        if not self._tm.is_tracing():
            self._tm.start(1)
            self._ours = True
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._ours:
            self._tm.stop()
            self._ours = False

    def traced(self) -> int:
        """Bytes of Python-level memory allocated now (tracemalloc's current size)."""
        return int(self._tm.get_traced_memory()[0])

    def snapshot(self) -> Any:
        return self._tm.take_snapshot()

    def sites(self, before: Any, after: Any) -> list[tuple[Site, int]]:
        ignore = (self._tm.__file__, os.sep + "_pytest" + os.sep, os.sep + "pluggy" + os.sep,
                  os.sep + "tiergate" + os.sep + "leaks" + os.sep, "<frozen ")
        sites = []
        for stat in after.compare_to(before, "lineno"):
            if stat.size_diff <= 0:
                continue
            frame = stat.traceback[0]
            if any(part in frame.filename for part in ignore):
                continue
            sites.append((Site(frame.filename, frame.lineno,
                               function_at(frame.filename, frame.lineno)), stat.size_diff))
            if len(sites) >= TOP_SITES:
                break
        return sites

