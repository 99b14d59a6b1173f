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
