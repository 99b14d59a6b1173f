"""Slowest first under xdist: the workers sort the tests longest first (``longest_first`` in
``selection``), but xdist's controller decides who runs what, and its defaults undo the order.

- ``--dist load`` (what ``-n`` means) hands each worker a quarter of its share up front, in
  collection order: with the longest tests first, one worker gets all of them and the other the
  short ones (measured by ``scripts/bench_makespan.py``: 38 % over the ideal makespan, worse than
  pytest's order). Handed out one at a time (``--maxschedchunk=1``), the worker that is free
  takes the next longest: longest-processing-time scheduling, up to the one test each worker
  holds ahead. Consecutive tests of a scoped fixture group may then land on both workers, as
  ``load`` never promised otherwise; ``--dist loadscope``/``loadgroup`` keep them together.
- ``--dist loadscope``/``loadgroup`` sort the scopes by their number of tests unless told not to.

A choice the user made on the command line stays.
"""

from __future__ import annotations

import pytest

from tiergate.protocol.runspec import RunSpec


def keep_slowest_first(config: pytest.Config, spec: RunSpec) -> None:
    """For a slowest-first tier with a history, make xdist's controller hand out the tests in
    the order the workers sorted them (a no-op without xdist: ``dist`` is then ``no``)."""
    if spec.tier.order != "slowest-first" or not spec.durations_from:
        return
    dist = config.getoption("dist", "no")
    if dist == "load" and config.getoption("maxschedchunk", None) is None:
        config.option.maxschedchunk = 1
    elif dist in ("loadscope", "loadgroup") and (
            "--loadscope-reorder" not in config.invocation_params.args):
        config.option.loadscopereorder = False
