from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from ghapi import GhApi


@pytest.fixture
def ghapi() -> Iterator[GhApi]:
    """A local stand-in for the GitHub REST API (tests/ghapi.py) on 127.0.0.1, stopped after."""
    api = GhApi().start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def listeners() -> Iterator[dict[str, int]]:
    """Listening sockets on 127.0.0.2 and 127.0.0.3: name -> port."""
    socks = []
    ports = {}
    for host in ("127.0.0.2", "127.0.0.3"):
        sock = socket.socket()
        sock.bind((host, 0))
        sock.listen()
        socks.append(sock)
        ports[host] = sock.getsockname()[1]
    yield ports
    for sock in socks:
        sock.close()
