"""The network guard: policies, the audit hook in a process, and in its Python children.

Every refusal test installs the guard *before* touching the network, uses only TEST-NET addresses
(192.0.2.0/24), 10.255.255.1, the reserved 240.0.0.0/4, ``.invalid`` or ``.test`` names or 127.x
listeners, and asserts the guard raised. Behind the guard each child adds ``NO_TRAFFIC_LEAVES``, a
second audit hook that ends the process before the system call if a connect, send or lookup of
anything but this machine (the calls these tests make) ever gets past the guard: even a broken
guard never sends a packet or a DNS query. Guarded code runs in child interpreters, because an
audit hook cannot be removed from the process that added it. What the guard decides without a
system call (this machine's names, odd arguments) is asserted on its decision functions directly.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tiergate.child import SITE_DIR
from tiergate.plugin import netguard

CORE = netguard.core()
Policy = CORE.Policy
LocalNames = CORE.LocalNames

# Audit hooks run in the order they were added, so this one only sees what the guard let through.
# What stays on this machine: loopback and wildcard addresses, numeric forward lookups, and the
# names /etc/hosts maps to loopback (read here, independently of the guard).
NO_TRAFFIC_LEAVES = """
import ipaddress as _ip, os as _os, sys as _sys
def _loopback_names():
    names = {"localhost"}
    try:
        with open("/etc/hosts", encoding="latin-1") as hosts:
            for line in hosts:
                fields = line.split("#", 1)[0].split()
                try:
                    if len(fields) > 1 and _ip.ip_address(fields[0]).is_loopback:
                        names.update(name.lower() for name in fields[1:])
                except ValueError:
                    pass
    except OSError:
        pass
    return names
_LOCAL = _loopback_names()
def _only_this_machine(event, args):
    sends = ("socket.connect", "socket.sendto", "socket.sendmsg")
    if event in sends and isinstance(args[1], tuple):
        host = args[1][0]
    elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"):
        host = args[0]
    elif event == "socket.getnameinfo" and isinstance(args[0], tuple):
        host = args[0][0]
    else:
        return
    if isinstance(host, (bytes, bytearray)):
        host = bytes(host).decode("latin-1")
    if host in (None, "") or str(host).lower().rstrip(".") in _LOCAL:
        return
    try:
        address = _ip.ip_address(str(host).split("%")[0])
    except ValueError:
        address = None
    if address is not None:
        if event in ("socket.getaddrinfo", "socket.gethostbyname"):
            return  # numeric: nothing is looked up
        address = getattr(address, "ipv4_mapped", None) or address
        if address.is_loopback or address.is_unspecified:
            return
    print("the guard let", event, "to", repr(host), "through", file=_sys.stderr, flush=True)
    _os._exit(97)
