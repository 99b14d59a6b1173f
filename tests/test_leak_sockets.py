"""Socket leak findings around servers that fixtures run: real sockets on 127.0.0.1, real pytest
runs (pytester, in a subprocess), the leak watch registered as tests/test_leaks.py does.

A connection a server accepts is the server's: a test that connects to a fixture's server and
hangs up has left nothing behind, however late the server closes its side. What the test itself
keeps open is still its leak, and a server whose open connections keep growing is still a leak.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data" / "leaks"

# A server on 127.0.0.1 in a thread of its own, one connection at a time. It greets each client
# on accepting it, so that the accepted fd exists before the client's test ends; *policy* decides
# when it closes what it accepted. Stopping it closes everything it still holds.
SERVER = '''\
import socket
import threading
import time

import pytest

NEVER_CLOSED = []  # what a "keep-all" server accepted: kept for the life of the process


class Server:
    def __init__(self, policy):
        self.policy = policy
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.held = []  # accepted connections not closed yet
        self.thread = threading.Thread(target=self.serve, name="server", daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                break  # stopped
            conn.sendall(b"hi")
            if self.policy == "keep-all":  # a server that never lets a connection go
                NEVER_CLOSED.append(conn)
                continue
            if self.policy == "close-previous-on-next":
                self.close_held()
            self.held.append(conn)
            if self.policy == "close-when-client-hangs-up":
                while conn.recv(1024):
                    pass
                # the server's loop gets to it a moment later: later than the test's end and
                # the short grace after it, so the test is run again before the server closes
                time.sleep(0.3)
                self.close_held()
            if self.policy.startswith("close-after-reset"):  # "close-after-reset SECONDS"
                try:
                    conn.recv(1024)
                except ConnectionResetError:
                    pass  # the client reset it: the kernel lists it nowhere, its fd is open
                time.sleep(float(self.policy.split()[1]))
                self.close_held()
        self.close_held()

    def close_held(self):
        while self.held:
            self.held.pop().close()

    def stop(self):
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for conn in list(self.held):
            try:
                conn.shutdown(socket.SHUT_RDWR)  # ends a recv on a client that never hangs up
            except OSError:
                pass  # reset by its client already
        self.thread.join(5)
'''


def _server_fixture(scope: str, policy: str) -> str:
    return f'''
@pytest.fixture(scope="{scope}")
def server():
    running = Server("{policy}")
    yield running.listener.getsockname()
    running.stop()
'''


CLIENT_HANGS_UP = '''

def talk(address):
    with socket.create_connection(address) as client:
        assert client.recv(2) == b"hi"
        client.sendall(b"hello")


class TestAgainstTheServer:
    def test_first(self, server):
        talk(server)

    def test_second(self, server):
        talk(server)
        talk(server)

    def test_last(self, server):
        talk(server)  # and the server is stopped in its teardown
'''

CLIENT_RESETS = '''
import struct


def reset(address):
    client = socket.create_connection(address)
    assert client.recv(2) == b"hi"
    # closed with no linger: a reset, not a goodbye
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


def test_first(server):
    reset(server)


def test_second(server):
    reset(server)
'''

KEPT_IN_A_GLOBAL = '''

CLIENTS = []


def test_keeps_its_client_socket(server):
    CLIENTS.append(socket.create_connection(server))
    assert CLIENTS[-1].recv(2) == b"hi"


def test_detaches_and_never_closes():
    # the file descriptor outlives the socket object, and nobody closes it
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).detach()
'''


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    shutil.copy(DATA / "conftest_watch.py", pytester.path / "conftest.py")
    monkeypatch.setenv("LEAK_FINDINGS", str(pytester.path / "findings.jsonl"))
    yield pytester.path


def _run(pytester: pytest.Pytester, source: str, passed: int
         ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run *source* as test_server.py; its findings and leak-check records."""
    (pytester.path / "test_server.py").write_text(source)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=passed)
    return _lines(pytester.path / "findings.jsonl"), _lines(pytester.path / "checks.jsonl")


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("scope", ["class", "session"])
def test_connections_a_fixtures_server_closes_a_moment_later_are_not_the_tests(
    pytester: pytest.Pytester, project: Path, scope: str
) -> None:
    source = SERVER + _server_fixture(scope, "close-when-client-hangs-up") + CLIENT_HANGS_UP
    findings, _ = _run(pytester, source, passed=3)
    assert findings == [], json.dumps(findings, indent=1)


