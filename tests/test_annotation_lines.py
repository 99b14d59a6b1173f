"""Where annotations land: a failure on the line that failed (the deepest frame of its
traceback in the repository), and every path relative to the repository root, also when the
project is a folder of a monorepo."""

from __future__ import annotations

from pathlib import Path

import pytest
from resultsdirs import finding, write_results_dir

from tiergate.report.actions import annotation_commands
from tiergate.report.annotations import annotations_for
from tiergate.results.inputs import load_run

APP = """\
import extlib


def parse(header):
    name, value = header.split(":")
    return extlib.check(name, value)
"""
EXTLIB = """\
def check(name, value):
    if not value.strip():
        raise ValueError("bad header: " + name)
    return name
"""
TESTS = """\
from app.parse import parse


def test_parses_a_header():
    assert parse("a: 1") == "a"
    assert parse("b: ") == "b"


def test_compares():
    x = 1
    assert x == 2
"""


@pytest.mark.parametrize("style", ["long", "short", "native"])
def test_a_failure_is_annotated_on_the_line_that_failed(pytester: pytest.Pytester,
                                                         style: str) -> None:
    pytester.mkpydir("app")
    (pytester.path / "app" / "parse.py").write_text(APP)
    installed = pytester.path / ".venv" / "lib" / "python3" / "site-packages"
    installed.mkdir(parents=True)
    (installed / "extlib.py").write_text(EXTLIB)  # deeper, but not the project's code
    pytester.makepyfile(test_headers=TESTS)
    pytester.makeconftest(f"import sys\nsys.path.insert(0, {str(installed)!r})\n")
    pytester.runpytest_subprocess("--tier", "fast", f"--tb={style}").assert_outcomes(failed=2)
    run = load_run([pytester.path / ".tiergate" / "fast"], [])
    places = {n.title: (n.path, n.line)
              for n in annotations_for(run, root=pytester.path, project=pytester.path)}
    # not the def lines (4 and 9): the raise in the project's code, and the failing assert
    assert places == {"failed: test_headers.py::test_parses_a_header": ("app/parse.py", 6),
                      "failed: test_headers.py::test_compares": ("test_headers.py", 11)}


def test_a_failure_without_a_traceback_stays_on_its_test(tmp_path: Path) -> None:
    results = write_results_dir(tmp_path / "res", failures=[("tests/test_bad.py::test_x", "no")])
    (note,) = annotations_for(load_run([results], []), root=tmp_path, project=tmp_path)
    assert (note.path, note.line) == ("tests/test_bad.py", 10)


def test_workflow_commands_in_a_monorepo_name_files_from_the_repository_root(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "services" / "api"
    project.mkdir(parents=True)
    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path))
    monkeypatch.chdir(project)  # the action's working-directory
    side_effect = finding("import-side-effect", None, "a thread started at import",
                          location={"path": "sample_app/__init__.py", "line": 3})
    results = write_results_dir(project / "res", failures=[("tests/test_bad.py::test_x", "no")],
                                findings=[side_effect])
    lines = annotation_commands(load_run([results], []))
    files = [line.split("file=")[1].split(",")[0] for line in lines if "file=" in line]
    assert sorted(files) == ["services/api/sample_app/__init__.py",
                             "services/api/tests/test_bad.py"]
