"""Samples of pytest's whole process tree: memory, CPU, threads, open files, process count.

The supervisor takes one every ``sample-interval`` (0.5 s by default, faster near a limit), so a
sample has to be cheap. The tree is walked through ``/proc/<pid>/task/<tid>/children`` (cost in
proportion to the tree, not to every process on the machine), with a scan of every process's
parent as the fallback where the kernel lacks that file (``tiergate.diagnose.procfs``). Each
process costs one read of its ``stat`` (memory, CPU, threads) and one listing of its ``fd``
directory; CPU time of processes that ended between two samples is kept so the total never goes
backwards.

RSS is summed over the tree. Pages shared after a ``fork`` are counted in each process, so the
total is an upper bound of what the tree holds, which is the safe side for a limit.

A process that leaves the tree still counts. A daemon started the way ``pg_ctl start`` or
``redis-server --daemonize`` start one (fork, ``setsid``, fork again, the middle one exits) is
orphaned to the supervisor, a child subreaper, and holds memory on the same runner. The sampler
takes the supervisor's children that are not pytest and not in the supervisor's own session (its
own helpers, such as py-spy for a dump, are) as adopted from the tree.

One test's peak in its own process comes from the plugin (``highwater.py``), not from here.
"""

from __future__ import annotations

import dataclasses
import os
import time

import psutil

from tiergate.diagnose import procfs
from tiergate.protocol.redact import command_line
from tiergate.supervisor.procs import StartedDuring, adopted_from

_CMDLINE_CHARS = 160


@dataclasses.dataclass(frozen=True)
class Biggest:
    pid: int
    rss: int
    cmdline: str
    outside: bool = False  # adopted: it left pytest's tree (a daemon)
    started_during: StartedDuring | None = None  # known for one outside the tree

    def to_json(self) -> dict[str, object]:
        found: dict[str, object] = {"pid": self.pid, "rss": self.rss, "cmdline": self.cmdline}
        if self.outside:
            found["outside_tree"] = True
            if self.started_during:
                found["started_during"] = self.started_during.describe()
        return found

    def origin(self) -> str:
        """Where it came from, when that is not plain: ", outside pytest's tree, started ..." """
        if not self.outside:
            return ""
        if self.started_during is None:
            return ", outside pytest's tree"
        return f", outside pytest's tree, started during {self.started_during.describe()}"


@dataclasses.dataclass(frozen=True)
class Sample:
    """The tree at one instant. ``rss_by_pid`` and ``parent`` let a reader attribute memory to the
    subtree of one xdist worker."""

    t: float  # time.monotonic()
    rss: int  # bytes, summed over the tree
    cpu: float  # user + system seconds of the tree since it started (ended processes included)
    cpu_percent: float  # over the interval since the previous sample; 100 = one core
    threads: int
    fds: int  # open file descriptors, summed over the tree
    processes: int
    biggest: Biggest | None  # the process with the most RSS
    most_fds: tuple[int, int] | None  # (pid, fds) of the process holding the most descriptors
    rss_by_pid: dict[int, int] = dataclasses.field(default_factory=dict)
    parent: dict[int, int] = dataclasses.field(default_factory=dict)

    def subtree_rss(self, pid: int) -> int:
        """RSS of *pid* and its descendants (an xdist worker and what its test started)."""
        total = 0
        for candidate, rss in self.rss_by_pid.items():
            walk: int | None = candidate
            while walk is not None:
                if walk == pid:
                    total += rss
                    break
                walk = self.parent.get(walk)
        return total

    def to_event(self) -> dict[str, object]:
        return {
            "rss": self.rss,
            "cpu": round(self.cpu, 3),
            "cpu_percent": round(self.cpu_percent, 1),
            "threads": self.threads,
            "fds": self.fds,
            "processes": self.processes,
            "biggest": self.biggest.to_json() if self.biggest else None,
        }


EMPTY = Sample(0.0, 0, 0.0, 0.0, 0, 0, 0, None, None)


