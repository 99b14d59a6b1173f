"""Retries: a failed test runs again, and every attempt is kept.

The tier's ``retries`` (or ``@pytest.mark.tiergate_retries(n)``, or pytest-rerunfailures'
``@pytest.mark.flaky(reruns=n)``) says how often. As pytest-rerunfailures does, this answers
``pytest_runtest_protocol`` first and runs pytest's own ``runtestprotocol`` once per attempt,
so every other plugin's setup, call and teardown hooks (pytest-asyncio's, pytest-django's...)
run as usual; the wrappers around the protocol (``TierRun``'s, with its soft timer and events)
wrap all the attempts together, and ``TierRun.end_attempt``/``start_attempt`` give each attempt
its own limit and ``test-start``. A failed attempt that is run again is a ``test-attempt``
event; the test's ``test-finish`` is its last attempt's, so the supervisor's resume, which
counts a test finished at its ``test-finish``, sees one test however often it ran.

With pytest-rerunfailures installed, tiergate runs the retries of the tests it retries (its
hook answers first, so theirs stands aside for them) and reads ``--reruns`` as the tier's
``retries`` when the tier sets none; one line at the start says so.

A test the supervisor had to kill (a hard timeout, pytest dying in it) is retried by the
supervisor where the tier's ``retry-kinds`` has ``timeout`` or ``crash`` (supervisor/
killretry.py): the resumed pytest gets its attempts so far in the run spec
(``attempts_before``) and runs it as its next attempt; this writes each test's retries to the
run dir for that decision.

A test that is not in the tier's flake history (``new-test-runs``, results/history.py) runs
that many times, every run logged as one attempt to pytest; once it has passed, a failure is
not retried: it is the flake the extra runs are there to catch, an error finding.

Registered for every tier run (the ``quarantine`` event is sent at session start); after
collection it unregisters itself where no test is to be retried, so a tier without retries
pays nothing per test.
"""

from __future__ import annotations

import datetime
import random
import re
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest
from _pytest.runner import runtestprotocol

from tiergate.errors import ConfigError, InputError
from tiergate.protocol import events as ev
from tiergate.protocol.findings import Finding, Location
from tiergate.protocol.runspec import write_retry_allowance
from tiergate.settings.config import find_pyproject
from tiergate.settings.quarantine import load_quarantine

if TYPE_CHECKING:
    from tiergate.plugin.tierrun import TierRun

MARKER = "tiergate_retries"
RERUN = "rerun"  # the outcome of a failed attempt that is run again, as pytest-rerunfailures


