"""Benchmark: does slowest-first make 2 xdist workers finish together?

    python scripts/bench_makespan.py [--workers 2]

A suite of skewed sleeps (1 x 8 s, 4 x 2-3 s, 40 x 0.2 s; 26 s of work, the long ones last in
pytest's order) runs under `tiergate run` with `workers = 2`: first in pytest's order (its
events are the durations history), then slowest first in a few xdist set-ups. The makespan is
read from each run's events.jsonl (first test-start to last test-finish) and compared with the
ideal longest-processing-time (LPT) makespan of the measured durations. Wall time on a shared
machine: the load (os.getloadavg) is printed with the table.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SUITE = {
    "test_a_small.py": "import time, pytest\n\n"
                       "@pytest.mark.parametrize('n', range(40))\n"
                       "def test_small(n):\n    time.sleep(0.2)\n",
    "test_b_mid.py": "import time, pytest\n\n"
                     "@pytest.mark.parametrize('s', [2.0, 2.5, 2.5, 3.0])\n"
                     "def test_mid(s):\n    time.sleep(s)\n",
    "test_c_long.py": "import time\n\ndef test_long():\n    time.sleep(8)\n",
}

# (row name, tier order, extra pytest arguments)
SETUPS = [
    ("pytest order, --dist load", "pytest", []),
    ("slowest-first, xdist's own chunks (before the fix)", "slowest-first",
     ["--maxschedchunk=100000"]),
    ("slowest-first, --dist load", "slowest-first", []),
    ("slowest-first, --dist worksteal", "slowest-first", ["--dist", "worksteal"]),
]


def lpt_makespan(durations: list[float], workers: int) -> float:
    """The makespan of longest-processing-time scheduling: each test, longest first, to the
    worker that is free first."""
    loads = [0.0] * workers
    for d in sorted(durations, reverse=True):
        heapq.heapreplace(loads, loads[0] + d)
    return max(loads)


def read_events(results: Path) -> list[dict[str, Any]]:
    lines = (results / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def measured(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Makespan, durations and, per worker, the first test it started."""
    starts = [e for e in events if e["event"] == "test-start"]
    finishes = [e for e in events if e["event"] == "test-finish"]
    first: dict[str, str] = {}
    for e in sorted(starts, key=lambda e: e["t"]):  # the file's order is the writes' order
        first.setdefault(e.get("worker", "-"), e["nodeid"].split("::")[-1])
    return {"makespan": max(e["t"] for e in finishes) - min(e["t"] for e in starts),
            "durations": {e["nodeid"]: e["duration"] for e in finishes},
            "first": first}


def run(project: Path, name: str, order: str, extra: list[str], history: Path | None,
        workers: int) -> Path:
    (project / "pyproject.toml").write_text(
        f'[tool.tiergate.tiers.fast]\nworkers = {workers}\norder = "{order}"\n')
    results = project / ".tiergate" / name
    argv = [sys.executable, "-m", "tiergate", "run", "--tier", "fast",
            "--results-dir", str(results)]
    if history is not None:
        argv += ["--durations-from", str(history)]
    proc = subprocess.run([*argv, "--", *extra], cwd=project, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        sys.exit(f"{name}: tiergate run exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        for filename, text in SUITE.items():
            (project / filename).write_text(text)
        history = project / "durations.json"
        for index, (name, order, extra) in enumerate(SETUPS):
            got = measured(read_events(run(project, f"run{index}", order, extra,
                                           history if index else None, args.workers)))
            if index == 0:  # pytest's order run is the history of the others
                history.write_text(json.dumps(got["durations"]))
            ideal = lpt_makespan(list(got["durations"].values()), args.workers)
            rows.append((name, got["makespan"], ideal, got["first"]))
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{args.workers} workers, {os.cpu_count()} CPUs, load average {load} (1/5/15 min)\n")
    print("| set-up | makespan | ideal (LPT) | over ideal | first test per worker |")
    print("|---|---:|---:|---:|---|")
    for name, makespan, ideal, first in rows:
        firsts = ", ".join(f"{w}: {t}" for w, t in sorted(first.items()))
        over = 100 * (makespan / ideal - 1)
        print(f"| {name} | {makespan:.1f} s | {ideal:.1f} s | {over:+.0f} % | {firsts} |")


if __name__ == "__main__":
    main()
