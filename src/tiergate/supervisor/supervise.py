"""``tiergate run``: the supervisor around pytest.

It starts pytest in its own process group, follows the event stream the plugin writes, and owns
the rungs of the escalation ladder that pytest itself cannot climb: the hard timeout of a test that
never returns (GIL held in C, signals blocked), the tier's budget, a cancel from CI, and pytest
dying outright. Whatever happens it ends pytest's whole tree, resumes with the tests left while the
budget allows, and writes the result files from the event log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from tiergate.child import boot_env, stacks_file
from tiergate.errors import ConfigError
from tiergate.protocol import debuglog, environ, layout
from tiergate.protocol import events as ev
from tiergate.protocol.redact import current as redact_current
from tiergate.protocol.redact import export_names, redact_secrets, weak_secret_warnings
from tiergate.protocol.runspec import RunSpec
from tiergate.results.files import (
    ResultsDirClaim,
    claim_results_dir,
    describe_os_error,
    load_writers,
    write_result_files,
)
from tiergate.settings.config import Tier, find_pyproject
from tiergate.settings.quarantine import entry_for, load_quarantine
from tiergate.supervisor import outpump
from tiergate.supervisor.exitwatch import (
    ExitWatch,
    exit_blocker,
    file_size,
    main_thread_since,
    stuck_words,
)
from tiergate.supervisor.killretry import KillRetries
from tiergate.supervisor.lastwill import LastWill
from tiergate.supervisor.procs import (
    become_subreaper,
    kill_leftovers,
    kill_tree,
    pump_while_waiting,
    reap,
    signal_on_parent_death,
    start,
    stop_group,
)

if TYPE_CHECKING:  # imported once pytest is started: see _load_machinery and _watch_tree
    from tiergate.diagnose.treedumps import SavedDump
    from tiergate.protocol.findings import Culprit, Finding, FindingKind, Location
    from tiergate.results.model import Builder, RunResult
    from tiergate.supervisor.progress import Progress
    from tiergate.supervisor.slownotes import SlowNotes
    from tiergate.supervisor.treewatch import OverLimit, TreeWatch

POLL_SECONDS = 0.05
CANCEL_STOP_SECONDS = 2.0  # GitHub gives 7.5 s from SIGINT to SIGTERM and 2.5 s more to SIGKILL
HARD_TIMEOUT_STOP_SECONDS = 2.0

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE, EXIT_NO_TESTS = 0, 1, 2, 5
logger = debuglog.logger("supervisor")  # --debug: the decisions below, told


class Ending(enum.Enum):
    """Why one pytest attempt ended; what the run does next is decided on it (``final``)."""

    FINISHED = "finished"  # pytest ended its session and exited
    USAGE = "usage"  # pytest exited 3 or 4: interrupted, or a usage error
    CRASHED = "crashed"  # pytest died mid-run: resume with the tests left
    COLLECTION = "collection"  # a module hung or crashed the collection: again, without it
    HARD_TIMEOUT = "hard-timeout"  # a test stuck past its limit, pytest killed: resume
    RESOURCE_PRESSURE = "resource-pressure"  # the tree over a limit, pytest killed: resume
    EXIT_HANG = "exit-hang"  # the tests finished, pytest did not exit and was killed
    BUDGET = "budget"  # the tier's budget ran out
    CANCELLED = "cancelled"  # a signal to the supervisor (CI cancelled the job)
    MAX_FAIL = "max-fail"  # the tier's max-fail reached: the rest is not run, nor resumed

    @property
    def final(self) -> bool:
        """No further attempt: the run is over, whatever is left."""
        return self in _FINAL


_FINAL = frozenset({Ending.FINISHED, Ending.USAGE, Ending.EXIT_HANG, Ending.BUDGET,
                    Ending.CANCELLED, Ending.MAX_FAIL})
_FAILING = frozenset({"failed", "error", "timeout"})  # what max-fail counts


@dataclasses.dataclass(frozen=True)
class RunPlan:
    tier: Tier
    results_dir: Path
    root: Path  # the project: pytest's working directory
    pytest_args: tuple[str, ...] = ()
    python: str = sys.executable
    shard: tuple[int, int] | None = None
    durations_from: tuple[str, ...] = ()


@dataclasses.dataclass
class _Collecting:
    nodeid: str  # the module's
    path: str
    pid: int
    started: float  # wall clock, from the event
    timeout: float | None


@dataclasses.dataclass
class _InFlight:
    nodeid: str
    pid: int
    started: float  # wall clock, from the event
    timeout: float | None
    path: str | None
    line: int | None
    slow_noted: bool = False
    slow_culprit: Culprit | None = None  # what the dump at half the limit found
    debugging: bool = False  # in a debugger: no hard timeout (the plugin's `debugger` event)


class Supervisor:
    def __init__(self, plan: RunPlan, *, out: TextIO | None = None) -> None:
        self.plan = plan
        self.tier = plan.tier
        self.out = out or sys.stdout
        self.results_dir = plan.results_dir
        self.run_dir = layout.run_dir(plan.results_dir)
        self.events_path = plan.results_dir / layout.EVENTS_FILE
        self.collected: list[str] = []
        self.finished: set[str] = set()
        self.failures = 0  # tests that failed so far, for max-fail (quarantined ones are not)
        self.quarantine: list[dict[str, Any]] = []  # the entries, from the `quarantine` event
        self.in_flight: dict[str, _InFlight] = {}
        self.session_finished: set[int] = set()
        self.cancel_signal: int | None = None
        self.deadline = 0.0
        self.started = 0.0
        self.pytest_exit: int | None = None
        self.attempt = 0
        self.collecting: dict[int, _Collecting] = {}  # pid -> the module it is collecting
        self.ignored: list[str] = []  # modules left out of later attempts (hung or crashed)
        self.kill_retries = KillRetries(self.tier, self.run_dir)  # killed, and run again
        self.blocking: dict[int, Any] = {}  # pid -> the non-daemon threads at its session end
        self.session_end: float | None = None  # monotonic: when pytest said its session ended
        self.late_signal: int | None = None
        self.tests_over = False  # from here a signal waits for the result files
        self.faults: list[Finding] = []  # tiergate's own trouble, kept even if the log is not
        self.results: Builder  # fed every event of the log as the run goes (_load_machinery)
        self.will: LastWill | None = None
        self.claim: ResultsDirClaim | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._slow: SlowNotes[_InFlight]  # one per attempt
        self._pump: outpump.OutputPump | None = None  # pytest's output, redacted
        self._exit_fd: int | None = None  # pytest's pidfd: readable once it has ended
        self._progress: Progress
        self._loaded = False  # _load_machinery

    # -- the whole run ---------------------------------------------------------------------

    def run(self) -> int:
        """The run, start to end. Signals are ours from the first line to the last result file;
        whatever fails inside (an I/O error, a bug of ours) still ends pytest's tree and writes
        what can be written, and the verdict is never green for it."""
        self.started = time.monotonic()
        self.deadline = self.started + self.tier.budget
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {s: signal.signal(s, self._on_signal) for s in handled}
        try:
            self.claim = claim_results_dir(self.results_dir, self.plan.root)  # or one line, exit 2
            try:
                self._start()
                self._attempts()
            except Exception as exc:
                self._fault(exc)
            self.tests_over = True
            self._end_processes()
            return self._finish()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.claim is not None:
                self.claim.release()

    def _start(self) -> None:
        self.run_dir.mkdir(parents=True)
        if debuglog.start(self.results_dir):  # after the claim: claiming clears the dir
            logger.info("tier %s resolved: %s", self.tier.name, self.tier.describe())
        self.log = ev.OwnedLog(self.events_path)
        self.events = ev.EventWriter(self.log.writer_path, raise_errors=True)
        self.tail = self.log.tail
        self.events.emit(
            ev.RUN_START,
            tier=self.tier.name,
            settings=self.tier.describe(),
            args=list(self.plan.pytest_args),
            root=str(self.plan.root),
            supervised=True,
            shard=list(self.plan.shard) if self.plan.shard else None,
        )
        self.log.check()  # the file starts with our run-start: a test that cuts it is seen
        become_subreaper()
        signal_on_parent_death(signal.SIGTERM)
        self.will = LastWill.start(self.run_dir)

    def _load_machinery(self) -> None:
        """What following the run needs (the results model, findings, dumps, the progress
        lines), imported once pytest is started: meanwhile pytest starts up on another core,
        and before the spawn every millisecond of it was the run's. At the end of a run that
        never got that far, too."""
        if self._loaded:
            return
        self._loaded = True
        import tiergate.diagnose.treedumps  # what the methods below import where they need it
        import tiergate.protocol.findings  # noqa: F401
        from tiergate.results.model import Builder
        from tiergate.supervisor.progress import Progress

        self.results = Builder()
        self._progress = Progress(self._say, slow_after=self.tier.slow_after,
                                  interval=self.tier.progress_interval, first_line_at=time.time())

    def _fault(self, exc: Exception) -> None:
        """Something of ours failed mid-run: stop pytest and say what, in one line."""
        from tiergate.protocol.findings import Finding

        if isinstance(exc, OSError):
            what = f"cannot write to {self.results_dir}: {describe_os_error(exc)}"
        else:
            what = f"internal error: {type(exc).__name__}: {exc}"
        what = redact_secrets(what)  # an exception's text can quote anything, a secret too
        self._say(f"tiergate: error: {what}; pytest was stopped, the results so far are kept")
        self._keep(Finding(kind="run-error", test=self._current_test(), severity="error",
                           message=f"the run was stopped: {what}"))
        proc = self._proc
        if proc is not None and proc.poll() is None:
            stop_group(proc, min(self.tier.grace, CANCEL_STOP_SECONDS))

    def _current_test(self) -> str | None:
        return next(iter(self.in_flight), None)

    def _end_processes(self) -> None:
        try:
            self._kill_leftovers("at the end of the run")
        except Exception as exc:
            self._fault(exc)
        if self.will is not None:
            self.will.revoke()

    def _finish(self) -> int:
        """The verdict from everything the log holds, then the result files; an error writing
        them is one line, and the verdict is still printed (and put in the step summary)."""
        self._load_machinery()
        from tiergate.protocol.findings import event_log_lost
        from tiergate.results.model import ORPHANED_PREFIX, RunResult

        log = getattr(self, "log", None)
        if log is not None:
            log.check()
        if log is not None and log.lost:
            self._record(event_log_lost(log.lost))
        if log is not None:
            for record in self.tail.poll():  # what came after the last look: the model is whole
                self.results.feed(record)
        run = self.results.result() if log is not None else RunResult()
        run.sources.append(str(self.results_dir))
        seen = {(f.kind, f.message) for f in run.findings}
        run.findings += [f for f in self.faults if (f.kind, f.message) not in seen]
        stopped = next((f for f in self.faults if f.message.startswith("the run was stopped")),
                       None)
        orphans = [t for t in run.tests.values()
                   if t.message and t.message.startswith(ORPHANED_PREFIX)]
        if stopped is not None:
            for test in orphans:  # not a crash: we stopped it, and know why
                test.message = test.longrepr = stopped.message
        code = self._exit_code(run)
        run.exit_code, run.finished = code, time.time()
        try:
            if log is not None:
                self.events.emit(ev.RUN_FINISH, exit_code=code,
                                 duration=time.monotonic() - self.started)
                self.events.close()
                log.restore()
                log.close()
            write_result_files(self.results_dir, run)
            shutil.rmtree(self.run_dir, ignore_errors=True)
        except OSError as exc:
            self._say(f"tiergate: error: cannot write the results to {self.results_dir}: "
                      f"{describe_os_error(exc)}; the verdict below is all there is")
            _step_summary_fallback(run)
            code = EXIT_FAILED if code == EXIT_FAILED or not run.ok else EXIT_USAGE
        self._print_summary(run)  # with max-fail's "stopped after" line (report/terminal.py)
        if self.late_signal is not None and self.cancel_signal is None:
            self._say(f"tiergate: {signal.Signals(self.late_signal).name} received after the "
                      "tests ended; every result file was written first")
            return 128 + self.late_signal
        return code

    def _attempts(self) -> None:
        only: tuple[str, ...] | None = None
        while True:
            done_before = len(self.finished)
            ignored_before = len(self.ignored)
            ending = self._attempt(only)
            if ending is not Ending.MAX_FAIL and self._max_fail_reached():
                self._note_max_fail()  # pytest's own --maxfail stopped it, or it crashed after
                return
            if ending.final:
                return
            if time.monotonic() >= self.deadline or self.cancel_signal is not None:
                return
            if ending is Ending.COLLECTION:  # again, without the module that hung or crashed
                if len(self.ignored) == ignored_before:
                    return
                only = (tuple(n for n in self.collected if n not in self.finished)
                        if self.collected else None)
                continue
            left = tuple(n for n in self.collected if n not in self.finished)
            if not left or (len(self.finished) == done_before
                            and not self.kill_retries.pending):
                return  # nothing left, or the last attempt made no progress: stop, don't loop
            only = left

    # -- one pytest process ----------------------------------------------------------------

    def _attempt(self, only: tuple[str, ...] | None) -> Ending:
        self.attempt += 1
        spec = RunSpec(
            tier=self.tier,
            results_dir=self.results_dir,
            run_dir=self.run_dir,
            attempt=self.attempt,
            only=only,
            shard=self.plan.shard,
            durations_from=self.plan.durations_from,
            events_path=self.log.writer_path,
            attempts_before=self.kill_retries.before(only) if only else {},
        )
        self.kill_retries.pending.clear()  # from here: the tests this attempt hands back
        spec_file = spec.write(layout.attempt_spec(self.run_dir, self.attempt))
        argv = self._argv(spec_file)
        self.events.emit(
            ev.ATTEMPT_START,
            attempt=self.attempt,
            argv=argv,
            only=len(only) if only is not None else None,
        )
        logger.info("attempt %d: %s%s", self.attempt, " ".join(argv), "" if only is None
                    else f" (resume: {len(only)} of {len(self.collected)} tests left)")
        if self.attempt > 1 and only is None:
            self._say(f"tiergate: collecting again without {', '.join(self.ignored)} "
                      f"(attempt {self.attempt})")
        elif self.attempt > 1:
            self._say(
                f"tiergate: resuming with the {len(only or ())} tests not run yet "
                f"(attempt {self.attempt})"
            )
        self.session_end = None
        proc = self._popen(argv)
        self._proc = proc
        self._exit_fd = _pidfd(proc.pid)
        if self.will is not None:
            self.will.watch_group(proc.pid)
        self._load_machinery()
        from tiergate.supervisor.slownotes import SlowNotes

        self._slow = SlowNotes(self._slow_dump, self._slow_noted)
        watch = self._watch_tree(proc)  # samples and resource limits
        if self.attempt == 1:
            load_writers()  # while pytest starts up, so that its end only writes
        ending: Ending | None = None
        while ending is None and proc.poll() is None:
            self._pause(POLL_SECONDS)
            self._follow()
            reap()  # orphans re-parented to us; never pytest, whose Popen waits for it
            ending = self._check(proc, watch)
        self._slow.finish(give_up=lambda: self.cancel_signal is not None)
        if watch is not None:
            watch.close()
        if self._exit_fd is not None:
            os.close(self._exit_fd)
            self._exit_fd = None
        self.pytest_exit = proc.returncode if proc.returncode is not None else proc.wait()
        stop_group(proc, 0)  # anything of the group still alive goes with pytest
        self._end_output()
        self.log.repair_tear()  # a writer killed inside a write must not swallow the next event
        self._follow()
        if ending is None:
            ending = self._how_it_ended(proc)
        rc = self.pytest_exit
        logger.info("attempt %d ended: %s (pytest exit status %s)", self.attempt, ending.value,
                    rc)
        self.events.emit(
            ev.PYTEST_EXIT,
            attempt=self.attempt,
            returncode=rc,
            signal=signal.Signals(-rc).name if rc < 0 else None,
        )
        self.in_flight.clear()
        self.collecting.clear()
        self._proc = None
        self._kill_leftovers(f"after pytest ended (attempt {self.attempt})")
        return ending

    def _check(self, proc: subprocess.Popen[bytes], watch: TreeWatch | None) -> Ending | None:
        """One look at the run, between two polls: the ending when a rung of the ladder had to
        stop pytest, else None. The first that applies wins: a cancel, then the budget."""
        if self.cancel_signal is not None:
            self._cancel(proc)
            return Ending.CANCELLED
        if time.monotonic() >= self.deadline:
            self._expire_budget(proc)
            return Ending.BUDGET
        if self._max_fail_reached():
            self._stop_at_max_fail(proc)
            return Ending.MAX_FAIL
        if self.log.check():
            kept = ("the events before the cut are lost" if self.log.lost == "truncated"
                    else "keeping its events")
            self._say(f"tiergate: {self.events_path} was {self.log.lost} by the run; {kept} "
                      "(a finding follows)")
        if self._exit_hang(proc):
            return Ending.EXIT_HANG
        stuck = self._stuck_collection()
        if stuck is not None:
            self._collect_timeout(proc, stuck)
            return Ending.COLLECTION
        self._note_slow_tests()
        self._progress.check(self.in_flight.values(), now=time.time(), done=len(self.finished),
                             total=len(self.collected) or None,
                             budget_left=self.deadline - time.monotonic())
        hung = self._hung_test()
        if hung is not None and self._hard_timeout(proc, hung):
            return Ending.HARD_TIMEOUT
        over = watch.poll() if watch is not None else None
        if watch is not None and over is not None:
            self._stop_over_limit(proc, watch, over)
            return Ending.RESOURCE_PRESSURE
        return None

    def _how_it_ended(self, proc: subprocess.Popen[bytes]) -> Ending:
        """pytest exited on its own (no rung stopped it): finished, or crashed, and where."""
        assert self.pytest_exit is not None
        if proc.pid in self.session_finished:
            return Ending.USAGE if self.pytest_exit in (3, 4) else Ending.FINISHED
        if self.collecting and not self.in_flight:
            self._crashed_collecting(self.pytest_exit)
            return Ending.COLLECTION
        self._crashed(self.pytest_exit)
        return Ending.CRASHED

    # -- pytest's stdout and stderr --------------------------------------------------------------

    def _popen(self, argv: list[str]) -> subprocess.Popen[bytes]:
        """pytest, its stdout and stderr in pipes that we pass on redacted (unless
        TIERGATE_REDACT_OUTPUT=0); the variables too weak to mask everywhere are named once."""
        if self.attempt == 1:
            for warning in weak_secret_warnings():
                self._say(warning)
        env = export_names(self._env())  # the config's `redact` names reach the plugin too
        if not outpump.enabled():
            return start(argv, cwd=self.plan.root, env=env)
        if os.isatty(1) and not any(a == "--color" or a.startswith("--color=")
                                    for a in self.plan.pytest_args):
            argv = [*argv, "--color=yes"]  # a pipe is no terminal: keep the colours of one
            with contextlib.suppress(OSError):
                env.setdefault("COLUMNS", str(os.get_terminal_size(1).columns))
        pump = outpump.OutputPump()
        stdout, stderr = pump.open()
        try:
            proc = start(argv, cwd=self.plan.root, env=env, stdout=stdout, stderr=stderr)
        except BaseException:
            pump.close()
            raise
        pump.started()
        self._pump = pump
        pump_while_waiting(proc.pid, pump.wait)  # a stop that waits keeps the output going
        return proc

    def _pause(self, seconds: float) -> None:
        """Wait *seconds* between two looks at the run, or less: up to when pytest ends."""
        if self._pump is not None:
            self._pump.wait(seconds, until=self._exit_fd)
        else:
            outpump.wait_for([] if self._exit_fd is None else [self._exit_fd], seconds)

    def _end_output(self) -> None:
        pump, self._pump = self._pump, None
        if pump is not None:
            pump_while_waiting(None, None)
            pump.close()

    def _kill_leftovers(self, when: str, adopted_from_tree: int | None = None) -> None:
        """pytest is gone: whatever still descends from us was started by the run and escaped its
        process group (a new session, a double fork). It is killed and named. With
        *adopted_from_tree* (pytest still running), only what that tree orphaned to us."""
        from tiergate.protocol.findings import Finding

        exclude = {self.will.pid} if self.will is not None else set()
        for leftover in kill_leftovers(exclude, adopted_from_tree=adopted_from_tree):
            during = leftover.started_during  # from the environment it inherited
            started = f"; it was started during {during.describe()}" if during else ""
            self._emit_finding(
                Finding(
                    kind="leftover-process",
                    test=during.test if during else None,
                    severity="warning",
                    message=f"process {leftover.pid} was still running {when} and was "
                    f"killed: {leftover.cmdline}{started}",
                    details={"pid": leftover.pid, "age": round(leftover.age, 1)},
                )
            )

    def _argv(self, spec_file: Path) -> list[str]:
        args = list(self.plan.pytest_args)
        argv = [self.plan.python, "-m", "pytest", f"--tiergate-run={spec_file}"]
        if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
            argv += ["-p", "tiergate.plugin"]
        if self.tier.max_fail is not None and not _has_quarantine(self.plan.root) and not any(
                a in ("-x", "--exitfirst") or a.startswith("--maxfail") for a in args):
            # pytest stops between two tests; a resumed attempt counts the failures before it.
            # Not with a quarantine: pytest would count quarantined failures, which do not count.
            argv.append(f"--maxfail={max(1, self.tier.max_fail - self.failures)}")
        if self.tier.workers != 1 and not any(
            a == "-n" or a.startswith("-n") or a.startswith("--numprocesses") for a in args
        ):
            argv += ["-n", str(self.tier.workers)]
        if self.tier.paths and not _names_targets(args, self.plan.root):
            argv += list(self.tier.paths)
        argv += [f"--ignore={self.plan.root / path}" for path in self.ignored]
        return argv + args

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("PYTEST_CURRENT_TEST", None)  # an outer pytest's: would name our leftovers' test
        env[environ.TIER] = self.tier.name
        env[environ.EVENTS] = str(self.log.writer_path)
        env.update(boot_env(self.run_dir, env))  # every Python process of the run can be dumped
        return env

    # -- following the event stream --------------------------------------------------------

    def _follow(self) -> None:
        for record in self.tail.poll():
            self.results.feed(record)  # the results model grows with the log, off the end's path
            try:
                self._take(record)
            except (KeyError, TypeError, ValueError):
                continue  # a malformed record (a test wrote to the log?) says nothing to follow

    def _take(self, record: dict[str, Any]) -> None:
        kind = record["event"]
        if kind == ev.COLLECTED:
            self.collecting.clear()
            if not self.collected:
                self.collected = list(record.get("tests", ()))
        elif kind == ev.TEST_START:
            self.in_flight[record["nodeid"]] = _InFlight(
                nodeid=record["nodeid"],
                pid=int(record["pid"]),
                started=float(record["t"]),
                timeout=record.get("timeout"),
                path=record.get("path"),
                line=record.get("line"),
            )
        elif kind == ev.HARD_TIMEOUT and record["nodeid"] in self.kill_retries.pending:
            self.in_flight.pop(record["nodeid"], None)  # not finished: it runs again
        elif kind in (ev.TEST_FINISH, ev.HARD_TIMEOUT):
            self.in_flight.pop(record["nodeid"], None)
            if record["nodeid"] not in self.finished and (
                    kind == ev.HARD_TIMEOUT or record.get("outcome") in _FAILING
            ) and entry_for(record["nodeid"], self.quarantine) is None:
                self.failures += 1
            self.finished.add(record["nodeid"])
        elif kind == ev.TEST_ATTEMPT:
            # Between two attempts (the retry's delay) no limit runs: the next attempt's
            # test-start puts the test back in flight with its own clock.
            self.in_flight.pop(record["nodeid"], None)
            self.kill_retries.noted(record)
        elif kind == ev.QUARANTINE:
            self.quarantine = [e for e in record.get("entries") or () if isinstance(e, dict)]
        elif kind == ev.DEBUGGER and record["nodeid"] in self.in_flight:
            test = self.in_flight[record["nodeid"]]
            test.debugging = bool(record.get("active"))
            if not test.debugging:  # the test goes on: its limit counts again from here
                test.started = float(record["t"])
        elif kind == ev.COLLECT_START:
            pid = int(record["pid"])
            self.collecting[pid] = _Collecting(
                nodeid=str(record["nodeid"]), path=str(record.get("path") or ""), pid=pid,
                started=float(record["t"]), timeout=record.get("timeout"))
        elif kind == ev.COLLECT_FINISH:
            self.collecting.pop(int(record["pid"]), None)
        elif kind == ev.SESSION_FINISH and record.get("worker") is None:
            self.session_finished.add(int(record["pid"]))
            self.blocking[int(record["pid"])] = record.get("blocking")
            if self.session_end is None:
                self.session_end = time.monotonic()

    def _stuck_collection(self) -> _Collecting | None:
        now = time.time()
        for module in self.collecting.values():
            if module.timeout and now > module.started + module.timeout:
                return module
        return None

    def _hung_test(self) -> _InFlight | None:
        now = time.time()
        for test in self.in_flight.values():
            if (test.timeout and not test.debugging
                    and now > test.started + test.timeout + self.tier.grace):
                return test
        return None

    def _note_slow_tests(self) -> None:
        """Past half its limit, a test gets a `slow` note; its dump runs beside this loop."""
        self._slow.check(list(self.in_flight.values()), time.time())

    def _slow_dump(self, test: _InFlight) -> SavedDump:
        """The dump of a `slow` note (in a thread of SlowNotes' own): where the test is now."""
        from tiergate.diagnose.treedumps import dump_name, dump_tree

        return dump_tree(
            test.pid,
            results_dir=self.results_dir,
            run_dir=self.run_dir,
            project_root=self.plan.root,
            name=dump_name("slow", test.nodeid, self.attempt),
            reason=f"{test.nodeid} passed half of its {test.timeout:g}s limit",
            stuck_pid=test.pid,
        )

    def _slow_noted(self, test: _InFlight, elapsed: float, saved: SavedDump) -> None:
        test.slow_culprit = saved.culprit
        self.events.emit(
            ev.SLOW,
            nodeid=test.nodeid,
            elapsed=elapsed,
            limit=test.timeout,
            dump=saved.path,
            culprit=dataclasses.asdict(saved.culprit) if saved.culprit else None,
        )

    # -- the rungs of the ladder -----------------------------------------------------------

    def _hard_timeout(self, proc: subprocess.Popen[bytes], test: _InFlight) -> bool:
        """The test ignored its soft timeout for `grace` seconds. Returns True when pytest itself
        had to go (no xdist); with xdist only the stuck worker is killed and xdist replaces it."""
        from tiergate.protocol.findings import Finding

        limit = test.timeout or 0.0
        saved = self._dump(
            proc.pid,
            test.nodeid,
            "timeout",
            f"{test.nodeid} did not return {self.tier.grace:g}s after its {limit:g}s limit",
            stuck_pid=test.pid,
        )
        saved = _with_reason_seen_at_half(saved, test.slow_culprit)
        from tiergate.diagnose.culprit import fixture_words  # (imported once something hangs)

        message = (
            f"timeout: ran past its {limit:g}s limit"
            + (f" {fixture_words(saved.fixture, test.nodeid.rsplit('::', 1)[-1])},"
               if saved.fixture else "")
            + f" and did not return within "
            f"{self.tier.grace:g}s more (hard timeout: the process was killed)"
            + stuck_words(saved) + _why_the_soft_timeout_could_not_act(test.pid, saved.culprit)
        )
        logger.info("hard timeout: %s (pid %d) ran past %gs + %gs grace; culprit %s; killing %s",
                    test.nodeid, test.pid, limit, self.tier.grace, debuglog.where(saved.culprit),
                    "its xdist worker" if test.pid != proc.pid else "pytest")
        self.events.emit(
            ev.HARD_TIMEOUT, nodeid=test.nodeid, test_pid=test.pid, dump=saved.path, message=message
        )
        again = test.pid == proc.pid and self._retry_killed(test, "timeout", message, saved.path)
        self._emit_finding(
            Finding(
                kind="timeout",
                test=test.nodeid,
                severity="error",
                message=message,
                location=_where(test),
                culprit=saved.culprit,
                dump=saved.path,
                details={"hard": True},
            )
        )
        self.in_flight.pop(test.nodeid, None)
        if not again:
            self.finished.add(test.nodeid)
        self._say(
            f"tiergate: {test.nodeid} is stuck past its limit; killing "
            + ("its xdist worker" if test.pid != proc.pid else "pytest")
            + stuck_words(saved)
        )
        if test.pid != proc.pid:
            kill_tree(test.pid)
            return False
        stop_group(proc, HARD_TIMEOUT_STOP_SECONDS)
        return True

    def _collect_timeout(self, proc: subprocess.Popen[bytes], module: _Collecting) -> None:
        """Collecting (importing) one module took longer than the tier's collect-timeout: no
        per-test limit covers that, and no in-process timer can be trusted inside an import.
        Dump, name the line, kill; the next attempt leaves the module out, so the rest runs."""
        limit = module.timeout or 0.0
        saved = self._dump(proc.pid, module.nodeid, "collect-timeout",
                           f"collecting {module.path} took more than {limit:g}s",
                           stuck_pid=module.pid)
        message = (f"timeout: collecting {module.path} (importing it) ran past its {limit:g}s "
                   "collect-timeout; its tests did not run" + stuck_words(saved))
        logger.info("collect timeout: %s ran past %gs; culprit %s; killing pytest, leaving it out",
                    module.path, limit, debuglog.where(saved.culprit))
        self.events.emit(ev.COLLECT_TIMEOUT, nodeid=module.nodeid, path=module.path,
                         message=message, dump=saved.path)
        self._module_failed(module, "collect-timeout", message, culprit=saved.culprit,
                            dump=saved.path)
        self._say(f"tiergate: collecting {module.path} is stuck past {limit:g}s; killing pytest, "
                  "then going on without it" + stuck_words(saved))
        stop_group(proc, HARD_TIMEOUT_STOP_SECONDS)

    def _crashed_collecting(self, returncode: int) -> None:
        how = _how_pytest_ended(returncode, "")
        for module in list(self.collecting.values()):
            message = (f"crash: pytest {how} while collecting {module.path} (importing it); "
                       "its tests did not run")
            self._module_failed(module, "crash", message, details={"returncode": returncode})
            self._say(f"tiergate: pytest {how} while collecting {module.path}; going on "
                      "without it")

    def _module_failed(self, module: _Collecting, kind: FindingKind, message: str,
                       **extra: Any) -> None:
        """A module that could not be collected: an error in the results (as pytest reports a
        module that fails to import), a finding, and no place in later attempts."""
        from tiergate.protocol.findings import Finding, Location

        self.events.emit(ev.TEST_FINISH, nodeid=module.nodeid, path=module.path, line=None,
                         outcome="error", duration=round(time.time() - module.started, 3),
                         phase="collect", message=message, longrepr=message,
                         dump=extra.get("dump"))
        self._emit_finding(Finding(kind=kind, test=module.nodeid, severity="error",
                                   message=message, location=Location(module.path, None),
                                   **extra))
        if module.path and module.path not in self.ignored:
            self.ignored.append(module.path)
        self.collecting.pop(module.pid, None)

    _exit_watch: ExitWatch | None = None  # from pytest's session end to its exit

    def _exit_hang(self, proc: subprocess.Popen[bytes]) -> bool:
        """pytest said its session ended and has not exited: after its own wrap-up (terminal
        summary, unconfigure, cleanups) the interpreter waits only for non-daemon threads, atexit
        handlers and the children those wait for. A hang is a whole grace during which pytest's
        main thread and the non-daemon threads did no work: slow is not stuck (a big terminal
        summary, a last garbage collection on a busy machine), and daemon threads are never
        waited for, so they are never the reason. The results stand; the hang is a finding,
        named, and pytest is killed."""
        from tiergate.protocol.findings import Finding, Location

        if self.session_end is None:
            return False
        blocking = [t for t in self.blocking.get(proc.pid) or [] if isinstance(t, dict)]
        watch = self._exit_watch
        if watch is None or watch.session_end != self.session_end:
            watch = self._exit_watch = ExitWatch(proc.pid, blocking, self.session_end)
        if not watch.hung(time.monotonic(), self.tier.grace):
            return False
        stacks = stacks_file(proc.pid, self.run_dir)
        offset = file_size(stacks)
        saved = self._dump(proc.pid, None, "exit-hang",
                           f"pytest's session ended and for {self.tier.grace:g}s it has not "
                           "exited nor done any work", stuck_pid=proc.pid)
        main = main_thread_since(stacks, offset)
        why, culprit = exit_blocker(main, watch.waited_threads(), saved, proc.pid, self.plan.root)
        message = (f"pytest finished its tests but did not exit within {self.tier.grace:g}s "
                   f"and was idle: {why}; it was killed (every test result stands)")
        logger.info("exit hang: %s; culprit %s; killing pytest", why, debuglog.where(culprit))
        self.events.emit(ev.EXIT_HANG, waited=self.tier.grace, blocking=blocking,
                         dump=saved.path)
        self._emit_finding(Finding(kind="exit-hang", test=None, severity="error",
                                   message=message, culprit=culprit, dump=saved.path,
                                   location=Location(culprit.path, culprit.line)
                                   if culprit else None))
        self._say(f"tiergate: {message}")
        stop_group(proc, HARD_TIMEOUT_STOP_SECONDS)
        return True

    def _dump_stuck(
        self, proc: subprocess.Popen[bytes], kind: str, reason: str
    ) -> tuple[_InFlight | None, SavedDump]:
        """The tree dump for a stop of the whole run, pointed at the first test in flight."""
        stuck = next(iter(self.in_flight.values()), None)
        saved = self._dump(
            proc.pid,
            stuck.nodeid if stuck else None,
            kind,
            reason,
            stuck_pid=stuck.pid if stuck else None,
        )
        return stuck, saved

    def _expire_budget(self, proc: subprocess.Popen[bytes]) -> None:
        stuck, saved = self._dump_stuck(
            proc, "job-timeout", f"the tier's {self.tier.budget:g}s budget ran out"
        )
        self._blame_in_flight(
            "job-timeout",
            f"timeout: the tier's budget of {self.tier.budget:g}s ran out",
            stuck_words(saved),
            culprit=saved.culprit,
            dump=saved.path,
        )
        logger.info("budget of %gs spent while %s ran; culprit %s; stopping pytest",
                    self.tier.budget, stuck.nodeid if stuck else "no test",
                    debuglog.where(saved.culprit))
        self.events.emit(
            ev.BUDGET_EXPIRED,
            budget=self.tier.budget,
            dump=saved.path,
            nodeid=stuck.nodeid if stuck else None,
        )
        self._say(
            f"tiergate: budget of {self.tier.budget:g}s spent; stopping pytest "
            f"(SIGTERM, then SIGKILL after {self.tier.grace:g}s)"
        )
        stop_group(proc, self.tier.grace)

    def _max_fail_reached(self) -> bool:
        return self.tier.max_fail is not None and self.failures >= self.tier.max_fail

    def _stop_at_max_fail(self, proc: subprocess.Popen[bytes]) -> None:
        """The tier's max-fail reached and pytest still running (its own --maxfail ends a
        session between tests; xdist's workers, a test in flight, may not): stopped as at the
        budget (SIGTERM, grace, SIGKILL); what was in flight and the rest are not run."""
        self._note_max_fail()
        self.in_flight.clear()  # not run: stopped, not crashed
        stop_group(proc, self.tier.grace)

    def _note_max_fail(self) -> None:
        """The event that tells every report the tier stopped at max-fail, and the rest did not
        run (and the run does not resume)."""
        limit = self.tier.max_fail
        left = len([n for n in self.collected if n not in self.finished])
        logger.info("max-fail %s reached after %d failures; %d tests left; the tier stops",
                    limit, self.failures, left)
        self.events.emit(ev.MAX_FAIL, failures=self.failures, limit=limit,
                         nodeids=list(self.in_flight))
        self._say(f"tiergate: {_n(self.failures, 'failure')} (max-fail {limit}): the tier "
                  f"stops, {_n(left, 'test')} not run")

    def _cancel(self, proc: subprocess.Popen[bytes]) -> None:
        name = signal.Signals(self.cancel_signal or signal.SIGTERM).name
        stuck, saved = self._dump_stuck(proc, "cancelled", f"the run was cancelled ({name})")
        logger.info("%s received while %s ran; stopping pytest", name,
                    stuck.nodeid if stuck else "no test")
        self.events.emit(
            ev.CANCELLED, signal=name, dump=saved.path, nodeid=stuck.nodeid if stuck else None
        )
        self._say(f"tiergate: {name} received; stopping pytest and writing the results")
        stop_group(proc, min(self.tier.grace, CANCEL_STOP_SECONDS))

    def _crashed(self, returncode: int) -> None:
        how = _how_pytest_ended(returncode, " before finishing")
        blamed = self._blame_in_flight(
            "crash", f"crash: pytest {how}", "", details={"returncode": returncode}
        )
        # Never run again (it may be what kills pytest), unless the tier retries crashes.
        self.finished.update(n for n in blamed if not self._retry_killed(
            self.in_flight[n], "crash", f"crash: pytest {how} while this test was running", None))
        self._say(f"tiergate: pytest {how}")

    def _retry_killed(self, test: _InFlight, kind: str, message: str, dump: str | None) -> bool:
        """Does the killed test run again in the resumed pytest (supervisor/killretry.py)?
        If so, its killed attempt is a failed attempt, as pytest's own retries keep one."""
        number = self.kill_retries.again(test.nodeid, kind, message)
        if number is None:
            return False
        self.events.emit(
            ev.TEST_ATTEMPT, nodeid=test.nodeid, attempt=number,
            outcome="timeout" if kind == "timeout" else "failed", phase="call",
            duration=max(0.0, time.time() - test.started), message=message, longrepr=message,
            dump=dump)
        self._say(f"tiergate: {test.nodeid} runs again in the resumed pytest "
                  f"(attempt {number + 1})")
        return True

    def _blame_in_flight(self, kind: FindingKind, what: str, after: str,
                         **extra: Any) -> list[str]:
        """One error finding per test in flight (or one for the run when none was): what
        happened, while which test. Returns the node ids blamed."""
        from tiergate.protocol.findings import Finding

        tests: list[_InFlight | None] = list(self.in_flight.values()) or [None]
        for test in tests:
            during = " while this test was running" if test else ""
            self._emit_finding(
                Finding(
                    kind=kind,
                    test=test.nodeid if test else None,
                    severity="error",
                    message=f"{what}{during}{after}",
                    location=_where(test),
                    **extra,
                )
            )
        return [t.nodeid for t in tests if t is not None]

    # -- resource pressure (the logic lives in treewatch.py) ----------------------------------

    def _watch_tree(self, proc: subprocess.Popen[bytes]) -> TreeWatch | None:
        if not self.tier.sample_interval:
            return None
        # Here, not at the top: psutil and the samplers load while pytest starts, not before.
        from tiergate.supervisor.treewatch import TreeWatch

        return TreeWatch(
            root_pid=proc.pid,
            tier=self.tier,
            attempt=self.attempt,
            emit=self.events.emit,
            dump=lambda nodeid, kind, reason, stuck: self._dump(
                proc.pid, nodeid, kind, reason, stuck_pid=stuck
            ),
            in_flight=lambda: list(self.in_flight.values()),
            fast=POLL_SECONDS,
            adopter=os.getpid(),  # a subreaper: what the tree orphans (a daemon) is ours to count
        )

    def _stop_over_limit(self, proc: subprocess.Popen[bytes], watch: TreeWatch,
                         over: OverLimit) -> None:
        """The tree went over a limit: what it orphaned to us first (a daemon may be what holds
        the memory, and no group signal reaches it), then pytest's group; the watch reports it.
        The test it blames is finished (failed, never re-run) and the rest can resume."""
        self._kill_leftovers("when the tree went over a limit", adopted_from_tree=proc.pid)
        stop_group(proc, over.grace)
        watch.report(over)
        if over.nodeid is not None:
            self.in_flight.pop(over.nodeid, None)
            self.finished.add(over.nodeid)
        self._say(
            f"tiergate: {over.verdict.describe()}"
            + (f" in {over.nodeid}" if over.nodeid else "")
            + "; pytest was killed"
        )

    def _dump(
        self, root: int, nodeid: str | None, kind: str, reason: str, stuck_pid: int | None
    ) -> SavedDump:
        from tiergate.diagnose.treedumps import dump_name, dump_tree

        return dump_tree(
            root,
            results_dir=self.results_dir,
            run_dir=self.run_dir,
            project_root=self.plan.root,
            name=dump_name(kind, nodeid, self.attempt),
            reason=reason,
            stuck_pid=stuck_pid,
        )

    # -- small things ----------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # While pytest runs, a signal cancels it; after, it waits until the files are written.
        if self.tests_over:
            self.late_signal = self.late_signal or signum
        elif self.cancel_signal is None:
            self.cancel_signal = signum

    def _emit_finding(self, finding: Finding) -> None:
        self.events.emit(ev.FINDING, finding=finding.to_json())

    def _keep(self, finding: Finding) -> None:
        """A finding of tiergate's own, kept in memory for the result files: redacted as the
        event writer redacts each line (the same step, over the same record), so that it
        matches its copy in the log and carries no secret into findings.json or junit.xml."""
        from tiergate.protocol.findings import Finding

        redactor = redact_current()
        if redactor.active:
            finding = Finding.from_json(redactor.record(finding.to_json()))
        self.faults.append(finding)

    def _record(self, finding: Finding) -> None:
        """A finding of tiergate's own: in the log if it can be written, and kept either way."""
        self._keep(finding)
        try:
            self._emit_finding(finding)
        except OSError:
            pass

    def _exit_code(self, run: RunResult) -> int:
        if self.cancel_signal is not None:
            return 128 + self.cancel_signal
        if self.pytest_exit == 4:
            return EXIT_USAGE
        if run.outcome == "no-tests":
            return EXIT_PASSED if run.allow_no_tests else EXIT_NO_TESTS
        return EXIT_PASSED if run.ok else EXIT_FAILED

    def _say(self, text: str) -> None:
        start = self._pump.break_line() if self._pump is not None else ""
        print(start + text, file=self.out, flush=True)

    def _print_summary(self, run: RunResult) -> None:
        from tiergate.report.terminal import render_terminal

        # A CI log is no terminal: 80 columns would cut every finding; logs wrap nothing.
        width = shutil.get_terminal_size((120, 24)).columns if self.out.isatty() else 120
        self._say(render_terminal(run, width=width, root=self.plan.root))


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _names_targets(args: Sequence[str], root: Path) -> bool:
    """Did the user name what to collect (a path or node id) in the pytest arguments?"""
    return any(not a.startswith("-") and (root / a.split("::")[0]).exists() for a in args)


def _where(test: _InFlight | None) -> Location | None:
    from tiergate.protocol.findings import Location

    return Location(test.path, test.line) if test and test.path else None


def _has_quarantine(root: Path) -> bool:
    try:
        return bool(load_quarantine(find_pyproject(root)))
    except ConfigError:
        return True  # pytest says what is wrong with it; do not count on --maxfail meanwhile


def _with_reason_seen_at_half(saved: SavedDump, slow: Culprit | None) -> SavedDump:
    """A stuck frame whose reason the last dump could not read keeps the one the dump at half
    the limit gave for the same frame (busy in C is seen over time, not in one sample)."""
    now = saved.culprit
    if now is None or now.reason or slow is None or not slow.reason:
        return saved
    if (slow.path, slow.line, slow.function) != (now.path, now.line, now.function):
        return saved
    reason = f"{slow.reason} (seen at half the limit)"
    return dataclasses.replace(saved, culprit=dataclasses.replace(now, reason=reason))


_SIGNAL_MASKS = {"SigBlk": "blocked", "SigIgn": "ignored"}


def _why_the_soft_timeout_could_not_act(pid: int, culprit: Culprit | None) -> str:
    """Why the soft rung (SIGALRM, in the test's process) did not end the test, read from
    the kernel's view of the process's signals while it is still alive, and why SIGTERM may
    not end it either."""
    why = []
    if culprit is not None and "holds the GIL" in (culprit.reason or ""):
        why.append("a C call held the GIL")
    masks = _signal_masks(pid)
    for mask, state in _SIGNAL_MASKS.items():
        if masks.get(mask, 0) >> (signal.SIGALRM - 1) & 1:
            why.append(f"SIGALRM is {state} in the test process")
    if masks.get("SigIgn", 0) >> (signal.SIGTERM - 1) & 1:
        why.append("SIGTERM is ignored")
    return f"; the soft timeout could not act: {', and '.join(why)}" if why else ""


def _signal_masks(pid: int) -> dict[str, int]:
    """``SigBlk``/``SigIgn`` of ``/proc/<pid>/status`` (its main thread's, as bit masks)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            lines = [line.split(":", 1) for line in status if line.startswith(("SigBlk", "SigIgn"))]
    except OSError:
        return {}
    return {name: int(value.strip(), 16) for name, value in lines}


def _how_pytest_ended(returncode: int, early: str) -> str:
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}{early}"


def _step_summary_fallback(run: RunResult) -> None:
    """The results dir cannot be written: the verdict still reaches the job summary."""
    from tiergate.report import actions
    from tiergate.report.summary import render_summary

    if not actions.in_github_actions():
        return
    try:
        actions.append_step_summary(render_summary(run, budget=actions.step_summary_room()))
    except OSError:
        pass


def run_plan(plan: RunPlan, **kwargs: Any) -> int:
    return Supervisor(plan, **kwargs).run()


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when *pid* ends (Linux 5.3 and later), else None: the
    loop then sees the end at its next poll."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
