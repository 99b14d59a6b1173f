"""The culprit rules on their own: which frame of a stuck process tree is to blame, and why.

The inputs are the ``ProcessView`` values ``tiergate.diagnose.dump`` builds from a real tree
(stacks, kernel state, sockets, children), written here as data: a frame is ``(where, line,
function)`` with ``where`` one of ``project:<path>``, ``stdlib:<path>``, ``site:<path>``,
``tiergate:<path>`` or a literal path (``<string>``, ``/opt/...``). The project's source lines are
real files, since the rules read them (Python shows no frame for a C call such as ``sock.recv``)."""

from __future__ import annotations

import sys
import sysconfig
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import tiergate
from tiergate.child.site import _tiergate_waits
from tiergate.diagnose.culprit import (
    SYSCALLS_KNOWN,
    CodeFilter,
    Frame,
    ProcessView,
    Socket,
    ThreadStack,
    Wait,
    code_only,
    find_culprit,
    fixture_on_stack,
    fixture_words,
    parse_asyncio,
    parse_faulthandler,
    parse_py_spy,
    parse_waits,
    stdlib_helper,
)
from tiergate.protocol.findings import Culprit

Spec = tuple[str, int | None, str]

STDLIB = sysconfig.get_paths()["stdlib"]
SITE = sysconfig.get_paths()["purelib"]
TIERGATE = str(Path(tiergate.__file__).resolve().parent)  # the package, not one room of it

# app/waits.py in the project: one line per wait the source rules know (never run, only read).
WAITS = {
    "sleep": "time.sleep(100)",
    "recv": "reply = sock.recv(1024)",
    "accept": "conn, _ = server.accept()",
    "connect": "sock.connect(('127.0.0.1', 9))",
    "send": "sock.sendall(payload)",
    "acquire": "lock.acquire()",
    "with first": "with first:",
    "with second": "with second:",
    "with third": "with third:",
    "waitpid": "os.waitpid(pid, 0)",
    "select": "select.select([reader], [], [])",
    "event wait": "done.wait()",
    "compute": "total = sum(values)",
}
LINE = {name: number for number, name in enumerate(WAITS, start=1)}
WAITS_PY = "project:app/waits.py"


def at(wait: str, function: str = "wait_for_it") -> Spec:
    """The project frame on the line of *wait* in app/waits.py."""
    return (WAITS_PY, LINE[wait], function)


TEST_FRAME: Spec = ("project:tests/test_api.py", 12, "test_reply")
needs_syscalls = pytest.mark.skipif(not SYSCALLS_KNOWN, reason="system call numbers of x86_64")


def case(name: str, *values: Any) -> Any:
    return pytest.param(*values, id=name)


def kernel_case(name: str, *values: Any) -> Any:
    """A case that reads the system call the main thread sleeps in (known on x86_64 only)."""
    return pytest.param(*values, id=name, marks=needs_syscalls)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    project = tmp_path / "proj"
    (project / "app").mkdir(parents=True)
    (project / "app" / "waits.py").write_text("\n".join(WAITS.values()) + "\n")
    return project


def frame(root: Path, spec: Spec) -> Frame:
    where, line, function = spec
    place, _, rest = where.partition(":")
    base = {"project": str(root), "stdlib": STDLIB, "site": SITE, "tiergate": TIERGATE}.get(place)
    return Frame(f"{base}/{rest}" if base else where, line, function)


def stack(root: Path, specs: Sequence[Spec], *, main: bool = False, name: str = "") -> ThreadStack:
    label = "Main thread 0x1" if main else f"Thread 0x{name or '2'}"
    return ThreadStack(label, tuple(frame(root, s) for s in specs), main)


def process(root: Path, pid: int, main: Sequence[Spec] | None, *,
            threads: Sequence[Sequence[Spec]] = (), children: Sequence[int] = (),
            again: Sequence[Spec] | None = None, **kernel: Any) -> ProcessView:
    """One process as dump.py sees it; *main* None: no Python stacks (a shell, a C program)."""
    stacks = [] if main is None else [stack(root, main, main=True)]
    stacks += [stack(root, t, name=str(i + 2)) for i, t in enumerate(threads)]
    return ProcessView(pid=pid, children=list(children), threads=stacks,
                       again=stack(root, again, main=True) if again is not None else None,
                       **kernel)


def culprit(root: Path, *views: ProcessView, stuck: int | None = None) -> Culprit | None:
    by_pid = {v.pid: v for v in views}
    return find_culprit(by_pid, stuck if stuck is not None else views[0].pid, CodeFilter(root))


def where(found: Culprit | None) -> tuple[str, int | None, str] | None:
    return (found.path, found.line, found.function) if found else None


# -- which frame ----------------------------------------------------------------------------

