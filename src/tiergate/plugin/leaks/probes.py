"""The leak probes: a table of small uniform objects, in the manner of CPython's ``save_env.py``.

Each probe has a ``snapshot()`` that costs microseconds, a ``diff(before, after, claimed)`` that
names what is new and still alive as ``Leftover``s, and a ``settle()`` that gives those leftovers a
short grace to go away on their own (a thread finishing its last line, a child that was just
killed). Adding a kind of leak is adding one entry to ``default_probes()``; the loop in
``watch.py`` that compares snapshots never changes.

A snapshot is not taken around every test: each probe has a ``token()`` (a counter or a length,
well under a microsecond) that changes when something it looks for may have been made or
changed; the wrappers in ``sites`` bump the counters. While no token moved, the last snapshot
still describes the process and is reused (``watch.Current``); on a test that touches nothing, no
probe looks at all. There is no audit hook: a Python hook is a call on every audited event, and
pytest raises about twenty per test, so it cost more than every probe together.

``claimed`` is how one resource is reported once: a probe that owns file descriptors (an event
loop's selector, a Popen's pipes, a socket the network guard blocked) adds them to ``claimed`` and
the fd probe, last in the table, skips them.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from tiergate.diagnose import procfs
from tiergate.plugin.leaks.sites import REGISTRY, VOLATILE_ENV, Site
from tiergate.protocol.layout import RESULTS_ROOT
from tiergate.protocol.redact import command_line

if TYPE_CHECKING:
    import asyncio

# Environment variables that pytest itself changes around every test.
# Threads tiergate itself starts are named with this prefix and never reported.
OWN_THREAD_PREFIX = "tiergate"
# File descriptors pointing into a results directory belong to tiergate (events, dumps).
_OWN_PATH_PART = os.sep + RESULTS_ROOT + os.sep

# Objects of reported leftovers, kept alive to the end of the process so that their collection
# does not raise a ResourceWarning in whichever test happens to run next. Bounded, or a suite
# that leaks in every test would keep everything it leaked: past KEPT_MOST the oldest goes.
KEPT_MOST = 256
KEEP_ALIVE: collections.deque[object] = collections.deque()


def keep_alive(obj: object) -> None:
    """Keep *obj* (a reported leftover) alive; let go of the oldest one past ``KEPT_MOST``,
    quietly: its finding is out already, and what its collection says must reach no test."""
    KEEP_ALIVE.append(obj)
    if len(KEEP_ALIVE) > KEPT_MOST:
        from tiergate.plugin.leaks import quiet  # the slow path: past hundreds of leaks

        with quiet.caught():
            KEEP_ALIVE.popleft()  # collected here, by reference counting


@dataclasses.dataclass(frozen=True)
class Leftover:
    """A resource a window left behind (a thread, a child, an fd...), as one probe saw it."""

    kind: str  # the finding kind: leak-thread, leak-fd, ...
    key: Hashable  # identity of the resource, to match fixture-owned resources
    what: str  # one line, for the message
    site: Site | None = None  # where it was created
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    obj: object = dataclasses.field(default=None, compare=False, repr=False)


class Probe(Protocol):
    """``diff`` of two equal snapshots must be empty: the watch skips it. ``token`` is optional;
    a probe without one is snapshotted at every window. A probe
    whose diff reports more kinds than its own names them in an optional ``kinds``: ``settle``
    is given the leftovers of those."""

    name: str  # the word users write in @pytest.mark.allow_leak(...) and leak-thresholds
    kind: str

    def token(self) -> Hashable: ...

    def snapshot(self) -> Any: ...

    def diff(self, before: Any, after: Any, claimed: set[int]) -> list[Leftover]: ...

    def settle(self, leftovers: Sequence[Leftover], deadline: float) -> None: ...


_DAEMON = {True: ", daemon", False: ""}


class ThreadProbe:
    """Threads in ``threading._active``. The token counts ``Thread.start`` calls (wrapped in
    ``sites``) and the number of live threads: a thread started through a ``start`` captured
    before the wrapper still changes the count, unless another ended in the same window."""

    name, kind = "threads", "leak-thread"

    def token(self) -> Hashable:
        return (REGISTRY.thread_starts, len(threading._active),  # type: ignore[attr-defined]
                REGISTRY.executor_seq)

    def snapshot(self) -> tuple[frozenset[threading.Thread], int]:
        """The live threads, and the number of the last ThreadPoolExecutor made before."""
        return frozenset(threading._active.values()), REGISTRY.executor_seq  # type: ignore[attr-defined]

    def diff(self, before: Any, after: Any, claimed: set[int]) -> list[Leftover]:
        (threads_before, executors_before), (threads_after, _) = before, after
        out = []
        running: set[int] | None = None  # idents with a frame, read once, only when needed
        for thread in threads_after - threads_before:
            if not thread.is_alive():
                running = set(sys._current_frames()) if running is None else running
            if (isinstance(thread, threading._DummyThread)
                    or thread.name.startswith(OWN_THREAD_PREFIX)
                    or not _still_running(thread, running)
                    or _older_pool_worker(thread, executors_before)
                    or _process_wide_worker(thread)):
                continue
            target = getattr(thread, "_target", None)
            if target is not None:
                target_name = getattr(target, "__qualname__", repr(target))
            else:
                target_name = f"{type(thread).__qualname__}.run"
            out.append(Leftover(
                self.kind, ("thread", id(thread), thread.ident),
                f"thread {thread.name!r} (target {target_name}{_DAEMON[thread.daemon]})",
                getattr(thread, "_tiergate_site", None),
                {"name": thread.name, "target": target_name, "daemon": thread.daemon},
            ))
        return out

    def settle(self, leftovers: Sequence[Leftover], deadline: float) -> None:
        for thread in threading.enumerate():
            if any(left.key == ("thread", id(thread), thread.ident) for left in leftovers):
                thread.join(max(0.0, deadline - time.monotonic()))


def _still_running(thread: threading.Thread, running: set[int] | None) -> bool:
    """``is_alive()``, except for a thread it wrongly calls stopped: on 3.11 an exception (a soft
    timeout) interrupting ``join()`` marks a thread that still runs as stopped
    (``Thread._wait_for_tstate_lock``). Such a thread still has a frame."""
    return thread.is_alive() or (running is not None and thread.ident in running)


# Thread caches a library keeps for the whole process: a worker is made on first need, reused by
# every later call and ends on its own when idle. The test that first needed one leaked nothing.
_PROCESS_WIDE_WORKERS = frozenset({
    ("trio._core._thread_cache", "WorkerThread._work"),  # trio.to_thread / run_sync_in_thread
})


def _process_wide_worker(thread: threading.Thread) -> bool:
    target = getattr(thread, "_target", None)
    return (getattr(target, "__module__", None),
            getattr(target, "__qualname__", None)) in _PROCESS_WIDE_WORKERS


def _older_pool_worker(thread: threading.Thread, executors_before: int) -> bool:
    """A worker that a ThreadPoolExecutor made before the window (or by a fixture of a wider
    scope) started on demand in it: the pool starts its threads lazily, at the first ``submit``
    that finds none idle, and they belong to the pool (to whoever made it: a session fixture, a
    module global), not to the test whose job happened to need one. A pool the window made itself
    and left running is its leak."""
    target = getattr(thread, "_target", None)
    if getattr(target, "__module__", None) != "concurrent.futures.thread":
        return False
    args = getattr(thread, "_args", ())
    reference = args[0] if args else None
    executor = reference() if callable(reference) else None
    if executor is None:
        return False
    made = getattr(executor, "_tiergate_seq", None)
    if made is None:
        return True  # made before the watch began
    if made <= executors_before or made in REGISTRY.fixture_executors:
        return True
    # An event loop's default executor (run_in_executor(None, ...)) is the loop's, made on its
    # first use and kept until the loop is closed: a leaked loop is the loop's own finding.
    return any(getattr(loop, "_default_executor", None) is executor
               for _, loop in REGISTRY.loops) or (
        "asyncio" in sys.modules
        and getattr(_current_loop(), "_default_executor", None) is executor)


def held_fds(thread: threading.Thread) -> set[int]:
    """The fds of the sockets and files a running thread holds: its target and arguments, the
    locals of its frames, and their attributes, two levels down. For one finding per leaked
    resource: a server thread and the socket it serves on are one leak."""
    import io
    import socket
    import types

    roots: list[object] = [thread]
    target = getattr(thread, "_target", None)
    roots += [target, getattr(target, "__self__", None), *getattr(thread, "_args", ()),
              *getattr(thread, "_kwargs", {}).values()]
    frame = sys._current_frames().get(thread.ident or -1)
    for _ in range(100):
        if frame is None:
            break
        roots.extend(frame.f_locals.values())
        frame = frame.f_back
    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, str, bytes,
            int, float)
    fds: set[int] = set()
    # Breadth first, so that each object is looked at from its nearest root.
    queue = collections.deque((root, 2) for root in roots)
    seen: set[int] = set()
    while queue:
        obj, depth = queue.popleft()
        if obj is None or id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        if isinstance(obj, (socket.socket, io.IOBase)):
            try:
                fd = obj.fileno()
            except (OSError, ValueError):
                continue
            if fd >= 0:
                fds.add(fd)
            continue
        if depth <= 0:
            continue
        if isinstance(obj, (list, tuple, set, frozenset)):
            children: list[object] = list(obj)[:64]
        elif isinstance(obj, dict):
            children = list(obj.values())[:64]
        elif isinstance(obj, types.MethodType):
            children = [obj.__self__]
        else:
            attributes = getattr(obj, "__dict__", None)
            if not isinstance(attributes, dict):
                attributes = {}
            children = list(attributes.values())[:64]
            # A raw descriptor kept as a number (os.pipe(), inotify_init()), named as one.
            fds.update(value for name, value in list(attributes.items())[:64]
                       if type(value) is int and value > 2 and re.search(_FD_NAME, name))
        queue.extend((child, depth - 1) for child in children)
    return fds


# Attribute names under which code keeps a raw descriptor: _kill_r/_kill_w, _inotify_fd, wakeup_fd,
# read_pipe, sock_fd, fileno.
_FD_NAME = r"(?i)fd|fileno|pipe|sock|_[rw]$"  # compiled (and cached) by re on first use


def thread_of(left: Leftover) -> threading.Thread | None:
    """The live thread a leak-thread leftover names."""
    key = left.key
    if not (isinstance(key, tuple) and len(key) == 3 and key[0] == "thread"):
        return None
    thread = threading._active.get(key[2])  # type: ignore[attr-defined]
    return thread if thread is not None and id(thread) == key[1] else None


def _children() -> frozenset[int]:
    try:
        return frozenset(procfs.children("self"))
    except OSError:
        return frozenset()


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of *pid*, or None when it is gone."""
    stat = procfs.read_stat(pid)
    return (stat.state, stat.start) if stat is not None else None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return "?"


