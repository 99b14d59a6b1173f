"""Resource pressure as a user meets it: a real ``tiergate run`` over a project whose test eats
memory (or processes) until the supervisor steps in; and the sampler and the gauge on their own.

Memory is kept well inside the machine: the hog also sets its own RLIMIT_AS, so even if tiergate
failed to stop it, it would die of MemoryError near 2 GB rather than take the machine down."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from supervised import events, findings, make_project, processes_running, results, run_tiergate

from tiergate.plugin.highwater import maxrss
from tiergate.results.model import load_results_dir
from tiergate.settings.config import Tier
from tiergate.supervisor.pressure import Gauge, Limits, format_amount
from tiergate.supervisor.sampler import EMPTY, Biggest, Sample, TreeSampler

HOG = """
    import resource
    import time

    def test_hog():
        resource.setrlimit(resource.RLIMIT_AS, (2_300_000_000, resource.RLIM_INFINITY))
        blocks = []
        for _ in range(40):  # 100 MB every 0.1 s, up to 4 GB
            blocks.append(b"\\x01" * 100_000_000)
            time.sleep(0.1)
"""

AFTER = """
    def test_after_one():
        assert 1 + 1 == 2

    def test_after_two():
        assert "after"
"""


# A module for the tests of a project: has the supervisor written the warning finding for *key*
# yet? Read from the event log as JSON, event by event: the run-start event names every limit of
# the tier in its settings, so a substring of the file would be there from the start.
WARNED = """
import json, os

def warned(key):
    with open(os.environ["TIERGATE_EVENTS"], encoding="utf-8") as events:
        for line in events:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line still being written
            finding = event.get("finding") or {}
            if (event.get("event") == "finding" and finding.get("kind") == "resource-pressure"
                    and finding.get("severity") == "warning"
                    and (finding.get("details") or {}).get("limit-key") == key):
                return True
    return False
"""


def _pressure(project: Path) -> list[dict[str, object]]:
    return [f for f in findings(project)["findings"] if f["kind"] == "resource-pressure"]


def test_memory_limit_kills_the_hog_before_1_3_gb_and_the_rest_runs(tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "proj",
        {"test_a_hog.py": HOG, "test_b_after.py": AFTER},
        pyproject='[tool.tiergate.tiers.fast]\nmemory-limit = "1GB"\nleaks = "off"\n',
    )
    done = run_tiergate(project, "run", "--tier", "fast")
    assert done.returncode == 1, done.stdout + done.stderr

    errors = [f for f in _pressure(project) if f["severity"] == "error"]
    assert len(errors) == 1, _pressure(project)
    finding = errors[0]
    assert finding["test"] == "test_a_hog.py::test_hog"
    assert "memory-limit of 1 GB" in str(finding["message"])
    assert "biggest process" in str(finding["message"])
    assert finding["dump"] and (results(project) / str(finding["dump"])).is_file()
    assert "test_hog" in (results(project) / str(finding["dump"])).read_text()

    samples = [e for e in events(project) if e["event"] == "sample"]
    peak = max(int(e["rss"]) for e in samples)
    assert 1_000_000_000 < peak < 1_400_000_000, peak
    assert any(e["nodeid"] == "test_a_hog.py::test_hog" for e in samples)

    document = findings(project)
    assert document["counts"]["failed"] == 1
    assert document["counts"]["passed"] == 2
    assert document["counts"]["not_run"] == 0
    run = load_results_dir(results(project))  # peak RSS per test, for the heaviest-tests list
    assert run.tests["test_a_hog.py::test_hog"].peak_rss == peak
    # a test that did not raise its process's high-water mark has no peak unless a sample saw it
    peaks = [t.peak_rss for t in run.tests.values()]
    assert all(p is None or p > 1_000_000 for p in peaks)
    junit = (results(project) / "junit.xml").read_text()
    assert "resource pressure" in junit
    assert "tiergate:" in done.stdout and "pytest was killed" in done.stdout


def test_a_daemon_that_left_the_tree_still_counts_and_is_killed(tmp_path: Path) -> None:
    """The way ``pg_ctl start`` starts a server: a middle process starts the hog in a new session
    and exits, so the hog is orphaned to the supervisor, out of pytest's tree and process group."""
    marker = f"tiergate-daemon-{os.getpid()}-{time.monotonic_ns()}"
    hog = f"# {marker}\n" + "\n".join(line[4:] for line in HOG.splitlines()[1:]).replace(
        "def test_hog():", "if 1:")
    project = make_project(
        tmp_path / "proj",
        {
            "test_a_daemon.py": f"""
                import subprocess, sys, time

                HOG = {hog!r}
                START = (
                    "import subprocess, sys; "
                    "subprocess.Popen([sys.executable, '-c', sys.argv[1], sys.argv[2]], "
                    "start_new_session=True)"
                )

                def test_starts_a_daemon():
                    subprocess.run([sys.executable, "-c", START, HOG, "{marker}"], check=True)
                    time.sleep(30)
            """,
            "test_b_after.py": AFTER,
        },
        pyproject='[tool.tiergate.tiers.fast]\nmemory-limit = "1GB"\nleaks = "off"\n',
    )
    done = run_tiergate(project, "run", "--tier", "fast")
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [f for f in _pressure(project) if f["severity"] == "error"]
    assert len(errors) == 1, _pressure(project)
    assert errors[0]["test"] == "test_a_daemon.py::test_starts_a_daemon"
    message = str(errors[0]["message"])
    assert f"-c # {marker}\\nimport resource" in message  # the biggest is the daemon, one line
    assert "outside pytest's tree, started during the call of test_a_daemon.py::" in message
    leftovers = [f for f in findings(project)["findings"] if f["kind"] == "leftover-process"]
    assert [marker in str(f["message"]) for f in leftovers] == [True], leftovers
    assert leftovers[0]["test"] == "test_a_daemon.py::test_starts_a_daemon"
    assert findings(project)["counts"]["passed"] == 2
    assert processes_running(marker) == []


