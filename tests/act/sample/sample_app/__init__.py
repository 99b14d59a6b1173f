"""A tiny module for the sample's tests to exercise."""

import socket
import threading
import time


def add(a: int, b: int) -> int:
    return a + b


def wait_for_greeting(host: str, port: int) -> bytes:
    """Reads the server's greeting, with no timeout: hangs when the server never speaks."""
    with socket.create_connection((host, port)) as conn:
        return conn.recv(64)


def start_poller() -> threading.Thread:
    """Starts a background poller that nobody ever stops."""
    thread = threading.Thread(target=time.sleep, args=(3600,), name="sample-poller", daemon=True)
    thread.start()
    return thread
