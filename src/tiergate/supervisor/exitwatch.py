"""The exit watch: is pytest, past its session end, still on its way out?

After its own wrap-up (terminal summary, unconfigure, cleanups) the interpreter waits only for
non-daemon threads, atexit handlers and the children those wait for. The supervisor calls
``ExitWatch.hung`` from its loop once pytest said its session ended; a hang is a whole grace in
which pytest's main thread and the non-daemon threads did no work (slow is not stuck), and
``exit_blocker`` names what the exit waits for, from the dump taken then.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tiergate.diagnose.procfs import CLOCK_TICKS, read_stat

if TYPE_CHECKING:  # the culprit code is imported when pytest hangs at its exit, not before
    from tiergate.diagnose.culprit import CodeFilter, ThreadStack
    from tiergate.diagnose.treedumps import SavedDump
    from tiergate.protocol.findings import Culprit

# Below this share of one CPU over a whole grace, the exiting pytest is waiting, not working:
# a thread that polls (a sleep loop, a timed wait) uses far less; a terminal summary, an import
# or a garbage collection uses nearly all of it, even on a loaded 2-core runner.
_WORKING_SHARE = 0.1


def stuck_words(saved: SavedDump) -> str:
    """What a stop message says of its dump: where the culprit is stuck, or why there is none."""
    culprit = saved.culprit
    if culprit is None:
        return f" (no dump: {saved.problem})" if saved.problem else ""
    reason = f", {culprit.reason}" if culprit.reason else ""
    return f"; stuck in {culprit.function} ({culprit.path}:{culprit.line}){reason}"


def _thread_words(thread: dict[str, Any]) -> str:
    where = thread.get("where") or {}
    at = (f" in {where.get('function')} ({where.get('path')}:{where.get('line')})"
          if where else "")
    return f"thread {thread.get('name')!r}{at}"


def _thread_ticks(pid: int, tid: int) -> int | None:
    """CPU clock ticks (user + system) used by thread *tid* of *pid*; None once it has ended."""
    stat = read_stat(pid, tid)
    return stat.ticks if stat is not None else None


class ExitWatch:
    """Is pytest, past its session end, still on its way out? Judged over windows of one grace
    each by what the interpreter really waits for: its main thread (tid = pid) and the non-daemon
    threads alive at the session end. A window in which they used CPU, or one of the threads
    ended, is progress and starts the next window."""

    def __init__(self, pid: int, blocking: list[dict[str, Any]], session_end: float) -> None:
        self.pid = pid
        self.session_end = session_end
        self.blocking = blocking
        tids = [t.get("tid") for t in blocking]
        self.tids = [pid, *(tid for tid in tids if isinstance(tid, int))]
        self.since = session_end
        self.ticks = self._sample()

    def _sample(self) -> dict[int, int | None]:
        return {tid: _thread_ticks(self.pid, tid) for tid in self.tids}

    def hung(self, now: float, grace: float) -> bool:
        if now < self.since + grace:
            return False
        ticks = self._sample()
        ended = any(ticks[t] is None and self.ticks[t] is not None for t in self.tids)
        used = sum((ticks[t] or 0) - (self.ticks[t] or 0) for t in self.tids
                   if ticks[t] is not None)
        if ended or used >= _WORKING_SHARE * (now - self.since) * CLOCK_TICKS:
            self.since, self.ticks = now, ticks
            return False
        return True

    def waited_threads(self) -> list[dict[str, Any]]:
        """The non-daemon threads still alive (all of them, from a plugin that sent no tids)."""
        return [t for t in self.blocking if not isinstance(t.get("tid"), int)
                or _thread_ticks(self.pid, t["tid"]) is not None]


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def main_thread_since(stacks: Path, offset: int) -> ThreadStack | None:
    """pytest's main thread as the dump just taken saw it: from what pytest's dump handler
    appended to its stacks file past *offset* (the later sample, when it was sampled twice)."""
    try:
        with stacks.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return None
    from tiergate.diagnose.culprit import parse_faulthandler

    return next((t for t in parse_faulthandler(text) if t.main), None)


def exit_blocker(main: ThreadStack | None, threads: list[dict[str, Any]], saved: SavedDump,
                 pid: int, root: Path) -> tuple[str, Culprit | None]:
    """What the exit waits for, in words, and its culprit. Read from where the main thread is:
    in ``threading._shutdown`` the interpreter joins non-daemon threads; in pytest's entry point,
    pytest's own wrap-up has not returned; anywhere else an atexit handler runs (it is called
    from C, so it is the outermost frame). Never a daemon thread: nothing waits for those."""
    outermost = main.frames[-1] if main is not None and main.frames else None
    joining = (outermost is not None and outermost.path.endswith("threading.py")
               and outermost.function == "_shutdown")
    if threads and (joining or outermost is None):
        first = next((t for t in threads if t.get("where")), None)
        return (f"the interpreter waits for non-daemon threads: "
                f"{'; '.join(_thread_words(t) for t in threads)}", _thread_culprit(first))
    from tiergate.diagnose.treedumps import SavedDump

    trusted = _dump_culprit_of(main, saved, pid)
    stuck = stuck_words(SavedDump(saved.path, trusted)) if trusted else ""
    if main is None or outermost is None:
        return f"its stacks could not be read{stuck or stuck_words(saved)}", trusted
    from tiergate.diagnose.culprit import CodeFilter

    code = CodeFilter(root)
    culprit = trusted or _main_culprit(main, code, pid)
    if not trusted and culprit is not None:
        stuck = f"; stuck in {culprit.function} ({culprit.path}:{culprit.line})"
    if joining:
        what = "the interpreter waits for a non-daemon thread started after the session ended"
    elif outermost.function == "<module>":
        what = "pytest's own wrap-up after the session (terminal summary, unconfigure) is stuck"
    else:
        what = (f"the atexit handler {outermost.function} ({code.display(outermost.path)}) "
                "has not returned")
    return what + stuck, culprit


def _thread_culprit(thread: dict[str, Any] | None) -> Culprit | None:
    if thread is None:
        return None
    from tiergate.protocol.findings import Culprit

    where = thread["where"]
    return Culprit(path=str(where.get("path")), line=where.get("line"),
                   function=str(where.get("function")),
                   reason=f"thread {thread.get('name')!r} is still running")


def _dump_culprit_of(main: ThreadStack | None, saved: SavedDump, pid: int) -> Culprit | None:
    """The dump's culprit where it explains the main thread's wait: a child process, or a frame
    of the main thread itself; not another thread of pytest's (a daemon one, as likely as not)."""
    culprit = saved.culprit
    if culprit is None:
        return None
    if culprit.pid is not None and culprit.pid != pid:
        return culprit
    frames = main.frames if main is not None else ()
    if any(f.function == culprit.function and f.line == culprit.line for f in frames):
        return culprit
    return None


def _main_culprit(main: ThreadStack, code: CodeFilter, pid: int) -> Culprit | None:
    """The main thread's innermost frame of the user's code, else its innermost frame."""
    from tiergate.protocol.findings import Culprit

    frame = next((f for f in main.frames if code.is_user(f.path)), main.frames[0])
    return Culprit(path=code.display(frame.path), line=frame.line, function=frame.function,
                   pid=pid)
