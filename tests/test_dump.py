"""The process-tree dump names the stuck function, in whichever process of the tree it is, with the
reason it is stuck; it never signals a process that did not register; it hides secrets.

Every scenario runs real processes under the start-up hook (or deliberately without it); each test
kills what it started, by pid, at the end. Waits are generous and nothing is timed: the machine is
shared.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tiergate.child import boot_env, is_registered, stacks_file
from tiergate.diagnose import dump as dump_module
from tiergate.diagnose.culprit import Socket
from tiergate.diagnose.dump import TreeDump, _py_spy, save_dump, take_tree_dump

_PATIENCE = 60.0  # seconds; generous, never an assertion about speed


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + _PATIENCE
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"gave up waiting for {what}")


def written(path: Path) -> Callable[[], bool]:
    """True once *path* has its content: write_text makes the file, empty, before it writes."""
    return lambda: path.exists() and path.stat().st_size > 0


def main_state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat[stat.rfind(")") + 2:].split()[0]


def settled(pid: int, states: str = "SD") -> Callable[[], bool]:
    """True once the main thread has been in one of *states* for a few looks in a row."""
    seen: list[str] = []

    def check() -> bool:
        seen.append(main_state(pid))
        return len(seen) >= 4 and all(s in states for s in seen[-4:])

    return check


class Processes:
    """Starts scripts of a test project under (or without) the start-up hook; kills them all."""

    def __init__(self, project: Path, run_dir: Path) -> None:
        self.project = project
        self.run_dir = run_dir
        self.started: list[subprocess.Popen[bytes]] = []
        self.adopted: list[tuple[int, str]] = []

    def env(self, *, hooked: bool = True) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "TIERGATE_RUN_DIR", "TIERGATE_NETWORK")}
        if hooked:
            env.update(boot_env(self.run_dir, env))
        return env

    def script(self, name: str, source: str) -> Path:
        path = self.project / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        return path

    def start(self, name: str, source: str, *args: str, hooked: bool = True,
              env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], Path]:
        script = self.script(name, source)
        marker = self.project / f"{name}.ready"
        proc = subprocess.Popen(
            [sys.executable, str(script), str(marker), *args], cwd=self.project,
            env=env or self.env(hooked=hooked), stdin=subprocess.DEVNULL)
        self.started.append(proc)
        wait_until(written(marker), f"{name} to get ready")  # some say who they started
        return proc, marker

    def adopt(self, pid: int, script: str) -> None:
        """A process one of ours started and may leave behind: killed at the end, by pid."""
        self.adopted.append((pid, script))

    def kill_all(self) -> None:
        for pid, script in self.adopted:
            try:
                orphan = psutil.Process(pid)
                if script in " ".join(orphan.cmdline()):  # still ours, not a reused pid
                    orphan.kill()
            except psutil.NoSuchProcess:
                pass
        for proc in self.started:
            try:
                family = [*psutil.Process(proc.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                family = []
            for member in family:  # started by our scripts, hence by this test
                try:
                    member.kill()
                except psutil.NoSuchProcess:
                    pass
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    return path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture
def processes(project: Path, run_dir: Path) -> Iterator[Processes]:
    started = Processes(project, run_dir)
    yield started
    started.kill_all()


def dump_of(processes: Processes, root: int, **kwargs: object) -> TreeDump:
    return take_tree_dump(root, run_dir=processes.run_dir, project_root=processes.project,
                          reason="test", **kwargs)  # type: ignore[arg-type]


STUCK_RECV = """
    import pathlib, socket, sys

    def wait_for_reply(port):
        client = socket.create_connection(("127.0.0.1", port))
        pathlib.Path(sys.argv[1]).write_text("ready")
        return client.recv(1024)

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    wait_for_reply(server.getsockname()[1])
"""


def test_recv_on_a_socket_whose_peer_never_answers(processes: Processes) -> None:
    proc, _ = processes.start("stuck_recv", STUCK_RECV)
    wait_until(settled(proc.pid), "the recv to block")

    dump = dump_of(processes, proc.pid)

    assert dump.culprit is not None, dump.text
    assert (dump.culprit.path, dump.culprit.function) == ("stuck_recv.py", "wait_for_reply")
    assert dump.culprit.line == 7
    assert "recv" in (dump.culprit.reason or "")
    assert "127.0.0.1" in (dump.culprit.reason or "")
    assert "peer in this same process" in (dump.culprit.reason or "")  # its own listener
    assert dump.text.startswith("culprit: stuck_recv.py:7 in wait_for_reply — ")
    assert "ESTABLISHED" in dump.text and "LISTEN" in dump.text
    assert dump.processes == 1


SILENT_SERVER = """
    import pathlib, socket, sys, threading

    lock = threading.Lock()

    def serve_one(server):
        conn, _ = server.accept()
        pathlib.Path(sys.argv[1] + ".accepted").write_text("yes")
        with lock:
            with lock:  # the bug: it never answers
                conn.sendall(b"hello")

    server = socket.create_server(("127.0.0.1", 0))
    pathlib.Path(sys.argv[1] + ".port").write_text(str(server.getsockname()[1]))
    pathlib.Path(sys.argv[1]).write_text("ready")
    serve_one(server)
