"""``tiergate run``: the supervisor around pytest, with real processes and real signals."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from supervised import (
    events,
    findings,
    make_project,
    processes_in,
    processes_running,
    results,
    run_tiergate,
    tiergate_argv,
    wait_for_event,
)

from tiergate.supervisor.procs import StartedDuring

TEN_TESTS_ONE_KILLED = """
import os, signal, time
import pytest

@pytest.mark.parametrize("n", range(10))
def test_step(n):
    time.sleep(0.2)
    if n == 3 and not os.path.exists("killed-once"):
        open("killed-once", "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_pytest_killed_mid_run_resumes_with_the_tests_left(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"test_steps.py": TEN_TESTS_ONE_KILLED})
    proc = run_tiergate(project, "run", "--tier", "fast")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "resuming with the 6 tests not run yet" in proc.stdout
    data = findings(project)
    assert data["counts"]["passed"] == 9 and data["counts"]["failed"] == 1
    assert [(f["kind"], f["test"]) for f in data["findings"]] == [
        ("crash", "test_steps.py::test_step[3]")
    ]
    junit = (results(project) / "junit.xml").read_text()
    assert junit.count("<testcase") == 10
    assert junit.count("<failure") == 1 and 'type="crash"' in junit


def test_budget_stops_a_test_that_ignores_sigterm(tmp_path: Path) -> None:
    project = make_project(
        tmp_path,
        {
            "test_budget.py": """
        import signal, time
        def test_first():
            pass
        def test_ignores_sigterm():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            while True:
                time.sleep(0.1)
        def test_never_reached():
            pass
    """
        },
    )
    started = time.monotonic()
    proc = run_tiergate(
        project,
        "run",
        "--tier",
        "fast",
        "--budget",
        "6s",
        "--grace",
        "2s",
        "--test-timeout",
        "60s",
        timeout=60,
    )
    took = time.monotonic() - started
    assert proc.returncode == 1
    assert (
        took < 6 + 2 + 20
    )  # a correctness bound (it would otherwise run forever), not a benchmark
    data = findings(project)
    assert [(f["kind"], f["test"]) for f in data["findings"]] == [
        ("job-timeout", "test_budget.py::test_ignores_sigterm")
    ]
    assert data["counts"]["passed"] == 1 and data["counts"]["timeout"] == 1
    assert data["counts"]["not_run"] == 1
    junit = (results(project) / "junit.xml").read_text()
    assert "not run: the tier's budget ran out" in junit
    assert not processes_in(project), "the test that ignored SIGTERM is still running"


def test_sigint_to_the_supervisor_still_writes_every_result(tmp_path: Path) -> None:
    project = make_project(
        tmp_path,
        {
            "test_cancel.py": """
        import time
        def test_done():
            pass
        def test_waits():
            time.sleep(600)
        def test_later():
            pass
    """
        },
    )
    supervisor = subprocess.Popen(
        tiergate_argv("run", "--tier", "fast", "--test-timeout", "5m"),
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_event(project, lambda e: e["event"] == "test-start" and "waits" in e["nodeid"])
        supervisor.send_signal(signal.SIGINT)
        out, _ = supervisor.communicate(timeout=60)  # a correctness bound, not a benchmark
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
    assert supervisor.returncode == 130, out
    assert "SIGINT received" in out
    for name in ("events.jsonl", "junit.xml", "findings.json"):
        assert (results(project) / name).exists()
    data = findings(project)
    assert data["counts"]["passed"] == 1 and data["counts"]["failed"] == 1
    assert data["counts"]["not_run"] == 1
    assert any(e["event"] == "cancelled" and e["signal"] == "SIGINT" for e in events(project))


def test_a_test_holding_the_gil_is_killed_and_the_run_resumes(tmp_path: Path) -> None:
    project = make_project(
        tmp_path,
        {
            "test_gil.py": """
        def test_before():
            pass
        def test_busy_in_c():
            sum(range(10**13))
        def test_after():
            pass
    """
        },
    )
    proc = run_tiergate(project, "run", "--tier", "fast", "--test-timeout", "2s", "--grace", "1s")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = findings(project)
    assert data["counts"]["passed"] == 2 and data["counts"]["timeout"] == 1
    timeouts = [f for f in data["findings"] if f["kind"] == "timeout"]
    assert [f["test"] for f in timeouts] == ["test_gil.py::test_busy_in_c"]
    assert timeouts[0]["details"]["hard"] is True
    assert timeouts[0]["message"].startswith("timeout: ran past its 2s limit")


def test_all_passing_exits_zero(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"test_ok.py": "def test_a(): pass\ndef test_b(): pass\n"})
    proc = run_tiergate(project, "run", "--tier", "fast")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert findings(project)["outcome"] == "passed"
    assert "2 passed" in proc.stdout


def test_pytest_arguments_pass_through(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"test_ok.py": "def test_a(): pass\ndef test_b(): pass\n"})
    proc = run_tiergate(project, "run", "--tier", "fast", "--", "-k", "test_a")
    assert proc.returncode == 0
    assert findings(project)["counts"]["passed"] == 1


