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
    events = [json.loads(line) for line in
              (pytester.path / ".tiergate/probed/events.jsonl").read_text().splitlines()]
    checks = {e["nodeid"]: e for e in events if e["event"] == "leak-check"}
    if suite == "test_leaking.py":
        assert pairs(findings) == set(LEAKING.items()), json.dumps(findings, indent=1)
        assert len(findings) == 8
        assert report["outcome"] == "failed" and report["counts"]["passed"] == 8
        # every leak was confirmed by running its test again, and each repeat is on record
        repeated = {test for test, kind in LEAKING.items() if kind.startswith("leak-")}
        assert set(checks) == repeated
        assert all(check["result"] == "leak" and check["repeats"] >= 1
                   for check in checks.values()), checks
        for finding in findings:
            if finding["kind"].startswith("leak-"):
                check = {k: v for k, v in checks[finding["test"]].items()
                         if k not in ("event", "t", "pid", "worker")}
                assert finding["details"]["confirmation"] == check
    else:
        result.assert_outcomes(passed=13, xfailed=1)
        assert findings == [], json.dumps(findings, indent=1)
        assert all(check["result"] == "no leak" for check in checks.values()), checks


UNAUDITED_FILE = '''\
# Leaks that only a probe's cheap token (or a counter behind it) tells: no Popen, no Thread, no
# listing of fds or children around the test. Each is followed by a quiet test: every leak must be
# found on its own test, and the quiet ones give none.
import os
import select
import sys

KEPT = []


def test_pipe_kept():
    KEPT.append(os.pipe())  # the fd count in the token moves


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
    # not subprocess.Popen: the os.posix_spawn wrapper's count says so
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    KEPT.append(os.posix_spawn(sys.executable, argv, os.environ))


def test_quiet_after_spawn():
    pass


def test_cwd_not_restored(tmp_path):
    os.chdir(tmp_path)


def test_env_value_changed():
    # as many variables as before: only the putenv wrapper's count moves
    os.environ["HOME"] = os.environ.get("HOME", "") + "-changed"


def test_quiet_after_chdir():
    pass


PREVIOUS = open(os.devnull)  # opened before any test


def test_closes_an_old_file_and_opens_a_new_one(tmp_path):
    # The fd count is unchanged (one opened, one closed); the lowest free fd moved.
    KEPT.append(open(tmp_path / "new.txt", "w"))
    PREVIOUS.close()
'''

UNAUDITED = {
    "test_unaudited.py::test_pipe_kept": "leak-fd",
    "test_unaudited.py::test_pipe_end_kept_other_closed": "leak-fd",
    "test_unaudited.py::test_epoll_and_dup_kept": "leak-fd",
    "test_unaudited.py::test_posix_spawn_never_waited": "leak-process",
    "test_unaudited.py::test_cwd_not_restored": "env-changed",
    "test_unaudited.py::test_env_value_changed": "env-changed",
    "test_unaudited.py::test_closes_an_old_file_and_opens_a_new_one": "leak-fd",
}


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
def test_leaks_only_a_token_tells_are_found_on_their_own_tests(
    pytester: pytest.Pytester, project: Path, xdist: bool
) -> None:
    """The probes look only when a cheap token says something changed (there is no audit hook);
    these leaks go through no creation wrapper (os.pipe, epoll, dup, posix_spawn, chdir, a changed
    variable), and each is followed by a quiet test that must not inherit it."""
    (project / "test_unaudited.py").write_text(UNAUDITED_FILE)
    result, findings = run(pytester, *(["-n", "2"] if xdist else []))
    result.assert_outcomes(passed=11)
    assert pairs(findings) == set(UNAUDITED.items()), json.dumps(findings, indent=1)
    assert len(findings) == len(UNAUDITED)
    by_test = {f["test"].split("::")[1]: f for f in findings}
    assert "pipe:" in by_test["test_pipe_kept"]["message"]
    assert "anon_inode:[eventpoll]" in by_test["test_epoll_and_dup_kept"]["message"]
    assert "time.sleep(60)" in by_test["test_posix_spawn_never_waited"]["message"]
    assert "working directory" in by_test["test_cwd_not_restored"]["message"]
    assert "os.environ['HOME'] changed" in by_test["test_env_value_changed"]["message"]
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


# -- issue 15: what the probes set off stays tiergate's; a leak is growth, not first use ----------

