"""The supervisor following the event log on its own: which test is in flight, which module is
being collected, when each one's hard deadline passes, and when pytest said its session ended.

Events are written into a real log with ``EventWriter``, as the plugin writes them (an xdist
worker's from a process of its own, forked here), and read through the supervisor's hold on the
file (``OwnedLog``). The supervisor's clock is replaced (its module's ``time`` name), so each
deadline is checked on both sides without waiting. No pytest is started."""

from __future__ import annotations

import dataclasses
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tiergate.protocol.events import (
    COLLECT_FINISH,
    COLLECT_START,
    COLLECTED,
    HARD_TIMEOUT,
    SESSION_FINISH,
    TEST_FINISH,
    TEST_START,
    EventWriter,
    OwnedLog,
)
from tiergate.settings.config import Tier
from tiergate.supervisor.supervise import RunPlan, Supervisor

GRACE = 1.0
A, B, C = "tests/test_a.py::test_one", "tests/test_b.py::test_two", "tests/test_c.py::test_three"


@dataclasses.dataclass
class Clock:
    wall: float = 0.0
    mono: float = 500.0

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono


class Following:
    """A supervisor that follows *log* and nothing else: no pytest, no signals, no subreaper.

    The supervisor has no public seam for this yet (``_follow``, ``_hung_test`` and
    ``_stuck_collection`` are its own): this class is the one place these tests reach in."""

    def __init__(self, tmp_path: Path, clock: Clock) -> None:
        tier = Tier(name="fast", grace=GRACE)
        self.supervisor = Supervisor(RunPlan(tier=tier, results_dir=tmp_path / "r",
                                             root=tmp_path))
        self.log = OwnedLog(tmp_path / "events.jsonl")
        self.supervisor.tail = self.log.tail
        self.supervisor._load_machinery()  # as the first attempt does once pytest is started
        self.clock = clock

    def writer(self, worker: str | None = None) -> EventWriter:
        return EventWriter(self.log.writer_path, worker=worker)

    def follow(self) -> None:
        self.supervisor._follow()

    def in_flight(self) -> dict[str, int]:
        return {nodeid: test.pid for nodeid, test in self.supervisor.in_flight.items()}

    def started(self, nodeid: str) -> float:
        return self.supervisor.in_flight[nodeid].started

    def hung(self, at: float) -> str | None:
        self.clock.wall = at
        test = self.supervisor._hung_test()
        return test.nodeid if test else None

    def stuck_module(self, at: float) -> str | None:
        self.clock.wall = at
        module = self.supervisor._stuck_collection()
        return module.nodeid if module else None

    def close(self) -> None:
        self.log.close()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The supervisor's clock only: its module's ``time`` name, not the time module itself."""
    fake = Clock()
    monkeypatch.setattr(sys.modules[Supervisor.__module__], "time",
                        types.SimpleNamespace(time=fake.time, monotonic=fake.monotonic))
    return fake


@pytest.fixture
def following(tmp_path: Path, clock: Clock) -> Iterator[Following]:
    follower = Following(tmp_path, clock)
    yield follower
    follower.close()


def emit_in_worker(writer: EventWriter, kind: str, **fields: Any) -> int:
    """*kind* written by a process of its own, as an xdist worker writes it; returns its pid."""
    return worker_writes(writer, [(kind, fields)])


def worker_writes(writer: EventWriter, events: list[tuple[str, dict[str, Any]]]) -> int:
    """*events* written, in order, by one forked process (an xdist worker); returns its pid."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for kind, fields in events:
                writer.emit(kind, **fields)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return pid


def start(writer: EventWriter, nodeid: str, timeout: float | None = 10.0) -> None:
    writer.emit(TEST_START, nodeid=nodeid, path=nodeid.split("::")[0], line=3, timeout=timeout)


def finish(writer: EventWriter, nodeid: str) -> None:
    writer.emit(TEST_FINISH, nodeid=nodeid, path=nodeid.split("::")[0], line=3,
                outcome="passed", duration=0.1, timeout=10.0)


# -- which test is in flight ----------------------------------------------------------------


def test_a_started_test_is_in_flight_until_it_finishes(following: Following) -> None:
    plugin = following.writer()

    start(plugin, A)
    following.follow()
    assert following.in_flight() == {A: os.getpid()}
    test = following.supervisor.in_flight[A]
    assert (test.path, test.line, test.timeout) == ("tests/test_a.py", 3, 10.0)

    finish(plugin, A)
    following.follow()
    assert following.in_flight() == {}
    assert following.supervisor.finished == {A}


