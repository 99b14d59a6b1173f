"""Sharding: the split every shard job computes on its own must agree, cover every test once, and
balance the shards by the durations of earlier runs."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path

import pytest

from tiergate.errors import InputError, UsageError
from tiergate.protocol import events as ev
from tiergate.shard import load_durations, main, parse_shard, select_shard, split, write_durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1/1", (1, 1)), ("2/4", (2, 4)), (" 3 / 3 ", (3, 3)), ("1000/1000", (1000, 1000)),
     ("002/0004", (2, 4))],
)
def test_parse_shard_accepts_k_of_n(text: str, expected: tuple[int, int]) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "1", "0/4", "5/4", "1/0", "a/b", "1/2/3", "-1/2", "0/2", "3/2", "1/1001",
     "1/1000000000000", "1/" + "9" * 5000, "9" * 5000 + "/4", "1.5/2", "1/2.0", "\u0661/\u0662"],
)
def test_parse_shard_rejects_with_one_line(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_shard(text)
    message = str(info.value)
    assert "\n" not in message
    assert "K/N" in message or "between 1 and N" in message


def _loads(shards: list[list[str]], durations: dict[str, float]) -> list[float]:
    return [sum(durations[t] for t in shard) for shard in shards]


def test_without_history_shards_are_contiguous_and_even_by_count() -> None:
    tests = [f"tests/test_m{i // 4}.py::test_{i}" for i in range(10)]
    shards = split(tests, 3, {})
    assert [len(s) for s in shards] == [4, 3, 3]
    assert [t for s in shards for t in s] == tests  # contiguous: a module's tests stay together


def test_more_shards_than_tests_leaves_some_empty() -> None:
    assert split(["a", "b"], 4, {}) == [["a"], ["b"], [], []]
    assert sorted(t for s in split(["a", "b"], 4, {"a": 1.0}) for t in s) == ["a", "b"]


def test_one_slow_test_gets_a_shard_to_itself() -> None:
    durations = {"slow": 100.0, **{f"t{i}": 1.0 for i in range(100)}}
    shards = split(list(durations), 2, durations)
    slow_shard = next(s for s in shards if "slow" in s)
    assert slow_shard == ["slow"]


def test_unknown_tests_count_as_the_median_known_test() -> None:
    durations = {"a": 1.0, "b": 2.0, "c": 30.0}
    tests = ["a", "b", "c", "new1", "new2", "new3"]
    # The median is 2s, so the three new tests weigh 6s together, not 0 and not 30s each.
    shards = split(tests, 2, durations)
    assert ["c"] in shards
    assert sorted(t for s in shards for t in s) == sorted(tests)


def test_each_shard_keeps_the_given_order() -> None:
    durations = {f"t{i:02}": float(i % 7 + 1) for i in range(40)}
    tests = list(durations)
    for shard in split(tests, 3, durations):
        assert shard == sorted(shard, key=tests.index)


def test_select_shard_is_the_kth_part_counted_from_one() -> None:
    durations = {f"t{i}": float(i + 1) for i in range(20)}
    parts = split(list(durations), 4, durations)
    assert [select_shard(list(durations), k, 4, durations) for k in range(1, 5)] == parts


@pytest.mark.parametrize("seed", range(300))
def test_split_is_a_deterministic_balanced_partition(seed: int) -> None:
    """Property: for realistic suites the slowest shard is within 10 % of the ideal.

    Realistic means durations that are log-normally spread (most tests fast, a long tail), some
    tests without history, and any order. The ideal is the total over N, or the longest single
    test when that is longer: no split can beat either."""
    rng = random.Random(seed)
    count = rng.randint(40, 1500)
    n = rng.randint(2, 8)
    tests = [f"tests/test_{rng.randrange(60)}.py::test_{i}" for i in range(count)]
    true_duration = {t: rng.lognormvariate(-1.5, 1.3) for t in tests}
    history = {t: d for t, d in true_duration.items() if rng.random() > 0.05}

    shards = split(tests, n, history)

    flat = [t for shard in shards for t in shard]
    assert sorted(flat) == sorted(tests), "every test in exactly one shard"
    shuffled = tests[:]
    rng.shuffle(shuffled)
    reshuffled_history = dict(sorted(history.items(), key=lambda kv: rng.random()))
    again = split(shuffled, n, reshuffled_history)
    assert [set(s) for s in again] == [set(s) for s in shards], "the input order does not matter"

    weights = {t: history.get(t, 0.0) for t in tests}
    median = statistics.median(history.values())
    weights.update({t: median for t in tests if t not in history})
    loads = _loads(shards, weights)
    ideal = max(sum(loads) / n, max(weights.values()))
    assert max(loads) <= 1.10 * ideal, (max(loads), ideal)


def _write_run(results_dir: Path, durations: dict[str, float]) -> None:
    writer = ev.EventWriter(results_dir / ev.EVENTS_FILE)
    writer.emit(ev.RUN_START, tier="nightly", settings={})
    for nodeid, seconds in durations.items():
        writer.emit(ev.TEST_START, nodeid=nodeid, path="tests/test_a.py", line=1)
        writer.emit(
            ev.TEST_FINISH, nodeid=nodeid, path="tests/test_a.py", line=1,
            outcome="passed", duration=seconds, phase="call",
        )
    writer.emit(ev.RUN_FINISH, exit_code=0, duration=sum(durations.values()))
    writer.close()


def test_load_durations_from_results_dirs_and_files(tmp_path: Path) -> None:
    _write_run(tmp_path / "shard-1", {"tests/test_a.py::one": 1.5, "tests/test_a.py::two": 4.0})
    _write_run(tmp_path / "shard-2", {"tests/test_a.py::three": 0.25})
    file = tmp_path / "durations.json"
    file.write_text(json.dumps({"tests/test_a.py::one": 2.5, "tests/test_b.py::four": 7}))

    durations = load_durations(
        [tmp_path / "shard-1", tmp_path / "shard-2", file, tmp_path / "never-ran"]
    )

    assert durations == {
        "tests/test_a.py::one": 2.0,  # seen twice: the mean
        "tests/test_a.py::two": 4.0,
        "tests/test_a.py::three": 0.25,
        "tests/test_b.py::four": 7.0,
    }


def test_load_durations_with_no_history_is_empty(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert load_durations([tmp_path / "missing", tmp_path / "empty"]) == {}


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"t": "slow"}'])
def test_bad_durations_file_is_a_one_line_error(tmp_path: Path, text: str) -> None:
    file = tmp_path / "durations.json"
    file.write_text(text)
    with pytest.raises(InputError) as info:
        load_durations([file])
    assert str(file) in str(info.value)
    assert "\n" not in str(info.value)


def test_written_durations_read_back(tmp_path: Path) -> None:
    out = tmp_path / "cache" / "nightly.json"
    write_durations(out, {"b": 1.23456, "a": 2.0})
    assert load_durations([out]) == {"a": 2.0, "b": 1.2346}


def test_module_entry_merges_shards_into_one_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_run(tmp_path / "s1", {"t::a": 1.0})
    _write_run(tmp_path / "s2", {"t::b": 2.0})
    out = tmp_path / "durations.json"
    assert main([str(out), str(tmp_path / "s1"), str(tmp_path / "s2")]) == 0
    assert json.loads(out.read_text()) == {"t::a": 1.0, "t::b": 2.0}
    assert "2 tests" in capsys.readouterr().out


def test_too_many_shards_is_refused_at_once() -> None:
    """N is capped: `--shard 1/1000000000000` once spent minutes building a list per shard."""
    import time

    began = time.monotonic()
    with pytest.raises(UsageError, match=r"use K/N with N at most 1000$"):
        parse_shard("1/1000000000000")
    assert time.monotonic() - began < 1
