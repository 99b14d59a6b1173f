"""Slowest first: with a durations history the tier's tests run longest first, a module or class
with module- or class-scoped fixtures moving as one; ``order = "pytest"`` keeps pytest's order.
Real ``tiergate run`` processes; the order read from the events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from supervised import events, make_project, run_tiergate

from tiergate.shard import longest_first

FILES = {
    "test_1_mod.py": """
import pytest

@pytest.fixture(scope="module")
def server():
    return object()

def test_x(server):
    pass

def test_y(server):
    pass

def test_z():
    pass
""",
    "test_2_free.py": "def test_p():\n    pass\n\ndef test_q():\n    pass\n",
    "test_3_cls.py": """
import pytest

class TestK:
    @pytest.fixture(scope="class")
    def db(self):
        return object()

    def test_k1(self, db):
        pass

    def test_k2(self, db):
        pass
""",
}
# Seconds each took last time. test_x and test_y share a module fixture: they move as one
# (3.2s, so first, ahead of test_p's 3.0s, though test_x alone is the second fastest); test_z
# uses none and goes on its own, last.
HISTORY = {
    "test_1_mod.py::test_x": 0.1, "test_1_mod.py::test_y": 3.1, "test_1_mod.py::test_z": 0.05,
    "test_2_free.py::test_p": 3.0, "test_2_free.py::test_q": 0.3,
    "test_3_cls.py::TestK::test_k1": 1.0, "test_3_cls.py::TestK::test_k2": 1.0,
}
PYTEST_ORDER = ["test_1_mod.py::test_x", "test_1_mod.py::test_y", "test_1_mod.py::test_z",
                "test_2_free.py::test_p",
                "test_2_free.py::test_q", "test_3_cls.py::TestK::test_k1",
                "test_3_cls.py::TestK::test_k2"]


def _started(project: Path) -> list[str]:
    return [e["nodeid"] for e in events(project) if e["event"] == "test-start"]


def _run(tmp_path: Path, pyproject: str = "") -> Path:
    project = make_project(tmp_path / "p", FILES, pyproject)
    history = tmp_path / "durations.json"
    history.write_text(json.dumps(HISTORY))
    proc = run_tiergate(project, "run", "--tier", "fast", "--durations-from", str(history))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return project


def test_with_history_the_longest_group_runs_first(tmp_path: Path) -> None:
    assert _started(_run(tmp_path)) == [
        "test_1_mod.py::test_x", "test_1_mod.py::test_y",  # the module fixture's: 3.2s
        "test_2_free.py::test_p",  # 3.0s
        "test_3_cls.py::TestK::test_k1", "test_3_cls.py::TestK::test_k2",  # the class: 2.0s
        "test_2_free.py::test_q",  # 0.3s
        "test_1_mod.py::test_z"]  # 0.05s


def test_order_pytest_keeps_pytests_order(tmp_path: Path) -> None:
    project = _run(tmp_path, '[tool.tiergate.tiers.fast]\norder = "pytest"\n')
    assert _started(project) == PYTEST_ORDER


def test_without_history_pytests_order_stays(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", FILES)
    assert run_tiergate(project, "run", "--tier", "fast").returncode == 0
    assert _started(project) == PYTEST_ORDER


@pytest.mark.parametrize(("tests", "expected"), [
    ([("a", "a"), ("b", "b"), ("c", "c")], ["b", "c", "a"]),  # by duration
    ([("a", "m"), ("b", "b"), ("c", "m")], ["a", "c", "b"]),  # a group moves as one, in order
    ([("a", "a"), ("u", "u"), ("b", "b")], ["b", "u", "a"]),  # unknown: the median (2.0)
])
def test_longest_first_is_lpt_over_groups(tests: list[tuple[str, str]],
                                         expected: list[str]) -> None:
    assert longest_first(tests, {"a": 1.0, "b": 3.0, "c": 2.0}) == expected


def test_a_bad_order_is_one_line(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", FILES, '[tool.tiergate.tiers.fast]\norder = "random"\n')
    proc = run_tiergate(project, "run", "--tier", "fast")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "order" in proc.stderr and "slowest-first or pytest" in proc.stderr
