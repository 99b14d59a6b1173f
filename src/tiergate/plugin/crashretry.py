"""Retries of a test whose xdist worker died under it: a hard timeout or a crash.

Without xdist the supervisor retries such a test in the resumed pytest (supervisor/
killretry.py). Under xdist pytest is not resumed: the supervisor kills only the stuck worker
(its ``hard-timeout`` event comes first), or the worker dies by itself, and xdist replaces it
and asks the controller's ``pytest_handlecrashitem`` what to do with the test. The controller
is the one process that can hand the test back (``sched.mark_test_pending``), so the decision
is made here: where the tier's ``retry-kinds`` has the kind, the message matches ``retry-on``
and the test has a retry left (what the workers wrote, protocol/runspec.py), the killed attempt
is a ``test-attempt`` event and the test runs again on a worker. That worker may be any, at any
time, so the attempts so far go to a file in the run dir that plugin/retries.py reads when it
starts a retried test; from there it goes on as for an attempt that failed in-process.

The log is read only when a worker dies: the attempts the test already had (its workers wrote
them) and the supervisor's ``hard-timeout`` that tells a kill for a hang from a crash.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Any

import pytest

from tiergate.protocol import events as ev
from tiergate.protocol.findings import Finding, Location
from tiergate.protocol.runspec import read_retry_allowance, write_killed_attempts

if TYPE_CHECKING:
    from tiergate.plugin.tierrun import TierRun

def _said(report: pytest.TestReport) -> str:
    """xdist's words for the death ("worker 'gw0' crashed while running ..."), without the
    ``[gw0] linux -- Python`` header that longreprtext puts first."""
    lines = str(report.longrepr or "").splitlines()
    return lines[0] if lines else "its xdist worker died"


class CrashRetries:
    """On the xdist controller, in a supervised tier whose ``retry-kinds`` has a kill kind."""

    def __init__(self, run: TierRun) -> None:
        self.run = run
        self.tier = run.tier
        self._patterns = [re.compile(p) for p in self.tier.retry_on]
        self._killed: dict[str, list[dict[str, Any]]] = {}  # what the workers are told

    @pytest.hookimpl(tryfirst=True, optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport,
                               sched: Any) -> None:
        before, hang = self._story(crashitem)
        kind = "timeout" if hang is not None else "crash"
        message = (str(hang.get("message") or "timeout: hard timeout") if hang is not None
                   else f"crash: {_said(report)}")
        if not self._retried(crashitem, kind, message, len(before)):
            return
        attempt = {"nodeid": crashitem, "attempt": len(before) + 1,
                   "outcome": "timeout" if kind == "timeout" else "failed", "phase": "call",
                   "duration": float(report.duration or 0.0), "message": message,
                   "longrepr": message, "dump": hang.get("dump") if hang is not None else None}
        # Written before the test is handed back: an idle worker may start it at once, and it
        # reads its attempts so far from this file when it does.
        self._killed[crashitem] = [*before, attempt]
        self._write()
        try:
            sched.mark_test_pending(crashitem)
        except NotImplementedError:  # --dist loadscope and others cannot hand one test back
            del self._killed[crashitem]
            self._write()
            return
        report.outcome = "rerun"  # type: ignore[assignment]  # plugin/tierrun.py: not finished
        self.run.events.emit_fields(ev.TEST_ATTEMPT, dict(attempt))
        if kind == "crash":  # a hang's finding is the supervisor's (its timeout, with the dump)
            self.run.emit_finding(Finding(
                kind="crash", test=crashitem, severity="error",
                message=f"the xdist worker running this test died: {message}",
                location=Location(report.location[0], None)))
        print(f"tiergate: {crashitem} runs again on another worker "
              f"(attempt {len(before) + 2})", file=sys.stderr)

    def _retried(self, nodeid: str, kind: str, message: str, attempts: int) -> bool:
        if kind not in self.tier.retry_kinds:
            return False
        if self._patterns and not any(p.search(message) for p in self._patterns):
            return False
        allowance = read_retry_allowance(self.run.spec.run_dir)
        allowed = self.tier.retries if allowance is None else allowance.get(nodeid, 0)
        return attempts < allowed

    def _story(self, nodeid: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """The test's failed attempts so far, and the supervisor's ``hard-timeout`` for the
        attempt its worker died in (None: the worker died by itself, a crash)."""
        attempts: list[dict[str, Any]] = []
        hang: dict[str, Any] | None = None
        for record in ev.read_events(self.run.spec.events_file):
            if record.get("nodeid") != nodeid:
                continue
            if record.get("event") == ev.TEST_ATTEMPT:
                attempts.append(record)
                hang = None
            elif record.get("event") == ev.HARD_TIMEOUT:
                hang = record
        fields = ("nodeid", "attempt", "outcome", "phase", "duration", "message", "longrepr",
                  "stdout", "stderr", "dump")
        return [{k: a[k] for k in fields if k in a} for a in attempts], hang

    def _write(self) -> None:
        write_killed_attempts(self.run.spec.run_dir, self._killed)