def test_a_connection_the_server_closes_only_at_the_next_one_is_not_a_leak(
    pytester: pytest.Pytester, project: Path
) -> None:
    # The server keeps its last connection until the next arrives, so one is open at the end of
    # every test: the server's, not the test's, so not even a suspect to run again.
    source = SERVER + _server_fixture("session", "close-previous-on-next") + CLIENT_HANGS_UP
    findings, checks = _run(pytester, source, passed=3)
    assert findings == [], json.dumps(findings, indent=1)
    assert checks == []


def test_a_reset_connection_its_server_closes_within_the_grace_is_not_a_suspect(
    pytester: pytest.Pytester, project: Path
) -> None:
    # After the reset the server's side is in none of the kernel's tables (so not known as the
    # server's): it gets the grace all the same, and is closed within it.
    source = SERVER + _server_fixture("session", "close-after-reset 0.02") + CLIENT_RESETS
    findings, checks = _run(pytester, source, passed=2)
    assert findings == [], json.dumps(findings, indent=1)
    assert checks == [], json.dumps(checks, indent=1)


def test_a_socket_its_owner_closes_while_the_test_runs_again_was_not_leaked(
    pytester: pytest.Pytester, project: Path
) -> None:
    # The server closes a reset connection only when the next one arrives: a suspect, as
    # nothing tells it is the server's, and the repeat leaves one behind too. But the first one
    # is gone by the repeat's end: released, not a leak.
    source = SERVER + _server_fixture("session", "close-previous-on-next") + CLIENT_RESETS
    findings, checks = _run(pytester, source, passed=2)
    assert findings == [], json.dumps(findings, indent=1)
    assert checks, "a socket nobody is known to close makes a suspect, run again"
    for check in checks:
        assert check["result"] == "no leak" and check["kinds"] == {"leak-socket": "released"}
        assert check["released"] == check["suspected"], check
        assert len(check["again"]) == 1, check


def test_what_the_test_keeps_open_is_still_its_leak(
    pytester: pytest.Pytester, project: Path
) -> None:
    source = SERVER + _server_fixture("session", "close-previous-on-next") + KEPT_IN_A_GLOBAL
    findings, _ = _run(pytester, source, passed=2)
    assert {(f["test"], f["kind"]) for f in findings} == {
        ("test_server.py::test_keeps_its_client_socket", "leak-socket"),
        ("test_server.py::test_detaches_and_never_closes", "leak-socket"),
    }, json.dumps(findings, indent=1)
    assert all(f["severity"] == "error" for f in findings)
    kept = next(f for f in findings if f["test"].endswith("client_socket"))
    (leak,) = kept["details"]["leaks"]
    # the test's client end, not the server's side of the same connection
    assert leak["status"] == "ESTABLISHED" and "server" not in leak, leak
    assert leak["remote"].startswith("127.0.0.1:")


def test_a_socket_the_next_run_replaces_was_not_leaked(
    pytester: pytest.Pytester, project: Path
) -> None:
    # One connection kept in a global, the one before let go (and so closed) as the next is
    # made: never more than one, like a lazily made client. Released when run again.
    source = SERVER + _server_fixture("session", "close-when-client-hangs-up") + '''
CLIENT = None


def test_replaces_its_client_socket(server):
    global CLIENT
    CLIENT = socket.create_connection(server)
    assert CLIENT.recv(2) == b"hi"
'''
    findings, checks = _run(pytester, source, passed=1)
    assert findings == [], json.dumps(findings, indent=1)
    (check,) = checks
    assert check["kinds"] == {"leak-socket": "released"}, check


def test_a_server_that_never_closes_its_connections_is_its_fixtures_leak(
    pytester: pytest.Pytester, project: Path
) -> None:
    source = SERVER + _server_fixture("class", "keep-all") + CLIENT_HANGS_UP
    findings, _ = _run(pytester, source, passed=3)
    # Not the tests', which hung up: the fixture's, whose server still holds them after its
    # teardown. (The last test's own connection is made in the window that the teardown ends
    # in, after the listener is gone: it is still a finding, on that test.)
    on_fixture = [f for f in findings if f["test"] is None]
    assert {(f["test"], f["kind"]) for f in findings} <= {
        (None, "leak-socket"), ("test_server.py::TestAgainstTheServer::test_last", "leak-socket"),
    }, json.dumps(findings, indent=1)
    (finding,) = on_fixture
    assert finding["kind"] == "leak-socket" and finding["severity"] == "error"
    assert finding["message"].startswith("fixture 'server' (class scope) left sockets open")
    assert finding["details"]["owner"] == "fixture 'server' (class scope)"
    leaks = finding["details"]["leaks"]
    assert len(leaks) == 3  # test_first's and test_second's two
    assert all(leak["status"] == "CLOSE_WAIT" for leak in leaks), leaks
    assert finding["location"]["path"].endswith("test_server.py")
