"""The escalation ladder on the four hangs of issue 3, end to end: each gets a `timeout` finding
whose dump names the stuck function, the passing tests between them pass, nothing is left behind."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from supervised import findings, make_project, processes_running, results, run_tiergate

HANGS = """
import socket, subprocess, sys, threading, time

MARKER = "{marker}"


def wait_for_greeting(sock):
    return sock.recv(1024)


def test_recv_from_a_silent_peer():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = socket.create_connection(server.getsockname())
    wait_for_greeting(client)


def test_pass_1():
    pass


def transfer_a_to_b(a, b, both_hold_one):
    with a:
        both_hold_one.wait()
        with b:
            pass


def test_lock_order_deadlock():
    a, b, both_hold_one = threading.Lock(), threading.Lock(), threading.Barrier(2)
    one = threading.Thread(target=transfer_a_to_b, args=(a, b, both_hold_one), daemon=True)
    two = threading.Thread(target=transfer_a_to_b, args=(b, a, both_hold_one), daemon=True)
    one.start()
    two.start()
    one.join()
    two.join()


def test_pass_2():
    pass


def test_child_process_deadlocks():
    subprocess.run([sys.executable, "child_worker.py", MARKER], check=True)


def test_pass_3():
    pass


def test_busy_in_c_holding_the_gil():
    sum(range(10**13))


def test_pass_4():
    pass
"""

CHILD = """
import sys, threading

lock = threading.Lock()


def deadlock_on_own_lock():
    lock.acquire()
    lock.acquire()


deadlock_on_own_lock()
"""


@pytest.mark.parametrize("workers", ["1", "2"], ids=["no-xdist", "xdist"])
def test_four_hangs_are_explained_and_the_run_goes_on(tmp_path: Path, workers: str) -> None:
    marker = f"hang-{uuid.uuid4().hex}"
    project = make_project(
        tmp_path, {"test_hangs.py": HANGS.replace("{marker}", marker), "child_worker.py": CHILD}
    )
    proc = run_tiergate(
        project,
        "run",
        "--tier",
        "fast",
        "--test-timeout",
        "3s",
        "--grace",
        "2s",
        "--workers",
        workers,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    data = findings(project)
    assert data["counts"]["passed"] == 4, out
    assert data["counts"]["timeout"] == 4, out
    timeouts = {f["test"].split("::")[1]: f for f in data["findings"] if f["kind"] == "timeout"}
    assert set(timeouts) == {
        "test_recv_from_a_silent_peer",
        "test_lock_order_deadlock",
        "test_child_process_deadlocks",
        "test_busy_in_c_holding_the_gil",
    }
    culprit = {name: f.get("culprit", {}) for name, f in timeouts.items()}
    assert culprit["test_recv_from_a_silent_peer"]["function"] == "wait_for_greeting"
    assert "recv" in culprit["test_recv_from_a_silent_peer"].get("reason", "")
    assert culprit["test_lock_order_deadlock"]["function"] == "transfer_a_to_b"
    assert culprit["test_child_process_deadlocks"]["function"] == "deadlock_on_own_lock"
    assert culprit["test_child_process_deadlocks"]["path"].endswith("child_worker.py")
    assert culprit["test_busy_in_c_holding_the_gil"]["function"] == "test_busy_in_c_holding_the_gil"
    for name, finding in timeouts.items():
        dump = results(project) / finding["dump"]
        assert dump.is_file(), name
        assert culprit[name]["function"] in dump.read_text()[:2000], name  # culprit first
    junit = (results(project) / "junit.xml").read_text()
    assert junit.count('type="timeout"') == 4
    assert "deadlock_on_own_lock" in junit  # the child's stack, in system-err
    assert not processes_running(marker), "a stuck child outlived the run"


# -- issue 18: where in pytest's protocol, and why the soft rung could not act -----------------

FIXTURE_CONFTEST = """
import signal
import time

import pytest


@pytest.fixture
def db_session():
    yield "db"
    time.sleep(60)


@pytest.fixture(scope="session")
def server():
    time.sleep(60)
    yield "server"


@pytest.fixture
def stubborn_pool():
    yield "pool"
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)
"""

STUBBORN_HANGS = """
import re
import signal
import time


def test_teardown_hangs(db_session):
    pass


