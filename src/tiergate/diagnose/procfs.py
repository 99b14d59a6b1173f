"""Reading ``/proc``: the one parser of ``/proc/<pid>/stat`` and the one way to list a process's
children, for the supervisor (samples, kills, the exit watch) and for pytest's side (the leak
probes, the dump), which may not import the supervisor.

Plain reads with no psutil: the leak probe reads a child's state after every audited spawn and
the sampler reads every process of the tree twice a second, so each read is one ``open``/``read``.
"""

from __future__ import annotations

import dataclasses
import os

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclasses.dataclass(frozen=True)
class Stat:
    """The fields of ``/proc/<pid>[/task/<tid>]/stat`` that tiergate reads (proc(5))."""

    name: str  # the command name (comm), at most 15 characters
    state: str  # R running, S sleeping, D disk sleep, Z zombie, X dead, T stopped, ...
    ppid: int
    ticks: int  # user + system CPU, in clock ticks
    threads: int
    start: int  # clock ticks after boot: with the pid, names one process for ever
    rss: int  # bytes resident

    @property
    def gone(self) -> bool:
        """A zombie or a dead task: it runs no more, whatever holds its pid."""
        return self.state in "ZX"


def read_stat(pid: int | str, tid: int | None = None) -> Stat | None:
    """*pid*'s stat (its thread *tid*'s with *tid*); None once it has ended."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    return parse_stat(data)


def parse_stat(data: bytes) -> Stat | None:
    """The name is between the first ``(`` and the *last* ``)``: it may hold both itself."""
    close = data.rfind(b")")
    fields = data[close + 2:].split()
    try:
        return Stat(
            name=data[data.find(b"(") + 1: close].decode("utf-8", "replace"),
            state=fields[0].decode(),
            ppid=int(fields[1]),
            ticks=int(fields[11]) + int(fields[12]),
            threads=int(fields[17]),
            start=int(fields[19]),
            rss=int(fields[21]) * PAGE_SIZE,
        )
    except (IndexError, ValueError):
        return None


def has_children_files() -> bool:
    """``/proc/<pid>/task/<tid>/children`` needs CONFIG_PROC_CHILDREN; most kernels have it."""
    return os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def children(pid: int | str, *, scan: bool | None = None) -> list[int]:
    """The direct children of *pid* (``"self"`` for this process). From its children files,
    which cost in proportion to its threads; where the kernel has none (*scan*), from the
    parent pid of every process on the machine. Raises OSError when *pid* is gone."""
    if scan if scan is not None else not _CHILDREN_FILES:
        return _children_by_scan(os.getpid() if pid == "self" else int(pid))
    found: list[int] = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as handle:
                found.extend(int(child) for child in handle.read().split())
        except OSError:
            continue  # a thread that ended between the listing and now
    return found


def descendants(pid: int, *, scan: bool | None = None) -> list[tuple[int, int]]:
    """(pid, parent pid) of every process below *pid*, parents before their children; empty
    when *pid* is gone."""
    out: list[tuple[int, int]] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            found = children(parent, scan=scan)
        except OSError:
            continue  # gone between its parent's listing and now
        out += [(child, parent) for child in found]
        todo += found
    return out


def _children_by_scan(pid: int) -> list[int]:
    if not os.path.isdir(f"/proc/{pid}"):
        raise ProcessLookupError(pid)
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and (stat := read_stat(name)) is not None and stat.ppid == pid:
            found.append(int(name))
    return found


def count_fds(pid: int) -> int:
    """Open descriptors of *pid*; 0 when it is gone or not ours to look at."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


_CHILDREN_FILES = has_children_files()