class Retries:
    def __init__(self, run: TierRun) -> None:
        self.run = run
        self.tier = run.tier
        self.allowed: dict[str, int] = {}  # node id -> retries, for tests that have some
        self.new_runs: dict[str, int] = {}  # node id -> runs, for tests new to the history
        self._patterns = [re.compile(p) for p in self.tier.retry_on]
        config = run.config
        config.addinivalue_line("markers", f"{MARKER}(n): run this test again up to n times "
                                "when it fails (tiergate; overrides the tier's `retries`)")
        self._rerunfailures = config.pluginmanager.hasplugin("rerunfailures")
        if not self._rerunfailures:
            config.addinivalue_line("markers", "flaky(reruns=n): run again up to n times when "
                                    "it fails (pytest-rerunfailures' marker, run by tiergate)")
        elif run.worker is None:
            print(f"tiergate: pytest-rerunfailures is installed; in tier {self.tier.name} "
                  "tiergate runs the retries (--reruns, @pytest.mark.flaky) and keeps every "
                  "attempt", file=sys.stderr)

    # -- the quarantine, said once per run -------------------------------------------------

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if self.run.worker is not None or self.run.spec.attempt > 1:
            return  # a resumed pytest: the first attempt said it
        try:
            entries = load_quarantine(find_pyproject(session.config.rootpath))
        except ConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
        if not entries:
            return
        today = datetime.date.today()
        self.run.events.emit(ev.QUARANTINE, entries=[e.to_json(today) for e in entries])
        for entry in entries:
            if entry.expired(today):
                owner = f", owner {entry.owner}" if entry.owner else ""
                issue = f", {entry.issue}" if entry.issue else ""
                self.run.emit_finding(Finding(
                    kind="quarantine-expired", test=None, severity="error",
                    message=f"the quarantine of {entry.test} ended on {entry.until} "
                            f"({entry.reason}{issue}{owner}): fix the test, or extend or "
                            "remove its [tool.tiergate.quarantine] entry",
                    location=Location("pyproject.toml", None)))

    # -- which tests are retried -----------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        default = self.tier.retries
        if not default and self._rerunfailures:
            default = int(getattr(config.option, "reruns", 0) or 0)
        # The `flaky` package (box/flaky) has a marker of the same name, flaky(max_runs=...):
        # where it is installed, the tests it marks are its own to run again.
        flaky_package = config.pluginmanager.hasplugin("flaky")
        for item in items:
            count = _marked_retries(item, default, flaky_package=flaky_package)
            if count > 0:
                self.allowed[item.nodeid] = count
        if self.tier.new_test_runs > 1:
            known = self._known_tests(config)
            if known:  # no history yet: nothing to tell a new test from an old one
                self.new_runs = {item.nodeid: self.tier.new_test_runs for item in items
                                 if item.nodeid not in known}
        if self.run.spec.attempts_before:  # killed by the supervisor: this run is its retry
            for nodeid in self.run.spec.attempts_before:
                self.new_runs.pop(nodeid, None)
        self._tell_supervisor()
        if not self.allowed and not self.new_runs:  # nothing to run again: no cost per test
            config.pluginmanager.unregister(self)

    # -- the attempts ----------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Any:
        allowed = self.allowed.get(item.nodeid, 0)
        runs = self.new_runs.get(item.nodeid, 1)
        if not allowed and runs <= 1:
            return None
        # After a hard timeout or a crash, the attempts pytest ran before it was killed.
        failed = [dict(a) for a in self.run.spec.attempts_before.get(item.nodeid, ())]
        passes = 0
        started = False
        while True:
            ihook = item.ihook
            if not started:  # once per logged attempt: a new test's passing runs are one
                ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
                started = True
            reports = runtestprotocol(item, nextitem=nextitem, log=False)
            failure = next((r for r in reports if r.failed), None)
            if failure is None:
                passes += 1
            if failure is None and passes < runs:
                # A new test's passing run before its last: not an attempt that failed, so
                # no event; the next run gets its own limit.
                self.run.end_attempt(item, reports)
                _forget_failed_setup(item)
                self.run.start_attempt(item)
                continue
            # Once a new test has passed, a failure is a flake caught: it is not retried.
            again = (failure is not None and not passes and len(failed) < allowed
                     and self._retried(failure, self.run.timer.fired))
            if again:
                failed.append(self._keep_attempt(item, reports, len(failed) + 1))
            for report in reports:
                if again and report.failed:
                    report.outcome = RERUN  # type: ignore[assignment]
                ihook.pytest_runtest_logreport(report=report)
            ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
            started = False
            if not again:
                break
            _forget_failed_setup(item)
            self._wait(len(failed))
            self.run.start_attempt(item)
        if failed and failure is None:
            self._flaky(item, failed)
        if failure is not None and passes:
            self._new_test_flaked(item, passes, runs)
        return True

    def pytest_report_teststatus(self, report: pytest.TestReport) -> Any:
        if report.outcome == RERUN:
            return RERUN, "R", ("RERUN", {"yellow": True})
        return None

    def _tell_supervisor(self) -> None:
        """The retries of each test, for the supervisor to retry one it has to kill (a hard
        timeout, a crash; supervisor/killretry.py): only where the tier retries those."""
        spec = self.run.spec
        if (spec.supervised and self.run.worker is None and not self.run.is_xdist_controller
                and {"timeout", "crash"} & set(self.tier.retry_kinds)):
            write_retry_allowance(spec.run_dir, self.allowed)

    def _retried(self, report: pytest.TestReport, timed_out: bool) -> bool:
        kind = "timeout" if timed_out else "failure" if report.when == "call" else "error"
        if kind not in self.tier.retry_kinds:
            return False
        if not self._patterns:
            return True
        text = report.longreprtext
        return any(p.search(text) for p in self._patterns)

    def _keep_attempt(self, item: pytest.Item, reports: list[pytest.TestReport],
                      number: int) -> dict[str, Any]:
        record = self.run.end_attempt(item, reports)
        record["attempt"] = number
        self.run.events.emit_fields(ev.TEST_ATTEMPT, record)
        return record

    def _wait(self, retry: int) -> None:
        """Exponential backoff with jitter: delay, 2x, 4x..., each up to half again longer, so
        tests failing on one shared service do not all come back to it at the same instant."""
        delay = self.tier.retry_delay
        if delay > 0:
            time.sleep(delay * 2 ** (retry - 1) * (1 + random.random() / 2))

    def _known_tests(self, config: pytest.Config) -> set[str]:
        """The node ids in the tier's flake history (none without a ``history``)."""
        if not self.tier.history:
            if self.run.worker is None:
                print(f"tiergate: tier {self.tier.name} sets new-test-runs but no history: "
                      "every test runs once (set history = \".tiergate-history\")",
                      file=sys.stderr)
            return set()
        from tiergate.results.history import load_history  # only for tiers that ask

        pyproject = find_pyproject(config.rootpath)
        folder = (pyproject.parent if pyproject else config.rootpath) / self.tier.history
        try:
            return set(load_history(folder).tests)
        except InputError as exc:
            raise pytest.UsageError(str(exc)) from None

    def _new_test_flaked(self, item: pytest.Item, passes: int, runs: int) -> None:
        path, lineno, _ = item.location
        self.run.emit_finding(Finding(
            kind="flaky", test=item.nodeid, severity="error",
            message=f"flaky new test: it passed {passes} time{'s' if passes > 1 else ''}, "
                    f"then failed on run {passes + 1} of {runs} (new-test-runs): fix it "
                    "before it lands",
            location=Location(path, lineno + 1 if lineno is not None else None)))

    def _flaky(self, item: pytest.Item, failed: list[dict[str, Any]]) -> None:
        policy = self.tier.flaky
        if policy == "pass":
            return
        path, lineno, _ = item.location
        story = ", ".join(f"attempt {a['attempt']} {_ended(a)}" for a in failed)
        self.run.emit_finding(Finding(
            kind="flaky", test=item.nodeid, severity="error" if policy == "fail" else "warning",
            message=f"flaky: {story}, attempt {len(failed) + 1} passed",
            location=Location(path, lineno + 1 if lineno is not None else None)))


