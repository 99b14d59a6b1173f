"""The network guard: policies, the audit hook in a process, and in its Python children.

Every refusal test installs the guard *before* touching the network, uses only TEST-NET addresses
(192.0.2.0/24), a ``.invalid`` name or 127.x listeners, and asserts the guard raised. Behind the
guard each child adds ``NO_TRAFFIC_LEAVES``, a second audit hook that ends the process before the
system call if a ``connect``, ``sendto`` or ``getaddrinfo`` of anything but loopback (the calls
these tests make) ever gets past the guard: even a broken guard never sends a packet or a DNS
query. Guarded code runs in child interpreters, because an
audit hook cannot be removed from the process that added it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tiergate import netguard
from tiergate.boot import SITE_DIR

Policy = netguard.core().Policy

# Audit hooks run in the order they were added, so this one only sees what the guard let through.
NO_TRAFFIC_LEAVES = """
import ipaddress as _ip, os as _os, sys as _sys
def _only_loopback(event, args):
    if event in ("socket.connect", "socket.sendto") and isinstance(args[1], tuple):
        host = args[1][0]
    elif event == "socket.getaddrinfo":
        host = args[0].decode() if isinstance(args[0], bytes) else args[0]
    else:
        return
    try:
        if host in (None, "localhost") or _ip.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    print("the guard let", event, "to", repr(host), "through", file=_sys.stderr, flush=True)
    _os._exit(97)
_sys.addaudithook(_only_loopback)
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
        from tiergate import netguard
        found = []
        netguard.install_guard("loopback", tier_name="fast", emit=found.append)
        BELT
        os.environ["TIERGATE_CURRENT_TEST"] = "tests/test_db.py::test_query"
        sock = socket.socket()
        sock.settimeout(0.2)
        start = time.perf_counter()
        try:
            sock.connect(("192.0.2.1", 5432))
        except netguard.NetworkBlocked as exc:
            print(json.dumps({"error": str(exc), "seconds": time.perf_counter() - start,
                              "refused": isinstance(exc, ConnectionRefusedError),
                              "finding": found[0].to_json()}))
        else:
            raise SystemExit("the guard let a connection through")
    """)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["refused"] and out["seconds"] < 0.1
    assert "192.0.2.1:5432" in out["error"] and "'fast'" in out["error"]
    assert "network = loopback" in out["error"]
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
        from tiergate import netguard
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
        except netguard.NetworkBlocked as exc:
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
    assert lines[1].startswith(f"refused: tiergate: network blocked: connect to 127.0.0.3:"
                               f"{listeners['127.0.0.3']}")
    assert "network = [127.0.0.2]" in lines[1]
    assert lines[2].startswith("lookup refused:") and "db.example.invalid" in lines[2]
    assert lines[3] == "unix ok"


def test_python_children_are_guarded_and_record_the_refusal(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SITE_DIR), os.environ.get("PYTHONPATH")])),
        "TIERGATE_EVENTS": str(events),
        "PYTEST_CURRENT_TEST": "tests/test_x.py::test_child (call)",
        **netguard.guard_env("none", "fast"),
    }
    env.pop("TIERGATE_CURRENT_TEST", None)
    result = run_guarded("""
        import socket, subprocess, sys
        BELT
        grandchild = '''
        import socket
        BELT
        s = socket.socket(); s.settimeout(0.2)
        try:
            s.connect(("192.0.2.7", 443))
        except ConnectionRefusedError as exc:
            print("grandchild refused", type(exc).__name__)
        else:
            raise SystemExit("not guarded")
        '''
        print(subprocess.run([sys.executable, "-c", grandchild], capture_output=True,
                             text=True).stdout.strip())
        s = socket.socket(); s.settimeout(0.2)
        s.connect(("127.0.0.1", 9))
    """, env)
    assert result.returncode == 1
    assert "grandchild refused NetworkBlocked" in result.stdout
    assert "NetworkBlocked: tiergate: network blocked: connect to 127.0.0.1:9" in result.stderr
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
