"""Import one module in this fresh interpreter and record what the import did (stdlib only).

Run by ``tiergate audit-imports`` as ``python -c <this source> MODULE RESULT GUARD NETWORK TIER
ROOT TIMEOUT FALLBACK_DUMP``. An audit hook (PEP 578) and a wrapper around ``Thread.start`` see
threads started, processes spawned, connections attempted (the network guard refuses what the
policy forbids) and files opened for writing, each with the innermost frame inside the audited
package and the module whose import ran it (its ``origin``: a package's ``__init__`` that
connects to a database is the origin of that effect in every submodule's import). An import that
raises is recorded with where it raised and the same origin, so one root cause is told apart
from many. The result is one JSON file; the process then leaves with ``os._exit`` so a thread the
import started cannot keep it alive. faulthandler writes the stacks to FALLBACK_DUMP if the import
hangs, in case the process-tree dump cannot be taken.
"""

import faulthandler
import importlib
import importlib.util
import json
import os
import sys
import threading
import time
from typing import Any

MODULE, RESULT, GUARD, NETWORK, TIER, ROOT, TIMEOUT, FALLBACK_DUMP = sys.argv[1:9]
ROOT = os.path.abspath(ROOT) + os.sep
effects: list[dict[str, Any]] = []
_inside = threading.local()


def _ours(path: str) -> bool:
    """A frame of the import machinery or of this probe (run as ``python -c``)."""
    return path == "<string>" or "importlib" in path


def where(frames: list[tuple[Any, int]]) -> dict[str, Any] | None:
    """(path, line, function) of the innermost of *frames* (frame and line, innermost first) in
    the audited package, else the innermost that is not this probe's or the import machinery's."""
    first = None
    for frame, line in frames:
        path = frame.f_code.co_filename
        if not _ours(path):
            entry = {"path": path, "line": line, "function": frame.f_code.co_name}
            if path.startswith(ROOT):
                return entry
            first = first or entry
    return first


def origin(frames: list[tuple[Any, int]]) -> str | None:
    """The module whose import ran *frames* (innermost first): the innermost module body."""
    for frame, _ in frames:
        if frame.f_code.co_name == "<module>" and not _ours(frame.f_code.co_filename):
            name = frame.f_globals.get("__name__")
            return name if isinstance(name, str) else None
    return None


def stack(frame: Any) -> list[tuple[Any, int]]:
    frames = []
    while frame is not None:
        frames.append((frame, frame.f_lineno))
        frame = frame.f_back
    return frames


def record(kind: str, what: str, **details: Any) -> None:
    if getattr(_inside, "on", False):
        return
    _inside.on = True
    try:
        frames = stack(sys._getframe(2))
        effects.append({"kind": kind, "what": what, "site": where(frames),
                        "origin": origin(frames), **details})
    finally:
        _inside.on = False


def _load_guard() -> Any:
    spec: Any = importlib.util.spec_from_file_location("_tiergate_netguard", GUARD)
    guard = importlib.util.module_from_spec(spec)
    sys.modules["_tiergate_netguard"] = guard
    spec.loader.exec_module(guard)
    return guard


guard = _load_guard()
policy = guard.Policy.parse(NETWORK)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def hook(event: str, args: tuple[Any, ...]) -> None:
    if event == "open":
        path, mode, flags = args
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS)
        if writes and isinstance(path, (str, bytes)) and "__pycache__" not in str(path):
            record("file", f"opened {os.fsdecode(path)} for writing", path=os.fsdecode(path))
    elif event == "subprocess.Popen":
        record("process", f"spawned {' '.join(map(str, args[1] or [args[0]]))[:300]}")
    elif event in ("os.fork", "os.forkpty"):
        record("process", "forked")
    elif event in ("os.posix_spawn", "os.spawn", "os.system", "os.exec"):
        record("process", f"{event} {str(args[0])[:300]}")
    elif event in ("socket.connect", "socket.sendto") and isinstance(args[1], tuple):
        host, port = str(args[1][0]), args[1][1]
        if getattr(args[0], "family", None) in (2, 10):
            allowed = policy.allows_ip(host, port)
            verb = "connected to" if allowed else "tried to connect to"
            record("network", f"{verb} {host}:{port}" + ("" if allowed else " (refused)"),
                   host=host, port=port, refused=not allowed)


_start = threading.Thread.start


def start(thread: threading.Thread) -> None:
    record("thread", f"started thread {thread.name!r}")
    thread._tiergate_effect = effects[-1] if effects else None  # type: ignore[attr-defined]
    _start(thread)


dump = open(FALLBACK_DUMP, "w")  # noqa: SIM115 - lives until os._exit
threading.Thread.start = start  # type: ignore[method-assign,assignment]
sys.addaudithook(hook)
guard.install(policy, TIER)
faulthandler.dump_traceback_later(float(TIMEOUT), file=dump)
error: str | None = None
error_site: dict[str, Any] | None = None
error_origin: str | None = None
began = time.perf_counter()
try:
    importlib.import_module(MODULE)
except BaseException as exc:  # an import can raise anything, SystemExit included
    error = f"{type(exc).__name__}: {exc}"
    raised: list[tuple[Any, int]] = []  # the traceback's frames and lines, innermost first
    tb = exc.__traceback__
    while tb is not None:
        raised.insert(0, (tb.tb_frame, tb.tb_lineno))
        tb = tb.tb_next
    error_site, error_origin = where(raised), origin(raised)
seconds = time.perf_counter() - began
faulthandler.cancel_dump_traceback_later()
_inside.on = True
for thread in threading.enumerate():
    effect = getattr(thread, "_tiergate_effect", None)
    if effect is not None:
        effect["alive"] = thread.is_alive()
        effect["target"] = getattr(getattr(thread, "_target", None), "__qualname__", None)
with open(RESULT, "w") as handle:
    json.dump({"module": MODULE, "seconds": seconds, "error": error, "error_site": error_site,
               "error_origin": error_origin, "effects": effects}, handle)
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
