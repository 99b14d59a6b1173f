"""``TierRun``: the tiergate plugin while a tier runs, one per pytest process (controller or
xdist worker). It selects the tier's tests, owns the soft timeout, opens and closes the leak
watch's test windows, and writes the event stream. With xdist, each worker writes the events of
the tests it runs, and the controller writes what only it sees (what was collected, workers that
crashed). Registered by ``tiergate.plugin`` only when a tier is asked for: this module and what
it imports are never loaded by a plain ``pytest`` run.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tiergate.errors import UsageError
from tiergate.plugin.highwater import maxrss
from tiergate.plugin.markers import ClosestMarker
from tiergate.plugin.pertest import PerTest
from tiergate.plugin.reproduce import Reproductions
from tiergate.plugin.selection import TierSelection, longest_first
from tiergate.plugin.softtimeout import (
    SoftTimer,
    TestTimeout,
    fixture_in_flight,
    protocol_phase,
)
from tiergate.protocol import debuglog, environ, layout, redact
from tiergate.protocol import events as ev
from tiergate.protocol.findings import Finding, Location, event_log_lost
from tiergate.protocol.runspec import RunSpec
from tiergate.settings.config import TIER_MARKERS, Tier

if TYPE_CHECKING:
    from tiergate.protocol.findings import Culprit
    from tiergate.results.files import ResultsDirClaim
    from tiergate.results.model import Builder, RunResult

_TEXT_LIMIT = 64 * 1024  # per captured stream / failure text in an event
logger = debuglog.logger("plugin")  # --debug: decisions only, never a call per test


def _worker_id(config: pytest.Config) -> str | None:
    workerinput = getattr(config, "workerinput", None)
    return str(workerinput["workerid"]) if workerinput else None


class TierRun(PerTest):
    """The active plugin for one pytest process (controller or xdist worker). It hosts the
    per-test pipeline (its hooks come from ``PerTest``: one plugin to register, not two, which
    is a fixed cost of every run) and is the pipeline's first step."""

    def __init__(self, config: pytest.Config, spec: RunSpec) -> None:
        super().__init__()
        self.config = config
        self.spec = spec
        self.tier: Tier = spec.tier
        self.worker = _worker_id(config)
        self.is_xdist_controller = self.worker is None and _uses_xdist(config)
        self._claim: ResultsDirClaim | None = None
        if not spec.supervised and self.worker is None:
            # Only a plain `pytest --tier` run owns its results dir: under `tiergate run` the
            # supervisor claims it and writes the files, so pytest never imports results/files.py.
            from tiergate.results.files import claim_results_dir

            try:
                self._claim = claim_results_dir(spec.results_dir, config.rootpath)
            except UsageError as exc:
                raise pytest.UsageError(str(exc)) from None
        debuglog.start(spec.results_dir)  # after the claim (it clears the dir); before capture
        # Under the supervisor, which follows the events to see hangs and crashes, each one is
        # written at once; a plain `pytest --tier` run reads them only at its end.
        self.events = ev.EventWriter(spec.events_file, worker=self.worker, live=spec.supervised)
        # A plain run's end builds its report from the records as they are written, where the
        # file holds nothing else (EventWriter.whole), instead of parsing its own lines back.
        self._followed: Builder | None = None
        if not spec.supervised and self.worker is None and not self.is_xdist_controller:
            from tiergate.results.model import Builder

            builder = Builder()
            if self.events.follow(builder.feed, builder.quiet_pass):
                self._followed = builder
        self.timer = SoftTimer(self._on_soft_timeout, lambda: self._debugger(active=True))
        self._debugged: str | None = None  # the last test said to be in a debugger
        self._timeout_marker = ClosestMarker("timeout")
        self._high_water = maxrss()  # this process's peak RSS at the end of the last test
        self._item: pytest.Item | None = None
        self._dump: str | None = None
        self._collected_sent = False
        self._shard_plan: list[str] | None = None  # with --shard: the tests before the split
        self._history: dict[str, float] | None = None  # --durations-from, once read
        self._modules_collecting: set[str] = set()
        # Every part that acts around each test is a step of the one per-test pipeline: this
        # run's timer and events; the leak watch and the reproductions add theirs.
        self.per_test: PerTest = self
        self.add(self)
        self._select(config)
        if self.worker is None:  # xdist's scheduler (if any) must not undo slowest-first
            from tiergate.plugin.order import keep_slowest_first

            keep_slowest_first(config, spec)
        # @pytest.mark.reproduces (findings only where the tests run; empty elsewhere)
        config.pluginmanager.register(
            Reproductions(config, self.emit_finding, self.per_test), "tiergate-reproduce")
        self._child_environment()
        if not self.is_xdist_controller:
            self._guard(config)

    def _child_environment(self) -> None:
        """What every child process inherits: the start-up hook, the events file, the guard's
        policy. The xdist controller sets the first two for its workers, not the policy: a worker
        guards itself when it configures, by patching the socket layer, and hands the policy to
        its own children then; guarded from its start-up it would carry an audit hook, a call on
        every audited event of every test."""
        if not self.spec.supervised:
            from tiergate.child import boot_env

            os.environ.update(boot_env(self.spec.run_dir, os.environ))
        os.environ[environ.EVENTS] = str(self.events.path)
        if self.tier.network != "any" and not self.is_xdist_controller:
            from tiergate.plugin.netguard import guard_env

            os.environ.update(guard_env(self.tier.network, self.tier.name))

    def _guard(self, config: pytest.Config) -> None:
        """Leak probes and the network guard, in the processes that run tests (not the xdist
        controller, which runs none and talks to its workers)."""
        if self.tier.network != "any":
            from tiergate.plugin.netguard import core, install_guard

            install_guard(self.tier.network, tier_name=self.tier.name, emit=self.emit_finding)
            self._repatch = core().repatch  # at each test: a plugin may have put sockets back
        from tiergate.plugin.netmarker import NetworkMarkers  # @pytest.mark.network

        config.pluginmanager.register(
            NetworkMarkers(config, self.tier, self.emit_finding, self.events.emit))
        if self.tier.leaks != "off":
            from tiergate.plugin.leaks import LeakWatch

            leaks = LeakWatch(tier=self.tier, emit=self.emit_finding,
                              record=self._record_leak_check)
            config.pluginmanager.register(leaks, "tiergate-leaks")
            self.per_test.add(leaks, first=True)  # its window wraps the timer and the event

    def _record_leak_check(self, fields: dict[str, Any]) -> None:
        logger.info("leak watch: %s left %s; run again %d time(s): %s", fields["nodeid"],
                    "; ".join(fields["suspected"]) or "memory", fields["repeats"], fields["kinds"])
        self.events.emit_fields(ev.LEAK_CHECK, fields)

    def emit_finding(self, finding: Finding) -> None:
        logger.info("finding %s: %s (%s)", finding.kind, finding.message, finding.test)
        finding = project_relative(finding, self.config.rootpath)
        self.events.emit(ev.FINDING, finding=finding.to_json())

    # -- selection -------------------------------------------------------------------------

    def _select(self, config: pytest.Config) -> None:
        for name, help_text in TIER_MARKERS.items():
            config.addinivalue_line("markers", f"{name}: {help_text}")
        # The tier's markers and paths, on top of whatever -m and -k the user gave pytest.
        self.selection = TierSelection(self.tier.markers, self.tier.paths, config.rootpath)
        # The tier's limit unless --timeout was given; @pytest.mark.timeout still wins per test.
        given = getattr(config.option, "timeout", None)
        self.default_limit = float(given) if given is not None else self.tier.test_timeout

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        keep = items
        if self.selection.narrows:
            keep = [i for i in keep if self.selection(i)]
        if self.spec.only is not None:
            # The supervisor knows the ids from the log, where a secret in an id is masked
            # (test_x[***]): an item is wanted under its own id or under the one the log shows.
            wanted, as_logged = set(self.spec.only), redact.current().text
            keep = [i for i in keep if i.nodeid in wanted or as_logged(i.nodeid) in wanted]
        if self.spec.shard is not None:
            keep = self._shard(keep)
        if self.tier.order == "slowest-first" and self.spec.durations_from:
            keep = longest_first(keep, self._durations())
        logger.info("selected %d of %d tests (markers %r, resume %s, shard %s)", len(keep),
                    len(items), self.tier.markers, self.spec.only is not None, self.spec.shard)
        if len(keep) != len(items):
            dropped = [i for i in items if i not in set(keep)]
            config.hook.pytest_deselected(items=dropped)
        if keep != items:  # fewer, or in another order
            items[:] = keep

    def _shard(self, items: list[pytest.Item]) -> list[pytest.Item]:
        from tiergate import shard

        assert self.spec.shard is not None
        k, n = self.spec.shard
        durations = self._durations()
        self._shard_plan = [i.nodeid for i in items]
        chosen = set(shard.select_shard(self._shard_plan, k, n, durations))
        return [i for i in items if i.nodeid in chosen]

    def _durations(self) -> dict[str, float]:
        """The history, read once for the split and the order."""
        if self._history is None:
            from tiergate.shard import load_durations

            self._history = load_durations([Path(p) for p in self.spec.durations_from])
        return self._history

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if self.worker is None and not self.is_xdist_controller:
            self._send_collected([i.nodeid for i in session.items])
        elif self.worker == "gw0" and self._shard_plan is not None:
            # Under xdist only the workers split, so one of them tells the plan.
            self.events.emit(ev.COLLECTED, selected=self._shard_plan)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self._send_collected(list(ids))

    def _send_collected(self, ids: list[str]) -> None:
        if not self._collected_sent:
            self._collected_sent = True
            # A shard's plan, once per process at collection: the merge's "in no shard" check.
            plan = {} if self._shard_plan is None else {"selected": self._shard_plan}
            self.events.emit(ev.COLLECTED, tests=ids, **plan)

    # -- the session -----------------------------------------------------------------------

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if not self.spec.supervised and self.worker is None:
            self.events.emit(
                ev.RUN_START, tier=self.tier.name, settings=self.tier.describe(), supervised=False
            )
        self.events.emit(ev.SESSION_START, attempt=self.spec.attempt)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        _stand_pytest_timeout_down(self.config)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        blocking = _blocking_threads(self.config.rootpath) if self.events.live else None
        self.events.emit(ev.SESSION_FINISH, exitstatus=int(exitstatus), blocking=blocking)
        # An xdist worker says it is done after this hook; the controller then reads the file.
        self.events.flush()

    _verdict_line: str | None = None  # why a plain `pytest --tier` run fails though pytest passed

    @pytest.hookimpl(wrapper=True, trylast=True, specname="pytest_sessionfinish")
    def pytest_sessionfinish_verdict(self, session: pytest.Session) -> Any:
        """Without the supervisor, pytest's exit status is the run's verdict, and it says what
        ``tiergate run`` would: where pytest says 0 but the run fails (error findings: leaks,
        blocked connections; or tests that did not run) it becomes 1, with one line saying why;
        where pytest found no tests in a tier that allows none, 0. A wrapper, so every plugin's
        session end (and ours, which flushes the batched events) is in the log when it is read,
        and the terminal summary comes after."""
        result = yield
        if self.spec.supervised or self.worker is not None:
            return result
        # The result files now, from the one model the verdict also reads: every test's events
        # are in the log, and building the model twice was a cost per test.
        run = self._write_result_files()
        if run.ok and run.quarantined_tests and session.exitstatus == 1:
            session.exitstatus = pytest.ExitCode.OK  # only quarantined tests failed
        if session.exitstatus not in (0, 5) or self.config.option.collectonly:
            return result
        if session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
            if run.outcome == "no-tests" and run.ok:  # the tier's allow-no-tests
                session.exitstatus = pytest.ExitCode.OK
            return result

        def count(n: int, noun: str) -> str:
            return f"{n} {noun}{'' if n == 1 else 's'}"

        why = []
        if run.error_findings:
            kinds = dict.fromkeys(f.kind for f in run.sorted_findings() if f.severity == "error")
            why.append(f"{count(len(run.error_findings), 'error finding')} ({', '.join(kinds)})")
        if failing := len(run.failing_tests):
            why.append(f"{count(failing, 'test')} failed")
        if run.not_run:
            why.append(f"{count(len(run.not_run), 'test')} did not run")
        if run.ok or not why:  # green, or nothing to name (pytest's word stands)
            return result
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        summary = self.spec.results_dir.absolute() / layout.SUMMARY_FILE
        try:
            summary = summary.relative_to(Path.cwd())
        except ValueError:  # not under the working directory: the whole path
            pass
        self._verdict_line = f"tiergate: {'; '.join(why)}; see {summary}"
        if self.config.pluginmanager.get_plugin("terminalreporter") is None:
            import sys

            print(self._verdict_line, file=sys.stderr)
        return result

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self._verdict_line is not None:
            terminalreporter.write_line(self._verdict_line, red=True, bold=True)

    _run: RunResult | None = None  # the model the result files were written from

    def _write_result_files(self) -> RunResult:
        """A plain ``pytest --tier`` run's end: junit.xml, findings.json, summary.md, once."""
        if self._run is None:
            from tiergate.results.files import write_result_files

            self.events.flush()
            lost = self.events.lost()  # by a test or a fixture: the report must say so
            if lost is not None:
                self.emit_finding(event_log_lost(lost))
            self.events.emit(ev.RUN_FINISH, exit_code=None)
            self.events.flush()
            if lost in ("deleted", "replaced"):
                self.events.restore()  # this writer still holds the run's file
            run = None
            if self._followed is not None and self.events.whole():  # (never after a loss)
                run = self._followed.result()
                run.sources.append(str(self.spec.results_dir))  # as reading the dir says
            logger.info("the report: %s", "from the records as written" if run is not None
                        else "read back from events.jsonl")
            self._run = write_result_files(self.spec.results_dir, run, timeline=False)
        return self._run

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.timer.close()
        if not self.spec.supervised and self.worker is None:
            self._write_result_files()  # a session that never finished (usage error, crash)
        self.events.close()
        debuglog.stop()
        if self._claim is not None:
            self._claim.release()

    # -- one test --------------------------------------------------------------------------

    # The soft timer is tiergate's own, armed around the whole test protocol (setup + call +
    # teardown). pytest-timeout stays installed for its options and its marker, and is kept from
    # arming timers of its own: when --timeout, its ini value or a marker makes it act, these
    # two hooks answer for it. Leaving it inert otherwise is what keeps a trivial test cheap.

    @pytest.hookimpl(tryfirst=True, optionalhook=True)
    def pytest_timeout_set_timer(self, item: pytest.Item, settings: Any) -> bool:
        return True  # armed (or not, for timeout(0)) in pytest_runtest_protocol below

    @pytest.hookimpl(tryfirst=True, optionalhook=True)
    def pytest_timeout_cancel_timer(self, item: pytest.Item) -> bool:
        self.timer.disarm()  # also what pytest-timeout asks when pytest enters the debugger
        return True

    # A debugger in use (breakpoint(), --pdb, an IDE's): the user's pause is no hang. Both rungs
    # stand down for the test in it: the soft timer here, the hard one in the supervisor, which
    # learns it from the `debugger` event. Leaving the debugger gives the test its limit again.

    def pytest_enter_pdb(self, config: pytest.Config, pdb: Any) -> None:
        self.timer.disarm()
        self._debugger(active=True)

    def pytest_leave_pdb(self, config: pytest.Config, pdb: Any) -> None:
        item = self._item
        if item is not None:
            self._debugger(active=False)
            limit = self.limit_of(item)
            if limit is not None:
                self.timer.start(limit)

    def _debugger(self, active: bool) -> None:
        item = self._item
        if item is None:
            return
        self.events.emit(ev.DEBUGGER, nodeid=item.nodeid, active=active)
        if active and self._debugged != item.nodeid:  # said once per test, however often
            self._debugged = item.nodeid
            print(f"tiergate: timeouts suspended while the debugger is active for {item.nodeid}",
                  file=sys.stderr, flush=True)

    def limit_of(self, item: pytest.Item) -> float | None:
        """The test's soft limit: its closest ``@pytest.mark.timeout``, else --timeout, else the
        tier's. None for a marker of 0 (no limit), as pytest-timeout has it."""
        mark = self._timeout_marker(item)
        limit = self.default_limit if mark is None else _marker_seconds(mark, self.default_limit)
        return limit if limit else None

    # The per-test pipeline's step of this run (plugin/pertest.py). This runs for every test:
    # one or two events and one getrusage call, no file or environment access (see
    # scripts/bench_instructions.py).

    _repatch: Callable[[], bool] | None = None  # the guard's, where it patched the sockets

    def begin(self, item: pytest.Item) -> tuple[str, int | None, float | None]:
        self._item, self._dump = item, None
        if self._repatch is not None:
            self._repatch()
        path, line = _location(item)
        limit = self.limit_of(item)
        if self.events.live:  # only a follower (the supervisor) needs to know what is running
            self.events.emit(
                ev.TEST_START, nodeid=item.nodeid, path=path, line=line, timeout=limit
            )
        if limit is not None:
            self.timer.start(limit)
        return path, line, limit

    def end(self, item: pytest.Item, nextitem: pytest.Item | None,
            state: tuple[str, int | None, float | None],
            reports: list[pytest.TestReport]) -> None:
        path, line, limit = state
        timed_out = self.timer.cancel()
        peak = None
        high = maxrss()
        if high > self._high_water:  # a new peak of this process's; the supervisor adds
            peak = self._high_water = high  # the whole tree's from samples
        duration = None
        if not timed_out and self._dump is None and not self.per_test.extra:
            duration = _quiet_pass(reports)
        if duration is not None:  # nearly every test: one line, no record to build
            self.events.emit_passed(item.nodeid, path, line, duration, limit, peak)
        else:
            self._finish(item, path, line, limit, reports, timed_out, peak)
        self._item = None

    def _finish(self, item: pytest.Item, path: str, line: int | None, limit: float | None,
                reports: list[pytest.TestReport], timed_out: bool, peak: int | None) -> None:
        finish = _summarise(item.nodeid, path, line, reports, timed_out)
        finish["timeout"] = limit
        if self._dump is not None:
            finish["dump"] = self._dump
        if peak is not None:
            finish["peak_rss"] = peak
        finish.update(self.per_test.extra)  # what other steps add (a reproduction's bug)
        self.events.emit_fields(ev.TEST_FINISH, finish)

    # plugin/retries.py runs a failed test again inside the wrapper above: each attempt gets
    # its own limit and test-start, and the test-finish is the last attempt's alone.

    def end_attempt(self, item: pytest.Item, reports: list[pytest.TestReport]) -> dict[str, Any]:
        """The record of *item*'s attempt that just failed (timer stopped, dump taken)."""
        path, line = _location(item)
        record = _summarise(item.nodeid, path, line, reports, self.timer.cancel())
        if self._dump is not None:
            record["dump"] = self._dump
        return record

    def start_attempt(self, item: pytest.Item) -> None:
        if self.per_test.reports is not None:  # the failed attempt's are in its own event
            self.per_test.reports.clear()
        self._dump = None
        path, line = _location(item)
        limit = self.limit_of(item)
        if self.events.live:
            self.events.emit(ev.TEST_START, nodeid=item.nodeid, path=path, line=line,
                             timeout=limit)
        if limit is not None:
            self.timer.start(limit)

    # -- collection: watched like a test (a module whose import hangs is named) ---------------

    def pytest_collectstart(self, collector: pytest.Collector) -> None:
        if self.events.live and isinstance(collector, pytest.File):
            self._modules_collecting.add(collector.nodeid)
            path = _relative_path(collector.path, self.config.rootpath)
            self.events.emit(ev.COLLECT_START, nodeid=collector.nodeid, path=path,
                             timeout=self.tier.collect_timeout or None)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.nodeid in self._modules_collecting:
            self._modules_collecting.discard(report.nodeid)
            self.events.emit(ev.COLLECT_FINISH, nodeid=report.nodeid)
        if report.failed and not self.is_xdist_controller:
            self.events.emit(
                ev.TEST_FINISH,
                nodeid=report.nodeid,
                path=report.fspath,
                line=None,
                outcome="error",
                duration=0.0,
                phase="collect",
                message=_first_line(report.longreprtext) or "collection failed",
                longrepr=report.longreprtext[-_TEXT_LIMIT:],
            )
        elif report.skipped and not self.is_xdist_controller:
            # A module skipped as it was collected (pytest.importorskip, pytest.skip with
            # allow_module_level): pytest counts it as a skip and its JUnit lists it.
            path, line, reason = None, None, "skipped"
            if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
                path, line, reason = report.longrepr
                reason = str(reason).removeprefix("Skipped: ")
            same_file = path is not None and Path(path) == self.config.rootpath / report.fspath
            self.events.emit(
                ev.TEST_FINISH,
                nodeid=report.nodeid,
                path=report.fspath,
                line=line if same_file else None,  # where it skipped, when in the module itself
                outcome="skipped",
                duration=0.0,
                phase="collect",
                message=reason,
            )

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched: Any) -> None:
        # xdist: a worker died while running *crashitem*. If the supervisor killed it for a hang it
        # has already said so (hard-timeout event); otherwise this is a crash.
        if str(report.outcome) == "rerun":  # handed back for a retry: plugin/crashretry.py
            return
        self.events.emit(
            ev.TEST_FINISH,
            nodeid=crashitem,
            path=report.location[0],
            line=None,
            outcome="failed",
            duration=float(report.duration or 0.0),
            phase="call",
            message=f"crash: {_first_line(report.longreprtext)}",
            longrepr=report.longreprtext[-_TEXT_LIMIT:],
        )
        self.events.emit(
            ev.FINDING,
            finding=Finding(
                kind="crash",
                test=crashitem,
                severity="error",
                message="the xdist worker running this test died: "
                + _first_line(report.longreprtext),
                location=Location(report.location[0], None),
            ).to_json(),
        )

    # -- the soft timeout ------------------------------------------------------------------

    def _on_soft_timeout(self, limit: float) -> str:
        # Runs in the SIGALRM handler, in the test's own thread: dump first, then fail the test.
        # The dump and culprit code is imported here, when a limit is hit, not by every run; the
        # import lock is reentrant, so a test stuck inside an import does not block this one.
        from tiergate.diagnose.treedumps import dump_name, dump_tree

        item = self._item
        nodeid = item.nodeid if item else "?"
        saved = dump_tree(
            os.getpid(),
            results_dir=self.spec.results_dir,
            run_dir=self.spec.run_dir,
            project_root=self.config.rootpath,
            name=dump_name("timeout", nodeid, self.spec.attempt),
            reason=f"{nodeid} ran past its {limit:g}s limit",
        )
        self._dump = saved.path
        culprit = saved.culprit
        if culprit is not None and not culprit.reason and self.events.live:
            culprit = _reason_seen_at_half(self.events.path, nodeid, culprit)
        path, line = _location(item) if item else (None, None)
        in_protocol = self._where_in_protocol(item.name) if item else ""
        if culprit:
            reason = f", {culprit.reason}" if culprit.reason else ""
            where = (f"{';' if in_protocol else ','} stuck in {culprit.function} "
                     f"({culprit.path}:{culprit.line}){reason}")
        else:
            where = f" (no dump: {saved.problem})" if saved.problem else ""
        message = f"timeout: ran past its {limit:g}s limit{in_protocol}{where}"
        finding = Finding(
            kind="timeout",
            test=nodeid,
            severity="error",
            message=message,
            location=Location(path, line) if path else None,
            culprit=culprit,
            dump=saved.path,
        )
        self.events.emit(ev.FINDING, finding=finding.to_json())
        return message

    def _where_in_protocol(self, test: str) -> str:
        """`` in the teardown of fixture `db` (conftest.py:3), used by test_x``, or `` in
        setup``: where pytest was when the limit hit, unless in the test function itself."""
        frame = sys._getframe(1)
        fixture = fixture_in_flight(
            frame, lambda path: _relative_path(Path(path), self.config.rootpath))
        if fixture is not None:
            from tiergate.diagnose.culprit import fixture_words

            return f" {fixture_words(fixture, test)}"
        phase = protocol_phase(frame)
        return f" in {phase}" if phase in ("setup", "teardown") else ""


