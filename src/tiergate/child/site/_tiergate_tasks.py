"""The asyncio half of a stacks dump: every running event loop's tasks, each with its await chain
and what it awaits.

faulthandler shows a thread that runs an event loop as ``select`` under ``run_forever``: the
coroutines are not on any thread's stack while they wait. This reads them from the objects
instead: the loop from the ``run_forever`` frame of each thread (so loops of every thread are
found, in every Python version), its tasks from ``asyncio.all_tasks(loop)``, and each task's chain
by walking ``cr_await`` from its coroutine. What the innermost frame waits for is said in words the
culprit rules repeat (``tiergate.diagnose.culprit.parse_asyncio`` reads this text back).

It runs inside a signal handler (``sitecustomize``) or the dumping thread (``tiergate.diagnose``):
read only, no imports (asyncio is looked up in ``sys.modules``, never loaded), every step guarded.
Standard library only, like the rest of this directory.
"""

from __future__ import annotations

import os
import sys
from types import FrameType
from typing import Any

LOOP_HEADER = "asyncio loop 0x%x in thread 0x%016x, %d task(s) (most recent await first):\n"
_TASK = "  Task %r%s%s\n"
_FRAME = '    File "%s", line %s in %s\n'
_MAX_TASKS = 50
_MAX_DEPTH = 40


def _stdlib(frame: Any, module: str) -> bool:
    """Whether *frame* is in ``asyncio/<module>.py``."""
    return bool(frame.f_code.co_filename.replace(os.sep, "/").endswith("/asyncio/" + module))


def _running_loop(top: FrameType | None) -> tuple[Any, Any]:
    """The loop whose ``run_forever`` is on this thread's stack, and the future its
    ``run_until_complete`` waits for (the task the caller awaits first), or (None, None)."""
    loop = main = None
    frame = top
    while frame is not None:
        name = frame.f_code.co_name
        if loop is None and name == "run_forever" and _stdlib(frame, "base_events.py"):
            loop = frame.f_locals.get("self")
        elif loop is not None and name == "run_until_complete" and _stdlib(frame,
                                                                            "base_events.py"):
            main = frame.f_locals.get("future")
            break
        frame = frame.f_back
    return loop, main


def _chain(task: Any) -> list[Any]:
    """The frames of the task's await chain, outermost (the task's coroutine) first."""
    frames = []
    awaitable = task.get_coro()
    for _ in range(_MAX_DEPTH):
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
        if frame is None:
            break
        frames.append(frame)
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom",
                                                                    None)
    return frames


def _peer(transport: Any = None, sock: Any = None) -> str:
    try:
        if transport is not None:
            address = transport.get_extra_info("peername")
        else:
            address = sock.getpeername() if sock is not None else None
    except Exception:
        address = None
    if isinstance(address, tuple) and len(address) >= 2:
        return f" {address[0]}:{address[1]}"
    return f" {address}" if address else ""


def _takes(frame: Any, lock: Any) -> bool:
    """Whether *frame*'s code took *lock* before its current line (``async with name`` or
    ``name.acquire()``), read from the source: a Lock does not record its owner."""
    names = [name for name, value in frame.f_locals.items() if value is lock]
    linecache = sys.modules.get("linecache")
    if not names or linecache is None:
        return False
    code = frame.f_code
    lines = [linecache.getline(code.co_filename, n)
             for n in range(code.co_firstlineno, (frame.f_lineno or 0) + 1)]
    return any(("async with " + name) in line or (name + ".acquire(") in line
               for line in lines for name in names)


def _holder(lock: Any, waiter: Any, tasks: list[Any]) -> str:
    """The task whose frames took *lock* and are not waiting for it."""
    for task in tasks:
        frames = _chain(task)
        if task is waiter or (frames and frames[-1].f_code.co_name == "acquire"
                              and frames[-1].f_locals.get("self") is lock):
            continue
        if any(_takes(f, lock) for f in frames):
            return f"held by task {task.get_name()!r}"
    return "held by another task"