def _infrastructure_pids() -> set[int]:
    """multiprocessing's resource tracker and fork server outlive the tests that start them."""
    pids = set()
    try:
        from multiprocessing import forkserver, resource_tracker

        for holder, attr in ((resource_tracker._resource_tracker, "_pid"),
                             (forkserver._forkserver, "_forkserver_pid")):
            pid = getattr(holder, attr, None)
            if isinstance(pid, int):
                pids.add(pid)
    except Exception:  # pragma: no cover - private attributes of the standard library
        pass
    return pids


class ProcessProbe:
    """Child processes still running. Listing /proc children costs tens of microseconds, so it is
    done only after a spawn the wrappers in ``sites`` counted: ``Popen``, multiprocessing (whose
    spawn and forkserver starts go through ``_posixsubprocess``), ``os.posix_spawn``/``spawnp``,
    and every fork (``os.register_at_fork``: os.fork, forkpty, pty.spawn, ``os.spawn*``)."""

    name, kind = "processes", "leak-process"

    def token(self) -> Hashable:
        return REGISTRY.spawns

    def snapshot(self) -> frozenset[int]:
        children = _children()
        REGISTRY.forget_waited()
        return children

    def diff(self, before: Any, after: Any, claimed: set[int]) -> list[Leftover]:
        out = []
        infrastructure = _infrastructure_pids() if after - before else set()
        for pid in sorted(after - before):
            stat = _proc_stat(pid)
            if stat is None or stat[0] in "ZX" or pid in infrastructure:
                continue
            spawn = REGISTRY.processes.get(pid)
            popen = spawn.popen if spawn else None
            for stream in ("stdin", "stdout", "stderr"):
                handle = getattr(popen, stream, None)
                if handle is not None and not handle.closed:
                    claimed.add(handle.fileno())
            cmdline = command_line([_cmdline(pid)])  # secrets masked, on one line
            out.append(Leftover(
                self.kind, ("process", pid, stat[1]), f"process {pid} ({cmdline[:200]})",
                spawn.site if spawn else None, {"pid": pid, "cmdline": cmdline, "start": stat[1]},
                obj=popen,
            ))
        return out

    def settle(self, leftovers: Sequence[Leftover], deadline: float) -> None:
        pids = [left.details["pid"] for left in leftovers if left.kind == self.kind]
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if (s := _proc_stat(p)) is not None and s[0] not in "ZX"]
            if pids:
                time.sleep(0.005)


