"""The run's last will: a small process that outlives the supervisor for one purpose.

pytest dies with the supervisor through a parent-death signal, but that reaches only pytest:
its children (an xdist worker, a server a test started) are orphaned and would run on with no
timeout and no budget. So the supervisor starts this process first and keeps a pipe to it. It
writes ``+PGID`` for each pytest it starts and ``done`` when it ends normally. If the pipe closes
without ``done`` (the supervisor was SIGKILLed, the OOM killer took it, a test killed its parent),
the will is carried out: SIGKILL to each process group it was told of, then to every process
whose environment carries this run's ``TIERGATE_RUN_DIR``: processes the run started, by
construction, and nothing else.

The code runs in ``python -I -S``: no site, no imports beyond the standard library's core, so it
costs a few milliseconds and cannot be broken by the project's environment.

Why it has its own kill loop instead of ``procs.kill_tree`` / ``procs.stop_group``, the run's one
process-control API: those cannot hold their guarantees here. ``stop_group`` needs the ``Popen``
of the group's leader and reaps it, but the will is no parent of pytest (it cannot wait on it).
``kill_tree`` reads the tree from a live root, but when the will acts its root has died and the
orphans have been re-parented to init or a subreaper: no tree leads to them any more, only the
run's marker in their environment does. Both need psutil and ``tiergate`` importable, that is
site-packages of the project's interpreter, which ``-I -S`` deliberately keeps out so that a
broken or half-upgraded environment cannot stop the will. There is no grace rung either: the
supervisor that would have collected dumps is gone, so SIGKILL is all that is left to do.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tiergate.protocol import environ

_WILL = r"""
import os, signal, sys
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(sig, signal.SIG_IGN)  # a cancel is the supervisor's to handle
marker = os.fsencode(sys.argv[1])  # NAME=VALUE, as /proc/PID/environ holds it
groups = set()
for line in sys.stdin.buffer:
    line = line.strip()
    if line == b"done":
        sys.exit(0)
    if line[:1] == b"+" and line[1:].isdigit():
        groups.add(int(line[1:]))
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
me = os.getpid()
for _ in range(3):  # what dies can leave children that were just being started
    found = False
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open("/proc/%s/environ" % name, "rb") as handle:
                environ = handle.read().split(b"\0")
        except OSError:
            continue
        if marker in environ:
            try:
                os.kill(int(name), signal.SIGKILL)
                found = True
            except OSError:
                pass
    if not found:
        break
"""


class LastWill:
    """The supervisor's end of the pipe to the will process."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc

    @classmethod
    def start(cls, run_dir: Path) -> LastWill | None:
        """None where it cannot run (no /proc): the parent-death signal on pytest still holds."""
        if not Path("/proc/self/environ").exists():
            return None
        env = {k: v for k, v in os.environ.items() if not k.startswith(environ.PREFIX)}
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _WILL, f"{environ.RUN_DIR}={run_dir}"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, close_fds=True,
        )
        return cls(proc)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def watch_group(self, pgid: int) -> None:
        self._send(f"+{pgid}\n")

    def _send(self, line: str) -> None:
        stdin = self._proc.stdin
        if stdin is None:
            return
        try:
            stdin.write(line.encode())
            stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the will process is gone: the parent-death signal on pytest remains

    def revoke(self) -> None:
        """The supervisor ends normally: nothing to carry out."""
        self._send("done\n")
        if self._proc.stdin is not None:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - it exits on "done"
            self._proc.kill()
            self._proc.wait()
