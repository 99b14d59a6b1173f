"""What the leak watch keeps alive after reporting it: bounded, let go of quietly, and the
sockets the network guard refused are the guard's (a network-blocked finding, never a leak)."""

from __future__ import annotations

import collections
import gc
import json
import socket
import warnings
import weakref
from pathlib import Path
from typing import Any

import pytest

from tiergate.plugin.leaks import probes


def test_kept_leftovers_are_bounded_and_the_oldest_goes_without_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(probes, "KEPT_MOST", 2)
    monkeypatch.setattr(probes, "KEEP_ALIVE", collections.deque())
    unraisable: list[Any] = []
    monkeypatch.setattr("sys.unraisablehook", unraisable.append)
    kept = []
    gc.collect()  # earlier tests' garbage (an unclosed file of theirs) is not this test's to hear
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("error")  # as under filterwarnings = error: a warning would raise
        for _ in range(3):
            sock = socket.socket()  # never closed: its collection warns
            kept.append(weakref.ref(sock))
            probes.keep_alive(sock)
            del sock
        gc.collect()
    try:
        assert kept[0]() is None  # let go of, past the bound
        assert kept[1]() is not None and kept[2]() is not None
        assert list(probes.KEEP_ALIVE) == [kept[1](), kept[2]()]
        assert shown == [] and unraisable == []  # no test hears of it
    finally:
        for sock in probes.KEEP_ALIVE:
            sock.close()  # type: ignore[attr-defined]


REFUSED_AND_KEPT = """
import socket

def test_refused_and_never_closed():
    listener = socket.socket()
    listener.bind(("127.0.0.3", 0))  # loopback, and outside the tier's allow-list
    listener.listen()
    sock = socket.socket()
    sock.settimeout(0.2)
    try:
        sock.connect(listener.getsockname())
    except OSError as exc:  # the guard refused it before the system call
        assert "network blocked" in str(exc)
    else:
        raise AssertionError("the guard let the connect through")
    finally:
        listener.close()
    # sock is neither closed nor kept: the guard keeps it, for its finding
"""

TIER = """\
[tool.tiergate.tiers.probed]
leaks = "fail"
network = ["127.0.0.1"]
"""


def test_a_refused_socket_left_open_is_the_guards_finding_not_a_leak(
    pytester: pytest.Pytester,
) -> None:
    (pytester.path / "pyproject.toml").write_text(TIER)
    pytester.makepyfile(test_refused=REFUSED_AND_KEPT)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--tier", "probed")
    result.assert_outcomes(passed=1)
    report = json.loads((Path(pytester.path) / ".tiergate/probed/findings.json").read_text())
    kinds = [(f["test"], f["kind"]) for f in report["findings"]]
    assert kinds == [("test_refused.py::test_refused_and_never_closed", "network-blocked")]