def _loop_fds(loop: Any) -> set[int]:
    fds = set()
    for holder, attr in ((getattr(loop, "_selector", None), "fileno"),
                         (getattr(loop, "_ssock", None), "fileno"),
                         (getattr(loop, "_csock", None), "fileno")):
        if holder is not None:
            try:
                fds.add(getattr(holder, attr)())
            except (OSError, ValueError, AttributeError):
                pass
    fds.discard(-1)
    return fds


def _current_loop() -> object:
    import asyncio

    try:
        policy = asyncio.get_event_loop_policy()
        return getattr(getattr(policy, "_local", None), "_loop", None)
    except Exception:  # pragma: no cover
        return None


class TaskProbe:
    """Event loops made during the window and left open. Pending tasks are a ``leak-task``; an open
    loop with none is an fd leak (its selector and self-pipe), unless it is the thread's current
    loop from ``asyncio.get_event_loop()``, which lives as long as the policy does."""

    name, kind = "tasks", "leak-task"

    def token(self) -> Hashable:
        return REGISTRY.loop_seq  # loops are counted by the BaseEventLoop.__init__ wrapper

    def snapshot(self) -> int:
        return REGISTRY.loop_seq

    def diff(self, before: Any, after: Any, claimed: set[int]) -> list[Leftover]:
        if not REGISTRY.loops:
            return []
        import asyncio  # loaded already: there is a loop

        REGISTRY.loops[:] = [(seq, loop) for seq, loop in REGISTRY.loops if not loop.is_closed()]
        out = []
        for seq, loop in REGISTRY.loops:
            if not before < seq <= after:
                continue
            fds = _loop_fds(loop)
            claimed.update(fds)
            site = getattr(loop, "_tiergate_site", None)
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            if tasks:
                names = [_describe_task(t) for t in tasks]
                out.append(Leftover(
                    self.kind, ("loop", id(loop)),
                    f"{len(tasks)} pending task(s) in an event loop left open: "
                    + ", ".join(names[:5]),
                    site, {"tasks": names, "loop_fds": sorted(fds)}, obj=loop,
                ))
            elif loop is not _current_loop():
                out.append(Leftover(
                    "leak-fd", ("loop", id(loop)), f"event loop left open (fds {sorted(fds)})",
                    site, {"fds": sorted(fds)}, obj=loop,
                ))
        return out

    def settle(self, leftovers: Sequence[Leftover], deadline: float) -> None:
        pass


