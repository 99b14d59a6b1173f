"""The tree watch on its own: what the supervisor's eye on resources decides from each sample.

The samples are made here (a fake sampler in place of the watch's ``sampler``) and so is the
clock (the watch module's ``time``), so every decision is checked without waiting: when a sample
is due, when a sample event is written, which test is blamed, what a crossed limit kills and
reports. One test samples a real tree of ``sleep`` processes, started and stopped here."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

from tiergate.diagnose.treedumps import SavedDump
from tiergate.protocol.events import FINDING, RESOURCE_PRESSURE, SAMPLE
from tiergate.protocol.findings import Culprit
from tiergate.settings.config import Tier
from tiergate.supervisor.pressure import Limits
from tiergate.supervisor.procs import StartedDuring
from tiergate.supervisor.sampler import EMPTY, Biggest, Sample
from tiergate.supervisor.treewatch import OTHER_STOP_SECONDS, OverLimit, TreeWatch

GB = 10**9
PYTEST_PID = 100
INTERVAL = 0.5  # the tier's sample-interval
FAST = 0.05  # the supervisor's poll: the interval near a limit


@dataclasses.dataclass
class Running:
    """A test in flight as the supervisor knows it (from its test-start event)."""

    nodeid: str
    pid: int  # the process running it: pytest, or an xdist worker
    path: str | None = "tests/test_big.py"
    line: int | None = 7


class FakeSampler:
    """Hands out the samples a test queues; the last one again when the queue runs dry."""

    def __init__(self) -> None:
        self.queue: list[Sample] = []
        self.taken = 0

    def sample(self) -> Sample:
        self.taken += 1
        if len(self.queue) > 1:
            return self.queue.pop(0)
        return self.queue[0]


@dataclasses.dataclass
class Clock:
    now: float = 1000.0

    def monotonic(self) -> float:
        return self.now


@dataclasses.dataclass
class Run:
    """What the watch did: events written, dumps asked for, stops of pytest."""

    watch: TreeWatch
    sampler: FakeSampler
    clock: Clock
    tests: list[Running]
    events: list[tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=list)
    dumps: list[tuple[str | None, str, str, int | None]] = dataclasses.field(default_factory=list)
    stops: list[float] = dataclasses.field(default_factory=list)

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [fields for k, fields in self.events if k == kind]

    def findings(self) -> list[dict[str, Any]]:
        return [fields["finding"] for fields in self.of(FINDING)]

    def poll(self, *samples: Sample) -> OverLimit | None:
        """One poll, acted on as the supervisor acts: a kill with the decision's grace, then
        the decision handed back for its report."""
        self.sampler.queue[:] = list(samples) or self.sampler.queue
        return act_on(self.watch, self.stops)


def act_on(watch: TreeWatch, stops: list[float]) -> OverLimit | None:
    over = watch.poll()
    if over is not None:
        stops.append(over.grace)
        watch.report(over)
    return over


def sample(rss: int = 0, *, processes: int = 3, biggest: int | None = None,
           big: Biggest | None = None, most_fds: tuple[int, int] = (201, 12),
           t: float = 0.0) -> Sample:
    """pytest (100) with xdist workers 201 and 202, and worker 202's child 305. *biggest* is
    the pid that holds all the RSS (*big*: a ``Biggest`` given whole, such as a daemon's)."""
    if big is None and biggest is not None:
        big = Biggest(biggest, rss, f"python -c hog-{biggest}")
    return Sample(t=t, rss=rss, cpu=1.0, cpu_percent=50.0, threads=4, fds=20,
                  processes=processes, biggest=big, most_fds=most_fds,
                  rss_by_pid={biggest or PYTEST_PID: rss},
                  parent={201: PYTEST_PID, 202: PYTEST_PID, 305: 202})


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The watch's own clock only: the module's ``time`` name, not the time module itself."""
    fake = Clock()
    monkeypatch.setattr(sys.modules[TreeWatch.__module__], "time",
                        types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


def watch(clock: Clock, tests: list[Running], **limits: int) -> Run:
    run: Run
    saved = SavedDump("dumps/pressure-1-test.txt",
                      Culprit("tests/test_big.py", 9, "grow", "busy running code", 202))

    def dump(nodeid: str | None, kind: str, reason: str, stuck: int | None) -> SavedDump:
        run.dumps.append((nodeid, kind, reason, stuck))
        return saved

    tree = TreeWatch(
        root_pid=PYTEST_PID, tier=Tier(name="fast", sample_interval=INTERVAL), attempt=1,
        emit=lambda kind, **fields: run.events.append((kind, fields)),
        dump=dump,
        in_flight=lambda: run.tests, fast=FAST, limits=Limits(**limits))
    fake = FakeSampler()
    tree.sampler = fake  # type: ignore[assignment]
    run = Run(tree, fake, clock, tests)
    return run


@pytest.fixture
def two_workers() -> list[Running]:
    return [Running("tests/test_small.py::test_a", 201), Running("tests/test_big.py::test_b", 202)]


# -- under and over a limit ------------------------------------------------------------------


def test_under_the_limits_the_watch_only_writes_a_sample(clock: Clock,
                                                         two_workers: list[Running]) -> None:
    run = watch(clock, two_workers, memory=GB, processes=10)

    assert run.poll(sample(GB // 4, biggest=305)) is None

    assert run.kinds() == [SAMPLE]
    assert run.of(SAMPLE)[0]["processes"] == 3
    assert run.of(SAMPLE)[0]["tests"] == {"tests/test_small.py::test_a": 0,
                                          "tests/test_big.py::test_b": GB // 4}
    assert run.dumps == [] and run.stops == []


def test_over_the_memory_limit_kills_at_once_and_blames_the_test_in_the_biggest_process(
        clock: Clock, two_workers: list[Running]) -> None:
    run = watch(clock, two_workers, memory=GB)

    killed = run.poll(sample(GB + 1, biggest=305), sample(GB + 5, biggest=305))

    assert killed is not None and killed.nodeid == "tests/test_big.py::test_b"
    assert (killed.verdict.level, killed.verdict.resource) == ("over", "memory")
    assert run.stops == [0.0]  # memory gets no grace: waiting is time to allocate more
    assert [d[0] for d in run.dumps] == ["tests/test_big.py::test_b"]
    assert run.dumps[0][3] == 202  # the dump points at the worker running the test
    assert run.kinds() == [SAMPLE, SAMPLE, RESOURCE_PRESSURE, FINDING]  # a sample at the kill too
    pressure = run.of(RESOURCE_PRESSURE)[0]
    assert (pressure["nodeid"], pressure["resource"], pressure["value"], pressure["limit"]) == (
        "tests/test_big.py::test_b", "memory", GB + 1, GB)
    assert pressure["dump"] == "dumps/pressure-1-test.txt"
    [finding] = run.findings()
    assert (finding["kind"], finding["severity"], finding["test"]) == (
        "resource-pressure", "error", "tests/test_big.py::test_b")
    assert finding["location"] == {"path": "tests/test_big.py", "line": 7}
    assert finding["culprit"]["function"] == "grow"


def test_the_message_names_the_biggest_process(clock: Clock, two_workers: list[Running]) -> None:
    run = watch(clock, two_workers, memory=GB)

    run.poll(sample(1_200_000_000, biggest=305))

    message = run.of(RESOURCE_PRESSURE)[0]["message"]
    assert message.startswith("resource pressure: memory (RSS of the process tree) reached "
                              "1.20 GB, over the tier's memory-limit of 1 GB")
    assert "; biggest process 305 (python -c hog-305) holds 1.20 GB; 3 processes" in message
    assert message.endswith("; pytest was killed")


def test_over_max_processes_stops_pytest_with_a_grace(clock: Clock,
                                                     two_workers: list[Running]) -> None:
    run = watch(clock, two_workers, processes=10)

    killed = run.poll(sample(GB, processes=11, biggest=201))

    assert killed is not None and killed.verdict.resource == "processes"
    assert killed.nodeid == "tests/test_small.py::test_a"
    assert run.stops == [OTHER_STOP_SECONDS]


def test_over_max_fds_names_the_process_holding_them(clock: Clock,
                                                    two_workers: list[Running]) -> None:
    run = watch(clock, two_workers, fds=100)

    killed = run.poll(sample(GB, biggest=201, most_fds=(305, 101)))

    assert killed is not None and killed.verdict.resource == "fds"
    assert "; process 305 holds 101;" in run.of(RESOURCE_PRESSURE)[0]["message"]


# -- which test is blamed --------------------------------------------------------------------


@pytest.mark.parametrize(("biggest", "blamed"), [
    pytest.param(Biggest(201, GB, "worker"), "tests/test_small.py::test_a",
                 id="the worker itself"),
    pytest.param(Biggest(305, GB, "child"), "tests/test_big.py::test_b",
                 id="a child of a worker"),
    pytest.param(Biggest(PYTEST_PID, GB, "pytest"), "tests/test_small.py::test_a",
                 id="pytest itself: the first test in flight"),
    pytest.param(Biggest(900, GB, "redis-server", True,
                         StartedDuring("tests/test_big.py::test_b", "setup")),
                 "tests/test_big.py::test_b", id="a daemon: the test that started it"),
    pytest.param(Biggest(900, GB, "redis-server", True,
                         StartedDuring("tests/test_gone.py::test_c", "call")),
                 "tests/test_small.py::test_a",
                 id="a daemon of a test that is over: the first test in flight"),
])
def test_the_test_blamed(clock: Clock, two_workers: list[Running], biggest: Biggest,
                         blamed: str) -> None:
    run = watch(clock, two_workers, memory=GB)

    killed = run.poll(sample(GB + 1, big=biggest))

    assert killed is not None and killed.nodeid == blamed
    assert run.of(SAMPLE)[0]["nodeid"] == blamed


def test_with_no_test_in_flight_the_run_is_blamed(clock: Clock) -> None:
    run = watch(clock, [], memory=GB)

    killed = run.poll(sample(GB + 1, biggest=PYTEST_PID))

    assert killed is not None and killed.nodeid is None
    assert run.dumps[0][0] is None and run.dumps[0][3] is None
    assert run.findings()[0]["test"] is None and run.findings()[0]["location"] is None


# -- warnings ---------------------------------------------------------------------------------


def test_a_warning_is_one_finding_with_its_dump_and_no_kill(clock: Clock,
                                                           two_workers: list[Running]) -> None:
    run = watch(clock, two_workers, memory=GB)

    assert run.poll(sample(int(GB * 0.85), biggest=305)) is None
    clock.now += INTERVAL
    assert run.poll(sample(int(GB * 0.9), biggest=305)) is None  # still high: no second one
    run.watch.close()  # the dump runs in the background; close waits for it

    assert run.stops == []
    assert len(run.dumps) == 1 and run.dumps[0][2].startswith("warning: ")
    [finding] = run.findings()
    assert (finding["severity"], finding["test"]) == ("warning", "tests/test_big.py::test_b")
    assert finding["message"].startswith("resource pressure (warning): memory (RSS of the "
                                         "process tree) reached 850 MB, 85% of the tier's")


def test_two_warnings_during_one_test_share_one_dump(clock: Clock,
                                                    two_workers: list[Running]) -> None:
    run = watch(clock, two_workers, memory=GB, fds=100)

    run.poll(sample(int(GB * 0.85), biggest=305, most_fds=(305, 90)))
    run.watch.close()

    assert len(run.dumps) == 1
    assert sorted(f["details"]["limit-key"] for f in run.findings()) == ["max-fds",
                                                                         "memory-limit"]


def test_going_over_after_a_warning_uses_the_warnings_dump(clock: Clock,
                                                           two_workers: list[Running]) -> None:
    run = watch(clock, two_workers, memory=GB)

    run.poll(sample(int(GB * 0.85), biggest=305))
    clock.now += INTERVAL
    killed = run.poll(sample(GB + 1, biggest=305))

    assert killed is not None
    assert len(run.dumps) == 1  # at 1 GB/s a second dump would cost hundreds of megabytes
    # the warning's finding comes when its dump is done, before or after the kill's
    assert sorted(f["severity"] for f in run.findings()) == ["error", "warning"]


# -- when a sample is due -----------------------------------------------------------------------


def test_samples_are_taken_at_the_tiers_interval(clock: Clock, two_workers: list[Running]) -> None:
    run = watch(clock, two_workers, memory=GB)
    start = clock.now

    run.poll(sample(GB // 10, biggest=305))
    clock.now = start + INTERVAL * 0.9
    run.poll()
    assert run.sampler.taken == 1 and run.kinds() == [SAMPLE]

    clock.now = start + INTERVAL
    run.poll()
    assert run.sampler.taken == 2 and run.kinds() == [SAMPLE, SAMPLE]


def test_near_a_limit_samples_come_at_the_poll_rate_and_events_at_the_interval(
        clock: Clock, two_workers: list[Running]) -> None:
    run = watch(clock, two_workers, memory=GB)
    start = clock.now

    run.poll(sample(GB // 2 + 1, biggest=305))  # half the limit: watch closely, warn at 80 %
    for _ in range(3):
        clock.now += FAST
        run.poll()

    assert run.sampler.taken == 4
    assert run.kinds() == [SAMPLE]  # the log gets a sample per interval, not per poll
    clock.now = start + INTERVAL
    run.poll()
    assert run.kinds() == [SAMPLE, SAMPLE]


@pytest.mark.parametrize(("before", "taken"), [
    pytest.param(350_000_000, 3, id="0.5 GB/s: 80 % within two intervals, sample at the poll rate"),
    pytest.param(390_000_000, 2, id="0.1 GB/s: the next sample at the interval"),
    pytest.param(400_000_000, 2, id="flat: the next sample at the interval"),
])
def test_memory_climbing_fast_is_sampled_at_the_poll_rate(clock: Clock, two_workers: list[Running],
                                                          before: int, taken: int) -> None:
    """At 400 MB of a 1 GB limit (below the half that is watched closely anyway), climbing fast
    enough to reach the 800 MB warning level within two intervals (1 s)."""
    run = watch(clock, two_workers, memory=GB)

    run.poll(sample(before, biggest=305, t=10.0))
    clock.now += INTERVAL
    run.poll(sample(400_000_000, biggest=305, t=10.1))
    clock.now += FAST
    run.poll()

    assert run.sampler.taken == taken


# -- a tree that goes away --------------------------------------------------------------------


def test_a_tree_that_is_gone_gives_no_sample_and_no_verdict(clock: Clock,
                                                            two_workers: list[Running]) -> None:
    run = watch(clock, two_workers, memory=GB)

    assert run.poll(EMPTY) is None

    assert run.events == [] and run.dumps == [] and run.stops == []
    clock.now += FAST  # and the next poll looks again at once: the supervisor will notice
    run.poll(sample(GB // 10, biggest=305))
    assert run.sampler.taken == 2


def test_a_tree_gone_while_the_dump_was_taken_still_gets_its_verdict(
        clock: Clock, two_workers: list[Running]) -> None:
    run = watch(clock, two_workers, memory=GB)

    killed = run.poll(sample(GB + 1, biggest=305), EMPTY)

    assert killed is not None
    assert run.kinds() == [SAMPLE, RESOURCE_PRESSURE, FINDING]  # no sample of an empty tree
    assert run.stops == [0.0]


# -- a real tree ------------------------------------------------------------------------------


@pytest.fixture
def sleepers() -> Iterator[tuple[subprocess.Popen[str], list[int]]]:
    """sh with two sleep children: a tree of three processes, stopped here by pid."""
    shell = subprocess.Popen(["sh", "-c", "sleep 60 & a=$!; sleep 60 & echo $a $!; wait"],
                             stdout=subprocess.PIPE, text=True)
    assert shell.stdout is not None
    children = [int(pid) for pid in shell.stdout.readline().split()]
    try:
        yield shell, children
    finally:
        stop_sleepers(shell, children)


def stop_sleepers(shell: subprocess.Popen[str], children: list[int]) -> None:
    """The sleeps first (the shell reaps them and exits), then the shell, if it is still there."""
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    try:
        shell.wait(timeout=5)
    except subprocess.TimeoutExpired:
        shell.kill()
        shell.wait()


def real_watch(root_pid: int, events: list[tuple[str, dict[str, Any]]],
               **limits: int) -> TreeWatch:
    return TreeWatch(
        root_pid=root_pid, tier=Tier(name="fast", sample_interval=INTERVAL), attempt=1,
        emit=lambda kind, **fields: events.append((kind, fields)),
        dump=lambda nodeid, kind, reason, stuck: SavedDump(None, None, "not taken here"),
        in_flight=list, fast=FAST, limits=Limits(**limits))


def test_a_real_tree_is_sampled_and_a_tree_that_vanished_is_not(
        clock: Clock, sleepers: tuple[subprocess.Popen[str], list[int]]) -> None:
    shell, children = sleepers
    events: list[tuple[str, dict[str, Any]]] = []
    tree = real_watch(shell.pid, events, processes=10)

    assert tree.poll() is None
    [(kind, first)] = events
    assert (kind, first["processes"]) == (SAMPLE, 3)
    assert first["biggest"]["pid"] in {shell.pid, *children}
    assert first["biggest"]["cmdline"].startswith(("sh -c", "sleep 60"))

    stop_sleepers(shell, children)
    clock.now += INTERVAL
    assert tree.poll() is None
    assert len(events) == 1  # nothing sampled, nothing judged (poll decided no kill)


def test_a_real_tree_over_max_processes_is_stopped_and_its_biggest_process_named(
        clock: Clock, sleepers: tuple[subprocess.Popen[str], list[int]]) -> None:
    shell, _ = sleepers
    events: list[tuple[str, dict[str, Any]]] = []
    stops: list[float] = []

    killed = act_on(real_watch(shell.pid, events, processes=2), stops)

    assert killed is not None and (killed.nodeid, killed.verdict.value) == (None, 3)
    assert stops == [OTHER_STOP_SECONDS]
    biggest = events[0][1]["biggest"]
    message = next(fields for kind, fields in events if kind == RESOURCE_PRESSURE)["message"]
    assert f"; biggest process {biggest['pid']} ({biggest['cmdline']}) holds " in message