"""

CLIENT = """
    import pathlib, socket, sys

    def ask_the_server(port):
        client = socket.create_connection(("127.0.0.1", port))
        pathlib.Path(sys.argv[1]).write_text("ready")
        return client.recv(1024)

    ask_the_server(int(pathlib.Path(sys.argv[2]).read_text()))
"""


def test_a_server_outside_the_tree_is_named_and_its_stacks_are_in_the_dump(
    processes: Processes,
) -> None:
    """The client is the tree; the server is a process of ours outside it (a daemon a test
    started): the culprit names it as the peer, and its deadlock is in the dump."""
    server, server_ready = processes.start("silent_server", SILENT_SERVER)
    client, _ = processes.start("client", CLIENT, f"{server_ready}.port")
    wait_until(Path(f"{server_ready}.accepted").exists, "the server to accept")
    wait_until(settled(client.pid), "the recv to block")
    wait_until(settled(server.pid), "the server to deadlock")

    dump = dump_of(processes, client.pid)

    assert dump.culprit is not None and dump.culprit.function == "ask_the_server", dump.text
    assert dump.culprit.pid == client.pid
    reason = dump.culprit.reason or ""
    assert f"peer pid {server.pid} (" in reason and "not in the dumped tree" in reason, reason
    assert "silent_server.py" in reason
    assert dump.processes == 2
    assert f"  {server.pid} [sleeping, registered]" in dump.text
    assert f"(peer of {client.pid})" in dump.text
    server_part = dump.text.split(f"process {server.pid} (")[1]
    assert "serve_one" in server_part and "silent_server.py" in server_part
    assert f"not in the dumped tree, the peer of a socket of {client.pid}" in server_part


def test_a_peer_outside_the_tree_that_did_not_register_is_named_not_signalled(
    processes: Processes,
) -> None:
    server, server_ready = processes.start("silent_server", SILENT_SERVER, hooked=False)
    client, _ = processes.start("client", CLIENT, f"{server_ready}.port")
    wait_until(Path(f"{server_ready}.accepted").exists, "the server to accept")
    wait_until(settled(client.pid), "the recv to block")

    dump = dump_of(processes, client.pid)

    assert dump.culprit is not None
    assert f"peer pid {server.pid} (" in (dump.culprit.reason or "")
    assert dump.processes == 1  # named on the socket, never signalled or dumped
    assert f"process {server.pid} (" not in dump.text
    assert server.poll() is None


SHARED_LISTENER = """
    import os, pathlib, socket, sys, time

    server = socket.create_server(("127.0.0.1", 0))
    if os.fork() == 0:  # a pre-fork server's worker: holds the same listener, serves nothing
        time.sleep(60)
        os._exit(0)

    def ask_myself():
        client = socket.create_connection(server.getsockname())
        pathlib.Path(sys.argv[1]).write_text("ready")
        return client.recv(1024)

    ask_myself()
