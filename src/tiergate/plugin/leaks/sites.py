"""Where resources come from: cheap creation-site recording for threads, processes and event loops.

Leak findings are only useful if they say where the leaked thing was made. Capturing a full stack
per creation is too dear, so ``Thread.start``, ``Popen.__init__``, ``BaseProcess.start`` and
``BaseEventLoop.__init__`` are wrapped while the watch is on; each wrapper walks a few frames up to
the first one outside the standard library's machinery and keeps (path, line, function). Spawns
also bump a counter, so the process probe only lists ``/proc`` children when something was spawned.
``socket.socket.__init__`` is wrapped too, so that an unclosed socket's ResourceWarning can say
where the socket was made.

A few functions of ``os`` only bump counters, so that the probes' cheap tokens move when they are
called (there is no audit hook: a Python hook is a call on every audited event, some twenty per
test, whatever it watches): ``posix_spawn``/``posix_spawnp`` (a child that bypasses ``Popen``),
``putenv``/``unsetenv`` (every change through ``os.environ``, whose length alone misses a changed
value) and ``chdir``/``fchdir``.

What is kept is strings and numbers, never a frame. The registry holds a user's object only while
it is a live resource, the thing a leak finding is about: an event loop until it is closed, a
``Popen`` until its child is waited for. A test that checks its objects are freed (``weakref`` and
``gc.collect()``) must see what plain pytest shows it.
"""

from __future__ import annotations

import dataclasses
import functools
import linecache
import os
import sys
import threading
import weakref
from collections.abc import Callable
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio
    import multiprocessing.process
    import subprocess

# Frames in these files are machinery, not the place a user would fix.
_MACHINERY = (
    os.path.dirname(threading.__file__) + os.sep + "threading.py",
    os.path.dirname(threading.__file__) + os.sep + "subprocess.py",
    os.sep + "multiprocessing" + os.sep,
    os.sep + "concurrent" + os.sep + "futures" + os.sep,
    os.sep + "asyncio" + os.sep,
    os.sep + "tiergate" + os.sep + "leaks" + os.sep,
)


@dataclasses.dataclass(frozen=True)
class Site:
    """Where a resource was made: the first frame outside the standard library."""

    path: str
    line: int
    function: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} in {self.function}"


_STDLIB = os.path.dirname(os.__file__) + os.sep

# Variables pytest itself sets and unsets around every test: no change a test made.
VOLATILE_ENV = frozenset({"PYTEST_CURRENT_TEST"})
_QUIET_KEYS: frozenset[object] = VOLATILE_ENV | {name.encode() for name in VOLATILE_ENV}


def _is_library(path: str) -> bool:
    """The standard library (not a site-packages beneath it), frozen modules, or our machinery."""
    if path.startswith(_STDLIB) and "site-packages" not in path[len(_STDLIB):]:
        return True
    return path.startswith("<frozen ") or any(part in path for part in _MACHINERY)


def function_at(path: str, line: int) -> str:
    """The name of the def enclosing *line* (a cheap read of the source; '' when unknown)."""
    for number in range(line, 0, -1):
        text = linecache.getline(path, number).lstrip()
        if text.startswith(("def ", "async def ")):
            return text.split("def ", 1)[1].split("(", 1)[0].strip()
        if text.startswith("class "):
            break
    return "<module>" if line else ""


def site_of_traceback(traceback: Any) -> Site | None:
    """The innermost frame of a tracemalloc traceback (oldest frame first) that is not the
    standard library's or tiergate's; the innermost frame when all are."""
    frames = list(traceback or ())
    if not frames:
        return None
    chosen = next((f for f in reversed(frames) if not _is_library(f.filename)), frames[-1])
    return Site(chosen.filename, chosen.lineno, function_at(chosen.filename, chosen.lineno))


def capture_site(skip: int = 1, *, library: bool = False) -> Site | None:
    """The innermost caller frame that is not thread/process/loop machinery (with *library*: not
    the standard library either, so a socket made by ``create_connection`` is the caller's)."""
    try:
        frame: FrameType | None = sys._getframe(skip + 1)
    except ValueError:
        return None
    skipped = _is_library if library else _is_machinery
    for _ in range(40):
        if frame is None:
            return None
        filename = frame.f_code.co_filename
        if not skipped(filename):
            return Site(filename, frame.f_lineno, frame.f_code.co_name)
        frame = frame.f_back
    return None


def _is_machinery(path: str) -> bool:
    return any(part in path for part in _MACHINERY)


