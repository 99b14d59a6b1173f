"""The test process is guarded by patching the socket layer, not by an audit hook: a Python audit
hook is a call on every audited event, and pytest raises about twenty per test. Neither the guard
nor the leak watch adds one there; a Python child still gets the guard's hook from its start-up.
Every way into the network the patches cover is refused as offline (``connect_ex`` returns 101,
as offline), behind ``NO_TRAFFIC_LEAVES``
(an audit hook of the test's own that ends the process before anything leaves this machine)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from test_netguard import NO_TRAFFIC_LEAVES, run_guarded

from tiergate.child import SITE_DIR
from tiergate.plugin import netguard


def test_a_tier_adds_no_audit_hook_to_the_test_process(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        import sys
        ADDED = []
        _add = sys.addaudithook
        sys.addaudithook = lambda hook: (ADDED.append(hook), _add(hook))[1]
    """)
    pytester.makepyfile(test_hooks=f"""
        import errno, socket, subprocess, sys
        import conftest

        BELT = {NO_TRAFFIC_LEAVES!r}

        def test_guarded_and_watched_without_a_hook():
            guard = sys.modules["_tiergate_netguard"]
            assert guard._installed and guard._policy.mode == "loopback"
            assert conftest.ADDED == []  # the guard and the leak watch are both on
            exec(BELT, {{}})
            try:
                socket.create_connection(("192.0.2.1", 80), timeout=2)
            except OSError as exc:
                assert exc.errno == errno.ENETUNREACH and "network blocked" in str(exc)
            else:
                raise AssertionError("not refused")

        def test_a_child_has_the_guards_hook():
            code = "import sys; print(sys.modules['_tiergate_netguard']._policy.mode)"
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            assert out.stdout.strip() == "loopback", out.stderr
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--tier", "fast")
    result.assert_outcomes(passed=2)


def test_every_way_into_the_network_the_patches_cover_is_refused(
    listeners: dict[str, int],
) -> None:
    result = run_guarded(f"""
        import _socket, asyncio, json, socket, ssl
        from tiergate.plugin import netguard
        found = []
        netguard.install_guard("loopback", tier_name="fast", emit=found.append)
        BELT
        out = {{}}
        def attempt(name, call):
            try:
                value = call()
            except OSError as exc:
                out[name] = [type(exc).__name__, exc.errno]
            else:
                out[name] = "allowed" if name.startswith("loopback") else repr(value)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket()
        tls = ssl.create_default_context().wrap_socket(socket.socket(), server_hostname="x.test")
        attempt("connect_ex", lambda: tcp.connect_ex(("192.0.2.1", 80)))
        attempt("sendto", lambda: udp.sendto(b"x", ("192.0.2.1", 9)))
        attempt("sendto flags", lambda: udp.sendto(b"x", 0, ("192.0.2.1", 9)))
        attempt("sendmsg", lambda: udp.sendmsg([b"x"], [], 0, ("192.0.2.1", 9)))
        attempt("tls connect", lambda: tls.connect(("192.0.2.1", 443)))
        attempt("getaddrinfo keywords", lambda: socket.getaddrinfo(host="db.example.test", port=80))
        attempt("_socket.getaddrinfo", lambda: _socket.getaddrinfo("db.example.test", 80))
        attempt("_socket.gethostbyname", lambda: _socket.gethostbyname("db.example.test"))
        async def via_asyncio():
            await asyncio.open_connection("192.0.2.1", 80)
        attempt("asyncio open_connection", lambda: asyncio.run(via_asyncio()))
        async def via_sock_connect():
            sock = socket.socket()
            sock.setblocking(False)
            with sock:
                await asyncio.get_running_loop().sock_connect(sock, ("192.0.2.1", 80))
        attempt("asyncio sock_connect", lambda: asyncio.run(via_sock_connect()))
        attempt("getnameinfo", lambda: socket.getnameinfo(("192.0.2.1", 80), 0))
        attempt("loopback connect", lambda: socket.create_connection(
            ("127.0.0.2", {listeners["127.0.0.2"]}), timeout=2).close())
        attempt("loopback sendto", lambda: udp.sendto(b"x", ("127.0.0.1", 9)))
        out["findings"] = len(found)
        print(json.dumps(out))
    """)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    unreachable = ["NetworkBlocked", 101]
    lookup = ["LookupBlocked", socket.EAI_NONAME]
    assert out == {
        "connect_ex": "101", "sendto": unreachable, "sendto flags": unreachable,
        "sendmsg": unreachable, "tls connect": unreachable,
        "getaddrinfo keywords": lookup, "_socket.getaddrinfo": lookup,
        "_socket.gethostbyname": lookup, "asyncio open_connection": unreachable,
        "getnameinfo": lookup,
        "asyncio sock_connect": unreachable, "loopback connect": "allowed",
        "loopback sendto": "allowed", "findings": 11,
    }


def test_the_patches_keep_the_socket_api(tmp_path: Path) -> None:
    """What code inspects or calls in odd ways still works: names, bad arguments raise
    CPython's own TypeError, a numeric getnameinfo formats, a unix socket passes untouched."""
    result = run_guarded(f"""
        import json, socket
        from tiergate.plugin import netguard
        netguard.install_guard("none", tier_name="fast")
        # Before the belt, which cannot see the flags: NI_NUMERICHOST only formats the address.
        flags = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
        numeric = socket.getnameinfo(("192.0.2.1", 80), flags)
        BELT
        out = {{"numeric": list(numeric),
                "names": [socket.socket.connect.__name__, socket.getaddrinfo.__name__,
                          socket.gethostbyname.__name__]}}
        for name, call in (("sendto no address", lambda: socket.socket().sendto(b"x")),
                           ("connect no address", lambda: socket.socket().connect())):
            try:
                call()
            except TypeError:
                out[name] = "TypeError"
        server = socket.socket(socket.AF_UNIX)
        server.bind({str(tmp_path / "s.sock")!r}); server.listen()
        client = socket.socket(socket.AF_UNIX)
        client.connect({str(tmp_path / "s.sock")!r})
        out["unix"] = "connected"
        print(json.dumps(out))
    """)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "numeric": ["192.0.2.1", "80"], "names": ["connect", "getaddrinfo", "gethostbyname"],
        "sendto no address": "TypeError", "connect no address": "TypeError",
        "unix": "connected"}


