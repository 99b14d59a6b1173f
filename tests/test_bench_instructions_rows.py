"""scripts/bench_instructions.py: the rows of the table, in order, each row's plugins isolated
(the benchmark itself is run by hand; nothing here measures)."""

from __future__ import annotations

from scripts_loader import REPO, load_script

sys_path_added = str(REPO / "scripts")


def test_comparison_rows_come_first_and_pytest_socket_only_in_its_own() -> None:
    import sys

    sys.path.insert(0, sys_path_added)  # the script imports bench_overhead beside it
    try:
        bench = load_script("bench_instructions")
    finally:
        sys.path.remove(sys_path_added)
    rows = bench.configurations(["plain", "fast"])
    assert list(rows) == ["bare pytest", "pytest --junitxml", bench.STACK_LABEL,
                          "--tier plain", "--tier fast", bench.RUN_LABEL]
    assert rows[bench.RUN_LABEL][0] == bench.RUN
    for label, args in rows.items():
        if label == bench.STACK_LABEL:
            assert args is None or ("--disable-socket" in args and "--timeout" in args)
        else:
            assert args is not None and "no:socket" in args
