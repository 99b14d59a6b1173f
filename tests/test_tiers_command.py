"""``tiergate tiers``: every tier's settings and selection, and the tests that no tier runs."""

from __future__ import annotations

import json
from pathlib import Path

from supervised import make_project, run_tiergate

FILES = {
    "tests/unit/test_u.py": """
        import pytest
        def test_plain(): pass
        @pytest.mark.slow
        def test_slow(): pass
    """,
    "tests/infra/test_i.py": """
        import pytest
        @pytest.mark.integration
        def test_db(): pass
        def test_forgotten(): pass
    """,
    "tests/e2e/test_e.py": """
        import pytest
        @pytest.mark.e2e
        def test_login(): pass
    """,
}
CONFIG = '[tool.tiergate.tiers.fast]\npaths = ["tests/unit"]\n'


def test_lists_tiers_counts_and_tests_no_tier_selects(tmp_path: Path) -> None:
    project = make_project(tmp_path, FILES, CONFIG)
    proc = run_tiergate(project, "tiers")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "fast  1 tests" in out and "nightly  2 tests" in out and "staging  1 tests" in out
    assert "5 tests collected; 1 selected by no tier" in out
    assert "not in any tier: tests/infra/test_i.py::test_forgotten" in out
    assert "test-timeout   1m" in out


def test_json_output(tmp_path: Path) -> None:
    project = make_project(tmp_path, FILES, CONFIG)
    proc = run_tiergate(project, "tiers", "--json")
    data = json.loads(proc.stdout)
    assert data["tiers"]["fast"]["paths"] == ["tests/unit"]
    assert sorted(data["selection"]["tiers"]["nightly"]) == [
        "tests/infra/test_i.py::test_db",
        "tests/unit/test_u.py::test_slow",
    ]


def test_bad_config_is_one_line(tmp_path: Path) -> None:
    project = make_project(tmp_path, FILES, '[tool.tiergate.tiers.fast]\nworkers = "many"\n')
    proc = run_tiergate(project, "tiers")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "workers = 'many' is not valid" in proc.stderr


def test_a_missing_project_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"
    for args in (("tiers",), ("tiers", "--no-collect"), ("run", "--tier", "fast")):
        proc = run_tiergate(tmp_path, *args, "--project", str(missing))
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == f"tiergate: error: --project {missing}: no such directory\n"


def test_the_new_keys_are_listed(tmp_path: Path) -> None:
    project = make_project(tmp_path, FILES, CONFIG + 'collect-timeout = "20s"\n'
                           "allow-no-tests = true\n")
    proc = run_tiergate(project, "tiers", "--no-collect")
    assert proc.returncode == 0, proc.stderr
    assert "collect-timeout 20s" in proc.stdout and "allow-no-tests true" in proc.stdout
    data = json.loads(run_tiergate(project, "tiers", "--no-collect", "--json").stdout)
    assert data["tiers"]["fast"]["allow-no-tests"] is True
    assert data["tiers"]["nightly"]["collect-timeout"] == "10m"


def test_collects_as_pytest_does_under_filterwarnings_error(tmp_path: Path) -> None:
    """`filterwarnings = error` in the project: `tiergate tiers` collects what `pytest
    --collect-only` collects, and a warning at import is the same collection error for both."""
    import subprocess
    import sys

    files = {**FILES, "tests/unit/test_warns.py": """
        import warnings
        warnings.warn("this helper is old", DeprecationWarning)
        def test_never_collected(): pass
    """}
    project = make_project(tmp_path, files, CONFIG + '[tool.pytest.ini_options]\n'
                           'filterwarnings = ["error"]\n'
                           'markers = ["slow", "integration", "e2e"]\n')
    pytest_proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q"],
                                 cwd=project, capture_output=True, text=True, timeout=120,
                                 check=False)
    assert pytest_proc.returncode == 2  # pytest's own: one module errored at collection
    collected = [ln for ln in pytest_proc.stdout.splitlines() if "::" in ln]
    errors = [ln for ln in pytest_proc.stdout.splitlines() if ln.startswith("ERROR")]
    assert len(collected) == 5 and errors == ["ERROR tests/unit/test_warns.py - DeprecationWarn"
                                              "ing: this helper is old"]
    proc = run_tiergate(project, "tiers", "--json")
    assert proc.returncode == 0, proc.stderr
    selection = json.loads(proc.stdout)["selection"]
    assert selection["tests"] == collected
    assert selection["collection_errors"] == errors
