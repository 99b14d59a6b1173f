"""The results model: what a run amounts to, rebuilt from the event stream (or from JUnit files of
other runners). Every report reads this model; nothing here writes files or talks to GitHub."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import repeat
from operator import attrgetter, is_not
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, get_args

from tiergate.protocol import events as ev
from tiergate.protocol import records as rec
from tiergate.protocol.findings import FINDINGS_FILE, LEAK_KINDS, SCHEMA, Finding, write_findings
from tiergate.protocol.records import OUTCOMES as OUTCOMES
from tiergate.protocol.records import Outcome
from tiergate.settings.quarantine import entry_for

if TYPE_CHECKING:
    from tiergate.results.history import FlakeHistory

FAILING_OUTCOMES: frozenset[Outcome] = frozenset({"failed", "timeout", "error"})
# Fields read across every test by the reports: through attrgetter, the scan runs in C, and a
# field that is empty for nearly every test (attempts, quarantine) is passed over there.
_OUTCOME = attrgetter("outcome")
_DURATION = attrgetter("duration")
_ATTEMPTS = attrgetter("attempts")
_QUARANTINE = attrgetter("quarantine")
# What a whole run amounts to. Only "passed" is green by itself; "no-tests" is green only where
# the tier allows it (allow-no-tests): a marker typo that selects nothing must not look like a pass.
RunOutcome = Literal["passed", "failed", "no-tests", "cancelled"]
RUN_OUTCOMES: tuple[RunOutcome, ...] = get_args(RunOutcome)
# A test whose process died under it: the messages the model and the plugin give it start so.
# The one place the word is read back is TestResult.crashed; JUnit carries it as a type.
CRASH_PREFIX = "crash"
# The message of a test the log shows started and never finished, with no word from anyone.
ORPHANED_PREFIX = f"{CRASH_PREFIX}: the run ended while this test was running"


# Attempt and Moment are named tuples, not dataclasses: the end of every run imports this
# module, and a dataclass costs about a millisecond to create.
class Attempt(NamedTuple):
    """One failed attempt of a test that was run again (a ``test-attempt`` event)."""

    number: int  # 1 for the first run
    outcome: Outcome
    duration: float = 0.0
    phase: str | None = None
    message: str | None = None
    longrepr: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    dump: str | None = None


@dataclasses.dataclass
class TestResult:
    """One test of the run as the reports show it: its last attempt's outcome and output, where
    it ran, and the attempts before.

    Every dataclass here has a docstring: one without pays ``inspect.signature`` to get a
    generated one when its module is imported, and pytest imports this one on every run."""

    __test__ = False  # not a pytest test class

    nodeid: str
    path: str | None = None
    line: int | None = None
    outcome: Outcome = "passed"
    duration: float = 0.0
    phase: str | None = None  # where it failed: setup, call or teardown
    message: str | None = None  # one line: why it failed or was skipped
    longrepr: str | None = None  # the full failure text
    stdout: str | None = None
    stderr: str | None = None
    pid: int | None = None
    worker: str | None = None
    dump: str | None = None  # results-dir-relative path of the hang dump
    peak_rss: int | None = None  # bytes: the test's own process, or its tree from samples
    reproduces: str | None = None  # the bug id of a @pytest.mark.reproduces test
    # The attempts before the last (plugin/retries.py), each failed; the fields above are the
    # last attempt's. A test that passed after some is flaky.
    attempts: Sequence[Attempt] = ()
    quarantine: Mapping[str, Any] | None = None  # its [tool.tiergate.quarantine] entry

    @property
    def failing(self) -> bool:
        """Does it fail the tier: a failing outcome, and not quarantined."""
        return self.outcome in FAILING_OUTCOMES and self.quarantine is None

    @property
    def flaky(self) -> bool:
        return bool(self.attempts) and self.outcome == "passed"

    @property
    def crashed(self) -> bool:
        """Did its process die under it (a worker, pytest), rather than the test fail?"""
        return self.outcome in ("failed", "error") and (self.message or "").startswith(
            CRASH_PREFIX)


class Moment(NamedTuple):
    """An instant of the run's timeline (report/trace.py): a dump, a kill, a stop."""

    kind: str  # the event's kind: slow, hard-timeout, budget-expired, pytest-exit, ...
    t: float  # wall clock
    pid: int | None
    nodeid: str | None  # the test it concerns, where one does
    dump: str | None
    what: str  # one line for a person


