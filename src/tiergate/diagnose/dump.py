"""The process-tree dump: what every process under a hang was doing, culprit first.

For the root and every descendant: the Python stacks of all threads (from the process itself, on
``tiergate.child.DUMP_SIGNAL``, only if it registered; from ``sys._current_frames`` when the dumping
process is in the tree, as in the soft timeout's SIGALRM handler), native frames and the stacks of
Python processes that did not register (py-spy, when installed), and what the kernel says: state,
wait channel, CPU, memory, sockets, open files, age.

Phases, all processes at once in each, so ten processes cost about as much as one: snapshot the
tree, signal every registered process and wait for its stacks file to stop growing, sample busy
processes a second time (frame progress or not), run py-spy in parallel until the deadline.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType

import psutil

from tiergate.child import DUMP_SIGNAL, is_registered, stacks_dir, stacks_file
from tiergate.child.site import _tiergate_tasks, _tiergate_waits
from tiergate.diagnose import procfs, tcpinfo
from tiergate.diagnose.culprit import (
    SYSCALLS_KNOWN,
    CodeFilter,
    EventLoop,
    FixtureInFlight,
    Frame,
    ProcessView,
    Socket,
    ThreadStack,
    find_culprit,
    fixture_on_stack,
    parse_asyncio,
    parse_faulthandler,
    parse_py_spy,
    parse_waits,
    stdlib_helper,
)
from tiergate.protocol.findings import Culprit
from tiergate.protocol.layout import dump_file
from tiergate.protocol.redact import command_line, redact, redact_secrets

_TIERGATE_DIR = str(Path(__file__).resolve().parents[1])
_HIDDEN_MODULES = ("pytest_timeout.py",)  # a timeout handler's own frames, above the test's
_SETTLE = 0.05  # a stacks file that has not grown for this long is complete (CI is busy)
_BUSY_WINDOW = 0.15  # wall time over which a busy process's CPU share is measured
_MAX_THREADS = 64
_MAX_FILES = 20
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class TreeDump:
    text: str  # the human-readable dump, culprit first
    culprit: Culprit | None
    processes: int
    seconds: float
    fixture: FixtureInFlight | None = None  # the fixture the stuck test was in, if any


@dataclass
class _Task:
    tid: int
    name: str
    state: str
    wchan: str
    ticks: int  # user + system CPU, clock ticks


@dataclass
class _Process:
    pid: int
    ppid: int = 0
    command: str = ""
    python: bool = False
    registered: bool = False
    status: str = "?"
    age: float | None = None
    cpu: tuple[float, float] | None = None
    rss: int | None = None
    cwd: str | None = None
    sockets: list[Socket] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    tasks: list[_Task] = field(default_factory=list)
    syscall: str = ""
    problem: str | None = None
    worker: str = ""  # the xdist worker it is (gw0, ...), from its environment
    stacks: str = ""  # from the process's own faulthandler (or ours)
    stacks_again: str = ""
    stacks_problem: str | None = None
    native: str = ""  # py-spy's output
    native_problem: str | None = None
    peer_of: int | None = None  # outside the tree: the pid at the other end of whose socket it is


# -- reading /proc -------------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _task(pid: int, tid: int) -> _Task | None:
    stat = procfs.read_stat(pid, tid)
    if stat is None:
        return None
    return _Task(tid, stat.name, stat.state, _read(f"/proc/{pid}/task/{tid}/wchan"), stat.ticks)


def _tasks(pid: int) -> list[_Task]:
    try:
        tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return []
    tids = [pid, *[t for t in tids if t != pid]][:_MAX_THREADS]
    return [t for t in (_task(pid, tid) for tid in tids) if t is not None]


def _syscall(text: str) -> tuple[int, tuple[int, ...]] | None:
    """``/proc/<pid>/syscall``: the call the main thread sleeps in and its first arguments."""
    parts = text.split()
    if not parts or not parts[0].lstrip("-").isdigit() or int(parts[0]) < 0:
        return None  # "running", or not in a system call
    args = []
    for raw in parts[1:3]:
        value = int(raw, 16)
        args.append(value - (1 << 64) if value >= 1 << 63 else value)  # pid -1 for "any child"
    return int(parts[0]), tuple(args)


def _snapshot(proc: psutil.Process, run_dir: Path) -> _Process:
    info = _Process(proc.pid)
    ignored = str(stacks_dir(run_dir))
    try:
        with proc.oneshot():
            info.ppid = proc.ppid()
            cmdline = proc.cmdline()
            info.command = command_line(cmdline or [f"[{proc.name()}]"])
            exe = os.path.basename(cmdline[0]) if cmdline else proc.name()
            info.python = exe.startswith("python") or proc.name().startswith("python")
            info.status = proc.status()
            info.age = time.time() - proc.create_time()
            times = proc.cpu_times()
            info.cpu = (times.user, times.system)
            info.rss = proc.memory_info().rss
            info.cwd = proc.cwd()
            for conn in proc.net_connections(kind="inet"):
                local = f"{conn.laddr.ip}:{conn.laddr.port}" if conn.laddr else ""
                remote = f"{conn.raddr.ip}:{conn.raddr.port}" if conn.raddr else ""
                kind = ("tcp" if conn.type == 1 else "udp") + ("6" if conn.family == 10 else "")
                info.sockets.append(Socket(conn.fd, kind, local, remote, str(conn.status)))
            info.files = [redact(f.path) for f in proc.open_files()
                          if not f.path.startswith(ignored)]
            info.worker = _xdist_worker(proc, cmdline)
    except psutil.NoSuchProcess:
        info.problem = "exited while the dump was taken"
    except psutil.AccessDenied as exc:
        info.problem = f"access denied ({exc.msg or 'not ours'})"
    info.tasks = _tasks(proc.pid)
    info.syscall = _read(f"/proc/{proc.pid}/syscall")
    return info


def _xdist_worker(proc: psutil.Process, cmdline: list[str]) -> str:
    """``gw0`` for an xdist worker: xdist sets PYTEST_XDIST_WORKER in it; its command line
    (``python -c ...execnet...``) does not say which worker it is, unless it was started so."""
    try:
        worker = proc.environ().get("PYTEST_XDIST_WORKER", "")
    except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
        worker = ""
    if not worker:
        named = [w for w in cmdline if w.startswith("gw") and w[2:].isdigit()]
        worker = named[0] if named else ""
    return worker if worker.isidentifier() else ""


# -- Python stacks -------------------------------------------------------------------------


def _handler_codes() -> set[object]:
    codes: set[object] = set()
    for name in ("SIGALRM", "SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGVTALRM"):
        try:
            handler = signal.getsignal(getattr(signal, name))
        except (AttributeError, ValueError):
            continue
        code = getattr(getattr(handler, "__func__", handler), "__code__", None)
        if code is not None:
            codes.add(code)
    return codes


def _without_dumper(frames: list[FrameType]) -> list[FrameType]:
    """The current thread's frames without the dump itself and the signal handler that asked for
    it (the soft timeout runs this from SIGALRM, on top of the test's own frames)."""
    handlers = _handler_codes()
    inside = [i for i, f in enumerate(frames) if f.f_code in handlers]
    if inside:
        frames = frames[inside[-1] + 1:]
    while frames and (frames[0].f_code.co_filename.startswith(_TIERGATE_DIR)
                      or frames[0].f_code.co_filename.endswith(_HIDDEN_MODULES)):
        frames = frames[1:]
    return frames


def _own_stacks() -> str:
    """All threads of this process, faulthandler style, without the dump's own frames, and the
    tasks of its running asyncio loops, as the dump handler of every other process writes them."""
    names = {t.ident: t for t in threading.enumerate()}
    main = threading.main_thread().ident
    me = threading.get_ident()
    out = []
    current = sys._current_frames()
    for ident, top in current.items():
        frames: list[FrameType] = []
        cursor: FrameType | None = top
        while cursor is not None:
            frames.append(cursor)
            cursor = cursor.f_back
        if ident == me:
            frames = _without_dumper(frames)
        thread = names.get(ident)
        label = "Main thread" if ident == main else "Thread"
        tid = f", tid {thread.native_id}" if thread and thread.native_id else ""
        name = f' "{thread.name}"' if thread else ""
        out.append(f"{label} 0x{ident:016x}{name}{tid} (most recent call first):")
        out.extend(f'  File "{f.f_code.co_filename}", line {f.f_lineno} in {f.f_code.co_name}'
                   for f in frames[:100])
        out.append("")
    waits = _tiergate_waits.describe(current, _tiergate_waits.import_waits())
    return "\n".join(out) + waits + _tiergate_tasks.describe(current)


def _send(pid: int, run_dir: Path) -> bool:
    """Signal *pid* if, and only if, it registered; through a pidfd so a reused pid is safe."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = -1
    try:
        if not is_registered(pid, run_dir):
            return False
        if pidfd >= 0:
            signal.pidfd_send_signal(pidfd, DUMP_SIGNAL)
        else:
            os.kill(pid, DUMP_SIGNAL)
        return True
    except OSError:
        return False
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _collect(pids: Iterable[int], run_dir: Path, deadline: float) -> dict[int, str]:
    """Signal each registered pid, and read what each appends to its stacks file."""
    files = {pid: stacks_file(pid, run_dir) for pid in pids}
    offsets = {pid: _size(path) for pid, path in files.items()}
    pending = {pid for pid in files if offsets[pid] >= 0 and _send(pid, run_dir)}
    last = dict(offsets)
    grew = {pid: 0.0 for pid in pending}
    while pending and time.monotonic() < deadline:
        time.sleep(0.005)
        now = time.monotonic()
        for pid in list(pending):
            size = _size(files[pid])
            if size != last[pid]:
                last[pid], grew[pid] = size, now
            elif size > offsets[pid] and now - grew[pid] >= _SETTLE:
                pending.discard(pid)
    texts = {}
    for pid in files:
        if last[pid] > offsets[pid] >= 0:
            try:
                with files[pid].open("rb") as handle:
                    handle.seek(offsets[pid])
                    data = handle.read(last[pid] - offsets[pid])
            except OSError:
                continue
            texts[pid] = data.decode("utf-8", "replace")
    return texts


# -- py-spy --------------------------------------------------------------------------------


def _py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _without_header(text: str) -> str:
    """py-spy's output without its header, which repeats the (unredacted) command line."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Python v")]
    return "\n".join(lines[starts[0] + 1:]).strip("\n") if starts else redact(text)


def _native(infos: list[_Process], deadline: float) -> None:
    """py-spy for each of these Python processes, all at once, until the deadline."""
    targets = [i for i in infos if i.python and i.pid != os.getpid() and i.problem is None]
    tool = _py_spy()
    if tool is None:
        for info in targets:
            info.native_problem = ("py-spy is not installed (pip install 'tiergate[native]'):"
                                   " no native frames")
        return
    import subprocess

    running: dict[int, subprocess.Popen[bytes]] = {}
    for info in targets:
        try:
            running[info.pid] = subprocess.Popen(
                [tool, "dump", "--pid", str(info.pid), "--native"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        except OSError as exc:
            info.native_problem = f"py-spy could not start: {exc}"
    by_pid = {i.pid: i for i in targets}
    for pid, child in running.items():
        info = by_pid[pid]
        try:
            out, _ = child.communicate(timeout=max(0.01, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()  # ours, by its pid; the kernel detaches it from the target
            child.communicate()
            info.native_problem = "py-spy did not finish within the dump's time limit"
            continue
        text = out.decode("utf-8", "replace").strip()
        if child.returncode == 0:
            info.native = _without_header(text)
        else:
            info.native_problem = f"py-spy failed: {text.splitlines()[0] if text else '?'}"


# -- the dump ------------------------------------------------------------------------------


def _tree(root_pid: int) -> list[psutil.Process]:
    root = psutil.Process(root_pid)
    found = [root]
    for pid, _ in procfs.descendants(root_pid):
        try:
            found.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue  # ended between the listing and now
    return found


_Endpoint = tuple[str, int]  # (ip, port), an IPv4-mapped IPv6 address as plain IPv4
_WILDCARDS = ("0.0.0.0", "::")


def _peers(infos: list[_Process], run_dir: Path) -> list[_Process]:
    """Names who holds the other end of each loopback socket of the tree, on the socket, and
    snapshots those outside the tree that registered under this run (ours: a server a test
    started as a daemon): a test stuck in ``recv`` is explained by the server's stacks."""
    wanted = {e for info in infos for s in info.sockets
              if (e := _endpoint(s.remote)) is not None and _is_loopback(e[0])}
    table = _ConnectionTable.of(wanted) if wanted else None
    if table is None:
        return []
    in_tree = {info.pid: info for info in infos}
    known: dict[int, _Process] = {}
    outside: list[_Process] = []
    for info in infos:
        for n, sock in enumerate(info.sockets):
            mine, theirs = _endpoint(sock.local), _endpoint(sock.remote)
            if mine is None or theirs not in wanted:
                continue
            pid, accepted = table.holder(theirs, mine)
            if pid is None:
                continue
            # the connection table names one holder per socket; a fork shares it with others
            holders = sorted({pid} | {other.pid for other in infos
                                      if _holds(other, theirs, mine if accepted else None)})
            if holders == [info.pid]:
                name = "in this same process"  # a server thread, or a listener nobody serves
            elif len(holders) > 1:
                name = "shared by pids " + ", ".join(map(str, holders))
            else:
                peer = in_tree.get(pid) or known.get(pid)
                if peer is None:
                    try:
                        peer = known[pid] = _snapshot(psutil.Process(pid), run_dir)
                    except (psutil.Error, OSError):
                        continue
                    if is_registered(pid, run_dir):
                        peer.peer_of = info.pid
                        outside.append(peer)
                where = "" if pid in in_tree else ", not in the dumped tree"
                name = f"pid {pid} ({_short(peer.command)}{where})"
            info.sockets[n] = replace(sock, peer=name)
    return outside


@dataclass
class _ConnectionTable:
    """The kernel's connection table (psutil's, one pid per socket), cut down to the ends the
    tree's loopback sockets point at."""

    connected: dict[tuple[_Endpoint, _Endpoint], int]  # (its local, its remote) -> pid
    listening: dict[_Endpoint, int]  # a wildcard listener is keyed by ("", port)

    @classmethod
    def of(cls, wanted: set[_Endpoint]) -> _ConnectionTable | None:
        try:
            connections = psutil.net_connections(kind="inet")
        except (psutil.Error, OSError):
            return None
        table = cls({}, {})
        ports = {port for _, port in wanted}
        for conn in connections:
            local = _normal(conn.laddr.ip, conn.laddr.port) if conn.laddr else None
            if conn.pid is None or local is None or local[1] not in ports:
                continue
            if conn.raddr:
                remote = _normal(conn.raddr.ip, conn.raddr.port)
                if local in wanted and remote is not None:
                    table.connected[(local, remote)] = conn.pid
            elif local in wanted or local[0] in _WILDCARDS:
                table.listening.setdefault(local if local in wanted else ("", local[1]), conn.pid)
        return table

    def holder(self, theirs: _Endpoint, mine: _Endpoint) -> tuple[int | None, bool]:
        """Who holds *theirs* for a socket at *mine*; True when it is the accepted connection,
        False when only a listener (exact, then wildcard) is there."""
        pid = self.connected.get((theirs, mine))
        if pid is not None:
            return pid, True
        return self.listening.get(theirs) or self.listening.get(("", theirs[1])), False


def _holds(info: _Process, local: _Endpoint, remote: _Endpoint | None) -> bool:
    """Whether *info* has a socket at *local* connected to *remote* (None: listening there)."""
    for sock in info.sockets:
        at = _endpoint(sock.local)
        if at is None:
            continue
        if remote is not None:
            if at == local and _endpoint(sock.remote) == remote:
                return True
        elif not sock.remote and at[1] == local[1] and at[0] in (local[0], *_WILDCARDS):
            return True
    return False


def _endpoint(address: str) -> _Endpoint | None:
    host, _, port = address.rpartition(":")
    return _normal(host.strip("[]"), int(port)) if port.isdigit() else None


def _normal(host: str, port: int) -> _Endpoint | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip), port


def _is_loopback(ip: str) -> bool:
    return ipaddress.ip_address(ip).is_loopback


def _short(command: str) -> str:
    """A command line for one line of text: absolute paths cut to their file names."""
    words = [os.path.basename(w) if w.startswith("/") else w for w in command.split(" ")]
    line = " ".join(words)
    return line if len(line) <= 80 else line[:79] + "…"


def _absolute(frames: tuple[Frame, ...], cwd: str | None) -> tuple[Frame, ...]:
    if not cwd:
        return frames
    return tuple(Frame(os.path.join(cwd, f.path), f.line, f.function)
                 if not f.path.startswith(("/", "<")) else f for f in frames)


def _threads(info: _Process, text: str) -> list[ThreadStack]:
    return [ThreadStack(t.label, _absolute(t.frames, info.cwd), t.main)
            for t in parse_faulthandler(text)]


def _loops(info: _Process, text: str) -> list[EventLoop]:
    return [replace(loop, tasks=tuple(replace(t, frames=_absolute(t.frames, info.cwd))
                                      for t in loop.tasks)) for loop in parse_asyncio(text)]


def _view(info: _Process, ticks_before: int, seconds: float) -> ProcessView:
    main_task = info.tasks[0] if info.tasks and info.tasks[0].tid == info.pid else None
    view = ProcessView(pid=info.pid, sockets=info.sockets, is_self=info.pid == os.getpid(),
                       command=info.command)
    if main_task:
        view.state = main_task.state
        view.wchan = main_task.wchan
        if seconds > 0:
            view.cpu_share = (main_task.ticks - ticks_before) / _CLOCK_TICKS / seconds
    view.syscall = _syscall(info.syscall) if SYSCALLS_KNOWN else None
    spied = parse_py_spy(info.native, info.pid) if info.native else None
    if info.stacks:
        view.threads = _threads(info, info.stacks)
        view.loops = _loops(info, info.stacks)
        view.waits = parse_waits(info.stacks)
        again = [t for t in _threads(info, info.stacks_again) if t.main]
        view.again = again[0] if again else None
    elif spied:
        view.threads = [ThreadStack(t.label, _absolute(t.frames, info.cwd), t.main)
                        for t in spied.threads]
    view.holds_gil = bool(spied and spied.main_holds_gil)
    return view


class _StreamCount:
    """The bytes each established TCP socket of the tree received between two readings: the
    stacks collection lies between them (50 ms or more)."""

    def __init__(self, infos: list[_Process]) -> None:
        self.infos = [i for i in infos if any(s.status == "ESTABLISHED" for s in i.sockets)]
        self.started = time.monotonic()
        self.before = tcpinfo.bytes_received() if self.infos else {}

    def count_again(self) -> None:
        if not self.before:
            return
        after = tcpinfo.bytes_received()
        window = time.monotonic() - self.started
        for info in self.infos:
            info.sockets = [self.counted(s, after, window) for s in info.sockets]

    def counted(self, sock: Socket, after: dict[tcpinfo.Ends, int], window: float) -> Socket:
        ends = (_ends(sock.local), _ends(sock.remote))
        if ends in self.before and ends in after:
            return replace(sock, received=after[ends] - self.before[ends], window=window)
        return sock


def _ends(address: str) -> str:
    """``::ffff:127.0.0.1:5000`` as sock_diag writes an IPv4-mapped end: ``127.0.0.1:5000``."""
    return address.removeprefix("::ffff:")


def _views(infos: list[_Process], ticks: dict[int, int], window: float,
           root_pid: int) -> dict[int, ProcessView]:
    views = {i.pid: _view(i, ticks[i.pid], window) for i in infos}
    for info in infos:
        if info.ppid in views and info.pid != root_pid:
            views[info.ppid].children.append(info.pid)
    return views


def take_tree_dump(root_pid: int, *, run_dir: Path, project_root: Path, reason: str,
                   stuck_pid: int | None = None, timeout: float = 1.0) -> TreeDump:
    started = time.monotonic()
    deadline = started + timeout
    me = os.getpid()
    own = _own_stacks() if root_pid == me or stuck_pid == me else ""
    try:
        procs = _tree(root_pid)
    except psutil.NoSuchProcess:
        return TreeDump(f"culprit: not found\nreason: {reason}\nprocess {root_pid} is gone\n",
                        None, 0, time.monotonic() - started)
    infos = [_snapshot(p, run_dir) for p in procs]
    infos += _peers(infos, run_dir)
    by_pid = {i.pid: i for i in infos}
    ticks = {i.pid: i.tasks[0].ticks if i.tasks else 0 for i in infos}
    if me in by_pid:
        by_pid[me].stacks, by_pid[me].registered = own, True

    streams = _StreamCount(infos)
    others = [i.pid for i in infos if i.pid != me and i.problem is None]
    for pid, text in _collect(others, run_dir, started + timeout * 0.4).items():
        by_pid[pid].stacks, by_pid[pid].registered = text, True
    running = [i for i in infos if i.pid != me and i.tasks and i.tasks[0].state == "R"]
    if running:  # CPU share over a useful window; a second sample tells C (same frame) from Python
        time.sleep(max(0.0, started + _BUSY_WINDOW - time.monotonic()))
        again = _collect([i.pid for i in running if i.registered], run_dir,
                         started + timeout * 0.6)
        for pid, text in again.items():
            by_pid[pid].stacks_again = text
    window = time.monotonic() - started
    streams.count_again()
    for info in infos:
        info.tasks = _tasks(info.pid) or info.tasks
    for info in infos:
        if not info.stacks and info.python and info.pid != me:
            info.stacks_problem = (
                "did not register the dump handler (started without the tiergate start-up hook,"
                " or with python -I/-E/-S), so it was not signalled")
    code = CodeFilter(project_root)
    stuck = stuck_pid or root_pid
    views = _views(infos, ticks, window, root_pid)
    culprit = find_culprit(views, stuck, code)
    # py-spy costs ~50 ms of CPU per process: native frames only where they can explain the hang.
    wanted = {stuck, culprit.pid if culprit else stuck}
    wanted |= {i.pid for i in infos if i.python and not i.registered} | {i.pid for i in running}
    _native([i for i in infos if i.pid in wanted], deadline)
    for info in infos:
        if info.pid not in wanted and info.python and info.pid != me:
            info.native_problem = ("not taken: py-spy runs only on the stuck process, busy ones"
                                   " and those that did not register, to keep the dump fast")
    if any(i.native for i in infos):
        views = _views(infos, ticks, window, root_pid)
        culprit = find_culprit(views, stuck, code)
    seconds = time.monotonic() - started
    helpers = {pid: what for pid, view in views.items() if (what := stdlib_helper(view))}
    text = _render(infos, culprit, reason, seconds, root_pid, helpers)
    text = redact_secrets(text)  # the stacks and what the kernel said too, in every form
    fixture = fixture_on_stack(views[stuck].main_thread, code) if stuck in views else None
    return TreeDump(text=text, culprit=culprit, processes=len(infos), seconds=seconds,
                    fixture=fixture)


def save_dump(results_dir: Path, name: str, dump: TreeDump) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".") or "dump"
    relative = dump_file(safe)
    target = Path(results_dir) / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_suffix(".txt.tmp")
    staging.write_text(dump.text, encoding="utf-8")
    staging.replace(target)
    return relative


# -- the text ------------------------------------------------------------------------------


def _culprit_line(culprit: Culprit | None) -> str:
    if culprit is None:
        return "culprit: not found (no frame of the project's own code in the stuck thread)"
    where = f"{culprit.path}:{culprit.line} in {culprit.function}"
    because = f" — {culprit.reason}" if culprit.reason else ""
    return f"culprit: {where}{because} [pid {culprit.pid}]"


def _mib(value: int | None) -> str:
    return f"{value / 2**20:.1f} MiB" if value is not None else "?"


def _render(infos: list[_Process], culprit: Culprit | None, reason: str, seconds: float,
            root_pid: int, helpers: dict[int, str]) -> str:
    depth = {root_pid: 0}
    for info in infos:
        depth.setdefault(info.pid, depth.get(info.ppid, 0) + 1)
    marks = {i.pid: "registered" if i.registered else "python, not registered" if i.python
             else "not python" for i in infos}
    lines = [
        _culprit_line(culprit),
        f"reason: {reason}",
        f"taken in {seconds:.2f} s over {len(infos)} process(es) at "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}",
        "",
        "process tree:",
    ]
    tree = [info for info in infos if info.peer_of is None]
    peers = [info for info in infos if info.peer_of is not None]
    for info in tree:
        star = "  <- culprit" if culprit and culprit.pid == info.pid else ""
        if info.pid in helpers:  # said, so nobody reads its stacks for the hang
            star = f"  ({helpers[info.pid]}: started by the standard library, never the culprit)"
        lines.append(f"{'  ' * (depth[info.pid] + 1)}{info.pid} [{info.status}, "
                     f"{marks[info.pid]}{_worker(info)}] {info.command}{star}")
    if peers:
        lines.append("not in the tree, at the other end of its loopback sockets:")
        lines += [f"  {info.pid} [{info.status}, {marks[info.pid]}] {info.command}"
                  f" (peer of {info.peer_of})" for info in peers]
    for info in infos:
        lines += ["", "=" * 100, *_render_process(info)]
    return "\n".join(lines) + "\n"


def _fold_library(lines: list[str]) -> list[str]:
    """Runs of installed-package frames (pytest, pluggy) folded to their ends: the test's frames
    and the stuck ones stay in view."""
    out: list[str] = []
    run: list[str] = []
    for line in [*lines, ""]:
        if "/site-packages/" in line or "/dist-packages/" in line:
            run.append(line)
            continue
        if len(run) > 4:
            run[1:-1] = [f"  ... {len(run) - 2} frames in installed packages ..."]
        out += run
        out.append(line)
        run = []
    return out[:-1]


def _worker(info: _Process) -> str:
    return f", xdist worker {info.worker}" if info.worker else ""


# py-spy's frames of pytest's own machinery: ``pytest_pyfunc_call (_pytest/python.py:187)``
_PYTEST_FRAME = re.compile(r"\((?:_pytest|pluggy|pytest|xdist|execnet)/[^():]*\.py:\d+\)$")


def _fold_pytest(lines: list[str]) -> list[str]:
    """py-spy's runs of pytest/pluggy frames (about 45 under each test) as one line: the test's
    frames above them and the stuck ones stay in view."""
    out: list[str] = []
    run: list[str] = []
    for line in [*lines, ""]:
        if _PYTEST_FRAME.search(line):
            run.append(line)
            continue
        if len(run) > 2:
            indent = run[0][:len(run[0]) - len(run[0].lstrip())]
            run = [f"{indent}… {len(run)} pytest/pluggy frames"]
        out += [*run, line]
        run = []
    return out[:-1]


def _render_process(info: _Process) -> list[str]:
    cpu = f"{info.cpu[0]:.2f} s user + {info.cpu[1]:.2f} s system" if info.cpu else "?"
    age = f"{info.age:.1f} s" if info.age is not None else "?"
    wchan = info.tasks[0].wchan if info.tasks else "?"
    where = f"parent {info.ppid}"
    if info.peer_of is not None:
        where += f"; not in the dumped tree, the peer of a socket of {info.peer_of}"
    lines = [
        f"process {info.pid} ({where}{_worker(info)}): {info.command}",
        f"  state {info.status}, wait channel {wchan or '-'}, CPU {cpu}, RSS {_mib(info.rss)},"
        f" age {age}",
    ]
    if info.problem:
        lines.append(f"  ({info.problem})")
    if info.sockets:
        lines.append("  sockets:")
        lines += [f"    fd {s.fd} {s.kind} {s.describe()}" for s in info.sockets]
    if info.files:
        lines.append("  open files:")
        lines += [f"    {path}" for path in info.files[:_MAX_FILES]]
        if len(info.files) > _MAX_FILES:
            lines.append(f"    ... and {len(info.files) - _MAX_FILES} more")
    if len(info.tasks) > 1:
        lines.append("  threads (kernel view):")
        lines += [f"    tid {t.tid} {t.name!r} state {t.state} wait channel {t.wchan or '-'}"
                  for t in info.tasks]
    if info.stacks:
        lines.append("  Python stacks:")
        lines += [f"    {line}" for line in _fold_library(info.stacks.rstrip().splitlines())]
    elif info.stacks_problem:
        lines.append(f"  Python stacks: none here — {info.stacks_problem}"
                     + ("; py-spy's view below" if info.native else ""))
    if info.native:
        lines.append("  native and Python frames (py-spy):")
        lines += [f"    {line}" for line in _fold_pytest(info.native.splitlines())]
    elif info.native_problem:
        lines.append(f"  native frames: not available — {info.native_problem}")
    return lines
