"""Which frame is stuck, and why: the culprit of a hang, read from the stacks of a process tree.

The culprit is the innermost frame in the project's own code of the thread that is stuck: the main
thread of the stuck process, unless that thread only waits for something else that is stuck, in
which case the search follows it: a child process (``join``/``wait``/``communicate``, through shells
and other non-Python processes) or, for a thread ``join``, the other threads of the process.

A thread that runs an idle asyncio event loop (``select`` under ``run_forever``) shows no
coroutine: there the culprit is read from the loop's tasks, which the dump handler writes after
the threads (``parse_asyncio``): the task the loop was asked to complete (the test's coroutine),
followed into the tasks it awaits. Standard-library helper processes (multiprocessing's resource
tracker, fork server, managers) are never culprits; the search looks past them.

The blocking reason comes from three sources, most specific first: the standard-library frames the
project frame called into (``subprocess.wait`` means a child), the kernel (the system call the main
thread sleeps in, with its file descriptor or child pid, and how much CPU it burns), and the
project's source line itself (Python shows no frame for C calls such as ``sock.recv`` or
``lock.acquire``). Each is a table of small rules, so a new kind of wait is one new entry.
"""

from __future__ import annotations

import ast
import io
import linecache
import platform
import re
import sysconfig
import tokenize
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from tiergate.protocol.findings import Culprit

_TIERGATE_DIR = str(Path(__file__).resolve().parents[1])


@dataclass(frozen=True)
class Frame:
    path: str
    line: int | None
    function: str


@dataclass(frozen=True)
class ThreadStack:
    label: str
    frames: tuple[Frame, ...]  # innermost first
    main: bool = False


@dataclass(frozen=True)
class Socket:
    fd: int
    kind: str  # tcp, tcp6, udp, udp6
    local: str
    remote: str
    status: str
    peer: str = ""  # who is at the other end of a loopback socket: "pid 12 (python srv.py)"
    received: int | None = None  # bytes it received while the dump was taken (None: unknown)
    window: float = 0.0  # over how many seconds

    def describe(self) -> str:
        ends = f"{self.local} → {self.remote}" if self.remote else self.local
        ends = f"{ends} ({self.status})" if self.status and self.status != "NONE" else ends
        return f"{ends}, peer {self.peer}" if self.peer else ends


@dataclass(frozen=True)
class AsyncTask:
    """One asyncio task as the dump handler described it (``_tiergate_tasks``)."""

    name: str
    frames: tuple[Frame, ...]  # its await chain, innermost first
    awaits: str | None  # what the innermost frame waits for, in words
    awaited_task: str | None = None  # the task it waits for: the search follows it
    main: bool = False  # the one run_until_complete waits for: the test's own coroutine


@dataclass(frozen=True)
class Wait:
    """One thread waiting for another, as the dump handler saw it (``_tiergate_waits``)."""

    waiter: int  # thread idents, as in the threads' labels
    waiter_name: str
    holder: int
    holder_name: str
    what: str  # "join", or the lock: "the import lock of module 'dl_a'", "the RLock `lock`"


@dataclass(frozen=True)
class EventLoop:
    thread: int  # ident of the thread that runs it, as in the thread's label
    tasks: tuple[AsyncTask, ...]


@dataclass
class ProcessView:
    """What the culprit search needs to know about one process of the tree."""

    pid: int
    children: list[int] = field(default_factory=list)
    threads: list[ThreadStack] = field(default_factory=list)  # empty: no Python stacks
    again: ThreadStack | None = None  # the main thread sampled a second time (busy processes)
    state: str = "?"  # the main thread's state letter (R, S, D, ...)
    cpu_share: float | None = None  # main thread CPU time / wall time while the dump was taken
    syscall: tuple[int, tuple[int, ...]] | None = None  # where the main thread sleeps (x86_64)
    sockets: list[Socket] = field(default_factory=list)
    wchan: str = ""
    holds_gil: bool = False  # py-spy saw the main thread holding the GIL
    is_self: bool = False  # the process taking the dump: no kernel view of its main thread
    loops: list[EventLoop] = field(default_factory=list)  # asyncio loops running in its threads
    command: str = ""  # its command line, which names the standard library's helpers
    waits: list[Wait] = field(default_factory=list)  # thread waits whose holder is known

    @property
    def main_thread(self) -> ThreadStack | None:
        return next((t for t in self.threads if t.main), None)


