"""tiergate's network guard: refuses network use the tier does not allow.

Runs in the test process (``tiergate.plugin.netguard.install_guard``) and, through
``sitecustomize``, in every Python child of a run (``install_from_env``, switched on by
``TIERGATE_NETWORK``). It sees ``socket.connect`` (also ``connect_ex``), ``socket.sendto``/
``sendmsg`` and every resolver entry point (``getaddrinfo``, ``gethostbyname``/``_ex``,
``gethostbyaddr``, ``getnameinfo``) *before* the system call, so a refused call sends no packet
and no DNS query.

Two ways in, one decision (``_decide``). A child gets a PEP 578 audit hook, in place from its
start-up, which also sees code that calls ``_socket`` directly. The test process patches the
socket layer instead (``socket.socket``'s four methods, the resolver functions of ``_socket``
and ``socket``): a Python audit hook is a call on every audited event, whatever it watches, and
pytest raises about twenty per test (``id()``, ``PYTEST_CURRENT_TEST``), which cost more than
the rest of the per-test work of a tier. The patches are installed when the plugin configures,
before any test module is imported; what a conftest bound earlier with ``from socket import
gethostbyname`` is not seen (``getaddrinfo`` and every socket method are, however they were
imported). It fails in microseconds the way it fails
on a machine with no network: a refused connect or send raises ``NetworkBlocked`` (an ``OSError``
with errno ``ENETUNREACH``), a refused lookup raises ``LookupBlocked`` (a ``socket.gaierror``,
``EAI_NONAME``), a refused reverse lookup of an address raises ``ReverseLookupBlocked`` (a
``socket.herror``); each message names host, port, the tier's policy and how to allow it. Unix
sockets are always allowed, and so is whatever this machine answers itself: lookups of names in
``/etc/hosts`` (and of the host name when the system resolves it locally), and connections to
``0.0.0.0``/``::``, which mean this machine.

Each refusal is also recorded: in-process through the reporter the plugin passes, in a child as
one ``finding`` event appended (one ``os.write``, O_APPEND) to ``$TIERGATE_EVENTS``, attributed to
the test named by pytest's ``PYTEST_CURRENT_TEST``, inherited from the test. Not
recorded, only refused: destinations no network reaches by definition (``never_reachable``: the
``.invalid`` names, 240.0.0.0/4, 0.0.0.0/8, 100::/64), which fail on every machine.

Policies (``TIERGATE_NETWORK``): ``any``, ``loopback``, ``none``, or a JSON list of entries, each a
host name, an IP, ``host:port``, ``[v6]:port`` or a CIDR. The names of a list are resolved once, at
start-up, with the resolver captured when this module is imported (``_socket.getaddrinfo``); the
test process hands its answers to its children in ``TIERGATE_NETWORK_ADDRESSES``. The guard itself
calls nothing a test can replace. Stdlib only, and cheap: this file is imported at start-up of
every child when the variable is set.
"""

from __future__ import annotations

import _operator
import _socket
import _thread  # not threading, nor typing: 10 ms of start-up in every child, for one local
import errno
import json
import os
import sys
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy reads it the same)
if TYPE_CHECKING:
    from typing import Any

# Copies of tiergate.protocol.environ's names (this file cannot import tiergate);
# tests/test_protocol_names.py checks that they are equal.
ENV_NETWORK = "TIERGATE_NETWORK"
ENV_TIER = "TIERGATE_TIER"
ENV_EVENTS = "TIERGATE_EVENTS"
ENV_ADDRESSES = "TIERGATE_NETWORK_ADDRESSES"  # JSON {name: [address, ...]} resolved at start-up
ENV_NETWORK_FROM = "TIERGATE_NETWORK_FROM"  # "marker": the policy is a test's @pytest.mark.network

HOSTS_FILE = "/etc/hosts"
NSSWITCH_FILE = "/etc/nsswitch.conf"

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_CONNECTS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg"})
_LOOKUPS = frozenset({"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
                      "socket.getnameinfo"})
