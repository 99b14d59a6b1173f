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
from tiergate.diagnose.treedumps import SavedDump, dump_name, dump_tree
from tiergate.protocol import events as ev
from tiergate.protocol.findings import Culprit, Finding, Location
from tiergate.protocol.redact import current as redact_current
from tiergate.protocol.redact import export_names, redact_secrets, weak_secret_warnings
from tiergate.protocol.runspec import RunSpec
from tiergate.results.files import (
    ResultsDirClaim,
    claim_results_dir,
    describe_os_error,
    write_result_files,
)
from tiergate.results.model import ORPHANED_PREFIX, RunResult, build
from tiergate.settings.config import Tier
from tiergate.supervisor import outpump
from tiergate.supervisor.lastwill import LastWill
from tiergate.supervisor.procs import (
    become_subreaper,
    die_with_parent,
    kill_leftovers,
    pump_while_waiting,
    reap_zombies,
    signal_on_parent_death,
    stop_group,
)
from tiergate.supervisor.treewatch import TreeWatch

if TYPE_CHECKING:
    from tiergate.diagnose.culprit import CodeFilter, ThreadStack

POLL_SECONDS = 0.05
CANCEL_STOP_SECONDS = 2.0  # GitHub gives 7.5 s from SIGINT to SIGTERM and 2.5 s more to SIGKILL
HARD_TIMEOUT_STOP_SECONDS = 2.0

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE, EXIT_NO_TESTS = 0, 1, 2, 5


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


