"""One test's own network policy: ``@pytest.mark.network("any" | "loopback" | "none" | [hosts])``.

The marked test runs, setup to teardown, under its policy instead of the tier's: in this process
(the guard's policy is switched at the test's start and the tier's put back at its end), and in
every Python child it starts meanwhile (they read ``TIERGATE_NETWORK`` at start-up). Not covered:
a child started before the test (a session fixture's server) keeps the policy it started with,
and so does a non-Python child (the guard lives in Python processes only).

Unmarked tests pay nothing: the per-test switch is registered only when collection found a
marked test, and then costs one dict lookup for an unmarked one. Each marked test that runs gets
a ``network-policy`` event, which the summary lists ("run with a policy other than the tier's").
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import pytest

from tiergate.plugin.markers import ClosestMarker
from tiergate.plugin.netguard import encode_policy, override
from tiergate.protocol import events as ev
from tiergate.protocol.findings import Finding
from tiergate.settings.config import Tier

MARKER = "network"
MARKER_HELP = (
    'network(policy): run this test under its own network policy, "any", "loopback", "none" or a'
    " list of hosts, instead of the tier's (tiergate)"
)
USAGE = (f'@pytest.mark.{MARKER} takes one policy: "any", "loopback", "none" or a list of hosts,'
         f' e.g. @pytest.mark.{MARKER}(["127.0.0.1:5432"])')


class NetworkMarkers:
    """Reads the marks at collection; registers the switch when any test has one."""

    def __init__(self, config: pytest.Config, tier: Tier,
                 emit: Callable[[Finding], None], record: Callable[..., None]) -> None:
        config.addinivalue_line("markers", f"{MARKER}: {MARKER_HELP}")
        self.config = config
        self.tier_name = tier.name
        self.tier_policy = encode_policy(tier.network)
        self.emit = emit
        self.record = record
        self.policies: dict[str, Any] = {}  # nodeid -> the policy of its mark

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        closest = ClosestMarker(MARKER)
        for item in items:
            mark = closest(item)
            if mark is not None:
                self.policies[item.nodeid] = policy_of(item.nodeid, mark)
        if self.policies and not self.config.pluginmanager.has_plugin("tiergate-network-switch"):
            self.config.pluginmanager.register(_Switch(self), "tiergate-network-switch")


def policy_of(nodeid: str, mark: pytest.Mark) -> Any:
    """The mark's policy, checked as the guard reads it; a bad one is a usage error."""
    network = mark.args[0] if len(mark.args) == 1 and not mark.kwargs else None
    if isinstance(network, tuple):
        network = list(network)
    if isinstance(network, str) and network not in ("any", "loopback", "none"):
        network = None  # "loopbak" must not become an allow-list of one host of that name
    if not isinstance(network, (str, list)) or (isinstance(network, list) and not all(
            isinstance(entry, str) for entry in network)):
        raise pytest.UsageError(f"{nodeid}: {USAGE}")
    try:
        encode_policy(network)
    except ValueError:
        raise pytest.UsageError(f"{nodeid}: {USAGE}; got {network!r}") from None
    return network


class _Switch:
    """Around each marked test: its policy in, the tier's back after its teardown."""

    def __init__(self, marks: NetworkMarkers) -> None:
        self.marks = marks

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, Any, Any]:
        network = self.marks.policies.get(item.nodeid)
        if network is None:
            return (yield)
        policy = encode_policy(network)
        self.marks.record(ev.NETWORK_POLICY, nodeid=item.nodeid, policy=policy,
                          tier_policy=self.marks.tier_policy)
        put_back = override(network, tier_name=self.marks.tier_name, emit=self.marks.emit)
        try:
            return (yield)
        finally:
            put_back()