@dataclasses.dataclass
class RunResult:
    """The whole run, built from its event log (``Builder``): every report reads this."""

    tier: str | None = None
    tests: dict[str, TestResult] = dataclasses.field(default_factory=dict)
    not_run: list[str] = dataclasses.field(default_factory=list)
    findings: list[Finding] = dataclasses.field(default_factory=list)
    samples: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    slow_notes: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    leak_checks: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # repeats run
    moments: list[Moment] = dataclasses.field(default_factory=list)  # dumps, kills, stops
    # nodeid -> (began, ended), wall clock, for the timeline: began from its test-start (under
    # the supervisor only), ended when it finished or was ended
    times: dict[str, tuple[float | None, float]] = dataclasses.field(default_factory=dict)
    started: float | None = None
    finished: float | None = None
    attempts: int = 0
    budget_expired: bool = False
    cancelled: str | None = None  # the signal's name
    stopped_early: str | None = None  # why the tier stopped before its end (max-fail), counted
    shard: tuple[int, int] | None = None  # (K, N): this run was shard K of N
    selected: list[str] = dataclasses.field(default_factory=list)  # a shard's plan: all N's
    exit_code: int | None = None
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    sources: list[str] = dataclasses.field(default_factory=list)  # dirs / files it was read from
    # What reading the inputs skipped or cut, one line per input (report/inputs.py: limits).
    input_notes: list[str] = dataclasses.field(default_factory=list)
    # Events the model skipped: of a kind this version does not know (a newer writer's), and
    # missing a field their kind requires or holding a value it cannot use (a damaged log).
    unknown_events: int = 0
    malformed_events: int = 0
    quarantine: list[Mapping[str, Any]] = dataclasses.field(default_factory=list)  # entries
    # Tests run under their own @pytest.mark.network policy: nodeid -> that policy.
    network_policies: dict[str, str] = dataclasses.field(default_factory=dict)
    # The tier's flake history with this run counted (results/history.py), when the command
    # that reads the run attaches it from the project's own config (never from the results).
    history: FlakeHistory | None = None

    @property
    def flaky_tests(self) -> list[TestResult]:
        return [t for t in self.retried_tests if t.outcome == "passed"]

    @property
    def retried_tests(self) -> list[TestResult]:
        """The tests run more than once (flaky or failing every attempt), in run order."""
        return list(filter(_ATTEMPTS, self.tests.values()))

    @property
    def quarantined_tests(self) -> list[TestResult]:
        tests = self.tests.values()
        if not any(map(is_not, map(_QUARANTINE, tests), repeat(None))):
            return []
        return [t for t in tests if t.quarantine is not None]

    @property
    def failing_tests(self) -> list[TestResult]:
        """The tests that fail the tier (quarantined ones do not)."""
        tests = self.tests.values()
        if FAILING_OUTCOMES.isdisjoint(map(_OUTCOME, tests)):
            return []
        return [t for t in tests if t.failing]

    @property
    def duration(self) -> float:
        if self.started is None or self.finished is None:
            return sum(t.duration for t in self.tests.values())
        return max(0.0, self.finished - self.started)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        counts.update(Counter(map(_OUTCOME, self.tests.values())))  # counted in C
        counts["not_run"] = len(self.not_run)
        return counts

    @property
    def error_findings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def outcome(self) -> RunOutcome:
        """One of RUN_OUTCOMES: cancelled wins (the run did not finish), then failed (anything
        failed, was lost or did not run), then no-tests (nothing ran at all), else passed."""
        if self.cancelled:
            return "cancelled"
        # This scans every test, and the reports ask it several times: the outcomes are looked
        # at in C first, t.failing only where one fails (a quarantined test's does not count).
        tests = self.tests.values()
        failing = not FAILING_OUTCOMES.isdisjoint(map(_OUTCOME, tests)) and any(
            t.failing for t in tests)
        if failing or self.error_findings or self.not_run:
            return "failed"
        ran = any(t.phase != "collect" or t.outcome != "skipped" for t in self.tests.values())
        return "passed" if ran else "no-tests"  # modules skipped whole are no tests (pytest: 5)

    @property
    def ok(self) -> bool:
        """Is the verdict green: passed, or no tests in a tier that allows that."""
        outcome = self.outcome
        return outcome == "passed" or (outcome == "no-tests" and self.allow_no_tests)

    @property
    def allow_no_tests(self) -> bool:
        return self.settings.get("allow-no-tests") is True  # untrusted input: "false" is no yes

    def sorted_findings(self) -> list[Finding]:
        return sorted(self.findings, key=lambda f: f.rank)

    @property
    def leak_findings(self) -> list[Finding]:
        return [f for f in self.findings if f.kind in LEAK_KINDS]

    def slowest(self, n: int = 5) -> list[TestResult]:
        return sorted(self.tests.values(), key=_DURATION, reverse=True)[:n]

    def findings_document(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "tier": self.tier,
            "outcome": self.outcome,
            "counts": self.counts(),
            "findings": [f.to_json() for f in self.sorted_findings()],
        }

    def write_findings(self, results_dir: Path) -> Path:
        path = results_dir / FINDINGS_FILE
        write_findings(path, self.findings_document())
        return path