@dataclass(frozen=True)
class Blocked:
    kind: str  # socket, lock, queue, child, thread, pipe, io, sleep, busy-c, busy, kernel,
    #            asyncio, unknown
    text: str | None
    child: int | None = None


class CodeFilter:
    """Tells the project's own code from the standard library, site-packages and tiergate."""

    def __init__(self, project_root: Path) -> None:
        self.root = project_root.resolve()
        paths = sysconfig.get_paths()
        self._library = tuple(
            {str(Path(paths[k]).resolve()) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
            | {_TIERGATE_DIR}
        )

    def _outside(self, path: str) -> bool:
        if path.startswith("<"):  # <string> and <stdin> are the user's; <frozen ...> is not
            return path.startswith("<frozen")
        parts = Path(path).parts
        if "site-packages" in parts or "dist-packages" in parts:
            return True
        if re.search(r"/lib/python\d\.\d+/", path):  # a stdlib, whichever interpreter ran it
            return True
        return path.startswith(self._library)

    def is_user(self, path: str) -> bool:
        """Code of the user's, in the project or not (``python -c`` code counts)."""
        return not self._outside(path)

    def is_project(self, path: str) -> bool:
        return self.is_user(path) and not path.startswith("<") and self.root in Path(path).parents

    def display(self, path: str) -> str:
        if path.startswith("<"):
            return path
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return path


# -- reading stacks ------------------------------------------------------------------------

_FH_THREAD = re.compile(r"^(Main thread|Current thread|Thread) (0x[0-9a-fA-F]+)|^Stack \(")
_FH_FRAME = re.compile(r'^\s+File "(?P<path>.*)", line (?P<line>\d+|\?+) in (?P<function>.*)$')
_LOOP_HEADER = re.compile(r"^asyncio loop 0x[0-9a-fA-F]+ in thread 0x(?P<thread>[0-9a-fA-F]+)")
_QUOTED = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
_TASK_LINE = re.compile(rf"^  Task (?P<name>{_QUOTED})(?P<main> \(awaited by run_until_complete\))?"
                        r"(?: — (?P<awaits>.*))?$")
_WAITS_HEADER = re.compile(r"^thread waits \(")
_WAIT_LINE = re.compile(rf"^  thread 0x(?P<waiter>[0-9a-f]+) (?P<wname>{_QUOTED}) -> "
                        rf"thread 0x(?P<holder>[0-9a-f]+) (?P<hname>{_QUOTED}): (?P<what>.+)$")
_TASK_LINK = re.compile(rf"(?:awaits task|awaits gather: task|behind task) (?P<name>{_QUOTED})")
_SPY_THREAD = re.compile(r'^Thread (?P<id>\S+) \((?P<state>[^)]*)\)(?::\s*"(?P<name>.*)")?')
_SPY_FRAME = re.compile(r"^\s+(?P<function>.+?) \((?P<path>.+):(?P<line>\d+)\)$")


def _is_thread_bootstrap(frame: Frame) -> bool:
    return frame.path.endswith("threading.py") and frame.function.startswith("_bootstrap")


def _mark_main(threads: list[ThreadStack]) -> list[ThreadStack]:
    """faulthandler does not say which thread is the main one: it is the one that threading did
    not start, and the interpreter lists threads newest first, so it comes last."""
    if not threads or any(t.main for t in threads):
        return threads
    candidates = [i for i, t in enumerate(threads)
                  if not (t.frames and _is_thread_bootstrap(t.frames[-1]))]
    index = candidates[-1] if candidates else len(threads) - 1
    return [replace(t, main=True) if i == index else t for i, t in enumerate(threads)]


def parse_faulthandler(text: str) -> list[ThreadStack]:
    """Threads from faulthandler's output (or ours, which has the same shape)."""
    threads: list[ThreadStack] = []
    label: str | None = None
    main = False
    frames: list[Frame] = []
    for raw in text.splitlines():
        header = _FH_THREAD.match(raw)
        if header or _LOOP_HEADER.match(raw) or _WAITS_HEADER.match(raw):  # after the threads
            if label is not None:
                threads.append(ThreadStack(label, tuple(frames), main))
            label, main, frames = None, False, []
        if header:
            label, main = raw.rstrip(":"), raw.startswith("Main thread")
            continue
        frame = _FH_FRAME.match(raw)
        if frame and label is not None:
            line = frame["line"]
            frames.append(Frame(frame["path"], int(line) if line.isdigit() else None,
                                frame["function"]))
    if label is not None:
        threads.append(ThreadStack(label, tuple(frames), main))
    return _mark_main(threads)


def _unquote(quoted: str) -> str:
    try:
        return str(ast.literal_eval(quoted))
    except (ValueError, SyntaxError):
        return quoted.strip("'\"")


def parse_asyncio(text: str) -> list[EventLoop]:
    """The event loops and their tasks that the dump handler appends after the threads. A section
    before the first thread is left from an earlier dump (its handler ran late) and is skipped."""
    loops: list[EventLoop] = []
    thread: int | None = None
    tasks: list[AsyncTask] = []
    seen_threads = False

    def close() -> None:
        if thread is not None:
            loops.append(EventLoop(thread, tuple(tasks)))

    for raw in text.splitlines():
        if _FH_THREAD.match(raw):
            close()
            thread, tasks, seen_threads = None, [], True
        elif (loop := _LOOP_HEADER.match(raw)) and seen_threads:
            close()
            thread, tasks = int(loop["thread"], 16), []
        elif thread is not None and (task := _TASK_LINE.match(raw)):
            awaits = task["awaits"]
            link = _TASK_LINK.search(awaits or "")
            tasks.append(AsyncTask(_unquote(task["name"]), (), awaits,
                                   _unquote(link["name"]) if link else None, bool(task["main"])))
        elif thread is not None and tasks and (frame := _FH_FRAME.match(raw)):
            line = frame["line"]
            where = Frame(frame["path"], int(line) if line.isdigit() else None, frame["function"])
            tasks[-1] = replace(tasks[-1], frames=(*tasks[-1].frames, where))
    close()
    return loops


def parse_waits(text: str) -> list[Wait]:
    """The thread waits the dump handler appends after the threads (those before the first
    thread are left from an earlier dump and skipped)."""
    waits: list[Wait] = []
    seen_threads = inside = False
    for raw in text.splitlines():
        if _FH_THREAD.match(raw):
            seen_threads, inside, waits = True, False, []
        elif _WAITS_HEADER.match(raw):
            inside = seen_threads
        elif inside and (wait := _WAIT_LINE.match(raw)):
            waits.append(Wait(int(wait["waiter"], 16), _unquote(wait["wname"]),
                              int(wait["holder"], 16), _unquote(wait["hname"]), wait["what"]))
        elif inside and not raw.startswith("  "):
            inside = False
    return waits


@dataclass(frozen=True)
class SpyView:
    threads: list[ThreadStack]
    main_holds_gil: bool


def parse_py_spy(text: str, pid: int) -> SpyView:
    """Threads from ``py-spy dump --native``: its Python frames only (native ones have no .py)."""
    threads: list[ThreadStack] = []
    holds_gil = False
    current: tuple[str, bool] | None = None
    frames: list[Frame] = []
    for raw in text.splitlines():
        header = _SPY_THREAD.match(raw)
        if header:
            if current:
                threads.append(ThreadStack(current[0], tuple(frames), current[1]))
            ident = header["id"]
            main = ident == str(pid) or header["name"] == "MainThread"
            holds_gil = holds_gil or (main and "gil" in header["state"])
            current, frames = (raw, main), []
            continue
        frame = _SPY_FRAME.match(raw)
        if frame and current and (frame["path"].endswith(".py") or frame["path"].startswith("<")):
            frames.append(Frame(frame["path"], int(frame["line"]), frame["function"]))
    if current:
        threads.append(ThreadStack(current[0], tuple(frames), current[1]))
    return SpyView(_mark_main(threads), holds_gil)


# -- the rules -------------------------------------------------------------------------------

# (file suffix, functions, kind, operation): a wait that a standard-library frame names.
_LIBRARY_WAITS: tuple[tuple[str, frozenset[str], str, str], ...] = (
    ("/subprocess.py", frozenset({"wait", "_wait", "_try_wait", "communicate", "_communicate",
                                  "call", "run", "check_call", "check_output"}), "child", ""),
    ("/multiprocessing/popen_fork.py", frozenset({"wait", "poll"}), "child", ""),
    ("/multiprocessing/popen_forkserver.py", frozenset({"poll"}), "child", ""),
    ("/multiprocessing/process.py", frozenset({"join"}), "child", ""),
    ("/threading.py", frozenset({"join", "_wait_for_tstate_lock"}), "thread", ""),
    ("/threading.py", frozenset({"wait", "wait_for", "acquire"}), "lock", ""),
    ("/queue.py", frozenset({"get", "put", "join"}), "queue", ""),
    ("/multiprocessing/queues.py", frozenset({"get", "put", "join"}), "queue", ""),
    ("/multiprocessing/connection.py", frozenset({"recv", "recv_bytes", "_recv_bytes", "_recv",
                                                  "poll", "_poll", "wait"}), "pipe", ""),
    ("/socket.py", frozenset({"readinto", "recv", "recv_into"}), "socket", "recv"),
    ("/socket.py", frozenset({"accept"}), "socket", "accept"),
    ("/socket.py", frozenset({"create_connection"}), "socket", "connect"),
    ("/ssl.py", frozenset({"recv", "recv_into", "read"}), "socket", "recv"),
    ("/ssl.py", frozenset({"do_handshake"}), "socket", "recv"),
    ("/selectors.py", frozenset({"select"}), "io", ""),
)

# (pattern on the culprit's source line, kind, operation): a C call that shows no frame.
_SOURCE_WAITS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"\.recv(?:_into|from|from_into|msg)?\s*\("), "socket", "recv"),
    (re.compile(r"\.accept\s*\("), "socket", "accept"),
    (re.compile(r"\.(?:connect|connect_ex)\s*\("), "socket", "connect"),
    (re.compile(r"\.send(?:all|to|msg)?\s*\("), "socket", "send"),
    (re.compile(r"\.acquire\s*\(|^\s*(?:async\s+)?with\s+[\w.\[\]'\"]+\s*:"), "lock", ""),
    (re.compile(r"\bwaitpid\s*\(|\bos\.wait\s*\("), "child", ""),
    (re.compile(r"\bsleep\s*\("), "sleep", ""),
    (re.compile(r"\bselect\s*\(|\.poll\s*\("), "io", ""),
)