_sys.addaudithook(_only_this_machine)
"""


@pytest.mark.parametrize(
    ("spec", "host", "port", "allowed"),
    [
        ("any", "192.0.2.1", 80, True),
        ("loopback", "127.0.0.1", 5432, True),
        ("loopback", "127.8.9.10", 1, True),
        ("loopback", "::1", 80, True),
        ("loopback", "::ffff:127.0.0.1", 80, True),
        ("loopback", "192.0.2.1", 5432, False),
        ("none", "127.0.0.1", 80, False),
        (("127.0.0.2",), "127.0.0.2", 9, True),
        (("127.0.0.2",), "127.0.0.3", 9, False),
        (("127.0.0.2:8080",), "127.0.0.2", 8080, True),
        (("127.0.0.2:8080",), "127.0.0.2", 8081, False),
        (("10.0.0.0/8",), "10.1.2.3", 5432, True),
        (("10.0.0.0/8",), "11.1.2.3", 5432, False),
        (("[::1]:443",), "::1", 443, True),
        (("db.internal",), "db.internal", 5432, True),
        (("db.internal:5432",), "db.internal", 80, False),
    ],
)
def test_policy_decides(spec: str | tuple[str, ...], host: str, port: int, allowed: bool) -> None:
    assert Policy.parse(spec).allows_ip(host, port) is allowed


def test_policy_travels_through_the_environment() -> None:
    env = netguard.guard_env(("127.0.0.2", "db:5432", "10.0.0.0/8"), "nightly")
    assert env == {"TIERGATE_NETWORK": '["127.0.0.2", "db:5432", "10.0.0.0/8"]',
                   "TIERGATE_TIER": "nightly"}
    assert Policy.parse(env["TIERGATE_NETWORK"]).entries == ("127.0.0.2", "db:5432", "10.0.0.0/8")
    assert netguard.guard_env("loopback", "fast")["TIERGATE_NETWORK"] == "loopback"
    with pytest.raises(ValueError):
        netguard.encode_policy([])


def run_guarded(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs *code* in a child; ``BELT`` on a line of its own becomes ``NO_TRAFFIC_LEAVES``."""
    code = textwrap.dedent(code).replace("\nBELT\n", NO_TRAFFIC_LEAVES)
    return subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def test_in_process_guard_refuses_before_sending_and_reports_the_test() -> None:
    result = run_guarded("""
        import json, os, socket, time
        from tiergate.plugin import netguard
        found = []
        netguard.install_guard("loopback", tier_name="fast", emit=found.append)
        BELT
        os.environ["PYTEST_CURRENT_TEST"] = "tests/test_db.py::test_query (call)"
        sock = socket.socket()
        sock.settimeout(10)
        start = time.perf_counter()
        try:
            sock.connect(("192.0.2.1", 5432))
        except netguard.NetworkBlocked as exc:
            print(json.dumps({"error": str(exc), "seconds": time.perf_counter() - start,
                              "errno": exc.errno, "refused": isinstance(exc, ConnectionError),
                              "finding": found[0].to_json()}))
        else:
            raise SystemExit("the guard let a connection through")
    """)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    # What a machine with no network raises: OSError ENETUNREACH, not "connection refused".
    assert out["errno"] == errno.ENETUNREACH and not out["refused"]
    assert out["seconds"] < 5  # far below the socket's timeout: refused at once, not waited out
    assert out["error"].startswith("[Errno 101] tiergate: network blocked: connect to 192.0.2.1:")
    assert "192.0.2.1:5432" in out["error"] and "'fast'" in out["error"]
    assert "network = loopback" in out["error"]
    assert ('to allow it, set network = ["127.0.0.0/8", "::1", "192.0.2.1:5432"] (or "any") '
            "in [tool.tiergate.tiers.fast]") in out["error"]
    finding = out["finding"]
    assert finding["kind"] == "network-blocked" and finding["severity"] == "error"
    assert finding["test"] == "tests/test_db.py::test_query"
    assert finding["culprit"]["path"] == "<string>"
    assert finding["details"] == {**finding["details"], "host": "192.0.2.1", "port": 5432}