CYCLE_FILE = '''\
import gc
import socket

gc.disable()  # only an explicit collection frees the cycle: plain pytest's outcomes are fixed


class Holder:
    def __init__(self, path):
        self.handle = open(path, "w")
        self.sock = socket.socket()
        self.boom = Boom()
        self.me = self  # a reference cycle: nothing but the garbage collector frees it


class Boom:
    def __del__(self):
        raise ValueError("boom in a finaliser")


def test_leaves_unclosed_in_a_cycle(tmp_path):
    Holder(tmp_path / "x.txt")


def test_innocent():
    pass
'''


def outcomes(result: pytest.RunResult) -> dict[str, str]:
    """Each test's outcome, from pytest's -rA short summary."""
    out = {}
    for line in result.stdout.lines:
        word, _, rest = line.partition(" ")
        if word in ("PASSED", "FAILED", "ERROR", "SKIPPED", "XFAIL", "XPASS"):
            out[rest.split(" - ")[0].strip()] = word
    return out


@pytest.mark.parametrize("tracing", [False, True], ids=["plain", "tracemalloc"])
def test_what_the_probes_collect_never_changes_another_tests_outcome(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tracing: bool
) -> None:
    """The probes' gc.collect() finalises the cycle a test left: under filterwarnings = error
    the ResourceWarnings would become unraisable exceptions that pytest raises in the next test.
    They are tiergate's to catch, and a resource-warning note on the test that made them."""
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\nfilterwarnings = ["error"]\n')
    pytester.makepyfile(test_cycle=CYCLE_FILE)
    if tracing:
        monkeypatch.setenv("PYTHONTRACEMALLOC", "5")
    plain = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", "-p", "no:tiergate")
    tiered = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", "--tier", "fast")
    assert outcomes(plain) == {"test_cycle.py::test_leaves_unclosed_in_a_cycle": "PASSED",
                               "test_cycle.py::test_innocent": "PASSED"}, plain.stdout.str()
    assert outcomes(tiered) == outcomes(plain), tiered.stdout.str()
    report = json.loads((pytester.path / ".tiergate/fast/findings.json").read_text())
    findings = report["findings"]
    assert {(f["test"], f["kind"], f["severity"]) for f in findings} == {
        ("test_cycle.py::test_leaves_unclosed_in_a_cycle", "resource-warning", "warning")
    }, json.dumps(findings, indent=1)
    messages = sorted(f["message"] for f in findings)
    assert len(messages) == 3, messages
    assert messages[0].startswith("ResourceWarning: unclosed <socket.socket")
    assert messages[1].startswith("ResourceWarning: unclosed file <_io.FileIO")
    assert messages[2].startswith("ValueError: boom in a finaliser (exception ignored in")
    assert all("tiergate collected garbage after the test" in m for m in messages)
    assert all(f["details"]["collected_by"] == "tiergate" for f in findings)
    assert report["outcome"] == "passed"
    warned = [f for f in findings if f["details"]["category"] == "ResourceWarning"]
    if tracing:  # where the objects were made, when tracemalloc knows it
        lines = {f["culprit"]["line"] for f in warned}
        assert lines == {9, 10}, json.dumps(findings, indent=1)
        assert all(f["culprit"]["function"] == "__init__" for f in warned)
        assert all(f["details"]["created"].startswith(str(pytester.path)) for f in warned)
    else:  # the socket's wrapper saw where it was made; nothing sees where a file was opened
        made = {f["details"]["text"].split()[1]: f.get("culprit") for f in warned}
        assert made["<socket.socket"]["line"] == 10, json.dumps(findings, indent=1)
        assert made["file"] is None


def checks_of(project: Path) -> list[dict[str, Any]]:
    out = project / "checks.jsonl"
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
def test_process_wide_caches_made_on_first_use_are_not_leaks(
    pytester: pytest.Pytester, project: Path, xdist: bool
) -> None:
    # multiprocessing's heap arena, a lazily made module executor, a global connection pool to a
    # 127.0.0.1 server, an event loop's default executor: each made by the first test that needs
    # it and reused by the next. First use, not growth: no finding, not even a note.
    shutil.copy(DATA / "test_caches.py", project)
    result, findings = run(pytester, *(["-n", "2"] if xdist else []))
    result.assert_outcomes(passed=9)
    assert findings == [], json.dumps(findings, indent=1)
    if xdist:
        return  # which worker ran what first is xdist's choice
    # the suspects were run again, and the repeat is on record
    checks = {c["nodeid"].split("::")[1]: c for c in checks_of(project)}
    assert set(checks) == {"test_executor_first_use", "test_pool_connects_on_first_use"}
    for check in checks.values():
        assert check["result"] == "no leak" and check["repeats"] == 1
        assert set(check["kinds"].values()) == {"first use"} and check["again"] == []
        assert check["seconds"] >= 0
    assert checks["test_pool_connects_on_first_use"]["kinds"] == {
        "leak-socket": "first use", "leak-thread": "first use"}