FRAME_CASES = [
    case("the test's own frame", [TEST_FRAME], ("tests/test_api.py", 12, "test_reply")),
    case("the innermost project frame, not the test that called it",
     [("project:app/client.py", 30, "ask"), TEST_FRAME], ("app/client.py", 30, "ask")),
    case("standard-library frames are skipped",
     [("stdlib:socket.py", 706, "readinto"), ("stdlib:http/client.py", 286, "_read_status"),
      ("project:app/client.py", 30, "ask"), TEST_FRAME], ("app/client.py", 30, "ask")),
    case("a library's frames are skipped",
     [("site:requests/sessions.py", 589, "request"), ("project:app/client.py", 30, "ask")],
     ("app/client.py", 30, "ask")),
    case("tiergate's own frames are skipped",
     [("tiergate:softtimeout.py", 80, "_on_alarm"), ("tiergate:tierrun.py", 200, "call"),
      TEST_FRAME], ("tests/test_api.py", 12, "test_reply")),
    case("a virtualenv inside the project is a library",
     [("project:.venv/lib/python3.11/site-packages/lib.py", 5, "call"), TEST_FRAME],
     ("tests/test_api.py", 12, "test_reply")),
    case("any site-packages directory is a library",
     [("project:vendor/site-packages/six.py", 5, "call"), TEST_FRAME],
     ("tests/test_api.py", 12, "test_reply")),
    case("a system's dist-packages is a library",
     [("/usr/lib/python3/dist-packages/apt/cache.py", 5, "open"), ("<string>", 1, "<module>")],
     ("<string>", 1, "<module>")),
    case("tiergate's own frames are never the user's",
     [("tiergate:softtimeout.py", 80, "_on_alarm"), ("tiergate:tierrun.py", 200, "call"),
      ("<string>", 1, "<module>")], ("<string>", 1, "<module>")),
    case("another interpreter's standard library is skipped",
     [("/usr/lib/python3.12/selectors.py", 468, "select"), ("<stdin>", 2, "<module>")],
     ("<stdin>", 2, "<module>")),
    case("frozen import machinery is skipped",
     [("<frozen importlib._bootstrap>", 241, "_call_with_frames_removed"),
      ("project:app/__init__.py", 3, "<module>")], ("app/__init__.py", 3, "<module>")),
    case("without a project frame, the user's code outside the project (python -c)",
     [("stdlib:threading.py", 320, "wait"), ("<string>", 4, "<module>")],
     ("<string>", 4, "<module>")),
    case("a project frame beats a deeper user frame outside the project",
     [("/opt/tools/helper.py", 9, "spin"), TEST_FRAME], ("tests/test_api.py", 12, "test_reply")),
    case("only library frames: no culprit",
     [("stdlib:threading.py", 320, "wait"), ("site:_pytest/main.py", 283, "wrap_session")], None),
    case("no frames at all: no culprit", [], None),
]


@pytest.mark.parametrize(("frames", "expected"), FRAME_CASES)
def test_the_culprit_frame(root: Path, frames: list[Spec],
                           expected: tuple[str, int, str] | None) -> None:
    found = culprit(root, process(root, 100, frames))

    assert where(found) == expected
    assert found is None or found.pid == 100


# -- why it is stuck ------------------------------------------------------------------------

DB = Socket(5, "tcp", "127.0.0.1:40000", "127.0.0.1:5432", "ESTABLISHED", "pid 12 (python db.py)")
CACHE = Socket(6, "tcp", "127.0.0.1:40001", "127.0.0.1:6379", "ESTABLISHED")
LISTENER = Socket(3, "tcp", "127.0.0.1:8000", "", "LISTEN")
NO_PEER = "blocked in recv on a socket: no answer from the peer"
DB_TEXT = "127.0.0.1:40000 → 127.0.0.1:5432 (ESTABLISHED), peer pid 12 (python db.py)"