class Supervisor:
    def __init__(self, plan: RunPlan, *, out: TextIO | None = None) -> None:
        self.plan = plan
        self.tier = plan.tier
        self.out = out or sys.stdout
        self.results_dir = plan.results_dir
        self.run_dir = plan.results_dir / ".run"
        self.events_path = plan.results_dir / ev.EVENTS_FILE
        self.collected: list[str] = []
        self.finished: set[str] = set()
        self.in_flight: dict[str, _InFlight] = {}
        self.session_finished: set[int] = set()
        self.cancel_signal: int | None = None
        self.deadline = 0.0
        self.started = 0.0
        self.pytest_exit: int | None = None
        self.attempt = 0
        self.collecting: dict[int, _Collecting] = {}  # pid -> the module it is collecting
        self.ignored: list[str] = []  # modules left out of later attempts (hung or crashed)
        self.blocking: dict[int, Any] = {}  # pid -> the non-daemon threads at its session end
        self.session_end: float | None = None  # monotonic: when pytest said its session ended
        self.late_signal: int | None = None
        self.tests_over = False  # from here a signal waits for the result files
        self.faults: list[Finding] = []  # tiergate's own trouble, kept even if the log is not
        self.will: LastWill | None = None
        self.claim: ResultsDirClaim | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pump: outpump.OutputPump | None = None  # pytest's output, redacted (issue 16)

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
        become_subreaper()
        signal_on_parent_death(signal.SIGTERM)
        self.will = LastWill.start(self.run_dir)

    def _fault(self, exc: Exception) -> None:
        """Something of ours failed mid-run: stop pytest and say what, in one line."""
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
            stop_group(proc, proc.pid, min(self.tier.grace, CANCEL_STOP_SECONDS))

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
        log = getattr(self, "log", None)
        if log is not None:
            log.check()
        if log is not None and (lost := log.lost):
            self._record(Finding(
                kind="run-error", test=None, severity="error",
                message=f"{ev.EVENTS_FILE} was {lost} during the run (by a test, a fixture or "
                "a cleanup step); tiergate kept the run's events and restored the file, but "
                "the suite deletes files it did not make"))
        run = build(ev.parse_events(log.read_all())) if log is not None else RunResult()
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
        self._print_summary(run)
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
            if ending in ("finished", "budget", "cancelled", "usage", "exit-hang"):
                return
            if time.monotonic() >= self.deadline or self.cancel_signal is not None:
                return
            if ending == "collection":  # again, without the module that hung or crashed
                if len(self.ignored) == ignored_before:
                    return
                only = (tuple(n for n in self.collected if n not in self.finished)
                        if self.collected else None)
                continue
            left = tuple(n for n in self.collected if n not in self.finished)
            if not left or len(self.finished) == done_before:
                return  # nothing left, or the last attempt made no progress: stop, don't loop
            only = left

    # -- one pytest process ----------------------------------------------------------------

    def _attempt(self, only: tuple[str, ...] | None) -> str:
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
        )
        spec_file = spec.write(self.run_dir / f"attempt-{self.attempt}.json")
        argv = self._argv(spec_file)
        self.events.emit(
            ev.ATTEMPT_START,
            attempt=self.attempt,
            argv=argv,
            only=len(only) if only is not None else None,
        )
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
        pgid = proc.pid
        if self.will is not None:
            self.will.watch_group(pgid)
        ending = ""
        watch = self._watch_tree(proc, pgid)  # issue 8: samples and resource limits
        while proc.poll() is None:
            self._pause(POLL_SECONDS)
            self._follow()
            reap_zombies(keep=proc.pid)
            now = time.monotonic()
            if self.cancel_signal is not None:
                self._cancel(proc, pgid)
                ending = "cancelled"
                break
            if now >= self.deadline:
                self._expire_budget(proc, pgid)
                ending = "budget"
                break
            if self.log.check():
                self._say(f"tiergate: {self.events_path} was {self.log.lost} by the run; "
                          "keeping its events (a finding follows)")
            if self._exit_hang(proc, pgid):
                ending = "exit-hang"
                break
            stuck = self._stuck_collection()
            if stuck is not None:
                self._collect_timeout(proc, pgid, stuck)
                ending = "collection"
                break
            self._note_slow_tests()
            hung = self._hung_test()
            if hung is not None and self._hard_timeout(proc, pgid, hung):
                ending = "hard-timeout"
                break
            if watch is not None and self._over_limit(watch):
                ending = "resource-pressure"
                break
        if watch is not None:
            watch.close()
        self.pytest_exit = proc.returncode if proc.returncode is not None else proc.wait()
        stop_group(proc, pgid, 0)  # anything of the group still alive goes with pytest
        self._end_output()
        self.log.repair_tear()  # a writer killed inside a write must not swallow the next event
        self._follow()
        if not ending:
            if proc.pid in self.session_finished:
                ending = "usage" if self.pytest_exit in (3, 4) else "finished"
            elif self.collecting and not self.in_flight:
                ending = "collection"
                self._crashed_collecting(self.pytest_exit)
            else:
                ending = "crashed"
                self._crashed(self.pytest_exit)
        rc = self.pytest_exit
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

    # -- pytest's stdout and stderr (issue 16) ---------------------------------------------------

    def _popen(self, argv: list[str]) -> subprocess.Popen[bytes]:
        """pytest, its stdout and stderr in pipes that we pass on redacted (unless
        TIERGATE_REDACT_OUTPUT=0); the variables too weak to mask everywhere are named once."""
        if self.attempt == 1:
            for warning in weak_secret_warnings():
                self._say(warning)
        env = export_names(self._env())  # the config's `redact` names reach the plugin too
        if not outpump.enabled():
            return subprocess.Popen(argv, cwd=self.plan.root, env=env, start_new_session=True,
                                    preexec_fn=die_with_parent)
        if os.isatty(1) and not any(a == "--color" or a.startswith("--color=")
                                    for a in self.plan.pytest_args):
            argv = [*argv, "--color=yes"]  # a pipe is no terminal: keep the colours of one
            with contextlib.suppress(OSError):
                env.setdefault("COLUMNS", str(os.get_terminal_size(1).columns))
        pump = outpump.OutputPump()
        stdout, stderr = pump.open()
        try:
            proc = subprocess.Popen(argv, cwd=self.plan.root, env=env, start_new_session=True,
                                    preexec_fn=die_with_parent, stdout=stdout, stderr=stderr)
        except BaseException:
            pump.close()
            raise
        pump.started()
        self._pump = pump
        pump_while_waiting(proc.pid, pump.wait)  # a stop that waits keeps the output going
        return proc

    def _pause(self, seconds: float) -> None:
        if self._pump is not None:
            self._pump.wait(seconds)
        else:
            time.sleep(seconds)

    def _end_output(self) -> None:
        pump, self._pump = self._pump, None
        if pump is not None:
            pump_while_waiting(None, None)
            pump.close()

    def _kill_leftovers(self, when: str, adopted_from_tree: int | None = None) -> None:
        """pytest is gone: whatever still descends from us was started by the run and escaped its
        process group (a new session, a double fork). It is killed and named. With
        *adopted_from_tree* (pytest still running), only what that tree orphaned to us."""
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
        env["TIERGATE_TIER"] = self.tier.name
        env["TIERGATE_EVENTS"] = str(self.log.writer_path)
        env.update(boot_env(self.run_dir, env))  # every Python process of the run can be dumped
        return env

    # -- following the event stream --------------------------------------------------------

    def _follow(self) -> None:
        for record in self.tail.poll():
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
        elif kind in (ev.TEST_FINISH, ev.HARD_TIMEOUT):
            self.in_flight.pop(record["nodeid"], None)
            self.finished.add(record["nodeid"])
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
            if test.timeout and now > test.started + test.timeout + self.tier.grace:
                return test
        return None

    def _note_slow_tests(self) -> None:
        """Past half its limit, a test gets a `slow` note with where it is now, so a report can
        tell "slow and progressing" from "stuck in the same frame" when the timeout comes."""
        now = time.time()
        for test in list(self.in_flight.values()):
            if test.slow_noted or not test.timeout or now < test.started + test.timeout / 2:
                continue
            test.slow_noted = True
            saved = dump_tree(
                test.pid,
                results_dir=self.results_dir,
                run_dir=self.run_dir,
                project_root=self.plan.root,
                name=dump_name("slow", test.nodeid, self.attempt),
                reason=f"{test.nodeid} passed half of its {test.timeout:g}s limit",
                stuck_pid=test.pid,
            )
            self.events.emit(
                ev.SLOW,
                nodeid=test.nodeid,
                elapsed=round(now - test.started, 3),
                limit=test.timeout,
                dump=saved.path,
                culprit=dataclasses.asdict(saved.culprit) if saved.culprit else None,
            )

    # -- the rungs of the ladder -----------------------------------------------------------

    def _hard_timeout(self, proc: subprocess.Popen[bytes], pgid: int, test: _InFlight) -> bool:
        """The test ignored its soft timeout for `grace` seconds. Returns True when pytest itself
        had to go (no xdist); with xdist only the stuck worker is killed and xdist replaces it."""
        limit = test.timeout or 0.0
        saved = self._dump(
            proc.pid,
            test.nodeid,
            "timeout",
            f"{test.nodeid} did not return {self.tier.grace:g}s after its {limit:g}s limit",
            stuck_pid=test.pid,
        )
        message = (
            f"timeout: ran past its {limit:g}s limit and did not return within "
            f"{self.tier.grace:g}s more (hard timeout: the process was killed)"
            + _stuck_words(saved)
        )
        self.events.emit(
            ev.HARD_TIMEOUT, nodeid=test.nodeid, test_pid=test.pid, dump=saved.path, message=message
        )
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
        self.finished.add(test.nodeid)
        self._say(
            f"tiergate: {test.nodeid} is stuck past its limit; killing "
            + ("its xdist worker" if test.pid != proc.pid else "pytest")
            + _stuck_words(saved)
        )
        if test.pid != proc.pid:
            _kill_tree(test.pid)
            return False
        stop_group(proc, pgid, HARD_TIMEOUT_STOP_SECONDS)
        return True

    def _collect_timeout(self, proc: subprocess.Popen[bytes], pgid: int,
                         module: _Collecting) -> None:
        """Collecting (importing) one module took longer than the tier's collect-timeout: no
        per-test limit covers that, and no in-process timer can be trusted inside an import.
        Dump, name the line, kill; the next attempt leaves the module out, so the rest runs."""
        limit = module.timeout or 0.0
        saved = self._dump(proc.pid, module.nodeid, "collect-timeout",
                           f"collecting {module.path} took more than {limit:g}s",
                           stuck_pid=module.pid)
        message = (f"timeout: collecting {module.path} (importing it) ran past its {limit:g}s "
                   "collect-timeout; its tests did not run" + _stuck_words(saved))
        self.events.emit(ev.COLLECT_TIMEOUT, nodeid=module.nodeid, path=module.path,
                         message=message, dump=saved.path)
        self._module_failed(module, "collect-timeout", message, culprit=saved.culprit,
                            dump=saved.path)
        self._say(f"tiergate: collecting {module.path} is stuck past {limit:g}s; killing pytest, "
                  "then going on without it" + _stuck_words(saved))
        stop_group(proc, pgid, HARD_TIMEOUT_STOP_SECONDS)

    def _crashed_collecting(self, returncode: int) -> None:
        how = _how_pytest_ended(returncode, "")
        for module in list(self.collecting.values()):
            message = (f"crash: pytest {how} while collecting {module.path} (importing it); "
                       "its tests did not run")
            self._module_failed(module, "crash", message, details={"returncode": returncode})
            self._say(f"tiergate: pytest {how} while collecting {module.path}; going on "
                      "without it")

    def _module_failed(self, module: _Collecting, kind: str, message: str,
                       **extra: Any) -> None:
        """A module that could not be collected: an error in the results (as pytest reports a
        module that fails to import), a finding, and no place in later attempts."""
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

    _exit_watch: _ExitWatch | None = None  # from pytest's session end to its exit

    def _exit_hang(self, proc: subprocess.Popen[bytes], pgid: int) -> bool:
        """pytest said its session ended and has not exited: after its own wrap-up (terminal
        summary, unconfigure, cleanups) the interpreter waits only for non-daemon threads, atexit
        handlers and the children those wait for. A hang is a whole grace during which pytest's
        main thread and the non-daemon threads did no work: slow is not stuck (a big terminal
        summary, a last garbage collection on a busy machine), and daemon threads are never
        waited for, so they are never the reason. The results stand; the hang is a finding,
        named, and pytest is killed."""
        if self.session_end is None:
            return False
        blocking = [t for t in self.blocking.get(proc.pid) or [] if isinstance(t, dict)]
        watch = self._exit_watch
        if watch is None or watch.session_end != self.session_end:
            watch = self._exit_watch = _ExitWatch(proc.pid, blocking, self.session_end)
        if not watch.hung(time.monotonic(), self.tier.grace):
            return False
        stacks = stacks_file(proc.pid, self.run_dir)
        offset = _file_size(stacks)
        saved = self._dump(proc.pid, None, "exit-hang",
                           f"pytest's session ended and for {self.tier.grace:g}s it has not "
                           "exited nor done any work", stuck_pid=proc.pid)
        main = _main_thread_since(stacks, offset)
        why, culprit = _exit_blocker(main, watch.waited_threads(), saved, proc.pid, self.plan.root)
        message = (f"pytest finished its tests but did not exit within {self.tier.grace:g}s "
                   f"and was idle: {why}; it was killed (every test result stands)")
        self.events.emit(ev.EXIT_HANG, waited=self.tier.grace, blocking=blocking,
                         dump=saved.path)
        self._emit_finding(Finding(kind="exit-hang", test=None, severity="error",
                                   message=message, culprit=culprit, dump=saved.path,
                                   location=Location(culprit.path, culprit.line)
                                   if culprit else None))
        self._say(f"tiergate: {message}")
        stop_group(proc, pgid, HARD_TIMEOUT_STOP_SECONDS)
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

    def _expire_budget(self, proc: subprocess.Popen[bytes], pgid: int) -> None:
        stuck, saved = self._dump_stuck(
            proc, "job-timeout", f"the tier's {self.tier.budget:g}s budget ran out"
        )
        self._blame_in_flight(
            "job-timeout",
            f"timeout: the tier's budget of {self.tier.budget:g}s ran out",
            _stuck_words(saved),
            culprit=saved.culprit,
            dump=saved.path,
        )
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
        stop_group(proc, pgid, self.tier.grace)

    def _cancel(self, proc: subprocess.Popen[bytes], pgid: int) -> None:
        name = signal.Signals(self.cancel_signal or signal.SIGTERM).name
        stuck, saved = self._dump_stuck(proc, "cancelled", f"the run was cancelled ({name})")
        self.events.emit(
            ev.CANCELLED, signal=name, dump=saved.path, nodeid=stuck.nodeid if stuck else None
        )
        self._say(f"tiergate: {name} received; stopping pytest and writing the results")
        stop_group(proc, pgid, min(self.tier.grace, CANCEL_STOP_SECONDS))

    def _crashed(self, returncode: int) -> None:
        how = _how_pytest_ended(returncode, " before finishing")
        blamed = self._blame_in_flight(
            "crash", f"crash: pytest {how}", "", details={"returncode": returncode}
        )
        self.finished.update(blamed)  # never run again: it may be what kills pytest
        self._say(f"tiergate: pytest {how}")

    def _blame_in_flight(self, kind: str, what: str, after: str, **extra: Any) -> list[str]:
        """One error finding per test in flight (or one for the run when none was): what
        happened, while which test. Returns the node ids blamed."""
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

    def _watch_tree(self, proc: subprocess.Popen[bytes], pgid: int) -> TreeWatch | None:
        if not self.tier.sample_interval:
            return None
        return TreeWatch(
            root_pid=proc.pid,
            tier=self.tier,
            attempt=self.attempt,
            emit=self.events.emit,
            dump=lambda nodeid, kind, reason, stuck: self._dump(
                proc.pid, nodeid, kind, reason, stuck_pid=stuck
            ),
            stop=lambda grace: self._stop_over_limit(proc, pgid, grace),
            in_flight=lambda: list(self.in_flight.values()),
            fast=POLL_SECONDS,
            adopter=os.getpid(),  # a subreaper: what the tree orphans (a daemon) is ours to count
        )

    def _stop_over_limit(self, proc: subprocess.Popen[bytes], pgid: int, grace: float) -> None:
        """The tree went over a limit: what it orphaned to us first (a daemon may be what holds
        the memory, and no group signal reaches it), then pytest's group."""
        self._kill_leftovers("when the tree went over a limit", adopted_from_tree=proc.pid)
        stop_group(proc, pgid, grace)

    def _over_limit(self, watch: TreeWatch) -> bool:
        """True when the tree crossed a limit and pytest was killed; the test it blames is
        finished (failed, never re-run) and the attempt ends so the rest can resume."""
        killed = watch.poll()
        if killed is None:
            return False
        if killed.nodeid is not None:
            self.in_flight.pop(killed.nodeid, None)
            self.finished.add(killed.nodeid)
        self._say(
            f"tiergate: {killed.verdict.describe()}"
            + (f" in {killed.nodeid}" if killed.nodeid else "")
            + "; pytest was killed"
        )
        return True

    def _dump(
        self, root: int, nodeid: str | None, kind: str, reason: str, stuck_pid: int | None
    ) -> SavedDump:
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
        print(text, file=self.out, flush=True)

    def _print_summary(self, run: RunResult) -> None:
        from tiergate.report.terminal import render_terminal

        # A CI log is no terminal: 80 columns would cut every finding; logs wrap nothing.
        width = shutil.get_terminal_size((120, 24)).columns if self.out.isatty() else 120
        self._say(render_terminal(run, width=width))


