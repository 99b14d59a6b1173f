"""Confirmation runs: a leak is growth, not first use.

A thread, a socket or an fd that a test leaves behind may be a leak, or the first use of
something the process keeps on purpose: a module's lazily made connection pool or executor, the
arena of multiprocessing's shared-memory heap, the idle worker a thread cache keeps for the next
call. After the test, the two look the same. They differ on the next use: a leak leaves another
one behind, a cache is reused. So a suspect test is run again, quietly (no reports, its warnings
and unraisable exceptions kept from the tests: ``quiet.caught``), and a leftover is a leak only
when the repeat leaves behind one from the same place again (``signature``) and the first one is
still there. What the repeat does not leave again was first use: no finding. What someone else
closed or ended while the test ran again (a server's thread closing its side of a connection a
moment later, a "last connection" that the next call replaces, a thread that ends on its own) was
released, not leaked: no finding either, however many the repeat leaves behind meanwhile.

Every confirmation is recorded (``Check.fields``, the ``leak-check`` event): which test, how many
repeats, how long, and what each suspect kind came to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from typing import Any

import pytest
from _pytest.runner import runtestprotocol

from tiergate.plugin.leaks.probes import Leftover, server_owned

# The kinds a repeat decides. env-changed is not among them: a repeat that sets the same
# variable again changes nothing, and the change is a finding on its first run.
REPEATED_KINDS = frozenset({"leak-thread", "leak-process", "leak-fd", "leak-socket", "leak-task"})


def outcomes(reports: Sequence[pytest.TestReport]) -> list[tuple[str, str]]:
    return [(report.when or "", report.outcome) for report in reports]


def run_again(item: pytest.Item, nextitem: pytest.Item | None,
              expected: list[tuple[str, str]]) -> bool:
    """Run *item*'s protocol again without reporting it; did it end as the first run did?"""
    reports = runtestprotocol(item, log=False, nextitem=nextitem)
    return outcomes(reports) == expected


def _fd_class(target: str) -> str:
    """What an fd points at, without what changes from run to run (a tmp_path, an inode)."""
    if target.startswith("/"):
        return "file"
    return target.split(":", 1)[0] if ":[" in target else target


def signature(left: Leftover) -> Hashable:
    """Where a leftover comes from, the same for each run of the same code: its creation site
    where the wrappers saw it, else what kind of thing it is."""
    details = left.details
    if left.kind == "leak-thread":
        return (left.kind, left.site, details.get("target"))
    if left.kind == "leak-process":
        cmdline = str(details.get("cmdline", ""))
        return (left.kind, left.site, None if left.site else cmdline.split(" ", 1)[0])
    if server_owned(left):
        # a test's own server's connection: the same server, whatever state it was caught in
        return (left.kind, "accepted by", details.get("server"))
    if left.kind == "leak-socket":
        return (left.kind, details.get("family"), details.get("type"), details.get("status"))
    if left.kind == "leak-fd" and "target" in details:
        return (left.kind, _fd_class(str(details["target"])))
    return (left.kind, left.site)


@dataclasses.dataclass
class Check:
    """One suspect test's confirmation runs, and what they came to."""

    nodeid: str
    suspects: list[Leftover]  # what the test left behind, to be confirmed
    memory: bool  # RSS grew past the threshold too
    rss_grew: int  # RSS growth in the test's own window
    repeats: int = 0  # repeats run
    seconds: float = 0.0
    inconclusive: str | None = None  # why the repeats say nothing (the repeat failed, ...)
    again: list[Leftover] = dataclasses.field(default_factory=list)  # left by the repeat
    # the suspects gone by the end of the repeat: closed or ended by someone, so not leaked
    released: list[Leftover] = dataclasses.field(default_factory=list)
    growth: list[int] = dataclasses.field(default_factory=list)  # traced bytes per repeat
    rss: list[int] = dataclasses.field(default_factory=list)  # RSS growth per repeat
    sites: list[tuple[Any, int]] = dataclasses.field(default_factory=list)
    memory_leak: bool = False

    def confirmed(self) -> list[Leftover]:
        """The suspects still there whose kind of thing the repeat left behind again."""
        if self.inconclusive is not None:
            return []
        again = {signature(left) for left in self.again}
        released = {left.key for left in self.released}
        return [left for left in self.suspects
                if signature(left) in again and left.key not in released]

    def fields(self) -> dict[str, Any]:
        """The ``leak-check`` event: the run recorded whatever it came to."""
        confirmed = {left.kind for left in self.confirmed()}
        released = {left.kind for left in self.released}
        kinds = sorted({left.kind for left in self.suspects} | ({"leak-memory"} if self.memory
                                                                 else set()))
        verdict: dict[str, str] = {}
        for kind in kinds:
            if self.inconclusive is not None:
                verdict[kind] = "inconclusive"
            elif kind == "leak-memory":
                verdict[kind] = "leak" if self.memory_leak else "no leak"
            else:
                verdict[kind] = ("leak" if kind in confirmed else "released" if kind in released
                                 else "first use")
        fields: dict[str, Any] = {
            "nodeid": self.nodeid,
            "repeats": self.repeats,
            "seconds": round(self.seconds, 4),
            "kinds": verdict,
            "result": ("inconclusive" if self.inconclusive is not None
                       else "leak" if "leak" in verdict.values() else "no leak"),
            "suspected": [left.what for left in self.suspects][:20],
            "again": [left.what for left in self.again][:20],
        }
        if self.released:
            fields["released"] = [left.what for left in self.released][:20]
        if self.inconclusive is not None:
            fields["reason"] = self.inconclusive
        if self.memory:
            fields["memory"] = {"rss_grew": self.rss_grew, "traced": self.growth,
                                "rss": self.rss}
        return fields

    def summary(self) -> str:
        """For a finding's message: how it was confirmed."""
        runs = "1 repeat run" if self.repeats == 1 else f"{self.repeats} repeat runs"
        return f"{runs}, {self.seconds:.2f}s"
