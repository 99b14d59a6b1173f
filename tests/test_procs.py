"""The supervisor's process control (``supervisor/procs.py``) and the one ``/proc`` reader
(``diagnose/procfs.py``), on real processes started here and stopped here by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tiergate.diagnose import procfs
from tiergate.supervisor import procs

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def alive(pid: int) -> bool:
    stat = procfs.read_stat(pid)
    return stat is not None and not stat.gone


@pytest.fixture
def tree() -> Iterator[tuple[subprocess.Popen[bytes], list[int]]]:
    """sh with two sleep children (a tree of three, in this test's process group)."""
    shell = subprocess.Popen(["sh", "-c", "sleep 60 & a=$!; sleep 60 & echo $a $!; wait"],
                             stdout=subprocess.PIPE)
    assert shell.stdout is not None
    children = [int(pid) for pid in shell.stdout.readline().split()]
    try:
        yield shell, children
    finally:
        for pid in [*children, shell.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shell.wait()


# -- reading /proc ------------------------------------------------------------------------------


def test_a_stat_line_is_read_past_a_name_that_holds_parentheses_and_spaces() -> None:
    line = (b"4242 (a) (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 3 0 "
            b"98765 1000000 25 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n")

    stat = procfs.parse_stat(line)

    assert stat is not None
    assert (stat.name, stat.state, stat.ppid) == ("a) (b) c", "S", 1)
    assert (stat.ticks, stat.threads, stat.start) == (12, 3, 98765)
    assert stat.rss == 25 * procfs.PAGE_SIZE
    assert procfs.parse_stat(b"4242 (cut") is None  # a torn read is no stat


def test_this_process_reads_as_itself() -> None:
    stat = procfs.read_stat(os.getpid())

    assert stat is not None and stat.ppid == os.getppid() and stat.state == "R"
    assert stat.threads >= 1 and stat.rss > 0
    main_thread = procfs.read_stat(os.getpid(), os.getpid())
    assert main_thread is not None and main_thread.ticks <= stat.ticks
    assert procfs.read_stat(os.getpid(), 1 << 22) is None  # no such thread


@pytest.mark.parametrize("scan", [False, True], ids=["children-files", "parent-scan"])
def test_children_and_descendants_of_a_real_tree(
        tree: tuple[subprocess.Popen[bytes], list[int]], scan: bool) -> None:
    shell, sleeps = tree

    assert sorted(procfs.children(shell.pid, scan=scan)) == sorted(sleeps)
    assert sorted(procfs.descendants(shell.pid, scan=scan)) == sorted(
        (pid, shell.pid) for pid in sleeps)
    assert (shell.pid, os.getpid()) in procfs.descendants(os.getpid(), scan=scan)
    assert shell.pid in procfs.children("self", scan=scan)


def test_the_children_of_a_process_that_is_gone_raise() -> None:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()

    with pytest.raises(OSError):
        procfs.children(done.pid)
    assert procfs.descendants(done.pid) == []


# -- the ladder ---------------------------------------------------------------------------------


def test_a_group_that_ignores_sigterm_is_killed_after_its_grace_with_its_child() -> None:
    script = ("import signal, subprocess, sys, time\n"
              "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              "print(child.pid, flush=True)\n"
              "time.sleep(60)\n")
    proc = procs.start([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        assert os.getpgid(proc.pid) == proc.pid and os.getpgid(child) == proc.pid

        procs.stop_group(proc, grace=0.2)

        assert proc.returncode == -signal.SIGKILL  # SIGTERM was ignored: the ladder went on
        deadline = time.monotonic() + 10  # a correctness bound: init reaps the orphan
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(child)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_group_that_obeys_sigterm_ends_on_it() -> None:
    proc = procs.start(SLEEPER)

    procs.stop_group(proc, grace=10)

    assert proc.returncode == -signal.SIGTERM


def test_kill_tree_ends_a_tree_that_is_no_group(
        tree: tuple[subprocess.Popen[bytes], list[int]]) -> None:
    shell, sleeps = tree

    procs.kill_tree(shell.pid)

    assert not any(alive(pid) for pid in [shell.pid, *sleeps])


# -- reaping ------------------------------------------------------------------------------------


def test_reap_collects_an_ended_child_but_leaves_a_started_one_to_its_popen() -> None:
    started = procs.start([sys.executable, "-c", "raise SystemExit(3)"])
    orphan = os.fork()
    if orphan == 0:  # pragma: no cover - the child
        os._exit(0)
    deadline = time.monotonic() + 10  # a correctness bound: both exit at once
    while alive(started.pid) or alive(orphan):
        assert time.monotonic() < deadline, "a child never ended"
        time.sleep(0.01)
    assert procfs.read_stat(orphan) is not None  # a zombie, until someone collects it

    procs.reap()

    assert procfs.read_stat(orphan) is None  # collected: no zombie left
    assert started.wait(timeout=10) == 3  # its status was kept for its Popen, not taken


def test_prctl_is_called_without_starting_a_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # ctypes.util.find_library runs `ldconfig -p`: three of those started every run, one
    # between fork and exec of pytest. The C library is reached through our own symbols.
    started: list[object] = []
    real = subprocess.Popen.__init__

    def record(self: subprocess.Popen[bytes], *args: object, **kwargs: object) -> None:
        started.append(args)
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(subprocess.Popen, "__init__", record)
    procs._libc.cache_clear()
    assert procs._prctl(4, 1)  # PR_SET_DUMPABLE to 1, what it is already: a harmless call
    assert started == []


def test_the_test_a_process_started_during_is_read_from_its_environment() -> None:
    env = {**os.environ, "PYTEST_CURRENT_TEST": "t.py::test_x[a (b)] (call)"}
    proc = subprocess.Popen(SLEEPER, env=env)
    try:
        deadline = time.monotonic() + 10
        while procs.StartedDuring.of(proc.pid) is None and time.monotonic() < deadline:
            time.sleep(0.01)  # the environment is the exec's: readable once it ran

        assert procs.StartedDuring.of(proc.pid) == procs.StartedDuring("t.py::test_x[a (b)]",
                                                                       "call")
    finally:
        proc.kill()
        proc.wait()