GROWING_FILE = '''\
import socket
import threading

import pytest

KEPT = []


@pytest.fixture(scope="module")
def listener():
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock.getsockname()


def test_new_connection_each_time(listener):
    KEPT.append(socket.create_connection(listener, timeout=5))  # a "pool" that only grows


def test_thread_per_call():
    stop = threading.Event()
    KEPT.append(stop)
    threading.Thread(target=stop.wait, name="per-call", daemon=True).start()


STATE = []


def test_passes_only_the_first_time(tmp_path):
    assert not STATE
    STATE.append(1)
    KEPT.append(open(tmp_path / "kept.txt", "w"))


def test_fails_and_leaves_a_thread():
    stop = threading.Event()
    KEPT.append(stop)
    threading.Thread(target=stop.wait, name="after-failure", daemon=True).start()
    assert False
'''


def test_growth_is_a_leak_and_what_cannot_be_confirmed_is_a_note(
    pytester: pytest.Pytester, project: Path
) -> None:
    (project / "test_growing.py").write_text(GROWING_FILE)
    result, findings = run(pytester)
    result.assert_outcomes(passed=3, failed=1)
    by_test = {f["test"].split("::")[1]: f for f in findings}
    assert pairs(findings) == {
        ("test_growing.py::test_new_connection_each_time", "leak-socket"),
        ("test_growing.py::test_thread_per_call", "leak-thread"),
        ("test_growing.py::test_passes_only_the_first_time", "leak-fd"),
        ("test_growing.py::test_fails_and_leaves_a_thread", "leak-thread"),
    }, json.dumps(findings, indent=1)
    assert len(findings) == 4
    for name in ("test_new_connection_each_time", "test_thread_per_call"):
        finding = by_test[name]
        assert finding["severity"] == "error"
        assert "left again when run again: 1 repeat run" in finding["message"]
        assert finding["details"]["confirmation"]["repeats"] == 1
        assert finding["details"]["confirmation"]["result"] == "leak"
        assert len(finding["details"]["again"]) == 1
    # a repeat that ends differently confirms nothing; a failed test is not run again
    for name, reason in (("test_passes_only_the_first_time", "ended differently"),
                         ("test_fails_and_leaves_a_thread", "the test failed")):
        note = by_test[name]
        assert note["severity"] == "warning", note
        assert note["message"].startswith("not confirmed: ") and reason in note["message"]
        assert note["details"]["confirmed"] is False
    checks = {c["nodeid"].split("::")[1]: c for c in checks_of(project)}
    assert checks["test_passes_only_the_first_time"]["result"] == "inconclusive"
    assert "test_fails_and_leaves_a_thread" not in checks


SERVER_FILE = '''\
import socketserver
import threading


class Quiet(socketserver.BaseRequestHandler):
    def handle(self):
        pass


def test_server_never_shut_down():
    server = socketserver.TCPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, name="leaky-server", daemon=True).start()
'''


def test_a_thread_and_the_socket_it_serves_on_are_one_finding(
    pytester: pytest.Pytester, project: Path
) -> None:
    (project / "test_server.py").write_text(SERVER_FILE)
    result, findings = run(pytester)
    result.assert_outcomes(passed=1)
    assert pairs(findings) == {("test_server.py::test_server_never_shut_down", "leak-thread")}, (
        json.dumps(findings, indent=1))
    (finding,) = findings
    assert "'leaky-server'" in finding["message"] and "holding socket fd" in finding["message"]
    assert "127.0.0.1:" in finding["message"] and "LISTEN" in finding["message"]
    (leak,) = finding["details"]["leaks"]
    (held,) = leak["holds"]
    assert held["kind"] == "leak-socket" and held["status"] == "LISTEN"
    assert finding["culprit"]["function"] == "test_server_never_shut_down"


PIPE_THREAD_FILE = '''\
import os
import select
import threading


class Watcher(threading.Thread):
    """The shape of watchdog's InotifyFD: a thread keeping raw descriptors as numbers."""

    def __init__(self):
        super().__init__(name="watcher", daemon=True)
        self._kill_r, self._kill_w = os.pipe()
        self.events_seen = 3  # a number that is no descriptor: never taken for one

    def run(self):
        select.select([self._kill_r], [], [])


def test_watcher_never_stopped():
    Watcher().start()
'''


