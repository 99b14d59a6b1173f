"""``--debug`` (and ``TIERGATE_DEBUG=1``): the supervisor's and the plugin's decisions, told on
stderr and in ``debug.log`` in the results dir, redacted like every other byte of a run; and not
a line of it without being asked."""

from __future__ import annotations

from pathlib import Path

import pytest
from supervised import make_project, results, run_tiergate

from tiergate.protocol import environ, layout

SECRET = "hunter2hunter2hunter2"  # in the environment as a token, and on the command line

TESTS = """
import socket
import threading
import time


def test_first():
    pass


def test_leaks_a_thread():  # the leak watch suspects it, runs it again, confirms
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()


def test_busy_in_c_holding_the_gil():
    sum(range(10**13))  # no signal handler runs: only the supervisor's hard timeout ends it


def test_refused_connection():
    try:  # a loopback address outside the tier's allow-list: the guard refuses it
        socket.create_connection(("127.0.0.3", 9), timeout=0.2)
    except OSError:
        pass
"""
PYPROJECT = """
[tool.tiergate.tiers.fast]
test-timeout = "1s"
grace = "1s"
network = ["127.0.0.2"]
"""


def _run(project: Path, *args: str) -> tuple[int, str]:
    proc = run_tiergate(project, "run", "--tier", "fast", *args, timeout=120)
    return proc.returncode, proc.stderr


def test_debug_tells_the_attempts_the_hard_timeout_and_the_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path, {"test_debug_project.py": TESTS}, PYPROJECT)
    monkeypatch.setenv("DEBUG_TEST_API_TOKEN", SECRET)
    code, stderr = _run(project, "--debug", "--", "-k", f"not {SECRET}")
    assert code == 1, stderr
    log = (results(project) / layout.DEBUG_LOG_FILE).read_text()
    hung = "test_debug_project.py::test_busy_in_c_holding_the_gil"
    for told in (
        "tiergate.supervisor",
        "tier fast resolved: {",
        "attempt 1: ",
        f"hard timeout: {hung} (pid ",
        "culprit test_busy_in_c_holding_the_gil (test_debug_project.py:",
        "attempt 1 ended: hard-timeout",
        "(resume: 1 of 4 tests left)",
        "attempt 2 ended: finished",
        "tiergate.plugin",
        "selected 1 of 4 tests",  # the resumed attempt's selection, in the plugin
        "leak watch: test_debug_project.py::test_leaks_a_thread left thread 'Thread-1 (sleep)'",
        "run again 1 time(s): {'leak-thread': 'leak'}",
        "finding leak-thread: ",
        "finding network-blocked: ",
    ):
        assert told in log, f"{told!r} not in debug.log:\n{log}"
    assert "attempt 1: " in stderr and "finding network-blocked: " in stderr  # stderr too
    assert SECRET not in log and SECRET not in stderr
    assert f"-k not {'***'}" in log  # the command line is there, masked


def test_without_debug_there_is_no_log_and_no_extra_line(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"test_quiet.py": "def test_ok():\n    pass\n"})
    code, stderr = _run(project)
    assert code == 0, stderr
    assert not (results(project) / layout.DEBUG_LOG_FILE).exists()
    assert "tiergate.supervisor" not in stderr and "tiergate.plugin" not in stderr, stderr


def test_a_new_run_without_debug_clears_the_last_debug_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path, {"test_quiet.py": "def test_ok():\n    pass\n"})
    monkeypatch.setenv(environ.DEBUG, "1")  # the variable, as any process may have it
    assert _run(project)[0] == 0
    assert "attempt 1 ended: finished" in (results(project) / layout.DEBUG_LOG_FILE).read_text()
    monkeypatch.delenv(environ.DEBUG)
    assert _run(project)[0] == 0
    assert not (results(project) / layout.DEBUG_LOG_FILE).exists()  # no stale decisions


def test_plugin_lines_go_to_stderr_not_into_the_test_output(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyprojecttoml('[tool.tiergate.tiers.fast]\nnetwork = ["127.0.0.2"]\n')
    pytester.makepyfile(test_refused="""
        import socket

        def test_refused():
            print("the test's own line")
            socket.create_connection(("127.0.0.3", 9), timeout=0.2)
    """)
    monkeypatch.setenv(environ.DEBUG, "1")
    result = pytester.runpytest_subprocess("--tier", "fast", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    told = "finding network-blocked: "
    assert told in (pytester.path / ".tiergate" / "fast" / layout.DEBUG_LOG_FILE).read_text()
    assert told in result.stderr.str()
    assert "the test's own line" in result.stdout.str()  # its captured output is shown ...
    assert told not in result.stdout.str()  # ... and our line is not part of it