# (id, frames of the main thread, kernel state of the process, the reason)
REASON_CASES = [
    # a wait the standard-library frames name
    case("subprocess wait", [("stdlib:subprocess.py", 2046, "_wait"), at("compute")], {},
     "waiting for a child process"),
    case("multiprocessing join",
         [("stdlib:multiprocessing/process.py", 149, "join"), at("compute")], {},
         "waiting for a child process"),
    case("thread join", [("stdlib:threading.py", 1149, "_wait_for_tstate_lock"),
                     ("stdlib:threading.py", 1119, "join"), at("compute")], {},
     "waiting for a thread to finish (join)"),
    case("event wait quotes the project's line", [("stdlib:threading.py", 629, "wait"),
                                              at("event wait")], {},
     "waiting for a lock (acquire): `done.wait()`"),
    case("queue get", [("stdlib:queue.py", 171, "get"), at("compute")], {}, "waiting on a queue"),
    case("multiprocessing pipe", [("stdlib:multiprocessing/connection.py", 216, "recv_bytes"),
                              at("compute")], {},
     "waiting for data from another process (multiprocessing pipe)"),
    case("socket readinto", [("stdlib:socket.py", 706, "readinto"), at("compute")], {}, NO_PEER),
    case("socket accept", [("stdlib:socket.py", 294, "accept"), at("compute")], {},
     "blocked in accept on a socket: nobody connects"),
    case("create_connection", [("stdlib:socket.py", 836, "create_connection"), at("compute")], {},
     "blocked in connect on a socket: the peer does not accept"),
    case("tls handshake", [("stdlib:ssl.py", 1346, "do_handshake"), at("compute")], {}, NO_PEER),
    case("selectors", [("stdlib:selectors.py", 468, "select"), at("compute")], {},
     "waiting in select/poll"),
    case("the standard-library frame nearest the project names the wait",
     [("stdlib:threading.py", 331, "wait"), ("stdlib:queue.py", 180, "get"), at("compute")], {},
     "waiting on a queue"),
    case("a standard-library frame with no known wait hides the source line",
     [("stdlib:json/decoder.py", 337, "decode"), at("sleep")], {}, None),
    # a C call that shows no frame: the project's source line
    case("sleep", [at("sleep")], {}, "sleeping"),
    case("recv", [at("recv")], {}, NO_PEER),
    case("accept", [at("accept")], {}, "blocked in accept on a socket: nobody connects"),
    case("connect", [at("connect")], {},
         "blocked in connect on a socket: the peer does not accept"),
    case("sendall", [at("send")], {}, "blocked in send on a socket: the peer does not read"),
    case("acquire", [at("acquire")], {}, "waiting for a lock (acquire): `lock.acquire()`"),
    case("with a lock", [at("with first")], {}, "waiting for a lock (acquire): `with first:`"),
    case("waitpid", [at("waitpid")], {}, "waiting for a child process"),
    case("select", [at("select")], {}, "waiting in select/poll"),
    case("a line that waits for nothing", [at("compute")], {}, None),
    # the sockets of the process, for a recv or accept the source names
    case("recv names the connected socket", [at("recv")], {"sockets": [LISTENER, DB]},
     f"blocked in recv on {DB_TEXT}: no answer from the peer"),
    case("recv on one of several connections", [at("recv")], {"sockets": [DB, CACHE]},
     f"blocked in recv on {DB_TEXT} (+1 more): no answer from the peer"),
    case("accept names the listener", [at("accept")], {"sockets": [DB, LISTENER]},
     "blocked in accept on 127.0.0.1:8000 (LISTEN): nobody connects"),
    # the kernel: what the main thread sleeps in
    kernel_case("nanosleep", [at("compute")], {"syscall": (35, (0, 0))}, "sleeping"),
    kernel_case("wait4 names the child", [at("compute")], {"syscall": (61, (4321, 0))},
                 "waiting for child process 4321"),
    kernel_case("wait4 for any child", [at("compute")], {"syscall": (61, (-1, 0))},
                 "waiting for a child process"),
    kernel_case("futex", [at("compute")], {"syscall": (202, (0, 0))},
                 "waiting for a lock (acquire): `total = sum(values)`"),
    kernel_case("poll", [at("compute")], {"syscall": (7, (0, 1))}, "waiting in select/poll"),
    kernel_case("read on a socket names that socket", [at("compute")],
                 {"syscall": (0, (5, 0)), "sockets": [CACHE, DB]},
                 f"blocked in recv on {DB_TEXT}: no answer from the peer"),
    kernel_case("read on a descriptor that is no socket", [at("compute")],
                 {"syscall": (0, (7, 0)), "sockets": [DB]},
                 "blocked reading file descriptor 7"),
    kernel_case("accept4 on the listener", [at("compute")],
                 {"syscall": (288, (3, 0)), "sockets": [DB, LISTENER]},
                 "blocked in accept on 127.0.0.1:8000 (LISTEN): nobody connects"),
    kernel_case("the frames beat the kernel", [("stdlib:queue.py", 171, "get"), at("compute")],
                 {"syscall": (202, (0, 0))}, "waiting on a queue"),
    kernel_case("no kernel view of the process taking the dump", [at("compute")],
                 {"syscall": (35, (0, 0)), "is_self": True}, None),
    case("the wait channel when nothing else knows", [at("compute")],
     {"state": "S", "wchan": "pipe_read"}, "blocked in the kernel (pipe_read)"),
    case("no wait channel", [at("compute")], {"state": "S", "wchan": "0"}, None),
    # on the CPU
    case("busy in Python", [at("compute")], {"state": "R", "cpu_share": 0.9},
     "busy running code (on CPU, 90%)"),
    case("busy with the same frame sampled twice: C holding the GIL", [at("compute")],
     {"state": "R", "cpu_share": 0.9, "again": [at("compute")]},
     "busy in C: on CPU (90%) with no Python frame progress (holds the GIL)"),
    case("busy with frames that moved on", [at("compute")],
     {"state": "R", "cpu_share": 0.9, "again": [at("sleep")]},
     "busy running code (on CPU, 90%)"),
    case("py-spy saw it hold the GIL", [at("compute")],
     {"state": "R", "cpu_share": 0.1, "holds_gil": True},
     "busy in C: on CPU (10%) with no Python frame progress (holds the GIL)"),
    case("running but hardly using the CPU", [at("compute")], {"state": "R", "cpu_share": 0.1},
     None),
    case("asleep in disk I/O with CPU used before", [at("compute")],
     {"state": "D", "cpu_share": 0.9}, None),
    kernel_case("running state but inside a system call", [at("compute")],
                 {"state": "R", "cpu_share": 0.9, "syscall": (35, (0, 0))}, "sleeping"),
    case("busy is not read for the process taking the dump", [at("compute")],
     {"state": "R", "cpu_share": 0.9, "is_self": True}, None),
]


