"""The start-up hook that makes every Python process of a run dumpable, and the checks around it.

``boot_env`` gives the environment for pytest: ``site/`` first on PYTHONPATH (so ``site`` runs
``site/sitecustomize.py`` in every Python process started under the run, by any means) and
``TIERGATE_RUN_DIR``, which switches the hook on. Each process then writes its stacks, on
``DUMP_SIGNAL``, into ``stacks_dir(run_dir)/<pid>.txt``.

The rule from DESIGN.md: never send the dump signal to a process that did not register a handler
for it (its default action kills). ``is_registered`` is the only gate; it checks both that the
process wrote its stacks file (same pid AND same start time, against pid reuse) and that the
kernel shows a handler for the signal right now (an ``exec`` of another program drops it).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from pathlib import Path

SITE_DIR = Path(__file__).resolve().parent / "site"
# Copies of protocol.environ.RUN_DIR and protocol.layout.STACKS_DIR: this package is standard
# library only (tests/test_protocol_names.py checks that they are equal).
RUN_DIR_ENV = "TIERGATE_RUN_DIR"
STACKS_DIR = "stacks"
# A real-time signal: SIGUSR1/2 belong to the user's code. Same value in site/sitecustomize.py.
DUMP_SIGNAL = int(signal.SIGRTMIN) + 3
_HEADER_PREFIX = "tiergate-stacks "


def boot_env(run_dir: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables to add to pytest's environment so every Python process under it registers."""
    site_dir = str(SITE_DIR)
    entries = [e for e in environ.get("PYTHONPATH", "").split(os.pathsep) if e and e != site_dir]
    return {
        "PYTHONPATH": os.pathsep.join([site_dir, *entries]),
        RUN_DIR_ENV: str(Path(run_dir).resolve()),
    }


def stacks_dir(run_dir: Path) -> Path:
    return Path(run_dir) / STACKS_DIR


def stacks_file(pid: int, run_dir: Path) -> Path:
    return stacks_dir(run_dir) / f"{pid}.txt"


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _header(pid: int, run_dir: Path) -> dict[str, int] | None:
    try:
        with stacks_file(pid, run_dir).open("rb") as handle:
            first = handle.readline(200).decode("ascii", "replace")
    except OSError:
        return None
    if not first.startswith(_HEADER_PREFIX) or not first.endswith("\n"):
        return None
    try:
        return {k: int(v) for k, v in (f.split("=", 1) for f in first.split()[1:])}
    except ValueError:
        return None


def catches_signal(pid: int, signum: int) -> bool:
    """Whether the kernel shows a handler installed for *signum* in process *pid*."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except (OSError, ValueError):
        pass
    return False


def is_registered(pid: int, run_dir: Path) -> bool:
    """Whether *pid* may be sent DUMP_SIGNAL: it registered under this run and still catches it."""
    header = _header(pid, run_dir)
    if header is None or header.get("pid") != pid or header.get("signal") != DUMP_SIGNAL:
        return False
    started = start_ticks(pid)
    if started is None or header.get("start") != started:
        return False
    return catches_signal(pid, DUMP_SIGNAL)
