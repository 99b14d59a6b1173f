"""Where a report's run comes from: results dirs (events.jsonl, else junit.xml) and JUnit files
of other runners, merged into one run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tiergate.errors import InputError, UsageError
from tiergate.events import EVENTS_FILE, RUN_START, read_events
from tiergate.report.junit_in import read_junit
from tiergate.resultfiles import JUNIT_FILE
from tiergate.results import RunResult, build, merge

DEFAULT_ROOT = Path(".tiergate")


def default_results_dirs(root: Path = DEFAULT_ROOT) -> list[Path]:
    """Every tier's results dir under .tiergate/ (what `tiergate run` writes by default)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / EVENTS_FILE).is_file())


def load_results(results_dir: Path) -> RunResult:
    if not results_dir.is_dir():
        raise InputError(f"{results_dir}: no such results directory")
    if (results_dir / EVENTS_FILE).is_file():
        return load_events(results_dir)
    if (results_dir / JUNIT_FILE).is_file():
        run = read_junit(results_dir / JUNIT_FILE)
        run.sources.insert(0, str(results_dir))
        return run
    raise InputError(f"{results_dir}: not a results directory (no {EVENTS_FILE} or {JUNIT_FILE})")


def load_events(results_dir: Path) -> RunResult:
    """The run in a results dir's event log. A log without a single event, or without the
    ``run-start`` every run writes first, is no run at all: reading it as one would report an
    empty run, and an empty run must never look like a pass."""
    path = results_dir / EVENTS_FILE
    try:
        records = list(read_events(path))
    except OSError as exc:
        raise InputError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    if not any(r.get("event") == RUN_START for r in records):
        what = (f"holds {len(records):,} events but no {RUN_START} event: the start of the run "
                "is missing (the file was emptied or replaced while the run went on)"
                if records else
                "holds no tiergate events: the run that wrote it died before it started, or the "
                "file was emptied or replaced")
        raise InputError(f"{path}: {what}")
    run = build(records)
    run.sources.append(str(results_dir))
    return run


def load_run(results_dirs: Sequence[Path], junit_files: Sequence[Path] = ()) -> RunResult:
    dirs = list(results_dirs)
    if not dirs and not junit_files:
        dirs = default_results_dirs()
        if not dirs:
            raise UsageError("no results to report: pass --results-dir DIR or --junit FILE "
                             f"(nothing found under {DEFAULT_ROOT}/)")
    runs = [load_results(d) for d in dirs] + [read_junit(f) for f in junit_files]
    return runs[0] if len(runs) == 1 else merge(runs)