def test_a_thread_and_the_raw_descriptors_it_keeps_are_one_finding(
    pytester: pytest.Pytester, project: Path
) -> None:
    (project / "test_watcher.py").write_text(PIPE_THREAD_FILE)
    result, findings = run(pytester)
    result.assert_outcomes(passed=1)
    assert pairs(findings) == {("test_watcher.py::test_watcher_never_stopped", "leak-thread")}, (
        json.dumps(findings, indent=1))
    (finding,) = findings
    assert "'watcher'" in finding["message"] and "holding fd" in finding["message"]
    (leak,) = finding["details"]["leaks"]
    assert sorted(held["kind"] for held in leak["holds"]) == ["leak-fd", "leak-fd"]


HIGH_WATER_FILE = '''\
import ctypes

# glibc: keep what is freed (never trim the heap) and serve every block from the heap (never
# mmap), so RSS follows the allocator's high-water mark: the largest working set so far.
libc = ctypes.CDLL(None)
assert libc.mallopt(-1, 2**30) == 1  # M_TRIM_THRESHOLD
assert libc.mallopt(-4, 0) == 1  # M_MMAP_MAX

RUNS = [0]


def test_bigger_working_set_each_run():
    # Nothing is kept: each run only needs more memory for a while than the last one did.
    RUNS[0] += 1
    blocks = [bytearray(2**20) for _ in range(16 * RUNS[0] + 8)]
    assert len(blocks) > 16
    del blocks
'''


