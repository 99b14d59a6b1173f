"""The supervisor's side of retries and quarantine: the verdict of a real `tiergate run`.

A retry's delay is no test time (no hard timeout, no SLOW line between two attempts), and a
quarantined failure does not count towards max-fail. Each test fails without its fix.
"""

from __future__ import annotations

from pathlib import Path

from supervised import findings, make_project, run_tiergate

FLAKY_ONCE = """
from pathlib import Path


def test_flaky():
    seen = Path(__file__).with_name("seen")
    if not seen.exists():
        seen.write_text("attempt 1")
        raise AssertionError("first attempt fails")


def test_other():
    pass
"""


def test_a_retry_delay_longer_than_the_grace_is_not_a_hard_timeout(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"tests/test_flaky.py": FLAKY_ONCE}, pyproject="""
[tool.pytest.ini_options]
testpaths = ["tests"]
[tool.tiergate.tiers.fast]
test-timeout = "2s"
grace = "1s"
retries = 1
retry-delay = "4s"
""")
    proc = run_tiergate(project, "run", "--tier", "fast")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    kinds = [f["kind"] for f in findings(project)["findings"]]
    assert kinds == ["flaky"], out
    assert "stuck past its limit" not in out and "SLOW" not in out, out


QUARANTINED_FIRST = """
def test_a_known_broken():
    assert False


def test_b():
    pass


def test_c():
    pass
"""


def test_a_quarantined_failure_does_not_count_towards_max_fail(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"tests/test_q.py": QUARANTINED_FIRST}, pyproject="""
[tool.pytest.ini_options]
testpaths = ["tests"]
[tool.tiergate.tiers.fast]
max-fail = 1
[tool.tiergate.quarantine."tests/test_q.py::test_a_known_broken"]
reason = "known broken"
until = 2099-01-01
""")
    proc = run_tiergate(project, "run", "--tier", "fast")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "not run" not in out and "max-fail 1" not in out, out
    assert "2 passed, 1 failed" in out, out


THIRD_TIME_LUCKY = """
from pathlib import Path

import pytest


@pytest.mark.flaky(max_runs=3, min_passes=1)  # the `flaky` package's marker
def test_third_time():
    count = Path(__file__).with_name("count")
    runs = int(count.read_text()) + 1 if count.exists() else 1
    count.write_text(str(runs))
    assert runs >= 3
"""


def test_the_flaky_packages_marker_gets_its_max_runs(tmp_path: Path) -> None:
    # Read as rerunfailures' flaky(reruns=...), it gave one retry: 2 runs, and a failure.
    project = make_project(tmp_path, {"tests/test_lucky.py": THIRD_TIME_LUCKY}, pyproject="""
[tool.pytest.ini_options]
testpaths = ["tests"]
""")
    proc = run_tiergate(project, "run", "--tier", "fast")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert (project / "tests" / "count").read_text() == "3", out
    assert [f["kind"] for f in findings(project)["findings"]] == ["flaky"], out
