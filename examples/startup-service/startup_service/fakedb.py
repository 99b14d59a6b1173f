"""A stand-in for the database, for development and tests: it speaks the real handshake.

In a thread: ``with serving() as (host, port): ...``. As a process:
``python -m startup_service.fakedb [--port N] [--schema N]`` prints ``listening on HOST:PORT`` and
serves until SIGTERM, or until its stdin closes (so it never outlives the process that started it).
It only ever binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import signal
import socketserver
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HOST = "127.0.0.1"
VERSION = "1.4"
SCHEMA = 7


class _Session(socketserver.StreamRequestHandler):
    timeout = 10  # a client that goes quiet cannot keep the server from shutting down
    server: FakeDatabase

    def handle(self) -> None:
        self.wfile.write(f"FAKEDB {VERSION} READY\n".encode())
        for raw in self.rfile:
            command = raw.decode("utf-8", "replace").strip().upper()
            if command == "QUIT":
                self.wfile.write(b"BYE\n")
                return
            if command == "SCHEMA":
                self.wfile.write(f"SCHEMA {self.server.schema}\n".encode())
            elif command == "PING":
                self.wfile.write(b"PONG\n")
            else:
                self.wfile.write(b"ERR unknown command\n")


class FakeDatabase(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    # Sessions are not daemon threads: server_close() waits for them, so nothing outlives stop.
    daemon_threads = False

    def __init__(self, port: int = 0, schema: int = SCHEMA) -> None:
        self.schema = schema
        super().__init__((HOST, port), _Session)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@contextmanager
def serving(schema: int = SCHEMA) -> Iterator[tuple[str, int]]:
    """Run a fake database in a thread for the duration of the block."""
    server = FakeDatabase(schema=schema)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fakedb"
    )
    thread.start()
    try:
        yield HOST, server.port
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m startup_service.fakedb")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--schema", type=int, default=SCHEMA)
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    threading.Thread(target=_exit_when_stdin_closes, name="stdin-watch", daemon=True).start()
    with FakeDatabase(args.port, args.schema) as server:
        print(f"listening on {HOST}:{server.port}", flush=True)
        server.serve_forever(poll_interval=0.05)
    return 0


def _exit_when_stdin_closes() -> None:
    sys.stdin.read()
    os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(main())
