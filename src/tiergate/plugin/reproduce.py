"""Reproduction tests: ``@pytest.mark.reproduces("BUG-601", reason="...")``.

A test so marked shows a known bug and is expected to fail. It is turned into a non-strict
``xfail`` at collection, so while the bug is there pytest, JUnit and the counts see it as
``xfailed`` ("reproduces"), never as a failure, and its ``test-finish`` event carries
``reproduces: "BUG-601"`` so a report can list the bugs still reproduced.

When such a test passes, the bug looks fixed: the run gets a ``reproduction-fixed`` finding. It is
an *error* on purpose: a fixed bug whose reproduction is still marked would hide the next
regression (the test could fail again and still count as "reproduces"), so the pull request
that fixed it is the one asked to remove the marker. Only the call phase counts: a reproduction
whose fixture fails is still xfailed, as pytest has it.

Registered by the tiergate plugin (``TierRun``) in every pytest process of a tier run; outside a
tier run the marker is unknown to pytest and the test simply runs. It joins the per-test pipeline
(plugin/pertest.py) only when some test is marked: a suite without reproductions pays nothing per
test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from tiergate.plugin.markers import ClosestMarker
from tiergate.protocol.findings import Finding, Location

if TYPE_CHECKING:
    from tiergate.plugin.pertest import PerTest

MARKER = "reproduces"
MARKER_HELP = (
    "reproduces(bug_id, reason=''): the test shows a known bug and is expected to fail; it counts"
    " as reproducing while it fails, and a pass is a reproduction-fixed finding (tiergate)"
)


class Reproductions:
    def __init__(self, config: pytest.Config, emit: Callable[[Finding], None],
                 per_test: PerTest) -> None:
        config.addinivalue_line("markers", f"{MARKER}: {MARKER_HELP}")
        self.emit = emit
        self.per_test = per_test
        self.bugs: dict[str, tuple[str, str]] = {}  # nodeid -> (bug id, reason), tests run here

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        closest = ClosestMarker(MARKER)
        for item in items:
            mark = closest(item)
            if mark is None:
                continue
            bug = mark.args[0] if mark.args else mark.kwargs.get("bug_id")
            if not isinstance(bug, str) or not bug.strip():
                raise pytest.UsageError(
                    f"{item.nodeid}: @pytest.mark.{MARKER} needs a bug id, "
                    f'e.g. @pytest.mark.{MARKER}("BUG-601", reason="...")'
                )
            reason = str(mark.kwargs.get("reason", "") or "")
            bug = bug.strip()
            self.bugs[item.nodeid] = (bug, reason)
            why = f"reproduces {bug}" + (f": {reason}" if reason else "")
            item.add_marker(pytest.mark.xfail(strict=False, reason=why))
        if self.bugs:
            self.per_test.add(self)

    # -- the per-test step: its bug on the test's test-finish, a pass as a finding ------------

    def begin(self, item: pytest.Item) -> None:
        return None

    def end(self, item: pytest.Item, nextitem: pytest.Item | None, state: None,
            reports: list[pytest.TestReport]) -> None:
        found = self.bugs.get(item.nodeid)
        if found is None:
            return
        for report in reports:
            self._check(report, found)
        self.per_test.note("reproduces", found[0])

    def _check(self, report: pytest.TestReport, found: tuple[str, str]) -> None:
        if report.when != "call":
            return
        if not (report.passed and hasattr(report, "wasxfail")):
            return
        bug, reason = found
        path, lineno, _ = report.location
        self.emit(
            Finding(
                kind="reproduction-fixed",
                test=report.nodeid,
                severity="error",
                message=f"reproduction-fixed: this test reproduces {bug}"
                + (f" ({reason})" if reason else "")
                + f" but it passed: the bug looks fixed; remove @pytest.mark.{MARKER}"
                f'("{bug}") so the test guards against the bug coming back',
                location=Location(path, lineno + 1 if lineno is not None else None),
                details={"bug": bug},
            )
        )