# x86_64 system call numbers -> (kind, operation); the first argument is the fd or the pid.
_SYSCALLS: dict[int, tuple[str, str]] = {
    0: ("socket", "recv"), 19: ("socket", "recv"), 45: ("socket", "recv"), 47: ("socket", "recv"),
    43: ("socket", "accept"), 288: ("socket", "accept"), 42: ("socket", "connect"),
    1: ("socket", "send"), 44: ("socket", "send"), 46: ("socket", "send"),
    61: ("child", ""), 247: ("child", ""), 202: ("lock", ""),
    7: ("io", ""), 271: ("io", ""), 23: ("io", ""), 270: ("io", ""), 232: ("io", ""),
    281: ("io", ""), 35: ("sleep", ""), 230: ("sleep", ""),
}
SYSCALLS_KNOWN = platform.machine() == "x86_64"
_BUSY_SHARE = 0.25  # of one core, over the dump; a blocked thread has none, a shared CI box


def source_line(path: str, line: int | None) -> str:
    """The code of a source line, without its comment: what the code does, not what the comment
    says it does (a comment may even name another call)."""
    text = linecache.getline(path, line).strip() if line and not path.startswith("<") else ""
    return code_only(text)


def code_only(text: str) -> str:
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.COMMENT:
                return text[:token.start[1]].rstrip()
    except (tokenize.TokenError, SyntaxError):
        pass  # a line of a longer statement: its comment, if any, was already seen
    return text


