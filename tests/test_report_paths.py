"""The terminal report and the annotations name places as the PR comment does: relative to the
project (terminal) or the repository (annotations), never a runner's absolute path, which the
leak probes write into their messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiergate.protocol.findings import Culprit, Finding, Location
from tiergate.report.actions import annotation_commands
from tiergate.report.annotations import annotations_for
from tiergate.report.terminal import render_terminal
from tiergate.results.model import RunResult


def leaky_run(project: Path) -> RunResult:
    """A thread leak as the probe reports it: its message names the creation site twice over,
    absolutely, and a second place (the allocation) that is not the culprit."""
    (project / "app").mkdir(parents=True)
    for name in ("service.py", "cache.py"):
        (project / "app" / name).write_text("x = 1\n")
    run = RunResult(tier="fast", started=1.0, finished=2.0)
    run.findings.append(Finding(
        "leak-thread", "tests/test_s.py::test_start", "error",
        f"test left threads running: thread 'monitor', started at {project}/app/service.py:108 "
        f"in start; top allocation {project}/app/cache.py:44 in _load_rows",
        Location("tests/test_s.py", 20), Culprit("app/service.py", 108, "start", None)))
    return run


def test_the_terminal_shows_places_relative_to_the_project(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    run = leaky_run(project)
    monkeypatch.delenv("GITHUB_WORKSPACE", raising=False)
    monkeypatch.chdir(project)  # `tiergate report`, run in the project
    by_report = render_terminal(run, width=400)
    monkeypatch.chdir(tmp_path)  # the supervisor, started anywhere, knows its project
    for text in (by_report, render_terminal(run, width=400, root=project)):
        assert str(tmp_path) not in text, text
        assert "top allocation app/cache.py:44 in _load_rows" in text
        assert "created at app/service.py:108 in start" in text
        assert text.count("service.py:108") == 1, text  # the culprit's line states it


def test_annotations_show_places_relative_to_the_repository(tmp_path: Path) -> None:
    """A monorepo: the project is a folder of the repository, the annotation's path and the
    places in its message are the repository's."""
    project = tmp_path / "services" / "api"
    (note,) = annotations_for(leaky_run(project), root=tmp_path, project=project)
    assert note.path == "services/api/app/service.py"
    assert str(tmp_path) not in note.message, note.message
    assert "top allocation services/api/app/cache.py:44" in note.message
    assert "created at services/api/app/service.py:108 in start" in note.message
    (command,) = annotation_commands(leaky_run(tmp_path / "other"), root=tmp_path,
                                     project=tmp_path / "other")
    assert str(tmp_path) not in command and "other/app/cache.py:44" in command