class Builder:
    """Folds events into a RunResult, one at a time: ``build`` feeds a whole log, the supervisor
    each event as it follows the run (so the model is ready when pytest ends); ``result`` once,
    at the end. Later events win: a hard timeout recorded by the supervisor overrides the
    anonymous crash report xdist gives for the worker it killed."""

    def __init__(self) -> None:
        self.run = RunResult()
        self.collected: dict[str, None] = {}
        self.in_flight: dict[str, rec.TestStart] = {}
        self.collecting: dict[str, rec.CollectStart] = {}  # module nodeid -> its collect-start
        self.hard_timeouts: dict[str, rec.HardTimeout] = {}
        self.peaks: dict[str, int] = {}  # nodeid -> highest tree RSS seen in samples
        self.max_fail: tuple[int, int] | None = None  # (failures, limit) when it stopped the run
        self.attempts: dict[str, list[Attempt]] = {}  # node id -> its failed attempts
        self.quarantine: list[Mapping[str, Any]] = []

    def feed(self, record: Mapping[str, Any]) -> None:
        """The one place an event is judged readable: a kind this version does not know, or a
        record without a field its kind requires (protocol/records.py) or with a value its
        handler cannot use, is skipped and counted; nothing here raises."""
        try:
            kind = record.get("event")
        except AttributeError:  # no JSON object at all
            kind = None
        if not isinstance(kind, str):
            self.run.malformed_events += 1
            return
        handler = _HANDLERS.get(kind)
        if handler is None:
            if kind not in ev.KINDS:
                self.run.unknown_events += 1
            return  # else a kind no report reads
        if not record.keys() >= rec.REQUIRED[kind]:  # (dict_keys compares in C)
            self.run.malformed_events += 1
            return
        # A trusted log is not checked field by field (results/inputs.py checks untrusted ones):
        # a value of the wrong type there is caught here. try costs nothing when none raises.
        try:
            handler(self, record)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError):
            self.run.malformed_events += 1

    def on_run_start(self, r: rec.RunStart) -> None:
        self.run.tier = r.get("tier")
        self.run.settings = dict(r.get("settings") or {})
        shard = r.get("shard")
        if isinstance(shard, list) and len(shard) == 2 and all(type(n) is int for n in shard):
            self.run.shard = (shard[0], shard[1])
        if self.run.started is None:
            self.run.started = r["t"]

    def on_attempt_start(self, r: rec.AttemptStart) -> None:
        self.run.attempts += 1

    def on_collected(self, r: rec.Collected) -> None:
        self.collecting.clear()
        for nodeid in r.get("tests", ()):
            self.collected[nodeid] = None
        if "selected" in r and not self.run.selected:
            self.run.selected = list(r["selected"])

    def on_collect_start(self, r: rec.CollectStart) -> None:
        self.collecting[r["nodeid"]] = r

    def on_collect_finish(self, r: rec.CollectFinish) -> None:
        self.collecting.pop(r["nodeid"], None)

    def on_test_start(self, r: rec.TestStart) -> None:
        self.in_flight[r["nodeid"]] = r
        if self.run.started is None:
            self.run.started = r["t"]

    def on_test_finish(self, r: rec.TestFinish) -> None:
        get: Callable[..., Any] = r.get  # (the fields and their types: rec.TestFinish)
        nodeid = r["nodeid"]
        self._finished(nodeid, r["t"], TestResult(  # positional: once per test, in field order
            nodeid, get("path"), get("line"), get("outcome", "failed"),
            float(get("duration") or 0.0), get("phase"), get("message"), get("longrepr"),
            get("stdout"), get("stderr"), get("pid"), get("worker"), get("dump"),
            get("peak_rss"), get("reproduces"),
        ))

    def quiet_pass(self, t: float, pid: int, nodeid: str, path: str, line: int | None,
                   duration: float, peak_rss: int | None) -> None:
        """What feeding the ``test-finish`` of a test that passed with no output does, from the
        values its writer formats into the line (``EventWriter.follow``): a plain run's every
        green test, without a record built or its fields looked up."""
        self._finished(nodeid, t, TestResult(nodeid, path, line, "passed", duration, None, None,
                                             None, None, None, pid, None, None, peak_rss, None))

    def _finished(self, nodeid: str, t: float, result: TestResult) -> None:
        # Each table is looked in only when it holds something: a plain run's log has no starts,
        # and nearly no run has a hard timeout, so its every test skips all three.
        began = None
        if self.in_flight:
            start = self.in_flight.pop(nodeid, None)
            began = start.get("t") if start is not None else None
        if self.collecting:
            self.collecting.pop(nodeid, None)
        hard = self.hard_timeouts.get(nodeid) if self.hard_timeouts else None
        if hard is not None:  # xdist reports the killed worker's test as a crash; it was a hang
            result.outcome = "timeout"
            result.message = hard.get("message") or result.message
            result.dump = hard.get("dump") or result.dump
            killed = self.run.tests.get(nodeid)  # where it ran: the worker, not the controller
            if killed is not None:
                result.pid, result.worker = killed.pid, killed.worker
                began = self.run.times.get(nodeid, (None, 0.0))[0]
        self.run.times[nodeid] = (began, t)
        self.run.tests[nodeid] = result
        self.run.finished = max(self.run.finished or 0.0, t)

    def on_test_attempt(self, r: rec.TestAttempt) -> None:
        # A hard-timeout attempt the supervisor retried: the next test-finish is the retry's.
        self.hard_timeouts.pop(r["nodeid"], None)
        get: Callable[..., Any] = r.get
        self.attempts.setdefault(r["nodeid"], []).append(Attempt(
            int(get("attempt") or len(self.attempts.get(r["nodeid"], ())) + 1),
            get("outcome", "failed"), float(get("duration") or 0.0), get("phase"),
            get("message"), get("longrepr"), get("stdout"), get("stderr"), get("dump")))

    def on_quarantine(self, r: rec.QuarantineEvent) -> None:
        self.quarantine = [e for e in r.get("entries") or () if isinstance(e, Mapping)]

    def on_network_policy(self, r: rec.NetworkPolicy) -> None:
        self.run.network_policies[r["nodeid"]] = str(r.get("policy") or "?")

    def on_hard_timeout(self, r: rec.HardTimeout) -> None:
        self.hard_timeouts[r["nodeid"]] = r
        self._moment(r, "hard timeout: the test's process was killed", r["nodeid"])
        start = self.in_flight.pop(r["nodeid"], None)
        self._close_in_flight(r["nodeid"], start, "timeout", r.get("message"), r["t"],
                              r.get("dump"))

    def on_slow(self, r: rec.Slow) -> None:
        self.run.slow_notes.append(dict(r))
        self._moment(r, "slow: dumped at half its limit", r["nodeid"])

    def on_leak_check(self, r: rec.LeakCheck) -> None:
        self.run.leak_checks.append(dict(r))
        # Written when the repeats end, after the test's own finish: run time too.
        self.run.finished = max(self.run.finished or 0.0, r["t"])

    def on_finding(self, r: rec.FindingEvent) -> None:
        self.run.findings.append(Finding.from_json(r["finding"]))

    def on_sample(self, r: rec.Sample) -> None:
        self.run.samples.append(dict(r))
        for nodeid, rss in (r.get("tests") or {}).items():  # peak tree RSS per test
            self.peaks[nodeid] = max(self.peaks.get(nodeid, 0), int(rss))

    def on_resource_pressure(self, r: rec.ResourcePressure) -> None:
        # The supervisor killed pytest for the tree outgrowing a limit, blaming this test.
        nodeid = r.get("nodeid")
        self._moment(r, f"resource pressure: {r.get('resource')} over its limit, pytest killed",
                     nodeid)
        if nodeid:
            start = self.in_flight.pop(nodeid, None)
            self._close_in_flight(nodeid, start, "failed", r.get("message"), r["t"],
                                  r.get("dump"))

    def on_budget_expired(self, r: rec.BudgetExpired) -> None:
        self.run.budget_expired = True
        self._moment(r, "the tier's budget ran out: pytest stopped", r.get("nodeid"))
        self._abandon_in_flight(
            "timeout", "timeout: the tier's budget ran out while this test was running",
            r["t"], r.get("dump"))

    def on_cancelled(self, r: rec.Cancelled) -> None:
        self.run.cancelled = r.get("signal")
        self._moment(r, f"cancelled by {r.get('signal')}", r.get("nodeid"))
        self._abandon_in_flight(
            "failed", f"cancelled: the run was stopped by {r.get('signal')} in this test",
            r["t"], r.get("dump"))

    def on_max_fail(self, r: rec.MaxFail) -> None:
        # The tests in flight were stopped, not crashed: they did not run (their collected ids
        # land in not_run), and no pytest-exit after this may call them crashes.
        self.in_flight.clear()
        self.max_fail = (int(r["failures"]), int(r["limit"]))
        self._moment(r, f"max-fail {r['limit']} reached: the tier stops")

    def on_pytest_exit(self, r: rec.PytestExit) -> None:
        # Whatever was still in flight when pytest went away crashed with it.
        signal = r.get("signal")
        how = f"({signal})" if signal else f"(exit code {r.get('returncode')})"
        self._moment(r, f"pytest exited {how}")
        self._abandon_in_flight(
            "failed", f"{CRASH_PREFIX}: the process running this test died {how}", r["t"], None)
        self.collecting.clear()  # the supervisor has said what it was collecting

    def on_exit_hang(self, r: rec.ExitHang) -> None:
        self._moment(r, "pytest did not exit after its tests: killed")

    def on_collect_timeout(self, r: rec.CollectTimeout) -> None:
        self._moment(r, f"collecting {r.get('path') or r['nodeid']} timed out", r["nodeid"])

    def _moment(self, r: Mapping[str, Any], what: str, nodeid: str | None = None) -> None:
        self.run.moments.append(Moment(str(r["event"]), float(r["t"]), r.get("pid"), nodeid,
                                       r.get("dump"), what))

    def on_run_finish(self, r: rec.RunFinish) -> None:
        self.run.finished = r["t"]
        self.run.exit_code = r.get("exit_code")

    def _abandon_in_flight(self, outcome: Outcome, message: str, t: float,
                           dump: str | None) -> None:
        for nodeid, start in list(self.in_flight.items()):
            self._close_in_flight(nodeid, start, outcome, message, t, dump)
        self.in_flight.clear()

    def _close_in_flight(
        self,
        nodeid: str,
        start: rec.TestStart | None,
        outcome: Outcome,
        message: str | None,
        t: float,
        dump: str | None,
    ) -> None:
        """The result of a test that started and never finished: it ended at *t*, as *outcome*
        with *message* (and the dump of its end, where there is one)."""
        began = start.get("t") if start else None
        self.run.tests[nodeid] = TestResult(
            nodeid=nodeid,
            path=start.get("path") if start else None,
            line=start.get("line") if start else None,
            outcome=outcome,
            duration=max(0.0, t - began) if began else 0.0,
            phase="call",
            message=message,
            longrepr=message,
            pid=start.get("pid") if start else None,
            worker=start.get("worker") if start else None,
            dump=dump,
        )
        self.run.times[nodeid] = (began, t)

    def result(self) -> RunResult:
        """The run, once every event is in (it closes what the log left open)."""
        run = self.run
        # The log ends with a test (or a module) started and never finished, and no word from
        # a supervisor: the run died with it (its supervisor SIGKILLed, the machine gone).
        end = run.finished or 0.0
        for nodeid, start in list(self.in_flight.items()):
            end = max(end, start.get("t") or 0.0)
            self._close_in_flight(nodeid, start, "failed", ORPHANED_PREFIX
                                  + " (pytest and its supervisor died)", end, None)
        for nodeid, module in self.collecting.items():
            message = (f"{CRASH_PREFIX}: the run ended while collecting this module (pytest and "
                       "its supervisor died)")
            run.tests[nodeid] = TestResult(nodeid=nodeid, path=module.get("path"),
                                           outcome="error", phase="collect", message=message,
                                           longrepr=message)
        for nodeid, peak in self.peaks.items():
            test = run.tests.get(nodeid)
            if test is not None and peak > (test.peak_rss or 0):
                test.peak_rss = peak
        if self.collected.keys() - run.tests.keys():  # (in C: nearly always empty)
            run.not_run = [n for n in self.collected if n not in run.tests]
        self._attach_attempts_and_quarantine()
        if self.max_fail is not None:
            run.stopped_early = stopped_after(*self.max_fail, len(run.not_run))
        # xdist also reports the worker the supervisor killed for a hang, as a crash: it was a hang.
        run.findings = group_repeats([
            f for f in run.findings if not (f.kind == "crash" and f.test in self.hard_timeouts)
        ])
        return run

    def _attach_attempts_and_quarantine(self) -> None:
        tests = self.run.tests
        for nodeid, attempts in self.attempts.items():
            if nodeid in tests:
                tests[nodeid].attempts = sorted(attempts, key=lambda a: a.number)
        # A timeout or crash retried and then passed is a flaky test's (its `flaky` finding says
        # so), and a quarantined test's findings are reported as warnings: neither fails the tier.
        flaky = {nodeid for nodeid in self.attempts if nodeid in tests and tests[nodeid].flaky}
        held: set[str] = set()
        if self.quarantine:
            self.run.quarantine = self.quarantine
            for nodeid, test in tests.items():
                test.quarantine = entry_for(nodeid, self.quarantine)
                if test.quarantine is not None:
                    held.add(nodeid)
        if held or flaky:
            self.run.findings = [
                dataclasses.replace(f, severity="warning")
                if f.severity == "error" and (f.test in held
                                              or (f.test in flaky
                                                  and f.kind in ("timeout", "crash")))
                else f for f in self.run.findings]


