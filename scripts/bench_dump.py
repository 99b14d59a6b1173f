"""Benchmark the process-tree dump and the start-up hook; prints Markdown tables.

    python scripts/bench_dump.py [--repeat 5]

Trees of 1, 10 and 30 Python processes (a root and its children, each with a second thread),
all started under the start-up hook, are dumped with and without py-spy; the figure is the median
wall time of ``take_tree_dump``. The target from issue 3 is under 1.5 s for 10 processes.
Then the start-up cost the hook adds to every Python process (median of ``python -c pass``).
Every process started here is killed by its pid at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

from tiergate.child import RUN_DIR_ENV, boot_env, is_registered
from tiergate.diagnose.dump import take_tree_dump

CHILD = """
import threading, time
threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
time.sleep(600)
"""

ROOT = """
import subprocess, sys, threading, time
children = [subprocess.Popen([sys.executable, "-c", sys.argv[2]]) for _ in range(int(sys.argv[1]))]
threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
time.sleep(600)
"""


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", RUN_DIR_ENV)}


def start_tree(size: int, run_dir: Path) -> subprocess.Popen[bytes]:
    env = {**clean_env(), **boot_env(run_dir, clean_env())}
    return subprocess.Popen([sys.executable, "-c", ROOT, str(size - 1), CHILD], env=env)


def tree_pids(root: int) -> list[int]:
    import psutil

    try:
        return [root, *(p.pid for p in psutil.Process(root).children(recursive=True))]
    except psutil.NoSuchProcess:
        return [root]


def wait_registered(root: int, size: int, run_dir: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pids = tree_pids(root)
        if len(pids) == size and all(is_registered(pid, run_dir) for pid in pids):
            time.sleep(0.3)  # let them reach their sleep
            return
        time.sleep(0.05)
    raise SystemExit(f"the tree of {size} did not register in time")


def kill_tree(root: subprocess.Popen[bytes]) -> None:
    for pid in reversed(tree_pids(root.pid)):  # all started by this script
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    root.wait()


def bench_dumps(repeat: int) -> list[str]:
    rows = ["| processes | median dump, with py-spy | median dump, without py-spy |",
            "|---:|---:|---:|"]
    for size in (1, 10, 30):
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp)
            root = start_tree(size, run_dir)
            try:
                wait_registered(root.pid, size, run_dir)
                figures = []
                for py_spy in (True, False):
                    times = []
                    for _ in range(repeat):
                        without = mock.patch("tiergate.diagnose.dump._py_spy", lambda: None)
                        with contextlib.nullcontext() if py_spy else without:
                            dump = take_tree_dump(root.pid, run_dir=run_dir,
                                                  project_root=run_dir, reason="benchmark")
                        assert dump.processes == size, dump.text
                        assert ("(py-spy)" in dump.text) == py_spy, dump.text
                        times.append(dump.seconds)
                    figures.append(f"{statistics.median(times):.3f} s")
                rows.append(f"| {size} | {figures[0]} | {figures[1]} |")
            finally:
                kill_tree(root)
    return rows


def bench_startup(repeat: int) -> list[str]:
    def median_ms(env: dict[str, str]) -> float:
        times = []
        for _ in range(repeat * 6):
            began = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
            times.append(time.perf_counter() - began)
        return statistics.median(times) * 1000

    with tempfile.TemporaryDirectory() as tmp:
        base = clean_env()
        hooked = {**base, **boot_env(Path(tmp), base)}
        off = {**base, "PYTHONPATH": hooked["PYTHONPATH"]}
        plain, idle, on = median_ms(base), median_ms(off), median_ms(hooked)
    return ["| `python -c pass` | median | added by the hook |", "|---|---:|---:|",
            f"| without the hook | {plain:.2f} ms | |",
            f"| hook on PYTHONPATH, no run | {idle:.2f} ms | {idle - plain:+.2f} ms |",
            f"| hook registering | {on:.2f} ms | {on - plain:+.2f} ms |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print("\n".join(bench_dumps(args.repeat)))
    print()
    print("\n".join(bench_startup(args.repeat)))


if __name__ == "__main__":
    main()
