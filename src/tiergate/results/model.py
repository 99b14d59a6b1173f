"""The results model: what a run amounts to, rebuilt from the event stream (or from JUnit files of
other runners). Every report reads this model; nothing here writes files or talks to GitHub."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from tiergate.protocol import events as ev
from tiergate.protocol.findings import FINDINGS_FILE, LEAK_KINDS, SCHEMA, Finding, write_findings

OUTCOMES = ("passed", "failed", "skipped", "xfailed", "xpassed", "timeout", "error")
FAILING_OUTCOMES = frozenset({"failed", "timeout", "error"})
# What a whole run amounts to. Only "passed" is green by itself; "no-tests" is green only where
# the tier allows it (allow-no-tests): a marker typo that selects nothing must not look like a pass.
RUN_OUTCOMES = ("passed", "failed", "no-tests", "cancelled")
# The message of a test the log shows started and never finished, with no word from anyone.
ORPHANED_PREFIX = "crash: the run ended while this test was running"


@dataclasses.dataclass
class TestResult:
    __test__ = False  # not a pytest test class

    nodeid: str
    path: str | None = None
    line: int | None = None
    outcome: str = "passed"
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

    @property
    def failing(self) -> bool:
        return self.outcome in FAILING_OUTCOMES


@dataclasses.dataclass
class RunResult:
    tier: str | None = None
    tests: dict[str, TestResult] = dataclasses.field(default_factory=dict)
    not_run: list[str] = dataclasses.field(default_factory=list)
    findings: list[Finding] = dataclasses.field(default_factory=list)
    samples: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    slow_notes: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    leak_checks: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # repeats run
    started: float | None = None
    finished: float | None = None
    attempts: int = 0
    budget_expired: bool = False
    cancelled: str | None = None  # the signal's name
    exit_code: int | None = None
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    sources: list[str] = dataclasses.field(default_factory=list)  # dirs / files it was read from
    # What reading the inputs skipped or cut, one line per input (report/inputs.py: limits).
    input_notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def duration(self) -> float:
        if self.started is None or self.finished is None:
            return sum(t.duration for t in self.tests.values())
        return max(0.0, self.finished - self.started)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(OUTCOMES, 0)
        for test in self.tests.values():
            counts[test.outcome] = counts.get(test.outcome, 0) + 1
        counts["not_run"] = len(self.not_run)
        return counts

    @property
    def error_findings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def outcome(self) -> str:
        """One of RUN_OUTCOMES: cancelled wins (the run did not finish), then failed (anything
        failed, was lost or did not run), then no-tests (nothing ran at all), else passed."""
        if self.cancelled:
            return "cancelled"
        failing = any(t.failing for t in self.tests.values())
        if failing or self.error_findings or self.not_run:
            return "failed"
        ran = any(t.phase != "collect" or t.outcome != "skipped" for t in self.tests.values())
        return "passed" if ran else "no-tests"  # modules skipped whole are no tests (pytest: 5)

    @property
    def ok(self) -> bool:
        """Is the verdict green: passed, or no tests in a tier that allows that."""
        return self.outcome == "passed" or (self.outcome == "no-tests" and self.allow_no_tests)

    @property
    def allow_no_tests(self) -> bool:
        return self.settings.get("allow-no-tests") is True  # untrusted input: "false" is no yes

    def sorted_findings(self) -> list[Finding]:
        return sorted(self.findings, key=lambda f: f.rank)

    @property
    def leak_findings(self) -> list[Finding]:
        return [f for f in self.findings if f.kind in LEAK_KINDS]

    def slowest(self, n: int = 5) -> list[TestResult]:
        return sorted(self.tests.values(), key=lambda t: t.duration, reverse=True)[:n]

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


class _Builder:
    """Folds events into a RunResult. Later events win: a hard timeout recorded by the supervisor
    overrides the anonymous crash report xdist gives for the worker it killed."""

    def __init__(self) -> None:
        self.run = RunResult()
        self.collected: dict[str, None] = {}
        self.in_flight: dict[str, dict[str, Any]] = {}
        self.collecting: dict[str, dict[str, Any]] = {}  # module nodeid -> its collect-start
        self.hard_timeouts: dict[str, dict[str, Any]] = {}
        self.peaks: dict[str, int] = {}  # nodeid -> highest tree RSS seen in samples
        self._handlers: dict[str, Callable[[Mapping[str, Any]], None]] = {}

    def feed(self, record: Mapping[str, Any]) -> None:
        # A malformed record (no "nodeid", "t" not a number, a list where a dict belongs) is
        # skipped: one damaged line must not cost the report. try costs nothing when none raises.
        try:
            kind = record["event"]
            handler = self._handlers.get(kind)
            if handler is None:
                handler = self._handlers[kind] = getattr(
                    self, "on_" + str(kind).replace("-", "_"), _ignore
                )
            handler(record)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError):
            return

    def on_run_start(self, r: Mapping[str, Any]) -> None:
        self.run.tier = r.get("tier")
        self.run.settings = dict(r.get("settings") or {})
        if self.run.started is None:
            self.run.started = r["t"]

    def on_attempt_start(self, r: Mapping[str, Any]) -> None:
        self.run.attempts += 1

    def on_collected(self, r: Mapping[str, Any]) -> None:
        self.collecting.clear()
        for nodeid in r.get("tests", ()):
            self.collected[nodeid] = None

    def on_collect_start(self, r: Mapping[str, Any]) -> None:
        self.collecting[r["nodeid"]] = dict(r)

    def on_collect_finish(self, r: Mapping[str, Any]) -> None:
        self.collecting.pop(r["nodeid"], None)

    def on_test_start(self, r: Mapping[str, Any]) -> None:
        self.in_flight[r["nodeid"]] = dict(r)
        if self.run.started is None:
            self.run.started = r["t"]

    def on_test_finish(self, r: Mapping[str, Any]) -> None:
        nodeid = r["nodeid"]
        self.in_flight.pop(nodeid, None)
        if self.collecting:
            self.collecting.pop(nodeid, None)
        hard = self.hard_timeouts.get(nodeid)
        get = r.get
        result = TestResult(  # positional: once per test, in the field order
            nodeid, get("path"), get("line"), get("outcome", "failed"),
            float(get("duration") or 0.0), get("phase"), get("message"), get("longrepr"),
            get("stdout"), get("stderr"), get("pid"), get("worker"), get("dump"),
            get("peak_rss"), get("reproduces"),
        )
        if hard is not None:  # xdist reports the killed worker's test as a crash; it was a hang
            result.outcome = "timeout"
            result.message = hard.get("message") or result.message
            result.dump = hard.get("dump") or result.dump
        self.run.tests[nodeid] = result
        self.run.finished = max(self.run.finished or 0.0, r["t"])

    def on_hard_timeout(self, r: Mapping[str, Any]) -> None:
        self.hard_timeouts[r["nodeid"]] = dict(r)
        start = self.in_flight.pop(r["nodeid"], None)
        self._close_in_flight(r["nodeid"], start, "timeout", r.get("message"), r)

    def on_slow(self, r: Mapping[str, Any]) -> None:
        self.run.slow_notes.append(dict(r))

    def on_leak_check(self, r: Mapping[str, Any]) -> None:
        self.run.leak_checks.append(dict(r))
        # Written when the repeats end, after the test's own finish: run time too (issue 15).
        self.run.finished = max(self.run.finished or 0.0, r["t"])

    def on_finding(self, r: Mapping[str, Any]) -> None:
        self.run.findings.append(Finding.from_json(r["finding"]))

    def on_sample(self, r: Mapping[str, Any]) -> None:
        self.run.samples.append(dict(r))
        for nodeid, rss in (r.get("tests") or {}).items():  # issue 8: peak tree RSS per test
            self.peaks[nodeid] = max(self.peaks.get(nodeid, 0), int(rss))

    def on_resource_pressure(self, r: Mapping[str, Any]) -> None:
        # The supervisor killed pytest for the tree outgrowing a limit, blaming this test.
        if r.get("nodeid"):
            start = self.in_flight.pop(r["nodeid"], None)
            self._close_in_flight(r["nodeid"], start, "failed", r.get("message"), r)

    def on_budget_expired(self, r: Mapping[str, Any]) -> None:
        self.run.budget_expired = True
        self._abandon_in_flight("job-timeout", r)

    def on_cancelled(self, r: Mapping[str, Any]) -> None:
        self.run.cancelled = r.get("signal")
        self._abandon_in_flight("cancelled", r)

    def on_pytest_exit(self, r: Mapping[str, Any]) -> None:
        # Whatever was still in flight when pytest went away crashed with it.
        self._abandon_in_flight("crash", r)
        self.collecting.clear()  # the supervisor has said what it was collecting

    def on_run_finish(self, r: Mapping[str, Any]) -> None:
        self.run.finished = r["t"]
        self.run.exit_code = r.get("exit_code")

    def _abandon_in_flight(self, why: str, r: Mapping[str, Any]) -> None:
        for nodeid, start in list(self.in_flight.items()):
            outcome = "timeout" if why == "job-timeout" else "failed"
            message = {
                "job-timeout": "timeout: the tier's budget ran out while this test was running",
                "cancelled": f"cancelled: the run was stopped by {r.get('signal')} in this test",
                "crash": "crash: the process running this test died "
                + (f"({r['signal']})" if r.get("signal") else f"(exit code {r.get('returncode')})"),
            }[why]
            self._close_in_flight(nodeid, start, outcome, message, r)
        self.in_flight.clear()

    def _close_in_flight(
        self,
        nodeid: str,
        start: Mapping[str, Any] | None,
        outcome: str,
        message: str | None,
        r: Mapping[str, Any],
    ) -> None:
        start = start or {}
        began = start.get("t")
        self.run.tests[nodeid] = TestResult(
            nodeid=nodeid,
            path=start.get("path"),
            line=start.get("line"),
            outcome=outcome,
            duration=max(0.0, r["t"] - began) if began else 0.0,
            phase="call",
            message=message,
            longrepr=r.get("longrepr") or message,
            pid=start.get("pid"),
            worker=start.get("worker"),
            dump=r.get("dump"),
        )

    def result(self) -> RunResult:
        run = self.run
        # The log ends with a test (or a module) started and never finished, and no word from
        # a supervisor: the run died with it (its supervisor SIGKILLed, the machine gone).
        end = {"t": run.finished or 0.0}
        for nodeid, start in list(self.in_flight.items()):
            end["t"] = max(end["t"], start.get("t") or 0.0)
            self._close_in_flight(nodeid, start, "failed", ORPHANED_PREFIX
                                  + " (pytest and its supervisor died)", end)
        for nodeid, start in self.collecting.items():
            message = ("crash: the run ended while collecting this module (pytest and its "
                       "supervisor died)")
            run.tests[nodeid] = TestResult(nodeid=nodeid, path=start.get("path"),
                                           outcome="error", phase="collect", message=message,
                                           longrepr=message)
        for nodeid, peak in self.peaks.items():
            test = run.tests.get(nodeid)
            if test is not None and peak > (test.peak_rss or 0):
                test.peak_rss = peak
        run.not_run = [n for n in self.collected if n not in run.tests]
        # xdist also reports the worker the supervisor killed for a hang, as a crash: it was a hang.
        run.findings = group_repeats([
            f for f in run.findings if not (f.kind == "crash" and f.test in self.hard_timeouts)
        ])
        return run


def _ignore(record: Mapping[str, Any]) -> None:
    pass  # an event kind no report needs (or one from a newer writer)


def build(records: Iterable[Mapping[str, Any]]) -> RunResult:
    builder = _Builder()
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
        merged.sources.extend(run.sources)
        merged.attempts += run.attempts
        merged.budget_expired |= run.budget_expired
        merged.cancelled = merged.cancelled or run.cancelled
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

