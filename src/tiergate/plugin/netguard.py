"""The network guard, from the test process's side: parse the tier's policy, guard this process,
and give child processes the environment that guards them too.

The guard itself lives in ``tiergate/child/site/_tiergate_netguard.py`` (stdlib only, because
``sitecustomize`` imports it in every child). This module loads that same file under the same
module name, so a test process that the start-up hook already guarded and the plugin's
``install_guard`` share one guard and one policy. The test process guards by patching the socket
layer, not by an audit hook (see the guard's docstring: a hook costs a call on every audited
event); one the start-up hook guarded keeps its hook.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from tiergate.protocol import environ
from tiergate.protocol.findings import Finding

CORE_NAME = "_tiergate_netguard"
CORE_PATH = Path(__file__).resolve().parents[1] / "child" / "site" / f"{CORE_NAME}.py"


def core() -> ModuleType:
    """The guard module (``_tiergate_netguard``), imported once per process."""
    module = sys.modules.get(CORE_NAME)
    if module is None:
        spec = importlib.util.spec_from_file_location(CORE_NAME, CORE_PATH)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[CORE_NAME] = module
        spec.loader.exec_module(module)
    return module


# What a refusal raises: what a machine with no network raises. A connect or send: NetworkBlocked,
# an OSError with errno ENETUNREACH. A lookup: LookupBlocked, a socket.gaierror (EAI_NONAME), also
# a NetworkBlocked. gethostbyaddr of an address: ReverseLookupBlocked, a socket.herror.
NetworkBlocked: type[OSError] = core().NetworkBlocked
LookupBlocked: type[OSError] = core().LookupBlocked
ReverseLookupBlocked: type[OSError] = core().ReverseLookupBlocked


def encode_policy(network: str | tuple[str, ...] | list[str]) -> str:
    """The policy as ``TIERGATE_NETWORK`` carries it; raises ValueError when it is not valid."""
    return str(core().Policy.parse(network).encode())


def install_guard(
    network: str | tuple[str, ...] | list[str],
    *,
    tier_name: str,
    emit: Callable[[Finding], None] | None = None,
) -> None:
    """Guard this process: a refused connection or lookup raises at once and *emit* gets a
    ``network-blocked`` finding attributed to the test in progress. ``"any"`` removes the guard.

    The allow-list's host names are resolved here, once, and the answers put in the environment
    (``TIERGATE_NETWORK_ADDRESSES``) so that the guarded children do not look them up again."""
    guard = core()
    policy = guard.Policy.parse(network)

    def report(finding: dict[str, Any]) -> None:
        if emit is not None:
            emit(Finding.from_json(finding))

    guard.install(policy, tier_name, reporter=report, patch=True)
    if policy.resolved:
        os.environ[environ.NETWORK_ADDRESSES] = json.dumps(policy.resolved, sort_keys=True)
    else:
        os.environ.pop(environ.NETWORK_ADDRESSES, None)


def guard_env(network: str | tuple[str, ...] | list[str], tier_name: str) -> dict[str, str]:
    """Variables that make ``sitecustomize`` guard every Python child with the same policy.
    The plugin adds ``TIERGATE_EVENTS`` (the events file) so children can record refusals."""
    return {environ.NETWORK: encode_policy(network), environ.TIER: tier_name}


def refused_fds() -> set[int]:
    """Descriptors of the sockets whose connect the guard refused (it keeps a bounded number
    alive): they belong to the network-blocked finding, not to a leak."""
    fds: set[int] = set()
    for sock in core().BLOCKED_SOCKETS:
        try:
            fds.add(sock.fileno())
        except (OSError, ValueError):
            continue
    fds.discard(-1)  # closed since
    return fds


_CHILD_VARIABLES = (environ.NETWORK, environ.NETWORK_ADDRESSES, environ.NETWORK_FROM, environ.TIER)


def override(
    network: str | tuple[str, ...] | list[str],
    *,
    tier_name: str,
    emit: Callable[[Finding], None] | None = None,
) -> Callable[[], None]:
    """Guard this process, and the Python children it starts from now on, with one test's policy
    (``@pytest.mark.network``) instead of the tier's; returns what puts the tier's back.

    Children already running keep the policy they started with: the guard reads the environment
    once, at a child's start-up."""
    guard = core()
    before = guard.current()
    saved = {name: os.environ.get(name) for name in _CHILD_VARIABLES}
    policy = guard.Policy.parse(network)

    def report(finding: dict[str, Any]) -> None:
        if emit is not None:
            emit(Finding.from_json(finding))

    guard.install(policy, tier_name, reporter=report, source="marker", patch=True)
    if policy.mode == "any":
        for name in _CHILD_VARIABLES:
            os.environ.pop(name, None)
    else:
        os.environ.update({environ.NETWORK: policy.encode(), environ.TIER: tier_name,
                           environ.NETWORK_FROM: "marker",
                           environ.NETWORK_ADDRESSES: json.dumps(policy.resolved, sort_keys=True)})

    def put_back() -> None:
        guard.put_back(before)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    return put_back
