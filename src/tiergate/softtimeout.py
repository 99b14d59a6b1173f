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
import time
from collections.abc import Callable
from types import FrameType

import pytest


class TestTimeout(pytest.fail.Exception):  # type: ignore[misc,name-defined]
    """Raised in the test's thread when it runs past its limit; pytest reports it as a failure."""

    __test__ = False


class SoftTimer:
    """One SIGALRM timer at a time, for the test in progress on the main thread."""

    def __init__(self, on_expiry: Callable[[float], str]) -> None:
        # on_expiry(limit) takes the dump and returns the failure message; it runs in the handler.
        self._on_expiry = on_expiry
        self._previous: object = None
        self.armed = False
        self.fired = False
        self.started = 0.0

    def start(self, seconds: float) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return (
                False  # signals reach only the main thread; the supervisor's hard timeout remains
            )
        self.fired = False
        self.started = time.monotonic()
        limit = seconds

        def handler(signum: int, frame: FrameType | None) -> None:
            __tracebackhide__ = True
            self.armed = False
            self.fired = True
            message = self._on_expiry(limit)
            raise TestTimeout(message, pytrace=False)

        self._previous = signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        self.armed = True
        return True

    def cancel(self) -> None:
        if not self.armed and self._previous is None:
            return
        signal.setitimer(signal.ITIMER_REAL, 0)
        previous = self._previous if self._previous is not None else signal.SIG_DFL
        signal.signal(signal.SIGALRM, previous)  # type: ignore[arg-type]
        self._previous = None
        self.armed = False