def test_no_tests_selected_exits_five(tmp_path: Path) -> None:
    project = make_project(
        tmp_path,
        {
            "test_int.py": """
        import pytest
        @pytest.mark.integration
        def test_db(): pass
    """
        },
    )
    proc = run_tiergate(project, "run", "--tier", "fast")
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert "tier fast: NO TESTS in" in proc.stdout and "PASSED" not in proc.stdout


@pytest.mark.parametrize(
    ("pyproject", "args", "expected"),
    [
        (
            '[tool.tiergate.tiers.fast]\ntest-timeout = "5x"\n',
            (),
            "[tool.tiergate.tiers.fast] test-timeout = '5x' is not valid",
        ),
        ('[tool.tiergate.tiers.fast]\nmarkers = "not (slow"\n', (), "not a pytest -m expression"),
        ("", ("--budget", "soon"), "--budget 'soon' is not valid"),
        ("", ("--tier", "weekly"), "unknown tier 'weekly'"),
    ],
)
def test_bad_config_is_one_line_and_exit_two(
    tmp_path: Path, pyproject: str, args: tuple[str, ...], expected: str
) -> None:
    project = make_project(tmp_path, {"test_ok.py": "def test_a(): pass\n"}, pyproject)
    argv = ["run", "--tier", "fast", *args] if "--tier" not in args else ["run", *args]
    proc = run_tiergate(project, *argv)
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_processes_left_behind_are_killed_and_named(tmp_path: Path) -> None:
    marker = f"orphan-{uuid.uuid4().hex}"
    project = make_project(
        tmp_path,
        {
            "test_orphan.py": f"""
        import subprocess, sys
        def test_starts_a_daemon():
            # a new session: out of pytest's process group, orphaned when pytest exits
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "{marker}"],
                             start_new_session=True)
    """
        },
        '[tool.tiergate.tiers.fast]\nleaks = "off"\n',  # with probes on, leak-process comes first
    )
    proc = run_tiergate(project, "run", "--tier", "fast")
    assert not processes_running(marker), "the run left a process behind"
    leftovers = [f for f in findings(project)["findings"] if f["kind"] == "leftover-process"]
    assert leftovers and marker in leftovers[0]["message"], proc.stdout
    # named on the test that started it, from the PYTEST_CURRENT_TEST the process inherited
    assert leftovers[0]["test"] == "test_orphan.py::test_starts_a_daemon"
    assert leftovers[0]["message"].endswith(
        "; it was started during the call of test_orphan.py::test_starts_a_daemon"
    )


def test_results_dir_option_and_fresh_results(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"test_ok.py": "def test_a(): pass\n"})
    out = tmp_path / "out"
    run_tiergate(project, "run", "--tier", "fast", "--results-dir", str(out))
    run_tiergate(project, "run", "--tier", "fast", "--results-dir", str(out))
    lines = (out / "events.jsonl").read_text().splitlines()
    assert sum('"event":"run-start"' in line for line in lines) == 1  # a new run starts afresh
    # a results dir outside the project must not move pytest's rootdir (paths stay project-relative)
    assert '"path":"test_ok.py"' in "".join(lines)


