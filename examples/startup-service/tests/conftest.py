from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import pytest
from startup_service import fakedb
from startup_service.launch import module_command

Address = tuple[str, int]


@pytest.fixture
def silent_database() -> Iterator[Address]:
    """A "database" that accepts connections and never says a word.

    The kernel completes the TCP handshake for anything in the listen backlog, so a client connects
    at once — and then waits for a greeting that never comes.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield "127.0.0.1", listener.getsockname()[1]


@pytest.fixture
def database() -> Iterator[Address]:
    """A fake database in a thread of this process: cheap enough for unit tests."""
    with fakedb.serving() as address:
        yield address


@pytest.fixture
def database_server() -> Iterator[Address]:
    """A fake database in its own process, started for the test and stopped after it."""
    argv, env = module_command("startup_service.fakedb", "--port", "0")
    process = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline().split()  # "listening on 127.0.0.1:PORT"
        assert banner[:2] == ["listening", "on"], f"the database did not start: {banner}"
        host, _, port = banner[2].rpartition(":")
        yield host, int(port)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for stream in (process.stdin, process.stdout):
            if stream:
                stream.close()