# The reader of each event kind (grep a kind's constant to find it). A kind of ev.KINDS that is
# not here is one no report reads; one not in ev.KINDS is counted (a newer writer's).
_HANDLERS: dict[str, Callable[[Builder, Any], None]] = {
    ev.RUN_START: Builder.on_run_start,
    ev.ATTEMPT_START: Builder.on_attempt_start,
    ev.COLLECTED: Builder.on_collected,
    ev.COLLECT_START: Builder.on_collect_start,
    ev.COLLECT_FINISH: Builder.on_collect_finish,
    ev.TEST_START: Builder.on_test_start,
    ev.TEST_FINISH: Builder.on_test_finish,
    ev.TEST_ATTEMPT: Builder.on_test_attempt,
    ev.QUARANTINE: Builder.on_quarantine,
    ev.NETWORK_POLICY: Builder.on_network_policy,
    ev.HARD_TIMEOUT: Builder.on_hard_timeout,
    ev.SLOW: Builder.on_slow,
    ev.LEAK_CHECK: Builder.on_leak_check,
    ev.FINDING: Builder.on_finding,
    ev.SAMPLE: Builder.on_sample,
    ev.RESOURCE_PRESSURE: Builder.on_resource_pressure,
    ev.BUDGET_EXPIRED: Builder.on_budget_expired,
    ev.CANCELLED: Builder.on_cancelled,
    ev.PYTEST_EXIT: Builder.on_pytest_exit,
    ev.MAX_FAIL: Builder.on_max_fail,
    ev.EXIT_HANG: Builder.on_exit_hang,
    ev.COLLECT_TIMEOUT: Builder.on_collect_timeout,
    ev.RUN_FINISH: Builder.on_run_finish,
}