@pytest.mark.parametrize(("frames", "kernel", "reason"), REASON_CASES)
def test_the_blocking_reason(root: Path, frames: list[Spec], kernel: dict[str, Any],
                             reason: str | None) -> None:
    kernel = dict(kernel)
    again = kernel.pop("again", None)
    found = culprit(root, process(root, 100, frames, again=again, **kernel))

    assert found is not None
    assert (found.path, found.function) == ("app/waits.py", "wait_for_it")
    assert found.reason == reason


@needs_syscalls
def test_the_kernel_is_not_read_for_a_thread_other_than_the_main_one(root: Path) -> None:
    """The system call and wait channel in /proc/PID are the main thread's; a worker thread found
    through a join gets the reason of its own frames only."""
    view = process(root, 100, [("stdlib:threading.py", 1119, "join"), TEST_FRAME],
                   threads=[[at("compute", "worker")]],
                   syscall=(35, (0, 0)), state="S", wchan="futex_wait_queue")

    found = culprit(root, view)

    assert where(found) == ("app/waits.py", LINE["compute"], "worker")
    assert found is not None and found.reason is None


# -- following a wait into child processes ----------------------------------------------------

WAITS_FOR_CHILD = [("stdlib:subprocess.py", 2046, "_wait"), ("stdlib:subprocess.py", 1264, "wait"),
                   TEST_FRAME]


def test_a_parent_waiting_for_its_child_names_the_child(root: Path) -> None:
    parent = process(root, 100, WAITS_FOR_CHILD, children=[200])
    child = process(root, 200, [at("with first", "take_it_twice")])

    found = culprit(root, parent, child)

    assert where(found) == ("app/waits.py", LINE["with first"], "take_it_twice")
    assert found is not None and found.pid == 200
    assert found.reason == "waiting for a lock (acquire): `with first:`"


def test_the_search_goes_through_a_process_without_python_stacks(root: Path) -> None:
    """pytest → sh -c '...' → python helper.py: the shell has no stacks; its child is looked at."""
    parent = process(root, 100, WAITS_FOR_CHILD, children=[200])
    shell = process(root, 200, None, children=[300])
    helper = process(root, 300, [at("sleep", "serve")])

    found = culprit(root, parent, shell, helper)

    assert found is not None and (found.pid, found.function, found.reason) == (
        300, "serve", "sleeping")


@pytest.mark.parametrize(("syscall", "expected_pid"), [
    kernel_case("the child the kernel names comes first", (61, (300, 0)), 300),
    case("otherwise the children in pid order", None, 200),
    kernel_case("a named pid that is not a child is ignored", (61, (999, 0)), 200),
])
def test_which_child_is_searched_first(root: Path, syscall: tuple[int, tuple[int, ...]] | None,
                                       expected_pid: int) -> None:
    parent = process(root, 100, WAITS_FOR_CHILD, children=[300, 200], syscall=syscall)
    first = process(root, 200, [at("sleep", "first_child")])
    second = process(root, 300, [at("sleep", "second_child")])

    found = culprit(root, parent, first, second)

    assert found is not None and found.pid == expected_pid


@pytest.mark.parametrize("child", [
    pytest.param("library only", id="a child with no project frame"),
    pytest.param("gone", id="a child that exited before the dump"),
    pytest.param("loop", id="a child listing its parent as its own child"),
])
def test_the_parent_is_the_culprit_when_no_child_explains_the_wait(root: Path,
                                                                   child: str) -> None:
    parent = process(root, 100, WAITS_FOR_CHILD, children=[200])
    views = [parent]
    if child == "library only":
        views.append(process(root, 200, [("site:gunicorn/arbiter.py", 357, "sleep")]))
    elif child == "loop":
        views.append(process(root, 200, None, children=[100]))

    found = culprit(root, *views)

    assert where(found) == ("tests/test_api.py", 12, "test_reply")
    assert found is not None and found.pid == 100
    assert found.reason == "waiting for a child process"