def _library_wait(inner: Sequence[Frame]) -> tuple[str, str] | None:
    """The wait named by the standard-library frames under the project frame, nearest first."""
    for frame in reversed(inner):
        path = frame.path.replace("\\", "/")
        for suffix, functions, kind, operation in _LIBRARY_WAITS:
            if path.endswith(suffix) and frame.function in functions:
                return kind, operation
    return None


def _source_wait(frame: Frame) -> tuple[str, str] | None:
    text = source_line(frame.path, frame.line)
    for pattern, kind, operation in _SOURCE_WAITS:
        if pattern.search(text):
            return kind, operation
    return None


def _socket_text(operation: str, view: ProcessView, fd: int | None) -> str:
    chosen = [s for s in view.sockets if s.fd == fd] if fd is not None else []
    if not chosen:
        wanted = "LISTEN" if operation == "accept" else "ESTABLISHED"
        chosen = [s for s in view.sockets if s.status == wanted] or [
            s for s in view.sockets if s.kind.startswith("tcp")]
    where = chosen[0].describe() if chosen else "a socket"
    if len(chosen) > 1:
        where += f" (+{len(chosen) - 1} more)"
    flowing = chosen[0].received if chosen and operation == "recv" else None
    if flowing:  # counted twice by the kernel: not silent, only slower than the limit
        return (f"blocked in recv on {where}: data is flowing ({flowing} bytes received in"
                f" {chosen[0].window:.2f} s), a slow stream, not a silent peer")
    return {
        "recv": f"blocked in recv on {where}: no answer from the peer",
        "accept": f"blocked in accept on {where}: nobody connects",
        "connect": f"blocked in connect on {where}: the peer does not accept",
        "send": f"blocked in send on {where}: the peer does not read",
    }.get(operation, f"blocked on {where}")


