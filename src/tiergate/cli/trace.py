"""``tiergate trace``: the run's timeline as a Chrome trace / Perfetto JSON file (one lane per
process or xdist worker, each test a slice, dumps and kills as instants), to open in
https://ui.perfetto.dev or chrome://tracing."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from tiergate.errors import UsageError
from tiergate.protocol.layout import TRACE_FILE
from tiergate.report.trace import render_trace
from tiergate.results.inputs import load_run

OPEN_HINT = "open it in https://ui.perfetto.dev (Open trace file) or chrome://tracing"


def add_parser(sub: Any, name: str) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help="write the run's timeline as a Chrome trace / Perfetto JSON file",
        description="Write the timeline of a run (from its results dirs; shards side by side) "
        f"as a Chrome trace / Perfetto JSON file: {OPEN_HINT}. `tiergate run` and `tiergate "
        "report` write it with the results; a plain `pytest --tier` leaves it to this command.",
    )
    parser.add_argument("--results-dir", action="append", type=Path, default=[], metavar="DIR",
                        help="a results dir (repeat to merge shards); default: .tiergate/*")
    parser.add_argument("--output", type=Path, default=None, metavar="FILE",
                        help=f"where the trace goes (default: {TRACE_FILE} in the first "
                        "results dir)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    results = load_run(args.results_dir)
    out: Path = args.output or Path(args.results_dir[0] if args.results_dir
                                    else results.sources[0]) / TRACE_FILE
    text = render_trace(results)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")  # never half a file where it goes
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        raise UsageError(f"cannot write the trace to {out}: {exc.strerror or exc}; "
                         "choose another --output") from None
    tests = sum(1 for nodeid in results.tests if nodeid in results.times)
    sys.stdout.write(f"wrote the timeline of {tests} tests to {out}: {OPEN_HINT}\n")
    return 0