_EVENTS = _CONNECTS | _LOOKUPS
_INET_FAMILIES = (_socket.AF_INET, _socket.AF_INET6)
_HOST_NOT_FOUND = 1  # h_errno from <netdb.h>: what gethostbyaddr raises for an unknown address

# Captured at import, before any test runs: the hook never calls what a test can monkeypatch
# (socket.getaddrinfo, socket.socket.family, time.time, os.open, ...).
_getaddrinfo = _socket.getaddrinfo
_inet_pton = _socket.inet_pton
_inet_ntop = _socket.inet_ntop
_family_of = _socket.socket.__dict__["family"].__get__
_getpid = os.getpid
_os_open, _os_write, _os_close = os.open, os.write, os.close
_environ = os.environ
_now = time.time
_dumps = json.dumps
_getframe = sys._getframe
_STDLIB = os.path.dirname(os.__file__)
_HERE = os.path.abspath(__file__)
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC

# Sockets whose connect was refused, kept alive so that the leak probes count them as part of
# the network-blocked finding and their collection does not warn in a later test. Bounded.
BLOCKED_SOCKETS: list[Any] = []
_MAX_KEPT = 64


class NetworkBlocked(OSError):
    """Network use the tier's network policy does not allow; nothing was sent. A refused connect,
    sendto or sendmsg raises it with errno ``ENETUNREACH``, as a machine with no network does."""


class LookupBlocked(_socket.gaierror, NetworkBlocked):
    """A refused name lookup (or ``getnameinfo``): ``socket.gaierror`` with ``EAI_NONAME``."""


class ReverseLookupBlocked(_socket.herror, NetworkBlocked):
    """A refused ``gethostbyaddr`` of an address: ``socket.herror`` (host not found)."""


# An address is (4 or 6, its integer value); an IPv4-mapped IPv6 address counts as IPv4.
Address = tuple[int, int]
# A network is (version, integer value, prefix length).
Network = tuple[int, int, int]
_BITS = {4: 32, 6: 128}


def _ip(host: str, *, map_v4: bool = True) -> Address | None:
    """The address *host* spells (numeric: looking it up sends nothing), or None for a name."""
    text = host.split("%", 1)[0]  # an IPv6 scope
    if text == "<broadcast>":
        return (4, 0xFFFFFFFF)
    try:
        return (4, int.from_bytes(_inet_pton(_socket.AF_INET, text), "big"))
    except (OSError, ValueError, TypeError):
        pass
    try:
        value = int.from_bytes(_inet_pton(_socket.AF_INET6, text), "big")
    except (OSError, ValueError, TypeError):
        return None
    if map_v4 and value >> 32 == 0xFFFF:
        return (4, value & 0xFFFFFFFF)
    return (6, value)


def _network(text: str) -> Network | None:
    """A CIDR or a single address as a network (host bits dropped), or None when it is neither."""
    address_text, slash, prefix_text = text.partition("/")
    address = _ip(address_text, map_v4=False)
    if address is None:
        return None
    version, value = address
    bits = _BITS[version]
    if not slash:
        prefix = bits
    elif prefix_text.isascii() and prefix_text.isdigit() and int(prefix_text) <= bits:
        prefix = int(prefix_text)
    else:
        return None
    if version == 6 and value >> 32 == 0xFFFF and prefix >= 96:  # an IPv4-mapped network
        version, value, prefix, bits = 4, value & 0xFFFFFFFF, prefix - 96, 32
    return (version, value >> (bits - prefix) << (bits - prefix), prefix)


def _in(address: Address, network: Network) -> bool:
    version, value = address
    if version != network[0]:
        return False
    shift = _BITS[version] - network[2]
    return value >> shift == network[1] >> shift


def _is_loopback(address: Address) -> bool:
    version, value = address
    return value >> 24 == 127 if version == 4 else value == 1


def _this_machine(address: Address) -> Address:
    """``0.0.0.0`` and ``::`` (and the empty host) mean this machine: its loopback address."""
    version, value = address
    if value == 0:
        return (4, 0x7F000001) if version == 4 else (6, 1)
    return address