class Spawn:
    """A child made through ``Popen`` or ``multiprocessing``, and where."""

    def __init__(self, pid: int, site: Site | None,
                 popen: subprocess.Popen[Any] | None) -> None:
        self.pid = pid
        self.site = site
        # Held until it is waited for: a Popen dropped while its child runs warns
        # (ResourceWarning) in whatever test the garbage collector happens to run in; the leak is
        # reported on its own test. Once waited for, it is the user's alone: only a weak reference.
        self._held = popen
        self._ref = weakref.ref(popen) if popen is not None else None

    @property
    def popen(self) -> subprocess.Popen[Any] | None:
        if self._held is not None:
            return self._held
        return self._ref() if self._ref is not None else None

    def waited(self) -> None:
        self._held = None


class Registry:
    """What the wrappers saw. One per process; the watch reads it, the wrappers write it."""

    def __init__(self) -> None:
        self.spawns = 0  # bumped on every process creation we can see
        self.thread_starts = 0  # bumped on every Thread.start
        self.env_changes = 0  # bumped by putenv/unsetenv (not pytest's own), chdir and fchdir
        self.sockets = 0  # bumped by every socket.socket made (accept's too)
        self.made = 0  # bumped by every wrapper: something a probe looks for was made or changed
        self.processes: dict[int, Spawn] = {}
        # (sequence, loop) of the open ones: a loop leaves the list when it is closed.
        self.loops: list[tuple[int, asyncio.AbstractEventLoop]] = []
        # Where each open socket was made, by id(): a socket has no room for an attribute
        # (__slots__). Closing it drops its entry; one finalised unclosed leaves its entry until a
        # socket made at the same address replaces it, so a live socket's entry is its own.
        self.socket_sites: dict[int, Site | None] = {}
        self.loop_seq = 0
        self.executor_seq = 0  # bumped by every ThreadPoolExecutor made; each carries its number
        # Numbers of the pools made while a fixture of a wider scope was set up: theirs, not the
        # test's that triggered the setup (see ThreadProbe).
        self.fixture_executors: set[int] = set()
        self._undo: list[Callable[[], None]] = []
        self._installed = False
        self._pending = self._wrappable()
        self._modules_seen = -1  # len(sys.modules) at the last refresh

    # -- installing -------------------------------------------------------------------------

    def install(self) -> None:
        if self._installed:
            return
        self._installed = True
        self._wrap(threading.Thread, "start", self._thread_start)
        for name, make in (("posix_spawn", self._spawned), ("posix_spawnp", self._spawned),
                           ("putenv", self._env_set), ("unsetenv", self._env_unset),
                           ("chdir", self._cwd_changed), ("fchdir", self._cwd_changed)):
            if name in os.__dict__:
                self._wrap(os, name, make)
        os.register_at_fork(after_in_parent=self._forked)
        self.refresh()

    def refresh(self) -> None:
        """Wrap what has been imported since. subprocess, multiprocessing and asyncio are wrapped
        only once the suite imports them: importing them ourselves would cost a trivial suite
        more than all the probes together."""
        if not self._installed or not self._pending or len(sys.modules) == self._modules_seen:
            return
        self._modules_seen = len(sys.modules)
        for module, owner, name, make in list(self._pending):
            loaded = sys.modules.get(module)
            if loaded is not None:
                self._pending.remove((module, owner, name, make))
                self._wrap(getattr(loaded, owner), name, make)

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()
        self._installed = False
        self._pending = self._wrappable()
        self._modules_seen = -1

    def _wrappable(self) -> list[tuple[str, str, str, Callable[[Any], Any]]]:
        return [
            ("subprocess", "Popen", "__init__", self._popen_init),
            ("subprocess", "Popen", "wait", self._popen_reaped),
            ("subprocess", "Popen", "poll", self._popen_reaped),
            ("multiprocessing.process", "BaseProcess", "start", self._process_start),
            ("asyncio.base_events", "BaseEventLoop", "__init__", self._loop_init),
            ("asyncio.base_events", "BaseEventLoop", "close", self._loop_close),
            ("socket", "socket", "__init__", self._socket_init),
            ("socket", "socket", "close", self._socket_close),
            ("socket", "socket", "detach", self._socket_close),
            ("concurrent.futures.thread", "ThreadPoolExecutor", "__init__", self._executor_init),
        ]

    def _wrap(self, owner: type | ModuleType, name: str, make: Callable[[Any], Any]) -> None:
        original = owner.__dict__[name]
        # The wrapper looks like the original to inspect and mock's autospec.
        setattr(owner, name, functools.update_wrapper(make(original), original))
        self._undo.append(lambda: setattr(owner, name, original))

    # -- the wrappers -----------------------------------------------------------------------

    def _thread_start(self, original: Any) -> Any:
        registry = self

        def start(thread: threading.Thread) -> None:
            thread._tiergate_site = capture_site()  # type: ignore[attr-defined]
            registry.thread_starts += 1
            registry.made += 1
            original(thread)

        return start

    def _popen_init(self, original: Any) -> Any:
        registry = self

        def __init__(popen: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
            site = capture_site()
            original(popen, *args, **kwargs)
            registry.spawns += 1
            registry.made += 1
            registry.processes[popen.pid] = Spawn(popen.pid, site, popen)

        return __init__

    def _spawned(self, original: Any) -> Any:
        registry = self

        def posix_spawn(*args: Any, **kwargs: Any) -> int:
            pid = original(*args, **kwargs)
            registry.spawns += 1
            registry.made += 1
            return int(pid)

        return posix_spawn

    # pytest sets and unsets PYTEST_CURRENT_TEST four times per test: each wrapper takes its
    # function's own arguments (no *args to pack) and counts no change of a volatile name.

    def _env_set(self, original: Any) -> Any:
        registry, quiet = self, _QUIET_KEYS

        def putenv(key: Any, value: Any) -> None:
            original(key, value)
            if key not in quiet:
                registry.env_changes += 1
                registry.made += 1

        return putenv

    def _env_unset(self, original: Any) -> Any:
        registry, quiet = self, _QUIET_KEYS

        def unsetenv(key: Any) -> None:
            original(key)
            if key not in quiet:
                registry.env_changes += 1
                registry.made += 1

        return unsetenv

    def _cwd_changed(self, original: Any) -> Any:
        registry = self

        def chdir(path: Any) -> None:
            original(path)
            registry.env_changes += 1
            registry.made += 1

        return chdir

    def _popen_reaped(self, original: Any) -> Any:
        registry = self

        def wait_or_poll(popen: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> Any:
            result = original(popen, *args, **kwargs)
            if popen.returncode is not None:
                spawn = registry.processes.get(popen.pid)
                if spawn is not None:
                    spawn.waited()
            return result

        return wait_or_poll

    def _process_start(self, original: Any) -> Any:
        registry = self

        def start(process: multiprocessing.process.BaseProcess) -> None:
            site = capture_site()
            original(process)
            registry.spawns += 1
            registry.made += 1
            if process.pid is not None:
                registry.processes[process.pid] = Spawn(process.pid, site, None)

        return start

    def _loop_init(self, original: Any) -> Any:
        registry = self

        def __init__(loop: asyncio.AbstractEventLoop, *args: Any, **kwargs: Any) -> None:
            original(loop, *args, **kwargs)
            registry.loop_seq += 1
            registry.made += 1
            registry.loops.append((registry.loop_seq, loop))
            loop._tiergate_site = capture_site()  # type: ignore[attr-defined]

        return __init__

    def _loop_close(self, original: Any) -> Any:
        registry = self

        def close(loop: asyncio.AbstractEventLoop) -> None:
            original(loop)
            if loop.is_closed():
                registry.loops[:] = [(seq, kept) for seq, kept in registry.loops
                                     if kept is not loop]

        return close

    def _socket_init(self, original: Any) -> Any:
        registry, sites = self, self.socket_sites

        def __init__(sock: Any, *args: Any, **kwargs: Any) -> None:
            original(sock, *args, **kwargs)
            registry.sockets += 1
            sites[id(sock)] = capture_site(library=True)

        return __init__

    def _socket_close(self, original: Any) -> Any:
        sites = self.socket_sites

        def close_or_detach(sock: Any) -> Any:
            sites.pop(id(sock), None)
            return original(sock)

        return close_or_detach

    def site_of(self, obj: object) -> Site | None:
        """Where *obj* (alive: the warning about it holds it) was made, when a wrapper saw it."""
        site = getattr(obj, "_tiergate_site", None)  # threads and event loops
        if isinstance(site, Site):
            return site
        socket = sys.modules.get("socket")
        if socket is not None and isinstance(obj, socket.socket):
            return self.socket_sites.get(id(obj))
        return None

    def _executor_init(self, original: Any) -> Any:
        registry = self

        def __init__(executor: Any, *args: Any, **kwargs: Any) -> None:
            original(executor, *args, **kwargs)
            registry.executor_seq += 1
            registry.made += 1
            executor._tiergate_seq = registry.executor_seq

        return __init__

    def forget_waited(self) -> None:
        for pid, spawn in list(self.processes.items()):
            if spawn.popen is None or spawn.popen.returncode is not None:
                del self.processes[pid]

    def _forked(self) -> None:
        self.spawns += 1
        self.made += 1


REGISTRY = Registry()
