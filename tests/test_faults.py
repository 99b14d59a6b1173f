"""The verdict under faults: whatever breaks — the event log, the results dir, collection, the
interpreter's exit, the supervisor itself — ``tiergate run`` ends with a true verdict, keeps every
result it had, and leaves no process of the run behind. Real processes, real signals, real
sockets on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from supervised import (
    events,
    findings,
    make_project,
    processes_in,
    results,
    run_tiergate,
    tiergate_argv,
    wait_for_event,
)

FAST = """
[tool.tiergate.tiers.fast]
test-timeout = "30s"
collect-timeout = "2s"
grace = "2s"
"""


def _gone_within(folder: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not processes_in(folder):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A database port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()


# -- the event log -----------------------------------------------------------------------------


def test_a_test_that_deletes_the_event_log_cannot_turn_the_run_green(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"test_cleanup.py": """
        from pathlib import Path

        def test_fails():
            assert 1 == 2

        def test_cleans_up_everything():
            for path in Path(".tiergate").rglob("events.jsonl"):
                path.unlink()
    """}, FAST)
    proc = run_tiergate(project, "run", "--tier", "fast")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = findings(project)
    assert data["counts"]["failed"] == 1 and data["counts"]["passed"] == 1
    lost = [f for f in data["findings"] if f["kind"] == "run-error"]
    assert lost and "events.jsonl was deleted" in lost[0]["message"]
    assert "test_fails" in (results(project) / "junit.xml").read_text()
    assert any(e["event"] == "test-finish" for e in events(project))  # restored


CUTS_THE_LOG = """
    import os, time
    from pathlib import Path

    def test_before():
        time.sleep(1.2)  # past the plain run's batch: its events are written before the cut

    def test_flushes():
        pass

    def test_cuts_the_log():
        for path in Path(".tiergate").rglob("events.jsonl"):
            os.truncate(path, 0)

    def test_after():
        pass
"""


def test_a_test_that_truncates_the_event_log_cannot_turn_the_run_green(tmp_path: Path) -> None:
    # Under the supervisor the file keeps its name, so nothing can be put back: the run says
    # what happened and keeps what was written after the cut.
    project = make_project(tmp_path / "p", {"test_cut.py": CUTS_THE_LOG}, FAST)
    proc = run_tiergate(project, "run", "--tier", "fast")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "events.jsonl was truncated by the run" in proc.stdout + proc.stderr
    data = findings(project)
    lost = [f for f in data["findings"] if f["kind"] == "run-error"]
    assert lost and "events.jsonl was truncated during the run" in lost[0]["message"]
    # what was written after the cut is read (what fell in it is lost, and the run says so)
    suite = ET.parse(results(project) / "junit.xml").getroot()
    after = suite.find(".//testcase[@name='test_after']")
    assert after is not None and len(after) == 0  # passed: no <skipped> "not run" in it


@pytest.mark.parametrize("cut", ["deleted", "truncated"])
def test_a_plain_tier_run_whose_event_log_is_cut_is_not_green(tmp_path: Path, cut: str) -> None:
    # `pytest --tier` reads the log back at its end: a test that deleted it left an empty
    # report and exit 0; one that truncated it, a report without the tests before the cut.
    code = CUTS_THE_LOG if cut == "truncated" else CUTS_THE_LOG.replace(
        "os.truncate(path, 0)", "path.unlink()")
    project = make_project(tmp_path / "p", {"test_cut.py": code}, FAST)
    proc = subprocess.run([sys.executable, "-m", "pytest", "--tier", "fast", "-p",
                           "no:cacheprovider"], cwd=project, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 error finding (run-error)" in proc.stdout + proc.stderr
    data = findings(project)
    [lost] = [f for f in data["findings"] if f["kind"] == "run-error"]
    assert f"events.jsonl was {cut} during the run" in lost["message"]
    if cut == "deleted":  # the writer still held the file: every event kept, the file put back
        assert data["counts"]["passed"] == 4
        assert any(e["event"] == "test-finish" for e in events(project))


MIXED = """
import sys
import threading
import pytest

def test_passes():
    pass