def _library_wait(frame: Any, task: Any, tasks: list[Any]) -> str | None:
    """What an asyncio frame waits for: the innermost frame of a chain in asyncio itself."""
    name = frame.f_code.co_name
    owner = frame.f_locals.get("self")
    kind = type(owner).__name__
    if name == "sleep" and _stdlib(frame, "tasks.py"):
        return f"sleeping in asyncio.sleep({frame.f_locals.get('delay')!r})"
    if _stdlib(frame, "locks.py"):
        if kind == "Lock" and name == "acquire":
            return f"awaits Lock {_holder(owner, task, tasks)}"
        if kind == "Event":
            return "awaits an Event nobody sets"
        if kind == "Condition":
            return "awaits a Condition nobody notifies"
        if kind in ("Semaphore", "BoundedSemaphore"):
            return f"awaits a {kind} with no permits left"
        if kind == "Barrier":
            return "awaits a Barrier that is not full"
    if _stdlib(frame, "queues.py"):
        return {"get": f"awaits an empty asyncio {kind} nobody puts into",
                "put": f"awaits room in a full asyncio {kind}",
                "join": f"awaits {kind}.join: items still not done"}.get(name)
    if _stdlib(frame, "streams.py") and name in ("_wait_for_data", "read", "readline",
                                                 "readexactly", "readuntil"):
        return "awaits a read from a silent peer" + _peer(getattr(owner, "_transport", None))
    if _stdlib(frame, "streams.py") and name in ("drain", "_drain_helper"):
        return "awaits the peer reading (drain)"
    if name in ("sock_recv", "sock_recv_into", "sock_recvfrom") and _stdlib(
            frame, "selector_events.py"):
        return "awaits a read from a silent peer" + _peer(sock=frame.f_locals.get("sock"))
    if name in ("sock_accept",) and _stdlib(frame, "selector_events.py"):
        return "awaits a connection nobody makes (sock_accept)"
    return None


def _future_wait(task: Any) -> tuple[str, Any]:
    """What the future the task waits on is, and the task behind it (awaited tasks are
    followed by the culprit rules)."""
    waiter = getattr(task, "_fut_waiter", None)
    if waiter is None:
        return "", None
    if hasattr(waiter, "get_coro"):
        return f"awaits task {waiter.get_name()!r}", waiter
    children = getattr(waiter, "_children", None)  # asyncio.gather
    if children:
        pending = [c for c in children if not c.done()]
        first = next((c for c in pending if hasattr(c, "get_coro")), None)
        if first is not None:
            return f"awaits gather: task {first.get_name()!r} of {len(pending)} pending", first
    others = [cb for cb, _ in getattr(waiter, "_callbacks", None) or ()
              if getattr(cb, "__self__", None) is not task]
    if not others:
        return "awaits a Future nobody completes", None
    return f"awaits a {type(waiter).__name__} with {len(others)} other callback(s)", None


def _describe_task(task: Any, tasks: list[Any], main: Any) -> str:
    frames = _chain(task)
    why, behind = _future_wait(task)
    if frames:
        why = _library_wait(frames[-1], task, tasks) or why
    marks = " (awaited by run_until_complete)" if task is main else ""
    if behind is not None and f"task {behind.get_name()!r}" not in why:
        why = f"{why}, behind task {behind.get_name()!r}"
    out = [_TASK % (task.get_name(), marks, " — " + why if why else "")]
    out += [_FRAME % (f.f_code.co_filename, f.f_lineno, f.f_code.co_name) for f in reversed(frames)]
    return "".join(out)


def _tasks_of(asyncio: Any, loop: Any) -> list[Any]:
    for _ in range(3):  # another thread may add a task while the set is copied
        try:
            return sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name())
        except RuntimeError:
            continue
    return []


def describe(frames_by_thread: dict[int, FrameType]) -> str:
    """The tasks of every event loop running in one of these threads, as text; "" for none."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None or not hasattr(asyncio, "all_tasks"):
        return ""
    out = []
    for ident, top in frames_by_thread.items():
        try:
            loop, main = _running_loop(top)
            if loop is None:
                continue
            tasks = _tasks_of(asyncio, loop)
            tasks.sort(key=lambda t: t is not main)  # the task the caller awaits first
            out.append(LOOP_HEADER % (id(loop), ident, len(tasks)))
            for task in tasks[:_MAX_TASKS]:
                try:
                    out.append(_describe_task(task, tasks, main))
                except Exception as exc:  # one odd task must not hide the others
                    out.append(_TASK % (task.get_name(), "", f" — not readable: {exc!r}"))
            if len(tasks) > _MAX_TASKS:
                out.append(f"  ... and {len(tasks) - _MAX_TASKS} more tasks\n")
        except Exception:
            continue
    return "".join(out)
