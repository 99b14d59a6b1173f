"""Process control for the supervisor: a child subreaper, process groups, and the promise that the
run leaves nothing behind. Only processes this run started are ever signalled."""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable

import psutil

from tiergate.protocol.redact import command_line

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


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


def descendants(pid: int | None = None) -> list[psutil.Process]:
    try:
        return psutil.Process(pid or os.getpid()).children(recursive=True)
    except psutil.Error:
        return []


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


def stop_group(proc: subprocess.Popen[bytes], pgid: int, grace: float) -> None:
    """SIGTERM to pytest's group, up to *grace* seconds, then SIGKILL; nothing of it is left."""
    if proc.poll() is None:
        signal_group(pgid, signal.SIGTERM)
        try:
            _wait(proc, max(grace, 0.0))
        except subprocess.TimeoutExpired:
            pass
    signal_group(pgid, signal.SIGKILL)
    try:
        _wait(proc, 5)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not wait on anything
        pass


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
    def of(cls, proc: psutil.Process) -> StartedDuring | None:
        try:
            return cls.parse(proc.environ().get("PYTEST_CURRENT_TEST"))
        except (psutil.Error, OSError):
            return None

    def describe(self) -> str:
        return f"the {self.phase} of {self.test}" if self.phase else self.test


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


def _adopted(tree_root: int) -> list[psutil.Process]:
    try:
        children = psutil.Process().children()
    except psutil.Error:
        return []
    found: list[psutil.Process] = []
    for pid in adopted_from(tree_root, [child.pid for child in children]):
        try:
            orphan = psutil.Process(pid)
            found += [orphan, *orphan.children(recursive=True)]
        except psutil.Error:
            continue
    return found


def kill_leftovers(exclude: set[int] | None = None, *,
                   adopted_from_tree: int | None = None) -> list[Leftover]:
    """SIGKILL every process still descending from us (ours by construction: we started them, or
    they were orphaned to us as subreaper), or with *adopted_from_tree* (pytest's pid) only what
    that tree orphaned to us. Returns what they were, for the findings."""
    exclude = exclude or set()
    killed: list[Leftover] = []
    for _ in range(3):  # a dying parent can re-parent its children to us mid-walk; look again
        candidates = (descendants() if adopted_from_tree is None
                      else _adopted(adopted_from_tree))
        found = [p for p in candidates if p.pid not in exclude]
        if not found:
            break
        for proc in found:
            try:
                info = Leftover(
                    pid=proc.pid,
                    cmdline=command_line(proc.cmdline())[:300],
                    age=time.time() - proc.create_time(),
                    started_during=StartedDuring.of(proc),
                )
                proc.kill()
                killed.append(info)
            except psutil.Error:
                continue
        psutil.wait_procs(found, timeout=2)
    reap_zombies(keep=adopted_from_tree)  # pytest's exit status belongs to its Popen
    return killed


def reap_zombies(keep: int | None = None) -> None:
    """Collect the exit status of re-parented orphans so they do not linger as zombies. *keep* is
    our own direct child (pytest) whose status belongs to its Popen object."""
    for proc in descendants():
        if proc.pid == keep:
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(proc.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError):
            continue