"""

MAPPED_SERVER = """
    import pathlib, socket, sys, time

    server = socket.socket(socket.AF_INET6)
    server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    server.bind(("::ffff:127.0.0.1", 0))  # IPv4 peers show as ::ffff:127.0.0.1 here
    server.listen()
    pathlib.Path(sys.argv[1] + ".port").write_text(str(server.getsockname()[1]))
    pathlib.Path(sys.argv[1]).write_text("ready")
    conn, _ = server.accept()
    pathlib.Path(sys.argv[1] + ".accepted").write_text("yes")
    time.sleep(60)
"""


def test_a_listener_shared_with_a_forked_child_names_both(processes: Processes) -> None:
    proc, _ = processes.start("shared_listener", SHARED_LISTENER)
    wait_until(settled(proc.pid), "the recv to block")
    child = psutil.Process(proc.pid).children()[0].pid

    dump = dump_of(processes, proc.pid)

    reason = dump.culprit.reason if dump.culprit else ""
    assert f"peer shared by pids {', '.join(map(str, sorted([proc.pid, child])))}" in (reason or "")


def test_an_ipv4_mapped_server_end_is_found(processes: Processes) -> None:
    server, ready = processes.start("mapped_server", MAPPED_SERVER)
    client, _ = processes.start("client", CLIENT, f"{ready}.port")
    wait_until(Path(f"{ready}.accepted").exists, "the server to accept")
    wait_until(settled(client.pid), "the recv to block")

    dump = dump_of(processes, client.pid)

    interpreter = Path(sys.executable).name  # python, python3, python3.12...: as it was started
    reason = (dump.culprit.reason if dump.culprit else "") or ""
    assert f"peer pid {server.pid} ({interpreter} mapped_server.py" in reason, dump.text


LOCK_ORDER = """
    import pathlib, sys, threading

    a, b = threading.Lock(), threading.Lock()
    both_hold_one = threading.Barrier(2)

    def a_then_b():
        with a:
            both_hold_one.wait()
            with b:
                pass

    def b_then_a():
        with b:
            both_hold_one.wait()
            with a:
                pass

    workers = [threading.Thread(target=a_then_b), threading.Thread(target=b_then_a)]
    for worker in workers:
        worker.start()
    pathlib.Path(sys.argv[1]).write_text("ready")
    for worker in workers:
        worker.join()
"""


def test_two_thread_lock_order_deadlock(processes: Processes) -> None:
    proc, _ = processes.start("lock_order", LOCK_ORDER)
    wait_until(settled(proc.pid), "the deadlock")

    dump = dump_of(processes, proc.pid)

    assert dump.culprit is not None, dump.text
    assert dump.culprit.function in {"a_then_b", "b_then_a"}
    reason = dump.culprit.reason or ""
    assert "lock" in reason and "acquire" in reason
    assert "deadlock" in reason


CHILD_DEADLOCK = """
    import pathlib, sys, threading

    lock = threading.Lock()

    def take_it_twice():
        with lock:
            pathlib.Path(sys.argv[1]).write_text("ready")
            with lock:
                pass

    take_it_twice()
"""

PARENT_WAITS = """
    import pathlib, subprocess, sys

    def run_helper():
        helper = subprocess.Popen([sys.executable, "child_deadlock.py", sys.argv[1] + ".child"])
        pathlib.Path(sys.argv[1]).write_text(str(helper.pid))
        helper.wait()

    run_helper()
"""


def test_parent_waiting_on_a_deadlocked_child_names_the_child(processes: Processes) -> None:
    processes.script("child_deadlock", CHILD_DEADLOCK)
    proc, marker = processes.start("parent_waits", PARENT_WAITS)
    child = int(marker.read_text())
    wait_until(Path(f"{marker}.child").exists, "the child to take its lock")
    wait_until(settled(child), "the child to deadlock")

    dump = dump_of(processes, proc.pid)

    assert dump.culprit is not None, dump.text
    assert dump.culprit.pid == child
    assert (dump.culprit.path, dump.culprit.function) == ("child_deadlock.py", "take_it_twice")
    assert "lock" in (dump.culprit.reason or "")
    assert dump.processes == 2


BUSY_IN_C = """
    import pathlib, sys

    def add_forever():
        pathlib.Path(sys.argv[1]).write_text("ready")
        return sum(range(10**13))

    add_forever()