def classify(view: ProcessView, thread: ThreadStack, at: int | None) -> Blocked:
    """Why *thread* of *view* is stuck; *at* is the index of its culprit frame."""
    inner = thread.frames[:at] if at is not None else thread.frames
    from_frames = _library_wait(inner)
    if from_frames is None and at is not None and at == 0:
        from_frames = _source_wait(thread.frames[0])
    kernel = thread.main and not view.is_self
    syscall = view.syscall if kernel and SYSCALLS_KNOWN else None
    from_kernel = _SYSCALLS.get(syscall[0]) if syscall else None
    first_arg = syscall[1][0] if syscall and syscall[1] else None

    on_cpu = view.state == "R" and ((view.cpu_share or 0) >= _BUSY_SHARE or view.holds_gil)
    if kernel and view.syscall is None and on_cpu:
        share = f"{view.cpu_share:.0%}"
        stalled = view.again is not None and view.again.frames[:1] == thread.frames[:1]
        if stalled or (view.again is None and view.holds_gil):
            return Blocked("busy-c", f"busy in C: on CPU ({share}) with no Python frame progress"
                                     " (holds the GIL)")
        return Blocked("busy", f"busy running code (on CPU, {share})")
    kind, operation = from_frames or from_kernel or ("unknown", "")
    if kind == "socket":
        fd = first_arg if from_kernel and from_kernel[0] == "socket" else None
        sockets_op = from_kernel[1] if from_kernel and from_kernel[0] == "socket" else operation
        if fd is not None and not any(s.fd == fd for s in view.sockets) and from_frames is None:
            return Blocked("io", f"blocked reading file descriptor {fd}")
        return Blocked("socket", _socket_text(operation or sockets_op, view, fd))
    if kind == "lock":
        line = source_line(thread.frames[at].path, thread.frames[at].line) if at is not None else ""
        return Blocked("lock", "waiting for a lock (acquire)" + (f": `{line}`" if line else ""))
    if kind == "child":
        pid = first_arg if from_kernel == ("child", "") and first_arg and first_arg > 0 else None
        return Blocked("child", f"waiting for child process {pid}" if pid else
                       "waiting for a child process", child=pid)
    texts = {
        "thread": "waiting for a thread to finish (join)",
        "queue": "waiting on a queue",
        "pipe": "waiting for data from another process (multiprocessing pipe)",
        "io": "waiting in select/poll",
        "sleep": "sleeping",
    }
    if kind in texts:
        return Blocked(kind, texts[kind])
    if kernel and view.wchan and view.wchan != "0":
        return Blocked("kernel", f"blocked in the kernel ({view.wchan})")
    return Blocked("unknown", None)


