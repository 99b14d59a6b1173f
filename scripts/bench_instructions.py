"""What tiergate costs, in CPU instructions: a measure that does not move with the load of a
shared machine. Each configuration runs pytest under valgrind (callgrind, no cache simulation) on
a 1-test suite and on an N-test suite of trivial tests; the first gives the fixed cost (start-up,
collection of one test, end-of-run reports), the difference gives the cost per test.

    python scripts/bench_instructions.py [--tests 500] [--variants fast,plain,guard,leaks]

Needs ``valgrind`` (``apt-get install valgrind``); takes about 20 s per configuration on two
cores. Counts are user-space instructions: system calls (the RSS read, the fd count) cost wall
time that this does not see, so scripts/bench_overhead.py stays the measure the target is stated
in. Hash randomisation is fixed (``PYTHONHASHSEED=0``) so that repeated runs give the same counts
to within a fraction of a percent; bytecode is compiled before the measured runs.

The variants are tiers written into the suite's pyproject.toml, so each isolates one part:
``plain`` (selection, timer, events and reports only), ``markers`` (+ the default tier's marker
expression), ``guard`` (+ the loopback network guard), ``leaks`` (+ the leak probes), ``fast``
(the default fast tier: all of it).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench_overhead import generate

TIERS = """
[tool.tiergate.tiers.plain]
leaks = "off"
network = "any"
[tool.tiergate.tiers.markers]
markers = "not (integration or e2e or staging or slow)"
leaks = "off"
network = "any"
[tool.tiergate.tiers.guard]
leaks = "off"
network = "loopback"
[tool.tiergate.tiers.leaks]
leaks = "fail"
network = "any"
"""

_COLLECTED = re.compile(rb"Collected : (\d+)")


def instructions(root: Path, args: list[str]) -> int:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONHASHSEED"] = "0"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, str(root)]
    subprocess.run(command, cwd=root, env=env, capture_output=True, check=False)  # bytecode
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
        cwd=root, env=env, capture_output=True, check=False,
    )
    found = _COLLECTED.search(result.stderr)
    if result.returncode != 0 or found is None:
        sys.exit(f"pytest {' '.join(args)} in {root} failed under valgrind "
                 f"(exit {result.returncode}):\n{result.stdout[-1500:]!r}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=500)
    parser.add_argument("--variants", default="plain,markers,guard,leaks,fast")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed: apt-get install valgrind")
    configurations = {"bare pytest": ["-p", "no:tiergate"]}
    for name in args.variants.split(","):
        configurations[f"--tier {name}"] = ["--tier", name]
    with tempfile.TemporaryDirectory(prefix="tiergate-instructions-") as scratch:
        one, many = Path(scratch, "one"), Path(scratch, "many")
        for root, tests in ((one, 1), (many, args.tests)):
            root.mkdir()
            generate(root, tests, probes_conftest=False)
            (root / "pyproject.toml").write_text(TIERS)
        counts: dict[str, tuple[int, int]] = {}
        with ThreadPoolExecutor(max_workers=2) as pool:
            for label, extra in configurations.items():
                small = pool.submit(instructions, one, extra)
                large = pool.submit(instructions, many, extra)
                counts[label] = (small.result(), large.result())
    bare_fixed, bare_large = counts["bare pytest"]
    bare_each = (bare_large - bare_fixed) / (args.tests - 1)
    print(f"Instructions (valgrind), 1 test and {args.tests} trivial tests; the last column puts "
          f"both costs on a 2,000-test run\n")
    print("| run | fixed | per test | fixed over bare | per test over bare | 2,000 tests |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, (fixed, large) in counts.items():
        each = (large - fixed) / (args.tests - 1)
        ratio = (fixed + 1999 * each) / (bare_fixed + 1999 * bare_each)
        extra = "" if label == "bare pytest" else f"+{(fixed - bare_fixed) / 1e6:.0f} M"
        per = "" if label == "bare pytest" else f"+{(each - bare_each) / 1e3:.0f} k"
        print(f"| {label} | {fixed / 1e6:.0f} M | {each / 1e3:.0f} k | {extra} | {per} | "
              f"{ratio:.3f}x |")


if __name__ == "__main__":
    main()
