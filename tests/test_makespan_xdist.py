"""Slowest first under xdist: the longest tests are the first each worker starts, so two workers
finish together, rather than xdist's up-front chunks giving one worker every long test. The
tests here take no time; the durations history says which are long. The makespan itself is
wall time: ``scripts/bench_makespan.py`` measures it."""

from __future__ import annotations

import json
from pathlib import Path

from supervised import events, make_project, run_tiergate

FILES = {
    "test_a_small.py": "import pytest\n\n@pytest.mark.parametrize('n', range(40))\n"
                       "def test_small(n):\n    pass\n",
    "test_b_mid.py": "import pytest\n\n@pytest.mark.parametrize('n', range(4))\n"
                     "def test_mid(n):\n    pass\n",
    "test_c_long.py": "def test_long():\n    pass\n",
}
HISTORY = {
    "test_c_long.py::test_long": 8.0,
    **{f"test_b_mid.py::test_mid[{n}]": 2.5 + n / 10 for n in range(4)},
    **{f"test_a_small.py::test_small[{n}]": 0.2 for n in range(40)},
}
LONGEST = sorted(HISTORY, key=HISTORY.__getitem__, reverse=True)


def _first_per_worker(tmp_path: Path, files: dict[str, str], history: dict[str, float],
                      *pytest_args: str) -> dict[str, str]:
    project = make_project(tmp_path / "p", files, "[tool.tiergate.tiers.fast]\nworkers = 2\n")
    durations = tmp_path / "durations.json"
    durations.write_text(json.dumps(history))
    proc = run_tiergate(project, "run", "--tier", "fast", "--durations-from", str(durations),
                        "--", *pytest_args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first: dict[str, tuple[float, str]] = {}
    for e in events(project):
        if e["event"] == "test-start" and e["t"] < first.get(e["worker"], (float("inf"), ""))[0]:
            first[e["worker"]] = (e["t"], e["nodeid"])
    return {worker: nodeid for worker, (_, nodeid) in first.items()}


def test_under_dist_load_each_worker_starts_with_a_longest_test(tmp_path: Path) -> None:
    # xdist's own chunks (a quarter of a worker's share) would give gw0 the long test and all
    # four mid ones, gw1 only short ones.
    first = _first_per_worker(tmp_path, FILES, HISTORY)
    assert set(first) == {"gw0", "gw1"}
    assert set(first.values()) <= set(LONGEST[:4]), first


def test_a_chunk_size_the_user_gave_stays(tmp_path: Path) -> None:
    first = _first_per_worker(tmp_path, FILES, HISTORY, "--maxschedchunk=100")
    # xdist's up-front chunks: the worker that came up first gets the long test and the four
    # mid ones, the other starts on the short ones (one at a time, it would start on a mid).
    assert sorted(first.values())[0].startswith("test_a_small.py::"), first


def test_under_dist_loadscope_the_longest_module_goes_first(tmp_path: Path) -> None:
    # loadscope sorts modules by their number of tests unless told not to: the 3-test and
    # 2-test modules would go first, the one long test last.
    files = {"test_few.py": "def test_long():\n    pass\n",
             "test_many.py": "".join(f"def test_m{n}():\n    pass\n" for n in range(3)),
             "test_some.py": "".join(f"def test_s{n}():\n    pass\n" for n in range(2))}
    history = {"test_few.py::test_long": 5.0,
               **{f"test_many.py::test_m{n}": 0.1 for n in range(3)},
               **{f"test_some.py::test_s{n}": 0.2 for n in range(2)}}
    first = _first_per_worker(tmp_path, files, history, "--dist", "loadscope")
    assert "test_few.py::test_long" in first.values(), first