def test_a_process_that_waits_for_nothing_is_not_searched_below(root: Path) -> None:
    parent = process(root, 100, [at("sleep", "nap")], children=[200])
    child = process(root, 200, [at("with first", "take_it_twice")])

    found = culprit(root, parent, child)

    assert found is not None and (found.pid, found.function) == (100, "nap")


def test_a_root_with_only_library_frames_is_searched_below(root: Path) -> None:
    """pytest's own main thread in xdist's loop: the worker process below holds the test."""
    controller = process(root, 100, [("site:execnet/gateway_base.py", 534, "_wait")],
                         children=[200])
    worker = process(root, 200, [at("recv", "ask_the_server")])

    found = culprit(root, controller, worker)

    assert found is not None and (found.pid, found.function) == (200, "ask_the_server")


@pytest.mark.parametrize(("views", "stuck"), [
    pytest.param([(100, None, [])], 100, id="the stuck process has no stacks and no children"),
    pytest.param([(100, [TEST_FRAME], [])], 999, id="the stuck pid is not in the tree"),
    pytest.param([(100, None, [200]), (200, [("stdlib:time.py", 1, "x")], [])], 100,
                 id="nothing of the user's anywhere below"),
])
def test_no_culprit_is_found(root: Path, views: list[tuple[int, list[Spec] | None, list[int]]],
                             stuck: int) -> None:
    tree = [process(root, pid, main, children=children) for pid, main, children in views]

    assert culprit(root, *tree, stuck=stuck) is None


# -- following a join into other threads; lock-order deadlocks ---------------------------------

JOINS = [("stdlib:threading.py", 1149, "_wait_for_tstate_lock"),
         ("stdlib:threading.py", 1119, "join"), TEST_FRAME]


def test_a_join_names_the_thread_it_waits_for(root: Path) -> None:
    view = process(root, 100, JOINS, threads=[[at("recv", "fetch")]])

    found = culprit(root, view)

    assert found is not None and (found.function, found.reason) == ("fetch", NO_PEER)


def test_a_join_on_threads_with_no_project_frame_blames_the_joiner(root: Path) -> None:
    view = process(root, 100, JOINS, threads=[[("stdlib:selectors.py", 468, "select"),
                                               ("site:urllib3/poolmanager.py", 1, "run")]])

    found = culprit(root, view)

    assert where(found) == ("tests/test_api.py", 12, "test_reply")
    assert found is not None and found.reason == "waiting for a thread to finish (join)"


def test_a_main_thread_without_project_frames_looks_at_the_other_threads(root: Path) -> None:
    view = process(root, 100, [("stdlib:threading.py", 1590, "_shutdown")],
                   threads=[[at("sleep", "poll_forever")]])

    found = culprit(root, view)

    assert found is not None and (found.function, found.reason) == ("poll_forever", "sleeping")


def test_two_threads_taking_two_locks_in_opposite_order_is_named_a_deadlock(root: Path) -> None:
    view = process(root, 100, JOINS, threads=[[at("with second", "a_then_b")],
                                              [at("with first", "b_then_a")]])

    found = culprit(root, view)

    assert found is not None and found.function == "a_then_b"  # the first one listed
    assert found.reason == (
        "waiting for a lock (acquire): `with second:` — another thread waits for a lock at "
        f"app/waits.py:{LINE['with first']} in b_then_a: a lock-order deadlock")


def test_a_thread_waiting_for_a_lock_is_preferred_and_alone_is_no_deadlock(root: Path) -> None:
    view = process(root, 100, JOINS, threads=[[at("sleep", "nap")],
                                              [at("acquire", "take")]])

    found = culprit(root, view)

    assert found is not None and found.function == "take"
    assert found.reason == "waiting for a lock (acquire): `lock.acquire()`"


def test_a_deadlock_of_many_threads_names_two_others(root: Path) -> None:
    view = process(root, 100, JOINS, threads=[[at("with first", "one")],
                                              [at("with second", "two")],
                                              [at("with third", "three")],
                                              [at("acquire", "four")]])

    found = culprit(root, view)

    assert found is not None and found.function == "one"
    reason = found.reason or ""
    assert "in two; app/waits.py:" in reason and "in three: a lock-order deadlock" in reason
    assert "four" not in reason


# -- deadlock cycles among waits whose holders are known ---------------------------------------