# -- asyncio and the standard library's helper processes ---------------------------------------


def _in(frame: Frame, suffix: str, functions: Sequence[str]) -> bool:
    return frame.path.replace("\\", "/").endswith(suffix) and frame.function in functions


def _thread_ident(label: str) -> int | None:
    found = re.search(r"0x([0-9a-fA-F]+)", label)
    return int(found[1], 16) if found else None


def idle_event_loop(thread: ThreadStack, code: CodeFilter) -> bool:
    """Whether *thread* runs an event loop that waits (in ``select``) rather than runs a callback:
    no frame of the user's above ``run_forever``, so its coroutines are not on the stack."""
    for frame in thread.frames:
        if _in(frame, "/asyncio/base_events.py", ("run_forever",)):
            return True
        if code.is_user(frame.path):
            return False
    return False


# (what it is, how its command line starts it, a frame of its main thread): processes the standard
# library starts for itself. A fork server's children keep its command line, but run
# ``process._bootstrap``: they are real children.
_HELPERS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("a multiprocessing manager", "", "/multiprocessing/managers.py",
     ("_run_server", "serve_forever")),
    ("multiprocessing's resource tracker", "multiprocessing.resource_tracker",
     "/multiprocessing/resource_tracker.py", ("main",)),
    ("multiprocessing's fork server", "multiprocessing.forkserver",
     "/multiprocessing/forkserver.py", ("main",)),
)


def stdlib_helper(view: ProcessView) -> str | None:
    """What standard-library helper *view* is (never a culprit), or None for the user's process."""
    main = view.main_thread
    frames = main.frames if main else ()
    for what, command, suffix, functions in _HELPERS:
        if any(_in(f, suffix, functions) for f in frames):
            if command and any(_in(f, "/multiprocessing/process.py", ("_bootstrap",))
                               for f in frames):
                return None
            return what
        if command and command in view.command and not frames:
            return what
    return None


# -- the search ------------------------------------------------------------------------------