def test_session_setup_hangs(server):
    pass


def test_blocks_sigalrm_and_ignores_sigterm():
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)


def test_catastrophic_regex():
    re.match(r"(a+)+$", "a" * 40 + "b")


def test_pool_teardown_ignores_the_soft_rung(stubborn_pool):
    pass
"""


def test_fixture_hangs_and_stubborn_tests_say_where_and_why(tmp_path: Path) -> None:
    project = make_project(
        tmp_path, {"conftest.py": FIXTURE_CONFTEST, "test_stubborn.py": STUBBORN_HANGS})
    proc = run_tiergate(project, "run", "--tier", "fast", "--test-timeout", "2s",
                        "--grace", "2s", timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    first_line = {f["test"].split("::")[1]: f["message"].splitlines()[0]
                  for f in findings(project)["findings"] if f["kind"] == "timeout"}
    assert len(first_line) == 5, out
    assert first_line["test_teardown_hangs"].startswith(
        "timeout: ran past its 2s limit in the teardown of fixture `db_session` (conftest.py:9), "
        "used by test_teardown_hangs; stuck in db_session (conftest.py:11), sleeping"), out
    assert first_line["test_session_setup_hangs"].startswith(
        "timeout: ran past its 2s limit in the setup of session fixture `server` "
        "(conftest.py:15), first used by test_session_setup_hangs; "
        "stuck in server (conftest.py:16), sleeping"), out
    stubborn = first_line["test_blocks_sigalrm_and_ignores_sigterm"]
    assert "hard timeout" in stubborn, out
    assert "stuck in test_blocks_sigalrm_and_ignores_sigterm (test_stubborn.py:18)" in stubborn
    assert stubborn.endswith("; the soft timeout could not act: SIGALRM is blocked in the test "
                             "process, and SIGTERM is ignored"), stubborn
    regex = first_line["test_catastrophic_regex"]
    assert "stuck in test_catastrophic_regex (test_stubborn.py:22), busy in C" in regex, regex
    assert "holds the GIL" in regex, regex
    # The hard rung reads the fixture from the dump's stack, as the soft rung reads live frames.
    pool = first_line["test_pool_teardown_ignores_the_soft_rung"]
    assert pool.startswith(
        "timeout: ran past its 2s limit in the teardown of fixture `stubborn_pool` "
        "(conftest.py:21), used by test_pool_teardown_ignores_the_soft_rung, and did not return"
    ), pool
    assert "hard timeout" in pool, pool


ASYNC_AND_SPAWN = """
import asyncio, multiprocessing

from workers import consume


async def wait_for_reply(loop):
    reply = loop.create_future()
    return await reply


async def ask():
    await wait_for_reply(asyncio.get_running_loop())


def test_awaits_a_future_nobody_completes():
    asyncio.run(ask())


def test_pass():
    pass


def start_consumer(method):
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    child = ctx.Process(target=consume, args=(queue, "{marker}"))
    child.start()
    try:
        child.join()
    finally:  # stopped by the timeout: the next test's tree must not hold this child
        child.kill()


def test_spawn_child_waits_on_an_empty_queue():
    start_consumer("spawn")


def test_forkserver_child_waits_on_an_empty_queue():
    start_consumer("forkserver")
"""

WORKERS = """
def consume(queue, marker):
    while True:
        item = queue.get()
        if item is None:
            return
