"""``tiergate run``: the supervisor around pytest.

It starts pytest in its own process group, follows the event stream the plugin writes, and owns
the rungs of the escalation ladder that pytest itself cannot climb: the hard timeout of a test that
never returns (GIL held in C, signals blocked), the tier's budget, a cancel from CI, and pytest
dying outright. Whatever happens it ends pytest's whole tree, resumes with the tests left while the
budget allows, and writes the result files from the event log.
"""

from __future__ import annotations

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
from typing import Any, TextIO

from tiergate import events as ev
from tiergate.boot import boot_env
from tiergate.config import Tier
from tiergate.findings import Finding, Location
from tiergate.procs import (
    become_subreaper,
    kill_leftovers,
    reap_zombies,
    signal_on_parent_death,
    stop_group,
)
from tiergate.resultfiles import clear_results, write_result_files
from tiergate.results import RunResult, load_results_dir
from tiergate.runspec import RunSpec
from tiergate.treedumps import SavedDump, dump_name, dump_tree
from tiergate.treewatch import TreeWatch

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

    # -- the whole run ---------------------------------------------------------------------

    def run(self) -> int:
        self.started = time.monotonic()
        self.deadline = self.started + self.tier.budget
        self._prepare()
        self.events = ev.EventWriter(self.events_path)
        self.tail = ev.EventTail(self.events_path)
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
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        signal_on_parent_death(signal.SIGTERM)
        try:
            self._attempts()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self._kill_leftovers("at the end of the run")
        run = load_results_dir(self.results_dir)
        code = self._exit_code(run)
        self.events.emit(ev.RUN_FINISH, exit_code=code, duration=time.monotonic() - self.started)
        self.events.close()
        run.exit_code, run.finished = code, time.time()
        write_result_files(self.results_dir, run)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self._print_summary(run)
        return code

    def _prepare(self) -> None:
        clear_results(self.results_dir)
        self.run_dir.mkdir(parents=True)

    def _attempts(self) -> None:
        only: tuple[str, ...] | None = None
        while True:
            done_before = len(self.finished)
            ending = self._attempt(only)
            if ending in ("finished", "budget", "cancelled", "usage"):
                return
            left = tuple(n for n in self.collected if n not in self.finished)
            if not left or len(self.finished) == done_before:
                return  # nothing left, or the last attempt made no progress: stop, don't loop
            if time.monotonic() >= self.deadline:
                return
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
        )
        spec_file = spec.write(self.run_dir / f"attempt-{self.attempt}.json")
        argv = self._argv(spec_file)
        self.events.emit(
            ev.ATTEMPT_START,
            attempt=self.attempt,
            argv=argv,
            only=len(only) if only is not None else None,
        )
        if self.attempt > 1:
            self._say(
                f"tiergate: resuming with the {len(only or ())} tests not run yet "
                f"(attempt {self.attempt})"
            )
        proc = subprocess.Popen(argv, cwd=self.plan.root, env=self._env(), start_new_session=True)
        pgid = proc.pid
        ending = ""
        watch = self._watch_tree(proc, pgid)  # issue 8: samples and resource limits
        while proc.poll() is None:
            time.sleep(POLL_SECONDS)
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
        self._follow()
        self.pytest_exit = proc.returncode if proc.returncode is not None else proc.wait()
        stop_group(proc, pgid, 0)  # anything of the group still alive goes with pytest
        if not ending:
            if proc.pid in self.session_finished:
                ending = "usage" if self.pytest_exit in (3, 4) else "finished"
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
        self._kill_leftovers(f"after pytest ended (attempt {self.attempt})")
        return ending

    def _kill_leftovers(self, when: str, adopted_from_tree: int | None = None) -> None:
        """pytest is gone: whatever still descends from us was started by the run and escaped its
        process group (a new session, a double fork). It is killed and named. With
        *adopted_from_tree* (pytest still running), only what that tree orphaned to us."""
        for leftover in kill_leftovers(adopted_from_tree=adopted_from_tree):
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
        return argv + args

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("PYTEST_CURRENT_TEST", None)  # an outer pytest's: would name our leftovers' test
        env["TIERGATE_TIER"] = self.tier.name
        env["TIERGATE_EVENTS"] = str(self.events_path)
        env.update(boot_env(self.run_dir, env))  # every Python process of the run can be dumped
        return env

    # -- following the event stream --------------------------------------------------------

    def _follow(self) -> None:
        for record in self.tail.poll():
            kind = record["event"]
            if kind == ev.COLLECTED and not self.collected:
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
            elif kind == ev.SESSION_FINISH and record.get("worker") is None:
                self.session_finished.add(int(record["pid"]))

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
        how = (
            f"was killed by {signal.Signals(-returncode).name}"
            if returncode < 0
            else f"exited with code {returncode} before finishing"
        )
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

    # -- resource pressure (issue 8; the logic lives in tiergate.treewatch) -------------------

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
        if self.cancel_signal is None:
            self.cancel_signal = signum

    def _emit_finding(self, finding: Finding) -> None:
        self.events.emit(ev.FINDING, finding=finding.to_json())

    def _exit_code(self, run: RunResult) -> int:
        if self.cancel_signal is not None:
            return 128 + self.cancel_signal
        if self.pytest_exit == 4:
            return EXIT_USAGE
        if self.pytest_exit == 5 and not run.tests and not run.findings:
            return EXIT_NO_TESTS
        return EXIT_FAILED if run.outcome == "failed" else EXIT_PASSED

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