def _reason_seen_at_half(log: Path, nodeid: str, culprit: Culprit) -> Culprit:
    """The reason the supervisor's dump at half the limit gave for the same frame: from
    outside it sees what the test's own thread cannot see of itself in the handler (busy in C,
    holding the GIL). Read from the end of the log, once, when a limit is hit."""
    import json

    try:
        with open(log, "rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - _SLOW_NOTE_WINDOW))
            tail = file.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return culprit
    for text in reversed(tail):
        if f'"{ev.SLOW}"' not in text or nodeid not in text:
            continue
        try:
            seen = json.loads(text).get("culprit") or {}
        except ValueError:
            continue
        same = (seen.get("function"), seen.get("line")) == (culprit.function, culprit.line)
        if same and seen.get("reason"):
            return dataclasses.replace(culprit, reason=f"{seen['reason']} (seen at half the limit)")
        break
    return culprit


_SLOW_NOTE_WINDOW = 256 * 1024  # bytes of the log's end read for the test's `slow` note


def _marker_seconds(mark: pytest.Mark, default: float) -> float:
    """``@pytest.mark.timeout(5)`` / ``timeout=5``; a value pytest-timeout would reject keeps
    the default here (pytest-timeout reports it as the error it is)."""
    value = mark.args[0] if mark.args else mark.kwargs.get("timeout")
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def project_relative(finding: Finding, root: Path) -> Finding:
    """Paths in findings are relative to the project, as pytest's node ids are, so reports and
    annotations can place them; a path outside the project (a library) stays absolute."""

    def relative(path: str) -> str:
        try:
            return Path(path).relative_to(root).as_posix() if Path(path).is_absolute() else path
        except ValueError:
            return path

    changes: dict[str, Any] = {}
    if finding.location is not None:
        changes["location"] = dataclasses.replace(
            finding.location, path=relative(finding.location.path)
        )
    if finding.culprit is not None:
        changes["culprit"] = dataclasses.replace(
            finding.culprit, path=relative(finding.culprit.path)
        )
    return dataclasses.replace(finding, **changes) if changes else finding


def _relative_path(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _blocking_threads(root: Path) -> list[dict[str, Any]] | None:
    """The non-daemon threads alive as the session ends: the interpreter waits for each of them
    before it exits, so if pytest then does not exit these are why. Each with where it is now
    (its innermost frame in the project, else its innermost) and its kernel thread id (``tid``),
    by which the supervisor's exit watch tells a thread still working from one that waits.
    Daemon threads are left out: they never keep Python from exiting. None when there are none."""
    import sys
    import threading

    main = threading.main_thread()
    alive = [t for t in threading.enumerate() if t is not main and not t.daemon and t.is_alive()]
    if not alive:
        return None
    frames = sys._current_frames()
    inside = str(root)
    out = []
    for thread in alive:
        where = None
        frame = frames.get(thread.ident or -1)
        innermost = frame
        while frame is not None:
            if frame.f_code.co_filename.startswith(inside):
                break
            frame = frame.f_back
        frame = frame or innermost
        if frame is not None:
            where = {"path": _relative_path(Path(frame.f_code.co_filename), root),
                     "line": frame.f_lineno, "function": frame.f_code.co_name}
        out.append({"name": thread.name, "where": where, "tid": thread.native_id})
    return out


def _stand_pytest_timeout_down(config: pytest.Config) -> None:
    """pytest-timeout, when the tests start: it has parsed its options, registered its marker
    and said its header, and its timers are tiergate's (pytest_timeout_set_timer above), so
    its two hook wrappers around every test (each reading the test's markers) would only cost.
    It stays where a ``--session-timeout`` (or its ini key) needs its check after each test."""
    plugin = config.pluginmanager.get_plugin("timeout")
    if plugin is None:
        return
    session_key = getattr(plugin, "SESSION_TIMEOUT_KEY", None)
    if session_key is None or config.stash.get(session_key, 0):
        return  # a pytest-timeout that has no such key, or a session timeout to keep
    config.pluginmanager.unregister(plugin)
    logger.info("pytest-timeout's per-test hooks stood down: tiergate times the tests")


def _uses_xdist(config: pytest.Config) -> bool:
    """Does this pytest hand its tests to xdist workers? Asked as xdist decides it (its
    ``_is_distribution_mode``, after its pytest_cmdline_main turned ``-n`` into ``--tx``):
    xdist registers its controller only in its own pytest_configure, after this plugin's."""
    option = config.option
    return (getattr(option, "dist", "no") != "no" and bool(getattr(option, "tx", None))
            and not getattr(option, "collectonly", False))


def _location(item: pytest.Item) -> tuple[str, int | None]:
    path, lineno, _ = item.location
    return path, (lineno + 1 if lineno is not None else None)


def _first_line(text: str) -> str:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("E "):
            return line[2:].strip()
    return text.strip().splitlines()[-1].strip() if text.strip() else ""


def _quiet_pass(reports: list[pytest.TestReport]) -> float | None:
    """The duration of a test whose every phase passed and that printed nothing; None otherwise
    (the full record: failures, skips, xfail, captured output)."""
    duration = 0.0
    for report in reports:
        if report.outcome != "passed" or "wasxfail" in report.__dict__:
            return None
        duration += report.duration
    if not reports or (reports[-1].sections
                       and (reports[-1].capstdout or reports[-1].capstderr)):
        return None
    return round(duration, 6)


def _summarise(
    nodeid: str, path: str, line: int | None, reports: list[pytest.TestReport], timed_out: bool
) -> dict[str, Any]:
    """One test's outcome from its setup/call/teardown reports, as pytest's JUnit would judge it
    (a quiet pass takes ``_quiet_pass`` instead). *timed_out*: the soft timeout fired during this
    test, so its failure is a timeout."""
    outcome, phase, message, longrepr = "passed", None, None, None
    duration = 0.0
    for report in reports:
        duration += report.duration
        if report.failed:
            if timed_out:
                outcome = "timeout"
            elif report.when == "call":
                outcome = "failed"
            elif outcome == "passed":
                outcome = "error"
            phase = phase or report.when
            longrepr = (longrepr + "\n\n" if longrepr else "") + report.longreprtext
            message = message or _failure_message(report)
        elif report.skipped:
            if hasattr(report, "wasxfail"):
                outcome, message = "xfailed", report.wasxfail or "expected failure"
            else:
                outcome = "skipped"
                message = _skip_reason(report)
        elif report.when == "call" and hasattr(report, "wasxfail"):
            outcome = "xpassed"
    record: dict[str, Any] = {
        "nodeid": nodeid,
        "path": path,
        "line": line,
        "outcome": outcome,
        "duration": round(duration, 6),
    }
    if phase:
        record["phase"] = phase
    if message:
        record["message"] = message
    if longrepr:
        record["longrepr"] = longrepr[-_TEXT_LIMIT:]
    _add_output(record, reports)
    return record


def _add_output(record: dict[str, Any], reports: list[pytest.TestReport]) -> None:
    last = reports[-1] if reports else None
    if last is not None and last.sections:  # captured output, only when there is some
        if last.capstdout:
            record["stdout"] = last.capstdout[-_TEXT_LIMIT:]
        if last.capstderr:
            record["stderr"] = last.capstderr[-_TEXT_LIMIT:]


def _failure_message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        message = str(crash.message).splitlines()[0]
        # pytest.fail-style exceptions carry their class name; our timeout's message says it all
        return message.removeprefix(f"{TestTimeout.__module__}.{TestTimeout.__qualname__}: ")[:500]
    return _first_line(report.longreprtext)[:500]


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return "skipped"