def test_fails():
    print("out")
    assert 1 == 2

@pytest.mark.skip(reason="no")
def test_skipped():
    pass

@pytest.mark.xfail
def test_xfails():
    assert 0

def test_leaks_a_thread():
    threading.Thread(target=threading.Event().wait, daemon=True).start()

def test_caught_output():
    print("to stdout"); print("to stderr", file=sys.stderr)
"""

APPENDS = """
import json
import os

def test_appends_a_line_to_the_log():
    path = os.path.join(os.environ["TIERGATE_TEST_RESULTS"], "events.jsonl")
    finding = {"kind": "run-error", "test": None, "severity": "error",
               "message": "a line this test appended"}
    with open(path, "a") as log:
        log.write(json.dumps({"event": "finding", "t": 1.0, "pid": 1, "finding": finding}) + "\\n")
"""


def _plain_tier_run(project: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "--tier", "fast", "-p",
                           "no:cacheprovider"], cwd=project, capture_output=True, text=True,
                          env={**os.environ, "TIERGATE_DEBUG": "1", **env})


def test_a_plain_runs_report_from_its_records_is_the_one_its_log_reads_back_as(
    tmp_path: Path,
) -> None:
    # A plain run builds its report from the records as it writes them; the same files must
    # come of reading its events.jsonl back (what every other reader of the dir does).
    from tiergate.report.summary import render_summary
    from tiergate.results.junit_out import write_junit
    from tiergate.results.model import load_results_dir

    project = make_project(tmp_path / "p", {"test_mixed.py": MIXED}, FAST)
    proc = _plain_tier_run(project)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "the report: from the records as written" in proc.stderr
    out = results(project)
    again = load_results_dir(out)
    write_junit(again, tmp_path / "junit.xml", out)
    again.write_findings(tmp_path)
    assert (tmp_path / "junit.xml").read_text() == (out / "junit.xml").read_text()
    assert (tmp_path / "findings.json").read_text() == (out / "findings.json").read_text()
    assert render_summary(again, timeline=False) == (out / "summary.md").read_text()
    kinds = {f["kind"] for f in findings(project)["findings"]}
    assert "leak-thread" in kinds, kinds


def test_a_line_someone_else_wrote_to_the_log_is_in_the_plain_runs_report(
    tmp_path: Path,
) -> None:
    # The file holds more than this process wrote: the report is read back from it.
    project = make_project(tmp_path / "p", {"test_appends.py": APPENDS}, FAST)
    proc = _plain_tier_run(project, TIERGATE_TEST_RESULTS=str(results(project)))
    assert "the report: read back from events.jsonl" in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stdout + proc.stderr
    messages = [f["message"] for f in findings(project)["findings"]]
    assert "a line this test appended" in messages, messages


def test_a_second_run_on_the_same_results_dir_is_refused(tmp_path: Path) -> None:
    refused = tmp_path / "second-run-done"
    project = make_project(tmp_path / "p", {"test_slow.py": f"""
        import os, time

        def test_fails_slowly():  # in flight until the second run is over (test-timeout 30 s)
            deadline = time.monotonic() + 25
            while not os.path.exists({str(refused)!r}) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert False
    """}, FAST)
    first = subprocess.Popen(tiergate_argv("run", "--tier", "fast"), cwd=project,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_event(project, lambda e: e["event"] == "test-start")
        second = run_tiergate(project, "run", "--tier", "fast")
        refused.touch()
        assert second.returncode == 2
        assert second.stderr.strip().count("\n") == 0
        assert "in use by another tiergate run" in second.stderr
        assert first.wait(timeout=60) == 1  # and it kept its own failure
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate()
    assert findings(project)["counts"]["failed"] == 1


# -- the results dir -----------------------------------------------------------------------------


def test_a_results_dir_of_the_users_is_never_cleared(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"test_ok.py": "def test_ok():\n    pass\n"}, FAST)
    (project / "summary.md").write_text("the user's own notes")
    (project / "dumps").mkdir()
    (project / "dumps" / "keep.txt").write_text("keep")
    for target in (".", "..", str(project)):
        proc = run_tiergate(project, "run", "--tier", "fast", "--results-dir", target)
        assert proc.returncode == 2, (target, proc.stdout, proc.stderr)
        assert proc.stderr.startswith("tiergate: error: ") and proc.stderr.count("\n") == 1
    notes = project / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    proc = run_tiergate(project, "run", "--tier", "fast", "--results-dir", "notes")
    assert proc.returncode == 2 and "did not make (todo.txt)" in proc.stderr
    (project / "link").symlink_to(notes)
    proc = run_tiergate(project, "run", "--tier", "fast", "--results-dir", "link")
    assert proc.returncode == 2 and "symlink" in proc.stderr
    (project / "afile").write_text("x")
    proc = run_tiergate(project, "run", "--tier", "fast", "--results-dir", "afile")
    assert proc.returncode == 2 and "not a directory" in proc.stderr
    assert (project / "summary.md").read_text() == "the user's own notes"
    assert (project / "dumps" / "keep.txt").read_text() == "keep"
    assert (notes / "todo.txt").read_text() == "mine"
    # its own dir, from an earlier run (marked), is cleared and reused
    assert run_tiergate(project, "run", "--tier", "fast").returncode == 0
    assert run_tiergate(project, "run", "--tier", "fast").returncode == 0


def test_a_results_dir_removed_mid_run_still_gets_a_true_verdict(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"test_rm.py": """
        import shutil

        def test_removes_the_results():
            shutil.rmtree(".tiergate")

        def test_fails_after():
            assert False
    """}, FAST)
    proc = run_tiergate(project, "run", "--tier", "fast")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    data = findings(project)
    assert data["counts"]["failed"] == 1 and data["counts"]["passed"] == 1
    assert "run-error" in {f["kind"] for f in data["findings"]}


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_is_one_line_and_no_orphan(tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        project = make_project(tmp_path / "p", {"test_loud.py": """
            import pytest

            @pytest.mark.parametrize("n", range(400))
            def test_prints(n):
                print("x" * 2000)
                assert n != 7
        """}, FAST)
        proc = run_tiergate(project, "run", "--tier", "fast", "--results-dir", str(full / "r"))
        out = proc.stdout + proc.stderr
        assert proc.returncode in (1, 2), out  # never 0, and no traceback
        assert "Traceback" not in out
        assert "No space left on device" in out
        assert _gone_within(project, 5)
    finally:
        subprocess.run(["umount", "-l", str(full)], check=False)


# -- collection and exit -------------------------------------------------------------------------


def test_a_module_whose_import_hangs_is_named_and_the_rest_runs(
    tmp_path: Path, silent_server: int
) -> None:
    project = make_project(tmp_path / "p", {
        "orchestrator.py": f"""
            import socket

            def connect():
                conn = socket.create_connection(("127.0.0.1", {silent_server}))
                conn.recv(1)  # the database accepts and never answers
                return conn

            DB = connect()
        """,
        "test_a_first.py": "def test_one():\n    pass\n",
        "test_b_orchestrated.py": "import orchestrator\n\ndef test_uses_db():\n    pass\n",
        "test_c_last.py": "def test_two():\n    pass\n\ndef test_three():\n    pass\n",
    }, FAST)
    started = time.monotonic()
    proc = run_tiergate(project, "run", "--tier", "fast")
    took = time.monotonic() - started
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert took < 30, took  # far below the budget: the hang was caught, not waited out
    data = findings(project)
    assert data["counts"]["passed"] == 3, out
    assert data["counts"]["error"] == 1
    hang = next(f for f in data["findings"] if f["kind"] == "collect-timeout")
    assert hang["test"] == "test_b_orchestrated.py"
    assert hang["culprit"]["function"] == "connect"
    assert hang["culprit"]["path"] == "orchestrator.py"
    assert "recv" in hang["message"] and "collect-timeout" in hang["message"]
    assert hang["dump"] and (results(project) / hang["dump"]).is_file()
    junit = (results(project) / "junit.xml").read_text()
    assert "test_b_orchestrated" in junit and "<error" in junit
    assert _gone_within(project, 5)


def test_a_module_that_exits_at_import_is_named_and_the_rest_runs(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {
        "test_a.py": "def test_one():\n    pass\n",
        "test_b_exits.py": "import os\nos._exit(0)\n",
        "test_c.py": "def test_two():\n    pass\n",
    }, FAST)
    proc = run_tiergate(project, "run", "--tier", "fast")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = findings(project)
    assert data["counts"]["passed"] == 2 and data["counts"]["error"] == 1
    crash = next(f for f in data["findings"] if f["kind"] == "crash")
    assert crash["test"] == "test_b_exits.py"
    assert "while collecting test_b_exits.py" in crash["message"]


def test_pytest_that_cannot_exit_is_killed_and_its_threads_named(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"test_workers.py": """
        import threading

        first, second = threading.Lock(), threading.Lock()

        def worker_a():
            with first:
                ready.wait()
                with second:
                    pass

        def worker_b():
            with second:
                ready.wait()
                with first:
                    pass

        ready = threading.Barrier(2)

        def test_starts_workers():
            threading.Thread(target=worker_a, name="worker-a").start()
            threading.Thread(target=worker_b, name="worker-b").start()
    """}, FAST)
    proc = run_tiergate(project, "run", "--tier", "fast")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    data = findings(project)
    assert data["counts"]["passed"] == 1  # the result stands
    hang = next(f for f in data["findings"] if f["kind"] == "exit-hang")
    assert "'worker-a'" in hang["message"] and "'worker-b'" in hang["message"]
    assert hang["culprit"]["path"] == "test_workers.py"
    assert hang["culprit"]["function"] in ("worker_a", "worker_b")
    assert _gone_within(project, 5)


# -- the supervisor's own death -------------------------------------------------------------------


def test_pytest_dies_with_a_killed_supervisor_and_the_report_names_the_test(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path / "p", {"test_stuck.py": """
        import subprocess, sys, time

        def test_passes():
            pass

        def test_stuck_with_a_child():
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
            open("child-started", "w").close()  # Popen returns once the child runs
            time.sleep(300)
    """}, FAST.replace('"30s"', '"5m"'))
    supervisor = subprocess.Popen(tiergate_argv("run", "--tier", "fast"), cwd=project,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (project / "child-started").exists():
            assert time.monotonic() < deadline, "the test never started its child"
            time.sleep(0.05)
        os.kill(supervisor.pid, signal.SIGKILL)  # the OOM killer, kill -9, a test killing it
        supervisor.wait(timeout=10)
        assert _gone_within(project, 5), "pytest or its child outlived the supervisor"
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
    report = subprocess.run(tiergate_argv("report", "--results-dir", str(results(project))),
                            cwd=project, capture_output=True, text=True, check=False)
    assert report.returncode == 1, report.stdout + report.stderr
    data = json.loads((results(project) / "findings.json").read_text())
    assert data["outcome"] == "failed"
    assert data["counts"]["passed"] == 1 and data["counts"]["failed"] == 1
    assert data["counts"]["not_run"] == 0
    summary = (results(project) / "summary.md").read_text()
    assert "test\\_stuck\\_with\\_a\\_child" in summary or "test_stuck_with_a_child" in summary


def test_a_signal_after_the_tests_waits_for_the_result_files(tmp_path: Path) -> None:
    from tiergate.settings.config import load_config
    from tiergate.supervisor.supervise import RunPlan, Supervisor

    make_project(tmp_path, {})
    tier = load_config(tmp_path).tier("fast")
    supervisor = Supervisor(RunPlan(tier=tier, results_dir=tmp_path / "r", root=tmp_path))
    supervisor._on_signal(signal.SIGTERM, None)  # while pytest runs: a cancel
    assert supervisor.cancel_signal == signal.SIGTERM and supervisor.late_signal is None
    supervisor.cancel_signal, supervisor.tests_over = None, True
    supervisor._on_signal(signal.SIGTERM, None)  # while the files are written: noted, not obeyed
    assert supervisor.cancel_signal is None and supervisor.late_signal == signal.SIGTERM
