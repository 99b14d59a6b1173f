"""The action's install step (action/install-tiergate.sh) never changes what the project pinned:
run for real, pip into a throwaway venv, offline (--no-index, wheels from a folder).

tiergate's wheel is made from this checkout (its code, and the requirements of pyproject.toml);
its dependencies are metadata-only wheels: pip's resolver reads only names, versions and
requirements, which is all that decides whether the project's packages are kept."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "action" / "install-tiergate.sh"
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
# What the index offers: newer versions than the project pinned, which an unconstrained pip
# would happily move the project to.
OFFERED = {"pytest": ["7.4.0", "8.0.0", "9.2.0"], "pytest-timeout": ["2.2.0", "2.4.0"],
           "pytest-xdist": ["3.5.0", "3.8.0"], "psutil": ["5.9.0", "7.2.2"],
           "junitparser": ["3.1.0", "5.0.3"]}


def make_wheel(folder: Path, name: str, version: str, requires: list[str] | None = None,
               files: dict[str, bytes] | None = None, python: str | None = None) -> Path:
    dist = f"{name.replace('-', '_')}-{version}"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += f"Requires-Python: {python}\n" if python else ""
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires or [])
    content = dict(files or {})
    content[f"{dist}.dist-info/METADATA"] = meta.encode()
    content[f"{dist}.dist-info/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: tests\n"
                                          b"Root-Is-Purelib: true\nTag: py3-none-any\n")
    record = [f"{path},sha256={_digest(data)},{len(data)}" for path, data in content.items()]
    content[f"{dist}.dist-info/RECORD"] = ("\n".join([*record, f"{dist}.dist-info/RECORD,,"])
                                           + "\n").encode()
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in content.items():
            archive.writestr(path, data)
    return wheel


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of wheels pip installs from: tiergate from this checkout, and what it needs."""
    folder = tmp_path_factory.mktemp("wheels")
    for name, versions in OFFERED.items():
        for version in versions:
            make_wheel(folder, name, version)
    code = {path.relative_to(REPO / "src").as_posix(): path.read_bytes()
            for path in (REPO / "src" / "tiergate").rglob("*.py")}
    make_wheel(folder, "tiergate", PROJECT["version"], PROJECT["dependencies"], code,
               PROJECT["requires-python"])
    return folder


def pip_env(index: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "TIERGATE_"))}
    env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(index), PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def project_venv(tmp_path: Path, index: Path, *pins: str) -> Path:
    """A project's environment: a venv with the project's pinned packages installed."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *pins], check=True,
                   env=pip_env(index))
    return python


def installed(python: Path) -> dict[str, str]:
    out = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], check=True,
                         capture_output=True, text=True).stdout
    return dict(line.split("==", 1) for line in out.splitlines() if "==" in line)


def install(python: Path, index: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    wheel = next(index.glob("tiergate-*.whl"))
    env = pip_env(index) | {"RUNNER_TEMP": str(tmp_path)}
    return subprocess.run(["bash", str(SCRIPT), str(python), str(wheel)], env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_conflicting_pin_fails_with_one_error_line_and_is_kept(
        tmp_path: Path, index: Path) -> None:
    python = project_venv(tmp_path, index, "pytest==7.4.0", "psutil==7.2.2")
    before = installed(python)
    done = install(python, index, tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stdout.splitlines() if line.startswith("::error")]
    assert len(errors) == 1, done.stdout
    error = errors[0]
    assert f"tiergate {PROJECT['version']} depends on pytest>=8" in error, error
    assert "the project has pytest==7.4.0" in error, error
    assert "Pin a version that satisfies both" in error, error  # what to do
    assert installed(python) == before  # pytest neither upgraded nor anything else added
    assert list(tmp_path.glob("tiergate-install-*")) == []  # its temporary files are gone


def test_a_compatible_project_keeps_its_versions_and_gets_only_what_is_missing(
        tmp_path: Path, index: Path) -> None:
    # pins that tiergate allows, each older than the index's newest; junitparser missing
    python = project_venv(tmp_path, index, "pytest==8.0.0", "pytest-timeout==2.2.0",
                          "pytest-xdist==3.5.0", "psutil==5.9.0")
    before = installed(python)
    done = install(python, index, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "::error" not in done.stdout
    after = installed(python)
    assert {name: after[name] for name in before} == before
    assert set(after) - set(before) == {"tiergate", "junitparser"}
    subprocess.run([str(python), "-c", "import tiergate.report.summary"], check=True)


def test_a_python_without_pip_is_one_error_line(tmp_path: Path, index: Path) -> None:
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    done = install(venv / "bin" / "python", index, tmp_path)
    assert done.returncode == 2
    assert done.stdout.count("::error") == 1 and "is pip installed in it?" in done.stdout
