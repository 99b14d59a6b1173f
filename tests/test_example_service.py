"""The example service behaves as its README says — checked without tiergate.

Everything runs in subprocesses: importing the example here would start its telemetry thread in this
process. Every process the example starts carries a marker in its environment, and the ``marker``
fixture stops any that are still running when a test ends.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tiergate.settings.config import load_config

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "startup-service"
FAST = "not (integration or e2e or staging or slow)"
MARKER_VARIABLE = "STARTUP_SERVICE_TEST_RUN"

# Loaded into the example's pytest run: which child processes (and their listening ports) exist
# while tests run, and which are still there once every fixture has been torn down.
CHILDREN_PROBE = """
import json, os
import psutil

_seen = {}

def _children():
    found = {}
    for child in psutil.Process().children(recursive=True):
        try:
            ports = [c.laddr.port for c in child.net_connections("inet") if c.status == "LISTEN"]
            found[child.pid] = {"cmdline": " ".join(child.cmdline()), "ports": ports}
        except psutil.Error:
            pass
    return found

def pytest_runtest_call(item):
    _seen.update(_children())

def pytest_sessionfinish(session):
    report = {"seen": list(_seen.values()), "left": list(_children().values())}
    with open(os.environ["CHILDREN_PROBE_OUT"], "w") as out:
        json.dump(report, out)
"""


@pytest.fixture
def marker() -> Iterator[str]:
    value = uuid.uuid4().hex
    yield value
    _stop_marked_processes(value)


def _marked_processes(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if process.pid != os.getpid() and process.environ().get(MARKER_VARIABLE) == marker:
                found.append(process)
        except psutil.Error:
            pass  # gone, or not ours to read
    return found


def _stop_marked_processes(marker: str) -> None:
    # The example's children exit by themselves once their parent is gone; give them a moment,
    # then kill the ones that did not (all started by this test: they carry its marker).
    deadline = time.monotonic() + 3
    while (left := _marked_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for process in left:
        process.kill()
    psutil.wait_procs(left, timeout=3)


def _environment(marker: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERGATE_")}
    env.pop("STAGING_URL", None)
    env.pop("PYTEST_ADDOPTS", None)
    env[MARKER_VARIABLE] = marker
    env.update(extra)
    return env


def run_example_pytest(
    marker: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:tiergate", "-p", "no:cacheprovider", *args],
        cwd=EXAMPLE,
        env=env or _environment(marker),
        capture_output=True,
        text=True,
        timeout=60,
    )


def run_example_python(marker: str, code: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=EXAMPLE,
        env=_environment(marker, PYTHONPATH=str(EXAMPLE)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def _counts(output: str) -> dict[str, int]:
    summary = output.strip().splitlines()[-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", summary)}


def test_clean_fast_tests_pass(marker: str) -> None:
    result = run_example_pytest(
        marker, "-m", FAST, "--ignore=tests/test_failure_modes.py", "--timeout=20", "-q"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    counts = _counts(result.stdout)
    assert counts["passed"] >= 10
    assert "failed" not in counts and "error" not in counts


def test_demonstrations_hang_in_recv_and_leak_quietly(marker: str, tmp_path: Path) -> None:
    (tmp_path / "children_probe.py").write_text(CHILDREN_PROBE)
    probe_out = tmp_path / "children.json"
    env = _environment(marker, PYTHONPATH=str(tmp_path), CHILDREN_PROBE_OUT=str(probe_out))

    result = run_example_pytest(
        marker, "-p", "children_probe", "tests/test_failure_modes.py", "--timeout=6", "-rA", env=env
    )

    out = result.stdout
    assert "FAILED tests/test_failure_modes.py::test_database_validation_without_timeout" in out
    assert "Timeout" in out
    assert re.search(r"startup_service/database\.py:\d+: Failed", out), out
    assert "self._sock.recv(4096)" in out
    for name in (
        "test_service_started_and_never_stopped",
        "test_restarts_grow_memory",
        "test_config_from_environment_without_restoring",
    ):
        assert f"PASSED tests/test_failure_modes.py::{name}" in out
    # Plain pytest says nothing about it, but the never-stopped helper is still running at the end.
    left = json.loads(probe_out.read_text())["left"]
    assert any("startup_service.helper" in child["cmdline"] for child in left)


def test_integration_tests_pass_and_stop_their_database_server(marker: str, tmp_path: Path) -> None:
    (tmp_path / "children_probe.py").write_text(CHILDREN_PROBE)
    probe_out = tmp_path / "children.json"
    env = _environment(marker, PYTHONPATH=str(tmp_path), CHILDREN_PROBE_OUT=str(probe_out))

    result = run_example_pytest(
        marker, "-p", "children_probe", "-m", "integration or slow", "--timeout=30", "-q", env=env
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert _counts(result.stdout)["passed"] >= 3
    probe = json.loads(probe_out.read_text())
    servers = [child for child in probe["seen"] if "startup_service.fakedb" in child["cmdline"]]
    assert servers, "the integration tests never started the database server"
    assert probe["left"] == []
    for port in (port for server in servers for port in server["ports"]):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_staging_tests_skip_without_staging_url(marker: str) -> None:
    result = run_example_pytest(marker, "-m", "e2e or staging", "-q", "-rs")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "set STAGING_URL" in result.stdout
    assert _counts(result.stdout)["skipped"] >= 1


def test_importing_telemetry_starts_a_thread(marker: str) -> None:
    report = run_example_python(
        marker,
        """
        import json, threading
        before = {t.name for t in threading.enumerate()}
        import startup_service.telemetry
        after = {t.name: t.daemon for t in threading.enumerate() if t.name not in before}
        print(json.dumps(after))
        """,
    )

    assert report == {"metrics-flusher": True}


def test_validate_database_with_a_timeout_raises_on_a_silent_listener(marker: str) -> None:
    report = run_example_python(
        marker,
        """
        import json, socket, time
        from startup_service import DatabaseUnavailable, validate_database
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            began = time.monotonic()
            try:
                validate_database(*listener.getsockname(), timeout=0.3)
                error = None
            except DatabaseUnavailable as exc:
                error = str(exc)
        print(json.dumps({"error": error, "seconds": time.monotonic() - began}))
        """,
    )

    assert "did not answer within 0.3s" in str(report["error"])
    assert 0.2 < float(report["seconds"]) < 5  # type: ignore[arg-type]


def test_fast_tier_limits_are_short() -> None:
    fast = load_config(EXAMPLE).tier("fast")

    assert (fast.test_timeout, fast.grace, fast.budget) == (3.0, 2.0, 120.0)
    assert fast.markers == FAST


def test_readme_names_the_real_culprit_lines() -> None:
    readme = (EXAMPLE / "README.md").read_text()
    for module, expected in (("database", "recv("), ("telemetry", ".start()")):
        match = re.search(rf"startup_service/{module}\.py:(\d+)", readme)
        assert match, f"the README names no line of {module}.py"
        source = (EXAMPLE / "startup_service" / f"{module}.py").read_text().splitlines()
        assert expected in source[int(match.group(1)) - 1]
