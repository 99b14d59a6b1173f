"""tiergate's network guard: a PEP 578 audit hook that refuses connections the tier does not allow.

Runs in the test process (``tiergate.netguard.install_guard``) and, through ``sitecustomize``, in
every Python child of a run (``install_from_env``, switched on by ``TIERGATE_NETWORK``). The hook
sees ``socket.connect`` (also ``connect_ex``), ``socket.sendto``/``sendmsg`` and
``socket.getaddrinfo`` *before* the system call, so a refused connection sends no packet and
fails in microseconds with ``NetworkBlocked`` (a ``ConnectionRefusedError``, which client
libraries already treat as "the server is not there") naming host, port and the tier's policy.
Unix sockets are always allowed.

Each refusal is also recorded: in-process through the reporter the plugin passes, in a child as
one ``finding`` event appended (one ``os.write``, O_APPEND) to ``$TIERGATE_EVENTS``, attributed to
``$TIERGATE_CURRENT_TEST`` (or pytest's ``PYTEST_CURRENT_TEST``) inherited from the test.

Policies (``TIERGATE_NETWORK``): ``any``, ``loopback``, ``none``, or a JSON list of entries, each a
host name, an IP, ``host:port``, ``[v6]:port`` or a CIDR. Stdlib only, and cheap: this file is
imported at start-up of every child when the variable is set.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

ENV_NETWORK = "TIERGATE_NETWORK"
ENV_TIER = "TIERGATE_TIER"
ENV_EVENTS = "TIERGATE_EVENTS"
ENV_TEST = "TIERGATE_CURRENT_TEST"

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_EVENTS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo"})
_INET_FAMILIES = (2, 10)  # AF_INET, AF_INET6 on Linux (no socket import needed to compare)

# Sockets whose connect was refused, kept alive so that the leak probes count them as part of
# the network-blocked finding and their collection does not warn in a later test. Bounded.
BLOCKED_SOCKETS: list[Any] = []
_MAX_KEPT = 64


class NetworkBlocked(ConnectionRefusedError):
    """A connection or lookup the tier's network policy does not allow; nothing was sent."""


class Policy:
    """What may be reached. ``mode`` is any, loopback, none or list."""

    def __init__(self, mode: str, entries: tuple[str, ...] = ()) -> None:
        import ipaddress

        self.mode = mode
        self.entries = entries
        self.names: dict[str, int | None] = {}  # host name -> port (None: any port)
        self.networks: list[tuple[Any, int | None]] = []  # (ip_network, port or None)
        for entry in entries:
            host, port = _split_host_port(entry.strip())
            try:
                self.networks.append((ipaddress.ip_network(host, strict=False), port))
            except ValueError:
                self.names[host.lower().rstrip(".")] = port

    @classmethod
    def parse(cls, spec: str | tuple[str, ...] | list[str]) -> Policy:
        if isinstance(spec, str):
            text = spec.strip()
            if text in ("any", "loopback", "none"):
                return cls(text)
            if text.startswith("["):
                spec = json.loads(text)
            else:
                spec = [part for part in text.split(",") if part.strip()]
        entries = tuple(str(entry) for entry in spec)
        if not entries or any(not e.strip() for e in entries):
            raise ValueError(f"bad network policy {spec!r}")
        return cls("list", entries)

    def encode(self) -> str:
        return self.mode if self.mode != "list" else json.dumps(list(self.entries))

    def describe(self) -> str:
        return self.mode if self.mode != "list" else "[" + ", ".join(self.entries) + "]"

    def allows_ip(self, host: str, port: int | None) -> bool:
        if self.mode == "any":
            return True
        if self.mode == "none":
            return False
        address = _ip(host)
        if address is None:
            return self.allows_name(host, port)
        if self.mode == "loopback":
            return bool(address.is_loopback)
        for network, allowed_port in self.networks:
            if address in network and (allowed_port is None or allowed_port == port):
                return True
        return False

    def allows_name(self, host: str, port: int | None) -> bool:
        name = host.lower().rstrip(".")
        if self.mode == "any":
            return True
        if self.mode in ("loopback", "none"):
            return name in _LOOPBACK_NAMES
        if name in self.names:
            allowed_port = self.names[name]
            return allowed_port is None or port is None or allowed_port == port
        return False

    def learn(self, host: str, port: int | None) -> None:
        """An allowed name was looked up: its addresses become allowed, with the name's port."""
        import ipaddress
        import socket

        allowed_port = self.names.get(host.lower().rstrip("."), port)
        try:
            infos = _resolving(lambda: socket.getaddrinfo(host, None))
        except OSError:
            return
        for info in infos:
            try:
                network = ipaddress.ip_network(str(info[4][0]).split("%")[0])
            except ValueError:
                continue
            if (network, allowed_port) not in self.networks:
                self.networks.append((network, allowed_port))