def test_a_cycle_of_rlocks_is_a_deadlock_named_at_both_lines(root: Path) -> None:
    view = process(root, 100, JOINS, threads=[[at("with second", "a_then_b")],
                                              [at("with first", "b_then_a")]])
    view.waits = [Wait(1, "MainThread", 2, "one", "join"),
                  Wait(2, "one", 3, "two", "the RLock `second`"),
                  Wait(3, "two", 2, "one", "the RLock `first`")]

    found = culprit(root, view)

    assert found is not None and found.function == "a_then_b"
    assert found.reason == (
        f"deadlock: thread 'one' waits at app/waits.py:{LINE['with second']} (`with second:`)"
        " for the RLock `second`, which thread 'two' holds; thread 'two' waits at"
        f" app/waits.py:{LINE['with first']} (`with first:`) for the RLock `first`, which"
        " thread 'one' holds")


def test_waits_that_end_at_a_thread_waiting_for_nothing_are_no_deadlock(root: Path) -> None:
    view = process(root, 100, JOINS, threads=[[at("recv", "fetch")]])
    view.waits = [Wait(1, "MainThread", 2, "one", "join")]

    found = culprit(root, view)

    assert found is not None and (found.function, found.reason) == ("fetch", NO_PEER)


@pytest.mark.parametrize(("line", "code"), [
    ("worker.join()  # returns at once", "worker.join()"),
    ("text = '# not a comment'", "text = '# not a comment'"),
    ("call(first,  # the rest on the next line", "call(first,"),
    ("with lock:", "with lock:"),
])
def test_a_quoted_source_line_is_its_code_without_the_comment(line: str, code: str) -> None:
    assert code_only(line) == code


def test_the_dump_handler_names_the_holder_of_an_rlock_a_thread_waits_for() -> None:
    lock, ready = threading.RLock(), threading.Event()

    def wait_for(lock: Any) -> None:
        ready.set()
        with lock:
            pass

    with lock:
        waiter = threading.Thread(target=wait_for, args=(lock,), name="waiter")
        waiter.start()
        ready.wait()
        text = _tiergate_waits.describe(sys._current_frames(), {})
    waiter.join()

    main = threading.main_thread()
    assert parse_waits("Thread 0x1 (most recent call first):\n" + text) == [
        Wait(waiter.ident or 0, "waiter", main.ident or 0, main.name, "the RLock `lock`")]


# -- what py-spy adds -----------------------------------------------------------------------

PY_SPY = """\
Process 4242: python -m pytest
Python v3.11.7 (/usr/bin/python3.11)

Thread 4242 (active+gil): "MainThread"
    regex_loop (libpython3.11.so)
    search (/p/app/rx.py:8)
    test_regex (/p/tests/test_rx.py:4)
Thread 4243 (idle): "Thread-1"
    wait (/usr/lib/python3.11/threading.py:320)
"""


def test_py_spy_output_gives_the_main_thread_holding_the_gil_and_its_python_frames() -> None:
    spied = parse_py_spy(PY_SPY, 4242)

    assert spied.main_holds_gil
    main = next(t for t in spied.threads if t.main)
    assert main.frames == (Frame("/p/app/rx.py", 8, "search"),
                           Frame("/p/tests/test_rx.py", 4, "test_regex"))
    assert [t.main for t in spied.threads] == [True, False]


# -- asyncio: an idle event loop is explained by its tasks ------------------------------------

LOOP_THREAD = 0x7F3D86A2DB80


def loop_text(root: Path, *, busy: bool = False, thread: int = LOOP_THREAD,
              label: str = "Current thread") -> str:
    """A thread that runs an event loop, as faulthandler writes it: in select under
    run_forever, or (busy) inside a callback of the project's."""
    top = (f'  File "{root}/app/handlers.py", line 7 in on_message\n'
           f'  File "{STDLIB}/asyncio/events.py", line 80 in _run\n' if busy else
           f'  File "{STDLIB}/selectors.py", line 468 in select\n')
    return (f"{label} 0x{thread:016x} (most recent call first):\n{top}"
            f'  File "{STDLIB}/asyncio/base_events.py", line 1884 in _run_once\n'
            f'  File "{STDLIB}/asyncio/base_events.py", line 607 in run_forever\n'
            f'  File "{STDLIB}/asyncio/base_events.py", line 640 in run_until_complete\n'
            f'  File "{STDLIB}/asyncio/runners.py", line 190 in run\n'
            f'  File "{root}/tests/test_api.py", line 12 in test_reply\n')


def tasks_text(root: Path, *tasks: tuple[str, str, list[Spec]],
               thread: int = LOOP_THREAD) -> str:
    """The section the dump handler appends: (task line after its name, what it awaits, its
    chain innermost first)."""
    out = [f"asyncio loop 0x7f00 in thread 0x{thread:016x}, {len(tasks)} task(s)"
           " (most recent await first):"]
    for head, awaits, chain in tasks:
        out.append(f"  Task {head} — {awaits}")
        out += [f'    File "{frame(root, s).path}", line {s[1]} in {s[2]}' for s in chain]
    return "\n".join(out) + "\n"


