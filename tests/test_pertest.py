"""The per-test pipeline (plugin/pertest.py): steps begin in order, end in reverse, and see the
test's own reports."""

from __future__ import annotations

import json

import pytest

CONFTEST = """
import json, os
from tiergate.plugin.pertest import PerTest

LOG = []

class Step:
    def __init__(self, name):
        self.name = name
    def begin(self, item):
        LOG.append(["begin", self.name, item.name])
        return self.name + "-state"
    def end(self, item, nextitem, state, reports):
        LOG.append(["end", self.name, item.name, state, [r.when for r in reports],
                    nextitem.name if nextitem else None])

def pytest_configure(config):
    per_test = PerTest()
    per_test.add(Step("inner"))
    per_test.add(Step("outer"), first=True)
    config.pluginmanager.register(per_test, "tiergate-per-test")

def pytest_unconfigure(config):
    with open(os.environ["STEP_LOG"], "w") as f:
        json.dump(LOG, f)
"""


def test_steps_wrap_each_test_in_order(pytester: pytest.Pytester,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile("def test_a():\n    pass\n\ndef test_b():\n    assert False\n")
    log = pytester.path / "steps.json"
    monkeypatch.setenv("STEP_LOG", str(log))
    pytester.runpytest_subprocess("-p", "no:tiergate").assert_outcomes(passed=1, failed=1)
    phases = ["setup", "call", "teardown"]
    assert json.loads(log.read_text()) == [
        ["begin", "outer", "test_a"], ["begin", "inner", "test_a"],
        ["end", "inner", "test_a", "inner-state", phases, "test_b"],
        ["end", "outer", "test_a", "outer-state", phases, "test_b"],
        ["begin", "outer", "test_b"], ["begin", "inner", "test_b"],
        ["end", "inner", "test_b", "inner-state", phases, None],
        ["end", "outer", "test_b", "outer-state", phases, None],
    ]