"""


def test_busy_in_c_holding_the_gil(processes: Processes) -> None:
    proc, _ = processes.start("busy", BUSY_IN_C)
    wait_until(settled(proc.pid, "R"), "the loop to run")

    dump = dump_of(processes, proc.pid)

    assert dump.culprit is not None, dump.text
    assert dump.culprit.function == "add_forever"
    assert "busy in C" in (dump.culprit.reason or ""), dump.text


SOFT_TIMEOUT = """
    import json, os, pathlib, signal, socket, subprocess, sys, time
    from tiergate.diagnose.dump import take_tree_dump

    out = pathlib.Path(sys.argv[2])

    def on_timeout(signum, frame):  # what the soft timeout does, in the process itself
        dump = take_tree_dump(os.getpid(), run_dir=pathlib.Path(os.environ["TIERGATE_RUN_DIR"]),
                              project_root=pathlib.Path.cwd(), reason="soft timeout")
        culprit = dump.culprit
        out.write_text(json.dumps({"text": dump.text, "culprit": culprit and culprit.__dict__}))
        os._exit(0)

    def wait_for_reply(port):
        client = socket.create_connection(("127.0.0.1", port))
        return client.recv(1024)

    def run_helper():
        helper = subprocess.Popen([sys.executable, "child_deadlock.py", sys.argv[1] + ".child"])
        pathlib.Path(sys.argv[1] + ".pid").write_text(str(helper.pid))
        while not pathlib.Path(sys.argv[1] + ".child").exists():  # the helper holds its lock
            time.sleep(0.01)
        asleep = 0
        while asleep < 4:  # ... and then waits for it: asleep for a few looks in a row
            stat = pathlib.Path(f"/proc/{helper.pid}/stat").read_text()
            asleep = asleep + 1 if stat[stat.rfind(")") + 2] == "S" else 0
            time.sleep(0.05)
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        return helper.wait()

    signal.signal(signal.SIGALRM, on_timeout)
    pathlib.Path(sys.argv[1]).write_text("ready")
    if sys.argv[3] == "recv":
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        signal.setitimer(signal.ITIMER_REAL, 2.0)
        wait_for_reply(server.getsockname()[1])
    else:
        run_helper()
"""


@pytest.mark.parametrize("case", ["recv", "child"])
def test_in_process_dump_from_a_signal_handler(processes: Processes, project: Path,
                                               case: str) -> None:
    processes.script("child_deadlock", CHILD_DEADLOCK)
    out = project / "dump.json"
    proc, marker = processes.start("soft_timeout", SOFT_TIMEOUT, str(out), case)
    helper = Path(f"{marker}.pid")
    if case == "child":  # the script exits from its handler and leaves the helper to us
        wait_until(written(helper), "the helper to start")
        processes.adopt(int(helper.read_text()), "child_deadlock.py")
    proc.wait(timeout=_PATIENCE)

    result = json.loads(out.read_text())
    culprit = result["culprit"]
    assert culprit is not None, result["text"]
    if case == "recv":
        assert (culprit["function"], culprit["pid"]) == ("wait_for_reply", proc.pid)
        assert "recv" in culprit["reason"]
    else:
        assert culprit["function"] == "take_it_twice"
        assert culprit["pid"] != proc.pid
        assert "lock" in culprit["reason"]
    assert "on_timeout" not in result["text"]  # the handler's own frames are left out


TREE = """
    import multiprocessing, pathlib, subprocess, sys, time

    def idle_in_child():
        time.sleep(600)

    if __name__ == "__main__":
        child = multiprocessing.get_context(sys.argv[2]).Process(target=idle_in_child)
        child.start()
        command = f'"{sys.executable}" -c "import time; time.sleep(600)"; true'
        shell = subprocess.Popen(["sh", "-c", command])
        pathlib.Path(sys.argv[1]).write_text(f"{child.pid} {shell.pid}")
        child.join()
