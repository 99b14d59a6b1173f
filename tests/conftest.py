from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from ghapi import GhApi
from resultsdirs import SECRET


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


@pytest.fixture
def actions_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    files = {"summary": tmp_path / "step_summary.md", "output": tmp_path / "output.txt"}
    for f in files.values():
        f.write_text("")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(files["summary"]))
    monkeypatch.setenv("GITHUB_OUTPUT", str(files["output"]))
    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("MY_API_TOKEN", SECRET)
    for name in ("GITHUB_SERVER_URL", "GITHUB_RUN_ID", "GITHUB_REPOSITORY"):
        monkeypatch.delenv(name, raising=False)
    return files


