"""Benchmark: the supervisor's fixed cost and the cost of writing one event.

    python scripts/bench_supervisor.py [--repeat 7]

Fixed cost = `tiergate run` minus `pytest --tier` on a one-test project (the same interpreter, runs
interleaved so machine noise hits both alike; medians). Event cost = one `test-finish` event
appended and flushed, per call. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tiergate.protocol.events import EventWriter


def timed(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def fixed_cost(repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "pyproject.toml").write_text("")
        (project / "test_one.py").write_text("def test_one():\n    pass\n")
        commands = {
            "pytest (bare)": [sys.executable, "-m", "pytest", "-q", "-p", "no:tiergate"],
            "pytest --tier fast": [sys.executable, "-m", "pytest", "-q", "--tier", "fast"],
            "tiergate run --tier fast": [sys.executable, "-m", "tiergate", "run", "--tier", "fast"],
        }
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(repeat):
            for name, argv in commands.items():
                samples[name].append(timed(argv, project))
        return {name: statistics.median(values) for name, values in samples.items()}


def event_cost(count: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        writer = EventWriter(Path(tmp) / "events.jsonl")
        started = time.perf_counter()
        for i in range(count):
            writer.emit(
                "test-finish",
                nodeid=f"tests/test_x.py::test_{i}",
                path="tests/test_x.py",
                line=i,
                outcome="passed",
                duration=0.001,
                phase=None,
                message=None,
                longrepr=None,
                stdout=None,
                stderr=None,
                dump=None,
            )
        elapsed = time.perf_counter() - started
        writer.close()
    return elapsed / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()
    medians = fixed_cost(args.repeat)
    per_event = event_cost(args.events)
    base = medians["pytest --tier fast"]
    print(
        f"machine: {platform.processor() or platform.machine()}, {platform.python_version()}, "
        f"{len(__import__('os').sched_getaffinity(0))} cores; median of {args.repeat} runs\n"
    )
    print("| what | median | vs `pytest --tier fast` |")
    print("|---|---|---|")
    for name, value in medians.items():
        print(f"| {name} | {value * 1000:.0f} ms | {value - base:+.3f} s |")
    supervisor = medians["tiergate run --tier fast"] - base
    print(f"| **supervisor fixed cost** | **{supervisor * 1000:.0f} ms** | goal < 500 ms |")
    print(f"| one event written and flushed | {per_event * 1e6:.1f} µs | goal: microseconds |")


if __name__ == "__main__":
    main()
