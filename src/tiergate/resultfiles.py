"""The files a finished (or killed) run leaves behind, all rebuilt from ``events.jsonl``."""

from __future__ import annotations

import shutil
from pathlib import Path

from tiergate.events import EVENTS_FILE
from tiergate.findings import FINDINGS_FILE
from tiergate.junit import write_junit
from tiergate.results import RunResult, load_results_dir

JUNIT_FILE = "junit.xml"
SUMMARY_FILE = "summary.md"


def clear_results(results_dir: Path) -> None:
    """A new run starts with an empty results dir: no event, report, dump or scratch file of an
    earlier run may leak into this one."""
    results_dir.mkdir(parents=True, exist_ok=True)
    for name in (EVENTS_FILE, JUNIT_FILE, FINDINGS_FILE, SUMMARY_FILE):
        (results_dir / name).unlink(missing_ok=True)
    for folder in ("dumps", ".run"):
        shutil.rmtree(results_dir / folder, ignore_errors=True)


def write_result_files(results_dir: Path, run: RunResult | None = None) -> RunResult:
    """junit.xml, findings.json and summary.md in *results_dir*, from its event log (or from *run*,
    the model already built from it)."""
    run = run if run is not None else load_results_dir(results_dir)
    write_junit(run, results_dir / JUNIT_FILE, results_dir)
    run.write_findings(results_dir)
    summary = _render_summary(run)
    if summary is not None:
        (results_dir / SUMMARY_FILE).write_text(summary, encoding="utf-8")
    return run


def _render_summary(run: RunResult) -> str | None:
    from tiergate.report.summary import render_summary

    return render_summary(run)


__all__ = ["FINDINGS_FILE", "JUNIT_FILE", "SUMMARY_FILE", "write_result_files"]