"""


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_every_python_process_registers_with_its_own_file(processes: Processes,
                                                          method: str) -> None:
    proc, marker = processes.start("tree", TREE, method)
    child, shell = (int(pid) for pid in marker.read_text().split())

    def grandchild() -> int | None:
        below = psutil.Process(shell).children()
        return below[0].pid if below else None

    wait_until(lambda: grandchild() is not None, "the shell to start python")
    python_under_shell = grandchild()
    assert python_under_shell is not None
    for pid in (proc.pid, child, python_under_shell):
        wait_until(lambda pid=pid: is_registered(pid, processes.run_dir),  # type: ignore[misc]
                   f"{pid} to register")
    assert not is_registered(shell, processes.run_dir)  # sh is no Python process
    wait_until(settled(child), "the child to sleep")

    dump = dump_of(processes, proc.pid)

    child_file = stacks_file(child, processes.run_dir).read_text()
    parent_file = stacks_file(proc.pid, processes.run_dir).read_text()
    assert child_file.startswith(f"tiergate-stacks pid={child} ")
    assert "idle_in_child" in child_file
    assert "idle_in_child" not in parent_file
    assert f"pid={python_under_shell} " in stacks_file(python_under_shell,
                                                        processes.run_dir).read_text()
    assert psutil.pid_exists(shell)
    assert dump.processes >= 4
    assert "idle_in_child" in dump.text


UNHOOKED_PARENT = """
    import os, pathlib, subprocess, sys, time

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TIERGATE_RUN_DIR")}
    quiet = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env=env)
    # A process that registered and then became another program: its file stays, its handler goes.
    changed = subprocess.Popen([sys.executable, "-c",
        "import os, time; time.sleep(0.5); os.execv('/bin/sleep', ['sleep', '600'])"])
    pathlib.Path(sys.argv[1]).write_text(f"{quiet.pid} {changed.pid}")
    time.sleep(600)
"""


def test_a_process_that_did_not_register_is_never_signalled(processes: Processes) -> None:
    proc, marker = processes.start("unhooked", UNHOOKED_PARENT)
    quiet, changed = (int(pid) for pid in marker.read_text().split())
    wait_until(lambda: psutil.Process(changed).name() == "sleep", "the exec")
    wait_until(lambda: psutil.Process(quiet).status() == psutil.STATUS_SLEEPING, "the sleep")
    # A stale stacks file under the quiet process's pid must not fool the check either.
    stacks_file(quiet, processes.run_dir).write_text(
        f"tiergate-stacks pid={quiet} start=1 signal={signal.SIGRTMIN + 3}\n")
    assert stacks_file(changed, processes.run_dir).exists()

    assert not is_registered(quiet, processes.run_dir)
    assert not is_registered(changed, processes.run_dir)
    dump = dump_of(processes, proc.pid)

    assert psutil.Process(quiet).status() != psutil.STATUS_ZOMBIE
    assert psutil.Process(changed).status() != psutil.STATUS_ZOMBIE
    assert "did not register" in dump.text
    assert dump.processes == 3


@pytest.mark.skipif(_py_spy() is None, reason="py-spy is not installed")
def test_py_spy_reads_a_process_that_did_not_register(processes: Processes) -> None:
    proc, _ = processes.start("stuck_recv", STUCK_RECV, hooked=False)
    wait_until(settled(proc.pid), "the recv to block")

    # py-spy is the only source here; on a loaded machine it can take longer than the dump's
    # default second, and the dump returns as soon as it is done.
    dump = dump_of(processes, proc.pid, timeout=_PATIENCE)

    assert proc.poll() is None
    assert not stacks_file(proc.pid, processes.run_dir).exists()
    assert dump.culprit is not None, dump.text
    assert dump.culprit.function == "wait_for_reply"
    assert "recv" in (dump.culprit.reason or "")
    assert "did not register" in dump.text


REDACT = """
    import pathlib, sys, time
    pathlib.Path(sys.argv[1]).write_text("ready")
    time.sleep(600)
