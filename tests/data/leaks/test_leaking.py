# One test per kind of leak; each must give exactly its own finding.
import asyncio
import os
import socket
import subprocess
import sys
import threading
import time

KEPT = []


def test_thread_left_polling():
    def poll():
        while True:
            time.sleep(0.05)

    threading.Thread(target=poll, name="poller", daemon=True).start()


def test_popen_never_waited():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_file_kept_open(tmp_path):
    KEPT.append(open(tmp_path / "kept.txt", "w"))


def test_socket_kept_open():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    KEPT.append(server)


def test_memory_grows():
    block = bytearray(30 * 2**20)
    block[:: 4096] = b"x" * len(block[:: 4096])  # touch every page so it is resident
    KEPT.append(block)


def test_env_not_restored():
    os.environ["LEAKY_SETTING"] = "on"


def test_loop_left_open():
    loop = asyncio.new_event_loop()
    loop.create_task(asyncio.sleep(3600))


def test_connects_outside_allow_list():
    listener = socket.socket()
    listener.bind(("127.0.0.3", 0))
    listener.listen()
    try:
        socket.create_connection(listener.getsockname(), timeout=0.2).close()
    except OSError:  # the guard refused it (NetworkBlocked); the finding is what matters
        pass
    finally:
        listener.close()