"""


def test_asyncio_tasks_and_spawned_children_are_named(tmp_path: Path) -> None:
    """An idle event loop is explained by its tasks, not its select; multiprocessing's resource
    tracker and fork server are looked past, to the child the test waits for."""
    marker = f"hang-{uuid.uuid4().hex}"
    project = make_project(tmp_path, {
        "test_more_hangs.py": ASYNC_AND_SPAWN.replace("{marker}", marker),
        "workers.py": WORKERS})
    proc = run_tiergate(project, "run", "--tier", "fast", "--test-timeout", "3s", "--grace", "2s",
                        timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    data = findings(project)
    timeouts = {f["test"].split("::")[1]: f for f in data["findings"] if f["kind"] == "timeout"}
    assert data["counts"]["passed"] == 1, out

    future = timeouts["test_awaits_a_future_nobody_completes"]["culprit"]
    assert (future["path"], future["line"], future["function"]) == (
        "test_more_hangs.py", 9, "wait_for_reply")
    assert future["reason"] == "awaits a Future nobody completes, in asyncio task 'Task-1'"
    for method in ("spawn", "forkserver"):
        child = timeouts[f"test_{method}_child_waits_on_an_empty_queue"]["culprit"]
        assert (child["path"], child["line"], child["function"]) == ("workers.py", 4, "consume")
        assert child["reason"] == "waiting on a queue", method
    for name, finding in timeouts.items():
        first = (results(project) / finding["dump"]).read_text().splitlines()[0]
        culprit = finding["culprit"]
        assert first.startswith(f"culprit: {culprit['path']}:{culprit['line']} in "
                                f"{culprit['function']} — {culprit['reason']}"), name
    awaits = timeouts["test_awaits_a_future_nobody_completes"]
    dump = (results(project) / awaits["dump"]).read_text()
    assert "Task 'Task-1' (awaited by run_until_complete) — awaits a Future nobody" in dump
    assert not processes_running(marker), "a stuck child outlived the run"


# -- an import deadlock: two threads, two modules, each waiting for the other ------------------

DL_A = """
import threading


def warm_up():
    import dl_b  # noqa: F401


_warmer = threading.Thread(target=warm_up, daemon=True)
_warmer.start()
_warmer.join()  # returns at once: warm_up only reads a file
CONFIG = {}
"""

DL_B = """
from dl_a import CONFIG  # a constant, nothing waits here
"""

IMPORTS_DL_A = """
def test_imports_a_module_that_deadlocks():
    import dl_a  # noqa: F401


def test_pass():
    pass
"""


def test_an_import_deadlock_names_both_modules_and_both_lines(tmp_path: Path) -> None:
    """CPython raises on a cycle of import locks alone, not on one closed by a join: tiergate
    reads who holds which import lock and names the cycle. The source lines it quotes are code,
    not the comments that claim something else."""
    project = make_project(tmp_path, {"test_imports.py": IMPORTS_DL_A, "dl_a.py": DL_A,
                                      "dl_b.py": DL_B})
    proc = run_tiergate(project, "run", "--tier", "fast", "--test-timeout", "3s", "--grace", "2s",
                        timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    data = findings(project)
    assert data["counts"]["passed"] == 1, out
    (timeout,) = [f for f in data["findings"] if f["kind"] == "timeout"]
    culprit = timeout["culprit"]
    assert (culprit["path"], culprit["line"], culprit["function"]) == ("dl_a.py", 11, "<module>")
    first_line = timeout["message"].splitlines()[0]
    assert ("import deadlock: the main thread, importing dl_a, waits at dl_a.py:11"
            " (`_warmer.join()`) for thread 'Thread-1 (warm_up)' to finish (join); thread"
            " 'Thread-1 (warm_up)', importing dl_b, waits at dl_b.py:2 (`from dl_a import"
            " CONFIG`) for the import lock of module 'dl_a', which the main thread holds"
            ) in first_line, first_line
    assert "returns at once" not in first_line and "nothing waits" not in first_line
    dump = (results(project) / timeout["dump"]).read_text()
    assert dump.splitlines()[0].startswith("culprit: dl_a.py:11 in <module> — import deadlock")


WAITS_FOR_AN_IMPORT = """
import threading
import time


def test_waits_for_an_import_lock():
    importer = threading.Thread(target=lambda: __import__("slow_module"), daemon=True)
    importer.start()
    time.sleep(0.5)
    import slow_module  # noqa: F401  # waits for the module lock the importer holds
"""


def test_a_timeout_in_a_wait_for_an_import_lock_is_the_timeout_not_a_key_error(
        tmp_path: Path) -> None:
    # Before Python 3.12 the dump's imports in the SIGALRM handler delete this thread's entry in
    # importlib's table of import waits, and the interrupted import ended in KeyError.
    project = make_project(tmp_path, {
        "slow_module.py": "import time\ntime.sleep(20)\n",
        "test_import_wait.py": WAITS_FOR_AN_IMPORT,
    })
    proc = run_tiergate(project, "run", "--tier", "fast", "--test-timeout", "2s", timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    junit = (results(project) / "junit.xml").read_text()
    assert 'type="timeout"' in junit, junit
    assert "KeyError" not in junit, junit
