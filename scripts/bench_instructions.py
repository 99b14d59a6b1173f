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
(the default fast tier: all of it). The last row is ``tiergate run --tier fast``: the supervisor
and every process under it (``--trace-children=yes``), which is what a CI job pays.

Two rows of what a user would run instead come first: ``pytest --junitxml``, and the stack that
gives a fraction of tiergate's features, pytest-timeout + pytest-socket + ``--junitxml`` (needs
``pip install pytest-socket``; without it the row says so). pytest-socket is kept out of every
other row (``-p no:socket``), so that installing it changes no other number; so is
pytest-rerunfailures (the test extra installs it; a tier unregisters it, bare pytest would pay
its hooks), in every row (``-p no:rerunfailures``).
"""

from __future__ import annotations

import argparse
import importlib.util
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
_NO_RERUNS = ["-p", "no:rerunfailures"]  # installed for tests, in no row
_NO_SOCKET = ["-p", "no:socket", *_NO_RERUNS]  # pytest-socket only in its own row
# The stack a user would run instead: a signal timeout per test, sockets refused but loopback.
STACK = ["-p", "no:tiergate", *_NO_RERUNS, "--timeout", "60", "--disable-socket",
         "--allow-hosts", "127.0.0.1,::1", "--junitxml", "stack.xml"]
STACK_LABEL = "pytest-timeout + pytest-socket + --junitxml"


def configurations(variants: list[str]) -> dict[str, list[str] | None]:
    """Label -> pytest arguments, in the order of the table; None: a row that cannot run."""
    rows: dict[str, list[str] | None] = {
        "bare pytest": ["-p", "no:tiergate", *_NO_SOCKET],
        "pytest --junitxml": ["-p", "no:tiergate", *_NO_SOCKET, "--junitxml", "bare.xml"],
        STACK_LABEL: STACK if importlib.util.find_spec("pytest_socket") else None,
    }
    for name in variants:
        rows[f"--tier {name}"] = ["--tier", name, *_NO_SOCKET]
    rows[RUN_LABEL] = [RUN, *_NO_SOCKET]
    return rows


RUN = "tiergate-run"  # the row's first word: the supervisor with pytest under it, not pytest
RUN_LABEL = "tiergate run --tier fast"


def instructions(root: Path, args: list[str]) -> int:
    """Instructions of one run in *root*; for the ``tiergate run`` row, of every process of its
    tree (the supervisor, its pytest, the last-will watcher), summed."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONHASHSEED"] = "0"
    if args[:1] == [RUN]:
        command = [sys.executable, "-m", "tiergate", "run", "--tier", "fast", "--project",
                   str(root), "--results-dir", str(root / ".tiergate-run"), "--", "-q",
                   "-p", "no:cacheprovider", *args[1:]]
        children = ["--trace-children=yes"]
    else:
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args,
                   str(root)]
        children = []
    subprocess.run(command, cwd=root, env=env, capture_output=True, check=False)  # bytecode
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *children, *command],
        cwd=root, env=env, capture_output=True, check=False,
    )
    found = [int(n) for n in _COLLECTED.findall(result.stderr)]
    if result.returncode != 0 or not found:
        sys.exit(f"{' '.join(command[2:4])} {' '.join(args)} in {root} failed under valgrind "
                 f"(exit {result.returncode}):\n{result.stdout[-1500:]!r}")
    return sum(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=500)
    parser.add_argument("--variants", default="plain,markers,guard,leaks,fast")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed: apt-get install valgrind")
    rows = configurations(args.variants.split(","))
    with tempfile.TemporaryDirectory(prefix="tiergate-instructions-") as scratch:
        one, many = Path(scratch, "one"), Path(scratch, "many")
        for root, tests in ((one, 1), (many, args.tests)):
            root.mkdir()
            generate(root, tests, probes_conftest=False)
            (root / "pyproject.toml").write_text(TIERS)
        counts: dict[str, tuple[int, int] | None] = {}
        with ThreadPoolExecutor(max_workers=2) as pool:
            for label, extra in rows.items():
                if extra is None:
                    counts[label] = None
                    continue
                small = pool.submit(instructions, one, extra)
                large = pool.submit(instructions, many, extra)
                counts[label] = (small.result(), large.result())
    bare = counts["bare pytest"]
    assert bare is not None
    bare_fixed, bare_large = bare
    bare_each = (bare_large - bare_fixed) / (args.tests - 1)
    print(f"Instructions (valgrind), 1 test and {args.tests} trivial tests; the last column puts "
          f"both costs on a 2,000-test run\n")
    print("| run | fixed | per test | fixed over bare | per test over bare | 2,000 tests |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, count in counts.items():
        if count is None:
            print(f"| {label} | not run: pip install pytest-socket | | | | |")
            continue
        fixed, large = count
        each = (large - fixed) / (args.tests - 1)
        ratio = (fixed + 1999 * each) / (bare_fixed + 1999 * bare_each)
        extra = "" if label == "bare pytest" else f"+{(fixed - bare_fixed) / 1e6:.0f} M"
        per = "" if label == "bare pytest" else f"+{(each - bare_each) / 1e3:.0f} k"
        print(f"| {label} | {fixed / 1e6:.0f} M | {each / 1e3:.0f} k | {extra} | {per} | "
              f"{ratio:.3f}x |")


if __name__ == "__main__":
    main()