def _address_text(address: Address) -> str:
    version, value = address
    if version == 4:
        return _inet_ntop(_socket.AF_INET, value.to_bytes(4, "big"))
    return _inet_ntop(_socket.AF_INET6, value.to_bytes(16, "big"))


def _text(value: Any) -> str | None:
    """A host as text: str as it is, bytes as ASCII (Latin-1 when not ASCII; never fails)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    return None


def _name(host: str) -> str:
    return host.lower().rstrip(".")


class LocalNames:
    """What this machine answers itself, without sending anything: the names in ``/etc/hosts``
    (and ``localhost``), and its own host name when the system resolves it locally."""

    def __init__(self, hosts_text: str = "", hostname: str = "", nsswitch_text: str = "") -> None:
        loopback = frozenset({(4, 0x7F000001), (6, 1)})
        self.addresses: dict[str, frozenset[Address]] = dict.fromkeys(_LOOPBACK_NAMES, loopback)
        self.reverse: set[Address] = set()  # addresses /etc/hosts names (reverse lookups)
        for line in hosts_text.splitlines():
            fields = line.split("#", 1)[0].split()
            address = _ip(fields[0]) if len(fields) >= 2 else None
            if address is None:
                continue
            self.reverse.add(address)
            for host in fields[1:]:
                name = _name(host)
                known = self.addresses.get(name, frozenset())
                self.addresses[name] = known | {address}
        self.hostname = _name(hostname)
        # The host name is answered locally when /etc/hosts has it, or when nsswitch asks a local
        # service (myhostname, systemd-resolved) before anything that would ask the network.
        self.hostname_local = bool(self.hostname) and (
            self.hostname in self.addresses or _hostname_answered_locally(nsswitch_text))

    @classmethod
    def read(cls, hosts: str = HOSTS_FILE, nsswitch: str = NSSWITCH_FILE) -> LocalNames:
        def text(path: str) -> str:
            try:
                with open(path, encoding="latin-1") as handle:
                    return handle.read(1 << 20)
            except (OSError, ValueError):
                return ""

        try:
            hostname = _socket.gethostname()
        except OSError:
            hostname = ""
        return cls(text(hosts), hostname, text(nsswitch))

    def answers(self, name: str) -> bool:
        """Does looking *name* up stay on this machine?"""
        return name in self.addresses or (self.hostname_local and name == self.hostname)


def _hostname_answered_locally(nsswitch_text: str) -> bool:
    for line in nsswitch_text.splitlines():
        fields = line.split("#", 1)[0].split()
        if not fields or fields[0] != "hosts:":
            continue
        for source in fields[1:]:
            if source.startswith("[") or source == "files":
                continue  # an action ([NOTFOUND=return]); files is /etc/hosts, read already
            return source in ("myhostname", "resolve")
    return False


class Policy:
    """What may be reached. ``mode`` is any, loopback, none or list."""

    def __init__(self, mode: str, entries: tuple[str, ...] = ()) -> None:
        self.mode = mode
        self.entries = entries
        self.names: dict[str, int | None] = {}  # host name -> port (None: any port)
        self.networks: list[tuple[Network, int | None]] = []  # (network, port or None)
        self.resolved: dict[str, list[str]] = {}  # listed name -> its addresses, at start-up
        self.local = LocalNames()  # what this machine answers; read by install()
        for entry in entries:
            host, port = _split_host_port(entry.strip())
            network = _network(host)
            if network is not None:
                self.networks.append((network, port))
            else:
                self.names[_name(host)] = port

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

    # -- decisions (none of them raises for any str host) ---------------------------------------

    def allows_ip(self, host: str, port: int | None, family: int | None = None) -> bool:
        """May this process connect (or send) to *host* (an address or a name) on *port*, from a
        socket of *family* (a name resolves to that family's addresses only)?"""
        if self.mode == "any":
            return True
        address = (4, 0) if host == "" else _ip(host)  # "" is INADDR_ANY to connect()
        if address is None:
            return self.allows_name(host, port, family)
        return self.allows_address(address, port)

    def allows_address(self, address: Address, port: int | None) -> bool:
        if self.mode in ("any", "none"):
            return self.mode == "any"
        address = _this_machine(address)
        if self.mode == "loopback":
            return _is_loopback(address)
        return any(_in(address, network) and (allowed is None or allowed == port)
                   for network, allowed in self.networks)

    def allows_name(self, host: str, port: int | None, family: int | None = None) -> bool:
        """May this process connect to the name *host* (``connect(("db", 5432))``)? A name that
        is not listed may when every address this machine gives it (in *family*) may."""
        if self.mode in ("any", "none"):
            return self.mode == "any"
        name = _name(host)
        if name in self.names:
            allowed_port = self.names[name]
            return allowed_port is None or port is None or allowed_port == port
        version = {_socket.AF_INET: 4, _socket.AF_INET6: 6}.get(family or 0)
        addresses = [a for a in self.local.addresses.get(name, ()) if version in (None, a[0])]
        return bool(addresses) and all(self.allows_address(a, port) for a in addresses)

    def allows_lookup(self, host: str, port: int | None) -> bool:
        """May this process look the name *host* up? Names this machine answers always may."""
        if self.mode == "any":
            return True
        name = _name(host)
        if self.local.answers(name):
            return True
        if self.mode == "list" and name in self.names:
            allowed_port = self.names[name]
            return allowed_port is None or port is None or allowed_port == port
        return False

    def allows_reverse(self, address: Address) -> bool:
        """May this process look up the name of *address* (a PTR query unless /etc/hosts has it)?"""
        if self.mode == "any" or address in self.local.reverse:
            return True
        return self.mode == "list" and any(_in(address, net) for net, _ in self.networks)

    # -- the listed names, resolved once -----------------------------------------------------

    def use_addresses(self, resolved: dict[str, list[str]]) -> None:
        """Take the addresses another process resolved for the listed names (ENV_ADDRESSES)."""
        for name, addresses in resolved.items():
            if name in self.names and name not in self.resolved and isinstance(addresses, list):
                self._allow(name, [str(a) for a in addresses])

    def resolve(self) -> None:
        """Resolve each listed name not resolved yet, with the real resolver: its addresses are
        allowed with the name's port. A name that does not resolve allows no address."""
        for name in self.names:
            if name in self.resolved:
                continue
            local = self.local.addresses.get(name)
            if local:
                self._allow(name, sorted(_address_text(a) for a in local))
                continue
            try:
                infos = _getaddrinfo(name, None)
            except (OSError, UnicodeError, ValueError):
                infos = []
            found = []
            for info in infos:
                text = str(info[4][0])
                if text not in found:
                    found.append(text)
            self._allow(name, found)

    def _allow(self, name: str, addresses: list[str]) -> None:
        self.resolved[name] = addresses
        for text in addresses:
            address = _ip(text)
            if address is None:
                continue
            network = (address[0], address[1], _BITS[address[0]])
            if (network, self.names[name]) not in self.networks:
                self.networks.append((network, self.names[name]))


def _split_host_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [v6]:port or [v6]
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


# Destinations no network ever reaches, by definition: refusing them is what every machine does,
# online or not, so a test that uses one (a timeout test's black hole, a lookup meant to fail)
# never wanted the network, and its refusal is no finding. The refusal itself is unchanged.
_NEVER_REACHABLE: tuple[Network, ...] = (
    (4, 0xF0000000, 4),  # 240.0.0.0/4, reserved (RFC 1112); 255.255.255.255 is taken out below
    (4, 0, 8),  # "this network" (RFC 1122 3.2.1.3), never a destination; 0.0.0.0 is this machine
    (6, 0x0100 << 112, 64),  # 100::/64, the IPv6 discard prefix (RFC 6666)
)
_BROADCAST = (4, 0xFFFFFFFF)  # in 240.0.0.0/4, but it does send: to everything on the link
# Of the special-use names, only .invalid is defined never to resolve (RFC 6761 6.4: resolvers
# answer NXDOMAIN, and libraries should not even ask). .test and .example do not qualify: a
# private resolver may answer them (RFC 6761 6.2, 6.5; dnsmasq setups for *.test), so such a
# lookup leaves the machine and may well reach something.
_NEVER_RESOLVES = "invalid"


def never_reachable(operation: str, host: str) -> bool:
    """Is *host* unreachable by definition for *operation* (a refused connect, send or forward
    lookup)? A reverse lookup is a PTR query to the resolver like any other: never."""
    if operation == "reverse lookup":
        return False
    address = _ip(host)
    if address is None:
        name = _name(host)
        return name == _NEVER_RESOLVES or name.endswith("." + _NEVER_RESOLVES)
    if address == _BROADCAST or address == (4, 0):
        return False
    return any(_in(address, network) for network in _NEVER_REACHABLE)


def _port(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("ascii", "replace")
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


# -- the hook -----------------------------------------------------------------------------------

_policy: Policy | None = None
_tier = ""
_reporter: Any = None  # callable(finding dict) in the test process; None in children
_installed = False
_patched: Any = None  # socket.socket, once its methods are patched (the test process)
_guarded: tuple[Any, ...] = ()  # its methods as the last repatch left them (its first: none)
_source = "tier"  # "marker" while a test's @pytest.mark.network policy replaces the tier's
_local: LocalNames | None = None  # read once per process, at the first install
_busy = _thread._local()


def local_names() -> LocalNames:
    """This machine's own names (``/etc/hosts``, the host name), read once per process."""
    global _local
    if _local is None:
        _local = _resolving(LocalNames.read)
    return _local


def install(policy: Policy | None, tier: str = "", reporter: Any = None,
            source: str = "tier", *, patch: bool = False) -> None:
    """Guard this process with *policy* (None or ``any``: stop guarding; the hook or the patches
    stay, inert). Reads this machine's names and resolves the policy's listed names first, so the
    guard never has to. *source* is ``"marker"`` when the policy is one test's, not the tier's.
    The first install that guards decides how: the socket layer patched (*patch*), or an audit
    hook; a process guarded either way keeps that way."""
    global _policy, _tier, _reporter, _installed, _source, _patched
    if policy is not None and policy.mode != "any":
        policy.local = local_names()
        _resolving(policy.resolve)
    _policy = None if policy is None or policy.mode == "any" else policy
    _tier, _reporter, _source = tier, reporter, source
    if _policy is not None and not _installed:
        if patch:
            _patched = _patch_socket_layer()
        else:
            sys.addaudithook(_hook)
        _installed = True


def current() -> tuple[Any, ...]:
    """What guards this process now, for ``put_back`` (a marked test's policy is switched in
    at its start and the tier's put back at its end)."""
    return (_policy, _tier, _reporter, _source)


def put_back(state: tuple[Any, ...]) -> None:
    """Guard this process again as *state* (from ``current``) says; the hook is not touched."""
    global _policy, _tier, _reporter, _source
    _policy, _tier, _reporter, _source = state


def install_from_env() -> None:
    spec = os.environ.get(ENV_NETWORK)
    if not spec:
        return
    try:
        policy = Policy.parse(spec)
    except ValueError:
        return  # a bad value must not break the child; the test process already validated it
    if policy.names:
        try:
            resolved = json.loads(os.environ.get(ENV_ADDRESSES) or "{}")
        except ValueError:
            resolved = {}
        if isinstance(resolved, dict):
            policy.use_addresses(resolved)
    source = "marker" if os.environ.get(ENV_NETWORK_FROM) == "marker" else "tier"
    install(policy, os.environ.get(ENV_TIER, ""), reporter=_reporter, source=source)


def _resolving(call: Any) -> Any:
    _busy.on = True
    try:
        return call()
    finally:
        _busy.on = False


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event not in _EVENTS or _policy is None or getattr(_busy, "on", False):
        return
    __tracebackhide__ = True  # pytest shows the caller's line, not the guard's frames
    _check(event, args)


def _check(event: str, args: tuple[Any, ...]) -> None:
    """Refuse *event* (an audit event's name and arguments) if the policy does not allow it."""
    __tracebackhide__ = True
    policy = _policy
    if policy is None:
        return
    try:
        refused = _decide(policy, event, args)
    except Exception:  # never break on what the guard cannot read: refuse it (nothing was sent)
        refused = ("lookup" if event in _LOOKUPS else event.split(".", 1)[1], "?", None, None)
    if refused is not None:
        _refuse(event, *refused)


# -- the patches (the test process) --------------------------------------------------------------

_RESOLVERS = {"getaddrinfo": "socket.getaddrinfo", "gethostbyname": "socket.gethostbyname",
              "gethostbyname_ex": "socket.gethostbyname", "gethostbyaddr": "socket.gethostbyaddr",
              "getnameinfo": "socket.getnameinfo"}


def _patch_socket_layer() -> Any:
    """Check what the audit hook would, from wrappers: ``socket.socket``'s connect, connect_ex,
    sendto and sendmsg (every socket of the socket module and its subclasses, ssl's too, whatever
    made it), and the resolver functions where they are looked up when called: ``_socket``'s
    (``socket.getaddrinfo`` calls ``_socket.getaddrinfo``) and the socket module's copies.
    Returns the class patched."""
    import socket

    cls = socket.socket
    for name in _METHODS:
        setattr(cls, name, _guarded_method(name, getattr(cls, name)))
    _hand_over_to_pytest_socket(cls)
    for name, event in _RESOLVERS.items():
        original = getattr(_socket, name)
        wrapper = _guarded_resolver(original, event)
        setattr(_socket, name, wrapper)
        if getattr(socket, name, None) is original:  # socket.getaddrinfo is its own function
            setattr(socket, name, wrapper)
    return cls


_METHODS = ("connect", "connect_ex", "sendto", "sendmsg")
_methods_now = _operator.attrgetter(*_METHODS)  # one call in C: repatch runs at every test


def _guarded_method(name: str, method: Any) -> Any:
    """*method* of ``socket.socket`` (``connect``, ...) behind the guard's check."""

    def connect(self: Any, address: Any) -> Any:
        __tracebackhide__ = True
        if _policy is not None and not getattr(_busy, "on", False):
            _check("socket.connect", (self, address))
        return method(self, address)

    def connect_ex(self: Any, address: Any) -> Any:
        __tracebackhide__ = True
        if _policy is not None and not getattr(_busy, "on", False):
            try:
                _check("socket.connect", (self, address))
            except NetworkBlocked as refused:  # recorded; returned as an offline machine does
                return refused.errno
        return method(self, address)

    def sendto(self: Any, data: Any, *rest: Any) -> Any:
        __tracebackhide__ = True  # sendto(data, address) or sendto(data, flags, address)
        if _policy is not None and rest and not getattr(_busy, "on", False):
            _check("socket.sendto", (self, rest[-1]))
        return method(self, data, *rest)

    def sendmsg(self: Any, *args: Any) -> Any:
        __tracebackhide__ = True  # sendmsg(buffers[, ancdata[, flags[, address]]])
        if _policy is not None and len(args) > 3 and not getattr(_busy, "on", False):
            _check("socket.sendmsg", (self, args[3]))
        return method(self, *args)

    guarded: Any = {"connect": connect, "connect_ex": connect_ex, "sendto": sendto,
                    "sendmsg": sendmsg}[name]
    guarded.__name__ = guarded.__qualname__ = name
    guarded.__doc__ = method.__doc__
    guarded._tiergate_guard = True
    return guarded


def _hand_over_to_pytest_socket(cls: Any) -> None:
    # pytest-socket puts ``socket.socket.connect`` back to the one it saw at its import after
    # every test (and calls it for the hosts it allows): that one is now the guarded one, or the
    # tier's guard would be gone from the second test on.
    plugin = sys.modules.get("pytest_socket")
    if plugin is not None and hasattr(plugin, "_true_connect"):
        setattr(plugin, "_true_connect", cls.connect)  # noqa: B010  (another plugin's name)


def repatch() -> bool:
    """Put the guard back on ``socket.socket``'s methods where something replaced it since (a
    plugin or a conftest that restores what it saw at its import); what is there now is
    wrapped, so a replacement of theirs still runs behind the check. True when it had to.
    Called at every test: while the methods are the ones the guard left, one look in C."""
    global _guarded
    cls = _patched
    if cls is None or _methods_now(cls) == _guarded:
        return False
    again = False
    for name in _METHODS:
        method = cls.__dict__.get(name)
        if method is not None and not getattr(method, "_tiergate_guard", False):
            setattr(cls, name, _guarded_method(name, method))
            again = True
    _guarded = _methods_now(cls)
    return again


def _guarded_resolver(original: Any, event: str) -> Any:
    # getnameinfo(sockaddr, NI_NUMERICHOST) formats the address and looks nothing up
    numeric = _socket.NI_NUMERICHOST if event == "socket.getnameinfo" else 0

    def resolver(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        if _policy is not None and not getattr(_busy, "on", False):
            # getaddrinfo also takes host= and port= by keyword; the others take no keywords
            named = (*args, *(kwargs.get(key) for key in ("host", "port")[len(args):]))
            if named and not (numeric and isinstance(named[1], int) and named[1] & numeric):
                _check(event, named)
        return original(*args, **kwargs)

    resolver.__name__ = resolver.__qualname__ = original.__name__
    resolver.__doc__ = original.__doc__
    resolver.__wrapped__ = original  # type: ignore[attr-defined]
    return resolver


def _decide(policy: Policy, event: str, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """None when *event* is allowed, else (operation, host, port, socket) to refuse."""
    if event in _LOOKUPS:
        if event == "socket.getnameinfo":  # ((host, port, ...),): a reverse lookup of an address
            sockaddr = args[0]
            if not isinstance(sockaddr, tuple) or len(sockaddr) < 2:
                return None  # CPython rejects it before any lookup
            host, port = _text(sockaddr[0]), _port(sockaddr[1])
            if host is None:
                return None  # CPython rejects it before any lookup
            address = _ip(host)  # CPython only parses it (AI_NUMERICHOST): a name fails there
            if address is None or policy.allows_reverse(address):
                return None
            return ("reverse lookup", host, port, None)
        raw = args[0]
        if raw is None and event == "socket.getaddrinfo":
            return None  # the wildcard or loopback address: nothing to look up
        host = _text(raw)
        if host is None:
            return ("lookup", repr(raw), None, None)
        port = _port(args[1]) if event == "socket.getaddrinfo" else None
        address = _ip(host) if host else None
        if event == "socket.gethostbyaddr" and not host:
            address = (4, 0)  # CPython reads "" as 0.0.0.0, and looks that up
        if address is not None and event == "socket.gethostbyaddr":
            return None if policy.allows_reverse(address) else ("reverse lookup", host, None, None)
        if not host or address is not None or policy.allows_lookup(host, port):
            return None  # numeric: no packet is sent; the connect that follows is checked
        return ("lookup", host, port, None)
    sock, address_arg = args[0], args[1]
    family = _family_of(sock)
    if family not in _INET_FAMILIES:
        return None
    if event == "socket.sendmsg" and address_arg is None:
        return None  # connected socket: its connect was checked
    if not isinstance(address_arg, tuple) or len(address_arg) < 2:
        return None  # CPython rejects it before any system call
    port = _port(address_arg[1])
    host = _text(address_arg[0])
    operation = event.split(".", 1)[1]
    if host is None:
        return (operation, repr(address_arg[0]), port, sock)
    return None if policy.allows_ip(host, port, family) else (operation, host, port, sock)


def _allow_hint(operation: str, host: str, port: int | None) -> str:
    """How to allow what was refused, in the tier's own configuration."""
    entry = host
    if port is not None and operation != "reverse lookup":
        entry = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if _source == "marker":
        return f'change the test\'s @pytest.mark.network (e.g. ["{entry}"] or "any")'
    where = f"[tool.tiergate.tiers.{_tier}]" if _tier else "the tier's [tool.tiergate.tiers.*]"
    mode = _policy.mode if _policy is not None else "none"
    if mode == "list":
        return f'add "{entry}" to network in {where}'
    kept = '"127.0.0.0/8", "::1", ' if mode == "loopback" else ""
    return f'set network = [{kept}"{entry}"] (or "any") in {where}'


def _policy_words() -> str:
    """The policy that refused, and whose it is when it is not the tier's."""
    words = _policy.describe() if _policy else "?"
    return words + ", from the test's @pytest.mark.network" if _source == "marker" else words


def _refuse(event: str, operation: str, host: str, port: int | None, sock: Any) -> None:
    __tracebackhide__ = True
    target = f"{host}:{port}" if port is not None and operation != "reverse lookup" else host
    verb = f"{operation} of" if "lookup" in operation else f"{operation} to"
    message = (f"tiergate: network blocked: {verb} {target} is not allowed by tier "
               f"{_tier or '?'!r} (network = {_policy_words()}); "
               f"to allow it, {_allow_hint(operation, host, port)}")
    # Unreachable by definition: no finding, and the socket stays the caller's, as it is offline
    # (kept, it would also use up BLOCKED_SOCKETS in a suite of timeout tests).
    if not never_reachable(operation, host):
        _claim_and_record(message, operation, host, port, sock)
    # What a machine with no network raises, so code that checks for "offline" sees just that.
    if event == "socket.gethostbyaddr" and operation == "reverse lookup":
        raise ReverseLookupBlocked(_HOST_NOT_FOUND, message)
    if event in _LOOKUPS:
        raise LookupBlocked(_socket.EAI_NONAME, message)
    raise NetworkBlocked(errno.ENETUNREACH, message)


def _claim_and_record(message: str, operation: str, host: str, port: int | None,
                      sock: Any) -> None:
    if sock is not None and len(BLOCKED_SOCKETS) < _MAX_KEPT:
        BLOCKED_SOCKETS.append(sock)
    _busy.on = True
    try:
        _record(message, operation, host, port)
    except Exception:
        pass  # recording must never hide the refusal itself
    finally:
        _busy.on = False


def _culprit() -> dict[str, Any] | None:
    """The innermost frame outside the standard library (the caller that wanted the network)."""
    frame: Any = _getframe(1)
    first = None
    while frame is not None:
        path = frame.f_code.co_filename
        if path != _HERE and path != __file__:
            entry = {"path": path, "line": frame.f_lineno, "function": frame.f_code.co_name}
            first = first or entry
            if not path.startswith(_STDLIB) and not path.startswith("<"):
                return entry
        frame = frame.f_back
    return first


def _current_test() -> str | None:
    test = _environ.get("PYTEST_CURRENT_TEST")  # pytest's, around each phase; children inherit it
    if not test:
        return None
    for phase in (" (setup)", " (call)", " (teardown)"):
        if test.endswith(phase):
            return test[: -len(phase)]
    return test


def _record(message: str, operation: str, host: str, port: int | None) -> None:
    culprit = _culprit()
    test = _current_test()
    finding = {
        "kind": "network-blocked",
        "test": test,
        "severity": "error",
        "message": message,
        "location": {"path": culprit["path"], "line": culprit["line"]} if culprit else None,
        "culprit": culprit,
        "details": {"operation": operation, "host": host, "port": port,
                    "policy": _policy.describe() if _policy else None, "tier": _tier,
                    "policy_from": _source,  # "marker": the test's own, not the tier's
                    "pid": _getpid(),
                    # One finding per test and destination: pip retrying a lookup 36 times
                    # is one root cause (the results model joins a group's repeats).
                    "group": f"{test} {operation} {host}:{port}"},
    }
    if _reporter is not None:
        _reporter(finding)
        return
    events = _environ.get(ENV_EVENTS)
    if not events:
        return
    line = _dumps({"event": "finding", "t": _now(), "pid": _getpid(),
                   "finding": finding}, separators=(",", ":"), default=str) + "\n"
    fd = _os_open(events, _APPEND, 0o644)
    try:
        _os_write(fd, line.encode("utf-8", "replace"))
    finally:
        _os_close(fd)