def test_warning_at_80_percent_without_a_kill(tmp_path: Path) -> None:
    """850 MB of a 1 GB limit: a warning finding with a dump, and the test passes."""
    project = make_project(
        tmp_path / "proj",
        {
            "warned.py": WARNED,
            "test_warm.py": """
                import time

                from warned import warned

                def test_warm():
                    blocks = [b"\\x01" * 100_000_000 for _ in range(8)]
                    deadline = time.monotonic() + 50  # held until it is given; test-timeout 60 s
                    while not warned("memory-limit") and time.monotonic() < deadline:
                        time.sleep(0.05)
                    del blocks
            """,
        },
        pyproject='[tool.tiergate.tiers.fast]\nmemory-limit = "1GB"\nleaks = "off"\n',
    )
    done = run_tiergate(project, "run", "--tier", "fast")
    assert done.returncode == 0, done.stdout + done.stderr
    found = _pressure(project)
    assert [f["severity"] for f in found] == ["warning"], found
    assert found[0]["test"] == "test_warm.py::test_warm"
    assert "% of the tier's memory-limit of 1 GB" in str(found[0]["message"])
    assert found[0]["dump"]
    assert findings(project)["counts"]["passed"] == 1


def test_max_processes_kills_a_fork_bomb_and_resumes(tmp_path: Path) -> None:
    marker = f"tiergate-bomb-{os.getpid()}-{time.monotonic_ns()}"
    project = make_project(
        tmp_path / "proj",
        {
            "warned.py": WARNED,
            "test_a_bomb.py": f"""
                import subprocess, sys, time

                from warned import warned

                def test_bomb():
                    children = []
                    for n in range(30):
                        children.append(subprocess.Popen(
                            [sys.executable, "-c", "import time; time.sleep(60)", "{marker}"]))
                        time.sleep(0.05)
                        if n == 7:  # 9 in the tree: stay in the warning band until it is given
                            deadline = time.monotonic() + 50  # under the test-timeout of 60 s
                            while not warned("max-processes") and time.monotonic() < deadline:
                                time.sleep(0.05)
                    time.sleep(30)
            """,
            "test_b_after.py": AFTER,
        },
        pyproject='[tool.tiergate.tiers.fast]\nmax-processes = 10\nleaks = "off"\n',
    )
    done = run_tiergate(project, "run", "--tier", "fast")
    assert done.returncode == 1, done.stdout + done.stderr
    found = [f for f in _pressure(project) if f["severity"] == "error"]
    assert len(found) == 1 and found[0]["test"] == "test_a_bomb.py::test_bomb"
    # A child starts every 50 ms and the tree is sampled on an interval, so under load the sample
    # that catches the bomb may already see a few more than the 11th process.
    reached = re.search(
        r"process count of the tree reached (\d+), over the tier's max-processes of 10",
        str(found[0]["message"]),
    )
    assert reached is not None, found[0]["message"]
    assert 11 <= int(reached.group(1)) < 20, found[0]["message"]  # stopped well before 31
    warnings = [f for f in _pressure(project) if f["severity"] == "warning"]
    assert len(warnings) == 1 and "max-processes" in str(warnings[0]["message"])
    log = events(project)  # the bomb waited for the warning: it was written before the kill
    warned_at = next(n for n, e in enumerate(log) if e["event"] == "finding"
                     and e["finding"]["kind"] == "resource-pressure"
                     and e["finding"]["severity"] == "warning")
    killed_at = next(n for n, e in enumerate(log) if e["event"] == "resource-pressure")
    assert warned_at < killed_at, log[warned_at:killed_at + 1]
    assert findings(project)["counts"]["passed"] == 2
    assert processes_running(marker) == []