class _Search:
    def __init__(self, views: Mapping[int, ProcessView], code: CodeFilter) -> None:
        self.views = views
        self.code = code
        self.seen: set[int] = set()

    def culprit_frame(self, thread: ThreadStack) -> int | None:
        for i, frame in enumerate(thread.frames):
            if self.code.is_project(frame.path):
                return i
        return next((i for i, f in enumerate(thread.frames) if self.code.is_user(f.path)), None)

    def in_event_loop(self, view: ProcessView, thread: ThreadStack) -> Culprit | None:
        """The culprit among the tasks of the idle loop *thread* runs: the task the loop was asked
        to complete, followed into the tasks it awaits, at its innermost project frame."""
        ident = _thread_ident(thread.label)
        loop = next((lp for lp in view.loops if lp.thread == ident), None)
        if loop is None or not idle_event_loop(thread, self.code):
            return None
        by_name = {task.name: task for task in loop.tasks}
        # the test's own task first; a runner's task (anyio, pytest-asyncio) may only pass the
        # test to another task it does not await by name: then any task in the project's code
        starts = sorted(loop.tasks, key=lambda task: not task.main)
        for start in starts:
            chain = [start]
            while (chain[-1].awaited_task in by_name
                   and by_name[chain[-1].awaited_task] not in chain):
                chain.append(by_name[chain[-1].awaited_task])
            for task in reversed(chain):  # the innermost awaited task first
                at = self.culprit_frame(ThreadStack(task.name, task.frames))
                if at is not None:
                    why = Blocked("asyncio", f"{task.awaits or 'suspended in an await'},"
                                             f" in asyncio task {task.name!r}")
                    return self.make(view, ThreadStack(task.name, task.frames), at, why)
        return None

    def make(self, view: ProcessView, thread: ThreadStack, at: int, why: Blocked) -> Culprit:
        frame = thread.frames[at]
        return Culprit(path=self.code.display(frame.path), line=frame.line,
                       function=frame.function, reason=why.text, pid=view.pid)

    def process(self, pid: int) -> Culprit | None:
        if pid in self.seen or pid not in self.views:
            return None
        self.seen.add(pid)
        view = self.views[pid]
        main = view.main_thread
        if main is None or stdlib_helper(view):  # no stacks, or not the user's: look below it
            return self.children(view, None)
        in_loop = self.in_event_loop(view, main)
        if in_loop:
            return in_loop
        deadlock = self.deadlock(view, main)
        if deadlock:
            return deadlock
        at = self.culprit_frame(main)
        why = classify(view, main, at)
        if why.kind == "child" or at is None:
            found = self.children(view, why.child)
            if found:
                return found
        if why.kind == "thread" or at is None:
            found = self.other_threads(view, main)
            if found:
                return found
        return self.make(view, main, at, why) if at is not None else None

    def deadlock(self, view: ProcessView, start: ThreadStack) -> Culprit | None:
        """A cycle of waits whose holders are known, reached from *start* (which may only wait
        for a thread in it): named at its first thread with a frame of the project's."""
        cycle = wait_cycle(view.waits, _thread_ident(start.label))
        if not cycle:
            return None
        by_ident = {_thread_ident(t.label): t for t in view.threads}
        sides = []
        for wait in cycle:
            thread = by_ident.get(wait.waiter)
            at = self.culprit_frame(thread) if thread else None
            if thread is None or at is None:
                return None
            sides.append((wait, thread, at))
        text = "; ".join(self.wait_words(wait, thread, at) for wait, thread, at in sides)
        kind = "import deadlock" if any("import lock" in w.what for w in cycle) else "deadlock"
        _, thread, at = sides[0]
        return self.make(view, thread, at, Blocked("deadlock", f"{kind}: {text}"))

    def wait_words(self, wait: Wait, thread: ThreadStack, at: int) -> str:
        """``the main thread, importing dl_a, waits at dl_a.py:7 (`t.join()`) for thread 'w'
        to finish (join)``."""
        frame = thread.frames[at]
        modules = [Path(f.path).stem for f in thread.frames
                   if f.function == "<module>" and self.code.is_project(f.path)]
        importing = f", importing {modules[0]}," if modules else ""
        code = source_line(frame.path, frame.line)
        where = f"{self.code.display(frame.path)}:{frame.line}" + (f" (`{code}`)" if code else "")
        holder = _who(wait.holder, wait.holder_name, thread_main=False)
        target = (f"{holder} to finish (join)" if wait.what == "join"
                  else f"{wait.what}, which {holder} holds")
        waiter = _who(wait.waiter, wait.waiter_name, thread_main=thread.main)
        return f"{waiter}{importing} waits at {where} for {target}"

    def children(self, view: ProcessView, first: int | None) -> Culprit | None:
        order = ([first] if first in view.children else []) + sorted(view.children)
        for child in order:
            found = self.process(child)
            if found:
                return found
        return None

    def other_threads(self, view: ProcessView, main: ThreadStack) -> Culprit | None:
        stuck: list[tuple[ThreadStack, int, Blocked]] = []
        for thread in view.threads:
            at = self.culprit_frame(thread) if thread is not main else None
            if at is not None:
                stuck.append((thread, at, classify(view, thread, at)))
        locked = [entry for entry in stuck if entry[2].kind == "lock"]
        if not locked:  # a thread running a loop: its tasks, not its select
            looping = (self.in_event_loop(view, t) for t in view.threads if t is not main)
            found = next((c for c in looping if c), None)
            if found:
                return found
        if not stuck:
            return None
        thread, at, why = (locked or stuck)[0]
        if len(locked) > 1:
            others = "; ".join(
                f"{self.code.display(t.frames[a].path)}:{t.frames[a].line} in "
                f"{t.frames[a].function}" for t, a, _ in locked[1:3])
            why = replace(why, text=f"{why.text} — another thread waits for a lock at {others}: "
                                    "a lock-order deadlock")
        return self.make(view, thread, at, why)


