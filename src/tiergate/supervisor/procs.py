"""Process control for the supervisor, the one place it starts, signals, kills and reaps: a child
subreaper, process groups, and the promise that the run leaves nothing behind. Only processes
this run started are ever signalled.

- ``start``: pytest in a session (and process group) of its own, SIGKILLed if we die;
- ``signal_group``: one signal to such a group;
- ``stop_group`` and ``kill_tree``: the ladder (SIGTERM, a grace, SIGKILL, reap) for a group we
  started, and for a tree that is not a group (an xdist worker and what it started);
- ``kill_leftovers``: what escaped its group and is still ours, killed and named;
- ``reap``: the exit status of orphans re-parented to us, so none lingers as a zombie.

Children are listed by ``tiergate.diagnose.procfs`` (the kernel's children files): the cost is
in proportion to the run's own tree, never to every process on the machine.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where a process is signalled or described, not to start pytest
    import psutil

from tiergate.diagnose import procfs
from tiergate.protocol.redact import command_line

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_KILL_WAIT_SECONDS = 5.0  # SIGKILL waits on nothing; this only bounds a kernel that lags


def _prctl(option: int, value: int) -> bool:
    try:
        return int(_libc().prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library, through the symbols this process already has (every CPython links it):
    ``ctypes.util.find_library`` would run ``ldconfig -p`` in a subprocess at each call, one
    of them between fork and exec of every pytest."""
    return ctypes.CDLL(None, use_errno=True)


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to us instead of init, so we can find and end them."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def signal_on_parent_death(sig: int) -> None:
    """When whatever started us dies (a CI step shell killed outright), the kernel sends us *sig*,
    so the run is stopped and reported like a cancel instead of going on unseen."""
    parent = os.getppid()
    if _prctl(_PR_SET_PDEATHSIG, sig) and os.getppid() != parent:
        os.kill(os.getpid(), sig)  # the parent died before the request took effect


def die_with_parent() -> None:
    """In a child between fork and exec (Popen's preexec_fn): SIGKILL when the supervisor dies,
    however it dies, so pytest never runs on unwatched under init."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


# -- starting and signalling -------------------------------------------------------------------

# The pids whose exit status belongs to a Popen of ours (pytest): ``reap`` leaves them alone, or
# Popen would find no status to collect and take the exit for a clean one (returncode 0).
_waited: set[int] = set()


def start(argv: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
    """*argv* in a session and process group of its own (its pgid is its pid), SIGKILLed by the
    kernel when the supervisor dies; *popen* is passed on (cwd, env, stdout, stderr)."""
    proc = subprocess.Popen(list(argv), start_new_session=True, preexec_fn=die_with_parent,
                            **popen)
    _waited.add(proc.pid)
    return proc


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# (pid, wait) while the supervisor pumps that child's stdout and stderr (supervisor/outpump.py):
# waiting for it to stop keeps the output flowing, or a child writing as it stops would block on
# a full pipe until it is killed.
_pumping: tuple[int, Callable[[float], None]] | None = None


def pump_while_waiting(pid: int | None, wait: Callable[[float], None] | None) -> None:
    global _pumping
    _pumping = (pid, wait) if pid is not None and wait is not None else None


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """``proc.wait(timeout)``, pumping the child's output meanwhile when it is pumped."""
    pumping = _pumping
    if pumping is None or pumping[0] != proc.pid:
        proc.wait(timeout=timeout)
        return
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        pumping[1](min(left, 0.05))


# -- the ladder ---------------------------------------------------------------------------------


def stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """The ladder for a process ``start`` started: SIGTERM to its group, up to *grace* seconds,
    then SIGKILL to the group, and its exit status collected. Nothing of the group is left."""
    if proc.poll() is None and grace > 0:
        signal_group(proc.pid, signal.SIGTERM)
        try:
            _wait(proc, grace)
        except subprocess.TimeoutExpired:
            pass
    signal_group(proc.pid, signal.SIGKILL)
    try:
        _wait(proc, _KILL_WAIT_SECONDS)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not wait on anything
        pass
    if proc.returncode is not None:
        _waited.discard(proc.pid)
    _wait_group_gone(proc.pid, _KILL_WAIT_SECONDS)


