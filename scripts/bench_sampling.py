"""What sampling the process tree costs: `tiergate run` over a generated suite of trivial tests with
sampling off (`sample-interval = 0`) and on (0.5 s, the default), median of paired runs.

    python scripts/bench_sampling.py [--tests 2000] [--pairs 7] [--interval 0.5s]

Prints a Markdown table: wall time (what the issue's target, under 1 %, is stated in), CPU time
of the supervisor and pytest together (steadier on a shared machine), the number of samples
taken, and the cost of one sample measured directly. Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYPROJECT = """
[tool.tiergate.tiers.on]
markers = ""
leaks = "off"
network = "any"
sample-interval = "{interval}"

[tool.tiergate.tiers.off]
markers = ""
leaks = "off"
network = "any"
sample-interval = 0
"""


def generate(root: Path, tests: int, interval: str) -> None:
    per_file = 100
    for index in range(0, tests, per_file):
        body = "\n".join(
            f"def test_{n}():\n    assert {n} + 1 > {n}\n"
            for n in range(index, min(tests, index + per_file))
        )
        (root / f"test_gen_{index // per_file:03d}.py").write_text(body)
    (root / "pyproject.toml").write_text(PYPROJECT.format(interval=interval))


def timed(root: Path, tier: str) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the supervisor and pytest, sample events) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "tiergate", "run", "--tier", tier, "--", "-q", "-p",
         "no:cacheprovider"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        sys.exit(f"the benchmark suite did not pass cleanly:\n{done.stdout[-2000:]}")
    events = (root / ".tiergate" / tier / "events.jsonl").read_text().splitlines()
    samples = sum(1 for line in events if json.loads(line)["event"] == "sample")
    return elapsed, cpu, samples


def one_sample_cost(count: int = 300) -> float:
    """Seconds per TreeSampler.sample() on a pytest-sized tree (one Python process, one child)."""
    from tiergate.supervisor.sampler import TreeSampler

    child = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time; "
         "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
         "time.sleep(60)"],
        start_new_session=True,
    )
    try:
        time.sleep(0.3)
        sampler = TreeSampler(child.pid)
        sampler.sample()
        began = time.perf_counter()
        for _ in range(count):
            sampler.sample()
        return (time.perf_counter() - began) / count
    finally:
        os.killpg(child.pid, 9)
        child.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--interval", default="0.5s")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tiergate-bench-sampling-") as scratch:
        root = Path(scratch)
        generate(root, args.tests, args.interval)
        timed(root, "off")  # warm the file cache and the bytecode
        runs: dict[str, list[tuple[float, float, int]]] = {"off": [], "on": []}
        for pair in range(args.pairs):
            # Alternate the order so drift in machine load falls on both sides.
            for tier in ("off", "on") if pair % 2 == 0 else ("on", "off"):
                runs[tier].append(timed(root, tier))
    per_sample = one_sample_cost()
    wall = {k: statistics.median(r[0] for r in v) for k, v in runs.items()}
    cpu = {k: statistics.median(r[1] for r in v) for k, v in runs.items()}
    samples = {k: statistics.median(r[2] for r in v) for k, v in runs.items()}
    ratios = [on[0] / off[0] for off, on in zip(runs["off"], runs["on"], strict=True)]
    print(
        f"machine: {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, {len(os.sched_getaffinity(0))} cores; {args.tests} tests, "
        f"median of {args.pairs} paired runs, interval {args.interval}\n"
    )
    print("| sampling | wall | CPU (supervisor + pytest) | sample events |")
    print("|---|---|---|---|")
    for tier in ("off", "on"):
        print(
            f"| {tier} | {wall[tier]:.2f} s | {cpu[tier]:.2f} s | {samples[tier]:.0f} |"
        )
    overhead = wall["on"] / wall["off"] - 1
    print(
        f"| **overhead** | **{overhead * 100:+.2f} %** (median of pair ratios "
        f"{(statistics.median(ratios) - 1) * 100:+.2f} %) | "
        f"{(cpu['on'] / cpu['off'] - 1) * 100:+.2f} % | goal < 1 % |"
    )
    print(f"| one sample (2-process tree) | {per_sample * 1e6:.0f} µs | | |")


if __name__ == "__main__":
    main()