def _describe_task(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    code = getattr(coro, "cr_code", None)
    frame = getattr(coro, "cr_frame", None)
    name = getattr(coro, "__qualname__", task.get_name())
    if code is not None:
        line = frame.f_lineno if frame is not None else code.co_firstlineno
        return f"{name} ({code.co_filename}:{line})"
    return str(name)


class EnvProbe:
    """``os.environ`` and the working directory. Every change made through ``os.environ`` calls
    ``os.putenv`` or ``os.unsetenv``, which ``sites`` wraps to count (pytest's own per-test
    variable is not counted, as it is ignored in the diff), and so are ``os.chdir`` and
    ``os.fchdir``. What bypasses both (``os.environ._data`` written, a C extension's chdir) is
    seen when it also changes the number of variables."""

    name, kind = "env", "env-changed"
    def token(self) -> Hashable:
        return len(os.environ), REGISTRY.env_changes

    def snapshot(self) -> tuple[dict[bytes, bytes], str]:
        data = getattr(os.environ, "_data", None)
        env = dict(data) if isinstance(data, dict) else {
            k.encode(): v.encode() for k, v in os.environ.items()}
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = "?"
        return env, cwd

    def diff(self, before: Any, after: Any, claimed: set[int]) -> list[Leftover]:
        (env_before, cwd_before), (env_after, cwd_after) = before, after
        out = []
        if env_before != env_after:
            for raw in sorted(env_before.keys() | env_after.keys()):
                name = raw.decode("utf-8", "replace")
                old, new = env_before.get(raw), env_after.get(raw)
                if old == new or name in VOLATILE_ENV:
                    continue
                change = "added" if old is None else "removed" if new is None else "changed"
                out.append(Leftover(self.kind, ("env", name), f"os.environ[{name!r}] {change}",
                                    details={"variable": name, "change": change}))
        if cwd_before != cwd_after:
            out.append(Leftover(self.kind, ("cwd",), f"working directory changed to {cwd_after}",
                                details={"cwd": cwd_after, "was": cwd_before}))
        return out

    def settle(self, leftovers: Sequence[Leftover], deadline: float) -> None:
        pass


def _lowest_free_fd() -> int | None:
    try:
        fd = os.dup(2)
    except OSError:
        return None
    os.close(fd)
    return fd


class FdProbe:
    """Open file descriptors, from ``/proc/self/fd``. Sockets are ``leak-socket`` with their
    addresses (read with psutil, only when there is one to describe); the rest is ``leak-fd``.

    Listed when the token moved: the number of open fds (the size Linux 6.2+ reports for
    ``/proc/PID/fd``) and the lowest free fd, which together see every way to make one (open,
    sockets, os.pipe, os.dup, epoll, eventfd, memfd, openpty, pidfd, C extensions), and the
    number of Python sockets made (the wrapper in ``sites``). A window that opens one fd and
    closes an older one keeps the count; the lowest free fd moves unless a lower number was free
    all along or the new fd took the closed one's very number (which a listing of numbers cannot
    tell apart either), so such a swap is seen for Python's sockets (a server accepting the next
    connection as it closes the last) and may be missed for other fds. On a kernel that does not
    report the count, fds are listed at every window.

    A connection accepted on a socket of this process that is listening names that server
    (``server_key``): it is the server's, and the watch gives it to whoever owns the server."""

    name, kind = "fds", "leak-fd"
    kinds = frozenset({"leak-fd", "leak-socket"})  # what its diff reports, so what it settles

    def token(self) -> Hashable:
        return REGISTRY.sockets, _FD_TABLE.token()

    def snapshot(self) -> frozenset[str]:
        try:
            fds = set(os.listdir("/proc/self/fd"))
        except OSError:
            return frozenset()
        # The listing's own directory fd is in the list, and was the lowest free number then.
        fds.discard(str(_lowest_free_fd()))
        return frozenset(fds)

    def diff(self, before: Any, after: Any, claimed: set[int]) -> list[Leftover]:
        out = []
        sockets: list[tuple[int, str]] = []
        new = after - before
        singletons = _singleton_targets() if new else set()
        for fd in sorted(int(name) for name in new):
            if fd in claimed:
                continue
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue  # closed since the listing
            if _OWN_PATH_PART in target or target in singletons:
                continue
            if target.startswith("socket:"):
                sockets.append((fd, target))
            else:
                out.append(Leftover(self.kind, ("fd", fd, target), f"fd {fd} ({target})",
                                    details={"fd": fd, "target": target}))
        if sockets:
            out.extend(_socket_leftovers(sockets))
        return out

    def settle(self, leftovers: Sequence[Leftover], deadline: float) -> None:
        """Sockets that someone else is about to close get the grace (``_owner_closes``): a
        connection a server accepted, one whose peer hung up or reset it, is closed by the thread
        serving it a moment after the client is done, and the test that was the client ends
        before that."""
        waiting = [left for left in leftovers if _owner_closes(left)]
        while waiting and time.monotonic() < deadline:
            time.sleep(0.005)
            waiting = [left for left in waiting if _still_open(left)]


def _still_open(left: Leftover) -> bool:
    """Is the fd a leak-fd or leak-socket leftover names still the same open file? False once
    it was closed, or its number reused for something else."""
    key = left.key
    if not (isinstance(key, tuple) and len(key) == 3 and key[0] == "fd"):
        return True  # not an fd of ours (an event loop): nothing to tell
    try:
        return bool(os.readlink(f"/proc/self/fd/{key[1]}") == key[2])
    except OSError:
        return False


def server_owned(left: Leftover) -> bool:
    """A connection accepted on a socket of this process that is still listening: the server's,
    which a window may only have caused, as its client (see ``server_key``)."""
    return left.kind == "leak-socket" and "server" in left.details


def server_key(left: Leftover) -> Hashable | None:
    """The key of the listening socket a server-owned connection was accepted on, to tell whose
    it is: a fixture's server (its connections are the fixture's, reported if they outlive its
    teardown), the window's own (they are its), or one older than the window (not its)."""
    if not server_owned(left):
        return None
    return ("fd", left.details["server_fd"], left.details["server_target"])


def client_in_process(left: Leftover) -> bool:
    """A server-owned connection whose client end is a socket of this process, open: it lives
    as long as that client, which is judged on its own (a test's leak, a pool's first use)."""
    return server_owned(left) and "client_fd" in left.details


def _owner_closes(left: Leftover) -> bool:
    """A socket someone else may be about to close: accepted by a server of this process, its
    peer gone (CLOSE_WAIT), or in none of the kernel's connection tables, which is where a
    connection that was reset is (the peer closed with data unread, often a server's side of a
    connection its client dropped; its thread closes it when it next looks)."""
    if server_owned(left):
        return True
    return left.kind == "leak-socket" and left.details.get("status") in (None, "CLOSE_WAIT")


def _singleton_targets() -> set[str]:
    """What the fds of the standard library's process-wide singletons point at: made by whichever
    test first needs one and kept for the life of the process, so first use, never a leak. The
    arenas of multiprocessing's shared-memory heap (``Value``, ``Array``; the arena's fd and the
    copy its mmap keeps), the resource tracker's pipe, the fork server's pipe."""
    targets = set()
    for fd in _singleton_fds():
        try:
            targets.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return targets


def _singleton_fds() -> set[int]:
    fds: set[int] = set()
    try:
        heap = sys.modules.get("multiprocessing.heap")
        if heap is not None:
            shared = getattr(getattr(heap, "BufferWrapper", None), "_heap", None)
            for arena in getattr(shared, "_arenas", ()):
                fds.add(getattr(arena, "fd", -1))
        tracker = sys.modules.get("multiprocessing.resource_tracker")
        if tracker is not None:
            fds.add(getattr(getattr(tracker, "_resource_tracker", None), "_fd", None) or -1)
        forkserver = sys.modules.get("multiprocessing.forkserver")
        if forkserver is not None:
            server = getattr(forkserver, "_forkserver", None)
            fds.add(getattr(server, "_forkserver_alive_fd", None) or -1)
    except Exception:  # pragma: no cover - private attributes of the standard library
        pass
    fds.discard(-1)
    return {fd for fd in fds if isinstance(fd, int)}


def _socket_leftovers(sockets: list[tuple[int, str]]) -> list[Leftover]:
    """The leak-socket leftovers of new socket fds, described with their addresses; a connection
    accepted by a server of this process that is still listening says so."""
    connections = _connections()
    listening = [conn for conn in connections if conn.status == "LISTEN" and conn.laddr]
    by_fd = {conn.fd: conn for conn in connections}
    local_ends = {(conn.family, tuple(conn.laddr)): conn.fd for conn in connections
                  if conn.laddr and conn.raddr}
    out = []
    for fd, target in sockets:
        conn = by_fd.get(fd)
        described = _describe(conn) if conn is not None else {}
        text = described.get("text", target)
        server = _accepting(conn, listening) if conn is not None else None
        if conn is not None and server is not None:
            local = _address(server.laddr)
            try:
                listener = os.readlink(f"/proc/self/fd/{server.fd}")
            except OSError:
                listener = ""
            described.update(server=local, server_fd=server.fd, server_target=listener)
            text += f", accepted by the server on {local} (fd {server.fd})"
            client = local_ends.get((conn.family, tuple(conn.raddr)))
            if client is not None:
                described["client_fd"] = client
        out.append(Leftover("leak-socket", ("fd", fd, target), f"socket fd {fd} ({text})",
                            details={"fd": fd, **described}))
    return out


def _connections() -> list[Any]:
    try:
        import psutil

        return list(psutil.Process().net_connections(kind="all"))
    except Exception:
        return []


def _accepting(conn: Any, listening: list[Any]) -> Any:
    """The listening socket that accepted *conn*: a TCP connection whose local address is the
    listener's (its port, on the listener's address or on one a wildcard listener covers). A
    client of that server has the listener's address as its remote one, so it is never taken."""
    if conn.status in ("LISTEN", "NONE") or not conn.laddr or not conn.raddr:
        return None
    host, port = conn.laddr[0], conn.laddr[1]
    for listener in listening:
        if (listener.family == conn.family and listener.type == conn.type
                and listener.laddr[1] == port and listener.laddr[0] in (host, "0.0.0.0", "::")):
            return listener
    return None


def _describe(conn: Any) -> dict[str, Any]:
    laddr = _address(conn.laddr)
    raddr = _address(conn.raddr)
    family = getattr(conn.family, "name", str(conn.family))
    kind = getattr(conn.type, "name", str(conn.type))
    parts = [family, kind]
    if laddr:
        parts.append(f"local {laddr}")
    if raddr:
        parts.append(f"remote {raddr}")
    if conn.status and conn.status != "NONE":
        parts.append(conn.status)
    return {"family": family, "type": kind, "local": laddr, "remote": raddr,
            "status": conn.status, "text": ", ".join(parts)}


def _address(addr: Any) -> str | None:
    if not addr:
        return None
    if isinstance(addr, str):
        return addr
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Statm:
    """``/proc/self/statm`` kept open and re-read with one ``pread`` (a single system call)."""

    def __init__(self) -> None:
        self.fd = -1
        self.opened = False

    def open(self) -> None:
        if not self.opened:
            # /proc/PID, not /proc/self: the fd must not follow a forked child to its parent's
            # file (a child reopens: see _after_fork).
            self.opened = True
            try:
                self.fd = os.open(f"/proc/{os.getpid()}/statm", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self.fd = -1

    def rss(self) -> int:
        if not self.opened:
            self.open()
        try:
            return int(os.pread(self.fd, 128, 0).split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            return 0


class _FdTable:
    """The cheap fd token: ``/proc/PID/fd`` kept open (its ``fstat`` size is the number of open
    fds on Linux 6.2+) and the lowest free fd (one ``dup`` and ``close`` of that same fd)."""

    def __init__(self) -> None:
        self.fd = -1
        self.opened = False
        self.counts = False

    def open(self) -> None:
        if self.opened:
            return
        self.opened = True
        try:
            self.fd = os.open(f"/proc/{os.getpid()}/fd",
                              os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self.counts = os.fstat(self.fd).st_size > 0  # 0 before Linux 6.2: no count
        except OSError:
            self.fd, self.counts = -1, False

    def token(self) -> Hashable:
        if not self.opened:
            self.open()
        if not self.counts:
            return object()  # never equal: list the fds at every window
        try:
            low = os.dup(self.fd)
            os.close(low)
            return (os.fstat(self.fd).st_size, low)
        except OSError:
            return object()


_STATM = _Statm()
_FD_TABLE = _FdTable()


def _after_fork() -> None:
    # The child's fds are copies of the parent's /proc/PARENT files: close them, and open its own
    # when asked.
    for holder in (_STATM, _FD_TABLE):
        if holder.fd >= 0:
            try:
                os.close(holder.fd)
            except OSError:
                pass
        holder.fd, holder.opened = -1, False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def open_memory_probe() -> None:
    """Open the statm file and the fd table before the first test, so that they are never new
    fds inside a window."""
    _STATM.open()
    _FD_TABLE.open()


# Resident set size in bytes (about a microsecond): the statm reader's own method, one call at
# the end of every test's window.
memory_rss: Callable[[], int] = _STATM.rss


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

# The table. Order matters: probes that claim file descriptors come before the fd probe.
def default_probes() -> tuple[Probe, ...]:
    return (ThreadProbe(), ProcessProbe(), TaskProbe(), EnvProbe(), FdProbe())


def default_token() -> Hashable:
    """Every token of ``default_probes()`` in one call: the window's end reads this on every
    test, and one Python call where there were five is most of what a quiet test's look costs.
    It holds each probe's token, so it moves whenever one of theirs does."""
    active = threading._active  # type: ignore[attr-defined]
    return (REGISTRY.thread_starts, len(active), REGISTRY.executor_seq, REGISTRY.spawns,
            REGISTRY.loop_seq, len(os.environ), REGISTRY.env_changes, REGISTRY.sockets,
            _FD_TABLE.token())
