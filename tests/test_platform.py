"""Linux is the supported platform: elsewhere the action's first step and ``tiergate run`` each
stop with one line that says so, instead of a traceback half-way."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def test_tiergate_run_on_another_platform_fails_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.tiergate]\n")
    code = ("import sys; sys.platform = 'win32'\n"
            "from tiergate.cli import main\n"
            f"sys.exit(main(['run', '--tier', 'fast', '--project', {str(tmp_path)!r}]))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "tiergate: error: tiergate run supports Linux only (this is win32); run the tier's tests "
        "with plain pytest here, or use a Linux runner"]
    assert not (tmp_path / ".tiergate").exists()  # nothing was started


def _setup_script() -> str:
    steps = yaml.safe_load((REPO / "action.yml").read_text())["runs"]["steps"]
    script: str = next(s for s in steps if s.get("id") == "setup")["run"]
    return script


def test_the_actions_first_step_on_macos_fails_with_one_error_line(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "uname").write_text("#!/bin/sh\necho Darwin\n")
    (fake / "uname").chmod(0o755)
    env = {"PATH": f"{fake}:/usr/bin:/bin", "RUNNER_OS": "macOS",
           "GITHUB_OUTPUT": str(tmp_path / "out"), "GITHUB_ENV": str(tmp_path / "env"),
           "TIERGATE_PYTHON": "no-such-python", "TIERGATE_TIER": "fast",
           "TIERGATE_RUN_TESTS": "true", "TIERGATE_ALLOW_NO_TESTS": "false",
           "TIERGATE_FAIL_ON": "failures", "TIERGATE_ACTION_PATH": str(REPO)}
    result = subprocess.run(["bash", "-c", _setup_script()], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout.splitlines() == [
        "::error title=tiergate::tiergate supports Linux runners only (this is macOS): use "
        "runs-on: ubuntu-latest"]
    assert result.stderr == ""
