"""Running ``tiergate`` as a user does — a real process in a real project directory — and reading
what it leaves behind."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil


def make_project(root: Path, files: dict[str, str], pyproject: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(pyproject)
    for name, body in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body))
    return root


def tiergate_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "tiergate", *args]


def run_tiergate(
    project: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tiergate_argv(*args),
        cwd=project,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def results(project: Path, tier: str = "fast") -> Path:
    return project / ".tiergate" / tier


def findings(project: Path, tier: str = "fast") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((results(project, tier) / "findings.json").read_text())
    return data


def events(project: Path, tier: str = "fast") -> list[dict[str, Any]]:
    path = results(project, tier) / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_a_flaky_pass_after_a_hard_timeout(project: Path) -> None:
    """The run's verdict after a test was killed for a hard timeout and passed on its retry:
    it passes, with the timeout and the flaky pass as warnings, and junit.xml keeps the kill."""
    data = findings(project)
    assert data["outcome"] == "passed"
    assert {(f["kind"], f["severity"]) for f in data["findings"]} == {
        ("timeout", "warning"), ("flaky", "warning")}
    flaky = next(f for f in data["findings"] if f["kind"] == "flaky")
    assert flaky["message"].startswith("flaky: attempt 1 timed out with timeout:")
    assert "<flakyFailure" in (results(project) / "junit.xml").read_text()


def wait_for_event(project: Path, predicate: Any, tier: str = "fast", timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if any(predicate(e) for e in events(project, tier)):
                return
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError("the event never came")


def processes_in(folder: Path) -> list[int]:
    """Pids of processes working in *folder* (a test's own project directory)."""
    found = []
    for proc in psutil.process_iter(["pid", "cwd"]):
        if proc.info["cwd"] and Path(proc.info["cwd"]).is_relative_to(folder):
            found.append(proc.info["pid"])
    return found


def processes_running(marker: str) -> list[int]:
    """Pids of processes whose command line contains *marker* (a unique string a test chose)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if any(marker in part for part in proc.info["cmdline"] or ()):
            found.append(proc.info["pid"])
    return found