def stopped_after(failures: int, limit: int, not_run: int) -> str:
    """The verdict's words for a tier max-fail stopped: ``stopped after 1 failure (max-fail 1);
    8 tests not run``."""
    plural = "" if failures == 1 else "s"
    tests = "test" if not_run == 1 else "tests"
    return (f"stopped after {failures} failure{plural} (max-fail {limit}); "
            f"{not_run} {tests} not run")


def build(records: Iterable[Mapping[str, Any]]) -> RunResult:
    builder = Builder()
    for record in records:
        builder.feed(record)
    return builder.result()


def load_results_dir(results_dir: Path) -> RunResult:
    path = results_dir / ev.EVENTS_FILE
    run = build(ev.read_events(path))
    run.sources.append(str(results_dir))
    return run


def merge(runs: Iterable[RunResult]) -> RunResult:
    """Shards of one tier (or results of several runners) as one run."""
    merged = RunResult()
    for run in runs:
        merged.tier = merged.tier or run.tier
        merged.settings = merged.settings or run.settings
        for nodeid, test in run.tests.items():
            merged.tests[nodeid] = test
        merged.not_run.extend(n for n in run.not_run if n not in merged.tests)
        merged.findings.extend(run.findings)
        merged.samples.extend(run.samples)
        merged.slow_notes.extend(run.slow_notes)
        merged.leak_checks.extend(run.leak_checks)
        merged.moments.extend(run.moments)
        merged.times.update(run.times)
        merged.sources.extend(run.sources)
        merged.attempts += run.attempts
        merged.budget_expired |= run.budget_expired
        merged.unknown_events += run.unknown_events
        merged.malformed_events += run.malformed_events
        merged.cancelled = merged.cancelled or run.cancelled
        merged.stopped_early = merged.stopped_early or run.stopped_early
        merged.quarantine = merged.quarantine or run.quarantine  # one project, one list
        if run.started is not None:
            merged.started = min(merged.started or run.started, run.started)
        if run.finished is not None:
            merged.finished = max(merged.finished or run.finished, run.finished)
    merged.not_run = [n for n in dict.fromkeys(merged.not_run) if n not in merged.tests]
    merged.findings = group_repeats(merged.findings)
    return merged


