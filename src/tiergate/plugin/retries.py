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

With pytest-rerunfailures installed, tiergate's retries replace its reruns: under a tier the
plugin is unregistered before pytest configures it (``replace_rerunfailures``), so nothing runs
a test again behind tiergate's back and none of its machinery runs (under xdist, a socket
server and its thread; each failure's exception kept on its test); ``--reruns`` is read as
the tier's ``retries`` when the tier sets none; one line at the start says what is read.

A test the supervisor had to kill (a hard timeout, pytest dying in it) is retried by the
supervisor where the tier's ``retry-kinds`` has ``timeout`` or ``crash`` (supervisor/
killretry.py): the resumed pytest gets its attempts so far in the run spec
(``attempts_before``) and runs it as its next attempt; this writes each test's retries to the
run dir for that decision. Under xdist the controller hands a test whose worker died back to
a worker (plugin/crashretry.py), which reads its attempts so far from the run dir.

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
from tiergate.plugin.markers import ClosestMarker
from tiergate.protocol import events as ev
from tiergate.protocol.findings import Finding, Location
from tiergate.protocol.runspec import read_killed_attempts, write_retry_allowance
from tiergate.settings.config import find_pyproject
from tiergate.settings.quarantine import load_quarantine

if TYPE_CHECKING:
    from tiergate.plugin.tierrun import TierRun
    from tiergate.settings.config import Tier

MARKER = "tiergate_retries"
RERUN = "rerun"  # the outcome of a failed attempt that is run again, as pytest-rerunfailures
_KILL_KINDS = {"timeout", "crash"}  # retry-kinds a test that took its process with it may have
_REPLACED = pytest.StashKey[bool]()  # pytest-rerunfailures was installed and is replaced


def replace_rerunfailures(config: pytest.Config) -> None:
    """Unregister pytest-rerunfailures for this run (before its pytest_configure): its options
    stay parsed, for ``--reruns`` to be read as the tier's retries."""
    config.pluginmanager.unregister(name="rerunfailures")
    config.stash[_REPLACED] = True


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
        config.addinivalue_line("markers", "flaky(reruns=n): run again up to n times when "
                                "it fails (pytest-rerunfailures' marker, run by tiergate)")
        self._rerunfailures = config.stash.get(_REPLACED, False)
        # Said where pytest-rerunfailures would have acted: its options here, its marker on a
        # collected test below; not on every run of every project that merely has it installed.
        self._noted = not self._rerunfailures or run.worker is not None
        if not self._noted and _their_options_used(config):
            self._note(config)
        # Only xdist calls its hook, on the controller, when a worker dies.
        if run.is_xdist_controller and run.spec.supervised and self._kills_retried:
            from tiergate.plugin.crashretry import CrashRetries

            config.pluginmanager.register(CrashRetries(run), "tiergate-crash-retries")

    def _note(self, config: pytest.Config) -> None:
        self._noted = True
        print(_rerunfailures_note(config, self.tier), file=sys.stderr)

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
            default = _their_reruns(config)
        # The `flaky` package (box/flaky) has a marker of the same name, flaky(max_runs=...):
        # where it is installed, the tests it marks are its own to run again.
        flaky_package = config.pluginmanager.hasplugin("flaky")
        closest = ClosestMarker(MARKER), ClosestMarker("flaky")  # answers kept per parent
        for item in items:
            count = _marked_retries(item, default, flaky_package=flaky_package, closest=closest)
            if count > 0:
                self.allowed[item.nodeid] = count
        if not self._noted and any(closest[1](item) is not None for item in items):
            self._note(config)
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
        failed = self._attempts_before(item.nodeid)
        if failed:
            runs = 1  # killed once already: a retry, not one of a new test's extra runs
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
        timeout, a crash; supervisor/killretry.py), or under xdist for the controller to retry
        one whose worker died (plugin/crashretry.py): only where the tier retries those. Every
        worker collects the same tests, so each writes the same file (atomically)."""
        spec = self.run.spec
        if spec.supervised and not self.run.is_xdist_controller and self._kills_retried:
            write_retry_allowance(spec.run_dir, self.allowed)

    @property
    def _kills_retried(self) -> bool:
        return bool(_KILL_KINDS & set(self.tier.retry_kinds))

    def _attempts_before(self, nodeid: str) -> list[dict[str, Any]]:
        """The attempts of *nodeid* that ended with its pytest or its xdist worker killed: the
        resumed pytest is told them in its run spec; an xdist worker, which may be handed the
        test at any time, reads what the controller wrote when the worker before it died. A
        worker reads that file only in a tier that retries kills, once per retried test."""
        spec = self.run.spec
        before = spec.attempts_before.get(nodeid, ())
        if not before and self.run.worker is not None and spec.supervised \
                and self._kills_retried:
            before = read_killed_attempts(spec.run_dir, nodeid)
        return [dict(a) for a in before]

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


def _their_reruns(config: pytest.Config) -> int:
    """pytest-rerunfailures' run-wide count: ``--reruns``, else its ``reruns`` ini key."""
    value = getattr(config.option, "reruns", None)
    if value is None:
        try:
            value = int(config.getini("reruns") or 0)
        except (TypeError, ValueError):
            value = 0
    return _count(value, 0)