def test_allow_list_lets_listed_loopback_through_and_refuses_the_rest(
    listeners: dict[str, int],
) -> None:
    result = run_guarded(f"""
        import socket
        from tiergate.plugin import netguard
        netguard.install_guard(["127.0.0.2"], tier_name="fast")
        BELT
        socket.create_connection(("127.0.0.2", {listeners["127.0.0.2"]}), timeout=0.2).close()
        print("allowed ok")
        try:
            socket.create_connection(("127.0.0.3", {listeners["127.0.0.3"]}), timeout=0.2)
        except netguard.NetworkBlocked as exc:
            print("refused:", exc)
        try:
            socket.getaddrinfo("db.example.invalid", 5432)
        except socket.gaierror as exc:
            assert isinstance(exc, netguard.NetworkBlocked) and exc.errno == socket.EAI_NONAME
            print("lookup refused:", exc)
        with socket.socket(socket.AF_UNIX) as unix:
            try:
                unix.connect("/nonexistent/tiergate.sock")
            except FileNotFoundError:
                print("unix ok")
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "allowed ok"
    assert lines[1].startswith(f"refused: [Errno 101] tiergate: network blocked: connect to "
                               f"127.0.0.3:{listeners['127.0.0.3']}")
    assert "network = [127.0.0.2]" in lines[1]
    assert f'add "127.0.0.3:{listeners["127.0.0.3"]}" to network in [tool.tiergate.' in lines[1]
    assert lines[2].startswith("lookup refused: [Errno -2] tiergate: network blocked: lookup of "
                               "db.example.invalid:5432")
    assert 'add "db.example.invalid:5432" to network' in lines[2]
    assert lines[3] == "unix ok"


def test_python_children_are_guarded_and_record_the_refusal(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SITE_DIR), os.environ.get("PYTHONPATH")])),
        "TIERGATE_EVENTS": str(events),
        "PYTEST_CURRENT_TEST": "tests/test_x.py::test_child (call)",
        **netguard.guard_env("none", "fast"),
    }
    result = run_guarded("""
        import socket, subprocess, sys
        BELT
        grandchild = '''
        import socket
        BELT
        s = socket.socket(); s.settimeout(0.2)
        try:
            s.connect(("192.0.2.7", 443))
        except OSError as exc:
            print("grandchild refused", type(exc).__name__, exc.errno)
        else:
            raise SystemExit("not guarded")
        '''
        print(subprocess.run([sys.executable, "-c", grandchild], capture_output=True,
                             text=True).stdout.strip())
        s = socket.socket(); s.settimeout(0.2)
        s.connect(("127.0.0.1", 9))
    """, env)
    assert result.returncode == 1
    assert "grandchild refused NetworkBlocked 101" in result.stdout
    assert ("NetworkBlocked: [Errno 101] tiergate: network blocked: connect to 127.0.0.1:9"
            in result.stderr)
    assert "network = none" in result.stderr
    records = [json.loads(line) for line in events.read_text().splitlines()]
    assert [r["event"] for r in records] == ["finding", "finding"]
    hosts = sorted(r["finding"]["details"]["host"] for r in records)
    assert hosts == ["127.0.0.1", "192.0.2.7"]
    assert {r["finding"]["test"] for r in records} == {"tests/test_x.py::test_child"}
    assert all(r["finding"]["kind"] == "network-blocked" for r in records)


def test_any_is_a_no_op_in_children(listeners: dict[str, int]) -> None:
    env = {"PYTHONPATH": str(SITE_DIR), **netguard.guard_env("any", "nightly")}
    result = run_guarded(f"""
        import socket, sys
        socket.create_connection(("127.0.0.3", {listeners["127.0.0.3"]}), timeout=0.2).close()
        print("_tiergate_netguard" in sys.modules and
              sys.modules["_tiergate_netguard"]._policy is None)
    """, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


# -- issue 15: a blocked network behaves like an offline machine ---------------------------------

PROBE_CONFTEST = f'''
import os, sys

BELT = {NO_TRAFFIC_LEAVES!r}


def pytest_configure(config):
    # After tiergate's own (tryfirst) pytest_configure: the tier's guard must be in place before
    # the belt goes in behind it, or nothing below may touch the network.
    guard = sys.modules.get("_tiergate_netguard")
    if guard is None or guard._policy is None or not guard._installed:
        print("the guard is not installed", file=sys.stderr, flush=True)
        os._exit(98)
    exec(BELT, {{}})
'''

OFFLINE_PROBE_SUITE = '''
import errno
import socket

import pytest


def _offline():
    try:
        socket.create_connection(("192.0.2.1", 80), timeout=2).close()
    except OSError as exc:
        if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return True
        raise
    return False


OFFLINE = _offline()


def test_the_probe_saw_an_offline_machine():
    assert OFFLINE is True


@pytest.mark.skipif(OFFLINE, reason="needs the network")
def test_fetches_the_page():
    raise AssertionError("never runs offline")


def test_a_failed_lookup_raises_gaierror():
    with pytest.raises(socket.gaierror) as info:
        socket.getaddrinfo("db.example.test", 5432)
    assert info.value.errno == socket.EAI_NONAME
    assert "tiergate: network blocked" in str(info.value)


def test_gethostbyname_fails_as_offline():
    with pytest.raises(socket.gaierror):
        socket.gethostbyname("api.example.test")


def test_a_child_that_retries_a_lookup_like_pip():
    import subprocess, sys
    retry = ("import socket\\n"
             "for _ in range(3):\\n"
             "    try:\\n"
             "        socket.getaddrinfo('index.example.test', 443)\\n"
             "    except socket.gaierror:\\n"
             "        pass\\n")
    subprocess.run([sys.executable, "-c", retry], check=True)


def test_a_black_hole_and_a_name_that_never_resolves_fail_as_offline():
    with pytest.raises(OSError) as info:
        socket.create_connection(("240.0.0.1", 80), timeout=2)
    assert info.value.errno == errno.ENETUNREACH
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("badhost.invalid", 80)
'''


def test_an_offline_probe_at_import_lets_the_module_import_and_its_tests_run(
    pytester: pytest.Pytester,
) -> None:
    (pytester.path / "conftest.py").write_text(PROBE_CONFTEST)
    (pytester.path / "test_probe.py").write_text(OFFLINE_PROBE_SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--tier", "fast")
    assert result.ret != 98, "the guard was not installed before the suite ran"
    result.assert_outcomes(passed=5, skipped=1)
    findings = json.loads((pytester.path / ".tiergate/fast/findings.json").read_text())["findings"]
    blocked = {f["details"]["host"]: f for f in findings if f["kind"] == "network-blocked"}
    # and none for 240.0.0.1 or badhost.invalid: no network ever reaches them
    assert set(blocked) == {"192.0.2.1", "db.example.test", "api.example.test",
                            "index.example.test"}
    # a child retrying one lookup three times is one root cause: one finding, counted
    retried = [f for f in findings if f["details"].get("host") == "index.example.test"]
    assert len(retried) == 1 and retried[0]["message"].endswith("(3 times)"), retried
    assert blocked["192.0.2.1"]["details"]["operation"] == "connect"
    lookup = blocked["db.example.test"]
    assert lookup["test"] == "test_probe.py::test_a_failed_lookup_raises_gaierror"
    source = OFFLINE_PROBE_SUITE.splitlines()
    assert "getaddrinfo" in source[lookup["location"]["line"] - 1]
    assert lookup["location"]["path"].endswith("test_probe.py")
    assert blocked["api.example.test"]["test"] == (
        "test_probe.py::test_gethostbyname_fails_as_offline")


def test_every_resolver_entry_point_is_guarded_and_fails_as_offline() -> None:
    result = run_guarded("""
        import json, os, socket
        from tiergate.plugin import netguard
        found = []
        netguard.install_guard("loopback", tier_name="fast", emit=found.append)
        BELT
        out = {}
        def attempt(name, call):
            try:
                call()
            except OSError as exc:
                out[name] = [type(exc).__mro__[1].__name__, exc.errno,
                             isinstance(exc, netguard.NetworkBlocked), str(exc)]
            else:
                out[name] = "allowed"
        attempt("gethostbyname", lambda: socket.gethostbyname("db.example.test"))
        attempt("gethostbyname bytes", lambda: socket.gethostbyname(b"db.example.test"))
        attempt("gethostbyname_ex", lambda: socket.gethostbyname_ex("db.example.test"))
        attempt("gethostbyaddr address", lambda: socket.gethostbyaddr("192.0.2.1"))
        attempt("gethostbyaddr name", lambda: socket.gethostbyaddr("db.example.test"))
        attempt("getnameinfo", lambda: socket.getnameinfo(("192.0.2.1", 80), 0))
        attempt("getaddrinfo", lambda: socket.getaddrinfo("db.example.test", 80))
        attempt("localhost", lambda: socket.gethostbyname("localhost"))
        attempt("numeric", lambda: socket.gethostbyname("192.0.2.1"))
        out["findings"] = [[f.test, f.details["operation"]] for f in found]
        print(json.dumps(out))
    """, {"PYTEST_CURRENT_TEST": "tests/test_dns.py::test_q (call)"})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    gaierror = ["gaierror", socket.EAI_NONAME, True]
    for name in ("gethostbyname", "gethostbyname bytes", "gethostbyname_ex",
                 "gethostbyaddr name", "getnameinfo", "getaddrinfo"):
        assert out[name][:3] == gaierror, name
        assert "tiergate: network blocked: " in out[name][3], name
    # gethostbyaddr of an address fails in the reverse lookup, with socket.herror
    assert out["gethostbyaddr address"][:3] == ["herror", 1, True]
    assert "reverse lookup of 192.0.2.1 is not allowed" in out["gethostbyaddr address"][3]
    assert out["localhost"] == "allowed" and out["numeric"] == "allowed"
    # one network-blocked finding per refused call, on the test in progress
    assert out["findings"] == [["tests/test_dns.py::test_q", "lookup"]] * 3 + [
        ["tests/test_dns.py::test_q", "reverse lookup"], ["tests/test_dns.py::test_q", "lookup"],
        ["tests/test_dns.py::test_q", "reverse lookup"], ["tests/test_dns.py::test_q", "lookup"]]


def test_refused_lookups_in_children_are_findings_naming_the_test(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SITE_DIR), os.environ.get("PYTHONPATH")])),
        "TIERGATE_EVENTS": str(events),
        "PYTEST_CURRENT_TEST": "tests/test_dns.py::test_resolves (call)",
        **netguard.guard_env("loopback", "fast"),
    }
    result = run_guarded("""
        import socket
        BELT
        for call in (lambda: socket.gethostbyname("db.example.test"),
                     lambda: socket.gethostbyaddr("192.0.2.9")):
            try:
                call()
            except (socket.gaierror, socket.herror) as exc:
                print(type(exc).__name__)
    """, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["LookupBlocked", "ReverseLookupBlocked"]
    findings = [json.loads(line)["finding"] for line in events.read_text().splitlines()]
    assert [(f["details"]["operation"], f["details"]["host"]) for f in findings] == [
        ("lookup", "db.example.test"), ("reverse lookup", "192.0.2.9")]
    assert {f["test"] for f in findings} == {"tests/test_dns.py::test_resolves"}
    assert all(f["kind"] == "network-blocked" and f["location"]["line"] for f in findings)


def test_unreachable_by_definition_is_refused_as_offline_without_a_finding() -> None:
    result = run_guarded("""
        import json, socket
        from tiergate.plugin import netguard
        found = []
        netguard.install_guard("loopback", tier_name="fast", emit=found.append)
        BELT
        out = {}
        def attempt(name, call):
            try:
                call()
            except OSError as exc:
                out[name] = [type(exc).__name__, exc.errno, isinstance(exc, socket.gaierror)]
            else:
                out[name] = "allowed"
        def connect(family, address):
            with socket.socket(family) as sock:
                sock.settimeout(2)
                sock.connect(address)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        attempt("lookup x.invalid", lambda: socket.getaddrinfo("x.invalid", 80))
        attempt("connect 240.0.0.1", lambda: connect(socket.AF_INET, ("240.0.0.1", 80)))
        attempt("connect 100::1", lambda: connect(socket.AF_INET6, ("100::1", 80)))
        attempt("sendto 0.1.2.3", lambda: udp.sendto(b"x", ("0.1.2.3", 9)))
        attempt("connect 10.255.255.1", lambda: connect(socket.AF_INET, ("10.255.255.1", 80)))
        out["findings"] = [f.details["host"] for f in found]
        print(json.dumps(out))
    """)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    unreachable = ["NetworkBlocked", errno.ENETUNREACH, False]
    assert out["lookup x.invalid"] == ["LookupBlocked", socket.EAI_NONAME, True]
    assert out["connect 240.0.0.1"] == out["connect 100::1"] == out["sendto 0.1.2.3"] == unreachable
    assert out["connect 10.255.255.1"] == unreachable  # refused the same way ...
    assert out["findings"] == ["10.255.255.1"]  # ... but that one would leave the machine


@pytest.mark.parametrize(
    ("operation", "host", "never"),
    [
        ("lookup", "badhost.invalid", True),
        ("lookup", "Something.INVALID.", True),
        ("lookup", "invalid", True),
        ("connect", "db.invalid", True),  # connect() to a name looks it up first
        ("lookup", "invalid.example.com", False),
        ("lookup", "app.test", False),  # a private resolver may answer .test and .example
        ("lookup", "www.example", False),
        ("connect", "240.0.0.0", True),
        ("connect", "255.255.255.254", True),
        ("sendto", "::ffff:240.0.0.1", True),
        ("sendto", "255.255.255.255", False),  # broadcast: it does send, to the whole link
        ("sendto", "<broadcast>", False),
        ("connect", "239.255.255.255", False),
        ("connect", "0.1.2.3", True),
        ("connect", "0.0.0.0", False),  # this machine, which "none" refuses with a finding
        ("connect", "100::1", True),
        ("connect", "100:0:0:1::1", False),  # outside the discard /64
        ("connect", "10.255.255.1", False),
        ("connect", "192.0.2.1", False),
        ("reverse lookup", "240.0.0.1", False),  # a PTR query asks the resolver
        ("connect", "?", False),
    ],
)
def test_destinations_no_network_reaches(operation: str, host: str, never: bool) -> None:
    assert CORE.never_reachable(operation, host) is never


def test_a_monkeypatched_getaddrinfo_does_not_break_the_allow_list() -> None:
    result = run_guarded("""
        import json, os, socket
        from tiergate.plugin import netguard
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        netguard.install_guard(["localhost", "127.0.0.2"], tier_name="nightly")
        BELT
        real = socket.getaddrinfo
        calls = []
        def narrow(host, port, family, type, proto=0, flags=0):  # no defaults for family, type
            calls.append(host)
            return real(host, port, family, type, proto, flags)
        socket.getaddrinfo = narrow
        socket.create_connection(("localhost", port), timeout=2).close()
        def broken(*args, **kwargs):
            raise AssertionError("the guard called the test's getaddrinfo")
        socket.getaddrinfo = broken
        sock = socket.socket()
        sock.settimeout(2)
        sock.connect(("127.0.0.1", port))
        sock.close()
        try:
            socket.socket().connect(("127.0.0.3", port))
        except OSError as exc:
            refused = exc.errno
        print(json.dumps({"calls": calls, "refused": refused,
                          "addresses": json.loads(os.environ["TIERGATE_NETWORK_ADDRESSES"])}))
    """)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["calls"] == ["localhost"]  # the test's own call; none from the guard
    assert out["refused"] == errno.ENETUNREACH
    # resolved once, at start-up; the children get the answers instead of asking again
    assert {"127.0.0.1", "::1"} <= set(out["addresses"]["localhost"])
    assert set(out["addresses"]) == {"localhost"}


def test_children_use_the_addresses_resolved_at_start_up(listeners: dict[str, int]) -> None:
    # A listed name the resolver must never be asked about (.invalid): its address comes from
    # TIERGATE_NETWORK_ADDRESSES, and a tripwire stands in for the real resolver.
    result = run_guarded(f"""
        import json, os
        from tiergate.plugin import netguard
        core = netguard.core()
        def tripwire(*args):
            print("the guard resolved", args, flush=True)
            os._exit(96)
        core._getaddrinfo = tripwire
        os.environ["TIERGATE_NETWORK"] = '["db.example.invalid"]'
        os.environ["TIERGATE_NETWORK_ADDRESSES"] = '{{"db.example.invalid": ["127.0.0.2"]}}'
        os.environ["TIERGATE_TIER"] = "fast"
        core.install_from_env()
        BELT
        import socket
        socket.create_connection(("127.0.0.2", {listeners["127.0.0.2"]}), timeout=2).close()
        try:
            socket.create_connection(("127.0.0.3", {listeners["127.0.0.3"]}), timeout=2)
        except netguard.NetworkBlocked as exc:
            print("refused", exc.errno)
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == ["refused", str(errno.ENETUNREACH)]


def test_bytes_and_odd_hosts_never_crash_the_guard() -> None:
    result = run_guarded("""
        import json, socket
        from tiergate.plugin import netguard
        listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        netguard.install_guard("loopback", tier_name="fast")
        BELT
        out = {}
        def attempt(name, call):
            try:
                call()
                out[name] = "allowed"
            except Exception as exc:
                out[name] = type(exc).__name__
        attempt("bytes localhost", lambda: socket.getaddrinfo(b"localhost", b"80"))
        attempt("bytes refused", lambda: socket.getaddrinfo(b"db.example.invalid", 80))
        attempt("not ascii", lambda: socket.getaddrinfo(b"\\xff\\xfe.invalid", 80))
        attempt("not ascii str", lambda: socket.getaddrinfo("bücher.invalid", 80))
        attempt("gethostbyname bytes", lambda: socket.gethostbyname(b"localhost"))
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        attempt("sendto bytes host", lambda: udp.sendto(b"x", (b"127.0.0.1", port)))
        attempt("sendto refused", lambda: udp.sendto(b"x", (b"192.0.2.1", port)))
        core = netguard.core()
        attempt("garbage args", lambda: core._hook("socket.connect", ()))
        attempt("int host", lambda: core._hook("socket.getaddrinfo", (5, 80, 0, 0, 0)))
        print(json.dumps(out))
    """)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "bytes localhost": "allowed",
        "bytes refused": "LookupBlocked",
        "not ascii": "LookupBlocked",
        "not ascii str": "LookupBlocked",
        "gethostbyname bytes": "allowed",
        "sendto bytes host": "allowed",
        "sendto refused": "NetworkBlocked",
        "garbage args": "NetworkBlocked",  # unreadable: refused, never a crash of the guard
        "int host": "LookupBlocked",
    }


