"""The first rung of the escalation ladder: the in-process soft timeout.

The tiergate plugin arms this timer around each test with the test's limit (its closest
``@pytest.mark.timeout``, else ``--timeout``, else the tier's ``test-timeout``). When it fires, the
process tree is dumped *before* the test is failed, and the run then goes on. Code that holds
the GIL in C never lets the SIGALRM handler run: the supervisor's hard timeout covers that.
"""

from __future__ import annotations

import inspect
import linecache
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the culprit rules load when a limit is hit, not with every run
    from tiergate.diagnose.culprit import FixtureInFlight

# The C function: signal.getsignal wraps it in an enum conversion that raises and catches
# ValueError for every handler that is a function, several microseconds per test.
_getsignal: Callable[[int], Any] = getattr(
    sys.modules.get("_signal"), "getsignal", signal.getsignal
)


class import_wait_kept:  # lower case: used as a statement, `with import_wait_kept():`
    """Around an import made in the SIGALRM handler. Before Python 3.12, an import overwrites,
    then deletes, this thread's entry in importlib's table of import-lock waits
    (``_blocking_on``); when the handler interrupted a test waiting for an import lock, that
    import then ends in ``KeyError`` instead of the timeout. The entry is put back."""

    def __enter__(self) -> None:
        table = getattr(sys.modules.get("_frozen_importlib"), "_blocking_on", None)
        self._table = table if type(table) is dict else None  # 3.12+: another structure
        self._me = threading.get_ident()
        self._waiting = self._table.get(self._me) if self._table is not None else None

    def __exit__(self, *exc: object) -> None:
        if self._waiting is not None and self._table is not None:
            self._table[self._me] = self._waiting


class TestTimeout(pytest.fail.Exception):  # type: ignore[misc,name-defined]
    """Raised in the test's thread when it runs past its limit; pytest reports it as a failure."""

    __test__ = False


class SoftTimer:
    """The soft timer of the test in progress on the main thread.

    A test only sets its deadline; the SIGALRM interval timer is re-armed when the pending alarm
    is not already due within ``SLACK`` seconds before that deadline. On a run of quick tests that
    is about once per ``SLACK`` seconds of run time instead of two system calls per test, and the
    alarm never goes off early in a test that has not run nearly its whole limit: the alarm is
    never later than the deadline and never more than ``SLACK`` before it, counted from the start
    of the test in progress. When it goes off before the deadline (in that last stretch, or
    between tests) the handler re-arms for what is left and returns.

    The handler is installed once and re-installed when a test replaced it (checked at each test
    start: ``signal.getsignal`` is not a system call). A test that cancels ``ITIMER_REAL`` itself
    (``signal.alarm(0)``) while keeping the handler leaves the tests that follow it within the
    next ``SLACK`` seconds without a soft timer; the supervisor's hard timeout still covers them.
    """

    SLACK = 1.0

    def __init__(self, on_expiry: Callable[[float], str],
                 on_debugger: Callable[[], None] | None = None) -> None:
        # on_expiry(limit) takes the dump and returns the failure message; it runs in the handler.
        # on_debugger(): the limit passed inside a debugger, so the timer stood down instead.
        self._on_expiry = on_expiry
        self._on_debugger = on_debugger
        self._bound = self._handler  # one bound method: getsignal() is compared by identity
        self._previous: Any = None
        self._installed = False
        self._main_thread = threading.main_thread().ident
        self.deadline: float | None = None  # time.monotonic() of the test in progress's limit
        self.limit = 0.0
        self.fired = False
        self._alarm_at: float | None = None  # when the pending alarm goes off, if one is pending

    def start(self, seconds: float) -> bool:
        """The test in progress may run *seconds*."""
        if threading.get_ident() != self._main_thread:
            return False  # signals reach only the main thread; the hard timeout remains
        now = time.monotonic()
        deadline = now + seconds
        self.deadline, self.limit = deadline, seconds
        if _getsignal(signal.SIGALRM) is not self._bound:
            previous = signal.signal(signal.SIGALRM, self._bound)
            if not self._installed:
                self._previous, self._installed = previous, True
            self._alarm_at = None  # whoever took SIGALRM may have taken the timer too
        alarm = self._alarm_at
        if alarm is None or alarm > deadline or alarm < deadline - min(self.SLACK, seconds / 2):
            self._arm(deadline, now)
        return True

    def _arm(self, at: float, now: float) -> None:
        signal.setitimer(signal.ITIMER_REAL, max(at - now, 1e-4))
        self._alarm_at = at

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        __tracebackhide__ = True
        self._alarm_at = None
        deadline = self.deadline
        if deadline is None:
            return  # between tests, or a test without a limit: the next test arms again
        now = time.monotonic()
        if now < deadline - 1e-3:
            self._arm(deadline, now)  # an alarm armed for an earlier test: not this one's yet
            return
        self.deadline = None
        if debugger_active():  # as pytest-timeout: no timeout inside the user's debugger
            if self._on_debugger is not None:
                self._on_debugger()
            return
        self.fired = True
        with import_wait_kept():  # the dump imports; the test may be waiting in an import
            message = self._on_expiry(self.limit)
        raise TestTimeout(message, pytrace=False)

    def cancel(self) -> bool:
        """The test ended; returns whether its limit was hit. No system call: a pending alarm
        that goes off later finds no deadline or a later test's."""
        self.deadline = None
        fired, self.fired = self.fired, False
        return fired

    def disarm(self) -> None:
        """Stop the pending alarm too (pytest entered the debugger)."""
        self.deadline = None
        if self._alarm_at is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self._alarm_at = None

    def close(self) -> None:
        """Disarm and give SIGALRM back to whoever had it before the run."""
        self.disarm()
        if self._installed:
            signal.signal(signal.SIGALRM, self._previous or signal.SIG_DFL)
            self._installed = False