def loop_process(root: Path, text: str) -> ProcessView:
    return ProcessView(pid=100, threads=parse_faulthandler(text), loops=parse_asyncio(text))


ASK: Spec = ("project:app/client.py", 30, "ask")
SLEEPS: Spec = ("stdlib:asyncio/tasks.py", 649, "sleep")
MAIN_TASK = "'Task-1' (awaited by run_until_complete)"

ASYNC_CASES = [
    case("the test's task, at its innermost project frame",
         [(MAIN_TASK, "awaits a Future nobody completes",
           [("project:app/client.py", 41, "wait_for_reply"), ASK])], {},
         ("app/client.py", 41, "wait_for_reply",
          "awaits a Future nobody completes, in asyncio task 'Task-1'")),
    case("the test's task is chosen, not the first one listed",
         [("'Task-0'", "sleeping in asyncio.sleep(3600)",
           [SLEEPS, ("project:app/bg.py", 3, "nap")]),
          (MAIN_TASK, "awaits a read from a silent peer 127.0.0.1:5432", [ASK])], {},
         ("app/client.py", 30, "ask",
          "awaits a read from a silent peer 127.0.0.1:5432, in asyncio task 'Task-1'")),
    case("a task awaited by the test's task is followed",
         [(MAIN_TASK, "awaits task 'worker'", [ASK]),
          ("'worker'", "awaits Lock held by task 'Task-3'",
           [("stdlib:asyncio/locks.py", 114, "acquire"), ("project:app/jobs.py", 9, "run")])], {},
         ("app/jobs.py", 9, "run", "awaits Lock held by task 'Task-3', in asyncio task 'worker'")),
    case("an awaited task with no project frame: the one that awaits it",
         [(MAIN_TASK, "awaits gather: task 'lib' of 1 pending", [ASK]),
          ("'lib'", "sleeping in asyncio.sleep(60)", [SLEEPS, ("site:aiohttp/client.py", 5, "x")])],
         {}, ("app/client.py", 30, "ask",
              "awaits gather: task 'lib' of 1 pending, in asyncio task 'Task-1'")),
    case("without run_until_complete, the first task with a project frame",
         [("'Task-1'", "awaits a Future nobody completes", [("stdlib:asyncio/queues.py", 1, "x")]),
          ("'Task-2'", "sleeping in asyncio.sleep(5)", [SLEEPS, ("project:app/bg.py", 3, "nap")])],
         {}, ("app/bg.py", 3, "nap", "sleeping in asyncio.sleep(5), in asyncio task 'Task-2'")),
    case("a runner's task in a library: the task that runs the test (anyio's plugin)",
         [(MAIN_TASK, "awaits a Future nobody completes",
           [("site:anyio/_backends/_asyncio.py", 2504, "_call_in_runner_task")]),
          ("'Task-2'", "awaits an Event nobody sets",
           [("stdlib:asyncio/locks.py", 213, "wait"),
            ("project:tests/test_api.py", 13, "ready"),
            ("site:anyio/_backends/_asyncio.py", 2470, "_run_tests_and_fixtures")])], {},
         ("tests/test_api.py", 13, "ready",
          "awaits an Event nobody sets, in asyncio task 'Task-2'")),
    case("a loop running a callback: the thread's own frame",
         [(MAIN_TASK, "awaits a Future nobody completes", [ASK])], {"busy": True},
         ("app/handlers.py", 7, "on_message", None)),
    case("tasks of a loop in another thread are not this thread's",
         [(MAIN_TASK, "awaits a Future nobody completes", [ASK])], {"elsewhere": True},
         ("tests/test_api.py", 12, "test_reply", "waiting in select/poll")),
]


@pytest.mark.parametrize(("tasks", "how", "expected"), ASYNC_CASES)
def test_an_idle_event_loop_is_explained_by_its_tasks(
        root: Path, tasks: list[tuple[str, str, list[Spec]]], how: dict[str, bool],
        expected: tuple[str, int, str, str | None]) -> None:
    section = tasks_text(root, *tasks, thread=0x1234 if how.get("elsewhere") else LOOP_THREAD)
    view = loop_process(root, loop_text(root, busy=how.get("busy", False)) + section)

    found = culprit(root, view)

    assert found is not None and (*where(found), found.reason) == expected  # type: ignore[misc]


def test_a_joined_thread_running_an_idle_loop_is_explained_by_its_tasks(root: Path) -> None:
    joins = "".join(f'  File "{frame(root, s).path}", line {s[1]} in {s[2]}\n' for s in JOINS)
    text = (loop_text(root, thread=0x22, label="Thread") + f"Current thread 0x{0x11:016x}"
            f" (most recent call first):\n{joins}"
            + tasks_text(root, (MAIN_TASK, "awaits an Event nobody sets", [ASK]), thread=0x22))

    found = culprit(root, loop_process(root, text))

    assert found is not None and (found.function, found.reason) == (
        "ask", "awaits an Event nobody sets, in asyncio task 'Task-1'")


