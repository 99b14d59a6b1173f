"""The results dir: every file and folder a run leaves in it, each name spelled here once.

A results dir is ``RESULTS_ROOT/<tier>`` under the project unless ``--results-dir`` says otherwise.

Each name, who writes it and who reads it:

``events.jsonl`` (``EVENTS_FILE``)
    written by the supervisor, the plugin (controller, each xdist worker) and guarded children;
    read by the supervisor (its tail) and ``results/model.py``, so by every report.
``.tiergate-results`` (``MARK_FILE``)
    written by ``results/files.py``: the dir is tiergate's, and its ``flock`` is the run's lock;
    read by the next run: may it clear this dir?
``dumps/<name>.txt`` (``DUMPS_DIR``, ``dump_file``)
    written by ``diagnose/dump.py`` (tree dumps, soft timeouts) and ``tiergate audit-imports``;
    read by the summary, the PR comment, JUnit ``system-err``, a finding's ``dump``.
``junit.xml`` (``JUNIT_FILE``)
    written by ``results/files.py`` after pytest ends for any reason;
    read by CI systems, and by ``results/inputs.py`` when there is no event log.
``findings.json`` (``FINDINGS_FILE``)
    written by ``results/model.py`` through ``protocol/findings.py``, and by audit-imports;
    read by other tools and the action's outputs.
``summary.md`` (``SUMMARY_FILE``)
    written by ``results/files.py`` and ``tiergate report``; read by the plugin (a path it prints),
    the job summary, the PR comment, the check run.
``debug.log`` (``DEBUG_LOG_FILE``)
    only with ``--debug`` / ``TIERGATE_DEBUG=1``: appended to by the supervisor and the plugin
    (``protocol/debuglog.py``); read by a person asking why the run did what it did.
``.run/`` (``RUN_DIR``, ``run_dir``)
    the run's private scratch space, made by the supervisor (the plugin under ``pytest --tier``).
``.run/attempt-N.json`` (``attempt_spec``)
    written by the supervisor (``protocol/runspec.py``); read by the plugin in that attempt.
``.run/stacks/<pid>.txt`` (``STACKS_DIR``)
    written by ``child/site/sitecustomize.py`` in every Python process of the run; read by
    ``child.is_registered`` and ``diagnose/dump.py``.

``child/`` is standard library only and keeps its own copy of ``STACKS_DIR``;
``tests/test_protocol_names.py`` checks that it equals this one.
"""

from __future__ import annotations

from pathlib import Path

RESULTS_ROOT = ".tiergate"  # under the project: one results dir per tier
EVENTS_FILE = "events.jsonl"
MARK_FILE = ".tiergate-results"
DUMPS_DIR = "dumps"
JUNIT_FILE = "junit.xml"
FINDINGS_FILE = "findings.json"
SUMMARY_FILE = "summary.md"
DEBUG_LOG_FILE = "debug.log"  # only with --debug (protocol/debuglog.py)
TRACE_FILE = "trace.json"  # `tiergate trace`: the run's timeline (report/trace.py)
RUN_DIR = ".run"
STACKS_DIR = "stacks"  # inside RUN_DIR
_ATTEMPT_SPEC = "attempt-{}.json"  # inside RUN_DIR
DUMP_LIMIT = 1024 * 1024  # bytes of one dump a report reads (here, not in results/inputs.py,
# so that the summary written at the end of a run does not import the untrusted-input reader)

# What clearing a results dir may delete: only what a run makes (the mark stays: it is the lock).
OWN_FILES = (EVENTS_FILE, JUNIT_FILE, FINDINGS_FILE, SUMMARY_FILE, DEBUG_LOG_FILE, TRACE_FILE)
OWN_DIRS = (DUMPS_DIR, RUN_DIR)


def default_results_dir(project_root: Path, tier_name: str) -> Path:
    return project_root / RESULTS_ROOT / tier_name


def run_dir(results_dir: Path) -> Path:
    """The run's private dir: attempt specs and the stacks files of registered processes."""
    return results_dir / RUN_DIR


def attempt_spec(run_dir: Path, attempt: int) -> Path:
    """Where the supervisor writes the run spec of pytest attempt *attempt*."""
    return run_dir / _ATTEMPT_SPEC.format(attempt)


def dump_file(name: str) -> str:
    """A dump's path relative to the results dir, as findings and events carry it."""
    return f"{DUMPS_DIR}/{name}.txt"
