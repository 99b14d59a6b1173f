"""A tier's selection is exactly what ``pytest -m`` would select, though it evaluates the
expression once per set of marker names rather than once per test."""

from __future__ import annotations

import pytest

from tiergate.plugin.selection import MarkerExpression, TierSelection

SUITE = {
    "test_a": """
import pytest

pytestmark = pytest.mark.db

def test_module_marked():
    pass

@pytest.mark.slow
def test_module_and_own():
    pass

class TestGroup:
    pytestmark = [pytest.mark.integration]

    def test_in_class(self):
        pass

    @pytest.mark.device(serial="1")
    def test_device_one(self):
        pass
""",
    "test_b": """
import pytest

def test_plain():
    pass

@pytest.mark.slow
@pytest.mark.device(serial="2")
def test_slow_device_two():
    pass

@pytest.mark.parametrize("n", [1, pytest.param(2, marks=pytest.mark.e2e), 3])
def test_param(n):
    pass
""",
}

EXPRESSIONS = [
    "not (integration or e2e or staging or slow)",
    "db",
    "db and not slow",
    "integration or e2e",
    "not db",
    "slow",
    "device",
    "device(serial='1')",
    "not device(serial=\"2\") and not e2e",
]


class _Items:
    """Collects the items once, for evaluating expressions in-process."""

    items: list[pytest.Item]

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.items = list(items)


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(**SUITE)
    pytester.makeini(
        "[pytest]\nmarkers =\n  db\n  slow\n  integration\n  e2e\n  staging\n  device\n"
    )
    return pytester


def _selected_by_pytest(pytester: pytest.Pytester, expression: str) -> set[str]:
    result = pytester.runpytest_inprocess("--collect-only", "-q", "-p", "no:tiergate",
                                          "-m", expression)
    return {line for line in result.outlines if "::" in line}


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_marker_expression_selects_what_pytest_m_selects(
    project: pytest.Pytester, expression: str
) -> None:
    collector = _Items()
    project.inline_run("--collect-only", "-p", "no:tiergate", plugins=[collector])
    assert len(collector.items) == 9
    selects = MarkerExpression(expression)
    ours = {item.nodeid for item in collector.items if selects(item)}
    assert ours == _selected_by_pytest(project, expression)


def test_tier_selection_combines_markers_and_paths(project: pytest.Pytester) -> None:
    project.mkpydir("unit").joinpath("test_c.py").write_text(
        "import pytest\n\ndef test_u():\n    pass\n\n@pytest.mark.slow\ndef test_v():\n    pass\n"
    )
    collector = _Items()
    project.inline_run("--collect-only", "-p", "no:tiergate", plugins=[collector])
    select = TierSelection("not slow", ["unit"], project.path)
    assert [i.nodeid for i in collector.items if select(i)] == ["unit/test_c.py::test_u"]
    everything = TierSelection("", [], project.path)
    assert all(everything(i) for i in collector.items)


def test_tier_markers_combine_with_the_users_m(project: pytest.Pytester) -> None:
    project.makepyprojecttoml('[tool.tiergate.tiers.fast]\nmarkers = "not slow"\n')
    result = project.runpytest_subprocess("--tier", "fast", "-m", "not db", "-q")
    result.assert_outcomes(passed=4)  # test_b: test_plain and the three params, none slow
    result = project.runpytest_subprocess("--tier", "fast", "-m", "e2e", "-q")
    result.assert_outcomes(passed=1)