def _wait_group_gone(pgid: int, timeout: float) -> None:
    """Until no process of group *pgid* is left. A member the group's SIGKILL hit can still be
    running for a moment on a loaded machine (an xdist worker when the tier stopped at
    max-fail), and pytest's end re-parents it to us: looked at then, it would pass for a
    process that escaped the group (``kill_leftovers``). What ends and is ours is reaped as it
    goes, so its zombie does not keep the group alive."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except OSError:  # no process left in it (or none we may signal: not ours to wait for)
            return
        if time.monotonic() >= deadline:
            return
        reap()
        time.sleep(0.005)


def kill_tree(pid: int, grace: float = 0.0) -> None:
    """The ladder for a tree that is no group of ours (an xdist worker, which its pytest
    controller reaps, and what it started): SIGTERM to each, up to *grace* seconds, then SIGKILL
    to what is left. The tree is read once, before the first signal, so nothing re-parented to
    init on the way is missed."""
    import psutil

    family = _processes([pid, *(child for child, _ in procfs.descendants(pid))])
    if grace > 0:
        _signal_all(family, signal.SIGTERM)
        family = psutil.wait_procs(family, timeout=grace)[1]
    _signal_all(family, signal.SIGKILL)
    psutil.wait_procs(family, timeout=_KILL_WAIT_SECONDS)


def _processes(pids: Iterable[int]) -> list[psutil.Process]:
    """psutil's handle on each pid: it remembers the start time, so a signal sent through it
    never reaches a process that took over the pid of one that ended."""
    import psutil

    found = []
    for pid in pids:
        try:
            found.append(psutil.Process(pid))
        except psutil.Error:
            continue
    return found


def _signal_all(procs: Iterable[psutil.Process], sig: int) -> None:
    import psutil

    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            continue


# -- what escaped -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StartedDuring:
    """The test that was running when a process, or the process that started it, copied its
    environment: read from the ``PYTEST_CURRENT_TEST`` it inherited."""

    test: str
    phase: str | None  # setup, call, teardown

    @classmethod
    def parse(cls, value: str | None) -> StartedDuring | None:
        if not value:
            return None
        nodeid, _, phase = value.rpartition(" (")
        if not nodeid or not phase.endswith(")"):
            return cls(value, None)
        return cls(nodeid, phase[:-1])

    @classmethod
    def of(cls, pid: int) -> StartedDuring | None:
        return cls.parse(_environ_value(pid, b"PYTEST_CURRENT_TEST"))

    def describe(self) -> str:
        return f"the {self.phase} of {self.test}" if self.phase else self.test


def _environ_value(pid: int, name: bytes) -> str | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            entries = handle.read().split(b"\0")
    except OSError:
        return None
    prefix = name + b"="
    value = next((e[len(prefix):] for e in entries if e.startswith(prefix)), None)
    return value.decode("utf-8", "replace") if value is not None else None


@dataclasses.dataclass(frozen=True)
class Leftover:
    pid: int
    cmdline: str  # redacted
    age: float  # seconds it had been running
    started_during: StartedDuring | None = None


def adopted_from(tree_root: int, children: Iterable[int], adopter: int | None = None) -> list[int]:
    """Which *children* of the subreaper *adopter* (default: us) it adopted from the tree of
    *tree_root* (pytest, started in a session of its own): not the root itself, and not in the
    adopter's own session, where its own helpers run (py-spy for a dump)."""
    own = _session(adopter if adopter is not None else os.getpid())
    return [pid for pid in children
            if pid != tree_root and _session(pid) not in (None, own)]


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def _escaped(adopted_from_tree: int | None) -> list[int]:
    """Every process still descending from us, or only what *adopted_from_tree* orphaned to us
    (with what those started in turn)."""
    if adopted_from_tree is None:
        return [pid for pid, _ in procfs.descendants(os.getpid())]
    try:
        orphans = adopted_from(adopted_from_tree, procfs.children("self"))
    except OSError:
        return []
    return [*orphans, *(pid for orphan in orphans for pid, _ in procfs.descendants(orphan))]


def _describe(proc: psutil.Process) -> Leftover:
    return Leftover(pid=proc.pid, cmdline=command_line(proc.cmdline())[:300],
                    age=time.time() - proc.create_time(), started_during=StartedDuring.of(proc.pid))


def kill_leftovers(exclude: set[int] | None = None, *,
                   adopted_from_tree: int | None = None) -> list[Leftover]:
    """SIGKILL every process still descending from us (ours by construction: we started them, or
    they were orphaned to us as subreaper), or with *adopted_from_tree* (pytest's pid) only what
    that tree orphaned to us. Returns what they were, for the findings."""
    import psutil

    exclude = exclude or set()
    killed: list[Leftover] = []
    for _ in range(3):  # a dying parent can re-parent its children to us mid-walk; look again
        found = _processes(p for p in _escaped(adopted_from_tree) if p not in exclude)
        if not found:
            break
        for proc in found:
            try:
                info = _describe(proc)
                proc.kill()
                killed.append(info)
            except psutil.Error:
                continue
        psutil.wait_procs(found, timeout=2)
    reap()
    return killed


def reap() -> None:
    """Collect the exit status of every child of ours that ended (orphans re-parented to us, a
    helper), so none lingers as a zombie; never one a Popen waits for (``_waited``). A peek
    (WNOWAIT) says whose status is ready before it is taken."""
    while True:
        try:
            ready = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return  # no children at all
        if ready is None:
            return  # none has ended
        if ready.si_pid in _waited:
            _reap_each()  # the kernel shows that one first until its Popen takes it
            return
        _collect(ready.si_pid)


def _reap_each() -> None:
    try:
        ours = procfs.children("self")
    except OSError:
        return
    for pid in ours:
        if pid not in _waited:
            _collect(pid)


def _collect(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # taken meanwhile (a Popen in another thread: py-spy for a dump)
