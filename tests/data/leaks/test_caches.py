# Process-wide caches: made by the first test that needs them, reused by the later ones. A leak is
# growth, not first use: none of these may give a finding.
import asyncio
import multiprocessing
import socket
import socketserver
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

# -- multiprocessing's shared-memory heap: its first arena (an fd in /dev/shm) stays -------------


def test_shared_value_first_use():
    counter = multiprocessing.Value("i", 0)
    with counter.get_lock():
        counter.value += 1
    assert counter.value == 1


def test_shared_value_again():
    assert multiprocessing.Value("i", 5).value == 5


# -- a module-level executor, made lazily by the first test that needs it -----------------------

_EXECUTOR = None


def executor():
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cache")
    return _EXECUTOR


def test_executor_first_use():
    assert executor().submit(sum, [1, 2]).result() == 3


def test_executor_reused():
    assert executor().submit(max, 1, 2).result() == 2


# -- a global connection pool: one socket to a 127.0.0.1 server, made on first use --------------


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(64):
            self.request.sendall(data)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True  # one thread per connection, for as long as the client keeps it
    block_on_close = False


@pytest.fixture(scope="session")
def echo_server():
    server = Server(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, name="echo-server")
    thread.start()
    yield server.server_address
    server.shutdown()
    thread.join()
    server.server_close()


_POOL = {}


def connection(address):
    if address not in _POOL:
        _POOL[address] = socket.create_connection(address, timeout=30)
    return _POOL[address]


def echo(address, data):
    conn = connection(address)
    conn.sendall(data)
    return conn.recv(64)


def test_pool_connects_on_first_use(echo_server):
    assert echo(echo_server, b"ping") == b"ping"


def test_pool_reuses_the_connection(echo_server):
    assert echo(echo_server, b"pong") == b"pong"


# -- an event loop's default executor: made by the first run_in_executor(None, ...) -------------


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()


def test_loop_executor_first_use(loop):
    assert loop.run_until_complete(loop.run_in_executor(None, sum, [1, 2])) == 3


def test_loop_executor_reused(loop):
    assert loop.run_until_complete(loop.run_in_executor(None, max, 1, 2)) == 2


def test_close_the_pool():
    for conn in _POOL.values():
        conn.close()
    _POOL.clear()