def _split_host_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [v6]:port or [v6]
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


def _ip(host: str) -> Any:
    import ipaddress

    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def _port(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


# -- the hook -----------------------------------------------------------------------------------

_policy: Policy | None = None
_tier = ""
_reporter: Any = None  # callable(finding dict) in the test process; None in children
_installed = False
_busy = threading.local()


def install(policy: Policy | None, tier: str = "", reporter: Any = None) -> None:
    """Guard this process with *policy* (None or ``any``: stop guarding; the hook stays, inert)."""
    global _policy, _tier, _reporter, _installed
    _policy = None if policy is None or policy.mode == "any" else policy
    _tier, _reporter = tier, reporter
    if _policy is not None and not _installed:
        sys.addaudithook(_hook)
        _installed = True


def install_from_env() -> None:
    spec = os.environ.get(ENV_NETWORK)
    if not spec:
        return
    try:
        policy = Policy.parse(spec)
    except ValueError:
        return  # a bad value must not break the child; the test process already validated it
    install(policy, os.environ.get(ENV_TIER, ""), reporter=_reporter)


def _resolving(call: Any) -> Any:
    _busy.on = True
    try:
        return call()
    finally:
        _busy.on = False


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event not in _EVENTS or _policy is None or getattr(_busy, "on", False):
        return
    if event == "socket.getaddrinfo":
        host, port = args[0], _port(args[1])
        if isinstance(host, bytes):
            host = host.decode("idna", "replace")
        if not host or _ip(host) is not None:
            return  # numeric: no packet is sent; the connect that follows is checked
        if _policy.allows_name(host, port):
            if _policy.mode == "list":
                _policy.learn(host, port)
            return
        _refuse("lookup", host, port, None)
    sock, address = args[0], args[1]
    if getattr(sock, "family", None) not in _INET_FAMILIES:
        return
    if event == "socket.sendmsg" and address is None:
        return  # connected socket: its connect was checked
    if not isinstance(address, tuple) or len(address) < 2:
        return
    host, port = address[0], _port(address[1])
    if isinstance(host, bytes):
        host = host.decode("idna", "replace")
    if _policy.allows_ip(str(host), port):
        return
    _refuse(event.split(".", 1)[1], str(host), port, sock)


def _refuse(operation: str, host: str, port: int | None, sock: Any) -> None:
    target = f"{host}:{port}" if port is not None else host
    verb = "lookup of" if operation == "lookup" else f"{operation} to"
    message = (f"tiergate: network blocked: {verb} {target} is not allowed by tier "
               f"{_tier or '?'!r} (network = {_policy.describe() if _policy else '?'})")
    if sock is not None and len(BLOCKED_SOCKETS) < _MAX_KEPT:
        BLOCKED_SOCKETS.append(sock)
    _busy.on = True
    try:
        _record(message, operation, host, port)
    except Exception:
        pass  # recording must never hide the refusal itself
    finally:
        _busy.on = False
    raise NetworkBlocked(message)


def _culprit() -> dict[str, Any] | None:
    """The innermost frame outside the standard library (the caller that wanted the network)."""
    import sysconfig

    stdlib = sysconfig.get_paths()["stdlib"]
    here = os.path.abspath(__file__)
    frame: Any = sys._getframe(3)
    first = None
    while frame is not None:
        path = frame.f_code.co_filename
        if path != here and path != __file__:
            entry = {"path": path, "line": frame.f_lineno, "function": frame.f_code.co_name}
            first = first or entry
            if not path.startswith(stdlib) and not path.startswith("<"):
                return entry
        frame = frame.f_back
    return first


def _current_test() -> str | None:
    test = os.environ.get(ENV_TEST) or os.environ.get("PYTEST_CURRENT_TEST")
    if not test:
        return None
    for phase in (" (setup)", " (call)", " (teardown)"):
        if test.endswith(phase):
            return test[: -len(phase)]
    return test


def _record(message: str, operation: str, host: str, port: int | None) -> None:
    culprit = _culprit()
    finding = {
        "kind": "network-blocked",
        "test": _current_test(),
        "severity": "error",
        "message": message,
        "location": {"path": culprit["path"], "line": culprit["line"]} if culprit else None,
        "culprit": culprit,
        "details": {"operation": operation, "host": host, "port": port,
                    "policy": _policy.describe() if _policy else None, "tier": _tier,
                    "pid": os.getpid()},
    }
    if _reporter is not None:
        _reporter(finding)
        return
    events = os.environ.get(ENV_EVENTS)
    if not events:
        return
    line = json.dumps({"event": "finding", "t": time.time(), "pid": os.getpid(),
                       "finding": finding}, separators=(",", ":"), default=str) + "\n"
    fd = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, line.encode("utf-8", "replace"))
    finally:
        os.close(fd)