class TreeSampler:
    """Samples *root_pid* and all its descendants; keep one per pytest process. With *adopter*
    (the supervisor, a child subreaper), also what the tree orphaned to it."""

    def __init__(self, root_pid: int, adopter: int | None = None) -> None:
        self.root_pid = root_pid
        self.adopter = adopter
        self._cpu: dict[int, float] = {}  # last CPU seconds seen, per live pid
        self._cpu_gone = 0.0  # CPU seconds of processes that ended
        self._last: tuple[float, float] | None = None  # (monotonic, cpu) of the previous sample
        self._cmdlines: dict[int, str] = {}
        self._started: dict[int, StartedDuring | None] = {}  # of adopted processes
        self._proc_children = procfs.has_children_files()

    def sample(self) -> Sample:
        now = time.monotonic()
        tree = self._tree()
        live = {pid for pid, _ in tree}
        for pid in [p for p in self._cpu if p not in live]:
            self._forget(pid)
        rss_by_pid: dict[int, int] = {}
        cpu = 0.0
        threads = fds = 0
        fds_by_pid: dict[int, int] = {}
        counted = 0
        for pid, _ in tree:
            stat = procfs.read_stat(pid)
            if stat is None:
                self._forget(pid)
                continue
            n_fds = procfs.count_fds(pid)
            counted += 1
            rss_by_pid[pid] = stat.rss
            fds_by_pid[pid] = n_fds
            self._cpu[pid] = stat.ticks / procfs.CLOCK_TICKS
            cpu += self._cpu[pid]
            threads += stat.threads
            fds += n_fds
        cpu += self._cpu_gone
        percent = 0.0
        if self._last is not None and now > self._last[0]:
            percent = max(0.0, (cpu - self._last[1]) / (now - self._last[0]) * 100)
        self._last = (now, cpu)
        parent = {pid: ppid for pid, ppid in tree if ppid is not None}
        biggest = None
        if rss_by_pid:
            pid = max(rss_by_pid, key=rss_by_pid.__getitem__)
            biggest = self._biggest(pid, rss_by_pid[pid], parent)
        most = max(fds_by_pid.items(), key=lambda kv: kv[1]) if fds_by_pid else None
        return Sample(
            t=now,
            rss=sum(rss_by_pid.values()),
            cpu=cpu,
            cpu_percent=percent,
            threads=threads,
            fds=fds,
            processes=counted,
            biggest=biggest,
            most_fds=most,
            rss_by_pid=rss_by_pid,
            parent=parent,
        )

    def _biggest(self, pid: int, rss: int, parent: dict[int, int]) -> Biggest:
        walk: int | None = pid
        while walk is not None and walk != self.adopter:
            walk = parent.get(walk)
        if walk is None or self.adopter is None:
            return Biggest(pid, rss, self._cmdline(pid))
        if pid not in self._started:
            self._started[pid] = StartedDuring.of(pid)
        return Biggest(pid, rss, self._cmdline(pid), True, self._started[pid])

    def _forget(self, pid: int) -> None:
        self._cmdlines.pop(pid, None)
        self._started.pop(pid, None)
        self._cpu_gone += self._cpu.pop(pid, 0.0)

    def _cmdline(self, pid: int) -> str:
        if pid not in self._cmdlines:
            try:
                words = psutil.Process(pid).cmdline()
            except psutil.Error:
                words = []
            self._cmdlines[pid] = command_line(words)[:_CMDLINE_CHARS]
        return self._cmdlines[pid]

    def _tree(self) -> list[tuple[int, int | None]]:
        """(pid, parent pid) for the root, every descendant and every adopted orphan (with the
        adopter as parent); empty once the root is gone."""
        scan = not self._proc_children
        if not os.path.exists(f"/proc/{self.root_pid}/task"):
            return []
        out: list[tuple[int, int | None]] = [(self.root_pid, None)]
        out += procfs.descendants(self.root_pid, scan=scan)
        if self.adopter is not None:
            try:
                adopted = procfs.children(self.adopter, scan=scan)
            except OSError:
                adopted = []
            for orphan in adopted_from(self.root_pid, adopted, self.adopter):
                out.append((orphan, self.adopter))
                out += procfs.descendants(orphan, scan=scan)
        return out