def test_the_run_reports_when_its_parent_dies(tmp_path: Path) -> None:
    """A CI runner that kills the step's shell outright must not leave an unseen run going on."""
    project = make_project(
        tmp_path,
        {
            "test_slow.py": """
        import time
        def test_waits():
            time.sleep(600)
    """
        },
    )
    command = " ".join(tiergate_argv("run", "--tier", "fast", "--test-timeout", "5m"))
    shell = subprocess.Popen(["sh", "-c", f"{command} & wait"], cwd=project)
    try:
        wait_for_event(project, lambda e: e["event"] == "test-start")
        shell.kill()
        shell.wait()
        wait_for_event(project, lambda e: e["event"] == "run-finish", timeout=20)
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()
    assert any(e["event"] == "cancelled" and e["signal"] == "SIGTERM" for e in events(project))
    # run-finish closes the log; the result files follow it, from the same model
    deadline = time.monotonic() + 10
    while not (results(project) / "junit.xml").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (results(project) / "junit.xml").exists()
    while processes_in(project) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not processes_in(project)


@pytest.mark.parametrize(
    ("inherited", "test", "phase"),
    [
        ("tests/test_a.py::test_b (call)", "tests/test_a.py::test_b", "call"),
        ("tests/test_a.py::test_b[x (y)] (setup)", "tests/test_a.py::test_b[x (y)]", "setup"),
        ("tests/test_a.py::test_b", "tests/test_a.py::test_b", None),
        (None, None, None),
    ],
)
def test_the_test_a_process_inherited_is_read_from_pytest_current_test(
    inherited: str | None, test: str | None, phase: str | None
) -> None:
    during = StartedDuring.parse(inherited)
    assert (during.test, during.phase) == (test, phase) if during else test is None


# -- the exit watch (issue 15): slow is not stuck, daemon threads are never waited for ----------

EXIT_TIER = """
[tool.tiergate.tiers.fast]
test-timeout = "30s"
grace = "2s"
leaks = "off"
"""

DAEMON_IN_ACCEPT = """
    import socket, threading

    def serve(server):
        server.accept()  # nobody ever connects

    def test_starts_a_daemon_server():
        server = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=serve, args=(server,), name="daemon-server", daemon=True).start()
"""


def _exit_hangs(project: Path) -> list[dict[str, object]]:
    return [f for f in findings(project)["findings"] if f["kind"] == "exit-hang"]


def test_a_daemon_thread_in_accept_and_a_slow_wrap_up_are_no_exit_hang(tmp_path: Path) -> None:
    # pytest's wrap-up works for three graces after the session (a big terminal summary on a
    # loaded machine), while a daemon thread sits in accept: Python exits all the same.
    project = make_project(tmp_path, {
        "test_daemon.py": DAEMON_IN_ACCEPT,
        "conftest.py": """
            import time

            def pytest_unconfigure(config):
                end = time.monotonic() + 6
                while time.monotonic() < end:
                    pass
        """,
    }, EXIT_TIER)
    proc = run_tiergate(project, "run", "--tier", "fast")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _exit_hangs(project) == []
    assert [e["returncode"] for e in events(project) if e["event"] == "pytest-exit"] == [0]


def test_a_non_daemon_thread_blocked_forever_is_named_not_the_daemon_one(tmp_path: Path) -> None:
    project = make_project(tmp_path, {
        "test_daemon.py": DAEMON_IN_ACCEPT,
        "test_forever.py": """
            import threading

            def wait_forever():
                threading.Event().wait()

            def test_starts_a_worker():
                threading.Thread(target=wait_forever, name="forever-worker").start()
        """,
    }, EXIT_TIER)
    proc = run_tiergate(project, "run", "--tier", "fast")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert findings(project)["counts"]["passed"] == 2  # the results stand
    [hang] = _exit_hangs(project)
    assert "non-daemon threads: thread 'forever-worker'" in str(hang["message"])
    assert "daemon-server" not in str(hang["message"]) and "accept" not in str(hang["message"])
    assert hang["culprit"] == {"path": "test_forever.py", "line": 5, "function": "wait_forever",
                               "reason": "thread 'forever-worker' is still running"}


