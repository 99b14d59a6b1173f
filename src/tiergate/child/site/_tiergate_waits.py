"""The waits half of a stacks dump: which thread waits for which other thread, where the holder is
known, so the culprit rules can find a deadlock cycle (``tiergate.diagnose.culprit.parse_waits``
reads this text back).

Three kinds of wait name their holder: an import lock (CPython records the waiter in
``importlib._bootstrap._blocking_on`` and the holder as the lock's ``owner``), a ``join`` of
another thread (the ``self`` of ``threading.Thread.join``), and an ``RLock`` (its repr names its
owner). A plain ``Lock`` records no owner and is left to the culprit rules' other heuristics.

Runs inside a signal handler or the dumping thread: read only, no imports, every step guarded.
"""

from __future__ import annotations

import os
import sys
from types import FrameType
from typing import Any

WAITS_HEADER = "thread waits (waiter -> holder: what for):\n"
_EDGE = "  thread 0x%016x %r -> thread 0x%016x %r: %s\n"
_HERE = os.path.dirname(os.path.abspath(__file__))
_MAX_DEPTH = 200


def import_waits() -> dict[int, Any]:
    """A copy of who waits for which module lock; taken before anything of ours imports (an
    import by the dumping thread rewrites its own entry in the live table)."""
    bootstrap = sys.modules.get("_frozen_importlib")
    table = getattr(bootstrap, "_blocking_on", None)
    try:
        return dict(table.items()) if table is not None else {}
    except Exception:
        return {}


def _names() -> dict[int, str]:
    threading = sys.modules.get("threading")
    active = getattr(threading, "_active", None) or {}
    return {ident: getattr(thread, "name", "?") for ident, thread in dict(active).items()}


def _import_edges(waits: dict[int, Any]) -> list[tuple[int, int, str]]:
    edges = []
    for waiter, locks in waits.items():
        for lock in locks if isinstance(locks, list) else [locks]:  # a list from Python 3.12
            owner = getattr(lock, "owner", None)
            if isinstance(owner, int) and owner and owner != waiter:
                edges.append((waiter, owner, f"the import lock of module {lock.name!r}"))
    return edges


def _frames(top: FrameType | None) -> list[FrameType]:
    """Innermost first, without this directory's own frames (the dump handler's)."""
    out: list[FrameType] = []
    while top is not None and len(out) < _MAX_DEPTH:
        if not top.f_code.co_filename.startswith(_HERE):
            out.append(top)
        top = top.f_back
    return out


def _join_edge(ident: int, frames: list[FrameType]) -> tuple[int, int, str] | None:
    for frame in frames:
        if (frame.f_code.co_name in ("join", "_wait_for_tstate_lock")
                and frame.f_code.co_filename.endswith("threading.py")):
            other = getattr(frame.f_locals.get("self"), "ident", None)
            if isinstance(other, int) and other != ident:
                return ident, other, "join"
    return None


def _rlock_owner(value: Any) -> int | None:
    lock = getattr(value, "_lock", value)  # a Condition waits on its lock
    if type(lock).__name__ != "RLock":
        return None
    text = repr(lock)
    if not text.startswith("<locked") or "owner=" not in text:
        return None
    try:
        return int(text.split("owner=", 1)[1].split()[0])
    except ValueError:
        return None


def _rlock_edge(ident: int, frames: list[FrameType]) -> tuple[int, int, str] | None:
    """An RLock in the waiting frame's locals that another thread owns: the one it waits for,
    when there is exactly one (acquiring it in C shows no frame of its own)."""
    if not frames:
        return None
    owners = {}
    for name, value in frames[0].f_locals.items():
        owner = _rlock_owner(value)
        if owner and owner != ident:
            owners[owner] = name
    if len(owners) != 1:
        return None
    owner, name = next(iter(owners.items()))
    return ident, owner, f"the RLock `{name}`"


def describe(frames_by_thread: dict[int, FrameType], waits: dict[int, Any]) -> str:
    """The waits whose holder is known, as text; "" for none (or a single thread)."""
    if len(frames_by_thread) < 2:
        return ""
    try:
        edges = _import_edges(waits)
        waiting = {edge[0] for edge in edges}
        for ident, top in frames_by_thread.items():
            if ident in waiting:
                continue
            frames = _frames(top)
            edge = _join_edge(ident, frames) or _rlock_edge(ident, frames)
            if edge:
                edges.append(edge)
        if not edges:
            return ""
        names = _names()
        return WAITS_HEADER + "".join(
            _EDGE % (w, names.get(w, "?"), h, names.get(h, "?"), what) for w, h, what in edges)
    except Exception:
        return ""
