"""Resource limits of a tier, and the verdict on one sample of pytest's process tree.

Three limits, resolved once from the tier into plain numbers (``Limits.for_tier``):

- ``memory-limit``: the tree's summed RSS, a size (``"2GB"``) or a share of the machine
  (``"85%"``). No default: the right figure depends on the runner.
- ``max-processes``: processes in the tree, pytest included. No default.
- ``max-fds``: open descriptors of the *one* process in the tree that holds the most. Per process,
  because that is the limit the kernel enforces (``EMFILE`` at ``RLIMIT_NOFILE``, which pytest and
  its children inherit from the supervisor). Default: 80 % of that soft limit; none when it is
  unlimited.

Crossing a limit is ``over`` (the supervisor dumps, kills and resumes). Reaching 80 % of one is a
``warning``, once per crossing: it re-arms when the tree falls back below 75 %, and a test is never
warned twice about the same limit. A tree that starts a test above 80 % does not warn again: the
test that pushed it there already got the warning.

Everything here is pure: no clock, no I/O. ``Gauge.interval`` tells the supervisor to sample at
its poll rate while the tree is near a limit or climbing towards one fast, so a test that
allocates 1 GB/s is still caught within a few tens of megabytes of the limit.
"""

from __future__ import annotations

import dataclasses
import resource as _resource
from collections.abc import Iterator

from tiergate.protocol.events import RESOURCE_PRESSURE
from tiergate.settings.config import Tier, parse_size
from tiergate.supervisor.sampler import Sample

EVENT = RESOURCE_PRESSURE  # supervisor: nodeid, resource, value, limit, dump, message
WARNING_SHARE = 0.8
REARM_SHARE = 0.75
NEAR_SHARE = 0.5
DEFAULT_FDS_SHARE = 0.8

# resource -> (tier key a user writes, words for the message)
_NAMES = {
    "memory": ("memory-limit", "memory (RSS of the process tree)"),
    "processes": ("max-processes", "process count of the tree"),
    "fds": ("max-fds", "open file descriptors of one process"),
}


@dataclasses.dataclass(frozen=True)
class Limits:
    memory: int | None = None  # bytes
    processes: int | None = None
    fds: int | None = None  # per process

    @classmethod
    def for_tier(
        cls, tier: Tier, *, total_memory: int | None = None, nofile: int | None = None
    ) -> Limits:
        """*total_memory* and *nofile* (the soft RLIMIT_NOFILE) default to this machine's."""
        memory = None
        if tier.memory_limit is not None:
            if total_memory is None and str(tier.memory_limit).strip().endswith("%"):
                import psutil

                total_memory = psutil.virtual_memory().total
            memory = parse_size(tier.memory_limit, total=total_memory)
        fds = tier.max_fds
        if fds is None:
            soft = _resource.getrlimit(_resource.RLIMIT_NOFILE)[0] if nofile is None else nofile
            if soft != _resource.RLIM_INFINITY and soft > 0:
                fds = int(soft * DEFAULT_FDS_SHARE)
        return cls(memory=memory, processes=tier.max_processes, fds=fds)

    def __iter__(self) -> Iterator[tuple[str, int]]:
        for name in _NAMES:
            limit = getattr(self, name)
            if limit is not None:
                yield name, limit

    def describe(self) -> dict[str, int | None]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Verdict:
    level: str  # "warning" | "over"
    resource: str  # "memory" | "processes" | "fds"
    value: int
    limit: int
    pid: int | None  # the process that holds the most of it

    @property
    def key(self) -> str:
        return _NAMES[self.resource][0]

    def describe(self) -> str:
        what = _NAMES[self.resource][1]
        shown, limit = format_amount(self.resource, self.value), format_amount(
            self.resource, self.limit
        )
        if self.level == "over":
            return f"{what} reached {shown}, over the tier's {self.key} of {limit}"
        share = self.value / self.limit * 100
        return f"{what} reached {shown}, {share:.0f}% of the tier's {self.key} of {limit}"


def value_of(resource: str, sample: Sample) -> tuple[int, int | None]:
    """The figure a limit is checked against, and the pid that holds the most of it."""
    if resource == "memory":
        return sample.rss, sample.biggest.pid if sample.biggest else None
    if resource == "processes":
        return sample.processes, None
    if sample.most_fds is None:
        return 0, None
    return sample.most_fds[1], sample.most_fds[0]


class Gauge:
    """Judges samples against limits; remembers which warnings were given."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._armed = {name: True for name, _ in limits}
        self._warned: set[tuple[str | None, str]] = set()  # (test, resource)

    def check(self, sample: Sample, nodeid: str | None) -> list[Verdict]:
        verdicts = []
        for name, limit in self.limits:
            value, pid = value_of(name, sample)
            if value > limit:
                verdicts.append(Verdict("over", name, value, limit, pid))
            elif value >= limit * WARNING_SHARE:
                if self._armed[name] and (nodeid, name) not in self._warned:
                    self._warned.add((nodeid, name))
                    verdicts.append(Verdict("warning", name, value, limit, pid))
                self._armed[name] = False
            elif value < limit * REARM_SHARE:
                self._armed[name] = True
        return verdicts

    def interval(self, sample: Sample, previous: Sample | None, base: float, fast: float) -> float:
        """How long to wait before the next sample: *fast* near a limit, or when memory climbs
        fast enough to reach the warning level within two *base* intervals."""
        for name, limit in self.limits:
            if value_of(name, sample)[0] >= limit * NEAR_SHARE:
                return fast
        if self.limits.memory and previous is not None and sample.t > previous.t:
            rate = (sample.rss - previous.rss) / (sample.t - previous.t)
            if rate > 0 and sample.rss + rate * 2 * base >= self.limits.memory * WARNING_SHARE:
                return fast
        return base


def format_amount(resource: str, value: int) -> str:
    if resource != "memory":
        return str(value)
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if value >= size:
            return f"{value / size:.2f} {unit}".replace(".00 ", " ")
    return f"{value} B"