def test_memory_is_python_level_retained_memory_not_the_allocators_high_water_mark(
    pytester: pytest.Pytester
) -> None:
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("reproduces with glibc's mallopt")
    (pytester.path / "pyproject.toml").write_text(TIER)
    (pytester.path / "test_high_water.py").write_text(HIGH_WATER_FILE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--tier", "probed")
    result.assert_outcomes(passed=1)
    report = json.loads((pytester.path / ".tiergate/probed/findings.json").read_text())
    assert report["findings"] == [], json.dumps(report["findings"], indent=1)
    events = [json.loads(line) for line in
              (pytester.path / ".tiergate/probed/events.jsonl").read_text().splitlines()]
    (check,) = [e for e in events if e["event"] == "leak-check"]
    assert check["nodeid"] == "test_high_water.py::test_bigger_working_set_each_run"
    assert check["kinds"] == {"leak-memory": "no leak"} and check["result"] == "no leak"
    assert check["repeats"] >= 1 and check["seconds"] > 0
    # RSS grew past half the threshold on the repeat (what used to confirm a leak), while the
    # Python-level memory still allocated did not
    assert check["memory"]["rss"][0] > 5 * 2**20, check
    assert check["memory"]["traced"][0] < 1 * 2**20, check


# -- issue 15: tiergate keeps no user object alive; one resource-warning per root cause -----------

FREED_FILE = '''\
import asyncio
import gc
import socket
import subprocess
import sys
import threading
import weakref


class Payload:
    pass


def test_event_loop_is_freed_after_asyncio_run():
    # anyio's test_asyncio_run_does_not_leak_event_loop: a loop that ran a job on a thread
    async def main():
        await asyncio.to_thread(lambda: None)
        return weakref.ref(asyncio.get_running_loop())

    loop = asyncio.run(main())
    gc.collect()
    assert loop() is None


def start_worker():
    payload = Payload()  # a local of the function that starts the thread
    worker = threading.Thread(target=lambda: payload)
    worker.start()
    worker.join()
    return weakref.ref(payload), weakref.ref(worker)


def test_thread_and_what_its_starter_held_are_freed():
    payload, worker = start_worker()
    gc.collect()
    assert payload() is None and worker() is None


def test_waited_child_is_freed():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    ref = weakref.ref(child)
    del child
    gc.collect()
    assert ref() is None


def test_closed_socket_is_freed():
    sock = socket.socket()
    sock.close()
    ref = weakref.ref(sock)
    del sock
    gc.collect()
    assert ref() is None
'''


def test_tiergate_keeps_no_object_of_the_tests_alive(pytester: pytest.Pytester) -> None:
    """Creation sites are kept as strings; a loop is held while open, a child until waited for.
    A test that checks its objects are freed passes under a tier as it does under plain pytest."""
    pytester.makepyfile(test_freed=FREED_FILE)
    plain = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", "-p", "no:tiergate")
    tiered = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", "--tier", "fast")
    assert set(outcomes(plain).values()) == {"PASSED"} and len(outcomes(plain)) == 4, (
        plain.stdout.str())
    assert outcomes(tiered) == outcomes(plain), tiered.stdout.str()


GROUPED_FILE = '''\
import socket

import pytest


@pytest.fixture
def server_sock():
    sock = socket.socket()
    raise OSError("offline: the bind failed, and nothing closes the socket")
    yield sock


@pytest.mark.parametrize("n", range(5))
def test_serves(server_sock, n):
    pass


def test_drops_an_open_file(tmp_path):
    open(tmp_path / "a", "w")
'''


def test_one_resource_warning_per_root_cause(pytester: pytest.Pytester) -> None:
    """anyio's server_sock: a fixture's socket left unclosed by every parametrised test that
    uses it is one finding, blamed on the first test, counting the others; another cause is
    its own finding."""
    pytester.makepyfile(test_grouped=GROUPED_FILE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--tier", "fast")
    result.assert_outcomes(errors=5, passed=1)
    report = json.loads((pytester.path / ".tiergate/fast/findings.json").read_text())
    warned = [f for f in report["findings"] if f["kind"] == "resource-warning"]
    assert len(warned) == 2, json.dumps(warned, indent=1)
    sockets, files = sorted(warned, key=lambda f: "socket" not in f["message"])
    tests = [f"test_grouped.py::test_serves[{n}]" for n in range(5)]
    assert sockets["test"] == tests[0]
    assert sockets["details"]["tests"] == tests and sockets["details"]["count"] == 5
    assert "created at test_grouped.py:8 (server_sock)" in sockets["message"]
    assert f"in 5 tests: {tests[0]}, {tests[1]}, {tests[2]} and 2 more" in sockets["message"]
    assert sockets["culprit"]["line"] == 8
    assert files["test"] == "test_grouped.py::test_drops_an_open_file"
    assert "count" not in files["details"]
    events = [json.loads(line) for line in
              (pytester.path / ".tiergate/fast/events.jsonl").read_text().splitlines()]
    # the event log keeps each warning as it happened; the reports group them
    assert sum(e["event"] == "finding" and "socket" in e["finding"]["message"]
               for e in events) == 5


def test_a_librarys_process_wide_thread_cache_is_no_tests_leak() -> None:
    """trio keeps idle worker threads for the whole process (trio._core._thread_cache): the test
    that first needed one leaked nothing. The same-named target anywhere else still counts."""
    import threading

    from tiergate.plugin.leaks.probes import _process_wide_worker

    def _work() -> None:
        pass

    _work.__qualname__ = "WorkerThread._work"
    _work.__module__ = "trio._core._thread_cache"
    assert _process_wide_worker(threading.Thread(target=_work))
    _work.__module__ = "myapp.workers"
    assert not _process_wide_worker(threading.Thread(target=_work))


DEADLOCK = """
import threading

def test_joins_two_deadlocked_threads():
    first, second = threading.Lock(), threading.Lock()
    first.acquire(); second.acquire()  # each thread waits for the lock the other one would free
    threads = [threading.Thread(target=first.acquire, name="waits-first", daemon=True),
               threading.Thread(target=second.acquire, name="waits-second", daemon=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()  # the soft timeout interrupts this join
"""


def test_a_thread_whose_join_the_timeout_interrupted_still_counts(
    pytester: pytest.Pytester,
) -> None:
    """On 3.11 a soft timeout interrupting ``Thread.join()`` marks the still-running thread
    stopped (``is_alive()`` False, ``Thread._wait_for_tstate_lock``): both deadlocked threads are
    still running and both are the test's leak."""
    pytester.makepyfile(test_deadlock=DEADLOCK)
    pytester.makepyprojecttoml(
        '[tool.tiergate.tiers.fast]\ntest-timeout = "1s"\nnetwork = "any"\nleaks = "warn"\n')
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--tier", "fast")
    findings = json.loads((pytester.path / ".tiergate" / "fast" / "findings.json").read_text())
    threads = [f for f in findings["findings"] if f["kind"] == "leak-thread"]
    assert len(threads) == 1, json.dumps(findings, indent=1)
    names = sorted(leak["name"] for leak in threads[0]["details"]["leaks"])
    assert names == ["waits-first", "waits-second"], json.dumps(threads, indent=1)
