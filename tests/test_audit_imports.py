"""``tiergate audit-imports``: one fresh interpreter per module, a finding per side effect."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest


def write_package(root: Path, ports: dict[str, int]) -> None:
    files = {
        "__init__.py": "",
        "clean.py": "import json\nVALUE = json.dumps({'a': 1})\n",
        "poller.py": """
            import threading, time

            def poll():
                while True:
                    time.sleep(0.1)

            threading.Thread(target=poll, name="config-poller", daemon=True).start()
        """,
        "db.py": f"""
            import socket
            ALLOWED = socket.create_connection(("127.0.0.2", {ports["127.0.0.2"]}), timeout=0.2)
        """,
        "cache.py": f"""
            import socket
            REMOTE = socket.create_connection(("127.0.0.3", {ports["127.0.0.3"]}), timeout=0.2)
        """,
        "helper.py": """
            import subprocess, sys
            HELPER = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        """,
        "hang.py": """
            import time

            def wait_for_database():
                while True:
                    time.sleep(0.05)

            wait_for_database()
        """,
        "sub/__init__.py": "",
        "sub/writer.py": """
            import os
            with open(os.path.join(os.path.dirname(__file__), "state.txt"), "w") as f:
                f.write("x")
        """,
        "sub/quiet.py": "X = 1\n",
    }
    for name, text in files.items():
        path = root / "sideshow" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def audit(cwd: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    result = subprocess.run([sys.executable, "-m", "tiergate", "audit-imports", *args],
                            cwd=cwd, capture_output=True, text=True, timeout=120,
                            env={k: v for k, v in os.environ.items()
                                 if not k.startswith(("TIERGATE_", "PYTEST_"))})
    report = cwd / "out" / "findings.json"
    return result, json.loads(report.read_text()) if report.exists() else {}


def test_each_side_effect_gets_its_finding_and_clean_modules_none(
    tmp_path: Path, listeners: dict[str, int]
) -> None:
    write_package(tmp_path, listeners)
    result, report = audit(tmp_path, "sideshow", "--timeout", "5", "--network", "127.0.0.2",
                           "--results-dir", "out")
    assert result.returncode == 1, result.stderr
    findings = {f["details"]["module"]: f for f in report["findings"]}
    assert set(findings) == {"sideshow.poller", "sideshow.db", "sideshow.cache",
                             "sideshow.helper", "sideshow.hang", "sideshow.sub.writer"}
    kinds = {m: f["kind"] for m, f in findings.items()}
    assert kinds.pop("sideshow.hang") == "timeout"
    assert set(kinds.values()) == {"import-side-effect"}

    poller = findings["sideshow.poller"]
    assert "'config-poller'" in poller["message"]
    assert poller["culprit"] == {"path": "sideshow/poller.py", "line": 8, "function": "<module>"}
    assert poller["details"]["effects"][0]["alive"] is True
    db = findings["sideshow.db"]
    assert f"connected to 127.0.0.2:{listeners['127.0.0.2']}" in db["message"]
    cache = findings["sideshow.cache"]
    assert f"127.0.0.3:{listeners['127.0.0.3']} (refused)" in cache["message"]
    assert "NetworkBlocked" in cache["details"]["error"]
    assert "spawned" in findings["sideshow.helper"]["message"]
    assert "time.sleep(30)" in findings["sideshow.helper"]["message"]
    assert "sub/state.txt for writing" in findings["sideshow.sub.writer"]["message"]
    assert findings["sideshow.sub.writer"]["culprit"]["path"] == "sideshow/sub/writer.py"

    hang = findings["sideshow.hang"]
    assert "did not finish in 5s" in hang["message"]
    assert hang["culprit"]["function"] == "wait_for_database"
    assert hang["dump"] and (tmp_path / "out" / hang["dump"]).is_file()

    modules = {row["module"]: row for row in report["modules"]}
    assert modules["sideshow.clean"]["result"] == "clean"
    assert modules["sideshow.sub.quiet"]["result"] == "clean"
    assert all(isinstance(row["seconds"], float) for row in modules.values())
    assert "sideshow.clean" in result.stdout and "clean" in result.stdout


def test_clean_package_exits_zero(tmp_path: Path) -> None:
    (tmp_path / "calm").mkdir()
    (tmp_path / "calm" / "__init__.py").write_text("from calm import a\n")
    (tmp_path / "calm" / "a.py").write_text("import os\nHOME = os.environ.get('HOME')\n")
    result, report = audit(tmp_path, "calm", "--results-dir", "out")
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["findings"] == [] and report["outcome"] == "passed"
    assert [row["module"] for row in report["modules"]] == ["calm", "calm.a"]


@pytest.mark.parametrize("args", [["no_such_package_here"], ["calm", "--timeout", "soon"],
                                  ["calm", "--network", "[]"]])
def test_usage_errors_are_one_line(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "calm").mkdir()
    (tmp_path / "calm" / "__init__.py").write_text("")
    result, _ = audit(tmp_path, *args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("tiergate: error:")


def write_files(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_one_finding_per_root_cause_naming_the_modules_it_hit(tmp_path: Path) -> None:
    # rooty/__init__.py starts a thread: importing any of its modules runs it first
    write_files(tmp_path, {
        "rooty/__init__.py": """
            import threading, time
            threading.Thread(target=time.sleep, args=(30,), name="root-poller",
                             daemon=True).start()
        """,
        "rooty/a.py": "X = 1\n",
        "rooty/b.py": """
            import threading, time
            threading.Thread(target=time.sleep, args=(30,), name="b-worker", daemon=True).start()
        """,
        "rooty/sub/__init__.py": "",
        "rooty/sub/c.py": "from rooty import a\n",
    })
    result, report = audit(tmp_path, "rooty", "--results-dir", "out")
    assert result.returncode == 1, result.stdout + result.stderr
    found = [(f["details"]["module"], f["details"]["modules"]) for f in report["findings"]]
    assert found == [
        ("rooty", ["rooty", "rooty.a", "rooty.b", "rooty.sub", "rooty.sub.c"]),
        ("rooty.b", ["rooty.b"]),
    ]
    root = report["findings"][0]
    assert "'root-poller'" in root["message"] and "'b-worker'" not in root["message"]
    assert root["message"].endswith(
        "; the same on importing rooty.a, rooty.b, rooty.sub, rooty.sub.c")
    assert root["culprit"]["path"] == "rooty/__init__.py"
    assert "'b-worker'" in report["findings"][1]["message"]
    assert result.stdout.count("import-side-effect:") == 2


def test_every_import_error_says_why_and_each_cause_once(tmp_path: Path) -> None:
    write_files(tmp_path, {
        "broken/__init__.py": "",
        "broken/core.py": "import nonexistent_dep_xyz\n",
        "broken/x.py": "from broken import core\n",
        "broken/y.py": "from broken.core import *\n",
        "broken/bad.py": "X = 1\nraise RuntimeError('no config file')\n",
        "broken/ok.py": "X = 1\n",
    })
    result, report = audit(tmp_path, "broken", "--results-dir", "out")
    assert result.returncode == 0, result.stdout + result.stderr  # an error is no side effect
    missing = "ModuleNotFoundError: No module named 'nonexistent_dep_xyz'"
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:7]}
    for module in ("broken.core", "broken.x", "broken.y"):
        assert rows[module].endswith(f"error: {missing}")
    assert rows["broken.bad"].endswith("error: RuntimeError: no config file")
    assert rows["broken.ok"].endswith("clean")
    assert report["errors"] == [
        {"error": "RuntimeError: no config file", "location": {"path": "broken/bad.py", "line": 2},
         "module": "broken.bad", "modules": ["broken.bad"]},
        {"error": missing, "location": {"path": "broken/core.py", "line": 1},
         "module": "broken.core", "modules": ["broken.core", "broken.x", "broken.y"]},
    ]
    assert (f"import error at broken/core.py:1: {missing} "
            "(importing broken.core, broken.x, broken.y)") in result.stdout
    assert report["counts"]["errors"] == 4


def test_a_package_that_hangs_is_one_finding_and_its_modules_wait_no_more(
    tmp_path: Path,
) -> None:
    write_files(tmp_path, {
        "stuck/__init__.py": """
            import time

            def wait_for_database():
                while True:
                    time.sleep(0.05)

            wait_for_database()
        """,
        "stuck/a.py": "X = 1\n",
        "stuck/b/__init__.py": "",
        "stuck/b/c.py": "X = 1\n",
    })
    result, report = audit(tmp_path, "stuck", "--timeout", "2", "--results-dir", "out")
    assert result.returncode == 1, result.stdout + result.stderr
    [hang] = report["findings"]
    assert hang["kind"] == "timeout" and hang["culprit"]["function"] == "wait_for_database"
    assert hang["details"]["modules"] == ["stuck", "stuck.a", "stuck.b", "stuck.b.c"]
    assert "3 modules under it not imported" in hang["message"]
    rows = {row["module"]: row for row in report["modules"]}
    assert rows["stuck.b.c"]["result"] == "not imported"
    assert "not imported: importing stuck did not finish" in result.stdout


def test_finding_the_modules_imports_none_of_them(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from tiergate.cli.audit_imports import discover

    marker = tmp_path / "imported.txt"
    write_files(tmp_path, {
        "noisy/__init__.py": f"open({str(marker)!r}, 'w').close()\n",
        "noisy/a.py": "", "noisy/__main__.py": "",
        "noisy/sub/__init__.py": f"open({str(marker)!r}, 'w').close()\n",
        "noisy/sub/deeper/__init__.py": "", "noisy/sub/deeper/b.py": "",
        "noisy/not_a_package/c.py": "",
    })
    monkeypatch.chdir(tmp_path)
    assert discover("noisy") == ["noisy", "noisy.a", "noisy.sub", "noisy.sub.deeper",
                                 "noisy.sub.deeper.b"]
    assert not marker.exists() and "noisy" not in sys.modules
