"""The files a finished (or killed) run leaves behind, all rebuilt from ``events.jsonl``."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from tiergate.errors import UsageError
from tiergate.protocol.layout import FINDINGS_FILE, JUNIT_FILE, MARK_FILE, SUMMARY_FILE, TRACE_FILE
from tiergate.protocol.layout import OWN_DIRS as _OWN_DIRS
from tiergate.protocol.layout import OWN_FILES as _OWN_FILES

if TYPE_CHECKING:
    from tiergate.results.model import RunResult

_MARK_TEXT = "A tiergate results dir: tiergate clears it at the start of each run.\n"


class ResultsDirClaim:
    """A results dir claimed for one run: made or recognised as tiergate's, and locked, so a
    second run on the same dir is refused instead of mixing its events into ours. The lock is
    an advisory ``flock`` on the mark file and goes with the process, however it dies."""

    def __init__(self, results_dir: Path, fd: int) -> None:
        self.results_dir = results_dir
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def claim_results_dir(results_dir: Path, project_root: Path | None = None) -> ResultsDirClaim:
    """Check that *results_dir* is ours to clear, lock it, and clear it. Refuses, with one line
    (UsageError), a dir that is a symlink or a file, the project itself or a folder above it,
    a dir holding files tiergate did not make, or one another run holds."""
    where = f"results dir {results_dir}"
    if results_dir.is_symlink():
        raise UsageError(f"{where} is a symlink; give a real directory (tiergate clears it)")
    if results_dir.exists() and not results_dir.is_dir():
        raise UsageError(f"{where} is not a directory; give a new or empty directory")
    resolved = results_dir.resolve()
    if project_root is not None:
        root = project_root.resolve()
        if resolved == root or resolved in root.parents:
            raise UsageError(f"{where} is the project or a folder above it; tiergate clears its "
                             "results dir, so give a folder of its own such as .tiergate/TIER")
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        mark = results_dir / MARK_FILE
        if not mark.exists():
            foreign = sorted(p.name for p in results_dir.iterdir()
                             if p.name not in _OWN_FILES + _OWN_DIRS)
            if foreign:
                raise UsageError(
                    f"{where} holds files tiergate did not make ({', '.join(foreign[:3])}"
                    f"{', …' if len(foreign) > 3 else ''}); give a new or empty directory")
        fd = os.open(mark, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise UsageError(f"cannot use {where}: {describe_os_error(exc)}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise UsageError(f"{where} is in use by another tiergate run; wait for it, or give "
                         "this run its own --results-dir") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, _MARK_TEXT.encode())
        clear_results(results_dir)
    except OSError as exc:
        os.close(fd)
        raise UsageError(f"cannot clear {where}: {describe_os_error(exc)}") from None
    return ResultsDirClaim(results_dir, fd)


def describe_os_error(exc: OSError) -> str:
    """An OSError as a person reads it: what, and where."""
    name = errno.errorcode.get(exc.errno or 0, "")
    what = exc.strerror or str(exc)
    place = f" ({exc.filename})" if exc.filename else ""
    return f"{what}{f' [{name}]' if name else ''}{place}"


def clear_results(results_dir: Path) -> None:
    """A new run starts with an empty results dir: no event, report, dump or scratch file of an
    earlier run may leak into this one. Only what tiergate makes is deleted."""
    results_dir.mkdir(parents=True, exist_ok=True)
    for name in _OWN_FILES:
        (results_dir / name).unlink(missing_ok=True)
    for folder in _OWN_DIRS:
        target = results_dir / folder
        if target.is_symlink():
            target.unlink()
        else:
            shutil.rmtree(target, ignore_errors=True)


def write_result_files(results_dir: Path, run: RunResult | None = None, *,
                       timeline: bool = True) -> RunResult:
    """junit.xml, findings.json, trace.json and summary.md in *results_dir*, from its event log
    (or from *run*, the model already built from it). *timeline* False: no trace.json (a plain
    ``pytest --tier`` run: its slices cost about as much per test as the JUnit file, and
    ``tiergate trace`` writes it from the same log when someone wants it)."""
    # Imported here, not at the top: a run's start claims the dir (above) and must not pay for
    # the model and the writers, which only its end needs (and a supervised pytest never does).
    from tiergate.results.junit_out import write_junit
    from tiergate.results.model import load_results_dir

    run = run if run is not None else load_results_dir(results_dir)
    write_junit(run, results_dir / JUNIT_FILE, results_dir)
    run.write_findings(results_dir)
    if timeline:
        write_trace(results_dir, run)
    summary = _render_summary(run, timeline)
    if summary is not None:
        (results_dir / SUMMARY_FILE).write_text(summary, encoding="utf-8")
    return run


def load_writers() -> None:
    """Import what ``write_result_files`` and the terminal summary need, ahead of their use: the
    supervisor calls this once pytest is started, so the imports take the time pytest spends
    starting up rather than time after it ended."""
    import tiergate.report.summary
    import tiergate.report.terminal
    import tiergate.report.trace
    import tiergate.results.junit_out  # noqa: F401


def write_trace(out_dir: Path, run: RunResult) -> None:
    """trace.json, the run's timeline, next to the other results so the artifact carries it;
    none for results with no times of day (JUnit from elsewhere: nothing to place)."""
    if not run.times:
        return
    from tiergate.report.trace import render_trace

    path = out_dir / TRACE_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # never half a file where it goes
    tmp.unlink(missing_ok=True)  # a link left there could point anywhere the job can write
    tmp.write_text(render_trace(run), encoding="utf-8")
    os.replace(tmp, path)  # replaces a link at trace.json, never writes through it


def _render_summary(run: RunResult, timeline: bool) -> str | None:
    from tiergate.report.summary import render_summary

    return render_summary(run, timeline=timeline)


__all__ = ["FINDINGS_FILE", "JUNIT_FILE", "SUMMARY_FILE", "write_result_files", "write_trace"]