def test_a_child_guarded_at_start_up_refuses_through_its_hook(tmp_path: Path) -> None:
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(SITE_DIR),
                                                        os.environ.get("PYTHONPATH")])),
           **netguard.guard_env("loopback", "fast")}
    result = run_guarded("""
        import _socket, socket, sys
        BELT
        raw = _socket.socket()  # not socket.socket: only an audit hook sees it
        try:
            raw.connect(("192.0.2.1", 80))
        except OSError as exc:
            print(type(exc).__name__, exc.errno)
        guard = sys.modules["_tiergate_netguard"]
        print(socket.socket.connect is _socket.socket.connect)
    """, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["NetworkBlocked", "101", "True"]


RESTORES_SOCKETS = """
    import socket, sys

    SEEN_AT_IMPORT = socket.socket.connect  # before the tier's guard, as pytest-socket does

    def pytest_runtest_teardown():
        socket.socket.connect = SEEN_AT_IMPORT  # "restore" after every test

    class FakePytestSocket:  # pytest-socket's name for it: calls it for the hosts it allows
        _true_connect = SEEN_AT_IMPORT

    sys.modules["pytest_socket"] = FakePytestSocket
"""


def test_a_plugin_that_restores_the_sockets_after_each_test_keeps_no_test_unguarded(
    pytester: pytest.Pytester,
) -> None:
    # pytest-socket puts socket.socket.connect back to the one it saw at its import after every
    # test: the guard was gone from the second test on (and in every fixture's teardown).
    pytester.makeconftest(RESTORES_SOCKETS)
    pytester.makepyfile(test_after=f"""
        import errno, socket, sys
        import pytest

        BELT = {NO_TRAFFIC_LEAVES!r}

        @pytest.fixture(autouse=True, scope="module")
        def belt():
            exec(BELT, {{}})

        @pytest.mark.parametrize("n", range(3))
        def test_refused_every_time(n):
            with pytest.raises(OSError) as info:
                socket.create_connection(("192.0.2.1", 80), timeout=2)
            assert info.value.errno == errno.ENETUNREACH and "network blocked" in str(info.value)

        def test_what_the_plugin_calls_for_its_allowed_hosts_is_guarded():
            true_connect = sys.modules["pytest_socket"]._true_connect
            with pytest.raises(OSError) as info:
                true_connect(socket.socket(), ("192.0.2.1", 80))
            assert "network blocked" in str(info.value)
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:socket",
                                           "--tier", "fast")
    result.assert_outcomes(passed=4)
