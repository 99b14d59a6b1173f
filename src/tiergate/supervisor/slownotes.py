"""Slow notes: past half its limit, a test gets a ``slow`` event with where it is now, so a report
can tell "slow and progressing" from "stuck in the same frame" when the timeout comes (and the
hard timeout can keep a reason only this earlier dump could see).

The note's tree dump takes a second or more (it waits for stacks, runs py-spy), so it runs in a
thread of its own and the supervisor's loop picks the result up: meanwhile a cancel, the budget
and the hard timeouts are acted on at once. The thread is a daemon: a dump still running when the
supervisor stops is dropped, never waited for.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable
from typing import Generic, Protocol, TypeVar

from tiergate.diagnose.treedumps import SavedDump

WAIT_SECONDS = 5.0  # at the end of an attempt, for a note's dump still being written


class Running(Protocol):
    nodeid: str
    started: float  # wall clock
    timeout: float | None
    debugging: bool  # in a debugger: its clock is stopped
    slow_noted: bool


R = TypeVar("R", bound=Running)


@dataclasses.dataclass
class _Pending(Generic[R]):
    test: R
    elapsed: float  # seconds the test had run when it was noted
    dump: concurrent.futures.Future[SavedDump]


class SlowNotes(Generic[R]):
    """*dump* takes a test's dump (in a thread of its own); *noted* is told each note whose dump
    is done, in the supervisor's thread, to write it."""

    def __init__(self, dump: Callable[[R], SavedDump],
                 noted: Callable[[R, float, SavedDump], None]) -> None:
        self._dump, self._noted = dump, noted
        self._pending: list[_Pending[R]] = []

    def check(self, tests: Iterable[R], now: float) -> None:
        """Start the dump of each test past half its limit (once per test); write the notes whose
        dumps are done."""
        for test in tests:
            if (test.slow_noted or not test.timeout or test.debugging
                    or now < test.started + test.timeout / 2):
                continue
            test.slow_noted = True
            self._pending.append(_Pending(test, round(now - test.started, 3),
                                          self._in_background(test)))
        self._write()

    def finish(self, give_up: Callable[[], bool]) -> None:
        """The attempt ended: the notes still being dumped, waited for up to WAIT_SECONDS or
        until *give_up* (a cancel: the run must end now); the rest are dropped."""
        deadline = time.monotonic() + WAIT_SECONDS
        while (self._pending and not give_up() and time.monotonic() < deadline
               and not all(p.dump.done() for p in self._pending)):
            time.sleep(0.05)
        self._write()
        self._pending.clear()

    def _in_background(self, test: R) -> concurrent.futures.Future[SavedDump]:
        future: concurrent.futures.Future[SavedDump] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(self._dump(test))
            except BaseException as exc:  # told in the note, never raised in a thread
                future.set_exception(exc)

        threading.Thread(target=run, name="tiergate-slow-dump", daemon=True).start()
        return future

    def _write(self) -> None:
        """A note for each dump that is done, in the order the tests got slow."""
        for note in [p for p in self._pending if p.dump.done()]:
            self._pending.remove(note)
            self._noted(note.test, note.elapsed, _saved(note.dump))


def _saved(future: concurrent.futures.Future[SavedDump]) -> SavedDump:
    exc = future.exception()
    if exc is not None:
        return SavedDump(None, None, f"{type(exc).__name__}: {exc}")
    return future.result()
