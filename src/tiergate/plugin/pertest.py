"""The per-test pipeline: the one protocol wrapper and the one report hook through which every
part of the plugin that acts around each test sees it (the tier run's timer and events, the leak
watch's window, the reproductions' check).

Each part registers a ``TestStep``; steps begin in the order they were added and end in the
reverse order, so a step added first wraps the others (the leak watch's window opens before the
timer starts and closes after the test's event is out). One wrapper and one report hook per test,
whatever the number of steps: pluggy's cost per hook implementation is what a trivial test pays
most for, so the parts do not register protocol hooks of their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # a Protocol class costs its creation at import: pytest imports this always
    from typing import Protocol

    class TestStep(Protocol):
        """A part that acts around each test. ``begin`` returns what its ``end`` needs back."""

        def begin(self, item: pytest.Item) -> Any: ...

        def end(self, item: pytest.Item, nextitem: pytest.Item | None, state: Any,
                reports: list[pytest.TestReport]) -> None: ...


class PerTest:
    """The pytest plugin that runs the registered steps around each test's protocol."""

    def __init__(self) -> None:
        self._steps: tuple[TestStep, ...] = ()  # in the order they begin
        # The reports (setup, call, teardown) of the test in progress; None between tests, so
        # the reports an xdist controller is told of are not kept.
        self.reports: list[pytest.TestReport] | None = None
        # Fields a step adds to the coming test-finish record (``note``); empty for nearly
        # every test, which then takes the one-line record.
        self.extra: dict[str, Any] = {}

    def add(self, step: TestStep, *, first: bool = False) -> None:
        """Register *step*; *first*: it wraps every step added so far."""
        self._steps = (step, *self._steps) if first else (*self._steps, step)

    def note(self, field: str, value: Any) -> None:
        """Add *field* to the test-finish record of the test in progress."""
        self.extra[field] = value

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Any:
        reports: list[pytest.TestReport] = []
        self.reports = reports
        if self.extra:
            self.extra = {}
        steps = self._steps
        states = [step.begin(item) for step in steps]
        try:
            return (yield)
        finally:
            self.reports = None
            for index in range(len(steps) - 1, -1, -1):
                steps[index].end(item, nextitem, states[index], reports)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        reports = self.reports
        if reports is not None:
            reports.append(report)