SHOWN_TESTS = 3  # test ids a grouped finding's message names
KEPT_TESTS = 50  # test ids its details keep


def group_repeats(findings: list[Finding]) -> list[Finding]:
    """One finding per root cause: the writer names it in ``details.group`` (a resource warning
    given again by every test that uses one leaky fixture). Kept where the first one was, blamed
    on its test, with every test it hit counted. The events keep each one as it happened."""
    groups: dict[tuple[str, str, str], list[Finding]] = {}
    out: list[Finding | tuple[str, str, str]] = []
    for finding in findings:
        group = finding.details.get("group") if finding.details else None
        if not isinstance(group, str):
            out.append(finding)
            continue
        key = (finding.kind, finding.severity, group)
        if key not in groups:
            groups[key] = []
            out.append(key)
        groups[key].append(finding)
    return [_joined(groups[item]) if isinstance(item, tuple) else item for item in out]


def _joined(members: list[Finding]) -> Finding:
    first = members[0]
    if len(members) == 1:
        return first
    details = dict(first.details)
    alone = str(details.get("alone", first.message))  # its message before tests were counted
    tests: dict[str, None] = {}
    uncounted = 0  # tests a grouped member (a shard's) counted but no longer names
    for member in members:
        named = _tests_of(member)
        tests.update(dict.fromkeys(named))
        uncounted += max(0, int(member.details.get("count") or 0) - len(named))
    count = len(tests) + uncounted
    ids = list(tests)
    details.update(alone=alone, tests=ids[:KEPT_TESTS], count=count)
    if count <= 1:  # the same test, more than once
        return dataclasses.replace(first, message=f"{alone} ({len(members)} times)",
                                   details=details)
    shown = ", ".join(ids[:SHOWN_TESTS])
    more = f" and {count - SHOWN_TESTS} more" if count > SHOWN_TESTS else ""
    return dataclasses.replace(first, message=f"{alone}; in {count} tests: {shown}{more}",
                               details=details)


def _tests_of(finding: Finding) -> list[str]:
    tests = finding.details.get("tests") if finding.details else None
    if isinstance(tests, list):
        return [str(test) for test in tests]
    return [finding.test] if finding.test else []