# -- read from the stack only when a limit is hit: no cost per test ---------------------------

# The trace functions of debuggers (pdb and every bdb-based one, PyCharm's and VS Code's pydevd):
# the list pytest-timeout's is_debugging() uses.
_DEBUGGER_MODULES = ("bdb", "pdb", "pydevd", "pydevd_frame_evaluator")


def debugger_active() -> bool:
    """A debugger is tracing this thread: a timeout now would fire inside the user's session."""
    trace = sys.gettrace()
    if trace is None:
        monitoring = getattr(sys, "monitoring", None)  # 3.12+: debuggers register a tool id
        return monitoring is not None and monitoring.get_tool(monitoring.DEBUGGER_ID) is not None
    return is_debugger_trace(trace)


def is_debugger_trace(trace: object) -> bool:
    """*trace* (a ``sys.settrace`` function) is a debugger's, not a coverage tool's."""
    owner = getattr(trace, "__self__", trace)
    module = getattr(trace, "__module__", None) or type(owner).__module__
    return str(module).split(".")[0].startswith(_DEBUGGER_MODULES)


_FIXTURE_FRAMES = frozenset({"call_fixture_func", "_teardown_yield_fixture", "finish"})


def fixture_in_flight(frame: FrameType | None,
                      display: Callable[[str], str]) -> FixtureInFlight | None:
    """The innermost fixture being set up or torn down on the stack of *frame*: pytest's
    ``call_fixture_func`` (setup), ``_teardown_yield_fixture`` and ``FixtureDef.finish``
    (teardown) in ``_pytest/fixtures.py``, whose locals name the fixture."""
    teardown_of: Any = None  # the function of a yield fixture being torn down, seen first
    while frame is not None:
        code = frame.f_code
        if code.co_name in _FIXTURE_FRAMES and code.co_filename.endswith(_PYTEST_FIXTURES):
            local = frame.f_locals
            if code.co_name == "call_fixture_func":
                request = local.get("request")
                return _fixture("setup", getattr(request, "fixturename", None),
                                getattr(request, "scope", None), local.get("fixturefunc"), display)
            if code.co_name == "_teardown_yield_fixture":
                teardown_of = local.get("fixturefunc")
            else:  # FixtureDef.finish: its finalizers, the yield fixture's teardown among them
                fixturedef = local.get("self")
                return _fixture("teardown", getattr(fixturedef, "argname", None),
                                getattr(fixturedef, "scope", None),
                                teardown_of or getattr(fixturedef, "func", None), display)
        frame = frame.f_back
    return None


_PYTEST_FIXTURES = "/_pytest/fixtures.py"


def _fixture(phase: str, name: object, scope: object, function: object,
             display: Callable[[str], str]) -> FixtureInFlight | None:
    if not isinstance(name, str):
        return None
    code = getattr(inspect.unwrap(function), "__code__", None) if callable(function) else None
    path, line = (code.co_filename, _def_line(code)) if code is not None else ("?", None)
    from tiergate.diagnose.culprit import FixtureInFlight

    return FixtureInFlight(phase, name, str(scope or "function"), display(path), line)


def _def_line(code: CodeType) -> int:
    """The ``def`` line: a code object's first line is its first decorator's."""
    line = code.co_firstlineno
    while linecache.getline(code.co_filename, line).lstrip().startswith("@"):
        line += 1
    return line


def protocol_phase(frame: FrameType | None) -> str | None:
    """setup, call or teardown: the phase pytest's runner is in (``call_and_report``'s ``when``)."""
    while frame is not None:
        if frame.f_code.co_name == "call_and_report" and frame.f_code.co_filename.endswith(
                "/_pytest/runner.py"):
            when = frame.f_locals.get("when")
            return when if isinstance(when, str) else None
        frame = frame.f_back
    return None
