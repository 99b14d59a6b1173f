"""The leak watch's one combined token (``default_token``): a quiet look reads it alone, so it
must move whenever any default probe's own token does, or a leak nothing announces is missed."""

from __future__ import annotations

import os
import threading

from tiergate.plugin.leaks.probes import default_probes, default_token, open_memory_probe
from tiergate.plugin.leaks.watch import Current


def test_an_unannounced_pipe_is_seen_through_the_combined_token() -> None:
    open_memory_probe()
    current = Current(default_probes(), default_token)
    before = current.now()
    assert current.now() is before  # nothing changed: the same view, no probe looked again
    read, write = os.pipe()  # no audit event: only the fd token tells
    try:
        after = current.now()
        assert after is not before
        assert any(str(read) in str(snapshot) for snapshot in after)
    finally:
        os.close(read)
        os.close(write)


def test_the_combined_token_moves_with_threads_and_the_environment() -> None:
    open_memory_probe()
    first = default_token()
    os.environ["TIERGATE_TEST_TOKEN"] = "1"
    try:
        assert default_token() != first
    finally:
        del os.environ["TIERGATE_TEST_TOKEN"]
    assert default_token() == first
    done = threading.Event()
    thread = threading.Thread(target=done.wait)
    thread.start()
    try:
        assert default_token() != first
    finally:
        done.set()
        thread.join()
