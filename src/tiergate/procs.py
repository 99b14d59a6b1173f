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

import psutil

from tiergate.redact import redact

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


def stop_group(proc: subprocess.Popen[bytes], pgid: int, grace: float) -> None:
    """SIGTERM to pytest's group, up to *grace* seconds, then SIGKILL; nothing of it is left."""
    if proc.poll() is None:
        signal_group(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=max(grace, 0.0))
        except subprocess.TimeoutExpired:
            pass
    signal_group(pgid, signal.SIGKILL)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not wait on anything
        pass


@dataclasses.dataclass(frozen=True)
class Leftover:
    pid: int
    cmdline: str  # redacted
    age: float  # seconds it had been running
    # PYTEST_CURRENT_TEST as the process inherited it: "nodeid (phase)" when a test started it
    started_during: str | None = None

    @property
    def test(self) -> str | None:
        """The test that was running (in this process's ancestry) when it was started."""
        return self._split()[0]

    @property
    def phase(self) -> str | None:
        return self._split()[1]

    def _split(self) -> tuple[str | None, str | None]:
        if not self.started_during:
            return None, None
        nodeid, _, phase = self.started_during.rpartition(" (")
        if not nodeid or not phase.endswith(")"):
            return self.started_during, None
        return nodeid, phase[:-1]


def kill_leftovers(exclude: set[int] | None = None) -> list[Leftover]:
    """SIGKILL every process still descending from us (ours by construction: we started them, or
    they were orphaned to us as subreaper). Returns what they were, for the findings."""
    exclude = exclude or set()
    killed: list[Leftover] = []
    for _ in range(3):  # a dying parent can re-parent its children to us mid-walk; look again
        found = [p for p in descendants() if p.pid not in exclude]
        if not found:
            break
        for proc in found:
            try:
                info = Leftover(
                    pid=proc.pid,
                    cmdline=redact(" ".join(proc.cmdline()).replace("\n", "\\n"))[:300],
                    age=time.time() - proc.create_time(),
                    started_during=_inherited_test(proc),
                )
                proc.kill()
                killed.append(info)
            except psutil.Error:
                continue
        psutil.wait_procs(found, timeout=2)
    reap_zombies()
    return killed


def _inherited_test(proc: psutil.Process) -> str | None:
    try:
        return proc.environ().get("PYTEST_CURRENT_TEST")
    except psutil.Error:
        return None


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
