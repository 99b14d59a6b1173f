"""Database validation: is the database up, and does it speak our protocol and schema?

The database greets every new connection with one line, ``FAKEDB <version> READY``, before it takes
commands (``SCHEMA`` → ``SCHEMA <n>``, ``QUIT`` → ``BYE``). A database that accepts connections but
never greets — stuck in recovery, or a proxy with no backend behind it — is the interesting case:
without a timeout, validation waits for the greeting forever.
"""

from __future__ import annotations

import dataclasses
import socket

GREETING = "FAKEDB"
REQUIRED_SCHEMA = 3


class DatabaseUnavailable(RuntimeError):
    """The database did not answer, or answered something we cannot work with."""


@dataclasses.dataclass(frozen=True)
class DatabaseInfo:
    version: str
    schema: int


def validate_database(host: str, port: int, timeout: float | None = None) -> DatabaseInfo:
    """Connect to the database, wait for its greeting and check the schema version.

    *timeout* applies to the connection and to every reply; None waits as long as it takes.
    """
    where = f"{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            lines = _LineReader(sock)
            greeting = lines.read().split()
            if len(greeting) != 3 or greeting[0] != GREETING or greeting[2] != "READY":
                raise DatabaseUnavailable(f"{where} is not our database: {' '.join(greeting)!r}")
            sock.sendall(b"SCHEMA\n")
            reply = lines.read().split()
            sock.sendall(b"QUIT\n")
            lines.read()
    except TimeoutError:
        raise DatabaseUnavailable(f"{where} did not answer within {timeout}s") from None
    except OSError as exc:
        raise DatabaseUnavailable(f"{where} is unreachable: {exc}") from None
    if len(reply) != 2 or reply[0] != "SCHEMA" or not reply[1].isdigit():
        raise DatabaseUnavailable(f"{where} sent a bad schema reply: {' '.join(reply)!r}")
    schema = int(reply[1])
    if schema < REQUIRED_SCHEMA:
        raise DatabaseUnavailable(f"{where} has schema {schema}, need {REQUIRED_SCHEMA} or later")
    return DatabaseInfo(version=greeting[1], schema=schema)


class _LineReader:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""

    def read(self) -> str:
        while b"\n" not in self._buffer:
            chunk = self._sock.recv(4096)  # waits for the database to speak
            if not chunk:
                raise DatabaseUnavailable("the database closed the connection")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("utf-8", "replace").strip()