def test_an_atexit_handler_that_never_returns_is_named(tmp_path: Path) -> None:
    project = make_project(tmp_path, {
        "test_daemon.py": DAEMON_IN_ACCEPT,
        "test_atexit.py": """
            import atexit, threading

            def flush_forever():
                threading.Event().wait()

            def test_registers_a_handler():
                atexit.register(flush_forever)
        """,
    }, EXIT_TIER)
    proc = run_tiergate(project, "run", "--tier", "fast")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [hang] = _exit_hangs(project)
    assert "the atexit handler flush_forever (test_atexit.py) has not returned; stuck in " \
        "flush_forever (test_atexit.py:5)" in str(hang["message"])
    culprit = hang["culprit"]
    assert isinstance(culprit, dict)
    assert (culprit["path"], culprit["function"]) == ("test_atexit.py", "flush_forever")


# The supervisor, with its slow-note dump made to take five minutes: the dump writes a marker
# file and sleeps. Everything else is the real `tiergate run`.
SLOW_DUMP_NEVER_ENDS = """
import sys, time
from pathlib import Path

from tiergate.cli import main
from tiergate.supervisor.supervise import Supervisor

def slow_dump(self, test):
    Path(sys.argv[1]).write_text(test.nodeid)
    time.sleep(300)
    raise AssertionError("the slow dump was waited for")

Supervisor._slow_dump = slow_dump
sys.exit(main(sys.argv[2:]))
"""


def test_a_sigterm_during_a_slow_notes_dump_is_acted_on_at_once(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", {"test_slow.py": """
        import signal, time
        def test_done():
            pass
        def test_slow():
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})  # no soft timeout
            time.sleep(600)
    """})
    marker = tmp_path / "slow-dump-started"
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SLOW_DUMP_NEVER_ENDS, str(marker),
         "run", "--tier", "fast", "--test-timeout", "1s", "--grace", "60"],
        cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert time.monotonic() < deadline and supervisor.poll() is None, "no slow note"
            time.sleep(0.05)
        supervisor.send_signal(signal.SIGTERM)
        # A correctness bound, far below the dump's 300 s: the cancel did not wait for it.
        out, _ = supervisor.communicate(timeout=60)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
    assert supervisor.returncode == 128 + signal.SIGTERM, out
    assert "SIGTERM received" in out
    data = findings(project)
    assert data["counts"]["passed"] == 1 and data["counts"]["failed"] == 1
    assert any(e["event"] == "cancelled" and e["nodeid"] == "test_slow.py::test_slow"
               for e in events(project))
    assert not any(e["event"] == "slow" for e in events(project))  # its dump never came
    assert not processes_in(project), "the slow test is still running"


def test_the_supervisor_starts_pytest_before_loading_what_only_later_steps_need() -> None:
    # Every millisecond before pytest starts is a millisecond on every run: psutil, the tree
    # samplers, the results model, findings and dumps load once pytest is started (supervise.py
    # _load_machinery), the hang diagnosis when something hangs, the report writers while pytest
    # starts up (results/files.py load_writers), logging only for --debug.
    later = ("psutil", "tiergate.diagnose.culprit", "tiergate.supervisor.treewatch",
             "tiergate.report.summary", "tiergate.results.junit_out", "tiergate.results.model",
             "tiergate.protocol.findings", "tiergate.diagnose.treedumps", "logging", "html",
             "concurrent.futures")
    code = ("import sys\nimport tiergate.cli.run, tiergate.supervisor.supervise\n"
            f"print(sorted(m for m in {later!r} if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]", done.stdout
