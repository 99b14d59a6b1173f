"""Sharding: one tier split over N machines (GitHub's matrix), balanced by how long each test took
in earlier runs.

The split is a pure function of the test ids, N and the recorded durations, so every shard job
computes the same partition on its own, with no coordinator: each test lands in exactly one shard.
With history it is LPT (longest first, each test to the least loaded shard), which on real suites
(many tests, none longer than a shard's share) puts the slowest shard within a few percent of the
ideal; tests without history count as the median known test. Without history the tests are cut
into N contiguous runs of equal count, which keeps a module's tests (and its fixtures) together.
"""

from __future__ import annotations

import heapq
import json
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from tiergate.errors import InputError, UsageError
from tiergate.results.model import load_results_dir

_SHARD = re.compile(r"^\s*([0-9]+)\s*/\s*([0-9]+)\s*$")
MAX_SHARDS = 1000  # more would be a typo; the split builds one list per shard


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` → ``(2, 4)``: shard K of N, counted from 1."""
    match = _SHARD.match(text)
    if not match:
        raise UsageError(f"--shard {text!r} is not valid: use K/N, e.g. 1/4 for the first of 4")
    # int() refuses 4300+ digits, so a number longer than MAX_SHARDS's is not converted at all
    k_text, n_text = (match.group(i).lstrip("0") or "0" for i in (1, 2))
    too_long = len(str(MAX_SHARDS)) + 1
    n = MAX_SHARDS + 1 if len(n_text) > too_long else int(n_text)
    if n > MAX_SHARDS:
        raise UsageError(f"--shard {text!r} is not valid: use K/N with N at most {MAX_SHARDS}")
    k = MAX_SHARDS + 1 if len(k_text) > too_long else int(k_text)
    if n < 1 or not 1 <= k <= n:
        raise UsageError(f"--shard {text!r} is not valid: K must be between 1 and N (N at least 1)")
    return k, n


def split(nodeids: Sequence[str], n: int, durations: Mapping[str, float]) -> list[list[str]]:
    """*nodeids* in *n* shards; each shard keeps the order the tests were given in."""
    if n < 1:
        raise UsageError(f"cannot split tests into {n} shards: use 1 or more")
    tests = list(dict.fromkeys(nodeids))  # a test given twice still runs once
    known = [durations[t] for t in tests if t in durations]
    if not known:
        return _split_by_count(tests, n)
    default = statistics.median(known)
    weight = {t: max(0.0, float(durations.get(t, default))) for t in tests}
    # Longest first; ties broken by test id so the result never depends on dict or input order.
    order = sorted(tests, key=lambda t: (-weight[t], t))
    loads = [(0.0, shard) for shard in range(n)]  # a heap of (load, shard index)
    owner: dict[str, int] = {}
    for test in order:
        load, shard = heapq.heappop(loads)
        owner[test] = shard
        heapq.heappush(loads, (load + weight[test], shard))
    shards: list[list[str]] = [[] for _ in range(n)]
    for test in tests:
        shards[owner[test]].append(test)
    return shards


def select_shard(
    nodeids: Sequence[str], k: int, n: int, durations: Mapping[str, float]
) -> list[str]:
    """The tests of shard *k* of *n* (counted from 1)."""
    return split(nodeids, n, durations)[k - 1]


def longest_first(tests: Sequence[tuple[str, str]], durations: Mapping[str, float]) -> list[str]:
    """The ids of *tests* (``(test id, group)`` in pytest's order), the longest group first, so
    xdist workers finish together (LPT). A group (a module or class whose scoped fixtures must
    not be set up twice) moves as one, its tests in their order; without history, or on ties,
    pytest's order stays. A test without history counts as the median known test."""
    known = [durations[t] for t, _ in tests if t in durations]
    if not known:
        return [t for t, _ in tests]
    default = statistics.median(known)
    groups: dict[str, list[str]] = {}
    for nodeid, group in tests:
        groups.setdefault(group, []).append(nodeid)
    weight = {g: sum(max(0.0, durations.get(t, default)) for t in ids) for g, ids in groups.items()}
    ordered = sorted(groups, key=lambda g: -weight[g])  # stable: ties keep pytest's order
    return [t for g in ordered for t in groups[g]]


def _split_by_count(tests: list[str], n: int) -> list[list[str]]:
    size, extra = divmod(len(tests), n)
    shards, start = [], 0
    for index in range(n):
        end = start + size + (1 if index < extra else 0)
        shards.append(tests[start:end])
        start = end
    return shards


def load_durations(paths: Iterable[Path | str]) -> dict[str, float]:
    """Test durations from earlier runs: results dirs (their ``events.jsonl``) and/or JSON files
    mapping test id to seconds. A path that does not exist is skipped (the first run has no
    history); a test found in several sources gets the mean of its durations."""
    seen: dict[str, list[float]] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = {t.nodeid: t.duration for t in load_results_dir(path).tests.values()}
        elif path.is_file():
            found = _read_durations_file(path)
        else:
            continue
        for nodeid, seconds in found.items():
            seen.setdefault(nodeid, []).append(seconds)
    return {nodeid: sum(values) / len(values) for nodeid, values in seen.items()}


def _read_durations_file(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: cannot read test durations: {exc}") from None
    if not isinstance(data, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in data.values()
    ):
        raise InputError(f"{path}: test durations must be a JSON object of test id to seconds")
    return {str(k): float(v) for k, v in data.items()}


def write_durations(path: Path, durations: Mapping[str, float]) -> None:
    """Keep *durations* for the next run's split (the nightly template caches this file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({k: round(v, 4) for k, v in sorted(durations.items())}, indent=0)
    path.write_text(text + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tiergate.shard OUT SOURCE...``: merge the durations found in SOURCE results dirs
    or JSON files into OUT (the nightly template's merge job keeps it for the next split)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tiergate.shard", description=main.__doc__)
    parser.add_argument("out", type=Path, help="the durations JSON file to write")
    parser.add_argument("sources", nargs="+", help="results dirs and/or durations JSON files")
    args = parser.parse_args(argv)
    try:
        durations = load_durations(args.sources)
    except InputError as exc:
        parser.exit(2, f"tiergate: error: {exc}\n")
    write_durations(args.out, durations)
    print(f"kept the durations of {len(durations)} tests in {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
