"""The start-up hook: on under a run, off (and invisible) otherwise, and never in the user's way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tiergate.child import DUMP_SIGNAL, RUN_DIR_ENV, SITE_DIR, boot_env, is_registered, stacks_file

_PATIENCE = 60.0


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", RUN_DIR_ENV, "TIERGATE_NETWORK")}


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=_PATIENCE, check=False)


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_boot_env_puts_the_hook_first_and_keeps_the_users_path(tmp_path: Path) -> None:
    env = boot_env(tmp_path / "run", {"PYTHONPATH": f"/a{os.pathsep}{SITE_DIR}{os.pathsep}/b"})

    assert env["PYTHONPATH"].split(os.pathsep) == [str(SITE_DIR), "/a", "/b"]
    assert env[RUN_DIR_ENV] == str((tmp_path / "run").resolve())
    assert boot_env(tmp_path, {})["PYTHONPATH"] == str(SITE_DIR)


def test_dump_signal_is_not_one_the_user_owns() -> None:
    assert DUMP_SIGNAL not in (signal.SIGUSR1, signal.SIGUSR2)
    assert signal.SIGRTMIN <= DUMP_SIGNAL <= signal.SIGRTMAX


def test_a_process_under_a_run_registers_and_survives_the_signal(
        tmp_path: Path, started: list[subprocess.Popen[bytes]]) -> None:
    env = {**clean_env(), **boot_env(tmp_path / "run", clean_env())}
    code = "import time\ndef napping():\n    time.sleep(600)\nnapping()\n"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    started.append(proc)
    deadline = time.monotonic() + _PATIENCE
    while not is_registered(proc.pid, tmp_path / "run") and time.monotonic() < deadline:
        time.sleep(0.05)
    path = stacks_file(proc.pid, tmp_path / "run")
    assert path.read_text().startswith(f"tiergate-stacks pid={proc.pid} ")
    assert f"signal={DUMP_SIGNAL}" in path.read_text()  # the hook's constant agrees with ours

    os.kill(proc.pid, DUMP_SIGNAL)
    while "napping" not in path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)

    assert "napping" in path.read_text()
    assert proc.poll() is None


def test_without_a_run_dir_the_hook_does_nothing(tmp_path: Path) -> None:
    env = {**clean_env(), "PYTHONPATH": str(SITE_DIR)}
    code = f"import os, tiergate.child as b; print(b.catches_signal(os.getpid(), {DUMP_SIGNAL}))"

    result = run_python(code, env)

    assert result.stdout.strip() == "False", result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("under_run", [True, False])
def test_the_users_own_sitecustomize_still_runs(tmp_path: Path, under_run: bool) -> None:
    user_site = tmp_path / "user_site"
    user_site.mkdir()
    (user_site / "sitecustomize.py").write_text("import os\nos.environ['USER_HOOK_RAN'] = 'yes'\n")
    base = {**clean_env(), "PYTHONPATH": str(user_site)}
    env = {**base, **boot_env(tmp_path / "run", base)}
    if not under_run:
        del env[RUN_DIR_ENV]
    code = ("import os, sys, sitecustomize\n"
            "print(os.environ.get('USER_HOOK_RAN'), sitecustomize.__file__)\n"
            "print(os.path.exists(os.path.join(os.environ.get('TIERGATE_RUN_DIR', '/nonexistent'),"
            " 'stacks', f'{os.getpid()}.txt')))\n")

    result = run_python(code, env)

    ran, module = result.stdout.split("\n")[0].split()
    assert (ran, module) == ("yes", str(user_site / "sitecustomize.py")), result.stderr
    assert result.stdout.split("\n")[1] == str(under_run)
    assert result.stderr == ""


def test_a_broken_user_sitecustomize_is_reported_and_the_process_still_registers(
        tmp_path: Path) -> None:
    user_site = tmp_path / "user_site"
    user_site.mkdir()
    (user_site / "sitecustomize.py").write_text("raise RuntimeError('user hook broke')\n")
    base = {**clean_env(), "PYTHONPATH": str(user_site)}
    env = {**base, **boot_env(tmp_path / "run", base)}

    result = run_python("import os; print(os.getpid())", env)

    assert result.returncode == 0
    assert "Error in sitecustomize" in result.stderr and "user hook broke" in result.stderr
    assert stacks_file(int(result.stdout), tmp_path / "run").exists()


def test_python_started_with_isolation_does_not_register(tmp_path: Path) -> None:
    env = {**clean_env(), **boot_env(tmp_path / "run", clean_env())}

    result = subprocess.run([sys.executable, "-I", "-c", "import os; print(os.getpid())"],
                            env=env, capture_output=True, text=True, timeout=_PATIENCE,
                            check=True)

    assert not stacks_file(int(result.stdout), tmp_path / "run").exists()
