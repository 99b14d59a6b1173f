"""Leak findings per test, through a real pytest run (pytester, in a subprocess)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data" / "leaks"

LEAKING = {
    "test_leaking.py::test_thread_left_polling": "leak-thread",
    "test_leaking.py::test_popen_never_waited": "leak-process",
    "test_leaking.py::test_file_kept_open": "leak-fd",
    "test_leaking.py::test_socket_kept_open": "leak-socket",
    "test_leaking.py::test_memory_grows": "leak-memory",
    "test_leaking.py::test_env_not_restored": "env-changed",
    "test_leaking.py::test_loop_left_open": "leak-task",
    "test_leaking.py::test_connects_outside_allow_list": "network-blocked",
}


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    shutil.copy(DATA / "conftest_watch.py", pytester.path / "conftest.py")
    monkeypatch.setenv("LEAK_FINDINGS", str(pytester.path / "findings.jsonl"))
    yield pytester.path


def run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, list[dict[str, Any]]]:
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    out = pytester.path / "findings.jsonl"
    findings = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return result, findings


def pairs(findings: list[dict[str, Any]]) -> set[tuple[str | None, str]]:
    return {(f["test"], f["kind"]) for f in findings}


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
def test_each_leak_gives_exactly_its_kind_on_its_test(
    pytester: pytest.Pytester, project: Path, xdist: bool
) -> None:
    shutil.copy(DATA / "test_leaking.py", project)
    result, findings = run(pytester, *(["-n", "2"] if xdist else []))
    result.assert_outcomes(passed=8)
    assert pairs(findings) == set(LEAKING.items()), json.dumps(findings, indent=1)
    assert len(findings) == 8
    by_kind = {f["kind"]: f for f in findings}
    assert all(f["severity"] == "error" for f in findings)
    thread = by_kind["leak-thread"]
    assert "'poller'" in thread["message"] and "poll" in thread["details"]["leaks"][0]["target"]
    assert thread["culprit"]["path"].endswith("test_leaking.py")
    assert thread["culprit"]["function"] == "test_thread_left_polling"
    process = by_kind["leak-process"]
    assert "time.sleep(60)" in process["message"]
    assert process["culprit"]["function"] == "test_popen_never_waited"
    assert "kept.txt" in by_kind["leak-fd"]["message"]
    assert "127.0.0.1:" in by_kind["leak-socket"]["message"]
    assert "LISTEN" in by_kind["leak-socket"]["message"]
    memory = by_kind["leak-memory"]
    assert memory["details"]["allocations"], memory
    assert memory["culprit"]["function"] == "test_memory_grows"
    assert "LEAKY_SETTING" in by_kind["env-changed"]["message"]
    assert "pending task" in by_kind["leak-task"]["message"]
    blocked = by_kind["network-blocked"]
    assert "127.0.0.3" in blocked["message"] and "fast" in blocked["message"]
    # the leaked child was killed when the run ended
    pid = process["details"]["leaks"][0]["pid"]
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
def test_clean_suite_gives_no_findings(
    pytester: pytest.Pytester, project: Path, xdist: bool
) -> None:
    shutil.copy(DATA / "test_clean.py", project)
    result, findings = run(pytester, *(["-n", "2"] if xdist else []))
    result.assert_outcomes(passed=13, xfailed=1)
    assert findings == []


TIER = """\
[tool.tiergate.tiers.probed]
leaks = "fail"
network = ["127.0.0.1", "127.0.0.2"]
"""


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
@pytest.mark.parametrize("suite", ["test_leaking.py", "test_clean.py"])
def test_the_tier_plugin_reports_what_the_watch_alone_reports(
    pytester: pytest.Pytester, suite: str, xdist: bool
) -> None:
    # Under a tier, the plugin opens and closes the test windows in its own wrapper, not the
    # watch's hooks: the same findings on the same tests, in the run's findings.json.
    (pytester.path / "pyproject.toml").write_text(TIER)
    shutil.copy(DATA / suite, pytester.path)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--tier", "probed", *(["-n", "2"] if xdist else [])
    )
    report = json.loads((pytester.path / ".tiergate/probed/findings.json").read_text())
    findings = report["findings"]
    if suite == "test_leaking.py":
        assert pairs(findings) == set(LEAKING.items()), json.dumps(findings, indent=1)
        assert len(findings) == 8
        assert report["outcome"] == "failed" and report["counts"]["passed"] == 8
    else:
        result.assert_outcomes(passed=13, xfailed=1)
        assert findings == [], json.dumps(findings, indent=1)


UNAUDITED_FILE = '''\
# Leaks made in ways that raise no audit event (or that the suite's wrappers never saw), each
# followed by a quiet test: every leak must be found on its own test, and the quiet ones give none.
import os
import select
import sys

KEPT = []


def test_pipe_kept():
    KEPT.append(os.pipe())  # os.pipe raises no audit event: the fd count in the token moves


def test_quiet_after_pipe():
    pass


def test_pipe_end_kept_other_closed():
    read, write = os.pipe()
    os.close(read)  # the lowest free fd is back where it was; the count is one up
    KEPT.append(write)


def test_epoll_and_dup_kept():
    KEPT.append(select.epoll())
    KEPT.append(os.dup(1))


def test_quiet_after_epoll():
    assert KEPT


def test_posix_spawn_never_waited():
    # not subprocess.Popen, so not the wrapper: only the os.posix_spawn audit event says so
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    KEPT.append(os.posix_spawn(sys.executable, argv, os.environ))


def test_quiet_after_spawn():
    pass


def test_cwd_not_restored(tmp_path):
    os.chdir(tmp_path)


def test_quiet_after_chdir():
    pass


PREVIOUS = open(os.devnull)  # opened before any test


def test_closes_an_old_file_and_opens_a_new_one(tmp_path):
    # The fd count is unchanged (one opened, one closed); the ``open`` audit event says so.
    KEPT.append(open(tmp_path / "new.txt", "w"))
    PREVIOUS.close()
'''

UNAUDITED = {
    "test_unaudited.py::test_pipe_kept": "leak-fd",
    "test_unaudited.py::test_pipe_end_kept_other_closed": "leak-fd",
    "test_unaudited.py::test_epoll_and_dup_kept": "leak-fd",
    "test_unaudited.py::test_posix_spawn_never_waited": "leak-process",
    "test_unaudited.py::test_cwd_not_restored": "env-changed",
    "test_unaudited.py::test_closes_an_old_file_and_opens_a_new_one": "leak-fd",
}


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
def test_leaks_no_audit_event_announces_are_found_on_their_own_tests(
    pytester: pytest.Pytester, project: Path, xdist: bool
) -> None:
    """The probes look only when an audit event or a cheap token says something changed; these
    leaks raise no audit event (os.pipe, epoll, dup) or bypass the wrappers (posix_spawn), and
    each is followed by a quiet test that must not inherit it."""
    (project / "test_unaudited.py").write_text(UNAUDITED_FILE)
    result, findings = run(pytester, *(["-n", "2"] if xdist else []))
    result.assert_outcomes(passed=10)
    assert pairs(findings) == set(UNAUDITED.items()), json.dumps(findings, indent=1)
    assert len(findings) == len(UNAUDITED)
    by_test = {f["test"].split("::")[1]: f for f in findings}
    assert "pipe:" in by_test["test_pipe_kept"]["message"]
    assert "anon_inode:[eventpoll]" in by_test["test_epoll_and_dup_kept"]["message"]
    assert "time.sleep(60)" in by_test["test_posix_spawn_never_waited"]["message"]
    assert "working directory" in by_test["test_cwd_not_restored"]["message"]
    assert "new.txt" in by_test["test_closes_an_old_file_and_opens_a_new_one"]["message"]


def test_fixture_leak_is_charged_to_the_fixture_at_its_teardown(
    pytester: pytest.Pytester, project: Path
) -> None:
    pytester.makepyfile(test_fixture="""
        import threading, pytest

        @pytest.fixture(scope="module")
        def worker():
            stop = threading.Event()
            threading.Thread(target=stop.wait, name="never-stopped", daemon=True).start()
            yield
            # forgets stop.set()

        def test_one(worker): pass
        def test_two(worker): pass
    """)
    result, findings = run(pytester)
    result.assert_outcomes(passed=2)
    assert pairs(findings) == {(None, "leak-thread")}
    (finding,) = findings
    assert finding["details"]["owner"] == "fixture 'worker' (module scope)"
    assert finding["location"]["path"].endswith("test_fixture.py")
    assert "never-stopped" in finding["message"]


def test_pool_workers_started_on_demand_belong_to_the_pool_not_the_test(
    pytester: pytest.Pytester, project: Path
) -> None:
    # A ThreadPoolExecutor starts its threads at the first submit that finds none idle: the
    # threads a session fixture's or a module global's pool starts inside a test are the pool's.
    # A pool the test makes and never shuts down is still that test's leak.
    pytester.makepyfile(test_pools="""
        import concurrent.futures, pytest

        GLOBAL = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="glob")

        @pytest.fixture(scope="session")
        def pool():
            executor = concurrent.futures.ThreadPoolExecutor(max_workers=4)
            yield executor
            executor.shutdown(wait=True)

        def test_first_job(pool):
            assert pool.submit(sum, [1, 2]).result() == 3

        def test_jobs_at_once_start_more_workers(pool):
            import threading
            gate = threading.Barrier(3)
            jobs = [pool.submit(gate.wait, 5) for _ in range(3)]
            assert sorted(job.result() for job in jobs) == [0, 1, 2]

        def test_module_global_pool():
            assert GLOBAL.submit(max, 1, 2).result() == 2

        KEPT = []

        def test_own_pool_never_shut_down():
            # kept alive: a pool nobody references is collected, and its workers then exit
            mine = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="mine")
            KEPT.append(mine)
            assert mine.submit(min, 1, 2).result() == 1
    """)
    result, findings = run(pytester)
    result.assert_outcomes(passed=4)
    assert pairs(findings) == {("test_pools.py::test_own_pool_never_shut_down", "leak-thread")}
    assert "'mine_0'" in findings[0]["message"]


def test_allow_leak_marker_and_warn_policy(
    pytester: pytest.Pytester, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_allowed="""
        import os, pytest

        @pytest.mark.allow_leak("env", reason="sets up the locale for the suite",
                                issue="https://example.org/issues/7")
        def test_allowed():
            os.environ["SUITE_LOCALE"] = "C"

        def test_warned():
            os.environ["OTHER"] = "1"
    """)
    monkeypatch.setenv("LEAK_POLICY", "warn")
    result, findings = run(pytester, "--strict-markers")
    result.assert_outcomes(passed=2)
    by_test = {f["test"].split("::")[1]: f for f in findings}
    assert set(by_test) == {"test_allowed", "test_warned"}
    allowed = by_test["test_allowed"]
    assert allowed["severity"] == "warning"
    assert allowed["details"]["allowed"] is True
    assert allowed["details"]["reason"] == "sets up the locale for the suite"
    assert allowed["details"]["issue"] == "https://example.org/issues/7"
    assert by_test["test_warned"]["severity"] == "warning"
    assert "allowed" not in by_test["test_warned"]["details"]


def test_thresholds_allow_a_number_of_leaks(
    pytester: pytest.Pytester, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_two_files="""
        KEPT = []
        def test_one_file(tmp_path):
            KEPT.append(open(tmp_path / "a", "w"))
        def test_two_files(tmp_path):
            KEPT.extend([open(tmp_path / "b", "w"), open(tmp_path / "c", "w")])
    """)
    monkeypatch.setenv("LEAK_THRESHOLDS", json.dumps({"fds": 1}))
    result, findings = run(pytester)
    result.assert_outcomes(passed=2)
    assert pairs(findings) == {("test_two_files.py::test_two_files", "leak-fd")}


def test_resource_warning_is_mapped_to_its_test(pytester: pytest.Pytester, project: Path) -> None:
    pytester.makepyfile(test_warns="""
        import gc
        def test_drops_an_open_file(tmp_path):
            open(tmp_path / "a", "w")
            gc.collect()
        def test_quiet():
            pass
    """)
    result, findings = run(pytester)
    result.assert_outcomes(passed=2)
    assert pairs(findings) == {("test_warns.py::test_drops_an_open_file", "resource-warning")}
    assert "unclosed file" in findings[0]["message"]