def test_bad_sample_interval_is_one_line(tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "proj", {}, pyproject='[tool.tiergate.tiers.fast]\nsample-interval = "often"\n'
    )
    done = run_tiergate(project, "run", "--tier", "fast")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "sample-interval" in done.stderr


# -- the sampler and the gauge on their own ---------------------------------------------------


def test_sampler_sees_the_whole_tree_and_cpu_never_goes_back() -> None:
    code = (
        "import subprocess, sys, time\n"
        "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])"
        " for _ in range(2)]\n"
        "sum(range(3_000_000))\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        sampler = TreeSampler(proc.pid)
        first = sampler.sample()
        assert first.processes == 3
        assert first.threads >= 3 and first.fds >= 3
        assert first.rss == sum(first.rss_by_pid.values()) > 10_000_000
        assert first.biggest is not None and first.biggest.pid in first.rss_by_pid
        assert first.subtree_rss(proc.pid) == first.rss
        assert first.cpu > 0
        child = next(pid for pid in first.rss_by_pid if pid != proc.pid)
        os.kill(child, 9)
        deadline = time.monotonic() + 60  # dead, and not reaped: its parent only sleeps
        while psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the killed child never died"
            time.sleep(0.05)
        second = sampler.sample()
        assert second.rss_by_pid.get(child, 0) == 0  # a zombie until its parent reaps it
        assert second.rss < first.rss
        assert second.cpu >= first.cpu
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
    assert TreeSampler(proc.pid).sample().processes == 0


@pytest.mark.parametrize("proc_children", [True, False], ids=["proc-children", "psutil-scan"])
def test_sampler_counts_what_the_adopter_holds_outside_its_own_session(
    proc_children: bool,
) -> None:
    """This test process plays the supervisor: a child in another session stands for a daemon
    orphaned to it; a child in its own session stands for its own helper (py-spy)."""
    sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
    hog = "import time; block = b'x' * 80_000_000; print('ready', flush=True); time.sleep(30)"
    root = subprocess.Popen(sleeper, start_new_session=True)
    daemon = subprocess.Popen(
        [sys.executable, "-c", hog], start_new_session=True, stdout=subprocess.PIPE,
        env={**os.environ, "PYTEST_CURRENT_TEST": "t.py::test_x[a (b)] (call)"})
    helper = subprocess.Popen(sleeper)
    try:
        assert daemon.stdout is not None and daemon.stdout.readline() == b"ready\n"
        sampler = TreeSampler(root.pid, adopter=os.getpid())
        sampler._proc_children = proc_children  # the fallback where the kernel lacks the file
        seen = sampler.sample()
        assert {root.pid, daemon.pid} <= set(seen.rss_by_pid)
        assert helper.pid not in seen.rss_by_pid
        assert seen.parent[daemon.pid] == os.getpid()
        assert seen.subtree_rss(root.pid) == seen.rss_by_pid[root.pid]  # not the root's memory
        assert seen.biggest is not None and seen.biggest.pid == daemon.pid
        assert seen.biggest.origin() == (
            ", outside pytest's tree, started during the call of t.py::test_x[a (b)]")
        assert daemon.pid not in TreeSampler(root.pid).sample().rss_by_pid
        root.kill()
        root.wait()
        assert sampler.sample().processes == 0  # pytest gone: the run's tree is gone
    finally:
        for proc in (root, daemon, helper):
            proc.kill()
            proc.wait()
        if daemon.stdout is not None:
            daemon.stdout.close()


def test_the_high_water_mark_rises_with_a_new_peak() -> None:
    before = maxrss()
    block = b"\x01" * (before + 50_000_000)  # more than this process ever held
    assert maxrss() >= before + 50_000_000
    del block


def _sample(rss: int = 0, processes: int = 1, fds: int = 3, t: float = 0.0) -> Sample:
    return Sample(
        t=t,
        rss=rss,
        cpu=0.0,
        cpu_percent=0.0,
        threads=1,
        fds=fds,
        processes=processes,
        biggest=Biggest(1, rss, "python"),
        most_fds=(1, fds),
    )


def test_gauge_warns_once_per_crossing_and_test_then_says_over() -> None:
    gauge = Gauge(Limits(memory=1000, processes=None, fds=None))
    assert gauge.check(_sample(rss=500), "t1") == []
    (warning,) = gauge.check(_sample(rss=850), "t1")
    assert warning.level == "warning" and warning.resource == "memory"
    assert gauge.check(_sample(rss=900), "t1") == []  # still above: once per crossing
    assert gauge.check(_sample(rss=900), "t2") == []  # the test that pushed it there got it
    assert gauge.check(_sample(rss=700), "t2") == []  # below 75 %: re-armed
    assert [v.level for v in gauge.check(_sample(rss=820), "t2")] == ["warning"]
    assert gauge.check(_sample(rss=600), "t2") == []
    assert gauge.check(_sample(rss=820), "t2") == []  # never twice for one test and limit
    (over,) = gauge.check(_sample(rss=1001), "t2")
    assert over.level == "over" and over.value == 1001 and over.limit == 1000


def test_gauge_describes_in_the_users_units() -> None:
    gauge = Gauge(Limits(memory=10**9))
    (over,) = gauge.check(_sample(rss=1_050_000_000), None)
    assert over.describe() == (
        "memory (RSS of the process tree) reached 1.05 GB, over the tier's memory-limit of 1 GB"
    )
    assert format_amount("memory", 512 * 10**6) == "512 MB"


def test_gauge_samples_fast_near_a_limit_or_when_climbing_fast() -> None:
    gauge = Gauge(Limits(memory=10**9))
    calm = _sample(rss=100 * 10**6, t=1.0)
    assert gauge.interval(calm, _sample(rss=100 * 10**6, t=0.5), 0.5, 0.05) == 0.5
    assert gauge.interval(_sample(rss=600 * 10**6), None, 0.5, 0.05) == 0.05
    climbing = _sample(rss=350 * 10**6, t=1.0)  # +250 MB in 0.5 s: 80 % within 1 s
    assert gauge.interval(climbing, _sample(rss=100 * 10**6, t=0.5), 0.5, 0.05) == 0.05


def test_limits_from_the_tier() -> None:
    tier = Tier(name="x", memory_limit="50%", max_processes=20)
    limits = Limits.for_tier(tier, total_memory=8 * 10**9, nofile=1024)
    assert limits == Limits(memory=4 * 10**9, processes=20, fds=819)
    assert Limits.for_tier(Tier(name="x", max_fds=100), nofile=1024).fds == 100
    assert Limits.for_tier(Tier(name="x"), nofile=-1).fds is None
    assert EMPTY.processes == 0


@pytest.mark.parametrize("key", ["max-fds"])
def test_fds_limit_is_per_process(key: str) -> None:
    gauge = Gauge(Limits(fds=100))
    sample = _sample(fds=101)
    (over,) = gauge.check(sample, "t")
    assert over.resource == "fds" and over.key == key and over.pid == 1