def test_tests_in_flight_on_two_xdist_workers_are_kept_apart(following: Following) -> None:
    gw0, gw1 = following.writer("gw0"), following.writer("gw1")

    first = emit_in_worker(gw0, TEST_START, nodeid=A, path="tests/test_a.py", line=3,
                           timeout=10.0)
    second = emit_in_worker(gw1, TEST_START, nodeid=B, path="tests/test_b.py", line=3,
                            timeout=10.0)
    following.follow()
    assert following.in_flight() == {A: first, B: second}  # the worker's pid: what a kill aims at

    emit_in_worker(gw0, TEST_FINISH, nodeid=A, path="tests/test_a.py", line=3,
                   outcome="passed", duration=0.1, timeout=10.0)
    following.follow()
    assert following.in_flight() == {B: second}
    assert following.supervisor.finished == {A}


def test_a_finish_without_a_start_counts_as_done(following: Following) -> None:
    """A plain ``pytest --tier`` child or a crashed worker's replacement: no start was seen."""
    plugin = following.writer()
    start(plugin, A)

    finish(plugin, B)
    following.follow()

    assert following.in_flight() == {A: os.getpid()}
    assert following.supervisor.finished == {B}


def test_a_hard_timeout_ends_the_test_in_flight(following: Following) -> None:
    plugin = following.writer()
    start(plugin, A)
    start(plugin, B)

    plugin.emit(HARD_TIMEOUT, nodeid=A, test_pid=os.getpid(), dump=None, message="timeout")
    following.follow()

    assert set(following.in_flight()) == {B}
    assert following.supervisor.finished == {A}  # never run again on resume


def test_the_tests_collected_are_kept_from_the_first_attempt(following: Following) -> None:
    """A resumed attempt collects only the tests left; what is left is counted against all."""
    plugin = following.writer()

    plugin.emit(COLLECTED, tests=[A, B, C])
    finish(plugin, A)
    plugin.emit(COLLECTED, tests=[B, C])  # the next attempt, with the tests left
    following.follow()

    supervisor = following.supervisor
    assert supervisor.collected == [A, B, C]
    assert [n for n in supervisor.collected if n not in supervisor.finished] == [B, C]


# -- torn and odd lines ----------------------------------------------------------------------


def test_half_a_line_waits_for_the_rest(following: Following) -> None:
    """The follower can read while a writer is inside its one ``write``."""
    line = b'{"event":"test-start","t":1.5,"pid":4321,"nodeid":"%s","timeout":10.0}\n' % (
        A.encode())
    fd = os.open(following.log.writer_path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line[:30])
        following.follow()
        assert following.in_flight() == {}

        os.write(fd, line[30:])
        following.follow()
        assert following.in_flight() == {A: 4321}
    finally:
        os.close(fd)


def test_after_a_torn_line_the_next_event_is_read(following: Following) -> None:
    """A writer killed inside a write leaves a torn line; the next event is glued to it. The
    torn start is lost; the event after it is not."""
    plugin = following.writer()
    start(plugin, A)
    fd = os.open(following.log.writer_path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b'{"event":"test-start","t":2.0,"pid":999,"nodeid":"tests/te')
    finally:
        os.close(fd)

    finish(plugin, A)
    start(plugin, C)
    following.follow()

    assert following.in_flight() == {C: os.getpid()}
    assert following.supervisor.finished == {A}


def test_a_tear_repaired_after_pytest_died_loses_no_later_event(following: Following) -> None:
    plugin = following.writer()
    fd = os.open(following.log.writer_path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b'{"event":"test-finish","t":2.0,"pid":999,"nodeid":"tests/te')
    finally:
        os.close(fd)
    following.follow()

    following.log.repair_tear()  # what the supervisor does after each pytest exit
    start(plugin, B)
    following.follow()

    assert following.in_flight() == {B: os.getpid()}
    assert following.supervisor.finished == set()


@pytest.mark.parametrize("line", [
    pytest.param(b'{"event":"test-start","t":1.0,"pid":7}\n', id="a start with no node id"),
    pytest.param(b'{"event":"test-start","t":"soon","pid":7,"nodeid":"x"}\n', id="a bad time"),
    pytest.param(b'{"event":"collect-start","t":1.0,"pid":"seven","nodeid":"m"}\n',
                 id="a bad pid"),
    pytest.param(b'{"event":"weather","t":1.0,"pid":7,"nodeid":"x"}\n', id="an unknown kind"),
    pytest.param(b'["test-start"]\n', id="no event object at all"),
])
def test_a_malformed_record_is_skipped_and_the_next_one_read(following: Following,
                                                             line: bytes) -> None:
    """A test may write to the log itself; what it writes says nothing to follow."""
    plugin = following.writer()
    fd = os.open(following.log.writer_path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    start(plugin, A)

    following.follow()

    assert following.in_flight() == {A: os.getpid()}
    assert following.supervisor.collecting == {}


# -- deadlines ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("timeout", "after", "hung"), [
    pytest.param(2.0, 2.0 + GRACE - 0.01, False, id="within its limit and the grace"),
    pytest.param(2.0, 2.0 + GRACE + 0.01, True, id="past its limit and the grace"),
    pytest.param(None, 10_000.0, False, id="no limit"),
    pytest.param(0.0, 10_000.0, False, id="a limit of 0 is none"),
])
def test_the_hard_deadline_of_the_test_in_flight(following: Following, timeout: float | None,
                                                 after: float, hung: bool) -> None:
    """The deadline runs from the test-start event's own time: the plugin's clock when the test
    began, not when the supervisor happened to read it."""
    start(following.writer(), A, timeout=timeout)
    following.follow()

    assert following.hung(following.started(A) + after) == (A if hung else None)