def test_the_wildcard_addresses_mean_this_machine() -> None:
    result = run_guarded("""
        import socket
        from tiergate.plugin import netguard
        v4 = socket.socket()
        v4.bind(("127.0.0.1", 0))
        v4.listen()
        v6 = socket.socket(socket.AF_INET6)
        v6.bind(("::1", 0))
        v6.listen()
        netguard.install_guard("loopback", tier_name="fast")
        BELT
        for family, host, port in ((socket.AF_INET, "0.0.0.0", v4.getsockname()[1]),
                                   (socket.AF_INET, "", v4.getsockname()[1]),
                                   (socket.AF_INET6, "::", v6.getsockname()[1])):
            sock = socket.socket(family)
            sock.settimeout(2)
            sock.connect((host, port))
            print(sock.getpeername()[0])
            sock.close()
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["127.0.0.1", "127.0.0.1", "::1"]


@pytest.mark.parametrize(
    ("spec", "host", "allowed"),
    [
        ("loopback", "0.0.0.0", True),
        ("loopback", "::", True),
        ("loopback", "::ffff:0.0.0.0", True),
        ("loopback", "", True),
        ("none", "0.0.0.0", False),
        (("127.0.0.1",), "0.0.0.0", True),
        (("127.0.0.1",), "::", False),
        (("10.0.0.0/8",), "0.0.0.0", False),
        ("loopback", "255.255.255.255", False),
        ("loopback", "<broadcast>", False),
        (("::ffff:10.0.0.0/104",), "10.9.8.7", True),
        (("10.0.0.0/8",), "::ffff:10.9.8.7", True),
    ],
)
def test_wildcards_count_as_loopback(spec: str | tuple[str, ...], host: str, allowed: bool) -> None:
    assert Policy.parse(spec).allows_ip(host, 80) is allowed


HOSTS = """\
127.0.0.1   localhost
127.0.1.1   buildbox.example.com buildbox   # Debian's line for the host name
::1         localhost ip6-localhost
10.1.2.3    db.internal
"""


def test_names_this_machine_answers_are_local() -> None:
    policy = Policy.parse("loopback")
    policy.local = LocalNames(HOSTS, hostname="buildbox")
    assert policy.allows_lookup("buildbox", None)
    assert policy.allows_lookup("BuildBox.Example.COM.", 443)
    assert policy.allows_ip("buildbox", 8080)  # 127.0.1.1
    assert policy.allows_lookup("db.internal", 5432)  # /etc/hosts answers it: nothing is sent ...
    assert not policy.allows_ip("db.internal", 5432)  # ... but 10.1.2.3 is not loopback
    assert not policy.allows_lookup("db.example.com", 5432)
    assert policy.allows_reverse((4, 0x7F000101)) and not policy.allows_reverse((4, 0xC0000201))
    none = Policy.parse("none")
    none.local = policy.local
    assert none.allows_lookup("buildbox", None) and not none.allows_ip("buildbox", 80)
    # localhost on an IPv4 socket is 127.0.0.1 only: an allow-list of it allows the name there
    listed = Policy.parse(("127.0.0.1",))
    listed.local = policy.local
    assert listed.allows_name("localhost", 80, socket.AF_INET)
    assert not listed.allows_name("localhost", 80, socket.AF_INET6)


@pytest.mark.parametrize(
    ("hosts", "nsswitch", "local"),
    [
        (HOSTS, "", True),  # /etc/hosts has it
        ("", "hosts: files myhostname dns\n", True),  # systemd's nss-myhostname answers it
        ("", "hosts: files resolve [!UNAVAIL=return] dns\n", True),
        ("", "hosts: files dns myhostname\n", False),  # DNS would be asked first
        ("", "hosts: files dns\n", False),
        ("", "", False),
    ],
)
def test_the_host_name_is_local_only_when_the_machine_answers_it(
    hosts: str, nsswitch: str, local: bool
) -> None:
    policy = Policy.parse("loopback")
    policy.local = LocalNames(hosts, hostname="buildbox", nsswitch_text=nsswitch)
    assert policy.allows_lookup("buildbox", None) is local


def test_this_machines_own_names_resolve_under_the_guard() -> None:
    result = run_guarded("""
        import json, socket
        from tiergate.plugin import netguard
        netguard.install_guard("loopback", tier_name="fast")
        BELT
        out = {"hostname": socket.gethostname(), "names": {}}
        for name in sorted(_LOCAL):  # what /etc/hosts maps to loopback, and localhost
            address = socket.gethostbyname(name)
            socket.getaddrinfo(name, 80)
            listener = socket.socket()
            listener.bind((address, 0))
            listener.listen()
            sock = socket.socket()
            sock.settimeout(2)
            sock.connect((name, listener.getsockname()[1]))
            sock.close()
            out["names"][name] = address
        print(json.dumps(out))
    """)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert "localhost" in out["names"]
    assert all(address.startswith("127.") for address in out["names"].values())


@pytest.mark.parametrize(
    ("event", "args"),
    [
        ("socket.getaddrinfo", (b"\xff\xfe", 80, 0, 0, 0)),
        ("socket.getaddrinfo", (bytearray(b"db.example.invalid"), "http", 0, 0, 0)),
        ("socket.getaddrinfo", (object(), None, 0, 0, 0)),
        ("socket.gethostbyname", ("\udcff.invalid",)),
        ("socket.gethostbyaddr", ("",)),
        ("socket.getnameinfo", ("not a tuple",)),
        ("socket.getnameinfo", (("192.0.2.1", "80"),)),
    ],
)
def test_the_decision_reads_any_argument_without_raising(
    event: str, args: tuple[object, ...]
) -> None:
    decision = CORE._decide(Policy.parse("loopback"), event, args)
    assert decision is None or decision[0] in ("lookup", "reverse lookup")
