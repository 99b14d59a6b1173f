"""What the leak probes cost: a generated suite of trivial tests, bare pytest against pytest with
tiergate's LeakWatch (all probes on) and the network guard, median of paired runs.

    python scripts/bench_overhead.py [--tests 2000] [--pairs 7]

Prints a Markdown table. The target (issue 4) is at most 1.05x. Not a test: timings on shared
machines vary, so this is run by hand and its table pasted where it is needed.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFTEST = """
import os
if os.environ.get("BENCH_PROBES") == "1":
    from tiergate.config import Tier
    from tiergate.leaks import LeakWatch
    from tiergate.netguard import install_guard

    FOUND = []

    def pytest_configure(config):
        tier = Tier(name="fast", leaks="fail", network="loopback")
        config.pluginmanager.register(LeakWatch(tier=tier, emit=FOUND.append), "tiergate-leaks")
        install_guard(tier.network, tier_name=tier.name, emit=FOUND.append)

    def pytest_unconfigure(config):
        if FOUND:
            print("FINDINGS:", len(FOUND))
"""


def generate(root: Path, tests: int) -> None:
    per_file = 100
    for index in range(0, tests, per_file):
        body = "\n".join(f"def test_{n}():\n    assert {n} + 1 > {n}\n"
                         for n in range(index, min(tests, index + per_file)))
        (root / f"test_gen_{index // per_file:03d}.py").write_text(body)
    (root / "conftest.py").write_text(CONFTEST)


def timed(root: Path, probes: bool) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one pytest run. CPU time is the steadier figure on a
    machine shared with other work; wall time is what the issue's target is stated in."""
    env = {**os.environ, "BENCH_PROBES": "1" if probes else "0"}
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "-p", "no:tiergate", str(root)], cwd=root, env=env,
                            capture_output=True, text=True)
    elapsed = time.perf_counter() - began
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    if result.returncode != 0 or "FINDINGS" in result.stdout:
        sys.exit(f"the benchmark suite did not pass cleanly:\n{result.stdout[-2000:]}")
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tiergate-bench-") as scratch:
        root = Path(scratch)
        generate(root, args.tests)
        timed(root, False)  # warm the file cache and the bytecode
        runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for pair in range(args.pairs):
            # Alternate the order so drift in machine load falls on both sides.
            for probes in (False, True) if pair % 2 == 0 else (True, False):
                runs[probes].append(timed(root, probes))
    wall = [p[0] / b[0] for b, p in zip(runs[False], runs[True], strict=True)]
    cpu = [p[1] / b[1] for b, p in zip(runs[False], runs[True], strict=True)]
    med = statistics.median
    extra_cpu = med(c for _, c in runs[True]) - med(c for _, c in runs[False])
    per_test_us = extra_cpu / args.tests * 1e6
    print(f"{args.tests} trivial tests, {args.pairs} paired runs (median of per-pair ratios)\n")
    print("| run | wall time | wall ratio | CPU time | CPU ratio |")
    print("|---|---:|---:|---:|---:|")
    print(f"| bare pytest | {med(w for w, _ in runs[False]):.2f} s | 1.00x | "
          f"{med(c for _, c in runs[False]):.2f} s | 1.00x |")
    print(f"| + leak probes and network guard | {med(w for w, _ in runs[True]):.2f} s | "
          f"{med(wall):.3f}x | {med(c for _, c in runs[True]):.2f} s | {med(cpu):.3f}x |")
    print(f"\nabout {per_test_us:.0f} µs of CPU per test")


if __name__ == "__main__":
    main()
