"""The supervisor's eye on resources: samples of pytest's tree into the event log, and the rung of
the ladder for a tree that outgrows its tier's limits (``tiergate.supervisor.pressure``).

One ``TreeWatch`` per pytest process. The supervisor calls ``poll()`` from its loop; the watch
decides when a sample is due (the tier's ``sample-interval``, or every poll near a limit), writes
``sample`` events at the steady interval, and acts on a verdict:

- warning: a process-tree dump is started in a background thread (sampling goes on meanwhile)
  and a ``resource-pressure`` warning finding with the dump follows when it is written;
- over: the dump (the warning's, when one was taken for this test: at 1 GB/s a fresh dump would
  cost hundreds of megabytes), and ``poll`` returns the decision (``OverLimit``): kill pytest,
  with this grace. The supervisor kills (it alone kills pytest), then hands the decision back to
  ``report``, which writes the ``resource-pressure`` event and the error finding naming the test
  in flight and the biggest process; the supervisor resumes with the tests left.

Memory is stopped without grace: waiting for a polite exit is time to allocate more.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from tiergate.diagnose.treedumps import SavedDump
from tiergate.protocol import events as ev
from tiergate.protocol.findings import Culprit, Finding, Location
from tiergate.settings.config import Tier
from tiergate.supervisor.pressure import EVENT, Gauge, Limits, Verdict, format_amount
from tiergate.supervisor.sampler import Sample, TreeSampler

OTHER_STOP_SECONDS = 2.0  # grace for a tree over max-processes / max-fds
DUMP_WAIT_SECONDS = 5.0


class InFlight(Protocol):
    nodeid: str
    pid: int
    path: str | None
    line: int | None


@dataclasses.dataclass(frozen=True)
class OverLimit:
    """The tree crossed a limit: pytest must be killed, SIGKILL after *grace* seconds."""

    nodeid: str | None  # the test in flight that is blamed (it will not run again)
    verdict: Verdict
    grace: float
    sample: Sample
    test: InFlight | None
    dump: SavedDump | concurrent.futures.Future[SavedDump]  # a warning's may still be running


@dataclasses.dataclass
class _Warning:
    verdict: Verdict
    sample: Sample
    test: InFlight | None
    dump: concurrent.futures.Future[SavedDump]


class TreeWatch:
    def __init__(
        self,
        *,
        root_pid: int,
        tier: Tier,
        attempt: int,
        emit: Callable[..., None],
        dump: Callable[[str | None, str, str, int | None], SavedDump],
        in_flight: Callable[[], Iterable[InFlight]],
        fast: float,
        limits: Limits | None = None,
        adopter: int | None = None,
    ) -> None:
        self.root_pid = root_pid
        self.attempt = attempt
        self.base = tier.sample_interval
        self.fast = min(fast, self.base)
        self.sampler = TreeSampler(root_pid, adopter=adopter)
        self.gauge = Gauge(limits if limits is not None else Limits.for_tier(tier))
        self._emit, self._dump, self._in_flight = emit, dump, in_flight
        self._next = 0.0  # monotonic time of the next sample
        self._next_event = 0.0  # ... and of the next sample event
        self._previous: Sample | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._warnings: list[_Warning] = []
        self._dumped: dict[str | None, concurrent.futures.Future[SavedDump]] = {}

    # -- the loop ----------------------------------------------------------------------------

    def poll(self) -> OverLimit | None:
        """A sample when one is due; the decision to kill pytest when the tree is over a limit."""
        self._report_warnings(wait=False)
        now = time.monotonic()
        if now < self._next:
            return None
        sample = self.sampler.sample()
        if sample.processes == 0:
            return None  # pytest is gone; the supervisor will notice
        tests = list(self._in_flight())
        blamed = self._blame(sample, tests)
        verdicts = self.gauge.check(sample, blamed.nodeid if blamed else None)
        if verdicts or now >= self._next_event:
            self._emit_sample(sample, tests, blamed)
            self._next_event = now + self.base
        self._next = now + self.gauge.interval(sample, self._previous, self.base, self.fast)
        self._previous = sample
        for verdict in verdicts:
            if verdict.level == "over":
                return self._over(verdict, sample, blamed)
        for verdict in verdicts:
            self._warn(verdict, sample, blamed)
        return None

    def close(self) -> None:
        """Write the warnings still waiting for their dump; stop the dump thread."""
        self._report_warnings(wait=True)
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    # -- verdicts ----------------------------------------------------------------------------

    def _warn(self, verdict: Verdict, sample: Sample, test: InFlight | None) -> None:
        nodeid = test.nodeid if test else None
        future = self._dumped.get(nodeid)
        if future is None:  # one dump per test: it shows where the test was growing
            reason = f"warning: {verdict.describe()}" + (f" while {nodeid} ran" if nodeid else "")
            future = self._dumps().submit(
                self._dump, nodeid, "pressure", reason, test.pid if test else None
            )
            self._dumped[nodeid] = future
        self._warnings.append(_Warning(verdict, sample, test, future))

    def _over(self, verdict: Verdict, sample: Sample, test: InFlight | None) -> OverLimit:
        nodeid = test.nodeid if test else None
        dump: SavedDump | concurrent.futures.Future[SavedDump] | None = self._dumped.get(nodeid)
        if dump is None:
            reason = verdict.describe() + (f" while {nodeid} ran" if nodeid else "")
            dump = self._dump(nodeid, "pressure", reason, test.pid if test else None)
            at_kill = self.sampler.sample()  # the dump took time: what the tree holds now
            if at_kill.processes:
                self._emit_sample(at_kill, [test] if test else [], test)
        grace = 0.0 if verdict.resource == "memory" else OTHER_STOP_SECONDS
        return OverLimit(nodeid, verdict, grace, sample, test, dump)

    def report(self, over: OverLimit) -> None:
        """After the supervisor killed pytest for *over*: the event and the error finding (a
        warning's dump is waited for only now, so it never delays the kill)."""
        saved = over.dump if isinstance(over.dump, SavedDump) else _result(over.dump)
        message = ("resource pressure: " + self._facts(over.verdict, over.sample)
                   + "; pytest was killed")
        self._emit(
            EVENT,
            nodeid=over.nodeid,
            resource=over.verdict.resource,
            value=over.verdict.value,
            limit=over.verdict.limit,
            dump=saved.path,
            message=message,
        )
        self._emit_finding(over.verdict, over.sample, over.test, saved, message)
        self._report_warnings(wait=True)

    def _report_warnings(self, *, wait: bool) -> None:
        for warning in list(self._warnings):
            if not (wait or warning.dump.done()):
                continue
            self._warnings.remove(warning)
            saved = _result(warning.dump)
            message = "resource pressure (warning): " + self._facts(
                warning.verdict, warning.sample
            )
            self._emit_finding(warning.verdict, warning.sample, warning.test, saved, message)

    # -- small things ------------------------------------------------------------------------

    def _dumps(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(1, "tiergate-pressure-dump")
        return self._pool

    def _blame(self, sample: Sample, tests: list[InFlight]) -> InFlight | None:
        """The test in flight in the biggest process (or its parent worker), else the first."""
        if not tests:
            return None
        by_pid = {t.pid: t for t in tests}
        started = sample.biggest.started_during if sample.biggest else None
        if started is not None:  # a daemon outside the tree: the test that started it, if running
            blamed = next((t for t in tests if t.nodeid == started.test), None)
            if blamed is not None:
                return blamed
        walk = sample.biggest.pid if sample.biggest else None
        while walk is not None:
            if walk in by_pid:
                return by_pid[walk]
            walk = sample.parent.get(walk)
        return tests[0]

    def _emit_sample(self, sample: Sample, tests: list[InFlight], blamed: InFlight | None) -> None:
        per_test = {
            t.nodeid: sample.subtree_rss(t.pid)  # a daemon outside the tree is nobody's peak
            for t in tests
        }
        self._emit(
            ev.SAMPLE,
            attempt=self.attempt,
            nodeid=blamed.nodeid if blamed else None,
            tests=per_test,
            **sample.to_event(),
        )

    def _facts(self, verdict: Verdict, sample: Sample) -> str:
        words = verdict.describe()
        big = sample.biggest
        if verdict.resource == "fds" and sample.most_fds:
            words += f"; process {sample.most_fds[0]} holds {sample.most_fds[1]}"
        if big is not None:
            words += (
                f"; biggest process {big.pid} ({big.cmdline}) holds "
                f"{format_amount('memory', big.rss)}{big.origin()}"
            )
        return words + f"; {sample.processes} processes"

    def _emit_finding(
        self,
        verdict: Verdict,
        sample: Sample,
        test: InFlight | None,
        saved: SavedDump,
        message: str,
    ) -> None:
        culprit: Culprit | None = saved.culprit
        finding = Finding(
            kind="resource-pressure",
            test=test.nodeid if test else None,
            severity="error" if verdict.level == "over" else "warning",
            message=message,
            location=Location(test.path, test.line) if test and test.path else None,
            culprit=culprit,
            dump=saved.path,
            details=_details(verdict, sample),
        )
        self._emit(ev.FINDING, finding=finding.to_json())


def _details(verdict: Verdict, sample: Sample) -> dict[str, Any]:
    return {
        "resource": verdict.resource,
        "limit-key": verdict.key,
        "value": verdict.value,
        "limit": verdict.limit,
        "rss": sample.rss,
        "processes": sample.processes,
        "fds": sample.fds,
        "biggest": sample.biggest.to_json() if sample.biggest else None,
    }


def _result(future: concurrent.futures.Future[SavedDump]) -> SavedDump:
    try:
        return future.result(timeout=DUMP_WAIT_SECONDS)
    except Exception as exc:  # a dump that fails or lags must not hold up the report
        return SavedDump(None, None, f"{type(exc).__name__}: {exc}")
