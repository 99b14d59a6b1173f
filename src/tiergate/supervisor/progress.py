"""Live progress in the step log: what a person watching a long tier wants to see while it runs.

A ``SLOW [>60s] test_id`` line when a test runs past the tier's ``slow-after`` (once per run of a
test), and every ``progress-interval`` one line with the tests in flight and their ages, how many
are done and left, and the budget left. Plain lines, never a redraw: a CI log is no terminal, and
each line must read on its own there. The supervisor feeds it from the event tail it already
follows; nothing here reads the log or touches a process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from tiergate.report.escape import terminal_text

# nextest's slow-timeout and regrtest's "running: ..." lines come well before the limit: a
# quarter of a test's own limit tells "slow" early, and stays under the slow note at half.
SLOW_AFTER_SHARE = 0.25
SHOWN_IN_FLIGHT = 8  # tests a progress line names; the rest are counted


class Running(Protocol):
    nodeid: str
    started: float  # wall clock
    timeout: float | None
    debugging: bool


class Progress:
    """*say* prints one line to the step log. *slow_after* None: a share of each test's limit;
    0: no SLOW lines. *interval* 0: no progress lines."""

    def __init__(self, say: Callable[[str], None], *, slow_after: float | None,
                 interval: float, first_line_at: float) -> None:
        self._say = say
        self._slow_after = slow_after
        self._interval = interval
        self._next_line = first_line_at + interval  # wall clock
        self._said_slow: set[tuple[str, float]] = set()  # (nodeid, started): a resumed run anew

    def check(self, tests: Iterable[Running], *, now: float, done: int, total: int | None,
              budget_left: float) -> None:
        """One look, between two polls of the supervisor: the SLOW lines due, then the progress
        line when its interval has passed."""
        running = list(tests)
        for test in running:
            self._maybe_slow(test, now)
        if self._interval and now >= self._next_line:
            self._next_line = now + self._interval
            self._say(progress_line(running, now=now, done=done, total=total,
                                    budget_left=budget_left))

    def _maybe_slow(self, test: Running, now: float) -> None:
        threshold = self.threshold(test)
        key = (test.nodeid, test.started)
        if threshold is None or test.debugging or key in self._said_slow:
            return
        if now - test.started > threshold:
            self._said_slow.add(key)
            self._say(terminal_text(f"SLOW [>{age(threshold)}] {test.nodeid}"))

    def threshold(self, test: Running) -> float | None:
        """Seconds after which *test* is slow, or None: never said."""
        if self._slow_after is not None:
            return self._slow_after or None
        return test.timeout * SLOW_AFTER_SHARE if test.timeout else None


def progress_line(running: list[Running], *, now: float, done: int, total: int | None,
                  budget_left: float) -> str:
    """``PROGRESS 12 done, 30 left, budget 14m20s left; running: a (45s), b (3s)``; the oldest
    first, since the oldest is the one a person is waiting on."""
    oldest = sorted(running, key=lambda t: t.started)
    names = ", ".join(f"{t.nodeid} ({age(now - t.started)})" for t in oldest[:SHOWN_IN_FLIGHT])
    if len(oldest) > SHOWN_IN_FLIGHT:
        names += f" and {len(oldest) - SHOWN_IN_FLIGHT} more"
    left = f", {max(0, total - done)} left" if total is not None else ""
    head = f"PROGRESS {done} done{left}, budget {age(max(0.0, budget_left))} left"
    return terminal_text(f"{head}; running: {names or 'nothing'}")


def age(seconds: float) -> str:
    """A whole number of seconds up to two minutes, then minutes and seconds: ``45s``,
    ``3m05s``; under ten seconds one decimal place where it has one (``1.5s``)."""
    if seconds < 10 and round(seconds, 1) != int(seconds):
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 120:
        return f"{whole}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
