"""Run act so that nothing it starts outlives it: ``python run_act.py ACT [ARGS...]``.

This process makes itself a child subreaper (Linux prctl), runs act as its child and passes
SIGINT/SIGTERM on to it (act cancels the run on SIGINT and still runs the ``if: always()`` and
``if: cancelled()`` steps). act stops a cancelled step with SIGKILL, which orphans what that step
started (tiergate's supervisor, pytest, a test's helper process); as a subreaper this process
inherits those orphans, and once act has exited it kills and reaps every process still under it:
all of them were started by this act run. Exits with act's exit code.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from types import FrameType

import psutil

PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def _kill_leftovers(deadline: float = 10.0) -> int:
    """SIGKILL every process below this one and reap it; returns how many there were."""
    me = psutil.Process()
    leftovers = me.children(recursive=True)
    for proc in leftovers:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break  # nothing left under us
        if pid == 0:
            if not me.children(recursive=True):
                break
            time.sleep(0.05)
    return len(leftovers)


def main(argv: list[str]) -> int:
    _become_subreaper()
    act = subprocess.Popen(argv)

    def forward(signum: int, frame: FrameType | None) -> None:
        act.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    code = act.wait()
    left = _kill_leftovers()
    if left:
        print(f"run_act: killed {left} processes left behind by the act run", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
