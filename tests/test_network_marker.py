"""``@pytest.mark.network``: one test's own network policy instead of the tier's, in its process
and in the Python children it starts, put back after it; with real pytest runs.

As in test_netguard.py, the suites run behind ``NO_TRAFFIC_LEAVES`` (test_netguard's belt, a
second audit hook that ends the process before any system call to anything but this machine),
connect only to 127.0.0.1 listeners, and use 192.0.2.1 (TEST-NET) only where the guard must
refuse it: a marked "any" test is checked on the guard's decision, never by connecting off-machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from supervised import events, findings, make_project, results, run_tiergate
from test_netguard import PROBE_CONFTEST

SUITE = '''
import errno
import socket
import subprocess
import sys

import pytest


def _connect_loopback():
    with socket.create_server(("127.0.0.1", 0)) as server:
        socket.create_connection(server.getsockname(), timeout=2).close()


def _child_connects_loopback():
    code = ("import socket\\n"
            "with socket.create_server(('127.0.0.1', 0)) as s:\\n"
            "    socket.create_connection(s.getsockname(), timeout=2).close()\\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def _guard():
    return sys.modules["_tiergate_netguard"]


@pytest.mark.network("any")
def test_marked_any_is_not_guarded():
    guard = _guard()
    assert guard._policy is None  # the guard would let 192.0.2.1 through: nothing to refuse
    _connect_loopback()
    child = subprocess.run([sys.executable, "-c",
                            "import os; print(os.environ.get('TIERGATE_NETWORK'))"],
                           capture_output=True, text=True, check=True)
    assert child.stdout.strip() == "None"


def test_unmarked_after_any_is_guarded_by_the_tier_again():
    assert _guard()._policy.mode == "loopback"
    with pytest.raises(OSError) as info:
        socket.create_connection(("192.0.2.1", 80), timeout=2)
    assert info.value.errno == errno.ENETUNREACH
    _connect_loopback()


@pytest.mark.network("none")
def test_marked_none_refuses_even_loopback():
    with pytest.raises(OSError) as info:
        _connect_loopback()
    assert info.value.errno == errno.ENETUNREACH
    assert "from the test's @pytest.mark.network" in str(info.value)
    child = _child_connects_loopback()
    assert child.returncode != 0 and "network blocked" in child.stderr, child.stderr


def test_unmarked_after_none_reaches_loopback():
    _connect_loopback()
    assert _child_connects_loopback().returncode == 0


@pytest.mark.network(["localhost"])
def test_marked_list_allows_a_name_that_is_this_machine():
    _connect_loopback()  # localhost is 127.0.0.1: allowed by the list
    with pytest.raises(OSError):
        with socket.create_server(("127.0.0.2", 0)) as server:
            socket.create_connection(server.getsockname(), timeout=2)
'''


def _run(pytester: pytest.Pytester, suite: str) -> pytest.RunResult:
    (pytester.path / "conftest.py").write_text(PROBE_CONFTEST)
    (pytester.path / "test_marked.py").write_text(suite)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--tier", "fast")


def test_a_marked_test_runs_under_its_own_policy_and_the_tiers_comes_back(
    pytester: pytest.Pytester,
) -> None:
    result = _run(pytester, SUITE)
    assert result.ret != 98, "the guard was not installed before the suite ran"
    result.assert_outcomes(passed=5)
    found = json.loads((pytester.path / ".tiergate/fast/findings.json").read_text())["findings"]
    blocked = [f for f in found if f["kind"] == "network-blocked"]
    by_test = {f["test"].split("::")[-1]: f for f in blocked}
    none = by_test["test_marked_none_refuses_even_loopback"]
    assert none["details"]["policy"] == "none" and none["details"]["policy_from"] == "marker"
    assert "(network = none, from the test's @pytest.mark.network)" in none["message"]
    assert "change the test's @pytest.mark.network" in none["message"]
    tier = by_test["test_unmarked_after_any_is_guarded_by_the_tier_again"]
    assert (tier["details"]["policy"], tier["details"]["policy_from"]) == ("loopback", "tier")


@pytest.mark.parametrize("mark", ['"loopbak"', "", '"any", "none"', "[1]", "[]"])
def test_a_bad_marker_is_a_one_line_usage_error(pytester: pytest.Pytester, mark: str) -> None:
    result = _run(pytester, f"import pytest\n\n@pytest.mark.network({mark})\ndef test_x():\n"
                            "    pass\n")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if "@pytest.mark.network takes one policy" in line]
    assert len(errors) == 1, result.errlines
    assert "Traceback" not in result.stderr.str()


def test_the_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "import pytest\n\n@pytest.mark.network('any')\ndef test_x():\n"
                            "    pass\n")
    result.assert_outcomes(passed=1)
    assert "PytestUnknownMarkWarning" not in result.stdout.str()


def test_tiergate_run_reports_the_tests_with_their_own_policy(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"conftest.py": PROBE_CONFTEST, "test_marked.py": SUITE},
                           '[tool.tiergate.tiers.fast]\nnetwork = "loopback"\n')
    proc = run_tiergate(project, "run", "--tier", "fast")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the refusals are error findings
    assert findings(project)["counts"]["passed"] == 5
    own = {e["nodeid"].split("::")[-1]: e["policy"]
           for e in events(project) if e["event"] == "network-policy"}
    assert own == {"test_marked_any_is_not_guarded": "any",
                   "test_marked_none_refuses_even_loopback": "none",
                   "test_marked_list_allows_a_name_that_is_this_machine": '["localhost"]'}
    summary = (results(project) / "summary.md").read_text()
    line = next(x for x in summary.splitlines() if "network policy other than the tier" in x)
    line = line.replace("\\", "")  # as GitHub renders it: markdown escapes gone
    assert line.startswith("🌐 3 tests ran with a network policy other than the tier's")
    assert "test_marked_any_is_not_guarded" in line and "(any)" in line


def test_a_marked_none_test_in_an_unguarded_tier_is_guarded(pytester: pytest.Pytester) -> None:
    """The tier is "any" (no guard at all): the mark installs it for its test alone. Only
    127.0.0.1 is touched, so no belt is needed."""
    pytester.makepyprojecttoml('[tool.tiergate.tiers.fast]\nnetwork = "any"\n')
    pytester.makepyfile(test_any_tier='''
        import errno, socket, sys
        import pytest

        def _connect_loopback():
            with socket.create_server(("127.0.0.1", 0)) as server:
                socket.create_connection(server.getsockname(), timeout=2).close()

        @pytest.mark.network("none")
        def test_marked_none():
            with pytest.raises(OSError) as info:
                _connect_loopback()
            assert info.value.errno == errno.ENETUNREACH

        def test_unmarked_after():
            _connect_loopback()
            assert sys.modules["_tiergate_netguard"]._policy is None
    ''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--tier", "fast")
    result.assert_outcomes(passed=2)