def _who(ident: int, name: str, *, thread_main: bool) -> str:
    if thread_main or name == "MainThread":
        return "the main thread"
    return f"thread {name!r}" if name and name != "?" else f"thread 0x{ident:x}"


def wait_cycle(waits: Sequence[Wait], start: int | None) -> list[Wait]:
    """The cycle the waits from *start* run into (each thread waits for one holder), or []."""
    by_waiter: dict[int, Wait] = {}
    for wait in waits:
        by_waiter.setdefault(wait.waiter, wait)
    path: list[Wait] = []
    seen: dict[int, int] = {}
    current = start
    while current is not None and current in by_waiter and current not in seen:
        seen[current] = len(path)
        path.append(by_waiter[current])
        current = by_waiter[current].holder
    if current is None or current not in seen:
        return []
    return path[seen[current]:]


def find_culprit(views: Mapping[int, ProcessView], stuck_pid: int,
                 code: CodeFilter) -> Culprit | None:
    return _Search(views, code).process(stuck_pid)


# -- where in pytest's protocol: a fixture's setup or teardown --------------------------------


@dataclass(frozen=True)
class FixtureInFlight:
    """The fixture whose code was running when a test was stopped (read from the stack)."""

    phase: str  # "setup" | "teardown"
    name: str
    scope: str  # pytest's: function, class, module, package, session
    path: str  # where the fixture is defined, as the culprit's paths are shown
    line: int | None


def fixture_words(fixture: FixtureInFlight, test: str) -> str:
    """``in the teardown of fixture `db` (conftest.py:12), used by test_x``: said first, because
    a hang in a fixture is not the test's own code, though the test is the one that fails. A
    wider fixture is set up by the first test that needs it and torn down after the last."""
    scoped = "" if fixture.scope == "function" else f"{fixture.scope} "
    where = f"{fixture.path}:{fixture.line}" if fixture.line else fixture.path
    if fixture.scope == "function":
        used = "used by"
    else:
        used = "first used by" if fixture.phase == "setup" else "torn down after"
    return f"in the {fixture.phase} of {scoped}fixture `{fixture.name}` ({where}), {used} {test}"


_FIXTURE_CALLS = {"call_fixture_func": "setup", "_teardown_yield_fixture": "teardown",
                  "finish": "teardown"}


def fixture_on_stack(thread: ThreadStack | None, code: CodeFilter) -> FixtureInFlight | None:
    """The fixture being set up or torn down, read from a stack's text: what the hard rung has,
    where the soft rung reads live frames. The fixture's own frame is the one pytest's
    ``call_fixture_func``/``_teardown_yield_fixture``/``finish`` called; its name, scope and
    ``def`` line come from its source."""
    frames = thread.frames if thread else ()
    for i, frame in enumerate(frames[1:], start=1):
        phase = _FIXTURE_CALLS.get(frame.function)
        inner = frames[i - 1]
        if (phase and frame.path.replace("\\", "/").endswith("/_pytest/fixtures.py")
                and code.is_user(inner.path)):
            name, scope, line = _fixture_source(inner)
            return FixtureInFlight(phase, name, scope, code.display(inner.path), line)
    return None


def _fixture_source(frame: Frame) -> tuple[str, str, int | None]:
    """(name, scope, def line) of the fixture function *frame* runs, from its decorator."""
    try:
        tree = ast.parse(Path(frame.path).read_text(encoding="utf-8", errors="replace"))
    except (OSError, SyntaxError, ValueError):
        return frame.function, "function", None
    for node in ast.walk(tree):
        if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and node.name == frame.function
                and node.lineno <= (frame.line or 0) <= (node.end_lineno or node.lineno)):
            words = {k.arg: k.value.value for d in node.decorator_list if isinstance(d, ast.Call)
                     for k in d.keywords
                     if k.arg in ("scope", "name") and isinstance(k.value, ast.Constant)}
            return (str(words.get("name", node.name)), str(words.get("scope", "function")),
                    node.lineno)
    return frame.function, "function", None
