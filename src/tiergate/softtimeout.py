"""The first rung of the escalation ladder: the in-process soft timeout.

pytest-timeout resolves *which* timeout applies to a test (its ``--timeout`` option, ini value,
``PYTEST_TIMEOUT`` and the ``@pytest.mark.timeout`` marker) and decides when a timer is needed;
tiergate implements the timer through pytest-timeout's ``pytest_timeout_set_timer`` hook so that
the process tree is dumped *before* the test is failed, and the run then goes on. Code that holds
the GIL in C never lets the SIGALRM handler run: the supervisor's hard timeout covers that.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest


class TestTimeout(pytest.fail.Exception):  # type: ignore[misc,name-defined]
    """Raised in the test's thread when it runs past its limit; pytest reports it as a failure."""

    __test__ = False


class SoftTimer:
    """One SIGALRM timer at a time, for the test in progress on the main thread.

    The handler is installed once and stays (re-installed if a test replaced it); each test only
    arms and disarms the interval timer, which keeps the per-test cost to two system calls.
    """

    def __init__(self, on_expiry: Callable[[float], str]) -> None:
        # on_expiry(limit) takes the dump and returns the failure message; it runs in the handler.
        self._on_expiry = on_expiry
        self._previous: Any = None
        self._installed = False
        self.armed = False
        self.fired = False
        self.limit = 0.0

    def start(self, seconds: float) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return (
                False  # signals reach only the main thread; the supervisor's hard timeout remains
            )
        if signal.getsignal(signal.SIGALRM) != self._handler:
            previous = signal.signal(signal.SIGALRM, self._handler)
            if not self._installed:
                self._previous, self._installed = previous, True
        self.fired = False
        self.limit = seconds
        self.armed = True
        signal.setitimer(signal.ITIMER_REAL, seconds)
        return True

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        __tracebackhide__ = True
        if not self.armed:
            return  # a late tick after the test ended
        self.armed = False
        self.fired = True
        raise TestTimeout(self._on_expiry(self.limit), pytrace=False)

    def cancel(self) -> None:
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self.armed = False

    def close(self) -> None:
        """Disarm and give SIGALRM back to whoever had it before the run."""
        self.cancel()
        if self._installed:
            signal.signal(signal.SIGALRM, self._previous or signal.SIG_DFL)
            self._installed = False
