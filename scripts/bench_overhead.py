"""What tiergate costs per test: a generated suite of trivial tests, run as bare pytest, with only
the leak probes and the network guard (LeakWatch registered from a conftest, all probes on), and
with the whole plugin (``--tier fast``), and under the supervisor (``tiergate run --tier fast``),
median of paired runs.

    python scripts/bench_overhead.py [--tests 2000] [--pairs 5] [--src DIR] [--modes bare,tier,run]

``--src DIR`` runs tiergate from another source tree (``PYTHONPATH=DIR``), e.g. an older commit
unpacked with ``git archive COMMIT src | tar -x -C /tmp/old`` and ``--src /tmp/old/src``, to put
a before and an after side by side.

Prints a Markdown table. The targets (issue 22): ``--tier fast`` in instructions
(scripts/bench_instructions.py), and at most 1.12x wall time for ``tiergate run``.
Not a test: timings on shared machines vary, so this is run by hand and its table pasted where it
is needed. CPU time (user + system of the pytest process) is the steadier figure on a shared
machine; wall time is what the target is stated in. Bytecode is written and reused across runs
(``PYTHONDONTWRITEBYTECODE`` is dropped): otherwise rewriting and compiling 2,000 test functions
on every run would dominate both sides and hide the per-test cost being measured.
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
    from tiergate.settings.config import Tier
    from tiergate.plugin.leaks import LeakWatch
    from tiergate.plugin.pertest import PerTest
    from tiergate.plugin.netguard import install_guard

    FOUND = []

    def pytest_configure(config):
        tier = Tier(name="fast", leaks="fail", network="loopback")
        watch = LeakWatch(tier=tier, emit=FOUND.append)
        config.pluginmanager.register(watch, "tiergate-leaks")
        per_test = PerTest()
        per_test.add(watch)
        config.pluginmanager.register(per_test, "tiergate-per-test")
        install_guard(tier.network, tier_name=tier.name, emit=FOUND.append)

    def pytest_unconfigure(config):
        if FOUND:
            print("FINDINGS:", len(FOUND))
"""

# mode -> (label, extra pytest arguments, BENCH_PROBES)
# The test extra installs pytest-rerunfailures and pytest-socket: neither in any mode (a bare
# pytest with pytest-socket's per-test hooks would hide part of what tiergate costs).
_NO_RERUNS = ["-p", "no:rerunfailures", "-p", "no:socket"]
MODES = {
    "bare": ("bare pytest", ["-p", "no:tiergate", *_NO_RERUNS], "0"),
    "probes": ("+ leak probes and network guard (LeakWatch only)",
               ["-p", "no:tiergate", *_NO_RERUNS], "1"),
    "tier": ("whole plugin: `--tier fast`", ["--tier", "fast", *_NO_RERUNS], "0"),
    "run": ("supervised: `tiergate run --tier fast`", ["-p", "no:cacheprovider", *_NO_RERUNS],
            "0"),
}


def generate(root: Path, tests: int, *, probes_conftest: bool = True) -> None:
    """*tests* trivial tests, 100 per file; *probes_conftest*: with the conftest that registers
    the probes alone when ``BENCH_PROBES=1`` (scripts/bench has no such row)."""
    per_file = 100
    for index in range(0, tests, per_file):
        body = "\n".join(f"def test_{n}():\n    assert {n} >= 0\n"
                         for n in range(index, min(tests, index + per_file)))
        (root / f"test_gen_{index // per_file:03d}.py").write_text(body)
    if probes_conftest:
        (root / "conftest.py").write_text(CONFTEST)
    (root / "pyproject.toml").write_text("")


def timed(root: Path, mode: str, src: str | None) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one pytest run."""
    _, extra, probes = MODES[mode]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["BENCH_PROBES"] = probes
    if src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    if mode == "run":  # the supervisor, then pytest under it (its arguments after --)
        command = [sys.executable, "-m", "tiergate", "run", "--tier", "fast", "--project",
                   str(root), "--results-dir", str(root / ".tiergate-run"), "--", "-q", *extra]
    else:
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra,
                   str(root)]
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - began
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    if result.returncode != 0 or "FINDINGS" in result.stdout:
        sys.exit(f"the benchmark suite did not pass cleanly ({mode}):\n{result.stdout[-2000:]}"
                 f"\n{result.stderr[-2000:]}")
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--src", default=None, help="run tiergate from this source tree")
    parser.add_argument("--modes", default="bare,probes,tier,run",
                        help="comma-separated, from: " + ", ".join(MODES))
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m != "bare"]
    with tempfile.TemporaryDirectory(prefix="tiergate-bench-") as scratch:
        root = Path(scratch)
        generate(root, args.tests)
        for mode in ("bare", *modes):
            timed(root, mode, args.src)  # warm the file cache and write the bytecode
        runs: dict[str, list[tuple[float, float]]] = {mode: [] for mode in ("bare", *modes)}
        for pair in range(args.pairs):
            # Rotate the order so that drift in machine load falls on every side.
            order = ["bare", *modes]
            shift = pair % len(order)
            for mode in order[shift:] + order[:shift]:
                runs[mode].append(timed(root, mode, args.src))
    med = statistics.median
    bare = runs["bare"]
    print(f"{args.tests} trivial tests, {args.pairs} rounds; ratios are medians of per-round "
          f"ratios to bare pytest{f'; tiergate from {args.src}' if args.src else ''}\n")
    print("| run | wall time | wall ratio | CPU time | CPU ratio | CPU per test |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode in ("bare", *modes):
        mine = runs[mode]
        wall = med(m[0] / b[0] for b, m in zip(bare, mine, strict=True))
        cpu = med(m[1] / b[1] for b, m in zip(bare, mine, strict=True))
        extra_us = (med(c for _, c in mine) - med(c for _, c in bare)) / args.tests * 1e6
        per_test = "" if mode == "bare" else f"+{extra_us:.0f} µs"
        print(f"| {MODES[mode][0]} | {med(w for w, _ in mine):.2f} s | {wall:.3f}x | "
              f"{med(c for _, c in mine):.2f} s | {cpu:.3f}x | {per_test} |")


if __name__ == "__main__":
    main()
