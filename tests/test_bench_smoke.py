"""scripts/bench builds well-formed Markdown rows from its measurements (fake numbers here; the
benchmark itself is run by hand and never asserts a timing)."""

from __future__ import annotations

from scripts_loader import load_script

BENCH = load_script("bench")


def _columns(table: str) -> list[int]:
    return [line.count(" | ") + 1 for line in table.splitlines() if not line.startswith("|---")]


def test_rows_from_fake_numbers_make_one_well_formed_table() -> None:
    b = BENCH
    overhead = b.Overhead(tests=2000, rounds=2, samples={
        "bare pytest": [(2.0, 1.8), (2.2, 1.9)],
        "`pytest --tier fast` (all probes)": [(2.1, 1.9), (2.2, 2.0)],
        "pytest-memray (`--memray`)": None,
        "pytest-socket (`--disable-socket`)": [(2.0, 1.8)],
    }, failures={"pytest-socket (`--disable-socket`)": "exit 1"})
    hang = b.Hang(to_finding=2.1, continued=True, junit=True, named=True, total=2.6, killed=False)
    hung = b.Hang(to_finding=None, continued=False, junit=False, named=False, total=20.0,
                  killed=True)
    rows = [
        *b.overhead_rows(overhead),
        *b.hang_rows({("recv", "tiergate"): [hang, hang], ("GIL held", "pytest-timeout, signal"):
                      [hung]}, 2.0, 2.0, 20.0),
        *b.dump_rows({10: {"py-spy": 0.4, "no py-spy": 0.1}, 30: {"py-spy": None,
                                                                  "no py-spy": None}}, 3),
        *b.report_rows({100_000: (6.0, 80.0, 13.0)}, 1),
        *b.overshoot_rows([(0.5, 1), (0.7, 1)], 4.0, 2.0),
        *b.supervisor_rows(({"pytest --tier fast": 0.3, "tiergate run --tier fast": 0.5}, 5e-6),
                           3),
    ]
    table = b.render_table(rows)
    assert len(set(_columns(table))) == 1, table
    assert "1.025x wall" in table  # median of the per-round ratios 1.05 and 1.0
    assert "not installed" in table and "did not pass cleanly (exit 1)" in table
    assert "✅ ≤ 1.05x bare (wall)" in table
    assert "✅ ≤ 3 s to the finding" in table
    assert "hung: killed by the benchmark after 20 s" in table
    assert "❌ ≤ 5 s for 100k" in table and "✅ ≤ 1.5 s for 10" in table
    assert "0.60 s past budget + grace" in table
    assert "❔" not in table.split("fixed cost")[1].split("\n")[0]


def test_a_cell_with_a_pipe_does_not_break_the_row() -> None:
    table = BENCH.render_table([BENCH.Row("a", "x | y", details="N|auto")])
    assert _columns(table) == [6, 6]