def test_task_frames_are_not_read_as_frames_of_the_last_thread(root: Path) -> None:
    section = tasks_text(root, (MAIN_TASK, "awaits a Future nobody completes", [ASK]))
    loops = parse_asyncio(section + loop_text(root) + section)
    threads = parse_faulthandler(loop_text(root) + section)

    assert [f.function for f in threads[0].frames][-1] == "test_reply"
    assert len(loops) == 1, "the section left before the threads, by a late handler, is skipped"
    assert loops[0].tasks[0].main and loops[0].tasks[0].frames[0].function == "ask"


# -- helpers the standard library starts are never culprits ----------------------------------

TRACKER = [("stdlib:multiprocessing/resource_tracker.py", 227, "main"), ("<string>", 1, "<module>")]
CONSUMER = [("stdlib:multiprocessing/queues.py", 103, "get"), ("project:app/workers.py", 6,
                                                                  "consume"),
            ("stdlib:multiprocessing/process.py", 108, "run"),
            ("stdlib:multiprocessing/process.py", 314, "_bootstrap")]
JOINS_CHILD = [("stdlib:multiprocessing/popen_fork.py", 27, "poll"),
               ("stdlib:multiprocessing/process.py", 149, "join"), TEST_FRAME]


@pytest.mark.parametrize(("helper", "command"), [
    case("the resource tracker, by its frames", TRACKER, ""),
    case("the resource tracker, by its command line, without stacks", None,
         "python -B -c from multiprocessing.resource_tracker import main;main(17)"),
    case("a manager's server", [("stdlib:multiprocessing/managers.py", 180, "serve_forever"),
                                ("stdlib:multiprocessing/process.py", 314, "_bootstrap"),
                                ("<string>", 1, "<module>")], ""),
])
def test_a_standard_library_helper_is_looked_past(root: Path, helper: list[Spec] | None,
                                                  command: str) -> None:
    parent = process(root, 100, JOINS_CHILD, children=[150, 200])
    tracker = process(root, 150, helper, command=command)
    child = process(root, 200, CONSUMER)

    found = culprit(root, parent, tracker, child)

    assert found is not None and (found.pid, found.function, found.reason) == (
        200, "consume", "waiting on a queue")


def test_a_fork_servers_child_is_searched_and_is_no_helper(root: Path) -> None:
    """A fork server's children keep its command line; their frames say they run a process."""
    command = "python -c from multiprocessing.forkserver import main; main(6, 8)"
    server_frames = [("stdlib:selectors.py", 415, "select"),
                     ("stdlib:multiprocessing/forkserver.py", 236, "main")]
    parent = process(root, 100, JOINS_CHILD, children=[150])
    server = process(root, 150, server_frames, children=[200], command=command)
    child = process(root, 200, [*CONSUMER, ("stdlib:multiprocessing/forkserver.py", 313,
                                            "_serve_one")], command=command)

    found = culprit(root, parent, server, child)

    assert found is not None and (found.pid, found.function) == (200, "consume")
    assert stdlib_helper(server) == "multiprocessing's fork server"
    assert stdlib_helper(child) is None


CONFTEST = """import time

import pytest


@pytest.fixture
def db_session():
    yield "db"
    time.sleep(60)


@pytest.fixture(scope="session", name="server")
def start_server():
    time.sleep(60)
    yield "server"
"""


@pytest.mark.parametrize(("specs", "words"), [
    ([("project:conftest.py", 9, "db_session"),
      ("site:_pytest/fixtures.py", 1, "_teardown_yield_fixture"),
      ("site:_pytest/fixtures.py", 2, "finish"), TEST_FRAME],
     "in the teardown of fixture `db_session` (conftest.py:7), used by test_x"),
    ([("project:conftest.py", 14, "start_server"),
      ("site:_pytest/fixtures.py", 3, "call_fixture_func"), TEST_FRAME],
     "in the setup of session fixture `server` (conftest.py:13), first used by test_x"),
], ids=["teardown", "session setup"])
def test_the_fixture_in_flight_is_read_from_the_stacks_text(root: Path, specs: list[Spec],
                                                             words: str) -> None:
    (root / "conftest.py").write_text(CONFTEST)

    fixture = fixture_on_stack(stack(root, specs, main=True), CodeFilter(root))

    assert fixture is not None and fixture_words(fixture, "test_x") == words


def test_a_test_outside_any_fixture_has_none_on_its_stack(root: Path) -> None:
    assert fixture_on_stack(stack(root, [at("sleep"), TEST_FRAME], main=True),
                            CodeFilter(root)) is None