"""


def test_secrets_on_the_command_line_are_redacted(processes: Processes, tmp_path: Path) -> None:
    proc, _ = processes.start("with_secret", REDACT, "--password=hunter2-not-for-dumps")

    dump = dump_of(processes, proc.pid)
    relative = save_dump(tmp_path / "results", "test_x-0", dump)

    assert "hunter2-not-for-dumps" not in dump.text
    assert "--password=***" in dump.text
    assert relative == "dumps/test_x-0.txt"
    assert (tmp_path / "results" / relative).read_text() == dump.text


def test_without_py_spy_the_dump_says_what_is_missing(processes: Processes,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    proc, _ = processes.start("plain", REDACT)
    monkeypatch.setattr("tiergate.diagnose.dump._py_spy", lambda: None)

    dump = dump_of(processes, proc.pid)

    assert "py-spy is not installed" in dump.text


FAULTHANDLER_TEXT = """\
Thread 0x00007f0000000002 (most recent call first):
  File "/usr/lib/python3.11/threading.py", line 320 in wait
  File "/p/app/worker.py", line 12 in drain
  File "/usr/lib/python3.11/threading.py", line 1002 in _bootstrap

Current thread 0x00007f0000000001 (most recent call first):
  File "/p/app/main.py", line 40 in serve
  File "/p/app/main.py", line 50 in <module>
"""


def test_faulthandler_text_is_read_with_its_main_thread() -> None:
    from tiergate.diagnose.culprit import CodeFilter, Frame, parse_faulthandler

    threads = parse_faulthandler(FAULTHANDLER_TEXT)

    assert [t.main for t in threads] == [False, True]
    assert threads[1].frames[0] == Frame("/p/app/main.py", 40, "serve")
    code = CodeFilter(Path("/p"))
    assert code.is_project("/p/app/worker.py")
    assert not code.is_project("/p/.venv/lib/python3.11/site-packages/x.py")
    assert not code.is_project("/usr/lib/python3.11/threading.py")
    assert code.display("/p/app/main.py") == "app/main.py"


def test_a_wildcard_listener_is_the_peer_of_a_loopback_connection(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A server bound to 0.0.0.0 or :: (never opened here: tests bind loopback only), as the
    kernel's connection table gives it through psutil."""
    addr = collections.namedtuple("addr", "ip port")
    conn = collections.namedtuple("conn", "fd family type laddr raddr status pid")
    table = [conn(5, 10, 1, addr("::", 5432), (), "LISTEN", 4242),
             conn(6, 2, 1, addr("0.0.0.0", 6379), (), "LISTEN", 4343)]
    monkeypatch.setattr(dump_module.psutil, "net_connections", lambda kind: table)
    monkeypatch.setattr(dump_module.psutil, "Process", lambda pid: pid)
    monkeypatch.setattr(dump_module, "_snapshot", lambda pid, run_dir: dump_module._Process(
        pid, command=f"/usr/lib/server-{pid} --port 1"))
    client = dump_module._Process(100, sockets=[
        Socket(3, "tcp", "127.0.0.1:40000", "127.0.0.1:5432", "ESTABLISHED"),
        Socket(4, "tcp6", "::ffff:127.0.0.1:40001", "::ffff:127.0.0.1:6379", "ESTABLISHED"),
        Socket(7, "tcp", "127.0.0.1:40002", "127.0.0.1:9999", "SYN_SENT")])

    assert dump_module._peers([client], tmp_path) == []  # not registered here: named only

    assert [s.peer for s in client.sockets] == [
        "pid 4242 (server-4242 --port 1, not in the dumped tree)",
        "pid 4343 (server-4343 --port 1, not in the dumped tree)",
        ""]


def test_an_xdist_worker_is_labelled_and_its_command_line_is_whole(processes: Processes) -> None:
    long_argument = "--" + "-".join(["a-very-long-option"] * 12)  # past any cut at 120
    env = {**processes.env(), "PYTEST_XDIST_WORKER": "gw3"}
    proc, _ = processes.start("worker_like", STUCK_RECV, long_argument, env=env)

    dump = dump_of(processes, proc.pid)

    tree_line = next(line for line in dump.text.splitlines() if line.startswith(f"  {proc.pid} ["))
    assert ", xdist worker gw3]" in tree_line
    assert tree_line.rstrip().endswith(long_argument + "  <- culprit"), tree_line
    assert f"process {proc.pid} (parent {os.getpid()}, xdist worker gw3)" in dump.text


