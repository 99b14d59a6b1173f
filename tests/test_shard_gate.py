"""The gate of a sharded tier: ``tiergate report --expect-shards N`` over the shards' results
fails, naming the shard, when one did not report, and when a test ran in two shards or (with
the shards' plans) in none."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from supervised import make_project, run_tiergate, tiergate_argv

from tiergate.cli import main
from tiergate.results.model import RunResult, TestResult
from tiergate.results.shardgate import shard_findings

EIGHT_TESTS = """
import pytest

@pytest.mark.parametrize("n", range(8))
def test_part(n):
    pass
"""


def _run_shards(tmp_path: Path, shards: list[str], *extra: str) -> tuple[Path, list[Path]]:
    project = make_project(tmp_path / "project", {"test_parts.py": EIGHT_TESTS})
    dirs = []
    for index, shard in enumerate(shards):
        out = tmp_path / f"shard-{index}"
        proc = run_tiergate(project, "run", "--tier", "fast", "--shard", shard,
                            "--results-dir", str(out), *extra)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        dirs.append(out)
    return project, dirs


def _report(project: Path, dirs: list[Path], *extra: str,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    args = [a for d in dirs for a in ("--results-dir", str(d))]
    return subprocess.run(tiergate_argv("report", *args, "--output-dir", str(project / "merged"),
                                        *extra),
                          cwd=project, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **(env or {})})


def _findings(project: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((project / "merged" / "findings.json").read_text())
    return data


def test_a_missing_shard_fails_the_merge_and_is_named(tmp_path: Path) -> None:
    project, dirs = _run_shards(tmp_path, ["1/4", "3/4", "4/4"])
    proc = _report(project, dirs, "--expect-shards", "4")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "shards: 3 of 4 reported; shard 2/4 missing" in proc.stdout
    data = _findings(project)
    assert data["outcome"] == "failed"
    assert [(f["kind"], f["severity"], f["message"]) for f in data["findings"]] == [  # type: ignore[attr-defined]
        ("shards", "error", "shards: 3 of 4 reported; shard 2/4 missing")]


def test_every_shard_reported_passes_the_gate(tmp_path: Path) -> None:
    project, dirs = _run_shards(tmp_path, ["1/2", "2/2"])
    proc = _report(project, dirs, env={"TIERGATE_EXPECT_SHARDS": "2"})  # as the template sets
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = _findings(project)
    assert data["findings"] == [] and data["counts"]["passed"] == 8  # type: ignore[index]


def test_the_same_shard_twice_is_not_two_shards(tmp_path: Path) -> None:
    project, dirs = _run_shards(tmp_path, ["1/2", "1/2"])
    proc = _report(project, dirs, env={"TIERGATE_EXPECT_SHARDS": "2"})
    assert proc.returncode == 1
    messages = [f["message"] for f in _findings(project)["findings"]]  # type: ignore[attr-defined]
    assert any("shard 1/2 reported twice" in m for m in messages), messages
    assert "shards: 1 of 2 reported; shard 2/2 missing" in messages


def test_without_the_gate_a_missing_shard_goes_unseen(tmp_path: Path) -> None:
    """What the gate is for: the merge alone is green with half the suite."""
    project, dirs = _run_shards(tmp_path, ["1/2"])
    assert _report(project, dirs).returncode == 0


def test_a_bad_expect_shards_is_one_line(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--results-dir", str(tmp_path), "--expect-shards", "four"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "tiergate: error: --expect-shards 'four' is not valid: use the number of shards, e.g. 4"]


def _shard(k: int, n: int, tests: list[str], selected: list[str] | None = None) -> RunResult:
    return RunResult(shard=(k, n), tests={t: TestResult(t) for t in tests},
                     selected=selected or [], sources=[f"shard-{k}"])


def test_a_test_in_two_shards_is_an_error() -> None:
    found = shard_findings([_shard(1, 2, ["a", "b"]), _shard(2, 2, ["b", "c"])], 2)
    assert [f.message for f in found] == [
        "shards: 1 test ran in more than one shard: b (shards 1, 2)"]


def test_with_the_plans_a_test_in_no_shard_is_an_error() -> None:
    plan = ["a", "b", "c", "d"]
    found = shard_findings([_shard(1, 2, ["a", "b"], plan), _shard(2, 2, ["c"], plan)], 2)
    assert [f.message for f in found] == ["shards: 1 test selected but in no shard: d"]
    assert shard_findings([_shard(1, 2, ["a", "b"], plan), _shard(2, 2, ["c", "d"], plan)],
                          2) == []


def test_a_result_of_another_split_or_of_no_shard_is_named() -> None:
    found = shard_findings([_shard(1, 3, ["a"]), RunResult(sources=["plain"])], 1)
    assert [f.message for f in found] == [
        "shards: shard-1 is shard 1/3, but 1 shards are expected (--expect-shards)",
        "shards: plain is not a shard's result (no shard recorded); expected shards 1 to 1",
        "shards: 0 of 1 reported; shard 1/1 missing"]


def test_init_sets_the_gate_to_its_number_of_shards(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    assert main(["init", "--project", str(tmp_path), "--shards", "3"]) == 0
    nightly = yaml.safe_load((tmp_path / ".github/workflows/tiergate-nightly.yml").read_text())
    report = next(s for s in nightly["jobs"]["report"]["steps"] if s.get("id") == "tiergate")
    assert report["env"] == {"TIERGATE_EXPECT_SHARDS": "3"}
    assert nightly["jobs"]["shard"]["strategy"]["matrix"]["total"] == [3]


def _plans(out: Path) -> list[list[str]]:
    lines = (out / "events.jsonl").read_text().splitlines()
    return [e["selected"] for e in map(json.loads, lines)
            if e["event"] == "collected" and "selected" in e]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_shard_records_its_plan_once(tmp_path: Path, workers: str) -> None:
    """The plan is every test the tier selected before the split; under xdist one worker says it."""
    project, (out,) = _run_shards(tmp_path, ["2/2"], "--workers", workers)
    assert _plans(out) == [[f"test_parts.py::test_part[{n}]" for n in range(8)]]
    plain = tmp_path / "plain"
    proc = run_tiergate(project, "run", "--tier", "fast", "--results-dir", str(plain))
    assert proc.returncode == 0 and _plans(plain) == []  # not a shard: no plan, nothing to pay


def test_a_selected_test_in_no_shard_fails_the_merge(tmp_path: Path) -> None:
    """Shards that saw different suites (a push between two matrix jobs) cut it differently:
    with 8 tests shard 1/2 runs 0-3; with 10, shard 2/2 runs 5-9; test 4 ran nowhere."""
    project, dirs = _run_shards(tmp_path, ["1/2"])
    (project / "test_parts.py").write_text(EIGHT_TESTS.replace("range(8)", "range(10)"))
    second = tmp_path / "shard-late"
    proc = run_tiergate(project, "run", "--tier", "fast", "--shard", "2/2",
                        "--results-dir", str(second))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = _report(project, [*dirs, second], "--expect-shards", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "shards: 1 test selected but in no shard: test_parts.py::test_part[4]" in proc.stdout