def test_the_test_past_its_deadline_is_the_one_named(following: Following) -> None:
    gw0, gw1 = following.writer("gw0"), following.writer("gw1")
    emit_in_worker(gw0, TEST_START, nodeid=A, path="tests/test_a.py", line=3, timeout=60.0)
    emit_in_worker(gw1, TEST_START, nodeid=B, path="tests/test_b.py", line=3, timeout=2.0)
    following.follow()

    assert following.hung(following.started(B) + 2.0 + GRACE + 0.01) == B


def test_a_finished_test_has_no_deadline(following: Following) -> None:
    plugin = following.writer()
    start(plugin, A, timeout=2.0)
    following.follow()
    began = following.started(A)

    finish(plugin, A)
    following.follow()

    assert following.hung(began + 100.0) is None


def test_a_module_collecting_past_its_collect_timeout_is_stuck(following: Following) -> None:
    """The collect-timeout has no grace: nothing in the process can time out an import."""
    plugin = following.writer()
    plugin.emit(COLLECT_START, nodeid="tests/test_slow.py", path="tests/test_slow.py",
                timeout=5.0)
    following.follow()
    began = following.supervisor.collecting[os.getpid()].started

    assert following.stuck_module(began + 4.99) is None
    assert following.stuck_module(began + 5.01) == "tests/test_slow.py"


@pytest.mark.parametrize("end", [COLLECT_FINISH, COLLECTED])
def test_a_module_collected_is_no_longer_watched(following: Following, end: str) -> None:
    plugin = following.writer()
    plugin.emit(COLLECT_START, nodeid="tests/test_slow.py", path="tests/test_slow.py",
                timeout=5.0)
    following.follow()
    began = following.supervisor.collecting[os.getpid()].started

    if end == COLLECT_FINISH:
        plugin.emit(COLLECT_FINISH, nodeid="tests/test_slow.py")
    else:
        plugin.emit(COLLECTED, tests=[A])
    following.follow()

    assert following.stuck_module(began + 100.0) is None


def test_two_workers_collecting_at_once_are_watched_apart(following: Following) -> None:
    gw0, gw1 = following.writer("gw0"), following.writer("gw1")
    x = {"nodeid": "tests/test_x.py", "path": "tests/test_x.py", "timeout": 5.0}
    y = {"nodeid": "tests/test_y.py", "path": "tests/test_y.py", "timeout": 5.0}

    first = worker_writes(gw0, [(COLLECT_START, x)])
    worker_writes(gw1, [(COLLECT_START, y), (COLLECT_FINISH, {"nodeid": y["nodeid"]})])
    following.follow()

    collecting = following.supervisor.collecting
    assert list(collecting) == [first]  # one worker's finish ends its own module only
    assert collecting[first].nodeid == "tests/test_x.py"


# -- the end of the session ------------------------------------------------------------------


def test_pytests_session_finish_starts_the_exit_watch(following: Following,
                                                      clock: Clock) -> None:
    blocking = [{"name": "poller", "where": {"path": "app/poll.py", "line": 4,
                                              "function": "run"}}]
    clock.mono = 700.0

    following.writer().emit(SESSION_FINISH, exitstatus=0, blocking=blocking)
    following.follow()

    supervisor = following.supervisor
    assert supervisor.session_finished == {os.getpid()}
    assert supervisor.session_end == 700.0  # when the supervisor saw it: the grace runs from here
    assert supervisor.blocking == {os.getpid(): blocking}


def test_a_workers_session_finish_is_not_pytests(following: Following) -> None:
    emit_in_worker(following.writer("gw0"), SESSION_FINISH, exitstatus=0, blocking=[])
    following.follow()

    assert following.supervisor.session_finished == set()
    assert following.supervisor.session_end is None


def test_the_first_session_finish_sets_the_exit_watch(following: Following,
                                                      clock: Clock) -> None:
    plugin = following.writer()
    clock.mono = 700.0
    plugin.emit(SESSION_FINISH, exitstatus=1, blocking=[])
    following.follow()

    clock.mono = 900.0
    plugin.emit(SESSION_FINISH, exitstatus=1, blocking=[])
    following.follow()

    assert following.supervisor.session_end == 700.0