# pytest-rerunfailures' options tiergate does not read, and what to set instead.
_THEIR_OPTIONS = {
    "reruns_delay": ("--reruns-delay", "retry-delay"),
    "reruns_delay_backoff_factor": ("--reruns-delay-backoff-factor", "retry-delay"),
    "only_rerun": ("--only-rerun", "retry-on"),
    "rerun_except": ("--rerun-except", "retry-on"),
    "force_reruns": ("--force-reruns", "retries"),
    "rerun_exclude_path": ("--rerun-exclude-path", "@pytest.mark.tiergate_retries(0)"),
    "fail_on_flaky": ("--fail-on-flaky", 'flaky = "fail"'),
    "max_suite_reruns": ("--max-suite-reruns", "retries"),
}


def _their_options_set(config: pytest.Config) -> list[str]:
    """pytest-rerunfailures' options given that tiergate does not read, each with what to set."""
    return [f"{flag} (set {key})" for dest, (flag, key) in _THEIR_OPTIONS.items()
            if getattr(config.option, dest, None) not in (None, False, [], 0)]


def _their_options_used(config: pytest.Config) -> bool:
    return bool(_their_reruns(config)) or bool(_their_options_set(config))


def _rerunfailures_note(config: pytest.Config, tier: Tier) -> str:
    """The one line that says tiergate's retries replace pytest-rerunfailures' in this run."""
    if tier.retries:
        count = f"the tier's retries = {tier.retries}"
    elif _their_reruns(config):
        count = f"--reruns {_their_reruns(config)} as the tier's retries"
    else:
        count = "no retries for the tier"
    ignored = _their_options_set(config)
    return (f"tiergate: pytest-rerunfailures is installed; tiergate runs the retries instead "
            f"and keeps every attempt (tier {tier.name}: {count}; @pytest.mark.flaky(reruns=n) "
            f"per test)" + (f"; not read: {', '.join(ignored)}" if ignored else ""))


def _marked_retries(item: pytest.Item, default: int, *, flaky_package: bool = False,
                    closest: tuple[ClosestMarker, ClosestMarker] | None = None) -> int:
    """The test's retries: ``tiergate_retries(n)``, else ``flaky(reruns=n)``, else *default*;
    none for a test the `flaky` package runs again (its ``flaky(max_runs=n)``)."""
    # Not item.get_closest_marker: that walks every parent node for every test.
    ours, flaky = closest or (ClosestMarker(MARKER), ClosestMarker("flaky"))
    mark = ours(item)
    if mark is not None:
        return _count(mark.args[0] if mark.args else mark.kwargs.get("n", 1), default)
    mark = flaky(item)
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
