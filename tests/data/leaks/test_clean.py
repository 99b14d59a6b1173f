# The same things done properly: none of them may give a finding.
import asyncio
import functools
import logging
import multiprocessing.pool
import os
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest


@pytest.fixture(scope="module")
def background():
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="module-worker")
    thread.start()
    yield thread
    stop.set()
    thread.join()


@pytest.fixture(scope="session")
def server():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.terminate()
    process.wait()


def test_thread_joined():
    thread = threading.Thread(target=sum, args=([1, 2],))
    thread.start()
    thread.join()


def test_pools_in_with():
    with multiprocessing.pool.ThreadPool(2) as pool:
        assert pool.map(abs, [-1, -2]) == [1, 2]
    with ThreadPoolExecutor(2) as executor:
        assert list(executor.map(abs, [-3])) == [3]


def test_subprocess_run():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_files_and_sockets_closed(tmp_path):
    with open(tmp_path / "a.txt", "w") as handle:
        handle.write("x")
    listener = socket.socket()
    listener.bind(("127.0.0.2", 0))
    listener.listen()
    with socket.create_connection(listener.getsockname(), timeout=1):
        pass
    listener.close()


def test_monkeypatched_env_and_cwd(monkeypatch, tmp_path):
    monkeypatch.setenv("CLEAN_SETTING", "1")
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.chdir(tmp_path)


def test_big_temporary_allocation():
    block = bytearray(64 * 2**20)
    block[:: 4096] = b"x" * len(block[:: 4096])
    del block


@functools.lru_cache
def table():
    return [str(i) for i in range(200_000)]


def test_lru_cache_warm_up():
    assert len(table()) == 200_000


def test_module_fixture_1(background):
    assert background.is_alive()


def test_module_fixture_2(background):
    assert background.is_alive()


def test_session_server_1(server):
    assert server.poll() is None


def test_session_server_2(server):
    assert server.poll() is None


def test_asyncio_run():
    async def main():
        await asyncio.sleep(0)
        return 1

    assert asyncio.run(main()) == 1


def test_logging_handler_added_and_removed():
    handler = logging.StreamHandler()
    logging.getLogger().addHandler(handler)
    logging.getLogger("x").warning("hello")
    logging.getLogger().removeHandler(handler)


@pytest.mark.xfail(strict=True, reason="a failure's traceback holds its locals")
def test_failure_holding_a_socket():
    with socket.socket() as sock:
        assert sock.fileno() < 0