def _ended(attempt: dict[str, Any]) -> str:
    outcome = {"error": "errored", "timeout": "timed out"}.get(attempt["outcome"], "failed")
    message = attempt.get("message")
    return f"{outcome} with {message}" if message else outcome


def _marked_retries(item: pytest.Item, default: int, *, flaky_package: bool = False) -> int:
    """The test's retries: ``tiergate_retries(n)``, else ``flaky(reruns=n)``, else *default*;
    none for a test the `flaky` package runs again (its ``flaky(max_runs=n)``)."""
    mark = item.get_closest_marker(MARKER)
    if mark is not None:
        return _count(mark.args[0] if mark.args else mark.kwargs.get("n", 1), default)
    mark = item.get_closest_marker("flaky")
    if mark is None:
        return default
    if flaky_package and "reruns" not in mark.kwargs:
        return 0  # box/flaky's own marker: its plugin runs the test again, not tiergate
    if "max_runs" in mark.kwargs:  # box/flaky's marker, without its plugin: the same count
        return _count(mark.kwargs["max_runs"] - 1 if isinstance(mark.kwargs["max_runs"], int)
                      else None, default)
    return _count(mark.kwargs.get("reruns", mark.args[0] if mark.args else 1), default)


def _count(value: object, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return default


def _forget_failed_setup(item: pytest.Item) -> None:
    """What pytest keeps of the failed attempt that would otherwise leak into the next, as
    pytest-rerunfailures clears it: fixtures whose setup raised (pytest caches the error and
    would raise it again), the item's place in the setup stack, and a test class's instance
    (a fresh one, as a test gets on its first attempt), and the output captured so far (each
    attempt's test-finish or test-attempt holds its own)."""
    item._report_sections.clear()
    info = getattr(item, "_fixtureinfo", None)
    for definitions in getattr(info, "name2fixturedefs", {}).values():
        for definition in definitions:
            cached = getattr(definition, "cached_result", None)
            if cached is not None and cached[2] is not None:
                definition.cached_result = None
                finalizers = getattr(definition, "_finalizers", None)
                if finalizers is not None:
                    finalizers.clear()
    stack = item.session._setupstate.stack
    if item in stack:
        del stack[item]
    if getattr(item, "_instance", None) is not None:
        del item._instance  # type: ignore[attr-defined]
        item._obj = None  # type: ignore[attr-defined]
