"""Results dirs and GitHub Actions files as tests of the readers and reporters need them: a
results dir as `tiergate run` leaves it, findings, hostile text, the step outputs parsed back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tiergate.protocol.events import EventWriter

HOSTILE = "boom <script>alert(1)</script> @everyone\n::error::pwned ##[error]x"
SECRET = "s3cr3t-value-42"


def finding(kind: str, test: str | None, message: str, severity: str = "error",
            **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "test": test, "severity": severity, "message": message, **extra}


def write_results_dir(
    path: Path,
    *,
    tier: str = "fast",
    passed: int = 3,
    failures: list[tuple[str, str]] = (),  # type: ignore[assignment]
    findings: list[dict[str, Any]] = (),  # type: ignore[assignment]
    dumps: dict[str, str] | None = None,
    samples: int = 0,
    settings: dict[str, Any] | None = None,
) -> Path:
    """A results dir as `tiergate run` leaves it: events.jsonl (and dumps/)."""
    path.mkdir(parents=True, exist_ok=True)
    for name, text in (dumps or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    w = EventWriter(path / "events.jsonl")
    w.emit("run-start", tier=tier, settings=settings or {})
    nodeids = [f"tests/test_ok.py::test_{i}" for i in range(passed)]
    w.emit("collected", tests=nodeids + [n for n, _ in failures])
    for i, nodeid in enumerate(nodeids):
        w.emit("test-start", nodeid=nodeid, path="tests/test_ok.py", line=i + 1)
        w.emit("test-finish", nodeid=nodeid, path="tests/test_ok.py", line=i + 1,
               outcome="passed", duration=0.01 * (i + 1))
    for nodeid, message in failures:
        w.emit("test-start", nodeid=nodeid, path="tests/test_bad.py", line=10)
        w.emit("test-finish", nodeid=nodeid, path="tests/test_bad.py", line=10,
               outcome="failed", duration=0.5, phase="call", message=message,
               longrepr=f"Traceback:\n  File tests/test_bad.py, line 10\nAssertionError: {message}")
    for i in range(samples):
        w.emit("sample", rss=(100 + i) * 2**20, cpu=1.0, processes=2)
    for f in findings:
        w.emit("finding", finding=f)
    w.emit("run-finish", exit_code=1 if failures or findings else 0)
    w.close()
    return path


def leak(i: int) -> dict[str, Any]:
    return finding("leak-thread", f"tests/test_leaky.py::test_{i}",
                   f"thread 'worker-{i}' still running", severity="warning" if i % 2 else "error",
                   location={"path": "tests/test_leaky.py", "line": 20 + i},
                   details={"created": f"src/app/pool.py:{40 + i} in start"})


def timeout_finding() -> dict[str, Any]:
    return finding("timeout", "tests/test_hang.py::test_db", "timeout: ran past 5s",
                   location={"path": "tests/test_hang.py", "line": 7},
                   culprit={"path": "src/app/db.py", "line": 88, "function": "connect",
                            "reason": "recv on 127.0.0.1:5432"},
                   dump="dumps/test_db.txt")


def parse_outputs(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and "=" not in line.split("<<")[0]:
            name, delim = line.split("<<", 1)
            value = []
            for inner in lines:
                if inner == delim:
                    break
                value.append(inner)
            out[name] = "\n".join(value)
        else:
            name, _, value = line.partition("=")
            out[name] = value
    return out