PY_SPY_SECTION = """Thread 10722 (idle): "MainThread"
    PyThread_acquire_lock_timed (libpython3.11.so.1.0)
    Thread.join (threading.py:1119)
    test_imports_deadlock (test_dl.py:2)
    pytest_pyfunc_call (_pytest/python.py:187)
    _multicall (pluggy/_execution.py:147)
    PluginManager._hookexec (pluggy/_manager.py:183)
    Function.runtest (_pytest/python.py:1798)
    <module> (pytest/__main__.py:9)
    _run_code (<frozen runpy>:88)
Thread 10734 (idle): "Thread-1"
    hook (pluggy/_hooks.py:1)
    wait (app.py:3)
"""


def test_py_spy_runs_of_pytest_frames_are_folded_to_one_line() -> None:
    folded = dump_module._fold_pytest(PY_SPY_SECTION.splitlines())

    assert folded == [
        'Thread 10722 (idle): "MainThread"',
        "    PyThread_acquire_lock_timed (libpython3.11.so.1.0)",
        "    Thread.join (threading.py:1119)",
        "    test_imports_deadlock (test_dl.py:2)",
        "    … 5 pytest/pluggy frames",
        "    _run_code (<frozen runpy>:88)",
        'Thread 10734 (idle): "Thread-1"',
        "    hook (pluggy/_hooks.py:1)",  # one alone is kept
        "    wait (app.py:3)",
    ]


STREAM_READER = """
    import pathlib, socket, sys

    def read_the_stream(port):
        client = socket.create_connection(("127.0.0.1", port))
        pathlib.Path(sys.argv[1]).write_text("ready")
        while True:
            client.recv(65536)

    read_the_stream(int(sys.argv[2]))
"""


def test_a_recv_while_data_flows_is_a_slow_stream_not_a_silent_peer(
        processes: Processes) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def stream() -> None:
        conn, _ = server.accept()
        with conn:
            while not stop.wait(0.002):  # a trickle, as a slow download sends
                conn.sendall(b"x" * 64)

    sender = threading.Thread(target=stream, daemon=True)
    sender.start()
    try:
        proc, _ = processes.start("stream_reader", STREAM_READER, str(server.getsockname()[1]))
        dump = dump_of(processes, proc.pid)
    finally:
        stop.set()
        sender.join()
        server.close()

    assert dump.culprit is not None and dump.culprit.function == "read_the_stream", dump.text
    reason = dump.culprit.reason or ""
    assert "data is flowing (" in reason and "a slow stream, not a silent peer" in reason, reason
    assert "no answer from the peer" not in reason


IMPORT_WAITER = """
    import pathlib, sys, threading

    here = pathlib.Path(__file__).parent
    (here / "slow_mod.py").write_text("open(__import__('sys').argv[2]).read()\\n")

    def load_slowly():
        import slow_mod  # noqa: F401  # blocked on the FIFO until the test opens it

    loader = threading.Thread(target=load_slowly)
    loader.start()
    while "slow_mod" not in sys.modules:  # the loader holds slow_mod's import lock from here
        pass
    pathlib.Path(sys.argv[1]).write_text("ready")
    import slow_mod  # noqa: F401,E402  # waits for the loader's import lock
    loader.join()
    print("imported")
"""


def test_a_dump_during_an_import_wait_names_the_holder_and_the_import_goes_on(
        processes: Processes, tmp_path: Path) -> None:
    """The dump handler imports its own module while the main thread waits for an import lock:
    before Python 3.12 that import rewrites the main thread's entry in importlib's table, and the
    waiting import would end in a KeyError, had the handler not put the entry back."""
    fifo = tmp_path / "release"
    os.mkfifo(fifo)
    script = processes.script("import_waiter", IMPORT_WAITER)
    marker = processes.project / "import_waiter.ready"
    proc = subprocess.Popen([sys.executable, str(script), str(marker), str(fifo)],
                            cwd=processes.project, env=processes.env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    processes.started.append(proc)
    wait_until(written(marker), "the loader to hold the import lock")
    wait_until(settled(proc.pid), "the main thread to wait for it")

    dump = dump_of(processes, proc.pid)
    with fifo.open("w"):
        pass  # the loader's read ends: its import, then the main thread's, can finish
    out, err = proc.communicate(timeout=60)

    assert "the import lock of module 'slow_mod'" in dump.text, dump.text
    assert (proc.returncode, out.strip(), b"KeyError" in err) == (0, b"imported", False), err