def _names_targets(args: Sequence[str], root: Path) -> bool:
    """Did the user name what to collect (a path or node id) in the pytest arguments?"""
    return any(not a.startswith("-") and (root / a.split("::")[0]).exists() for a in args)


def _where(test: _InFlight | None) -> Location | None:
    return Location(test.path, test.line) if test and test.path else None


def _stuck_words(saved: SavedDump) -> str:
    culprit = saved.culprit
    if culprit is None:
        return f" (no dump: {saved.problem})" if saved.problem else ""
    reason = f", {culprit.reason}" if culprit.reason else ""
    return f"; stuck in {culprit.function} ({culprit.path}:{culprit.line}){reason}"


def _how_pytest_ended(returncode: int, early: str) -> str:
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}{early}"


def _thread_words(thread: dict[str, Any]) -> str:
    where = thread.get("where") or {}
    at = (f" in {where.get('function')} ({where.get('path')}:{where.get('line')})"
          if where else "")
    return f"thread {thread.get('name')!r}{at}"


# -- the exit watch (issue 15) -------------------------------------------------------------

# Below this share of one CPU over a whole grace, the exiting pytest is waiting, not working:
# a thread that polls (a sleep loop, a timed wait) uses far less; a terminal summary, an import
# or a garbage collection uses nearly all of it, even on a loaded 2-core runner.
_WORKING_SHARE = 0.1
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _thread_ticks(pid: int, tid: int) -> int | None:
    """CPU clock ticks (user + system) used by thread *tid* of *pid*; None once it has ended."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


class _ExitWatch:
    """Is pytest, past its session end, still on its way out? Judged over windows of one grace
    each by what the interpreter really waits for: its main thread (tid = pid) and the non-daemon
    threads alive at the session end. A window in which they used CPU, or one of the threads
    ended, is progress and starts the next window."""

    def __init__(self, pid: int, blocking: list[dict[str, Any]], session_end: float) -> None:
        self.pid = pid
        self.session_end = session_end
        self.blocking = blocking
        tids = [t.get("tid") for t in blocking]
        self.tids = [pid, *(tid for tid in tids if isinstance(tid, int))]
        self.since = session_end
        self.ticks = self._sample()

    def _sample(self) -> dict[int, int | None]:
        return {tid: _thread_ticks(self.pid, tid) for tid in self.tids}

    def hung(self, now: float, grace: float) -> bool:
        if now < self.since + grace:
            return False
        ticks = self._sample()
        ended = any(ticks[t] is None and self.ticks[t] is not None for t in self.tids)
        used = sum((ticks[t] or 0) - (self.ticks[t] or 0) for t in self.tids
                   if ticks[t] is not None)
        if ended or used >= _WORKING_SHARE * (now - self.since) * _CLOCK_TICKS:
            self.since, self.ticks = now, ticks
            return False
        return True

    def waited_threads(self) -> list[dict[str, Any]]:
        """The non-daemon threads still alive (all of them, from a plugin that sent no tids)."""
        return [t for t in self.blocking if not isinstance(t.get("tid"), int)
                or _thread_ticks(self.pid, t["tid"]) is not None]


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _main_thread_since(stacks: Path, offset: int) -> ThreadStack | None:
    """pytest's main thread as the dump just taken saw it: from what pytest's dump handler
    appended to its stacks file past *offset* (the later sample, when it was sampled twice)."""
    from tiergate.diagnose.culprit import parse_faulthandler

    try:
        with stacks.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return None
    return next((t for t in parse_faulthandler(text) if t.main), None)


def _exit_blocker(main: ThreadStack | None, threads: list[dict[str, Any]], saved: SavedDump,
                  pid: int, root: Path) -> tuple[str, Culprit | None]:
    """What the exit waits for, in words, and its culprit. Read from where the main thread is:
    in ``threading._shutdown`` the interpreter joins non-daemon threads; in pytest's entry point,
    pytest's own wrap-up has not returned; anywhere else an atexit handler runs (it is called
    from C, so it is the outermost frame). Never a daemon thread: nothing waits for those."""
    from tiergate.diagnose.culprit import CodeFilter

    outermost = main.frames[-1] if main is not None and main.frames else None
    joining = (outermost is not None and outermost.path.endswith("threading.py")
               and outermost.function == "_shutdown")
    if threads and (joining or outermost is None):
        first = next((t for t in threads if t.get("where")), None)
        return (f"the interpreter waits for non-daemon threads: "
                f"{'; '.join(_thread_words(t) for t in threads)}", _thread_culprit(first))
    trusted = _dump_culprit_of(main, saved, pid)
    stuck = _stuck_words(SavedDump(saved.path, trusted)) if trusted else ""
    if main is None or outermost is None:
        return f"its stacks could not be read{stuck or _stuck_words(saved)}", trusted
    code = CodeFilter(root)
    culprit = trusted or _main_culprit(main, code, pid)
    if not trusted and culprit is not None:
        stuck = f"; stuck in {culprit.function} ({culprit.path}:{culprit.line})"
    if joining:
        what = "the interpreter waits for a non-daemon thread started after the session ended"
    elif outermost.function == "<module>":
        what = "pytest's own wrap-up after the session (terminal summary, unconfigure) is stuck"
    else:
        what = (f"the atexit handler {outermost.function} ({code.display(outermost.path)}) "
                "has not returned")
    return what + stuck, culprit


def _thread_culprit(thread: dict[str, Any] | None) -> Culprit | None:
    if thread is None:
        return None
    where = thread["where"]
    return Culprit(path=str(where.get("path")), line=where.get("line"),
                   function=str(where.get("function")),
                   reason=f"thread {thread.get('name')!r} is still running")


def _dump_culprit_of(main: ThreadStack | None, saved: SavedDump, pid: int) -> Culprit | None:
    """The dump's culprit where it explains the main thread's wait: a child process, or a frame
    of the main thread itself; not another thread of pytest's (a daemon one, as likely as not)."""
    culprit = saved.culprit
    if culprit is None:
        return None
    if culprit.pid is not None and culprit.pid != pid:
        return culprit
    frames = main.frames if main is not None else ()
    if any(f.function == culprit.function and f.line == culprit.line for f in frames):
        return culprit
    return None


def _main_culprit(main: ThreadStack, code: CodeFilter, pid: int) -> Culprit | None:
    """The main thread's innermost frame of the user's code, else its innermost frame."""
    frame = next((f for f in main.frames if code.is_user(f.path)), main.frames[0])
    return Culprit(path=code.display(frame.path), line=frame.line, function=frame.function,
                   pid=pid)


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


def _kill_tree(pid: int) -> None:
    import psutil

    try:
        root = psutil.Process(pid)
        family = [*root.children(recursive=True), root]
    except psutil.Error:
        return
    for proc in family:
        try:
            proc.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(family, timeout=3)


def run_plan(plan: RunPlan, **kwargs: Any) -> int:
    return Supervisor(plan, **kwargs).run()
